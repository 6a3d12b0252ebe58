#!/usr/bin/env python3
"""tests/weightonly/make_oddk.py OUT — a small MLP whose MatMul K are not powers of two
(80, 200, 48), for group_size -1 (one block per column over the whole K: block_size the
next power of two >= K, the padding codes zero). Input x float [batch, 80], output y
[batch, 32]; writes OUT/oddk.onnx, OUT/oddk_calib.npz (64 rows), OUT/oddk_held.npz (64)."""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper as nh, save


def main(out):
    os.makedirs(out, exist_ok=True)
    r = np.random.default_rng(7)
    dims = [80, 200, 48, 32]
    inits, nodes, prev = [], [], "x"
    for i in range(3):
        K, N = dims[i], dims[i + 1]
        # per-input-channel scales so the channels differ (what AWQ / GPTQ exploit)
        w = (r.standard_normal((K, N)) * np.exp(r.normal(0, 0.5, (K, 1))) / np.sqrt(K)).astype(np.float32)
        inits.append(nh.from_array(w, "w%d" % i))
        nodes.append(helper.make_node("MatMul", [prev, "w%d" % i], ["m%d" % i], name="mm%d" % i))
        prev = "m%d" % i
        if i < 2:
            nodes.append(helper.make_node("Relu", [prev], ["r%d" % i], name="relu%d" % i))
            prev = "r%d" % i
    nodes[-1].output[0] = "y"
    g = helper.make_graph(nodes, "oddk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 80])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    save(m, os.path.join(out, "oddk.onnx"))
    sc = np.exp(r.normal(0, 1, 80)).astype(np.float32)
    for name in ("calib", "held"):
        np.savez(os.path.join(out, "oddk_%s.npz" % name), x=(r.standard_normal((64, 80)) * sc).astype(np.float32))


if __name__ == "__main__":
    main(sys.argv[1])
