package verifier

import (
	"fmt"
	"math"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// maxVarOff bounds the variable offsets the kernel lets pointers carry (BPF_MAX_VAR_OFF).
const maxVarOff = 1 << 29

// access describes one memory access for the checks.
type access struct {
	pc    int
	regno uint8  // register holding the pointer
	off   int64  // instruction offset
	size  int    // bytes
	write bool   // store (or the write half of an atomic)
	kind  string // " read from" / " write to" / " indirect access to", for stack messages
}

// span is the range of byte offsets, relative to a pointer's object, that an access may touch.
type span struct {
	lo, hi  int64 // first byte and one past the last byte, when bounded
	konst   bool  // the offset is known exactly
	bounded bool  // the variable part has a usable range
}

func accessSpan(r *reg, off int64, size int) span {
	base := r.off + off
	if r.s.isConst() {
		o := base + int64(r.s.value())
		return span{lo: o, hi: o + int64(size), konst: true, bounded: true}
	}
	if r.s.smin <= -maxVarOff || r.s.smax >= maxVarOff {
		return span{}
	}
	return span{lo: base + r.s.smin, hi: base + r.s.smax + int64(size), bounded: true}
}

// fitsIn decides whether a span lies within [lo, hi): proven, refused, or left to run time.
// Precise states of kernel program types are judged as the kernel judges them; spans that come
// from widening, and program.Raw spans that may fit, are checked at run time instead.
func (v *verifier) fitsIn(sp span, r *reg, lo, hi int64) (proven bool, refused bool) {
	if sp.bounded && sp.lo >= lo && sp.hi <= hi {
		return true, false
	}
	switch {
	case r.imprecise:
		return false, false
	case sp.konst:
		return false, true
	case v.raw:
		return false, sp.bounded && (sp.hi <= lo || sp.lo >= hi)
	}
	return false, true
}

// checkMem checks an access through pointer register r and returns, for reads, the value read.
// It marks the instruction for a run-time check when the access cannot be proven safe.
func (v *verifier) checkMem(st *state, a access, r *reg, stored *reg) (reg, error) {
	switch r.kind {
	case ptrToStack:
		return v.checkStack(st, a, r, stored)
	case ptrToCtx:
		return v.checkCtx(a, r)
	case ptrToMapValue:
		m := &v.prog.Maps[r.mapIdx]
		if a.write && m.Flags&mapFlagRdonlyProg != 0 {
			return reg{}, refuse(syscall.EACCES, "write into map forbidden, value_size=%d off=%d size=%d", m.ValueSize, r.off+a.off, a.size)
		}
		if !a.write && m.Flags&mapFlagWronlyProg != 0 {
			return reg{}, refuse(syscall.EACCES, "read from map forbidden, value_size=%d off=%d size=%d", m.ValueSize, r.off+a.off, a.size)
		}
		if err := v.checkRegion(a, r, int64(m.ValueSize), func(o int64) string {
			return fmt.Sprintf("invalid access to map value, value_size=%d off=%d size=%d", m.ValueSize, o, a.size)
		}); err != nil {
			return reg{}, err
		}
		if !a.write {
			if val, ok := v.constMapRead(m, r, a); ok {
				return val, nil
			}
		}
		return unknownReg(), nil
	case ptrToMem:
		if err := v.checkRegion(a, r, r.memSize, func(o int64) string {
			return fmt.Sprintf("invalid access to memory, mem_size=%d off=%d size=%d", r.memSize, o, a.size)
		}); err != nil {
			return reg{}, err
		}
		return unknownReg(), nil
	}
	return reg{}, refuse(syscall.EACCES, "R%d invalid mem access '%s'", a.regno, r.typeName())
}

// checkRegion checks an access to an object of limit bytes (map value, helper memory), with the
// kernel's check_mem_region_access messages when it refuses.
func (v *verifier) checkRegion(a access, r *reg, limit int64, what func(off int64) string) error {
	sp := accessSpan(r, a.off, a.size)
	proven, refused := v.fitsIn(sp, r, 0, limit)
	if proven {
		return nil
	}
	if !refused {
		v.prog.Checks[a.pc] = program.CheckBounds
		return nil
	}
	base, size := r.off+a.off, int64(a.size)
	if sp.konst {
		return refuse(syscall.EACCES, "%s\nR%d min value is outside of the allowed memory range", what(sp.lo), a.regno)
	}
	if r.s.smin < 0 && (r.s.smin == math.MinInt64 || base+r.s.smin < 0) {
		return refuse(syscall.EACCES, "R%d min value is negative, either use unsigned index or do a if (index >=0) check.", a.regno)
	}
	if lo := base + r.s.smin; lo+size > limit {
		return refuse(syscall.EACCES, "%s\nR%d min value is outside of the allowed memory range", what(lo), a.regno)
	}
	if r.s.umax >= maxVarOff {
		return refuse(syscall.EACCES, "R%d unbounded memory access, make sure to bounds check any such access", a.regno)
	}
	return refuse(syscall.EACCES, "%s\nR%d max value is outside of the allowed memory range", what(base+int64(r.s.umax)), a.regno)
}

// constMapRead returns the known value of a read from a frozen read-only map (global constants).
func (v *verifier) constMapRead(m *program.MapInfo, r *reg, a access) (reg, bool) {
	if m.Frozen == nil || !r.s.isConst() {
		return reg{}, false
	}
	o := r.off + a.off + int64(r.s.value())
	if o < 0 || o+int64(a.size) > int64(len(m.Frozen)) {
		return reg{}, false
	}
	var x uint64
	for i := a.size - 1; i >= 0; i-- {
		x = x<<8 | uint64(m.Frozen[o+int64(i)])
	}
	return constReg(x), true
}

// checkCtx checks an access to the program's context.
func (v *verifier) checkCtx(a access, r *reg) (reg, error) {
	if v.ctx.variable {
		if a.write && !v.ctx.writable {
			return reg{}, refuse(syscall.EACCES, "invalid bpf_context access off=%d size=%d", r.off+a.off, a.size)
		}
		err := v.checkRegion(a, r, int64(v.ctx.size), func(o int64) string {
			return fmt.Sprintf("invalid bpf_context access off=%d size=%d", o, a.size)
		})
		return unknownReg(), err
	}
	if !r.s.isConst() {
		return reg{}, refuse(syscall.EACCES, "variable ctx access var_off=%s disallowed", tnumString(r.s.t))
	}
	if r.off != 0 || r.s.value() != 0 {
		return reg{}, refuse(syscall.EACCES, "dereference of modified ctx ptr R%d off=%d disallowed", a.regno, r.off+int64(r.s.value()))
	}
	if !v.ctx.access(int(a.off), a.size, a.write) {
		return reg{}, refuse(syscall.EACCES, "invalid bpf_context access off=%d size=%d", a.off, a.size)
	}
	return unknownReg(), nil
}

// tnumString prints a tnum as the kernel's tnum_strn does.
func tnumString(t tnum) string {
	if t.isConst() {
		return fmt.Sprintf("%d", int64(t.value))
	}
	return fmt.Sprintf("(%#x; %#x)", t.value, t.mask)
}

// checkStack checks an access to a frame's stack and applies it to the abstract stack.
func (v *verifier) checkStack(st *state, a access, r *reg, stored *reg) (reg, error) {
	f := st.frames[r.frame]
	sp := accessSpan(r, a.off, a.size)
	if !v.raw {
		if err := checkStackAlign(r, a); err != nil {
			return reg{}, err
		}
	}
	proven, refused := v.fitsIn(sp, r, -isa.StackSize, 0)
	if refused {
		if sp.konst {
			errno := syscall.EACCES
			if sp.lo < 0 && sp.hi > 0 {
				errno = syscall.EINVAL
			}
			return reg{}, refuse(errno, "invalid%s stack R%d off=%d size=%d", a.kind, a.regno, r.off+a.off, a.size)
		}
		return reg{}, refuse(syscall.EACCES, "invalid variable-offset%s stack R%d var_off=%s off=%d size=%d",
			a.kind, a.regno, tnumString(r.s.t), r.off+a.off, a.size)
	}
	if !proven {
		v.prog.Checks[a.pc] = program.CheckBounds
	}
	lo, hi := sp.lo, sp.hi
	if !sp.bounded || lo < -isa.StackSize || hi > 0 {
		lo, hi = max(lo, -isa.StackSize), min(hi, 0)
		if !sp.bounded {
			lo, hi = -isa.StackSize, 0
		}
	}
	if lo < hi {
		v.noteDepth(f.sub, -lo)
	}
	if a.write {
		stackWrite(f, lo, hi, sp.konst, a.size, stored)
		return reg{}, nil
	}
	if v.raw && !r.imprecise {
		if err := checkStackInit(f, a, r, lo, hi); err != nil {
			return reg{}, err
		}
	}
	if !sp.konst {
		return unknownSized(a.size), nil
	}
	return stackRead(f, lo, a.size)
}

// checkStackInit refuses reads of stack bytes never written. Kernel program types run with the
// privileges the tools believe they have, which allow such reads; program.Raw does not (the
// kernel's rule for unprivileged programs) where the offset is known precisely. Where it comes
// from widening a loop, the bytes may well all be written (an array filled by a loop): the read
// is allowed, as for privileged programs; at worst it reads what the run's own stack held before.
func checkStackInit(f *frameState, a access, r *reg, lo, hi int64) error {
	for o := lo; o < hi; o++ {
		if t, _ := f.byteType(o); t == stInvalid {
			if r.s.isConst() {
				return refuse(syscall.EACCES, "invalid read from stack off %d+%d size %d", r.off+a.off+int64(r.s.value()), o-lo, a.size)
			}
			return refuse(syscall.EACCES, "invalid variable-offset read from stack R%d var_off=%s off=%d size=%d", a.regno, tnumString(r.s.t), r.off+a.off, a.size)
		}
	}
	return nil
}

// noteDepth records that subprogram sub uses depth bytes of its stack.
func (v *verifier) noteDepth(sub int, depth int64) {
	if int(depth) > v.maxDepths[sub] {
		v.maxDepths[sub] = int(depth)
	}
}

// checkStackAlign enforces the kernel's strict alignment of stack accesses.
func checkStackAlign(r *reg, a access) error {
	t := r.s.t.add(tnumConst(uint64(r.off + a.off)))
	if t.value&uint64(a.size-1) != 0 || t.mask&uint64(a.size-1) != 0 {
		return refuse(syscall.EACCES, "misaligned stack access off %s+%d+%d size %d", tnumString(r.s.t), r.off, a.off, a.size)
	}
	return nil
}

// checkAtomicAlign enforces the alignment the kernel's check_atomic demands of every atomic
// access, whatever the program type (program.Raw allows other accesses to be misaligned). An
// offset that comes from widening is left to the executors, which stop a misaligned atomic.
func checkAtomicAlign(r *reg, a access) error {
	if r.imprecise {
		return nil
	}
	t := r.s.t.add(tnumConst(uint64(r.off + a.off)))
	if t.value&uint64(a.size-1) == 0 && t.mask&uint64(a.size-1) == 0 {
		return nil
	}
	desc := ""
	switch r.kind {
	case ptrToStack:
		desc = "stack "
	case ptrToCtx:
		desc = "context "
	case ptrToMapValue:
		desc = "value "
	}
	return refuse(syscall.EACCES, "misaligned %saccess off %s+%d+%d size %d", desc, tnumString(r.s.t), r.off, a.off, a.size)
}

func unknownSized(size int) reg {
	if size >= 8 {
		return unknownReg()
	}
	return scalarReg(rangeScalar(0, uint64(1)<<(uint(size)*8)-1))
}

// stackWrite applies a store of size bytes somewhere in [lo, hi) (exactly at lo when exact).
// A register stored whole at a slot, or a number stored at a slot's start, is remembered as a
// spill, as the kernel's check_stack_write_fixed_off does for privileged programs.
func stackWrite(f *frameState, lo, hi int64, exact bool, size int, stored *reg) {
	if exact && lo%8 == 0 && stored != nil && (size == 8 || stored.isScalar()) {
		s := f.slotAt(lo)
		for b := range s.types {
			switch {
			case b < size:
				s.types[b] = stSpill
			case s.types[b] == stSpill:
				s.types[b] = stMisc
			}
		}
		s.spilled, s.size = *stored, uint8(size)
		return
	}
	t := stMisc
	if exact && stored != nil && stored.isConstZero() {
		t = stZero
	}
	for o := lo; o < hi; o++ {
		s := f.slotAt(o)
		if s.isSpill() {
			kt := stMisc
			if s.spilled.isConstZero() {
				kt = stZero
			}
			for b := range s.types {
				if s.types[b] == stSpill {
					s.types[b] = kt
				}
			}
			s.spilled, s.size = reg{}, 0
		}
		if exact {
			s.types[byteIndex(o)] = t
		} else {
			s.types[byteIndex(o)] = stMisc
		}
	}
}

// stackRead reads size bytes at the fixed offset lo.
func stackRead(f *frameState, lo int64, size int) (reg, error) {
	t0, s0 := f.byteType(lo)
	if t0 == stSpill {
		sp, idx := &s0.spilled, byteIndex(lo)
		if idx == 0 && size == int(s0.size) {
			return *sp, nil
		}
		if sp.kind != scalarValue {
			return reg{}, refuse(syscall.EACCES, "invalid size of register fill")
		}
		if idx+size <= int(s0.size) && sp.s.isConst() {
			x := sp.s.value() >> (uint(idx) * 8)
			if size < 8 {
				x &= uint64(1)<<(uint(size)*8) - 1
			}
			return constReg(x), nil
		}
		return unknownSized(size), nil
	}
	zero := true
	for o := lo; o < lo+int64(size); o++ {
		t, _ := f.byteType(o)
		if t != stZero {
			zero = false
		}
	}
	if zero {
		return constReg(0), nil
	}
	return unknownSized(size), nil
}

// constKey returns the map key of size bytes at stack offset lo when the kernel's
// get_constant_map_key knows it: zero bytes from lo to the end of its slot, or a number spilled
// at lo with exactly size bytes.
func constKey(f *frameState, lo int64, size int) (uint64, bool) {
	zero := 0
	for o := lo; o < (lo&^7)+8; o++ {
		if t, _ := f.byteType(o); t != stZero {
			break
		}
		zero++
	}
	if zero >= size {
		return 0, true
	}
	t, s := f.byteType(lo)
	if t != stSpill || byteIndex(lo) != 0 || int(s.size) != size || !s.spilled.isScalar() || !s.spilled.s.isConst() {
		return 0, false
	}
	return s.spilled.s.value(), true
}
