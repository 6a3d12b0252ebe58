#!/usr/bin/env bash
# Limits suite: 429 with Retry-After on a full queue, slow request bodies timed out (408)
# without holding an HTTP thread (tests/fault/limits.py). Prints "limits: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/fault/limits.py "$@"
