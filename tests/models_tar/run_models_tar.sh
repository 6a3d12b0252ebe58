#!/usr/bin/env bash
# tests/models_tar: models with external data as a tar through the service and `quantd run
# --model DIR` (tests/models_tar/models_tar.py). Prints "models_tar: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/models_tar/models_tar.py "$@"
