#!/usr/bin/env bash
# Installs what building, testing and benchmarking ebpfu needs on a fresh Debian 12 machine:
# the Debian packages listed in ../shared/NOTES.md. Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
	bpftrace libbpf-tools bpftool libbpf-dev clang-14 llvm-14 lld-14 clang \
	libseccomp-dev bpfcc-tools strace linux-perf hyperfine \
	gcc g++ python3 make git ca-certificates util-linux procps file binutils
