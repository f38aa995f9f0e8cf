package maps

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"unsafe"
)

func mustCreate(t testing.TB, s Spec) *Map {
	t.Helper()
	if s.NumCPU == 0 {
		s.NumCPU = 2
	}
	m, err := Create(&s, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func at64(addr uint64) *uint64 { return (*uint64)(unsafe.Pointer(uintptr(addr))) }

func TestRingbufRecordsAsLibbpfReadsThem(t *testing.T) {
	m := mustCreate(t, Spec{Type: RingBuf, MaxEntries: 4096})
	r := newRingReader(t, m.FD(), 4096)
	// Records of sizes that walk the ring around several times, so that many wrap.
	var want [][]byte
	for i := range 300 {
		size := 1 + (i*37)%300
		data := bytes.Repeat([]byte{byte(i)}, size)
		data[0] = byte(i >> 8)
		switch i % 3 {
		case 0:
			if err := m.Output(data, 0); err != nil {
				t.Fatalf("output %d: %v", i, err)
			}
			want = append(want, data)
		case 1:
			addr := m.Reserve(uint64(size), 0)
			if addr == 0 {
				t.Fatalf("reserve %d failed", i)
			}
			copy(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(addr))), size), data)
			m.Submit(addr, 0)
			want = append(want, data)
		case 2:
			addr := m.Reserve(uint64(size), 0)
			m.Discard(addr, 0)
		}
		if i%4 == 3 {
			got, busy := r.consume()
			if busy {
				t.Fatal("busy record after commit")
			}
			if len(got) != len(want) {
				t.Fatalf("after %d: %d records, want %d", i, len(got), len(want))
			}
			for j := range got {
				if !bytes.Equal(got[j], want[j]) {
					t.Fatalf("after %d: record %d = %x, want %x", i, j, got[j], want[j])
				}
			}
			want = nil
		}
	}
	if got := m.Query(RingProdPos); got != m.Query(RingConsPos)+m.Query(RingAvailData) || m.Query(RingSize) != 4096 {
		t.Errorf("query: prod %d cons %d avail %d size %d", got, m.Query(RingConsPos), m.Query(RingAvailData), m.Query(RingSize))
	}
}

func TestRingbufFullBusyAndFlags(t *testing.T) {
	m := mustCreate(t, Spec{Type: RingBuf, MaxEntries: 4096})
	r := newRingReader(t, m.FD(), 4096)
	if m.Reserve(8, 1) != 0 || m.Reserve(4096, 0) != 0 || m.Reserve(ringbufMaxRecord+1, 0) != 0 {
		t.Error("reserve with flags, of the whole ring or too large succeeded")
	}
	if err := m.Output([]byte{1}, 4); !errors.Is(err, eINVAL) {
		t.Errorf("output with flags 4: %v, want EINVAL", err)
	}
	a := m.Reserve(100, 0)
	b := m.Reserve(100, 0)
	m.Submit(b, 0)
	if got, busy := r.consume(); len(got) != 0 || !busy {
		t.Errorf("consumer passed a busy record: %d records, busy %v", len(got), busy)
	}
	m.Submit(a, 0)
	if got, _ := r.consume(); len(got) != 2 {
		t.Errorf("%d records after both commits, want 2", len(got))
	}
	// Fill: records of 1024+8 bytes; the ring keeps at most 4095 bytes in flight.
	n := 0
	for m.Reserve(1016, 0) != 0 {
		n++
	}
	if n != 3 {
		t.Errorf("%d records of 1024 bytes fit in a 4096-byte ring, want 3", n)
	}
	if err := m.Output(make([]byte, 1100), 0); !errors.Is(err, eAGAIN) {
		t.Errorf("output to a full ring: %v, want EAGAIN", err)
	}
}

func TestRingbufRecoverDeadProducer(t *testing.T) {
	m := mustCreate(t, Spec{Type: RingBuf, MaxEntries: 4096})
	r := newRingReader(t, m.FD(), 4096)
	dead := uint32(0x7ffffff0) // no such thread
	other, err := Open(m.FD(), &Options{Owner: dead})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Reserve(16, 0) // its producer dies before committing
	if err := m.Output([]byte("after"), 0); err != nil {
		t.Fatal(err)
	}
	if got, busy := r.consume(); len(got) != 0 || !busy {
		t.Fatalf("consumer should stop at the dead producer's busy record")
	}
	m.Recover()
	got, busy := r.consume()
	if busy || len(got) != 1 || string(got[0][:5]) != "after" {
		t.Fatalf("after recovery: %q busy %v", got, busy)
	}
}

func TestPerfRingRecordsAndLost(t *testing.T) {
	ring, err := NewPerfRing(0, 1<<16, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	arr := mustCreate(t, Spec{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	rings := func(ref uint32) *PerfRing {
		if ref == 7 {
			return ring
		}
		return nil
	}
	if err := arr.PerfEventOutput(FlagCurrentCPU, 0, []byte("x"), PerfMiscUser, rings); !errors.Is(err, eNOENT) {
		t.Errorf("output to an empty entry: %v, want ENOENT", err)
	}
	if err := arr.Update(u32(0), u32(7), 0); err != nil {
		t.Fatal(err)
	}
	if err := arr.PerfEventOutput(FlagCurrentCPU, 0, []byte("x"), PerfMiscUser, rings); !errors.Is(err, eOPNOTS) {
		t.Errorf("output to a disabled event: %v, want EOPNOTSUPP", err)
	}
	ring.SetEnabled(true)
	if err := arr.PerfEventOutput(FlagCurrentCPU, 0, []byte("x"), PerfMiscUser, rings); !errors.Is(err, eNOSPC) {
		t.Errorf("output before the tool mapped the ring: %v, want ENOSPC", err)
	}
	const dsize = 4096
	if err := ring.SetDataSize(dsize); err != nil {
		t.Fatal(err)
	}
	rd := newPerfReader(t, ring.FD(), dsize)
	if err := arr.PerfEventOutput(1, 1, []byte("x"), PerfMiscUser, rings); !errors.Is(err, eNOENT) {
		t.Errorf("output to entry 1: %v, want ENOENT", err)
	}
	if err := arr.PerfEventOutput(0, 1, []byte("x"), PerfMiscUser, rings); !errors.Is(err, eOPNOTS) {
		t.Errorf("output from CPU 1 to CPU 0's event: %v, want EOPNOTSUPP", err)
	}
	if err := arr.PerfEventOutput(5, 0, []byte("x"), 0, rings); !errors.Is(err, e2BIG) {
		t.Errorf("output to index 5: %v, want E2BIG", err)
	}
	if err := arr.PerfEventOutput(1<<32, 0, []byte("x"), 0, rings); !errors.Is(err, eINVAL) {
		t.Errorf("output with flags above the index: %v, want EINVAL", err)
	}
	var want []string
	lost := 0
	for i := range 200 {
		msg := fmt.Sprintf("record %d %s", i, bytes.Repeat([]byte{'z'}, i%50))
		err := arr.PerfEventOutput(FlagCurrentCPU, 0, []byte(msg), PerfMiscUser, rings)
		switch {
		case err == nil:
			want = append(want, msg)
		case errors.Is(err, eNOSPC):
			lost++
		default:
			t.Fatal(err)
		}
		if i%40 == 39 {
			var got []string
			reportedLost := 0
			for _, r := range rd.read() {
				switch r.typ {
				case perfRecordSample:
					if r.misc != PerfMiscUser || len(r.raw)%8 != 4 {
						t.Fatalf("sample misc %d raw size %d", r.misc, len(r.raw))
					}
					got = append(got, string(bytes.TrimRight(r.raw, "\x00")))
				case perfRecordLost:
					reportedLost += int(binary.LittleEndian.Uint64(r.raw[8:]))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("records %q, want %q", got, want)
			}
			if reportedLost+int(ring.Lost()) != lost {
				t.Fatalf("lost %d reported + %d pending, want %d", reportedLost, ring.Lost(), lost)
			}
			want, lost = nil, int(ring.Lost())
		}
	}
}

func TestStackIDSemantics(t *testing.T) {
	m := mustCreate(t, Spec{Type: StackTrace, KeySize: 4, ValueSize: 4 * 8, MaxEntries: 4})
	a := []uint64{0x1000, 0x2000, 0x3000}
	id, err := m.StackID(a, 0)
	if err != nil {
		t.Fatal(err)
	}
	if id2, err := m.StackID(a, 0); err != nil || id2 != id {
		t.Errorf("same stack: id %d err %v, want %d", id2, err, id)
	}
	v := make([]byte, 32)
	if err := m.Lookup(u32(id), v, 0); err != nil || binary.LittleEndian.Uint64(v[16:]) != 0x3000 || binary.LittleEndian.Uint64(v[24:]) != 0 {
		t.Errorf("lookup: %x %v", v, err)
	}
	// Skip and truncation: skip 1 of 6 frames, keep value_size/8 = 4.
	long := []uint64{0xdead, 1, 2, 3, 4, 5}
	id3, err := m.StackID(long, 1|FlagReuseStack)
	if err != nil {
		t.Fatal(err)
	}
	m.Lookup(u32(id3), v, 0)
	if binary.LittleEndian.Uint64(v) != 1 || binary.LittleEndian.Uint64(v[24:]) != 4 {
		t.Errorf("skip/truncate: %x", v)
	}
	if _, err := m.StackID([]uint64{1}, 1); !errors.Is(err, eFAULT) {
		t.Errorf("skip everything: %v, want EFAULT", err)
	}
	if _, err := m.StackID(a, 1<<11); !errors.Is(err, eINVAL) {
		t.Errorf("unknown flag: %v, want EINVAL", err)
	}
	// Find two stacks with the same id: the second is EEXIST without REUSE, replaces with it.
	var b []uint64
	for i := uint64(1); ; i++ {
		b = []uint64{i, i * 3}
		raw := unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 16)
		if jhash2(raw, 0)&3 == jhash2(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), 24), 0)&3 {
			break
		}
	}
	for k := range uint32(4) {
		m.Delete(u32(k))
	}
	if got, err := m.StackID(a, 0); err != nil || got != id {
		t.Fatalf("stack a again: %d %v, want %d", got, err, id)
	}
	if _, err := m.StackID(b, 0); !errors.Is(err, eEXIST) {
		t.Errorf("colliding stack: %v, want EEXIST", err)
	}
	if got, err := m.StackID(b, FlagFastCmp); !errors.Is(err, eEXIST) {
		t.Errorf("colliding stack, fast compare with another hash: %d %v, want EEXIST", got, err)
	}
	if got, err := m.StackID(b, FlagReuseStack); err != nil || got != id {
		t.Errorf("colliding stack with REUSE: %d %v, want %d", got, err, id)
	}
	if err := m.Update(u32(0), v, 0); !errors.Is(err, eINVAL) {
		t.Errorf("update of a stack map: %v, want EINVAL", err)
	}
}

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	for _, typ := range []Type{LRUHash, LRUPercpuHash} {
		m := mustCreate(t, Spec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 8})
		v := make([]byte, m.SyscallValueSize())
		for k := range uint32(8) {
			if err := m.Update(u32(k), v, UpdateNoExist); err != nil {
				t.Fatal(err)
			}
		}
		// Use keys 0-3 from "programs"; 4 is now the least recently used.
		for k := range uint32(4) {
			if m.Elem(u32(k), 0) == 0 {
				t.Fatalf("%v: key %d missing", typ, k)
			}
		}
		for k := uint32(100); k < 104; k++ {
			if err := m.Update(u32(k), v, UpdateNoExist); err != nil {
				t.Fatalf("%v: update of a full LRU map: %v", typ, err)
			}
		}
		for k := range uint32(4) {
			if err := m.Lookup(u32(k), v, 0); err != nil {
				t.Errorf("%v: recently used key %d evicted", typ, k)
			}
		}
		for k := uint32(4); k < 8; k++ {
			if err := m.Lookup(u32(k), v, 0); err == nil {
				t.Errorf("%v: unused key %d kept while newer ones came", typ, k)
			}
		}
	}
}

func TestPerCPUProgramSide(t *testing.T) {
	for _, typ := range []Type{PercpuHash, PercpuArray, LRUPercpuHash} {
		m := mustCreate(t, Spec{Type: typ, KeySize: 4, ValueSize: 4, MaxEntries: 4, NumCPU: 3})
		if err := m.UpdateElem(u32(1), u32(0xaabbccdd), 0, 1); err != nil {
			t.Fatal(err)
		}
		v := make([]byte, m.SyscallValueSize())
		if err := m.Lookup(u32(1), v, 0); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 24)
		copy(want[8:], u32(0xaabbccdd))
		if !bytes.Equal(v, want) {
			t.Errorf("%v: after a program update on CPU 1: %x, want %x", typ, v, want)
		}
		a0, a1 := m.Elem(u32(1), 0), m.Elem(u32(1), 1)
		if a1-a0 != 8 || *(*uint32)(unsafe.Pointer(uintptr(a1))) != 0xaabbccdd {
			t.Errorf("%v: per-CPU addresses %#x %#x", typ, a0, a1)
		}
		if m.Elem(u32(1), 3) != 0 || m.UpdateElem(u32(1), u32(1), 0, 3) == nil {
			t.Errorf("%v: CPU 3 of 3 accepted", typ)
		}
	}
}

// TestConcurrentIncrementsGo: goroutines add to values through the addresses lookups return,
// and create keys concurrently; the totals are exact.
func TestConcurrentIncrementsGo(t *testing.T) {
	for _, typ := range []Type{Hash, Array, LRUHash} {
		m := mustCreate(t, Spec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 64})
		const workers, rounds, keys = 4, 20000, 16
		done := make(chan struct{})
		for w := range workers {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := range rounds {
					k := u32(uint32((i*7 + w) % keys))
					a := m.Elem(k, 0)
					if a == 0 {
						m.UpdateElem(k, u64(0), UpdateNoExist, 0)
						a = m.Elem(k, 0)
					}
					atomic.AddUint64(at64(a), 1)
				}
			}()
		}
		for range workers {
			<-done
		}
		var total uint64
		v := make([]byte, 8)
		for k := range uint32(keys) {
			if err := m.Lookup(u32(k), v, 0); err != nil {
				t.Fatalf("%v: key %d: %v", typ, k, err)
			}
			total += binary.LittleEndian.Uint64(v)
		}
		if total != workers*rounds {
			t.Errorf("%v: total %d, want %d", typ, total, workers*rounds)
		}
	}
}
