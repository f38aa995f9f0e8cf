package attach

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/maps"
)

// TestCollect: attachments whose code object's holder no longer holds it (a server killed before
// it detached) are removed by the next server's Collect, and the traced process's code is then
// restored; objects still held stay.
func TestCollect(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	orig := textBytes(t, w.pid, work, "probed", 16)
	l, m := h.countProg()
	id := h.attach(work, "probed", l, false)
	if n := h.tab.Collect(); n != 0 {
		t.Fatalf("Collect removed %d attachments of a live holder", n)
	}
	w.do("call 10 0 0")
	if n := m.sum(t, 0); n != 10 {
		t.Fatalf("count = %d, want 10", n)
	}
	// The code's holder lets it go: its fd now names nothing.
	code := h.tab.findObject(ObjectCode, l.code)
	fd := int(h.tab.load32(code + objFD))
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	for i, f := range h.fds {
		if f == fd {
			h.fds[i] = -1
		}
	}
	if n := h.tab.Collect(); n != 1 {
		t.Fatalf("Collect removed %d attachments, want 1", n)
	}
	if _, ok := h.tab.Status(id); ok {
		t.Fatal("the attachment is still in the table")
	}
	if h.tab.findObject(ObjectCode, l.code) >= 0 {
		t.Fatal("the code object is still in the table")
	}
	if h.tab.findObject(ObjectMap, l.maps[0]) < 0 {
		t.Fatal("the map, still held, was removed")
	}
	if err := h.tab.Ring(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if now := textBytes(t, w.pid, work, "probed", 16); string(now) != string(orig) {
		t.Fatalf("code after collection % x, want % x", now, orig)
	}
	w.do("call 10 0 0")
	if n := m.sum(t, 0); n != 10 {
		t.Fatalf("count = %d after collection, want 10", n)
	}
}

// TestDeleteHeld: an object is deleted only by the holder the table names for it.
func TestDeleteHeld(t *testing.T) {
	h := newHarness(t)
	m := h.newMap(maps.Array, 4, 8, 1)
	e := h.tab.findObject(ObjectMap, m.id)
	o := Object{ID: m.id, Kind: ObjectMap, PID: int(h.tab.load32(e + objPID)), FD: int(h.tab.load32(e + objFD))}
	other := o
	other.FD++
	h.tab.DeleteHeld(other)
	if h.tab.findObject(ObjectMap, m.id) < 0 {
		t.Fatal("deleted by another holder")
	}
	h.tab.DeleteHeld(o)
	if h.tab.findObject(ObjectMap, m.id) >= 0 {
		t.Fatal("not deleted by its holder")
	}
}

// TestRingStopped: a stopped process is not waited for; it applies the change when it
// continues.
func TestRingStopped(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	orig := textBytes(t, w.pid, work, "probed", 16)
	l, m := h.countProg()
	id := h.attach(work, "probed", l, false)
	if err := unix.Kill(w.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for !stopped(w.pid) {
		time.Sleep(time.Millisecond)
	}
	if err := h.tab.Detach(id); err != nil {
		t.Fatal(err)
	}
	if err := h.tab.Ring(30 * time.Second); err != nil {
		t.Fatalf("Ring with a stopped process: %v", err)
	}
	if err := unix.Kill(w.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	w.do("call 10 0 0")
	if n := m.sum(t, 0); n != 0 {
		t.Fatalf("count = %d after the detach, want 0", n)
	}
	if now := textBytes(t, w.pid, work, "probed", 16); string(now) != string(orig) {
		t.Fatalf("code after detach % x, want % x", now, orig)
	}
}
