package interp_test

import (
	"errors"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// fuzzBudget bounds each fuzzed run.
const fuzzBudget = 20000

// addSeeds adds the conformance files (read in place, when present) as seeds.
func addSeeds(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, isa.Encode([]isa.Instruction{isa.Make(isa.OpMov64Imm, 0, 0, 0, 1), isa.Make(isa.OpExit, 0, 0, 0, 0)}))
	if dir, ok := conformance.FindDir(); ok {
		if tests, err := conformance.LoadDir(dir); err == nil {
			for _, tc := range tests {
				f.Add(tc.Mem, isa.Encode(tc.Insns))
			}
		}
	}
}

// fuzzHelpers are deterministic helpers: a clock that always says 42 and get_current_comm,
// which writes through a pointer argument.
func fuzzHelpers(t *testing.T) *helper.Table {
	table := helper.NewTable()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(table.Register(helper.KtimeGetNS, func(*helper.Env, *[5]uint64) (uint64, error) { return 42, nil }))
	must(table.Register(helper.GetCurrentComm, func(env *helper.Env, a *[5]uint64) (uint64, error) {
		b, ok := env.Mem.Bytes(a[0], a[1], true)
		if !ok {
			return 0, errors.New("buffer outside the run's memory")
		}
		copy(b, "fuzz")
		return 0, nil
	}))
	return table
}

// runner runs programs on one Machine and one heap buffer, so that runs of one input see the
// same addresses (programs may compute with them).
type runner struct {
	m     *interp.Machine
	buf   []byte
	table *helper.Table
}

func newRunner(t *testing.T, n int) *runner {
	return &runner{
		m:     interp.New(),
		buf:   reflect.MakeSlice(reflect.TypeOf([]byte(nil)), n, n).Bytes(), // heap memory
		table: fuzzHelpers(t),
	}
}

// run runs p with the buffer holding mem.
func (r *runner) run(t *testing.T, p *program.Program, mem []byte) (uint64, error) {
	copy(r.buf, mem)
	clear(r.m.Stack())
	env := &helper.Env{Helpers: r.table, Budget: fuzzBudget}
	if err := env.Mem.AddBytes(r.buf, true); err != nil {
		t.Fatal(err)
	}
	return r.m.Run(p, env, [5]uint64{memory.Addr(r.buf), uint64(len(r.buf))})
}

func checkedCopy(p *program.Program) *program.Program {
	q := *p
	q.Checks = make([]program.Check, len(p.Insns))
	for i := range q.Checks {
		q.Checks[i] = program.CheckBounds
	}
	return &q
}

// FuzzRun runs arbitrary instruction streams with every access checked, as a program the
// verifier could not prove anything about: the interpreter must stop them cleanly or finish,
// never panic or crash.
func FuzzRun(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, mem, code []byte) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		code = code[:len(code)/isa.InstructionSize*isa.InstructionSize]
		insns, err := isa.Decode(code)
		if err != nil || len(insns) == 0 {
			return
		}
		p := &program.Program{Type: program.Raw, Insns: insns, CtxSize: len(mem), Loops: true,
			Funcs: []program.Func{{Start: 0, End: len(insns), StackDepth: isa.StackSize}}}
		p = checkedCopy(p)
		if _, err := interp.Prepare(p); err != nil {
			return
		}
		_, err = newRunner(t, len(mem)).run(t, p, mem)
		var fault *program.Fault
		if err != nil && !errors.As(err, &fault) {
			t.Fatalf("run returned %T %v, want a *program.Fault", err, err)
		}
	})
}

// FuzzVerifyRun verifies arbitrary instruction streams and runs what the verifier accepts. The
// verifier must not panic; a verified program runs first with every access checked: a memory
// fault there at an access the verifier marked CheckNone is a verifier soundness bug (the
// program would touch memory outside the run's). Then it runs as verified and must agree.
func FuzzVerifyRun(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, mem, code []byte) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		code = code[:len(code)/isa.InstructionSize*isa.InstructionSize]
		insns, err := isa.Decode(code)
		if err != nil || len(insns) == 0 || len(insns) > 4096 {
			return
		}
		r := newRunner(t, len(mem))
		p, err := verifier.Verify(insns, &verifier.Options{
			Type: program.Raw, CtxSize: len(mem), CtxWritable: true, Helpers: r.table, MaxInsns: 200000,
		})
		if err != nil {
			return
		}
		if _, err := interp.Prepare(p); err != nil {
			t.Fatalf("the verifier accepted a program the interpreter cannot run: %v\n%s", err, conformance.Disassemble(insns))
		}
		want, werr := r.run(t, checkedCopy(p), mem)
		var fault *program.Fault
		if errors.As(werr, &fault) && (strings.HasPrefix(fault.Reason, "invalid ") || strings.HasPrefix(fault.Reason, "misaligned")) &&
			fault.PC < len(p.Checks) && p.Checks[fault.PC] == program.CheckNone {
			t.Fatalf("verifier proved instruction %d safe, but it faults: %v\n%s", fault.PC, werr, conformance.Disassemble(insns))
		}
		if errors.As(werr, &fault) && strings.HasPrefix(fault.Reason, "invalid instruction") {
			t.Fatalf("the verifier let instruction %d run, which the interpreter cannot: %v\n%s", fault.PC, werr, conformance.Disassemble(insns))
		}
		if werr != nil {
			return
		}
		got, err := r.run(t, p, mem)
		if err != nil || got != want {
			t.Fatalf("verified run: %#x, %v; fully checked run: %#x\n%s", got, err, want, conformance.Disassemble(insns))
		}
	})
}
