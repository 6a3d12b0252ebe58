#!/usr/bin/env bash
# Olive evaluators end to end: metrics, goals and bad input against ONNX Runtime
# (tests/eval/eval.py). Prints "eval: N passed, N failed".
#   B=<build dir> tests/eval/run_eval.sh
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/eval/eval.py "$@"
