// tests/opset/ort_same.js — run two models in onnxruntime-node on the same seeded random
// inputs and compare every output: node ort_same.js A.onnx B.onnx '{"x":[1,3,48,320]}' [tol]
// Prints one JSON line {max_abs, outputs, opset_a, opset_b}; exit 1 when max_abs > tol.
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

async function main() {
	const [a, b, shapesJson, tolArg] = process.argv.slice(2);
	const tol = tolArg ? Number(tolArg) : 1e-5;
	const sa = await lib.session(a, 'single'), sb = await lib.session(b, 'single');
	const rand = lib.rng('mulberry32', 1234);
	const feeds = lib.makeFeeds(sa.inputMetadata,
		{ shapes: JSON.parse(shapesJson), symDim: () => 1 }, rand);
	const ra = await sa.run(feeds), rb = await sb.run(feeds);
	let max = 0;
	const outs = {};
	for (const name of sa.outputNames) {
		if (!rb[name]) throw new Error(`output '${name}' missing from ${b}`);
		if (ra[name].dims.join(',') !== rb[name].dims.join(',')) throw new Error(`output '${name}': shapes differ`);
		const c = lib.compare(ra[name].data, rb[name].data);
		outs[name] = { max_abs: c.maxAbs, cos: c.cos, dims: ra[name].dims };
		max = Math.max(max, c.maxAbs);
	}
	console.log(JSON.stringify({ max_abs: max, outputs: outs }));
	process.exit(max <= tol ? 0 : 1);
}
main().catch(e => { console.log(JSON.stringify({ error: String(e.message || e) })); process.exit(1); });
