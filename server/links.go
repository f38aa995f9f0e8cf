package server

import (
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/program"
)

// LINK_CREATE attr fields and attach types.
const (
	lcProgFD     = 0
	lcTargetFD   = 4
	lcAttachType = 8
	lcFlags      = 12

	attachPerfEvent     = 41 // BPF_PERF_EVENT
	attachKprobeMulti   = 42 // BPF_TRACE_KPROBE_MULTI
	attachUprobeMulti   = 48 // BPF_TRACE_UPROBE_MULTI
	attachKprobeSession = 56 // BPF_TRACE_KPROBE_SESSION
)

// linkCreate answers BPF_LINK_CREATE: a perf link attaches a program to a uprobe event
// (perflink.go); the probes of libbpf (a perf link to fd -1, EBADF) and of bpftrace
// (kprobe_multi, EOPNOTSUPP: this machine has no kprobes) get the kernel's answers.
func (s *Server) linkCreate(c *call) (Result, error) {
	p, err := s.progOfFD(c, c.attr.s32(lcProgFD))
	if err != nil {
		return Result{}, err
	}
	attach := c.attr.u32(lcAttachType)
	switch program.Type(p.typ) {
	case program.Kprobe, program.Tracepoint, program.PerfEvent:
	default:
		s.logf("bpf(BPF_LINK_CREATE): links for program type %d are not supported yet", p.typ)
		return Result{}, syscall.EINVAL
	}
	switch attach {
	case attachPerfEvent:
		if c.attr.u32(lcFlags) != 0 {
			return Result{}, syscall.EINVAL
		}
		obj, err := s.objs.lookupFD(c.p, c.attr.s32(lcTargetFD))
		if err != nil || obj == nil || obj.kind() != KindPerfEvent {
			return Result{}, syscall.EBADF // perf_event_get of no perf event
		}
		if ev, ok := obj.(*uprobeObj); ok {
			return s.perfLinkCreate(c, p, ev)
		}
		return Result{}, syscall.EINVAL // a BPF output event runs no program
	case attachKprobeMulti, attachKprobeSession:
		return Result{}, syscall.EOPNOTSUPP
	}
	s.logf("bpf(BPF_LINK_CREATE): attach type %d is not supported yet", attach)
	return Result{}, syscall.EOPNOTSUPP
}
