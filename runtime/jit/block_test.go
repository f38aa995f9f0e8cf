package jit

import (
	"testing"
	"unsafe"
)

// TestBlockLayout holds Block to the offsets compiled code uses (and docs/jit.md documents).
func TestBlockLayout(t *testing.T) {
	var b Block
	for _, c := range []struct {
		name     string
		got, off uintptr
	}{
		{"Helpers", unsafe.Offsetof(b.Helpers), offHelpers},
		{"NumHelpers", unsafe.Offsetof(b.NumHelpers), offNumHelpers},
		{"Maps", unsafe.Offsetof(b.Maps), offMaps},
		{"MapValues", unsafe.Offsetof(b.MapValues), offMapValues},
		{"Stack", unsafe.Offsetof(b.Stack), offStack},
		{"Budget", unsafe.Offsetof(b.Budget), offBudget},
		{"NumRegions", unsafe.Offsetof(b.NumRegions), offNumRegions},
		{"Regions", unsafe.Offsetof(b.Regions), offRegions},
		{"Packet", unsafe.Offsetof(b.Packet), offPacket},
		{"PacketLen", unsafe.Offsetof(b.PacketLen), offPacketLen},
		{"Fault", unsafe.Offsetof(b.Fault), offFault},
		{"FaultPC", unsafe.Offsetof(b.FaultPC), offFaultPC},
		{"FaultAddr", unsafe.Offsetof(b.FaultAddr), offFaultAddr},
		{"FaultInfo", unsafe.Offsetof(b.FaultInfo), offFaultInfo},
		{"EntrySP", unsafe.Offsetof(b.EntrySP), offEntrySP},
		{"FrameLimit", unsafe.Offsetof(b.FrameLimit), offFrameLimit},
		{"Spill", unsafe.Offsetof(b.Spill), offSpill},
		{"R0Start", unsafe.Offsetof(b.R0Start), offR0Start},
		{"R0Limit", unsafe.Offsetof(b.R0Limit), offR0Limit},
		{"size", unsafe.Sizeof(b), BlockSize},
		{"region size", unsafe.Sizeof(Region{}), regionSize},
	} {
		if c.got != c.off {
			t.Errorf("%s at %#x, compiled code uses %#x", c.name, c.got, c.off)
		}
	}
	if BlockSize != 0x248 {
		t.Errorf("BlockSize is %#x; docs/jit.md says 0x248", BlockSize)
	}
}
