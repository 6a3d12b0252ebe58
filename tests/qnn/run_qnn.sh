#!/usr/bin/env bash
# QnnPreprocess, DynamicToFixedShape and the QNN QDQ configuration of OnnxStaticQuantization
# on models built by tests/qnn/make_qnn_models.py, through `quantd run` and over REST:
#  - each fused pattern (PyTorch / Keras / TF erf-GELU, ReduceL2 LpNorm, YOLO SpaceToDepth,
#    decomposed LayerNorm at opset 17): ONNX Runtime's outputs of the fused model equal the
#    original's (run unoptimized) within float tolerance, and the op counts change as
#    expected; near misses and unchanged models stay as they were;
#  - channel-last inputs / outputs give the transposed tensors;
#  - DynamicToFixedShape / dynamic_input_shapes fix the shapes and ORT runs the result;
#  - QnnPreprocess -> OnnxStaticQuantization (QNNExecutionProvider, QUInt16 activations)
#    end to end, over quantd run and REST, the artifact checked in ORT against the float
#    model and for the QNN rules (see the second half);
#  - bad input: 400s naming the field, failed runs naming it.
# Prints "qnn: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
CHK=tests/qnn/qnn_check.js
T=$(mktemp -d /tmp/qd_qnn.XXXXXX)
DPID=
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect() { local label=$1; shift; if "$@"; then ok; else bad "$label"; fi; }

if ! $PY tests/qnn/make_qnn_models.py "$T/m" >/dev/null; then
	bad "make_qnn_models.py"
	echo "qnn: $pass passed, $fail failed"
	exit 1
fi
M=$T/m

# ops FILE: op histogram as "Op=N,Op=N" (domain-qualified for non-ai.onnx ops)
ops() {
	$PY - "$1" <<'EOF'
import collections, sys, onnx
m = onnx.load(sys.argv[1])
c = collections.Counter((n.domain + "." if n.domain else "") + n.op_type for n in m.graph.node)
print(",".join("%s=%d" % kv for kv in sorted(c.items())))
EOF
}
# opcount FILE OP: nodes of that op
opcount() { ops "$1" | tr ',' '\n' | awk -F= -v o="$2" '$1 == o { n = $2 } END { print n + 0 }'; }
# same FILE FILE: the two models are equal protobuf messages
same() { $PY -c 'import onnx,sys; a,b=[onnx.load(f) for f in sys.argv[1:]]; sys.exit(0 if a == b else 1)' "$1" "$2"; }

# run_pp LABEL MODEL WORKFLOW_JSON: quantd run, output in $T/LABEL
run_pp() {
	local label=$1 model=$2 wf=$3
	echo "$wf" >"$T/$label.wf.json"
	if "$Q" run --model "$model" --config "$T/$label.wf.json" --output "$T/$label" >"$T/$label.log" 2>&1; then
		return 0
	fi
	bad "$label: quantd run failed: $(tail -n 3 "$T/$label.log")"
	return 1
}
# fused LABEL MODEL "OP=N ..." [WORKFLOW]: QnnPreprocess; ORT equal within 1e-5; op counts
fused() {
	local label=$1 model=$2 want=$3 wf=${4:-'{"passes": {"p": {"type": "QnnPreprocess", "fuse_layernorm": true}}}'}
	run_pp "$label" "$model" "$wf" || return
	local out=$T/$label/model.onnx
	if node "$CHK" "$model" "$out" --max-abs 1e-5 >"$T/$label.cmp" 2>&1; then ok; else bad "$label: ORT: $(cut -c1-300 "$T/$label.cmp")"; fi
	for w in $want; do
		local op=${w%=*} n=${w#*=} got
		got=$(opcount "$out" "$op")
		if [ "$got" = "$n" ]; then ok; else bad "$label: $op count $got, expected $n ($(ops "$out"))"; fi
	done
	printf '  %-14s %-38s -> %s  max abs %s\n' "$label" "$(ops "$model" | cut -c1-38)" "$(ops "$out")" \
		"$($PY -c 'import json,sys; print(max(o["max_abs_error"] for o in json.load(open(sys.argv[1]))["outputs"].values()))' "$T/$label.cmp" 2>/dev/null)"
}

echo "QnnPreprocess fusions (ORT: original unoptimized vs fused, max abs error)"
fused gelu_torch "$M/gelu_torch.onnx" "com.microsoft.Gelu=2 Erf=0 Div=0 Mul=0 Add=0 MatMul=2"
fused gelu_keras "$M/gelu_keras.onnx" "com.microsoft.Gelu=1 Erf=0 Sqrt=0 Div=0 Mul=0"
fused gelu_tf "$M/gelu_tf.onnx" "com.microsoft.Gelu=1 Erf=0 Mul=0 Add=0"
fused lpnorm "$M/lpnorm.onnx" "LpNormalization=1 ReduceL2=0 Clip=0 Expand=0 Shape=0 Div=0"
fused lpnorm18 "$M/lpnorm18.onnx" "LpNormalization=1 ReduceL2=0 Clip=0 Expand=0"
fused s2d "$M/s2d.onnx" "SpaceToDepth=1 Reshape=0 Transpose=0 Conv=2"
fused layernorm17 "$M/layernorm17.onnx" "LayerNormalization=2 ReduceMean=0 Sub=0 Pow=0 Sqrt=0 Cast=0 Div=0 MatMul=1"
fused encoder "$M/encoder.onnx" "LayerNormalization=2 com.microsoft.Gelu=1 ReduceMean=0 Erf=0 Sigmoid=1 Tanh=1 Mul=1"
# fuse_layernorm off: the LayerNorm stays decomposed
fused ln_off "$M/layernorm17.onnx" "LayerNormalization=0 ReduceMean=4" '{"passes": {"p": {"type": "QnnPreprocess"}}}'

# job log says which fusions matched and how often
expect "log names the Gelu fusion count" grep -q "fusion Gelu: 2 matched" "$T/gelu_torch.log"
expect "log names the LayerNorm fusion count" grep -q "fusion LayerNormalization: 2 matched" "$T/layernorm17.log"
expect "metrics.json has the fusion counts" $PY -c 'import json,sys; p=json.load(open(sys.argv[1]))["passes"][0]["stats"]; sys.exit(0 if p["fusions"] == {"Gelu": 0, "LpNormalization": 0, "SpaceToDepth": 1} else 1)' "$T/s2d/metrics.json"

# near misses and nothing-to-do models come back unchanged
for c in gelu_near:gelu_near.onnx plain:plain.onnx ln13:layernorm13.onnx; do
	label=${c%%:*}; model=$M/${c#*:}
	run_pp "$label" "$model" '{"passes": {"p": {"type": "QnnPreprocess", "fuse_layernorm": true}}}' || continue
	expect "$label: returned as is" same "$model" "$T/$label/model.onnx"
	expect "$label: logged unchanged" grep -q "the input model is returned as is" "$T/$label.log"
done
expect "ln13: logs opset < 17" grep -q "opset 13 is below 17" "$T/ln13.log"

echo "channel-last I/O"
if run_pp cl "$M/cnn.onnx" '{"passes": {"p": {"type": "QnnPreprocess", "inputs_to_make_channel_last": ["x"], "outputs_to_make_channel_last": ["y"]}}}'; then
	if node "$CHK" "$M/cnn.onnx" "$T/cl/model.onnx" --max-abs 1e-5 --channel-last-in x --channel-last-out y >"$T/cl.cmp" 2>&1; then ok
	else bad "channel-last: $(cut -c1-300 "$T/cl.cmp")"; fi
	expect "channel-last: two Transpose_channel_ nodes, shapes NHWC" $PY -c '
import onnx, sys
m = onnx.load(sys.argv[1]); g = m.graph
names = sorted(n.name for n in g.node if n.op_type == "Transpose")
dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]
ok = names == ["Transpose_channel_0", "Transpose_channel_1"] and dims(g.input[0]) == [1, 16, 16, 3] \
     and dims([o for o in g.output if o.name == "y"][0]) == [1, 16, 16, 8]
sys.exit(0 if ok else 1)' "$T/cl/model.onnx"
	echo "  cnn: $(cut -c1-200 "$T/cl.cmp")"
	# the job's default fidelity figures with channel-last I/O: the candidate is fed the inputs
	# transposed and its outputs are turned back before comparing (search/eval.c)
	expect "channel-last: default accuracy ok on both I/O, cosine 1" $PY -c '
import json, sys
a = json.load(open(sys.argv[1]))["accuracy"]
print("  cl accuracy:", a.get("status"), a.get("inputs", {}).get("channel_last_io"), a.get("min_cosine"))
sys.exit(0 if a["status"] == "ok" and a["inputs"]["channel_last_io"] == 2 and a["min_cosine"] >= 0.999999 else 1)' "$T/cl/metrics.json"
	# quantized after channel-last, fidelity on a held-out data config: quantd's figure is ORT's.
	# Calibration feeds the channel-last model (N, H, W, C); the held-out data is the float
	# model's (N, C, H, W)
	$PY -c 'import numpy as np, sys; r=np.random.default_rng(7)
np.savez(sys.argv[1] + "/cl_calib.npz", x=r.normal(0, 1, (16, 3, 16, 16)).astype(np.float32).transpose(0, 2, 3, 1))
np.savez(sys.argv[1] + "/cl_held.npz", x=r.normal(0, 1, (16, 3, 16, 16)).astype(np.float32))' "$T"
	cat >"$T/clq.wf.json" <<'JSON'
{"data_configs": {"calib": {"dataset": "calib"}, "held": {"dataset": "held"}},
 "passes": {"p": {"type": "QnnPreprocess", "inputs_to_make_channel_last": ["x"], "outputs_to_make_channel_last": ["y"]},
            "q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider"}}}
JSON
	if "$Q" run --model "$M/cnn.onnx" --config "$T/clq.wf.json" --data calib="$T/cl_calib.npz" --data held="$T/cl_held.npz" \
		--output "$T/clq" >"$T/clq.log" 2>&1; then
		ok
		if node "$CHK" "$M/cnn.onnx" "$T/clq/model.onnx" --inputs "$T/cl_held.npz" --samples 16 --channel-last-in x \
			--channel-last-out y >"$T/clq.cmp" 2>&1; then ok; else bad "clq: ORT: $(cut -c1-300 "$T/clq.cmp")"; fi
		expect "channel-last + QNN quantization: held-out accuracy ok, y's cosine within 1e-5 of ORT's (measured equal)" $PY -c '
import json, sys
a = json.load(open(sys.argv[1]))["accuracy"]
o = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
q = {x["name"]: x["cosine"] for x in a.get("outputs", [])}
ort = o["outputs"]["y"]["cosine"]
print("  clq accuracy: %s, y cosine quantd %s, ORT %s, v cosine %s" % (a.get("status"), q.get("y"), ort, q.get("v")))
sys.exit(0 if a["status"] == "ok" and abs(q["y"] - ort) <= 1e-5 and q["y"] < 0.99999 else 1)' "$T/clq/metrics.json" "$T/clq.cmp"
	else
		bad "clq: quantd run failed: $(tail -n 2 "$T/clq.log")"
	fi
fi
echo '{"passes": {"p": {"type": "QnnPreprocess", "outputs_to_make_channel_last": ["v"]}}}' >"$T/cl2.json"
if "$Q" run --model "$M/cnn.onnx" --config "$T/cl2.json" --output "$T/cl2" >"$T/cl2.log" 2>&1; then
	bad "channel-last of the 2-D output 'v' succeeded"
else
	expect "channel-last 2-D output: error names it" grep -q "output 'v' is not 4-D" "$T/cl2.log"
fi

echo "fixed shapes"
if run_pp d2f "$M/dyn.onnx" '{"passes": {"f": {"type": "DynamicToFixedShape", "dim_param": ["batch", "seq"], "dim_value": [1, 8]}}}'; then
	expect "DynamicToFixedShape: input and output fixed" $PY -c '
import onnx, sys
g = onnx.load(sys.argv[1]).graph
dims = lambda v: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
sys.exit(0 if dims(g.input[0]) == [1, 8, 32] and dims(g.output[0]) == [1, 8, 16] else 1)' "$T/d2f/model.onnx"
	if node "$CHK" "$M/dyn.onnx" "$T/d2f/model.onnx" --max-abs 1e-6 >"$T/d2f.cmp" 2>&1; then ok; else bad "d2f ORT: $(cut -c1-300 "$T/d2f.cmp")"; fi
fi
if run_pp d2f_in "$M/dyn.onnx" '{"passes": {"f": {"type": "DynamicToFixedShape", "input_name": ["x"], "input_shape": [[1, 8, 32]]}, "p": {"type": "QnnPreprocess", "dynamic_input_shapes": [["x", "1,8,32"]]}}}'; then
	expect "input_shape then dynamic_input_shapes: output [1,8,16]" $PY -c '
import onnx, sys
g = onnx.load(sys.argv[1]).graph
sys.exit(0 if [d.dim_value for d in g.output[0].type.tensor_type.shape.dim] == [1, 8, 16] else 1)' "$T/d2f_in/model.onnx"
fi
if run_pp dis "$M/dyn.onnx" '{"passes": {"p": {"type": "QnnPreprocess", "dynamic_input_shapes": [["x", "1,8,32"]]}}}'; then
	expect "dynamic_input_shapes: input and output fixed" $PY -c '
import onnx, sys
g = onnx.load(sys.argv[1]).graph
dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]
sys.exit(0 if dims(g.input[0]) == [1, 8, 32] and dims(g.output[0]) == [1, 8, 16] else 1)' "$T/dis/model.onnx"
	if node "$CHK" "$M/dyn.onnx" "$T/dis/model.onnx" --max-abs 1e-6 >"$T/dis.cmp" 2>&1; then ok; else bad "dis ORT: $(cut -c1-300 "$T/dis.cmp")"; fi
fi
echo '{"passes": {"f": {"type": "DynamicToFixedShape", "input_name": ["nope"], "input_shape": [[1, 8, 32]]}}}' >"$T/d2f_bad.json"
if "$Q" run --model "$M/dyn.onnx" --config "$T/d2f_bad.json" --output "$T/d2f_bad" >"$T/d2f_bad.log" 2>&1; then
	bad "DynamicToFixedShape with an unknown input succeeded"
else
	expect "unknown input: error names it" grep -q "the model has no input 'nope'" "$T/d2f_bad.log"
fi

# the QNN configuration half (not named run*.sh: tests/run.sh would run it alone, without
# this script's helpers); a missing file fails the suite
if [ -f tests/qnn/qnn_quant.inc.sh ]; then
	# shellcheck source=tests/qnn/qnn_quant.inc.sh
	. tests/qnn/qnn_quant.inc.sh
else
	bad "tests/qnn/qnn_quant.inc.sh is missing"
fi

echo "qnn: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
