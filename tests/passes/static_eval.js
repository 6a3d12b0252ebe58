#!/usr/bin/env node
// Evaluates a quantized model against its float model in ONNX Runtime on a held-out .npz
// dataset (one array per model input, first axis = samples; tests/models/make_calib_data.py
// writes them) and prints one JSON line:
//   ort_loaded_float / ort_loaded_quant (and error), samples, runs,
//   per output and overall: top-1 agreement over the last axis (fraction of positions whose
//   argmax agrees; for rec [N, T, classes] every time step counts), cosine similarity per
//   run (mean, min) and pooled over all runs, max / mean abs error, and with --metric iou
//   the IoU of the maps thresholded at p > --iou-thresh (default 0.3), pooled and per run
//   (min); label accuracy of both models when the dataset has a "label" array and the
//   output is [B, classes]; float output range (is the data exercising the model?);
//   with --latency N the median latency of float and quantized, run alternately N times
//   each on the first sample, and quant/float ratio;
//   with --quantd-out / --quantd: ORT's outputs of QUANT vs quantd's engine outputs of
//   QUANT: max abs diff and, when the output is produced by a DequantizeLinear (through
//   shape-only ops), that diff in units of its scale ("steps"; <= 1 is the acceptance rule).
// Sessions: tests/ort/ort_lib.js 'single' (1 intra-op thread, sequential, all graph
// optimisations). A model whose first input dim is a fixed B runs in batches of B samples,
// otherwise one sample per run.
// Exit 0 when every given threshold holds, 1 otherwise (or when ORT refuses / fails to run a
// model, or quantd infer fails), 2 on bad usage.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));
const ort = lib.ort;

const USAGE = `usage: node static_eval.js --float F.onnx --quant Q.onnx --data held.npz [options]
  --metric top1|cosine|iou   primary metric, reported as "value" (default cosine)
  --latency N                median latency of N alternating runs of each model
  --samples K                use only the first K samples of --data
  --iou-thresh P             probability threshold for --metric iou (default 0.3)
  --quantd-out out.npz       quantd's engine outputs of Q.onnx on --quantd-in (default: --data),
                             written by: quantd infer --model Q.onnx --input in.npz --output out.npz
  --quantd-in in.npz         the input quantd-out was computed from
  --quantd BIN               run BIN infer on the first --quantd-samples samples (default 4) of
                             --data here instead of --quantd-out
  --quantd-samples K
  thresholds (each failing one is listed in "failures" and makes the exit status 1):
  --min-top1 X  --min-cos X (min per-run cosine)  --min-mean-cos X  --min-pooled-cos X
  --min-iou X  --max-abs X (ORT float vs quant)  --max-steps X (quantd vs ORT, default none)
  --max-quantd-abs X (quantd vs ORT when the output has no DequantizeLinear scale)
  --min-quantd-cos X (cosine of quantd's engine outputs vs ORT's on the artifact, every output)
  --label TEXT               copied into the JSON line`;

function usage(msg) {
  process.stderr.write((msg ? msg + '\n' : '') + USAGE + '\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { metric: 'cosine', latency: 0, samples: 0, iouThresh: 0.3, quantdSamples: 4, label: '', th: {} };
  const num = { '--min-top1': 'minTop1', '--min-cos': 'minCos', '--min-mean-cos': 'minMeanCos',
    '--min-pooled-cos': 'minPooledCos', '--min-iou': 'minIou', '--max-abs': 'maxAbs', '--max-steps': 'maxSteps',
    '--max-quantd-abs': 'maxQuantdAbs', '--min-quantd-cos': 'minQuantdCos' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage('missing value for ' + a); return argv[++i]; };
    if (a === '--float') o.float = val();
    else if (a === '--quant') o.quant = val();
    else if (a === '--data') o.data = val();
    else if (a === '--metric') o.metric = val();
    else if (a === '--latency') o.latency = parseInt(val(), 10);
    else if (a === '--samples') o.samples = parseInt(val(), 10);
    else if (a === '--iou-thresh') o.iouThresh = parseFloat(val());
    else if (a === '--quantd-out') o.quantdOut = val();
    else if (a === '--quantd-in') o.quantdIn = val();
    else if (a === '--quantd') o.quantd = val();
    else if (a === '--quantd-samples') o.quantdSamples = parseInt(val(), 10);
    else if (a === '--label') o.label = val();
    else if (num[a]) { const v = parseFloat(val()); if (!Number.isFinite(v)) usage('bad value for ' + a); o.th[num[a]] = v; }
    else if (a === '-h' || a === '--help') usage();
    else usage('unknown argument ' + a);
  }
  if (!o.float || !o.quant || !o.data) usage('need --float, --quant and --data');
  if (!['top1', 'cosine', 'iou'].includes(o.metric)) usage('--metric must be top1, cosine or iou');
  if (o.quantdOut && o.quantd) usage('give --quantd-out or --quantd, not both');
  return o;
}

// ---- tensors and batches

const ARR = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
  uint8: Uint8Array, int8: Int8Array, bool: Uint8Array, uint16: Uint16Array, int16: Int16Array,
  uint32: Uint32Array, uint64: BigUint64Array };

function sliceRows(t, start, count) {
  const row = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const data = t.data.slice(start * row, (start + count) * row);
  return new ort.Tensor(t.type, data, [count, ...t.dims.slice(1)]);
}

function concatRows(ts) {
  if (ts.length === 1) return ts[0];
  const n = ts.reduce((a, t) => a + t.data.length, 0);
  const Arr = ARR[ts[0].type];
  const data = new Arr(n);
  let off = 0;
  for (const t of ts) { data.set(t.data, off); off += t.data.length; }
  const rows = ts.reduce((a, t) => a + t.dims[0], 0);
  return new ort.Tensor(ts[0].type, data, [rows, ...ts[0].dims.slice(1)]);
}

// batch size of a session: the fixed first dim of its inputs, else 1
function batchOf(sess) {
  for (const m of sess.inputMetadata) {
    if (m.shape && typeof m.shape[0] === 'number' && m.shape[0] > 0) return m.shape[0];
  }
  return 1;
}

// input arrays of the dataset for this session (extra arrays such as "label" are left out)
function inputArrays(sess, data, file) {
  const out = {};
  let n = -1;
  for (const name of sess.inputNames) {
    const t = data[name];
    if (!t) throw new Error(`dataset ${file} has no array '${name}' (has: ${Object.keys(data).join(', ')})`);
    if (n >= 0 && t.dims[0] !== n) throw new Error(`dataset ${file}: arrays disagree on the sample count`);
    n = t.dims[0];
    out[name] = t;
  }
  return { arrays: out, n };
}

function feedsFor(arrays, start, count) {
  const f = {};
  for (const [k, t] of Object.entries(arrays)) f[k] = sliceRows(t, start, count);
  return f;
}

// ---- quantization step of each graph output: python3-onnx reads the model

const PY_STEPS = String.raw`
import json, sys
import onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1], load_external_data=False)
g = m.graph
prod = {}
for n in g.node:
    for o in n.output:
        prod[o] = n
consts = {t.name: t for t in g.initializer}
for n in g.node:
    if n.op_type == "Constant":
        for a in n.attribute:
            if a.name == "value":
                consts[n.output[0]] = a.t
def arr(name):
    t = consts.get(name)
    if t is None or (t.data_location == onnx.TensorProto.EXTERNAL):
        return None
    return numpy_helper.to_array(t).reshape(-1).tolist()
PASS = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"}
res = {}
for o in g.output:
    name, via = o.name, []
    n = prod.get(name)
    while n is not None and n.op_type in PASS:
        via.append(n.op_type)
        n = prod.get(n.input[0])
    r = {"producer": n.op_type if n is not None else None, "via": via}
    if n is not None and n.op_type == "DequantizeLinear":
        s = arr(n.input[1])
        zp = arr(n.input[2]) if len(n.input) > 2 and n.input[2] else [0]
        r.update({"scale": s, "zero_point": zp})
    res[name] = r
print(json.dumps(res))
`;

function outputSteps(model) {
  const r = spawnSync('/usr/bin/python3', ['-c', PY_STEPS, model], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) return { error: 'python3-onnx could not read ' + model + ': ' + (r.stderr || '').trim().split('\n').pop() };
  return JSON.parse(r.stdout);
}

// ---- metrics

function argmaxRows(a, last) {
  const rows = a.length / last;
  const out = new Int32Array(rows);
  for (let r = 0, off = 0; r < rows; r++, off += last) {
    let k = 0;
    for (let j = 1; j < last; j++) if (a[off + j] > a[off + k]) k = j;
    out[r] = k;
  }
  return out;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : null;
}

function round(x, d = 6) { return x === null || x === undefined || !Number.isFinite(x) ? x : Number(x.toFixed(d)); }

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const res = { label: opt.label, float: opt.float, quant: opt.quant, data: opt.data, metric: opt.metric,
    ok: true, ort_loaded_float: false, ort_loaded_quant: false, failures: [] };
  const fail = (msg) => { res.ok = false; res.failures.push(msg); };
  const finish = () => {
    if (!res.ok && !res.error && res.failures.length) res.error = res.failures[0];
    console.log(JSON.stringify(res));
    process.exit(res.ok ? 0 : 1);
  };
  let fs_, qs;
  try { fs_ = await lib.session(opt.float, 'single'); res.ort_loaded_float = true; } catch (e) {
    res.error = 'ORT refuses the float model: ' + e.message; fail(res.error); finish();
  }
  try { qs = await lib.session(opt.quant, 'single'); res.ort_loaded_quant = true; } catch (e) {
    res.error = 'ORT refuses the quantized model: ' + e.message; fail(res.error); finish();
  }
  let data, arrays, n;
  try {
    data = lib.readNpz(opt.data);
    ({ arrays, n } = inputArrays(fs_, data, opt.data));
  } catch (e) { res.error = e.message; fail(e.message); finish(); }
  if (opt.samples > 0) n = Math.min(n, opt.samples);
  const B = batchOf(fs_);
  const runs = Math.floor(n / B);
  if (runs < 1) { fail(`dataset has ${n} samples, the model's batch is ${B}`); finish(); }
  res.samples = runs * B;
  res.batch = B;
  res.runs = runs;
  const labels = data.label && data.label.dims[0] >= n ? Array.from(data.label.data, Number) : null;

  const acc = {};
  for (let r = 0; r < runs; r++) {
    const feeds = feedsFor(arrays, r * B, B);
    let fo, qo;
    try { fo = await fs_.run(feeds); } catch (e) { fail('ORT cannot run the float model: ' + e.message); finish(); }
    try { qo = await qs.run(feeds); } catch (e) { fail('ORT cannot run the quantized model: ' + e.message); finish(); }
    for (const name of fs_.outputNames) {
      const a = fo[name], b = qo[name];
      const s = acc[name] || (acc[name] = { cos: [], dot: 0, na: 0, nb: 0, maxAbs: 0, sumAbs: 0, n: 0, top1: 0, rows: 0,
        inter: 0, union: 0, ious: [], fmin: Infinity, fmax: -Infinity, fpos: 0, lf: 0, lq: 0, ln: 0, bad: null, dims: a.dims });
      if (!b) { s.bad = `quantized model has no output '${name}'`; continue; }
      if (a.data.length !== b.data.length) { s.bad = `output '${name}': ${a.dims} vs ${b.dims}`; continue; }
      if (a.type !== 'float32' || b.type !== 'float32') { s.bad = s.bad || `output '${name}' is ${a.type}/${b.type}, not compared`; continue; }
      const c = lib.compare(a.data, b.data);
      if (c.nonFinite) s.bad = `output '${name}' of the quantized model has ${c.nonFinite} NaN/Inf values`;
      s.cos.push(c.cos);
      s.dot += c.dot; s.na += c.na; s.nb += c.nb; s.sumAbs += c.sumAbs; s.n += a.data.length;
      if (c.maxAbs > s.maxAbs) s.maxAbs = c.maxAbs;
      for (let i = 0; i < a.data.length; i++) { const v = a.data[i]; if (v < s.fmin) s.fmin = v; if (v > s.fmax) s.fmax = v; }
      const last = a.dims[a.dims.length - 1] || 1;
      if (last > 1 && opt.metric !== 'iou') {
        const ia = argmaxRows(a.data, last), ib = argmaxRows(b.data, last);
        for (let k = 0; k < ia.length; k++) if (ia[k] === ib[k]) s.top1++;
        s.rows += ia.length;
        if (labels && a.dims.length === 2 && ia.length === B) {
          for (let k = 0; k < B; k++) {
            const l = labels[r * B + k];
            s.lf += ia[k] === l ? 1 : 0; s.lq += ib[k] === l ? 1 : 0; s.ln++;
          }
        }
      }
      if (opt.metric === 'iou') {
        let I = 0, U = 0, P = 0;
        for (let i = 0; i < a.data.length; i++) {
          const pa = a.data[i] > opt.iouThresh, pb = b.data[i] > opt.iouThresh;
          if (pa && pb) I++;
          if (pa || pb) U++;
          if (pa) P++;
        }
        s.inter += I; s.union += U; s.fpos += P;
        s.ious.push(U ? I / U : 1);
      }
    }
  }
  res.outputs = {};
  let minCos = 1, minMeanCos = 1, minPooled = 1, minTop1 = null, minIou = null, maxAbs = 0;
  for (const [name, s] of Object.entries(acc)) {
    if (s.bad) fail(s.bad);
    if (!s.cos.length) continue;
    const o = {
      dims: s.dims,
      cosine_mean: round(s.cos.reduce((x, y) => x + y, 0) / s.cos.length, 7),
      cosine_min: round(Math.min(...s.cos), 7),
      cosine_pooled: round(lib.cosine(s.dot, s.na, s.nb), 7),
      max_abs_error: round(s.maxAbs, 7), mean_abs_error: round(s.n ? s.sumAbs / s.n : 0, 8),
      float_range: [round(s.fmin, 5), round(s.fmax, 5)],
    };
    if (s.rows) o.top1_agreement = round(s.top1 / s.rows, 5);
    if (s.ln) o.label_accuracy = { float: round(s.lf / s.ln, 4), quant: round(s.lq / s.ln, 4), n: s.ln };
    if (opt.metric === 'iou') {
      o.iou = round(s.union ? s.inter / s.union : 1, 5);
      o.iou_min = round(Math.min(...s.ious), 5);
      o.float_pos_frac = round(s.fpos / s.n, 5);
    }
    res.outputs[name] = o;
    minCos = Math.min(minCos, o.cosine_min);
    minMeanCos = Math.min(minMeanCos, o.cosine_mean);
    minPooled = Math.min(minPooled, o.cosine_pooled);
    maxAbs = Math.max(maxAbs, o.max_abs_error);
    if (o.top1_agreement !== undefined) minTop1 = minTop1 === null ? o.top1_agreement : Math.min(minTop1, o.top1_agreement);
    if (o.iou !== undefined) minIou = minIou === null ? o.iou : Math.min(minIou, o.iou);
  }
  Object.assign(res, { top1_agreement: minTop1, cosine_mean: minMeanCos, cosine_min: minCos, cosine_pooled: minPooled,
    max_abs_error: maxAbs, iou: minIou });
  res.value = opt.metric === 'top1' ? minTop1 : opt.metric === 'iou' ? minIou : minMeanCos;
  if (res.value === null) fail(`metric ${opt.metric} does not apply to these outputs`);

  const th = opt.th;
  if (th.minTop1 !== undefined && !(minTop1 !== null && minTop1 >= th.minTop1)) fail(`top-1 agreement ${minTop1} < ${th.minTop1}`);
  if (th.minCos !== undefined && !(minCos >= th.minCos)) fail(`min cosine ${minCos} < ${th.minCos}`);
  if (th.minMeanCos !== undefined && !(minMeanCos >= th.minMeanCos)) fail(`mean cosine ${minMeanCos} < ${th.minMeanCos}`);
  if (th.minPooledCos !== undefined && !(minPooled >= th.minPooledCos)) fail(`pooled cosine ${minPooled} < ${th.minPooledCos}`);
  if (th.minIou !== undefined && !(minIou !== null && minIou >= th.minIou)) fail(`IoU ${minIou} < ${th.minIou}`);
  if (th.maxAbs !== undefined && !(maxAbs <= th.maxAbs)) fail(`max abs error ${maxAbs} > ${th.maxAbs}`);

  // ---- latency: alternate float / quant on the first batch
  if (opt.latency > 0) {
    const feeds = feedsFor(arrays, 0, B);
    await fs_.run(feeds); await qs.run(feeds);
    const tf = [], tq = [];
    for (let i = 0; i < opt.latency; i++) {
      let t0 = process.hrtime.bigint();
      await fs_.run(feeds);
      let t1 = process.hrtime.bigint();
      tf.push(Number(t1 - t0) / 1e6);
      t0 = process.hrtime.bigint();
      await qs.run(feeds);
      t1 = process.hrtime.bigint();
      tq.push(Number(t1 - t0) / 1e6);
    }
    const mf = median(tf), mq = median(tq);
    res.latency = { runs: opt.latency, float_ms: round(mf, 3), quant_ms: round(mq, 3), ratio: round(mq / mf, 4) };
  }

  // ---- quantd engine vs ORT on the quantized model
  if (opt.quantdOut || opt.quantd) {
    const qd = { steps_rule: 'max |ort - quantd| / scale of the output DequantizeLinear' };
    res.quantd = qd;
    try {
      let inArrays, qOut, m;
      if (opt.quantd) {
        m = Math.min(n, Math.max(B, Math.floor(opt.quantdSamples / B) * B));
        inArrays = {};
        for (const [k, t] of Object.entries(arrays)) inArrays[k] = sliceRows(t, 0, m);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'static_eval.'));
        const parts = [];
        const calls = !fixedFirst(qs) ? [[0, m]] : range(m / B).map((i) => [i * B, B]);
        for (const [st, cnt] of calls) {
          const fin = path.join(dir, 'in.npz'), fout = path.join(dir, 'out.npz');
          lib.writeNpz(fin, feedsFor(inArrays, st, cnt));
          const r = spawnSync(opt.quantd, ['infer', '--model', opt.quant, '--input', fin, '--output', fout],
            { encoding: 'utf8', maxBuffer: 64 << 20 });
          if (r.status !== 0) throw new Error(`quantd infer failed (${r.status}): ${(r.stderr || '').trim().split('\n').pop()}`);
          parts.push(lib.readNpz(fout));
        }
        fs.rmSync(dir, { recursive: true, force: true });
        qOut = {};
        for (const name of qs.outputNames) {
          if (!parts.every((p) => p[name])) throw new Error(`quantd infer wrote no output '${name}'`);
          qOut[name] = concatRows(parts.map((p) => p[name]));
        }
      } else {
        const inFile = opt.quantdIn || opt.data;
        const d = lib.readNpz(inFile);
        ({ arrays: inArrays, n: m } = inputArrays(qs, d, inFile));
        qOut = lib.readNpz(opt.quantdOut);
      }
      qd.samples = m;
      // ORT on the same input, batched as the model wants (symbolic first dim: one run)
      const oo = {};
      const one = !fixedFirst(qs);
      const calls = one ? [[0, m]] : range(Math.floor(m / B)).map((i) => [i * B, B]);
      const parts = [];
      for (const [st, cnt] of calls) parts.push(await qs.run(feedsFor(inArrays, st, cnt)));
      for (const name of qs.outputNames) oo[name] = concatRows(parts.map((p) => p[name]));
      const steps = outputSteps(opt.quant);
      if (steps.error) qd.steps_error = steps.error;
      qd.outputs = {};
      let worstSteps = null, worstAbs = 0, allDq = true;
      for (const name of qs.outputNames) {
        const a = oo[name], b = qOut[name];
        if (!b) throw new Error(`quantd output file has no '${name}'`);
        if (a.data.length !== b.data.length) throw new Error(`output '${name}': ORT ${a.dims} vs quantd ${b.dims}`);
        const c = lib.compare(a.data, b.data);
        const o = { max_abs_diff: round(c.maxAbs, 8), identical: c.identical, cosine: round(c.cos, 8) };
        if (c.nonFinite) o.quantd_non_finite = c.nonFinite;
        const st = steps[name];
        if (st) { o.producer = st.producer; if (st.via.length) o.via = st.via; }
        if (st && st.producer === 'DequantizeLinear' && st.scale && st.scale.length) {
          const scale = Math.max(...st.scale);
          o.scale = scale; o.per_axis = st.scale.length > 1;
          o.steps = round(c.maxAbs / scale, 4);
          o.within_one_step = o.steps <= 1 + 1e-4 && !c.nonFinite;
          worstSteps = worstSteps === null ? o.steps : Math.max(worstSteps, o.steps);
        } else allDq = false;
        worstAbs = Math.max(worstAbs, c.maxAbs);
        qd.outputs[name] = o;
        if (c.nonFinite) fail(`quantd output '${name}' has ${c.nonFinite} NaN/Inf values`);
      }
      qd.max_abs_diff = round(worstAbs, 8);
      qd.max_steps = worstSteps;
      qd.all_outputs_dequantized = allDq;
      qd.within_one_step = allDq ? worstSteps <= 1 + 1e-4 : null;
      if (th.maxSteps !== undefined) {
        for (const [name, o] of Object.entries(qd.outputs)) {
          if (o.steps !== undefined && !(o.steps <= th.maxSteps + 1e-4)) fail(`quantd vs ORT on '${name}': ${o.steps} steps > ${th.maxSteps}`);
          if (o.steps === undefined && th.maxQuantdAbs === undefined)
            fail(`quantd vs ORT on '${name}': the output has no DequantizeLinear scale (producer ${o.producer}); give --max-quantd-abs`);
        }
      }
      if (th.minQuantdCos !== undefined) {
        for (const [name, o] of Object.entries(qd.outputs)) {
          if (!(o.cosine >= th.minQuantdCos)) fail(`quantd vs ORT on '${name}': cosine ${o.cosine} < ${th.minQuantdCos}`);
        }
      }
      if (th.maxQuantdAbs !== undefined) {
        for (const [name, o] of Object.entries(qd.outputs)) {
          if (o.steps === undefined && !(o.max_abs_diff <= th.maxQuantdAbs)) fail(`quantd vs ORT on '${name}': max abs diff ${o.max_abs_diff} > ${th.maxQuantdAbs}`);
        }
      }
    } catch (e) {
      qd.error = e.message;
      fail('quantd comparison: ' + e.message);
    }
  }
  finish();
}

function fixedFirst(sess) {
  return sess.inputMetadata.some((m) => m.shape && typeof m.shape[0] === 'number' && m.shape[0] > 0);
}

function range(k) { return Array.from({ length: k }, (_, i) => i); }

main().catch((e) => { console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) })); process.exit(1); });
