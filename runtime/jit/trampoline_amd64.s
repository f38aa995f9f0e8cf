// The switch between Go and compiled code (see run_linux_amd64.go and docs/jit.md).
//
// jump saves the Go side's registers in the run block, switches to the run's native stack and
// enters or resumes compiled code. Compiled code comes back in one of two ways: its entry point
// returns (the run is over), or it calls helperStub (through the per-helper thunk that loads
// the helper number into AX) to ask Go to run a helper. Both return to the Go caller of the last
// jump.
//
// No Go code ever runs on the native stack, and compiled code never runs on a goroutine stack.

#include "textflag.h"

// Offsets in runBlock, after the context block (see run_linux_amd64.go).
#define GO_SP 0x248
#define GO_BP 0x250
#define GO_BX 0x258
#define GO_R12 0x260
#define GO_R13 0x268
#define GO_R14 0x270
#define GO_R15 0x278
#define JIT_SP 0x280
#define JIT_BX 0x288
#define JIT_BP 0x290
#define JIT_R12 0x298
#define JIT_R13 0x2a0
#define JIT_R14 0x2a8
#define JIT_R15 0x2b0
#define STACK_TOP 0x2b8
#define HELPER_ID 0x2c0
#define HELPER_ARGS 0x2c8
#define ARGS 0x2f0
#define RESULT 0x318

// SAVE_GO saves the Go side's registers but BP, which each site saves itself (in plain sight of
// vet's frame pointer check).
#define SAVE_GO(b) \
	MOVQ SP, GO_SP(b); \
	MOVQ BX, GO_BX(b); \
	MOVQ R12, GO_R12(b); \
	MOVQ R13, GO_R13(b); \
	MOVQ R14, GO_R14(b); \
	MOVQ R15, GO_R15(b)

// RESTORE_GO restores the Go side's registers from the block in R12, R12 last.
#define RESTORE_GO \
	MOVQ GO_SP(R12), SP; \
	MOVQ GO_BP(R12), BP; \
	MOVQ GO_BX(R12), BX; \
	MOVQ GO_R13(R12), R13; \
	MOVQ GO_R14(R12), R14; \
	MOVQ GO_R15(R12), R15; \
	MOVQ GO_R12(R12), R12

// func jump(b *runBlock, entry uintptr, r0 uint64) uint64
//
// jump enters compiled code at entry (entry != 0) or resumes it after a helper call with r0 in
// AX (entry == 0). Go calls it from a single call site (Func.run), which keeps the processor's
// return-address predictions in step across the switches: helperStub's return to Go and
// jump's return into compiled code are the only mispredicted returns of a helper call (the
// compiled code's final return matches the CALL below, and the return to Go after it matches
// the call of the latest jump, from the same site as the first).
TEXT ·jump(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ b+0(FP), R9
	MOVQ entry+8(FP), R11
	MOVQ r0+16(FP), AX
	MOVQ $0, ret+24(FP) // replaced when compiled code asks for a helper
	MOVQ BP, GO_BP(R9)
	SAVE_GO(R9)
	TESTQ R11, R11
	JZ resume
	MOVQ STACK_TOP(R9), SP
	MOVQ R9, R12
	MOVQ R9, DI
	MOVQ (ARGS+0)(R9), SI
	MOVQ (ARGS+8)(R9), DX
	MOVQ (ARGS+16)(R9), CX
	MOVQ (ARGS+24)(R9), R8
	MOVQ (ARGS+32)(R9), R9
	CALL R11
	// The entry point returned r0 in AX; R12 still holds the block (callee-saved).
	MOVQ AX, RESULT(R12)
	RESTORE_GO
	RET // to the caller of the latest jump, whose result is 0
resume:
	MOVQ JIT_SP(R9), SP
	MOVQ JIT_BX(R9), BX
	MOVQ JIT_BP(R9), BP
	MOVQ JIT_R12(R9), R12
	MOVQ JIT_R13(R9), R13
	MOVQ JIT_R14(R9), R14
	MOVQ JIT_R15(R9), R15
	RET // into compiled code, after its helper call, with r0 in AX

// helperStub is called by compiled code with the helper number in AX, r1-r5 in DI, SI, DX,
// CX, R8 and the block in R9, on the native stack. It saves the compiled code's callee-saved
// registers in the block and returns to Go from the pending jump with status 1.
TEXT ·helperStub(SB), NOSPLIT|NOFRAME, $0-0
	MOVQ AX, HELPER_ID(R9)
	MOVQ DI, (HELPER_ARGS+0)(R9)
	MOVQ SI, (HELPER_ARGS+8)(R9)
	MOVQ DX, (HELPER_ARGS+16)(R9)
	MOVQ CX, (HELPER_ARGS+24)(R9)
	MOVQ R8, (HELPER_ARGS+32)(R9)
	MOVQ SP, JIT_SP(R9)
	MOVQ BX, JIT_BX(R9)
	MOVQ BP, JIT_BP(R9)
	MOVQ R12, JIT_R12(R9)
	MOVQ R13, JIT_R13(R9)
	MOVQ R14, JIT_R14(R9)
	MOVQ R15, JIT_R15(R9)
	MOVQ R9, R12
	RESTORE_GO
	MOVQ $1, 32(SP) // the result slot of the pending jump
	RET

// func helperStubAddr() uintptr
TEXT ·helperStubAddr(SB), NOSPLIT, $0-8
	LEAQ ·helperStub(SB), AX
	MOVQ AX, ret+0(FP)
	RET
