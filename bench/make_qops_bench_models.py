#!/usr/bin/python3
"""Builds the models bench/qops_bench.sh times: one transformer-sized MLP block
(x [M, 768] -> MatMul 768x3072 -> Relu -> MatMul 3072x768) in five forms.

usage: /usr/bin/python3 bench/make_qops_bench_models.py OUT_DIR [M]
  float.onnx     float32 MatMuls
  dynamic.onnx   DynamicQuantizeLinear + MatMulInteger + Cast + Mul (quantize_dynamic's graph)
  qoperator.onnx QuantizeLinear + QLinearMatMul + DequantizeLinear (static QOperator, u8/s8)
  qdq.onnx       Q/DQ around float MatMuls, per-channel int8 weights (static QDQ)
  nbits.onnx     com.microsoft MatMulNBits, 4-bit, block 32, with zero points
and in.npz (x).
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

D, F = 768, 3072


def model(name, nodes, inits, ms=False, opset=13):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    m = helper.make_model(g, opset_imports=ops, producer_name="quantd-bench")
    m.ir_version = 8
    return m


def main():
    out = sys.argv[1]
    M = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(7)
    w1 = (rng.standard_normal((D, F)) * 0.03).astype(np.float32)
    w2 = (rng.standard_normal((F, D)) * 0.03).astype(np.float32)
    np.savez(os.path.join(out, "in.npz"), x=rng.standard_normal((M, D)).astype(np.float32))
    mm = lambda a, b, y: helper.make_node("MatMul", [a, b], [y])
    save(model("float", [mm("x", "w1", "h"), helper.make_node("Relu", ["h"], ["r"]), mm("r", "w2", "y")],
               {"w1": w1, "w2": w2}), os.path.join(out, "float.onnx"))

    def wq(w, axis_cols=True):
        s = (np.abs(w).max(axis=0) / 127).astype(np.float32)
        return np.clip(np.round(w / s), -127, 127).astype(np.int8), s

    q1, s1 = wq(w1)
    q2, s2 = wq(w2)
    # dynamic: per-column weight scale folded into the final Mul
    nodes, inits = [], {"q1": q1, "s1": s1, "q2": q2, "s2": s2, "z8": np.array(0, np.int8)}
    for i, (a, y) in enumerate((("x", "h"), ("r", "y")), 1):
        nodes += [helper.make_node("DynamicQuantizeLinear", [a], [a + "_q", a + "_s", a + "_z"]),
                  helper.make_node("MatMulInteger", [a + "_q", "q%d" % i, a + "_z", "z8"], [a + "_i"]),
                  helper.make_node("Cast", [a + "_i"], [a + "_c"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [a + "_s", "s%d" % i], [a + "_m"]),
                  helper.make_node("Mul", [a + "_c", a + "_m"], [y])]
        if i == 1:
            nodes.append(helper.make_node("Relu", ["h"], ["r"]))
    save(model("dynamic", nodes, inits), os.path.join(out, "dynamic.onnx"))
    # static QOperator: activations u8 with fixed ranges
    xs, hs, ys = np.float32(8 / 255), np.float32(4 / 255), np.float32(4 / 255)
    inits = {"q1": q1, "s1": np.float32(s1.max()), "q2": q2, "s2": np.float32(s2.max()), "z8": np.int8(0),
             "xs": xs, "xz": np.uint8(128), "hs": hs, "hz": np.uint8(0), "ys": ys, "yz": np.uint8(128)}
    inits["q1"] = np.clip(np.round(w1 / inits["s1"]), -127, 127).astype(np.int8)
    inits["q2"] = np.clip(np.round(w2 / inits["s2"]), -127, 127).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "q1", "s1", "z8", "hs", "hz"], ["hq"]),
             helper.make_node("QLinearMatMul", ["hq", "hs", "hz", "q2", "s2", "z8", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    save(model("qoperator", nodes, inits), os.path.join(out, "qoperator.onnx"))
    # QDQ
    inits = {"q1": q1, "s1": s1, "q2": q2, "s2": s2, "zc1": np.zeros(F, np.int8), "zc2": np.zeros(D, np.int8),
             "xs": xs, "xz": np.uint8(128), "hs": hs, "hz": np.uint8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["q1", "s1", "zc1"], ["w1d"], axis=1),
             mm("xd", "w1d", "h"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "hs", "hz"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "hs", "hz"], ["rd"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "zc2"], ["w2d"], axis=1),
             mm("rd", "w2d", "y")]
    save(model("qdq", nodes, inits), os.path.join(out, "qdq.onnx"))
    # MatMulNBits 4-bit, block 32, asymmetric
    inits, nodes = {}, []
    for i, (w, a, y) in enumerate(((w1, "x", "h"), (w2, "r", "y")), 1):
        K, N = w.shape
        kb = K // 32
        bl = w.T.reshape(N, kb, 32)
        mn, mx = np.minimum(bl.min(-1), 0), np.maximum(bl.max(-1), 0)
        sc = ((mx - mn) / 15).astype(np.float32)
        zp = np.clip(np.round(-mn / sc), 0, 15).astype(np.uint8)
        q = np.clip(np.round(bl / sc[..., None] + zp[..., None]), 0, 15).astype(np.uint8)
        inits["B%d" % i] = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
        inits["S%d" % i] = sc
        inits["Z%d" % i] = (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8)
        nodes.append(helper.make_node("MatMulNBits", [a, "B%d" % i, "S%d" % i, "Z%d" % i], [y],
                                      domain="com.microsoft", K=K, N=N, bits=4, block_size=32))
        if i == 1:
            nodes.append(helper.make_node("Relu", ["h"], ["r"]))
    save(model("nbits", nodes, inits, ms=True), os.path.join(out, "nbits.onnx"))


if __name__ == "__main__":
    main()
