package server

import (
	"encoding/binary"
	"syscall"
	"testing"
	"time"
)

// closeFD closes the fake caller's fd, as the process would.
func (p *fakeProc) closeFD(fd int) {
	p.fds[fd].Close()
	delete(p.fds, fd)
}

// eventually waits for cond, which the server's close watch makes true asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s did not happen", what)
}

func TestObjectFreedWithItsLastFD(t *testing.T) {
	s := newTestServer(t)
	p := newFakeProc(t)
	raw := btfBlob(t)
	a := make([]byte, 40)
	le64(a, 0, p.alloc(raw))
	le32(a, 16, uint32(len(raw)))
	fd, err := p.bpf(s, cmdBTFLoad, a)
	if err != nil {
		t.Fatal(err)
	}
	exists := func(id uint32) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.objs.ids[KindBTF].objs[id]
		return ok
	}
	next := make([]byte, 8)
	le32(next, 0, 1)
	if _, err := p.bpf(s, cmdBTFGetNextID, next); err != nil {
		t.Fatal(err)
	}
	id := binary.LittleEndian.Uint32(next[4:])
	// A second fd for the same object keeps it alive when the first closes.
	g := make([]byte, 16)
	le32(g, 0, id)
	fd2, err := p.bpf(s, cmdBTFGetFDByID, g)
	if err != nil {
		t.Fatal(err)
	}
	p.closeFD(int(fd))
	time.Sleep(50 * time.Millisecond)
	if !exists(id) {
		t.Fatal("BTF freed while an fd still holds it")
	}
	p.closeFD(int(fd2))
	eventually(t, "freeing the BTF after its last fd", func() bool { return !exists(id) })
	if _, err := p.bpf(s, cmdBTFGetFDByID, g); err != syscall.ENOENT {
		t.Errorf("BTF_GET_FD_BY_ID of a freed BTF: %v, want ENOENT", err)
	}
}
