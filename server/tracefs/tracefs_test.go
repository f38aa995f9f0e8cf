package tracefs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestCaptureConsistent: every event of available_events has a directory with its id and
// format, the format names the same id, and Event maps the id back to the event.
func TestCaptureConsistent(t *testing.T) {
	fs := openCapture(stateDir(t))
	avail, ok, err := fs.Mirror(Root + "/available_events")
	if !ok || err != nil {
		t.Fatalf("available_events: %v %v", ok, err)
	}
	b, err := os.ReadFile(avail)
	if err != nil {
		t.Fatal(err)
	}
	events := strings.Fields(string(b))
	if len(events) < 100 {
		t.Fatalf("only %d events in the capture", len(events))
	}
	for _, ev := range events {
		cat, name, _ := strings.Cut(ev, ":")
		dir, _, _ := fs.Mirror(Root + "/events/" + cat + "/" + name)
		idb, err := os.ReadFile(filepath.Join(dir, "id"))
		if err != nil {
			t.Errorf("%s: %v", ev, err)
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSpace(string(idb)), 10, 64)
		if err != nil {
			t.Errorf("%s: id %q", ev, idb)
			continue
		}
		format, err := os.ReadFile(filepath.Join(dir, "format"))
		if err != nil || !bytes.HasPrefix(format, []byte("name: "+name+"\nID: "+strconv.FormatUint(id, 10)+"\n")) {
			t.Errorf("%s: format does not start with its name and id %d: %.60q (%v)", ev, id, format, err)
		}
		if got, ok := fs.Event(id); !ok || got != ev {
			t.Errorf("Event(%d) = %q, %v; want %q", id, got, ok, ev)
		}
	}
	if _, ok := fs.Event(1 << 40); ok {
		t.Error("an unknown id names an event")
	}
	if !strings.HasPrefix(fs.Release(), "6.") {
		t.Errorf("the capture's kernel release is %q", fs.Release())
	}
	if _, ok, _ := fs.Mirror("/sys/kernel/tracingx/available_events"); ok {
		t.Error("a path outside tracefs is served")
	}
	if m, _, _ := fs.Mirror(Root + "/uprobe_events"); !exists(m) {
		t.Error("no uprobe_events")
	}
}

// stateDir returns a scratch state directory on tmpfs, where state directories live (a disk
// makes extraction seconds slower).
func stateDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "ebpfu-tracefs-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestConcurrentExtract: shims of one user starting together each get a whole tree.
func TestConcurrentExtract(t *testing.T) {
	dir := stateDir(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, _, err := openCapture(dir).Mirror(Root + "/events/syscalls/sys_enter_openat/format")
			if err == nil && !exists(m) {
				err = os.ErrNotExist
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("the state directory holds %d entries after extraction, want the tree alone", len(ents))
	}
}

// TestCaptureMatchesKernel compares the capture with the running kernel's tracefs (mounted as
// root in a private mount namespace), when the capture was made on this kernel release.
func TestCaptureMatchesKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading the kernel's tracefs needs root")
	}
	fs := openCapture(stateDir(t))
	if rel, _ := os.ReadFile("/proc/sys/kernel/osrelease"); strings.TrimSpace(string(rel)) != fs.Release() {
		t.Skipf("the capture is of kernel %s, this is %s", fs.Release(), rel)
	}
	files := []string{"available_events", "events/syscalls/sys_enter_openat/format", "events/syscalls/sys_exit_execve/id",
		"events/sched/sched_switch/format", "events/header_page"}
	script := "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || exit 99\n"
	for _, f := range files {
		script += "cat " + Root + "/" + f + "; echo @@\n"
	}
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script).Output()
	if err != nil {
		t.Skipf("cannot read the kernel's tracefs: %v", err)
	}
	kernel := strings.Split(string(out), "@@\n")
	for i, f := range files {
		m, _, err := fs.Mirror(Root + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(m)
		if err != nil || string(b) != kernel[i] {
			t.Errorf("%s differs from the kernel's (%v):\n--- kernel\n%.300s\n--- capture\n%.300s", f, err, kernel[i], b)
		}
	}
}
