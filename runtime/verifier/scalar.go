package verifier

import (
	"math"
)

// scalar is the abstract value of a number: its known bits and its unsigned and signed ranges,
// in 64 bits and in the low 32 bits. Every field constrains the same value; sync keeps them
// consistent, as the kernel's reg_bounds_sync does.
type scalar struct {
	t              tnum
	umin, umax     uint64
	smin, smax     int64
	u32min, u32max uint32
	s32min, s32max int32
}

func unknownScalar() scalar {
	return scalar{
		t:    tnumUnknown,
		umin: 0, umax: math.MaxUint64,
		smin: math.MinInt64, smax: math.MaxInt64,
		u32min: 0, u32max: math.MaxUint32,
		s32min: math.MinInt32, s32max: math.MaxInt32,
	}
}

func constScalar(v uint64) scalar {
	return scalar{
		t:    tnumConst(v),
		umin: v, umax: v,
		smin: int64(v), smax: int64(v),
		u32min: uint32(v), u32max: uint32(v),
		s32min: int32(v), s32max: int32(v),
	}
}

// rangeScalar returns a scalar known to lie in the unsigned range [min, max].
func rangeScalar(min, max uint64) scalar {
	s := unknownScalar()
	s.umin, s.umax = min, max
	s.sync()
	return s
}

func (s *scalar) isConst() bool { return s.t.isConst() }
func (s *scalar) value() uint64 { return s.t.value }

func (s *scalar) isConst32() bool { return s.t.subreg().isConst() }

// feasible reports whether some value satisfies every constraint.
func (s *scalar) feasible() bool {
	return s.umin <= s.umax && s.smin <= s.smax && s.u32min <= s.u32max && s.s32min <= s.s32max &&
		s.t.value&s.t.mask == 0
}

// sync tightens each field from the others.
func (s *scalar) sync() {
	s.fromTnum()
	s.deduce()
	s.deduce()
	s.toTnum()
	s.fromTnum()
}

func (s *scalar) fromTnum() {
	t32 := s.t.subreg()
	s.s32min = max(s.s32min, int32(uint32(t32.value|t32.mask&0x80000000)))
	s.s32max = min(s.s32max, int32(uint32(t32.value|t32.mask&0x7fffffff)))
	s.u32min = max(s.u32min, uint32(t32.value))
	s.u32max = min(s.u32max, uint32(t32.value|t32.mask))
	s.smin = max(s.smin, int64(s.t.value|s.t.mask&(1<<63)))
	s.smax = min(s.smax, int64(s.t.value|s.t.mask&math.MaxInt64))
	s.umin = max(s.umin, s.t.value)
	s.umax = min(s.umax, s.t.value|s.t.mask)
}

func (s *scalar) deduce() {
	// Signed and unsigned views of the same bits agree where a range does not cross a sign boundary.
	if int32(s.u32min) <= int32(s.u32max) {
		s.s32min = max(s.s32min, int32(s.u32min))
		s.s32max = min(s.s32max, int32(s.u32max))
	}
	if uint32(s.s32min) <= uint32(s.s32max) {
		s.u32min = max(s.u32min, uint32(s.s32min))
		s.u32max = min(s.u32max, uint32(s.s32max))
	}
	if int64(s.umin) <= int64(s.umax) {
		s.smin = max(s.smin, int64(s.umin))
		s.smax = min(s.smax, int64(s.umax))
	}
	if uint64(s.smin) <= uint64(s.smax) {
		s.umin = max(s.umin, uint64(s.smin))
		s.umax = min(s.umax, uint64(s.smax))
	}
	// The low half of a 64-bit range whose high half is fixed.
	if s.umin>>32 == s.umax>>32 {
		s.u32min = max(s.u32min, uint32(s.umin))
		s.u32max = min(s.u32max, uint32(s.umax))
		if int32(uint32(s.umin)) <= int32(uint32(s.umax)) {
			s.s32min = max(s.s32min, int32(uint32(s.umin)))
			s.s32max = min(s.s32max, int32(uint32(s.umax)))
		}
	}
	if uint64(s.smin)>>32 == uint64(s.smax)>>32 {
		s.u32min = max(s.u32min, uint32(s.smin))
		s.u32max = min(s.u32max, uint32(s.smax))
		if int32(uint32(s.smin)) <= int32(uint32(s.smax)) {
			s.s32min = max(s.s32min, int32(uint32(s.smin)))
			s.s32max = min(s.s32max, int32(uint32(s.smax)))
		}
	}
	if s.smin >= math.MinInt32 && s.smax <= math.MaxInt32 {
		s.s32min = max(s.s32min, int32(s.smin))
		s.s32max = min(s.s32max, int32(s.smax))
	}
	// The 64-bit range from the low half: the high half stays within the range's own.
	const lo = 0xffffffff
	s.umin = max(s.umin, s.umin&^lo|uint64(s.u32min))
	s.umax = min(s.umax, s.umax&^lo|uint64(s.u32max))
	s.smin = max(s.smin, int64(uint64(s.smin)&^lo|uint64(s.u32min)))
	s.smax = min(s.smax, int64(uint64(s.smax)&^lo|uint64(s.u32max)))
}

func (s *scalar) toTnum() {
	s.t = s.t.intersect(tnumRange(s.umin, s.umax))
	s.t = s.t.withSubreg(s.t.subreg().intersect(tnumRange(uint64(s.u32min), uint64(s.u32max))))
}

// zext32 returns the 64-bit value of the zero-extended low 32 bits of s.
func (s *scalar) zext32() scalar {
	r := scalar{
		t:    s.t.subreg(),
		umin: uint64(s.u32min), umax: uint64(s.u32max),
		smin: int64(s.u32min), smax: int64(s.u32max),
		u32min: s.u32min, u32max: s.u32max,
		s32min: s.s32min, s32max: s.s32max,
	}
	r.sync()
	return r
}

// sext returns s sign-extended from its low size bytes (1, 2 or 4).
func (s *scalar) sext(size int) scalar {
	bitsN := uint(size * 8)
	lo, hi := int64(-1)<<(bitsN-1), int64(1)<<(bitsN-1)-1
	if s.smin >= lo && s.smax <= hi {
		return *s
	}
	if s.isConst() {
		v := int64(s.value()<<(64-bitsN)) >> (64 - bitsN)
		return constScalar(uint64(v))
	}
	r := unknownScalar()
	r.smin, r.smax = lo, hi
	r.sync()
	return r
}

// truncate returns s cut to its low size bytes (zero-extended), as a load of size bytes or a
// little-endian conversion does.
func (s *scalar) truncate(size int) scalar {
	if size >= 8 {
		return *s
	}
	if size == 4 {
		return s.zext32()
	}
	m := uint64(1)<<(uint(size)*8) - 1
	if s.umax <= m {
		return *s
	}
	if s.isConst() {
		return constScalar(s.value() & m)
	}
	return rangeScalar(0, m)
}

// join returns a scalar that holds every value of a and of b.
func join(a, b scalar) scalar {
	r := scalar{
		t:    a.t.union(b.t),
		umin: min(a.umin, b.umin), umax: max(a.umax, b.umax),
		smin: min(a.smin, b.smin), smax: max(a.smax, b.smax),
		u32min: min(a.u32min, b.u32min), u32max: max(a.u32max, b.u32max),
		s32min: min(a.s32min, b.s32min), s32max: max(a.s32max, b.s32max),
	}
	r.sync()
	return r
}

// widen returns a scalar that holds old and new, with every bound that grew pushed to its limit,
// so that repeated widening reaches a fixed point in a few steps.
func widen(old, new scalar) scalar {
	r := old
	if new.umin < old.umin {
		r.umin = 0
	}
	if new.umax > old.umax {
		r.umax = math.MaxUint64
	}
	if new.smin < old.smin {
		r.smin = math.MinInt64
	}
	if new.smax > old.smax {
		r.smax = math.MaxInt64
	}
	if new.u32min < old.u32min {
		r.u32min = 0
	}
	if new.u32max > old.u32max {
		r.u32max = math.MaxUint32
	}
	if new.s32min < old.s32min {
		r.s32min = math.MinInt32
	}
	if new.s32max > old.s32max {
		r.s32max = math.MaxInt32
	}
	if !old.t.contains(new.t) {
		r.t = tnumUnknown
	}
	r.sync()
	return r
}

// contains reports whether every value of b is a value of a.
func (a *scalar) contains(b *scalar) bool {
	return a.umin <= b.umin && b.umax <= a.umax && a.smin <= b.smin && b.smax <= a.smax &&
		a.u32min <= b.u32min && b.u32max <= a.u32max && a.s32min <= b.s32min && b.s32max <= a.s32max &&
		a.t.contains(b.t)
}

// hasValue reports whether v may be a value of s.
func (s *scalar) hasValue(v uint64) bool {
	return s.umin <= v && v <= s.umax && s.smin <= int64(v) && int64(v) <= s.smax &&
		s.u32min <= uint32(v) && uint32(v) <= s.u32max && s.s32min <= int32(v) && int32(v) <= s.s32max &&
		s.t.hasValue(v)
}

// reg returns a scalar register holding s.
func (s scalar) reg() reg { return scalarReg(s) }
