#!/usr/bin/env node
// bench/ort_time.js — best-of-N wall time (ms) of one ONNX Runtime session.run, single
// intra-op thread: node bench/ort_time.js model.onnx inputs.npz [runs]
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'tests', 'ort', 'ort_lib.js'));

(async () => {
	const [model, inputs, runs] = process.argv.slice(2);
	const s = await lib.session(model, 'single', { logSeverityLevel: 3 });
	const feeds = lib.readNpz(inputs);
	let best = Infinity;
	for (let i = 0; i < (Number(runs) || 5); i++) {
		const t0 = process.hrtime.bigint();
		await s.run(feeds);
		best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
	}
	console.log(best.toFixed(3));
})().catch(e => { console.error('ort_time: ' + e.message); process.exit(1); });
