package isa

import (
	"bytes"
	"testing"
)

// FuzzDecode checks that decoding never panics, fails exactly on lengths that are not a
// multiple of 8, and that encoding gives back the bytes decoded.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x18, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x7f, 0, 0, 0})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		insns, err := Decode(b)
		if (err != nil) != (len(b)%InstructionSize != 0) {
			t.Fatalf("Decode of %d bytes: err = %v", len(b), err)
		}
		if err != nil {
			return
		}
		if len(insns) != len(b)/InstructionSize {
			t.Fatalf("%d instructions from %d bytes", len(insns), len(b))
		}
		if enc := Encode(insns); !bytes.Equal(enc, b) {
			t.Fatalf("Encode(Decode(b)) = %x, want %x", enc, b)
		}
		for _, i := range insns {
			if i.Dst() > 15 || i.Src() > 15 || i.SetRegs(i.Dst(), i.Src()) != i {
				t.Fatalf("register fields of %+v do not round-trip", i)
			}
		}
	})
}
