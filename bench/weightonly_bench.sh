#!/usr/bin/env bash
# bench/weightonly_bench.sh — weight-only quantization cost and the 4-bit model's latency.
# A GPT-2-style decoder of >= 100 M MatMul weights (tests/weightonly/make_decoder.py,
# default 8 layers x hidden 1024 + LM head) is quantized by `quantd run` with RTN (DEFAULT),
# HQQ and GPTQ (block 32, 4-bit; GPTQ on 8 calibration sequences of 32 tokens): wall time,
# seconds per 100 M weights and peak RSS (/usr/bin/time). Then the latency of one batch
# (1 x 32 tokens) of the float and the RTN model, best of N, in quantd's executor
# (`quantd infer --repeat`, median) and in ONNX Runtime (bench/ort_time.js, one thread),
# runs alternating float / 4-bit. Prints figures only.
# env: B (build dir), WO_LAYERS (8), WO_HIDDEN (1024), BENCH_WORK (scratch), RUNS (5)
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
L=${WO_LAYERS:-8}
H=${WO_HIDDEN:-1024}
RUNS=${RUNS:-5}
W=${BENCH_WORK:-$B/bench/weightonly}
[ -x "$Q" ] || { echo "weightonly_bench: $Q missing (run make B=$B)"; exit 1; }
[ -x /usr/bin/time ] || { echo "weightonly_bench: /usr/bin/time missing"; exit 1; }
mkdir -p "$W"
if [ ! -s "$W/m/gpt.onnx" ]; then
	$PY tests/weightonly/make_decoder.py "$W/m" --layers "$L" --hidden "$H"
fi
$PY -c "import numpy as np; d = np.load('$W/m/gpt_calib.npz')['input_ids']; np.savez('$W/calib8.npz', input_ids=d[:8]); np.savez('$W/one.npz', input_ids=d[8:9])"
echo "model: $W/m/gpt.onnx ($(stat -c %s "$W/m/gpt.onnx") bytes, $L layers, hidden $H)"
printf '%-6s %10s %14s %12s %10s\n' algo seconds "s/100M wts" "peak MB" ratio
for a in RTN HQQ GPTQ; do
	case $a in
	RTN) cfg='"type": "OnnxBlockWiseRtnQuantization", "block_size": 32' ;;
	HQQ) cfg='"type": "OnnxHqqQuantization", "block_size": 32' ;;
	GPTQ) cfg='"type": "OnnxMatMul4Quantizer", "algorithm": "GPTQ", "block_size": 32, "data_config": "calib"' ;;
	esac
	echo "{\"passes\": {\"q\": {$cfg}}, \"data_configs\": {\"calib\": {\"dataset\": \"$W/calib8.npz\"}, \"held\": {\"dataset\": \"$W/one.npz\"}}}" >"$W/$a.json"
	/usr/bin/time -f "%e %M" -o "$W/$a.time" "$Q" run --model "$W/m/gpt.onnx" --config "$W/$a.json" \
		--output "$W/$a" >"$W/$a.log" 2>&1 || { echo "$a: quantd run failed: $(tail -n 2 "$W/$a.log")"; continue; }
	read -r secs rss <"$W/$a.time"
	# the pass's own time (metrics.json passes[0].seconds) excludes load / save / evaluation
	$PY - "$W/$a/metrics.json" "$secs" "$rss" "$a" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
p = m["passes"][0]
wts = p["stats"]["weight_only"]["float_weight_bytes"] / 4
print("%-6s %10.2f %14.2f %12.0f %10.3f   (pass %.2f s of %.2f s wall, %.1f M weights, min cosine %.5f)" % (
    sys.argv[4], p["seconds"], p["seconds"] / wts * 1e8, float(sys.argv[3]) / 1024, m["size"]["ratio"],
    p["seconds"], float(sys.argv[2]), wts / 1e6, m["accuracy"]["min_cosine"]))
EOF
done
if [ -s "$W/RTN/model.onnx" ]; then
	echo "latency of one 1 x 32 batch, ms (quantd: median of $RUNS, 1 thread; ORT: best of $RUNS, 1 thread)"
	for round in 1 2; do
		for m in "$W/m/gpt.onnx:float" "$W/RTN/model.onnx:4-bit"; do
			f=${m%%:*} label=${m##*:}
			qd=$("$Q" infer --model "$f" --input "$W/one.npz" --output "$W/lat.npz" --repeat "$RUNS" 2>&1 |
			     sed -nE 's/.*median ([0-9.]+).*/\1 ms/p' | head -1)
			ort=$(node bench/ort_time.js "$f" "$W/one.npz" "$RUNS")
			printf 'round %d %-6s quantd %10s   ORT %8s ms\n' "$round" "$label" "${qd:-?}" "$ort"
		done
	done
fi
