/* Running programs at a probe hit: the per-thread block and stack, CPU slot leases, the
 * uretprobe shadow stack. This is the hot path: no system call unless something is wrong.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include "agent.h"

__thread struct tstate ebpfu_tls __attribute__((tls_model("initial-exec")));

static inline uint32_t *lease_word(uint32_t k)
{
	return (uint32_t *)(ebpfu_agent.table + EBPFU_ATT_LEASES + (uint64_t)k * EBPFU_ATT_LEASE_SIZE);
}

/* glibc (2.35 and later) registers an rseq area for each thread at this offset from the thread
 * pointer, and says its size here (0: none registered). */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

#define RSEQ_SIG 0x53053053

/* rseq_area returns the thread's rseq area, or 0 when it has none: glibc's, or one the agent
 * registers in the thread's state when glibc registered none. */
static struct ebpfu_rseq *rseq_area(struct tstate *t)
{
	if (__builtin_expect((uint64_t)t->rs > 1, 1))
		return t->rs;
	if (t->rs)
		return 0;
	if (&__rseq_size && &__rseq_offset && __rseq_size > 0) {
		t->rs = (struct ebpfu_rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	} else if (esys4(SYS_rseq, &t->own_rs, sizeof t->own_rs, 0, RSEQ_SIG) == 0) {
		t->rs = &t->own_rs;
	} else {
		t->rs = (struct ebpfu_rseq *)1;
		return 0;
	}
	return t->rs;
}

/* ebpfu_cpu returns the CPU the thread runs on, below ncpu. */
uint32_t ebpfu_cpu(struct tstate *t)
{
	uint32_t n = ebpfu_agent.ncpu ? ebpfu_agent.ncpu : 1;
	struct ebpfu_rseq *rs = rseq_area(t);
	int c = rs ? (int)__atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED) : sched_getcpu();
	return c < 0 ? 0 : (uint32_t)c % n;
}

uint32_t ebpfu_rseq_take(struct ebpfu_rseq *rs, uint8_t *leases, uint32_t ncpu, uint32_t tid);

/* reclaim frees lease words whose holders were killed in the middle of a run. */
static void reclaim(uint32_t n, uint32_t tid)
{
	for (uint32_t k = 0; k < n; k++) {
		uint32_t *w = lease_word(k);
		uint32_t owner = __atomic_load_n(w, __ATOMIC_RELAXED);
		if (owner && owner != tid && !ebpfu_alive(owner))
			__atomic_compare_exchange_n(w, &owner, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
	}
}

/* wait lets the holder of a slot run: the thread yields, then sleeps 20 us at a time. */
static void wait(uint32_t tries)
{
	if (tries < 256) {
		esys0(SYS_sched_yield);
	} else {
		struct timespec ts = {0, 20000};
		esys2(SYS_nanosleep, &ts, 0);
	}
}

/* ebpfu_lease gives the thread the slot of the CPU it runs on for the run: threads that share a
 * CPU interleave in user space, so a program's lookup-and-increment of a per-CPU value is exact
 * only if no other run uses the same slot meanwhile, in this process or another. A thread takes
 * only the slot of its own CPU, in a restartable sequence (ebpfu_rseq_take): no locked
 * instruction on the hot path. A holder preempted in its run (more runnable threads than CPUs)
 * keeps its slot until it runs again: the waiter yields, then sleeps 20 us at a time (and may
 * wake on another CPU), for 2 s at most. A thread without an rseq area (none registered, and
 * the agent could not register one) takes any free slot with a compare-and-swap instead.
 * Returns the slot, or ~0u when none could be had. */
uint32_t ebpfu_lease(struct tstate *t)
{
	uint32_t n = ebpfu_agent.ncpu;
	if (!ebpfu_agent.table || n == 0)
		return ~0u;
	if (t->lease)
		return t->lease - 1;
	uint32_t tid = ebpfu_tid(t);
	struct ebpfu_rseq *rs = rseq_area(t);
	for (uint32_t tries = 0; tries < 100000; tries++) {
		if (rs) {
			uint32_t k = ebpfu_rseq_take(rs, (uint8_t *)lease_word(0), n, tid);
			if (__builtin_expect(k < 0x80000000u, 1)) {
				t->lease = k + 1;
				t->mt.cpu = k;
				return k;
			}
			if (k == ~0u) /* a cpu_id not below the possible CPUs: take any slot */
				rs = 0;
		}
		if (!rs) {
			uint32_t hint = ebpfu_cpu(t);
			for (uint32_t i = 0; i < n; i++) {
				uint32_t k = hint + i < n ? hint + i : hint + i - n;
				uint32_t *w = lease_word(k);
				uint32_t zero = 0;
				if (__atomic_load_n(w, __ATOMIC_RELAXED) == 0 &&
				    __atomic_compare_exchange_n(w, &zero, tid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
					t->lease = k + 1;
					t->mt.cpu = k;
					return k;
				}
			}
		}
		if (tries % 64 == 63)
			reclaim(n, tid);
		wait(tries);
	}
	return ~0u;
}

void ebpfu_unlease(struct tstate *t)
{
	if (!t->lease)
		return;
	__atomic_store_n(lease_word(t->lease - 1), 0, __ATOMIC_RELEASE);
	t->lease = 0;
}

static uint64_t faults;

static void run_prog(struct tstate *t, const struct prog *p, struct ebpfu_pt_regs *regs)
{
	struct ebpfu_ctx *c = &t->blk.ctx;
	if (t->prog != p) {
		c->helpers = (const ebpfu_helper_fn *)ebpfu_helpers;
		c->nhelpers = EBPFU_NHELPERS;
		c->maps = p->maps;
		c->map_values = p->map_values;
		c->stack = (uint64_t)t->stack;
		for (uint32_t i = 0; i < p->nregions; i++)
			c->regions[i + 1] = p->regions[i];
		c->nregions = 1 + p->nregions;
		t->prog = p;
	}
	c->regions[0].start = (uint64_t)regs;
	c->regions[0].end = (uint64_t)(regs + 1);
	c->regions[0].writable = 0;
	c->budget = ebpfu_agent.budget;
	c->packet = 0;
	p->entry(c, (uint64_t)regs, 0, 0, 0, 0);
	if (__builtin_expect(c->fault != 0, 0))
		__atomic_add_fetch(&faults, 1, __ATOMIC_RELAXED);
}

static void run_list(struct tstate *t, const struct proglist *pl, struct ebpfu_pt_regs *regs)
{
	uint32_t lease = 0;
	for (uint32_t i = 0; i < pl->n; i++) {
		const struct prog *p = pl->p[i];
		if (p->needs_lease && !lease) {
			if (ebpfu_lease(t) == ~0u)
				continue;
			lease = 1;
		}
		run_prog(t, p, regs);
	}
	if (lease)
		ebpfu_unlease(t);
}

/* onaltstack reports whether sp lies on the thread's signal stack. */
/* leave ends the thread's run, then queues the signals its programs sent (bpf_send_signal):
 * they arrive on the way back to the probed code, after every program of the hit ran. */
static void leave(struct tstate *t)
{
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&t->rseq, t->rseq + 1, __ATOMIC_RELEASE);
	t->busy = 0;
	if (__builtin_expect(t->nsigs != 0, 0))
		ebpfu_send_signals(t);
}

static int onaltstack(uint64_t sp)
{
	stack_t ss;
	if (esys2(SYS_sigaltstack, 0, &ss) < 0 || (ss.ss_flags & SS_DISABLE))
		return 0;
	return sp >= (uint64_t)ss.ss_sp && sp < (uint64_t)ss.ss_sp + ss.ss_size;
}

/* enter marks the thread busy with a run whose pt_regs are at regs. A thread already busy is
 * either nested (a signal handler interrupted a run: the new hit is dropped, as the kernel drops
 * recursive probes) or left a run by a longjmp out of a signal handler (the old frame is above
 * the new one on the same stack: the old run is over). */
static int enter(struct tstate *t, struct ebpfu_pt_regs *regs)
{
	if (__builtin_expect(t->busy == 0, 1)) {
		if (__builtin_expect(t->runner != ebpfu_agent.fork_gen + 1, 0))
			ebpfu_runner(t);
		t->regs = regs;
		t->busy = 1;
		/* odd while the thread runs programs: their objects are not unmapped meanwhile
		 * (reclaim.c's membarrier orders this store before the loads that follow) */
		__atomic_store_n(&t->rseq, t->rseq + 1, __ATOMIC_RELAXED);
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		return 1;
	}
	uint64_t old = (uint64_t)t->regs, now = (uint64_t)regs;
	if (onaltstack(old) != onaltstack(now) || now <= old)
		return 0;
	ebpfu_unlease(t);
	t->regs = regs;
	return 1;
}

void ebpfu_fire(struct site *s, struct ebpfu_pt_regs *regs)
{
	struct tstate *t = &ebpfu_tls;
	regs->ip = s->addr;
	if (!enter(t, regs)) {
		__atomic_add_fetch(&s->missed, 1, __ATOMIC_RELAXED);
		return;
	}
	struct proglist *pl = __atomic_load_n(&s->entry, __ATOMIC_ACQUIRE);
	if (pl && pl->n)
		run_list(t, pl, regs);
	struct proglist *rl = __atomic_load_n(&s->ret, __ATOMIC_ACQUIRE);
	if (rl && rl->n) {
		uint64_t *slot = (uint64_t *)regs->sp;
		/* entries at or below this frame belong to frames a longjmp has left */
		while (t->depth && t->shadow[t->depth - 1].sp <= (uint64_t)slot)
			t->depth--;
		if (t->depth < EBPFU_SHADOW_DEPTH) {
			struct shadow_entry *e = &t->shadow[t->depth];
			e->ret = *slot;
			e->sp = (uint64_t)slot;
			e->site = s;
			__atomic_store_n(&t->depth, t->depth + 1, __ATOMIC_RELEASE);
			*slot = (uint64_t)ebpfu_ret_tramp;
		} else {
			__atomic_add_fetch(&s->missed, 1, __ATOMIC_RELAXED);
		}
	}
	leave(t);
}

static void lost_return(void)
{
	static const char msg[] = "ebpfu agent: a return probe lost its return address\n";
	esys3(SYS_write, 2, msg, sizeof msg - 1);
	esys2(SYS_kill, esys0(SYS_getpid), SIGABRT);
	for (;;)
		esys1(SYS_exit_group, 134);
}

uint64_t ebpfu_ret_fire(struct ebpfu_pt_regs *regs)
{
	struct tstate *t = &ebpfu_tls;
	uint64_t at = regs->sp - 8;
	/* the entry of this return slot; those above it are stale: frames a longjmp left (below
	 * this one), or a vfork child's that exec'ed on another stack (the child ran on this
	 * thread's state) */
	uint32_t d = t->depth;
	while (d && t->shadow[d - 1].sp != at)
		d--;
	if (!d)
		lost_return();
	struct shadow_entry e = t->shadow[d - 1];
	__atomic_store_n(&t->depth, d - 1, __ATOMIC_RELEASE);
	regs->ip = e.ret;
	if (enter(t, regs)) { /* before the list is loaded: its programs' objects stay mapped */
		struct proglist *rl = __atomic_load_n(&e.site->ret, __ATOMIC_ACQUIRE);
		if (rl && rl->n) {
			t->ret_addr = e.site->addr;
			run_list(t, rl, regs);
			t->ret_addr = 0;
		}
		leave(t);
	}
	return e.ret;
}

/* ebpfu_shadow_restore puts the original return addresses of the thread's pending return
 * probes back on its stack and forgets them (their return programs do not run): an unwinder
 * (a C++ exception, thread cancellation) that met the return trampoline would find no unwind
 * information for it and stop the program. */
void ebpfu_shadow_restore(struct tstate *t)
{
	uint32_t busy = t->busy;
	t->busy = 1; /* no probe of a signal handler pushes meanwhile */
	for (uint32_t d = t->depth; d > 0; d--) {
		struct shadow_entry *e = &t->shadow[d - 1];
		uint64_t *slot = (uint64_t *)e->sp;
		if (*slot == (uint64_t)ebpfu_ret_tramp)
			*slot = e->ret;
	}
	__atomic_store_n(&t->depth, 0, __ATOMIC_RELEASE);
	t->busy = busy;
}

/* ebpfu_real_return maps a return address on the stack back to the original one when it is
 * the return trampoline (stack walks show what the kernel shows). Entry i of n counted from the
 * innermost pending return. */
uint64_t ebpfu_real_return(struct tstate *t, uint64_t addr, uint32_t *pending)
{
	if (addr != (uint64_t)ebpfu_ret_tramp)
		return addr;
	if (*pending >= t->depth)
		return addr;
	return t->shadow[t->depth - 1 - (*pending)++].ret;
}
