package maps

import (
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BPF ring buffers (BPF_MAP_TYPE_RINGBUF) keep the kernel's layout where the tool maps them:
// file offset 0 is the consumer page (consumer_pos, written by the tool), 4096 the producer page
// (producer_pos), 8192 the data (max_entries bytes). The kernel maps the data pages twice in a
// row so that a record that wraps is contiguous; a memfd cannot alias its own pages, so the file
// holds a second data-sized area, the mirror, right after the data: producers write a record
// through the linear mapping, so the part of a wrapped record past the end of the data lands in
// the mirror, which is exactly where the tool's linear mapping of offset 4096 reads it. Nothing
// reads the data pages a wrapped record skipped.
//
// Records have the kernel's 8-byte header {u32 len | busy<<31 | discard<<30, u32 pg_off}. While
// a record is busy its pg_off holds the owner id of its producer, so that a record whose producer
// died can be discarded (Recover); on commit pg_off becomes the kernel's value. Reservation
// takes the ring lock (an owner lock; see docs/maps.md) for a few stores; commit is lock-free.

func (m *Map) ringMask() uint64 { return m.l.dataSize - 1 }

func (m *Map) consumerPos() uint64 { return m.mem.load64(ringConsumerOff) }
func (m *Map) producerPos() uint64 { return m.mem.load64(ringProducerOff) }

// Reserve is bpf_ringbuf_reserve: it returns the address of size bytes of a new busy record,
// or 0 when the ring is full, flags are not 0 or size is too large.
func (m *Map) Reserve(size uint64, flags uint64) uint64 {
	if m.typ != RingBuf || flags != 0 || size > ringbufMaxRecord {
		return 0
	}
	n := roundUp8(size + ringHdrSize)
	if n > m.l.dataSize {
		return 0
	}
	cons := m.consumerPos()
	_, err := m.lock(m.mem, m.ctl+ctlLockOff)
	if err != nil {
		return 0
	}
	prod := m.producerPos()
	pend := m.mem.load64(m.ctl + ctlPendingOff)
	for pend < prod {
		l := m.mem.load32(m.l.dataOff + pend&m.ringMask())
		if l&ringBusyBit != 0 {
			break
		}
		pend += roundUp8(uint64(l&^ringDiscardBit) + ringHdrSize)
	}
	m.mem.store64(m.ctl+ctlPendingOff, pend)
	next := prod + n
	if next-cons > m.ringMask() || next-pend > m.ringMask() {
		m.unlock(m.mem, m.ctl+ctlLockOff)
		return 0
	}
	hdr := m.l.dataOff + prod&m.ringMask()
	m.mem.store32(hdr+4, m.owner)
	m.mem.store32(hdr, uint32(size)|ringBusyBit)
	m.mem.store64(ringProducerOff, next)
	m.unlock(m.mem, m.ctl+ctlLockOff)
	return m.mem.addr(hdr + ringHdrSize)
}

// recordHeader returns the file offset of the header of the record at addr, or false when addr
// is not a record of this ring.
func (m *Map) recordHeader(addr uint64) (uint64, bool) {
	base := m.mem.addr(0)
	if m.typ != RingBuf || addr < base+m.l.dataOff+ringHdrSize || addr >= base+m.l.dataOff+m.l.dataSize+ringHdrSize ||
		addr%8 != 0 {
		return 0, false
	}
	return addr - base - ringHdrSize, true
}

// Submit is bpf_ringbuf_submit of the record at addr.
func (m *Map) Submit(addr uint64, flags uint64) { m.commit(addr, flags, false) }

// Discard is bpf_ringbuf_discard of the record at addr.
func (m *Map) Discard(addr uint64, flags uint64) { m.commit(addr, flags, true) }

func (m *Map) commit(addr uint64, flags uint64, discard bool) {
	hdr, ok := m.recordHeader(addr)
	if !ok {
		return
	}
	l := m.mem.load32(hdr) &^ ringBusyBit
	if discard {
		l |= ringDiscardBit
	}
	m.mem.store32(hdr+4, uint32(ringPgOffBase+(hdr-m.l.dataOff)/pageSize))
	m.mem.store32(hdr, l)
	rec := hdr - m.l.dataOff
	if flags&RingForceWakeup != 0 || m.consumerPos()&m.ringMask() == rec && flags&RingNoWakeup == 0 {
		m.notify()
	}
}

// Output is bpf_ringbuf_output: EINVAL for unknown flags, EAGAIN when the ring is full.
func (m *Map) Output(data []byte, flags uint64) error {
	if flags&^(RingNoWakeup|RingForceWakeup) != 0 {
		return eINVAL
	}
	rec := m.Reserve(uint64(len(data)), 0)
	if rec == 0 {
		return eAGAIN
	}
	off := rec - m.mem.addr(0)
	copy(m.mem[off:off+uint64(len(data))], data)
	m.commit(rec, flags, false)
	return nil
}

// Query is bpf_ringbuf_query.
func (m *Map) Query(flags uint64) uint64 {
	if m.typ != RingBuf {
		return 0
	}
	switch flags {
	case RingAvailData:
		return m.producerPos() - m.consumerPos()
	case RingSize:
		return m.l.dataSize
	case RingConsPos:
		return m.consumerPos()
	case RingProdPos:
		return m.producerPos()
	}
	return 0
}

// RingbufSize returns the data size of a ringbuf (max_entries): the tool maps 4096 bytes at
// offset 0 and 4096 + 2*size bytes at offset 4096.
func (m *Map) RingbufSize() uint64 {
	if m.typ != RingBuf {
		return 0
	}
	return m.l.dataSize
}

// ringRecover discards the busy records of producers that died.
func (m *Map) ringRecover() {
	for pos := m.consumerPos(); pos < m.producerPos(); {
		hdr := m.l.dataOff + pos&m.ringMask()
		l := m.mem.load32(hdr)
		if l&ringBusyBit != 0 {
			if o := m.mem.load32(hdr + 4); !m.alive(o) {
				m.mem.cas32(hdr, l, l&^ringBusyBit|ringDiscardBit)
			}
		}
		pos += roundUp8(uint64(l&^(ringBusyBit|ringDiscardBit)) + ringHdrSize)
	}
}

// Notification: producers count committed records in the control page's notify word and wake
// a futex waiter on it (FUTEX_WAKE, shared) when the waiters word says one may sleep; the
// server waits there to wake the tool's epoll.

// futex(2) operations on shared (not process-private) words.
const (
	futexWait = 0
	futexWake = 1
)

func (m *Map) notify() { notifyWord(m.mem, m.ctl) }

func notifyWord(mem shm, ctl uint64) {
	mem.add32(ctl+ctlNotifySeqOff, 1)
	if mem.load32(ctl+ctlWaitersOff) != 0 {
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(mem.u32(ctl+ctlNotifySeqOff))),
			futexWake, math.MaxInt32, 0, 0, 0)
	}
}

// NotifySeq returns the count of notifications so far.
func (m *Map) NotifySeq() uint32 { return m.mem.load32(m.ctl + ctlNotifySeqOff) }

// WaitNotify waits until the notification count differs from seq or timeout passes, and
// returns the count.
func (m *Map) WaitNotify(seq uint32, timeout time.Duration) uint32 {
	return waitWord(m.mem, m.ctl, seq, timeout)
}

func waitWord(mem shm, ctl uint64, seq uint32, timeout time.Duration) uint32 {
	mem.add32(ctl+ctlWaitersOff, 1)
	defer mem.add32(ctl+ctlWaitersOff, ^uint32(0))
	if cur := mem.load32(ctl + ctlNotifySeqOff); cur != seq {
		return cur
	}
	ts := unix.NsecToTimespec(int64(timeout))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(mem.u32(ctl+ctlNotifySeqOff))),
		futexWait, uintptr(seq), uintptr(unsafe.Pointer(&ts)), 0, 0)
	return mem.load32(ctl + ctlNotifySeqOff)
}
