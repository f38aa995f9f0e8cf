package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// selfProc is the test process itself as a caller: the server reads and writes this process's
// memory and fds, so a call can be made with the same attr to the kernel and to the server.
type selfProc struct {
	files []*os.File // the server's files, kept open as this process's fds
}

func (p *selfProc) PID() int { return os.Getpid() }

func (p *selfProc) ReadMem(addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := unix.ProcessVMReadv(os.Getpid(), []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}},
		[]unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err != nil || n != len(b) {
		return syscall.EFAULT
	}
	return nil
}

func (p *selfProc) WriteMem(addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := unix.ProcessVMWritev(os.Getpid(), []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}},
		[]unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err != nil || n != len(b) {
		return syscall.EFAULT
	}
	return nil
}

func (p *selfProc) ReadString(addr uint64, max int) (string, error) {
	var out []byte
	var c [1]byte
	for len(out) <= max {
		if err := p.ReadMem(addr+uint64(len(out)), c[:]); err != nil {
			return "", err
		}
		if c[0] == 0 {
			return string(out), nil
		}
		out = append(out, c[0])
	}
	return "", syscall.ENAMETOOLONG
}

func (p *selfProc) FileOf(fd int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, syscall.EBADF
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// outcome is what a bpf(2) call did: its errno (0 for success) and the bytes it left in the
// attr and in the other buffers of the case.
type outcome struct {
	errno syscall.Errno
	ok    bool // the call returned a value (an fd for fd-making commands)
	attr  []byte
	bufs  [][]byte
}

func (o outcome) String() string {
	return fmt.Sprintf("errno %d (%v)", o.errno, o.errno)
}

// diff describes where two outcomes' bytes differ, briefly.
func diff(k, s outcome) string {
	var out string
	show := func(name string, a, b []byte) {
		if bytes.Equal(a, b) {
			return
		}
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		end := func(x []byte) []byte { return x[i:min(len(x), i+48)] }
		out += fmt.Sprintf("\n  %s (len %d/%d) differs at %d: kernel %q server %q", name, len(a), len(b), i, end(a), end(b))
	}
	show("attr", k.attr, s.attr)
	for i := range min(len(k.bufs), len(s.bufs)) {
		show(fmt.Sprintf("buf %d", i), k.bufs[i], s.bufs[i])
	}
	return out
}

// kcase is one call made to both the kernel and the server. setup builds the attr and the
// buffers it points to; fd is the fd the case refers to (its own kind of fd for each side).
type kcase struct {
	name string
	cmd  uint32
	size uint32 // attr size; len(attr) when 0
	// setup returns the attr and the buffers it points into; bpfFD is an fd the attr may name
	// (the kernel's or the server's BTF fd for id 1).
	setup func(bpfFD int) ([]byte, [][]byte)
}

func kernelCall(c kcase, fd int) outcome {
	a, bufs := c.setup(fd)
	size := c.size
	if size == 0 {
		size = uint32(len(a))
	}
	var ap unsafe.Pointer
	if len(a) > 0 {
		ap = unsafe.Pointer(&a[0])
	}
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(c.cmd), uintptr(ap), uintptr(size))
	runtime.KeepAlive(bufs)
	if e == 0 && r > 2 && c.cmd != cmdObjGetInfo {
		unix.Close(int(r))
	}
	return normalize(outcome{errno: e, ok: e == 0, attr: a, bufs: bufs})
}

func serverCall(s *Server, p *selfProc, c kcase, fd int) outcome {
	a, bufs := c.setup(fd)
	size := c.size
	if size == 0 {
		size = uint32(len(a))
	}
	var addr uint64
	if len(a) > 0 {
		addr = uint64(uintptr(unsafe.Pointer(&a[0])))
	}
	res, err := s.BPF(p, c.cmd, addr, size)
	runtime.KeepAlive(bufs)
	if res.File != nil {
		res.File.Close()
	}
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		e = 0xffff
	}
	return normalize(outcome{errno: e, ok: err == nil, attr: a, bufs: bufs})
}

// normalize replaces the pointers to the case's buffers (which differ between the kernel's
// and the server's run) by their buffer's number, so outcomes compare byte for byte.
func normalize(o outcome) outcome {
	fix := func(b []byte) {
		for off := 0; off+8 <= len(b); off += 8 {
			v := binary.LittleEndian.Uint64(b[off:])
			for i, buf := range o.bufs {
				if len(buf) > 0 && v == ptr(buf) {
					binary.LittleEndian.PutUint64(b[off:], uint64(i+1))
				}
			}
		}
	}
	fix(o.attr)
	for _, b := range o.bufs {
		fix(b)
	}
	return o
}

func ptr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

func cstr(s string) []byte { return append([]byte(s), 0) }

// TestKernelErrnos makes the same calls to the kernel (as root) and to the server and wants the
// same errno and the same bytes written back: attr size rules, every command's last field,
// id walks, BTF info's partial copies, BTF_LOAD's checks and log, OBJ_GET's paths.
func TestKernelErrnos(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel is the oracle only for root")
	}
	kfd, err := kernelBTFFD()
	if err != nil {
		t.Skipf("the kernel's BTF is out of reach: %v", err)
	}
	defer unix.Close(kfd)
	s := newTestServer(t)
	p := &selfProc{}
	a := make([]byte, 16)
	le32(a, 0, kernelBTFID)
	res, err := s.BPF(p, cmdBTFGetFDByID, ptr(a), 16)
	if err != nil {
		t.Fatal(err)
	}
	defer res.File.Close()
	sfd := int(res.File.Fd())

	var cases []kcase
	// Every command's unused fields: a byte just after its last field is EINVAL.
	for cmd, c := range commands {
		if c.last >= attrSize {
			continue
		}
		cases = append(cases, kcase{name: c.name + " unused field", cmd: uint32(cmd), setup: func(int) ([]byte, [][]byte) {
			a := make([]byte, attrSize)
			a[c.last] = 0x40
			return a, nil
		}})
	}
	attrOf := func(n int, fill func(a []byte, fd int) [][]byte) func(int) ([]byte, [][]byte) {
		return func(fd int) ([]byte, [][]byte) {
			a := make([]byte, n)
			bufs := fill(a, fd)
			return a, bufs
		}
	}
	none := func(a []byte, fd int) [][]byte { return nil }
	cases = append(cases,
		kcase{name: "unknown command", cmd: 38, setup: attrOf(8, none)},
		kcase{name: "huge command", cmd: 0x7fffffff, setup: attrOf(8, none)},
		kcase{name: "attr > page", cmd: cmdBTFGetNextID, setup: attrOf(4097, none)},
		kcase{name: "attr tail non-zero", cmd: cmdBTFGetNextID, setup: attrOf(300, func(a []byte, _ int) [][]byte { a[299] = 1; return nil })},
		kcase{name: "attr tail zero", cmd: cmdBTFGetNextID, setup: attrOf(300, none)},
		kcase{name: "attr NULL size 8", cmd: cmdBTFGetNextID, size: 8, setup: func(int) ([]byte, [][]byte) { return nil, nil }},
		kcase{name: "BTF_GET_NEXT_ID INT_MAX", cmd: cmdBTFGetNextID, setup: attrOf(8, func(a []byte, _ int) [][]byte { le32(a, 0, maxID); return nil })},
		kcase{name: "BTF_GET_NEXT_ID INT_MAX-1", cmd: cmdBTFGetNextID, setup: attrOf(8, func(a []byte, _ int) [][]byte { le32(a, 0, maxID-1); return nil })},
		kcase{name: "PROG_GET_NEXT_ID INT_MAX", cmd: cmdProgGetNextID, setup: attrOf(8, func(a []byte, _ int) [][]byte { le32(a, 0, maxID); return nil })},
		kcase{name: "BTF_GET_FD_BY_ID unknown flag", cmd: cmdBTFGetFDByID, setup: attrOf(16, func(a []byte, _ int) [][]byte { le32(a, 0, 1); le32(a, 8, 1); return nil })},
		kcase{name: "BTF_GET_FD_BY_ID token flag, bad token", cmd: cmdBTFGetFDByID, setup: attrOf(16, func(a []byte, _ int) [][]byte {
			le32(a, 0, 1)
			le32(a, 8, bpfFTokenFD)
			le32(a, 12, 999)
			return nil
		})},
		kcase{name: "BTF_GET_FD_BY_ID token fd without flag", cmd: cmdBTFGetFDByID, setup: attrOf(16, func(a []byte, _ int) [][]byte { le32(a, 0, 1); le32(a, 12, 999); return nil })},
		kcase{name: "MAP_GET_FD_BY_ID rdonly|wronly", cmd: cmdMapGetFDByID, setup: attrOf(12, func(a []byte, _ int) [][]byte { le32(a, 8, objFlagMask); return nil })},
		kcase{name: "MAP_GET_FD_BY_ID unknown flag", cmd: cmdMapGetFDByID, setup: attrOf(12, func(a []byte, _ int) [][]byte { le32(a, 8, 1); return nil })},
		kcase{name: "OBJ_GET_INFO closed fd", cmd: cmdObjGetInfo, setup: attrOf(16, func(a []byte, _ int) [][]byte { le32(a, 0, 9999); return nil })},
		kcase{name: "OBJ_GET_INFO fd -1", cmd: cmdObjGetInfo, setup: attrOf(16, func(a []byte, _ int) [][]byte { le32(a, 0, 0xffffffff); return nil })},
		kcase{name: "OBJ_GET_INFO plain fd", cmd: cmdObjGetInfo, setup: attrOf(16, func(a []byte, _ int) [][]byte { le32(a, 0, 1); return nil })},
	)
	// BTF info of the kernel's BTF, with the buffers in all their sizes.
	btfInfo := func(name string, infoLen, bufSize, nameLen uint32, ptrs bool) kcase {
		return kcase{name: "BTF info " + name, cmd: cmdObjGetInfo, setup: attrOf(16, func(a []byte, fd int) [][]byte {
			info := make([]byte, max(infoLen, 32)+8)
			bufs := [][]byte{info}
			if ptrs && bufSize > 0 {
				b := make([]byte, bufSize)
				le64(info, 0, ptr(b))
				bufs = append(bufs, b)
			}
			le32(info, 8, bufSize)
			if ptrs && nameLen > 0 {
				n := make([]byte, nameLen)
				le64(info, 16, ptr(n))
				bufs = append(bufs, n)
			}
			le32(info, 24, nameLen)
			le32(a, 0, uint32(fd))
			le32(a, 4, infoLen)
			le64(a, 8, ptr(info))
			return bufs
		})}
	}
	cases = append(cases,
		btfInfo("sizes only", 32, 0, 0, true),
		btfInfo("4 KiB buffer", 32, 4096, 0, true),
		btfInfo("name", 32, 0, 16, true),
		btfInfo("short name", 32, 0, 4, true),
		btfInfo("name length without pointer", 32, 0, 16, false),
		btfInfo("buffer size without pointer", 32, 64, 0, false),
		btfInfo("info_len 8", 8, 0, 0, true),
		btfInfo("info_len 0", 0, 0, 0, true),
		btfInfo("info_len 40", 40, 0, 0, true),
		btfInfo("info_len 5000", 5000, 0, 0, true),
	)
	// BTF_LOAD: a good blob, and the header's and sections' refusals with their logs.
	good := btfBlob(t)
	btfLoad := func(name string, blob []byte, level uint32, logSize uint32) kcase {
		return kcase{name: "BTF_LOAD " + name, cmd: cmdBTFLoad, setup: attrOf(40, func(a []byte, _ int) [][]byte {
			b := append([]byte(nil), blob...)
			bufs := [][]byte{b}
			if len(b) > 0 {
				le64(a, 0, ptr(b))
			}
			le32(a, 16, uint32(len(blob)))
			if logSize > 0 {
				log := make([]byte, logSize)
				le64(a, 8, ptr(log))
				le32(a, 20, logSize)
				bufs = append(bufs, log)
			}
			le32(a, 24, level)
			return bufs
		})}
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases = append(cases,
		btfLoad("good", good, 0, 0),
		// Not compared: a successful load at log level 1, whose log the kernel fills with a line
		// per type (the server logs the header only), and so reports a larger true size.
		btfLoad("bad magic", mutate(func(b []byte) []byte { b[0] = 0; return b }), 1, 4096),
		btfLoad("bad magic, small log", mutate(func(b []byte) []byte { b[0] = 0; return b }), 1, 32),
		btfLoad("bad magic, fixed small log", mutate(func(b []byte) []byte { b[0] = 0; return b }), 1|logFixed, 32),
		btfLoad("bad version", mutate(func(b []byte) []byte { b[2] = 2; return b }), 1, 4096),
		btfLoad("bad flags", mutate(func(b []byte) []byte { b[3] = 1; return b }), 1, 4096),
		btfLoad("7 bytes", good[:7], 1, 4096),
		btfLoad("cut header", good[:20], 1, 4096),
		btfLoad("header only", good[:24], 1, 4096),
		btfLoad("trailing byte", append(append([]byte(nil), good...), 0), 1, 4096),
		btfLoad("long header, non-zero", mutate(func(b []byte) []byte {
			out := append(append(append([]byte(nil), b[:24]...), 1, 0, 0, 0), b[24:]...)
			le32(out, 4, 28)
			return out
		}), 1, 4096),
		btfLoad("string section not NUL-led", mutate(func(b []byte) []byte {
			b[24+le32get(b, 16)] = 'x'
			return b
		}), 1, 4096),
		btfLoad("empty", nil, 0, 0),
		btfLoad("log without level", good, 0, 64),
		btfLoad("bad level", good, 16, 64),
	)
	// OBJ_GET paths (nothing pinned: the kernel has no bpffs mounted here, the server an empty one).
	objGet := func(name, path string, flags uint32) kcase {
		return kcase{name: "OBJ_GET " + name, cmd: cmdObjGet, setup: attrOf(20, func(a []byte, _ int) [][]byte {
			p := cstr(path)
			le64(a, 0, ptr(p))
			le32(a, 12, flags)
			return [][]byte{p}
		})}
	}
	cases = append(cases,
		objGet("missing path", "/nonexistent/x", 0),
		objGet("a directory", os.TempDir(), 0),
		objGet("a file", "/etc/passwd", 0),
		objGet("unknown flag", "/etc/passwd", 1),
		objGet("rdonly|wronly", "/etc/passwd", objFlagMask),
		objGet("empty path", "", 0),
		kcase{name: "OBJ_GET NULL path", cmd: cmdObjGet, setup: attrOf(20, none)},
		kcase{name: "OBJ_GET path_fd without flag", cmd: cmdObjGet, setup: attrOf(20, func(a []byte, _ int) [][]byte {
			p := cstr("/etc/passwd")
			le64(a, 0, ptr(p))
			le32(a, 16, 5)
			return [][]byte{p}
		})},
		kcase{name: "OBJ_PIN a BTF fd", cmd: cmdObjPin, setup: attrOf(20, func(a []byte, fd int) [][]byte {
			p := cstr("/tmp/ebpfu-never-pinned")
			le64(a, 0, ptr(p))
			le32(a, 8, uint32(fd))
			return [][]byte{p}
		})},
		kcase{name: "OBJ_PIN closed fd", cmd: cmdObjPin, setup: attrOf(20, func(a []byte, _ int) [][]byte {
			p := cstr("/tmp/ebpfu-never-pinned")
			le64(a, 0, ptr(p))
			le32(a, 8, 9999)
			return [][]byte{p}
		})},
	)

	// Both sides see their BTF fd under the same number, so attrs naming it are equal.
	const caseFD = 100
	for _, c := range cases {
		if err := unix.Dup2(kfd, caseFD); err != nil {
			t.Fatal(err)
		}
		k := kernelCall(c, caseFD)
		if err := unix.Dup2(sfd, caseFD); err != nil {
			t.Fatal(err)
		}
		got := serverCall(s, p, c, caseFD)
		// BTF ids differ between the kernel (whose loaded BTFs are numerous) and the server.
		if c.cmd == cmdBTFLoad || c.cmd == cmdBTFGetNextID && k.errno == 0 {
			if k.errno != got.errno {
				t.Errorf("%s: kernel %v, server %v", c.name, k, got)
			} else if c.cmd == cmdBTFLoad && (!equalBufs(k.bufs, got.bufs) || !bytes.Equal(k.attr, got.attr)) {
				t.Errorf("%s: same errno, different output:%s", c.name, diff(k, got))
			}
			continue
		}
		if k.errno != got.errno || !bytes.Equal(k.attr, got.attr) || !equalBufs(k.bufs, got.bufs) {
			t.Errorf("%s: kernel %v, server %v%s", c.name, k, got, diff(k, got))
		}
	}
	unix.Close(caseFD)
}

func le32get(b []byte, off int) int {
	return int(b[off]) | int(b[off+1])<<8 | int(b[off+2])<<16 | int(b[off+3])<<24
}

func equalBufs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// kernelBTFFD opens the kernel's BTF object 1.
func kernelBTFFD() (int, error) {
	a := make([]byte, 16)
	le32(a, 0, kernelBTFID)
	r, _, e := unix.Syscall(unix.SYS_BPF, cmdBTFGetFDByID, uintptr(unsafe.Pointer(&a[0])), 16)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
