#!/usr/bin/env bash
# make bench: times the programs of scripts/bench/*.c on ebpfu's executors against the same C
# compiled natively, in the same run, and prints one table with the ratios and their geometric
# mean. Each program is `u64 NAME(u8 *buf, u64 len)`, compiled twice from one source:
# clang -O2 -target bpf -mcpu=v3 (its .text is the eBPF program) and clang -O2 for this machine.
#
#   scripts/bench.sh [--no-jit] [--time SECONDS]
#
# --no-jit leaves out the JIT's columns; --time is the time spent on each program per executor
# (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
execs=interp,jit
secs=1
while [ $# -gt 0 ]; do
	case "$1" in
	--jit) execs=interp,jit ;;
	--no-jit) execs=interp ;;
	--time) secs=$2; shift ;;
	*) echo "usage: $0 [--no-jit] [--time SECONDS]" >&2; exit 2 ;;
	esac
	shift
done
export PATH=/usr/local/go/bin:$PATH
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
objcopy=llvm-objcopy
command -v "$objcopy" >/dev/null || objcopy=llvm-objcopy-14

names=()
for src in scripts/bench/*.c; do
	name=$(basename "$src" .c)
	[ "$name" = driver ] && continue
	names+=("$name")
	clang -O2 -target bpf -mcpu=v3 -c "$src" -o "$tmp/$name.o"
	"$objcopy" -O binary --only-section=.text "$tmp/$name.o" "$tmp/$name.bin"
	clang -O2 -c "$src" -o "$tmp/$name.native.o"
done

# The native driver, with the table of programs.
{
	printf '#define PROGS'
	for n in "${names[@]}"; do printf ' PROG(%s)' "$n"; done
	printf '\n'
} > "$tmp/progs.h"
clang -O2 -I"$tmp" -Iscripts/bench -o "$tmp/driver" scripts/bench/driver.c "$tmp"/*.native.o

# The same 4 KiB of pseudo-random input for both sides.
"$tmp/driver" --input "$tmp/input"

CGO_ENABLED=0 go build -o bin/ ./cmd/ebpfu-bench
echo "eBPF executors vs native C (clang -O2), ns per run, best of 5; $(nproc) cores, $(uname -r)"
"$tmp/driver" "$tmp/input" "$secs" > "$tmp/native.txt"
bin/ebpfu-bench -input "$tmp/input" -native "$tmp/native.txt" -exec "$execs" -time "${secs}s" \
	$(for n in "${names[@]}"; do echo "$tmp/$n.bin"; done)

# The JIT on the probe path from Go: one call of a trivial program (r0 = r1 + 1), one with a Go
# helper call, and the compile time of a 1,000-instruction program.
echo
echo "JIT from Go: ns per call of a trivial program, of one calling a Go helper; compile time of 1,000 instructions"
go test -run '^$' -bench '^Benchmark(Call|CallHelper|Compile)$' -benchtime 1s ./runtime/jit | grep '^Benchmark'

# The tool side: a notified syscall's round trip and a bpf(2) map lookup through ebpfu-shim
# against the kernel's (as root), in one run.
echo
echo "bpf(2) through ebpfu-shim vs the kernel, ns per call (ns/op is not meaningful here)"
go test -run '^$' -bench 'NotifiedCall|MapLookup' -benchtime 200000x ./shim | grep '^Benchmark'

# The probe path: one uprobe hit running a bpftrace-style count() in a traced process (agent +
# JIT code) against the same call unprobed and against the kernel's uprobe with bpftrace (as
# root), in one run; the same with stock bpftrace's count() under ebpfu-shim (BpftraceHit); a hit
# of a point patched with int3 (the fallback where a jump does not fit); what the agent adds to a
# process's start-up and resident memory.
echo
echo "uprobes in traced processes: ns per hit (ours, the kernel's), agent start-up (us) and memory (kB)"
go test -run '^$' -bench '^Benchmark(ProbeHit|BpftraceHit|Int3Hit|AgentStartup)$' -benchtime 1x ./server/attach | grep '^Benchmark'
