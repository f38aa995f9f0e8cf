package main

import (
	"errors"

	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/program"
)

var _ executor = runJIT

// runJIT runs a program through the JIT (--jit).
func runJIT(p *program.Program, env *helper.Env, args [5]uint64) (uint64, error) {
	return 0, errors.New("jit: not built yet")
}
