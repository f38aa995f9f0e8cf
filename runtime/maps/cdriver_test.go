package maps

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// The C implementation (cshim/maps) is built with gcc into a small driver that tests run on
// the same memfds as the Go implementation.

var (
	driverOnce sync.Once
	driverPath string
	driverErr  error
	driverDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if driverDir != "" {
		os.RemoveAll(driverDir)
	}
	os.Exit(code)
}

// buildDriver compiles cshim/maps and its test driver once per test binary; it also checks that
// the library object needs nothing from libc.
func buildDriver(t testing.TB) string {
	t.Helper()
	driverOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			driverErr = err
			return
		}
		dir, err := os.MkdirTemp("", "ebpfu-mapsdrv")
		if err != nil {
			driverErr = err
			return
		}
		driverDir = dir
		src := filepath.Join("..", "..", "cshim", "maps")
		obj := filepath.Join(dir, "maps.o")
		run := func(args ...string) error {
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		if driverErr = run("gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding",
			"-fno-tree-loop-distribute-patterns", "-fno-stack-protector", "-c", filepath.Join(src, "maps.c"), "-o", obj); driverErr != nil {
			return
		}
		out, err := exec.Command("nm", "-u", obj).Output()
		if err != nil {
			driverErr = err
			return
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			driverErr = fmt.Errorf("cshim/maps needs symbols from outside: %s", s)
			return
		}
		driverPath = filepath.Join(dir, "mapsdrv")
		driverErr = run("gcc", "-std=gnu99", "-O2", "-Wall", "-Werror", "-o", driverPath,
			filepath.Join(src, "testdrv", "mapsdrv.c"), obj)
	})
	if driverErr != nil {
		t.Fatalf("build the C maps driver: %v", driverErr)
	}
	return driverPath
}

// cdriver is one running C driver process.
type cdriver struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	slots int
}

// startDriver starts a driver that inherited the memfds of files (slot i is files[i]).
func startDriver(t testing.TB, fds ...int) *cdriver {
	t.Helper()
	cmd := exec.Command(buildDriver(t))
	for _, fd := range fds {
		// A duplicate, since an *os.File closes its fd when collected.
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(dup), "memfd")
		defer f.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &cdriver{t: t, cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	d.out.Buffer(make([]byte, 1<<20), 1<<22)
	t.Cleanup(d.stop)
	for i := range fds {
		if got := d.do("open %d %d", i, 3+i); got != "ok" {
			t.Fatalf("driver open slot %d: %s", i, got)
		}
	}
	return d
}

// do sends one command and returns its result line.
func (d *cdriver) do(format string, args ...any) string {
	d.t.Helper()
	if _, err := fmt.Fprintf(d.in, format+"\n", args...); err != nil {
		d.t.Fatalf("driver: %v", err)
	}
	if !d.out.Scan() {
		d.t.Fatalf("driver ended: %v", d.out.Err())
	}
	return d.out.Text()
}

// send writes a command without waiting for its result.
func (d *cdriver) send(format string, args ...any) {
	fmt.Fprintf(d.in, format+"\n", args...)
}

// result waits for the next result line.
func (d *cdriver) result() string {
	if !d.out.Scan() {
		return "<eof>"
	}
	return d.out.Text()
}

func (d *cdriver) stop() {
	if d.cmd.Process != nil {
		d.in.Close()
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

func hexOrDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return fmt.Sprintf("%x", b)
}
