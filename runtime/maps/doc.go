// Package maps implements eBPF maps as shared-memory objects with one documented binary layout
// (docs/maps.md): each map is a memfd that the server maps to serve the tool's bpf(2) map
// commands and that every traced process running programs maps to serve the programs' helpers.
// The C agent (cshim/maps) implements the program side on the same layout.
//
// Two sets of operations live here. The syscall side (Lookup, Update, Delete, NextKey,
// LookupAndDelete, Freeze, the batch operations) follows the kernel's bpf(2) semantics and
// returns the kernel's errnos as syscall.Errno values. The program side (Elem, UpdateElem,
// DeleteElem, PerfEventOutput, Reserve/Submit/Discard/Output, StackID, ...) is what Go helpers
// call: it returns addresses in this process's mapping, as the kernel's helpers return kernel
// addresses that programs then load from, store to and update with atomics.
//
// Perf event buffers (PerfRing) and BPF ring buffers use the kernel's own layouts, because the
// tools mmap and read them directly.
package maps
