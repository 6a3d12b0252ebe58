#!/usr/bin/env node
// bench/ort_time.js — best-of-N wall time (ms) of one ONNX Runtime session.run, single
// intra-op thread: node bench/ort_time.js model.onnx inputs.npz [runs]
'use strict';
const path = require('path');
const fs = require('fs');
const zlib = require('zlib');
const ort = require(path.join(__dirname, '..', 'tests', 'ort', 'node_modules', 'onnxruntime-node'));

function readNpzFloat(file) {   // float32 .npy entries of a stored/deflated .npz
	const buf = fs.readFileSync(file), out = {};
	let p = 0;
	while (buf.readUInt32LE(p) === 0x04034b50) {
		const method = buf.readUInt16LE(p + 8), csize = buf.readUInt32LE(p + 18);
		const nlen = buf.readUInt16LE(p + 26), xlen = buf.readUInt16LE(p + 28);
		const name = buf.toString('utf8', p + 30, p + 30 + nlen).replace(/\.npy$/, '');
		const raw = buf.subarray(p + 30 + nlen + xlen, p + 30 + nlen + xlen + csize);
		const npy = method === 8 ? zlib.inflateRawSync(raw) : raw;
		const hlen = npy.readUInt16LE(8), header = npy.toString('latin1', 10, 10 + hlen);
		const dims = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').filter(s => s.trim()).map(Number);
		const data = Buffer.from(npy.subarray(10 + hlen));
		out[name] = new ort.Tensor('float32', new Float32Array(data.buffer, data.byteOffset, data.length / 4), dims);
		p += 30 + nlen + xlen + csize;
	}
	return out;
}

(async () => {
	const [model, inputs, runs] = process.argv.slice(2);
	const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
	const feeds = readNpzFloat(inputs);
	let best = Infinity;
	for (let i = 0; i < (Number(runs) || 5); i++) {
		const t0 = process.hrtime.bigint();
		await s.run(feeds);
		best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
	}
	console.log(best.toFixed(3));
})().catch(e => { console.error('ort_time: ' + e.message); process.exit(1); });
