package interp

// Superinstructions. clang's output is full of short sequences that compute into one register:
// a register copy then an operation on the copy (`r5 = r1; r5 += r3`, `w4 = w0; w4 &= 1`), and
// an address computation then a load through it (`r6 = r1; r6 += r5; r6 = *(u8 *)(r6 + 0)`).
// fuse replaces the first instruction of each with one that does the whole sequence and skips
// the rest, saving dispatches. A sequence is fused only when no jump, call or return lands
// inside it, so it is always entered at its start; the skipped slots keep their own decoding.
// The registers and memory a fused instruction leaves are those the sequence leaves, and a load
// that faults reports its own index (ip is past the sequence when it runs).

// movALU maps the decoded operation that follows a register copy to the fused operation.
var movALU = map[uint8]uint8{
	opAdd64Imm: opMovAdd64Imm, opSub64Imm: opMovSub64Imm, opAnd64Imm: opMovAnd64Imm,
	opOr64Imm: opMovOr64Imm, opXor64Imm: opMovXor64Imm, opLsh64Imm: opMovLsh64Imm,
	opRsh64Imm: opMovRsh64Imm, opArsh64Imm: opMovArsh64Imm,
	opAdd64Reg: opMovAdd64Reg, opSub64Reg: opMovSub64Reg, opAnd64Reg: opMovAnd64Reg,
	opOr64Reg: opMovOr64Reg, opXor64Reg: opMovXor64Reg,
}

// movALU32 is movALU for 32-bit copies and operations.
var movALU32 = map[uint8]uint8{
	opAdd32Imm: opMovAdd32Imm, opAnd32Imm: opMovAnd32Imm, opOr32Imm: opMovOr32Imm,
	opXor32Imm: opMovXor32Imm, opLsh32Imm: opMovLsh32Imm, opRsh32Imm: opMovRsh32Imm,
}

// idxLoad maps a load to its indexed form.
var idxLoad = map[uint8]uint8{
	opLdxB: opLdxBIdx, opLdxH: opLdxHIdx, opLdxW: opLdxWIdx, opLdxDW: opLdxDWIdx,
	opLdxBChk: opLdxBIdxChk, opLdxHChk: opLdxHIdxChk, opLdxWChk: opLdxWIdxChk, opLdxDWChk: opLdxDWIdxChk,
}

// fuse rewrites the decoded program in place.
func (c *Code) fuse() {
	n := len(c.insns) - 1 // without the sentinel
	target := make([]bool, n+1)
	for pc := 0; pc < n; pc++ {
		in := c.insns[pc]
		if isJump(in.op) {
			target[in.off] = true
		}
		if in.op == opCallLocal {
			target[pc+1] = true // where the callee returns
		}
	}
	// inside reports whether slot pc may be skipped: it exists and nothing jumps to it.
	inside := func(pc int) bool { return pc < n && !target[pc] }
	for pc := 0; pc < n; pc++ {
		a := c.insns[pc]
		switch {
		// r[d] = r[s]; r[d] += r[x]; r[d] = *(r[d] + off)  ->  r[d] = *(r[s] + r[x] + off)
		case a.op == opMov64Reg && inside(pc+1) && inside(pc+2) &&
			c.insns[pc+1].op == opAdd64Reg && c.insns[pc+1].dst == a.dst &&
			idxLoad[c.insns[pc+2].op] != 0 && c.insns[pc+2].dst == a.dst && c.insns[pc+2].src == a.dst:
			x := c.insns[pc+1].src
			if x == a.dst {
				x = a.src // r[d] += r[d] adds the copy
			}
			ld := c.insns[pc+2]
			c.insns[pc] = insn{op: idxLoad[ld.op], dst: a.dst, src: a.src, aux: x, off: 2, imm: ld.imm}
			pc += 2
		// r[d] += r[x]; r[d] = *(r[d] + off)  ->  r[d] = *(r[d] + r[x] + off)
		case a.op == opAdd64Reg && inside(pc+1) &&
			idxLoad[c.insns[pc+1].op] != 0 && c.insns[pc+1].dst == a.dst && c.insns[pc+1].src == a.dst:
			ld := c.insns[pc+1]
			c.insns[pc] = insn{op: idxLoad[ld.op], dst: a.dst, src: a.dst, aux: a.src, off: 1, imm: ld.imm}
			pc++
		// r[d] = r[s]; r[d] OP= operand  ->  r[d] = r[s] OP operand
		case a.op == opMov64Reg && inside(pc+1) && movALU[c.insns[pc+1].op] != 0 && c.insns[pc+1].dst == a.dst:
			b := c.insns[pc+1]
			x := b.src
			if x == a.dst {
				x = a.src
			}
			c.insns[pc] = insn{op: movALU[b.op], dst: a.dst, src: a.src, aux: x, imm: b.imm}
			pc++
		case a.op == opMov32Reg && inside(pc+1) && movALU32[c.insns[pc+1].op] != 0 && c.insns[pc+1].dst == a.dst:
			b := c.insns[pc+1]
			c.insns[pc] = insn{op: movALU32[b.op], dst: a.dst, src: a.src, imm: b.imm}
			pc++
		}
	}
}
