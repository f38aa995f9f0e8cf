package jit_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

func TestStackBounds(t *testing.T) {
	// The live stack is the current frame and its callers'; the top of frame 0 is its end.
	if r, err := run(t, "stdw [%r10-512], 7\nldxdw %r0, [%r10-512]\nexit", nil); err != nil || r != 7 {
		t.Errorf("bottom of frame 0: %d, %v", r, err)
	}
	_, err := run(t, "stdw [%r10-520], 7\nmov %r0, 0\nexit", nil)
	wantFault(t, err, 0, "invalid write of 8 bytes")
	_, err = run(t, "mov %r0, 0\nstb [%r10], 1\nexit", nil)
	wantFault(t, err, 1, "invalid write of 1 bytes")
	_, err = run(t, "mov %r0, 0\nldxw %r0, [%r10-2]\nexit", nil)
	wantFault(t, err, 1, "invalid read of 4 bytes")
	// In a subprogram the caller's frame is live, the frames below the current one are not.
	src := `
mov %r6, %r10
stdw [%r10-8], 5
call local f
exit
f:
ldxdw %r0, [%r6-8]
stdw [%r10-512], 1
ldxdw %r1, [%r10-512]
add %r0, %r1
exit`
	if r, err := run(t, src, nil); err != nil || r != 6 {
		t.Errorf("caller's frame from a subprogram: %d, %v", r, err)
	}
	_, err = run(t, "call local f\nexit\nf:\nmov %r0, 0\nstb [%r10-513], 1\nexit", nil)
	wantFault(t, err, 3, "invalid write of 1 bytes")
	// A variable offset that reaches the bottom of the stack from frame 0.
	mem := heapBytes(1)
	mem[0] = 1
	_, err = run(t, "mov %r0, 0\nldxb %r2, [%r1]\nlsh %r2, 12\nmov %r3, %r10\nsub %r3, %r2\nstb [%r3], 1\nexit",
		rawEnv(t, mem), memory.Addr(mem))
	wantFault(t, err, 5, "invalid write")
}

func TestMemRegions(t *testing.T) {
	// One allocation, so that what lies around the regions is known not to be a region.
	all := heapBytes(256)
	mem := all[64:80:80]
	ro := all[128:136:136]
	ro[3] = 9
	env := rawEnv(t, mem)
	if err := env.Mem.AddBytes(ro, false); err != nil {
		t.Fatal(err)
	}
	args := []uint64{memory.Addr(mem), memory.Addr(ro)}
	if r, err := run(t, "stdw [%r1+8], 3\nldxdw %r0, [%r1+8]\nldxb %r3, [%r2+3]\nadd %r0, %r3\nexit", env, args...); err != nil || r != 12 {
		t.Errorf("regions 0 and 1: %d, %v", r, err)
	}
	_, err := run(t, "mov %r0, 0\nstb [%r2], 1\nexit", env, args...)
	wantFault(t, err, 1, "invalid write of 1 bytes")
	_, err = run(t, "ldxdw %r0, [%r1+9]\nexit", env, args...)
	wantFault(t, err, 0, "invalid read of 8 bytes")
	_, err = run(t, "ldxh %r0, [%r2+7]\nexit", env, args...)
	wantFault(t, err, 0, "invalid read of 2 bytes")
	_, err = run(t, "mov %r0, 0\nlddw %r1, 0xffffffffffffffff\nldxb %r0, [%r1]\nexit", env, args...)
	wantFault(t, err, 3, "invalid read of 1 bytes")
	_, err = run(t, "mov %r0, 0\nldxdw %r0, [%r1-8]\nexit", env, args...)
	wantFault(t, err, 1, "invalid read")
	// A read-only region 0 refuses writes inline too.
	env2 := rawEnv(t, nil)
	if err := env2.Mem.AddBytes(ro, false); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "mov %r0, 0\nstw [%r1], 1\nexit", env2, memory.Addr(ro))
	wantFault(t, err, 1, "invalid write of 4 bytes")
	if r, err := run(t, "ldxw %r0, [%r1]\nexit", env2, memory.Addr(ro)); err != nil || r != 9<<24 {
		t.Errorf("read-only region 0: %#x, %v", r, err)
	}
	// No region at all.
	_, err = run(t, "ldxb %r0, [%r1]\nexit", &helper.Env{}, 4096)
	wantFault(t, err, 0, "invalid read")
	// Sixteen regions, the last one hit.
	env3 := &helper.Env{}
	bufs := make([][]byte, memory.MaxRegions)
	for i := range bufs {
		bufs[i] = heapBytes(8)
		bufs[i][0] = byte(i)
		if err := env3.Mem.AddBytes(bufs[i], true); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := run(t, "ldxb %r0, [%r1]\nexit", env3, memory.Addr(bufs[15])); err != nil || r != 15 {
		t.Errorf("sixteenth region: %d, %v", r, err)
	}
}

func TestBudget(t *testing.T) {
	src := "mov %r0, 0\nl:\nadd %r0, 1\njlt %r0, 1000, l\nexit"
	env := rawEnv(t, nil)
	if r, err := run(t, src, env); err != nil || r != 1000 {
		t.Fatalf("without a budget: %d, %v", r, err)
	}
	// The loop charges 2 per taken back-edge: 999 of them need 1998.
	env.Budget = 1998
	if r, err := run(t, src, env); err != nil || r != 1000 {
		t.Errorf("budget 1998: %d, %v", r, err)
	}
	env.Budget = 1997
	_, err := run(t, src, env)
	wantFault(t, err, 2, "instruction budget of 1997 exhausted")
	env.Budget = 5
	_, err = run(t, "mov %r0, 0\nl:\nja l\nexit", env)
	wantFault(t, err, 1, "budget")
	// The budget survives helper calls (it waits in the block meanwhile).
	env.Budget = 100
	_, err = run(t, "mov %r6, 0\nl:\ncall 5\nadd %r6, 1\njlt %r6, 1000, l\nmov %r0, 0\nexit", env)
	wantFault(t, err, 3, "budget")
}

// TestBudgetAgreesWithInterpreter checks the budget faults at the same instruction, budget
// after budget.
func TestBudgetAgreesWithInterpreter(t *testing.T) {
	insns := asm(t, `
mov %r0, 0
mov %r1, 0
outer:
mov %r2, 0
inner:
add %r0, %r2
add %r2, 1
jlt %r2, 7, inner
add %r1, 1
jlt %r1, 5, outer
exit`)
	p := progOf(insns, false)
	f := load(t, p)
	m := interp.New()
	for budget := uint64(1); budget < 120; budget++ {
		env := &helper.Env{Budget: budget}
		r1, err1 := m.Run(p, env, [5]uint64{})
		r2, err2 := f.Run(env, [5]uint64{})
		if r1 != r2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Errorf("budget %d: interpreter %d, %v; JIT %d, %v", budget, r1, err1, r2, err2)
		}
	}
}

func TestCallDepth(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 7; i++ {
		fmt.Fprintf(&b, "call local f%d\nexit\nf%d:\n", i, i)
	}
	b.WriteString("mov %r0, 42\nstdw [%r10-8], 1\nexit\n")
	if r, err := run(t, b.String(), nil); err != nil || r != 42 {
		t.Errorf("eight frames: %d, %v", r, err)
	}
	var deep strings.Builder
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&deep, "call local f%d\nexit\nf%d:\n", i, i)
	}
	deep.WriteString("mov %r0, 42\nexit\n")
	_, err := run(t, deep.String(), nil)
	wantFault(t, err, 14, "call depth exceeds 8 frames")
	// Callee-saved registers survive calls, r10 comes back.
	src := `
mov %r6, 1
mov %r7, 2
mov %r8, 3
mov %r9, 4
stdw [%r10-8], 100
call local f
add %r0, %r6
add %r0, %r7
add %r0, %r8
add %r0, %r9
ldxdw %r1, [%r10-8]
add %r0, %r1
exit
f:
mov %r6, 10
mov %r7, 20
mov %r8, 30
mov %r9, 40
stdw [%r10-8], 1000
mov %r0, 0
exit`
	if r, err := run(t, src, nil); err != nil || r != 110 {
		t.Errorf("callee-saved registers: %d, %v", r, err)
	}
}

func TestHelpers(t *testing.T) {
	env := rawEnv(t, nil)
	var seen [5]uint64
	if err := env.Helpers.Register(helper.GetPrandomU32, func(_ *helper.Env, a *[5]uint64) (uint64, error) {
		seen = *a
		return a[0] + a[1] + a[2] + a[3] + a[4], nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := env.Helpers.Register(helper.TracePrintk, func(*helper.Env, *[5]uint64) (uint64, error) {
		return 0, errors.New("no trace pipe")
	}); err != nil {
		t.Fatal(err)
	}
	src := "mov %r6, 7\nmov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 7\nadd %r0, %r6\nexit"
	if r, err := run(t, src, env); err != nil || r != 22 || seen != [5]uint64{1, 2, 3, 4, 5} {
		t.Errorf("helper 7: %d, %v, args %v", r, err, seen)
	}
	if r, err := run(t, "mov %r1, 7\ncall %r1\nexit", env); err != nil || r != 7 {
		t.Errorf("callx 7: %d, %v", r, err)
	}
	_, err := run(t, "mov %r0, 0\ncall 6\nexit", env)
	wantFault(t, err, 1, "helper 6 (bpf_trace_printk): no trace pipe")
	_, err = run(t, "mov %r0, 0\ncall 8\nexit", env)
	wantFault(t, err, 1, "which this run does not offer")
	_, err = run(t, "mov %r1, 100000\ncall %r1\nexit", env)
	wantFault(t, err, 1, "unknown helper")
	_, err = run(t, "lddw %r1, -1\ncall %r1\nexit", env)
	wantFault(t, err, 2, "unknown helper")
	// A helper that gets a stack pointer may use it through env.Mem.
	if err := env.Helpers.Register(helper.GetCurrentComm, func(env *helper.Env, a *[5]uint64) (uint64, error) {
		b, ok := env.Mem.Bytes(a[0], a[1], true)
		if !ok {
			return 0, errors.New("not writable")
		}
		copy(b, "jit")
		return 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := run(t, "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 16\nldxb %r0, [%r10-8]\nexit", env); err != nil || r != 'j' {
		t.Errorf("helper writing the stack: %d, %v", r, err)
	}
	// Many helper calls in a loop, with a subprogram.
	src = "mov %r6, 0\nmov %r7, 0\nl:\ncall local f\nadd %r7, %r0\nadd %r6, 1\njlt %r6, 10000, l\nmov %r0, %r7\nexit\nf:\ncall 5\nexit"
	if r, err := run(t, src, env); err != nil || r != 420000 {
		t.Errorf("10000 helper calls: %d, %v", r, err)
	}
}

func TestMaps(t *testing.T) {
	val := heapBytes(16)
	val[4] = 0x55
	env := rawEnv(t, nil)
	if err := env.Mem.AddBytes(val, true); err != nil {
		t.Fatal(err)
	}
	env.Maps = []uint64{0x1111, 0x2222}
	env.MapValues = []uint64{0, memory.Addr(val)}
	insns := []isa.Instruction{
		isa.Make(isa.OpLdDW, isa.R1, isa.PseudoMapFD, 0, 1), {},
		isa.Make(isa.OpLdDW, isa.R2, isa.PseudoMapValue, 0, 1), isa.Make(0, 0, 0, 0, 4),
		isa.Make(isa.ClassLDX|isa.ModeMEM|isa.SizeB, isa.R0, isa.R2, 0, 0),
		isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcX, isa.R0, isa.R1, 0, 0),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}
	p := progOf(insns, true)
	p.Maps = make([]program.MapInfo, 2)
	if r, err := runJIT(t, p, env, [5]uint64{}); err != nil || r != 0x2222+0x55 {
		t.Errorf("map and map value: %#x, %v", r, err)
	}
	env.MapValues = []uint64{memory.Addr(val)}
	_, err := runJIT(t, p, env, [5]uint64{})
	wantFault(t, err, 2, "no direct value access")
	env.Maps = env.Maps[:1]
	_, err = runJIT(t, p, env, [5]uint64{})
	wantFault(t, err, 0, "maps in the run's environment")
}

func TestAtomicsAlignment(t *testing.T) {
	_, err := run(t, "stdw [%r10-16], 0\nstdw [%r10-8], 0\nmov %r1, 1\nlock add [%r10-12], %r1\nmov %r0, 0\nexit", nil)
	wantFault(t, err, 3, "misaligned atomic access of 8 bytes")
	mem := heapBytes(16)
	_, err = run(t, "mov %r2, 1\nlock xchg32 [%r1+2], %r2\nmov %r0, 0\nexit", rawEnv(t, mem), memory.Addr(mem))
	wantFault(t, err, 1, "misaligned atomic access of 4 bytes")
	src := `
stdw [%r10-8], 5
mov %r0, 5
mov %r1, 9
lock cmpxchg [%r10-8], %r1
mov %r2, 3
lock fetch or [%r10-8], %r2
mov %r3, 0
lock fetch and32 [%r10-8], %r3
ldxdw %r4, [%r10-8]
add %r0, %r2
add %r0, %r3
add %r0, %r4
exit`
	// r0 = 5 (cmpxchg old), r2 = 9 (or's old), r3 = 11 (and's old, 32-bit), r4 = 0.
	if r, err := run(t, src, nil); err != nil || r != 25 {
		t.Errorf("atomics: %d, %v", r, err)
	}
}

func TestCompileRefuses(t *testing.T) {
	ex := isa.Make(isa.OpExit, 0, 0, 0, 0)
	for name, insns := range map[string][]isa.Instruction{
		"write to r10":      {isa.Make(isa.OpMov64Imm, isa.R10, 0, 0, 0), ex},
		"register 11":       {isa.Make(isa.OpMov64Imm, 11, 0, 0, 0), ex},
		"jump out":          {isa.Make(isa.OpJA, 0, 0, 5, 0), ex},
		"jump before":       {isa.Make(isa.OpJA, 0, 0, -3, 0), ex},
		"into lddw":         {isa.Make(isa.OpJA, 0, 0, 1, 0), isa.Make(isa.OpLdDW, 0, 0, 0, 1), {}, ex},
		"truncated lddw":    {ex, isa.Make(isa.OpLdDW, 0, 0, 0, 1)},
		"kfunc":             {isa.Make(isa.OpCall, 0, isa.PseudoKfuncCall, 0, 1), ex},
		"packet load of 8":  {isa.Make(isa.ClassLD|isa.ModeABS|isa.SizeDW, 0, 0, 0, 1), ex},
		"unknown ALU":       {isa.Make(0xe7, 0, 0, 0, 0), ex},
		"byte swap 8":       {isa.Make(isa.ClassALU|isa.ALUEnd, 0, 0, 0, 8), ex},
		"atomic 2 bytes":    {isa.Make(isa.ClassSTX|isa.ModeATOMIC|isa.SizeH, 10, 1, -8, isa.AtomicAdd), ex},
		"fetch into r10":    {isa.Make(isa.ClassSTX|isa.ModeATOMIC|isa.SizeDW, 1, 10, 0, isa.AtomicXchg), ex},
		"map out of range":  {isa.Make(isa.OpLdDW, 0, isa.PseudoMapFD, 0, 3), {}, ex},
		"lddw of a BTF id":  {isa.Make(isa.OpLdDW, 0, isa.PseudoBTFID, 0, 1), {}, ex},
		"call to no func":   {isa.Make(isa.OpCall, 0, isa.PseudoCallLocal, 0, 0), ex, ex},
		"negative helper":   {isa.Make(isa.OpCall, 0, 0, 0, -1), ex},
		"movsx 32 in ALU32": {isa.Make(isa.ClassALU|isa.ALUMov|isa.SrcX, 0, 1, 32, 0), ex},
		"sdiv off 2":        {isa.Make(isa.ClassALU64|isa.ALUDiv, 0, 0, 2, 1), ex},
	} {
		p := progOf(insns, true)
		if name == "call to no func" {
			p.Funcs = []program.Func{{Start: 0, End: 3}}
		}
		if _, err := jit.Compile(p); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	if _, err := jit.Compile(&program.Program{}); err == nil {
		t.Error("empty program compiled")
	}
}

// TestConcurrentRuns runs one loaded program from many goroutines at once.
func TestConcurrentRuns(t *testing.T) {
	f := load(t, progOf(asm(t, "mov %r6, %r1\nmov %r0, 0\nl:\nadd %r0, 1\njlt %r0, 100000, l\ncall 5\nadd %r0, %r6\nexit"), true))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			env := rawEnv(t, nil)
			for i := range 50 {
				start := uint64(g*1000 + i)
				r, err := f.Run(env, [5]uint64{start})
				if err != nil || r != 42+start {
					errs <- fmt.Errorf("goroutine %d run %d: %d, %v", g, i, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPreemptionAndGC runs long loops and helper-heavy programs on several goroutines while
// the garbage collector runs continuously and the scheduler preempts (SIGURG lands in compiled
// code; async preemption is on by default). Any mistake in the switch between stacks crashes
// the process here.
func TestPreemptionAndGC(t *testing.T) {
	loop := load(t, progOf(asm(t, "mov %r0, 0\nl:\nadd %r0, 3\nxor %r0, 1\njlt %r0, 30000000, l\nexit"), false))
	helpers := load(t, progOf(asm(t, "mov %r6, 0\nmov %r7, 0\nl:\ncall 5\nadd %r7, %r0\nadd %r6, 1\njlt %r6, 20000, l\nmov %r0, %r7\nexit"), false))
	straight := load(t, progOf(asm(t, "mov %r0, 1\nadd %r0, %r1\nexit"), false))
	done := make(chan struct{})
	var gcs sync.WaitGroup
	gcs.Go(func() { // allocate and collect all the time
		var keep [][]byte
		for {
			select {
			case <-done:
				return
			default:
			}
			keep = append(keep, make([]byte, 64<<10))
			if len(keep) > 64 {
				keep = keep[:0]
				runtime.GC()
			}
		}
	})
	deadline := time.Now().Add(3 * time.Second)
	if testing.Short() {
		deadline = time.Now().Add(500 * time.Millisecond)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 6 {
		wg.Go(func() {
			env := rawEnv(t, nil)
			for n := 0; time.Now().Before(deadline); n++ {
				var r, want uint64
				var err error
				switch (g + n) % 3 {
				case 0:
					r, err = loop.Run(env, [5]uint64{})
					want = 30000000
				case 1:
					r, err = helpers.Run(env, [5]uint64{})
					want = 42 * 20000
				default:
					r, err = straight.Run(env, [5]uint64{uint64(n)})
					want = uint64(n) + 1
				}
				if err != nil || r != want {
					errs <- fmt.Errorf("goroutine %d run %d: %d, %v; want %d", g, n, r, err, want)
					return
				}
			}
		})
	}
	// Meanwhile, a stop-the-world phase must not wait for the long loops.
	for time.Now().Before(deadline) {
		start := time.Now()
		runtime.GC()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("runtime.GC took %v while compiled loops ran", d)
		}
	}
	wg.Wait()
	close(done)
	gcs.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// pkt is a packet for the legacy packet loads.
type pkt []byte

func (p pkt) Packet() []byte { return p }

func TestPacketLoads(t *testing.T) {
	m := interp.New()
	packet := pkt{0x12, 0x34, 0x56, 0x78, 0x9a}
	for _, c := range []struct {
		src  string
		data any
		want uint64
		pc   int // of the fault, -1 for none
	}{
		{"ldabsb 1\nexit", packet, 0x34, -1},
		{"ldabsh 1\nexit", packet, 0x3456, -1},
		{"ldabsw 1\nexit", packet, 0x3456789a, -1},
		{"ldabsw 2\nexit", packet, 0, -1},
		{"ldabsb 5\nexit", packet, 0, -1},
		{"ldabsb -1\nexit", packet, 0, -1},
		{"mov %r6, 2\nldindh %r6, 1\nexit", packet, 0x789a, -1},
		{"mov %r6, -1\nldindb %r6, 1\nexit", packet, 0x12, -1},
		{"mov %r6, 4\nldindh %r6, 0\nexit", packet, 0, -1},
		{"mov %r1, 7\nldabsb 0\nadd %r0, %r1\nexit", packet, 0x19, -1},
		{"ldabsb 0\nexit", pkt{}, 0, -1},
		{"ldabsb 0\nexit", nil, 0, 0},
		{"call local f\nmov %r0, 9\nexit\nf:\nldabsb 9\nexit", packet, 0, -1},
	} {
		p := progOf(asm(t, c.src), true)
		for k, runner := range []func() (uint64, error){
			func() (uint64, error) { return m.Run(p, &helper.Env{Data: c.data}, [5]uint64{}) },
			func() (uint64, error) { return runJIT(t, p, &helper.Env{Data: c.data}, [5]uint64{}) },
		} {
			r, err := runner()
			if c.pc >= 0 {
				wantFault(t, err, c.pc, "packet load in a run without a packet")
				continue
			}
			if err != nil || r != c.want {
				t.Errorf("%q (executor %d): %#x, %v; want %#x", c.src, k, r, err, c.want)
			}
		}
	}
}

func TestFunctionReference(t *testing.T) {
	insns := []isa.Instruction{
		isa.Make(isa.OpLdDW, isa.R0, isa.PseudoFunc, 0, 2), {},
		isa.Make(isa.OpExit, 0, 0, 0, 0),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}
	p := progOf(insns, false)
	p.Funcs = []program.Func{{Start: 0, End: 3}, {Start: 3, End: 4}}
	if r, err := runJIT(t, p, nil, [5]uint64{}); err != nil || r != 3 {
		t.Errorf("lddw of a function: %d, %v", r, err)
	}
}

// TestPositionIndependent compiles a program twice (the same bytes: nothing of the process goes
// into them) and runs two mappings of the code, at two addresses, with the same results.
func TestPositionIndependent(t *testing.T) {
	p := program1000()
	c1, err := jit.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := jit.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(c1.Text) != string(c2.Text) {
		t.Fatal("two compilations differ")
	}
	mem := heapBytes(128)
	env := rawEnv(t, mem)
	var results []uint64
	for _, c := range []*jit.Code{c1, c2} {
		f, err := jit.Load(c)
		if err != nil {
			t.Fatal(err)
		}
		r, err := f.Run(env, [5]uint64{memory.Addr(mem), 128})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r, binaryHash(mem))
		clear(mem)
		f.Close()
	}
	if results[0] != results[2] || results[1] != results[3] {
		t.Errorf("two mappings disagree: %v", results)
	}
}

func binaryHash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, x := range b {
		h = (h ^ uint64(x)) * 1099511628211
	}
	return h
}
