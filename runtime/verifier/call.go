package verifier

import (
	"fmt"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Types of pointer a helper's memory argument may take, as the kernel names them.
const memTypes = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"

// maxVarSize bounds a helper's memory size argument (BPF_MAX_VAR_SIZ).
const maxVarSize = 1 << 29

// maxErrno is the largest errno a helper may return as -errno (MAX_ERRNO).
const maxErrno = 4095

// checkCall checks a call: of a helper, of a subprogram, or (program.Raw) of the helper whose
// number a register holds.
func (v *verifier) checkCall(st *state, pc int, in isa.Instruction) (int, error) {
	if in.Op == isa.OpCallX {
		r, err := v.regArg(st, in.Dst())
		if err != nil {
			return 0, err
		}
		if !r.isScalar() || !r.s.isConst() {
			return 0, refuse(syscall.EINVAL, "callx R%d: the helper number must be a known constant", in.Dst())
		}
		return pc + 1, v.checkHelper(st, pc, helper.ID(int32(r.s.value())))
	}
	if (in.Src() != isa.PseudoCallLocal && in.Off != 0) || in.Src() > isa.PseudoKfuncCall || in.Dst() != 0 {
		return 0, refuse(syscall.EINVAL, "BPF_CALL uses reserved fields")
	}
	if in.Src() == isa.PseudoCallLocal {
		return v.checkLocalCall(st, pc, in)
	}
	return pc + 1, v.checkHelper(st, pc, helper.ID(in.Imm))
}

// checkLocalCall enters a subprogram in a new frame.
func (v *verifier) checkLocalCall(st *state, pc int, in isa.Instruction) (int, error) {
	if len(st.frames) >= isa.MaxCallDepth {
		return 0, refuse(syscall.E2BIG, "the call stack of %d frames is too deep", len(st.frames)+1)
	}
	target := pc + int(in.Imm) + 1
	caller := st.cur()
	callee := &frameState{callsite: pc, sub: v.subOf[target]}
	for r := isa.R1; r <= isa.R5; r++ {
		callee.regs[r] = caller.regs[r]
		caller.regs[r] = reg{}
	}
	callee.regs[isa.R10] = reg{kind: ptrToStack, frame: uint8(len(st.frames))}
	st.frames = append(st.frames, callee)
	return target, nil
}

// checkExit checks an exit: the return of a subprogram to its caller, or the program's end.
func (v *verifier) checkExit(st *state, pc int, in isa.Instruction) (int, error) {
	if in.Imm != 0 || in.Regs != 0 {
		return 0, refuse(syscall.EINVAL, "BPF_EXIT uses reserved fields")
	}
	r0, err := v.regArg(st, isa.R0)
	if err != nil {
		return 0, err
	}
	depth := len(st.frames)
	if depth > 1 {
		if r0.kind == ptrToStack && int(r0.frame) == depth-1 {
			return 0, refuse(syscall.EINVAL, "cannot return stack pointer to the caller frame")
		}
		ret := *r0
		callee := st.cur()
		st.frames = st.frames[:depth-1]
		forgetFrame(st, depth-1)
		st.cur().regs[isa.R0] = ret
		return callee.callsite + 1, nil
	}
	if len(st.refs) > 0 {
		e := refuse(syscall.EINVAL, "BPF_EXIT instruction in main prog would lead to reference leak")
		e.Before = []string{fmt.Sprintf("Unreleased reference id=%d alloc_insn=%d", st.refs[0].id, st.refs[0].insn)}
		return 0, e
	}
	if lo, hi, ok := returnRange(v.opts.Type); ok {
		if r0.kind != scalarValue {
			return 0, refuse(syscall.EINVAL, "At program exit the register R0 is not a known value (%s)", r0.typeName())
		}
		if r0.s.smin < lo || r0.s.smax > hi {
			what := "unknown scalar value"
			if r0.s.t != tnumUnknown {
				what = "value " + tnumString(r0.s.t)
			}
			return 0, refuse(syscall.EINVAL, "At program exit the register R0 has %s should have been in [%d, %d]", what, lo, hi)
		}
	}
	return -1, nil
}

// forgetFrame turns pointers into a popped frame's stack into numbers.
func forgetFrame(st *state, frame int) {
	fix := func(r *reg) {
		if r.kind == ptrToStack && int(r.frame) >= frame {
			*r = unknownReg()
		}
	}
	for _, f := range st.frames {
		for i := range f.regs {
			fix(&f.regs[i])
		}
		for i := range f.stack {
			if f.stack[i].isSpill() {
				fix(&f.stack[i].spilled)
			}
		}
	}
}

// callMeta is what the argument checks of one helper call learn.
type callMeta struct {
	mapIdx   int32 // the map argument, -1 when none
	memReg   uint8 // the memory argument whose size comes next
	memKind  helper.ArgKind
	sizeMax  int64 // the largest size argument
	allocLen int64 // ringbuf_reserve's size
	release  uint32
	// constKey is the map key when it is a known number on the stack.
	constKey   uint64
	isConstKey bool
}

// checkHelper checks a helper call's arguments against its prototype and applies its effects.
func (v *verifier) checkHelper(st *state, pc int, id helper.ID) error {
	name := helper.Name(id)
	if name == "" {
		return refuse(syscall.EINVAL, "invalid func unknown#%d", id)
	}
	impl, ok := v.opts.Helpers.Get(id)
	if !ok {
		return refuse(syscall.EINVAL, "program of this type cannot use helper %s#%d", name, id)
	}
	p := impl.Proto
	v.called[int32(id)] = true
	if p.GPLOnly && !v.opts.GPL {
		return refuse(syscall.EINVAL, "cannot call GPL-restricted function from non-GPL compatible program")
	}
	if p.Denied != "" {
		return refuse(syscall.EINVAL, "%s", p.Denied)
	}
	if p.Sleepable && !v.opts.Sleepable && v.opts.Type != programTypeSyscall {
		return refuse(syscall.EINVAL, "helper call might sleep in a non-sleepable prog")
	}
	meta := callMeta{mapIdx: -1}
	for i, kind := range p.Args {
		if kind == helper.ArgNone {
			break
		}
		if kind == helper.ArgOpaque {
			r, err := v.regArg(st, uint8(i+1))
			if err != nil {
				return err
			}
			return refuse(syscall.EACCES, "R%d type=%s expected=%s", i+1, r.typeName(), p.Expected[i])
		}
		if err := v.checkArg(st, pc, uint8(i+1), kind, &meta); err != nil {
			return err
		}
	}
	if meta.mapIdx >= 0 {
		if err := mapFuncCompatible(v.prog.Maps[meta.mapIdx].Type, id, name); err != nil {
			return err
		}
	}
	if meta.release != 0 {
		if !st.release(meta.release) {
			return refuse(syscall.EINVAL, "reference has not been acquired before")
		}
		invalidateRef(st, meta.release)
	}
	regs := &st.cur().regs
	for r := isa.R1; r <= isa.R5; r++ {
		regs[r] = reg{}
	}
	switch p.Ret {
	case helper.RetVoid:
		regs[isa.R0] = reg{}
	case helper.RetPtrToBTF:
		regs[isa.R0] = reg{kind: ptrToBTF}
	case helper.RetMapValueOrNull:
		regs[isa.R0] = reg{kind: ptrToMapValueOrNull, mapIdx: meta.mapIdx, id: v.newID()}
		if m := &v.prog.Maps[meta.mapIdx]; id == helper.MapLookupElem && meta.isConstKey &&
			(m.Type == mapTypeArray || m.Type == mapTypePercpuArray) && meta.constKey < uint64(m.MaxEntries) {
			regs[isa.R0] = reg{kind: ptrToMapValue, mapIdx: meta.mapIdx}
		}
	case helper.RetAllocMemOrNull:
		ref := v.newID()
		st.refs = append(st.refs, refState{id: ref, insn: pc})
		regs[isa.R0] = reg{kind: ptrToMemOrNull, ringbuf: true, memSize: meta.allocLen, id: v.newID(), refID: ref}
	default:
		r0 := unknownReg()
		switch id {
		case helper.GetSmpProcessorID:
			if n := v.opts.PossibleCPUs; n > 0 {
				r0 = scalarReg(rangeScalar(0, uint64(n-1)))
			}
		case helper.ProbeReadStr, helper.ProbeReadUserStr, helper.ProbeReadKernelStr, helper.GetStack:
			r0.s.smax, r0.s.s32max = meta.sizeMax, int32(min(meta.sizeMax, 1<<31-1))
			r0.s.smin, r0.s.s32min = -maxErrno, -maxErrno
			r0.s.sync()
		}
		regs[isa.R0] = r0
	}
	return nil
}

// checkArg checks argument register regno against its kind.
func (v *verifier) checkArg(st *state, pc int, regno uint8, kind helper.ArgKind, meta *callMeta) error {
	r, err := v.regArg(st, regno)
	if err != nil {
		return err
	}
	mismatch := func(expected string) error {
		return refuse(syscall.EACCES, "R%d type=%s expected=%s", regno, r.typeName(), expected)
	}
	switch kind {
	case helper.ArgAnything:
		return nil
	case helper.ArgConstMapPtr:
		if r.kind != constPtrToMap {
			return mismatch("map_ptr")
		}
		meta.mapIdx = r.mapIdx
		return nil
	case helper.ArgPtrToCtx:
		if r.kind != ptrToCtx {
			return mismatch("ctx")
		}
		if r.off != 0 || !r.s.isConst() || r.s.value() != 0 {
			return refuse(syscall.EACCES, "dereference of modified ctx ptr R%d off=%d disallowed", regno, r.off)
		}
		return nil
	case helper.ArgPtrToMapKey, helper.ArgPtrToMapValue, helper.ArgPtrToUninitMapValue:
		if !isMemType(r) {
			return mismatch(memTypes)
		}
		if meta.mapIdx < 0 {
			return refuse(syscall.EACCES, "invalid map_ptr to access map->key")
		}
		m := &v.prog.Maps[meta.mapIdx]
		size := int64(m.KeySize)
		if kind != helper.ArgPtrToMapKey {
			size = int64(m.ValueSize)
		} else if r.kind == ptrToStack && r.s.isConst() && size <= 8 {
			o := r.off + int64(r.s.value())
			if o >= -isa.StackSize && o+size <= 0 {
				meta.constKey, meta.isConstKey = constKey(st.frames[r.frame], o, int(size))
			}
		}
		return v.checkHelperMem(st, pc, regno, r, size, kind == helper.ArgPtrToUninitMapValue)
	case helper.ArgPtrToMem, helper.ArgPtrToUninitMem, helper.ArgPtrToMemOrNull, helper.ArgPtrToUninitMemOrNull:
		orNull := kind == helper.ArgPtrToMemOrNull || kind == helper.ArgPtrToUninitMemOrNull
		if !(orNull && r.isConstZero()) && !isMemType(r) {
			return mismatch(memTypes)
		}
		meta.memReg, meta.memKind = regno, kind
		return nil
	case helper.ArgConstSize, helper.ArgConstSizeOrZero:
		return v.checkSizeArg(st, pc, regno, r, kind == helper.ArgConstSizeOrZero, meta)
	case helper.ArgConstAllocSizeOrZero:
		if !r.isScalar() || !r.s.isConst() {
			return refuse(syscall.EACCES, "R%d is not a known constant'", regno)
		}
		meta.allocLen = int64(r.s.value())
		return nil
	case helper.ArgPtrToAllocMem:
		if r.kind != ptrToMem || !r.ringbuf {
			return mismatch("ringbuf_mem")
		}
		if r.off != 0 || !r.s.isConst() || r.s.value() != 0 {
			return refuse(syscall.EACCES, "R%d must have zero offset when passed to release func", regno)
		}
		meta.release = r.refID
		return nil
	case helper.ArgPtrToLong:
		if r.kind != ptrToStack && r.kind != ptrToMapValue {
			return mismatch("fp, pkt, pkt_meta, map_key, map_value")
		}
		return v.checkHelperMem(st, pc, regno, r, 8, true)
	case helper.ArgPtrToConstStr:
		if r.kind != ptrToMapValue {
			return mismatch("map_value")
		}
		m := &v.prog.Maps[r.mapIdx]
		if m.Flags&mapFlagRdonlyProg == 0 || m.Frozen == nil {
			return refuse(syscall.EACCES, "R%d does not point to a readonly map'", regno)
		}
		if !r.s.isConst() {
			return refuse(syscall.EACCES, "R%d is not a constant address'", regno)
		}
		o := r.off + int64(r.s.value())
		for i := o; i >= 0 && i < int64(len(m.Frozen)); i++ {
			if m.Frozen[i] == 0 {
				return nil
			}
		}
		return refuse(syscall.EACCES, "string is not zero-terminated")
	case helper.ArgPtrToStackOrNull:
		if r.isConstZero() {
			return nil
		}
		if r.kind != ptrToStack {
			return mismatch("fp")
		}
		return nil
	case helper.ArgPtrToFunc:
		return refuse(syscall.EINVAL, "R%d: callback functions are not supported", regno)
	}
	return refuse(syscall.EINVAL, "R%d: unsupported argument kind %d", regno, kind)
}

// isMemType reports whether r is a pointer to memory a helper may read or write.
func isMemType(r *reg) bool {
	switch r.kind {
	case ptrToStack, ptrToMapValue, ptrToMem:
		return true
	}
	return false
}

// checkSizeArg checks the size of the preceding memory argument, then that memory.
func (v *verifier) checkSizeArg(st *state, pc int, regno uint8, r *reg, zeroOK bool, meta *callMeta) error {
	if !r.isScalar() {
		return refuse(syscall.EACCES, "R%d type=%s expected=scalar", regno, r.typeName())
	}
	if r.s.smin < 0 {
		return refuse(syscall.EACCES, "R%d min value is negative, either use unsigned or 'var &= const'", regno)
	}
	if r.s.umin == 0 && !zeroOK {
		return refuse(syscall.EACCES, "R%d invalid zero-sized read: u64=[%d,%d]", regno, r.s.umin, r.s.umax)
	}
	if r.s.umax >= maxVarSize {
		return refuse(syscall.EACCES, "R%d unbounded memory access, use 'var &= const' or 'if (var < const)'", regno)
	}
	meta.sizeMax = int64(r.s.umax)
	mem := &st.cur().regs[meta.memReg]
	if mem.isConstZero() {
		if r.s.umax != 0 {
			return refuse(syscall.EACCES, "R%d type=scalar expected=%s", meta.memReg, memTypes)
		}
		return nil
	}
	write := meta.memKind == helper.ArgPtrToUninitMem || meta.memKind == helper.ArgPtrToUninitMemOrNull
	return v.checkHelperMem(st, pc, meta.memReg, mem, int64(r.s.umax), write)
}

// checkHelperMem checks that a helper may access size bytes at pointer register r, and when the
// helper writes stack memory, forgets what that memory held.
func (v *verifier) checkHelperMem(st *state, pc int, regno uint8, r *reg, size int64, write bool) error {
	if size == 0 {
		return nil
	}
	sp := accessSpan(r, 0, int(size))
	var lo, hi int64
	var what string
	switch r.kind {
	case ptrToStack:
		lo, hi, what = -isa.StackSize, 0, "stack"
	case ptrToMapValue:
		m := &v.prog.Maps[r.mapIdx]
		if write && m.Flags&mapFlagRdonlyProg != 0 {
			return refuse(syscall.EACCES, "write into map forbidden, value_size=%d off=%d size=%d", m.ValueSize, sp.lo, size)
		}
		lo, hi, what = 0, int64(m.ValueSize), "map value"
	case ptrToMem:
		lo, hi, what = 0, r.memSize, "memory"
	}
	if !sp.bounded || sp.lo < lo || sp.hi > hi {
		switch r.kind {
		case ptrToStack:
			kind := "read from"
			if write {
				kind = "write to"
			}
			if sp.konst {
				// the kernel's check_stack_access_within_bounds: a start inside the stack with
				// an end past its top is EINVAL, a start outside it EACCES
				errno := syscall.EACCES
				if sp.lo >= -isa.StackSize && sp.lo < 0 && sp.hi > 0 {
					errno = syscall.EINVAL
				}
				return refuse(errno, "invalid %s stack R%d off=%d size=%d", kind, regno, sp.lo, size)
			}
			return refuse(syscall.EACCES, "invalid variable-offset %s stack R%d var_off=%s off=%d size=%d", kind, regno, tnumString(r.s.t), r.off, size)
		case ptrToMapValue:
			return refuse(syscall.EACCES, "invalid access to map value, value_size=%d off=%d size=%d", hi, sp.lo, size)
		}
		return refuse(syscall.EACCES, "invalid access to %s, mem_size=%d off=%d size=%d", what, hi, sp.lo, size)
	}
	if r.kind == ptrToStack {
		f := st.frames[r.frame]
		v.noteDepth(f.sub, -sp.lo)
		if v.raw && !write {
			if err := checkStackInit(f, access{regno: regno, size: int(size)}, r, sp.lo, sp.hi); err != nil {
				return err
			}
		}
		if write {
			stackWrite(f, sp.lo, sp.hi, false, int(size), nil)
		}
	}
	return nil
}

// invalidateRef turns every pointer that holds a released reference into a number.
func invalidateRef(st *state, id uint32) {
	fix := func(r *reg) {
		if r.refID == id {
			*r = unknownReg()
		}
	}
	for _, f := range st.frames {
		for i := range f.regs {
			fix(&f.regs[i])
		}
		for i := range f.stack {
			if f.stack[i].isSpill() {
				fix(&f.stack[i].spilled)
			}
		}
	}
}

// mapFuncCompatible is the kernel's check_map_func_compatibility for the maps the runtime knows.
func mapFuncCompatible(mapType uint32, id helper.ID, name string) error {
	bad := func() error {
		return refuse(syscall.EINVAL, "cannot pass map_type %d into func %s#%d", mapType, name, id)
	}
	switch mapType {
	case mapTypeProgArray:
		if id != helper.TailCall {
			return bad()
		}
	case mapTypePerfEventArray:
		if id != helper.PerfEventRead && id != helper.PerfEventOutput && id != 55 && id != 68 && id != 121 {
			return bad()
		}
	case mapTypeRingbuf:
		if id != helper.RingbufOutput && id != helper.RingbufReserve && id != helper.RingbufQuery && id != 198 {
			return bad()
		}
	case mapTypeStackTrace:
		if id != helper.GetStackID {
			return bad()
		}
	}
	want := map[helper.ID]uint32{
		helper.TailCall: mapTypeProgArray, helper.PerfEventRead: mapTypePerfEventArray,
		helper.PerfEventOutput: mapTypePerfEventArray, helper.GetStackID: mapTypeStackTrace,
		helper.RingbufOutput: mapTypeRingbuf, helper.RingbufReserve: mapTypeRingbuf, helper.RingbufQuery: mapTypeRingbuf,
	}
	if t, ok := want[id]; ok && t != mapType {
		return bad()
	}
	return nil
}

// checkStackDepth is the kernel's check_max_stack_depth: the frames of the deepest call chain
// must fit the 512-byte stack together. program.Raw gives every frame its own 512 bytes.
func (v *verifier) checkStackDepth() error {
	if v.raw {
		return nil
	}
	funcs := v.prog.Funcs
	depth := make([]int, len(funcs))
	calls := make([]int, len(funcs))
	done := make([]bool, len(funcs))
	var walk func(k, n int) (int, int)
	walk = func(k, n int) (int, int) {
		if done[k] || n > isa.MaxCallDepth {
			return depth[k], calls[k]
		}
		frame := (max(v.maxDepths[k], 1) + 31) &^ 31
		best, bestCalls := 0, 0
		for i := funcs[k].Start; i < funcs[k].End; i++ {
			if in := v.prog.Insns[i]; isLocalCall(in) && v.seen[i] {
				d, c := walk(v.subOf[i+int(in.Imm)+1], n+1)
				if d > best {
					best, bestCalls = d, c
				}
			}
		}
		depth[k], calls[k], done[k] = frame+best, bestCalls+1, true
		return depth[k], calls[k]
	}
	if d, c := walk(0, 1); d > isa.StackSize {
		return refuse(syscall.EACCES, "combined stack size of %d calls is %d. Too large", c, d)
	}
	return nil
}
