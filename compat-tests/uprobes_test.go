package compat

import (
	"bufio"
	"debug/elf"
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

// The uprobe comparisons run stock bpftrace under the shim as the ordinary user and as root on
// the kernel, on the same workload (testdata/uprobes/work.c, whose calls are deterministic), and
// compare what bpftrace prints. Each test gets a state directory of its own (XDG_RUNTIME_DIR),
// so probes of one test never reach another's traced processes.

// workload returns the staged uprobe workload, building it once.
func workload(t *testing.T, e *Env) string {
	t.Helper()
	built.Do(func() {
		built.path = filepath.Join(e.Dir, "uprobe-work")
		cmd := exec.Command("gcc", "-O2", "-g", "-o", built.path, filepath.Join(repoRoot(), "compat-tests", "testdata", "uprobes", "work.c"), "-lpthread")
		if b, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("building the uprobe workload: %v\n%s", err, b)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

var built struct {
	sync.Once
	path string
	err  error
}

// runtimeDir returns a new XDG_RUNTIME_DIR of the ordinary user, removed with the test: the
// state directory of its shims and traced processes.
func (e *Env) runtimeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(e.Home, "run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, e.UID, e.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// shimIn runs argv under the shim as the ordinary user with run as its XDG_RUNTIME_DIR.
func (e *Env) shimIn(t *testing.T, run string, timeout time.Duration, argv ...string) Result {
	t.Helper()
	return e.AsUser(t, timeout, append([]string{"env", "XDG_RUNTIME_DIR=" + run, e.ShimPath()}, argv...)...)
}

// userCommand returns a command that runs argv as the ordinary user (as AsUser does) with run as
// its XDG_RUNTIME_DIR, for the caller to start.
func (e *Env) userCommand(run string, argv ...string) *exec.Cmd {
	args := append([]string{
		"--reuid=" + strconv.Itoa(e.UID), "--regid=" + strconv.Itoa(e.GID),
		"--clear-groups", "--inh-caps=-all", "--",
		"env", "HOME=" + e.Home, "PATH=" + e.Dir + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"XDG_RUNTIME_DIR=" + run,
	}, argv...)
	cmd := exec.Command("setpriv", args...)
	cmd.Dir = e.Home
	return cmd
}

// mapLine is a line of a printed map: @name[key]: value.
var mapLine = regexp.MustCompile(`^(@\w*)(\[.*\])?: (.*)$`)

// normMaps returns bpftrace's output with the lines of each printed map that have the same
// value in key order: bpftrace sorts a map by value and leaves ties in the order the map's keys
// are walked, which is the hash table's (the kernel's and runtime/maps' differ). Nothing else
// changes.
func normMaps(out string) string {
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); {
		m := mapLine.FindStringSubmatch(lines[i])
		if m == nil || m[2] == "" {
			i++
			continue
		}
		j := i + 1
		for j < len(lines) {
			n := mapLine.FindStringSubmatch(lines[j])
			if n == nil || n[1] != m[1] || n[3] != m[3] {
				break
			}
			j++
		}
		sort.Strings(lines[i:j])
		i = j
	}
	return strings.Join(lines, "\n")
}

// tidKeys returns out with the thread ids in keys of map @name replaced by T1, T2, ... in
// numeric order: the threads of the two runs have other ids, in the same order.
func tidKeys(out, name string) string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\[(\d+)\]`)
	var tids []int
	seen := map[int]bool{}
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		if !seen[n] {
			seen[n] = true
			tids = append(tids, n)
		}
	}
	sort.Ints(tids)
	rank := map[string]string{}
	for i, n := range tids {
		rank[strconv.Itoa(n)] = "T" + strconv.Itoa(i+1)
	}
	return re.ReplaceAllStringFunc(out, func(s string) string {
		m := re.FindStringSubmatch(s)
		return name + "[" + rank[m[1]] + "]"
	})
}

// sameOut fails the test unless both runs ended alike and printed the same, after norm.
func sameOut(t *testing.T, what string, kernel, shim Result, norm func(string) string) {
	t.Helper()
	k, s := kernel, shim
	k.Stdout, s.Stdout = norm(k.Stdout), norm(s.Stdout)
	same(t, what, k, s)
}

// TestBpftraceUprobes: bpftrace uprobe and uretprobe one-liners on a workload it starts (-c)
// print under the shim, as an ordinary user, what they print on the kernel as root.
func TestBpftraceUprobes(t *testing.T) {
	e := Stage(t, "bpftrace", "gcc")
	work := workload(t, e)
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		t.Skipf("no %s", libc)
	}
	for _, tc := range []struct {
		name, prog, args string
		norm             func(string) string
	}{
		{"aggregations", `uprobe:W:add { @c = count(); @s = sum(arg0); @h = hist(arg1); @l = lhist(arg0 % 100, 0, 100, 10);
			@st = stats(arg1); @mn = min(arg0); @mx = max(arg0); @av = avg(arg1); }`, "calls", nil},
		{"filters and keys", `uprobe:W:add /arg0 % 3 == 0/ { @[comm] = count(); } uprobe:W:scale { @k[arg0, arg1] = count(); }`, "calls", nil},
		{"str and printf", `uprobe:W:greet { printf("greet %s %d\n", str(arg0), arg1); @[str(arg0)] = sum(arg1); }`, "calls", nil},
		{"retval", `uretprobe:W:scale { @r[retval] = count(); } uretprobe:W:greet { printf("ret %d\n", retval); }`, "calls", nil},
		{"entry and return by tid", `uprobe:W:scale { @a[tid] = arg0; }
			uretprobe:W:scale /@a[tid] > 10/ { @pair[@a[tid], retval] = count(); delete(@a[tid]); }`, "calls", nil},
		{"libc, BEGIN and END", `BEGIN { printf("begin\n"); } uprobe:` + libc + `:puts /pid == cpid/ { @[str(arg0)] = count(); }
			END { printf("end\n"); }`, "calls", nil},
		{"exact counts", `uprobe:W:hit { @ = count(); @s = sum(arg0); }`, "threads 8 100000", nil},
		{"thread keys", `uprobe:W:hit { @[tid] = count(); }`, "threads 4 1000", func(s string) string { return tidKeys(s, "@") }},
		{"fork without exec", `uprobe:W:hit { @[pid == cpid] = count(); }`, "fork 100000", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := strings.ReplaceAll(tc.prog, "probe:W:", "probe:"+work+":")
			argv := []string{"bpftrace", "-e", prog, "-c", work + " " + tc.args}
			norm := normMaps
			if tc.norm != nil {
				norm = func(s string) string { return normMaps(tc.norm(s)) }
			}
			k := e.Kernel(t, 2*time.Minute, argv...)
			s := e.shimIn(t, e.runtimeDir(t), 2*time.Minute, argv...)
			if k.Code != 0 || !strings.HasPrefix(k.Stdout, "Attaching") {
				t.Fatalf("bpftrace on the kernel failed:\n%s", k)
			}
			sameOut(t, tc.name, k, s, norm)
			if strings.Contains(s.Stderr, "ebpfu-shim:") {
				t.Errorf("the shim reported:\n%s", s.Stderr)
			}
		})
	}
}

// TestBpftraceUprobeOtherShim: probes reach a workload started with `ebpfu-shim run` (another
// shim invocation), already running when bpftrace attaches; the counts are the kernel's.
func TestBpftraceUprobeOtherShim(t *testing.T) {
	e := Stage(t, "bpftrace", "gcc")
	work := workload(t, e)
	prog := fmt.Sprintf(`BEGIN { printf("ready\n"); } uprobe:%s:hit { @ = count(); @s = sum(arg0); }
		uprobe:%s:done { printf("done %%d\n", arg0); exit(); }`, work, work)
	run := func(workload, tool *exec.Cmd) Result {
		t.Helper()
		in, err := workload.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		workload.Stderr = os.Stderr
		if err := workload.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { in.Close(); workload.Process.Kill(); workload.Wait() }()
		out, err := tool.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		tool.Stderr = &stderr
		if err := tool.Start(); err != nil {
			t.Fatal(err)
		}
		// BEGIN runs once every probe is attached (bpftrace's "Attaching" line comes before)
		rd := bufio.NewReader(out)
		var first string
		for !strings.HasSuffix(first, "ready\n") {
			l, err := rd.ReadString('\n')
			if err != nil {
				tool.Process.Kill()
				tool.Wait()
				t.Fatalf("bpftrace: %v\n%s%s", err, first, stderr.String())
			}
			first += l
		}
		io.WriteString(in, "go\n") // the workload calls hit() once its probes are in place
		done := make(chan string, 1)
		go func() { rest, _ := io.ReadAll(rd); done <- string(rest) }()
		var rest string
		select {
		case rest = <-done:
		case <-time.After(2 * time.Minute):
			tool.Process.Kill()
			t.Fatalf("bpftrace did not end:\n%s%s", first, stderr.String())
		}
		tool.Wait()
		return Result{Stdout: first + rest, Stderr: stderr.String(), Code: tool.ProcessState.ExitCode()}
	}
	k := run(exec.Command(work, "wait", "100000"), exec.Command("bpftrace", "-e", prog))
	dir := e.runtimeDir(t)
	s := run(e.userCommand(dir, e.ShimPath(), "run", "--", work, "wait", "100000"),
		e.userCommand(dir, e.ShimPath(), "bpftrace", "-e", prog))
	same(t, "bpftrace on a workload of another shim", k, s)
}

// TestBpftraceUprobeBash: bash runs a script full of subshells, pipelines, traps, background jobs
// and command substitutions under probes on its own functions, each time as without them, and
// the probes count what the kernel's count (server/attach's TestBash runs such a script ten
// times under probes in libc, and while attachments change).
func TestBpftraceUprobeBash(t *testing.T) {
	e := Stage(t, "bpftrace")
	script := filepath.Join(e.Dir, "uprobe-bash.sh")
	body := `set -e
trap 'echo trapped USR1' USR1
f() { echo "f $1"; }
for i in 1 2 3; do
	( f "sub $i"; echo inner | tr a-z A-Z )
	x=$(f "cmd $i" | wc -c)
	echo "len $x"
	sleep 0.01 &
	wait $!
	kill -USR1 $$
done
echo "a b c" | while read -r a b c; do echo "$c $b $a"; done
{ echo one; echo two; } | sort -r
coproc cat; echo through >&"${COPROC[1]}"; exec {COPROC[1]}>&-; read -r l <&"${COPROC[0]}"; echo "$l"; wait
echo end
`
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// A copy of bash: the kernel's probes reach every process that maps the file they are on,
	// and the machine may run other bash scripts meanwhile.
	bash := filepath.Join(e.Dir, "bash")
	b, err := os.ReadFile("/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bash, b, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := strings.ReplaceAll(`uprobe:BASH:execute_command { @cmds = count(); } uprobe:BASH:make_child { @forks = count(); }
		uretprobe:BASH:execute_command /retval != 0/ { @failed = count(); }`, "BASH", bash)
	k := e.Kernel(t, time.Minute, "bpftrace", "-e", prog, "-c", bash+" "+script)
	if k.Code != 0 || !strings.Contains(k.Stdout, "end\n") {
		t.Fatalf("the script on the kernel:\n%s", k)
	}
	for i := range 5 {
		s := e.shimIn(t, e.runtimeDir(t), time.Minute, "bpftrace", "-e", prog, "-c", bash+" "+script)
		same(t, fmt.Sprintf("run %d of the script under probes", i+1), k, s)
		if t.Failed() {
			break
		}
	}
}

// startUser starts cmd with its stdout read line by line into lines, and its stderr kept.
func startUser(t *testing.T, cmd *exec.Cmd) (lines <-chan string, stderr *strings.Builder) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return ch, stderr
}

// expect waits for a line with prefix from lines and returns it.
func expect(t *testing.T, lines <-chan string, prefix string, stderr *strings.Builder) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the output ended before a line %q\n%s", prefix, stderr)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line %q within a minute\n%s", prefix, stderr)
		}
	}
}

// rest returns the lines left once the command ended (SIGINT, forwarded to the tool by the shim).
func rest(t *testing.T, cmd *exec.Cmd, lines <-chan string) []string {
	t.Helper()
	cmd.Process.Signal(os.Interrupt)
	var out []string
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return out
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("no end within a minute after SIGINT; got %q", out)
		}
	}
}

// TestBashreadline: stock libbpf-tools bashreadline under one shim shows the commands typed into
// an interactive bash started with `ebpfu-shim run` from another, as the kernel's shows them for
// the same bash session as root. (The kernel's traces every bash of the machine: the lines of
// the test's bash are compared, picked by its pid; times differ and are left out.)
func TestBashreadline(t *testing.T) {
	e := Stage(t, "bashreadline", "script", "stdbuf")
	commands := []string{"echo pid $$", "echo hello world", "true one two  three", "x=5; echo $((x * 7))", "exit"}
	session := func(tool, bash *exec.Cmd) []string {
		lines, stderr := startUser(t, tool)
		expect(t, lines, "TIME", stderr)
		in, err := bash.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		bash.Stdout, bash.Stderr = &out, &out
		if err := bash.Start(); err != nil {
			t.Fatal(err)
		}
		for _, c := range commands {
			time.Sleep(200 * time.Millisecond) // one line per readline() call
			io.WriteString(in, c+"\n")
		}
		done := make(chan error, 1)
		go func() { done <- bash.Wait() }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			bash.Process.Kill()
			t.Fatalf("the interactive bash did not exit:\n%s", out.String())
		}
		in.Close()
		pid := regexp.MustCompile(`pid (\d+)`).FindStringSubmatch(out.String())
		if pid == nil {
			t.Fatalf("the bash session printed no pid:\n%s", out.String())
		}
		var got []string
		line := regexp.MustCompile(`^\S+\s+(\d+)\s+(.*)$`) // TIME PID COMMAND
		keep := func(l string) {
			if m := line.FindStringSubmatch(l); m != nil && m[1] == pid[1] {
				got = append(got, m[2])
			}
		}
		// the events of the last commands may still be on their way to the tool
		for timeout := time.After(30 * time.Second); len(got) < len(commands); {
			select {
			case l, ok := <-lines:
				if !ok {
					return got
				}
				keep(l)
				continue
			case <-timeout:
			}
			break
		}
		for _, l := range rest(t, tool, lines) {
			keep(l)
		}
		return got
	}
	bash := "/bin/bash --norc --noprofile -i"
	// stdbuf: the tools print their first line once attached, and their stdout is a pipe here
	k := session(exec.Command("stdbuf", "-oL", "bashreadline"), exec.Command("script", "-q", "-c", bash, "/dev/null"))
	dir := e.runtimeDir(t)
	s := session(e.userCommand(dir, "stdbuf", "-oL", e.ShimPath(), "bashreadline"),
		e.userCommand(dir, "script", "-q", "-c", e.ShimPath()+" run -- "+bash, "/dev/null"))
	if strings.Join(k, "\n") != strings.Join(commands, "\n") {
		t.Fatalf("the kernel's bashreadline showed %q, want %q", k, commands)
	}
	if strings.Join(s, "\n") != strings.Join(k, "\n") {
		t.Errorf("bashreadline under the shim showed %q, the kernel's %q", s, k)
	}
}

// TestFunclatency: stock libbpf-tools funclatency BINARY:FUNC under one shim counts every call of
// a workload started with `ebpfu-shim run` from another (latencies differ from run to run; the
// histogram's counts must add up to the calls).
func TestFunclatency(t *testing.T) {
	e := Stage(t, "funclatency", "gcc", "stdbuf")
	work := workload(t, e)
	dir := e.runtimeDir(t)
	tool := e.userCommand(dir, "stdbuf", "-oL", e.ShimPath(), "funclatency", work+":scale")
	lines, stderr := startUser(t, tool)
	expect(t, lines, "Tracing", stderr)
	if r := e.AsUser(t, time.Minute, "env", "XDG_RUNTIME_DIR="+dir, e.ShimPath(), "run", "--", work, "calls"); r.Code != 0 {
		t.Fatalf("the workload:\n%s", r)
	}
	time.Sleep(500 * time.Millisecond)
	out := rest(t, tool, lines)
	bucket := regexp.MustCompile(`^\s*\d+ -> \d+\s*: (\d+)`)
	total := 0
	for _, l := range out {
		if m := bucket.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
	}
	if total != 100 {
		t.Errorf("funclatency counted %d calls of scale, want 100:\n%s\n%s", total, strings.Join(out, "\n"), stderr)
	}
}

// codeAt reads n bytes of process pid at file offset off of the executable at path.
func codeAt(t *testing.T, pid int, path string, off uint64, n int) []byte {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		var lo, hi, foff uint64
		var perms, dev, ino, file string
		if c, _ := fmt.Sscanf(line, "%x-%x %s %x %s %s %s", &lo, &hi, &perms, &foff, &dev, &ino, &file); c != 7 || file != path {
			continue
		}
		if off >= foff && off < foff+hi-lo {
			mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			b := make([]byte, n)
			if _, err := mem.ReadAt(b, int64(lo+off-foff)); err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("%s is not mapped in process %d", path, pid)
	return nil
}

// symbolOffset returns the file offset of function sym of the ELF file at path.
func symbolOffset(t *testing.T, path, sym string) uint64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	for _, s := range syms {
		if s.Name != sym || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
				return s.Value - p.Vaddr + p.Off
			}
		}
	}
	t.Fatalf("%s: no function %s", path, sym)
	return 0
}

// TestUprobeAttachDetach: a static cilium/ebpf loader under one shim attaches a counting uprobe to
// a function that four threads of a running workload (started with `ebpfu-shim run` from
// another shim) call in a loop, and detaches it, 100 times: every round counts hits, as on the
// kernel, the workload lives on, and its code is then byte for byte the file's.
func TestUprobeAttachDetach(t *testing.T) {
	e := Stage(t, "gcc", "file")
	work := workload(t, e)
	bin := filepath.Join(e.Dir, "uprobeloop")
	build := exec.Command("go", "build", "-o", bin, "./compat-tests/testdata/uprobeloop")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building uprobeloop: %v\n%s", err, out)
	}
	off := symbolOffset(t, work, "hit")
	orig, err := os.ReadFile(work)
	if err != nil {
		t.Fatal(err)
	}
	loop := func(workload *exec.Cmd, loader func() Result) Result {
		t.Helper()
		in, err := workload.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		workload.Stderr = os.Stderr
		if err := workload.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { in.Close(); workload.Wait() }()
		// the workload's own process (setpriv, env and ebpfu-shim run exec or fork it)
		pid := 0
		for i := 0; pid == 0 && i < 1000; i++ {
			out, _ := exec.Command("pgrep", "-f", "-x", work+" loop").Output()
			if f := strings.Fields(string(out)); len(f) == 1 {
				pid, _ = strconv.Atoi(f[0])
			} else {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if pid == 0 {
			t.Fatal("the workload did not start")
		}
		r := loader()
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
			t.Fatalf("the workload died:\n%s", r)
		}
		if now := codeAt(t, pid, work, off, 16); string(now) != string(orig[off:off+16]) {
			t.Errorf("the code of hit after the last detach is % x, the file's % x", now, orig[off:off+16])
		}
		return r
	}
	k := loop(exec.Command(work, "loop"), func() Result { return e.Kernel(t, 2*time.Minute, bin, work, "hit", "100") })
	dir := e.runtimeDir(t)
	s := loop(e.userCommand(dir, e.ShimPath(), "run", "--", work, "loop"),
		func() Result { return e.shimIn(t, dir, 2*time.Minute, bin, work, "hit", "100") })
	if k.Code != 0 || k.Stdout != "100 of 100 rounds counted hits\n" {
		t.Fatalf("uprobeloop on the kernel:\n%s", k)
	}
	same(t, "100 attaches and detaches", k, s)
}

// TestBpftoolPerfLinks: while funclatency runs under one shim, bpftool under another lists its
// two perf links (entry and return probe) with their programs, as bpftool lists them on the
// kernel while funclatency runs there.
func TestBpftoolPerfLinks(t *testing.T) {
	e := Stage(t, "funclatency", "bpftool", "gcc", "stdbuf")
	work := workload(t, e)
	type link struct {
		ID     int    `json:"id"`
		Type   string `json:"type"`
		ProgID int    `json:"prog_id"`
	}
	// funclatency's links: perf links whose programs are its dummy_kprobe and dummy_kretprobe
	links := func(bpftool func(args ...string) Result) []string {
		r := bpftool("-j", "link", "list")
		var ls []link
		if err := json.Unmarshal([]byte(r.Stdout), &ls); err != nil {
			t.Fatalf("bpftool link list: %v\n%s", err, r)
		}
		var out []string
		for _, l := range ls {
			if l.Type != "perf_event" {
				continue
			}
			p := bpftool("-j", "prog", "show", "id", strconv.Itoa(l.ProgID))
			var prog struct {
				Name string `json:"name"`
				Type string `json:"type"`
			}
			if json.Unmarshal([]byte(p.Stdout), &prog) == nil && strings.HasPrefix(prog.Name, "dummy_k") {
				out = append(out, l.Type+" "+prog.Type+" "+prog.Name)
			}
		}
		sort.Strings(out)
		return out
	}
	k, s := whileFunclatency(t, e, work, links)
	if want := []string{"perf_event kprobe dummy_kprobe", "perf_event kprobe dummy_kretprobe"}; strings.Join(k, ",") != strings.Join(want, ",") {
		t.Fatalf("bpftool on the kernel listed %q, want %q", k, want)
	}
	if strings.Join(s, ",") != strings.Join(k, ",") {
		t.Errorf("bpftool under the shim listed %q, on the kernel %q", s, k)
	}
}

// whileFunclatency runs funclatency on work's scale() on the kernel as root, then under one shim
// as the ordinary user, and returns what collect gathers with bpftool while each runs (on the
// kernel, and under another shim of the user: a shim's bpftool that writes to stderr fails the
// test).
func whileFunclatency(t *testing.T, e *Env, work string, collect func(bpftool func(args ...string) Result) []string) (kernel, shim []string) {
	t.Helper()
	session := func(tool *exec.Cmd, bpftool func(args ...string) Result) []string {
		lines, stderr := startUser(t, tool)
		expect(t, lines, "Tracing", stderr)
		got := collect(bpftool)
		rest(t, tool, lines)
		return got
	}
	kernel = session(exec.Command("stdbuf", "-oL", "funclatency", work+":scale"),
		func(args ...string) Result { return e.Kernel(t, time.Minute, append([]string{"bpftool"}, args...)...) })
	dir := e.runtimeDir(t)
	shim = session(e.userCommand(dir, "stdbuf", "-oL", e.ShimPath(), "funclatency", work+":scale"),
		func(args ...string) Result {
			r := e.shimIn(t, dir, time.Minute, append([]string{"bpftool"}, args...)...)
			if r.Stderr != "" {
				t.Errorf("bpftool %s under the shim:\n%s", strings.Join(args, " "), r.Stderr)
			}
			return r
		})
	return kernel, shim
}
