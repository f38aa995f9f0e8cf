package server

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf/btf"
)

const (
	cmdMapCreate     = 0
	cmdMapDelete     = 3
	cmdProgLoad      = 5
	cmdObjPin        = 6
	cmdObjGet        = 7
	cmdProgGetNextID = 11
	cmdProgGetFDByID = 13
	cmdMapGetFDByID  = 14
	cmdObjGetInfo    = 15
	cmdBTFLoad       = 18
	cmdBTFGetFDByID  = 19
	cmdBTFGetNextID  = 23
)

func le32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func le64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	var got syscall.Errno
	if !errors.As(err, &got) || got != want {
		t.Errorf("%s: got %v, want %v (%d)", what, err, want, want)
	}
}

func TestAttrSizeRules(t *testing.T) {
	s := newTestServer(t)
	p := newFakeProc(t)

	// Larger than a page: E2BIG before anything else.
	big := make([]byte, pageSize+1)
	_, err := p.bpf(s, cmdBTFGetNextID, big)
	wantErrno(t, "size > PAGE_SIZE", err, syscall.E2BIG)

	// Larger than the kernel's attr: a zero tail is accepted, a non-zero one is E2BIG.
	a := make([]byte, attrSize+64)
	if _, err := p.bpf(s, cmdBTFGetNextID, a); err != nil {
		t.Errorf("zero tail: %v", err)
	}
	a[attrSize+10] = 1
	_, err = p.bpf(s, cmdBTFGetNextID, a)
	wantErrno(t, "non-zero tail", err, syscall.E2BIG)

	// Smaller: zero-extended (a 4-byte attr for BTF_GET_NEXT_ID still gets next_id? no:
	// next_id lies beyond it, and the kernel writes it anyway into the caller's memory).
	small := make([]byte, 8)
	if _, err := p.bpf(s, cmdBTFGetNextID, small); err != nil || binary.LittleEndian.Uint32(small[4:]) != 1 {
		t.Errorf("8-byte attr: err %v next_id %d, want 1", err, binary.LittleEndian.Uint32(small[4:]))
	}

	// A field after the command's last one: EINVAL.
	a = make([]byte, attrSize)
	a[8] = 1 // open_flags, after BTF_GET_NEXT_ID's next_id
	_, err = p.bpf(s, cmdBTFGetNextID, a)
	wantErrno(t, "unused field set", err, syscall.EINVAL)
	a = make([]byte, attrSize)
	le32(a, 16, 1) // value on MAP_DELETE_ELEM, whose last field is key
	_, err = p.bpf(s, cmdMapDelete, a)
	wantErrno(t, "value on MAP_DELETE_ELEM", err, syscall.EINVAL)

	// Unknown commands: EINVAL.
	_, err = p.bpf(s, 9999, make([]byte, 8))
	wantErrno(t, "unknown command", err, syscall.EINVAL)
	_, err = p.bpf(s, uint32(len(commands)), make([]byte, 8))
	wantErrno(t, "first command past the table", err, syscall.EINVAL)

	// An unreadable attr: EFAULT.
	if _, err := s.BPF(p, cmdBTFGetNextID, 0xdead0000, 8); !errors.Is(err, syscall.EFAULT) {
		t.Errorf("unmapped attr: got %v, want EFAULT", err)
	}
	// An all-zero PROG_LOAD (bpftool's syscall probe) must not succeed.
	if _, err := p.bpf(s, cmdProgLoad, make([]byte, 0)); err == nil {
		t.Errorf("PROG_LOAD with an empty attr succeeded")
	}
}

func TestNextIDWalk(t *testing.T) {
	s := newTestServer(t)
	p := newFakeProc(t)
	a := make([]byte, 8)
	if _, err := p.bpf(s, cmdBTFGetNextID, a); err != nil || binary.LittleEndian.Uint32(a[4:]) != kernelBTFID {
		t.Fatalf("BTF_GET_NEXT_ID(0): %v, next %d; want the kernel's BTF, 1", err, binary.LittleEndian.Uint32(a[4:]))
	}
	le32(a, 0, 1)
	_, err := p.bpf(s, cmdBTFGetNextID, a)
	wantErrno(t, "BTF_GET_NEXT_ID(1)", err, syscall.ENOENT)
	le32(a, 0, maxID)
	_, err = p.bpf(s, cmdBTFGetNextID, a)
	wantErrno(t, "BTF_GET_NEXT_ID(INT_MAX)", err, syscall.EINVAL)
	le32(a, 0, 0)
	_, err = p.bpf(s, cmdProgGetNextID, a)
	wantErrno(t, "PROG_GET_NEXT_ID(0) with no programs", err, syscall.ENOENT)
	// The next id goes to the caller's attr: a read-only attr is EFAULT.
	addr := p.allocRO(make([]byte, 8))
	if _, err := s.BPF(p, cmdBTFGetNextID, addr, 8); !errors.Is(err, syscall.EFAULT) {
		t.Errorf("read-only attr: got %v, want EFAULT", err)
	}
}

// kernelBlob is a small stand-in for the kernel's BTF.
func kernelBlob(t testing.TB) string {
	b, err := btf.NewBuilder([]btf.Type{&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKernelBTFInfo(t *testing.T) {
	path := kernelBlob(t)
	raw, _ := os.ReadFile(path)
	s, err := New(Config{StateDir: t.TempDir(), KernelBTF: path, Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	p := newFakeProc(t)
	a := make([]byte, 16)
	le32(a, 0, kernelBTFID)
	fd, err := p.bpf(s, cmdBTFGetFDByID, a)
	if err != nil {
		t.Fatalf("BTF_GET_FD_BY_ID(1): %v", err)
	}
	le32(a, 0, 2)
	_, err = p.bpf(s, cmdBTFGetFDByID, a)
	wantErrno(t, "BTF_GET_FD_BY_ID(2)", err, syscall.ENOENT)

	info := func(infoLen uint32, buf []byte, bufSize uint32, name []byte) ([]byte, uint32, error) {
		t.Helper()
		in := make([]byte, 32)
		if buf != nil {
			le64(in, 0, p.alloc(buf))
		}
		le32(in, 8, bufSize)
		if name != nil {
			le64(in, 16, p.alloc(name))
			le32(in, 24, uint32(len(name)))
		}
		uinfo := p.alloc(in)
		a := make([]byte, 16)
		le32(a, 0, uint32(fd))
		le32(a, 4, infoLen)
		le64(a, 8, uinfo)
		_, err := p.bpf(s, cmdObjGetInfo, a)
		return in, binary.LittleEndian.Uint32(a[4:]), err
	}

	// No buffer: just the size, the id, kernel_btf.
	in, n, err := info(32, nil, 0, nil)
	if err != nil || n != 32 || binary.LittleEndian.Uint32(in[8:]) != uint32(len(raw)) ||
		binary.LittleEndian.Uint32(in[12:]) != kernelBTFID || binary.LittleEndian.Uint32(in[28:]) != 1 {
		t.Errorf("info without buffer: err %v info_len %d info % x", err, n, in)
	}
	// A small buffer: the prefix is copied and the full size reported, rc 0.
	buf := make([]byte, 8)
	in, _, err = info(32, buf, 8, nil)
	if err != nil || string(buf) != string(raw[:8]) || binary.LittleEndian.Uint32(in[8:]) != uint32(len(raw)) {
		t.Errorf("info with a small buffer: err %v buf % x size %d", err, buf, binary.LittleEndian.Uint32(in[8:]))
	}
	// The name: whole, or cut with ENOSPC.
	name := make([]byte, 16)
	in, _, err = info(32, nil, 0, name)
	if err != nil || string(name[:8]) != "vmlinux\x00" || binary.LittleEndian.Uint32(in[24:]) != 7 {
		t.Errorf("name: err %v name %q name_len %d", err, name, binary.LittleEndian.Uint32(in[24:]))
	}
	name = make([]byte, 4)
	_, _, err = info(32, nil, 0, name)
	wantErrno(t, "short name buffer", err, syscall.ENOSPC)
	if string(name) != "vml\x00" {
		t.Errorf("short name buffer holds %q, want \"vml\\x00\"", name)
	}
	// A short info_len copies only that much and echoes it.
	in, n, err = info(8, nil, 0, nil)
	if err != nil || n != 8 || binary.LittleEndian.Uint32(in[12:]) != 0 {
		t.Errorf("info_len 8: err %v info_len %d id %d", err, n, binary.LittleEndian.Uint32(in[12:]))
	}
	// A larger info than the kernel's must end in zeros; more than a page is E2BIG.
	_, _, err = info(4097, nil, 0, nil)
	wantErrno(t, "info_len > page", err, syscall.E2BIG)

	// Bad fds: EBADFD for a closed one, EINVAL for one that is not a bpf object.
	a = make([]byte, 16)
	le32(a, 0, 999)
	_, err = p.bpf(s, cmdObjGetInfo, a)
	wantErrno(t, "info of a closed fd", err, syscall.EBADFD)
	f, _ := os.Open(path)
	other := p.install(f)
	le32(a, 0, uint32(other))
	_, err = p.bpf(s, cmdObjGetInfo, a)
	wantErrno(t, "info of a plain file", err, syscall.EINVAL)
}

func btfBlob(t testing.TB) []byte {
	b, err := btf.NewBuilder([]btf.Type{&btf.Int{Name: "u32", Size: 4}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBTFLoad(t *testing.T) {
	s := newTestServer(t)
	p := newFakeProc(t)
	raw := btfBlob(t)
	load := func(blob []byte, logSize, level uint32) (int64, []byte, []byte, error) {
		a := make([]byte, 40)
		le64(a, 0, p.alloc(blob))
		le32(a, 16, uint32(len(blob)))
		var log []byte
		if logSize > 0 {
			log = make([]byte, logSize)
			le64(a, 8, p.alloc(log))
			le32(a, 20, logSize)
		}
		le32(a, 24, level)
		fd, err := p.bpf(s, cmdBTFLoad, a)
		return fd, a, log, err
	}
	fd, _, _, err := load(raw, 0, 0)
	if err != nil {
		t.Fatalf("BTF_LOAD of a valid blob: %v", err)
	}
	// The new BTF object gets id 2 and is listed after the kernel's.
	a := make([]byte, 8)
	le32(a, 0, 1)
	if _, err := p.bpf(s, cmdBTFGetNextID, a); err != nil || binary.LittleEndian.Uint32(a[4:]) != 2 {
		t.Errorf("BTF_GET_NEXT_ID(1) after a load: %v, next %d, want 2", err, binary.LittleEndian.Uint32(a[4:]))
	}
	in := make([]byte, 32)
	ai := make([]byte, 16)
	le32(ai, 0, uint32(fd))
	le32(ai, 4, 32)
	le64(ai, 8, p.alloc(in))
	if _, err := p.bpf(s, cmdObjGetInfo, ai); err != nil || binary.LittleEndian.Uint32(in[8:]) != uint32(len(raw)) ||
		binary.LittleEndian.Uint32(in[28:]) != 0 || binary.LittleEndian.Uint32(in[24:]) != 0 {
		t.Errorf("info of a loaded BTF: %v % x", err, in)
	}

	bad := append([]byte(nil), raw...)
	bad[0] = 0
	_, at, log, err := load(bad, 256, 1)
	wantErrno(t, "bad magic", err, syscall.EINVAL)
	text, _, _ := strings.Cut(string(log), "\x00")
	if !strings.HasPrefix(text, "magic: 0xeb00\n") || !strings.HasSuffix(text, "\nInvalid magic") {
		t.Errorf("log of a bad magic: %q", text)
	}
	if got := binary.LittleEndian.Uint32(at[28:]); got != uint32(len(text)+1) {
		t.Errorf("btf_log_true_size %d, want %d", got, len(text)+1)
	}
	_, _, _, err = load(bad, 4, 1)
	wantErrno(t, "bad magic, small log", err, syscall.ENOSPC)
	_, _, _, err = load(raw[:10], 0, 0)
	wantErrno(t, "truncated header", err, syscall.EINVAL)
	_, _, _, err = load(raw, 16, 0)
	wantErrno(t, "log buffer without level", err, syscall.EINVAL)
	a = make([]byte, 40)
	le32(a, 16, btfMaxSize+1)
	_, err = p.bpf(s, cmdBTFLoad, a)
	wantErrno(t, "BTF larger than 16 MiB", err, syscall.E2BIG)
	a = make([]byte, 40)
	le32(a, 16, 64)
	le64(a, 0, 0xdead0000)
	_, err = p.bpf(s, cmdBTFLoad, a)
	wantErrno(t, "unreadable blob", err, syscall.EFAULT)
}

func TestObjPinGetPaths(t *testing.T) {
	s := newTestServer(t)
	p := newFakeProc(t)
	objAttr := func(path string, fd, flags uint32) []byte {
		a := make([]byte, 20)
		le64(a, 0, p.alloc(append([]byte(path), 0)))
		le32(a, 8, fd)
		le32(a, 12, flags)
		return a
	}
	_, err := p.bpf(s, cmdObjGet, objAttr("/sys/fs/bpf/nothing", 0, 0))
	wantErrno(t, "OBJ_GET of a missing pin", err, syscall.ENOENT)
	_, err = p.bpf(s, cmdObjGet, objAttr("/sys/fs/bpf", 0, 0))
	wantErrno(t, "OBJ_GET of the bpffs root", err, syscall.EACCES)
	_, err = p.bpf(s, cmdObjGet, objAttr(os.TempDir(), 0, 0))
	wantErrno(t, "OBJ_GET of a directory outside bpffs", err, syscall.EACCES)
	_, err = p.bpf(s, cmdObjGet, objAttr("/nonexistent/x", 0, 0))
	wantErrno(t, "OBJ_GET of a missing path", err, syscall.ENOENT)
	_, err = p.bpf(s, cmdObjGet, objAttr("/sys/fs/bpf/x", 0, 1))
	wantErrno(t, "OBJ_GET with an unknown flag", err, syscall.EINVAL)
	_, err = p.bpf(s, cmdObjGet, objAttr("/sys/fs/bpf/x", 3, 0))
	wantErrno(t, "OBJ_GET with bpf_fd set", err, syscall.EINVAL)
	_, err = p.bpf(s, cmdObjGet, objAttr("", 0, 0))
	wantErrno(t, "OBJ_GET of an empty path", err, syscall.ENOENT)

	// BTF objects cannot be pinned; neither can closed fds.
	a := make([]byte, 16)
	le32(a, 0, kernelBTFID)
	fd, err := p.bpf(s, cmdBTFGetFDByID, a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.bpf(s, cmdObjPin, objAttr("/sys/fs/bpf/btf", uint32(fd), 0))
	wantErrno(t, "OBJ_PIN of a BTF", err, syscall.EINVAL)
	_, err = p.bpf(s, cmdObjPin, objAttr("/sys/fs/bpf/x", 999, 0))
	wantErrno(t, "OBJ_PIN of a closed fd", err, syscall.EINVAL)
}

func TestStateDirRefusesForeignDirectories(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o755)
	if err := checkPrivateDir(open); err == nil {
		t.Error("a directory open to others was accepted")
	}
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	if err := checkPrivateDir(private); err != nil {
		t.Errorf("a private directory was refused: %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(private, link)
	if err := checkPrivateDir(link); err == nil {
		t.Error("a symlink was accepted as the state directory")
	}
	t.Setenv("XDG_RUNTIME_DIR", dir)
	got, err := StateDir()
	if err != nil || got != filepath.Join(dir, "ebpfu") {
		t.Errorf("StateDir() = %q, %v", got, err)
	}
}
