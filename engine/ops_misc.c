/* engine/ops_misc.c — less common ops: IsNaN IsInf Trilu OneHot EyeLike NonZero Compress
 * ScatterElements ScatterND MeanVarianceNormalization LRN. Element access through the
 * generic get/set helpers (these are not hot paths). */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "engine/engine_internal.h"

int qd_op_isnan(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_BOOL, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t n = qd_tensor_count(x);
	for (int64_t i = 0; i < n; i++) ((uint8_t *)y->data)[i] = isnan(qd_tensor_get_f64(x, i)) != 0;
	return 0;
}

int qd_op_isinf(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	bool neg = qd_node_attr_int(c->n->proto, "detect_negative", 1) != 0;
	bool pos = qd_node_attr_int(c->n->proto, "detect_positive", 1) != 0;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_BOOL, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t n = qd_tensor_count(x);
	for (int64_t i = 0; i < n; i++) {
		double v = qd_tensor_get_f64(x, i);
		((uint8_t *)y->data)[i] = isinf(v) && ((v > 0 && pos) || (v < 0 && neg));
	}
	return 0;
}

int qd_op_trilu(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->ndim < 2) return qd_ctx_fail(c, QD_ESHAPE, "input must have rank >= 2");
	int64_t k = 0;
	if (c->n_in > 1 && c->in[1]) {
		if (qd_tensor_count(c->in[1]) != 1) return qd_ctx_fail(c, QD_EINVAL, "k must be a scalar");
		k = qd_tensor_get_i64(c->in[1], 0);
	}
	bool upper = qd_node_attr_int(c->n->proto, "upper", 1) != 0;
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	memcpy(y->data, x->data, x->nbytes);
	int64_t R = x->dims[x->ndim - 2], C = x->dims[x->ndim - 1], mats = qd_dims_count(x->ndim - 2, x->dims);
	size_t es = qd_dtype_size(x->dtype);
	for (int64_t m = 0; m < mats; m++)
		for (int64_t i = 0; i < R; i++)
			for (int64_t j = 0; j < C; j++) {
				bool keep = upper ? j - i >= k : j - i <= k;
				if (!keep) memset((char *)y->data + ((m * R + i) * C + j) * es, 0, es);
			}
	return 0;
}

int qd_check_onehot(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	out_dt[0] = n->n_in > 2 ? in_dt[2] : 0;
	return 0;
}

int qd_op_onehot(struct qd_ctx *c)
{
	const struct qd_tensor *ix = qd_ctx_in(c, 0), *dp = qd_ctx_in(c, 1), *vals = qd_ctx_in(c, 2);
	if (!ix || !dp || !vals) return -c->err->code;
	if (qd_tensor_count(dp) != 1 || qd_tensor_count(vals) != 2)
		return qd_ctx_fail(c, QD_EINVAL, "depth must be a scalar and values have 2 elements");
	int64_t depth = qd_f2i(qd_tensor_get_f64(dp, 0));
	if (depth <= 0 || depth > (1 << 24)) return qd_ctx_fail(c, QD_EINVAL, "depth %lld out of range", (long long)depth);
	int on = ix->ndim + 1;
	if (on > QD_MAX_DIMS) return qd_ctx_fail(c, QD_EUNSUPPORTED, "rank too large");
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", -1), on);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	int64_t od[QD_MAX_DIMS];
	for (int i = 0, k = 0; i < on; i++) od[i] = i == ax ? depth : ix->dims[k++];
	struct qd_tensor *y = qd_ctx_out(c, 0, vals->dtype, on, od);
	if (!y) return -c->err->code;
	size_t es = qd_dtype_size(vals->dtype);
	int64_t n = qd_tensor_count(y);
	for (int64_t i = 0; i < n; i++) memcpy((char *)y->data + i * es, vals->data, es);
	int64_t outer = qd_dims_count(ax, od), inner = qd_dims_count(on - ax - 1, od + ax + 1);
	for (int64_t o = 0; o < outer; o++)
		for (int64_t in = 0; in < inner; in++) {
			int64_t v = qd_f2i(qd_tensor_get_f64(ix, o * inner + in));
			if (v < 0) v += depth;
			if (v < 0 || v >= depth) continue;
			memcpy((char *)y->data + ((o * depth + v) * inner + in) * es, (const char *)vals->data + es, es);
		}
	return 0;
}

int qd_check_eyelike(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const Onnx__AttributeProto *a = qd_node_attr(n->proto, "dtype");
	out_dt[0] = a ? (int)a->i : in_dt[0];
	if (out_dt[0] && (out_dt[0] >= 32 || !(QD_TM_ALL & QD_TM(out_dt[0]))))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (EyeLike): dtype %s not supported", n->name,
				  qd_dtype_name(out_dt[0]));
	return 0;
}

int qd_op_eyelike(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->ndim != 2) return qd_ctx_fail(c, QD_ESHAPE, "input must be 2-D");
	int dt = (int)qd_node_attr_int(c->n->proto, "dtype", x->dtype);
	int64_t k = qd_node_attr_int(c->n->proto, "k", 0);
	struct qd_tensor *y = qd_ctx_out_zero(c, 0, dt, 2, x->dims);
	if (!y) return -c->err->code;
	for (int64_t i = 0; i < x->dims[0]; i++) {
		int64_t j = i + k;
		if (j >= 0 && j < x->dims[1]) qd_tensor_set_f64(y, i * x->dims[1] + j, 1);
	}
	return 0;
}

int qd_op_nonzero(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int64_t n = qd_tensor_count(x), nz = 0;
	for (int64_t i = 0; i < n; i++) if (qd_tensor_get_f64(x, i) != 0) nz++;
	int64_t od[2] = { x->ndim, nz };
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_INT64, 2, od);
	if (!y) return -c->err->code;
	int64_t st[QD_MAX_DIMS], k = 0;
	qd_dims_strides(x->ndim, x->dims, st);
	for (int64_t i = 0; i < n; i++) {
		if (qd_tensor_get_f64(x, i) == 0) continue;
		for (int d = 0; d < x->ndim; d++) ((int64_t *)y->data)[d * nz + k] = (i / st[d]) % x->dims[d];
		k++;
	}
	return 0;
}

int qd_op_compress(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *cd = qd_ctx_in(c, 1);
	if (!x || !cd) return -c->err->code;
	const Onnx__AttributeProto *aa = qd_node_attr(c->n->proto, "axis");
	int64_t ncd = qd_tensor_count(cd);
	size_t es = qd_dtype_size(x->dtype);
	if (!aa) { /* flattened */
		int64_t n = qd_tensor_count(x), m = 0;
		for (int64_t i = 0; i < n && i < ncd; i++) if (qd_tensor_get_i64(cd, i)) m++;
		struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, 1, &m);
		if (!y) return -c->err->code;
		for (int64_t i = 0, k = 0; i < n && i < ncd; i++)
			if (qd_tensor_get_i64(cd, i)) memcpy((char *)y->data + (k++) * es, (const char *)x->data + i * es, es);
		return 0;
	}
	int ax = qd_axis(aa->i, x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	int64_t len = x->dims[ax], m = 0;
	if (ncd > len) return qd_ctx_fail(c, QD_ESHAPE, "condition longer than the axis");
	for (int64_t i = 0; i < ncd; i++) if (qd_tensor_get_i64(cd, i)) m++;
	int64_t od[QD_MAX_DIMS];
	memcpy(od, x->dims, sizeof(od));
	od[ax] = m;
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	if (!y) return -c->err->code;
	int64_t outer = qd_dims_count(ax, x->dims), inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1) * es;
	for (int64_t o = 0; o < outer; o++)
		for (int64_t i = 0, k = 0; i < ncd; i++)
			if (qd_tensor_get_i64(cd, i))
				memcpy((char *)y->data + (o * m + k++) * inner, (const char *)x->data + (o * len + i) * inner, inner);
	return 0;
}

/* ---- scatter ---- */
enum scat_red { SR_NONE, SR_ADD, SR_MUL, SR_MAX, SR_MIN };

static int scat_reduction(const Onnx__NodeProto *np, enum scat_red *r)
{
	const char *s = qd_node_attr_string(np, "reduction", "none");
	if (!strcmp(s, "none")) *r = SR_NONE;
	else if (!strcmp(s, "add")) *r = SR_ADD;
	else if (!strcmp(s, "mul")) *r = SR_MUL;
	else if (!strcmp(s, "max")) *r = SR_MAX;
	else if (!strcmp(s, "min")) *r = SR_MIN;
	else return -1;
	return 0;
}

int qd_check_scatter(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	enum scat_red r;
	if (scat_reduction(n->proto, &r))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': reduction '%s' not supported", n->name,
				  qd_node_attr_string(n->proto, "reduction", ""));
	return 0;
}

static void scat_apply(struct qd_tensor *y, int64_t dst, const struct qd_tensor *u, int64_t src, enum scat_red r)
{
	if (r == SR_NONE) {
		size_t es = qd_dtype_size(y->dtype);
		memcpy((char *)y->data + dst * es, (const char *)u->data + src * es, es);
		return;
	}
	double a = qd_tensor_get_f64(y, dst), b = qd_tensor_get_f64(u, src);
	double v = r == SR_ADD ? a + b : r == SR_MUL ? a * b : r == SR_MAX ? fmax(a, b) : fmin(a, b);
	if (qd_dtype_is_int(y->dtype)) qd_tensor_set_i64(y, dst, qd_f2i(v)); else qd_tensor_set_f64(y, dst, v);
}

int qd_op_scatter_elements(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *ix = qd_ctx_in(c, 1), *u = qd_ctx_in(c, 2);
	if (!x || !ix || !u) return -c->err->code;
	enum scat_red r;
	if (scat_reduction(c->n->proto, &r)) return qd_ctx_fail(c, QD_EUNSUPPORTED, "reduction not supported");
	if (ix->ndim != x->ndim || u->ndim != x->ndim || memcmp(ix->dims, u->dims, ix->ndim * 8) || u->dtype != x->dtype)
		return qd_ctx_fail(c, QD_ESHAPE, "indices/updates must match each other and the data rank");
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", 0), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	memcpy(y->data, x->data, x->nbytes);
	int64_t xs[QD_MAX_DIMS], n = qd_tensor_count(ix), idx[QD_MAX_DIMS] = {0};
	qd_dims_strides(x->ndim, x->dims, xs);
	for (int d = 0; d < x->ndim; d++)
		if (d != ax && ix->dims[d] > x->dims[d]) return qd_ctx_fail(c, QD_ESHAPE, "indices larger than data");
	for (int64_t k = 0; k < n; k++) {
		int64_t v = qd_tensor_get_i64(ix, k), len = x->dims[ax];
		if (v < -len || v >= len) return qd_ctx_fail(c, QD_EINVAL, "index %lld out of range", (long long)v);
		if (v < 0) v += len;
		int64_t off = 0;
		for (int d = 0; d < x->ndim; d++) off += (d == ax ? v : idx[d]) * xs[d];
		scat_apply(y, off, u, k, r);
		for (int d = x->ndim - 1; d >= 0; d--) { if (++idx[d] < ix->dims[d]) break; idx[d] = 0; }
	}
	return 0;
}

int qd_op_scatter_nd(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *ix = qd_ctx_in(c, 1), *u = qd_ctx_in(c, 2);
	if (!x || !ix || !u) return -c->err->code;
	enum scat_red r;
	if (scat_reduction(c->n->proto, &r)) return qd_ctx_fail(c, QD_EUNSUPPORTED, "reduction not supported");
	if (ix->ndim < 1 || u->dtype != x->dtype) return qd_ctx_fail(c, QD_EINVAL, "bad indices/updates");
	int64_t last = ix->dims[ix->ndim - 1];
	if (last < 1 || last > x->ndim) return qd_ctx_fail(c, QD_ESHAPE, "indices last dim out of range");
	int64_t nidx = qd_dims_count(ix->ndim - 1, ix->dims);
	int64_t slice = qd_dims_count(x->ndim - (int)last, x->dims + last);
	if (qd_tensor_count(u) != nidx * slice) return qd_ctx_fail(c, QD_ESHAPE, "updates have the wrong size");
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	memcpy(y->data, x->data, x->nbytes);
	int64_t xs[QD_MAX_DIMS];
	qd_dims_strides(x->ndim, x->dims, xs);
	for (int64_t i = 0; i < nidx; i++) {
		int64_t off = 0;
		for (int64_t k = 0; k < last; k++) {
			int64_t v = qd_tensor_get_i64(ix, i * last + k), d = x->dims[k];
			if (v < -d || v >= d) return qd_ctx_fail(c, QD_EINVAL, "index %lld out of range", (long long)v);
			off += (v < 0 ? v + d : v) * xs[k];
		}
		for (int64_t j = 0; j < slice; j++) scat_apply(y, off + j, u, i * slice + j, r);
	}
	return 0;
}

/* ---- normalisation extras ---- */
int qd_op_mvn(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	bool red[QD_MAX_DIMS] = {0};
	const int64_t *av;
	long na = qd_node_attr_ints(c->n->proto, "axes", &av);
	static const int64_t dflt[3] = { 0, 2, 3 };
	if (na < 0) { av = dflt; na = 3; }
	for (long i = 0; i < na; i++) {
		int a = qd_axis(av[i], x->ndim);
		if (a < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
		red[a] = true;
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t n = qd_tensor_count(x), st[QD_MAX_DIMS], gd[QD_MAX_DIMS], gs[QD_MAX_DIMS];
	qd_dims_strides(x->ndim, x->dims, st);
	for (int i = 0; i < x->ndim; i++) gd[i] = red[i] ? 1 : x->dims[i];
	qd_dims_strides(x->ndim, gd, gs);
	int64_t ng = qd_dims_count(x->ndim, gd);
	double *sum = calloc(ng ? ng : 1, sizeof(double)), *sq = calloc(ng ? ng : 1, sizeof(double));
	int64_t *cnt = calloc(ng ? ng : 1, sizeof(int64_t));
	if (!sum || !sq || !cnt) { free(sum); free(sq); free(cnt); return qd_ctx_fail(c, QD_ENOMEM, "out of memory"); }
	for (int pass = 0; pass < 3; pass++)
		for (int64_t i = 0; i < n; i++) {
			int64_t g = 0;
			for (int d = 0; d < x->ndim; d++) if (!red[d]) g += ((i / st[d]) % x->dims[d]) * gs[d];
			double v = qd_tensor_get_f64(x, i);
			if (pass == 0) { sum[g] += v; cnt[g]++; }
			else if (pass == 1) { double m = sum[g] / cnt[g]; sq[g] += (v - m) * (v - m); }
			else qd_tensor_set_f64(y, i, (v - sum[g] / cnt[g]) / (sqrt(sq[g] / cnt[g]) + 1e-9));
		}
	free(sum); free(sq); free(cnt);
	return 0;
}

int qd_op_lrn(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->ndim < 3) return qd_ctx_fail(c, QD_ESHAPE, "input must have rank >= 3");
	const Onnx__NodeProto *np = c->n->proto;
	double alpha = qd_node_attr_float(np, "alpha", 1e-4f), beta = qd_node_attr_float(np, "beta", 0.75f);
	double bias = qd_node_attr_float(np, "bias", 1.0f);
	int64_t size = qd_node_attr_int(np, "size", 0);
	if (size <= 0) return qd_ctx_fail(c, QD_EINVAL, "size must be positive");
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t N = x->dims[0], C = x->dims[1], sp = qd_dims_count(x->ndim - 2, x->dims + 2);
	int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
	for (int64_t n = 0; n < N; n++)
		for (int64_t ch = 0; ch < C; ch++)
			for (int64_t s = 0; s < sp; s++) {
				double sq = 0;
				for (int64_t k = QD_MAX(0, ch - lo); k <= QD_MIN(C - 1, ch + hi); k++) {
					double v = qd_tensor_get_f64(x, (n * C + k) * sp + s);
					sq += v * v;
				}
				int64_t o = (n * C + ch) * sp + s;
				qd_tensor_set_f64(y, o, qd_tensor_get_f64(x, o) / pow(bias + alpha / size * sq, beta));
			}
	return 0;
}

/* ---- losses (inference of training graphs; ONNX reference semantics) ---- */
static bool has_attr(const Onnx__NodeProto *np, const char *name)
{
	return qd_node_attr(np, name) != NULL;
}

int qd_check_loss(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const char *r = qd_node_attr_string(n->proto, "reduction", "mean");
	if (strcmp(r, "none") && strcmp(r, "sum") && strcmp(r, "mean"))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': reduction '%s' not supported", n->name, r);
	return 0;
}

/* loss from log-probabilities lp [N, C, d...] (any float dtype via get/set) */
static int nll(struct qd_ctx *c, const struct qd_tensor *lp, const struct qd_tensor *tg, const struct qd_tensor *w,
	       int oi)
{
	const Onnx__NodeProto *np = c->n->proto;
	const char *red = qd_node_attr_string(np, "reduction", "mean");
	bool has_ign = has_attr(np, "ignore_index");
	int64_t ign = qd_node_attr_int(np, "ignore_index", 0);
	if (lp->ndim < 2 || tg->ndim != lp->ndim - 1 || tg->dims[0] != lp->dims[0])
		return qd_ctx_fail(c, QD_ESHAPE, "input must be [N, C, ...] and target [N, ...]");
	for (int i = 2; i < lp->ndim; i++)
		if (tg->dims[i - 1] != lp->dims[i]) return qd_ctx_fail(c, QD_ESHAPE, "target shape does not match the input");
	if (!qd_dtype_is_int(tg->dtype)) return qd_ctx_fail(c, QD_EINVAL, "target must be an integer tensor");
	int64_t N = lp->dims[0], C = lp->dims[1], D = qd_dims_count(lp->ndim - 2, lp->dims + 2);
	if (w && qd_tensor_count(w) != C) return qd_ctx_fail(c, QD_ESHAPE, "weight must have C values");
	double *loss = malloc((N * D + 1) * sizeof(double)), wsum = 0, lsum = 0;
	if (!loss) return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	for (int64_t nn = 0; nn < N; nn++)
		for (int64_t d = 0; d < D; d++) {
			int64_t t = qd_tensor_get_i64(tg, nn * D + d);
			double l = 0, wt = 0;
			if (!(has_ign && t == ign)) {
				if (t < 0 || t >= C) { free(loss); return qd_ctx_fail(c, QD_EINVAL, "target %lld out of range", (long long)t); }
				wt = w ? qd_tensor_get_f64(w, t) : 1.0;
				l = -qd_tensor_get_f64(lp, (nn * C + t) * D + d) * wt;
			}
			loss[nn * D + d] = l;
			wsum += wt;
			lsum += l;
		}
	struct qd_tensor *y;
	if (!strcmp(red, "none")) {
		if (!(y = qd_ctx_out(c, oi, lp->dtype, tg->ndim, tg->dims))) { free(loss); return -c->err->code; }
		for (int64_t i = 0; i < N * D; i++) qd_tensor_set_f64(y, i, loss[i]);
	} else {
		if (!(y = qd_ctx_out(c, oi, lp->dtype, 0, NULL))) { free(loss); return -c->err->code; }
		qd_tensor_set_f64(y, 0, !strcmp(red, "sum") ? lsum : lsum / wsum);
	}
	free(loss);
	return 0;
}

int qd_op_nll_loss(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *t = qd_ctx_in(c, 1);
	if (!x || !t) return -c->err->code;
	return nll(c, x, t, c->n_in > 2 ? c->in[2] : NULL, 0);
}

int qd_check_sce_loss(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	int rc = qd_check_loss(n, in_dt, out_dt, err);
	out_dt[0] = in_dt[0];
	if (n->n_out > 1) out_dt[1] = in_dt[0];
	return rc;
}

int qd_op_sce_loss(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *t = qd_ctx_in(c, 1);
	if (!x || !t) return -c->err->code;
	if (x->ndim < 2) return qd_ctx_fail(c, QD_ESHAPE, "scores must be [N, C, ...]");
	struct qd_tensor lp;
	if (qd_tensor_alloc_raw(&lp, NULL, x->dtype, x->ndim, x->dims)) return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	int64_t N = x->dims[0], C = x->dims[1], D = qd_dims_count(x->ndim - 2, x->dims + 2);
	for (int64_t nn = 0; nn < N; nn++)
		for (int64_t d = 0; d < D; d++) {
			double mx = -INFINITY, s = 0;
			for (int64_t k = 0; k < C; k++) mx = fmax(mx, qd_tensor_get_f64(x, (nn * C + k) * D + d));
			for (int64_t k = 0; k < C; k++) s += exp(qd_tensor_get_f64(x, (nn * C + k) * D + d) - mx);
			for (int64_t k = 0; k < C; k++)
				qd_tensor_set_f64(&lp, (nn * C + k) * D + d, qd_tensor_get_f64(x, (nn * C + k) * D + d) - mx - log(s));
		}
	int rc = nll(c, &lp, t, c->n_in > 2 ? c->in[2] : NULL, 0);
	if (!rc && qd_ctx_wants(c, 1)) {
		struct qd_tensor *o = qd_ctx_out(c, 1, x->dtype, x->ndim, x->dims);
		if (!o) rc = -c->err->code;
		else memcpy(o->data, lp.data, lp.nbytes);
	}
	qd_tensor_release(&lp);
	return rc;
}
