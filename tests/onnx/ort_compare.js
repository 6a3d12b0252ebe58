// Runs two models in ONNX Runtime (onnxruntime-node) on the same random inputs and compares
// every output. Usage: node ort_compare.js REF.onnx TEST.onnx '{"x":[1,3,64,64]}' [tol]
// Prints "same|max_abs_diff=..." and exits non-zero on a difference above tol or any error.
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

async function run(file, feeds) {
	const sess = await lib.session(file);
	const out = await sess.run(feeds);
	return sess.outputNames.map((n) => out[n]);
}

(async () => {
	const [ref, test, shapesJson, tolArg] = process.argv.slice(2);
	const tol = tolArg ? parseFloat(tolArg) : 0;
	const shapes = JSON.parse(shapesJson);
	const r = lib.rng('lcg', 42);
	const feeds = {};
	for (const [name, dims] of Object.entries(shapes)) feeds[name] = lib.randomTensor('float32', dims, r, 0, name);
	const a = await run(ref, feeds), b = await run(test, feeds);
	if (a.length !== b.length) throw new Error(`output count ${a.length} vs ${b.length}`);
	let maxd = 0, identical = true;
	for (let i = 0; i < a.length; i++) {
		if (a[i].dims.join() !== b[i].dims.join()) throw new Error(`output ${i} dims differ`);
		const c = lib.compare(a[i].data, b[i].data);
		if (!c.identical) identical = false;
		const d = c.nonFinite ? Infinity : c.maxAbs;
		if (d > maxd) maxd = d;
	}
	console.log(`${identical ? 'identical' : 'differs'} max_abs_diff=${maxd} outputs=${a.length}`);
	process.exit(maxd <= tol ? 0 : 1);
})().catch((e) => { console.log(`error: ${e.message}`); process.exit(1); });
