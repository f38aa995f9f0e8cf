/* The native side of `make bench`: times each benchmark program compiled by clang -O2 for this
 * machine, on the same input and the same way as ebpfu-bench times the executors (best of five
 * batches, each about a fifth of the time given). bench.sh generates progs.h, the table of
 * programs. Usage: driver INPUT_FILE SECONDS prints NAME RESULT_HEX NS_PER_RUN per program;
 * driver --input FILE writes the benchmark input: 4 KiB from a fixed linear congruential
 * generator. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"
#include "progs.h" /* PROG(name) lines */

#define PROG(name) u64 name(u8 *buf, u64 len);
PROGS
#undef PROG

static const struct {
	const char *name;
	u64 (*fn)(u8 *, u64);
} progs[] = {
#define PROG(name) {#name, name},
	PROGS
#undef PROG
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static volatile u64 sink;

static double batch(u64 (*volatile fn)(u8 *, u64), u8 *buf, u64 len, long iters)
{
	double start = now();
	for (long i = 0; i < iters; i++)
		sink = fn(buf, len);
	return now() - start;
}

static int write_input(const char *path)
{
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return 1;
	}
	u64 x = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < 4096; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		fputc((int)(x >> 56), f);
	}
	return fclose(f) != 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && argv[1][0] == '-')
		return write_input(argv[2]);
	if (argc != 3) {
		fprintf(stderr, "usage: %s INPUT_FILE SECONDS\n", argv[0]);
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	static u8 buf[1 << 20];
	u64 len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	double slice = atof(argv[2]) * 1e9 / 5;

	for (unsigned p = 0; p < sizeof(progs) / sizeof(progs[0]); p++) {
		long iters = 1;
		while (batch(progs[p].fn, buf, len, iters) < slice / 4 && iters < (1L << 30))
			iters *= 2;
		iters *= 4;
		double best = 1e300;
		for (int b = 0; b < 5; b++) {
			double t = batch(progs[p].fn, buf, len, iters) / iters;
			if (t < best)
				best = t;
		}
		printf("%s %llx %.3f\n", progs[p].name, progs[p].fn(buf, len), best);
	}
	return 0;
}
