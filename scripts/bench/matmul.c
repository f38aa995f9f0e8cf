// Arithmetic on a stack buffer: four rounds of an 8x8 matrix product (the matrix on the stack
// times one read from the input).
#include "bench.h"

#define D 8

u64 matmul(u8 *buf, u64 len)
{
	u16 m[D][D];
	u32 t[D][D];
	u64 sum = 0;

	if (len < 2 * D * D)
		return 0;
	for (int i = 0; i < D; i++)
		for (int j = 0; j < D; j++)
			m[i][j] = buf[i * D + j];
	for (int r = 0; r < 4; r++) {
		for (int i = 0; i < D; i++) {
			for (int j = 0; j < D; j++) {
				u32 s = 0;
				for (int k = 0; k < D; k++)
					s += (u32)m[i][k] * buf[D * D + k * D + j];
				t[i][j] = s;
			}
		}
		for (int i = 0; i < D; i++)
			for (int j = 0; j < D; j++)
				m[i][j] = (u16)(t[i][j] ^ (t[i][j] >> 16));
	}
	for (int i = 0; i < D; i++)
		for (int j = 0; j < D; j++)
			sum = sum * 33 + m[i][j];
	return sum;
}
