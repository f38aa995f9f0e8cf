package attach

import (
	"bufio"
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
