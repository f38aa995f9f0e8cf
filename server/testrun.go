package server

import (
	"encoding/binary"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/maps"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// PROG_TEST_RUN attr fields.
const (
	trProgFD      = 0
	trRetval      = 4
	trDataSizeIn  = 8
	trDataSizeOut = 12
	trDataIn      = 16
	trDataOut     = 24
	trRepeat      = 32
	trDuration    = 36
	trCtxSizeIn   = 40
	trCtxSizeOut  = 44
	trCtxIn       = 48
	trCtxOut      = 56
	trFlags       = 64
	trCPU         = 68
	trBatchSize   = 72

	testRunOnCPU = 1 << 0 // BPF_F_TEST_RUN_ON_CPU
	ethHlen      = 14
	skBuffSize   = 192 // struct __sk_buff
	maxFuncArgs  = 12  // MAX_BPF_FUNC_ARGS
)

func (s *Server) progTestRun(c *call) (Result, error) {
	a := c.attr
	if (a.u32(trCtxSizeIn) != 0) != (a.u64(trCtxIn) != 0) || (a.u32(trCtxSizeOut) != 0) != (a.u64(trCtxOut) != 0) {
		return Result{}, syscall.EINVAL
	}
	o, err := s.progOfFD(c, a.s32(trProgFD))
	if err != nil {
		return Result{}, err
	}
	switch program.Type(o.typ) {
	case program.RawTracepoint:
		return Result{}, s.testRunRawTP(c, o)
	case program.SocketFilter, program.SchedCLS, program.SchedACT:
		return Result{}, s.testRunSkb(c, o)
	}
	s.logf("bpf(BPF_PROG_TEST_RUN): test runs of program type %d are not supported", o.typ)
	return Result{}, errENOTSUPP
}

// newRun prepares a run of o for the caller.
func (s *Server) newRun(c *call, o *progObj) (*run, *helper.Env) {
	r := &run{s: s, p: c.p, maps: o.maps}
	env := &helper.Env{Data: r, Helpers: helper.ForType(o.typ, s.helpers())}
	env.Maps = make([]uint64, len(o.prog.Maps))
	env.MapValues = make([]uint64, len(o.prog.Maps))
	for i := range o.prog.Maps {
		env.Maps[i] = uint64(i + 1)
		if m := o.maps[i].m; m.Type() == maps.Array {
			env.MapValues[i] = m.Elem(make([]byte, 4), 0)
		}
	}
	return r, env
}

// exec runs o repeat times (at least once) in env with r1 = ctx, and returns the last r0 and the
// mean duration. A program stopped at run time is reported and answered EFAULT.
func (s *Server) exec(o *progObj, env *helper.Env, ctx uint64, repeat uint32) (uint32, uint32, error) {
	m := interp.New()
	code, err := interp.Prepare(o.prog)
	if err != nil {
		s.logf("bpf(BPF_PROG_TEST_RUN): program %d: %v", o.objID, err)
		return 0, 0, syscall.EINVAL
	}
	if repeat == 0 {
		repeat = 1
	}
	base := env.Mem
	var ret uint64
	start := time.Now()
	for range repeat {
		env.Mem = base
		if ret, err = m.RunCode(code, env, [5]uint64{ctx}); err != nil {
			s.logf("bpf(BPF_PROG_TEST_RUN): program %d: %v", o.objID, err)
			return 0, 0, syscall.EFAULT
		}
	}
	total := time.Since(start)
	// Run statistics stay 0 as in the kernel without kernel.bpf_stats_enabled.
	return uint32(ret), uint32(total.Nanoseconds() / int64(repeat)), nil
}

// testRunRawTP is the kernel's bpf_prog_test_run_raw_tp: the program runs once on the given
// arguments; only retval comes back.
func (s *Server) testRunRawTP(c *call, o *progObj) error {
	a := c.attr
	if a.u64(trDataIn) != 0 || a.u64(trDataOut) != 0 || a.u64(trCtxOut) != 0 || a.u32(trDuration) != 0 ||
		a.u32(trRepeat) != 0 || a.u32(trBatchSize) != 0 {
		return syscall.EINVAL
	}
	n := a.u32(trCtxSizeIn)
	if n > maxFuncArgs*8 {
		return syscall.EINVAL
	}
	if a.u32(trFlags)&testRunOnCPU == 0 && a.u32(trCPU) != 0 {
		return syscall.EINVAL
	}
	if a.u32(trFlags)&testRunOnCPU != 0 && int(a.u32(trCPU)) >= possibleCPUs() {
		return syscall.ENXIO
	}
	ctx := make([]byte, maxFuncArgs*8)
	if err := readUser(c.p, a.u64(trCtxIn), ctx[:n]); err != nil {
		return err
	}
	r, env := s.newRun(c, o)
	r.cpu = a.u32(trCPU)
	env.Mem.AddBytes(ctx, false)
	ret, _, err := s.exec(o, env, memory.Addr(ctx), 1)
	if err != nil {
		return err
	}
	return a.put32(c.p, trRetval, ret)
}

// testRunSkb is the kernel's bpf_prog_test_run_skb for socket filters and tc programs: the data
// is an Ethernet frame on the loopback device; a socket filter sees it from the network header
// on, and the frame comes back with a zeroed MAC header.
func (s *Server) testRunSkb(c *call, o *progObj) error {
	a := c.attr
	if a.u32(trFlags)&^1 != 0 || a.u32(trCPU) != 0 || a.u32(trBatchSize) != 0 {
		return syscall.EINVAL
	}
	size := a.u32(trDataSizeIn)
	const headroom, tailroom = 64 + 2, 320 // NET_SKB_PAD + NET_IP_ALIGN, aligned skb_shared_info
	if size < ethHlen || size > kernelPageSize-headroom-tailroom {
		return syscall.EINVAL
	}
	data := make([]byte, size)
	if err := readUser(c.p, a.u64(trDataIn), data); err != nil {
		return err
	}
	ctx := make([]byte, skBuffSize)
	if n := a.u32(trCtxSizeIn); n != 0 {
		if n > skBuffSize {
			return syscall.EINVAL
		}
		if err := readUser(c.p, a.u64(trCtxIn), ctx[:n]); err != nil {
			return err
		}
	}
	l2 := o.typ != uint32(program.SocketFilter)
	pkt := data[ethHlen:]
	if l2 {
		pkt = data
	}
	le := binary.LittleEndian
	le.PutUint32(ctx[0:], uint32(len(pkt)))                      // len
	le.PutUint32(ctx[4:], pktType(data[:6]))                     // pkt_type
	le.PutUint32(ctx[16:], uint32(data[12])|uint32(data[13])<<8) // protocol, network order
	le.PutUint32(ctx[40:], 1)                                    // ifindex: lo
	r, env := s.newRun(c, o)
	r.pkt = pkt
	env.Mem.AddBytes(ctx, true)
	env.Mem.AddBytes(data, true)
	ret, dur, err := s.exec(o, env, uint64(uintptr(unsafe.Pointer(&ctx[0]))), a.u32(trRepeat))
	if err != nil {
		return err
	}
	if !l2 {
		clear(data[:ethHlen])
	}
	if err := testFinish(c, data, ret, dur); err != nil {
		return err
	}
	if a.u64(trCtxOut) != 0 {
		n := min(a.u32(trCtxSizeOut), skBuffSize)
		if err := writeUser(c.p, a.u64(trCtxOut), ctx[:n]); err != nil {
			return err
		}
		return a.put32(c.p, trCtxSizeOut, skBuffSize)
	}
	return nil
}

// pktType is eth_type_trans's verdict on a frame to lo (whose address is all zeros).
func pktType(dst []byte) uint32 {
	switch {
	case dst[0]&1 != 0 && string(dst) == "\xff\xff\xff\xff\xff\xff":
		return 1 // PACKET_BROADCAST
	case dst[0]&1 != 0:
		return 2 // PACKET_MULTICAST
	case string(dst) != "\x00\x00\x00\x00\x00\x00":
		return 3 // PACKET_OTHERHOST
	}
	return 0 // PACKET_HOST
}

// testFinish is the kernel's bpf_test_finish: the output data up to the caller's room (ENOSPC
// when cut), its full size, retval and duration.
func testFinish(c *call, data []byte, retval, duration uint32) error {
	a := c.attr
	size := uint32(len(data))
	cp, cut := size, false
	if out := a.u32(trDataSizeOut); out != 0 && cp > out {
		cp, cut = out, true
	}
	if a.u64(trDataOut) != 0 {
		if err := writeUser(c.p, a.u64(trDataOut), data[:cp]); err != nil {
			return err
		}
	}
	for _, f := range [][2]uint32{{trDataSizeOut, size}, {trRetval, retval}, {trDuration, duration}} {
		if err := a.put32(c.p, int(f[0]), f[1]); err != nil {
			return err
		}
	}
	if cut {
		return syscall.ENOSPC
	}
	return nil
}
