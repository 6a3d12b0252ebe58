#!/usr/bin/python3
"""Builds the float test models of tests/qnn (onnx + numpy only), each holding one pattern
QnnPreprocess fuses (reference/inc_vitis_qnn.md §C.2), plus the models of the QNN
quantization checks.

usage: /usr/bin/python3 tests/qnn/make_qnn_models.py OUT_DIR

  gelu_torch.onnx      erf-GELU, PyTorch export: Div(√2) Erf Add(1) Mul(x) Mul(0.5), twice,
                       the second with the 0.5 Mul on the input side (0.5 * x); opset 13
  gelu_keras.onnx      Keras: the √2 is a Sqrt(2) node (Constant input); opset 13
  gelu_tf.onnx         TensorFlow: Mul(0.7071) Erf Add(1) Mul(0.5) Mul(x); opset 13
  gelu_near.onnx       a near miss: Div by 1.5 instead of √2 (must not fuse); opset 13
  lpnorm.onnx          ReduceL2(-1, keepdims) Clip(1e-12) Expand(Shape) Div, opset 13
  lpnorm18.onnx        the same at opset 18 (ReduceL2 axes as an input)
  s2d.onnx             YOLO's Reshape/Transpose chain (blocksize 2) between two Convs, opset 13
  layernorm17.onnx     two decomposed LayerNorms (one-Sub and two-Sub exports, one with a
                       Cast before Pow) around a MatMul, opset 17
  layernorm13.onnx     the one-Sub form at opset 13 (no LayerNormalization op: not fused)
  cnn.onnx             Conv Relu Conv -> y [1,8,16,16] and GlobalAveragePool Flatten -> v [1,8],
                       input x [1,3,16,16], opset 13
  plain.onnx           MatMul + Relu with named nodes and nothing to fuse, opset 13
  dyn.onnx             input x [batch, seq, 32] (symbolic), MatMul + Relu, opset 13
  encoder.onnx         QNN workflow model: x [1,16,64] -> decomposed LayerNorm -> MatMul+Add
                       -> erf-GELU -> MatMul+Add -> residual Add -> decomposed LayerNorm ->
                       MatMul -> Sigmoid * Tanh (out); opset 17
  convnet.onnx         QNN per-channel model: Conv, ConvTranspose, MatMul, opset 13
  mixed.onnx           QNN mixed precision: conv1 Relu (8-bit) -> conv2 -> Sigmoid, Mul (the
                       SiLU region the tests make 16-bit by overriding conv2's output "t_c2")
                       -> conv3 (8-bit) -> out; named nodes, opset 13
  calib_encoder.npz / held_encoder.npz / calib_convnet.npz / held_convnet.npz /
  calib_mixed.npz / held_mixed.npz
                       calibration and held-out data (16 samples each)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(7)


class G:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def c(self, arr, dtype=np.float32):
        self.n += 1
        name = "c%d" % self.n
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    def w(self, shape, std=0.2):
        return self.c(RNG.standard_normal(shape) * std)

    def op(self, op, ins, named=True, **attrs):
        self.n += 1
        out = "%s_%d" % (op.lower(), self.n)
        self.nodes.append(helper.make_node(op, ins, [out], name=("%s_%d" % (op, self.n)) if named else "", **attrs))
        return out


def save(g, path, inputs, outputs, opset=13, ms=False):
    graph = helper.make_graph(g.nodes, os.path.basename(path).split(".")[0], inputs, outputs, g.inits)
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    m = helper.make_model(graph, opset_imports=ops, producer_name="quantd-tests")
    m.ir_version = 8
    if opset <= onnx.defs.onnx_opset_version():
        onnx.checker.check_model(m)
    onnx.save(m, path)


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def gelu_torch(g, x, pre_half=False):
    d = g.op("Div", [x, g.c(1.4142135)])
    e = g.op("Erf", [d])
    a = g.op("Add", [e, g.c(1.0)])
    if pre_half:
        h = g.op("Mul", [g.c(0.5), x])
        return g.op("Mul", [h, a])
    m = g.op("Mul", [x, a])
    return g.op("Mul", [m, g.c(0.5)])


def layernorm(g, x, hidden, two_sub=False, cast=False, eps=1e-5):
    mean = g.op("ReduceMean", [x], axes=[-1])
    s1 = g.op("Sub", [x, mean])
    s2 = g.op("Sub", [x, mean]) if two_sub else s1
    p_in = g.op("Cast", [s1], to=TensorProto.FLOAT) if cast else s1
    p = g.op("Pow", [p_in, g.c(2.0)])
    var = g.op("ReduceMean", [p], axes=[-1])
    sd = g.op("Sqrt", [g.op("Add", [var, g.c(eps)])])
    n = g.op("Div", [s2, sd])
    gamma = g.c(1.0 + 0.1 * RNG.standard_normal(hidden))
    beta = g.c(0.05 * RNG.standard_normal(hidden))
    return g.op("Add", [g.op("Mul", [n, gamma]), beta])


def main(out):
    os.makedirs(out, exist_ok=True)
    X = [vi("x", [1, 8, 32])]

    g = G()
    h = g.op("MatMul", ["x", g.w((32, 32))])
    h = gelu_torch(g, h)
    h = g.op("MatMul", [h, g.w((32, 32))])
    h = gelu_torch(g, h, pre_half=True)
    g.nodes.append(helper.make_node("Identity", [h], ["y"], name="out"))
    save(g, os.path.join(out, "gelu_torch.onnx"), X, [vi("y", [1, 8, 32])])

    g = G()
    h = g.op("MatMul", ["x", g.w((32, 32))])
    two = "two"
    g.nodes.append(helper.make_node("Constant", [], [two], name="const_two",
                                    value=numpy_helper.from_array(np.array(2.0, np.float32))))
    sq = g.op("Sqrt", [two])
    e = g.op("Erf", [g.op("Div", [h, sq])])
    a = g.op("Add", [g.c(1.0), e])
    m = g.op("Mul", [a, g.c(0.5)])
    y = g.op("Mul", [h, m])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "gelu_keras.onnx"), X, [vi("y", [1, 8, 32])])

    g = G()
    h = g.op("MatMul", ["x", g.w((32, 32))])
    e = g.op("Erf", [g.op("Mul", [h, g.c(0.70710678)])])
    a = g.op("Add", [e, g.c(1.0)])
    m = g.op("Mul", [a, g.c(0.5)])
    y = g.op("Mul", [m, h])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "gelu_tf.onnx"), X, [vi("y", [1, 8, 32])])

    g = G()
    h = g.op("MatMul", ["x", g.w((32, 32))])
    e = g.op("Erf", [g.op("Div", [h, g.c(1.5)])])
    y = g.op("Mul", [g.op("Mul", [h, g.op("Add", [e, g.c(1.0)])]), g.c(0.5)])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "gelu_near.onnx"), X, [vi("y", [1, 8, 32])])

    for opset in (13, 18):
        g = G()
        h = g.op("MatMul", ["x", g.w((32, 32))])
        if opset >= 18:
            r = g.op("ReduceL2", [h, g.c([-1], np.int64)], keepdims=1)
        else:
            r = g.op("ReduceL2", [h], axes=[-1], keepdims=1)
        cl = g.op("Clip", [r, g.c(1e-12)])
        ex = g.op("Expand", [cl, g.op("Shape", [h])])
        y = g.op("Div", [h, ex])
        g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
        save(g, os.path.join(out, "lpnorm.onnx" if opset == 13 else "lpnorm18.onnx"), X, [vi("y", [1, 8, 32])],
             opset=opset)

    g = G()
    b, c, hh, ww = 2, 4, 8, 8
    h = g.op("Conv", ["img", g.w((c, 3, 3, 3)), g.w((c,), 0.1)], pads=[1, 1, 1, 1])
    h = g.op("Reshape", [h, g.c([1, c, hh // b, b, ww // b, b], np.int64)])
    h = g.op("Transpose", [h], perm=[0, 1, 2, 4, 3, 5])
    h = g.op("Reshape", [h, g.c([1, c, (hh // b) * (ww // b), b * b], np.int64)])
    h = g.op("Transpose", [h], perm=[0, 1, 3, 2])
    h = g.op("Reshape", [h, g.c([1, c, b * b, hh // b, ww // b], np.int64)])
    h = g.op("Transpose", [h], perm=[0, 2, 1, 3, 4])
    h = g.op("Reshape", [h, g.c([1, b * b * c, hh // b, ww // b], np.int64)])
    y = g.op("Conv", [h, g.w((8, b * b * c, 1, 1)), g.w((8,), 0.1)])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "s2d.onnx"), [vi("img", [1, 3, 8, 8])], [vi("y", [1, 8, 4, 4])])

    for opset in (17, 13):
        g = G()
        h = layernorm(g, "x", 32)
        if opset == 17:
            h = g.op("MatMul", [h, g.w((32, 32))])
            h = layernorm(g, h, 32, two_sub=True, cast=True, eps=1e-6)
        g.nodes.append(helper.make_node("Identity", [h], ["y"], name="out"))
        save(g, os.path.join(out, "layernorm%d.onnx" % opset), X, [vi("y", [1, 8, 32])], opset=opset)

    g = G()
    h = g.op("Relu", [g.op("Conv", ["x", g.w((8, 3, 3, 3)), g.w((8,), 0.1)], pads=[1, 1, 1, 1])])
    y = g.op("Conv", [h, g.w((8, 8, 1, 1)), g.w((8,), 0.1)])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out_y"))
    v = g.op("Flatten", [g.op("GlobalAveragePool", [y])])
    g.nodes.append(helper.make_node("Identity", [v], ["v"], name="out_v"))
    save(g, os.path.join(out, "cnn.onnx"), [vi("x", [1, 3, 16, 16])], [vi("y", [1, 8, 16, 16]), vi("v", [1, 8])])

    g = G()
    y = g.op("Relu", [g.op("MatMul", ["x", g.w((32, 16))])])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "plain.onnx"), X, [vi("y", [1, 8, 16])])

    g = G()
    y = g.op("Relu", [g.op("MatMul", ["x", g.w((32, 16))])])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "dyn.onnx"), [vi("x", ["batch", "seq", 32])], [vi("y", ["batch", "seq", 16])])

    # encoder for the QNN workflow
    g = G()
    D, F = 64, 128
    h0 = layernorm(g, "x", D)
    h = g.op("Add", [g.op("MatMul", [h0, g.w((D, F), 0.15)]), g.w((F,), 0.05)])
    h = gelu_torch(g, h)
    h = g.op("Add", [g.op("MatMul", [h, g.w((F, D), 0.1)]), g.w((D,), 0.05)])
    h = g.op("Add", [h, h0])
    h = layernorm(g, h, D, two_sub=True)
    z = g.op("MatMul", [h, g.w((D, 16), 0.2)])
    sg = g.op("Sigmoid", [z])
    th = g.op("Tanh", [z])
    g.nodes.append(helper.make_node("Mul", [sg, th], ["out"], name="head_mul"))
    save(g, os.path.join(out, "encoder.onnx"), [vi("x", [1, 16, D])], [vi("out", [1, 16, 16])], opset=17)
    xs = RNG.standard_normal((32, 1, 16, D)).astype(np.float32)
    np.savez(os.path.join(out, "calib_encoder.npz"), x=xs[:16].reshape(16, 16, D))
    np.savez(os.path.join(out, "held_encoder.npz"), x=xs[16:].reshape(16, 16, D))

    g = G()
    h = g.op("Relu", [g.op("Conv", ["img", g.w((8, 3, 3, 3)), g.w((8,), 0.1)], pads=[1, 1, 1, 1])])
    h = g.op("ConvTranspose", [h, g.w((8, 4, 2, 2)), g.w((4,), 0.1)], strides=[2, 2])
    h = g.op("Transpose", [h], perm=[0, 2, 3, 1])
    y = g.op("MatMul", [h, g.w((4, 6))])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    save(g, os.path.join(out, "convnet.onnx"), [vi("img", [1, 3, 8, 8])], [vi("y", [1, 16, 16, 6])])
    xs = RNG.standard_normal((32, 1, 3, 8, 8)).astype(np.float32)
    np.savez(os.path.join(out, "calib_convnet.npz"), img=xs[:16].reshape(16, 3, 8, 8))
    np.savez(os.path.join(out, "held_convnet.npz"), img=xs[16:].reshape(16, 3, 8, 8))

    g = G()
    mk = helper.make_node
    g.nodes += [mk("Conv", ["x", g.w((8, 3, 3, 3)), g.w((8,), 0.1)], ["t_c1"], name="conv1", pads=[1, 1, 1, 1]),
                mk("Relu", ["t_c1"], ["t_r1"], name="relu1"),
                mk("Conv", ["t_r1", g.w((8, 8, 3, 3), 0.3), g.w((8,), 0.1)], ["t_c2"], name="conv2", pads=[1, 1, 1, 1]),
                mk("Sigmoid", ["t_c2"], ["t_s2"], name="sig"),
                mk("Mul", ["t_c2", "t_s2"], ["t_m2"], name="mul"),
                mk("Conv", ["t_m2", g.w((4, 8, 1, 1)), g.w((4,), 0.1)], ["t_c3"], name="conv3"),
                mk("Identity", ["t_c3"], ["out"], name="out_id")]
    save(g, os.path.join(out, "mixed.onnx"), [vi("x", [1, 3, 12, 12])], [vi("out", [1, 4, 12, 12])])
    xs = RNG.standard_normal((32, 1, 3, 12, 12)).astype(np.float32)
    np.savez(os.path.join(out, "calib_mixed.npz"), x=xs[:16].reshape(16, 3, 12, 12))
    np.savez(os.path.join(out, "held_mixed.npz"), x=xs[16:].reshape(16, 3, 12, 12))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
