package compat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// builds holds the C programs the feature comparisons build, by name, each built once.
var builds sync.Map // name -> *cBuild

type cBuild struct {
	once sync.Once
	path string
	err  error
}

// buildC compiles testdata/uprobes/src into e.Dir/name with gcc (g++ for .cc) and flags, once
// per test binary.
func buildC(t *testing.T, e *Env, name, src string, flags ...string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(name, &cBuild{})
	b := v.(*cBuild)
	b.once.Do(func() {
		b.path = filepath.Join(e.Dir, name)
		cc := "gcc"
		if strings.HasSuffix(src, ".cc") {
			cc = "g++"
		}
		args := append(append([]string{}, flags...), "-o", b.path, filepath.Join(repoRoot(), "compat-tests", "testdata", "uprobes", src))
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// TestBpftraceUprobeFeatures: more of bpftrace's language on uprobes, each one-liner run under
// the shim as the ordinary user and on the kernel as root on the same workload, printing the
// same. W stands for the workload's path, L for the library it loads with dlopen. Programs of
// one probe point run in the kernel's order (the newest attachment first). The stack cases run
// the workload with address space randomisation off (setarch -R), so that the addresses the two
// runs print are the same, and make bpftrace exit at done() while the workload lives (work
// stay), so that the addresses it prints in events are named.
func TestBpftraceUprobeFeatures(t *testing.T) {
	e := Stage(t, "bpftrace", "gcc", "setarch")
	work := workload(t, e)
	// every function of this build starts with push %rbp: the kernel takes the caller from [sp]
	work0 := buildC(t, e, "uprobe-work-O0", "work.c", "-O0", "-g", "-fno-omit-frame-pointer", "-lpthread")
	lib := buildC(t, e, "libuprobe-dl.so", "lib.c", "-O2", "-shared", "-fPIC")
	scale := symbolOffset(t, work, "scale")
	exc := ""
	if _, err := exec.LookPath("g++"); err == nil {
		exc = buildC(t, e, "uprobe-exc", "exc.cc", "-O2", "-g")
	}
	for _, tc := range []struct {
		name, prog string
		work       string // the workload's build (default: work)
		args       string
		norand     bool     // run the workload under setarch -R
		flags      []string // bpftrace's options
	}{
		{name: "builtins, arguments and strings", prog: fmt.Sprintf(`uprobe:W:main { join(arg1); join(arg1, ","); }
			uprobe:W:add /arg0 < 3/ { printf("%%d %%u %%x %%lld %%c %%d %%d\n", arg0, arg1, arg1, (int64)arg0 - 5, 65 + arg0, arg2 > 0, arg5 >= 0); }
			uprobe:W:greet { printf("%%d %%d %%s|%%s|\n", cpu >= 0, cgroup, probe, kstack); @c[cgroup, pid == cpid] = count();
				@k[kstack] = count(); }
			uprobe:W:greet { printf("%%r %%s|%%s\n", buf(arg0, 4), str(arg0, 2), str(arg0, 1)); @b[buf(arg0, 3)] = count();
				}
			uprobe:W:seven { printf("%%d %%d %%d %%d %%d %%d %%d\n", arg0, arg1, arg2, arg3, arg4, arg5, sarg0); @s[sarg0] = count(); }
			uprobe:W:greet /strncmp(str(arg0), "bo", 2) == 0/ { @bo[str(arg0)] = count(); }
			uretprobe:W:greet { printf("r1 %%d\n", retval); } uretprobe:W:greet { printf("r2 %%d\n", retval); }`)},
		// bpftrace 0.17 cannot load a list's program for a function that another probe names
		// too ("unreachable insn", on the kernel as well): the lists have a case of their own
		{name: "probe lists, wildcards and addresses", prog: fmt.Sprintf(`uprobe:W:ad*,uprobe:W:greet { @[probe] = count(); }
			uprobe:W:%#x { @addr = count(); }`, scale)},
		{name: "map functions, time and DWARF arguments", prog: `uprobe:W:add /arg0 % 100 == 0/ { @[arg0] = sum(arg0); @z = count(); @x[1] = 1; delete(@x[1]);
				@d[arg0] = 1; delete(@d[arg0]); }
			uprobe:W:greet { @t[tid] = nsecs; @args[str(args->name)] = sum(args->times); } uretprobe:W:greet /@t[tid]/ { @n = count();
				@later = sum(nsecs > @t[tid]); @e = sum(elapsed > 0); delete(@t[tid]); time("%Y\n"); }
			END { print(@, 3); zero(@z); print(@z); clear(@); print(@); print(@x); }`},
		// the signal arrives on the way back to user space: the actions after signal() and the
		// programs of the same point that run after it (the older attachment) see the hit
		{name: "signal", prog: `uprobe:W:greet { @second = count(); }
			uprobe:W:greet { @g = count(); if (arg1 == 2) { signal("KILL"); @after = count(); } }
			uprobe:W:scale { @s = count(); }`, flags: []string{"--unsafe"}},
		{name: "library loaded with dlopen", prog: `uprobe:L:libfn { @ = count(); @s = sum(arg0); }
			uretprobe:L:libfn { @r = sum(retval); }`, args: "dlopen L"},
		// the workload sleeps after done(): bpftrace ends only by exit()
		{name: "interval and exit", args: "stay", prog: `BEGIN { @a = 1; } interval:ms:100 { @a = @a * 2; print(@a); printf("cpu %d\n", cpu); }
			uprobe:W:add { @n = count(); } uprobe:W:greet { @g[arg1] = count(); }
			uprobe:W:done { printf("done %d\n", arg0); @d = 1; } interval:ms:50 /@d && @a > 10/ { exit(); printf("after exit\n"); }`},
		// the exceptions pass through no frame with a pending return probe: on the kernel they
		// would stop the program (TestUprobeExceptionFrames)
		{name: "C++ exceptions", work: exc, prog: `uretprobe:W:outer { @o[retval] = count(); }
			uretprobe:W:middle { @m[retval] = count(); } uprobe:W:thrower { @te = count(); }
			uprobe:W:passthru { @p = count(); } uretprobe:W:main { @main[retval] = count(); }`},
		{name: "stacks", work: work0, args: "stay", norand: true, prog: `uprobe:W:scale { @[ustack(2)] = count(); }
			uprobe:W:greet { @g[ustack(perf, 2), usym(reg("ip")), func] = count(); printf("%s%s\n", ustack(2), ustack(perf, 2)); }
			uretprobe:W:greet { @r[ustack(1), func] = count(); printf("%s %s\n", func, ustack(1)); }
			uprobe:W:done { exit(); }`},
		{name: "stacks without frame pointers", args: "stay", norand: true, prog: `uprobe:W:add { @a[ustack(2)] = count(); }
			uprobe:W:greet { @g[ustack(2)] = count(); } uprobe:W:done { exit(); }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := work
			if tc.work != "" {
				w = tc.work
			}
			if tc.name == "C++ exceptions" && exc == "" {
				t.Skip("g++ is not installed")
			}
			prog := strings.NewReplacer("probe:W:", "probe:"+w+":", "probe:L:", "probe:"+lib+":").Replace(tc.prog)
			args := tc.args
			if args == "" {
				args = "calls"
			}
			cmd := w + " " + strings.ReplaceAll(args, "L", lib)
			if tc.norand {
				setarch, err := exec.LookPath("setarch")
				if err != nil {
					t.Skip(err)
				}
				cmd = setarch + " -R " + cmd
			}
			argv := append(append([]string{"bpftrace"}, tc.flags...), "-e", prog, "-c", cmd)
			k := e.Kernel(t, time.Minute, argv...)
			s := e.shimIn(t, e.runtimeDir(t), time.Minute, argv...)
			if k.Code != 0 || !strings.HasPrefix(k.Stdout, "Attaching") {
				t.Fatalf("bpftrace on the kernel failed:\n%s", k)
			}
			sameOut(t, tc.name, k, s, normMaps)
			if strings.Contains(s.Stderr, "ebpfu-shim:") {
				t.Errorf("the shim reported:\n%s", s.Stderr)
			}
		})
	}
}

// TestBpftraceRefusals: what ebpfu does not do fails at once with one line that says so, and a
// non-zero exit, never an empty trace.
func TestBpftraceRefusals(t *testing.T) {
	e := Stage(t, "bpftrace", "gcc")
	work := workload(t, e)
	static := buildC(t, e, "uprobe-work-static", "work.c", "-O2", "-static", "-pthread")
	for _, tc := range []struct{ name, prog, work, line string }{
		{"profile at a frequency", `profile:hz:99 { @ = count(); } interval:s:1 { exit(); }`, work,
			"ebpfu-shim: perf_event_open: sampling CPUs at a frequency (profile probes) is not supported: ebpfu does not sample what CPUs run"},
		{"profile by period", `profile:ms:10 { @ = count(); } interval:s:1 { exit(); }`, work,
			`ebpfu-shim: program "10" (id * on the clocks of several CPUs (a profile probe) is not supported: ebpfu does not sample what CPUs run`},
		{"curtask", `uprobe:W:greet { printf("%d\n", curtask->tgid); }`, work,
			`ebpfu-shim: program "greet" (id * calls helpers that programs in traced processes cannot: bpf_get_current_task`},
		{"kernel tracepoint", `tracepoint:syscalls:sys_enter_getppid { @ = count(); }`, work,
			"ebpfu-shim: perf_event_open: tracepoint syscalls:sys_enter_getppid: kernel tracepoints are not supported (the kernel is not traced)"},
		// bpftrace then tries tracefs, which says so on a line of its own
		{"statically linked program", `uprobe:W:add { @ = count(); }`, static,
			"ebpfu-shim: perf_event_open: uprobe: " + static + ": a statically linked program: no process of it runs the agent, its probes would never fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := strings.ReplaceAll(tc.prog, "uprobe:W:", "uprobe:"+tc.work+":")
			s := e.shimIn(t, e.runtimeDir(t), time.Minute, "bpftrace", "-e", prog, "-c", tc.work+" calls")
			var lines []string
			for _, l := range strings.Split(s.Stderr, "\n") {
				if strings.HasPrefix(l, "ebpfu-shim:") && !strings.Contains(l, "/sys/kernel/tracing/uprobe_events") {
					lines = append(lines, l)
				}
			}
			pre, post, _ := strings.Cut(tc.line, "*")
			if s.Code == 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], pre) || !strings.HasSuffix(lines[0], post) {
				t.Errorf("want a non-zero exit and the line %q, got:\n%s", tc.line, s)
			}
		})
	}
}

// TestGethostlatency: stock libbpf-tools gethostlatency (uprobes and uretprobes on libc's
// getaddrinfo, gethostbyname and gethostbyname2) under one shim shows the lookups of getent
// started with `ebpfu-shim run` from another, names from /etc/hosts (no network needed), as the
// kernel's shows them for the same commands as root. The kernel's traces every process of the
// machine: the lines of a copy of getent with a name of its own are compared, without times,
// pids and latencies.
func TestGethostlatency(t *testing.T) {
	e := Stage(t, "gethostlatency", "getent", "stdbuf")
	getent, err := exec.LookPath("getent")
	if err != nil {
		t.Skip(err)
	}
	b, err := os.ReadFile(getent)
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(e.Dir, "ebpfu-getent")
	if err := os.WriteFile(mine, b, 0o755); err != nil {
		t.Fatal(err)
	}
	lookups := [][]string{{"ahosts", "localhost"}, {"hosts", "localhost"}, {"ahostsv4", "localhost"}}
	session := func(tool *exec.Cmd, lookup func(args ...string) Result) []string {
		lines, stderr := startUser(t, tool)
		expect(t, lines, "TIME", stderr)
		for _, l := range lookups {
			if r := lookup(append([]string{mine}, l...)...); r.Code != 0 || !strings.Contains(r.Stdout, "127.0.0.1") {
				t.Fatalf("%s %s:\n%s", mine, strings.Join(l, " "), r)
			}
		}
		line := regexp.MustCompile(`^\S+\s+\d+\s+(\S+)\s+[\d.]+\s+(.*)$`) // TIME PID COMM LATms HOST
		var got []string
		keep := func(l string) {
			if m := line.FindStringSubmatch(l); m != nil && m[1] == "ebpfu-getent" {
				got = append(got, m[1]+" "+m[2])
			}
		}
		time.Sleep(500 * time.Millisecond) // the last events on their way to the tool
		for _, l := range rest(t, tool, lines) {
			keep(l)
		}
		return got
	}
	k := session(exec.Command("stdbuf", "-oL", "gethostlatency"),
		func(args ...string) Result { return e.Kernel(t, time.Minute, args...) })
	dir := e.runtimeDir(t)
	s := session(e.userCommand(dir, "stdbuf", "-oL", e.ShimPath(), "gethostlatency"),
		func(args ...string) Result {
			return e.shimIn(t, dir, time.Minute, append([]string{"run", "--"}, args...)...)
		})
	if len(k) < len(lookups) {
		t.Fatalf("the kernel's gethostlatency showed %q for %d lookups", k, len(lookups))
	}
	if strings.Join(s, "\n") != strings.Join(k, "\n") {
		t.Errorf("gethostlatency under the shim showed %q, the kernel's %q", s, k)
	}
}

// TestBpftraceUprobePID: `bpftrace -p PID` probes a workload started with `ebpfu-shim run`
// (already running; it calls the probed functions once probed): it counts the calls of that
// process alone, not those of another workload that runs meanwhile, as on the kernel.
func TestBpftraceUprobePID(t *testing.T) {
	e := Stage(t, "bpftrace", "gcc", "pgrep")
	work := workload(t, e)
	session := func(start func(args ...string) *exec.Cmd, other func(args ...string) Result, tool func(pid int) *exec.Cmd) Result {
		t.Helper()
		w := start(work, "wait", "1000")
		in, err := w.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		w.Stderr = os.Stderr
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { in.Close(); w.Process.Kill(); w.Wait() }()
		pid := 0
		for j := 0; pid == 0 && j < 1000; j++ {
			out, _ := exec.Command("pgrep", "-f", "-x", work+" wait 1000").Output()
			if f := strings.Fields(string(out)); len(f) == 1 {
				pid, _ = strconv.Atoi(f[0])
			} else {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if pid == 0 {
			t.Fatal("the workload did not start")
		}
		cmd := tool(pid)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		// BEGIN runs once every probe is attached (bpftrace's "Attaching" line comes before)
		rd := bufio.NewReader(out)
		var first string
		for !strings.HasSuffix(first, "ready\n") {
			l, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("bpftrace: %v\n%s%s", err, first, stderr.String())
			}
			first += l
		}
		if r := other(work, "threads", "2", "5000"); r.Code != 0 {
			t.Fatalf("the other workload:\n%s", r)
		}
		io.WriteString(in, "go\n") // the workload calls hit() once its probes are in place
		done := make(chan string, 1)
		go func() { rest, _ := io.ReadAll(rd); done <- string(rest) }()
		var rest string
		select {
		case rest = <-done:
		case <-time.After(2 * time.Minute):
			t.Fatalf("bpftrace did not end:\n%s%s", first, stderr.String())
		}
		cmd.Wait()
		return Result{Stdout: first + rest, Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
	}
	prog := func(pid int) string {
		return fmt.Sprintf(`BEGIN { printf("ready\n"); } uprobe:%s:hit { @[pid == %d] = count(); @s = sum(arg0); }
			uprobe:%s:done { printf("done %%d %%d\n", arg0, pid == %d); exit(); }`, work, pid, work, pid)
	}
	k := session(func(args ...string) *exec.Cmd { return exec.Command(args[0], args[1:]...) },
		func(args ...string) Result { return e.Kernel(t, time.Minute, args...) },
		func(pid int) *exec.Cmd { return exec.Command("bpftrace", "-p", strconv.Itoa(pid), "-e", prog(pid)) })
	dir := e.runtimeDir(t)
	s := session(func(args ...string) *exec.Cmd {
		return e.userCommand(dir, append([]string{e.ShimPath(), "run", "--"}, args...)...)
	}, func(args ...string) Result {
		return e.shimIn(t, dir, time.Minute, append([]string{"run", "--"}, args...)...)
	}, func(pid int) *exec.Cmd {
		return e.userCommand(dir, e.ShimPath(), "bpftrace", "-p", strconv.Itoa(pid), "-e", prog(pid))
	})
	if !strings.Contains(k.Stdout, "done 1000 1\n") || !strings.Contains(k.Stdout, "@[1]: 1000\n") {
		t.Fatalf("bpftrace -p on the kernel:\n%s", k)
	}
	same(t, "bpftrace -p", k, s)
}

// TestUprobeExceptionFrames: C++ exceptions that leave frames with pending return probes. The
// kernel's return probe trampoline has no unwind information, so there the unwinder calls
// std::terminate (and bpftrace shows what returned before); under the shim the program runs to
// its end, the frames the exceptions leave do not return and every other one does.
func TestUprobeExceptionFrames(t *testing.T) {
	e := Stage(t, "bpftrace", "g++")
	exc := buildC(t, e, "uprobe-exc", "exc.cc", "-O2", "-g")
	prog := strings.ReplaceAll(`uretprobe:W:outer { @o[retval] = count(); } uretprobe:W:middle { @m[retval] = count(); }
		uretprobe:W:thrower { @t = count(); } uprobe:W:thrower { @te = count(); }
		uretprobe:W:passthru { @p[retval] = count(); } uretprobe:W:main { @main[retval] = count(); }`, "W:", exc+":")
	s := e.shimIn(t, e.runtimeDir(t), time.Minute, "bpftrace", "-e", prog, "-c", exc)
	want := `Attaching 6 probes...


@m[0]: 1
@m[12]: 1
@m[16]: 1
@m[4]: 1
@m[8]: 1
@m[-1]: 5
@main[0]: 1
@o[13]: 1
@o[17]: 1
@o[1]: 1
@o[5]: 1
@o[9]: 1
@o[0]: 5
@p[0]: 1
@p[2]: 1
@p[4]: 1
@p[6]: 1
@p[8]: 1
@t: 10
@te: 20`
	if s.Code != 0 || strings.TrimSpace(normMaps(s.Stdout)) != strings.TrimSpace(want) {
		t.Errorf("bpftrace under the shim:\n%s\nwant (maps in normMaps' order)\n%s", s, want)
	}
}

// TestBpftraceUSDT: bpftrace's USDT probes of python (semaphores: perf_event_open's reference
// counter, which the agent increments in the traced process while attached, as the kernel does)
// on a script it starts print under the shim what they print on the kernel.
func TestBpftraceUSDT(t *testing.T) {
	e := Stage(t, "bpftrace")
	py, err := filepath.EvalSymlinks("/usr/bin/python3") // Debian's, built with its USDT probes
	if err != nil {
		t.Skip(err)
	}
	if out, _ := exec.Command("bpftrace", "-l", "usdt:"+py+":python:function__return").Output(); !strings.Contains(string(out), "function__return") {
		t.Skipf("%s has no USDT probe python:function__return", py)
	}
	script := filepath.Join(e.Dir, "usdt.py")
	if err := os.WriteFile(script, []byte("def f(n):\n    return n\n\nfor i in range(7):\n    f(i)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := fmt.Sprintf(`usdt:%s:python:function__return /str(arg1) == "f"/ { @r[str(arg1), str(arg0)] = count(); @line[arg2] = count(); }`, py)
	argv := []string{"bpftrace", "-e", prog, "-c", py + " " + script}
	k := e.Kernel(t, time.Minute, argv...)
	s := e.shimIn(t, e.runtimeDir(t), time.Minute, argv...)
	if k.Code != 0 || !strings.Contains(k.Stdout, "]: 7\n") {
		t.Fatalf("bpftrace on the kernel:\n%s", k)
	}
	same(t, "python's USDT probes", k, s)
	if strings.Contains(s.Stderr, "ebpfu-shim:") {
		t.Errorf("the shim reported:\n%s", s.Stderr)
	}
}

// TestBpftoolPerfList: while funclatency runs under one shim, `bpftool perf list` under another
// lists its uprobe and uretprobe events (BPF_TASK_FD_QUERY on every process's fds: the file,
// offset and kind of each event that has a program), as bpftool lists them on the kernel while
// funclatency runs there. Pids, fds and program ids differ and are left out.
func TestBpftoolPerfList(t *testing.T) {
	e := Stage(t, "funclatency", "bpftool", "gcc", "stdbuf")
	work := workload(t, e)
	type event struct {
		PID      int    `json:"pid"`
		ProgID   int    `json:"prog_id"`
		FDType   string `json:"fd_type"`
		Filename string `json:"filename"`
		Offset   uint64 `json:"offset"`
	}
	events := func(bpftool func(args ...string) Result) []string {
		r := bpftool("-j", "perf", "list")
		var evs []event
		if err := json.Unmarshal([]byte(r.Stdout), &evs); err != nil {
			t.Fatalf("bpftool perf list: %v\n%s", err, r)
		}
		var out []string
		for _, ev := range evs {
			if ev.Filename == work && ev.ProgID != 0 && ev.PID != 0 {
				out = append(out, fmt.Sprintf("%s %s %#x", ev.FDType, ev.Filename, ev.Offset))
			}
		}
		sort.Strings(out)
		return out
	}
	k, s := whileFunclatency(t, e, work, events)
	off := symbolOffset(t, work, "scale")
	want := []string{fmt.Sprintf("uprobe %s %#x", work, off), fmt.Sprintf("uretprobe %s %#x", work, off)}
	if strings.Join(k, ",") != strings.Join(want, ",") {
		t.Fatalf("bpftool perf list on the kernel listed %q, want %q", k, want)
	}
	if strings.Join(s, ",") != strings.Join(k, ",") {
		t.Errorf("bpftool perf list under the shim listed %q, on the kernel %q", s, k)
	}
}
