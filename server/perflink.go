package server

import "fmt"

// linkObj is a BPF link: for now a perf link (LINK_CREATE with BPF_PERF_EVENT), which keeps a
// program attached to a uprobe event until its last fd is closed.
type linkObj struct {
	srv   *Server
	objID uint32
	prog  *progObj
	event *uprobeObj
}

func (o *linkObj) kind() Kind { return KindLink }
func (o *linkObj) id() uint32 { return o.objID }

// close detaches the program when the server forgets the link (its last fd gone); what the link
// held is released afterwards (releaseLater).
func (o *linkObj) close() { o.srv.unlink(o, o.srv.releaseLater) }

// fdinfo is bpf_link_show_fdinfo's.
func (o *linkObj) fdinfo() string {
	return fmt.Sprintf("link_type:\tperf_event\nlink_id:\t%d\nprog_tag:\t%x\nprog_id:\t%d\n", o.objID, o.prog.tag, o.prog.objID)
}

// LINK_CREATE's perf_event.bpf_cookie.
const lcPerfCookie = 16

// perfLinkCreate attaches prog to the uprobe event ev with a new link (bpf_perf_link_attach).
// The caller rings the agents once the server is unlocked.
func (s *Server) perfLinkCreate(c *call, prog *progObj, ev *uprobeObj) (Result, error) {
	l := &linkObj{srv: s, prog: prog, event: ev}
	if err := s.attachUprobe(ev, prog, c.attr.u64(lcPerfCookie), l); err != nil {
		return Result{}, err
	}
	s.hold(ev)
	if _, err := s.objs.alloc(KindLink, func(id uint32) object { l.objID = id; return l }); err != nil {
		s.unlink(l, s.release)
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
