package main

import (
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/program"
)

// prepareJIT readies p for the JIT (-exec jit): compiled and mapped once, for the whole run.
func prepareJIT(p *program.Program) (runFunc, error) {
	c, err := jit.Compile(p)
	if err != nil {
		return nil, err
	}
	f, err := jit.Load(c)
	if err != nil {
		return nil, err
	}
	return f.Run, nil
}
