package interp

import (
	"testing"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/memory"
)

// benchProgs are small loops in the shape clang gives the benchmark programs of scripts/bench.
var benchProgs = map[string]string{
	// FNV-1a over 1 KiB: loads, ALU, a back-edge per byte.
	"fnv": `
lddw %r0, 0xcbf29ce484222325
lddw %r4, 0x100000001b3
mov %r3, 0
l:
mov %r5, %r1
add %r5, %r3
ldxb %r5, [%r5]
xor %r0, %r5
mul %r0, %r4
add %r3, 1
jlt %r3, 1024, l
exit`,
	// Bubble-sort style compare and swap on the stack.
	"stack": `
mov %r3, 0
init:
mov %r4, %r3
mul %r4, 2654435761
and %r4, 0xffff
mov %r5, %r10
add %r5, -512
mov %r6, %r3
lsh %r6, 3
add %r5, %r6
stxdw [%r5], %r4
add %r3, 1
jlt %r3, 64, init
mov %r0, 0
mov %r3, 0
outer:
mov %r5, %r10
add %r5, -512
mov %r7, 0
inner:
ldxdw %r8, [%r5]
ldxdw %r9, [%r5+8]
jle %r8, %r9, noswap
stxdw [%r5], %r9
stxdw [%r5+8], %r8
add %r0, 1
noswap:
add %r5, 8
add %r7, 1
jlt %r7, 63, inner
add %r3, 1
jlt %r3, 16, outer
exit`,
}

func BenchmarkInterp(b *testing.B) {
	buf := heapBytes(1024)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, checked := range []bool{false, true} {
		for name, src := range benchProgs {
			label := name
			if checked {
				label += "/checked"
			}
			b.Run(label, func(b *testing.B) {
				c, err := Prepare(prog(b, src, checked))
				if err != nil {
					b.Fatal(err)
				}
				env := &helper.Env{}
				if err := env.Mem.AddBytes(buf, true); err != nil {
					b.Fatal(err)
				}
				m := New()
				args := [5]uint64{memory.Addr(buf), uint64(len(buf))}
				for b.Loop() {
					if _, err := m.RunCode(c, env, args); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
