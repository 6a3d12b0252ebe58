#!/usr/bin/python3
"""Crash points: the daemon killed (SIGKILL from inside, tests/fault/crash_at.c preloaded)
at the exact moments a random kill -9 rarely hits, then restarted without the shim:
  - an upload, right after its blob is renamed into blobs/ and before its row exists;
  - a job's artifact import, right after the model's blob is renamed into blobs/;
  - DELETE /v1/models/{id}, right after the blob is unlinked;
  - DELETE /v1/jobs/{id}, right after an artifact blob is unlinked.
After each restart: the start-up sweep removed what the crash left, no row lacks its
blob, integrity_check ok, and the data is either as before the request or as after it
(a deleted model is gone or present and intact; an interrupted job is requeued, succeeds
and its artifact computes in ONNX Runtime what `quantd run` of the same workflow does).
Prints "crashpoints: N passed, N failed"."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (ROOT, HERE, HELLO, REC, QUANTD, Daemon, check, summary, sha256, variant,  # noqa: E402
                      integrity, blob_problems)

WF = {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}
B = os.environ.get("B", "build")


def build_shim(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    p = subprocess.run(["cc", "-O2", "-Wall", "-shared", "-fPIC", "-o", out, os.path.join(HERE, "crash_at.c"), "-ldl"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors="replace")


def crashing(data_dir, shim, at, name):
    env = dict(os.environ, LD_PRELOAD=shim, QD_CRASH_AT=at)
    return Daemon(data_dir, ["--workers", "1"], name=name, env=env).start()


def died(d, what):
    try:
        rc = d.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
        rc = "alive"
    d.log.close()
    check(rc == -9, "%s: the daemon was killed at the crash point" % what, rc)


def sweep_line(d, offset):
    with open(d.log_path, "rb") as f:
        f.seek(offset)
        log = f.read().decode(errors="replace")
    m = re.search(r"store: removed (\d+) stale temp file\(s\) and (\d+) unreferenced blob\(s\)", log)
    r = re.search(r"recovered interrupted jobs: (\d+) requeued", log)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0), int(r.group(1)) if r else 0


def restart(data_dir, name):
    log = os.path.join(os.path.dirname(data_dir), "%s.stderr" % name)
    off = os.path.getsize(log) if os.path.exists(log) else 0
    d = Daemon(data_dir, ["--workers", "1"], name=name).start()
    return d, sweep_line(d, off)


def clean(data_dir, what):
    probs = blob_problems(data_dir)
    check(not probs, "%s: no orphan, partial or missing blob, tmp/ empty" % what, probs[:5])
    check(integrity(data_dir) == "ok", "%s: integrity_check ok" % what)


def main():
    shim = os.path.join(ROOT, B, "tests", "crash_at.so")
    ok, out = build_shim(shim)
    if not check(ok, "tests/fault/crash_at.c builds", out):
        return summary("crashpoints")
    tmp = tempfile.mkdtemp(prefix="qd_crashpt_")
    with open(HELLO, "rb") as f:
        hello = f.read()
    with open(REC, "rb") as f:
        rec = f.read()
    wf_path = os.path.join(tmp, "wf.json")
    with open(wf_path, "w") as f:
        json.dump({"passes": WF}, f)
    ref = os.path.join(tmp, "ref")
    p = subprocess.run([QUANTD, "run", "--model", REC, "--config", wf_path, "--output", ref],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(p.returncode == 0, "reference: quantd run of the workflow", p.stdout[-300:])

    # 1. upload: blob renamed into place, row not yet written
    data = os.path.join(tmp, "up", "data")
    d = crashing(data, shim, "rename:/blobs/", "up")
    body = variant(hello, "crash point upload")
    try:
        r = d.upload(body, name="x.onnx")
        check(False, "upload: no answer expected from a daemon killed mid-request", r.status)
    except OSError:
        pass
    died(d, "upload")
    d, (swept, requeued) = restart(data, "up")
    check(swept == (0, 1), "upload: the restart swept the blob whose row was never written (0 temp, 1 blob)", swept)
    check(sha256(body) not in [m["sha256"] for m in d.get_json("/v1/models?limit=100")["items"]],
          "upload: the unanswered upload is no model")
    clean(data, "upload")
    r = d.upload(body, name="x.onnx")
    c = d.request("GET", "/v1/models/%s/content" % (r.json() or {}).get("id"))
    check(r.status == 201 and sha256(c.body) == sha256(body), "upload: the same upload after the restart -> 201, intact")
    d.stop()

    # 2. artifact import: the model's blob renamed into place, its artifact row not written
    data = os.path.join(tmp, "art", "data")
    d = Daemon(data, ["--workers", "1"], name="art").start()
    mid = d.upload(rec, name="rec.onnx").json()["id"]
    d.stop()
    d = crashing(data, shim, "rename:/blobs/", "art")
    r = d.submit(mid, WF)
    jid = (r.json() or {}).get("id")
    check(r.status == 202, "artifact: job accepted")
    died(d, "artifact")
    d, (swept, requeued) = restart(data, "art")
    check(swept == (0, 1) and requeued == 1, "artifact: the restart swept the artifact's orphan blob and requeued the job",
          (swept, requeued))
    j = d.wait_job(jid)
    names = [a["name"] for a in (j or {}).get("artifacts", [])]
    check(j and j["state"] == "succeeded" and j["attempts"] == 2, "artifact: the requeued job succeeds on attempt 2",
          j and (j["state"], j["attempts"], j.get("error")))
    check(sorted(names) == sorted(set(names)) and "model.onnx" in names, "artifact: each artifact listed once", names)
    if j and j["state"] == "succeeded":
        art = [a for a in j["artifacts"] if a["kind"] == "model"][0]
        a = d.request("GET", art["url"])
        path = os.path.join(tmp, "art.onnx")
        with open(path, "wb") as f:
            f.write(a.body)
        p = subprocess.run(["node", os.path.join(HERE, "ort_same.js"), os.path.join(ref, "model.onnx"), path,
                            "--shape", "x=1,3,48,160"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(sha256(a.body) == art["sha256"] and p.returncode == 0,
              "artifact: the recovered artifact is intact and computes in ORT exactly what quantd run's does",
              p.stdout.decode(errors="replace")[-400:])
    d.stop()
    clean(data, "artifact")

    # 3. DELETE /v1/models/{id}: blob unlinked
    data = os.path.join(tmp, "delm", "data")
    d = Daemon(data, ["--workers", "1"], name="delm").start()
    body = variant(hello, "crash point delete")
    mid = d.upload(body, name="del.onnx").json()["id"]
    keep = d.upload(hello, name="keep.onnx").json()["id"]
    d.stop()
    d = crashing(data, shim, "unlink:/blobs/", "delm")
    try:
        d.request("DELETE", "/v1/models/" + mid)
    except OSError:
        pass
    died(d, "model delete")
    d, (swept, requeued) = restart(data, "delm")
    r = d.request("GET", "/v1/models/%s/content" % mid)
    check(r.status == 404 or (r.status == 200 and sha256(r.body) == sha256(body)),
          "model delete: the model is gone, or present with its content (got %d)" % r.status)
    check(r.status == 404, "model delete: the delete was committed before the blob went (404)", r.status)
    r = d.request("GET", "/v1/models/%s/content" % keep)
    check(r.status == 200 and sha256(r.body) == sha256(hello), "model delete: the other model is intact")
    d.stop()
    clean(data, "model delete")

    # 4. DELETE /v1/jobs/{id}: an artifact blob unlinked
    data = os.path.join(tmp, "delj", "data")
    d = Daemon(data, ["--workers", "1"], name="delj").start()
    mid = d.upload(hello, name="h.onnx").json()["id"]
    jid = d.submit(mid, {"q": {"type": "OnnxDynamicQuantization"}}).json()["id"]
    j = d.wait_job(jid)
    check(j and j["state"] == "succeeded", "job delete: a finished job to delete")
    d.stop()
    d = crashing(data, shim, "unlink:/blobs/", "delj")
    try:
        d.request("DELETE", "/v1/jobs/" + jid)
    except OSError:
        pass
    died(d, "job delete")
    d, _ = restart(data, "delj")
    j = d.get_json("/v1/jobs/" + jid)
    broken = []
    for a in (j or {}).get("artifacts", []):
        r = d.request("GET", a["url"])
        if r.status != 200 or sha256(r.body) != a["sha256"]:
            broken.append((a["name"], r.status))
    d.stop()
    probs = blob_problems(data)
    # qd_job_delete commits the rows' delete before it unlinks the blobs (a crash in between
    # leaves orphans for the sweep), as the model and dataset deletes do
    check(not broken and not probs, "job delete: the job is gone or its artifacts are intact", (broken, probs))
    check(integrity(data) == "ok", "job delete: integrity_check ok")
    return summary("crashpoints")


if __name__ == "__main__":
    sys.exit(main())
