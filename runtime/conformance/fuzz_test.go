package conformance

import (
	"slices"
	"testing"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// FuzzAssemble checks that assembling never panics and that what assembles survives a
// disassemble/assemble round trip.
func FuzzAssemble(f *testing.F) {
	f.Add("mov %r0, 1\nexit")
	f.Add("l:\nlddw %r1, 0x123456789\njne32 %r1, 0xffffff80, l\nlock fetch xor32 [%r10-4], %r1\ncall local l\ncall %r2\nexit")
	f.Add("ldxsh %r0, [%r1-2]\nmovsx1632 %r2, %r0\nbswap64 %r2\nbe16 %r0\nja32 exit\nsdiv %r0, -3\nexit")
	if dir, ok := FindDir(); ok {
		if tests, err := LoadDir(dir); err == nil {
			for _, tc := range tests {
				f.Add(tc.Asm)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		insns, err := Assemble(src)
		if err != nil {
			return
		}
		text := Disassemble(insns)
		again, err := Assemble(text)
		if err != nil {
			t.Fatalf("reassembling %q: %v", text, err)
		}
		if !slices.Equal(again, insns) {
			t.Fatalf("round trip changed the program:\nsource %q\ntext   %q\n%v\n%v", src, text, insns, again)
		}
		if dec, err := isa.Decode(isa.Encode(insns)); err != nil || !slices.Equal(dec, insns) {
			t.Fatalf("encode/decode changed the program")
		}
	})
}

// FuzzParse checks that reading a .data file never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte("-- asm\nmov %r0, 1\nexit\n-- mem\n01 02\n-- result\n0x1\n"))
	f.Add([]byte("-- raw\n0x00000001000000b7\n0x0000000000000095\n-- error\nbad\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tc, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		if len(tc.Insns) == 0 || (!tc.HasResult && tc.Error == "") {
			t.Fatalf("Parse accepted a file without instructions or outcome: %+v", tc)
		}
	})
}
