package maps

import (
	"encoding/binary"
	"unsafe"
)

// Stack trace maps (BPF_MAP_TYPE_STACK_TRACE): n_buckets = roundup_pow_of_two(max_entries)
// buckets of {u32 lock, u32 nr, u32 hash, u32 pad, value_size bytes}, the stack id being
// jhash2(ips, 0) & (n_buckets-1) as in the kernel. A writer holds the bucket's lock and clears
// nr before it writes the ips, so a writer killed halfway leaves an empty bucket.

func (m *Map) stackOff(id uint32) uint64 { return uint64(id) * uint64(m.l.elemSize) }

// StackID is bpf_get_stackid on the trace ips (innermost first, as the caller walked it, at
// most skip + value_size/8 frames used): it returns the stack id, or EINVAL for unknown flags,
// EFAULT when skip leaves nothing, EEXIST when the bucket holds another stack and
// BPF_F_REUSE_STACKID is not set, EOPNOTSUPP for BPF_F_STACK_BUILD_ID maps, EBUSY on a
// recursion.
func (m *Map) StackID(ips []uint64, flags uint64) (uint32, error) {
	if m.typ != StackTrace || flags&^(FlagSkipMask|FlagUserStack|FlagFastCmp|FlagReuseStack) != 0 {
		return 0, eINVAL
	}
	if m.flags&FlagStackBuildID != 0 {
		return 0, eOPNOTS
	}
	skip := int(flags & FlagSkipMask)
	if depth := int(m.valueSize/8) + skip; len(ips) > depth {
		ips = ips[:depth]
	}
	if len(ips) <= skip {
		return 0, eFAULT
	}
	ips = ips[skip:]
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&ips[0])), len(ips)*8)
	hash := jhash2(raw, 0)
	id := hash & (m.l.nBuckets - 1)
	off := m.stackOff(id)
	if _, err := m.lock(m.mem, off+stackLockOff); err != nil {
		return 0, err
	}
	defer m.unlock(m.mem, off+stackLockOff)
	nr := m.mem.load32(off + stackNrOff)
	matches := nr != 0 && m.mem.load32(off+stackHashOff) == hash
	if matches && flags&FlagFastCmp != 0 {
		return id, nil
	}
	data := m.mem[off+stackDataOff : off+stackDataOff+uint64(m.valueSize)]
	if matches && nr == uint32(len(ips)) && string(data[:len(raw)]) == string(raw) {
		return id, nil
	}
	if nr != 0 && flags&FlagReuseStack == 0 {
		return 0, eEXIST
	}
	m.mem.store32(off+stackNrOff, 0)
	copy(data, raw)
	m.mem.store32(off+stackHashOff, hash)
	m.mem.store32(off+stackNrOff, uint32(len(ips)))
	return id, nil
}

// stackLookup copies stack id key into value; with del it empties the bucket too (the kernel's
// bpf_stackmap_extract).
func (m *Map) stackLookup(key, value []byte, del bool) error {
	id := binary.LittleEndian.Uint32(key)
	if id >= m.l.nBuckets {
		return eNOENT
	}
	off := m.stackOff(id)
	if _, err := m.lock(m.mem, off+stackLockOff); err != nil {
		return err
	}
	defer m.unlock(m.mem, off+stackLockOff)
	nr := uint64(m.mem.load32(off + stackNrOff))
	if nr == 0 {
		return eNOENT
	}
	entry := uint64(8)
	if m.flags&FlagStackBuildID != 0 {
		entry = buildIDSize
	}
	n := copy(value, m.mem[off+stackDataOff:off+stackDataOff+min(nr*entry, uint64(m.valueSize))])
	clear(value[n:m.valueSize])
	if del {
		m.mem.store32(off+stackNrOff, 0)
	}
	return nil
}

func (m *Map) stackDelete(key []byte) error {
	id := binary.LittleEndian.Uint32(key)
	if id >= m.l.nBuckets {
		return e2BIG
	}
	off := m.stackOff(id)
	if _, err := m.lock(m.mem, off+stackLockOff); err != nil {
		return err
	}
	defer m.unlock(m.mem, off+stackLockOff)
	if m.mem.load32(off+stackNrOff) == 0 {
		return eNOENT
	}
	m.mem.store32(off+stackNrOff, 0)
	return nil
}

func (m *Map) stackNextKey(key, next []byte) error {
	id := uint32(0)
	if key != nil {
		id = binary.LittleEndian.Uint32(key)
		if id >= m.l.nBuckets || m.mem.load32(m.stackOff(id)+stackNrOff) == 0 {
			id = 0
		} else {
			id++
		}
	}
	for ; id < m.l.nBuckets; id++ {
		if m.mem.load32(m.stackOff(id)+stackNrOff) != 0 {
			binary.LittleEndian.PutUint32(next, id)
			return nil
		}
	}
	return eNOENT
}
