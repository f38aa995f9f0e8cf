package server

import (
	"github.com/ebpfu/ebpfu/runtime/maps"
)

// Batch command attr fields (BPF_MAP_*_BATCH).
const (
	batchInBatch   = 0
	batchOutBatch  = 8
	batchKeys      = 16
	batchValues    = 24
	batchCount     = 32
	batchMapFD     = 36
	batchElemFlags = 40
	batchFlags     = 48
)

// mapLookupBatch serves BPF_MAP_LOOKUP_BATCH and, with del, BPF_MAP_LOOKUP_AND_DELETE_BATCH as
// the kernel's bpf_map_do_batch: entries after the in_batch cursor are copied to the keys and
// values arrays, the count copied and the cursor to go on from are written back.
func (s *Server) mapLookupBatch(c *call, del bool) (Result, error) {
	a := c.attr
	o, err := s.mapOfFD(c, a.s32(batchMapFD))
	if err != nil {
		return Result{}, err
	}
	m := o.m
	// The map's own checks (type, flags, frozen) come first, as the kernel's.
	if n, _, err := m.LookupBatch(nil, nil, nil, 0, a.u64(batchElemFlags), a.u64(batchFlags), del); n == maps.CountUnwritten {
		return Result{}, errnoOrEINVAL(err)
	}
	count := a.u32(batchCount)
	// No walk yields more entries than the map holds: a larger count needs no larger buffers.
	room := min(count, m.MaxEntries()+uint32(m.NumCPU()))
	var in []byte
	if addr := a.u64(batchInBatch); addr != 0 && count != 0 {
		in = make([]byte, m.BatchCursorSize())
		if err := readUser(c.p, addr, in); err != nil {
			return Result{}, err
		}
	}
	ks, vs := int(m.KeySize()), m.SyscallValueSize()
	keys, values := make([]byte, int(room)*ks), make([]byte, int(room)*vs)
	n, out, berr := m.LookupBatch(in, keys, values, room, a.u64(batchElemFlags), a.u64(batchFlags), del)
	if n == maps.CountUnwritten {
		return Result{}, errnoOrEINVAL(berr)
	}
	if count == 0 {
		return Result{}, errnoOrEINVAL(berr)
	}
	if n > 0 {
		if err := writeUser(c.p, a.u64(batchKeys), keys[:int(n)*ks]); err != nil {
			return Result{}, err
		}
		if err := writeUser(c.p, a.u64(batchValues), values[:int(n)*vs]); err != nil {
			return Result{}, err
		}
	}
	if out != nil {
		if err := writeUser(c.p, a.u64(batchOutBatch), out); err != nil {
			return Result{}, err
		}
	}
	if err := a.put32(c.p, batchCount, n); err != nil {
		return Result{}, err
	}
	return Result{}, errnoOrEINVAL(berr)
}

func (s *Server) mapLookupBatchCmd(c *call) (Result, error)       { return s.mapLookupBatch(c, false) }
func (s *Server) mapLookupDeleteBatchCmd(c *call) (Result, error) { return s.mapLookupBatch(c, true) }

// mapUpdateBatch serves BPF_MAP_UPDATE_BATCH and, with del, BPF_MAP_DELETE_BATCH as the kernel's
// generic_map_{update,delete}_batch: element by element, reading each from the caller, stopping
// at the first failure, and the count done written back.
func (s *Server) mapUpdateBatch(c *call, del bool) (Result, error) {
	a := c.attr
	o, err := s.mapOfFD(c, a.s32(batchMapFD))
	if err != nil {
		return Result{}, err
	}
	m, flags := o.m, a.u64(batchElemFlags)
	// The map's own checks (frozen, type, flags) come first, as the kernel's.
	var n uint32
	if del {
		n, err = m.DeleteBatch(nil, 0, flags)
	} else {
		n, err = m.UpdateBatch(nil, nil, 0, flags)
	}
	if n == maps.CountUnwritten {
		return Result{}, errnoOrEINVAL(err)
	}
	count := a.u32(batchCount)
	if count == 0 {
		return Result{}, nil
	}
	ks, vs := uint64(m.KeySize()), uint64(m.SyscallValueSize())
	key, value := make([]byte, ks), make([]byte, vs)
	var done uint32
	for ; done < count; done++ {
		i := uint64(done)
		if err = readUser(c.p, a.u64(batchKeys)+i*ks, key); err != nil {
			break
		}
		if del {
			_, err = m.DeleteBatch(key, 1, flags)
		} else {
			if err = readUser(c.p, a.u64(batchValues)+i*vs, value); err != nil {
				break
			}
			_, err = m.UpdateBatch(key, value, 1, flags)
		}
		if err != nil {
			break
		}
	}
	if perr := a.put32(c.p, batchCount, done); perr != nil {
		return Result{}, perr
	}
	return Result{}, errnoOrEINVAL(err)
}

func (s *Server) mapUpdateBatchCmd(c *call) (Result, error) { return s.mapUpdateBatch(c, false) }
func (s *Server) mapDeleteBatchCmd(c *call) (Result, error) { return s.mapUpdateBatch(c, true) }
