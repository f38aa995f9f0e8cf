package jit_test

import (
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// heapBytes returns n zeroed bytes that are certain to be on the heap: programs address memory by
// number, and a slice the compiler keeps on a goroutine stack moves when the stack grows.
func heapBytes(n int) []byte {
	return reflect.MakeSlice(reflect.TypeOf([]byte(nil)), n, n).Bytes()
}

// progOf builds an unverified program: subprograms start at local call targets, every memory
// access checked at run time (or none), loops counted.
func progOf(insns []isa.Instruction, checked bool) *program.Program {
	p := &program.Program{Type: program.Raw, Insns: insns, Checks: make([]program.Check, len(insns)), Loops: true}
	if checked {
		for i := range p.Checks {
			p.Checks[i] = program.CheckBounds
		}
	}
	starts := map[int]bool{0: true}
	for pc, ins := range insns {
		if ins.Op == isa.OpCall && ins.Src() == isa.PseudoCallLocal {
			if t := pc + 1 + int(ins.Imm); t > 0 && t < len(insns) {
				starts[t] = true
			}
		}
	}
	var s []int
	for pc := range starts {
		s = append(s, pc)
	}
	sort.Ints(s)
	for k, start := range s {
		end := len(insns)
		if k+1 < len(s) {
			end = s[k+1]
		}
		p.Funcs = append(p.Funcs, program.Func{Start: start, End: end, StackDepth: isa.StackSize})
	}
	return p
}

// asm assembles uBPF-dialect text.
func asm(t testing.TB, src string) []isa.Instruction {
	t.Helper()
	insns, err := conformance.Assemble(src)
	if err != nil {
		t.Fatal(err)
	}
	return insns
}

// rawEnv returns the environment ebpfu-vm gives a program: mem as a writable region, helper 5.
func rawEnv(t testing.TB, mem []byte) *helper.Env {
	t.Helper()
	env := &helper.Env{Helpers: helper.NewTable()}
	if err := env.Helpers.Register(helper.KtimeGetNS, func(*helper.Env, *[5]uint64) (uint64, error) { return 42, nil }); err != nil {
		t.Fatal(err)
	}
	if err := env.Mem.AddBytes(mem, true); err != nil {
		t.Fatal(err)
	}
	return env
}

// load compiles and loads p, closing it at the end of the test.
func load(t testing.TB, p *program.Program) *jit.Func {
	t.Helper()
	c, err := jit.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := jit.Load(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// runJIT compiles, loads and runs p once.
func runJIT(t testing.TB, p *program.Program, env *helper.Env, args [5]uint64) (uint64, error) {
	t.Helper()
	return load(t, p).Run(env, args)
}

// runCode compiles p with compile, loads and runs it once.
func runCode(t testing.TB, compile func(*program.Program) (*jit.Code, error), p *program.Program, env *helper.Env, args [5]uint64) (uint64, error) {
	t.Helper()
	c, err := compile(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := jit.Load(c)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Run(env, args)
}

// run assembles src, compiles it with every access checked and runs it.
func run(t *testing.T, src string, env *helper.Env, args ...uint64) (uint64, error) {
	t.Helper()
	var a [5]uint64
	copy(a[:], args)
	if env == nil {
		env = rawEnv(t, nil)
	}
	return runJIT(t, progOf(asm(t, src), true), env, a)
}

// wantFault checks that err is a *program.Fault at pc whose reason holds substr.
func wantFault(t *testing.T, err error, pc int, substr string) {
	t.Helper()
	var f *program.Fault
	if !errors.As(err, &f) {
		t.Fatalf("got %v, want a fault", err)
	}
	if f.PC != pc || !strings.Contains(f.Reason, substr) {
		t.Fatalf("got fault %q at %d, want %q at %d", f.Reason, f.PC, substr, pc)
	}
}

// conformanceTests loads the bpf_conformance files, or skips.
func conformanceTests(t *testing.T) []*conformance.Test {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skipf("bpf_conformance test files not found (looked in %q; set %s)", dir, conformance.DirEnv)
	}
	tests, err := conformance.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tests
}

// TestConformanceFiles runs every bpf_conformance file through the JIT three ways: verified as
// ebpfu-vm verifies it, and unverified with every access checked and with none checked.
func TestConformanceFiles(t *testing.T) {
	tests := conformanceTests(t)
	for _, mode := range []string{"verified", "checked", "unchecked", "without BMI2"} {
		passed := 0
		for _, tc := range tests {
			mem := heapBytes(len(tc.Mem))
			copy(mem, tc.Mem)
			env := rawEnv(t, mem)
			var p *program.Program
			switch mode {
			case "verified":
				var err error
				p, err = verifier.Verify(tc.Insns, &verifier.Options{Type: program.Raw, CtxSize: len(mem),
					CtxWritable: true, Helpers: env.Helpers})
				if err != nil {
					if tc.Error == "" {
						t.Errorf("%s: refused: %v", tc.Name, err)
					} else {
						passed++
					}
					continue
				}
			default:
				p = progOf(tc.Insns, mode != "unchecked")
			}
			var got uint64
			var err error
			if mode == "without BMI2" {
				got, err = runCode(t, jit.CompileWithoutBMI2, p, env, [5]uint64{memory.Addr(mem), uint64(len(mem))})
			} else {
				got, err = runJIT(t, p, env, [5]uint64{memory.Addr(mem), uint64(len(mem))})
			}
			switch {
			case tc.Error != "" && err == nil:
				t.Errorf("%s (%s): got %#x, want an error", tc.Name, mode, got)
			case tc.Error != "":
				passed++
			case err != nil:
				t.Errorf("%s (%s): %v", tc.Name, mode, err)
			case got != tc.Result:
				t.Errorf("%s (%s): got %#x, want %#x", tc.Name, mode, got, tc.Result)
			default:
				passed++
			}
		}
		t.Logf("%s: %d of %d files pass", mode, passed, len(tests))
	}
}

// TestConformanceAgainstInterpreter runs every file through both executors with the same
// verified program and the same memory, and compares r0 and the memory afterwards.
func TestConformanceAgainstInterpreter(t *testing.T) {
	m := interp.New()
	for _, tc := range conformanceTests(t) {
		var out [2][]byte
		var res [2]uint64
		var errs [2]error
		for k := range 2 {
			mem := heapBytes(len(tc.Mem))
			copy(mem, tc.Mem)
			env := rawEnv(t, mem)
			p, err := verifier.Verify(tc.Insns, &verifier.Options{Type: program.Raw, CtxSize: len(mem),
				CtxWritable: true, Helpers: env.Helpers})
			if err != nil {
				break
			}
			args := [5]uint64{memory.Addr(mem), uint64(len(mem))}
			if k == 0 {
				res[k], errs[k] = m.Run(p, env, args)
			} else {
				res[k], errs[k] = runJIT(t, p, env, args)
			}
			out[k] = mem
		}
		if (errs[0] == nil) != (errs[1] == nil) || res[0] != res[1] || string(out[0]) != string(out[1]) {
			t.Errorf("%s: interpreter %#x, %v; JIT %#x, %v", tc.Name, res[0], errs[0], res[1], errs[1])
		}
	}
}
