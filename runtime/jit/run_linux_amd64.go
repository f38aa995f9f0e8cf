package jit

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// Func is compiled code mapped executable in this process, ready to run from Go.
type Func struct {
	code   *Code
	text   []byte // the executable mapping
	closed atomic.Bool
}

// Load maps c executable in this process. The mapping is released when the Func is closed and
// no run uses it any more.
func Load(c *Code) (*Func, error) {
	if len(c.Text) == 0 {
		return nil, errors.New("jit: load: no code")
	}
	size := (len(c.Text) + pageSize - 1) &^ (pageSize - 1)
	text, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("jit: load: %w", err)
	}
	copy(text, c.Text)
	if err := unix.Mprotect(text, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		_ = unix.Munmap(text)
		return nil, fmt.Errorf("jit: load: %w", err)
	}
	f := &Func{code: c, text: text}
	// Runs keep f alive while they execute its code, so the mapping goes only after the last.
	runtime.AddCleanup(f, func(text []byte) { _ = unix.Munmap(text) }, text)
	return f, nil
}

// Code returns the code f runs.
func (f *Func) Code() *Code { return f.code }

// Close makes later runs fail; runs in progress finish. The code is unmapped once no run uses
// it (when the garbage collector finds the Func unreachable).
func (f *Func) Close() error {
	f.closed.Store(true)
	return nil
}

const pageSize = 4096

// runBlock is the context block followed by the state of the switch between Go and compiled
// code; trampoline_amd64.s knows its offsets (block_test.go checks them).
type runBlock struct {
	Block
	goSP, goBP, goBX, goR12, goR13, goR14, goR15        uint64
	jitSP, jitBX, jitBP, jitR12, jitR13, jitR14, jitR15 uint64
	stackTop                                            uint64 // top of the native stack
	helperID                                            uint64
	helperArgs                                          [5]uint64
	args                                                [5]uint64
	result                                              uint64
}

// Native stack for compiled code and helper stubs: their use is bounded (the entry frame, at
// most eight subprogram frames, the region check, a helper stub), far below this.
const nativeStackSize = 16 << 10

// runner is the memory of one run: a guard page, the native stack, the eBPF stack and the run
// block, in one mapping outside the Go heap.
type runner struct {
	mem []byte
	blk *runBlock
}

var runners = sync.Pool{New: func() any {
	r, err := newRunner()
	if err != nil {
		return err
	}
	return r
}}

func newRunner() (*runner, error) {
	size := pageSize + nativeStackSize + StackSize + pageSize
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("jit: map run memory: %w", err)
	}
	if err := unix.Mprotect(m[:pageSize], unix.PROT_NONE); err != nil {
		_ = unix.Munmap(m)
		return nil, fmt.Errorf("jit: map run memory: %w", err)
	}
	base := uintptr(unsafe.Pointer(&m[0]))
	r := &runner{mem: m, blk: (*runBlock)(unsafe.Pointer(&m[size-pageSize]))}
	r.blk.stackTop = uint64(base) + pageSize + nativeStackSize
	r.blk.Stack = r.blk.stackTop
	runtime.AddCleanup(r, func(m []byte) { _ = unix.Munmap(m) }, m)
	return r, nil
}

func getRunner() (*runner, error) {
	switch v := runners.Get().(type) {
	case *runner:
		return v, nil
	case error:
		return nil, v
	}
	return nil, errors.New("jit: no runner")
}

// thunks is the helper table every Go run uses: for each helper number, a stub that loads the
// number into eax and jumps to helperStub.
type thunks struct {
	mem   []byte
	table uintptr // helper.MaxID function addresses
}

var (
	thunksOnce sync.Once
	thunksVal  *thunks
	thunksErr  error
)

func helperThunks() (*thunks, error) {
	thunksOnce.Do(func() { thunksVal, thunksErr = makeThunks(int(helper.MaxID)) })
	return thunksVal, thunksErr
}

func makeThunks(n int) (*thunks, error) {
	const thunkSize = 24
	code := n * thunkSize
	size := (code + 8*n + pageSize - 1) &^ (pageSize - 1)
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("jit: map helper thunks: %w", err)
	}
	base := uintptr(unsafe.Pointer(&m[0]))
	stub := helperStubAddr()
	for id := 0; id < n; id++ {
		var a asm
		a.movRI(false, rax, int64(id))
		a.movRI(true, rAux, int64(stub))
		a.jmpR(rAux)
		copy(m[id*thunkSize:], a.code())
		*(*uint64)(unsafe.Pointer(&m[code+8*id])) = uint64(base) + uint64(id*thunkSize)
	}
	if err := unix.Mprotect(m, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		_ = unix.Munmap(m)
		return nil, fmt.Errorf("jit: map helper thunks: %w", err)
	}
	return &thunks{mem: m, table: base + uintptr(code)}, nil
}

// Implemented in trampoline_amd64.s.
func jump(b *runBlock, entry uintptr, r0 uint64) uint64
func helperStub() // never called from Go: compiled code calls it through the thunks
func helperStubAddr() uintptr

const statusHelper = 1

// Run runs the program with r1-r5 set to args and returns r0. Helper calls go to env.Helpers
// (Go functions, run on the goroutine's stack between two legs of compiled code); memory
// accesses the verifier marked are checked against the run's stack and env.Mem; the run stops
// with a *program.Fault when one fails, when env.Budget is exhausted (counted on back-edges)
// or when a helper fails. env may be nil for a program that needs no memory, maps or helpers.
// Run may be called from many goroutines at once.
func (f *Func) Run(env *helper.Env, args [5]uint64) (uint64, error) {
	if env == nil {
		env = &helper.Env{}
	}
	if f.closed.Load() {
		return 0, errors.New("jit: run: function closed")
	}
	th, err := helperThunks()
	if err != nil {
		return 0, err
	}
	r, err := getRunner()
	if err != nil {
		return 0, err
	}
	b := r.blk
	var r0 uint64
	if f.code.CallsHelpers {
		// Helpers reach memory through env.Mem; stack pointers are among what programs pass
		// them. As in the interpreter, the whole stack is then one of the run's regions.
		mem := env.Mem
		if err = env.Mem.Add(b.Stack, StackSize, true); err != nil {
			err = &program.Fault{PC: 0, Reason: err.Error()}
		} else if err = f.setup(b, env, th, args); err == nil {
			r0, err = f.run(b, env)
		}
		env.Mem = mem
	} else if err = f.setup(b, env, th, args); err == nil {
		r0, err = f.run(b, env)
	}
	runtime.KeepAlive(env)
	runtime.KeepAlive(f) // its code ran until here
	runners.Put(r)
	return r0, err
}

// setup fills the context block for one run.
func (f *Func) setup(b *runBlock, env *helper.Env, th *thunks, args [5]uint64) error {
	c := f.code
	b.Helpers = th.table
	b.NumHelpers = uint64(helper.MaxID)
	b.Maps, b.MapValues = 0, 0
	if c.NumMaps > 0 {
		if len(env.Maps) < c.NumMaps {
			return &program.Fault{PC: 0, Reason: fmt.Sprintf("%d maps in the run's environment, the program has %d", len(env.Maps), c.NumMaps)}
		}
		b.Maps = uintptr(unsafe.Pointer(&env.Maps[0]))
	}
	for _, v := range c.ValueRefs {
		if v.Map >= len(env.MapValues) || env.MapValues[v.Map] == 0 {
			return &program.Fault{PC: v.PC, Reason: fmt.Sprintf("map %d has no direct value access in the run's environment", v.Map)}
		}
		b.MapValues = uintptr(unsafe.Pointer(&env.MapValues[0]))
	}
	b.Stack = b.stackTop
	b.Budget = env.Budget
	n := env.Mem.Len()
	b.NumRegions = uint64(n)
	for i := 0; i < n; i++ {
		rg := env.Mem.At(i)
		b.Regions[i] = Region{Start: rg.Start, End: rg.End}
		if rg.Writable {
			b.Regions[i].Writable = 1
		}
	}
	b.Packet, b.PacketLen = 0, 0
	if src, ok := env.Data.(packetSource); ok {
		pkt := src.Packet()
		b.Packet, b.PacketLen = uint64(uintptr(unsafe.Pointer(b))), 0 // an empty packet is still one
		if len(pkt) > 0 {
			b.Packet, b.PacketLen = memory.Addr(pkt), uint64(len(pkt))
		}
	}
	b.args = args
	return nil
}

// packetSource is what the legacy packet loads read from, as for the interpreter
// (interp.PacketSource): an embedder whose env.Data implements it gives the run's packet.
type packetSource interface {
	Packet() []byte
}

// run runs compiled code until it returns, serving its helper calls. Each switch to compiled
// code, the first and those after helpers, goes through one call site of jump (see
// trampoline_amd64.s): the processor then predicts the returns between Go and compiled code
// but two per helper call.
func (f *Func) run(b *runBlock, env *helper.Env) (uint64, error) {
	entry := uintptr(unsafe.Pointer(&f.text[f.code.Entry]))
	var r0 uint64
	loops := f.code.Loops
	for {
		// A run of a program with loops is a system call for the scheduler (see
		// switch_linux_amd64.go). Between entersyscall and exitsyscall the goroutine must not
		// grow its stack: nothing runs there but jump, which is NOSPLIT and runs on the
		// native stack.
		if loops {
			entersyscall()
		}
		status := jump(b, entry, r0)
		if loops {
			exitsyscall()
		}
		if status != statusHelper {
			break
		}
		entry = 0
		id := helper.ID(b.helperID)
		impl, ok := env.Helpers.Get(id)
		if !ok || impl.Fn == nil {
			return 0, &program.Fault{PC: f.helperPC(b), Reason: fmt.Sprintf("call to %s, which this run does not offer", helperName(id))}
		}
		var err error
		r0, err = impl.Fn(env, &b.helperArgs) // the block is outside the Go heap: nothing escapes
		if err != nil {
			var ft *program.Fault
			if errors.As(err, &ft) {
				return 0, &program.Fault{PC: f.helperPC(b), Reason: ft.Reason}
			}
			return 0, &program.Fault{PC: f.helperPC(b), Reason: fmt.Sprintf("%s: %v", helperName(id), err)}
		}
	}
	if b.Fault != FaultNone {
		return 0, f.fault(b, env)
	}
	return b.result, nil
}

// helperName names a helper for messages: "helper 5 (bpf_ktime_get_ns)".
func helperName(id helper.ID) string {
	if n := helper.Name(id); n != "" {
		return fmt.Sprintf("helper %d (%s)", id, n)
	}
	return fmt.Sprintf("helper %d", id)
}

// helperPC returns the instruction that called the pending helper, from the return address the
// helper stub left on the native stack.
func (f *Func) helperPC(b *runBlock) int {
	ret := *(*uint64)(unsafe.Pointer(uintptr(b.jitSP)))
	base := uint64(uintptr(unsafe.Pointer(&f.text[0])))
	if ret <= base || ret > base+uint64(len(f.code.Text)) {
		return -1
	}
	return f.code.PC(int(ret-base) - 1)
}

// fault translates the block's fault word into a *program.Fault, in the interpreter's words.
func (f *Func) fault(b *runBlock, env *helper.Env) error {
	pc := int(b.FaultPC)
	switch b.Fault {
	case FaultBounds:
		kind := "read"
		if b.FaultInfo&0x80 != 0 {
			kind = "write"
		}
		return &program.Fault{PC: pc, Reason: fmt.Sprintf("invalid %s of %d bytes at %#x: outside the stack and the run's memory %s",
			kind, b.FaultInfo&0x7f, b.FaultAddr, env.Mem.String())}
	case FaultBudget:
		return &program.Fault{PC: pc, Reason: fmt.Sprintf("instruction budget of %d exhausted", env.Budget)}
	case FaultDepth:
		return &program.Fault{PC: pc, Reason: fmt.Sprintf("call depth exceeds %d frames", StackSize/512)}
	case FaultCallx:
		return &program.Fault{PC: pc, Reason: "call to an unknown helper"}
	case FaultFellOff:
		return &program.Fault{PC: pc, Reason: "execution ran past the last instruction"}
	case FaultPacket:
		return &program.Fault{PC: pc, Reason: "packet load in a run without a packet"}
	case FaultAlign:
		return &program.Fault{PC: pc, Reason: fmt.Sprintf("misaligned atomic access of %d bytes at %#x", b.FaultInfo, b.FaultAddr)}
	}
	return &program.Fault{PC: pc, Reason: fmt.Sprintf("fault code %d", b.Fault)}
}
