/* engine/ops_quant_conv.c — ConvInteger and QLinearConv: 8-bit im2col (padding with the
 * input zero point, so padded taps contribute 0) followed by the integer GEMM of
 * engine/qgemm.c per image and group; QLinearConv requantizes with a per-channel float
 * multiplier x_scale * w_scale[m] / y_scale. 1-3 spatial dims, groups, dilations, pads,
 * strides and auto_pad. */
#include <stdlib.h>
#include <string.h>
#include "engine/ops_quant.h"
#include "engine/qgemm.h"

struct qconv_geom {
	int nsp;
	int64_t N, C, M, group;
	int64_t in[3], k[3], out[3], stride[3], dil[3], pad_b[3];
	int64_t ksize, osize, isize;   /* products over the spatial dims */
};

static int qconv_geom(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *w,
		      struct qconv_geom *g)
{
	const Onnx__NodeProto *np = c->n->proto;
	const int64_t *v;
	long n;
	char s1[96], s2[96];
	memset(g, 0, sizeof(*g));
	if (x->ndim < 3 || x->ndim > 5 || w->ndim != x->ndim)
		return qd_ctx_fail(c, QD_ESHAPE, "conv input %s / weight %s: 1-3 spatial dims expected",
				   qd_dims_str(x->ndim, x->dims, s1, sizeof(s1)),
				   qd_dims_str(w->ndim, w->dims, s2, sizeof(s2)));
	g->nsp = x->ndim - 2;
	g->N = x->dims[0];
	g->C = x->dims[1];
	g->M = w->dims[0];
	g->group = qd_node_attr_int(np, "group", 1);
	if (g->group < 1 || g->C % g->group || g->M % g->group || w->dims[1] * g->group != g->C)
		return qd_ctx_fail(c, QD_ESHAPE, "conv channels do not match: input %s, weight %s, group %lld",
				   qd_dims_str(x->ndim, x->dims, s1, sizeof(s1)),
				   qd_dims_str(w->ndim, w->dims, s2, sizeof(s2)), (long long)g->group);
	for (int i = 0; i < 3; i++) {
		g->in[i] = g->k[i] = g->out[i] = g->stride[i] = g->dil[i] = 1;
		g->pad_b[i] = 0;
	}
	int64_t pad_e[3] = {0, 0, 0};
	for (int i = 0; i < g->nsp; i++) {
		g->in[i] = x->dims[2 + i];
		g->k[i] = w->dims[2 + i];
	}
	if ((n = qd_node_attr_ints(np, "kernel_shape", &v)) >= 0) {
		for (int i = 0; i < g->nsp; i++)
			if (n != g->nsp || v[i] != g->k[i])
				return qd_ctx_fail(c, QD_ESHAPE, "attribute 'kernel_shape' does not match the weight");
	}
	if ((n = qd_node_attr_ints(np, "strides", &v)) >= 0) {
		if (n != g->nsp) return qd_ctx_fail(c, QD_EMODEL, "attribute 'strides' has %ld values", n);
		for (int i = 0; i < g->nsp; i++) g->stride[i] = v[i];
	}
	if ((n = qd_node_attr_ints(np, "dilations", &v)) >= 0) {
		if (n != g->nsp) return qd_ctx_fail(c, QD_EMODEL, "attribute 'dilations' has %ld values", n);
		for (int i = 0; i < g->nsp; i++) g->dil[i] = v[i];
	}
	if ((n = qd_node_attr_ints(np, "pads", &v)) >= 0) {
		if (n != 2 * g->nsp) return qd_ctx_fail(c, QD_EMODEL, "attribute 'pads' has %ld values", n);
		for (int i = 0; i < g->nsp; i++) {
			g->pad_b[i] = v[i];
			pad_e[i] = v[g->nsp + i];
		}
	}
	const char *ap = qd_node_attr_string(np, "auto_pad", "NOTSET");
	for (int i = 0; i < g->nsp; i++) {
		if (g->stride[i] < 1 || g->dil[i] < 1 || g->pad_b[i] < 0 || pad_e[i] < 0)
			return qd_ctx_fail(c, QD_EMODEL, "strides and dilations must be >= 1, pads >= 0");
		int64_t ek = (g->k[i] - 1) * g->dil[i] + 1;
		if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
			int64_t o = (g->in[i] + g->stride[i] - 1) / g->stride[i];
			int64_t tot = QD_MAX((int64_t)0, (o - 1) * g->stride[i] + ek - g->in[i]);
			g->pad_b[i] = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
			pad_e[i] = tot - g->pad_b[i];
		} else if (!strcmp(ap, "VALID")) {
			g->pad_b[i] = pad_e[i] = 0;
		} else if (strcmp(ap, "NOTSET")) {
			return qd_ctx_fail(c, QD_EMODEL, "attribute 'auto_pad' value '%s' not supported", ap);
		}
		int64_t span = g->in[i] + g->pad_b[i] + pad_e[i] - ek;
		if (span < 0)
			return qd_ctx_fail(c, QD_ESHAPE, "kernel larger than the padded input on axis %d", 2 + i);
		g->out[i] = span / g->stride[i] + 1;
	}
	g->ksize = g->k[0] * g->k[1] * g->k[2];
	g->osize = g->out[0] * g->out[1] * g->out[2];
	g->isize = g->in[0] * g->in[1] * g->in[2];
	return 0;
}

/* col [Cg * ksize][osize] from x (one image, channels c0 .. c0+Cg), pad byte = pad. */
static void im2col_u8(const struct qconv_geom *g, const uint8_t *x, int64_t Cg, uint8_t pad,
		      uint8_t *col)
{
	for (int64_t ch = 0; ch < Cg; ch++) {
		const uint8_t *xc = x + ch * g->isize;
		for (int64_t k0 = 0; k0 < g->k[0]; k0++)
		for (int64_t k1 = 0; k1 < g->k[1]; k1++)
		for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
			uint8_t *row = col + (((ch * g->k[0] + k0) * g->k[1] + k1) * g->k[2] + k2) * g->osize;
			for (int64_t o0 = 0; o0 < g->out[0]; o0++) {
				int64_t i0 = o0 * g->stride[0] - g->pad_b[0] + k0 * g->dil[0];
				for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
					int64_t i1 = o1 * g->stride[1] - g->pad_b[1] + k1 * g->dil[1];
					uint8_t *r = row + (o0 * g->out[1] + o1) * g->out[2];
					if (i0 < 0 || i0 >= g->in[0] || i1 < 0 || i1 >= g->in[1]) {
						memset(r, pad, (size_t)g->out[2]);
						continue;
					}
					const uint8_t *xr = xc + (i0 * g->in[1] + i1) * g->in[2];
					for (int64_t o2 = 0; o2 < g->out[2]; o2++) {
						int64_t i2 = o2 * g->stride[2] - g->pad_b[2] + k2 * g->dil[2];
						r[o2] = (i2 < 0 || i2 >= g->in[2]) ? pad : xr[i2];
					}
				}
			}
		}
	}
}

/* Depthwise (one input channel per group): direct taps, no im2col + GEMM per channel
 * (per-group GEMM calls of M = 1 cost far more than the arithmetic). Same integer sums as
 * the GEMM path: padded taps hold x_zp, so they add 0; exact in int32. */
__attribute__((optimize("O3"))) static int qconv_depthwise(struct qd_ctx *c, const struct qconv_geom *g0,
			   const struct qd_tensor *x, int32_t xz, const struct qd_tensor *w, const int32_t *wz,
			   bool wz_per, int32_t *acc)
{
	/* the geometry keeps 1-D / 2-D convolutions as [d, 1, 1] / [H, W, 1]: move the trailing
	 * unit dims to the front so the innermost loop runs along the real last axis */
	struct qconv_geom gl = *g0, *g = &gl;
	for (int t = 0; t < 2 && g->in[2] == 1 && g->k[2] == 1 && g->out[2] == 1; t++) {
		int64_t *arr[6] = { g->in, g->k, g->out, g->stride, g->dil, g->pad_b };
		for (int a = 0; a < 6; a++) {
			arr[a][2] = arr[a][1];
			arr[a][1] = arr[a][0];
			arr[a][0] = a < 3 || a == 3 || a == 4 ? 1 : 0;
		}
	}
	int64_t Mg = g->M / g->group;
	int32_t *wk = malloc((size_t)g->ksize * sizeof *wk + 1);
	int32_t *xp = malloc((size_t)g->isize * sizeof *xp + 1);
	int64_t *lo = malloc((size_t)g->k[2] * sizeof *lo + 1), *hi = malloc((size_t)g->k[2] * sizeof *hi + 1);
	if (!wk || !xp || !lo || !hi) {
		free(wk); free(xp); free(lo); free(hi);
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	}
	/* o2 range of each k2 tap with 0 <= o2 * stride + off < in[2] */
	for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
		int64_t off = k2 * g->dil[2] - g->pad_b[2];
		lo[k2] = off < 0 ? (-off + g->stride[2] - 1) / g->stride[2] : 0;
		hi[k2] = g->in[2] - off <= 0 ? 0 : (g->in[2] - off - 1) / g->stride[2] + 1;
		if (hi[k2] > g->out[2])
			hi[k2] = g->out[2];
		if (lo[k2] > hi[k2])
			lo[k2] = hi[k2];
	}
	bool xs = x->dtype == QD_DT_INT8, ws = w->dtype == QD_DT_INT8;
	int64_t last_ch = -1;
	for (int64_t img = 0; img < g->N; img++, last_ch = -1)
		for (int64_t m = 0; m < g->M; m++) {
			int64_t ch = m / Mg;
			int32_t z = wz[wz_per ? m : 0];
			for (int64_t k = 0; k < g->ksize; k++)
				wk[k] = (ws ? ((const int8_t *)w->data)[m * g->ksize + k]
					    : ((const uint8_t *)w->data)[m * g->ksize + k]) - z;
			if (ch != last_ch) {
				/* the channel plane once as int32 minus the zero point */
				const uint8_t *xc = (const uint8_t *)x->data + (img * g->C + ch) * g->isize;
				if (xs)
					for (int64_t i = 0; i < g->isize; i++)
						xp[i] = (int32_t)(int8_t)xc[i] - xz;
				else
					for (int64_t i = 0; i < g->isize; i++)
						xp[i] = (int32_t)xc[i] - xz;
				last_ch = ch;
			}
			int32_t *out = acc + (img * g->M + m) * g->osize;
			memset(out, 0, (size_t)g->osize * sizeof *out);
			for (int64_t k0 = 0; k0 < g->k[0]; k0++)
			for (int64_t o0 = 0; o0 < g->out[0]; o0++) {
				int64_t i0 = o0 * g->stride[0] - g->pad_b[0] + k0 * g->dil[0];
				if (i0 < 0 || i0 >= g->in[0])
					continue;
				for (int64_t k1 = 0; k1 < g->k[1]; k1++)
				for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
					int64_t i1 = o1 * g->stride[1] - g->pad_b[1] + k1 * g->dil[1];
					if (i1 < 0 || i1 >= g->in[1])
						continue;
					const int32_t *xr = xp + (i0 * g->in[1] + i1) * g->in[2];
					int32_t *orow = out + (o0 * g->out[1] + o1) * g->out[2];
					const int32_t *wr = wk + (k0 * g->k[1] + k1) * g->k[2];
					for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
						int32_t wv = wr[k2];
						int64_t off = k2 * g->dil[2] - g->pad_b[2];
						if (g->stride[2] == 1) {
							int32_t *restrict op = orow + lo[k2];
							const int32_t *restrict xo = xr + off + lo[k2];
							int64_t cnt = hi[k2] - lo[k2];
#pragma GCC ivdep
							for (int64_t o2 = 0; o2 < cnt; o2++)
								op[o2] += wv * xo[o2];
						} else {
							for (int64_t o2 = lo[k2]; o2 < hi[k2]; o2++)
								orow[o2] += wv * xr[o2 * g->stride[2] + off];
						}
					}
				}
			}
		}
	free(wk); free(xp); free(lo); free(hi);
	return 0;
}

/* Tests set this to run depthwise convolutions through the im2col + GEMM path. */
int qd_qconv_force_gemm;

/* acc[N][M][osize] = conv of (x - x_zp) with (w - w_zp[m]). */
static int qconv_acc(struct qd_ctx *c, const struct qconv_geom *g, const struct qd_tensor *x,
		     int32_t xz, const struct qd_tensor *w, const int32_t *wz, bool wz_per, int32_t *acc)
{
	int64_t Cg = g->C / g->group, Mg = g->M / g->group, Kc = Cg * g->ksize;
	if (Cg == 1 && g->group > 1 && !qd_qconv_force_gemm)
		return qconv_depthwise(c, g, x, xz, w, wz, wz_per, acc);
	uint8_t *col = malloc((size_t)(Kc * g->osize) + 1);
	if (!col)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	const uint8_t *xd = x->data, *wd = w->data;
	for (int64_t img = 0; img < g->N; img++)
		for (int64_t gr = 0; gr < g->group; gr++) {
			im2col_u8(g, xd + (img * g->C + gr * Cg) * g->isize, Cg, (uint8_t)xz, col);
			struct qd_qgemm_args q = {
				.M = Mg, .N = g->osize, .K = Kc,
				.A = wd + gr * Mg * Kc, .lda = Kc, .a_signed = w->dtype == QD_DT_INT8,
				.B = col, .ldb = g->osize, .b_signed = x->dtype == QD_DT_INT8,
				.a_zp = wz + (wz_per ? gr * Mg : 0), .a_zp_per_row = wz_per,
				.b_zp = &xz,
				.C = acc + (img * g->M + gr * Mg) * g->osize, .ldc = g->osize,
				.threads = c->e->opts.threads,
			};
			int rc = qd_qgemm(&q);
			if (rc) {
				free(col);
				return qd_ctx_fail(c, -rc, "integer gemm failed");
			}
			if (c->cancel && *c->cancel) {
				free(col);
				return qd_ctx_fail(c, QD_ECANCELED, "canceled");
			}
		}
	free(col);
	return 0;
}

static void out_dims(const struct qconv_geom *g, int64_t *dims)
{
	dims[0] = g->N;
	dims[1] = g->M;
	for (int i = 0; i < g->nsp; i++)
		dims[2 + i] = g->out[i];
}

int qd_check_out_i32(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	for (int i = 0; i < n->n_out; i++)
		out_dt[i] = QD_DT_INT32;
	return 0;
}

int qd_op_conv_integer(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *w = qd_ctx_in(c, 1);
	if (!x || !w)
		return -c->err->code;
	struct qconv_geom g;
	int32_t xz, *wz = NULL;
	bool wper;
	if (!qd_is_q8(x->dtype) || !qd_is_q8(w->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(x->dtype), qd_dtype_name(w->dtype));
	int rc = qconv_geom(c, x, w, &g);
	if (rc || (rc = qd_q_scalar_zp(c, 2, "x_zero_point", x->dtype, &xz)) ||
	    (rc = qd_q_vec_zp(c, 3, "w_zero_point", w->dtype, g.M, &wz, &wper)))
		goto out;
	int64_t dims[5];
	out_dims(&g, dims);
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_INT32, x->ndim, dims);
	if (!y) {
		rc = -c->err->code;
		goto out;
	}
	rc = qconv_acc(c, &g, x, xz, w, wz, wper, y->data);
out:
	free(wz);
	return rc;
}

int qd_op_qlinear_conv(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *w = qd_ctx_in(c, 3);
	if (!x || !w)
		return -c->err->code;
	const struct qd_tensor *bias = c->n_in > 8 ? c->in[8] : NULL;
	struct qconv_geom g;
	int32_t xz, yz, *wz = NULL, *acc = NULL, lo = 0, hi = 0;
	float xs, ys, *ws = NULL;
	bool wzper, wsper;
	if (!qd_is_q8(x->dtype) || !qd_is_q8(w->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(x->dtype), qd_dtype_name(w->dtype));
	int rc = qconv_geom(c, x, w, &g);
	if (rc || (rc = qd_q_scalar_f32(c, 1, "x_scale", &xs)) ||
	    (rc = qd_q_scalar_zp(c, 2, "x_zero_point", x->dtype, &xz)) ||
	    (rc = qd_q_vec_f32(c, 4, "w_scale", g.M, &ws, &wsper)) ||
	    (rc = qd_q_vec_zp(c, 5, "w_zero_point", w->dtype, g.M, &wz, &wzper)) ||
	    (rc = qd_q_scalar_f32(c, 6, "y_scale", &ys)) ||
	    (rc = qd_q_scalar_zp(c, 7, "y_zero_point", x->dtype, &yz)))
		goto out;
	if (bias && (bias->dtype != QD_DT_INT32 || qd_tensor_count(bias) != g.M)) {
		rc = qd_ctx_fail(c, QD_ESHAPE, "bias must be int32 with %lld elements", (long long)g.M);
		goto out;
	}
	if (c->n_in > 7 && c->in[7] && c->in[7]->dtype != x->dtype) {
		rc = qd_ctx_fail(c, QD_EMODEL, "y_zero_point dtype differs from x");
		goto out;
	}
	qd_q_range(x->dtype, &lo, &hi);
	int64_t dims[5];
	out_dims(&g, dims);
	acc = malloc((size_t)(g.N * g.M * g.osize + 1) * sizeof(int32_t));
	struct qd_tensor *y = acc ? qd_ctx_out(c, 0, x->dtype, x->ndim, dims) : NULL;
	if (!acc || !y) {
		rc = acc ? -c->err->code : qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = qconv_acc(c, &g, x, xz, w, wz, wzper, acc)))
		goto out;
	const int32_t *bd = bias ? bias->data : NULL;
	for (int64_t img = 0; img < g.N; img++)
		for (int64_t m = 0; m < g.M; m++) {
			float mul = xs * ws[wsper ? m : 0] / ys;
			int32_t b = bd ? bd[m] : 0;
			int64_t base = (img * g.M + m) * g.osize;
			for (int64_t p = 0; p < g.osize; p++) {
				int32_t v = (int32_t)((uint32_t)acc[base + p] + (uint32_t)b);
				qd_q_store(y->data, x->dtype, base + p, qd_q_round_sat((float)v * mul, yz, lo, hi));
			}
		}
out:
	free(acc); free(ws); free(wz);
	return rc;
}
