package verifier

import (
	"bytes"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// gen writes random programs in the shapes compiled tracing programs have: context loads, stack
// spills and fills, map lookups with and without NULL checks, map value accesses, helper calls
// with stack buffers, bounded arithmetic, forward branches and small loops, and now and then a
// mistake of the kinds the kernel refuses.
type gen struct {
	r      *rand.Rand
	insns  []isa.Instruction
	array  int32 // kernel map fds
	hash   int32
	ring   int32
	perf   int32
	ptrs   []uint8 // registers believed to hold map values
	stack  []int16 // stack offsets believed written
	mutate float64 // probability of a deliberate mistake per step
}

func (g *gen) emit(in ...isa.Instruction) { g.insns = append(g.insns, in...) }

func (g *gen) reg() uint8 { return uint8(g.r.Intn(10)) }

func (g *gen) scalarReg() uint8 { return uint8(6 + g.r.Intn(3)) } // r6..r8 survive calls; r9 keeps the context

func (g *gen) slot() int16 { return -int16(8 * (1 + g.r.Intn(16))) }

func (g *gen) bad() bool { return g.r.Float64() < g.mutate }

func (g *gen) step() {
	r := g.r
	switch r.Intn(22) {
	case 0, 1: // arithmetic on a scalar register
		d := g.scalarReg()
		ops := []uint8{isa.ALUAdd, isa.ALUSub, isa.ALUMul, isa.ALUOr, isa.ALUAnd, isa.ALULsh, isa.ALURsh, isa.ALUXor, isa.ALUArsh, isa.ALUMov, isa.ALUDiv, isa.ALUMod}
		op := ops[r.Intn(len(ops))]
		imm := int32(r.Intn(64))
		if op == isa.ALUDiv || op == isa.ALUMod {
			imm++
		}
		if r.Intn(3) == 0 {
			g.emit(alu32(op, d, imm))
		} else if r.Intn(2) == 0 {
			g.emit(alu(op, d, imm))
		} else {
			g.emit(alur(op, d, g.scalarReg()))
		}
	case 2: // context load
		off := int16(8 * r.Intn(21))
		if g.bad() {
			off = int16(r.Intn(200))
		}
		g.emit(ldx(isa.SizeDW, g.scalarReg(), 1, off))
	case 3: // spill and fill
		off := g.slot()
		if g.bad() {
			off = int16(-r.Intn(600) + 8)
		}
		g.emit(stx(isa.SizeDW, 10, g.scalarReg(), off))
		g.stack = append(g.stack, off)
		g.emit(ldx(isa.SizeDW, g.scalarReg(), 10, off))
	case 4: // narrow stack store and load
		off := g.slot() + int16(4*r.Intn(2))
		g.emit(st(isa.SizeW, 10, off, int32(r.Intn(100))))
		g.emit(ldx(isa.SizeW, g.scalarReg(), 10, off))
	case 5, 6: // map lookup, usually NULL-checked, then value accesses
		key := g.slot()
		g.emit(st(isa.SizeDW, 10, key, int32(r.Intn(4))))
		g.emit(movr(2, 10), alu(isa.ALUAdd, 2, int32(key)))
		m := g.array
		if r.Intn(2) == 0 {
			m = g.hash
		}
		g.emit(lddw(1, isa.PseudoMapFD, uint64(m))...)
		g.emit(call(int32(helper.MapLookupElem)))
		d := g.scalarReg()
		g.emit(movr(d, 0))
		skip := int16(2 + r.Intn(3))
		if !g.bad() {
			g.emit(jmp(isa.JmpJEQ, d, 0, skip))
		} else {
			g.emit(mov(0, 0))
		}
		for i := int16(0); i < skip; i++ {
			off := int16(8 * r.Intn(2))
			if g.bad() {
				off = int16(r.Intn(24))
			}
			if r.Intn(2) == 0 {
				g.emit(ldx(isa.SizeDW, 0, d, off))
			} else {
				g.emit(st(isa.SizeDW, d, off, 1))
			}
		}
		g.emit(mov(int32Reg(d), 0))
	case 7: // helper with a stack buffer and a bounded size
		buf := g.slot() - 16
		s := g.scalarReg()
		g.emit(movr(1, 10), alu(isa.ALUAdd, 1, int32(buf)))
		g.emit(movr(2, s))
		if !g.bad() {
			g.emit(alu(isa.ALUAnd, 2, 15))
		}
		g.emit(mov(3, 0), call(int32(helper.ProbeReadUser)))
	case 8: // a helper returning a number
		ids := []helper.ID{helper.KtimeGetNS, helper.GetPrandomU32, helper.GetCurrentPidTgid, helper.GetSmpProcessorID}
		g.emit(call(int32(ids[r.Intn(len(ids))])), movr(g.scalarReg(), 0))
	case 9: // forward branch over a few instructions
		n := int16(1 + r.Intn(3))
		if r.Intn(2) == 0 {
			g.emit(jmp([]uint8{isa.JmpJEQ, isa.JmpJGT, isa.JmpJSLT, isa.JmpJSET, isa.JmpJNE}[r.Intn(5)], g.scalarReg(), int32(r.Intn(10)), n))
		} else {
			g.emit(jmpr(isa.JmpJGE, g.scalarReg(), g.scalarReg(), n))
		}
		for i := int16(0); i < n; i++ {
			g.emit(alu(isa.ALUAdd, g.scalarReg(), 1))
		}
	case 10: // a bounded loop
		c := g.scalarReg()
		g.emit(mov(c, 0), alu(isa.ALUAdd, c, 1), jmp(isa.JmpJLT, c, int32(2+r.Intn(20)), -2))
	case 11: // a bounded index into the stack
		s := g.scalarReg()
		g.emit(movr(2, s), alu(isa.ALUAnd, 2, 7<<3), movr(3, 10), alur(isa.ALUAdd, 3, 2))
		if g.bad() {
			g.emit(ldx(isa.SizeDW, 0, 3, 0))
		} else {
			g.emit(ldx(isa.SizeDW, 0, 3, -64))
		}
	case 12: // pointer arithmetic, sometimes of a forbidden kind
		d := g.scalarReg()
		g.emit(movr(d, 10))
		if g.bad() {
			g.emit(alu([]uint8{isa.ALUMul, isa.ALUAnd, isa.ALUOr, isa.ALULsh}[r.Intn(4)], d, 2))
		} else {
			g.emit(alu(isa.ALUAdd, d, -8))
		}
		g.emit(mov(int32Reg(d), 0))
	case 13: // uninitialised or clobbered registers
		if g.bad() {
			g.emit(movr(g.scalarReg(), uint8(1+r.Intn(5))))
		} else {
			g.emit(mov(g.scalarReg(), int32(r.Intn(1000)-500)))
		}
	case 14, 15: // an index bounded in one of the ways compilers emit, into a map value
		g.emit(call(int32(helper.GetPrandomU32)), movr(7, 0))
		g.lookup(g.array)
		g.emit(jmp(isa.JmpJEQ, 0, 0, 7)) // skip the 7 instructions below when NULL
		g.emit(movr(6, 0), movr(2, 7))
		switch r.Intn(5) {
		case 0: // 32-bit compare
			g.emit(isa.Make(isa.ClassJMP32|isa.JmpJGT|isa.SrcK, 2, 0, 3, int32(8+r.Intn(8))))
		case 1: // signed compares
			g.emit(jmp(isa.JmpJSGT, 2, int32(8+r.Intn(8)), 3))
		case 2: // a copy bounded, the original used
			g.emit(movr(3, 2), jmp(isa.JmpJGT, 3, 15, 2))
		case 3: // sign-extension idiom
			g.emit(alu(isa.ALULsh, 2, 60), alu(isa.ALUArsh, 2, 60))
		default:
			g.emit(jmp(isa.JmpJGE, 2, int32(16+r.Intn(64)), 3))
		}
		if g.bad() {
			g.emit(alu(isa.ALUAdd, 2, 1))
		}
		g.emit(alur(isa.ALUAdd, 6, 2), ldx(isa.SizeB, 0, 6, 0))
	case 16: // a string read, its length used as an index
		buf := g.slot() - 64
		g.emit(movr(1, 10), alu(isa.ALUAdd, 1, int32(buf)), mov(2, 64), mov(3, 0),
			call(int32(helper.ProbeReadUserStr)), movr(2, 0))
		g.emit(jmp(isa.JmpJSLE, 2, 0, 4))
		if !g.bad() {
			g.emit(alu(isa.ALUAnd, 2, 63))
		} else {
			g.emit(mov(0, 0))
		}
		g.emit(movr(3, 10), alur(isa.ALUAdd, 3, 2), ldx(isa.SizeB, 0, 3, int16(buf)))
	case 17: // a ringbuf record, reserved, filled, submitted
		g.emit(lddw(1, isa.PseudoMapFD, uint64(g.ring))...)
		g.emit(mov(2, 16), mov(3, 0), call(int32(helper.RingbufReserve)))
		g.emit(jmp(isa.JmpJEQ, 0, 0, 4))
		off := int16(8 * r.Intn(2))
		if g.bad() {
			off = 16
		}
		g.emit(st(isa.SizeDW, 0, off, 7), movr(1, 0), mov(2, 0))
		if g.bad() {
			g.emit(mov(0, 0))
		} else {
			g.emit(call(int32(helper.RingbufSubmit)))
		}
	case 18: // perf_event_output of a stack record
		rec := g.slot() - 16
		g.emit(st(isa.SizeDW, 10, rec, 1), st(isa.SizeDW, 10, rec+8, 2))
		g.emit(lddw(2, isa.PseudoMapFD, uint64(g.perf))...)
		g.emit(lddw(3, 0, 0xffffffff)...)
		size := int32(16)
		if g.bad() {
			size = 24 + int32(r.Intn(600))
		}
		g.emit(movr(4, 10), alu(isa.ALUAdd, 4, int32(rec)), mov(5, size), call(int32(helper.PerfEventOutput)))
	case 19: // a variable index into the stack
		g.emit(call(int32(helper.GetPrandomU32)), alu(isa.ALUAnd, 0, 7), alu(isa.ALULsh, 0, 3))
		g.emit(movr(2, 10), alur(isa.ALUAdd, 2, 0))
		off := int16(-64)
		if g.bad() {
			off = -60
		}
		g.emit(st(isa.SizeDW, 2, off, 1))
	case 20: // jset and bit tests
		g.emit(jmp(isa.JmpJSET, g.scalarReg(), int32(1<<r.Intn(8)), 1), alu(isa.ALUAdd, g.scalarReg(), 1))
	case 21: // a read of a map value through a spilled pointer
		g.lookup(g.hash)
		g.emit(jmp(isa.JmpJEQ, 0, 0, 3), stx(isa.SizeDW, 10, 0, -8), ldx(isa.SizeDW, 6, 10, -8), ldx(isa.SizeDW, 0, 6, 8))
		g.emit(mov(6, 0))
	}
}

// lookup emits a lookup of key 1 in map fd m, leaving the result in r0.
func (g *gen) lookup(m int32) {
	key := g.slot()
	g.emit(st(isa.SizeDW, 10, key, 0), movr(2, 10), alu(isa.ALUAdd, 2, int32(key)))
	g.emit(lddw(1, isa.PseudoMapFD, uint64(m))...)
	g.emit(call(int32(helper.MapLookupElem)))
}

func int32Reg(r uint8) uint8 { return r }

func (g *gen) program() []isa.Instruction {
	g.insns = g.insns[:0]
	g.emit(movr(9, 1)) // keep ctx in r9 like compiled code; r1 is reloaded from it before each step
	for r := uint8(6); r <= 8; r++ {
		g.emit(mov(r, int32(g.r.Intn(100))))
	}
	n := 3 + g.r.Intn(12)
	for i := 0; i < n; i++ {
		g.emit(movr(1, 9))
		g.step()
	}
	g.emit(mov(0, 0), exit())
	return append([]isa.Instruction(nil), g.insns...)
}

// TestDifferentialKernel loads generated programs into the kernel and into our verifier:
// everything the kernel accepts we must accept; the agreement on refusals is reported.
func TestDifferentialKernel(t *testing.T) {
	k := newKernel(t)
	n := 3000
	if testing.Short() {
		n = 300
	}
	if s := os.Getenv("EBPFU_DIFF_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	seed := int64(1)
	if s := os.Getenv("EBPFU_DIFF_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	g := &gen{r: rand.New(rand.NewSource(seed)), mutate: 0.04}
	g.array = k.createMap(mapTypeArray, 4, 64, 4, 0)
	g.hash = k.createMap(mapTypeHash, 8, 16, 64, 0)
	g.ring = k.createMap(mapTypeRingbuf, 0, 0, 4096, 0)
	g.perf = k.createMap(mapTypePerfEventArray, 4, 4, uint32(runtime.NumCPU()), 0)
	var accepted, refusedBoth, sameErrno, kernelOnly, oursOnly int
	for i := 0; i < n; i++ {
		insns := g.program()
		klog, kerr := k.load(program.Kprobe, insns, true)
		var log bytes.Buffer
		_, err := Verify(insns, &Options{Type: program.Kprobe, Helpers: tracingHelpers(t), GPL: true,
			Log: &log, LogLevel: 1, Maps: k.resolve, PossibleCPUs: runtime.NumCPU()})
		switch {
		case kerr == 0 && err == nil:
			accepted++
		case kerr == 0:
			t.Errorf("program %d: the kernel accepts it, we refuse: %v\n%s\nour log:\n%s", i, err, dump(insns), tail(log.String(), 40))
		case err == nil:
			oursOnly++
			if oursOnly <= 3 {
				t.Logf("program %d: the kernel refuses (%v: %s), we accept", i, kerr, lastError(klog))
				if os.Getenv("EBPFU_DIFF_VERBOSE") != "" {
					t.Logf("%s\nkernel log:\n%s", dump(insns), tail(klog, 60))
				}
			}
		default:
			refusedBoth++
			if Errno(err) == kerr {
				sameErrno++
			}
			if lastError(log.String()) != lastError(klog) {
				kernelOnly++
			}
		}
	}
	t.Logf("%d programs: %d accepted by both; %d refused by both (%d with the kernel's errno, %d with another reason); %d refused by the kernel only",
		n, accepted, refusedBoth, sameErrno, kernelOnly, oursOnly)
}

// dump prints a program in the kernel's syntax for failure messages.
func dump(insns []isa.Instruction) string {
	var b bytes.Buffer
	p := &program.Program{Insns: insns}
	for i := 0; i < len(insns); i++ {
		b.WriteString(strconv.Itoa(i) + ": " + disasm(p, i) + "\n")
		if insns[i].Op == isa.OpLdDW {
			i++
		}
	}
	return b.String()
}

var _ = syscall.EINVAL
