package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// BPFFSRoot is where tools expect the bpf filesystem; the server serves a virtual one there.
const BPFFSRoot = "/sys/fs/bpf"

// BPFFSMagic is the bpf filesystem's statfs f_type (BPF_FS_MAGIC).
const BPFFSMagic = 0xcafe4a11

// bpffs is the virtual bpf filesystem: a real directory tree in the per-user state directory
// that mirrors /sys/fs/bpf, where each pin is a file tagged with the pinned object's kind and id
// (a map's pin is a link to its shared memory). Pins therefore outlive the shim that made them,
// and directories made with mkdir are real ones.
type bpffs struct {
	root string
}

func newBPFFS(stateDir string) (*bpffs, error) {
	root := filepath.Join(stateDir, "bpffs")
	if err := os.Mkdir(root, 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("virtual bpffs: %w", err)
	}
	return &bpffs{root: root}, nil
}

// mirror returns where the clean absolute path p of the virtual bpffs lives in the state
// directory, and whether p is in the virtual bpffs at all.
func (fs *bpffs) mirror(p string) (string, bool) {
	if p == BPFFSRoot {
		return fs.root, true
	}
	if rest, ok := strings.CutPrefix(p, BPFFSRoot+"/"); ok {
		return filepath.Join(fs.root, rest), true
	}
	return "", false
}

// BPFFSMirror returns the real path in the state directory that stands for path, an absolute
// clean path, when path lies in the virtual bpffs at /sys/fs/bpf.
func (s *Server) BPFFSMirror(path string) (string, bool) { return s.bpffs.mirror(path) }

// OBJ_PIN / OBJ_GET attr fields and flags.
const (
	objPathname  = 0
	objBPFFD     = 8
	objFileFlags = 12
	objPathFD    = 16

	bpfFPathFD = 1 << 14
	pathMax    = 4096
)

// objPath reads the path of an OBJ_PIN or OBJ_GET and makes it absolute and clean, relative to
// the caller's working directory or to path_fd.
func (s *Server) objPath(c *call) (string, error) {
	a := c.attr
	if a.u32(objFileFlags)&bpfFPathFD == 0 && a.s32(objPathFD) != 0 {
		return "", syscall.EINVAL
	}
	addr := a.u64(objPathname)
	if addr == 0 || !accessOK(addr, 1) {
		return "", syscall.EFAULT
	}
	p, err := c.p.ReadString(addr, pathMax-1)
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", syscall.ENOENT
	}
	if !filepath.IsAbs(p) {
		base := "/proc/" + strconv.Itoa(c.p.PID()) + "/cwd"
		if a.u32(objFileFlags)&bpfFPathFD != 0 && a.s32(objPathFD) != atFDCWD {
			base = "/proc/" + strconv.Itoa(c.p.PID()) + "/fd/" + strconv.Itoa(int(a.s32(objPathFD)))
		}
		dir, err := os.Readlink(base)
		if err != nil {
			return "", syscall.EBADF
		}
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), nil
}

// atFDCWD is AT_FDCWD.
const atFDCWD = -100

// pinnable reports whether the kernel lets obj be pinned: maps, programs and links.
func pinnable(obj object) bool {
	k := obj.kind()
	return k == KindMap || k == KindProg || k == KindLink
}

func (s *Server) objPin(c *call) (Result, error) {
	if c.attr.u32(objFileFlags)&^bpfFPathFD != 0 {
		return Result{}, syscall.EINVAL
	}
	obj, err := s.objs.lookupFD(c.p, c.attr.s32(objBPFFD))
	if err == syscall.EBADF || err == nil && (obj == nil || !pinnable(obj)) {
		return Result{}, syscall.EINVAL
	}
	if err != nil {
		return Result{}, err
	}
	p, err := s.objPath(c)
	if err != nil {
		return Result{}, err
	}
	dir, ok := s.bpffs.mirror(filepath.Dir(p))
	if !ok {
		// Outside the virtual bpffs: the kernel refuses a directory that is not on a bpffs.
		return Result{}, realPathErr(p, true)
	}
	if p == BPFFSRoot {
		return Result{}, syscall.EEXIST
	}
	return Result{}, s.pin(obj, filepath.Join(dir, filepath.Base(p)))
}

// pin makes the file at path (in the bpffs mirror) a link of obj's file, which therefore lives on
// (a map's shared memory, a program's saved instructions; live.go).
func (s *Server) pin(obj object, path string) error {
	home, err := s.objs.homeFD(obj)
	if err != nil {
		return err
	}
	if !listed(obj.kind()) {
		if err := tagObject(home, obj.kind(), obj.id()); err != nil {
			return err
		}
	}
	return linkFD(home, path)
}

// linkFD links the file behind the server's fd at path: EEXIST when path exists.
func linkFD(fd int, path string) error {
	return errnoOf(unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW))
}

func (s *Server) objGet(c *call) (Result, error) {
	flags := c.attr.u32(objFileFlags)
	if c.attr.u32(objBPFFD) != 0 || flags&^(objFlagMask|bpfFPathFD) != 0 || flags&objFlagMask == objFlagMask {
		return Result{}, syscall.EINVAL
	}
	p, err := s.objPath(c)
	if err != nil {
		return Result{}, err
	}
	m, ok := s.bpffs.mirror(p)
	if !ok {
		return Result{}, realPathErr(p, false)
	}
	var st unix.Stat_t
	if err := unix.Stat(m, &st); err != nil {
		return Result{}, errnoOf(err)
	}
	kind, id, ok := objectTag(m)
	if !ok || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Result{}, syscall.EACCES // a directory, or a file that is no bpf object
	}
	unlock, err := s.objs.state.lockLive()
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	obj, ok := s.objs.ids[kind].objs[id]
	if ok && !s.isFile(obj, m) {
		ok = false // another object under the id, one this server knew dead and another shim reused
		s.forget(obj)
	}
	if !ok {
		if obj, err = s.reopen(kind, id, m, p); err != nil {
			return Result{}, err
		}
	}
	return s.handOut(obj)
}

// reopen brings back an object that another shim (maybe one that has ended) pinned at path
// (whose mirror is m).
func (s *Server) reopen(kind Kind, id uint32, m, path string) (object, error) {
	switch kind {
	case KindMap:
		return s.reopenMap(id, m)
	case KindProg:
		return s.reopenProg(id, m)
	case KindBTF:
		return s.reopenBTF(id, m)
	case KindLink:
		return s.reopenLink(id, m)
	}
	s.logf("bpf(BPF_OBJ_GET) %s: reopening a pinned %s from another shim is not supported yet", path, kind)
	return nil, syscall.ENOENT
}

// realPathErr is the kernel's answer to OBJ_PIN (pin) or OBJ_GET on a path outside any bpffs:
// ENOENT when the path (for a pin: its directory) does not exist, else EPERM for a pin and
// EACCES for a get.
func realPathErr(p string, pin bool) error {
	if pin {
		if _, err := os.Stat(p); err == nil {
			return syscall.EEXIST
		}
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			return errnoOf(err)
		}
		return syscall.EPERM
	}
	if _, err := os.Stat(p); err != nil {
		return errnoOf(err)
	}
	return syscall.EACCES
}

// errnoOf returns the errno inside a file system error (EIO when it has none; nil for nil).
func errnoOf(err error) error {
	if err == nil {
		return nil
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}
