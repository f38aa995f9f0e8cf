package attach

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestResolveInt3: points where a jump does not fit (a function that ends sooner and is
// followed at once by another, a branch into the bytes a jump would displace) resolve to int3
// with the first instruction displaced; other points keep the jump, and the other refusals stay.
func TestResolveInt3(t *testing.T) {
	work := filepath.Join(built(t), "work")
	tiny, branchy := fileOffset(t, work, "tiny"), fileOffset(t, work, "branchy")
	for _, c := range []struct {
		name string
		off  uint64
		int3 bool
		n    int // displaced bytes
	}{
		{"tiny", tiny, true, 3},
		{"tiny's ret", tiny + 3, true, 1},
		{"tiny_next", fileOffset(t, work, "tiny_next"), false, 5},
		{"branchy", branchy, true, 2},
		{"branchy's loop", branchy + 2, false, 6},
		{"probed", fileOffset(t, work, "probed"), false, 0},
	} {
		pt, err := Resolve(work, c.off)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if pt.Int3 != c.int3 || (c.n != 0 && len(pt.Displaced.Orig) != c.n) {
			t.Errorf("%s: int3 %v, %d bytes displaced; want %v, %d", c.name, pt.Int3, len(pt.Displaced.Orig), c.int3, c.n)
		}
		if pt.Int3 && (len(pt.Displaced.Bounds) != 1 || pt.Displaced.Bounds[0] != (Bound{})) {
			t.Errorf("%s: bounds %v", c.name, pt.Displaced.Bounds)
		}
	}
	if _, err := Resolve(work, tiny+1); err == nil || !strings.Contains(err.Error(), "not an instruction boundary") {
		t.Errorf("tiny+1: %v, want the boundary refusal", err)
	}
}

// TestInt3Probes: entry and return probes at int3 points count exactly and see the registers
// and return values, the code is byte-identical after detach, and the program's own SIGTRAP
// handler still gets its own traps while a probe is attached.
func TestInt3Probes(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	origTiny := textBytes(t, w.pid, work, "tiny", 16)
	origBranchy := textBytes(t, w.pid, work, "branchy", 16)
	const want = "20300" // tiny 100: sum of 2i + 2i+1 for i < 100, and 20 rounds of 0+1+3+6+10

	ct, mt := h.countProg()
	cb, mb := h.countProg()
	cr, mr := h.countProg()
	el, em := h.recordProg(regDI, regIP)
	rt, rtm := h.recordProg(regAX)
	rb, rbm := h.recordProg(regAX)
	ids := []uint64{
		h.attach(work, "tiny", ct, false),
		h.attach(work, "branchy", cb, false),
		h.attachAt(work, fileOffset(t, work, "tiny")+3, cr, false), // tiny's ret
		h.attach(work, "tiny", el, false),
		h.attach(work, "tiny", rt, true),
		h.attach(work, "branchy", rb, true),
	}
	if b := textBytes(t, w.pid, work, "tiny", 4); b[0] != 0xcc || b[3] != 0xcc || b[1] != origTiny[1] {
		t.Fatalf("tiny patched as % x, want int3 at its two instructions", b)
	}
	if got := w.do("tiny 100"); got != want {
		t.Fatalf("tiny 100 = %s, want %s", got, want)
	}
	for _, c := range []struct {
		name string
		m    *hmap
	}{{"tiny", mt}, {"branchy", mb}, {"tiny's ret", mr}} {
		if n := c.m.sum(t, 0); n != 100 {
			t.Errorf("%s: count %d, want 100", c.name, n)
		}
	}
	if di, ip, runs := em.u64s(t, 0)[0], em.u64s(t, 1)[0], em.u64s(t, 2)[0]; di != 99 || ip != addrOf(t, w.pid, work, "tiny") || runs != 100 {
		t.Errorf("tiny's entry: di %d ip %#x runs %d, want 99 %#x 100", di, ip, runs, addrOf(t, w.pid, work, "tiny"))
	}
	if ax, runs := rtm.u64s(t, 0)[0], rtm.u64s(t, 1)[0]; ax != 198 || runs != 100 {
		t.Errorf("tiny's return: retval %d runs %d, want 198 100", ax, runs)
	}
	if ax, runs := rbm.u64s(t, 0)[0], rbm.u64s(t, 1)[0]; ax != 10 || runs != 100 {
		t.Errorf("branchy's return: retval %d runs %d, want 10 100", ax, runs)
	}

	// the program's own traps go to its handler; ours do not
	if got, wantTrap := w.do("trap 50"), fmt.Sprintf("50 %d", 49*50); got != wantTrap {
		t.Errorf("trap 50 = %q, want %q", got, wantTrap)
	}
	if n := mt.sum(t, 0); n != 150 {
		t.Errorf("tiny: count %d after the traps, want 150", n)
	}

	for _, id := range ids {
		h.detach(id)
	}
	if got := w.do("tiny 100"); got != want {
		t.Fatalf("after detach: tiny 100 = %s, want %s", got, want)
	}
	if n := mt.sum(t, 0); n != 150 {
		t.Errorf("tiny: count %d after detach, want 150", n)
	}
	if now := textBytes(t, w.pid, work, "tiny", 16); string(now) != string(origTiny) {
		t.Errorf("tiny after detach % x, want % x", now, origTiny)
	}
	if now := textBytes(t, w.pid, work, "branchy", 16); string(now) != string(origBranchy) {
		t.Errorf("branchy after detach % x, want % x", now, origBranchy)
	}
	if got := w.do("trap 5"); got != "5 20" {
		t.Errorf("trap 5 after detach = %q", got)
	}
}

// BenchmarkInt3Hit reports the cost of one hit of a count() probe at a point patched with int3
// (a SIGTRAP the agent answers): ns per call of tiny without the probe, with it (b.N calls, the
// time of an op), and their difference (compare BenchmarkProbeHit's ns/hit of the jump).
func BenchmarkInt3Hit(b *testing.B) {
	h := newHarness(b)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	perCall := func(n int) float64 {
		f := strings.Fields(w.do("benchtiny %d", n))
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	plain := min(perCall(10_000_000), perCall(10_000_000), perCall(10_000_000))
	l, m := h.countProg()
	id := h.attach(work, "tiny", l, false)
	// a fixed number of calls, best of three, as BenchmarkProbeHit (make bench runs it once)
	const calls = 200_000
	probed := min(perCall(calls), perCall(calls), perCall(calls))
	if n := m.sum(b, 0); n != 3*calls {
		b.Fatalf("count %d, want %d", n, 3*calls)
	}
	h.detach(id)
	b.ReportMetric(plain, "ns/call")
	b.ReportMetric(probed, "ns/probed-call")
	b.ReportMetric(probed-plain, "ns/hit")
}

// TestInt3UnderLoad attaches and detaches entry and return probes at int3 points 50 times while
// 4 threads call tiny in a loop: traps that arrive after their detach re-execute the restored
// instruction, every call returns its value, and the code is the original after each detach.
func TestInt3UnderLoad(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	orig := textBytes(t, w.pid, work, "tiny", 16)
	ret := fileOffset(t, work, "tiny") + 3
	l, m := h.countProg()
	rl, rm := h.recordProg(regAX)
	w.do("tinyhammer 4")
	for i := range 50 {
		id := h.attach(work, "tiny", l, false)
		rid := h.attach(work, "tiny", rl, true)
		id2 := h.attachAt(work, ret, l, false)
		time.Sleep(time.Millisecond)
		h.detach(id)
		h.detach(rid)
		h.detach(id2)
		if now := textBytes(t, w.pid, work, "tiny", 16); string(now) != string(orig) {
			t.Fatalf("round %d: code after detach % x, want % x", i, now, orig)
		}
	}
	f := strings.Fields(w.do("tinystop"))
	if len(f) != 2 || f[1] != "0" {
		t.Fatalf("tinystop: %v, want no wrong value", f)
	}
	calls, _ := strconv.Atoi(f[0])
	hits, rets := m.sum(t, 0), rm.u64s(t, 1)[0]
	t.Logf("%d calls, %d hits, %d return hits", calls, hits, rets)
	if hits == 0 || rets == 0 || hits > 2*uint64(calls) {
		t.Fatalf("%d hits of %d calls", hits, calls)
	}
}

// TestInt3HostDefault: a trap of the program's own where it set SIGTRAP's default action
// terminates it by SIGTRAP, as without the agent, while a probe at an int3 point is attached.
func TestInt3HostDefault(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	l, m := h.countProg()
	h.attach(filepath.Join(h.bin, "work"), "tiny", l, false)
	if got := w.do("tiny 10"); got != "230" {
		t.Fatalf("tiny 10 = %s", got)
	}
	if n := m.sum(t, 0); n != 10 {
		t.Fatalf("count %d, want 10", n)
	}
	fmt.Fprintln(w.in, "rawtrap")
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the workload survived its int3")
	}
	ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTRAP {
		t.Fatalf("workload ended with %v, want SIGTRAP", w.cmd.ProcessState)
	}
}

// TestInt3Blocked: a thread that blocks every signal (pthread_sigmask, sigprocmask, a handler's
// full mask) still reaches int3 points: the kernel would kill it with a blocked SIGTRAP, so the
// agent keeps SIGTRAP out of the sets the host blocks.
func TestInt3Blocked(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	l, m := h.countProg()
	h.attach(filepath.Join(h.bin, "work"), "tiny", l, false)
	if got := w.do("blocked 100"); got != strconv.Itoa(2*9900+42) {
		t.Fatalf("blocked 100 = %s, want %d", got, 2*9900+42)
	}
	if n := m.sum(t, 0); n != 201 {
		t.Fatalf("count %d, want 201", n)
	}
}
