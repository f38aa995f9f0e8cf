package server

import (
	"encoding/json"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/program"
)

// TASK_FD_QUERY attr fields.
const (
	tfqPID         = 0
	tfqFD          = 4
	tfqFlags       = 8
	tfqBufLen      = 12
	tfqBuf         = 16
	tfqProgID      = 24
	tfqFDType      = 28
	tfqProbeOffset = 32
	tfqProbeAddr   = 40

	fdTypeUprobe    = 4 // BPF_FD_TYPE_UPROBE
	fdTypeUretprobe = 5 // BPF_FD_TYPE_URETPROBE

	maxEventRecord = 8 << 10 // a uprobe event's record is a line of JSON
)

// uprobeRecord describes a uprobe event in its file, so that any shim of the user answers
// BPF_TASK_FD_QUERY for a process that holds it (bpftool perf list walks every process's fds).
type uprobeRecord struct {
	Uprobe bool   `json:"ebpfu_uprobe"` // marks the record
	Prog   uint32 `json:"prog"`         // the attached program, 0 when none
	Ret    bool   `json:"ret"`
	Path   string `json:"path"`
	Offset uint64 `json:"offset"`
	Holder int    `json:"holder"` // the server's process, whose own open file of the event is no tool's
}

// record returns o's record.
func (o *uprobeObj) record() uprobeRecord {
	r := uprobeRecord{Uprobe: true, Ret: o.ret, Path: o.point.Path, Offset: o.point.Offset, Holder: os.Getpid()}
	if o.prog != nil {
		r.Prog = o.prog.objID
	}
	return r
}

// writeRecord puts o's record in its file; the server is locked. A failure only leaves other
// shims without the description.
func (s *Server) writeRecord(o *uprobeObj) {
	fd, err := s.objs.homeFD(o)
	if err != nil {
		return
	}
	b, _ := json.Marshal(o.record())
	b = append(b, '\n')
	if n, err := syscall.Pwrite(fd, b, 0); err == nil && n == len(b) {
		syscall.Ftruncate(fd, int64(len(b)))
	}
}

// taskFDQuery is bpf_task_fd_query for uprobe events: the program attached to the perf event
// that process pid holds as fd, the probed file (as perf_event_open named it) and offset. An
// event of another shim of the user is known by the record in its file.
func (s *Server) taskFDQuery(c *call) (Result, error) {
	a := c.attr
	if a.u32(tfqFlags) != 0 {
		return Result{}, syscall.EINVAL
	}
	pid := a.u32(tfqPID)
	proc := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	if _, err := os.Stat(proc); err != nil {
		return Result{}, syscall.ENOENT
	}
	// O_PATH: opening a FIFO or a device of the process to read it could block or act
	fd, err := unix.Open(proc+"/fd/"+strconv.FormatUint(uint64(a.u32(tfqFD)), 10), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == syscall.EACCES || err == syscall.EPERM {
			return Result{}, syscall.EPERM
		}
		return Result{}, syscall.EBADF
	}
	f := os.NewFile(uintptr(fd), "task fd")
	defer f.Close()
	id, err := fileIDOf(f)
	if err != nil {
		return Result{}, syscall.EBADF
	}
	var rec uprobeRecord
	obj := s.objs.files[id]
	if obj != nil && int(pid) == os.Getpid() {
		return Result{}, errENOTSUPP // the server's own file of one of its objects
	}
	switch o := obj.(type) {
	case *uprobeObj:
		rec = o.record()
	case *timerObj:
		if o.prog == nil {
			return Result{}, syscall.ENOENT
		}
		return Result{}, syscall.EOPNOTSUPP // perf_event programs are not described
	case *perfObj:
		return Result{}, syscall.ENOENT // a BPF output event runs no program
	case nil:
		if !s.remoteRecord(f, &rec) {
			return Result{}, errENOTSUPP
		}
	default:
		return Result{}, errENOTSUPP
	}
	if int(pid) == rec.Holder { // a server's file of the event, not a perf event of a tool
		return Result{}, errENOTSUPP
	}
	if rec.Prog == 0 {
		return Result{}, syscall.ENOENT
	}
	if p, ok := s.objs.ids[KindProg].objs[rec.Prog].(*progObj); ok && program.Type(p.typ) == program.PerfEvent {
		return Result{}, syscall.EOPNOTSUPP
	}
	typ := uint32(fdTypeUprobe)
	if rec.Ret {
		typ = fdTypeUretprobe
	}
	return Result{}, taskFDQueryCopy(c, rec.Prog, typ, rec.Path, rec.Offset, 0)
}

// remoteRecord reads the record of a uprobe event of another shim from f (an O_PATH file): a
// small regular file of the state directory's file system.
func (s *Server) remoteRecord(f *os.File, rec *uprobeRecord) bool {
	var st, dir unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 ||
		st.Size > maxEventRecord || unix.Stat(s.objs.state.dir, &dir) != nil || st.Dev != dir.Dev {
		return false
	}
	r, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return false
	}
	defer r.Close()
	b := make([]byte, st.Size)
	if n, err := r.ReadAt(b, 0); n != len(b) && err != nil {
		return false
	}
	return json.Unmarshal(b, rec) == nil && rec.Uprobe
}

// taskFDQueryCopy is the kernel's bpf_task_fd_query_copy: buf_len gets the name's length, buf
// the name cut to the caller's room with a NUL (ENOSPC when cut), then the other fields.
func taskFDQueryCopy(c *call, prog, typ uint32, name string, offset, addr uint64) error {
	a := c.attr
	in, ubuf := a.u32(tfqBufLen), a.u64(tfqBuf)
	if err := a.put32(c.p, tfqBufLen, uint32(len(name))); err != nil {
		return err
	}
	var cut error
	if in != 0 && ubuf != 0 {
		b := append([]byte(name), 0)
		if int(in) < len(b) {
			b = append(b[:in-1:in-1], 0)
			cut = syscall.ENOSPC
		}
		if err := writeUser(c.p, ubuf, b); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		off int
		v   uint32
	}{{tfqProgID, prog}, {tfqFDType, typ}} {
		if err := a.put32(c.p, f.off, f.v); err != nil {
			return err
		}
	}
	if err := a.put64(c.p, tfqProbeOffset, offset); err != nil {
		return err
	}
	if err := a.put64(c.p, tfqProbeAddr, addr); err != nil {
		return err
	}
	return cut
}
