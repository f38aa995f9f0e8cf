/* The helpers programs call in traced processes, indexed by helper number (the JIT calls
 * helpers[n] with r1-r5 and the block as a sixth argument). They follow the kernel's semantics
 * for a uprobe program; reads of user memory never fault (process_vm_readv on the process
 * itself), and nothing here changes errno or anything else the host sees.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include "agent.h"

#define EFAULT_ 14
#define EBUSY_ 16
#define EINVAL_ 22
#define ERANGE_ 34
#define ENOENT_ 2
#define ENOTSUPP_ 524

#define BLK struct ebpfu_ctx *blk
#define TS ((struct tstate *)blk)
#define UNUSED(x) (void)(x)

uint64_t ebpfu_real_return(struct tstate *t, uint64_t addr, uint32_t *pending);

/* ---- reading user memory without faulting ---- */

/* readmem copies n bytes at src to dst, or returns how many it could copy from the start. */
static uint64_t readmem(struct tstate *t, void *dst, uint64_t src, uint64_t n)
{
	if (n == 0)
		return 0;
	struct iovec l = {dst, n}, r = {(void *)src, n};
	ebpfu_tid(t);
	long got = esys6(SYS_process_vm_readv, t->pid, (long)&l, 1, (long)&r, 1, 0);
	if (got == (long)n)
		return n;
	if (got > 0)
		return (uint64_t)got;
	/* a range across an unmapped page: read up to the page boundary */
	uint64_t first = 4096 - (src & 4095);
	if (first >= n)
		return 0;
	r.iov_len = l.iov_len = first;
	got = esys6(SYS_process_vm_readv, t->pid, (long)&l, 1, (long)&r, 1, 0);
	return got > 0 ? (uint64_t)got : 0;
}

static uint64_t probe_read_user(uint64_t dst, uint64_t size, uint64_t src, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r4), UNUSED(r5);
	if (readmem(TS, (void *)dst, src, size) == size)
		return 0;
	ezero((void *)dst, size);
	return (uint64_t)-EFAULT_;
}

/* probe_read_user_str: copies the string at src up to size-1 bytes and a NUL, returns its length
 * with the NUL, or -EFAULT (dst zeroed) when its first byte cannot be read. */
static uint64_t probe_read_user_str(uint64_t dst, uint64_t size, uint64_t src, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r4), UNUSED(r5);
	char *d = (char *)dst;
	if (size == 0)
		return 0;
	uint64_t done = 0;
	while (done < size - 1) {
		uint64_t chunk = 4096 - ((src + done) & 4095);
		if (chunk > size - 1 - done)
			chunk = size - 1 - done;
		uint64_t got = readmem(TS, d + done, src + done, chunk);
		for (uint64_t i = 0; i < got; i++) {
			if (d[done + i] == 0)
				return done + i + 1;
		}
		done += got;
		if (got < chunk) {
			if (done == 0) {
				ezero(d, size);
				return (uint64_t)-EFAULT_;
			}
			break;
		}
	}
	d[done] = 0;
	return done + 1;
}

/* The kernel refuses user addresses to probe_read_kernel (copy_from_kernel_nofault_allowed):
 * -ERANGE with the buffer zeroed; kernel addresses are out of reach: -EFAULT. */
static uint64_t probe_read_kernel(uint64_t dst, uint64_t size, uint64_t src, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r4), UNUSED(r5), UNUSED(blk);
	ezero((void *)dst, size);
	return (uint64_t)(src < 0x00007ffffffff000ull + 4096 ? -ERANGE_ : -EFAULT_);
}

static uint64_t probe_read_kernel_str(uint64_t dst, uint64_t size, uint64_t src, uint64_t r4, uint64_t r5, BLK)
{
	return probe_read_kernel(dst, size, src, r4, r5, blk);
}

/* bpf_probe_read (4) and bpf_probe_read_str (45) read either space on x86: here, user memory. */

/* ---- maps ---- */

static uint64_t map_lookup_elem(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r3), UNUSED(r4), UNUSED(r5);
	return (uint64_t)ebpfu_map_lookup_elem((struct ebpfu_map *)map, (const void *)key, &TS->mt);
}

static uint64_t map_update_elem(uint64_t map, uint64_t key, uint64_t value, uint64_t flags, uint64_t r5, BLK)
{
	UNUSED(r5);
	return (uint64_t)ebpfu_map_update_elem((struct ebpfu_map *)map, (const void *)key, (const void *)value, flags,
					       &TS->mt);
}

static uint64_t map_delete_elem(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r3), UNUSED(r4), UNUSED(r5);
	return (uint64_t)ebpfu_map_delete_elem((struct ebpfu_map *)map, (const void *)key, &TS->mt);
}

/* ---- output ---- */

static struct ebpfu_map *resolve_ring(uint32_t ref, void *arg)
{
	UNUSED(arg);
	struct obj *o = ebpfu_obj_get(EBPFU_OBJ_RING, ref);
	return o && o->kind == EBPFU_OBJ_RING ? &o->map : 0;
}

#define PERF_RECORD_MISC_USER 2

static uint64_t perf_event_output(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t data, uint64_t size, BLK)
{
	UNUSED(ctx);
	return (uint64_t)ebpfu_perf_event_output((struct ebpfu_map *)map, flags, (const void *)data, size,
						 PERF_RECORD_MISC_USER, &TS->mt, resolve_ring, 0);
}

static uint64_t ringbuf_output(uint64_t map, uint64_t data, uint64_t size, uint64_t flags, uint64_t r5, BLK)
{
	UNUSED(r5);
	return (uint64_t)ebpfu_ringbuf_output((struct ebpfu_map *)map, (const void *)data, size, flags, &TS->mt);
}

static uint64_t ringbuf_reserve(uint64_t map, uint64_t size, uint64_t flags, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r4), UNUSED(r5);
	return (uint64_t)ebpfu_ringbuf_reserve((struct ebpfu_map *)map, size, flags, &TS->mt);
}

static struct ebpfu_map *ringbuf_of(struct tstate *t, uint64_t sample)
{
	const struct prog *p = t->prog;
	for (uint32_t i = 0; p && i < p->nmaps; i++) {
		struct ebpfu_map *m = (struct ebpfu_map *)p->maps[i];
		if (m->type == EBPFU_MAP_RINGBUF && sample >= (uint64_t)m->base && sample < (uint64_t)m->base + m->size)
			return m;
	}
	return 0;
}

static uint64_t ringbuf_submit(uint64_t sample, uint64_t flags, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r3), UNUSED(r4), UNUSED(r5);
	struct ebpfu_map *m = ringbuf_of(TS, sample);
	if (m)
		ebpfu_ringbuf_submit(m, (void *)sample, flags);
	return 0;
}

static uint64_t ringbuf_discard(uint64_t sample, uint64_t flags, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r3), UNUSED(r4), UNUSED(r5);
	struct ebpfu_map *m = ringbuf_of(TS, sample);
	if (m)
		ebpfu_ringbuf_discard(m, (void *)sample, flags);
	return 0;
}

static uint64_t ringbuf_query(uint64_t map, uint64_t flags, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return ebpfu_ringbuf_query((struct ebpfu_map *)map, flags);
}

static uint64_t trace_printk(uint64_t fmt, uint64_t size, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	/* the kernel writes to trace_pipe, which no tool here reads; the host's output stays its own */
	UNUSED(fmt), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return size;
}

/* ---- the current task ---- */

static uint64_t get_current_pid_tgid(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	uint32_t tid = ebpfu_tid(TS);
	return (uint64_t)TS->pid << 32 | tid;
}

static uint64_t get_current_uid_gid(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return (uint64_t)ebpfu_agent.gid << 32 | ebpfu_agent.uid;
}

#define PR_GET_NAME_ 16

static uint64_t get_current_comm(uint64_t buf, uint64_t size, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r3), UNUSED(r4), UNUSED(r5);
	struct tstate *t = TS;
	char *d = (char *)buf;
	if (size == 0)
		return (uint64_t)-EINVAL_;
	ebpfu_tid(t);
	if (t->comm_gen != ebpfu_agent.fork_gen + 1) {
		ezero(t->comm, sizeof t->comm);
		esys2(SYS_prctl, PR_GET_NAME_, t->comm);
		t->comm_gen = ebpfu_agent.fork_gen + 1;
	}
	uint64_t i = 0;
	for (; i + 1 < size && i < 15 && t->comm[i]; i++)
		d[i] = t->comm[i];
	for (; i < size; i++) /* strscpy_pad */
		d[i] = 0;
	return 0;
}

static uint64_t get_smp_processor_id(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	struct tstate *t = TS;
	if (t->lease)
		return t->lease - 1;
	return ebpfu_cpu(t);
}

static uint64_t get_current_task(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return 0;
}

/* ---- cgroup ---- */

#define CGROUP2_SUPER_MAGIC_ 0x63677270
#define O_RDONLY_CLOEXEC_ 02000000
#define AT_FDCWD_ (-100)

/* Process-wide cache of the cgroup id, for the fork generation + 1 it was read in. */
static uint64_t cgroup_id, cgroup_gen;

/* cgroup_at returns the inode of directory path under the cgroup2 mount mnt (the kernel's
 * cgroup id), or 0 when mnt is not a cgroup2 mount or path is not there. */
static uint64_t cgroup_at(const char *mnt, const char *path)
{
	char full[512];
	uint64_t n = 0;
	for (; mnt[n] && n < sizeof full - 1; n++)
		full[n] = mnt[n];
	uint64_t sfs[15]; /* struct statfs: f_type first */
	full[n] = 0;
	if (esys2(SYS_statfs, full, sfs) != 0 || (uint32_t)sfs[0] != CGROUP2_SUPER_MAGIC_)
		return 0;
	for (uint64_t i = 0; path[i] && n < sizeof full - 1; i++)
		full[n++] = path[i];
	full[n] = 0;
	uint64_t st[18]; /* struct stat: st_ino second */
	if (esys4(SYS_newfstatat, AT_FDCWD_, full, st, 0) != 0)
		return 0;
	return st[1];
}

/* read_cgroup_id finds the process's cgroup v2 (the "0::" line of /proc/self/cgroup) and
 * returns its id: the inode of its directory under a cgroup2 mount at /sys/fs/cgroup or
 * /sys/fs/cgroup/unified; 1 (the root cgroup's id) for "/" without such a mount; 0 when the
 * process is in no cgroup v2 hierarchy, as the kernel without one. */
static uint64_t read_cgroup_id(void)
{
	char buf[2048];
	long fd = esys3(SYS_openat, AT_FDCWD_, "/proc/self/cgroup", O_RDONLY_CLOEXEC_);
	if (fd < 0)
		return 0;
	long n = esys3(SYS_read, fd, buf, sizeof buf - 1);
	esys1(SYS_close, fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (char *l = buf; *l;) {
		char *e = l;
		while (*e && *e != '\n')
			e++;
		char end = *e;
		*e = 0;
		if (l[0] == '0' && l[1] == ':' && l[2] == ':') {
			const char *path = l + 3;
			uint64_t id = cgroup_at("/sys/fs/cgroup", path);
			if (!id)
				id = cgroup_at("/sys/fs/cgroup/unified", path);
			if (!id && path[0] == '/' && path[1] == 0)
				id = 1;
			return id;
		}
		if (!end)
			break;
		l = e + 1;
	}
	return 0;
}

static uint64_t get_current_cgroup_id(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	uint64_t gen = __atomic_load_n(&ebpfu_agent.fork_gen, __ATOMIC_RELAXED) + 1;
	if (__atomic_load_n(&cgroup_gen, __ATOMIC_ACQUIRE) != gen) {
		uint64_t id = read_cgroup_id();
		__atomic_store_n(&cgroup_id, id, __ATOMIC_RELAXED);
		__atomic_store_n(&cgroup_gen, gen, __ATOMIC_RELEASE);
		return id;
	}
	return __atomic_load_n(&cgroup_id, __ATOMIC_RELAXED);
}

/* ---- signals ---- */

#define SI_KERNEL_ 0x80

/* send_signal_to records sig for the process (thread: for the current thread only), to be
 * queued when the hit's programs have all run (ebpfu_send_signals): the kernel's
 * bpf_send_signal queues it at once, but it is delivered on the way back to user space, after
 * the probe's programs; queued here at once, it would be delivered by the helper's system call,
 * in the middle of the program. sig 0 checks only. At most four signals a hit (EBUSY after,
 * as the kernel's when its work item is busy). */
static uint64_t send_signal_to(uint64_t sig, int thread, struct tstate *t)
{
	if (sig >= 65)
		return (uint64_t)-EINVAL_;
	if (sig == 0)
		return 0;
	if (t->nsigs >= sizeof t->sigs / sizeof t->sigs[0])
		return (uint64_t)-EBUSY_;
	t->sigs[t->nsigs].sig = (uint32_t)sig;
	t->sigs[t->nsigs].thread = (uint32_t)thread;
	t->nsigs++;
	return 0;
}

/* ebpfu_send_signals queues the signals the hit's programs sent, as the kernel's
 * group_send_sig_info with SEND_SIG_PRIV does: si_code SI_KERNEL, no sender. */
void ebpfu_send_signals(struct tstate *t)
{
	uint32_t n = t->nsigs;
	t->nsigs = 0;
	uint32_t tid = ebpfu_tid(t);
	for (uint32_t i = 0; i < n; i++) {
		struct {
			int32_t signo, errno_, code, pad;
			uint8_t rest[112];
		} info;
		ezero(&info, sizeof info);
		info.signo = (int32_t)t->sigs[i].sig;
		info.code = SI_KERNEL_;
		if (t->sigs[i].thread)
			esys4(SYS_rt_tgsigqueueinfo, t->pid, tid, info.signo, &info);
		else
			esys3(SYS_rt_sigqueueinfo, t->pid, info.signo, &info);
	}
}

static uint64_t send_signal(uint64_t sig, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	return send_signal_to((uint32_t)sig, 0, TS);
}

static uint64_t send_signal_thread(uint64_t sig, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	return send_signal_to((uint32_t)sig, 1, TS);
}

static uint64_t zero_helper(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return 0;
}

static uint64_t get_prandom_u32(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	static __thread uint64_t s __attribute__((tls_model("initial-exec")));
	if (!s) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s = ((uint64_t)ts.tv_nsec << 20) ^ ebpfu_tid(TS) ^ 0x9e3779b97f4a7c15ull;
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return (uint32_t)(s >> 16);
}

/* ---- time ---- */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts); /* the vDSO; never fails for these clocks */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ktime_get_ns(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return clock_ns(CLOCK_MONOTONIC);
}

static uint64_t ktime_get_boot_ns(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return clock_ns(CLOCK_BOOTTIME);
}

static uint64_t ktime_get_coarse_ns(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return clock_ns(CLOCK_MONOTONIC_COARSE);
}

static uint64_t ktime_get_tai_ns(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return clock_ns(CLOCK_TAI);
}

static uint64_t jiffies64(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return clock_ns(CLOCK_MONOTONIC_COARSE) / 4000000ull; /* HZ=250 */
}

/* ---- the probe ---- */

static uint64_t get_attach_cookie(uint64_t ctx, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(ctx), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	return TS->prog ? TS->prog->cookie : 0;
}

static uint64_t get_func_ip(uint64_t ctx, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5);
	if (TS->ret_addr)
		return TS->ret_addr;
	return ((struct ebpfu_pt_regs *)ctx)->ip;
}

/* ---- stacks ---- */

#define MAX_STACK 127

/* walk fills ips with the user stack of the probe (innermost first) by frame pointers, as the
 * kernel's perf_callchain_user does: the probe point, the return address at [sp] when the probed
 * instruction is push %rbp or endbr64 (the frame is not built yet), then the return address of
 * each frame from bp on, trusting bp as the kernel does (no check of alignment or order: a
 * program built without frame pointers gives the same garbage frames), until a read fails or
 * max; original return addresses stand in place of the return trampoline. */
static uint32_t walk(struct tstate *t, uint64_t *ips, uint32_t max)
{
	struct ebpfu_pt_regs *r = t->regs;
	uint32_t n = 0, pending = 0;
	if (!r || max == 0)
		return 0;
	ips[n++] = r->ip;
	uint64_t bp = r->bp;
	if (!t->ret_addr && t->prog && t->prog->func_entry && n < max) {
		uint64_t ra;
		if (readmem(t, &ra, r->sp, 8) == 8)
			ips[n++] = ebpfu_real_return(t, ra, &pending);
	}
	while (n < max && bp <= 0x00007ffffffff000ull - 16) {
		uint64_t fr[2];
		if (readmem(t, fr, bp, 16) != 16)
			break;
		ips[n++] = ebpfu_real_return(t, fr[1], &pending);
		bp = fr[0];
	}
	return n;
}

static uint64_t get_stackid(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(ctx), UNUSED(r4), UNUSED(r5);
	uint64_t ips[MAX_STACK];
	uint32_t n = 0;
	if (flags & EBPFU_F_USER_STACK)
		n = walk(TS, ips, MAX_STACK);
	return (uint64_t)ebpfu_get_stackid((struct ebpfu_map *)map, ips, n, flags, &TS->mt);
}

#define BPF_F_USER_BUILD_ID (1ull << 11)

static uint64_t get_stack(uint64_t ctx, uint64_t buf, uint64_t size, uint64_t flags, uint64_t r5, BLK)
{
	UNUSED(ctx), UNUSED(r5);
	uint64_t skip = flags & EBPFU_F_SKIP_FIELD_MASK;
	if ((flags & ~(EBPFU_F_SKIP_FIELD_MASK | EBPFU_F_USER_STACK | BPF_F_USER_BUILD_ID)) ||
	    (!(flags & EBPFU_F_USER_STACK) && (flags & BPF_F_USER_BUILD_ID)) || (flags & BPF_F_USER_BUILD_ID) ||
	    size % 8) {
		ezero((void *)buf, size);
		return (uint64_t)-EINVAL_;
	}
	uint64_t ips[MAX_STACK];
	uint32_t n = 0;
	if (flags & EBPFU_F_USER_STACK)
		n = walk(TS, ips, MAX_STACK);
	if (n <= skip) {
		ezero((void *)buf, size);
		return (uint64_t)-EFAULT_;
	}
	uint64_t want = size / 8, have = n - skip;
	if (have > want)
		have = want;
	ecopy((void *)buf, ips + skip, have * 8);
	if (have * 8 < size)
		ezero((uint8_t *)buf + have * 8, size - have * 8);
	return have * 8;
}

/* unsupported answers helpers the agent lacks (the server refuses programs that call them). */
static uint64_t unsupported(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, BLK)
{
	UNUSED(r1), UNUSED(r2), UNUSED(r3), UNUSED(r4), UNUSED(r5), UNUSED(blk);
	return (uint64_t)-ENOTSUPP_;
}

void ebpfu_helpers_init(void)
{
	for (int i = 0; i < EBPFU_NHELPERS; i++)
		if (!ebpfu_helpers[i])
			ebpfu_helpers[i] = (const void *)unsupported;
}

#define H(n, f) [n] = (const void *)f

const void *ebpfu_helpers[EBPFU_NHELPERS] = {
	H(1, map_lookup_elem),
	H(2, map_update_elem),
	H(3, map_delete_elem),
	H(4, probe_read_user),
	H(5, ktime_get_ns),
	H(6, trace_printk),
	H(7, get_prandom_u32),
	H(8, get_smp_processor_id),
	H(14, get_current_pid_tgid),
	H(15, get_current_uid_gid),
	H(16, get_current_comm),
	H(25, perf_event_output),
	H(27, get_stackid),
	H(35, get_current_task),
	H(42, zero_helper), /* get_numa_node_id */
	H(45, probe_read_user_str),
	H(67, get_stack),
	H(80, get_current_cgroup_id),
	H(109, send_signal),
	H(117, send_signal_thread),
	H(112, probe_read_user),
	H(113, probe_read_kernel),
	H(114, probe_read_user_str),
	H(115, probe_read_kernel_str),
	H(118, jiffies64),
	H(125, ktime_get_boot_ns),
	H(130, ringbuf_output),
	H(131, ringbuf_reserve),
	H(132, ringbuf_submit),
	H(133, ringbuf_discard),
	H(134, ringbuf_query),
	H(160, ktime_get_coarse_ns),
	H(173, get_func_ip),
	H(174, get_attach_cookie),
	H(208, ktime_get_tai_ns),
};
