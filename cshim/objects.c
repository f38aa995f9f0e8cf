/* Objects of the attachments table mapped into this process (maps, perf rings, program code),
 * and the agent's memory for its own records. A server holds each object open; the agent opens
 * /proc/PID/fd/FD of the holder, checks the inode, maps the file and closes the descriptor, so
 * it keeps no descriptor in the host.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "agent.h"

#define NOBJ 4096 /* objects a process maps in its life (none is unmapped yet) */

static struct obj objs[NOBJ];

static void fmt_u32(char *p, uint32_t v, char **end)
{
	char tmp[12];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n)
		*p++ = tmp[--n];
	*end = p;
}

/* table_obj reads the entry of object (kind, id) of the table's object index into e. */
static int table_obj(uint32_t kind, uint32_t id, uint8_t e[EBPFU_ATT_OBJ_SIZE])
{
	const uint8_t *tab = ebpfu_agent.table;
	if (!tab || id == 0 || id == EBPFU_OBJ_DELETED)
		return -1;
	uint32_t n = ld32(tab, EBPFU_ATT_HDR_NOBJS);
	if (n == 0 || n > EBPFU_ATT_NOBJS)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = EBPFU_ATT_OBJS + (uint64_t)((id + i) % n) * EBPFU_ATT_OBJ_SIZE;
		if (ebpfu_table_read(off, e, EBPFU_ATT_OBJ_SIZE) < 0)
			return -1;
		uint32_t eid = ld32(e, EBPFU_OBJ_ID);
		if (eid == id && ld32(e, EBPFU_OBJ_KIND) == kind)
			return 0;
		if (eid == 0)
			return -1;
	}
	return -1;
}

/* obj_map opens and maps the object an entry describes. */
static int obj_map(const uint8_t *e, uint32_t id, struct obj *o)
{
	uint32_t kind = ld32(e, EBPFU_OBJ_KIND), pid = ld32(e, EBPFU_OBJ_PID), fd = ld32(e, EBPFU_OBJ_FD);
	uint64_t ino = ld64(e, EBPFU_OBJ_INO), size = ld64(e, EBPFU_OBJ_SIZE);
	if (kind != EBPFU_OBJ_MAP && kind != EBPFU_OBJ_CODE && kind != EBPFU_OBJ_RING)
		return -1;
	if (ld32(e, EBPFU_OBJ_ID) != id || size == 0 || size % 4096 || size > (1ull << 36))
		return -1;
	char path[64] = "/proc/", *p;
	fmt_u32(path + 6, pid, &p);
	ecopy(p, "/fd/", 4);
	fmt_u32(p + 4, fd, &p);
	*p = 0;
	int prot = PROT_READ | PROT_WRITE, flags = O_RDWR;
	if (kind == EBPFU_OBJ_CODE) {
		prot = PROT_READ | PROT_EXEC;
		flags = O_RDONLY;
	}
	long f = esys3(SYS_open, path, flags | O_CLOEXEC, 0);
	if (f < 0)
		return -1;
	struct stat st;
	if (esys2(SYS_fstat, f, &st) < 0 || (uint64_t)st.st_ino != ino || (uint64_t)st.st_size < size) {
		esys1(SYS_close, f);
		return -1;
	}
	long base = esys6(SYS_mmap, 0, (long)size, prot, MAP_SHARED, f, 0);
	esys1(SYS_close, f);
	if (base < 0 && base > -4096)
		return -1;
	o->kind = kind;
	o->base = (uint8_t *)base;
	o->size = size;
	if (kind == EBPFU_OBJ_MAP || kind == EBPFU_OBJ_RING) {
		if (ebpfu_map_open(&o->map, o->base, size) < 0) {
			esys2(SYS_munmap, base, size);
			return -1;
		}
	}
	return 0;
}

/* ebpfu_obj_get returns object (kind, id) mapped into this process, mapping it on first use
 * (from a sync or, for perf rings, from a helper: entries are claimed with an atomic exchange
 * and published with the id last). */
struct obj *ebpfu_obj_get(uint32_t kind, uint32_t id)
{
	if (id == 0 || id >= 0x80000000u)
		return 0;
	for (int i = 0; i < NOBJ; i++) {
		uint32_t have = __atomic_load_n(&objs[i].id, __ATOMIC_ACQUIRE);
		if (have == id && objs[i].kind == kind && !__atomic_load_n(&objs[i].retiring, __ATOMIC_ACQUIRE))
			return &objs[i];
		if (have == 0)
			break;
	}
	uint8_t e[EBPFU_ATT_OBJ_SIZE] __attribute__((aligned(8)));
	if (table_obj(kind, id, e) < 0)
		return 0;
	struct obj tmp;
	ezero(&tmp, sizeof tmp);
	if (obj_map(e, id, &tmp) < 0)
		return 0;
	for (int i = 0; i < NOBJ; i++) {
		uint32_t have = __atomic_load_n(&objs[i].id, __ATOMIC_ACQUIRE);
		if (have == id && objs[i].kind == kind && !__atomic_load_n(&objs[i].retiring, __ATOMIC_ACQUIRE)) {
			esys2(SYS_munmap, tmp.base, tmp.size); /* mapped meanwhile */
			return &objs[i];
		}
		if ((have == 0 || have == EBPFU_OBJ_FREE) &&
		    __atomic_compare_exchange_n(&objs[i].id, &have, 0x80000000u | id, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			objs[i].kind = tmp.kind; /* == kind: obj_map checked it */
			objs[i].base = tmp.base;
			objs[i].size = tmp.size;
			objs[i].map = tmp.map;
			objs[i].retiring = 0;
			__atomic_store_n(&objs[i].id, id, __ATOMIC_RELEASE);
			return &objs[i];
		}
	}
	esys2(SYS_munmap, tmp.base, tmp.size);
	return 0;
}

struct obj *ebpfu_obj_at(uint32_t i)
{
	if (i >= NOBJ || __atomic_load_n(&objs[i].id, __ATOMIC_ACQUIRE) == 0)
		return 0;
	return &objs[i];
}

/* ---- the agent's own records: a bump allocator over anonymous memory (syncs only) ---- */

static uint8_t *bump_cur, *bump_end;

void *ebpfu_bump(uint64_t size)
{
	size = (size + 15) & ~15ull;
	if (size > 65536)
		return 0;
	if (!bump_cur || (uint64_t)(bump_end - bump_cur) < size) {
		long m = esys6(SYS_mmap, 0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m < 0 && m > -4096)
			return 0;
		bump_cur = (uint8_t *)m;
		bump_end = bump_cur + 65536;
	}
	void *p = bump_cur;
	bump_cur += size;
	return p;
}
