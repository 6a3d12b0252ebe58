/* engine/ops_reduce.c — Reduce* (axes as attribute or input by opset, keepdims,
 * noop_with_empty_axes), ArgMax/ArgMin, TopK and CumSum. Accumulation in double. */
#define _GNU_SOURCE
/* hot loops: let GCC vectorise with runtime alias checks (-O2 uses the "very cheap"
 * cost model that refuses them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno")
#endif
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "engine/engine_internal.h"

enum red_kind { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_LOGSUM, R_LOGSUMEXP, R_SUMSQ };

/* Opset from which the reduction takes axes as an input. */
static int axes_input_since(enum red_kind k)
{
	return k == R_SUM ? 13 : 18;
}

struct red_run {
	const struct qd_tensor *x;
	double *acc;
	const double *mx;   /* LogSumExp: per-output max */
	enum red_kind k;
	int pass;           /* 0: max pass for LogSumExp */
};

static void red_fn(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr, int64_t n)
{
	struct red_run *r = ud;
	/* "inputs": 0 = x (contiguous walk), 1 = acc (0-stride on reduced axes) */
	(void)oofs;
	double *acc = r->acc;
	int64_t xo = iofs[0], xs = istr[0], ao = iofs[1], as = istr[1];
	if (r->x->dtype == QD_DT_FLOAT && (r->k == R_SUM || r->k == R_MEAN) && r->pass) {
		const float *X = (const float *)r->x->data + xo;
		if (as == 0) {
			double s = 0;
			for (int64_t j = 0; j < n; j++) s += X[j * xs];
			acc[ao] += s;
		} else
			for (int64_t j = 0; j < n; j++) acc[ao + j * as] += X[j * xs];
		return;
	}
	for (int64_t j = 0; j < n; j++) {
		double v = qd_tensor_get_f64(r->x, xo + j * xs), *a = &acc[ao + j * as];
		if (!r->pass) { if (v > *a) *a = v; continue; }
		switch (r->k) {
		case R_SUM: case R_MEAN: case R_LOGSUM: *a += v; break;
		case R_MAX: if (v > *a || isnan(v)) *a = v; break;
		case R_MIN: if (v < *a || isnan(v)) *a = v; break;
		case R_PROD: *a *= v; break;
		case R_L1: *a += fabs(v); break;
		case R_L2: case R_SUMSQ: *a += v * v; break;
		case R_LOGSUMEXP: *a += exp(v - r->mx[ao + j * as]); break;
		}
	}
}

static int reduce(struct qd_ctx *c, enum red_kind k)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	const Onnx__NodeProto *np = c->n->proto;
	bool keep = qd_node_attr_int(np, "keepdims", 1) != 0;
	bool noop = qd_node_attr_int(np, "noop_with_empty_axes", 0) != 0;
	bool red[QD_MAX_DIMS] = {0};
	int nax = 0;
	if (c->n->opset >= axes_input_since(k)) {
		const struct qd_tensor *at = c->n_in > 1 ? c->in[1] : NULL;
		if (at) {
			for (int64_t i = 0; i < qd_tensor_count(at); i++) {
				int a = qd_axis(qd_tensor_get_i64(at, i), x->ndim);
				if (a < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
				red[a] = true;
				nax++;
			}
		}
	} else {
		const int64_t *av;
		long na = qd_node_attr_ints(np, "axes", &av);
		for (long i = 0; i < na; i++) {
			int a = qd_axis(av[i], x->ndim);
			if (a < 0) return qd_ctx_fail(c, QD_EINVAL, "axis %lld out of range", (long long)av[i]);
			red[a] = true;
			nax++;
		}
	}
	if (nax == 0) {
		if (noop) return qd_ctx_out_copy(c, 0, x, x->ndim, x->dims);
		for (int i = 0; i < x->ndim; i++) red[i] = true;
	}
	int64_t od[QD_MAX_DIMS], fd[QD_MAX_DIMS];
	int on = 0;
	for (int i = 0; i < x->ndim; i++) {
		fd[i] = red[i] ? 1 : x->dims[i];
		if (!red[i] || keep) od[on++] = fd[i];
	}
	int64_t osz = qd_dims_count(x->ndim, fd), cnt = 1;
	for (int i = 0; i < x->ndim; i++) if (red[i]) cnt *= x->dims[i];
	double *acc = malloc((osz ? osz : 1) * sizeof(double)), *mx = NULL;
	if (!acc) return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	double init = k == R_MAX ? -INFINITY : k == R_MIN ? INFINITY : k == R_PROD ? 1 : 0;
	for (int64_t i = 0; i < osz; i++) acc[i] = init;
	int64_t st[2][QD_MAX_DIMS];
	qd_dims_strides(x->ndim, x->dims, st[0]);
	qd_broadcast_strides(x->ndim, fd, x->ndim, x->dims, st[1]);
	struct red_run r = { x, acc, NULL, k, 1 };
	if (k == R_LOGSUMEXP) {
		mx = malloc((osz ? osz : 1) * sizeof(double));
		if (!mx) { free(acc); return qd_ctx_fail(c, QD_ENOMEM, "out of memory"); }
		for (int64_t i = 0; i < osz; i++) mx[i] = -INFINITY;
		struct red_run r0 = { x, mx, NULL, k, 0 };
		qd_broadcast_for(2, x->ndim, x->dims, st, red_fn, &r0);
		for (int64_t i = 0; i < osz; i++) if (isinf(mx[i])) mx[i] = 0;
		r.mx = mx;
	}
	qd_broadcast_for(2, x->ndim, x->dims, st, red_fn, &r);
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, on, od);
	if (!y) { free(acc); free(mx); return -c->err->code; }
	for (int64_t i = 0; i < osz; i++) {
		double v = acc[i];
		switch (k) {
		case R_MEAN: v = cnt ? v / cnt : NAN; break;
		case R_L2: v = sqrt(v); break;
		case R_LOGSUM: v = log(v); break;
		case R_LOGSUMEXP: v = mx[i] + log(v); break;
		default: break;
		}
		if (qd_dtype_is_int(x->dtype) && k == R_MEAN) v = trunc(v);
		qd_tensor_set_f64(y, i, v);
	}
	free(acc);
	free(mx);
	return 0;
}

int qd_op_reduce_sum(struct qd_ctx *c) { return reduce(c, R_SUM); }
int qd_op_reduce_mean(struct qd_ctx *c) { return reduce(c, R_MEAN); }
int qd_op_reduce_max(struct qd_ctx *c) { return reduce(c, R_MAX); }
int qd_op_reduce_min(struct qd_ctx *c) { return reduce(c, R_MIN); }
int qd_op_reduce_prod(struct qd_ctx *c) { return reduce(c, R_PROD); }
int qd_op_reduce_l1(struct qd_ctx *c) { return reduce(c, R_L1); }
int qd_op_reduce_l2(struct qd_ctx *c) { return reduce(c, R_L2); }
int qd_op_reduce_log_sum(struct qd_ctx *c) { return reduce(c, R_LOGSUM); }
int qd_op_reduce_log_sum_exp(struct qd_ctx *c) { return reduce(c, R_LOGSUMEXP); }
int qd_op_reduce_sum_square(struct qd_ctx *c) { return reduce(c, R_SUMSQ); }

/* ---- ArgMax / ArgMin ---- */
static int arg_reduce(struct qd_ctx *c, bool is_max)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	const Onnx__NodeProto *np = c->n->proto;
	int ax = qd_axis(qd_node_attr_int(np, "axis", 0), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	bool keep = qd_node_attr_int(np, "keepdims", 1) != 0;
	bool last = qd_node_attr_int(np, "select_last_index", 0) != 0;
	int64_t od[QD_MAX_DIMS];
	int on = 0;
	for (int i = 0; i < x->ndim; i++)
		if (i != ax) od[on++] = x->dims[i];
		else if (keep) od[on++] = 1;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_INT64, on, od);
	if (!y) return -c->err->code;
	int64_t outer = qd_dims_count(ax, x->dims), len = x->dims[ax];
	int64_t inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1);
	int64_t *Y = y->data;
	for (int64_t o = 0; o < outer; o++)
		for (int64_t in = 0; in < inner; in++) {
			int64_t best = 0;
			double bv = 0;
			for (int64_t i = 0; i < len; i++) {
				double v = qd_tensor_get_f64(x, (o * len + i) * inner + in);
				bool take = i == 0 || (is_max ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv));
				if (take) { bv = v; best = i; }
			}
			Y[o * inner + in] = best;
		}
	return 0;
}

int qd_op_argmax(struct qd_ctx *c) { return arg_reduce(c, true); }
int qd_op_argmin(struct qd_ctx *c) { return arg_reduce(c, false); }

/* ---- TopK ---- */
struct topk_item { double v; int64_t i; };
static int cmp_largest(const void *a, const void *b)
{
	const struct topk_item *x = a, *y = b;
	if (x->v != y->v) return x->v > y->v ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}
static int cmp_smallest(const void *a, const void *b)
{
	const struct topk_item *x = a, *y = b;
	if (x->v != y->v) return x->v < y->v ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

int qd_check_topk(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	out_dt[0] = in_dt[0];
	if (n->n_out > 1) out_dt[1] = QD_DT_INT64;
	return 0;
}

int qd_op_topk(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	const Onnx__NodeProto *np = c->n->proto;
	int64_t k;
	if (c->n->opset >= 10) {
		const struct qd_tensor *kt = qd_ctx_in(c, 1);
		if (!kt) return -c->err->code;
		if (qd_tensor_count(kt) != 1) return qd_ctx_fail(c, QD_EINVAL, "K must have one value");
		k = qd_tensor_get_i64(kt, 0);
	} else k = qd_node_attr_int(np, "k", -1);
	int ax = qd_axis(qd_node_attr_int(np, "axis", -1), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	bool largest = qd_node_attr_int(np, "largest", 1) != 0;
	int64_t len = x->dims[ax];
	if (k < 0 || k > len) return qd_ctx_fail(c, QD_EINVAL, "K=%lld out of range [0, %lld]", (long long)k, (long long)len);
	int64_t od[QD_MAX_DIMS];
	memcpy(od, x->dims, sizeof(od));
	od[ax] = k;
	struct qd_tensor *v = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	struct qd_tensor *ix = v && qd_ctx_wants(c, 1) ? qd_ctx_out(c, 1, QD_DT_INT64, x->ndim, od) : NULL;
	if (!v || (qd_ctx_wants(c, 1) && !ix)) return -c->err->code;
	int64_t outer = qd_dims_count(ax, x->dims), inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1);
	struct topk_item *it = malloc((len ? len : 1) * sizeof(*it));
	if (!it) return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	for (int64_t o = 0; o < outer; o++)
		for (int64_t in = 0; in < inner; in++) {
			for (int64_t i = 0; i < len; i++) { it[i].v = qd_tensor_get_f64(x, (o * len + i) * inner + in); it[i].i = i; }
			qsort(it, len, sizeof(*it), largest ? cmp_largest : cmp_smallest);
			for (int64_t i = 0; i < k; i++) {
				int64_t dst = (o * k + i) * inner + in;
				if (qd_dtype_is_int(x->dtype))
					qd_tensor_set_i64(v, dst, qd_tensor_get_i64(x, (o * len + it[i].i) * inner + in));
				else qd_tensor_set_f64(v, dst, it[i].v);
				if (ix) ((int64_t *)ix->data)[dst] = it[i].i;
			}
		}
	free(it);
	return 0;
}

/* ---- CumSum ---- */
int qd_op_cumsum(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *at = qd_ctx_in(c, 1);
	if (!x || !at) return -c->err->code;
	if (qd_tensor_count(at) != 1) return qd_ctx_fail(c, QD_EINVAL, "axis must be a scalar");
	int ax = qd_axis(qd_tensor_get_i64(at, 0), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	bool excl = qd_node_attr_int(c->n->proto, "exclusive", 0) != 0;
	bool rev = qd_node_attr_int(c->n->proto, "reverse", 0) != 0;
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t outer = qd_dims_count(ax, x->dims), len = x->dims[ax];
	int64_t inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1);
	bool isint = qd_dtype_is_int(x->dtype);
	for (int64_t o = 0; o < outer; o++)
		for (int64_t in = 0; in < inner; in++) {
			double s = 0;
			int64_t si = 0;
			for (int64_t j = 0; j < len; j++) {
				int64_t i = rev ? len - 1 - j : j, off = (o * len + i) * inner + in;
				if (isint) {
					int64_t v = qd_tensor_get_i64(x, off);
					if (!excl) si += v;
					qd_tensor_set_i64(y, off, si);
					if (excl) si += v;
				} else {
					double v = qd_tensor_get_f64(x, off);
					if (!excl) s += v;
					qd_tensor_set_f64(y, off, s);
					if (excl) s += v;
				}
			}
		}
	return 0;
}
