package shim

import "encoding/binary"

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

// Capability ABI versions (linux/capability.h).
const (
	capVersion1 = 0x19980330
	capVersion2 = 0x20071026
	capVersion3 = 0x20080522
)

// fullCaps is every capability up to CAP_CHECKPOINT_RESTORE (40), split in two 32-bit words.
var fullCaps = [2]uint32{0xffffffff, 0x1ff}

// sysCapget answers capget(2) about the tool's own process with every capability effective and
// permitted, following the kernel's version negotiation.
func (s *Supervisor) sysCapget(r *Request) reply {
	hdr, data := r.Args[0], r.Args[1]
	var h [8]byte
	if err := r.ReadMem(hdr, h[:]); err != nil {
		return fail(err)
	}
	version := binary.LittleEndian.Uint32(h[:])
	pid := int32(binary.LittleEndian.Uint32(h[4:]))
	words := 0
	switch version {
	case capVersion1:
		words = 1
	case capVersion2, capVersion3:
		words = 2
	}
	if words == 0 || data == 0 || pid < 0 || pid != 0 && !s.isTool(int(pid)) || !s.isTool(r.Tid) {
		// Version negotiation, bad arguments and other processes: the kernel answers.
		return cont()
	}
	out := make([]byte, 12*words)
	for i := range words {
		binary.LittleEndian.PutUint32(out[12*i:], fullCaps[i])   // effective
		binary.LittleEndian.PutUint32(out[12*i+4:], fullCaps[i]) // permitted
	}
	if err := r.WriteMem(data, out); err != nil {
		return fail(err)
	}
	return value(0)
}
