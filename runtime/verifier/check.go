package verifier

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// Tuning of the analysis.
const (
	// loopUnroll is how many states a loop head may keep from the iterations of the current path
	// (nested loops' included) before its state is widened; widening makes every loop converge in
	// a few more iterations. Until then loops are followed as precisely as the kernel follows them.
	loopUnroll = 1000
	// loopUnrollLate replaces loopUnroll once widenAfterInsns instructions were processed, so
	// that programs the kernel would find too large still converge quickly.
	loopUnrollLate  = 8
	widenAfterInsns = 300_000
	// maxStatesPerInsn bounds the states kept at one prune point; past it, a new state is joined
	// with a kept one, which bounds path explosion in loop-free code.
	maxStatesPerInsn = 12
	// maxKeptPerInsn bounds the kept states a new state is compared with (the newest).
	maxKeptPerInsn = 64
	// maxStoredPerInsn bounds the states kept at one prune point.
	maxStoredPerInsn = 1024
	// defaultMaxInsns is the kernel's BPF_COMPLEXITY_LIMIT_INSNS.
	defaultMaxInsns = 1_000_000
)

// verifier is the state of one verification.
type verifier struct {
	opts *Options
	log  vlog
	prog *program.Program
	raw  bool // program.Raw: RFC semantics, lenient where the kernel is strict

	lddwHi  []bool // second slots of lddw
	subOf   []int  // subprogram of each instruction
	pruneAt []bool // prune points

	ctx      ctxRules
	states   [][]*stored // kept states by instruction
	nextID   uint32
	maxInsns int

	processed   int
	totalStates int
	peakStates  int
	maxPerInsn  int
	seen        []bool

	trace     bytes.Buffer // the current path's log lines (level 1)
	pending   []job
	maxDepths []int // stack bytes used by each subprogram
	called    map[int32]bool
}

// job is a path waiting to be explored: a state at an instruction, with the log up to there.
type job struct {
	st     *state
	pc     int
	logPos int
}

func newVerifier(insns []isa.Instruction, opts *Options) *verifier {
	v := &verifier{opts: opts, log: vlog{w: opts.Log, level: opts.LogLevel}, raw: opts.Type == program.Raw}
	v.prog = &program.Program{
		Type:    opts.Type,
		Insns:   append([]isa.Instruction(nil), insns...),
		CtxSize: opts.CtxSize,
	}
	v.maxInsns = opts.MaxInsns
	if v.maxInsns == 0 {
		v.maxInsns = defaultMaxInsns
	}
	return v
}

func (v *verifier) run() (*program.Program, error) {
	n := len(v.prog.Insns)
	if n == 0 || n > isa.MaxInsns {
		return nil, refuse(syscall.E2BIG, "program of %d instructions: the limit is 1..%d", n, isa.MaxInsns)
	}
	rules, err := ctxRulesFor(v.opts)
	if err != nil {
		return nil, err
	}
	v.ctx = rules
	if err := v.structure(); err != nil {
		return nil, err
	}
	v.prog.Checks = make([]program.Check, n)
	v.states = make([][]*stored, n)
	v.seen = make([]bool, n)
	v.maxDepths = make([]int, len(v.prog.Funcs))
	v.called = map[int32]bool{}
	if err := v.analyze(); err != nil {
		return nil, err
	}
	if err := v.checkStackDepth(); err != nil {
		return nil, err
	}
	for k := range v.prog.Funcs {
		v.prog.Funcs[k].StackDepth = (v.maxDepths[k] + 7) &^ 7
	}
	v.prog.VerifiedInsns = v.processed
	for id := range v.called {
		v.prog.Helpers = append(v.prog.Helpers, id)
	}
	sort.Slice(v.prog.Helpers, func(i, j int) bool { return v.prog.Helpers[i] < v.prog.Helpers[j] })
	return v.prog, nil
}

// finishLog writes the log as the kernel leaves it: on success only the statistics, on a refusal
// the trace of the refused path, the reason and the statistics.
func (v *verifier) finishLog(err error) {
	if !v.log.enabled() {
		return
	}
	if err != nil {
		v.log.w.Write(v.trace.Bytes())
		var e *Error
		if errors.As(err, &e) {
			for _, l := range e.Before {
				v.log.printf("%s\n", l)
			}
		}
		v.log.printf("%s\n", err)
	}
	v.log.printf("processed %d insns (limit %d) max_states_per_insn %d total_states %d peak_states %d mark_read 0\n",
		v.processed, defaultMaxInsns, v.maxPerInsn, v.totalStates, v.peakStates)
}

// tracef adds a line to the current path's trace.
func (v *verifier) tracef(format string, args ...any) {
	if v.log.enabled() {
		fmt.Fprintf(&v.trace, format, args...)
	}
}

func (v *verifier) newID() uint32 {
	v.nextID++
	return v.nextID
}

// initialState is the state at the program's entry: r1 the context, r10 the frame pointer.
func (v *verifier) initialState() *state {
	f := &frameState{callsite: -1}
	switch {
	case v.raw && v.opts.CtxSize == 0:
		f.regs[isa.R1] = constReg(0)
		f.regs[isa.R2] = constReg(0)
	case v.raw:
		f.regs[isa.R1] = reg{kind: ptrToCtx}
		f.regs[isa.R2] = constReg(uint64(v.opts.CtxSize))
	default:
		f.regs[isa.R1] = reg{kind: ptrToCtx}
	}
	f.regs[isa.R10] = reg{kind: ptrToStack}
	return &state{frames: []*frameState{f}}
}

// analyze explores every path of the program, depth first.
func (v *verifier) analyze() error {
	st := v.initialState()
	v.tracef("0: %s\n", stateString(st))
	v.pending = append(v.pending, job{st: st, pc: 0, logPos: v.trace.Len()})
	for len(v.pending) > 0 {
		j := v.pending[len(v.pending)-1]
		v.pending = v.pending[:len(v.pending)-1]
		v.trace.Truncate(j.logPos)
		if err := v.explore(j.st, j.pc); err != nil {
			return err
		}
	}
	return nil
}

// explore follows one path until it exits or is pruned, pushing the other side of its branches.
func (v *verifier) explore(st *state, pc int) error {
	for {
		v.processed++
		if v.processed > v.maxInsns {
			return refuse(syscall.E2BIG, "BPF program is too large. Processed %d insn", v.processed)
		}
		if v.pruneAt[pc] {
			pruned, err := v.visit(st, pc)
			if err != nil {
				return err
			}
			if pruned {
				v.tracef("%d: safe\n", pc)
				v.pathDone(st)
				return nil
			}
		}
		v.seen[pc] = true
		in := v.prog.Insns[pc]
		v.tracef("%d: %s\n", pc, disasm(v.prog, pc))
		next, err := v.step(st, pc, in)
		if err != nil {
			return err
		}
		if next < 0 {
			v.pathDone(st)
			return nil
		}
		pc = next
	}
}

// branch queues st at pc as a path to explore later.
func (v *verifier) branch(st *state, pc int) {
	if st.parent != nil {
		st.parent.branches++
	}
	v.pending = append(v.pending, job{st: st, pc: pc, logPos: v.trace.Len()})
}

// pathDone ends a path: its kept ancestors lose a live descendant.
func (v *verifier) pathDone(st *state) {
	for s := st.parent; s != nil; s = s.parent {
		s.branches--
		if s.branches > 0 {
			break
		}
	}
}

// step checks one instruction on st and applies it. It returns the next instruction, or -1
// when the path ends.
func (v *verifier) step(st *state, pc int, in isa.Instruction) (int, error) {
	switch isa.Class(in.Op) {
	case isa.ClassALU, isa.ClassALU64:
		return pc + 1, v.checkALU(st, pc, in)
	case isa.ClassLD:
		if in.Op == isa.OpLdDW {
			return pc + 2, v.checkLdImm64(st, pc, in)
		}
		return pc + 1, v.checkLdAbs(st, pc, in)
	case isa.ClassLDX:
		return pc + 1, v.checkLoad(st, pc, in)
	case isa.ClassST, isa.ClassSTX:
		return pc + 1, v.checkStore(st, pc, in)
	}
	switch isa.Operation(in.Op) {
	case isa.JmpJA:
		if in.Regs != 0 || (in.Op == isa.OpJA && in.Imm != 0) || (in.Op == isa.OpJA32 && in.Off != 0) {
			return 0, refuse(syscall.EINVAL, "BPF_JA uses reserved fields")
		}
		return jumpTarget(in, pc), nil
	case isa.JmpCall:
		return v.checkCall(st, pc, in)
	case isa.JmpExit:
		return v.checkExit(st, pc, in)
	}
	return v.checkCond(st, pc, in)
}

// regArg reads register r as a source operand: it must be valid and initialised.
func (v *verifier) regArg(st *state, r uint8) (*reg, error) {
	if r >= isa.NumRegs {
		return nil, refuse(syscall.EINVAL, "R%d is invalid", r)
	}
	x := &st.cur().regs[r]
	if x.kind == notInit {
		return nil, refuse(syscall.EACCES, "R%d !read_ok", r)
	}
	return x, nil
}

// regDst checks that register r may be written.
func (v *verifier) regDst(r uint8) error {
	if r >= isa.NumRegs {
		return refuse(syscall.EINVAL, "R%d is invalid", r)
	}
	if r == isa.R10 {
		return refuse(syscall.EACCES, "frame pointer is read only")
	}
	return nil
}

// stateString prints the registers of the current frame as the kernel's log does.
func stateString(st *state) string {
	var b bytes.Buffer
	f := st.cur()
	for i := range f.regs {
		r := &f.regs[i]
		if r.kind == notInit {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "R%d=%s", i, r.String())
	}
	return b.String()
}
