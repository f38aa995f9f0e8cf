#!/usr/bin/env bash
# Prints the ids of the kernel's loaded BPF programs and maps, one per line ("prog 12"), so that
# `make test` can check the suite leaves the kernel's lists as it found them. Prints nothing when
# the kernel's lists cannot be read (not root).
command -v bpftool >/dev/null 2>&1 || exit 0
for kind in prog map; do
	bpftool -j "$kind" list 2>/dev/null | grep -o '"id":[0-9]*' | sed "s/\"id\":/$kind /"
done | sort
