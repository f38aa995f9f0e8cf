package jit_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
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

// The differential tests run random programs through the interpreter and the JIT and require
// the same outcome: the same r0 and memory, or a fault at the same instruction. Those the
// verifier accepts run a second time as it prepares them (their accesses unchecked). The
// programs are unverified but safe to run: every memory access is checked at run time, so both executors
// stop the same bad accesses; registers are initialised before use; jumps stay inside their
// function; loops are bounded by a budget both executors count alike.

// bytesReader hands out the fuzzer's bytes, then zeros.
type bytesReader struct {
	b []byte
}

func (r *bytesReader) u8() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *bytesReader) u32() uint32 {
	return uint32(r.u8()) | uint32(r.u8())<<8 | uint32(r.u8())<<16 | uint32(r.u8())<<24
}

func (r *bytesReader) done() bool { return len(r.b) == 0 }

// interesting are immediates that exercise edge cases.
var interesting = []int32{0, 1, -1, 2, 7, 8, 31, 32, 63, 64, 0x7fffffff, -0x80000000, 0xff, 0xffff, -2, 16}

func (r *bytesReader) imm() int32 {
	if v := r.u8(); v < 128 {
		return interesting[int(v)%len(interesting)]
	}
	return int32(r.u32())
}

// gen builds a program from the fuzzer's bytes: a main function and up to two subprograms,
// each starting by zeroing its stack frame and giving r0-r9 known values.
type gen struct {
	r     *bytesReader
	out   []isa.Instruction
	funcs []int // start of each function
}

func (g *gen) emit(i ...isa.Instruction) { g.out = append(g.out, i...) }

func (g *gen) mov64(dst uint8, v int32) {
	g.emit(isa.Make(isa.OpMov64Imm, dst, 0, 0, v))
}

// prologue zeroes the frame and sets the registers a function may read.
func (g *gen) prologue(main bool) {
	for off := int16(-512); off < 0; off += 8 {
		g.emit(isa.Make(isa.ClassST|isa.ModeMEM|isa.SizeDW, isa.R10, 0, off, 0))
	}
	for reg := uint8(0); reg <= 9; reg++ {
		if main && (reg == 1 || reg == 2) { // the memory and its length
			continue
		}
		g.mov64(reg, g.r.imm())
	}
}

// reg picks a register the program may write (r0-r9), leaving r1 alone most of the time so
// that memory accesses through it mostly succeed.
func (g *gen) reg() uint8 {
	v := g.r.u8() % 12
	if v >= 10 {
		return isa.R0 + v - 10
	}
	if v == 1 && g.r.u8()%4 != 0 {
		return isa.R3
	}
	return v
}

// body emits up to n instructions of function k, whose last index is end (exit goes there).
func (g *gen) body(k int, n int) {
	start := len(g.out)
	type pending struct{ at, to int }
	var jumps []pending // jumps whose target (instruction count from start) is fixed up at the end
	for i := 0; i < n && !g.r.done(); i++ {
		sel := g.r.u8()
		switch {
		case sel < 80: // ALU
			g.alu()
		case sel < 90: // an address computation: mov, then add or sub (fused into lea)
			dst, src := g.reg(), g.reg() // never r10: stack addresses differ between the executors
			g.emit(isa.Make(isa.OpMov64Reg, dst, src, 0, 0))
			switch g.r.u8() % 3 {
			case 0:
				g.emit(isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcK, dst, 0, 0, g.r.imm()))
			case 1:
				g.emit(isa.Make(isa.ClassALU64|isa.ALUSub|isa.SrcK, dst, 0, 0, g.r.imm()))
			default:
				g.emit(isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcX, dst, g.reg(), 0, 0))
			}
		case sel < 130: // conditional or unconditional jump, usually forward
			op := []uint8{isa.JmpJEQ, isa.JmpJGT, isa.JmpJGE, isa.JmpJSET, isa.JmpJNE, isa.JmpJSGT,
				isa.JmpJSGE, isa.JmpJLT, isa.JmpJLE, isa.JmpJSLT, isa.JmpJSLE, isa.JmpJA}[g.r.u8()%12]
			class := isa.ClassJMP
			if g.r.u8()%3 == 0 {
				class = isa.ClassJMP32
			}
			src := isa.SrcK
			if g.r.u8()%2 == 0 {
				src = isa.SrcX
			}
			if op == isa.JmpJA {
				class, src = isa.ClassJMP, isa.SrcK
			}
			dist := int(g.r.u8()%16) + 1
			if g.r.u8()%8 == 0 {
				dist = -dist // a loop: the budget ends it if nothing else does
			}
			here := len(g.out) - start
			to := here + dist
			if to < 0 {
				to = 0
			}
			jumps = append(jumps, pending{at: len(g.out), to: to})
			g.emit(isa.Make(class|op|src, g.reg(), g.reg(), 0, g.r.imm()))
		case sel < 180: // load or store, through the memory, the stack or any register
			g.mem()
		case sel < 195: // atomic
			g.atomic()
		case sel < 205: // lddw
			v := uint64(g.r.u32()) | uint64(g.r.u32())<<32
			g.emit(isa.Make(isa.OpLdDW, g.reg(), 0, 0, int32(uint32(v))), isa.Make(0, 0, 0, 0, int32(uint32(v>>32))))
		case sel < 220: // helper call, by number or callx
			if g.r.u8()%2 == 0 {
				g.emit(isa.Make(isa.OpCall, 0, isa.PseudoCallHelper, 0, int32([]int{5, 7, 6, 0}[g.r.u8()%4])))
			} else {
				r := g.reg()
				g.mov64(r, int32([]int{5, 7, 6, 1000, -1}[g.r.u8()%5]))
				g.emit(isa.Make(isa.OpCallX, r, 0, 0, 0))
			}
			for reg := uint8(1); reg <= 5; reg++ { // r1-r5 are clobbered
				g.mov64(reg, g.r.imm())
			}
		case sel < 225: // legacy packet load into r0
			sz := []uint8{isa.SizeB, isa.SizeH, isa.SizeW}[g.r.u8()%3]
			imm := int32(g.r.u8()%24) - 2
			if g.r.u8()%2 == 0 {
				g.emit(isa.Make(isa.ClassLD|isa.ModeABS|sz, 0, 0, 0, imm))
			} else {
				g.emit(isa.Make(isa.ClassLD|isa.ModeIND|sz, 0, g.reg(), 0, imm))
			}
		case sel < 235 && k < len(g.funcs)-1: // call a later subprogram
			to := k + 1 + int(g.r.u8())%(len(g.funcs)-1-k)
			g.emit(isa.Make(isa.OpCall, 0, isa.PseudoCallLocal, 0, int32(to))) // fixed up below
			for reg := uint8(1); reg <= 5; reg++ {
				g.mov64(reg, g.r.imm())
			}
		default:
			g.emit(isa.Make(isa.OpExit, 0, 0, 0, 0))
		}
	}
	g.emit(isa.Make(isa.OpExit, 0, 0, 0, 0))
	end := len(g.out) - 1
	for _, j := range jumps {
		t := start + j.to
		if t > end {
			t = end
		}
		// Never into the second slot of an lddw.
		for t > start && g.out[t-1].Op == isa.OpLdDW && (t-2 < start || g.out[t-2].Op != isa.OpLdDW) {
			t--
		}
		g.out[j.at].Off = int16(t - j.at - 1)
	}
}

func (g *gen) alu() {
	ops := []uint8{isa.ALUAdd, isa.ALUSub, isa.ALUMul, isa.ALUDiv, isa.ALUOr, isa.ALUAnd, isa.ALULsh,
		isa.ALURsh, isa.ALUNeg, isa.ALUMod, isa.ALUXor, isa.ALUMov, isa.ALUArsh, isa.ALUEnd}
	op := ops[int(g.r.u8())%len(ops)]
	class := isa.ClassALU64
	if g.r.u8()%2 == 0 {
		class = isa.ClassALU
	}
	src := isa.SrcK
	if g.r.u8()%2 == 0 {
		src = isa.SrcX
	}
	var off int16
	imm := g.r.imm()
	switch op {
	case isa.ALUDiv, isa.ALUMod:
		off = int16(g.r.u8() % 2)
	case isa.ALUMov:
		if src == isa.SrcX && g.r.u8()%3 == 0 {
			off = []int16{8, 16, 32}[g.r.u8()%3]
			if class == isa.ClassALU && off == 32 {
				off = 16
			}
		}
	case isa.ALUNeg:
		src = isa.SrcK
	case isa.ALUEnd:
		imm = []int32{16, 32, 64}[g.r.u8()%3]
		if class == isa.ClassALU64 {
			src = isa.SrcK
		}
	}
	g.emit(isa.Make(class|op|src, g.reg(), g.reg(), off, imm))
}

// base picks the base register of a memory access and an offset: mostly the memory (r1) or
// the stack (r10) at plausible offsets, sometimes anything.
func (g *gen) base(size int) (uint8, int16) {
	switch g.r.u8() % 8 {
	case 0, 1, 2:
		return isa.R1, int16(int(g.r.u8())%(memSize+8) - 4)
	case 3, 4, 5:
		return isa.R10, int16(-int(g.r.u8())*4%600 + 40)
	case 6:
		return isa.R10, int16(int(g.r.u8())*size%512 - 512)
	default:
		return g.reg(), int16(g.r.u32())
	}
}

func (g *gen) mem() {
	sizes := []uint8{isa.SizeB, isa.SizeH, isa.SizeW, isa.SizeDW}
	sz := sizes[g.r.u8()%4]
	b, off := g.base(isa.Bytes(sz))
	switch g.r.u8() % 4 {
	case 0:
		g.emit(isa.Make(isa.ClassLDX|isa.ModeMEM|sz, g.reg(), b, off, 0))
	case 1:
		if sz == isa.SizeDW {
			sz = isa.SizeW
		}
		g.emit(isa.Make(isa.ClassLDX|isa.ModeMEMSX|sz, g.reg(), b, off, 0))
	case 2:
		g.emit(isa.Make(isa.ClassST|isa.ModeMEM|sz, b, 0, off, g.r.imm()))
	default:
		g.emit(isa.Make(isa.ClassSTX|isa.ModeMEM|sz, b, g.reg(), off, 0))
	}
}

func (g *gen) atomic() {
	ops := []int32{isa.AtomicAdd, isa.AtomicOr, isa.AtomicAnd, isa.AtomicXor,
		isa.AtomicAdd | isa.AtomicFetch, isa.AtomicOr | isa.AtomicFetch, isa.AtomicAnd | isa.AtomicFetch,
		isa.AtomicXor | isa.AtomicFetch, isa.AtomicXchg, isa.AtomicCmpXchg, isa.AtomicLoadAcq, isa.AtomicStoreRel}
	op := ops[int(g.r.u8())%len(ops)]
	sz := isa.SizeDW
	if g.r.u8()%2 == 0 {
		sz = isa.SizeW
	}
	if op == isa.AtomicLoadAcq || op == isa.AtomicStoreRel {
		sz = []uint8{isa.SizeB, isa.SizeH, isa.SizeW, isa.SizeDW}[g.r.u8()%4]
	}
	b, off := g.base(isa.Bytes(sz))
	off &^= int16(isa.Bytes(sz) - 1) // mostly aligned (the base may not be)
	if g.r.u8()%8 == 0 {
		off++
	}
	if op == isa.AtomicLoadAcq { // dst = *(src + off)
		g.emit(isa.Make(isa.ClassSTX|isa.ModeATOMIC|sz, g.reg(), b, off, op))
		return
	}
	g.emit(isa.Make(isa.ClassSTX|isa.ModeATOMIC|sz, b, g.reg(), off, op))
}

const memSize = 64

// genProgram builds a program with up to three functions from data.
func genProgram(data []byte) *program.Program {
	g := &gen{r: &bytesReader{b: data}}
	nfuncs := 1 + int(g.r.u8()%3)
	g.funcs = make([]int, nfuncs)
	sizes := make([]int, nfuncs)
	for k := range sizes {
		sizes[k] = 1 + int(g.r.u8()%64)
	}
	for k := 0; k < nfuncs; k++ {
		g.funcs[k] = len(g.out)
		g.prologue(k == 0)
		g.body(k, sizes[k])
	}
	// Local calls were emitted with the callee's function index; make them relative.
	for pc, ins := range g.out {
		if ins.Op == isa.OpCall && ins.Src() == isa.PseudoCallLocal {
			g.out[pc].Imm = int32(g.funcs[ins.Imm] - pc - 1)
		}
	}
	p := &program.Program{Type: program.Raw, Insns: g.out, Checks: make([]program.Check, len(g.out)), Loops: true}
	for i := range p.Checks {
		p.Checks[i] = program.CheckBounds
	}
	for k, start := range g.funcs {
		end := len(g.out)
		if k+1 < len(g.funcs) {
			end = g.funcs[k+1]
		}
		p.Funcs = append(p.Funcs, program.Func{Start: start, End: end, StackDepth: isa.StackSize})
	}
	return p
}

// diffEnv is the environment of a differential run: the memory, helper 5 (a constant) and
// helper 7 (a function of its arguments), a packet, a budget.
func diffEnv(t testing.TB, mem []byte) *helper.Env {
	env := rawEnv(t, mem)
	if err := env.Helpers.Register(helper.GetPrandomU32, func(_ *helper.Env, a *[5]uint64) (uint64, error) {
		return a[0]*3 ^ a[1]*5 ^ a[2]*7 ^ a[3]*11 ^ a[4]*13, nil
	}); err != nil {
		t.Fatal(err)
	}
	env.Budget = 5000
	env.Data = pkt{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
	return env
}

// outcome is what a run produced.
type outcome struct {
	r0      uint64
	faultPC int // -1 without a fault
	mem     []byte
	err     error
}

func (o outcome) same(p outcome) bool {
	if o.faultPC != p.faultPC || !bytes.Equal(o.mem, p.mem) {
		return false
	}
	return o.faultPC >= 0 || o.r0 == p.r0
}

// differential runs p through both executors on the same memory and compares.
func differential(t *testing.T, m *interp.Machine, p *program.Program, seed []byte) {
	t.Helper()
	mem := heapBytes(memSize)
	run := func(jitted bool) outcome {
		copy(mem, seed)
		env := diffEnv(t, mem)
		args := [5]uint64{memory.Addr(mem), memSize}
		var o outcome
		if jitted {
			compile := jit.Compile
			if len(p.Insns)%2 == 1 { // half the programs as for a processor without BMI2
				compile = jit.CompileWithoutBMI2
			}
			c, err := compile(p)
			if err != nil {
				t.Fatalf("compile: %v\n%s", err, conformance.Disassemble(p.Insns))
			}
			f, err := jit.Load(c)
			if err != nil {
				t.Fatal(err)
			}
			o.r0, o.err = f.Run(env, args)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		} else {
			o.r0, o.err = m.Run(p, env, args)
		}
		o.faultPC = -1
		var f *program.Fault
		if errors.As(o.err, &f) {
			o.faultPC = f.PC
		} else if o.err != nil {
			t.Fatalf("jit %v: %v", jitted, o.err)
		}
		o.mem = append([]byte(nil), mem...)
		return o
	}
	// A program may read the stack below what it wrote (when it calls helpers, the whole stack
	// is one of its regions) and see what earlier runs left there, which differs between the
	// executors: compare only outcomes that do not depend on it.
	clear(m.Stack())
	want := run(false)
	for i := range m.Stack() {
		m.Stack()[i] = 0xa5
	}
	if again := run(false); !again.same(want) {
		return
	}
	got := run(true)
	if !got.same(want) {
		t.Fatalf("interpreter: r0 %#x, %v\nJIT:         r0 %#x, %v\nmemory % x\n   vs % x\n%s",
			want.r0, want.err, got.r0, got.err, want.mem, got.mem, conformance.Disassemble(p.Insns))
	}
}

// TestDifferentialRandom runs a few thousand generated programs.
func TestDifferentialRandom(t *testing.T) {
	m := interp.New()
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		data := make([]byte, 64+rng.IntN(1500))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		seed := make([]byte, memSize)
		binary.LittleEndian.PutUint64(seed, rng.Uint64())
		p := genProgram(data)
		differential(t, m, p, seed)
		if vp := verified(t, p); vp != nil {
			differential(t, m, vp, seed)
		}
	}
}

// verified returns p as the verifier prepares it (its accesses proven, unchecked), or nil when
// the verifier refuses it (most generated programs).
func verified(t testing.TB, p *program.Program) *program.Program {
	vp, err := verifier.Verify(p.Insns, &verifier.Options{Type: program.Raw, CtxSize: memSize,
		CtxWritable: true, Helpers: diffEnv(t, nil).Helpers})
	if err != nil {
		return nil
	}
	return vp
}

// FuzzDifferential holds the JIT to the interpreter on programs built from the fuzzer's bytes.
func FuzzDifferential(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		data := make([]byte, 400)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		f.Add(data)
	}
	m := interp.New()
	f.Fuzz(func(t *testing.T, data []byte) {
		seed := make([]byte, memSize)
		copy(seed, data)
		p := genProgram(data)
		differential(t, m, p, seed)
		if vp := verified(t, p); vp != nil {
			differential(t, m, vp, seed)
		}
	})
}
