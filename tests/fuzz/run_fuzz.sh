#!/usr/bin/env bash
# Fuzz suite (picked up by `make test`): builds the libFuzzer targets (`make fuzz`, into
# build-fuzz/), then for EVERY fuzz/fuzz_<name>.c:
#   1. replays its whole seed corpus fuzz/corpus/<name>/ (seeds and the regression inputs
#      of crashes found earlier): any crash, leak, timeout or out-of-memory fails;
#   2. fuzzes it for FUZZ_SECONDS (default 20) from that corpus, with -timeout and
#      -rss_limit_mb; anything it finds fails, and the input is kept in
#      build-fuzz/findings/<name>/ to reproduce (build-fuzz/fuzz/fuzz_<name> FILE).
# A target without a corpus directory is a failure. New corpus entries go to a temp dir
# (FUZZ_KEEP=DIR keeps them in DIR/<name>/ instead, as `make fuzz-long` does), so running
# the tests leaves the git tree as it was. Two targets run at a time (FUZZ_JOBS).
# Prints per target the executions and the cov: figure; closes with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
JOBS=${FUZZ_JOBS:-2}
RSS_MB=${FUZZ_RSS_MB:-2048}
TIMEOUT_S=${FUZZ_TIMEOUT:-10}
pass=0; fail=0

T=$(mktemp -d "${TMPDIR:-/tmp}/qd_fuzz_run.XXXXXX")
SHM=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then SHM=$(mktemp -d /dev/shm/qd_fuzz_run.XXXXXX); fi
trap 'rm -rf "$T" ${SHM:+"$SHM"}' EXIT

t0=$(date +%s)
echo "building the fuzz targets (make fuzz)"
if ! make -j"${FUZZ_MAKE_JOBS:-2}" fuzz >"$T/build.log" 2>&1; then
	tail -n 30 "$T/build.log"
	echo "FAIL make fuzz"
	echo "fuzz: 0 passed, 1 failed"
	exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"

# One target: replay, then fuzz. Writes its report lines to $T/<name>.report and the
# count of passed / failed checks to $T/<name>.result.
run_target() {
	local name=$1 bin=build-fuzz/fuzz/fuzz_$1 corpus=fuzz/corpus/$1 p=0 f=0
	local out="$T/$name" rep="$T/$name.report"
	mkdir -p "$out/new" "$out/art"
	: >"$rep"
	local dict=()
	[ -f "fuzz/$name.dict" ] && dict=("-dict=fuzz/$name.dict")
	local tmp="$out/tmp"
	mkdir -p "$tmp"
	local fz_dir="$tmp"
	[ -n "$SHM" ] && fz_dir=$(mktemp -d "$SHM/$name.XXXXXX")
	local env=(env TMPDIR="$tmp" QD_FUZZ_DIR="$fz_dir")
	local opts=(-rss_limit_mb="$RSS_MB" -timeout="$TIMEOUT_S" -artifact_prefix="$out/art/" -print_final_stats=1)
	if [ ! -x "$bin" ]; then
		echo "FAIL $name: $bin was not built" >>"$rep"
		echo "0 2" >"$T/$name.result"
		return
	fi
	if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
		echo "FAIL $name: no seed corpus $corpus/" >>"$rep"
		echo "0 2" >"$T/$name.result"
		return
	fi
	local n_seeds
	n_seeds=$(find "$corpus" -maxdepth 1 -type f | wc -l)
	# 1. replay
	if timeout $(( TIMEOUT_S * n_seeds + 120 )) "${env[@]}" "$bin" "${opts[@]}" -runs=0 "$corpus" \
		>"$out/replay.log" 2>&1; then
		p=$((p + 1))
		echo "ok   $name: replayed $n_seeds corpus inputs, $(grep -oE 'cov: [0-9]+' "$out/replay.log" | tail -n 1)" >>"$rep"
	else
		f=$((f + 1))
		echo "FAIL $name: replaying $corpus/ failed:" >>"$rep"
		grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$out/replay.log" | head -n 8 | sed 's/^/     /' >>"$rep"
		keep_findings "$name"
	fi
	# 2. fuzz from the corpus; new inputs go to $out/new (or FUZZ_KEEP)
	local new="$out/new"
	if [ -n "${FUZZ_KEEP:-}" ]; then new="$FUZZ_KEEP/$name"; mkdir -p "$new"; fi
	if timeout $(( SECONDS_EACH + TIMEOUT_S * 3 + 120 )) "${env[@]}" "$bin" "${opts[@]}" "${dict[@]}" \
		-max_total_time="$SECONDS_EACH" "$new" "$corpus" >"$out/fuzz.log" 2>&1; then
		p=$((p + 1))
		local execs cov
		execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$out/fuzz.log" | grep -oE '[0-9]+$')
		cov=$(grep -oE 'cov: [0-9]+' "$out/fuzz.log" | tail -n 1 | grep -oE '[0-9]+')
		echo "ok   $name: fuzzed ${SECONDS_EACH} s: ${execs:-?} executions, cov: ${cov:-?}, corpus +$(find "$new" -type f | wc -l)" >>"$rep"
	else
		f=$((f + 1))
		echo "FAIL $name: fuzzing found a problem:" >>"$rep"
		grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==|#[0-9]+ 0x' "$out/fuzz.log" | head -n 12 | sed 's/^/     /' >>"$rep"
		keep_findings "$name"
	fi
	[ -n "$SHM" ] && rm -rf "$fz_dir"
	echo "$p $f" >"$T/$name.result"
}

# Copy crash / leak / timeout / oom inputs out of the temp dir to reproduce them.
keep_findings() {
	local name=$1 dst=build-fuzz/findings/$1
	local files=("$T/$name/art/"*)
	[ -e "${files[0]}" ] || return 0
	mkdir -p "$dst"
	cp "${files[@]}" "$dst/"
	echo "     inputs kept in $dst/: $(cd "$dst" && ls | tr '\n' ' ')" >>"$T/$name.report"
}

names=()
for src in fuzz/fuzz_*.c; do
	n=$(basename "$src" .c)
	names+=("${n#fuzz_}")
done
running=0
for name in "${names[@]}"; do
	run_target "$name" &
	running=$((running + 1))
	if [ "$running" -ge "$JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

for name in "${names[@]}"; do
	cat "$T/$name.report"
	read -r p f <"$T/$name.result" || { p=0; f=2; }
	pass=$((pass + p)); fail=$((fail + f))
done
echo "fuzz: ${#names[@]} targets, $(( $(date +%s) - t0 )) s in all"
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
