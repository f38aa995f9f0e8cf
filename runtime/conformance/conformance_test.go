package conformance

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

func loadAll(t *testing.T) []*Test {
	t.Helper()
	dir, ok := FindDir()
	if !ok {
		t.Skipf("bpf_conformance test files not found (looked in %q; set %s)", dir, DirEnv)
	}
	tests, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tests
}

func TestParseAllFiles(t *testing.T) {
	tests := loadAll(t)
	if len(tests) != 313 {
		t.Errorf("parsed %d files, want 313", len(tests))
	}
	withMem := 0
	for _, tc := range tests {
		if !tc.HasResult {
			t.Errorf("%s: no result", tc.Name)
		}
		if tc.Mem != nil {
			withMem++
		}
	}
	if withMem != 40 {
		t.Errorf("%d files with memory, want 40", withMem)
	}
}

// TestRawMatchesAsm checks the assembler against the files that carry their bytecode too.
func TestRawMatchesAsm(t *testing.T) {
	n := 0
	for _, tc := range loadAll(t) {
		if tc.Raw == nil {
			continue
		}
		n++
		asmInsns, err := Assemble(tc.Asm)
		if err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		if !reflect.DeepEqual(asmInsns, tc.Raw) {
			t.Errorf("%s: asm assembles to\n%v\nraw is\n%v", tc.Name, asmInsns, tc.Raw)
		}
	}
	if n == 0 {
		t.Error("no file with a raw section")
	}
}

// TestRoundTrip assembles every file, disassembles, reassembles and encodes/decodes.
func TestRoundTrip(t *testing.T) {
	for _, tc := range loadAll(t) {
		text := Disassemble(tc.Insns)
		again, err := Assemble(text)
		if err != nil {
			t.Errorf("%s: reassemble: %v\n%s", tc.Name, err, text)
			continue
		}
		if !reflect.DeepEqual(again, tc.Insns) {
			t.Errorf("%s: disassemble/assemble changed the program:\n%s", tc.Name, text)
		}
		dec, err := isa.Decode(isa.Encode(tc.Insns))
		if err != nil || !reflect.DeepEqual(dec, tc.Insns) {
			t.Errorf("%s: encode/decode changed the program (%v)", tc.Name, err)
		}
	}
}

// TestAgainstCilium cross-checks encodings with cilium/ebpf's asm package.
func TestAgainstCilium(t *testing.T) {
	cases := []struct {
		text string
		want asm.Instruction
	}{
		{"mov %r0, 1", asm.Mov.Imm(asm.R0, 1)},
		{"mov32 %r3, -7", asm.Mov.Imm32(asm.R3, -7)},
		{"add %r1, %r2", asm.Add.Reg(asm.R1, asm.R2)},
		{"xor32 %r4, %r5", asm.Xor.Reg32(asm.R4, asm.R5)},
		{"arsh %r1, 3", asm.ArSh.Imm(asm.R1, 3)},
		{"neg %r1", asm.Neg.Imm(asm.R1, 0)},
		{"ldxw %r0, [%r1+4]", asm.LoadMem(asm.R0, asm.R1, 4, asm.Word)},
		{"ldxdw %r2, [%r10-8]", asm.LoadMem(asm.R2, asm.R10, -8, asm.DWord)},
		{"stxb [%r10-1], %r3", asm.StoreMem(asm.RFP, -1, asm.R3, asm.Byte)},
		{"sth [%r1+2], 5", asm.StoreImm(asm.R1, 2, 5, asm.Half)},
		{"jeq %r1, 7, +3", withOff(asm.JEq.Imm(asm.R1, 7, ""), 3)},
		{"jgt32 %r1, %r2, -2", withOff(asm.JGT.Reg32(asm.R1, asm.R2, ""), -2)},
		{"ja +5", withOff(asm.Ja.Label(""), 5)},
		{"call 5", asm.FnKtimeGetNs.Call()},
		{"exit", asm.Return()},
		{"be16 %r0", asm.HostTo(asm.BE, asm.R0, asm.Half)},
		{"le32 %r0", asm.HostTo(asm.LE, asm.R0, asm.Word)},
		{"lock add [%r1+8], %r2", withOff(asm.StoreXAdd(asm.R1, asm.R2, asm.DWord), 8)},
	}
	for _, c := range cases {
		got, err := Assemble(c.text)
		if err != nil {
			t.Errorf("%s: %v", c.text, err)
			continue
		}
		var b strings.Builder
		if _, err := c.want.Marshal(&b, binary.LittleEndian); err != nil {
			t.Fatalf("%s: cilium marshal: %v", c.text, err)
		}
		if enc := string(isa.Encode(got)); enc != b.String() {
			t.Errorf("%s: encodes to % x, cilium/ebpf to % x", c.text, enc, b.String())
		}
	}
}

func withOff(i asm.Instruction, off int16) asm.Instruction {
	i.Offset = off
	return i
}

func TestAssembleErrors(t *testing.T) {
	bad := []string{
		"mov %r0",                       // operand count
		"mov %r16, 1",                   // register
		"frob %r0, 1",                   // mnemonic
		"jeq %r0, 1, nowhere",           // label
		"mov32 %r0, 0x100000000",        // imm range
		"ldxw %r0, [%r1+70000]",         // offset range
		"lock frob [%r1], %r2",          // atomic op
		"a:\na:\nexit",                  // duplicate label
		"ldxw %r0, %r1",                 // memory operand
		"movsx6464 %r0, %r1",            // width
		"call sideways 3",               // call mode
		"stxq [%r1], %r2",               // size
		"ja",                            // missing target
		"lddw %r0, 0x1ffffffffffffffff", // imm64 range
	}
	for _, s := range bad {
		if _, err := Assemble(s); err == nil {
			t.Errorf("%q assembled without error", s)
		}
	}
}

func TestAssembleForms(t *testing.T) {
	cases := []struct {
		text string
		want []isa.Instruction
	}{
		{"call %r2", []isa.Instruction{isa.Make(isa.OpCallX, 2, 0, 0, 0)}},
		{"callx %r3", []isa.Instruction{isa.Make(isa.OpCallX, 3, 0, 0, 0)}},
		{"call local f\nexit\nf:\nexit", []isa.Instruction{
			isa.Make(isa.OpCall, 0, 1, 0, 1), isa.Make(isa.OpExit, 0, 0, 0, 0), isa.Make(isa.OpExit, 0, 0, 0, 0)}},
		{"ja32 exit\nexit", []isa.Instruction{isa.Make(isa.OpJA32, 0, 0, 0, 0), isa.Make(isa.OpExit, 0, 0, 0, 0)}},
		{"jne32 %r2, 0xffffff80, +1", []isa.Instruction{isa.Make(0x56, 2, 0, 1, -128)}},
		{"sdiv32 %r0, -3", []isa.Instruction{isa.Make(0x34, 0, 0, 1, -3)}},
		{"smod %r0, %r1", []isa.Instruction{isa.Make(0x9f, 0, 1, 1, 0)}},
		{"movsx1632 %r4, %r3", []isa.Instruction{isa.Make(0xbc, 4, 3, 16, 0)}},
		{"movsx3264 %r0, %r9", []isa.Instruction{isa.Make(0xbf, 0, 9, 32, 0)}},
		{"ldxsh %r0, [%r1-2]", []isa.Instruction{isa.Make(0x89, 0, 1, -2, 0)}},
		{"swap16 %r0", []isa.Instruction{isa.Make(0xd7, 0, 0, 0, 16)}},
		{"bswap64 %r1", []isa.Instruction{isa.Make(0xd7, 1, 0, 0, 64)}},
		{"lock fetch xor32 [%r10-4], %r1", []isa.Instruction{isa.Make(0xc3, 10, 1, -4, 0xa1)}},
		{"lock cmpxchg [%r10-8], %r1", []isa.Instruction{isa.Make(0xdb, 10, 1, -8, 0xf1)}},
		{"lock xchg32 [%r1], %r2", []isa.Instruction{isa.Make(0xc3, 1, 2, 0, 0xe1)}},
		{"ldabsh 12", []isa.Instruction{isa.Make(0x28, 0, 0, 0, 12)}},
		{"ldindb %r3, -1", []isa.Instruction{isa.Make(0x50, 0, 3, 0, -1)}},
		{"lddw %r1, -2", []isa.Instruction{isa.Make(0x18, 1, 0, 0, -2), isa.Make(0, 0, 0, 0, -1)}},
		{"stdw [%r10 - 8], 0x7fffffff", []isa.Instruction{isa.Make(0x7a, 10, 0, -8, 0x7fffffff)}},
		{"l: mov %r0, 0 # comment\nja l", []isa.Instruction{isa.Make(0xb7, 0, 0, 0, 0), isa.Make(0x05, 0, 0, -2, 0)}},
	}
	for _, c := range cases {
		got, err := Assemble(c.text)
		if err != nil {
			t.Errorf("%q: %v", c.text, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %v, want %v", c.text, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	src := "# c\n-- asm\nmov %r0, 1 # one\nexit\n-- mem\n01 02\n0a\n-- result\n0x1\n-- c\nint x;\n"
	tc, err := Parse("t", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if tc.Result != 1 || !tc.HasResult || !reflect.DeepEqual(tc.Mem, []byte{1, 2, 10}) || len(tc.Insns) != 2 {
		t.Errorf("parsed %+v", tc)
	}
	if _, err := Parse("t", []byte("-- asm\nexit\n")); err == nil {
		t.Error("a file without result or error parsed")
	}
	if _, err := Parse("t", []byte("-- asm\nexit\n-- frob\n-- result\n1\n")); err == nil {
		t.Error("a file with an unknown directive parsed")
	}
	e, err := Parse("t", []byte("-- asm\nexit\n-- error\nbad things\n"))
	if err != nil || e.Error != "bad things" {
		t.Errorf("error section: %v %+v", err, e)
	}
}

func TestHex(t *testing.T) {
	for _, s := range []string{"b7  00  ff  ", "b700ff", "b7 00 ff\n", "0xb7 0x00 0xFF"} {
		b, err := ParseHex(s)
		if err != nil || !reflect.DeepEqual(b, []byte{0xb7, 0, 0xff}) {
			t.Errorf("ParseHex(%q) = %x, %v", s, b, err)
		}
	}
	for _, s := range []string{"b", "zz", "b7 0"} {
		if _, err := ParseHex(s); err == nil {
			t.Errorf("ParseHex(%q) succeeded", s)
		}
	}
	if got := FormatHex([]byte{0xb7, 0x0a}); got != "b7  0a  " {
		t.Errorf("FormatHex = %q", got)
	}
}
