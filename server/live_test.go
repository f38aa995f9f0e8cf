package server

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// Commands the tests of the user's live objects use besides those of server_test.go.
const (
	cmdMapLookup    = 1
	cmdMapUpdate    = 2
	cmdMapGetNextID = 12
)

// twoShims returns two servers on one state directory, as two shims of one user, each with a
// caller.
func twoShims(t *testing.T) (s1, s2 *Server, p1, p2 *fakeProc, dir string) {
	t.Helper()
	dir = t.TempDir()
	mk := func() *Server {
		s, err := New(Config{StateDir: dir, Log: &bytes.Buffer{}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return mk(), mk(), newFakeProc(t), newFakeProc(t), dir
}

// ids lists the ids GET_NEXT_ID walks through in s for cmd.
func ids(t *testing.T, s *Server, p *fakeProc, cmd uint32) []uint32 {
	t.Helper()
	var out []uint32
	a := make([]byte, 8)
	for {
		_, err := p.bpf(s, cmd, a)
		if err == syscall.ENOENT {
			return out
		}
		if err != nil {
			t.Fatalf("GET_NEXT_ID: %v", err)
		}
		next := binary.LittleEndian.Uint32(a[4:])
		out = append(out, next)
		le32(a, 0, next)
	}
}

func newHash(t *testing.T, s *Server, p *fakeProc) int {
	t.Helper()
	a := make([]byte, 72)
	le32(a, 0, 1) // hash
	le32(a, 4, 4)
	le32(a, 8, 8)
	le32(a, 12, 16)
	fd, err := p.bpf(s, cmdMapCreate, a)
	if err != nil {
		t.Fatalf("MAP_CREATE: %v", err)
	}
	return int(fd)
}

// loadUsing loads a socket filter that references map fd.
func loadUsing(t *testing.T, s *Server, p *fakeProc, mapFD int) int {
	t.Helper()
	insns := make([]byte, 4*8)
	insns[0], insns[1] = 0x18, 0x11 // lddw r1, map fd
	binary.LittleEndian.PutUint32(insns[4:], uint32(mapFD))
	insns[16] = 0xb7 // r0 = 0
	insns[24] = 0x95 // exit
	a := make([]byte, 128)
	le32(a, 0, 1) // socket filter
	le32(a, 4, 4)
	le64(a, 8, p.alloc(insns))
	le64(a, 16, p.alloc([]byte("GPL\x00")))
	copy(a[48:], "shared")
	fd, err := p.bpf(s, cmdProgLoad, a)
	if err != nil {
		t.Fatalf("PROG_LOAD: %v", err)
	}
	return int(fd)
}

func elem(t *testing.T, s *Server, p *fakeProc, cmd uint32, fd int, key uint32, value uint64) (uint64, error) {
	t.Helper()
	k := make([]byte, 4)
	le32(k, 0, key)
	v := make([]byte, 8)
	binary.LittleEndian.PutUint64(v, value)
	a := make([]byte, 32)
	le32(a, 0, uint32(fd))
	le64(a, 8, p.alloc(k))
	vaddr := p.alloc(v)
	le64(a, 16, vaddr)
	_, err := p.bpf(s, cmd, a)
	got := make([]byte, 8)
	p.ReadMem(vaddr, got)
	return binary.LittleEndian.Uint64(got), err
}

func byID(t *testing.T, s *Server, p *fakeProc, cmd uint32, id uint32) (int, error) {
	t.Helper()
	a := make([]byte, 16)
	le32(a, 0, id)
	fd, err := p.bpf(s, cmd, a)
	return int(fd), err
}

// TestListedAcrossShims: objects made under one shim are listed and opened by id under another,
// and live while any shim's process holds them, however their closes interleave (each shim sees
// the other's closes of the same files: counting them would free too early).
func TestListedAcrossShims(t *testing.T) {
	s1, s2, p1, p2, dir := twoShims(t)
	mfd := newHash(t, s1, p1)
	pfd := loadUsing(t, s1, p1, mfd)
	mapIDs, progIDs := ids(t, s2, p2, cmdMapGetNextID), ids(t, s2, p2, cmdProgGetNextID)
	if len(mapIDs) != 1 || len(progIDs) != 1 {
		t.Fatalf("the other shim lists maps %v and programs %v, want one of each", mapIDs, progIDs)
	}
	if got := ids(t, s1, p1, cmdMapGetNextID); !slices.Equal(got, mapIDs) {
		t.Errorf("the shims list different maps: %v and %v", got, mapIDs)
	}
	if got := ids(t, s2, p2, cmdBTFGetNextID); !slices.Equal(got, []uint32{kernelBTFID}) {
		t.Errorf("BTF ids %v, want the kernel's alone", got)
	}

	m2, err := byID(t, s2, p2, cmdMapGetFDByID, mapIDs[0])
	if err != nil {
		t.Fatalf("MAP_GET_FD_BY_ID in the other shim: %v", err)
	}
	if _, err := elem(t, s2, p2, cmdMapUpdate, m2, 7, 42); err != nil {
		t.Fatal(err)
	}
	if v, err := elem(t, s1, p1, cmdMapLookup, mfd, 7, 0); err != nil || v != 42 {
		t.Errorf("lookup in the first shim of what the other stored: %d, %v", v, err)
	}
	p2fd, err := byID(t, s2, p2, cmdProgGetFDByID, progIDs[0])
	if err != nil {
		t.Fatalf("PROG_GET_FD_BY_ID in the other shim: %v", err)
	}
	info := make([]byte, 232)
	mapBuf := make([]byte, 8)
	le32(info, 52, 2) // nr_map_ids
	le64(info, 56, p2.alloc(mapBuf))
	ia := make([]byte, 16)
	le32(ia, 0, uint32(p2fd))
	le32(ia, 4, uint32(len(info)))
	infoAddr := p2.alloc(info)
	le64(ia, 8, infoAddr)
	if _, err := p2.bpf(s2, cmdObjGetInfo, ia); err != nil {
		t.Fatal(err)
	}
	p2.ReadMem(infoAddr, info)
	name := string(bytes.TrimRight(info[64:80], "\x00"))
	p2.ReadMem(binary.LittleEndian.Uint64(info[56:]), mapBuf)
	if name != "shared" || binary.LittleEndian.Uint32(info[52:]) != 1 || binary.LittleEndian.Uint32(mapBuf) != mapIDs[0] {
		t.Errorf("program info in the other shim: name %q, %d maps (%x), want map %d", name, binary.LittleEndian.Uint32(info[52:]), mapBuf, mapIDs[0])
	}

	// The first shim's caller goes: everything lives on in the other.
	p1.closeFD(pfd)
	p1.closeFD(mfd)
	s1.Unpinned() // a check of everything, as events would cause
	if got := ids(t, s1, p1, cmdProgGetNextID); !slices.Equal(got, progIDs) {
		t.Fatalf("after the first shim's closes, programs %v, want %v", got, progIDs)
	}
	if v, err := elem(t, s2, p2, cmdMapLookup, m2, 7, 0); err != nil || v != 42 {
		t.Errorf("the map after the first shim's closes: %d, %v", v, err)
	}
	// The program goes with its last fd; its map stays while an fd holds it.
	p2.closeFD(p2fd)
	eventually(t, "the program's end", func() bool { return len(ids(t, s1, p1, cmdProgGetNextID)) == 0 })
	if got := ids(t, s1, p1, cmdMapGetNextID); !slices.Equal(got, mapIDs) {
		t.Fatalf("the map went with the program: maps %v", got)
	}
	p2.closeFD(m2)
	eventually(t, "the map's end", func() bool { return len(ids(t, s1, p1, cmdMapGetNextID)) == 0 })
	if _, err := byID(t, s1, p1, cmdMapGetFDByID, mapIDs[0]); err != syscall.ENOENT {
		t.Errorf("MAP_GET_FD_BY_ID of a freed map: %v, want ENOENT", err)
	}
	eventually(t, "the state's emptying", func() bool {
		ents, _ := os.ReadDir(filepath.Join(dir, "live"))
		return len(ents) == 0
	})
}

// TestPinSharedAcrossShims: a pinned map opened in two shims, unpinned, lives until the last of
// them closes it.
func TestPinSharedAcrossShims(t *testing.T) {
	s1, s2, p1, p2, dir := twoShims(t)
	mfd := newHash(t, s1, p1)
	path := "/sys/fs/bpf/shared"
	pa := make([]byte, 20)
	le64(pa, 0, p1.alloc([]byte(path+"\x00")))
	le32(pa, 8, uint32(mfd))
	if _, err := p1.bpf(s1, cmdObjPin, pa); err != nil {
		t.Fatal(err)
	}
	ga := make([]byte, 20)
	le64(ga, 0, p2.alloc([]byte(path+"\x00")))
	g2, err := p2.bpf(s2, cmdObjGet, ga)
	if err != nil {
		t.Fatalf("OBJ_GET in the other shim: %v", err)
	}
	ga1 := make([]byte, 20)
	le64(ga1, 0, p1.alloc([]byte(path+"\x00")))
	g1, err := p1.bpf(s1, cmdObjGet, ga1)
	if err != nil {
		t.Fatal(err)
	}
	p1.closeFD(mfd)
	mirror, _ := s1.BPFFSMirror(path)
	if err := os.Remove(mirror); err != nil {
		t.Fatal(err)
	}
	s1.Unpinned()
	p1.closeFD(int(g1))
	s1.Unpinned()
	if len(ids(t, s1, p1, cmdMapGetNextID)) != 1 {
		t.Fatal("the unpinned map went while the other shim holds it")
	}
	if _, err := elem(t, s2, p2, cmdMapUpdate, int(g2), 1, 1); err != nil {
		t.Errorf("update in the other shim: %v", err)
	}
	p2.closeFD(int(g2))
	eventually(t, "the map's end", func() bool { return len(ids(t, s2, p2, cmdMapGetNextID)) == 0 })
	eventually(t, "the state's emptying", func() bool {
		ents, _ := os.ReadDir(filepath.Join(dir, "live"))
		return len(ents) == 0
	})
}

// TestKilledShimSwept: the entries of objects a killed shim left behind (their fds closed by the
// kernel, no server to see it) are removed by the next shim of the user.
func TestKilledShimSwept(t *testing.T) {
	dir := t.TempDir()
	s1, err := New(Config{StateDir: dir, Log: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	p1 := newFakeProc(t)
	mfd := newHash(t, s1, p1)
	s1.mu.Lock()
	s1.objs.watch.file.Close() // the shim is killed: nothing watches any more
	s1.objs.watch = nil
	s1.mu.Unlock()
	p1.closeFD(mfd)
	if ents, _ := os.ReadDir(filepath.Join(dir, "live")); len(ents) != 1 {
		t.Fatalf("live entries %v before the next shim", ents)
	}
	s2, err := New(Config{StateDir: dir, Log: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "live")); len(ents) != 0 {
		t.Errorf("live entries %v after the next shim started", ents)
	}
}
