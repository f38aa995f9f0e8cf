package server

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

// fakeProc is an in-memory caller: a few memory regions and an fd table, so the server's
// commands can be driven and inspected without a supervised process.
type fakeProc struct {
	t       testing.TB
	regions []*region
	fds     map[int]*os.File
	next    uint64
}

type region struct {
	addr uint64
	b    []byte
	ro   bool
}

func newFakeProc(t testing.TB) *fakeProc {
	p := &fakeProc{t: t, fds: map[int]*os.File{}, next: 0x10000}
	t.Cleanup(func() {
		for _, f := range p.fds {
			f.Close()
		}
	})
	return p
}

// alloc places b in the caller's memory and returns its address. Regions are a page apart so
// that reads past the end fault.
func (p *fakeProc) alloc(b []byte) uint64 {
	addr := p.next
	p.regions = append(p.regions, &region{addr: addr, b: b})
	p.next += (uint64(len(b))/4096 + 2) * 4096
	return addr
}

// allocRO places read-only bytes.
func (p *fakeProc) allocRO(b []byte) uint64 {
	addr := p.alloc(b)
	p.regions[len(p.regions)-1].ro = true
	return addr
}

func (p *fakeProc) find(addr uint64, n int) *region {
	for _, r := range p.regions {
		if addr >= r.addr && addr+uint64(n) <= r.addr+uint64(len(r.b)) && addr+uint64(n) >= addr {
			return r
		}
	}
	return nil
}

func (p *fakeProc) PID() int { return os.Getpid() }

func (p *fakeProc) ReadMem(addr uint64, b []byte) error {
	r := p.find(addr, len(b))
	if r == nil {
		return syscall.EFAULT
	}
	copy(b, r.b[addr-r.addr:])
	return nil
}

func (p *fakeProc) WriteMem(addr uint64, b []byte) error {
	r := p.find(addr, len(b))
	if r == nil || r.ro {
		return syscall.EFAULT
	}
	copy(r.b[addr-r.addr:], b)
	return nil
}

func (p *fakeProc) ReadString(addr uint64, max int) (string, error) {
	for _, r := range p.regions {
		if addr >= r.addr && addr < r.addr+uint64(len(r.b)) {
			s := r.b[addr-r.addr:]
			if i := bytes.IndexByte(s, 0); i >= 0 && i <= max {
				return string(s[:i]), nil
			}
			if len(s) > max {
				return "", syscall.ENAMETOOLONG
			}
			return "", syscall.EFAULT
		}
	}
	return "", syscall.EFAULT
}

func (p *fakeProc) FileOf(fd int) (FileID, error) {
	f, ok := p.fds[fd]
	if !ok {
		return FileID{}, syscall.EBADF
	}
	return fileIDOf(f)
}

// install gives the fake caller f as its lowest free fd (from 3), as ADDFD would.
func (p *fakeProc) install(f *os.File) int {
	for fd := 3; ; fd++ {
		if _, used := p.fds[fd]; !used {
			p.fds[fd] = f
			return fd
		}
	}
}

// bpf runs one command with attr bytes a (copied into the caller's memory) and returns the
// result: the new fd number when the command made one. The attr as the server left it is
// copied back into a.
func (p *fakeProc) bpf(s *Server, cmd uint32, a []byte) (int64, error) {
	addr := p.alloc(a)
	res, err := s.BPF(p, cmd, addr, uint32(len(a)))
	if err != nil {
		return -1, err
	}
	if res.File != nil {
		return int64(p.install(res.File)), nil
	}
	return res.Val, nil
}

// newTestServer returns a server whose state lives in a temporary directory.
func newTestServer(t testing.TB) *Server {
	t.Helper()
	var log bytes.Buffer
	s, err := New(Config{StateDir: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
