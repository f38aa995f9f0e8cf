package jit_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// FuzzRobust compiles arbitrary instruction bytes, every memory access checked, and runs what
// compiles with a budget. Nothing the verifier would catch is caught here: registers hold
// whatever they hold, pointers are anything. The compiler must refuse or compile without
// panicking, and the code must return or stop with a fault, never crash the process.
func FuzzRobust(f *testing.F) {
	f.Add(isa.Encode(asm(f, "mov %r0, 1\nexit")))
	f.Add(isa.Encode(asm(f, "ldxdw %r0, [%r3+8]\nstxdw [%r7-8], %r0\nexit")))
	f.Add(isa.Encode(asm(f, "call local f\nexit\nf:\ncall local f\nexit")))
	f.Add(isa.Encode(asm(f, "l:\nlock fetch add [%r2+3], %r1\nja l\nexit")))
	f.Add(isa.Encode(asm(f, "div %r1, %r2\nsmod32 %r3, %r4\ncall %r5\nldabsw 4\nmov %r0, 0")))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = data[:len(data)/8*8]
		if len(data) == 0 {
			return
		}
		insns, err := isa.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		p := progOf(insns, true)
		p.Maps = make([]program.MapInfo, 2)
		c, err := jit.Compile(p)
		if err != nil {
			return
		}
		fn, err := jit.Load(c)
		if err != nil {
			t.Fatal(err)
		}
		defer fn.Close()
		mem := heapBytes(64)
		env := diffEnv(t, mem)
		env.Maps = []uint64{1, 2}
		env.MapValues = []uint64{memory.Addr(mem), memory.Addr(mem[32:])}
		env.Budget = 10000
		var args [5]uint64
		for i := range args {
			args[i] = binary.LittleEndian.Uint64(append(data[8*i%len(data):], make([]byte, 8)...))
		}
		args[0] = memory.Addr(mem)
		if _, err := fn.Run(env, args); err != nil {
			var f *program.Fault
			if !errors.As(err, &f) {
				t.Fatalf("not a fault: %v", err)
			}
		}
	})
}
