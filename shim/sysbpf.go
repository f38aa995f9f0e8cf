package shim

import (
	"fmt"
	"syscall"
)

// sysBPF serves bpf(cmd, attr, size) through the server.
func (s *Supervisor) sysBPF(r *Request) reply {
	res, err := s.srv.BPF(r, uint32(r.Args[0]), r.Args[1], uint32(r.Args[2]))
	if err != nil {
		return fail(err)
	}
	if res.File != nil {
		return sendFile(res.File, !res.NoCloexec)
	}
	return value(res.Val)
}

// sysPerfEventOpen serves perf_event_open(2). Perf events are not modelled yet: the tool gets
// the kernel's answer for a missing PMU and a line saying why.
func (s *Supervisor) sysPerfEventOpen(r *Request) reply {
	s.logf("perf_event_open is not supported yet")
	return errno(syscall.ENOENT)
}

// sysIoctl serves the perf_event ioctls on our fds and lets every other one through.
func (s *Supervisor) sysIoctl(r *Request) reply {
	return cont()
}

// logf reports one line on the shim's log.
func (s *Supervisor) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "ebpfu-shim: "+format+"\n", args...)
}
