package interp

import (
	"math/bits"
	"unsafe"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// insnSize is the size of a decoded instruction, the stride of the dispatch loop.
const insnSize = unsafe.Sizeof(insn{})

// unlimited is the budget of a run without one: more instructions than any run can execute.
const unlimited = int64(1) << 62

// exec is the dispatch loop. Registers are set; r10 is the top of frame 0.
//
// Budget: a taken backward jump charges the length of the loop it closes (the instructions from
// its target to itself); a run whose charges exceed env.Budget stops. Every unbounded execution
// goes through backward jumps (recursion is bounded by the call depth), so this bounds the run
// at a cost paid only on back-edges.
//
//go:nocheckptr
func (m *Machine) exec(c *Code, env *helper.Env) (uint64, error) {
	// Only ip is carried from one instruction to the next in a register: the rest of the run's
	// state (call depth, live stack, budget) lives in m, and the rare cases that call functions
	// save ip in m.ip and reload it after, so the compiler needs no spill per instruction.
	r := &m.regs
	base := unsafe.Pointer(&c.insns[0])
	m.depth = 0
	m.lo = m.top - isa.StackSize // bottom of the current frame: [lo, top) is the live stack
	m.span = isa.StackSize
	m.budget = unlimited
	if env.Budget != 0 && env.Budget < uint64(unlimited) {
		m.budget = int64(env.Budget)
	}
	ip := base
	var in *insn
	for {
		in = (*insn)(ip)
		ip = unsafe.Add(ip, insnSize)
		switch in.op {
		// 64-bit ALU.
		case opAdd64Imm:
			r[in.dst] += in.imm
		case opAdd64Reg:
			r[in.dst] += r[in.src]
		case opSub64Imm:
			r[in.dst] -= in.imm
		case opSub64Reg:
			r[in.dst] -= r[in.src]
		case opMul64Imm:
			r[in.dst] *= in.imm
		case opMul64Reg:
			r[in.dst] *= r[in.src]
		case opDiv64Imm:
			r[in.dst] /= in.imm
		case opDiv64Reg:
			if y := r[in.src]; y != 0 {
				r[in.dst] /= y
			} else {
				r[in.dst] = 0
			}
		case opSDiv64Imm:
			r[in.dst] = uint64(int64(r[in.dst]) / int64(in.imm))
		case opSDiv64Reg:
			if y := int64(r[in.src]); y != 0 {
				r[in.dst] = uint64(int64(r[in.dst]) / y)
			} else {
				r[in.dst] = 0
			}
		case opMod64Imm:
			r[in.dst] %= in.imm
		case opMod64Reg:
			if y := r[in.src]; y != 0 {
				r[in.dst] %= y
			}
		case opSMod64Imm:
			r[in.dst] = uint64(int64(r[in.dst]) % int64(in.imm))
		case opSMod64Reg:
			if y := int64(r[in.src]); y != 0 {
				r[in.dst] = uint64(int64(r[in.dst]) % y)
			}
		case opOr64Imm:
			r[in.dst] |= in.imm
		case opOr64Reg:
			r[in.dst] |= r[in.src]
		case opAnd64Imm:
			r[in.dst] &= in.imm
		case opAnd64Reg:
			r[in.dst] &= r[in.src]
		case opLsh64Imm:
			r[in.dst] <<= in.imm
		case opLsh64Reg:
			r[in.dst] <<= r[in.src] & 63
		case opRsh64Imm:
			r[in.dst] >>= in.imm
		case opRsh64Reg:
			r[in.dst] >>= r[in.src] & 63
		case opArsh64Imm:
			r[in.dst] = uint64(int64(r[in.dst]) >> in.imm)
		case opArsh64Reg:
			r[in.dst] = uint64(int64(r[in.dst]) >> (r[in.src] & 63))
		case opXor64Imm:
			r[in.dst] ^= in.imm
		case opXor64Reg:
			r[in.dst] ^= r[in.src]
		case opMov64Imm:
			r[in.dst] = in.imm
		case opMov64Reg:
			r[in.dst] = r[in.src]
		case opNeg64:
			r[in.dst] = -r[in.dst]
		case opMovSX8to64:
			r[in.dst] = uint64(int64(int8(r[in.src])))
		case opMovSX16to64:
			r[in.dst] = uint64(int64(int16(r[in.src])))
		case opMovSX32to64:
			r[in.dst] = uint64(int64(int32(r[in.src])))
		case opBswap16, opBe16:
			r[in.dst] = uint64(bits.ReverseBytes16(uint16(r[in.dst])))
		case opBswap32, opBe32:
			r[in.dst] = uint64(bits.ReverseBytes32(uint32(r[in.dst])))
		case opBswap64, opBe64:
			r[in.dst] = bits.ReverseBytes64(r[in.dst])

		// 32-bit ALU.
		case opAdd32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) + uint32(in.imm))
		case opAdd32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) + uint32(r[in.src]))
		case opSub32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) - uint32(in.imm))
		case opSub32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) - uint32(r[in.src]))
		case opMul32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) * uint32(in.imm))
		case opMul32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) * uint32(r[in.src]))
		case opDiv32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) / uint32(in.imm))
		case opDiv32Reg:
			if y := uint32(r[in.src]); y != 0 {
				r[in.dst] = uint64(uint32(r[in.dst]) / y)
			} else {
				r[in.dst] = 0
			}
		case opSDiv32Imm:
			r[in.dst] = uint64(uint32(int32(r[in.dst]) / int32(in.imm)))
		case opSDiv32Reg:
			if y := int32(r[in.src]); y != 0 {
				r[in.dst] = uint64(uint32(int32(r[in.dst]) / y))
			} else {
				r[in.dst] = 0
			}
		case opMod32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) % uint32(in.imm))
		case opMod32Reg:
			if y := uint32(r[in.src]); y != 0 {
				r[in.dst] = uint64(uint32(r[in.dst]) % y)
			} else {
				r[in.dst] = uint64(uint32(r[in.dst]))
			}
		case opSMod32Imm:
			r[in.dst] = uint64(uint32(int32(r[in.dst]) % int32(in.imm)))
		case opSMod32Reg:
			if y := int32(r[in.src]); y != 0 {
				r[in.dst] = uint64(uint32(int32(r[in.dst]) % y))
			} else {
				r[in.dst] = uint64(uint32(r[in.dst]))
			}
		case opOr32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) | uint32(in.imm))
		case opOr32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) | uint32(r[in.src]))
		case opAnd32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) & uint32(in.imm))
		case opAnd32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) & uint32(r[in.src]))
		case opLsh32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) << in.imm)
		case opLsh32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) << (r[in.src] & 31))
		case opRsh32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) >> in.imm)
		case opRsh32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) >> (r[in.src] & 31))
		case opArsh32Imm:
			r[in.dst] = uint64(uint32(int32(r[in.dst]) >> in.imm))
		case opArsh32Reg:
			r[in.dst] = uint64(uint32(int32(r[in.dst]) >> (r[in.src] & 31)))
		case opXor32Imm:
			r[in.dst] = uint64(uint32(r[in.dst]) ^ uint32(in.imm))
		case opXor32Reg:
			r[in.dst] = uint64(uint32(r[in.dst]) ^ uint32(r[in.src]))
		case opMov32Imm:
			r[in.dst] = in.imm
		case opMov32Reg:
			r[in.dst] = uint64(uint32(r[in.src]))
		case opNeg32:
			r[in.dst] = uint64(-uint32(r[in.dst]))
		case opMovSX8to32:
			r[in.dst] = uint64(uint32(int32(int8(r[in.src]))))
		case opMovSX16to32:
			r[in.dst] = uint64(uint32(int32(int16(r[in.src]))))
		case opLe16:
			r[in.dst] = uint64(uint16(r[in.dst]))
		case opLe32:
			r[in.dst] = uint64(uint32(r[in.dst]))
		case opNop:

		// Jumps.
		case opJa:
			goto taken
		case opJeqImm:
			if r[in.dst] == in.imm {
				goto taken
			}
		case opJeqReg:
			if r[in.dst] == r[in.src] {
				goto taken
			}
		case opJneImm:
			if r[in.dst] != in.imm {
				goto taken
			}
		case opJneReg:
			if r[in.dst] != r[in.src] {
				goto taken
			}
		case opJgtImm:
			if r[in.dst] > in.imm {
				goto taken
			}
		case opJgtReg:
			if r[in.dst] > r[in.src] {
				goto taken
			}
		case opJgeImm:
			if r[in.dst] >= in.imm {
				goto taken
			}
		case opJgeReg:
			if r[in.dst] >= r[in.src] {
				goto taken
			}
		case opJltImm:
			if r[in.dst] < in.imm {
				goto taken
			}
		case opJltReg:
			if r[in.dst] < r[in.src] {
				goto taken
			}
		case opJleImm:
			if r[in.dst] <= in.imm {
				goto taken
			}
		case opJleReg:
			if r[in.dst] <= r[in.src] {
				goto taken
			}
		case opJsgtImm:
			if int64(r[in.dst]) > int64(in.imm) {
				goto taken
			}
		case opJsgtReg:
			if int64(r[in.dst]) > int64(r[in.src]) {
				goto taken
			}
		case opJsgeImm:
			if int64(r[in.dst]) >= int64(in.imm) {
				goto taken
			}
		case opJsgeReg:
			if int64(r[in.dst]) >= int64(r[in.src]) {
				goto taken
			}
		case opJsltImm:
			if int64(r[in.dst]) < int64(in.imm) {
				goto taken
			}
		case opJsltReg:
			if int64(r[in.dst]) < int64(r[in.src]) {
				goto taken
			}
		case opJsleImm:
			if int64(r[in.dst]) <= int64(in.imm) {
				goto taken
			}
		case opJsleReg:
			if int64(r[in.dst]) <= int64(r[in.src]) {
				goto taken
			}
		case opJsetImm:
			if r[in.dst]&in.imm != 0 {
				goto taken
			}
		case opJsetReg:
			if r[in.dst]&r[in.src] != 0 {
				goto taken
			}
		case opJeq32Imm:
			if uint32(r[in.dst]) == uint32(in.imm) {
				goto taken
			}
		case opJeq32Reg:
			if uint32(r[in.dst]) == uint32(r[in.src]) {
				goto taken
			}
		case opJne32Imm:
			if uint32(r[in.dst]) != uint32(in.imm) {
				goto taken
			}
		case opJne32Reg:
			if uint32(r[in.dst]) != uint32(r[in.src]) {
				goto taken
			}
		case opJgt32Imm:
			if uint32(r[in.dst]) > uint32(in.imm) {
				goto taken
			}
		case opJgt32Reg:
			if uint32(r[in.dst]) > uint32(r[in.src]) {
				goto taken
			}
		case opJge32Imm:
			if uint32(r[in.dst]) >= uint32(in.imm) {
				goto taken
			}
		case opJge32Reg:
			if uint32(r[in.dst]) >= uint32(r[in.src]) {
				goto taken
			}
		case opJlt32Imm:
			if uint32(r[in.dst]) < uint32(in.imm) {
				goto taken
			}
		case opJlt32Reg:
			if uint32(r[in.dst]) < uint32(r[in.src]) {
				goto taken
			}
		case opJle32Imm:
			if uint32(r[in.dst]) <= uint32(in.imm) {
				goto taken
			}
		case opJle32Reg:
			if uint32(r[in.dst]) <= uint32(r[in.src]) {
				goto taken
			}
		case opJsgt32Imm:
			if int32(r[in.dst]) > int32(in.imm) {
				goto taken
			}
		case opJsgt32Reg:
			if int32(r[in.dst]) > int32(r[in.src]) {
				goto taken
			}
		case opJsge32Imm:
			if int32(r[in.dst]) >= int32(in.imm) {
				goto taken
			}
		case opJsge32Reg:
			if int32(r[in.dst]) >= int32(r[in.src]) {
				goto taken
			}
		case opJslt32Imm:
			if int32(r[in.dst]) < int32(in.imm) {
				goto taken
			}
		case opJslt32Reg:
			if int32(r[in.dst]) < int32(r[in.src]) {
				goto taken
			}
		case opJsle32Imm:
			if int32(r[in.dst]) <= int32(in.imm) {
				goto taken
			}
		case opJsle32Reg:
			if int32(r[in.dst]) <= int32(r[in.src]) {
				goto taken
			}
		case opJset32Imm:
			if uint32(r[in.dst])&uint32(in.imm) != 0 {
				goto taken
			}
		case opJset32Reg:
			if uint32(r[in.dst])&uint32(r[in.src]) != 0 {
				goto taken
			}

		// Calls.
		case opCall:
			if m.ip = ip; m.callHelper(env, in.imm, pcOf(base, ip)) != nil {
				return 0, m.err
			}
			ip = m.ip
		case opCallX:
			if m.ip = ip; m.callHelper(env, r[in.dst], pcOf(base, ip)) != nil {
				return 0, m.err
			}
			ip = m.ip
		case opCallLocal:
			if m.depth == isa.MaxCallDepth-1 {
				return 0, fault(pcOf(base, ip), "call depth exceeds %d frames", isa.MaxCallDepth)
			}
			f := &m.frames[m.depth&(isa.MaxCallDepth-1)]
			f.ret, f.fp = ip, r[10]
			f.saved = [4]uint64{r[6], r[7], r[8], r[9]}
			m.depth++
			r[10] -= isa.StackSize
			m.lo -= isa.StackSize
			m.span += isa.StackSize
			ip = unsafe.Add(base, uintptr(in.off)*insnSize)
		case opExit:
			if m.depth == 0 {
				return r[0], nil
			}
			m.depth--
			f := &m.frames[m.depth&(isa.MaxCallDepth-1)]
			ip, r[10] = f.ret, f.fp
			r[6], r[7], r[8], r[9] = f.saved[0], f.saved[1], f.saved[2], f.saved[3]
			m.lo += isa.StackSize
			m.span -= isa.StackSize

		// Loads.
		case opLdxB:
			r[in.dst] = uint64(*(*uint8)(at(r[in.src] + in.imm)))
		case opLdxH:
			r[in.dst] = uint64(*(*uint16)(at(r[in.src] + in.imm)))
		case opLdxW:
			r[in.dst] = uint64(*(*uint32)(at(r[in.src] + in.imm)))
		case opLdxDW:
			r[in.dst] = *(*uint64)(at(r[in.src] + in.imm))
		case opLdxSB:
			r[in.dst] = uint64(int64(*(*int8)(at(r[in.src] + in.imm))))
		case opLdxSH:
			r[in.dst] = uint64(int64(*(*int16)(at(r[in.src] + in.imm))))
		case opLdxSW:
			r[in.dst] = uint64(int64(*(*int32)(at(r[in.src] + in.imm))))
		case opLdxBChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-1 {
				if m.ip = ip; !env.Mem.Check(a, 1, false) {
					return 0, memFault(pcOf(base, ip), a, 1, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(*(*uint8)(at(a)))
		case opLdxHChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-2 {
				if m.ip = ip; !env.Mem.Check(a, 2, false) {
					return 0, memFault(pcOf(base, ip), a, 2, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(*(*uint16)(at(a)))
		case opLdxWChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-4 {
				if m.ip = ip; !env.Mem.Check(a, 4, false) {
					return 0, memFault(pcOf(base, ip), a, 4, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(*(*uint32)(at(a)))
		case opLdxDWChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-8 {
				if m.ip = ip; !env.Mem.Check(a, 8, false) {
					return 0, memFault(pcOf(base, ip), a, 8, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = *(*uint64)(at(a))
		case opLdxSBChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-1 {
				if m.ip = ip; !env.Mem.Check(a, 1, false) {
					return 0, memFault(pcOf(base, ip), a, 1, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(int64(*(*int8)(at(a))))
		case opLdxSHChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-2 {
				if m.ip = ip; !env.Mem.Check(a, 2, false) {
					return 0, memFault(pcOf(base, ip), a, 2, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(int64(*(*int16)(at(a))))
		case opLdxSWChk:
			a := r[in.src] + in.imm
			if a-m.lo > m.span-4 {
				if m.ip = ip; !env.Mem.Check(a, 4, false) {
					return 0, memFault(pcOf(base, ip), a, 4, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(int64(*(*int32)(at(a))))

		// Stores of an immediate.
		case opStB:
			*(*uint8)(at(r[in.dst] + uint64(int64(in.off)))) = uint8(in.imm)
		case opStH:
			*(*uint16)(at(r[in.dst] + uint64(int64(in.off)))) = uint16(in.imm)
		case opStW:
			*(*uint32)(at(r[in.dst] + uint64(int64(in.off)))) = uint32(in.imm)
		case opStDW:
			*(*uint64)(at(r[in.dst] + uint64(int64(in.off)))) = in.imm
		case opStBChk:
			a := r[in.dst] + uint64(int64(in.off))
			if a-m.lo > m.span-1 {
				if m.ip = ip; !env.Mem.Check(a, 1, true) {
					return 0, memFault(pcOf(base, ip), a, 1, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint8)(at(a)) = uint8(in.imm)
		case opStHChk:
			a := r[in.dst] + uint64(int64(in.off))
			if a-m.lo > m.span-2 {
				if m.ip = ip; !env.Mem.Check(a, 2, true) {
					return 0, memFault(pcOf(base, ip), a, 2, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint16)(at(a)) = uint16(in.imm)
		case opStWChk:
			a := r[in.dst] + uint64(int64(in.off))
			if a-m.lo > m.span-4 {
				if m.ip = ip; !env.Mem.Check(a, 4, true) {
					return 0, memFault(pcOf(base, ip), a, 4, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint32)(at(a)) = uint32(in.imm)
		case opStDWChk:
			a := r[in.dst] + uint64(int64(in.off))
			if a-m.lo > m.span-8 {
				if m.ip = ip; !env.Mem.Check(a, 8, true) {
					return 0, memFault(pcOf(base, ip), a, 8, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint64)(at(a)) = in.imm

		// Stores of a register.
		case opStxB:
			*(*uint8)(at(r[in.dst] + in.imm)) = uint8(r[in.src])
		case opStxH:
			*(*uint16)(at(r[in.dst] + in.imm)) = uint16(r[in.src])
		case opStxW:
			*(*uint32)(at(r[in.dst] + in.imm)) = uint32(r[in.src])
		case opStxDW:
			*(*uint64)(at(r[in.dst] + in.imm)) = r[in.src]
		case opStxBChk:
			a := r[in.dst] + in.imm
			if a-m.lo > m.span-1 {
				if m.ip = ip; !env.Mem.Check(a, 1, true) {
					return 0, memFault(pcOf(base, ip), a, 1, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint8)(at(a)) = uint8(r[in.src])
		case opStxHChk:
			a := r[in.dst] + in.imm
			if a-m.lo > m.span-2 {
				if m.ip = ip; !env.Mem.Check(a, 2, true) {
					return 0, memFault(pcOf(base, ip), a, 2, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint16)(at(a)) = uint16(r[in.src])
		case opStxWChk:
			a := r[in.dst] + in.imm
			if a-m.lo > m.span-4 {
				if m.ip = ip; !env.Mem.Check(a, 4, true) {
					return 0, memFault(pcOf(base, ip), a, 4, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint32)(at(a)) = uint32(r[in.src])
		case opStxDWChk:
			a := r[in.dst] + in.imm
			if a-m.lo > m.span-8 {
				if m.ip = ip; !env.Mem.Check(a, 8, true) {
					return 0, memFault(pcOf(base, ip), a, 8, true, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			*(*uint64)(at(a)) = r[in.src]

		// The rest.
		case opLdDW:
			r[in.dst] = in.imm
			ip = unsafe.Add(ip, insnSize)
		case opLdMap:
			if in.imm >= uint64(len(env.Maps)) {
				return 0, fault(pcOf(base, ip), "map %d is not in the run's environment", in.imm)
			}
			r[in.dst] = env.Maps[in.imm]
			ip = unsafe.Add(ip, insnSize)
		case opLdMapValue:
			if in.imm >= uint64(len(env.MapValues)) || env.MapValues[in.imm] == 0 {
				return 0, fault(pcOf(base, ip), "map %d has no direct value access in the run's environment", in.imm)
			}
			r[in.dst] = env.MapValues[in.imm] + uint64(uint32(in.off))
			ip = unsafe.Add(ip, insnSize)
		case opAtomic:
			if m.ip = ip; m.atomic(in, env, pcOf(base, ip)) != nil {
				return 0, m.err
			}
			ip = m.ip
		case opLdPacket:
			m.ip = ip
			ok, err := m.ldPacket(in, env, pcOf(base, ip))
			if err != nil {
				return 0, err
			}
			if !ok {
				return 0, nil // an out-of-bounds packet load ends the program with 0
			}
			ip = m.ip
		// Fused instructions (fuse.go).
		case opMovAdd64Imm:
			r[in.dst] = r[in.src] + in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovSub64Imm:
			r[in.dst] = r[in.src] - in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovAnd64Imm:
			r[in.dst] = r[in.src] & in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovOr64Imm:
			r[in.dst] = r[in.src] | in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovXor64Imm:
			r[in.dst] = r[in.src] ^ in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovLsh64Imm:
			r[in.dst] = r[in.src] << in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovRsh64Imm:
			r[in.dst] = r[in.src] >> in.imm
			ip = unsafe.Add(ip, insnSize)
		case opMovArsh64Imm:
			r[in.dst] = uint64(int64(r[in.src]) >> in.imm)
			ip = unsafe.Add(ip, insnSize)
		case opMovAdd64Reg:
			r[in.dst] = r[in.src] + r[in.aux]
			ip = unsafe.Add(ip, insnSize)
		case opMovSub64Reg:
			r[in.dst] = r[in.src] - r[in.aux]
			ip = unsafe.Add(ip, insnSize)
		case opMovAnd64Reg:
			r[in.dst] = r[in.src] & r[in.aux]
			ip = unsafe.Add(ip, insnSize)
		case opMovOr64Reg:
			r[in.dst] = r[in.src] | r[in.aux]
			ip = unsafe.Add(ip, insnSize)
		case opMovXor64Reg:
			r[in.dst] = r[in.src] ^ r[in.aux]
			ip = unsafe.Add(ip, insnSize)
		case opMovAdd32Imm:
			r[in.dst] = uint64(uint32(r[in.src]) + uint32(in.imm))
			ip = unsafe.Add(ip, insnSize)
		case opMovAnd32Imm:
			r[in.dst] = uint64(uint32(r[in.src]) & uint32(in.imm))
			ip = unsafe.Add(ip, insnSize)
		case opMovOr32Imm:
			r[in.dst] = uint64(uint32(r[in.src]) | uint32(in.imm))
			ip = unsafe.Add(ip, insnSize)
		case opMovXor32Imm:
			r[in.dst] = uint64(uint32(r[in.src]) ^ uint32(in.imm))
			ip = unsafe.Add(ip, insnSize)
		case opMovLsh32Imm:
			r[in.dst] = uint64(uint32(r[in.src]) << in.imm)
			ip = unsafe.Add(ip, insnSize)
		case opMovRsh32Imm:
			r[in.dst] = uint64(uint32(r[in.src]) >> in.imm)
			ip = unsafe.Add(ip, insnSize)
		case opLdxBIdx:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			r[in.dst] = uint64(*(*uint8)(at(a)))
		case opLdxHIdx:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			r[in.dst] = uint64(*(*uint16)(at(a)))
		case opLdxWIdx:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			r[in.dst] = uint64(*(*uint32)(at(a)))
		case opLdxDWIdx:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			r[in.dst] = *(*uint64)(at(a))
		case opLdxBIdxChk:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			if a-m.lo > m.span-1 {
				if m.ip = ip; !env.Mem.Check(a, 1, false) {
					return 0, memFault(pcOf(base, ip), a, 1, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(*(*uint8)(at(a)))
		case opLdxHIdxChk:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			if a-m.lo > m.span-2 {
				if m.ip = ip; !env.Mem.Check(a, 2, false) {
					return 0, memFault(pcOf(base, ip), a, 2, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(*(*uint16)(at(a)))
		case opLdxWIdxChk:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			if a-m.lo > m.span-4 {
				if m.ip = ip; !env.Mem.Check(a, 4, false) {
					return 0, memFault(pcOf(base, ip), a, 4, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = uint64(*(*uint32)(at(a)))
		case opLdxDWIdxChk:
			a := r[in.src] + r[in.aux] + in.imm
			ip = unsafe.Add(ip, uintptr(in.off)*insnSize)
			if a-m.lo > m.span-8 {
				if m.ip = ip; !env.Mem.Check(a, 8, false) {
					return 0, memFault(pcOf(base, ip), a, 8, false, env)
				}
				ip = m.ip
				in = (*insn)(unsafe.Add(ip, -int(insnSize)))
			}
			r[in.dst] = *(*uint64)(at(a))
		case opFellOff:
			return 0, fault(pcOf(base, ip), "execution ran past the last instruction")
		default:
			return 0, invalidFault(c, pcOf(base, ip))
		}
		continue

	taken:
		// A taken jump: backward ones are charged to the budget, the length of the loop.
		t := unsafe.Add(base, uintptr(in.off)*insnSize)
		if uintptr(t) < uintptr(ip) {
			if m.budget -= int64((uintptr(ip) - uintptr(t)) / insnSize); m.budget < 0 {
				return 0, fault(pcOf(base, ip), "instruction budget of %d exhausted", env.Budget)
			}
		}
		ip = t
	}
}

// pcOf returns the index of the instruction that ip follows: the one being executed.
func pcOf(base, ip unsafe.Pointer) int {
	return int((uintptr(ip)-uintptr(base))/insnSize) - 1
}
