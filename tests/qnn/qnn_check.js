#!/usr/bin/env node
// tests/qnn: runs an original float model and its QnnPreprocess'ed (or quantized) version in
// ONNX Runtime (onnxruntime-node) on the same seeded random inputs and prints one JSON line:
// per output the max abs error and cosine. The original runs with ORT's graph optimizations
// disabled (so ORT's own Gelu / LayerNorm fusions cannot make the two the same graph);
// the other with all optimizations (what a user gets).
//
// usage: node tests/qnn/qnn_check.js ORIG.onnx OTHER.onnx [--max-abs X] [--min-cos X]
//        [--samples N] [--channel-last-in NAME]... [--channel-last-out NAME]...
//        [--inputs F.npz]
//   --channel-last-in NAME   OTHER's input NAME is (N,H,W,C): fed the transpose of ORIG's
//   --channel-last-out NAME  OTHER's output NAME is (N,H,W,C): compared after transposing back
//   --inputs F               feed the rows of F's arrays (first axis = samples)
// Exit 0 when every threshold holds, 1 otherwise (incl. a model ORT cannot load), 2 usage.
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

function usage(m) {
  process.stderr.write((m ? m + '\n' : '') + 'usage: node qnn_check.js ORIG.onnx OTHER.onnx [options]\n');
  process.exit(2);
}

function parse(argv) {
  const o = { files: [], maxAbs: null, minCos: null, samples: 3, inCl: [], outCl: [], inputs: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage('missing value for ' + a); return argv[++i]; };
    if (a === '--max-abs') o.maxAbs = parseFloat(val());
    else if (a === '--min-cos') o.minCos = parseFloat(val());
    else if (a === '--samples') o.samples = parseInt(val(), 10);
    else if (a === '--channel-last-in') o.inCl.push(val());
    else if (a === '--channel-last-out') o.outCl.push(val());
    else if (a === '--inputs') o.inputs = val();
    else if (a.startsWith('--')) usage('unknown option ' + a);
    else o.files.push(a);
  }
  if (o.files.length !== 2) usage('need ORIG.onnx and OTHER.onnx');
  return o;
}

// NCHW <-> NHWC of a 4-D ort tensor
function transpose4(t, toLast) {
  const [n, a, b, c] = t.dims;
  const out = new t.data.constructor(t.data.length);
  // toLast: (N,C,H,W) -> (N,H,W,C); else (N,H,W,C) -> (N,C,H,W)
  for (let i = 0; i < n; i++)
    for (let x = 0; x < a; x++)
      for (let y = 0; y < b; y++)
        for (let z = 0; z < c; z++) {
          const src = ((i * a + x) * b + y) * c + z;
          const dst = toLast ? ((i * b + y) * c + z) * a + x : ((i * c + z) * a + x) * b + y;
          out[dst] = t.data[src];
        }
  const dims = toLast ? [n, b, c, a] : [n, c, a, b];
  return new lib.ort.Tensor(t.type, out, dims);
}

async function main() {
  const o = parse(process.argv.slice(2));
  const res = { orig: o.files[0], other: o.files[1], ok: true, outputs: {}, problems: [] };
  let s0, s1;
  try {
    s0 = await lib.session(o.files[0], 'cpu', { graphOptimizationLevel: 'disabled' });
    s1 = await lib.session(o.files[1], 'cpu');
  } catch (e) {
    res.ok = false;
    res.problems.push('onnx runtime cannot load: ' + e.message);
    console.log(JSON.stringify(res));
    process.exit(1);
  }
  const meta = s0.inputMetadata;
  const rand = lib.rng('mulberry32', 4321);
  const arrays = o.inputs ? lib.readNpz(o.inputs) : null;
  const runs = arrays ? Object.values(arrays)[0].dims[0] : o.samples;
  const acc = {};
  for (let r = 0; r < runs; r++) {
    let feeds;
    if (arrays) {
      feeds = {};
      for (const m of meta) {
        const t = arrays[m.name];
        const len = t.data.length / t.dims[0];
        const dims = t.dims.slice(1);
        feeds[m.name] = new lib.ort.Tensor(t.type, t.data.slice(r * len, (r + 1) * len), dims.length === m.shape.length ? dims : [1, ...dims]);
      }
    } else {
      feeds = lib.makeFeeds(meta, { shapes: {}, minDim: 1, symDim: (k) => (k === 0 ? 1 : 8), intMax: 100,
        types: ['float32', 'int64'] }, rand);
    }
    const f1 = {};
    for (const [k, v] of Object.entries(feeds)) f1[k] = o.inCl.includes(k) ? transpose4(v, true) : v;
    let y0, y1;
    try {
      y0 = await s0.run(feeds);
      y1 = await s1.run(f1);
    } catch (e) {
      res.ok = false;
      res.problems.push('onnx runtime cannot run: ' + e.message);
      break;
    }
    for (const name of s0.outputNames) {
      let b = y1[name];
      if (!b) { res.problems.push(`output '${name}' missing`); res.ok = false; continue; }
      if (o.outCl.includes(name)) {
        if (b.dims.join(',') !== [y0[name].dims[0], y0[name].dims[2], y0[name].dims[3], y0[name].dims[1]].join(','))
          res.problems.push(`output '${name}' has dims ${b.dims}, expected the channel-last of ${y0[name].dims}`);
        b = transpose4(b, false);
      } else if (b.dims.join(',') !== y0[name].dims.join(',')) {
        res.problems.push(`output '${name}' has dims ${b.dims}, the original ${y0[name].dims}`);
      }
      const c = lib.compare(y0[name].data, b.data);
      const a = acc[name] || (acc[name] = { dot: 0, na: 0, nb: 0, maxAbs: 0 });
      a.dot += c.dot; a.na += c.na; a.nb += c.nb; a.maxAbs = Math.max(a.maxAbs, c.maxAbs);
    }
  }
  for (const [name, a] of Object.entries(acc)) {
    const cos = lib.cosine(a.dot, a.na, a.nb);
    res.outputs[name] = { max_abs_error: a.maxAbs, cosine: cos };
    if (o.maxAbs !== null && !(a.maxAbs <= o.maxAbs)) res.problems.push(`output '${name}': max abs ${a.maxAbs} > ${o.maxAbs}`);
    if (o.minCos !== null && !(cos >= o.minCos)) res.problems.push(`output '${name}': cosine ${cos} < ${o.minCos}`);
  }
  if (res.problems.length) res.ok = false;
  console.log(JSON.stringify(res));
  process.exit(res.ok ? 0 : 1);
}

main().catch((e) => { console.log(JSON.stringify({ ok: false, problems: [String(e && e.stack || e)] })); process.exit(1); });
