// C++ exceptions through frames with pending return probes (TestExceptions): middle() calls
// thrower(), which throws for odd numbers; main catches. Prints the number caught and the sum of
// what returned normally.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

volatile long sink;

extern "C" __attribute__((noinline)) long thrower(long i)
{
	sink += i;
	if (i % 2)
		throw std::runtime_error("odd");
	return i;
}

extern "C" __attribute__((noinline)) long middle(long i)
{
	long r = thrower(i);
	sink += r;
	return r * 2;
}

int main(int argc, char **argv)
{
	char line[64];
	std::printf("ready\n");
	std::fflush(stdout);
	while (std::fgets(line, sizeof line, stdin)) {
		long n = std::atol(line), caught = 0, sum = 0;
		for (long i = 0; i < n; i++) {
			try {
				sum += middle(i);
			} catch (const std::exception &) {
				caught++;
			}
		}
		std::printf("%ld %ld\n", caught, sum);
		std::fflush(stdout);
	}
	return 0;
}
