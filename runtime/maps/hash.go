package maps

import (
	"bytes"
)

// Hash maps (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH): n_buckets = roundup_pow_of_two(
// max_entries) buckets {u32 lock, u32 head} and a pool of preallocated elements, handed out from
// lock-free free lists (Treiber stacks with a tag against ABA) and from a bump counter so that a
// new map touches no element memory. A key's bucket is jhash(key, seed) & (n_buckets-1), as in
// the kernel. Writers of a bucket hold its lock; readers walk the chains without locks, the end
// of each chain being a "nulls" marker naming its bucket so that a reader that followed a reused
// element into another chain (or a free list) notices it and starts again.
//
// Plain hash maps replace an existing key's element by a new one (from an extra pool of NumCPU
// elements, or in place when that pool is empty) linked at the head before the old one is
// unlinked, as the kernel does: readers see the old or the new value, never a mix. Per-CPU
// maps update in place. LRU maps take a free element or evict the least recently used element of
// a sample before taking the bucket lock.

const (
	poolMain  = 0
	poolExtra = 1

	maxRestarts = 16
	lruSample   = 64
)

func (m *Map) bucketLockOff(b uint32) uint64 { return m.l.bucketsOff + uint64(b)*8 }
func (m *Map) bucketHeadOff(b uint32) uint64 { return m.l.bucketsOff + uint64(b)*8 + 4 }
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

// findLocked returns the element holding key in bucket b, whose lock the caller holds, and the
// offset of the link that points to it.
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

// linkOf returns the offset of the link that points to idx in bucket b (lock held), or false.
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
	m.mem.store32(e+elemPoolOff, pool)
	m.mem.store32(e+elemOwnerOff, m.owner)
	m.mem.store32(e+elemStateOff, stateBusy)
}

func (m *Map) poolHeadOff(pool uint32) uint64 {
	if pool == poolExtra {
		return m.ctl + ctlExtraHeadOff
	}
	return m.ctl + ctlFreeHeadOff
}

// pop takes an element from pool, or returns 0 when it is empty.
func (m *Map) pop(pool uint32) uint32 {
	head := m.poolHeadOff(pool)
	for {
		h := m.mem.load64(head)
		idx := uint32(h)
		if idx == 0 {
			break
		}
		if !m.validLink(idx) {
			return 0 // a corrupted list: treat the pool as empty
		}
		next := m.mem.load32(m.elemOff(idx) + elemNextOff)
		if m.mem.cas64(head, h, uint64(next)|(h>>32+1)<<32) {
			m.claim(idx, pool)
			return idx
		}
	}
	bump, first, limit := m.ctl+ctlBumpOff, uint32(1), m.l.nElems-m.l.nExtra
	if pool == poolExtra {
		bump, first, limit = m.ctl+ctlExtraBumpOff, m.l.nElems-m.l.nExtra+1, m.l.nExtra
	}
	for {
		n := m.mem.load32(bump)
		if n >= limit {
			return 0
		}
		if m.mem.cas32(bump, n, n+1) {
			m.claim(first+n, pool)
			return first + n
		}
	}
}

// push returns idx to pool.
func (m *Map) push(idx, pool uint32) {
	e := m.elemOff(idx)
	m.mem.store32(e+elemStateOff, stateFree)
	head := m.poolHeadOff(pool)
	for {
		h := m.mem.load64(head)
		m.mem.store32(e+elemNextOff, uint32(h))
		if m.mem.cas64(head, h, uint64(idx)|(h>>32+1)<<32) {
			return
		}
	}
}

// fill writes key and value into the element idx the caller owns.
func (m *Map) fill(idx, hash uint32, key, value []byte, cpu uint32, allCPUs bool) {
	e := m.elemOff(idx)
	m.mem.store32(e+elemHashOff, hash)
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
		m.mem.store32(e+elemAtimeOff, m.tick())
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

// linkHead links the element idx the caller owns at the head of bucket b (lock held).
func (m *Map) linkHead(b, idx uint32) {
	e := m.elemOff(idx)
	head := m.mem.load32(m.bucketHeadOff(b))
	if head == 0 {
		head = nullsBit | b
	}
	m.mem.store32(e+elemNextOff, head)
	m.mem.store32(m.bucketHeadOff(b), idx)
	m.mem.store32(e+elemStateOff, stateLive)
}

// unlink removes idx from bucket b through link (lock held) and leaves it owned by the caller,
// to be returned to pool.
func (m *Map) unlink(b, idx uint32, link uint64, pool uint32) {
	e := m.elemOff(idx)
	m.mem.store32(e+elemPoolOff, pool)
	m.mem.store32(e+elemOwnerOff, m.owner)
	m.mem.store32(e+elemStateOff, stateBusy)
	next := m.mem.load32(e + elemNextOff)
	if link == m.bucketHeadOff(b) && next == nullsBit|b {
		next = 0
	}
	m.mem.store32(link, next)
}

// lockBucket takes bucket b's lock, repairing the bucket when its holder died.
func (m *Map) lockBucket(b uint32) (dead uint32, err error) {
	dead, err = m.lock(m.mem, m.bucketLockOff(b))
	if dead != 0 {
		m.repairBucket(b)
	}
	return dead, err
}

func (m *Map) unlockBucket(b uint32, dead uint32) {
	m.unlock(m.mem, m.bucketLockOff(b))
	if dead != 0 {
		m.recoverOwner(dead)
	}
}

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
	var pre uint32
	if lru && !(percpu && f == UpdateExist) {
		if pre = m.lruAlloc(); pre == 0 {
			return eNOMEM
		}
		m.fill(pre, hash, key, value, cpu, allCPUs)
		// The insert is older than any use after it: later lookups stamp the new tick.
		m.mem.add32(m.ctl+ctlTickOff, 1)
	}
	dead, err := m.lockBucket(b)
	if err != nil {
		if pre != 0 {
			m.push(pre, poolMain)
		}
		return err
	}
	var freeIdx, freePool uint32
	old, link := m.findLocked(b, hash, key)
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
				link, _ = m.linkOf(b, old)
				m.unlink(b, old, link, pool)
				freeIdx, freePool = old, pool
			}
		}
	}
	m.unlockBucket(b, dead)
	if freeIdx != 0 {
		m.push(freeIdx, freePool)
	}
	if pre != 0 {
		m.push(pre, poolMain)
	}
	return err
}

func (m *Map) hashDelete(key []byte, value []byte) error {
	hash := keyHash(key, m.seed)
	b := hash & (m.l.nBuckets - 1)
	dead, err := m.lockBucket(b)
	if err != nil {
		return err
	}
	idx, link := m.findLocked(b, hash, key)
	if idx != 0 {
		if value != nil {
			copy(value, m.mem[m.elemValOff(idx):m.elemValOff(idx)+m.lookupBytes()])
		}
		m.unlink(b, idx, link, poolMain)
	}
	m.unlockBucket(b, dead)
	if idx == 0 {
		return eNOENT
	}
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

// lruAlloc returns an element for an LRU map: a free one, or one evicted from a sample of
// elements starting at the clock hand: the least recently used whose bucket lock is free.
func (m *Map) lruAlloc() uint32 {
	if idx := m.pop(poolMain); idx != 0 {
		return idx
	}
	n := m.l.nElems
	sample := min(n, lruSample)
	now := m.tick()
	for range 8 {
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
		if !m.tryLock(m.mem, m.bucketLockOff(b)) {
			continue
		}
		link, ok := m.linkOf(b, best)
		if ok && m.mem.load32(m.elemOff(best)+elemStateOff) == stateLive {
			m.unlink(b, best, link, poolMain)
		} else {
			best = 0
		}
		m.unlock(m.mem, m.bucketLockOff(b))
		if best != 0 {
			return best
		}
	}
	return m.pop(poolMain)
}

// repairBucket makes bucket b consistent after its lock was taken over from a dead holder: the
// first element of each key stays (a replacement cut short leaves the new element ahead of the
// old one), later duplicates go back to their pool, and every linked element is live.
func (m *Map) repairBucket(b uint32) {
	var seen []uint32
	link := m.bucketHeadOff(b)
	n := m.mem.load32(link)
	var drop []uint32
	for steps := uint32(0); m.validLink(n) && steps <= m.l.nElems; steps++ {
		e := m.elemOff(n)
		next := m.mem.load32(e + elemNextOff)
		dup := false
		for _, s := range seen {
			if bytes.Equal(m.elemKey(s), m.elemKey(n)) {
				dup = true
				break
			}
		}
		if dup {
			pool := uint32(poolMain)
			if m.l.nExtra > 0 {
				pool = poolExtra
			}
			m.unlink(b, n, link, pool)
			drop = append(drop, n)
		} else {
			m.mem.store32(e+elemStateOff, stateLive)
			seen = append(seen, n)
			link = e + elemNextOff
		}
		n = next
	}
	switch head := m.bucketHeadOff(b); {
	case n == nullsBit|b || n == 0 && link == head:
	case link == head:
		m.mem.store32(link, 0) // a cut chain: end it here
	default:
		m.mem.store32(link, nullsBit|b)
	}
	for _, idx := range drop {
		m.push(idx, m.mem.load32(m.elemOff(idx)+elemPoolOff))
	}
}

// recoverOwner returns to their pools the elements that the dead owner had taken and not
// linked, and marks live those it had linked.
func (m *Map) recoverOwner(dead uint32) {
	if !m.typ.isHash() {
		return
	}
	for idx := uint32(1); idx <= m.l.nElems; idx++ {
		e := m.elemOff(idx)
		if m.mem.load32(e+elemStateOff) != stateBusy || m.mem.load32(e+elemOwnerOff) != dead {
			continue
		}
		b := m.mem.load32(e+elemHashOff) & (m.l.nBuckets - 1)
		d2, err := m.lockBucket(b)
		if err != nil {
			continue
		}
		free := false
		if m.mem.load32(e+elemStateOff) == stateBusy && m.mem.load32(e+elemOwnerOff) == dead {
			if _, linked := m.linkOf(b, idx); linked {
				m.mem.store32(e+elemStateOff, stateLive)
			} else {
				m.mem.store32(e+elemOwnerOff, m.owner)
				free = true
			}
		}
		m.unlockBucket(b, d2)
		if free {
			m.push(idx, m.mem.load32(e+elemPoolOff))
		}
	}
}

// Recover repairs what processes that died inside map operations left behind: locks they held
// and elements they had taken. The server may call it when it learns that a traced process
// died; operations that find a dead holder's lock repair on their own.
func (m *Map) Recover() {
	dead := map[uint32]bool{}
	switch {
	case m.typ.isHash():
		for b := uint32(0); b < m.l.nBuckets; b++ {
			if o := m.mem.load32(m.bucketLockOff(b)); o != 0 && !dead[o] && !m.alive(o) {
				dead[o] = true
			}
		}
		for idx := uint32(1); idx <= m.l.nElems; idx++ {
			e := m.elemOff(idx)
			if m.mem.load32(e+elemStateOff) == stateBusy {
				if o := m.mem.load32(e + elemOwnerOff); !dead[o] && !m.alive(o) {
					dead[o] = true
				}
			}
		}
		for b := uint32(0); b < m.l.nBuckets; b++ {
			if o := m.mem.load32(m.bucketLockOff(b)); o != 0 && dead[o] && m.mem.cas32(m.bucketLockOff(b), o, m.owner) {
				m.repairBucket(b)
				m.unlock(m.mem, m.bucketLockOff(b))
			}
		}
		for o := range dead {
			m.recoverOwner(o)
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
