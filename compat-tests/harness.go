// Package compat runs stock eBPF tools under ebpfu-shim as an ordinary user and compares what
// they print with what the same tools print against the kernel (as root) on the same workload.
//
// The tests need root (to create the ordinary user and to ask the kernel for the oracle's
// answers) and the Debian packages of scripts/install-deps.sh; without them they skip with the
// reason.
package compat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestUser is the ordinary user the tools run as under the shim.
const TestUser = "ebpfu-test"

// Env is a staged test environment: a world-readable directory holding freshly built ebpfu
// binaries, and the ordinary user that runs them.
type Env struct {
	Dir      string // world-readable directory with the binaries (Dir/ebpfu-shim, ...)
	UID, GID int
	Home     string // world-writable scratch directory for the user
}

// Stage returns the staged environment, building it on first use: the repository's commands in
// a world-readable directory and the ordinary test user. It skips the test when not root or
// when one of tools is not installed.
func Stage(t testing.TB, tools ...string) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("compat tests need root: they create an ordinary user and use the kernel as the oracle")
	}
	for _, tool := range append([]string{"setpriv", "useradd"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	e, err := staged()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// staged builds the environment once per test binary; Cleanup removes it.
var staged = sync.OnceValues(func() (*Env, error) {
	dir, err := os.MkdirTemp("", "ebpfu-compat-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	root := repoRoot()
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the commands: %v\n%s", err, out)
	}
	// The agent preloaded into traced processes, where ebpfu-shim looks for it.
	agent := exec.Command(filepath.Join(root, "cshim", "build.sh"), filepath.Join(dir, "libebpfu.so"))
	if out, err := agent.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the agent: %v\n%s", err, out)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o777); err != nil {
		return nil, err
	}
	if err := os.Chmod(home, 0o1777); err != nil {
		return nil, err
	}
	uid, gid, err := ensureUser()
	if err != nil {
		return nil, err
	}
	return &Env{Dir: dir, UID: uid, GID: gid, Home: home}, nil
})

// Cleanup removes the staged environment, if one was built.
func Cleanup() {
	if e, err := staged(); err == nil {
		os.RemoveAll(e.Dir)
	}
}

// ensureUser returns the ids of TestUser, creating the user when it does not exist.
func ensureUser() (uid, gid int, err error) {
	u, err := user.Lookup(TestUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/bin/sh", TestUser).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			return 0, 0, fmt.Errorf("useradd %s: %v\n%s", TestUser, err, out)
		}
		if u, err = user.Lookup(TestUser); err != nil {
			return 0, 0, fmt.Errorf("looking up %s: %v", TestUser, err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// repoRoot finds the repository's top directory from this file's place in it.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Result is what a command printed and how it ended.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// String describes the result for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// AsUser runs argv as the ordinary user, without capabilities, with HOME set to the scratch
// directory, and waits at most timeout.
func (e *Env) AsUser(t testing.TB, timeout time.Duration, argv ...string) Result {
	t.Helper()
	args := append([]string{
		"--reuid=" + strconv.Itoa(e.UID), "--regid=" + strconv.Itoa(e.GID),
		"--clear-groups", "--inh-caps=-all", "--",
		"env", "HOME=" + e.Home, "PATH=" + e.Dir + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
	}, argv...)
	return run(t, timeout, e.Home, "setpriv", args...)
}

// Shim runs a tool under ebpfu-shim as the ordinary user.
func (e *Env) Shim(t testing.TB, timeout time.Duration, argv ...string) Result {
	t.Helper()
	return e.AsUser(t, timeout, append([]string{e.ShimPath()}, argv...)...)
}

// ShimPath is the staged ebpfu-shim.
func (e *Env) ShimPath() string { return filepath.Join(e.Dir, "ebpfu-shim") }

// Container runs a tool under ebpfu-shim as the ordinary user inside new user, pid and mount
// namespaces where the user is root (unshare --map-root-user): a container without CAP_BPF.
func (e *Env) Container(t testing.TB, timeout time.Duration, argv ...string) Result {
	t.Helper()
	return e.AsUser(t, timeout, append([]string{"unshare", "--user", "--map-root-user", "--pid", "--fork",
		"--mount", "--mount-proc", e.ShimPath()}, argv...)...)
}

// Kernel runs a tool as root against the real kernel: the oracle.
func (e *Env) Kernel(t testing.TB, timeout time.Duration, argv ...string) Result {
	t.Helper()
	return run(t, timeout, e.Home, argv[0], argv[1:]...)
}

func run(t testing.TB, timeout time.Duration, dir, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no end within %v\n%s", name, strings.Join(args, " "), timeout, res)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}
