#!/usr/bin/env python3
"""Hyperparameter search end to end with `quantd run` (search_strategy): the trial loop,
the samplers on a real model, determinism, the artifacts in ONNX Runtime.

For each search: every trial's model (trials/<n>/model.onnx) is loaded and run in ONNX
Runtime and compared with the float model there (tests/passes/ort_compare.js); the best
model's metrics.json figures must agree with the same figures measured in ORT on the same
held-out samples; model.onnx must be the best trial's model byte for byte. Prints
"search: N passed, N failed".
"""
import hashlib, json, os, re, shutil, subprocess, sys, tempfile

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

        # 6. accuracy-driven fallback (measured ranking) on bert_small, and `quantd run
        #    --workers 2` against one at a time: the same trials and the same best model
        wf = {"data_configs": {"calib": {"dataset": calib["bert"]}, "held": {"dataset": held["bert"]}},
              "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": True,
                               "per_channel": [False, True]}},
              "evaluator": {"metrics": [{"name": "fid", "type": "fidelity", "sub_types": [
                  {"name": "cosine_similarity", "priority": 1, "goal": {"type": "threshold", "value": 0.9999}}]}]},
              "search_strategy": {"execution_order": "joint", "sampler": "sequential",
                                  "fallback": {"confirm_top_k": 4, "max_trials": 10}}}
        runs = {}
        for nw in (1, 2):
            out = os.path.join(T, "fb_w%d" % nw)
            cfg = out + ".json"
            with open(cfg, "w") as f:
                json.dump(wf, f)
            p = subprocess.run([QUANTD, "run", "--model", bert, "--config", cfg, "--output", out, "--workers", str(nw)],
                               capture_output=True, text=True, timeout=900)
            if check(p.returncode == 0, "fallback search, --workers %d ran (%s)" % (nw, p.stderr.strip().splitlines()[-1:])):
                runs[nw] = (out, p.stderr)
        if len(runs) == 2:
            m1 = json.load(open(os.path.join(runs[1][0], "metrics.json")))
            m2 = check_search("bert_small fallback --workers 2", bert, runs[2][0], held["bert"],
                              len(m1["search"]["trials"]), 0.99)
            strip = lambda m: [(t["n"], t["params"], t["values"], t["goals_met"], t.get("fallback", False))
                               for t in m["search"]["trials"]]
            check(strip(m1) == strip(m2), "--workers 2: the same %d trials (parameters, values) as one at a time"
                  % len(m1["search"]["trials"]))
            check(m1["search"]["best"] == m2["search"]["best"] and
                  sha(os.path.join(runs[1][0], "model.onnx")) == sha(os.path.join(runs[2][0], "model.onnx")),
                  "--workers 2: the same best trial (%d) and best model byte for byte" % m1["search"]["best"]["trial"])
            check(re.search(r"trial \d+: ", runs[2][1]) is not None and not re.search(r"trial \d+: ", runs[1][1]),
                  "--workers 2 ran the trials in processes of their own (their log lines say 'trial N: ')")
            fb = m1["search"].get("fallback", {})
            conf = fb.get("confirm", [])
            gains = [c["measured_gain"] for c in conf if "dropped" not in c]
            order = [o["measured_gain"] for o in fb.get("order", [])]
            check(fb.get("ranking") == "measured" and len(conf) == 4 and
                  [c["snr_rank"] for c in conf] == [1, 2, 3, 4] and
                  all(c["trial"] == conf[0]["trial"] + i for i, c in enumerate(conf)) and
                  order == sorted(gains, reverse=True) and all(g > 0 for g in order) and
                  all(c.get("dropped") or c["measured_gain"] > 0 for c in conf),
                  "fallback: the 4 top SNR candidates confirmed by excluding each alone, ordered by measured gain "
                  "%s" % [(c["node"], c["measured_gain"]) for c in conf])
            steps = fb.get("steps", [])
            first_node = fb["order"][0]["node"] if fb.get("order") else None
            check(steps and steps[0]["node"] == first_node and
                  [st["node"] for st in steps] == [o["node"] for o in fb["order"]][:len(steps)] and
                  [st["node"] for st in steps if st["kept"]] == fb.get("kept_float") and
                  all("before" in st and "after" in st and "bought" in st and "measured_gain" in st for st in steps),
                  "fallback: steps follow the measured order, say what each bought (before / after) and which "
                  "stayed float: %s" % fb.get("kept_float"))
            tv = {t["n"]: t["values"]["fid-cosine_similarity"] for t in m1["search"]["trials"]}
            src = tv[fb["from_trial"]]
            kept = [st for st in steps if st["kept"]]
            check(kept and all(st["after"]["fid-cosine_similarity"] > st["before"]["fid-cosine_similarity"] for st in kept)
                  and tv[m1["search"]["best"]["trial"]] > src,
                  "fallback: every kept exclusion raised the cosine; best %.6f > source trial %.6f" %
                  (tv[m1["search"]["best"]["trial"]], src))
            # ranking "snr": the SNR order alone, no confirm phase
            wfs = json.loads(json.dumps(wf))
            wfs["search_strategy"]["fallback"] = {"ranking": "snr", "max_trials": 4}
            out = os.path.join(T, "fb_snr")
            p = run(bert, wfs, out)
            if check(p.returncode == 0, "fallback ranking snr ran"):
                fs = json.load(open(os.path.join(out, "metrics.json")))["search"]["fallback"]
                check(fs["ranking"] == "snr" and "confirm" not in fs and fs["trials"] == 4 and
                      [st["snr_rank"] for st in fs["steps"]] == [1, 2, 3, 4],
                      "fallback ranking snr: 4 steps in SNR order %s" % [st["node"] for st in fs["steps"]])
            wfo = json.loads(json.dumps(wf))
            wfo["search_strategy"]["fallback"] = False
            out = os.path.join(T, "fb_off")
            p = run(bert, wfo, out)
            if check(p.returncode == 0, "fallback false ran"):
                ms = json.load(open(os.path.join(out, "metrics.json")))["search"]
                check(len(ms["trials"]) == 2 and ms["fallback"]["status"] == "disabled",
                      "fallback false: no fallback trials, reported disabled")
        for extra, needle in ((["--workers", "0"], "--workers"), (["--workers", "x"], "--workers")):
            out = os.path.join(T, "badw")
            cfg = out + ".json"
            with open(cfg, "w") as f:
                json.dump(wf, f)
            p = subprocess.run([QUANTD, "run", "--model", bert, "--config", cfg, "--output", out] + extra,
                               capture_output=True, text=True, timeout=60)
            check(p.returncode == 2 and needle in p.stderr, "%s refused (exit %d)" % (" ".join(extra), p.returncode))
        for fbv, needle in (({"ranking": "best"}, "search_strategy.fallback.ranking"),
                            ({"top_k": 3}, "search_strategy.fallback.top_k"),
                            ({"confirm_top_k": -1}, "search_strategy.fallback.confirm_top_k"),
                            ("yes", "search_strategy.fallback")):
            wfb = json.loads(json.dumps(wf))
            wfb["search_strategy"]["fallback"] = fbv
            out = os.path.join(T, "badfb")
            p = run(bert, wfb, out)
            check(p.returncode != 0 and needle in p.stderr and not os.path.exists(os.path.join(out, "model.onnx")),
                  "fallback %s refused naming '%s' (%s)" % (json.dumps(fbv), needle, p.stderr.strip().splitlines()[-1:]))

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
