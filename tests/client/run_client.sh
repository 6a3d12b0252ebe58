#!/usr/bin/env bash
# The command-line client (quantd submit / jobs / status / logs / cancel) against a real
# `quantd serve` on 127.0.0.1:0: uploads skipped by sha256, --data binding, artifacts checked
# and run in ONNX Runtime, progress on and off a terminal, failures and their exit codes,
# tokens, a server that is not there. Prints "client: N passed, N failed".
#   tests/client/run_client.sh        B=<build dir> (default build)
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/client/client.py "$@"
