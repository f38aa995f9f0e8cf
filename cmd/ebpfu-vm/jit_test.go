package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/isa"
)

// TestConformanceProtocolJIT runs every bpf_conformance file through the binary with --jit, as
// the upstream runner does with --plugin_options --jit.
func TestConformanceProtocolJIT(t *testing.T) {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skipf("bpf_conformance test files not found (looked in %q; set %s)", dir, conformance.DirEnv)
	}
	tests, err := conformance.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, tc := range tests {
		r := invoke(t, isa.Encode(tc.Insns), tc.Mem, "--jit")
		v, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(r.stdout, "0x")), 16, 64)
		if r.code != 0 || err != nil || v != tc.Result {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %#x", tc.Name, r.code, r.stdout, r.stderr, tc.Result)
			continue
		}
		passed++
	}
	if passed != 313 {
		t.Errorf("%d/%d files passed with --jit, want 313", passed, len(tests))
	}
}

// TestJITBudget checks --jit runs without a budget by default and honours --budget.
func TestJITBudget(t *testing.T) {
	loop := asm(t, "mov %r0, 0\nl:\nadd %r0, 1\njlt %r0, 1000000, l\nexit")
	if r := invoke(t, loop, nil, "--jit"); r.code != 0 || r.stdout != "f4240\n" {
		t.Errorf("a million iterations: %+v", r)
	}
	r := invoke(t, loop, nil, "--jit", "--budget", "1000")
	wantStopped(t, "budget", r)
	if !strings.Contains(r.stderr, "budget") {
		t.Errorf("budget fault does not say so: %q", r.stderr)
	}
	if r := invoke(t, asm(t, "stb [%r1], 9\nldxb %r0, [%r1]\nexit"), []byte{1}, "--jit"); r.code != 0 || r.stdout != "9\n" {
		t.Errorf("write to memory: %+v", r)
	}
}
