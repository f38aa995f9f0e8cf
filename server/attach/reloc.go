package attach

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// JumpSize is the size of the jump (jmp rel32) an agent writes at a probe point.
const JumpSize = 5

// Limits of the table's slot layout.
const (
	maxOrig   = 32
	maxCopy   = 128
	maxFixups = 16
	maxBounds = 16
)

// FixupKind says how an agent completes a relocated copy once it knows where the probe point
// and the copy are in its process.
type FixupKind uint32

// Fixup kinds. Targets are relative to the probe point's address P; the copy is at C.
const (
	// FixRel32 stores int32(P + Target - (C + End)) at At: a rip-relative operand.
	FixRel32 FixupKind = 1
	// FixAbs64 stores uint64(P + Target) at At: an absolute branch target or return address.
	FixAbs64 FixupKind = 2
)

// Fixup is one field of a relocated copy that depends on addresses.
type Fixup struct {
	At, End uint16
	Kind    FixupKind
	Target  int64
}

// Bound maps the start of a displaced instruction to its start in the relocated copy: a thread
// stopped inside the displaced bytes resumes at the same instruction of the copy.
type Bound struct {
	Orig, Copy uint8
}

// Displaced is what an agent needs to patch one probe point: the instructions the jump
// replaces, as they are and relocated to run anywhere.
type Displaced struct {
	// Orig holds the displaced instructions' bytes (at least JumpSize; the first instruction
	// alone at a point probed with int3): the agent checks the code before patching, and writes
	// back what it replaced when it detaches.
	Orig []byte
	// Copy holds the instructions rewritten to run at another address; Fixups complete them.
	Copy   []byte
	Fixups []Fixup
	// Bounds lists the instruction starts, the first at 0.
	Bounds []Bound
}

// errTooShort is Relocate's refusal of a function that ends before the jump does: Resolve
// probes such a point with a breakpoint instead.
var errTooShort = errors.New("too short for a 5-byte jump")

// Relocate decodes the instructions at the start of code, the bytes at the probe point, until
// they cover JumpSize bytes, and rewrites them to run from a trampoline: rip-relative operands
// get fixups, relative branches become absolute ones. It refuses what it cannot move safely.
//
// A function shorter than the jump (a tiny leaf such as `lea eax, [rdi+rdi]; ret`) may still
// be probed when its last instruction never falls through and padding, the bytes after its end,
// is filler between functions (int3 or nops): the jump then covers filler nothing executes.
func Relocate(code, padding []byte) (*Displaced, error) {
	d := &Displaced{}
	off := 0
	flowsOn := true
	for off < JumpSize {
		if off >= len(code) {
			need := JumpSize - off
			if flowsOn || !isFiller(padding, need) {
				return nil, fmt.Errorf("the function ends %d bytes after the probe point: %w", off, errTooShort)
			}
			d.Orig = append(append([]byte(nil), code...), padding[:need]...)
			return d, d.checkLimits()
		}
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return nil, fmt.Errorf("cannot decode the instruction at +%d: %v", off, err)
		}
		raw := code[off : off+inst.Len]
		last := off+inst.Len >= JumpSize
		d.Bounds = append(d.Bounds, Bound{Orig: uint8(off), Copy: uint8(len(d.Copy))})
		if err := d.relocate(inst, raw, int64(off), last); err != nil {
			return nil, fmt.Errorf("%v at +%d: %w", inst, off, err)
		}
		flowsOn = !endsFlow(inst)
		off += inst.Len
	}
	d.Orig = append([]byte(nil), code[:off]...)
	return d, d.checkLimits()
}

// RelocateFirst relocates only the instruction at the start of code, the probe point, for a
// point probed with a breakpoint (int3), which displaces one byte: the instruction runs out of
// line from a trampoline, then jumps back after it. It refuses what Relocate refuses of it.
func RelocateFirst(code []byte) (*Displaced, error) {
	if len(code) == 0 {
		return nil, fmt.Errorf("no instruction at the probe point")
	}
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return nil, fmt.Errorf("cannot decode the instruction at +0: %v", err)
	}
	d := &Displaced{Bounds: []Bound{{0, 0}}}
	if err := d.relocate(inst, code[:inst.Len], 0, true); err != nil {
		return nil, fmt.Errorf("%v at +0: %w", inst, err)
	}
	d.Orig = append([]byte(nil), code[:inst.Len]...)
	return d, d.checkLimits()
}

// endsFlow reports whether execution never continues after inst.
func endsFlow(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.RET, x86asm.JMP, x86asm.UD2, x86asm.HLT:
		return true
	}
	return false
}

// isFiller reports whether the first n bytes of b are linkers' filler between functions: int3
// bytes or nop instructions, whole within b (the last may go on past n).
func isFiller(b []byte, n int) bool {
	if len(b) < n {
		return false
	}
	for off := 0; off < n; {
		if b[off] == 0xcc {
			off++
			continue
		}
		inst, err := x86asm.Decode(b[off:], 64)
		if err != nil || inst.Op != x86asm.NOP {
			return false
		}
		off += inst.Len
	}
	return true
}

// checkLimits refuses displaced code that does not fit the table's slot layout.
func (d *Displaced) checkLimits() error {
	switch {
	case len(d.Orig) > maxOrig:
		return fmt.Errorf("displaced instructions of %d bytes: more than %d", len(d.Orig), maxOrig)
	case len(d.Copy) > maxCopy:
		return fmt.Errorf("relocated copy of %d bytes: more than %d", len(d.Copy), maxCopy)
	case len(d.Fixups) > maxFixups || len(d.Bounds) > maxBounds:
		return fmt.Errorf("too many displaced instructions")
	}
	return nil
}

// jcc gives the condition code of each conditional jump.
var jcc = map[x86asm.Op]byte{
	x86asm.JO: 0, x86asm.JNO: 1, x86asm.JB: 2, x86asm.JAE: 3, x86asm.JE: 4, x86asm.JNE: 5,
	x86asm.JBE: 6, x86asm.JA: 7, x86asm.JS: 8, x86asm.JNS: 9, x86asm.JP: 10, x86asm.JNP: 11,
	x86asm.JL: 12, x86asm.JGE: 13, x86asm.JLE: 14, x86asm.JG: 15,
}

// jmpAbs is `jmp [rip+0]` followed by the 8-byte target.
var jmpAbs = []byte{0xff, 0x25, 0, 0, 0, 0}

func (d *Displaced) fix(at int, end int, kind FixupKind, target int64) {
	d.Fixups = append(d.Fixups, Fixup{At: uint16(at), End: uint16(end), Kind: kind, Target: target})
}

// relocate appends the relocated form of inst (whose bytes are raw, at offset off of the probe
// point) to the copy. last says whether it is the last displaced instruction.
func (d *Displaced) relocate(inst x86asm.Inst, raw []byte, off int64, last bool) error {
	if inst.Op == x86asm.INT && len(raw) == 1 && raw[0] == 0xcc {
		return fmt.Errorf("a breakpoint (int3) is there already")
	}
	next := off + int64(inst.Len)
	var rel x86asm.Rel
	isRel := false
	for _, a := range inst.Args {
		if r, ok := a.(x86asm.Rel); ok {
			rel, isRel = r, true
		}
	}
	c := len(d.Copy)
	switch {
	case isRel && inst.Op == x86asm.JMP:
		d.Copy = append(d.Copy, jmpAbs...)
		d.Copy = binary.LittleEndian.AppendUint64(d.Copy, 0)
		d.fix(c+6, c+14, FixAbs64, next+int64(rel))
	case isRel && inst.Op == x86asm.CALL && last:
		// push the original return address (the code after the displaced bytes) and jump:
		// the callee returns to the original code and sees the stack it would have seen.
		d.Copy = append(d.Copy, 0x50, 0x48, 0xb8) // push rax; movabs rax, imm64
		d.Copy = binary.LittleEndian.AppendUint64(d.Copy, 0)
		d.fix(c+3, c+11, FixAbs64, next)
		d.Copy = append(d.Copy, 0x48, 0x87, 0x04, 0x24) // xchg [rsp], rax
		d.Copy = append(d.Copy, jmpAbs...)
		d.Copy = binary.LittleEndian.AppendUint64(d.Copy, 0)
		d.fix(c+21, c+29, FixAbs64, next+int64(rel))
	case isRel && inst.Op == x86asm.CALL:
		// call [rip+2]; jmp +8; target: the callee returns into the copy
		d.Copy = append(d.Copy, 0xff, 0x15, 0x02, 0, 0, 0, 0xeb, 0x08)
		d.Copy = binary.LittleEndian.AppendUint64(d.Copy, 0)
		d.fix(c+8, c+16, FixAbs64, next+int64(rel))
	case isRel && jccOK(inst.Op):
		// j!cc +14; jmp [rip+0]; target
		d.Copy = append(d.Copy, 0x70|(jcc[inst.Op]^1), 14)
		d.Copy = append(d.Copy, jmpAbs...)
		d.Copy = binary.LittleEndian.AppendUint64(d.Copy, 0)
		d.fix(c+8, c+16, FixAbs64, next+int64(rel))
	case isRel && (inst.Op == x86asm.JRCXZ || inst.Op == x86asm.JECXZ || inst.Op == x86asm.LOOP ||
		inst.Op == x86asm.LOOPE || inst.Op == x86asm.LOOPNE):
		if inst.PCRel != 1 {
			return fmt.Errorf("unexpected encoding")
		}
		// the instruction with rel8 = 2 (taken: to the absolute jump); jmp +14 (not taken)
		d.Copy = append(d.Copy, raw[:inst.PCRelOff]...)
		d.Copy = append(d.Copy, 2, 0xeb, 14)
		d.Copy = append(d.Copy, jmpAbs...)
		d.Copy = binary.LittleEndian.AppendUint64(d.Copy, 0)
		n := len(d.Copy)
		d.fix(n-8, n, FixAbs64, next+int64(rel))
	case isRel:
		return fmt.Errorf("cannot relocate a relative %v", inst.Op)
	case inst.PCRel != 0:
		if inst.PCRel != 4 || !ripRelative(inst) {
			return fmt.Errorf("cannot relocate its pc-relative operand")
		}
		disp := int32(binary.LittleEndian.Uint32(raw[inst.PCRelOff:]))
		d.Copy = append(d.Copy, raw...)
		d.fix(c+inst.PCRelOff, c+inst.Len, FixRel32, next+int64(disp))
	default:
		d.Copy = append(d.Copy, raw...)
	}
	return nil
}

func jccOK(op x86asm.Op) bool {
	_, ok := jcc[op]
	return ok
}

func ripRelative(inst x86asm.Inst) bool {
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			return true
		}
	}
	return false
}

// branchTargets returns, for code loaded at offset base of its file, the targets (file
// offsets) of its relative branches, decoding linearly and skipping bytes it cannot decode.
func branchTargets(code []byte, base int64) []int64 {
	var out []int64
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil || inst.Len == 0 {
			off++
			continue
		}
		for _, a := range inst.Args {
			if r, ok := a.(x86asm.Rel); ok {
				out = append(out, base+int64(off+inst.Len)+int64(r))
			}
		}
		off += inst.Len
	}
	return out
}

// boundaries returns the instruction starts of code, decoding linearly.
func boundaries(code []byte) map[int]bool {
	out := map[int]bool{}
	for off := 0; off < len(code); {
		out[off] = true
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil || inst.Len == 0 {
			off++
			continue
		}
		off += inst.Len
	}
	return out
}
