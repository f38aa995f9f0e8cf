#!/usr/bin/env bash
# Captures the kernel's tracefs as ebpfu serves it to tools (server/tracefs) into a reproducible
# gzip file: the whole tree of names (so listings match the kernel's), with the content of the files
# tools read: available_events, available_tracers, README, events/header_page and header_event,
# and every event's id and format; every other file is an empty placeholder, and the directories
# outside events/ are kept empty. Run as root; tracefs is mounted in a private mount namespace,
# so the machine's mounts stay as they are.
#
# Format (read by server/tracefs; no tar, whose Go reader would pull cgo into the shim): a line
# "ebpfu-tracefs 1 RELEASE", then per entry in name order "d PATH" for a directory, or
# "f PATH SIZE" and SIZE bytes of content for a file.
#
#   scripts/capture-tracefs.sh server/tracefs/data/tracefs.gz
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.gz" >&2; exit 2; }
out=$(realpath -m "$1")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
unshare --mount --propagation private bash -euo pipefail -c '
	dst=$1
	mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
	cd /sys/kernel/tracing
	for f in *; do
		if [ -d "$f" ]; then
			mkdir "$dst/$f"
		else
			: > "$dst/$f"
		fi
	done
	for f in available_events available_tracers README; do cat "$f" > "$dst/$f"; done
	cd events
	find . -mindepth 1 -type d | while read -r d; do mkdir -p "$dst/events/$d"; done
	find . -type f | while read -r f; do
		case "$f" in
		*/id|*/format|./header_page|./header_event) cat "$f" > "$dst/events/$f" ;;
		*) : > "$dst/events/$f" ;;
		esac
	done
' capture "$tmp"
{
	echo "ebpfu-tracefs 1 $(uname -r)"
	cd "$tmp"
	find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
		if [ -d "$p" ]; then
			echo "d ${p#./}"
		else
			echo "f ${p#./} $(stat -c %s "$p")"
			cat "$p"
		fi
	done
} | gzip -9n > "$out"
