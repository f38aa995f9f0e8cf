package compat

import (
	"strings"
	"testing"
	"time"
)

// KernelTraced runs a tool as root against the kernel with tracefs mounted at
// /sys/kernel/tracing in a private mount namespace (it is not mounted here by default).
func (e *Env) KernelTraced(t testing.TB, timeout time.Duration, argv ...string) Result {
	t.Helper()
	return e.Kernel(t, timeout, append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || exit 99; exec "$@"`, "sh"}, argv...)...)
}

// TestTracefsFiles: the files tools read in tracefs (an event's format and id, the event list,
// directory listings) read under the shim, for an ordinary user, as the kernel's do for root.
func TestTracefsFiles(t *testing.T) {
	e := Stage(t, "unshare")
	script := `cd /sys/kernel/tracing && cat events/syscalls/sys_enter_openat/format events/syscalls/sys_exit_openat/id &&
ls events/syscalls | wc -l && ls events | md5sum && md5sum < available_events && stat -f -c %T . &&
test -r events/sched/sched_switch/format && test -d events/syscalls && ! test -e events/nosuch &&
cat available_filter_functions; echo "rc $?"; ls /sys/kernel/debug/tracing; echo "rc $?"`
	k := e.KernelTraced(t, time.Minute, "sh", "-c", script)
	if k.Code == 99 {
		t.Skipf("cannot mount tracefs for the kernel's run:\n%s", k)
	}
	s := e.Shim(t, time.Minute, "sh", "-c", script)
	same(t, "tracefs files", k, s)
	// Kernel's stderr names the programs that failed (cat, ls); the shim's must say the same.
	if k.Stderr != s.Stderr {
		t.Errorf("tracefs errors differ:\n--- kernel\n%s--- shim\n%s", k.Stderr, s.Stderr)
	}
}

// TestBpftraceListsTracepoints: bpftrace lists tracepoints and their arguments from tracefs as on
// the kernel.
func TestBpftraceListsTracepoints(t *testing.T) {
	e := Stage(t, "bpftrace", "unshare")
	for _, args := range [][]string{
		{"-l", "tracepoint:syscalls:*"},
		{"-l", "tracepoint:sched:*"},
		{"-lv", "tracepoint:syscalls:sys_enter_openat"},
		{"-lv", "tracepoint:syscalls:sys_exit_read*"},
	} {
		argv := append([]string{"bpftrace"}, args...)
		k := e.KernelTraced(t, time.Minute, argv...)
		s := e.Shim(t, time.Minute, argv...)
		if k.Code != 0 || len(k.Stdout) < 20 {
			t.Fatalf("%s on the kernel:\n%s", strings.Join(argv, " "), k)
		}
		same(t, strings.Join(argv, " "), k, s)
	}
}

// TestKernelProbesRefused: tools that need what only the kernel can trace (its tracepoints,
// kprobes) end at once with the tool's own error and a one-line reason from the shim, as they
// would on a kernel without the feature: never a hang, never a silent empty trace.
func TestKernelProbesRefused(t *testing.T) {
	e := Stage(t, "bpftrace", "opensnoop", "mountsnoop", "execsnoop")
	for _, c := range []struct {
		argv   []string
		reason string // in the shim's line
		tool   string // in the tool's own error
	}{
		{[]string{"opensnoop"}, "tracepoint syscalls:sys_enter_openat: kernel tracepoints are not supported", "failed to attach BPF programs"},
		{[]string{"mountsnoop"}, "tracepoint syscalls:sys_enter_mount: kernel tracepoints are not supported", "failed to attach BPF programs"},
		{[]string{"execsnoop"}, "tracepoint syscalls:sys_enter_execve: kernel tracepoints are not supported", "failed to attach BPF programs"},
		{[]string{"bpftrace", "-e", `tracepoint:syscalls:sys_enter_openat { printf("%s\n", str(args->filename)); }`},
			"tracepoint syscalls:sys_enter_openat: kernel tracepoints are not supported", "ERROR: Error attaching probe: tracepoint:syscalls:sys_enter_openat"},
		{[]string{"bpftrace", "-e", `tracepoint:sched:sched_process_exec { @[comm] = count(); }`},
			"tracepoint sched:sched_process_exec: kernel tracepoints are not supported", "ERROR: Error attaching probe"},
		{[]string{"bpftrace", "-e", `kprobe:do_nanosleep { @ = count(); }`}, "kprobes are not supported", "ERROR: Error attaching probe: 'kprobe:do_nanosleep'"},
	} {
		s := e.Shim(t, time.Minute, c.argv...)
		var reasons []string
		for _, l := range strings.Split(s.Stderr, "\n") {
			if strings.HasPrefix(l, "ebpfu-shim: ") {
				reasons = append(reasons, l)
			}
		}
		if s.Code == 0 || len(reasons) == 0 || !strings.Contains(reasons[0], c.reason) || !strings.Contains(s.Stderr, c.tool) {
			t.Errorf("%s: want a failure with the reason %q and the tool's %q\n%s", strings.Join(c.argv, " "), c.reason, c.tool, s)
		}
	}
}

// TestStatsnoopAsOnKernel: statsnoop decides from the debugfs path alone which tracepoints exist;
// there is no debugfs here, so on the kernel it attaches nothing and waits for ^C, printing its
// header: the same under the shim.
func TestStatsnoopAsOnKernel(t *testing.T) {
	e := Stage(t, "statsnoop", "timeout")
	k := e.Kernel(t, time.Minute, "timeout", "-s", "INT", "2", "statsnoop")
	s := e.AsUser(t, time.Minute, "timeout", "-s", "INT", "2", e.ShimPath(), "statsnoop")
	same(t, "statsnoop", k, s)
}
