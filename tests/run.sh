#!/usr/bin/env bash
# Runs every test: unit binaries (build/tests/test_*), then the suites under tests/*/run*.sh
# (conformance, end-to-end, ...). Each prints a line "...: N passed, N failed"; this script
# adds them up and closes with "total: N passed, N failed". Exit code non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
export B
TIMEOUT=${QD_TEST_TIMEOUT:-2400}
pass=0; fail=0; broken=()
run_one() {
	local name=$1; shift
	local log; log=$(mktemp)
	echo "== $name"
	timeout "$TIMEOUT" "$@" >"$log" 2>&1
	local rc=$?
	tail -n 40 "$log" | grep -v '^$' | grep -E 'FAIL|fail|error|passed' | tail -n 25
	local line; line=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -n "$line" ]; then
		local p f
		p=${line%% passed*}
		f=${line#*passed, }; f=${f%% failed*}
		pass=$((pass + p)); fail=$((fail + f))
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then fail=$((fail + 1)); broken+=("$name (exit $rc)"); fi
	else
		fail=$((fail + 1)); broken+=("$name (exit $rc, no result line)")
		tail -n 30 "$log"
	fi
	[ "$rc" -ne 0 ] && [ -n "${QD_TEST_VERBOSE:-}" ] && cat "$log"
	rm -f "$log"
}
for t in "$B"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "$(basename "$t")" "$t"
done
if [ -z "${QD_TEST_UNIT_ONLY:-}" ]; then
	for s in tests/*/run*.sh; do
		[ -f "$s" ] || continue
		run_one "$s" bash "$s"
	done
fi
for b in "${broken[@]+"${broken[@]}"}"; do echo "broken: $b"; done
echo "total: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
