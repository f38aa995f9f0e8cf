package maps

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// TestRingbufGoAndCAgree runs the same producer operations through Go on one ringbuf and through
// C on a twin: same results and, once every record is committed, the same bytes.
func TestRingbufGoAndCAgree(t *testing.T) {
	a := mustCreate(t, Spec{Type: RingBuf, MaxEntries: 8192})
	b := mustCreate(t, Spec{Type: RingBuf, MaxEntries: 8192})
	a.owner = uint32(os.Getpid())
	d := startDriver(t, b.FD())
	d.do("owner %d", a.owner)
	ra, rb := newRingReader(t, a.FD(), 8192), newRingReader(t, b.FD(), 8192)
	r := rand.New(rand.NewPCG(11, 2))
	for i := range 600 {
		data := make([]byte, r.IntN(700))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		flags := uint64(r.IntN(4))
		switch r.IntN(3) {
		case 0:
			g := strconv.Itoa(-int(errnoOf(a.Output(data, flags))))
			if c := d.do("rbout 0 %s %d", hexOrDash(data), flags); g != c {
				t.Fatalf("op %d output: Go %s, C %s", i, g, c)
			}
		default:
			ga := a.Reserve(uint64(len(data)), 0)
			c := d.do("rbres 0 %d %s", len(data), hexOrDash(data))
			if (ga == 0) != (c == "null") {
				t.Fatalf("op %d reserve: Go %#x, C %s", i, ga, c)
			}
			if ga == 0 {
				break
			}
			copy(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ga))), len(data)), data)
			cmd, commit := "rbsub", a.Submit
			if r.IntN(3) == 0 {
				cmd, commit = "rbdis", a.Discard
			}
			commit(ga, flags)
			d.do("%s 0 %s %d", cmd, c, flags)
		}
		if r.IntN(5) == 0 {
			x, _ := ra.consume()
			y, _ := rb.consume()
			if fmt.Sprint(x) != fmt.Sprint(y) {
				t.Fatalf("op %d: Go ring gave %d records, C ring %d", i, len(x), len(y))
			}
		}
		for _, q := range []uint64{RingAvailData, RingSize, RingConsPos, RingProdPos} {
			if g, c := strconv.FormatUint(a.Query(q), 10), d.do("query 0 %d", q); g != c {
				t.Fatalf("op %d query %d: Go %s, C %s", i, q, g, c)
			}
		}
	}
	// The notification counters may differ (wakeups depend on the reader's timing); the rest not.
	a.mem.store32(a.ctl+ctlNotifySeqOff, 0)
	b.mem.store32(b.ctl+ctlNotifySeqOff, 0)
	if !bytes.Equal(a.mem, b.mem) {
		t.Fatalf("the ring memfds differ at byte %d", firstDiff(a.mem, b.mem))
	}
}

// TestRingbufConcurrentProducers: C processes and goroutines output numbered records to one
// ringbuf while a reader consumes: every record arrives once, each producer's in order.
func TestRingbufConcurrentProducers(t *testing.T) {
	const procs, goroutines, per = 3, 2, 3000
	m := mustCreate(t, Spec{Type: RingBuf, MaxEntries: 1 << 16})
	reader := newRingReader(t, m.FD(), 1<<16)
	record := func(producer, seq int) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(producer))
		b = binary.LittleEndian.AppendUint32(b, uint32(seq))
		return append(b, bytes.Repeat([]byte{byte(seq)}, seq%40)...)
	}
	var drivers []*cdriver
	for p := range procs {
		d := startDriver(t, m.FD())
		drivers = append(drivers, d)
		var sb strings.Builder
		for s := range per {
			fmt.Fprintf(&sb, "rbout 0 %x 0\n", record(p, s))
		}
		go d.in.Write([]byte(sb.String()))
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < per; {
				if m.Output(record(procs+g, s), 0) == nil {
					s++
				}
			}
		}()
	}
	// C producers retry on a full ring: count their failures from the result lines.
	next := make([]int, procs+goroutines)
	total := 0
	failures := make(chan int, procs)
	for _, d := range drivers {
		go func() {
			n := 0
			for range per {
				if d.result() != "0" {
					n++
				}
			}
			failures <- n
		}()
	}
	lost := 0
	done := 0
	for done < procs || total+lost < (procs+goroutines)*per {
		recs, _ := reader.consume()
		for _, r := range recs {
			p, s := int(binary.LittleEndian.Uint32(r)), int(binary.LittleEndian.Uint32(r[4:]))
			if p >= len(next) || s < next[p] || !bytes.Equal(r, record(p, s)) {
				t.Fatalf("record %x out of order or damaged (producer %d expects %d)", r, p, next[p])
			}
			if p >= procs && s != next[p] {
				t.Fatalf("goroutine producer %d: record %d after %d (Go producers retry, nothing may be lost)", p, s, next[p])
			}
			next[p] = s + 1
			total++
		}
		select {
		case n := <-failures:
			lost += n
			done++
		default:
		}
	}
	wg.Wait()
	if total+lost != (procs+goroutines)*per {
		t.Errorf("%d records read + %d refused (ring full) != %d sent", total, lost, (procs+goroutines)*per)
	}
}

// TestPerfGoAndCAgree: the same perf_event_output sequence through Go and through C on twin
// rings gives the same results and bytes; a C producer's records read back as libbpf reads them.
func TestPerfGoAndCAgree(t *testing.T) {
	mk := func() (*Map, *PerfRing) {
		arr := mustCreate(t, Spec{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2})
		ring, err := NewPerfRing(1, 1<<14, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ring.Close() })
		// Entry 1 names ring 1: the driver resolves id R to its slot R.
		if err := arr.Update(u32(1), u32(1), 0); err != nil {
			t.Fatal(err)
		}
		ring.SetEnabled(true)
		ring.SetEventID(77)
		ring.owner = uint32(os.Getpid())
		return arr, ring
	}
	arrA, ringA := mk()
	arrB, ringB := mk()
	d := startDriver(t, arrB.FD(), ringB.FD())
	d.do("owner %d", os.Getpid())
	d.do("cpu 1")
	rings := func(ref uint32) *PerfRing {
		if ref == 1 {
			return ringA
		}
		return nil
	}
	r := rand.New(rand.NewPCG(8, 8))
	for i := range 500 {
		if i == 20 {
			ringA.SetDataSize(8192)
			ringB.SetDataSize(8192)
		}
		data := make([]byte, r.IntN(300))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		flags := []uint64{FlagCurrentCPU, 1, 0, 2, 1 << 32}[r.IntN(5)]
		g := strconv.Itoa(-int(errnoOf(arrA.PerfEventOutput(flags, 1, data, PerfMiscUser, rings))))
		if c := d.do("perf 0 %d %s %d", flags, hexOrDash(data), PerfMiscUser); g != c {
			t.Fatalf("op %d (flags %#x): Go %s, C %s", i, flags, g, c)
		}
		if r.IntN(10) == 0 {
			tail := ringA.mem.load64(perfDataHeadOff) - uint64(r.IntN(4000))
			ringA.mem.store64(perfDataTailOff, tail)
			ringB.mem.store64(perfDataTailOff, tail)
		}
	}
	if !bytes.Equal(ringA.mem, ringB.mem) {
		t.Fatalf("the perf ring memfds differ at byte %d", firstDiff(ringA.mem, ringB.mem))
	}
}

// TestStackIDGoAndCAgree: the same get_stackid sequence on twin stack maps.
func TestStackIDGoAndCAgree(t *testing.T) {
	a := mustCreate(t, Spec{Type: StackTrace, KeySize: 4, ValueSize: 8 * 6, MaxEntries: 8})
	b := mustCreate(t, Spec{Type: StackTrace, KeySize: 4, ValueSize: 8 * 6, MaxEntries: 8})
	a.owner = uint32(os.Getpid())
	d := startDriver(t, b.FD())
	r := rand.New(rand.NewPCG(9, 9))
	for i := range 400 {
		ips := make([]uint64, 1+r.IntN(9))
		var s []string
		for j := range ips {
			ips[j] = uint64(r.IntN(6)) << 12
			s = append(s, strconv.FormatUint(ips[j], 16))
		}
		flags := uint64(r.IntN(3)) | []uint64{0, FlagFastCmp, FlagReuseStack, FlagUserStack, 1 << 12}[r.IntN(5)]
		id, err := a.StackID(ips, flags)
		g := strconv.Itoa(int(id))
		if err != nil {
			g = strconv.Itoa(-int(errnoOf(err)))
		}
		if c := d.do("stackid 0 %d %s", flags, strings.Join(s, ",")); g != c {
			t.Fatalf("op %d %x flags %#x: Go %s, C %s", i, ips, flags, g, c)
		}
	}
	if !bytes.Equal(a.mem, b.mem) {
		t.Fatalf("the stack map memfds differ at byte %d", firstDiff(a.mem, b.mem))
	}
}
