package verifier

import (
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// diamonds is a program of n branches that each set several registers to one of two numbers:
// 2^n paths, which pruning and joining must keep to a few states per instruction.
func diamonds(n int) []isa.Instruction {
	var insns []isa.Instruction
	for i := 0; i < n; i++ {
		insns = append(insns, call(int32(helper.GetPrandomU32)))
		insns = append(insns, jmp(isa.JmpJSET, 0, 1, 4))
		insns = append(insns, mov(6, int32(i)), mov(7, int32(2*i)), mov(8, int32(3*i)), ja(3))
		insns = append(insns, mov(6, int32(i+1000)), mov(7, int32(i+2000)), mov(8, int32(i+3000)))
	}
	return append(insns, mov(0, 0), exit())
}

func TestManyPathsStayBounded(t *testing.T) {
	opts := Options{Type: program.Kprobe, Helpers: allHelpersNoT(), GPL: true}
	v := newVerifier(diamonds(200), &opts)
	if _, err := v.run(); err != nil {
		t.Fatal(err)
	}
	if v.processed > 100_000 {
		t.Errorf("200 diamonds took %d instructions to verify", v.processed)
	}
	t.Logf("200 diamonds (%d instructions): %d processed, %d states", len(diamonds(200)), v.processed, v.totalStates)
}

// BenchmarkVerifyDiamonds measures the verification of a branchy program.
func BenchmarkVerifyDiamonds(b *testing.B) {
	insns := diamonds(100)
	opts := &Options{Type: program.Kprobe, Helpers: allHelpersNoT(), GPL: true}
	for i := 0; i < b.N; i++ {
		if _, err := Verify(insns, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyLoop measures a loop that needs widening.
func BenchmarkVerifyLoop(b *testing.B) {
	insns := prog(mov(6, 0), alu(isa.ALUAdd, 6, 1), jmp(isa.JmpJLT, 6, 100000, -2), mov(0, 0), exit())
	opts := &Options{Type: program.Kprobe, Helpers: allHelpersNoT(), GPL: true}
	for i := 0; i < b.N; i++ {
		if _, err := Verify(insns, opts); err != nil {
			b.Fatal(err)
		}
	}
}
