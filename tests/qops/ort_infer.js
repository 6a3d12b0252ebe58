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
const zlib = require('zlib');
const ort = require(path.join(__dirname, '..', 'ort', 'node_modules', 'onnxruntime-node'));

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
	if (buf.readUInt32BE(0) !== 0x934e554d || buf.toString('latin1', 1, 6) !== 'NUMPY')
		throw new Error(`'${name}' is not an .npy array`);
	const major = buf[6];
	const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
	const hoff = major === 1 ? 10 : 12;
	const header = buf.toString('latin1', hoff, hoff + hlen);
	const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
	if (/'fortran_order':\s*True/.test(header)) throw new Error(`'${name}': fortran order not supported`);
	const shapeStr = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
	const dims = shapeStr.split(',').map(s => s.trim()).filter(s => s.length).map(Number);
	const t = NPY_TYPES[descr];
	if (!t) throw new Error(`'${name}': dtype '${descr}' not supported`);
	const [type, Arr] = t;
	const n = dims.reduce((a, b) => a * b, 1);
	const off = hoff + hlen;
	const bytes = Buffer.from(buf.subarray(off, off + n * Arr.BYTES_PER_ELEMENT)); // aligned copy
	let data = new Arr(bytes.buffer, bytes.byteOffset, n);
	if (type === 'bool') data = Uint8Array.from(data, v => v ? 1 : 0);
	return new ort.Tensor(type, type === 'bool' ? Array.from(data, v => !!v) : data, dims);
}

function readZip(file) {
	const buf = fs.readFileSync(file);
	let eocd = -1;
	for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--)
		if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
	if (eocd < 0) throw new Error(`'${file}' is not a zip/npz file`);
	let count = buf.readUInt16LE(eocd + 10), cd = buf.readUInt32LE(eocd + 16);
	const out = {};
	for (let e = 0; e < count; e++) {
		if (buf.readUInt32LE(cd) !== 0x02014b50) throw new Error(`'${file}': bad central directory`);
		const method = buf.readUInt16LE(cd + 10), csize = buf.readUInt32LE(cd + 20);
		const nlen = buf.readUInt16LE(cd + 28), xlen = buf.readUInt16LE(cd + 30), clen = buf.readUInt16LE(cd + 32);
		const lho = buf.readUInt32LE(cd + 42);
		const name = buf.toString('utf8', cd + 46, cd + 46 + nlen);
		cd += 46 + nlen + xlen + clen;
		const lnlen = buf.readUInt16LE(lho + 26), lxlen = buf.readUInt16LE(lho + 28);
		const start = lho + 30 + lnlen + lxlen;
		const raw = buf.subarray(start, start + csize);
		const data = method === 0 ? raw : method === 8 ? zlib.inflateRawSync(raw) : null;
		if (!data) throw new Error(`'${file}': entry '${name}' uses compression ${method}`);
		out[name.replace(/\.npy$/, '')] = data;
	}
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
	if (tensor.type === 'bool') body = Buffer.from(Array.from(tensor.data, v => v ? 1 : 0));
	else body = Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
	return Buffer.concat([head, Buffer.from(h, 'latin1'), body]);
}

function writeZip(file, entries) {
	const locals = [], centrals = [];
	let off = 0;
	for (const [name, data] of entries) {
		const nb = Buffer.from(name, 'utf8'), crc = crc32(data);
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

async function runOne(model, inFile, outFile) {
	const sess = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all',
		logSeverityLevel: 3 });
	const arrays = readZip(inFile);
	const feeds = {};
	for (const name of sess.inputNames) {
		if (!(name in arrays)) throw new Error(`input '${name}' missing from '${inFile}'`);
		feeds[name] = parseNpy(arrays[name], name);
	}
	const res = await sess.run(feeds);
	writeZip(outFile, sess.outputNames.map(n => [n + '.npy', npyBytes(res[n])]));
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
