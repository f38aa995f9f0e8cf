package interp

import (
	"sync/atomic"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// atomic runs an STX|ATOMIC instruction. Its imm holds the atomic operation in the low 32 bits,
// the opcode in the next 8 and atomicChecked when the access must be checked.
// A failure is also left in m.err.
//
//go:nocheckptr
func (m *Machine) atomic(in *insn, env *helper.Env, pc int) (err error) {
	defer func() { m.err = err }()
	r := &m.regs
	aop := int32(uint32(in.imm))
	size := uint64(isa.Bytes(isa.SizeOf(uint8(in.imm >> 32))))
	var addr uint64
	if aop == isa.AtomicLoadAcq {
		addr = r[in.src] + uint64(int64(in.off))
	} else {
		addr = r[in.dst] + uint64(int64(in.off))
	}
	write := aop != isa.AtomicLoadAcq
	if in.imm&atomicChecked != 0 && addr-m.lo > m.span-size && !env.Mem.Check(addr, size, write) {
		return memFault(pc, addr, size, write, env)
	}
	if addr&(size-1) != 0 {
		return fault(pc, "misaligned atomic access of %d bytes at %#x", size, addr)
	}
	p := at(addr)
	switch aop {
	case isa.AtomicLoadAcq:
		switch size {
		case 1:
			r[in.dst] = uint64(*(*uint8)(p))
		case 2:
			r[in.dst] = uint64(*(*uint16)(p))
		case 4:
			r[in.dst] = uint64(atomic.LoadUint32((*uint32)(p)))
		default:
			r[in.dst] = atomic.LoadUint64((*uint64)(p))
		}
		return nil
	case isa.AtomicStoreRel:
		switch size {
		case 1:
			*(*uint8)(p) = uint8(r[in.src])
		case 2:
			*(*uint16)(p) = uint16(r[in.src])
		case 4:
			atomic.StoreUint32((*uint32)(p), uint32(r[in.src]))
		default:
			atomic.StoreUint64((*uint64)(p), r[in.src])
		}
		return nil
	}
	if size == 8 {
		p64, v := (*uint64)(p), r[in.src]
		var old uint64
		switch aop &^ isa.AtomicFetch {
		case isa.AtomicAdd:
			old = atomic.AddUint64(p64, v) - v
		case isa.AtomicOr:
			old = atomic.OrUint64(p64, v)
		case isa.AtomicAnd:
			old = atomic.AndUint64(p64, v)
		case isa.AtomicXor:
			for {
				old = atomic.LoadUint64(p64)
				if atomic.CompareAndSwapUint64(p64, old, old^v) {
					break
				}
			}
		case isa.AtomicXchg &^ isa.AtomicFetch:
			old = atomic.SwapUint64(p64, v)
		case isa.AtomicCmpXchg &^ isa.AtomicFetch:
			for {
				old = atomic.LoadUint64(p64)
				if old != r[0] || atomic.CompareAndSwapUint64(p64, old, v) {
					break
				}
			}
			r[0] = old
			return nil
		}
		if aop&isa.AtomicFetch != 0 {
			r[in.src] = old
		}
		return nil
	}
	p32, v := (*uint32)(p), uint32(r[in.src])
	var old uint32
	switch aop &^ isa.AtomicFetch {
	case isa.AtomicAdd:
		old = atomic.AddUint32(p32, v) - v
	case isa.AtomicOr:
		old = atomic.OrUint32(p32, v)
	case isa.AtomicAnd:
		old = atomic.AndUint32(p32, v)
	case isa.AtomicXor:
		for {
			old = atomic.LoadUint32(p32)
			if atomic.CompareAndSwapUint32(p32, old, old^v) {
				break
			}
		}
	case isa.AtomicXchg &^ isa.AtomicFetch:
		old = atomic.SwapUint32(p32, v)
	case isa.AtomicCmpXchg &^ isa.AtomicFetch:
		for {
			old = atomic.LoadUint32(p32)
			if old != uint32(r[0]) || atomic.CompareAndSwapUint32(p32, old, v) {
				break
			}
		}
		r[0] = uint64(old)
		return nil
	}
	if aop&isa.AtomicFetch != 0 {
		r[in.src] = uint64(old)
	}
	return nil
}
