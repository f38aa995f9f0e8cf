package verifier

import (
	"sort"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// Map types the structural pass needs to tell apart (enum bpf_map_type).
const (
	mapTypeHash           = 1
	mapTypeArray          = 2
	mapTypeProgArray      = 3
	mapTypePerfEventArray = 4
	mapTypePercpuHash     = 5
	mapTypePercpuArray    = 6
	mapTypeStackTrace     = 7
	mapTypeCgroupArray    = 8
	mapTypeLRUHash        = 9
	mapTypeLRUPercpuHash  = 10
	mapTypeRingbuf        = 27
)

// Map flags the verifier reads.
const (
	mapFlagRdonlyProg = 1 << 7
	mapFlagWronlyProg = 1 << 8
)

// validOpcode reports whether op is an instruction of the ISA. callx is accepted for
// program.Raw only: the kernel does not know it.
func validOpcode(op uint8, raw bool) bool {
	class := isa.Class(op)
	switch class {
	case isa.ClassALU, isa.ClassALU64:
		switch isa.Operation(op) {
		case isa.ALUAdd, isa.ALUSub, isa.ALUMul, isa.ALUDiv, isa.ALUOr, isa.ALUAnd, isa.ALULsh,
			isa.ALURsh, isa.ALUMod, isa.ALUXor, isa.ALUMov, isa.ALUArsh:
			return true
		case isa.ALUNeg:
			return isa.Source(op) == isa.SrcK
		case isa.ALUEnd:
			return class == isa.ClassALU || isa.Source(op) == isa.SrcK
		}
		return false
	case isa.ClassJMP, isa.ClassJMP32:
		switch isa.Operation(op) {
		case isa.JmpJA:
			return isa.Source(op) == isa.SrcK
		case isa.JmpCall:
			if class == isa.ClassJMP32 {
				return false
			}
			return isa.Source(op) == isa.SrcK || raw
		case isa.JmpExit:
			return class == isa.ClassJMP && isa.Source(op) == isa.SrcK
		case 0xe0, 0xf0:
			return false
		}
		return true
	case isa.ClassLD:
		switch op {
		case isa.OpLdDW:
			return true
		}
		mode, size := isa.Mode(op), isa.SizeOf(op)
		return (mode == isa.ModeABS || mode == isa.ModeIND) && size != isa.SizeDW
	case isa.ClassLDX:
		mode := isa.Mode(op)
		return mode == isa.ModeMEM || (mode == isa.ModeMEMSX && isa.SizeOf(op) != isa.SizeDW)
	case isa.ClassST:
		return isa.Mode(op) == isa.ModeMEM
	case isa.ClassSTX:
		mode := isa.Mode(op)
		if mode == isa.ModeATOMIC {
			return true
		}
		return mode == isa.ModeMEM
	}
	return false
}

// isJump reports whether insn transfers control by offset (ja and conditional jumps).
func isJump(in isa.Instruction) bool {
	class := isa.Class(in.Op)
	if class != isa.ClassJMP && class != isa.ClassJMP32 {
		return false
	}
	op := isa.Operation(in.Op)
	return op != isa.JmpCall && op != isa.JmpExit
}

// jumpTarget returns the index a jump at pc goes to when taken.
func jumpTarget(in isa.Instruction, pc int) int {
	if in.Op == isa.OpJA32 {
		return pc + int(in.Imm) + 1
	}
	return pc + int(in.Off) + 1
}

func isLocalCall(in isa.Instruction) bool {
	return in.Op == isa.OpCall && in.Src() == isa.PseudoCallLocal
}

// structure runs the structural pass: instruction forms, map references, subprograms, jump
// targets and reachability, as the kernel's resolve_pseudo_ldimm64, check_subprogs and check_cfg.
func (v *verifier) structure() error {
	insns := v.prog.Insns
	n := len(insns)
	v.lddwHi = make([]bool, n)
	if err := v.findSubprogs(); err != nil {
		return err
	}
	mapIndex := map[[2]int32]int32{}
	for i := 0; i < n; i++ {
		in := insns[i]
		if isa.Class(in.Op) == isa.ClassLDX && validOpcode(in.Op, v.raw) && in.Imm != 0 {
			return refuse(syscall.EINVAL, "BPF_LDX uses reserved fields")
		}
		if in.Op == isa.OpLdDW {
			if i == n-1 || insns[i+1].Op != 0 || insns[i+1].Regs != 0 || insns[i+1].Off != 0 || in.Off != 0 {
				return refuse(syscall.EINVAL, "invalid bpf_ld_imm64 insn")
			}
			v.lddwHi[i+1] = true
			if err := v.resolveLdImm64(i, mapIndex); err != nil {
				return err
			}
			i++
			continue
		}
		if !validOpcode(in.Op, v.raw) {
			return refuse(syscall.EINVAL, "unknown opcode %02x", in.Op)
		}
	}
	return v.checkCFG()
}

// resolveLdImm64 resolves the map or function an lddw at i names and rewrites map references
// to indexes into the program's maps.
func (v *verifier) resolveLdImm64(i int, mapIndex map[[2]int32]int32) error {
	in := &v.prog.Insns[i]
	src := in.Src()
	switch src {
	case 0, isa.PseudoFunc:
		return nil
	case isa.PseudoMapFD, isa.PseudoMapValue, isa.PseudoMapIdx, isa.PseudoMapIdxValue:
	case isa.PseudoBTFID:
		return refuse(syscall.EINVAL, "ldimm64 insn specifies invalid btf_id %d (no kernel variables here)", in.Imm)
	default:
		return refuse(syscall.EINVAL, "unrecognized bpf_ld_imm64 insn")
	}
	if v.opts.Maps == nil {
		return refuse(syscall.EBADF, "fd %d is not pointing to valid bpf_map", in.Imm)
	}
	byIdx := src == isa.PseudoMapIdx || src == isa.PseudoMapIdxValue
	key := [2]int32{0, in.Imm}
	if byIdx {
		key[0] = 1
	}
	idx, seen := mapIndex[key]
	if !seen {
		info, err := v.opts.Maps(src, in.Imm)
		if err != nil {
			if e, ok := err.(*Error); ok {
				return e
			}
			return refuse(syscall.EBADF, "fd %d is not pointing to valid bpf_map", in.Imm)
		}
		idx = int32(len(v.prog.Maps))
		v.prog.Maps = append(v.prog.Maps, info)
		mapIndex[key] = idx
	}
	info := &v.prog.Maps[idx]
	if src == isa.PseudoMapValue || src == isa.PseudoMapIdxValue {
		off := uint32(v.prog.Insns[i+1].Imm)
		if !directValueMap(info) {
			return refuse(syscall.EINVAL, "no direct value access support for this map type")
		}
		if off >= info.ValueSize {
			return refuse(syscall.EINVAL, "invalid access to map value pointer, value_size=%d off=%d", info.ValueSize, off)
		}
		*in = in.SetRegs(in.Dst(), isa.PseudoMapValue)
	} else {
		*in = in.SetRegs(in.Dst(), isa.PseudoMapFD)
	}
	in.Imm = idx
	return nil
}

// directValueMap reports whether lddw may take the address of the map's value (global data).
func directValueMap(m *program.MapInfo) bool {
	return m.Type == mapTypeArray && m.MaxEntries == 1
}

// findSubprogs splits the program into functions at the targets of local calls and of lddw
// src=4, as the kernel's add_subprog, and checks that jumps stay inside their function.
func (v *verifier) findSubprogs() error {
	insns := v.prog.Insns
	n := len(insns)
	starts := map[int]bool{0: true}
	for i, in := range insns {
		target := -1
		switch {
		case isLocalCall(in):
			target = i + int(in.Imm) + 1
		case in.Op == isa.OpLdDW && in.Src() == isa.PseudoFunc && (i == 0 || insns[i-1].Op != isa.OpLdDW):
			target = i + int(in.Imm) + 1
		case in.Op == isa.OpCall && in.Src() == isa.PseudoKfuncCall:
			return refuse(syscall.EINVAL, "calling kernel functions is not supported")
		default:
			continue
		}
		if target < 0 || target >= n {
			return refuse(syscall.EINVAL, "call to invalid destination")
		}
		starts[target] = true
	}
	sorted := make([]int, 0, len(starts))
	for s := range starts {
		sorted = append(sorted, s)
	}
	sort.Ints(sorted)
	v.subOf = make([]int, n)
	for k, s := range sorted {
		end := n
		if k+1 < len(sorted) {
			end = sorted[k+1]
		}
		v.prog.Funcs = append(v.prog.Funcs, program.Func{Start: s, End: end})
		for i := s; i < end; i++ {
			v.subOf[i] = k
		}
	}
	for k, f := range v.prog.Funcs {
		for i := f.Start; i < f.End; i++ {
			in := insns[i]
			if !isJump(in) {
				continue
			}
			t := jumpTarget(in, i)
			if t < f.Start || t >= f.End {
				return refuse(syscall.EINVAL, "jump out of range from insn %d to %d", i, t)
			}
		}
		last := insns[f.End-1]
		if last.Op != isa.OpExit && last.Op != isa.OpJA && last.Op != isa.OpJA32 {
			return refuse(syscall.EINVAL, "last insn is not an exit or jmp")
		}
		_ = k
	}
	return nil
}

// checkCFG walks the control flow from the entry, as the kernel's check_cfg: every target must
// be an instruction start, every instruction reachable. Back-edges are allowed (bounded loops),
// and noted so executors count them.
func (v *verifier) checkCFG() error {
	insns := v.prog.Insns
	n := len(insns)
	const (
		unseen = iota
		onStack
		done
	)
	color := make([]uint8, n)
	v.pruneAt = make([]bool, n)
	type frame struct{ pc, next int }
	var stack []frame
	push := func(from, to int) error {
		if to < 0 || to >= n {
			return refuse(syscall.EINVAL, "jump out of range from insn %d to %d", from, to)
		}
		if v.lddwHi[to] {
			return refuse(syscall.EINVAL, "jump into the middle of ldimm64 insn %d", to-1)
		}
		switch color[to] {
		case unseen:
			color[to] = onStack
			stack = append(stack, frame{pc: to})
		case onStack:
			v.prog.Loops = true
			v.pruneAt[to] = true
		}
		return nil
	}
	color[0] = onStack
	stack = append(stack, frame{pc: 0})
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		pc := top.pc
		in := insns[pc]
		succ := v.successors(pc, in)
		if top.next < len(succ) {
			s := succ[top.next]
			top.next++
			if err := push(pc, s); err != nil {
				return err
			}
			continue
		}
		color[pc] = done
		stack = stack[:len(stack)-1]
	}
	for i := 0; i < n; i++ {
		if color[i] == unseen && !v.lddwHi[i] {
			if v.raw {
				continue
			}
			return refuse(syscall.EINVAL, "unreachable insn %d", i)
		}
	}
	return nil
}

// successors lists the instructions control may reach from pc, calls' targets included, and
// marks prune points (jump targets, instructions after conditional jumps and calls).
func (v *verifier) successors(pc int, in isa.Instruction) []int {
	next := pc + 1
	if in.Op == isa.OpLdDW {
		next = pc + 2
		if in.Src() == isa.PseudoFunc {
			t := pc + int(in.Imm) + 1
			v.pruneAt[t] = true
			return []int{next, t}
		}
		return []int{next}
	}
	class := isa.Class(in.Op)
	if class != isa.ClassJMP && class != isa.ClassJMP32 {
		return []int{next}
	}
	switch isa.Operation(in.Op) {
	case isa.JmpExit:
		return nil
	case isa.JmpCall:
		if isLocalCall(in) {
			t := pc + int(in.Imm) + 1
			v.pruneAt[t] = true
			if next < len(v.pruneAt) {
				v.pruneAt[next] = true
			}
			return []int{next, t}
		}
		return []int{next}
	case isa.JmpJA:
		t := jumpTarget(in, pc)
		if t >= 0 && t < len(v.pruneAt) {
			v.pruneAt[t] = true
		}
		return []int{t}
	}
	t := jumpTarget(in, pc)
	if t >= 0 && t < len(v.pruneAt) {
		v.pruneAt[t] = true
	}
	if next < len(v.pruneAt) {
		v.pruneAt[next] = true
	}
	return []int{next, t}
}
