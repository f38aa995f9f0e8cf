// Package verifier decides whether an eBPF program is safe to run and prepares it for the
// executors. It accepts what the Linux verifier accepts for the program types stock tools load,
// refuses the rest with the kernel's errno and a log in the kernel's wording, and where a static
// proof is out of its reach it marks the access for a run-time check instead of refusing.
//
// Verification runs in two passes: a structural pass over the instruction stream (opcodes,
// reserved fields, lddw pairs, jump targets, subprograms), then a path-sensitive abstract
// interpretation of register and stack states.
package verifier

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// Options says what a program is verified for.
//
// For a BPF_PROG_LOAD of a kernel program type the server passes the type, the helpers that type
// may call (helper.ForType, with its implementations: a nil Func marks one it cannot run, which
// a program may probe but not call — see Program.Helpers), the license, the map resolver (frozen
// read-only arrays with their value in MapInfo.Frozen, so their loads are known numbers), the log
// level and writer, and the CPU count it shows tools. Contexts of kernel types are laid out as the
// kernel's structures (CtxSize gives their size).
type Options struct {
	// Type is the program type; it decides the context and the helpers the program may call.
	Type program.Type
	// CtxSize is the size in bytes of the context r1 points to at entry. For kernel types it is
	// the size of the kernel's context structure (pt_regs for kprobes, the tracepoint's record);
	// for program.Raw it is the size of the buffer, whose length r2 holds.
	CtxSize int
	// CtxWritable allows stores into the context (program.Raw buffers).
	CtxWritable bool
	// Maps resolves the map an lddw names: src is isa.PseudoMapFD, PseudoMapValue, PseudoMapIdx
	// or PseudoMapIdxValue and ref the fd or fd_array index. Nil means no map can be named.
	Maps func(src uint8, ref int32) (program.MapInfo, error)
	// Helpers are the helpers the program may call, with their prototypes. Nil means none.
	Helpers *helper.Table
	// GPL reports a GPL-compatible license (needed by GPL-only helpers).
	GPL bool
	// Log receives the verifier's log when LogLevel is not zero.
	Log io.Writer
	// LogLevel is the kernel's log_level: 0 none, 1 the verification trace and errors, 2 more.
	LogLevel uint32
	// Sleepable marks a sleepable program (BPF_F_SLEEPABLE), which may call helpers that sleep.
	Sleepable bool
	// PossibleCPUs is the number of CPUs programs see; bpf_get_smp_processor_id returns less
	// than it. 0 means unknown.
	PossibleCPUs int
	// MaxInsns bounds the instructions the analysis may process (the kernel's 1,000,000 when 0).
	MaxInsns int
}

// Error is a refusal: the errno the kernel returns for it and the last line of the log.
type Error struct {
	Errno  syscall.Errno
	Msg    string
	Before []string // lines the kernel's log has before Msg for this refusal
}

// Error implements error.
func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is match the errno.
func (e *Error) Unwrap() error { return e.Errno }

func refuse(errno syscall.Errno, format string, args ...any) *Error {
	return &Error{Errno: errno, Msg: fmt.Sprintf(format, args...)}
}

// Errno returns the errno of a refusal, or EINVAL for any other error.
func Errno(err error) syscall.Errno {
	var e *Error
	if errors.As(err, &e) {
		return e.Errno
	}
	return syscall.EINVAL
}

// Verify checks insns for opts and returns the program ready to run, or the refusal.
func Verify(insns []isa.Instruction, opts *Options) (*program.Program, error) {
	v := newVerifier(insns, opts)
	p, err := v.run()
	v.finishLog(err)
	if err != nil {
		return nil, err
	}
	return p, nil
}
