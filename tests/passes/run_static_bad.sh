#!/usr/bin/env bash
# OnnxStaticQuantization on bad input: every case must fail with a message naming the cause
# (never a crash, never a model written as if all were well). Models and datasets are built
# here with python3-onnx / numpy. Last line: "static-bad: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
T=$(mktemp -d /tmp/qd_static_bad.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
[ -x "$Q" ] || { echo "FAIL: no $Q (build first)"; echo "static-bad: 0 passed, 1 failed"; exit 1; }

$PY - "$T" <<'EOF' || { echo "FAIL: cannot build the test models"; echo "static-bad: 0 passed, 1 failed"; exit 1; }
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
d = sys.argv[1]
rng = np.random.default_rng(7)
W = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
B = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
B0 = numpy_helper.from_array(np.zeros(4, np.float32), "B0")
def model(name, pre, extra_init=(), bias="B"):
    nodes = pre + [helper.make_node("Conv", ["c_in", "W", bias], ["y"], name="conv", pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["y"], ["out"], name="relu")]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, 8, 8])],
                          [W, B if bias == "B" else B0, *extra_init])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, f"{d}/{name}.onnx")
model("sqrt", [helper.make_node("Sqrt", ["x"], ["c_in"], name="sqrt")])          # NaN for x < 0
model("zero", [helper.make_node("Mul", ["x", "zero"], ["c_in"], name="mul0")], [zero], "B0")  # all constant
model("halfzero", [helper.make_node("Mul", ["x", "zero"], ["c_in"], name="mul0")], [zero])   # c_in constant only
model("plain", [helper.make_node("Identity", ["x"], ["c_in"], name="id")])
x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
np.savez(f"{d}/neg.npz", x=x)                                   # has negatives: Sqrt gives NaN
np.savez(f"{d}/good.npz", x=np.abs(x))
np.savez(f"{d}/wrongname.npz", image=x)
np.savez(f"{d}/wrongdtype.npz", x=x.astype(np.float64))
np.savez(f"{d}/wrongshape.npz", x=rng.standard_normal((8, 5, 8, 8)).astype(np.float32))
np.savez(f"{d}/empty.npz", x=np.zeros((0, 3, 8, 8), np.float32))
np.savez(f"{d}/counts.npz", x=x, y=x[:3])
with open(f"{d}/notnpz.npz", "wb") as f:
    f.write(b"this is not a zip archive at all")
EOF

WF='{"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib"}}}'
echo "$WF" >"$T/wf.json"

# expect_fail NAME MODEL WORKFLOW "DATA ARGS" PATTERN...: the run fails, writes no model, and the
# message matches every pattern (grep -E)
expect_fail() {
	local name=$1 model=$2 wf=$3 data=$4; shift 4
	local out="$T/out_$name"
	# shellcheck disable=SC2086
	"$Q" run -q --model "$T/$model.onnx" --config "$wf" $data --output "$out" >"$T/$name.log" 2>&1
	local rc=$?
	if [ "$rc" -ne 1 ]; then bad "$name: exit $rc, expected 1: $(tail -n 2 "$T/$name.log")"; return; fi
	if [ -f "$out/model.onnx" ]; then bad "$name: a model was written"; return; fi
	for p in "$@"; do
		if ! grep -Eq "$p" "$T/$name.log"; then bad "$name: message lacks /$p/: $(tail -n 2 "$T/$name.log")"; return; fi
	done
	ok
	echo "ok   $name: $(grep -m1 'error' "$T/$name.log" | cut -c1-200)"
}

expect_fail nan        sqrt  "$T/wf.json" "--data calib=$T/neg.npz"        "NaN" "'(c_in|y)'"
expect_fail constant   zero  "$T/wf.json" "--data calib=$T/good.npz"       "constant" "c_in|y"
expect_fail wrongname  plain "$T/wf.json" "--data calib=$T/wrongname.npz"  "'x'"
expect_fail wrongdtype plain "$T/wf.json" "--data calib=$T/wrongdtype.npz" "float64|double" "'x'"
expect_fail wrongshape plain "$T/wf.json" "--data calib=$T/wrongshape.npz" "'x'" "5"
expect_fail empty      plain "$T/wf.json" "--data calib=$T/empty.npz"      "empty|no sample|0 samples"
expect_fail notnpz     plain "$T/wf.json" "--data calib=$T/notnpz.npz"     "npz|zip|tar|format"
expect_fail nodata     plain "$T/wf.json" ""                                "calib"
echo '{"passes": {"q": {"type": "OnnxStaticQuantization"}}}' >"$T/wf_nodc.json"
expect_fail no_data_config plain "$T/wf_nodc.json" "--data calib=$T/good.npz" "passes.q.data_config"
echo '{"data_configs": {"calib": {"dataset": "x.npz"}}, "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "nope"}}}' >"$T/wf_unk.json"
expect_fail unknown_config plain "$T/wf_unk.json" "" "nope" "passes.q.data_config"
echo '{"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "activation_type": "int8", "precision": "uint8"}}}' >"$T/wf_s8u8.json"
expect_fail s8_act_u8_weight plain "$T/wf_s8u8.json" "--data calib=$T/good.npz" "uint8"
echo '{"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "extra_options": {"CalibStridedMinMax": 4}}}}' >"$T/wf_strided.json"
expect_fail strided plain "$T/wf_strided.json" "--data calib=$T/good.npz" "CalibStridedMinMax"

# one constant activation among others: the job succeeds and says so
if "$Q" run -q --model "$T/halfzero.onnx" --config "$T/wf.json" --data calib="$T/good.npz" --output "$T/out_half" \
	>"$T/half.log" 2>&1 && grep -q "constant over the calibration data (e.g. 'c_in')" "$T/half.log"; then ok
else bad "one constant activation: $(tail -n 2 "$T/half.log")"; fi
# extra arrays (labels) are kept, whatever their sample count
if "$Q" run -q --model "$T/plain.onnx" --config "$T/wf.json" --data calib="$T/counts.npz" --output "$T/out_counts" \
	>"$T/counts.log" 2>&1; then ok
else bad "extra array: $(tail -n 2 "$T/counts.log")"; fi

# the same data that fails above succeeds on a model that computes finite values
if "$Q" run -q --model "$T/plain.onnx" --config "$T/wf.json" --data calib="$T/good.npz" --output "$T/out_good" \
	>"$T/good.log" 2>&1 && [ -f "$T/out_good/model.onnx" ]; then ok
else bad "good data on the plain model: $(tail -n 2 "$T/good.log")"; fi

# OnnxQuantization's Olive default quant_mode is static: QDQ output with Q/DQ nodes
echo '{"passes": {"q": {"type": "OnnxQuantization", "data_config": "calib"}}}' >"$T/wf_oq.json"
if "$Q" run -q --model "$T/plain.onnx" --config "$T/wf_oq.json" --data calib="$T/good.npz" --output "$T/out_oq" \
	>"$T/oq.log" 2>&1 && $PY -c "
import onnx, sys
ops = [n.op_type for n in onnx.load(sys.argv[1]).graph.node]
sys.exit(0 if 'QuantizeLinear' in ops and 'DequantizeLinear' in ops and 'Conv' in ops else 1)" "$T/out_oq/model.onnx"; then ok
else bad "OnnxQuantization (static default): $(tail -n 2 "$T/oq.log")"; fi

# ... and with quant_mode dynamic it runs the dynamic pass (DynamicQuantizeLinear, no calibration)
echo '{"passes": {"q": {"type": "OnnxQuantization", "quant_mode": "dynamic", "quant_format": "QDQ", "op_types_to_quantize": ["Conv"]}}}' >"$T/wf_oqd.json"
if "$Q" run -q --model "$T/plain.onnx" --config "$T/wf_oqd.json" --output "$T/out_oqd" >"$T/oqd.log" 2>&1 && $PY -c "
import onnx, sys
ops = [n.op_type for n in onnx.load(sys.argv[1]).graph.node]
sys.exit(0 if 'DynamicQuantizeLinear' in ops and 'QuantizeLinear' not in ops else 1)" "$T/out_oqd/model.onnx"; then ok
else bad "OnnxQuantization quant_mode dynamic: $(tail -n 2 "$T/oqd.log")"; fi

# every model written above loads and runs in ONNX Runtime and stays close to the float model
for c in good:plain:good half:halfzero:good counts:plain:good oq:plain:good oqd:plain:good; do
	IFS=: read -r dir model data <<<"$c"
	if node tests/passes/static_eval.js --float "$T/$model.onnx" --quant "$T/out_$dir/model.onnx" \
		--data "$T/$data.npz" --min-mean-cos 0.999 >"$T/ort_$dir.json" 2>&1; then ok
	else bad "$dir: ONNX Runtime check: $(cut -c1-300 "$T/ort_$dir.json")"; fi
done

echo "static-bad: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
