#!/usr/bin/env python3
"""Hyperparameter search end to end with `quantd run` (search_strategy): the trial loop,
the samplers on a real model, determinism, the artifacts in ONNX Runtime.

For each search: every trial's model (trials/<n>/model.onnx) is loaded and run in ONNX
Runtime and compared with the float model there (tests/passes/ort_compare.js); the best
model's metrics.json figures must agree with the same figures measured in ORT on the same
held-out samples; model.onnx must be the best trial's model byte for byte. Prints
"search: N passed, N failed".
"""
import hashlib, json, os, shutil, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
B = os.environ.get("B", "build")
QUANTD = os.path.join(ROOT, B, "quantd")
CMP = os.path.join(ROOT, "tests", "passes", "ort_compare.js")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", what)
    else:
        failed += 1
        print("FAIL", what)
    return cond


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(model, wf, out, data=()):
    cfg = out + ".json"
    with open(cfg, "w") as f:
        json.dump(wf, f)
    cmd = [QUANTD, "run", "--model", model, "--config", cfg, "--output", out]
    for d in data:
        cmd += ["--data", d]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return p


def ort(float_model, quant, held, extra=()):
    cmd = ["node", CMP, float_model, quant, "--inputs", held, "--samples", "16"] + list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout.strip().splitlines()[-1:] or [p.stderr.strip()]


def check_search(label, model, out, held, n_expected, min_cos):
    m = json.load(open(os.path.join(out, "metrics.json")))
    s = m.get("search", {})
    trials = s.get("trials", [])
    check(len(trials) == n_expected, "%s: %d trials (expected %d)" % (label, len(trials), n_expected))
    ok = [t for t in trials if t.get("status") == "ok"]
    check(len(ok) == len(trials), "%s: every trial succeeded" % label)
    for t in ok:
        if "model" not in t:
            continue
        rc, line = ort(model, os.path.join(out, t["model"]), held, ["--min-cos", str(min_cos)])
        check(rc == 0, "%s: trial %d %s runs in ORT, cosine vs float >= %g: %s"
              % (label, t["n"], json.dumps(t["params"], sort_keys=True), min_cos, line[0][:160]))
    best = s.get("best", {})
    bt = [t for t in trials if t["n"] == best.get("trial")]
    check(len(bt) == 1, "%s: best names a trial (%s)" % (label, best.get("trial")))
    if bt:
        check(sha(os.path.join(out, "model.onnx")) == sha(os.path.join(out, bt[0]["model"])),
              "%s: model.onnx is trial %d's model" % (label, bt[0]["n"]))
        check(m.get("values") == bt[0]["values"], "%s: metrics.json values are the best trial's" % label)
        # the best trial ranks first: no other ok trial has a higher priority-1 value
        k1 = [o for o in s["objectives"] if o["priority"] == 1][0]
        sign = 1 if k1["higher_is_better"] else -1
        top = max(sign * t["values"][k1["key"]] for t in ok)
        check(abs(sign * bt[0]["values"][k1["key"]] - top) < 1e-12,
              "%s: best has the top %s (%.6f)" % (label, k1["key"], bt[0]["values"][k1["key"]]))
        check(bt[0]["n"] in s.get("pareto", []), "%s: best is on the pareto frontier %s" % (label, s.get("pareto")))
    # quantd's figures for the best model == ORT's on the same held-out samples
    rc, line = ort(model, os.path.join(out, "model.onnx"), held,
                   ["--metrics", os.path.join(out, "metrics.json"), "--max-metric-cos", "2e-3",
                    "--max-metric-abs", "0.05"])
    check(rc == 0, "%s: best model's metrics.json agrees with ORT on the held-out samples: %s" % (label, line[0][:200]))
    fp = json.load(open(os.path.join(out, "footprint.json")))
    nodes = fp.get("nodes", {})
    cands = [n for n in nodes.values() if n.get("trial")]
    check(len(cands) == len([t for t in trials if "cached_from" not in t]),
          "%s: footprint lists every candidate (%d)" % (label, len(cands)))
    check(all(n.get("parent_model_id") in nodes for n in cands), "%s: every candidate's parent is a footprint node" % label)
    check(sorted(n["trial"] for n in cands if n.get("is_pareto_frontier")) == sorted(s.get("pareto", [])),
          "%s: footprint marks the pareto frontier of metrics.json" % label)
    return m


def main():
    T = tempfile.mkdtemp(prefix="qd-search-")
    try:
        models = os.path.join(T, "models")
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests", "models", "make_transformer.py"), models],
                       check=True, capture_output=True)
        bert = os.path.join(models, "bert_small.onnx")
        mlp = os.path.join(models, "mlp.onnx")
        held = {}
        calib = {}
        for name, mp in (("bert", bert), ("mlp", mlp)):
            held[name] = os.path.join(T, name + "_held.npz")
            calib[name] = os.path.join(T, name + "_calib.npz")
            subprocess.run(["node", CMP, mp, "--write-inputs", held[name], "--samples", "16", "--seed", "7"], check=True,
                           capture_output=True)
            subprocess.run(["node", CMP, mp, "--write-inputs", calib[name], "--samples", "16", "--seed", "99"],
                           check=True, capture_output=True)

        # 1. sequential, exhaustive: dynamic quantization of the BERT-style encoder over
        #    per_channel x quant_format x reduce_range (8 points), held-out data
        wf = {"data_configs": {"held": {"dataset": held["bert"]}},
              "passes": {"q": {"type": "OnnxDynamicQuantization", "disable_search": True,
                               "per_channel": "SEARCHABLE_VALUES", "quant_format": "SEARCHABLE_VALUES",
                               "reduce_range": [False, True]}},
              "search_strategy": {"execution_order": "joint", "sampler": "sequential", "output_model_num": 3}}
        out = os.path.join(T, "seq")
        p = run(bert, wf, out)
        if check(p.returncode == 0, "sequential search on bert_small ran (%s)" % p.stderr.strip().splitlines()[-1:]):
            m = check_search("bert sequential", bert, out, held["bert"], 8, 0.99)
            check(m["search"]["spaces"][0]["points"] == 8, "space of 8 points")
            check("trial 8/8" in p.stderr, "progress and log lines per trial ('trial 8/8')")
            # output_model_num 3: the first 3 pareto models (best-ranked first) as pareto_<n>.onnx
            s = m["search"]
            pm = s.get("pareto_models", [])
            want = min(3, len(s.get("pareto", [])))
            check(len(pm) == want and all(x["trial"] in s["pareto"] for x in pm) and
                  (not pm or s["best"]["trial"] not in s["pareto"] or pm[0]["trial"] == s["best"]["trial"]),
                  "output_model_num 3: %d pareto models listed, best first (%s; pareto %s)" % (want, pm, s.get("pareto")))
            for x in pm:
                f = os.path.join(out, x["artifact"])
                same = os.path.exists(f) and sha(f) == sha(os.path.join(out, "trials", str(x["trial"]), "model.onnx"))
                check(same and x["artifact"] == "pareto_%d.onnx" % x["trial"],
                      "%s is trial %d's model byte for byte" % (x["artifact"], x["trial"]))
                rc, last = ort(bert, f, held["bert"], ["--min-cos", "0.99"])
                check(rc == 0, "%s runs in ONNX Runtime, cosine vs float >= 0.99 (%s)" % (x["artifact"], last))
            check(not any("output_model_num" in json.dumps(i) for i in m.get("ignored", [])),
                  "output_model_num is not reported ignored")

        # 2. static search on the MLP: OnnxQuantization with SEARCHABLE_VALUES (Olive's search
        #    mode: every unset parameter is searched), tpe, max_iter 10, seeded
        wf = {"data_configs": {"calib": {"dataset": calib["mlp"]}, "held": {"dataset": held["mlp"]}},
              "passes": {"q": {"type": "OnnxQuantization", "data_config": "calib", "quant_preprocess": True,
                               "calibrate_method": "SEARCHABLE_VALUES"}},
              "search_strategy": {"execution_order": "joint", "sampler": "tpe", "max_iter": 10, "seed": 5,
                                  "output_model_num": 2}}
        outs = []
        for i in range(2):
            out = os.path.join(T, "tpe%d" % i)
            p = run(mlp, wf, out)
            if not check(p.returncode == 0, "tpe search on mlp run %d (%s)" % (i + 1, p.stderr.strip().splitlines()[-1:])):
                break
            outs.append(out)
        if len(outs) == 2:
            m0 = check_search("mlp tpe", mlp, outs[0], held["mlp"], 10, 0.9)
            check(m0["search"]["spaces"][0]["indexed_points"] == 192 and m0["search"]["spaces"][0]["points"] == 64
                  and m0["search"]["spaces"][0]["invalid"] == 48,
                  "OnnxQuantization search space: 192 indexed points, 48 invalid (activation_type follows format and "
                  "precision), 64 distinct (dynamic ignores calibrate_method and activation_type): %s"
                  % {k: m0["search"]["spaces"][0][k] for k in ("indexed_points", "points", "duplicates", "invalid")})
            pm = m0["search"].get("pareto_models", [])
            check(len(m0["search"]["pareto"]) > 2 and [x["trial"] for x in pm] ==
                  [x["trial"] for x in pm if x["trial"] in m0["search"]["pareto"]] and len(pm) == 2 and
                  all(os.path.exists(os.path.join(outs[0], x["artifact"])) for x in pm),
                  "output_model_num 2 of a pareto frontier of %d: 2 models kept (%s)" % (len(m0["search"]["pareto"]), pm))
            m1 = json.load(open(os.path.join(outs[1], "metrics.json")))
            p0 = [t["params"] for t in m0["search"]["trials"]]
            p1 = [t["params"] for t in m1["search"]["trials"]]
            check(p0 == p1, "same seed: same trials")
            check(m0["search"]["best"] == m1["search"]["best"], "same seed: same best (trial %s)" % m0["search"]["best"]["trial"])
            check(sha(os.path.join(outs[0], "model.onnx")) == sha(os.path.join(outs[1], "model.onnx")),
                  "same seed: the same best model, byte for byte")
            modes = set(t["params"].get("q.quant_mode") for t in m0["search"]["trials"])
            check(modes == {"static", "dynamic"}, "tpe tried both quant modes: %s" % sorted(modes))
            wf2 = json.loads(json.dumps(wf))
            wf2["search_strategy"]["seed"] = 6
            out = os.path.join(T, "tpe_seed6")
            p = run(mlp, wf2, out)
            if check(p.returncode == 0, "tpe with another seed ran"):
                m2 = json.load(open(os.path.join(out, "metrics.json")))
                check([t["params"] for t in m2["search"]["trials"]] != p0, "another seed: other trials")

        # 3. random with max_iter, stop_when_goals_met (no goals: the first trial meets them)
        wf = {"data_configs": {"calib": {"dataset": calib["mlp"]}, "held": {"dataset": held["mlp"]}},
              "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib",
                               "calibrate_method": ["MinMax", "Entropy", "Percentile"], "per_channel": [False, True]}},
              "engine": {"search_strategy": {"execution_order": "pass-by-pass", "sampler": "random", "max_iter": 4,
                                             "seed": 3}}}
        out = os.path.join(T, "rnd")
        p = run(mlp, wf, out)
        if check(p.returncode == 0, "random pass-by-pass search with max_iter 4 ran (%s)" % p.stderr.strip().splitlines()[-1:]):
            m = check_search("mlp random", mlp, out, held["mlp"], 4, 0.9)
            check(m["search"]["stopped"] == "max_iter", "stopped by max_iter")
        wf["engine"]["search_strategy"]["stop_when_goals_met"] = True
        out = os.path.join(T, "rnd_stop")
        p = run(mlp, wf, out)
        if check(p.returncode == 0, "stop_when_goals_met search ran"):
            m = json.load(open(os.path.join(out, "metrics.json")))
            check(len(m["search"]["trials"]) == 1 and m["search"]["stopped"] == "goals_met",
                  "stop_when_goals_met without goals stops after the first trial")

        # 4. bad input names the field; nothing runs
        bad = [
            ({"passes": {"q": {"type": "OnnxDynamicQuantization"}}, "search_strategy": {"sampler": "grid"}},
             "search_strategy.sampler"),
            ({"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "c", "quant_format": "QOperator",
                               "activation_type": ["int16", "uint16"]}},
              "data_configs": {"c": {"dataset": calib["mlp"]}}, "search_strategy": True}, "search space is empty"),
        ]
        for i, (wfb, needle) in enumerate(bad):
            out = os.path.join(T, "bad%d" % i)
            p = run(mlp, wfb, out)
            check(p.returncode != 0 and needle in p.stderr and not os.path.exists(os.path.join(out, "model.onnx")),
                  "bad search input refused naming '%s' (exit %d: %s)" % (needle, p.returncode,
                                                                      p.stderr.strip().splitlines()[-1:]))

        # 5. without search_strategy: the defaults run once, no search section, no trials/
        wf = {"passes": {"q": {"type": "OnnxDynamicQuantization", "per_channel": [True, False]}}}
        out = os.path.join(T, "nosearch")
        p = run(mlp, wf, out)
        if check(p.returncode == 0, "no search_strategy: one run"):
            m = json.load(open(os.path.join(out, "metrics.json")))
            check("search" not in m and not os.path.exists(os.path.join(out, "trials")), "no search without search_strategy")
            check(m["passes"][0]["config"]["per_channel"] is True, "the first candidate ran")
    finally:
        if os.environ.get("QD_SEARCH_KEEP"):
            print("kept", T)
        else:
            shutil.rmtree(T, ignore_errors=True)
    print("search: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
