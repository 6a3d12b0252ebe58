#!/usr/bin/python3
"""Compares the outputs of the quantized test models (see make_quant_models.py).

usage: /usr/bin/python3 tests/qops/check.py MODEL_DIR RESULT_DIR [--no-engine]

For every case NAME in MODEL_DIR/manifest.json, RESULT_DIR holds NAME.ort.npz (ONNX Runtime
on the quantized model), NAME.f.npz (ONNX Runtime on the float model) and NAME.eng.npz
(build/quantd infer; NAME.eng.err holds its stderr when it failed). Checks:
  engine vs ORT per output: "q" and "int" exact, "q1" within 1 code (the manifest
  says why), "exact" floats bit for bit, "float" within FLOAT_RTOL relative (to the output's
  largest magnitude), "fa" within the case's absolute tolerance (the manifest says why);
  ORT quantized vs ORT float per "float" entry, at the entry's tolerance.
Prints one line per failed check and "qops: N passed, N failed"; exit 1 on failure.
"""
import json
import os
import sys

import numpy as np


# "float" outputs, engine vs ORT, relative to the output's largest magnitude (at least 1):
# measured worst 2.7e-7 (qattention_nomask; float32 accumulation order)
FLOAT_RTOL = 1e-6


def load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def cmp_engine(name, out, eng, ort):
    k, step = out["kind"], out["step"]
    if k not in ("q", "q1", "int", "exact", "float", "fa"):
        return "%s: '%s' has unknown kind '%s'" % (name, out["name"], k)
    if k in ("q1", "fa") and not out.get("why"):
        return "%s: '%s' tolerance '%s' without a reason" % (name, out["name"], k)
    e, o = eng.get(out["name"]), ort.get(out["name"])
    if e is None:
        return "%s: engine output '%s' missing" % (name, out["name"])
    if o is None:
        return "%s: ONNX Runtime output '%s' missing" % (name, out["name"])
    if e.shape != o.shape:
        return "%s: '%s' shape %s vs ORT %s" % (name, out["name"], e.shape, o.shape)
    if e.dtype != o.dtype:
        return "%s: '%s' dtype %s vs ORT %s" % (name, out["name"], e.dtype, o.dtype)
    if e.size == 0:
        return None
    if k in ("q", "q1", "int"):
        e, o = np.atleast_1d(e), np.atleast_1d(o)
        d = np.abs(e.astype(np.int64) - o.astype(np.int64))
        tol = 1 if k == "q1" else 0
        if d.max() > tol:
            i = np.unravel_index(np.argmax(d), d.shape)
            return "%s: '%s' differs by %d codes at %s (engine %d, ORT %d; %d elements off)" % (
                name, out["name"], d.max(), i, e[i], o[i], int((d > tol).sum()))
        return None
    ef, of = np.atleast_1d(e.astype(np.float64)), np.atleast_1d(o.astype(np.float64))
    if not np.all(np.isfinite(ef) == np.isfinite(of)):
        return "%s: '%s' non-finite values differ" % (name, out["name"])
    if k == "exact":
        same = (ef == of) | (np.isnan(ef) & np.isnan(of))
        if not np.all(same):
            i = np.unravel_index(np.argmin(same), same.shape)
            return "%s: '%s' not bit-identical at %s (engine %.9g, ORT %.9g; %d elements off)" % (
                name, out["name"], i, ef[i], of[i], int((~same).sum()))
        return None
    if k == "fa":
        tol = step
    else:
        tol = FLOAT_RTOL * max(1.0, float(np.max(np.abs(of))))
    d = np.abs(ef - of)
    d[~np.isfinite(d)] = 0
    if d.max() > tol:
        i = np.unravel_index(np.argmax(d), d.shape)
        return "%s: '%s' differs by %.6g > %.3g at %s (engine %.7g, ORT %.7g)" % (
            name, out["name"], d.max(), tol, i, ef[i], of[i])
    return None


def cmp_float(name, fc, ort, flt):
    q, f = ort.get(fc["q"]), flt.get(fc["f"])
    if q is None or f is None:
        return "%s: float check '%s' vs '%s': output missing" % (name, fc["q"], fc["f"])
    qv, fv = q.astype(np.float64), f.astype(np.float64)
    if fc["scale"] is not None:   # saturation is part of the contract: clip the float side
        qv = (qv - fc["zp"]) * fc["scale"]
        info = np.iinfo(q.dtype)
        fv = np.clip(fv, (info.min - fc["zp"]) * fc["scale"], (info.max - fc["zp"]) * fc["scale"])
    d = np.abs(qv - fv)
    if q.shape != f.shape or d.max() > fc["atol"]:
        return "%s: ORT quantized '%s' vs float '%s' differ by %.6g > %.6g" % (
            name, fc["q"], fc["f"], d.max() if q.shape == f.shape else -1, fc["atol"])
    return None


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    mdir, rdir = sys.argv[1], sys.argv[2]
    engine = "--no-engine" not in sys.argv
    only = os.environ.get("QOPS_ONLY")
    with open(os.path.join(mdir, "manifest.json")) as f:
        manifest = json.load(f)
    passed = failed = 0
    for c in manifest:
        name = c["name"]
        if only and only not in name:
            continue
        msgs = []
        try:
            ort = load(os.path.join(rdir, name + ".ort.npz"))
            flt = load(os.path.join(rdir, name + ".f.npz"))
        except (OSError, ValueError) as e:
            msgs.append("%s: no ONNX Runtime result (%s)" % (name, e))
            ort = flt = None
        if ort is not None:
            for fc in c["float"]:
                m = cmp_float(name, fc, ort, flt)
                msgs.append(m) if m else None
                passed += m is None
        if engine and ort is not None:
            ep = os.path.join(rdir, name + ".eng.npz")
            if not os.path.exists(ep):
                err = ""
                try:
                    with open(os.path.join(rdir, name + ".eng.err")) as f:
                        err = f.read().strip().splitlines()[-1]
                except (OSError, IndexError):
                    pass
                msgs.append("%s: engine failed: %s" % (name, err))
            else:
                eng = load(ep)
                for out in c["outputs"]:
                    m = cmp_engine(name, out, eng, ort)
                    msgs.append(m) if m else None
                    passed += m is None
        for m in msgs:
            print("FAIL " + m)
        failed += len(msgs)
    print("qops: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
