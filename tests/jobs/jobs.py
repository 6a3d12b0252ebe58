#!/usr/bin/python3
"""Jobs in supervised child processes: a job's process may crash, hang, exceed its limits
or be canceled, and the daemon serves on with a reason on the job.

Runs real `quantd serve` daemons (127.0.0.1:0, temp data dirs). Faults are made two ways:
hostile models (a node without outputs, a Loop that never ends, a tensor of 10^12
elements, an intermediate larger than the memory limit), and the daemon's test hook
QUANTD_FAULT_INJECT, read only by the job's process ("crash@'name'" makes the job whose
pass is named 'name' dereference NULL at that pass, "hang@", "exit@..:N", "alloc@..:MiB",
"write@..:MiB"; see daemon/jobexec.c).

Checks per case: the job's final state, error code and message (the signal, the phase,
the limit with its value), the attempt count (crashes are retried up to max_attempts,
limits and cancels are not), that a job running beside the faulty one succeeds and its
artifact runs in ONNX Runtime like the float model, that the daemon answers /healthz
all along, that no job process outlives its job, a cancel, a shutdown, or a kill -9 of
the daemon, and submit-time validation of the workflow's "limits".

usage: /usr/bin/python3 tests/jobs/jobs.py        (prints "jobs: N passed, N failed")
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import e2e  # noqa: E402  (Daemon, upload, submit, wait_job, check, the openapi checker)
from e2e import Daemon, check, upload, submit, wait_job  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def save(model, path):
    onnx.save(model, path)
    return path


def make_models(mdir):
    """mlp: a real float model the dynamic pass quantizes; hostile ones the engine must refuse."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32) * 0.1, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((128, 16)).astype(np.float32) * 0.1, "w2")
    b1 = numpy_helper.from_array(rng.standard_normal(128).astype(np.float32) * 0.1, "b1")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
         helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])], [w1, w2, b1])
    m = {"mlp": save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                     os.path.join(mdir, "mlp.onnx"))}
    # a bigger one: runs long enough (several seconds) to be running while others crash
    ws = [numpy_helper.from_array(rng.standard_normal((512, 512)).astype(np.float32) * 0.05, "w%d" % i)
          for i in range(24)]
    nodes, prev = [], "x"
    for i in range(24):
        nodes.append(helper.make_node("MatMul", [prev, "w%d" % i], ["m%d" % i]))
        nodes.append(helper.make_node("Tanh", ["m%d" % i], ["t%d" % i]))
        prev = "t%d" % i
    g = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 512])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [256, 512])], ws)
    m["deep"] = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                     os.path.join(mdir, "deep.onnx"))
    # one Mean node whose output list is empty (the 99-byte model of the bug report)
    g = helper.make_graph([helper.make_node("Mean", ["x"], [])], "nomean",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])])
    m["no_output"] = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                          os.path.join(mdir, "no_output.onnx"))
    # ConstantOfShape to 10^12 floats
    shape = numpy_helper.from_array(np.array([1000000, 1000000], dtype=np.int64), "shape")
    g = helper.make_graph([helper.make_node("ConstantOfShape", ["shape"], ["big"]),
                           helper.make_node("Add", ["x", "big"], ["y"])], "huge",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    m["huge"] = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                     os.path.join(mdir, "huge.onnx"))
    # Expand to 1.5 GiB: under every engine tensor cap, over a 1 GiB memory limit
    shp = numpy_helper.from_array(np.array([20000, 20000], dtype=np.int64), "shp")
    g = helper.make_graph([helper.make_node("Expand", ["x", "shp"], ["e"]),
                           helper.make_node("ReduceSum", ["e"], ["y"], keepdims=0)], "expand",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [shp])
    m["expand"] = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                       os.path.join(mdir, "expand.onnx"))
    # Loop with trip count 2^62 and a body that only counts
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")])
    trip = numpy_helper.from_array(np.array(1 << 62, dtype=np.int64), "trip")
    cond = numpy_helper.from_array(np.array(True), "cond")
    g = helper.make_graph([helper.make_node("Loop", ["trip", "cond", "x"], ["y"], body=body)], "forever",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [trip, cond])
    m["loop"] = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                     os.path.join(mdir, "loop.onnx"))
    return m


def job_processes(daemon_pid):
    """pids of `quantd job-exec` processes whose parent is daemon_pid"""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        ppid = int(st.rsplit(")", 1)[1].split()[1])
        if ppid == daemon_pid and b"job-exec" in cmd:
            out.append(int(p))
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(pred, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def job_id(r):
    j = r.json() or {}
    return j.get("id")


def log_lines(d, jid):
    return [l["line"] for l in (d.get_json("/v1/jobs/%s/log" % jid) or {}).get("lines", [])]


def dyn(name="q"):
    return {name: {"type": "OnnxDynamicQuantization"}}


def t_crash_beside_a_good_job(tmp, models):
    """One job's process crashes in every attempt; a job running beside it succeeds."""
    d = Daemon(os.path.join(tmp, "d1"), ["--workers", "2", "--max-attempts", "2"], name="d1")
    os.environ["QUANTD_FAULT_INJECT"] = "crash@'crashme'"
    try:
        d.start()
    finally:
        del os.environ["QUANTD_FAULT_INJECT"]
    mid_deep = (upload(d, models["deep"]).json() or {}).get("id")
    mid = (upload(d, models["mlp"]).json() or {}).get("id")
    good = job_id(submit(d, mid_deep, dyn("good")))
    check(wait_for(lambda: (d.get_json("/v1/jobs/" + good) or {}).get("state") == "running", 20),
          "crash: the good job is running")
    bad = job_id(submit(d, mid, dyn("crashme")))
    healthy, stop = [], threading.Event()

    def poll_health():
        # until both jobs ended, and at least 20 polls (a fast machine ends them in < 1 s)
        while not stop.is_set() or len(healthy) < 20:
            healthy.append(d.healthy())
            time.sleep(0.05)
    th = threading.Thread(target=poll_health)
    th.start()
    try:
        wait_for(lambda: (d.get_json("/v1/jobs/" + bad) or {}).get("state") in ("failed", "succeeded"), 60)
        jb = d.get_json("/v1/jobs/" + bad)
        jg = wait_job(d, good, 300)
    finally:
        stop.set()
        th.join()
    err = jb.get("error") or {}
    check(jb["state"] == "failed" and err.get("code") == "CRASHED", "crash: the crashing job failed CRASHED",
          (jb["state"], err))
    msg = err.get("message", "")
    check("SIGSEGV" in msg and "while running pass 1/1 'crashme'" in msg and "attempt 2 of 2" in msg
          and "see the log" in msg, "crash: the reason names the signal, the phase and the attempt", msg)
    check(jb["attempts"] == 2, "crash: retried up to max_attempts (2), then failed", jb["attempts"])
    lg = log_lines(d, bad)
    check(sum("killed by SIGSEGV" in l for l in lg) == 2 and any("requeued for attempt 2 of 2" in l for l in lg),
          "crash: each attempt is recorded in the job log (signal, requeue)", lg[-4:])
    check(all(healthy) and len(healthy) >= 20, "crash: /healthz answered all along (%d polls)" % len(healthy))
    check(jg and jg["state"] == "succeeded", "crash: the job beside it succeeded", jg and jg.get("error"))
    arts = {a["name"]: a for a in jg.get("artifacts", [])}
    if check("model.onnx" in arts, "crash: the good job has its model artifact"):
        q = os.path.join(tmp, "deep_q.onnx")
        e2e.download(d, arts["model.onnx"]["url"], q)
        r = subprocess.run(["node", os.path.join(ROOT, "tests/e2e/ort_compare.js"), models["deep"], q,
                            "--min-cos", "0.996"], capture_output=True, text=True, timeout=300)
        # measured 0.9977 (24 MatMul+Tanh layers, dynamic int8)
        check(r.returncode == 0, "crash: the good job's artifact runs in ORT like the float model (cos >= 0.996)",
              (r.stdout + r.stderr)[-400:])
    # the daemon pid never changed and no job process is left
    check(d.proc.poll() is None and not job_processes(d.proc.pid), "crash: daemon alive, no job process left")
    # a job's process is not the daemon: the log names its pid
    pids = [int(l.split("process ")[1].split(",")[0]) for l in log_lines(d, good) if "process " in l]
    check(pids and all(p != d.proc.pid for p in pids), "crash: the good job ran in its own process", pids)
    # exit with a status but no result
    os.environ["QUANTD_FAULT_INJECT"] = "exit@'exitme':3"
    d.stop()
    d.start()
    del os.environ["QUANTD_FAULT_INJECT"]
    jx = wait_job(d, job_id(submit(d, mid, dyn("exitme"), {"limits": {}})), 60)
    err = jx.get("error") or {}
    check(jx["state"] == "failed" and err.get("code") == "CRASHED" and "exited with status 3" in err.get("message", ""),
          "exit 3: failed CRASHED 'exited with status 3'", err)
    check(d.stop() == 0, "crash: the daemon stops cleanly (exit 0)")


def t_limits_and_cancel(tmp, models):
    d = Daemon(os.path.join(tmp, "d2"), ["--workers", "2", "--max-attempts", "3", "--kill-grace-seconds", "1",
                                         "--max-job-seconds", "600", "--max-job-memory-mb", "8192",
                                         "--max-output-mb", "1024"], name="d2")
    os.environ["QUANTD_FAULT_INJECT"] = "hang@'hangme'"
    d.start()
    del os.environ["QUANTD_FAULT_INJECT"]
    mid = (upload(d, models["mlp"]).json() or {}).get("id")
    # submit-time checks of "limits"
    for lim, field, what in [({"max_job_seconds": 601}, "limits.max_job_seconds", "above the server's maximum"),
                             ({"max_job_memory_mb": 0}, "limits.max_job_memory_mb", "positive integer"),
                             ({"max_job_seconds": "10"}, "limits.max_job_seconds", "positive integer"),
                             ({"cpu": 1}, "limits.cpu", "unknown limit"), ([], "limits", "must be an object")]:
        r = submit(d, mid, dyn(), {"limits": lim})
        check(r.status == 400 and r.err_field() == field and what in r.err_msg(),
              "limits %s -> 400 naming %s" % (json.dumps(lim), field), (r.status, r.body[:200]))
    # wall time: a hanging job is stopped at max_job_seconds, failed TIMEOUT, not retried
    t0 = time.time()
    jt = wait_job(d, job_id(submit(d, mid, dyn("hangme"), {"limits": {"max_job_seconds": 2}})), 60)
    err = jt.get("error") or {}
    check(jt["state"] == "failed" and err.get("code") == "TIMEOUT" and
          "ran longer than max_job_seconds = 2" in err.get("message", "") and jt["attempts"] == 1,
          "time limit: failed TIMEOUT 'ran longer than max_job_seconds = 2', one attempt", (err, jt["attempts"]))
    check(time.time() - t0 < 15, "time limit: the job ended soon after its limit (%.1f s)" % (time.time() - t0))
    # the same with a real model: a Loop whose trip count is 2^62
    ml = (upload(d, models["loop"]).json() or {}).get("id")
    jl = wait_job(d, job_id(submit(d, ml, dyn(), {"limits": {"max_job_seconds": 3}})), 60)
    err = jl.get("error") or {}
    check(jl["state"] == "failed" and err.get("code") in ("TIMEOUT",) and "3" in err.get("message", ""),
          "Loop with trip count 2^62: failed TIMEOUT within max_job_seconds = 3", err)
    # memory: the job's process grows past its limit
    jm = wait_job(d, job_id(submit(d, mid, {"q": {"type": "OnnxDynamicQuantization"}},
                                   {"limits": {"max_job_memory_mb": 1024}})), 60)
    check(jm["state"] == "succeeded", "memory limit 1024 MiB: a normal job fits", jm.get("error"))
    os.environ["QUANTD_FAULT_INJECT"] = "alloc@'memme':4096"
    d.stop()
    d.start()
    del os.environ["QUANTD_FAULT_INJECT"]
    jm = wait_job(d, job_id(submit(d, mid, dyn("memme"), {"limits": {"max_job_memory_mb": 1024}})), 120)
    err = jm.get("error") or {}
    check(jm["state"] == "failed" and err.get("code") == "LIMIT" and
          "exceeded the memory limit of 1024 MiB" in err.get("message", "") and jm["attempts"] == 1,
          "memory limit: failed LIMIT 'exceeded the memory limit of 1024 MiB', not retried", (err, jm["attempts"]))
    # a real model whose intermediate (1.5 GiB) is above the job's memory limit
    me = (upload(d, models["expand"]).json() or {}).get("id")
    je = wait_job(d, job_id(submit(d, me, dyn(), {"limits": {"max_job_memory_mb": 1024}})), 120)
    err = je.get("error") or {}
    check(je["state"] == "failed" and err.get("code") == "LIMIT" and "1024 MiB" in err.get("message", ""),
          "Expand to 1.5 GiB under a 1 GiB memory limit: failed LIMIT naming the limit", err)
    # output size
    os.environ["QUANTD_FAULT_INJECT"] = "write@'bigout':64"
    d.stop()
    d.start()
    del os.environ["QUANTD_FAULT_INJECT"]
    jo = wait_job(d, job_id(submit(d, mid, dyn("bigout"), {"limits": {"max_output_mb": 16}})), 60)
    err = jo.get("error") or {}
    check(jo["state"] == "failed" and err.get("code") == "LIMIT" and
          "exceeded the output size limit of 16 MiB" in err.get("message", ""),
          "output limit: failed LIMIT 'exceeded the output size limit of 16 MiB'", err)
    check(d.healthy() and d.stop() == 0, "limits: the daemon served on and stops cleanly")

    # cancel kills a job whose process ignores SIGTERM (SIGKILL after kill_grace_seconds)
    os.environ["QUANTD_FAULT_INJECT"] = "hang@'hangme'"
    d.start()
    del os.environ["QUANTD_FAULT_INJECT"]
    jid = job_id(submit(d, mid, dyn("hangme")))
    kids = wait_for(lambda: (d.get_json("/v1/jobs/" + jid) or {}).get("state") == "running" and
                    job_processes(d.proc.pid), 20)
    check(kids and len(kids) == 1, "cancel: the job runs in one child process of the daemon", kids)
    time.sleep(0.5)
    t0 = time.time()
    r = d.request("POST", "/v1/jobs/%s/cancel" % jid)
    check(r.status == 202, "cancel a running job -> 202", r.status)
    jc = wait_job(d, jid, 30)
    check(jc["state"] == "canceled", "cancel: the hanging job ends canceled", jc["state"])
    check(time.time() - t0 < 8, "cancel: within the kill grace period (%.1f s)" % (time.time() - t0))
    check(kids and not any(alive(p) for p in kids), "cancel: the job's process is gone", kids)
    # shutdown: a hanging job is killed after the grace period, requeued, and runs after restart
    jid = job_id(submit(d, mid, dyn("hangme")))
    kids = wait_for(lambda: job_processes(d.proc.pid), 20)
    d.proc.send_signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        rc = "timeout"
    check(rc == 0, "shutdown with a hanging job: daemon exits 0", rc)
    check(kids and not any(alive(p) for p in kids), "shutdown: no job process outlives the daemon", kids)
    d.args = [a for a in d.args]
    d.start()  # no fault hook now: the requeued job runs normally
    js = wait_job(d, jid, 120)
    check(js["state"] == "succeeded" and js["attempts"] == 2,
          "shutdown: the job was requeued and succeeds after the restart (attempt 2)",
          (js["state"], js["attempts"], js.get("error")))
    d.stop()


def t_kill9(tmp, models):
    """kill -9 of the daemon takes the job's process with it (PR_SET_PDEATHSIG)."""
    d = Daemon(os.path.join(tmp, "d3"), ["--workers", "1"], name="d3")
    os.environ["QUANTD_FAULT_INJECT"] = "hang@'hangme'"
    d.start()
    del os.environ["QUANTD_FAULT_INJECT"]
    mid = (upload(d, models["mlp"]).json() or {}).get("id")
    jid = job_id(submit(d, mid, dyn("hangme")))
    kids = wait_for(lambda: job_processes(d.proc.pid), 20)
    check(bool(kids), "kill -9: the job's process runs", kids)
    d.kill9()
    gone = wait_for(lambda: not any(alive(p) for p in kids), 5)
    check(kids and gone, "kill -9 of the daemon: the job's process dies with it", kids)
    d.start()
    j = wait_job(d, jid, 120)
    check(j["state"] == "succeeded" and j["attempts"] == 2, "kill -9: the job is recovered and succeeds",
          (j["state"], j["attempts"]))
    d.stop()


def t_hostile_models(tmp, models):
    """Hostile models (tests/robust/make_models.py: the cases quantd run is asked about) fail
    their REST job with the engine's reason, not a crash, or are refused at upload with a
    reason; the daemon serves on."""
    d = Daemon(os.path.join(tmp, "d4"), ["--workers", "2"], name="d4")
    d.start()
    rdir = os.path.join(tmp, "robust")
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/robust/make_models.py"), rdir],
                       capture_output=True, text=True, timeout=600)
    cases = []
    if check(r.returncode == 0, "hostile: tests/robust/make_models.py wrote the models", r.stderr[-300:]):
        with open(os.path.join(rdir, "cases.tsv")) as f:
            for line in f:
                name, expect, regex, flags, run, run_regex = line.rstrip("\n").split("\t")
                if expect == "error" and run == "run":
                    cases.append(name)
    cases.append("huge")  # and this suite's own: ConstantOfShape to 10^12 floats
    check(len(cases) >= 12, "hostile: %d cases" % len(cases), cases)
    jobs = {}
    for key in cases:
        path = models[key] if key in models else os.path.join(rdir, key + ".onnx")
        r = upload(d, path)
        if r.status != 201:
            check(r.status == 400 and r.err_msg(), "hostile %s: refused at upload with a reason" % key,
                  (r.status, r.body[:200]))
            continue
        lim = {"limits": {"max_job_seconds": 5}} if "loop" in key else {}
        jobs[key] = job_id(submit(d, r.json()["id"], dyn(), lim))
    for key, jid in jobs.items():
        j = wait_job(d, jid, 120) or {}
        err = j.get("error") or {}
        check(j.get("state") == "failed" and err.get("code") not in (None, "CRASHED") and err.get("message")
              and j.get("attempts") == 1,
              "hostile %s: the job failed %s with a reason (not a crash): %s" % (key, err.get("code"),
                                                                                  (err.get("message") or "")[:90]),
              (j.get("state"), err, j.get("attempts")))
    check(d.healthy() and d.proc.poll() is None, "hostile: the daemon served on (%d jobs)" % len(jobs))
    d.stop()


OLIVE_FILE = {
    # the shape of Olive's examples: legacy "config" nesting, engine block with a search
    # strategy, data_configs list, named evaluators, systems, an Olive-only pass, QUInt8 names
    "input_model": {"type": "ONNXModel", "config": {"model_path": "models/mlp.onnx"}},
    "systems": {"local_system": {"type": "LocalSystem", "config": {"accelerators": [{"device": "cpu"}]}}},
    "data_configs": [{"name": "calib_data", "type": "HuggingfaceContainer",
                      "dataloader_config": {"batch_size": 4}}],
    "evaluators": {"common_evaluator": {"metrics": [{"name": "latency", "type": "latency",
                                                     "sub_types": [{"name": "avg"}]}]}},
    "passes": {
        "conversion": {"type": "OnnxConversion", "config": {"target_opset": 13}},
        "quantization": {"type": "OnnxStaticQuantization",
                         "config": {"data_config": "calib_data", "quant_format": "QDQ",
                                    "activation_type": "QUInt8", "weight_type": "QInt8",
                                    "per_channel": True}},
    },
    "engine": {"search_strategy": {"execution_order": "joint", "sampler": "sequential"},
               "evaluator": "common_evaluator", "host": "local_system", "target": "local_system",
               "cache_dir": "cache", "output_dir": "models/mlp_q"},
    "unsupported_passes": "skip",
}


def t_olive_file(tmp, models):
    """A real-shaped Olive file runs with only its model and data bound; what quantd does not
    use is listed in metrics.json "ignored" and the job log; every problem comes at once."""
    d = Daemon(os.path.join(tmp, "d5"), ["--workers", "1"], name="d5")
    d.start()
    mid = (upload(d, models["mlp"]).json() or {}).get("id")
    import io
    buf = io.BytesIO()
    rng = np.random.default_rng(3)
    np.savez(buf, x=rng.standard_normal((32, 64)).astype(np.float32))
    r = e2e.upload_ds(d, buf.getvalue(), name="calib.npz")
    dsid = (r.json() or {}).get("id")
    check(r.status == 201 and dsid, "olive: calibration dataset uploaded", r.body[:200])
    body = dict(OLIVE_FILE, model=mid, datasets={"calib_data": dsid})
    r = d.request("POST", "/v1/jobs", body=json.dumps(body), headers={"Content-Type": "application/json"})
    check(r.status == 202, "olive: the Olive file is accepted with model and datasets bound", r.body[:400])
    j = wait_job(d, job_id(r), 120) or {}
    check(j.get("state") == "succeeded", "olive: the job succeeds", j.get("error"))
    arts = {a["name"]: a for a in j.get("artifacts", [])}
    metrics = d.get_json(arts["metrics.json"]["url"]) if "metrics.json" in arts else {}
    ign = {x["field"]: x["why"] for x in (metrics or {}).get("ignored", [])}
    # the named evaluator runs (search/eval.c): not ignored
    want = ["systems", "engine.host", "engine.target",
            "engine.cache_dir", "engine.output_dir", "input_model.config.model_path", "passes.conversion"]
    check(all(w in ign and ign[w] for w in want) and len(ign) == len(want),
          "olive: metrics.json lists every ignored key with its reason", sorted(ign))
    check("skipped" in ign.get("passes.conversion", ""), "olive: the OnnxConversion pass is reported skipped")
    # engine.search_strategy runs a search: its objectives are the evaluator's
    se = (metrics or {}).get("search") or {}
    lat = [(se.get("best") or {}).get("values", {}).get("latency-avg"), (se.get("baseline") or {}).get("latency-avg")]
    check([o.get("key") for o in se.get("objectives", [])] == ["latency-avg"] and
          all(isinstance(x, float) and x > 0 for x in lat),
          "olive: engine.evaluator's latency metric measured on the best trial and the float model (ms)",
          (se.get("objectives"), lat))
    lg = log_lines(d, j.get("id", ""))
    check(sum(l.startswith("ignored '") for l in lg) == len(want), "olive: the job log has one line per ignored key",
          [l for l in lg if l.startswith("ignored")][:3])
    passes = [p["name"] for p in (metrics or {}).get("passes", [])]
    check(passes == ["quantization"], "olive: only the quantization pass ran", passes)
    if check("model.onnx" in arts, "olive: model artifact"):
        q = os.path.join(tmp, "olive_q.onnx")
        e2e.download(d, arts["model.onnx"]["url"], q)
        r2 = subprocess.run(["node", os.path.join(ROOT, "tests/e2e/ort_compare.js"), models["mlp"], q,
                             "--min-cos", "0.999", "--shape", "x=4,64"], capture_output=True, text=True, timeout=300)
        check(r2.returncode == 0, "olive: the static QDQ artifact runs in ORT like the float model (cos >= 0.999)",
              (r2.stdout + r2.stderr)[-300:])
    # without "unsupported_passes": "skip" the Olive-only pass is named as such
    body = dict(OLIVE_FILE, model=mid, datasets={"calib_data": dsid})
    del body["unsupported_passes"]
    r = d.request("POST", "/v1/jobs", body=json.dumps(body), headers={"Content-Type": "application/json"})
    check(r.status == 400 and r.err_field() == "passes.conversion.type" and
          "is an Olive pass quantd does not run" in r.err_msg(), "olive: OnnxConversion named as an Olive pass quantd "
          "does not run", r.body[:300])
    # every problem at once
    bad = {"model": mid, "colour": 1, "engine": {"speed": 2}, "input_model": {"type": "HfModel"},
           "passes": {"a": {"type": "OnnxDynamicQuantization", "per_chanel": True, "bogus": 1},
                      "b": {"type": "Foo"}}}
    r = d.request("POST", "/v1/jobs", body=json.dumps(bad), headers={"Content-Type": "application/json"})
    probs = ((r.json() or {}).get("error", {}).get("details") or {}).get("problems") or []
    fields = sorted(p["field"] for p in probs)
    check(r.status == 400 and fields == sorted(["colour", "engine.speed", "input_model.type", "passes.a.per_chanel",
                                                "passes.a.bogus", "passes.b.type"]) and "5 more problems" in r.err_msg(),
          "olive: a bad workflow gets every problem at once in error.details.problems", (r.status, fields, r.err_msg()))
    hf = [p for p in probs if p["field"] == "input_model.type"]
    check(hf and "convert the model to ONNX" in hf[0]["message"], "olive: an HfModel input says to upload ONNX", hf)
    d.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="qd_jobs_")
    try:
        mdir = os.path.join(tmp, "models")
        os.makedirs(mdir)
        models = make_models(mdir)
        t_crash_beside_a_good_job(tmp, models)
        t_limits_and_cancel(tmp, models)
        t_kill9(tmp, models)
        t_hostile_models(tmp, models)
        t_olive_file(tmp, models)
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
    print("jobs: %d passed, %d failed" % (e2e.passed, e2e.failed))
    return 1 if e2e.failed else 0


if __name__ == "__main__":
    sys.exit(main())
