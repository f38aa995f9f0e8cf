package compat

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Background is a tool left running while other commands look at what it made.
type Background struct {
	cmd   *exec.Cmd
	lines chan string
}

// StartShim starts a tool under ebpfu-shim as the ordinary user (kernel false) or as root against
// the kernel, and waits until it prints a line containing ready.
func (e *Env) StartShim(t *testing.T, kernel bool, ready string, argv ...string) *Background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if !kernel {
		argv = append([]string{"setpriv", "--reuid=" + strconv.Itoa(e.UID), "--regid=" + strconv.Itoa(e.GID),
			"--clear-groups", "--inh-caps=-all", "--", "env", "HOME=" + e.Home,
			"PATH=" + e.Dir + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", e.ShimPath()}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = e.Home
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &Background{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		close(b.lines)
	}()
	t.Cleanup(func() { b.Stop(t) })
	for {
		select {
		case l, ok := <-b.lines:
			if !ok {
				t.Fatalf("%s ended before %q", strings.Join(argv, " "), ready)
			}
			if strings.Contains(l, ready) {
				return b
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: no %q within a minute", strings.Join(argv, " "), ready)
		}
	}
}

// Stop interrupts the tool (SIGINT to its process group, as ^C) and waits for it; the rest of
// its output is returned.
func (b *Background) Stop(t *testing.T) string {
	if b.cmd.ProcessState != nil {
		return ""
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGINT)
	var rest []string
	for l := range b.lines {
		rest = append(rest, l)
	}
	b.cmd.Wait()
	return strings.Join(rest, "\n")
}

// TestListsAcrossShims: what a tool under one shim made is listed, shown and dumped by bpftool
// under another shim of the user, as the kernel shows it to every process, and is gone when the
// tool ends.
func TestListsAcrossShims(t *testing.T) {
	e := Stage(t, "bpftool", "bpftrace")
	prog := fmt.Sprintf(`BEGIN { @shared%d[1] = 5; @shared%d[2] = 7; printf("ready\n"); }`, os.Getpid(), os.Getpid())
	name := fmt.Sprintf("AT_shared%d", os.Getpid())
	k := e.StartShim(t, true, "ready", "bpftrace", "-e", prog)
	s := e.StartShim(t, false, "ready", "bpftrace", "-e", prog)
	for _, args := range [][]string{
		{"map", "dump", "name", name},
		{"map", "show", "name", name},
		{"-j", "map", "show", "name", name},
	} {
		argv := append([]string{"bpftool"}, args...)
		kr := e.Kernel(t, time.Minute, argv...)
		sr := e.Shim(t, time.Minute, argv...)
		if kr.Code != sr.Code || normalize(kr.Stdout) != normalize(sr.Stdout) {
			t.Errorf("%s differs:\n--- kernel (root)\n%s\n--- another shim (ordinary user)\n%s", strings.Join(argv, " "), kr, sr)
		}
	}
	list := e.Shim(t, time.Minute, "bpftool", "map", "list")
	if !strings.Contains(list.Stdout, "name "+name+" ") || !strings.Contains(list.Stdout, "perf_event_array  name printf") {
		t.Errorf("map list under another shim lacks the running tool's maps:\n%s", list)
	}
	kout, sout := k.Stop(t), s.Stop(t)
	if kout != sout {
		t.Errorf("the tools printed at their end:\n--- kernel\n%s\n--- shim\n%s", kout, sout)
	}
	for _, kind := range []string{"map", "prog"} {
		if r := e.Shim(t, time.Minute, "bpftool", kind, "list"); r.Code != 0 || r.Stdout != "" {
			t.Errorf("%s list after the tool ended:\n%s", kind, r)
		}
	}
}
