#!/usr/bin/python3
"""The web page (web/, served by the daemon at / and /ui/<file>) in headless Chromium.

This script makes the inputs (a small MLP with python3-onnx, a calibration .npz, a second
model), starts two real daemons (127.0.0.1:0, temporary data dirs; one open with
QUANTD_FAULT_INJECT=hang@'hangme' so that a pass named 'hangme' hangs until canceled, one
with a bearer token), checks the page's HTTP answers (types, ETag/304, CSP, 404, public
without the token), then runs tests/web/web.js (playwright-core driving /usr/bin/chromium)
which does everything a user does through the page and compares what it shows with the
API. A missing chromium or playwright-core fails the suite (it never skips).

usage: /usr/bin/python3 tests/web/web.py     (prints "web: N passed, N failed")
env: QUANTD (binary, default $B/quantd), CHROMIUM (default /usr/bin/chromium),
     QD_E2E_KEEP=1 keeps the temp dir (screenshots in it: web-*.png).
"""
import json
import os
import re
import shutil
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

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = os.path.join(ROOT, "tests", "ort", "node_modules", "playwright-core")
TOKEN = "web-suite-token"


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


def t_http(d, dt):
    """the page's files over plain HTTP"""
    r = d.request("GET", "/")
    body = r.body.decode("utf-8", "replace")
    check(r.status == 200 and (r.header("Content-Type") or "").startswith("text/html") and "ui/app.js" in body,
          "GET / answers the page (text/html, loads ui/app.js)", (r.status, r.header("Content-Type"), body[:200]))
    with open(os.path.join(ROOT, "web", "index.html"), "rb") as f:
        check(r.body == f.read(), "GET / is web/index.html byte for byte (built into the binary)")
    csp = (r.header("Content-Security-Policy") or "")
    check("script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp,
          "the page has a CSP without inline scripts", csp)
    etag = r.header("ETag")
    r2 = d.request("GET", "/", headers={"If-None-Match": etag or '"x"'})
    check(etag and r2.status == 304 and not r2.body, "If-None-Match with the page's ETag -> 304", (etag, r2.status))
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg+xml")):
        r = d.request("GET", "/ui/" + name)
        with open(os.path.join(ROOT, "web", name), "rb") as f:
            want = f.read()
        check(r.status == 200 and (r.header("Content-Type") or "").startswith(ctype) and r.body == want,
              "GET /ui/%s is web/%s (%s)" % (name, name, ctype), (r.status, r.header("Content-Type"), len(r.body)))
        check(r.header("X-Content-Type-Options") == "nosniff", "GET /ui/%s: nosniff" % name)
    r = d.request("GET", "/ui/nope.js")
    check(r.status == 404 and r.err_code() == "NOT_FOUND" and "nope.js" in r.json()["error"]["message"],
          "GET /ui/<unknown> -> 404 naming the file", r.body[:200])
    r = d.request("GET", "/ui/..%2fMakefile")
    check(r.status == 404, "GET /ui/ with a path outside the page -> 404", r.status)
    # with a token the page itself stays public (it asks for the token), /v1 does not
    r = dt.request("GET", "/", token=False)
    check(r.status == 200 and b"ui/app.js" in r.body, "with --token, GET / needs no token", r.status)
    r = dt.request("GET", "/ui/app.js", token=False)
    check(r.status == 200, "with --token, GET /ui/app.js needs no token", r.status)
    r = dt.request("GET", "/v1/jobs", token=False)
    check(r.status == 401, "with --token, /v1 still needs it", r.status)


def main():
    tmp = tempfile.mkdtemp(prefix="qd_web_")
    t0 = time.time()
    node_res = None
    try:
        have_chromium = os.access(CHROMIUM, os.X_OK)
        have_pw = os.path.isfile(os.path.join(PLAYWRIGHT, "package.json"))
        check(have_chromium, "chromium is installed at %s (scripts/install-deps.sh installs Debian's chromium)" % CHROMIUM)
        check(have_pw, "playwright-core is in tests/ort/node_modules (scripts/install-deps.sh: npm ci)")
        mdir = os.path.join(tmp, "inputs")
        os.makedirs(mdir)
        inputs = {"model": make_mlp(os.path.join(mdir, "mlp.onnx"), 5),
                  "model2": make_mlp(os.path.join(mdir, "mlp2.onnx"), 6, width=96)}
        rng = np.random.default_rng(9)
        inputs["calib"] = os.path.join(mdir, "calib.npz")
        np.savez(inputs["calib"], x=rng.standard_normal((16, 64)).astype(np.float32))

        env_keep = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("QUANTD_")}
        os.environ["QUANTD_FAULT_INJECT"] = "hang@'hangme'"   # only a pass named 'hangme' hangs
        try:
            d = Daemon(os.path.join(tmp, "d"), ["--workers", "2", "--kill-grace-seconds", "1"], name="d")
            d.start()
        finally:
            del os.environ["QUANTD_FAULT_INJECT"]
        dt = Daemon(os.path.join(tmp, "dt"), ["--workers", "1", "--token", TOKEN], token=TOKEN, name="dt")
        dt.start()
        os.environ.update(env_keep)
        t_http(d, dt)
        if have_chromium and have_pw:
            node_res = run_browser(d, dt, tmp, inputs)
        check(d.healthy() and dt.healthy(), "both daemons still serve")
        check(d.stop() == 0, "the daemon stops cleanly")
        check(dt.stop() == 0, "the token daemon stops cleanly")
    except Exception as e:  # a crash of the suite is a failure, not a silent pass
        import traceback
        traceback.print_exc()
        check(False, "suite ran to the end", repr(e))
    finally:
        for pr in e2e.STARTED:
            if pr.poll() is None:
                pr.kill()
                pr.wait()
        if os.environ.get("QD_E2E_KEEP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    passed, failed = e2e.passed, e2e.failed
    if node_res:
        passed += node_res[0]
        failed += node_res[1]
    print("web: %.1f s, %d responses checked against openapi.yaml" % (time.time() - t0, e2e.responses_checked))
    print("web: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def run_browser(d, dt, tmp, inputs):
    """tests/web/web.js in chromium; its (passed, failed) or None when it did not finish"""
    cfg = {"url": "http://127.0.0.1:%d/" % d.port, "token_url": "http://127.0.0.1:%d/" % dt.port,
           "token": TOKEN, "chromium": CHROMIUM, "playwright": PLAYWRIGHT, "tmp": tmp,
           "inputs": inputs, "keep_screenshot": os.environ.get("QD_WEB_SCREENSHOT", "")}
    cfg_path = os.path.join(tmp, "web-config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.run(["node", os.path.join(HERE, "web.js"), cfg_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
    out = p.stdout.decode("utf-8", "replace")
    sys.stdout.write(out)
    m = re.search(r"^browser: (\d+) passed, (\d+) failed$", out, re.M)
    res = (int(m.group(1)), int(m.group(2))) if m else None
    check(res is not None and p.returncode == (1 if res[1] else 0),
          "the browser script ran to its end (exit %d)" % p.returncode)
    return res


if __name__ == "__main__":
    main()
