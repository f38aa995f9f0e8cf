package server

import "syscall"

// bpfFRdonly and bpfFWronly are BPF_F_RDONLY and BPF_F_WRONLY, the access flags of an fd.
const (
	bpfFRdonly  = 1 << 3
	bpfFWronly  = 1 << 4
	objFlagMask = bpfFRdonly | bpfFWronly
)

// nextID returns the handler of *_GET_NEXT_ID for kind: the smallest id above start_id among
// the user's live objects (of every shim, as the kernel lists every process's), written to the
// attr's next_id.
func nextID(kind Kind) func(s *Server, c *call) (Result, error) {
	return func(s *Server, c *call) (Result, error) {
		start := c.attr.u32(byIDID)
		if start >= maxID {
			return Result{}, syscall.EINVAL
		}
		next, ok, err := s.nextLive(kind, start)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{}, syscall.ENOENT
		}
		return Result{}, c.attr.put32(c.p, byIDNextID, next)
	}
}

// nextLive returns the smallest id above start of a live object of kind; the entries of dead
// objects it meets are removed.
func (s *Server) nextLive(kind Kind, start uint32) (uint32, bool, error) {
	if kind == KindBTF && start < kernelBTFID {
		return kernelBTFID, true, nil
	}
	unlock, err := s.objs.state.lockLive()
	if err != nil {
		return 0, false, err
	}
	var dead []string
	defer func() {
		unlock()
		s.recheck(dead)
	}()
	for _, id := range s.objs.state.liveIDs(kind) {
		if id <= start {
			continue
		}
		name := liveName(kind, id)
		if s.objs.state.entryAliveLocked(name) {
			return id, true, nil
		}
		dead = append(dead, name)
		dead = append(dead, s.objs.state.dropEntryLocked(name)...)
	}
	return 0, false, nil
}

// fdByID gives the caller a new fd for the object of kind with id, wherever it was made.
func (s *Server) fdByID(kind Kind, id uint32) (Result, error) {
	if kind == KindBTF && id == kernelBTFID {
		return s.handOut(s.objs.ids[KindBTF].objs[kernelBTFID])
	}
	if !listed(kind) {
		obj, ok := s.objs.ids[kind].objs[id]
		if !ok {
			return Result{}, syscall.ENOENT
		}
		return s.handOut(obj)
	}
	unlock, err := s.objs.state.lockLive()
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	name := liveName(kind, id)
	path := s.objs.state.livePath(name)
	if !s.objs.state.entryAliveLocked(name) {
		return Result{}, syscall.ENOENT
	}
	obj, ok := s.objs.ids[kind].objs[id]
	if ok && !s.isFile(obj, path) {
		ok = false
		s.forget(obj)
	}
	if !ok {
		if obj, err = s.reopen(kind, id, path, path); err != nil {
			s.logf("bpf: opening %s %d: %v", kind, id, err)
			return Result{}, syscall.ENOENT
		}
	}
	return s.handOut(obj)
}

func (s *Server) progGetFDByID(c *call) (Result, error) {
	return s.fdByID(KindProg, c.attr.u32(byIDID))
}

func (s *Server) mapGetFDByID(c *call) (Result, error) {
	flags := c.attr.u32(byIDOpenFlags)
	if flags&^objFlagMask != 0 || flags == objFlagMask {
		return Result{}, syscall.EINVAL
	}
	return s.fdByID(KindMap, c.attr.u32(byIDID))
}

func (s *Server) linkGetFDByID(c *call) (Result, error) {
	return s.fdByID(KindLink, c.attr.u32(byIDID))
}
