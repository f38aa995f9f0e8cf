package main

import (
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/jit"
	"github.com/ebpfu/ebpfu/runtime/program"
)

var _ executor = runJIT

// runJIT runs a program through the JIT (--jit): compile, map executable, run, unmap.
func runJIT(p *program.Program, env *helper.Env, args [5]uint64) (uint64, error) {
	c, err := jit.Compile(p)
	if err != nil {
		return 0, err
	}
	f, err := jit.Load(c)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Run(env, args)
}
