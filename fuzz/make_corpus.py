#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets this file owns into fuzz/corpus/<name>/:
workflow (workflows from README.md and the tests), npz (files written by numpy's savez /
savez_compressed), tar (tars of ONNX test_data_set_* folders) and http (one or more
requests for every route in api/routes.def, with the bearer token and the fixture ids of
fuzz/fuzz_http.c). Running it again rewrites the same bytes. Regression
inputs (crash-*, leak-*, timeout-*) that the fuzzers found are kept beside the seeds and
never touched here.
Usage: /usr/bin/python3 fuzz/make_corpus.py"""
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(kind, name, data):
    d = os.path.join(CORPUS, kind)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- workflows ----
WORKFLOWS = {
    "readme_dynamic": {"passes": {"q": {"type": "OnnxDynamicQuantization", "per_channel": True}}},
    "readme_static": {"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib",
                                       "quant_format": "QDQ", "per_channel": True,
                                       "calibrate_method": "Entropy"}},
                      "data_configs": {"calib": {"dataset": "dst_calib", "batch_size": 8}}},
    "readme_api": {"model": "mdl_f29bd270dbf961d0",
                   "passes": {"quantize": {"type": "OnnxDynamicQuantization", "precision": "int8",
                                           "per_channel": True, "quant_format": "QOperator"}}},
    "static_s8u8": {"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib",
                                     "activation_type": "int8", "precision": "uint8"}},
                    "data_configs": {"calib": {"dataset": "dst_calib"}}},
    "static_strided": {"passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib",
                                        "extra_options": {"CalibStridedMinMax": 4}}},
                       "data_configs": {"calib": {"dataset": "dst_calib"}}},
    "onnxquant": {"passes": {"q": {"type": "OnnxQuantization", "data_config": "calib"}},
                  "data_configs": [{"name": "calib", "dataset": "dst_td", "batch_size": 2}]},
    "onnxquant_dynamic": {"passes": {"q": {"type": "OnnxQuantization", "quant_mode": "dynamic",
                                           "quant_format": "QDQ", "op_types_to_quantize": ["Conv"]}}},
    "bad_extra": {"passes": {"q": {"type": "OnnxDynamicQuantization", "extra_options": {"Nope": 1}}}},
    "static_full": {
        "model": "mdl_00000000000000a1",
        "input_model": {"type": "ONNXModel", "model_path": "model.onnx"},
        "data_configs": {
            "calib": {"dataset": "dst_calib", "type": "HuggingfaceContainer",
                      "dataloader_config": {"batch_size": 4}},
            "held": {"dataset": "dst_bad"}},
        "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib",
                         "quant_format": "QOperator", "per_channel": "SEARCHABLE_VALUES",
                         "calibrate_method": ["MinMax", "Percentile"], "reduce_range": "DEFAULT_VALUE",
                         "nodes_to_exclude": ["n1"], "op_types_to_quantize": ["MatMul", "Add"],
                         "tensor_quant_overrides": {"x": [{"rmin": -1.0, "rmax": 1.0}]},
                         "min_real_range": 0.0001,
                         "extra_options": {"ActivationSymmetric": True, "CalibPercentile": 99.9,
                                           "CalibNumBins": 512, "TensorQuantOverrides": {}}}},
        "evaluator": {"metrics": [{"name": "acc", "type": "accuracy", "sub_types": [
            {"name": "accuracy_score", "priority": 1, "goal": {"type": "max-degradation", "value": 0.01}}],
            "data_config": "held"}]},
        "search_strategy": {"execution_order": "joint", "sampler": "tpe", "max_iter": 4,
                            "stop_when_goals_met": True},
        "output_dir": "out", "log_severity_level": 1},
    "alternatives": {"passes": {"q": [{"type": "OnnxDynamicQuantization", "weight_type": "QUInt8"},
                                      {"type": "OnnxDynamicQuantization", "precision": "int4",
                                       "save_as_external_data": True, "size_threshold": 0}]}},
    "inline_dc": {"passes": {"q": {"type": "OnnxStaticQuantization",
                                   "data_config": {"name": "c", "dataset": "dst_td",
                                                   "user_script": "u.py"}}}},
    "not_impl": {"passes": {"a": {"type": "IncStaticQuantization"}, "b": {"type": "VitisAIQuantization"},
                            "c": {"type": "OnnxMatMulNBits", "block_size": 32}}},
    "olive_file": {
        "input_model": {"type": "ONNXModel", "config": {"model_path": "m.onnx"}},
        "systems": {"local_system": {"type": "LocalSystem", "config": {"accelerators": [{"device": "cpu"}]}}},
        "data_configs": [{"name": "calib_data", "type": "HuggingfaceContainer",
                          "load_dataset_config": {"data_name": "glue"}}],
        "datasets": {"calib_data": "dst_calib"},
        "passes": {"conv": {"type": "OnnxConversion", "target_opset": 13},
                   "q": {"type": "OnnxStaticQuantization", "data_config": "calib_data"}},
        "pass_flows": [["conv", "q"]], "unsupported_passes": "skip",
        "engine": {"search_strategy": {"execution_order": "joint", "sampler": "sequential", "max_iter": 3},
                   "evaluate_input_model": False, "cache_dir": "cache", "output_dir": "out"},
        "limits": {"max_job_seconds": 60, "max_job_memory_mb": 512, "max_output_mb": 64}},
    "olive_bad_types": {"systems": 3, "host": [1], "engine": 2, "input_model": {"type": 5},
                        "pass_flows": [["missing"]], "limits": {"max_job_seconds": 0, "x": 1},
                        "passes": {"a": {"type": "OnnxDynamicQuantization", "per_chanel": True}}},
    "olive_list": {"data_configs": [{"name": "c", "dataset": "d", "load_dataset_config": {}},
                                    {"name": "c", "dataset": "e"}],
                   "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calbi"}}},
}


def workflows():
    for name, wf in WORKFLOWS.items():
        put("workflow", name + ".json", json.dumps(wf, indent=1))


# ---- npz ----
def npz_bytes(compressed, **arrays):
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()


def npzs():
    x = np.arange(32, dtype=np.float32).reshape(8, 4)
    ids = (np.arange(8, dtype=np.int64) % 5)
    put("npz", "stored.npz", npz_bytes(False, x=x, ids=ids, labels=ids.copy()))
    put("npz", "deflated.npz", npz_bytes(True, x=x, ids=ids))
    put("npz", "fortran.npz", npz_bytes(False, x=np.asfortranarray(np.arange(12, dtype=np.float64).reshape(2, 3, 2))))
    put("npz", "dtypes.npz", npz_bytes(True, **{n: np.arange(6).astype(t).reshape(6, 1) for n, t in
                                                [("f2", np.float16), ("i1", np.int8), ("u1", np.uint8),
                                                 ("i2", np.int16), ("u2", np.uint16), ("i4", np.int32),
                                                 ("u4", np.uint32), ("u8", np.uint64), ("b1", np.bool_)]}))
    put("npz", "input_n.npz", npz_bytes(False, input_0=np.zeros((3, 5), np.uint8),
                                        a=np.ones((3, 7), np.float32), b=np.arange(3, dtype=np.int64)))
    put("npz", "fixed_batch.npz", npz_bytes(False, x=np.ones((4, 3, 2), np.float32)))
    put("npz", "empty.npz", npz_bytes(False))
    put("npz", "zero_rows.npz", npz_bytes(False, x=np.zeros((0, 4), np.float32)))
    put("npz", "scalar.npz", npz_bytes(False, s=np.float32(3)))
    put("npz", "big_endian.npz", npz_bytes(False, x=np.arange(4, dtype=">f4")))
    put("npz", "bomb.npz", npz_bytes(True, big=np.zeros((256, 1024), np.float32)))
    # a .npy v2 header (numpy writes it when the header does not fit v1)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
        hdr += " " * (64 - (12 + len(hdr) + 1) % 64) + "\n"
        npy = b"\x93NUMPY\x02\x00" + len(hdr).to_bytes(4, "little") + hdr.encode() + np.ones(4, np.float32).tobytes()
        z.writestr(zipfile.ZipInfo("v2.npy", date_time=(1980, 1, 1, 0, 0, 0)), npy)
    put("npz", "npy_v2.npz", b.getvalue())
    # zip64 records, as numpy writes for huge arrays (forced here on a small one)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", allowZip64=True) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.arange(6, dtype=np.int32).reshape(3, 2))
    put("npz", "zip64.npz", b.getvalue())


# ---- tars of test_data_set_* folders ----
def pb(arr, name=None):
    t = numpy_helper.from_array(arr, name or "")
    return t.SerializeToString()


def tar_bytes(files, fmt=tarfile.USTAR_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        dirs = set()
        for path, data in files:
            d = os.path.dirname(path)
            if d and d not in dirs:
                dirs.add(d)
                ti = tarfile.TarInfo(d)
                ti.type = tarfile.DIRTYPE
                ti.mtime = 0
                t.addfile(ti)
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def tars():
    x = lambda n, k: np.arange(n * 4, dtype=np.float32).reshape(n, 4) + k
    put("tar", "two_sets.tar", tar_bytes([
        ("m/test_data_set_0/input_0.pb", pb(x(2, 0), "x")),
        ("m/test_data_set_0/input_1.pb", pb(np.arange(2, dtype=np.int64))),
        ("m/test_data_set_0/output_0.pb", pb(np.zeros((2, 2), np.float32))),
        ("m/test_data_set_1/input_0.pb", pb(x(3, 6), "x")),
        ("m/test_data_set_1/input_1.pb", pb(np.arange(3, dtype=np.int64))),
        ("m/test_data_set_1/output_0.pb", pb(np.zeros((3, 2), np.float32))),
        ("m/model.onnx", b"not read"),
    ]))
    put("tar", "positional.tar", tar_bytes([
        ("./test_data_set_0/input_0.pb", pb(np.zeros((1, 5), np.uint8))),
        ("./test_data_set_0/input_1.pb", pb(np.ones((1, 7), np.float32), "a")),
        ("./test_data_set_0/input_2.pb", pb(np.arange(1, dtype=np.int64), "b")),
        ("./test_data_set_10/input_0.pb", pb(np.zeros((2, 5), np.uint8))),
        ("./test_data_set_10/input_1.pb", pb(np.ones((2, 7), np.float32), "a")),
        ("./test_data_set_10/input_2.pb", pb(np.arange(2, dtype=np.int64), "b")),
    ]))
    put("tar", "scalars.tar", tar_bytes([
        ("t/test_data_set_%d/input_0.pb" % i, pb(np.array(float(i), np.float32), "s")) for i in range(3)]))
    long_dir = "very/" * 30 + "test_data_set_0"
    put("tar", "gnu_longname.tar", tar_bytes([(long_dir + "/input_0.pb", pb(x(2, 1), "x"))],
                                             fmt=tarfile.GNU_FORMAT))
    put("tar", "pax.tar", tar_bytes([("p/" + "d" * 120 + "/test_data_set_0/input_0.pb", pb(x(1, 2), "x"))],
                                    fmt=tarfile.PAX_FORMAT))
    put("tar", "stray_file.tar", tar_bytes([("s/test_data_set_0/input_0.pb", pb(x(1, 2), "x")),
                                            ("s/test_data_set_0/notes.txt", b"hello")]))
    put("tar", "fixed_batch.tar", tar_bytes([("f/test_data_set_0/input_0.pb", pb(np.ones((2, 3, 2), np.float32), "x"))]))
    put("tar", "uneven.tar", tar_bytes([
        ("u/test_data_set_0/input_0.pb", pb(x(1, 0), "x")),
        ("u/test_data_set_1/input_0.pb", pb(x(1, 0), "x")),
        ("u/test_data_set_1/input_1.pb", pb(x(1, 0), "y"))]))
    # typed (non-raw) fields, as older ONNX test data carry them
    t = helper.make_tensor("x", TensorProto.FLOAT, [2, 4], list(range(8)))
    i = helper.make_tensor("ids", TensorProto.INT64, [2], [1, 2])
    put("tar", "typed_fields.tar", tar_bytes([("k/test_data_set_0/input_0.pb", t.SerializeToString()),
                                              ("k/test_data_set_0/input_1.pb", i.SerializeToString())]))


# ---- HTTP ----
TOKEN = "fuzz-token"
MODEL, DATASET = "mdl_00000000000000a1", "dst_00000000000000d1"
JOBS = ["job_%016d" % i for i in range(1, 5)]
ARTS = ["art_00000000000000f1", "art_00000000000000f2"]


def req(method, path, body=b"", headers=(), auth=True, length=True):
    h = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    if auth:
        h.append("Authorization: Bearer " + TOKEN)
    h += list(headers)
    if isinstance(body, str):
        body = body.encode()
    if length and (body or method in ("POST", "PUT")):
        h.append("Content-Length: %d" % len(body))
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def tiny_model():
    w = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def http():
    oct_ = ["Content-Type: application/octet-stream"]
    js = ["Content-Type: application/json"]
    put("http", "healthz", req("GET", "/healthz", auth=False))
    put("http", "readyz", req("GET", "/readyz", auth=False))
    put("http", "metrics", req("GET", "/metrics", auth=False) + req("HEAD", "/metrics", auth=False))
    put("http", "passes", req("GET", "/v1/passes"))
    put("http", "ui", req("GET", "/", auth=False) + req("GET", "/ui/app.js", auth=False, headers=['If-None-Match: "0"']) +
        req("HEAD", "/ui/style.css", auth=False) + req("GET", "/ui/nope.css", auth=False) + req("GET", "/ui/", auth=False))
    put("http", "no_token", req("GET", "/v1/passes", auth=False) +
        req("GET", "/v1/models", auth=False, headers=["Authorization: Bearer wrong"]))
    put("http", "not_found_405", req("GET", "/v1/nothing") + req("PUT", "/v1/models") +
        req("PATCH", "/v1/jobs/" + JOBS[0]) + req("GET", "/v1/models/a%2Fb"))
    put("http", "models_create", req("POST", "/v1/models?name=tiny2.onnx", tiny_model(), oct_))
    put("http", "models_create_same", req("POST", "/v1/models", tiny_model(), oct_))
    put("http", "models_create_bad", req("POST", "/v1/models", b"\x08\x07garbage", oct_) +
        req("POST", "/v1/models", b"", oct_) +
        req("POST", "/v1/models", b"x", ["Content-Type: multipart/form-data; boundary=x"]))
    put("http", "models_create_chunked", ("POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                          "Transfer-Encoding: chunked\r\n\r\n" % TOKEN).encode() +
        b"%x\r\n" % len(tiny_model()) + tiny_model() + b"\r\n0\r\n\r\n")
    put("http", "models_too_large", req("POST", "/v1/models", b"", oct_ + ["Content-Length: 99999999999"], length=False))
    put("http", "models_list", req("GET", "/v1/models?limit=1") + req("GET", "/v1/models?limit=0") +
        req("GET", "/v1/models?limit=2&cursor=abc"))
    put("http", "models_get", req("GET", "/v1/models/" + MODEL) + req("GET", "/v1/models/mdl_nope/"))
    put("http", "models_delete", req("DELETE", "/v1/models/" + MODEL) + req("DELETE", "/v1/models/mdl_x"))
    put("http", "models_content", req("GET", "/v1/models/%s/content" % MODEL, headers=["Range: bytes=0-9"]) +
        req("GET", "/v1/models/%s/content" % MODEL, headers=["Range: bytes=-5", "If-Range: \"x\""]) +
        req("HEAD", "/v1/models/%s/content" % MODEL, headers=["If-None-Match: W/\"a\", *"]) +
        req("GET", "/v1/models/%s/content" % MODEL, headers=["Range: bytes=99999-"]))
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    put("http", "datasets_create_npz", req("POST", "/v1/datasets?name=c.npz",
                                           npz_bytes(True, x=x, labels=np.arange(4)), oct_))
    put("http", "datasets_create_tar", req("POST", "/v1/datasets?name=td.tar", tar_bytes([
        ("m/test_data_set_0/input_0.pb", pb(x[:2], "x")), ("m/test_data_set_1/input_0.pb", pb(x[2:], "x"))]), oct_))
    put("http", "datasets_create_bad", req("POST", "/v1/datasets", b"PK\x03\x04junk", oct_) +
        req("POST", "/v1/datasets?name=%01", b"\x1f\x8b", oct_))
    put("http", "datasets_list", req("GET", "/v1/datasets") + req("GET", "/v1/datasets/?limit=1000"))
    put("http", "datasets_get", req("GET", "/v1/datasets/" + DATASET))
    put("http", "datasets_delete", req("DELETE", "/v1/datasets/" + DATASET) + req("DELETE", "/v1/datasets/dst_0"))
    put("http", "datasets_content", req("GET", "/v1/datasets/%s/content" % DATASET,
                                        headers=["If-None-Match: \"0\"", "Range: bytes=10-"]))
    wf = {"model": MODEL, "data_configs": {"calib": {"dataset": DATASET, "batch_size": 2}},
          "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "calib", "per_channel": True}}}
    put("http", "jobs_create", req("POST", "/v1/jobs", json.dumps(wf), js))
    put("http", "jobs_create_dynamic", req("POST", "/v1/jobs", json.dumps(
        {"model": MODEL, "passes": {"q": {"type": "OnnxDynamicQuantization", "precision": "uint8"}}}), js))
    put("http", "jobs_create_bad", req("POST", "/v1/jobs", "{\"passes\": {}}", js) +
        req("POST", "/v1/jobs", "[1,", js) + req("POST", "/v1/jobs", "", js) +
        req("POST", "/v1/jobs", json.dumps({"model": "mdl_nope", "passes": {"q": {"type": "OnnxDynamicQuantization"}}}), js) +
        req("POST", "/v1/jobs", json.dumps({"model": MODEL, "data_configs": {"c": {"dataset": "dst_nope"}},
                                            "passes": {"q": {"type": "OnnxStaticQuantization", "data_config": "c"}}}), js))
    put("http", "jobs_create_too_large", req("POST", "/v1/jobs", "", js + ["Content-Length: 100000"], length=False))
    put("http", "jobs_list", req("GET", "/v1/jobs?state=queued,running&limit=2") +
        req("GET", "/v1/jobs?state=bogus") + req("GET", "/v1/jobs?cursor=zzz"))
    put("http", "jobs_get", b"".join(req("GET", "/v1/jobs/" + j) for j in JOBS))
    put("http", "jobs_delete", req("DELETE", "/v1/jobs/" + JOBS[2]) + req("DELETE", "/v1/jobs/" + JOBS[0]))
    put("http", "jobs_cancel", req("POST", "/v1/jobs/%s/cancel" % JOBS[0]) + req("POST", "/v1/jobs/%s/cancel" % JOBS[1]) +
        req("POST", "/v1/jobs/%s/cancel" % JOBS[2]))
    put("http", "jobs_log", req("GET", "/v1/jobs/%s/log?after=1&limit=1" % JOBS[2]) +
        req("GET", "/v1/jobs/%s/log?after=-1" % JOBS[2]) + req("GET", "/v1/jobs/%s/log?limit=0" % JOBS[1]))
    put("http", "jobs_artifacts", req("GET", "/v1/jobs/%s/artifacts" % JOBS[2]) +
        req("GET", "/v1/jobs/%s/artifacts" % JOBS[0]))
    put("http", "artifacts_get", req("GET", "/v1/artifacts/" + ARTS[0]) +
        req("GET", "/v1/artifacts/" + ARTS[1], headers=["Range: bytes=2-5"]) +
        req("GET", "/v1/artifacts/art_nope"))
    put("http", "pipeline", req("POST", "/v1/models", tiny_model(), oct_) + req("GET", "/v1/models") +
        req("POST", "/v1/jobs", json.dumps(wf), js) + req("GET", "/v1/jobs?state=queued") +
        req("GET", "/metrics", auth=False))


def dicts():
    routes = []
    with open(os.path.join(HERE, "..", "api", "routes.def")) as f:
        for line in f:
            if line.startswith("QD_ROUTE("):
                routes.append(line.split(",")[1].strip().strip('"'))
    toks = ["GET", "POST", "DELETE", "HEAD", "PUT", "HTTP/1.1", "HTTP/1.0", "\\x0d\\x0a", "Content-Length: ",
            "Transfer-Encoding: chunked", "Authorization: Bearer fuzz-token", "Range: bytes=",
            "If-None-Match: ", "If-Range: ", "Content-Type: application/json",
            "Content-Type: application/octet-stream", "Expect: 100-continue", "Connection: close",
            "?limit=", "&cursor=", "?state=", "?after=", "?name=", MODEL, DATASET] + JOBS + ARTS
    with open(os.path.join(HERE, "http.dict"), "w") as f:
        f.write("# libFuzzer dictionary for fuzz_http (written by fuzz/make_corpus.py)\n")
        for t in toks + routes:
            f.write('"%s"\n' % t)
    keys = set()
    for wf in WORKFLOWS.values():
        def walk(v):
            if isinstance(v, dict):
                for k, x in v.items():
                    keys.add(k)
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, str):
                keys.add(v)
        walk(wf)
    keys |= {"OnnxQuantization", "OnnxDynamicQuantization", "OnnxStaticQuantization", "IncQuantization",
             "IncDynamicQuantization", "IncStaticQuantization", "VitisAIQuantization", "QnnPreprocess",
             "OnnxMatMulNBits", "DEFAULT_VALUE", "SEARCHABLE_VALUES", "dst_calib", "dst_td", "dst_bad"}
    with open(os.path.join(HERE, "workflow.dict"), "w") as f:
        f.write("# libFuzzer dictionary for fuzz_workflow (written by fuzz/make_corpus.py)\n")
        for k in sorted(keys):
            f.write('"\\"%s\\""\n' % k.replace("\\", "\\\\").replace('"', '\\"'))


if __name__ == "__main__":
    workflows()
    npzs()
    tars()
    http()
    dicts()
