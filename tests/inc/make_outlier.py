#!/usr/bin/python3
"""A BERT-style encoder whose activations have outlier channels, for SmoothQuant (onnx + numpy).

usage: /usr/bin/python3 tests/inc/make_outlier.py OUT_DIR [--seed N]

Writes OUT_DIR/outlier.onnx: input x float [batch, 16, 128] (embedded tokens), 2 layers of
LayerNormalization -> Q/K/V MatMul + Add -> 2-head attention -> output MatMul + Add ->
residual -> LayerNormalization -> FFN (MatMul + Add, Relu, MatMul + Add) -> residual; output
y [batch, 16, 128]. Both LayerNormalizations' gamma is 50x larger on 4 of the 128 channels,
so every MatMul that reads a normalized tensor sees a few channels 50x larger than the rest
(the outliers SmoothQuant migrates into the weights). Also OUT_DIR/outlier_calib.npz (32
samples) and OUT_DIR/outlier_held.npz (16 other samples), array "x". opset 17."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

H, S, HEADS, FFN = 128, 16, 2, 256
OUTLIERS = [5, 37, 70, 101]


def main(argv):
    out = argv[1]
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 7
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, outs, name, **kw):
        nodes.append(helper.make_node(op, ins, outs, name=name, **kw))
        return outs[0]

    def weight(name, k, n):
        return init(name, (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32))

    def bias(name, n):
        return init(name, (0.02 * rng.standard_normal(n)).astype(np.float32))

    def gamma(name):
        g = (1.0 + 0.1 * rng.standard_normal(H)).astype(np.float32)
        g[OUTLIERS] *= 50.0
        return init(name, g)

    d = H // HEADS
    init("shape_heads", np.array([0, 0, HEADS, d], np.int64))
    init("shape_hidden", np.array([0, 0, H], np.int64))
    init("sqrt_d", np.array(np.sqrt(d), np.float32))
    x = "x"
    for L in range(2):
        p = "l%d/" % L
        h = node("LayerNormalization", [x, gamma(p + "ln1.g"), bias(p + "ln1.b", H)], [p + "ln1"], p + "ln1",
                 axis=-1, epsilon=1e-5)
        qkv = {}
        for t in "qkv":
            mm = node("MatMul", [h, weight(p + t + ".w", H, H)], [p + t + "_mm"], p + t + "/MatMul")
            a = node("Add", [mm, bias(p + t + ".b", H)], [p + t], p + t + "/Add")
            r = node("Reshape", [a, "shape_heads"], [p + t + "_r"], p + t + "/Reshape")
            perm = [0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]
            qkv[t] = node("Transpose", [r], [p + t + "_t"], p + t + "/Transpose", perm=perm)
        sc = node("MatMul", [qkv["q"], qkv["k"]], [p + "scores"], p + "scores/MatMul")
        sc = node("Div", [sc, "sqrt_d"], [p + "scaled"], p + "scores/Div")
        pr = node("Softmax", [sc], [p + "probs"], p + "Softmax", axis=-1)
        cx = node("MatMul", [pr, qkv["v"]], [p + "ctx"], p + "context/MatMul")
        cx = node("Transpose", [cx], [p + "ctx_t"], p + "context/Transpose", perm=[0, 2, 1, 3])
        cx = node("Reshape", [cx, "shape_hidden"], [p + "ctx_r"], p + "context/Reshape")
        o = node("MatMul", [cx, weight(p + "o.w", H, H)], [p + "o_mm"], p + "o/MatMul")
        o = node("Add", [o, bias(p + "o.b", H)], [p + "o"], p + "o/Add")
        x1 = node("Add", [x, o], [p + "res1"], p + "res1")
        h2 = node("LayerNormalization", [x1, gamma(p + "ln2.g"), bias(p + "ln2.b", H)], [p + "ln2"], p + "ln2",
                  axis=-1, epsilon=1e-5)
        f = node("MatMul", [h2, weight(p + "f1.w", H, FFN)], [p + "f1_mm"], p + "f1/MatMul")
        f = node("Add", [f, bias(p + "f1.b", FFN)], [p + "f1"], p + "f1/Add")
        f = node("Relu", [f], [p + "relu"], p + "Relu")
        f = node("MatMul", [f, weight(p + "f2.w", FFN, H)], [p + "f2_mm"], p + "f2/MatMul")
        f = node("Add", [f, bias(p + "f2.b", H)], [p + "f2"], p + "f2/Add")
        x = node("Add", [x1, f], ["y" if L == 1 else p + "res2"], p + "res2")
    g = helper.make_graph(nodes, "outlier_encoder",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S, H])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", S, H])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="quantd-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(out, "outlier.onnx"))
    np.savez(os.path.join(out, "outlier_calib.npz"), x=rng.standard_normal((32, S, H)).astype(np.float32))
    np.savez(os.path.join(out, "outlier_held.npz"), x=rng.standard_normal((16, S, H)).astype(np.float32))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
