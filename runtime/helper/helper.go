// Package helper describes the eBPF helper functions: their numbers, kernel names, prototypes
// (argument and return kinds, as the kernel's struct bpf_func_proto gives them) and which program
// types may call them. Implementations live with the executors that call them.
package helper

// ID is a helper number, as the kernel's enum bpf_func_id.
type ID int32

// ArgKind is what a helper argument must be (the kernel's enum bpf_arg_type, reduced).
type ArgKind uint8

// Argument kinds.
const (
	ArgNone             ArgKind = iota // no argument
	ArgAnything                        // any initialised value
	ArgConstMapPtr                     // a map pointer from lddw
	ArgPtrToMapKey                     // pointer to key_size readable bytes (stack or map value)
	ArgPtrToMapValue                   // pointer to value_size readable bytes
	ArgPtrToUninitMapValue             // pointer to value_size writable bytes
	ArgPtrToMem                        // pointer to readable memory, size in the next argument
	ArgPtrToUninitMem                  // pointer to writable memory, size in the next argument
	ArgConstSize                       // size of the previous memory argument, > 0
	ArgConstSizeOrZero                 // size of the previous memory argument, >= 0
	ArgPtrToCtx                        // the program's context pointer
	ArgPtrToStack                      // pointer into the stack
	ArgConstAllocSizeOrZero            // a size for an allocation (ringbuf reserve)
	ArgPtrToAllocMem                   // memory returned by ringbuf reserve
	ArgPtrToLong                       // pointer to 8 writable bytes
	ArgPtrToConstStr                   // pointer to a NUL-terminated string in a read-only map
	ArgPtrToFunc                       // a callback (bpf_loop, for_each_map_elem)
	ArgPtrToStackOrNull                // callback context or NULL
)

// RetKind is what a helper returns (the kernel's enum bpf_return_type, reduced).
type RetKind uint8

// Return kinds.
const (
	RetInteger           RetKind = iota // a scalar
	RetVoid                             // nothing (r0 is unknown)
	RetMapValueOrNull                   // pointer to a map value, or NULL
	RetAllocMemOrNull                   // pointer to memory of the size given by the const argument, or NULL
	RetPtrToMemOrBTFID                  // pointer to memory described by BTF
)

// Proto is a helper's prototype.
type Proto struct {
	ID   ID
	Name string // kernel name without the bpf_ prefix is never used: this is the full name, e.g. "bpf_map_lookup_elem"
	Ret  RetKind
	Args [5]ArgKind
	// GPLOnly helpers need a GPL-compatible license.
	GPLOnly bool
}
