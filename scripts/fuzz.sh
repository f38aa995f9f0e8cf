#!/usr/bin/env bash
# make fuzz: runs every fuzz target of the module for a while each (default 30s), one at a time
# (the machines are small). New failing inputs land in the package's testdata/fuzz/<Target>/,
# where they stay as regression tests; the seed corpora are kept there too.
#
#   scripts/fuzz.sh [DURATION] [PACKAGE_PATTERN]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
time=${1:-30s}
pattern=${2:-./...}
failed=0
for pkg in $(go list "$pattern"); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort -u || true)
	for t in $targets; do
		echo "== $pkg $t ($time)"
		if ! go test -run '^$' -fuzz "^$t\$" -fuzztime "$time" -parallel 1 "$pkg"; then
			failed=1
			echo "FAIL: $pkg $t" >&2
		fi
	done
done
exit $failed
