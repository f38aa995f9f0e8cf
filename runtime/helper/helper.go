// Package helper describes the eBPF helper functions: their numbers, kernel names, prototypes
// (argument and return kinds, as the kernel's struct bpf_func_proto gives them) and which program
// types may call them. Implementations live with the executors that call them.
package helper

import (
	"fmt"

	"github.com/ebpfu/ebpfu/runtime/memory"
)

// ID is a helper number, as the kernel's enum bpf_func_id.
type ID int32

// ArgKind is what a helper argument must be (the kernel's enum bpf_arg_type, reduced).
type ArgKind uint8

// Argument kinds.
const (
	ArgNone                 ArgKind = iota // no argument
	ArgAnything                            // any initialised value
	ArgConstMapPtr                         // a map pointer from lddw
	ArgPtrToMapKey                         // pointer to key_size readable bytes (stack or map value)
	ArgPtrToMapValue                       // pointer to value_size readable bytes
	ArgPtrToUninitMapValue                 // pointer to value_size writable bytes
	ArgPtrToMem                            // pointer to readable memory, size in the next argument
	ArgPtrToUninitMem                      // pointer to writable memory, size in the next argument
	ArgConstSize                           // size of the previous memory argument, > 0
	ArgConstSizeOrZero                     // size of the previous memory argument, >= 0
	ArgPtrToCtx                            // the program's context pointer
	ArgPtrToStack                          // pointer into the stack
	ArgConstAllocSizeOrZero                // a size for an allocation (ringbuf reserve)
	ArgPtrToAllocMem                       // memory returned by ringbuf reserve
	ArgPtrToLong                           // pointer to 8 writable bytes
	ArgPtrToConstStr                       // pointer to a NUL-terminated string in a read-only map
	ArgPtrToFunc                           // a callback (bpf_loop, for_each_map_elem)
	ArgPtrToStackOrNull                    // callback context or NULL
	ArgPtrToUninitMemOrNull                // like ArgPtrToUninitMem, or NULL with a zero size
	ArgPtrToMemOrNull                      // like ArgPtrToMem, or NULL with a zero size
	// ArgOpaque is an argument of a kind the runtime does not model (sockets, BTF objects,
	// dynptrs, ...): no register satisfies it, and Proto.Expected says what the kernel wants.
	ArgOpaque
)

// RetKind is what a helper returns (the kernel's enum bpf_return_type, reduced).
type RetKind uint8

// Return kinds.
const (
	RetInteger         RetKind = iota // a scalar
	RetVoid                           // nothing (r0 is unknown)
	RetMapValueOrNull                 // pointer to a map value, or NULL
	RetAllocMemOrNull                 // pointer to memory of the size given by the const argument, or NULL
	RetPtrToMemOrBTFID                // pointer to memory described by BTF
	RetPtrToBTF                       // a trusted pointer to a kernel object (a task_struct)
)

// Proto is a helper's prototype.
type Proto struct {
	ID   ID
	Name string // kernel name without the bpf_ prefix is never used: this is the full name, e.g. "bpf_map_lookup_elem"
	Ret  RetKind
	Args [5]ArgKind
	// GPLOnly helpers need a GPL-compatible license.
	GPLOnly bool
	// Sleepable helpers may only be called from sleepable programs.
	Sleepable bool
	// Expected holds, for ArgOpaque arguments, the kernel's list of the register types it wants
	// ("sock_common, sock, tcp_sock, xdp_sock, ptr_, trusted_ptr_").
	Expected [5]string
	// Denied is the kernel's refusal of any call of the helper from this program type, if any.
	Denied string
	// Approximate marks a prototype known only as far as the kernel's answers to feature probes
	// show (the first arguments): programs may probe such a helper but cannot run it.
	Approximate bool
}

// Func is the Go implementation of a helper, as the interpreter (and the JIT when it runs inside
// Go) calls it: args are r1..r5, the result is r0. A non-nil error stops the program as a fault.
type Func func(env *Env, args *[5]uint64) (uint64, error)

// Impl is a helper with its prototype and its implementation.
type Impl struct {
	Proto *Proto
	Fn    Func
}

// Table holds the helpers an embedder offers to one kind of run, indexed by helper number.
type Table struct {
	impls map[ID]Impl
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{impls: make(map[ID]Impl)} }

// Register adds (or replaces) the implementation of helper id, whose prototype comes from Lookup.
func (t *Table) Register(id ID, fn Func) error {
	p, ok := Lookup(id)
	if !ok {
		return fmt.Errorf("register helper %d: no prototype", id)
	}
	t.impls[id] = Impl{Proto: p, Fn: fn}
	return nil
}

// Get returns the implementation of helper id.
func (t *Table) Get(id ID) (Impl, bool) {
	if t == nil {
		return Impl{}, false
	}
	impl, ok := t.impls[id]
	return impl, ok
}

// Env is one program run's environment: what the executor needs beyond the program, and what the
// helpers see of the world.
type Env struct {
	// Mem holds the regions the run may touch besides its own stack, which the executor adds.
	Mem memory.Regions
	// Maps holds the run-time value of each of the program's maps (program.Program.Maps), the
	// value an lddw of the map yields: an embedder's handle that its map helpers understand.
	Maps []uint64
	// MapValues holds for each map the address its direct value access (lddw of a map value)
	// is relative to, or 0 when the map offers none.
	MapValues []uint64
	// Helpers are the helpers the program may call.
	Helpers *Table
	// Budget is the number of instructions the run may execute; 0 means no limit.
	Budget uint64
	// Data is the embedder's state for this run, for its helpers.
	Data any
}
