package server

import (
	"fmt"
	"syscall"
)

// FileView is how /proc shows one of the server's fds to the process that holds it.
type FileView struct {
	// Link is what readlink(/proc/PID/fd/N) returns, e.g. "anon_inode:bpf-map".
	Link string
	// Flags are the file status flags the kernel would show in fdinfo, without O_CLOEXEC
	// (which belongs to the fd and is taken from the real one).
	Flags int
	// FDInfo is the kind-specific part of /proc/PID/fdinfo/N, after pos, flags, mnt_id and ino.
	FDInfo string
}

// View returns how /proc shows the file id, and false when it is not one of the server's.
func (s *Server) View(id FileID) (FileView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objs.files[id]
	if !ok {
		return FileView{}, false
	}
	flags := syscall.O_RDWR
	if obj.kind() == KindBTF {
		flags = syscall.O_RDONLY
	}
	return FileView{Link: "anon_inode:" + anonName[obj.kind()], Flags: flags, FDInfo: obj.fdinfo()}, true
}

// FDInfoText renders a whole /proc/PID/fdinfo/N file for v: pos, flags (with O_CLOEXEC when
// cloexec), mnt_id and ino as given, then the kind's own lines.
func (v FileView) FDInfoText(cloexec bool, mntID int, ino uint64) string {
	flags := v.Flags
	if cloexec {
		flags |= syscall.O_CLOEXEC
	}
	return fmt.Sprintf("pos:\t0\nflags:\t0%o\nmnt_id:\t%d\nino:\t%d\n%s", flags, mntID, ino, v.FDInfo)
}
