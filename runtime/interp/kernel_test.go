package interp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// gen writes random programs the kernel's verifier accepts: registers r0..r9 set to interesting
// constants, 64 bytes of stack written, then a straight line of ALU operations of every kind
// (v4 included), forward jumps, aligned stack loads and stores, atomics, and exit.
type gen struct {
	r     *rand.Rand
	out   []isa.Instruction
	avoid int // a register no generated instruction writes (a loop counter), or -1
}

var interesting = []uint64{0, 1, 2, 7, 31, 32, 33, 63, 64, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
	0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, 0x7fffffffffffffff, 0x8000000000000000,
	0xffffffffffffffff, 0xfffffffffffffffe, 0xffffffff80000000, 0x123456789abcdef0}

func (g *gen) value() uint64 {
	if g.r.IntN(3) == 0 {
		return g.r.Uint64() >> g.r.IntN(64)
	}
	return interesting[g.r.IntN(len(interesting))]
}

func (g *gen) emit(i isa.Instruction) { g.out = append(g.out, i) }

func (g *gen) reg() uint8 { return uint8(g.r.IntN(10)) }

// dstReg returns a register an instruction may write.
func (g *gen) dstReg() uint8 {
	for {
		if r := g.reg(); int(r) != g.avoid {
			return r
		}
	}
}

func (g *gen) imm() int32 { return int32(g.value()) }

func (g *gen) program(n int) []isa.Instruction {
	g.out, g.avoid = nil, -1
	g.initRegs(0, 10)
	g.initStack()
	g.segment(n)
	g.emit(isa.Make(isa.OpExit, 0, 0, 0, 0))
	return g.out
}

// initRegs sets registers [from, to).
func (g *gen) initRegs(from, to uint8) {
	for r := from; r < to; r++ {
		v := g.value()
		g.emit(isa.Make(isa.OpLdDW, r, 0, 0, int32(uint32(v))))
		g.emit(isa.Make(0, 0, 0, 0, int32(uint32(v>>32))))
	}
}

// initStack writes the 64 bytes of stack the frame uses, from registers r0..r9.
func (g *gen) initStack() {
	for off := int16(-64); off < 0; off += 8 {
		g.emit(isa.Make(isa.ClassSTX|isa.ModeMEM|isa.SizeDW, isa.R10, g.reg(), off, 0))
	}
}

// segment writes about n instructions whose forward jumps land inside the segment or on the
// instruction that follows it.
func (g *gen) segment(n int) {
	start := len(g.out)
	for len(g.out)-start < n {
		g.insn()
	}
	end := len(g.out)
	for pc := start; pc < end; pc++ {
		if c := isa.Class(g.out[pc].Op); (c == isa.ClassJMP || c == isa.ClassJMP32) && g.out[pc].Off == -1 {
			g.out[pc].Off = int16(g.r.IntN(end - pc))
		}
	}
}

// loop writes a loop of k iterations (counter r9) around about n ALU instructions.
func (g *gen) loop(n, k int) {
	g.emit(isa.Make(isa.OpMov64Imm, isa.R9, 0, 0, int32(k)))
	head := len(g.out)
	g.avoid = int(isa.R9)
	for i := 0; i < n; i++ {
		g.alu()
	}
	g.avoid = -1
	g.emit(isa.Make(isa.ClassALU64|isa.ALUSub|isa.SrcK, isa.R9, 0, 0, 1))
	g.emit(isa.Make(isa.ClassJMP|isa.JmpJNE|isa.SrcK, isa.R9, 0, int16(head-len(g.out)-1), 0))
}

// callProgram returns a program whose main part loops and calls a subprogram twice, and the
// same program with r0 >>= 32 before main's exit. The subprogram has its own frame: it sets
// r0 and r6..r9 and its stack before using them, as the kernel requires; after each call main
// sets r1..r5 again (the call clobbered them).
func (g *gen) callProgram(n int) (lo, hi []isa.Instruction) {
	g.out, g.avoid = nil, -1
	g.initRegs(0, 10)
	g.initStack()
	g.segment(n / 3)
	g.loop(4, 1+g.r.IntN(6))
	var calls []int
	for c := 0; c < 2; c++ {
		calls = append(calls, len(g.out))
		g.emit(isa.Make(isa.OpCall, 0, isa.PseudoCallLocal, 0, 0))
		g.initRegs(1, 6)
		g.segment(n / 3)
	}
	main := g.out
	g.out = nil
	g.initRegs(0, 1)
	g.initRegs(6, 10)
	g.initStack()
	g.segment(n / 2)
	g.emit(isa.Make(isa.OpExit, 0, 0, 0, 0))
	sub := g.out
	build := func(shift bool) []isa.Instruction {
		p := append([]isa.Instruction(nil), main...)
		if shift {
			p = append(p, isa.Make(isa.ClassALU64|isa.ALURsh|isa.SrcK, 0, 0, 0, 32))
		}
		p = append(p, isa.Make(isa.OpExit, 0, 0, 0, 0))
		subStart := len(p)
		p = append(p, sub...)
		for _, c := range calls {
			p[c].Imm = int32(subStart - c - 1)
		}
		return p
	}
	return build(false), build(true)
}

var aluOps = []uint8{isa.ALUAdd, isa.ALUSub, isa.ALUMul, isa.ALUDiv, isa.ALUOr, isa.ALUAnd, isa.ALULsh,
	isa.ALURsh, isa.ALUNeg, isa.ALUMod, isa.ALUXor, isa.ALUMov, isa.ALUArsh, isa.ALUEnd}

var jmpOps = []uint8{isa.JmpJEQ, isa.JmpJGT, isa.JmpJGE, isa.JmpJSET, isa.JmpJNE, isa.JmpJSGT,
	isa.JmpJSGE, isa.JmpJLT, isa.JmpJLE, isa.JmpJSLT, isa.JmpJSLE}

var sizes = []uint8{isa.SizeB, isa.SizeH, isa.SizeW, isa.SizeDW}

func (g *gen) insn() {
	switch k := g.r.IntN(20); {
	case k < 12:
		g.alu()
	case k < 14: // conditional jump, offset set later
		class := isa.ClassJMP
		if g.r.IntN(2) == 0 {
			class = isa.ClassJMP32
		}
		op := jmpOps[g.r.IntN(len(jmpOps))]
		if g.r.IntN(2) == 0 {
			g.emit(isa.Make(class|op|isa.SrcX, g.reg(), g.reg(), -1, 0))
		} else {
			g.emit(isa.Make(class|op|isa.SrcK, g.reg(), 0, -1, g.imm()))
		}
	case k < 16: // load from the stack
		size := sizes[g.r.IntN(4)]
		mode := isa.ModeMEM
		if size != isa.SizeDW && g.r.IntN(2) == 0 {
			mode = isa.ModeMEMSX
		}
		g.emit(isa.Make(isa.ClassLDX|mode|size, g.dstReg(), isa.R10, g.stackOff(size), 0))
	case k < 18: // store to the stack
		size := sizes[g.r.IntN(4)]
		if g.r.IntN(2) == 0 {
			g.emit(isa.Make(isa.ClassSTX|isa.ModeMEM|size, isa.R10, g.reg(), g.stackOff(size), 0))
		} else {
			g.emit(isa.Make(isa.ClassST|isa.ModeMEM|size, isa.R10, 0, g.stackOff(size), g.imm()))
		}
	default: // atomic on the stack
		size := isa.SizeDW
		if g.r.IntN(2) == 0 {
			size = isa.SizeW
		}
		ops := []int32{isa.AtomicAdd, isa.AtomicOr, isa.AtomicAnd, isa.AtomicXor,
			isa.AtomicAdd | isa.AtomicFetch, isa.AtomicOr | isa.AtomicFetch, isa.AtomicAnd | isa.AtomicFetch,
			isa.AtomicXor | isa.AtomicFetch, isa.AtomicXchg, isa.AtomicCmpXchg}
		op := ops[g.r.IntN(len(ops))]
		if op == isa.AtomicCmpXchg && g.avoid == 0 {
			op = isa.AtomicAdd // cmpxchg writes r0
		}
		g.emit(isa.Make(isa.ClassSTX|isa.ModeATOMIC|size, isa.R10, g.dstReg(), g.stackOff(size), op))
	}
}

// stackOff returns an aligned offset inside the 64 written bytes.
func (g *gen) stackOff(size uint8) int16 {
	n := isa.Bytes(size)
	return int16(-64 + n*g.r.IntN(64/n))
}

func (g *gen) alu() {
	class := isa.ClassALU64
	if g.r.IntN(2) == 0 {
		class = isa.ClassALU
	}
	op := aluOps[g.r.IntN(len(aluOps))]
	dst := g.dstReg()
	switch op {
	case isa.ALUNeg:
		g.emit(isa.Make(class|op|isa.SrcK, dst, 0, 0, 0))
		return
	case isa.ALUEnd:
		w := []int32{16, 32, 64}[g.r.IntN(3)]
		src := []uint8{isa.SrcK, isa.SrcX}[g.r.IntN(2)]
		if class == isa.ClassALU64 {
			src = isa.SrcK // bswap
		}
		g.emit(isa.Make(class|op|src, dst, 0, 0, w))
		return
	}
	var off int16
	switch op {
	case isa.ALUDiv, isa.ALUMod:
		off = int16(g.r.IntN(2)) // signed when 1
	case isa.ALUMov:
		if g.r.IntN(3) == 0 {
			off = []int16{8, 16, 32}[g.r.IntN(3)] // movsx
			if class == isa.ClassALU && off == 32 {
				off = 16
			}
			g.emit(isa.Make(class|op|isa.SrcX, dst, g.reg(), off, 0))
			return
		}
	}
	if g.r.IntN(2) == 0 {
		g.emit(isa.Make(class|op|isa.SrcX, dst, g.reg(), off, 0))
		return
	}
	imm := g.imm()
	switch op {
	case isa.ALULsh, isa.ALURsh, isa.ALUArsh: // the kernel refuses immediates past the width
		if class == isa.ClassALU64 {
			imm &= 63
		} else {
			imm &= 31
		}
	case isa.ALUDiv, isa.ALUMod: // and division by an immediate zero
		if imm == 0 {
			imm = 3
		}
	}
	g.emit(isa.Make(class|op|isa.SrcK, dst, 0, off, imm))
}

// kernelRun loads insns as a socket filter and returns the 32-bit r0 the kernel reports.
func kernelRun(insns []isa.Instruction) (uint32, error) {
	ci, err := asm.AppendInstructions(nil, bytes.NewReader(isa.Encode(insns)), binary.LittleEndian, "linux")
	if err != nil {
		return 0, err
	}
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, Instructions: ci, License: "GPL"},
		ebpf.ProgramOptions{LogDisabled: true})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	return p.Run(&ebpf.RunOptions{Data: make([]byte, 64)})
}

// TestKernelDifferential runs random programs in the kernel (the oracle) and in the interpreter.
// The kernel reports 32 bits of r0, so each program runs twice there: as written, and with r0
// shifted right by 32 before its exit.
func TestKernelDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel oracle needs root")
	}
	if _, err := kernelRun([]isa.Instruction{isa.Make(isa.OpMov64Imm, 0, 0, 0, 1), isa.Make(isa.OpExit, 0, 0, 0, 0)}); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("kernel BPF unavailable: %v", err)
		}
		t.Fatal(err)
	}
	n := 5000
	if testing.Short() {
		n = 500
	}
	g := &gen{r: rand.New(rand.NewPCG(1, 2))}
	m := interp.New()
	ran := 0
	for i := 0; i < n; i++ {
		insns := g.program(8 + g.r.IntN(40))
		lo, err := kernelRun(insns)
		if err != nil {
			continue // the kernel refused it (a path it cannot prove, say): no oracle
		}
		hiProg := append(append([]isa.Instruction(nil), insns[:len(insns)-1]...),
			isa.Make(isa.ClassALU64|isa.ALURsh|isa.SrcK, 0, 0, 0, 32), isa.Make(isa.OpExit, 0, 0, 0, 0))
		hi, err := kernelRun(hiProg)
		if err != nil {
			t.Fatalf("the kernel took the program but not with r0 >>= 32 added: %v", err)
		}
		want := uint64(hi)<<32 | uint64(lo)
		for _, checked := range []bool{false, true} {
			p := &program.Program{Type: program.SocketFilter, Insns: insns, Checks: make([]program.Check, len(insns)),
				Funcs: []program.Func{{Start: 0, End: len(insns), StackDepth: 64}}}
			if checked {
				for j := range p.Checks {
					p.Checks[j] = program.CheckBounds
				}
			}
			got, err := m.Run(p, nil, [5]uint64{})
			if err != nil || got != want {
				t.Fatalf("program %d (checked %v): interpreter %#x, %v; kernel %#x\n%s", i, checked, got, err, want,
					conformance.Disassemble(insns))
			}
		}
		ran++
	}
	if ran < n*3/4 {
		t.Errorf("the kernel ran only %d of %d generated programs", ran, n)
	}
	t.Logf("%d of %d programs ran in the kernel and the interpreter alike", ran, n)
}

// TestKernelDifferentialCalls does the same with loops and bpf-to-bpf calls: each frame's r10,
// r6..r9 preserved across calls, the callee's own stack.
func TestKernelDifferentialCalls(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel oracle needs root")
	}
	if _, err := kernelRun([]isa.Instruction{isa.Make(isa.OpMov64Imm, 0, 0, 0, 1), isa.Make(isa.OpExit, 0, 0, 0, 0)}); err != nil {
		t.Skipf("kernel BPF unavailable: %v", err)
	}
	n := 2000
	if testing.Short() {
		n = 200
	}
	g := &gen{r: rand.New(rand.NewPCG(3, 4))}
	m := interp.New()
	ran := 0
	for i := 0; i < n; i++ {
		loProg, hiProg := g.callProgram(12 + g.r.IntN(30))
		lo, err := kernelRun(loProg)
		if err != nil {
			continue
		}
		hi, err := kernelRun(hiProg)
		if err != nil {
			t.Fatalf("the kernel took the program but not with r0 >>= 32 added: %v", err)
		}
		want := uint64(hi)<<32 | uint64(lo)
		p := &program.Program{Type: program.SocketFilter, Insns: loProg, Checks: make([]program.Check, len(loProg)), Loops: true}
		got, err := m.Run(p, nil, [5]uint64{})
		if err != nil || got != want {
			t.Fatalf("program %d: interpreter %#x, %v; kernel %#x\n%s", i, got, err, want, conformance.Disassemble(loProg))
		}
		ran++
	}
	if ran < n*3/4 {
		t.Errorf("the kernel ran only %d of %d generated programs", ran, n)
	}
	t.Logf("%d of %d programs ran in the kernel and the interpreter alike", ran, n)
}

type packet []byte

func (p packet) Packet() []byte { return p }

// kernelRunData is kernelRun with the given packet data.
func kernelRunData(insns []isa.Instruction, data []byte) (uint32, error) {
	ci, err := asm.AppendInstructions(nil, bytes.NewReader(isa.Encode(insns)), binary.LittleEndian, "linux")
	if err != nil {
		return 0, err
	}
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, Instructions: ci, License: "GPL"},
		ebpf.ProgramOptions{LogDisabled: true})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	return p.Run(&ebpf.RunOptions{Data: data})
}

// TestKernelDifferentialPacket compares the legacy packet loads (LD_ABS, LD_IND) of socket
// filters with the kernel's, in bounds and out (which ends the program with 0). The kernel's
// test run gives a socket filter the packet after its 14-byte Ethernet header.
func TestKernelDifferentialPacket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel oracle needs root")
	}
	if _, err := kernelRun([]isa.Instruction{isa.Make(isa.OpMov64Imm, 0, 0, 0, 1), isa.Make(isa.OpExit, 0, 0, 0, 0)}); err != nil {
		t.Skipf("kernel BPF unavailable: %v", err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	m := interp.New()
	ran := 0
	const n = 1000
	for i := 0; i < n; i++ {
		data := make([]byte, 14+r.IntN(50))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		pktLen := len(data) - 14
		// r6 = ctx; r0, r7..r9 set; then packet loads mixed with ALU on r0, r7..r9.
		insns := []isa.Instruction{isa.Make(isa.OpMov64Reg, isa.R6, isa.R1, 0, 0)}
		for _, reg := range []uint8{0, 7, 8, 9} {
			insns = append(insns, isa.Make(isa.OpMov64Imm, reg, 0, 0, int32(r.IntN(pktLen+8)-4)))
		}
		regs := []uint8{0, 7, 8, 9}
		for k := 0; k < 2+r.IntN(6); k++ {
			size := []uint8{isa.SizeB, isa.SizeH, isa.SizeW}[r.IntN(3)]
			off := int32(r.IntN(pktLen+8) - 4)
			if r.IntN(2) == 0 {
				insns = append(insns, isa.Make(isa.ClassLD|isa.ModeABS|size, 0, 0, 0, off))
			} else {
				insns = append(insns, isa.Make(isa.ClassLD|isa.ModeIND|size, 0, regs[1+r.IntN(3)], 0, off/2))
			}
			dst, src := regs[1+r.IntN(3)], regs[r.IntN(4)]
			insns = append(insns,
				isa.Make(isa.ClassALU64|isa.ALUXor|isa.SrcX, dst, src, 0, 0),
				isa.Make(isa.ClassALU64|isa.ALUAnd|isa.SrcK, dst, 0, 0, 31),
				isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcX, 0, dst, 0, 0))
		}
		insns = append(insns, isa.Make(isa.OpExit, 0, 0, 0, 0))
		want, err := kernelRunData(insns, data)
		if err != nil {
			continue
		}
		p := &program.Program{Type: program.SocketFilter, Insns: insns, Checks: make([]program.Check, len(insns))}
		env := &helper.Env{Data: packet(data[14:])}
		got, err := m.Run(p, env, [5]uint64{})
		if err != nil || uint32(got) != want {
			t.Fatalf("program %d on %d bytes: interpreter %#x, %v; kernel %#x\n%s", i, pktLen, got, err, want,
				conformance.Disassemble(insns))
		}
		ran++
	}
	if ran < n*3/4 {
		t.Errorf("the kernel ran only %d of %d generated programs", ran, n)
	}
	t.Logf("%d of %d programs ran in the kernel and the interpreter alike", ran, n)
}
