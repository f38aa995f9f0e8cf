package attach

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestToolNotTraced: a process whose pid is EBPFU_TOOL_PID (the tool a shim supervises, which
// has the agent in its environment for the sake of the workloads it starts) is not traced: it
// does not register, does not catch the doorbell, and neither do its forks; the workloads it
// execs are.
func TestToolNotTraced(t *testing.T) {
	h := newHarness(t)
	work := filepath.Join(h.bin, "work")
	cmd := exec.Command("/bin/sh", "-c", `EBPFU_TOOL_PID=$$ exec "$0"`, work)
	cmd.Env = h.env()
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	tool := &proc{t: t, cmd: cmd, in: in, out: bufio.NewReader(outp), pid: cmd.Process.Pid}
	if l := tool.line(); !strings.HasPrefix(l, "ready") {
		t.Fatalf("the tool said %q", l)
	}
	w := h.start() // a workload: traced
	l, m := h.countProg()
	h.attach(work, "probed", l, false)
	if Traced(tool.pid) {
		t.Error("the tool catches the doorbell")
	}
	if !Traced(w.pid) {
		t.Error("the workload does not catch the doorbell")
	}
	for _, pid := range h.tab.Processes() {
		if pid == tool.pid {
			t.Error("the tool registered")
		}
	}
	tool.do("call 10 0 0")
	tool.do("fork 10")
	if n := m.sum(t, 0); n != 0 {
		t.Fatalf("count = %d in the tool and its fork, want 0", n)
	}
	w.do("call 10 0 0")
	if n := m.sum(t, 0); n != 10 {
		t.Fatalf("count = %d in the workload, want 10", n)
	}
}
