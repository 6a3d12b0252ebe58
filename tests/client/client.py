#!/usr/bin/python3
"""The command-line client (`quantd submit | jobs | status | logs | cancel`) against a real
`quantd serve` (127.0.0.1:0, temporary data dir, a bearer token, --workers 2).

Covers: submit --wait --output of a dynamic job (artifacts' sha256 and size against the
server's, the model in ONNX Runtime like the float model, job.json, plain progress lines
off a terminal), the second submit of the same model skipping its upload (the note, the
daemon's upload counters, one model row) and the ?sha256= lookup it relies on, --data
binding for static jobs in Olive's dict and list forms (the job's data_configs name the
uploaded dataset), failing submissions (unknown pass parameter: the server's 400 message,
exit 2, nothing uploaded; a dataset that does not fit: the server's 400, exit 2; a job that
fails at run time: its error code and message, exit 1), the progress line on a terminal
(a pty), jobs / status / logs (--follow) / cancel with and without --json, cancel of a
running job ending a waiting submit with exit 3, tokens (--token, --token-file,
QUANTD_TOKEN, QUANTD_TOKEN_FILE, wrong and missing → 401 with a clear message, exit 4), a
server that is not there (exit 4) and usage errors (exit 2).

usage: /usr/bin/python3 tests/client/client.py     (prints "client: N passed, N failed")
env: QUANTD (binary, default $B/quantd with B=build), QD_E2E_KEEP=1 keeps the temp dir.
"""
import hashlib
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import e2e  # noqa: E402  (Daemon, check, the openapi checker)
from e2e import Daemon, check  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

QUANTD = e2e.QUANTD
TOKEN = "client-suite-token"
ORT_COMPARE = os.path.join(ROOT, "tests", "e2e", "ort_compare.js")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELED, EXIT_SERVER = 0, 1, 2, 3, 4


def sha256_file(path):
    return e2e.sha256_file(path)


def make_mlp(path, seed, width=128):
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((64, width)).astype(np.float32) * 0.1, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((width, 16)).astype(np.float32) * 0.1, "w2")
    b1 = numpy_helper.from_array(rng.standard_normal(width).astype(np.float32) * 0.1, "b1")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
         helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])], [w1, w2, b1])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


class Client:
    """Runs the client binary with QUANTD_SERVER / QUANTD_TOKEN from the environment."""

    def __init__(self, server, token):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTD_")}
        self.env["QUANTD_SERVER"] = server
        if token:
            self.env["QUANTD_TOKEN"] = token

    def run(self, *args, env=None, timeout=120, cwd=None):
        e = dict(self.env)
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        t0 = time.time()
        p = subprocess.run([QUANTD] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=e, timeout=timeout, cwd=cwd)
        p.seconds = time.time() - t0
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        return p

    def popen(self, *args):
        return subprocess.Popen([QUANTD] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)


def ort_same(float_model, quant_model, name):
    p = subprocess.run(["node", ORT_COMPARE, float_model, quant_model, "--min-cos", "0.99"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    check(p.returncode == 0, "%s: the downloaded model loads and runs in ONNX Runtime like the float model" % name,
          p.stdout.decode()[-600:])


def upload_counts(d):
    r = d.request("GET", "/metrics")
    txt = r.body.decode()
    acc = re.search(r'^quantd_uploads_total\{result="accepted"\} (\d+)', txt, re.M)
    byt = re.search(r'^quantd_upload_bytes_total (\d+)', txt, re.M)
    return (int(acc.group(1)) if acc else -1, int(byt.group(1)) if byt else -1)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def progress_lines(err, job):
    return [l for l in err.splitlines() if l.startswith(job + ": ")]


def check_artifacts(d, job, out_dir, name):
    """every artifact of the job is in out_dir with the server's sha256 and size"""
    j = d.get_json("/v1/jobs/" + job)
    arts = j.get("artifacts") or []
    check(len(arts) >= 3 and {a["kind"] for a in arts} >= {"model", "metrics", "footprint"},
          "%s: the job has model, metrics and footprint artifacts" % name, [a.get("kind") for a in arts])
    for a in arts:
        p = os.path.join(out_dir, a["name"])
        ok = os.path.isfile(p) and os.path.getsize(p) == a["size"] and sha256_file(p) == a["sha256"]
        check(ok, "%s: %s downloaded with the server's sha256 and size" % (name, a["name"]),
              (p, os.path.exists(p) and os.path.getsize(p), a["size"]))
    check(not [f for f in os.listdir(out_dir) if f.endswith(".part")], "%s: no partial download left" % name,
          os.listdir(out_dir))
    try:
        with open(os.path.join(out_dir, "job.json")) as f:
            jj = json.load(f)
        check(jj.get("id") == job and jj.get("state") == "succeeded", "%s: job.json is the final job" % name)
    except (OSError, ValueError) as e:
        check(False, "%s: job.json is the final job" % name, e)
    return j


def t_dynamic(d, cl, tmp, m):
    """submit --wait --output, non-TTY progress, artifacts checked, the model in ORT"""
    wf = write_json(os.path.join(tmp, "dyn.json"),
                    {"passes": {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}})
    out = os.path.join(tmp, "out_dyn")
    before = upload_counts(d)
    p = cl.run("submit", "--model", m["mlp"], "--config", wf, "--wait", "--output", out, "--poll", "0.1")
    job = p.out.strip()
    check(p.returncode == EXIT_OK and re.fullmatch(r"job_[0-9a-f]{16}", job),
          "dynamic: submit --wait --output exits 0 and prints the job id on stdout", (p.returncode, p.out, p.err))
    check("uploading model 'mlp.onnx'" in p.err and "uploaded model 'mlp.onnx' as mdl_" in p.err,
          "dynamic: the first submit uploads the model", p.err)
    after = upload_counts(d)
    check(after[0] == before[0] + 1 and after[1] - before[1] == os.path.getsize(m["mlp"]),
          "dynamic: the daemon counted one upload of the model's bytes", (before, after))
    j = check_artifacts(d, job, out, "dynamic")
    check(j.get("state") == "succeeded", "dynamic: the job succeeded", j.get("state"))
    ort_same(m["mlp"], os.path.join(out, "model.onnx"), "dynamic")
    # plain progress: whole lines, one per change, ending with the final state
    lines = progress_lines(p.err, job)
    pat = re.compile(r"^job_[0-9a-f]{16}: (queued|running|succeeded|failed|canceled) \[ *\d+%\]( .*)?$")
    check(lines and all(pat.match(l) for l in lines) and "\r" not in p.err and "\033" not in p.err,
          "dynamic: off a terminal, progress is plain lines '<job>: <state> [ NN%] <message>'", p.err)
    check(lines and lines[-1].startswith(job + ": succeeded [100%]"), "dynamic: the last progress line is the final state",
          lines[-1:] if lines else p.err)
    check(all(a != b for a, b in zip(lines, lines[1:])), "dynamic: a progress line only when something changed", lines)
    check(re.search(r"job %s succeeded in [0-9.]+ s: \d+ -> \d+ bytes \(ratio [0-9.]+\), min cosine vs float 0\.9\d+"
                    % job, p.err) is not None, "dynamic: a closing line with the size ratio and the cosine", p.err)
    return job, wf


def t_skip_upload(d, cl, tmp, m, wf):
    """the second submit of the same bytes skips the upload (sha256 lookup)"""
    before = upload_counts(d)
    out = os.path.join(tmp, "out_dyn2")
    p = cl.run("submit", "--model", m["mlp"], "--config", wf, "--output", out, "--poll", "0.1")
    after = upload_counts(d)
    check(p.returncode == EXIT_OK, "skip: the second submit succeeds", (p.returncode, p.err))
    check("is already on the server as mdl_" in p.err and "upload skipped" in p.err and "uploading model" not in p.err,
          "skip: the client says the model is on the server and does not upload it", p.err)
    check(after == before, "skip: the daemon received no upload (uploads_total, upload_bytes_total unchanged)",
          (before, after))
    models = d.get_json("/v1/models")["items"]
    check(len(models) == 1, "skip: still one model row", len(models))
    job = p.out.strip()
    jj = d.get_json("/v1/jobs/" + job) or {}
    check(jj.get("model") == models[0]["id"], "skip: the job uses the stored model", (jj.get("model"), models[0]["id"]))
    ort_same(m["mlp"], os.path.join(out, "model.onnx"), "skip")
    # the lookup itself
    sha = sha256_file(m["mlp"])
    r = d.request("GET", "/v1/models?sha256=" + sha)
    items = (r.json() or {}).get("items", [])
    check(r.status == 200 and len(items) == 1 and items[0]["sha256"] == sha and items[0]["id"] == models[0]["id"],
          "lookup: GET /v1/models?sha256= finds the model", r.body[:300])
    r = d.request("GET", "/v1/models?sha256=" + "0" * 64)
    check(r.status == 200 and (r.json() or {}).get("items") == [] and (r.json() or {}).get("next") is None,
          "lookup: an unknown sha256 answers an empty page", r.body[:300])
    r = d.request("GET", "/v1/models?sha256=XYZ")
    check(r.status == 400 and r.err_field() == "sha256", "lookup: a malformed sha256 is 400 naming 'sha256'",
          r.body[:300])
    r = d.request("GET", "/v1/datasets?sha256=" + "f" * 64)
    check(r.status == 200 and (r.json() or {}).get("items") == [], "lookup: GET /v1/datasets?sha256= (miss)",
          r.body[:300])


def t_static(d, cl, tmp, m):
    """--data binds a data config (dict form, then list form) for a static job"""
    calib_sha = sha256_file(m["calib"])
    wf = write_json(os.path.join(tmp, "static.json"),
                    {"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "per_channel": True}},
                     "data_configs": {"calib": {"batch_size": 4}}})
    out = os.path.join(tmp, "out_static")
    p = cl.run("submit", "--model", m["mlp"], "--config", wf, "--data", "calib=" + m["calib"], "--output", out,
               "--poll", "0.1")
    job = p.out.strip()
    check(p.returncode == EXIT_OK, "static: submit with --data calib=... succeeds", (p.returncode, p.err))
    r = d.request("GET", "/v1/datasets?sha256=" + calib_sha)
    items = (r.json() or {}).get("items", [])
    check(r.status == 200 and len(items) == 1, "static: the dataset was uploaded (found by its sha256)", r.body[:300])
    dst = items[0]["id"] if items else None
    jj = d.get_json("/v1/jobs/" + job) or {}
    dcs = (jj.get("workflow") or {}).get("data_configs") or {}
    check(dcs.get("calib", {}).get("dataset") == dst and dcs.get("calib", {}).get("batch_size") == 4,
          "static: the job's data_configs.calib names the uploaded dataset and keeps batch_size", dcs)
    check("data config 'calib' -> dataset %s" % dst in p.err, "static: the client reports the binding", p.err)
    check_artifacts(d, job, out, "static")
    ort_same(m["mlp"], os.path.join(out, "model.onnx"), "static")
    # Olive's list form, and --json: the final job JSON on stdout
    wf2 = write_json(os.path.join(tmp, "static_list.json"),
                     {"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib",
                                       "quant_format": "QOperator"}},
                      "data_configs": [{"name": "calib", "batch_size": 2}],
                      "datasets": {"calib": "dst_0000000000000000"}})   # Olive's binding, overridden by --data
    out2 = os.path.join(tmp, "out_static_list")
    p = cl.run("submit", "--model", m["mlp"], "--config", wf2, "--data", "calib=" + m["calib"], "--output", out2,
               "--json", "--poll", "0.1")
    try:
        j = json.loads(p.out)
    except ValueError:
        j = {}
    check(p.returncode == EXIT_OK and j.get("state") == "succeeded", "static list form: succeeds; --json prints the job",
          (p.returncode, p.out[:300], p.err[-500:]))
    dcl = (j.get("workflow") or {}).get("data_configs")
    check(isinstance(dcl, list) and dcl and dcl[0].get("name") == "calib" and dcl[0].get("dataset") == dst,
          "static list form: the list entry 'calib' names the dataset", dcl)
    check("dataset 'calib.npz'" in p.err and "upload skipped" in p.err,
          "static list form: the dataset's second upload is skipped too", p.err)
    ort_same(m["mlp"], os.path.join(out2, "model.onnx"), "static list form")
    return job


def t_failures(d, cl, tmp, m):
    """invalid workflow (400 message, exit 2, nothing uploaded), a dataset that does not fit
    (the server's 400), a job that fails at run time (its error, exit 1)"""
    bad = {"passes": {"q": {"type": "OnnxDynamicQuantization", "bogus": 1}}, "limits": {"max_gpus": 1}}
    wf = write_json(os.path.join(tmp, "bad.json"), bad)
    mid = d.get_json("/v1/models")["items"][0]["id"]
    body = dict(bad, model=mid)
    srv = d.request("POST", "/v1/jobs", body=json.dumps(body), headers={"Content-Type": "application/json"})
    before = upload_counts(d)
    p = cl.run("submit", "--model", m["mlp2"], "--config", wf, "--wait")
    probs = ((srv.json() or {}).get("error", {}).get("details") or {}).get("problems") or []
    first = probs[0]["message"] if probs else srv.err_msg()
    check(srv.status == 400 and p.returncode == EXIT_USAGE and first in p.err and "passes.q.bogus" in p.err,
          "unknown parameter: the server's 400 message, naming the field, exit 2",
          (srv.status, srv.err_msg(), p.returncode, p.err))
    check(len(probs) == 2 and all(pr["message"] in p.err and pr["field"] in p.err for pr in probs),
          "invalid workflow: every problem the server lists is printed, with its field", (probs, p.err))
    check(upload_counts(d) == before and len(d.get_json("/v1/models")["items"]) == 1,
          "unknown parameter: caught before uploading the (new) model", upload_counts(d))
    # a dataset whose array does not fit the model: only the server can tell
    wfs = write_json(os.path.join(tmp, "static2.json"),
                     {"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib"}}})
    p = cl.run("submit", "--model", m["mlp"], "--config", wfs, "--data", "calib=" + m["wrong"], "--wait")
    check(p.returncode == EXIT_USAGE and "POST /v1/jobs answered 400 SHAPE" in p.err
          and "(field data_configs.calib.dataset)" in p.err and "does not fit model" in p.err,
          "dataset that does not fit: the server's 400 SHAPE message and field, exit 2", (p.returncode, p.err))
    # a job that fails while running: calibration data that is all NaN
    p = cl.run("submit", "--model", m["mlp"], "--config", wfs, "--data", "calib=" + m["nan"], "--wait", "--poll", "0.1")
    jobs = d.get_json("/v1/jobs?state=failed")["items"]
    jf = jobs[0] if jobs else {}
    err = jf.get("error") or {}
    want = "job %s failed: %s: %s" % (jf.get("id"), err.get("code"), err.get("message"))
    check(p.returncode == EXIT_FAILED and err.get("code") and want in p.err and "NaN" in err.get("message", ""),
          "run-time failure: the job's error code and message, exit 1", (p.returncode, want, p.err[-800:]))
    check("last " in p.err and "log: error job failed" in p.err, "run-time failure: the log's tail is shown", p.err[-800:])
    check(p.out.strip() == "", "run-time failure: nothing on stdout (no job id to use)", p.out)
    return jf.get("id")


def read_pty(proc, fd, timeout):
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    return out.decode("utf-8", "replace")


def t_tty(d, cl, tmp, m, wf):
    """on a terminal: one progress line rewritten in place"""
    mfd, sfd = pty.openpty()
    out = os.path.join(tmp, "out_tty")
    proc = subprocess.Popen([QUANTD, "submit", "--model", m["mlp"], "--config", wf, "--output", out, "--poll", "0.05"],
                            stdout=subprocess.PIPE, stderr=sfd, env=cl.env)
    os.close(sfd)
    txt = read_pty(proc, mfd, 60)
    os.close(mfd)
    job = proc.stdout.read().decode().strip()
    updates = txt.count("\r\033[K" + job + " ")
    check(proc.returncode == 0 and updates >= 2, "tty: the progress line is rewritten in place (\\r + erase line)",
          (proc.returncode, repr(txt[:800])))
    prog_nl = [l for l in txt.replace("\r\n", "\n").split("\n") if l.startswith(job + " ")]
    check(not prog_nl, "tty: no progress update ends with a newline (a single updating line)", prog_nl)
    check(re.search(r"\r\033\[K%s (queued|running|succeeded) \[ *\d+%%\]" % job, txt) is not None,
          "tty: the line shows the job, its state and percentage", repr(txt[:400]))
    check("downloaded " in txt and "succeeded in" in txt, "tty: notes are whole lines after the progress", repr(txt[-400:]))
    ort_same(m["mlp"], os.path.join(out, "model.onnx"), "tty")


def t_read_commands(d, cl, tmp, ok_job, failed_job):
    """jobs / status / logs with and without --json"""
    p = cl.run("jobs", "--json")
    try:
        j = json.loads(p.out)
    except ValueError:
        j = {}
    srv = d.get_json("/v1/jobs")
    ids = [x["id"] for x in j.get("items", [])]
    check(p.returncode == 0 and ids == [x["id"] for x in srv["items"]] and ok_job in ids and failed_job in ids,
          "jobs --json: the server's page, parsed", (p.returncode, p.out[:300]))
    p = cl.run("jobs")
    rows = {l.split()[0]: l.split()[1] for l in p.out.splitlines()[1:] if l.strip()}
    check(p.returncode == 0 and p.out.startswith("JOB") and rows.get(ok_job) == "succeeded"
          and rows.get(failed_job) == "failed", "jobs: a table with each job's state", p.out[:600])
    check("NaN" in [l for l in p.out.splitlines() if l.startswith(failed_job)][0],
          "jobs: a failed job's row shows its error", p.out[:600])
    p = cl.run("jobs", "--state", "failed", "--json")
    items = (json.loads(p.out) if p.returncode == 0 else {}).get("items", [])
    check(items and all(x["state"] == "failed" for x in items), "jobs --state failed: only failed jobs", p.out[:300])
    p = cl.run("jobs", "--limit", "1", "--json")
    check(p.returncode == 0 and len(json.loads(p.out)["items"]) == 1, "jobs --limit 1: one job", p.out[:300])
    p = cl.run("status", ok_job, "--json")
    srv = d.get_json("/v1/jobs/" + ok_job)
    try:
        j = json.loads(p.out)
    except ValueError:
        j = {}
    check(p.returncode == 0 and j.get("id") == ok_job and j.get("state") == "succeeded"
          and [a["sha256"] for a in j.get("artifacts", [])] == [a["sha256"] for a in srv["artifacts"]],
          "status --json: the job as the server has it", p.out[:300])
    p = cl.run("status", ok_job)
    art = srv["artifacts"][0]
    check(p.returncode == 0 and re.search(r"^state: +succeeded \(100%\)", p.out, re.M)
          and art["sha256"] in p.out and "min cosine vs float" in p.out and "ratio" in p.out,
          "status: state, size ratio, accuracy and the artifacts' sha256", p.out)
    p = cl.run("status", failed_job)
    check(p.returncode == 0 and re.search(r"^error: +\w+: .*NaN", p.out, re.M), "status: a failed job's error", p.out)
    p = cl.run("status", "job_0000000000000000")
    check(p.returncode == EXIT_USAGE and "404 NOT_FOUND" in p.err, "status of an unknown job: 404, exit 2", p.err)
    srv_lines = d.get_json("/v1/jobs/%s/log" % ok_job)["lines"]
    p = cl.run("logs", ok_job)
    got = p.out.splitlines()
    check(p.returncode == 0 and len(got) == len(srv_lines) > 3
          and all(g.endswith(s["line"]) and (" %s " % s["level"]) in g for g, s in zip(got, srv_lines)),
          "logs: every log line with its time and level", (len(got), len(srv_lines), p.out[:400]))
    p = cl.run("logs", ok_job, "--json")
    try:
        pages = [json.loads(l) for l in p.out.splitlines()]
    except ValueError:
        pages = []
    check(p.returncode == 0 and pages and all(pg.get("job") == ok_job for pg in pages)
          and sum(len(pg["lines"]) for pg in pages) == len(srv_lines),
          "logs --json: the server's pages, one JSON document per line", p.out[:300])


def t_cancel(d, cl, tmp, m, ok_job):
    """cancel a running job: the waiting submit exits 3, logs --follow ends; cancel --json"""
    wf = write_json(os.path.join(tmp, "hang.json"), {"passes": {"hangme": {"type": "OnnxDynamicQuantization"}}})
    sub = cl.popen("submit", "--model", m["mlp"], "--config", wf, "--wait", "--poll", "0.1")
    job = None
    deadline = time.time() + 30
    while time.time() < deadline and not job:
        running = d.get_json("/v1/jobs?state=running")["items"]
        job = running[0]["id"] if running else None
        time.sleep(0.1)
    check(job is not None, "cancel: the hanging job is running")
    if not job:
        sub.kill()
        return
    fol = cl.popen("logs", job, "--follow", "--poll", "0.1")
    time.sleep(0.5)
    check(fol.poll() is None, "logs --follow: still following while the job runs")
    p = cl.run("cancel", job)
    check(p.returncode == 0 and "cancel requested" in p.err, "cancel: a running job → cancel requested, exit 0",
          (p.returncode, p.err))
    try:
        sout, serr = sub.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        sub.kill()
        sout, serr = sub.communicate()
    serr = serr.decode()
    check(sub.returncode == EXIT_CANCELED and ("job %s was canceled" % job) in serr,
          "cancel: the waiting submit exits 3 naming the canceled job", (sub.returncode, serr[-500:]))
    try:
        fout, _ = fol.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        fol.kill()
        fout, _ = fol.communicate()
    fout = fout.decode()
    check(fol.returncode == 0 and "job canceled" in fout and "job started" in fout,
          "logs --follow: printed the whole log and ended with the job", (fol.returncode, fout[-400:]))
    p = cl.run("cancel", job, "--json")
    try:
        j = json.loads(p.out)
    except ValueError:
        j = {}
    check(p.returncode == 0 and j.get("id") == job and j.get("state") == "canceled"
          and (j.get("error") or {}).get("code") == "CANCELED", "cancel --json on a canceled job: the job, canceled",
          (p.returncode, p.out[:300]))
    p = cl.run("cancel", ok_job)
    check(p.returncode == EXIT_USAGE and "409 CONFLICT" in p.err, "cancel of a succeeded job: 409, exit 2",
          (p.returncode, p.err))
    # a queued job canceled with --wait
    sub = cl.popen("submit", "--model", m["mlp"], "--config", wf, "--poll", "0.1")  # no --wait: prints the id
    sout, _ = sub.communicate(timeout=30)
    job2 = sout.decode().strip()
    p = cl.run("cancel", job2, "--wait", "--poll", "0.1")
    check(p.returncode == 0 and re.search(r"job %s is canceled" % job2, p.err) is not None
          and (d.get_json("/v1/jobs/" + job2) or {}).get("state") == "canceled",
          "submit without --wait prints the id; cancel --wait waits until it is canceled", (p.returncode, p.err))


def t_tokens(d, cl, tmp, m):
    """tokens from every source; wrong and missing tokens are clear 401s"""
    p = cl.run("jobs", "--token", "wrong-token")
    check(p.returncode == EXIT_SERVER and "401 AUTH" in p.err and "refused the token given by --token" in p.err,
          "wrong token: 401 named, the token's source named, exit 4", (p.returncode, p.err))
    p = cl.run("jobs", env={"QUANTD_TOKEN": None})
    check(p.returncode == EXIT_SERVER and "401 AUTH" in p.err and "needs a token" in p.err,
          "no token: 401 and how to give one, exit 4", (p.returncode, p.err))
    tf = os.path.join(tmp, "token")
    with open(tf, "w") as f:
        f.write(TOKEN + "\n")
    p = cl.run("jobs", "--token-file", tf, env={"QUANTD_TOKEN": None})
    check(p.returncode == 0 and p.out.startswith("JOB"), "--token-file: the token from a file", (p.returncode, p.err))
    p = cl.run("jobs", env={"QUANTD_TOKEN": None, "QUANTD_TOKEN_FILE": tf})
    check(p.returncode == 0, "QUANTD_TOKEN_FILE: the token from the environment's file", (p.returncode, p.err))
    p = cl.run("jobs", "--token-file", os.path.join(tmp, "missing"), env={"QUANTD_TOKEN": None})
    check(p.returncode == EXIT_USAGE and "cannot read token file" in p.err, "a missing token file: exit 2", p.err)
    wf = os.path.join(tmp, "dyn.json")
    p = cl.run("submit", "--model", m["mlp"], "--config", wf, "--token", "wrong-token", "--wait")
    check(p.returncode == EXIT_SERVER and "401 AUTH" in p.err, "submit with a wrong token: 401, exit 4", p.err)


def t_no_server(cl, m, tmp):
    """a server that is not there, and usage errors"""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = "http://127.0.0.1:%d" % port
    wf = os.path.join(tmp, "dyn.json")
    p = cl.run("submit", "--server", url, "--model", m["mlp"], "--config", wf, "--wait")
    check(p.returncode == EXIT_SERVER and ("cannot reach the quantd server at %s" % url) in p.err and p.seconds < 10,
          "no server: 'cannot reach', exit 4, at once", (p.returncode, p.err, p.seconds))
    p = cl.run("jobs", "--json", env={"QUANTD_SERVER": url})
    check(p.returncode == EXIT_SERVER and url in p.err and p.out == "",
          "no server (QUANTD_SERVER): exit 4, nothing on stdout", (p.returncode, p.err))
    for args, what in [(["submit", "--config", wf], "submit without --model"),
                       (["submit", "--model", m["mlp"], "--config", wf, "--data", "calib"], "--data without NAME="),
                       (["submit", "--model", os.path.join(tmp, "nope.onnx"), "--config", wf], "a missing model file"),
                       (["submit", "--model", m["mlp"], "--config", os.path.join(tmp, "nope.json")], "a missing workflow"),
                       (["jobs", "--frobnicate"], "an unknown option"),
                       (["status"], "status without a job"),
                       (["logs", "a/b"], "an invalid job id"),
                       (["jobs", "--limit", "x"], "a bad --limit")]:
        p = cl.run(*args, env={"QUANTD_SERVER": url})
        check(p.returncode == EXIT_USAGE and p.err.strip(), "usage: %s → exit 2 with a message" % what,
              (p.returncode, p.err))
    p = cl.run("submit", "--help")
    check(p.returncode == 0 and "--data NAME=PATH" in p.out and "exit status" in p.out, "submit --help", p.out[:300])


class FakeServer:
    """A stand-in daemon for what a real one never does: an artifact whose bytes differ
    from its sha256, 503s while a job is polled, a list that ignores ?sha256=."""

    def __init__(self, model_sha, art_bytes, art_sha):
        import http.server
        import threading
        fs = self
        self.polls = 0
        self.requests = []

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status, obj=None, raw=None):
                body = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fs.requests.append("GET " + self.path)
                if self.path.startswith("/v1/models"):   # ignores ?sha256=: a plain page
                    self.send(200, {"items": [{"id": "mdl_other", "sha256": "1" * 64},
                                              {"id": "mdl_fake", "sha256": model_sha}],
                                    "next_cursor": None, "next": None})
                elif self.path == "/v1/jobs/job_fake":
                    fs.polls += 1
                    if fs.polls <= 2:
                        self.send(503, {"error": {"code": "BUSY", "message": "restarting", "details": {}}})
                        return
                    art = {"id": "art_1", "job": "job_fake", "kind": "model", "name": "model.onnx",
                           "size": len(art_bytes), "sha256": art_sha, "url": "/v1/artifacts/art_1"}
                    self.send(200, {"id": "job_fake", "state": "succeeded", "progress": 1.0,
                                    "artifacts": [art], "result": None})
                elif self.path == "/v1/artifacts/art_1":
                    self.send(200, raw=art_bytes)
                else:
                    self.send(404, {"error": {"code": "NOT_FOUND", "message": "no", "details": {}}})

            def do_POST(self):
                fs.requests.append("POST " + self.path)
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                if self.path == "/v1/jobs":
                    self.send(202, {"id": "job_fake", "state": "queued", "progress": 0.0})
                else:
                    self.send(500, raw=b"<html>internal</html>")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def t_fake_server(cl, m, tmp):
    """checksum of downloads, polls riding out 503s, a server without the ?sha256= filter"""
    good = b"not really a model, but bytes"
    fs = FakeServer(sha256_file(m["mlp"]), good, hashlib.sha256(b"other bytes").hexdigest())
    url = "http://127.0.0.1:%d" % fs.port
    out = os.path.join(tmp, "out_fake")
    try:
        p = cl.run("submit", "--server", url, "--model", m["mlp"], "--config", os.path.join(tmp, "dyn.json"),
                   "--output", out, "--poll", "0.05", env={"QUANTD_TOKEN": None})
    finally:
        fs.close()
    check(not any(r.startswith("POST /v1/models") for r in fs.requests) and "already on the server as mdl_fake" in p.err,
          "fake: a server that ignores ?sha256= is searched page-wise; the matching model is not uploaded",
          (fs.requests, p.err))
    check(fs.polls >= 3, "fake: two 503 answers while polling are retried", fs.polls)
    check(p.returncode == EXIT_SERVER and "artifact 'model.onnx' arrived damaged" in p.err,
          "fake: an artifact whose bytes differ from its sha256 fails with exit 4", (p.returncode, p.err))
    check(not os.path.exists(os.path.join(out, "model.onnx")) and not os.listdir(out),
          "fake: the damaged download is not kept (no model.onnx, no .part)", os.listdir(out))


def main():
    tmp = tempfile.mkdtemp(prefix="qd_client_")
    t0 = time.time()
    try:
        mdir = os.path.join(tmp, "models")
        os.makedirs(mdir)
        m = {"mlp": make_mlp(os.path.join(mdir, "mlp.onnx"), 7),
             "mlp2": make_mlp(os.path.join(mdir, "mlp2.onnx"), 8, width=96)}
        rng = np.random.default_rng(3)
        m["calib"] = os.path.join(mdir, "calib.npz")
        np.savez(m["calib"], x=rng.standard_normal((16, 64)).astype(np.float32))
        m["wrong"] = os.path.join(mdir, "wrong.npz")
        np.savez(m["wrong"], x=rng.standard_normal((4, 32)).astype(np.float32))
        m["nan"] = os.path.join(mdir, "nan.npz")
        np.savez(m["nan"], x=np.full((4, 64), np.nan, dtype=np.float32))
        env_keep = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("QUANTD_")}
        os.environ["QUANTD_FAULT_INJECT"] = "hang@'hangme'"   # only a pass named 'hangme' hangs
        try:
            d = Daemon(os.path.join(tmp, "d"), ["--workers", "2", "--token", TOKEN, "--kill-grace-seconds", "1"],
                       token=TOKEN, name="d")
            d.start()
        finally:
            del os.environ["QUANTD_FAULT_INJECT"]
            os.environ.update(env_keep)
        cl = Client("http://127.0.0.1:%d" % d.port, TOKEN)
        ok_job, wf = t_dynamic(d, cl, tmp, m)
        t_skip_upload(d, cl, tmp, m, wf)
        t_static(d, cl, tmp, m)
        failed_job = t_failures(d, cl, tmp, m)
        t_tty(d, cl, tmp, m, wf)
        t_read_commands(d, cl, tmp, ok_job, failed_job)
        t_cancel(d, cl, tmp, m, ok_job)
        t_tokens(d, cl, tmp, m)
        t_no_server(cl, m, tmp)
        t_fake_server(cl, m, tmp)
        check(d.healthy(), "the daemon serves on")
        d.stop()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check(False, "suite ran to the end", repr(e))
    finally:
        for p in e2e.STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("QD_E2E_KEEP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("client: %.1f s, %d responses checked against openapi.yaml" % (time.time() - t0, e2e.responses_checked))
    print("client: %d passed, %d failed" % (e2e.passed, e2e.failed))
    sys.exit(1 if e2e.failed else 0)


if __name__ == "__main__":
    main()
