package maps

import (
	"bytes"
	"fmt"
)

// checkHash verifies the structural invariants of a hash map with no operation in flight:
// every element is in exactly one place (one chain, the bucket its hash names, or a free list,
// or not handed out yet), no key is linked twice, no element is busy, and the main pool plus the
// linked elements account for max_entries.
func (m *Map) checkHash() error {
	where := make([]string, m.l.nElems+1)
	place := func(idx uint32, p string) error {
		if !m.validLink(idx) {
			return fmt.Errorf("%s: bad link %#x", p, idx)
		}
		if where[idx] != "" {
			return fmt.Errorf("element %d in %s and in %s", idx, where[idx], p)
		}
		where[idx] = p
		return nil
	}
	live := 0
	if o := m.mem.load32(m.ctl + ctlLockOff); o != 0 {
		return fmt.Errorf("writer lock held by %#x", o)
	}
	for b := range m.l.nBuckets {
		var keys [][]byte
		n := m.mem.load32(m.bucketHeadOff(b))
		if n == 0 {
			continue
		}
		for n != nullsBit|b {
			if err := place(n, fmt.Sprintf("bucket %d", b)); err != nil {
				return err
			}
			e := m.elemOff(n)
			if s := m.mem.load32(e + elemStateOff); s != stateLive {
				return fmt.Errorf("element %d in bucket %d has state %d", n, b, s)
			}
			if h := m.mem.load32(e + elemHashOff); h&(m.l.nBuckets-1) != b || h != keyHash(m.elemKey(n), m.seed) {
				return fmt.Errorf("element %d in bucket %d has hash %#x", n, b, h)
			}
			for _, k := range keys {
				if bytes.Equal(k, m.elemKey(n)) {
					return fmt.Errorf("key %x twice in bucket %d", k, b)
				}
			}
			keys = append(keys, m.elemKey(n))
			live++
			n = m.mem.load32(e + elemNextOff)
		}
	}
	free := map[uint32]int{}
	for _, pool := range []uint32{poolMain, poolExtra} {
		for n := uint32(m.mem.load64(m.poolHeadOff(pool))); n != 0; n = m.mem.load32(m.elemOff(n) + elemNextOff) {
			if err := place(n, fmt.Sprintf("pool %d", pool)); err != nil {
				return err
			}
			if s := m.mem.load32(m.elemOff(n) + elemStateOff); s != stateFree {
				return fmt.Errorf("element %d in pool %d has state %d", n, pool, s)
			}
			free[pool]++
		}
	}
	mainN := m.l.nElems - m.l.nExtra
	for i := m.mem.load32(m.ctl+ctlBumpOff) + 1; i <= mainN; i++ {
		if err := place(i, "main bump"); err != nil {
			return err
		}
		free[poolMain]++
	}
	for i := m.mem.load32(m.ctl+ctlExtraBumpOff) + 1; i <= m.l.nExtra; i++ {
		if err := place(mainN+i, "extra bump"); err != nil {
			return err
		}
		free[poolExtra]++
	}
	for idx := uint32(1); idx <= m.l.nElems; idx++ {
		if where[idx] == "" {
			return fmt.Errorf("element %d is nowhere (state %d owner %#x)", idx,
				m.mem.load32(m.elemOff(idx)+elemStateOff), m.mem.load32(m.elemOff(idx)+elemOwnerOff))
		}
	}
	if live+free[poolMain] != int(mainN) || free[poolExtra] != int(m.l.nExtra) {
		return fmt.Errorf("%d linked + %d free in the main pool != %d, %d free in the extra pool != %d",
			live, free[poolMain], mainN, free[poolExtra], m.l.nExtra)
	}
	return nil
}
