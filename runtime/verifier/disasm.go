package verifier

import (
	"fmt"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

var jmpNames = map[uint8]string{
	isa.JmpJEQ: "==", isa.JmpJGT: ">", isa.JmpJGE: ">=", isa.JmpJSET: "&", isa.JmpJNE: "!=",
	isa.JmpJSGT: "s>", isa.JmpJSGE: "s>=", isa.JmpJLT: "<", isa.JmpJLE: "<=", isa.JmpJSLT: "s<",
	isa.JmpJSLE: "s<=",
}

var sizeNames = map[uint8]string{isa.SizeB: "u8", isa.SizeH: "u16", isa.SizeW: "u32", isa.SizeDW: "u64"}

// disasm prints instruction pc in the kernel's verifier log syntax: "(bf) r1 = r10".
func disasm(p *program.Program, pc int) string {
	in := p.Insns[pc]
	return fmt.Sprintf("(%02x) %s", in.Op, insnText(p, pc, in))
}

func insnText(p *program.Program, pc int, in isa.Instruction) string {
	class := isa.Class(in.Op)
	dst, src := in.Dst(), in.Src()
	switch class {
	case isa.ClassALU, isa.ClassALU64:
		r := "w"
		if class == isa.ClassALU64 {
			r = "r"
		}
		op := isa.Operation(in.Op)
		operand := fmt.Sprintf("%d", in.Imm)
		if isa.Source(in.Op) == isa.SrcX {
			operand = fmt.Sprintf("%s%d", r, src)
		}
		switch op {
		case isa.ALUNeg:
			return fmt.Sprintf("%s%d = -%s%d", r, dst, r, dst)
		case isa.ALUEnd:
			kind := "le"
			if class == isa.ClassALU64 {
				kind = "bswap"
			} else if isa.Source(in.Op) == isa.EndToBE {
				kind = "be"
			}
			return fmt.Sprintf("r%d = %s%d r%d", dst, kind, in.Imm, dst)
		case isa.ALUMov:
			if in.Off != 0 && isa.Source(in.Op) == isa.SrcX {
				return fmt.Sprintf("%s%d = (s%d)%s%d", r, dst, in.Off, r, src)
			}
		case isa.ALUDiv, isa.ALUMod:
			if in.Off == 1 {
				return fmt.Sprintf("%s%d s%s %s", r, dst, aluNames[op], operand)
			}
		}
		return fmt.Sprintf("%s%d %s %s", r, dst, aluNames[op], operand)
	case isa.ClassLDX:
		kind := "u"
		if isa.Mode(in.Op) == isa.ModeMEMSX {
			kind = "s"
		}
		return fmt.Sprintf("r%d = *(%s%s *)(r%d %+d)", dst, kind, sizeNames[isa.SizeOf(in.Op)][1:], src, in.Off)
	case isa.ClassST:
		return fmt.Sprintf("*(%s *)(r%d %+d) = %d", sizeNames[isa.SizeOf(in.Op)], dst, in.Off, in.Imm)
	case isa.ClassSTX:
		sz := sizeNames[isa.SizeOf(in.Op)]
		if isa.Mode(in.Op) != isa.ModeATOMIC {
			return fmt.Sprintf("*(%s *)(r%d %+d) = r%d", sz, dst, in.Off, src)
		}
		return atomicText(in, sz)
	case isa.ClassLD:
		if in.Op == isa.OpLdDW {
			hi := p.Insns[pc+1]
			switch src {
			case isa.PseudoMapFD:
				return fmt.Sprintf("r%d = map[id:%d]", dst, mapID(p, in.Imm))
			case isa.PseudoMapValue:
				return fmt.Sprintf("r%d = map[id:%d][0]+%d", dst, mapID(p, in.Imm), uint32(hi.Imm))
			}
			return fmt.Sprintf("r%d = %#x", dst, isa.LdDWValue(in, hi))
		}
		sz := sizeNames[isa.SizeOf(in.Op)]
		if isa.Mode(in.Op) == isa.ModeIND {
			return fmt.Sprintf("r0 = *(%s *)skb[r%d + %d]", sz, src, in.Imm)
		}
		return fmt.Sprintf("r0 = *(%s *)skb[%d]", sz, in.Imm)
	}
	// Jumps.
	op := isa.Operation(in.Op)
	switch op {
	case isa.JmpJA:
		if class == isa.ClassJMP32 {
			return fmt.Sprintf("gotol pc%+d", in.Imm)
		}
		return fmt.Sprintf("goto pc%+d", in.Off)
	case isa.JmpExit:
		return "exit"
	case isa.JmpCall:
		switch {
		case in.Op == isa.OpCallX:
			return fmt.Sprintf("callx r%d", dst)
		case src == isa.PseudoCallLocal:
			return fmt.Sprintf("call pc%+d", in.Imm)
		}
		name := helper.Name(helper.ID(in.Imm))
		if name == "" {
			name = "unknown"
		}
		return fmt.Sprintf("call %s#%d", name, in.Imm)
	}
	r := "r"
	if class == isa.ClassJMP32 {
		r = "w"
	}
	if isa.Source(in.Op) == isa.SrcX {
		return fmt.Sprintf("if %s%d %s %s%d goto pc%+d", r, dst, jmpNames[op], r, src, in.Off)
	}
	return fmt.Sprintf("if %s%d %s %#x goto pc%+d", r, dst, jmpNames[op], uint32(in.Imm), in.Off)
}

func atomicText(in isa.Instruction, sz string) string {
	dst, src := in.Dst(), in.Src()
	w, suffix := "r", "64"
	if sz == "u32" {
		w, suffix = "w", ""
	}
	addr := fmt.Sprintf("(%s *)(r%d %+d)", sz, dst, in.Off)
	names := map[int32]string{isa.AtomicAdd: "+=", isa.AtomicOr: "|=", isa.AtomicAnd: "&=", isa.AtomicXor: "^="}
	fetch := map[int32]string{isa.AtomicAdd: "add", isa.AtomicOr: "or", isa.AtomicAnd: "and", isa.AtomicXor: "xor"}
	switch {
	case in.Imm == isa.AtomicXchg:
		return fmt.Sprintf("%s%d = atomic%s_xchg(%s, %s%d)", w, src, suffix, addr, w, src)
	case in.Imm == isa.AtomicCmpXchg:
		return fmt.Sprintf("r0 = atomic%s_cmpxchg(%s, r0, %s%d)", suffix, addr, w, src)
	case in.Imm&isa.AtomicFetch != 0:
		return fmt.Sprintf("%s%d = atomic%s_fetch_%s(%s, %s%d)", w, src, suffix, fetch[in.Imm&^isa.AtomicFetch], addr, w, src)
	}
	return fmt.Sprintf("lock *%s %s %s%d", addr[0:len(addr)], names[in.Imm], w, src)
}

func mapID(p *program.Program, idx int32) uint32 {
	if idx >= 0 && int(idx) < len(p.Maps) {
		return p.Maps[idx].ID
	}
	return 0
}
