package verifier

import (
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

var aluNames = map[uint8]string{
	isa.ALUAdd: "+=", isa.ALUSub: "-=", isa.ALUMul: "*=", isa.ALUDiv: "/=", isa.ALUOr: "|=",
	isa.ALUAnd: "&=", isa.ALULsh: "<<=", isa.ALURsh: ">>=", isa.ALUNeg: "neg", isa.ALUMod: "%=",
	isa.ALUXor: "^=", isa.ALUMov: "=", isa.ALUArsh: "s>>=", isa.ALUEnd: "endian",
}

// checkALU checks and applies an ALU or ALU64 instruction, as the kernel's check_alu_op.
func (v *verifier) checkALU(st *state, pc int, in isa.Instruction) error {
	op := isa.Operation(in.Op)
	alu64 := isa.Class(in.Op) == isa.ClassALU64
	srcX := isa.Source(in.Op) == isa.SrcX
	dst := in.Dst()
	regs := &st.cur().regs
	switch op {
	case isa.ALUNeg, isa.ALUEnd:
		if op == isa.ALUNeg && (srcX || in.Src() != 0 || in.Off != 0 || in.Imm != 0) {
			return refuse(syscall.EINVAL, "BPF_NEG uses reserved fields")
		}
		if op == isa.ALUEnd && (in.Src() != 0 || in.Off != 0 || (in.Imm != 16 && in.Imm != 32 && in.Imm != 64) || (alu64 && srcX)) {
			return refuse(syscall.EINVAL, "BPF_END uses reserved fields")
		}
		d, err := v.regArg(st, dst)
		if err != nil {
			return err
		}
		if err := v.regDst(dst); err != nil {
			return err
		}
		if !d.isScalar() {
			regs[dst] = unknownReg()
			return nil
		}
		regs[dst] = scalarReg(unaryScalar(in, &d.s))
		regs[dst].imprecise = d.imprecise
		return nil
	case isa.ALUMov:
		if srcX {
			okOff := in.Off == 0 || in.Off == 8 || in.Off == 16 || (alu64 && in.Off == 32)
			if !okOff || in.Imm != 0 {
				return refuse(syscall.EINVAL, "BPF_MOV uses reserved fields")
			}
		} else if in.Src() != 0 || in.Off != 0 {
			return refuse(syscall.EINVAL, "BPF_MOV uses reserved fields")
		}
	default:
		okOff := in.Off == 0 || (in.Off == 1 && (op == isa.ALUDiv || op == isa.ALUMod))
		if (srcX && in.Imm != 0) || (!srcX && in.Src() != 0) || !okOff {
			return refuse(syscall.EINVAL, "BPF_ALU uses reserved fields")
		}
	}
	var src reg
	if srcX {
		s, err := v.regArg(st, in.Src())
		if err != nil {
			return err
		}
		src = *s
	} else if alu64 {
		src = constReg(uint64(int64(in.Imm)))
	} else {
		src = constReg(uint64(uint32(in.Imm)))
	}
	if op == isa.ALUMov {
		if err := v.regDst(dst); err != nil {
			return err
		}
		r := v.move(&src, alu64, srcX, in.Off)
		if srcX {
			regs[in.Src()].id = src.id // a 64-bit copy links the source to its copy
		}
		regs[dst] = r
		return nil
	}
	d, err := v.regArg(st, dst)
	if err != nil {
		return err
	}
	if !srcX && !v.raw {
		if (op == isa.ALUDiv || op == isa.ALUMod) && in.Imm == 0 {
			return refuse(syscall.EINVAL, "div by zero")
		}
		if op == isa.ALULsh || op == isa.ALURsh || op == isa.ALUArsh {
			width := int32(32)
			if alu64 {
				width = 64
			}
			if in.Imm < 0 || in.Imm >= width {
				return refuse(syscall.EINVAL, "invalid shift %d", in.Imm)
			}
		}
	}
	if err := v.regDst(dst); err != nil {
		return err
	}
	r, err := v.binary(in, op, alu64, d, &src)
	if err != nil {
		return err
	}
	regs[dst] = r
	return nil
}

// move returns the value of dst after a mov (or movsx) of src.
func (v *verifier) move(src *reg, alu64, srcX bool, off int16) reg {
	if !srcX {
		return *src
	}
	if src.isPointer() {
		if alu64 && off == 0 {
			return *src
		}
		r := unknownReg() // a partial or sign-extended copy of a pointer is a number
		if !alu64 {
			r.s = r.s.zext32()
		}
		return r
	}
	s := src.s
	switch {
	case alu64 && off == 0:
		r := *src
		if r.id == 0 {
			r.id = v.newID()
			src.id = r.id
		}
		return r
	case alu64:
		s = s.sext(int(off / 8))
	case off == 0:
		s = s.zext32()
	default:
		x := s.sext(int(off / 8))
		s = x.zext32()
	}
	return reg{kind: scalarValue, s: s, imprecise: src.imprecise}
}

// unaryScalar applies neg, an endianness conversion or bswap to a scalar.
func unaryScalar(in isa.Instruction, s *scalar) scalar {
	alu64 := isa.Class(in.Op) == isa.ClassALU64
	if isa.Operation(in.Op) == isa.ALUNeg {
		if s.isConst() {
			return constScalar(evalALU(isa.ALUNeg, !alu64, 0, s.value(), 0))
		}
		return unknownResult(!alu64)
	}
	size := int(in.Imm / 8)
	toLE := !alu64 && isa.Source(in.Op) == isa.EndToLE
	if toLE {
		return s.truncate(size)
	}
	if s.isConst() {
		return constScalar(swapBytes(s.value(), size))
	}
	if size == 8 {
		return unknownScalar()
	}
	return rangeScalar(0, uint64(1)<<(uint(size)*8)-1)
}

// swapBytes reverses the low size bytes of x (the rest is dropped).
func swapBytes(x uint64, size int) uint64 {
	var r uint64
	for i := 0; i < size; i++ {
		r = r<<8 | (x>>(8*i))&0xff
	}
	return r
}

// binary applies a two-operand ALU operation, with the kernel's rules for pointer arithmetic.
func (v *verifier) binary(in isa.Instruction, op uint8, alu64 bool, d, s *reg) (reg, error) {
	dst := in.Dst()
	if d.isScalar() && s.isScalar() {
		r := scalarReg(scalarALU(op, !alu64, in.Off, &d.s, &s.s))
		r.imprecise = d.imprecise || s.imprecise
		return r, nil
	}
	if d.isPointer() && s.isPointer() {
		if op == isa.ALUSub {
			return unknownReg(), nil
		}
		return reg{}, refuse(syscall.EACCES, "R%d pointer %s pointer prohibited", dst, aluNames[op])
	}
	ptr, off := d, s
	if s.isPointer() {
		ptr, off = s, d
	}
	if !alu64 {
		// A privileged program's 32-bit subtraction on a pointer yields a meaningless number.
		if op == isa.ALUSub {
			return unknownResult(true).reg(), nil
		}
		return reg{}, refuse(syscall.EACCES, "R%d 32-bit pointer arithmetic prohibited", dst)
	}
	if ptr.maybeNull() {
		return reg{}, refuse(syscall.EACCES, "R%d pointer arithmetic on %s prohibited, null-check it first", dst, ptr.typeName())
	}
	known := off.s.isConst()
	switch ptr.kind {
	case constPtrToMap:
		if !(known && off.s.value() == 0 && op == isa.ALUAdd) {
			return reg{}, refuse(syscall.EACCES, "R%d pointer arithmetic on %s prohibited", dst, ptr.typeName())
		}
	case ptrToFunc:
		return reg{}, refuse(syscall.EACCES, "R%d pointer arithmetic on %s prohibited", dst, ptr.typeName())
	}
	// as the kernel's adjust_ptr_min_max_vals: the offset's sanity before the operator
	if !ptr.imprecise && !off.imprecise {
		if err := saneOffset(off, ptr); err != nil {
			return reg{}, err
		}
	}
	switch op {
	case isa.ALUAdd, isa.ALUSub:
	case isa.ALUAnd, isa.ALUOr, isa.ALUXor:
		return reg{}, refuse(syscall.EACCES, "R%d bitwise operator %s on pointer prohibited", dst, aluNames[op])
	default:
		return reg{}, refuse(syscall.EACCES, "R%d pointer arithmetic with %s operator prohibited", dst, aluNames[op])
	}
	if op == isa.ALUSub {
		if off == d {
			return reg{}, refuse(syscall.EACCES, "R%d tried to subtract pointer from scalar", dst)
		}
		if ptr.kind == ptrToStack && !v.raw && !known {
			return reg{}, refuse(syscall.EACCES, "R%d subtraction from stack pointer prohibited", dst)
		}
	}
	r := *ptr
	r.imprecise = ptr.imprecise || off.imprecise
	switch {
	case known && op == isa.ALUAdd:
		r.off += int64(off.s.value())
	case known:
		r.off -= int64(off.s.value())
	case op == isa.ALUAdd:
		r.s = scalarALU(isa.ALUAdd, false, 0, &ptr.s, &off.s)
	default:
		r.s = scalarALU(isa.ALUSub, false, 0, &ptr.s, &off.s)
	}
	r.id = 0
	if r.off <= -maxVarOff || r.off >= maxVarOff {
		return reg{}, refuse(syscall.EACCES, "value %d makes %s pointer be out of bounds", r.off, ptr.typeName())
	}
	return r, nil
}

// saneOffset is the kernel's check_reg_sane_offset on the scalar added to a pointer.
func saneOffset(off, ptr *reg) error {
	if off.s.isConst() {
		val := int64(off.s.value())
		if val >= maxVarOff || val <= -maxVarOff {
			return refuse(syscall.EINVAL, "math between %s pointer and %d is not allowed", ptr.typeName(), val)
		}
		return nil
	}
	if off.s.smin == -1<<63 {
		return refuse(syscall.EINVAL, "math between %s pointer and register with unbounded min value is not allowed", ptr.typeName())
	}
	if off.s.smin >= maxVarOff || off.s.smin <= -maxVarOff {
		return refuse(syscall.EINVAL, "value %d makes %s pointer be out of bounds", off.s.smin, ptr.typeName())
	}
	return nil
}

// checkLdImm64 applies an lddw: a constant, a map, a map value or a function.
func (v *verifier) checkLdImm64(st *state, pc int, in isa.Instruction) error {
	if err := v.regDst(in.Dst()); err != nil {
		return err
	}
	hi := v.prog.Insns[pc+1]
	r := &st.cur().regs[in.Dst()]
	switch in.Src() {
	case 0:
		*r = constReg(isa.LdDWValue(in, hi))
	case isa.PseudoMapFD:
		*r = reg{kind: constPtrToMap, mapIdx: in.Imm}
	case isa.PseudoMapValue:
		*r = reg{kind: ptrToMapValue, mapIdx: in.Imm, off: int64(uint32(hi.Imm))}
	case isa.PseudoFunc:
		*r = reg{kind: ptrToFunc, sub: int32(v.subOf[pc+int(in.Imm)+1])}
	}
	return nil
}

// checkLdAbs checks the legacy packet loads (LD_ABS, LD_IND) of socket filters.
func (v *verifier) checkLdAbs(st *state, pc int, in isa.Instruction) error {
	mode := isa.Mode(in.Op)
	if !v.ctx.packet {
		return refuse(syscall.EINVAL, "BPF_LD_[ABS|IND] instructions not allowed for this program type")
	}
	if in.Dst() != 0 || in.Off != 0 || (mode == isa.ModeABS && in.Src() != 0) {
		return refuse(syscall.EINVAL, "BPF_LD_[ABS|IND] uses reserved fields")
	}
	r6, err := v.regArg(st, isa.R6)
	if err != nil {
		return err
	}
	if r6.kind != ptrToCtx {
		return refuse(syscall.EINVAL, "at the time of BPF_LD_ABS|IND R6 != pointing to skb")
	}
	if mode == isa.ModeIND {
		if _, err := v.regArg(st, in.Src()); err != nil {
			return err
		}
	}
	regs := &st.cur().regs
	for r := isa.R1; r <= isa.R5; r++ {
		regs[r] = reg{}
	}
	regs[isa.R0] = unknownSized(isa.Bytes(isa.SizeOf(in.Op)))
	return nil
}

// checkLoad checks and applies an LDX instruction.
func (v *verifier) checkLoad(st *state, pc int, in isa.Instruction) error {
	if in.Imm != 0 {
		return refuse(syscall.EINVAL, "BPF_LDX uses reserved fields")
	}
	src, err := v.regArg(st, in.Src())
	if err != nil {
		return err
	}
	if err := v.regDst(in.Dst()); err != nil {
		return err
	}
	size := isa.Bytes(isa.SizeOf(in.Op))
	a := access{pc: pc, regno: in.Src(), off: int64(in.Off), size: size, kind: " read from"}
	val, err := v.checkMem(st, a, src, nil)
	if err != nil {
		return err
	}
	if isa.Mode(in.Op) == isa.ModeMEMSX && val.isScalar() {
		val = scalarReg(val.s.sext(size))
	} else if val.isScalar() && size < 8 {
		val = scalarReg(val.s.truncate(size))
	} else if val.isPointer() && size < 8 {
		val = unknownSized(size)
	}
	val.id = 0
	st.cur().regs[in.Dst()] = val
	return nil
}

// checkStore checks and applies ST and STX instructions, atomics included.
func (v *verifier) checkStore(st *state, pc int, in isa.Instruction) error {
	class, mode := isa.Class(in.Op), isa.Mode(in.Op)
	if class == isa.ClassSTX && mode == isa.ModeATOMIC {
		return v.checkAtomic(st, pc, in)
	}
	size := isa.Bytes(isa.SizeOf(in.Op))
	var val reg
	if class == isa.ClassST {
		if in.Src() != 0 {
			return refuse(syscall.EINVAL, "BPF_ST uses reserved fields")
		}
		val = constReg(uint64(int64(in.Imm)))
	} else {
		if in.Imm != 0 {
			return refuse(syscall.EINVAL, "BPF_STX uses reserved fields")
		}
		s, err := v.regArg(st, in.Src())
		if err != nil {
			return err
		}
		val = *s
	}
	dst, err := v.regArg(st, in.Dst())
	if err != nil {
		return err
	}
	if size < 8 && val.isScalar() {
		val = scalarReg(val.s.truncate(size))
	}
	a := access{pc: pc, regno: in.Dst(), off: int64(in.Off), size: size, write: true, kind: " write to"}
	_, err = v.checkMem(st, a, dst, &val)
	return err
}

// checkAtomic checks and applies an atomic read-modify-write.
func (v *verifier) checkAtomic(st *state, pc int, in isa.Instruction) error {
	switch in.Imm {
	case isa.AtomicAdd, isa.AtomicOr, isa.AtomicAnd, isa.AtomicXor,
		isa.AtomicAdd | isa.AtomicFetch, isa.AtomicOr | isa.AtomicFetch, isa.AtomicAnd | isa.AtomicFetch,
		isa.AtomicXor | isa.AtomicFetch, isa.AtomicXchg, isa.AtomicCmpXchg:
	default:
		return refuse(syscall.EINVAL, "BPF_ATOMIC uses invalid atomic opcode %02x", in.Imm)
	}
	sz := isa.SizeOf(in.Op)
	if sz != isa.SizeW && sz != isa.SizeDW {
		return refuse(syscall.EINVAL, "invalid atomic operand size")
	}
	size := isa.Bytes(sz)
	if _, err := v.regArg(st, in.Src()); err != nil {
		return err
	}
	if in.Imm == isa.AtomicCmpXchg {
		if _, err := v.regArg(st, isa.R0); err != nil {
			return err
		}
	}
	dst, err := v.regArg(st, in.Dst())
	if err != nil {
		return err
	}
	if dst.kind == ptrToCtx && !v.raw {
		return refuse(syscall.EACCES, "BPF_ATOMIC stores into R%d %s is not allowed", in.Dst(), dst.typeName())
	}
	a := access{pc: pc, regno: in.Dst(), off: int64(in.Off), size: size, kind: " read from"}
	if err := checkAtomicAlign(dst, a); err != nil {
		return err
	}
	if _, err := v.checkMem(st, a, dst, nil); err != nil {
		return err
	}
	a.write, a.kind = true, " write to"
	misc := unknownReg()
	if _, err := v.checkMem(st, a, dst, &misc); err != nil {
		return err
	}
	loaded := unknownSized(size)
	switch {
	case in.Imm == isa.AtomicCmpXchg:
		st.cur().regs[isa.R0] = loaded
	case in.Imm&isa.AtomicFetch != 0:
		if err := v.regDst(in.Src()); err != nil {
			return err
		}
		st.cur().regs[in.Src()] = loaded
	}
	return nil
}
