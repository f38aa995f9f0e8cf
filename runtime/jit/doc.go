// Package jit compiles verified eBPF programs to x86-64 machine code and runs it.
//
// Compile turns a program.Program into a Code: position- and process-independent bytes with
// one entry point that follows the System V ABI,
//
//	uint64_t entry(struct ebpfu_ctx *blk, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
//
// where everything process- or run-specific comes from the context block blk (Block): the
// helper function table, the map handles and map value bases that lddw yields, the 8 x 512-byte
// eBPF stack, the memory regions for run-time bounds checks and the instruction budget. The same
// bytes run in any process that maps them, at any address: in traced processes, called by the C
// agent, and in Go through Load and Func.Run. docs/jit.md describes the block, the register
// assignment and the run-time checks.
//
// The code keeps eBPF registers in machine registers (r0 rax, r1 rdi, r2 rsi, r3 rdx, r4 rcx,
// r5 r8, r6 rbx, r7 r13, r8 r14, r9 r15, r10 rbp; the block in r12, the budget in r9) and
// compiles in a few passes that settle short and near branches. What the verifier could not
// prove is checked at run time as the interpreter checks it: a failed bounds check, an exhausted
// budget or a call too deep stops the program with a fault code in the block, never a signal.
package jit
