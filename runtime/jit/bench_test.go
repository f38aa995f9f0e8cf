package jit_test

import (
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// program1000 returns a 1,000-instruction program of the usual mix: ALU on registers and
// constants, loads and stores on the stack and the context (half of them checked), forward
// branches, a loop, a helper call, lddw.
func program1000() *program.Program {
	var insns []isa.Instruction
	emit := func(i ...isa.Instruction) { insns = append(insns, i...) }
	for r := uint8(0); r <= 9; r++ {
		if r != 1 {
			emit(isa.Make(isa.OpMov64Imm, r, 0, 0, int32(r)))
		}
	}
	for len(insns) < 990 {
		n := len(insns)
		emit(
			isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcX, isa.R3, isa.R4, 0, 0),
			isa.Make(isa.ClassALU|isa.ALUXor|isa.SrcK, isa.R4, 0, 0, int32(n)),
			isa.Make(isa.ClassLDX|isa.ModeMEM|isa.SizeW, isa.R5, isa.R1, int16(n%64), 0),
			isa.Make(isa.ClassSTX|isa.ModeMEM|isa.SizeDW, isa.R10, isa.R3, -8*int16(1+n%32), 0),
			isa.Make(isa.ClassALU64|isa.ALULsh|isa.SrcK, isa.R5, 0, 0, 3),
			isa.Make(isa.ClassJMP|isa.JmpJGT|isa.SrcX, isa.R5, isa.R3, 2, 0),
			isa.Make(isa.ClassALU64|isa.ALUMul|isa.SrcK, isa.R6, 0, 0, 33),
			isa.Make(isa.ClassALU64|isa.ALUDiv|isa.SrcX, isa.R7, isa.R6, 0, 0),
			isa.Make(isa.OpLdDW, isa.R8, 0, 0, int32(n)), isa.Make(0, 0, 0, 0, 1),
		)
		if n%100 == 0 {
			emit(isa.Make(isa.OpCall, 0, 0, 0, int32(helper.KtimeGetNS)), isa.Make(isa.OpMov64Imm, isa.R1, 0, 0, 0))
		}
	}
	emit(isa.Make(isa.OpMov64Imm, isa.R0, 0, 0, 0),
		isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcK, isa.R0, 0, 0, 1),
		isa.Make(isa.ClassJMP|isa.JmpJLT|isa.SrcK, isa.R0, 0, -2, 100),
		isa.Make(isa.OpExit, 0, 0, 0, 0))
	p := progOf(insns, false)
	for pc := range p.Checks {
		if pc%2 == 0 {
			p.Checks[pc] = program.CheckBounds
		}
	}
	return p
}

// BenchmarkCompile is the compile time of a 1,000-instruction program (LLVM-based JITs take
// 4-16 ms).
func BenchmarkCompile(b *testing.B) {
	p := program1000()
	if len(p.Insns) < 1000 {
		b.Fatalf("%d instructions", len(p.Insns))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jit.Compile(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(p.Insns)), "ns/insn")
}

// BenchmarkCall is one call from Go into a compiled trivial program (r0 = r1 + 1), the cost the
// Go side adds to every run.
func BenchmarkCall(b *testing.B) {
	f := load(b, progOf([]isa.Instruction{
		isa.Make(isa.OpMov64Reg, isa.R0, isa.R1, 0, 0),
		isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcK, isa.R0, 0, 0, 1),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}, false))
	env := &helper.Env{}
	b.ReportAllocs()
	var n uint64
	for b.Loop() {
		r, err := f.Run(env, [5]uint64{n})
		if err != nil || r != n+1 {
			b.Fatal(r, err)
		}
		n++
	}
}

// BenchmarkCallHelper is one call of a program that calls one Go helper: the cost of the switch
// to Go and back.
func BenchmarkCallHelper(b *testing.B) {
	f := load(b, progOf([]isa.Instruction{
		isa.Make(isa.OpCall, 0, 0, 0, int32(helper.KtimeGetNS)),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}, false))
	env := rawEnv(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if r, err := f.Run(env, [5]uint64{}); err != nil || r != 42 {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkCallLoop is one call of a program with a loop, which runs as a system call for the
// Go scheduler.
func BenchmarkCallLoop(b *testing.B) {
	f := load(b, progOf([]isa.Instruction{
		isa.Make(isa.OpMov64Imm, isa.R0, 0, 0, 0),
		isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcK, isa.R0, 0, 0, 1),
		isa.Make(isa.ClassJMP|isa.JmpJLT|isa.SrcK, isa.R0, 0, -2, 10),
		isa.Make(isa.OpExit, 0, 0, 0, 0),
	}, false))
	env := &helper.Env{}
	for b.Loop() {
		if r, err := f.Run(env, [5]uint64{}); err != nil || r != 10 {
			b.Fatal(r, err)
		}
	}
}

// TestProgram1000Runs keeps the compile benchmark's program honest: it runs and agrees with
// the interpreter.
func TestProgram1000Runs(t *testing.T) {
	p := program1000()
	mem := heapBytes(128)
	env := rawEnv(t, mem)
	r, err := runJIT(t, p, env, [5]uint64{memory.Addr(mem), 128})
	if err != nil || r != 100 {
		t.Errorf("got %d, %v", r, err)
	}
}
