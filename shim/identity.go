package shim

// The tool believes it runs as root with every capability (bpftrace checks geteuid() == 0,
// bpftool's feature probe checks its effective capabilities); the processes it starts see
// their real credentials, so `bpftrace -c id` prints the real uid.

// sysRootID answers get[e]uid/get[e]gid with 0 for the tool's own process.
func (s *Supervisor) sysRootID(r *Request) reply {
	if !s.isTool(r.Tid) {
		return cont()
	}
	return value(0)
}

// sysGetres answers getresuid/getresgid with three zeros for the tool's own process.
func (s *Supervisor) sysGetres(r *Request) reply {
	if !s.isTool(r.Tid) {
		return cont()
	}
	var zero [4]byte
	for i := range 3 {
		if err := r.WriteMem(r.Args[i], zero[:]); err != nil {
			return fail(err)
		}
	}
	return value(0)
}
