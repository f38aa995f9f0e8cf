package verifier

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// kernel loads programs into the running kernel's verifier, the oracle of these tests. It needs
// root; every object it creates is closed again so the kernel's lists end as they began.
type kernel struct {
	t    testing.TB
	maps map[int32]program.MapInfo // our view of the kernel maps, by fd
}

func newKernel(t testing.TB) *kernel {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the kernel oracle needs root")
	}
	k := &kernel{t: t, maps: map[int32]program.MapInfo{}}
	if _, errno := k.load(program.SocketFilter, prog(mov(0, 0), exit()), false); errno == syscall.EPERM {
		t.Skip("the kernel refuses bpf(2) here")
	}
	return k
}

// createMap makes a kernel map and returns its fd, closed at the end of the test.
func (k *kernel) createMap(typ, key, value, entries, flags uint32) int32 {
	k.t.Helper()
	attr := [5]uint32{typ, key, value, entries, flags}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		k.t.Fatalf("kernel MAP_CREATE: %v", errno)
	}
	k.t.Cleanup(func() { unix.Close(int(fd)) })
	k.maps[int32(fd)] = program.MapInfo{ID: uint32(fd), Type: typ, KeySize: key, ValueSize: value, MaxEntries: entries, Flags: flags}
	return int32(fd)
}

// resolve is the Options.Maps of the programs the kernel also loads.
func (k *kernel) resolve(src uint8, ref int32) (program.MapInfo, error) {
	m, ok := k.maps[ref]
	if !ok {
		return m, refuse(syscall.EBADF, "fd %d is not pointing to valid bpf_map", ref)
	}
	return m, nil
}

// load runs the kernel's verifier: it returns the log and 0 or the errno.
func (k *kernel) load(typ program.Type, insns []isa.Instruction, gpl bool) (string, syscall.Errno) {
	code := isa.Encode(insns)
	license := []byte("Dual MIT/GPL\x00")
	if !gpl {
		license = []byte("MIT\x00")
	}
	logBuf := make([]byte, 1<<16)
	var attr [128]byte
	put32 := func(off int, v uint32) { *(*uint32)(unsafe.Pointer(&attr[off])) = v }
	put64 := func(off int, v uint64) { *(*uint64)(unsafe.Pointer(&attr[off])) = v }
	put32(0, uint32(typ))
	put32(4, uint32(len(insns)))
	if len(code) > 0 {
		put64(8, uint64(uintptr(unsafe.Pointer(&code[0]))))
	}
	put64(16, uint64(uintptr(unsafe.Pointer(&license[0]))))
	put32(24, 1)
	put32(28, uint32(len(logBuf)))
	put64(32, uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
	put32(40, 0x6122c)
	fd, _, errno := unix.Syscall(unix.SYS_BPF, 5, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno == 0 {
		unix.Close(int(fd))
	}
	if i := bytes.IndexByte(logBuf, 0); i >= 0 {
		logBuf = logBuf[:i]
	}
	return string(logBuf), errno
}

// lastError returns the line of a refusal log that says why: the one before "processed".
func lastError(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	for i := len(lines) - 1; i > 0; i-- {
		if strings.HasPrefix(lines[i], "processed ") {
			return lines[i-1]
		}
	}
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	return ""
}
