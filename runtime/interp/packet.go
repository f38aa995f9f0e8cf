package interp

import (
	"encoding/binary"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// PacketSource is what the legacy packet loads (LD_ABS, LD_IND; socket filters) read from: an
// embedder whose env.Data implements it gives the run's packet.
type PacketSource interface {
	// Packet returns the packet's bytes, which must stay valid for the run.
	Packet() []byte
}

// ldPacket runs LD_ABS or LD_IND: r0 = the big-endian value at the offset in the packet. ok is
// false when the load falls outside the packet, which ends the program with r0 = 0 as in the
// kernel. The instruction's opcode is in off.
func (m *Machine) ldPacket(in *insn, env *helper.Env, pc int) (ok bool, err error) {
	src, _ := env.Data.(PacketSource)
	if src == nil {
		return false, fault(pc, "packet load in a run without a packet")
	}
	pkt := src.Packet()
	op := uint8(in.off)
	off := int64(int32(uint32(in.imm)))
	if isa.Mode(op) == isa.ModeIND {
		off = int64(int32(uint32(m.regs[in.src]) + uint32(in.imm)))
	}
	size := int64(isa.Bytes(isa.SizeOf(op)))
	if off < 0 || off+size > int64(len(pkt)) {
		return false, nil
	}
	b := pkt[off : off+size]
	switch size {
	case 1:
		m.regs[0] = uint64(b[0])
	case 2:
		m.regs[0] = uint64(binary.BigEndian.Uint16(b))
	default:
		m.regs[0] = uint64(binary.BigEndian.Uint32(b))
	}
	return true, nil
}
