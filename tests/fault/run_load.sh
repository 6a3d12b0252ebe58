#!/usr/bin/env bash
# Load suite: 1000 concurrent clients polling jobs and listing models plus concurrent
# uploads against a real daemon (tests/fault/load.py, client bench/load.c built with cc).
# Prints "load: N passed, N failed".      B=<build dir> (default build)
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/fault/load.py "$@"
