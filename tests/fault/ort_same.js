#!/usr/bin/env node
// tests/fault/ort_same.js — do recovered artifacts compute what the artifact of an
// uninterrupted run computes? Loads REF and every CANDIDATE in ONNX Runtime
// (onnxruntime-node, CPU EP), feeds them the same seeded random inputs (--runs sets of
// them; shapes from --shape, symbolic dims 1) and requires every output to be equal
// element for element (max abs difference 0, same element count, no NaN/Inf).
//   node tests/fault/ort_same.js REF.onnx CAND.onnx... [--shape x=1,3,48,160] [--runs 2]
// Prints one JSON line per candidate; exit 0 only when all match.
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

async function main() {
	const files = [], shapes = {};
	let runs = 2;
	const argv = process.argv.slice(2);
	for (let i = 0; i < argv.length; i++) {
		if (argv[i] === '--shape') {
			const [n, s] = argv[++i].split('=');
			shapes[n] = s.split(',').map(Number);
		} else if (argv[i] === '--runs') runs = Number(argv[++i]);
		else files.push(argv[i]);
	}
	if (files.length < 2) throw new Error('usage: ort_same.js REF.onnx CAND.onnx... [--shape n=d,d] [--runs N]');
	const ref = await lib.session(files[0], 'single');
	const rand = lib.rng('mulberry32', 7);
	const feeds = [], want = [];
	for (let r = 0; r < runs; r++) {
		const f = lib.makeFeeds(ref.inputMetadata, { shapes, symDim: () => 1, intMax: 100 }, rand);
		feeds.push(f);
		want.push(await ref.run(f));
	}
	let bad = 0;
	for (const file of files.slice(1)) {
		let res = { file: path.basename(file), outputs: 0, max_abs_diff: 0, pass: true };
		try {
			const s = await lib.session(file, 'single');
			for (let r = 0; r < runs; r++) {
				const got = await s.run(feeds[r]);
				for (const name of ref.outputNames) {
					const a = want[r][name].data, b = got[name] && got[name].data;
					if (!b || a.length !== b.length) throw new Error(`output '${name}' missing or of another size`);
					for (let i = 0; i < a.length; i++) {
						const x = Number(a[i]), y = Number(b[i]);
						if (!Number.isFinite(y)) throw new Error(`output '${name}' has a non-finite value`);
						res.max_abs_diff = Math.max(res.max_abs_diff, Math.abs(x - y));
					}
					res.outputs++;
				}
			}
			res.pass = res.max_abs_diff === 0;
		} catch (e) {
			res.pass = false;
			res.error = e.message;
		}
		if (!res.pass) bad++;
		console.log(JSON.stringify(res));
	}
	console.log(`ort_same: ${files.length - 1 - bad} of ${files.length - 1} artifacts equal the reference`);
	process.exit(bad ? 1 : 0);
}

main().catch(e => { console.error(`ort_same: ${e.message}`); process.exit(1); });
