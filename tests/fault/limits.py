#!/usr/bin/python3
"""Limits suite: a full queue answers 429 with Retry-After (header, error body and
details.retry_after_seconds agree; waiting that long lets a submission through once the
queue drains); slow request bodies (one byte a second, and a client that goes silent)
are answered 408 and closed after --upload-timeout, leave no temp file, and do not hold
an HTTP thread: with --http-threads 2 and 6 slow uploads open, jobs still run and other
clients are served. Prints "limits: N passed, N failed"."""
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (HELLO, REC, Daemon, check, summary, sha256, variant)  # noqa: E402

TIMEOUT = 3


def t_queue_full(tmp):
    d = Daemon(os.path.join(tmp, "q", "data"), ["--workers", "1", "--max-queued", "2"], name="queue").start()
    with open(REC, "rb") as f:
        r = d.upload(f.read(), name="rec.onnx")
    mid = (r.json() or {}).get("id")
    check(r.status == 201, "upload PP-OCRv4 rec -> 201", r.body[:200])
    wf = {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}
    got, ids = [], []
    for _ in range(12):
        r = d.submit(mid, wf)
        got.append(r)
        if r.status == 202:
            ids.append(r.json()["id"])
    full = [r for r in got if r.status == 429]
    check(full, "a burst of 12 submissions with --max-queued 2 gets 429", [r.status for r in got])
    for r in full[:1]:
        ra = r.header("Retry-After")
        e = r.err()
        det = e.get("details") or {}
        check(ra is not None and ra.isdigit() and int(ra) >= 1, "429 has a Retry-After header of whole seconds >= 1", ra)
        check(e.get("code") == "QUEUE_FULL" and "queue is full" in e.get("message", "") and det.get("field") == "queue",
              "429 body: code QUEUE_FULL, message says the queue is full, details.field 'queue'", r.body)
        check(ra is not None and det.get("retry_after_seconds") == int(ra),
              "details.retry_after_seconds equals the Retry-After header", (ra, det))
        check(r.header("Content-Type") == "application/json", "429 body is JSON")
    for jid in ids:
        d.wait_job(jid)
    # with finished jobs the hint is their mean run time over the workers (rounded up)
    runs = []
    for jid in ids:
        j = d.get_json("/v1/jobs/" + jid)
        check(j and j["state"] == "succeeded", "queued job %s succeeded" % jid, j and j.get("error"))
    full2 = None
    for _ in range(12):
        r = d.submit(mid, wf)
        if r.status == 202:
            runs.append(r.json()["id"])
        elif r.status == 429:
            full2 = r
            break
    check(full2 is not None, "the queue fills again")
    if full2 is not None:
        ra = int(full2.header("Retry-After") or 0)
        print("limits: Retry-After after %d finished jobs: %d s" % (len(ids), ra))
        check(1 <= ra <= 300, "Retry-After from the run times of finished jobs is within 1..300 s", ra)
        # a client that honours Retry-After gets in once the queue has drained
        ok = False
        deadline = time.time() + 120
        while time.time() < deadline and not ok:
            time.sleep(ra)
            r = d.submit(mid, wf)
            if r.status == 202:
                runs.append(r.json()["id"])
                ok = True
            elif r.status == 429:
                ra = int(r.header("Retry-After") or 1)
        check(ok, "resubmitting after Retry-After seconds is accepted (202)")
    for jid in runs:
        j = d.wait_job(jid)
        check(j and j["state"] == "succeeded", "job %s after the 429s succeeded" % jid)
    check(d.stop() == 0, "queue daemon: SIGTERM -> exit 0")


def slow_client(port, path, total, results, key, ctype="application/octet-stream", silent_after=None):
    """Send headers then one byte a second (or go silent after silent_after bytes).
    results[key] = (status or None, body, seconds until the server answered/closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
               % (path, ctype, total)).encode())
    data = b""
    sent = 0
    s.settimeout(1.0)
    while time.time() - t0 < 60:
        if silent_after is None or sent < silent_after:
            try:
                s.sendall(b"{" if ctype == "application/json" and sent == 0 else b"x")
                sent += 1
            except OSError:
                pass
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                clen = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if clen and len(rest) >= clen[0]:
                    break
        except socket.timeout:
            continue
        except OSError:
            break
    s.close()
    status = None
    if data.startswith(b"HTTP/1."):
        status = int(data.split(b" ")[1])
    results[key] = (status, data.partition(b"\r\n\r\n")[2], time.time() - t0, sent)


def t_slow(tmp):
    data_dir = os.path.join(tmp, "s", "data")
    d = Daemon(data_dir, ["--workers", "1", "--http-threads", "2", "--upload-timeout", str(TIMEOUT),
                          "--upload-min-rate", "1000"], name="slow").start()
    with open(HELLO, "rb") as f:
        base = f.read()
    r = d.upload(base, name="hello.onnx")
    mid = (r.json() or {}).get("id")
    check(r.status == 201, "upload a model -> 201")
    results = {}
    threads = [threading.Thread(target=slow_client, args=(d.port, "/v1/models", 100000, results, "up%d" % i))
               for i in range(6)]
    threads.append(threading.Thread(target=slow_client, args=(d.port, "/v1/models", 100000, results, "silent"),
                                    kwargs={"silent_after": 2}))
    threads.append(threading.Thread(target=slow_client, args=(d.port, "/v1/jobs", 5000, results, "json"),
                                    kwargs={"ctype": "application/json"}))
    for t in threads:
        t.start()
    time.sleep(0.5)
    # meanwhile (8 slow bodies open, 2 HTTP threads): a job runs, others are served
    served = []
    t0 = time.time()
    r = d.submit(mid, {"q": {"type": "OnnxDynamicQuantization"}})
    jid = (r.json() or {}).get("id")
    check(r.status == 202, "submit while 8 slow bodies are open -> 202", r.body[:200])
    for i in range(20):
        served.append(d.request("GET", "/healthz", timeout=10).status)
        served.append(d.request("GET", "/v1/models?limit=5", timeout=10).status)
    j = d.wait_job(jid, timeout=60) if jid else None
    during = time.time() - t0
    check(all(s == 200 for s in served), "40 other requests answered 200 while the slow bodies trickle", served)
    check(j and j["state"] == "succeeded", "a job runs to success meanwhile", j and j.get("error"))
    fast = variant(base, "fast upload")
    r = d.upload(fast, name="fast.onnx")
    check(r.status == 201 and (r.json() or {}).get("sha256") == sha256(fast), "a normal upload meanwhile -> 201")
    with open(REC, "rb") as f:
        big = f.read()
    r = d.upload(big, name="rec.onnx")
    check(r.status == 201, "a 10.8 MB upload at loopback speed is not timed out (the allowance grows with the bytes)",
          r.body[:200])
    print("limits: job and 40 requests done %.1f s after the slow bodies started" % during)
    for t in threads:
        t.join()
    for k in sorted(results):
        status, body, secs, sent = results[k]
        print("limits: slow client %s: %s after %.1f s, %d bytes sent" % (k, status, secs, sent))
        try:
            e = json.loads(body).get("error", {})
        except ValueError:
            e = {}
        check(status == 408 and e.get("code") == "REQ_TIMEOUT" and "--upload-timeout" in e.get("message", ""),
              "slow body %s answered 408 REQ_TIMEOUT naming --upload-timeout" % k, (status, body[:300]))
        check(secs < TIMEOUT + 15, "slow body %s cut off after %.1f s (--upload-timeout %d; 100000 bytes would take 28 h)"
              % (k, secs, TIMEOUT))
    left = os.listdir(os.path.join(data_dir, "tmp"))
    check(not left, "no temp file left behind by the timed-out uploads", left)
    m = d.request("GET", "/metrics").body.decode()
    rej = [l for l in m.splitlines() if l.startswith("quantd_uploads_total") and "rejected" in l]
    check(rej and float(rej[0].split()[-1]) >= 7, "timed-out uploads are counted as rejected", rej)
    models = d.get_json("/v1/models?limit=100")["items"]
    check(len(models) == 3, "only the three complete uploads are models", [m["name"] for m in models])
    check(d.stop() == 0, "slow daemon: SIGTERM -> exit 0")


def main():
    tmp = tempfile.mkdtemp(prefix="qd_limits_")
    t_queue_full(tmp)
    t_slow(tmp)
    return summary("limits")


if __name__ == "__main__":
    sys.exit(main())
