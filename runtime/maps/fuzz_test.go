package maps

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzMapOps runs random operation sequences (syscall side and program side, with any sizes
// and flags) on a hash map or an array and checks: no panic, the kernel's results as a simple
// model predicts them (LRU maps, whose evictions the model does not predict, only for lookups of
// keys it knows absent), and the map's structural invariants at the end.
func FuzzMapOps(f *testing.F) {
	f.Add([]byte{0, 4, 8, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{1, 5, 3, 2, 0, 0, 0, 9, 9, 9, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4})
	f.Add([]byte{2, 4, 12, 3, 7, 0, 1, 7, 1, 2, 7, 2, 3, 7, 3, 4, 7, 4, 5})
	f.Add([]byte{3, 4, 4, 5, 10, 1, 0, 10, 2, 0, 10, 3, 0, 11, 1, 0, 12, 2, 0})
	f.Add([]byte{4, 4, 4, 3, 200, 1, 0, 201, 2, 0, 202, 3, 0, 203, 1, 0, 204, 2, 0})
	f.Add([]byte{5, 4, 9, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 {
			return
		}
		types := []Type{Hash, PercpuHash, LRUHash, Array, PercpuArray, LRUPercpuHash}
		s := Spec{Type: types[int(data[0])%len(types)], KeySize: uint32(data[1]%12) + 1,
			ValueSize: uint32(data[2]%20) + 1, MaxEntries: uint32(data[3]%8) + 1, NumCPU: 2}
		if s.Type == Array || s.Type == PercpuArray {
			s.KeySize = 4
		}
		m, err := Create(&s, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		model := map[string][]byte{} // syscall-side value of each key
		isHash := s.Type.isHash()
		vsz := m.SyscallValueSize()
		for ops := data[4:]; len(ops) >= 3; ops = ops[3:] {
			kind, k, arg := ops[0], ops[1], ops[2]
			key := make([]byte, s.KeySize)
			key[0] = k % 12
			if !isHash {
				binary.LittleEndian.PutUint32(key, uint32(k%12))
			}
			val := bytes.Repeat([]byte{arg}, vsz)
			flags := uint64(kind>>4) % 6
			inRange := isHash || uint32(k%12) < s.MaxEntries
			cur, known := model[string(key)]
			if !isHash && inRange && !known {
				cur, known = make([]byte, vsz), true
			}
			switch kind % 8 {
			case 0, 1: // syscall update
				err := m.Update(key, val, flags)
				want := expectUpdate(isHash, inRange, known, flags, len(model) >= int(m.MaxEntries()))
				if flags&UpdateLock != 0 {
					want = eINVAL // the syscall refuses BPF_F_LOCK first for maps without a spin lock
				}
				if s.Type.isLRU() {
					// The model does not know which key an eviction took: an update evicts
					// before it looks at the key (even when it then fails with EEXIST), so
					// BPF_EXIST can miss its own key.
					if want == e2BIG || err == nil || err == eNOENT && flags == UpdateExist {
						want = err
					}
					lruForgetEvicted(m, model)
				}
				if errnoOf(err) != errnoOf(want) {
					t.Fatalf("update %x flags %d: %v, want %v", key, flags, err, want)
				}
				if err == nil {
					model[string(key)] = val
				}
			case 2: // syscall lookup
				out := make([]byte, vsz)
				err := m.Lookup(key, out, 0)
				switch {
				case !known && err == nil && !s.Type.isLRU():
					t.Fatalf("lookup %x found an absent key", key)
				case known && err != nil:
					t.Fatalf("lookup %x: %v", key, err)
				case known && !bytes.Equal(out, padded(m, cur)):
					t.Fatalf("lookup %x = %x, want %x", key, out, cur)
				}
			case 3: // delete
				err := m.Delete(key)
				var want error = eNOENT
				if !isHash {
					want = eINVAL
				} else if known {
					want = nil
				}
				if errnoOf(err) != errnoOf(want) {
					t.Fatalf("delete %x: %v, want %v", key, err, want)
				}
				if isHash {
					delete(model, string(key))
				}
			case 4: // program update on a CPU
				v := val[:s.ValueSize]
				err := m.UpdateElem(key, v, flags, uint32(arg%2))
				want := expectUpdate(isHash, inRange, known, flags, len(model) >= int(m.MaxEntries()))
				if s.Type.isLRU() {
					// The model does not know which key an eviction took: an update evicts
					// before it looks at the key (even when it then fails with EEXIST), so
					// BPF_EXIST can miss its own key.
					if want == e2BIG || err == nil || err == eNOENT && flags == UpdateExist {
						want = err
					}
					lruForgetEvicted(m, model)
				}
				if errnoOf(err) != errnoOf(want) {
					t.Fatalf("program update %x flags %d: %v, want %v", key, flags, err, want)
				}
				if err == nil {
					out := make([]byte, vsz)
					if err := m.Lookup(key, out, 0); err != nil {
						t.Fatalf("lookup after program update: %v", err)
					}
					model[string(key)] = out
				}
			case 5: // program lookup
				a := m.Elem(key, uint32(arg%2))
				if (a != 0) != known && !s.Type.isLRU() {
					t.Fatalf("program lookup %x: %#x, known %v", key, a, known)
				}
			case 6: // iteration sees exactly the model's keys
				if s.Type.isLRU() {
					break
				}
				seen := 0
				var k []byte
				next := make([]byte, s.KeySize)
				for m.NextKey(k, next) == nil && seen <= int(s.MaxEntries)+1 {
					k = append(k[:0], next...)
					seen++
				}
				if want := len(model); !isHash {
					want = int(s.MaxEntries)
					if seen != want {
						t.Fatalf("iteration: %d keys, want %d", seen, want)
					}
				} else if seen != want {
					t.Fatalf("iteration: %d keys, want %d", seen, want)
				}
			case 7: // malformed arguments never panic
				m.Lookup(key[:len(key)-1], make([]byte, vsz), 0)
				m.Update(key, val[:vsz-1], 0)
				m.NextKey(key, make([]byte, 1))
				m.UpdateElem(key[:0], val, 0, 0)
				m.Elem(key, 99)
			}
		}
		if isHash {
			if err := m.checkHash(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// expectUpdate is the kernel's answer to an update.
func expectUpdate(isHash, inRange, known bool, flags uint64, full bool) error {
	switch {
	case flags&^UpdateLock > UpdateExist:
		return eINVAL
	case !isHash && !inRange:
		return e2BIG
	case !isHash && flags&UpdateNoExist != 0:
		return eEXIST
	case flags&UpdateLock != 0:
		return eINVAL
	case !isHash:
		return nil
	case known && flags == UpdateNoExist:
		return eEXIST
	case !known && flags == UpdateExist:
		return eNOENT
	case !known && full:
		return e2BIG
	}
	return nil
}

// lruForgetEvicted drops from the model the keys an LRU map no longer holds.
func lruForgetEvicted(m *Map, model map[string][]byte) {
	out := make([]byte, m.SyscallValueSize())
	for k := range model {
		if m.Lookup([]byte(k), out, 0) != nil {
			delete(model, k)
		}
	}
}

// padded is what a syscall lookup returns for a value the model holds.
func padded(m *Map, v []byte) []byte { return v }
