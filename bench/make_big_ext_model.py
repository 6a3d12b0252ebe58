#!/usr/bin/python3
"""Generates a float ONNX model with external data, written layer by layer (never more than
one weight matrix in memory), for the >2 GiB benchmarks (bench/models_tar_big.sh).

usage: /usr/bin/python3 bench/make_big_ext_model.py DIR [--layers N] [--dim D] [--seed S]

DIR/model.onnx + DIR/model.onnx.data: a stack of N MatMul layers (weights D x D float32,
uniform [-0.05, 0.05) from numpy's seeded generator) with Relu between them; input x
[batch, D] (batch symbolic), output y [batch, D], opset 13. Defaults: 36 layers of 4096 x
4096 -> 2.25 GiB of float weights. Prints the float weight bytes.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    opts = {"--layers": 36, "--dim": 4096, "--seed": 1}
    i = 2
    while i < len(argv):
        if argv[i] not in opts or i + 1 >= len(argv):
            print("make_big_ext_model: unknown or incomplete option '%s'" % argv[i], file=sys.stderr)
            return 2
        opts[argv[i]] = int(argv[i + 1])
        i += 2
    layers, dim = opts["--layers"], opts["--dim"]
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(opts["--seed"])
    nodes, inits = [], []
    cur = "x"
    off = 0
    with open(os.path.join(out, "model.onnx.data"), "wb") as f:
        for k in range(layers):
            w = (rng.random((dim, dim), dtype=np.float32) - np.float32(0.5)) * np.float32(0.1)
            b = w.tobytes()
            f.write(b)
            t = TensorProto(name="w%d" % k, data_type=TensorProto.FLOAT, dims=[dim, dim])
            t.data_location = TensorProto.EXTERNAL
            for key, v in (("location", "model.onnx.data"), ("offset", str(off)), ("length", str(len(b)))):
                e = t.external_data.add()
                e.key, e.value = key, v
            off += len(b)
            del w, b
            inits.append(t)
            mm = "y" if k == layers - 1 else "mm%d" % k
            nodes.append(helper.make_node("MatMul", [cur, "w%d" % k], [mm], name="matmul%d" % k))
            if k != layers - 1:
                nodes.append(helper.make_node("Relu", [mm], ["relu%d" % k], name="relu%d" % k))
                cur = "relu%d" % k
    g = helper.make_graph(nodes, "big_ext_mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dim])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="quantd-bench")
    m.ir_version = 8
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    print(off)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
