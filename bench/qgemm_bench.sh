#!/usr/bin/env bash
# bench/qgemm_bench.sh — builds and runs bench/qgemm_bench.c against $B/libquantd.a:
# integer GEMM (qd_qgemm, its portable kernel, the scalar _ref) vs OpenBLAS sgemm.
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
[ -f "$B/libquantd.a" ] || { echo "qgemm_bench: $B/libquantd.a missing (run make)"; exit 1; }
mkdir -p "$B/bench"
cc -O2 -std=gnu11 -I. -Icommon -I"$B/gen" $(pkg-config --cflags openblas 2>/dev/null) \
	-o "$B/bench/qgemm_bench" bench/qgemm_bench.c "$B/libquantd.a" \
	-pthread -lprotobuf-c -lopenblas -lcrypto -lz -lm
"$B/bench/qgemm_bench" "$@"
