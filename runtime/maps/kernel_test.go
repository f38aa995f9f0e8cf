package maps

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel as the oracle: tests create real maps with bpf(2) (root only) and compare their
// answers with ours. Every kernel map is closed before the test ends.

const (
	bpfMapCreate          = 0
	bpfMapLookupElem      = 1
	bpfMapUpdateElem      = 2
	bpfMapDeleteElem      = 3
	bpfMapGetNextKey      = 4
	bpfMapLookupAndDelete = 21
	bpfMapFreeze          = 22
)

type createAttr struct {
	mapType, keySize, valueSize, maxEntries, mapFlags, innerMapFD, numaNode uint32
	name                                                                    [16]byte
	ifindex, btfFD, btfKeyTypeID, btfValueTypeID, btfVmlinuxValueTypeID     uint32
	mapExtra                                                                uint64
}

type elemAttr struct {
	fd    uint32
	_     uint32
	key   uint64
	value uint64
	flags uint64
}

func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// kernelAvailable skips the test unless the real bpf(2) works.
func kernelAvailable(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the kernel oracle needs root")
	}
	fd, err := kernelCreate(&Spec{Type: Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Skipf("kernel bpf(2) unavailable: %v", err)
	}
	unix.Close(fd)
}

func kernelCreate(s *Spec) (int, error) {
	a := createAttr{mapType: uint32(s.Type), keySize: s.KeySize, valueSize: s.ValueSize,
		maxEntries: s.MaxEntries, mapFlags: s.Flags, numaNode: s.NumaNode, mapExtra: s.MapExtra}
	copy(a.name[:], s.Name)
	return bpfCall(bpfMapCreate, unsafe.Pointer(&a), unsafe.Sizeof(a))
}

func ptr(b []byte) uint64 {
	if b == nil {
		return 0
	}
	if len(b) == 0 {
		return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(make([]byte, 1)))))
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

func kernelElem(cmd, fd int, key, value []byte, flags uint64) error {
	a := elemAttr{fd: uint32(fd), key: ptr(key), value: ptr(value), flags: flags}
	_, err := bpfCall(cmd, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return err
}

func kernelFreeze(fd int) error {
	a := struct{ fd uint32 }{uint32(fd)}
	_, err := bpfCall(bpfMapFreeze, unsafe.Pointer(&a), unsafe.Sizeof(a))
	return err
}

// errnoOf reduces err to its errno (0 for nil).
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.Errno(0xffff)
}
