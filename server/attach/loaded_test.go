package attach

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDlopen: an attachment to a library that the process loads with dlopen afterwards applies
// when the library is loaded (the agent hooks the dynamic loader's _dl_debug_state), not at the
// next change of the table.
func TestDlopen(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	lib := filepath.Join(h.bin, "lib.so")
	l, m := h.countProg()
	id := h.attach(lib, "lib_probed", l, false)
	if got := w.do("dlopen %s 100", lib); got == "-1" {
		t.Fatalf("the workload could not load %s", lib)
	}
	if n := m.sum(t, 0); n != 100 {
		t.Fatalf("count = %d after the dlopen, want 100", n)
	}
	h.detach(id)
	w.do("dlopen %s 100", lib)
	if n := m.sum(t, 0); n != 100 {
		t.Fatalf("count = %d after the detach, want 100", n)
	}
}

// startProgram runs another program of the test build with the agent and waits for its
// "ready".
func (h *harness) startProgram(name string) *proc {
	h.t.Helper()
	path := filepath.Join(h.bin, name)
	if _, err := os.Stat(path); err != nil {
		h.t.Skipf("%s was not built: %v", name, err)
	}
	cmd := exec.Command(path)
	cmd.Env = h.env()
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	p := &proc{t: h.t, cmd: cmd, in: in, out: bufio.NewReader(outp), pid: cmd.Process.Pid}
	h.t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	if l := p.line(); !strings.HasPrefix(l, "ready") {
		h.t.Fatalf("%s said %q", name, l)
	}
	return p
}

// TestExceptions: C++ exceptions unwind through frames whose return addresses a return probe
// replaced (the unwinder would find no unwind information for the return trampoline and call
// std::terminate): the program goes on, the frames that return normally still fire.
func TestExceptions(t *testing.T) {
	h := newHarness(t)
	w := h.startProgram("throw")
	throw := filepath.Join(h.bin, "throw")
	ret, rm := h.countProg()
	h.attach(throw, "middle", ret, true)
	h.attach(throw, "thrower", ret, true)
	entry, em := h.countProg()
	h.attach(throw, "thrower", entry, false)
	for range 3 {
		if got := w.do("100"); got != "50 4900" {
			t.Fatalf("the program answered %q, want \"50 4900\" (exit %v)", got, w.cmd.ProcessState)
		}
	}
	if n := em.sum(t, 0); n != 300 {
		t.Errorf("entries of thrower = %d, want 300", n)
	}
	// middle and thrower return normally for even numbers only
	if n := rm.sum(t, 0); n != 300 {
		t.Errorf("normal returns of middle and thrower = %d, want 300", n)
	}
}

// mappedObjects counts the objects of the table mapped in process pid: code (memfds named
// ebpfu-code) and the harness's maps and rings (other memfds).
func mappedObjects(t *testing.T, pid int) (code, other int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, "memfd:ebpfu-code"):
			code++
		case strings.Contains(line, "memfd:"):
			other++
		}
	}
	return code, other
}

// TestObjectsReleased: the code and maps of detached programs are unmapped from a traced
// process once no thread runs them, so a long-lived process does not collect every tool
// session's objects.
func TestObjectsReleased(t *testing.T) {
	h := newHarness(t)
	w := h.start()
	work := filepath.Join(h.bin, "work")
	w.do("hammer 2") // threads calling probed meanwhile
	for i := range 30 {
		l, m := h.countProg()
		id := h.attach(work, "probed", l, false)
		w.do("call 10 0 0")
		if n := m.sum(t, 0); n < 10 {
			t.Fatalf("round %d: count %d, want at least 10", i, n)
		}
		h.detach(id)
	}
	w.do("stop")
	// the last batch goes at the next sync, once the threads' last runs are over
	l, _ := h.countProg()
	h.detach(h.attach(work, "probed", l, false))
	code, other := mappedObjects(t, w.pid)
	if code > 2 || other > 4 {
		t.Errorf("%d code objects and %d other objects still mapped after 31 sessions", code, other)
	}
}
