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
print(json.dumps({"scales": nsc, "qdq": nqdq, "qlinear": nql, "problems": probs[:10]}))
sys.exit(1 if probs else 0)
