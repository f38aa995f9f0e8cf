package jit

import "encoding/binary"

// This file is a small x86-64 encoder: just the instruction forms the compiler emits. Every
// form is checked against golang.org/x/arch/x86/x86asm by x86_test.go.

// reg is an x86-64 general-purpose register, numbered as in the ModRM encoding.
type reg uint8

const (
	rax reg = iota
	rcx
	rdx
	rbx
	rsp
	rbp
	rsi
	rdi
	r8
	r9
	r10
	r11
	r12
	r13
	r14
	r15
)

// noReg marks an absent index register in a memory operand, or an absent register in a REX
// prefix (bit 3 clear: it sets no REX bit).
const noReg reg = 0x10

// mem is a memory operand [base + index*scale + disp].
type mem struct {
	base  reg
	index reg // noReg when absent
	scale uint8
	disp  int32
}

// at returns the operand [base + disp].
func at(base reg, disp int32) mem { return mem{base: base, index: noReg, scale: 1, disp: disp} }

// cond is an x86 condition code (the low nibble of Jcc / SETcc).
type cond uint8

const (
	condO  cond = 0x0
	condB  cond = 0x2 // below (unsigned <)
	condAE cond = 0x3 // above or equal (unsigned >=)
	condE  cond = 0x4
	condNE cond = 0x5
	condBE cond = 0x6 // below or equal (unsigned <=)
	condA  cond = 0x7 // above (unsigned >)
	condS  cond = 0x8
	condL  cond = 0xc // less (signed <)
	condGE cond = 0xd
	condLE cond = 0xe
	condG  cond = 0xf
)

// ALU operations of the 0x01-style opcodes and of the 0x81/0x83 group (the /digit).
const (
	aluAdd = 0
	aluOr  = 1
	aluAnd = 4
	aluSub = 5
	aluXor = 6
	aluCmp = 7
)

// Shift operations of the 0xC1/0xD3 group (the /digit).
const (
	shRol = 0
	shShl = 4
	shShr = 5
	shSar = 7
)

// asm accumulates machine code: the code is buf[:n]. The length is kept apart from the
// buffer so that emitting a byte stores no pointer (no write barrier).
type asm struct {
	buf []byte
	n   int
}

// opcode is a one-byte opcode, or a two-byte one 0F xx written 0x0fxx.
type opcode uint16

func (a *asm) pos() int { return a.n }

// code returns the code emitted.
func (a *asm) code() []byte { return a.buf[:a.n] }

// reserve makes room for k more bytes.
func (a *asm) reserve(k int) {
	if len(a.buf)-a.n < k {
		b := make([]byte, 2*len(a.buf)+k)
		copy(b, a.buf[:a.n])
		a.buf = b
	}
}

// put appends the low n (at most 8) bytes of v, little-endian: one store.
func (a *asm) put(v uint64, n int) {
	if len(a.buf)-a.n < 8 {
		a.reserve(8)
	}
	binary.LittleEndian.PutUint64(a.buf[a.n:], v)
	a.n += n
}

func (a *asm) byte1(b byte) { a.put(uint64(b), 1) }
func (a *asm) bytes(b ...byte) {
	a.reserve(len(b))
	a.n += copy(a.buf[a.n:], b)
}
func (a *asm) imm8(v int8)    { a.put(uint64(uint8(v)), 1) }
func (a *asm) imm16(v uint16) { a.put(uint64(v), 2) }
func (a *asm) imm32(v int32)  { a.put(uint64(uint32(v)), 4) }
func (a *asm) imm64(v uint64) { a.put(v, 8) }
func fitsInt8(v int64) bool   { return v >= -128 && v <= 127 }
func fitsInt32(v int64) bool  { return v >= -1<<31 && v <= 1<<31-1 }
func putInt32(b []byte, v int32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// rexByte returns the REX prefix for a 64-bit operand (w) and the extended registers in the
// reg, index and base fields, and whether it is needed (force: a byte access to sil/dil/...).
func rexByte(w bool, r, x, b reg, force bool) (byte, bool) {
	p := byte(0x40) | byte(r>>3&1)<<2 | byte(x>>3&1)<<1 | byte(b>>3&1)
	if w {
		p |= 8
	}
	return p, p != 0x40 || force
}

// rex emits a REX prefix when one is needed: for a 64-bit operand (w), for an extended
// register in the reg, index or base field, or when force is set (byte access to sil/dil/...).
func (a *asm) rex(w bool, r, x, b reg, force bool) {
	if p, ok := rexByte(w, r, x, b, force); ok {
		a.byte1(p)
	}
}

// prefix returns the REX prefix (when needed) and the opcode as bytes, and their number.
func prefix(w bool, r, x, b reg, force bool, op opcode) (uint64, int) {
	v := uint64(r>>3&1)<<2 | uint64(x>>3&1)<<1 | uint64(b>>3&1)
	if w {
		v |= 8
	}
	n := 0
	if v != 0 || force {
		v |= 0x40
		n = 1
	}
	ob, on := uint64(op), 1
	if op > 0xff {
		ob, on = 0x0f|uint64(op&0xff)<<8, 2
	}
	return v | ob<<(8*n), n + on
}

// byteForce reports whether a byte access to r needs a REX prefix to mean the low byte of the
// register rather than ah/ch/dh/bh.
func byteForce(r reg) bool { return r >= rsp && r <= rdi }

// modrmReg emits the ModRM byte of a register-direct operand.
func (a *asm) modrmReg(r, rm reg) { a.byte1(0xc0 | byte(r&7)<<3 | byte(rm&7)) }

// modrmMemBytes returns the ModRM byte, SIB and displacement of a memory operand, and their
// number (at most 6).
func modrmMemBytes(r reg, m mem) (uint64, int) {
	var mod byte
	switch {
	case m.disp == 0 && m.base&7 != rbp:
		mod = 0x00
	case fitsInt8(int64(m.disp)):
		mod = 0x40
	default:
		mod = 0x80
	}
	var v uint64
	n := 1
	if m.index == noReg && m.base&7 != rsp {
		v = uint64(mod | byte(r&7)<<3 | byte(m.base&7))
	} else {
		idx := byte(4) // no index
		if m.index != noReg {
			idx = byte(m.index & 7)
		}
		var ss byte
		switch m.scale {
		case 2:
			ss = 1
		case 4:
			ss = 2
		case 8:
			ss = 3
		}
		v = uint64(mod|byte(r&7)<<3|4) | uint64(ss<<6|idx<<3|byte(m.base&7))<<8
		n = 2
	}
	switch mod {
	case 0x40:
		return v | uint64(uint8(m.disp))<<(8*n), n + 1
	case 0x80:
		return v | uint64(uint32(m.disp))<<(8*n), n + 4
	}
	return v, n
}

// modrmMem emits the ModRM byte (and SIB and displacement) of a memory operand.
func (a *asm) modrmMem(r reg, m mem) {
	v, n := modrmMemBytes(r, m)
	a.put(v, n)
}

// opRR emits a two-register instruction "op rm, r" (or "op r, rm", as the opcode says).
func (a *asm) opRR(w bool, op opcode, r, rm reg) {
	// prefix, inlined by hand: most instructions come here.
	v := uint64(r>>3&1)<<2 | uint64(rm>>3&1)
	if w {
		v |= 8
	}
	n := 0
	if v != 0 {
		v |= 0x40
		n = 1
	}
	ob, on := uint64(op), 1
	if op > 0xff {
		ob, on = 0x0f|uint64(op&0xff)<<8, 2
	}
	v |= ob << (8 * n)
	n += on
	a.put(v|uint64(0xc0|byte(r&7)<<3|byte(rm&7))<<(8*n), n+1)
}

// opRRImm emits opRR followed by an immediate of k (1 or 4) bytes.
func (a *asm) opRRImm(w bool, op opcode, r, rm reg, imm int32, k int) {
	v, n := prefix(w, r, noReg, rm, false, op)
	v |= uint64(0xc0|byte(r&7)<<3|byte(rm&7)) << (8 * n)
	n++
	if k == 1 {
		a.put(v|uint64(uint8(imm))<<(8*n), n+1)
		return
	}
	a.put(v|uint64(uint32(imm))<<(8*n), n+4) // at most 4 + 4 bytes
}

// opRM emits an instruction with a register and a memory operand.
func (a *asm) opRM(w bool, op opcode, r reg, m mem) {
	v, n := prefix(w, r, m.index, m.base, false, op)
	mv, mn := modrmMemBytes(r, m)
	if n+mn <= 8 {
		a.put(v|mv<<(8*n), n+mn)
		return
	}
	a.put(v, n)
	a.put(mv, mn)
}

// aluRR emits "op dst, src" for op in aluAdd..aluCmp.
func (a *asm) aluRR(w bool, op int, dst, src reg) { a.opRR(w, opcode(op<<3|1), src, dst) }

// aluRI emits "op dst, imm" with the immediate sign-extended.
func (a *asm) aluRI(w bool, op int, dst reg, imm int32) {
	if fitsInt8(int64(imm)) {
		a.opRRImm(w, 0x83, reg(op), dst, imm, 1)
		return
	}
	if dst == rax {
		v, n := prefix(w, noReg, noReg, noReg, false, opcode(op<<3|5))
		a.put(v|uint64(uint32(imm))<<(8*n), n+4)
		return
	}
	a.opRRImm(w, 0x81, reg(op), dst, imm, 4)
}

// aluRM emits "op r, [m]" (r = r op mem).
func (a *asm) aluRM(w bool, op int, r reg, m mem) { a.opRM(w, opcode(op<<3|3), r, m) }

// aluMI emits "op [m], imm" for a 64- or 32-bit memory operand.
func (a *asm) aluMI(w bool, op int, m mem, imm int32) {
	if fitsInt8(int64(imm)) {
		a.opRM(w, 0x83, reg(op), m)
		a.imm8(int8(imm))
		return
	}
	a.opRM(w, 0x81, reg(op), m)
	a.imm32(imm)
}

// lockAluMR emits "lock op [m], r".
func (a *asm) lockAluMR(w bool, op int, m mem, r reg) {
	a.byte1(0xf0)
	a.opRM(w, opcode(op<<3|1), r, m)
}

// movRR emits "mov dst, src".
func (a *asm) movRR(w bool, dst, src reg) { a.opRR(w, 0x89, src, dst) }

// movRI emits the shortest "mov dst, imm" that gives dst the 64-bit value v (or, when !w, the
// 32-bit value zero-extended).
func (a *asm) movRI(w bool, dst reg, v int64) {
	if !w {
		v = int64(uint32(v))
	}
	switch {
	case v == 0:
		a.aluRR(false, aluXor, dst, dst)
	case v > 0 && v <= 1<<32-1:
		p, n := prefix(false, noReg, noReg, dst, false, opcode(0xb8+dst&7))
		a.put(p|uint64(v)<<(8*n), n+4)
	case fitsInt32(v):
		a.opRRImm(true, 0xc7, 0, dst, int32(v), 4)
	default:
		p, n := prefix(true, noReg, noReg, dst, false, opcode(0xb8+dst&7))
		a.put(p, n)
		a.put(uint64(v), 8)
	}
}

// load emits a zero-extending load of size bytes (1, 2, 4, 8) from m into dst.
func (a *asm) load(size int, dst reg, m mem) {
	switch size {
	case 1:
		a.opRM(false, 0x0fb6, dst, m)
	case 2:
		a.opRM(false, 0x0fb7, dst, m)
	case 4:
		a.opRM(false, 0x8b, dst, m)
	default:
		a.opRM(true, 0x8b, dst, m)
	}
}

// loadSX emits a sign-extending load of size bytes (1, 2, 4) from m into the 64-bit dst.
func (a *asm) loadSX(size int, dst reg, m mem) {
	switch size {
	case 1:
		a.opRM(true, 0x0fbe, dst, m)
	case 2:
		a.opRM(true, 0x0fbf, dst, m)
	case 4:
		a.opRM(true, 0x63, dst, m)
	default:
		a.opRM(true, 0x8b, dst, m)
	}
}

// store emits a store of the low size bytes of src to m.
func (a *asm) store(size int, m mem, src reg) {
	switch size {
	case 1:
		a.rex(false, src, m.index, m.base, byteForce(src))
		a.byte1(0x88)
		a.modrmMem(src, m)
	case 2:
		a.byte1(0x66)
		a.opRM(false, 0x89, src, m)
	case 4:
		a.opRM(false, 0x89, src, m)
	default:
		a.opRM(true, 0x89, src, m)
	}
}

// storeImm emits a store of imm (sign-extended to 8 bytes for size 8) to m.
func (a *asm) storeImm(size int, m mem, imm int32) {
	switch size {
	case 1:
		a.opRM(false, 0xc6, 0, m)
		a.imm8(int8(imm))
	case 2:
		a.byte1(0x66)
		a.opRM(false, 0xc7, 0, m)
		a.imm16(uint16(imm))
	case 4:
		a.opRM(false, 0xc7, 0, m)
		a.imm32(imm)
	default:
		a.opRM(true, 0xc7, 0, m)
		a.imm32(imm)
	}
}

// lea emits "lea dst, [m]".
func (a *asm) lea(dst reg, m mem) { a.opRM(true, 0x8d, dst, m) }

// movzxRR emits a zero extension of the low size (1 or 2) bytes of src into dst.
func (a *asm) movzxRR(size int, dst, src reg) {
	if size == 1 {
		a.rex(false, dst, noReg, src, byteForce(src))
		a.bytes(0x0f, 0xb6)
	} else {
		a.rex(false, dst, noReg, src, false)
		a.bytes(0x0f, 0xb7)
	}
	a.modrmReg(dst, src)
}

// movsxRR emits a sign extension of the low size (1, 2, 4) bytes of src into dst (64-bit when
// w, else 32-bit, whose upper half the processor clears).
func (a *asm) movsxRR(w bool, size int, dst, src reg) {
	switch size {
	case 1:
		a.rex(w, dst, noReg, src, byteForce(src))
		a.bytes(0x0f, 0xbe)
	case 2:
		a.rex(w, dst, noReg, src, false)
		a.bytes(0x0f, 0xbf)
	default:
		a.rex(true, dst, noReg, src, false)
		a.byte1(0x63)
	}
	a.modrmReg(dst, src)
}

// shiftRI emits "op dst, imm" for a shift or rotate.
func (a *asm) shiftRI(w bool, op int, dst reg, n uint8) {
	if n == 1 {
		a.opRR(w, 0xd1, reg(op), dst)
		return
	}
	a.opRRImm(w, 0xc1, reg(op), dst, int32(n), 1)
}

// shiftRCL emits "op dst, cl".
func (a *asm) shiftRCL(w bool, op int, dst reg) { a.opRR(w, 0xd3, reg(op), dst) }

// shiftX emits the BMI2 "shlx/shrx/sarx dst, src, count" (op shShl, shShr or shSar).
func (a *asm) shiftX(w bool, op int, dst, src, count reg) {
	var pp byte
	switch op {
	case shShl:
		pp = 1 // 66
	case shShr:
		pp = 3 // F2
	default:
		pp = 2 // F3
	}
	// Three-byte VEX: C4, RXB.mmmmm (0F38 = 2), W.vvvv.L.pp.
	b1 := byte(0x02)
	if dst&8 == 0 {
		b1 |= 0x80
	}
	b1 |= 0x40 // no index
	if src&8 == 0 {
		b1 |= 0x20
	}
	b2 := byte(^count&15)<<3 | pp
	if w {
		b2 |= 0x80
	}
	a.bytes(0xc4, b1, b2, 0xf7)
	a.modrmReg(dst, src)
}

// rol16 emits "rol dst16, 8", the byte swap of a 16-bit value.
func (a *asm) rol16(dst reg) {
	a.byte1(0x66)
	a.opRR(false, 0xc1, shRol, dst)
	a.byte1(8)
}

// bswap emits "bswap dst".
func (a *asm) bswap(w bool, dst reg) {
	a.rex(w, noReg, noReg, dst, false)
	a.bytes(0x0f, 0xc8+byte(dst&7))
}

// imulRR emits "imul dst, src".
func (a *asm) imulRR(w bool, dst, src reg) { a.opRR(w, 0x0faf, dst, src) }

// imulRI emits "imul dst, src, imm".
func (a *asm) imulRI(w bool, dst, src reg, imm int32) {
	if fitsInt8(int64(imm)) {
		a.opRRImm(w, 0x6b, dst, src, imm, 1)
		return
	}
	a.opRRImm(w, 0x69, dst, src, imm, 4)
}

// unary emits a group-3 instruction (F7 /n): 2 not, 3 neg, 6 div, 7 idiv.
func (a *asm) unary(w bool, n int, r reg) { a.opRR(w, 0xf7, reg(n), r) }

const (
	unNeg  = 3
	unDiv  = 6
	unIdiv = 7
)

// signExtendAX emits cdq (32-bit) or cqo (64-bit).
func (a *asm) signExtendAX(w bool) {
	if w {
		a.byte1(0x48)
	}
	a.byte1(0x99)
}

// testRR emits "test a, b".
func (a *asm) testRR(w bool, x, y reg) { a.opRR(w, 0x85, y, x) }

// testRI emits "test r, imm" (the immediate sign-extended for 64-bit).
func (a *asm) testRI(w bool, r reg, imm int32) {
	if r == rax {
		a.rex(w, noReg, noReg, noReg, false)
		a.byte1(0xa9)
		a.imm32(imm)
		return
	}
	a.opRRImm(w, 0xf7, 0, r, imm, 4)
}

// xadd emits "lock xadd [m], r".
func (a *asm) xadd(w bool, m mem, r reg) {
	a.byte1(0xf0)
	a.opRM(w, 0x0fc1, r, m)
}

// xchg emits "xchg [m], r" (locked by the processor).
func (a *asm) xchg(w bool, m mem, r reg) { a.opRM(w, 0x87, r, m) }

// cmpxchg emits "lock cmpxchg [m], r".
func (a *asm) cmpxchg(w bool, m mem, r reg) {
	a.byte1(0xf0)
	a.opRM(w, 0x0fb1, r, m)
}

// cmovRR emits "cmovcc dst, src".
func (a *asm) cmovRR(w bool, c cond, dst, src reg) { a.opRR(w, 0x0f40|opcode(c), dst, src) }

// push emits "push r".
func (a *asm) push(r reg) {
	a.rex(false, noReg, noReg, r, false)
	a.byte1(0x50 + byte(r&7))
}

// pop emits "pop r".
func (a *asm) pop(r reg) {
	a.rex(false, noReg, noReg, r, false)
	a.byte1(0x58 + byte(r&7))
}

// ret emits "ret".
func (a *asm) ret() { a.byte1(0xc3) }

// callR emits "call r".
func (a *asm) callR(r reg) {
	a.rex(false, noReg, noReg, r, false)
	a.bytes(0xff, 0xd0+byte(r&7))
}

// callM emits "call [m]".
func (a *asm) callM(m mem) { a.opRM(false, 0xff, 2, m) }

// jmpR emits "jmp r".
func (a *asm) jmpR(r reg) {
	a.rex(false, noReg, noReg, r, false)
	a.bytes(0xff, 0xe0+byte(r&7))
}

// Relative branches are laid out after the code is emitted (compile.go): these functions write
// one at the start of b with a zero displacement, which the caller patches, and return its
// length.

// putJmp writes "jmp rel8" or "jmp rel32".
func putJmp(b []byte, long bool) int {
	if long {
		b[0], b[1], b[2], b[3], b[4] = 0xe9, 0, 0, 0, 0
		return 5
	}
	b[0], b[1] = 0xeb, 0
	return 2
}

// putJcc writes "jcc rel8" or "jcc rel32".
func putJcc(b []byte, c cond, long bool) int {
	if long {
		b[0], b[1], b[2], b[3], b[4], b[5] = 0x0f, 0x80|byte(c), 0, 0, 0, 0
		return 6
	}
	b[0], b[1] = 0x70|byte(c), 0
	return 2
}

// putCall writes "call rel32".
func putCall(b []byte) int {
	b[0], b[1], b[2], b[3], b[4] = 0xe8, 0, 0, 0, 0
	return 5
}

// nops are the recommended multi-byte no-operation instructions, by length.
var nops = [...][]byte{
	1: {0x90},
	2: {0x66, 0x90},
	3: {0x0f, 0x1f, 0x00},
	4: {0x0f, 0x1f, 0x40, 0x00},
	5: {0x0f, 0x1f, 0x44, 0x00, 0x00},
	6: {0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},
	7: {0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
	8: {0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
	9: {0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
}

// putNops writes n bytes (less than 16) of no-operations at the start of b and returns n.
func putNops(b []byte, n int) int {
	for off := 0; off < n; {
		k := min(n-off, len(nops)-1)
		off += copy(b[off:], nops[k])
	}
	return n
}

// ud2 emits the undefined instruction, for code that must never run.
func (a *asm) ud2() { a.bytes(0x0f, 0x0b) }
