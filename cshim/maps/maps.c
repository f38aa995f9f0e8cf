/* ebpfu maps, program side (see maps.h and docs/maps.md). Mirrors runtime/maps step for step:
 * the same op sequence on the same map leaves the same bytes in Go and in C. */
#include "maps.h"

#include <stddef.h>

#define E2BIG_ 7
#define ENOENT_ 2
#define EEXIST_ 17
#define EINVAL_ 22
#define ENOMEM_ 12
#define EBUSY_ 16
#define EFAULT_ 14
#define EAGAIN_ 11
#define ENOSPC_ 28
#define EOPNOTSUPP_ 95
#define ESRCH_ 3

/* Hash element header. */
#define ELEM_NEXT 0
#define ELEM_HASH 4
#define ELEM_STATE 8
#define ELEM_OWNER 12
#define ELEM_ATIME 16
#define ELEM_POOL 20
#define ELEM_KEY 24

#define STATE_FREE 0
#define STATE_LIVE 1
#define STATE_BUSY 2
#define NULLS_BIT 0x80000000u
#define POOL_MAIN 1
#define POOL_EXTRA 2
#define PLACED_MARK 0xffffffffu
#define MAX_RESTARTS 16
#define LRU_SAMPLE 64u

#define STACK_LOCK 0
#define STACK_NR 4
#define STACK_HASH 8
#define STACK_DATA 16

#define RING_DATA_OFF (2 * EBPFU_PAGE_SIZE)
#define RING_BUSY 0x80000000u
#define RING_DISCARD 0x40000000u
#define RING_MAX_RECORD (0xffffffffu / 4)

#define PERF_DATA_HEAD 1024
#define PERF_DATA_TAIL 1032

#define SPIN_TRIES 64
#define CHECK_EVERY 256

/* ---- freestanding helpers ---- */

static void cpy(void *d, const void *s, uint64_t n)
{
	uint8_t *dp = d;
	const uint8_t *sp = s;
	while (n--)
		*dp++ = *sp++;
}

static void zero(void *d, uint64_t n)
{
	volatile uint8_t *dp = d;
	while (n--)
		*dp++ = 0;
}

static int eq(const void *a, const void *b, uint64_t n)
{
	const uint8_t *x = a, *y = b;
	while (n--)
		if (*x++ != *y++)
			return 0;
	return 1;
}

static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define SYS_read 0
#define SYS_open 2
#define SYS_close 3
#define SYS_sched_yield 24
#define SYS_futex 202
#define FUTEX_WAKE 1

static inline uint32_t *p32(struct ebpfu_map *m, uint64_t off) { return (uint32_t *)(m->base + off); }
static inline uint64_t *p64(struct ebpfu_map *m, uint64_t off) { return (uint64_t *)(m->base + off); }
/* Loads acquire and stores release (plain moves on x86, ordered as written): every store that
 * publishes something to lock-free readers comes after what it publishes. Read-modify-writes
 * (lock CAS, counters) are sequentially consistent. */
static inline uint32_t ld32(struct ebpfu_map *m, uint64_t off) { return __atomic_load_n(p32(m, off), __ATOMIC_ACQUIRE); }
static inline uint64_t ld64(struct ebpfu_map *m, uint64_t off) { return __atomic_load_n(p64(m, off), __ATOMIC_ACQUIRE); }
static inline void st32(struct ebpfu_map *m, uint64_t off, uint32_t v) { __atomic_store_n(p32(m, off), v, __ATOMIC_RELEASE); }
static inline void st64(struct ebpfu_map *m, uint64_t off, uint64_t v) { __atomic_store_n(p64(m, off), v, __ATOMIC_RELEASE); }
static inline int cas32(struct ebpfu_map *m, uint64_t off, uint32_t old, uint32_t new)
{
	return __atomic_compare_exchange_n(p32(m, off), &old, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline int cas64(struct ebpfu_map *m, uint64_t off, uint64_t old, uint64_t new)
{
	return __atomic_compare_exchange_n(p64(m, off), &old, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline uint32_t add32(struct ebpfu_map *m, uint64_t off, uint32_t d)
{
	return __atomic_add_fetch(p32(m, off), d, __ATOMIC_SEQ_CST);
}

static uint64_t round8(uint64_t n) { return (n + 7) & ~7ull; }
static uint64_t page_round(uint64_t n) { return (n + EBPFU_PAGE_SIZE - 1) & ~(uint64_t)(EBPFU_PAGE_SIZE - 1); }

/* ---- liveness and owner locks ---- */

int ebpfu_alive(uint32_t owner)
{
	uint32_t id = owner & ~EBPFU_SHARED_OWNER;
	char path[32] = "/proc/";
	char digits[12];
	int n = 0, i = 6;
	if (id == 0)
		return 0;
	while (id) {
		digits[n++] = (char)('0' + id % 10);
		id /= 10;
	}
	while (n)
		path[i++] = digits[--n];
	cpy(path + i, "/stat", 6);
	long fd = sys3(SYS_open, (long)path, 0 /* O_RDONLY */, 0);
	if (fd < 0)
		return !(fd == -ENOENT_ || fd == -ESRCH_);
	char buf[512];
	long got = sys3(SYS_read, fd, (long)buf, sizeof buf);
	sys3(SYS_close, fd, 0, 0);
	if (got <= 0)
		return got != -ESRCH_;
	long close = -1;
	for (long j = 0; j < got; j++)
		if (buf[j] == ')')
			close = j;
	if (close < 0 || close + 2 >= got)
		return 1;
	char st = buf[close + 2];
	return !(st == 'Z' || st == 'X' || st == 'x');
}

static int alive(const struct ebpfu_thread *t, uint32_t owner)
{
	return t->alive ? t->alive(owner) : ebpfu_alive(owner);
}

/* lock_word takes the owner lock at off; *dead is set to a dead holder it took over from. */
static int lock_word(struct ebpfu_map *m, uint64_t off, const struct ebpfu_thread *t, uint32_t *dead)
{
	*dead = 0;
	for (uint64_t i = 0;; i++) {
		if (cas32(m, off, 0, t->owner))
			return 0;
		uint32_t cur = ld32(m, off);
		if (cur == 0)
			continue;
		if (cur == t->owner && !(t->owner & EBPFU_SHARED_OWNER))
			return -EBUSY_;
		if (i < SPIN_TRIES) {
			__builtin_ia32_pause();
			continue;
		}
		if ((i - SPIN_TRIES) % CHECK_EVERY == CHECK_EVERY - 1 && !alive(t, cur)) {
			if (cas32(m, off, cur, t->owner)) {
				*dead = cur;
				return 0;
			}
		}
		sys3(SYS_sched_yield, 0, 0, 0);
	}
}

static void unlock_word(struct ebpfu_map *m, uint64_t off) { st32(m, off, 0); }

static void notify(struct ebpfu_map *m)
{
	add32(m, m->ctl + EBPFU_CTL_NOTIFY_SEQ_OFF, 1);
	if (ld32(m, m->ctl + EBPFU_CTL_WAITERS_OFF) != 0)
		sys6(SYS_futex, (long)p32(m, m->ctl + EBPFU_CTL_NOTIFY_SEQ_OFF), FUTEX_WAKE, 0x7fffffff, 0, 0, 0);
}

/* ---- jhash (include/linux/jhash.h) ---- */

static inline uint32_t rol32(uint32_t w, unsigned s) { return (w << s) | (w >> (32 - s)); }
#define JHASH_MIX(a, b, c)                                                                       \
	do {                                                                                     \
		a -= c; a ^= rol32(c, 4); c += b;                                                \
		b -= a; b ^= rol32(a, 6); a += c;                                                \
		c -= b; c ^= rol32(b, 8); b += a;                                                \
		a -= c; a ^= rol32(c, 16); c += b;                                               \
		b -= a; b ^= rol32(a, 19); a += c;                                               \
		c -= b; c ^= rol32(b, 4); b += a;                                                \
	} while (0)
#define JHASH_FINAL(a, b, c)                                                                     \
	do {                                                                                     \
		c ^= b; c -= rol32(b, 14);                                                       \
		a ^= c; a -= rol32(c, 11);                                                       \
		b ^= a; b -= rol32(a, 25);                                                       \
		c ^= b; c -= rol32(b, 16);                                                       \
		a ^= c; a -= rol32(c, 4);                                                        \
		b ^= a; b -= rol32(a, 14);                                                       \
		c ^= b; c -= rol32(b, 24);                                                       \
	} while (0)

static uint32_t get32(const uint8_t *k)
{
	return (uint32_t)k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
}

static uint32_t jhash(const uint8_t *k, uint32_t len, uint32_t initval)
{
	uint32_t a, b, c;
	a = b = c = 0xdeadbeef + len + initval;
	while (len > 12) {
		a += get32(k);
		b += get32(k + 4);
		c += get32(k + 8);
		JHASH_MIX(a, b, c);
		len -= 12;
		k += 12;
	}
	if (len == 0)
		return c;
	uint8_t t[12] = {0};
	cpy(t, k, len);
	a += get32(t);
	b += get32(t + 4);
	c += get32(t + 8);
	JHASH_FINAL(a, b, c);
	return c;
}

static uint32_t jhash2(const uint8_t *k, uint32_t words, uint32_t initval)
{
	uint32_t a, b, c;
	a = b = c = 0xdeadbeef + (words << 2) + initval;
	while (words > 3) {
		a += get32(k);
		b += get32(k + 4);
		c += get32(k + 8);
		JHASH_MIX(a, b, c);
		words -= 3;
		k += 12;
	}
	switch (words) {
	case 3:
		c += get32(k + 8);
		/* fallthrough */
	case 2:
		b += get32(k + 4);
		/* fallthrough */
	case 1:
		a += get32(k);
		JHASH_FINAL(a, b, c);
	}
	return c;
}

static uint32_t key_hash(const struct ebpfu_map *m, const void *key)
{
	if (m->key_size % 4 == 0)
		return jhash2(key, m->key_size / 4, m->seed);
	return jhash(key, m->key_size, m->seed);
}

/* ---- open ---- */

static int is_hash(uint32_t t)
{
	return t == EBPFU_MAP_HASH || t == EBPFU_MAP_PERCPU_HASH || t == EBPFU_MAP_LRU_HASH ||
	       t == EBPFU_MAP_LRU_PERCPU_HASH;
}
static int is_percpu(uint32_t t)
{
	return t == EBPFU_MAP_PERCPU_HASH || t == EBPFU_MAP_PERCPU_ARRAY || t == EBPFU_MAP_LRU_PERCPU_HASH;
}
static int is_lru(uint32_t t) { return t == EBPFU_MAP_LRU_HASH || t == EBPFU_MAP_LRU_PERCPU_HASH; }

#define MAX_MAP_BYTES (1ull << 36)

/* layout recomputes the areas from the parameters, as runtime/maps computeLayout does. */
static int layout(struct ebpfu_map *m)
{
	uint64_t slot = round8(m->value_size), file;
	m->slot = slot;
	m->elem_size = m->n_buckets = m->n_elems = m->n_extra = 0;
	m->data_off = m->buckets_off = 0;
	switch (m->type) {
	case EBPFU_MAP_ARRAY:
	case EBPFU_MAP_PERCPU_ARRAY: {
		uint64_t n = m->max_entries;
		if (m->type == EBPFU_MAP_PERCPU_ARRAY)
			n *= m->ncpu;
		if (n * slot > MAX_MAP_BYTES)
			return -EINVAL_;
		m->elem_size = (uint32_t)slot;
		m->data_size = page_round(n * slot);
		break;
	}
	case EBPFU_MAP_PROG_ARRAY:
	case EBPFU_MAP_PERF_EVENT_ARRAY:
	case EBPFU_MAP_CGROUP_ARRAY:
		m->elem_size = 4;
		m->data_size = page_round((uint64_t)m->max_entries * 4);
		break;
	case EBPFU_MAP_HASH:
	case EBPFU_MAP_PERCPU_HASH:
	case EBPFU_MAP_LRU_HASH:
	case EBPFU_MAP_LRU_PERCPU_HASH: {
		uint64_t nb = 1;
		while (nb < m->max_entries)
			nb <<= 1;
		if (nb > 0xffffffffull / 16)
			return -EINVAL_;
		uint64_t vsz = is_percpu(m->type) ? slot * m->ncpu : slot;
		uint64_t es = ELEM_KEY + round8(m->key_size) + vsz;
		if (m->type == EBPFU_MAP_HASH)
			m->n_extra = m->ncpu;
		uint64_t ne = (uint64_t)m->max_entries + m->n_extra;
		if (es * ne > MAX_MAP_BYTES || ne >= NULLS_BIT)
			return -EINVAL_;
		m->elem_size = (uint32_t)es;
		m->n_buckets = (uint32_t)nb;
		m->n_elems = (uint32_t)ne;
		m->data_off = page_round(nb * 4);
		m->data_size = page_round(es * ne);
		m->val_off = ELEM_KEY + round8(m->key_size);
		break;
	}
	case EBPFU_MAP_STACK_TRACE: {
		uint64_t nb = 1;
		while (nb < m->max_entries)
			nb <<= 1;
		uint64_t es = STACK_DATA + (uint64_t)m->value_size;
		if (es * nb > MAX_MAP_BYTES)
			return -EINVAL_;
		m->elem_size = (uint32_t)es;
		m->n_buckets = (uint32_t)nb;
		m->data_size = page_round(es * nb);
		break;
	}
	case EBPFU_MAP_RINGBUF:
		m->data_off = RING_DATA_OFF;
		m->data_size = m->max_entries;
		if (m->data_size == 0 || (m->data_size & (m->data_size - 1)) || m->data_size % EBPFU_PAGE_SIZE ||
		    2 * m->data_size > MAX_MAP_BYTES)
			return -EINVAL_;
		file = RING_DATA_OFF + 2 * m->data_size + EBPFU_PAGE_SIZE;
		return file == m->size ? 0 : -EINVAL_;
	case EBPFU_PERF_RING:
		m->data_off = EBPFU_PAGE_SIZE;
		m->data_size = m->size - 2 * EBPFU_PAGE_SIZE;
		return 0;
	default:
		return -EINVAL_;
	}
	file = m->data_off + m->data_size + EBPFU_PAGE_SIZE;
	return file == m->size ? 0 : -EINVAL_;
}

int ebpfu_map_open(struct ebpfu_map *m, void *base, uint64_t size)
{
	if (!base || size < 2 * EBPFU_PAGE_SIZE || size % EBPFU_PAGE_SIZE)
		return -EINVAL_;
	m->base = base;
	m->size = size;
	m->ctl = size - EBPFU_PAGE_SIZE;
	if (ld64(m, m->ctl + EBPFU_CTL_MAGIC_OFF) != EBPFU_CTL_MAGIC ||
	    ld32(m, m->ctl + EBPFU_CTL_VERSION_OFF) != EBPFU_LAYOUT_VERSION)
		return -EINVAL_;
	m->type = ld32(m, m->ctl + EBPFU_CTL_TYPE_OFF);
	m->key_size = ld32(m, m->ctl + EBPFU_CTL_KEY_SIZE_OFF);
	m->value_size = ld32(m, m->ctl + EBPFU_CTL_VALUE_SIZE_OFF);
	m->max_entries = ld32(m, m->ctl + EBPFU_CTL_MAX_ENTRIES_OFF);
	m->flags = ld32(m, m->ctl + EBPFU_CTL_FLAGS_OFF);
	m->ncpu = ld32(m, m->ctl + EBPFU_CTL_NCPU_OFF);
	m->seed = ld32(m, m->ctl + EBPFU_CTL_SEED_OFF);
	if (m->ncpu == 0 || m->ncpu > 4096)
		return -EINVAL_;
	if (layout(m))
		return -EINVAL_;
	if (m->type != (uint32_t)EBPFU_PERF_RING && m->type != EBPFU_MAP_RINGBUF &&
	    (ld32(m, m->ctl + EBPFU_CTL_ELEM_SIZE_OFF) != m->elem_size ||
	     ld32(m, m->ctl + EBPFU_CTL_NBUCKETS_OFF) != m->n_buckets ||
	     ld32(m, m->ctl + EBPFU_CTL_NELEMS_OFF) != m->n_elems ||
	     ld64(m, m->ctl + EBPFU_CTL_DATA_OFF_OFF) != m->data_off ||
	     ld64(m, m->ctl + EBPFU_CTL_DATA_SIZE_OFF) != m->data_size))
		return -EINVAL_;
	return 0;
}

/* ---- arrays ---- */

static uint64_t array_slot(struct ebpfu_map *m, uint32_t i, uint32_t cpu)
{
	if (m->type == EBPFU_MAP_PERCPU_ARRAY)
		return ((uint64_t)i * m->ncpu + cpu) * m->slot;
	return (uint64_t)i * m->slot;
}

long ebpfu_map_ref(struct ebpfu_map *m, uint32_t index)
{
	if (m->type != EBPFU_MAP_PROG_ARRAY && m->type != EBPFU_MAP_PERF_EVENT_ARRAY)
		return -EINVAL_;
	if (index >= m->max_entries)
		return -E2BIG_;
	uint32_t ref = ld32(m, (uint64_t)index * 4);
	return ref ? (long)ref : -ENOENT_;
}

/* ---- hash maps ---- */

static uint64_t bucket_head(struct ebpfu_map *m, uint32_t b) { return m->buckets_off + (uint64_t)b * 4; }
static uint64_t elem_off(struct ebpfu_map *m, uint32_t idx) { return m->data_off + (uint64_t)(idx - 1) * m->elem_size; }
static int valid_link(struct ebpfu_map *m, uint32_t n) { return n != 0 && !(n & NULLS_BIT) && n <= m->n_elems; }
static uint64_t value_bytes(struct ebpfu_map *m) { return is_percpu(m->type) ? m->slot * m->ncpu : m->slot; }
static uint32_t tick(struct ebpfu_map *m) { return ld32(m, m->ctl + EBPFU_CTL_TICK_OFF); }

static uint32_t find(struct ebpfu_map *m, uint32_t b, uint32_t hash, const void *key)
{
	for (int r = 0; r < MAX_RESTARTS; r++) {
		uint32_t n = ld32(m, bucket_head(m, b));
		if (n == 0)
			return 0;
		for (uint32_t steps = 0;; steps++) {
			if (n & NULLS_BIT) {
				if (n == (NULLS_BIT | b))
					return 0;
				break;
			}
			if (!valid_link(m, n) || steps > m->n_elems)
				break;
			uint64_t e = elem_off(m, n);
			if (ld32(m, e + ELEM_HASH) == hash && ld32(m, e + ELEM_STATE) != STATE_FREE &&
			    eq(m->base + e + ELEM_KEY, key, m->key_size))
				return n;
			n = ld32(m, e + ELEM_NEXT);
		}
	}
	return 0;
}

static uint32_t find_locked(struct ebpfu_map *m, uint32_t b, uint32_t hash, const void *key, uint64_t *link)
{
	uint64_t l = bucket_head(m, b);
	uint32_t n = ld32(m, l);
	for (uint32_t steps = 0; valid_link(m, n) && steps <= m->n_elems; steps++) {
		uint64_t e = elem_off(m, n);
		if (ld32(m, e + ELEM_HASH) == hash && eq(m->base + e + ELEM_KEY, key, m->key_size)) {
			*link = l;
			return n;
		}
		l = e + ELEM_NEXT;
		n = ld32(m, l);
	}
	return 0;
}

static int link_of(struct ebpfu_map *m, uint32_t b, uint32_t idx, uint64_t *link)
{
	uint64_t l = bucket_head(m, b);
	uint32_t n = ld32(m, l);
	for (uint32_t steps = 0; valid_link(m, n) && steps <= m->n_elems; steps++) {
		if (n == idx) {
			*link = l;
			return 1;
		}
		l = elem_off(m, n) + ELEM_NEXT;
		n = ld32(m, l);
	}
	return 0;
}

static void claim(struct ebpfu_map *m, uint32_t idx, uint32_t pool, uint32_t owner)
{
	uint64_t e = elem_off(m, idx);
	st32(m, e + ELEM_POOL, pool);
	st32(m, e + ELEM_OWNER, owner);
	st32(m, e + ELEM_STATE, STATE_BUSY);
}

static uint64_t pool_head(struct ebpfu_map *m, uint32_t pool)
{
	return m->ctl + (pool == POOL_EXTRA ? EBPFU_CTL_EXTRA_HEAD_OFF : EBPFU_CTL_FREE_HEAD_OFF);
}

/* pop takes an element from pool (writer lock held), or returns 0. */
static uint32_t pop(struct ebpfu_map *m, uint32_t pool, uint32_t owner)
{
	uint64_t head = pool_head(m, pool);
	uint32_t idx = (uint32_t)ld64(m, head);
	if (idx) {
		if (!valid_link(m, idx))
			return 0;
		st64(m, head, ld32(m, elem_off(m, idx) + ELEM_NEXT));
		claim(m, idx, pool, owner);
		return idx;
	}
	uint64_t bump = m->ctl + EBPFU_CTL_BUMP_OFF;
	uint32_t first = 1, limit = m->n_elems - m->n_extra;
	if (pool == POOL_EXTRA) {
		bump = m->ctl + EBPFU_CTL_EXTRA_BUMP_OFF;
		first = m->n_elems - m->n_extra + 1;
		limit = m->n_extra;
	}
	uint32_t n = ld32(m, bump);
	if (n >= limit)
		return 0;
	st32(m, bump, n + 1);
	claim(m, first + n, pool, owner);
	return first + n;
}

/* push returns idx to pool (writer lock held). */
static void push(struct ebpfu_map *m, uint32_t idx, uint32_t pool)
{
	uint64_t e = elem_off(m, idx), head = pool_head(m, pool);
	st32(m, e + ELEM_NEXT, (uint32_t)ld64(m, head));
	st32(m, e + ELEM_POOL, pool);
	st32(m, e + ELEM_STATE, STATE_FREE);
	st64(m, head, idx);
}

static void fill(struct ebpfu_map *m, uint32_t idx, uint32_t hash, const void *key, const void *value, uint32_t cpu)
{
	uint64_t e = elem_off(m, idx);
	st32(m, e + ELEM_HASH, hash);
	cpy(m->base + e + ELEM_KEY, key, m->key_size);
	zero(m->base + e + ELEM_KEY + m->key_size, m->val_off - ELEM_KEY - m->key_size);
	uint8_t *v = m->base + e + m->val_off;
	if (!is_percpu(m->type)) {
		cpy(v, value, m->value_size);
		zero(v + m->value_size, m->slot - m->value_size);
	} else {
		zero(v, value_bytes(m));
		cpy(v + (uint64_t)cpu * m->slot, value, m->value_size);
	}
	if (is_lru(m->type))
		st32(m, e + ELEM_ATIME, tick(m));
}

static void copy_in(struct ebpfu_map *m, uint32_t idx, const void *value, uint32_t cpu)
{
	uint8_t *v = m->base + elem_off(m, idx) + m->val_off;
	if (is_percpu(m->type))
		v += (uint64_t)cpu * m->slot;
	cpy(v, value, m->value_size);
}

static void link_head(struct ebpfu_map *m, uint32_t b, uint32_t idx)
{
	uint64_t e = elem_off(m, idx);
	uint32_t head = ld32(m, bucket_head(m, b));
	if (head == 0)
		head = NULLS_BIT | b;
	st32(m, e + ELEM_NEXT, head);
	st32(m, bucket_head(m, b), idx);
	st32(m, e + ELEM_STATE, STATE_LIVE);
}

static void unlink_elem(struct ebpfu_map *m, uint32_t b, uint32_t idx, uint64_t link, uint32_t pool, uint32_t owner)
{
	uint64_t e = elem_off(m, idx);
	st32(m, e + ELEM_POOL, pool);
	st32(m, e + ELEM_OWNER, owner);
	st32(m, e + ELEM_STATE, STATE_BUSY);
	uint32_t next = ld32(m, e + ELEM_NEXT);
	if (link == bucket_head(m, b) && next == (NULLS_BIT | b))
		next = 0;
	st32(m, link, next);
}

static void touch(struct ebpfu_map *m, uint32_t idx)
{
	uint64_t off = elem_off(m, idx) + ELEM_ATIME;
	uint32_t t = tick(m);
	if (ld32(m, off) != t)
		st32(m, off, t);
}

static int handed_out(struct ebpfu_map *m, uint32_t idx)
{
	uint32_t main_n = m->n_elems - m->n_extra;
	return idx <= ld32(m, m->ctl + EBPFU_CTL_BUMP_OFF) ||
	       (idx > main_n && idx - main_n <= ld32(m, m->ctl + EBPFU_CTL_EXTRA_BUMP_OFF));
}

/* repair: see runtime/maps repair (writer lock held). */
static void repair(struct ebpfu_map *m)
{
	uint32_t main_n = m->n_elems - m->n_extra;
	for (uint32_t idx = 1; idx <= m->n_elems; idx++)
		if (handed_out(m, idx))
			st32(m, elem_off(m, idx) + ELEM_OWNER, 0);
	for (uint32_t b = 0; b < m->n_buckets; b++) {
		uint64_t head = bucket_head(m, b), link = head;
		uint32_t n = ld32(m, link), first = 0;
		for (uint32_t steps = 0; valid_link(m, n) && steps <= m->n_elems &&
					 ld32(m, elem_off(m, n) + ELEM_OWNER) != PLACED_MARK;
		     steps++) {
			uint64_t e = elem_off(m, n);
			uint32_t next = ld32(m, e + ELEM_NEXT);
			int dup = 0;
			for (uint32_t k = first; k != 0 && k != n; k = ld32(m, elem_off(m, k) + ELEM_NEXT))
				if (eq(m->base + elem_off(m, k) + ELEM_KEY, m->base + e + ELEM_KEY, m->key_size)) {
					dup = 1;
					break;
				}
			if (dup) {
				unlink_elem(m, b, n, link, m->n_extra > 0 ? POOL_EXTRA : POOL_MAIN, 0);
			} else {
				if (!first)
					first = n;
				st32(m, e + ELEM_STATE, STATE_LIVE);
				st32(m, e + ELEM_OWNER, PLACED_MARK);
				link = e + ELEM_NEXT;
			}
			n = next;
		}
		if (n == (NULLS_BIT | b) || (n == 0 && link == head)) {
		} else if (link == head) {
			st32(m, link, 0);
		} else {
			st32(m, link, NULLS_BIT | b);
		}
	}
	for (uint32_t pool = POOL_MAIN; pool <= POOL_EXTRA; pool++) {
		uint64_t head = pool_head(m, pool), link = 0;
		for (uint32_t n = (uint32_t)ld64(m, head); n != 0; n = ld32(m, elem_off(m, n) + ELEM_NEXT)) {
			if (!valid_link(m, n) || ld32(m, elem_off(m, n) + ELEM_OWNER) == PLACED_MARK) {
				if (link == 0)
					st64(m, head, 0);
				else
					st32(m, link, 0);
				break;
			}
			st32(m, elem_off(m, n) + ELEM_STATE, STATE_FREE);
			st32(m, elem_off(m, n) + ELEM_POOL, pool);
			st32(m, elem_off(m, n) + ELEM_OWNER, PLACED_MARK);
			link = elem_off(m, n) + ELEM_NEXT;
		}
	}
	for (uint32_t idx = 1; idx <= m->n_elems; idx++) {
		if (!handed_out(m, idx) || ld32(m, elem_off(m, idx) + ELEM_OWNER) == PLACED_MARK)
			continue;
		uint32_t pool = ld32(m, elem_off(m, idx) + ELEM_POOL);
		if (pool != POOL_MAIN && pool != POOL_EXTRA)
			pool = idx > main_n ? POOL_EXTRA : POOL_MAIN;
		push(m, idx, pool);
		st32(m, elem_off(m, idx) + ELEM_OWNER, PLACED_MARK);
	}
}

/* write_lock takes the map's writer lock, repairing the map when its holder died. */
static int write_lock(struct ebpfu_map *m, const struct ebpfu_thread *t)
{
	uint32_t dead;
	int err = lock_word(m, m->ctl + EBPFU_CTL_LOCK_OFF, t, &dead);
	if (dead)
		repair(m);
	return err;
}

static void write_unlock(struct ebpfu_map *m) { unlock_word(m, m->ctl + EBPFU_CTL_LOCK_OFF); }

static uint32_t lru_alloc(struct ebpfu_map *m, uint32_t owner)
{
	uint32_t idx = pop(m, POOL_MAIN, owner);
	if (idx)
		return idx;
	uint32_t n = m->n_elems, sample = n < LRU_SAMPLE ? n : LRU_SAMPLE, now = tick(m);
	for (int attempt = 0; attempt < 4; attempt++) {
		uint32_t start = add32(m, m->ctl + EBPFU_CTL_HAND_OFF, sample) - sample;
		uint32_t best = 0, best_age = 0;
		for (uint32_t i = 0; i < sample; i++) {
			uint32_t c = (start + i) % n + 1;
			uint64_t e = elem_off(m, c);
			if (ld32(m, e + ELEM_STATE) != STATE_LIVE)
				continue;
			uint32_t age = now - ld32(m, e + ELEM_ATIME);
			if ((int32_t)age < 0)
				age = 0;
			if (best == 0 || age > best_age) {
				best = c;
				best_age = age;
			}
		}
		if (!best)
			continue;
		uint32_t b = ld32(m, elem_off(m, best) + ELEM_HASH) & (m->n_buckets - 1);
		uint64_t link;
		if (link_of(m, b, best, &link)) {
			unlink_elem(m, b, best, link, POOL_MAIN, owner);
			return best;
		}
	}
	return 0;
}

static long hash_update(struct ebpfu_map *m, const void *key, const void *value, uint64_t flags,
			const struct ebpfu_thread *t)
{
	uint64_t f = flags & ~(uint64_t)EBPFU_F_LOCK;
	if (f > EBPFU_EXIST || (flags & EBPFU_F_LOCK) || t->cpu >= m->ncpu)
		return -EINVAL_;
	uint32_t hash = key_hash(m, key), b = hash & (m->n_buckets - 1);
	int lru = is_lru(m->type), percpu = is_percpu(m->type);
	long err = write_lock(m, t);
	if (err)
		return err;
	uint32_t pre = 0;
	if (lru && !(percpu && f == EBPFU_EXIST)) {
		pre = lru_alloc(m, t->owner);
		if (!pre) {
			write_unlock(m);
			return -ENOMEM_;
		}
		fill(m, pre, hash, key, value, t->cpu);
		add32(m, m->ctl + EBPFU_CTL_TICK_OFF, 1);
	}
	uint64_t link;
	uint32_t old = find_locked(m, b, hash, key, &link);
	if (old && f == EBPFU_NOEXIST) {
		err = -EEXIST_;
	} else if (!old && f == EBPFU_EXIST) {
		err = -ENOENT_;
	} else if (old && percpu) {
		copy_in(m, old, value, t->cpu);
		if (lru)
			touch(m, old);
	} else {
		uint32_t nw = pre, pool = POOL_MAIN;
		if (!nw) {
			if (old)
				pool = POOL_EXTRA;
			nw = pop(m, pool, t->owner);
			if (nw)
				fill(m, nw, hash, key, value, t->cpu);
		}
		if (!nw && old) {
			copy_in(m, old, value, t->cpu);
		} else if (!nw) {
			err = -E2BIG_;
		} else {
			pre = 0;
			link_head(m, b, nw);
			if (old) {
				link_of(m, b, old, &link);
				unlink_elem(m, b, old, link, pool, t->owner);
				push(m, old, pool);
			}
		}
	}
	if (pre)
		push(m, pre, POOL_MAIN);
	write_unlock(m);
	return err;
}

static long hash_delete(struct ebpfu_map *m, const void *key, const struct ebpfu_thread *t)
{
	uint32_t hash = key_hash(m, key), b = hash & (m->n_buckets - 1);
	long err = write_lock(m, t);
	if (err)
		return err;
	uint64_t link;
	uint32_t idx = find_locked(m, b, hash, key, &link);
	if (idx) {
		unlink_elem(m, b, idx, link, POOL_MAIN, t->owner);
		push(m, idx, POOL_MAIN);
	}
	write_unlock(m);
	return idx ? 0 : -ENOENT_;
}

uint32_t ebpfu_map_bucket(struct ebpfu_map *m, const void *key)
{
	return is_hash(m->type) ? key_hash(m, key) & (m->n_buckets - 1) : 0;
}

/* ---- element helpers ---- */

void *ebpfu_map_lookup_elem(struct ebpfu_map *m, const void *key, const struct ebpfu_thread *t)
{
	if (t->cpu >= m->ncpu)
		return 0;
	if (m->type == EBPFU_MAP_ARRAY || m->type == EBPFU_MAP_PERCPU_ARRAY) {
		uint32_t i = get32(key);
		if (i >= m->max_entries)
			return 0;
		return m->base + array_slot(m, i, t->cpu);
	}
	if (!is_hash(m->type))
		return 0;
	uint32_t hash = key_hash(m, key);
	uint32_t idx = find(m, hash & (m->n_buckets - 1), hash, key);
	if (!idx)
		return 0;
	if (is_lru(m->type))
		touch(m, idx);
	uint64_t off = elem_off(m, idx) + m->val_off;
	if (is_percpu(m->type))
		off += (uint64_t)t->cpu * m->slot;
	return m->base + off;
}

long ebpfu_map_update_elem(struct ebpfu_map *m, const void *key, const void *value, uint64_t flags,
			   const struct ebpfu_thread *t)
{
	if (t->cpu >= m->ncpu)
		return -EINVAL_;
	if (m->type == EBPFU_MAP_ARRAY || m->type == EBPFU_MAP_PERCPU_ARRAY) {
		if ((flags & ~(uint64_t)EBPFU_F_LOCK) > EBPFU_EXIST)
			return -EINVAL_;
		uint32_t i = get32(key);
		if (i >= m->max_entries)
			return -E2BIG_;
		if (flags & EBPFU_NOEXIST)
			return -EEXIST_;
		if (flags & EBPFU_F_LOCK)
			return -EINVAL_;
		cpy(m->base + array_slot(m, i, t->cpu), value, m->value_size);
		return 0;
	}
	if (is_hash(m->type))
		return hash_update(m, key, value, flags, t);
	return -EINVAL_;
}

long ebpfu_map_delete_elem(struct ebpfu_map *m, const void *key, const struct ebpfu_thread *t)
{
	if (is_hash(m->type))
		return hash_delete(m, key, t);
	return -EINVAL_;
}

/* ---- ringbuf ---- */

static uint64_t ring_mask(struct ebpfu_map *m) { return m->data_size - 1; }

void *ebpfu_ringbuf_reserve(struct ebpfu_map *m, uint64_t size, uint64_t flags, const struct ebpfu_thread *t)
{
	if (m->type != EBPFU_MAP_RINGBUF || flags || size > RING_MAX_RECORD)
		return 0;
	uint64_t n = round8(size + 8);
	if (n > m->data_size)
		return 0;
	uint64_t cons = ld64(m, 0);
	uint32_t dead;
	if (lock_word(m, m->ctl + EBPFU_CTL_LOCK_OFF, t, &dead))
		return 0;
	uint64_t prod = ld64(m, EBPFU_PAGE_SIZE);
	uint64_t pend = ld64(m, m->ctl + EBPFU_CTL_PENDING_OFF);
	while (pend < prod) {
		uint32_t l = ld32(m, m->data_off + (pend & ring_mask(m)));
		if (l & RING_BUSY)
			break;
		pend += round8((uint64_t)(l & ~RING_DISCARD) + 8);
	}
	st64(m, m->ctl + EBPFU_CTL_PENDING_OFF, pend);
	uint64_t next = prod + n;
	if (next - cons > ring_mask(m) || next - pend > ring_mask(m)) {
		unlock_word(m, m->ctl + EBPFU_CTL_LOCK_OFF);
		return 0;
	}
	uint64_t hdr = m->data_off + (prod & ring_mask(m));
	st32(m, hdr + 4, t->owner);
	st32(m, hdr, (uint32_t)size | RING_BUSY);
	st64(m, EBPFU_PAGE_SIZE, next);
	unlock_word(m, m->ctl + EBPFU_CTL_LOCK_OFF);
	return m->base + hdr + 8;
}

static void ring_commit(struct ebpfu_map *m, void *sample, uint64_t flags, int discard)
{
	uint64_t addr = (uint64_t)(uintptr_t)sample, base = (uint64_t)(uintptr_t)m->base;
	if (m->type != EBPFU_MAP_RINGBUF || addr < base + m->data_off + 8 ||
	    addr >= base + m->data_off + m->data_size + 8 || addr % 8)
		return;
	uint64_t hdr = addr - base - 8;
	uint32_t l = ld32(m, hdr) & ~RING_BUSY;
	if (discard)
		l |= RING_DISCARD;
	st32(m, hdr + 4, (uint32_t)(3 + (hdr - m->data_off) / EBPFU_PAGE_SIZE));
	st32(m, hdr, l);
	uint64_t rec = hdr - m->data_off;
	if ((flags & EBPFU_RB_FORCE_WAKEUP) ||
	    ((ld64(m, 0) & ring_mask(m)) == rec && !(flags & EBPFU_RB_NO_WAKEUP)))
		notify(m);
}

void ebpfu_ringbuf_submit(struct ebpfu_map *m, void *sample, uint64_t flags) { ring_commit(m, sample, flags, 0); }
void ebpfu_ringbuf_discard(struct ebpfu_map *m, void *sample, uint64_t flags) { ring_commit(m, sample, flags, 1); }

long ebpfu_ringbuf_output(struct ebpfu_map *m, const void *data, uint64_t size, uint64_t flags,
			  const struct ebpfu_thread *t)
{
	if (flags & ~(EBPFU_RB_NO_WAKEUP | EBPFU_RB_FORCE_WAKEUP))
		return -EINVAL_;
	void *rec = ebpfu_ringbuf_reserve(m, size, 0, t);
	if (!rec)
		return -EAGAIN_;
	cpy(rec, data, size);
	ring_commit(m, rec, flags, 0);
	return 0;
}

uint64_t ebpfu_ringbuf_query(struct ebpfu_map *m, uint64_t flags)
{
	if (m->type != EBPFU_MAP_RINGBUF)
		return 0;
	switch (flags) {
	case 0:
		return ld64(m, EBPFU_PAGE_SIZE) - ld64(m, 0);
	case 1:
		return m->data_size;
	case 2:
		return ld64(m, 0);
	case 3:
		return ld64(m, EBPFU_PAGE_SIZE);
	}
	return 0;
}

/* ---- perf rings ---- */

static uint64_t perf_put(struct ebpfu_map *r, uint64_t pos, uint64_t dsize, const void *src, uint64_t n)
{
	const uint8_t *s = src;
	while (n) {
		uint64_t off = pos & (dsize - 1), room = dsize - off, k = n < room ? n : room;
		if (s)
			cpy(r->base + EBPFU_PAGE_SIZE + off, s, k);
		else
			zero(r->base + EBPFU_PAGE_SIZE + off, k);
		if (s)
			s += k;
		n -= k;
		pos += k;
	}
	return pos;
}

static long perf_write(struct ebpfu_map *r, const void *data, uint64_t len, uint16_t misc, uint64_t raw,
		       uint64_t size)
{
	uint64_t dsize = ld64(r, r->ctl + EBPFU_CTL_PERF_SIZE_OFF);
	if (dsize == 0 || dsize > r->data_size || (dsize & (dsize - 1)))
		return -ENOSPC_;
	uint64_t head = ld64(r, r->ctl + EBPFU_CTL_HEAD_OFF);
	uint64_t tail = ld64(r, PERF_DATA_TAIL);
	uint64_t lost = ld64(r, r->ctl + EBPFU_CTL_LOST_OFF);
	uint64_t need = size + (lost ? 24 : 0);
	if (head - tail > dsize || head + need - tail > dsize) {
		st64(r, r->ctl + EBPFU_CTL_LOST_OFF, lost + 1);
		return -ENOSPC_;
	}
	uint8_t rec[24];
	if (lost) {
		uint32_t type = 2;
		uint16_t zmisc = 0, rsize = 24;
		uint64_t id = ld64(r, r->ctl + EBPFU_CTL_EVENT_ID_OFF);
		cpy(rec, &type, 4);
		cpy(rec + 4, &zmisc, 2);
		cpy(rec + 6, &rsize, 2);
		cpy(rec + 8, &id, 8);
		cpy(rec + 16, &lost, 8);
		head = perf_put(r, head, dsize, rec, 24);
		st64(r, r->ctl + EBPFU_CTL_LOST_OFF, 0);
	}
	uint32_t type = 9, raw32 = (uint32_t)raw;
	uint16_t size16 = (uint16_t)size;
	cpy(rec, &type, 4);
	cpy(rec + 4, &misc, 2);
	cpy(rec + 6, &size16, 2);
	cpy(rec + 8, &raw32, 4);
	head = perf_put(r, head, dsize, rec, 12);
	head = perf_put(r, head, dsize, data, len);
	head = perf_put(r, head, dsize, 0, raw - len);
	st64(r, r->ctl + EBPFU_CTL_HEAD_OFF, head);
	st64(r, PERF_DATA_HEAD, head);
	return 0;
}

long ebpfu_perf_ring_output(struct ebpfu_map *r, const void *data, uint64_t len, uint16_t misc,
			    const struct ebpfu_thread *t)
{
	if (r->type != (uint32_t)EBPFU_PERF_RING)
		return -EINVAL_;
	if (ld32(r, r->ctl + EBPFU_CTL_ENABLED_OFF) == 0)
		return -EOPNOTSUPP_;
	int32_t rc = (int32_t)ld32(r, r->ctl + EBPFU_CTL_RING_CPU_OFF);
	if (rc >= 0 && (uint32_t)rc != t->cpu)
		return -EOPNOTSUPP_;
	uint64_t raw = round8(len + 4) - 4, size = 12 + raw;
	if (size > 0xffff)
		return -E2BIG_;
	uint32_t dead;
	long err = lock_word(r, r->ctl + EBPFU_CTL_LOCK_OFF, t, &dead);
	if (err)
		return err;
	err = perf_write(r, data, len, misc, raw, size);
	unlock_word(r, r->ctl + EBPFU_CTL_LOCK_OFF);
	if (!err)
		notify(r);
	return err;
}

long ebpfu_perf_event_output(struct ebpfu_map *arr, uint64_t flags, const void *data, uint64_t size,
			     uint16_t misc, const struct ebpfu_thread *t,
			     struct ebpfu_map *(*resolve)(uint32_t ref, void *arg), void *arg)
{
	if (arr->type != EBPFU_MAP_PERF_EVENT_ARRAY || (flags & ~EBPFU_F_INDEX_MASK))
		return -EINVAL_;
	uint32_t index = (uint32_t)flags;
	if (index == (uint32_t)EBPFU_F_CURRENT_CPU)
		index = t->cpu;
	long ref = ebpfu_map_ref(arr, index);
	if (ref < 0)
		return ref;
	struct ebpfu_map *r = resolve((uint32_t)ref, arg);
	if (!r)
		return -ENOENT_;
	return ebpfu_perf_ring_output(r, data, size, misc, t);
}

/* ---- stack traces ---- */

long ebpfu_get_stackid(struct ebpfu_map *m, const uint64_t *ips, uint32_t nr, uint64_t flags,
		       const struct ebpfu_thread *t)
{
	if (m->type != EBPFU_MAP_STACK_TRACE ||
	    (flags & ~(EBPFU_F_SKIP_FIELD_MASK | EBPFU_F_USER_STACK | EBPFU_F_FAST_STACK_CMP | EBPFU_F_REUSE_STACKID)))
		return -EINVAL_;
	if (m->flags & EBPFU_F_STACK_BUILD_ID)
		return -EOPNOTSUPP_;
	uint32_t skip = (uint32_t)(flags & EBPFU_F_SKIP_FIELD_MASK), depth = m->value_size / 8 + skip;
	if (nr > depth)
		nr = depth;
	if (nr <= skip)
		return -EFAULT_;
	ips += skip;
	nr -= skip;
	uint32_t hash = jhash2((const uint8_t *)ips, nr * 2, 0);
	uint32_t id = hash & (m->n_buckets - 1), dead;
	uint64_t off = (uint64_t)id * m->elem_size;
	long err = lock_word(m, off + STACK_LOCK, t, &dead);
	if (err)
		return err;
	uint32_t cur = ld32(m, off + STACK_NR);
	int matches = cur != 0 && ld32(m, off + STACK_HASH) == hash;
	if (matches && (flags & EBPFU_F_FAST_STACK_CMP)) {
	} else if (matches && cur == nr && eq(m->base + off + STACK_DATA, ips, (uint64_t)nr * 8)) {
	} else if (cur != 0 && !(flags & EBPFU_F_REUSE_STACKID)) {
		err = -EEXIST_;
	} else {
		st32(m, off + STACK_NR, 0);
		cpy(m->base + off + STACK_DATA, ips, (uint64_t)nr * 8);
		st32(m, off + STACK_HASH, hash);
		st32(m, off + STACK_NR, nr);
	}
	unlock_word(m, off + STACK_LOCK);
	return err ? err : (long)id;
}

/* ---- recovery ---- */

void ebpfu_map_recover(struct ebpfu_map *m, const struct ebpfu_thread *t)
{
	uint64_t lock = m->ctl + EBPFU_CTL_LOCK_OFF;
	if (is_hash(m->type)) {
		uint32_t o = ld32(m, lock);
		if (o && !alive(t, o) && cas32(m, lock, o, t->owner)) {
			repair(m);
			write_unlock(m);
		}
	} else if (m->type == EBPFU_MAP_STACK_TRACE) {
		for (uint32_t b = 0; b < m->n_buckets; b++) {
			uint64_t off = (uint64_t)b * m->elem_size + STACK_LOCK;
			uint32_t o = ld32(m, off);
			if (o && !alive(t, o))
				cas32(m, off, o, 0);
		}
	} else if (m->type == EBPFU_MAP_RINGBUF || m->type == (uint32_t)EBPFU_PERF_RING) {
		uint32_t o = ld32(m, lock);
		if (o && !alive(t, o))
			cas32(m, lock, o, 0);
		if (m->type == EBPFU_MAP_RINGBUF) {
			for (uint64_t pos = ld64(m, 0); pos < ld64(m, EBPFU_PAGE_SIZE);) {
				uint64_t hdr = m->data_off + (pos & ring_mask(m));
				uint32_t l = ld32(m, hdr);
				if ((l & RING_BUSY) && !alive(t, ld32(m, hdr + 4)))
					cas32(m, hdr, l, (l & ~RING_BUSY) | RING_DISCARD);
				pos += round8((uint64_t)(l & ~(RING_BUSY | RING_DISCARD)) + 8);
			}
		}
	}
}
