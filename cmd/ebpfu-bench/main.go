// Command ebpfu-bench times eBPF programs on the ebpfu executors and prints them against the same
// programs compiled natively: the table of `make bench`.
//
//	ebpfu-bench -input FILE [-native FILE] [-exec interp,jit] [-time 1s] PROG.bin...
//
// Each PROG.bin is the .text of a program `u64 NAME(u8 *buf, u64 len)` compiled by clang -target
// bpf; it is verified as a program.Raw whose context is the input file's bytes and run with
// r1 = the input, r2 = its length. -native names the native driver's output, one line per
// program: NAME RESULT_HEX NS_PER_RUN. Every executor's result must match the native result.
// A time is the best of five batches, each batch as long as a fifth of -time.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "ebpfu-bench: %v\n", err)
		os.Exit(1)
	}
}

// native is one line of the native driver's output.
type native struct {
	result uint64
	ns     float64
}

// row is one program's measurements.
type row struct {
	name       string
	insns      int
	native     *native
	ns         []float64 // per executor; NaN when it failed
	notes      []string
	unverified bool
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ebpfu-bench", flag.ContinueOnError)
	input := fs.String("input", "", "file whose bytes are the programs' input (r1, r2)")
	nativeFile := fs.String("native", "", "output of the native driver: NAME RESULT_HEX NS_PER_RUN per line")
	execs := fs.String("exec", "interp", "comma-separated executors to time: interp, jit")
	total := fs.Duration("time", time.Second, "time spent on each program per executor")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *input == "" || fs.NArg() == 0 {
		return errors.New("usage: ebpfu-bench -input FILE [-native FILE] [-exec interp,jit] [-time 1s] PROG.bin...")
	}
	in, err := os.ReadFile(*input)
	if err != nil {
		return err
	}
	// Programs address the input by number: it must be heap memory that does not move.
	buf := reflect.MakeSlice(reflect.TypeOf([]byte(nil)), len(in), len(in)).Bytes()
	natives := map[string]*native{}
	if *nativeFile != "" {
		if natives, err = readNative(*nativeFile); err != nil {
			return err
		}
	}
	names := strings.Split(*execs, ",")
	var rows []*row
	for _, path := range fs.Args() {
		r, err := measure(path, in, buf, names, natives, *total)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	printTable(out, rows, names, len(natives) > 0)
	for _, r := range rows {
		for _, n := range r.notes {
			if strings.HasPrefix(n, "MISMATCH") || strings.Contains(n, "failed") {
				return errors.New("some results are wrong or missing (see the notes)")
			}
		}
	}
	return nil
}

func readNative(path string) (map[string]*native, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]*native{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		res, err1 := strconv.ParseUint(fields[1], 16, 64)
		ns, err2 := strconv.ParseFloat(fields[2], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		m[fields[0]] = &native{res, ns}
	}
	return m, sc.Err()
}

// measure verifies one program and times it on each executor.
func measure(path string, in, buf []byte, execs []string, natives map[string]*native, total time.Duration) (*row, error) {
	name := strings.TrimSuffix(filepath.Base(path), ".bin")
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	insns, err := isa.Decode(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r := &row{name: name, insns: len(insns), native: natives[name]}
	p, err := verifier.Verify(insns, &verifier.Options{Type: program.Raw, CtxSize: len(buf), CtxWritable: true})
	if err != nil {
		// Time it anyway, every access checked at run time, and say so.
		r.unverified = true
		r.notes = append(r.notes, fmt.Sprintf("refused by the verifier (%v): timed with every access checked", err))
		p = &program.Program{Type: program.Raw, Insns: insns, Checks: make([]program.Check, len(insns)),
			Funcs: []program.Func{{Start: 0, End: len(insns), StackDepth: isa.StackSize}}, CtxSize: len(buf), Loops: true}
		for i := range p.Checks {
			p.Checks[i] = program.CheckBounds
		}
	}
	env := &helper.Env{}
	if err := env.Mem.AddBytes(buf, true); err != nil {
		return nil, err
	}
	args := [5]uint64{memory.Addr(buf), uint64(len(buf))}
	for _, ex := range execs {
		fn, err := prepare(ex, p)
		if err != nil {
			r.ns = append(r.ns, math.NaN())
			r.notes = append(r.notes, fmt.Sprintf("%s failed: %v", ex, err))
			continue
		}
		once := func() (uint64, error) {
			copy(buf, in) // programs may write their input; every run starts from the same bytes
			return fn(env, args)
		}
		res, err := once()
		if err != nil {
			r.ns = append(r.ns, math.NaN())
			r.notes = append(r.notes, fmt.Sprintf("%s failed: %v", ex, err))
			continue
		}
		if r.native != nil && res != r.native.result {
			r.notes = append(r.notes, fmt.Sprintf("MISMATCH: %s gives %#x, native %#x", ex, res, r.native.result))
		}
		r.ns = append(r.ns, bestOf(5, total/5, func() { fn(env, args) }))
	}
	return r, nil
}

// runFunc runs a prepared program once.
type runFunc func(env *helper.Env, args [5]uint64) (uint64, error)

// prepare readies p for an executor.
func prepare(name string, p *program.Program) (runFunc, error) {
	switch name {
	case "interp":
		c, err := interp.Prepare(p)
		if err != nil {
			return nil, err
		}
		m := interp.New()
		return func(env *helper.Env, args [5]uint64) (uint64, error) { return m.RunCode(c, env, args) }, nil
	case "jit":
		return prepareJIT(p)
	}
	return nil, fmt.Errorf("unknown executor %q", name)
}

// bestOf returns the fastest of n batches, in ns per call of f; each batch runs at least d.
func bestOf(n int, d time.Duration, f func()) float64 {
	iters := 1
	for { // calibrate
		start := time.Now()
		for i := 0; i < iters; i++ {
			f()
		}
		if time.Since(start) >= d/4 || iters >= 1<<30 {
			break
		}
		iters *= 2
	}
	iters *= 4
	best := math.Inf(1)
	for b := 0; b < n; b++ {
		start := time.Now()
		for i := 0; i < iters; i++ {
			f()
		}
		best = min(best, float64(time.Since(start).Nanoseconds())/float64(iters))
	}
	return best
}

func printTable(out io.Writer, rows []*row, execs []string, haveNative bool) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "program\tinsns\t"
	if haveNative {
		header += "native ns\t"
	}
	for _, e := range execs {
		header += e + " ns\t"
		if haveNative {
			header += e + " ratio\t"
		}
	}
	fmt.Fprintln(tw, header)
	logSum := make([]float64, len(execs))
	count := make([]int, len(execs))
	for _, r := range rows {
		name := r.name
		if r.unverified {
			name += "*"
		}
		line := fmt.Sprintf("%s\t%d\t", name, r.insns)
		if haveNative {
			if r.native != nil {
				line += fmt.Sprintf("%.1f\t", r.native.ns)
			} else {
				line += "-\t"
			}
		}
		for i, ns := range r.ns {
			if math.IsNaN(ns) {
				line += "failed\t"
				if haveNative {
					line += "-\t"
				}
				continue
			}
			line += fmt.Sprintf("%.1f\t", ns)
			if haveNative {
				if r.native != nil && r.native.ns > 0 {
					ratio := ns / r.native.ns
					line += fmt.Sprintf("%.1fx\t", ratio)
					logSum[i] += math.Log(ratio)
					count[i]++
				} else {
					line += "-\t"
				}
			}
		}
		fmt.Fprintln(tw, line)
	}
	if haveNative {
		line := "geometric mean\t\t\t"
		for i := range execs {
			if count[i] > 0 {
				line += fmt.Sprintf("\t%.1fx\t", math.Exp(logSum[i]/float64(count[i])))
			} else {
				line += "\t-\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, r := range rows {
		for _, n := range r.notes {
			fmt.Fprintf(out, "%s: %s\n", r.name, n)
		}
	}
}
