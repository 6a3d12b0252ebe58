#!/usr/bin/env bash
# bench/models_tar_big.sh — a model over 2 GiB of float weights through the REST path: a
# generated MLP (bench/make_big_ext_model.py, model.onnx + model.onnx.data) packed into a
# plain tar, POST /v1/models (curl -T streams it), a weight-only RTN 4-bit job
# (OnnxBlockWiseRtnQuantization, block 32, external data out), the artifacts (model.onnx
# and model.onnx.data) downloaded and run in ONNX Runtime against the float model.
# Prints: float weight bytes, tar bytes, upload seconds and the daemon's peak RSS (VmHWM),
# the job's seconds and its process's peak RSS (from the job log), the artifact sizes,
# MatMulNBits count and ORT's cosine. Exit 1 when a step fails.
#   B=build bash bench/models_tar_big.sh [--layers N] [--dim D]   (default 36 x 4096: 2.25 GiB)
# Disk: about 4.5x the float bytes in a temporary directory under $TMPDIR (or /tmp).
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
PY=/usr/bin/python3
Q="$B/quantd"
layers=36 dim=4096
while [ $# -gt 0 ]; do
	case "$1" in
	--layers) layers=$2; shift 2 ;;
	--dim) dim=$2; shift 2 ;;
	*) echo "models_tar_big: unknown option $1" >&2; exit 2 ;;
	esac
done
work=$(mktemp -d "${TMPDIR:-/tmp}/models_tar_big.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
die() { echo "models_tar_big: FAIL $*"; exit 1; }
jget() { $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }

t0=$(date +%s.%N)
wbytes=$($PY bench/make_big_ext_model.py "$work/float" --layers "$layers" --dim "$dim") || die "model generation"
tar -C "$work/float" -cf "$work/big.tar" model.onnx model.onnx.data || die "tar"
tbytes=$(stat -c %s "$work/big.tar")
echo "float weights: $wbytes bytes ($(echo "scale=3; $wbytes / 1073741824" | bc) GiB), $layers x ${dim}x$dim; tar $tbytes bytes; made in $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5) s"

mkdir -p "$work/data"
"$Q" serve --listen 127.0.0.1:0 --data-dir "$work/data" --workers 1 >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" && break; sleep 0.1; done
U=$(sed -n 's/^quantd listening on //p' "$work/serve.out")
[ -n "$U" ] || die "daemon did not start: $(tail -n 3 "$work/serve.err")"

t0=$(date +%s.%N)
code=$(curl -s -o "$work/model.json" -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
	-T "$work/big.tar" "$U/v1/models?name=big.tar")
up_s=$(echo "$(date +%s.%N) - $t0" | bc | cut -c1-6)
[ "$code" = 201 ] || die "upload: HTTP $code $(head -c 300 "$work/model.json")"
mid=$(jget "$work/model.json" 'd["id"]')
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "upload: $up_s s ($(echo "scale=1; $tbytes / 1048576 / $up_s" | bc) MiB/s incl. unpack + check), daemon peak RSS $((hwm / 1024)) MiB; external_data $(jget "$work/model.json" 'd["external_data"]')"
rm -f "$work/big.tar"

cat >"$work/job.json" <<JSON
{"model": "$mid", "passes": {"q": {"type": "OnnxBlockWiseRtnQuantization", "block_size": 32,
 "save_as_external_data": true, "all_tensors_to_one_file": true}}}
JSON
t0=$(date +%s.%N)
curl -s -o "$work/sub.json" -X POST -H 'Content-Type: application/json' --data-binary @"$work/job.json" "$U/v1/jobs"
jid=$(jget "$work/sub.json" 'd["id"]') || die "submit: $(cat "$work/sub.json")"
state=
for _ in $(seq 3600); do
	curl -s -o "$work/job_state.json" "$U/v1/jobs/$jid"
	state=$(jget "$work/job_state.json" 'd["state"]')
	case "$state" in succeeded|failed|canceled) break ;; esac
	sleep 1
done
job_s=$(echo "$(date +%s.%N) - $t0" | bc | cut -c1-6)
curl -s "$U/v1/jobs/$jid/log" >"$work/job.log"
[ "$state" = succeeded ] || die "job $state: $(jget "$work/job_state.json" 'd.get("error")') $(tail -n 5 "$work/job.log")"
peak=$(grep -o 'peak RSS [0-9]* MiB' "$work/job.log" | tail -n 1)
echo "job: $job_s s (submit to succeeded), job process $peak vs $((wbytes / 1048576)) MiB of float weights"
grep -o 'model tar unpacked[^"]*' "$work/job.log" | head -n 1

mkdir -p "$work/q"
$PY - "$work/job_state.json" >"$work/arts.txt" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
for a in d.get("artifacts", []):
    if a["name"] in ("model.onnx", "model.onnx.data"):
        print(a["name"], a["url"], a.get("size"))
PYEOF
while read -r name url size; do
	curl -s -o "$work/q/$name" "$U$url" || die "download $name"
	echo "artifact $name: $size bytes"
done <"$work/arts.txt"
[ -s "$work/q/model.onnx" ] && [ -s "$work/q/model.onnx.data" ] || die "artifacts: $(cat "$work/arts.txt")"
nb=$($PY -c 'import onnx,sys; m=onnx.load(sys.argv[1], load_external_data=False); print(sum(n.op_type=="MatMulNBits" for n in m.graph.node))' "$work/q/model.onnx")
echo "MatMulNBits nodes: $nb of $layers"
[ "$nb" = "$layers" ] || die "expected $layers MatMulNBits"
/usr/bin/time -v node tests/e2e/ort_compare.js "$work/float/model.onnx" "$work/q/model.onnx" --min-cos 0.9 --runs 1 \
	>"$work/ort.out" 2>"$work/ort.err"
orc=$?
echo "ORT: $(cat "$work/ort.out") (peak RSS of the ORT process $(awk '/Maximum resident/ {print int($6/1024)}' "$work/ort.err") MiB)"
[ $orc = 0 ] || die "ORT: $(grep ort_compare "$work/ort.err")"
echo "models_tar_big: ok"
