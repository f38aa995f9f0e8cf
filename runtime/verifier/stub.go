package verifier

import (
	"syscall"

	"github.com/ebpfu/ebpfu/runtime/isa"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// verifier is the state of one verification.
type verifier struct {
	insns []isa.Instruction
	opts  *Options
	log   vlog
	prog  *program.Program
}

func newVerifier(insns []isa.Instruction, opts *Options) *verifier {
	return &verifier{insns: insns, opts: opts, log: vlog{w: opts.Log, level: opts.LogLevel}}
}

// run is a placeholder until the analysis lands: it builds the program with every memory access
// checked at run time and a single function.
func (v *verifier) run() (*program.Program, error) {
	n := len(v.insns)
	if n == 0 || n > isa.MaxInsns {
		return nil, refuse(syscall.E2BIG, "program has %d instructions", n)
	}
	p := &program.Program{
		Type:    v.opts.Type,
		Insns:   append([]isa.Instruction(nil), v.insns...),
		Checks:  make([]program.Check, n),
		CtxSize: v.opts.CtxSize,
		Loops:   true,
	}
	for i := range p.Checks {
		p.Checks[i] = program.CheckBounds
	}
	p.Funcs = []program.Func{{Start: 0, End: n, StackDepth: isa.StackSize}}
	return p, nil
}

func (v *verifier) finishLog(err error) {
	if err != nil {
		v.log.printf("%s\n", err)
	}
}
