package maps

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Type is a map type, numbered as the kernel's enum bpf_map_type.
type Type uint32

// Map types this package implements.
const (
	Hash           Type = 1
	Array          Type = 2
	ProgArray      Type = 3
	PerfEventArray Type = 4
	PercpuHash     Type = 5
	PercpuArray    Type = 6
	StackTrace     Type = 7
	CgroupArray    Type = 8
	LRUHash        Type = 9
	LRUPercpuHash  Type = 10
	RingBuf        Type = 27

	// perfRingType marks the control page of a perf event buffer, which is not a map.
	perfRingType Type = 0xeb000001
)

var typeNames = map[Type]string{
	Hash: "hash", Array: "array", ProgArray: "prog_array", PerfEventArray: "perf_event_array",
	PercpuHash: "percpu_hash", PercpuArray: "percpu_array", StackTrace: "stack_trace", CgroupArray: "cgroup_array",
	LRUHash: "lru_hash", LRUPercpuHash: "lru_percpu_hash", RingBuf: "ringbuf",
	perfRingType: "perf_ring",
}

// String returns the type's name as bpftool prints it.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return "unknown"
}

// PerCPU reports whether values of t are per-CPU.
func (t Type) PerCPU() bool {
	return t == PercpuHash || t == PercpuArray || t == LRUPercpuHash
}

func (t Type) isHash() bool {
	return t == Hash || t == PercpuHash || t == LRUHash || t == LRUPercpuHash
}

func (t Type) isLRU() bool { return t == LRUHash || t == LRUPercpuHash }

func (t Type) isFdArray() bool { return t == ProgArray || t == PerfEventArray || t == CgroupArray }

// Map creation flags (BPF_MAP_CREATE map_flags).
const (
	FlagNoPrealloc    = 1 << 0
	FlagNoCommonLRU   = 1 << 1
	FlagNumaNode      = 1 << 2
	FlagRdonly        = 1 << 3
	FlagWronly        = 1 << 4
	FlagStackBuildID  = 1 << 5
	FlagZeroSeed      = 1 << 6
	FlagRdonlyProg    = 1 << 7
	FlagWronlyProg    = 1 << 8
	FlagClone         = 1 << 9
	FlagMmapable      = 1 << 10
	FlagPreserveElems = 1 << 11
	FlagInnerMap      = 1 << 12

	flagAccessMask = FlagRdonly | FlagRdonlyProg | FlagWronly | FlagWronlyProg
)

// Element update flags (BPF_MAP_UPDATE_ELEM flags, bpf_map_update_elem's last argument).
const (
	UpdateAny     = 0 // BPF_ANY: create or update
	UpdateNoExist = 1 // BPF_NOEXIST: create only
	UpdateExist   = 2 // BPF_EXIST: update only
	UpdateLock    = 4 // BPF_F_LOCK: copy under the value's bpf_spin_lock
)

// Flags of bpf_perf_event_output, bpf_get_stackid and the ringbuf helpers.
const (
	FlagIndexMask   = 0xffffffff // BPF_F_INDEX_MASK
	FlagCurrentCPU  = 0xffffffff // BPF_F_CURRENT_CPU
	FlagSkipMask    = 0xff       // BPF_F_SKIP_FIELD_MASK
	FlagUserStack   = 1 << 8     // BPF_F_USER_STACK
	FlagFastCmp     = 1 << 9     // BPF_F_FAST_STACK_CMP
	FlagReuseStack  = 1 << 10    // BPF_F_REUSE_STACKID
	RingNoWakeup    = 1 << 0     // BPF_RB_NO_WAKEUP
	RingForceWakeup = 1 << 1     // BPF_RB_FORCE_WAKEUP
)

// bpf_ringbuf_query flags.
const (
	RingAvailData = 0 // BPF_RB_AVAIL_DATA
	RingSize      = 1 // BPF_RB_RING_SIZE
	RingConsPos   = 2 // BPF_RB_CONS_POS
	RingProdPos   = 3 // BPF_RB_PROD_POS
)

// ENOTSUPP is the kernel-internal errno 524 that bpf(2) returns for operations a map type
// lacks (it has no name in syscall).
const ENOTSUPP = syscall.Errno(524)

// Errnos used here, for brevity.
const (
	eINVAL  = unix.EINVAL
	eNOENT  = unix.ENOENT
	eEXIST  = unix.EEXIST
	e2BIG   = unix.E2BIG
	eNOMEM  = unix.ENOMEM
	eBUSY   = unix.EBUSY
	ePERM   = unix.EPERM
	eFAULT  = unix.EFAULT
	eAGAIN  = unix.EAGAIN
	eNOSPC  = unix.ENOSPC
	eOPNOTS = unix.EOPNOTSUPP
	eBADF   = unix.EBADF
)
