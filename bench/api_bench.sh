#!/usr/bin/env bash
# bench/api_bench.sh — REST figures of a real `quantd serve` on loopback: requests/s of
# GET /v1/jobs/{id} (and GET /healthz for reference) with wrk, and model upload MB/s with
# curl on generated ~117 MB models (distinct seeds: identical bytes dedupe). Prints figures.
#
# env: B (build dir, default build), WRK_SECONDS (default 10), UPLOADS (distinct big
# uploads, default 3), BIG_LAYERS / BIG_DIM (upload model shape, default 7 x 2048).
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
WRK_SECONDS=${WRK_SECONDS:-10}
UPLOADS=${UPLOADS:-3}
BIG_LAYERS=${BIG_LAYERS:-7}
BIG_DIM=${BIG_DIM:-2048}
[ -x "$Q" ] || { echo "api_bench: $Q missing (run make B=$B)"; exit 1; }
for t in wrk curl; do
	command -v $t >/dev/null || { echo "api_bench: '$t' missing (scripts/install-deps.sh installs it)"; exit 1; }
done

T=$(mktemp -d)
PID=""
cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$PID" 2>/dev/null && kill -KILL "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$Q" serve --listen 127.0.0.1:0 --data-dir "$T/data" --log-level warn >"$T/stdout" 2>"$T/stderr" &
PID=$!
U=""
for _ in $(seq 200); do
	U=$(sed -n 's|^quantd listening on \(http://127\.0\.0\.1:[0-9]*\)$|\1|p' "$T/stdout")
	[ -n "$U" ] && break
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.05
done
if [ -z "$U" ]; then
	echo "api_bench: daemon did not report its address; stderr:"
	cat "$T/stderr"
	exit 1
fi

# daemon CPU seconds (user+sys) and memory high-water mark, from /proc
proc_cpu() { awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / tck }' "/proc/$PID/stat"; }
proc_mem() { awk '/^(VmHWM|VmRSS):/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$PID/status"; }

echo "api_bench: quantd serve on $U (data dir in $T, 2 workers, engine threads 1)"
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: the client, wrk and the daemon compete for 2 cores)"
echo "daemon memory at start: $(proc_mem)"

# a small model and one finished job to poll
$PY tests/models/make_transformer.py "$T/small" >/dev/null
up=$(curl -sS -X POST -H 'Content-Type: application/octet-stream' \
	--data-binary @"$T/small/bert_small.onnx" "$U/v1/models?name=bert_small.onnx")
mid=$(echo "$up" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])') || {
	echo "api_bench: upload failed: $up"; exit 1; }
job=$(curl -sS -X POST -H 'Content-Type: application/json' "$U/v1/jobs" -d "{\"model\": \"$mid\",
	\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"per_channel\": true, \"quant_format\": \"QOperator\"}}}")
jid=$(echo "$job" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])') || {
	echo "api_bench: job submit failed: $job"; exit 1; }
state=queued
for _ in $(seq 600); do
	state=$(curl -sS "$U/v1/jobs/$jid" | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')
	case $state in succeeded|failed|canceled) break ;; esac
	sleep 0.1
done
jbytes=$(curl -sS "$U/v1/jobs/$jid" | wc -c)
echo "job $jid on bert_small: $state (GET /v1/jobs/{id} body $jbytes bytes)"
echo

run_wrk() {   # label url
	local out c0 c1
	c0=$(proc_cpu)
	out=$(wrk -t2 -c16 -d"${WRK_SECONDS}s" --latency "$2" 2>&1) || { echo "$1: wrk failed: $out"; return 1; }
	c1=$(proc_cpu)
	local rps lat p99 n non2xx errs cpu
	rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
	lat=$(echo "$out" | awk '$1 == "Latency" { print $2; exit }')
	p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
	n=$(echo "$out" | awk '/requests in/ { print $1 }')
	non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
	errs=$(echo "$out" | awk '/Socket errors/ { sub(/.*Socket errors: /, ""); print }')
	cpu=$(echo "$c1 - $c0" | bc)
	printf '%-26s %9s req/s  mean %-8s p99 %-8s daemon CPU %6.2f s = %5.0f us/request  non-2xx %s%s\n' \
		"$1" "$rps" "$lat" "$p99" "$cpu" "$(echo "${cpu} * 1000000 / ${n:-1}" | bc -l)" "${non2xx:-0}" \
		"${errs:+  socket errors: $errs}"
}
echo "wrk -t2 -c16 -d${WRK_SECONDS}s --latency (keep-alive), loopback:"
run_wrk "GET /v1/jobs/{id}" "$U/v1/jobs/$jid"
run_wrk "GET /healthz (reference)" "$U/healthz"
echo "daemon memory after wrk: $(proc_mem)"
echo

echo "upload: curl --data-binary POST /v1/models of distinct ${BIG_LAYERS}x${BIG_DIM}^2 MatMul models (bench/make_big_model.py)"
echo "  (the daemon streams the body into the blob store with sha256, fsyncs, then parses and checks the model"
echo "  before answering; MB = 1e6 bytes; wall = curl time_total, CPU = daemon user+sys during the request)"
printf '  %-22s %10s %6s %8s %9s %8s\n' upload bytes status wall_s MB/s cpu_s
total_b=0; total_t=0
for i in $(seq "$UPLOADS"); do
	f=$T/big_$i.onnx
	$PY bench/make_big_model.py "$f" --layers "$BIG_LAYERS" --dim "$BIG_DIM" --seed $((100 + i))
	c0=$(proc_cpu)
	r=$(curl -sS -o "$T/up_$i.json" -w '%{http_code} %{size_upload} %{time_total}' -X POST \
		-H 'Content-Type: application/octet-stream' --data-binary @"$f" "$U/v1/models?name=big_$i.onnx")
	c1=$(proc_cpu)
	read -r code bytes secs <<<"$r"
	printf '  %-22s %10s %6s %8.3f %9.1f %8.2f\n' "distinct #$i (seed $((100 + i)))" "$bytes" "$code" "$secs" \
		"$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(echo "$c1 - $c0" | bc)"
	[ "$code" = 201 ] || { echo "  upload $i: unexpected status: $(head -c 300 "$T/up_$i.json")"; continue; }
	total_b=$((total_b + bytes)); total_t=$(echo "$total_t + $secs" | bc -l)
	[ "$i" -lt "$UPLOADS" ] && rm -f "$f"   # keep the last one for the identical re-upload
done
if [ "$total_b" -gt 0 ]; then
	printf '  %-22s %10s %6s %8.3f %9.1f\n' "distinct, aggregate" "$total_b" "" "$total_t" \
		"$(echo "$total_b / 1000000 / $total_t" | bc -l)"
fi
f=$T/big_$UPLOADS.onnx
if [ -s "$f" ]; then
	c0=$(proc_cpu)
	r=$(curl -sS -o "$T/up_dup.json" -w '%{http_code} %{size_upload} %{time_total}' -X POST \
		-H 'Content-Type: application/octet-stream' --data-binary @"$f" "$U/v1/models?name=dup.onnx")
	c1=$(proc_cpu)
	read -r code bytes secs <<<"$r"
	printf '  %-22s %10s %6s %8.3f %9.1f %8.2f\n' "identical re-upload" "$bytes" "$code" "$secs" \
		"$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(echo "$c1 - $c0" | bc)"
fi
echo "daemon memory after uploads: $(proc_mem)"
