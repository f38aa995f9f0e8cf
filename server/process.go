package server

import (
	"os"
	"syscall"
)

// Process is the calling process as the server sees it: its memory and its file descriptors.
// The supervisor in shim/ implements it for a notified syscall; tests implement it in memory.
// Errors other than a syscall.Errno (a caller that died meanwhile) end the call without answer
// and are passed back to the supervisor unchanged.
type Process interface {
	// PID is the calling thread's id.
	PID() int
	// ReadMem fills b from the caller's memory at addr (EFAULT when unmapped).
	ReadMem(addr uint64, b []byte) error
	// WriteMem copies b to the caller's memory at addr (EFAULT when not writable).
	WriteMem(addr uint64, b []byte) error
	// ReadString reads a NUL-terminated string of at most max bytes at addr.
	ReadString(addr uint64, max int) (string, error)
	// FileOf returns the identity of the open file behind the caller's fd (EBADF when none).
	FileOf(fd int) (FileID, error)
}

// FileID identifies an open file's inode: every fd the server hands out refers to a file of its
// own (an unnamed file, or a map's shared memory), so the server recognises its objects however the
// caller duplicated, inherited or renumbered the fd.
type FileID struct {
	Dev, Ino uint64
}

// fileIDOf returns the identity of f.
func fileIDOf(f *os.File) (FileID, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// Result is the answer to a call the server served: a return value, or a new file the caller
// must receive as its lowest free fd, whose number is then the return value.
type Result struct {
	Val int64
	// File, when set, is installed in the caller; the supervisor closes this copy afterwards.
	File *os.File
	// NoCloexec installs File without O_CLOEXEC (perf_event_open without PERF_FLAG_FD_CLOEXEC).
	NoCloexec bool
}
