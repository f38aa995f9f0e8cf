package memory

import (
	"math"
	"testing"
)

func TestRegionsCheck(t *testing.T) {
	var rs Regions
	if err := rs.Add(0x1000, 0x100, false); err != nil {
		t.Fatal(err)
	}
	if err := rs.Add(0x2000, 0x10, true); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr, size uint64
		write, ok  bool
	}{
		{0x1000, 8, false, true},
		{0x10f8, 8, false, true},
		{0x10f9, 8, false, false}, // one byte past the end
		{0xfff, 8, false, false},  // one byte before the start
		{0x1000, 8, true, false},  // read-only
		{0x2008, 8, true, true},
		{0x2009, 8, true, false},
		{0x1100, 0, false, true},               // empty access at the end
		{math.MaxUint64 - 3, 8, false, false},  // wraps
		{0x1008, math.MaxUint64, false, false}, // huge size
		{0x2000, 0x10, true, true},             // exactly the region
		{0x1080, math.MaxUint64 - 0x1000, false, false},
	}
	for _, c := range cases {
		if got := rs.Check(c.addr, c.size, c.write); got != c.ok {
			t.Errorf("Check(%#x, %d, write=%v) = %v, want %v", c.addr, c.size, c.write, got, c.ok)
		}
	}
	if err := rs.Add(math.MaxUint64-4, 8, false); err == nil {
		t.Error("a wrapping region was added")
	}
	for rs.Len() < MaxRegions {
		if err := rs.Add(0x9000, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.Add(0x9000, 1, false); err == nil {
		t.Error("more than MaxRegions regions were added")
	}
}

func TestRegionsBytes(t *testing.T) {
	buf := []byte("hello, world")
	var rs Regions
	if err := rs.AddBytes(buf, true); err != nil {
		t.Fatal(err)
	}
	b, ok := rs.Bytes(Addr(buf)+7, 5, false)
	if !ok || string(b) != "world" {
		t.Fatalf("Bytes = %q, %v", b, ok)
	}
	b[0] = 'W'
	if string(buf) != "hello, World" {
		t.Errorf("Bytes does not alias the memory: %q", buf)
	}
	if _, ok := rs.Bytes(Addr(buf)+8, 5, false); ok {
		t.Error("Bytes past the region succeeded")
	}
}

// TestAddrEscapes checks that a slice whose address is taken lives on the heap: after the
// goroutine's stack grows (and moves), the address still names the same bytes.
func TestAddrEscapes(t *testing.T) {
	buf := make([]byte, 16) // small enough to live on the stack if it did not escape
	buf[0] = 42
	addr := Addr(buf)
	grow(200)
	var rs Regions
	rs.Add(addr, 16, false)
	b, ok := rs.Bytes(addr, 1, false)
	if !ok || b[0] != 42 || Addr(buf) != addr {
		t.Fatalf("the slice moved: %#x then %#x", addr, Addr(buf))
	}
}

// grow deepens the stack enough to make the runtime copy it.
func grow(n int) byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return grow(n-1) + pad[n%256]
}
