package main

import (
	"errors"

	"github.com/ebpfu/ebpfu/runtime/program"
)

// prepareJIT readies p for the JIT (-exec jit).
func prepareJIT(p *program.Program) (runFunc, error) {
	return nil, errors.New("jit: not built yet")
}
