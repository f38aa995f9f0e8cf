package shim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ebpfu/ebpfu/server"
	"golang.org/x/sys/unix"
)

// The test binary plays three parts: the tests, the tool's init (InitArg), and the supervised
// tool itself, whose behaviour the environment variable helperEnv selects.
const helperEnv = "EBPFU_SHIM_TEST_HELPER"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		os.Exit(Init(os.Args[2:]))
	}
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

// helper is the supervised tool: it makes the calls a test asks for and prints what it got.
func helper(mode string) int {
	name, arg, _ := strings.Cut(mode, ":")
	switch name {
	case "ids":
		var r, e, s uint32
		unix.Syscall(unix.SYS_GETRESUID, uintptr(unsafe.Pointer(&r)), uintptr(unsafe.Pointer(&e)), uintptr(unsafe.Pointer(&s)))
		hdr := [2]uint32{capVersion3, 0}
		var data [6]uint32
		unix.Syscall(unix.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data)), 0)
		fmt.Printf("tool %d %d %d %d res %d %d %d caps %x %x\n", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), r, e, s, data[0], data[3])
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), helperEnv+"=childids")
		child.Stdout = os.Stdout
		if err := child.Run(); err != nil {
			fmt.Println("child:", err)
		}
	case "childids":
		fmt.Printf("child %d %d\n", os.Getuid(), os.Geteuid())
	case "toolpid":
		fmt.Printf("tool %v\n", os.Getenv(ToolPIDEnv) == strconv.Itoa(os.Getpid()))
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), helperEnv+"=childpid")
		child.Stdout = os.Stdout
		if err := child.Run(); err != nil {
			fmt.Println("child:", err)
		}
	case "childpid":
		fmt.Printf("child %v %v\n", os.Getenv(ToolPIDEnv) == strconv.Itoa(os.Getppid()), os.Getenv(ToolPIDEnv) == strconv.Itoa(os.Getpid()))
	case "exit":
		n, _ := strconv.Atoi(arg)
		return n
	case "loop":
		n, _ := strconv.Atoi(arg)
		start := time.Now()
		for range n {
			unix.RawSyscall(unix.SYS_GETEUID, 0, 0, 0)
		}
		notified := time.Since(start)
		start = time.Now()
		for range n {
			unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		plain := time.Since(start)
		fmt.Printf("%d %d\n", notified.Nanoseconds()/int64(n), plain.Nanoseconds()/int64(n))
	case "bpffs":
		return helperBPFFS()
	case "lookup":
		n, _ := strconv.Atoi(arg)
		ns, err := timeLookups(n)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println(ns)
	case "sleep":
		time.Sleep(time.Minute)
	case "fuzz":
		return fuzzHelper()
	case "bpf":
		// A bpf(2) call whose answer the test checks: BTF_GET_NEXT_ID(0).
		var attr [8]byte
		_, _, e := unix.Syscall(unix.SYS_BPF, 23, uintptr(unsafe.Pointer(&attr[0])), 8)
		fmt.Printf("errno %d next %d\n", e, binary.LittleEndian.Uint32(attr[4:]))
	}
	return 0
}

// helperBPFFS exercises the virtual bpffs and /proc's views of a bpf fd.
func helperBPFFS() int {
	check := func(what string, err error) {
		if err != nil {
			fmt.Printf("%s: %v\n", what, err)
		}
	}
	var sfs unix.Statfs_t
	check("statfs", unix.Statfs("/sys/fs/bpf", &sfs))
	fmt.Printf("magic %x\n", sfs.Type)
	check("mkdir", os.Mkdir("/sys/fs/bpf/dir", 0o700))
	fi, err := os.Stat("/sys/fs/bpf/dir")
	check("stat", err)
	if err == nil {
		fmt.Printf("dir %v\n", fi.IsDir())
	}
	ents, err := os.ReadDir("/sys/fs/bpf")
	check("readdir", err)
	for _, e := range ents {
		fmt.Printf("entry %s\n", e.Name())
	}
	check("rmdir", os.Remove("/sys/fs/bpf/dir"))
	_, err = os.Stat("/sys/fs/bpf/dir")
	fmt.Printf("after rmdir: %v\n", err)
	_, err = os.OpenFile("/sys/fs/bpf/new", os.O_CREATE|os.O_WRONLY, 0o600)
	fmt.Printf("create: %v\n", err)

	var attr [16]byte
	attr[0] = 1
	fd, _, e := unix.Syscall(unix.SYS_BPF, 19, uintptr(unsafe.Pointer(&attr[0])), 16)
	if e != 0 {
		fmt.Printf("BTF_GET_FD_BY_ID: %v\n", e)
		return 1
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	check("readlink", err)
	fmt.Printf("link %s\n", link)
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(int(fd)))
	check("fdinfo", err)
	for _, line := range strings.Split(string(info), "\n") {
		if strings.HasPrefix(line, "btf_id:") || strings.HasPrefix(line, "flags:") {
			fmt.Printf("fdinfo %s\n", line)
		}
	}
	// A dup is recognised too: the server knows the file, not the number.
	dup, _ := unix.Dup(int(fd))
	link, _ = os.Readlink("/proc/self/fd/" + strconv.Itoa(dup))
	fmt.Printf("dup link %s\n", link)
	link, _ = os.Readlink("/proc/self/fd/0")
	fmt.Printf("stdin is ours: %v\n", strings.HasPrefix(link, "anon_inode:"))
	return 0
}

// runHelper runs the test binary as a tool in mode under a supervisor served by this process
// and returns what it printed and how it ended.
func runHelper(t *testing.T, mode string) (string, *os.ProcessState) {
	t.Helper()
	srv, err := server.New(server.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	t.Setenv(helperEnv, mode)
	_, cmd, err := Start(Config{Argv: []string{os.Args[0]}, Self: os.Args[0], Server: srv, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	b, _ := os.ReadFile(out.Name())
	return string(b), cmd.ProcessState
}

func TestIdentityIllusion(t *testing.T) {
	out, st := runHelper(t, "ids")
	if !st.Success() {
		t.Fatalf("helper failed: %v\n%s", st, out)
	}
	want := fmt.Sprintf("tool 0 0 0 0 res 0 0 0 caps ffffffff 1ff\nchild %d %d\n", os.Getuid(), os.Geteuid())
	if out != want {
		t.Errorf("identities:\n got %q\nwant %q", out, want)
	}
}

// TestToolPID: the tool's environment names its pid (an agent preloaded through it stays out of
// the tool), and its children inherit it, so they know they are not the tool.
func TestToolPID(t *testing.T) {
	out, _ := runHelper(t, "toolpid")
	if want := "tool true\nchild true false\n"; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestExitStatus(t *testing.T) {
	_, st := runHelper(t, "exit:7")
	if st.ExitCode() != 7 {
		t.Errorf("exit status %d, want 7", st.ExitCode())
	}
}

func TestBPFServed(t *testing.T) {
	out, _ := runHelper(t, "bpf")
	if out != "errno 0 next 1\n" {
		t.Errorf("BTF_GET_NEXT_ID(0) under the shim: %q, want the kernel's BTF id 1", out)
	}
}

func TestVirtualBPFFS(t *testing.T) {
	out, st := runHelper(t, "bpffs")
	want := strings.Join([]string{
		"magic cafe4a11",
		"dir true",
		"entry dir",
		"after rmdir: stat /sys/fs/bpf/dir: no such file or directory",
		"create: open /sys/fs/bpf/new: permission denied",
		"link anon_inode:btf",
		"fdinfo flags:\t02000000",
		"fdinfo btf_id:\t1",
		"dup link anon_inode:btf",
		"stdin is ours: false",
	}, "\n") + "\n"
	if !st.Success() || out != want {
		t.Errorf("bpffs and /proc views (%v):\n got %q\nwant %q", st, out, want)
	}
}

func TestToolNotFound(t *testing.T) {
	srv, err := server.New(server.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Start(Config{Argv: []string{"no-such-tool-ebpfu"}, Self: os.Args[0], Server: srv}); err == nil {
		t.Error("a missing tool started")
	}
}

// buildShim builds cmd/ebpfu-shim for the tests that need the real command (signals, death).
func buildShim(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir, "../cmd/ebpfu-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ebpfu-shim: %v\n%s", err, out)
	}
	return filepath.Join(dir, "ebpfu-shim")
}

func TestShimCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := buildShim(t)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())

	// The exit status is the tool's.
	cmd := exec.Command(bin, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=exit:3")
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("exit status %v, want 3", err)
	}

	// SIGTERM to the shim reaches the tool, and the shim dies of it as the tool did.
	cmd = exec.Command(bin, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=sleep")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("after SIGTERM the shim ended with %v, want death by SIGTERM", cmd.ProcessState)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Error("SIGTERM did not end the tool")
	}

	// With the supervisor gone, a filtered call gets ENOSYS: the kernel's behaviour.
	var out bytes.Buffer
	cmd = exec.Command(bin, "sh", "-c", "kill -9 $PPID; sleep 0.2; exec \"$0\"", os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=bpf")
	cmd.Stdout = &out
	cmd.Run()
	time.Sleep(500 * time.Millisecond)
	if got := out.String(); got != fmt.Sprintf("errno %d next 0\n", syscall.ENOSYS) {
		t.Errorf("bpf(2) after the supervisor died: %q, want ENOSYS", got)
	}
}

func TestFilterProgram(t *testing.T) {
	prog, err := buildFilter(filterRules())
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) > 4096 || len(prog) < len(syscalls) {
		t.Fatalf("filter of %d instructions for %d syscalls", len(prog), len(syscalls))
	}
	// Run the filter on a few syscalls with a tiny classic-BPF interpreter.
	cases := []struct {
		nr   uint32
		arch uint32
		args [6]uint64
		want uint32
	}{
		{unix.SYS_BPF, unix.AUDIT_ARCH_X86_64, [6]uint64{}, unix.SECCOMP_RET_USER_NOTIF},
		{unix.SYS_GETPPID, unix.AUDIT_ARCH_X86_64, [6]uint64{}, unix.SECCOMP_RET_ALLOW},
		{unix.SYS_BPF, 0x40000003, [6]uint64{}, unix.SECCOMP_RET_ALLOW},                             // i386
		{unix.SYS_BPF | x32SyscallBit, unix.AUDIT_ARCH_X86_64, [6]uint64{}, unix.SECCOMP_RET_ALLOW}, // x32
		{unix.SYS_IOCTL, unix.AUDIT_ARCH_X86_64, [6]uint64{3, 0x2400}, unix.SECCOMP_RET_USER_NOTIF},
		{unix.SYS_IOCTL, unix.AUDIT_ARCH_X86_64, [6]uint64{3, 0x40042408}, unix.SECCOMP_RET_USER_NOTIF},
		{unix.SYS_IOCTL, unix.AUDIT_ARCH_X86_64, [6]uint64{1, unix.TCGETS}, unix.SECCOMP_RET_ALLOW},
		{unix.SYS_OPENAT, unix.AUDIT_ARCH_X86_64, [6]uint64{}, unix.SECCOMP_RET_USER_NOTIF},
		{unix.SYS_GETEUID, unix.AUDIT_ARCH_X86_64, [6]uint64{}, unix.SECCOMP_RET_USER_NOTIF},
		{unix.SYS_READ, unix.AUDIT_ARCH_X86_64, [6]uint64{}, unix.SECCOMP_RET_ALLOW},
	}
	for _, c := range cases {
		d := seccompData{Nr: int32(c.nr), Arch: c.arch, Args: c.args}
		if got := runClassicBPF(t, prog, &d); got != c.want {
			t.Errorf("nr %#x arch %#x args %x: filter says %#x, want %#x", c.nr, c.arch, c.args[:2], got, c.want)
		}
	}
}

// runClassicBPF interprets the subset of classic BPF that buildFilter emits.
func runClassicBPF(t *testing.T, prog []unix.SockFilter, d *seccompData) uint32 {
	data := unsafe.Slice((*byte)(unsafe.Pointer(d)), unsafe.Sizeof(*d))
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			hit := acc == in.K
			if in.Code&0xf0 == unix.BPF_JGE {
				hit = acc >= in.K
			}
			if hit {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: code %#x not interpreted", pc, in.Code)
		}
	}
	t.Fatal("the filter fell off its end")
	return 0
}

// timeLookups creates a hash map with one element and returns the mean time in ns of n
// BPF_MAP_LOOKUP_ELEM calls on it.
func timeLookups(n int) (int64, error) {
	bpf := func(cmd int, attr []byte) (uintptr, error) {
		r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		if e != 0 {
			return 0, e
		}
		return r, nil
	}
	create := make([]byte, 72)
	binary.LittleEndian.PutUint32(create[0:], 1) // BPF_MAP_TYPE_HASH
	binary.LittleEndian.PutUint32(create[4:], 4)
	binary.LittleEndian.PutUint32(create[8:], 8)
	binary.LittleEndian.PutUint32(create[12:], 16)
	fd, err := bpf(0, create)
	if err != nil {
		return 0, fmt.Errorf("MAP_CREATE: %w", err)
	}
	defer unix.Close(int(fd))
	key, value := make([]byte, 4), make([]byte, 8)
	elem := make([]byte, 32)
	binary.LittleEndian.PutUint32(elem[0:], uint32(fd))
	binary.LittleEndian.PutUint64(elem[8:], uint64(uintptr(unsafe.Pointer(&key[0]))))
	binary.LittleEndian.PutUint64(elem[16:], uint64(uintptr(unsafe.Pointer(&value[0]))))
	if _, err := bpf(2, elem); err != nil {
		return 0, fmt.Errorf("MAP_UPDATE_ELEM: %w", err)
	}
	start := time.Now()
	for range n {
		if _, err := bpf(1, elem); err != nil {
			return 0, fmt.Errorf("MAP_LOOKUP_ELEM: %w", err)
		}
	}
	return time.Since(start).Nanoseconds() / int64(n), nil
}

// BenchmarkMapLookup measures BPF_MAP_LOOKUP_ELEM on a hash map through the shim against the
// kernel's (as root), in one run.
func BenchmarkMapLookup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the kernel's side needs root")
	}
	kernel, err := timeLookups(b.N)
	if err != nil {
		b.Skipf("the kernel's bpf(2): %v", err)
	}
	srv, err := server.New(server.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	out, _ := os.CreateTemp(b.TempDir(), "out")
	defer out.Close()
	b.Setenv(helperEnv, "lookup:"+strconv.Itoa(b.N))
	_, cmd, err := Start(Config{Argv: []string{os.Args[0]}, Self: os.Args[0], Server: srv, Stdout: out})
	if err != nil {
		b.Fatal(err)
	}
	cmd.Wait()
	res, _ := os.ReadFile(out.Name())
	var shim float64
	if _, err := fmt.Sscan(string(res), &shim); err != nil {
		b.Fatalf("helper printed %q", res)
	}
	b.ReportMetric(shim, "ns/shim-lookup")
	b.ReportMetric(float64(kernel), "ns/kernel-lookup")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkNotifiedCall measures a notified syscall's round trip through the supervisor
// (geteuid, answered 0) against a syscall the filter lets through (getppid), in one run.
func BenchmarkNotifiedCall(b *testing.B) {
	srv, err := server.New(server.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	out, _ := os.CreateTemp(b.TempDir(), "out")
	defer out.Close()
	b.Setenv(helperEnv, "loop:"+strconv.Itoa(b.N))
	b.ResetTimer()
	_, cmd, err := Start(Config{Argv: []string{os.Args[0]}, Self: os.Args[0], Server: srv, Stdout: out})
	if err != nil {
		b.Fatal(err)
	}
	cmd.Wait()
	b.StopTimer()
	res, _ := os.ReadFile(out.Name())
	var notified, plain float64
	if _, err := fmt.Sscan(string(res), &notified, &plain); err != nil {
		b.Fatalf("helper printed %q", res)
	}
	b.ReportMetric(notified, "ns/notified")
	b.ReportMetric(plain, "ns/unfiltered")
	b.ReportMetric(0, "ns/op")
}
