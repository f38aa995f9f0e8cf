package jit

import (
	"fmt"
	"math/bits"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// insn emits the code of the instruction at pc.
func (c *compiler) insn(pc int) error {
	ins := c.insns[pc]
	switch isa.Class(ins.Op) {
	case isa.ClassALU, isa.ClassALU64:
		return c.alu(ins)
	case isa.ClassJMP, isa.ClassJMP32:
		return c.jump(pc, ins)
	case isa.ClassLD:
		return c.ld(pc, ins)
	case isa.ClassLDX:
		return c.ldx(pc, ins)
	case isa.ClassST:
		return c.st(pc, ins)
	case isa.ClassSTX:
		return c.stx(pc, ins)
	}
	return fmt.Errorf("unknown class")
}

// alu emits an ALU or ALU64 instruction.
func (c *compiler) alu(ins isa.Instruction) error {
	a := &c.a
	w := isa.Class(ins.Op) == isa.ClassALU64
	dst := regMap[ins.Dst()]
	src := regMap[ins.Src()]
	x := isa.Source(ins.Op) == isa.SrcX
	op := isa.Operation(ins.Op)
	if ins.Off != 0 && op != isa.ALUMov && op != isa.ALUDiv && op != isa.ALUMod {
		return fmt.Errorf("nonzero offset")
	}
	switch op {
	case isa.ALUAdd, isa.ALUSub, isa.ALUOr, isa.ALUAnd, isa.ALUXor:
		xop := aluOps[op>>4]
		if x {
			a.aluRR(w, xop, dst, src)
		} else {
			a.aluRI(w, xop, dst, ins.Imm)
		}
	case isa.ALUMul:
		if x {
			a.imulRR(w, dst, src)
		} else {
			a.imulRI(w, dst, dst, ins.Imm)
		}
	case isa.ALUMov:
		switch {
		case !x && ins.Off == 0:
			a.movRI(w, dst, int64(ins.Imm))
		case !x:
			return fmt.Errorf("movsx with an immediate")
		case ins.Off == 0:
			if !w || dst != src {
				a.movRR(w, dst, src)
			}
		case ins.Off == 8 || ins.Off == 16 || ins.Off == 32 && w:
			a.movsxRR(w, int(ins.Off)/8, dst, src)
		default:
			return fmt.Errorf("movsx offset %d", ins.Off)
		}
	case isa.ALUNeg:
		a.unary(w, unNeg, dst)
	case isa.ALULsh, isa.ALURsh, isa.ALUArsh:
		sop := shiftOps[op>>4]
		c.shift(w, sop, dst, src, x, ins.Imm)
	case isa.ALUDiv, isa.ALUMod:
		if ins.Off != 0 && ins.Off != 1 {
			return fmt.Errorf("division offset %d", ins.Off)
		}
		c.divmod(w, ins.Off == 1, op == isa.ALUMod, dst, src, x, ins.Imm)
	case isa.ALUEnd:
		return c.end(ins, dst)
	default:
		return fmt.Errorf("unknown ALU operation")
	}
	return nil
}

// shift emits a shift; eBPF masks the count as x86 does.
func (c *compiler) shift(w bool, op int, dst, src reg, x bool, imm int32) {
	a := &c.a
	mask := int32(31)
	if w {
		mask = 63
	}
	if !x {
		n := uint8(imm & mask)
		if n == 0 {
			if !w {
				a.movRR(false, dst, dst) // a 32-bit operation clears the upper half
			}
			return
		}
		a.shiftRI(w, op, dst, n)
		return
	}
	switch {
	case c.bmi2:
		a.shiftX(w, op, dst, dst, src)
	case src == rcx:
		a.shiftRCL(w, op, dst)
	case dst == rcx:
		a.movRR(true, rAux, rcx)
		a.movRR(true, rcx, src)
		a.shiftRCL(w, op, rAux)
		a.movRR(true, rcx, rAux)
	default:
		a.movRR(true, rAux, rcx)
		a.movRR(true, rcx, src)
		a.shiftRCL(w, op, dst)
		a.movRR(true, rcx, rAux)
	}
}

// divmod emits an unsigned or signed division or modulo with the RFC 9669 results for a zero
// divisor (quotient 0, remainder the dividend) and for the signed overflow MIN / -1 (quotient
// MIN, remainder 0), so the processor never raises #DE.
func (c *compiler) divmod(w, signed, mod bool, dst, src reg, x bool, imm int32) {
	a := &c.a
	zeroResult := func() {
		if mod {
			if !w {
				a.movRR(false, dst, dst)
			}
		} else {
			a.aluRR(false, aluXor, dst, dst)
		}
	}
	minusOne := func() {
		if mod {
			a.aluRR(false, aluXor, dst, dst)
		} else {
			a.unary(w, unNeg, dst)
		}
	}
	if !x {
		switch {
		case imm == 0:
			zeroResult()
			return
		case signed && imm == -1:
			minusOne()
			return
		case !signed:
			d := uint64(uint32(imm))
			if w {
				d = uint64(int64(imm))
			}
			if d&(d-1) == 0 {
				k := bits.TrailingZeros64(d)
				switch { // d is at most 1<<30 for ALU64, 1<<31 for ALU: d-1 fits the immediate
				case mod:
					a.aluRI(w, aluAnd, dst, int32(d-1))
				case k == 0:
					if !w {
						a.movRR(false, dst, dst)
					}
				default:
					a.shiftRI(w, shShr, dst, uint8(k))
				}
				return
			}
		}
		a.movRI(w, rAux, int64(imm))
	} else {
		a.movRR(w, rAux, src)
	}
	var zero, neg1, done label = -1, -1, -1
	if x {
		zero, done = c.newLabel(), c.newLabel()
		a.testRR(w, rAux, rAux)
		c.jcc(condE, zero, false)
		if signed {
			neg1 = c.newLabel()
			a.aluRI(w, aluCmp, rAux, -1)
			c.jcc(condE, neg1, false)
		}
	}
	if dst != rax {
		a.movRR(true, rTmp, rax)
	}
	if dst != rdx {
		a.push(rdx)
	}
	if dst != rax {
		a.movRR(true, rax, dst)
	}
	if signed {
		a.signExtendAX(w)
	} else {
		a.aluRR(false, aluXor, rdx, rdx)
	}
	if signed {
		a.unary(w, unIdiv, rAux)
	} else {
		a.unary(w, unDiv, rAux)
	}
	res := rax
	if mod {
		res = rdx
	}
	switch dst {
	case rax:
		if res != rax {
			a.movRR(true, rax, res)
		}
		a.pop(rdx)
	case rdx:
		if res != rdx {
			a.movRR(true, rdx, res)
		}
		a.movRR(true, rax, rTmp)
	default:
		a.movRR(true, dst, res)
		a.pop(rdx)
		a.movRR(true, rax, rTmp)
	}
	if !x {
		return
	}
	c.jmp(done, false)
	c.place(zero)
	zeroResult()
	if signed {
		c.jmp(done, false)
		c.place(neg1)
		minusOne()
	}
	c.place(done)
}

// end emits a byte swap or truncation (ALU|END, ALU64|END).
func (c *compiler) end(ins isa.Instruction, dst reg) error {
	a := &c.a
	toBE := isa.Class(ins.Op) == isa.ClassALU64 || isa.Source(ins.Op) == isa.EndToBE
	switch ins.Imm {
	case 16:
		if toBE {
			a.rol16(dst)
		}
		a.movzxRR(2, dst, dst)
	case 32:
		if toBE {
			a.bswap(false, dst)
		} else {
			a.movRR(false, dst, dst)
		}
	case 64:
		if toBE {
			a.bswap(true, dst)
		}
	default:
		return fmt.Errorf("byte swap width %d", ins.Imm)
	}
	return nil
}

// jmpConds maps eBPF jump operations to x86 conditions.
var jmpConds = [16]cond{
	isa.JmpJEQ >> 4: condE, isa.JmpJNE >> 4: condNE, isa.JmpJSET >> 4: condNE,
	isa.JmpJGT >> 4: condA, isa.JmpJGE >> 4: condAE, isa.JmpJLT >> 4: condB, isa.JmpJLE >> 4: condBE,
	isa.JmpJSGT >> 4: condG, isa.JmpJSGE >> 4: condGE, isa.JmpJSLT >> 4: condL, isa.JmpJSLE >> 4: condLE,
}

// jmpValid marks the conditional jump operations.
var jmpValid = [16]bool{
	isa.JmpJEQ >> 4: true, isa.JmpJNE >> 4: true, isa.JmpJSET >> 4: true,
	isa.JmpJGT >> 4: true, isa.JmpJGE >> 4: true, isa.JmpJLT >> 4: true, isa.JmpJLE >> 4: true,
	isa.JmpJSGT >> 4: true, isa.JmpJSGE >> 4: true, isa.JmpJSLT >> 4: true, isa.JmpJSLE >> 4: true,
}

// aluOps and shiftOps map eBPF ALU operations to x86 ones.
var (
	aluOps = [16]int{isa.ALUAdd >> 4: aluAdd, isa.ALUSub >> 4: aluSub, isa.ALUOr >> 4: aluOr,
		isa.ALUAnd >> 4: aluAnd, isa.ALUXor >> 4: aluXor}
	shiftOps = [16]int{isa.ALULsh >> 4: shShl, isa.ALURsh >> 4: shShr, isa.ALUArsh >> 4: shSar}
)

// jump emits a jump, call or exit.
func (c *compiler) jump(pc int, ins isa.Instruction) error {
	a := &c.a
	op := isa.Operation(ins.Op)
	switch op {
	case isa.JmpExit:
		if k := c.fn; k > 0 {
			c.subEpilogue(k)
		} else {
			c.epilogue()
		}
		return nil
	case isa.JmpCall:
		return c.callInsn(pc, ins)
	}
	t, _ := c.target(pc)
	back := t <= pc
	if op == isa.JmpJA {
		switch {
		case back:
			c.backEdge(pc, t)
		case t != pc+1:
			c.jmp(label(t), false)
		}
		return nil
	}
	if !jmpValid[op>>4] {
		return fmt.Errorf("unknown jump operation")
	}
	cc := jmpConds[op>>4]
	w := isa.Class(ins.Op) == isa.ClassJMP
	dst := regMap[ins.Dst()]
	switch {
	case isa.Source(ins.Op) == isa.SrcX && op == isa.JmpJSET:
		a.testRR(w, dst, regMap[ins.Src()])
	case isa.Source(ins.Op) == isa.SrcX:
		a.aluRR(w, aluCmp, dst, regMap[ins.Src()])
	case op == isa.JmpJSET:
		a.testRI(w, dst, ins.Imm)
	case ins.Imm == 0:
		a.testRR(w, dst, dst) // the same flags as cmp dst, 0
	default:
		a.aluRI(w, aluCmp, dst, ins.Imm)
	}
	if !back {
		c.jcc(cc, label(t), false)
		return nil
	}
	skip := c.newLabel()
	c.jcc(cc^1, skip, false) // the inverse condition
	c.backEdge(pc, t)
	c.place(skip)
	return nil
}

// backEdge emits a taken back-edge from pc to t. Like the interpreter, it charges the budget
// with the instructions of the loop it closes (t to pc) and stops the program when the charges
// exceed the budget.
func (c *compiler) backEdge(pc, t int) {
	a := &c.a
	a.aluRI(true, aluSub, rBudget, int32(pc-t+1))
	c.jcc(condAE, label(t), false)
	c.jmp(c.faultStub(FaultBudget, pc), true)
}

// callInsn emits a helper call, a bpf-to-bpf call or a callx.
func (c *compiler) callInsn(pc int, ins isa.Instruction) error {
	a := &c.a
	switch {
	case ins.Op == isa.OpCall && ins.Src() == isa.PseudoCallLocal:
		t, _ := c.target(pc)
		a.aluRM(true, aluCmp, rbp, at(rBlk, offFrameLimit))
		c.jcc(condB, c.faultStub(FaultDepth, pc), true)
		c.call(c.funcEntry(c.funcAt(t)))
		return nil
	case ins.Op == isa.OpCall && ins.Src() == isa.PseudoCallHelper:
		if ins.Imm < 0 || ins.Imm >= 1<<28 {
			return fmt.Errorf("helper number %d", ins.Imm)
		}
		a.aluMI(true, aluCmp, at(rBlk, offNumHelpers), ins.Imm)
		c.jcc(condBE, c.faultStub(FaultCallx, pc), true)
		c.helperCall(func() {
			a.opRM(true, 0x8b, rax, at(rBlk, offHelpers))
			a.callM(at(rax, ins.Imm*8))
		})
		return nil
	case ins.Op == isa.OpCallX:
		a.movRR(true, rAux, regMap[ins.Dst()])
		a.aluRM(true, aluCmp, rAux, at(rBlk, offNumHelpers))
		fault := c.faultStub(FaultCallx, pc)
		c.jcc(condAE, fault, true)
		a.opRM(true, 0x8b, rax, at(rBlk, offHelpers))
		a.opRM(true, 0x8b, rax, mem{base: rax, index: rAux, scale: 8})
		a.testRR(true, rax, rax)
		c.jcc(condE, fault, true)
		c.helperCall(func() { a.callR(rax) })
		return nil
	}
	return fmt.Errorf("unsupported call kind %d", ins.Src())
}

// helperCall emits a call to a helper: r1-r5 are already in the System V argument registers;
// the block goes in r9 as a sixth argument.
func (c *compiler) helperCall(call func()) {
	a := &c.a
	if c.loops {
		a.opRM(true, 0x89, rBudget, at(rBlk, offBudget))
	}
	a.movRR(true, r9, rBlk)
	call()
	if c.loops {
		a.opRM(true, 0x8b, rBudget, at(rBlk, offBudget))
	}
}

// ld emits lddw or a legacy packet load.
func (c *compiler) ld(pc int, ins isa.Instruction) error {
	a := &c.a
	if m := isa.Mode(ins.Op); m == isa.ModeABS || m == isa.ModeIND {
		return c.ldPacket(pc, ins)
	}
	if ins.Op != isa.OpLdDW {
		return fmt.Errorf("unsupported LD instruction")
	}
	dst := regMap[ins.Dst()]
	next := c.insns[pc+1]
	switch ins.Src() {
	case 0:
		a.movRI(true, dst, int64(isa.LdDWValue(ins, next)))
	case isa.PseudoMapFD, isa.PseudoMapValue:
		if ins.Imm < 0 || int(ins.Imm) >= len(c.p.Maps) {
			return fmt.Errorf("map index %d of %d maps", ins.Imm, len(c.p.Maps))
		}
		base := int32(offMaps)
		if ins.Src() == isa.PseudoMapValue {
			base = offMapValues
		}
		a.opRM(true, 0x8b, rAux, at(rBlk, base))
		a.opRM(true, 0x8b, dst, at(rAux, ins.Imm*8))
		if ins.Src() == isa.PseudoMapValue && next.Imm != 0 {
			if next.Imm > 0 {
				a.aluRI(true, aluAdd, dst, next.Imm)
			} else { // the offset is unsigned
				a.movRI(true, rAux, int64(uint32(next.Imm)))
				a.aluRR(true, aluAdd, dst, rAux)
			}
		}
	case isa.PseudoFunc: // a subprogram for a helper's callback: its instruction index, as in the interpreter
		a.movRI(true, dst, int64(pc+1+int(ins.Imm)))
	default:
		return fmt.Errorf("unsupported lddw source %d", ins.Src())
	}
	return nil
}

// ldPacket emits LD_ABS or LD_IND: r0 = the big-endian value at a 32-bit signed offset in the
// block's packet (plus src for LD_IND). A load outside the packet ends the program with r0 = 0,
// as in the kernel and the interpreter; r1-r5 are left alone.
func (c *compiler) ldPacket(pc int, ins isa.Instruction) error {
	a := &c.a
	size := isa.Bytes(isa.SizeOf(ins.Op))
	if size == 8 {
		return fmt.Errorf("packet load of 8 bytes")
	}
	if isa.Mode(ins.Op) == isa.ModeIND {
		a.movRR(false, rAux, regMap[ins.Src()])
		a.aluRI(false, aluAdd, rAux, ins.Imm)
	} else {
		a.movRI(false, rAux, int64(uint32(ins.Imm)))
	}
	a.movsxRR(true, 4, rAux, rAux) // negative offsets become huge
	a.aluMI(true, aluCmp, at(rBlk, offPacket), 0)
	c.jcc(condE, c.faultStub(FaultPacket, pc), true)
	if c.faultExit < 0 {
		c.faultExit = c.newLabel()
	}
	a.opRM(true, 0x8b, rTmp, at(rBlk, offPacketLen))
	a.aluRI(true, aluSub, rTmp, int32(size))
	c.jcc(condB, c.faultExit, true) // shorter than the load: r0 = 0, no fault
	a.aluRR(true, aluCmp, rAux, rTmp)
	c.jcc(condA, c.faultExit, true)
	a.aluRM(true, aluAdd, rAux, at(rBlk, offPacket))
	a.load(size, rax, at(rAux, 0))
	switch size {
	case 2:
		a.rol16(rax)
	case 4:
		a.bswap(false, rax)
	}
	return nil
}

// access returns the memory operand of a load, store or atomic at pc, after the run-time bounds
// check when the verifier asked for one. The check is the interpreter's: the access must lie in
// the live stack (from the bottom of the current frame to the top of frame 0) or in one of the
// block's regions. Inline, one compare tries the stack when the base register probably points
// there, else region 0; the cold stub tries the rest. inAux says r11 holds the address.
func (c *compiler) access(pc int, base reg, off int16, size int, write, inAux bool) mem {
	m := at(base, int32(off))
	if inAux {
		m = at(rAux, 0)
	}
	if c.checks[pc] != program.CheckBounds {
		return m
	}
	if base == rbp && int(off) >= -512 && int(off)+size <= 0 {
		return m // inside the current frame: the check cannot fail
	}
	a := &c.a
	if c.checkRegions < 0 {
		c.checkRegions = c.newLabel()
		if c.faultExit < 0 {
			c.faultExit = c.newLabel()
		}
	}
	s := stub{kind: stubBounds, at: c.newLabel(), resume: c.newLabel(), info: uint32(pc)<<8 | uint32(size),
		mem: m, fn: int32(c.fn)}
	k := bits.TrailingZeros(uint(size))
	if write {
		s.info |= 0x80
		k += 4
	}
	ebpfBase := ebpfReg[base]
	for ; c.stackPC < pc; c.stackPC++ {
		c.stackish = stackStep(c.stackish, c.insns[c.stackPC])
	}
	s.stackFirst = c.stackish>>ebpfBase&1 != 0
	if s.stackFirst {
		c.stackCheck(int(s.fn), m, size)
		c.jcc(condA, s.at, true)
	} else {
		a.lea(rTmp, m)
		a.aluRM(true, aluSub, rTmp, at(rBlk, offR0Start))
		a.aluRM(true, aluCmp, rTmp, at(rBlk, int32(offR0Limit+8*k)))
		c.jcc(condAE, s.at, true)
	}
	c.stubs = append(c.stubs, s)
	c.place(s.resume)
	return m
}

// stackCheck emits the comparison of the live stack check of an access of size bytes at m in
// function fn: below or equal means inside.
func (c *compiler) stackCheck(fn int, m mem, size int) {
	a := &c.a
	// x = addr - (rbp - 512), the offset from the bottom of the current frame.
	m.disp += 512
	a.lea(rTmp, m)
	a.aluRR(true, aluSub, rTmp, rbp)
	if fn == 0 {
		a.aluRI(true, aluCmp, rTmp, int32(512-size)) // frame 0 is the whole live stack
	} else {
		a.aluRM(true, aluCmp, rTmp, at(rsp, spanSlot(size)))
	}
}

// ldx emits a load.
func (c *compiler) ldx(pc int, ins isa.Instruction) error {
	size := isa.Bytes(isa.SizeOf(ins.Op))
	dst := regMap[ins.Dst()]
	switch isa.Mode(ins.Op) {
	case isa.ModeMEM:
		c.a.load(size, dst, c.access(pc, regMap[ins.Src()], ins.Off, size, false, false))
	case isa.ModeMEMSX:
		if size == 8 {
			return fmt.Errorf("sign-extending load of 8 bytes")
		}
		c.a.loadSX(size, dst, c.access(pc, regMap[ins.Src()], ins.Off, size, false, false))
	default:
		return fmt.Errorf("unsupported load mode")
	}
	return nil
}

// st emits a store of an immediate.
func (c *compiler) st(pc int, ins isa.Instruction) error {
	if isa.Mode(ins.Op) != isa.ModeMEM {
		return fmt.Errorf("unsupported store mode")
	}
	size := isa.Bytes(isa.SizeOf(ins.Op))
	c.a.storeImm(size, c.access(pc, regMap[ins.Dst()], ins.Off, size, true, false), ins.Imm)
	return nil
}

// stx emits a store of a register or an atomic operation.
func (c *compiler) stx(pc int, ins isa.Instruction) error {
	size := isa.Bytes(isa.SizeOf(ins.Op))
	dst, src := regMap[ins.Dst()], regMap[ins.Src()]
	switch isa.Mode(ins.Op) {
	case isa.ModeMEM:
		c.a.store(size, c.access(pc, dst, ins.Off, size, true, false), src)
		return nil
	case isa.ModeATOMIC:
		return c.atomic(pc, ins, size, dst, src)
	}
	return fmt.Errorf("unsupported store mode")
}

// atomic emits an atomic read-modify-write, load-acquire or store-release.
func (c *compiler) atomic(pc int, ins isa.Instruction, size int, dst, src reg) error {
	a := &c.a
	// Like the interpreter, stop misaligned atomics (a locked access split across cache lines
	// may raise #AC on kernels that detect split locks).
	aligned := func(base reg) {
		a.lea(rAux, at(base, int32(ins.Off)))
		if size > 1 {
			a.testRI(false, rAux, int32(size-1))
			c.jcc(condNE, c.addStub(stub{kind: stubFault, info: uint32(pc), code: FaultAlign, addr: true, size: uint8(size)}), true)
		}
	}
	switch ins.Imm {
	case isa.AtomicLoadAcq: // dst = *(src + off); x86 loads have acquire semantics
		aligned(src)
		a.load(size, dst, c.access(pc, src, ins.Off, size, false, true))
		return nil
	case isa.AtomicStoreRel: // *(dst + off) = src; x86 stores have release semantics
		aligned(dst)
		a.store(size, c.access(pc, dst, ins.Off, size, true, true), src)
		return nil
	}
	if size != 4 && size != 8 {
		return fmt.Errorf("atomic operation on %d bytes", size)
	}
	w := size == 8
	aligned(dst)
	m := c.access(pc, dst, ins.Off, size, true, true)
	switch ins.Imm {
	case isa.AtomicAdd:
		a.lockAluMR(w, aluAdd, m, src)
	case isa.AtomicOr:
		a.lockAluMR(w, aluOr, m, src)
	case isa.AtomicAnd:
		a.lockAluMR(w, aluAnd, m, src)
	case isa.AtomicXor:
		a.lockAluMR(w, aluXor, m, src)
	case isa.AtomicAdd | isa.AtomicFetch:
		a.xadd(w, m, src)
	case isa.AtomicXchg:
		a.xchg(w, m, src)
	case isa.AtomicCmpXchg:
		a.cmpxchg(w, m, src)
		if !w {
			a.movRR(false, rax, rax) // eax is left unwritten when the compare succeeds
		}
	case isa.AtomicOr | isa.AtomicFetch, isa.AtomicAnd | isa.AtomicFetch, isa.AtomicXor | isa.AtomicFetch:
		op := aluOr
		switch ins.Imm &^ isa.AtomicFetch {
		case isa.AtomicAnd:
			op = aluAnd
		case isa.AtomicXor:
			op = aluXor
		}
		// A compare-and-exchange loop on rax; r0 and the operand wait in the block's spill slots.
		a.opRM(true, 0x89, rax, at(rBlk, offSpill))
		a.opRM(true, 0x89, src, at(rBlk, offSpill+8))
		a.load(size, rax, at(rAux, 0))
		loop := c.newLabel()
		c.place(loop)
		a.movRR(true, rTmp, rax)
		a.aluRM(w, op, rTmp, at(rBlk, offSpill+8))
		a.cmpxchg(w, at(rAux, 0), rTmp)
		c.jcc(condNE, loop, false)
		a.movRR(w, src, rax)
		if src != rax {
			a.opRM(true, 0x8b, rax, at(rBlk, offSpill))
		}
	default:
		return fmt.Errorf("unknown atomic operation %#x", ins.Imm)
	}
	return nil
}
