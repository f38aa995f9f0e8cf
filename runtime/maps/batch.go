package maps

import (
	"encoding/binary"
)

// The batch commands (BPF_MAP_LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH, UPDATE_BATCH,
// DELETE_BATCH) with the kernel's semantics: arrays use the generic implementations (the cursor
// is the last key returned), hash maps walk whole buckets (the cursor is a u32 bucket index) and
// fail with ENOSPC when the first bucket does not fit. Keys and values are packed arrays of
// KeySize and SyscallValueSize bytes. The server does the fd permission checks first (EPERM).

// CountUnwritten is the count the batch methods return when the kernel refuses the command
// before it starts (flags, type, permissions): the kernel then leaves the tool's count as it was.
const CountUnwritten = ^uint32(0)

// BatchCursorSize returns the size of in_batch/out_batch for the lookup batch commands.
func (m *Map) BatchCursorSize() int {
	if m.typ.isHash() {
		return 4
	}
	return int(m.keySize)
}

// LookupBatch is BPF_MAP_LOOKUP_BATCH, or BPF_MAP_LOOKUP_AND_DELETE_BATCH with del: it copies up
// to count entries that follow the cursor in (nil: from the start) into keys and values and
// returns how many it copied and the cursor to continue from (nil when it copied nothing on an
// array). ENOENT says the walk reached the end (entries may still have been copied).
func (m *Map) LookupBatch(in, keys, values []byte, count uint32, elemFlags, flags uint64, del bool) (uint32, []byte, error) {
	if del && m.Frozen() {
		return CountUnwritten, nil, ePERM
	}
	switch {
	case m.typ.isHash():
		if elemFlags&^UpdateLock != 0 || elemFlags&UpdateLock != 0 {
			return CountUnwritten, nil, eINVAL
		}
		return m.hashBatch(in, keys, values, count, flags, del)
	case (m.typ == Array || m.typ == PercpuArray) && !del:
		if elemFlags&^UpdateLock != 0 || elemFlags&UpdateLock != 0 {
			return CountUnwritten, nil, eINVAL
		}
	default:
		return CountUnwritten, nil, ENOTSUPP
	}
	if count == 0 {
		return 0, nil, nil
	}
	ks, vs := int(m.keySize), m.SyscallValueSize()
	if len(keys) < int(count)*ks || len(values) < int(count)*vs || in != nil && len(in) != ks {
		return 0, nil, eINVAL
	}
	prev := in
	var n uint32
	var err error
	for n < count {
		key := keys[int(n)*ks : int(n+1)*ks]
		if err = m.arrayNextKey(prev, key); err != nil {
			break
		}
		if err = m.arrayLookup(key, values[int(n)*vs:int(n+1)*vs]); err != nil {
			break
		}
		prev = key
		n++
	}
	if n == 0 {
		return 0, nil, err
	}
	return n, append([]byte(nil), prev...), err
}

func (m *Map) hashBatch(in, keys, values []byte, count uint32, flags uint64, del bool) (uint32, []byte, error) {
	if flags != 0 {
		return CountUnwritten, nil, eINVAL
	}
	if count == 0 {
		return 0, nil, nil
	}
	batch := uint32(0)
	if in != nil {
		if len(in) != 4 {
			return 0, nil, eINVAL
		}
		batch = binary.LittleEndian.Uint32(in)
	}
	if batch >= m.l.nBuckets {
		return 0, nil, eNOENT
	}
	ks, vs := uint64(m.keySize), uint64(m.SyscallValueSize())
	if uint64(len(keys)) < uint64(count)*ks || uint64(len(values)) < uint64(count)*vs {
		return 0, nil, eINVAL
	}
	if err := m.writeLock(); err != nil {
		return 0, nil, err
	}
	defer m.writeUnlock()
	var total uint32
	var err error
	for {
		var inBucket uint32
		for n := m.mem.load32(m.bucketHeadOff(batch)); m.validLink(n) && inBucket <= m.l.nElems; n = m.mem.load32(m.elemOff(n) + elemNextOff) {
			inBucket++
		}
		if inBucket > count-total {
			if total == 0 {
				err = eNOSPC
			}
			break
		}
		link := m.bucketHeadOff(batch)
		for n := m.mem.load32(link); m.validLink(n); n = m.mem.load32(link) {
			copy(keys[uint64(total)*ks:], m.elemKey(n))
			off := m.elemValOff(n)
			copy(values[uint64(total)*vs:uint64(total+1)*vs], m.mem[off:off+m.lookupBytes()])
			total++
			if del {
				m.unlink(batch, n, link, poolMain)
				m.push(n, poolMain)
			} else {
				link = m.elemOff(n) + elemNextOff
			}
		}
		batch++
		if batch >= m.l.nBuckets {
			err = eNOENT
			break
		}
	}
	return total, binary.LittleEndian.AppendUint32(nil, batch), err
}

// UpdateBatch is BPF_MAP_UPDATE_BATCH: it updates count entries in order and returns how many
// succeeded before the first error.
func (m *Map) UpdateBatch(keys, values []byte, count uint32, elemFlags uint64) (uint32, error) {
	if m.Frozen() {
		return CountUnwritten, ePERM
	}
	if !m.typ.isHash() && m.typ != Array && m.typ != PercpuArray {
		return CountUnwritten, ENOTSUPP
	}
	if elemFlags&^UpdateLock != 0 || elemFlags&UpdateLock != 0 {
		return CountUnwritten, eINVAL
	}
	ks, vs := uint64(m.keySize), uint64(m.SyscallValueSize())
	if uint64(len(keys)) < uint64(count)*ks || uint64(len(values)) < uint64(count)*vs {
		return 0, eINVAL
	}
	for i := range uint64(count) {
		if err := m.Update(keys[i*ks:(i+1)*ks], values[i*vs:(i+1)*vs], elemFlags); err != nil {
			return uint32(i), err
		}
	}
	return count, nil
}

// DeleteBatch is BPF_MAP_DELETE_BATCH (hash maps): it deletes count keys in order and returns
// how many it deleted before the first error.
func (m *Map) DeleteBatch(keys []byte, count uint32, elemFlags uint64) (uint32, error) {
	if m.Frozen() {
		return CountUnwritten, ePERM
	}
	if !m.typ.isHash() {
		return CountUnwritten, ENOTSUPP
	}
	if elemFlags&^UpdateLock != 0 || elemFlags&UpdateLock != 0 {
		return CountUnwritten, eINVAL
	}
	ks := uint64(m.keySize)
	if uint64(len(keys)) < uint64(count)*ks {
		return 0, eINVAL
	}
	for i := range uint64(count) {
		if err := m.Delete(keys[i*ks : (i+1)*ks]); err != nil {
			return uint32(i), err
		}
	}
	return count, nil
}
