/* engine/npz.c — numpy .npz archives (zip, stored or deflated via zlib, zip64 sizes) of
 * .npy arrays (format v1/v2/v3 headers, little-endian, C or Fortran order), read into
 * and written from struct qd_tensor. Writing uses stored entries and v1 headers (v2 when
 * the header does not fit). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <zlib.h>
#include "engine/engine_internal.h"

static const struct { const char *descr; int dtype; } npy_types[] = {
	{ "f4", QD_DT_FLOAT }, { "f8", QD_DT_DOUBLE }, { "f2", QD_DT_FLOAT16 },
	{ "i1", QD_DT_INT8 }, { "u1", QD_DT_UINT8 }, { "i2", QD_DT_INT16 }, { "u2", QD_DT_UINT16 },
	{ "i4", QD_DT_INT32 }, { "u4", QD_DT_UINT32 }, { "i8", QD_DT_INT64 }, { "u8", QD_DT_UINT64 },
	{ "b1", QD_DT_BOOL },
};

static uint32_t rd16(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Parses one .npy buffer into t (name set by the caller). */
static int npy_parse(const uint8_t *b, size_t n, const char *name, struct qd_tensor *t, struct qd_err *err)
{
	if (n < 10 || memcmp(b, "\x93NUMPY", 6))
		return qd_err_set(err, QD_EPARSE, name, "array '%s' is not a .npy file", name);
	int major = b[6];
	size_t hl, ho;
	if (major == 1) { hl = rd16(b + 8); ho = 10; }
	else if (major == 2 || major == 3) {
		if (n < 12) return qd_err_set(err, QD_EPARSE, name, "array '%s' is truncated", name);
		hl = rd32(b + 8); ho = 12;
	} else return qd_err_set(err, QD_EPARSE, name, "array '%s' has unsupported .npy version %d", name, major);
	if (hl > n - ho) return qd_err_set(err, QD_EPARSE, name, "array '%s' header is truncated", name);
	char *h = malloc(hl + 1);
	if (!h) return qd_err_set(err, QD_ENOMEM, name, "out of memory");
	memcpy(h, b + ho, hl);
	h[hl] = 0;
	int rc = 0;
	int dtype = 0;
	bool fortran = false;
	int64_t dims[QD_MAX_DIMS];
	int nd = 0;
	char *d = strstr(h, "'descr'");
	char *f = strstr(h, "'fortran_order'");
	char *s = strstr(h, "'shape'");
	if (!d || !f || !s) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid .npy header", name); goto out; }
	d = strchr(d + 7, '\'');
	if (!d) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid descr", name); goto out; }
	d++;
	{
		char *e = strchr(d, '\'');
		if (!e || e - d < 3) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid descr", name); goto out; }
		*e = 0;
		if (d[0] == '>' && strcmp(d + 1, "i1") && strcmp(d + 1, "u1") && strcmp(d + 1, "b1")) {
			rc = qd_err_set(err, QD_EUNSUPPORTED, name, "array '%s' is big-endian ('%s')", name, d);
			goto out;
		}
		if (d[0] != '<' && d[0] != '|' && d[0] != '=' && d[0] != '>') {
			rc = qd_err_set(err, QD_EUNSUPPORTED, name, "array '%s' has unsupported descr '%s'", name, d);
			goto out;
		}
		for (size_t i = 0; i < QD_ARRAY_LEN(npy_types); i++)
			if (!strcmp(d + 1, npy_types[i].descr)) dtype = npy_types[i].dtype;
		if (!dtype) { rc = qd_err_set(err, QD_EUNSUPPORTED, name, "array '%s' has unsupported dtype '%s'", name, d); goto out; }
		*e = '\'';
	}
	f = strchr(f + 15, ':');
	if (!f) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid fortran_order", name); goto out; }
	while (*++f == ' ') {}
	fortran = !strncmp(f, "True", 4);
	s = strchr(s + 7, '(');
	if (!s) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid shape", name); goto out; }
	s++;
	for (;;) {
		while (*s == ' ' || *s == ',') s++;
		if (*s == ')') break;
		char *e;
		long long v = strtoll(s, &e, 10);
		if (e == s || v < 0) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid shape", name); goto out; }
		if (nd >= QD_MAX_DIMS) { rc = qd_err_set(err, QD_EUNSUPPORTED, name, "array '%s' has rank > %d", name, QD_MAX_DIMS); goto out; }
		dims[nd++] = v;
		s = e;
		while (*s == 'L') s++;
	}
	if ((rc = qd_tensor_alloc_raw(t, name, dtype, nd, dims))) {
		rc = qd_err_set(err, -rc, name, "array '%s' is too large", name);
		goto out;
	}
	if (n - ho - hl < t->nbytes) {
		qd_tensor_release(t);
		rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has %zu data bytes, its shape needs %zu", name,
				n - ho - hl, t->nbytes);
		goto out;
	}
	const uint8_t *src = b + ho + hl;
	if (!fortran || nd < 2) {
		if (t->nbytes) memcpy(t->data, src, t->nbytes);
	} else {
		/* Fortran order: element (i0..ik) at sum(i_j * prod(dims[:j])) */
		size_t es = qd_dtype_size(dtype);
		int64_t cnt = qd_tensor_count(t), idx[QD_MAX_DIMS] = {0};
		for (int64_t k = 0; k < cnt; k++) {
			int64_t off = 0, m = 1;
			for (int j = 0; j < nd; j++) { off += idx[j] * m; m *= dims[j]; }
			memcpy((char *)t->data + k * es, src + off * es, es);
			for (int j = nd - 1; j >= 0; j--) { if (++idx[j] < dims[j]) break; idx[j] = 0; }
		}
	}
out:
	free(h);
	return rc;
}

int qd_npz_read(const char *path, struct qd_tensor **out, size_t *n, struct qd_err *err)
{
	struct qd_buf f = {0};
	*out = NULL;
	*n = 0;
	int rc = qd_file_read(path, &f, err);
	if (rc) return rc;
	const uint8_t *b = f.data;
	size_t len = f.len;
	struct qd_tensor *arr = NULL;
	size_t na = 0;
	/* end of central directory: last 22..65557 bytes */
	ssize_t eocd = -1;
	for (ssize_t i = (ssize_t)len - 22; i >= 0 && i >= (ssize_t)len - 65557; i--)
		if (rd32(b + i) == 0x06054b50) { eocd = i; break; }
	if (eocd < 0) { rc = qd_err_set(err, QD_EPARSE, path, "'%s' is not a zip (.npz) file", path); goto out; }
	uint64_t cnt = rd16(b + eocd + 10), cdo = rd32(b + eocd + 16);
	if (cdo == 0xffffffffu || cnt == 0xffff) {
		/* zip64 end of central directory locator just before */
		if (eocd < 20 || rd32(b + eocd - 20) != 0x07064b50) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad zip64 record", path); goto out; }
		uint64_t z = rd64(b + eocd - 12);
		if (z + 56 > len || rd32(b + z) != 0x06064b50) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad zip64 record", path); goto out; }
		cnt = rd64(b + z + 32);
		cdo = rd64(b + z + 48);
	}
	if (cnt > 100000) { rc = qd_err_set(err, QD_EPARSE, path, "'%s' has too many entries", path); goto out; }
	arr = calloc(cnt ? cnt : 1, sizeof(*arr));
	if (!arr) { rc = qd_err_set(err, QD_ENOMEM, path, "out of memory"); goto out; }
	uint64_t p = cdo;
	for (uint64_t e = 0; e < cnt; e++) {
		if (p + 46 > len || rd32(b + p) != 0x02014b50) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad central directory", path); goto out; }
		uint32_t method = rd16(b + p + 10), nl = rd16(b + p + 28), xl = rd16(b + p + 30), cl = rd16(b + p + 32);
		uint64_t csz = rd32(b + p + 20), usz = rd32(b + p + 24), lho = rd32(b + p + 42);
		if (p + 46 + nl + xl + cl > len) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad central directory", path); goto out; }
		const uint8_t *x = b + p + 46 + nl, *xe = x + xl;
		while (x + 4 <= xe) {
			uint32_t id = rd16(x), sz = rd16(x + 2);
			const uint8_t *q = x + 4;
			if (id == 1) {
				if (usz == 0xffffffffu && q + 8 <= x + 4 + sz) { usz = rd64(q); q += 8; }
				if (csz == 0xffffffffu && q + 8 <= x + 4 + sz) { csz = rd64(q); q += 8; }
				if (lho == 0xffffffffu && q + 8 <= x + 4 + sz) { lho = rd64(q); q += 8; }
			}
			x += 4 + sz;
		}
		char name[512];
		size_t cn = nl < sizeof(name) - 1 ? nl : sizeof(name) - 1;
		memcpy(name, b + p + 46, cn);
		name[cn] = 0;
		if (cn > 4 && !strcmp(name + cn - 4, ".npy")) name[cn - 4] = 0;
		p += 46 + nl + xl + cl;
		if (lho + 30 > len || rd32(b + lho) != 0x04034b50) { rc = qd_err_set(err, QD_EPARSE, name, "'%s': bad local header for '%s'", path, name); goto out; }
		uint64_t data = lho + 30 + rd16(b + lho + 26) + rd16(b + lho + 28);
		if (data + csz > len || data + csz < data) { rc = qd_err_set(err, QD_EPARSE, name, "'%s': entry '%s' is truncated", path, name); goto out; }
		if (usz > ((uint64_t)1 << 36)) { rc = qd_err_set(err, QD_ETOO_LARGE, name, "'%s': entry '%s' is too large", path, name); goto out; }
		uint8_t *ub = NULL;
		const uint8_t *src;
		if (method == 0) {
			if (csz != usz) { rc = qd_err_set(err, QD_EPARSE, name, "'%s': entry '%s' sizes differ", path, name); goto out; }
			src = b + data;
		} else if (method == 8) {
			ub = malloc(usz ? usz : 1);
			if (!ub) { rc = qd_err_set(err, QD_ENOMEM, name, "out of memory"); goto out; }
			z_stream zs;
			memset(&zs, 0, sizeof(zs));
			if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) { free(ub); rc = qd_err_set(err, QD_EINTERNAL, name, "zlib init failed"); goto out; }
			zs.next_in = (Bytef *)(b + data);
			uint64_t in_left = csz, out_done = 0;
			int zr = Z_OK;
			while (zr == Z_OK) {
				uInt ci = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
				uInt co = usz - out_done > (1u << 30) ? (1u << 30) : (uInt)(usz - out_done);
				zs.avail_in = ci;
				zs.next_out = ub + out_done;
				zs.avail_out = co;
				zr = inflate(&zs, Z_NO_FLUSH);
				in_left -= ci - zs.avail_in;
				out_done += co - zs.avail_out;
				if (zr == Z_OK && ci == zs.avail_in && co == zs.avail_out) break;
			}
			inflateEnd(&zs);
			if (zr != Z_STREAM_END || out_done != usz) {
				free(ub);
				rc = qd_err_set(err, QD_EPARSE, name, "'%s': entry '%s' does not inflate", path, name);
				goto out;
			}
			src = ub;
		} else {
			rc = qd_err_set(err, QD_EUNSUPPORTED, name, "'%s': entry '%s' uses zip method %u", path, name, method);
			goto out;
		}
		rc = npy_parse(src, usz, name, &arr[na], err);
		free(ub);
		if (rc) goto out;
		na++;
	}
	*out = arr;
	*n = na;
	arr = NULL;
out:
	if (arr) qd_tensors_release(arr, na);
	qd_buf_free(&f);
	return rc;
}

static void wr16(struct qd_buf *b, uint32_t v) { uint8_t x[2] = { v, v >> 8 }; qd_buf_append(b, x, 2); }
static void wr32(struct qd_buf *b, uint32_t v) { wr16(b, v & 0xffff); wr16(b, v >> 16); }

int qd_npz_write(const char *path, const struct qd_tensor *t, size_t n, struct qd_err *err)
{
	struct qd_buf z = {0}, cd = {0};
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		const char *descr = NULL;
		for (size_t k = 0; k < QD_ARRAY_LEN(npy_types); k++)
			if (npy_types[k].dtype == t[i].dtype) descr = npy_types[k].descr;
		const char *nm = t[i].name ? t[i].name : "";
		if (!descr) { rc = qd_err_set(err, QD_EUNSUPPORTED, nm, "cannot write array '%s' of dtype %s", nm, qd_dtype_name(t[i].dtype)); goto out; }
		struct qd_buf h = {0};
		qd_buf_printf(&h, "{'descr': '%c%s', 'fortran_order': False, 'shape': (",
			      (t[i].dtype == QD_DT_INT8 || t[i].dtype == QD_DT_UINT8 || t[i].dtype == QD_DT_BOOL) ? '|' : '<', descr);
		for (int d = 0; d < t[i].ndim; d++) qd_buf_printf(&h, "%lld,%s", (long long)t[i].dims[d], d + 1 < t[i].ndim ? " " : "");
		if (t[i].ndim > 1) h.len--; /* "(2, 3)" not "(2, 3,)" */
		qd_buf_printf(&h, "), }");
		size_t pre = 10, total = pre + h.len + 1;
		int ver = 1;
		if (total + 64 > 65535) { ver = 2; pre = 12; total = pre + h.len + 1; }
		size_t pad = (64 - total % 64) % 64;
		for (size_t k = 0; k < pad; k++) qd_buf_append(&h, " ", 1);
		qd_buf_append(&h, "\n", 1);
		if (!h.data) { rc = qd_err_set(err, QD_ENOMEM, nm, "out of memory"); goto out; }
		struct qd_buf npy = {0};
		qd_buf_append(&npy, "\x93NUMPY", 6);
		uint8_t v[2] = { (uint8_t)ver, 0 };
		qd_buf_append(&npy, v, 2);
		if (ver == 1) wr16(&npy, (uint32_t)h.len); else wr32(&npy, (uint32_t)h.len);
		qd_buf_append(&npy, h.data, h.len);
		qd_buf_free(&h);
		if (t[i].nbytes && qd_buf_append(&npy, t[i].data, t[i].nbytes)) { qd_buf_free(&npy); rc = qd_err_set(err, QD_ENOMEM, nm, "out of memory"); goto out; }
		if (npy.len >= 0xffffffffu) { qd_buf_free(&npy); rc = qd_err_set(err, QD_ETOO_LARGE, nm, "array '%s' is larger than 4 GiB", nm); goto out; }
		uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
		for (size_t off = 0; off < npy.len; off += 1u << 30) {
			size_t chunk = npy.len - off > (1u << 30) ? (1u << 30) : npy.len - off;
			crc = (uint32_t)crc32(crc, npy.data + off, (uInt)chunk);
		}
		char fname[600];
		snprintf(fname, sizeof(fname), "%s.npy", nm);
		uint32_t fl = (uint32_t)strlen(fname), lho = (uint32_t)z.len;
		wr32(&z, 0x04034b50); wr16(&z, 20); wr16(&z, 0); wr16(&z, 0); wr16(&z, 0); wr16(&z, 0x21);
		wr32(&z, crc); wr32(&z, (uint32_t)npy.len); wr32(&z, (uint32_t)npy.len); wr16(&z, fl); wr16(&z, 0);
		qd_buf_append(&z, fname, fl);
		qd_buf_append(&z, npy.data, npy.len);
		wr32(&cd, 0x02014b50); wr16(&cd, 20); wr16(&cd, 20); wr16(&cd, 0); wr16(&cd, 0); wr16(&cd, 0); wr16(&cd, 0x21);
		wr32(&cd, crc); wr32(&cd, (uint32_t)npy.len); wr32(&cd, (uint32_t)npy.len); wr16(&cd, fl); wr16(&cd, 0); wr16(&cd, 0);
		wr16(&cd, 0); wr16(&cd, 0); wr32(&cd, 0); wr32(&cd, lho);
		qd_buf_append(&cd, fname, fl);
		qd_buf_free(&npy);
		if (z.len >= 0xffffffffu) { rc = qd_err_set(err, QD_ETOO_LARGE, path, "'%s' would exceed 4 GiB", path); goto out; }
	}
	uint32_t cdo = (uint32_t)z.len;
	qd_buf_append(&z, cd.data, cd.len);
	wr32(&z, 0x06054b50); wr16(&z, 0); wr16(&z, 0); wr16(&z, (uint32_t)n); wr16(&z, (uint32_t)n);
	wr32(&z, (uint32_t)cd.len); wr32(&z, cdo); wr16(&z, 0);
	if (!z.data) { rc = qd_err_set(err, QD_ENOMEM, path, "out of memory"); goto out; }
	rc = qd_file_write_atomic(path, z.data, z.len, err);
out:
	qd_buf_free(&z);
	qd_buf_free(&cd);
	return rc;
}
