#!/usr/bin/env bash
# Parity of `quantd infer` with ONNX Runtime on the real models (PaddleOCR det/rec/cls,
# openWakeWord) and the python-built transformer/MLP/If models plus a Loop model.
# Prints "parity: N passed, N failed" (details in tests/engine/parity.py).
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
[ -x "$B/quantd" ] || make -s B="$B" "$B/quantd" >/dev/null || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 tests/engine/parity.py "$B/quantd" "$work"
