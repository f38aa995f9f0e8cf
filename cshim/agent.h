/* The ebpfu agent: internal declarations shared by its files. The agent is preloaded into traced
 * processes (DESIGN.md sections 2, 3, 6; docs/probes.md): it starts no thread, keeps no file
 * descriptor open, makes raw system calls only (errno is never touched), and everything it runs
 * outside its constructor is async-signal-safe.
 */
#ifndef EBPFU_AGENT_H
#define EBPFU_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "attach.h"
#include "../runtime/jit/cabi/ebpfu_ctx.h"
#include "maps/maps.h"

/* ---- raw system calls ---- */

static inline long esys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#define esys0(n) esys6((n), 0, 0, 0, 0, 0, 0)
#define esys1(n, a) esys6((n), (long)(a), 0, 0, 0, 0, 0)
#define esys2(n, a, b) esys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define esys3(n, a, b, c) esys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define esys4(n, a, b, c, d) esys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* ---- the kernel's x86-64 struct pt_regs, as a uprobe's context ---- */

struct ebpfu_pt_regs {
	uint64_t r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs,
		flags, sp, ss;
};

/* ---- the JIT's context block (docs/jit.md), in a block with room for fields the JIT adds ---- */

#define EBPFU_BLOCK_SIZE 1024 /* >= sizeof(struct ebpfu_ctx) */
_Static_assert(sizeof(struct ebpfu_ctx) <= EBPFU_BLOCK_SIZE, "block");

/* ---- what the agent keeps per process ---- */

/* An object of the table mapped into this process. */
struct obj {
	uint32_t id;    /* 0: never used, EBPFU_OBJ_FREE: free again */
	uint32_t kind;
	uint8_t *base;
	uint64_t size;
	struct ebpfu_map map; /* maps and rings: opened */
	uint32_t retiring;    /* no program uses it any more: unmapped after a grace period */
	uint32_t mark;        /* reclaim.c's */
};
#define EBPFU_OBJ_FREE 0xfffffffeu

/* A program as attached in this process: its code and what its block needs. */
struct prog {
	ebpfu_entry_fn entry;
	struct obj *code;
	uint64_t attach_id;
	uint64_t cookie;
	uint32_t slot;
	uint32_t nmaps;
	uint32_t needs_lease; /* uses per-CPU maps or perf output: run on a leased CPU slot */
	uint32_t func_entry;  /* the probe is at a function's first instruction */
	uint32_t nregions;
	struct ebpfu_region regions[EBPFU_MAX_REGIONS - 1]; /* region 0 is the context */
	uint64_t *maps;       /* struct ebpfu_map * of each map */
	uint64_t *map_values; /* direct value base of each map (arrays), or 0 */
};

/* An immutable list of programs; replaced, never changed, so a run in progress keeps its list. */
struct proglist {
	uint32_t n;
	struct prog *p[];
};

/* A probed address and its trampoline. Sites are never freed: a thread may still run in a
 * trampoline after its detach, and a new attach at the same address reuses it. */
struct site {
	uint64_t addr;
	uint8_t *stub;  /* the trampoline's code */
	uint8_t *copy;  /* the relocated displaced instructions, inside the stub */
	uint32_t disp_len;
	uint32_t int3;  /* patched with int3 (one byte), answered by the SIGTRAP handler */
	uint32_t nbound;
	uint8_t bounds[EBPFU_MAX_BOUNDS][2];
	uint8_t orig[EBPFU_MAX_ORIG];
	uint32_t patched;
	uint32_t want;   /* 1: should be patched after this sync */
	struct proglist *entry; /* entry programs (atomic pointer) */
	struct proglist *ret;   /* return programs (atomic pointer) */
	uint64_t missed; /* hits that could not run (recursion, no CPU slot) */
	uint32_t slot_of_err;
};

/* Per-thread state, in initial-exec TLS. The block comes first: helpers receive its address
 * as their sixth argument and find the rest of the run from it. */
#define EBPFU_SHADOW_DEPTH 64
struct shadow_entry {
	uint64_t ret; /* the original return address */
	uint64_t sp;  /* where it was on the stack */
	struct site *site;
};

/* The kernel's struct rseq (linux/rseq.h), the part this agent reads: the area glibc registers
 * for each thread, or one the agent registers when glibc did not. */
struct ebpfu_rseq {
	uint32_t cpu_id_start, cpu_id;
	uint64_t rseq_cs;
	uint32_t flags;
	uint32_t pad[3];
} __attribute__((aligned(32)));

struct tstate {
	union {
		struct ebpfu_ctx ctx;
		uint8_t raw[EBPFU_BLOCK_SIZE];
	} blk;
	uint64_t stack[512] __attribute__((aligned(16)));
	struct ebpfu_pt_regs *regs;
	const struct prog *prog;
	struct ebpfu_thread mt; /* owner and CPU for cshim/maps */
	uint32_t busy;
	uint32_t lease; /* leased CPU slot + 1, 0 when none */
	uint32_t tid, pid;
	uint64_t fork_gen;
	uint64_t ret_addr; /* the current uretprobe's function address (get_func_ip) */
	char comm[16];
	uint64_t comm_gen;
	uint32_t depth;
	struct shadow_entry shadow[EBPFU_SHADOW_DEPTH];
	long table_fd; /* the table, open while this thread syncs (+1; 0 when not) */
	uint32_t rseq;   /* odd while the thread runs programs (reclaim.c) */
	uint64_t runner; /* fork generation + 1 in which the thread registered as a runner */
	uint32_t nsigs;         /* signals programs of the current hit sent (bpf_send_signal) */
	struct {
		uint32_t sig, thread;
	} sigs[4];              /* sent when the hit's programs have all run */
	struct ebpfu_rseq *rs;  /* the thread's rseq area; (void *)1 when it has none; 0 until known */
	struct ebpfu_rseq own_rs; /* registered by the agent when glibc registered none */
};

extern __thread struct tstate ebpfu_tls __attribute__((tls_model("initial-exec")));

/* Global state (agent.c). */
struct agent {
	uint8_t *table; /* the attachments table, mapped shared; NULL until found */
	uint32_t ncpu;
	uint64_t budget;
	uint64_t fork_gen;
	int32_t pid;
	uint32_t uid, gid;
	char dir[256];   /* the state directory */
	uint32_t debug;
};
extern struct agent ebpfu_agent;

/* agent.c */
void ebpfu_log(const char *a, const char *b, long n);
void ebpfu_sync(void *uctx);
void ebpfu_slot_error(uint32_t slot, const char *why);
uint32_t ebpfu_tid(struct tstate *t);
int ebpfu_prot(uint64_t addr);
int ebpfu_table_read(uint64_t off, void *buf, uint64_t n);

/* objects.c */
struct obj *ebpfu_obj_get(uint32_t kind, uint32_t id);
struct obj *ebpfu_obj_at(uint32_t i); /* entry i, or 0 past the last used one */
void *ebpfu_bump(uint64_t size);

/* reclaim.c */
void ebpfu_runner(struct tstate *t);
void ebpfu_reclaim(const struct prog *const *live, uint32_t n);
void ebpfu_runners_forget(void);

/* patch.c */
struct site *ebpfu_site_find(uint64_t addr);
struct site *ebpfu_site_next(struct site *s);
struct site *ebpfu_site_new(uint64_t addr, const uint8_t *slot, const char **why);
int ebpfu_patch_apply(void *uctx);
int ebpfu_hook_return(uint64_t addr, void (*fn)(void));
int ebpfu_trap(void *uctx);

/* helpers.c */
void ebpfu_send_signals(struct tstate *t);

/* run.c */
void ebpfu_fire(struct site *s, struct ebpfu_pt_regs *regs);
uint64_t ebpfu_ret_fire(struct ebpfu_pt_regs *regs);
uint32_t ebpfu_lease(struct tstate *t);
uint32_t ebpfu_cpu(struct tstate *t);
void ebpfu_shadow_restore(struct tstate *t);
void ebpfu_unlease(struct tstate *t);

/* entry.S */
void ebpfu_entry_common(void);
void ebpfu_ret_tramp(void);

/* helpers.c */
#define EBPFU_NHELPERS 212
extern const void *ebpfu_helpers[EBPFU_NHELPERS];
void ebpfu_helpers_init(void);

/* small libc-free utilities */
static inline void ecopy(void *d, const void *s, uint64_t n)
{
	uint8_t *dd = d;
	const uint8_t *ss = s;
	while (n--)
		*dd++ = *ss++;
}
static inline void ezero(void *d, uint64_t n)
{
	uint8_t *dd = d;
	while (n--)
		*dd++ = 0;
}
static inline uint64_t estrlen(const char *s)
{
	uint64_t n = 0;
	while (s[n])
		n++;
	return n;
}
static inline uint32_t ld32(const uint8_t *p, uint64_t off) { return __atomic_load_n((const uint32_t *)(p + off), __ATOMIC_ACQUIRE); }
static inline uint64_t ld64(const uint8_t *p, uint64_t off) { return __atomic_load_n((const uint64_t *)(p + off), __ATOMIC_ACQUIRE); }

#endif
