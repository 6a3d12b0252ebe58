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
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

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

async function main() {
	const args = parseArgs(process.argv.slice(2));
	const fs = await lib.session(args.files[0]);
	const qs = await lib.session(args.files[1]);
	const rand = lib.rng('mulberry32', args.seed);
	const feedOpt = { shapes: args.shapes, symDim: () => args.dim, intMax: args.intMax };
	let ok = true;
	const worst = {};
	for (let run = 0; run < args.runs; run++) {
		const feeds = lib.makeFeeds(fs.inputMetadata, feedOpt, rand);
		const fo = await fs.run(feeds);
		const qo = await qs.run(feeds);
		for (const name of fs.outputNames) {
			if (!(name in qo)) throw new Error(`quantized model lacks output '${name}'`);
			const r = lib.compare(fo[name].data, qo[name].data);
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
