package server

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/ebpfu/ebpfu/runtime/maps"
	"golang.org/x/sys/unix"
)

// perfObj is a perf event: for now the BPF output events (PERF_TYPE_SOFTWARE /
// PERF_COUNT_SW_BPF_OUTPUT) that programs write with bpf_perf_event_output and tools mmap.
type perfObj struct {
	objID uint32
	ring  *maps.PerfRing
	cpu   int
	// wakers are eventfds that stand for the event in callers' epoll sets: written when records
	// arrive.
	wakers map[int]bool
	stop   chan struct{} // closed when the event is freed; its waker goroutine then unmaps the ring
	freed  bool
}

func (o *perfObj) kind() Kind     { return KindPerfEvent }
func (o *perfObj) id() uint32     { return o.objID }
func (o *perfObj) fdinfo() string { return "" }
func (o *perfObj) homeFD() int    { return o.ring.FD() }
func (o *perfObj) close()         { o.free() }

// perf_event_open constants.
const (
	perfTypeSoftware   = 1
	perfCountBPFOutput = 10
	perfAttrSizeVer0   = 64
	perfAttrSize       = 136 // sizeof(struct perf_event_attr), PERF_ATTR_SIZE_VER8
	perfFlagFDNoGroup  = 1 << 0
	perfFlagFDOutput   = 1 << 1
	perfFlagPIDCgroup  = 1 << 2
	perfFlagFDCloexec  = 1 << 3
	perfRingMaxData    = 16 << 20 // room for the largest buffer a tool maps (sparse until used)
)

// PerfEventOpen serves perf_event_open(attr, pid, cpu, group_fd, flags) for p.
func (s *Server) PerfEventOpen(p Process, attrAddr uint64, pid, cpu, groupFD int32, flags uint64) (Result, error) {
	if flags&^(perfFlagFDNoGroup|perfFlagFDOutput|perfFlagPIDCgroup|perfFlagFDCloexec) != 0 {
		return Result{}, syscall.EINVAL
	}
	var hdr [8]byte
	if err := readUser(p, attrAddr, hdr[:]); err != nil {
		return Result{}, err
	}
	typ, size := binary.LittleEndian.Uint32(hdr[:]), binary.LittleEndian.Uint32(hdr[4:])
	if size == 0 {
		size = perfAttrSizeVer0
	}
	if size < perfAttrSizeVer0 || size > pageSize {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], perfAttrSize)
		writeUser(p, attrAddr+4, b[:])
		return Result{}, syscall.E2BIG
	}
	attr := make([]byte, max(size, perfAttrSize))
	if err := readUser(p, attrAddr, attr[:size]); err != nil {
		return Result{}, err
	}
	for _, c := range attr[perfAttrSize:] {
		if c != 0 {
			return Result{}, syscall.E2BIG
		}
	}
	config := binary.LittleEndian.Uint64(attr[8:])
	if retBit, ok := isUprobe(typ); ok {
		return s.uprobeOpen(p, attr, retBit, pid, cpu, groupFD, flags)
	}
	if isClock(typ, config) {
		return s.timerOpen(attr, pid, cpu, groupFD, flags)
	}
	if typ != perfTypeSoftware || config != perfCountBPFOutput {
		return Result{}, s.refusePerf(typ, config)
	}
	if pid == -1 && cpu == -1 || cpu < -1 || int(cpu) >= possibleCPUs() || groupFD != -1 {
		return Result{}, syscall.EINVAL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &perfObj{cpu: int(cpu), wakers: map[int]bool{}, stop: make(chan struct{})}
	ring, err := maps.NewPerfRing(int(cpu), perfRingMaxData, nil)
	if err != nil {
		return Result{}, errnoOrEINVAL(err)
	}
	if o.ring, err = s.persistentRing(ring); err != nil {
		return Result{}, err
	}
	if _, err := s.objs.alloc(KindPerfEvent, func(id uint32) object { o.objID = id; return o }); err != nil {
		o.ring.Close()
		return Result{}, err
	}
	o.ring.SetEventID(uint64(o.objID))
	go s.wakeOnOutput(o)
	if err := s.publish(o); err != nil {
		return Result{}, err
	}
	s.publishRing(o)
	res, err := s.handOutNew(o)
	res.NoCloexec = flags&perfFlagFDCloexec == 0
	return res, err
}

// Perf event types (enum perf_type_id) other than the dynamic PMUs'.
const (
	perfTypeHardware   = 0
	perfTypeTracepoint = 2
	perfTypeHWCache    = 3
	perfTypeRaw        = 4
	perfTypeBreakpoint = 5
)

// refusePerf answers a perf event ebpfu does not offer as a kernel without it would (DESIGN.md
// section 8: ENOENT for a PMU the kernel lacks, EOPNOTSUPP for an event an existing PMU cannot
// count) and says why on the log, so a tool's failure is never silent.
func (s *Server) refusePerf(typ uint32, config uint64) error {
	switch typ {
	case perfTypeTracepoint:
		name, ok := s.tfs.Event(config)
		if !ok {
			name = fmt.Sprintf("id %d", config)
		}
		s.logf("perf_event_open: tracepoint %s: kernel tracepoints are not supported (the kernel is not traced)", name)
		return syscall.ENOENT
	case perfTypeHardware, perfTypeHWCache, perfTypeRaw:
		s.logf("perf_event_open: hardware perf events (type %d config %#x) are not supported", typ, config)
		return syscall.ENOENT
	case perfTypeBreakpoint:
		s.logf("perf_event_open: breakpoint perf events are not supported")
		return syscall.ENOENT
	case perfTypeSoftware:
		s.logf("perf_event_open: software perf event %d is not supported (only BPF output events and clocks sampled by period are)", config)
		return syscall.EOPNOTSUPP
	}
	s.logf("perf_event_open: perf event type %d is not supported (kprobes and other PMUs need the kernel)", typ)
	return syscall.ENOENT
}

// persistentRing moves a new ring to an unnamed file of the state directory, whose closes inotify
// reports (the ring's memfd is a pseudo file). It closes r.
func (s *Server) persistentRing(r *maps.PerfRing) (*maps.PerfRing, error) {
	defer r.Close()
	f, err := s.objs.state.objectFile()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := copySparse(f, r.FD()); err != nil {
		return nil, fmt.Errorf("perf ring to the state directory: %w", err)
	}
	return maps.OpenPerfRing(int(f.Fd()), nil)
}

// wakeOnOutput writes the event's wakers whenever records arrive, until the event is freed;
// then it unmaps the ring, which it alone may still be waiting on.
func (s *Server) wakeOnOutput(o *perfObj) {
	defer o.ring.Close()
	seq := o.ring.NotifySeq()
	for {
		select {
		case <-o.stop:
			return
		default:
		}
		next := o.ring.WaitNotify(seq, 100*time.Millisecond)
		if next != seq {
			seq = next
			s.mu.Lock()
			if !o.freed {
				s.wake(o)
			}
			s.mu.Unlock()
		}
	}
}

// wake writes every waker of o.
func (s *Server) wake(o *perfObj) { wakeAll(o.wakers) }

// wakeAll writes the eventfds wakers.
func wakeAll(wakers map[int]bool) {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	for fd := range wakers {
		unix.Write(fd, one[:])
	}
}

// AddWaker makes the eventfd efd (which the server now owns) readable-once whenever records
// arrive on the perf event or BPF ring buffer behind file id; the caller has put efd in the
// tool's epoll set in the object's place. It fails with EPERM for files that cannot be polled
// (as epoll_ctl would).
func (s *Server) AddWaker(id FileID, efd int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o := s.objs.files[id].(type) {
	case *perfObj:
		if o.freed {
			return syscall.EPERM
		}
		o.wakers[efd] = true
		s.wake(o) // the tool finds out by reading whether records are already there
		return nil
	case *mapObj:
		if o.m.Type() != maps.RingBuf {
			return syscall.EPERM
		}
		w := s.ringWaiter(o)
		w.wakers[efd] = true
		wakeAll(w.wakers)
		return nil
	}
	return syscall.EPERM
}

// RemoveWaker forgets and closes efd.
func (s *Server) RemoveWaker(id FileID, efd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var wakers map[int]bool
	switch o := s.objs.files[id].(type) {
	case *perfObj:
		wakers = o.wakers
	case *mapObj:
		if o.waiter != nil {
			wakers = o.waiter.wakers
		}
	}
	if wakers[efd] {
		delete(wakers, efd)
		unix.Close(efd)
	}
}

// Pollable reports whether the file id is one of the server's that a tool polls: a perf event or
// a BPF ring buffer.
func (s *Server) Pollable(id FileID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o := s.objs.files[id].(type) {
	case *perfObj:
		return true
	case *mapObj:
		return o.m.Type() == maps.RingBuf
	}
	return false
}

// Perf event ioctls.
const (
	perfIocEnable  = 0x2400
	perfIocDisable = 0x2401
	perfIocRefresh = 0x2402
	perfIocReset   = 0x2403
	perfIocID      = 0x80082407
	perfIocSetBPF  = 0x40042408
)

// PerfIoctl serves an ioctl on file id; ok is false when the file is not one of the server's
// perf events (the kernel then answers).
func (s *Server) PerfIoctl(p Process, id FileID, req, arg uint64) (val int64, ok bool, err error) {
	if val, ok, err := s.uprobeIoctl(p, id, req, arg); ok {
		return val, ok, err
	}
	if val, ok, err := s.timerIoctl(p, id, req, arg); ok {
		return val, ok, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, isPerf := s.objs.files[id].(*perfObj)
	if !isPerf {
		return 0, false, nil
	}
	switch uint32(req) {
	case perfIocEnable:
		o.ring.SetEnabled(true)
	case perfIocDisable:
		o.ring.SetEnabled(false)
	case perfIocReset, perfIocRefresh:
	case perfIocID:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(o.objID))
		return 0, true, writeUser(p, arg, b[:])
	case perfIocSetBPF:
		return 0, true, syscall.EINVAL // a BPF output event runs no program
	default:
		return 0, true, syscall.ENOTTY
	}
	return 0, true, nil
}

// PerfMmap checks an mmap of file id and records how much of a perf event's ring the tool maps:
// (1+2^n) pages from offset 0, as the kernel's perf_mmap wants. ok is false when the file is
// not one of the server's perf events.
func (s *Server) PerfMmap(id FileID, length, offset uint64) (ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, isPerf := s.objs.files[id].(*perfObj)
	if !isPerf {
		return false, nil
	}
	if s.agentMapping(o, length, offset) {
		return true, nil
	}
	if offset != 0 || length <= kernelPageSize || length%kernelPageSize != 0 {
		return true, syscall.EINVAL
	}
	if err := o.ring.SetDataSize(length - kernelPageSize); err != nil {
		return true, syscall.EINVAL
	}
	return true, nil
}

// perfRing returns the ring of perf event id, for bpf_perf_event_output.
func (s *Server) perfRing(id uint32) *maps.PerfRing {
	if o, ok := s.objs.ids[KindPerfEvent].objs[id].(*perfObj); ok {
		return o.ring
	}
	return nil
}

// free ends the event: its wakers now, its ring when its waker goroutine has stopped.
func (o *perfObj) free() {
	o.freed = true
	close(o.stop)
	for fd := range o.wakers {
		unix.Close(fd)
	}
	o.wakers = nil
}
