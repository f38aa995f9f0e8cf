package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/server/attach"
)

// uprobeObj is a uprobe or uretprobe perf event (perf_event_open of the uprobe PMU): a probe
// point in a file, and the program attached to it by PERF_EVENT_IOC_SET_BPF or by a link. As in
// the kernel, the program runs from the moment it is attached until the event (or the link) is
// closed; PERF_EVENT_IOC_ENABLE and _DISABLE do not change that (docs/probes.md).
type uprobeObj struct {
	srv   *Server
	objID uint32
	point *attach.Point
	ret   bool
	// pid limits the probe to one process (perf_event_open's pid); 0 means every traced process.
	pid int
	// refCtr is the file offset of the probe's USDT semaphore (config bits 32-63), 0 when none.
	refCtr uint64

	prog     *progObj // the attached program, nil when none
	cookie   uint64
	attachID uint64   // the attachment in the table, 0 when none
	link     *linkObj // the link that attached prog, nil for SET_BPF
}

func (o *uprobeObj) kind() Kind     { return KindPerfEvent }
func (o *uprobeObj) id() uint32     { return o.objID }
func (o *uprobeObj) fdinfo() string { return "" }

// close detaches the event's program when the server forgets it (its last fd and link gone).
// It runs while the server frees objects: the program is released afterwards (releaseLater).
func (o *uprobeObj) close() { o.srv.detach(o, o.srv.releaseLater) }

// Fields of struct perf_event_attr that a uprobe uses.
const (
	peaConfig  = 8
	peaConfig1 = 56 // uprobe_path
	peaConfig2 = 64 // probe_offset
)

// isUprobe reports whether perf event type typ is the uprobe PMU, and which config bit asks for
// a uretprobe.
func isUprobe(typ uint32) (retBit uint, ok bool) {
	t, bit, err := attach.UprobePMU()
	return bit, err == nil && t == typ
}

// uprobeOpen serves perf_event_open of the uprobe PMU: attr is the caller's perf_event_attr
// (at least perfAttrSize bytes). The probe point is resolved and checked now, so a point that
// cannot be patched is refused here with EINVAL and one line on the log.
func (s *Server) uprobeOpen(p Process, attr []byte, retBit uint, pid, cpu, groupFD int32, flags uint64) (Result, error) {
	le := binary.LittleEndian
	config := le.Uint64(attr[peaConfig:])
	if pid == -1 && cpu == -1 || cpu < -1 || int(cpu) >= possibleCPUs() || groupFD != -1 {
		return Result{}, syscall.EINVAL
	}
	path, err := p.ReadString(le.Uint64(attr[peaConfig1:]), unix.PathMax-1)
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG):
		return Result{}, syscall.E2BIG // strndup_user's EINVAL, as perf_uprobe_init answers it
	case err != nil:
		return Result{}, err
	case path == "":
		return Result{}, syscall.ENOENT
	}
	only, err := s.probeTarget(p, pid)
	if err != nil {
		return Result{}, err
	}
	pt, err := attach.Resolve(callerPath(p, path), le.Uint64(attr[peaConfig2:]))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			if errno, ok := pe.Err.(syscall.Errno); ok {
				return Result{}, errno
			}
		}
		s.logf("perf_event_open: uprobe: %v", strings.ReplaceAll(err.Error(), callerPath(p, path), path))
		return Result{}, syscall.EINVAL
	}
	pt.Path = path
	if pt.Major == 0 && pt.Minor == 0 && pt.Ino == 0 {
		return Result{}, syscall.EINVAL
	}
	refCtr := config >> 32
	if refCtr != 0 {
		// uprobe_register's check; the counter is a u16 the agent finds in a writable mapping
		if st, err := os.Stat(callerPath(p, path)); err != nil || refCtr > uint64(st.Size()) {
			return Result{}, syscall.EINVAL
		}
	}
	o := &uprobeObj{srv: s, point: pt, ret: config&(1<<retBit) != 0, pid: only, refCtr: refCtr}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.objs.alloc(KindPerfEvent, func(id uint32) object { o.objID = id; return o }); err != nil {
		return Result{}, err
	}
	if err := s.publish(o); err != nil {
		return Result{}, err
	}
	s.writeRecord(o)
	res, err := s.handOutNew(o)
	res.NoCloexec = flags&perfFlagFDCloexec == 0
	return res, err
}

// callerPath returns a path that names, from the server, the file the caller names with path:
// through the caller's root and working directory (it may run in another mount namespace).
func callerPath(p Process, path string) string {
	proc := "/proc/" + strconv.Itoa(p.PID())
	if strings.HasPrefix(path, "/") {
		if root, err := os.Readlink(proc + "/root"); err == nil && root == "/" {
			return path
		}
		return proc + "/root" + path
	}
	return proc + "/cwd/" + path
}

// probeTarget returns the process a uprobe's perf_event_open pid names (0 for -1: every traced
// process). A process without the agent is accepted, as the kernel would, with a line saying
// that its probes will not fire, unless the agent comes with its next program (a tool's fork
// that becomes its -c workload: bpftrace's USDT probes name it).
func (s *Server) probeTarget(p Process, pid int32) (int, error) {
	if pid == -1 {
		return 0, nil
	}
	if pid < -1 {
		return 0, syscall.EINVAL
	}
	tid := int(pid)
	if tid == 0 {
		tid = p.PID()
	}
	if unix.Kill(tid, 0) == syscall.ESRCH {
		return 0, syscall.ESRCH
	}
	tgid := tgidOf(tid)
	if !attach.Traced(tgid) && !attach.Preloads(tgid) {
		s.logf("perf_event_open: uprobe for process %d: it is not traced, its probes will not fire (start it with ebpfu-shim run)", tgid)
	}
	return tgid, nil
}

// uprobeIoctl serves an ioctl on a uprobe event; ok is false when the file is none. It rings
// the agents after unlocking, so traced processes whose calls the same supervisor serves can
// answer.
func (s *Server) uprobeIoctl(p Process, id FileID, req, arg uint64) (val int64, ok bool, err error) {
	defer s.ringProbes()
	s.mu.Lock()
	defer s.mu.Unlock()
	o, isUprobe := s.objs.files[id].(*uprobeObj)
	if !isUprobe {
		return 0, false, nil
	}
	switch uint32(req) {
	case perfIocEnable, perfIocDisable, perfIocReset, perfIocRefresh:
		// A uprobe's programs run whether the event counts or not, as in the kernel.
	case perfIocID:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(o.objID))
		err = writeUser(p, arg, b[:])
	case perfIocSetBPF:
		var prog *progObj
		if prog, err = s.progOfProcessFD(p, int32(arg)); err == nil {
			err = s.attachUprobe(o, prog, 0, nil)
		}
	default:
		err = syscall.ENOTTY
	}
	return 0, true, err
}

// progOfProcessFD returns the program behind fd of p: EBADF when the fd is not open, EINVAL when
// it is not a program (bpf_prog_get).
func (s *Server) progOfProcessFD(p Process, fd int32) (*progObj, error) {
	obj, err := s.objs.lookupFD(p, fd)
	if err != nil {
		return nil, err
	}
	o, ok := obj.(*progObj)
	if !ok {
		return nil, syscall.EINVAL
	}
	return o, nil
}

// attachUprobe attaches prog to the uprobe event o, as perf_event_set_bpf_prog does: a kprobe
// program, one per event. The attachment is written to the table; the caller rings the agents
// (ringProbes) once it has unlocked the server.
func (s *Server) attachUprobe(o *uprobeObj, prog *progObj, cookie uint64, link *linkObj) error {
	if o.prog != nil {
		return syscall.EEXIST
	}
	if program.Type(prog.typ) != program.Kprobe {
		return syscall.EINVAL
	}
	switch prog.expected {
	case attachKprobeMulti, attachUprobeMulti, attachKprobeSession:
		return syscall.EINVAL
	}
	if missing := attach.Unsupported(prog.prog.Helpers); len(missing) > 0 {
		names := make([]string, len(missing))
		for i, h := range missing {
			names[i] = helperName(h)
		}
		s.logf("program %s calls helpers that programs in traced processes cannot: %s", progLabel(prog), strings.Join(names, ", "))
		return syscall.EINVAL
	}
	id, err := s.probes.attach(s, o, prog, cookie)
	if err != nil {
		s.logf("attaching %s to uprobe %s: %v", progLabel(prog), o.label(), err)
		return errnoOrEINVAL(err)
	}
	s.hold(prog)
	o.prog, o.cookie, o.attachID, o.link = prog, cookie, id, link
	s.writeRecord(o)
	return nil
}

// detachUprobe removes the attachment of o and releases its program.
func (s *Server) detachUprobe(o *uprobeObj) { s.detach(o, s.release) }

// detach removes the attachment of o and gives its program to release.
func (s *Server) detach(o *uprobeObj, release func(object)) {
	if o.prog == nil {
		return
	}
	if o.attachID != 0 {
		s.probes.detach(o.attachID)
	}
	prog := o.prog
	o.prog, o.attachID, o.link = nil, 0, nil
	s.writeRecord(o)
	release(prog)
}

// releaseLater releases obj once the server is done freeing objects (settleProbes): a closer
// runs under the user's live lock, which releasing (maybeFree) takes again.
func (s *Server) releaseLater(obj object) {
	s.probes.mu.Lock()
	defer s.probes.mu.Unlock()
	s.probes.released = append(s.probes.released, obj)
}

// settleProbes releases what closers of uprobe events and links left to release.
func (s *Server) settleProbes() {
	for {
		s.probes.mu.Lock()
		objs := s.probes.released
		s.probes.released = nil
		s.probes.mu.Unlock()
		if len(objs) == 0 {
			return
		}
		s.mu.Lock()
		for _, obj := range objs {
			s.release(obj)
		}
		s.mu.Unlock()
	}
}

// label names the probe in reports.
func (o *uprobeObj) label() string {
	kind := "uprobe"
	if o.ret {
		kind = "uretprobe"
	}
	where := fmt.Sprintf("%#x", o.point.Offset)
	if o.point.Symbol != "" {
		where = o.point.Symbol
		if !o.point.FuncEntry {
			where = fmt.Sprintf("%s+%#x", where, o.point.Offset)
		}
	}
	return kind + ":" + o.point.Path + ":" + where
}

// progLabel names a program in reports.
func progLabel(p *progObj) string {
	if p.name != "" {
		return fmt.Sprintf("%q (id %d)", p.name, p.objID)
	}
	return fmt.Sprintf("id %d", p.objID)
}

// helperName returns a helper's kernel name for reports.
func helperName(id int32) string {
	if n := helper.Name(helper.ID(id)); n != "" {
		return n
	}
	return fmt.Sprintf("helper %d", id)
}
