package verifier

import (
	"testing"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Instruction builders for the tests, in raw form so malformed programs can be written too.

func mov(dst uint8, imm int32) isa.Instruction { return isa.Make(isa.OpMov64Imm, dst, 0, 0, imm) }
func movr(dst, src uint8) isa.Instruction      { return isa.Make(isa.OpMov64Reg, dst, src, 0, 0) }
func mov32(dst uint8, imm int32) isa.Instruction {
	return isa.Make(isa.ClassALU|isa.ALUMov|isa.SrcK, dst, 0, 0, imm)
}
func alu(op, dst uint8, imm int32) isa.Instruction {
	return isa.Make(isa.ClassALU64|op|isa.SrcK, dst, 0, 0, imm)
}
func alur(op, dst, src uint8) isa.Instruction {
	return isa.Make(isa.ClassALU64|op|isa.SrcX, dst, src, 0, 0)
}
func alu32(op, dst uint8, imm int32) isa.Instruction {
	return isa.Make(isa.ClassALU|op|isa.SrcK, dst, 0, 0, imm)
}
func ldx(size, dst, src uint8, off int16) isa.Instruction {
	return isa.Make(isa.ClassLDX|isa.ModeMEM|size, dst, src, off, 0)
}
func stx(size, dst, src uint8, off int16) isa.Instruction {
	return isa.Make(isa.ClassSTX|isa.ModeMEM|size, dst, src, off, 0)
}
func st(size, dst uint8, off int16, imm int32) isa.Instruction {
	return isa.Make(isa.ClassST|isa.ModeMEM|size, dst, 0, off, imm)
}
func jmp(op, dst uint8, imm int32, off int16) isa.Instruction {
	return isa.Make(isa.ClassJMP|op|isa.SrcK, dst, 0, off, imm)
}
func jmpr(op, dst, src uint8, off int16) isa.Instruction {
	return isa.Make(isa.ClassJMP|op|isa.SrcX, dst, src, off, 0)
}
func ja(off int16) isa.Instruction  { return isa.Make(isa.OpJA, 0, 0, off, 0) }
func call(id int32) isa.Instruction { return isa.Make(isa.OpCall, 0, 0, 0, id) }
func callLocal(off int32) isa.Instruction {
	return isa.Make(isa.OpCall, 0, isa.PseudoCallLocal, 0, off)
}
func exit() isa.Instruction { return isa.Make(isa.OpExit, 0, 0, 0, 0) }
func lddw(dst, src uint8, v uint64) []isa.Instruction {
	return []isa.Instruction{
		isa.Make(isa.OpLdDW, dst, src, 0, int32(uint32(v))),
		isa.Make(0, 0, 0, 0, int32(uint32(v>>32))),
	}
}

// prog flattens instructions and instruction pairs into one program.
func prog(parts ...any) []isa.Instruction {
	var out []isa.Instruction
	for _, p := range parts {
		switch x := p.(type) {
		case isa.Instruction:
			out = append(out, x)
		case []isa.Instruction:
			out = append(out, x...)
		default:
			panic("prog: bad part")
		}
	}
	return out
}

func mustDecode(t testing.TB, code []byte) []isa.Instruction {
	t.Helper()
	insns, err := isa.Decode(code)
	if err != nil {
		t.Fatal(err)
	}
	return insns
}
