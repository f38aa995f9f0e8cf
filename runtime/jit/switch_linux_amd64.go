package jit

import _ "unsafe" // for go:linkname

// A program with loops may run for long (its budget bounds it, if the embedder set one). While
// it runs, its goroutine cannot be preempted: compiled code has no safe points. To keep the
// garbage collector's stop-the-world phases and the scheduler from waiting on it, such runs
// tell the runtime the goroutine is in a system call, as cgo calls do: the goroutine's P is
// handed off, and the collector scans its Go stack, frozen at the call, without stopping it.
// Loop-free programs are short (the verifier bounds the instructions they execute) and skip
// the two runtime calls this costs. Func.run makes the calls around each switch to compiled
// code.

//go:linkname entersyscall runtime.entersyscall
func entersyscall()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()
