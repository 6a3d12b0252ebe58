#!/usr/bin/env python3
"""A small classification model and labelled datasets for tests/eval (seeded, deterministic).

    make_cls.py OUT_DIR

writes OUT_DIR/cls.onnx (x [N, 16] float -> MatMul/Relu/MatMul/Add -> logits [N, 5], plus a
second output "embedding" [N, 32] after the Relu), cls_calib.npz (64 samples, no labels),
cls_held.npz (96 samples + "labels": the float model's class for most samples, a seeded
tenth of them changed, so the float accuracy is about 0.9 and the per-class scores differ),
cls_nolabels.npz (the held-out inputs without labels) and bin.onnx / bin_held.npz (one logit
per sample, labels 0/1)."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp(path, n_out, extra_output):
    rng = np.random.default_rng(7 + n_out)
    w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.4
    b1 = rng.standard_normal(32).astype(np.float32) * 0.1
    w2 = rng.standard_normal((32, n_out)).astype(np.float32) * 0.4
    b2 = rng.standard_normal(n_out).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["embedding"], name="relu"),
        helper.make_node("MatMul", ["embedding", "w2"], ["l0"], name="fc2"),
        helper.make_node("Add", ["l0", "b2"], ["logits"], name="fc2_bias"),
    ]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_out])]
    if extra_output:
        outs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 32]))
    g = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="tests/eval")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return lambda x: np.maximum(x @ w1 + b1, 0) @ w2 + b2


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    f = mlp(os.path.join(out, "cls.onnx"), 5, True)
    rng = np.random.default_rng(1234)
    calib = rng.standard_normal((64, 16)).astype(np.float32)
    held = rng.standard_normal((96, 16)).astype(np.float32)
    labels = np.argmax(f(held), axis=1).astype(np.int64)
    flip = rng.random(96) < 0.1
    labels[flip] = (labels[flip] + 1 + rng.integers(0, 4, flip.sum())) % 5
    np.savez(os.path.join(out, "cls_calib.npz"), x=calib)
    np.savez(os.path.join(out, "cls_held.npz"), x=held, labels=labels)
    np.savez(os.path.join(out, "cls_nolabels.npz"), x=held)
    g = mlp(os.path.join(out, "bin.onnx"), 1, False)
    bl = (g(held)[:, 0] > 0).astype(np.int64)
    bflip = rng.random(96) < 0.15
    bl[bflip] = 1 - bl[bflip]
    np.savez(os.path.join(out, "bin_held.npz"), x=held, labels=bl)


if __name__ == "__main__":
    main()
