#!/usr/bin/python3
"""Checks of tests/weightonly/run_weightonly.sh (one line per check, "weightonly: N passed,
N failed" at the end). usage: check.py WORK_DIR CASES_FILE

CASES_FILE lines: name model_dir float.onnx held.npz min_cos min_top1 max_ratio n_nbits
(min_top1 "-" = no top-1 check; n_nbits "17/2" = 17 MatMulNBits and 2 GatherBlockQuantized,
the embedding Gathers of wte / wpe then gone). WORK_DIR/NAME/ holds quantd run's output (model.onnx,
metrics.json), ort.npz (ORT on the artifact), f_<model>.npz (ORT on the float model) and
eng.npz (quantd infer on the artifact). Also checks GPTQ > RTN pairs (WORK_DIR/pairs) and
ORT's DEFAULT packing re-implemented in numpy against the bytes of the *_pack artifacts."""
import json
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper as nh

passed = failed = 0
cos_of = {}


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)


def cosine(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def model_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if f == "model.onnx" or f.endswith(".data"))


def roundf(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def ort_default_reference(W, bits, bs, sym):
    """ORT's DEFAULT block quantization (MLAS BlockwiseQuantizer, reference/ort_quantization.md
    §5) in numpy, float32 arithmetic: B [N, kb, blob], scales [N*kb], zero points."""
    K, N = W.shape
    kb = (K + bs - 1) // bs
    Wp = np.zeros((kb * bs, N), np.float32)
    Wp[:K] = W
    blk = Wp.T.reshape(N, kb, bs)
    Q = np.float32(2 ** bits - 1)
    vmin, vmax = blk.min(-1), blk.max(-1)
    if sym:
        m = np.where(np.abs(vmax) > np.abs(vmin), vmax, vmin)
        scale = (m / np.float32(-(2 ** (bits - 1)))).astype(np.float32)
        zp = np.full((N, kb), 2 ** (bits - 1), np.float32)
    else:
        mn, mx = np.minimum(vmin, 0), np.maximum(vmax, 0)
        scale = ((mx - mn) / Q).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            zp = np.where(scale != 0, np.clip(roundf(-mn / scale), 0, Q), 0).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(scale != 0, np.float32(1) / scale, 0).astype(np.float32)
    q = np.clip(roundf(blk * inv[..., None] + zp[..., None]), 0, Q).astype(np.uint8)
    if bits == 4:
        B = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
        zi = zp.astype(np.uint8)
        zrow = (kb + 1) // 2
        Z = np.zeros((N, zrow), np.uint8)
        for j in range(kb):
            Z[:, j // 2] |= (zi[:, j] << (4 * (j % 2))).astype(np.uint8)
    else:
        B = q
        Z = zp.astype(np.uint8)
    return B, scale.reshape(-1), None if sym else Z.reshape(-1)


def inc_rtn_sym_reference(W, bits, bs):
    """INC's RTN, symmetric (quant_tensor): scale 2 absmax / (2^bits - 1) (1 for a zero
    block), zero point 2^(bits-1), round half to even; short blocks padded with zero codes."""
    K, N = W.shape
    kb = (K + bs - 1) // bs
    Q = 2 ** bits - 1
    B = np.zeros((N, kb, bs * bits // 8), np.uint8)
    S = np.zeros((N, kb), np.float32)
    for j in range(kb):
        v = W[j * bs:(j + 1) * bs].T.astype(np.float32)          # [N, <= bs]
        am = np.abs(v).max(-1).astype(np.float64)
        s = (2.0 * am / Q).astype(np.float32)
        s[s == 0] = 1
        q = np.clip(np.rint(v / s[:, None] + np.float32(2 ** (bits - 1))), 0, Q).astype(np.uint8)
        qp = np.zeros((N, bs), np.uint8)
        qp[:, :v.shape[1]] = q
        B[:, j] = (qp[:, 0::2] | (qp[:, 1::2] << 4)) if bits == 4 else qp
        S[:, j] = s
    return B, S.reshape(-1), None


def check_case(work, f):
    name, mdir, fmodel, held, min_cos, min_top1, max_ratio, n_nbits = f
    d = os.path.join(work, name)
    art = os.path.join(d, "model.onnx")
    if not os.path.exists(art):
        check(False, "%s: quantd run wrote no model (%s)" % (name, open(os.path.join(d, "run.log")).read()[-300:]))
        return
    m = onnx.load(art, load_external_data=False)
    nodes = [n for n in m.graph.node if n.op_type == "MatMulNBits"]
    want_mm, _, want_g = n_nbits.partition("/")   # "17/2": MatMulNBits / GatherBlockQuantized
    check(len(nodes) == int(want_mm), "%s: %d MatMulNBits nodes (expected %s)" % (name, len(nodes), want_mm))
    gbq = [n for n in m.graph.node if n.op_type == "GatherBlockQuantized"]
    left = any(n.op_type == "Gather" and n.input[0] in ("wte", "wpe") for n in m.graph.node)
    check(len(gbq) == int(want_g or 0) and not (want_g and left),
          "%s: %d GatherBlockQuantized nodes (expected %s)" % (name, len(gbq), want_g or 0))
    ort_f = os.path.join(d, "ort.npz")
    check(os.path.exists(ort_f), "%s: ONNX Runtime loads and runs the artifact" % name)
    if not os.path.exists(ort_f):
        return
    q = np.load(ort_f)
    fl = np.load(os.path.join(work, "f_%s.npz" % os.path.basename(fmodel)))
    out = q.files[0]
    c = cosine(q[out], fl[out])
    cos_of[name] = c
    check(c >= float(min_cos), "%s: cosine of '%s' vs float in ORT %.5f >= %s" % (name, out, c, min_cos))
    if min_top1 != "-":
        t1 = float((q[out].argmax(-1) == fl[out].argmax(-1)).mean())
        check(t1 >= float(min_top1), "%s: next-token top-1 agreement in ORT %.4f >= %s" % (name, t1, min_top1))
    fb = os.path.getsize(fmodel)
    qb = model_bytes(d)
    check(qb / fb <= float(max_ratio), "%s: size %d / %d = %.4f of float <= %s" % (name, qb, fb, qb / fb, max_ratio))
    eng = os.path.join(d, "eng.npz")
    if os.path.exists(eng):
        e = np.load(eng)
        worst = max(float(np.abs(e[k] - q[k]).max() / max(1.0, np.abs(q[k]).max())) for k in q.files)
        tol = 0.1 if "acc4" in name else 1e-4   # accuracy_level 4: ORT's int8 A, the engine's float A
        check(worst <= tol, "%s: quantd's executor vs ORT on the artifact: max rel abs diff %.2e <= %g" % (name, worst, tol))
    else:
        check(False, "%s: quantd infer failed on the artifact" % name)
    met = json.load(open(os.path.join(d, "metrics.json")))
    mc = met["accuracy"]["outputs"][0].get("cosine")
    check(mc is not None and abs(mc - c) < 2e-3, "%s: metrics.json cosine %s matches ORT's %.5f" % (name, mc, c))


def check_pack(work, name, fmodel, bits, bs, sym, alg="default"):
    d = os.path.join(work, name)
    if not os.path.exists(os.path.join(d, "model.onnx")):
        check(False, "%s: no artifact" % name)
        return
    m = onnx.load(os.path.join(d, "model.onnx"))
    f = onnx.load(fmodel)
    fi = {t.name: t for t in f.graph.initializer}
    qi = {t.name: t for t in m.graph.initializer}
    fnodes = {n.output[0]: n for n in f.graph.node}
    bad, n_checked = [], 0
    for n in m.graph.node:
        if n.op_type == "GatherBlockQuantized":
            # the table's rows are MatMulNBits' B columns: ORT's DEFAULT grid on data.T, the
            # uint8 form [V, H*bits/8], scales [V, H/bs], packed zero points [V, ...]
            T = nh.to_array(fi[fnodes[n.output[0]].input[0]])
            B, S, Z = ort_default_reference(T.T.copy(), bits, bs, sym)
            a = {x.name: x.i for x in n.attribute}
            ok = np.array_equal(nh.to_array(qi[n.input[0]]).reshape(-1), B.reshape(-1)) and \
                np.array_equal(nh.to_array(qi[n.input[2]]).reshape(-1), S) and \
                (Z is None) == (len(n.input) < 4) and \
                (Z is None or np.array_equal(nh.to_array(qi[n.input[3]]).reshape(-1), Z)) and \
                a.get("bits") == bits and a.get("block_size") == bs and a.get("gather_axis") == 0 and \
                a.get("quantize_axis") == 1
            n_checked += 1
            if not ok:
                bad.append(n.name)
            continue
        if n.op_type != "MatMulNBits":
            continue
        src = fnodes[n.output[0]]
        W = nh.to_array(fi[src.input[1]])
        nbs = bs if bs > 0 else max(16, 1 << (W.shape[0] - 1).bit_length())   # -1: one block over K
        B, S, Z = ort_default_reference(W, bits, nbs, sym) if alg == "default" else \
            inc_rtn_sym_reference(W, bits, nbs)
        gotB = nh.to_array(qi[n.input[1]])
        gotS = nh.to_array(qi[n.input[2]])
        ok = gotB.shape == B.shape and np.array_equal(gotB, B) and np.array_equal(gotS.reshape(-1), S)
        if Z is not None:
            ok = ok and len(n.input) > 3 and np.array_equal(nh.to_array(qi[n.input[3]]).reshape(-1), Z)
        else:
            ok = ok and (len(n.input) < 4 or not n.input[3])
        a = {x.name: x.i for x in n.attribute}
        ok = ok and a.get("K") == W.shape[0] and a.get("N") == W.shape[1] and a.get("bits") == bits and \
            a.get("block_size") == nbs
        n_checked += 1
        if not ok:
            bad.append(n.name)
    check(n_checked > 0 and not bad, "%s: B, scales, zero points and attributes of %d nodes equal %s "
          "packing (numpy re-implementation)%s" % (name, n_checked, "ORT's DEFAULT" if alg == "default" else
                                                   "INC RTN's", "; differ: %s" % bad[:3] if bad else ""))


def main(argv):
    work, cases = argv[1], argv[2]
    for line in open(cases):
        f = line.split()
        if len(f) == 8:
            check_case(work, f)
    for line in open(os.path.join(work, "packs")):
        f = line.split()
        if len(f) in (5, 6):
            check_pack(work, f[0], f[1], int(f[2]), int(f[3]), f[4] == "sym", *f[5:])
    for line in open(os.path.join(work, "pairs")):
        better, worse, margin = line.split()
        if better in cos_of and worse in cos_of:
            check(cos_of[better] >= cos_of[worse] + float(margin),
                  "%s cosine %.5f beats %s %.5f by >= %s" % (better, cos_of[better], worse, cos_of[worse], margin))
        else:
            check(False, "%s vs %s: a result is missing" % (better, worse))
    print("weightonly-check: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
