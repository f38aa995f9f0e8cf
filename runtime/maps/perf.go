package maps

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// PerfRing is the buffer of one perf event (PERF_TYPE_SOFTWARE/PERF_COUNT_SW_BPF_OUTPUT) in the
// kernel's layout, because tools mmap it and read it themselves: file offset 0 is struct
// perf_event_mmap_page (data_head at 1024, data_tail at 1032, data_offset, data_size), the data
// follows from 4096. The tool decides the data size when it maps (1+2^n) pages, after
// perf_event_open gave it the fd, so the file holds room for maxData bytes of data and the
// server says how much the tool mapped with SetDataSize before the event is enabled.
//
// Records are PERF_RECORD_SAMPLE {header{type 9, misc, size}, u32 raw size, raw data padded to
// 8 bytes} and PERF_RECORD_LOST {header{type 2, 0, 24}, u64 id, u64 lost}. Producers (the
// threads of many processes) serialise on the ring lock, an owner lock held while one record is
// copied; the head is private in the control page and published to data_head after the copy.
type PerfRing struct {
	fd    int
	mem   shm
	ctl   uint64
	owner uint32
	alive func(uint32) bool
}

// Perf record misc values: where the sample was taken.
const (
	PerfMiscKernel = 1 // PERF_RECORD_MISC_KERNEL
	PerfMiscUser   = 2 // PERF_RECORD_MISC_USER
)

// NewPerfRing makes the buffer of a perf event opened for cpu (-1: any CPU), with room for up
// to maxData bytes of data (a power of two, at least a page).
func NewPerfRing(cpu int, maxData uint64, opts *Options) (*PerfRing, error) {
	if maxData < pageSize || maxData&(maxData-1) != 0 || maxData > maxMapBytes {
		return nil, fmt.Errorf("perf ring of %d bytes: %w", maxData, eINVAL)
	}
	l, _ := computeLayout(perfRingType, 0, 0, 0, 1, maxData)
	fd, err := newMemfd(fmt.Sprintf("ebpfu-perf:cpu%d", cpu), l.fileSize)
	if err != nil {
		return nil, err
	}
	mem, err := mapFile(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := l.fileSize - pageSize
	mem.store32(c+ctlVersionOff, layoutVersion)
	mem.store32(c+ctlTypeOff, uint32(perfRingType))
	mem.store32(c+ctlNCPUOff, 1)
	mem.store32(c+ctlRingCPUOff, uint32(int32(cpu)))
	writeLayout(mem, c, l)
	mem.store64(c+ctlMagicOff, ctlMagic)
	r, err := newPerfRing(fd, mem, opts)
	if err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

// OpenPerfRing maps the perf ring held by the memfd fd. It keeps its own duplicate of fd.
func OpenPerfRing(fd int, opts *Options) (*PerfRing, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open perf ring fd %d: %w", fd, err)
	}
	mem, err := mapFile(dup)
	if err != nil {
		unix.Close(dup)
		return nil, err
	}
	r, err := newPerfRing(dup, mem, opts)
	if err != nil {
		unix.Munmap(mem)
		unix.Close(dup)
		return nil, fmt.Errorf("open perf ring fd %d: %w", fd, err)
	}
	return r, nil
}

func newPerfRing(fd int, mem shm, opts *Options) (*PerfRing, error) {
	c := uint64(len(mem)) - pageSize
	if mem.load64(c+ctlMagicOff) != ctlMagic || mem.load32(c+ctlVersionOff) != layoutVersion ||
		Type(mem.load32(c+ctlTypeOff)) != perfRingType {
		return nil, fmt.Errorf("not an ebpfu perf ring: %w", eINVAL)
	}
	l, _ := computeLayout(perfRingType, 0, 0, 0, 1, uint64(len(mem))-2*pageSize)
	if l.dataSize != mem.load64(c+ctlDataSizeOff) || l.dataOff != mem.load64(c+ctlDataOffOff) {
		return nil, fmt.Errorf("perf ring control page disagrees with its size: %w", eINVAL)
	}
	r := &PerfRing{fd: fd, mem: mem, ctl: c, owner: ProcessOwner(), alive: Alive}
	if opts != nil {
		if opts.Owner != 0 {
			r.owner = opts.Owner
		}
		if opts.Alive != nil {
			r.alive = opts.Alive
		}
	}
	return r, nil
}

// Close unmaps the ring and closes this PerfRing's memfd.
func (r *PerfRing) Close() error {
	err := unix.Munmap(r.mem)
	if cerr := unix.Close(r.fd); err == nil {
		err = cerr
	}
	r.mem = nil
	return err
}

// FD returns the ring's memfd: what the server injects as the perf event fd.
func (r *PerfRing) FD() int { return r.fd }

// MaxDataSize returns the room for data in the file.
func (r *PerfRing) MaxDataSize() uint64 { return uint64(len(r.mem)) - 2*pageSize }

// CPU returns the CPU the event was opened for (-1: any).
func (r *PerfRing) CPU() int { return int(int32(r.mem.load32(r.ctl + ctlRingCPUOff))) }

// SetDataSize records that the tool mapped size bytes of data (its mmap length minus one
// page): a power of two no larger than MaxDataSize. It fills data_offset and data_size of the
// mmap page as the kernel does at mmap time.
func (r *PerfRing) SetDataSize(size uint64) error {
	if size < pageSize || size&(size-1) != 0 || size > r.MaxDataSize() {
		return fmt.Errorf("perf ring data size %d: %w", size, eINVAL)
	}
	r.mem.store64(perfDataOffsetOff, pageSize)
	r.mem.store64(perfDataSizeOff, size)
	r.mem.store64(r.ctl+ctlPerfSizeOff, size)
	return nil
}

// DataSize returns the data size set by SetDataSize, or 0.
func (r *PerfRing) DataSize() uint64 { return r.mem.load64(r.ctl + ctlPerfSizeOff) }

// SetEnabled records PERF_EVENT_IOC_ENABLE / DISABLE: output to a disabled event fails with
// EOPNOTSUPP, as it does in the kernel (the event is not on a CPU).
func (r *PerfRing) SetEnabled(on bool) {
	v := uint32(0)
	if on {
		v = 1
	}
	r.mem.store32(r.ctl+ctlEnabledOff, v)
}

// SetEventID sets the id that PERF_RECORD_LOST records carry.
func (r *PerfRing) SetEventID(id uint64) { r.mem.store64(r.ctl+ctlEventIDOff, id) }

// Lost returns the count of records lost and not yet reported in a PERF_RECORD_LOST.
func (r *PerfRing) Lost() uint64 { return r.mem.load64(r.ctl + ctlLostOff) }

// Output appends a PERF_RECORD_SAMPLE with data as its raw part, for a program running on cpu:
// bpf_perf_event_output after the array lookup. It fails with EOPNOTSUPP when the event is
// disabled or belongs to another CPU, ENOSPC when the tool has not mapped the ring or it is
// full (the record is then counted lost and reported before the next record that fits), E2BIG
// when the record is larger than a perf record can be, EBUSY on a recursion.
func (r *PerfRing) Output(data []byte, misc uint16, cpu uint32) error {
	if r.mem.load32(r.ctl+ctlEnabledOff) == 0 {
		return eOPNOTS
	}
	if rc := int32(r.mem.load32(r.ctl + ctlRingCPUOff)); rc >= 0 && uint32(rc) != cpu {
		return eOPNOTS
	}
	raw := roundUp8(uint64(len(data))+4) - 4
	size := 8 + 4 + raw
	if size > 0xffff {
		return e2BIG
	}
	if _, err := lockWord(r.mem, r.ctl+ctlLockOff, r.owner, r.alive); err != nil {
		return err
	}
	err := r.write(data, misc, raw, size)
	r.mem.store32(r.ctl+ctlLockOff, 0)
	if err == nil {
		notifyWord(r.mem, r.ctl)
	}
	return err
}

func (r *PerfRing) write(data []byte, misc uint16, raw, size uint64) error {
	dsize := r.DataSize()
	if dsize == 0 || dsize > r.MaxDataSize() {
		return eNOSPC
	}
	head := r.mem.load64(r.ctl + ctlHeadOff)
	tail := r.mem.load64(perfDataTailOff)
	lost := r.mem.load64(r.ctl + ctlLostOff)
	need := size
	if lost != 0 {
		need += 24
	}
	if head-tail > dsize || head+need-tail > dsize {
		r.mem.store64(r.ctl+ctlLostOff, lost+1)
		return eNOSPC
	}
	var rec [24]byte
	if lost != 0 {
		binary.LittleEndian.PutUint32(rec[0:], perfRecordLost)
		binary.LittleEndian.PutUint16(rec[6:], 24)
		binary.LittleEndian.PutUint64(rec[8:], r.mem.load64(r.ctl+ctlEventIDOff))
		binary.LittleEndian.PutUint64(rec[16:], lost)
		head = r.put(head, dsize, rec[:24])
		r.mem.store64(r.ctl+ctlLostOff, 0)
	}
	binary.LittleEndian.PutUint32(rec[0:], perfRecordSample)
	binary.LittleEndian.PutUint16(rec[4:], misc)
	binary.LittleEndian.PutUint16(rec[6:], uint16(size))
	binary.LittleEndian.PutUint32(rec[8:], uint32(raw))
	head = r.put(head, dsize, rec[:12])
	head = r.put(head, dsize, data)
	var zero [8]byte
	head = r.put(head, dsize, zero[:raw-uint64(len(data))])
	r.mem.store64(r.ctl+ctlHeadOff, head)
	r.mem.store64(perfDataHeadOff, head)
	return nil
}

// put copies b into the data at position pos (modulo dsize) and returns the position after it.
func (r *PerfRing) put(pos, dsize uint64, b []byte) uint64 {
	for len(b) > 0 {
		off := pos & (dsize - 1)
		n := copy(r.mem[pageSize+off:pageSize+dsize], b)
		b = b[n:]
		pos += uint64(n)
	}
	return pos
}

// NotifySeq returns the count of records written so far (the producers' notification word).
func (r *PerfRing) NotifySeq() uint32 { return r.mem.load32(r.ctl + ctlNotifySeqOff) }

// WaitNotify waits until the notification count differs from seq or timeout passes.
func (r *PerfRing) WaitNotify(seq uint32, timeout time.Duration) uint32 {
	return waitWord(r.mem, r.ctl, seq, timeout)
}

// Recover releases the ring lock when its holder died.
func (r *PerfRing) Recover() {
	if o := r.mem.load32(r.ctl + ctlLockOff); o != 0 && !r.alive(o) {
		r.mem.cas32(r.ctl+ctlLockOff, o, 0)
	}
}

// PerfEventOutput is bpf_perf_event_output on a PERF_EVENT_ARRAY for a program running on cpu:
// flags select the entry (BPF_F_CURRENT_CPU: cpu's), ring maps the entry's event id to its ring.
// Errors are the kernel's: EINVAL for unknown flags, E2BIG for an index past the end, ENOENT for
// an empty entry, then those of PerfRing.Output.
func (m *Map) PerfEventOutput(flags uint64, cpu uint32, data []byte, misc uint16, ring func(ref uint32) *PerfRing) error {
	if m.typ != PerfEventArray || flags&^FlagIndexMask != 0 {
		return eINVAL
	}
	index := uint32(flags)
	if index == FlagCurrentCPU {
		index = cpu
	}
	ref, err := m.Ref(index)
	if err != nil {
		return err
	}
	r := ring(ref)
	if r == nil {
		return eNOENT
	}
	return r.Output(data, misc, cpu)
}
