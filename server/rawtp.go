package server

import (
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/program"
)

// RAW_TRACEPOINT_OPEN attr fields.
const (
	rtpName   = 0
	rtpProgFD = 8
)

// Program types attached by BTF id rather than by tracepoint name.
const (
	progTypeTracing = 26
	progTypeExt     = 28
	progTypeLSM     = 29

	progTypeRawTracepointWritable = 24
)

// rawTracepointOpen answers BPF_RAW_TRACEPOINT_OPEN as the kernel's bpf_raw_tracepoint_open does
// up to the tracepoint's lookup: raw tracepoints are kernel tracepoints, which have no user-space
// meaning here, so a named one is not found (ENOENT, with a line saying why), as on a kernel
// without it; the program checks before are the kernel's.
func (s *Server) rawTracepointOpen(c *call) (Result, error) {
	p, err := s.progOfFD(c, c.attr.s32(rtpProgFD))
	if err != nil {
		return Result{}, err
	}
	name := c.attr.u64(rtpName)
	switch p.typ {
	case progTypeTracing, progTypeExt, progTypeLSM:
		if name != 0 {
			return Result{}, syscall.EINVAL
		}
		s.logf("bpf(BPF_RAW_TRACEPOINT_OPEN): attaching program type %d to kernel functions is not supported", p.typ)
		return Result{}, syscall.EINVAL
	case uint32(program.RawTracepoint), progTypeRawTracepointWritable:
	default:
		return Result{}, syscall.EINVAL
	}
	tp, err := c.p.ReadString(name, 127)
	if err == syscall.ENAMETOOLONG {
		b := make([]byte, 127)
		if rerr := readUser(c.p, name, b); rerr != nil {
			return Result{}, syscall.EFAULT
		}
		tp, err = string(b), nil
	}
	if err != nil {
		if isErrno(err) {
			return Result{}, syscall.EFAULT
		}
		return Result{}, err
	}
	s.logf("bpf(BPF_RAW_TRACEPOINT_OPEN): raw tracepoint %q: kernel tracepoints are not supported (the kernel is not traced)", tp)
	return Result{}, syscall.ENOENT
}
