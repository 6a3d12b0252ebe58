#!/usr/bin/env bash
# Hostile models (tests/robust/make_models.py): nodes without inputs/outputs, 10^12-element
# allocations, out-of-range indices, endless Loops, cycles, shape mismatches, 10^6 nodes and
# 10^5 graph inputs. For each, `quantd infer` must exit 1 (never a signal, never >= 128) with
# the expected error message, or succeed where the model is legal; cases marked "run" also go
# through `quantd run` with a dynamic-quantization workflow, which must fail the same way (or
# succeed, and then the output model loads and runs in ONNX Runtime). Prints the seconds of
# the slow cases and "robust: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
T=$(mktemp -d /tmp/qd_robust.XXXXXX)
[ -n "${QD_ROBUST_KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

if [ ! -x "$Q" ]; then bad "no $Q (build first)"; echo "robust: $pass passed, $fail failed"; exit 1; fi
t0=$(date +%s.%N)
if ! $PY tests/robust/make_models.py "$T/m" >"$T/gen.log" 2>&1; then
	bad "make_models.py: $(tail -n 3 "$T/gen.log")"
	echo "robust: $pass passed, $fail failed"; exit 1
fi
printf 'generated %s in %.1f s\n' "$(cat "$T/gen.log")" "$(echo "$(date +%s.%N) - $t0" | bc)"
echo '{"passes": {"q": {"type": "OnnxDynamicQuantization"}}}' >"$T/dyn.json"

# check NAME WHAT RC EXPECT REGEX LOG
check() {
	local name=$1 what=$2 rc=$3 expect=$4 re=$5 log=$6
	if [ "$rc" -ge 128 ] || [ "$rc" -lt 0 ]; then
		bad "$name ($what): exit $rc (signal): $(tail -n 2 "$log")"; return 1
	fi
	if [ "$expect" = ok ]; then
		if [ "$rc" -ne 0 ]; then bad "$name ($what): exit $rc, expected success: $(tail -n 1 "$log")"; return 1; fi
	else
		if [ "$rc" -ne 1 ]; then bad "$name ($what): exit $rc, expected 1: $(tail -n 1 "$log")"; return 1; fi
		if ! grep -qE -- "$re" "$log"; then
			bad "$name ($what): message does not match /$re/: $(tail -n 1 "$log")"; return 1
		fi
	fi
	ok
}
# timed NAME WHAT SECONDS: slow cases print their figure (no timing assertion)
timed() {
	if [ "$(echo "$3 > 0.5" | bc)" = 1 ]; then printf '  %-26s %-6s %6.2f s\n' "$1" "$2" "$3"; fi
}

while IFS=$'\t' read -r name expect re flags run rre; do
	m=$T/m/$name.onnx
	[ "$flags" = "-" ] && flags=""
	s=$(date +%s.%N)
	# shellcheck disable=SC2086
	timeout 60 "$Q" infer --model "$m" --input "$T/m/$name.npz" --output "$T/$name.out.npz" $flags 2>"$T/$name.log"
	rc=$?
	secs=$(echo "$(date +%s.%N) - $s" | bc)
	timed "$name" infer "$secs"
	check "$name" infer "$rc" "$expect" "$re" "$T/$name.log" "$secs"
	if [ "$run" = run ]; then
		# quantd run takes the same limits (--max-seconds for the endless loops)
		rflags=$(echo "$flags" | grep -oE -- '--max-(seconds|tensor-mb|memory-mb) [0-9.]+')
		s=$(date +%s.%N)
		# shellcheck disable=SC2086
		timeout 120 "$Q" run -q --model "$m" --config "$T/dyn.json" --output "$T/run_$name" $rflags 2>"$T/$name.run.log"
		rc=$?
		secs=$(echo "$(date +%s.%N) - $s" | bc)
		timed "$name" run "$secs"
		[ "$rre" = "-" ] && rre=$re
		if check "$name" run "$rc" "$expect" "$rre" "$T/$name.run.log" "$secs" &&
		   [ "$expect" = ok ] && [ "$rc" = 0 ]; then
			# the model quantd wrote runs in ONNX Runtime and agrees with the float model
			s=$(date +%s.%N)
			feeds=$T/m/$name.npz
			[ "$name" = inputs_1e5_all ] && feeds=fill:2   # every input is 2 in its .npz
			if node tests/robust/ort_check.js "$T/run_$name/model.onnx" "$feeds" \
				"$T/$name.out.npz" 0.999 >"$T/$name.ort.log" 2>&1; then ok
			else bad "$name (ORT): $(tail -n 1 "$T/$name.ort.log")"; fi
			timed "$name" ort "$(echo "$(date +%s.%N) - $s" | bc)"
		fi
	fi
done <"$T/m/cases.tsv"

# the outputs of the legal models are right
if $PY - "$T" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
y = np.load(d + "/nodes_1e6.out.npz")["t999999"]
assert y.tolist() == [0.0], y          # relu(-2) through 10^6 Relus
y = np.load(d + "/inputs_1e5_all.out.npz")["y"]
assert y.tolist() == [4.0], y          # x99999 + x0 = 2 + 2
y = np.load(d + "/onehot_index_oob.out.npz")["y"]
assert y.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]], y   # out-of-range indices: all off
EOF
then ok; else bad "outputs of the legal models"; fi

printf 'total %.1f s\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
echo "robust: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
