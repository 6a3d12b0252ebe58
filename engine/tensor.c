/* engine/tensor.c — struct qd_tensor helpers: allocation, element access by dtype,
 * conversion from ONNX TensorProto, shape arithmetic and the generic n-ary broadcast
 * iterator every elementwise kernel uses. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "engine/engine_internal.h"

int64_t qd_dims_count(int ndim, const int64_t *dims)
{
	int64_t n = 1;
	for (int i = 0; i < ndim; i++)
		if (__builtin_mul_overflow(n, dims[i], &n)) return INT64_MAX;
	return n;
}

int64_t qd_tensor_count(const struct qd_tensor *t)
{
	return qd_dims_count(t->ndim, t->dims);
}

void qd_dims_strides(int ndim, const int64_t *dims, int64_t *strides)
{
	int64_t s = 1;
	for (int i = ndim - 1; i >= 0; i--) { strides[i] = s; s *= dims[i]; }
}

static int tensor_alloc(struct qd_tensor *t, const char *name, int dtype, int ndim,
			const int64_t *dims, bool zero)
{
	memset(t, 0, sizeof(*t));
	if (ndim < 0 || ndim > QD_MAX_DIMS) return -QD_EINVAL;
	size_t es = qd_dtype_size(dtype);
	if (!es) return -QD_EUNSUPPORTED;
	int64_t n = 1;
	for (int i = 0; i < ndim; i++) {
		if (dims[i] < 0) return -QD_EINVAL;
		if (dims[i] && n > INT64_MAX / 16 / dims[i]) return -QD_ETOO_LARGE;
		n *= dims[i];
		t->dims[i] = dims[i];
	}
	if ((uint64_t)n > ((uint64_t)1 << 40) / es) return -QD_ETOO_LARGE;
	t->dtype = dtype;
	t->ndim = ndim;
	t->nbytes = (size_t)n * es;
	/* at least 1 byte so empty tensors still have a non-NULL pointer */
	t->data = zero ? calloc(1, t->nbytes ? t->nbytes : 1) : malloc(t->nbytes ? t->nbytes : 1);
	if (!t->data) return -QD_ENOMEM;
	if (name) {
		t->name = strdup(name);
		if (!t->name) { free(t->data); t->data = NULL; return -QD_ENOMEM; }
	}
	return 0;
}

int qd_tensor_alloc(struct qd_tensor *t, const char *name, int dtype, int ndim, const int64_t *dims)
{
	return tensor_alloc(t, name, dtype, ndim, dims, true);
}

int qd_tensor_alloc_raw(struct qd_tensor *t, const char *name, int dtype, int ndim, const int64_t *dims)
{
	return tensor_alloc(t, name, dtype, ndim, dims, false);
}

void qd_tensor_release(struct qd_tensor *t)
{
	if (!t) return;
	free(t->name);
	free(t->data);
	t->name = NULL;
	t->data = NULL;
	t->nbytes = 0;
}

void qd_tensors_release(struct qd_tensor *t, size_t n)
{
	if (!t) return;
	for (size_t i = 0; i < n; i++) qd_tensor_release(&t[i]);
	free(t);
}

bool qd_dtype_is_float(int dt)
{
	return dt == QD_DT_FLOAT || dt == QD_DT_DOUBLE || dt == QD_DT_FLOAT16 || dt == QD_DT_BFLOAT16;
}

bool qd_dtype_is_int(int dt)
{
	switch (dt) {
	case QD_DT_INT8: case QD_DT_UINT8: case QD_DT_INT16: case QD_DT_UINT16:
	case QD_DT_INT32: case QD_DT_UINT32: case QD_DT_INT64: case QD_DT_UINT64:
		return true;
	default:
		return false;
	}
}

static float half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0) {
		if (m == 0) u = s;
		else { /* subnormal */
			e = 127 - 15 + 1;
			while (!(m & 0x400)) { m <<= 1; e--; }
			m &= 0x3ff;
			u = s | (e << 23) | (m << 13);
		}
	} else if (e == 31) u = s | 0x7f800000u | (m << 13);
	else u = s | ((e + 127 - 15) << 23) | (m << 13);
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* float32 -> IEEE half, round to nearest even; overflow -> inf, NaN kept quiet. */
static uint16_t float_to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t s = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, m = u & 0x7fffff;
	if (e == 0xff) return (uint16_t)(s | 0x7c00 | (m ? 0x200 | (m >> 13) : 0));
	int32_t he = (int32_t)e - 127 + 15;
	if (he >= 31) return (uint16_t)(s | 0x7c00);
	if (he <= 0) { /* subnormal or zero */
		if (he < -10) return (uint16_t)s;
		m |= 0x800000;
		uint32_t shift = (uint32_t)(14 - he);
		uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (hm & 1))) hm++;
		return (uint16_t)(s | hm);
	}
	uint32_t hm = m >> 13, rem = m & 0x1fff;
	uint32_t r = s | ((uint32_t)he << 10) | hm;
	if (rem > 0x1000 || (rem == 0x1000 && (hm & 1))) r++;  /* may carry into the exponent: correct */
	return (uint16_t)r;
}

static uint16_t float_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

double qd_tensor_get_f64(const struct qd_tensor *t, int64_t k)
{
	const void *d = t->data;
	switch (t->dtype) {
	case QD_DT_FLOAT: return ((const float *)d)[k];
	case QD_DT_DOUBLE: return ((const double *)d)[k];
	case QD_DT_INT8: return ((const int8_t *)d)[k];
	case QD_DT_UINT8: return ((const uint8_t *)d)[k];
	case QD_DT_INT16: return ((const int16_t *)d)[k];
	case QD_DT_UINT16: return ((const uint16_t *)d)[k];
	case QD_DT_INT32: return ((const int32_t *)d)[k];
	case QD_DT_UINT32: return ((const uint32_t *)d)[k];
	case QD_DT_INT64: return (double)((const int64_t *)d)[k];
	case QD_DT_UINT64: return (double)((const uint64_t *)d)[k];
	case QD_DT_BOOL: return ((const uint8_t *)d)[k] ? 1 : 0;
	case QD_DT_FLOAT16: return half_to_float(((const uint16_t *)d)[k]);
	case QD_DT_BFLOAT16: {
		uint32_t u = (uint32_t)((const uint16_t *)d)[k] << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	default: return 0;
	}
}

int64_t qd_tensor_get_i64(const struct qd_tensor *t, int64_t k)
{
	const void *d = t->data;
	switch (t->dtype) {
	case QD_DT_INT64: return ((const int64_t *)d)[k];
	case QD_DT_INT32: return ((const int32_t *)d)[k];
	case QD_DT_UINT64: return (int64_t)((const uint64_t *)d)[k];
	case QD_DT_UINT32: return ((const uint32_t *)d)[k];
	case QD_DT_INT16: return ((const int16_t *)d)[k];
	case QD_DT_UINT16: return ((const uint16_t *)d)[k];
	case QD_DT_INT8: return ((const int8_t *)d)[k];
	case QD_DT_UINT8: return ((const uint8_t *)d)[k];
	case QD_DT_BOOL: return ((const uint8_t *)d)[k] ? 1 : 0;
	default: return qd_f2i(qd_tensor_get_f64(t, k));
	}
}

void qd_tensor_set_f64(struct qd_tensor *t, int64_t k, double v)
{
	void *d = t->data;
	switch (t->dtype) {
	case QD_DT_FLOAT: ((float *)d)[k] = (float)v; break;
	case QD_DT_DOUBLE: ((double *)d)[k] = v; break;
	case QD_DT_BOOL: ((uint8_t *)d)[k] = v != 0; break;
	case QD_DT_FLOAT16: ((uint16_t *)d)[k] = float_to_half((float)v); break;
	case QD_DT_BFLOAT16: ((uint16_t *)d)[k] = float_to_bf16((float)v); break;
	default: qd_tensor_set_i64(t, k, qd_f2i(v)); break;
	}
}

void qd_tensor_set_i64(struct qd_tensor *t, int64_t k, int64_t v)
{
	void *d = t->data;
	switch (t->dtype) {
	case QD_DT_INT64: ((int64_t *)d)[k] = v; break;
	case QD_DT_INT32: ((int32_t *)d)[k] = (int32_t)v; break;
	case QD_DT_UINT64: ((uint64_t *)d)[k] = (uint64_t)v; break;
	case QD_DT_UINT32: ((uint32_t *)d)[k] = (uint32_t)v; break;
	case QD_DT_INT16: ((int16_t *)d)[k] = (int16_t)v; break;
	case QD_DT_UINT16: ((uint16_t *)d)[k] = (uint16_t)v; break;
	case QD_DT_INT8: ((int8_t *)d)[k] = (int8_t)v; break;
	case QD_DT_UINT8: ((uint8_t *)d)[k] = (uint8_t)v; break;
	case QD_DT_BOOL: ((uint8_t *)d)[k] = v != 0; break;
	case QD_DT_FLOAT: ((float *)d)[k] = (float)v; break;
	case QD_DT_DOUBLE: ((double *)d)[k] = (double)v; break;
	default: break;
	}
}

/* TensorProto → qd_tensor. raw_data is copied as is (little-endian host); the typed
 * fields are converted per the proto's storage rules (int32_data holds int8..uint16,
 * bool and float16 bits; int64_data int64; uint64_data uint32/uint64). */
int qd_tensor_from_proto(const Onnx__TensorProto *p, struct qd_tensor *out, struct qd_err *err)
{
	const char *nm = p->name ? p->name : "";
	memset(out, 0, sizeof(*out));
	if (p->n_dims > QD_MAX_DIMS)
		return qd_err_set(err, QD_EUNSUPPORTED, nm, "tensor '%s' has rank %zu (max %d)", nm,
				  p->n_dims, QD_MAX_DIMS);
	if (p->has_data_location && p->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return qd_err_set(err, QD_EUNSUPPORTED, nm, "tensor '%s' has unresolved external data", nm);
	int dt = p->has_data_type ? p->data_type : 0;
	size_t es = qd_dtype_size(dt);
	if (!es)
		return qd_err_set(err, QD_EUNSUPPORTED, nm, "tensor '%s' has unsupported dtype %s (%d)",
				  nm, qd_dtype_name(dt), dt);
	for (size_t i = 0; i < p->n_dims; i++)
		if (p->dims[i] < 0)
			return qd_err_set(err, QD_EMODEL, nm, "tensor '%s' has negative dim %lld", nm,
					  (long long)p->dims[i]);
	int rc = qd_tensor_alloc_raw(out, p->name, dt, (int)p->n_dims, p->dims);
	if (rc) return qd_err_set(err, -rc, nm, "cannot allocate tensor '%s'", nm);
	int64_t n = qd_tensor_count(out);
	size_t have = 0;
	if (p->has_raw_data) {
		have = p->raw_data.len;
		if (have != out->nbytes) goto size_err;
		if (have) memcpy(out->data, p->raw_data.data, have);
		return 0;
	}
	switch (dt) {
	case QD_DT_FLOAT:
		have = p->n_float_data;
		if ((int64_t)have != n) goto size_err;
		if (n) memcpy(out->data, p->float_data, n * 4);
		break;
	case QD_DT_DOUBLE:
		have = p->n_double_data;
		if ((int64_t)have != n) goto size_err;
		if (n) memcpy(out->data, p->double_data, n * 8);
		break;
	case QD_DT_INT64:
		have = p->n_int64_data;
		if ((int64_t)have != n) goto size_err;
		if (n) memcpy(out->data, p->int64_data, n * 8);
		break;
	case QD_DT_UINT32: case QD_DT_UINT64:
		have = p->n_uint64_data;
		if ((int64_t)have != n) goto size_err;
		for (int64_t i = 0; i < n; i++) qd_tensor_set_i64(out, i, (int64_t)p->uint64_data[i]);
		break;
	case QD_DT_FLOAT16: case QD_DT_BFLOAT16:
		have = p->n_int32_data;
		if ((int64_t)have != n) goto size_err;
		for (int64_t i = 0; i < n; i++) ((uint16_t *)out->data)[i] = (uint16_t)p->int32_data[i];
		break;
	default: /* int32 and narrower, bool */
		have = p->n_int32_data;
		if ((int64_t)have != n) goto size_err;
		for (int64_t i = 0; i < n; i++) qd_tensor_set_i64(out, i, p->int32_data[i]);
		break;
	}
	return 0;
size_err:
	qd_tensor_release(out);
	return qd_err_set(err, QD_EMODEL, nm, "tensor '%s' holds %zu %s for %lld elements of %s", nm,
			  have, p->has_raw_data ? "bytes" : "values", (long long)n, qd_dtype_name(dt));
}

bool qd_tensor_view_proto(const Onnx__TensorProto *p, struct qd_tensor *out)
{
	memset(out, 0, sizeof(*out));
	int dt = p->has_data_type ? p->data_type : 0;
	size_t es = qd_dtype_size(dt);
	if (!es || p->n_dims > QD_MAX_DIMS) return false;
	if (p->has_data_location && p->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) return false;
	int64_t n = 1;
	for (size_t i = 0; i < p->n_dims; i++) {
		if (p->dims[i] < 0 || __builtin_mul_overflow(n, p->dims[i], &n)) return false;
		out->dims[i] = p->dims[i];
	}
	if ((uint64_t)n > ((uint64_t)1 << 40) / es || n == 0) return false;
	const void *src = NULL;
	if (p->has_raw_data) {
		if (p->raw_data.len != (size_t)n * es || ((uintptr_t)p->raw_data.data % es)) return false;
		src = p->raw_data.data;
	} else if (dt == QD_DT_FLOAT && (int64_t)p->n_float_data == n) src = p->float_data;
	else if (dt == QD_DT_DOUBLE && (int64_t)p->n_double_data == n) src = p->double_data;
	else if (dt == QD_DT_INT64 && (int64_t)p->n_int64_data == n) src = p->int64_data;
	if (!src) return false;
	out->dtype = dt;
	out->ndim = (int)p->n_dims;
	out->nbytes = (size_t)n * es;
	out->data = (void *)src;
	return true;
}

/* ---- shapes and broadcasting ---- */

int qd_axis(int64_t axis, int rank)
{
	if (axis < -rank || axis >= rank) return -1;
	return (int)(axis < 0 ? axis + rank : axis);
}

const char *qd_dims_str(int ndim, const int64_t *dims, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	o += snprintf(buf, len, "[");
	for (int i = 0; i < ndim && o < len; i++)
		o += snprintf(buf + o, len - o, i ? ",%lld" : "%lld", (long long)dims[i]);
	if (o < len) snprintf(buf + o, len - o, "]");
	return buf;
}

int qd_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out)
{
	int n = QD_MAX(na, nb);
	for (int i = 0; i < n; i++) {
		int64_t da = i < n - na ? 1 : a[i - (n - na)];
		int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
		if (da == db || db == 1) out[i] = da;
		else if (da == 1) out[i] = db;
		else return -QD_ESHAPE;
	}
	*nout = n;
	return 0;
}

void qd_broadcast_strides(int n, const int64_t *dims, int nout, const int64_t *out, int64_t *strides)
{
	int64_t s = 1;
	for (int i = nout - 1; i >= 0; i--) {
		int j = i - (nout - n);
		if (j < 0 || (dims[j] == 1 && out[i] != 1)) strides[i] = 0;
		else { strides[i] = dims[j] == 1 ? 0 : s; s *= dims[j]; }
	}
}

/* Collapses adjacent axes where every input keeps contiguity, then walks all but the
 * innermost axis with a counter and hands innermost runs to fn. */
/* Merges the broadcast dims (size-1 dims dropped, contiguous runs joined); returns the
 * merged rank, -1 when the output is empty. */
static int bcast_merge(int nin, int ndim, const int64_t *odims, int64_t (*istrides)[QD_MAX_DIMS],
		       int64_t *d, int64_t (*st)[QD_MAX_DIMS])
{
	int nd = 0;
	for (int i = 0; i < ndim; i++) {
		if (odims[i] == 0) return -1;
		if (odims[i] == 1) continue;
		bool merge = nd > 0;
		for (int k = 0; k < nin && merge; k++)
			if (st[k][nd - 1] != istrides[k][i] * odims[i]) merge = false;
		if (merge) {
			d[nd - 1] *= odims[i];
			for (int k = 0; k < nin; k++) st[k][nd - 1] = istrides[k][i];
		} else {
			d[nd] = odims[i];
			for (int k = 0; k < nin; k++) st[k][nd] = istrides[k][i];
			nd++;
		}
	}
	return nd;
}

/* The runs of output elements [lo, hi) of a merged broadcast (nd >= 1). */
static void bcast_range(int nin, int nd, const int64_t *d, int64_t (*st)[QD_MAX_DIMS],
			int64_t lo, int64_t hi, qd_bcast_fn fn, void *ud)
{
	int64_t ofs[QD_CTX_MAX_IO] = {0}, inner[QD_CTX_MAX_IO], idx[QD_MAX_DIMS] = {0};
	int64_t cnt = d[nd - 1], row = lo / cnt, col = lo % cnt, o = lo;
	for (int k = 0; k < nin; k++) inner[k] = st[k][nd - 1];
	for (int ax = nd - 2; ax >= 0; ax--) {
		idx[ax] = row % d[ax];
		row /= d[ax];
		for (int k = 0; k < nin; k++) ofs[k] += idx[ax] * st[k][ax];
	}
	while (o < hi) {
		int64_t n = QD_MIN(cnt - col, hi - o);
		if (col) {
			int64_t at[QD_CTX_MAX_IO];
			for (int k = 0; k < nin; k++) at[k] = ofs[k] + col * inner[k];
			fn(ud, o, at, inner, n);
		} else {
			fn(ud, o, ofs, inner, n);
		}
		o += n;
		col = 0;
		int ax = nd - 2;
		for (; ax >= 0; ax--) {
			idx[ax]++;
			for (int k = 0; k < nin; k++) ofs[k] += st[k][ax];
			if (idx[ax] < d[ax]) break;
			for (int k = 0; k < nin; k++) ofs[k] -= st[k][ax] * d[ax];
			idx[ax] = 0;
		}
		if (ax < 0) break;
	}
}

/* All runs of a merged broadcast of rank nd (bcast_merge) on the calling thread. */
static void bcast_all(int nin, int nd, const int64_t *d, int64_t (*st)[QD_MAX_DIMS], int64_t total,
		      qd_bcast_fn fn, void *ud)
{
	if (nd < 0) return;
	if (nd == 0) {
		int64_t ofs[QD_CTX_MAX_IO] = {0}, inner[QD_CTX_MAX_IO] = {0};
		fn(ud, 0, ofs, inner, 1);
		return;
	}
	bcast_range(nin, nd, d, st, 0, total, fn, ud);
}

static int64_t bcast_total(int nd, const int64_t *d)
{
	int64_t total = 1;
	for (int i = 0; i < nd; i++) total *= d[i];
	return total;
}

void qd_broadcast_for(int nin, int ndim, const int64_t *odims, int64_t (*istrides)[QD_MAX_DIMS],
		      qd_bcast_fn fn, void *ud)
{
	int64_t d[QD_MAX_DIMS], st[QD_CTX_MAX_IO][QD_MAX_DIMS];
	int nd = bcast_merge(nin, ndim, odims, istrides, d, st);
	bcast_all(nin, nd, d, st, bcast_total(nd, d), fn, ud);
}

struct bcast_mt {
	int nin, nd;
	int64_t d[QD_MAX_DIMS], st[QD_CTX_MAX_IO][QD_MAX_DIMS];
	qd_bcast_fn fn;
	void *ud;
};

static void bcast_chunk(void *ctx, int64_t lo, int64_t hi)
{
	struct bcast_mt *b = ctx;
	bcast_range(b->nin, b->nd, b->d, b->st, lo, hi, b->fn, b->ud);
}

void qd_broadcast_for_mt(int nin, int ndim, const int64_t *odims, int64_t (*istrides)[QD_MAX_DIMS],
			 qd_bcast_fn fn, void *ud)
{
	struct bcast_mt b = { .nin = nin, .fn = fn, .ud = ud };
	b.nd = bcast_merge(nin, ndim, odims, istrides, b.d, b.st);
	int64_t total = bcast_total(b.nd, b.d);
	if (b.nd <= 0 || total < (1 << 16) || qd_tpool_threads(qd_tpool_current()) <= 1) {
		bcast_all(nin, b.nd, b.d, b.st, total, fn, ud);   /* merged once, run here */
		return;
	}
	qd_parallel_for(total, 1 << 14, bcast_chunk, &b);
}
