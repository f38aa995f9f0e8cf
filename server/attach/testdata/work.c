/* work: the workload of the agent tests. It reads commands on stdin, one a line, and answers
 * each with one line on stdout, so a test can attach between commands.
 *
 *   call N A B     N calls of probed(A, B+i); prints the sum of the results
 *   threads T N    T threads each make N calls of probed; prints the total
 *   fork N         fork without exec; parent and child each make N calls; prints "done"
 *   str S          probed_str(S); prints its result
 *   deep N         N calls of outer(), which calls probed() through jumpy()
 *   jmp N          N calls of probed() from a setjmp/longjmp loop
 *   hammer T       T threads call probed in a loop until "stop"; prints "started"
 *   stop           stops them; prints the calls they made
 *   slow T         T threads call slowcopy in a loop until "stop"; prints "started"
 *   forklater N    forks a child that waits; prints "child PID"
 *   release        the child makes N calls of probed and exits; prints "done STATUS"
 *   host58         installs its own handler of signal 58, raises it 3 times; prints the count
 *   idle T         T threads that block every signal sleep until the process exits
 *   bench N        N calls of probed; prints the nanoseconds per call
 *   getpid N       N calls of getpid(); prints "done"
 *   bytes          prints the first 16 bytes of probed in hex
 *   tiny N         N calls each of tiny(i) and tiny_next(i), branchy(i % 5); prints the sum
 *   trap N         installs its own SIGTRAP handler, runs N int3 between calls of tiny; prints
 *                  the traps its handler got and the sum of the calls
 *   benchtiny N    N calls of tiny; prints the nanoseconds per call
 *   blocked N      N calls of tiny with every signal blocked by pthread_sigmask, N more with
 *                  sigprocmask, one in a SIGUSR1 handler that blocks every signal; prints the sum
 *   rawtrap        sets SIGTRAP's default action (and no core dump) and runs an int3: dies
 *   tinyhammer T   T threads call tiny in a loop until "tinystop"; prints "started"
 *   tinystop       stops them; prints the calls they made and how many returned a wrong value
 *   exit           exits with status 7
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int stop_flag;
static long counts[64];

__attribute__((noinline, aligned(16))) long probed(long a, long b)
{
	__asm__ volatile("" ::: "memory");
	return a + b;
}

__attribute__((noinline, aligned(16))) long probed_str(const char *s, long n)
{
	__asm__ volatile("" ::: "memory");
	return (long)strlen(s) + n;
}

__attribute__((noinline)) long jumpy(long a)
{
	return probed(a, 1) + 1;
}

__attribute__((noinline)) long outer(long a)
{
	return jumpy(a) * 2;
}

/* slowcopy(dst, src, n) spends its time in a rep movsb four bytes after its entry: a thread
 * stopped in it is inside the bytes a probe's jump displaces. */
void slowcopy(void *dst, const void *src, unsigned long n);
__asm__(".text\n"
	".globl slowcopy\n"
	".type slowcopy, @function\n"
	".p2align 4\n"
	"slowcopy:\n"
	"\tnop\n"
	"\tmov %rdx, %rcx\n"
	"\trep movsb\n"
	"\tret\n"
	".size slowcopy, .-slowcopy\n");

/* flagcheck(a, b, df) compares a with b (with the direction flag set when df is not 0) and
 * returns the flags a probe at flagcheck_at, between the compare and their use, must keep:
 * CF PF AF ZF SF DF OF. */
unsigned long flagcheck(unsigned long a, unsigned long b, unsigned long df);
__asm__(".text\n"
	".globl flagcheck\n"
	".type flagcheck, @function\n"
	".p2align 4\n"
	"flagcheck:\n"
	"\ttest %rdx, %rdx\n"
	"\tjz 1f\n"
	"\tstd\n"
	"1:\tcmp %rsi, %rdi\n"
	".globl flagcheck_at\n"
	".type flagcheck_at, @function\n"
	"flagcheck_at:\n"
	"\tnopl 0(%rax,%rax,1)\n"
	"\tpushfq\n"
	"\tpopq %rax\n"
	"\tcld\n"
	"\tandl $0xcd5, %eax\n"
	"\tret\n"
	".size flagcheck, .-flagcheck\n");

/* tiny(a) returns 2a (32 bits) in 4 bytes and is followed at once by tiny_next(a), 2a + 1:
 * a 5-byte jump does not fit at any of their instructions. branchy(n) returns n + (n-1) + ... + 1
 * (n for n <= 0) with a loop that jumps back 2 bytes after its entry, into the bytes a jump at
 * the entry would displace. */
long tiny(long a);
long tiny_next(long a);
long branchy(long n);
__asm__(".text\n"
	".globl tiny\n"
	".type tiny, @function\n"
	".p2align 4\n"
	"tiny:\n"
	"\tlea (%rdi,%rdi), %eax\n"
	"\tret\n"
	".size tiny, .-tiny\n"
	".globl tiny_next\n"
	".type tiny_next, @function\n"
	"tiny_next:\n"
	"\tlea 1(%rdi,%rdi), %eax\n"
	"\tret\n"
	".size tiny_next, .-tiny_next\n"
	".globl branchy\n"
	".type branchy, @function\n"
	".p2align 4\n"
	"branchy:\n"
	"\txor %eax, %eax\n"
	"1:\tadd %rdi, %rax\n"
	"\tdec %rdi\n"
	"\tjg 1b\n"
	"\tret\n"
	".size branchy, .-branchy\n");

static volatile long traps;

static void on_trap(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	traps++;
}

static volatile long tiny_bad;

static void *hammer_tiny(void *arg)
{
	long i = (long)arg, n = 0;
	while (!stop_flag) {
		if (tiny(n) != (long)(unsigned)(2 * n))
			tiny_bad++;
		n++;
	}
	counts[i] = n;
	return 0;
}

static volatile long in_handler;

static void on_usr1(int sig)
{
	(void)sig;
	in_handler += tiny(21);
}

static char slow_src[64][1 << 16], slow_dst[64][1 << 16];

static void *slow(void *arg)
{
	long i = (long)arg, n = 0;
	while (!stop_flag) {
		slowcopy(slow_dst[i], slow_src[i], sizeof slow_src[i]);
		n++;
	}
	counts[i] = n;
	return 0;
}

static void *idle(void *arg)
{
	sigset_t all;
	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, 0);
	for (;;)
		pause();
	return 0;
}

static volatile int got58;

static void on58(int sig)
{
	(void)sig;
	got58++;
}

static jmp_buf jb;

__attribute__((noinline)) void escape(long a)
{
	probed(a, 0);
	longjmp(jb, 1);
}

__attribute__((noinline)) long via_escape(long a)
{
	escape(a);
	return 0;
}


static void *hammer(void *arg)
{
	long i = (long)arg, n = 0;
	while (!stop_flag) {
		probed(n, i);
		n++;
	}
	counts[i] = n;
	return 0;
}

struct job {
	long n, sum;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	for (long i = 0; i < j->n; i++)
		j->sum += probed(1, i);
	return 0;
}

int main(void)
{
	char line[4096];
	pthread_t th[64];
	int nh = 0, rel[2] = {-1, -1};
	pid_t later = 0;
	setvbuf(stdout, 0, _IOLBF, 0);
	probed(-1, 1); /* a probe attached before the process started sees this call */
	printf("ready %d\n", getpid());
	while (fgets(line, sizeof line, stdin)) {
		long n = 0, a = 0, b = 0;
		char s[4000];
		if (sscanf(line, "call %ld %ld %ld", &n, &a, &b) == 3) {
			long sum = 0;
			for (long i = 0; i < n; i++)
				sum += probed(a, b + i);
			printf("%ld\n", sum);
		} else if (sscanf(line, "threads %ld %ld", &a, &n) == 2) {
			struct job j[64];
			long total = 0;
			for (long i = 0; i < a; i++) {
				j[i].n = n;
				j[i].sum = 0;
				pthread_create(&th[i], 0, worker, &j[i]);
			}
			for (long i = 0; i < a; i++) {
				pthread_join(th[i], 0);
				total += j[i].sum;
			}
			printf("%ld\n", total);
		} else if (sscanf(line, "fork %ld", &n) == 1) {
			pid_t p = fork();
			for (long i = 0; i < n; i++)
				probed(i, 1);
			if (p == 0)
				_exit(0);
			int st;
			waitpid(p, &st, 0);
			printf("done %d\n", WEXITSTATUS(st));
		} else if (sscanf(line, "dlopen %3999s %ld", s, &n) == 2) {
			void *h = dlopen(s, RTLD_NOW);
			long (*f)(long, long) = h ? (long (*)(long, long))dlsym(h, "lib_probed") : 0;
			long sum = 0;
			for (long i = 0; f && i < n; i++)
				sum += f(i, 2);
			printf("%ld\n", f ? sum : -1L);
		} else if (sscanf(line, "str %3999s", s) == 1) {
			printf("%ld\n", probed_str(s, 0));
		} else if (sscanf(line, "deep %ld", &n) == 1) {
			long sum = 0;
			for (long i = 0; i < n; i++)
				sum += outer(i);
			printf("%ld\n", sum);
		} else if (sscanf(line, "jmp %ld", &n) == 1) {
			volatile long i = 0;
			setjmp(jb);
			if (i < n) {
				i++;
				via_escape(i);
			}
			printf("%ld\n", (long)i);
		} else if (sscanf(line, "hammer %ld", &n) == 1) {
			stop_flag = 0;
			nh = (int)n;
			for (long i = 0; i < n; i++)
				pthread_create(&th[i], 0, hammer, (void *)i);
			printf("started\n");
		} else if (sscanf(line, "slow %ld", &n) == 1) {
			stop_flag = 0;
			nh = (int)n;
			for (long i = 0; i < n; i++)
				pthread_create(&th[i], 0, slow, (void *)i);
			printf("started\n");
		} else if (sscanf(line, "idle %ld", &n) == 1) {
			for (long i = 0; i < n; i++) {
				pthread_t t;
				pthread_create(&t, 0, idle, 0);
			}
			printf("started\n");
		} else if (sscanf(line, "forklater %ld", &n) == 1) {
			if (pipe(rel) < 0)
				return 1;
			later = fork();
			if (later == 0) {
				char c;
				close(rel[1]);
				if (read(rel[0], &c, 1) != 1)
					_exit(2);
				for (long i = 0; i < n; i++)
					probed(i, 2);
				_exit(0);
			}
			close(rel[0]);
			printf("child %d\n", later);
		} else if (strncmp(line, "release", 7) == 0) {
			int st;
			if (write(rel[1], "x", 1) != 1)
				return 1;
			close(rel[1]);
			waitpid(later, &st, 0);
			printf("done %d\n", WEXITSTATUS(st));
		} else if (strncmp(line, "host58", 6) == 0) {
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on58;
			sigaction(58, &sa, 0);
			for (int i = 0; i < 3; i++)
				raise(58);
			printf("%d\n", got58);
		} else if (strncmp(line, "stop", 4) == 0) {
			long total = 0;
			stop_flag = 1;
			for (int i = 0; i < nh; i++) {
				pthread_join(th[i], 0);
				total += counts[i];
			}
			nh = 0;
			printf("%ld\n", total);
		} else if (sscanf(line, "bench %ld", &n) == 1) {
			struct timespec t0, t1;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (long i = 0; i < n; i++)
				probed(i, 1);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
			printf("%.3f\n", ns / (double)n);
		} else if (sscanf(line, "getpid %ld", &n) == 1) {
			for (long i = 0; i < n; i++)
				getpid();
			printf("done\n");
		} else if (strncmp(line, "flags", 5) == 0) {
			/* the flags of compares of values around the signed and unsigned edges */
			static const unsigned long v[] = {0, 1, 2, 0x7f, 0x80, 0x7fffffffffffffffUL,
							  0x8000000000000000UL, ~0UL};
			unsigned long h = 0;
			for (int i = 0; i < 8; i++)
				for (int j = 0; j < 8; j++)
					for (int df = 0; df < 2; df++)
						h = h * 31 + flagcheck(v[i], v[j], df);
			printf("%lx\n", h);
		} else if (sscanf(line, "tiny %ld", &n) == 1) {
			long sum = 0;
			for (long i = 0; i < n; i++)
				sum += tiny(i) + tiny_next(i) + branchy(i % 5);
			printf("%ld\n", sum);
		} else if (sscanf(line, "trap %ld", &n) == 1) {
			struct sigaction sa;
			long sum = 0;
			memset(&sa, 0, sizeof sa);
			sa.sa_sigaction = on_trap;
			sa.sa_flags = SA_SIGINFO;
			sigaction(SIGTRAP, &sa, 0);
			traps = 0;
			for (long i = 0; i < n; i++) {
				sum += tiny(i);
				__asm__ volatile("int3");
			}
			printf("%ld %ld\n", (long)traps, sum);
		} else if (sscanf(line, "tinyhammer %ld", &n) == 1) {
			stop_flag = 0;
			tiny_bad = 0;
			nh = (int)n;
			for (long i = 0; i < n; i++)
				pthread_create(&th[i], 0, hammer_tiny, (void *)i);
			printf("started\n");
		} else if (sscanf(line, "blocked %ld", &n) == 1) {
			sigset_t all, old;
			struct sigaction sa;
			long sum = 0;
			sigfillset(&all);
			pthread_sigmask(SIG_BLOCK, &all, &old);
			for (long i = 0; i < n; i++)
				sum += tiny(i);
			pthread_sigmask(SIG_SETMASK, &old, 0);
			sigprocmask(SIG_BLOCK, &all, &old);
			for (long i = 0; i < n; i++)
				sum += tiny(i);
			sigprocmask(SIG_SETMASK, &old, 0);
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on_usr1;
			sigfillset(&sa.sa_mask);
			sigaction(SIGUSR1, &sa, 0);
			in_handler = 0;
			raise(SIGUSR1);
			printf("%ld\n", sum + in_handler);
		} else if (strncmp(line, "rawtrap", 7) == 0) {
			struct rlimit no = {0, 0};
			setrlimit(RLIMIT_CORE, &no);
			signal(SIGTRAP, SIG_DFL);
			__asm__ volatile("int3");
			printf("survived\n");
		} else if (strncmp(line, "tinystop", 8) == 0) {
			long total = 0;
			stop_flag = 1;
			for (int i = 0; i < nh; i++) {
				pthread_join(th[i], 0);
				total += counts[i];
			}
			nh = 0;
			printf("%ld %ld\n", total, (long)tiny_bad);
		} else if (sscanf(line, "benchtiny %ld", &n) == 1) {
			struct timespec t0, t1;
			long sum = 0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (long i = 0; i < n; i++)
				sum += tiny(i);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
			printf("%.3f %ld\n", ns / (double)n, sum);
		} else if (strncmp(line, "bytes", 5) == 0) {
			const unsigned char *p = (const unsigned char *)(uintptr_t)probed;
			for (int i = 0; i < 16; i++)
				printf("%02x", p[i]);
			printf("\n");
		} else if (strncmp(line, "exit", 4) == 0) {
			exit(7);
		} else {
			printf("?\n");
		}
	}
	return 0;
}
