#!/usr/bin/env bash
# Hyperparameter search end to end (tests/search/search.py): quantd run with
# search_strategy, every trial's model and the best model checked in ONNX Runtime.
# Last line: "search: N passed, N failed". QD_SEARCH_KEEP=1 keeps the work directory.
set -u
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/search/search.py
