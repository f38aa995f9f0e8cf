/* The attachments table: the per-user file through which servers tell agents what to patch
 * (docs/probes.md). server/attach/table.go writes it and holds the same offsets; this header is
 * the agent's view. All fields are little-endian, naturally aligned, and hold no pointer: what
 * depends on a process (load addresses) is computed by the agent from module-relative values.
 */
#ifndef EBPFU_ATTACH_H
#define EBPFU_ATTACH_H

#include <stdint.h>

#define EBPFU_ATT_FILE "attach"   /* $STATE/attach */
#define EBPFU_PROCS_DIR "procs"   /* $STATE/procs/<pid>: one empty file per traced process */
#define EBPFU_ATT_MAGIC 0x3174746175706265ull /* "ebpuatt1" */
#define EBPFU_ATT_VERSION 1u
#define EBPFU_DOORBELL_SIGNAL 58 /* SIGRTMAX-6 */
#define EBPFU_DOORBELL_VALUE 0x65627066 /* si_value.sival_int of a server's ring ("ebpf") */

/* Header, at offset 0. */
#define EBPFU_ATT_HDR_MAGIC 0x00     /* u64 */
#define EBPFU_ATT_HDR_VERSION 0x08   /* u32 */
#define EBPFU_ATT_HDR_NSLOTS 0x0c    /* u32 attachment slots */
#define EBPFU_ATT_HDR_NOBJS 0x10     /* u32 object entries */
#define EBPFU_ATT_HDR_NCPU 0x14      /* u32 CPUs programs see: per-CPU slots, leases */
#define EBPFU_ATT_HDR_GEN 0x18       /* u64 bumped after every change of slots */
#define EBPFU_ATT_HDR_BUDGET 0x20    /* u64 instruction budget of probe runs (0: none) */
#define EBPFU_ATT_HDR_NEXT_ID 0x28   /* u64 last attachment id given */

#define EBPFU_ATT_DIR 0x800         /* u64[nslots]: the id of slot i's attachment, 0 when free.
				     * Agents scan this page, not the slots. */
#define EBPFU_ATT_STATUS 0x1000     /* nslots x 64 bytes: what agents report of slot i */
#define EBPFU_ATT_STATUS_SIZE 64
#define EBPFU_STATUS_NAPPLIED 0x00  /* u32 processes that applied it (counted up, never down) */
#define EBPFU_STATUS_NERR 0x04      /* u32 processes that failed to */
#define EBPFU_STATUS_ERR_PID 0x08   /* u32 the last one */
#define EBPFU_STATUS_ERR 0x0c       /* char[52] its one-line reason */
#define EBPFU_ATT_LEASES 0x8000      /* ncpu x 64 bytes: u32 owner tid (0: free) */
#define EBPFU_ATT_LEASE_SIZE 64
#define EBPFU_ATT_MAX_CPUS 512
#define EBPFU_ATT_MAPPED 0x10000     /* agents map the table up to here and read the rest */
#define EBPFU_ATT_OBJS 0x10000       /* nobjs x 32 bytes, open addressing from id % nobjs */
#define EBPFU_ATT_OBJ_SIZE 32
#define EBPFU_ATT_SLOTS 0x40000      /* nslots x 4096 bytes */
#define EBPFU_ATT_SLOT_SIZE 4096
#define EBPFU_ATT_NSLOTS 256
#define EBPFU_ATT_NOBJS 4096
#define EBPFU_ATT_FILE_SIZE (EBPFU_ATT_SLOTS + EBPFU_ATT_NSLOTS * EBPFU_ATT_SLOT_SIZE)

/* Object entry: where an agent finds an object's memory (a memfd or unnamed state file held
 * open by a server process). Objects are named by kind and id together: maps, programs' code and
 * perf rings have id spaces of their own. */
#define EBPFU_OBJ_ID 0x00   /* u32: 0 free, 0xffffffff deleted */
#define EBPFU_OBJ_KIND 0x04 /* u32 */
#define EBPFU_OBJ_PID 0x08  /* u32 holder process */
#define EBPFU_OBJ_FD 0x0c   /* u32 its fd: the agent opens /proc/PID/fd/FD */
#define EBPFU_OBJ_INO 0x10  /* u64 inode of the file, checked after opening */
#define EBPFU_OBJ_SIZE 0x18 /* u64 bytes to map */
#define EBPFU_OBJ_DELETED 0xffffffffu

enum {
	EBPFU_OBJ_MAP = 1,  /* a map (runtime/maps layout), mapped read-write shared */
	EBPFU_OBJ_CODE = 2, /* JIT output, mapped read+execute */
	EBPFU_OBJ_RING = 3, /* a perf event ring, mapped read-write shared */
};

/* Attachment slot. */
#define EBPFU_SLOT_SEQ 0x000        /* u32 odd while a writer changes the slot */
#define EBPFU_SLOT_STATE 0x004      /* u32 0 free, 1 active */
#define EBPFU_SLOT_ID 0x008         /* u64 attachment id (never reused) */
#define EBPFU_SLOT_FLAGS 0x010      /* u32 EBPFU_SLOT_F_* */
#define EBPFU_SLOT_PROG_ID 0x014    /* u32 the program's id (diagnostics) */
#define EBPFU_SLOT_DEV_MAJOR 0x018  /* u32 device of the probed file */
#define EBPFU_SLOT_DEV_MINOR 0x01c  /* u32 */
#define EBPFU_SLOT_INO 0x020        /* u64 inode of the probed file */
#define EBPFU_SLOT_OFFSET 0x028     /* u64 file offset of the probe point */
#define EBPFU_SLOT_COOKIE 0x030     /* u64 bpf_get_attach_cookie */
#define EBPFU_SLOT_DISP_LEN 0x038   /* u32 bytes displaced by the jump (>= 5; int3: >= 1) */
#define EBPFU_SLOT_COPY_LEN 0x03c   /* u32 bytes of the relocated copy */
#define EBPFU_SLOT_NFIX 0x040       /* u32 fixups */
#define EBPFU_SLOT_NBOUND 0x044     /* u32 instruction boundaries */
#define EBPFU_SLOT_CODE_OBJ 0x048   /* u32 object id of the program's code */
#define EBPFU_SLOT_CODE_ENTRY 0x04c /* u32 offset of the entry point in it */
#define EBPFU_SLOT_NMAPS 0x050      /* u32 maps of the program */
#define EBPFU_SLOT_PID 0x054        /* u32 only this process (perf_event_open's pid), 0: every one */
#define EBPFU_SLOT_REF_CTR 0x058    /* u64 file offset of a USDT semaphore (u16), 0: none */
#define EBPFU_SLOT_ORIG 0x060       /* u8[32] original bytes at the probe point */
#define EBPFU_SLOT_COPY 0x080       /* u8[128] relocated displaced instructions */
#define EBPFU_SLOT_FIXUPS 0x100     /* fixup[16]: u16 at, u16 end, u32 kind, s64 target */
#define EBPFU_SLOT_BOUNDS 0x200     /* u8[16][2]: instruction starts, orig offset, copy offset */
#define EBPFU_SLOT_MAP_IDS 0x220    /* u32[64] object ids of the program's maps, by map index */
#define EBPFU_SLOT_PATH 0x400       /* char[1024] the probed file's path (diagnostics, fallback) */

#define EBPFU_SLOT_F_RETPROBE 1u
#define EBPFU_SLOT_F_FUNC_ENTRY 2u /* the probe point is a function's first instruction */
#define EBPFU_SLOT_F_INT3 4u       /* patched with int3, not a jump: a 5-byte jump does not fit
				    * there; DISP_LEN is the first instruction's length (1-15),
				    * the copy that instruction relocated */

#define EBPFU_MAX_ORIG 32
#define EBPFU_MAX_COPY 128
#define EBPFU_MAX_FIXUPS 16
#define EBPFU_MAX_BOUNDS 16
#define EBPFU_MAX_MAPS 64

enum {
	EBPFU_FIX_REL32 = 1, /* int32 at `at` = probe + target - (copy + end) */
	EBPFU_FIX_ABS64 = 2, /* uint64 at `at` = probe + target */
};

#endif
