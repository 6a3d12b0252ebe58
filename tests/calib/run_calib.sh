#!/usr/bin/env bash
# Calibration collectors (passes/calibrate.c) against a numpy re-implementation of ONNX
# Runtime's calibrators (tests/calib/ort_calib_ref.py): seeded random batches (normal,
# uniform, heavy-tailed, all-zero, with NaN) streamed in the same order through both;
# histograms and edges must be identical, ranges equal to 1e-6 relative.
# Prints "calib-numpy: N passed, N failed" last; non-zero exit on any failure.
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/qd_calib.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
drv=$tmp/calib_driver
if ! ${CC:-cc} -std=gnu11 -O2 -I. -Icommon -I"$B/gen" -o "$drv" tests/calib/calib_driver.c "$B/libquantd.a" \
	-pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto -lz -lm; then
	echo "cannot build calib_driver (run make first)"
	echo "calib-numpy: 0 passed, 1 failed"
	exit 1
fi
if ! $PY -c 'import numpy' 2>/dev/null; then
	echo "no numpy for $PY"
	echo "calib-numpy: 0 passed, 1 failed"
	exit 1
fi
$PY tests/calib/ort_calib_ref.py "$drv" "$tmp"
