package server

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/server/attach"
)

// timerObj is a CPU-wide software clock event that samples by period (perf_event_open of
// PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK or _TASK_CLOCK, pid -1, one CPU, a sample period,
// no frequency): bpftrace's interval probes. Its program (PERF_EVENT_IOC_SET_BPF, a perf_event
// program) runs in the server every period while the event is enabled, on a context of zeroed
// registers: the kernel's would be whatever the CPU was interrupted in, which nothing in user
// space sees. Sampling what CPUs or processes run (profile probes: a frequency, a task, or one
// program on several CPUs' clocks) is refused with a line on the log.
type timerObj struct {
	srv     *Server
	objID   uint32
	cpu     int
	period  time.Duration
	enabled bool
	prog    *progObj // nil until SET_BPF
	owner   int      // the thread that attached the program: a run's current task
	stop    chan struct{}
	stopped bool

	// what every run of the program uses, made at SET_BPF
	m       *interp.Machine
	code    *interp.Code
	helpers *helper.Table
	ctx     []byte

	needsSlot   bool // the program uses per-CPU maps or perf output: runs take the CPU's slot
	leaseWarned bool // the server said once that runs take no CPU slot
}

func (o *timerObj) kind() Kind     { return KindPerfEvent }
func (o *timerObj) id() uint32     { return o.objID }
func (o *timerObj) fdinfo() string { return "" }

// close stops the clock when the server forgets the event; its program is released afterwards
// (releaseLater), as a uprobe's.
func (o *timerObj) close() {
	o.halt()
	if o.prog != nil {
		o.srv.releaseLater(o.prog)
		o.prog = nil
	}
}

// halt stops the clock's goroutine, if any.
func (o *timerObj) halt() {
	if !o.stopped {
		o.stopped = true
		close(o.stop)
	}
}

// Software event configs and perf_event_attr fields of clocks.
const (
	perfCountSWCPUClock  = 0
	perfCountSWTaskClock = 1
	peaSamplePeriod      = 16
	peaFlags             = 40
	peaFlagDisabled      = 1 << 0
	peaFlagFreq          = 1 << 10
	perfEventCtxSize     = 168 + 8 + 8 // struct bpf_perf_event_data: pt_regs, sample_period, addr
)

// isClock reports whether a software event is a clock.
func isClock(typ uint32, config uint64) bool {
	return typ == perfTypeSoftware && (config == perfCountSWCPUClock || config == perfCountSWTaskClock)
}

// timerOpen serves perf_event_open of a software clock event (attr at least perfAttrSize bytes).
func (s *Server) timerOpen(attr []byte, pid, cpu, groupFD int32, flags uint64) (Result, error) {
	le := binary.LittleEndian
	if pid == -1 && cpu == -1 || cpu < -1 || int(cpu) >= possibleCPUs() || groupFD != -1 {
		return Result{}, syscall.EINVAL
	}
	fl, period := le.Uint64(attr[peaFlags:]), le.Uint64(attr[peaSamplePeriod:])
	switch {
	case fl&peaFlagFreq != 0:
		s.logf("perf_event_open: sampling CPUs at a frequency (profile probes) is not supported: ebpfu does not sample what CPUs run")
		return Result{}, syscall.EOPNOTSUPP
	case pid != -1:
		s.logf("perf_event_open: sampling a process's clock (profile probes of a process) is not supported: ebpfu does not sample what processes run")
		return Result{}, syscall.EOPNOTSUPP
	case period == 0:
		s.logf("perf_event_open: counting software clocks is not supported (only sampling by period, interval probes, is)")
		return Result{}, syscall.EOPNOTSUPP
	}
	o := &timerObj{srv: s, cpu: int(cpu), period: time.Duration(min(period, uint64(1<<62))), enabled: fl&peaFlagDisabled == 0,
		stop: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.objs.alloc(KindPerfEvent, func(id uint32) object { o.objID = id; return o }); err != nil {
		return Result{}, err
	}
	if err := s.publish(o); err != nil {
		return Result{}, err
	}
	res, err := s.handOutNew(o)
	res.NoCloexec = flags&perfFlagFDCloexec == 0
	return res, err
}

// timerIoctl serves an ioctl on a clock event; ok is false when the file is none.
func (s *Server) timerIoctl(p Process, id FileID, req, arg uint64) (val int64, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, isTimer := s.objs.files[id].(*timerObj)
	if !isTimer {
		return 0, false, nil
	}
	switch uint32(req) {
	case perfIocEnable:
		o.enabled = true
	case perfIocDisable:
		o.enabled = false
	case perfIocReset, perfIocRefresh:
	case perfIocID:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(o.objID))
		err = writeUser(p, arg, b[:])
	case perfIocSetBPF:
		var prog *progObj
		if prog, err = s.progOfProcessFD(p, int32(arg)); err == nil {
			err = s.attachTimer(o, prog, p.PID())
		}
	default:
		err = syscall.ENOTTY
	}
	return 0, true, err
}

// attachTimer attaches prog to the clock event o, as perf_event_set_bpf_prog does (a perf_event
// program, one per event), and starts the clock. A program already on another clock samples
// several CPUs (a profile probe): refused, and its other clocks stop.
func (s *Server) attachTimer(o *timerObj, prog *progObj, owner int) error {
	if o.prog != nil {
		return syscall.EEXIST
	}
	if program.Type(prog.typ) != program.PerfEvent {
		return syscall.EINVAL
	}
	for _, obj := range s.objs.ids[KindPerfEvent].objs {
		if t, ok := obj.(*timerObj); ok && t.prog == prog {
			t.halt()
			s.logf("program %s on the clocks of several CPUs (a profile probe) is not supported: ebpfu does not sample what CPUs run", progLabel(prog))
			return syscall.EOPNOTSUPP
		}
	}
	code, err := interp.Prepare(prog.prog)
	if err != nil {
		s.logf("program %s on a clock: %v", progLabel(prog), err)
		return syscall.EINVAL
	}
	s.hold(prog)
	o.prog, o.owner, o.m, o.code = prog, owner, interp.New(), code
	o.helpers = helper.ForType(prog.typ, s.helpers())
	for _, m := range prog.maps {
		o.needsSlot = o.needsSlot || m.m.Type().PerCPU() || m.m.Type() == maps.PerfEventArray
	}
	o.ctx = make([]byte, perfEventCtxSize)
	binary.LittleEndian.PutUint64(o.ctx[168:], uint64(o.period))
	go s.tick(o)
	return nil
}

// tick runs o's program every period while o is enabled, until o stops. It sleeps on an OS
// thread of its own to absolute times (clock_nanosleep), so that short periods keep their rate;
// periods missed while a run waited for the server are skipped, as the kernel's hrtimer
// forwards past its overruns.
//
// The thread is bound to the event's CPU, so that runs take that CPU's slot as the agents' do
// (bindCPU); it is never unlocked: it ends with the goroutine rather than go back to the
// runtime bound.
func (s *Server) tick(o *timerObj) {
	runtime.LockOSThread()
	tid := uint32(unix.Gettid())
	bound := bindCPU(o.cpu) == nil
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	next := now.Nano() + int64(o.period)
	for {
		ts := unix.NsecToTimespec(next)
		for {
			err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
			if err != syscall.EINTR {
				break
			}
		}
		select {
		case <-o.stop:
			return
		default:
		}
		s.mu.Lock()
		if !o.stopped && o.enabled && o.prog != nil {
			release := s.timerLease(o, tid, bound)
			s.runTimer(o)
			release()
		}
		s.mu.Unlock()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		next += int64(o.period)
		if next <= now.Nano() {
			next += (now.Nano()-next)/int64(o.period)*int64(o.period) + int64(o.period)
		}
	}
}

// bindCPU binds the calling thread to CPU cpu alone.
func bindCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// timerLease takes, for a run of o's program that uses per-CPU maps or perf output, the lease
// of the event CPU's slot in the user's attachments table, as agents take it for their runs:
// per-CPU values and perf rings have one writer per slot at a time. The thread must be bound
// to that CPU (attach.Table.LeaseCPU). Without the binding or the table the run takes no slot,
// and the server says so once. It returns what releases the slot.
func (s *Server) timerLease(o *timerObj, tid uint32, bound bool) (release func()) {
	none := func() {}
	if !o.needsSlot {
		return none
	}
	var err error
	if bound {
		var t *attach.Table
		if t, err = s.probes.open(s); err == nil {
			if release, err = t.LeaseCPU(o.cpu, tid, 2*time.Second); err == nil {
				return release
			}
		}
	} else {
		err = fmt.Errorf("the server's thread cannot be bound to CPU %d", o.cpu)
	}
	if !o.leaseWarned {
		o.leaseWarned = true
		s.logf("program %s on a clock runs without its CPU slot (per-CPU values may lose an update): %v", progLabel(o.prog), err)
	}
	return none
}

// runTimer runs o's program once; the server is locked. A run stopped by a fault is reported
// (once) and stops that run only, as a program's fault in a probe.
func (s *Server) runTimer(o *timerObj) {
	r := &run{s: s, p: timerTask(o.owner), maps: o.prog.maps, cpu: uint32(o.cpu)}
	env := &helper.Env{Data: r, Helpers: o.helpers}
	env.Maps = make([]uint64, len(o.prog.prog.Maps))
	env.MapValues = make([]uint64, len(o.prog.prog.Maps))
	for i := range o.prog.prog.Maps {
		env.Maps[i] = uint64(i + 1)
		if m := o.prog.maps[i].m; m.Type() == maps.Array {
			env.MapValues[i] = m.Elem(make([]byte, 4), 0)
		}
	}
	env.Mem.AddBytes(o.ctx, false)
	if _, err := o.m.RunCode(o.code, env, [5]uint64{memory.Addr(o.ctx)}); err != nil {
		s.logf("program %s on a clock: %v", progLabel(o.prog), err)
	}
}

// timerTask is the current task of a clock's runs: the thread that attached the program, whose
// memory the server does not read after the call (user memory reads fail, as the kernel's of
// the idle task it usually interrupts).
type timerTask int

func (t timerTask) PID() int                             { return int(t) }
func (timerTask) ReadMem(uint64, []byte) error           { return syscall.EFAULT }
func (timerTask) WriteMem(uint64, []byte) error          { return syscall.EFAULT }
func (timerTask) ReadString(uint64, int) (string, error) { return "", syscall.EFAULT }
func (timerTask) FileOf(int) (FileID, error)             { return FileID{}, syscall.EBADF }
