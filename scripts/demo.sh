#!/usr/bin/env bash
# make demo: compiles a C program with clang -target bpf, then verifies and runs it through
# bin/ebpfu-vm with the interpreter and with the JIT, and compares with the same C built natively.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
input="Hello from ebpfu: a user-space eBPF runtime"
clang -O2 -target bpf -mcpu=v3 -c scripts/demo/fnv.c -o "$tmp/fnv.o"
llvm-objcopy -O binary --only-section=.text "$tmp/fnv.o" "$tmp/fnv.bin" 2>/dev/null ||
	llvm-objcopy-14 -O binary --only-section=.text "$tmp/fnv.o" "$tmp/fnv.bin"
prog=$(od -An -v -tx1 "$tmp/fnv.bin" | tr -s ' \n' ' ')
mem=$(printf '%s' "$input" | od -An -v -tx1 | tr -d ' \n')
cat > "$tmp/native.c" <<C
#include <stdio.h>
#include <string.h>
unsigned long long fnv(unsigned char *buf, unsigned long long len);
int main(void) { const char *s = "$input"; printf("%llx\n", fnv((unsigned char *)s, strlen(s))); return 0; }
C
clang -O2 -o "$tmp/native" "$tmp/native.c" scripts/demo/fnv.c
echo "program: FNV-1a of \"$input\" ($(($(stat -c %s "$tmp/fnv.bin") / 8)) eBPF instructions)"
printf '  native C:        %s\n' "$("$tmp/native")"
printf '  ebpfu-vm:        %s\n' "$(echo "$prog" | bin/ebpfu-vm "$mem")"
printf '  ebpfu-vm --jit:  %s\n' "$(echo "$prog" | bin/ebpfu-vm "$mem" --jit 2>&1)"
