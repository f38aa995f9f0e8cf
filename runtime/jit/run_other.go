//go:build !(linux && amd64)

package jit

import (
	"errors"

	"github.com/ebpfu/ebpfu/runtime/helper"
)

// Func is compiled code mapped executable in this process. Compiled code runs only on
// linux/amd64; elsewhere Load fails.
type Func struct{ code *Code }

// Load maps c executable in this process.
func Load(c *Code) (*Func, error) {
	return nil, errors.New("jit: compiled code runs only on linux/amd64")
}

// Code returns the code f runs.
func (f *Func) Code() *Code { return f.code }

// Close unmaps the code.
func (f *Func) Close() error { return nil }

// Run runs the program.
func (f *Func) Run(env *helper.Env, args [5]uint64) (uint64, error) {
	return 0, errors.New("jit: compiled code runs only on linux/amd64")
}
