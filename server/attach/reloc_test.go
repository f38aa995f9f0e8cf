package attach

import (
	"bytes"
	"strings"
	"testing"
)

// TestRelocateShortFunction checks that a function shorter than the jump is probed over the
// filler after it when it never falls through, and refused otherwise.
func TestRelocateShortFunction(t *testing.T) {
	leaRet := []byte{0x8d, 0x04, 0x3f, 0xc3} // lea eax, [rdi+rdi]; ret
	cases := []struct {
		name    string
		code    []byte
		padding []byte
		ok      bool
	}{
		{"int3 filler", leaRet, []byte{0xcc, 0xcc, 0xcc, 0xcc, 0xcc}, true},
		{"nop filler", leaRet, []byte{0x66, 0x90, 0x90, 0x90, 0x90}, true},
		{"long nop filler", leaRet, []byte{0x0f, 0x1f, 0x40, 0x00, 0xcc}, true},
		// glibc's pthread_spin_destroy (xor eax, eax; ret) is followed by a 10-byte nop
		{"nop longer than the jump needs", leaRet, []byte{0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0, 0x0f, 0x1f, 0x00}, true},
		{"nop cut by the next function", leaRet, []byte{0x66, 0x2e, 0x0f, 0x1f, 0x84}, false},
		{"no padding", leaRet, nil, false},
		{"code after the end", leaRet, []byte{0x55, 0x48, 0x89, 0xe5, 0xcc}, false},
		{"falls through", []byte{0x8d, 0x04, 0x3f, 0x90}, []byte{0xcc, 0xcc, 0xcc, 0xcc, 0xcc}, false},
	}
	for _, c := range cases {
		d, err := Relocate(c.code, c.padding)
		if !c.ok {
			if err == nil || !strings.Contains(err.Error(), "too short") {
				t.Errorf("%s: got %v, want a refusal", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if len(d.Orig) != JumpSize || !bytes.Equal(d.Orig[:4], leaRet) {
			t.Errorf("%s: displaced %x", c.name, d.Orig)
		}
		if !bytes.Equal(d.Copy, leaRet) || len(d.Bounds) != 2 {
			t.Errorf("%s: copy %x, bounds %v", c.name, d.Copy, d.Bounds)
		}
	}
}
