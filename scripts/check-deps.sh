#!/usr/bin/env bash
# Exits 0 when every command the tests and benchmarks need is installed.
for c in clang llc bpftool bpftrace strace gcc g++ python3; do
	command -v "$c" >/dev/null 2>&1 || { echo "missing: $c" >&2; exit 1; }
done
[ -f /usr/include/seccomp.h ] || { echo "missing: libseccomp-dev" >&2; exit 1; }
[ -f /usr/include/bpf/bpf_helper_defs.h ] || { echo "missing: libbpf-dev" >&2; exit 1; }
[ -x /usr/sbin/funclatency ] || { echo "missing: libbpf-tools" >&2; exit 1; }
exit 0
