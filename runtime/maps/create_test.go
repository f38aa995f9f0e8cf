package maps

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// createCases are MAP_CREATE attributes, valid and not, whose outcome the kernel decides.
var createCases = []Spec{
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Name: "m"},
	{Type: Hash, KeySize: 0, ValueSize: 8, MaxEntries: 16},
	{Type: Hash, KeySize: 4, ValueSize: 0, MaxEntries: 16},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 0},
	{Type: Hash, KeySize: 513, ValueSize: 8, MaxEntries: 4},
	{Type: Hash, KeySize: 4, ValueSize: 4 << 20, MaxEntries: 1},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagNoPrealloc},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagNoCommonLRU},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagMmapable},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagRdonlyProg | FlagWronlyProg},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagRdonly | FlagWronly},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagRdonlyProg},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagZeroSeed},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Name: "bad-name"},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Name: "exactly15chars_"},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, MapExtra: 1},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagNumaNode, NumaNode: 0},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagNumaNode, NumaNode: 5},
	{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 1 << 29},
	{Type: PercpuHash, KeySize: 4, ValueSize: 32768, MaxEntries: 1},
	{Type: PercpuHash, KeySize: 4, ValueSize: 32769, MaxEntries: 1},
	{Type: PercpuHash, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: FlagNumaNode},
	{Type: LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagNoPrealloc},
	{Type: LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagNoCommonLRU},
	{Type: LRUPercpuHash, KeySize: 8, ValueSize: 8, MaxEntries: 16},
	{Type: Array, KeySize: 4, ValueSize: 13, MaxEntries: 1, Flags: FlagMmapable | FlagRdonlyProg, Name: "x.rodata"},
	{Type: Array, KeySize: 8, ValueSize: 8, MaxEntries: 1},
	{Type: Array, KeySize: 4, ValueSize: 0, MaxEntries: 1},
	{Type: Array, KeySize: 4, ValueSize: 8, MaxEntries: 0},
	{Type: Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: FlagNoPrealloc},
	{Type: Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: FlagZeroSeed},
	{Type: Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: FlagPreserveElems},
	{Type: Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: FlagInnerMap},
	{Type: PercpuArray, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: FlagMmapable},
	{Type: PercpuArray, KeySize: 4, ValueSize: 32769, MaxEntries: 1},
	{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2, Name: "printf"},
	{Type: PerfEventArray, KeySize: 4, ValueSize: 8, MaxEntries: 2},
	{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2, Flags: FlagPreserveElems},
	{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2, Flags: FlagRdonlyProg},
	{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2, Flags: FlagMmapable},
	{Type: ProgArray, KeySize: 4, ValueSize: 4, MaxEntries: 8},
	{Type: ProgArray, KeySize: 4, ValueSize: 4, MaxEntries: 0},
	{Type: CgroupArray, KeySize: 4, ValueSize: 4, MaxEntries: 1, Name: "cgroup_map"},
	{Type: CgroupArray, KeySize: 4, ValueSize: 8, MaxEntries: 1},
	{Type: CgroupArray, KeySize: 4, ValueSize: 4, MaxEntries: 1, Flags: FlagRdonlyProg},
	{Type: StackTrace, KeySize: 4, ValueSize: 8 * 127, MaxEntries: 1024},
	{Type: StackTrace, KeySize: 4, ValueSize: 8 * 128, MaxEntries: 1024},
	{Type: StackTrace, KeySize: 4, ValueSize: 12, MaxEntries: 16},
	{Type: StackTrace, KeySize: 8, ValueSize: 16, MaxEntries: 16},
	{Type: StackTrace, KeySize: 4, ValueSize: 32, MaxEntries: 16, Flags: FlagStackBuildID},
	{Type: StackTrace, KeySize: 4, ValueSize: 40, MaxEntries: 16, Flags: FlagStackBuildID},
	{Type: StackTrace, KeySize: 4, ValueSize: 16, MaxEntries: 16, Flags: FlagRdonlyProg},
	{Type: StackTrace, KeySize: 4, ValueSize: 16, MaxEntries: 0},
	{Type: RingBuf, MaxEntries: 4096},
	{Type: RingBuf, MaxEntries: 262144, Name: "events"},
	{Type: RingBuf, MaxEntries: 4095},
	{Type: RingBuf, MaxEntries: 8192 + 4096},
	{Type: RingBuf, KeySize: 4, MaxEntries: 4096},
	{Type: RingBuf, ValueSize: 4, MaxEntries: 4096},
	{Type: RingBuf, MaxEntries: 4096, Flags: FlagMmapable},
	{Type: RingBuf, MaxEntries: 4096, Flags: FlagRdonlyProg},
	{Type: RingBuf, MaxEntries: 0},
	{Type: 99, KeySize: 4, ValueSize: 4, MaxEntries: 1},
}

func TestCreateMatchesKernel(t *testing.T) {
	kernelAvailable(t)
	for _, s := range createCases {
		t.Run(fmt.Sprintf("%v/k%d/v%d/n%d/f%#x/%q", s.Type, s.KeySize, s.ValueSize, s.MaxEntries, s.Flags, s.Name), func(t *testing.T) {
			kfd, kerr := kernelCreate(&s)
			if kerr == nil {
				unix.Close(kfd)
			}
			m, err := Create(&s, nil)
			if err == nil {
				m.Close()
			}
			if errnoOf(err) != errnoOf(kerr) {
				t.Errorf("kernel: %v, ours: %v", kerr, err)
			}
		})
	}
}
