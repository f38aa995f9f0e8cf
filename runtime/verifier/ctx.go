package verifier

import (
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/program"
)

// ctxRules says which accesses a program type may make to its context, as the kernel's
// *_is_valid_access functions do. Executors give kernel types a context laid out as the kernel's
// structure, so accesses need no rewriting.
type ctxRules struct {
	// size is the size of the context in bytes.
	size int
	// access reports whether a fixed-offset access is valid.
	access func(off, size int, write bool) bool
	// variable allows variable offsets (a plain buffer), checked against size.
	variable bool
	// writable allows stores (plain buffers).
	writable bool
	// packet allows the legacy packet loads LD_ABS and LD_IND.
	packet bool
}

// Sizes of the kernel's context structures (x86-64).
const (
	ptRegsSize         = 168
	skBuffSize         = 192
	perfEventDataSize  = ptRegsSize + 16
	rawTracepointSize  = 8 * 12 // MAX_BPF_FUNC_ARGS u64 arguments
	tracepointCtxLimit = 8192   // PERF_MAX_TRACE_SIZE
)

// CtxSize returns the size of the context a program of type t gets from the executors, or 0 for
// a type whose context the runtime does not model.
func CtxSize(t program.Type) int {
	r, err := ctxRulesFor(&Options{Type: t})
	if err != nil {
		return 0
	}
	return r.size
}

func ctxRulesFor(o *Options) (ctxRules, error) {
	aligned := func(limit int) func(off, size int, write bool) bool {
		return func(off, size int, write bool) bool {
			return !write && off >= 0 && off+size <= limit && off%size == 0
		}
	}
	switch o.Type {
	case program.Raw:
		if o.CtxSize < 0 {
			return ctxRules{}, refuse(syscall.EINVAL, "negative context size %d", o.CtxSize)
		}
		return ctxRules{
			size:     o.CtxSize,
			access:   func(off, size int, write bool) bool { return off >= 0 && off+size <= o.CtxSize },
			variable: true,
			writable: o.CtxWritable,
		}, nil
	case program.Kprobe:
		return ctxRules{size: ptRegsSize, access: aligned(ptRegsSize)}, nil
	case program.Tracepoint:
		return ctxRules{size: tracepointCtxLimit, access: func(off, size int, write bool) bool {
			return !write && off >= 8 && off+size <= tracepointCtxLimit && off%size == 0
		}}, nil
	case program.RawTracepoint, rawTracepointWritable:
		return ctxRules{size: rawTracepointSize, access: aligned(rawTracepointSize)}, nil
	case program.PerfEvent:
		return ctxRules{size: perfEventDataSize, access: perfEventAccess}, nil
	case program.SocketFilter:
		return ctxRules{size: skBuffSize, access: socketFilterAccess, packet: true}, nil
	case program.SchedCLS, program.SchedACT:
		return ctxRules{size: skBuffSize, access: func(int, int, bool) bool { return false }, packet: true}, nil
	}
	return ctxRules{access: func(int, int, bool) bool { return false }}, nil
}

const (
	rawTracepointWritable program.Type = 24
	programTypeSyscall    program.Type = 31 // always sleepable
)

// returnRange is the range the kernel's check_return_code demands of r0 at a program's exit,
// for the program types that have one (cgroup, sock_ops, sysctl, sockopt and sk_lookup programs).
func returnRange(t program.Type) (lo, hi int64, ok bool) {
	switch t {
	case 8, 9, 13, 15, 18, 23, 25, 30:
		return 0, 1, true
	}
	return 0, 0, false
}

func perfEventAccess(off, size int, write bool) bool {
	if write || off < 0 || off+size > perfEventDataSize || off%size != 0 {
		return false
	}
	if off < ptRegsSize {
		return size == 8
	}
	return true // sample_period and addr allow narrow loads
}

// socketFilterAccess is sk_filter_is_valid_access over struct __sk_buff.
func socketFilterAccess(off, size int, write bool) bool {
	if off < 0 || off+size > skBuffSize || off%size != 0 {
		return false
	}
	const cbStart, cbEnd = 48, 68
	if write {
		return off >= cbStart && off+size <= cbEnd && size == 4
	}
	field := off &^ 3
	switch {
	case field == 72, field == 76, field == 80: // tc_classid, data, data_end
		return false
	case field >= 88 && field < 144: // family .. local_port, data_meta
		return false
	case off >= 144: // flow_keys, tstamp, wire_len, gso_segs, sk, gso_size, tstamp_type, hwtstamp
		return field == 164 || field == 176 // gso_segs, gso_size
	}
	if off >= cbStart && off < cbEnd {
		return off+size <= cbEnd
	}
	return size <= 4
}
