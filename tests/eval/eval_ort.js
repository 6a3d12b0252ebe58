// tests/eval/eval_ort.js — the figures quantd's evaluation reports, measured in ONNX Runtime
// on the same samples: the float and the quantized model on every sample of an .npz, in the
// batches quantd uses (batch_size rows at a time), and per output the pooled cosine, the
// worst batch's cosine, max / mean abs error, SNR and the top-1 agreement over the last
// axis; plus each model's argmax predictions of its first output (the label metrics are
// computed from them by tests/eval/eval.py, apart from quantd's C).
//
//   node tests/eval/eval_ort.js FLOAT.onnx QUANT.onnx DATA.npz BATCH_SIZE [OPT] > figures.json
// OPT: ORT's graphOptimizationLevel, 'all' (default: QDQ groups fused into int8 kernels) or
// 'disabled' (the graph's own Q/DQ arithmetic, as quantd's executor runs it).
'use strict';
const path = require('path');
const lib = require(path.join(__dirname, '..', 'ort', 'ort_lib.js'));

async function run(sess, feeds) {
	const out = await sess.run(feeds);
	return sess.outputNames.map(n => out[n]);
}

function rows(t, start, count) {
	const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
	const data = t.data.slice(start * per, (start + count) * per);
	return new lib.ort.Tensor(t.type, data, [count, ...t.dims.slice(1)]);
}

function argmaxRows(t) {
	const last = t.dims[t.dims.length - 1], out = [];
	for (let r = 0; r + last <= t.data.length; r += last) {
		let b = 0;
		for (let k = 1; k < last; k++) if (t.data[r + k] > t.data[r + b]) b = k;
		out.push(b);
	}
	return out;
}

async function main() {
	const [fp, qp, dp, bsArg, opt] = process.argv.slice(2);
	const bs = Number(bsArg || 1);
	const so = { graphOptimizationLevel: opt || 'all' };
	const fs = await lib.session(fp, 'cpu', so), qs = await lib.session(qp, 'cpu', so);
	const data = lib.readNpz(dp);
	const inputs = fs.inputNames;
	const n = data[inputs[0]].dims[0];
	const outs = fs.outputNames.map(name => ({ name, dot: 0, na: 0, nb: 0, maxe: 0, sume: 0, noise: 0, cnt: 0,
		minBatchCos: 1, same: 0, total: 0 }));
	const predF = [], predQ = [];
	for (let s = 0; s < n; s += bs) {
		const c = Math.min(bs, n - s), feeds = {};
		for (const name of inputs) feeds[name] = rows(data[name], s, c);
		const fo = await run(fs, feeds), qo = await run(qs, feeds);
		fo.forEach((f, i) => {
			const q = qo[i], o = outs[i];
			const cmp = lib.compare(f.data, q.data);
			o.dot += cmp.dot; o.na += cmp.na; o.nb += cmp.nb; o.sume += cmp.sumAbs; o.cnt += cmp.n;
			o.maxe = Math.max(o.maxe, cmp.maxAbs);
			for (let k = 0; k < f.data.length; k++) { const d = f.data[k] - q.data[k]; o.noise += d * d; }
			o.minBatchCos = Math.min(o.minBatchCos, cmp.cos);
			if (f.dims.length >= 2 && f.dims[f.dims.length - 1] > 1) {
				const a = argmaxRows(f), b = argmaxRows(q);
				for (let k = 0; k < a.length; k++) { o.same += a[k] === b[k]; o.total++; }
				if (i === 0) { predF.push(...a); predQ.push(...b); }
			}
		});
	}
	const res = {
		samples: n, batches: Math.ceil(n / bs),
		outputs: outs.map(o => ({ name: o.name, cosine: lib.cosine(o.dot, o.na, o.nb), min_batch_cosine: o.minBatchCos,
			max_abs_error: o.maxe, mean_abs_error: o.sume / o.cnt,
			snr_db: o.noise > 0 ? 10 * Math.log10(o.na / o.noise) : 200,
			top1_agreement: o.total ? o.same / o.total : null, top1_same: o.same, top1_total: o.total })),
		pred_float: predF, pred_quant: predQ,
	};
	if (data.labels) res.labels = Array.from(data.labels.data, Number);
	process.stdout.write(JSON.stringify(res) + '\n');
}

main().catch(e => { console.error(`eval_ort: ${e.stack || e}`); process.exit(2); });
