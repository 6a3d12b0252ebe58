/* engine/npz.c — numpy .npz archives (zip, stored or deflated via zlib, zip64 sizes) of
 * .npy arrays (format v1/v2/v3 headers, little-endian, C or Fortran order), read into
 * and written from struct qd_tensor. Writing uses stored entries and v1 headers (v2 when
 * the header does not fit). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "engine/engine_internal.h"
#include "engine/dataset.h"

#define NPY_MAX_HEADER (1 << 20)   /* numpy writes a few hundred bytes */

static const struct { const char *descr; int dtype; } npy_types[] = {
	{ "f4", QD_DT_FLOAT }, { "f8", QD_DT_DOUBLE }, { "f2", QD_DT_FLOAT16 },
	{ "i1", QD_DT_INT8 }, { "u1", QD_DT_UINT8 }, { "i2", QD_DT_INT16 }, { "u2", QD_DT_UINT16 },
	{ "i4", QD_DT_INT32 }, { "u4", QD_DT_UINT32 }, { "i8", QD_DT_INT64 }, { "u8", QD_DT_UINT64 },
	{ "b1", QD_DT_BOOL },
};

static uint32_t rd16(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Parsed .npy header: dtype, shape, order and where the data starts. */
struct npy_hdr {
	int dtype;
	bool fortran;
	int nd;
	int64_t dims[QD_MAX_DIMS];
	size_t data_off;            /* bytes before the data */
	uint64_t nbytes;            /* product of dims x element size (overflow-checked) */
};

/* Header of a .npy buffer b (n bytes available). Returns 0, 1 when more bytes are needed
 * (*need says how many in total), or a negative error naming the array. */
static int npy_header(const uint8_t *b, size_t n, const char *name, struct npy_hdr *o, size_t *need,
		      struct qd_err *err)
{
	memset(o, 0, sizeof(*o));
	if (n < 10) { *need = 12; return 1; }
	if (memcmp(b, "\x93NUMPY", 6))
		return qd_err_set(err, QD_EPARSE, name, "array '%s' is not a .npy file", name);
	int major = b[6];
	size_t hl, ho;
	if (major == 1) { hl = rd16(b + 8); ho = 10; }
	else if (major == 2 || major == 3) {
		if (n < 12) { *need = 12; return 1; }
		hl = rd32(b + 8); ho = 12;
	} else return qd_err_set(err, QD_EPARSE, name, "array '%s' has unsupported .npy version %d", name, major);
	if (hl > NPY_MAX_HEADER)
		return qd_err_set(err, QD_EPARSE, name, "array '%s' has a %zu-byte .npy header (max %d)", name, hl, NPY_MAX_HEADER);
	if (hl > n - ho) { *need = ho + hl; return 1; }
	char *h = malloc(hl + 1);
	if (!h) return qd_err_set(err, QD_ENOMEM, name, "out of memory");
	memcpy(h, b + ho, hl);
	h[hl] = 0;
	int rc = 0;
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
			if (!strcmp(d + 1, npy_types[i].descr)) o->dtype = npy_types[i].dtype;
		if (!o->dtype) { rc = qd_err_set(err, QD_EUNSUPPORTED, name, "array '%s' has unsupported dtype '%s'", name, d); goto out; }
		*e = '\'';
	}
	f = strchr(f + 15, ':');
	if (!f) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid fortran_order", name); goto out; }
	while (*++f == ' ') {}
	o->fortran = !strncmp(f, "True", 4);
	s = strchr(s + 7, '(');
	if (!s) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid shape", name); goto out; }
	s++;
	uint64_t cnt = 1;
	bool overflow = false;
	for (;;) {
		while (*s == ' ' || *s == ',') s++;
		if (*s == ')') break;
		char *e;
		long long v = strtoll(s, &e, 10);
		if (e == s || v < 0) { rc = qd_err_set(err, QD_EPARSE, name, "array '%s' has an invalid shape", name); goto out; }
		if (o->nd >= QD_MAX_DIMS) { rc = qd_err_set(err, QD_EUNSUPPORTED, name, "array '%s' has rank > %d", name, QD_MAX_DIMS); goto out; }
		o->dims[o->nd++] = v;
		if (__builtin_mul_overflow(cnt, (uint64_t)v, &cnt)) overflow = true;
		s = e;
		while (*s == 'L') s++;
	}
	if (overflow || __builtin_mul_overflow(cnt, (uint64_t)qd_dtype_size(o->dtype), &o->nbytes))
		o->nbytes = UINT64_MAX;
	o->data_off = ho + hl;
out:
	free(h);
	return rc;
}

/* "(2, 3)" for messages. */
static void shape_str(const struct npy_hdr *h, char *out, size_t sz)
{
	size_t k = (size_t)snprintf(out, sz, "(");
	for (int i = 0; i < h->nd && k < sz; i++)
		k += (size_t)snprintf(out + k, sz - k, "%s%lld", i ? ", " : "", (long long)h->dims[i]);
	if (k < sz) snprintf(out + k, sz - k, ")");
}

/* The header's byte count against the entry's size and the limits: an absurd shape fails
 * here, before anything is allocated. */
static int npy_check(const struct npy_hdr *h, uint64_t entry_bytes, const char *name,
		     const struct qd_dataset_limits *lim, uint64_t total, struct qd_err *err)
{
	char sh[160];
	shape_str(h, sh, sizeof(sh));
	if (h->nbytes == UINT64_MAX || h->nbytes > lim->max_array_bytes)
		return qd_err_set(err, QD_ETOO_LARGE, name, "array '%s' has an absurd shape %s of %s: "
				  "more than the %llu-byte limit per array", name, sh, qd_dtype_name(h->dtype),
				  (unsigned long long)lim->max_array_bytes);
	if (entry_bytes - h->data_off < h->nbytes)
		return qd_err_set(err, QD_EPARSE, name, "array '%s' has %llu data bytes, its shape %s of %s needs %llu",
				  name, (unsigned long long)(entry_bytes - h->data_off), sh,
				  qd_dtype_name(h->dtype), (unsigned long long)h->nbytes);
	if (total + h->nbytes > lim->max_total_bytes)
		return qd_err_set(err, QD_ETOO_LARGE, name, "array '%s' takes the dataset past the %llu-byte limit",
				  name, (unsigned long long)lim->max_total_bytes);
	return 0;
}

/* Copy C- or Fortran-order data src into t. */
static void npy_store(const struct npy_hdr *h, const uint8_t *src, struct qd_tensor *t)
{
	if (!h->fortran || h->nd < 2) {
		if (t->nbytes) memcpy(t->data, src, t->nbytes);
		return;
	}
	/* Fortran order: element (i0..ik) at sum(i_j * prod(dims[:j])) */
	size_t es = qd_dtype_size(h->dtype);
	int64_t cnt = qd_tensor_count(t), idx[QD_MAX_DIMS] = {0};
	for (int64_t k = 0; k < cnt; k++) {
		int64_t off = 0, m = 1;
		for (int j = 0; j < h->nd; j++) { off += idx[j] * m; m *= h->dims[j]; }
		memcpy((char *)t->data + k * es, src + off * es, es);
		for (int j = h->nd - 1; j >= 0; j--) { if (++idx[j] < h->dims[j]) break; idx[j] = 0; }
	}
}

/* A stored entry: parse in place. */
static int npy_from_stored(const uint8_t *b, uint64_t n, const char *name, const struct qd_dataset_limits *lim,
			   uint64_t total, struct qd_tensor *t, struct qd_err *err)
{
	struct npy_hdr h;
	size_t need = 0;
	int rc = npy_header(b, n, name, &h, &need, err);
	if (rc == 1) return qd_err_set(err, QD_EPARSE, name, "array '%s' is truncated (.npy header)", name);
	if (rc) return rc;
	if ((rc = npy_check(&h, n, name, lim, total, err))) return rc;
	if ((rc = qd_tensor_alloc_raw(t, name, h.dtype, h.nd, h.dims)))
		return qd_err_set(err, -rc, name, "cannot allocate array '%s'", name);
	npy_store(&h, b + h.data_off, t);
	return 0;
}

/* Inflate up to want bytes more into out (*done bytes there already). Returns the zlib
 * status. */
static int inflate_some(z_stream *zs, uint64_t *in_left, uint8_t *out, uint64_t *done, uint64_t want)
{
	int zr = Z_OK;
	uint64_t target = *done + want;
	while (*done < target && zr == Z_OK) {
		uInt ci = *in_left > (1u << 30) ? (1u << 30) : (uInt)*in_left;
		uInt co = target - *done > (1u << 30) ? (1u << 30) : (uInt)(target - *done);
		zs->avail_in = ci;
		zs->next_out = out + *done;
		zs->avail_out = co;
		zr = inflate(zs, Z_NO_FLUSH);
		*in_left -= ci - zs->avail_in;
		*done += co - zs->avail_out;
		if (zr == Z_OK && ci == zs->avail_in && co == zs->avail_out) break;  /* no progress */
	}
	return zr;
}

/* A deflated entry (usz bytes declared): inflate the .npy header first, check its shape
 * against usz and the limits, then inflate the data straight into the tensor. The output
 * never exceeds usz, so a lying size cannot make it write more. *crc gets the CRC-32 of
 * the inflated bytes. */
static int npy_from_deflated(const uint8_t *src, uint64_t csz, uint64_t usz, const char *name,
			     const struct qd_dataset_limits *lim, uint64_t total, struct qd_tensor *t,
			     uint32_t *crc, struct qd_err *err)
{
	if (usz < 12) return qd_err_set(err, QD_EPARSE, name, "array '%s' is truncated (.npy header)", name);
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return qd_err_set(err, QD_EINTERNAL, name, "zlib init failed");
	zs.next_in = (Bytef *)src;
	uint64_t in_left = csz, done = 0;
	uint8_t *hb = NULL, *tmp = NULL;
	int rc = 0, zr = Z_OK;
	struct npy_hdr h;
	size_t need = usz < 4096 ? (size_t)usz : 4096;
	for (;;) {
		uint8_t *nb = realloc(hb, need);
		if (!nb) { rc = qd_err_set(err, QD_ENOMEM, name, "out of memory"); goto out; }
		hb = nb;
		zr = inflate_some(&zs, &in_left, hb, &done, need - done);
		if (zr != Z_OK && zr != Z_STREAM_END) {
			rc = qd_err_set(err, QD_EPARSE, name, "array '%s' does not inflate (corrupt deflate data)", name);
			goto out;
		}
		size_t want = 0;
		rc = npy_header(hb, done, name, &h, &want, err);
		if (rc <= 0) break;
		if (want > usz || zr == Z_STREAM_END || want <= done) {
			rc = qd_err_set(err, QD_EPARSE, name, "array '%s' is truncated (.npy header)", name);
			goto out;
		}
		need = want;
	}
	if (rc < 0) goto out;
	if ((rc = npy_check(&h, usz, name, lim, total, err))) goto out;
	if (usz != h.data_off + h.nbytes) {
		rc = qd_err_set(err, QD_EPARSE, name, "array '%s' declares %llu bytes, its header and shape make %llu",
				name, (unsigned long long)usz, (unsigned long long)(h.data_off + h.nbytes));
		goto out;
	}
	if ((rc = qd_tensor_alloc_raw(t, name, h.dtype, h.nd, h.dims))) {
		rc = qd_err_set(err, -rc, name, "cannot allocate array '%s'", name);
		goto out;
	}
	bool direct = !h.fortran || h.nd < 2;
	uint8_t *dst = (uint8_t *)t->data;
	if (!direct) {
		if (!(tmp = malloc(h.nbytes ? h.nbytes : 1))) { rc = qd_err_set(err, QD_ENOMEM, name, "out of memory"); goto out; }
		dst = tmp;
	}
	/* bytes inflated past the header so far go first (done <= usz) */
	uint64_t have = done - h.data_off;
	memcpy(dst, hb + h.data_off, have);
	*crc = (uint32_t)crc32(0L, Z_NULL, 0);
	*crc = (uint32_t)crc32(*crc, hb, (uInt)done);
	if (have < h.nbytes && zr == Z_OK)
		zr = inflate_some(&zs, &in_left, dst, &have, h.nbytes - have);
	for (uint64_t off = done - h.data_off; off < have; off += 1u << 30) {
		uint64_t chunk = have - off > (1u << 30) ? (1u << 30) : have - off;
		*crc = (uint32_t)crc32(*crc, dst + off, (uInt)chunk);
	}
	if (zr == Z_OK && have == h.nbytes) {
		/* the stream must end here: more output means the declared size lies */
		uint8_t extra[64];
		uint64_t e = 0;
		zr = inflate_some(&zs, &in_left, extra, &e, sizeof(extra));
		if (e) zr = Z_DATA_ERROR;
	}
	if (zr != Z_STREAM_END || have != h.nbytes) {
		qd_tensor_release(t);
		rc = qd_err_set(err, QD_EPARSE, name, "array '%s' does not inflate to its declared %llu bytes (corrupt or lying zip entry)",
				name, (unsigned long long)usz);
		goto out;
	}
	if (!direct) npy_store(&h, tmp, t);
out:
	inflateEnd(&zs);
	free(hb);
	free(tmp);
	return rc;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Array names are unique (sorted copy of the names: no quadratic scan for 10^5 arrays). */
static int check_unique(const struct qd_tensor *arr, size_t na, const char *path, struct qd_err *err)
{
	if (na < 2) return 0;
	const char **v = malloc(na * sizeof(*v));
	if (!v) return qd_err_set(err, QD_ENOMEM, path, "out of memory");
	for (size_t k = 0; k < na; k++) v[k] = arr[k].name ? arr[k].name : "";
	qsort(v, na, sizeof(*v), cmp_str_ptr);
	int rc = 0;
	for (size_t k = 1; k < na && !rc; k++)
		if (!strcmp(v[k - 1], v[k]))
			rc = qd_err_set(err, QD_EPARSE, v[k], "'%s': array '%s' appears twice", path, v[k]);
	free(v);
	return rc;
}

int qd_npz_read_lim(const char *path, const struct qd_dataset_limits *limits, struct qd_tensor **out,
		    size_t *n, struct qd_err *err)
{
	struct qd_dataset_limits lim = limits ? *limits : (struct qd_dataset_limits){0};
	if (!lim.max_total_bytes) lim.max_total_bytes = QD_DATASET_MAX_TOTAL;
	if (!lim.max_array_bytes) lim.max_array_bytes = QD_DATASET_MAX_ARRAY;
	if (!lim.max_arrays) lim.max_arrays = QD_DATASET_MAX_ARRAYS;
	*out = NULL;
	*n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0) close(fd);
		return qd_err_set(err, QD_EIO, path, "cannot open '%s': %s", path, strerror(e));
	}
	size_t len = (size_t)st.st_size;
	const uint8_t *b = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (b == MAP_FAILED)
		return qd_err_set(err, QD_EIO, path, "cannot map '%s': %s", path, strerror(errno));
	struct qd_tensor *arr = NULL;
	size_t na = 0;
	uint64_t total = 0;
	int rc = 0;
	/* end of central directory: last 22..65557 bytes */
	ssize_t eocd = -1;
	for (ssize_t i = (ssize_t)len - 22; i >= 0 && i >= (ssize_t)len - 65557; i--)
		if (rd32(b + i) == 0x06054b50) { eocd = i; break; }
	if (eocd < 0) { rc = qd_err_set(err, QD_EPARSE, path, "'%s' is not a zip (.npz) file (no end of central directory)", path); goto out; }
	uint64_t cnt = rd16(b + eocd + 10), cdo = rd32(b + eocd + 16);
	if (cdo == 0xffffffffu || cnt == 0xffff) {
		/* zip64 end of central directory locator just before */
		if (eocd < 20 || rd32(b + eocd - 20) != 0x07064b50) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad zip64 record", path); goto out; }
		uint64_t z = rd64(b + eocd - 12);
		if (z > len || len - z < 56 || rd32(b + z) != 0x06064b50) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad zip64 record", path); goto out; }
		cnt = rd64(b + z + 32);
		cdo = rd64(b + z + 48);
	}
	if (cnt > lim.max_arrays) {
		rc = qd_err_set(err, QD_ETOO_LARGE, path, "'%s' has %llu entries (max %zu arrays)", path,
				(unsigned long long)cnt, lim.max_arrays);
		goto out;
	}
	arr = calloc(cnt ? cnt : 1, sizeof(*arr));
	if (!arr) { rc = qd_err_set(err, QD_ENOMEM, path, "out of memory"); goto out; }
	uint64_t p = cdo;
	for (uint64_t e = 0; e < cnt; e++) {
		if (p > len || len - p < 46 || rd32(b + p) != 0x02014b50) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad zip central directory", path); goto out; }
		uint32_t method = rd16(b + p + 10), nl = rd16(b + p + 28), xl = rd16(b + p + 30), cl = rd16(b + p + 32);
		uint32_t crc_want = rd32(b + p + 16), flags = rd16(b + p + 8);
		uint64_t csz = rd32(b + p + 20), usz = rd32(b + p + 24), lho = rd32(b + p + 42);
		if (len - p - 46 < (uint64_t)nl + xl + cl) { rc = qd_err_set(err, QD_EPARSE, path, "'%s': bad zip central directory", path); goto out; }
		const uint8_t *x = b + p + 46 + nl, *xe = x + xl;
		while (x + 4 <= xe) {
			uint32_t id = rd16(x), sz = rd16(x + 2);
			const uint8_t *q = x + 4, *qe = x + 4 + sz > xe ? xe : x + 4 + sz;
			if (id == 1) {
				if (usz == 0xffffffffu && q + 8 <= qe) { usz = rd64(q); q += 8; }
				if (csz == 0xffffffffu && q + 8 <= qe) { csz = rd64(q); q += 8; }
				if (lho == 0xffffffffu && q + 8 <= qe) { lho = rd64(q); q += 8; }
			}
			x += 4 + sz;
		}
		char name[512];
		size_t cn = nl < sizeof(name) - 1 ? nl : sizeof(name) - 1;
		memcpy(name, b + p + 46, cn);
		name[cn] = 0;
		if (cn > 4 && !strcmp(name + cn - 4, ".npy")) name[cn - 4] = 0;
		p += 46 + nl + xl + cl;
		if (flags & 1) { rc = qd_err_set(err, QD_EUNSUPPORTED, name, "'%s': entry '%s' is encrypted", path, name); goto out; }
		if (lho > len || len - lho < 30 || rd32(b + lho) != 0x04034b50) { rc = qd_err_set(err, QD_EPARSE, name, "'%s': bad local header for '%s'", path, name); goto out; }
		uint64_t data = lho + 30 + rd16(b + lho + 26) + rd16(b + lho + 28);
		if (data > len || len - data < csz) { rc = qd_err_set(err, QD_EPARSE, name, "'%s': entry '%s' is truncated", path, name); goto out; }
		/* the declared size is checked before anything is inflated or allocated */
		if (usz > lim.max_array_bytes + NPY_MAX_HEADER + 16) {
			rc = qd_err_set(err, QD_ETOO_LARGE, name, "'%s': entry '%s' declares %llu bytes, more than the %llu-byte limit per array",
					path, name, (unsigned long long)usz, (unsigned long long)lim.max_array_bytes);
			goto out;
		}
		uint32_t crc = 0;
		if (method == 0) {
			if (csz != usz) { rc = qd_err_set(err, QD_EPARSE, name, "'%s': entry '%s' sizes differ", path, name); goto out; }
			if ((rc = npy_from_stored(b + data, usz, name, &lim, total, &arr[na], err))) goto out;
			crc = (uint32_t)crc32(0L, Z_NULL, 0);
			for (uint64_t off = 0; off < usz; off += 1u << 30) {
				uint64_t chunk = usz - off > (1u << 30) ? (1u << 30) : usz - off;
				crc = (uint32_t)crc32(crc, b + data + off, (uInt)chunk);
			}
		} else if (method == 8) {
			if ((rc = npy_from_deflated(b + data, csz, usz, name, &lim, total, &arr[na], &crc, err))) goto out;
		} else {
			rc = qd_err_set(err, QD_EUNSUPPORTED, name, "'%s': entry '%s' uses zip method %u (want stored or deflated)", path, name, method);
			goto out;
		}
		total += arr[na].nbytes;
		na++;
		if (crc != crc_want) {
			rc = qd_err_set(err, QD_EPARSE, name, "'%s': entry '%s' fails its CRC-32 check (corrupt zip)", path, name);
			goto out;
		}
	}
	if ((rc = check_unique(arr, na, path, err))) goto out;
	*out = arr;
	*n = na;
	arr = NULL;
out:
	if (arr) qd_tensors_release(arr, na);
	if (b) munmap((void *)b, len);
	return rc;
}

int qd_npz_read(const char *path, struct qd_tensor **out, size_t *n, struct qd_err *err)
{
	return qd_npz_read_lim(path, NULL, out, n, err);
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
