/* The context block of ebpfu's JIT-compiled code (runtime/jit, docs/jit.md): what a caller of
 * compiled code fills before calling its entry point, and what the code reports back.
 * runtime/jit's tests compile a C caller against this header, so it stays true. */
#ifndef EBPFU_CTX_H
#define EBPFU_CTX_H

#include <stddef.h>
#include <stdint.h>

#define EBPFU_STACK_SIZE 4096 /* 8 frames of 512 bytes; r10 starts at stack + 4096 */
#define EBPFU_MAX_REGIONS 16

/* Fault codes left in ebpfu_ctx.fault. */
enum {
	EBPFU_FAULT_NONE = 0,
	EBPFU_FAULT_BOUNDS = 1, /* a checked access outside the live stack and the regions */
	EBPFU_FAULT_BUDGET = 2, /* the instruction budget is exhausted */
	EBPFU_FAULT_DEPTH = 3,  /* a bpf-to-bpf call deeper than 8 frames */
	EBPFU_FAULT_CALLX = 4,  /* a helper number >= nhelpers, or a NULL entry for callx */
	EBPFU_FAULT_ALIGN = 5,  /* a misaligned atomic access */
	EBPFU_FAULT_PACKET = 6, /* LD_ABS/LD_IND with packet == 0 */
	EBPFU_FAULT_FELL_OFF = 7, /* execution ran past the last instruction of a function */
};

struct ebpfu_region {
	uint64_t start;    /* first byte */
	uint64_t end;      /* one past the last byte */
	uint64_t writable; /* non-zero: stores and atomics allowed */
};

struct ebpfu_ctx;

/* A helper: r1-r5 as arguments, then the block; returns r0. */
typedef uint64_t (*ebpfu_helper_fn)(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
				    struct ebpfu_ctx *blk);

struct ebpfu_ctx {
	const ebpfu_helper_fn *helpers;  /* in: helpers[i] is helper number i */
	uint64_t nhelpers;               /* in: entries in helpers */
	const uint64_t *maps;            /* in: what lddw of map i yields */
	const uint64_t *map_values;      /* in: base address of map i's value (lddw of a map value) */
	uint64_t stack;                  /* in: lowest address of the EBPFU_STACK_SIZE-byte stack */
	uint64_t budget;                 /* in: instruction budget, 0 for none; scratch */
	uint64_t nregions;               /* in: entries in regions */
	struct ebpfu_region regions[EBPFU_MAX_REGIONS]; /* in: memory checked accesses may touch */
	uint64_t packet;                 /* in: the packet of LD_ABS/LD_IND, 0 for none */
	uint64_t packet_len;             /* in: its length */
	uint32_t fault;                  /* out: 0 or an EBPFU_FAULT_ code */
	uint32_t fault_pc;               /* out: instruction index of the fault */
	uint64_t fault_addr;             /* out: address of a refused access */
	uint64_t fault_info;             /* out: its size | 0x80 for a write */
	uint64_t scratch[13];            /* used by the code */
};

/* The entry point of compiled code (System V ABI). */
typedef uint64_t (*ebpfu_entry_fn)(struct ebpfu_ctx *blk, uint64_t r1, uint64_t r2, uint64_t r3,
				   uint64_t r4, uint64_t r5);

_Static_assert(offsetof(struct ebpfu_ctx, regions) == 0x38, "regions");
_Static_assert(offsetof(struct ebpfu_ctx, packet) == 0x1b8, "packet");
_Static_assert(offsetof(struct ebpfu_ctx, fault) == 0x1c8, "fault");
_Static_assert(offsetof(struct ebpfu_ctx, fault_info) == 0x1d8, "fault_info");
_Static_assert(sizeof(struct ebpfu_ctx) == 0x248, "size");

#endif
