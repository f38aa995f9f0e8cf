package maps

import (
	"bytes"
)

// Hash maps (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH): n_buckets = roundup_pow_of_two(
// max_entries) bucket heads (u32) and a pool of preallocated elements, handed out from free lists
// and from a bump counter so that a new map touches no element memory. A key's bucket is
// jhash(key, seed) & (n_buckets-1), as in the kernel, and new elements go to the head of their
// chain, so that iteration order is the kernel's for the same seed.
//
// Readers (lookups, GET_NEXT_KEY) walk the chains without locks; the end of each chain is a
// "nulls" marker naming its bucket, so that a reader that followed a reused element into another
// chain (or a free list) notices and starts again. Writers (update, delete, eviction) hold the
// map's writer lock, an owner lock: every move of an element between a chain, a free list and a
// writer's hands happens under it, so a writer that took the lock from a dead holder can audit the
// whole map and put every element back where it belongs (repair).
//
// Plain hash maps replace an existing key's element by a new one (from an extra pool of NumCPU
// elements, or in place when that pool is empty) linked at the head before the old one is
// unlinked, as the kernel does: readers see the old or the new value, never a mix. Per-CPU
// maps update in place. LRU maps take a free element, or evict the least recently used of a
// sample of elements, before they look at the key, as the kernel's do.

const (
	poolUnset = 0 // never set: the pool of the element's index range
	poolMain  = 1
	poolExtra = 2

	maxRestarts = 16
	lruSample   = 64
)

func (m *Map) bucketHeadOff(b uint32) uint64 { return m.l.bucketsOff + uint64(b)*4 }
func (m *Map) elemOff(idx uint32) uint64 {
	return m.l.dataOff + uint64(idx-1)*uint64(m.l.elemSize)
}
func (m *Map) elemKey(idx uint32) []byte {
	off := m.elemOff(idx) + elemKeyOff
	return m.mem[off : off+uint64(m.keySize)]
}
func (m *Map) elemValOff(idx uint32) uint64 { return m.elemOff(idx) + m.valOff }
func (m *Map) valueBytes() uint64 {
	if m.typ.PerCPU() {
		return m.slot * uint64(m.ncpu)
	}
	return m.slot
}

// validLink reports whether n names an element.
func (m *Map) validLink(n uint32) bool { return n != 0 && n&nullsBit == 0 && n <= m.l.nElems }

// find returns the element holding key in bucket b without taking a lock, or 0.
func (m *Map) find(b, hash uint32, key []byte) uint32 {
	for range maxRestarts {
		n := m.mem.load32(m.bucketHeadOff(b))
		if n == 0 {
			return 0
		}
		restart := false
		for steps := uint32(0); ; steps++ {
			if n&nullsBit != 0 {
				if n == nullsBit|b {
					return 0
				}
				restart = true
				break
			}
			if !m.validLink(n) || steps > m.l.nElems {
				restart = true
				break
			}
			e := m.elemOff(n)
			if m.mem.load32(e+elemHashOff) == hash && m.mem.load32(e+elemStateOff) != stateFree &&
				bytes.Equal(m.elemKey(n), key) {
				return n
			}
			n = m.mem.load32(e + elemNextOff)
		}
		if !restart {
			return 0
		}
	}
	return 0
}

// findLocked returns the element holding key in bucket b (writer lock held) and the offset of
// the link that points to it.
func (m *Map) findLocked(b, hash uint32, key []byte) (idx uint32, link uint64) {
	link = m.bucketHeadOff(b)
	n := m.mem.load32(link)
	for steps := uint32(0); m.validLink(n) && steps <= m.l.nElems; steps++ {
		e := m.elemOff(n)
		if m.mem.load32(e+elemHashOff) == hash && bytes.Equal(m.elemKey(n), key) {
			return n, link
		}
		link = e + elemNextOff
		n = m.mem.load32(link)
	}
	return 0, 0
}

// linkOf returns the offset of the link that points to idx in bucket b (writer lock held), or
// false.
func (m *Map) linkOf(b, idx uint32) (uint64, bool) {
	link := m.bucketHeadOff(b)
	n := m.mem.load32(link)
	for steps := uint32(0); m.validLink(n) && steps <= m.l.nElems; steps++ {
		if n == idx {
			return link, true
		}
		link = m.elemOff(n) + elemNextOff
		n = m.mem.load32(link)
	}
	return 0, false
}

// claim marks idx as owned by the caller.
func (m *Map) claim(idx, pool uint32) {
	e := m.elemOff(idx)
	m.mem.set32(e+elemPoolOff, pool)
	m.mem.set32(e+elemOwnerOff, m.owner)
	m.mem.set32(e+elemStateOff, stateBusy)
}

func (m *Map) poolHeadOff(pool uint32) uint64 {
	if pool == poolExtra {
		return m.ctl + ctlExtraHeadOff
	}
	return m.ctl + ctlFreeHeadOff
}

// pop takes an element from pool (writer lock held), or returns 0 when it is empty.
func (m *Map) pop(pool uint32) uint32 {
	head := m.poolHeadOff(pool)
	if idx := uint32(m.mem.load64(head)); idx != 0 {
		if !m.validLink(idx) {
			return 0 // a corrupted list: the pool is empty
		}
		m.mem.set64(head, uint64(m.mem.load32(m.elemOff(idx)+elemNextOff)))
		m.claim(idx, pool)
		return idx
	}
	bump, first, limit := m.ctl+ctlBumpOff, uint32(1), m.l.nElems-m.l.nExtra
	if pool == poolExtra {
		bump, first, limit = m.ctl+ctlExtraBumpOff, m.l.nElems-m.l.nExtra+1, m.l.nExtra
	}
	n := m.mem.load32(bump)
	if n >= limit {
		return 0
	}
	m.mem.set32(bump, n+1)
	m.claim(first+n, pool)
	return first + n
}

// push returns idx to pool (writer lock held).
func (m *Map) push(idx, pool uint32) {
	e := m.elemOff(idx)
	head := m.poolHeadOff(pool)
	m.mem.set32(e+elemNextOff, uint32(m.mem.load64(head)))
	m.mem.set32(e+elemPoolOff, pool)
	m.mem.set32(e+elemStateOff, stateFree)
	m.mem.set64(head, uint64(idx))
}

// fill writes key and value into the element idx the caller owns.
func (m *Map) fill(idx, hash uint32, key, value []byte, cpu uint32, allCPUs bool) {
	e := m.elemOff(idx)
	m.mem.set32(e+elemHashOff, hash)
	k := m.mem[e+elemKeyOff : e+m.valOff]
	clear(k[copy(k, key):])
	v := m.mem[e+m.valOff : e+m.valOff+m.valueBytes()]
	switch {
	case !m.typ.PerCPU():
		clear(v[copy(v, value[:m.valueSize]):])
	case allCPUs:
		copy(v, value)
	default:
		clear(v)
		copy(v[uint64(cpu)*m.slot:], value[:m.valueSize])
	}
	if m.typ.isLRU() {
		m.mem.set32(e+elemAtimeOff, m.tick())
	}
}

// copyIn updates the value of a linked element in place.
func (m *Map) copyIn(idx uint32, value []byte, cpu uint32, allCPUs bool) {
	off := m.elemValOff(idx)
	switch {
	case m.typ.PerCPU() && allCPUs:
		copy(m.mem[off:off+m.valueBytes()], value)
	case m.typ.PerCPU():
		copy(m.mem[off+uint64(cpu)*m.slot:], value[:m.valueSize])
	default:
		copy(m.mem[off:off+uint64(m.valueSize)], value[:m.valueSize])
	}
}

// linkHead links the element idx the caller owns at the head of bucket b.
func (m *Map) linkHead(b, idx uint32) {
	e := m.elemOff(idx)
	head := m.mem.load32(m.bucketHeadOff(b))
	if head == 0 {
		head = nullsBit | b
	}
	m.mem.set32(e+elemNextOff, head)
	m.mem.store32(m.bucketHeadOff(b), idx)
	m.mem.set32(e+elemStateOff, stateLive)
}

// unlink removes idx from bucket b through link and leaves it owned by the caller, to be
// returned to pool.
func (m *Map) unlink(b, idx uint32, link uint64, pool uint32) {
	e := m.elemOff(idx)
	m.mem.set32(e+elemPoolOff, pool)
	m.mem.set32(e+elemOwnerOff, m.owner)
	m.mem.set32(e+elemStateOff, stateBusy)
	next := m.mem.load32(e + elemNextOff)
	if link == m.bucketHeadOff(b) && next == nullsBit|b {
		next = 0
	}
	m.mem.store32(link, next)
}

// writeLock takes the map's writer lock, repairing the map when its holder died.
func (m *Map) writeLock() error {
	dead, err := m.lock(m.mem, m.ctl+ctlLockOff)
	if dead != 0 {
		m.repair()
	}
	return err
}

func (m *Map) writeUnlock() { m.unlock(m.mem, m.ctl+ctlLockOff) }

func (m *Map) tick() uint32 { return m.mem.load32(m.ctl + ctlTickOff) }

// touch marks an LRU element used now.
func (m *Map) touch(idx uint32) {
	off := m.elemOff(idx) + elemAtimeOff
	if t := m.tick(); m.mem.load32(off) != t {
		m.mem.store32(off, t)
	}
}

func (m *Map) hashUpdate(key, value []byte, flags uint64, cpu uint32, allCPUs bool) error {
	f := flags &^ UpdateLock
	if f > UpdateExist {
		return eINVAL
	}
	if flags&UpdateLock != 0 {
		return eINVAL // no bpf_spin_lock in the value (no BTF)
	}
	if cpu >= m.ncpu {
		return eINVAL
	}
	hash := keyHash(key, m.seed)
	b := hash & (m.l.nBuckets - 1)
	lru, percpu := m.typ.isLRU(), m.typ.PerCPU()
	if err := m.writeLock(); err != nil {
		return err
	}
	defer m.writeUnlock()
	var pre uint32
	if lru && !(percpu && f == UpdateExist) {
		if pre = m.lruAlloc(); pre == 0 {
			return eNOMEM
		}
		m.fill(pre, hash, key, value, cpu, allCPUs)
		// The insert is older than any use after it: later lookups stamp the new tick.
		m.mem.add32(m.ctl+ctlTickOff, 1)
	}
	old, _ := m.findLocked(b, hash, key)
	var err error
	switch {
	case old != 0 && f == UpdateNoExist:
		err = eEXIST
	case old == 0 && f == UpdateExist:
		err = eNOENT
	case old != 0 && percpu:
		m.copyIn(old, value, cpu, allCPUs)
		if lru {
			m.touch(old)
		}
	default:
		nw, pool := pre, uint32(poolMain)
		if nw == 0 {
			if old != 0 {
				pool = poolExtra
			}
			if nw = m.pop(pool); nw != 0 {
				m.fill(nw, hash, key, value, cpu, allCPUs)
			}
		}
		switch {
		case nw == 0 && old != 0:
			m.copyIn(old, value, cpu, allCPUs)
		case nw == 0:
			err = e2BIG
		default:
			pre = 0
			m.linkHead(b, nw)
			if old != 0 {
				link, _ := m.linkOf(b, old)
				m.unlink(b, old, link, pool)
				m.push(old, pool)
			}
		}
	}
	if pre != 0 {
		m.push(pre, poolMain)
	}
	return err
}

func (m *Map) hashDelete(key []byte, value []byte) error {
	hash := keyHash(key, m.seed)
	b := hash & (m.l.nBuckets - 1)
	if err := m.writeLock(); err != nil {
		return err
	}
	defer m.writeUnlock()
	idx, link := m.findLocked(b, hash, key)
	if idx == 0 {
		return eNOENT
	}
	if value != nil {
		copy(value, m.mem[m.elemValOff(idx):m.elemValOff(idx)+m.lookupBytes()])
	}
	m.unlink(b, idx, link, poolMain)
	m.push(idx, poolMain)
	return nil
}

// lookupBytes is how many value bytes a syscall lookup copies.
func (m *Map) lookupBytes() uint64 {
	if m.typ.PerCPU() {
		return m.slot * uint64(m.ncpu)
	}
	return uint64(m.valueSize)
}

func (m *Map) hashLookup(key, value []byte) error {
	hash := keyHash(key, m.seed)
	idx := m.find(hash&(m.l.nBuckets-1), hash, key)
	if idx == 0 {
		return eNOENT
	}
	off := m.elemValOff(idx)
	copy(value, m.mem[off:off+m.lookupBytes()])
	return nil
}

func (m *Map) hashElem(key []byte, cpu uint32) uint64 {
	if cpu >= m.ncpu {
		return 0
	}
	hash := keyHash(key, m.seed)
	idx := m.find(hash&(m.l.nBuckets-1), hash, key)
	if idx == 0 {
		return 0
	}
	if m.typ.isLRU() {
		m.touch(idx)
	}
	off := m.elemValOff(idx)
	if m.typ.PerCPU() {
		off += uint64(cpu) * m.slot
	}
	return m.mem.addr(off)
}

func (m *Map) hashNextKey(key, next []byte) error {
	var b uint32
	if key != nil {
		hash := keyHash(key, m.seed)
		b = hash & (m.l.nBuckets - 1)
		if idx := m.find(b, hash, key); idx != 0 {
			n := m.mem.load32(m.elemOff(idx) + elemNextOff)
			if m.validLink(n) {
				copy(next, m.elemKey(n))
				return nil
			}
			b++
		} else {
			b = 0
		}
	}
	for ; b < m.l.nBuckets; b++ {
		if n := m.mem.load32(m.bucketHeadOff(b)); m.validLink(n) {
			copy(next, m.elemKey(n))
			return nil
		}
	}
	return eNOENT
}

// lruAlloc returns an element for an LRU map (writer lock held): a free one, or the least
// recently used of a sample of elements starting at the clock hand, evicted.
func (m *Map) lruAlloc() uint32 {
	if idx := m.pop(poolMain); idx != 0 {
		return idx
	}
	n := m.l.nElems
	sample := min(n, lruSample)
	now := m.tick()
	for range 4 {
		start := m.mem.add32(m.ctl+ctlHandOff, sample) - sample
		var best, bestAge uint32
		for i := range sample {
			idx := (start+i)%n + 1
			e := m.elemOff(idx)
			if m.mem.load32(e+elemStateOff) != stateLive {
				continue
			}
			age := now - m.mem.load32(e+elemAtimeOff)
			if int32(age) < 0 {
				age = 0 // used after now was read
			}
			if best == 0 || age > bestAge {
				best, bestAge = idx, age
			}
		}
		if best == 0 {
			continue
		}
		b := m.mem.load32(m.elemOff(best)+elemHashOff) & (m.l.nBuckets - 1)
		if link, ok := m.linkOf(b, best); ok {
			m.unlink(b, best, link, poolMain)
			return best
		}
	}
	return 0
}

// placedMark marks, in the owner word, the elements repair has found in a chain or a free list.
const placedMark = 0xffffffff

// repair puts a hash map back in order after its writer lock was taken over from a dead holder
// (writer lock held): in every chain the first element of a key stays (a replacement cut short
// leaves the new element ahead of the old one) and later duplicates go, every linked element is
// live, a chain cut short ends; free list members are free; every other element handed out
// (held by the dead writer, or lost between a list and its state) goes back to its pool. It
// allocates nothing (the C agent does the same): it marks elements in their owner word.
func (m *Map) repair() {
	mainN := m.l.nElems - m.l.nExtra
	handedOut := func(idx uint32) bool {
		return idx <= m.mem.load32(m.ctl+ctlBumpOff) ||
			idx > mainN && idx-mainN <= m.mem.load32(m.ctl+ctlExtraBumpOff)
	}
	owner := func(idx uint32) uint64 { return m.elemOff(idx) + elemOwnerOff }
	for idx := uint32(1); idx <= m.l.nElems; idx++ {
		if handedOut(idx) {
			m.mem.store32(owner(idx), 0)
		}
	}
	for b := range m.l.nBuckets {
		head := m.bucketHeadOff(b)
		link := head
		n := m.mem.load32(link)
		first := uint32(0) // the first element of the chain, to find earlier keys from
		for steps := uint32(0); m.validLink(n) && steps <= m.l.nElems && m.mem.load32(owner(n)) != placedMark; steps++ {
			e := m.elemOff(n)
			next := m.mem.load32(e + elemNextOff)
			dup := false
			for k := first; k != 0 && k != n; k = m.mem.load32(m.elemOff(k) + elemNextOff) {
				if bytes.Equal(m.elemKey(k), m.elemKey(n)) {
					dup = true
					break
				}
			}
			if dup {
				pool := uint32(poolMain)
				if m.l.nExtra > 0 {
					pool = poolExtra
				}
				m.unlink(b, n, link, pool) // left unmarked: the last pass frees it
			} else {
				if first == 0 {
					first = n
				}
				m.mem.store32(e+elemStateOff, stateLive)
				m.mem.store32(owner(n), placedMark)
				link = e + elemNextOff
			}
			n = next
		}
		switch {
		case n == nullsBit|b || n == 0 && link == head:
		case link == head:
			m.mem.store32(link, 0) // a cut chain: end it here
		default:
			m.mem.store32(link, nullsBit|b)
		}
	}
	for _, pool := range []uint32{poolMain, poolExtra} {
		head := m.poolHeadOff(pool)
		for n, link := uint32(m.mem.load64(head)), uint64(0); n != 0; n = m.mem.load32(m.elemOff(n) + elemNextOff) {
			if !m.validLink(n) || m.mem.load32(owner(n)) == placedMark {
				if link == 0 {
					m.mem.store64(head, 0)
				} else {
					m.mem.store32(link, 0)
				}
				break
			}
			m.mem.store32(m.elemOff(n)+elemStateOff, stateFree)
			m.mem.store32(m.elemOff(n)+elemPoolOff, pool)
			m.mem.store32(owner(n), placedMark)
			link = m.elemOff(n) + elemNextOff
		}
	}
	for idx := uint32(1); idx <= m.l.nElems; idx++ {
		if !handedOut(idx) || m.mem.load32(owner(idx)) == placedMark {
			continue
		}
		pool := m.mem.load32(m.elemOff(idx) + elemPoolOff)
		if pool != poolMain && pool != poolExtra {
			pool = poolMain
			if idx > mainN {
				pool = poolExtra
			}
		}
		m.push(idx, pool)
		m.mem.store32(owner(idx), placedMark)
	}
}

// Recover repairs what a process that died inside a map operation left behind: the lock it held
// and what it was changing. An operation that meets a dead holder's lock repairs on its own; the
// server may call Recover when it learns that a traced process died, so that a lock nobody
// contends for is freed too.
func (m *Map) Recover() {
	switch {
	case m.typ.isHash():
		if o := m.mem.load32(m.ctl + ctlLockOff); o != 0 && !m.alive(o) && m.mem.cas32(m.ctl+ctlLockOff, o, m.owner) {
			m.repair()
			m.writeUnlock()
		}
	case m.typ == StackTrace:
		for b := uint32(0); b < m.l.nBuckets; b++ {
			off := uint64(b) * uint64(m.l.elemSize)
			if o := m.mem.load32(off + stackLockOff); o != 0 && !m.alive(o) {
				m.mem.cas32(off+stackLockOff, o, 0)
			}
		}
	case m.typ == RingBuf:
		if o := m.mem.load32(m.ctl + ctlLockOff); o != 0 && !m.alive(o) {
			m.mem.cas32(m.ctl+ctlLockOff, o, 0)
		}
		m.ringRecover()
	}
}
