#!/usr/bin/env bash
# The container image end to end under podman: scripts/container.sh builds docker/Dockerfile
# (base image from debootstrap, cached in /var/tmp/quantd-container), then a model upload,
# a dynamic job, the artifact in ONNX Runtime, a graceful `podman stop` and a restart on
# the same volume. Prints "container: N passed, N failed" (tests/container/container.py).
set -u
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/container/container.py "$@"
