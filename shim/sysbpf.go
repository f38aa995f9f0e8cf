package shim

import "fmt"

// bpfLinkCreate and bpfLinkDetach are the bpf commands that may attach or detach uprobes,
// which waits for traced processes: they are answered later.
const (
	bpfLinkCreate = 28
	bpfLinkDetach = 34
)

// sysBPF serves bpf(cmd, attr, size) through the server.
func (s *Supervisor) sysBPF(r *Request) reply {
	if e := s.bpfRefused(r); e != 0 {
		return errno(e)
	}
	if cmd := uint32(r.Args[0]); cmd == bpfLinkCreate || cmd == bpfLinkDetach {
		return later(func() reply { return s.serveBPF(r) })
	}
	return s.serveBPF(r)
}

func (s *Supervisor) serveBPF(r *Request) reply {
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
