package conformance

import (
	"fmt"
	"strings"

	"github.com/ebpfu/ebpfu/runtime/isa"
)

// Disassemble writes a program in the dialect Assemble reads, one instruction per line, jump
// targets as signed offsets. Assemble(Disassemble(p)) == p for every program Assemble produces;
// fields the dialect cannot express (a non-zero offset on an add, say) are not written, and an
// opcode it does not know is written as `.unknown 0xOP`.
func Disassemble(insns []isa.Instruction) string {
	var b strings.Builder
	for n := 0; n < len(insns); n++ {
		i := insns[n]
		if i.IsLdDW() && n+1 < len(insns) {
			fmt.Fprintf(&b, "lddw %s, %#x\n", regName(i.Dst()), isa.LdDWValue(i, insns[n+1]))
			n++
			continue
		}
		b.WriteString(Instruction(i))
		b.WriteByte('\n')
	}
	return b.String()
}

var aluNames = map[uint8]string{
	isa.ALUAdd: "add", isa.ALUSub: "sub", isa.ALUMul: "mul", isa.ALUDiv: "div", isa.ALUOr: "or",
	isa.ALUAnd: "and", isa.ALULsh: "lsh", isa.ALURsh: "rsh", isa.ALUNeg: "neg", isa.ALUMod: "mod",
	isa.ALUXor: "xor", isa.ALUMov: "mov", isa.ALUArsh: "arsh",
}

var jmpNames = map[uint8]string{
	isa.JmpJEQ: "jeq", isa.JmpJGT: "jgt", isa.JmpJGE: "jge", isa.JmpJSET: "jset", isa.JmpJNE: "jne",
	isa.JmpJSGT: "jsgt", isa.JmpJSGE: "jsge", isa.JmpJLT: "jlt", isa.JmpJLE: "jle",
	isa.JmpJSLT: "jslt", isa.JmpJSLE: "jsle",
}

var sizeNames = map[uint8]string{isa.SizeB: "b", isa.SizeH: "h", isa.SizeW: "w", isa.SizeDW: "dw"}

var atomicNames = map[int32]string{
	isa.AtomicAdd: "add", isa.AtomicOr: "or", isa.AtomicAnd: "and", isa.AtomicXor: "xor",
	isa.AtomicXchg: "xchg", isa.AtomicCmpXchg: "cmpxchg",
}

func regName(r uint8) string { return fmt.Sprintf("%%r%d", r) }

func mem(r uint8, off int16) string {
	if off == 0 {
		return fmt.Sprintf("[%s]", regName(r))
	}
	return fmt.Sprintf("[%s%+d]", regName(r), off)
}

// Instruction writes one instruction (the first slot of an lddw as `lddw` of its low half).
func Instruction(i isa.Instruction) string {
	op := i.Op
	unknown := fmt.Sprintf(".unknown %#02x", op)
	switch isa.Class(op) {
	case isa.ClassALU, isa.ClassALU64:
		suffix := ""
		if isa.Class(op) == isa.ClassALU {
			suffix = "32"
		}
		o := isa.Operation(op)
		if o == isa.ALUEnd {
			switch {
			case isa.Class(op) == isa.ClassALU64 && isa.Source(op) == isa.SrcK:
				return fmt.Sprintf("bswap%d %s", i.Imm, regName(i.Dst()))
			case isa.Class(op) == isa.ClassALU && isa.Source(op) == isa.EndToBE:
				return fmt.Sprintf("be%d %s", i.Imm, regName(i.Dst()))
			case isa.Class(op) == isa.ClassALU:
				return fmt.Sprintf("le%d %s", i.Imm, regName(i.Dst()))
			}
			return unknown
		}
		name, ok := aluNames[o]
		if !ok {
			return unknown
		}
		if o == isa.ALUNeg {
			return fmt.Sprintf("%s%s %s", name, suffix, regName(i.Dst()))
		}
		if (o == isa.ALUDiv || o == isa.ALUMod) && i.Off == 1 {
			name = "s" + name
		}
		if o == isa.ALUMov && isa.Source(op) == isa.SrcX && i.Off != 0 {
			w := "64"
			if suffix != "" {
				w = "32"
			}
			return fmt.Sprintf("movsx%d%s %s, %s", i.Off, w, regName(i.Dst()), regName(i.Src()))
		}
		if isa.Source(op) == isa.SrcX {
			return fmt.Sprintf("%s%s %s, %s", name, suffix, regName(i.Dst()), regName(i.Src()))
		}
		return fmt.Sprintf("%s%s %s, %s", name, suffix, regName(i.Dst()), immString(i.Imm))
	case isa.ClassJMP, isa.ClassJMP32:
		suffix := ""
		if isa.Class(op) == isa.ClassJMP32 {
			suffix = "32"
		}
		switch o := isa.Operation(op); {
		case op == isa.OpJA:
			return fmt.Sprintf("ja %+d", i.Off)
		case op == isa.OpJA32:
			return fmt.Sprintf("ja32 %+d", i.Imm)
		case op == isa.OpExit:
			return "exit"
		case op == isa.OpCallX:
			return fmt.Sprintf("call %s", regName(i.Dst()))
		case op == isa.OpCall:
			switch i.Src() {
			case isa.PseudoCallLocal:
				return fmt.Sprintf("call local %+d", i.Imm)
			case isa.PseudoKfuncCall:
				return fmt.Sprintf("call runtime %d", i.Imm)
			}
			return fmt.Sprintf("call %d", i.Imm)
		default:
			name, ok := jmpNames[o]
			if !ok {
				return unknown
			}
			if isa.Source(op) == isa.SrcX {
				return fmt.Sprintf("%s%s %s, %s, %+d", name, suffix, regName(i.Dst()), regName(i.Src()), i.Off)
			}
			return fmt.Sprintf("%s%s %s, %s, %+d", name, suffix, regName(i.Dst()), immString(i.Imm), i.Off)
		}
	case isa.ClassLDX:
		sz, ok := sizeNames[isa.SizeOf(op)]
		switch {
		case !ok:
			return unknown
		case isa.Mode(op) == isa.ModeMEM:
			return fmt.Sprintf("ldx%s %s, %s", sz, regName(i.Dst()), mem(i.Src(), i.Off))
		case isa.Mode(op) == isa.ModeMEMSX:
			return fmt.Sprintf("ldxs%s %s, %s", sz, regName(i.Dst()), mem(i.Src(), i.Off))
		}
		return unknown
	case isa.ClassST:
		if isa.Mode(op) != isa.ModeMEM {
			return unknown
		}
		return fmt.Sprintf("st%s %s, %s", sizeNames[isa.SizeOf(op)], mem(i.Dst(), i.Off), immString(i.Imm))
	case isa.ClassSTX:
		sz := sizeNames[isa.SizeOf(op)]
		switch isa.Mode(op) {
		case isa.ModeMEM:
			return fmt.Sprintf("stx%s %s, %s", sz, mem(i.Dst(), i.Off), regName(i.Src()))
		case isa.ModeATOMIC:
			name, ok := atomicNames[i.Imm&^isa.AtomicFetch]
			if i.Imm == isa.AtomicXchg || i.Imm == isa.AtomicCmpXchg {
				name, ok = atomicNames[i.Imm], true
			}
			if !ok || (isa.SizeOf(op) != isa.SizeW && isa.SizeOf(op) != isa.SizeDW) {
				return unknown
			}
			fetch := ""
			if i.Imm&isa.AtomicFetch != 0 && i.Imm != isa.AtomicXchg && i.Imm != isa.AtomicCmpXchg {
				fetch = "fetch "
			}
			if isa.SizeOf(op) == isa.SizeW {
				name += "32"
			}
			return fmt.Sprintf("lock %s%s %s, %s", fetch, name, mem(i.Dst(), i.Off), regName(i.Src()))
		}
		return unknown
	case isa.ClassLD:
		sz, ok := sizeNames[isa.SizeOf(op)]
		switch {
		case op == isa.OpLdDW:
			return fmt.Sprintf("lddw %s, %#x", regName(i.Dst()), uint32(i.Imm))
		case !ok || isa.SizeOf(op) == isa.SizeDW:
			return unknown
		case isa.Mode(op) == isa.ModeABS:
			return fmt.Sprintf("ldabs%s %s", sz, immString(i.Imm))
		case isa.Mode(op) == isa.ModeIND:
			return fmt.Sprintf("ldind%s %s, %s", sz, regName(i.Src()), immString(i.Imm))
		}
	}
	return unknown
}

func immString(v int32) string {
	if v < 0 {
		return fmt.Sprintf("%d", v)
	}
	return fmt.Sprintf("%#x", v)
}
