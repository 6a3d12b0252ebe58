#!/usr/bin/env bash
# tests/qops/run_qops.sh — quantized-op suite: builds every model of make_quant_models.py,
# runs it in ONNX Runtime (quantized and float reference) and in `quantd infer`, and
# checks engine vs ORT (codes and Q/DQ floats exact, one code only where check.py's
# manifest says why; other floats within 1e-6 relative) and ORT quantized vs float.
# Then, as an integration check, models quantized by `quantd run` (OnnxDynamicQuantization
# on the tests/models transformer models; a generator or `quantd run` failure is a
# failure) run in the engine and in ORT: outputs within 1e-6 relative (measured worst
# 2.1e-7, bert_small) and 2e-2 for the LSTM model (measured 0.0121; ORT quantizes X and H
# per step, the engine keeps them float, see engine/ops_quant_lstm.c). Prints "qops: N passed, N failed".
# QOPS_ONLY=substr filters cases; QOPS_KEEP=1 keeps the work directory.
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
$PY tests/qops/check.py "$work/m" "$work/r" | tee "$work/check.log" | grep -v '^qops:'
read -r pass fail < <(sed -nE 's/^qops: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/p' "$work/check.log")
pass=${pass:-0}; fail=${fail:-1}

# integration: the quantization passes' output models
if [ -z "${QOPS_ONLY:-}" ] && ! $PY tests/models/make_transformer.py "$work/tm" >"$work/tm.log" 2>&1; then
	echo "FAIL integration: tests/models/make_transformer.py failed: $(tail -n 3 "$work/tm.log")"
	fail=$((fail + 1))
elif [ -z "${QOPS_ONLY:-}" ]; then
	$PY -c "import numpy as np; r = np.random.RandomState(0)
np.savez('$work/bert_in.npz', input_ids=r.randint(0, 200, (2, 16)).astype(np.int64))
np.savez('$work/mlp_in.npz', x=r.standard_normal((4, 64)).astype(np.float32))
np.savez('$work/attention_in.npz', x=r.standard_normal((2, 5, 64)).astype(np.float32))
np.savez('$work/lstm_in.npz', x=r.standard_normal((6, 2, 16)).astype(np.float32))"
	for model in bert_small mlp attention lstm; do
		# DynamicQuantizeLSTM: ORT also quantizes X and H per step, the engine keeps them float
		tol=1e-6
		[ "$model" = lstm ] && tol=2e-2
		for cfg in '' ', "per_channel": true, "precision": "uint8"' ', "quant_format": "QDQ", "per_channel": true'; do
			if [ "$model" = lstm ] && [[ "$cfg" == *QDQ* ]]; then
				echo "skip integration lstm {$cfg}: QDQ keeps the float LSTM, which the engine does not run"
				continue
			fi
			o="$work/int_${model}_${#cfg}"
			echo "{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"$cfg}}}" >"$work/cfg.json"
			if ! "$B/quantd" run -q --model "$work/tm/$model.onnx" --config "$work/cfg.json" --output "$o" >"$work/run.log" 2>&1; then
				echo "FAIL integration $model {$cfg}: quantd run failed: $(tail -n 2 "$work/run.log")"
				fail=$((fail + 1))
				continue
			fi
			in="$work/${model%_small}_in.npz"
			if ! "$B/quantd" infer --model "$o/model.onnx" --input "$in" --output "$o/eng.npz" >/dev/null 2>"$o/eng.err"; then
				echo "FAIL integration $model {$cfg}: engine: $(tail -n 1 "$o/eng.err")"
				fail=$((fail + 1))
				continue
			fi
			node tests/qops/ort_infer.js "$o/model.onnx" "$in" "$o/ort.npz" 2>&1 | head -3
			if $PY -c "
import sys, numpy as np
e, o = np.load('$o/eng.npz'), np.load('$o/ort.npz')
bad = [k for k in o.files if e[k].shape != o[k].shape or
       np.abs(e[k].astype(np.float64) - o[k]).max() > $tol * max(1.0, np.abs(o[k]).max())]
sys.exit(1 if bad else 0)" 2>/dev/null; then
				pass=$((pass + 1))
			else
				echo "FAIL integration $model {$cfg}: engine and ORT outputs differ beyond $tol"
				fail=$((fail + 1))
			fi
		done
	done
fi
echo "qops: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
