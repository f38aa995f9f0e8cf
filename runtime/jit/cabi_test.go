package jit_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// TestCABI calls compiled code from C as the agent will (testdata/cabi.c against
// cabi/ebpfu_ctx.h): C helpers with the block as a sixth argument and an aligned stack, the eBPF
// stack on the C stack, a region, maps and map values, and compares with the Go runner.
func TestCABI(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cabi")
	build := exec.Command(cc, "-O2", "-fno-omit-frame-pointer", "-Wall", "-Werror", "-Icabi", "-o", bin, "testdata/cabi.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the C caller: %v\n%s", err, out)
	}
	mapFD := func(dst uint8, src uint8, idx int32, off int32) []isa.Instruction {
		return []isa.Instruction{isa.Make(isa.OpLdDW, dst, src, 0, idx), isa.Make(0, 0, 0, 0, off)}
	}
	var insns []isa.Instruction
	insns = append(insns, asm(t, "mov %r6, %r1\nldxdw %r7, [%r6+8]")...)
	insns = append(insns, mapFD(isa.R1, isa.PseudoMapFD, 0, 0)...)
	insns = append(insns, mapFD(isa.R2, isa.PseudoMapValue, 0, 8)...)
	insns = append(insns, asm(t, `
ldxdw %r2, [%r2]
mov %r3, 3
mov %r4, 4
mov %r5, 5
call 7
mov %r8, %r0
call 5
add %r8, %r0
stxdw [%r6], %r8
call local f
add %r0, %r8
add %r0, %r7
exit
f:
mov %r0, 0
mov %r1, 0
l:
stxdw [%r10-8], %r1
ldxdw %r2, [%r10-8]
add %r0, %r2
add %r1, 1
jlt %r1, 100, l
exit`)...)
	p := progOf(insns, true)
	p.Maps = make([]program.MapInfo, 1)
	c, err := jit.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	code := filepath.Join(dir, "code")
	if err := os.WriteFile(code, c.Text, 0o600); err != nil {
		t.Fatal(err)
	}

	// The same run in Go.
	mem := heapBytes(64)
	for i := 0; i < 8; i++ {
		binary.LittleEndian.PutUint64(mem[8*i:], uint64(i+1))
	}
	env := rawEnv(t, mem)
	if err := env.Helpers.Register(helper.GetPrandomU32, func(_ *helper.Env, a *[5]uint64) (uint64, error) {
		return a[0]*3 ^ a[1]*5 ^ a[2]*7 ^ a[3]*11 ^ a[4]*13, nil
	}); err != nil {
		t.Fatal(err)
	}
	env.Maps = []uint64{0x1234}
	env.MapValues = []uint64{memory.Addr(mem[16:])}
	for _, budget := range []uint64{0, 1000, 150} {
		env.Budget = budget
		r0, err := runJIT(t, p, env, [5]uint64{memory.Addr(mem), 64})
		want := fmt.Sprintf("%d 0 0 %d", r0, binary.LittleEndian.Uint64(mem))
		if err != nil {
			f := err.(*program.Fault)
			want = fmt.Sprintf("0 %d %d", jit.FaultBudget, f.PC)
		}
		out, err := exec.Command(bin, code, fmt.Sprint(c.Entry), fmt.Sprint(budget)).CombinedOutput()
		if err != nil {
			t.Fatalf("budget %d: the C caller: %v\n%s", budget, err, out)
		}
		got := strings.TrimSpace(string(out))
		t.Logf("budget %d: %s", budget, got)
		if !strings.HasPrefix(got, want) {
			t.Errorf("budget %d: C caller %q, Go runner %q", budget, got, want)
		}
		copy(mem, make([]byte, 8))
		binary.LittleEndian.PutUint64(mem, 1)
	}
}
