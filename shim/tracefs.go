package shim

import (
	"os"
	"syscall"

	"github.com/ebpfu/ebpfu/server/tracefs"
	"golang.org/x/sys/unix"
)

// tracefsCall performs a path syscall on m, the file that stands for tracefs path rel (relative to
// tracefs.Root) in the served tracefs: reads, listings and stats answer as the kernel's tracefs
// does for root; writes (events to enable, probes to define) are refused with a reason, since
// nothing in the kernel is traced.
func (s *Supervisor) tracefsCall(r *Request, pc *pathCall, m, rel string) reply {
	switch pc.op {
	case opOpen, opOpenat2:
		flags := int(int32(r.Args[pc.arg]))
		if pc.op == opOpenat2 {
			var how unix.OpenHow
			if err := r.ReadMem(r.Args[pc.arg], bytesOf(&how)); err != nil {
				return fail(err)
			}
			flags = int(how.Flags)
		}
		if e := tracefs.Refused(rel); e != 0 {
			return errno(e)
		}
		var st unix.Stat_t
		if err := unix.Stat(m, &st); err != nil {
			if rel == "kprobe_events" {
				s.logf("kprobes are not supported: the kernel is not traced (%s)", tracefs.Root+"/"+rel)
			}
			return fail(err)
		}
		if flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC) != 0 {
			s.logf("writing %s is not supported: the kernel is not traced", tracefs.Root+"/"+rel)
			return errno(syscall.EACCES)
		}
		fd, err := unix.Open(m, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		return sendFile(os.NewFile(uintptr(fd), m), flags&unix.O_CLOEXEC != 0)
	case opReadlink:
		if _, err := os.Lstat(m); err != nil {
			return fail(err)
		}
		return errno(syscall.EINVAL) // nothing in tracefs is a symlink
	case opStat, opStatx, opAccess:
		return mirrorStat(r, pc, m)
	case opStatfs:
		return mirrorStatfs(r, pc, m, tracefs.Magic)
	case opUnlink, opMkdir:
		return errno(syscall.EPERM)
	}
	return cont()
}
