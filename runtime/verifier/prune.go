package verifier

import "syscall"

// visit handles a prune point: a path whose state a kept state subsumes is cut; a loop followed
// for loopUnroll iterations (loopUnrollLate once the program proved large) is widened; too many states at one point are joined. Otherwise the
// state is kept for later paths.
func (v *verifier) visit(st *state, pc int) (bool, error) {
	iterations := 0
	for _, s := range v.states[pc] {
		if s.branches > 0 {
			iterations++
		}
	}
	unroll := loopUnroll
	if v.processed > widenAfterInsns {
		unroll = loopUnrollLate
	}
	kept := v.states[pc]
	if len(kept) > maxKeptPerInsn {
		kept = kept[len(kept)-maxKeptPerInsn:]
	}
	var ancestor, complete *stored
	recent := 0
	for _, s := range kept {
		if s.branches == 0 {
			complete = s
			if subsumes(s.st, st) {
				return true, nil
			}
			continue
		}
		// A kept state with live descendants is an ancestor of this path: we are in a loop.
		recent++
		ancestor = s
		if subsumes(s.st, st) {
			if !s.widened && concreteLoop(s.st, st) {
				return false, refuse(syscall.EINVAL, "infinite loop detected at insn %d", pc)
			}
			return true, nil
		}
	}
	widened := false
	switch {
	case ancestor != nil && iterations >= unroll:
		widened = merge(ancestor.st, st, true)
	case complete != nil && len(kept)-recent >= maxStatesPerInsn:
		widened = merge(complete.st, st, false)
	}
	if len(v.states[pc]) >= maxStoredPerInsn && !widened {
		return false, nil // a widened state is always kept: the loop converges on it
	}
	s := &stored{st: st.clone(), pc: pc, parent: st.parent, branches: 1, widened: widened}
	s.st.parent = nil
	st.parent = s
	v.states[pc] = append(v.states[pc], s)
	v.totalStates++
	v.peakStates = max(v.peakStates, v.totalStates)
	v.maxPerInsn = max(v.maxPerInsn, len(v.states[pc]))
	return false, nil
}

// concreteLoop reports whether a loop's state came back identical with every number known:
// the loop cannot end.
func concreteLoop(old, cur *state) bool {
	if !subsumes(cur, old) {
		return false
	}
	for _, f := range cur.frames {
		for i := range f.regs {
			r := &f.regs[i]
			if r.kind == scalarValue && !r.s.isConst() {
				return false
			}
			if r.isPointer() && !r.s.isConst() {
				return false
			}
		}
		for i := range f.stack {
			for _, t := range f.stack[i].types {
				if t == stMisc {
					return false
				}
			}
			sl := &f.stack[i]
			if sl.isSpill() && sl.spilled.kind == scalarValue && !sl.spilled.s.isConst() {
				return false
			}
		}
	}
	return true
}

// idMap checks that ids of one state correspond one to one with those of another.
type idMap map[uint32]uint32

func (m idMap) match(old, cur uint32) bool {
	if old == 0 {
		return true
	}
	if cur == 0 {
		return false
	}
	if c, ok := m[old]; ok {
		return c == cur
	}
	m[old] = cur
	return true
}

// subsumes reports whether every concrete state that cur describes is described by old, so
// that old's successful exploration covers cur.
func subsumes(old, cur *state) bool {
	if len(old.frames) != len(cur.frames) || len(old.refs) != len(cur.refs) {
		return false
	}
	ids := idMap{}
	for i := range old.refs {
		if !ids.match(old.refs[i].id, cur.refs[i].id) {
			return false
		}
	}
	for k, of := range old.frames {
		cf := cur.frames[k]
		if of.callsite != cf.callsite {
			return false
		}
		for i := range of.regs {
			if !regSafe(&of.regs[i], &cf.regs[i], ids) {
				return false
			}
		}
		for i := range of.stack {
			var cs *slot
			if i < len(cf.stack) {
				cs = &cf.stack[i]
			}
			if !slotSafe(&of.stack[i], cs, ids) {
				return false
			}
		}
	}
	return true
}

// regSafe reports whether register state cur is covered by old.
func regSafe(old, cur *reg, ids idMap) bool {
	if old.kind == notInit {
		return true
	}
	if cur.kind != old.kind {
		return false
	}
	if old.kind == scalarValue {
		return old.s.contains(&cur.s) && ids.match(old.id, cur.id)
	}
	if old.mapIdx != cur.mapIdx || old.frame != cur.frame || old.ringbuf != cur.ringbuf ||
		old.memSize != cur.memSize || old.sub != cur.sub {
		return false
	}
	if old.off == cur.off {
		if !old.s.contains(&cur.s) {
			return false
		}
	} else if o, c := old.total(), cur.total(); !o.contains(&c) {
		return false
	}
	return ids.match(old.id, cur.id) && ids.match(old.refID, cur.refID)
}

// slotSafe reports whether stack slot cur (nil: never written) is covered by old.
func slotSafe(old, cur *slot, ids idMap) bool {
	if old.isSpill() {
		if cur == nil || !cur.isSpill() {
			// A spilled unknown scalar is as good as unknown bytes.
			return old.spilled.kind == scalarValue && old.spilled.s.contains(&unknownScalarValue) &&
				old.spilled.id == 0 && cur != nil && allMiscOrZero(cur)
		}
		return old.size == cur.size && regSafe(&old.spilled, &cur.spilled, ids)
	}
	for b, t := range old.types {
		ct := stInvalid
		if cur != nil {
			ct = cur.types[b]
		}
		switch t {
		case stInvalid, stMisc:
			if ct == stSpill && cur.spilled.kind != scalarValue {
				return false
			}
		case stZero:
			if ct == stZero {
				continue
			}
			if ct != stSpill || !cur.spilled.isConstZero() {
				return false
			}
		}
	}
	return true
}

var unknownScalarValue = unknownScalar()

func allMiscOrZero(s *slot) bool {
	for _, t := range s.types {
		if t != stMisc && t != stZero {
			return false
		}
	}
	return true
}

// merge makes cur describe old's states too (joining bounds, or widening them when widen is set),
// so that exploring cur covers both. It gives up, leaving cur as it was, when the states have
// different shapes (frames, references). It reports whether cur changed.
func merge(old, cur *state, widenBounds bool) bool {
	if len(old.frames) != len(cur.frames) || len(old.refs) != len(cur.refs) {
		return false
	}
	for k, of := range old.frames {
		if of.callsite != cur.frames[k].callsite {
			return false
		}
	}
	for k, of := range old.frames {
		cf := cur.frames[k]
		for i := range of.regs {
			mergeReg(&of.regs[i], &cf.regs[i], widenBounds)
		}
		for i := range cf.stack {
			var os *slot
			if i < len(of.stack) {
				os = &of.stack[i]
			}
			mergeSlot(os, &cf.stack[i], widenBounds)
		}
	}
	return true
}

func combine(old, cur scalar, widenBounds bool) scalar {
	if widenBounds {
		return widen(old, cur)
	}
	return join(old, cur)
}

// mergeReg makes cur cover old. A register that holds different kinds of value becomes an
// unknown scalar, which is safe: a number can never be used as a pointer.
func mergeReg(old, cur *reg, widenBounds bool) {
	if old.kind == notInit || cur.kind == notInit {
		*cur = reg{}
		return
	}
	same := old.kind == cur.kind && old.mapIdx == cur.mapIdx && old.frame == cur.frame &&
		old.ringbuf == cur.ringbuf && old.memSize == cur.memSize && old.sub == cur.sub
	if !same {
		*cur = unknownReg()
		cur.imprecise = true
		return
	}
	if old.kind == scalarValue {
		if !old.s.contains(&cur.s) || !cur.s.contains(&old.s) {
			cur.s = combine(old.s, cur.s, widenBounds)
			cur.imprecise = true
			cur.id = 0
		}
		return
	}
	if old.off != cur.off || !old.s.contains(&cur.s) || !cur.s.contains(&old.s) {
		o, c := old.s, cur.s
		if old.off != cur.off {
			ko, kc := constScalar(uint64(old.off)), constScalar(uint64(cur.off))
			o = scalarALU(0x00, false, 0, &o, &ko)
			c = scalarALU(0x00, false, 0, &c, &kc)
			cur.off = 0
		}
		cur.s = combine(o, c, widenBounds)
		cur.imprecise = true
	}
}

// mergeSlot makes stack slot cur cover old (nil: never written in old).
func mergeSlot(old, cur *slot, widenBounds bool) {
	if old == nil {
		*cur = slot{}
		return
	}
	if old.isSpill() && cur.isSpill() && old.size == cur.size {
		mergeReg(&old.spilled, &cur.spilled, widenBounds)
		if cur.spilled.kind == notInit {
			*cur = slot{}
		}
		return
	}
	if cur.isSpill() || old.isSpill() {
		for b := range cur.types {
			cur.types[b] = stMisc
		}
		cur.spilled, cur.size = reg{}, 0
		return
	}
	for b := range cur.types {
		switch {
		case old.types[b] == cur.types[b]:
		case old.types[b] == stInvalid || cur.types[b] == stInvalid:
			cur.types[b] = stInvalid
		default:
			cur.types[b] = stMisc
		}
	}
}
