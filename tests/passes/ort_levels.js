#!/usr/bin/env node
// Diagnostic (not a test): how far quantd's engine is from ONNX Runtime on a quantized
// artifact, beside how far ORT is from itself between its graph optimisation levels
// ('all', which fuses QDQ groups into integer kernels and LayerNorm / GELU groups into
// fused float kernels, vs 'disabled', which runs every DequantizeLinear -> float op ->
// QuantizeLinear as written). One sample per run, the first K of the held-out .npz.
//   node tests/passes/ort_levels.js model.onnx held.npz K path/to/quantd
// prints {output: {all_vs_noopt, qd_vs_all, qd_vs_noopt}} (max abs differences).
const fs = require('fs'), os = require('os'), path = require('path');
const { spawnSync } = require('child_process');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));
const ort = lib.ort;
const [model, held, K, qbin] = process.argv.slice(2);
(async () => {
  const data = lib.readNpz(held);
  const mk = (lvl) => ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: lvl, intraOpNumThreads: 1 });
  const sA = await mk('all'), sN = await mk('disabled');
  const res = {};
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lv'));
  for (let i = 0; i < +K; i++) {
    const feeds = {}, np = {};
    for (const n of sA.inputNames) {
      const t = data[n], per = t.data.length / t.dims[0];
      feeds[n] = new ort.Tensor(t.type, t.data.slice(i * per, (i + 1) * per), [1, ...t.dims.slice(1)]);
      np[n] = feeds[n];
    }
    const a = await sA.run(feeds), b = await sN.run(feeds);
    const fin = path.join(tmp, 'in.npz'), fout = path.join(tmp, 'out.npz');
    lib.writeNpz(fin, np);
    const r = spawnSync(qbin, ['infer', '--model', model, '--input', fin, '--output', fout], { encoding: 'utf8' });
    if (r.status !== 0) { console.log(JSON.stringify({ error: r.stderr })); process.exit(1); }
    const q = lib.readNpz(fout);
    for (const o of sA.outputNames) {
      const x = a[o].data, y = b[o].data, z = q[o].data;
      const e = res[o] || (res[o] = { all_vs_noopt: 0, qd_vs_all: 0, qd_vs_noopt: 0 });
      for (let k = 0; k < x.length; k++) {
        e.all_vs_noopt = Math.max(e.all_vs_noopt, Math.abs(x[k] - y[k]));
        e.qd_vs_all = Math.max(e.qd_vs_all, Math.abs(x[k] - z[k]));
        e.qd_vs_noopt = Math.max(e.qd_vs_noopt, Math.abs(y[k] - z[k]));
      }
    }
  }
  fs.rmSync(tmp, { recursive: true });
  console.log(JSON.stringify(res));
})();
