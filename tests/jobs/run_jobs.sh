#!/usr/bin/env bash
# Jobs in supervised child processes: crashes, limits, cancel, shutdown and kill -9 of the
# daemon with a job's process running (tests/jobs/jobs.py). Prints "jobs: N passed, N failed".
#   B=<build dir> tests/jobs/run_jobs.sh
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/jobs/jobs.py "$@"
