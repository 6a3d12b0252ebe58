#!/usr/bin/python3
"""Disk-full suite: the daemon's data directory on a small private tmpfs (run_disk.sh runs
this in its own mount namespace: `unshare -m` as root, `unshare -rm` otherwise), filled
with a filler file so that the disk runs out
  - during an upload (507 NO_SPACE naming the problem, nothing kept),
  - while a job writes its quantized model into its work dir (job failed, reason says
    the disk is full),
  - while the worker copies that model into the blob store (job failed likewise),
  - with not even room for the job row (the submission fails with an error, no hang);
after each: the daemon serves on, nothing half-written is referenced (every row's blob
complete, no artifact row for the failed job, tmp/ and the job's work dir empty), and
once the filler is removed uploads and the same job work again, the artifact computing
in ONNX Runtime exactly what `quantd run` of the same workflow produces.
Prints "disk: N passed, N failed"."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (HERE, HELLO, REC, QUANTD, Daemon, check, summary, sha256, variant, integrity,  # noqa: E402
                      blob_problems)

WF = {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}
SIZE_MB = 48


def free_bytes(path):
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize


class Filler:
    def __init__(self, mnt):
        self.path = os.path.join(mnt, "filler")

    def leave(self, margin):
        """Grow or shrink the filler so that about margin bytes stay free."""
        cur = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        want = max(0, cur + free_bytes(os.path.dirname(self.path)) - margin)
        with open(self.path, "ab") as f:
            f.truncate(0)
            if want:
                os.posix_fallocate(f.fileno(), 0, want)
        return free_bytes(os.path.dirname(self.path))

    def remove(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


def store_clean(d, data_dir, what):
    probs = blob_problems(data_dir)
    check(not probs, "%s: every row's blob complete, no orphan, tmp/ empty" % what, probs[:5])
    check(integrity(data_dir) == "ok", "%s: PRAGMA integrity_check ok" % what)
    r = d.request("GET", "/healthz")
    check(r.status == 200, "%s: daemon serves on (/healthz 200)" % what)
    r = d.request("GET", "/v1/models?limit=5")
    check(r.status == 200, "%s: listing models works" % what)


def job_fails_on_full_disk(d, data_dir, filler, rec_id, margin, what):
    n_models = len(d.get_json("/v1/models?limit=100")["items"])
    left = filler.leave(margin)
    r = d.submit(rec_id, WF)
    jid = (r.json() or {}).get("id")
    if not check(r.status == 202, "%s: job accepted with %d KiB free" % (what, left >> 10), r.body[:300]):
        return
    j = d.wait_job(jid, timeout=120)
    e = (j or {}).get("error") or {}
    print("disk: %s: job %s, error %s" % (what, j and j.get("state"), json.dumps(e)[:300]))
    check(j and j["state"] == "failed" and e.get("code") in ("NO_SPACE", "IO") and
          "No space left on device" in e.get("message", ""),
          "%s: job failed, its reason says the disk is full" % what, (j or {}).get("state"))
    check(j and not j.get("artifacts"), "%s: the failed job references no artifact" % what, j and j.get("artifacts"))
    work = os.path.join(data_dir, "work", jid)
    check(not os.path.exists(work), "%s: the job's work dir is removed" % what)
    check(len(d.get_json("/v1/models?limit=100")["items"]) == n_models, "%s: no model row added" % what)
    store_clean(d, data_dir, what)


def main():
    mnt = sys.argv[1] if len(sys.argv) > 1 else None
    if not check(mnt and os.path.ismount(mnt), "data dir on a private %d MiB tmpfs (%s)" % (SIZE_MB, mnt)):
        return summary("disk")
    tmp = tempfile.mkdtemp(prefix="qd_disk_")
    ref_dir = os.path.join(tmp, "ref")
    wf_path = os.path.join(tmp, "wf.json")
    with open(wf_path, "w") as f:
        json.dump({"passes": WF}, f)
    p = subprocess.run([QUANTD, "run", "--model", REC, "--config", wf_path, "--output", ref_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(p.returncode == 0, "reference: quantd run of the same workflow", p.stdout[-300:])
    data_dir = os.path.join(mnt, "data")
    d = Daemon(data_dir, ["--workers", "1"], name="disk")
    d.log_path = os.path.join(tmp, "disk.stderr")
    d.start()
    filler = Filler(mnt)
    with open(HELLO, "rb") as f:
        hello = f.read()
    with open(REC, "rb") as f:
        rec = f.read()
    r = d.upload(rec, name="rec.onnx")
    rec_id = (r.json() or {}).get("id")
    check(r.status == 201, "upload PP-OCRv4 rec (10.8 MB) -> 201")
    # a first job grows the SQLite WAL to its working size
    j = d.wait_job(d.submit(rec_id, WF).json()["id"])
    check(j and j["state"] == "succeeded", "a job with room to spare succeeds")

    # 1. the disk fills during an upload
    body = variant(hello, "disk full upload")
    left = filler.leave(96 << 10)
    r = d.upload(body, name="full.onnx")
    e = r.err()
    print("disk: upload of %d KiB with %d KiB free: %d %s" % (len(body) >> 10, left >> 10, r.status, json.dumps(e)[:300]))
    check(r.status == 507 and e.get("code") == "NO_SPACE", "upload while the disk fills -> 507 NO_SPACE", r.body[:300])
    check("not enough disk space" in e.get("message", "") and "No space left on device" in e.get("message", ""),
          "the 507 message says the disk is full", e.get("message"))
    r = d.request("GET", "/metrics")
    check(r.status == 200 and b'quantd_uploads_total{result="rejected"} 1' in r.body, "the failed upload is counted as rejected")
    check(sha256(body) not in [m["sha256"] for m in d.get_json("/v1/models?limit=100")["items"]],
          "the failed upload is no model")
    store_clean(d, data_dir, "after the failed upload")
    big = variant(rec, "disk full big upload")
    filler.leave(2 << 20)
    r = d.upload(big, name="big.onnx")
    check(r.status == 507 and r.err().get("code") == "NO_SPACE", "a 10.8 MB upload with 2 MiB free -> 507", r.body[:300])
    store_clean(d, data_dir, "after the failed big upload")

    # 2. the job's own write of model.onnx (7.7 MB) into its work dir fails
    job_fails_on_full_disk(d, data_dir, filler, rec_id, 3 << 20, "model write in the work dir")
    # 3. model.onnx fits in the work dir, its copy into the blob store does not
    job_fails_on_full_disk(d, data_dir, filler, rec_id, 12 << 20, "artifact copy into the blob store")

    # 4. not even room for the job row
    filler.leave(0)
    r = d.submit(rec_id, WF)
    print("disk: submit with 0 bytes free: %d %s" % (r.status, r.body[:200]))
    check(r.status in (202, 500, 507) and (r.status == 202 or r.err().get("message")),
          "submit with a completely full disk answers (202, or an error with a message), no hang", r.status)
    if r.status == 202:
        j = d.wait_job(r.json()["id"], timeout=120)
        check(j and j["state"] == "failed" and (j.get("error") or {}).get("message"),
              "... and that job fails with a reason", j and j.get("state"))
    r = d.request("GET", "/healthz")
    check(r.status == 200, "daemon serves with a completely full disk")

    # 5. space back: everything works again
    filler.remove()
    r = d.upload(body, name="again.onnx")
    check(r.status == 201 and (r.json() or {}).get("sha256") == sha256(body), "space back: the same upload -> 201")
    c = d.request("GET", "/v1/models/%s/content" % (r.json() or {}).get("id"))
    check(c.status == 200 and sha256(c.body) == sha256(body), "space back: its content has the sha256 sent")
    r = d.submit(rec_id, WF)
    j = d.wait_job((r.json() or {}).get("id", ""), timeout=120) if r.status == 202 else None
    check(j and j["state"] == "succeeded", "space back: the same job succeeds", j and j.get("error"))
    if j and j["state"] == "succeeded":
        art = [a for a in j["artifacts"] if a["kind"] == "model"][0]
        a = d.request("GET", art["url"])
        path = os.path.join(tmp, "after.onnx")
        with open(path, "wb") as f:
            f.write(a.body)
        check(sha256(a.body) == art["sha256"], "space back: the artifact downloads with its sha256")
        p = subprocess.run(["node", os.path.join(HERE, "ort_same.js"), os.path.join(ref_dir, "model.onnx"), path,
                            "--shape", "x=1,3,48,160"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(p.stdout.decode(errors="replace").strip())
        check(p.returncode == 0, "space back: the artifact computes in ORT exactly what quantd run's does")
    store_clean(d, data_dir, "at the end")
    check(d.stop() == 0, "SIGTERM -> exit 0")
    return summary("disk")


if __name__ == "__main__":
    sys.exit(main())
