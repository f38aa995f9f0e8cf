package conformance

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Assemble translates assembler text in the uBPF dialect into instructions.
//
// One instruction per line; `#` starts a comment; `name:` on a line defines a label. Jump and
// `call local` targets are signed offsets (`+3`, `-2`) or labels, and the label `exit` names the
// first exit instruction unless the text defines it. Registers are written %r0..%r10 (or r0..r10).
// `call N` calls helper N, `call %rN` and `callx %rN` call the helper whose number is in rN
// (opcode 0x8d, register in dst), `call local L` is a bpf-to-bpf call, `call runtime N` a kfunc.
// Atomics are `lock [fetch] add|or|and|xor|xchg|cmpxchg[32] [%rD+off], %rS`; the legacy packet
// loads are `ldabs{b,h,w} imm` and `ldind{b,h,w} %rS, imm`.
func Assemble(src string) ([]isa.Instruction, error) {
	a := &assembler{labels: make(map[string]int)}
	for n, line := range strings.Split(src, "\n") {
		if err := a.line(line); err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n+1, strings.TrimSpace(line), err)
		}
	}
	if err := a.fixups(); err != nil {
		return nil, err
	}
	return a.out, nil
}

// fixup is a jump or call whose target is a label, resolved once every label is known.
type fixup struct {
	slot  int    // index of the instruction
	label string // target
	inImm bool   // the offset goes into Imm (call local, ja32) rather than Off
	line  string
}

type assembler struct {
	out       []isa.Instruction
	labels    map[string]int
	firstExit int // index of the first exit, valid when sawExit
	sawExit   bool
	pending   []fixup
	cur       string // the line being assembled, for fixup errors
}

// tokens splits an instruction line into its mnemonic words and operands: commas separate
// operands, spaces inside brackets are dropped.
func tokens(line string) []string {
	var b strings.Builder
	depth := 0
	for _, c := range line {
		switch {
		case c == '[':
			depth++
			b.WriteRune(c)
		case c == ']':
			depth--
			b.WriteRune(c)
		case c == ',':
			b.WriteByte(' ')
		case (c == ' ' || c == '\t') && depth > 0:
		default:
			b.WriteRune(c)
		}
	}
	return strings.Fields(b.String())
}

func (a *assembler) line(line string) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	a.cur = strings.TrimSpace(line)
	toks := tokens(line)
	for len(toks) > 0 && strings.HasSuffix(toks[0], ":") {
		label := strings.TrimSuffix(toks[0], ":")
		if label == "" {
			return fmt.Errorf("empty label")
		}
		if _, dup := a.labels[label]; dup {
			return fmt.Errorf("duplicate label %q", label)
		}
		a.labels[label] = len(a.out)
		toks = toks[1:]
	}
	if len(toks) == 0 {
		return nil
	}
	mn, ops := strings.ToLower(toks[0]), toks[1:]
	if mn == "exit" && !a.sawExit {
		a.sawExit, a.firstExit = true, len(a.out)
	}
	return a.insn(mn, ops)
}

func (a *assembler) emit(i isa.Instruction) { a.out = append(a.out, i) }

func want(ops []string, n int) error {
	if len(ops) != n {
		return fmt.Errorf("want %d operands, have %d", n, len(ops))
	}
	return nil
}

// ALU operation names, without the 32/64 suffix.
var aluOps = map[string]uint8{
	"add": isa.ALUAdd, "sub": isa.ALUSub, "mul": isa.ALUMul, "div": isa.ALUDiv, "sdiv": isa.ALUDiv,
	"or": isa.ALUOr, "and": isa.ALUAnd, "lsh": isa.ALULsh, "rsh": isa.ALURsh, "neg": isa.ALUNeg,
	"mod": isa.ALUMod, "smod": isa.ALUMod, "xor": isa.ALUXor, "mov": isa.ALUMov, "arsh": isa.ALUArsh,
}

// Conditional jump names, without the 32 suffix.
var jmpOps = map[string]uint8{
	"jeq": isa.JmpJEQ, "jgt": isa.JmpJGT, "jge": isa.JmpJGE, "jset": isa.JmpJSET, "jne": isa.JmpJNE,
	"jsgt": isa.JmpJSGT, "jsge": isa.JmpJSGE, "jlt": isa.JmpJLT, "jle": isa.JmpJLE, "jslt": isa.JmpJSLT,
	"jsle": isa.JmpJSLE,
}

// Load and store size suffixes.
var sizes = map[string]uint8{"b": isa.SizeB, "h": isa.SizeH, "w": isa.SizeW, "dw": isa.SizeDW}

// Atomic operation names, without the 32 suffix.
var atomicOps = map[string]int32{
	"add": isa.AtomicAdd, "or": isa.AtomicOr, "and": isa.AtomicAnd, "xor": isa.AtomicXor,
	"xchg": isa.AtomicXchg, "cmpxchg": isa.AtomicCmpXchg,
}

func (a *assembler) insn(mn string, ops []string) error {
	switch {
	case mn == "exit":
		if err := want(ops, 0); err != nil {
			return err
		}
		a.emit(isa.Make(isa.OpExit, 0, 0, 0, 0))
		return nil
	case mn == "lddw":
		return a.lddw(ops)
	case mn == "ja" || mn == "ja32":
		return a.ja(mn, ops)
	case mn == "call" || mn == "callx":
		return a.call(mn, ops)
	case mn == "lock":
		return a.atomic(ops)
	case strings.HasPrefix(mn, "ldabs") || strings.HasPrefix(mn, "ldind"):
		return a.ldPacket(mn, ops)
	case strings.HasPrefix(mn, "ldx"):
		return a.ldx(mn, ops)
	case strings.HasPrefix(mn, "stx"):
		return a.stx(mn, ops)
	case isStore(mn):
		return a.st(mn, ops)
	case strings.HasPrefix(mn, "be") || strings.HasPrefix(mn, "le") ||
		strings.HasPrefix(mn, "swap") || strings.HasPrefix(mn, "bswap"):
		return a.end(mn, ops)
	}
	if base, is32 := strings.CutSuffix(mn, "32"); is32 {
		if _, ok := jmpOps[base]; ok {
			return a.jcc(isa.ClassJMP32, jmpOps[base], ops)
		}
	}
	if op, ok := jmpOps[mn]; ok {
		return a.jcc(isa.ClassJMP, op, ops)
	}
	return a.alu(mn, ops)
}

func (a *assembler) alu(mn string, ops []string) error {
	class, base := isa.ClassALU64, mn
	if b, ok := strings.CutSuffix(mn, "32"); ok {
		class, base = isa.ClassALU, b
	} else if b, ok := strings.CutSuffix(mn, "64"); ok {
		base = b
	}
	var off int16
	if w, ok := strings.CutPrefix(base, "movsx"); ok {
		n, err := strconv.Atoi(w)
		if err != nil || (n != 8 && n != 16 && n != 32) {
			return fmt.Errorf("unknown mnemonic %q", mn)
		}
		off, base = int16(n), "mov"
	}
	op, ok := aluOps[base]
	if !ok {
		return fmt.Errorf("unknown mnemonic %q", mn)
	}
	if base == "sdiv" || base == "smod" {
		off = 1
	}
	if op == isa.ALUNeg {
		if err := want(ops, 1); err != nil {
			return err
		}
		dst, err := reg(ops[0])
		if err != nil {
			return err
		}
		a.emit(isa.Make(class|op|isa.SrcK, dst, 0, 0, 0))
		return nil
	}
	if err := want(ops, 2); err != nil {
		return err
	}
	dst, err := reg(ops[0])
	if err != nil {
		return err
	}
	if isReg(ops[1]) {
		src, err := reg(ops[1])
		if err != nil {
			return err
		}
		a.emit(isa.Make(class|op|isa.SrcX, dst, src, off, 0))
		return nil
	}
	if off != 0 && op == isa.ALUMov {
		return fmt.Errorf("%s needs a source register", mn)
	}
	imm, err := imm32(ops[1])
	if err != nil {
		return err
	}
	a.emit(isa.Make(class|op|isa.SrcK, dst, 0, off, imm))
	return nil
}

// end assembles the byte swaps: beN and leN (ALU|END, to big or little endian), swapN and
// bswapN (ALU64|END, unconditional).
func (a *assembler) end(mn string, ops []string) error {
	var op uint8
	var w string
	switch {
	case strings.HasPrefix(mn, "be"):
		op, w = isa.ClassALU|isa.ALUEnd|isa.EndToBE, mn[2:]
	case strings.HasPrefix(mn, "le"):
		op, w = isa.ClassALU|isa.ALUEnd|isa.EndToLE, mn[2:]
	case strings.HasPrefix(mn, "bswap"):
		op, w = isa.ClassALU64|isa.ALUEnd, mn[5:]
	default:
		op, w = isa.ClassALU64|isa.ALUEnd, mn[4:]
	}
	if w != "16" && w != "32" && w != "64" {
		return fmt.Errorf("unknown mnemonic %q", mn)
	}
	if err := want(ops, 1); err != nil {
		return err
	}
	dst, err := reg(ops[0])
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(w)
	a.emit(isa.Make(op, dst, 0, 0, int32(n)))
	return nil
}

func (a *assembler) lddw(ops []string) error {
	if err := want(ops, 2); err != nil {
		return err
	}
	dst, err := reg(ops[0])
	if err != nil {
		return err
	}
	v, err := imm64(ops[1])
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.OpLdDW, dst, 0, 0, int32(uint32(v))))
	a.emit(isa.Make(0, 0, 0, 0, int32(uint32(v>>32))))
	return nil
}

// target returns the offset of a jump target, or records a fixup for a label.
func (a *assembler) target(s string, inImm bool) (int64, error) {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		return parseInt(s)
	}
	if s == "" {
		return 0, fmt.Errorf("missing jump target")
	}
	a.pending = append(a.pending, fixup{slot: len(a.out), label: s, inImm: inImm, line: a.cur})
	return 0, nil
}

func (a *assembler) ja(mn string, ops []string) error {
	if err := want(ops, 1); err != nil {
		return err
	}
	if mn == "ja32" {
		off, err := a.target(ops[0], true)
		if err != nil {
			return err
		}
		if off < math.MinInt32 || off > math.MaxInt32 {
			return fmt.Errorf("offset %d out of range", off)
		}
		a.emit(isa.Make(isa.OpJA32, 0, 0, 0, int32(off)))
		return nil
	}
	off, err := a.target(ops[0], false)
	if err != nil {
		return err
	}
	o, err := off16(off)
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.OpJA, 0, 0, o, 0))
	return nil
}

func (a *assembler) jcc(class, op uint8, ops []string) error {
	if err := want(ops, 3); err != nil {
		return err
	}
	dst, err := reg(ops[0])
	if err != nil {
		return err
	}
	var i isa.Instruction
	if isReg(ops[1]) {
		src, err := reg(ops[1])
		if err != nil {
			return err
		}
		i = isa.Make(class|op|isa.SrcX, dst, src, 0, 0)
	} else {
		imm, err := imm32(ops[1])
		if err != nil {
			return err
		}
		i = isa.Make(class|op|isa.SrcK, dst, 0, 0, imm)
	}
	off, err := a.target(ops[2], false)
	if err != nil {
		return err
	}
	if i.Off, err = off16(off); err != nil {
		return err
	}
	a.emit(i)
	return nil
}

func (a *assembler) call(mn string, ops []string) error {
	if mn == "callx" {
		if err := want(ops, 1); err != nil {
			return err
		}
		ops = []string{"helper", ops[0]}
	} else if len(ops) == 1 {
		ops = []string{"helper", ops[0]}
	}
	if err := want(ops, 2); err != nil {
		return err
	}
	switch ops[0] {
	case "helper":
		if isReg(ops[1]) {
			r, err := reg(ops[1])
			if err != nil {
				return err
			}
			a.emit(isa.Make(isa.OpCallX, r, 0, 0, 0))
			return nil
		}
		imm, err := imm32(ops[1])
		if err != nil {
			return err
		}
		a.emit(isa.Make(isa.OpCall, 0, isa.PseudoCallHelper, 0, imm))
	case "local":
		off, err := a.target(ops[1], true)
		if err != nil {
			return err
		}
		if off < math.MinInt32 || off > math.MaxInt32 {
			return fmt.Errorf("offset %d out of range", off)
		}
		a.emit(isa.Make(isa.OpCall, 0, isa.PseudoCallLocal, 0, int32(off)))
	case "runtime":
		imm, err := imm32(ops[1])
		if err != nil {
			return err
		}
		a.emit(isa.Make(isa.OpCall, 0, isa.PseudoKfuncCall, 0, imm))
	default:
		return fmt.Errorf("unknown call mode %q", ops[0])
	}
	return nil
}

func (a *assembler) ldx(mn string, ops []string) error {
	mode, sz := isa.ModeMEM, mn[3:]
	if s, ok := strings.CutPrefix(sz, "s"); ok {
		mode, sz = isa.ModeMEMSX, s
	}
	size, ok := sizes[sz]
	if !ok || (mode == isa.ModeMEMSX && size == isa.SizeDW) {
		return fmt.Errorf("unknown mnemonic %q", mn)
	}
	if err := want(ops, 2); err != nil {
		return err
	}
	dst, err := reg(ops[0])
	if err != nil {
		return err
	}
	src, off, err := memOperand(ops[1])
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.ClassLDX|mode|size, dst, src, off, 0))
	return nil
}

func (a *assembler) st(mn string, ops []string) error {
	size, ok := sizes[mn[2:]]
	if !ok {
		return fmt.Errorf("unknown mnemonic %q", mn)
	}
	if err := want(ops, 2); err != nil {
		return err
	}
	dst, off, err := memOperand(ops[0])
	if err != nil {
		return err
	}
	imm, err := imm32(ops[1])
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.ClassST|isa.ModeMEM|size, dst, 0, off, imm))
	return nil
}

func (a *assembler) stx(mn string, ops []string) error {
	size, ok := sizes[mn[3:]]
	if !ok {
		return fmt.Errorf("unknown mnemonic %q", mn)
	}
	if err := want(ops, 2); err != nil {
		return err
	}
	dst, off, err := memOperand(ops[0])
	if err != nil {
		return err
	}
	src, err := reg(ops[1])
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.ClassSTX|isa.ModeMEM|size, dst, src, off, 0))
	return nil
}

// atomic assembles `lock [fetch] OP[32] [%rD+off], %rS`.
func (a *assembler) atomic(ops []string) error {
	fetch := false
	if len(ops) > 0 && ops[0] == "fetch" {
		fetch, ops = true, ops[1:]
	}
	if len(ops) != 3 {
		return fmt.Errorf("lock: want [fetch] OP [dst+off], src")
	}
	size, name := isa.SizeDW, ops[0]
	if b, ok := strings.CutSuffix(name, "32"); ok {
		size, name = isa.SizeW, b
	} else if b, ok := strings.CutSuffix(name, "64"); ok {
		name = b
	}
	imm, ok := atomicOps[name]
	if !ok {
		return fmt.Errorf("lock: unknown operation %q", ops[0])
	}
	if fetch {
		imm |= isa.AtomicFetch
	}
	dst, off, err := memOperand(ops[1])
	if err != nil {
		return err
	}
	src, err := reg(ops[2])
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.ClassSTX|isa.ModeATOMIC|size, dst, src, off, imm))
	return nil
}

// ldPacket assembles the legacy packet loads: ldabsW imm and ldindW %rS, imm.
func (a *assembler) ldPacket(mn string, ops []string) error {
	mode, sz := isa.ModeABS, mn[5:]
	if strings.HasPrefix(mn, "ldind") {
		mode = isa.ModeIND
	}
	size, ok := sizes[sz]
	if !ok || size == isa.SizeDW {
		return fmt.Errorf("unknown mnemonic %q", mn)
	}
	var src uint8
	if mode == isa.ModeIND {
		if err := want(ops, 2); err != nil {
			return err
		}
		r, err := reg(ops[0])
		if err != nil {
			return err
		}
		src, ops = r, ops[1:]
	} else if err := want(ops, 1); err != nil {
		return err
	}
	imm, err := imm32(ops[0])
	if err != nil {
		return err
	}
	a.emit(isa.Make(isa.ClassLD|mode|size, 0, src, 0, imm))
	return nil
}

func (a *assembler) fixups() error {
	for _, f := range a.pending {
		t, ok := a.labels[f.label]
		if !ok && f.label == "exit" && a.sawExit {
			t, ok = a.firstExit, true
		}
		if !ok {
			return fmt.Errorf("%q: unknown label %q", f.line, f.label)
		}
		off := int64(t - f.slot - 1)
		if f.inImm {
			a.out[f.slot].Imm = int32(off)
			continue
		}
		o, err := off16(off)
		if err != nil {
			return fmt.Errorf("%q: %w", f.line, err)
		}
		a.out[f.slot].Off = o
	}
	return nil
}

// isStore reports whether mn is a store of an immediate: stb, sth, stw, stdw.
func isStore(mn string) bool {
	sz, ok := strings.CutPrefix(mn, "st")
	if !ok {
		return false
	}
	_, ok = sizes[sz]
	return ok
}

func isReg(s string) bool { return strings.HasPrefix(s, "%") || strings.HasPrefix(s, "r") }

// reg parses %rN or rN, N in 0..15 (the field's range; the verifier refuses 11..15).
func reg(s string) (uint8, error) {
	t := strings.TrimPrefix(s, "%")
	if n, ok := strings.CutPrefix(t, "r"); ok {
		if v, err := strconv.ParseUint(n, 10, 8); err == nil && v < 16 {
			return uint8(v), nil
		}
	}
	return 0, fmt.Errorf("invalid register %q", s)
}

// memOperand parses [%rN], [%rN+off] or [%rN-off].
func memOperand(s string) (uint8, int16, error) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return 0, 0, fmt.Errorf("invalid memory operand %q", s)
	}
	in := s[1 : len(s)-1]
	i := strings.IndexAny(in, "+-")
	if i < 0 {
		r, err := reg(in)
		return r, 0, err
	}
	r, err := reg(in[:i])
	if err != nil {
		return 0, 0, err
	}
	v, err := parseInt(in[i:])
	if err != nil {
		return 0, 0, fmt.Errorf("invalid offset in %q: %w", s, err)
	}
	off, err := off16(v)
	return r, off, err
}

// parseInt parses a signed number, decimal or 0x hex, with an optional sign.
func parseInt(s string) (int64, error) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	var (
		v   uint64
		err error
	)
	if h, ok := cutHex(s); ok {
		v, err = strconv.ParseUint(h, 16, 64)
	} else {
		v, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	if neg {
		if v > 1<<63 {
			return 0, fmt.Errorf("number -%s out of range", s)
		}
		return -int64(v), nil
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("number %s out of range", s)
	}
	return int64(v), nil
}

func cutHex(s string) (string, bool) {
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		return h, true
	}
	return strings.CutPrefix(s, "0X")
}

// off16 checks that an offset fits the 16-bit field.
func off16(v int64) (int16, error) {
	if v < math.MinInt16 || v > math.MaxInt16 {
		return 0, fmt.Errorf("offset %d out of 16-bit range", v)
	}
	return int16(v), nil
}

// imm32 parses a 32-bit immediate as the upstream assembler does: decimal in [-2^31, 2^31), or
// hex up to 0xffffffff, the bit pattern (0xffffff80 is -128).
func imm32(s string) (int32, error) {
	if h, ok := cutHex(s); ok {
		u, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid number %q", s)
		}
		if u > math.MaxUint32 {
			return 0, fmt.Errorf("immediate %s out of 32-bit range", s)
		}
		return int32(uint32(u)), nil
	}
	v, err := parseInt(s)
	if err != nil {
		return 0, err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("immediate %s out of 32-bit range (write it in hex)", s)
	}
	return int32(v), nil
}

// imm64 parses lddw's constant: hex as an unsigned 64-bit pattern, or signed/unsigned decimal.
func imm64(s string) (uint64, error) {
	if h, ok := cutHex(s); ok {
		v, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid number %q", s)
		}
		return v, nil
	}
	if strings.HasPrefix(s, "-") {
		v, err := parseInt(s)
		return uint64(v), err
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	return v, nil
}
