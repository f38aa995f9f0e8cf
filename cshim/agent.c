/* The agent's life in a traced process: the constructor (state directory, registration, the
 * attachments present at start-up, the doorbell), fork children, and the sync that brings the
 * process's patches in line with the attachments table (docs/probes.md).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

struct agent ebpfu_agent;

void ebpfu_stop_handler(void *uctx);
int ebpfu_handler_enter(void);
void ebpfu_handler_leave(int slot);
void ebpfu_patch_forget(void);

/* ---- small utilities ---- */

void ebpfu_log(const char *a, const char *b, long n)
{
	if (!ebpfu_agent.debug)
		return;
	char buf[512], *p = buf;
	const char *pre = "ebpfu agent: ";
	for (const char *s = pre; *s && p < buf + 400; s++)
		*p++ = *s;
	for (const char *s = a; s && *s && p < buf + 450; s++)
		*p++ = *s;
	for (const char *s = b; s && *s && p < buf + 490; s++)
		*p++ = *s;
	if (n >= 0) {
		char tmp[24];
		int k = 0;
		*p++ = ' ';
		do
			tmp[k++] = (char)('0' + n % 10);
		while (n /= 10);
		while (k)
			*p++ = tmp[--k];
	}
	*p++ = '\n';
	esys3(SYS_write, 2, buf, p - buf);
}

static char *put_str(char *p, char *end, const char *s)
{
	while (*s && p < end)
		*p++ = *s++;
	*p = 0;
	return p;
}

static char *put_u64(char *p, char *end, uint64_t v)
{
	char tmp[24];
	int k = 0;
	do
		tmp[k++] = (char)('0' + v % 10);
	while (v /= 10);
	while (k && p < end)
		*p++ = tmp[--k];
	*p = 0;
	return p;
}

uint32_t ebpfu_tid(struct tstate *t)
{
	if (t->fork_gen != ebpfu_agent.fork_gen + 1) {
		t->tid = (uint32_t)esys0(SYS_gettid);
		t->pid = (uint32_t)ebpfu_agent.pid;
		t->mt.owner = t->tid;
		t->mt.alive = 0;
		t->lease = 0;
		t->fork_gen = ebpfu_agent.fork_gen + 1;
	}
	return t->tid;
}

/* ---- /proc/self/maps ---- */

struct mapping {
	uint64_t lo, hi, off, ino;
	uint32_t major, minor;
	int prot;
	const char *path;
};

static uint64_t hexnum(const char **pp)
{
	const char *p = *pp;
	uint64_t v = 0;
	for (;; p++) {
		char c = *p;
		if (c >= '0' && c <= '9')
			v = v * 16 + (uint64_t)(c - '0');
		else if ((c | 32) >= 'a' && (c | 32) <= 'f')
			v = v * 16 + (uint64_t)((c | 32) - 'a' + 10);
		else
			break;
	}
	*pp = p;
	return v;
}

static uint64_t decnum(const char **pp)
{
	const char *p = *pp;
	uint64_t v = 0;
	while (*p >= '0' && *p <= '9')
		v = v * 10 + (uint64_t)(*p++ - '0');
	*pp = p;
	return v;
}

static int parse_line(const char *p, struct mapping *m)
{
	m->lo = hexnum(&p);
	if (*p++ != '-')
		return -1;
	m->hi = hexnum(&p);
	if (*p++ != ' ')
		return -1;
	m->prot = (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) | (p[2] == 'x' ? PROT_EXEC : 0);
	p += 5;
	m->off = hexnum(&p);
	p++;
	m->major = (uint32_t)hexnum(&p);
	p++;
	m->minor = (uint32_t)hexnum(&p);
	p++;
	m->ino = decnum(&p);
	while (*p == ' ')
		p++;
	m->path = p;
	return 0;
}

/* A sync reads /proc/self/maps once, into memory it maps for the time of the sync, however many
 * attachments it applies. */
static char *maps_text;
static uint64_t maps_len, maps_cap;

static void maps_release(void)
{
	if (maps_text)
		esys2(SYS_munmap, maps_text, maps_cap);
	maps_text = 0;
	maps_len = maps_cap = 0;
}

/* maps_load reads the whole of /proc/self/maps into maps_text (0 on success). */
static int maps_load(void)
{
	maps_release();
	long f = esys3(SYS_open, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return -1;
	uint64_t cap = 65536, len = 0;
	long m = esys6(SYS_mmap, 0, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (;;) {
		if (m < 0 && m > -4096) {
			esys1(SYS_close, f);
			return -1;
		}
		long n = esys3(SYS_read, f, (char *)m + len, cap - len - 1);
		if (n < 0) {
			esys2(SYS_munmap, m, cap);
			esys1(SYS_close, f);
			return -1;
		}
		if (n == 0)
			break;
		len += (uint64_t)n;
		if (cap - len - 1 < 4096) {
			long bigger = esys4(SYS_mremap, m, cap, cap * 2, MREMAP_MAYMOVE);
			if (bigger < 0 && bigger > -4096)
				esys2(SYS_munmap, m, cap);
			else
				cap *= 2;
			m = bigger;
		}
	}
	esys1(SYS_close, f);
	maps_text = (char *)m;
	maps_len = len;
	maps_cap = cap;
	maps_text[len] = 0;
	return 0;
}

/* maps_each calls fn for each line of /proc/self/maps until it returns non-zero: from the
 * sync's copy when there is one. */
static int maps_each(int (*fn)(const struct mapping *, void *), void *arg)
{
	if (maps_text) {
		int r = 0;
		char *line = maps_text, *end = maps_text + maps_len;
		while (!r && line < end) {
			char *nl = line;
			while (nl < end && *nl != '\n')
				nl++;
			char save = *nl;
			*nl = 0;
			struct mapping m;
			if (parse_line(line, &m) == 0)
				r = fn(&m, arg);
			*nl = save;
			line = nl + 1;
		}
		return r;
	}
	static char buf[8192];
	long f = esys3(SYS_open, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return -1;
	long have = 0, n;
	int r = 0;
	while (!r && (n = esys3(SYS_read, f, buf + have, sizeof buf - 1 - have)) > 0) {
		have += n;
		char *line = buf;
		for (;;) {
			char *nl = line;
			while (nl < buf + have && *nl != '\n')
				nl++;
			if (nl == buf + have)
				break;
			*nl = 0;
			struct mapping m;
			if (parse_line(line, &m) == 0 && (r = fn(&m, arg)) != 0)
				break;
			line = nl + 1;
		}
		have = (buf + have) - line;
		for (long i = 0; i < have; i++)
			buf[i] = line[i];
		if (have == (long)sizeof buf - 1) /* a line longer than the buffer: drop it */
			have = 0;
	}
	esys1(SYS_close, f);
	return r;
}

struct find_prot {
	uint64_t addr;
	int prot;
};

static int find_prot(const struct mapping *m, void *arg)
{
	struct find_prot *fp = arg;
	if (fp->addr >= m->lo && fp->addr < m->hi) {
		fp->prot = m->prot;
		return 1;
	}
	return 0;
}

/* ebpfu_prot returns the protection of the mapping that holds addr. */
int ebpfu_prot(uint64_t addr)
{
	struct find_prot fp = {addr, PROT_READ | PROT_EXEC};
	maps_each(find_prot, &fp);
	return fp.prot;
}

struct find_mod {
	uint32_t major, minor;
	uint64_t ino, off;
	const char *path;
	uint64_t addr;
};

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* find_sem finds a reference counter (a USDT semaphore) as the kernel's valid_ref_ctr_vma does:
 * in a private writable mapping of the file. */
static int find_sem(const struct mapping *m, void *arg)
{
	struct find_mod *fm = arg;
	if ((m->prot & PROT_WRITE) != PROT_WRITE || m->ino != fm->ino || m->major != fm->major ||
	    m->minor != fm->minor)
		return 0;
	uint64_t a = m->lo + (fm->off - m->off);
	if (fm->off < m->off || a < m->lo || a + 2 > m->hi)
		return 0;
	fm->addr = a;
	return 1;
}

static int find_mod(const struct mapping *m, void *arg)
{
	struct find_mod *fm = arg;
	if (!(m->prot & PROT_EXEC) || m->ino == 0)
		return 0;
	int same = fm->ino ? (m->ino == fm->ino && m->major == fm->major && m->minor == fm->minor)
			   : streq(m->path, fm->path);
	if (!same || fm->off < m->off || fm->off >= m->off + (m->hi - m->lo))
		return 0;
	fm->addr = m->lo + (fm->off - m->off);
	return 1;
}

/* ---- the state directory and the table ---- */

static uint32_t outer_uid(void)
{
	char buf[256];
	uint32_t uid = ebpfu_agent.uid;
	long f = esys3(SYS_open, "/proc/self/uid_map", O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return uid;
	long n = esys3(SYS_read, f, buf, sizeof buf - 1);
	esys1(SYS_close, f);
	if (n <= 0)
		return uid;
	buf[n] = 0;
	const char *p = buf;
	while (*p) {
		while (*p == ' ')
			p++;
		uint64_t first = decnum(&p);
		while (*p == ' ')
			p++;
		uint64_t lower = decnum(&p);
		while (*p == ' ')
			p++;
		uint64_t count = decnum(&p);
		if (uid >= first && uid - first < count)
			return (uint32_t)(lower + (uid - first));
		while (*p && *p != '\n')
			p++;
		if (*p)
			p++;
	}
	return uid;
}

/* private_dir makes sure path is a directory of this user that no one else may enter. */
static int private_dir(const char *path, int create)
{
	struct stat st;
	if (esys2(SYS_lstat, path, &st) < 0) {
		if (!create)
			return -1;
		esys2(SYS_mkdir, path, 0700);
		if (esys2(SYS_lstat, path, &st) < 0)
			return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != ebpfu_agent.uid || (st.st_mode & 077))
		return -1;
	return 0;
}

static int state_dir(void)
{
	char *d = ebpfu_agent.dir, *end = d + sizeof ebpfu_agent.dir - 32;
	const char *env = getenv("EBPFU_STATE_DIR");
	const char *x = getenv("XDG_RUNTIME_DIR");
	if (env && *env) {
		put_str(d, end, env);
	} else if (x && *x) {
		put_str(put_str(d, end, x), end, "/ebpfu");
	} else {
		put_u64(put_str(d, end, "/dev/shm/ebpfu-"), end, outer_uid());
	}
	return private_dir(d, 1);
}

static void path_in(char *out, uint64_t size, const char *a, const char *b)
{
	char *end = out + size - 1;
	char *p = put_str(out, end, ebpfu_agent.dir);
	p = put_str(p, end, "/");
	p = put_str(p, end, a);
	if (b) {
		p = put_str(p, end, "/");
		put_str(p, end, b);
	}
}

/* ebpfu_table_read reads n bytes at offset off of the table file: the parts agents do not map
 * (slots, objects), so that they cost no resident memory. */
int ebpfu_table_read(uint64_t off, void *buf, uint64_t n)
{
	long f = ebpfu_tls.table_fd - 1; /* open while this thread syncs */
	if (f >= 0)
		return esys4(SYS_pread64, f, buf, n, off) == (long)n ? 0 : -1;
	char path[320];
	path_in(path, sizeof path, EBPFU_ATT_FILE, 0);
	f = esys3(SYS_open, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (f < 0)
		return -1;
	long got = esys4(SYS_pread64, f, buf, n, off);
	esys1(SYS_close, f);
	return got == (long)n ? 0 : -1;
}

/* table_fd_open keeps the table open on this thread for the time of a sync. */
static void table_fd_open(void)
{
	char path[320];
	path_in(path, sizeof path, EBPFU_ATT_FILE, 0);
	long f = esys3(SYS_open, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	ebpfu_tls.table_fd = f >= 0 ? f + 1 : 0;
}

static void table_fd_close(void)
{
	if (ebpfu_tls.table_fd > 0)
		esys1(SYS_close, ebpfu_tls.table_fd - 1);
	ebpfu_tls.table_fd = 0;
}

static void open_table(void)
{
	char path[320];
	struct stat st;
	if (ebpfu_agent.table || !ebpfu_agent.dir[0])
		return;
	path_in(path, sizeof path, EBPFU_ATT_FILE, 0);
	long f = esys3(SYS_open, path, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
	if (f < 0)
		return;
	if (esys2(SYS_fstat, f, &st) < 0 || st.st_uid != ebpfu_agent.uid || st.st_size < EBPFU_ATT_FILE_SIZE) {
		esys1(SYS_close, f);
		return;
	}
	long m = esys6(SYS_mmap, 0, EBPFU_ATT_MAPPED, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	esys1(SYS_close, f);
	if (m < 0 && m > -4096)
		return;
	uint8_t *t = (uint8_t *)m;
	if (ld64(t, EBPFU_ATT_HDR_MAGIC) != EBPFU_ATT_MAGIC || ld32(t, EBPFU_ATT_HDR_VERSION) != EBPFU_ATT_VERSION ||
	    ld32(t, EBPFU_ATT_HDR_NSLOTS) > EBPFU_ATT_NSLOTS || ld32(t, EBPFU_ATT_HDR_NCPU) > EBPFU_ATT_MAX_CPUS) {
		esys2(SYS_munmap, m, EBPFU_ATT_MAPPED);
		return;
	}
	ebpfu_agent.ncpu = ld32(t, EBPFU_ATT_HDR_NCPU);
	ebpfu_agent.budget = ld64(t, EBPFU_ATT_HDR_BUDGET);
	__atomic_store_n(&ebpfu_agent.table, t, __ATOMIC_RELEASE);
}

static void register_self(void)
{
	char path[320], name[24];
	if (!ebpfu_agent.dir[0])
		return;
	path_in(path, sizeof path, EBPFU_PROCS_DIR, 0);
	if (private_dir(path, 1) < 0)
		return;
	put_u64(name, name + sizeof name - 1, (uint64_t)ebpfu_agent.pid);
	path_in(path, sizeof path, EBPFU_PROCS_DIR, name);
	long f = esys3(SYS_open, path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (f >= 0)
		esys1(SYS_close, f);
}

static void unregister_self(void)
{
	char path[320], name[24];
	if (!ebpfu_agent.dir[0] || ebpfu_agent.pid != (int32_t)esys0(SYS_getpid))
		return;
	put_u64(name, name + sizeof name - 1, (uint64_t)ebpfu_agent.pid);
	path_in(path, sizeof path, EBPFU_PROCS_DIR, name);
	esys1(SYS_unlink, path);
}

void ebpfu_slot_error(uint32_t i, const char *why)
{
	uint8_t *s = ebpfu_agent.table + EBPFU_ATT_STATUS + (uint64_t)i * EBPFU_ATT_STATUS_SIZE;
	__atomic_add_fetch((uint32_t *)(s + EBPFU_STATUS_NERR), 1, __ATOMIC_RELAXED);
	__atomic_store_n((uint32_t *)(s + EBPFU_STATUS_ERR_PID), (uint32_t)ebpfu_agent.pid, __ATOMIC_RELAXED);
	char *e = (char *)s + EBPFU_STATUS_ERR;
	uint64_t k = 0;
	for (; why[k] && k < 51; k++)
		e[k] = why[k];
	e[k] = 0;
	ebpfu_log("slot error: ", why, i);
}

/* ---- the sync ---- */

struct applied {
	uint64_t id;
	struct site *site;
	struct prog *prog;
	uint32_t ret;
	struct find_mod sem; /* the USDT semaphore incremented for it (sem.addr), if any */
};

static struct applied applied[EBPFU_ATT_NSLOTS];
static uint64_t failed[EBPFU_ATT_NSLOTS]; /* the id that failed in this process */
static uint64_t applied_gen;
static uint32_t rescan; /* the mappings changed (dlopen): look again at attachments not applied */

/* slot_prog builds the process's record of slot i's program. */
static struct prog *slot_prog(uint32_t i, const uint8_t *s, const char **why)
{
	uint32_t nmaps = ld32(s, EBPFU_SLOT_NMAPS);
	if (nmaps > EBPFU_MAX_MAPS) {
		*why = "malformed slot";
		return 0;
	}
	struct obj *code = ebpfu_obj_get(EBPFU_OBJ_CODE, ld32(s, EBPFU_SLOT_CODE_OBJ));
	uint32_t entry = ld32(s, EBPFU_SLOT_CODE_ENTRY);
	if (!code || code->kind != EBPFU_OBJ_CODE || entry >= code->size) {
		*why = "cannot map the program's code";
		return 0;
	}
	struct prog *p = ebpfu_bump(sizeof *p + 16 * (uint64_t)(nmaps + 1));
	if (!p) {
		*why = "out of memory";
		return 0;
	}
	ezero(p, sizeof *p);
	p->maps = (uint64_t *)(p + 1);
	p->map_values = p->maps + nmaps + 1;
	p->entry = (ebpfu_entry_fn)(code->base + entry);
	p->code = code;
	p->attach_id = ld64(s, EBPFU_SLOT_ID);
	p->cookie = ld64(s, EBPFU_SLOT_COOKIE);
	p->slot = i;
	p->nmaps = nmaps;
	/* func_entry: the probed instruction is push %rbp or endbr64, where the kernel's
	 * perf_callchain_user takes the caller's address from [sp] (is_uprobe_at_func_entry),
	 * whatever the symbol says. */
	const uint8_t *o = s + EBPFU_SLOT_ORIG;
	p->func_entry = !(ld32(s, EBPFU_SLOT_FLAGS) & EBPFU_SLOT_F_RETPROBE) &&
			(o[0] == 0x55 || (o[0] == 0xf3 && o[1] == 0x0f && o[2] == 0x1e && o[3] == 0xfa));
	for (uint32_t j = 0; j < nmaps; j++) {
		struct obj *o = ebpfu_obj_get(EBPFU_OBJ_MAP, ld32(s, EBPFU_SLOT_MAP_IDS + 4 * j));
		if (!o || o->kind != EBPFU_OBJ_MAP) {
			*why = "cannot map one of the program's maps";
			return 0;
		}
		struct ebpfu_map *m = &o->map;
		p->maps[j] = (uint64_t)m;
		if (m->type == EBPFU_MAP_ARRAY)
			p->map_values[j] = (uint64_t)(m->base + m->data_off);
		if (m->type == EBPFU_MAP_PERCPU_ARRAY || m->type == EBPFU_MAP_PERCPU_HASH ||
		    m->type == EBPFU_MAP_LRU_PERCPU_HASH || m->type == EBPFU_MAP_PERF_EVENT_ARRAY)
			p->needs_lease = 1;
		if (p->nregions < EBPFU_MAX_REGIONS - 1 && m->type != EBPFU_MAP_PERF_EVENT_ARRAY &&
		    m->type != EBPFU_MAP_PROG_ARRAY) {
			struct ebpfu_region *r = &p->regions[p->nregions++];
			r->start = (uint64_t)(m->base + m->data_off);
			r->end = r->start + m->data_size;
			r->writable = 1;
		}
	}
	return p;
}

static void attach_slot(uint32_t i, const uint8_t *s, uint64_t id)
{
	const char *why = 0;
	uint32_t only = ld32(s, EBPFU_SLOT_PID);
	if (only && only != (uint32_t)ebpfu_agent.pid)
		return;
	struct find_mod fm = {
		.major = ld32(s, EBPFU_SLOT_DEV_MAJOR),
		.minor = ld32(s, EBPFU_SLOT_DEV_MINOR),
		.ino = ld64(s, EBPFU_SLOT_INO),
		.off = ld64(s, EBPFU_SLOT_OFFSET),
		.path = (const char *)s + EBPFU_SLOT_PATH,
	};
	if (!maps_text)
		maps_load();
	if (maps_each(find_mod, &fm) <= 0)
		return; /* the file is not mapped here (yet) */
	struct prog *p = slot_prog(i, s, &why);
	struct site *site = 0;
	if (p) {
		site = ebpfu_site_find(fm.addr);
		if (site) {
			uint32_t disp = ld32(s, EBPFU_SLOT_DISP_LEN);
			for (uint32_t k = 0; k < 5 && k < disp; k++)
				if (site->orig[k] != s[EBPFU_SLOT_ORIG + k])
					why = "the code at the probe point differs from the file's";
			if (site->int3 != ((ld32(s, EBPFU_SLOT_FLAGS) & EBPFU_SLOT_F_INT3) != 0))
				why = "the probe point is patched with a jump and int3 at once";
		} else {
			site = ebpfu_site_new(fm.addr, s, &why);
		}
	}
	if (why || !site) {
		failed[i] = id;
		ebpfu_slot_error(i, why ? why : "cannot attach");
		return;
	}
	applied[i].id = id;
	applied[i].site = site;
	applied[i].prog = p;
	applied[i].ret = (ld32(s, EBPFU_SLOT_FLAGS) & EBPFU_SLOT_F_RETPROBE) != 0;
	applied[i].sem.addr = 0;
	uint64_t ref = ld64(s, EBPFU_SLOT_REF_CTR);
	if (ref && fm.ino) {
		/* the probed program tests its USDT semaphore before it reaches the probe point */
		struct find_mod sem = {.major = fm.major, .minor = fm.minor, .ino = fm.ino, .off = ref};
		if (maps_each(find_sem, &sem) > 0) {
			__atomic_add_fetch((uint16_t *)sem.addr, 1, __ATOMIC_RELAXED);
			applied[i].sem = sem;
		}
	}
	uint8_t *st = ebpfu_agent.table + EBPFU_ATT_STATUS + (uint64_t)i * EBPFU_ATT_STATUS_SIZE;
	__atomic_add_fetch((uint32_t *)(st + EBPFU_STATUS_NAPPLIED), 1, __ATOMIC_RELAXED);
}

/* publish gives every site the lists of its applied programs, newest attachment first. */
static void publish(void)
{
	for (struct site *s = 0; (s = ebpfu_site_next(s)) != 0;) {
		uint32_t ne = 0, nr = 0;
		for (uint32_t i = 0; i < EBPFU_ATT_NSLOTS; i++) {
			if (applied[i].id && applied[i].site == s) {
				if (applied[i].ret)
					nr++;
				else
					ne++;
			}
		}
		struct proglist *el = 0, *rl = 0;
		if (ne)
			el = ebpfu_bump(sizeof *el + 8 * (uint64_t)ne);
		if (nr)
			rl = ebpfu_bump(sizeof *rl + 8 * (uint64_t)nr);
		if ((ne && !el) || (nr && !rl))
			continue;
		if (el)
			el->n = 0;
		if (rl)
			rl->n = 0;
		/* newest attachment first (ids only grow): the kernel adds a uprobe's consumers at
		 * the head of its list and runs them in list order */
		for (uint32_t i = 0; i < EBPFU_ATT_NSLOTS; i++) {
			if (applied[i].id && applied[i].site == s) {
				struct proglist *l = applied[i].ret ? rl : el;
				uint32_t j = l->n++;
				for (; j > 0 && l->p[j - 1]->attach_id < applied[i].id; j--)
					l->p[j] = l->p[j - 1];
				l->p[j] = applied[i].prog;
			}
		}
		__atomic_store_n(&s->entry, el, __ATOMIC_RELEASE);
		__atomic_store_n(&s->ret, rl, __ATOMIC_RELEASE);
		s->want = (ne + nr) != 0;
	}
}

/* release_sem decrements the USDT semaphore an attachment incremented, if the file is still
 * mapped there (a dlclose may have unmapped it). */
static void release_sem(struct find_mod *sem)
{
	if (!sem->addr)
		return;
	uint64_t at = sem->addr;
	if (!maps_text)
		maps_load();
	if (maps_each(find_sem, sem) > 0 && sem->addr == at)
		__atomic_sub_fetch((uint16_t *)at, 1, __ATOMIC_RELAXED);
	sem->addr = 0;
}

static void sync_once(void *uctx)
{
	open_table();
	uint8_t *t = ebpfu_agent.table;
	if (!t)
		return;
	uint64_t gen = ld64(t, EBPFU_ATT_HDR_GEN);
	if (!__atomic_exchange_n(&rescan, 0, __ATOMIC_ACQ_REL) && gen == applied_gen)
		return;
	uint32_t nslots = ld32(t, EBPFU_ATT_HDR_NSLOTS);
	int changed = 0;
	static uint8_t s[EBPFU_ATT_SLOT_SIZE] __attribute__((aligned(8)));
	table_fd_open();
	for (uint32_t i = 0; i < nslots; i++) {
		uint64_t id = ld64(t, EBPFU_ATT_DIR + 8 * (uint64_t)i);
		if (id == applied[i].id || (id && failed[i] == id))
			continue;
		if (applied[i].id) {
			applied[i].id = 0;
			changed = 1;
			release_sem(&applied[i].sem);
		}
		if (!id)
			continue;
		/* a slot is written before the directory names it; read it whole, and again its
		 * sequence: odd or changed means it was being rewritten */
		uint64_t off = EBPFU_ATT_SLOTS + (uint64_t)i * EBPFU_ATT_SLOT_SIZE;
		uint32_t seq2 = 1;
		if (ebpfu_table_read(off, s, sizeof s) < 0 ||
		    ebpfu_table_read(off + EBPFU_SLOT_SEQ, &seq2, 4) < 0)
			continue;
		uint32_t seq = ld32(s, EBPFU_SLOT_SEQ);
		if ((seq & 1) || seq != seq2 || ld32(s, EBPFU_SLOT_STATE) != 1 || ld64(s, EBPFU_SLOT_ID) != id)
			continue;
		attach_slot(i, s, id);
		changed |= applied[i].id == id;
	}
	table_fd_close();
	maps_release(); /* patching maps trampolines and changes protections */
	if (changed) {
		publish();
		int missing = ebpfu_patch_apply(uctx);
		if (missing)
			ebpfu_log("threads that could not be stopped while patching:", 0, missing);
	}
	/* the objects of programs no longer applied are unmapped once no run uses them */
	static const struct prog *live[EBPFU_ATT_NSLOTS];
	uint32_t n = 0;
	for (uint32_t i = 0; i < EBPFU_ATT_NSLOTS; i++)
		if (applied[i].id)
			live[n++] = applied[i].prog;
	ebpfu_reclaim(live, n);
	applied_gen = gen;
}

static uint32_t sync_lock, sync_pending;

/* ack writes the generation this process applied into its procs file, for the server's Ring. */
static void ack(void)
{
	char path[320], name[24];
	if (!ebpfu_agent.table)
		return;
	put_u64(name, name + sizeof name - 1, (uint64_t)ebpfu_agent.pid);
	path_in(path, sizeof path, EBPFU_PROCS_DIR, name);
	long f = esys3(SYS_open, path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0);
	if (f < 0)
		return;
	esys4(SYS_pwrite64, f, &applied_gen, 8, 0);
	esys1(SYS_close, f);
}

/* ebpfu_sync applies the table to this process. Only one thread syncs at a time; a doorbell
 * that finds a sync in progress leaves it to that thread. */
void ebpfu_sync(void *uctx)
{
	for (;;) {
		uint32_t zero = 0;
		__atomic_store_n(&sync_pending, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_compare_exchange_n(&sync_lock, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return;
		while (__atomic_exchange_n(&sync_pending, 0, __ATOMIC_SEQ_CST))
			sync_once(uctx);
		ack();
		__atomic_store_n(&sync_lock, 0, __ATOMIC_RELEASE);
		if (!__atomic_load_n(&sync_pending, __ATOMIC_SEQ_CST))
			return;
	}
}

/* ---- the doorbell, SIGTRAP, and the host's handlers of the same signals ---- */

static struct sigaction host_act; /* what the host set for the doorbell signal */
static struct sigaction host_trap; /* what the host set for SIGTRAP */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static int installed, trap_installed;

/* chain passes a signal that is not the agent's to what the host set for it (ha). */
static void chain(int sig, siginfo_t *si, void *uctx, struct sigaction *ha)
{
	void (*h)(int) = ha->sa_handler;
	/* the kernel forces a trap the thread raised itself (si_code > 0: not sent by a process)
	 * to its default action when the host ignores it */
	if (h == SIG_IGN && !(sig == SIGTRAP && si->si_code > 0))
		return;
	if (h == SIG_IGN || h == SIG_DFL) { /* what the signal would have done: terminate */
		struct sigaction dfl;
		ezero(&dfl, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		real_sigaction(sig, &dfl, 0);
		uint64_t set = 1ull << (sig - 1);
		esys4(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, 0, 8);
		esys3(SYS_tgkill, esys0(SYS_getpid), esys0(SYS_gettid), sig);
		return;
	}
	void (*sa)(int, siginfo_t *, void *) = ha->sa_sigaction;
	int info = (ha->sa_flags & SA_SIGINFO) != 0;
	if (ha->sa_flags & SA_RESETHAND) { /* one delivery, then the default action */
		ha->sa_handler = SIG_DFL;
		ha->sa_flags &= ~SA_SIGINFO;
	}
	if (info)
		sa(sig, si, uctx);
	else
		h(sig);
}

static void doorbell(int sig, siginfo_t *si, void *uctx)
{
	if (si->si_code == SI_QUEUE && si->si_value.sival_int == 0x73746f70 && si->si_pid == ebpfu_agent.pid) {
		int slot = ebpfu_handler_enter();
		ebpfu_stop_handler(uctx);
		ebpfu_handler_leave(slot);
		return;
	}
	if (si->si_code == SI_QUEUE && si->si_value.sival_int == EBPFU_DOORBELL_VALUE) {
		int slot = ebpfu_handler_enter();
		ebpfu_sync(uctx);
		ebpfu_handler_leave(slot);
		return;
	}
	chain(sig, si, uctx, &host_act);
}

/* trap answers SIGTRAP: the int3 of a probe point patched with one (ebpfu_trap), or a trap of
 * the host's own (its int3, a debugger's) passed to the host's handler or default action. */
static void trap(int sig, siginfo_t *si, void *uctx)
{
	if (si->si_code == SI_KERNEL && uctx && ebpfu_trap(uctx))
		return;
	chain(sig, si, uctx, &host_trap);
}

/* sigaction and signal keep the doorbell and the SIGTRAP handler installed when the host sets a
 * handler for their signals: the host's handler is recorded and receives the signals that are
 * not the agent's. */
__attribute__((visibility("default"))) int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (!real_sigaction)
		real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
	struct sigaction *host, copy;
	if (sig == EBPFU_DOORBELL_SIGNAL && installed) {
		host = &host_act;
	} else if (sig == SIGTRAP && trap_installed) {
		host = &host_trap;
	} else {
		if (act && trap_installed && sigismember(&act->sa_mask, SIGTRAP)) {
			copy = *act; /* a handler that blocks SIGTRAP could not reach an int3 point */
			sigdelset(&copy.sa_mask, SIGTRAP);
			act = &copy;
		}
		return real_sigaction(sig, act, old);
	}
	if (old)
		*old = *host;
	if (act)
		*host = *act;
	return 0;
}

__attribute__((visibility("default"))) sighandler_t signal(int sig, sighandler_t h)
{
	static sighandler_t (*real_signal)(int, sighandler_t);
	if ((sig != EBPFU_DOORBELL_SIGNAL || !installed) && (sig != SIGTRAP || !trap_installed)) {
		if (!real_signal)
			real_signal = (sighandler_t(*)(int, sighandler_t))dlsym(RTLD_NEXT, "signal");
		return real_signal(sig, h);
	}
	struct sigaction act, old;
	ezero(&act, sizeof act);
	act.sa_handler = h;
	act.sa_flags = SA_RESTART;
	sigaction(sig, &act, &old);
	return old.sa_handler;
}

static void install_doorbell(void)
{
	real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
	if (!real_sigaction)
		return;
	struct sigaction act;
	ezero(&act, sizeof act);
	act.sa_sigaction = doorbell;
	act.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigfillset(&act.sa_mask);
	sigdelset(&act.sa_mask, SIGTRAP); /* a blocked trap would kill: see install_trap */
	if (real_sigaction(EBPFU_DOORBELL_SIGNAL, &act, &host_act) == 0)
		installed = 1;
}

/* The kernel forces a trap that a thread blocking SIGTRAP raises to the default action, which
 * terminates: a thread that blocked it (as many do with a full set) would die at the first int3
 * point it reaches. The agent keeps SIGTRAP out of the sets the host blocks through libc. */
static int (*real_pthread_sigmask)(int, const sigset_t *, sigset_t *);
static int (*real_sigprocmask)(int, const sigset_t *, sigset_t *);

static const sigset_t *trap_unblocked(int how, const sigset_t *set, sigset_t *copy)
{
	if (!trap_installed || how == SIG_UNBLOCK || !set || !sigismember(set, SIGTRAP))
		return set;
	*copy = *set;
	sigdelset(copy, SIGTRAP);
	return copy;
}

__attribute__((visibility("default"))) int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	if (!real_pthread_sigmask)
		real_pthread_sigmask = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "pthread_sigmask");
	sigset_t copy;
	return real_pthread_sigmask(how, trap_unblocked(how, set, &copy), old);
}

__attribute__((visibility("default"))) int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	if (!real_sigprocmask)
		real_sigprocmask = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "sigprocmask");
	sigset_t copy;
	return real_sigprocmask(how, trap_unblocked(how, set, &copy), old);
}

/* install_trap installs the SIGTRAP handler that answers probe points patched with int3. The
 * kernel forces a trap the thread cannot receive (SIGTRAP blocked) to its default action, which
 * terminates, so the handler blocks nothing and runs with SA_NODEFER: a probe hit in a handler
 * of the host's that it calls is answered too. It runs on the thread's own stack, as a jump's
 * hit does, not on an alternate stack the host may have made small. */
static void install_trap(void)
{
	struct sigaction act;
	ezero(&act, sizeof act);
	act.sa_sigaction = trap;
	act.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
	real_pthread_sigmask = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "pthread_sigmask");
	real_sigprocmask = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "sigprocmask");
	if (real_pthread_sigmask && real_sigprocmask && real_sigaction(SIGTRAP, &act, &host_trap) == 0)
		trap_installed = 1;
}

/* ---- exec: the doorbell must not kill the next image ----
 *
 * A registered process that execs keeps its pid and its registration, but exec resets the
 * doorbell's handler to the default action, which terminates: a server ringing between the exec
 * and the new image's agent installing its handler would kill it. Ignored signals stay ignored
 * across exec, so the agent ignores the doorbell just before it; the new image's agent installs
 * its handler and syncs in its constructor, and an image without the agent ignores the signal.
 * posix_spawn and vfork children never registered, so they need nothing. */

static int ignore_doorbell(struct sigaction *saved)
{
	struct sigaction ign;
	if (!installed)
		return 0;
	ezero(&ign, sizeof ign);
	ign.sa_handler = SIG_IGN;
	return real_sigaction(EBPFU_DOORBELL_SIGNAL, &ign, saved) == 0;
}

static void restore_doorbell(int saved_ok, const struct sigaction *saved)
{
	if (!saved_ok)
		return;
	real_sigaction(EBPFU_DOORBELL_SIGNAL, saved, 0);
	/* a ring may have come while it was ignored; not in a vfork child, whose memory is the
	 * parent's */
	if ((int32_t)esys0(SYS_getpid) == ebpfu_agent.pid)
		ebpfu_sync(0);
}

#define EXPORT __attribute__((visibility("default")))
#define REAL(name)                                                                                   \
	static __typeof__(name) *real_##name;                                                        \
	if (!real_##name)                                                                            \
	real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	REAL(execve);
	struct sigaction saved;
	int ok = ignore_doorbell(&saved);
	int r = real_execve(path, argv, envp);
	restore_doorbell(ok, &saved);
	return r;
}

EXPORT int execv(const char *path, char *const argv[])
{
	REAL(execv);
	struct sigaction saved;
	int ok = ignore_doorbell(&saved);
	int r = real_execv(path, argv);
	restore_doorbell(ok, &saved);
	return r;
}

EXPORT int execvp(const char *file, char *const argv[])
{
	REAL(execvp);
	struct sigaction saved;
	int ok = ignore_doorbell(&saved);
	int r = real_execvp(file, argv);
	restore_doorbell(ok, &saved);
	return r;
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	REAL(execvpe);
	struct sigaction saved;
	int ok = ignore_doorbell(&saved);
	int r = real_execvpe(file, argv, envp);
	restore_doorbell(ok, &saved);
	return r;
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	REAL(fexecve);
	struct sigaction saved;
	int ok = ignore_doorbell(&saved);
	int r = real_fexecve(fd, argv, envp);
	restore_doorbell(ok, &saved);
	return r;
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	REAL(execveat);
	struct sigaction saved;
	int ok = ignore_doorbell(&saved);
	int r = real_execveat(dirfd, path, argv, envp, flags);
	restore_doorbell(ok, &saved);
	return r;
}

/* execl, execlp, execle: their arguments as an array, then the array forms above. */
#define MAX_EXECL_ARGS 4096
#define COLLECT(first, envp_out)                                                                     \
	char *argv[MAX_EXECL_ARGS + 1];                                                              \
	int argc = 0;                                                                                \
	va_list ap;                                                                                  \
	va_start(ap, first);                                                                         \
	argv[argc++] = (char *)(first);                                                              \
	while (argv[argc - 1] && argc <= MAX_EXECL_ARGS)                                             \
		argv[argc++] = va_arg(ap, char *);                                                   \
	argv[argc] = 0;                                                                              \
	envp_out;                                                                                    \
	va_end(ap)

EXPORT int execl(const char *path, const char *arg, ...)
{
	COLLECT(arg, (void)0);
	return execv(path, argv);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	COLLECT(arg, (void)0);
	return execvp(file, argv);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	char **envp;
	COLLECT(arg, envp = va_arg(ap, char **));
	return execve(path, argv, envp);
}

/* ---- unwinding through pending return probes ----
 *
 * A return probe replaces a return address with the return trampoline, which has no unwind
 * information: an unwinder walking through it would stop the program (C++ would call
 * std::terminate). The unwinder's entry points restore the thread's original return addresses
 * first (ebpfu_shadow_restore) and park the entries they restored. A catch (__cxa_begin_catch,
 * called by the catching frame's landing pad) hooks the parked frames that are still live, at or
 * above the catching frame, again: only the return programs of the frames the exception left do
 * not run, as with the kernel's uretprobes. */

struct _Unwind_Exception;
typedef int (*unwind_stop_fn)(int, int, uint64_t, struct _Unwind_Exception *, void *, void *);

static __thread struct shadow_entry parked[EBPFU_SHADOW_DEPTH] __attribute__((tls_model("initial-exec")));
static __thread uint32_t nparked __attribute__((tls_model("initial-exec")));

/* unhook parks the thread's pending return probes and puts their return addresses back. */
static void unhook(struct tstate *t)
{
	uint32_t busy = t->busy;
	t->busy = 1; /* no probe of a signal handler pushes meanwhile */
	for (uint32_t d = 0; d < t->depth && nparked < EBPFU_SHADOW_DEPTH; d++) {
		struct shadow_entry *e = &t->shadow[d];
		if (*(uint64_t *)e->sp == (uint64_t)ebpfu_ret_tramp)
			parked[nparked++] = *e;
	}
	t->busy = busy;
	ebpfu_shadow_restore(t);
}

/* rehook hooks the parked return probes of frames at or above live (the catching frame's stack
 * pointer) again, under the thread's pending ones of such frames, and forgets the others. */
static void rehook(struct tstate *t, uint64_t live)
{
	struct shadow_entry keep[EBPFU_SHADOW_DEPTH];
	uint32_t k = 0;
	for (uint32_t i = 0; i < nparked; i++) {
		struct shadow_entry *e = &parked[i];
		if (e->sp < live || *(uint64_t *)e->sp != e->ret)
			continue;
		uint32_t j = k; /* oldest (highest) first; one entry per return address slot */
		while (j > 0 && keep[j - 1].sp < e->sp)
			j--;
		if (j > 0 && keep[j - 1].sp == e->sp)
			continue;
		for (uint32_t m = k; m > j; m--)
			keep[m] = keep[m - 1];
		keep[j] = *e;
		k++;
	}
	nparked = 0;
	if (!k)
		return;
	uint32_t busy = t->busy;
	t->busy = 1;
	uint32_t n = 0;
	for (uint32_t d = 0; d < t->depth && k + n < EBPFU_SHADOW_DEPTH; d++) /* live ones stay on top */
		if (t->shadow[d].sp >= live && t->shadow[d].sp < keep[k - 1].sp)
			keep[k + n++] = t->shadow[d];
	for (uint32_t i = 0; i < k + n; i++)
		t->shadow[i] = keep[i];
	for (uint32_t i = 0; i < k; i++)
		*(uint64_t *)t->shadow[i].sp = (uint64_t)ebpfu_ret_tramp;
	__atomic_store_n(&t->depth, k + n, __ATOMIC_RELEASE);
	t->busy = busy;
}

EXPORT int _Unwind_RaiseException(struct _Unwind_Exception *e)
{
	REAL(_Unwind_RaiseException);
	if (ebpfu_tls.depth)
		unhook(&ebpfu_tls);
	return real__Unwind_RaiseException(e);
}

EXPORT void _Unwind_Resume(struct _Unwind_Exception *e)
{
	REAL(_Unwind_Resume);
	if (ebpfu_tls.depth)
		unhook(&ebpfu_tls);
	real__Unwind_Resume(e);
	__builtin_unreachable();
}

EXPORT int _Unwind_Resume_or_Rethrow(struct _Unwind_Exception *e)
{
	REAL(_Unwind_Resume_or_Rethrow);
	if (ebpfu_tls.depth)
		unhook(&ebpfu_tls);
	return real__Unwind_Resume_or_Rethrow(e);
}

EXPORT int _Unwind_ForcedUnwind(struct _Unwind_Exception *e, unwind_stop_fn stop, void *arg)
{
	REAL(_Unwind_ForcedUnwind);
	if (ebpfu_tls.depth)
		unhook(&ebpfu_tls);
	return real__Unwind_ForcedUnwind(e, stop, arg);
}

void *__cxa_begin_catch(void *exc);

/* __cxa_begin_catch: the catching frame called it, so its stack pointer is just above this
 * function's return address. */
EXPORT __attribute__((noinline)) void *__cxa_begin_catch(void *exc)
{
	REAL(__cxa_begin_catch);
	if (nparked)
		rehook(&ebpfu_tls, (uint64_t)__builtin_frame_address(0) + 16);
	return real___cxa_begin_catch ? real___cxa_begin_catch(exc) : 0;
}

/* ---- process life ---- */

/* ---- libraries loaded later ----
 *
 * The dynamic loader calls _dl_debug_state (r_debug.r_brk, where debuggers put a breakpoint)
 * whenever its list of objects changes, and with r_state RT_CONSISTENT once a dlopen or dlclose
 * is complete. That function is a lone ret followed by padding: the agent makes it jump to
 * loaded(), so that attachments to a library dlopen'ed after they were made apply at once, with
 * no audit interface and no dlopen interposed (which would change the caller dlopen sees for
 * its $ORIGIN and RUNPATH lookups). */

static void loaded(void)
{
	if (_r_debug.r_state != RT_CONSISTENT || ebpfu_agent.pid != (int32_t)esys0(SYS_getpid))
		return;
	__atomic_store_n(&rescan, 1, __ATOMIC_RELEASE);
	ebpfu_sync(0);
}

static void hook_loader(void)
{
	if (_r_debug.r_brk && ebpfu_hook_return((uint64_t)_r_debug.r_brk, loaded) < 0)
		ebpfu_log("cannot hook the dynamic loader's _dl_debug_state: dlopen'ed libraries get their probes at the next change", 0, -1);
}

static void fork_child(void)
{
	ebpfu_agent.pid = (int32_t)esys0(SYS_getpid);
	ebpfu_agent.fork_gen++;
	sync_lock = 0;
	sync_pending = 0;
	ebpfu_patch_forget();
	ebpfu_runners_forget();
	register_self();
	/* a server that changed the table before this registration was visible did not ring here */
	ebpfu_sync(0);
}

/* tool_process reports whether this process is the tool a shim supervises (EBPFU_TOOL_PID, set
 * by the shim): the tool has the agent in its environment only so that the workloads it starts
 * (bpftrace -c) have it; the tool itself is not traced, nor are its forks until they exec. */
static int tool_process(void)
{
	const char *v = getenv("EBPFU_TOOL_PID");
	if (!v || !*v)
		return 0;
	const char *p = v;
	uint64_t pid = decnum(&p);
	return *p == 0 && pid == (uint64_t)ebpfu_agent.pid;
}

__attribute__((constructor(101))) static void ebpfu_init(void)
{
	ebpfu_agent.pid = (int32_t)esys0(SYS_getpid);
	if (tool_process())
		return;
	ebpfu_agent.uid = (uint32_t)esys0(SYS_getuid);
	ebpfu_agent.gid = (uint32_t)esys0(SYS_getgid);
	const char *dbg = getenv("EBPFU_DEBUG");
	ebpfu_agent.debug = dbg && *dbg && *dbg != '0';
	ebpfu_helpers_init();
	if (state_dir() < 0) {
		ebpfu_log("no private state directory: ", ebpfu_agent.dir, -1);
		ebpfu_agent.dir[0] = 0;
		return;
	}
	install_doorbell();
	if (installed)
		install_trap();
	pthread_atfork(0, 0, fork_child);
	hook_loader();
	register_self();
	ebpfu_sync(0);
}

__attribute__((destructor)) static void ebpfu_fini(void)
{
	unregister_self();
}
