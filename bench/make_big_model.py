#!/usr/bin/python3
"""Generates a large float ONNX model for the quantization and upload benchmarks.

usage: /usr/bin/python3 bench/make_big_model.py OUT.onnx [--layers N] [--dim D] [--seed S]

A stack of N MatMul layers (weights D x D float32, uniform [-0.05, 0.05) from numpy's
seeded generator) with Add bias and Relu between them; input x [batch, D] (batch
symbolic), output y [batch, D], opset 13. Defaults: 7 layers of 2048 x 2048 -> ~112 MiB.
Different seeds give different bytes (the service dedupes identical uploads).
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(layers, dim, seed):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cur = "x"
    for i in range(layers):
        w = (rng.random((dim, dim), dtype=np.float32) - np.float32(0.5)) * np.float32(0.1)
        b = (rng.random((dim,), dtype=np.float32) - np.float32(0.5)) * np.float32(0.1)
        inits.append(numpy_helper.from_array(w, "w%d" % i))
        inits.append(numpy_helper.from_array(b, "b%d" % i))
        nodes.append(helper.make_node("MatMul", [cur, "w%d" % i], ["mm%d" % i], name="matmul%d" % i))
        out = "y" if i == layers - 1 else "add%d" % i
        nodes.append(helper.make_node("Add", ["mm%d" % i, "b%d" % i], [out], name="add%d" % i))
        if i != layers - 1:
            nodes.append(helper.make_node("Relu", [out], ["relu%d" % i], name="relu%d" % i))
            cur = "relu%d" % i
    graph = helper.make_graph(
        nodes, "big_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dim])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="quantd-bench")
    model.ir_version = 8
    return model


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    opts = {"--layers": 7, "--dim": 2048, "--seed": 1}
    i = 2
    while i < len(argv):
        if argv[i] not in opts or i + 1 >= len(argv):
            print("make_big_model: unknown or incomplete option '%s'" % argv[i], file=sys.stderr)
            return 2
        try:
            opts[argv[i]] = int(argv[i + 1])
        except ValueError:
            print("make_big_model: option '%s' needs an integer" % argv[i], file=sys.stderr)
            return 2
        i += 2
    if opts["--layers"] < 1 or opts["--dim"] < 1:
        print("make_big_model: --layers and --dim must be positive", file=sys.stderr)
        return 2
    model = build(opts["--layers"], opts["--dim"], opts["--seed"])
    onnx.save(model, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
