/* Types shared by the benchmark programs, which compile both with clang -target bpf (no system
 * headers) and natively. Each program is `u64 NAME(u8 *buf, u64 len)` over the same input. */
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
