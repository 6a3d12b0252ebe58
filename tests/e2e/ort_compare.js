#!/usr/bin/env node
// tests/e2e/ort_compare.js — load a float model and its quantized version in ONNX Runtime
// (onnxruntime-node, CPU EP), feed both the same seeded random inputs (dtypes and shapes
// from the float model's metadata; symbolic dims from --dim or --shape), and print one
// JSON line per output with cosine similarity and max abs error.
//   node tests/e2e/ort_compare.js FLOAT.onnx QUANT.onnx [--min-cos 0.99] [--seed 1]
//        [--max-abs X] [--shape input=1,3,48,192] [--dim default=1] [--int-max 100] [--runs 2]
// Exit 0 when every output's cosine >= --min-cos, max abs error <= --max-abs (and both models load and run);
// 1 otherwise, with "ort_compare: ..." on stderr.
'use strict';
const path = require('path');
const ort = require(path.join(__dirname, '..', 'ort', 'node_modules', 'onnxruntime-node'));

function parseArgs(argv) {
	const a = { files: [], minCos: 0.99, maxAbs: Infinity, seed: 1, shapes: {}, dim: 1, intMax: 100, runs: 2 };
	for (let i = 0; i < argv.length; i++) {
		const k = argv[i];
		const v = () => { if (i + 1 >= argv.length) throw new Error(`option ${k} needs a value`); return argv[++i]; };
		if (k === '--min-cos') a.minCos = Number(v());
		else if (k === '--seed') a.seed = Number(v());
		else if (k === '--max-abs') a.maxAbs = Number(v());
		else if (k === '--dim') a.dim = Number(v().replace(/^default=/, ''));
		else if (k === '--int-max') a.intMax = Number(v());
		else if (k === '--runs') a.runs = Number(v());
		else if (k === '--shape') {
			const [n, s] = v().split('=');
			a.shapes[n] = s.split(',').map(Number);
		} else if (k.startsWith('--')) throw new Error(`unknown option ${k}`);
		else a.files.push(k);
	}
	if (a.files.length !== 2) throw new Error('usage: ort_compare.js FLOAT.onnx QUANT.onnx [options]');
	return a;
}

// mulberry32: small seeded PRNG so runs are reproducible
function rng(seed) {
	let s = seed >>> 0;
	return () => {
		s = (s + 0x6D2B79F5) >>> 0;
		let t = s;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

function makeInput(meta, args, rand) {
	const shape = args.shapes[meta.name] ||
		meta.shape.map(d => (typeof d === 'number' && d >= 0) ? d : args.dim);
	const n = shape.reduce((x, y) => x * y, 1);
	switch (meta.type) {
	case 'float32': return new ort.Tensor('float32', Float32Array.from({ length: n }, () => rand() * 2 - 1), shape);
	case 'float64': return new ort.Tensor('float64', Float64Array.from({ length: n }, () => rand() * 2 - 1), shape);
	case 'int64': return new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rand() * args.intMax))), shape);
	case 'int32': return new ort.Tensor('int32', Int32Array.from({ length: n }, () => Math.floor(rand() * args.intMax)), shape);
	case 'uint8': return new ort.Tensor('uint8', Uint8Array.from({ length: n }, () => Math.floor(rand() * 256)), shape);
	case 'bool': return new ort.Tensor('bool', Array.from({ length: n }, () => rand() < 0.5), shape);
	default: throw new Error(`input '${meta.name}': dtype '${meta.type}' not supported`);
	}
}

function compare(a, b) {
	let dot = 0, na = 0, nb = 0, maxAbs = 0, nonFinite = 0;
	const n = Math.min(a.length, b.length);
	for (let i = 0; i < n; i++) {
		const x = Number(a[i]), y = Number(b[i]);
		if (!Number.isFinite(y)) { nonFinite++; continue; }
		dot += x * y; na += x * x; nb += y * y;
		maxAbs = Math.max(maxAbs, Math.abs(x - y));
	}
	let cos;
	if (na === 0 && nb === 0) cos = 1;
	else if (na === 0 || nb === 0) cos = 0;
	else cos = dot / Math.sqrt(na * nb);
	return { cos, maxAbs, nonFinite, sizeMismatch: a.length !== b.length };
}

async function main() {
	const args = parseArgs(process.argv.slice(2));
	const opts = { executionProviders: ['cpu'], graphOptimizationLevel: 'all' };
	const fs = await ort.InferenceSession.create(args.files[0], opts);
	const qs = await ort.InferenceSession.create(args.files[1], opts);
	const rand = rng(args.seed);
	let ok = true;
	const worst = {};
	for (let run = 0; run < args.runs; run++) {
		const feeds = {};
		for (const m of fs.inputMetadata) feeds[m.name] = makeInput(m, args, rand);
		const fo = await fs.run(feeds);
		const qo = await qs.run(feeds);
		for (const name of fs.outputNames) {
			if (!(name in qo)) throw new Error(`quantized model lacks output '${name}'`);
			const r = compare(fo[name].data, qo[name].data);
			if (r.sizeMismatch) throw new Error(`output '${name}': ${fo[name].data.length} vs ${qo[name].data.length} elements`);
			const w = worst[name];
			if (!w || r.cos < w.cos) worst[name] = { ...r, maxAbs: Math.max(r.maxAbs, w ? w.maxAbs : 0) };
			else w.maxAbs = Math.max(w.maxAbs, r.maxAbs);
		}
	}
	for (const [name, r] of Object.entries(worst)) {
		const pass = r.cos >= args.minCos && r.maxAbs <= args.maxAbs && r.nonFinite === 0;
		ok = ok && pass;
		console.log(JSON.stringify({ output: name, cosine: Number(r.cos.toFixed(6)), max_abs_error: Number(r.maxAbs.toPrecision(6)),
			non_finite: r.nonFinite, min_cos: args.minCos, pass }));
	}
	if (!ok) {
		console.error(`ort_compare: cosine below ${args.minCos}, max abs error above ${args.maxAbs} or non-finite values for '${args.files[1]}'`);
		process.exit(1);
	}
}

main().catch(e => { console.error(`ort_compare: ${e.message}`); process.exit(1); });
