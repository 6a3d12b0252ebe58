#!/usr/bin/python3
"""Hostile ONNX models for tests/robust/run_robust.sh: each case is a model, its inputs (.npz),
extra `quantd infer` flags, and the error the engine must give (a regex over stderr).

Usage: make_models.py OUT_DIR  ->  OUT_DIR/<case>.onnx, OUT_DIR/<case>.npz and OUT_DIR/cases.tsv
with one line per case: name, expected ("error" or "ok"), regex, infer flags, run flag
("run": also run `quantd run` with a dynamic-quantization workflow on it).
`quantd run` is not asked for shape and index errors: on the inputs it generates, those
leave the accuracy "unavailable" (guessed symbolic dims may not fit a model) by design.
The very large models (10^6 nodes, 10^5 inputs) are written as raw protobuf, since
onnx.helper takes minutes for them."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
CASES = []
F = T.FLOAT
I64 = T.INT64


def vi(name, dt=F, shape=None):
    return h.make_tensor_value_info(name, dt, shape)


def const(name, arr):
    return h.make_node("Constant", [], [name], value=nh.from_array(np.asarray(arr), name))


def save(name, nodes, inputs, outputs, feeds, expect, regex, flags="", run=False, inits=(), opset=13, run_regex=None):
    g = h.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, os.path.join(OUT, name + ".onnx"))
    np.savez(os.path.join(OUT, name + ".npz"), **feeds)
    CASES.append((name, expect, regex or "-", flags or "-", "run" if run else "-", run_regex or "-"))


x1 = {"x": np.ones((1,), np.float32)}
x23 = {"x": np.ones((2, 3), np.float32)}

# ---- nodes without outputs / without inputs ----
save("no_outputs", [h.make_node("Mean", ["x"], [])], [vi("x", F, [1])], [vi("x", F, [1])], x1,
     "error", r"node 'Mean#0' \(Mean\) has no outputs", run=True)
save("no_inputs_relu", [h.make_node("Relu", [], ["y"])], [vi("x", F, [1])], [vi("y", F, [1])], x1,
     "error", r"node 'Relu#0' \(Relu\): required input 0 is missing", run=True)
save("no_inputs_mean", [h.make_node("Mean", [], ["y"])], [vi("x", F, [1])], [vi("y", F, [1])], x1,
     "error", r"node 'Mean#0' \(Mean\): needs at least one input", run=True)
save("no_inputs_concat", [h.make_node("Concat", [], ["y"], axis=0)], [vi("x", F, [1])], [vi("y", F, [1])], x1,
     "error", r"node 'Concat#0' \(Concat\)", run=True)
save("empty_output_name", [h.make_node("Relu", ["x"], [""]), h.make_node("Relu", ["x"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, [1])], x1, "ok", "")

# ---- absurd allocations: 10^12 elements ----
E12 = [1000000, 1000000]
save("constantofshape_1e12", [const("s", np.array(E12, np.int64)), h.make_node("ConstantOfShape", ["s"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error",
     r"node 'ConstantOfShape#1' \(ConstantOfShape\): cannot allocate output 0 \(float32 \[1000000,1000000\]\): 3725 GiB is over the tensor limit of 16 GiB",
     run=True, run_regex=r"cannot evaluate the float model: node 'ConstantOfShape#1' \(ConstantOfShape\): cannot allocate output 0 "
                         r"\(float32 \[1000000,1000000\]\): 3725 GiB is over the tensor limit of 4 GiB")
save("constantofshape_overflow", [const("s", np.array([2**62, 2**62, 4], np.int64)),
                                  h.make_node("ConstantOfShape", ["s"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"ConstantOfShape.*over the tensor limit")
save("expand_1e12", [const("s", np.array(E12, np.int64)), h.make_node("Expand", ["x", "s"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(Expand\): cannot allocate output 0 \(float32 \[1000000,1000000\]\).*over the tensor limit",
     run=True)
save("tile_1e12", [const("r", np.array([10**12], np.int64)), h.make_node("Tile", ["x", "r"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(Tile\): cannot allocate output 0 \(float32 \[1000000000000\]\).*over the tensor limit",
     run=True)
save("reshape_1e12", [const("s", np.array(E12, np.int64)), h.make_node("Reshape", ["x", "s"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(Reshape\).*1000000,1000000", run=False)
save("range_1e12", [const("a", np.array(0, np.int64)), const("b", np.array(10**12, np.int64)),
                    const("d", np.array(1, np.int64)), h.make_node("Range", ["a", "b", "d"], ["y"])],
     [vi("x", F, [1])], [vi("y", I64, None)], x1, "error", r"\(Range\): cannot allocate output 0 \(int64 \[1000000000000\]\): 7451 GiB is over the tensor limit",
     run=True)
save("range_float_inf", [const("a", np.array(0, np.float32)), const("b", np.array(np.inf, np.float32)),
                         const("d", np.array(1, np.float32)), h.make_node("Range", ["a", "b", "d"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(Range\)")
save("range_zero_delta", [const("a", np.array(0, np.int64)), const("b", np.array(10, np.int64)),
                          const("d", np.array(0, np.int64)), h.make_node("Range", ["a", "b", "d"], ["y"])],
     [vi("x", F, [1])], [vi("y", I64, None)], x1, "error", r"\(Range\).*delta")
save("pad_1e12", [const("p", np.array([0, 10**12], np.int64)), h.make_node("Pad", ["x", "p"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(Pad\): cannot allocate output 0 .*over the tensor limit")
save("onehot_depth_1e12", [const("i", np.array([1], np.int64)), const("d", np.array(10**12, np.int64)),
                           const("v", np.array([0, 1], np.float32)), h.make_node("OneHot", ["i", "d", "v"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(OneHot\): depth 1000000000000 out of range")
save("resize_scale_1e6", [const("r", np.array([], np.float32)), const("s", np.array([1e6, 1e6], np.float32)),
                          h.make_node("Resize", ["x", "r", "s"], ["y"])],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(Resize\): cannot allocate output 0 .*over the tensor limit")
save("upsample_scale_1e9", [const("s", np.array([1e9, 1e9], np.float32)), h.make_node("Upsample", ["x", "s"], ["y"])],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(Upsample\): cannot allocate output 0 .*over the tensor limit", opset=9)
save("eyelike_huge_k", [h.make_node("EyeLike", ["x"], ["y"], k=-(2**62))], [vi("x", F, [2, 3])], [vi("y", F, None)],
     x23, "ok", "")
save("matmul_huge", [const("s", np.array([1, 100000], np.int64)), h.make_node("Expand", ["x", "s"], ["a"]),
                     const("t", np.array([100000, 1], np.int64)), h.make_node("Expand", ["x", "t"], ["b"]),
                     h.make_node("MatMul", ["b", "a"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error", r"\(MatMul\): cannot allocate output 0 \(float32 \[100000,100000\]\).*over the tensor limit of 1 GiB",
     flags="--max-tensor-mb 1024")
# the limits are options: a 4 MiB tensor under --max-tensor-mb 1, two 64 MiB ones under --max-memory-mb 100
save("tensor_limit_flag", [const("s", np.array([1 << 20], np.int64)), h.make_node("ConstantOfShape", ["s"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error",
     r"cannot allocate output 0 \(float32 \[1048576\]\): 4 MiB is over the tensor limit of 1 MiB \(max_tensor_bytes, --max-tensor-mb\)",
     flags="--max-tensor-mb 1")
save("memory_limit_flag", [const("s", np.array([1 << 24], np.int64)), h.make_node("ConstantOfShape", ["s"], ["a"]),
                           h.make_node("Relu", ["a"], ["b"]), h.make_node("Add", ["a", "b"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error",
     r"node 'Relu#2' \(Relu\): cannot allocate output 0 \(float32 \[16777216\]\): 64 MiB more with 64 MiB already held is over the memory limit of 100 MiB",
     flags="--max-memory-mb 100")
save("memory_limit_ok", [const("s", np.array([1 << 20], np.int64)), h.make_node("ConstantOfShape", ["s"], ["a"]),
                         h.make_node("Relu", ["a"], ["b"]), h.make_node("Add", ["a", "b"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "ok", "", flags="--max-memory-mb 100")

# ---- indices out of range ----
def idx_case(name, op, data_shape, idx, regex, attrs=None, extra=(), opset=13, feeds=None, run=False):
    data = np.arange(int(np.prod(data_shape)), dtype=np.float32).reshape(data_shape)
    nodes = [const("i", np.asarray(idx, np.int64))]
    ins = ["x", "i"]
    for k, v in extra:
        nodes.append(const(k, v))
        ins.append(k)
    nodes.append(h.make_node(op, ins, ["y"], **(attrs or {})))
    save(name, nodes, [vi("x", F, list(data_shape))], [vi("y", F, None)], {"x": data}, "error", regex,
         opset=opset, run=run)


idx_case("gather_1e9", "Gather", [4, 3], [10**9], r"\(Gather\): index 1000000000 out of range \[-4, 4\)", run=False)
idx_case("gather_neg", "Gather", [4, 3], [-10**9], r"\(Gather\): index -1000000000 out of range")
idx_case("gather_axis", "Gather", [4, 3], [0], r"\(Gather\): axis out of range", attrs={"axis": 5})
idx_case("gatherelements_1e9", "GatherElements", [2, 3], [[0, 10**9, 1]], r"\(GatherElements\): index 1000000000 out of range")
idx_case("gathernd_1e9", "GatherND", [2, 3], [[1, 10**9]], r"\(GatherND\): index 1000000000 out of range")
idx_case("gathernd_deep", "GatherND", [2, 3], [[0, 0, 0]], r"\(GatherND\)")
idx_case("scatterelements_1e9", "ScatterElements", [2, 3], [[0, 10**9, 1]], r"\(ScatterElements\): index 1000000000 out of range",
         extra=[("u", np.ones((1, 3), np.float32))])
idx_case("scatternd_1e9", "ScatterND", [2, 3], [[10**9]], r"\(ScatterND\): index 1000000000 out of range",
         extra=[("u", np.ones((1, 3), np.float32))])
idx_case("scatternd_shape", "ScatterND", [2, 3], [[1]], r"\(ScatterND\)",
         extra=[("u", np.ones((5, 5), np.float32))])
idx_case("slice_axis", "Slice", [2, 3], [0], r"\(Slice\): bad axis 7",
         extra=[("e", np.array([1], np.int64)), ("a", np.array([7], np.int64))])
idx_case("slice_step0", "Slice", [2, 3], [0], r"\(Slice\): step .*0",
         extra=[("e", np.array([1], np.int64)), ("a", np.array([0], np.int64)), ("st", np.array([0], np.int64))])
idx_case("pad_negative", "Pad", [2, 3], [0, -10**9, 0, 0], r"\(Pad\)")
idx_case("split_sizes", "Split", [2, 3], [2, 10**9], r"\(Split\)", attrs={"axis": 1})
idx_case("topk_1e9", "TopK", [2, 3], [10**9], r"\(TopK\): K=1000000000 out of range \[0, 3\]")
idx_case("compress_long", "Compress", [2, 3], [1, 0, 1, 1, 1, 1, 1], r"\(Compress\)", attrs={"axis": 0})
idx_case("tile_negative", "Tile", [2, 3], [-1, 2], r"\(Tile\)")
idx_case("expand_incompatible", "Expand", [2, 3], [7, 5], r"\(Expand\)")
idx_case("reshape_two_minus1", "Reshape", [2, 3], [-1, -1], r"\(Reshape\)")
idx_case("reshape_dim_oob", "Reshape", [2, 3], [0, 0, 0], r"\(Reshape\)")
save("onehot_index_oob", [const("i", np.array([10**9, -10**9, 2], np.int64)), const("d", np.array(3, np.int64)),
                          const("v", np.array([0, 1], np.float32)), h.make_node("OneHot", ["i", "d", "v"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "ok", "")
save("transpose_perm", [h.make_node("Transpose", ["x"], ["y"], perm=[0, 10**9])], [vi("x", F, [2, 3])],
     [vi("y", F, None)], x23, "error", r"\(Transpose\): .*perm")
save("depthtospace_zero", [h.make_node("DepthToSpace", ["x"], ["y"], blocksize=0)], [vi("x", F, [1, 4, 1, 1])],
     [vi("y", F, None)], {"x": np.ones((1, 4, 1, 1), np.float32)}, "error", r"\(DepthToSpace\)")
save("conv_huge_pads", [const("w", np.ones((1, 1, 1, 1), np.float32)),
                        h.make_node("Conv", ["x", "w"], ["y"], pads=[10**9, 10**9, 10**9, 10**9])],
     [vi("x", F, [1, 1, 2, 2])], [vi("y", F, None)], {"x": np.ones((1, 1, 2, 2), np.float32)}, "error",
     r"\(Conv\)")
save("conv_stride0", [const("w", np.ones((1, 1, 1, 1), np.float32)),
                      h.make_node("Conv", ["x", "w"], ["y"], strides=[0, 0])],
     [vi("x", F, [1, 1, 2, 2])], [vi("y", F, None)], {"x": np.ones((1, 1, 2, 2), np.float32)}, "error",
     r"\(Conv\).*stride")
save("conv_dilation_huge", [const("w", np.ones((1, 1, 2, 2), np.float32)),
                            h.make_node("Conv", ["x", "w"], ["y"], dilations=[2**40, 2**40])],
     [vi("x", F, [1, 1, 2, 2])], [vi("y", F, None)], {"x": np.ones((1, 1, 2, 2), np.float32)}, "error",
     r"\(Conv\)")
save("maxpool_kernel_huge", [h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[10**9, 10**9])],
     [vi("x", F, [1, 1, 2, 2])], [vi("y", F, None)], {"x": np.ones((1, 1, 2, 2), np.float32)}, "error",
     r"\(MaxPool\)")
save("avgpool_pads_huge", [h.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 1], pads=[2**40] * 4)],
     [vi("x", F, [1, 1, 2, 2])], [vi("y", F, None)], {"x": np.ones((1, 1, 2, 2), np.float32)}, "error",
     r"\(AveragePool\)")

# ---- loops that never end, or grow without bound ----
def loop_model(name, trip, body_nodes, body_outs, scan, regex, flags, run=False):
    body = h.make_graph(body_nodes, "body", [vi("i", I64, []), vi("c", T.BOOL, []), vi("v", F, [1])],
                        body_outs)
    nodes = [const("M", np.array(trip, np.int64)), const("C", np.array(True)),
             h.make_node("Loop", ["M", "C", "x"], ["y"] + (["s"] if scan else []), body=body)]
    outs = [vi("y", F, None)] + ([vi("s", F, None)] if scan else [])
    save(name, nodes, [vi("x", F, [1])], outs, x1, "error", regex, flags=flags, run=run)


loop_model("loop_forever", 2**62, [h.make_node("Identity", ["c"], ["co"]), h.make_node("Neg", ["v"], ["vo"])],
           [vi("co", T.BOOL, []), vi("vo", F, [1])], False,
           r"model ran longer than the time limit of 1 s \(max_seconds, --max-seconds\)", "--max-seconds 1",
           run=True)
loop_model("loop_empty_body", 2**62, [], [vi("c", T.BOOL, []), vi("v", F, [1])], False,
           r"\(Loop\): model ran longer than the time limit of 0\.5 s", "--max-seconds 0.5")
loop_model("loop_scan_grows", 2**62,
           [h.make_node("Identity", ["c"], ["co"]), h.make_node("Neg", ["v"], ["vo"]),
            const("sh", np.array([1 << 18], np.int64)), h.make_node("Expand", ["v", "sh"], ["so"])],
           [vi("co", T.BOOL, []), vi("vo", F, [1]), vi("so", F, None)], True,
           r"\(Loop\): cannot allocate the loop's scan outputs: 1 MiB more with .* is over the memory limit of 64 MiB", "--max-memory-mb 64")
loop_model("loop_scan_shape_changes", 3,
           [h.make_node("Identity", ["c"], ["co"]), h.make_node("Concat", ["v", "v"], ["vo"], axis=0),
            h.make_node("Identity", ["v"], ["so"])],
           [vi("co", T.BOOL, []), vi("vo", F, None), vi("so", F, None)], True,
           r"\(Loop\): scan output 0 changes shape across iterations", "")
# a loop inside an If branch inside a loop: the deadline reaches every level
inner = h.make_graph([const("M2", np.array(2**62, np.int64)), const("C2", np.array(True)),
                      h.make_node("Loop", ["M2", "C2", "v"], ["w"], body=h.make_graph(
                          [h.make_node("Identity", ["c3"], ["c3o"]), h.make_node("Abs", ["v3"], ["v3o"])], "b3",
                          [vi("i3", I64, []), vi("c3", T.BOOL, []), vi("v3", F, [1])],
                          [vi("c3o", T.BOOL, []), vi("v3o", F, [1])]))],
                     "then", [], [vi("w", F, None)])
other = h.make_graph([h.make_node("Identity", ["v"], ["w2"])], "else", [], [vi("w2", F, None)])
loop_model("loop_if_loop_forever", 2**62,
           [h.make_node("Identity", ["c"], ["co"]), h.make_node("If", ["c"], ["vo"], then_branch=inner, else_branch=other)],
           [vi("co", T.BOOL, []), vi("vo", F, None)], False,
           r"model ran longer than the time limit of 1 s", "--max-seconds 1")

# ---- graphs that reference their own outputs ----
save("cycle_self", [h.make_node("Add", ["x", "y"], ["y"])], [vi("x", F, [1])], [vi("y", F, [1])], x1, "error",
     r"node 'Add#0': input 'y' is its own output \(a cycle\)", run=True,
     run_regex=r"graph 'cycle_self' has a cycle through node 'y' \(Add\)")
save("cycle_chain", [h.make_node("Relu", ["c"], ["a"], name="ra"), h.make_node("Relu", ["a"], ["b"], name="rb"),
                     h.make_node("Add", ["b", "x"], ["c"], name="rc")],
     [vi("x", F, [1])], [vi("c", F, [1])], x1, "error",
     r"node 'ra': input 'c' is produced by a later node 'rc' \(a cycle, or nodes not in topological order\)", run=True,
     run_regex=r"graph 'cycle_chain' has a cycle through node 'ra' \(Relu\)")
body = h.make_graph([h.make_node("Add", ["v", "q"], ["p"], name="bp"), h.make_node("Relu", ["p"], ["q"], name="bq"),
                     h.make_node("Identity", ["c"], ["co"])], "body",
                    [vi("i", I64, []), vi("c", T.BOOL, []), vi("v", F, [1])], [vi("co", T.BOOL, []), vi("q", F, [1])])
save("cycle_in_subgraph", [const("M", np.array(3, np.int64)), const("C", np.array(True)),
                           h.make_node("Loop", ["M", "C", "x"], ["y"], body=body)],
     [vi("x", F, [1])], [vi("y", F, None)], x1, "error",
     r"in subgraph 'body' of node 'Loop#2': node 'bp': input 'q' is produced by a later node 'bq'", run=True,
     run_regex=r"subgraph 'body' of node 'Loop#y': graph 'body' has a cycle through node 'bp' \(Add\)")
save("dangling_input", [h.make_node("Relu", ["nowhere"], ["y"])], [vi("x", F, [1])], [vi("y", F, [1])], x1, "error",
     r"node 'Relu#0': input 'nowhere' is not produced by an earlier node", run=True,
     run_regex=r"input 0 'nowhere' is not produced by any node")
save("output_defined_twice", [h.make_node("Relu", ["x"], ["y"]), h.make_node("Neg", ["x"], ["y"])],
     [vi("x", F, [1])], [vi("y", F, [1])], x1, "error", r"output 'y' is defined twice")

# ---- shapes that do not fit inside the graph ----
save("shape_add", [const("b", np.ones((4, 5), np.float32)), h.make_node("Add", ["x", "b"], ["y"])],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(Add\).*(2,3|2 x 3).*(4,5|4 x 5)", run=False)
save("shape_matmul", [const("b", np.ones((4, 5), np.float32)), h.make_node("MatMul", ["x", "b"], ["y"])],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(MatMul\)", run=False)
save("shape_concat", [const("b", np.ones((4, 5), np.float32)), h.make_node("Concat", ["x", "b"], ["y"], axis=0)],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(Concat\)")
save("shape_gemm", [const("b", np.ones((4, 5), np.float32)), h.make_node("Gemm", ["x", "b"], ["y"])],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(Gemm\)")
save("shape_conv", [const("w", np.ones((1, 7, 1, 1), np.float32)), h.make_node("Conv", ["x", "w"], ["y"])],
     [vi("x", F, [1, 1, 2, 2])], [vi("y", F, None)], {"x": np.ones((1, 1, 2, 2), np.float32)}, "error",
     r"\(Conv\): weight \[1,7,1,1\] does not match input \[1,1,2,2\] with group 1")
save("shape_input", [h.make_node("Relu", ["x"], ["y"])], [vi("x", F, [4, 4])], [vi("y", F, None)], x23, "error",
     r"input 'x' has shape \[2,3\], the model expects \[4,4\]")
save("shape_where", [const("b", np.ones((4, 5), np.float32)), const("cc", np.ones((2, 3), bool)),
                     h.make_node("Where", ["cc", "x", "b"], ["y"])],
     [vi("x", F, [2, 3])], [vi("y", F, None)], x23, "error", r"\(Where\)")


# ---- very large graphs (raw protobuf: onnx.helper is too slow at this size) ----
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fld(num, payload):  # length-delimited field
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def s(num, text):
    return fld(num, text.encode())


def vi_raw(name):  # ValueInfoProto: name, type.tensor_type.elem_type = FLOAT, shape [1]
    shape = fld(2, fld(1, bytes([0x08, 0x01])))  # TensorShapeProto.dim{dim_value: 1}
    tensor = bytes([0x08, 0x01]) + shape
    return s(1, name) + fld(2, fld(1, tensor))


def model_raw(path, graph):
    opset = fld(8, s(1, "") + bytes([0x10, 13]))
    with open(path, "wb") as f:
        f.write(bytes([0x08, 0x08]) + opset + fld(7, graph))


N = 10**6
nodes = [s(1, "x" if i == 0 else "t%d" % (i - 1)) + s(2, "t%d" % i) + s(4, "Relu") for i in range(N)]
model_raw(os.path.join(OUT, "nodes_1e6.onnx"),
          b"".join(fld(1, n) for n in nodes) + s(2, "big") + fld(11, vi_raw("x")) + fld(12, vi_raw("t%d" % (N - 1))))
np.savez(os.path.join(OUT, "nodes_1e6.npz"), x=np.array([-2.0], np.float32))
CASES.append(("nodes_1e6", "ok", "-", "-", "-", "-"))
# the same chain with a cycle at its very end: found without quadratic work
nodes[0] = s(1, "t%d" % (N - 1)) + s(2, "t0") + s(4, "Relu")
model_raw(os.path.join(OUT, "nodes_1e6_cycle.onnx"),
          b"".join(fld(1, n) for n in nodes) + s(2, "big") + fld(11, vi_raw("x")) + fld(12, vi_raw("t%d" % (N - 1))))
np.savez(os.path.join(OUT, "nodes_1e6_cycle.npz"), x=np.array([-2.0], np.float32))
CASES.append(("nodes_1e6_cycle", "error", r"node 'Relu#0': input 't999999' is produced by a later node 'Relu'", "-", "run",
              r"graph 'big' has a cycle through node 't0' \(Relu\)"))

# quantd run on a long chain with something to quantize (ONNX Runtime's own load time grows
# faster than linearly with the node count: 2.6 s at 2*10^4 Relus, 19 s at 10^5, minutes at 10^6)
N2 = 20000
w = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
nodes = [h.make_node("MatMul", ["x", "w"], ["t0"])] + \
    [h.make_node("Relu", ["t%d" % i], ["t%d" % (i + 1)]) for i in range(N2)]
save("chain_2e4_matmul", nodes, [vi("x", F, [1, 4])], [vi("t%d" % N2, F, [1, 4])],
     {"x": np.array([[1, -2, 3, 0.5]], np.float32)}, "ok", "", run=True, inits=[nh.from_array(w, "w")])

NI = 10**5
model_raw(os.path.join(OUT, "inputs_1e5.onnx"),
          fld(1, s(1, "x%d" % (NI - 1)) + s(1, "x0") + s(2, "y") + s(4, "Add")) + s(2, "wide") +
          b"".join(fld(11, vi_raw("x%d" % i)) for i in range(NI)) + fld(12, vi_raw("y")))
np.savez(os.path.join(OUT, "inputs_1e5.npz"), x0=np.array([1.0], np.float32))
CASES.append(("inputs_1e5", "error", r"missing input 'x1'", "-", "-", "-"))
# every input given (one .npz of 10^5 arrays): runs
import zipfile
with zipfile.ZipFile(os.path.join(OUT, "inputs_1e5_all.npz"), "w", zipfile.ZIP_STORED) as z:
    hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
    hdr = hdr + b" " * (63 - len(hdr) - 10) + b"\n"
    blob = b"\x93NUMPY\x01\x00" + bytes([len(hdr), 0]) + hdr + np.array([2.0], np.float32).tobytes()
    for i in range(NI):
        z.writestr("x%d.npy" % i, blob)
os.symlink("inputs_1e5.onnx", os.path.join(OUT, "inputs_1e5_all.onnx"))
CASES.append(("inputs_1e5_all", "ok", "-", "-", "run", "-"))

with open(os.path.join(OUT, "cases.tsv"), "w") as f:
    for c in CASES:
        f.write("\t".join(c) + "\n")
print(len(CASES), "cases")
