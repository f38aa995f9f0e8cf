package maps

import (
	"encoding/binary"
)

// Arrays (BPF_MAP_TYPE_ARRAY, PERCPU_ARRAY) keep their values at offset 0 of the memfd, one
// round_up(value_size, 8) slot per entry (per entry and CPU, entry-major, for per-CPU arrays), so
// a BPF_F_MMAPABLE array's values are where the tool's mmap of offset 0 expects them. Updates
// copy in place without a lock, as the kernel's do: a concurrent reader may see a torn value.
//
// Fd arrays (PROG_ARRAY, PERF_EVENT_ARRAY, CGROUP_ARRAY) keep one u32 per entry: the id of the object the
// tool's fd named (0: empty), which the server translates from and to fds.

func (m *Map) arrayIndex(key []byte) uint32 { return binary.LittleEndian.Uint32(key) }

// arraySlot returns the offset of entry i's value for cpu.
func (m *Map) arraySlot(i uint32, cpu uint32) uint64 {
	if m.typ == PercpuArray {
		return (uint64(i)*uint64(m.ncpu) + uint64(cpu)) * m.slot
	}
	return uint64(i) * m.slot
}

func (m *Map) arrayLookup(key, value []byte) error {
	i := m.arrayIndex(key)
	if i >= m.maxEntries {
		return eNOENT
	}
	if m.typ == PercpuArray {
		copy(value, m.mem[m.arraySlot(i, 0):m.arraySlot(i, 0)+m.slot*uint64(m.ncpu)])
		return nil
	}
	off := m.arraySlot(i, 0)
	copy(value, m.mem[off:off+uint64(m.valueSize)])
	return nil
}

func (m *Map) arrayUpdate(key, value []byte, flags uint64, cpu uint32, allCPUs bool) error {
	if flags&^UpdateLock > UpdateExist {
		return eINVAL
	}
	i := m.arrayIndex(key)
	if i >= m.maxEntries {
		return e2BIG
	}
	if flags&UpdateNoExist != 0 {
		return eEXIST
	}
	if flags&UpdateLock != 0 {
		return eINVAL // no bpf_spin_lock in the value (no BTF)
	}
	switch {
	case m.typ == PercpuArray && allCPUs:
		off := m.arraySlot(i, 0)
		copy(m.mem[off:off+m.slot*uint64(m.ncpu)], value)
	default:
		off := m.arraySlot(i, cpu)
		copy(m.mem[off:off+uint64(m.valueSize)], value[:m.valueSize])
	}
	return nil
}

func (m *Map) arrayNextKey(key, next []byte) error {
	i := uint32(0xffffffff)
	if key != nil {
		i = m.arrayIndex(key)
	}
	switch {
	case i >= m.maxEntries:
		binary.LittleEndian.PutUint32(next, 0)
	case i == m.maxEntries-1:
		return eNOENT
	default:
		binary.LittleEndian.PutUint32(next, i+1)
	}
	return nil
}

func (m *Map) arrayElem(key []byte, cpu uint32) uint64 {
	i := m.arrayIndex(key)
	if i >= m.maxEntries || cpu >= m.ncpu {
		return 0
	}
	return m.mem.addr(m.arraySlot(i, cpu))
}

// Fd arrays.

func (m *Map) fdLookup(key, value []byte) error {
	if m.typ != ProgArray {
		return ENOTSUPP
	}
	i := m.arrayIndex(key)
	if i >= m.maxEntries {
		return eNOENT
	}
	ref := m.mem.load32(uint64(i) * 4)
	if ref == 0 {
		return eNOENT
	}
	binary.LittleEndian.PutUint32(value, ref)
	return nil
}

// CheckFdUpdate returns the error the kernel gives an update of an fd array (PROG_ARRAY,
// PERF_EVENT_ARRAY) before it looks at the value's fd: EINVAL for flags other than BPF_ANY,
// E2BIG for an index past the end. The server calls it before translating the fd.
func (m *Map) CheckFdUpdate(key []byte, flags uint64) error {
	if !m.typ.isFdArray() {
		return eINVAL
	}
	if err := m.checkKey(key); err != nil {
		return err
	}
	if flags != UpdateAny {
		return eINVAL
	}
	if m.arrayIndex(key) >= m.maxEntries {
		return e2BIG
	}
	return nil
}

func (m *Map) fdUpdate(key, value []byte, flags uint64) error {
	if err := m.CheckFdUpdate(key, flags); err != nil {
		return err
	}
	ref := binary.LittleEndian.Uint32(value)
	if ref == 0 {
		return eBADF
	}
	m.mem.store32(uint64(m.arrayIndex(key))*4, ref)
	return nil
}

func (m *Map) fdDelete(key []byte) (uint32, error) {
	i := m.arrayIndex(key)
	if i >= m.maxEntries {
		return 0, e2BIG
	}
	for {
		old := m.mem.load32(uint64(i) * 4)
		if old == 0 {
			return 0, eNOENT
		}
		if m.mem.cas32(uint64(i)*4, old, 0) {
			return old, nil
		}
	}
}

// Ref returns the object id in entry index of an fd array (the program side of tail calls and
// perf_event_output): E2BIG for an index past the end, ENOENT for an empty entry.
func (m *Map) Ref(index uint32) (uint32, error) {
	if !m.typ.isFdArray() {
		return 0, eINVAL
	}
	if index >= m.maxEntries {
		return 0, e2BIG
	}
	ref := m.mem.load32(uint64(index) * 4)
	if ref == 0 {
		return 0, eNOENT
	}
	return ref, nil
}
