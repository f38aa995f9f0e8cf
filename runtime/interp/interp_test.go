package interp

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// prog builds a program from assembler text with every access checked (or none when unchecked).
func prog(t testing.TB, src string, checked bool) *program.Program {
	t.Helper()
	insns, err := conformance.Assemble(src)
	if err != nil {
		t.Fatal(err)
	}
	return progOf(insns, checked)
}

// heapBytes returns n zeroed bytes that are certain to be on the heap: programs address memory by
// number, and a slice the compiler keeps on a goroutine stack moves when the stack grows.
func heapBytes(n int) []byte {
	return reflect.MakeSlice(reflect.TypeOf([]byte(nil)), n, n).Bytes()
}

func progOf(insns []isa.Instruction, checked bool) *program.Program {
	p := &program.Program{Type: program.Raw, Insns: insns, Checks: make([]program.Check, len(insns)), Loops: true}
	if checked {
		for i := range p.Checks {
			p.Checks[i] = program.CheckBounds
		}
	}
	p.Funcs = []program.Func{{Start: 0, End: len(insns), StackDepth: isa.StackSize}}
	return p
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

func runTest(t *testing.T, m *Machine, tc *conformance.Test, checked, fuse bool) (uint64, error) {
	t.Helper()
	mem := heapBytes(len(tc.Mem))
	copy(mem, tc.Mem)
	env := rawEnv(t, mem)
	c, err := prepare(progOf(tc.Insns, checked), fuse)
	if err != nil {
		return 0, err
	}
	return m.RunCode(c, env, [5]uint64{memory.Addr(mem), uint64(len(mem))})
}

// TestConformanceFiles runs all 313 files, every access checked at run time as the placeholder
// verifier marks them, and again with none checked (as a verifier that proves them would), each
// with and without superinstructions.
func TestConformanceFiles(t *testing.T) {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skipf("bpf_conformance test files not found (looked in %q; set %s)", dir, conformance.DirEnv)
	}
	tests, err := conformance.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	for _, mode := range []struct{ checked, fuse bool }{{true, true}, {false, true}, {true, false}, {false, false}} {
		passed := 0
		for _, tc := range tests {
			got, err := runTest(t, m, tc, mode.checked, mode.fuse)
			switch {
			case err != nil:
				t.Errorf("%s (%+v): %v", tc.Name, mode, err)
			case got != tc.Result:
				t.Errorf("%s (%+v): r0 = %#x, want %#x", tc.Name, mode, got, tc.Result)
			default:
				passed++
			}
		}
		if passed != 313 {
			t.Errorf("%+v: %d/%d passed, want 313", mode, passed, len(tests))
		}
	}
}

func run(t *testing.T, src string, env *helper.Env, args ...uint64) (uint64, error) {
	t.Helper()
	var a [5]uint64
	copy(a[:], args)
	return New().Run(prog(t, src, true), env, a)
}

func wantFault(t *testing.T, err error, substr string) {
	t.Helper()
	var f *program.Fault
	if !errors.As(err, &f) {
		t.Fatalf("want a fault containing %q, got %v", substr, err)
	}
	if !strings.Contains(f.Reason, substr) {
		t.Fatalf("fault %q does not mention %q", f.Reason, substr)
	}
}

func TestStackBounds(t *testing.T) {
	// The live stack is the current frame and the frames of its callers.
	if v, err := run(t, "stdw [%r10-512], 7\nldxdw %r0, [%r10-512]\nexit", nil); err != nil || v != 7 {
		t.Fatalf("bottom of the frame: %d, %v", v, err)
	}
	_, err := run(t, "stdw [%r10-520], 7\nexit", nil)
	wantFault(t, err, "invalid write of 8 bytes")
	_, err = run(t, "ldxb %r0, [%r10]\nexit", nil)
	wantFault(t, err, "invalid read of 1 bytes")
	_, err = run(t, "ldxdw %r0, [%r10-4]\nexit", nil)
	wantFault(t, err, "invalid read of 8 bytes")
	// A callee may use its caller's frame through a pointer, not the frame below its own.
	src := `
stdw [%r10-8], 5
mov %r1, %r10
add %r1, -8
call local f
exit
f:
ldxdw %r0, [%r1]
stdw [%r10-512], 1
exit`
	if v, err := run(t, src, nil); err != nil || v != 5 {
		t.Fatalf("caller's frame: %d, %v", v, err)
	}
	_, err = run(t, "call local f\nexit\nf:\nstdw [%r10-520], 1\nexit", nil)
	wantFault(t, err, "invalid write")
}

func TestMemRegions(t *testing.T) {
	buf := heapBytes(16)
	ro := heapBytes(4)
	copy(ro, []byte{1, 2, 3, 4})
	env := &helper.Env{}
	if err := env.Mem.AddBytes(buf, true); err != nil {
		t.Fatal(err)
	}
	if err := env.Mem.AddBytes(ro, false); err != nil {
		t.Fatal(err)
	}
	a, b := memory.Addr(buf), memory.Addr(ro)
	if _, err := run(t, "stdw [%r1+8], -1\nexit", env, a); err != nil || binary.LittleEndian.Uint64(buf[8:]) != ^uint64(0) {
		t.Fatalf("write inside: %v", err)
	}
	_, err := run(t, "stdw [%r1+9], -1\nexit", env, a)
	wantFault(t, err, "invalid write of 8 bytes")
	if v, err := run(t, "ldxw %r0, [%r2]\nexit", env, a, b); err != nil || v != 0x04030201 {
		t.Fatalf("read-only read: %#x, %v", v, err)
	}
	_, err = run(t, "stb [%r2], 0\nexit", env, a, b)
	wantFault(t, err, "invalid write of 1 bytes")
	_, err = run(t, "lock add [%r2], %r1\nexit", env, a, b)
	wantFault(t, err, "write")
	// Null and scalar pointers.
	_, err = run(t, "mov %r1, 0\nldxb %r0, [%r1]\nexit", env)
	wantFault(t, err, "invalid read")
	_, err = run(t, "lddw %r1, 0xffffffffffffffff\nldxdw %r0, [%r1]\nexit", env)
	wantFault(t, err, "invalid read")
	_, err = run(t, "mov %r1, -8\nadd %r1, %r10\nldxdw %r0, [%r1+16]\nexit", env)
	wantFault(t, err, "invalid read")
}

func TestBudget(t *testing.T) {
	loop := "mov %r0, 0\nl:\nadd %r0, 1\njlt %r0, %r1, l\nexit"
	env := &helper.Env{Budget: 1000}
	if v, err := run(t, loop, env, 100); err != nil || v != 100 {
		t.Fatalf("100 iterations within a budget of 1000: %d, %v", v, err)
	}
	_, err := run(t, loop, env, 1000)
	wantFault(t, err, "budget")
	_, err = run(t, "l:\nja l", &helper.Env{Budget: 1 << 20})
	wantFault(t, err, "budget")
	if v, err := run(t, loop, nil, 1_000_000); err != nil || v != 1_000_000 {
		t.Fatalf("no budget: %d, %v", v, err)
	}
}

func TestCallDepth(t *testing.T) {
	_, err := run(t, "f:\ncall local f\nexit", nil)
	wantFault(t, err, "call depth")
	// Seven nested calls (eight frames) are fine.
	src := "mov %r0, 0\ncall local f1\nexit\n"
	for i := 1; i <= 7; i++ {
		src += "f" + string(rune('0'+i)) + ":\nadd %r0, 1\n"
		if i < 7 {
			src += "call local f" + string(rune('0'+i+1)) + "\n"
		}
		src += "stdw [%r10-512], 1\nexit\n"
	}
	if v, err := run(t, src, nil); err != nil || v != 7 {
		t.Fatalf("8 frames: %d, %v", v, err)
	}
}

func TestHelpers(t *testing.T) {
	env := rawEnv(t, nil)
	if v, err := run(t, "call 5\nexit", env); err != nil || v != 42 {
		t.Fatalf("call 5: %d, %v", v, err)
	}
	_, err := run(t, "call 6\nexit", env)
	wantFault(t, err, "helper 6")
	_, err = run(t, "mov %r1, 99999\ncallx %r1\nexit", env)
	wantFault(t, err, "helper 99999")
	_, err = run(t, "lddw %r1, 0x100000005\ncallx %r1\nexit", env)
	wantFault(t, err, "unknown helper")
	boom := errors.New("boom")
	if err := env.Helpers.Register(helper.GetPrandomU32, func(*helper.Env, *[5]uint64) (uint64, error) { return 0, boom }); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "call 7\nexit", env)
	wantFault(t, err, "boom")
	// Helpers see the stack through env.Mem, and only during the run.
	var seen bool
	if err := env.Helpers.Register(helper.ProbeRead, func(e *helper.Env, a *[5]uint64) (uint64, error) {
		b, ok := e.Mem.Bytes(a[0], a[1], true)
		seen = ok
		if ok {
			b[0] = 9
		}
		return 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	before := env.Mem.Len()
	v, err := run(t, "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 4\nldxb %r0, [%r10-8]\nexit", env)
	if err != nil || !seen || v != 9 {
		t.Fatalf("helper writing the stack: %d, %v, seen %v", v, err, seen)
	}
	if env.Mem.Len() != before {
		t.Fatalf("the run left %d regions in env.Mem, had %d", env.Mem.Len(), before)
	}
}

type pkt []byte

func (p pkt) Packet() []byte { return p }

func TestPacketLoads(t *testing.T) {
	env := &helper.Env{Data: pkt{0x11, 0x22, 0x33, 0x44, 0x55}}
	cases := []struct {
		src  string
		want uint64
	}{
		{"ldabsb 1\nexit", 0x22},
		{"ldabsh 1\nexit", 0x2233},
		{"ldabsw 1\nexit", 0x22334455},
		{"ldabsw 2\nmov %r0, 7\nexit", 0}, // out of bounds: the program ends with 0
		{"mov %r3, 2\nldindh %r3, 1\nexit", 0x4455},
		{"mov %r3, -1\nldindb %r3, 1\nexit", 0x11},
		{"mov %r3, -2\nldindb %r3, 1\nexit", 0},
		{"ldabsb -1\nexit", 0},
	}
	for _, c := range cases {
		if v, err := run(t, c.src, env); err != nil || v != c.want {
			t.Errorf("%q: %#x, %v; want %#x", c.src, v, err, c.want)
		}
	}
	_, err := run(t, "ldabsb 0\nexit", nil)
	wantFault(t, err, "without a packet")
}

func TestAtomics(t *testing.T) {
	buf := heapBytes(16)
	env := &helper.Env{}
	if err := env.Mem.AddBytes(buf, true); err != nil {
		t.Fatal(err)
	}
	a := memory.Addr(buf)
	_, err := run(t, "mov %r2, 1\nlock add [%r1+1], %r2\nexit", env, a)
	wantFault(t, err, "misaligned")
	src := `
mov %r2, 5
lock fetch add [%r1], %r2
mov %r3, 3
lock fetch xor32 [%r1+8], %r3
mov %r0, 3
mov %r4, 8
lock cmpxchg32 [%r1+8], %r4
add %r0, %r2
exit`
	binary.LittleEndian.PutUint64(buf, 10)
	binary.LittleEndian.PutUint64(buf[8:], 0xffffffff00000000)
	v, err := run(t, src, env, a)
	if err != nil || v != 3+10 {
		t.Fatalf("atomics: %d, %v", v, err)
	}
	if got := binary.LittleEndian.Uint64(buf); got != 15 {
		t.Errorf("fetch add left %d", got)
	}
	if got := binary.LittleEndian.Uint64(buf[8:]); got != 0xffffffff00000008 {
		t.Errorf("xor32 + cmpxchg32 left %#x", got)
	}
	// Load-acquire and store-release.
	acq := []isa.Instruction{
		isa.Make(isa.ClassSTX|isa.ModeATOMIC|isa.SizeDW, 1, 2, 0, isa.AtomicStoreRel),
		isa.Make(isa.ClassSTX|isa.ModeATOMIC|isa.SizeH, 0, 1, 0, isa.AtomicLoadAcq),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}
	v, err = New().Run(progOf(acq, true), env, [5]uint64{a, 0xabcd1234})
	if err != nil || v != 0x1234 {
		t.Fatalf("load-acquire/store-release: %#x, %v", v, err)
	}
}

func TestMaps(t *testing.T) {
	insns := []isa.Instruction{
		isa.Make(isa.OpLdDW, 1, isa.PseudoMapFD, 0, 1), isa.Make(0, 0, 0, 0, 0),
		isa.Make(isa.OpLdDW, 0, isa.PseudoMapValue, 0, 0), isa.Make(0, 0, 0, 0, 16),
		isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcX, 0, 1, 0, 0),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}
	env := &helper.Env{Maps: []uint64{100, 200}, MapValues: []uint64{1000}}
	v, err := New().Run(progOf(insns, true), env, [5]uint64{})
	if err != nil || v != 200+1016 {
		t.Fatalf("map references: %d, %v", v, err)
	}
	_, err = New().Run(progOf(insns, true), &helper.Env{Maps: []uint64{1}}, [5]uint64{})
	wantFault(t, err, "map 1")
}

// TestInvalidInstructions holds instructions the interpreter cannot run: Prepare accepts them
// (dead code may hold anything) and a run that reaches one stops with a fault.
func TestInvalidInstructions(t *testing.T) {
	exit := isa.Make(isa.OpExit, 0, 0, 0, 0)
	cases := map[string][]isa.Instruction{
		"unknown opcode":   {isa.Make(0xff, 0, 0, 0, 0), exit},
		"jump out":         {isa.Make(isa.OpJA, 0, 0, 5, 0), exit},
		"jump before":      {isa.Make(isa.OpJA, 0, 0, -2, 0), exit},
		"jump into lddw":   {isa.Make(isa.OpJA, 0, 0, 1, 0), isa.Make(isa.OpLdDW, 0, 0, 0, 1), isa.Make(0, 0, 0, 0, 0), exit},
		"truncated lddw":   {isa.Make(isa.OpLdDW, 0, 0, 0, 1)},
		"bad lddw slot":    {isa.Make(isa.OpLdDW, 0, 0, 0, 1), isa.Make(0x07, 0, 0, 0, 0), exit},
		"write r10":        {isa.Make(isa.OpMov64Imm, 10, 0, 0, 0), exit},
		"register 11":      {isa.Make(isa.OpMov64Reg, 0, 11, 0, 0), exit},
		"ldx into r10":     {isa.Make(isa.ClassLDX|isa.ModeMEM|isa.SizeW, 10, 1, 0, 0), exit},
		"local call out":   {isa.Make(isa.OpCall, 0, isa.PseudoCallLocal, 0, 7), exit},
		"kfunc":            {isa.Make(isa.OpCall, 0, isa.PseudoKfuncCall, 0, 7), exit},
		"ja32 far":         {isa.Make(isa.OpJA32, 0, 0, 0, 1<<30), exit},
		"neg reg":          {isa.Make(isa.ClassALU64|isa.ALUNeg|isa.SrcX, 0, 1, 0, 0), exit},
		"div off 2":        {isa.Make(isa.ClassALU64|isa.ALUDiv|isa.SrcK, 0, 0, 2, 1), exit},
		"movsx32 in alu32": {isa.Make(isa.ClassALU|isa.ALUMov|isa.SrcX, 0, 1, 32, 0), exit},
		"bswap reg":        {isa.Make(isa.ClassALU64|isa.ALUEnd|isa.SrcX, 0, 0, 0, 16), exit},
		"le 8":             {isa.Make(isa.ClassALU|isa.ALUEnd, 0, 0, 0, 8), exit},
		"ldxsdw":           {isa.Make(isa.ClassLDX|isa.ModeMEMSX|isa.SizeDW, 0, 1, 0, 0), exit},
		"atomic byte add":  {isa.Make(isa.ClassSTX|isa.ModeATOMIC|isa.SizeB, 1, 2, 0, 0), exit},
		"atomic unknown":   {isa.Make(isa.OpStxAtomDW, 1, 2, 0, 0x33), exit},
		"lddw btf id":      {isa.Make(isa.OpLdDW, 0, isa.PseudoBTFID, 0, 1), isa.Make(0, 0, 0, 0, 0), exit},
		"ld abs dw":        {isa.Make(isa.ClassLD|isa.ModeABS|isa.SizeDW, 0, 0, 0, 0), exit},
		"ld abs r11":       {isa.Make(isa.ClassLD|isa.ModeIND|isa.SizeB, 0, 11, 0, 0), exit},
		"jmp32 exit":       {isa.Make(isa.ClassJMP32|isa.JmpExit, 0, 0, 0, 0), exit},
		"st atomic mode":   {isa.Make(isa.ClassST|isa.ModeATOMIC|isa.SizeW, 0, 0, 0, 0), exit},
	}
	for name, insns := range cases {
		_, err := New().Run(progOf(insns, true), nil, [5]uint64{})
		var f *program.Fault
		if !errors.As(err, &f) || f.PC != 0 || !strings.Contains(f.Reason, "invalid instruction") {
			t.Errorf("%s: %v, want a fault at instruction 0", name, err)
		}
	}
	// Dead code may hold anything.
	dead := []isa.Instruction{isa.Make(isa.OpMov64Imm, 0, 0, 0, 3), isa.Make(isa.OpJA, 0, 0, 1, 0),
		isa.Make(0xff, 0xbb, 0, 0, 0), exit, isa.Make(isa.OpLdDW, 0, 0, 0, 0)}
	if v, err := New().Run(progOf(dead, true), nil, [5]uint64{}); err != nil || v != 3 {
		t.Errorf("dead invalid code: %d, %v", v, err)
	}
	if _, err := Prepare(progOf(nil, true)); err == nil {
		t.Error("an empty program was prepared")
	}
	p := progOf([]isa.Instruction{exit}, true)
	p.Checks = p.Checks[:0]
	if _, err := Prepare(p); err == nil {
		t.Error("a program with fewer checks than instructions was prepared")
	}
}

func TestFellOff(t *testing.T) {
	_, err := run(t, "mov %r0, 1", nil)
	wantFault(t, err, "ran past the last instruction")
}

func TestRunCacheAndReuse(t *testing.T) {
	m := New()
	p1, p2 := prog(t, "mov %r0, 1\nexit", true), prog(t, "mov %r0, 2\nexit", true)
	for i := 0; i < 3; i++ {
		if v, _ := m.Run(p1, nil, [5]uint64{}); v != 1 {
			t.Fatalf("p1 = %d", v)
		}
		if v, _ := m.Run(p2, nil, [5]uint64{}); v != 2 {
			t.Fatalf("p2 = %d", v)
		}
	}
	// A fault leaves the machine usable, its frames unwound.
	bad := prog(t, "call local f\nexit\nf:\nldxb %r0, [%r10+512]\nexit", true)
	if _, err := m.Run(bad, nil, [5]uint64{}); err == nil {
		t.Fatal("no fault")
	}
	if v, err := m.Run(p1, nil, [5]uint64{}); err != nil || v != 1 {
		t.Fatalf("after a fault: %d, %v", v, err)
	}
}

func TestNilProgram(t *testing.T) {
	if _, err := New().Run(nil, nil, [5]uint64{}); err == nil {
		t.Error("Run(nil) succeeded")
	}
	if _, err := New().RunCode(nil, nil, [5]uint64{}); err == nil {
		t.Error("RunCode(nil) succeeded")
	}
	if _, err := Prepare(&program.Program{}); err == nil {
		t.Error("Prepare of an empty program succeeded")
	}
}

func TestNoAllocations(t *testing.T) {
	buf := heapBytes(64)
	env := rawEnv(t, buf)
	p := prog(t, "mov %r6, 0\nmov %r7, %r1\nl:\nldxb %r3, [%r7]\nadd %r6, %r3\ncall 5\nadd %r7, 1\njlt %r6, 50, l\nmov %r0, %r6\nexit", true)
	m := New()
	c, err := Prepare(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 1
	}
	args := [5]uint64{memory.Addr(buf), 64}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := m.RunCode(c, env, args); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}
