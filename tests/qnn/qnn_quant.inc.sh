# Sourced by tests/qnn/run_qnn.sh (named *.inc.sh so tests/run.sh does not run it alone) (uses its $Q $M $T $PY $CHK ok bad expect run_pp): the QNN
# QDQ configuration of OnnxStaticQuantization (ORT get_qnn_qdq_config,
# reference/inc_vitis_qnn.md §C.3), alone and in the Olive-shaped workflow
# QnnPreprocess -> OnnxStaticQuantization, over quantd run and over REST (quantd serve +
# quantd submit). Every artifact is loaded and run in ONNX Runtime and compared with the
# float model on held-out data; its graph is checked for the QNN rules.

# qnn_rules FILE WTYPE ATYPE: the QNN configuration's marks on an artifact
qnn_rules() {
	$PY - "$@" <<'EOF'
import sys, onnx
from onnx import numpy_helper
path, wt, at = sys.argv[1:4]
m = onnx.load(path); g = m.graph
init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
prod = {o: n for n in g.node for o in n.output}
probs = []
opset = {o.domain: o.version for o in m.opset_import}
qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
wide = "16" in wt or "16" in at
if wide and opset.get("", 0) < 21 and any(n.domain != "com.microsoft" for n in qdq):
    probs.append("16-bit types below opset 21 need every Q/DQ in com.microsoft (UseQDQContribOps)")
act_dt = {"QUInt8": "uint8", "QUInt16": "uint16", "QInt8": "int8", "QInt16": "int16"}[at]
w_dt = {"QUInt8": "uint8", "QInt8": "int8", "QUInt16": "uint16", "QInt16": "int16"}[wt]
# activations: every QuantizeLinear of a non-initializer has the activation type
for n in g.node:
    if n.op_type == "QuantizeLinear" and n.input[0] not in init:
        if str(init[n.input[2]].dtype) != act_dt:
            probs.append("Q %s: zero point %s, want %s" % (n.name, init[n.input[2]].dtype, act_dt))
# MatMul weights: the weight type, per tensor
for n in g.node:
    if n.op_type == "MatMul":
        d = prod.get(n.input[1])
        if d is not None and d.op_type == "DequantizeLinear" and d.input[0] in init:
            if str(init[d.input[0]].dtype) != w_dt:
                probs.append("MatMul %s weight %s, want %s" % (n.name, init[d.input[0]].dtype, w_dt))
            if init[d.input[1]].size != 1:
                probs.append("MatMul %s weight is per-channel (QNN: per tensor)" % n.name)
# 16-bit Sigmoid / Tanh outputs: fixed scales
fixed = 0
for n in g.node:
    if n.op_type in ("Sigmoid", "Tanh") and "16" in at:
        cons = [c for c in g.node if n.output[0] in c.input and c.op_type == "QuantizeLinear"]
        if not cons:
            probs.append("%s output has no QuantizeLinear" % n.op_type); continue
        s = float(init[cons[0].input[1]]); z = int(init[cons[0].input[2]])
        want = {("Sigmoid", "QUInt16"): (1 / 65536, 0), ("Sigmoid", "QInt16"): (1 / 32768, 0),
                ("Tanh", "QUInt16"): (1 / 32768, 32768), ("Tanh", "QInt16"): (1 / 32768, 0)}[(n.op_type, at)]
        if abs(s - want[0]) > 1e-12 or z != want[1]:
            probs.append("%s output scale %g zp %d, want %g %d" % (n.op_type, s, z, want[0], want[1]))
        fixed += 1
# every node but Cast / Q / DQ reads only quantized (DQ) or integer inputs
floaty = set()
for n in g.node:
    if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast", "Shape", "Identity"):
        continue
    for i in n.input:
        if not i: continue
        if i in init and init[i].dtype.kind != "f": continue
        p = prod.get(i)
        if p is None and i not in init:
            continue  # a graph input: quantd keeps those float
        if p is None or p.op_type != "DequantizeLinear":
            floaty.add(n.op_type)
print("fixed=%d float_inputs=%s" % (fixed, ",".join(sorted(floaty)) or "-"))
for p in probs:
    print("PROBLEM:", p)
sys.exit(1 if probs else 0)
EOF
}

echo "QNN QDQ configuration"
WF_QNN='{"data_configs": {"calib": {"dataset": "calib"}, "held": {"dataset": "held"}},
  "passes": {"pre": {"type": "QnnPreprocess", "fuse_layernorm": true},
             "q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider",
                   "activation_type": "QUInt16", "weight_type": "QUInt8"}}}'
echo "$WF_QNN" >"$T/wf_qnn.json"
if "$Q" run --model "$M/encoder.onnx" --config "$T/wf_qnn.json" --data calib="$M/calib_encoder.npz" \
	--data held="$M/held_encoder.npz" --output "$T/qnn_run" >"$T/qnn_run.log" 2>&1; then
	ok
	A=$T/qnn_run/model.onnx
	if qnn_rules "$A" QUInt8 QUInt16 >"$T/qnn_rules.txt"; then ok; else bad "QNN rules (quantd run): $(cat "$T/qnn_rules.txt")"; fi
	expect "QNN: Sigmoid and Tanh outputs fixed" grep -q "fixed=2" "$T/qnn_rules.txt"
	expect "QNN: Gelu / LayerNormalization / Add / Mul / Sigmoid / Tanh read DQ outputs" grep -q "float_inputs=-" "$T/qnn_rules.txt"
	expect "QNN: log names the configuration" grep -q "QNN configuration (get_qnn_qdq_config): weights uint8, activations uint16, MinimumRealRange 0.0001, DedicatedQDQPair false, com.microsoft Q/DQ" "$T/qnn_run.log"
	# fidelity in ORT on the held-out samples: the float model (unoptimized) vs the artifact
	if node "$CHK" "$M/encoder.onnx" "$A" --inputs "$M/held_encoder.npz" --min-cos 0.9998 >"$T/qnn_run.cmp" 2>&1; then ok
	else bad "QNN u16 artifact in ORT: $(cut -c1-300 "$T/qnn_run.cmp")"; fi
	echo "  encoder u8/u16 (quantd run): $(cut -c1-220 "$T/qnn_run.cmp") [$(cat "$T/qnn_rules.txt" | head -1)]"
else
	bad "QNN workflow (quantd run) failed: $(tail -n 5 "$T/qnn_run.log")"
fi

# QInt16 activations / QInt8 weights: the signed fixed scales (Sigmoid and Tanh 1/32768, zp 0)
echo "$WF_QNN" | sed 's/"QUInt16"/"QInt16"/; s/"QUInt8"/"QInt8"/' >"$T/wf_qnn_s16.json"
if "$Q" run --model "$M/encoder.onnx" --config "$T/wf_qnn_s16.json" --data calib="$M/calib_encoder.npz" \
	--data held="$M/held_encoder.npz" --output "$T/qnn_s16" >"$T/qnn_s16.log" 2>&1; then
	if qnn_rules "$T/qnn_s16/model.onnx" QInt8 QInt16 >"$T/qnn_s16.txt"; then ok; else bad "QNN s16: $(cat "$T/qnn_s16.txt")"; fi
	expect "QNN s16: Sigmoid and Tanh outputs fixed" grep -q "fixed=2" "$T/qnn_s16.txt"
	if node "$CHK" "$M/encoder.onnx" "$T/qnn_s16/model.onnx" --inputs "$M/held_encoder.npz" --min-cos 0.9998 >"$T/qnn_s16.cmp" 2>&1; then ok
	else bad "QNN s16 artifact in ORT: $(cut -c1-300 "$T/qnn_s16.cmp")"; fi
	echo "  encoder s8/s16: $(cut -c1-220 "$T/qnn_s16.cmp")"
else
	bad "QNN s16 run failed: $(tail -n 5 "$T/qnn_s16.log")"
fi

# defaults: QUInt8 / QUInt8 when the types are not given
echo '{"data_configs": {"calib": {"dataset": "calib"}}, "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider"}}}' >"$T/wf_qnn8.json"
if "$Q" run --model "$M/encoder.onnx" --config "$T/wf_qnn8.json" --data calib="$M/calib_encoder.npz" \
	--output "$T/qnn8" >"$T/qnn8.log" 2>&1; then
	if qnn_rules "$T/qnn8/model.onnx" QUInt8 QUInt8 >"$T/qnn8.txt"; then ok; else bad "QNN 8-bit defaults: $(cat "$T/qnn8.txt")"; fi
	expect "QNN 8-bit: ai.onnx Q/DQ" $PY -c 'import onnx,sys; g=onnx.load(sys.argv[1]).graph; q=[n for n in g.node if n.op_type.endswith("QuantizeLinear")]; sys.exit(0 if q and all(n.domain == "" for n in q) else 1)' "$T/qnn8/model.onnx"
	if node "$CHK" "$M/encoder.onnx" "$T/qnn8/model.onnx" --inputs "$M/held_encoder.npz" --min-cos 0.999 >"$T/qnn8.cmp" 2>&1; then ok
	else bad "QNN u8 artifact in ORT: $(cut -c1-300 "$T/qnn8.cmp")"; fi
	echo "  encoder u8/u8 defaults: $(cut -c1-220 "$T/qnn8.cmp")"
else
	bad "QNN defaults run failed: $(tail -n 5 "$T/qnn8.log")"
fi

# per_channel: Conv weight axis 0, ConvTranspose axis 1, MatMul per tensor
echo '{"data_configs": {"calib": {"dataset": "calib"}}, "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider", "per_channel": true, "activation_type": "QUInt16"}}}' >"$T/wf_qnnpc.json"
if "$Q" run --model "$M/convnet.onnx" --config "$T/wf_qnnpc.json" --data calib="$M/calib_convnet.npz" \
	--output "$T/qnnpc" >"$T/qnnpc.log" 2>&1; then
	expect "QNN per-channel axes" $PY -c '
import onnx, sys
from onnx import numpy_helper, helper
g = onnx.load(sys.argv[1]).graph
init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
prod = {o: n for n in g.node for o in n.output}
def wdq(n):
    d = prod[n.input[1]]
    ax = [a.i for a in d.attribute if a.name == "axis"]
    return (ax[0] if ax else None), init[d.input[1]].size
got = {n.op_type: wdq(n) for n in g.node if n.op_type in ("Conv", "ConvTranspose", "MatMul")}
want = {"Conv": (0, 8), "ConvTranspose": (1, 4), "MatMul": (None, 1)}
conv = [n for n in g.node if n.op_type == "Conv"][0]
b = prod[conv.input[2]]
got["Conv bias"] = ([a.i for a in b.attribute if a.name == "axis"] or [None])[0], init[b.input[1]].size, str(init[b.input[0]].dtype)
want["Conv bias"] = (0, 8, "int32")
print(got)
sys.exit(0 if got == want else 1)' "$T/qnnpc/model.onnx"
	if node "$CHK" "$M/convnet.onnx" "$T/qnnpc/model.onnx" --inputs "$M/held_convnet.npz" --min-cos 0.9999 >"$T/qnnpc.cmp" 2>&1; then ok
	else bad "QNN per-channel artifact in ORT: $(cut -c1-300 "$T/qnnpc.cmp")"; fi
	echo "  convnet per-channel u8/u16: $(cut -c1-220 "$T/qnnpc.cmp")"
else
	bad "QNN per-channel run failed: $(tail -n 5 "$T/qnnpc.log")"
fi

# per_channel with LayerNormalization: refused (ORT raises)
echo '{"data_configs": {"calib": {"dataset": "calib"}}, "passes": {"pre": {"type": "QnnPreprocess", "fuse_layernorm": true}, "q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider", "per_channel": true}}}' >"$T/wf_qnnln.json"
if "$Q" run --model "$M/encoder.onnx" --config "$T/wf_qnnln.json" --data calib="$M/calib_encoder.npz" --output "$T/qnnln" >"$T/qnnln.log" 2>&1; then
	bad "QNN per_channel with LayerNormalization succeeded"
else
	expect "QNN per_channel + LayerNormalization: error names it" grep -q "per_channel is not supported for LayerNormalization" "$T/qnnln.log"
fi

# without the option nothing changes: execution_provider CPUExecutionProvider == absent
echo '{"data_configs": {"calib": {"dataset": "calib"}}, "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib"}}}' >"$T/wf_cpu0.json"
echo '{"data_configs": {"calib": {"dataset": "calib"}}, "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "CPUExecutionProvider"}}}' >"$T/wf_cpu1.json"
if "$Q" run --model "$M/encoder.onnx" --config "$T/wf_cpu0.json" --data calib="$M/calib_encoder.npz" --output "$T/cpu0" >/dev/null 2>&1 &&
   "$Q" run --model "$M/encoder.onnx" --config "$T/wf_cpu1.json" --data calib="$M/calib_encoder.npz" --output "$T/cpu1" >/dev/null 2>&1; then
	expect "execution_provider CPU: same artifact bytes as without it" cmp -s "$T/cpu0/model.onnx" "$T/cpu1/model.onnx"
else
	bad "CPU static runs failed"
fi

# mixed precision (§C.3, MixedPrecisionTensorQuantOverridesFixer): mixed.onnx's SiLU region
# made 16-bit by one quant_type override on conv2's output t_c2 inside the QNN 8-bit default.
# The fixer types conv2, Sigmoid and Mul 16-bit and adds the two conversions ORT's tool emits:
# t_r1 8 -> 16 for conv2, t_m2 16 -> 8 for conv3 (Q -> DQ -> Q -> DQ).
# types_ok FILE: every compute node reads and writes one activation type; the chains as expected
types_ok() {
	$PY - "$1" <<'EOF'
import sys, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1]); g = m.graph
init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
prod = {o: n for n in g.node for o in n.output}
node = {n.name: n for n in g.node}
cons = {}
for n in g.node:
    for i in n.input:
        cons.setdefault(i, []).append(n)
dt = lambda n: str(init[n.input[2]].dtype)
probs = []
for n in g.node:
    if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Identity"):
        continue
    ins = set(dt(prod[i]) for i in n.input if i in prod and prod[i].op_type == "DequantizeLinear" and prod[i].input[0] not in init)
    outs = set(dt(c) for o in n.output for c in cons.get(o, []) if c.op_type == "QuantizeLinear")
    if len(ins | outs) != 1:
        probs.append("%s reads %s writes %s" % (n.name, sorted(ins), sorted(outs)))
def chain(nd, k):  # the Q/DQ types from the node's input back to a float tensor
    t, out = node[nd].input[k], []
    while t in prod and prod[t].op_type in ("QuantizeLinear", "DequantizeLinear"):
        out.append(prod[t].op_type[0] + ":" + dt(prod[t])); t = prod[t].input[0]
    return " ".join(reversed(out)) + " <- " + t
want = {("conv1", 0): "Q:uint8 D:uint8 <- x", ("conv2", 0): "Q:uint8 D:uint8 Q:uint16 D:uint16 <- t_r1",
        ("sig", 0): "Q:uint16 D:uint16 <- t_c2", ("mul", 1): "Q:uint16 D:uint16 <- t_s2",
        ("conv3", 0): "Q:uint16 D:uint16 Q:uint8 D:uint8 <- t_m2"}
for (nd, k), w in want.items():
    c = chain(nd, k)
    if c != w:
        probs.append("%s input %d: %s, want %s" % (nd, k, c, w))
if any(n.domain != "com.microsoft" for n in g.node if n.op_type.endswith("QuantizeLinear")):
    probs.append("16-bit types at opset 13: every Q/DQ in com.microsoft (UseQDQContribOps)")
for p in probs:
    print("PROBLEM:", p)
sys.exit(1 if probs else 0)
EOF
}
cat >"$T/wf_mixed.json" <<'JSON'
{"data_configs": {"calib": {"dataset": "calib"}},
 "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider",
                  "tensor_quant_overrides": {"t_c2": {"quant_type": "QUInt16"}}}}}
JSON
echo '{"data_configs": {"calib": {"dataset": "calib"}}, "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider"}}}' >"$T/wf_mixed8.json"
echo "QNN mixed precision (16-bit region in an 8-bit model)"
if "$Q" run --model "$M/mixed.onnx" --config "$T/wf_mixed.json" --data calib="$M/calib_mixed.npz" --output "$T/mixed" >"$T/mixed.log" 2>&1 &&
   "$Q" run --model "$M/mixed.onnx" --config "$T/wf_mixed8.json" --data calib="$M/calib_mixed.npz" --output "$T/mixed8" >"$T/mixed8.log" 2>&1; then
	ok
	if types_ok "$T/mixed/model.onnx" >"$T/mixed.types"; then ok; else bad "mixed precision types: $(cat "$T/mixed.types")"; fi
	expect "mixed: the fixed overrides and 2 conversions in the stats, Sigmoid's 16-bit output scale fixed" $PY -c '
import json, sys
st = json.load(open(sys.argv[1]))["passes"][0]["stats"]
f = st["tensor_quant_overrides_fixed"]
ok = st["type_conversions"] == 2 and st["qnn_config"]["fixed_output_scales"] == 1 and st["qnn_config"]["UseQDQContribOps"] \
     and f["t_r1"]["convert"]["quant_type"] == "QUInt16" and f["t_r1"]["convert"]["recv_nodes"] == ["conv2"] \
     and f["t_m2"]["quant_type"] == "QUInt16" and f["t_m2"]["convert"]["recv_nodes"] == ["conv3"] \
     and f["t_s2"]["quant_type"] == "QUInt16" and "convert" not in f["t_c2"]
sys.exit(0 if ok else 1)' "$T/mixed/metrics.json"
	expect "mixed: the log names the fixer" grep -q "MixedPrecisionTensorQuantOverridesFixer): 4 tensors typed, 2 converted" "$T/mixed.log"
	# ORT runs it; held-out cosine vs float; quantd's engine gives ORT's outputs (measured: max
	# abs diff 0); the 16-bit region lowers the all-8-bit artifact's error (measured mean |err|
	# 0.01140 vs 0.01295, pooled cosine 0.999758 vs 0.999702)
	for v in mixed mixed8; do
		node tests/passes/static_eval.js --float "$M/mixed.onnx" --quant "$T/$v/model.onnx" --data "$M/held_mixed.npz" \
			--metric cosine --quantd "$Q" --quantd-samples 16 --min-pooled-cos 0.9997 --max-quantd-abs 1e-6 \
			--label "$v" >"$T/$v.eval" 2>&1
	done
	expect "mixed: ORT runs it, pooled cosine >= 0.9997, quantd == ORT, error below the all-8-bit artifact's" $PY -c '
import json, sys
a, b = [json.load(open(f)) for f in sys.argv[1:3]]
ea, eb = a["outputs"]["out"]["mean_abs_error"], b["outputs"]["out"]["mean_abs_error"]
print("  mixed u8 + u16 region: pooled cosine %.6f mean|err| %.5f quantd-vs-ORT %s; all u8: %.6f %.5f" % (
      a["cosine_pooled"], ea, a["quantd"]["outputs"]["out"]["max_abs_diff"], b["cosine_pooled"], eb))
sys.exit(0 if a["ok"] and b["ok"] and ea < 0.93 * eb else 1)' "$T/mixed.eval" "$T/mixed8.eval"
else
	bad "mixed precision run failed: $(tail -n 3 "$T/mixed.log" "$T/mixed8.log")"
fi
# an explicit convert written by the user (quantize_static's format, no fixer): t_c2 16-bit
# for the Sigmoid, converted to 8-bit for the Mul
cat >"$T/wf_conv.json" <<'JSON'
{"data_configs": {"calib": {"dataset": "calib"}},
 "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "activation_type": "QUInt8",
                  "tensor_quant_overrides": {"t_c2": {"quant_type": "QUInt16", "convert": {"quant_type": "QUInt8", "recv_nodes": ["mul"]}}}}}}
JSON
if "$Q" run --model "$M/mixed.onnx" --config "$T/wf_conv.json" --data calib="$M/calib_mixed.npz" --output "$T/conv" >"$T/conv.log" 2>&1; then
	expect "explicit convert: Sigmoid reads uint16, Mul reads t_c2 converted to uint8" $PY -c '
import onnx, sys
from onnx import numpy_helper
g = onnx.load(sys.argv[1]).graph
init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
prod = {o: n for n in g.node for o in n.output}
node = {n.name: n for n in g.node}
dq_s, dq_m = prod[node["sig"].input[0]], prod[node["mul"].input[0]]
q_m = prod[dq_m.input[0]]
ok = str(init[dq_s.input[2]].dtype) == "uint16" and str(init[dq_m.input[2]].dtype) == "uint8" \
     and q_m.op_type == "QuantizeLinear" and q_m.input[0] == dq_s.output[0] and dq_s.domain == "com.microsoft"
sys.exit(0 if ok else 1)' "$T/conv/model.onnx"
	if node "$CHK" "$M/mixed.onnx" "$T/conv/model.onnx" --inputs "$M/held_mixed.npz" --samples 16 --min-cos 0.9995 >"$T/conv.cmp" 2>&1; then ok
	else bad "explicit convert artifact in ORT: $(cut -c1-300 "$T/conv.cmp")"; fi
	echo "  explicit convert: $(cut -c1-200 "$T/conv.cmp")"
else
	bad "explicit convert run failed: $(tail -n 3 "$T/conv.log")"
fi

# REST: the same Olive-shaped workflow through a real daemon (quantd submit)
echo "QNN workflow over REST"
mkdir -p "$T/dd"
"$Q" serve --listen 127.0.0.1:0 --data-dir "$T/dd" >"$T/serve.out" 2>"$T/serve.err" &
DPID=$!
U=
for _ in $(seq 1 100); do
	U=$(sed -n 's/^quantd listening on \(http:[^ ]*\).*/\1/p' "$T/serve.out" | head -n 1)
	[ -n "$U" ] && break
	sleep 0.1
done
if [ -z "$U" ]; then
	bad "quantd serve did not start: $(tail -n 3 "$T/serve.err")"
else
	if "$Q" submit --server "$U" --model "$M/encoder.onnx" --config "$T/wf_qnn.json" --data calib="$M/calib_encoder.npz" \
		--data held="$M/held_encoder.npz" --output "$T/qnn_rest" --quiet >"$T/qnn_rest.log" 2>&1; then
		ok
		if qnn_rules "$T/qnn_rest/model.onnx" QUInt8 QUInt16 >"$T/qnn_rest.txt"; then ok; else bad "QNN rules (REST): $(cat "$T/qnn_rest.txt")"; fi
		if node "$CHK" "$M/encoder.onnx" "$T/qnn_rest/model.onnx" --inputs "$M/held_encoder.npz" --min-cos 0.9998 >"$T/qnn_rest.cmp" 2>&1; then ok
		else bad "QNN REST artifact in ORT: $(cut -c1-300 "$T/qnn_rest.cmp")"; fi
		expect "REST artifact = quantd run artifact" cmp -s "$T/qnn_rest/model.onnx" "$T/qnn_run/model.onnx"
		expect "REST job result names the fusions" $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); p=j["result"]["passes"]; sys.exit(0 if p[0]["stats"]["fusions"]["LayerNormalization"] == 2 and p[0]["stats"]["fusions"]["Gelu"] == 1 and p[1]["stats"]["qnn_config"]["activation_type"] == "uint16" else 1)' "$T/qnn_rest/job.json"
	else
		bad "QNN workflow over REST failed: $(tail -n 5 "$T/qnn_rest.log")"
	fi
	# bad input: 400s naming the field
	mid=$(curl -s -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$M/encoder.onnx" "$U/v1/models" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
	post400() { # post400 LABEL FIELD PASSES_JSON
		local label=$1 field=$2 body
		body="{\"model\": \"$mid\", \"passes\": $3}"
		local r code f
		r=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' -d "$body" "$U/v1/jobs")
		code=$(echo "$r" | tail -n 1)
		f=$(echo "$r" | head -n -1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["error"]["details"]["field"])' 2>/dev/null)
		if [ "$code" = 400 ] && [ "$f" = "$field" ]; then ok; else bad "$label: HTTP $code field '$f' (want 400 '$field'): $(echo "$r" | head -c 300)"; fi
	}
	post400 "QNN with QOperator" passes.q.quant_format \
		'{"q": {"type": "OnnxStaticQuantization", "data_config": {"name": "c", "dataset": "x"}, "execution_provider": "QNNExecutionProvider", "quant_format": "QOperator"}}'
	post400 "mixed precision with QOperator" passes.q.tensor_quant_overrides \
		'{"q": {"type": "OnnxStaticQuantization", "data_config": {"name": "c", "dataset": "x"}, "quant_format": "QOperator", "tensor_quant_overrides": {"t": {"quant_type": "QUInt16"}}}}'
	post400 "convert without recv_nodes" passes.q.tensor_quant_overrides \
		'{"q": {"type": "OnnxStaticQuantization", "data_config": {"name": "c", "dataset": "x"}, "tensor_quant_overrides": {"t": {"quant_type": "QUInt16", "convert": {"quant_type": "QUInt8"}}}}}'
	post400 "4-bit quant_type override" passes.q.extra_options.TensorQuantOverrides \
		'{"q": {"type": "OnnxStaticQuantization", "data_config": {"name": "c", "dataset": "x"}, "extra_options": {"TensorQuantOverrides": {"t": {"quant_type": "QUInt4"}}}}}'
	post400 "unknown execution provider" passes.q.execution_provider \
		'{"q": {"type": "OnnxStaticQuantization", "data_config": {"name": "c", "dataset": "x"}, "execution_provider": "DmlExecutionProvider"}}'
	post400 "DynamicToFixedShape lengths" passes.f.dim_value '{"f": {"type": "DynamicToFixedShape", "dim_param": ["a", "b"], "dim_value": [1]}}'
	post400 "DynamicToFixedShape both groups" passes.f.input_name \
		'{"f": {"type": "DynamicToFixedShape", "dim_param": ["a"], "dim_value": [1], "input_name": ["x"], "input_shape": [[1]]}}'
	post400 "dynamic_input_shapes malformed" passes.p.dynamic_input_shapes '{"p": {"type": "QnnPreprocess", "dynamic_input_shapes": [["x", "1,a"]]}}'
	post400 "channel-last not a list" passes.p.inputs_to_make_channel_last '{"p": {"type": "QnnPreprocess", "inputs_to_make_channel_last": "x"}}'
	# parameters naming the model's inputs / outputs are checked against the uploaded model
	# at submit time (encoder.onnx: input x [1,16,64], 3-D)
	post400 "channel-last of a 3-D input" passes.p.inputs_to_make_channel_last \
		'{"p": {"type": "QnnPreprocess", "inputs_to_make_channel_last": ["x"]}}'
	post400 "channel-last of an unknown output" passes.p.outputs_to_make_channel_last \
		'{"p": {"type": "QnnPreprocess", "outputs_to_make_channel_last": ["nope"]}}'
	post400 "dynamic_input_shapes of an unknown input" passes.p.dynamic_input_shapes \
		'{"p": {"type": "QnnPreprocess", "dynamic_input_shapes": [["nope", "1,16,64"]]}}'
	post400 "DynamicToFixedShape unknown input" passes.f.input_name \
		'{"f": {"type": "DynamicToFixedShape", "input_name": ["nope"], "input_shape": [[1, 16, 64]]}}'
	post400 "DynamicToFixedShape rank mismatch" passes.f.input_shape \
		'{"f": {"type": "DynamicToFixedShape", "input_name": ["x"], "input_shape": [[1, 16]]}}'
	post400 "DynamicToFixedShape fixed dim changed (legacy config)" passes.f.input_shape \
		'{"f": {"type": "DynamicToFixedShape", "config": {"input_name": ["x"], "input_shape": [[2, 16, 64]]}}}'
	r=$(curl -s -X POST -H 'Content-Type: application/json' -d "{\"model\": \"$mid\", \"passes\": {\"p\": {\"type\": \"QnnPreprocess\", \"inputs_to_make_channel_last\": [\"x\"]}}}" "$U/v1/jobs")
	case $r in
	*"input 'x' is not 4-D (its rank is not 4)"*) ok ;;
	*) bad "channel-last 400 message: $(echo "$r" | head -c 300)" ;;
	esac
	kill "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=
fi
