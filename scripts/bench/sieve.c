// Memory-heavy on the stack: a sieve of Eratosthenes in a 480-byte bitmap, counting primes.
#include "bench.h"

#define N 3840

u64 sieve(u8 *buf, u64 len)
{
	u64 bits[N / 64];
	u64 n = N - (len ? buf[0] & 63 : 0);
	u64 count = 0;

	for (int i = 0; i < N / 64; i++)
		bits[i] = 0;
	for (u64 i = 2; i < n; i++) {
		if (bits[i >> 6] & (1ULL << (i & 63)))
			continue;
		count++;
		for (u64 j = i * i; j < n; j += i)
			bits[j >> 6] |= 1ULL << (j & 63);
	}
	return count;
}
