package server

import (
	"fmt"
	"os"
	"sort"
	"syscall"
)

// Kind is the kind of a bpf object, which decides its id space and how its fds look.
type Kind uint8

// Object kinds.
const (
	KindMap Kind = iota + 1
	KindProg
	KindLink
	KindBTF
	KindPerfEvent
	numKinds
)

// anonName is the anon_inode name the kernel gives fds of each kind: readlink of
// /proc/PID/fd/N shows "anon_inode:" + it.
var anonName = [numKinds]string{
	KindMap:       "bpf-map",
	KindProg:      "bpf-prog",
	KindLink:      "bpf_link",
	KindBTF:       "btf",
	KindPerfEvent: "[perf_event]",
}

// String returns the name the kernel gives an anonymous file of the kind (readlink of its fd).
func (k Kind) String() string {
	if k == 0 || k >= numKinds {
		return fmt.Sprintf("kind(%d)", k)
	}
	return anonName[k]
}

// object is a bpf object of the model: a map, program, link, BTF or perf event.
type object interface {
	kind() Kind
	id() uint32
	// fdinfo returns the lines that follow "pos/flags/mnt_id/ino" in /proc/PID/fdinfo/N.
	fdinfo() string
}

// homed is an object whose file (lifetime.go) it opens itself: a map's shared memory, a
// program's saved instructions, a BTF blob, a perf ring. Other objects get an empty unnamed
// file of the state directory from the registry.
type homed interface {
	// homeFD is the server's own open file of the object's file.
	homeFD() int
}

// closer is an object that releases something of its own when freed.
type closer interface {
	close()
}

// idSpace holds the objects of one kind by id. Ids come from the user's counter (userState),
// so they are unique across the user's shims, as the kernel's are across the machine.
type idSpace struct {
	objs map[uint32]object
}

const maxID = 1<<31 - 1

// alloc gives a new object an id from next and records it.
func (s *idSpace) alloc(next func() (uint32, error), o func(id uint32) object) (object, error) {
	if s.objs == nil {
		s.objs = make(map[uint32]object)
	}
	for range 1 << 16 {
		id, err := next()
		if err != nil {
			return nil, err
		}
		if _, used := s.objs[id]; !used {
			obj := o(id)
			s.objs[id] = obj
			return obj, nil
		}
	}
	return nil, syscall.ENOSPC
}

// reserve records obj under its own id (an object whose id is fixed: the kernel's BTF, an object
// reopened from a pin).
func (s *idSpace) reserve(obj object) {
	if s.objs == nil {
		s.objs = make(map[uint32]object)
	}
	s.objs[obj.id()] = obj
}

// nextAfter returns the smallest id above start, as idr_get_next does.
func (s *idSpace) nextAfter(start uint32) (uint32, bool) {
	best, found := uint32(0), false
	for id := range s.objs {
		if id > start && (!found || id < best) {
			best, found = id, true
		}
	}
	return best, found
}

// ids returns every id in order.
func (s *idSpace) ids() []uint32 {
	out := make([]uint32, 0, len(s.objs))
	for id := range s.objs {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// registry holds the server's objects: by kind and id, and by the identity of their files.
type registry struct {
	state *userState
	ids   [numKinds]idSpace
	files map[FileID]object
	homes map[object]*os.File // the files of objects that are not homed
	holds map[object]int      // holders in this server (hold, release)
	// holdFiles are open references the server keeps for objects with holders.
	holdFiles map[object]*os.File
	watch     *closeWatch
}

// homeFD returns the server's open file of obj's file, making an empty one for an object that
// is not homed.
func (r *registry) homeFD(obj object) (int, error) {
	if h, ok := obj.(homed); ok {
		return h.homeFD(), nil
	}
	if f := r.homes[obj]; f != nil {
		return int(f.Fd()), nil
	}
	f, err := r.state.objectFile()
	if err != nil {
		return -1, err
	}
	if r.homes == nil {
		r.homes = map[object]*os.File{}
	}
	r.homes[obj] = f
	return int(f.Fd()), nil
}

// alloc gives a new object of kind an id and records it; o builds the object for its id.
func (r *registry) alloc(kind Kind, o func(id uint32) object) (object, error) {
	return r.ids[kind].alloc(func() (uint32, error) { return r.state.nextID(kind) }, o)
}

// lookupFD returns the object behind the caller's fd: EBADF when the fd is not open, and
// (nil, nil) when it is open but not one of ours.
func (r *registry) lookupFD(p Process, fd int32) (object, error) {
	id, err := p.FileOf(int(fd))
	if err != nil {
		return nil, err
	}
	return r.files[id], nil
}

// publish makes a new object, whose id is allocated and whose file is open at its home fd,
// known: its live entry (for the kinds that are listed) and its registration. On failure the
// object is forgotten.
func (s *Server) publish(obj object) error {
	home, err := s.objs.homeFD(obj)
	if err != nil {
		s.forget(obj)
		return err
	}
	if listed(obj.kind()) {
		if err := tagObject(home, obj.kind(), obj.id()); err != nil {
			s.forget(obj)
			return err
		}
		if err := s.objs.state.linkEntry(home, obj.kind(), obj.id()); err != nil {
			s.forget(obj)
			return err
		}
	}
	if err := s.objs.register(obj); err != nil {
		s.dropNew(obj)
		return err
	}
	return nil
}

// dropNew undoes publish for an object no caller has seen.
func (s *Server) dropNew(obj object) {
	if listed(obj.kind()) {
		os.Remove(s.objs.state.livePath(liveName(obj.kind(), obj.id())))
		s.objs.state.dropEntryLocked(liveName(obj.kind(), obj.id()))
	}
	s.forget(obj)
}

// handOut returns a new file of obj for a caller.
func (s *Server) handOut(obj object) (Result, error) {
	f, err := s.objs.newFile(obj)
	if err != nil {
		return Result{}, err
	}
	return Result{File: f}, nil
}

// handOutNew returns the first file of a new object for its creator; the object goes if that
// fails.
func (s *Server) handOutNew(obj object) (Result, error) {
	res, err := s.handOut(obj)
	if err != nil {
		s.dropNew(obj)
	}
	return res, err
}

// isFile reports whether obj's file is the file at path.
func (s *Server) isFile(obj object, path string) bool {
	home, err := s.objs.homeFD(obj)
	return err == nil && sameFile(path, home)
}
