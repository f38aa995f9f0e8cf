package shim

import (
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"syscall"
)

// The tool's capabilities are virtual: it starts with every capability effective and permitted
// (it believes it is root), and capset(2) changes them as the kernel would. bpftool's `feature
// probe unprivileged` drops CAP_BPF, CAP_SYS_ADMIN, CAP_PERFMON and CAP_NET_ADMIN to see what an
// ordinary user may do, then raises them again; while they are dropped, bpf(2) answers as the
// kernel answers an unprivileged caller.

// Capability ABI versions (linux/capability.h).
const (
	capVersion1 = 0x19980330
	capVersion2 = 0x20071026
	capVersion3 = 0x20080522
)

// Capabilities bpf(2) checks (linux/capability.h).
const (
	capSysAdmin = 21
	capSetpcap  = 8
	capBPF      = 39
)

// capSet is a set of capabilities, bit n for capability n.
type capSet uint64

// allCaps is every capability up to CAP_CHECKPOINT_RESTORE (40): the kernel's CAP_VALID_MASK.
const allCaps capSet = 1<<41 - 1

func (c capSet) has(n uint) bool        { return c&(1<<n) != 0 }
func (c capSet) subsetOf(o capSet) bool { return c&^o == 0 }
func (c capSet) word(i int) uint32      { return uint32(c >> (32 * i)) }
func capWords(lo, hi uint32) capSet     { return capSet(lo) | capSet(hi)<<32 }

// caps holds the tool's virtual effective, permitted and inheritable sets.
type caps struct {
	mu             sync.Mutex
	eff, perm, inh capSet
}

// newCaps returns the sets of a root process: every capability effective and permitted.
func newCaps() *caps { return &caps{eff: allCaps, perm: allCaps} }

// snapshot returns the effective, permitted and inheritable sets.
func (c *caps) snapshot() (e, p, i capSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eff, c.perm, c.inh
}

// bpfCapable reports whether bpf(2) treats the tool as privileged (CAP_BPF or CAP_SYS_ADMIN).
func (c *caps) bpfCapable() bool {
	e, _, _ := c.snapshot()
	return e.has(capBPF) || e.has(capSysAdmin)
}

// set replaces the sets under the kernel's rules (security/commoncap.c cap_capset).
func (c *caps) set(eff, perm, inh capSet) syscall.Errno {
	c.mu.Lock()
	defer c.mu.Unlock()
	eff, perm, inh = eff&allCaps, perm&allCaps, inh&allCaps
	if !c.eff.has(capSetpcap) && !inh.subsetOf(c.inh|c.perm) {
		return syscall.EPERM
	}
	if !perm.subsetOf(c.perm) || !eff.subsetOf(perm) {
		return syscall.EPERM
	}
	c.eff, c.perm, c.inh = eff, perm, inh
	return 0
}

// capArgs reads capget/capset's header: the number of 32-bit words of the version (0 for a
// version the kernel does not know) and the pid.
func capArgs(r *Request) (words int, pid int32, err error) {
	var h [8]byte
	if err := r.ReadMem(r.Args[0], h[:]); err != nil {
		return 0, 0, err
	}
	switch binary.LittleEndian.Uint32(h[:]) {
	case capVersion1:
		words = 1
	case capVersion2, capVersion3:
		words = 2
	}
	return words, int32(binary.LittleEndian.Uint32(h[4:])), nil
}

// sysCapget answers capget(2) about the tool's own process with its virtual sets, following the
// kernel's version negotiation.
func (s *Supervisor) sysCapget(r *Request) reply {
	words, pid, err := capArgs(r)
	if err != nil {
		return fail(err)
	}
	data := r.Args[1]
	if words == 0 || data == 0 || pid < 0 || pid != 0 && !s.isTool(int(pid)) || !s.isTool(r.Tid) {
		// Version negotiation, bad arguments and other processes: the kernel answers.
		return cont()
	}
	e, p, i := s.caps.snapshot()
	out := make([]byte, 12*words)
	for w := range words {
		binary.LittleEndian.PutUint32(out[12*w:], e.word(w))
		binary.LittleEndian.PutUint32(out[12*w+4:], p.word(w))
		binary.LittleEndian.PutUint32(out[12*w+8:], i.word(w))
	}
	if err := r.WriteMem(data, out); err != nil {
		return fail(err)
	}
	return value(0)
}

// sysCapset changes the tool's virtual sets; other processes get the kernel's answer.
func (s *Supervisor) sysCapset(r *Request) reply {
	if !s.isTool(r.Tid) {
		return cont()
	}
	words, pid, err := capArgs(r)
	if err != nil {
		return fail(err)
	}
	if words == 0 {
		return cont() // the kernel writes its version and fails with EINVAL
	}
	if pid != 0 && int(pid) != r.Tid {
		return errno(syscall.EPERM)
	}
	in := make([]byte, 12*words)
	if err := r.ReadMem(r.Args[1], in); err != nil {
		return fail(err)
	}
	var v [3][2]uint32
	for w := range words {
		for k := range 3 {
			v[k][w] = binary.LittleEndian.Uint32(in[12*w+4*k:])
		}
	}
	if e := s.caps.set(capWords(v[0][0], v[0][1]), capWords(v[1][0], v[1][1]), capWords(v[2][0], v[2][1])); e != 0 {
		return errno(e)
	}
	return value(0)
}

// bpfRefused reports the errno the kernel gives a bpf(2) call of the tool before looking at its
// command: EPERM when the tool dropped CAP_BPF and CAP_SYS_ADMIN and the kernel's
// unprivileged_bpf_disabled is set. (With it clear the kernel's unprivileged rules would apply;
// the call is served as a privileged one.)
func (s *Supervisor) bpfRefused(r *Request) syscall.Errno {
	if s.caps.bpfCapable() || !s.isTool(r.Tid) {
		return 0
	}
	b, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err == nil && strings.TrimSpace(string(b)) == "0" {
		return 0
	}
	return syscall.EPERM
}
