#!/usr/bin/env bash
# tests/qops/run_qops.sh — quantized-op suite: builds every model of make_quant_models.py,
# runs it in ONNX Runtime (quantized and float reference) and in `quantd infer`, and
# checks engine vs ORT (within one quantization step; floats within 1e-4 relative) and
# ORT quantized vs float. Prints "qops: N passed, N failed". QOPS_ONLY=substr filters
# cases; QOPS_KEEP=1 keeps the work directory.
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
PY=/usr/bin/python3
work=$(mktemp -d /tmp/qops.XXXXXX)
[ -n "${QOPS_KEEP:-}" ] && echo "qops: work dir $work" || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/r"
if ! $PY tests/qops/make_quant_models.py "$work/m" >"$work/make.log" 2>&1; then
	cat "$work/make.log"
	echo "qops: 0 passed, 1 failed"
	exit 1
fi
if [ ! -x "$B/quantd" ]; then
	echo "FAIL $B/quantd not built"
	echo "qops: 0 passed, 1 failed"
	exit 1
fi
: >"$work/list"
for f in "$work"/m/*.in.npz; do
	n=$(basename "$f" .in.npz)
	[ -n "${QOPS_ONLY:-}" ] && [[ "$n" != *"$QOPS_ONLY"* ]] && continue
	echo "$work/m/$n.onnx $f $work/r/$n.ort.npz" >>"$work/list"
	echo "$work/m/$n.float.onnx $f $work/r/$n.f.npz" >>"$work/list"
	"$B/quantd" infer --model "$work/m/$n.onnx" --input "$f" --output "$work/r/$n.eng.npz" \
		>/dev/null 2>"$work/r/$n.eng.err" || rm -f "$work/r/$n.eng.npz"
done
# ORT failures show up below as "no ONNX Runtime result"; print its messages too
node tests/qops/ort_infer.js --batch "$work/list" 2>&1 | head -20
$PY tests/qops/check.py "$work/m" "$work/r"
