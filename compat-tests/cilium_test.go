package compat

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildCilium builds testdata/ciliumprog, a loader on cilium/ebpf, as a static binary
// (CGO_ENABLED=0: it never calls libc, so only seccomp can serve its bpf(2)) into the staged
// directory.
func buildCilium(t *testing.T, e *Env) string {
	t.Helper()
	bin := filepath.Join(e.Dir, "ciliumprog")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "build", "-o", bin, "./compat-tests/testdata/ciliumprog")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ciliumprog: %v\n%s", err, out)
	}
	if out, err := exec.Command("file", bin).CombinedOutput(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Fatalf("ciliumprog is not static: %s", out)
	}
	return bin
}

var objectIDs = regexp.MustCompile(`\bid [0-9]+`)

// TestCiliumStatic: a static loader built on cilium/ebpf creates, fills, iterates and inspects
// maps, loads and test-runs a program that updates them, and gets verifier errors for bad
// programs, printing the same under the shim as an ordinary user as against the kernel as root.
func TestCiliumStatic(t *testing.T) {
	e := Stage(t, "file")
	bin := buildCilium(t, e)
	k := e.Kernel(t, time.Minute, bin)
	s := e.Shim(t, time.Minute, bin)
	if k.Code != 0 {
		t.Fatalf("ciliumprog failed against the kernel:\n%s", k)
	}
	if s.Code != 0 {
		t.Fatalf("ciliumprog failed under the shim:\n%s", s)
	}
	kl := strings.Split(objectIDs.ReplaceAllString(k.Stdout, "id ID"), "\n")
	sl := strings.Split(objectIDs.ReplaceAllString(s.Stdout, "id ID"), "\n")
	if len(kl) != len(sl) {
		t.Fatalf("ciliumprog printed %d lines under the shim, %d against the kernel:\n--- kernel\n%s\n--- shim\n%s", len(sl), len(kl), k.Stdout, s.Stdout)
	}
	for i := range kl {
		if kl[i] == sl[i] {
			continue
		}
		t.Errorf("line %d differs:\n kernel %s\n   shim %s", i+1, kl[i], sl[i])
	}
	if s.Stderr != "" {
		t.Errorf("the shim reported something:\n%s", s.Stderr)
	}
	// The same inside an unprivileged container.
	if probe := e.AsUser(t, 30*time.Second, "unshare", "--user", "--map-root-user", "true"); probe.Code != 0 {
		t.Skipf("unprivileged user namespaces are not available:\n%s", probe)
	}
	c := e.Container(t, time.Minute, bin)
	if c.Code != 0 || objectIDs.ReplaceAllString(c.Stdout, "id ID") != objectIDs.ReplaceAllString(s.Stdout, "id ID") {
		t.Errorf("ciliumprog in a container differs from its run under the shim:\n--- container\n%s\n--- shim\n%s", c, s)
	}
}
