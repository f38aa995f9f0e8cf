package jit

import "github.com/ebpfu/ebpfu/runtime/memory"

// The context block is everything process- and run-specific that compiled code uses: the caller
// fills one and passes its address as the entry point's first argument. Its layout is a contract
// with the C agent (cshim/), written down in docs/jit.md as struct ebpfu_ctx; block_test.go holds
// Block to these offsets.
const (
	offHelpers    = 0x00                               // const void *const *helpers: helper i's function, SysV ABI
	offNumHelpers = 0x08                               // uint64 entries in helpers (callx checks its index against it)
	offMaps       = 0x10                               // const uint64 *maps: what lddw of map i yields
	offMapValues  = 0x18                               // const uint64 *map_values: base address of map i's direct value access
	offStack      = 0x20                               // uint64 lowest address of the StackSize-byte eBPF stack
	offBudget     = 0x28                               // uint64 instruction budget (0: none); the remaining budget on return
	offNumRegions = 0x30                               // uint64 entries in regions
	offRegions    = 0x38                               // struct { uint64 start, end, writable; } regions[MaxRegions]
	offPacket     = offRegions + regionSize*MaxRegions // uint64 address of the packet of LD_ABS/LD_IND, 0: none
	offPacketLen  = offPacket + 8                      // uint64 its length
	offFault      = offPacket + 16                     // uint32 fault code (0: none), set by the code
	offFaultPC    = offFault + 4                       // uint32 instruction index of the fault
	offFaultAddr  = offFault + 8                       // uint64 address of a refused access
	offFaultInfo  = offFault + 16                      // uint64 size | write<<7 of a refused access
	offEntrySP    = offFault + 24                      // uint64 scratch: native stack pointer at entry
	offFrameLimit = offFault + 32                      // uint64 scratch: lowest frame pointer that may call
	offSpill      = offFault + 40                      // uint64[2] scratch for atomics
	offR0Start    = offFault + 56                      // uint64 scratch: regions[0].start
	offR0Limit    = offFault + 64                      // uint64[8] scratch: region 0 limits per size, reads then writes
	// BlockSize is the size of the part of the block compiled code uses.
	BlockSize = offR0Limit + 64

	regionSize = 24
)

// MaxRegions is the number of regions a block holds besides the stack.
const MaxRegions = memory.MaxRegions

// StackSize is the size of the eBPF stack a block points to: isa.MaxCallDepth frames of
// isa.StackSize bytes. Frame 0 (the entry function's) is the highest; r10 points one past it.
const StackSize = 8 * 512

// Fault codes that compiled code leaves in the block's fault word when it stops a program.
const (
	FaultNone    = 0
	FaultBounds  = 1 // a checked memory access outside the stack and the regions
	FaultBudget  = 2 // the instruction budget is exhausted
	FaultDepth   = 3 // a bpf-to-bpf call deeper than the stack's frames
	FaultCallx   = 4 // callx of a helper number outside the table, or with no function
	FaultAlign   = 5 // a misaligned atomic access (FaultAddr and FaultInfo say which)
	FaultPacket  = 6 // a packet load (LD_ABS, LD_IND) in a run without a packet
	FaultFellOff = 7 // execution ran past the last instruction of a function
)

// Region is one entry of the block's region table.
type Region struct {
	Start, End, Writable uint64
}

// Block is the context block as Go lays it out; see docs/jit.md.
type Block struct {
	Helpers    uintptr
	NumHelpers uint64
	Maps       uintptr
	MapValues  uintptr
	Stack      uint64
	Budget     uint64
	NumRegions uint64
	Regions    [MaxRegions]Region
	Packet     uint64
	PacketLen  uint64
	Fault      uint32
	FaultPC    uint32
	FaultAddr  uint64
	FaultInfo  uint64
	EntrySP    uint64
	FrameLimit uint64
	Spill      [2]uint64
	R0Start    uint64
	R0Limit    [8]uint64
}

// DefaultProbeBudget is the instruction budget for probes in traced processes when nothing else
// is configured: charged as the interpreter charges it (the length of a loop per taken
// back-edge), it stops a runaway loop after roughly 50-100 ms.
const DefaultProbeBudget = 100_000_000
