package maps

// The binary layout of a map's memfd (docs/maps.md holds the full description; cshim/maps/maps.h
// mirrors these numbers). Every object ends with a one-page control block; the areas the tool
// may mmap (array values, ringbuf pages, the perf event page and data) start at offset 0 at the
// offsets the kernel gives them.

const pageSize = 4096

// ctlMagic is "ebpfumap" read as a little-endian u64.
const ctlMagic = 0x70616d7566706265

// layoutVersion changes whenever the layout does.
const layoutVersion = 1

// Offsets in the control page. Immutable fields come first; each mutable word sits on its own
// 64-byte line.
const (
	ctlMagicOff      = 0   // u64
	ctlVersionOff    = 8   // u32
	ctlTypeOff       = 12  // u32
	ctlKeySizeOff    = 16  // u32
	ctlValueSizeOff  = 20  // u32
	ctlMaxEntriesOff = 24  // u32
	ctlFlagsOff      = 28  // u32
	ctlNCPUOff       = 32  // u32
	ctlIDOff         = 36  // u32
	ctlNameOff       = 40  // [16]byte
	ctlSeedOff       = 56  // u32
	ctlElemSizeOff   = 64  // u32
	ctlNBucketsOff   = 68  // u32
	ctlNElemsOff     = 72  // u32
	ctlNExtraOff     = 76  // u32
	ctlDataOffOff    = 80  // u64
	ctlDataSizeOff   = 88  // u64
	ctlBucketsOffOff = 96  // u64
	ctlFileSizeOff   = 104 // u64
	ctlRingCPUOff    = 112 // i32 (perf ring: the event's CPU, -1 for any)

	ctlFrozenOff    = 192 // u32
	ctlFreeHeadOff  = 256 // u64: first element of the main free list (index+1), 0 when empty
	ctlExtraHeadOff = 320 // u64: first element of the extra free list
	ctlBumpOff      = 384 // u32: elements of the main pool handed out so far
	ctlExtraBumpOff = 388 // u32: elements of the extra pool handed out so far
	ctlTickOff      = 448 // u32
	ctlHandOff      = 452 // u32
	ctlLockOff      = 512 // u32: owner lock (hash writers, ring producers)
	ctlNotifySeqOff = 576 // u32
	ctlWaitersOff   = 580 // u32
	ctlPendingOff   = 640 // u64 (ringbuf: oldest position that may still be busy)
	ctlHeadOff      = 640 // u64 (perf ring: the producer's head, published as data_head)
	ctlLostOff      = 704 // u64 (perf ring: records lost since the last LOST record)
	ctlPerfSizeOff  = 768 // u64 (perf ring: data size the tool mapped; 0 until known)
	ctlEnabledOff   = 776 // u32 (perf ring: the event is enabled)
	ctlEventIDOff   = 784 // u64 (perf ring: id written in PERF_RECORD_LOST)
)

// Hash element header: next, hash, state, owner, atime, pool; then the key and the value.
const (
	elemNextOff  = 0
	elemHashOff  = 4
	elemStateOff = 8
	elemOwnerOff = 12
	elemAtimeOff = 16
	elemPoolOff  = 20
	elemKeyOff   = 24
)

// Element states.
const (
	stateFree = 0 // in a free list, or never used
	stateLive = 1 // linked in its bucket
	stateBusy = 2 // owned by elemOwner: popped and not yet linked, or being unlinked
)

// Links: 0 ends the free list; nullsBit|b ends the chain of bucket b; other values are element
// indexes plus one.
const nullsBit = 0x80000000

// Stack trace bucket header: lock, nr (0: empty), hash, pad; then value_size bytes.
const (
	stackLockOff = 0
	stackNrOff   = 4
	stackHashOff = 8
	stackDataOff = 16
	buildIDSize  = 32 // sizeof(struct bpf_stack_build_id)
)

// Ring buffer (BPF_MAP_TYPE_RINGBUF) file offsets: consumer page, producer page, data, mirror.
const (
	ringConsumerOff = 0
	ringProducerOff = pageSize
	ringDataOff     = 2 * pageSize
	ringHdrSize     = 8
	ringBusyBit     = 1 << 31
	ringDiscardBit  = 1 << 30
	ringPgOffBase   = 3 // the kernel's first data page follows struct bpf_ringbuf's three pages
)

// Perf event buffer: struct perf_event_mmap_page at 0, data from pageSize.
const (
	perfDataHeadOff   = 1024
	perfDataTailOff   = 1032
	perfDataOffsetOff = 1040
	perfDataSizeOff   = 1048
	perfRecordLost    = 2
	perfRecordSample  = 9
)

// layout is where a map's areas lie, computed from its parameters alone, so that a reader
// (Go or C) never trusts offsets it reads from shared memory.
type layout struct {
	elemSize   uint32 // array slot, fd entry, hash element or stack bucket stride
	nBuckets   uint32
	nElems     uint32
	nExtra     uint32
	dataOff    uint64
	dataSize   uint64
	bucketsOff uint64
	fileSize   uint64
}

func pageRound(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

// roundPow2 returns the smallest power of two >= n (n <= 2^32).
func roundPow2(n uint64) uint64 {
	p := uint64(1)
	for p < n {
		p <<= 1
	}
	return p
}

// computeLayout returns the layout of a map of the given parameters (after Validate), or ENOMEM
// or E2BIG when it is too large.
func computeLayout(t Type, keySize, valueSize, maxEntries, ncpu uint32, maxData uint64) (layout, error) {
	var l layout
	slot := roundUp8(uint64(valueSize))
	switch {
	case t == Array || t == PercpuArray:
		n := uint64(maxEntries)
		if t == PercpuArray {
			n *= uint64(ncpu)
		}
		l.elemSize = uint32(slot)
		l.dataSize = pageRound(n * slot)
		if n*slot > maxMapBytes {
			return l, eNOMEM
		}
	case t.isFdArray():
		l.elemSize = 4
		l.dataSize = pageRound(uint64(maxEntries) * 4)
	case t.isHash():
		nb := roundPow2(uint64(maxEntries))
		if nb > 0xffffffff/16 {
			return l, e2BIG
		}
		vsz := slot
		if t.PerCPU() {
			vsz *= uint64(ncpu)
		}
		es := elemKeyOff + roundUp8(uint64(keySize)) + vsz
		if t == Hash {
			l.nExtra = ncpu
		}
		ne := uint64(maxEntries) + uint64(l.nExtra)
		if es*ne > maxMapBytes || ne >= nullsBit {
			return l, eNOMEM
		}
		l.elemSize = uint32(es)
		l.nBuckets = uint32(nb)
		l.nElems = uint32(ne)
		l.bucketsOff = 0
		l.dataOff = pageRound(nb * 4)
		l.dataSize = pageRound(es * ne)
	case t == StackTrace:
		nb := roundPow2(uint64(maxEntries))
		es := stackDataOff + uint64(valueSize)
		if es*nb > maxMapBytes {
			return l, eNOMEM
		}
		l.elemSize = uint32(es)
		l.nBuckets = uint32(nb)
		l.dataSize = pageRound(es * nb)
	case t == RingBuf:
		l.dataOff = ringDataOff
		l.dataSize = uint64(maxEntries)
		if 2*l.dataSize > maxMapBytes {
			return l, eNOMEM
		}
		l.fileSize = ringDataOff + 2*l.dataSize + pageSize
		return l, nil
	case t == perfRingType:
		l.dataOff = pageSize
		l.dataSize = maxData
		l.fileSize = pageSize + maxData + pageSize
		return l, nil
	default:
		return l, eINVAL
	}
	l.fileSize = l.dataOff + l.dataSize + pageSize
	return l, nil
}
