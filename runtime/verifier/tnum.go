package verifier

import "math/bits"

// tnum is a tristate number: the bits set in mask are unknown, the others are those of value.
// It is the bit-level half of a scalar's abstract value, as in the kernel's verifier.
type tnum struct {
	value, mask uint64
}

var tnumUnknown = tnum{0, ^uint64(0)}

func tnumConst(v uint64) tnum { return tnum{v, 0} }

// tnumRange returns the smallest tnum that holds every value of [min, max].
func tnumRange(min, max uint64) tnum {
	chi := min ^ max
	b := 64 - bits.LeadingZeros64(chi)
	if b > 63 {
		return tnumUnknown
	}
	delta := uint64(1)<<b - 1
	return tnum{min &^ delta, delta}
}

func (a tnum) isConst() bool { return a.mask == 0 }

func (a tnum) lsh(s uint8) tnum { return tnum{a.value << s, a.mask << s} }
func (a tnum) rsh(s uint8) tnum { return tnum{a.value >> s, a.mask >> s} }

// arsh shifts right arithmetically, within a width of 32 or 64 bits.
func (a tnum) arsh(s uint8, width int) tnum {
	if width == 32 {
		return tnum{uint64(uint32(int32(uint32(a.value)) >> s)), uint64(uint32(int32(uint32(a.mask)) >> s))}
	}
	return tnum{uint64(int64(a.value) >> s), uint64(int64(a.mask) >> s)}
}

func (a tnum) add(b tnum) tnum {
	sm := a.mask + b.mask
	sv := a.value + b.value
	sigma := sm + sv
	chi := sigma ^ sv
	mu := chi | a.mask | b.mask
	return tnum{sv &^ mu, mu}
}

func (a tnum) sub(b tnum) tnum {
	dv := a.value - b.value
	alpha := dv + a.mask
	beta := dv - b.mask
	chi := alpha ^ beta
	mu := chi | a.mask | b.mask
	return tnum{dv &^ mu, mu}
}

func (a tnum) and(b tnum) tnum {
	alpha := a.value | a.mask
	beta := b.value | b.mask
	v := a.value & b.value
	return tnum{v, alpha & beta &^ v}
}

func (a tnum) or(b tnum) tnum {
	v := a.value | b.value
	mu := a.mask | b.mask
	return tnum{v, mu &^ v}
}

func (a tnum) xor(b tnum) tnum {
	v := a.value ^ b.value
	mu := a.mask | b.mask
	return tnum{v &^ mu, mu}
}

// mul multiplies by long multiplication over the known and unknown bits.
func (a tnum) mul(b tnum) tnum {
	accV := a.value * b.value
	accM := tnum{}
	for a.value != 0 || a.mask != 0 {
		if a.value&1 != 0 {
			accM = accM.add(tnum{0, b.mask})
		} else if a.mask&1 != 0 {
			accM = accM.add(tnum{0, b.value | b.mask})
		}
		a = a.rsh(1)
		b = b.lsh(1)
	}
	return tnumConst(accV).add(accM)
}

// intersect combines two facts about the same value.
func (a tnum) intersect(b tnum) tnum {
	v := a.value | b.value
	mu := a.mask & b.mask
	return tnum{v &^ mu, mu}
}

// union returns a tnum that holds every value of a and of b.
func (a tnum) union(b tnum) tnum {
	mu := a.mask | b.mask | (a.value ^ b.value)
	return tnum{a.value &^ mu, mu}
}

// cast truncates to the low size bytes.
func (a tnum) cast(size int) tnum {
	if size >= 8 {
		return a
	}
	m := uint64(1)<<(uint(size)*8) - 1
	return tnum{a.value & m, a.mask & m}
}

// subreg returns the low 32 bits.
func (a tnum) subreg() tnum { return a.cast(4) }

// withSubreg replaces the low 32 bits of a with those of sub.
func (a tnum) withSubreg(sub tnum) tnum {
	hi := tnum{a.value &^ 0xffffffff, a.mask &^ 0xffffffff}
	return hi.or(sub.cast(4))
}

// contains reports whether every value of b is a value of a.
func (a tnum) contains(b tnum) bool {
	if b.mask&^a.mask != 0 {
		return false
	}
	return a.value == b.value&^a.mask
}

// hasValue reports whether v is a value of a.
func (a tnum) hasValue(v uint64) bool { return v&^a.mask == a.value }
