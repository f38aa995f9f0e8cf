/* The workload of the uprobe comparisons (uprobes_test.go): deterministic calls of a few
 * functions, so that bpftrace prints the same under the shim as on the kernel. It prints nothing
 * on stdout (bpftrace's output is what is compared).
 *
 *   work calls          each function a known number of times, with known arguments
 *   work stay           as calls, then done(0), then sleeps until killed (a tool that exits at
 *                       done() names the functions of the live process)
 *   work threads T N    T threads call hit() N times each
 *   work fork N         forks (no exec); parent and child call hit() N times each
 *   work dlopen LIB     loads LIB with dlopen and calls its libfn(i) for i in 0..999
 *   work loop          calls hit() on 4 threads until stdin closes (attach/detach meanwhile)
 *   work tiny N         N calls each of tiny(i) and tiny_after(i) (4-byte functions: probed
 *                       with int3), and of glibc's pthread_rwlock_tryrdlock and unlock
 *   work wait N         waits for a line on stdin and for hit() and done() to be probed (their
 *                       first byte a jump or a breakpoint), calls hit() N times, then done()
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

volatile long sink;

__attribute__((noinline)) long add(long a, long b)
{
	sink += a;
	return a + b;
}

__attribute__((noinline)) int greet(const char *name, int times)
{
	int n = 0;
	for (int i = 0; i < times; i++)
		n += (int)strlen(name) + (int)sink;
	sink = n;
	return n;
}

__attribute__((noinline)) long scale(long x, long factor)
{
	sink += x;
	return x * factor;
}

__attribute__((noinline)) long seven(long a, long b, long c, long d, long e, long f, long g)
{
	sink += g;
	return a + b + c + d + e + f + g; /* g is passed on the stack */
}

__attribute__((noinline)) long hit(long i)
{
	sink += i;
	return i;
}

__attribute__((noinline)) long done(long n)
{
	sink -= n;
	return n;
}

/* tiny(a) returns 2a (32 bits) in 4 bytes and is followed at once by tiny_after(a), 2a + 1: a
 * 5-byte jump does not fit there, ebpfu probes them with int3 as the kernel does. */
long tiny(long a);
long tiny_after(long a);
__asm__(".text\n"
	".globl tiny\n"
	".type tiny, @function\n"
	".p2align 4\n"
	"tiny:\n"
	"\tlea (%rdi,%rdi), %eax\n"
	"\tret\n"
	".size tiny, .-tiny\n"
	".globl tiny_after\n"
	".type tiny_after, @function\n"
	"tiny_after:\n"
	"\tlea 1(%rdi,%rdi), %eax\n"
	"\tret\n"
	".size tiny_after, .-tiny_after\n");

/* probed reports whether the code of f starts with a jump (ebpfu) or a breakpoint (the
 * kernel's uprobe). */
static int probed(long (*f)(long))
{
	unsigned char c = *(volatile unsigned char *)(void *)f;
	return c == 0xe9 || c == 0xcc;
}

static void *worker(void *arg)
{
	long n = (long)arg;
	for (long i = 0; i < n; i++)
		hit(i);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int stay = strcmp(argv[1], "stay") == 0;
	if (strcmp(argv[1], "calls") == 0 || stay) {
		for (long i = 0; i < 1000; i++)
			add(i, 2 * i);
		static const char *names[] = {"alice", "bob", "carol", "bob"};
		for (int i = 0; i < 4; i++)
			greet(names[i], i + 1);
		for (long i = 0; i < 100; i++)
			scale(i % 17, i % 5);
		for (long i = 0; i < 3; i++)
			seven(i, 1, 2, 3, 4, 5, 6 + i);
		if (!freopen("/dev/null", "w", stdout))
			return 1;
		for (int i = 0; i < 7; i++)
			puts(names[i % 4]); /* a libc function with a string argument */
		if (stay) {
			done(0);
			for (;;)
				pause();
		}
		return 0;
	}
	if (strcmp(argv[1], "threads") == 0 && argc == 4) {
		long t = atol(argv[2]), n = atol(argv[3]);
		pthread_t th[64];
		for (long i = 0; i < t && i < 64; i++)
			pthread_create(&th[i], 0, worker, (void *)n);
		for (long i = 0; i < t && i < 64; i++)
			pthread_join(th[i], 0);
		return 0;
	}
	if (strcmp(argv[1], "fork") == 0 && argc == 3) {
		long n = atol(argv[2]);
		pid_t p = fork();
		for (long i = 0; i < n; i++)
			hit(i);
		if (p == 0)
			_exit(0);
		int st;
		waitpid(p, &st, 0);
		return WEXITSTATUS(st);
	}
	if (strcmp(argv[1], "wait") == 0 && argc == 3) {
		long n = atol(argv[2]);
		char line[64];
		if (!fgets(line, sizeof line, stdin))
			return 1;
		for (int i = 0; i < 100000 && !(probed(hit) && probed(done)); i++)
			usleep(100);
		for (long i = 0; i < n; i++)
			hit(i);
		done(n);
		return 0;
	}
	if (strcmp(argv[1], "tiny") == 0 && argc == 3) {
		long n = atol(argv[2]);
		pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
		for (long i = 0; i < n; i++) {
			sink += tiny(i) + tiny_after(i);
			if (pthread_rwlock_tryrdlock(&rw) == 0)
				pthread_rwlock_unlock(&rw);
		}
		return 0;
	}
	if (strcmp(argv[1], "dlopen") == 0 && argc == 3) {
		void *h = dlopen(argv[2], RTLD_NOW);
		long (*f)(long) = h ? (long (*)(long))dlsym(h, "libfn") : 0;
		if (!f)
			return 1;
		for (long i = 0; i < 1000; i++)
			sink += f(i);
		return 0;
	}
	if (strcmp(argv[1], "loop") == 0) {
		/* calls hit() in a loop on 4 threads until stdin closes */
		pthread_t th[4];
		for (long i = 0; i < 4; i++)
			pthread_create(&th[i], 0, worker, (void *)(1L << 62));
		char c;
		while (read(0, &c, 1) > 0)
			;
		return 0;
	}
	return 2;
}
