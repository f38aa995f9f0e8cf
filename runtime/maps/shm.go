package maps

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shm is a mapping of a memfd. Every accessor indexes the slice, so an offset outside the
// mapping panics in Go rather than touching foreign memory; callers only pass offsets derived
// from a validated layout.
type shm []byte

func (s shm) u32(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&s[off])) }
func (s shm) u64(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&s[off])) }

func (s shm) load32(off uint64) uint32     { return atomic.LoadUint32(s.u32(off)) }
func (s shm) store32(off uint64, v uint32) { atomic.StoreUint32(s.u32(off), v) }
func (s shm) load64(off uint64) uint64     { return atomic.LoadUint64(s.u64(off)) }
func (s shm) store64(off uint64, v uint64) { atomic.StoreUint64(s.u64(off), v) }

// set32 and set64 are plain stores, for fields a writer owns under the map's writer lock and
// that lock-free readers do not follow; the atomic store that publishes an element orders them.
func (s shm) set32(off uint64, v uint32) { *s.u32(off) = v }
func (s shm) set64(off uint64, v uint64) { *s.u64(off) = v }

func (s shm) cas32(off uint64, old, new uint32) bool {
	return atomic.CompareAndSwapUint32(s.u32(off), old, new)
}
func (s shm) cas64(off uint64, old, new uint64) bool {
	return atomic.CompareAndSwapUint64(s.u64(off), old, new)
}

// addr returns the host address of byte off.
func (s shm) addr(off uint64) uint64 { return uint64(uintptr(unsafe.Pointer(&s[off]))) }

// newMemfd returns a memfd of size bytes (zero-filled, sparse), sealed against shrinking and
// growing so that nobody holding it can make the mappings of others fault.
func newMemfd(name string, size uint64) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create %s: %w", name, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("size memfd %s to %d: %w", name, size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seal memfd %s: %w", name, err)
	}
	return fd, nil
}

// mapFile maps fd whole, shared and writable, and returns the mapping and its size.
func mapFile(fd int) (shm, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat map fd %d: %w", fd, err)
	}
	size := st.Size
	if size < pageSize || size%pageSize != 0 {
		return nil, fmt.Errorf("map fd %d: size %d is not a whole number of pages: %w", fd, size, eINVAL)
	}
	b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap map fd %d (%d bytes): %w", fd, size, err)
	}
	return shm(b), nil
}

func (s shm) add32(off uint64, d uint32) uint32 { return atomic.AddUint32(s.u32(off), d) }
