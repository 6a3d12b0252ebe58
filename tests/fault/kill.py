#!/usr/bin/python3
"""kill -9 harness: one data directory, FAULT_KILLS cycles of start -> traffic -> kill -9
at a random moment of a chosen phase:
  upload    distinct models streamed in (some 10.8 MB, slowly), deletes of unused models
  queue     a burst of job submissions
  job       a dynamic-quantization job on PP-OCRv4 rec running
  artifact  that job writing its artifacts (work/<job>/out/model.onnx has appeared)
  shutdown  SIGTERM, then kill -9 while the daemon drains
After every kill: no process of the daemon survives (the harness is a child subreaper,
so orphaned job processes would become its children: `pgrep -P`, plus `pgrep -f` on the
data dir); PRAGMA integrity_check is ok; every blob file's content matches its name (no
partial blob) and every row's blob exists with its size; the restart's sweep removes
exactly the temp files and unreferenced blobs the crash left; every upload answered
201/200 (and not deleted with a 204) is present with the sha256 of what was sent.
At the end: every job is succeeded or failed with a code and a message, every succeeded
job's model artifact downloads with its sha256 and computes in ONNX Runtime exactly what
the artifact of an uninterrupted run of the same job computes, the data dir holds no
orphan and no temp file. Prints the counts.

env: FAULT_KILLS (default 50), FAULT_SEED (default: time), B (build dir)
(also fail on the known duplicate-artifact bug of re-run jobs, see below)
usage: tests/fault/run_kill.sh          (FAULT_KILLS=200 for the long run)"""
import ctypes
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (HERE, HELLO, REC, Daemon, check, summary, sha256, variant, integrity,  # noqa: E402
                      referenced_shas, blob_files, file_sha, blob_problems)

KILLS = int(os.environ.get("FAULT_KILLS", "50"))
SEED = int(os.environ.get("FAULT_SEED", str(int(time.time()))))
WF_REC = {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}
WF_HELLO = {"q": {"type": "OnnxDynamicQuantization"}}
PHASES = ["upload", "queue", "job", "artifact", "shutdown"]
ARGS = ["--workers", "2", "--log-level", "info"]

rnd = random.Random(SEED)
lock = threading.Lock()
stats = {"kills": 0, "phase": {p: 0 for p in PHASES}, "uploads_answered": 0, "uploads_cut": 0,
         "upload_checks": 0, "deletes": 0, "jobs_submitted": 0, "running_at_kill": 0,
         "requeued": 0, "swept_tmp": 0, "swept_blobs": 0, "survivors": 0, "kill_during_sigterm": 0, "children_at_kill": 0}
uploads = {}      # id -> (sha, size, kind) answered 201/200 and not deleted
maybe_gone = {}   # id -> (sha, size) whose delete was cut off: present intact, or gone
jobs = {}         # id -> "rec" | "hello"
job_models = set()
unchecked = set() # answered uploads not yet re-checked after a restart
problems = []


def note(msg):
    with lock:
        problems.append(msg)


def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def survivors(data_dir):
    """Processes left after the kill: our children (orphans reparent to us) and anything
    whose command line names the data dir."""
    out = set()
    for args in (["pgrep", "-P", str(os.getpid())], ["pgrep", "-f", "--", data_dir]):
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for x in p.stdout.split():
            pid = int(x)
            try:
                with open("/proc/%d/stat" % pid) as f:
                    st = f.read().rsplit(")", 1)[1].split()
                if st[0] == "Z":
                    continue
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "pgrep" in cmd:
                continue
            out.add((pid, cmd[:160]))
    return out


class Traffic:
    """Client threads for one cycle; every exception after the kill is expected."""

    def __init__(self, d):
        self.d = d
        self.threads = []
        self.stop = threading.Event()

    def spawn(self, fn, *a):
        t = threading.Thread(target=self.guard, args=(fn,) + a, daemon=True)
        t.start()
        self.threads.append(t)

    def guard(self, fn, *a):
        try:
            fn(*a)
        except (OSError, http.client.HTTPException, ValueError):
            pass

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def upload(self, body, kind, slow):
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
        c.putrequest("POST", "/v1/models?name=%s.onnx" % kind)
        c.putheader("Content-Type", "application/octet-stream")
        c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        step = 256 << 10
        for i in range(0, len(body), step):
            c.send(body[i:i + step])
            if slow:
                time.sleep(0.01)
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status in (200, 201):
            j = json.loads(data)
            if j.get("sha256") != sha256(body) or j.get("size") != len(body):
                note("upload answered %d with sha256 %s size %s, sent %s %d" % (r.status, j.get("sha256"), j.get("size"), sha256(body), len(body)))
            with lock:
                uploads[j["id"]] = (sha256(body), len(body), kind)
                unchecked.add(j["id"])
                stats["uploads_answered"] += 1
        else:
            note("upload answered %d: %r" % (r.status, data[:200]))

    def delete(self, mid):
        with lock:
            sha, size, kind = uploads.pop(mid)
            maybe_gone[mid] = (sha, size)
        r = self.d.request("DELETE", "/v1/models/" + mid, timeout=30)
        with lock:
            if r.status == 204:
                maybe_gone.pop(mid, None)
                stats["deletes"] += 1
            else:
                note("DELETE unused model %s answered %d" % (mid, r.status))

    def submit(self, mid, kind):
        with lock:
            job_models.add(mid)
        r = self.d.submit(mid, WF_REC if kind == "rec" else WF_HELLO)
        if r.status == 202:
            with lock:
                jobs[r.json()["id"]] = kind
                stats["jobs_submitted"] += 1
            return r.json()["id"]
        if r.status != 429:
            note("submit answered %d: %r" % (r.status, r.body[:200]))
        return None

    def poll(self):
        while not self.stop.is_set():
            with lock:
                ids = list(jobs)[-20:]
            for jid in ids:
                self.d.request("GET", "/v1/jobs/" + jid, timeout=10)
            self.d.request("GET", "/v1/models?limit=20", timeout=10)
            time.sleep(0.02)


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def job_state(d, jid):
    j = d.get_json("/v1/jobs/" + jid)
    return j and j.get("state")


def run_phase(d, phase, data_dir, rec_id, hello_base, rec_base, cycle):
    t = Traffic(d)
    t.spawn(t.poll)
    if phase == "upload":
        n = rnd.randint(1, 4)
        for k in range(n):
            big = rnd.random() < 0.3
            body = variant(rec_base if big else hello_base, "c%d u%d %d" % (cycle, k, rnd.getrandbits(32)))
            t.spawn(t.upload, body, "bigrec" if big else "hello", big)
        with lock:
            deletable = [m for m, v in uploads.items() if v[2] in ("hello", "bigrec") and m not in used_models()]
        for mid in rnd.sample(deletable, min(len(deletable), rnd.randint(0, 2))):
            t.spawn(t.delete, mid)
        time.sleep(rnd.uniform(0.0, 0.6))
    elif phase == "queue":
        with lock:
            hellos = [m for m, v in uploads.items() if v[2] == "hello"]
        for k in range(rnd.randint(3, 12)):
            mid = rnd.choice(hellos) if hellos and rnd.random() < 0.7 else rec_id
            t.spawn(t.submit, mid, "rec" if mid == rec_id else "hello")
        time.sleep(rnd.uniform(0.0, 0.15))
    elif phase in ("job", "artifact"):
        jid = t.submit(rec_id, "rec")
        if jid:
            if phase == "job":
                wait_for(lambda: job_state(d, jid) == "running", 20)
                time.sleep(rnd.uniform(0.0, 0.25))
            else:
                out = os.path.join(data_dir, "work", jid, "out", "model.onnx")
                wait_for(lambda: os.path.exists(out), 30)
                time.sleep(rnd.uniform(0.0, 0.08))
    elif phase == "shutdown":
        with lock:
            hellos = [m for m, v in uploads.items() if v[2] == "hello"]
        t.submit(rec_id, "rec")
        for mid in hellos[-2:]:
            t.submit(mid, "hello")
        t.spawn(t.upload, variant(rec_base, "sd %d %d" % (cycle, rnd.getrandbits(32))), "bigrec", True)
        time.sleep(rnd.uniform(0.0, 0.3))
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(rnd.uniform(0.0, 0.8))
        if d.proc.poll() is None:
            stats["kill_during_sigterm"] += 1
    return t


def used_models():
    """Models a job was submitted for (never deleted: 409 while the job is queued)."""
    return set(job_models)


def gap_checks(data_dir, cache):
    """With the daemon dead: integrity, no partial blob, no row without its blob.
    Returns (orphan blobs, temp files) the restart must sweep."""
    res = integrity(data_dir)
    if res != "ok":
        note("integrity_check after kill: %s" % res)
    refs = referenced_shas(data_dir)
    files = blob_files(data_dir)
    for sha, path in files.items():
        if file_sha(path, cache) != sha:
            note("partial or corrupt blob %s after kill" % sha[:16])
    for sha, size in refs.items():
        if sha not in files:
            note("row references missing blob %s after kill" % sha[:16])
        elif os.path.getsize(files[sha]) != size:
            note("blob %s size differs from its row after kill" % sha[:16])
    orphans = [s for s in files if s not in refs]
    tmp = os.listdir(os.path.join(data_dir, "tmp"))
    import sqlite3
    db = sqlite3.connect(os.path.join(data_dir, "quantd.db"), timeout=30)
    running = db.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0]
    db.close()
    return orphans, tmp, running


def restart_checks(d, log_offset, orphans, tmp, running, everything=False):
    with open(d.log_path, "rb") as f:
        f.seek(log_offset)
        log = f.read().decode(errors="replace")
    m = re.search(r"store: removed (\d+) stale temp file\(s\) and (\d+) unreferenced blob\(s\)", log)
    got = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if got != (len(tmp), len(orphans)):
        note("restart swept %d temp files and %d blobs; the crash left %d and %d" % (got + (len(tmp), len(orphans))))
    stats["swept_tmp"] += got[0]
    stats["swept_blobs"] += got[1]
    m = re.search(r"recovered interrupted jobs: (\d+) requeued, (\d+) failed", log)
    rq = (int(m.group(1)) + int(m.group(2))) if m else 0
    if rq != running:
        note("%d jobs were running at the kill, recovery handled %d" % (running, rq))
    stats["running_at_kill"] += running
    stats["requeued"] += int(m.group(1)) if m else 0
    with lock:
        # the uploads answered since the last restart, and a sample of the older ones
        old = [m for m in uploads if m not in unchecked]
        pick = set(m for m in unchecked if m in uploads) | set(rnd.sample(old, min(len(old), 4)))
        if everything:
            pick = set(uploads)
        unchecked.clear()
        items = [(m, uploads[m]) for m in pick]
        gone = list(maybe_gone.items())
    for mid, (sha, size, kind) in items:
        stats["upload_checks"] += 1
        m = d.get_json("/v1/models/" + mid)
        r = d.request("GET", "/v1/models/%s/content" % mid)
        if not m or m.get("sha256") != sha or r.status != 200 or sha256(r.body) != sha or len(r.body) != size:
            note("answered upload %s missing or damaged after restart (status %d)" % (mid, r.status))
    for mid, (sha, size) in gone:
        r = d.request("GET", "/v1/models/%s/content" % mid)
        if r.status == 200 and sha256(r.body) != sha:
            note("model %s whose delete was cut off is damaged" % mid)
        elif r.status not in (200, 404):
            note("model %s whose delete was cut off answers %d" % (mid, r.status))
        if r.status == 200:
            with lock:
                uploads[mid] = (sha, size, "hello")
        with lock:
            maybe_gone.pop(mid, None)


def reference(tmp, hello_base, rec_base):
    """Artifacts of uninterrupted runs of the two jobs."""
    d = Daemon(os.path.join(tmp, "ref", "data"), ARGS, name="ref").start()
    refs = {}
    for kind, body, wf in (("rec", rec_base, WF_REC), ("hello", hello_base, WF_HELLO)):
        mid = d.upload(body).json()["id"]
        j = d.wait_job(d.submit(mid, wf).json()["id"])
        art = [a for a in j["artifacts"] if a["kind"] == "model"][0]
        r = d.request("GET", art["url"])
        path = os.path.join(tmp, "ref_%s.onnx" % kind)
        with open(path, "wb") as f:
            f.write(r.body)
        refs[kind] = path
    d.stop()
    return refs


def main():
    print("kill: FAULT_KILLS=%d FAULT_SEED=%d" % (KILLS, SEED))
    check(subreaper(), "harness is a child subreaper (orphaned job processes would become its children)")
    tmp = tempfile.mkdtemp(prefix="qd_kill_")
    data_dir = os.path.join(tmp, "kill", "data")
    with open(HELLO, "rb") as f:
        hello_base = f.read()
    with open(REC, "rb") as f:
        rec_base = f.read()
    refs = reference(tmp, hello_base, rec_base)
    cache = {}
    d = Daemon(data_dir, ARGS, name="kill").start()
    r = d.upload(rec_base, name="rec.onnx")
    rec_id = r.json()["id"]
    uploads[rec_id] = (sha256(rec_base), len(rec_base), "rec")
    for i in range(3):
        Traffic(d).upload(variant(hello_base, "seed %d" % i), "hello", False)
    t0 = time.time()
    for cycle in range(KILLS):
        phase = PHASES[cycle % len(PHASES)] if cycle < len(PHASES) else rnd.choice(PHASES)
        traffic = run_phase(d, phase, data_dir, rec_id, hello_base, rec_base, cycle)
        kids = subprocess.run(["pgrep", "-P", str(d.pid)], stdout=subprocess.PIPE).stdout.split()
        stats["children_at_kill"] += len(kids)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.log.close()
        stats["kills"] += 1
        stats["phase"][phase] += 1
        traffic.join()
        time.sleep(0.05)
        reap()
        left = survivors(data_dir)
        deadline = time.time() + 3
        while left and time.time() < deadline:
            time.sleep(0.1)
            reap()
            left = survivors(data_dir)
        if left:
            stats["survivors"] += len(left)
            note("cycle %d (%s): processes outlived kill -9 of the daemon: %s" % (cycle, phase, sorted(left)))
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            reap()
        orphans, tmpf, running = gap_checks(data_dir, cache)
        off = os.path.getsize(d.log_path)
        d = Daemon(data_dir, ARGS, name="kill").start()
        restart_checks(d, off, orphans, tmpf, running, everything=cycle == KILLS - 1)
        if cycle % 10 == 9:
            print("kill: %d kills, %.0f s, %d problems" % (cycle + 1, time.time() - t0, len(problems)))
            sys.stdout.flush()

    # drain: every job ends succeeded or failed with a reason
    final = {}
    deadline = time.time() + 600
    for jid in list(jobs):
        j = d.wait_job(jid, timeout=max(1, deadline - time.time()))
        final[jid] = j
    by_state = {}
    arts = []
    dup_jobs = []
    for jid, j in final.items():
        st = j and j.get("state")
        by_state[st] = by_state.get(st, 0) + 1
        if st == "succeeded":
            models = [a for a in j.get("artifacts", []) if a["kind"] == "model"]
            names = [a["name"] for a in j.get("artifacts", [])]
            if len(models) != 1:
                note("job %s: artifacts %s" % (jid, names))
            if len(names) != len(set(names)):
                dup_jobs.append((jid, names))
            arts += [(jid, jobs[jid], a) for a in models]
        elif st == "failed":
            e = j.get("error") or {}
            if not e.get("code") or not e.get("message"):
                note("job %s failed without a reason: %s" % (jid, e))
        else:
            note("job %s ended %s" % (jid, st))
    print("kill: jobs by final state %s" % by_state)
    fails = {}
    for j in final.values():
        if j and j.get("state") == "failed":
            k = (j.get("error") or {}).get("code")
            fails[k] = fails.get(k, 0) + 1
    if fails:
        print("kill: failed jobs by code %s" % fails)
    # download every model artifact, check its sha256, run the distinct ones in ORT
    adir = os.path.join(tmp, "arts")
    os.makedirs(adir)
    distinct = {"rec": {}, "hello": {}}
    for jid, kind, a in arts:
        r = d.request("GET", a["url"])
        if r.status != 200 or sha256(r.body) != a["sha256"]:
            note("artifact %s of %s: status %d, sha256 differs" % (a["id"], jid, r.status))
            continue
        if a["sha256"] not in distinct[kind]:
            p = os.path.join(adir, "%s_%s.onnx" % (kind, a["sha256"][:16]))
            with open(p, "wb") as f:
                f.write(r.body)
            distinct[kind][a["sha256"]] = p
    ort_ok = True
    for kind, files in distinct.items():
        if not files:
            continue
        cmd = ["node", os.path.join(HERE, "ort_same.js"), refs[kind]] + list(files.values())
        if kind == "rec":
            cmd += ["--shape", "x=1,3,48,160"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        out = p.stdout.decode(errors="replace")
        print("kill: ORT %s: %s" % (kind, out.strip().splitlines()[-1] if out.strip() else "no output"))
        if p.returncode:
            ort_ok = False
            note("ORT comparison of %s artifacts: %s" % (kind, out[-1500:]))
    rc = d.stop()
    check(rc == 0, "final daemon: SIGTERM -> exit 0", rc)
    final_probs = blob_problems(data_dir)
    check(integrity(data_dir) == "ok", "final PRAGMA integrity_check ok")
    check(not final_probs, "final data dir: no orphan, partial or missing blob, tmp/ empty", final_probs[:10])
    secs = time.time() - t0
    print("kill: %d kills in %.0f s (%s), %d during SIGTERM drain" % (
        stats["kills"], secs, ", ".join("%s %d" % kv for kv in stats["phase"].items()), stats["kill_during_sigterm"]))
    print("kill: uploads answered %d (%d re-checked after restarts), deletes %d, jobs submitted %d, "
          "running at a kill %d (requeued %d), swept %d temp files and %d orphan blobs, "
          "job processes alive at a kill %d, survivors %d" % (
              stats["uploads_answered"], stats["upload_checks"], stats["deletes"], stats["jobs_submitted"],
              stats["running_at_kill"], stats["requeued"], stats["swept_tmp"], stats["swept_blobs"],
              stats["children_at_kill"], stats["survivors"]))
    n_distinct = sum(len(v) for v in distinct.values())
    print("kill: uploads checked %d, jobs checked %d, artifacts compared %d (%d distinct files run in ORT)" % (
        len(uploads), len(final), len(arts), n_distinct))
    check(stats["kills"] == KILLS and all(stats["phase"].values()), "%d kills, every phase hit" % stats["kills"], stats["phase"])
    check(stats["survivors"] == 0, "no daemon or job process outlived a kill -9 (pgrep after each kill)")
    check(not [p for p in problems if "after kill" in p or "swept" in p],
          "after every kill: integrity ok, no partial blob, no row without its blob; the restart sweeps exactly the crash's leftovers",
          [p for p in problems if "after kill" in p or "swept" in p][:10])
    check(not [p for p in problems if "upload" in p or "delete" in p or "model " in p],
          "every answered upload present and intact after every restart (%d checks)" % stats["upload_checks"],
          [p for p in problems if "upload" in p or "delete" in p or "model " in p][:10])
    check(not [p for p in problems if "recovery" in p], "every job running at a kill was requeued (or failed) by recovery",
          [p for p in problems if "recovery" in p][:10])
    check(len(final) == len(jobs) and by_state.get("succeeded", 0) + by_state.get("failed", 0) == len(jobs) and
          not [p for p in problems if p.startswith("job ")],
          "every job (%d) ended succeeded or failed with a reason" % len(jobs), [p for p in problems if p.startswith("job ")][:10])
    check(ort_ok and arts and not [p for p in problems if p.startswith("artifact") or p.startswith("ORT")],
          "every recovered artifact (%d) downloads intact and computes exactly what the uninterrupted run's does in ORT" % len(arts),
          [p for p in problems if p.startswith("artifact") or p.startswith("ORT")][:5])
    # a re-run replaces what an earlier attempt imported under the same name (qd_artifact_add)
    check(not dup_jobs, "re-run jobs list each artifact name once", dup_jobs[:3])
    rest = [p for p in problems if not any(k in p for k in ("after kill", "swept", "upload", "delete", "model ", "recovery",
                                                          "job ", "artifact", "ORT"))]
    check(not rest, "no other problem", rest[:10])
    return summary("kill")


if __name__ == "__main__":
    sys.exit(main())
