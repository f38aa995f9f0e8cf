package maps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Spec describes a map to create: the fields of BPF_MAP_CREATE that this package uses.
type Spec struct {
	Type       Type
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32
	Flags      uint32
	// Name is the map name as the kernel keeps it (up to 15 characters of [A-Za-z0-9_.]).
	Name string
	// NumaNode is attr.numa_node, looked at only with FlagNumaNode. This machine has node 0.
	NumaNode uint32
	// MapExtra is attr.map_extra; it must be 0 for every type here.
	MapExtra uint64
	// NumCPU is the number of possible CPUs: the count of per-CPU slots of per-CPU maps. It is a
	// parameter of the layout; 0 means what /sys/devices/system/cpu/possible says.
	NumCPU int
	// ID is the server's id of the map, recorded in the control page for diagnostics.
	ID uint32
}

// Kernel limits that MAP_CREATE checks.
const (
	pcpuMinUnitSize  = 32768   // PCPU_MIN_UNIT_SIZE: bound of a per-CPU value
	kmallocMaxSize   = 4 << 20 // KMALLOC_MAX_SIZE on x86-64
	htabElemOverhead = 48      // sizeof(struct htab_elem)
	perfMaxStack     = 127     // sysctl kernel.perf_event_max_stack default
	objNameLen       = 16      // BPF_OBJ_NAME_LEN
	maxMapBytes      = 1 << 36 // largest memfd we make for one map: beyond it, ENOMEM
	ringbufMaxRecord = 0xffffffff / 4
)

// Flags each map type accepts at creation (the kernel's *_CREATE_FLAG_MASK).
const (
	htabFlags  = FlagNoPrealloc | FlagNoCommonLRU | FlagNumaNode | flagAccessMask | FlagZeroSeed
	arrayFlags = FlagNumaNode | FlagMmapable | flagAccessMask | FlagPreserveElems | FlagInnerMap
	stackFlags = FlagNumaNode | FlagRdonly | FlagWronly | FlagStackBuildID
	ringFlags  = FlagNumaNode
)

// Validate checks s as the kernel's MAP_CREATE does, in the kernel's order, and returns the
// kernel's errno (EINVAL, E2BIG, ENOTSUPP, ENOMEM) for a refused spec.
func (s *Spec) Validate() error {
	if s.MapExtra != 0 {
		return eINVAL
	}
	if s.Flags&FlagRdonly != 0 && s.Flags&FlagWronly != 0 {
		return eINVAL
	}
	if s.Flags&FlagNumaNode != 0 && s.NumaNode != 0 {
		return eINVAL
	}
	accessOK := s.Flags&(FlagRdonlyProg|FlagWronlyProg) != FlagRdonlyProg|FlagWronlyProg
	switch s.Type {
	case Array, PercpuArray, ProgArray, PerfEventArray, CgroupArray:
		if s.Type.isFdArray() {
			if s.ValueSize != 4 || s.Flags&(FlagRdonlyProg|FlagWronlyProg) != 0 {
				return eINVAL
			}
		}
		percpu := s.Type == PercpuArray
		if s.MaxEntries == 0 || s.KeySize != 4 || s.ValueSize == 0 || s.Flags&^arrayFlags != 0 || !accessOK ||
			(percpu && s.Flags&FlagNumaNode != 0) {
			return eINVAL
		}
		if s.Type != Array && s.Flags&(FlagMmapable|FlagInnerMap) != 0 {
			return eINVAL
		}
		if s.Type != PerfEventArray && s.Flags&FlagPreserveElems != 0 {
			return eINVAL
		}
		if s.ValueSize > 1<<31-1 {
			return e2BIG
		}
		if percpu && roundUp8(uint64(s.ValueSize)) > pcpuMinUnitSize {
			return e2BIG
		}
	case Hash, PercpuHash, LRUHash, LRUPercpuHash:
		percpu := s.Type.PerCPU()
		lru := s.Type.isLRU()
		percpuLRU := s.Flags&FlagNoCommonLRU != 0
		prealloc := s.Flags&FlagNoPrealloc == 0
		if s.Flags&^htabFlags != 0 || !accessOK {
			return eINVAL
		}
		if !lru && percpuLRU {
			return eINVAL
		}
		if lru && !prealloc {
			return ENOTSUPP
		}
		if s.Flags&FlagNumaNode != 0 && (percpu || percpuLRU) {
			return eINVAL
		}
		if s.MaxEntries == 0 || s.KeySize == 0 || s.ValueSize == 0 {
			return eINVAL
		}
		if uint64(s.KeySize)+uint64(s.ValueSize) >= kmallocMaxSize-htabElemOverhead {
			return e2BIG
		}
		if percpu && roundUp8(uint64(s.ValueSize)) > pcpuMinUnitSize {
			return e2BIG
		}
	case StackTrace:
		if s.Flags&^stackFlags != 0 {
			return eINVAL
		}
		if s.MaxEntries == 0 || s.KeySize != 4 || s.ValueSize < 8 || s.ValueSize%8 != 0 {
			return eINVAL
		}
		if s.Flags&FlagStackBuildID != 0 {
			if s.ValueSize%buildIDSize != 0 || s.ValueSize/buildIDSize > perfMaxStack {
				return eINVAL
			}
		} else if s.ValueSize/8 > perfMaxStack {
			return eINVAL
		}
		if s.MaxEntries > 1<<31 {
			return e2BIG
		}
	case RingBuf:
		if s.Flags&^ringFlags != 0 {
			return eINVAL
		}
		if s.KeySize != 0 || s.ValueSize != 0 || s.MaxEntries&(s.MaxEntries-1) != 0 || s.MaxEntries%pageSize != 0 ||
			s.MaxEntries == 0 {
			return eINVAL
		}
	default:
		return eINVAL
	}
	if !validName(s.Name) {
		return eINVAL
	}
	return nil
}

// validName reports whether the kernel's bpf_obj_name_cpy accepts name.
func validName(name string) bool {
	if len(name) >= objNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// effectiveMaxEntries returns max_entries as the kernel keeps it after creation: an LRU map with
// per-CPU lists (BPF_F_NO_COMMON_LRU) rounds it to a multiple of the CPU count.
func (s *Spec) effectiveMaxEntries(ncpu uint32) uint32 {
	if s.Type.isLRU() && s.Flags&FlagNoCommonLRU != 0 {
		up := (uint64(s.MaxEntries) + uint64(ncpu) - 1) / uint64(ncpu) * uint64(ncpu)
		if up > 0xffffffff {
			return s.MaxEntries / ncpu * ncpu
		}
		return uint32(up)
	}
	return s.MaxEntries
}

// SyscallValueSize returns the size of the value buffer of the bpf(2) element commands: the value
// size, round_up(value_size, 8) times the possible CPUs for per-CPU maps, 4 for fd arrays.
func (m *Map) SyscallValueSize() int {
	switch {
	case m.typ.PerCPU():
		return int(roundUp8(uint64(m.valueSize))) * int(m.ncpu)
	case m.typ.isFdArray():
		return 4
	}
	return int(m.valueSize)
}

// PossibleCPUs returns the number of possible CPUs as /sys/devices/system/cpu/possible lists
// them ("0-1" is 2).
func PossibleCPUs() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, fmt.Errorf("possible CPUs: %w", err)
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

// parseCPUList returns one more than the highest CPU of a list such as "0-3,5".
func parseCPUList(s string) (int, error) {
	high := -1
	for _, part := range strings.Split(s, ",") {
		last := part
		if i := strings.IndexByte(part, '-'); i >= 0 {
			last = part[i+1:]
		}
		n, err := strconv.Atoi(last)
		if err != nil {
			return 0, fmt.Errorf("parse CPU list %q: %w", s, err)
		}
		high = max(high, n)
	}
	if high < 0 {
		return 0, fmt.Errorf("parse CPU list %q: empty", s)
	}
	return high + 1, nil
}

func roundUp8(n uint64) uint64 { return (n + 7) &^ 7 }
