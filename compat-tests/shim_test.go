package compat

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// same fails the test unless the shim's run ended as the kernel's did, with the same output.
func same(t *testing.T, what string, kernel, shim Result) {
	t.Helper()
	if kernel.Code != shim.Code || kernel.Stdout != shim.Stdout {
		t.Errorf("%s differs:\n--- kernel (root)\n%s\n--- shim (ordinary user)\n%s", what, kernel, shim)
	}
}

// TestBpftoolEmptyLists: the kernel may hold other people's programs and maps, so the shape is
// compared: the shim's lists are empty, and bpftool ends as it does on the kernel.
func TestBpftoolEmptyLists(t *testing.T) {
	e := Stage(t, "bpftool")
	for _, args := range [][]string{
		{"prog", "list"}, {"map", "list"}, {"link", "list"},
		{"-j", "prog", "list"}, {"-j", "map", "list"}, {"-j", "link", "list"},
	} {
		argv := append([]string{"bpftool"}, args...)
		k := e.Kernel(t, 30*time.Second, argv...)
		s := e.Shim(t, 30*time.Second, argv...)
		want := ""
		if args[0] == "-j" {
			want = "[]"
		}
		if s.Code != k.Code || strings.TrimSpace(s.Stdout) != want || s.Stderr != "" {
			t.Errorf("%s: want an empty list and exit %d\n--- kernel\n%s\n--- shim\n%s", strings.Join(argv, " "), k.Code, k, s)
		}
	}
}

// TestBpftoolKernelBTF: BTF object 1 is the kernel's vmlinux BTF, listed, shown and dumped as
// the kernel does.
func TestBpftoolKernelBTF(t *testing.T) {
	e := Stage(t, "bpftool")
	k := e.Kernel(t, 30*time.Second, "bpftool", "btf", "list")
	s := e.Shim(t, 30*time.Second, "bpftool", "btf", "list")
	first, _, _ := strings.Cut(k.Stdout, "\n")
	if !strings.HasPrefix(first, "1: name [vmlinux]") {
		t.Fatalf("the kernel's first BTF is not vmlinux:\n%s", k)
	}
	if s.Code != k.Code || s.Stdout != first+"\n" {
		t.Errorf("btf list: want %q\n%s", first, s)
	}
	same(t, "btf show id 1", e.Kernel(t, 30*time.Second, "bpftool", "-j", "btf", "show", "id", "1"),
		e.Shim(t, 30*time.Second, "bpftool", "-j", "btf", "show", "id", "1"))
	// The whole 5 MB of BTF goes through OBJ_GET_INFO_BY_FD's partial copies.
	k = e.Kernel(t, 2*time.Minute, "bpftool", "btf", "dump", "id", "1")
	s = e.Shim(t, 2*time.Minute, "bpftool", "btf", "dump", "id", "1")
	if k.Code != 0 || len(k.Stdout) < 1<<20 {
		t.Fatalf("the kernel's BTF dump is short:\n%.300s", k)
	}
	if s.Code != 0 || sha256.Sum256([]byte(s.Stdout)) != sha256.Sum256([]byte(k.Stdout)) {
		t.Errorf("btf dump id 1 differs: kernel %d bytes, shim %d bytes (exit %d)\n%.300s", len(k.Stdout), len(s.Stdout), s.Code, s.Stderr)
	}
	same(t, "btf show id 2 (none)", e.Kernel(t, 30*time.Second, "bpftool", "btf", "show", "id", "999999"),
		e.Shim(t, 30*time.Second, "bpftool", "btf", "show", "id", "999999"))
}

// TestBpftraceStartup: bpftrace passes its root check and its walk of the kernel's BTF under the
// shim, as an ordinary user, and goes on to attach its probe.
func TestBpftraceStartup(t *testing.T) {
	e := Stage(t, "bpftrace")
	u := e.AsUser(t, time.Minute, "bpftrace", "-e", "BEGIN { exit(); }")
	if !strings.Contains(u.Stderr, "only supports running as the root user") {
		t.Fatalf("bpftrace as the ordinary user without the shim did not stop at its root check:\n%s", u)
	}
	s := e.Shim(t, time.Minute, "bpftrace", "-e", "BEGIN { exit(); }")
	if strings.Contains(s.Stderr, "root user") || !strings.HasPrefix(s.Stdout, "Attaching 1 probe...") {
		t.Errorf("bpftrace under the shim did not get past its root check:\n%s", s)
	}
	if strings.Contains(s.Stderr, "BTF") || strings.Contains(s.Stderr, "ebpfu-shim:") {
		t.Errorf("bpftrace under the shim complained:\n%s", s)
	}
}

// TestIdentityOfWorkloads: the tool is root, the processes it starts are not.
func TestIdentityOfWorkloads(t *testing.T) {
	e := Stage(t)
	s := e.Shim(t, 30*time.Second, "id", "-u")
	if s.Code != 0 || s.Stdout != "0\n" {
		t.Errorf("id -u as the tool: want 0\n%s", s)
	}
	s = e.Shim(t, 30*time.Second, "sh", "-c", "id -u")
	if want := strconv.Itoa(e.UID) + "\n"; s.Code != 0 || s.Stdout != want {
		t.Errorf("id -u in a workload of the tool: want %q\n%s", want, s)
	}
	s = e.Shim(t, 30*time.Second, "sh", "-c", "exit 5")
	if s.Code != 5 {
		t.Errorf("exit status of the tool: want 5\n%s", s)
	}
	s = e.Shim(t, 30*time.Second, "no-such-tool-ebpfu")
	if s.Code != 127 {
		t.Errorf("a missing tool: want exit 127\n%s", s)
	}
}

// TestVirtualBPFFS: /sys/fs/bpf is a bpffs for every process under the shim, and directories
// made there last (they live in the user's state directory).
func TestVirtualBPFFS(t *testing.T) {
	e := Stage(t)
	dir := fmt.Sprintf("/sys/fs/bpf/compat-%d", os.Getpid())
	s := e.Shim(t, 30*time.Second, "sh", "-c", "stat -f -c %T /sys/fs/bpf && mkdir "+dir+" && ls -d "+dir)
	if want := "bpf_fs\n" + dir + "\n"; s.Code != 0 || s.Stdout != want {
		t.Errorf("bpffs: want %q\n%s", want, s)
	}
	s = e.Shim(t, 30*time.Second, "sh", "-c", "rmdir "+dir+" && ls /sys/fs/bpf")
	if s.Code != 0 || strings.Contains(s.Stdout, "compat-") && strings.Contains(s.Stdout, strconv.Itoa(os.Getpid())) {
		t.Errorf("rmdir in bpffs by the next shim:\n%s", s)
	}
	// Without the shim, /sys/fs/bpf is not a bpffs here.
	u := e.AsUser(t, 30*time.Second, "stat", "-f", "-c", "%T", "/sys/fs/bpf")
	if u.Stdout == "bpf_fs\n" {
		t.Skip("/sys/fs/bpf is a real bpffs on this machine: nothing virtual to compare")
	}
}

// TestContainer: the same inside an unprivileged container (user, pid and mount namespaces).
func TestContainer(t *testing.T) {
	e := Stage(t, "bpftool", "unshare")
	probe := e.AsUser(t, 30*time.Second, "unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount", "--mount-proc", "true")
	if probe.Code != 0 {
		t.Skipf("unprivileged user namespaces are not available:\n%s", probe)
	}
	k := e.Kernel(t, 30*time.Second, "bpftool", "btf", "list")
	first, _, _ := strings.Cut(k.Stdout, "\n")
	s := e.Container(t, 30*time.Second, "bpftool", "btf", "list")
	if s.Code != 0 || s.Stdout != first+"\n" {
		t.Errorf("btf list in a container: want %q\n%s", first, s)
	}
	s = e.Container(t, 30*time.Second, "bpftool", "prog", "list")
	if s.Code != 0 || s.Stdout != "" {
		t.Errorf("prog list in a container: want an empty list\n%s", s)
	}
	prog := `BEGIN { printf("in a container %d\n", 7); @n = count(); exit(); }`
	same(t, "bpftrace in a container", e.Kernel(t, time.Minute, "bpftrace", "-e", prog),
		e.Container(t, time.Minute, "bpftrace", "-e", prog))
	pin := fmt.Sprintf("/sys/fs/bpf/compat-container-%d", os.Getpid())
	s = e.Container(t, time.Minute, "sh", "-c", "bpftool map create "+pin+" type array key 4 value 8 entries 2 name c && "+
		"bpftool map update pinned "+pin+" key 1 0 0 0 value 7 0 0 0 0 0 0 0 && bpftool map dump pinned "+pin+"; rm "+pin)
	if want := "key: 00 00 00 00  value: 00 00 00 00 00 00 00 00\nkey: 01 00 00 00  value: 07 00 00 00 00 00 00 00\nFound 2 elements\n"; s.Code != 0 || s.Stdout != want {
		t.Errorf("bpftool maps in a container: want %q\n%s", want, s)
	}
}

// TestBpftraceBeginEnd: bpftrace programs of BEGIN and END blocks (printf, maps, count, sum,
// hist, stats, loops, exit) print under the shim what they print on the kernel.
func TestBpftraceBeginEnd(t *testing.T) {
	e := Stage(t, "bpftrace")
	for _, prog := range []string{
		`BEGIN { printf("hello %d %s\n", 42, "xyz"); exit(); }`,
		`BEGIN { @a = count(); @b[1] = 5; @c["x"] = sum(3); @c["y"] = sum(4); exit(); }`,
		`BEGIN { @m[1, 2] = 3; @h = hist(5); @h = hist(700); @l = lhist(3, 0, 10, 2); @s = stats(10); @s = stats(20); exit(); }`,
		`BEGIN { $i = 0; while ($i < 3) { printf("%d\n", $i); $i++; } exit(); }`,
		`BEGIN { @x = 1; exit(); } END { printf("end %d\n", @x); clear(@x); }`,
		`BEGIN { printf("%s %d\n", comm, pid > 0); print(123); exit(); }`,
	} {
		k := e.Kernel(t, time.Minute, "bpftrace", "-e", prog)
		s := e.Shim(t, time.Minute, "bpftrace", "-e", prog)
		same(t, prog, k, s)
	}
}
