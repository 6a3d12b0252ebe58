/* engine/ops_resize.c — Resize (opset 10, 11-18) and Upsample (7-9): nearest (all four
 * nearest modes, and the pre-11 "simple" rule), N-linear and cubic (cubic_coeff_a,
 * exclude_outside) interpolation with the half_pixel, pytorch_half_pixel, align_corners,
 * asymmetric and tf_half_pixel_for_nn coordinate modes. Interpolation is separable: each
 * axis gets a table of up to 4 (index, weight) taps. tf_crop_and_resize and antialias
 * fail at load. */
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

enum coord { C_HALF, C_PYTORCH, C_ALIGN, C_ASYM, C_TFHALF };
enum nearest { N_RPF, N_RPC, N_FLOOR, N_CEIL, N_SIMPLE };

struct rs_par { bool linear, cubic, exclude; float cubic_a; enum coord cm; enum nearest nm; };

static int parse_par(const Onnx__NodeProto *np, int64_t opset, bool upsample, struct rs_par *p,
		     char *why, size_t wl)
{
	const char *mode = qd_node_attr_string(np, "mode", "nearest");
	p->linear = p->cubic = false;
	p->cubic_a = qd_node_attr_float(np, "cubic_coeff_a", -0.75f);
	p->exclude = qd_node_attr_int(np, "exclude_outside", 0) != 0;
	if (!strcmp(mode, "nearest")) p->linear = false;
	else if (!strcmp(mode, "linear") || (upsample && !strcmp(mode, "bilinear"))) p->linear = true;
	else if (!strcmp(mode, "cubic") && !upsample && opset >= 11) p->cubic = true;
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
	else if (!strcmp(cm, "tf_half_pixel_for_nn") && opset < 13) p->cm = C_TFHALF;
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

/* rlen: the resized length before flooring (in * scale, or the size given). In float32
 * like ONNX Runtime, so coordinates that land exactly on .5 round the same way. */
static double to_orig(enum coord cm, int64_t x, double scale_d, int64_t in, int64_t out, double rlen)
{
	float scale = (float)scale_d, xf = (float)x;
	switch (cm) {
	case C_HALF: return (xf + 0.5f) / scale - 0.5f;
	case C_PYTORCH: return out > 1 ? (xf + 0.5f) / scale - 0.5f : 0.0f;
	case C_ALIGN: return rlen == 1 ? 0.0f : xf * (float)(in - 1) / (float)(rlen - 1);
	case C_TFHALF: return (xf + 0.5f) / scale;
	default: return xf / scale;
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

/* The output loops over a range (rows or elements), so threads can split them; each
 * output value is computed as in one call. */
struct rs_run {
	const struct qd_tensor *x;
	struct qd_tensor *y;
	int nd;
	int64_t n, od[QD_MAX_DIMS], xs[QD_MAX_DIMS], *tix[QD_MAX_DIMS];
	float *tw[QD_MAX_DIMS];
	int ntap[QD_MAX_DIMS], lax[QD_MAX_DIMS], nl, combos;
	bool f32;
	size_t es;
};

/* nearest: gather along the last axis row by row; an output row whose source row equals
 * the previous one's is a copy of it */
static void rs_nearest_rows(void *ctx, int64_t lo, int64_t hi)
{
	const struct rs_run *R = ctx;
	int nd = R->nd;
	size_t es = R->es;
	int64_t OW = R->od[nd - 1], prev = -1;
	const int64_t *cx = R->tix[nd - 1];
	for (int64_t r = lo; r < hi; r++) {
		int64_t base = 0, rr = r;
		for (int a = nd - 2; a >= 0; a--) { base += R->tix[a][(rr % R->od[a]) * 4] * R->xs[a]; rr /= R->od[a]; }
		char *dst = (char *)R->y->data + r * OW * es;
		if (base == prev) { memcpy(dst, dst - OW * es, OW * es); continue; }
		prev = base;
		if (es == 4) {
			const uint32_t *src = (const uint32_t *)R->x->data + base;
			for (int64_t j = 0; j < OW; j++) ((uint32_t *)dst)[j] = src[cx[j * 4]];
		} else
			for (int64_t j = 0; j < OW; j++)
				memcpy(dst + j * es, (const char *)R->x->data + (base + cx[j * 4]) * es, es);
	}
}

static void rs_interp(void *ctx, int64_t lo, int64_t hi)
{
	const struct rs_run *R = ctx;
	const struct qd_tensor *x = R->x;
	struct qd_tensor *y = R->y;
	int nd = R->nd;
	int64_t idx[QD_MAX_DIMS] = {0};
	for (int64_t a = nd - 1, k = lo; a >= 0; a--) { idx[a] = k % R->od[a]; k /= R->od[a]; }
	for (int64_t k = lo; k < hi; k++) {
		int64_t base = 0;
		for (int a = 0; a < nd; a++) if (R->ntap[a] == 1) base += R->tix[a][idx[a] * 4] * R->xs[a];
		double acc = 0;
		for (int m = 0; m < R->combos; m++) {
			double w = 1;
			int64_t off = base;
			int mm = m;
			for (int j = 0; j < R->nl; j++) {
				int a = R->lax[j], q = mm % R->ntap[a];
				mm /= R->ntap[a];
				w *= R->tw[a][idx[a] * 4 + q];
				off += R->tix[a][idx[a] * 4 + q] * R->xs[a];
			}
			if (w == 0) continue;
			acc += w * (R->f32 ? ((const float *)x->data)[off] : qd_tensor_get_f64(x, off));
		}
		if (R->f32) ((float *)y->data)[k] = (float)acc;
		else if (qd_dtype_is_int(x->dtype)) qd_tensor_set_i64(y, k, qd_f2i(nearbyint(acc)));
		else qd_tensor_set_f64(y, k, acc);
		for (int a = nd - 1; a >= 0; a--) { if (++idx[a] < R->od[a]) break; idx[a] = 0; }
	}
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
	/* per-axis tap tables: up to 4 (index, weight) per output coordinate */
	int64_t *tix[QD_MAX_DIMS] = {0};
	float *tw[QD_MAX_DIMS] = {0};
	int ntap[QD_MAX_DIMS];
	int rc = 0;
	for (int a = 0; a < nd; a++) {
		int64_t in = x->dims[a];
		tix[a] = malloc(od[a] * 4 * sizeof(int64_t));
		tw[a] = malloc(od[a] * 4 * sizeof(float));
		if (!tix[a] || !tw[a]) { rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory"); goto out; }
		bool frac = false;
		for (int64_t k = 0; k < od[a]; k++) {
			double s = sc[a];
			double xo = (in == od[a] && !sizes && s == 1.0) ? (double)k : to_orig(p.cm, k, s, in, od[a],
										 sizes ? (double)od[a] : (double)in * (float)s);
			int64_t *ti = tix[a] + k * 4;
			float *w = tw[a] + k * 4;
			if (!p.linear && !p.cubic) {
				ti[0] = ti[1] = ti[2] = ti[3] = nearest_idx(p.nm, xo, s, in);
				w[0] = 1; w[1] = w[2] = w[3] = 0;
			} else if (p.linear) {
				if (xo < 0) xo = 0;
				if (xo > in - 1) xo = (double)(in - 1);
				int64_t f = (int64_t)floor(xo);
				float t = (float)(xo - f);
				ti[0] = f; ti[1] = f + 1 < in ? f + 1 : f; ti[2] = ti[3] = f;
				w[0] = 1 - t; w[1] = t; w[2] = w[3] = 0;
				if (t != 0) frac = true;
			} else {
				double f = floor(xo), t = xo - f, A = p.cubic_a, sum = 0;
				double d[4] = { t + 1, t, 1 - t, 2 - t }, cw[4];
				cw[0] = ((A * d[0] - 5 * A) * d[0] + 8 * A) * d[0] - 4 * A;
				cw[1] = ((A + 2) * d[1] - (A + 3)) * d[1] * d[1] + 1;
				cw[2] = ((A + 2) * d[2] - (A + 3)) * d[2] * d[2] + 1;
				cw[3] = ((A * d[3] - 5 * A) * d[3] + 8 * A) * d[3] - 4 * A;
				for (int q = 0; q < 4; q++) {
					int64_t ix = (int64_t)f - 1 + q;
					if (p.exclude && (ix < 0 || ix >= in)) cw[q] = 0;
					ti[q] = ix < 0 ? 0 : ix >= in ? in - 1 : ix;
					sum += cw[q];
				}
				for (int q = 0; q < 4; q++) w[q] = (float)(p.exclude && sum != 0 ? cw[q] / sum : cw[q]);
				if (t != 0) frac = true;
			}
		}
		ntap[a] = !frac ? 1 : p.cubic ? 4 : 2;
		if (ntap[a] == 1) /* no fractional coordinate: the tap with weight 1 */
			for (int64_t k = 0; k < od[a]; k++) {
				int64_t *ti = tix[a] + k * 4;
				float *w = tw[a] + k * 4;
				int best = 0;
				for (int q = 1; q < 4; q++) if (w[q] > w[best]) best = q;
				ti[0] = ti[best];
			}
	}
	struct rs_run R = { x, y, nd, .n = qd_tensor_count(y), .combos = 1,
			    .f32 = x->dtype == QD_DT_FLOAT, .es = qd_dtype_size(x->dtype) };
	qd_dims_strides(nd, x->dims, R.xs);
	for (int a = 0; a < nd; a++) {
		R.od[a] = od[a]; R.tix[a] = tix[a]; R.tw[a] = tw[a]; R.ntap[a] = ntap[a];
		if (ntap[a] > 1) { R.lax[R.nl++] = a; R.combos *= ntap[a]; }  /* axes that interpolate */
	}
	if (R.nl == 0 && nd >= 1) {
		int64_t OW = od[nd - 1];
		qd_parallel_for(R.n / (OW ? OW : 1), QD_MAX((int64_t)1, (1 << 14) / QD_MAX(OW, (int64_t)1)),
				rs_nearest_rows, &R);
	} else {
		qd_parallel_for(R.n, 1 << 13, rs_interp, &R);
	}
out:
	for (int a = 0; a < nd; a++) { free(tix[a]); free(tw[a]); }
	return rc;
}
