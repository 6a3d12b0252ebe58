#!/usr/bin/python3
"""Checks of tests/inc/run_inc.sh. One line per check ("ok   ..." / "FAIL ..."), and
"inc-check: N passed, N failed" at the end.

usage: check.py quality WORK CASES   CASES lines: "name float_outputs.npz metric min" — WORK/name/ort.npz
                                     (ONNX Runtime on the artifact) against ORT on the float model:
                                     metric cosine (every output, flattened: the lowest) or top1
                                     (argmax agreement of the first output); WORK/pairs lines
                                     "better worse margin": better's figure >= worse's + margin
       check.py graph NAME MODEL EXPR [FLOAT]   EXPR (python) over: ops (op type counts), node (name -> node),
                                     producer (tensor -> node), consumers (tensor -> nodes), inits
                                     (initializer names -> TensorProto), floatnode(name) (not a
                                     QLinear / integer op, no constant input dequantized); with
                                     FLOAT: fnodes (its nodes in order), backbone (its Conv / MatMul /
                                     Gemm names in order)"""
import collections
import os
import sys

import numpy as np
import onnx

passed = failed = 0


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


def quality(work, cases):
    fig = {}
    for line in open(cases):
        f = line.split()
        if len(f) != 4:
            continue
        name, fl, metric, lo = f[0], f[1], f[2], float(f[3])
        ort = os.path.join(work, name, "ort.npz")
        check(os.path.exists(ort), "%s: ONNX Runtime loads and runs the artifact" % name)
        if not os.path.exists(ort):
            continue
        q, r = np.load(ort), np.load(fl)
        if metric == "cosine":
            v = min(cosine(q[k], r[k]) for k in r.files)
            what = "lowest output cosine vs the float model in ORT"
        else:
            k = r.files[0]
            v = float((q[k].reshape(q[k].shape[0], -1).argmax(-1) == r[k].reshape(r[k].shape[0], -1).argmax(-1)).mean())
            what = "top-1 agreement with the float model in ORT"
        fig[name] = v
        check(v >= lo, "%s: %s %.5f >= %g" % (name, what, v, lo))
    pairs = os.path.join(work, "pairs")
    for line in open(pairs) if os.path.exists(pairs) else []:
        f = line.split()
        if len(f) != 3:
            continue
        b, w, margin = f[0], f[1], float(f[2])
        if b in fig and w in fig:
            check(fig[b] >= fig[w] + margin, "%s %.5f beats %s %.5f by >= %g" % (b, fig[b], w, fig[w], margin))
        else:
            check(False, "%s vs %s: a figure is missing" % (b, w))


def graph(name, path, expr, float_path=None):
    m = onnx.load(path, load_external_data=False)
    fnodes = list(onnx.load(float_path, load_external_data=False).graph.node) if float_path else []
    backbone = [n.name for n in fnodes if n.op_type in ("Conv", "MatMul", "Gemm")]
    g = m.graph
    ops = collections.Counter(n.op_type for n in g.node)
    node = {n.name: n for n in g.node}
    producer = {o: n for n in g.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    inits = {t.name: t for t in g.initializer}

    def floatnode(nm):
        n = node.get(nm)
        if n is None or n.op_type.startswith("QLinear") or n.op_type.endswith("Integer"):
            return False
        # its constant inputs (weights, gamma, embeddings) stay float: none is dequantized
        return not any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" and
                       producer[i].input[0] in inits for i in n.input)

    env = dict(fnodes=fnodes, backbone=backbone, ops=ops, node=node, producer=producer, consumers=consumers, inits=inits, floatnode=floatnode, g=g)
    try:
        ok = bool(eval(expr, env))
    except Exception as e:  # a missing node is a failed check, not a crash
        ok = False
        expr += "  [%s: %s]" % (type(e).__name__, e)
    check(ok, "%s: %s" % (name, expr))


def main(argv):
    if argv[1] == "quality":
        quality(argv[2], argv[3])
    elif argv[1] == "graph":
        graph(argv[2], argv[3], argv[4], argv[5] if len(argv) > 5 else None)
    print("inc-check: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
