package verifier

import (
	"fmt"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// kind is what a register holds, as the kernel's enum bpf_reg_type.
type kind uint8

const (
	notInit             kind = iota // never written, or clobbered by a call
	scalarValue                     // a number
	ptrToCtx                        // the program's context
	ptrToStack                      // a frame's stack; reg.frame says which
	constPtrToMap                   // a map, from lddw
	ptrToMapValue                   // a map value
	ptrToMapValueOrNull             // a map value, or NULL until checked
	ptrToMem                        // helper-returned memory of memSize bytes (ringbuf records)
	ptrToMemOrNull                  // the same, or NULL until checked
	ptrToFunc                       // a subprogram, from lddw src=4
	ptrToBTF                        // a kernel object a helper returned (a task_struct)
)

// reg is the abstract value of one register.
type reg struct {
	kind kind
	// s is the value of a scalar, or the variable part of a pointer's offset.
	s scalar
	// off is the fixed part of a pointer's offset.
	off int64
	// mapIdx is the map of constPtrToMap and map values (index into the program's maps).
	mapIdx int32
	// frame is the call frame a stack pointer points into.
	frame uint8
	// ringbuf marks memory from bpf_ringbuf_reserve.
	ringbuf bool
	// memSize is the size of ptrToMem memory.
	memSize int64
	// id links copies: of a maybe-NULL pointer (a NULL check applies to all of them) or of a
	// scalar (a range learnt on one applies to all).
	id uint32
	// refID names the reference a pointer holds (ringbuf records), which must be released.
	refID uint32
	// sub is the subprogram of ptrToFunc.
	sub int32
	// imprecise marks bounds that come from widening or joining states: checks that fail on
	// them are deferred to run time instead of refusing the program.
	imprecise bool
}

func scalarReg(s scalar) reg     { return reg{kind: scalarValue, s: s} }
func constReg(v uint64) reg      { return scalarReg(constScalar(v)) }
func unknownReg() reg            { return scalarReg(unknownScalar()) }
func (r *reg) isPointer() bool   { return r.kind > scalarValue }
func (r *reg) isScalar() bool    { return r.kind == scalarValue }
func (r *reg) isConstZero() bool { return r.kind == scalarValue && r.s.isConst() && r.s.value() == 0 }
func (r *reg) maybeNull() bool {
	return r.kind == ptrToMapValueOrNull || r.kind == ptrToMemOrNull
}

// total returns a pointer's whole offset, fixed and variable parts together.
func (r *reg) total() scalar {
	k := constScalar(uint64(r.off))
	return scalarALU(0x00, false, 0, &r.s, &k)
}

// typeName is the kernel's name of a register type in verifier messages.
func (r *reg) typeName() string {
	switch r.kind {
	case notInit:
		return "?"
	case scalarValue:
		return "scalar"
	case ptrToCtx:
		return "ctx"
	case ptrToStack:
		return "fp"
	case constPtrToMap:
		return "map_ptr"
	case ptrToMapValue:
		return "map_value"
	case ptrToMapValueOrNull:
		return "map_value_or_null"
	case ptrToMem:
		if r.ringbuf {
			return "ringbuf_mem"
		}
		return "mem"
	case ptrToMemOrNull:
		if r.ringbuf {
			return "ringbuf_mem_or_null"
		}
		return "mem_or_null"
	case ptrToFunc:
		return "func"
	case ptrToBTF:
		return "trusted_ptr_"
	}
	return "?"
}

// String prints a register the way the kernel's log does, roughly: R1=ctx() R10=fp0 R0=scalar().
func (r *reg) String() string {
	switch r.kind {
	case scalarValue:
		if r.s.isConst() {
			return fmt.Sprintf("%d", int64(r.s.value()))
		}
		return "scalar()"
	case ptrToStack:
		return fmt.Sprintf("fp%d", r.off)
	case notInit:
		return "?"
	}
	if r.off != 0 {
		return fmt.Sprintf("%s(off=%d)", r.typeName(), r.off)
	}
	return r.typeName() + "()"
}

// Byte types of stack memory.
const (
	stInvalid byte = iota // never written
	stMisc                // written with something unknown
	stZero                // written with zero
	stSpill               // part of a spilled register (see slot.spilled)
)

// slot is 8 bytes of a frame's stack: slot i holds bytes [-(i+1)*8, -i*8) of the frame.
type slot struct {
	types   [8]byte // by byte, lowest address first
	spilled reg     // the register spilled here, when the slot's first bytes are stSpill
	size    uint8   // bytes of the spill: 8, or 1, 2, 4 for a number stored at the slot's start
}

func (s *slot) isSpill() bool { return s.types[0] == stSpill }

// frameState is one call frame.
type frameState struct {
	regs     [isa.NumRegs]reg
	stack    []slot
	callsite int // index of the call instruction in the caller, -1 for the entry frame
	sub      int // subprogram index
}

func (f *frameState) clone() *frameState {
	g := *f
	g.stack = append([]slot(nil), f.stack...)
	return &g
}

// slotAt returns the slot holding stack byte off (negative), growing the stack as needed.
func (f *frameState) slotAt(off int64) *slot {
	i := int((-off - 1) / 8)
	for len(f.stack) <= i {
		f.stack = append(f.stack, slot{})
	}
	return &f.stack[i]
}

// byteType returns the type of stack byte off (negative) without growing the stack.
func (f *frameState) byteType(off int64) (byte, *slot) {
	i := int((-off - 1) / 8)
	if i >= len(f.stack) {
		return stInvalid, nil
	}
	return f.stack[i].types[byteIndex(off)], &f.stack[i]
}

// byteIndex is the index of stack byte off within its slot.
func byteIndex(off int64) int { return int(((off % 8) + 8) % 8) }

// refState is a reference a program holds and must release (a ringbuf record).
type refState struct {
	id   uint32
	insn int
}

// state is the abstract machine state on one path.
type state struct {
	frames []*frameState
	refs   []refState
	// parent is the closest stored state on this path (for pruning bookkeeping).
	parent *stored
	// nextID is not part of the state proper; ids are allocated from the verifier.
}

func (s *state) cur() *frameState { return s.frames[len(s.frames)-1] }

func (s *state) clone() *state {
	t := &state{frames: make([]*frameState, len(s.frames)), refs: append([]refState(nil), s.refs...), parent: s.parent}
	for i, f := range s.frames {
		t.frames[i] = f.clone()
	}
	return t
}

// stored is a state kept at a prune point to cut later paths that it subsumes.
type stored struct {
	st       *state
	pc       int
	parent   *stored
	branches int  // live paths that still descend from this state
	widened  bool // this state was produced by widening
}
