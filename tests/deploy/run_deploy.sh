#!/usr/bin/env bash
# Deployment files against the daemon and the image: the compose file and Kubernetes
# manifests (YAML, probes, ports, volume, Secret, resources), systemd/quantd.service
# (systemd-analyze verify and security, the syscall filter against an strace of a real
# job) and the notify protocol (READY=1 / WATCHDOG=1 / STOPPING=1 on a test NOTIFY_SOCKET).
# Prints "deploy: N passed, N failed" (tests/deploy/deploy.py).   B=<build dir> (default build)
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/deploy/deploy.py "$@"
