package server

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/server/attach"
)

// ringTimeout bounds how long an attach or detach waits for traced processes to apply it.
// Stopped processes are not waited for (they apply it when they continue).
const ringTimeout = 3 * time.Second

// probes is a server's part of the probe path (docs/probes.md): the user's attachments table,
// opened on first use, and what this server recorded in it (the code of attached programs, the
// maps they use, the perf rings they may write, its attachments), each removed when its object
// goes or the server closes. Fields other than mu and what it guards change under the
// server's lock.
type probes struct {
	table   *attach.Table
	code    map[uint32]*progCode        // by program id
	objects map[objectKey]attach.Object // recorded in the table, with the fd they name
	made    map[uint64]bool             // the attachments this server made

	// mu guards what ringProbes reads without the server's lock.
	mu       sync.Mutex
	changed  bool     // the table changed since the last ring
	fresh    []uint64 // attachments made since the last ring, whose status is then reported
	released []object // left to release by closers (releaseLater)
	ringMu   sync.Mutex
	closed   bool
}

// objectKey names an object of the table.
type objectKey struct {
	kind attach.ObjectKind
	id   uint32
}

// progCode is a program's JIT output in a sealed memfd that agents map.
type progCode struct {
	file  *os.File
	entry uint32
}

// open returns the attachments table of the server's state directory, opening it on first use.
// Attachments whose server is gone (killed before it could detach them) are removed then.
func (pr *probes) open(s *Server) (*attach.Table, error) {
	if pr.table != nil {
		return pr.table, nil
	}
	if pr.closed {
		return nil, fmt.Errorf("the server is closed")
	}
	ncpu := possibleCPUs()
	t, err := attach.OpenTable(s.objs.state.dir, &attach.TableOptions{NumCPU: ncpu, Budget: jit.DefaultProbeBudget})
	if err != nil {
		return nil, err
	}
	if t.NumCPU() != ncpu {
		t.Close()
		return nil, fmt.Errorf("the attachments table is for %d CPUs, this machine has %d", t.NumCPU(), ncpu)
	}
	if t.Collect() > 0 {
		pr.mark(0)
	}
	pr.table = t
	pr.code = map[uint32]*progCode{}
	pr.objects = map[objectKey]attach.Object{}
	pr.made = map[uint64]bool{}
	return t, nil
}

// mark records that the table changed (and that attachment id, when not 0, is new).
func (pr *probes) mark(id uint64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.changed = true
	if id != 0 {
		pr.fresh = append(pr.fresh, id)
	}
}

// publish records object (kind, id), the server's file fd, in the table, once.
func (pr *probes) publish(t *attach.Table, kind attach.ObjectKind, id uint32, fd int) error {
	key := objectKey{kind, id}
	if _, ok := pr.objects[key]; ok {
		return nil
	}
	o, err := attach.ObjectOf(id, kind, fd)
	if err != nil {
		return err
	}
	if err := t.PutObject(o); err != nil {
		return err
	}
	pr.objects[key] = o
	return nil
}

// forget removes object (kind, id) from the table if this server recorded it.
func (pr *probes) forget(kind attach.ObjectKind, id uint32) {
	key := objectKey{kind, id}
	o, ok := pr.objects[key]
	if !ok {
		return
	}
	pr.table.DeleteHeld(o)
	delete(pr.objects, key)
	if kind == attach.ObjectCode {
		if c := pr.code[id]; c != nil {
			c.file.Close()
			delete(pr.code, id)
		}
	}
}

// codeOf returns the compiled code of prog, compiling it on first use.
func (pr *probes) codeOf(t *attach.Table, prog *progObj) (*progCode, error) {
	if c := pr.code[prog.objID]; c != nil {
		return c, nil
	}
	out, err := jit.Compile(prog.prog)
	if err != nil {
		return nil, fmt.Errorf("compiling: %w", err)
	}
	f, err := attach.CodeFile(out)
	if err != nil {
		return nil, err
	}
	if err := pr.publish(t, attach.ObjectCode, prog.objID, int(f.Fd())); err != nil {
		f.Close()
		return nil, err
	}
	c := &progCode{file: f, entry: uint32(out.Entry)}
	pr.code[prog.objID] = c
	prog.setJited(out.Text) // reported by program info and fdinfo
	return c, nil
}

// attach records prog on the uprobe o in the table, with its code and maps, and returns the
// attachment's id.
func (pr *probes) attach(s *Server, o *uprobeObj, prog *progObj, cookie uint64) (uint64, error) {
	t, err := pr.open(s)
	if err != nil {
		return 0, err
	}
	if len(prog.prog.Maps) > attach.MaxMaps {
		return 0, fmt.Errorf("the program uses %d maps, at most %d can be attached", len(prog.prog.Maps), attach.MaxMaps)
	}
	code, err := pr.codeOf(t, prog)
	if err != nil {
		return 0, err
	}
	ids := make([]uint32, len(prog.prog.Maps))
	for i, mi := range prog.prog.Maps {
		m, ok := s.objs.ids[KindMap].objs[mi.ID].(*mapObj)
		if !ok {
			return 0, fmt.Errorf("map %d of the program is gone", mi.ID)
		}
		if err := pr.publish(t, attach.ObjectMap, m.objID, m.m.FD()); err != nil {
			return 0, err
		}
		ids[i] = m.objID
	}
	id, err := t.Attach(&attach.Probe{Point: o.point, Return: o.ret, Cookie: cookie, ProgID: prog.objID,
		Code: prog.objID, Entry: code.entry, Maps: ids, PID: o.pid, RefCtr: o.refCtr})
	if err != nil {
		return 0, err
	}
	pr.made[id] = true
	pr.mark(id)
	return id, nil
}

// detach removes attachment id from the table.
func (pr *probes) detach(id uint64) {
	if pr.table == nil || !pr.made[id] {
		return
	}
	pr.table.Detach(id)
	delete(pr.made, id)
	pr.mark(0)
}

// publishRing records a BPF output event's ring in the table, so that programs in traced
// processes find it when a PERF_EVENT_ARRAY entry names it (its id is the event's).
func (s *Server) publishRing(o *perfObj) {
	t, err := s.probes.open(s)
	if err == nil {
		err = s.probes.publish(t, attach.ObjectRing, o.objID, o.ring.FD())
	}
	if err != nil {
		s.logf("perf event %d: programs in traced processes cannot write to it: %v", o.objID, err)
	}
}

// forgetObject removes what the table knows of obj when the server frees it.
func (s *Server) forgetObject(obj object) {
	if s.probes.table == nil {
		return
	}
	switch o := obj.(type) {
	case *mapObj:
		s.probes.forget(attach.ObjectMap, o.objID)
	case *progObj:
		s.probes.forget(attach.ObjectCode, o.objID)
	case *perfObj:
		s.probes.forget(attach.ObjectRing, o.objID)
	}
}

// ringProbes tells traced processes to apply the table when it changed, and waits until they
// did (or ringTimeout passes), as the kernel's attach and detach are in place when they
// return. It runs without the server's lock: a traced process may need the server (its agent's
// calls can be notified to the same supervisor) before it can answer.
func (s *Server) ringProbes() {
	s.settleProbes()
	pr := &s.probes
	pr.ringMu.Lock()
	defer pr.ringMu.Unlock()
	pr.mu.Lock()
	changed, fresh := pr.changed, pr.fresh
	pr.changed, pr.fresh = false, nil
	pr.mu.Unlock()
	s.mu.Lock()
	t := pr.table
	s.mu.Unlock()
	if !changed || t == nil {
		return
	}
	if err := t.Ring(ringTimeout); err != nil {
		s.logf("uprobes: %v", err)
	}
	for _, id := range fresh {
		if st, ok := t.Status(id); ok && st.Failed > 0 {
			s.logf("uprobes: process %d could not attach: %s", st.ErrPID, st.LastError)
		}
	}
}

// closeProbes removes everything this server recorded in the table, rings the traced
// processes so that their code is restored, and closes the table.
func (s *Server) closeProbes() {
	s.mu.Lock()
	pr := &s.probes
	if pr.table != nil {
		for _, obj := range s.objs.ids[KindPerfEvent].objs {
			if o, ok := obj.(*uprobeObj); ok {
				s.detachUprobe(o)
			}
		}
		for id := range pr.made {
			pr.detach(id)
		}
		for key := range pr.objects {
			pr.forget(key.kind, key.id)
		}
	}
	s.mu.Unlock()
	s.ringProbes()
	pr.ringMu.Lock()
	defer pr.ringMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr.table != nil {
		pr.table.Close()
		pr.table = nil
	}
	pr.closed = true
}

// agentMapping reports whether an mmap of the perf event o is an agent's mapping of its ring
// (agents map objects whole: the ring's whole file), which leaves the size the tool mapped as it
// is. A tool maps (1+2^n) pages, never the whole file.
func (s *Server) agentMapping(o *perfObj, length, offset uint64) bool {
	var st unix.Stat_t
	return offset == 0 && unix.Fstat(o.ring.FD(), &st) == nil && uint64(st.Size) == length
}
