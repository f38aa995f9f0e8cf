package isa

import (
	"encoding/binary"
	"fmt"
)

// InstructionSize is the size of one encoded instruction slot in bytes.
const InstructionSize = 8

// Instruction is one raw 8-byte instruction slot. A 16-byte lddw occupies two slots; the second
// carries the high 32 bits of the constant in its Imm.
type Instruction struct {
	Op   uint8 // opcode
	Regs uint8 // destination register in the low nibble, source register in the high nibble
	Off  int16 // signed offset
	Imm  int32 // signed immediate
}

// Dst returns the destination register.
func (i Instruction) Dst() uint8 { return i.Regs & 0x0f }

// Src returns the source register.
func (i Instruction) Src() uint8 { return i.Regs >> 4 }

// SetRegs returns i with its destination and source registers replaced.
func (i Instruction) SetRegs(dst, src uint8) Instruction {
	i.Regs = dst&0x0f | src<<4
	return i
}

// IsLdDW reports whether i is the first slot of a 16-byte lddw.
func (i Instruction) IsLdDW() bool { return i.Op == OpLdDW }

// Make builds an instruction from its fields.
func Make(op, dst, src uint8, off int16, imm int32) Instruction {
	return Instruction{Op: op, Regs: dst&0x0f | src<<4, Off: off, Imm: imm}
}

// Decode reads a program from its little-endian byte encoding.
func Decode(b []byte) ([]Instruction, error) {
	if len(b)%InstructionSize != 0 {
		return nil, fmt.Errorf("decode program: %d bytes is not a multiple of %d", len(b), InstructionSize)
	}
	insns := make([]Instruction, len(b)/InstructionSize)
	for n := range insns {
		s := b[n*InstructionSize:]
		insns[n] = Instruction{
			Op:   s[0],
			Regs: s[1],
			Off:  int16(binary.LittleEndian.Uint16(s[2:])),
			Imm:  int32(binary.LittleEndian.Uint32(s[4:])),
		}
	}
	return insns, nil
}

// Encode returns the little-endian byte encoding of a program.
func Encode(insns []Instruction) []byte {
	b := make([]byte, len(insns)*InstructionSize)
	for n, i := range insns {
		s := b[n*InstructionSize:]
		s[0] = i.Op
		s[1] = i.Regs
		binary.LittleEndian.PutUint16(s[2:], uint16(i.Off))
		binary.LittleEndian.PutUint32(s[4:], uint32(i.Imm))
	}
	return b
}

// LdDWValue returns the 64-bit constant of the lddw whose first slot is lo and second slot hi.
func LdDWValue(lo, hi Instruction) uint64 {
	return uint64(uint32(lo.Imm)) | uint64(uint32(hi.Imm))<<32
}
