#!/usr/bin/env bash
# bench/search_bench.sh — trials per minute of the hyperparameter search (quantd run with
# search_strategy) on the BERT-style encoder bert_small: a sequential search over
# OnnxStaticQuantization (per_channel x calibrate_method MinMax/Entropy/Percentile x
# quant_format, 12 trials, 16 calibration + 16 held-out samples) and the same space with
# dynamic quantization. Prints the figures; asserts nothing about timing.
# Environment: B (build dir), QD_BENCH_THREADS (engine threads, default 1).
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 tests/models/make_transformer.py "$T/models" >/dev/null
M="$T/models/bert_small.onnx"
node tests/passes/ort_compare.js "$M" --write-inputs "$T/held.npz" --samples 16 --seed 7 >/dev/null
node tests/passes/ort_compare.js "$M" --write-inputs "$T/calib.npz" --samples 16 --seed 9 >/dev/null
run() {   # label, pass json
	cat > "$T/wf.json" <<JSON
{"data_configs": {"calib": {"dataset": "$T/calib.npz"}, "held": {"dataset": "$T/held.npz"}},
 "passes": {"q": $2},
 "search_strategy": {"execution_order": "joint", "sampler": "sequential"}}
JSON
	local t0 t1
	t0=$(date +%s.%N)
	"$B/quantd" run --model "$M" --config "$T/wf.json" --output "$T/out_$1" --threads "${QD_BENCH_THREADS:-1}" \
		>/dev/null 2>"$T/log_$1" || { tail -3 "$T/log_$1"; return 1; }
	t1=$(date +%s.%N)
	/usr/bin/python3 - "$T/out_$1/metrics.json" "$1" "$t0" "$t1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["search"]
wall = float(sys.argv[4]) - float(sys.argv[3])
n = len(m["trials"])
tsum = sum(t["seconds"] for t in m["trials"])
print("search %-8s %2d trials in %6.1f s wall (%5.2f s per trial in the loop): %6.1f trials/min; best trial %d %s"
      % (sys.argv[2], n, wall, tsum / n, 60.0 * n / wall, m["best"]["trial"], json.dumps(m["best"]["params"], sort_keys=True)))
PY
}
run static '{"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": true, "per_channel": [false, true], "calibrate_method": ["MinMax", "Entropy", "Percentile"], "quant_format": ["QDQ", "QOperator"], "activation_type": "uint8"}'
run dynamic '{"type": "OnnxDynamicQuantization", "disable_search": true, "per_channel": [false, true], "reduce_range": [false, true], "quant_format": ["QOperator", "QDQ"]}'
