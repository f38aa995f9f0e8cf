package shim

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/ebpfu/ebpfu/server"
	"golang.org/x/sys/unix"
)

// Request is one notified syscall of a supervised task, with access to the task's memory and
// file descriptors. It implements server.Process.
type Request struct {
	sup  *Supervisor
	id   uint64
	Tid  int       // the calling thread, in the supervisor's pid namespace
	Nr   int       // syscall number
	Args [6]uint64 // raw arguments
}

var _ server.Process = (*Request)(nil)

// PID returns the calling thread's id.
func (r *Request) PID() int { return r.Tid }

// ReadMem fills b from the task's memory at addr. It fails with EFAULT when the range is not
// mapped, and with errGone when the task died meanwhile (so b may hold another process's bytes).
func (r *Request) ReadMem(addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := unix.ProcessVMReadv(r.Tid,
		[]unix.Iovec{{Base: &b[0], Len: uint64(len(b))}},
		[]unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err != nil || n != len(b) {
		if !r.sup.l.valid(r.id) {
			return errGone
		}
		return syscall.EFAULT
	}
	if !r.sup.l.valid(r.id) {
		return errGone
	}
	return nil
}

// WriteMem copies b to the task's memory at addr; EFAULT when the range is not writable.
func (r *Request) WriteMem(addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if !r.sup.l.valid(r.id) {
		return errGone
	}
	n, err := unix.ProcessVMWritev(r.Tid,
		[]unix.Iovec{{Base: &b[0], Len: uint64(len(b))}},
		[]unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err != nil || n != len(b) {
		return syscall.EFAULT
	}
	return nil
}

// ReadString reads a NUL-terminated string of at most max bytes (NUL excluded) at addr.
// A string without a NUL within max bytes fails with ENAMETOOLONG, as path arguments do.
func (r *Request) ReadString(addr uint64, max int) (string, error) {
	if addr == 0 {
		return "", syscall.EFAULT
	}
	var out []byte
	buf := make([]byte, 256)
	for len(out) <= max {
		// Read up to the end of the page so that a string ending just before an unmapped
		// page is still read whole.
		chunk := 4096 - int(addr%4096)
		if chunk > len(buf) {
			chunk = len(buf)
		}
		if err := r.ReadMem(addr, buf[:chunk]); err != nil {
			return "", err
		}
		if i := bytes.IndexByte(buf[:chunk], 0); i >= 0 {
			out = append(out, buf[:i]...)
			if len(out) > max {
				break
			}
			return string(out), nil
		}
		out = append(out, buf[:chunk]...)
		addr += uint64(chunk)
	}
	return "", syscall.ENAMETOOLONG
}

// FileOf returns the identity of the open file behind the task's fd, or EBADF.
func (r *Request) FileOf(fd int) (server.FileID, error) {
	if fd < 0 {
		return server.FileID{}, syscall.EBADF
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(r.Tid)+"/fd/"+strconv.Itoa(fd), &st); err != nil {
		if !r.sup.l.valid(r.id) {
			return server.FileID{}, errGone
		}
		return server.FileID{}, syscall.EBADF
	}
	return server.FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// InstallFD gives the task a copy of f as its lowest free fd and returns the number; the
// syscall still needs a reply. Most handlers return a reply with the file instead (sendFD),
// which installs it and replies at once.
func (r *Request) InstallFD(f *os.File, cloexec bool) (int, error) {
	return r.sup.l.addFD(r.id, int(f.Fd()), cloexec, false)
}

// argPtr returns argument i as a pointer-sized address.
func (r *Request) argPtr(i int) uint64 { return r.Args[i] }

// argInt returns argument i as a C int.
func (r *Request) argInt(i int) int32 { return int32(r.Args[i]) }

// bytesOf views a fixed-size value as bytes, for copying kernel structures to and from tasks.
func bytesOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}
