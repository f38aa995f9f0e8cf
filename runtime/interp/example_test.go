package interp_test

import (
	"fmt"
	"reflect"

	"github.com/ebpfu/ebpfu/runtime/conformance"
	"github.com/ebpfu/ebpfu/runtime/helper"
	"github.com/ebpfu/ebpfu/runtime/interp"
	"github.com/ebpfu/ebpfu/runtime/memory"
	"github.com/ebpfu/ebpfu/runtime/program"
	"github.com/ebpfu/ebpfu/runtime/verifier"
)

// A program summing the bytes of its buffer (r1 = buffer, r2 = length), verified as a
// program.Raw and run by the interpreter.
func Example() {
	insns, err := conformance.Assemble(`
		mov %r0, 0
	loop:
		jeq %r2, 0, done
		ldxb %r3, [%r1]
		add %r0, %r3
		add %r1, 1
		sub %r2, 1
		ja loop
	done:
		exit`)
	if err != nil {
		panic(err)
	}
	// Programs address memory by number: it must be heap memory that stays put.
	buf := reflect.MakeSlice(reflect.TypeOf([]byte(nil)), 4, 4).Bytes()
	copy(buf, []byte{1, 2, 3, 4})

	p, err := verifier.Verify(insns, &verifier.Options{Type: program.Raw, CtxSize: len(buf)})
	if err != nil {
		panic(err)
	}
	env := &helper.Env{Budget: 1000}
	if err := env.Mem.AddBytes(buf, false); err != nil {
		panic(err)
	}
	r0, err := interp.New().Run(p, env, [5]uint64{memory.Addr(buf), uint64(len(buf))})
	fmt.Println(r0, err)
	// Output: 10 <nil>
}
