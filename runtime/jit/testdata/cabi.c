/* A C caller of compiled code, as the agent calls it: reads the code from a file, maps it
 * read+execute, fills a block with C helpers, a 4 KiB stack on its own stack, one region, maps;
 * calls the entry and prints "r0 fault fault_pc". Helper 7 mixes its arguments and checks that
 * the block arrives in r9 and that the stack is 16-byte aligned; helper 5 returns 42. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ebpfu_ctx.h"

static struct ebpfu_ctx *the_blk;
static int misaligned;

static uint64_t ktime(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, struct ebpfu_ctx *blk)
{
	return 42;
}

__attribute__((noinline)) static void check_alignment(void)
{
	/* Called from a helper: this frame's base is 16-byte aligned iff the helper's call was. */
	if ((uintptr_t)__builtin_frame_address(0) % 16 != 0)
		misaligned = 1;
}

static uint64_t mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, struct ebpfu_ctx *blk)
{
	check_alignment();
	if (blk != the_blk)
		return 0xbad;
	return a * 3 ^ b * 5 ^ c * 7 ^ d * 11 ^ e * 13;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: cabi CODE ENTRY BUDGET\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f)
		return 2;
	static unsigned char text[1 << 20];
	size_t n = fread(text, 1, sizeof text, f);
	fclose(f);
	void *code = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memcpy(code, text, n);
	mprotect(code, n, PROT_READ | PROT_EXEC);

	static ebpfu_helper_fn helpers[200];
	helpers[5] = ktime;
	helpers[7] = mix;
	static uint64_t mem[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint64_t maps[1] = {0x1234};
	uint64_t values[1] = {(uint64_t)&mem[2]};
	unsigned char stack[EBPFU_STACK_SIZE] __attribute__((aligned(16)));
	struct ebpfu_ctx blk;
	memset(&blk, 0, sizeof blk);
	blk.helpers = helpers;
	blk.nhelpers = 200;
	blk.maps = maps;
	blk.map_values = values;
	blk.stack = (uint64_t)stack;
	blk.budget = strtoull(argv[3], NULL, 0);
	blk.nregions = 1;
	blk.regions[0] = (struct ebpfu_region){(uint64_t)mem, (uint64_t)(mem + 8), 1};
	the_blk = &blk;

	ebpfu_entry_fn entry = (ebpfu_entry_fn)((char *)code + strtoul(argv[2], NULL, 0));
	uint64_t r0 = entry(&blk, (uint64_t)mem, sizeof mem, 0, 0, 0);
	printf("%llu %u %u %llu\n", (unsigned long long)r0, blk.fault, blk.fault_pc,
	       (unsigned long long)mem[0]);
	return misaligned ? 3 : 0;
}
