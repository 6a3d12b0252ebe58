#!/usr/bin/env bash
# Acceptance of the hyperparameter search (tests/search/accept.py): searches over
# OnnxQuantization with SEARCHABLE_VALUES on PP-OCRv4 rec and a BERT-style encoder meet
# fidelity goals the default configuration misses; every artifact checked in ONNX Runtime.
# Last line: "accept: N passed, N failed". QD_ACCEPT_KEEP=1 keeps the work directory.
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/search/accept.py "$@"
