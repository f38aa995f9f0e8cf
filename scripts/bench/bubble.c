// Branch- and memory-heavy: bubble sort of 64 words on the stack, then a hash of the result.
#include "bench.h"

#define M 64

u64 bubble(u8 *buf, u64 len)
{
	u32 a[M];
	u64 h = 0;

	if (len < M * 4)
		return 0;
	for (int i = 0; i < M; i++)
		a[i] = buf[4 * i] | buf[4 * i + 1] << 8 | buf[4 * i + 2] << 16 | (u32)buf[4 * i + 3] << 24;
	for (int i = 0; i < M; i++) {
		for (int j = 0; j < M - 1 - i; j++) {
			if (a[j] > a[j + 1]) {
				u32 t = a[j];
				a[j] = a[j + 1];
				a[j + 1] = t;
			}
		}
	}
	for (int i = 0; i < M; i++)
		h = h * 31 + a[i];
	return h;
}
