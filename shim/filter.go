package shim

import (
	"fmt"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cond is a test on the low 32 bits of one syscall argument: (arg & Mask) == Value, or != when
// Not is set.
type cond struct {
	Arg   int
	Mask  uint32
	Value uint32
	Not   bool
}

// rule notifies the supervisor of syscall Nr when all its conditions hold (always when it has
// none). Syscalls without a rule run without the supervisor.
type rule struct {
	Nr    uint32
	Conds []cond
}

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// x32SyscallBit marks the x32 ABI's syscall numbers; they are left to the kernel.
const x32SyscallBit = 0x40000000

// asm is a tiny classic-BPF assembler with forward jumps to labels.
type asm struct {
	insns  []unix.SockFilter
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at       int
	jt, jf   string // labels; "" means the next instruction
	absolute bool
}

func (a *asm) label(name string) { a.labels[name] = len(a.insns) }

func (a *asm) stmt(code uint16, k uint32) {
	a.insns = append(a.insns, unix.SockFilter{Code: code, K: k})
}

// jump emits a conditional jump on the accumulator to label jt when it holds, jf when not.
func (a *asm) jump(code uint16, k uint32, jt, jf string) {
	a.fixups = append(a.fixups, fixup{at: len(a.insns), jt: jt, jf: jf})
	a.insns = append(a.insns, unix.SockFilter{Code: code, K: k})
}

func (a *asm) resolve() ([]unix.SockFilter, error) {
	for _, f := range a.fixups {
		off := func(l string) (uint8, error) {
			if l == "" {
				return 0, nil
			}
			t, ok := a.labels[l]
			if !ok {
				return 0, fmt.Errorf("filter: no label %q", l)
			}
			d := t - f.at - 1
			if d < 0 || d > 255 {
				return 0, fmt.Errorf("filter: jump to %q out of range (%d)", l, d)
			}
			return uint8(d), nil
		}
		var err error
		if a.insns[f.at].Jt, err = off(f.jt); err != nil {
			return nil, err
		}
		if a.insns[f.at].Jf, err = off(f.jf); err != nil {
			return nil, err
		}
	}
	return a.insns, nil
}

// buildFilter compiles rules into a seccomp filter for x86-64: a notified syscall returns
// SECCOMP_RET_USER_NOTIF, everything else (including other ABIs) SECCOMP_RET_ALLOW.
func buildFilter(rules []rule) ([]unix.SockFilter, error) {
	rules = append([]rule(nil), rules...)
	sort.Slice(rules, func(i, j int) bool { return rules[i].Nr < rules[j].Nr })
	a := &asm{labels: map[string]int{}}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		and = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	a.stmt(ld, offArch)
	a.jump(jeq, unix.AUDIT_ARCH_X86_64, "", "allow")
	a.stmt(ld, offNr)
	a.jump(jge, x32SyscallBit, "allow", "")
	for i, r := range rules {
		target := "notify"
		if len(r.Conds) > 0 {
			target = fmt.Sprintf("rule%d", i)
		}
		a.jump(jeq, r.Nr, target, "")
	}
	a.label("allow")
	a.stmt(ret, unix.SECCOMP_RET_ALLOW)
	a.label("notify")
	a.stmt(ret, unix.SECCOMP_RET_USER_NOTIF)
	for i, r := range rules {
		if len(r.Conds) == 0 {
			continue
		}
		a.label(fmt.Sprintf("rule%d", i))
		for _, c := range r.Conds {
			a.stmt(ld, uint32(offArgs+8*c.Arg))
			if c.Mask != 0xffffffff {
				a.stmt(and, c.Mask)
			}
			if c.Not {
				a.jump(jeq, c.Value, "pass", "")
			} else {
				a.jump(jeq, c.Value, "", "pass")
			}
		}
		a.stmt(ret, unix.SECCOMP_RET_USER_NOTIF)
	}
	// Conditions that fail jump here, forward (classic BPF has no backward jumps).
	a.label("pass")
	a.stmt(ret, unix.SECCOMP_RET_ALLOW)
	return a.resolve()
}

// installFilter installs prog on the calling thread (which must have no_new_privs set) and
// returns the listener fd of its notifications.
func installFilter(prog []unix.SockFilter) (int, error) {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return -1, fmt.Errorf("seccomp(SET_MODE_FILTER, NEW_LISTENER): %w", e)
	}
	return int(fd), nil
}
