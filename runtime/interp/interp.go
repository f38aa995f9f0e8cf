// Package interp runs verified eBPF programs in Go: the interpreter behind BPF_PROG_TEST_RUN,
// bpftrace's BEGIN/END probes and ebpfu-vm, and the executor on platforms without the JIT.
//
// A program is decoded once (Prepare) into a form specialised per instruction; a Machine then
// runs it with a switch-dispatched loop that allocates nothing. eBPF pointers are host addresses:
// loads and stores go straight to memory, after a bounds check against the run's stack and
// env.Mem where the verifier marked the access program.CheckBounds. A failed check, an exhausted
// budget or a helper's error stops the program with a *program.Fault.
package interp

import (
	"errors"
	"unsafe"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// StackSize is the size of a Machine's stack: one 512-byte frame per call level.
const StackSize = isa.MaxCallDepth * isa.StackSize

// frame is what a bpf-to-bpf call saves.
type frame struct {
	ret   unsafe.Pointer // the decoded instruction after the call
	saved [4]uint64      // r6..r9
	fp    uint64         // the caller's r10
}

// Machine runs programs. It owns a stack of isa.MaxCallDepth 512-byte frames in heap memory.
// A Machine is reusable but runs one program at a time: it is not safe for concurrent use (give
// each goroutine its own), and a helper must not run a program on the Machine that called it.
type Machine struct {
	// regs is the register file, indexed by a register number stored in a uint8, so that no
	// access needs a bounds check; only r0..r10 are used.
	regs   [256]uint64
	frames [isa.MaxCallDepth]frame
	stack  []byte // StackSize bytes; frame 0 is at the top
	top    uint64 // address one past the stack, r10 of frame 0

	// The state of the run in progress, kept here rather than in the dispatch loop's locals.
	depth  int            // bpf-to-bpf call depth
	lo     uint64         // bottom of the current frame: [lo, top) is the live stack
	span   uint64         // top - lo
	budget int64          // what is left of the budget
	ip     unsafe.Pointer // the instruction pointer, saved across calls out of the loop
	err    error          // the error of the last failed call out of the loop

	// A one-entry cache for Run.
	lastProg *program.Program
	lastCode *Code

	env helper.Env // the environment of runs given none
}

// New returns a Machine.
func New() *Machine {
	m := &Machine{stack: make([]byte, StackSize)}
	m.top = memory.Addr(m.stack) + StackSize
	return m
}

// Stack returns the Machine's stack (frame 0 is its last 512 bytes), for tests and embedders that
// want to inspect it.
func (m *Machine) Stack() []byte { return m.stack }

// Run runs p with r1..r5 set from args and returns r0. p is decoded on its first run and the
// decoded form kept for the next run of the same program; use Prepare and RunCode to run
// several programs alternately without decoding again. env may be nil for a program that needs
// no memory, maps or helpers.
func (m *Machine) Run(p *program.Program, env *helper.Env, args [5]uint64) (uint64, error) {
	if p == nil {
		return 0, errors.New("run: no program")
	}
	c := m.lastCode
	if p != m.lastProg || c == nil {
		var err error
		if c, err = Prepare(p); err != nil {
			return 0, err
		}
		m.lastProg, m.lastCode = p, c
	}
	return m.RunCode(c, env, args)
}

// RunCode runs a prepared program with r1..r5 set from args and returns r0.
func (m *Machine) RunCode(c *Code, env *helper.Env, args [5]uint64) (uint64, error) {
	if c == nil {
		return 0, errors.New("run: no program")
	}
	if env == nil {
		m.env = helper.Env{}
		env = &m.env
	}
	if c.calls {
		// Helpers reach memory through env.Mem; stack pointers are among what programs pass them.
		saved := env.Mem
		if err := env.Mem.Add(memory.Addr(m.stack), StackSize, true); err != nil {
			return 0, &program.Fault{PC: 0, Reason: err.Error()}
		}
		defer func() { env.Mem = saved }()
	}
	r := &m.regs
	r[0] = 0
	copy(r[1:6], args[:])
	r[6], r[7], r[8], r[9] = 0, 0, 0, 0
	r[10] = m.top
	return m.exec(c, env)
}

// at returns a pointer to memory at a host address. The functions that use it are marked
// go:nocheckptr: eBPF memory is addressed by number, which the race detector's pointer checks
// (checkptr) refuse.
//
//go:nocheckptr
func at(addr uint64) unsafe.Pointer { return unsafe.Pointer(uintptr(addr)) }
