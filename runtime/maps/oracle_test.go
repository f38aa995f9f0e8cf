package maps

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

// op is one syscall-side element operation of a random sequence.
type op struct {
	cmd   int // bpfMap* command
	key   []byte
	value []byte
	flags uint64
}

func (o op) String() string {
	names := map[int]string{bpfMapLookupElem: "lookup", bpfMapUpdateElem: "update", bpfMapDeleteElem: "delete",
		bpfMapGetNextKey: "next_key", bpfMapLookupAndDelete: "lookup_and_delete", bpfMapFreeze: "freeze"}
	return fmt.Sprintf("%s(key=%x value=%x flags=%d)", names[o.cmd], o.key, o.value, o.flags)
}

// randomOps returns n operations on keys drawn from a domain of nkeys keys.
func randomOps(r *rand.Rand, s *Spec, vsize, nkeys, n int) []op {
	key := func() []byte {
		if s.KeySize == 0 {
			return nil
		}
		k := make([]byte, s.KeySize)
		var v int
		if nkeys > 0 {
			v = r.IntN(nkeys)
		} else {
			v = r.IntN(int(s.MaxEntries) + 2)
			if r.IntN(20) == 0 {
				v = 0xffffffff
			}
		}
		binary.LittleEndian.PutUint32(k, uint32(v))
		if len(k) > 4 {
			k[4] = byte(v * 7)
		}
		return k
	}
	value := func() []byte {
		v := make([]byte, vsize)
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		return v
	}
	flagsOf := []uint64{0, 0, 0, 1, 2, 4, 8, 3}
	ops := make([]op, n)
	for i := range ops {
		var o op
		switch c := r.IntN(20); {
		case c < 6:
			o = op{cmd: bpfMapUpdateElem, key: key(), value: value(), flags: flagsOf[r.IntN(len(flagsOf))]}
		case c < 10:
			o = op{cmd: bpfMapLookupElem, key: key()}
			if r.IntN(10) == 0 {
				o.flags = uint64(r.IntN(8))
			}
		case c < 13:
			o = op{cmd: bpfMapDeleteElem, key: key()}
		case c < 17:
			o = op{cmd: bpfMapGetNextKey, key: key()}
			if r.IntN(4) == 0 {
				o.key = nil
			}
		case c < 19:
			o = op{cmd: bpfMapLookupAndDelete, key: key()}
			if r.IntN(10) == 0 {
				o.flags = uint64(r.IntN(8))
			}
		default:
			if r.IntN(8) == 0 {
				o = op{cmd: bpfMapFreeze}
			} else {
				o = op{cmd: bpfMapLookupElem, key: key()}
			}
		}
		ops[i] = o
	}
	return ops
}

// result is what an operation returned.
type result struct {
	errno syscall_Errno
	out   []byte
}

type syscall_Errno = uint64

// applyOurs runs o on m.
func applyOurs(m *Map, o op) result {
	var err error
	var out []byte
	switch o.cmd {
	case bpfMapLookupElem, bpfMapLookupAndDelete:
		out = make([]byte, m.SyscallValueSize())
		if o.cmd == bpfMapLookupElem {
			err = m.Lookup(o.key, out, o.flags)
		} else {
			err = m.LookupAndDelete(o.key, out, o.flags)
		}
	case bpfMapUpdateElem:
		err = m.Update(o.key, o.value, o.flags)
	case bpfMapDeleteElem:
		err = m.Delete(o.key)
	case bpfMapGetNextKey:
		out = make([]byte, m.KeySize())
		err = m.NextKey(o.key, out)
	case bpfMapFreeze:
		err = m.Freeze()
	}
	if err != nil {
		out = nil
	}
	return result{uint64(errnoOf(err)), out}
}

// applyKernel runs o on the kernel map fd.
func applyKernel(fd int, valueSize, keySize int, o op) result {
	var err error
	var out []byte
	switch o.cmd {
	case bpfMapLookupElem, bpfMapLookupAndDelete:
		out = make([]byte, valueSize)
		err = kernelElem(o.cmd, fd, o.key, out, o.flags)
	case bpfMapUpdateElem:
		err = kernelElem(o.cmd, fd, o.key, o.value, o.flags)
	case bpfMapDeleteElem:
		err = kernelElem(o.cmd, fd, o.key, nil, 0)
	case bpfMapGetNextKey:
		out = make([]byte, keySize)
		err = kernelElem(o.cmd, fd, o.key, out, 0)
	case bpfMapFreeze:
		err = kernelFreeze(fd)
	}
	if err != nil {
		out = nil
	}
	return result{uint64(errnoOf(err)), out}
}

// oracleSpecs are the maps whose syscall-side behaviour is compared with the kernel's, with
// the size of the key domain (small enough for LRU maps never to evict in the kernel).
var oracleSpecs = []struct {
	spec  Spec
	nkeys int
}{
	{Spec{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8, Flags: FlagZeroSeed}, 14},
	{Spec{Type: Hash, KeySize: 5, ValueSize: 3, MaxEntries: 4, Flags: FlagZeroSeed}, 8},
	{Spec{Type: Hash, KeySize: 8, ValueSize: 16, MaxEntries: 64, Flags: FlagZeroSeed}, 100},
	{Spec{Type: Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1, Flags: FlagZeroSeed}, 3},
	{Spec{Type: PercpuHash, KeySize: 4, ValueSize: 12, MaxEntries: 6, Flags: FlagZeroSeed}, 10},
	{Spec{Type: LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 1024, Flags: FlagZeroSeed}, 20},
	{Spec{Type: LRUPercpuHash, KeySize: 4, ValueSize: 4, MaxEntries: 1024, Flags: FlagZeroSeed}, 20},
	{Spec{Type: Array, KeySize: 4, ValueSize: 8, MaxEntries: 5}, 0},
	{Spec{Type: Array, KeySize: 4, ValueSize: 13, MaxEntries: 3, Flags: FlagMmapable}, 0},
	{Spec{Type: PercpuArray, KeySize: 4, ValueSize: 6, MaxEntries: 4}, 0},
	{Spec{Type: PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2}, 0},
	{Spec{Type: ProgArray, KeySize: 4, ValueSize: 4, MaxEntries: 4}, 0},
	{Spec{Type: StackTrace, KeySize: 4, ValueSize: 64, MaxEntries: 8}, 0},
	{Spec{Type: RingBuf, MaxEntries: 4096}, 0},
}

func TestElementOpsMatchKernel(t *testing.T) {
	kernelAvailable(t)
	ncpu, err := PossibleCPUs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range oracleSpecs {
		for seed := uint64(1); seed <= 6; seed++ {
			t.Run(fmt.Sprintf("%v/k%d/v%d/n%d/seed%d", c.spec.Type, c.spec.KeySize, c.spec.ValueSize, c.spec.MaxEntries, seed), func(t *testing.T) {
				s := c.spec
				s.NumCPU = ncpu
				kfd, err := kernelCreate(&s)
				if err != nil {
					t.Fatalf("kernel map: %v", err)
				}
				defer unix.Close(kfd)
				m, err := Create(&s, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				r := rand.New(rand.NewPCG(seed, 42))
				vsize := m.SyscallValueSize()
				ops := randomOps(r, &s, vsize, c.nkeys, 400)
				if s.Type.isFdArray() {
					// Updates need real fds: only the ones the kernel refuses before looking at the fd.
					for i := range ops {
						if ops[i].cmd == bpfMapUpdateElem && ops[i].flags == 0 && binary.LittleEndian.Uint32(ops[i].key) < s.MaxEntries {
							ops[i].flags = 1
						}
					}
				}
				for i, o := range ops {
					want := applyKernel(kfd, vsize, int(s.KeySize), o)
					got := applyOurs(m, o)
					if want.errno != got.errno || !bytes.Equal(want.out, got.out) {
						t.Fatalf("op %d %v: kernel errno %d out %x, ours errno %d out %x", i, o, want.errno, want.out, got.errno, got.out)
					}
				}
			})
		}
	}
}
