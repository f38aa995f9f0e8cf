package shim

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ebpfu/ebpfu/server"
	"github.com/ebpfu/ebpfu/server/tracefs"
	"golang.org/x/sys/unix"
)

// pathCall says where a path syscall keeps its arguments and what it does.
type pathCall struct {
	dirfd int // index of the dirfd argument, or -1 for AT_FDCWD
	path  int // index of the path argument
	op    pathOp
	// arg indexes the op's main other argument (flags, buffer, mode), and arg2 a second one.
	arg, arg2 int
	// fixed holds flags implied by the syscall itself (lstat: AT_SYMLINK_NOFOLLOW, rmdir:
	// AT_REMOVEDIR), used when arg2 is -1.
	fixed int
}

type pathOp uint8

const (
	opOpen pathOp = iota + 1
	opOpenat2
	opReadlink
	opStat
	opStatx
	opStatfs
	opAccess
	opUnlink
	opMkdir
)

// pathCalls is the path syscalls' argument table.
var pathCalls = map[int]pathCall{
	unix.SYS_OPEN:       {dirfd: -1, path: 0, op: opOpen, arg: 1},
	unix.SYS_OPENAT:     {dirfd: 0, path: 1, op: opOpen, arg: 2},
	unix.SYS_OPENAT2:    {dirfd: 0, path: 1, op: opOpenat2, arg: 2},
	unix.SYS_READLINK:   {dirfd: -1, path: 0, op: opReadlink, arg: 1, arg2: 2},
	unix.SYS_READLINKAT: {dirfd: 0, path: 1, op: opReadlink, arg: 2, arg2: 3},
	unix.SYS_STAT:       {dirfd: -1, path: 0, op: opStat, arg: 1, arg2: -1},
	unix.SYS_LSTAT:      {dirfd: -1, path: 0, op: opStat, arg: 1, arg2: -1, fixed: unix.AT_SYMLINK_NOFOLLOW},
	unix.SYS_NEWFSTATAT: {dirfd: 0, path: 1, op: opStat, arg: 2, arg2: 3},
	unix.SYS_STATX:      {dirfd: 0, path: 1, op: opStatx, arg: 2, arg2: 3},
	unix.SYS_STATFS:     {dirfd: -1, path: 0, op: opStatfs, arg: 1},
	unix.SYS_ACCESS:     {dirfd: -1, path: 0, op: opAccess, arg: 1, arg2: -1},
	unix.SYS_FACCESSAT:  {dirfd: 0, path: 1, op: opAccess, arg: 2, arg2: -1},
	unix.SYS_FACCESSAT2: {dirfd: 0, path: 1, op: opAccess, arg: 2, arg2: 3},
	unix.SYS_UNLINK:     {dirfd: -1, path: 0, op: opUnlink, arg2: -1},
	unix.SYS_UNLINKAT:   {dirfd: 0, path: 1, op: opUnlink, arg2: 2},
	unix.SYS_RMDIR:      {dirfd: -1, path: 0, op: opUnlink, arg2: -1, fixed: unix.AT_REMOVEDIR},
	unix.SYS_MKDIR:      {dirfd: -1, path: 0, op: opMkdir, arg: 1},
	unix.SYS_MKDIRAT:    {dirfd: 0, path: 1, op: opMkdir, arg: 2},
}

// sysPath serves the path syscalls: paths in the virtual bpffs and /proc's views of our fds
// are answered here, every other path is left to the kernel.
func (s *Supervisor) sysPath(r *Request) reply {
	pc, ok := pathCalls[r.Nr]
	if !ok {
		return cont()
	}
	p, err := r.ReadString(r.Args[pc.path], unix.PathMax-1)
	if err != nil || p == "" {
		// The kernel gives the same EFAULT, ENAMETOOLONG or ENOENT (or serves AT_EMPTY_PATH).
		if err == errGone {
			return fail(err)
		}
		return cont()
	}
	if !strings.HasPrefix(p, "/") {
		dirfd := unix.AT_FDCWD
		if pc.dirfd >= 0 {
			dirfd = int(int32(r.Args[pc.dirfd]))
		}
		base := "/proc/" + itoa(r.Tid) + "/cwd"
		if dirfd != unix.AT_FDCWD {
			base = "/proc/" + itoa(r.Tid) + "/fd/" + itoa(dirfd)
		}
		dir, err := os.Readlink(base)
		if err != nil || !strings.HasPrefix(dir, "/") {
			return cont()
		}
		p = dir + "/" + p
	}
	p = filepath.Clean(p)
	if m, ok := s.srv.BPFFSMirror(p); ok {
		return s.bpffsCall(r, &pc, m)
	}
	if m, ok, err := s.srv.Tracefs().Mirror(p); ok {
		if err != nil {
			s.logf("%v", err)
			return errno(syscall.ENOENT)
		}
		return s.tracefsCall(r, &pc, m, strings.TrimPrefix(strings.TrimPrefix(p, tracefs.Root), "/"))
	}
	if rest, ok := strings.CutPrefix(p, "/proc/"); ok {
		return s.procCall(r, &pc, rest)
	}
	return cont()
}

// bpffsCall performs a path syscall on the state directory's mirror m of a virtual bpffs path.
func (s *Supervisor) bpffsCall(r *Request, pc *pathCall, m string) reply {
	switch pc.op {
	case opOpen, opOpenat2:
		flags := int(int32(r.Args[pc.arg]))
		if pc.op == opOpenat2 {
			var how unix.OpenHow
			if err := r.ReadMem(r.Args[pc.arg], bytesOf(&how)); err != nil {
				return cont()
			}
			flags = int(how.Flags)
		}
		var st unix.Stat_t
		switch err := unix.Stat(m, &st); {
		case err != nil && flags&unix.O_CREAT != 0:
			return errno(syscall.EACCES) // bpffs creates no regular files
		case err != nil:
			return fail(err)
		case st.Mode&unix.S_IFMT == unix.S_IFREG:
			return errno(syscall.EIO) // a pinned object opens as the kernel's bpffs_obj_open
		}
		fd, err := unix.Open(m, (flags&^(unix.O_CREAT|unix.O_TRUNC|unix.O_EXCL))|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		return sendFile(os.NewFile(uintptr(fd), m), flags&unix.O_CLOEXEC != 0)
	case opReadlink:
		return errno(syscall.EINVAL) // nothing in bpffs is a symlink
	case opStat, opStatx, opAccess:
		return mirrorStat(r, pc, m)
	case opStatfs:
		return mirrorStatfs(r, pc, m, server.BPFFSMagic)
	case opUnlink:
		flags := pc.fixed
		if pc.arg2 >= 0 {
			flags = int(int32(r.Args[pc.arg2]))
		}
		if flags&^unix.AT_REMOVEDIR != 0 {
			return errno(syscall.EINVAL)
		}
		if root, _ := s.srv.BPFFSMirror(server.BPFFSRoot); m == root {
			return errno(syscall.EBUSY) // the mount point
		}
		if err := unix.Unlinkat(unix.AT_FDCWD, m, flags); err != nil {
			return fail(err)
		}
		s.srv.Unpinned()
		return value(0)
	case opMkdir:
		if err := unix.Mkdir(m, uint32(r.Args[pc.arg])&0o7777); err != nil {
			return fail(err)
		}
		return value(0)
	}
	return cont()
}

// mirrorStat serves stat, statx and access of a virtual file system's path from the file m that
// stands for it; regular files show size 0, as pins and tracefs files do.
func mirrorStat(r *Request, pc *pathCall, m string) reply {
	switch pc.op {
	case opStat:
		flags := pc.fixed
		if pc.arg2 >= 0 {
			flags = int(int32(r.Args[pc.arg2]))
		}
		var st unix.Stat_t
		if err := unix.Fstatat(unix.AT_FDCWD, m, &st, flags&unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			st.Size, st.Blocks = 0, 0
		}
		return writeResult(r, r.Args[pc.arg], bytesOf(&st))
	case opStatx:
		flags := int(int32(r.Args[pc.arg]))
		mask := int(int32(r.Args[pc.arg2]))
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, m, flags&unix.AT_SYMLINK_NOFOLLOW, mask, &stx); err != nil {
			return fail(err)
		}
		if stx.Mode&unix.S_IFMT == unix.S_IFREG {
			stx.Size, stx.Blocks = 0, 0
		}
		return writeResult(r, r.Args[4], bytesOf(&stx))
	case opAccess:
		flags := pc.fixed
		if pc.arg2 >= 0 {
			flags = int(int32(r.Args[pc.arg2]))
		}
		if err := unix.Faccessat2(unix.AT_FDCWD, m, uint32(r.Args[pc.arg]), flags&unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(err)
		}
		return value(0)
	}
	return cont()
}

// mirrorStatfs serves statfs of a virtual file system's path with its magic number.
func mirrorStatfs(r *Request, pc *pathCall, m string, magic int64) reply {
	var sfs unix.Statfs_t
	if err := unix.Statfs(m, &sfs); err != nil {
		return fail(err)
	}
	sfs.Type = magic
	return writeResult(r, r.Args[pc.arg], bytesOf(&sfs))
}

// writeResult copies a result structure to the task and ends the syscall with 0.
func writeResult(r *Request, addr uint64, b []byte) reply {
	if err := r.WriteMem(addr, b); err != nil {
		return fail(err)
	}
	return value(0)
}

// procCall answers /proc/PID/fd/N and /proc/PID/fdinfo/N for our fds; rest is the path after
// "/proc/".
func (s *Supervisor) procCall(r *Request, pc *pathCall, rest string) reply {
	pid, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return cont()
	}
	switch pid {
	case "self", "thread-self":
		pid = itoa(r.Tid)
	default:
		if _, err := strconv.Atoi(pid); err != nil {
			return cont()
		}
	}
	if t, ok := strings.CutPrefix(rest, "task/"); ok {
		tid, after, ok := strings.Cut(t, "/")
		if !ok {
			return cont()
		}
		pid, rest = tid, after
	}
	dir, fdStr, ok := strings.Cut(rest, "/")
	if !ok || dir != "fd" && dir != "fdinfo" {
		return cont()
	}
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd < 0 {
		return cont()
	}
	var st unix.Stat_t
	if unix.Stat("/proc/"+pid+"/fd/"+fdStr, &st) != nil {
		return cont()
	}
	view, ours := s.srv.View(server.FileID{Dev: st.Dev, Ino: st.Ino})
	if !ours {
		return cont()
	}
	switch {
	case dir == "fd" && pc.op == opReadlink:
		size := int64(int32(r.Args[pc.arg2]))
		if size <= 0 {
			return errno(syscall.EINVAL)
		}
		link := []byte(view.Link)
		if int64(len(link)) > size {
			link = link[:size]
		}
		if err := r.WriteMem(r.Args[pc.arg], link); err != nil {
			return fail(err)
		}
		return value(int64(len(link)))
	case dir == "fdinfo" && (pc.op == opOpen || pc.op == opOpenat2):
		cloexec, mntID := realFDInfo(pid, fdStr)
		f, err := memFile("fdinfo", view.FDInfoText(cloexec, mntID, st.Ino))
		if err != nil {
			return fail(err)
		}
		flags := int(int32(r.Args[pc.arg]))
		if pc.op == opOpenat2 {
			flags = 0
		}
		return sendFile(f, flags&unix.O_CLOEXEC != 0)
	}
	return cont()
}

// realFDInfo reads the fd's cloexec flag and mount id from the kernel's own fdinfo.
func realFDInfo(pid, fd string) (cloexec bool, mntID int) {
	b, err := os.ReadFile("/proc/" + pid + "/fdinfo/" + fd)
	if err != nil {
		return true, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "flags":
			f, _ := strconv.ParseUint(v, 8, 32)
			cloexec = f&unix.O_CLOEXEC != 0
		case "mnt_id":
			mntID, _ = strconv.Atoi(v)
		}
	}
	return cloexec, mntID
}

// memFile returns a memfd holding content, positioned at its start: how virtual files reach
// the tool.
func memFile(name, content string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
