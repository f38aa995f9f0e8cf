#!/bin/sh
# build.sh OUT: builds the agent (libebpfu.so) from cshim/ into OUT. The Makefile and the Go
# tests that preload the agent both build it here, with the same flags:
# -mgeneral-regs-only and no libc string functions, so that probes never touch the host's vector
# registers; no stack protector (the agent runs on the host's stack, in signal handlers too).
set -eu
out=${1:?usage: build.sh OUT}
dir=$(dirname "$0")
exec ${CC:-gcc} -std=gnu99 -O2 -g -Wall -Wextra -Werror -fPIC -shared \
	-mgeneral-regs-only -ffreestanding -fno-tree-loop-distribute-patterns \
	-fno-stack-protector -fvisibility=hidden -Wl,-z,now -Wl,-z,noexecstack \
	-o "$out" "$dir"/agent.c "$dir"/patch.c "$dir"/run.c "$dir"/helpers.c "$dir"/objects.c "$dir"/reclaim.c \
	"$dir"/entry.S "$dir"/maps/maps.c
