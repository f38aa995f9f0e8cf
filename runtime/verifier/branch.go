package verifier

import (
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Branch outcomes.
const (
	branchUnknown = iota
	branchAlways
	branchNever
)

// negate returns the condition that holds when op does not.
func negate(op uint8) uint8 {
	switch op {
	case isa.JmpJEQ:
		return isa.JmpJNE
	case isa.JmpJNE:
		return isa.JmpJEQ
	case isa.JmpJGT:
		return isa.JmpJLE
	case isa.JmpJLE:
		return isa.JmpJGT
	case isa.JmpJGE:
		return isa.JmpJLT
	case isa.JmpJLT:
		return isa.JmpJGE
	case isa.JmpJSGT:
		return isa.JmpJSLE
	case isa.JmpJSLE:
		return isa.JmpJSGT
	case isa.JmpJSGE:
		return isa.JmpJSLT
	case isa.JmpJSLT:
		return isa.JmpJSGE
	}
	return op // JSET is handled by its caller
}

// checkCond checks a conditional jump and follows both outcomes that may happen, each with what
// it teaches about the compared registers.
func (v *verifier) checkCond(st *state, pc int, in isa.Instruction) (int, error) {
	op := isa.Operation(in.Op)
	jmp32 := isa.Class(in.Op) == isa.ClassJMP32
	srcX := isa.Source(in.Op) == isa.SrcX
	if (srcX && in.Imm != 0) || (!srcX && in.Src() != 0) || op == 0xe0 || op == 0xf0 {
		return 0, refuse(syscall.EINVAL, "BPF_JMP/JMP32 uses reserved fields")
	}
	if srcX {
		if _, err := v.regArg(st, in.Src()); err != nil {
			return 0, err
		}
	}
	if _, err := v.regArg(st, in.Dst()); err != nil {
		return 0, err
	}
	target, next := jumpTarget(in, pc), pc+1
	dst := st.cur().regs[in.Dst()]
	src := constReg(uint64(int64(in.Imm)))
	if srcX {
		src = st.cur().regs[in.Src()]
	}
	switch branchTaken(&dst, &src, op, jmp32) {
	case branchAlways:
		return target, nil
	case branchNever:
		return next, nil
	}
	other := st.clone()
	okTaken := v.learn(other, in, op, jmp32, true)
	okFall := v.learn(st, in, op, jmp32, false)
	switch {
	case okTaken && okFall:
		v.branch(other, target)
		return next, nil
	case okTaken:
		return target, nil
	case okFall:
		return next, nil
	}
	return next, nil // both refinements empty: cannot happen on a sound state; keep going
}

// branchTaken decides a comparison from what is known of its operands.
func branchTaken(a, b *reg, op uint8, jmp32 bool) int {
	if a.isPointer() || b.isPointer() {
		p, s := a, b
		if b.isPointer() {
			p, s = b, a
		}
		if p.isPointer() && !p.maybeNull() && s.isConstZero() && !jmp32 {
			switch op {
			case isa.JmpJEQ:
				return branchNever
			case isa.JmpJNE:
				return branchAlways
			}
		}
		return branchUnknown
	}
	w := uint(64)
	if jmp32 {
		w = 32
	}
	x, y := view(&a.s, w), view(&b.s, w)
	return compareRanges(x, y, op)
}

func compareRanges(x, y rng, op uint8) int {
	decide := func(always, never bool) int {
		switch {
		case always:
			return branchAlways
		case never:
			return branchNever
		}
		return branchUnknown
	}
	switch op {
	case isa.JmpJEQ, isa.JmpJNE:
		eq := x.t.isConst() && y.t.isConst() && x.t.value == y.t.value
		ne := x.umin > y.umax || x.umax < y.umin || x.smin > y.smax || x.smax < y.smin ||
			(x.t.value^y.t.value)&^(x.t.mask|y.t.mask) != 0
		if op == isa.JmpJEQ {
			return decide(eq, ne)
		}
		return decide(ne, eq)
	case isa.JmpJSET:
		return decide(x.t.value&y.t.value != 0, (x.t.value|x.t.mask)&(y.t.value|y.t.mask) == 0)
	case isa.JmpJGT:
		return decide(x.umin > y.umax, x.umax <= y.umin)
	case isa.JmpJGE:
		return decide(x.umin >= y.umax, x.umax < y.umin)
	case isa.JmpJLT:
		return decide(x.umax < y.umin, x.umin >= y.umax)
	case isa.JmpJLE:
		return decide(x.umax <= y.umin, x.umin > y.umax)
	case isa.JmpJSGT:
		return decide(x.smin > y.smax, x.smax <= y.smin)
	case isa.JmpJSGE:
		return decide(x.smin >= y.smax, x.smax < y.smin)
	case isa.JmpJSLT:
		return decide(x.smax < y.smin, x.smin >= y.smax)
	case isa.JmpJSLE:
		return decide(x.smax <= y.smin, x.smin > y.smax)
	}
	return branchUnknown
}

// learn applies to st what the comparison's outcome (taken or not) teaches. It reports false
// when the outcome is impossible.
func (v *verifier) learn(st *state, in isa.Instruction, op uint8, jmp32, taken bool) bool {
	regs := &st.cur().regs
	a := &regs[in.Dst()]
	var b *reg
	imm := constReg(uint64(int64(in.Imm)))
	if isa.Source(in.Op) == isa.SrcX {
		b = &regs[in.Src()]
	} else {
		b = &imm
	}
	if !taken {
		if op == isa.JmpJSET {
			return v.learnJSET(st, a, b, jmp32, false)
		}
		op = negate(op)
	} else if op == isa.JmpJSET {
		return v.learnJSET(st, a, b, jmp32, true)
	}
	// NULL checks of maybe-NULL pointers.
	if !jmp32 && (op == isa.JmpJEQ || op == isa.JmpJNE) {
		if a.maybeNull() && b.isConstZero() {
			markNull(st, a.id, op == isa.JmpJEQ)
			return true
		}
		if b.maybeNull() && a.isConstZero() {
			markNull(st, b.id, op == isa.JmpJEQ)
			return true
		}
	}
	if !a.isScalar() || !b.isScalar() {
		return true
	}
	w := uint(64)
	if jmp32 {
		w = 32
	}
	x, y := view(&a.s, w), view(&b.s, w)
	if !refine(&x, &y, op) {
		return false
	}
	na, nb := a.s, b.s
	writeBack(&na, x)
	writeBack(&nb, y)
	if !na.feasible() || !nb.feasible() {
		return false
	}
	setScalar(st, a, na)
	if b != &imm {
		setScalar(st, b, nb)
	}
	return true
}

// learnJSET applies `if a & b` (taken) or its negation when b is a known constant.
func (v *verifier) learnJSET(st *state, a, b *reg, jmp32, taken bool) bool {
	if !a.isScalar() || !b.isScalar() || !b.s.isConst() {
		return true
	}
	c := b.s.value()
	if jmp32 {
		c = uint64(uint32(c))
	}
	na := a.s
	if taken {
		if c&(c-1) != 0 || c == 0 {
			return true
		}
		na.t = na.t.or(tnumConst(c))
	} else {
		na.t = na.t.and(tnumConst(^c))
	}
	na.sync()
	if !na.feasible() {
		return false
	}
	setScalar(st, a, na)
	return true
}

// refine narrows x and y so that `x op y` holds; false when it cannot.
func refine(x, y *rng, op uint8) bool {
	switch op {
	case isa.JmpJEQ:
		x.umin, x.umax = max(x.umin, y.umin), min(x.umax, y.umax)
		x.smin, x.smax = max(x.smin, y.smin), min(x.smax, y.smax)
		x.t = x.t.intersect(y.t)
		*y = *x
	case isa.JmpJNE:
		if y.t.isConst() {
			excludeConst(x, y.t.value)
		} else if x.t.isConst() {
			excludeConst(y, x.t.value)
		}
	case isa.JmpJGT:
		if y.umin == x.maxU() || x.umax == 0 {
			return false
		}
		x.umin = max(x.umin, y.umin+1)
		y.umax = min(y.umax, x.umax-1)
	case isa.JmpJGE:
		x.umin = max(x.umin, y.umin)
		y.umax = min(y.umax, x.umax)
	case isa.JmpJLT:
		return refine(y, x, isa.JmpJGT)
	case isa.JmpJLE:
		return refine(y, x, isa.JmpJGE)
	case isa.JmpJSGT:
		if y.smin == x.maxS() || x.smax == x.minS() {
			return false
		}
		x.smin = max(x.smin, y.smin+1)
		y.smax = min(y.smax, x.smax-1)
	case isa.JmpJSGE:
		x.smin = max(x.smin, y.smin)
		y.smax = min(y.smax, x.smax)
	case isa.JmpJSLT:
		return refine(y, x, isa.JmpJSGT)
	case isa.JmpJSLE:
		return refine(y, x, isa.JmpJSGE)
	}
	return x.umin <= x.umax && x.smin <= x.smax && y.umin <= y.umax && y.smin <= y.smax
}

// excludeConst removes c from a range when it is one of its ends.
func excludeConst(x *rng, c uint64) {
	if x.umin == c && x.umin < x.umax {
		x.umin++
	} else if x.umax == c && x.umin < x.umax {
		x.umax--
	} else if x.umin == c && x.umax == c {
		x.umin, x.umax = 1, 0 // empty
	}
	sc := int64(c)
	if x.w == 32 {
		sc = int64(int32(uint32(c)))
	}
	if x.smin == sc && x.smin < x.smax {
		x.smin++
	} else if x.smax == sc && x.smin < x.smax {
		x.smax--
	}
}

// writeBack stores a refined view into its scalar.
func writeBack(s *scalar, r rng) {
	if r.w == 32 {
		s.u32min, s.u32max = max(s.u32min, uint32(r.umin)), min(s.u32max, uint32(r.umax))
		s.s32min, s.s32max = max(s.s32min, int32(r.smin)), min(s.s32max, int32(r.smax))
		if r.umin > r.umax || r.smin > r.smax {
			s.u32min, s.u32max = 1, 0
		}
		s.t = s.t.withSubreg(s.t.subreg().intersect(r.t))
	} else {
		s.umin, s.umax = max(s.umin, r.umin), min(s.umax, r.umax)
		s.smin, s.smax = max(s.smin, r.smin), min(s.smax, r.smax)
		s.t = s.t.intersect(r.t)
	}
	if s.feasible() {
		s.sync()
	}
}

// setScalar gives register r (in st) the scalar value s, and every register or spilled slot
// linked to it by id the same value.
func setScalar(st *state, r *reg, s scalar) {
	id := r.id
	r.s = s
	if id == 0 {
		return
	}
	for _, f := range st.frames {
		for i := range f.regs {
			if x := &f.regs[i]; x.kind == scalarValue && x.id == id {
				x.s = s
			}
		}
		for i := range f.stack {
			if sl := &f.stack[i]; sl.isSpill() && sl.spilled.kind == scalarValue && sl.spilled.id == id {
				sl.spilled.s = s
			}
		}
	}
}

// markNull settles a maybe-NULL pointer and its copies: NULL (a zero scalar) or not NULL.
func markNull(st *state, id uint32, isNull bool) {
	var refID uint32
	mark := func(x *reg) {
		if !x.maybeNull() || x.id != id {
			return
		}
		if isNull {
			refID = x.refID
			*x = constReg(0)
			return
		}
		if x.kind == ptrToMapValueOrNull {
			x.kind = ptrToMapValue
		} else {
			x.kind = ptrToMem
		}
	}
	for _, f := range st.frames {
		for i := range f.regs {
			mark(&f.regs[i])
		}
		for i := range f.stack {
			if sl := &f.stack[i]; sl.isSpill() {
				mark(&sl.spilled)
			}
		}
	}
	if isNull && refID != 0 {
		st.release(refID)
	}
}

// release drops reference id from the state.
func (s *state) release(id uint32) bool {
	for i, r := range s.refs {
		if r.id == id {
			s.refs = append(s.refs[:i], s.refs[i+1:]...)
			return true
		}
	}
	return false
}
