// tests/ort/ort_lib.js — code shared by the ONNX Runtime (onnxruntime-node) scripts under
// tests/: session options, .npz read/write, seeded random inputs that honour the model's
// dtypes and symbolic dims, and the output comparison (cosine, max/mean abs error).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

// session options: 'cpu' = CPU EP, all graph optimisations; 'single' = also one intra-op
// thread and sequential execution (the parity/timing reference)
const SESSION = {
	cpu: { executionProviders: ['cpu'], graphOptimizationLevel: 'all' },
	single: { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 1,
		interOpNumThreads: 1, executionMode: 'sequential' },
};

function session(file, kind = 'cpu', extra = {}) {
	const base = SESSION[kind];
	if (!base) throw new Error(`unknown session kind '${kind}'`);
	return ort.InferenceSession.create(file, { ...base, ...extra });
}

// ---- seeded PRNGs: every caller keeps the generator (and so the inputs) it always had

const RNG = {
	// 32-bit LCG (Numerical Recipes constants)
	lcg: (seed) => {
		let s = seed >>> 0;
		return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
	},
	xorshift32: (seed) => {
		let s = (seed >>> 0) || 1;
		return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
	},
	mulberry32: (seed) => {
		let s = seed >>> 0;
		return () => {
			s = (s + 0x6D2B79F5) >>> 0;
			let t = s;
			t = Math.imul(t ^ (t >>> 15), t | 1);
			t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
			return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
		};
	},
};

function rng(kind, seed) {
	const f = RNG[kind];
	if (!f) throw new Error(`unknown PRNG '${kind}'`);
	return f(seed);
}

// ---- seeded random inputs

// one tensor of dtype `type`: floats in [-1, 1), integers in [0, intMax), uint8 in [0, 256),
// bool 0/1 with p = 0.5; one rand() call per element, in order
function randomTensor(type, shape, rand, intMax = 100, name = '?') {
	const n = shape.reduce((a, b) => a * b, 1);
	const fill = (Arr, f) => { const a = new Arr(n); for (let i = 0; i < n; i++) a[i] = f(); return a; };
	let data;
	switch (type) {
	case 'float32': data = fill(Float32Array, () => rand() * 2 - 1); break;
	case 'float64': data = fill(Float64Array, () => rand() * 2 - 1); break;
	case 'int64': data = fill(BigInt64Array, () => BigInt(Math.floor(rand() * intMax))); break;
	case 'int32': data = fill(Int32Array, () => Math.floor(rand() * intMax)); break;
	case 'uint8': data = fill(Uint8Array, () => Math.floor(rand() * 256)); break;
	case 'bool': data = fill(Uint8Array, () => (rand() < 0.5 ? 1 : 0)); break;
	default: throw new Error(`input '${name}' has type ${type}: no generator`);
	}
	return new ort.Tensor(type, data, shape);
}

// feeds for every entry of a session's inputMetadata. o.shapes: {name: [dims]} overrides;
// o.symDim(k): value for a dim at axis k that is symbolic or below o.minDim (default 0);
// o.intMax; o.types: dtypes the caller accepts (others fail with "... no generator")
function makeFeeds(meta, o, rand) {
	const feeds = {};
	for (const m of meta) {
		if (o.types && !o.types.includes(m.type)) throw new Error(`input '${m.name}' has type ${m.type}: no generator`);
		const shape = o.shapes[m.name] ||
			m.shape.map((d, k) => (typeof d === 'number' && d >= (o.minDim || 0) ? d : o.symDim(k)));
		feeds[m.name] = randomTensor(m.type, shape, rand, o.intMax, m.name);
	}
	return feeds;
}

// ---- comparison of two output arrays (any numeric type, BigInt included)

// dot/na/nb/sumAbs/n are sums so callers can pool several runs. Non-finite values of `b`
// are counted in nonFinite and left out of the sums; a NaN difference counts as Infinity.
function compare(a, b) {
	let dot = 0, na = 0, nb = 0, maxAbs = 0, sumAbs = 0, nonFinite = 0, identical = a.length === b.length;
	const n = Math.min(a.length, b.length);
	for (let i = 0; i < n; i++) {
		const x = Number(a[i]), y = Number(b[i]);
		if (x !== y) identical = false;
		if (!Number.isFinite(y)) { nonFinite++; continue; }
		dot += x * y; na += x * x; nb += y * y;
		const d = Math.abs(x - y);
		if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
		sumAbs += d;
	}
	return { dot, na, nb, maxAbs, sumAbs, n, nonFinite, identical, sizeMismatch: a.length !== b.length,
		cos: cosine(dot, na, nb) };
}

// cosine similarity from pooled sums; two all-zero arrays are identical (1), one is not (0)
function cosine(dot, na, nb) {
	if (na === 0 && nb === 0) return 1;
	if (na === 0 || nb === 0) return 0;
	return dot / Math.sqrt(na * nb);
}

// ---- .npy / .npz (zip, stored or deflated entries)

const NPY_TYPES = {
	'<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
	'|u1': ['uint8', Uint8Array], '|i1': ['int8', Int8Array],
	'<u2': ['uint16', Uint16Array], '<i2': ['int16', Int16Array],
	'<u4': ['uint32', Uint32Array], '<i4': ['int32', Int32Array],
	'<i8': ['int64', BigInt64Array], '<u8': ['uint64', BigUint64Array],
	'|b1': ['bool', Uint8Array],
};
const ORT_TO_DESCR = {};
for (const [d, [t]] of Object.entries(NPY_TYPES)) ORT_TO_DESCR[t] = d;

function parseNpy(buf, name) {
	if (buf.length < 10 || buf.readUInt32BE(0) !== 0x934e554d || buf.toString('latin1', 1, 6) !== 'NUMPY')
		throw new Error(`'${name}' is not an .npy array`);
	const major = buf[6];
	const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
	const hoff = major === 1 ? 10 : 12;
	const header = buf.toString('latin1', hoff, hoff + hlen);
	const descr = /'descr':\s*'([^']+)'/.exec(header);
	const shapeStr = /'shape':\s*\(([^)]*)\)/.exec(header);
	if (!descr || !shapeStr) throw new Error(`'${name}': bad .npy header`);
	if (/'fortran_order':\s*True/.test(header)) throw new Error(`'${name}': fortran order not supported`);
	const dims = shapeStr[1].split(',').map(s => s.trim()).filter(s => s.length).map(Number);
	const t = NPY_TYPES[descr[1]];
	if (!t) throw new Error(`'${name}': dtype '${descr[1]}' not supported`);
	const [type, Arr] = t;
	const n = dims.reduce((a, b) => a * b, 1);
	const off = hoff + hlen;
	if (buf.length - off < n * Arr.BYTES_PER_ELEMENT) throw new Error(`'${name}': data shorter than its shape`);
	const bytes = Buffer.from(buf.subarray(off, off + n * Arr.BYTES_PER_ELEMENT)); // aligned copy
	let data = new Arr(bytes.buffer, bytes.byteOffset, n);
	if (type === 'bool') data = Uint8Array.from(data, v => (v ? 1 : 0));
	return new ort.Tensor(type, data, dims);
}

// {entry name without .npy: raw .npy bytes}
function readNpzRaw(file) {
	const buf = fs.readFileSync(file);
	let eocd = -1;
	for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--)
		if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
	if (eocd < 0) throw new Error(`'${file}' is not a zip/npz file`);
	const count = buf.readUInt16LE(eocd + 10);
	let cd = buf.readUInt32LE(eocd + 16);
	const out = {};
	for (let e = 0; e < count; e++) {
		if (buf.readUInt32LE(cd) !== 0x02014b50) throw new Error(`'${file}': bad central directory`);
		const method = buf.readUInt16LE(cd + 10), csize = buf.readUInt32LE(cd + 20);
		const nlen = buf.readUInt16LE(cd + 28), xlen = buf.readUInt16LE(cd + 30), clen = buf.readUInt16LE(cd + 32);
		const lho = buf.readUInt32LE(cd + 42);
		const name = buf.toString('utf8', cd + 46, cd + 46 + nlen);
		cd += 46 + nlen + xlen + clen;
		const start = lho + 30 + buf.readUInt16LE(lho + 26) + buf.readUInt16LE(lho + 28);
		const raw = buf.subarray(start, start + csize);
		const data = method === 0 ? raw : method === 8 ? zlib.inflateRawSync(raw) : null;
		if (!data) throw new Error(`'${file}': entry '${name}' uses compression ${method}`);
		out[name.replace(/\.npy$/, '')] = data;
	}
	return out;
}

// {name: ort.Tensor} for every array of the file
function readNpz(file) {
	const raw = readNpzRaw(file), out = {};
	for (const [name, buf] of Object.entries(raw)) out[name] = parseNpy(buf, name);
	return out;
}

const CRC_TABLE = (() => {
	const t = new Uint32Array(256);
	for (let n = 0; n < 256; n++) {
		let c = n;
		for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
		t[n] = c >>> 0;
	}
	return t;
})();

function crc32(b) {
	let c = 0xffffffff;
	for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
	return (c ^ 0xffffffff) >>> 0;
}

function npyBytes(tensor) {
	const descr = ORT_TO_DESCR[tensor.type];
	if (!descr) throw new Error(`output type '${tensor.type}' not supported`);
	const shape = tensor.dims.length === 1 ? `(${tensor.dims[0]},)` : `(${tensor.dims.join(', ')})`;
	let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
	const total = 10 + h.length + 1;
	h += ' '.repeat((64 - (total % 64)) % 64) + '\n';
	const head = Buffer.alloc(10);
	head.writeUInt32BE(0x934e554d, 0); head.write('PY', 4, 'latin1');
	head[6] = 1; head[7] = 0; head.writeUInt16LE(h.length, 8);
	let body;
	if (tensor.type === 'bool') body = Buffer.from(Array.from(tensor.data, v => (v ? 1 : 0)));
	else body = Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
	return Buffer.concat([head, Buffer.from(h, 'latin1'), body]);
}

// writes {name: ort.Tensor} as a stored .npz (one <name>.npy per tensor)
function writeNpz(file, tensors) {
	const locals = [], centrals = [];
	let off = 0;
	const entries = Object.entries(tensors);
	for (const [name, t] of entries) {
		const data = npyBytes(t);
		const nb = Buffer.from(name + '.npy', 'utf8'), crc = crc32(data);
		const lh = Buffer.alloc(30);
		lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt32LE(crc, 14);
		lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(data.length, 22); lh.writeUInt16LE(nb.length, 26);
		const ch = Buffer.alloc(46);
		ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6);
		ch.writeUInt32LE(crc, 16); ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(data.length, 24);
		ch.writeUInt16LE(nb.length, 28); ch.writeUInt32LE(off, 42);
		locals.push(lh, nb, data);
		centrals.push(ch, nb);
		off += 30 + nb.length + data.length;
	}
	const cdSize = centrals.reduce((a, b) => a + b.length, 0);
	const end = Buffer.alloc(22);
	end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
	end.writeUInt32LE(cdSize, 12); end.writeUInt32LE(off, 16);
	fs.writeFileSync(file, Buffer.concat([...locals, ...centrals, end]));
}

module.exports = { ort, SESSION, session, rng, randomTensor, makeFeeds, compare, cosine,
	parseNpy, readNpzRaw, readNpz, writeNpz };
