package server

import "syscall"

// OBJ_GET_INFO_BY_FD attr fields.
const (
	infoFD      = 0
	infoInfoLen = 4
	infoInfo    = 8
)

// objGetInfoByFD fills the caller's info struct for the object behind an fd: EBADFD when the fd
// is not open, EINVAL when it is not a bpf object.
func (s *Server) objGetInfoByFD(c *call) (Result, error) {
	obj, err := s.objs.lookupFD(c.p, c.attr.s32(infoFD))
	if err == syscall.EBADF {
		return Result{}, syscall.EBADFD
	}
	if err != nil {
		return Result{}, err
	}
	infoLen, uinfo := c.attr.u32(infoInfoLen), c.attr.u64(infoInfo)
	switch o := obj.(type) {
	case *btfObj:
		return Result{}, s.btfGetInfo(c, o, infoLen, uinfo)
	case *mapObj:
		return Result{}, s.mapGetInfo(c, o, infoLen, uinfo)
	case *progObj:
		return Result{}, s.progGetInfo(c, o, infoLen, uinfo)
	case *linkObj:
		return Result{}, s.linkGetInfo(c, o, infoLen, uinfo)
	}
	return Result{}, syscall.EINVAL
}
