package server

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/maps"
)

// run is one program run by the server (BPF_PROG_TEST_RUN): the state its Go helpers use, in
// helper.Env.Data.
type run struct {
	s    *Server
	p    Process // the caller, whose process a test run's "current" task is
	maps []*mapObj
	cpu  uint32
	pkt  []byte // the packet of legacy packet loads (socket filters)
	// reserved maps ring buffer records reserved and not yet submitted to their ring.
	reserved map[uint64]*maps.Map
}

// Packet implements interp.PacketSource.
func (r *run) Packet() []byte { return r.pkt }

// runOf returns the run of env, or nil.
func runOf(env *helper.Env) *run {
	r, _ := env.Data.(*run)
	return r
}

// mapArg returns the map a program passed as a helper argument (the handle its lddw yielded).
func (r *run) mapArg(h uint64) *mapObj {
	if h == 0 || h > uint64(len(r.maps)) {
		return nil
	}
	return r.maps[h-1]
}

// Helper return values for failures: the kernel's negative errnos.
func negErrno(e syscall.Errno) uint64 { return uint64(-int64(e)) }

// helpers returns the Go implementations of the helpers that server runs offer.
func (s *Server) helpers() map[helper.ID]helper.Func {
	return map[helper.ID]helper.Func{
		1:   helperMapLookup,
		2:   helperMapUpdate,
		3:   helperMapDelete,
		4:   helperProbeRead,   // bpf_probe_read
		5:   helperKtimeNs,     // bpf_ktime_get_ns
		7:   helperPrandom,     // bpf_get_prandom_u32
		8:   helperCPU,         // bpf_get_smp_processor_id
		14:  helperPidTgid,     // bpf_get_current_pid_tgid
		15:  helperUIDGID,      // bpf_get_current_uid_gid
		16:  helperComm,        // bpf_get_current_comm
		25:  helperPerfOutput,  // bpf_perf_event_output
		112: helperProbeRead,   // bpf_probe_read_user
		113: helperProbeKernel, // bpf_probe_read_kernel
		114: helperProbeStr,    // bpf_probe_read_user_str
		115: helperProbeKernel, // bpf_probe_read_kernel_str
		125: helperKtimeNs,     // bpf_ktime_get_boot_ns
		130: helperRingOutput,  // bpf_ringbuf_output
		131: helperRingReserve, // bpf_ringbuf_reserve
		132: helperRingSubmit,  // bpf_ringbuf_submit
		133: helperRingDiscard, // bpf_ringbuf_discard
		160: helperKtimeNs,     // bpf_ktime_get_coarse_ns
	}
}

// mem returns the bytes at a program pointer, which the verifier proved readable (or writable)
// for size bytes, or nil when the run's regions do not hold them.
func mem(env *helper.Env, addr, size uint64, write bool) []byte {
	b, ok := env.Mem.Bytes(addr, size, write)
	if !ok {
		return nil
	}
	return b
}

func helperMapLookup(env *helper.Env, a *[5]uint64) (uint64, error) {
	r := runOf(env)
	m := r.mapArg(a[0])
	if m == nil {
		return 0, nil
	}
	key := mem(env, a[1], uint64(m.m.KeySize()), false)
	if key == nil {
		return 0, nil
	}
	addr := m.m.Elem(key, r.cpu)
	if addr != 0 {
		// The program may reach the value through checked accesses: make it part of the run.
		env.Mem.Add(addr, uint64(m.m.ValueSize()), true)
	}
	return addr, nil
}

func helperMapUpdate(env *helper.Env, a *[5]uint64) (uint64, error) {
	r := runOf(env)
	m := r.mapArg(a[0])
	if m == nil {
		return negErrno(syscall.EINVAL), nil
	}
	key := mem(env, a[1], uint64(m.m.KeySize()), false)
	value := mem(env, a[2], uint64(m.m.ValueSize()), false)
	if key == nil || value == nil {
		return negErrno(syscall.EFAULT), nil
	}
	return errRet(m.m.UpdateElem(key, value, a[3], r.cpu)), nil
}

func helperMapDelete(env *helper.Env, a *[5]uint64) (uint64, error) {
	m := runOf(env).mapArg(a[0])
	if m == nil {
		return negErrno(syscall.EINVAL), nil
	}
	key := mem(env, a[1], uint64(m.m.KeySize()), false)
	if key == nil {
		return negErrno(syscall.EFAULT), nil
	}
	return errRet(m.m.DeleteElem(key)), nil
}

// errRet turns an error into a helper's negative errno (0 for nil).
func errRet(err error) uint64 {
	if err == nil {
		return 0
	}
	return negErrno(errnoOrEINVAL(err).(syscall.Errno))
}

func helperKtimeNs(*helper.Env, *[5]uint64) (uint64, error) { return bootTimeNs(), nil }

func helperPrandom(*helper.Env, *[5]uint64) (uint64, error) {
	var b [4]byte
	rand.Read(b[:])
	return uint64(binary.LittleEndian.Uint32(b[:])), nil
}

func helperCPU(env *helper.Env, _ *[5]uint64) (uint64, error) { return uint64(runOf(env).cpu), nil }

func helperPidTgid(env *helper.Env, _ *[5]uint64) (uint64, error) {
	tid := runOf(env).p.PID()
	return uint64(tgidOf(tid))<<32 | uint64(tid), nil
}

// tgidOf returns the process of thread tid.
func tgidOf(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return tid
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return tid
}

// helperUIDGID: the caller is root as far as its tools know.
func helperUIDGID(*helper.Env, *[5]uint64) (uint64, error) { return 0, nil }

func helperComm(env *helper.Env, a *[5]uint64) (uint64, error) {
	buf := mem(env, a[0], a[1], true)
	if buf == nil {
		return negErrno(syscall.EFAULT), nil
	}
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(runOf(env).p.PID()) + "/comm")
	clear(buf)
	if len(buf) > 0 {
		copy(buf[:len(buf)-1], strings.TrimSuffix(string(comm), "\n"))
	}
	return 0, nil
}

// helperProbeRead reads the caller's (the current task's) memory; a fault zeroes the buffer and
// returns -EFAULT, as the kernel's.
func helperProbeRead(env *helper.Env, a *[5]uint64) (uint64, error) {
	dst := mem(env, a[0], a[1], true)
	if dst == nil {
		return negErrno(syscall.EFAULT), nil
	}
	if err := runOf(env).p.ReadMem(a[2], dst); err != nil {
		clear(dst)
		return negErrno(syscall.EFAULT), nil
	}
	return 0, nil
}

// helperProbeStr is bpf_probe_read_user_str: the string with its NUL, cut to the buffer.
func helperProbeStr(env *helper.Env, a *[5]uint64) (uint64, error) {
	dst := mem(env, a[0], a[1], true)
	if dst == nil || len(dst) == 0 {
		return negErrno(syscall.EFAULT), nil
	}
	s, err := runOf(env).p.ReadString(a[2], len(dst)-1)
	if err == syscall.ENAMETOOLONG {
		b := make([]byte, len(dst)-1)
		if runOf(env).p.ReadMem(a[2], b) == nil {
			s, err = string(b), nil
		}
	}
	if err != nil {
		clear(dst)
		return negErrno(syscall.EFAULT), nil
	}
	copy(dst, s)
	dst[len(s)] = 0
	return uint64(len(s) + 1), nil
}

// helperProbeKernel: there is no kernel memory to read here.
func helperProbeKernel(env *helper.Env, a *[5]uint64) (uint64, error) {
	if dst := mem(env, a[0], a[1], true); dst != nil {
		clear(dst)
	}
	return negErrno(syscall.EFAULT), nil
}

// helperPerfOutput is bpf_perf_event_output(ctx, map, flags, data, size): a sample record in the
// ring of the event the array holds at the flags' index. Runs in the server are the kernel's
// (test runs), so the records say so.
func helperPerfOutput(env *helper.Env, a *[5]uint64) (uint64, error) {
	r := runOf(env)
	m := r.mapArg(a[1])
	data := mem(env, a[3], a[4], false)
	if m == nil || data == nil {
		return negErrno(syscall.EINVAL), nil
	}
	return errRet(m.m.PerfEventOutput(a[2], r.cpu, data, maps.PerfMiscKernel, r.s.perfRing)), nil
}

func helperRingOutput(env *helper.Env, a *[5]uint64) (uint64, error) {
	m := runOf(env).mapArg(a[0])
	data := mem(env, a[1], a[2], false)
	if m == nil || m.m.Type() != maps.RingBuf || data == nil {
		return negErrno(syscall.EINVAL), nil
	}
	return errRet(m.m.Output(data, a[3])), nil
}

func helperRingReserve(env *helper.Env, a *[5]uint64) (uint64, error) {
	m := runOf(env).mapArg(a[0])
	if m == nil || m.m.Type() != maps.RingBuf {
		return 0, nil
	}
	addr := m.m.Reserve(a[1], a[2])
	if addr != 0 {
		env.Mem.Add(addr, a[1], true)
		r := runOf(env)
		if r.reserved == nil {
			r.reserved = map[uint64]*maps.Map{}
		}
		r.reserved[addr] = m.m
	}
	return addr, nil
}

// ringOf takes the ring buffer a reserved record belongs to off the run's reservations.
func ringOf(env *helper.Env, addr uint64) *maps.Map {
	r := runOf(env)
	m := r.reserved[addr]
	delete(r.reserved, addr)
	return m
}

func helperRingSubmit(env *helper.Env, a *[5]uint64) (uint64, error) {
	if m := ringOf(env, a[0]); m != nil {
		m.Submit(a[0], a[1])
	}
	return 0, nil
}

func helperRingDiscard(env *helper.Env, a *[5]uint64) (uint64, error) {
	if m := ringOf(env, a[0]); m != nil {
		m.Discard(a[0], a[1])
	}
	return 0, nil
}
