package interp_test

import (
	"reflect"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// TestVerifiedConformance runs all 313 bpf_conformance files as ebpfu-vm does: verified as
// program.Raw for their memory, then interpreted.
func TestVerifiedConformance(t *testing.T) {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skipf("bpf_conformance test files not found (looked in %q; set %s)", dir, conformance.DirEnv)
	}
	tests, err := conformance.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	table := helper.NewTable()
	if err := table.Register(helper.KtimeGetNS, func(*helper.Env, *[5]uint64) (uint64, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	m := interp.New()
	passed, checked, accesses := 0, 0, 0
	for _, tc := range tests {
		p, err := verifier.Verify(tc.Insns, &verifier.Options{
			Type: program.Raw, CtxSize: len(tc.Mem), CtxWritable: true, Helpers: table,
		})
		if err != nil {
			t.Errorf("%s: refused: %v", tc.Name, err)
			continue
		}
		for _, c := range p.Checks {
			if c == program.CheckBounds {
				checked++
			}
		}
		accesses += len(p.Checks)
		mem := reflect.MakeSlice(reflect.TypeOf([]byte(nil)), len(tc.Mem), len(tc.Mem)).Bytes()
		copy(mem, tc.Mem)
		env := &helper.Env{Helpers: table}
		if err := env.Mem.AddBytes(mem, true); err != nil {
			t.Fatal(err)
		}
		got, err := m.Run(p, env, [5]uint64{memory.Addr(mem), uint64(len(mem))})
		switch {
		case err != nil:
			t.Errorf("%s: %v", tc.Name, err)
		case got != tc.Result:
			t.Errorf("%s: r0 = %#x, want %#x", tc.Name, got, tc.Result)
		default:
			passed++
		}
	}
	if passed != 313 {
		t.Errorf("%d/%d passed, want 313", passed, len(tests))
	}
	t.Logf("%d/%d passed; %d of %d instructions checked at run time", passed, len(tests), checked, accesses)
}
