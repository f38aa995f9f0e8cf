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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// progOp is one program-side operation of a random sequence.
type progOp struct {
	kind  int // 0 lookup, 1 update, 2 delete
	key   []byte
	value []byte
	flags uint64
	cpu   uint32
}

func randomProgOps(r *rand.Rand, m *Map, nkeys, n int) []progOp {
	ops := make([]progOp, n)
	for i := range ops {
		k := make([]byte, m.KeySize())
		v := r.IntN(nkeys)
		binary.LittleEndian.PutUint32(k, uint32(v))
		if len(k) > 4 {
			k[4] = byte(v * 13)
		}
		val := make([]byte, m.ValueSize())
		for j := range val {
			val[j] = byte(r.Uint32())
		}
		o := progOp{kind: r.IntN(3), key: k, value: val, cpu: uint32(r.IntN(m.NumCPU()))}
		if o.kind == 1 {
			o.flags = []uint64{0, 0, 1, 2, 4, 3}[r.IntN(6)]
		}
		ops[i] = o
	}
	return ops
}

// goProg runs o through the Go program side and renders its result as the driver does.
func goProg(m *Map, o progOp) string {
	switch o.kind {
	case 0:
		a := m.Elem(o.key, o.cpu)
		if a == 0 {
			return "null"
		}
		return fmt.Sprintf("%x", unsafe.Slice((*byte)(unsafe.Pointer(uintptr(a))), m.ValueSize()))
	case 1:
		return strconv.Itoa(-int(errnoOf(m.UpdateElem(o.key, o.value, o.flags, o.cpu))))
	default:
		return strconv.Itoa(-int(errnoOf(m.DeleteElem(o.key))))
	}
}

func cProg(d *cdriver, slot int, o progOp) string {
	d.do("cpu %d", o.cpu)
	switch o.kind {
	case 0:
		return d.do("lookup %d %s", slot, hexOrDash(o.key))
	case 1:
		return d.do("update %d %s %s %d", slot, hexOrDash(o.key), hexOrDash(o.value), o.flags)
	default:
		return d.do("delete %d %s", slot, hexOrDash(o.key))
	}
}

var interopSpecs = []struct {
	spec  Spec
	nkeys int
}{
	{Spec{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8}, 12},
	{Spec{Type: Hash, KeySize: 5, ValueSize: 3, MaxEntries: 16}, 24},
	{Spec{Type: Hash, KeySize: 12, ValueSize: 20, MaxEntries: 3}, 6},
	{Spec{Type: PercpuHash, KeySize: 4, ValueSize: 12, MaxEntries: 6}, 10},
	{Spec{Type: LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 8}, 16},
	{Spec{Type: LRUPercpuHash, KeySize: 8, ValueSize: 4, MaxEntries: 5}, 12},
	{Spec{Type: Array, KeySize: 4, ValueSize: 12, MaxEntries: 5}, 7},
	{Spec{Type: PercpuArray, KeySize: 4, ValueSize: 5, MaxEntries: 3}, 5},
}

// TestGoAndCAgree runs the same random program-side operations through Go on one map and
// through C on a twin map (same spec, same hash seed): every result and, at the end, every byte
// of the two memfds must be equal.
func TestGoAndCAgree(t *testing.T) {
	for _, c := range interopSpecs {
		for seed := uint64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("%v/k%d/v%d/n%d/seed%d", c.spec.Type, c.spec.KeySize, c.spec.ValueSize, c.spec.MaxEntries, seed), func(t *testing.T) {
				s := c.spec
				s.NumCPU = 3
				a, b := mustCreate(t, s), mustCreate(t, s)
				setSeed(b, a.seed)
				d := startDriver(t, b.FD())
				// The same owner id on both sides, so that busy-element records match too.
				a.owner = uint32(os.Getpid())
				d.do("owner %d", a.owner)
				r := rand.New(rand.NewPCG(seed, 7))
				for i, o := range randomProgOps(r, a, c.nkeys, 300) {
					if g, cr := goProg(a, o), cProg(d, 0, o); g != cr {
						t.Fatalf("op %d %+v: Go %s, C %s", i, o, g, cr)
					}
				}
				if !bytes.Equal(a.mem, b.mem) {
					t.Fatalf("the memfds differ at byte %d", firstDiff(a.mem, b.mem))
				}
				if a.typ.isHash() {
					if err := a.checkHash(); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// TestGoAndCShareOneMap interleaves Go and C operations on one map and compares each result with
// a twin map that Go alone runs.
func TestGoAndCShareOneMap(t *testing.T) {
	for _, c := range interopSpecs {
		t.Run(fmt.Sprintf("%v", c.spec.Type), func(t *testing.T) {
			s := c.spec
			s.NumCPU = 2
			shared, twin := mustCreate(t, s), mustCreate(t, s)
			setSeed(twin, shared.seed)
			d := startDriver(t, shared.FD())
			r := rand.New(rand.NewPCG(99, 1))
			for i, o := range randomProgOps(r, shared, c.nkeys, 400) {
				var got string
				if r.IntN(2) == 0 {
					got = cProg(d, 0, o)
				} else {
					got = goProg(shared, o)
				}
				if want := goProg(twin, o); got != want {
					t.Fatalf("op %d %+v: got %s, want %s", i, o, got, want)
				}
			}
			// Owner ids differ between the Go and the C side, so compare contents, not bytes.
			if got, want := dump(t, shared), dump(t, twin); got != want {
				t.Fatalf("contents differ:\n%s\n%s", got, want)
			}
		})
	}
}

func setSeed(m *Map, seed uint32) {
	m.seed = seed
	m.mem.store32(m.ctl+ctlSeedOff, seed)
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// dump lists a map's keys and values in iteration order.
func dump(t testing.TB, m *Map) string {
	var sb strings.Builder
	var key []byte
	next := make([]byte, m.KeySize())
	v := make([]byte, m.SyscallValueSize())
	for m.NextKey(key, next) == nil {
		key = append(key[:0], next...)
		if err := m.Lookup(key, v, 0); err != nil {
			t.Fatalf("lookup %x: %v", key, err)
		}
		fmt.Fprintf(&sb, "%x=%x ", key, v)
	}
	return sb.String()
}

// TestConcurrentIncrementsGoAndC: C processes and Go goroutines add 1 to values of one hash map
// and one array, creating hash keys as they go; the totals are exact.
func TestConcurrentIncrementsGoAndC(t *testing.T) {
	const procs, goroutines, rounds, keys = 3, 2, 30000, 8
	for _, typ := range []Type{Hash, Array, LRUHash} {
		t.Run(typ.String(), func(t *testing.T) {
			m := mustCreate(t, Spec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 16})
			var drivers []*cdriver
			for range procs {
				drivers = append(drivers, startDriver(t, m.FD()))
			}
			var wg sync.WaitGroup
			for p, d := range drivers {
				for k := range uint32(keys) {
					d.send("inc 0 %x %d", u32((k+uint32(p))%keys), rounds/keys)
				}
			}
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range rounds {
						k := u32(uint32(i+g) % keys)
						a := m.Elem(k, 0)
						if a == 0 {
							m.UpdateElem(k, u64(0), UpdateNoExist, 0)
							a = m.Elem(k, 0)
						}
						atomic.AddUint64(at64(a), 1)
					}
				}()
			}
			for _, d := range drivers {
				for range keys {
					if got := d.result(); got != "ok" {
						t.Fatalf("driver: %s", got)
					}
				}
			}
			wg.Wait()
			var total uint64
			v := make([]byte, 8)
			for k := range uint32(keys) {
				if err := m.Lookup(u32(k), v, 0); err != nil {
					t.Fatalf("key %d: %v", k, err)
				}
				total += binary.LittleEndian.Uint64(v)
			}
			if want := uint64(procs*rounds + goroutines*rounds); total != want {
				t.Errorf("total %d, want %d", total, want)
			}
		})
	}
}

// TestKilledLockHolder: a process killed while it holds a map's writer lock does not wedge it.
func TestKilledLockHolder(t *testing.T) {
	m := mustCreate(t, Spec{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err := m.Update(u32(5), u64(1), 0); err != nil {
		t.Fatal(err)
	}
	d := startDriver(t, m.FD())
	if got := d.do("hold 0"); !strings.HasPrefix(got, "held") {
		t.Fatal(got)
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
	done := make(chan error)
	go func() { done <- m.Update(u32(5), u64(2), 0) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the update still waits for the killed holder's lock")
	}
	v := make([]byte, 8)
	if err := m.Lookup(u32(5), v, 0); err != nil || binary.LittleEndian.Uint64(v) != 2 {
		t.Fatalf("after recovery: %x %v", v, err)
	}
	if err := m.checkHash(); err != nil {
		t.Fatal(err)
	}
}

// TestKilledChurners: C processes that update and delete are SIGKILLed at random moments while
// Go does the same; afterwards, with Recover, the hash map is consistent and fully usable.
func TestKilledChurners(t *testing.T) {
	for _, typ := range []Type{Hash, LRUHash, PercpuHash} {
		t.Run(typ.String(), func(t *testing.T) {
			m := mustCreate(t, Spec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 12})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			stopped := false
			halt := func() {
				if !stopped {
					stopped = true
					close(stop)
					wg.Wait()
				}
			}
			defer halt()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(3, 3))
				for {
					select {
					case <-stop:
						return
					default:
					}
					k := u32(uint32(r.IntN(16)))
					if r.IntN(3) > 0 {
						m.UpdateElem(k, u64(r.Uint64()), 0, 0)
					} else {
						m.DeleteElem(k)
					}
				}
			}()
			r := rand.New(rand.NewPCG(4, 4))
			for round := range 30 {
				d := startDriver(t, m.FD())
				d.send("churn 0 100000000 %d", round+1)
				time.Sleep(time.Duration(1+r.IntN(5)) * time.Millisecond)
				d.cmd.Process.Signal(syscall.SIGKILL)
				d.cmd.Wait()
			}
			halt()
			m.Recover()
			if err := m.checkHash(); err != nil {
				t.Fatal(err)
			}
			// Fill the map: every element must be reachable again.
			for k := range uint32(12) {
				m.Delete(u32(k + 100))
			}
			n := 0
			for key := []byte(nil); ; n++ {
				next := make([]byte, 4)
				if m.NextKey(key, next) != nil {
					break
				}
				key = next
			}
			v := make([]byte, m.SyscallValueSize())
			for k := uint32(1000); n < 12; k++ {
				if err := m.Update(u32(k), v, UpdateNoExist); err != nil {
					t.Fatalf("%d keys present, insert of key %d: %v", n, k, err)
				}
				n++
			}
			if typ != LRUHash {
				if err := m.Update(u32(99999), v, UpdateNoExist); err != e2BIG {
					t.Fatalf("insert into a full map: %v, want E2BIG", err)
				}
			}
		})
	}
}

// TestRepairAfterKilledWriter kills C writers at random moments (most die holding the writer
// lock, in the middle of an update or a delete) and checks every invariant after each repair,
// done in turn by Go and by C.
func TestRepairAfterKilledWriter(t *testing.T) {
	for _, typ := range []Type{Hash, LRUHash, LRUPercpuHash} {
		t.Run(typ.String(), func(t *testing.T) {
			m := mustCreate(t, Spec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 12})
			r := rand.New(rand.NewPCG(5, 5))
			repaired := 0
			for round := range 40 {
				d := startDriver(t, m.FD())
				d.send("churn 0 100000000 %d", round+1)
				time.Sleep(time.Duration(500+r.IntN(3000)) * time.Microsecond)
				d.cmd.Process.Signal(syscall.SIGKILL)
				d.cmd.Wait()
				if m.mem.load32(m.ctl+ctlLockOff) == 0 {
					continue
				}
				repaired++
				if round%2 == 0 {
					m.Recover()
				} else if got := startDriver(t, m.FD()).do("recover 0"); got != "ok" {
					t.Fatal(got)
				}
				if err := m.checkHash(); err != nil {
					t.Fatalf("after repair %d: %v", repaired, err)
				}
			}
			if repaired == 0 {
				t.Fatal("no writer was killed holding the lock")
			}
		})
	}
}
