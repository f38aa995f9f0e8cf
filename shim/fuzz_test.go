package shim

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ebpfu/ebpfu/server"
	"golang.org/x/sys/unix"
)

// The supervisor's fuzz target: a tool-like child (this test binary in mode "fuzz") makes
// bpf(2) and perf_event_open(2) calls described by the fuzzer, with garbage attrs, sizes,
// pointers (valid, NULL, unmapped, kernel, straddling an unmapped page) and fds (its own map,
// program and BTF, other files, bad numbers), under the real supervisor. The supervisor must
// answer every call with an errno bpf(2) can return, within a few seconds, and never die (a dead
// supervisor makes the child's calls fail with ENOSYS). As root, calls whose answer does not
// depend on which objects exist are made against the kernel too, with the same frame and the
// kernel's own objects, and must get the kernel's errno.

// frame is one call, as the fuzzer describes it.
const (
	frameSize    = 512
	frameAttr    = 48  // 256 bytes of attr
	frameScratch = 304 // 128 bytes that valid pointers point at
	maxPatches   = 8
)

// Pointer and fd kinds of the patches a frame applies to its attr.
const (
	patchScratch  = iota // u64: pointer to the scratch bytes
	patchUnmapped        // u64: an unmapped user address
	patchKernel          // u64: a kernel address
	patchStraddle        // u64: pointer 8 bytes before an unmapped page
	patchHashFD          // u32: the caller's hash map
	patchArrayFD         // u32: the caller's array map
	patchProgFD          // u32: the caller's socket filter
	patchBTFFD           // u32: the caller's fd of the kernel's BTF
	patchMinus1          // u32: -1
	patchStdin           // u32: 0, a file that is no bpf object
	numPatchKinds
)

// fuzzEnv is what a caller's frames refer to.
type fuzzEnv struct {
	scratch  []byte // two pages, the second PROT_NONE
	hash     int
	array    int
	prog     int
	btf      int
	readOnly bool // the kernel's side: no call that changes shared state
}

// newFuzzEnv makes the caller's objects with its own bpf(2) (the kernel's, or the supervisor's).
func newFuzzEnv() (*fuzzEnv, error) {
	mem, err := unix.Mmap(-1, 0, 2*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	if err := unix.Mprotect(mem[4096:], unix.PROT_NONE); err != nil {
		return nil, err
	}
	e := &fuzzEnv{scratch: mem}
	mk := func(typ uint32) (int, error) {
		a := make([]byte, 72)
		binary.LittleEndian.PutUint32(a[0:], typ)
		binary.LittleEndian.PutUint32(a[4:], 4)
		binary.LittleEndian.PutUint32(a[8:], 8)
		binary.LittleEndian.PutUint32(a[12:], 8)
		return bpfCall(0, a)
	}
	if e.hash, err = mk(1); err != nil {
		return nil, fmt.Errorf("hash map: %w", err)
	}
	if e.array, err = mk(2); err != nil {
		return nil, fmt.Errorf("array map: %w", err)
	}
	insns := []byte{0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0}
	license := []byte("GPL\x00")
	a := make([]byte, 128)
	binary.LittleEndian.PutUint32(a[0:], 1)
	binary.LittleEndian.PutUint32(a[4:], 2)
	binary.LittleEndian.PutUint64(a[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.LittleEndian.PutUint64(a[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	if e.prog, err = bpfCall(5, a); err != nil {
		return nil, fmt.Errorf("program: %w", err)
	}
	b := make([]byte, 16)
	b[0] = 1
	if e.btf, err = bpfCall(19, b); err != nil {
		return nil, fmt.Errorf("BTF: %w", err)
	}
	return e, nil
}

func bpfCall(cmd uintptr, attr []byte) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, cmd, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// fdMaking reports whether a successful call returns a new fd.
func fdMaking(op byte, cmd uint32) bool {
	if op == 1 {
		return true
	}
	switch cmd {
	case 0, 5, 7, 13, 14, 17, 18, 19, 28, 30, 33, 36:
		return true
	}
	return false
}

// exec makes the call frame describes and returns its result and errno.
func (e *fuzzEnv) exec(f []byte) (int64, syscall.Errno) {
	op := f[0]
	cmd := binary.LittleEndian.Uint32(f[4:])
	attr := e.scratch[4096-256-128 : 4096-128]
	copy(attr, f[frameAttr:frameAttr+256])
	scratch := e.scratch[4096-128 : 4096]
	copy(scratch, f[frameScratch:frameScratch+128])
	for i := range min(int(f[17]), maxPatches) {
		off, kind := int(f[18+2*i])&^3, f[19+2*i]%numPatchKinds
		if off+8 > len(attr) {
			continue
		}
		p := attr[off:]
		switch kind {
		case patchScratch:
			binary.LittleEndian.PutUint64(p, uint64(uintptr(unsafe.Pointer(&scratch[0]))))
		case patchUnmapped:
			binary.LittleEndian.PutUint64(p, 0x1000)
		case patchKernel:
			binary.LittleEndian.PutUint64(p, 0xffff888000001000)
		case patchStraddle:
			binary.LittleEndian.PutUint64(p, uint64(uintptr(unsafe.Pointer(&scratch[0])))+120)
		case patchHashFD:
			binary.LittleEndian.PutUint32(p, uint32(e.hash))
		case patchArrayFD:
			binary.LittleEndian.PutUint32(p, uint32(e.array))
		case patchProgFD:
			binary.LittleEndian.PutUint32(p, uint32(e.prog))
		case patchBTFFD:
			binary.LittleEndian.PutUint32(p, uint32(e.btf))
		case patchMinus1:
			binary.LittleEndian.PutUint32(p, ^uint32(0))
		case patchStdin:
			binary.LittleEndian.PutUint32(p, 0)
		}
	}
	ptr := uintptr(unsafe.Pointer(&attr[0]))
	switch f[16] % 5 {
	case 1:
		ptr = 0
	case 2:
		ptr = 0x1000
	case 3:
		ptr = 0xffff888000001000
	case 4:
		ptr += 256 + 128 - 8 // a few bytes, then the unmapped page
	}
	var r uintptr
	var errno syscall.Errno
	if op == 1 {
		pid := int(int32(binary.LittleEndian.Uint32(f[4:])))%3 - 1 // -1, 0 or 1
		cpu := int(int32(binary.LittleEndian.Uint32(f[8:]))) % 4
		group := int(int32(binary.LittleEndian.Uint32(f[12:])))
		flags := uintptr(f[20])
		r, _, errno = unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, ptr, uintptr(pid), uintptr(cpu), uintptr(group), flags, 0)
	} else {
		size := binary.LittleEndian.Uint32(f[8:])
		r, _, errno = unix.Syscall(unix.SYS_BPF, uintptr(cmd), ptr, uintptr(size))
	}
	if errno == 0 && fdMaking(op, cmd) && int(r) > 2 {
		unix.Close(int(r))
	}
	return int64(r), errno
}

// comparable reports whether the kernel's answer to frame f can be asked safely and depends on
// nothing but the frame: no objects made or attached, no ids of other people's objects, and
// only on the array map, whose contents both sides keep alike.
func comparable(f []byte) bool {
	if f[0] != 0 {
		return false
	}
	cmd := binary.LittleEndian.Uint32(f[4:])
	size := binary.LittleEndian.Uint32(f[8:])
	if cmd >= 38 || size > 4096 {
		return true // EINVAL and E2BIG come before anything else
	}
	switch cmd {
	case 1, 3, 4: // lookup, delete, next key: on the array map or no map at all
	default:
		return false
	}
	for i := range min(int(f[17]), maxPatches) {
		off, kind := int(f[18+2*i])&^3, f[19+2*i]%numPatchKinds
		if off == 0 && kind != patchArrayFD && kind != patchMinus1 && kind != patchStdin {
			return false
		}
	}
	return true
}

// fuzzHelper is the supervised child: it makes its objects, then answers frames from stdin on
// stdout (ret as int64, errno as int32) until stdin closes.
func fuzzHelper() int {
	e, err := newFuzzEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzz helper:", err)
		return 1
	}
	in := bufio.NewReader(os.Stdin)
	f := make([]byte, frameSize)
	var out [12]byte
	for {
		if _, err := io.ReadFull(in, f); err != nil {
			return 0
		}
		r, errno := e.exec(f)
		binary.LittleEndian.PutUint64(out[:], uint64(r))
		binary.LittleEndian.PutUint32(out[8:], uint32(errno))
		if _, err := os.Stdout.Write(out[:]); err != nil {
			return 1
		}
	}
}

// bpfErrnos are the errnos bpf(2) and perf_event_open(2) answer; anything else is a bug.
var bpfErrnos = map[syscall.Errno]bool{
	0: true, syscall.EPERM: true, syscall.ENOENT: true, syscall.ESRCH: true, syscall.EINTR: true,
	syscall.EBADF: true, syscall.EAGAIN: true, syscall.ENOMEM: true, syscall.EACCES: true,
	syscall.EFAULT: true, syscall.EBUSY: true, syscall.EEXIST: true, syscall.ENOTDIR: true,
	syscall.EISDIR: true, syscall.EINVAL: true, syscall.EMFILE: true, syscall.ENOSPC: true,
	syscall.E2BIG: true, syscall.ERANGE: true, syscall.ENAMETOOLONG: true, syscall.EBADFD: true,
	syscall.ELOOP: true, syscall.EOPNOTSUPP: true, syscall.ENXIO: true, syscall.ENODEV: true,
	syscall.Errno(524): true, // ENOTSUPP
}

func FuzzSupervisor(f *testing.F) {
	seed := func(op byte, cmd, size uint32, ptrKind byte, patches [][2]byte, attr []byte) {
		fr := make([]byte, frameSize)
		fr[0] = op
		binary.LittleEndian.PutUint32(fr[4:], cmd)
		binary.LittleEndian.PutUint32(fr[8:], size)
		fr[16] = ptrKind
		fr[17] = byte(len(patches))
		for i, p := range patches {
			fr[18+2*i], fr[19+2*i] = p[0], p[1]
		}
		copy(fr[frameAttr:], attr)
		for i := range 128 {
			fr[frameScratch+i] = byte(i)
		}
		f.Add(fr)
	}
	for cmd := range uint32(40) {
		seed(0, cmd, 128, 0, nil, nil)
		seed(0, cmd, 128, 0, [][2]byte{{0, patchArrayFD}, {8, patchScratch}, {16, patchScratch}}, nil)
		seed(0, cmd, 128, 0, [][2]byte{{0, patchHashFD}, {8, patchStraddle}, {16, patchUnmapped}}, nil)
		seed(0, cmd, 128, 0, [][2]byte{{0, patchProgFD}, {4, patchBTFFD}, {8, patchKernel}}, nil)
		seed(0, cmd, 4200, 0, nil, nil)
		seed(0, cmd, 128, 1, nil, nil)
		seed(0, cmd, 128, 4, nil, nil)
	}
	seed(1, 0, 0, 0, nil, []byte{1, 0, 0, 0, 128, 0, 0, 0, 10})                 // BPF output event
	seed(1, 0, 0, 0, nil, []byte{2, 0, 0, 0, 128, 0, 0, 0, 0x0e, 3})            // a tracepoint
	seed(1, 0, 0, 0, [][2]byte{{56, patchScratch}}, []byte{8, 0, 0, 0, 128, 0}) // a uprobe of a bad path
	seed(1, 0, 0, 2, nil, nil)

	srv, err := server.New(server.Config{StateDir: f.TempDir(), Log: io.Discard})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	stdin, toHelper, err := os.Pipe()
	if err != nil {
		f.Fatal(err)
	}
	fromHelper, stdout, err := os.Pipe()
	if err != nil {
		f.Fatal(err)
	}
	// The mode goes in the child's environment only: fuzzing workers are this binary too.
	env := append(os.Environ(), helperEnv+"=fuzz")
	_, cmd, err := Start(Config{Argv: []string{os.Args[0]}, Self: os.Args[0], Server: srv, Stdin: stdin, Stdout: stdout,
		Log: io.Discard, Env: env})
	if err != nil {
		f.Fatal(err)
	}
	stdin.Close()
	stdout.Close()
	defer func() { toHelper.Close(); cmd.Wait() }()
	results := make(chan [12]byte)
	go func() {
		var out [12]byte
		for {
			if _, err := io.ReadFull(fromHelper, out[:]); err != nil {
				close(results)
				return
			}
			results <- out
		}
	}()
	var kernel *fuzzEnv
	if os.Geteuid() == 0 {
		if kernel, err = newFuzzEnv(); err != nil {
			kernel = nil // the kernel's bpf(2) is not available: no comparison
		}
	}
	f.Fuzz(func(t *testing.T, fr []byte) {
		if len(fr) < frameSize {
			fr = append(fr, make([]byte, frameSize-len(fr))...)
		}
		fr = fr[:frameSize]
		if _, err := toHelper.Write(fr); err != nil {
			t.Fatalf("the child is gone: %v", err)
		}
		var out [12]byte
		select {
		case o, ok := <-results:
			if !ok {
				t.Fatal("the child ended")
			}
			out = o
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer within 10 s to %x", fr[:24])
		}
		errno := syscall.Errno(binary.LittleEndian.Uint32(out[8:]))
		if errno == syscall.ENOSYS {
			t.Fatalf("ENOSYS: the supervisor died serving %x", fr[:24])
		}
		if !bpfErrnos[errno] {
			t.Fatalf("errno %d (%v) is none bpf(2) gives, for %x", errno, errno, fr[:24])
		}
		if kernel != nil && comparable(fr) {
			_, kerrno := kernel.exec(fr)
			if kerrno != errno {
				t.Errorf("cmd %d size %d: errno %d (%v), the kernel's %d (%v); frame %x",
					binary.LittleEndian.Uint32(fr[4:]), binary.LittleEndian.Uint32(fr[8:]), errno, errno, kerrno, kerrno, fr[:64])
			}
		}
	})
}
