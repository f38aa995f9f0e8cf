// A sample eBPF program for `make demo`: FNV-1a over the input memory (r1 = buffer, r2 = length).
typedef unsigned long long u64;
typedef unsigned char u8;

u64 fnv(u8 *buf, u64 len)
{
	u64 h = 0xcbf29ce484222325ULL;
	for (u64 i = 0; i < len && i < 4096; i++) {
		h ^= buf[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
