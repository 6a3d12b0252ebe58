/* engine/ops_resize.c — Resize (opset 10, 11-18) and Upsample (7-9): nearest (all four
 * nearest modes, and the pre-11 "simple" rule) and N-linear interpolation with the
 * half_pixel, pytorch_half_pixel, align_corners and asymmetric coordinate modes.
 * Cubic, tf_crop_and_resize and antialias fail at load. */
/* hot loops: let GCC vectorise with runtime alias checks (-O2 uses the "very cheap"
 * cost model that refuses them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno")
#endif
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include "engine/engine_internal.h"

enum coord { C_HALF, C_PYTORCH, C_ALIGN, C_ASYM };
enum nearest { N_RPF, N_RPC, N_FLOOR, N_CEIL, N_SIMPLE };

struct rs_par { bool linear; enum coord cm; enum nearest nm; };

static int parse_par(const Onnx__NodeProto *np, int64_t opset, bool upsample, struct rs_par *p,
		     char *why, size_t wl)
{
	const char *mode = qd_node_attr_string(np, "mode", "nearest");
	if (!strcmp(mode, "nearest")) p->linear = false;
	else if (!strcmp(mode, "linear") || (upsample && !strcmp(mode, "bilinear"))) p->linear = true;
	else { snprintf(why, wl, "mode '%s' not supported", mode); return -1; }
	if (upsample || opset < 11) {
		p->cm = C_ASYM;
		p->nm = N_SIMPLE;
		return 0;
	}
	const char *cm = qd_node_attr_string(np, "coordinate_transformation_mode", "half_pixel");
	if (!strcmp(cm, "half_pixel")) p->cm = C_HALF;
	else if (!strcmp(cm, "pytorch_half_pixel")) p->cm = C_PYTORCH;
	else if (!strcmp(cm, "align_corners")) p->cm = C_ALIGN;
	else if (!strcmp(cm, "asymmetric")) p->cm = C_ASYM;
	else { snprintf(why, wl, "coordinate_transformation_mode '%s' not supported", cm); return -1; }
	const char *nm = qd_node_attr_string(np, "nearest_mode", "round_prefer_floor");
	if (!strcmp(nm, "round_prefer_floor")) p->nm = N_RPF;
	else if (!strcmp(nm, "round_prefer_ceil")) p->nm = N_RPC;
	else if (!strcmp(nm, "floor")) p->nm = N_FLOOR;
	else if (!strcmp(nm, "ceil")) p->nm = N_CEIL;
	else { snprintf(why, wl, "nearest_mode '%s' not supported", nm); return -1; }
	if (qd_node_attr_int(np, "antialias", 0)) { snprintf(why, wl, "antialias=1 not supported"); return -1; }
	if (qd_node_attr(np, "axes")) { snprintf(why, wl, "axes attribute not supported"); return -1; }
	const char *kar = qd_node_attr_string(np, "keep_aspect_ratio_policy", "stretch");
	if (strcmp(kar, "stretch")) { snprintf(why, wl, "keep_aspect_ratio_policy '%s' not supported", kar); return -1; }
	return 0;
}

int qd_check_resize(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	struct rs_par p;
	char why[160];
	bool up = !strcmp(n->op->op_type, "Upsample");
	if (parse_par(n->proto, n->opset, up, &p, why, sizeof(why)))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (%s): %s", n->name, n->op->op_type, why);
	return 0;
}

/* rlen: the resized length before flooring (in * scale, or the size given) */
static double to_orig(enum coord cm, int64_t x, double scale, int64_t in, int64_t out, double rlen)
{
	switch (cm) {
	case C_HALF: return (x + 0.5) / scale - 0.5;
	case C_PYTORCH: return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
	case C_ALIGN: return rlen == 1 ? 0.0 : (double)x * (in - 1) / (rlen - 1);
	default: return x / scale;
	}
}

static int64_t nearest_idx(enum nearest nm, double xo, double scale, int64_t in)
{
	int64_t i;
	switch (nm) {
	case N_RPF: i = (xo == floor(xo) + 0.5) ? (int64_t)floor(xo) : (int64_t)llround(xo); break;
	case N_RPC: i = (int64_t)llround(xo); if (xo == floor(xo) + 0.5) i = (int64_t)ceil(xo); break;
	case N_FLOOR: i = (int64_t)floor(xo); break;
	case N_CEIL: i = (int64_t)ceil(xo); break;
	default: i = scale < 1.0 ? (int64_t)ceil(xo) : (int64_t)xo; break;
	}
	return i < 0 ? 0 : i >= in ? in - 1 : i;
}

int qd_op_resize(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	bool up = !strcmp(c->n->op->op_type, "Upsample");
	struct rs_par p;
	char why[160];
	if (parse_par(c->n->proto, c->n->opset, up, &p, why, sizeof(why)))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "%s", why);
	int nd = x->ndim;
	double sc[QD_MAX_DIMS];
	int64_t od[QD_MAX_DIMS];
	const struct qd_tensor *scales = NULL, *sizes = NULL;
	if (up && c->n->opset < 9) {
		const Onnx__AttributeProto *a = qd_node_attr(c->n->proto, "scales");
		if (!a || (int)a->n_floats != nd) return qd_ctx_fail(c, QD_EINVAL, "scales attribute must have %d values", nd);
		for (int i = 0; i < nd; i++) sc[i] = a->floats[i];
	} else {
		int si = (up || c->n->opset < 11) ? 1 : 2;
		scales = si < c->n_in ? c->in[si] : NULL;
		sizes = c->n_in > 3 && !up && c->n->opset >= 11 ? c->in[3] : NULL;
		if (scales && qd_tensor_count(scales) == 0) scales = NULL;
		if (sizes && qd_tensor_count(sizes) == 0) sizes = NULL;
		if (!scales == !sizes) return qd_ctx_fail(c, QD_EINVAL, "exactly one of scales and sizes must be given");
		const struct qd_tensor *t = scales ? scales : sizes;
		if (qd_tensor_count(t) != nd) return qd_ctx_fail(c, QD_EINVAL, "%s must have %d values", scales ? "scales" : "sizes", nd);
		for (int i = 0; i < nd; i++) {
			if (scales) sc[i] = (float)qd_tensor_get_f64(t, i);
			else {
				od[i] = qd_tensor_get_i64(t, i);
				if (od[i] < 0 || od[i] > ((int64_t)1 << 40)) return qd_ctx_fail(c, QD_EINVAL, "bad size %lld", (long long)od[i]);
				sc[i] = x->dims[i] ? (double)od[i] / x->dims[i] : 1.0;
			}
		}
	}
	for (int i = 0; i < nd; i++) {
		if (!(sc[i] > 0)) return qd_ctx_fail(c, QD_EINVAL, "scale %g must be positive", sc[i]);
		if (!sizes) {
			double o = floor((double)x->dims[i] * (float)sc[i]);
			if (!(o < 1e12)) return qd_ctx_fail(c, QD_ETOO_LARGE, "output size %g too large", o);
			od[i] = (int64_t)o;
		}
		if (od[i] < 0 || (od[i] > 0 && x->dims[i] == 0)) return qd_ctx_fail(c, QD_ESHAPE, "bad output size");
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, nd, od);
	if (!y) return -c->err->code;
	if (!qd_tensor_count(y)) return 0;
	/* per-axis source index tables */
	int64_t *i0[QD_MAX_DIMS] = {0}, *i1[QD_MAX_DIMS] = {0};
	float *wt[QD_MAX_DIMS] = {0};
	int rc = 0;
	for (int a = 0; a < nd; a++) {
		i0[a] = malloc(od[a] * sizeof(int64_t));
		i1[a] = malloc(od[a] * sizeof(int64_t));
		wt[a] = malloc(od[a] * sizeof(float));
		if (!i0[a] || !i1[a] || !wt[a]) { rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory"); goto out; }
		for (int64_t k = 0; k < od[a]; k++) {
			double s = sc[a];
			double xo = (x->dims[a] == od[a] && !sizes && s == 1.0) ? (double)k : to_orig(p.cm, k, s, x->dims[a], od[a],
										 sizes ? (double)od[a] : (double)x->dims[a] * (float)s);
			if (!p.linear) {
				i0[a][k] = i1[a][k] = nearest_idx(p.nm, xo, s, x->dims[a]);
				wt[a][k] = 0;
			} else {
				if (xo < 0) xo = 0;
				if (xo > x->dims[a] - 1) xo = (double)(x->dims[a] - 1);
				int64_t f = (int64_t)floor(xo);
				i0[a][k] = f;
				i1[a][k] = f + 1 < x->dims[a] ? f + 1 : f;
				wt[a][k] = (float)(xo - f);
			}
		}
	}
	int64_t xs[QD_MAX_DIMS], n = qd_tensor_count(y), idx[QD_MAX_DIMS] = {0};
	qd_dims_strides(nd, x->dims, xs);
	/* axes that actually interpolate */
	int lax[QD_MAX_DIMS], nl = 0;
	if (p.linear)
		for (int a = 0; a < nd; a++) {
			bool any = false;
			for (int64_t k = 0; k < od[a] && !any; k++) any = wt[a][k] != 0;
			if (any) lax[nl++] = a;
		}
	bool f32 = x->dtype == QD_DT_FLOAT;
	size_t es = qd_dtype_size(x->dtype);
	if (nl == 0 && nd >= 1) {
		/* nearest: gather along the last axis row by row; an output row whose source row
		 * equals the previous one's is a copy of it */
		int64_t OW = od[nd - 1], rows = n / (OW ? OW : 1), prev = -1;
		const int64_t *cx = i0[nd - 1];
		for (int64_t r = 0; r < rows; r++) {
			int64_t base = 0, rr = r;
			for (int a = nd - 2; a >= 0; a--) { base += i0[a][rr % od[a]] * xs[a]; rr /= od[a]; }
			char *dst = (char *)y->data + r * OW * es;
			if (base == prev) { memcpy(dst, dst - OW * es, OW * es); continue; }
			prev = base;
			if (es == 4) {
				const uint32_t *src = (const uint32_t *)x->data + base;
				for (int64_t j = 0; j < OW; j++) ((uint32_t *)dst)[j] = src[cx[j]];
			} else
				for (int64_t j = 0; j < OW; j++)
					memcpy(dst + j * es, (const char *)x->data + (base + cx[j]) * es, es);
		}
		goto out;
	}
	for (int64_t k = 0; k < n; k++) {
		int64_t base = 0;
		for (int a = 0; a < nd; a++) base += i0[a][idx[a]] * xs[a];
		if (nl == 0) {
			memcpy((char *)y->data + k * es, (const char *)x->data + base * es, es);
		} else {
			double acc = 0;
			for (int m = 0; m < (1 << nl); m++) {
				double w = 1;
				int64_t off = base;
				for (int j = 0; j < nl; j++) {
					int a = lax[j];
					float t = wt[a][idx[a]];
					if (m >> j & 1) { w *= t; off += (i1[a][idx[a]] - i0[a][idx[a]]) * xs[a]; }
					else w *= 1 - t;
				}
				if (w == 0) continue;
				acc += w * (f32 ? ((const float *)x->data)[off] : qd_tensor_get_f64(x, off));
			}
			if (f32) ((float *)y->data)[k] = (float)acc;
			else if (qd_dtype_is_int(x->dtype)) qd_tensor_set_i64(y, k, (int64_t)nearbyint(acc));
			else qd_tensor_set_f64(y, k, acc);
		}
		for (int a = nd - 1; a >= 0; a--) { if (++idx[a] < od[a]) break; idx[a] = 0; }
	}
out:
	for (int a = 0; a < nd; a++) { free(i0[a]); free(i1[a]); free(wt[a]); }
	return rc;
}
