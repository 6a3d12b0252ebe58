// Runs a model in ONNX Runtime (onnxruntime-node, CPU, 1 intra-op thread) on inputs from
// an .npz file and writes the outputs as .npz — the reference side of the parity tests.
// usage: node ort_infer.js model.onnx in.npz out.npz [--time N] [--threads T]   (--time: N
// timed runs, prints "ort_ms <median>"; --threads: T intra-op threads instead of 1)
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

async function main() {
  const [model, inp, outp, ...rest] = process.argv.slice(2);
  if (!model || !inp || !outp) { console.error('usage: node ort_infer.js model.onnx in.npz out.npz [--time N]'); process.exit(2); }
  let timeN = 0, threads = 1;
  for (let i = 0; i + 1 < rest.length; i += 2) {
    if (rest[i] === '--time') timeN = Number(rest[i + 1]);
    else if (rest[i] === '--threads') threads = Number(rest[i + 1]);
    else { console.error(`ort_infer: unknown option '${rest[i]}'`); process.exit(2); }
  }
  const sess = await lib.session(model, 'single', { intraOpNumThreads: threads });
  const feeds = lib.readNpz(inp);
  let res = await sess.run(feeds);
  if (timeN > 0) {
    const ts = [];
    for (let i = 0; i < timeN; i++) {
      const t0 = process.hrtime.bigint();
      res = await sess.run(feeds);
      ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    ts.sort((a, b) => a - b);
    console.log(`ort_ms ${ts[Math.floor(ts.length / 2)].toFixed(3)} rss_mb ${(process.memoryUsage().rss / 1048576).toFixed(1)}`);
  }
  const out = {};
  for (const n of sess.outputNames) out[n] = res[n];
  lib.writeNpz(outp, out);
}
main().catch(e => { console.error('ort_infer:', e.message); process.exit(1); });
