package maps

import (
	"testing"
)

// Benchmarks of the program side (what a helper costs a program) and of the syscall side, in Go
// and in C (the C driver runs b.N operations in one command; the round trip is amortised).

func benchMap(b *testing.B, typ Type) *Map {
	m := mustCreate(b, Spec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 1024})
	for k := range uint32(1024) {
		if err := m.Update(u32(k), make([]byte, m.SyscallValueSize()), 0); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

func BenchmarkGoLookup(b *testing.B) {
	for _, typ := range []Type{Hash, Array, PercpuHash, LRUHash} {
		b.Run(typ.String(), func(b *testing.B) {
			m := benchMap(b, typ)
			key := u32(77)
			for b.Loop() {
				if m.Elem(key, 0) == 0 {
					b.Fatal("missing")
				}
			}
		})
	}
}

func BenchmarkGoUpdate(b *testing.B) {
	for _, typ := range []Type{Hash, Array, PercpuHash, LRUHash} {
		b.Run(typ.String(), func(b *testing.B) {
			m := benchMap(b, typ)
			key, val := u32(77), u64(5)
			for b.Loop() {
				if err := m.UpdateElem(key, val, 0, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGoSyscallLookup(b *testing.B) {
	for _, typ := range []Type{Hash, Array} {
		b.Run(typ.String(), func(b *testing.B) {
			m := benchMap(b, typ)
			key, val := u32(77), make([]byte, 8)
			for b.Loop() {
				if err := m.Lookup(key, val, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGoRingbufOutput(b *testing.B) {
	m := mustCreate(b, Spec{Type: RingBuf, MaxEntries: 1 << 16})
	data := make([]byte, 64)
	for b.Loop() {
		if err := m.Output(data, RingNoWakeup); err != nil {
			b.Fatal(err)
		}
		m.mem.store64(ringConsumerOff, m.producerPos())
	}
}

func BenchmarkGoPerfOutput(b *testing.B) {
	ring, err := NewPerfRing(0, 1<<16, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ring.Close()
	ring.SetEnabled(true)
	ring.SetDataSize(1 << 16)
	data := make([]byte, 64)
	for b.Loop() {
		if err := ring.Output(data, PerfMiscUser, 0); err != nil {
			b.Fatal(err)
		}
		ring.mem.store64(perfDataTailOff, ring.mem.load64(perfDataHeadOff))
	}
}

func benchC(b *testing.B, d *cdriver, op string, key, val []byte) {
	b.Helper()
	d.do("bench 0 %s 1000 %s %s", op, hexOrDash(key), hexOrDash(val)) // warm up
	b.ResetTimer()
	if got := d.do("bench 0 %s %d %s %s", op, b.N, hexOrDash(key), hexOrDash(val)); got != "ok" {
		b.Fatal(got)
	}
}

func BenchmarkCLookup(b *testing.B) {
	for _, typ := range []Type{Hash, Array, PercpuHash, LRUHash} {
		b.Run(typ.String(), func(b *testing.B) {
			m := benchMap(b, typ)
			benchC(b, startDriver(b, m.FD()), "lookup", u32(77), nil)
		})
	}
}

func BenchmarkCUpdate(b *testing.B) {
	for _, typ := range []Type{Hash, Array, PercpuHash, LRUHash} {
		b.Run(typ.String(), func(b *testing.B) {
			m := benchMap(b, typ)
			benchC(b, startDriver(b, m.FD()), "update", u32(77), u64(5))
		})
	}
}

func BenchmarkCRingbufOutput(b *testing.B) {
	m := mustCreate(b, Spec{Type: RingBuf, MaxEntries: 1 << 16})
	benchC(b, startDriver(b, m.FD()), "rbout", nil, make([]byte, 64))
}

func BenchmarkCPerfOutput(b *testing.B) {
	arr := mustCreate(b, Spec{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	ring, err := NewPerfRing(-1, 1<<16, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ring.Close()
	ring.SetEnabled(true)
	ring.SetDataSize(1 << 16)
	arr.Update(u32(0), u32(1), 0)
	arr.Update(u32(1), u32(1), 0)
	benchC(b, startDriver(b, arr.FD(), ring.FD()), "perf", nil, make([]byte, 64))
}
