#!/usr/bin/env bash
# bench/load.sh — REST load figures of a real `quantd serve` on loopback: LOAD_CONNS
# (default 1000) concurrent keep-alive clients polling finished jobs and listing models,
# plus 8 connections uploading LOAD_UPLOADS distinct models, every response checked
# (bench/load.c, built with cc). Prints p50/p90/p99/max per request kind, requests/s,
# errors, and the daemon's peak threads and descriptors. Figures only.
#   env: B (build dir), LOAD_CONNS, LOAD_REQUESTS (default 100000), LOAD_UPLOADS (default 200)
set -eu
cd "$(dirname "$0")/.."
export B=${B:-build}
export LOAD_REQUESTS=${LOAD_REQUESTS:-100000} LOAD_UPLOADS=${LOAD_UPLOADS:-200}
/usr/bin/python3 tests/fault/load.py | grep -E '^load:'
