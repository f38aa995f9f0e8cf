// Package memory holds the run-time view of the host memory an eBPF program may touch: a small
// set of regions (its stack, its context, map values, ring records) against which executors check
// the accesses the verifier could not prove safe, and through which Go helpers read and write the
// memory that program pointers name.
//
// eBPF pointers are host addresses. Every region must stay mapped (and, for Go memory, reachable)
// for as long as a run that lists it.
package memory

import (
	"fmt"
	"unsafe"
)

// Region is one range of host memory a run may access.
type Region struct {
	Start    uint64 // first byte
	End      uint64 // one past the last byte
	Writable bool
}

// Contains reports whether [addr, addr+size) lies inside r, for a write when write is set.
func (r Region) Contains(addr, size uint64, write bool) bool {
	return addr >= r.Start && addr <= r.End && size <= r.End-addr && (r.Writable || !write)
}

// MaxRegions bounds the regions of one run, so a check costs a few compares.
const MaxRegions = 16

// Regions is the set of regions of one run. The zero value holds none.
type Regions struct {
	n    int
	list [MaxRegions]Region
}

// Add appends a region of size bytes at start. It fails when the set is full or the range wraps.
func (rs *Regions) Add(start, size uint64, writable bool) error {
	if rs.n == MaxRegions {
		return fmt.Errorf("add region %#x+%d: more than %d regions", start, size, MaxRegions)
	}
	if start+size < start {
		return fmt.Errorf("add region %#x+%d: range wraps", start, size)
	}
	rs.list[rs.n] = Region{Start: start, End: start + size, Writable: writable}
	rs.n++
	return nil
}

// AddBytes adds the backing array of b as a region. The caller keeps b alive for the run.
func (rs *Regions) AddBytes(b []byte, writable bool) error {
	if len(b) == 0 {
		return nil
	}
	return rs.Add(Addr(b), uint64(len(b)), writable)
}

// Reset removes every region.
func (rs *Regions) Reset() { rs.n = 0 }

// Len returns the number of regions.
func (rs *Regions) Len() int { return rs.n }

// At returns region i.
func (rs *Regions) At(i int) Region { return rs.list[i] }

// Check reports whether [addr, addr+size) lies inside one region, writable when write is set.
func (rs *Regions) Check(addr, size uint64, write bool) bool {
	for i := 0; i < rs.n; i++ {
		if rs.list[i].Contains(addr, size, write) {
			return true
		}
	}
	return false
}

// Bytes returns the size bytes at addr as a slice, or false when they are not inside one region
// (writable when write is set). The slice aliases the program's memory. (go:nocheckptr: the
// address is a number, which the race detector's pointer checks would refuse.)
//
//go:nocheckptr
func (rs *Regions) Bytes(addr, size uint64, write bool) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	if !rs.Check(addr, size, write) {
		return nil, false
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(addr))), int(size)), true
}

// String lists the regions, for fault messages.
func (rs *Regions) String() string {
	s := "["
	for i := 0; i < rs.n; i++ {
		r := rs.list[i]
		if i > 0 {
			s += " "
		}
		mode := "r"
		if r.Writable {
			mode = "rw"
		}
		s += fmt.Sprintf("%#x-%#x:%s", r.Start, r.End, mode)
	}
	return s + "]"
}

// escapeSink and neverTrue exist for escape analysis alone: Addr's assignment of its argument
// to a global makes every slice passed to it live on the heap. neverTrue is never set.
var (
	escapeSink []byte
	neverTrue  bool
)

// Addr returns the address of the first element of b (0 for an empty slice). Passing b here
// makes it escape to the heap in the caller (Go moves goroutine stacks, so a program must never
// address stack memory of Go by number).
func Addr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	if neverTrue {
		escapeSink = b
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}
