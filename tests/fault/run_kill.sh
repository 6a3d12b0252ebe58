#!/usr/bin/env bash
# kill -9 harness (tests/fault/kill.py): FAULT_KILLS kills (default 50, ~1-2 min) at random
# moments of uploads, queueing, a running job, artifact writes and shutdown, with the
# checks after every restart and at the end. Prints "kill: N passed, N failed".
#   FAULT_KILLS=200 bash tests/fault/run_kill.sh       the long run (FAULT_SEED=N repeats one)
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/fault/kill.py "$@"
