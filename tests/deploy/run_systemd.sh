#!/usr/bin/env bash
# systemd/quantd.service under a real systemd (PID 1 of a podman container, the host has
# none): Type=notify, watchdog, DynamicUser, seccomp, a job, stop and start.
# Prints "systemd: N passed, N failed" (tests/deploy/systemd_real.py).
set -u
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/deploy/systemd_real.py "$@"
