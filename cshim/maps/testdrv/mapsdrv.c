/* mapsdrv: a test driver for cshim/maps, run by runtime/maps tests. It maps memfds it inherited
 * and applies commands read from stdin, one per line, printing one result line each:
 *
 *   open SLOT FD               map FD whole into SLOT             -> ok | err N
 *   owner N | cpu N            set the calling thread's owner id / CPU
 *   lookup SLOT KEYHEX         ebpfu_map_lookup_elem               -> value hex | null
 *   update SLOT KEYHEX VALHEX FLAGS                               -> rc
 *   delete SLOT KEYHEX                                            -> rc
 *   inc SLOT KEYHEX N          N times: lookup (update NOEXIST 0 when absent), atomic add 1
 *   churn SLOT N SEED          N random updates/deletes of keys 0..15 (u32 keys, u64 values)
 *   hold SLOT                  take the map's writer lock and sleep forever (to be killed)
 *   rbout SLOT DATAHEX FLAGS   ebpfu_ringbuf_output                -> rc
 *   rbres SLOT SIZE DATAHEX    reserve SIZE, write DATAHEX, leave busy -> offset | null
 *   rbsub SLOT OFF FLAGS / rbdis SLOT OFF FLAGS                     -> ok
 *   query SLOT FLAGS                                              -> value
 *   perf SLOT FLAGS DATAHEX MISC  (entry ref R resolves to slot R) -> rc
 *   stackid SLOT FLAGS IP,IP,...                                  -> rc
 *   recover SLOT                                                  -> ok
 *   bench SLOT OP N KEYHEX VALHEX  N operations OP (lookup, update, rbout, perf) -> ok
 */
#include "../maps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 16
static struct ebpfu_map maps[SLOTS];
static struct ebpfu_thread self;

static int unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = strlen(s);
	if (strcmp(s, "-") == 0)
		return 0;
	if (n % 2 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return (int)(n / 2);
}

static void puthex(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	if (n == 0)
		printf("-");
	printf("\n");
}

static struct ebpfu_map *resolve(uint32_t ref, void *arg)
{
	(void)arg;
	return ref < SLOTS && maps[ref].base ? &maps[ref] : NULL;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(void)
{
	static char line[1 << 20];
	static uint8_t a[1 << 18], b[1 << 18];
	self.owner = (uint32_t)getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof line, stdin)) {
		char cmd[32], s1[1 << 18], s2[1 << 18];
		unsigned slot;
		unsigned long long x, y;
		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, "%31s", cmd) != 1)
			continue;
		struct ebpfu_map *m = NULL;
		if (sscanf(line, "%*s %u", &slot) == 1 && slot < SLOTS)
			m = &maps[slot];
		if (!strcmp(cmd, "open") && m && sscanf(line, "%*s %*u %llu", &x) == 1) {
			struct stat st;
			void *p;
			if (fstat((int)x, &st) || (p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)x, 0)) == MAP_FAILED) {
				printf("err -1\n");
				continue;
			}
			int rc = ebpfu_map_open(m, p, (uint64_t)st.st_size);
			if (rc)
				printf("err %d\n", rc);
			else
				printf("ok\n");
		} else if (!strcmp(cmd, "owner") && sscanf(line, "%*s %llu", &x) == 1) {
			self.owner = (uint32_t)x;
			printf("ok\n");
		} else if (!strcmp(cmd, "cpu") && sscanf(line, "%*s %llu", &x) == 1) {
			self.cpu = (uint32_t)x;
			printf("ok\n");
		} else if (!strcmp(cmd, "lookup") && m && sscanf(line, "%*s %*u %s", s1) == 1) {
			unhex(s1, a, sizeof a);
			uint8_t *v = ebpfu_map_lookup_elem(m, a, &self);
			if (!v)
				printf("null\n");
			else
				puthex(v, m->value_size);
		} else if (!strcmp(cmd, "update") && m && sscanf(line, "%*s %*u %s %s %llu", s1, s2, &x) == 3) {
			unhex(s1, a, sizeof a);
			unhex(s2, b, sizeof b);
			printf("%ld\n", ebpfu_map_update_elem(m, a, b, x, &self));
		} else if (!strcmp(cmd, "delete") && m && sscanf(line, "%*s %*u %s", s1) == 1) {
			unhex(s1, a, sizeof a);
			printf("%ld\n", ebpfu_map_delete_elem(m, a, &self));
		} else if (!strcmp(cmd, "inc") && m && sscanf(line, "%*s %*u %s %llu", s1, &x) == 2) {
			unhex(s1, a, sizeof a);
			uint64_t zero = 0;
			for (unsigned long long i = 0; i < x; i++) {
				uint64_t *v = ebpfu_map_lookup_elem(m, a, &self);
				if (!v) {
					ebpfu_map_update_elem(m, a, &zero, 1, &self);
					v = ebpfu_map_lookup_elem(m, a, &self);
				}
				if (v)
					__atomic_add_fetch(v, 1, __ATOMIC_SEQ_CST);
			}
			printf("ok\n");
		} else if (!strcmp(cmd, "churn") && m && sscanf(line, "%*s %*u %llu %llu", &x, &y) == 2) {
			uint64_t s = y | 1;
			for (unsigned long long i = 0; i < x; i++) {
				uint32_t k = (uint32_t)(rnd(&s) % 16);
				uint64_t v = rnd(&s);
				if (rnd(&s) % 3)
					ebpfu_map_update_elem(m, &k, &v, 0, &self);
				else
					ebpfu_map_delete_elem(m, &k, &self);
			}
			printf("ok\n");
		} else if (!strcmp(cmd, "hold") && m) {
			__atomic_store_n((uint32_t *)(m->base + m->ctl + EBPFU_CTL_LOCK_OFF), self.owner, __ATOMIC_SEQ_CST);
			printf("held\n");
			fflush(stdout);
			for (;;)
				pause();
		} else if (!strcmp(cmd, "rbout") && m && sscanf(line, "%*s %*u %s %llu", s1, &x) == 2) {
			int n = unhex(s1, a, sizeof a);
			printf("%ld\n", ebpfu_ringbuf_output(m, a, (uint64_t)n, x, &self));
		} else if (!strcmp(cmd, "rbres") && m && sscanf(line, "%*s %*u %llu %s", &x, s1) == 2) {
			int n = unhex(s1, a, sizeof a);
			uint8_t *r = ebpfu_ringbuf_reserve(m, x, 0, &self);
			if (!r) {
				printf("null\n");
				continue;
			}
			memcpy(r, a, (size_t)n);
			printf("%llu\n", (unsigned long long)(r - m->base));
		} else if ((!strcmp(cmd, "rbsub") || !strcmp(cmd, "rbdis")) && m &&
			   sscanf(line, "%*s %*u %llu %llu", &x, &y) == 2) {
			if (cmd[2] == 's')
				ebpfu_ringbuf_submit(m, m->base + x, y);
			else
				ebpfu_ringbuf_discard(m, m->base + x, y);
			printf("ok\n");
		} else if (!strcmp(cmd, "query") && m && sscanf(line, "%*s %*u %llu", &x) == 1) {
			printf("%llu\n", (unsigned long long)ebpfu_ringbuf_query(m, x));
		} else if (!strcmp(cmd, "perf") && m && sscanf(line, "%*s %*u %llu %s %llu", &x, s1, &y) == 3) {
			int n = unhex(s1, a, sizeof a);
			printf("%ld\n", ebpfu_perf_event_output(m, x, a, (uint64_t)n, (uint16_t)y, &self, resolve, NULL));
		} else if (!strcmp(cmd, "stackid") && m && sscanf(line, "%*s %*u %llu %s", &x, s1) == 2) {
			uint64_t ips[256];
			uint32_t nr = 0;
			for (char *p = strtok(s1, ","); p && nr < 256; p = strtok(NULL, ","))
				ips[nr++] = strtoull(p, NULL, 16);
			printf("%ld\n", ebpfu_get_stackid(m, ips, nr, x, &self));
		} else if (!strcmp(cmd, "bench") && m && sscanf(line, "%*s %*u %31s %llu %s %s", s2, &x, s1, line) == 4) {
			unhex(s1, a, sizeof a);
			int n = unhex(line, b, sizeof b);
			volatile uint64_t sink = 0;
			if (!strcmp(s2, "lookup")) {
				for (unsigned long long i = 0; i < x; i++)
					sink += (uint64_t)(uintptr_t)ebpfu_map_lookup_elem(m, a, &self);
			} else if (!strcmp(s2, "update")) {
				for (unsigned long long i = 0; i < x; i++)
					sink += (uint64_t)ebpfu_map_update_elem(m, a, b, 0, &self);
			} else if (!strcmp(s2, "rbout")) {
				for (unsigned long long i = 0; i < x; i++) {
					ebpfu_ringbuf_output(m, b, (uint64_t)n, EBPFU_RB_NO_WAKEUP, &self);
					*(volatile uint64_t *)m->base = ebpfu_ringbuf_query(m, 3); /* consume all */
				}
			} else if (!strcmp(s2, "perf")) {
				for (unsigned long long i = 0; i < x; i++) {
					sink += (uint64_t)ebpfu_perf_event_output(m, EBPFU_F_CURRENT_CPU, b, (uint64_t)n, 2, &self, resolve, NULL);
					struct ebpfu_map *r = resolve(1, NULL);
					*(volatile uint64_t *)(r->base + 1032) = *(volatile uint64_t *)(r->base + 1024);
				}
			}
			(void)sink;
			printf("ok\n");
		} else if (!strcmp(cmd, "recover") && m) {
			ebpfu_map_recover(m, &self);
			printf("ok\n");
		} else {
			printf("bad command: %s\n", line);
		}
	}
	return 0;
}
