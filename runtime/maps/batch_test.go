package maps

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	bpfMapLookupBatch          = 24
	bpfMapLookupAndDeleteBatch = 25
	bpfMapUpdateBatch          = 26
	bpfMapDeleteBatch          = 27
)

type batchAttr struct {
	inBatch, outBatch, keys, values uint64
	count, mapFD                    uint32
	elemFlags, flags                uint64
}

// kernelBatch runs a batch command on a kernel map and returns count, the out cursor and the
// error.
func kernelBatch(cmd, fd int, in []byte, cursorSize int, keys, values []byte, count uint32, elemFlags, flags uint64) (uint32, []byte, error) {
	out := make([]byte, cursorSize)
	a := batchAttr{inBatch: ptr(in), outBatch: ptr(out), keys: ptr(keys), values: ptr(values),
		count: count, mapFD: uint32(fd), elemFlags: elemFlags, flags: flags}
	_, err := bpfCall(cmd, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(in)
	runtime.KeepAlive(out)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(values)
	return a.count, out, err
}

// TestBatchMatchesKernel fills twin maps (ours and the kernel's, same seed) with the same
// updates and compares every batch command's count, cursor, keys, values and errno.
func TestBatchMatchesKernel(t *testing.T) {
	kernelAvailable(t)
	ncpu, _ := PossibleCPUs()
	specs := []Spec{
		{Type: Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16, Flags: FlagZeroSeed},
		{Type: Hash, KeySize: 6, ValueSize: 5, MaxEntries: 64, Flags: FlagZeroSeed},
		{Type: PercpuHash, KeySize: 4, ValueSize: 4, MaxEntries: 16, Flags: FlagZeroSeed},
		{Type: LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 256, Flags: FlagZeroSeed},
		{Type: Array, KeySize: 4, ValueSize: 12, MaxEntries: 9},
		{Type: PercpuArray, KeySize: 4, ValueSize: 4, MaxEntries: 5},
		{Type: StackTrace, KeySize: 4, ValueSize: 16, MaxEntries: 4},
	}
	for _, s := range specs {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%v/k%d/v%d/seed%d", s.Type, s.KeySize, s.ValueSize, seed), func(t *testing.T) {
				s := s
				s.NumCPU = ncpu
				kfd, err := kernelCreate(&s)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(kfd)
				m := mustCreate(t, s)
				r := rand.New(rand.NewPCG(seed, 3))
				ks, vs := int(s.KeySize), m.SyscallValueSize()
				nkeys := int(s.MaxEntries) * 3 / 4
				if s.Type == Array || s.Type == PercpuArray {
					nkeys = int(s.MaxEntries)
				}
				keys, values := make([]byte, nkeys*ks), make([]byte, nkeys*vs)
				for i := range nkeys {
					keys[i*ks] = byte(i)
					if s.Type.isHash() {
						keys[i*ks+1] = byte(r.Uint32())
					}
				}
				for i := range values {
					values[i] = byte(r.Uint32())
				}
				cs := m.BatchCursorSize()
				compare := func(what string, kn uint32, kout []byte, kerr error, n uint32, out []byte, err error, sent uint32) {
					t.Helper()
					if n == CountUnwritten {
						n = sent
					}
					if errnoOf(kerr) != errnoOf(err) || kn != n {
						t.Fatalf("%s: kernel %d %v, ours %d %v", what, kn, kerr, n, err)
					}
					if n > 0 && out != nil && !bytes.Equal(kout, out) {
						t.Fatalf("%s: cursor kernel %x, ours %x", what, kout, out)
					}
				}
				kn, _, kerr := kernelBatch(bpfMapUpdateBatch, kfd, nil, 0, keys, values, uint32(nkeys), 0, 0)
				n, err := m.UpdateBatch(keys, values, uint32(nkeys), 0)
				compare("update batch", kn, nil, kerr, n, nil, err, uint32(nkeys))
				kn, _, kerr = kernelBatch(bpfMapUpdateBatch, kfd, nil, 0, keys, values, 2, 4, 0)
				n, err = m.UpdateBatch(keys, values, 2, 4)
				compare("update batch with BPF_F_LOCK", kn, nil, kerr, n, nil, err, 2)
				for _, del := range []bool{false, true} {
					cmd := bpfMapLookupBatch
					if del {
						cmd = bpfMapLookupAndDeleteBatch
					}
					var kin, in []byte
					for step := 0; step < 40; step++ {
						count := uint32(1 + r.IntN(6))
						kk, kv := make([]byte, int(count)*ks), make([]byte, int(count)*vs)
						ok, ov := make([]byte, int(count)*ks), make([]byte, int(count)*vs)
						kn, kout, kerr := kernelBatch(cmd, kfd, kin, cs, kk, kv, count, 0, 0)
						n, out, err := m.LookupBatch(in, ok, ov, count, 0, 0, del)
						compare(fmt.Sprintf("lookup batch (delete %v) step %d count %d", del, step, count), kn, kout, kerr, n, out, err, count)
						if n == CountUnwritten {
							break
						}
						if !bytes.Equal(kk[:int(n)*ks], ok[:int(n)*ks]) || !bytes.Equal(kv[:int(n)*vs], ov[:int(n)*vs]) {
							t.Fatalf("step %d: kernel %x=%x, ours %x=%x", step, kk, kv, ok, ov)
						}
						if err != nil && errnoOf(err) != unix.ENOSPC {
							break
						}
						if n > 0 {
							kin, in = kout, out
						}
					}
				}
				dk := keys[:min(4, nkeys)*ks]
				kn, _, kerr = kernelBatch(bpfMapDeleteBatch, kfd, nil, 0, dk, nil, uint32(len(dk)/ks), 0, 0)
				n, err = m.DeleteBatch(dk, uint32(len(dk)/ks), 0)
				compare("delete batch", kn, nil, kerr, n, nil, err, uint32(len(dk)/ks))
			})
		}
	}
}
