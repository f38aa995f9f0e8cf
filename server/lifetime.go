package server

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Objects live while an fd, a pin or a holder (a program using a map) keeps them, as in the
// kernel. The server learns that a caller closed the last fd of a file it handed out from
// inotify: IN_CLOSE_* is reported when the last reference to an open file goes, however the
// caller duplicated, inherited or closed it, and also when a killed process's files are
// released. Programs, BTF and links get a file of their own per fd (an unnamed file of the state
// directory: memfds are pseudo files, whose closes inotify never reports), so their closes are
// exact; all fds of a map
// are open files of its shared memory, so another shim's opens of a pinned map are seen too,
// which a pin makes harmless (a pinned map is never freed).

// refs counts what keeps an object alive besides pins.
type refs struct {
	fds   int // open files handed out and not yet closed
	holds int // programs using a map, and the like
}

// watch is an inotify watch on the inode of files handed out for obj.
type watch struct {
	obj  object
	file FileID
	n    int // handed-out open files of the inode not yet closed
}

// closeWatch is the registry's inotify instance.
type closeWatch struct {
	fd      int      // for adding and removing watches
	file    *os.File // the same fd, read through the runtime's poller so that Close ends the reader
	watches map[int32]*watch
}

const closeMask = unix.IN_CLOSE_WRITE | unix.IN_CLOSE_NOWRITE

// startCloseWatch makes the inotify instance and serves its events until the server ends.
func (s *Server) startCloseWatch() error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	s.objs.watch = &closeWatch{fd: fd, file: f, watches: map[int32]*watch{}}
	go s.closeEvents(f)
	return nil
}

// watchFile counts f, handed out for obj, and watches its inode for closes.
func (r *registry) watchFile(f *os.File, id FileID, obj object) error {
	r.refsOf(obj).fds++
	if r.watch == nil {
		return nil
	}
	wd, err := unix.InotifyAddWatch(r.watch.fd, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), closeMask)
	if err != nil {
		return fmt.Errorf("watching a new %s fd: %w", obj.kind(), err)
	}
	w := r.watch.watches[int32(wd)]
	if w == nil {
		w = &watch{obj: obj, file: id}
		r.watch.watches[int32(wd)] = w
	}
	w.n++
	return nil
}

func (r *registry) refsOf(obj object) *refs {
	if r.refs == nil {
		r.refs = map[object]*refs{}
	}
	rf := r.refs[obj]
	if rf == nil {
		rf = &refs{}
		r.refs[obj] = rf
	}
	return rf
}

// closeEvents reads inotify events and releases the fds they report closed.
func (s *Server) closeEvents(f *os.File) {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := f.Read(buf)
		if err != nil || n <= 0 {
			return
		}
		s.mu.Lock()
		if s.objs.watch == nil {
			s.mu.Unlock()
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.LittleEndian.Uint32(buf[off:]))
			mask := binary.LittleEndian.Uint32(buf[off+4:])
			nameLen := int(binary.LittleEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent + nameLen
			if mask&closeMask != 0 {
				s.closed(wd)
			}
		}
		s.mu.Unlock()
	}
}

// closed releases one handed-out file of the inode watched by wd.
func (s *Server) closed(wd int32) {
	r := &s.objs
	w := r.watch.watches[wd]
	if w == nil || w.n == 0 {
		return
	}
	w.n--
	if rf := r.refsOf(w.obj); rf.fds > 0 {
		rf.fds--
	}
	if w.n == 0 {
		delete(r.watch.watches, wd)
		unix.InotifyRmWatch(r.watch.fd, uint32(wd))
		if r.files[w.file] == w.obj {
			delete(r.files, w.file)
		}
	}
	s.maybeFree(w.obj)
}

// hold and release count a holder of obj (a program using a map).
func (s *Server) hold(obj object) { s.objs.refsOf(obj).holds++ }

func (s *Server) release(obj object) {
	if rf := s.objs.refsOf(obj); rf.holds > 0 {
		rf.holds--
	}
	s.maybeFree(obj)
}

// maybeFree frees obj when nothing keeps it: no fd, no holder, no pin.
func (s *Server) maybeFree(obj object) {
	if b, ok := obj.(*btfObj); ok && b.kernel {
		return
	}
	rf := s.objs.refsOf(obj)
	if rf.fds > 0 || rf.holds > 0 || s.pinned(obj) {
		return
	}
	if s.objs.ids[obj.kind()].objs[obj.id()] == obj {
		delete(s.objs.ids[obj.kind()].objs, obj.id())
	}
	delete(s.objs.refs, obj)
	for id, o := range s.objs.files {
		if o == obj {
			delete(s.objs.files, id)
		}
	}
	switch o := obj.(type) {
	case *mapObj:
		o.m.Close()
		if o.btf != nil {
			s.release(o.btf)
		}
	case *perfObj:
		o.free()
	case *progObj:
		for _, m := range o.maps {
			s.release(m)
		}
		if o.btf != nil {
			s.release(o.btf)
		}
	}
}

// pinned reports whether a pin keeps obj: a link to a map's shared memory, or a pin file tagged
// with obj's kind and id.
func (s *Server) pinned(obj object) bool {
	if o, ok := obj.(*mapObj); ok {
		var st unix.Stat_t
		return unix.Fstat(o.m.FD(), &st) == nil && st.Nlink > 0
	}
	if !pinnable(obj) {
		return false
	}
	found := false
	filepath.WalkDir(s.bpffs.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found || !d.Type().IsRegular() {
			return nil
		}
		if k, id, ok := objectTag(path); ok && k == obj.kind() && id == obj.id() {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// Unpinned tells the server that a pin in the virtual bpffs was removed, so the objects it kept
// are freed when nothing else keeps them.
func (s *Server) Unpinned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropUnneededMapLinks()
	for k := range numKinds {
		for _, obj := range s.objs.ids[k].objs {
			if pinnable(obj) {
				s.maybeFree(obj)
			}
		}
	}
}
