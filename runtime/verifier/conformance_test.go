package verifier

import (
	"testing"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// rawHelpers is the helper set of the conformance plugin.
func rawHelpers(t testing.TB) *helper.Table {
	tab := helper.NewTable()
	for _, id := range []helper.ID{helper.KtimeGetNS, helper.GetPrandomU32, helper.GetSmpProcessorID} {
		if err := tab.Register(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	return tab
}

// TestConformanceFilesVerify checks that every conformance program is accepted for a Raw
// context of its memory.
func TestConformanceFilesVerify(t *testing.T) {
	dir, ok := conformance.FindDir()
	if !ok {
		t.Skip("no bpf_conformance test files at ../shared/conformance/tests")
	}
	tests, err := conformance.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	tab := rawHelpers(t)
	t.Logf("%d files", len(tests))
	for _, c := range tests {
		opts := &Options{Type: program.Raw, CtxSize: len(c.Mem), CtxWritable: true, Helpers: tab}
		p, err := Verify(c.Insns, opts)
		if c.Error != "" {
			continue
		}
		if err != nil {
			t.Errorf("%s: refused: %v\n%s", c.Name, err, c.Asm)
			continue
		}
		checks := 0
		for _, k := range p.Checks {
			if k == program.CheckBounds {
				checks++
			}
		}
		if checks > 0 {
			t.Logf("%s: %d run-time checks", c.Name, checks)
		}
	}
}
