// Bit-twiddling in a nested loop: CRC-32 (bitwise, no table) over 1 KiB of input.
#include "bench.h"

u64 crc(u8 *buf, u64 len)
{
	u32 c = 0xffffffff;
	for (u64 i = 0; i < len && i < 1024; i++) {
		c ^= buf[i];
		for (int k = 0; k < 8; k++) {
			if (c & 1)
				c = (c >> 1) ^ 0xedb88320;
			else
				c >>= 1;
		}
	}
	return ~c;
}
