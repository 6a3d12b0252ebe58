#!/usr/bin/python3
"""Builds small, deterministic float test models for quantization tests (onnx + numpy only).

usage: /usr/bin/python3 tests/models/make_transformer.py OUT_DIR [--seed N]

Writes into OUT_DIR:
  bert.onnx        BERT-style encoder, 4 layers, hidden 256, 4 heads, FFN 1024, vocab 1000
                   (the size of the reference figure in the issue), opset 17
  bert_small.onnx  same structure, 2 layers, hidden 64, 2 heads, FFN 128, vocab 200
  mlp.onnx         3-layer MLP with Gemm (transB=1, bias), Relu, opset 13; input [batch, 64]
  if_model.onnx    MatMul + If whose branches each hold a MatMul on an outer-scope
                   weight, opset 13; inputs x [batch, 32] float and cond [] bool
  lstm.onnx        bidirectional LSTM (hidden 32, input 16, with bias) + MatMul head,
                   opset 14; input x [seq, batch, 16]
  attention.onnx   com.microsoft Attention (4 heads, hidden 64) + MatMul + Add, opset 13;
                   input x [batch, seq, 64]
BERT inputs: input_ids int64 [batch, seq] (ids < vocab); outputs: last_hidden_state
[batch, seq, hidden] and pooled [batch, hidden] (Gather first token → Gemm → Tanh).
Ops used: Gather, Shape, Range, Add, LayerNormalization, MatMul, Reshape, Transpose,
Div, Softmax, Erf, Mul, Gemm, Tanh. Batch and sequence dims are symbolic.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return "%s_%d" % (base, self.n)

    def weight(self, name, shape, std):
        a = (self.rng.standard_normal(shape) * std).astype(np.float32)
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, name=None, n_out=1, **attrs):
        name = name or self.name(op_type)
        outs = [name + "_out%d" % i if n_out > 1 else name + "_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs


def layer_norm(b, x, hidden, prefix):
    g = b.const(prefix + ".gamma", (1.0 + 0.1 * b.rng.standard_normal(hidden)).astype(np.float32))
    be = b.const(prefix + ".beta", (0.05 * b.rng.standard_normal(hidden)).astype(np.float32))
    return b.op("LayerNormalization", [x, g, be], name=prefix, axis=-1, epsilon=1e-12)


def linear(b, x, din, dout, prefix, std=0.05):
    w = b.weight(prefix + ".weight", (din, dout), std)
    bias = b.const(prefix + ".bias", (0.02 * b.rng.standard_normal(dout)).astype(np.float32))
    y = b.op("MatMul", [x, w], name=prefix + "/MatMul")
    return b.op("Add", [y, bias], name=prefix + "/Add")


def gelu(b, x, prefix):
    d = b.op("Div", [x, b.const(prefix + ".sqrt2", np.array(1.4142135, np.float32))], name=prefix + "/Div")
    e = b.op("Erf", [d], name=prefix + "/Erf")
    a = b.op("Add", [e, b.const(prefix + ".one", np.array(1.0, np.float32))], name=prefix + "/Add")
    m = b.op("Mul", [x, a], name=prefix + "/Mul")
    return b.op("Mul", [m, b.const(prefix + ".half", np.array(0.5, np.float32))], name=prefix + "/Mul_1")


def make_bert(path, seed, layers, hidden, heads, ffn, vocab, max_pos=512):
    rng = np.random.default_rng(seed)
    b = Builder(rng)
    hd = hidden // heads
    word = b.weight("embeddings.word", (vocab, hidden), 0.1)
    pos = b.weight("embeddings.position", (max_pos, hidden), 0.1)
    we = b.op("Gather", [word, "input_ids"], name="embeddings/word/Gather", axis=0)
    shp = b.op("Shape", ["input_ids"], name="embeddings/Shape")
    seq = b.op("Gather", [shp, b.const("embeddings.idx1", np.array(1, np.int64))],
               name="embeddings/seq/Gather", axis=0)
    rg = b.op("Range", [b.const("embeddings.zero", np.array(0, np.int64)), seq,
                        b.const("embeddings.step", np.array(1, np.int64))], name="embeddings/Range")
    pe = b.op("Gather", [pos, rg], name="embeddings/position/Gather", axis=0)
    x = b.op("Add", [we, pe], name="embeddings/Add")
    x = layer_norm(b, x, hidden, "embeddings/LayerNorm")
    split_shape = b.const("heads_shape", np.array([0, 0, heads, hd], np.int64))
    merge_shape = b.const("merge_shape", np.array([0, 0, hidden], np.int64))
    for li in range(layers):
        p = "layer%d" % li
        q = linear(b, x, hidden, hidden, p + "/attention/query")
        k = linear(b, x, hidden, hidden, p + "/attention/key")
        v = linear(b, x, hidden, hidden, p + "/attention/value")
        qh = b.op("Transpose", [b.op("Reshape", [q, split_shape], name=p + "/q/Reshape")],
                  name=p + "/q/Transpose", perm=[0, 2, 1, 3])
        kh = b.op("Transpose", [b.op("Reshape", [k, split_shape], name=p + "/k/Reshape")],
                  name=p + "/k/Transpose", perm=[0, 2, 3, 1])
        vh = b.op("Transpose", [b.op("Reshape", [v, split_shape], name=p + "/v/Reshape")],
                  name=p + "/v/Transpose", perm=[0, 2, 1, 3])
        s = b.op("MatMul", [qh, kh], name=p + "/attention/scores/MatMul")
        s = b.op("Div", [s, b.const(p + ".scale", np.array(np.sqrt(hd), np.float32))],
                 name=p + "/attention/scores/Div")
        pr = b.op("Softmax", [s], name=p + "/attention/Softmax", axis=-1)
        ctx = b.op("MatMul", [pr, vh], name=p + "/attention/context/MatMul")
        ctx = b.op("Transpose", [ctx], name=p + "/attention/context/Transpose", perm=[0, 2, 1, 3])
        ctx = b.op("Reshape", [ctx, merge_shape], name=p + "/attention/context/Reshape")
        o = linear(b, ctx, hidden, hidden, p + "/attention/output")
        x = layer_norm(b, b.op("Add", [o, x], name=p + "/attention/residual/Add"), hidden,
                       p + "/attention/LayerNorm")
        h = gelu(b, linear(b, x, hidden, ffn, p + "/intermediate"), p + "/gelu")
        o = linear(b, h, ffn, hidden, p + "/output")
        x = layer_norm(b, b.op("Add", [o, x], name=p + "/output/residual/Add"), hidden,
                       p + "/output/LayerNorm")
    b.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output/Identity"))
    first = b.op("Gather", [x, b.const("pooler.idx0", np.array(0, np.int64))], name="pooler/Gather", axis=1)
    pw = b.weight("pooler.weight", (hidden, hidden), 0.05)   # [out, in], used with transB=1
    pb = b.const("pooler.bias", (0.02 * rng.standard_normal(hidden)).astype(np.float32))
    g = b.op("Gemm", [first, pw, pb], name="pooler/Gemm", transB=1)
    b.nodes.append(helper.make_node("Tanh", [g], ["pooled"], name="pooler/Tanh"))
    graph = helper.make_graph(
        b.nodes, "bert_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])],
        b.inits)
    save(graph, path, 17)


def make_mlp(path, seed):
    rng = np.random.default_rng(seed + 1)
    b = Builder(rng)
    dims = [64, 128, 128, 10]
    x = "x"
    for i in range(3):
        w = b.weight("fc%d.weight" % i, (dims[i + 1], dims[i]), 0.1)
        bias = b.const("fc%d.bias" % i, (0.05 * rng.standard_normal(dims[i + 1])).astype(np.float32))
        x = b.op("Gemm", [x, w, bias], name="fc%d/Gemm" % i, transB=1)
        if i < 2:
            x = b.op("Relu", [x], name="fc%d/Relu" % i)
    b.nodes.append(helper.make_node("Identity", [x], ["logits"], name="output/Identity"))
    graph = helper.make_graph(
        b.nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], b.inits)
    save(graph, path, 13)


def make_if(path, seed):
    rng = np.random.default_rng(seed + 2)
    w0 = numpy_helper.from_array((rng.standard_normal((32, 32)) * 0.2).astype(np.float32), "w0")
    wt = numpy_helper.from_array((rng.standard_normal((32, 16)) * 0.2).astype(np.float32), "w_then")
    we = numpy_helper.from_array((rng.standard_normal((32, 16)) * 0.2).astype(np.float32), "w_else")
    h = helper.make_node("MatMul", ["x", "w0"], ["h"], name="pre/MatMul")
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_then"], ["then_y"], name="then/MatMul")], "then_branch", [],
        [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, ["batch", 16])])
    else_g = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_else"], ["else_y0"], name="else/MatMul"),
         helper.make_node("Relu", ["else_y0"], ["else_y"], name="else/Relu")], "else_branch", [],
        [helper.make_tensor_value_info("else_y", TensorProto.FLOAT, ["batch", 16])])
    node_if = helper.make_node("If", ["cond"], ["y"], name="branch/If", then_branch=then_g, else_branch=else_g)
    graph = helper.make_graph(
        [h, node_if], "if_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])], [w0, wt, we])
    save(graph, path, 13)


def make_lstm(path, seed):
    rng = np.random.default_rng(seed + 3)
    d, h, i = 2, 32, 16
    w = numpy_helper.from_array((rng.standard_normal((d, 4 * h, i)) * 0.2).astype(np.float32), "lstm.W")
    r = numpy_helper.from_array((rng.standard_normal((d, 4 * h, h)) * 0.2).astype(np.float32), "lstm.R")
    b = numpy_helper.from_array((rng.standard_normal((d, 8 * h)) * 0.1).astype(np.float32), "lstm.B")
    head = numpy_helper.from_array((rng.standard_normal((2 * h, 8)) * 0.2).astype(np.float32), "head.W")
    shape = numpy_helper.from_array(np.array([0, 0, 2 * h], np.int64), "head.shape")
    nodes = [
        helper.make_node("LSTM", ["x", "lstm.W", "lstm.R", "lstm.B"], ["y", "y_h", "y_c"], name="lstm",
                         hidden_size=h, direction="bidirectional"),
        helper.make_node("Transpose", ["y"], ["y_t"], name="lstm/Transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["y_t", "head.shape"], ["y_r"], name="lstm/Reshape"),
        helper.make_node("MatMul", ["y_r", "head.W"], ["out"], name="head/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "lstm_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", i])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["seq", "batch", 8]),
         helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [d, "batch", h])],
        [w, r, b, head, shape])
    save(graph, path, 14)


def make_attention(path, seed):
    rng = np.random.default_rng(seed + 4)
    hid = 64
    w = numpy_helper.from_array((rng.standard_normal((hid, 3 * hid)) * 0.1).astype(np.float32), "attn.W")
    b = numpy_helper.from_array((rng.standard_normal(3 * hid) * 0.05).astype(np.float32), "attn.B")
    o = numpy_helper.from_array((rng.standard_normal((hid, hid)) * 0.1).astype(np.float32), "out.W")
    ob = numpy_helper.from_array((rng.standard_normal(hid) * 0.05).astype(np.float32), "out.B")
    nodes = [
        helper.make_node("Attention", ["x", "attn.W", "attn.B"], ["a"], name="attention", domain="com.microsoft",
                         num_heads=4),
        helper.make_node("MatMul", ["a", "out.W"], ["m"], name="out/MatMul"),
        helper.make_node("Add", ["m", "out.B"], ["y"], name="out/Add"),
    ]
    graph = helper.make_graph(
        nodes, "attention_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hid])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", hid])], [w, b, o, ob])
    save(graph, path, 13, ms=True)


def save(graph, path, opset, ms=False):
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    model = helper.make_model(graph, opset_imports=ops, producer_name="quantd-tests")
    model.ir_version = 8
    if not ms:
        onnx.checker.check_model(model)
    onnx.save(model, path)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    out = argv[1]
    seed = 1234
    if "--seed" in argv:
        seed = int(argv[argv.index("--seed") + 1])
    os.makedirs(out, exist_ok=True)
    make_bert(os.path.join(out, "bert.onnx"), seed, layers=4, hidden=256, heads=4, ffn=1024, vocab=1000)
    make_bert(os.path.join(out, "bert_small.onnx"), seed, layers=2, hidden=64, heads=2, ffn=128, vocab=200)
    make_mlp(os.path.join(out, "mlp.onnx"), seed)
    make_if(os.path.join(out, "if_model.onnx"), seed)
    make_lstm(os.path.join(out, "lstm.onnx"), seed)
    make_attention(os.path.join(out, "attention.onnx"), seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
