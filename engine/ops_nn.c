/* engine/ops_nn.c — pooling (Max/Average/Global, LpPool not included), normalisations
 * (BatchNormalization inference, LayerNormalization, InstanceNormalization), Softmax /
 * LogSoftmax / Hardmax with pre- and post-opset-13 axis semantics. */
/* hot loops: let GCC vectorise with runtime alias checks (-O2 uses the "very cheap"
 * cost model that refuses them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno", "fp-contract=off")
#endif
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include "engine/engine_internal.h"

/* ---- pooling ---- */
struct pool_geom {
	int nsp;
	int64_t N, C, in[3], k[3], out[3], stride[3], dil[3], pb[3], pe[3];
};

static int pool_attr_ints(const Onnx__NodeProto *np, const char *name, int64_t *v, int n, int64_t dflt)
{
	const int64_t *a;
	long k = qd_node_attr_ints(np, name, &a);
	for (int i = 0; i < n; i++) v[i] = dflt;
	if (k < 0) return 0;
	if (k != n) return -1;
	for (int i = 0; i < n; i++) v[i] = a[i];
	return 0;
}

int qd_check_pool(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const char *ap = qd_node_attr_string(n->proto, "auto_pad", "NOTSET");
	if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID"))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': auto_pad '%s' not supported", n->name, ap);
	if (qd_node_attr_int(n->proto, "storage_order", 0) != 0)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': storage_order=1 not supported", n->name);
	if (!qd_node_attr(n->proto, "kernel_shape"))
		return qd_err_set(err, QD_EMODEL, n->name, "node '%s': kernel_shape is required", n->name);
	if (n->n_out > 1) out_dt[1] = QD_DT_INT64;
	return 0;
}

static int pool_geom(struct qd_ctx *c, const struct qd_tensor *x, struct pool_geom *g)
{
	const Onnx__NodeProto *np = c->n->proto;
	if (x->ndim < 3 || x->ndim > 5) return qd_ctx_fail(c, QD_ESHAPE, "input must be 3-D to 5-D");
	int ns = x->ndim - 2;
	int64_t ks[3], st[3], dl[3], pd[6];
	if (pool_attr_ints(np, "kernel_shape", ks, ns, 1) || pool_attr_ints(np, "strides", st, ns, 1) ||
	    pool_attr_ints(np, "dilations", dl, ns, 1) || pool_attr_ints(np, "pads", pd, 2 * ns, 0))
		return qd_ctx_fail(c, QD_EMODEL, "kernel_shape/strides/dilations/pads have the wrong length");
	bool ceil_mode = qd_node_attr_int(np, "ceil_mode", 0) != 0;
	const char *ap = qd_node_attr_string(np, "auto_pad", "NOTSET");
	g->nsp = ns; g->N = x->dims[0]; g->C = x->dims[1];
	for (int i = 0; i < 3; i++) { g->in[i] = g->k[i] = g->out[i] = g->stride[i] = g->dil[i] = 1; g->pb[i] = g->pe[i] = 0; }
	for (int i = 0; i < ns; i++) {
		int s = 3 - ns + i;
		int64_t in = x->dims[2 + i], pb = pd[i], pe = pd[ns + i], out;
		if (ks[i] <= 0 || st[i] <= 0 || dl[i] <= 0) return qd_ctx_fail(c, QD_EMODEL, "kernel, strides and dilations must be positive");
		/* bounded so that no size below overflows (hostile attributes fail here) */
		const int64_t big = (int64_t)1 << 31;
		if (ks[i] > big || st[i] > big || dl[i] > big || pb < 0 || pe < 0 || pb > big || pe > big)
			return qd_ctx_fail(c, QD_EMODEL, "kernel_shape, strides, dilations or pads out of range "
					   "(0 to 2^31)");
		int64_t ek = (ks[i] - 1) * dl[i] + 1;
		if (!strcmp(ap, "VALID")) {
			pb = pe = 0;
			out = (in - ek) / st[i] + 1;
			if (ceil_mode) out = (in - ek + st[i] - 1) / st[i] + 1;
		} else if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
			out = (in + st[i] - 1) / st[i];
			int64_t tot = QD_MAX(0, (out - 1) * st[i] + ek - in);
			pb = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
			pe = tot - pb;
		} else {
			int64_t span = in + pb + pe - ek;
			if (span < 0) return qd_ctx_fail(c, QD_ESHAPE, "kernel larger than the padded input");
			out = ceil_mode ? (span + st[i] - 1) / st[i] + 1 : span / st[i] + 1;
			if (ceil_mode && (out - 1) * st[i] >= in + pb) out--;
		}
		if (out <= 0) return qd_ctx_fail(c, QD_ESHAPE, "output size is not positive");
		g->in[s] = in; g->k[s] = ks[i]; g->out[s] = out; g->stride[s] = st[i]; g->dil[s] = dl[i];
		g->pb[s] = pb; g->pe[s] = pe;
	}
	return 0;
}

/* MaxPool row of output: y[ow] = max over kernel columns of xr[ow * SW + kw - pb] for ow
 * in [lo, hi) where every column is inside the row (first column assigns when first). */
static QD_VEC_CLONES void max_pool_row(float *yr, const float *xr, int64_t KW, int64_t sw, int64_t pb,
				       int64_t lo, int64_t hi, bool first)
{
	for (int64_t kw = 0; kw < KW; kw++) {
		const float *xp = xr + kw - pb;
		if (first && kw == 0) {
			if (sw == 1) for (int64_t ow = lo; ow < hi; ow++) yr[ow] = xp[ow];
			else for (int64_t ow = lo; ow < hi; ow++) yr[ow] = xp[ow * sw];
		} else if (sw == 1) {
			for (int64_t ow = lo; ow < hi; ow++) yr[ow] = xp[ow] > yr[ow] ? xp[ow] : yr[ow];
		} else {
			for (int64_t ow = lo; ow < hi; ow++) yr[ow] = xp[ow * sw] > yr[ow] ? xp[ow * sw] : yr[ow];
		}
	}
}

/* 2-D MaxPool without dilation or indices: the general loop's result (taps in the same
 * order, the first valid tap taken as is, then v > best), interior columns vectorised. */
struct mp2d { const struct pool_geom *g; const float *X; float *Y; };

static void max_pool_2d_planes(void *ctx, int64_t nc_lo, int64_t nc_hi)
{
	const struct mp2d *M = ctx;
	const struct pool_geom *g = M->g;
	const float *X = M->X;
	float *Y = M->Y;
	int64_t IH = g->in[1], IW = g->in[2], OH = g->out[1], OW = g->out[2];
	int64_t KH = g->k[1], KW = g->k[2], sh = g->stride[1], sw = g->stride[2], pb = g->pb[2];
	/* interior: every column valid, 0 <= ow*sw - pb and ow*sw - pb + KW - 1 < IW */
	int64_t lo = (pb + sw - 1) / sw, hi = IW - KW + pb < 0 ? 0 : (IW - KW + pb) / sw + 1;
	if (hi > OW) hi = OW;
	if (lo > OW) lo = OW;
	if (hi < lo) hi = lo;
	for (int64_t nc = nc_lo; nc < nc_hi; nc++)
		for (int64_t oh = 0; oh < OH; oh++) {
			const float *xc = X + nc * IH * IW;
			float *yr = Y + (nc * OH + oh) * OW;
			int64_t h0 = oh * sh - g->pb[1];
			bool first = true;
			for (int64_t kh = 0; kh < KH; kh++) {
				int64_t ih = h0 + kh;
				if (ih < 0 || ih >= IH) continue;
				max_pool_row(yr, xc + ih * IW, KW, sw, pb, lo, hi, first);
				first = false;
			}
			for (int64_t ow = 0; ow < OW; ow++) {   /* border columns, in tap order */
				if (ow == lo && hi > lo) { ow = hi - 1; continue; }
				float best = -INFINITY;
				bool any = false;
				for (int64_t kh = 0; kh < KH; kh++) {
					int64_t ih = h0 + kh;
					if (ih < 0 || ih >= IH) continue;
					for (int64_t kw = 0; kw < KW; kw++) {
						int64_t iw = ow * sw - pb + kw;
						if (iw < 0 || iw >= IW) continue;
						float v = xc[ih * IW + iw];
						if (v > best || !any) best = v;
						any = true;
					}
				}
				yr[ow] = best;
			}
			if (first)   /* no valid row: -inf as the general loop */
				for (int64_t ow = lo; ow < hi; ow++) yr[ow] = -INFINITY;
		}
}

/* planes split over the engine's threads */
static void max_pool_2d(const struct pool_geom *g, const float *X, float *Y)
{
	struct mp2d M = { g, X, Y };
	int64_t osz = g->out[1] * g->out[2];
	qd_parallel_for(g->N * g->C, QD_MAX((int64_t)1, (1 << 14) / QD_MAX(osz, (int64_t)1)), max_pool_2d_planes, &M);
}

/* The general pooling loop over channel planes [lo, hi_nc) (planes are split over
 * threads; each output computed as in one call). */
struct pool_run {
	const struct pool_geom *g;
	const float *X;
	float *Y;
	int64_t *ind, isz, osz;
	bool is_max, cip;
};

static void pool_planes(void *ctx, int64_t lo, int64_t hi_nc)
{
	const struct pool_run *P = ctx;
	const struct pool_geom g = *P->g;
	const float *X = P->X;
	float *Y = P->Y;
	int64_t *ind = P->ind, isz = P->isz, osz = P->osz;
	bool is_max = P->is_max, cip = P->cip;
	for (int64_t nc = lo; nc < hi_nc; nc++) {
		const float *xc = X + nc * isz;
		for (int64_t od0 = 0; od0 < g.out[0]; od0++)
			for (int64_t oh = 0; oh < g.out[1]; oh++)
				for (int64_t ow = 0; ow < g.out[2]; ow++) {
					int64_t d0 = od0 * g.stride[0] - g.pb[0], h0 = oh * g.stride[1] - g.pb[1], w0 = ow * g.stride[2] - g.pb[2];
					float best = -INFINITY;
					int64_t bi = -1, cnt = 0;
					double sum = 0;
					for (int64_t kd = 0; kd < g.k[0]; kd++) {
						int64_t id = d0 + kd * g.dil[0];
						if (id < 0 || id >= g.in[0]) continue;
						for (int64_t kh = 0; kh < g.k[1]; kh++) {
							int64_t ih = h0 + kh * g.dil[1];
							if (ih < 0 || ih >= g.in[1]) continue;
							for (int64_t kw = 0; kw < g.k[2]; kw++) {
								int64_t iw = w0 + kw * g.dil[2];
								if (iw < 0 || iw >= g.in[2]) continue;
								int64_t k = (id * g.in[1] + ih) * g.in[2] + iw;
								float v = xc[k];
								if (is_max) { if (v > best || bi < 0) { best = v; bi = k; } }
								else { sum += v; cnt++; }
							}
						}
					}
					int64_t o = nc * osz + (od0 * g.out[1] + oh) * g.out[2] + ow;
					if (is_max) {
						Y[o] = best;
						if (ind) ind[o] = nc * isz + bi;
					} else {
						if (cip) {
							/* window clipped to the padded extent */
							cnt = 1;
							for (int i = 0; i < 3; i++) {
								int64_t s = (i == 0 ? d0 : i == 1 ? h0 : w0);
								int64_t e = s + (g.k[i] - 1) * g.dil[i] + 1;
								int64_t hi = g.in[i] + g.pe[i];
								if (e > hi) e = hi;
								cnt *= (e - s + g.dil[i] - 1) / g.dil[i];
							}
						}
						Y[o] = cnt ? (float)(sum / cnt) : 0.0f;
					}
				}
	}
}

static int pool(struct qd_ctx *c, bool is_max)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->dtype != QD_DT_FLOAT) return qd_ctx_fail(c, QD_EUNSUPPORTED, "only float32 is supported");
	struct pool_geom g = {0};
	int rc = pool_geom(c, x, &g);
	if (rc) return rc;
	int64_t od[5] = { g.N, g.C };
	for (int i = 0; i < g.nsp; i++) od[2 + i] = g.out[3 - g.nsp + i];
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, 2 + g.nsp, od);
	if (!y) return -c->err->code;
	int64_t *ind = NULL;
	if (is_max && qd_ctx_wants(c, 1)) {
		struct qd_tensor *it = qd_ctx_out(c, 1, QD_DT_INT64, 2 + g.nsp, od);
		if (!it) return -c->err->code;
		ind = it->data;
	}
	bool cip = qd_node_attr_int(c->n->proto, "count_include_pad", 0) != 0;
	int64_t isz = g.in[0] * g.in[1] * g.in[2], osz = g.out[0] * g.out[1] * g.out[2];
	const float *X = x->data;
	float *Y = y->data;
	if (is_max && !ind && g.k[0] == 1 && g.in[0] == 1 && g.out[0] == 1 && g.dil[1] == 1 && g.dil[2] == 1) {
		max_pool_2d(&g, X, Y);
		return 0;
	}
	struct pool_run P = { &g, X, Y, ind, isz, osz, is_max, cip };
	qd_parallel_for(g.N * g.C, QD_MAX((int64_t)1, (1 << 14) / QD_MAX(osz, (int64_t)1)), pool_planes, &P);
	return 0;
}

int qd_op_max_pool(struct qd_ctx *c) { return pool(c, true); }
int qd_op_average_pool(struct qd_ctx *c) { return pool(c, false); }

/* Max or mean of n floats, in 8 lanes so it vectorises (the mean sums in double). */
static QD_VEC_CLONES float global_pool_row_f32(const float *p, int64_t n, bool is_max)
{
	int64_t k = 0;
	if (is_max) {
		float l[8];
		for (int j = 0; j < 8; j++) l[j] = -INFINITY;
		for (; k + 8 <= n; k += 8)
			for (int j = 0; j < 8; j++) l[j] = p[k + j] > l[j] ? p[k + j] : l[j];
		for (; k < n; k++) l[0] = p[k] > l[0] ? p[k] : l[0];
		float r = l[0];
		for (int j = 1; j < 8; j++) r = l[j] > r ? l[j] : r;
		return r;
	}
	double l[8] = { 0 }, s = 0;
	for (; k + 8 <= n; k += 8)
		for (int j = 0; j < 8; j++) l[j] += p[k + j];
	for (; k < n; k++) l[0] += p[k];
	for (int j = 0; j < 8; j++) s += l[j];
	return (float)(s / (double)n);
}

static int global_pool(struct qd_ctx *c, bool is_max)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->ndim < 2) return qd_ctx_fail(c, QD_ESHAPE, "input must have rank >= 2");
	int64_t od[QD_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++) od[i] = i < 2 ? x->dims[i] : 1;
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, od);
	if (!y) return -c->err->code;
	int64_t nc = x->dims[0] * x->dims[1], sp = qd_tensor_count(x) / (nc ? nc : 1);
	for (int64_t i = 0; i < nc; i++) {
		if (x->dtype == QD_DT_FLOAT) {
			const float *p = (const float *)x->data + i * sp;
			float r;
			r = global_pool_row_f32(p, sp, is_max);
			((float *)y->data)[i] = r;
		} else {
			double r = is_max ? -INFINITY : 0;
			for (int64_t k = 0; k < sp; k++) {
				double v = qd_tensor_get_f64(x, i * sp + k);
				r = is_max ? (v > r ? v : r) : r + v;
			}
			qd_tensor_set_f64(y, i, is_max ? r : r / sp);
		}
	}
	return 0;
}

int qd_op_global_average_pool(struct qd_ctx *c) { return global_pool(c, false); }
int qd_op_global_max_pool(struct qd_ctx *c) { return global_pool(c, true); }

/* ---- normalisation ---- */
int qd_check_batch_norm(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	if (qd_node_attr_int(n->proto, "spatial", 1) == 0)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': spatial=0 not supported", n->name);
	if (qd_node_attr_int(n->proto, "training_mode", 0))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': training_mode=1 not supported", n->name);
	if (n->opset < 7 && qd_node_attr_int(n->proto, "is_test", 0) == 0 && n->n_out > 1)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': training outputs not supported", n->name);
	for (int i = 1; i < n->n_out; i++)
		if (n->proto->output[i] && *n->proto->output[i])
			return qd_err_set(err, QD_EUNSUPPORTED, n->name,
					  "node '%s': training outputs (running mean/var) not supported", n->name);
	return 0;
}

int qd_op_batch_norm(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *s = qd_ctx_in(c, 1), *b = qd_ctx_in(c, 2),
		*m = qd_ctx_in(c, 3), *v = qd_ctx_in(c, 4);
	if (!x || !s || !b || !m || !v) return -c->err->code;
	float eps = qd_node_attr_float(c->n->proto, "epsilon", 1e-5f);
	if (x->ndim < 2) return qd_ctx_fail(c, QD_ESHAPE, "input must have rank >= 2");
	int64_t C = x->dims[1];
	if (qd_tensor_count(s) != C || qd_tensor_count(b) != C || qd_tensor_count(m) != C || qd_tensor_count(v) != C)
		return qd_ctx_fail(c, QD_ESHAPE, "scale/bias/mean/var must have %lld values", (long long)C);
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t N = x->dims[0], sp = qd_dims_count(x->ndim - 2, x->dims + 2);
	for (int64_t ch = 0; ch < C; ch++) {
		double sc = qd_tensor_get_f64(s, ch) / sqrt(qd_tensor_get_f64(v, ch) + (double)eps);
		double sh = qd_tensor_get_f64(b, ch) - qd_tensor_get_f64(m, ch) * sc;
		for (int64_t n = 0; n < N; n++) {
			int64_t o = (n * C + ch) * sp;
			if (x->dtype == QD_DT_FLOAT) {
				const float *X = (const float *)x->data + o;
				float *Y = (float *)y->data + o;
				/* float32 parameters in ONNX Runtime's order (1/sqrt(var+eps), times
				 * scale; bias - mean*that), so the outputs are ORT's bit for bit: a
				 * last-bit difference here moves the codes of a DynamicQuantizeLinear
				 * that follows (det's first BatchNormalization did) */
				float fs = (1.0f / sqrtf((float)qd_tensor_get_f64(v, ch) + eps)) * (float)qd_tensor_get_f64(s, ch);
				float fh = (float)qd_tensor_get_f64(b, ch) - (float)qd_tensor_get_f64(m, ch) * fs;
				for (int64_t i = 0; i < sp; i++) Y[i] = X[i] * fs + fh;
			} else
				for (int64_t i = 0; i < sp; i++)
					qd_tensor_set_f64(y, o + i, qd_tensor_get_f64(x, o + i) * sc + sh);
		}
	}
	return 0;
}

int qd_op_instance_norm(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *s = qd_ctx_in(c, 1), *b = qd_ctx_in(c, 2);
	if (!x || !s || !b) return -c->err->code;
	double eps = qd_node_attr_float(c->n->proto, "epsilon", 1e-5f);
	if (x->ndim < 3) return qd_ctx_fail(c, QD_ESHAPE, "input must have rank >= 3");
	int64_t N = x->dims[0], C = x->dims[1], sp = qd_dims_count(x->ndim - 2, x->dims + 2);
	if (qd_tensor_count(s) != C || qd_tensor_count(b) != C)
		return qd_ctx_fail(c, QD_ESHAPE, "scale/bias must have %lld values", (long long)C);
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	for (int64_t n = 0; n < N; n++)
		for (int64_t ch = 0; ch < C; ch++) {
			int64_t o = (n * C + ch) * sp;
			double mu = 0, var = 0;
			for (int64_t i = 0; i < sp; i++) mu += qd_tensor_get_f64(x, o + i);
			mu /= sp;
			for (int64_t i = 0; i < sp; i++) { double d = qd_tensor_get_f64(x, o + i) - mu; var += d * d; }
			var /= sp;
			double sc = qd_tensor_get_f64(s, ch) / sqrt(var + eps), sh = qd_tensor_get_f64(b, ch);
			for (int64_t i = 0; i < sp; i++)
				qd_tensor_set_f64(y, o + i, (qd_tensor_get_f64(x, o + i) - mu) * sc + sh);
		}
	return 0;
}

/* LpNormalization: x / ||x||_p along one axis (p 1 or 2); a zero norm gives zeros, as
 * ONNX Runtime's kernel does. */
int qd_op_lp_norm(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	int ax = qd_axis(qd_node_attr_int(c->n->proto, "axis", -1), x->ndim);
	int64_t p = qd_node_attr_int(c->n->proto, "p", 2);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	if (p != 1 && p != 2) return qd_ctx_fail(c, QD_EUNSUPPORTED, "p must be 1 or 2, not %lld", (long long)p);
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t outer = qd_dims_count(ax, x->dims), m = x->dims[ax];
	int64_t inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1);
	for (int64_t o = 0; o < outer; o++)
		for (int64_t i = 0; i < inner; i++) {
			int64_t base = o * m * inner + i;
			double s = 0;
			for (int64_t k = 0; k < m; k++) {
				double v = qd_tensor_get_f64(x, base + k * inner);
				s += p == 2 ? v * v : fabs(v);
			}
			double norm = p == 2 ? sqrt(s) : s;
			for (int64_t k = 0; k < m; k++)
				qd_tensor_set_f64(y, base + k * inner, norm != 0 ? qd_tensor_get_f64(x, base + k * inner) / norm : 0.0);
		}
	return 0;
}

int qd_check_layer_norm(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	int64_t st = qd_node_attr_int(n->proto, "stash_type", 1);
	if (st != 1)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': stash_type %lld not supported",
				  n->name, (long long)st);
	out_dt[0] = in_dt[0];
	if (n->n_out > 1) out_dt[1] = QD_DT_FLOAT;
	if (n->n_out > 2) out_dt[2] = QD_DT_FLOAT;
	return 0;
}

/* LayerNormalization (opset 17): normalise over axes [axis, rank). Mean / InvStdDev
 * outputs keep the leading dims and have 1s for the normalised ones.
 *
 * One float row of n values. ONNX Runtime 1.30 on x86-64 with AVX2 + FMA runs MLAS's AVX2
 * kernel for rows of >= 8 values; qd_layer_norm_row_f32 gives its values bit for bit
 * (checked against ORT on rows of 8..257 values, every tail length):
 *   mean: the values summed in double, 4 lanes over blocks of 4, lanes combined as
 *         (l0 + l2) + (l1 + l3), the n % 4 tail added in order; mean = (float)(sum / n)
 *   var:  d = x - mean in float, d * d accumulated with FMA in 8 float lanes over blocks
 *         of 8, folded as (a[k] + a[k + 4]), then (q0 + q2) + (q1 + q3); of the n % 8
 *         tail the first 4 (when there are 4) are added in order as separately rounded
 *         products, the rest with FMA
 *   inv = 1 / sqrtf(var / n + eps) in float;  y = fmaf((x - mean) * inv, S, B)
 * The FMA is hardware where the CPU has AVX2 and FMA (a target("avx2,fma") copy chosen at
 * run time); elsewhere glibc's fmaf, which is correctly rounded, so the values do not
 * depend on the CPU. ORT itself uses another kernel on a CPU without AVX2/FMA (and for
 * rows under 8 values, whose arithmetic is not known): we give the AVX2 values there, and
 * for rows under 8 the _ref computation. The file is compiled with fp-contract=off so the
 * separately rounded steps stay separate in the FMA copy.
 * qd_layer_norm_row_f32_ref is the plain computation: mean and variance in double, in
 * order, two passes; y = (x - mean) * inv * S + B in float. Both return the row's mean and
 * inverse standard deviation (the Mean / InvStdDev outputs). S / B: ns / nb values (1 =
 * broadcast), B may be NULL. */
static inline __attribute__((always_inline)) void
ln_row_mlas(const float *X, float *Y, int64_t n, const float *S, int64_t ns, const float *B, int64_t nb,
	    float eps, float *mean_out, float *inv_out)
{
	double l[4] = { 0 };
	int64_t i = 0;
	for (; i + 4 <= n; i += 4)
		for (int k = 0; k < 4; k++) l[k] += (double)X[i + k];
	double ds = (l[0] + l[2]) + (l[1] + l[3]);
	for (; i < n; i++) ds += (double)X[i];
	float mean = (float)(ds / (double)n);
	float a[8] = { 0 };
	for (i = 0; i + 8 <= n; i += 8)
		for (int k = 0; k < 8; k++) {
			float d = X[i + k] - mean;
			a[k] = fmaf(d, d, a[k]);
		}
	float q[4];
	for (int k = 0; k < 4; k++) q[k] = a[k] + a[k + 4];
	float var = (q[0] + q[2]) + (q[1] + q[3]);
	if (n - i >= 4)
		for (int64_t e = i + 4; i < e; i++) {
			float d = X[i] - mean, p = d * d;
			var = var + p;
		}
	for (; i < n; i++) {
		float d = X[i] - mean;
		var = fmaf(d, d, var);
	}
	float inv = 1.0f / sqrtf(var / (float)n + eps);
	if (ns == n && B && nb == n)
		for (i = 0; i < n; i++) Y[i] = fmaf((X[i] - mean) * inv, S[i], B[i]);
	else
		for (i = 0; i < n; i++)
			Y[i] = fmaf((X[i] - mean) * inv, S[ns == 1 ? 0 : i], B ? B[nb == 1 ? 0 : i] : 0.0f);
	*mean_out = mean;
	*inv_out = inv;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LN_HAVE_FMA_COPY 1
static __attribute__((target("avx2,fma"))) void
ln_row_mlas_fma(const float *X, float *Y, int64_t n, const float *S, int64_t ns, const float *B, int64_t nb,
		float eps, float *mean, float *inv)
{
	ln_row_mlas(X, Y, n, S, ns, B, nb, eps, mean, inv);
}
#endif

static void ln_row_mlas_plain(const float *X, float *Y, int64_t n, const float *S, int64_t ns, const float *B,
			      int64_t nb, float eps, float *mean, float *inv)
{
	ln_row_mlas(X, Y, n, S, ns, B, nb, eps, mean, inv);
}

void qd_layer_norm_row_f32(const float *X, float *Y, int64_t n, const float *S, int64_t ns,
			   const float *B, int64_t nb, float eps, float *mean, float *inv)
{
	if (n < 8) {
		qd_layer_norm_row_f32_ref(X, Y, n, S, ns, B, nb, eps, mean, inv);
		return;
	}
#ifdef LN_HAVE_FMA_COPY
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		ln_row_mlas_fma(X, Y, n, S, ns, B, nb, eps, mean, inv);
		return;
	}
#endif
	ln_row_mlas_plain(X, Y, n, S, ns, B, nb, eps, mean, inv);
}

void qd_layer_norm_row_f32_ref(const float *X, float *Y, int64_t n, const float *S, int64_t ns,
			       const float *B, int64_t nb, float eps, float *mean, float *inv)
{
	double m = 0, v = 0;
	for (int64_t i = 0; i < n; i++) m += X[i];
	m /= n;
	for (int64_t i = 0; i < n; i++) { double d = X[i] - m; v += d * d; }
	v /= n;
	float fi = (float)(1.0 / sqrt(v + (double)eps)), fm = (float)m;
	for (int64_t i = 0; i < n; i++) Y[i] = (X[i] - fm) * fi * S[ns == 1 ? 0 : i] + (B ? B[nb == 1 ? 0 : i] : 0.0f);
	*mean = fm;
	*inv = fi;
}

/* LayerNormalization rows [lo, hi) (rows are split over threads; each row is computed
 * as in one call, so results do not depend on threads). */
struct ln_rows {
	const struct qd_tensor *x, *s, *b;
	struct qd_tensor *y, *mt, *it;
	int64_t inner, ns, nb;
	float eps;
	bool f32;
};

static void ln_rows(void *ctx, int64_t lo, int64_t hi)
{
	const struct ln_rows *L = ctx;
	const struct qd_tensor *x = L->x, *s = L->s, *b = L->b;
	struct qd_tensor *y = L->y, *mt = L->mt, *it = L->it;
	int64_t inner = L->inner, ns = L->ns, nb = L->nb;
	float eps = L->eps;
	bool f32 = L->f32;
	for (int64_t r = lo; r < hi; r++) {
		int64_t o = r * inner;
		float fm, fi;
		if (f32) {
			qd_layer_norm_row_f32((const float *)x->data + o, (float *)y->data + o, inner, s->data, ns,
					      b ? b->data : NULL, nb, eps, &fm, &fi);
		} else {
			double mu = 0, var = 0;
			for (int64_t i = 0; i < inner; i++) mu += qd_tensor_get_f64(x, o + i);
			mu /= inner;
			for (int64_t i = 0; i < inner; i++) { double d = qd_tensor_get_f64(x, o + i) - mu; var += d * d; }
			var /= inner;
			double inv = 1.0 / sqrt(var + (double)eps);
			for (int64_t i = 0; i < inner; i++)
				qd_tensor_set_f64(y, o + i, (qd_tensor_get_f64(x, o + i) - mu) * inv *
					qd_tensor_get_f64(s, ns == 1 ? 0 : i) + (b ? qd_tensor_get_f64(b, nb == 1 ? 0 : i) : 0));
			fm = (float)mu;
			fi = (float)inv;
		}
		if (mt) ((float *)mt->data)[r] = fm;
		if (it) ((float *)it->data)[r] = fi;
	}
}

int qd_op_layer_norm(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *s = qd_ctx_in(c, 1);
	const struct qd_tensor *b = c->n_in > 2 ? c->in[2] : NULL;
	if (!x || !s) return -c->err->code;
	/* a LayerNormalization fused from its decomposed form (fuse_float.c) carries epsilon
	 * in a QD_EPI_LAYERNORM step and normalises the last axis; its proto is another op's */
	bool fused = c->n->epi.n == 1 && c->n->epi.s[0].kind == QD_EPI_LAYERNORM;
	int ax = qd_axis(fused ? -1 : qd_node_attr_int(c->n->proto, "axis", -1), x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis out of range");
	float eps = fused ? c->n->epi.s[0].a : qd_node_attr_float(c->n->proto, "epsilon", 1e-5f);
	int64_t outer = qd_dims_count(ax, x->dims), inner = qd_dims_count(x->ndim - ax, x->dims + ax);
	int64_t ns = qd_tensor_count(s), nb = b ? qd_tensor_count(b) : 0;
	if ((ns != inner && ns != 1) || (b && nb != inner && nb != 1))
		return qd_ctx_fail(c, QD_ESHAPE, "scale/bias must cover the %lld normalised values", (long long)inner);
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t md[QD_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++) md[i] = i < ax ? x->dims[i] : 1;
	struct qd_tensor *mt = NULL, *it = NULL;
	if (qd_ctx_wants(c, 1) && !(mt = qd_ctx_out(c, 1, QD_DT_FLOAT, x->ndim, md))) return -c->err->code;
	if (qd_ctx_wants(c, 2) && !(it = qd_ctx_out(c, 2, QD_DT_FLOAT, x->ndim, md))) return -c->err->code;
	struct ln_rows L = { x, s, b, y, mt, it, inner, ns, nb, eps,
			     x->dtype == QD_DT_FLOAT && s->dtype == QD_DT_FLOAT && (!b || b->dtype == QD_DT_FLOAT) };
	qd_parallel_for(outer, QD_MAX((int64_t)1, (1 << 14) / QD_MAX(inner, (int64_t)1)), ln_rows, &L);
	return 0;
}

/* ---- softmax family ---- */
enum sm_kind { SM_SOFT, SM_LOG, SM_HARD };

/* One Softmax (log_sm: LogSoftmax) row of n floats. The optimised one takes the max and
 * the double sum in 8 lanes so the loops vectorise; the _ref twin goes in order. NaN in the
 * row: a lane max ignores it as the in-order max does, and exp spreads it. */
QD_VEC_CLONES_WIDE void qd_softmax_row_f32(const float *X, float *Y, int64_t n, bool log_sm)
{
	float lm[8];
	double ls[8] = { 0 }, s = 0;
	for (int k = 0; k < 8; k++) lm[k] = -INFINITY;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int k = 0; k < 8; k++) lm[k] = X[i + k] > lm[k] ? X[i + k] : lm[k];
	for (; i < n; i++) lm[0] = X[i] > lm[0] ? X[i] : lm[0];
	float mx = lm[0];
	for (int k = 1; k < 8; k++) mx = lm[k] > mx ? lm[k] : mx;
	for (i = 0; i < n; i++) Y[i] = qd_expf(X[i] - mx);
	for (i = 0; i + 8 <= n; i += 8)
		for (int k = 0; k < 8; k++) ls[k] += Y[i + k];
	for (; i < n; i++) ls[0] += Y[i];
	for (int k = 0; k < 8; k++) s += ls[k];
	if (!log_sm) { float inv = (float)(1.0 / s); for (i = 0; i < n; i++) Y[i] *= inv; }
	else { float l = (float)log(s); for (i = 0; i < n; i++) Y[i] = X[i] - mx - l; }
}

void qd_softmax_row_f32_ref(const float *X, float *Y, int64_t n, bool log_sm)
{
	float mx = -INFINITY;
	double s = 0;
	for (int64_t i = 0; i < n; i++) if (X[i] > mx) mx = X[i];
	for (int64_t i = 0; i < n; i++) Y[i] = qd_expf(X[i] - mx);
	for (int64_t i = 0; i < n; i++) s += Y[i];
	if (!log_sm) { float inv = (float)(1.0 / s); for (int64_t i = 0; i < n; i++) Y[i] *= inv; }
	else { float l = (float)log(s); for (int64_t i = 0; i < n; i++) Y[i] = X[i] - mx - l; }
}

/* Before opset 13: input coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])] (default
 * axis 1). From 13: along one axis (default -1). */
/* Softmax lanes [lo, hi) of outer * inner (split over threads; each lane computed as in
 * one call, so results do not depend on threads). */
struct sm_lanes { const struct qd_tensor *x; struct qd_tensor *y; enum sm_kind kind; int64_t len, inner; };

static void sm_lanes(void *ctx, int64_t lo, int64_t hi)
{
	const struct sm_lanes *S = ctx;
	const struct qd_tensor *x = S->x;
	struct qd_tensor *y = S->y;
	enum sm_kind kind = S->kind;
	int64_t len = S->len, inner = S->inner;
	for (int64_t lane = lo; lane < hi; lane++) {
		int64_t o = lane / inner, in = lane % inner, base = o * len * inner + in;
		if (x->dtype == QD_DT_FLOAT && inner == 1) {
			const float *X = (const float *)x->data + base;
			float *Y = (float *)y->data + base;
			if (kind == SM_HARD) {
				float mx = -INFINITY;
				int64_t am = 0;
				for (int64_t i = 0; i < len; i++) if (X[i] > mx) { mx = X[i]; am = i; }
				for (int64_t i = 0; i < len; i++) Y[i] = i == am;
				continue;
			}
			qd_softmax_row_f32(X, Y, len, kind == SM_LOG);
			continue;
		}
		double mx = -INFINITY, s = 0;
		int64_t am = 0;
		for (int64_t i = 0; i < len; i++) {
			double v = qd_tensor_get_f64(x, base + i * inner);
			if (v > mx) { mx = v; am = i; }
		}
		for (int64_t i = 0; i < len; i++) s += exp(qd_tensor_get_f64(x, base + i * inner) - mx);
		for (int64_t i = 0; i < len; i++) {
			double v = qd_tensor_get_f64(x, base + i * inner), r;
			if (kind == SM_HARD) r = i == am;
			else if (kind == SM_SOFT) r = exp(v - mx) / s;
			else r = v - mx - log(s);
			qd_tensor_set_f64(y, base + i * inner, r);
		}
	}
}

static int softmax(struct qd_ctx *c, enum sm_kind kind)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	bool v13 = c->n->opset >= 13;
	int64_t a = qd_node_attr_int(c->n->proto, "axis", v13 ? -1 : 1);
	int ax = x->ndim == 0 ? 0 : qd_axis(a, x->ndim);
	if (ax < 0) return qd_ctx_fail(c, QD_EINVAL, "axis %lld out of range for rank %d", (long long)a, x->ndim);
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y) return -c->err->code;
	int64_t outer, len, inner;
	if (v13) {
		outer = qd_dims_count(ax, x->dims);
		len = x->ndim ? x->dims[ax] : 1;
		inner = qd_dims_count(x->ndim - ax - 1, x->dims + ax + 1);
	} else {
		outer = qd_dims_count(ax, x->dims);
		len = qd_dims_count(x->ndim - ax, x->dims + ax);
		inner = 1;
	}
	if (len == 0 || outer == 0 || inner == 0) return 0;
	struct sm_lanes S = { x, y, kind, len, inner };
	qd_parallel_for(outer * inner, QD_MAX((int64_t)1, (1 << 13) / len), sm_lanes, &S);
	return 0;
}

int qd_op_softmax(struct qd_ctx *c) { return softmax(c, SM_SOFT); }
int qd_op_log_softmax(struct qd_ctx *c) { return softmax(c, SM_LOG); }
int qd_op_hardmax(struct qd_ctx *c) { return softmax(c, SM_HARD); }
