#!/usr/bin/env bash
# make demo: stock bpftrace traces a program with a uprobe and a uretprobe, run by an ordinary
# user (no root, no CAP_BPF) under ebpfu-shim: its bpf(2) and perf_event_open(2) are answered in
# user space, the probes are patched jumps into JIT-compiled code inside the traced process, and
# the kernel's BPF is never used. As root, the demo runs as the system user ebpfu-demo (created
# when missing); otherwise as the current user.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
# world-readable copies: the repository may live where the demo user cannot read
cp bin/ebpfu-shim bin/libebpfu.so "$tmp/"
gcc -O2 -o "$tmp/greet" scripts/demo/greet.c
as_user=()
if [ "$(id -u)" -eq 0 ]; then
	id ebpfu-demo >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ebpfu-demo
	run=$tmp/run && mkdir -m 700 "$run" && chown ebpfu-demo: "$run"
	as_user=(setpriv --reuid=ebpfu-demo --regid=ebpfu-demo --clear-groups --inh-caps=-all --
		env HOME="$tmp" XDG_RUNTIME_DIR="$run")
fi
user=$("${as_user[@]}" id -un)
prog='uprobe:'$tmp'/greet:greet { printf("%s called greet(\"%s\")\n", comm, str(arg0)); @calls[str(arg0)] = count(); }
uretprobe:'$tmp'/greet:greet { @length = lhist(retval, 0, 10, 1); }'
echo "As $user (uid $("${as_user[@]}" id -u), no capabilities), under ebpfu-shim:"
echo "  bpftrace -e '$prog' -c $tmp/greet"
echo
cd "$tmp"
# bpftrace's complaint that it cannot raise RLIMIT_MEMLOCK (it goes on without) is left out
"${as_user[@]}" "$tmp/ebpfu-shim" bpftrace -e "$prog" -c "$tmp/greet" 2> >(grep -v "RLIMIT_MEMLOCK" >&2)
