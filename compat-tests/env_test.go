package compat

import (
	"strings"
	"testing"
	"time"
)

// TestUserHasNoKernelBPF checks the premise of every other test here: the ordinary user cannot
// use the kernel's bpf(2), so an answer that leaked to the kernel fails loudly instead of passing.
func TestUserHasNoKernelBPF(t *testing.T) {
	e := Stage(t, "bpftool")
	r := e.AsUser(t, 30*time.Second, "bpftool", "prog", "list")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
		t.Fatalf("the ordinary user reached the kernel's bpf(2):\n%s", r)
	}
}
