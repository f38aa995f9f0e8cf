/* Patching (DESIGN.md section 6, docs/probes.md): trampolines near the probed code and the jump
 * that leads to them, written while the process's other threads are held in the agent's signal
 * handler.
 *
 * A site's trampoline ("stub") is 192 bytes of a read-write-execute chunk mapped within +-2 GB
 * of the probed code:
 *
 *	+0   .quad ebpfu_entry_common
 *	+8   .quad the site
 *	+16  lea rsp, [rsp-128]          leave the red zone alone
 *	+21  call [rip-27]               ebpfu_entry_common: pt_regs, programs (entry.S)
 *	+27  lea rsp, [rsp+128]
 *	+35  the displaced instructions, relocated (bytes and fixups computed by server/attach)
 *	     jmp [rip+0]; .quad probe + displaced length
 *
 * Patching a running process has two hazards: another thread may execute the bytes while they
 * change, and a thread may have executed some of the displaced instructions but not all (it
 * sits, preempted, at an instruction boundary inside the displaced range) and would resume in
 * the middle of the jump. Both are handled by stopping the world as garbage collectors do: every
 * other thread gets the agent's signal and waits in the handler until the patch is written; a
 * thread whose interrupted instruction pointer is inside a range being patched is moved to the
 * same instruction in the relocated copy. Returning from the handler serializes the thread
 * (iret), so it fetches the new bytes. A thread that blocks the signal cannot be stopped: the
 * jump is then written with one aligned 8-byte store when it fits in one (functions are 16-byte
 * aligned), which instruction fetch sees whole.
 *
 * Where a 5-byte jump does not fit (a function that ends sooner, a branch into the bytes it
 * would displace), server/attach marks the slot EBPFU_SLOT_F_INT3 and relocates the first
 * instruction only: the site is patched with one int3 byte, and the agent's SIGTRAP handler
 * (ebpfu_trap) runs the programs and resumes the thread at the relocated copy (+35), which jumps
 * back after the instruction. The stub's entry part is unused there.
 *
 * Detaching writes the original bytes back. Stubs are never freed: a thread may still be inside
 * one, and it runs the displaced instructions and jumps back to code that is original again.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>

#include "agent.h"

#define STUB_SIZE 192
#define STUB_CODE 16
#define STUB_COPY 35
#define CHUNK_SIZE 65536
#define MAX_SITES 256
#define MAX_CHUNKS 32
#define MAX_THREADS 4096
#define STOP_MAGIC 0x73746f70 /* "stop" */

static struct site sites[MAX_SITES];
static uint32_t nsites;

struct chunk {
	uint8_t *base;
	uint32_t used;
};
static struct chunk chunks[MAX_CHUNKS];
static uint32_t nchunks;

struct site *ebpfu_site_find(uint64_t addr)
{
	for (uint32_t i = 0; i < nsites; i++)
		if (sites[i].addr == addr)
			return &sites[i];
	return 0;
}

/* ebpfu_site_next iterates over the sites: the first after s (NULL: the first one). */
struct site *ebpfu_site_next(struct site *s)
{
	uint32_t i = s ? (uint32_t)(s - sites) + 1 : 0;
	return i < nsites ? &sites[i] : 0;
}

static int near(uint64_t a, uint64_t b)
{
	uint64_t d = a > b ? a - b : b - a;
	return d < 0x7fff0000ull - CHUNK_SIZE;
}

/* chunk_near maps a new chunk within reach of addr. */
static uint8_t *chunk_near(uint64_t addr)
{
	for (int dir = 0; dir < 2; dir++) {
		for (uint64_t delta = 1ull << 20; delta < 0x70000000ull; delta += 16ull << 20) {
			uint64_t hint = dir == 0 ? addr - delta : addr + delta;
			if (dir == 0 && addr < delta + 0x10000)
				break;
			hint &= ~0xffffull;
			long m = esys6(SYS_mmap, (long)hint, CHUNK_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (m < 0 && m > -4096)
				continue;
			if (near((uint64_t)m, addr))
				return (uint8_t *)m;
			esys2(SYS_munmap, m, CHUNK_SIZE);
		}
	}
	return 0;
}

static uint8_t *stub_alloc(uint64_t addr)
{
	for (uint32_t i = 0; i < nchunks; i++) {
		struct chunk *c = &chunks[i];
		if (c->used + STUB_SIZE <= CHUNK_SIZE && near((uint64_t)c->base, addr)) {
			uint8_t *p = c->base + c->used;
			c->used += STUB_SIZE;
			return p;
		}
	}
	if (nchunks == MAX_CHUNKS)
		return 0;
	uint8_t *base = chunk_near(addr);
	if (!base)
		return 0;
	chunks[nchunks].base = base;
	chunks[nchunks].used = STUB_SIZE;
	nchunks++;
	return base;
}

static void put32(uint8_t *p, uint32_t v) { ecopy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { ecopy(p, &v, 8); }

/* ebpfu_site_new makes the site and trampoline for a probe at addr from a table slot, after
 * checking that the code there is what the slot was computed from. */
struct site *ebpfu_site_new(uint64_t addr, const uint8_t *slot, const char **why)
{
	uint32_t disp = ld32(slot, EBPFU_SLOT_DISP_LEN), clen = ld32(slot, EBPFU_SLOT_COPY_LEN);
	uint32_t nfix = ld32(slot, EBPFU_SLOT_NFIX), nbound = ld32(slot, EBPFU_SLOT_NBOUND);
	uint32_t int3 = (ld32(slot, EBPFU_SLOT_FLAGS) & EBPFU_SLOT_F_INT3) != 0;
	if (disp < (int3 ? 1u : 5u) || (int3 && nbound != 1) || disp > EBPFU_MAX_ORIG || clen > EBPFU_MAX_COPY || nfix > EBPFU_MAX_FIXUPS ||
	    nbound > EBPFU_MAX_BOUNDS || STUB_COPY + clen + 14 > STUB_SIZE) {
		*why = "malformed slot";
		return 0;
	}
	const uint8_t *orig = slot + EBPFU_SLOT_ORIG;
	for (uint32_t i = 0; i < disp; i++) {
		if (((const uint8_t *)addr)[i] != orig[i]) {
			*why = "the code at the probe point differs from the file's";
			return 0;
		}
	}
	if (nsites == MAX_SITES) {
		*why = "too many probe points in one process";
		return 0;
	}
	uint8_t *b = stub_alloc(addr);
	if (!b) {
		*why = "no memory for a trampoline within 2 GB of the probe point";
		return 0;
	}
	struct site *s = &sites[nsites];
	ezero(s, sizeof *s);
	s->addr = addr;
	s->stub = b + STUB_CODE;
	s->copy = b + STUB_COPY;
	s->disp_len = disp;
	s->int3 = int3;
	s->nbound = nbound;
	ecopy(s->bounds, slot + EBPFU_SLOT_BOUNDS, sizeof s->bounds);
	ecopy(s->orig, orig, disp);

	put64(b, (uint64_t)ebpfu_entry_common);
	put64(b + 8, (uint64_t)s);
	static const uint8_t code[] = {
		0x48, 0x8d, 0x64, 0x24, 0x80,                   /* lea rsp, [rsp-128] */
		0xff, 0x15, 0xe5, 0xff, 0xff, 0xff,             /* call [rip-27] */
		0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00, /* lea rsp, [rsp+128] */
	};
	ecopy(b + STUB_CODE, code, sizeof code);
	uint8_t *c = b + STUB_COPY;
	ecopy(c, slot + EBPFU_SLOT_COPY, clen);
	for (uint32_t i = 0; i < nfix; i++) {
		const uint8_t *f = slot + EBPFU_SLOT_FIXUPS + 16 * i;
		uint16_t at, end;
		uint32_t kind;
		int64_t target;
		ecopy(&at, f, 2);
		ecopy(&end, f + 2, 2);
		ecopy(&kind, f + 4, 4);
		ecopy(&target, f + 8, 8);
		uint64_t abs = addr + (uint64_t)target;
		if (kind == EBPFU_FIX_REL32 && at + 4u <= clen && end <= clen) {
			int64_t rel = (int64_t)(abs - ((uint64_t)c + end));
			if (rel != (int32_t)rel) {
				*why = "a displaced instruction's rip-relative operand is out of the trampoline's reach";
				return 0;
			}
			put32(c + at, (uint32_t)(int32_t)rel);
		} else if (kind == EBPFU_FIX_ABS64 && at + 8u <= clen) {
			put64(c + at, abs);
		} else {
			*why = "malformed fixup";
			return 0;
		}
	}
	c[clen] = 0xff; /* jmp [rip+0] */
	c[clen + 1] = 0x25;
	put32(c + clen + 2, 0);
	put64(c + clen + 6, addr + disp);
	__atomic_store_n(&nsites, nsites + 1, __ATOMIC_RELEASE); /* the SIGTRAP handler reads it */
	return s;
}

/* ---- a hit at an int3 site ---- */

/* ebpfu_trap answers a SIGTRAP that an int3 of the agent raised, from the handler's interrupted
 * context uctx (its rip is after the int3): it runs the site's programs on pt_regs built from
 * the context, as a jump's hit does, and resumes the thread at the relocated copy of the first
 * instruction, which jumps back after it. A trap at a site whose byte is no longer int3 (detached
 * after the thread hit it) resumes at the original instruction. Returns 0 when the trap is not
 * the agent's. */
int ebpfu_trap(void *uctx)
{
	ucontext_t *uc = uctx;
	greg_t *g = uc->uc_mcontext.gregs;
	uint64_t at = (uint64_t)g[REG_RIP] - 1;
	struct site *s = 0;
	uint32_t n = __atomic_load_n(&nsites, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < n; i++) {
		if (sites[i].addr == at && sites[i].int3) {
			s = &sites[i];
			break;
		}
	}
	if (!s)
		return 0;
	if (*(volatile uint8_t *)at != 0xcc) {
		g[REG_RIP] = (greg_t)at;
		return 1;
	}
	struct ebpfu_pt_regs regs = {
		.r15 = (uint64_t)g[REG_R15], .r14 = (uint64_t)g[REG_R14], .r13 = (uint64_t)g[REG_R13],
		.r12 = (uint64_t)g[REG_R12], .bp = (uint64_t)g[REG_RBP], .bx = (uint64_t)g[REG_RBX],
		.r11 = (uint64_t)g[REG_R11], .r10 = (uint64_t)g[REG_R10], .r9 = (uint64_t)g[REG_R9],
		.r8 = (uint64_t)g[REG_R8], .ax = (uint64_t)g[REG_RAX], .cx = (uint64_t)g[REG_RCX],
		.dx = (uint64_t)g[REG_RDX], .si = (uint64_t)g[REG_RSI], .di = (uint64_t)g[REG_RDI],
		.orig_ax = ~0ull, .ip = at, .cs = 0x33, .flags = (uint64_t)g[REG_EFL],
		.sp = (uint64_t)g[REG_RSP], .ss = 0x2b,
	};
	ebpfu_fire(s, &regs);
	g[REG_RIP] = (greg_t)s->copy;
	return 1;
}

/* ---- writing code ---- */

/* text_write writes n bytes at addr in code, one aligned 8-byte store when they fit in one. */
static int text_write(uint64_t addr, const uint8_t *bytes, uint32_t n)
{
	uint64_t page = addr & ~4095ull, end = (addr + n + 4095) & ~4095ull;
	int prot = ebpfu_prot(addr);
	if (esys3(SYS_mprotect, page, end - page, PROT_READ | PROT_WRITE | PROT_EXEC) < 0)
		return -1;
	uint64_t word = addr & ~7ull;
	if (addr + n <= word + 8) {
		uint64_t v = *(volatile uint64_t *)word;
		ecopy((uint8_t *)&v + (addr - word), bytes, n);
		__atomic_store_n((uint64_t *)word, v, __ATOMIC_SEQ_CST);
	} else {
		ecopy((uint8_t *)addr + 1, bytes + 1, n - 1);
		__atomic_store_n((uint8_t *)addr, bytes[0], __ATOMIC_SEQ_CST);
	}
	esys3(SYS_mprotect, page, end - page, prot | PROT_EXEC);
	return 0;
}

static int patch_site(struct site *s, int on)
{
	uint8_t jmp[5];
	if (s->int3) { /* one byte: no thread can be inside it */
		uint8_t b = on ? 0xcc : s->orig[0];
		return text_write(s->addr, &b, 1);
	}
	if (on) {
		int64_t rel = (int64_t)((uint64_t)s->stub - (s->addr + 5));
		jmp[0] = 0xe9;
		put32(jmp + 1, (uint32_t)(int32_t)rel);
		return text_write(s->addr, jmp, 5);
	}
	return text_write(s->addr, s->orig, 5);
}

/* ---- hooking a function that only returns ---- */

/* is_filler reports whether b is a byte of the nop and int3 padding compilers put between
 * functions (0x90, 0xcc, and the bytes of the multi-byte nops 66 2e 0f 1f 84 00 / 44 / 40 / 80). */
static int is_filler(uint8_t b)
{
	return b == 0x90 || b == 0xcc || b == 0x66 || b == 0x2e || b == 0x0f || b == 0x1f || b == 0x84 ||
	       b == 0x00 || b == 0x44 || b == 0x40 || b == 0x80;
}

/* ebpfu_hook_return makes the function at addr, whose body is one ret (after an endbr64 or
 * not) followed by the padding up to the next 16-byte boundary, jump to fn instead, which then
 * returns to its caller. It is done once, in the constructor, before the process has threads
 * of its own making. Returns 0 on success. */
int ebpfu_hook_return(uint64_t addr, void (*fn)(void))
{
	const uint8_t *c = (const uint8_t *)addr;
	if (addr & 15)
		return -1;
	if (c[0] == 0xf3 && c[1] == 0x0f && c[2] == 0x1e && c[3] == 0xfa) /* endbr64 */
		c += 4;
	if (c[0] != 0xc3)
		return -1;
	for (int i = 1; i < 5; i++)
		if (!is_filler(c[i]))
			return -1;
	if ((uint64_t)c + 5 > addr + 16) /* the jump must end inside the function's 16 bytes */
		return -1;
	uint8_t *b = stub_alloc((uint64_t)c);
	if (!b)
		return -1;
	b[0] = 0xff; /* jmp [rip+0] */
	b[1] = 0x25;
	put32(b + 2, 0);
	put64(b + 6, (uint64_t)fn);
	uint8_t jmp[5] = {0xe9};
	put32(jmp + 1, (uint32_t)(int32_t)(int64_t)((uint64_t)b - ((uint64_t)c + 5)));
	return text_write((uint64_t)c, jmp, 5);
}

/* ---- stopping the world ---- */

static uint32_t tids[MAX_THREADS];
static uint32_t acked[MAX_THREADS]; /* the round thread tids[i] acknowledged */

static struct {
	uint32_t gen;      /* the round */
	uint32_t done_gen; /* rounds whose patch is written */
	uint32_t active;   /* a round is in progress */
	uint32_t acks;     /* threads of the round that acknowledged it */
	uint32_t nsent;    /* tids[0..nsent) were asked to stop this round */
	uint32_t nplan;
	struct site *plan[MAX_SITES]; /* sites being patched in (threads inside are moved) */
} stw;

#define FUTEX_WAIT_ 0
#define FUTEX_WAKE_ 1

/* move_in moves an instruction pointer inside the displaced range of site s to the same
 * instruction of its relocated copy; it reports whether it did. */
static int move_in(const struct site *s, uint64_t *ip)
{
	if (*ip <= s->addr || *ip >= s->addr + s->disp_len)
		return 0;
	for (uint32_t k = 1; k < s->nbound; k++) {
		if (s->addr + s->bounds[k][0] == *ip) {
			*ip = (uint64_t)s->copy + s->bounds[k][1];
			return 1;
		}
	}
	return 0;
}

/* move_ip moves an instruction pointer inside the displaced range of a site being patched in,
 * or of one patched in already (a stop signal that arrives after its round gave up waiting), to
 * the same instruction of its relocated copy. */
static void move_ip(uint64_t *ip)
{
	for (uint32_t i = 0; i < stw.nplan; i++)
		if (move_in(stw.plan[i], ip))
			return;
	uint32_t n = __atomic_load_n(&nsites, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < n; i++)
		if (__atomic_load_n(&sites[i].patched, __ATOMIC_ACQUIRE) && move_in(&sites[i], ip))
			return;
}

static void fix_context(void *uctx)
{
	if (!uctx)
		return;
	ucontext_t *uc = uctx;
	uint64_t ip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	move_ip(&ip);
	uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
}

static void futex_wait(uint32_t *w, uint32_t v, long ns)
{
	struct timespec ts = {0, ns};
	esys6(SYS_futex, (long)w, FUTEX_WAIT_, v, (long)&ts, 0, 0);
}

/* ebpfu_stop_handler is the part of the signal handler that serves a stop request. A thread
 * stops in whatever round is in progress when its signal arrives (a late signal of an earlier
 * round too: being stopped is always safe), and counts as acknowledging the round it was asked
 * to stop in. */
void ebpfu_stop_handler(void *uctx)
{
	/* A signal that comes after its round gave up waiting finds its site patched in already:
	 * the thread may have been interrupted inside the bytes the jump replaced. */
	fix_context(uctx);
	if (__atomic_load_n(&stw.active, __ATOMIC_ACQUIRE)) {
		uint32_t g = __atomic_load_n(&stw.gen, __ATOMIC_ACQUIRE);
		uint32_t tid = (uint32_t)esys0(SYS_gettid), n = __atomic_load_n(&stw.nsent, __ATOMIC_ACQUIRE);
		fix_context(uctx);
		for (uint32_t i = 0; i < n && i < MAX_THREADS; i++) {
			uint32_t old = __atomic_load_n(&acked[i], __ATOMIC_ACQUIRE);
			if (tids[i] == tid && old != g &&
			    __atomic_compare_exchange_n(&acked[i], &old, g, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
				__atomic_add_fetch(&stw.acks, 1, __ATOMIC_ACQ_REL);
				esys6(SYS_futex, (long)&stw.acks, FUTEX_WAKE_, 1, 0, 0, 0);
				break;
			}
		}
		for (;;) {
			uint32_t d = __atomic_load_n(&stw.done_gen, __ATOMIC_ACQUIRE);
			if ((int32_t)(d - g) >= 0)
				break;
			futex_wait(&stw.done_gen, d, 50 * 1000 * 1000);
		}
	}
}

/* The threads running the agent's signal handler: they block the signal for a moment, and one
 * interrupted inside displaced bytes must not be given up on as a thread that blocks it for
 * good. */
#define MAX_INSIDE 64
static uint32_t inside[MAX_INSIDE];

int ebpfu_handler_enter(void)
{
	uint32_t tid = (uint32_t)esys0(SYS_gettid);
	for (int i = 0; i < MAX_INSIDE; i++) {
		uint32_t zero = 0;
		if (__atomic_compare_exchange_n(&inside[i], &zero, tid, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			return i;
	}
	return -1;
}

void ebpfu_handler_leave(int slot)
{
	if (slot >= 0)
		__atomic_store_n(&inside[slot], 0, __ATOMIC_RELEASE);
}

static int is_inside(uint32_t tid)
{
	for (int i = 0; i < MAX_INSIDE; i++)
		if (__atomic_load_n(&inside[i], __ATOMIC_ACQUIRE) == tid)
			return 1;
	return 0;
}

static int others_inside(uint32_t self)
{
	for (int i = 0; i < MAX_INSIDE; i++) {
		uint32_t t = __atomic_load_n(&inside[i], __ATOMIC_ACQUIRE);
		if (t && t != self)
			return 1;
	}
	return 0;
}

/* list_threads reads the thread ids of the process into tids (the caller's excluded). */
static uint32_t list_threads(uint32_t self)
{
	static char buf[4096];
	uint32_t n = 0;
	long f = esys3(SYS_open, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (f < 0)
		return 0;
	long got;
	while ((got = esys3(SYS_getdents64, f, buf, sizeof buf)) > 0) {
		for (long off = 0; off < got;) {
			uint16_t reclen;
			ecopy(&reclen, buf + off + 16, 2);
			const char *name = buf + off + 19;
			uint32_t tid = 0;
			int ok = name[0] != 0;
			for (const char *p = name; *p; p++) {
				if (*p < '0' || *p > '9')
					ok = 0;
				tid = tid * 10 + (uint32_t)(*p - '0');
			}
			if (ok && tid != self && n < MAX_THREADS)
				tids[n++] = tid;
			off += reclen;
		}
	}
	esys1(SYS_close, f);
	return n;
}

/* blocks_doorbell reports whether thread tid blocks the agent's signal (SigBlk of its status). */
static int blocks_doorbell(uint32_t tid)
{
	static char buf[4096];
	char path[48] = "/proc/self/task/", *p = path + 16;
	char tmp[12];
	int k = 0;
	do
		tmp[k++] = (char)('0' + tid % 10);
	while (tid /= 10);
	while (k)
		*p++ = tmp[--k];
	ecopy(p, "/status", 8);
	long f = esys3(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return 0;
	long n = esys3(SYS_read, f, buf, sizeof buf - 1);
	esys1(SYS_close, f);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (char *q = buf; *q; q++) {
		if (q[0] == 'S' && q[1] == 'i' && q[2] == 'g' && q[3] == 'B' && q[4] == 'l' && q[5] == 'k' && q[6] == ':') {
			q += 7;
			while (*q == ' ' || *q == '\t')
				q++;
			uint64_t mask = 0;
			for (; (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f'); q++)
				mask = mask * 16 + (uint64_t)(*q <= '9' ? *q - '0' : *q - 'a' + 10);
			return (mask >> (EBPFU_DOORBELL_SIGNAL - 1)) & 1;
		}
	}
	return 0;
}

/* stop_world asks every other thread to stop and waits for them; it returns how many did not
 * answer. A thread that blocks the signal cannot answer: after 10 ms the wait ends when every
 * missing thread blocks it, after 200 ms in any case. */
static int stop_world(uint32_t self, int32_t pid, uint32_t g)
{
	/* threads still leaving the handler (an earlier round, an earlier sync) first */
	for (int i = 0; i < 200 && others_inside(self); i++)
		futex_wait(&stw.acks, __atomic_load_n(&stw.acks, __ATOMIC_ACQUIRE), 1000 * 1000);
	__atomic_store_n(&stw.nsent, 0, __ATOMIC_RELEASE);
	uint32_t n = list_threads(self);
	if (n == 0)
		return 0;
	siginfo_t si;
	ezero(&si, sizeof si);
	si.si_signo = EBPFU_DOORBELL_SIGNAL;
	si.si_code = SI_QUEUE;
	si.si_pid = pid;
	si.si_uid = ebpfu_agent.uid;
	si.si_value.sival_int = STOP_MAGIC;
	__atomic_store_n(&stw.nsent, n, __ATOMIC_RELEASE);
	uint32_t sent = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (esys4(SYS_rt_tgsigqueueinfo, pid, tids[i], EBPFU_DOORBELL_SIGNAL, &si) == 0)
			sent++;
		else
			__atomic_store_n(&acked[i], g, __ATOMIC_RELEASE); /* gone */
	}
	for (int round = 0; round < 40; round++) {
		uint32_t a = __atomic_load_n(&stw.acks, __ATOMIC_ACQUIRE);
		if (a >= sent)
			return 0;
		if (round >= 2) {
			int all_blocked = 1;
			for (uint32_t i = 0; i < n && all_blocked; i++)
				if (__atomic_load_n(&acked[i], __ATOMIC_ACQUIRE) != g &&
				    (is_inside(tids[i]) || !blocks_doorbell(tids[i])))
					all_blocked = 0;
			if (all_blocked)
				break;
		}
		futex_wait(&stw.acks, a, 5 * 1000 * 1000);
	}
	return (int)(sent - __atomic_load_n(&stw.acks, __ATOMIC_ACQUIRE));
}

/* ebpfu_patch_apply patches in the sites that want it and restores those that no longer do,
 * with the process's other threads stopped. uctx is the interrupted context of the calling
 * thread when it runs in a signal handler. Returns the threads that could not be stopped. */
int ebpfu_patch_apply(void *uctx)
{
	uint32_t changes = 0;
	stw.nplan = 0;
	for (uint32_t i = 0; i < nsites; i++) {
		if (sites[i].want != sites[i].patched) {
			changes++;
			if (sites[i].want)
				stw.plan[stw.nplan++] = &sites[i];
		}
	}
	if (!changes)
		return 0;
	int32_t pid = (int32_t)esys0(SYS_getpid);
	uint32_t self = (uint32_t)esys0(SYS_gettid);
	__atomic_store_n(&stw.acks, 0, __ATOMIC_RELEASE);
	uint32_t g = __atomic_add_fetch(&stw.gen, 1, __ATOMIC_ACQ_REL);
	__atomic_store_n(&stw.active, 1, __ATOMIC_RELEASE);
	int missing = stop_world(self, pid, g);
	fix_context(uctx);
	for (uint32_t i = 0; i < nsites; i++) {
		struct site *s = &sites[i];
		if (s->want == s->patched)
			continue;
		if (patch_site(s, (int)s->want) == 0)
			s->patched = s->want;
	}
	__atomic_store_n(&stw.active, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&stw.done_gen, g, __ATOMIC_RELEASE);
	esys6(SYS_futex, (long)&stw.done_gen, FUTEX_WAKE_, 0x7fffffff, 0, 0, 0);
	stw.nplan = 0;
	return missing;
}

/* ebpfu_patch_forget is called in a fork child: the parent's round, if any, is not the child's. */
void ebpfu_patch_forget(void)
{
	stw.active = 0;
	stw.done_gen = stw.gen;
	for (int i = 0; i < MAX_INSIDE; i++)
		inside[i] = 0;
}
