#!/usr/bin/env node
// Loads a float model and its quantized version in ONNX Runtime (onnxruntime-node), feeds
// both the same seeded random inputs and prints one JSON line per comparison: per output
// cosine similarity, max/mean abs error, top-1 agreement along the last axis, and the
// mean run time of each model. Exit 0 when every threshold holds, 1 otherwise (including a
// model ORT refuses to load or run), 2 on bad usage.
//
// usage: node tests/passes/ort_compare.js FLOAT.onnx QUANT.onnx [options]
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
  const o = { files: [], samples: 3, seed: 1234, shapes: {}, intMax: 100, minCos: null, minTop1: null, maxAbs: null, label: '' };
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
    else if (a === '--shape') {
      const [n, d] = val().split('=');
      if (!n || !d) usage('bad --shape');
      o.shapes[n] = d.split(',').map((x) => parseInt(x, 10));
    } else if (a.startsWith('--')) usage('unknown option ' + a);
    else o.files.push(a);
  }
  if (o.files.length !== 2) usage('need FLOAT.onnx and QUANT.onnx');
  return o;
}

function makeFeeds(meta, opt, rand) {
  return lib.makeFeeds(meta, { shapes: opt.shapes, minDim: 1, symDim: (k) => (k === 0 ? 1 : 32), intMax: opt.intMax,
    types: ['float32', 'int64', 'int32', 'bool'] }, rand);
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
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
  const acc = {};
  // one untimed warm-up run each, so the times below are steady-state
  try {
    const warm = makeFeeds(fs.inputMetadata, opt, lib.rng('xorshift32', opt.seed + 1));
    await fs.run(warm);
    await qs.run(warm);
  } catch (e) {
    console.log(JSON.stringify({ ...result, ok: false, error: 'ORT cannot run a model: ' + e.message }));
    process.exit(1);
  }
  let tf = 0, tq = 0;
  for (let s = 0; s < opt.samples; s++) {
    const feeds = makeFeeds(fs.inputMetadata, opt, rand);
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
      const r = acc[name] || (acc[name] = { dot: 0, na: 0, nb: 0, maxAbs: 0, sumAbs: 0, n: 0, top1: 0, rows: 0, finite: true });
      if (!b || a.data.length !== b.data.length) { r.finite = false; continue; }
      if (a.type !== 'float32') continue;
      const c = lib.compare(a.data, b.data);
      if (c.nonFinite) r.finite = false;
      r.dot += c.dot; r.na += c.na; r.nb += c.nb; r.sumAbs += c.sumAbs;
      if (c.maxAbs > r.maxAbs) r.maxAbs = c.maxAbs;
      r.n += a.data.length;
      const last = a.dims[a.dims.length - 1] || 1;
      if (last > 1) {
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
      cosine: r.finite ? cos : null, max_abs_error: r.maxAbs, mean_abs_error: r.n ? r.sumAbs / r.n : 0,
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
  result.float_ms = tf / opt.samples;
  result.quant_ms = tq / opt.samples;
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => { console.log(JSON.stringify({ ok: false, error: String(e && e.message || e) })); process.exit(1); });
