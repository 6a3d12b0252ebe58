// Runs a model in ONNX Runtime (onnxruntime-node, CPU, 1 intra-op thread) on inputs from
// an .npz file and writes the outputs as .npz — the reference side of the parity tests.
// usage: node ort_infer.js model.onnx in.npz out.npz [--time N]   (--time: N timed runs,
// prints "ort_ms <median>")
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const ort = require(path.join(__dirname, '..', 'ort', 'node_modules', 'onnxruntime-node'));

const DT = {
  '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
  '|i1': ['int8', Int8Array], '|u1': ['uint8', Uint8Array], '<i2': ['int16', Int16Array],
  '<u2': ['uint16', Uint16Array], '<i4': ['int32', Int32Array], '<u4': ['uint32', Uint32Array],
  '<i8': ['int64', BigInt64Array], '<u8': ['uint64', BigUint64Array], '|b1': ['bool', Uint8Array],
};

function readNpy(buf, name) {
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${name}: not .npy`);
  const major = buf[6];
  const hl = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const ho = major === 1 ? 10 : 12;
  const h = buf.toString('latin1', ho, ho + hl);
  const descr = /'descr':\s*'([^']+)'/.exec(h)[1];
  if (/'fortran_order':\s*True/.test(h)) throw new Error(`${name}: fortran order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(h)[1].split(',').map(s => s.trim()).filter(s => s).map(Number);
  const t = DT[descr];
  if (!t) throw new Error(`${name}: dtype ${descr}`);
  const n = shape.reduce((a, b) => a * b, 1);
  const raw = buf.subarray(ho + hl);
  const ab = new ArrayBuffer(n * t[1].BYTES_PER_ELEMENT);
  Buffer.from(ab).set(raw.subarray(0, ab.byteLength));
  let data = new t[1](ab);
  if (t[0] === 'bool') data = Uint8Array.from(data);
  return new ort.Tensor(t[0], data, shape);
}

function readNpz(file) {
  const b = fs.readFileSync(file);
  let e = b.length - 22;
  while (e >= 0 && b.readUInt32LE(e) !== 0x06054b50) e--;
  if (e < 0) throw new Error('not a zip');
  const cnt = b.readUInt16LE(e + 10);
  let p = b.readUInt32LE(e + 16);
  const out = {};
  for (let i = 0; i < cnt; i++) {
    const method = b.readUInt16LE(p + 10), csz = b.readUInt32LE(p + 20);
    const nl = b.readUInt16LE(p + 28), xl = b.readUInt16LE(p + 30), cl = b.readUInt16LE(p + 32);
    const lho = b.readUInt32LE(p + 42);
    let name = b.toString('utf8', p + 46, p + 46 + nl);
    p += 46 + nl + xl + cl;
    const d = lho + 30 + b.readUInt16LE(lho + 26) + b.readUInt16LE(lho + 28);
    let data = b.subarray(d, d + csz);
    if (method === 8) data = zlib.inflateRawSync(data);
    else if (method !== 0) throw new Error(`zip method ${method}`);
    if (name.endsWith('.npy')) name = name.slice(0, -4);
    out[name] = readNpy(data, name);
  }
  return out;
}

const RDT = { float32: '<f4', float64: '<f8', int8: '|i1', uint8: '|u1', int16: '<i2', uint16: '<u2',
  int32: '<i4', uint32: '<u4', int64: '<i8', uint64: '<u8', bool: '|b1' };

function crc32(buf) {
  let c, crc = 0xffffffff;
  for (let n = 0; n < buf.length; n++) {
    c = (crc ^ buf[n]) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function writeNpz(file, tensors) {
  const parts = [], cd = [];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`;
    let h = `{'descr': '${RDT[t.type]}', 'fortran_order': False, 'shape': ${shape}, }`;
    while ((10 + h.length + 1) % 64) h += ' ';
    h += '\n';
    const hdr = Buffer.alloc(10);
    hdr.write('\x93NUMPY', 0, 'latin1'); hdr[6] = 1; hdr[7] = 0; hdr.writeUInt16LE(h.length, 8);
    const data = t.type === 'bool' ? Buffer.from(Uint8Array.from(t.data, v => (v ? 1 : 0)))
      : Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const npy = Buffer.concat([hdr, Buffer.from(h, 'latin1'), data]);
    const crc = crc32(npy), fn = Buffer.from(name + '.npy');
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(npy.length, 18); lh.writeUInt32LE(npy.length, 22); lh.writeUInt16LE(fn.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(npy.length, 20); ch.writeUInt32LE(npy.length, 24); ch.writeUInt16LE(fn.length, 28);
    ch.writeUInt32LE(off, 42);
    parts.push(lh, fn, npy);
    cd.push(ch, fn);
    off += 30 + fn.length + npy.length;
  }
  const cdb = Buffer.concat(cd);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(Object.keys(tensors).length, 8);
  end.writeUInt16LE(Object.keys(tensors).length, 10); end.writeUInt32LE(cdb.length, 12); end.writeUInt32LE(off, 16);
  fs.writeFileSync(file, Buffer.concat([...parts, cdb, end]));
}

async function main() {
  const [model, inp, outp, ...rest] = process.argv.slice(2);
  if (!model || !inp || !outp) { console.error('usage: node ort_infer.js model.onnx in.npz out.npz [--time N]'); process.exit(2); }
  const timeN = rest[0] === '--time' ? Number(rest[1]) : 0;
  const sess = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all' });
  const feeds = readNpz(inp);
  let res = await sess.run(feeds);
  if (timeN > 0) {
    const ts = [];
    for (let i = 0; i < timeN; i++) {
      const t0 = process.hrtime.bigint();
      res = await sess.run(feeds);
      ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    ts.sort((a, b) => a - b);
    console.log(`ort_ms ${ts[Math.floor(ts.length / 2)].toFixed(3)} rss_mb ${(process.memoryUsage().rss / 1048576).toFixed(1)}`);
  }
  const out = {};
  for (const n of sess.outputNames) out[n] = res[n];
  writeNpz(outp, out);
}
main().catch(e => { console.error('ort_infer:', e.message); process.exit(1); });
