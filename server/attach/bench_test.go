package attach

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// status returns fields of /proc/PID/status.
func status(t testing.TB, pid int, keys ...string) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(keys))
	for _, line := range strings.Split(string(b), "\n") {
		for i, k := range keys {
			if v, ok := strings.CutPrefix(line, k+":"); ok {
				out[i], _ = strconv.Atoi(strings.Fields(v)[0])
			}
		}
	}
	return out
}

// footprint returns the resident kB and threads of the workload without and with the agent,
// after a probe hit in the latter.
func footprint(t testing.TB) (plainKB, agentKB, threads int) {
	h := newHarness(t)
	work := filepath.Join(h.bin, "work")
	cmd := exec.Command(work)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	bufio.NewReader(out).ReadString('\n')
	plainKB = status(t, cmd.Process.Pid, "VmRSS")[0]
	w := h.start()
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	w.do("call 10 1 1")
	if m.sum(t, 0) != 10 {
		t.Fatalf("count %d", m.sum(t, 0))
	}
	st := status(t, w.pid, "VmRSS", "Threads")
	return plainKB, st[0], st[1]
}

// TestAgentFootprint: the agent adds no thread and less than 1 MB of resident memory to a
// process with a probe attached and hit.
func TestAgentFootprint(t *testing.T) {
	plain, agent, threads := footprint(t)
	t.Logf("resident: %d kB without the agent, %d kB with it and a probe", plain, agent)
	if threads != 1 {
		t.Errorf("%d threads, want 1", threads)
	}
	if agent-plain >= 1024 {
		t.Errorf("the agent adds %d kB of resident memory", agent-plain)
	}
}

// BenchmarkProbeHit reports the cost of one uprobe hit running a bpftrace-style count() (a
// per-CPU array increment) in a traced process: ns per call of the probed function with the
// probe, without it, and their difference; as root with bpftrace installed, the kernel's uprobe
// with bpftrace's count() on the same workload, in the same run.
func BenchmarkProbeHit(b *testing.B) {
	h := newHarness(b)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	measure := func(n int) float64 {
		best := 0.0
		for range 3 {
			v, err := strconv.ParseFloat(w.do("bench %d", n), 64)
			if err != nil {
				b.Fatal(err)
			}
			if best == 0 || v < best {
				best = v
			}
		}
		return best
	}
	plain := measure(20_000_000)
	l, m := h.countProg()
	id := h.attach(work, "probed", l, false)
	probed := measure(5_000_000)
	if m.sum(b, 0) < 15_000_000 {
		b.Fatalf("count %d", m.sum(b, 0))
	}
	h.detach(id)
	b.ReportMetric(plain, "ns/call")
	b.ReportMetric(probed, "ns/probed-call")
	b.ReportMetric(probed-plain, "ns/hit")
	if k, ok := kernelHit(b, w, work, measure); ok {
		b.ReportMetric(k-plain, "ns/kernel-hit")
		b.ReportMetric((k-plain)/(probed-plain), "x-cheaper")
	}
}

// kernelHit measures the workload's probed calls under the kernel's uprobe with bpftrace.
func kernelHit(b *testing.B, w *proc, work string, measure func(int) float64) (float64, bool) {
	bt, err := exec.LookPath("bpftrace")
	if err != nil || os.Geteuid() != 0 {
		return 0, false
	}
	cmd := exec.Command(bt, "-e", "uprobe:"+work+":probed { @ = count(); }")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, false
	}
	if err := cmd.Start(); err != nil {
		return 0, false
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Attaching") {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			return 0, false
		}
	case <-time.After(30 * time.Second):
		return 0, false
	}
	time.Sleep(100 * time.Millisecond)
	return measure(200_000), true
}

// BenchmarkAgentStartup reports what the agent adds to a process's start-up (exec of /bin/true
// to its exit, with an attachments table holding one attachment for another file): the median
// of the differences between runs with and without the agent, taken in alternation so that the
// machine's load affects both alike; and what it adds to resident memory.
func BenchmarkAgentStartup(b *testing.B) {
	h := newHarness(b)
	work := filepath.Join(h.bin, "work")
	l, _ := h.countProg()
	h.attach(work, "probed", l, false)
	once := func(env []string) time.Duration {
		cmd := exec.Command("/bin/true")
		cmd.Env = env
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	const n = 400
	plain, agent := make([]time.Duration, n), make([]time.Duration, n)
	for i := range n {
		plain[i] = once(os.Environ())
		agent[i] = once(h.env())
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	p, a := median(plain), median(agent)
	b.ReportMetric(float64(p.Microseconds()), "us/start")
	b.ReportMetric(float64((a - p).Microseconds()), "us/agent-start")
	pk, ak, threads := footprint(b)
	b.ReportMetric(float64(ak-pk), "kB/agent-rss")
	b.ReportMetric(float64(threads), "threads")
}

// BenchmarkBpftraceHit reports the cost of one hit of stock bpftrace's count() uprobe under
// ebpfu-shim on a workload started as `ebpfu-shim run` starts it, and (as root) of the same
// probe on the kernel, in one run.
func BenchmarkBpftraceHit(b *testing.B) {
	bt, err := exec.LookPath("bpftrace")
	if err != nil {
		b.Skip("bpftrace is not installed")
	}
	bin := built(b)
	shim := filepath.Join(bin, "ebpfu-shim")
	build := exec.Command("go", "build", "-o", shim, "../../cmd/ebpfu-shim")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building ebpfu-shim: %v\n%s", err, out)
	}
	run := b.TempDir() // XDG_RUNTIME_DIR: the state directory is run/ebpfu
	state := filepath.Join(run, "ebpfu")
	if err := os.Mkdir(state, 0o700); err != nil {
		b.Fatal(err)
	}
	h := &harness{t: b, dir: state, bin: bin}
	w := h.start()
	work := filepath.Join(bin, "work")
	measure := func(n int) float64 {
		best := 0.0
		for range 3 {
			v, err := strconv.ParseFloat(w.do("bench %d", n), 64)
			if err != nil {
				b.Fatal(err)
			}
			if best == 0 || v < best {
				best = v
			}
		}
		return best
	}
	plain := measure(20_000_000)
	orig := textBytes(b, w.pid, work, "probed", 1)[0]
	cmd := exec.Command(shim, bt, "-e", "uprobe:"+work+":probed { @ = count(); }")
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+run)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for textBytes(b, w.pid, work, "probed", 1)[0] == orig {
		if time.Now().After(deadline) {
			b.Fatalf("bpftrace did not attach:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	probed := measure(5_000_000)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if !strings.Contains(out.String(), "@: ") {
		b.Fatalf("bpftrace printed no count:\n%s", out.String())
	}
	b.ReportMetric(probed-plain, "ns/hit")
	if k, ok := kernelHit(b, w, work, measure); ok {
		b.ReportMetric(k-plain, "ns/kernel-hit")
		b.ReportMetric((k-plain)/(probed-plain), "x-cheaper")
	}
}
