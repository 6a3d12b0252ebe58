#!/usr/bin/python3
"""The Vitis AI rules on a quantized model, checked independently of quantd's C checker
(passes/vitis.c qd_vitis_check_model): every scale of a QuantizeLinear / DequantizeLinear /
QLinear* op is a power of two; with --dpu also: QDQ only, per tensor, int8 with zero point
0, and the DPU shift constraints (reference/inc_vitis_qnn.md §B.3).
Prints one JSON line {"scales", "qdq", "qlinear", "problems"}; exit 1 on any problem.
usage: vitis_check.py MODEL.onnx [--dpu]"""
import json, math, sys
import numpy as np
import onnx
from onnx import numpy_helper

path = sys.argv[1]
dpu = "--dpu" in sys.argv[2:]
m = onnx.load(path)
g = m.graph
init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
prod = {o: n for n in g.node for o in n.output}
cons = {}
for n in g.node:
    for i in n.input:
        cons.setdefault(i, []).append(n)
probs = []


def is_qlinear(n):
    return n.op_type.startswith("QLinear") or n.op_type in ("QGemm", "QAttention")


def is_qdq(n):
    return n.op_type in ("QuantizeLinear", "DequantizeLinear")


def pof2(v):
    v = float(v)
    return v > 0 and math.isfinite(v) and math.frexp(v)[0] == 0.5


nsc = nqdq = nql = 0
for n in g.node:
    if not (is_qdq(n) or is_qlinear(n)):
        continue
    nqdq += is_qdq(n)
    nql += is_qlinear(n)
    if dpu and is_qlinear(n):
        probs.append("%s %s: the DPU form is QDQ only" % (n.op_type, n.name))
    for k, i in enumerate(n.input):
        t = init.get(i)
        if is_qdq(n):
            sc = k == 1
        elif n.op_type == "QAttention":
            sc = k in (3, 4)
        else:
            sc = t is not None and t.dtype == np.float32
        if not sc or not i:
            continue
        if t is None:
            probs.append("scale %s of %s is not an initializer" % (i, n.name))
            continue
        nsc += 1
        bad = [float(v) for v in t.flatten() if not pof2(v)]
        if bad:
            probs.append("scale %s of %s: %g is not a power of two" % (i, n.name, bad[0]))
        if dpu and t.size != 1:
            probs.append("scale %s of %s is per channel (%d)" % (i, n.name, t.size))
    if dpu and is_qdq(n):
        z = init.get(n.input[2]) if len(n.input) > 2 else None
        if z is None or z.dtype != np.int8 or np.any(z != 0):
            probs.append("%s %s: zero point not int8 0" % (n.op_type, n.name))


# ---- DPU shift constraints, on positions pos = -log2(scale) ----
def pos_of(name):
    return int(round(-math.log2(float(init[name].flatten()[0]))))


def in_pos(t):
    p = prod.get(t)
    return pos_of(p.input[1]) if p is not None and p.op_type == "DequantizeLinear" else None


def is_relu(n):
    return n.op_type == "Relu" or (n.op_type == "LeakyRelu" and any(
        a.name == "alpha" and abs(a.f - 0.1) < 1e-6 for a in n.attribute))


def out_pos(t, depth=0):
    c = cons.get(t, [])
    for n in c:
        if n.op_type == "QuantizeLinear" and n.input[0] == t:
            return pos_of(n.input[1])
    if len(c) == 1 and depth == 0 and is_relu(c[0]):
        return out_pos(c[0].output[0], 1)
    return None


def need(cond, n, what, v, lo, hi):
    if not cond:
        probs.append("%s %s: %s %d outside [%d, %d]" % (n.op_type, n.name, what, v, lo, hi))


shifts = {"conv": 0, "add": 0, "sigmoid": 0, "concat": 0, "pool": 0}
if dpu and not probs:
    for n in g.node:
        if n.op_type == "Sigmoid":
            ip, op = in_pos(n.input[0]), out_pos(n.output[0], 1)
            if ip is None or op is None:
                continue
            shifts["sigmoid"] += 1
            need(0 <= ip <= 15, n, "input pos", ip, 0, 15)
            need(op >= 7, n, "output pos", op, 7, 127)
            need(0 <= 14 + ip - op <= 31, n, "shift", 14 + ip - op, 0, 31)
        elif n.op_type in ("Add", "Mul") and len(n.input) == 2:
            a, b, o = in_pos(n.input[0]), in_pos(n.input[1]), out_pos(n.output[0])
            if a is None or b is None:
                continue
            shifts["add"] += 1
            need(abs(a - b) <= 15, n, "shift_read", abs(a - b), 0, 15)
            if o is not None:
                need(-15 <= min(a, b) - o <= 15, n, "shift_write", min(a, b) - o, -15, 15)
        elif n.op_type in ("Conv", "ConvTranspose", "Gemm"):
            ip, wp, op = in_pos(n.input[0]), in_pos(n.input[1]), out_pos(n.output[0])
            if ip is None or wp is None or op is None:
                continue
            shifts["conv"] += 1
            sc = wp + ip - op
            need(0 <= sc <= 16, n, "shift_cut", sc, 0, 16)
            bp = in_pos(n.input[2]) if len(n.input) > 2 else None
            if bp is not None:
                lo = min(0, sc - 16)
                need(lo <= wp + ip - bp <= 16, n, "shift_bias", wp + ip - bp, lo, 16)
        elif n.op_type == "Concat":
            ps = [in_pos(i) for i in n.input] + [out_pos(n.output[0])]
            ps = [p for p in ps if p is not None]
            if ps:
                shifts["concat"] += 1
                need(max(ps) == min(ps), n, "pos spread", max(ps) - min(ps), 0, 0)
        elif n.op_type in ("MaxPool", "AveragePool", "GlobalAveragePool"):
            ip, op = in_pos(n.input[0]), out_pos(n.output[0])
            if ip is not None and op is not None:
                shifts["pool"] += 1
                need(ip == op, n, "ipos - opos", ip - op, 0, 0)
print(json.dumps({"scales": nsc, "qdq": nqdq, "qlinear": nql, "dpu_checked": shifts if dpu else None,
                  "problems": probs[:10]}))
sys.exit(1 if probs else 0)
