package server

import (
	"encoding/binary"
	"syscall"
)

// attrSize is sizeof(union bpf_attr) of the kernel ebpfu answers as (Linux 6.18: PROG_LOAD's
// keyring_id ends at 168).
const attrSize = 168

// pageSize bounds the attr size a caller may pass, as the kernel's PAGE_SIZE does.
const pageSize = 4096

// userTop is the end of x86-64 user space (TASK_SIZE_MAX): the kernel's access_ok fails with
// EFAULT for ranges beyond it.
const userTop = 1<<47 - 4096

// attr is one bpf(2) call's union bpf_attr, copied from the caller with the kernel's rules.
type attr struct {
	b    [attrSize]byte
	addr uint64 // where the caller's copy lives (some commands write results back into it)
	size uint32 // the size the caller passed
}

// accessOK is the kernel's access_ok: the range lies in user space.
func accessOK(addr, size uint64) bool {
	return addr+size >= addr && addr+size <= userTop
}

// readAttr copies the caller's attr as bpf_check_uarg_tail_zero and copy_from_bpfptr do: a size
// above a page is E2BIG, a larger-than-known attr must have a zero tail (E2BIG), a smaller one is
// zero-extended, and an unreadable one is EFAULT.
func readAttr(p Process, addr uint64, size uint32) (*attr, error) {
	if size > pageSize {
		return nil, syscall.E2BIG
	}
	if size > 0 && !accessOK(addr, uint64(size)) {
		return nil, syscall.EFAULT // a copy of no bytes checks no address
	}
	a := &attr{addr: addr, size: size}
	if size > attrSize {
		if err := tailZero(p, addr+attrSize, uint64(size-attrSize)); err != nil {
			return nil, err
		}
		size = attrSize
	}
	if err := p.ReadMem(addr, a.b[:size]); err != nil {
		return nil, err
	}
	return a, nil
}

// tailZero is the kernel's check_zeroed_user for the n bytes at addr, as bpf_check_uarg_tail_zero
// uses it: E2BIG at the first non-zero byte, EFAULT at an unreadable page reached before one.
func tailZero(p Process, addr, n uint64) error {
	buf := make([]byte, pageSize)
	for n > 0 {
		chunk := min(n, pageSize-addr%pageSize)
		if err := p.ReadMem(addr, buf[:chunk]); err != nil {
			return err
		}
		for _, c := range buf[:chunk] {
			if c != 0 {
				return syscall.E2BIG
			}
		}
		addr += chunk
		n -= chunk
	}
	return nil
}

// unusedZero is the kernel's CHECK_ATTR: every byte after the command's last field is zero.
func (a *attr) unusedZero(last int) bool {
	for _, c := range a.b[last:] {
		if c != 0 {
			return false
		}
	}
	return true
}

func (a *attr) u32(off int) uint32 { return binary.LittleEndian.Uint32(a.b[off:]) }
func (a *attr) s32(off int) int32  { return int32(a.u32(off)) }
func (a *attr) u64(off int) uint64 { return binary.LittleEndian.Uint64(a.b[off:]) }

// name returns the NUL-terminated object name of BPF_OBJ_NAME_LEN (16) bytes at off, checked as
// the kernel's bpf_obj_name_cpy does: letters, digits, '_' and '.' only, NUL-terminated.
func (a *attr) name(off int) (string, error) {
	b := a.b[off : off+objNameLen]
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), nil
		}
		if !isNameChar(c) {
			return "", syscall.EINVAL
		}
	}
	return "", syscall.EINVAL
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

// objNameLen is BPF_OBJ_NAME_LEN.
const objNameLen = 16

// put32 writes v into the caller's attr at off, as the kernel's put_user into uattr does.
func (a *attr) put32(p Process, off int, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return p.WriteMem(a.addr+uint64(off), b[:])
}

// put64 writes v into the caller's attr at off.
func (a *attr) put64(p Process, off int, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return p.WriteMem(a.addr+uint64(off), b[:])
}
