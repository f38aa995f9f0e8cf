package maps

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ringReader reads a BPF ringbuf through its own mappings of the map fd, exactly as libbpf's
// ring_buffer does: the consumer page RW at offset 0, the producer page and twice the data RO at
// offset 4096.
type ringReader struct {
	cons, prod []byte
	mask       uint64
}

func newRingReader(t testing.TB, fd int, size uint64) *ringReader {
	t.Helper()
	cons, err := unix.Mmap(fd, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := unix.Mmap(fd, pageSize, int(pageSize+2*size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	r := &ringReader{cons: cons, prod: prod, mask: size - 1}
	t.Cleanup(func() { unix.Munmap(cons); unix.Munmap(prod) })
	return r
}

// consume returns the committed records available, stopping at a busy one, and advances the
// consumer position past them (discarded records are skipped, as libbpf skips them).
func (r *ringReader) consume() (records [][]byte, busy bool) {
	consPos := (*uint64)(unsafe.Pointer(&r.cons[0]))
	prodPos := (*uint64)(unsafe.Pointer(&r.prod[0]))
	cons := atomic.LoadUint64(consPos)
	for prod := atomic.LoadUint64(prodPos); cons < prod; {
		off := pageSize + cons&r.mask
		l := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.prod[off])))
		if l&ringBusyBit != 0 {
			busy = true
			break
		}
		size := uint64(l &^ ringDiscardBit)
		if l&ringDiscardBit == 0 {
			records = append(records, append([]byte(nil), r.prod[off+8:off+8+size]...))
		}
		cons += roundUp8(size + 8)
		atomic.StoreUint64(consPos, cons)
	}
	return records, busy
}

// perfReader reads a perf event buffer through its own mapping of the fd, as libbpf's
// perf_event_read_simple does: records between data_tail and data_head, copied out when they
// wrap.
type perfReader struct {
	mem   []byte
	dsize uint64
}

func newPerfReader(t testing.TB, fd int, dsize uint64) *perfReader {
	t.Helper()
	mem, err := unix.Mmap(fd, 0, int(pageSize+dsize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return &perfReader{mem: mem, dsize: dsize}
}

type perfRecord struct {
	typ  uint32
	misc uint16
	raw  []byte // SAMPLE: the raw part (with its padding); LOST: id and count
}

func (p *perfReader) read() []perfRecord {
	head := atomic.LoadUint64((*uint64)(unsafe.Pointer(&p.mem[perfDataHeadOff])))
	tailp := (*uint64)(unsafe.Pointer(&p.mem[perfDataTailOff]))
	tail := atomic.LoadUint64(tailp)
	data := p.mem[pageSize:]
	var out []perfRecord
	for tail != head {
		var rec []byte
		off := tail & (p.dsize - 1)
		size := uint64(binary.LittleEndian.Uint16(ringAt(data, off+6, 2, p.dsize)))
		rec = ringAt(data, off, size, p.dsize)
		r := perfRecord{typ: binary.LittleEndian.Uint32(rec), misc: binary.LittleEndian.Uint16(rec[4:])}
		switch r.typ {
		case perfRecordSample:
			n := binary.LittleEndian.Uint32(rec[8:])
			r.raw = rec[12 : 12+n]
		default:
			r.raw = rec[8:]
		}
		out = append(out, r)
		tail += size
	}
	atomic.StoreUint64(tailp, tail)
	return out
}

// ringAt copies n bytes at off of a ring of size bytes, wrapping.
func ringAt(data []byte, off, n, size uint64) []byte {
	b := make([]byte, n)
	for i := range n {
		b[i] = data[(off+i)&(size-1)]
	}
	return b
}
