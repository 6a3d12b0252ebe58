#!/usr/bin/python3
"""A GPT-2-style decoder and token data for the weight-only suite (onnx + numpy only).

usage: /usr/bin/python3 tests/weightonly/make_decoder.py OUT_DIR [--layers N] [--hidden H]

Writes OUT_DIR/gpt.onnx: token + position embeddings, N pre-LayerNorm blocks (causal
self-attention with a fused QKV MatMul, MLP 4H with GELU), a final LayerNorm and an LM head
(the token embedding transposed, as GPT-2 ties them, stored as its own initializer);
input input_ids int64 [batch, seq] (seq <= 128), output logits [batch, seq, vocab].
The weights are not plain Gaussians: every weight matrix has per-input-channel scales
(log-normal) and the LayerNorm gains have a few outlier channels, the anisotropy trained
transformers show (and what calibration-based methods exploit).
Also OUT_DIR/gpt_calib.npz and gpt_held.npz: token sequences from a seeded Zipf bigram
chain (different seeds; 32 and 16 sequences of 32 tokens), one array input_ids.
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from make_transformer import Builder, gelu, save  # noqa: E402


def aniso_weight(b, name, din, dout, std):
    ch = np.exp(0.5 * b.rng.standard_normal(din)).astype(np.float32)
    w = (b.rng.standard_normal((din, dout)) * std).astype(np.float32) * ch[:, None] / ch.mean()
    return b.const(name, w.astype(np.float32))


def ln(b, x, hidden, prefix, outliers=4):
    g = (1.0 + 0.1 * b.rng.standard_normal(hidden)).astype(np.float32)
    g[b.rng.choice(hidden, outliers, replace=False)] *= 6.0
    be = (0.02 * b.rng.standard_normal(hidden)).astype(np.float32)
    return b.op("LayerNormalization", [x, b.const(prefix + ".g", g), b.const(prefix + ".b", be)], name=prefix,
                axis=-1, epsilon=1e-5)


def linear(b, x, din, dout, prefix, std):
    w = aniso_weight(b, prefix + ".weight", din, dout, std)
    bias = b.const(prefix + ".bias", (0.01 * b.rng.standard_normal(dout)).astype(np.float32))
    return b.op("Add", [b.op("MatMul", [x, w], name=prefix + "/MatMul"), bias], name=prefix + "/Add")


def make_gpt(path, seed, layers, hidden, heads, vocab, max_pos=128):
    rng = np.random.default_rng(seed)
    b = Builder(rng)
    hd = hidden // heads
    wte = (rng.standard_normal((vocab, hidden)) * 0.02).astype(np.float32)
    b.const("wte", wte)
    b.const("wpe", (rng.standard_normal((max_pos, hidden)) * 0.02).astype(np.float32))
    x = b.op("Gather", ["wte", "input_ids"], name="wte/Gather", axis=0)
    seq = b.op("Gather", [b.op("Shape", ["input_ids"], name="Shape"), b.const("i1", np.array(1, np.int64))],
               name="seq/Gather", axis=0)
    rg = b.op("Range", [b.const("z", np.array(0, np.int64)), seq, b.const("one", np.array(1, np.int64))],
              name="pos/Range")
    x = b.op("Add", [x, b.op("Gather", ["wpe", rg], name="wpe/Gather", axis=0)], name="emb/Add")
    mask = np.triu(np.full((max_pos, max_pos), -1e4, np.float32), 1)
    seq1 = b.op("Unsqueeze", [seq, b.const("ax0", np.array([0], np.int64))], name="seq/Unsqueeze")
    ends = b.op("Concat", [seq1, seq1], name="mask/ends", axis=0)
    cmask = b.op("Slice", [b.const("causal", mask), b.const("mask_starts", np.array([0, 0], np.int64)), ends],
                 name="mask/Slice")
    split = b.const("split_shape", np.array([0, 0, 3, heads, hd], np.int64))
    merge = b.const("merge_shape", np.array([0, 0, hidden], np.int64))
    for li in range(layers):
        p = "h%d" % li
        h = ln(b, x, hidden, p + "/ln_1")
        qkv = linear(b, h, hidden, 3 * hidden, p + "/attn/c_attn", 0.05)
        t = b.op("Transpose", [b.op("Reshape", [qkv, split], name=p + "/qkv/Reshape")], name=p + "/qkv/Transpose",
                 perm=[2, 0, 3, 1, 4])   # [3, batch, heads, seq, hd]
        q, k, v = b.op("Split", [t], name=p + "/qkv/Split", n_out=3, axis=0)
        sq = b.const(p + ".ax0", np.array([0], np.int64))
        q = b.op("Squeeze", [q, sq], name=p + "/q/Squeeze")
        k = b.op("Squeeze", [k, sq], name=p + "/k/Squeeze")
        v = b.op("Squeeze", [v, sq], name=p + "/v/Squeeze")
        kt = b.op("Transpose", [k], name=p + "/k/Transpose", perm=[0, 1, 3, 2])
        s = b.op("MatMul", [q, kt], name=p + "/attn/scores/MatMul")
        s = b.op("Mul", [s, b.const(p + ".scale", np.array(1.0 / np.sqrt(hd), np.float32))], name=p + "/scale/Mul")
        s = b.op("Add", [s, cmask], name=p + "/mask/Add")
        pr = b.op("Softmax", [s], name=p + "/attn/Softmax", axis=-1)
        c = b.op("MatMul", [pr, v], name=p + "/attn/ctx/MatMul")
        c = b.op("Reshape", [b.op("Transpose", [c], name=p + "/ctx/Transpose", perm=[0, 2, 1, 3]), merge],
                 name=p + "/ctx/Reshape")
        x = b.op("Add", [x, linear(b, c, hidden, hidden, p + "/attn/c_proj", 0.05 / np.sqrt(2 * layers))],
                 name=p + "/res1/Add")
        h = ln(b, x, hidden, p + "/ln_2")
        m = gelu(b, linear(b, h, hidden, 4 * hidden, p + "/mlp/c_fc", 0.05), p + "/gelu")
        x = b.op("Add", [x, linear(b, m, 4 * hidden, hidden, p + "/mlp/c_proj", 0.05 / np.sqrt(2 * layers))],
                 name=p + "/res2/Add")
    x = ln(b, x, hidden, "ln_f", outliers=0)
    b.const("lm_head.weight", np.ascontiguousarray(wte.T))
    b.nodes.append(helper.make_node("MatMul", [x, "lm_head.weight"], ["logits"], name="lm_head/MatMul"))
    graph = helper.make_graph(
        b.nodes, "gpt_decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
        b.inits)
    save(graph, path, 17)


def tokens(seed, n, seq, vocab):
    rng = np.random.default_rng(seed)
    # Zipf bigram chain: each token has its own preferred successors
    ranks = 1.0 / np.arange(1, vocab + 1) ** 1.1
    succ = np.stack([rng.permutation(vocab)[:64] for _ in range(vocab)])
    p = ranks[:64] / ranks[:64].sum()
    out = np.zeros((n, seq), np.int64)
    for i in range(n):
        t = rng.choice(vocab, p=ranks / ranks.sum())
        for j in range(seq):
            out[i, j] = t
            t = succ[t, rng.choice(64, p=p)] if rng.random() < 0.9 else rng.integers(vocab)
    return out


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    out = argv[1]
    layers = int(argv[argv.index("--layers") + 1]) if "--layers" in argv else 4
    hidden = int(argv[argv.index("--hidden") + 1]) if "--hidden" in argv else 512
    vocab = 2048
    os.makedirs(out, exist_ok=True)
    make_gpt(os.path.join(out, "gpt.onnx"), 4321, layers, hidden, hidden // 64, vocab)
    cal, held = tokens(11, 32, 32, vocab), tokens(12, 16, 32, vocab)
    rows = {tuple(r) for r in cal}
    assert not any(tuple(r) in rows for r in held), "held-out sequence also in calibration data"
    np.savez(os.path.join(out, "gpt_calib.npz"), input_ids=cal)
    np.savez(os.path.join(out, "gpt_held.npz"), input_ids=held)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
