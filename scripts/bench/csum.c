// Load-heavy: the Internet checksum (16-bit ones' complement sum) of 2 KiB of input.
#include "bench.h"

u64 csum(u8 *buf, u64 len)
{
	u64 sum = 0;
	for (u64 i = 0; i + 1 < len && i < 2048; i += 2)
		sum += (u64)buf[i] << 8 | buf[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}
