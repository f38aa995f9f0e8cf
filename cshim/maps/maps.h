/* ebpfu maps, program side: the operations eBPF helpers do on maps in shared memory, on the
 * layout of docs/maps.md (runtime/maps is the Go implementation; tests hold the two to the same
 * results).
 *
 * Plain C99 plus GCC atomics, no libc: the code allocates nothing, takes no lock a signal could
 * deadlock on (owner locks answer a recursion with -EBUSY), and makes only raw system calls
 * (sched_yield while waiting, futex to wake a waiting server, open/read/close of /proc/ID/stat
 * to tell whether a lock holder died). Functions return 0 or a negative errno, as helpers do.
 */
#ifndef EBPFU_MAPS_H
#define EBPFU_MAPS_H

#include <stdint.h>

/* Map types (enum bpf_map_type). */
enum {
	EBPFU_MAP_HASH = 1,
	EBPFU_MAP_ARRAY = 2,
	EBPFU_MAP_PROG_ARRAY = 3,
	EBPFU_MAP_PERF_EVENT_ARRAY = 4,
	EBPFU_MAP_PERCPU_HASH = 5,
	EBPFU_MAP_PERCPU_ARRAY = 6,
	EBPFU_MAP_STACK_TRACE = 7,
	EBPFU_MAP_CGROUP_ARRAY = 8,
	EBPFU_MAP_LRU_HASH = 9,
	EBPFU_MAP_LRU_PERCPU_HASH = 10,
	EBPFU_MAP_RINGBUF = 27,
	EBPFU_PERF_RING = (int)0xeb000001, /* a perf event buffer (not a map) */
};

#define EBPFU_PAGE_SIZE 4096u
#define EBPFU_CTL_MAGIC 0x70616d7566706265ull /* "ebpfumap" */
#define EBPFU_LAYOUT_VERSION 1u

/* Control page (the last page of every object). */
#define EBPFU_CTL_MAGIC_OFF 0
#define EBPFU_CTL_VERSION_OFF 8
#define EBPFU_CTL_TYPE_OFF 12
#define EBPFU_CTL_KEY_SIZE_OFF 16
#define EBPFU_CTL_VALUE_SIZE_OFF 20
#define EBPFU_CTL_MAX_ENTRIES_OFF 24
#define EBPFU_CTL_FLAGS_OFF 28
#define EBPFU_CTL_NCPU_OFF 32
#define EBPFU_CTL_ID_OFF 36
#define EBPFU_CTL_NAME_OFF 40
#define EBPFU_CTL_SEED_OFF 56
#define EBPFU_CTL_ELEM_SIZE_OFF 64
#define EBPFU_CTL_NBUCKETS_OFF 68
#define EBPFU_CTL_NELEMS_OFF 72
#define EBPFU_CTL_NEXTRA_OFF 76
#define EBPFU_CTL_DATA_OFF_OFF 80
#define EBPFU_CTL_DATA_SIZE_OFF 88
#define EBPFU_CTL_BUCKETS_OFF_OFF 96
#define EBPFU_CTL_FILE_SIZE_OFF 104
#define EBPFU_CTL_RING_CPU_OFF 112
#define EBPFU_CTL_FROZEN_OFF 192
#define EBPFU_CTL_FREE_HEAD_OFF 256
#define EBPFU_CTL_EXTRA_HEAD_OFF 320
#define EBPFU_CTL_BUMP_OFF 384
#define EBPFU_CTL_EXTRA_BUMP_OFF 388
#define EBPFU_CTL_TICK_OFF 448
#define EBPFU_CTL_HAND_OFF 452
#define EBPFU_CTL_LOCK_OFF 512
#define EBPFU_CTL_NOTIFY_SEQ_OFF 576
#define EBPFU_CTL_WAITERS_OFF 580
#define EBPFU_CTL_PENDING_OFF 640
#define EBPFU_CTL_HEAD_OFF 640
#define EBPFU_CTL_LOST_OFF 704
#define EBPFU_CTL_PERF_SIZE_OFF 768
#define EBPFU_CTL_ENABLED_OFF 776
#define EBPFU_CTL_EVENT_ID_OFF 784

/* An owner id with this bit names a whole process, without recursion detection. */
#define EBPFU_SHARED_OWNER 0x80000000u

/* update flags */
#define EBPFU_ANY 0
#define EBPFU_NOEXIST 1
#define EBPFU_EXIST 2
#define EBPFU_F_LOCK 4

/* helper flags */
#define EBPFU_F_INDEX_MASK 0xffffffffull
#define EBPFU_F_CURRENT_CPU 0xffffffffull
#define EBPFU_F_SKIP_FIELD_MASK 0xffull
#define EBPFU_F_USER_STACK (1ull << 8)
#define EBPFU_F_FAST_STACK_CMP (1ull << 9)
#define EBPFU_F_REUSE_STACKID (1ull << 10)
#define EBPFU_F_STACK_BUILD_ID (1u << 5)
#define EBPFU_RB_NO_WAKEUP 1ull
#define EBPFU_RB_FORCE_WAKEUP 2ull

/* The calling thread: its owner id (gettid(), or EBPFU_SHARED_OWNER|pid), the CPU it runs on,
 * and how to tell whether another owner still runs (NULL: ebpfu_alive). */
struct ebpfu_thread {
	uint32_t owner;
	uint32_t cpu;
	int (*alive)(uint32_t owner);
};

/* An opened map or perf ring: parameters checked against the layout they imply, cached so that
 * nothing read later from shared memory can move an access outside the mapping. */
struct ebpfu_map {
	uint8_t *base; /* the mapping of the whole memfd, at offset 0 */
	uint64_t size;
	uint64_t ctl;
	uint32_t type, key_size, value_size, max_entries, flags, ncpu, seed;
	uint32_t elem_size, n_buckets, n_elems, n_extra;
	uint64_t data_off, data_size, buckets_off;
	uint64_t slot;    /* round_up(value_size, 8) */
	uint64_t val_off; /* hash: value offset in an element */
};

/* ebpfu_map_open checks the object of size bytes mapped (shared, read-write) at base. */
int ebpfu_map_open(struct ebpfu_map *m, void *base, uint64_t size);

/* bpf_map_lookup_elem: the address of key's value (t->cpu's for per-CPU maps), or 0. */
void *ebpfu_map_lookup_elem(struct ebpfu_map *m, const void *key, const struct ebpfu_thread *t);
/* bpf_map_update_elem from a program on t->cpu. */
long ebpfu_map_update_elem(struct ebpfu_map *m, const void *key, const void *value, uint64_t flags,
			   const struct ebpfu_thread *t);
/* bpf_map_delete_elem. */
long ebpfu_map_delete_elem(struct ebpfu_map *m, const void *key, const struct ebpfu_thread *t);
/* The object id in entry index of a PROG_ARRAY or PERF_EVENT_ARRAY: >0, or -E2BIG / -ENOENT. */
long ebpfu_map_ref(struct ebpfu_map *m, uint32_t index);
/* The bucket of key in a hash map (its head is the u32 at buckets_off + 4 * bucket). */
uint32_t ebpfu_map_bucket(struct ebpfu_map *m, const void *key);
/* Repairs what dead owners left behind (locks, taken elements, busy ringbuf records). */
void ebpfu_map_recover(struct ebpfu_map *m, const struct ebpfu_thread *t);

/* BPF ringbuf helpers. */
void *ebpfu_ringbuf_reserve(struct ebpfu_map *m, uint64_t size, uint64_t flags, const struct ebpfu_thread *t);
void ebpfu_ringbuf_submit(struct ebpfu_map *m, void *sample, uint64_t flags);
void ebpfu_ringbuf_discard(struct ebpfu_map *m, void *sample, uint64_t flags);
long ebpfu_ringbuf_output(struct ebpfu_map *m, const void *data, uint64_t size, uint64_t flags,
			  const struct ebpfu_thread *t);
uint64_t ebpfu_ringbuf_query(struct ebpfu_map *m, uint64_t flags);

/* bpf_perf_event_output: entry (flags & index mask, or t->cpu) of the PERF_EVENT_ARRAY arr refers
 * to a perf ring by id; resolve maps that id to the opened ring (NULL: -ENOENT). */
long ebpfu_perf_event_output(struct ebpfu_map *arr, uint64_t flags, const void *data, uint64_t size,
			     uint16_t misc, const struct ebpfu_thread *t,
			     struct ebpfu_map *(*resolve)(uint32_t ref, void *arg), void *arg);
/* Appends a PERF_RECORD_SAMPLE to one perf ring. */
long ebpfu_perf_ring_output(struct ebpfu_map *ring, const void *data, uint64_t size, uint16_t misc,
			    const struct ebpfu_thread *t);

/* bpf_get_stackid on a walked trace of nr ips (innermost first). */
long ebpfu_get_stackid(struct ebpfu_map *m, const uint64_t *ips, uint32_t nr, uint64_t flags,
		       const struct ebpfu_thread *t);

/* ebpfu_alive reports whether the thread or process named by owner runs (not a zombie). */
int ebpfu_alive(uint32_t owner);

#endif
