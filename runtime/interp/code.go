package interp

import (
	"fmt"
	"math"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// Code is a program decoded for the interpreter: one fixed-size entry per instruction slot, each
// naming an operation specialised for its operand kind (immediate or register), width and
// run-time check, with immediates sign-extended and jump targets resolved. It is immutable and
// may be shared by many Machines at once.
type Code struct {
	prog  *program.Program
	insns []insn // len(prog.Insns) entries, then the fall-off-the-end sentinel
	// calls reports helper calls: only then does a run list its stack in env.Mem (for helpers).
	calls bool
	// invalid holds why each opInvalid instruction cannot run.
	invalid map[int]string
}

// Program returns the program c was prepared from.
func (c *Code) Program() *program.Program { return c.prog }

// insn is one decoded instruction. Its meaning depends on op:
//   - ALU with an immediate: imm is the operand, already extended as the operation needs.
//   - loads and register stores: imm is the offset, sign-extended.
//   - immediate stores: imm is the value, off the offset.
//   - jumps and local calls: off is the target's index; conditional jumps compare with imm.
//   - lddw: imm is the constant (or the map index); off is the offset of a map value access.
//   - atomics: imm holds the atomic operation, the opcode and the check; packet loads: off holds
//     the opcode.
//   - fused instructions (fuse.go): see their operations.
type insn struct {
	op  uint8
	dst uint8
	src uint8
	aux uint8 // a second source register, in fused instructions
	off int32
	imm uint64
}

// Operations. The interpreter's switch compiles to a jump table over these dense values.
const (
	opInvalid uint8 = iota
	opFellOff       // the sentinel after the last instruction

	// 64-bit ALU.
	opAdd64Imm
	opAdd64Reg
	opSub64Imm
	opSub64Reg
	opMul64Imm
	opMul64Reg
	opDiv64Imm
	opDiv64Reg
	opSDiv64Imm
	opSDiv64Reg
	opMod64Imm
	opMod64Reg
	opSMod64Imm
	opSMod64Reg
	opOr64Imm
	opOr64Reg
	opAnd64Imm
	opAnd64Reg
	opLsh64Imm
	opLsh64Reg
	opRsh64Imm
	opRsh64Reg
	opArsh64Imm
	opArsh64Reg
	opXor64Imm
	opXor64Reg
	opMov64Imm
	opMov64Reg
	opNeg64
	opMovSX8to64
	opMovSX16to64
	opMovSX32to64
	opBswap16
	opBswap32
	opBswap64

	// 32-bit ALU: results are zero-extended.
	opAdd32Imm
	opAdd32Reg
	opSub32Imm
	opSub32Reg
	opMul32Imm
	opMul32Reg
	opDiv32Imm
	opDiv32Reg
	opSDiv32Imm
	opSDiv32Reg
	opMod32Imm
	opMod32Reg
	opSMod32Imm
	opSMod32Reg
	opOr32Imm
	opOr32Reg
	opAnd32Imm
	opAnd32Reg
	opLsh32Imm
	opLsh32Reg
	opRsh32Imm
	opRsh32Reg
	opArsh32Imm
	opArsh32Reg
	opXor32Imm
	opXor32Reg
	opMov32Imm
	opMov32Reg
	opNeg32
	opMovSX8to32
	opMovSX16to32
	opLe16 // truncations: to-little-endian on a little-endian host
	opLe32
	opBe16
	opBe32
	opBe64
	opNop

	// Jumps; JMP compares 64 bits, JMP32 the low 32.
	opJa
	opJeqImm
	opJeqReg
	opJneImm
	opJneReg
	opJgtImm
	opJgtReg
	opJgeImm
	opJgeReg
	opJltImm
	opJltReg
	opJleImm
	opJleReg
	opJsgtImm
	opJsgtReg
	opJsgeImm
	opJsgeReg
	opJsltImm
	opJsltReg
	opJsleImm
	opJsleReg
	opJsetImm
	opJsetReg
	opJeq32Imm
	opJeq32Reg
	opJne32Imm
	opJne32Reg
	opJgt32Imm
	opJgt32Reg
	opJge32Imm
	opJge32Reg
	opJlt32Imm
	opJlt32Reg
	opJle32Imm
	opJle32Reg
	opJsgt32Imm
	opJsgt32Reg
	opJsge32Imm
	opJsge32Reg
	opJslt32Imm
	opJslt32Reg
	opJsle32Imm
	opJsle32Reg
	opJset32Imm
	opJset32Reg

	opCall      // helper imm
	opCallX     // helper whose number is in dst
	opCallLocal // bpf-to-bpf call to off
	opExit

	// Loads and stores; the Chk forms check the address first.
	opLdxB
	opLdxH
	opLdxW
	opLdxDW
	opLdxSB
	opLdxSH
	opLdxSW
	opLdxBChk
	opLdxHChk
	opLdxWChk
	opLdxDWChk
	opLdxSBChk
	opLdxSHChk
	opLdxSWChk
	opStB
	opStH
	opStW
	opStDW
	opStBChk
	opStHChk
	opStWChk
	opStDWChk
	opStxB
	opStxH
	opStxW
	opStxDW
	opStxBChk
	opStxHChk
	opStxWChk
	opStxDWChk

	opLdDW       // dst = imm; skips the second slot
	opLdMap      // dst = env.Maps[imm]
	opLdMapValue // dst = env.MapValues[imm] + off
	opAtomic     // every atomic; see atomic.go
	opLdPacket   // LD_ABS / LD_IND

	// Fused instructions (fuse.go). A fused instruction stands in the first slot of the
	// sequence it replaces and skips the rest, which keep their own decoding.
	opMovAdd64Imm // r[dst] = r[src] + imm; one slot more
	opMovSub64Imm
	opMovAnd64Imm
	opMovOr64Imm
	opMovXor64Imm
	opMovLsh64Imm
	opMovRsh64Imm
	opMovArsh64Imm
	opMovAdd64Reg // r[dst] = r[src] + r[aux]; one slot more
	opMovSub64Reg
	opMovAnd64Reg
	opMovOr64Reg
	opMovXor64Reg
	opMovAdd32Imm // r[dst] = uint32(r[src]) + imm, zero-extended; one slot more
	opMovAnd32Imm
	opMovOr32Imm
	opMovXor32Imm
	opMovLsh32Imm
	opMovRsh32Imm
	opLdxBIdx // r[dst] = *(u8 *)(r[src] + r[aux] + imm); off more slots
	opLdxHIdx
	opLdxWIdx
	opLdxDWIdx
	opLdxBIdxChk
	opLdxHIdxChk
	opLdxWIdxChk
	opLdxDWIdxChk
	numOps
)

// decodeError describes an instruction Prepare cannot run.
func decodeError(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// Prepare decodes a verified program for the interpreter. An instruction it cannot run safely
// (an unknown opcode, a register outside r0..r10, a write to r10, a jump or call outside the
// program or into the middle of an lddw, a truncated lddw) becomes one that stops the program
// with the reason if it is ever reached: the verifier refuses such instructions where they can
// run, and dead code may hold anything, as in the kernel. So no instruction stream, verified or
// not, can make the interpreter misbehave: with every access marked program.CheckBounds, any
// stream is safe to run. Prepare fails only for an empty program or one whose Checks do not
// match its instructions.
func Prepare(p *program.Program) (*Code, error) { return prepare(p, true) }

// prepare decodes p, fusing common instruction sequences when fuse is set.
func prepare(p *program.Program, fuse bool) (*Code, error) {
	n := len(p.Insns)
	if n == 0 {
		return nil, fmt.Errorf("prepare: empty program")
	}
	if n > math.MaxInt32/2 {
		return nil, fmt.Errorf("prepare: %d instructions", n)
	}
	if p.Checks != nil && len(p.Checks) != n {
		return nil, fmt.Errorf("prepare: %d checks for %d instructions", len(p.Checks), n)
	}
	c := &Code{prog: p, insns: make([]insn, n+1)}
	invalid := func(pc int, err error) {
		if c.invalid == nil {
			c.invalid = make(map[int]string)
		}
		c.insns[pc] = insn{op: opInvalid}
		c.invalid[pc] = err.Error()
	}
	// second marks the second slots of well-formed lddw, which no jump may target.
	second := make([]bool, n+1)
	for pc := 0; pc < n; pc++ {
		if p.Insns[pc].IsLdDW() && pc+1 < n {
			second[pc+1] = true
			pc++
		}
	}
	for pc := 0; pc < n; pc++ {
		chk := p.Checks == nil || p.Checks[pc] != program.CheckNone
		in, err := decode(p.Insns, pc, chk)
		if err == nil && isJump(in.op) {
			if t := int(in.off); t < 0 || t >= n || second[t] {
				err = decodeError("jump to %d is outside the program or into an lddw", t)
			}
		}
		if err != nil {
			invalid(pc, err)
			if second[pc+1] {
				pc++
				invalid(pc, decodeError("second slot of an invalid lddw"))
			}
			continue
		}
		if in.op == opCall || in.op == opCallX {
			c.calls = true
		}
		c.insns[pc] = in
		if in.op == opLdDW || in.op == opLdMap || in.op == opLdMapValue {
			pc++
			invalid(pc, decodeError("second slot of an lddw"))
		}
	}
	c.insns[n] = insn{op: opFellOff}
	if fuse {
		c.fuse()
	}
	return c, nil
}

func isJump(op uint8) bool {
	return op >= opJa && op <= opJset32Reg || op == opCallLocal
}

// Register-use checks.
func readable(r uint8) bool { return r <= isa.R10 }
func writable(r uint8) bool { return r < isa.R10 }

// decode translates the instruction at pc.
func decode(insns []isa.Instruction, pc int, chk bool) (insn, error) {
	i := insns[pc]
	dst, src := i.Dst(), i.Src()
	out := insn{dst: dst, src: src}
	bad := func() (insn, error) { return insn{}, decodeError("unknown opcode %#02x", i.Op) }
	switch isa.Class(i.Op) {
	case isa.ClassALU64, isa.ClassALU:
		return decodeALU(i, pc)
	case isa.ClassJMP, isa.ClassJMP32:
		return decodeJump(i, pc, len(insns))
	case isa.ClassLDX:
		if !writable(dst) || !readable(src) {
			return insn{}, decodeError("invalid register")
		}
		var op uint8
		switch isa.Mode(i.Op) {
		case isa.ModeMEM:
			op = [...]uint8{isa.SizeB: opLdxB, isa.SizeH: opLdxH, isa.SizeW: opLdxW, isa.SizeDW: opLdxDW}[isa.SizeOf(i.Op)]
		case isa.ModeMEMSX:
			if isa.SizeOf(i.Op) == isa.SizeDW {
				return bad()
			}
			op = [...]uint8{isa.SizeB: opLdxSB, isa.SizeH: opLdxSH, isa.SizeW: opLdxSW}[isa.SizeOf(i.Op)]
		default:
			return bad()
		}
		if chk {
			op += opLdxBChk - opLdxB
		}
		out.op, out.imm = op, uint64(int64(i.Off))
		return out, nil
	case isa.ClassST:
		if isa.Mode(i.Op) != isa.ModeMEM || !readable(dst) {
			return bad()
		}
		op := [...]uint8{isa.SizeB: opStB, isa.SizeH: opStH, isa.SizeW: opStW, isa.SizeDW: opStDW}[isa.SizeOf(i.Op)]
		if chk {
			op += opStBChk - opStB
		}
		out.op, out.off, out.imm = op, int32(i.Off), uint64(int64(i.Imm))
		return out, nil
	case isa.ClassSTX:
		if !readable(dst) || !readable(src) {
			return insn{}, decodeError("invalid register")
		}
		switch isa.Mode(i.Op) {
		case isa.ModeMEM:
			op := [...]uint8{isa.SizeB: opStxB, isa.SizeH: opStxH, isa.SizeW: opStxW, isa.SizeDW: opStxDW}[isa.SizeOf(i.Op)]
			if chk {
				op += opStxBChk - opStxB
			}
			out.op, out.imm = op, uint64(int64(i.Off))
			return out, nil
		case isa.ModeATOMIC:
			return decodeAtomic(i, pc, chk)
		}
		return bad()
	case isa.ClassLD:
		switch {
		case i.Op == isa.OpLdDW:
			return decodeLdDW(insns, pc)
		case (isa.Mode(i.Op) == isa.ModeABS || isa.Mode(i.Op) == isa.ModeIND) && isa.SizeOf(i.Op) != isa.SizeDW:
			if !readable(src) {
				return insn{}, decodeError("invalid register")
			}
			out.op, out.imm = opLdPacket, uint64(int64(i.Imm))
			out.off = int32(i.Op)
			return out, nil
		}
		return bad()
	}
	return bad()
}

func decodeLdDW(insns []isa.Instruction, pc int) (insn, error) {
	i := insns[pc]
	if pc+1 >= len(insns) {
		return insn{}, decodeError("lddw without its second slot")
	}
	hi := insns[pc+1]
	if hi.Op != 0 || hi.Regs != 0 || hi.Off != 0 {
		return insn{}, decodeError("invalid second slot of lddw")
	}
	if !writable(i.Dst()) {
		return insn{}, decodeError("invalid register")
	}
	out := insn{dst: i.Dst()}
	switch i.Src() {
	case 0:
		out.op, out.imm = opLdDW, isa.LdDWValue(i, hi)
	case isa.PseudoMapFD:
		out.op, out.imm = opLdMap, uint64(uint32(i.Imm))
	case isa.PseudoMapValue:
		out.op, out.imm, out.off = opLdMapValue, uint64(uint32(i.Imm)), hi.Imm
	case isa.PseudoFunc:
		// The address of a subprogram, for helpers that take callbacks: its instruction index.
		t := pc + 1 + int(i.Imm)
		if t < 0 || t >= len(insns) {
			return insn{}, decodeError("function reference outside the program")
		}
		out.op, out.imm = opLdDW, uint64(t)
	default:
		return insn{}, decodeError("lddw with src %d is not supported after verification", i.Src())
	}
	return out, nil
}

func decodeAtomic(i isa.Instruction, pc int, chk bool) (insn, error) {
	size := isa.SizeOf(i.Op)
	switch i.Imm {
	case isa.AtomicAdd, isa.AtomicOr, isa.AtomicAnd, isa.AtomicXor,
		isa.AtomicAdd | isa.AtomicFetch, isa.AtomicOr | isa.AtomicFetch, isa.AtomicAnd | isa.AtomicFetch,
		isa.AtomicXor | isa.AtomicFetch, isa.AtomicXchg, isa.AtomicCmpXchg:
		if size != isa.SizeW && size != isa.SizeDW {
			return insn{}, decodeError("atomic operation %#x on %d bytes", i.Imm, isa.Bytes(size))
		}
		if i.Imm&isa.AtomicFetch != 0 && !writable(i.Src()) {
			return insn{}, decodeError("invalid register")
		}
	case isa.AtomicLoadAcq:
		if !writable(i.Dst()) {
			return insn{}, decodeError("invalid register")
		}
	case isa.AtomicStoreRel:
	default:
		return insn{}, decodeError("unknown atomic operation %#x", i.Imm)
	}
	out := insn{op: opAtomic, dst: i.Dst(), src: i.Src(), off: int32(i.Off), imm: uint64(uint32(i.Imm))}
	out.imm |= uint64(i.Op) << 32
	if chk {
		out.imm |= atomicChecked
	}
	return out, nil
}

// atomicChecked marks, in an opAtomic's imm, an access that must be checked.
const atomicChecked = 1 << 40

func decodeALU(i isa.Instruction, pc int) (insn, error) {
	dst, src := i.Dst(), i.Src()
	is64 := isa.Class(i.Op) == isa.ClassALU64
	reg := isa.Source(i.Op) == isa.SrcX
	o := isa.Operation(i.Op)
	out := insn{dst: dst, src: src}
	if !writable(dst) || (reg && !readable(src)) {
		return insn{}, decodeError("invalid register")
	}
	bad := func() (insn, error) {
		return insn{}, decodeError("unknown opcode %#02x (off %d, imm %d)", i.Op, i.Off, i.Imm)
	}
	// The immediate as the operation sees it.
	imm := uint64(int64(i.Imm))
	if !is64 {
		imm = uint64(uint32(i.Imm))
	}
	pick := func(op64, op32 uint8) uint8 {
		if is64 {
			return op64
		}
		return op32
	}
	if o == isa.ALUEnd {
		w := 0 // 16, 32, 64 bits
		switch i.Imm {
		case 16:
		case 32:
			w = 1
		case 64:
			w = 2
		default:
			return bad()
		}
		switch {
		case is64 && !reg:
			out.op = [3]uint8{opBswap16, opBswap32, opBswap64}[w]
		case !is64 && !reg: // to little endian: truncation on this host
			out.op = [3]uint8{opLe16, opLe32, opNop}[w]
		case !is64 && reg:
			out.op = [3]uint8{opBe16, opBe32, opBe64}[w]
		}
		if out.op == opInvalid {
			return bad()
		}
		return out, nil
	}
	signed := false
	switch o {
	case isa.ALUDiv, isa.ALUMod:
		if i.Off != 0 && i.Off != 1 {
			return bad()
		}
		signed = i.Off == 1
	case isa.ALUMov:
		if reg && i.Off != 0 {
			switch {
			case i.Off == 8:
				out.op = pick(opMovSX8to64, opMovSX8to32)
			case i.Off == 16:
				out.op = pick(opMovSX16to64, opMovSX16to32)
			case i.Off == 32 && is64:
				out.op = opMovSX32to64
			default:
				return bad()
			}
			return out, nil
		}
	case isa.ALUNeg:
		if reg {
			return bad()
		}
		out.op = pick(opNeg64, opNeg32)
		return out, nil
	}
	ops := aluOps[o>>4]
	if signed {
		ops = sdivOps[o>>4]
	}
	if ops == (aluSet{}) {
		return bad()
	}
	switch {
	case reg && is64:
		out.op = ops.reg64
	case reg:
		out.op = ops.reg32
	case is64:
		out.op = ops.imm64
	default:
		out.op = ops.imm32
	}
	if reg {
		return out, nil
	}
	out.src = 0
	out.imm = imm
	// Immediate forms whose result the operand decides alone are settled here, so the run-time
	// operations never divide by zero and shift counts are already masked.
	switch o {
	case isa.ALULsh, isa.ALURsh, isa.ALUArsh:
		if is64 {
			out.imm &= 63
		} else {
			out.imm &= 31
		}
	case isa.ALUDiv:
		if out.imm == 0 || (!is64 && uint32(out.imm) == 0) { // x/0 = 0
			out.op, out.imm = pick(opMov64Imm, opMov32Imm), 0
		}
	case isa.ALUMod:
		if out.imm == 0 || (!is64 && uint32(out.imm) == 0) { // x%0 = x (zero-extended for 32 bits)
			out.op, out.imm = pick(opNop, opMov32Reg), 0
			out.src = dst
		}
	}
	return out, nil
}

func decodeJump(i isa.Instruction, pc, n int) (insn, error) {
	dst, src := i.Dst(), i.Src()
	is64 := isa.Class(i.Op) == isa.ClassJMP
	reg := isa.Source(i.Op) == isa.SrcX
	o := isa.Operation(i.Op)
	out := insn{dst: dst, src: src}
	bad := func() (insn, error) { return insn{}, decodeError("unknown opcode %#02x", i.Op) }
	switch {
	case i.Op == isa.OpJA:
		out.op, out.off = opJa, int32(pc+1+int(i.Off))
		return out, nil
	case i.Op == isa.OpJA32:
		t := int64(pc) + 1 + int64(i.Imm)
		if t < 0 || t > int64(n) {
			return insn{}, decodeError("jump to %d is outside the program", t)
		}
		out.op, out.off = opJa, int32(t)
		return out, nil
	case i.Op == isa.OpExit:
		out.op = opExit
		return out, nil
	case i.Op == isa.OpCallX:
		if !readable(dst) {
			return insn{}, decodeError("invalid register")
		}
		out.op = opCallX
		return out, nil
	case i.Op == isa.OpCall:
		switch src {
		case isa.PseudoCallHelper:
			out.op, out.imm = opCall, uint64(uint32(i.Imm))
		case isa.PseudoCallLocal:
			t := int64(pc) + 1 + int64(i.Imm)
			if t < 0 || t >= int64(n) {
				return insn{}, decodeError("call to %d is outside the program", t)
			}
			out.op, out.off = opCallLocal, int32(t)
		default:
			return insn{}, decodeError("kfunc calls are not supported")
		}
		return out, nil
	}
	if !readable(dst) || (reg && !readable(src)) {
		return insn{}, decodeError("invalid register")
	}
	ops := jmpOps[o>>4]
	if !is64 {
		ops = jmp32Ops[o>>4]
	}
	if ops == (jmpSet{}) {
		return bad()
	}
	out.off = int32(pc + 1 + int(i.Off))
	if reg {
		out.op = ops.reg
		return out, nil
	}
	out.op, out.src = ops.imm, 0
	if is64 {
		out.imm = uint64(int64(i.Imm))
	} else {
		out.imm = uint64(uint32(i.Imm))
	}
	return out, nil
}

// aluSet holds the decoded operations of one ALU operation: immediate and register forms, 64
// and 32 bits.
type aluSet struct{ imm64, reg64, imm32, reg32 uint8 }

// aluOps and sdivOps are indexed by the operation's high four bits; the zero aluSet marks an
// operation decoded elsewhere (neg, end) or none.
var aluOps = [16]aluSet{
	isa.ALUAdd >> 4:  {opAdd64Imm, opAdd64Reg, opAdd32Imm, opAdd32Reg},
	isa.ALUSub >> 4:  {opSub64Imm, opSub64Reg, opSub32Imm, opSub32Reg},
	isa.ALUMul >> 4:  {opMul64Imm, opMul64Reg, opMul32Imm, opMul32Reg},
	isa.ALUDiv >> 4:  {opDiv64Imm, opDiv64Reg, opDiv32Imm, opDiv32Reg},
	isa.ALUOr >> 4:   {opOr64Imm, opOr64Reg, opOr32Imm, opOr32Reg},
	isa.ALUAnd >> 4:  {opAnd64Imm, opAnd64Reg, opAnd32Imm, opAnd32Reg},
	isa.ALULsh >> 4:  {opLsh64Imm, opLsh64Reg, opLsh32Imm, opLsh32Reg},
	isa.ALURsh >> 4:  {opRsh64Imm, opRsh64Reg, opRsh32Imm, opRsh32Reg},
	isa.ALUMod >> 4:  {opMod64Imm, opMod64Reg, opMod32Imm, opMod32Reg},
	isa.ALUXor >> 4:  {opXor64Imm, opXor64Reg, opXor32Imm, opXor32Reg},
	isa.ALUMov >> 4:  {opMov64Imm, opMov64Reg, opMov32Imm, opMov32Reg},
	isa.ALUArsh >> 4: {opArsh64Imm, opArsh64Reg, opArsh32Imm, opArsh32Reg},
}

// sdivOps holds the signed division and modulo (off 1).
var sdivOps = [16]aluSet{
	isa.ALUDiv >> 4: {opSDiv64Imm, opSDiv64Reg, opSDiv32Imm, opSDiv32Reg},
	isa.ALUMod >> 4: {opSMod64Imm, opSMod64Reg, opSMod32Imm, opSMod32Reg},
}

// jmpSet holds the decoded operations of one conditional jump: immediate and register forms.
type jmpSet struct{ imm, reg uint8 }

// jmpOps and jmp32Ops are indexed by the jump's high four bits; the zero jmpSet marks a jump
// decoded elsewhere (ja, call, exit) or none.
var jmpOps = [16]jmpSet{
	isa.JmpJEQ >> 4: {opJeqImm, opJeqReg}, isa.JmpJNE >> 4: {opJneImm, opJneReg},
	isa.JmpJGT >> 4: {opJgtImm, opJgtReg}, isa.JmpJGE >> 4: {opJgeImm, opJgeReg},
	isa.JmpJLT >> 4: {opJltImm, opJltReg}, isa.JmpJLE >> 4: {opJleImm, opJleReg},
	isa.JmpJSGT >> 4: {opJsgtImm, opJsgtReg}, isa.JmpJSGE >> 4: {opJsgeImm, opJsgeReg},
	isa.JmpJSLT >> 4: {opJsltImm, opJsltReg}, isa.JmpJSLE >> 4: {opJsleImm, opJsleReg},
	isa.JmpJSET >> 4: {opJsetImm, opJsetReg},
}

var jmp32Ops = [16]jmpSet{
	isa.JmpJEQ >> 4: {opJeq32Imm, opJeq32Reg}, isa.JmpJNE >> 4: {opJne32Imm, opJne32Reg},
	isa.JmpJGT >> 4: {opJgt32Imm, opJgt32Reg}, isa.JmpJGE >> 4: {opJge32Imm, opJge32Reg},
	isa.JmpJLT >> 4: {opJlt32Imm, opJlt32Reg}, isa.JmpJLE >> 4: {opJle32Imm, opJle32Reg},
	isa.JmpJSGT >> 4: {opJsgt32Imm, opJsgt32Reg}, isa.JmpJSGE >> 4: {opJsge32Imm, opJsge32Reg},
	isa.JmpJSLT >> 4: {opJslt32Imm, opJslt32Reg}, isa.JmpJSLE >> 4: {opJsle32Imm, opJsle32Reg},
	isa.JmpJSET >> 4: {opJset32Imm, opJset32Reg},
}
