package interp

import (
	"errors"
	"reflect"
	"runtime/debug"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

func countOps(c *Code, from, to uint8) int {
	n := 0
	for _, in := range c.insns {
		if in.op >= from && in.op <= to {
			n++
		}
	}
	return n
}

// TestFuseApplies checks that the sequences clang emits are fused, and never across a jump
// target or a return address.
func TestFuseApplies(t *testing.T) {
	src := `
mov %r3, 0
l:
mov %r5, %r1
add %r5, %r3
ldxb %r5, [%r5]
mov %r6, %r5
and %r6, 1
mov32 %r7, %r5
lsh32 %r7, 3
add %r1, %r3
ldxh %r1, [%r1+2]
add %r3, 1
jlt %r3, 4, l
mov %r0, %r5
exit`
	c, err := Prepare(prog(t, src, true))
	if err != nil {
		t.Fatal(err)
	}
	if n := countOps(c, opMovAdd64Imm, opLdxDWIdxChk); n != 4 {
		t.Errorf("%d fused instructions, want 4", n)
	}
	// The same sequences with jump targets inside them are left alone.
	src2 := `
mov %r5, %r1
ja m
m:
add %r5, %r3
ldxb %r5, [%r5]
mov %r6, %r5
call local f
and %r6, 1
mov %r0, %r6
exit
f:
exit`
	c, err = Prepare(prog(t, src2, true))
	if err != nil {
		t.Fatal(err)
	}
	if n := countOps(c, opMovAdd64Imm, opLdxDWIdxChk); n != 1 { // only add+ldxb
		t.Errorf("%d fused instructions, want 1", n)
	}
}

// TestFusedSelfOperand checks `r[d] = r[s]; r[d] OP= r[d]`, which must use the copy.
func TestFusedSelfOperand(t *testing.T) {
	for src, want := range map[string]uint64{
		"mov %r1, 21\nmov %r0, %r1\nadd %r0, %r0\nexit":                                                                    42,
		"mov %r1, 5\nmov %r0, %r1\nxor %r0, %r0\nexit":                                                                     0,
		"stdw [%r10-8], 7\nmov %r1, -4\nmov %r0, %r10\nadd %r0, %r0\nmov %r0, %r10\nadd %r0, %r1\nldxw %r0, [%r0-4]\nexit": 7,
	} {
		if v, err := run(t, src, nil); err != nil || v != want {
			t.Errorf("%q: %d, %v; want %d", src, v, err, want)
		}
	}
}

// FuzzFuse runs arbitrary programs, every access checked, with and without superinstructions:
// the results, faults and memory must be the same.
func FuzzFuse(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, isa.Encode([]isa.Instruction{isa.Make(isa.OpMov64Reg, 0, 1, 0, 0),
		isa.Make(isa.ClassALU64|isa.ALUAdd|isa.SrcX, 0, 2, 0, 0), isa.Make(isa.OpExit, 0, 0, 0, 0)}))
	f.Fuzz(func(t *testing.T, mem, code []byte) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		insns, err := isa.Decode(code[:len(code)/isa.InstructionSize*isa.InstructionSize])
		if err != nil || len(insns) == 0 {
			return
		}
		p := progOf(insns, true)
		type outcome struct {
			r0    uint64
			err   string
			mem   []byte
			stack []byte
		}
		buf := heapBytes(len(mem))
		m := New()
		runWith := func(fuse bool) outcome {
			c, err := prepare(p, fuse)
			if err != nil {
				t.Fatal(err)
			}
			copy(buf, mem)
			clear(m.stack)
			env := &helper.Env{Budget: 5000, Helpers: helper.NewTable()}
			if err := env.Mem.AddBytes(buf, true); err != nil {
				t.Fatal(err)
			}
			r0, err := m.RunCode(c, env, [5]uint64{memory.Addr(buf), uint64(len(buf))})
			o := outcome{r0: r0, mem: append([]byte(nil), buf...), stack: append([]byte(nil), m.stack...)}
			var fault *program.Fault
			if err != nil {
				if !errors.As(err, &fault) {
					t.Fatalf("not a fault: %v", err)
				}
				o.err = err.Error()
			}
			return o
		}
		fused, plain := runWith(true), runWith(false)
		if !reflect.DeepEqual(fused, plain) {
			t.Fatalf("fused run differs: r0 %#x / %#x, err %q / %q", fused.r0, plain.r0, fused.err, plain.err)
		}
	})
}
