// Package program holds a verified eBPF program as the verifier hands it to the executors (the
// interpreter and the JIT): the instructions after rewriting, what each memory access needs at run
// time, the subprograms and the maps it references.
package program

import (
	"fmt"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Type is a program type, numbered as the kernel's enum bpf_prog_type.
type Type uint32

// Program types that stock tools load.
const (
	Unspec        Type = 0
	SocketFilter  Type = 1
	Kprobe        Type = 2
	SchedCLS      Type = 3
	SchedACT      Type = 4
	Tracepoint    Type = 5
	XDP           Type = 6
	PerfEvent     Type = 7
	RawTracepoint Type = 17
	Tracing       Type = 26

	// Raw is not a kernel type: its context is a plain buffer of CtxSize bytes that r1 points to
	// and whose length r2 holds (the bpf_conformance plugin's contract). It may call every helper
	// the embedder offers.
	Raw Type = 1 << 31
)

// MapInfo is what the verifier and the executors know of a map that a program references.
type MapInfo struct {
	ID         uint32 // the embedder's identity of the map (the server's map id)
	Type       uint32 // enum bpf_map_type
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32
	Flags      uint32
	// Frozen holds the value of a frozen read-only array map of one entry (global constants):
	// the verifier treats loads from it as known numbers, as the kernel does.
	Frozen []byte
}

// Check says what an instruction's memory access needs at run time.
type Check uint8

const (
	// CheckNone marks an access the verifier proved safe, or an instruction that accesses no memory.
	CheckNone Check = iota
	// CheckBounds marks an access whose address the executor must check against the run's
	// readable or writable regions before performing it; a failed check stops the program.
	CheckBounds
)

// Func is one subprogram (bpf-to-bpf function); Funcs[0] is the entry.
type Func struct {
	Start      int // index of the first instruction
	End        int // index one past the last instruction
	StackDepth int // bytes of its 512-byte frame that it uses, rounded up to 8
}

// Program is a verified program ready to run.
//
// Rewrites done by the verifier: the first slot of an lddw with src PseudoMapFD or PseudoMapIdx
// has Imm set to an index into Maps and src PseudoMapFD; one with PseudoMapValue or
// PseudoMapIdxValue has Imm set to the index and src PseudoMapValue, the second slot keeping the
// offset into the value. Every other instruction is as loaded.
type Program struct {
	Type    Type
	Insns   []isa.Instruction
	Checks  []Check // one per instruction
	Funcs   []Func
	Maps    []MapInfo
	CtxSize int // bytes of context r1 points to at entry (0: r1 carries no pointer)
	// VerifiedInsns is the number of instructions the verifier processed (the kernel's
	// verified_insns).
	VerifiedInsns int
	// Helpers lists the helper numbers the program calls (sorted, each once), so an embedder can
	// refuse a program that calls one it cannot run.
	Helpers []int32
	// Loops reports that the program has a back-edge, so executors that enforce an instruction
	// budget must count on back-edges.
	Loops bool
}

// Fault is the error an executor returns when it stops a program at run time: a memory access
// outside the run's regions, an exhausted instruction budget, a helper's failure.
type Fault struct {
	PC     int    // index of the instruction that faulted
	Reason string // what went wrong, one line
}

// Error implements error.
func (f *Fault) Error() string {
	return fmt.Sprintf("program stopped at instruction %d: %s", f.PC, f.Reason)
}
