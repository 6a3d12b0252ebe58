#!/usr/bin/env bash
# bench/qnn_bench.sh — time of QnnPreprocess (passes/qnn.c) on the BERT-style encoder of
# tests/models/make_transformer.py (4 layers, hidden 256: 4 erf-GELUs to fuse) and on the
# tests/qnn encoder with fuse_layernorm, and of the whole QnnPreprocess ->
# OnnxStaticQuantization (QNN, QUInt16 activations) workflow on the latter. Prints the
# pass's own seconds (metrics.json passes[].seconds, median of RUNS) and the fusion counts;
# asserts nothing on timing.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
RUNS=${RUNS:-5}
T=$(mktemp -d /tmp/qd_qnn_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
$PY tests/models/make_transformer.py "$T/models" >/dev/null || exit 1
$PY tests/qnn/make_qnn_models.py "$T/qnn" >/dev/null || exit 1
echo '{"passes": {"p": {"type": "QnnPreprocess", "fuse_layernorm": true}}}' >"$T/pp.json"
cat >"$T/wf.json" <<'JSON'
{"data_configs": {"calib": {"dataset": "calib"}},
 "passes": {"pre": {"type": "QnnPreprocess", "fuse_layernorm": true},
            "q": {"type": "OnnxStaticQuantization", "data_config": "calib", "execution_provider": "QNNExecutionProvider",
                  "activation_type": "QUInt16"}}}
JSON
# bench LABEL MODEL CONFIG [quantd run args]: median pass seconds of RUNS runs
bench() {
	local label=$1 model=$2 cfg=$3; shift 3
	local f=$T/$label.times
	: >"$f"
	for i in $(seq 1 "$RUNS"); do
		rm -rf "$T/out"
		if ! "$Q" run --model "$model" --config "$cfg" --output "$T/out" "$@" >"$T/$label.log" 2>&1; then
			echo "$label: quantd run failed: $(tail -n 2 "$T/$label.log")"
			return 1
		fi
		$PY -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join("%s=%.4f" % (p["type"], p["seconds"]) for p in m["passes"]) + "\t" + json.dumps(m["passes"][0]["stats"].get("fusions")))' "$T/out/metrics.json" >>"$f"
	done
	$PY - "$label" "$f" "$(stat -c %s "$model")" <<'EOF'
import sys, statistics
label, f, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.split("\t", 1) for l in open(f).read().splitlines()]
per = {}
for times, _ in rows:
    for kv in times.split():
        k, v = kv.split("=")
        per.setdefault(k, []).append(float(v))
med = "  ".join("%s %.3f s (min %.3f, max %.3f)" % (k, statistics.median(v), min(v), max(v)) for k, v in per.items())
print("%-24s %8.1f KB  %s  fusions %s" % (label, size / 1024, med, rows[-1][1] if rows else "?"))
EOF
}
echo "QnnPreprocess (median of $RUNS runs, pass seconds from metrics.json)"
bench bert_qnn_preprocess "$T/models/bert.onnx" "$T/pp.json"
bench encoder_qnn_preprocess "$T/qnn/encoder.onnx" "$T/pp.json"
bench encoder_qnn_workflow "$T/qnn/encoder.onnx" "$T/wf.json" --data calib="$T/qnn/calib_encoder.npz"
