package jit_test

import (
	"fmt"
	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
	"golang.org/x/arch/x86/x86asm"
	"os"
	"testing"
)

func TestDump(t *testing.T) {
	b, err := os.ReadFile(os.Getenv("DUMP"))
	if err != nil {
		t.Skip()
	}
	insns, _ := isa.Decode(b)
	p, err := verifier.Verify(insns, &verifier.Options{Type: program.Raw, CtxSize: 4096, CtxWritable: true})
	if err != nil {
		t.Log(err)
		p = progOf(insns, true)
	}
	c, err := jit.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	pc := 0
	for off := 0; off < len(c.Text); {
		for pc < len(insns) && int(c.Insns[pc]) == off {
			fmt.Printf("; %d: %s  [%d]\n", pc, conformance.Instruction(insns[pc]), p.Checks[pc])
			pc++
		}
		in, err := x86asm.Decode(c.Text[off:], 64)
		if err != nil {
			fmt.Printf("%4x: ?? %v\n", off, err)
			off++
			continue
		}
		fmt.Printf("%4x: %s\n", off, x86asm.IntelSyntax(in, uint64(off), nil))
		off += in.Len
	}
}
