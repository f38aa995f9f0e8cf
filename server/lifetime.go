package server

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Objects live while an fd, a pin or a holder keeps them, as in the kernel (live.go says how
// that is known across the user's shims). Each object is one file, open in the server (its
// home); every fd handed out is a new open file of it with an OFD read lock. The server watches
// each object's file with inotify: IN_CLOSE_* comes when an open file of it goes (its last fd
// closed and its last mapping unmapped, however the caller duplicated, inherited or passed it,
// also when a killed process's files are released), IN_ATTRIB when its links change (a pin or a
// holder removed, maybe by another shim); either makes the server check the object again. A
// memfd could not be used: inotify reports nothing for pseudo files.

// closeWatch is the registry's inotify instance.
type closeWatch struct {
	fd      int      // for adding and removing watches
	file    *os.File // the same fd, read through the runtime's poller so that Close ends the reader
	watches map[int32]object
	wds     map[object]int32
}

const watchMask = unix.IN_CLOSE_WRITE | unix.IN_CLOSE_NOWRITE | unix.IN_ATTRIB

// wdOf returns obj's watch; a nil watch (a server being closed) knows every object.
func (w *closeWatch) wdOf(obj object) (int32, bool) {
	if w == nil {
		return 0, true
	}
	wd, ok := w.wds[obj]
	return wd, ok
}

// startCloseWatch makes the inotify instance and serves its events until the server ends.
func (s *Server) startCloseWatch() error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	s.objs.watch = &closeWatch{fd: fd, file: f, watches: map[int32]object{}, wds: map[object]int32{}}
	go s.closeEvents(f)
	return nil
}

// register records obj, whose file is open at its home fd, in the registry: by the identity of
// its file, and watched.
func (r *registry) register(obj object) error {
	home, err := r.homeFD(obj)
	if err != nil {
		return err
	}
	id, err := fdFileID(home)
	if err != nil {
		return fmt.Errorf("identity of %s %d: %w", obj.kind(), obj.id(), err)
	}
	if r.files == nil {
		r.files = make(map[FileID]object)
	}
	r.files[id] = obj
	if r.watch == nil {
		return nil
	}
	wd, err := unix.InotifyAddWatch(r.watch.fd, "/proc/self/fd/"+strconv.Itoa(home), watchMask)
	if err != nil {
		delete(r.files, id)
		return fmt.Errorf("watching %s %d: %w", obj.kind(), obj.id(), err)
	}
	r.watch.watches[int32(wd)] = obj
	r.watch.wds[obj] = int32(wd)
	return nil
}

// newFile makes a file that stands for obj in a caller: a new open file of obj's file, marked
// with a read lock as an open reference. An object seen for the first time is registered.
func (r *registry) newFile(obj object) (*os.File, error) {
	home, err := r.homeFD(obj)
	if err != nil {
		return nil, err
	}
	if _, known := r.watch.wdOf(obj); !known {
		if err := r.register(obj); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(home), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("new fd of %s %d: %w", obj.kind(), obj.id(), err)
	}
	if err := holdLock(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// closeEvents reads inotify events and checks the objects they concern again.
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
		seen := map[object]bool{}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.LittleEndian.Uint32(buf[off:]))
			mask := binary.LittleEndian.Uint32(buf[off+4:])
			nameLen := int(binary.LittleEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent + nameLen
			if obj := s.objs.watch.watches[wd]; obj != nil && mask&watchMask != 0 {
				seen[obj] = true
			}
		}
		s.checkAll(seen)
		s.mu.Unlock()
		s.ringProbes() // detaches of closed uprobe events and links
	}
}

// checkAll checks the objects of a batch of events again. A failure is reported, never allowed
// to take the supervisor down.
func (s *Server) checkAll(objs map[object]bool) {
	defer func() {
		if v := recover(); v != nil {
			s.logf("internal error checking objects: %v", v)
		}
	}()
	for obj := range objs {
		s.maybeFree(obj)
	}
}

// alive reports whether something keeps obj: an open file, a pin or a holder (live.go), or a
// holder in this server.
func (s *Server) alive(obj object) bool {
	if b, ok := obj.(*btfObj); ok && b.kernel {
		return true
	}
	if s.objs.holds[obj] > 0 {
		return true
	}
	home, err := s.objs.homeFD(obj)
	if err != nil {
		return true
	}
	base := uint64(0)
	if listed(obj.kind()) && sameFile(s.objs.state.livePath(liveName(obj.kind(), obj.id())), home) {
		base = 1
	}
	return fileAlive(home, base)
}

// maybeFree frees obj when nothing keeps it, then checks what it held. An object the server
// has already forgotten is left alone.
func (s *Server) maybeFree(obj object) {
	if !s.knows(obj) || s.alive(obj) {
		return
	}
	unlock, err := s.objs.state.lockLive()
	if err != nil {
		s.logf("%v", err)
		return
	}
	var held []string
	if s.knows(obj) && !s.alive(obj) {
		held = s.freeLocked(obj)
	}
	unlock()
	s.recheck(held)
}

// knows reports whether obj is one of the server's objects (not yet forgotten).
func (s *Server) knows(obj object) bool {
	return s.objs.ids[obj.kind()].objs[obj.id()] == obj
}

// recheck checks again the objects this server knows among the live entries names.
func (s *Server) recheck(names []string) {
	for _, name := range names {
		k, id, ok := parseLiveName(name)
		if !ok {
			continue
		}
		if obj, ok := s.objs.ids[k].objs[id]; ok {
			s.maybeFree(obj)
		}
	}
}

// freeLocked frees obj, which nothing keeps: its live entry and holder links go, and the server
// forgets it. It returns the entries of what obj held. The caller holds the live lock.
func (s *Server) freeLocked(obj object) []string {
	var held []string
	if home, err := s.objs.homeFD(obj); err == nil && listed(obj.kind()) {
		name := liveName(obj.kind(), obj.id())
		if sameFile(s.objs.state.livePath(name), home) {
			held = s.objs.state.dropEntryLocked(name)
		}
	}
	s.forget(obj)
	return held
}

// forget drops obj from the server and releases what the server kept open for it.
func (s *Server) forget(obj object) {
	r := &s.objs
	if r.ids[obj.kind()].objs[obj.id()] != obj {
		return // forgotten already
	}
	delete(r.ids[obj.kind()].objs, obj.id())
	for id, o := range r.files {
		if o == obj {
			delete(r.files, id)
		}
	}
	if r.watch != nil {
		if wd, ok := r.watch.wds[obj]; ok {
			unix.InotifyRmWatch(r.watch.fd, uint32(wd))
			delete(r.watch.watches, wd)
			delete(r.watch.wds, obj)
		}
	}
	delete(r.holds, obj)
	if f := r.holdFiles[obj]; f != nil {
		f.Close()
		delete(r.holdFiles, obj)
	}
	if f := r.homes[obj]; f != nil {
		f.Close()
		delete(r.homes, obj)
	}
	s.forgetObject(obj)
	if c, ok := obj.(closer); ok {
		c.close()
	}
}

// hold and release count a holder of obj in this server (an attachment keeping its program).
// While it has one, the server keeps an open file of obj with the read lock of an open
// reference, so other shims see obj alive too.
func (s *Server) hold(obj object) {
	r := &s.objs
	if r.holds == nil {
		r.holds = map[object]int{}
		r.holdFiles = map[object]*os.File{}
	}
	if r.holds[obj] == 0 {
		if f, err := r.newFile(obj); err == nil {
			r.holdFiles[obj] = f
		} else {
			s.logf("%v", err)
		}
	}
	r.holds[obj]++
}

func (s *Server) release(obj object) {
	r := &s.objs
	if r.holds[obj] > 0 {
		r.holds[obj]--
	}
	if r.holds[obj] == 0 {
		if f := r.holdFiles[obj]; f != nil {
			f.Close()
			delete(r.holdFiles, obj)
		}
	}
	s.maybeFree(obj)
}

// keep makes holder keep held alive wherever either lives (a program its maps and BTF, a map
// its BTF) with a holder link; the kernel's BTF needs none.
func (s *Server) keep(holder, held object) error {
	if b, ok := held.(*btfObj); ok && b.kernel {
		return nil
	}
	home, err := s.objs.homeFD(held)
	if err != nil {
		return err
	}
	err = linkFD(home, s.objs.state.livePath(holdName(held, holder)))
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("%s %d keeping %s %d: %w", holder.kind(), holder.id(), held.kind(), held.id(), err)
	}
	return nil
}

// Unpinned tells the server that a pin in the virtual bpffs was removed, so the objects it kept
// are freed when nothing else keeps them.
func (s *Server) Unpinned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	for k := range numKinds {
		for _, obj := range s.objs.ids[k].objs {
			s.maybeFree(obj)
		}
	}
}

// sweep removes the live entries of dead objects (left by shims that were killed, or freed by
// nobody) and forgets those this server knew.
func (s *Server) sweep() {
	unlock, err := s.objs.state.lockLive()
	if err != nil {
		s.logf("%v", err)
		return
	}
	removed := s.objs.state.sweepLocked()
	unlock()
	s.recheck(removed)
}

// fdFileID returns the identity of the file open at fd.
func fdFileID(fd int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}
