#!/usr/bin/env bash
# Crash points (tests/fault/crashpoints.py): the daemon killed right after the blob
# renames and unlinks of uploads, artifact imports and deletes (LD_PRELOAD shim
# tests/fault/crash_at.c), then restarted. Prints "crashpoints: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/fault/crashpoints.py "$@"
