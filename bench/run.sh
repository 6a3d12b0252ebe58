#!/usr/bin/env bash
# bench/run.sh — what `make bench` runs: every bench/*.sh (except this file) in name order.
# Benchmarks print figures; nothing here asserts on timing. A failing benchmark is reported
# and the others still run; the exit code is non-zero if any failed.
set -u
cd "$(dirname "$0")/.."
export B=${B:-build}
rc=0
for s in bench/*.sh; do
	[ "$(basename "$s")" = run.sh ] && continue
	echo "== $s"
	if ! bash "$s"; then
		echo "bench: $s failed"
		rc=1
	fi
done
exit $rc
