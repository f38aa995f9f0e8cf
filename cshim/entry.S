/* The agent's two trampolines in assembly (docs/probes.md).
 *
 * ebpfu_entry_common is called by a site's stub (patch.c) with the probed code's stack 128 bytes
 * lower (its red zone is left alone) and the stub's return address on top; the site's address is
 * 19 bytes before that return address. It saves the registers and flags as the kernel's struct
 * pt_regs, calls ebpfu_fire(site, regs) on a 16-byte aligned stack, restores everything and
 * returns into the stub, which runs the displaced instructions.
 *
 * ebpfu_ret_tramp is where a function with return probes returns: it builds pt_regs the same
 * way (rax is the return value), asks ebpfu_ret_fire for the original return address and goes
 * there with every register as the function left it.
 */
	.text

	.macro SAVE_REGS
	pushq $0x2b		/* ss */
	pushq $0		/* sp */
	pushfq			/* flags */
	pushq $0x33		/* cs */
	pushq $0		/* ip */
	pushq $-1		/* orig_ax */
	pushq %rdi
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %rax
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	.endm

	/* RESTORE_FLAGS puts back the saved flags the agent's code may have changed (DF, OF and
	 * the arithmetic flags) without popfq, which cost ~6 ns of a ~28 ns hit here; the agent never
	 * changes the others (TF, AC, ...). rsp points to the pt_regs; rax is clobbered. */
	.macro RESTORE_FLAGS
	testb $4, 145(%rsp)	/* DF, flags bit 10 */
	jz 1f
	std
1:
	movb 145(%rsp), %al	/* OF, flags bit 11 */
	shrb $3, %al
	andb $1, %al
	addb $0x7f, %al		/* OF = (al == 1) */
	movb 144(%rsp), %ah
	sahf			/* SF ZF AF PF CF from the low byte */
	.endm

	.macro RESTORE_REGS
	RESTORE_FLAGS
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rax
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	leaq 48(%rsp), %rsp	/* orig_ax, ip, cs, flags, sp, ss */
	.endm

	.globl ebpfu_entry_common
	.hidden ebpfu_entry_common
	.type ebpfu_entry_common, @function
	.p2align 4
ebpfu_entry_common:
	SAVE_REGS
	leaq 168+8+128(%rsp), %rax	/* the probed code's rsp */
	movq %rax, 152(%rsp)
	movq 168(%rsp), %rdi		/* the stub's return address */
	movq -19(%rdi), %rdi		/* the site */
	movq %rsp, %rsi
	movq %rsp, %rbx
	andq $-16, %rsp
	call ebpfu_fire
	movq %rbx, %rsp
	RESTORE_REGS
	ret
	.size ebpfu_entry_common, .-ebpfu_entry_common

	.globl ebpfu_ret_tramp
	.hidden ebpfu_ret_tramp
	.type ebpfu_ret_tramp, @function
	.p2align 4
ebpfu_ret_tramp:
	leaq -128(%rsp), %rsp
	pushq $0			/* becomes the original return address */
	SAVE_REGS
	leaq 168+8+128(%rsp), %rax	/* rsp after the function's ret */
	movq %rax, 152(%rsp)
	movq %rsp, %rdi
	movq %rsp, %rbx
	andq $-16, %rsp
	call ebpfu_ret_fire
	movq %rbx, %rsp
	movq %rax, 168(%rsp)
	RESTORE_REGS
	ret $128
	.size ebpfu_ret_tramp, .-ebpfu_ret_tramp

	/* uint32_t ebpfu_rseq_take(struct rseq *rs, uint8_t *leases, uint32_t ncpu, uint32_t tid)
	 * takes the lease word of the CPU the thread runs on (leases + 64 * cpu) in a restartable
	 * sequence (rseq(2)): the kernel restarts it at .Ltake_abort when the thread is preempted,
	 * migrated or signalled inside it, so no other thread of that CPU takes the word meanwhile;
	 * and threads take only the word of their own CPU, so no thread elsewhere writes a free word.
	 * No locked instruction is needed. Returns the CPU taken; 0x80000000 | cpu when its word is
	 * held; ~0 when the thread's cpu_id is not below ncpu (rseq not registered). */
	.globl ebpfu_rseq_take
	.hidden ebpfu_rseq_take
	.type ebpfu_rseq_take, @function
	.p2align 4
ebpfu_rseq_take:
	leaq .Ltake_cs(%rip), %rax
	movq %rax, 8(%rdi)		/* rs->rseq_cs */
.Ltake_start:
	movl 4(%rdi), %eax		/* rs->cpu_id */
	cmpl %edx, %eax
	jae .Ltake_none
	movl %eax, %r8d
	shlq $6, %r8
	addq %rsi, %r8
	cmpl $0, (%r8)
	jne .Ltake_held
	movl %ecx, (%r8)		/* the commit */
.Ltake_end:
	movq $0, 8(%rdi)
	ret
.Ltake_none:
	movq $0, 8(%rdi)
	movl $-1, %eax
	ret
.Ltake_held:
	movq $0, 8(%rdi)
	orl $0x80000000, %eax
	ret
	.long 0x53053053		/* RSEQ_SIG, right before the abort handler */
.Ltake_abort:
	jmp ebpfu_rseq_take
	.size ebpfu_rseq_take, .-ebpfu_rseq_take

	.section .data.rel.ro, "aw"
	.p2align 5
.Ltake_cs:				/* struct rseq_cs */
	.long 0				/* version */
	.long 0				/* flags */
	.quad .Ltake_start		/* start_ip */
	.quad .Ltake_end - .Ltake_start	/* post_commit_offset */
	.quad .Ltake_abort		/* abort_ip */

	.section .note.GNU-stack, "", @progbits
