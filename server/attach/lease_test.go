package attach

import (
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// TestLeaseCPUExcludesAgents: a server thread bound to CPU 0 that holds slot 0's lease
// (LeaseCPU, as interval programs take it) increments a per-CPU value with a slow
// read-modify-write, while the workload's threads count probe hits on the same value: no update
// of either is lost.
func TestLeaseCPUExcludesAgents(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	addr := m.Elem(make([]byte, 4), 0)
	stop, done := make(chan struct{}), make(chan error, 1)
	var n uint64
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends bound
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- err
			return
		}
		tid := uint32(unix.Gettid())
		p := (*uint64)(unsafe.Pointer(uintptr(addr)))
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			release, err := h.tab.LeaseCPU(0, tid, 5*time.Second)
			if err != nil {
				done <- err
				return
			}
			v := atomic.LoadUint64(p)
			for start := time.Now(); time.Since(start) < time.Microsecond; {
			}
			atomic.StoreUint64(p, v+1)
			release()
			n++
		}
	}()
	w.do("threads 4 300000")
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := m.sum(t, 0), 4*300000+n; got != want {
		t.Fatalf("count = %d, want %d (%d hits and %d increments of the server's thread)", got, want, 4*300000, n)
	}
	t.Logf("%d increments of the server's thread", n)
}
