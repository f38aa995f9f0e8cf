package verifier

import (
	"math"
	"math/bits"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// rng is one width's view of a scalar (64 bits, or the low 32), on which the ALU transfer
// functions work so that each is written once for both widths.
type rng struct {
	umin, umax uint64
	smin, smax int64
	t          tnum
	w          uint // 32 or 64
}

func (r rng) maxU() uint64 {
	if r.w == 32 {
		return math.MaxUint32
	}
	return math.MaxUint64
}

func (r rng) minS() int64 {
	if r.w == 32 {
		return math.MinInt32
	}
	return math.MinInt64
}

func (r rng) maxS() int64 {
	if r.w == 32 {
		return math.MaxInt32
	}
	return math.MaxInt64
}

func view(s *scalar, w uint) rng {
	if w == 32 {
		return rng{uint64(s.u32min), uint64(s.u32max), int64(s.s32min), int64(s.s32max), s.t.subreg(), 32}
	}
	return rng{s.umin, s.umax, s.smin, s.smax, s.t, 64}
}

func (r rng) fullU() rng { r.umin, r.umax = 0, r.maxU(); return r }
func (r rng) fullS() rng { r.smin, r.smax = r.minS(), r.maxS(); return r }

// signedFromUnsigned sets the signed range from the unsigned one when it does not cross the
// sign boundary, else leaves it unbounded.
func (r rng) signedFromUnsigned() rng {
	if r.umax <= uint64(r.maxS()) {
		r.smin, r.smax = int64(r.umin), int64(r.umax)
	} else {
		r = r.fullS()
	}
	return r
}

// scalar turns a width's result into a 64-bit scalar (32-bit results are zero-extended).
func (r rng) scalar() scalar {
	s := unknownScalar()
	if r.w == 32 {
		s.t = r.t.cast(4)
		s.u32min, s.u32max = uint32(r.umin), uint32(r.umax)
		s.s32min, s.s32max = int32(r.smin), int32(r.smax)
		s.umin, s.umax = r.umin, r.umax
		s.smin, s.smax = int64(r.umin), int64(r.umax)
	} else {
		s.t = r.t
		s.umin, s.umax, s.smin, s.smax = r.umin, r.umax, r.smin, r.smax
	}
	s.sync()
	return s
}

func addOverflowS(a, b int64, lo, hi int64) (int64, bool) {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) || c < lo || c > hi {
		return 0, true
	}
	return c, false
}

func subOverflowS(a, b int64, lo, hi int64) (int64, bool) {
	c := a - b
	if (b > 0 && c > a) || (b < 0 && c < a) || c < lo || c > hi {
		return 0, true
	}
	return c, false
}

func mulOverflowS(a, b int64, lo, hi int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, false
	}
	c := a * b
	if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) || c < lo || c > hi {
		return 0, true
	}
	return c, false
}

func (a rng) add(b rng) rng {
	r := rng{w: a.w, t: a.t.add(b.t).cast(int(a.w / 8))}
	smin, o1 := addOverflowS(a.smin, b.smin, a.minS(), a.maxS())
	smax, o2 := addOverflowS(a.smax, b.smax, a.minS(), a.maxS())
	if o1 || o2 {
		r = r.fullS()
	} else {
		r.smin, r.smax = smin, smax
	}
	umin, c1 := bits.Add64(a.umin, b.umin, 0)
	umax, c2 := bits.Add64(a.umax, b.umax, 0)
	if c1 != 0 || c2 != 0 || umax > a.maxU() {
		r = r.fullU()
	} else {
		r.umin, r.umax = umin, umax
	}
	return r
}

func (a rng) sub(b rng) rng {
	r := rng{w: a.w, t: a.t.sub(b.t).cast(int(a.w / 8))}
	smin, o1 := subOverflowS(a.smin, b.smax, a.minS(), a.maxS())
	smax, o2 := subOverflowS(a.smax, b.smin, a.minS(), a.maxS())
	if o1 || o2 {
		r = r.fullS()
	} else {
		r.smin, r.smax = smin, smax
	}
	if a.umin < b.umax {
		r = r.fullU()
	} else {
		r.umin, r.umax = a.umin-b.umax, a.umax-b.umin
	}
	return r
}

func (a rng) mul(b rng) rng {
	r := rng{w: a.w, t: a.t.mul(b.t).cast(int(a.w / 8))}
	hi, lo := bits.Mul64(a.umax, b.umax)
	if hi != 0 || lo > a.maxU() {
		r = r.fullU()
	} else {
		r.umin, r.umax = a.umin*b.umin, lo
	}
	r = r.fullS()
	ok := true
	var ps [4]int64
	for i, p := range [4][2]int64{{a.smin, b.smin}, {a.smin, b.smax}, {a.smax, b.smin}, {a.smax, b.smax}} {
		v, o := mulOverflowS(p[0], p[1], a.minS(), a.maxS())
		if o {
			ok = false
			break
		}
		ps[i] = v
	}
	if ok {
		r.smin = min(ps[0], ps[1], ps[2], ps[3])
		r.smax = max(ps[0], ps[1], ps[2], ps[3])
	}
	return r
}

func (a rng) and(b rng) rng {
	r := rng{w: a.w, t: a.t.and(b.t)}
	r.umin, r.umax = r.t.value, min(a.umax, b.umax)
	return r.signedFromUnsigned()
}

func (a rng) or(b rng) rng {
	r := rng{w: a.w, t: a.t.or(b.t)}
	r.umin, r.umax = max(a.umin, b.umin), r.t.value|r.t.mask
	return r.signedFromUnsigned()
}

func (a rng) xor(b rng) rng {
	r := rng{w: a.w, t: a.t.xor(b.t)}
	r.umin, r.umax = r.t.value, r.t.value|r.t.mask
	return r.signedFromUnsigned()
}

func (a rng) lsh(s uint8) rng {
	r := rng{w: a.w, t: a.t.lsh(s).cast(int(a.w / 8))}
	if a.umax > a.maxU()>>s {
		r = r.fullU()
	} else {
		r.umin, r.umax = a.umin<<s, a.umax<<s
	}
	if a.smin >= a.minS()>>s && a.smax <= a.maxS()>>s {
		r.smin, r.smax = a.smin<<s, a.smax<<s
	} else {
		r = r.fullS()
	}
	return r
}

func (a rng) rsh(s uint8) rng {
	r := rng{w: a.w, t: a.t.rsh(s)}
	r.umin, r.umax = a.umin>>s, a.umax>>s
	return r.signedFromUnsigned()
}

func (a rng) arsh(s uint8) rng {
	r := rng{w: a.w, t: a.t.arsh(s, int(a.w)).cast(int(a.w / 8))}
	r.smin, r.smax = a.smin>>s, a.smax>>s
	r = r.fullU()
	if r.smin >= 0 {
		r.umin, r.umax = uint64(r.smin), uint64(r.smax)
	}
	return r
}

func (a rng) udivConst(c uint64) rng {
	r := rng{w: a.w, umin: a.umin / c, umax: a.umax / c}
	r.t = tnumRange(r.umin, r.umax)
	return r.signedFromUnsigned()
}

func (a rng) umodConst(c uint64) rng {
	if a.umax < c {
		return a
	}
	r := rng{w: a.w, umin: 0, umax: c - 1}
	r.t = tnumRange(0, c-1)
	return r.signedFromUnsigned()
}

// evalALU computes an ALU operation on concrete values as the RFC defines it. alu32 operates on
// the low 32 bits and zero-extends; off selects the signed forms of div and mod.
func evalALU(op uint8, alu32 bool, off int16, dst, src uint64) uint64 {
	if alu32 {
		a, b := uint32(dst), uint32(src)
		var r uint32
		switch op {
		case isa.ALUAdd:
			r = a + b
		case isa.ALUSub:
			r = a - b
		case isa.ALUMul:
			r = a * b
		case isa.ALUDiv:
			switch {
			case b == 0:
				r = 0
			case off == 1:
				if int32(a) == math.MinInt32 && int32(b) == -1 {
					r = a
				} else {
					r = uint32(int32(a) / int32(b))
				}
			default:
				r = a / b
			}
		case isa.ALUMod:
			switch {
			case b == 0:
				r = a
			case off == 1:
				if int32(b) == -1 {
					r = 0
				} else {
					r = uint32(int32(a) % int32(b))
				}
			default:
				r = a % b
			}
		case isa.ALUOr:
			r = a | b
		case isa.ALUAnd:
			r = a & b
		case isa.ALUXor:
			r = a ^ b
		case isa.ALULsh:
			r = a << (b & 31)
		case isa.ALURsh:
			r = a >> (b & 31)
		case isa.ALUArsh:
			r = uint32(int32(a) >> (b & 31))
		case isa.ALUNeg:
			r = -a
		case isa.ALUMov:
			r = b
		}
		return uint64(r)
	}
	a, b := dst, src
	switch op {
	case isa.ALUAdd:
		return a + b
	case isa.ALUSub:
		return a - b
	case isa.ALUMul:
		return a * b
	case isa.ALUDiv:
		switch {
		case b == 0:
			return 0
		case off == 1:
			if int64(a) == math.MinInt64 && int64(b) == -1 {
				return a
			}
			return uint64(int64(a) / int64(b))
		default:
			return a / b
		}
	case isa.ALUMod:
		switch {
		case b == 0:
			return a
		case off == 1:
			if int64(b) == -1 {
				return 0
			}
			return uint64(int64(a) % int64(b))
		default:
			return a % b
		}
	case isa.ALUOr:
		return a | b
	case isa.ALUAnd:
		return a & b
	case isa.ALUXor:
		return a ^ b
	case isa.ALULsh:
		return a << (b & 63)
	case isa.ALURsh:
		return a >> (b & 63)
	case isa.ALUArsh:
		return uint64(int64(a) >> (b & 63))
	case isa.ALUNeg:
		return -a
	case isa.ALUMov:
		return b
	}
	return 0
}

// scalarALU is the transfer function of a binary ALU operation (not mov) on two scalars.
func scalarALU(op uint8, alu32 bool, off int16, dst, src *scalar) scalar {
	if dst.isConst() && src.isConst() {
		return constScalar(evalALU(op, alu32, off, dst.value(), src.value()))
	}
	w := uint(64)
	if alu32 {
		w = 32
		if dst.isConst32() && src.isConst32() {
			return constScalar(evalALU(op, true, off, dst.value(), src.value()))
		}
	}
	a, b := view(dst, w), view(src, w)
	srcConst := b.t.isConst()
	var r rng
	switch op {
	case isa.ALUAdd:
		r = a.add(b)
	case isa.ALUSub:
		r = a.sub(b)
	case isa.ALUMul:
		r = a.mul(b)
	case isa.ALUAnd:
		r = a.and(b)
	case isa.ALUOr:
		r = a.or(b)
	case isa.ALUXor:
		r = a.xor(b)
	case isa.ALULsh, isa.ALURsh, isa.ALUArsh:
		if !srcConst || b.t.value >= uint64(w) {
			return unknownResult(alu32)
		}
		s := uint8(b.t.value)
		switch op {
		case isa.ALULsh:
			r = a.lsh(s)
		case isa.ALURsh:
			r = a.rsh(s)
		default:
			r = a.arsh(s)
		}
	case isa.ALUDiv:
		if off != 0 || !srcConst || b.t.value == 0 {
			return unknownResult(alu32)
		}
		r = a.udivConst(b.t.value)
	case isa.ALUMod:
		if off != 0 || !srcConst || b.t.value == 0 {
			return unknownResult(alu32)
		}
		r = a.umodConst(b.t.value)
	default:
		return unknownResult(alu32)
	}
	return r.scalar()
}

// unknownResult is an unknown result of an ALU operation of the given width.
func unknownResult(alu32 bool) scalar {
	s := unknownScalar()
	if alu32 {
		return s.zext32()
	}
	return s
}
