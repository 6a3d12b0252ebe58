#!/usr/bin/env node
// tests/qops/ort_infer.js — run a model in ONNX Runtime (onnxruntime-node, CPU EP) on the
// arrays of an .npz file (matched to model inputs by name) and write every model output
// to an .npz file (stored, one <output name>.npy each).
//   node tests/qops/ort_infer.js model.onnx inputs.npz outputs.npz
//   node tests/qops/ort_infer.js --batch list.txt   (lines "model inputs.npz outputs.npz";
//   every line is run; a failing one prints "ort: <model>: ..." and the exit code is 1)
// Exit code 0 on success; on failure a one-line message ("ort: ...") on stderr and exit 1.
'use strict';
const fs = require('fs');
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

async function runOne(model, inFile, outFile) {
	const sess = await lib.session(model, 'cpu', { logSeverityLevel: 3 });
	const arrays = lib.readNpzRaw(inFile);
	const feeds = {};
	for (const name of sess.inputNames) {
		if (!(name in arrays)) throw new Error(`input '${name}' missing from '${inFile}'`);
		feeds[name] = lib.parseNpy(arrays[name], name);
	}
	const res = await sess.run(feeds);
	const out = {};
	for (const n of sess.outputNames) out[n] = res[n];
	lib.writeNpz(outFile, out);
}

async function main() {
	const args = process.argv.slice(2);
	if (args[0] === '--batch' && args[1]) {
		let bad = 0;
		for (const line of fs.readFileSync(args[1], 'utf8').split('\n')) {
			const f = line.trim().split(/\s+/);
			if (f.length !== 3) continue;
			try { await runOne(...f); } catch (e) {
				bad++;
				process.stderr.write(`ort: ${f[0]}: ${String(e.message || e).split('\n')[0]}\n`);
			}
		}
		if (bad) process.exit(1);
		return;
	}
	if (args.length !== 3) throw new Error('usage: ort_infer.js model.onnx inputs.npz outputs.npz | --batch list.txt');
	await runOne(...args);
}

main().catch(e => { process.stderr.write(`ort: ${String(e.message || e).split('\n')[0]}\n`); process.exit(1); });
