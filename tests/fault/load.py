#!/usr/bin/python3
"""Load suite: 1000 concurrent keep-alive clients on loopback (bench/load.c, one epoll
loop) polling finished jobs and listing models while 8 more connections upload distinct
models, against a real `quantd serve`. Asserts 0 errors, every response's content
(job id / state / artifact sha256s, model list items known, newest first, unique,
upload sha256 and size), that every upload is then stored intact, and that the daemon
served the 1000 connections with a bounded number of threads (MHD's thread pool, not a
thread per connection). Prints the latency figures bench/load.c measures.

usage: tests/fault/run_load.sh      env: B (build dir), LOAD_CONNS (1000), LOAD_REQUESTS
(20000), LOAD_UPLOADS (40)"""
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (ROOT, HELLO, Daemon, check, summary, sha256, variant)  # noqa: E402

B = os.environ.get("B", "build")
CONNS = int(os.environ.get("LOAD_CONNS", "1000"))
REQUESTS = int(os.environ.get("LOAD_REQUESTS", "20000"))
UPLOADS = int(os.environ.get("LOAD_UPLOADS", "40"))


def build_client(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    p = subprocess.run(["cc", "-O2", "-Wall", "-o", out, os.path.join(ROOT, "bench/load.c"), "-ljansson", "-lcrypto"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors="replace")


def proc_status(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    client = os.path.join(ROOT, B, "bench", "load")
    ok, out = build_client(client)
    if not check(ok, "bench/load.c builds with cc", out):
        return summary("load")
    tmp = tempfile.mkdtemp(prefix="qd_load_")
    d = Daemon(os.path.join(tmp, "data"), ["--workers", "1", "--log-level", "warn"], name="load").start()
    with open(HELLO, "rb") as f:
        base = f.read()
    models = {}
    first = None
    for i in range(25):
        body = variant(base, "seed %d" % i)
        r = d.upload(body, name="seed-%d.onnx" % i)
        if r.status == 201:
            models[r.json()["sha256"]] = len(body)
            first = first or r.json()["id"]
    check(len(models) == 25, "25 seed models uploaded (201)", len(models))
    jobs = []
    for pc in (False, True, False, True):
        r = d.submit(first, {"q": {"type": "OnnxDynamicQuantization", "per_channel": pc}})
        if r.status == 202:
            jobs.append(r.json()["id"])
    lines = []
    for jid in jobs:
        j = d.wait_job(jid)
        if j and j["state"] == "succeeded":
            lines.append("%s succeeded %s" % (jid, ",".join(a["sha256"] for a in j["artifacts"])))
    check(len(lines) == 4, "4 seed jobs succeeded", lines)
    jobs_file = os.path.join(tmp, "jobs.txt")
    models_file = os.path.join(tmp, "models.txt")
    with open(jobs_file, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(models_file, "w") as f:
        f.write("".join("%s %d\n" % kv for kv in models.items()))
    base_file = os.path.join(tmp, "base.onnx")
    with open(base_file, "wb") as f:
        f.write(base)
    up_out = os.path.join(tmp, "uploaded.txt")
    diag_out = os.path.join(tmp, "stall.txt")

    peak = {"threads": 0, "fds": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["threads"] = max(peak["threads"], proc_status(d.pid, "Threads"))
            try:
                peak["fds"] = max(peak["fds"], len(os.listdir("/proc/%d/fd" % d.pid)))
            except OSError:
                pass
            time.sleep(0.05)
    th = threading.Thread(target=sample)
    th.start()
    p = subprocess.run([client, "--port", str(d.port), "--conns", str(CONNS), "--requests", str(REQUESTS),
                        "--uploads", str(UPLOADS), "--upload-conns", "8", "--max-seconds", "150",
                        "--jobs", jobs_file, "--models", models_file, "--upload-base", base_file,
                        "--uploaded-out", up_out,
                        "--stall-cmd", "%s %s %d %d > %s 2>&1" % (sys.executable, os.path.abspath(__file__),
                                                                  d.pid, d.port, diag_out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=240)
    stop.set()
    th.join()
    out = p.stdout.decode(errors="replace")
    print(out.rstrip())
    if p.stderr:
        print(p.stderr.decode(errors="replace").rstrip()[:3000])
    ok = p.returncode == 0 and "load: %d requests, 0 errors" % (REQUESTS + UPLOADS) in out
    if not ok and os.path.exists(diag_out):
        with open(diag_out) as f:
            print(f.read().rstrip())
    check(ok,
          "%d clients, %d polls/lists + %d uploads: 0 errors, every response's content checked" % (CONNS, REQUESTS, UPLOADS),
          out[-500:])
    print("load: daemon peak %d threads, %d open descriptors during the load" % (peak["threads"], peak["fds"]))
    check(peak["fds"] >= CONNS, "the daemon held the %d connections at once (peak %d descriptors)" % (CONNS, peak["fds"]))
    check(0 < peak["threads"] <= 64, "the daemon served them with a bounded thread count (%d <= 64, not one per connection)" % peak["threads"])
    stored = []
    if os.path.exists(up_out):
        with open(up_out) as f:
            stored = [l.split() for l in f if l.strip()]
    bad = []
    for mid, sha, size in stored:
        m = d.get_json("/v1/models/" + mid)
        r = d.request("GET", "/v1/models/%s/content" % mid)
        if not m or m["sha256"] != sha or r.status != 200 or sha256(r.body) != sha or len(r.body) != int(size):
            bad.append(mid)
    check(len(stored) == UPLOADS and not bad, "every upload (%d) is stored: metadata and content sha256 match" % len(stored), bad)
    r = d.request("GET", "/healthz")
    check(r.status == 200, "daemon healthy after the load")
    check(d.stop() == 0, "SIGTERM after the load -> exit 0")
    return summary("load")


def diagnose(pid, port):
    """After a failed load: the daemon's sockets that still hold unread request bytes or
    unsent answer bytes, and every daemon thread's stack, so a stall can be told apart
    from a lost wake-up."""
    ss = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d )" % port],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rows = [l.split() for l in ss.stdout.decode(errors="replace").splitlines() if l.strip()]
    busy = [r for r in rows if len(r) > 1 and (r[0] != "0" or r[1] != "0")]
    print("load: diagnose: %d established daemon sockets, %d with queued bytes (Recv-Q Send-Q local peer):"
          % (len(rows), len(busy)))
    for r in busy[:20]:
        print("load: diagnose:   " + " ".join(r[:4]))
    try:
        gdb = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 12"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        text = gdb.stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        text = "Thread stacks unavailable: %s" % e
    print("load: diagnose: daemon threads:\n" + "\n".join(l for l in text.splitlines()
                                                          if l.startswith(("Thread", "#")))[:12000])


if __name__ == "__main__":
    if len(sys.argv) == 3:   # the load client's --stall-cmd: PID PORT
        diagnose(int(sys.argv[1]), int(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
