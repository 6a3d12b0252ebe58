#!/usr/bin/env python3
"""Models and data for tests/vitis (seeded, written to OUTDIR):
  resnet.onnx       ResNet-style CNN: Conv-BN-Relu stem, two residual blocks (Conv-BN-Relu,
                    Conv-BN, Add, Relu; the second with a strided 1x1 projection), MaxPool,
                    AveragePool, GlobalAveragePool, Flatten, Gemm head (10 classes), opset 13
  unbalanced.onnx   Conv-Relu-Conv-Relu-Conv CNN whose first Conv's output channels have
                    ranges 1e-2 .. 1e2 (the second Conv compensates): what CLE equalizes
  calib_<m>.npz / held_<m>.npz   calibration (64) and held-out (64) inputs, array "x"
usage: make_vitis_models.py OUTDIR"""
import os, sys
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

rng = np.random.default_rng(20260407)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
nodes, inits = [], []


def init(name, a):
    inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))
    return name


def conv(x, cin, cout, k, name, stride=1, bn=True, relu=True):
    w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
    b = rng.normal(0, 0.05, cout)
    pad = k // 2
    y = name + "_conv"
    nodes.append(helper.make_node("Conv", [x, init(name + "_w", w), init(name + "_b", b)], [y], name=name,
                                  kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
    if bn:
        z = name + "_bn"
        nodes.append(helper.make_node("BatchNormalization", [y, init(name + "_g", rng.uniform(0.6, 1.4, cout)),
                                      init(name + "_beta", rng.normal(0, 0.1, cout)),
                                      init(name + "_mean", rng.normal(0, 0.1, cout)),
                                      init(name + "_var", rng.uniform(0.5, 1.5, cout))], [z], name=name + "_BN"))
        y = z
    if relu:
        r = name + "_relu"
        nodes.append(helper.make_node("Relu", [y], [r], name=name + "_Relu"))
        y = r
    return y


def save(name, x_shape, y_shape):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="quantd-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(out, name + ".onnx"))


def images(n, shape):
    # smooth random images: low-frequency noise plus a little pixel noise
    base = rng.normal(0, 1, (n, shape[0], shape[1] // 4, shape[2] // 4))
    up = np.repeat(np.repeat(base, 4, axis=2), 4, axis=3)
    x = up + rng.normal(0, 0.3, (n,) + tuple(shape))
    # rare bright pixels (0.2%): heavy tails, where MinMSE's finer scales pay off
    spikes = rng.random(x.shape) < 0.002
    x[spikes] += rng.choice([-1, 1], spikes.sum()) * rng.uniform(6, 12, spikes.sum())
    return x.astype(np.float32)


# ---- resnet ----
h = conv("x", 3, 16, 3, "stem")
a = conv(h, 16, 16, 3, "b1c1")
a = conv(a, 16, 16, 3, "b1c2", relu=False)
nodes.append(helper.make_node("Add", [a, h], ["b1_add"], name="b1_Add"))
nodes.append(helper.make_node("Relu", ["b1_add"], ["b1_out"], name="b1_Relu"))
nodes.append(helper.make_node("MaxPool", ["b1_out"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]))
a = conv("pool1", 16, 32, 3, "b2c1", stride=2)
a = conv(a, 32, 32, 3, "b2c2", relu=False)
p = conv("pool1", 16, 32, 1, "b2proj", stride=2, relu=False)
nodes.append(helper.make_node("Add", [a, p], ["b2_add"], name="b2_Add"))
nodes.append(helper.make_node("Relu", ["b2_add"], ["b2_out"], name="b2_Relu"))
nodes.append(helper.make_node("AveragePool", ["b2_out"], ["pool2"], name="pool2", kernel_shape=[2, 2], strides=[1, 1]))
c = conv("pool2", 32, 32, 1, "head_c")
nodes.append(helper.make_node("GlobalAveragePool", [c], ["gap"], name="gap"))
nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat"))
nodes.append(helper.make_node("Gemm", ["flat", init("fc_w", rng.normal(0, 0.3, (10, 32))), init("fc_b", rng.normal(0, 0.1, 10))],
                              ["y"], name="fc", transB=1))
save("resnet", [1, 3, 32, 32], [1, 10])
np.savez(os.path.join(out, "calib_resnet.npz"), x=images(64, (3, 32, 32)))
np.savez(os.path.join(out, "held_resnet.npz"), x=images(64, (3, 32, 32)))

# ---- unbalanced (CLE) ----
nodes, inits = [], []
k1 = rng.normal(0, 0.3, (16, 3, 3, 3))
gain = np.logspace(-2, 2, 16)          # channel ranges 1e-2 .. 1e2
rng.shuffle(gain)
w1 = k1 * gain[:, None, None, None]
b1 = rng.normal(0, 0.05, 16) * gain
w2 = rng.normal(0, 0.3, (16, 16, 3, 3)) / gain[None, :, None, None]
b2 = rng.normal(0, 0.05, 16)
w3 = rng.normal(0, 0.3, (8, 16, 1, 1))
nodes.append(helper.make_node("Conv", ["x", init("c1_w", w1), init("c1_b", b1)], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1] * 4))
nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="r1"))
nodes.append(helper.make_node("Conv", ["r1", init("c2_w", w2), init("c2_b", b2)], ["c2"], name="c2", kernel_shape=[3, 3], pads=[1] * 4))
nodes.append(helper.make_node("Relu", ["c2"], ["r2"], name="r2"))
nodes.append(helper.make_node("Conv", ["r2", init("c3_w", w3)], ["y"], name="c3", kernel_shape=[1, 1]))
save("unbalanced", [1, 3, 16, 16], [1, 8, 16, 16])
np.savez(os.path.join(out, "calib_unbalanced.npz"), x=images(64, (3, 16, 16)))
np.savez(os.path.join(out, "held_unbalanced.npz"), x=images(64, (3, 16, 16)))

# ---- dpu_mix: branches whose ranges differ by orders of magnitude, so that every DPU
# shift constraint binds (Add shift_read / shift_write, Sigmoid, Concat, pooling, shift_cut
# and shift_bias) ----
nodes, inits = [], []
a = conv("x", 3, 8, 3, "ma", bn=False)
tiny = conv("x", 3, 8, 3, "mt", bn=False, relu=False)
inits[-2] = numpy_helper.from_array(numpy_helper.to_array(inits[-2]) * 1e-6, inits[-2].name)   # weights x 1e-6
inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]) * 1e-6, inits[-1].name)
nodes.append(helper.make_node("Add", [a, tiny], ["madd"], name="m_Add"))
big = conv("x", 3, 8, 3, "mb", bn=False, relu=False)
inits[-2] = numpy_helper.from_array(numpy_helper.to_array(inits[-2]) * 40, inits[-2].name)
inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]) * 40, inits[-1].name)
nodes.append(helper.make_node("Sigmoid", [big], ["msig"], name="m_Sigmoid"))
ten = conv("x", 3, 8, 3, "m10", bn=False, relu=False)
inits[-2] = numpy_helper.from_array(numpy_helper.to_array(inits[-2]) * 10, inits[-2].name)
nodes.append(helper.make_node("Concat", ["madd", ten], ["mcat"], name="m_Concat", axis=1))
nodes.append(helper.make_node("MaxPool", ["mcat"], ["mpool"], name="m_MaxPool", kernel_shape=[2, 2], strides=[2, 2]))
nodes.append(helper.make_node("AveragePool", ["mpool"], ["mavg"], name="m_AvgPool", kernel_shape=[2, 2], strides=[2, 2]))
o1 = conv("mavg", 16, 4, 1, "mo1", bn=False, relu=False)
nodes.append(helper.make_node("MaxPool", ["msig"], ["spool"], name="s_MaxPool", kernel_shape=[4, 4], strides=[4, 4]))
o2 = conv("spool", 8, 4, 1, "mo2", bn=False, relu=False)
inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]) * 1e-6, inits[-1].name)   # tiny bias: shift_bias
nodes.append(helper.make_node("Add", [o1, o2], ["o12"], name="m_o12"))
# Mul of two tiny values: the product's pos is far above its inputs' (shift_write)
nodes.append(helper.make_node("Mul", [tiny, tiny], ["mmul"], name="m_Mul"))
o3 = conv("mmul", 8, 4, 1, "mo3", bn=False, relu=False)
inits[-2] = numpy_helper.from_array(numpy_helper.to_array(inits[-2]) * 1e10, inits[-2].name)
# a Conv with tiny weights and a large bias: wpos + ipos - opos > 16 (shift_cut), then shift_bias
cb = conv("x", 3, 4, 3, "mcb", stride=4, bn=False, relu=False)
inits[-2] = numpy_helper.from_array(numpy_helper.to_array(inits[-2]) * 1e-5, inits[-2].name)
inits[-1] = numpy_helper.from_array(rng.uniform(2, 4, 4).astype(np.float32), inits[-1].name)
nodes.append(helper.make_node("MaxPool", [o3], ["o3p"], name="m3_MaxPool", kernel_shape=[4, 4], strides=[4, 4]))
nodes.append(helper.make_node("Add", ["o3p", cb], ["o3cb"], name="m_o3cb"))
nodes.append(helper.make_node("Add", ["o12", "o3cb"], ["y"], name="m_out"))
save("dpu_mix", [1, 3, 16, 16], [1, 4, 4, 4])
np.savez(os.path.join(out, "calib_dpu_mix.npz"), x=images(64, (3, 16, 16)))
np.savez(os.path.join(out, "held_dpu_mix.npz"), x=images(64, (3, 16, 16)))

# ---- CLE patterns of reference §B.4, each with a head whose output channel ranges are
# 1e-2 .. 1e2 (the next layer compensates, so the model's output stays balanced) ----
def gains(n):
    g = np.logspace(-2, 2, n)
    rng.shuffle(g)
    return g


def cle_model(name, build, x_shape, y_shape, data_shape):
    global nodes, inits
    nodes, inits = [], []
    build()
    save(name, x_shape, y_shape)
    for split in ("calib", "held"):
        if len(data_shape) == 3:
            d = images(64, data_shape)
        else:
            d = rng.normal(0, 1, (64,) + tuple(data_shape)).astype(np.float32)
        np.savez(os.path.join(out, "%s_%s.npz" % (split, name)), x=d)


def node(op, ins, outs, **kw):
    nodes.append(helper.make_node(op, ins, [outs], name=outs, **kw))
    return outs


def conv_pair(g, cin, cout, k, pads):
    w1 = rng.normal(0, 0.3, (16, cin, 3, 3)) * g[:, None, None, None]
    b1 = rng.normal(0, 0.05, 16) * g
    w2 = rng.normal(0, 0.3, (cout, 16, k, k)) / g[None, :, None, None]
    return w1, b1, w2, pads


def build_clip():   # Conv - Clip(min 0, no max) - Conv
    g = gains(16)
    w1, b1, w2, _ = conv_pair(g, 3, 16, 3, None)
    node("Conv", ["x", init("c1_w", w1), init("c1_b", b1)], "c1", kernel_shape=[3, 3], pads=[1] * 4)
    node("Clip", ["c1", init("zero", np.array(0.0))], "clip1")
    node("Conv", ["clip1", init("c2_w", w2), init("c2_b", rng.normal(0, 0.05, 16))], "c2", kernel_shape=[3, 3], pads=[1] * 4)
    node("Relu", ["c2"], "r2")
    node("Conv", ["r2", init("c3_w", rng.normal(0, 0.3, (8, 16, 1, 1)))], "y", kernel_shape=[1, 1])


def build_pad():    # Conv - Pad - Relu - Conv
    g = gains(16)
    w1, b1, w2, _ = conv_pair(g, 3, 16, 3, None)
    node("Conv", ["x", init("c1_w", w1), init("c1_b", b1)], "c1", kernel_shape=[3, 3], pads=[1] * 4)
    inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"))
    node("Pad", ["c1", "pads"], "pad1", mode="constant")
    node("Relu", ["pad1"], "r1")
    node("Conv", ["r1", init("c2_w", w2), init("c2_b", rng.normal(0, 0.05, 16))], "c2", kernel_shape=[3, 3])
    node("Relu", ["c2"], "r2")
    node("Conv", ["r2", init("c3_w", rng.normal(0, 0.3, (8, 16, 1, 1)))], "y", kernel_shape=[1, 1])


def build_mean():   # Conv - Relu - ReduceMean - ReduceMean - Conv
    g = gains(16)
    w1, b1, w2, _ = conv_pair(g, 3, 8, 1, None)
    node("Conv", ["x", init("c1_w", w1), init("c1_b", b1)], "c1", kernel_shape=[3, 3], pads=[1] * 4)
    node("Relu", ["c1"], "r1")
    node("ReduceMean", ["r1"], "m1", axes=[2], keepdims=1)
    node("ReduceMean", ["m1"], "m2", axes=[3], keepdims=1)
    node("Conv", ["m2", init("c2_w", w2), init("c2_b", rng.normal(0, 0.05, 8))], "y", kernel_shape=[1, 1])


def build_gemm():   # Gemm (transB 1) - Relu - Gemm (transB 0) - Relu - Gemm
    g = gains(16)
    w1 = rng.normal(0, 0.3, (16, 32)) * g[:, None]
    b1 = rng.normal(0, 0.05, 16) * g
    w2 = rng.normal(0, 0.3, (16, 16)) / g[:, None]
    node("Gemm", ["x", init("g1_w", w1), init("g1_b", b1)], "g1", transB=1)
    node("Relu", ["g1"], "r1")
    node("Gemm", ["r1", init("g2_w", w2), init("g2_b", rng.normal(0, 0.05, 16))], "g2")
    node("Relu", ["g2"], "r2")
    node("Gemm", ["r2", init("g3_w", rng.normal(0, 0.3, (10, 16)))], "y", transB=1)


def build_dw():     # Conv - Relu - depthwise Conv - Relu - pointwise Conv
    g0, g1 = gains(16), gains(16)
    w1 = rng.normal(0, 0.3, (16, 3, 3, 3)) * g0[:, None, None, None]
    b1 = rng.normal(0, 0.05, 16) * g0
    wd = rng.normal(0, 0.3, (16, 1, 3, 3)) * g1[:, None, None, None]
    bd = rng.normal(0, 0.05, 16) * g0 * g1
    wp = rng.normal(0, 0.3, (8, 16, 1, 1)) / (g0 * g1)[None, :, None, None]
    node("Conv", ["x", init("c1_w", w1), init("c1_b", b1)], "c1", kernel_shape=[3, 3], pads=[1] * 4)
    node("Relu", ["c1"], "r1")
    node("Conv", ["r1", init("dw_w", wd), init("dw_b", bd)], "dw", kernel_shape=[3, 3], pads=[1] * 4, group=16)
    node("Relu", ["dw"], "r2")
    node("Conv", ["r2", init("pw_w", wp), init("pw_b", rng.normal(0, 0.05, 8))], "y", kernel_shape=[1, 1])


cle_model("cle_clip", build_clip, [1, 3, 16, 16], [1, 8, 16, 16], (3, 16, 16))
cle_model("cle_pad", build_pad, [1, 3, 16, 16], [1, 8, 16, 16], (3, 16, 16))
cle_model("cle_mean", build_mean, [1, 3, 16, 16], [1, 8, 1, 1], (3, 16, 16))
cle_model("cle_gemm", build_gemm, [1, 32], [1, 10], (32,))
cle_model("cle_dw", build_dw, [1, 3, 16, 16], [1, 8, 16, 16], (3, 16, 16))
