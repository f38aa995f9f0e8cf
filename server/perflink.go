package server

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"
)

// linkObj is a BPF link: for now a perf link (LINK_CREATE with BPF_PERF_EVENT), which keeps a
// program attached to a uprobe event until its last fd is closed. Its file holds a description
// of it (perfLinkRecord), from which another shim of the user reopens it for bpftool's listing
// (a remote link: event is nil).
type linkObj struct {
	srv   *Server
	objID uint32
	rec   perfLinkRecord
	home  *os.File
	prog  *progObj   // nil for a remote link
	event *uprobeObj // nil for a remote link, and once unlinked
}

// perfLinkRecord describes a perf link in its file.
type perfLinkRecord struct {
	Prog   uint32  `json:"prog"`
	Tag    [8]byte `json:"tag"`
	Ret    bool    `json:"ret"`
	Path   string  `json:"path"`
	Offset uint64  `json:"offset"`
	Cookie uint64  `json:"cookie"`
	RefCtr uint64  `json:"ref_ctr,omitempty"` // the USDT semaphore's file offset
}

func (o *linkObj) kind() Kind  { return KindLink }
func (o *linkObj) id() uint32  { return o.objID }
func (o *linkObj) homeFD() int { return int(o.home.Fd()) }

// close detaches the program when the server forgets the link (its last fd gone); what the link
// held is released afterwards (releaseLater).
func (o *linkObj) close() {
	o.srv.unlink(o, o.srv.releaseLater)
	o.home.Close()
}

// fdinfo is bpf_link_show_fdinfo's.
func (o *linkObj) fdinfo() string {
	return fmt.Sprintf("link_type:\tperf_event\nlink_id:\t%d\nprog_tag:\t%x\nprog_id:\t%d\n", o.objID, o.rec.Tag, o.rec.Prog)
}

// LINK_CREATE's perf_event.bpf_cookie.
const lcPerfCookie = 16

// perfLinkCreate attaches prog to the uprobe event ev with a new link (bpf_perf_link_attach).
// The caller rings the agents once the server is unlocked.
func (s *Server) perfLinkCreate(c *call, prog *progObj, ev *uprobeObj) (Result, error) {
	home, err := s.objs.state.objectFile()
	if err != nil {
		return Result{}, err
	}
	l := &linkObj{srv: s, prog: prog, event: ev, home: home, rec: perfLinkRecord{Prog: prog.objID, Tag: prog.tag,
		Ret: ev.ret, Path: ev.point.Path, Offset: ev.point.Offset, Cookie: c.attr.u64(lcPerfCookie), RefCtr: ev.refCtr}}
	b, _ := json.Marshal(&l.rec)
	if _, err := home.Write(b); err != nil {
		home.Close()
		return Result{}, fmt.Errorf("link file: %w", err)
	}
	if err := s.attachUprobe(ev, prog, l.rec.Cookie, l); err != nil {
		home.Close()
		return Result{}, err
	}
	s.hold(ev)
	if _, err := s.objs.alloc(KindLink, func(id uint32) object { l.objID = id; return l }); err != nil {
		s.unlink(l, s.release)
		home.Close()
		return Result{}, err
	}
	if err := s.publish(l); err != nil { // forgets l on failure, which frees it
		return Result{}, err
	}
	return s.handOutNew(l)
}

// unlink ends a link: its program is detached from the event, and release gets what the link
// held.
func (s *Server) unlink(l *linkObj, release func(object)) {
	if l.event == nil {
		return
	}
	if l.event.link == l {
		s.detach(l.event, release)
	}
	ev := l.event
	l.event = nil
	release(ev)
}

// reopenLink brings back link id of another shim from its file at path, to be listed and shown.
func (s *Server) reopenLink(id uint32, path string) (object, error) {
	home, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, errnoOf(err)
	}
	st, err := home.Stat()
	if err != nil {
		home.Close()
		return nil, errnoOf(err)
	}
	b := make([]byte, st.Size())
	if _, err := home.ReadAt(b, 0); err != nil {
		home.Close()
		return nil, errnoOf(err)
	}
	l := &linkObj{srv: s, objID: id, home: home}
	if err := json.Unmarshal(b, &l.rec); err != nil {
		home.Close()
		return nil, fmt.Errorf("link %s: %w", path, err)
	}
	s.objs.ids[KindLink].reserve(l)
	if err := s.objs.register(l); err != nil {
		delete(s.objs.ids[KindLink].objs, id)
		home.Close()
		return nil, err
	}
	return l, nil
}

// Link types and perf event kinds of struct bpf_link_info.
const (
	linkTypePerfEvent   = 7 // BPF_LINK_TYPE_PERF_EVENT
	perfEventUprobe     = 1 // BPF_PERF_EVENT_UPROBE
	perfEventUretprobe  = 2 // BPF_PERF_EVENT_URETPROBE
	linkInfoPerfFileLen = 24
)

// linkInfo is struct bpf_link_info with its perf_event.uprobe member (Linux 6.18).
type linkInfo struct {
	Type, ID, ProgID uint32
	_                uint32
	PerfType         uint32
	_                uint32
	FileName         uint64
	NameLen          uint32
	Offset           uint32
	Cookie           uint64
	RefCtrOffset     uint64
	_                [48]byte
}

// linkGetInfo is bpf_link_get_info_by_fd for a perf link on a uprobe: the file's path is copied
// when the caller gives room for it (ENOSPC, with what fits, when too little).
func (s *Server) linkGetInfo(c *call, o *linkObj, infoLen uint32, uinfo uint64) error {
	var info linkInfo
	n, err := readInfo(c.p, uinfo, infoLen, bytesOf(&info))
	if err != nil {
		return err
	}
	ubuf, ulen := info.FileName, info.NameLen
	if (ubuf == 0) != (ulen == 0) && n >= linkInfoPerfFileLen+12 {
		return syscall.EINVAL
	}
	info.Type, info.ID, info.ProgID = linkTypePerfEvent, o.objID, o.rec.Prog
	info.PerfType = perfEventUprobe
	if o.rec.Ret {
		info.PerfType = perfEventUretprobe
	}
	info.NameLen, info.Offset, info.Cookie, info.RefCtrOffset = uint32(len(o.rec.Path)+1), uint32(o.rec.Offset), o.rec.Cookie, o.rec.RefCtr
	var copyErr error
	if ubuf != 0 && n >= linkInfoPerfFileLen+12 {
		name := append([]byte(o.rec.Path), 0)
		if int(ulen) < len(name) {
			name = name[:ulen]
			name[ulen-1] = 0
			copyErr = syscall.ENOSPC
		}
		if err := writeUser(c.p, ubuf, name); err != nil {
			return err
		}
		info.FileName = ubuf
	}
	if err := writeUser(c.p, uinfo, bytesOf(&info)[:n]); err != nil {
		return err
	}
	if err := c.attr.put32(c.p, infoInfoLen, n); err != nil {
		return err
	}
	return copyErr
}
