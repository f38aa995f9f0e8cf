/* Releasing the objects (code, maps, perf rings) of detached programs. A thread may still be
 * running a program that a sync has just detached, so an object no applied program uses is first
 * marked retiring (new lookups map a fresh copy) and unmapped only after a grace period: once
 * every thread that was running programs then has finished that run.
 *
 * Each thread counts its runs in its block (rseq: odd while it runs programs, run.c) and
 * registers the counter's address as a runner at its first run. A sync that retires objects
 * makes every thread's earlier stores visible (membarrier: the threads need no fence of their
 * own on the hot path) and notes the runners whose counter is odd; a later sync frees the batch
 * when each noted counter has moved. Counters are read with process_vm_readv, which never
 * faults: the block of a thread that has ended may be gone.
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "agent.h"

#define MAX_RUNNERS 4096
#define MAX_BATCHES 8

struct runner {
	uint32_t tid;
	uint32_t *seq;
};

static struct runner runners[MAX_RUNNERS];
static uint32_t nrunners, overflow;

struct snap {
	uint32_t *seq;
	uint32_t val;
};

/* A batch of retired objects and the runs in progress when they were retired. */
struct batch {
	uint64_t bytes; /* of this mapping */
	uint32_t nobj, nsnap;
	struct obj **obj;
	struct snap *snap;
};

static struct batch *batches[MAX_BATCHES];
static int membarrier_ok; /* 0 unknown, 1 registered, -1 unavailable */

/* ebpfu_runner registers thread t's run counter (at its first run, and again in a fork child). */
void ebpfu_runner(struct tstate *t)
{
	t->runner = ebpfu_agent.fork_gen + 1;
	uint32_t i = __atomic_fetch_add(&nrunners, 1, __ATOMIC_ACQ_REL);
	if (i < MAX_RUNNERS) {
		runners[i].seq = &t->rseq;
		__atomic_store_n(&runners[i].tid, ebpfu_tid(t), __ATOMIC_RELEASE);
		return;
	}
	__atomic_store_n(&nrunners, MAX_RUNNERS, __ATOMIC_RELAXED);
	/* full: take the entry of a thread that has ended */
	for (uint32_t k = 0; k < MAX_RUNNERS; k++) {
		uint32_t tid = __atomic_load_n(&runners[k].tid, __ATOMIC_ACQUIRE);
		if (tid && esys3(SYS_tgkill, ebpfu_agent.pid, tid, 0) < 0 &&
		    __atomic_compare_exchange_n(&runners[k].tid, &tid, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			runners[k].seq = &t->rseq;
			__atomic_store_n(&runners[k].tid, ebpfu_tid(t), __ATOMIC_RELEASE);
			return;
		}
	}
	__atomic_store_n(&overflow, 1, __ATOMIC_RELEASE); /* runs we cannot see: never reclaim */
}

/* ebpfu_runners_forget is called in a fork child: the parent's other threads are not its own,
 * nor are the parent's batches' runs. */
void ebpfu_runners_forget(void)
{
	for (uint32_t i = 0; i < MAX_RUNNERS; i++)
		runners[i].tid = 0;
	nrunners = 0;
	overflow = 0;
}

/* read_seq reads a runner's counter; a thread that has ended counts as not running. */
static uint32_t read_seq(uint32_t *seq)
{
	uint32_t v = 0;
	struct iovec l = {&v, 4}, r = {seq, 4};
	if (esys6(SYS_process_vm_readv, ebpfu_agent.pid, (long)&l, 1, (long)&r, 1, 0) != 4)
		return 0;
	return v;
}

static int barrier(void)
{
	if (membarrier_ok == 0)
		membarrier_ok = esys3(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
	return membarrier_ok > 0 && esys3(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* release frees the batches whose runs have all ended. */
static void release(void)
{
	for (int b = 0; b < MAX_BATCHES; b++) {
		struct batch *bt = batches[b];
		if (!bt)
			continue;
		uint32_t k = 0;
		while (k < bt->nsnap && read_seq(bt->snap[k].seq) != bt->snap[k].val)
			k++;
		if (k < bt->nsnap)
			continue;
		for (uint32_t i = 0; i < bt->nobj; i++) {
			struct obj *o = bt->obj[i];
			esys2(SYS_munmap, o->base, o->size);
			o->base = 0;
			__atomic_store_n(&o->id, EBPFU_OBJ_FREE, __ATOMIC_RELEASE);
		}
		batches[b] = 0;
		esys2(SYS_munmap, bt, bt->bytes);
	}
}

/* mark_rings marks the perf rings that the entries of PERF_EVENT_ARRAY m name. */
static void mark_rings(struct ebpfu_map *m)
{
	if (m->type != EBPFU_MAP_PERF_EVENT_ARRAY)
		return;
	for (uint32_t idx = 0; idx < m->max_entries; idx++) {
		long ref = ebpfu_map_ref(m, idx);
		if (ref <= 0)
			continue;
		for (uint32_t i = 0;; i++) {
			struct obj *o = ebpfu_obj_at(i);
			if (!o)
				break;
			if (o->id == (uint32_t)ref && o->kind == EBPFU_OBJ_RING)
				o->mark = 1;
		}
	}
}

/* ebpfu_reclaim retires the objects that none of the n live programs uses (their code, maps,
 * and the rings their PERF_EVENT_ARRAYs name) and frees earlier batches whose grace period is
 * over. It runs at the end of a sync, under the sync lock. */
void ebpfu_reclaim(const struct prog *const *live, uint32_t n)
{
	release();
	if (__atomic_load_n(&overflow, __ATOMIC_ACQUIRE))
		return;
	int slot = -1;
	for (int b = 0; b < MAX_BATCHES && slot < 0; b++)
		if (!batches[b])
			slot = b;
	if (slot < 0)
		return; /* a later sync retires them */
	uint32_t count = 0;
	for (uint32_t i = 0;; i++) {
		struct obj *o = ebpfu_obj_at(i);
		if (!o)
			break;
		o->mark = 0;
		count++;
	}
	for (uint32_t k = 0; k < n; k++) {
		const struct prog *p = live[k];
		if (p->code)
			p->code->mark = 1;
		for (uint32_t j = 0; j < p->nmaps; j++) {
			struct ebpfu_map *m = (struct ebpfu_map *)p->maps[j];
			struct obj *o = (struct obj *)((uint8_t *)m - __builtin_offsetof(struct obj, map));
			o->mark = 1;
			mark_rings(m);
		}
	}
	uint32_t ncand = 0;
	for (uint32_t i = 0; i < count; i++) {
		struct obj *o = ebpfu_obj_at(i);
		uint32_t id = __atomic_load_n(&o->id, __ATOMIC_ACQUIRE);
		if (!o->mark && id < 0x80000000u && !o->retiring)
			ncand++;
	}
	if (!ncand)
		return;
	uint32_t nr = __atomic_load_n(&nrunners, __ATOMIC_ACQUIRE);
	if (nr > MAX_RUNNERS)
		nr = MAX_RUNNERS;
	uint64_t bytes = sizeof(struct batch) + 8 * (uint64_t)ncand + sizeof(struct snap) * (uint64_t)nr;
	bytes = (bytes + 4095) & ~4095ull;
	long mem = esys6(SYS_mmap, 0, (long)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem < 0 && mem > -4096)
		return;
	struct batch *bt = (struct batch *)mem;
	bt->bytes = bytes;
	bt->obj = (struct obj **)(bt + 1);
	bt->snap = (struct snap *)(bt->obj + ncand);
	for (uint32_t i = 0; i < count && bt->nobj < ncand; i++) {
		struct obj *o = ebpfu_obj_at(i);
		uint32_t id = __atomic_load_n(&o->id, __ATOMIC_ACQUIRE);
		if (!o->mark && id < 0x80000000u && !o->retiring) {
			__atomic_store_n(&o->retiring, 1, __ATOMIC_RELEASE);
			bt->obj[bt->nobj++] = o;
		}
	}
	/* every run that could have found these objects either shows its odd counter now, or
	 * starts after the barrier and finds them retiring (or not named at all) */
	if (!barrier()) {
		for (uint32_t i = 0; i < bt->nobj; i++)
			__atomic_store_n(&bt->obj[i]->retiring, 0, __ATOMIC_RELEASE);
		esys2(SYS_munmap, bt, bytes);
		return;
	}
	for (uint32_t k = 0; k < nr; k++) {
		if (!__atomic_load_n(&runners[k].tid, __ATOMIC_ACQUIRE))
			continue;
		uint32_t v = read_seq(runners[k].seq);
		if (v & 1) {
			bt->snap[bt->nsnap].seq = runners[k].seq;
			bt->snap[bt->nsnap].val = v;
			bt->nsnap++;
		}
	}
	batches[slot] = bt;
	release(); /* nothing runs: at once */
}
