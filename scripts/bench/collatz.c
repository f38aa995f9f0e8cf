// Branch-heavy, registers only: Collatz trajectories of 100 numbers, at most 200 steps each.
#include "bench.h"

u64 collatz(u8 *buf, u64 len)
{
	u64 total = 0;
	u64 base = (len ? buf[0] : 0) + 27;

	for (u64 k = 0; k < 100; k++) {
		u64 x = base + k;
		for (int s = 0; s < 200 && x != 1; s++) {
			if (x & 1)
				x = 3 * x + 1;
			else
				x >>= 1;
			total++;
		}
	}
	return total;
}
