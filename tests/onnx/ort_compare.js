// Runs two models in ONNX Runtime (onnxruntime-node) on the same random inputs and compares
// every output. Usage: node ort_compare.js REF.onnx TEST.onnx '{"x":[1,3,64,64]}' [tol]
// Prints "same|max_abs_diff=..." and exits non-zero on a difference above tol or any error.
const path = require('path');
const ort = require(path.join(__dirname, '..', 'ort', 'node_modules', 'onnxruntime-node'));

function rng(seed) {
	let s = seed >>> 0;
	return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
}

async function run(file, feeds) {
	const sess = await ort.InferenceSession.create(file);
	const out = await sess.run(feeds);
	return sess.outputNames.map((n) => out[n]);
}

(async () => {
	const [ref, test, shapesJson, tolArg] = process.argv.slice(2);
	const tol = tolArg ? parseFloat(tolArg) : 0;
	const shapes = JSON.parse(shapesJson);
	const r = rng(42);
	const feeds = {};
	for (const [name, dims] of Object.entries(shapes)) {
		const n = dims.reduce((a, b) => a * b, 1);
		const d = new Float32Array(n);
		for (let i = 0; i < n; i++) d[i] = r() * 2 - 1;
		feeds[name] = new ort.Tensor('float32', d, dims);
	}
	const a = await run(ref, feeds), b = await run(test, feeds);
	if (a.length !== b.length) throw new Error(`output count ${a.length} vs ${b.length}`);
	let maxd = 0, identical = true;
	for (let i = 0; i < a.length; i++) {
		if (a[i].dims.join() !== b[i].dims.join()) throw new Error(`output ${i} dims differ`);
		for (let k = 0; k < a[i].data.length; k++) {
			const x = Number(a[i].data[k]), y = Number(b[i].data[k]);
			if (x !== y) identical = false;
			const diff = Math.abs(x - y);
			if (!(diff <= maxd)) maxd = Number.isNaN(diff) ? Infinity : diff;
		}
	}
	console.log(`${identical ? 'identical' : 'differs'} max_abs_diff=${maxd} outputs=${a.length}`);
	process.exit(maxd <= tol ? 0 : 1);
})().catch((e) => { console.log(`error: ${e.message}`); process.exit(1); });
