package server

import "syscall"

// bpfFRdonly and bpfFWronly are BPF_F_RDONLY and BPF_F_WRONLY, the access flags of an fd.
const (
	bpfFRdonly  = 1 << 3
	bpfFWronly  = 1 << 4
	objFlagMask = bpfFRdonly | bpfFWronly
)

// nextID returns the handler of *_GET_NEXT_ID for kind: the smallest id above start_id, written
// to the attr's next_id.
func nextID(kind Kind) func(s *Server, c *call) (Result, error) {
	return func(s *Server, c *call) (Result, error) {
		start := c.attr.u32(byIDID)
		if start >= maxID {
			return Result{}, syscall.EINVAL
		}
		next, ok := s.objs.ids[kind].nextAfter(start)
		if !ok {
			return Result{}, syscall.ENOENT
		}
		return Result{}, c.attr.put32(c.p, byIDNextID, next)
	}
}

// fdByID gives the caller a new fd for the object of kind with id.
func (s *Server) fdByID(kind Kind, id uint32) (Result, error) {
	obj, ok := s.objs.ids[kind].objs[id]
	if !ok {
		return Result{}, syscall.ENOENT
	}
	f, err := s.objs.newFile(obj)
	if err != nil {
		return Result{}, err
	}
	return Result{File: f}, nil
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
