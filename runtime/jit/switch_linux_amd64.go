package jit

import _ "unsafe" // for go:linkname

// A program with loops may run for long (its budget bounds it, if the embedder set one). While
// it runs, its goroutine cannot be preempted: compiled code has no safe points. To keep the
// garbage collector's stop-the-world phases and the scheduler from waiting on it, such runs
// tell the runtime the goroutine is in a system call, as cgo calls do: the goroutine's P is
// handed off, and the collector scans its Go stack, frozen at the call, without stopping it.
// Loop-free programs are short (the verifier bounds the instructions they execute) and skip
// the two runtime calls this costs.

//go:linkname entersyscall runtime.entersyscall
func entersyscall()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()

// call starts compiled code at entry.
func (f *Func) call(b *runBlock, entry uintptr) uint64 {
	if f.code.Loops {
		return enterAsSyscall(b, entry)
	}
	return enter(b, entry)
}

// resume continues compiled code after a helper call with r0.
func (f *Func) resume(b *runBlock, r0 uint64) uint64 {
	if f.code.Loops {
		return resumeAsSyscall(b, r0)
	}
	return resume(b, r0)
}

//go:nosplit
func enterAsSyscall(b *runBlock, entry uintptr) uint64 {
	entersyscall()
	s := enter(b, entry)
	exitsyscall()
	return s
}

//go:nosplit
func resumeAsSyscall(b *runBlock, r0 uint64) uint64 {
	entersyscall()
	s := resume(b, r0)
	exitsyscall()
	return s
}
