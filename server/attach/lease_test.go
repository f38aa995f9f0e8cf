package attach

import (
	"path/filepath"
	"sync"
	"testing"
)

// TestExactCountsAcrossProcesses: threads of several processes increment the same per-CPU
// value (bpftrace's count()) at once, with more threads than CPUs, so that runs are preempted
// while they hold their CPU's slot: every hit counts. One workload runs with glibc's rseq
// registration turned off, so that the agent registers its own area for each thread.
func TestExactCountsAcrossProcesses(t *testing.T) {
	h := newHarness(t)
	work := filepath.Join(h.bin, "work")
	ws := []*proc{h.start(), h.start(), h.startWith("GLIBC_TUNABLES=glibc.pthread.rseq=0")}
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	const threads, calls = 6, 300000
	var wg sync.WaitGroup
	got := make([]string, len(ws))
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.in.Write([]byte("threads 6 300000\n"))
			got[i], _ = w.out.ReadString('\n')
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g == "" {
			t.Fatalf("workload %d did not answer", i)
		}
	}
	if n, want := m.sum(t, 0), uint64(len(ws)*threads*calls); n != want {
		t.Fatalf("count = %d, want %d", n, want)
	}
}
