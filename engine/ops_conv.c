/* engine/ops_conv.c — Conv (im2col + sgemm, direct depthwise kernel, plain conv_ref twin)
 * and ConvTranspose (sgemm + col2im), 1-3 spatial dims, groups, dilations, pads, auto_pad.
 * Shapes are handled as 3-D internally (leading spatial dims of size 1). */
/* hot loops: let GCC vectorise with runtime alias checks (-O2 uses the "very cheap"
 * cost model that refuses them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno", "fp-contract=off")
#endif
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include "engine/engine_internal.h"

#define QD_CONV_MAX_THREADS 64

static int epi_bn_params(struct qd_ctx *c, const struct qd_epilogue *ep, int64_t C, float *sc, float *sh);

static int attr_ints(const Onnx__NodeProto *np, const char *name, int64_t *v, int n, int64_t dflt)
{
	const int64_t *a;
	long k = qd_node_attr_ints(np, name, &a);
	for (int i = 0; i < n; i++) v[i] = dflt;
	if (k < 0) return 0;
	if (k != n) return -1;
	for (int i = 0; i < n; i++) v[i] = a[i];
	return 0;
}

int qd_check_conv(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const char *ap = qd_node_attr_string(n->proto, "auto_pad", "NOTSET");
	if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID"))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': auto_pad '%s' not supported",
				  n->name, ap);
	return 0;
}

/* Geometry from attributes and shapes; transposed = ConvTranspose (w is [C, M/g, k...]). */
static int conv_geom(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *w,
		     struct qd_conv_geom *g, bool transposed)
{
	const Onnx__NodeProto *np = c->n->proto;
	char b1[128], b2[128];
	memset(g, 0, sizeof(*g));
	if (x->ndim < 3 || x->ndim > 5 || w->ndim != x->ndim)
		return qd_ctx_fail(c, QD_ESHAPE, "input %s and weight %s must both be 3-D to 5-D",
				   qd_dims_str(x->ndim, x->dims, b1, sizeof(b1)),
				   qd_dims_str(w->ndim, w->dims, b2, sizeof(b2)));
	int ns = x->ndim - 2;
	g->nsp = ns;
	g->N = x->dims[0];
	g->C = x->dims[1];
	g->group = qd_node_attr_int(np, "group", 1);
	if (g->group <= 0 || g->C % g->group)
		return qd_ctx_fail(c, QD_ESHAPE, "group %lld does not divide %lld channels",
				   (long long)g->group, (long long)g->C);
	if (!transposed) {
		g->M = w->dims[0];
		if (w->dims[1] * g->group != g->C || g->M % g->group)
			return qd_ctx_fail(c, QD_ESHAPE, "weight %s does not match input %s with group %lld",
					   qd_dims_str(w->ndim, w->dims, b2, sizeof(b2)),
					   qd_dims_str(x->ndim, x->dims, b1, sizeof(b1)), (long long)g->group);
	} else {
		if (w->dims[0] != g->C)
			return qd_ctx_fail(c, QD_ESHAPE, "weight %s does not match input %s",
					   qd_dims_str(w->ndim, w->dims, b2, sizeof(b2)),
					   qd_dims_str(x->ndim, x->dims, b1, sizeof(b1)));
		g->M = w->dims[1] * g->group;
	}
	int64_t ks[3], st[3], dl[3], pd[6], op[3], osh[3];
	if (attr_ints(np, "kernel_shape", ks, ns, 0) || attr_ints(np, "strides", st, ns, 1) ||
	    attr_ints(np, "dilations", dl, ns, 1) || attr_ints(np, "pads", pd, 2 * ns, 0) ||
	    attr_ints(np, "output_padding", op, ns, 0))
		return qd_ctx_fail(c, QD_EMODEL, "kernel_shape/strides/dilations/pads have the wrong length");
	const char *ap = qd_node_attr_string(np, "auto_pad", "NOTSET");
	bool has_osh = qd_node_attr(np, "output_shape") != NULL;
	if (has_osh && attr_ints(np, "output_shape", osh, ns, 0))
		return qd_ctx_fail(c, QD_EMODEL, "output_shape has the wrong length");
	/* internal 3-D: spatial dim i of the model maps to slot 3 - ns + i */
	for (int i = 0; i < 3; i++) {
		g->in[i] = g->k[i] = g->out[i] = g->stride[i] = g->dil[i] = 1;
		g->pad_b[i] = g->pad_e[i] = 0;
	}
	for (int i = 0; i < ns; i++) {
		int s = 3 - ns + i;
		int64_t in = x->dims[2 + i], k = w->dims[2 + i];
		if (ks[i] && ks[i] != k) return qd_ctx_fail(c, QD_ESHAPE, "kernel_shape does not match the weight");
		if (st[i] <= 0 || dl[i] <= 0) return qd_ctx_fail(c, QD_EMODEL, "strides and dilations must be positive");
		/* bounded so that no size below overflows (hostile attributes fail here) */
		const int64_t big = (int64_t)1 << 31;
		if (st[i] > big || dl[i] > big || pd[i] > big || pd[ns + i] > big || op[i] < 0 || op[i] > big ||
		    (has_osh && (osh[i] < 0 || osh[i] > ((int64_t)1 << 40))))
			return qd_ctx_fail(c, QD_EMODEL, "strides, dilations, pads or output_padding out of range "
					   "(at most 2^31)");
		if (k <= 0) return qd_ctx_fail(c, QD_ESHAPE, "the weight has an empty kernel dim");
		int64_t ek;
		if (__builtin_mul_overflow(k - 1, dl[i], &ek) || ek >= ((int64_t)1 << 40))
			return qd_ctx_fail(c, QD_ELIMIT, "dilated kernel of %lld x %lld is too large", (long long)k,
					   (long long)dl[i]);
		ek += 1;
		int64_t pb = pd[i], pe = pd[ns + i], out;
		if (pb < 0 || pe < 0) return qd_ctx_fail(c, QD_EMODEL, "negative pads");
		if (!transposed) {
			if (!strcmp(ap, "VALID")) { pb = pe = 0; }
			if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
				out = (in + st[i] - 1) / st[i];
				int64_t tot = QD_MAX(0, (out - 1) * st[i] + ek - in);
				pb = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
				pe = tot - pb;
			}
			if (in + pb + pe < ek)
				return qd_ctx_fail(c, QD_ESHAPE, "kernel %lld larger than padded input %lld",
						   (long long)ek, (long long)(in + pb + pe));
			out = (in + pb + pe - ek) / st[i] + 1;
		} else {
			if (in > ((int64_t)1 << 40) / st[i])
				return qd_ctx_fail(c, QD_ELIMIT, "output size %lld x %lld is too large", (long long)in,
						   (long long)st[i]);
			if (has_osh || !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
				out = has_osh ? osh[i] : in * st[i];
				int64_t tot = st[i] * (in - 1) + op[i] + ek - out;
				if (tot < 0) tot = 0;
				if (!strcmp(ap, "SAME_UPPER")) { pb = tot / 2; pe = tot - pb; }
				else { pe = tot / 2; pb = tot - pe; }
			} else {
				if (!strcmp(ap, "VALID")) pb = pe = 0;
				out = st[i] * (in - 1) + op[i] + ek - pb - pe;
			}

			if (out <= 0) return qd_ctx_fail(c, QD_ESHAPE, "output size %lld is not positive", (long long)out);
		}
		g->in[s] = in; g->k[s] = k; g->out[s] = out; g->stride[s] = st[i]; g->dil[s] = dl[i];
		g->pad_b[s] = pb; g->pad_e[s] = pe;
	}
	return 0;
}

int qd_conv_geom(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *w,
		 struct qd_conv_geom *g)
{
	return conv_geom(c, x, w, g, false);
}

/* col: rows = (c, kd, kh, kw) for C/group channels; columns = output positions of the
 * flattened output rows (od, oh) in [r0, r1), OW each. */
void qd_im2col_f32(const struct qd_conv_geom *g, const float *x, float *col, int64_t r0, int64_t r1)
{
	int64_t cg = g->C / g->group;
	int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
	int64_t OH = g->out[1], OW = g->out[2];
	int64_t ncol = (r1 - r0) * OW;
	for (int64_t ch = 0; ch < cg; ch++)
		for (int64_t kd = 0; kd < g->k[0]; kd++)
			for (int64_t kh = 0; kh < g->k[1]; kh++)
				for (int64_t kw = 0; kw < g->k[2]; kw++) {
					float *dst = col;
					col += ncol;
					int64_t iw0 = kw * g->dil[2] - g->pad_b[2], sw = g->stride[2];
					/* valid ow range: 0 <= ow*sw + iw0 < IW */
					int64_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
					int64_t hi = IW - iw0 <= 0 ? 0 : (IW - iw0 - 1) / sw + 1;
					if (hi > OW) hi = OW;
					if (lo > hi) lo = hi;
					for (int64_t r = r0; r < r1; r++) {
						int64_t od = r / OH, oh = r % OH;
						int64_t id = od * g->stride[0] - g->pad_b[0] + kd * g->dil[0];
						int64_t ih = oh * g->stride[1] - g->pad_b[1] + kh * g->dil[1];
						float *d = dst + (r - r0) * OW;
						if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
							memset(d, 0, OW * sizeof(float));
							continue;
						}
						const float *src = x + ((ch * ID + id) * IH + ih) * IW;
						for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0.0f;
						if (sw == 1) memcpy(d + lo, src + lo + iw0, (hi - lo) * sizeof(float));
						else if (sw == 2) for (int64_t ow = lo; ow < hi; ow++) d[ow] = src[ow * 2 + iw0];
						else for (int64_t ow = lo; ow < hi; ow++) d[ow] = src[ow * sw + iw0];
						for (int64_t ow = hi; ow < OW; ow++) d[ow] = 0.0f;
					}
				}
}

/* Depthwise inner row: yr[ow] += sum over kw of w[kw] * xr[ow * SW + off0 + kw * dil] for
 * ow in [lo, hi) where every tap is inside the input row; taps added in kw order (the
 * same sums as one pass per tap). KW, SW constant in the specialised copies. */
#define DW_ROWD(KW, SW, DIL) do { \
	for (int64_t ow = lo; ow < hi; ow++) { \
		float acc = yr[ow]; \
		const float *xp = xr + ow * (SW) + off0; \
		for (int64_t kw = 0; kw < (KW); kw++) acc += wk[kw] * xp[kw * (DIL)]; \
		yr[ow] = acc; \
	} \
} while (0)

static QD_VEC_CLONES void dw_row(float *yr, const float *xr, const float *wk, int64_t KW, int64_t sw, int64_t dil,
		   int64_t off0, int64_t lo, int64_t hi)
{
	if (dil == 1 && KW == 3 && sw == 1) { const int64_t d1 = 1; DW_ROWD(3, 1, d1); }
	else if (dil == 1 && KW == 3 && sw == 2) { const int64_t d1 = 1; DW_ROWD(3, 2, d1); }
	else if (dil == 1 && KW == 5 && sw == 1) { const int64_t d1 = 1; DW_ROWD(5, 1, d1); }
	else if (dil == 1 && KW == 5 && sw == 2) { const int64_t d1 = 1; DW_ROWD(5, 2, d1); }
	else DW_ROWD(KW, sw, dil);
}

/* Depthwise (C/group == 1 and M == C): direct loops per channel; per input row, all kernel
 * columns in one pass over the output row (interior), border columns tap by tap. */
static void conv_depthwise_planes(const struct qd_conv_geom *g, const float *x, const float *w,
				  const float *bias, float *y, int64_t p0, int64_t p1)
{
	int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
	int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
	int64_t KW = g->k[2], ksz = g->k[0] * g->k[1] * KW;
	int64_t mpg = g->M / g->group, sw = g->stride[2], dil = g->dil[2];
	/* valid output-column range per kernel column: 0 <= ow*sw + off < IW; interior
	 * [ilo, ihi) valid for every column */
	int64_t ilo = 0, ihi = OW;
	for (int64_t kw = 0; kw < KW; kw++) {
		int64_t off = kw * dil - g->pad_b[2];
		int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
		int64_t hi = IW - off <= 0 ? 0 : (IW - off - 1) / sw + 1;
		if (hi > OW) hi = OW;
		if (lo > ilo) ilo = lo;
		if (hi < ihi) ihi = hi;
	}
	if (ihi < ilo) ihi = ilo;
	int64_t off0 = -g->pad_b[2];
	for (int64_t p = p0; p < p1; p++) {
		int64_t n = p / g->M, m = p % g->M, ch = m / mpg;
		const float *xc = x + (n * g->C + ch) * ID * IH * IW;
		const float *wm = w + m * ksz;
		float *yc = y + (n * g->M + m) * OD * OH * OW;
		float b = bias ? bias[m] : 0.0f;
		for (int64_t od = 0; od < OD; od++)
			for (int64_t oh = 0; oh < OH; oh++) {
				float *yr = yc + (od * OH + oh) * OW;
				for (int64_t ow = 0; ow < OW; ow++) yr[ow] = b;
				for (int64_t kd = 0; kd < g->k[0]; kd++) {
					int64_t id = od * g->stride[0] - g->pad_b[0] + kd * g->dil[0];
					if (id < 0 || id >= ID) continue;
					for (int64_t kh = 0; kh < g->k[1]; kh++) {
						int64_t ih = oh * g->stride[1] - g->pad_b[1] + kh * g->dil[1];
						if (ih < 0 || ih >= IH) continue;
						const float *xr = xc + (id * IH + ih) * IW;
						const float *wk = wm + (kd * g->k[1] + kh) * KW;
						/* borders: taps in kw order, skipping those outside the row */
						for (int64_t ow = 0; ow < OW; ow++) {
							if (ow == ilo && ihi > ilo) { ow = ihi - 1; continue; }
							float acc = yr[ow];
							for (int64_t kw = 0; kw < KW; kw++) {
								int64_t iw = ow * sw + off0 + kw * dil;
								if (iw >= 0 && iw < IW) acc += wk[kw] * xr[iw];
							}
							yr[ow] = acc;
						}
						dw_row(yr, xr, wk, KW, sw, dil, off0, ilo, ihi);
					}
				}
			}
	}
}

struct dw_job {
	const struct qd_conv_geom *g;
	const float *x, *w, *bias;
	float *y;
	int64_t p0, p1;
};

static void *dw_thread(void *arg)
{
	struct dw_job *j = arg;
	conv_depthwise_planes(j->g, j->x, j->w, j->bias, j->y, j->p0, j->p1);
	return NULL;
}

/* Depthwise over all N*M output planes; with threads > 1 and enough work (>= 2^20
 * multiply-adds) the planes are split into contiguous ranges, one per thread (each
 * plane is computed exactly as single-threaded, so results do not depend on threads). */
static void conv_depthwise(const struct qd_conv_geom *g, const float *x, const float *w,
			   const float *bias, float *y, int threads)
{
	int64_t planes = g->N * g->M;
	double macs = (double)planes * (double)(g->out[0] * g->out[1] * g->out[2]) *
		      (double)(g->k[0] * g->k[1] * g->k[2]);
	int nt = threads > 1 && macs >= (double)(1 << 20) ? (int)QD_MIN((int64_t)threads, planes) : 1;
	if (nt > QD_CONV_MAX_THREADS)
		nt = QD_CONV_MAX_THREADS;
	struct dw_job jobs[QD_CONV_MAX_THREADS];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct dw_job){ g, x, w, bias, y, planes * t / nt, planes * (t + 1) / nt };
	qd_run_jobs(dw_thread, jobs, sizeof jobs[0], nt);
}

/* Plain reference: direct 7-deep loop. */
void qd_conv_f32_ref(const struct qd_conv_geom *g, const float *x, const float *w,
		     const float *bias, float *y)
{
	int64_t cg = g->C / g->group, mg = g->M / g->group;
	for (int64_t n = 0; n < g->N; n++)
		for (int64_t m = 0; m < g->M; m++) {
			int64_t grp = m / mg;
			for (int64_t od = 0; od < g->out[0]; od++)
				for (int64_t oh = 0; oh < g->out[1]; oh++)
					for (int64_t ow = 0; ow < g->out[2]; ow++) {
						double s = bias ? bias[m] : 0;
						for (int64_t ch = 0; ch < cg; ch++)
							for (int64_t kd = 0; kd < g->k[0]; kd++)
								for (int64_t kh = 0; kh < g->k[1]; kh++)
									for (int64_t kw = 0; kw < g->k[2]; kw++) {
										int64_t id = od * g->stride[0] - g->pad_b[0] + kd * g->dil[0];
										int64_t ih = oh * g->stride[1] - g->pad_b[1] + kh * g->dil[1];
										int64_t iw = ow * g->stride[2] - g->pad_b[2] + kw * g->dil[2];
										if (id < 0 || id >= g->in[0] || ih < 0 || ih >= g->in[1] ||
										    iw < 0 || iw >= g->in[2]) continue;
										int64_t ci = grp * cg + ch;
										s += (double)x[(((n * g->C + ci) * g->in[0] + id) * g->in[1] + ih) * g->in[2] + iw] *
										     w[(((m * cg + ch) * g->k[0] + kd) * g->k[1] + kh) * g->k[2] + kw];
									}
						y[(((n * g->M + m) * g->out[0] + od) * g->out[1] + oh) * g->out[2] + ow] = (float)s;
					}
		}
}

/* Column buffer bytes qd_conv_f32 needs (0 when it needs none). im2col runs over blocks of
 * output rows so the buffer stays near QD_CONV_COL_BYTES. */
#define QD_CONV_COL_BYTES ((size_t)4 << 20)
static int64_t conv_block_rows(const struct qd_conv_geom *g)
{
	int64_t kk = g->C / g->group * g->k[0] * g->k[1] * g->k[2];
	int64_t rows = (int64_t)(QD_CONV_COL_BYTES / sizeof(float)) / QD_MAX(1, kk * g->out[2]);
	int64_t nrows = g->out[0] * g->out[1];
	return rows < 1 ? 1 : rows > nrows ? nrows : rows;
}

static bool conv_is_depthwise(const struct qd_conv_geom *g)
{
	return g->C / g->group == 1 && g->group == g->C && g->k[0] * g->k[1] * g->k[2] > 1;
}

static bool conv_is_direct(const struct qd_conv_geom *g)
{
	bool direct = g->k[0] * g->k[1] * g->k[2] == 1;
	for (int i = 0; i < 3; i++)
		if (g->stride[i] != 1 || g->pad_b[i] || g->pad_e[i]) direct = false;
	return direct;
}

size_t qd_conv_work_bytes(const struct qd_conv_geom *g)
{
	if (conv_is_depthwise(g) || conv_is_direct(g)) return 0;
	int64_t kk = g->C / g->group * g->k[0] * g->k[1] * g->k[2];
	return (size_t)(kk * conv_block_rows(g) * g->out[2]) * sizeof(float);
}

/* Optimised: depthwise direct, 1x1/stride-1/no-pad straight into sgemm, im2col (in row
 * blocks) + sgemm otherwise. work: qd_conv_work_bytes(g) bytes, or NULL to allocate.
 * Returns -QD_ENOMEM when the column buffer cannot be allocated. */
int qd_conv_f32(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias,
		float *y, float *work)
{
	return qd_conv_f32_mt(g, x, w, bias, y, work, 1);
}

int qd_conv_f32_mt(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias,
		   float *y, float *work, int threads)
{
	int64_t cg = g->C / g->group, mg = g->M / g->group;
	int64_t ksz = g->k[0] * g->k[1] * g->k[2];
	int64_t isz = g->in[0] * g->in[1] * g->in[2], osz = g->out[0] * g->out[1] * g->out[2];
	if (conv_is_depthwise(g)) {
		conv_depthwise(g, x, w, bias, y, threads);
		return 0;
	}
	bool direct = conv_is_direct(g);
	float *col = work, *own = NULL;
	if (!direct && !col) {
		col = own = malloc(qd_conv_work_bytes(g));
		if (!col) return -QD_ENOMEM;
	}
	int64_t nrows = g->out[0] * g->out[1], brows = direct ? nrows : conv_block_rows(g), OW = g->out[2];
	for (int64_t n = 0; n < g->N; n++)
		for (int64_t gr = 0; gr < g->group; gr++) {
			const float *xg = x + (n * g->C + gr * cg) * isz;
			float *yg = y + (n * g->M + gr * mg) * osz;
			const float *wg = w + gr * mg * cg * ksz;
			if (direct) {
				qd_gemm_f32(false, false, mg, osz, cg, 1.0f, wg, cg, xg, osz, 0.0f, yg, osz);
			} else {
				for (int64_t r0 = 0; r0 < nrows; r0 += brows) {
					int64_t r1 = QD_MIN(nrows, r0 + brows), nc = (r1 - r0) * OW;
					qd_im2col_f32(g, xg, col, r0, r1);
					qd_gemm_f32(false, false, mg, nc, cg * ksz, 1.0f, wg, cg * ksz, col, nc, 0.0f,
						    yg + r0 * OW, osz);
				}
			}
			if (bias)
				for (int64_t m = 0; m < mg; m++) {
					float b = bias[gr * mg + m];
					float *r = yg + m * osz;
					for (int64_t i = 0; i < osz; i++) r[i] += b;
				}
		}
	free(own);
	return 0;
}

static int conv_inputs(struct qd_ctx *c, const struct qd_tensor **x, const struct qd_tensor **w,
		       const struct qd_tensor **b)
{
	*x = qd_ctx_in(c, 0);
	*w = qd_ctx_in(c, 1);
	*b = c->n_in > 2 ? c->in[2] : NULL;
	if (!*x || !*w) return -c->err->code;
	if ((*x)->dtype != QD_DT_FLOAT || (*w)->dtype != QD_DT_FLOAT || (*b && (*b)->dtype != QD_DT_FLOAT))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "only float32 X, W and B are supported");
	return 0;
}

/* Inputs, geometry, bias check and output tensor shared by Conv and ConvTranspose. */
static int conv_setup(struct qd_ctx *c, bool transpose, const struct qd_tensor **x,
		      const struct qd_tensor **w, const struct qd_tensor **b,
		      struct qd_conv_geom *g, struct qd_tensor **y)
{
	int rc = conv_inputs(c, x, w, b);
	if (rc || (rc = conv_geom(c, *x, *w, g, transpose))) return rc;
	if (*b && qd_tensor_count(*b) != g->M)
		return qd_ctx_fail(c, QD_ESHAPE, "bias has %lld values for %lld output channels",
				   (long long)qd_tensor_count(*b), (long long)g->M);
	int64_t od[5] = { g->N, g->M };
	for (int i = 0; i < g->nsp; i++) od[2 + i] = g->out[3 - g->nsp + i];
	*y = qd_ctx_out(c, 0, QD_DT_FLOAT, 2 + g->nsp, od);
	return *y ? 0 : -c->err->code;
}

/* The node's epilogue in place on y [N, M, ...]; bias: M values added first, or NULL. */
static int conv_epilogue(struct qd_ctx *c, struct qd_tensor *y, const float *bias)
{
	const struct qd_epilogue *ep = &c->n->epi;
	int64_t N = y->dims[0], M = y->dims[1];
	bool bn = false;
	for (int k = 0; k < ep->n; k++)
		bn |= ep->s[k].kind == QD_EPI_BN;
	float *sc = NULL;
	if (bn) {
		if (!(sc = malloc((size_t)QD_MAX(M, 1) * 2 * sizeof(float))))
			return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		int rc = epi_bn_params(c, ep, M, sc, sc + M);
		if (rc) {
			free(sc);
			return rc;
		}
	}
	qd_epi_apply_mt(ep, y->data, N, M, qd_tensor_count(y) / QD_MAX(1, N * M), bias, sc, sc ? sc + M : NULL,
			c->e->opts.threads);
	free(sc);
	return 0;
}

int qd_op_conv(struct qd_ctx *c)
{
	const struct qd_tensor *x, *w, *b;
	struct qd_conv_geom g;
	struct qd_tensor *y;
	int rc = conv_setup(c, false, &x, &w, &b, &g, &y);
	if (rc) return rc;
	size_t wb = qd_conv_work_bytes(&g);
	float *work = wb ? qd_ctx_scratch(c, wb) : NULL;
	if (wb && !work) return -c->err->code;
	/* with an epilogue the GEMM paths leave the bias to it (one pass less; same sums) */
	const float *eb = c->n->epi.n && b && !conv_is_depthwise(&g) ? b->data : NULL;
	if (qd_conv_f32_mt(&g, x->data, w->data, b && !eb ? b->data : NULL, y->data, work, c->e->opts.threads))
		return qd_ctx_fail(c, QD_ENOMEM, "cannot allocate the im2col buffer");
	return c->n->epi.n ? conv_epilogue(c, y, eb) : 0;
}

/* ConvEpilogue (internal, engine/fuse_float.c epi_only): a Conv's fused epilogue alone,
 * on the Conv's output [N, C, ...] (bias already added), into a new tensor. */
int qd_op_conv_epilogue(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (x->dtype != QD_DT_FLOAT || x->ndim < 2)
		return qd_ctx_fail(c, QD_EINVAL, "needs a float tensor [N, C, ...]");
	int rc = qd_ctx_out_copy(c, 0, x, x->ndim, x->dims);
	return rc ? rc : conv_epilogue(c, c->out[0], NULL);
}

/* ---- ConvTranspose ---- */
void qd_conv_transpose_f32_ref(const struct qd_conv_geom *g, const float *x, const float *w,
			       const float *bias, float *y)
{
	int64_t cg = g->C / g->group, mg = g->M / g->group;
	int64_t osz = g->out[0] * g->out[1] * g->out[2];
	for (int64_t n = 0; n < g->N; n++)
		for (int64_t m = 0; m < g->M; m++)
			for (int64_t i = 0; i < osz; i++) y[(n * g->M + m) * osz + i] = bias ? bias[m] : 0;
	for (int64_t n = 0; n < g->N; n++)
		for (int64_t ci = 0; ci < g->C; ci++) {
			int64_t gr = ci / cg;
			for (int64_t id = 0; id < g->in[0]; id++)
				for (int64_t ih = 0; ih < g->in[1]; ih++)
					for (int64_t iw = 0; iw < g->in[2]; iw++) {
						float xv = x[(((n * g->C + ci) * g->in[0] + id) * g->in[1] + ih) * g->in[2] + iw];
						for (int64_t mm = 0; mm < mg; mm++)
							for (int64_t kd = 0; kd < g->k[0]; kd++)
								for (int64_t kh = 0; kh < g->k[1]; kh++)
									for (int64_t kw = 0; kw < g->k[2]; kw++) {
										int64_t od = id * g->stride[0] - g->pad_b[0] + kd * g->dil[0];
										int64_t oh = ih * g->stride[1] - g->pad_b[1] + kh * g->dil[1];
										int64_t ow = iw * g->stride[2] - g->pad_b[2] + kw * g->dil[2];
										if (od < 0 || od >= g->out[0] || oh < 0 || oh >= g->out[1] ||
										    ow < 0 || ow >= g->out[2]) continue;
										int64_t m = gr * mg + mm;
										y[(((n * g->M + m) * g->out[0] + od) * g->out[1] + oh) * g->out[2] + ow] +=
											xv * w[(((ci * mg + mm) * g->k[0] + kd) * g->k[1] + kh) * g->k[2] + kw];
									}
					}
		}
}

/* sgemm into columns then col2im (scatter-add). */
int qd_conv_transpose_f32(const struct qd_conv_geom *g, const float *x, const float *w,
			  const float *bias, float *y, float *work)
{
	int64_t cg = g->C / g->group, mg = g->M / g->group;
	int64_t ksz = g->k[0] * g->k[1] * g->k[2];
	int64_t isz = g->in[0] * g->in[1] * g->in[2], osz = g->out[0] * g->out[1] * g->out[2];
	float *col = work, *own = NULL;
	if (!col && !(col = own = malloc((size_t)(mg * ksz * isz) * sizeof(float)))) return -QD_ENOMEM;
	for (int64_t n = 0; n < g->N; n++)
		for (int64_t gr = 0; gr < g->group; gr++) {
			const float *xg = x + (n * g->C + gr * cg) * isz;
			const float *wg = w + gr * cg * mg * ksz;
			/* col[mg*ksz, isz] = wg^T [mg*ksz, cg] * xg [cg, isz] */
			qd_gemm_f32(true, false, mg * ksz, isz, cg, 1.0f, wg, mg * ksz, xg, isz, 0.0f, col, isz);
			for (int64_t mm = 0; mm < mg; mm++) {
				int64_t m = gr * mg + mm;
				float *yc = y + (n * g->M + m) * osz;
				float b = bias ? bias[m] : 0.0f;
				for (int64_t i = 0; i < osz; i++) yc[i] = b;
				for (int64_t kd = 0; kd < g->k[0]; kd++)
					for (int64_t kh = 0; kh < g->k[1]; kh++)
						for (int64_t kw = 0; kw < g->k[2]; kw++) {
							const float *cr = col + ((mm * g->k[0] + kd) * g->k[1] + kh) * g->k[2] * isz + kw * isz;
							for (int64_t id = 0; id < g->in[0]; id++) {
								int64_t od = id * g->stride[0] - g->pad_b[0] + kd * g->dil[0];
								if (od < 0 || od >= g->out[0]) continue;
								for (int64_t ih = 0; ih < g->in[1]; ih++) {
									int64_t oh = ih * g->stride[1] - g->pad_b[1] + kh * g->dil[1];
									if (oh < 0 || oh >= g->out[1]) continue;
									const float *src = cr + (id * g->in[1] + ih) * g->in[2];
									float *dst = yc + (od * g->out[1] + oh) * g->out[2];
									for (int64_t iw = 0; iw < g->in[2]; iw++) {
										int64_t ow = iw * g->stride[2] - g->pad_b[2] + kw * g->dil[2];
										if (ow >= 0 && ow < g->out[2]) dst[ow] += src[iw];
									}
								}
							}
						}
			}
		}
	free(own);
	return 0;
}

int qd_op_conv_transpose(struct qd_ctx *c)
{
	const struct qd_tensor *x, *w, *b;
	struct qd_conv_geom g;
	struct qd_tensor *y;
	int rc = conv_setup(c, true, &x, &w, &b, &g, &y);
	if (rc) return rc;
	size_t wb = (size_t)(g.M / g.group * g.k[0] * g.k[1] * g.k[2] * g.in[0] * g.in[1] * g.in[2]) * sizeof(float);
	float *work = qd_ctx_scratch(c, wb);
	if (!work) return -c->err->code;
	if (qd_conv_transpose_f32(&g, x->data, w->data, b ? b->data : NULL, y->data, work))
		return qd_ctx_fail(c, QD_ENOMEM, "cannot allocate the column buffer");
	return 0;
}

/* ---- fused float epilogue (engine/fuse_float.c builds it) ---- */
static inline float epi_sigmoid(float x)
{
	float e = qd_expf(-fabsf(x));   /* as the Sigmoid kernel: same values */
	return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static inline float epi_one(const struct qd_epi_step *s, float x, float bs, float bh)
{
	switch (s->kind) {
	case QD_EPI_MUL: return x * s->a;
	case QD_EPI_ADD: return x + s->a;
	case QD_EPI_DIV: return x / s->a;
	case QD_EPI_RELU: return x > 0 ? x : 0;
	case QD_EPI_CLIP: return x < s->b ? s->b : x > s->c ? s->c : x;
	case QD_EPI_HSIG: return fmaxf(0.0f, fminf(1.0f, s->a * x + s->b));
	case QD_EPI_SIGMOID: return epi_sigmoid(x);
	case QD_EPI_HSWISH: return x * fmaxf(0.0f, fminf(1.0f, x / 6.0f + 0.5f));
	case QD_EPI_XCLIP: { float t = x + s->a; t = t < s->b ? s->b : t > s->c ? s->c : t; return x * t; }
	case QD_EPI_XHSIG: return x * fmaxf(0.0f, fminf(1.0f, s->a * x + s->b));
	case QD_EPI_BN: return x * bs + bh;
	default: return x;
	}
}

void qd_epi_apply_ref(const struct qd_epilogue *ep, float *y, int64_t N, int64_t C, int64_t sp,
		      const float *bias, const float *bn_s, const float *bn_h)
{
	for (int64_t n = 0; n < N; n++)
		for (int64_t ch = 0; ch < C; ch++)
			for (int64_t i = 0; i < sp; i++) {
				float *v = &y[(n * C + ch) * sp + i];
				if (bias)
					*v += bias[ch];
				for (int k = 0; k < ep->n; k++)
					*v = epi_one(&ep->s[k], *v, bn_s ? bn_s[ch] : 0, bn_h ? bn_h[ch] : 0);
			}
}

/* Steps on m values (one chunk of one channel), each its own vectorisable loop. */
static QD_VEC_CLONES void epi_chunk(const struct qd_epilogue *ep, float *Y, int64_t m, const float *bias,
				     float bs, float bh)
{
	if (bias) {
		float bv = *bias;
		for (int64_t i = 0; i < m; i++) Y[i] += bv;
	}
	for (int k = 0; k < ep->n; k++) {
		const struct qd_epi_step *s = &ep->s[k];
		float a = s->a, b = s->b, c = s->c;
		switch (s->kind) {
		case QD_EPI_MUL: for (int64_t i = 0; i < m; i++) Y[i] *= a; break;
		case QD_EPI_ADD: for (int64_t i = 0; i < m; i++) Y[i] += a; break;
		case QD_EPI_DIV: for (int64_t i = 0; i < m; i++) Y[i] /= a; break;
		case QD_EPI_RELU: for (int64_t i = 0; i < m; i++) Y[i] = Y[i] > 0 ? Y[i] : 0; break;
		case QD_EPI_CLIP:
			for (int64_t i = 0; i < m; i++) { float x = Y[i]; Y[i] = x < b ? b : x > c ? c : x; }
			break;
		case QD_EPI_HSIG: for (int64_t i = 0; i < m; i++) Y[i] = fmaxf(0.0f, fminf(1.0f, a * Y[i] + b)); break;
		case QD_EPI_SIGMOID: for (int64_t i = 0; i < m; i++) Y[i] = epi_sigmoid(Y[i]); break;
		case QD_EPI_HSWISH:
			for (int64_t i = 0; i < m; i++) Y[i] = Y[i] * fmaxf(0.0f, fminf(1.0f, Y[i] / 6.0f + 0.5f));
			break;
		case QD_EPI_XCLIP:
			for (int64_t i = 0; i < m; i++) {
				float x = Y[i], t = x + a;
				t = t < b ? b : t > c ? c : t;
				Y[i] = x * t;
			}
			break;
		case QD_EPI_XHSIG: for (int64_t i = 0; i < m; i++) Y[i] = Y[i] * fmaxf(0.0f, fminf(1.0f, a * Y[i] + b)); break;
		case QD_EPI_BN: for (int64_t i = 0; i < m; i++) Y[i] = Y[i] * bs + bh; break;
		default: break;
		}
	}
}

/* Optimised: every step as its own loop over cache-sized chunks of each channel plane;
 * planes [p0, p1) of the N*C. */
static void epi_planes(const struct qd_epilogue *ep, float *y, int64_t C, int64_t sp, const float *bias,
		       const float *bn_s, const float *bn_h, int64_t p0, int64_t p1)
{
	for (int64_t p = p0; p < p1; p++) {
		int64_t ch = p % C;
		float bs = bn_s ? bn_s[ch] : 0, bh = bn_h ? bn_h[ch] : 0;
		for (int64_t i0 = 0; i0 < sp; i0 += 4096)
			epi_chunk(ep, y + p * sp + i0, QD_MIN(4096, sp - i0), bias ? bias + ch : NULL, bs, bh);
	}
}

void qd_epi_apply(const struct qd_epilogue *ep, float *y, int64_t N, int64_t C, int64_t sp,
		  const float *bias, const float *bn_s, const float *bn_h)
{
	epi_planes(ep, y, C, sp, bias, bn_s, bn_h, 0, N * C);
}

struct epi_job {
	const struct qd_epilogue *ep;
	float *y;
	int64_t C, sp;
	const float *bias, *bn_s, *bn_h;
	int64_t p0, p1;
};

static void *epi_thread(void *arg)
{
	struct epi_job *j = arg;
	epi_planes(j->ep, j->y, j->C, j->sp, j->bias, j->bn_s, j->bn_h, j->p0, j->p1);
	return NULL;
}

/* qd_epi_apply with the planes split over up to `threads` threads from 2^18 values (a
 * memory-bound pass: below that a thread start costs more than it saves). */
void qd_epi_apply_mt(const struct qd_epilogue *ep, float *y, int64_t N, int64_t C, int64_t sp,
		     const float *bias, const float *bn_s, const float *bn_h, int threads)
{
	int64_t planes = N * C;
	int nt = threads > 1 && planes * sp >= (1 << 18) ? (int)QD_MIN((int64_t)threads, planes) : 1;
	if (nt > QD_CONV_MAX_THREADS)
		nt = QD_CONV_MAX_THREADS;
	struct epi_job jobs[QD_CONV_MAX_THREADS];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct epi_job){ ep, y, C, sp, bias, bn_s, bn_h, planes * t / nt, planes * (t + 1) / nt };
	qd_run_jobs(epi_thread, jobs, sizeof jobs[0], nt);
}

/* Per-channel BN scale/shift of a fused epilogue into sc/sh (C each), as the
 * BatchNormalization kernel computes them. */
static int epi_bn_params(struct qd_ctx *c, const struct qd_epilogue *ep, int64_t C, float *sc, float *sh)
{
	const struct qd_tensor *t[4];
	for (int k = 0; k < 4; k++) {
		struct qd_slot *s = qd_engine_slot(c->e, ep->bn[k]);
		if (!s || !s->has || s->t.dtype != QD_DT_FLOAT || qd_tensor_count(&s->t) != C)
			return qd_ctx_fail(c, QD_ESHAPE, "fused BatchNormalization needs %lld float values per input",
					   (long long)C);
		t[k] = &s->t;
	}
	for (int64_t ch = 0; ch < C; ch++) {   /* float32, ORT's order (see qd_op_batch_norm) */
		sc[ch] = (1.0f / sqrtf((float)qd_tensor_get_f64(t[3], ch) + ep->bn_eps)) * (float)qd_tensor_get_f64(t[0], ch);
		sh[ch] = (float)qd_tensor_get_f64(t[1], ch) - (float)qd_tensor_get_f64(t[2], ch) * sc[ch];
	}
	return 0;
}
