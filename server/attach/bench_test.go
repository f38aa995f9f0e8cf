package attach

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// BenchmarkAgentStartup reports what the agent adds to a process's start-up (exec of a small
// program to its exit, with an attachments table holding one attachment for another file) and
// to its resident memory.
func BenchmarkAgentStartup(b *testing.B) {
	h := newHarness(b)
	work := filepath.Join(h.bin, "work")
	l, _ := h.countProg()
	h.attach(work, "probed", l, false)
	run := func(env []string) time.Duration {
		const n = 200
		best := time.Duration(0)
		for range 3 {
			start := time.Now()
			for range n {
				cmd := exec.Command("/bin/true")
				cmd.Env = env
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
			if d := time.Since(start) / n; best == 0 || d < best {
				best = d
			}
		}
		return best
	}
	plain := run(os.Environ())
	agent := run(h.env())
	b.ReportMetric(float64(plain.Microseconds()), "us/start")
	b.ReportMetric(float64((agent - plain).Microseconds()), "us/agent-start")
	p, a, threads := footprint(b)
	b.ReportMetric(float64(a-p), "kB/agent-rss")
	b.ReportMetric(float64(threads), "threads")
}
