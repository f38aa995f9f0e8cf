package shim

import "fmt"

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

// logf reports one line on the shim's log.
func (s *Supervisor) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "ebpfu-shim: "+format+"\n", args...)
}
