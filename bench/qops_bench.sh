#!/usr/bin/env bash
# bench/qops_bench.sh — one transformer MLP block (768 -> 3072 -> 768, M rows) as float,
# dynamic (MatMulInteger), static QOperator (QLinearMatMul), QDQ and 4-bit MatMulNBits:
# quantd's engine (first run, which packs / unpacks constant weights, and best of 5; one
# thread) next to ONNX Runtime's best-of-5 session.run (one intra-op thread).
# Figures only, no assertions; the machine may be shared, so expect noise.
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
M=${QOPS_BENCH_M:-64}
[ -f "$B/libquantd.a" ] || { echo "qops_bench: $B/libquantd.a missing (run make)"; exit 1; }
work=$(mktemp -d /tmp/qops_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$B/bench"
cc -O2 -std=gnu11 -I. -Icommon -I"$B/gen" -o "$B/bench/engine_time" bench/engine_time.c "$B/libquantd.a" \
	-pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto -lz -lm
/usr/bin/python3 bench/make_qops_bench_models.py "$work" "$M"
printf "MLP block %sx768 -> 3072 -> 768 (ms)\n%-10s %12s %12s %12s\n" "$M" "model" "quantd 1st" "quantd best" "ORT best"
for m in float dynamic qoperator qdq nbits; do
	read -r first best < <("$B/bench/engine_time" "$work/$m.onnx" "$work/in.npz" 5 || echo "n/a n/a")
	ort=$(node bench/ort_time.js "$work/$m.onnx" "$work/in.npz" 5 2>&1 || echo "n/a")
	printf "%-10s %12s %12s %12s\n" "$m" "$first" "$best" "$ort"
done
