package isa

// Instruction classes (the low three bits of the opcode).
const (
	ClassLD    uint8 = 0x00
	ClassLDX   uint8 = 0x01
	ClassST    uint8 = 0x02
	ClassSTX   uint8 = 0x03
	ClassALU   uint8 = 0x04
	ClassJMP   uint8 = 0x05
	ClassJMP32 uint8 = 0x06
	ClassALU64 uint8 = 0x07
)

// Load and store sizes.
const (
	SizeW  uint8 = 0x00
	SizeH  uint8 = 0x08
	SizeB  uint8 = 0x10
	SizeDW uint8 = 0x18
)

// Load and store modes.
const (
	ModeIMM    uint8 = 0x00
	ModeABS    uint8 = 0x20
	ModeIND    uint8 = 0x40
	ModeMEM    uint8 = 0x60
	ModeMEMSX  uint8 = 0x80
	ModeATOMIC uint8 = 0xc0
)

// Operand sources for ALU and jump instructions.
const (
	SrcK uint8 = 0x00 // immediate
	SrcX uint8 = 0x08 // register
)

// ALU operations (the high four bits of ALU and ALU64 opcodes).
const (
	ALUAdd  uint8 = 0x00
	ALUSub  uint8 = 0x10
	ALUMul  uint8 = 0x20
	ALUDiv  uint8 = 0x30
	ALUOr   uint8 = 0x40
	ALUAnd  uint8 = 0x50
	ALULsh  uint8 = 0x60
	ALURsh  uint8 = 0x70
	ALUNeg  uint8 = 0x80
	ALUMod  uint8 = 0x90
	ALUXor  uint8 = 0xa0
	ALUMov  uint8 = 0xb0
	ALUArsh uint8 = 0xc0
	ALUEnd  uint8 = 0xd0
)

// Jump operations (the high four bits of JMP and JMP32 opcodes).
const (
	JmpJA   uint8 = 0x00
	JmpJEQ  uint8 = 0x10
	JmpJGT  uint8 = 0x20
	JmpJGE  uint8 = 0x30
	JmpJSET uint8 = 0x40
	JmpJNE  uint8 = 0x50
	JmpJSGT uint8 = 0x60
	JmpJSGE uint8 = 0x70
	JmpCall uint8 = 0x80
	JmpExit uint8 = 0x90
	JmpJLT  uint8 = 0xa0
	JmpJLE  uint8 = 0xb0
	JmpJSLT uint8 = 0xc0
	JmpJSLE uint8 = 0xd0
)

// Atomic operations, carried in the immediate of STX|ATOMIC instructions.
const (
	AtomicAdd     int32 = 0x00
	AtomicOr      int32 = 0x40
	AtomicAnd     int32 = 0x50
	AtomicXor     int32 = 0xa0
	AtomicFetch   int32 = 0x01
	AtomicXchg    int32 = 0xe0 | AtomicFetch
	AtomicCmpXchg int32 = 0xf0 | AtomicFetch
	// AtomicLoadAcq and AtomicStoreRel are the load-acquire and store-release forms.
	AtomicLoadAcq  int32 = 0x100
	AtomicStoreRel int32 = 0x110
)

// Source register values of lddw (BPF_LD|BPF_IMM|BPF_DW) that make it a pseudo instruction.
const (
	PseudoMapFD       uint8 = 1 // imm = map fd; after verification, an index into the program's maps
	PseudoMapValue    uint8 = 2 // imm = map fd, next imm = offset into the value
	PseudoBTFID       uint8 = 3 // imm = BTF id of a kernel variable
	PseudoFunc        uint8 = 4 // imm = relative offset of a subprogram
	PseudoMapIdx      uint8 = 5 // imm = index into fd_array
	PseudoMapIdxValue uint8 = 6 // imm = index into fd_array, next imm = offset
)

// Source register values of call instructions.
const (
	PseudoCallHelper uint8 = 0 // imm = helper number
	PseudoCallLocal  uint8 = 1 // imm = relative offset of a bpf-to-bpf call
	PseudoKfuncCall  uint8 = 2 // imm = BTF id of a kernel function
)

// Byte-swap directions of ALU|END: in the ALU class SrcK converts to little endian and SrcX to
// big endian; in the ALU64 class SrcK is the unconditional bswap.
const (
	EndToLE uint8 = SrcK
	EndToBE uint8 = SrcX
)

// Common full opcodes.
const (
	OpLdDW      = ClassLD | ModeIMM | SizeDW     // 0x18
	OpCall      = ClassJMP | JmpCall             // 0x85
	OpCallX     = ClassJMP | JmpCall | SrcX      // 0x8d
	OpExit      = ClassJMP | JmpExit             // 0x95
	OpJA        = ClassJMP | JmpJA               // 0x05
	OpJA32      = ClassJMP32 | JmpJA             // 0x06
	OpMov64Imm  = ClassALU64 | ALUMov | SrcK     // 0xb7
	OpMov64Reg  = ClassALU64 | ALUMov | SrcX     // 0xbf
	OpStxAtomDW = ClassSTX | ModeATOMIC | SizeDW // 0xdb
	OpStxAtomW  = ClassSTX | ModeATOMIC | SizeW  // 0xc3
)

// Registers.
const (
	R0 uint8 = iota
	R1
	R2
	R3
	R4
	R5
	R6
	R7
	R8
	R9
	R10
	// NumRegs is the number of eBPF registers.
	NumRegs = 11
	// RFP is the read-only frame pointer.
	RFP = R10
)

// Limits of the machine.
const (
	// StackSize is the size of one frame's stack in bytes.
	StackSize = 512
	// MaxCallDepth is the deepest chain of bpf-to-bpf frames (the kernel's MAX_CALL_FRAMES).
	MaxCallDepth = 8
	// MaxInsns is the largest program the kernel loads for a privileged user (BPF_COMPLEXITY_LIMIT_INSNS).
	MaxInsns = 1_000_000
)

// Class returns the class bits of an opcode.
func Class(op uint8) uint8 { return op & 0x07 }

// SizeOf returns the size bits of a load or store opcode.
func SizeOf(op uint8) uint8 { return op & 0x18 }

// Mode returns the mode bits of a load or store opcode.
func Mode(op uint8) uint8 { return op & 0xe0 }

// Source returns the source bit of an ALU or jump opcode.
func Source(op uint8) uint8 { return op & 0x08 }

// Operation returns the operation bits of an ALU or jump opcode.
func Operation(op uint8) uint8 { return op & 0xf0 }

// Bytes returns the width in bytes of a load or store size.
func Bytes(size uint8) int {
	switch size {
	case SizeB:
		return 1
	case SizeH:
		return 2
	case SizeW:
		return 4
	default:
		return 8
	}
}
