#!/usr/bin/env bash
# End-to-end suite: real `quantd serve` daemons on 127.0.0.1:0 with temporary data dirs,
# real models, ONNX Runtime comparisons, crash recovery, bad input, auth, limits and the
# openapi.yaml conformance check. Prints "e2e: N passed, N failed" (tests/e2e/e2e.py).
#   tests/e2e/run_e2e.sh [--quick]        B=<build dir> (default build)
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/e2e/e2e.py "$@"
