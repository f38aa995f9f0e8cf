// Package isa holds the eBPF instruction set as RFC 9669 and the v4 additions define it: the raw
// 8-byte instruction, the opcode fields, decoding from bytes and the kernel's textual form.
//
// Every other part of the runtime (verifier, interpreter, JIT) works on []Instruction. The
// encodings agree with cilium/ebpf's asm package, which the assembler and the tests use to
// produce and cross-check bytecode.
package isa
