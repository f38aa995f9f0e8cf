/* The demo workload: greets a few names, some more than once (quietly: what bpftrace prints
 * about it is the demo's output). */
#include <string.h>
#include <unistd.h>

volatile unsigned long greeted;

__attribute__((noinline)) int greet(const char *name)
{
	greeted++;
	return (int)strlen(name);
}

int main(void)
{
	static const char *names[] = {"ada", "grace", "linus", "ada", "barbara", "ada", "grace"};
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		greet(names[i]);
		usleep(20000);
	}
	return 0;
}
