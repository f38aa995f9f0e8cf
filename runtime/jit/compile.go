package jit

import (
	"fmt"
	"math/bits"
	"sync"

	"golang.org/x/sys/cpu"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// Code is a compiled program: position- and process-independent machine code and what a
// loader needs to know of it. It holds no address of any process.
type Code struct {
	// Text is the machine code.
	Text []byte
	// Entry is the offset in Text of the entry point,
	//	uint64_t entry(struct ebpfu_ctx *blk, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
	// (System V x86-64 ABI), which returns r0 (see docs/jit.md).
	Entry int
	// Insns holds for each instruction the offset in Text of its code, then the offset of the
	// end of the last function's code, so an address inside Text maps back to an instruction.
	Insns []uint32
	// NumMaps is the number of map handles (and map value bases) the code reads from the block.
	NumMaps int
	// ValueRefs lists the lddw instructions that read a map value base: the block's
	// map_values[Map] must be a valid address for each.
	ValueRefs []ValueRef
	// CallsHelpers reports that the code calls helpers (by number or callx).
	CallsHelpers bool
	// Loops reports that the code counts the instruction budget.
	Loops bool
}

// PC returns the index of the instruction whose code holds Text offset off, or -1 when off is
// outside the instructions' code (prologue, stubs).
func (c *Code) PC(off int) int {
	n := len(c.Insns) - 1 // the last entry is the end of the instructions' code
	if n < 1 || off < int(c.Insns[0]) || off >= int(c.Insns[n]) {
		return -1
	}
	lo, hi := 0, n
	for lo < hi { // first instruction starting after off
		m := (lo + hi) / 2
		if int(c.Insns[m]) <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// ValueRef is an lddw that reads map Map's value base.
type ValueRef struct {
	PC  int
	Map int
}

// Register assignment: eBPF r0-r10 live in the registers of the kernel's x86-64 JIT.
var regMap = [isa.NumRegs]reg{rax, rdi, rsi, rdx, rcx, r8, rbx, r13, r14, r15, rbp}

// ebpfReg maps machine registers back to eBPF registers (0 for the others).
var ebpfReg = func() (t [16]uint8) {
	for r, x := range regMap {
		t[x] = uint8(r)
	}
	return t
}()

const (
	rBlk    = r12 // the context block
	rBudget = r9  // remaining instruction budget, when the program has loops
	rAux    = r11 // scratch: checked addresses, divisors, helper indexes
	rTmp    = r10 // scratch
)

// label names a position in the code; instruction i's label is i.
type label int32

// labelAt is where a label was placed: its position in the first-pass code (-1 until placed)
// and the number of items emitted before it, which gives its final position.
type labelAt struct {
	pos  int32
	item int32
}

// itemKind is the kind of an item.
type itemKind uint8

const (
	itemJcc   itemKind = iota // conditional branch: jcc rel32, or rel8 when it fits
	itemJmp                   // jmp rel32, or rel8 when it fits
	itemCall                  // call rel32
	itemAlign                 // no-operations up to a multiple of 16 bytes
)

// Sizes of the items in the first-pass code: branches in their long form, and the most
// padding an alignment can take.
const (
	jccLong, jmpLong, callLen = 6, 5, 5
	alignReserve              = 15
)

// item is a place in the first-pass code whose final form depends on the layout: a branch
// (emitted with room for rel32, becomes rel8 when its displacement fits) or an alignment.
type item struct {
	pos  int32 // position in the first-pass code
	to   label // a branch's target
	kind itemKind
	cc   cond // itemJcc: the condition
	long bool // a branch needs rel32 (calls always do)
}

// stubKind is the kind of a cold stub placed after the functions.
type stubKind uint8

const (
	stubBounds stubKind = iota // call the region check, return to resume
	stubFault                  // stop with a fault code
)

type stub struct {
	kind   stubKind
	code   uint8 // stubFault: fault code
	addr   bool  // stubFault: r11 holds the address of the access, size its size
	size   uint8
	at     label
	resume label
	info   uint32 // stubBounds: pc<<8 | write<<7 | size; stubFault: pc
	// stubBounds: the access, its function, and whether the inline check tried the stack
	// (else region 0).
	mem        mem
	fn         int32
	stackFirst bool
}

// Flags of an instruction, known before emitting it.
const (
	pcTarget    = 1 << iota // jumps go to the instruction
	pcLoopHead              // back-edges go to it: aligned to 16 bytes
	pcFuncStart             // a function starts at it
)

// funcInfo is what the compiler knows of a function before emitting it.
type funcInfo struct {
	// saved lists the callee-saved registers a subprogram writes (r6-r9 in that order).
	saved  [4]reg
	nsaved uint8
	// checkSizes has bit i set when the function has a checked access of 1<<i bytes.
	checkSizes uint8
}

// The compiler emits the code in one pass, every branch with room for a rel32 displacement and
// every alignment with room for the most padding, and records these places as items. Then
// layout finds which branches fit rel8 (starting from short for all but the ones to stubs and
// lengthening those that do not fit until nothing changes, a cheap fixed point over the items
// alone), and finish slides the code down in place over the room left unused, writing the
// branches and the padding in their final form.
type compiler struct {
	p      *program.Program
	insns  []isa.Instruction
	checks []program.Check
	funcs  []program.Func
	bmi2   bool

	scratch
	nfixed  int     // labels preallocated: instructions, then function entries
	codeEnd labelAt // the end of the functions' code
	// regionUses has bit i set when the program has a checked read of 1<<i bytes, bit 4+i
	// for a checked write: the region 0 limits the prologue computes.
	regionUses uint8
	loops      bool
	valueRefs  []ValueRef
	helpers    bool

	checkRegions label // -1 until needed
	faultExit    label // -1 until needed

	// stackish has bit r set, before instruction stackPC, when register r probably points
	// into the stack (see stackStep): it orders the checks of checked accesses. It is brought
	// up to a checked access when one is emitted.
	stackish uint16
	stackPC  int
	fn       int // the function being emitted
}

// scratch is the memory a compilation works in, kept between compilations.
type scratch struct {
	a      asm // the first-pass code
	labels []labelAt
	items  []item
	delta  []int32 // per item: its final position minus its first-pass position
	stubs  []stub
	flags  []uint8 // per instruction: pcTarget, pcLoopHead, pcFuncStart
	fns    []funcInfo
}

// options adjusts code generation, for tests.
type options struct {
	noBMI2 bool
}

// Compile translates a verified program to x86-64 machine code. It trusts the verifier for
// what the verifier proves (register types, stack offsets, bounds of unchecked accesses) and
// emits run-time checks for the rest; it still refuses programs whose structure would make it
// emit broken code.
func Compile(p *program.Program) (*Code, error) { return compile(p, options{}) }

func compile(p *program.Program, o options) (*Code, error) {
	c := compilers.Get().(*compiler)
	defer c.release()
	*c = compiler{scratch: c.scratch, p: p, insns: p.Insns, checks: p.Checks, bmi2: cpu.X86.HasBMI2 && !o.noBMI2}
	if err := c.prepare(); err != nil {
		return nil, fmt.Errorf("jit: %w", err)
	}
	if err := c.emit(); err != nil {
		return nil, fmt.Errorf("jit: %w", err)
	}
	if err := c.layout(); err != nil {
		return nil, fmt.Errorf("jit: %w", err)
	}
	text := c.finish()
	offsets := make([]uint32, len(c.insns)+1)
	for pc := range c.insns {
		offsets[pc] = uint32(c.final(c.labels[pc]))
	}
	offsets[len(c.insns)] = uint32(c.final(c.codeEnd))
	return &Code{Text: text, Entry: 0, Insns: offsets, NumMaps: len(p.Maps), ValueRefs: c.valueRefs,
		CallsHelpers: c.helpers,
		Loops:        c.loops}, nil
}

// compilers holds compilers between compilations, for their scratch memory.
var compilers = sync.Pool{New: func() any { return new(compiler) }}

// release returns c to compilers, unless its scratch memory grew large.
func (c *compiler) release() {
	if len(c.a.buf) > 1<<20 {
		return
	}
	*c = compiler{scratch: c.scratch}
	compilers.Put(c)
}

// reuse returns s emptied, with room for n elements.
func reuse[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, 0, n)
	}
	return s[:0]
}

// prepare checks the program's structure and computes per-function facts.
func (c *compiler) prepare() error {
	p := c.p
	n := len(c.insns)
	if n == 0 {
		return fmt.Errorf("empty program")
	}
	if len(c.checks) != n {
		return fmt.Errorf("%d checks for %d instructions", len(c.checks), n)
	}
	c.funcs = p.Funcs
	if len(c.funcs) == 0 {
		c.funcs = []program.Func{{Start: 0, End: n}}
	}
	funcs := c.funcs
	c.flags = reuse(c.flags, n)[:n]
	clear(c.flags)
	flags := c.flags
	for k, f := range funcs {
		if f.Start >= f.End || f.End > n || k == 0 && f.Start != 0 || k > 0 && f.Start != funcs[k-1].End {
			return fmt.Errorf("function %d spans [%d, %d) of %d instructions", k, f.Start, f.End, n)
		}
		flags[f.Start] = pcFuncStart
	}
	if last := funcs[len(funcs)-1].End; last != n {
		return fmt.Errorf("instructions from %d belong to no function", last)
	}
	c.fns = reuse(c.fns, len(funcs))[:len(funcs)]
	clear(c.fns)
	insns, checks := c.insns[:n], c.checks[:n]
	for k, f := range funcs {
		var written uint16 // registers the function writes
		for pc := f.Start; pc < f.End; pc++ {
			ins := insns[pc]
			if ins.Regs&0x0f >= isa.NumRegs || ins.Regs>>4 >= isa.NumRegs {
				return fmt.Errorf("instruction %d: invalid register", pc)
			}
			cl := isa.Class(ins.Op)
			switch cl {
			case isa.ClassALU, isa.ClassALU64, isa.ClassLDX:
				if cl == isa.ClassLDX && checks[pc] == program.CheckBounds {
					b := bits.TrailingZeros(uint(isa.Bytes(isa.SizeOf(ins.Op))))
					c.fns[k].checkSizes |= 1 << b
					c.regionUses |= 1 << b
				}
				if ins.Dst() == isa.RFP {
					return fmt.Errorf("instruction %d: writes the frame pointer r10", pc)
				}
				written |= 1 << ins.Dst()
				continue
			case isa.ClassST, isa.ClassSTX:
				if checks[pc] == program.CheckBounds {
					b := bits.TrailingZeros(uint(isa.Bytes(isa.SizeOf(ins.Op))))
					c.fns[k].checkSizes |= 1 << b
					if !(isa.Mode(ins.Op) == isa.ModeATOMIC && ins.Imm == isa.AtomicLoadAcq) {
						b += 4
					}
					c.regionUses |= 1 << b
				}
				if cl == isa.ClassST || isa.Mode(ins.Op) != isa.ModeATOMIC {
					continue
				}
			}
			if r, ok := written1(ins); ok {
				if r == isa.RFP {
					return fmt.Errorf("instruction %d: writes the frame pointer r10", pc)
				}
				written |= 1 << r
			}
			switch {
			case ins.Op == isa.OpLdDW:
				if ins.Src() == isa.PseudoMapValue {
					c.valueRefs = append(c.valueRefs, ValueRef{PC: pc, Map: int(ins.Imm)})
				}
				if pc+1 >= f.End || insns[pc+1].Op != 0 {
					return fmt.Errorf("instruction %d: incomplete lddw", pc)
				}
				pc++
			case cl == isa.ClassJMP || cl == isa.ClassJMP32:
				op := isa.Operation(ins.Op)
				if ins.Op == isa.OpCallX || ins.Op == isa.OpCall && ins.Src() == isa.PseudoCallHelper {
					c.helpers = true
				}
				if op == isa.JmpExit || op == isa.JmpCall && ins.Op != isa.OpCall {
					continue
				}
				t, ok := c.target(pc)
				if !ok {
					continue
				}
				if t < 0 || t >= n {
					return fmt.Errorf("instruction %d: jump to %d, outside the program", pc, t)
				}
				if op == isa.JmpCall {
					if ins.Src() == isa.PseudoCallLocal && (t == 0 || flags[t]&pcFuncStart == 0) {
						return fmt.Errorf("instruction %d: call to %d, not the start of a subprogram", pc, t)
					}
					continue
				}
				if t < f.Start || t >= f.End {
					return fmt.Errorf("instruction %d: jump to %d, in another function", pc, t)
				}
				flags[t] |= pcTarget
				if t <= pc {
					flags[t] |= pcLoopHead
					c.loops = true // whatever the verifier said: only back-edges loop
				}
				if t > 0 && insns[t-1].Op == isa.OpLdDW && (t < 2 || insns[t-2].Op != isa.OpLdDW) {
					return fmt.Errorf("instruction %d: jump into the middle of the lddw at %d", pc, t-1)
				}
			}
		}
		if k > 0 { // the entry saves every callee-saved register itself
			c.fns[k].setSaved(written)
		}
	}
	c.nfixed = n + len(funcs)
	return nil
}

// funcAt returns the index of the function that starts at pc.
func (c *compiler) funcAt(pc int) int {
	lo, hi := 0, len(c.funcs)
	for lo+1 < hi {
		m := (lo + hi) / 2
		if c.funcs[m].Start <= pc {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// setSaved records the callee-saved registers among r6-r9 that a function writes.
func (f *funcInfo) setSaved(written uint16) {
	f.nsaved = 0
	for _, r := range [...]uint8{isa.R6, isa.R7, isa.R8, isa.R9} {
		if written&(1<<r) != 0 {
			f.saved[f.nsaved] = regMap[r]
			f.nsaved++
		}
	}
}

// stackStep returns which registers probably point into the stack after ins, given st before
// it (bit r for register r): r10 does, and so does a copy of a register that does, plus or minus
// anything. Control flow is ignored: the guess, a linear scan of each function, only decides
// which bounds check runs inline.
func stackStep(st uint16, ins isa.Instruction) uint16 {
	dst, src := ins.Dst(), ins.Src()
	switch {
	case ins.Op == isa.OpMov64Reg && ins.Off == 0:
		return st&^(1<<dst) | (st>>src&1)<<dst
	case ins.Op == isa.ClassALU64|isa.ALUAdd|isa.SrcX || ins.Op == isa.ClassALU64|isa.ALUSub|isa.SrcX:
		return st | (st>>src&1)<<dst
	case ins.Op == isa.ClassALU64|isa.ALUAdd|isa.SrcK || ins.Op == isa.ClassALU64|isa.ALUSub|isa.SrcK:
		return st
	case ins.Op == isa.OpCall || ins.Op == isa.OpCallX:
		return st &^ 0x3f
	}
	if r, ok := written1(ins); ok {
		st &^= 1 << r
	}
	return st
}

// fuseLea emits "mov dst, src" followed by "add dst, imm", "sub dst, imm" or "add dst, src2"
// (64-bit, nothing jumping between them) as one lea, and reports whether it did.
func (c *compiler) fuseLea(pc int) bool {
	mov := c.insns[pc]
	if mov.Op != isa.OpMov64Reg || mov.Off != 0 || mov.Dst() == mov.Src() ||
		pc+1 >= c.funcs[c.fn].End || c.flags[pc+1]&pcTarget != 0 {
		return false
	}
	next := c.insns[pc+1]
	if next.Dst() != mov.Dst() {
		return false
	}
	dst, src := regMap[mov.Dst()], regMap[mov.Src()]
	switch next.Op {
	case isa.ClassALU64 | isa.ALUAdd | isa.SrcK:
		c.a.lea(dst, at(src, next.Imm))
	case isa.ClassALU64 | isa.ALUSub | isa.SrcK:
		if next.Imm == -1<<31 {
			return false
		}
		c.a.lea(dst, at(src, -next.Imm))
	case isa.ClassALU64 | isa.ALUAdd | isa.SrcX:
		if next.Src() == next.Dst() || next.Off != 0 {
			return false
		}
		c.a.lea(dst, mem{base: src, index: regMap[next.Src()], scale: 1})
	default:
		return false
	}
	return true
}

// written1 returns the register an instruction writes (calls aside), if any.
func written1(ins isa.Instruction) (uint8, bool) {
	switch isa.Class(ins.Op) {
	case isa.ClassLD:
		if m := isa.Mode(ins.Op); m == isa.ModeABS || m == isa.ModeIND {
			return isa.R0, true
		}
		return ins.Dst(), true
	case isa.ClassALU, isa.ClassALU64, isa.ClassLDX:
		return ins.Dst(), true
	case isa.ClassSTX:
		if isa.Mode(ins.Op) != isa.ModeATOMIC {
			return 0, false
		}
		switch {
		case ins.Imm == isa.AtomicLoadAcq:
			return ins.Dst(), true
		case ins.Imm == isa.AtomicCmpXchg:
			return isa.R0, true
		case ins.Imm&isa.AtomicFetch != 0:
			return ins.Src(), true
		}
	}
	return 0, false
}

// target returns the instruction a jump or local call at pc goes to (ok false for helper calls).
func (c *compiler) target(pc int) (int, bool) {
	ins := c.insns[pc]
	switch {
	case ins.Op == isa.OpCall:
		if ins.Src() != isa.PseudoCallLocal {
			return 0, false
		}
		return pc + 1 + int(ins.Imm), true
	case ins.Op == isa.OpJA32:
		return pc + 1 + int(ins.Imm), true
	default:
		return pc + 1 + int(ins.Off), true
	}
}

// funcEntry returns the label of subprogram k's prologue.
func (c *compiler) funcEntry(k int) label { return label(len(c.insns) + k) }

func (c *compiler) newLabel() label {
	c.labels = append(c.labels, labelAt{pos: -1})
	return label(len(c.labels) - 1)
}

func (c *compiler) place(l label) { c.labels[l] = c.here() }

// here returns the current position as a placed label.
func (c *compiler) here() labelAt {
	return labelAt{pos: int32(c.a.n), item: int32(len(c.items))}
}

// final returns the position of a placed label in the final code.
func (c *compiler) final(l labelAt) int32 { return l.pos + c.delta[l.item] }

// jcc emits a conditional branch to l; far says the target is probably far (a stub).
func (c *compiler) jcc(cc cond, l label, far bool) {
	c.items = append(c.items, item{pos: int32(c.a.n), to: l, kind: itemJcc, cc: cc, long: far})
	c.a.put(0x800f|uint64(cc)<<8, jccLong)
}

// jmp emits an unconditional branch to l.
func (c *compiler) jmp(l label, far bool) {
	c.items = append(c.items, item{pos: int32(c.a.n), to: l, kind: itemJmp, long: far})
	c.a.put(0xe9, jmpLong)
}

// call emits a near call to l.
func (c *compiler) call(l label) {
	c.items = append(c.items, item{pos: int32(c.a.n), to: l, kind: itemCall, long: true})
	c.a.put(0xe8, callLen)
}

// align16 emits the padding to the next multiple of 16 bytes.
func (c *compiler) align16() {
	c.items = append(c.items, item{pos: int32(c.a.n), kind: itemAlign})
	c.a.reserve(alignReserve)
	c.a.n += alignReserve
}

// layout chooses the branches' sizes: starting from short (rel8) for all but those emitted
// with far set, it makes long every short branch whose displacement does not fit in the
// layout those sizes give, until none changes. Branches only grow, so this ends. It fills
// c.delta.
func (c *compiler) layout() error {
	items := c.items
	for _, it := range items {
		if it.kind != itemAlign && c.labels[it.to].pos < 0 {
			return fmt.Errorf("branch to an unplaced label %d", it.to)
		}
	}
	c.delta = reuse(c.delta, len(items)+1)[:len(items)+1]
	delta := c.delta
	for {
		var d int32
		for i, it := range items {
			delta[i] = d
			switch {
			case it.long:
			case it.kind == itemJcc:
				d -= jccLong - 2
			case it.kind == itemJmp:
				d -= jmpLong - 2
			case it.kind == itemAlign:
				d += -(it.pos+d)&15 - alignReserve
			}
		}
		delta[len(items)] = d
		changed := false
		for i := range items {
			it := &items[i]
			if it.long || it.kind == itemAlign {
				continue
			}
			to := c.labels[it.to]
			if !fitsInt8(int64(to.pos + delta[to.item] - (it.pos + delta[i] + 2))) {
				it.long = true
				changed = true
			}
		}
		if !changed {
			return nil
		}
	}
}

// finish returns the code in its final layout: the first-pass code with each item in its
// final form.
func (c *compiler) finish() []byte {
	b := c.a.code()
	out := make([]byte, int32(len(b))+c.delta[len(c.items)])
	var dst, src int32
	for _, it := range c.items {
		dst += int32(copy(out[dst:], b[src:it.pos]))
		if it.kind == itemAlign {
			dst += int32(putNops(out[dst:], int(-dst&15)))
			src = it.pos + alignReserve
			continue
		}
		var n int
		switch it.kind {
		case itemJcc:
			n = putJcc(out[dst:], it.cc, it.long)
			src = it.pos + jccLong
		case itemJmp:
			n = putJmp(out[dst:], it.long)
			src = it.pos + jmpLong
		default:
			n = putCall(out[dst:])
			src = it.pos + callLen
		}
		dst += int32(n)
		to := c.labels[it.to]
		d := to.pos + c.delta[to.item] - dst
		if it.long {
			putInt32(out[dst-4:], d)
		} else {
			out[dst-1] = byte(int8(d))
		}
	}
	copy(out[dst:], b[src:])
	return out
}

// emit produces the first-pass code.
func (c *compiler) emit() error {
	n := len(c.insns)
	if size := 16*n + 1024; len(c.a.buf) < size { // typical code; a larger one grows it
		c.a.buf = make([]byte, size)
	}
	c.a.n = 0
	c.items = reuse(c.items, n+n/2)
	c.labels = reuse(c.labels, c.nfixed+n)[:c.nfixed]
	for i := range c.labels {
		c.labels[i].pos = -1
	}
	c.stubs = reuse(c.stubs, n/4)
	c.checkRegions, c.faultExit = -1, -1

	c.prologue()
	for k, f := range c.funcs {
		if k > 0 {
			c.place(c.funcEntry(k))
			c.subPrologue(k)
		}
		c.fn = k
		c.stackish, c.stackPC = 1<<isa.R10, f.Start
		for pc := f.Start; pc < f.End; pc++ {
			if c.flags[pc]&pcLoopHead != 0 {
				c.align16()
			}
			c.place(label(pc))
			ins := c.insns[pc]
			if ins.Op == isa.OpMov64Reg && c.fuseLea(pc) {
				pc++
				c.place(label(pc))
				continue
			}
			if err := c.insn(pc); err != nil {
				return fmt.Errorf("instruction %d (%s): %w", pc, describe(ins), err)
			}
			if ins.Op == isa.OpLdDW {
				pc++
				c.place(label(pc))
			}
		}
		// A verified function never runs off its end; stop the program if one does.
		c.a.storeImm(4, at(rBlk, offFaultPC), int32(f.End-1))
		c.a.storeImm(4, at(rBlk, offFault), FaultFellOff)
		if c.faultExit < 0 {
			c.faultExit = c.newLabel()
		}
		c.jmp(c.faultExit, true)
	}
	c.codeEnd = c.here()
	c.emitStubs()
	return nil
}

func describe(i isa.Instruction) string {
	return fmt.Sprintf("op %#02x dst r%d src r%d off %d imm %d", i.Op, i.Dst(), i.Src(), i.Off, i.Imm)
}

// prologue emits the entry point: save the callee-saved registers, keep the block in r12, set
// the frame pointer to the top of frame 0, move the arguments into r1-r5.
func (c *compiler) prologue() {
	a := &c.a
	for _, r := range []reg{rbp, rbx, r12, r13, r14, r15} {
		a.push(r)
	}
	a.aluRI(true, aluSub, rsp, 8) // 16-byte alignment for helper calls
	a.movRR(true, rBlk, rdi)
	a.opRM(true, 0x89, rsp, at(rBlk, offEntrySP))
	a.storeImm(8, at(rBlk, offFault), 0)
	a.opRM(true, 0x8b, rbp, at(rBlk, offStack))
	if len(c.funcs) > 1 {
		a.lea(rTmp, at(rbp, 2*512))
		a.opRM(true, 0x89, rTmp, at(rBlk, offFrameLimit))
	}
	a.lea(rbp, at(rbp, StackSize))
	if c.regionUses != 0 {
		c.regionLimits()
	}
	a.movRR(true, rdi, rsi)
	a.movRR(true, rsi, rdx)
	a.movRR(true, rdx, rcx)
	a.movRR(true, rcx, r8)
	a.movRR(true, r8, r9)
	if c.loops {
		a.opRM(true, 0x8b, rBudget, at(rBlk, offBudget))
		a.testRR(true, rBudget, rBudget)
		l := c.newLabel()
		c.jcc(condNE, l, false)
		a.movRI(true, rBudget, -1)
		c.place(l)
	}
}

// regionLimits emits the computation of region 0's limits for the inline check of checked
// accesses: for each access size and kind the program uses, the number of offsets from the
// region's start at which such an access fits (0 when none does, or when the run has no region
// or a write meets a read-only region). rax, rbx, r10 and r11 are free: r0 and r6 are not set yet.
func (c *compiler) regionLimits() {
	a := &c.a
	a.aluRR(false, aluXor, rax, rax)
	a.opRM(true, 0x8b, rAux, at(rBlk, offRegions+8))
	a.opRM(true, 0x8b, rTmp, at(rBlk, offRegions))
	a.opRM(true, 0x89, rTmp, at(rBlk, offR0Start))
	a.aluRR(true, aluSub, rAux, rTmp) // the length
	a.aluMI(true, aluCmp, at(rBlk, offNumRegions), 0)
	a.cmovRR(true, condE, rAux, rax)
	a.opRM(true, 0x8b, rbx, at(rBlk, offRegions+16)) // writable
	for k := 0; k < 8; k++ {
		if c.regionUses&(1<<k) == 0 {
			continue
		}
		size := int32(1) << (k % 4)
		a.lea(rTmp, at(rAux, 1-size))
		a.aluRI(true, aluCmp, rAux, size)
		a.cmovRR(true, condB, rTmp, rax)
		if k >= 4 {
			a.testRR(true, rbx, rbx)
			a.cmovRR(true, condE, rTmp, rax)
		}
		a.opRM(true, 0x89, rTmp, at(rBlk, int32(offR0Limit+8*k)))
	}
}

// epilogue emits the return from the entry point.
func (c *compiler) epilogue() {
	a := &c.a
	a.aluRI(true, aluAdd, rsp, 8)
	for _, r := range []reg{r15, r14, r13, r12, rbx, rbp} {
		a.pop(r)
	}
	a.ret()
}

// subPrologue emits the prologue of subprogram k: move the frame pointer to the new frame, save
// the callee-saved registers the function writes.
//
// A subprogram with checked accesses keeps, for each access size, the live stack's span (from
// the bottom of its frame to the top of frame 0) minus the size in a slot of its native frame.
func (c *compiler) subPrologue(k int) {
	a := &c.a
	a.aluRI(true, aluSub, rbp, 512)
	f := &c.fns[k]
	for _, r := range f.saved[:f.nsaved] {
		a.push(r)
	}
	if n := c.frameSize(k); n > 0 {
		a.aluRI(true, aluSub, rsp, int32(n))
	}
	if f.checkSizes == 0 {
		return
	}
	a.opRM(true, 0x8b, rTmp, at(rBlk, offStack))
	a.aluRI(true, aluAdd, rTmp, StackSize+512)
	a.aluRR(true, aluSub, rTmp, rbp) // the span: stack top - (rbp - 512)
	for i, size := range []int{1, 2, 4, 8} {
		if f.checkSizes&(1<<i) != 0 {
			a.lea(rAux, at(rTmp, int32(-size)))
			a.opRM(true, 0x89, rAux, at(rsp, spanSlot(size)))
		}
	}
}

// spanSlot returns the offset from rsp of a subprogram's span slot for an access size.
func spanSlot(size int) int32 {
	return int32(8 * bits.TrailingZeros(uint(size)))
}

// frameSize returns the bytes subprogram k reserves on the native stack below its saved
// registers: its span slots, and padding that keeps rsp 16-byte aligned for helper calls.
func (c *compiler) frameSize(k int) int {
	n := 0
	if c.fns[k].checkSizes != 0 {
		n = 32
	}
	if c.fns[k].nsaved%2 == 0 { // the call pushed 8 bytes
		n += 8
	}
	return n
}

// subEpilogue emits the return from subprogram k.
func (c *compiler) subEpilogue(k int) {
	a := &c.a
	if n := c.frameSize(k); n > 0 {
		a.aluRI(true, aluAdd, rsp, int32(n))
	}
	f := &c.fns[k]
	for i := int(f.nsaved) - 1; i >= 0; i-- {
		a.pop(f.saved[i])
	}
	a.aluRI(true, aluAdd, rbp, 512)
	a.ret()
}

// faultStub returns the label of a cold stub that stops the program with code at pc.
func (c *compiler) faultStub(code uint32, pc int) label {
	return c.addStub(stub{kind: stubFault, info: uint32(pc), code: uint8(code)})
}

func (c *compiler) addStub(s stub) label {
	s.at = c.newLabel()
	c.stubs = append(c.stubs, s)
	if c.faultExit < 0 {
		c.faultExit = c.newLabel()
	}
	return s.at
}

// emitStubs emits the cold stubs and the shared routines after the functions.
func (c *compiler) emitStubs() {
	a := &c.a
	for _, s := range c.stubs {
		c.place(s.at)
		switch s.kind {
		case stubBounds:
			if s.mem.base != rAux || s.mem.disp != 0 {
				a.lea(rAux, s.mem)
			}
			if !s.stackFirst { // the inline check tried region 0: try the stack
				c.stackCheck(int(s.fn), at(rAux, 0), int(s.info&0x7f))
				c.jcc(condBE, s.resume, true)
			}
			a.movRI(false, rTmp, int64(s.info))
			c.call(c.checkRegions)
			c.jmp(s.resume, true)
		case stubFault:
			if s.addr {
				a.opRM(true, 0x89, rAux, at(rBlk, offFaultAddr))
				a.storeImm(8, at(rBlk, offFaultInfo), int32(s.size))
			}
			a.storeImm(4, at(rBlk, offFaultPC), int32(s.info))
			a.storeImm(4, at(rBlk, offFault), int32(s.code))
			c.jmp(c.faultExit, true)
		}
	}
	if c.checkRegions >= 0 {
		c.emitCheckRegions()
	}
	if c.faultExit >= 0 {
		c.place(c.faultExit)
		a.opRM(true, 0x8b, rsp, at(rBlk, offEntrySP))
		a.aluRR(false, aluXor, rax, rax)
		c.epilogue()
	}
}

// emitCheckRegions emits the routine that checks an access against the block's regions:
// r11 holds the address, r10 pc<<8 | write<<7 | size. It returns when a region holds the
// access and stops the program otherwise. It preserves every register but the flags.
func (c *compiler) emitCheckRegions() {
	a := &c.a
	c.place(c.checkRegions)
	for _, r := range []reg{rax, rcx, rdx, rsi} {
		a.push(r)
	}
	a.opRM(true, 0x8b, rcx, at(rBlk, offNumRegions))
	a.lea(rax, at(rBlk, offRegions))
	a.movRR(false, rdx, rTmp)
	a.aluRI(false, aluAnd, rdx, 0x7f)
	loop, next, ok, fail := c.newLabel(), c.newLabel(), c.newLabel(), c.newLabel()
	c.place(loop)
	a.testRR(true, rcx, rcx)
	c.jcc(condE, fail, false)
	a.aluRM(true, aluCmp, rAux, at(rax, 0)) // addr < start
	c.jcc(condB, next, false)
	a.opRM(true, 0x8b, rsi, at(rax, 8))
	a.aluRR(true, aluSub, rsi, rAux) // end - addr, borrow when addr > end
	c.jcc(condB, next, false)
	a.aluRR(true, aluCmp, rsi, rdx) // room < size
	c.jcc(condB, next, false)
	a.testRI(false, rTmp, 0x80)
	c.jcc(condE, ok, false)
	a.aluMI(true, aluCmp, at(rax, 16), 0)
	c.jcc(condNE, ok, false)
	c.place(next)
	a.aluRI(true, aluAdd, rax, regionSize)
	a.aluRI(true, aluSub, rcx, 1)
	c.jmp(loop, false)
	c.place(ok)
	for _, r := range []reg{rsi, rdx, rcx, rax} {
		a.pop(r)
	}
	a.ret()
	c.place(fail)
	a.opRM(true, 0x89, rAux, at(rBlk, offFaultAddr))
	a.opRM(true, 0x89, rTmp, at(rBlk, offFaultInfo))
	a.shiftRI(false, shShr, rTmp, 8)
	a.opRM(false, 0x89, rTmp, at(rBlk, offFaultPC))
	a.storeImm(4, at(rBlk, offFault), FaultBounds)
	c.jmp(c.faultExit, true)
}
