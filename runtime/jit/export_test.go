package jit

import "github.com/ebpfu/ebpfu/runtime/program"

// CompileWithoutBMI2 compiles as for a processor without BMI2 (shifts by a register through cl).
func CompileWithoutBMI2(p *program.Program) (*Code, error) { return compile(p, options{noBMI2: true}) }
