#!/usr/bin/env node
// Loads a float model and its quantized version in ONNX Runtime (onnxruntime-node), feeds
// both the same seeded random inputs and prints one JSON line per comparison: per output
// cosine similarity, max/mean abs error, top-1 agreement along the last axis, and the
// mean run time of each model. Exit 0 when every threshold holds, 1 otherwise (including a
// model ORT refuses to load or run), 2 on bad usage.
//
// usage: node tests/passes/ort_compare.js FLOAT.onnx QUANT.onnx [options]
//        node tests/passes/ort_compare.js FLOAT.onnx --write-inputs IN.npz [--samples N ...]
//   --write-inputs F   only write the seeded random inputs of --samples runs to F (one array
//                      per model input, the runs stacked on the first axis, which must be 1
//                      per run): quantd evaluates on them as a held-out data config
//   --inputs F         feed the runs from F (rows of the first axis) instead of generating
//   --metrics F        quantd's metrics.json of QUANT measured on --inputs: its accuracy
//                      figures per output must match ORT's on the same inputs within
//                      --max-metric-cos (|cosine difference|, pooled and worst run) and
//                      --max-metric-abs (|max abs error difference|), --max-metric-mean
//                      (|mean abs error difference|, default --max-metric-abs);
//                      top-1 agreement within --max-metric-top1 (fraction; default one row)
//   --samples N        random input sets (default 3)
//   --seed N           PRNG seed (default 1234)
//   --shape name=d,d   concrete shape for an input (else symbolic: first dim 1, others 32)
//   --int-max N        integer inputs drawn from [0, N) (default 100)
//   --min-cos X        fail when any output's cosine < X
//   --min-top1 X       fail when any output's top-1 agreement < X
//   --max-abs X        fail when any output's max abs error > X
//   --label TEXT       copied into the JSON line
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

function usage(msg) {
  process.stderr.write((msg ? msg + '\n' : '') +
    'usage: node ort_compare.js FLOAT.onnx QUANT.onnx [--samples N] [--seed N] [--shape name=d,d] ' +
    '[--int-max N] [--min-cos X] [--min-top1 X] [--max-abs X] [--label TEXT]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { files: [], samples: 3, seed: 1234, shapes: {}, intMax: 100, minCos: null, minTop1: null, maxAbs: null, label: '',
    writeInputs: null, inputs: null, metrics: null, maxMetricCos: null, maxMetricAbs: null, maxMetricMean: null, maxMetricTop1: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage('missing value for ' + a); return argv[++i]; };
    if (a === '--samples') o.samples = parseInt(val(), 10);
    else if (a === '--seed') o.seed = parseInt(val(), 10);
    else if (a === '--int-max') o.intMax = parseInt(val(), 10);
    else if (a === '--min-cos') o.minCos = parseFloat(val());
    else if (a === '--min-top1') o.minTop1 = parseFloat(val());
    else if (a === '--max-abs') o.maxAbs = parseFloat(val());
    else if (a === '--label') o.label = val();
    else if (a === '--write-inputs') o.writeInputs = val();
    else if (a === '--inputs') o.inputs = val();
    else if (a === '--metrics') o.metrics = val();
    else if (a === '--max-metric-cos') o.maxMetricCos = parseFloat(val());
    else if (a === '--max-metric-abs') o.maxMetricAbs = parseFloat(val());
    else if (a === '--max-metric-top1') o.maxMetricTop1 = parseFloat(val());
    else if (a === '--max-metric-mean') o.maxMetricMean = parseFloat(val());
    else if (a === '--shape') {
      const [n, d] = val().split('=');
      if (!n || !d) usage('bad --shape');
      o.shapes[n] = d.split(',').map((x) => parseInt(x, 10));
    } else if (a.startsWith('--')) usage('unknown option ' + a);
    else o.files.push(a);
  }
  if (o.writeInputs ? o.files.length !== 1 : o.files.length !== 2) usage('need FLOAT.onnx and QUANT.onnx (or FLOAT.onnx --write-inputs F)');
  if (o.metrics && (!o.inputs || o.maxMetricCos === null || o.maxMetricAbs === null))
    usage('--metrics needs --inputs, --max-metric-cos and --max-metric-abs');
  return o;
}

function makeFeeds(meta, opt, rand) {
  return lib.makeFeeds(meta, { shapes: opt.shapes, minDim: 1, symDim: (k) => (k === 0 ? 1 : 32), intMax: opt.intMax,
    types: ['float32', 'int64', 'int32', 'bool'] }, rand);
}

// {name: tensor} with the runs' tensors stacked on the first axis (each must have it = 1)
function stack(runs) {
  const out = {};
  for (const name of Object.keys(runs[0])) {
    const ts = runs.map((f) => f[name]);
    if (ts[0].dims[0] !== 1) throw new Error(`input '${name}': first dim ${ts[0].dims[0]}, need 1 per run`);
    const n = ts.reduce((a, t) => a + t.data.length, 0);
    const data = new ts[0].data.constructor(n);
    let off = 0;
    for (const t of ts) { data.set(t.data, off); off += t.data.length; }
    out[name] = new lib.ort.Tensor(ts[0].type, data, [ts.length, ...ts[0].dims.slice(1)]);
  }
  return out;
}

// run r of an npz written by stack(): row r of every array, first dim 1
function row(arrays, r, names) {
  const feeds = {};
  for (const name of names) {
    const t = arrays[name];
    if (!t) throw new Error(`--inputs has no array '${name}'`);
    const len = t.data.length / t.dims[0];
    feeds[name] = new lib.ort.Tensor(t.type, t.data.slice(r * len, (r + 1) * len), [1, ...t.dims.slice(1)]);
  }
  return feeds;
}

// quantd's metrics.json accuracy vs ORT's figures on the same inputs; returns problems
function compareMetrics(opt, result, acc, nruns) {
  const probs = [];
  let m;
  try { m = JSON.parse(require('fs').readFileSync(opt.metrics, 'utf8')).accuracy; } catch (e) { return [`metrics.json: ${e.message}`]; }
  if (!m || m.status !== 'ok') return [`metrics.json accuracy is ${m ? m.status + ': ' + m.reason : 'missing'}`];
  if (!m.inputs || m.inputs.samples !== nruns || m.inputs.batches !== nruns)
    probs.push(`metrics.json was measured on ${JSON.stringify(m.inputs)}, not on the ${nruns} runs of --inputs`);
  const byName = {};
  for (const o of m.outputs || []) byName[o.name] = o;
  const worst = { cos: 0, abs: 0, mean: 0, top1: 0 };
  for (const [name, r] of Object.entries(acc)) {
    const q = byName[name];
    const o = result.outputs[name];
    if (!q) { probs.push(`metrics.json has no output '${name}'`); continue; }
    if (q.comparable === false || o.cosine === null) {
      if (!(q.comparable === false && o.cosine === null)) probs.push(`output '${name}': quantd comparable=${q.comparable !== false}, ORT ${o.cosine === null ? 'not ' : ''}comparable`);
      continue;
    }
    const d = {
      cos: Math.abs(q.cosine - o.cosine), min_cos: Math.abs(q.min_batch_cosine - o.cosine_min_run),
      abs: Math.abs(q.max_abs_error - o.max_abs_error), mean_abs: Math.abs(q.mean_abs_error - o.mean_abs_error),
    };
    o.quantd = { cosine: q.cosine, min_batch_cosine: q.min_batch_cosine, max_abs_error: q.max_abs_error,
      mean_abs_error: q.mean_abs_error, top1_agreement: q.top1_agreement };
    o.metric_diff = d;
    worst.cos = Math.max(worst.cos, d.cos, d.min_cos);
    worst.abs = Math.max(worst.abs, d.abs);
    if (!(d.cos <= opt.maxMetricCos && d.min_cos <= opt.maxMetricCos))
      probs.push(`output '${name}': quantd cosine ${q.cosine} (worst batch ${q.min_batch_cosine}), ORT ${o.cosine} (worst run ${o.cosine_min_run}): differ by more than ${opt.maxMetricCos}`);
    if (!(d.abs <= opt.maxMetricAbs))
      probs.push(`output '${name}': quantd max abs error ${q.max_abs_error}, ORT ${o.max_abs_error}: differ by more than ${opt.maxMetricAbs}`);
    const tm = opt.maxMetricMean !== null ? opt.maxMetricMean : opt.maxMetricAbs;
    worst.mean = Math.max(worst.mean, d.mean_abs);
    if (!(d.mean_abs <= tm))
      probs.push(`output '${name}': quantd mean abs error ${q.mean_abs_error}, ORT ${o.mean_abs_error}: differ by more than ${tm}`);
    const rows = r.rows;
    const t1 = opt.maxMetricTop1 !== null ? opt.maxMetricTop1 : 1 / rows;
    if (rows && q.top1_agreement !== undefined && !(Math.abs(q.top1_agreement - o.top1_agreement) <= t1 + 1e-9))
      probs.push(`output '${name}': quantd top-1 agreement ${q.top1_agreement}, ORT ${o.top1_agreement} (${rows} rows): differ by more than ${t1}`);
    if (rows && q.top1_agreement !== undefined) worst.top1 = Math.max(worst.top1, d.top1 = Math.abs(q.top1_agreement - o.top1_agreement));
    if (rows && r.dims >= 2 && q.top1_agreement === undefined) probs.push(`output '${name}': metrics.json has no top-1 agreement`);
  }
  for (const name of Object.keys(byName)) if (!acc[name]) probs.push(`metrics.json output '${name}' is not a model output`);
  result.metric_worst = worst;
  return probs;
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (opt.writeInputs) {
    const fs0 = await lib.session(opt.files[0]);
    const rand0 = lib.rng('xorshift32', opt.seed);
    const runs = [];
    for (let s = 0; s < opt.samples; s++) runs.push(makeFeeds(fs0.inputMetadata, opt, rand0));
    lib.writeNpz(opt.writeInputs, stack(runs));
    return;
  }
  const result = { label: opt.label, float: opt.files[0], quant: opt.files[1], ok: true, outputs: {} };
  let fs, qs;
  try {
    fs = await lib.session(opt.files[0]);
  } catch (e) {
    console.log(JSON.stringify({ ...result, ok: false, error: 'float model: ' + e.message }));
    process.exit(1);
  }
  try {
    qs = await lib.session(opt.files[1]);
  } catch (e) {
    console.log(JSON.stringify({ ...result, ok: false, error: 'ORT refuses the quantized model: ' + e.message }));
    process.exit(1);
  }
  const rand = lib.rng('xorshift32', opt.seed);
  let given = null;
  if (opt.inputs) {
    try { given = lib.readNpz(opt.inputs); } catch (e) {
      console.log(JSON.stringify({ ...result, ok: false, error: '--inputs: ' + e.message }));
      process.exit(1);
    }
    opt.samples = given[fs.inputNames[0]] ? given[fs.inputNames[0]].dims[0] : 0;
  }
  const acc = {};
  // one untimed warm-up run each, so the times below are steady-state
  try {
    const warm = given ? row(given, 0, fs.inputNames) : makeFeeds(fs.inputMetadata, opt, lib.rng('xorshift32', opt.seed + 1));
    await fs.run(warm);
    await qs.run(warm);
  } catch (e) {
    console.log(JSON.stringify({ ...result, ok: false, error: 'ORT cannot run a model: ' + e.message }));
    process.exit(1);
  }
  let tf = 0, tq = 0;
  for (let s = 0; s < opt.samples; s++) {
    let feeds;
    try { feeds = given ? row(given, s, fs.inputNames) : makeFeeds(fs.inputMetadata, opt, rand); } catch (e) {
      console.log(JSON.stringify({ ...result, ok: false, error: e.message }));
      process.exit(1);
    }
    let t0 = process.hrtime.bigint();
    const fo = await fs.run(feeds);
    let t1 = process.hrtime.bigint();
    let qo;
    try {
      qo = await qs.run(feeds);
    } catch (e) {
      console.log(JSON.stringify({ ...result, ok: false, error: 'ORT cannot run the quantized model: ' + e.message }));
      process.exit(1);
    }
    const t2 = process.hrtime.bigint();
    tf += Number(t1 - t0) / 1e6;
    tq += Number(t2 - t1) / 1e6;
    for (const name of fs.outputNames) {
      const a = fo[name], b = qo[name];
      const r = acc[name] || (acc[name] = { dot: 0, na: 0, nb: 0, maxAbs: 0, sumAbs: 0, n: 0, top1: 0, rows: 0, finite: true,
        minRunCos: 1, dims: 0 });
      if (!b || a.data.length !== b.data.length) { r.finite = false; continue; }
      if (a.type !== 'float32') continue;
      const c = lib.compare(a.data, b.data);
      if (c.nonFinite) r.finite = false;
      r.dot += c.dot; r.na += c.na; r.nb += c.nb; r.sumAbs += c.sumAbs;
      if (c.maxAbs > r.maxAbs) r.maxAbs = c.maxAbs;
      r.n += a.data.length;
      if (c.cos < r.minRunCos) r.minRunCos = c.cos;
      r.dims = a.dims.length;
      const last = a.dims[a.dims.length - 1] || 1;
      if (last > 1 && (!opt.metrics || a.dims.length >= 2)) {
        for (let off = 0; off + last <= a.data.length; off += last) {
          let ia = 0, ib = 0;
          for (let k = 1; k < last; k++) {
            if (a.data[off + k] > a.data[off + ia]) ia = k;
            if (b.data[off + k] > b.data[off + ib]) ib = k;
          }
          r.top1 += ia === ib ? 1 : 0;
          r.rows++;
        }
      }
    }
  }
  let minCos = 1;
  for (const [name, r] of Object.entries(acc)) {
    const cos = lib.cosine(r.dot, r.na, r.nb);
    const o = {
      cosine: r.finite ? cos : null, cosine_min_run: r.finite ? r.minRunCos : null,
      max_abs_error: r.maxAbs, mean_abs_error: r.n ? r.sumAbs / r.n : 0,
      top1_agreement: r.rows ? r.top1 / r.rows : null,
    };
    result.outputs[name] = o;
    if (!r.finite) { result.ok = false; result.error = `output '${name}' has NaN/Inf or a wrong size`; }
    if (r.finite && cos < minCos) minCos = cos;
    if (opt.minCos !== null && !(r.finite && cos >= opt.minCos)) {
      result.ok = false; result.error = `output '${name}' cosine ${cos} < ${opt.minCos}`;
    }
    if (opt.maxAbs !== null && !(r.maxAbs <= opt.maxAbs)) {
      result.ok = false; result.error = `output '${name}' max abs error ${r.maxAbs} > ${opt.maxAbs}`;
    }
    if (opt.minTop1 !== null && o.top1_agreement !== null && o.top1_agreement < opt.minTop1) {
      result.ok = false; result.error = `output '${name}' top-1 agreement ${o.top1_agreement} < ${opt.minTop1}`;
    }
  }
  result.min_cosine = minCos;
  if (opt.metrics) {
    const probs = compareMetrics(opt, result, acc, opt.samples);
    if (probs.length) { result.ok = false; result.error = 'quantd metrics.json vs ORT: ' + probs.join('; '); }
  }
  result.float_ms = tf / opt.samples;
  result.quant_ms = tq / opt.samples;
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => { console.log(JSON.stringify({ ok: false, error: String(e && e.message || e) })); process.exit(1); });
