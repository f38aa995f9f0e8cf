// Command ebpfu-vm runs one eBPF program on the ebpfu runtime: the plugin of the bpf_conformance
// runner, and a way to try a program by hand.
//
//	ebpfu-vm [MEMHEX] [--jit] [--budget N] [--elf] < PROGRAM_HEX
//
// The program comes on standard input as hex bytes (with or without spaces), or with --elf as
// the hex bytes of an ELF object whose executable section holding main is the program. The first argument,
// when it is hex, is the input memory: r1 points to a copy of it and r2 holds its length (both 0
// without one); r10 is the frame pointer of a 512-byte frame. The program is verified as a
// program.Raw whose context is that memory, run by the interpreter (or the JIT with --jit), and
// r0 is printed in hex. A refused or stopped program exits 1 with a one-line reason on standard
// error; bad usage exits 2.
package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// Exit codes.
const (
	exitOK      = 0
	exitProgram = 1 // the program was refused or stopped
	exitUsage   = 2
	exitBug     = 3 // a bug of ebpfu-vm itself, reported in one line
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// options are the command line's settings.
type options struct {
	mem    []byte
	hasMem bool
	jit    bool
	elf    bool
	budget uint64
}

func parseArgs(args []string) (*options, error) {
	o := &options{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--jit":
			o.jit = true
		case a == "--elf":
			o.elf = true
		case a == "--budget" || strings.HasPrefix(a, "--budget="):
			v, ok := strings.CutPrefix(a, "--budget=")
			if !ok {
				if i+1 == len(args) {
					return nil, fmt.Errorf("--budget needs a number")
				}
				i++
				v = args[i]
			}
			n, err := strconv.ParseUint(v, 0, 64)
			if err != nil {
				return nil, fmt.Errorf("--budget %q: not a number", v)
			}
			o.budget = n
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("unknown option %q (usage: ebpfu-vm [MEMHEX] [--jit] [--budget N] [--elf] < PROGRAM_HEX)", a)
		case i == 0:
			m, err := conformance.ParseHex(a)
			if err != nil {
				return nil, fmt.Errorf("memory argument: %v", err)
			}
			o.mem, o.hasMem = m, true
		default:
			return nil, fmt.Errorf("unexpected argument %q (the memory comes first)", a)
		}
	}
	return o, nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "ebpfu-vm: %s\n", oneLine(fmt.Sprintf(format, a...)))
		return code
	}
	// A last resort: ebpfu-vm never prints a panic trace. A memory fault in the runtime becomes a
	// panic here too (SetPanicOnFault), so even a verifier bug costs one line, not a crash.
	defer func() {
		if r := recover(); r != nil {
			code = fail(exitBug, "internal error: %v", r)
		}
	}()
	debug.SetPanicOnFault(true)

	o, err := parseArgs(args)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	text, err := io.ReadAll(stdin)
	if err != nil {
		return fail(exitUsage, "reading the program: %v", err)
	}
	code8, err := conformance.ParseHex(string(text))
	if err != nil {
		return fail(exitUsage, "program: %v", err)
	}
	if len(code8) == 0 {
		return fail(exitUsage, "no program on standard input")
	}
	if o.elf {
		if code8, err = elfProgram(code8); err != nil {
			return fail(exitProgram, "refused: %v", err)
		}
	}
	insns, err := isa.Decode(code8)
	if err != nil {
		return fail(exitProgram, "refused: %v", err)
	}

	table, err := helpers()
	if err != nil {
		return fail(exitBug, "%v", err)
	}
	p, err := verifier.Verify(insns, &verifier.Options{
		Type:        program.Raw,
		CtxSize:     len(o.mem),
		CtxWritable: true,
		Helpers:     table,
	})
	if err != nil {
		return fail(exitProgram, "refused: %v (%s)", err, errnoName(verifier.Errno(err)))
	}

	// The memory is a heap copy: programs address it by number, so it must not move.
	mem := heapBytes(len(o.mem))
	copy(mem, o.mem)
	env := &helper.Env{Helpers: table, Budget: o.budget}
	if err := env.Mem.AddBytes(mem, true); err != nil {
		return fail(exitBug, "%v", err)
	}
	args5 := [5]uint64{memory.Addr(mem), uint64(len(mem))}

	exec := runInterp
	if o.jit {
		exec = runJIT
	}
	r0, err := exec(p, env, args5)
	if err != nil {
		return fail(exitProgram, "%v", err)
	}
	fmt.Fprintf(stdout, "%x\n", r0)
	return exitOK
}

// executor runs a verified program.
type executor func(p *program.Program, env *helper.Env, args [5]uint64) (uint64, error)

var _ executor = runInterp

func runInterp(p *program.Program, env *helper.Env, args [5]uint64) (uint64, error) {
	return interp.New().Run(p, env, args)
}

// heapBytes returns n zeroed bytes that are certain to be on the heap.
func heapBytes(n int) []byte {
	return reflect.MakeSlice(reflect.TypeOf([]byte(nil)), n, n).Bytes()
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
