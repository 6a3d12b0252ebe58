// tests/robust/ort_check.js MODEL.onnx INPUTS.npz|fill:V REFERENCE.npz MIN_COSINE
// Loads a model quantd produced in ONNX Runtime, runs it on the inputs and compares every
// output with the reference (quantd infer on the float model): cosine >= MIN_COSINE and the
// same number of elements. Prints "name cos maxabs" per output; exit 1 on any failure.
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));
(async () => {
	const [model, inputs, reference, minCos] = process.argv.slice(2);
	const s = await lib.session(model);
	// "fill:V": every input a float32 [1] of value V (for 10^5 inputs, past what the .npz
	// reader takes)
	const feeds = inputs.startsWith('fill:') ? Object.fromEntries(s.inputNames.map((n) =>
		[n, new lib.ort.Tensor('float32', Float32Array.from([Number(inputs.slice(5))]), [1])])) : lib.readNpz(inputs);
	const ref = lib.readNpz(reference);
	const out = await s.run(feeds);
	let bad = 0;
	for (const name of s.outputNames) {
		const want = ref[name];
		if (!want) { console.error(`output '${name}' missing from the reference`); bad++; continue; }
		const c = lib.compare(want.data, out[name].data);
		console.log(`${name} cos ${c.cos.toFixed(6)} maxabs ${c.maxAbs.toPrecision(3)}`);
		if (c.sizeMismatch || !(c.cos >= Number(minCos))) { console.error(`output '${name}': cos ${c.cos}`); bad++; }
	}
	process.exit(bad ? 1 : 0);
})().catch((e) => { console.error(String(e)); process.exit(1); });
