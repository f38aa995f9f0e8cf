// Loop- and load-heavy: FNV-1a over 4 KiB of input, one byte at a time.
#include "bench.h"

u64 fnv(u8 *buf, u64 len)
{
	u64 h = 0xcbf29ce484222325ULL;
	for (u64 i = 0; i < len && i < 4096; i++) {
		h ^= buf[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
