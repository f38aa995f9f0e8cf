// C++ exceptions under return probes (uprobes_features_test.go): thrower() throws for odd
// numbers; middle() catches what its callee throws, passthru() lets it through to main, which
// catches. The functions whose frames an exception leaves do not return; every other one does.
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
	try {
		return thrower(i) * 2;
	} catch (const std::exception &) {
		return -1;
	}
}

extern "C" __attribute__((noinline)) long outer(long i)
{
	return middle(i) + 1;
}

extern "C" __attribute__((noinline)) long passthru(long i)
{
	long r = thrower(i);
	sink += r;
	return r;
}

int main()
{
	long caught = 0;
	for (long i = 0; i < 10; i++)
		sink += outer(i);
	for (long i = 0; i < 10; i++) {
		try {
			sink += passthru(i);
		} catch (...) {
			caught++;
		}
	}
	return caught == 5 ? 0 : 1;
}
