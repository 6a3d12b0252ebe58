#!/usr/bin/env python3
"""Search trials in the daemon (tests/search/run_trials.sh): trials committed to SQLite as
they finish, GET /v1/jobs/{id}/trials (paged) and the job's search progress, checked
against metrics.json and openapi.yaml; `quantd trials`; resume after kill -9 of the daemon
mid-search (finished trials are not run again, a trial whose saved model was damaged is,
and the result is the uninterrupted run's); parallel trials on several workers (the same
trials and best model as on one worker). The best models are run in ONNX Runtime and
compared with the float model there. Prints "trials: N passed, N failed".
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fault"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import faultlib  # noqa: E402
from faultlib import Daemon, check  # noqa: E402
import openapi_check  # noqa: E402

SPEC = openapi_check.Spec()
CMP = os.path.join(ROOT, "tests", "passes", "ort_compare.js")
TIMING = ("seconds", "duration_seconds")


def api(d, method, path, body=None):
    """JSON answer of one request, checked against openapi.yaml."""
    data = json.dumps(body).encode() if body is not None else None
    hdr = {"Content-Type": "application/json"} if data is not None else {}
    r = d.request(method, path, body=data, headers=hdr)
    probs = SPEC.check_response(method, path, r.status, r.header("Content-Type"), r.body)
    check(not probs, "%s %s -> %d conforms to openapi.yaml" % (method, re.sub(r"(job|mdl|dst)_\w+", "{id}", path), r.status),
          probs)
    return r.status, r.json()


def upload(d, path, kind):
    with open(path, "rb") as f:
        r = d.upload(f.read(), name=os.path.basename(path), kind=kind)
    assert r.status in (200, 201), (r.status, r.body[:300])
    return r.json()["id"]


def wait_trials(d, job, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        page = d.get_json("/v1/jobs/%s/trials" % job)
        if page and len(page.get("items", [])) >= n:
            return page
        time.sleep(0.05)
    return None


def all_trials(d, job, limit):
    """Every trial, following next_cursor pages of `limit`."""
    items, path, pages = [], "/v1/jobs/%s/trials?limit=%d" % (job, limit), 0
    while path and pages < 100:
        st, page = api(d, "GET", path)
        if st != 200:
            return None, pages
        items += page["items"]
        pages += 1
        path = page.get("next")
    return items, pages


def log_lines(d, job):
    page = d.get_json("/v1/jobs/%s/log?limit=10000" % job) or {}
    return [l["line"] for l in page.get("lines", [])]


def artifact(d, job_json, name):
    for a in job_json.get("artifacts", []):
        if a["name"] == name:
            r = d.request("GET", a["url"])
            return r.body if r.status == 200 else None
    return None


def strip_timing(x):
    if isinstance(x, dict):
        return {k: strip_timing(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [strip_timing(v) for v in x]
    return x


def trial_runs(lines):
    """{trial n: number of times it ran to the end} and the set of resumed trials."""
    ran, resumed = {}, set()
    for l in lines:
        m = re.match(r"trial (\d+)/\d+ .*goals (met|missed)", l)
        if not m:
            continue
        n = int(m.group(1))
        if "(resumed" in l:
            resumed.add(n)
        else:
            ran[n] = ran.get(n, 0) + 1
    return ran, resumed


def ort_check(T, float_model, model_bytes, held, label, min_cos):
    p = os.path.join(T, label.replace(" ", "_") + ".onnx")
    with open(p, "wb") as f:
        f.write(model_bytes)
    r = subprocess.run(["node", CMP, float_model, p, "--inputs", held, "--samples", "16", "--min-cos", str(min_cos)],
                       capture_output=True, text=True, timeout=300)
    last = (r.stdout.strip().splitlines() or [r.stderr.strip()])[-1:]
    check(r.returncode == 0, "%s: the best model runs in ONNX Runtime, cosine vs float >= %g" % (label, min_cos), last)


def expected_best(metrics, upto):
    """The best trial among trials 1..upto by the search's ranking (goal-meeting first,
    then the objectives by priority), from the finished search's values."""
    s = metrics["search"]
    objs = sorted([o for o in s["objectives"] if o["priority"] > 0], key=lambda o: (o["priority"], o["key"]))
    ok = [t for t in s["trials"] if t["n"] <= upto and t["status"] == "ok" and "cached_from" not in t]

    def key(t):
        return (0 if t["goals_met"] else 1,) + tuple(-t["values"][o["key"]] if o["higher_is_better"]
                                                     else t["values"][o["key"]] for o in objs) + (t["n"],)
    return min(ok, key=key)["n"] if ok else None


def main():
    T = tempfile.mkdtemp(prefix="qd-trials-")
    try:
        models = os.path.join(T, "models")
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests", "models", "make_transformer.py"), models],
                       check=True, capture_output=True)
        bert = os.path.join(models, "bert_small.onnx")
        mlp = os.path.join(models, "mlp.onnx")
        held, calib = os.path.join(T, "held.npz"), os.path.join(T, "mlp_calib.npz")
        mheld = os.path.join(T, "mlp_held.npz")
        for mp, out, seed in ((bert, held, 7), (mlp, mheld, 7), (mlp, calib, 99)):
            subprocess.run(["node", CMP, mp, "--write-inputs", out, "--samples", "16", "--seed", str(seed)], check=True,
                           capture_output=True)

        d = Daemon(os.path.join(T, "data"), ["--workers", "1"], name="d1").start()
        mid = upload(d, bert, "models")
        hid = upload(d, held, "datasets")
        search = {"model": mid, "data_configs": {"held": {"dataset": hid}},
                  "passes": {"q": {"type": "OnnxDynamicQuantization", "disable_search": True,
                                   "per_channel": "SEARCHABLE_VALUES", "quant_format": "SEARCHABLE_VALUES",
                                   "reduce_range": [False, True]}},
                  "search_strategy": {"execution_order": "joint", "sampler": "sequential"}}

        # ---- 1. trials in SQLite, the trials list, the job's progress ----
        st, job = api(d, "POST", "/v1/jobs", search)
        check(st == 202, "search job submitted", job)
        base_id = job["id"]
        fin = d.wait_job(base_id)
        check(fin and fin["state"] == "succeeded", "uninterrupted search job succeeded", fin and fin.get("error"))
        st, fin = api(d, "GET", "/v1/jobs/" + base_id)
        base_metrics = json.loads(artifact(d, fin, "metrics.json") or b"{}")
        base_model = artifact(d, fin, "model.onnx") or b""
        ms = base_metrics.get("search", {})
        check(len(ms.get("trials", [])) == 8, "metrics.json lists 8 trials")
        items, pages = all_trials(d, base_id, 3)
        check(items is not None and len(items) == 8 and pages == 3,
              "GET /v1/jobs/{id}/trials?limit=3: 8 trials on 3 pages (%s, %d pages)" % (items and len(items), pages))
        items = items or []
        check([t["trial"] for t in items] == list(range(1, 9)), "trials in trial order 1..8: %s" % [t["trial"] for t in items])
        by_n = {t["n"]: t for t in ms.get("trials", [])}
        same = all(t["params"] == by_n[t["trial"]]["params"] and t["values"] == by_n[t["trial"]]["values"]
                   and t["goals_met"] == by_n[t["trial"]]["goals_met"] and t["status"] == by_n[t["trial"]]["status"]
                   and t["model"] == by_n[t["trial"]].get("model")
                   and abs(t["seconds"] - by_n[t["trial"]]["seconds"]) < 1e-9 for t in items if t["trial"] in by_n)
        check(same and len(items) == 8, "each trial row has metrics.json's parameters, values, goal status, status, model "
              "and duration")
        check(all(t["model_size"] and t["model_size"] > 1000 and re.match("^[0-9a-f]{64}$", t["model_sha256"] or "")
                  for t in items), "each trial row names its model's size and sha256")
        check(sorted(t["trial"] for t in items if t["pareto"]) == sorted(ms.get("pareto", [])) and ms.get("pareto"),
              "pareto flags of the rows are metrics.json's frontier %s" % ms.get("pareto"))
        prog = fin.get("search") or {}
        check(prog.get("finished") is True and prog.get("trials_done") == 8 and prog.get("trials_planned") == 8,
              "GET /v1/jobs/{id}: search finished, 8 of 8 trials (%s)" % {k: prog.get(k) for k in
                                                                         ("trials_done", "trials_planned", "finished")})
        check((prog.get("best") or {}).get("trial") == ms.get("best", {}).get("trial") and
              prog.get("best", {}).get("values") == ms.get("best", {}).get("values"),
              "the job's best is metrics.json's best (trial %s)" % ms.get("best", {}).get("trial"))
        check(prog.get("stopped") == ms.get("stopped") == "exhausted", "the job says why the search stopped")
        ort_check(T, bert, base_model, held, "uninterrupted search", 0.99)
        # 'quantd trials' lists them
        p = subprocess.run([faultlib.QUANTD, "trials", base_id, "--server", "127.0.0.1:%d" % d.port],
                           capture_output=True, text=True, timeout=60)
        rows = [l for l in p.stdout.splitlines() if re.match(r"\s*\d+ ok ", l)]
        check(p.returncode == 0 and len(rows) == 8 and "8 of 8 trials" in p.stderr and
              "best so far: trial %s" % ms.get("best", {}).get("trial") in p.stderr,
              "'quantd trials JOB' prints 8 trial rows and the progress", p.stdout[-400:] + p.stderr[-300:])
        # bad input: unknown job 404; a job without search: empty list saying so; bad paging 400
        st, body = api(d, "GET", "/v1/jobs/job_0123456789abcdef/trials")
        check(st == 404, "trials of an unknown job: 404 (%s)" % st)
        plain = {"model": mid, "passes": {"q": {"type": "OnnxDynamicQuantization"}}}
        st, pj = api(d, "POST", "/v1/jobs", plain)
        pf = d.wait_job(pj["id"])
        st, body = api(d, "GET", "/v1/jobs/%s/trials" % pj["id"])
        check(st == 200 and body["items"] == [] and body["search"] is False and "search_strategy" in body.get("reason", ""),
              "trials of a job without search: empty list, search false, the reason (%s)" % body.get("reason"))
        check(pf and pf["state"] == "succeeded" and pf.get("search") is None, "a job without search has search null")
        st, body = api(d, "GET", "/v1/jobs/%s/trials?limit=0" % base_id)
        check(st == 400 and body["error"]["details"].get("field") == "limit", "limit=0 is a 400 naming 'limit'")
        st, body = api(d, "GET", "/v1/jobs/%s/trials?cursor=zz" % base_id)
        check(st == 400 and body["error"]["details"].get("field") == "cursor", "a bad cursor is a 400 naming 'cursor'")
        d.stop()

        # ---- 2. resume: kill -9 of the daemon while trial 4 runs ----
        data2 = os.path.join(T, "data2")
        env = dict(os.environ, QUANTD_FAULT_INJECT="hang@trial 4/8")
        d = Daemon(data2, ["--workers", "1"], name="d2", env=env).start()
        mid = upload(d, bert, "models")
        hid = upload(d, held, "datasets")
        search["model"] = mid
        search["data_configs"]["held"]["dataset"] = hid
        st, job = api(d, "POST", "/v1/jobs", search)
        rid = job["id"]
        page = wait_trials(d, rid, 3)
        time.sleep(0.5)
        st, mid_job = api(d, "GET", "/v1/jobs/" + rid)
        prog = mid_job.get("search") or {}
        check(page is not None and mid_job["state"] == "running" and prog.get("trials_done") == 3 and
              prog.get("trials_planned") == 8 and prog.get("finished") is False,
              "mid-search: the job shows 3 of 8 trials done (%s)" % prog)
        check((prog.get("best") or {}).get("trial") == expected_best(base_metrics, 3),
              "mid-search: the best so far is the best of trials 1..3 (trial %s, expected %s)"
              % ((prog.get("best") or {}).get("trial"), expected_best(base_metrics, 3)))
        st, page = api(d, "GET", "/v1/jobs/%s/trials" % rid)
        check(page["progress"] == prog and len(page["items"]) == 3 and not any(t["pareto"] for t in page["items"]),
              "mid-search: the trials list has the 3 committed trials, no pareto flag yet")
        d.kill9()
        # damage trial 2's saved model: that trial must run again, the others not
        t2 = os.path.join(data2, "work", rid, "out", "trials", "2", "model.onnx")
        check(os.path.exists(t2) and os.path.exists(os.path.join(data2, "work", rid, "out", "trials", "1", "model.onnx")),
              "the killed attempt left trials/<n>/model.onnx in the job's work directory")
        if os.path.exists(t2):
            with open(t2, "r+b") as f:
                f.seek(100)
                f.write(b"\0" * 16)
        d = Daemon(data2, ["--workers", "1"], name="d2b").start()
        fin = d.wait_job(rid)
        check(fin and fin["state"] == "succeeded" and fin["attempts"] == 2,
              "resumed job succeeded on attempt 2 (%s, attempts %s)" % (fin and fin["state"], fin and fin["attempts"]))
        lines = log_lines(d, rid)
        ran, resumed = trial_runs(lines)
        check(resumed == {1, 3}, "trials 1 and 3 were taken from the store, not run again: resumed %s" % sorted(resumed))
        check(ran == {1: 1, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1},
              "each trial ran to the end once, trial 2 (damaged model) twice: %s" % ran)
        check(any("resuming the search: 3 trial(s)" in l for l in lines) and
              any("trial 2: the model the earlier attempt saved" in l for l in lines),
              "the log says the search resumed and why trial 2 ran again")
        st, fin = api(d, "GET", "/v1/jobs/" + rid)
        metrics = json.loads(artifact(d, fin, "metrics.json") or b"{}")
        model = artifact(d, fin, "model.onnx") or b""
        check(strip_timing(metrics.get("search")) == strip_timing(base_metrics.get("search")) and
              metrics.get("values") == base_metrics.get("values"),
              "resumed metrics.json equals the uninterrupted run's (timings aside)")
        check(model and model == base_model, "resumed: the same best model, byte for byte")
        items, _ = all_trials(d, rid, 50)
        check(items and [t["trial"] for t in items] == list(range(1, 9)) and
              sorted(t["trial"] for t in items if t["pareto"]) == sorted(ms.get("pareto", [])),
              "resumed: one row per trial, the same pareto flags")
        check(fin.get("search", {}).get("finished") is True and fin["search"]["trials_done"] == 8,
              "resumed: the job's search progress is final")
        ort_check(T, bert, model, held, "resumed search", 0.99)

        # ---- 3. parallel trials: 2 workers give the same trials and best model as 1 ----
        rec_id = upload(d, faultlib.REC, "models")
        rcal, rheld = os.path.join(T, "rec_calib.npz"), os.path.join(T, "rec_held.npz")
        for out, seed in ((rcal, 9), (rheld, 7)):
            subprocess.run(["node", CMP, faultlib.REC, "--write-inputs", out, "--samples", "4", "--seed", str(seed)],
                           check=True, capture_output=True)

        def rec_search(dd):
            return {"model": upload(dd, faultlib.REC, "models"),
                    "data_configs": {"calib": {"dataset": upload(dd, rcal, "datasets")},
                                     "held": {"dataset": upload(dd, rheld, "datasets")}},
                    "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "disable_search": True,
                                     "per_channel": [False, True], "calibrate_method": ["MinMax", "Percentile"],
                                     "activation_type": "uint8"}},
                    "search_strategy": {"execution_order": "joint", "sampler": "sequential"}}

        def tpe_search(dd):
            wf = json.loads(json.dumps(search))
            wf["model"] = upload(dd, bert, "models")
            wf["data_configs"]["held"]["dataset"] = upload(dd, held, "datasets")
            wf["search_strategy"] = {"execution_order": "joint", "sampler": "tpe", "max_iter": 7, "seed": 5,
                                     "output_model_num": 2}
            return wf

        def run_job(dd, wf, watch=False):
            st, j = api(dd, "POST", "/v1/jobs", wf)
            most = 0
            while watch:
                # trial processes: `quantd job-exec --request .../trials/<n>/request.json`
                n = 0
                for pid in os.listdir("/proc"):
                    try:
                        with open("/proc/%s/cmdline" % pid, "rb") as f:
                            cmd = f.read()
                    except OSError:
                        continue
                    if b"job-exec" in cmd and b"/trials/" in cmd and j["id"].encode() in cmd:
                        n += 1
                most = max(most, n)
                jj = dd.get_json("/v1/jobs/" + j["id"])
                if jj and jj["state"] in ("succeeded", "failed", "canceled"):
                    break
                time.sleep(0.02)
            fin = dd.wait_job(j["id"])
            st, fin = api(dd, "GET", "/v1/jobs/" + j["id"])
            return fin, json.loads(artifact(dd, fin, "metrics.json") or b"{}"), artifact(dd, fin, "model.onnx") or b"", most

        one = {"rec": run_job(d, rec_search(d)), "tpe": run_job(d, tpe_search(d))}
        d.stop()
        d = Daemon(os.path.join(T, "data3"), ["--workers", "2", "--max-workers-per-job", "2"], name="d3").start()
        two = {"bert": run_job(d, dict(search, model=upload(d, bert, "models"),
                                       data_configs={"held": {"dataset": upload(d, held, "datasets")}})),
               "rec": run_job(d, rec_search(d), watch=True), "tpe": run_job(d, tpe_search(d))}
        one["bert"] = (None, base_metrics, base_model, 0)
        for k, label in (("bert", "bert sequential"), ("rec", "rec static sequential"), ("tpe", "bert tpe max_iter 7")):
            f2, m2, b2, most = two[k]
            f1, m1, b1, _ = one[k]
            lines = log_lines(d, f2["id"])
            ntr = len(m2.get("search", {}).get("trials", []))
            check(f2["state"] == "succeeded" and ntr > 0, "%s on 2 workers succeeded (%d trials)" % (label, ntr))
            check(any("search on 2 workers" in l for l in lines) and
                  all(any(l.startswith("trial %d: " % n) for l in lines) for n in range(1, ntr + 1)),
                  "%s: the job borrowed a worker and each trial ran in a process of its own (its log lines)" % label)
            check(strip_timing(m2.get("search")) == strip_timing(m1.get("search")) and m2.get("values") == m1.get("values"),
                  "%s: 2 workers give metrics.json of 1 worker (the same trials, values, best, pareto; timings aside)" % label)
            check(b2 and b2 == b1, "%s: the same best model byte for byte on 1 and 2 workers" % label)
        # output_model_num 2 (tpe): the pareto models are artifacts of kind pareto_model, each its trial's model
        f2, m2 = two["tpe"][0], two["tpe"][1]
        pm = m2.get("search", {}).get("pareto_models", [])
        arts = [a for a in f2.get("artifacts", []) if a.get("kind") == "pareto_model"]
        tshas = {t["trial"]: t["model_sha256"] for t in all_trials(d, f2["id"], 50)[0] or []}
        got = {a["name"]: hashlib.sha256(artifact(d, f2, a["name"]) or b"").hexdigest() for a in arts}
        check(pm and sorted(got) == sorted(x["artifact"] for x in pm) and
              all(got[x["artifact"]] == tshas.get(x["trial"]) for x in pm),
              "output_model_num 2 over REST: %d pareto_model artifacts, each its trial's model by sha256 (%s)"
              % (len(arts), pm))
        check(two["rec"][3] == 2, "rec search: 2 trial processes ran at once (at most %d seen)" % two["rec"][3])
        ort_check(T, faultlib.REC, two["rec"][2], rheld, "parallel rec search", 0.95)
        # cancel while 2 trials run: the finished trials stay, no trial process is left
        st, j = api(d, "POST", "/v1/jobs", rec_search(d))
        page = wait_trials(d, j["id"], 1)
        st, cj = api(d, "POST", "/v1/jobs/%s/cancel" % j["id"])
        fin = d.wait_job(j["id"])
        left = []
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if j["id"].encode() in f.read():
                        left.append(pid)
            except OSError:
                pass
        items, _ = all_trials(d, j["id"], 50)
        check(page is not None and fin["state"] == "canceled" and items and 1 <= len(items) < 4 and not left,
              "cancel of a parallel search: canceled, %s finished trial(s) kept, no process of the job left (%s)"
              % (len(items or []), left))
        # ... and the best model so far and metrics.json are the canceled job's artifacts
        fj = d.get_json("/v1/jobs/%s" % j["id"]) or {}
        cm = artifact(d, fj, "metrics.json")
        cm = json.loads(cm) if cm else {}
        cb = artifact(d, fj, "model.onnx")
        cs = cm.get("search", {})
        best = cs.get("best")
        best_n = best.get("n", best.get("trial")) if isinstance(best, dict) else best
        shas = {t["trial"]: t["model_sha256"] for t in (items or [])}
        check(cs.get("stopped") == "canceled" and cb is not None and best_n in shas and
              hashlib.sha256(cb).hexdigest() == shas[best_n] and
              any("search canceled: the best model so far" in l for l in log_lines(d, j["id"])),
              "canceled search: model.onnx (the best finished trial, %s, by sha256) and metrics.json "
              "(search.stopped canceled) are artifacts" % best_n, json.dumps(cs.get("best"))[:200])
        if cb:
            ort_check(T, faultlib.REC, cb, rheld, "canceled rec search", 0.9)
        d.stop()

        # ---- 4. the default (max_workers_per_job 0 = all but one) keeps a worker for other jobs ----
        d = Daemon(os.path.join(T, "data4"), ["--workers", "2"], name="d4").start()
        st, sj = api(d, "POST", "/v1/jobs", rec_search(d))
        wait_trials(d, sj["id"], 1)
        st, pj = api(d, "POST", "/v1/jobs", dict(plain, model=upload(d, bert, "models")))
        pf, sf = d.wait_job(pj["id"]), d.wait_job(sj["id"])
        check(sf["state"] == "succeeded" and not any("search on" in l for l in log_lines(d, sj["id"])),
              "default on 2 workers: the search job borrows no worker")
        check(pf["state"] == "succeeded" and pf["finished_at"] < sf["finished_at"],
              "default on 2 workers: a job submitted during the search runs beside it (finished %s, search %s)"
              % (pf["finished_at"], sf["finished_at"]))
        d.stop()
    finally:
        for p in faultlib.STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("QD_SEARCH_KEEP"):
            print("kept", T)
        else:
            shutil.rmtree(T, ignore_errors=True)
    return faultlib.summary("trials")


if __name__ == "__main__":
    sys.exit(main())
