/* engine/ops_quant_conv.c — ConvInteger and QLinearConv: 8-bit im2col (padding with the
 * input zero point, so padded taps contribute 0) followed by the integer GEMM of
 * engine/qgemm.c per image and group; QLinearConv requantizes with a per-channel float
 * multiplier x_scale * w_scale[m] / y_scale. 1-3 spatial dims, groups, dilations, pads,
 * strides and auto_pad. */
#include <pthread.h>
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
/* Integer arithmetic: every clone computes the same sums. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define QCONV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QCONV_CLONES
#endif

QCONV_CLONES __attribute__((optimize("O3"))) static int qconv_depthwise_range(const struct qconv_geom *g0,
			   const struct qd_tensor *x, int32_t xz, const struct qd_tensor *w, const int32_t *wz,
			   bool wz_per, int32_t *acc, int64_t m_lo, int64_t m_hi)
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
	/* the channel plane as int32 minus the zero point inside a zero border covering every
	 * tap (a padded tap adds 0), so each tap runs over whole output rows unchecked */
	int64_t P[3];
	for (int i = 0; i < 3; i++)
		P[i] = (g->out[i] - 1) * g->stride[i] + (g->k[i] - 1) * g->dil[i] + 1;
	int64_t Mg = g->M / g->group, psize = P[0] * P[1] * P[2];
	int64_t c2a = QD_MAX((int64_t)0, -g->pad_b[2]), c2b = QD_MIN(g->in[2], P[2] - g->pad_b[2]);
	int32_t *wk = malloc((size_t)g->ksize * sizeof *wk + 1);
	int32_t *xp = calloc((size_t)psize + 1, sizeof *xp);
	if (!wk || !xp) {
		free(wk); free(xp);
		return -QD_ENOMEM;
	}
	bool xs = x->dtype == QD_DT_INT8, ws = w->dtype == QD_DT_INT8;
	int64_t last_ch = -1;
	for (int64_t img = 0; img < g->N; img++, last_ch = -1)
		for (int64_t m = m_lo; m < m_hi; m++) {
			int64_t ch = m / Mg;
			int32_t z = wz[wz_per ? m : 0];
			for (int64_t k = 0; k < g->ksize; k++)
				wk[k] = (ws ? ((const int8_t *)w->data)[m * g->ksize + k]
					    : ((const uint8_t *)w->data)[m * g->ksize + k]) - z;
			if (ch != last_ch) {
				const uint8_t *xc = (const uint8_t *)x->data + (img * g->C + ch) * g->isize;
				for (int64_t i0 = 0; i0 < g->in[0]; i0++) {
					int64_t p0 = i0 + g->pad_b[0];
					if (p0 < 0 || p0 >= P[0])
						continue;
					for (int64_t i1 = 0; i1 < g->in[1]; i1++) {
						int64_t p1 = i1 + g->pad_b[1];
						if (p1 < 0 || p1 >= P[1])
							continue;
						const uint8_t *src = xc + (i0 * g->in[1] + i1) * g->in[2];
						int32_t *dst = xp + (p0 * P[1] + p1) * P[2] + g->pad_b[2];
						if (xs)
							for (int64_t i2 = c2a; i2 < c2b; i2++)
								dst[i2] = (int32_t)(int8_t)src[i2] - xz;
						else
							for (int64_t i2 = c2a; i2 < c2b; i2++)
								dst[i2] = (int32_t)src[i2] - xz;
					}
				}
				last_ch = ch;
			}
			int32_t *out = acc + (img * g->M + m) * g->osize;
			int64_t W = g->out[2], s2 = g->stride[2];
			for (int64_t o0 = 0; o0 < g->out[0]; o0++)
			for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
				int32_t *restrict orow = out + (o0 * g->out[1] + o1) * W;
				memset(orow, 0, (size_t)W * sizeof *orow);
				for (int64_t k0 = 0; k0 < g->k[0]; k0++)
				for (int64_t k1 = 0; k1 < g->k[1]; k1++) {
					const int32_t *xr = xp + ((o0 * g->stride[0] + k0 * g->dil[0]) * P[1] +
								  o1 * g->stride[1] + k1 * g->dil[1]) * P[2];
					const int32_t *wr = wk + (k0 * g->k[1] + k1) * g->k[2];
					for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
						int32_t wv = wr[k2];
						const int32_t *restrict xo = xr + k2 * g->dil[2];
						if (s2 == 1) {
#pragma GCC ivdep
							for (int64_t o2 = 0; o2 < W; o2++)
								orow[o2] += wv * xo[o2];
						} else {
							for (int64_t o2 = 0; o2 < W; o2++)
								orow[o2] += wv * xo[o2 * s2];
						}
					}
				}
			}
		}
	free(wk); free(xp);
	return 0;
}

struct dw_job {
	const struct qconv_geom *g;
	const struct qd_tensor *x, *w;
	int32_t xz;
	const int32_t *wz;
	bool wz_per;
	int32_t *acc;
	int64_t m0, m1;
	int rc;
};

static void *dw_run(void *arg)
{
	struct dw_job *j = arg;
	j->rc = qconv_depthwise_range(j->g, j->x, j->xz, j->w, j->wz, j->wz_per, j->acc, j->m0, j->m1);
	return NULL;
}

/* The depthwise sums, output channels split over the engine's threads when it pays. */
static int qconv_depthwise(struct qd_ctx *c, const struct qconv_geom *g, const struct qd_tensor *x,
			   int32_t xz, const struct qd_tensor *w, const int32_t *wz, bool wz_per, int32_t *acc)
{
	double ops = (double)g->N * (double)g->M * (double)g->osize * (double)g->ksize;
	int nt = c->e->opts.threads > 1 && ops >= (double)(1 << 21) ? (int)QD_MIN((int64_t)c->e->opts.threads, g->M) : 1;
	nt = nt < 1 ? 1 : nt > 8 ? 8 : nt;
	struct dw_job jobs[8];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct dw_job){ g, x, w, xz, wz, wz_per, acc, g->M * t / nt, g->M * (t + 1) / nt, 0 };
	qd_run_jobs(dw_run, jobs, sizeof jobs[0], nt);
	int rc = 0;
	for (int t = 0; t < nt; t++)
		if (jobs[t].rc && !rc)
			rc = jobs[t].rc;
	return rc ? qd_ctx_fail(c, -rc, "out of memory") : 0;
}

/* Tests set this to run depthwise convolutions through the im2col + GEMM path. */
int qd_qconv_force_gemm;
/* Tests set this to run depthwise QLinearConv on channel planes (qconv_depthwise_range)
 * instead of channels last (qconv_depthwise_cl). */
int qd_qconv_dw_planes;

/* acc[N][M][osize] = conv of (x - x_zp) with (w - w_zp[m]). */
static int qconv_acc(struct qd_ctx *c, const struct qconv_geom *g, const struct qd_tensor *x,
		     int32_t xz, const struct qd_tensor *w, const int32_t *wz, bool wz_per, int32_t *acc)
{
	int64_t Cg = g->C / g->group, Mg = g->M / g->group, Kc = Cg * g->ksize;
	if (Cg == 1 && g->group > 1 && !qd_qconv_force_gemm && !qd_qconv_ref_path)
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

/* ---- pixel-major GEMM: C^T[p][m] = colT[p][k] . W^T[k][m] ----------------------------
 * The activations are the GEMM's A (u8 or s8 rows, one per output pixel, packed per call by
 * qgemm.c) and the weights its B, packed once (qd_qconv_prepack at load, else on the first
 * run): with AVX-512 VNNI this is qgemm.c's u8 x s8 byte path (vpdpbusd) with the weights
 * already in its layout, where the weight-major form (weights as A) re-packed the whole
 * im2col matrix as B every call. Pixels run in tiles of TP rows (im2col of the tile, GEMM,
 * epilogue while the tile is in cache); the epilogue adds the bias, requantizes a row of
 * channels at a time (qd_q_requant_row: the same float multiply and round-half-even as
 * qd_q_round_sat) and stores the tile channel-major. Tiles are split over threads. */
struct qconv_pack {
	const void *w;              /* the weight data this was packed from */
	int64_t M, Kc, ks, group;       /* ks: taps per channel (kernel size) */
	struct qd_qgemm_packed *pb[];   /* per group: B = W_g^T [Kc][M / group] */
};

void qd_qconv_pack_free(void *p)
{
	struct qconv_pack *pk = p;
	if (!pk)
		return;
	for (int64_t gr = 0; gr < pk->group; gr++)
		qd_qgemm_packed_free(pk->pb[gr]);
	free(pk);
}

static bool qconv_is_depthwise(int64_t Cg, int64_t group)
{
	return Cg == 1 && group > 1 && !qd_qconv_force_gemm;
}

/* Pack w ([M][Kc] bytes, signed or not) with zero points wz (per row of w when wz_per). */
static int qconv_pack_new(const void *wd, bool w_signed, int64_t M, int64_t Kc, int64_t ks, int64_t group,
			  const int32_t *wz, bool wz_per, struct qconv_pack **out)
{
	int64_t Mg = M / group;
	struct qconv_pack *pk = calloc(1, sizeof(*pk) + (size_t)group * sizeof(pk->pb[0]));
	uint8_t *wt = malloc((size_t)(Kc * Mg) + 1);
	*out = NULL;
	if (!pk || !wt) {
		free(pk);
		free(wt);
		return -QD_ENOMEM;
	}
	pk->w = wd;
	pk->M = M;
	pk->Kc = Kc;
	pk->ks = ks;
	pk->group = group;
	int64_t Cg = Kc / ks;
	for (int64_t gr = 0; gr < group; gr++) {
		const uint8_t *src = (const uint8_t *)wd + gr * Mg * Kc;
		/* row (tap, channel) of W^T: the order of the channels-last im2col rows */
		for (int64_t m = 0; m < Mg; m++)
			for (int64_t ch = 0; ch < Cg; ch++)
				for (int64_t t = 0; t < ks; t++)
					wt[(t * Cg + ch) * Mg + m] = src[m * Kc + ch * ks + t];
		struct qd_qgemm_args q = { .N = Mg, .K = Kc, .B = wt, .ldb = Mg, .b_signed = w_signed,
					   .b_zp = wz + (wz_per ? gr * Mg : 0), .b_zp_per_col = wz_per };
		int rc = qd_qgemm_pack_b(&q, &pk->pb[gr]);
		if (rc) {
			free(wt);
			qd_qconv_pack_free(pk);
			return rc;
		}
	}
	free(wt);
	*out = pk;
	return 0;
}

int qd_qconv_prepack(struct qd_enode *n, const struct qd_tensor *w, const struct qd_tensor *wz)
{
	if (n->priv || !w || !qd_is_q8(w->dtype) || w->ndim < 3 || w->ndim > 5 || !w->dims[0])
		return 0;
	int64_t group = qd_node_attr_int(n->proto, "group", 1), M = w->dims[0];
	int64_t Kc = qd_tensor_count(w) / M;
	if (group < 1 || M % group || !w->dims[1] || qconv_is_depthwise(w->dims[1], group))
		return 0;
	int64_t nz = wz ? qd_tensor_count(wz) : 1;
	if (wz && (!qd_is_q8(wz->dtype) || wz->dtype != w->dtype || (nz != 1 && nz != M)))
		return 0;
	int32_t *zp = malloc((size_t)nz * sizeof(int32_t));
	if (!zp)
		return -QD_ENOMEM;
	for (int64_t i = 0; i < nz; i++)
		zp[i] = wz ? (int32_t)qd_tensor_get_i64(wz, i) : 0;
	struct qconv_pack *pk;
	int rc = qconv_pack_new(w->data, w->dtype == QD_DT_INT8, M, Kc, Kc / w->dims[1], group, zp, nz > 1, &pk);
	free(zp);
	if (rc)
		return rc;
	n->priv = pk;
	n->priv_free = qd_qconv_pack_free;
	return 0;
}

/* What the tiles end in: int32 sums (ConvInteger) or requantized codes (QLinearConv). */
struct qconv_epi {
	int32_t *acc;               /* [N][M][osize] int32 out, or NULL */
	void *y;                    /* [N][M][osize] 8-bit out */
	const float *mul;           /* [M] */
	const int32_t *bias;        /* [M] or NULL */
	int32_t yz, lo, hi;
	bool y_signed;
};

struct qconv_job {
	const struct qconv_geom *g;
	const struct qd_tensor *x;
	int32_t xz;
	const struct qconv_pack *pk;
	const struct qconv_epi *ep;
	int64_t tp, t0, t1;         /* tile rows; tiles [t0, t1) over all images */
	const uint8_t *xt;          /* the input channels last: [N][isize][C] */
	const int64_t *tk;          /* per tap: k0 * dil0, k1 * dil1, k2 * dil2 */
	bool direct;                /* 1x1, stride 1, no pads: xt is the im2col matrix */
	int rc;
};

/* tk[3 t .. 3 t + 2] = the input offsets k0 * dil0, k1 * dil1, k2 * dil2 of tap t. */
static void qconv_tap_offsets(const struct qconv_geom *g, int64_t *tk)
{
	for (int64_t k0 = 0, t = 0; k0 < g->k[0]; k0++)
		for (int64_t k1 = 0; k1 < g->k[1]; k1++)
			for (int64_t k2 = 0; k2 < g->k[2]; k2++, t++) {
				tk[3 * t] = k0 * g->dil[0];
				tk[3 * t + 1] = k1 * g->dil[1];
				tk[3 * t + 2] = k2 * g->dil[2];
			}
}

/* The output pixel after (o0, o1, o2), in row-major order. */
static inline void qconv_next_pixel(const struct qconv_geom *g, int64_t *o0, int64_t *o1, int64_t *o2)
{
	if (++*o2 == g->out[2]) {
		*o2 = 0;
		if (++*o1 == g->out[1]) {
			*o1 = 0;
			++*o0;
		}
	}
}

/* colT rows for pixels [p0, p0 + np) of one image / group: per tap, the Cg channel bytes
 * of the channels-last input xg (row stride C), or the pad byte outside the input. */
QCONV_CLONES __attribute__((optimize("O3")))
static void im2col_t_u8(const struct qconv_geom *g, const uint8_t *xg, int64_t Cg, const int64_t *tk,
			uint8_t pad, int64_t p0, int64_t np, uint8_t *colt)
{
	int64_t Kc = Cg * g->ksize, C = g->C;
	int64_t o2 = p0 % g->out[2], o1 = (p0 / g->out[2]) % g->out[1], o0 = p0 / (g->out[2] * g->out[1]);
	for (int64_t p = 0; p < np; p++) {
		uint8_t *row = colt + p * Kc;
		int64_t i0 = o0 * g->stride[0] - g->pad_b[0], i1 = o1 * g->stride[1] - g->pad_b[1];
		int64_t i2 = o2 * g->stride[2] - g->pad_b[2];
		for (int64_t t = 0; t < g->ksize; t++, row += Cg) {
			int64_t a = i0 + tk[3 * t], b = i1 + tk[3 * t + 1], d = i2 + tk[3 * t + 2];
			bool out = a < 0 || a >= g->in[0] || b < 0 || b >= g->in[1] || d < 0 || d >= g->in[2];
			const uint8_t *src = out ? NULL : xg + ((a * g->in[1] + b) * g->in[2] + d) * C;
			if (Cg < 16)   /* a few bytes: a call to memcpy / memset costs more */
				for (int64_t k = 0; k < Cg; k++)
					row[k] = out ? pad : src[k];
			else if (out)
				memset(row, pad, (size_t)Cg);
			else
				memcpy(row, src, (size_t)Cg);
		}
		qconv_next_pixel(g, &o0, &o1, &o2);
	}
}

static void *qconv_tiles(void *arg)
{
	struct qconv_job *j = arg;
	const struct qconv_geom *g = j->g;
	const struct qconv_epi *ep = j->ep;
	int64_t Cg = g->C / g->group, Mg = g->M / g->group, Kc = Cg * g->ksize, tp = j->tp;
	int64_t tiles = (g->osize + tp - 1) / tp;
	uint8_t *colt = malloc((size_t)(tp * Kc) + 1), *q8 = malloc((size_t)(tp * Mg) + 1);
	int32_t *acct = malloc((size_t)(tp * Mg + 1) * sizeof(int32_t));
	if (!colt || !q8 || !acct) {
		j->rc = -QD_ENOMEM;
		goto out;
	}
	for (int64_t t = j->t0; t < j->t1; t++) {
		int64_t img = t / tiles, p0 = (t % tiles) * tp, np = QD_MIN(tp, g->osize - p0);
		for (int64_t gr = 0; gr < g->group; gr++) {
			const uint8_t *xg = j->xt + img * g->isize * g->C + gr * Cg, *a = colt;
			int64_t lda = Kc;
			if (j->direct) {
				a = xg + p0 * g->C;   /* 1x1, stride 1, no pads: the rows are the input's */
				lda = g->C;
			} else {
				im2col_t_u8(g, xg, Cg, j->tk, (uint8_t)j->xz, p0, np, colt);
			}
			struct qd_qgemm_args q = {
				.M = np, .N = Mg, .K = Kc,
				.A = a, .lda = lda, .a_signed = j->x->dtype == QD_DT_INT8,
				.a_zp = &j->xz, .C = acct, .ldc = Mg, .threads = 1,
			};
			if ((j->rc = qd_qgemm_prepacked(&q, j->pk->pb[gr])))
				goto out;
			int64_t m0 = gr * Mg, base = (img * g->M + m0) * g->osize + p0;
			if (ep->acc) {
				for (int64_t m = 0; m < Mg; m++)
					for (int64_t p = 0; p < np; p++)
						ep->acc[base + m * g->osize + p] = acct[p * Mg + m];
				continue;
			}
			qd_q_requant_rows(acct, np, Mg, ep->mul + m0, ep->bias ? ep->bias + m0 : NULL, ep->yz, ep->lo,
					  ep->hi, ep->y_signed, q8);
			qd_transpose_u8(q8, np, Mg, Mg, (uint8_t *)ep->y + base, g->osize);
		}
	}
out:
	free(colt);
	free(q8);
	free(acct);
	return NULL;
}

/* xt[n][p][c] = x[n][c][p]. */
static void qconv_to_channels_last(const uint8_t *x, int64_t N, int64_t C, int64_t P, uint8_t *xt)
{
	for (int64_t n = 0; n < N; n++, x += C * P, xt += C * P)
		qd_transpose_u8(x, C, P, P, xt, C);
}

/* The pixel-major convolution of x with the packed weights pk into ep. */
static int qconv_pixmajor(struct qd_ctx *c, const struct qconv_geom *g, const struct qd_tensor *x,
			  int32_t xz, const struct qconv_pack *pk, const struct qconv_epi *ep)
{
	int64_t Cg = g->C / g->group, Mg = g->M / g->group, Kc = Cg * g->ksize;
	if (!g->N || !g->osize || !g->M)
		return 0;
	int64_t *tk = malloc((size_t)(3 * g->ksize) * sizeof *tk + 1);
	uint8_t *xt = malloc((size_t)(g->N * g->C * g->isize) + 1);
	if (!tk || !xt) {
		free(tk);
		free(xt);
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	}
	qconv_tap_offsets(g, tk);
	bool direct = g->ksize == 1;
	for (int i = 0; i < 3; i++)
		direct = direct && g->stride[i] == 1 && g->pad_b[i] == 0 && g->out[i] == g->in[i];
	qconv_to_channels_last(x->data, g->N, g->C, g->isize, xt);
	/* tiles of about 32 KiB of im2col rows (at least 64, at most 1024 pixels, multiples of 8) */
	int64_t tp = QD_MAX((int64_t)64, QD_MIN((int64_t)1024, (32768 / QD_MAX(Kc, (int64_t)1)) & ~(int64_t)7));
	int64_t tiles = g->N * ((g->osize + tp - 1) / tp);
	double ops = (double)g->N * (double)g->osize * (double)Kc * (double)g->M;
	int nt = c->e->opts.threads > 1 && ops >= (double)(1 << 22) ? (int)QD_MIN((int64_t)c->e->opts.threads, tiles) : 1;
	if (nt > 8)
		nt = 8;
	struct qconv_job jobs[8];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct qconv_job){ g, x, xz, pk, ep, tp, tiles * t / nt, tiles * (t + 1) / nt, xt, tk, direct, 0 };
	qd_run_jobs(qconv_tiles, jobs, sizeof jobs[0], nt);
	int rc = 0;
	for (int t = 0; t < nt; t++)
		if (jobs[t].rc && !rc)
			rc = jobs[t].rc;
	free(tk);
	free(xt);
	(void)Mg;
	return rc ? qd_ctx_fail(c, -rc, "integer convolution failed") : 0;
}

/* ---- channels-last depthwise (channel multiplier 1, QLinearConv) ----
 * The input goes channels last once; each output pixel adds up its taps that fall inside
 * the input (a tap in the padding holds x_zp and adds 0) with the channels as the vector
 * lanes; a tile of pixels is then requantized and transposed back to channels first. The
 * int32 sums are those of the other paths, so the codes are too. */
struct dwl_job {
	const struct qconv_geom *g;
	const uint8_t *xt;          /* [N][isize][C] */
	bool x_signed;
	int32_t xz;
	const int32_t *wk;          /* [ksize][C]: w - w_zp */
	const int64_t *tk;          /* per tap: k0 * dil0, k1 * dil1, k2 * dil2 */
	const struct qconv_epi *ep;
	int64_t tp, t0, t1;         /* tile pixels; tiles [t0, t1) over all images */
	int rc;
};

/* Each pixel: the taps inside the input listed once (input offset, tap), then per tap one
 * pass over the channels. */
QCONV_CLONES __attribute__((optimize("O3")))
static void dwl_tile(const struct dwl_job *j, int64_t img, int64_t p0, int64_t np, int32_t *acc, int64_t *tofs,
		     int32_t *tidx)
{
	const struct qconv_geom *g = j->g;
	int64_t C = g->C;
	const uint8_t *xi = j->xt + img * g->isize * C;
	int64_t o2 = p0 % g->out[2], o1 = (p0 / g->out[2]) % g->out[1], o0 = p0 / (g->out[2] * g->out[1]);
	int32_t xz = j->xz;
	bool xs = j->x_signed;
	for (int64_t p = 0; p < np; p++) {
		int32_t *restrict a = acc + p * C;
		int64_t i0 = o0 * g->stride[0] - g->pad_b[0], i1 = o1 * g->stride[1] - g->pad_b[1];
		int64_t i2 = o2 * g->stride[2] - g->pad_b[2];
		int nt = 0;
		for (int64_t t = 0; t < g->ksize; t++) {
			int64_t u0 = i0 + j->tk[3 * t], u1 = i1 + j->tk[3 * t + 1], u2 = i2 + j->tk[3 * t + 2];
			if (u0 < 0 || u0 >= g->in[0] || u1 < 0 || u1 >= g->in[1] || u2 < 0 || u2 >= g->in[2])
				continue;
			tofs[nt] = ((u0 * g->in[1] + u1) * g->in[2] + u2) * C;
			tidx[nt++] = (int32_t)t;
		}
		/* whole-row loops over the channels (GCC vectorises these for int8 and uint8
		 * alike; fixed 16-lane chunks with the taps inside came out scalar for int8) */
		memset(a, 0, (size_t)C * sizeof *a);
		for (int t = 0; t < nt; t++) {
			const uint8_t *restrict xr = xi + tofs[t];
			const int32_t *restrict wr = j->wk + tidx[t] * C;
			if (xs)
				for (int64_t c = 0; c < C; c++)
					a[c] += ((int32_t)(int8_t)xr[c] - xz) * wr[c];
			else
				for (int64_t c = 0; c < C; c++)
					a[c] += ((int32_t)xr[c] - xz) * wr[c];
		}
		qconv_next_pixel(g, &o0, &o1, &o2);
	}
}

static void *dwl_run(void *arg)
{
	struct dwl_job *j = arg;
	const struct qconv_geom *g = j->g;
	const struct qconv_epi *ep = j->ep;
	int64_t C = g->C, tp = j->tp, tiles = (g->osize + tp - 1) / tp;
	int32_t *acc = malloc((size_t)(tp * C) * sizeof *acc + 1), *tidx = malloc((size_t)g->ksize * sizeof *tidx + 1);
	int64_t *tofs = malloc((size_t)g->ksize * sizeof *tofs + 1);
	uint8_t *q8 = malloc((size_t)(tp * C) + 1);
	if (!acc || !q8 || !tidx || !tofs) {
		j->rc = -QD_ENOMEM;
		goto out;
	}
	for (int64_t t = j->t0; t < j->t1; t++) {
		int64_t img = t / tiles, p0 = (t % tiles) * tp, np = QD_MIN(tp, g->osize - p0);
		dwl_tile(j, img, p0, np, acc, tofs, tidx);
		qd_q_requant_rows(acc, np, C, ep->mul, ep->bias, ep->yz, ep->lo, ep->hi, ep->y_signed, q8);
		qd_transpose_u8(q8, np, C, C, (uint8_t *)ep->y + img * C * g->osize + p0, g->osize);
	}
out:
	free(acc);
	free(q8);
	free(tidx);
	free(tofs);
	return NULL;
}

static int qconv_depthwise_cl(struct qd_ctx *c, const struct qconv_geom *g, const struct qd_tensor *x,
			      int32_t xz, const struct qd_tensor *w, const int32_t *wz, bool wz_per,
			      const struct qconv_epi *ep)
{
	int64_t C = g->C, ks = g->ksize;
	if (!g->N || !g->osize || !C)
		return 0;
	uint8_t *xt = malloc((size_t)(g->N * C * g->isize) + 1);
	int32_t *wk = malloc((size_t)(ks * C) * sizeof *wk + 1);
	int64_t *tk = malloc((size_t)(3 * ks) * sizeof *tk + 1);
	if (!xt || !wk || !tk) {
		free(xt); free(wk); free(tk);
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	}
	bool ws = w->dtype == QD_DT_INT8;
	for (int64_t m = 0; m < C; m++)
		for (int64_t t = 0; t < ks; t++)
			wk[t * C + m] = (ws ? ((const int8_t *)w->data)[m * ks + t] : ((const uint8_t *)w->data)[m * ks + t]) -
					wz[wz_per ? m : 0];
	qconv_tap_offsets(g, tk);
	qconv_to_channels_last(x->data, g->N, C, g->isize, xt);
	/* tiles of about 32 KiB of int32 sums, 16 to 512 pixels */
	int64_t tp = QD_MAX((int64_t)16, QD_MIN((int64_t)512, (8192 / C) & ~(int64_t)15));
	int64_t tiles = g->N * ((g->osize + tp - 1) / tp);
	double ops = (double)g->N * (double)g->osize * (double)C * (double)ks;
	int nt = c->e->opts.threads > 1 && ops >= (double)(1 << 21) ? (int)QD_MIN((int64_t)c->e->opts.threads, tiles) : 1;
	nt = nt > 8 ? 8 : nt;
	struct dwl_job jobs[8];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct dwl_job){ g, xt, x->dtype == QD_DT_INT8, xz, wk, tk, ep, tp, tiles * t / nt,
					    tiles * (t + 1) / nt, 0 };
	qd_run_jobs(dwl_run, jobs, sizeof jobs[0], nt);
	int rc = 0;
	for (int t = 0; t < nt; t++)
		if (jobs[t].rc && !rc)
			rc = jobs[t].rc;
	free(xt); free(wk); free(tk);
	return rc ? qd_ctx_fail(c, -rc, "out of memory") : 0;
}

static void out_dims(const struct qconv_geom *g, int64_t *dims)
{
	dims[0] = g->N;
	dims[1] = g->M;
	for (int i = 0; i < g->nsp; i++)
		dims[2 + i] = g->out[i];
}

/* Tests set this to run every convolution the weight-major way (im2col + qd_qgemm with the
 * weights as A, the plain requantization loop): the reference the pixel-major path is
 * compared with. */
int qd_qconv_ref_path;

static bool input_is_const(struct qd_ctx *c, int i)
{
	return i >= c->n_in || c->n->in[i] < 0 || qd_engine_slot(c->e, c->n->in[i])->is_const;
}

/* The packed weights of this node (w input wi, its zero point wzi): the load-time pack, else
 * packed now, kept with the node when both are constant, else in *tmp (the caller frees). */
static int qconv_get_pack(struct qd_ctx *c, int wi, int wzi, const struct qconv_geom *g,
			  const struct qd_tensor *w, const int32_t *wz, bool wzper,
			  const struct qconv_pack **pk, struct qconv_pack **tmp)
{
	int64_t Kc = g->C / g->group * g->ksize;
	const struct qconv_pack *have = c->n->priv_free == qd_qconv_pack_free ? c->n->priv : NULL;
	*tmp = NULL;
	if (have && have->w == w->data && have->M == g->M && have->Kc == Kc && have->ks == g->ksize &&
	    have->group == g->group &&
	    input_is_const(c, wi) && input_is_const(c, wzi)) {
		*pk = have;
		return 0;
	}
	struct qconv_pack *p;
	int rc = qconv_pack_new(w->data, w->dtype == QD_DT_INT8, g->M, Kc, g->ksize, g->group, wz, wzper, &p);
	if (rc)
		return qd_ctx_fail(c, -rc, "out of memory");
	if (!c->n->priv && input_is_const(c, wi) && input_is_const(c, wzi)) {
		c->n->priv = p;
		c->n->priv_free = qd_qconv_pack_free;
	} else {
		*tmp = p;
	}
	*pk = p;
	return 0;
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
	if (!qd_qconv_ref_path && !qconv_is_depthwise(g.C / g.group, g.group)) {
		const struct qconv_pack *pk;
		struct qconv_pack *tmp;
		struct qconv_epi ep = { .acc = y->data };
		if (!(rc = qconv_get_pack(c, 1, 3, &g, w, wz, wper, &pk, &tmp)))
			rc = qconv_pixmajor(c, &g, x, xz, pk, &ep);
		qd_qconv_pack_free(tmp);
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
	bool dw = qconv_is_depthwise(g.C / g.group, g.group);
	if (!qd_qconv_ref_path && (!dw || (g.M == g.C && !qd_qconv_dw_planes))) {
		struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, dims);
		const struct qconv_pack *pk;
		struct qconv_pack *tmp = NULL;
		float *mul = malloc((size_t)(g.M + 1) * sizeof(float));
		if (!y || !mul) {
			free(mul);
			rc = y ? qd_ctx_fail(c, QD_ENOMEM, "out of memory") : -c->err->code;
			goto out;
		}
		for (int64_t m = 0; m < g.M; m++)
			mul[m] = xs * ws[wsper ? m : 0] / ys;
		struct qconv_epi ep = { .y = y->data, .mul = mul, .bias = bias ? bias->data : NULL,
					.yz = yz, .lo = lo, .hi = hi, .y_signed = x->dtype == QD_DT_INT8 };
		if (dw)
			rc = qconv_depthwise_cl(c, &g, x, xz, w, wz, wzper, &ep);
		else if (!(rc = qconv_get_pack(c, 3, 5, &g, w, wz, wzper, &pk, &tmp)))
			rc = qconv_pixmajor(c, &g, x, xz, pk, &ep);
		qd_qconv_pack_free(tmp);
		free(mul);
		goto out;
	}
	acc = malloc((size_t)(g.N * g.M * g.osize + 1) * sizeof(int32_t));
	struct qd_tensor *y = acc ? qd_ctx_out(c, 0, x->dtype, x->ndim, dims) : NULL;
	if (!acc || !y) {
		rc = acc ? -c->err->code : qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = qconv_acc(c, &g, x, xz, w, wz, wzper, acc)))
		goto out;
	const int32_t *bd = bias ? bias->data : NULL;
	if (!qd_qconv_ref_path) {
		/* depthwise: bias, then qd_q_requant_row a channel plane at a time */
		float *mulv = malloc((size_t)(g.osize + 1) * sizeof(float));
		if (!mulv) {
			rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory");
			goto out;
		}
		for (int64_t m = 0; m < g.M; m++) {
			float mul = xs * ws[wsper ? m : 0] / ys;
			for (int64_t p = 0; p < g.osize; p++)
				mulv[p] = mul;
			for (int64_t img = 0; img < g.N; img++) {
				int64_t base = (img * g.M + m) * g.osize;
				if (bd)
					for (int64_t p = 0; p < g.osize; p++)
						acc[base + p] = (int32_t)((uint32_t)acc[base + p] + (uint32_t)bd[m]);
				qd_q_requant_row(acc + base, g.osize, mulv, yz, lo, hi, x->dtype == QD_DT_INT8,
						 (uint8_t *)y->data + base);
			}
		}
		free(mulv);
		goto out;
	}
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
