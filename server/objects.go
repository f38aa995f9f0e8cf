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

// registry holds the server's objects: by kind and id, and by the identity of every file the
// server handed out for one.
type registry struct {
	state *userState
	ids   [numKinds]idSpace
	files map[FileID]object
	refs  map[object]*refs
	watch *closeWatch
}

// alloc gives a new object of kind an id and records it; o builds the object for its id.
func (r *registry) alloc(kind Kind, o func(id uint32) object) (object, error) {
	return r.ids[kind].alloc(func() (uint32, error) { return r.state.nextID(kind) }, o)
}

// newFile makes a file that stands for obj in a caller and records it: for a map, a new open
// file of its shared memory; for other objects an unnamed file of its own, whose inode is the
// fd's identity.
func (r *registry) newFile(obj object) (*os.File, error) {
	switch o := obj.(type) {
	case *mapObj:
		return r.mapFile(o)
	case *perfObj:
		return r.perfFile(o)
	}
	// Not a memfd: inotify reports no close of pseudo files.
	f, err := r.state.objectFile()
	if err != nil {
		return nil, fmt.Errorf("file for %s %d: %w", obj.kind(), obj.id(), err)
	}
	if err := r.adopt(f, obj); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// adopt records f, a file the server hands out, as standing for obj.
func (r *registry) adopt(f *os.File, obj object) error {
	id, err := fileIDOf(f)
	if err != nil {
		return fmt.Errorf("identity of a new %s fd: %w", obj.kind(), err)
	}
	if r.files == nil {
		r.files = make(map[FileID]object)
	}
	r.files[id] = obj
	return r.watchFile(f, id, obj)
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
