package jit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

var (
	names64 = []string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}
	names32 = []string{"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d"}
	names16 = []string{"ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w"}
	names8  = []string{"al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b"}
)

func rn(w bool, r reg) string {
	if w {
		return names64[r]
	}
	return names32[r]
}

func rnSize(size int, r reg) string {
	switch size {
	case 1:
		return names8[r]
	case 2:
		return names16[r]
	case 4:
		return names32[r]
	}
	return names64[r]
}

func ptr(size int) string {
	return map[int]string{1: "byte", 2: "word", 4: "dword", 8: "qword"}[size] + " ptr "
}

func memText(m mem) string {
	s := "[" + names64[m.base]
	if m.index != noReg {
		if m.scale == 1 {
			s += "+" + names64[m.index]
		} else {
			s += fmt.Sprintf("+%d*%s", m.scale, names64[m.index])
		}
	}
	switch {
	case m.disp > 0:
		s += fmt.Sprintf("+%#x", m.disp)
	case m.disp < 0:
		s += fmt.Sprintf("-%#x", -int64(m.disp))
	}
	return s + "]"
}

func hexImm(v int64) string {
	if v < 0 {
		return fmt.Sprintf("-%#x", -v)
	}
	return fmt.Sprintf("%#x", v)
}

// encodingCase is one emitted instruction and its expected Intel-syntax text.
type encodingCase struct {
	emit func(a *asm)
	want string
}

// checkEncodings emits each case alone, decodes it and compares.
func checkEncodings(t *testing.T, cases []encodingCase) {
	t.Helper()
	for _, c := range cases {
		var a asm
		c.emit(&a)
		b := a.code()
		in, err := x86asm.Decode(b, 64)
		if err != nil {
			t.Errorf("% x (want %q): %v", b, c.want, err)
			continue
		}
		if in.Len != len(b) {
			t.Errorf("% x (want %q): decoded %d of %d bytes", b, c.want, in.Len, len(b))
			continue
		}
		got := x86asm.IntelSyntax(in, 0, nil)
		if normalize(got) != normalize(c.want) {
			t.Errorf("% x: got %q, want %q", b, got, c.want)
		}
	}
}

var hexNumber = regexp.MustCompile(`[+-]?0x[0-9a-f]+`)

// normalize hides the spellings of numbers x86asm varies on: a number that fits 32 bits (as a
// signed or unsigned value) is written as its unsigned 32-bit value, others as unsigned 64-bit,
// each with a leading "+", so "[rax-0x81]" and "[rax+0xffffff7f]" compare equal.
func normalize(s string) string {
	s = strings.ReplaceAll(s, "+0x0]", "]")
	return hexNumber.ReplaceAllStringFunc(s, func(tok string) string {
		neg := strings.HasPrefix(tok, "-")
		digits := strings.TrimSpace(strings.TrimLeft(tok, "+-"))
		u, err := strconv.ParseUint(digits[2:], 16, 64)
		if err != nil {
			return tok
		}
		v := int64(u)
		if neg {
			v = -v
		}
		if v == int64(int32(v)) || v >= 0 && v <= 0xffffffff {
			return fmt.Sprintf("+%#x", uint32(v))
		}
		return fmt.Sprintf("+%#x", uint64(v))
	})
}

var allRegs = []reg{rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15}

// memOperands are the addressing forms the compiler uses, with every base register.
func memOperands() []mem {
	var ms []mem
	for _, b := range allRegs {
		for _, d := range []int32{0, 8, -8, 127, -128, 128, -129, 0x7ffffff0, -0x80000000} {
			ms = append(ms, at(b, d))
		}
	}
	ms = append(ms, mem{base: rax, index: r11, scale: 8}, mem{base: r13, index: rcx, scale: 8, disp: 16})
	for _, b := range allRegs {
		for _, x := range allRegs {
			if x != rsp {
				ms = append(ms, mem{base: b, index: x, scale: 1})
			}
		}
	}
	return ms
}

func TestEncodeRegReg(t *testing.T) {
	var cases []encodingCase
	aluNames := map[int]string{aluAdd: "add", aluOr: "or", aluAnd: "and", aluSub: "sub", aluXor: "xor", aluCmp: "cmp"}
	for _, w := range []bool{true, false} {
		for _, d := range allRegs {
			for _, s := range allRegs {
				for op, name := range aluNames {
					cases = append(cases, encodingCase{func(a *asm) { a.aluRR(w, op, d, s) }, name + " " + rn(w, d) + ", " + rn(w, s)})
				}
				cases = append(cases,
					encodingCase{func(a *asm) { a.movRR(w, d, s) }, "mov " + rn(w, d) + ", " + rn(w, s)},
					encodingCase{func(a *asm) { a.imulRR(w, d, s) }, "imul " + rn(w, d) + ", " + rn(w, s)},
					encodingCase{func(a *asm) { a.testRR(w, d, s) }, "test " + rn(w, d) + ", " + rn(w, s)},
					encodingCase{func(a *asm) { a.cmovRR(w, condB, d, s) }, "cmovb " + rn(w, d) + ", " + rn(w, s)},
					encodingCase{func(a *asm) { a.cmovRR(w, condE, d, s) }, "cmovz " + rn(w, d) + ", " + rn(w, s)},
					encodingCase{func(a *asm) { a.movsxRR(w, 1, d, s) }, "movsx " + rn(w, d) + ", " + names8[s]},
					encodingCase{func(a *asm) { a.movsxRR(w, 2, d, s) }, "movsx " + rn(w, d) + ", " + names16[s]},
					encodingCase{func(a *asm) { a.imulRI(w, d, s, 5) }, "imul " + rn(w, d) + ", " + rn(w, s) + ", 0x5"},
					encodingCase{func(a *asm) { a.imulRI(w, d, s, -1000) }, "imul " + rn(w, d) + ", " + rn(w, s) + ", -0x3e8"},
				)
				for op, name := range map[int]string{shShl: "shl", shShr: "shr", shSar: "sar"} {
					for _, cnt := range allRegs {
						cases = append(cases, encodingCase{func(a *asm) { a.shiftX(w, op, d, s, cnt) },
							name + "x " + rn(w, d) + ", " + rn(w, s) + ", " + rn(w, cnt)})
					}
				}
			}
			cases = append(cases,
				encodingCase{func(a *asm) { a.movzxRR(1, d, d) }, "movzx " + names32[d] + ", " + names8[d]},
				encodingCase{func(a *asm) { a.movzxRR(2, d, d) }, "movzx " + names32[d] + ", " + names16[d]},
				encodingCase{func(a *asm) { a.movsxRR(true, 4, d, d) }, "movsxd " + names64[d] + ", " + names32[d]},
				encodingCase{func(a *asm) { a.bswap(w, d) }, "bswap " + rn(w, d)},
				encodingCase{func(a *asm) { a.unary(w, unNeg, d) }, "neg " + rn(w, d)},
				encodingCase{func(a *asm) { a.unary(w, unDiv, d) }, "div " + rn(w, d)},
				encodingCase{func(a *asm) { a.unary(w, unIdiv, d) }, "idiv " + rn(w, d)},
				encodingCase{func(a *asm) { a.shiftRCL(w, shShl, d) }, "shl " + rn(w, d) + ", cl"},
				encodingCase{func(a *asm) { a.shiftRCL(w, shShr, d) }, "shr " + rn(w, d) + ", cl"},
				encodingCase{func(a *asm) { a.shiftRCL(w, shSar, d) }, "sar " + rn(w, d) + ", cl"},
				encodingCase{func(a *asm) { a.shiftRI(w, shShl, d, 1) }, "shl " + rn(w, d) + ", 0x1"},
				encodingCase{func(a *asm) { a.shiftRI(w, shShr, d, 31) }, "shr " + rn(w, d) + ", 0x1f"},
				encodingCase{func(a *asm) { a.shiftRI(w, shSar, d, 7) }, "sar " + rn(w, d) + ", 0x7"},
			)
			for op, name := range aluNames {
				for _, imm := range []int32{0, 1, -1, 127, -128, 128, -129, 0x7fffffff, -0x80000000} {
					cases = append(cases, encodingCase{func(a *asm) { a.aluRI(w, op, d, imm) }, name + " " + rn(w, d) + ", " + hexImm(int64(imm))})
				}
			}
			for _, imm := range []int32{1, -1, 0x7fffffff, -0x80000000} {
				cases = append(cases, encodingCase{func(a *asm) { a.testRI(w, d, imm) }, "test " + rn(w, d) + ", " + hexImm(int64(imm))})
			}
		}
	}
	for _, d := range allRegs {
		cases = append(cases,
			encodingCase{func(a *asm) { a.rol16(d) }, "rol " + names16[d] + ", 0x8"},
			encodingCase{func(a *asm) { a.push(d) }, "push " + names64[d]},
			encodingCase{func(a *asm) { a.pop(d) }, "pop " + names64[d]},
			encodingCase{func(a *asm) { a.callR(d) }, "call " + names64[d]},
			encodingCase{func(a *asm) { a.jmpR(d) }, "jmp " + names64[d]},
		)
	}
	cases = append(cases,
		encodingCase{func(a *asm) { a.signExtendAX(true) }, "cqo"},
		encodingCase{func(a *asm) { a.signExtendAX(false) }, "cdq"},
		encodingCase{func(a *asm) { a.ret() }, "ret"},
		encodingCase{func(a *asm) { a.ud2() }, "ud2"},
		encodingCase{func(a *asm) { a.bytes(nops[1]...) }, "nop"},
	)
	checkEncodings(t, cases)
}

func TestEncodeMovImm(t *testing.T) {
	var cases []encodingCase
	for _, d := range allRegs {
		for _, v := range []int64{1, 0x7fffffff, 0x80000000, 0xffffffff} {
			cases = append(cases, encodingCase{func(a *asm) { a.movRI(true, d, v) }, "mov " + names32[d] + ", " + hexImm(v)})
		}
		cases = append(cases,
			encodingCase{func(a *asm) { a.movRI(true, d, 0) }, "xor " + names32[d] + ", " + names32[d]},
			encodingCase{func(a *asm) { a.movRI(true, d, -1) }, "mov " + names64[d] + ", -0x1"},
			encodingCase{func(a *asm) { a.movRI(true, d, -0x80000000) }, "mov " + names64[d] + ", -0x80000000"},
			encodingCase{func(a *asm) { a.movRI(true, d, 0x123456789) }, "mov " + names64[d] + ", 0x123456789"},
			encodingCase{func(a *asm) { a.movRI(true, d, -0x123456789) }, "mov " + names64[d] + ", -0x123456789"},
			encodingCase{func(a *asm) { a.movRI(false, d, -1) }, "mov " + names32[d] + ", 0xffffffff"},
		)
	}
	checkEncodings(t, cases)
}

func TestEncodeMemory(t *testing.T) {
	var cases []encodingCase
	for _, m := range memOperands() {
		mt := memText(m)
		for _, r := range allRegs {
			for _, size := range []int{1, 2, 4, 8} {
				dst32 := names32[r]
				if size == 8 {
					dst32 = names64[r]
				}
				op := "movzx "
				if size >= 4 {
					op = "mov "
				}
				cases = append(cases,
					encodingCase{func(a *asm) { a.load(size, r, m) }, op + dst32 + ", " + ptr(size) + mt},
					encodingCase{func(a *asm) { a.store(size, m, r) }, "mov " + ptr(size) + mt + ", " + rnSize(size, r)},
				)
				if size < 8 {
					op := "movsx "
					if size == 4 {
						op = "movsxd "
					}
					cases = append(cases, encodingCase{func(a *asm) { a.loadSX(size, r, m) }, op + names64[r] + ", " + ptr(size) + mt})
				}
			}
			for _, w := range []bool{true, false} {
				size := 4
				if w {
					size = 8
				}
				cases = append(cases,
					encodingCase{func(a *asm) { a.aluRM(w, aluSub, r, m) }, "sub " + rn(w, r) + ", " + ptr(size) + mt},
					encodingCase{func(a *asm) { a.aluRM(w, aluCmp, r, m) }, "cmp " + rn(w, r) + ", " + ptr(size) + mt},
					encodingCase{func(a *asm) { a.aluRM(w, aluOr, r, m) }, "or " + rn(w, r) + ", " + ptr(size) + mt},
					encodingCase{func(a *asm) { a.lockAluMR(w, aluAdd, m, r) }, "lock add " + ptr(size) + mt + ", " + rn(w, r)},
					encodingCase{func(a *asm) { a.lockAluMR(w, aluXor, m, r) }, "lock xor " + ptr(size) + mt + ", " + rn(w, r)},
					encodingCase{func(a *asm) { a.xadd(w, m, r) }, "lock xadd " + ptr(size) + mt + ", " + rn(w, r)},
					encodingCase{func(a *asm) { a.xchg(w, m, r) }, "xchg " + ptr(size) + mt + ", " + rn(w, r)},
					encodingCase{func(a *asm) { a.cmpxchg(w, m, r) }, "lock cmpxchg " + ptr(size) + mt + ", " + rn(w, r)},
				)
			}
			cases = append(cases, encodingCase{func(a *asm) { a.lea(r, m) }, "lea " + names64[r] + ", ptr " + mt})
		}
		for _, imm := range []int32{0, -1, 0x12345678} {
			cases = append(cases,
				encodingCase{func(a *asm) { a.storeImm(1, m, imm) }, "mov " + ptr(1) + mt + ", " + hexImm(int64(uint8(imm)))},
				encodingCase{func(a *asm) { a.storeImm(2, m, imm) }, "mov " + ptr(2) + mt + ", " + hexImm(int64(int16(imm)))},
				encodingCase{func(a *asm) { a.storeImm(4, m, imm) }, "mov " + ptr(4) + mt + ", " + hexImm(int64(imm))},
				encodingCase{func(a *asm) { a.storeImm(8, m, imm) }, "mov " + ptr(8) + mt + ", " + hexImm(int64(imm))},
				encodingCase{func(a *asm) { a.aluMI(true, aluCmp, m, imm) }, "cmp " + ptr(8) + mt + ", " + hexImm(int64(imm))},
			)
		}
		cases = append(cases, encodingCase{func(a *asm) { a.callM(m) }, "call " + ptr(8) + mt})
	}
	checkEncodings(t, cases)
}

func TestAlign(t *testing.T) {
	for start := 0; start < 40; start++ {
		b := make([]byte, start, start+16)
		b = b[:start+putNops(b[start:start+16], -start&15)]
		if len(b)%16 != 0 || len(b)-start >= 16 {
			t.Fatalf("from %d: %d bytes", start, len(b))
		}
		for off := start; off < len(b); {
			in, err := x86asm.Decode(b[off:], 64)
			if err != nil || in.Op != x86asm.NOP {
				t.Fatalf("from %d: % x at %d is not a nop (%v)", start, b[off:], off, err)
			}
			off += in.Len
		}
	}
}

func TestEncodeBranches(t *testing.T) {
	conds := map[cond]string{condB: "jb", condAE: "jnb", condE: "jz", condNE: "jnz", condBE: "jbe",
		condA: "jnbe", condL: "jl", condGE: "jnl", condLE: "jle", condG: "jnle"}
	var cases []encodingCase
	for c, name := range conds {
		for _, long := range []bool{false, true} {
			cases = append(cases, encodingCase{func(a *asm) { a.putWith(func(b []byte) int { return putJcc(b, c, long) }) }, name + " .+0x0"})
		}
	}
	cases = append(cases,
		encodingCase{func(a *asm) { a.putWith(func(b []byte) int { return putJmp(b, false) }) }, "jmp .+0x0"},
		encodingCase{func(a *asm) { a.putWith(func(b []byte) int { return putJmp(b, true) }) }, "jmp .+0x0"},
		encodingCase{func(a *asm) { a.putWith(putCall) }, "call .+0x0"},
	)
	checkEncodings(t, cases)
}

// putWith appends what a put function writes.
func (a *asm) putWith(f func([]byte) int) {
	var b [16]byte
	a.bytes(b[:f(b[:])]...)
}
