/* engine/ops_shape.c — shape and data-movement ops: Reshape Flatten Transpose Squeeze
 * Unsqueeze Concat Split Slice Gather GatherElements GatherND Expand Tile Pad Shape Size
 * ConstantOfShape Range Cast CastLike DepthToSpace SpaceToDepth. Byte-wise copies, so
 * every fixed-size dtype works. */
/* hot loops: let GCC vectorise with runtime alias checks (-O2 uses the "very cheap"
 * cost model that refuses them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno")
#endif
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "engine/engine_internal.h"

/* Reads an integer tensor (axes, shape, pads...) into v (cap entries). Returns count or -1. */
static int64_t read_ints(const struct qd_tensor *t, int64_t *v, int64_t cap)
{
	int64_t n = qd_tensor_count(t);
	if (n > cap || !qd_dtype_is_int(t->dtype)) return -1;
	for (int64_t i = 0; i < n; i++) v[i] = qd_tensor_get_i64(t, i);
	return n;
}

/* Optional ints from an attribute (before `since`) or input `idx` (from `since`). */
static int64_t attr_or_input(struct qd_ctx *c, const char *attr, int idx, int64_t since, int64_t *v,
			     int64_t cap, bool *present)
{
	*present = false;
	if (c->n->opset < since) {
		const int64_t *a;
		long k = qd_node_attr_ints(c->n->proto, attr, &a);
		if (k < 0) return 0;
		if (k > cap) return -1;
		if (k) memcpy(v, a, k * sizeof(int64_t));
		*present = true;
		return k;
	}
	if (idx >= c->n_in || !c->in[idx]) return 0;
	*present = true;
	return read_ints(c->in[idx], v, cap);
}

int qd_op_reshape(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t sh[QD_MAX_DIMS];
	int64_t n;
	char b1[128], b2[128];
	if (c->n->opset < 5) {
		const int64_t *a;
		long k = qd_node_attr_ints(c->n->proto, "shape", &a);
		if (k < 0 || k > QD_MAX_DIMS) return qd_ctx_fail(c, QD_EINVAL, "bad shape attribute");
		if (k) memcpy(sh, a, k * 8);
		n = k;
	} else {
		const struct qd_tensor *s = qd_ctx_in(c, 1);
		if (!s) return -c->err->code;
		if ((n = read_ints(s, sh, QD_MAX_DIMS)) < 0)
			return qd_ctx_fail(c, QD_EINVAL, "shape must be an int64 vector of at most %d values", QD_MAX_DIMS);
	}
	bool allowzero = qd_node_attr_int(c->n->proto, "allowzero", 0) != 0;
	int64_t known = 1;
	int neg = -1;
	for (int i = 0; i < n; i++) {
		if (sh[i] == 0 && !allowzero) {
			if (i >= x->ndim) return qd_ctx_fail(c, QD_ESHAPE, "shape has 0 at %d beyond the input rank", i);
			sh[i] = x->dims[i];
		}
		if (sh[i] == -1) {
			if (neg >= 0) return qd_ctx_fail(c, QD_ESHAPE, "shape has more than one -1");
			neg = i;
		} else if (sh[i] < 0) return qd_ctx_fail(c, QD_ESHAPE, "shape has negative value %lld", (long long)sh[i]);
		else if (__builtin_mul_overflow(known, sh[i], &known))
			return qd_ctx_fail(c, QD_ESHAPE, "shape product overflows");
	}
	int64_t cnt = qd_tensor_count(x);
	if (neg >= 0) {
		if (known == 0 || cnt % known)
			return qd_ctx_fail(c, QD_ESHAPE, "cannot reshape %s into %s",
					   qd_dims_str(x->ndim, x->dims, b1, sizeof(b1)), qd_dims_str((int)n, sh, b2, sizeof(b2)));
		sh[neg] = cnt / known;
	}
	if (qd_dims_count((int)n, sh) != cnt)
		return qd_ctx_fail(c, QD_ESHAPE, "cannot reshape %s into %s",
				   qd_dims_str(x->ndim, x->dims, b1, sizeof(b1)), qd_dims_str((int)n, sh, b2, sizeof(b2)));
	return qd_ctx_out_copy(c, 0, x, (int)n, sh);
}

int qd_op_flatten(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t a = qd_node_attr_int(c->n->proto, "axis", 1);
	if (a < 0) a += x->ndim;
	if (a < 0 || a > x->ndim) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	int64_t d[2] = { qd_dims_count((int)a, x->dims), qd_dims_count(x->ndim - (int)a, x->dims + a) };
	return qd_ctx_out_copy(c, 0, x, 2, d);
}

/* Generic strided gather-copy: out[i] = in[offset(i)] where in strides are given per
 * output axis. es = element size. */
static void copy_strided(char *dst, const char *src, int nd, const int64_t *od, const int64_t *ist,
			 int64_t base, size_t es)
{
	int64_t n = qd_dims_count(nd, od), idx[QD_MAX_DIMS] = {0}, off = base;
	if (nd == 0) { memcpy(dst, src + base * es, es); return; }
	int64_t last = od[nd - 1], ls = ist[nd - 1];
	for (int64_t o = 0; o < n; o += last) {
		if (ls == 1) memcpy(dst + o * es, src + off * es, last * es);
		else if (es == 4)
			for (int64_t j = 0; j < last; j++) ((uint32_t *)dst)[o + j] = ((const uint32_t *)src)[off + j * ls];
		else
			for (int64_t j = 0; j < last; j++) memcpy(dst + (o + j) * es, src + (off + j * ls) * es, es);
		for (int ax = nd - 2; ax >= 0; ax--) {
			off += ist[ax];
			if (++idx[ax] < od[ax]) break;
			off -= ist[ax] * od[ax];
			idx[ax] = 0;
		}
	}
}

int qd_op_transpose(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t perm[QD_MAX_DIMS];
	const int64_t *p;
	long k = qd_node_attr_ints(c->n->proto, "perm", &p);
	if (k < 0) for (int i = 0; i < x->ndim; i++) perm[i] = x->ndim - 1 - i;
	else {
		if (k != x->ndim) return qd_ctx_fail(c, QD_EINVAL, "perm has %ld values for rank %d", k, x->ndim);
		bool seen[QD_MAX_DIMS] = {0};
		for (int i = 0; i < x->ndim; i++) {
			int a = qd_axis(p[i], x->ndim);
			if (a < 0 || seen[a]) return qd_ctx_fail(c, QD_EINVAL, "perm is not a permutation");
			seen[a] = true;
			perm[i] = a;
		}
	}
	int64_t od[QD_MAX_DIMS], st[QD_MAX_DIMS], ist[QD_MAX_DIMS];
	qd_dims_strides(x->ndim, x->dims, st);
	for (int i = 0; i < x->ndim; i++) { od[i] = x->dims[perm[i]]; ist[i] = st[perm[i]]; }
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	if (!y) return -c->err->code;
	if (qd_tensor_count(x)) copy_strided(y->data, x->data, x->ndim, od, ist, 0, qd_dtype_size(x->dtype));
	return 0;
}

int qd_op_squeeze(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t ax[QD_MAX_DIMS];
	bool present;
	int64_t n = attr_or_input(c, "axes", 1, 13, ax, QD_MAX_DIMS, &present);
	if (n < 0) return qd_ctx_fail(c, QD_EINVAL, "bad axes");
	bool drop[QD_MAX_DIMS] = {0};
	if (!present || n == 0) for (int i = 0; i < x->ndim; i++) drop[i] = x->dims[i] == 1;
	for (int64_t i = 0; i < n; i++) {
		int a = qd_axis(ax[i], x->ndim);
		if (a < 0) return qd_ctx_fail(c, QD_EINVAL, "axis %lld out of range", (long long)ax[i]);
		if (x->dims[a] != 1) return qd_ctx_fail(c, QD_ESHAPE, "cannot squeeze axis %d of size %lld", a, (long long)x->dims[a]);
		drop[a] = true;
	}
	int64_t od[QD_MAX_DIMS];
	int on = 0;
	for (int i = 0; i < x->ndim; i++) if (!drop[i]) od[on++] = x->dims[i];
	return qd_ctx_out_copy(c, 0, x, on, od);
}

int qd_op_unsqueeze(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t ax[QD_MAX_DIMS];
	bool present;
	int64_t n = attr_or_input(c, "axes", 1, 13, ax, QD_MAX_DIMS, &present);
	if (n < 0 || !present) return qd_ctx_fail(c, QD_EINVAL, "axes are required");
	int on = x->ndim + (int)n;
	if (on > QD_MAX_DIMS) return qd_ctx_fail(c, QD_EUNSUPPORTED, "rank too large");
	bool ins[QD_MAX_DIMS] = {0};
	for (int64_t i = 0; i < n; i++) {
		int a = qd_axis(ax[i], on);
		if (a < 0 || ins[a]) return qd_ctx_fail(c, QD_EINVAL, "bad axis %lld", (long long)ax[i]);
		ins[a] = true;
	}
	int64_t od[QD_MAX_DIMS];
	for (int i = 0, k = 0; i < on; i++) od[i] = ins[i] ? 1 : x->dims[k++];
	return qd_ctx_out_copy(c, 0, x, on, od);
}

int qd_op_concat(struct qd_ctx *c)
{
	const struct qd_tensor *x0 = NULL;
	for (int i = 0; i < c->n_in; i++) if (c->in[i]) { x0 = c->in[i]; break; }
	if (!x0) return qd_ctx_fail(c, QD_EMODEL, "needs at least one input");
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", x0->ndim > 0 ? 0 : 0), x0->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	int64_t od[QD_MAX_DIMS];
	memcpy(od, x0->dims, sizeof(od));
	od[ax] = 0;
	for (int i = 0; i < c->n_in; i++) {
		const struct qd_tensor *t = c->in[i];
		if (!t) continue;
		if (t->dtype != x0->dtype || t->ndim != x0->ndim)
			return qd_ctx_fail(c, QD_ESHAPE, "input %d has a different dtype or rank", i);
		for (int d = 0; d < t->ndim; d++)
			if (d != ax && t->dims[d] != x0->dims[d]) {
				char b1[128], b2[128];
				return qd_ctx_fail(c, QD_ESHAPE, "input %d has shape %s, input 0 %s (axis %d)", i,
						   qd_dims_str(t->ndim, t->dims, b1, sizeof(b1)),
						   qd_dims_str(x0->ndim, x0->dims, b2, sizeof(b2)), ax);
			}
		od[ax] += t->dims[ax];
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x0->dtype, x0->ndim, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x0->dtype);
	int64_t outer = qd_dims_count(ax, od), inner = qd_dims_count(x0->ndim - ax - 1, od + ax + 1);
	int64_t orow = od[ax] * inner * es, pos = 0;
	for (int i = 0; i < c->n_in; i++) {
		const struct qd_tensor *t = c->in[i];
		if (!t) continue;
		int64_t row = t->dims[ax] * inner * es;
		for (int64_t o = 0; o < outer; o++)
			memcpy((char *)y->data + o * orow + pos, (const char *)t->data + o * row, row);
		pos += row;
	}
	return 0;
}

int qd_op_split(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", 0), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	int64_t sp[QD_CTX_MAX_IO];
	bool present;
	int64_t n = attr_or_input(c, "split", 1, 13, sp, QD_CTX_MAX_IO, &present);
	if (n < 0) return qd_ctx_fail(c, QD_EINVAL, "bad split");
	int64_t len = x->dims[ax];
	if (!present || n == 0) {
		n = c->n_out;
		int64_t per = (len + n - 1) / n;
		if (c->n->opset < 18 && len % n)
			return qd_ctx_fail(c, QD_ESHAPE, "axis size %lld is not divisible by %lld outputs", (long long)len, (long long)n);
		for (int64_t i = 0; i < n; i++) sp[i] = QD_MIN(per, QD_MAX(0, len - i * per));
	}
	if (n != c->n_out) return qd_ctx_fail(c, QD_EINVAL, "split has %lld parts for %d outputs", (long long)n, c->n_out);
	int64_t tot = 0;
	for (int64_t i = 0; i < n; i++) {
		if (sp[i] < 0 || sp[i] > len) return qd_ctx_fail(c, QD_EINVAL, "split %lld out of range", (long long)sp[i]);
		tot += sp[i];
	}
	if (tot != len) return qd_ctx_fail(c, QD_ESHAPE, "split sums to %lld, axis size is %lld", (long long)tot, (long long)len);
	size_t es = qd_dtype_size(x->dtype);
	int64_t outer = qd_dims_count(ax, x->dims), inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1);
	int64_t pos = 0;
	for (int64_t i = 0; i < n; i++) {
		int64_t od[QD_MAX_DIMS];
		memcpy(od, x->dims, sizeof(od));
		od[ax] = sp[i];
		if (qd_ctx_wants(c, (int)i)) {
			struct qd_tensor *y = qd_ctx_out(c, (int)i, x->dtype, x->ndim, od);
			if (!y) return -c->err->code;
			int64_t row = sp[i] * inner * es;
			for (int64_t o = 0; o < outer; o++)
				memcpy((char *)y->data + o * row, (const char *)x->data + (o * len * inner) * es + pos, row);
		}
		pos += sp[i] * inner * es;
	}
	return 0;
}

int qd_op_slice(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t st[QD_MAX_DIMS], en[QD_MAX_DIMS], ax[QD_MAX_DIMS], sp[QD_MAX_DIMS];
	int64_t ns, ne, na, nsp;
	bool p1, p2, pa, ps;
	if (c->n->opset < 10) {
		ns = attr_or_input(c, "starts", -1, 10, st, QD_MAX_DIMS, &p1);
		ne = attr_or_input(c, "ends", -1, 10, en, QD_MAX_DIMS, &p2);
		na = attr_or_input(c, "axes", -1, 10, ax, QD_MAX_DIMS, &pa);
		nsp = 0; ps = false;
	} else {
		ns = attr_or_input(c, "", 1, 10, st, QD_MAX_DIMS, &p1);
		ne = attr_or_input(c, "", 2, 10, en, QD_MAX_DIMS, &p2);
		na = attr_or_input(c, "", 3, 10, ax, QD_MAX_DIMS, &pa);
		nsp = attr_or_input(c, "", 4, 10, sp, QD_MAX_DIMS, &ps);
	}
	if (ns < 0 || ne < 0 || na < 0 || nsp < 0 || !p1 || !p2 || ns != ne)
		return qd_ctx_fail(c, QD_EINVAL, "starts/ends/axes/steps are missing or of different lengths");
	if (!pa) { na = ns; for (int i = 0; i < na; i++) ax[i] = i; }
	if (!ps) { nsp = ns; for (int i = 0; i < nsp; i++) sp[i] = 1; }
	if (na != ns || nsp != ns) return qd_ctx_fail(c, QD_EINVAL, "starts/axes/steps lengths differ");
	int64_t b[QD_MAX_DIMS], s[QD_MAX_DIMS], od[QD_MAX_DIMS];
	bool seen[QD_MAX_DIMS] = {0};
	for (int i = 0; i < x->ndim; i++) { b[i] = 0; s[i] = 1; od[i] = x->dims[i]; }
	for (int64_t i = 0; i < ns; i++) {
		int a = qd_axis(ax[i], x->ndim);
		if (a < 0 || seen[a]) return qd_ctx_fail(c, QD_EINVAL, "bad axis %lld", (long long)ax[i]);
		seen[a] = true;
		int64_t d = x->dims[a], step = sp[i], lo = st[i], hi = en[i];
		if (step == 0) return qd_ctx_fail(c, QD_EINVAL, "step 0");
		if (step < -((int64_t)1 << 62)) step = -((int64_t)1 << 62);
		if (lo < 0) lo += d;
		if (hi < 0 && hi > INT64_MIN / 2) hi += d;
		if (step > 0) {
			lo = QD_MAX(0, QD_MIN(lo, d));
			hi = QD_MAX(0, QD_MIN(hi, d));
			od[a] = hi > lo ? (hi - lo - 1) / step + 1 : 0;   /* no overflow for huge steps */
		} else {
			lo = QD_MAX(-1, QD_MIN(lo, d - 1));
			hi = QD_MAX(-1, QD_MIN(hi, d - 1));
			od[a] = lo > hi ? (lo - hi - 1) / (-step) + 1 : 0;
		}
		b[a] = lo;
		s[a] = step;
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	if (!y) return -c->err->code;
	if (!qd_tensor_count(y)) return 0;
	int64_t xs[QD_MAX_DIMS], ist[QD_MAX_DIMS], base = 0;
	qd_dims_strides(x->ndim, x->dims, xs);
	for (int i = 0; i < x->ndim; i++) { ist[i] = xs[i] * s[i]; base += b[i] * xs[i]; }
	copy_strided(y->data, x->data, x->ndim, od, ist, base, qd_dtype_size(x->dtype));
	return 0;
}

int qd_op_gather(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *ix = qd_ctx_in(c, 1);
	if (!x || !ix) return -c->err->code;
	if (!qd_dtype_is_int(ix->dtype)) return qd_ctx_fail(c, QD_EINVAL, "indices must be int32/int64");
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", 0), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	int on = x->ndim - 1 + ix->ndim;
	if (on > QD_MAX_DIMS) return qd_ctx_fail(c, QD_EUNSUPPORTED, "rank too large");
	int64_t od[QD_MAX_DIMS];
	int k = 0;
	for (int i = 0; i < ax; i++) od[k++] = x->dims[i];
	for (int i = 0; i < ix->ndim; i++) od[k++] = ix->dims[i];
	for (int i = ax + 1; i < x->ndim; i++) od[k++] = x->dims[i];
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, on, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x->dtype);
	int64_t outer = qd_dims_count(ax, x->dims), len = x->dims[ax];
	int64_t inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1) * es, ni = qd_tensor_count(ix);
	for (int64_t j = 0; j < ni; j++) {
		int64_t i = qd_tensor_get_i64(ix, j);
		if (i < -len || i >= len) return qd_ctx_fail(c, QD_EINVAL, "index %lld out of range [%lld, %lld)", (long long)i, (long long)-len, (long long)len);
	}
	for (int64_t o = 0; o < outer; o++)
		for (int64_t j = 0; j < ni; j++) {
			int64_t i = qd_tensor_get_i64(ix, j);
			if (i < 0) i += len;
			memcpy((char *)y->data + (o * ni + j) * inner, (const char *)x->data + (o * len + i) * inner, inner);
		}
	return 0;
}

int qd_op_gather_elements(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *ix = qd_ctx_in(c, 1);
	if (!x || !ix) return -c->err->code;
	if (!qd_dtype_is_int(ix->dtype)) return qd_ctx_fail(c, QD_EINVAL, "indices must be int32/int64");
	if (ix->ndim != x->ndim) return qd_ctx_fail(c, QD_ESHAPE, "indices rank differs from data rank");
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", 0), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	for (int i = 0; i < x->ndim; i++)
		if (i != ax && ix->dims[i] > x->dims[i]) return qd_ctx_fail(c, QD_ESHAPE, "indices larger than data");
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, ix->ndim, ix->dims);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x->dtype);
	int64_t xs[QD_MAX_DIMS], n = qd_tensor_count(ix), idx[QD_MAX_DIMS] = {0};
	qd_dims_strides(x->ndim, x->dims, xs);
	for (int64_t k = 0; k < n; k++) {
		int64_t i = qd_tensor_get_i64(ix, k), len = x->dims[ax];
		if (i < -len || i >= len) return qd_ctx_fail(c, QD_EINVAL, "index %lld out of range", (long long)i);
		if (i < 0) i += len;
		int64_t off = 0;
		for (int d = 0; d < x->ndim; d++) off += (d == ax ? i : idx[d]) * xs[d];
		memcpy((char *)y->data + k * es, (const char *)x->data + off * es, es);
		for (int d = x->ndim - 1; d >= 0; d--) { if (++idx[d] < ix->dims[d]) break; idx[d] = 0; }
	}
	return 0;
}

int qd_op_gather_nd(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *ix = qd_ctx_in(c, 1);
	if (!x || !ix) return -c->err->code;
	if (ix->dtype != QD_DT_INT64) return qd_ctx_fail(c, QD_EINVAL, "indices must be int64");
	int64_t bd = qd_node_attr_int(c->n->proto, "batch_dims", 0);
	if (ix->ndim < 1 || bd < 0 || bd >= ix->ndim || bd >= x->ndim) return qd_ctx_fail(c, QD_EINVAL, "bad batch_dims/indices rank");
	int64_t last = ix->dims[ix->ndim - 1];
	if (last < 1 || last > x->ndim - bd) return qd_ctx_fail(c, QD_ESHAPE, "indices last dim %lld too large", (long long)last);
	for (int i = 0; i < bd; i++) if (ix->dims[i] != x->dims[i]) return qd_ctx_fail(c, QD_ESHAPE, "batch dims differ");
	int64_t od[QD_MAX_DIMS];
	int on = 0;
	for (int i = 0; i < ix->ndim - 1; i++) od[on++] = ix->dims[i];
	for (int i = (int)(bd + last); i < x->ndim; i++) { if (on >= QD_MAX_DIMS) return qd_ctx_fail(c, QD_EUNSUPPORTED, "rank too large"); od[on++] = x->dims[i]; }
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, on, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x->dtype);
	int64_t xs[QD_MAX_DIMS];
	qd_dims_strides(x->ndim, x->dims, xs);
	int64_t slice = qd_dims_count(x->ndim - (int)(bd + last), x->dims + bd + last) * es;
	int64_t nb = qd_dims_count((int)bd, x->dims), per = qd_dims_count(ix->ndim - 1 - (int)bd, ix->dims + bd);
	const int64_t *I = ix->data;
	for (int64_t b = 0; b < nb; b++)
		for (int64_t j = 0; j < per; j++) {
			const int64_t *t = I + (b * per + j) * last;
			int64_t off = b * (bd ? xs[bd - 1] : 0);
			for (int64_t k = 0; k < last; k++) {
				int64_t d = x->dims[bd + k], v = t[k];
				if (v < -d || v >= d) return qd_ctx_fail(c, QD_EINVAL, "index %lld out of range", (long long)v);
				off += (v < 0 ? v + d : v) * xs[bd + k];
			}
			memcpy((char *)y->data + (b * per + j) * slice, (const char *)x->data + off * es, slice);
		}
	return 0;
}

int qd_op_expand(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *s = qd_ctx_in(c, 1);
	if (!x || !s) return -c->err->code;
	int64_t sh[QD_MAX_DIMS], od[QD_MAX_DIMS], ist[QD_MAX_DIMS];
	int64_t n = read_ints(s, sh, QD_MAX_DIMS);
	int nd;
	if (n < 0) return qd_ctx_fail(c, QD_EINVAL, "shape must be an int64 vector");
	if (qd_broadcast_shape(x->ndim, x->dims, (int)n, sh, &nd, od)) {
		char b1[128], b2[128];
		return qd_ctx_fail(c, QD_ESHAPE, "cannot expand %s to %s", qd_dims_str(x->ndim, x->dims, b1, sizeof(b1)),
				   qd_dims_str((int)n, sh, b2, sizeof(b2)));
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, nd, od);
	if (!y) return -c->err->code;
	qd_broadcast_strides(x->ndim, x->dims, nd, od, ist);
	if (qd_tensor_count(y)) copy_strided(y->data, x->data, nd, od, ist, 0, qd_dtype_size(x->dtype));
	return 0;
}

int qd_op_tile(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *r = qd_ctx_in(c, 1);
	if (!x || !r) return -c->err->code;
	int64_t rep[QD_MAX_DIMS];
	if (read_ints(r, rep, QD_MAX_DIMS) != x->ndim) return qd_ctx_fail(c, QD_EINVAL, "repeats must have one value per axis");
	int64_t od[QD_MAX_DIMS], xs[QD_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++) {
		if (rep[i] < 0) return qd_ctx_fail(c, QD_EINVAL, "negative repeat");
		if (__builtin_mul_overflow(x->dims[i], rep[i], &od[i]) || od[i] > ((int64_t)1 << 40))
			return qd_ctx_fail(c, QD_ETOO_LARGE, "tiled size too large");
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x->dtype);
	qd_dims_strides(x->ndim, x->dims, xs);
	int64_t n = qd_tensor_count(y), idx[QD_MAX_DIMS] = {0};
	for (int64_t k = 0; k < n; k++) {
		int64_t off = 0;
		for (int d = 0; d < x->ndim; d++) off += (idx[d] % x->dims[d]) * xs[d];
		memcpy((char *)y->data + k * es, (const char *)x->data + off * es, es);
		for (int d = x->ndim - 1; d >= 0; d--) { if (++idx[d] < od[d]) break; idx[d] = 0; }
	}
	return 0;
}

int qd_check_pad(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const char *m = qd_node_attr_string(n->proto, "mode", "constant");
	if (strcmp(m, "constant") && strcmp(m, "reflect") && strcmp(m, "edge"))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (Pad): mode '%s' not supported", n->name, m);
	return 0;
}

int qd_op_pad(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	const char *mode = qd_node_attr_string(c->n->proto, "mode", "constant");
	int64_t pads[2 * QD_MAX_DIMS], p[2 * QD_MAX_DIMS] = {0}, ax[QD_MAX_DIMS];
	int64_t np_;
	bool present;
	double cv = 0;
	if (c->n->opset < 11) {
		np_ = attr_or_input(c, c->n->opset < 2 ? "paddings" : "pads", -1, 11, pads, 2 * QD_MAX_DIMS, &present);
		cv = qd_node_attr_float(c->n->proto, "value", 0);
	} else {
		np_ = attr_or_input(c, "", 1, 11, pads, 2 * QD_MAX_DIMS, &present);
		if (c->n_in > 2 && c->in[2]) {
			if (qd_tensor_count(c->in[2]) != 1) return qd_ctx_fail(c, QD_EINVAL, "constant_value must be a scalar");
			cv = qd_tensor_get_f64(c->in[2], 0);
		}
	}
	if (np_ < 0 || !present) return qd_ctx_fail(c, QD_EINVAL, "pads are required");
	int64_t na = x->ndim;
	if (c->n_in > 3 && c->in[3]) {
		na = read_ints(c->in[3], ax, QD_MAX_DIMS);
		if (na < 0) return qd_ctx_fail(c, QD_EINVAL, "bad axes");
	} else for (int i = 0; i < x->ndim; i++) ax[i] = i;
	if (np_ != 2 * na) return qd_ctx_fail(c, QD_EINVAL, "pads has %lld values for %lld axes", (long long)np_, (long long)na);
	for (int64_t i = 0; i < na; i++) {
		int a = qd_axis(ax[i], x->ndim);
		if (a < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
		p[a] = pads[i];
		p[x->ndim + a] = pads[na + i];
	}
	int64_t od[QD_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++) {
		if (p[i] < -((int64_t)1 << 40) || p[i] > ((int64_t)1 << 40) || p[x->ndim + i] < -((int64_t)1 << 40) ||
		    p[x->ndim + i] > ((int64_t)1 << 40))
			return qd_ctx_fail(c, QD_EINVAL, "pads out of range");
		od[i] = x->dims[i] + p[i] + p[x->ndim + i];
		if (od[i] < 0) return qd_ctx_fail(c, QD_ESHAPE, "pads remove more than axis %d has", i);
		if (strcmp(mode, "constant") && (od[i] > 0) && x->dims[i] == 0)
			return qd_ctx_fail(c, QD_ESHAPE, "cannot %s-pad an empty axis", mode);
		if (!strcmp(mode, "reflect") && (p[i] >= x->dims[i] || p[x->ndim + i] >= x->dims[i]) && x->dims[i] > 0 &&
		    (p[i] > 0 || p[x->ndim + i] > 0) && x->dims[i] < 2)
			return qd_ctx_fail(c, QD_ESHAPE, "reflect pad larger than axis %d", i);
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x->dtype);
	int64_t xs[QD_MAX_DIMS], n = qd_tensor_count(y), idx[QD_MAX_DIMS] = {0};
	qd_dims_strides(x->ndim, x->dims, xs);
	int cmode = !strcmp(mode, "constant") ? 0 : !strcmp(mode, "reflect") ? 1 : 2;
	for (int64_t k = 0; k < n; k++) {
		int64_t off = 0;
		bool outside = false;
		for (int d = 0; d < x->ndim; d++) {
			int64_t i = idx[d] - p[d], len = x->dims[d];
			if (i < 0 || i >= len) {
				if (cmode == 0) { outside = true; break; }
				if (cmode == 2) i = i < 0 ? 0 : len - 1;
				else {
					int64_t per = 2 * (len - 1);
					if (per == 0) i = 0;
					else { i = ((i % per) + per) % per; if (i >= len) i = per - i; }
				}
			}
			off += i * xs[d];
		}
		if (outside) qd_tensor_set_f64(y, k, cv);
		else memcpy((char *)y->data + k * es, (const char *)x->data + off * es, es);
		for (int d = x->ndim - 1; d >= 0; d--) { if (++idx[d] < od[d]) break; idx[d] = 0; }
	}
	return 0;
}

int qd_op_shape(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t s = qd_node_attr_int(c->n->proto, "start", 0), e = qd_node_attr_int(c->n->proto, "end", x->ndim);
	if (s < 0) s += x->ndim;
	if (e < 0) e += x->ndim;
	s = QD_MAX(0, QD_MIN(s, x->ndim));
	e = QD_MAX(0, QD_MIN(e, x->ndim));
	int64_t n = e > s ? e - s : 0;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_INT64, 1, &n);
	if (!y) return -c->err->code;
	for (int64_t i = 0; i < n; i++) ((int64_t *)y->data)[i] = x->dims[s + i];
	return 0;
}

int qd_op_size(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_INT64, 0, NULL);
	if (!y) return -c->err->code;
	*(int64_t *)y->data = qd_tensor_count(x);
	return 0;
}

int qd_check_constant_of_shape(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const Onnx__AttributeProto *a = qd_node_attr(n->proto, "value");
	out_dt[0] = a && a->t && a->t->has_data_type ? a->t->data_type : QD_DT_FLOAT;
	if (!qd_dtype_size(out_dt[0]) || out_dt[0] == QD_DT_FLOAT16 || out_dt[0] == QD_DT_BFLOAT16)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': value dtype %s not supported", n->name,
				  qd_dtype_name(out_dt[0]));
	return 0;
}

int qd_op_constant_of_shape(struct qd_ctx *c)
{
	const struct qd_tensor *s = qd_ctx_in(c, 0);
	if (!s) return -c->err->code;
	int64_t sh[QD_MAX_DIMS];
	int64_t n = read_ints(s, sh, QD_MAX_DIMS);
	if (n < 0) return qd_ctx_fail(c, QD_EINVAL, "shape must be an int64 vector of at most %d values", QD_MAX_DIMS);
	for (int i = 0; i < n; i++) if (sh[i] < 0) return qd_ctx_fail(c, QD_EINVAL, "negative dim");
	const Onnx__AttributeProto *a = qd_node_attr(c->n->proto, "value");
	struct qd_tensor v = {0};
	if (a && a->t) {
		int rc = qd_tensor_from_proto(a->t, &v, c->err);
		if (rc) return rc;
		if (qd_tensor_count(&v) != 1) { qd_tensor_release(&v); return qd_ctx_fail(c, QD_EINVAL, "value must have one element"); }
	} else if (qd_tensor_alloc(&v, NULL, QD_DT_FLOAT, 0, NULL)) return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	struct qd_tensor *y = qd_ctx_out(c, 0, v.dtype, (int)n, sh);
	if (!y) { qd_tensor_release(&v); return -c->err->code; }
	size_t es = qd_dtype_size(v.dtype);
	int64_t cnt = qd_tensor_count(y);
	for (int64_t i = 0; i < cnt; i++) memcpy((char *)y->data + i * es, v.data, es);
	qd_tensor_release(&v);
	return 0;
}

int qd_op_range(struct qd_ctx *c)
{
	const struct qd_tensor *s = qd_ctx_in(c, 0), *l = qd_ctx_in(c, 1), *d = qd_ctx_in(c, 2);
	if (!s || !l || !d) return -c->err->code;
	if (qd_tensor_count(s) != 1 || qd_tensor_count(l) != 1 || qd_tensor_count(d) != 1)
		return qd_ctx_fail(c, QD_EINVAL, "start, limit and delta must be scalars");
	double st = qd_tensor_get_f64(s, 0), li = qd_tensor_get_f64(l, 0), de = qd_tensor_get_f64(d, 0);
	if (de == 0) return qd_ctx_fail(c, QD_EINVAL, "delta is 0");
	double nf = ceil((li - st) / de);
	if (nf != nf) return qd_ctx_fail(c, QD_EINVAL, "start, limit or delta is not a number");
	/* the output limits (qd_ctx_out) decide what is too large; this keeps n an int64 */
	if (nf > (double)((int64_t)1 << 62)) return qd_ctx_fail(c, QD_ELIMIT, "range of %g values", nf);
	int64_t n = nf > 0 ? (int64_t)nf : 0;
	struct qd_tensor *y = qd_ctx_out(c, 0, s->dtype, 1, &n);
	if (!y) return -c->err->code;
	if (qd_dtype_is_int(s->dtype)) {
		int64_t a = qd_tensor_get_i64(s, 0), b = qd_tensor_get_i64(d, 0);
		for (int64_t i = 0; i < n; i++)   /* wraps like the int64 arithmetic it stands for */
			qd_tensor_set_i64(y, i, (int64_t)((uint64_t)a + (uint64_t)i * (uint64_t)b));
	} else if (s->dtype == QD_DT_FLOAT) {
		float a = (float)st, b = (float)de;
		for (int64_t i = 0; i < n; i++) ((float *)y->data)[i] = a + (float)i * b;
	} else
		for (int64_t i = 0; i < n; i++) qd_tensor_set_f64(y, i, st + i * de);
	return 0;
}

/* ---- Cast ---- */
int qd_check_cast(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	int to = (int)qd_node_attr_int(n->proto, "to", 0);
	if (to >= 32 || !(QD_TM_CAST & QD_TM(to)))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (Cast): target dtype %s not supported",
				  n->name, qd_dtype_name(to));
	out_dt[0] = to;
	return 0;
}

int qd_check_cast_like(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	if (in_dt[1] && (in_dt[1] >= 32 || !(QD_TM_CAST & QD_TM(in_dt[1]))))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (CastLike): target dtype %s not supported",
				  n->name, qd_dtype_name(in_dt[1]));
	return 0;
}

static int cast_to(struct qd_ctx *c, int to)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (to >= 32 || !(QD_TM_CAST & QD_TM(to)))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "target dtype %s not supported", qd_dtype_name(to));
	struct qd_tensor *y = qd_ctx_out(c, 0, to, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t n = qd_tensor_count(x);
	if (x->dtype == to) { memcpy(y->data, x->data, x->nbytes); return 0; }
	if (x->dtype == QD_DT_FLOAT && to == QD_DT_INT64) {
		for (int64_t i = 0; i < n; i++) ((int64_t *)y->data)[i] = qd_f2i(((const float *)x->data)[i]);
		return 0;
	}
	if (x->dtype == QD_DT_INT64 && to == QD_DT_FLOAT) {
		for (int64_t i = 0; i < n; i++) ((float *)y->data)[i] = (float)((const int64_t *)x->data)[i];
		return 0;
	}
	bool fsrc = qd_dtype_is_float(x->dtype);
	for (int64_t i = 0; i < n; i++) {
		if (fsrc || to == QD_DT_FLOAT || to == QD_DT_DOUBLE) {
			double v = qd_tensor_get_f64(x, i);
			if (!qd_dtype_is_float(to) && to != QD_DT_BOOL) {
				/* float -> int: truncate; NaN/out of range saturate instead of UB */
				if (isnan(v)) v = 0;
				if (v >= 9.2e18) v = 9.2e18;
				if (v <= -9.2e18) v = -9.2e18;
				qd_tensor_set_i64(y, i, (int64_t)v);
			} else qd_tensor_set_f64(y, i, v);
		} else if (x->dtype == QD_DT_UINT64) {
			qd_tensor_set_i64(y, i, (int64_t)((const uint64_t *)x->data)[i]);
		} else qd_tensor_set_i64(y, i, qd_tensor_get_i64(x, i));
	}
	return 0;
}

int qd_op_cast(struct qd_ctx *c) { return cast_to(c, (int)qd_node_attr_int(c->n->proto, "to", 0)); }

int qd_op_cast_like(struct qd_ctx *c)
{
	const struct qd_tensor *t = qd_ctx_in(c, 1);
	if (!t) return -c->err->code;
	return cast_to(c, t->dtype);
}

/* ---- DepthToSpace / SpaceToDepth ---- */
static int d2s(struct qd_ctx *c, bool to_space)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->ndim != 4) return qd_ctx_fail(c, QD_ESHAPE, "input must be 4-D");
	int64_t b = qd_node_attr_int(c->n->proto, "blocksize", 0);
	bool crd = !strcmp(qd_node_attr_string(c->n->proto, "mode", "DCR"), "CRD");
	int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
	if (b <= 0) return qd_ctx_fail(c, QD_EINVAL, "blocksize must be positive");
	int64_t od[4];
	if (to_space) {
		if (C % (b * b)) return qd_ctx_fail(c, QD_ESHAPE, "channels not divisible by blocksize^2");
		od[0] = N; od[1] = C / (b * b); od[2] = H * b; od[3] = W * b;
	} else {
		if (H % b || W % b) return qd_ctx_fail(c, QD_ESHAPE, "H/W not divisible by blocksize");
		od[0] = N; od[1] = C * b * b; od[2] = H / b; od[3] = W / b;
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, 4, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(x->dtype);
	int64_t oc = od[1];
	/* iterate over the "space" layout (n, c', h, w) of whichever side is spatial */
	int64_t sC = to_space ? oc : C, sH = to_space ? od[2] : H, sW = to_space ? od[3] : W;
	for (int64_t n = 0; n < N; n++)
		for (int64_t ch = 0; ch < sC; ch++)
			for (int64_t h = 0; h < sH; h++)
				for (int64_t w = 0; w < sW; w++) {
					int64_t bh = h % b, bw = w % b;
					int64_t dc = crd ? (ch * b + bh) * b + bw : (bh * b + bw) * sC + ch;
					int64_t dpos = ((n * sC * b * b + dc) * (sH / b) + h / b) * (sW / b) + w / b;
					int64_t spos = ((n * sC + ch) * sH + h) * sW + w;
					if (to_space) memcpy((char *)y->data + spos * es, (const char *)x->data + dpos * es, es);
					else memcpy((char *)y->data + dpos * es, (const char *)x->data + spos * es, es);
				}
	return 0;
}

int qd_check_space_to_depth(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	return 0;
}

int qd_op_depth_to_space(struct qd_ctx *c) { return d2s(c, true); }
int qd_op_space_to_depth(struct qd_ctx *c) { return d2s(c, false); }
