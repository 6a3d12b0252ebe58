#!/usr/bin/env bash
# ONNX backend node tests for every op the engine claims (see tests/unit/test_conformance.c).
# usage: tests/conformance/run_conformance.sh [name-filter]
# Prints each skip reason and "conformance: N passed, N failed, N skipped"; exit 1 on failure.
# Skips and the pass count are pinned in tests/conformance/expected_skips.txt (checked
# only without a filter); float tolerance is onnx's backend runner's (rtol 1e-3, atol 1e-7).
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
bin="$B/tests/test_conformance"
if [ ! -x "$bin" ]; then make -s B="$B" "$bin" >/dev/null || exit 1; fi
[ $# -ge 1 ] && export QD_CONFORMANCE_FILTER="$1"
QD_CONFORMANCE=1 exec "$bin"
