/* passes/weight_only_quant.c — the block quantizers behind the weight-only passes
 * (DEFAULT / RTN / HQQ / GPTQ, see passes/weight_only.h) and the packer into
 * com.microsoft.MatMulNBits' layout. Pure math on float arrays: no ONNX here.
 *
 * DESIGN
 * - Every quantizer produces the same struct qd_wo_q (one code byte per weight, scales
 *   and zero points per block); one packer turns it into ORT's bytes.
 * - GPTQ uses DEFAULT's grid (range with 0, signed-absmax symmetric scale), so on the same
 *   block the only difference from RTN is the error feedback through inv(H).
 * - The Cholesky factorizations go through OpenBLAS' LAPACK (dpotrf / dpotri) in double;
 *   qd_wo_hinv_chol_ref is the plain scalar twin the unit test compares it with. */
#include "passes/weight_only.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

/* LAPACK (OpenBLAS exports the Fortran symbols) */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

void qd_wo_q_free(struct qd_wo_q *q)
{
	if (!q)
		return;
	free(q->q);
	free(q->scale);
	free(q->zp);
	free(q->zpf);
	q->q = NULL; q->scale = NULL; q->zp = NULL; q->zpf = NULL;
}

static int q_alloc(struct qd_wo_q *o, int64_t K, int64_t N, int bits, int64_t bs, bool int_zp, bool float_zp,
		   struct qd_err *err)
{
	memset(o, 0, sizeof *o);
	o->K = K; o->N = N; o->bs = bs; o->bits = bits;
	o->kb = (K + bs - 1) / bs;
	o->q = calloc((size_t)(N * K) + 1, 1);
	o->scale = calloc((size_t)(N * o->kb) + 1, sizeof(float));
	if (int_zp)
		o->zp = calloc((size_t)(N * o->kb) + 1, 1);
	if (float_zp)
		o->zpf = calloc((size_t)(N * o->kb) + 1, sizeof(float));
	if (!o->q || !o->scale || (int_zp && !o->zp) || (float_zp && !o->zpf)) {
		qd_wo_q_free(o);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory quantizing a %lld x %lld weight",
				  (long long)K, (long long)N);
	}
	return 0;
}

/* w [K, N] → wt [N, K] */
static float *transpose(const float *w, int64_t K, int64_t N)
{
	float *t = malloc((size_t)(K * N) * sizeof(float) + 1);
	if (!t)
		return NULL;
	for (int64_t k = 0; k < K; k++)
		for (int64_t n = 0; n < N; n++)
			t[n * K + k] = w[k * N + n];
	return t;
}

static inline float clampf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* DEFAULT's parameters for values v[0..n) (MLAS range2scalezp / range2scale). */
static void default_params(const float *v, int64_t n, int64_t stride, int bits, bool sym, float shrink,
			   float *scale, float *zp)
{
	float vmin = INFINITY, vmax = -INFINITY;
	for (int64_t i = 0; i < n; i++) {
		float x = v[i * stride];
		vmin = x < vmin ? x : vmin;
		vmax = x > vmax ? x : vmax;
	}
	vmin *= shrink;
	vmax *= shrink;
	const float Q = (float)((1 << bits) - 1);
	if (sym) {
		float m = fabsf(vmax) > fabsf(vmin) ? vmax : vmin;
		*scale = m / -(float)(1 << (bits - 1));
		*zp = (float)(1 << (bits - 1));
		return;
	}
	float mn = vmin < 0 ? vmin : 0, mx = vmax > 0 ? vmax : 0;
	*scale = (mx - mn) / Q;
	*zp = *scale != 0.0f ? clampf(roundf(-mn / *scale), 0, Q) : 0.0f;
}

static inline float default_code(float v, float inv, float zp, float Q)
{
	return clampf(roundf(v * inv + zp), 0, Q);
}

int qd_wo_quant_default_ratio(const float *w, int64_t K, int64_t N, int bits, int64_t bs, bool sym,
			      const float *ratio, struct qd_wo_q *out, struct qd_err *err)
{
	int rc = q_alloc(out, K, N, bits, bs, !sym, false, err);
	if (rc < 0)
		return rc;
	const float Q = (float)((1 << bits) - 1);
	float *wt = transpose(w, K, N);
	if (!wt) {
		qd_wo_q_free(out);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	for (int64_t n = 0; n < N; n++)
		for (int64_t j = 0; j < out->kb; j++) {
			int64_t k0 = j * bs, k1 = QD_MIN(K, k0 + bs);
			const float *v = wt + n * K + k0;
			float s, z;
			/* ORT zero-pads a short last block: zeros are inside [min(v,0), max(v,0)]
			 * and never change the signed absmax, so the real values give the same range */
			default_params(v, k1 - k0, 1, bits, sym, ratio ? ratio[n * out->kb + j] : 1.0f, &s, &z);
			float inv = s != 0.0f ? 1.0f / s : 0.0f;
			out->scale[n * out->kb + j] = s;
			if (out->zp)
				out->zp[n * out->kb + j] = (uint8_t)z;
			for (int64_t k = k0; k < k1; k++)
				out->q[n * K + k] = (uint8_t)default_code(wt[n * K + k], inv, z, Q);
		}
	free(wt);
	return 0;
}

int qd_wo_quant_default(const float *w, int64_t K, int64_t N, int bits, int64_t bs, bool sym,
			struct qd_wo_q *out, struct qd_err *err)
{
	return qd_wo_quant_default_ratio(w, K, N, bits, bs, sym, NULL, out, err);
}

int qd_wo_quant_rtn(const float *w, int64_t K, int64_t N, int bits, int64_t bs, bool sym, float ratio,
		    struct qd_wo_q *out, struct qd_err *err)
{
	int rc = q_alloc(out, K, N, bits, bs, !sym, false, err);
	if (rc < 0)
		return rc;
	const double Q = (double)((1 << bits) - 1);
	float *wt = transpose(w, K, N);
	if (!wt) {
		qd_wo_q_free(out);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	for (int64_t n = 0; n < N; n++)
		for (int64_t j = 0; j < out->kb; j++) {
			int64_t k0 = j * bs, k1 = QD_MIN(K, k0 + bs);
			const float *v = wt + n * K + k0;
			float rmin = INFINITY, rmax = -INFINITY;
			for (int64_t i = 0; i < k1 - k0; i++) {
				rmin = v[i] < rmin ? v[i] : rmin;
				rmax = v[i] > rmax ? v[i] : rmax;
			}
			if (k1 - k0 < bs) {   /* INC pads K with zeros */
				rmin = rmin < 0 ? rmin : 0;
				rmax = rmax > 0 ? rmax : 0;
			}
			rmin *= ratio;
			rmax *= ratio;
			float s, z;
			if (sym) {
				float am = fabsf(rmin) > fabsf(rmax) ? fabsf(rmin) : fabsf(rmax);
				s = (float)(2.0 * am / Q);
				s = s != 0.0f ? s : 1.0f;
				z = (float)(1 << (bits - 1));
			} else {
				s = rmax != rmin ? (float)(((double)rmax - rmin) / Q) : 1.0f;
				z = (float)fmin(fmax(nearbyint(-(double)rmin / s), 0), Q);
			}
			out->scale[n * out->kb + j] = s;
			if (out->zp)
				out->zp[n * out->kb + j] = (uint8_t)z;
			for (int64_t k = k0; k < k1; k++)
				out->q[n * K + k] = (uint8_t)clampf(nearbyintf(wt[n * K + k] / s + z), 0, (float)Q);
		}
	free(wt);
	return 0;
}

/* HQQ's shrinkage for lp norm p < 1: sign(x) max(|x| - |x|^(p-1) / beta, 0) */
static inline float hqq_shrink(float x, float beta)
{
	float a = fabsf(x);
	float r = a - powf(a + 1e-8f, 0.7f - 1.0f) / beta;
	return r > 0 ? (x < 0 ? -r : r) : 0.0f;
}

int qd_wo_quant_hqq(const float *w, int64_t K, int64_t N, int bits, int64_t bs,
		    struct qd_wo_q *out, struct qd_err *err)
{
	int rc = q_alloc(out, K, N, bits, bs, false, true, err);
	if (rc < 0)
		return rc;
	const float Q = (float)((1 << bits) - 1);
	float *wt = transpose(w, K, N);
	float *blk = malloc((size_t)bs * sizeof(float));
	if (!wt || !blk) {
		free(wt); free(blk);
		qd_wo_q_free(out);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	for (int64_t n = 0; n < N; n++)
		for (int64_t j = 0; j < out->kb; j++) {
			int64_t k0 = j * bs, k1 = QD_MIN(K, k0 + bs);
			for (int64_t i = 0; i < bs; i++)   /* zero padded, as HQQ pads K */
				blk[i] = k0 + i < k1 ? wt[n * K + k0 + i] : 0.0f;
			float mn = INFINITY, mx = -INFINITY;
			for (int64_t i = 0; i < bs; i++) {
				mn = blk[i] < mn ? blk[i] : mn;
				mx = blk[i] > mx ? blk[i] : mx;
			}
			float range = mx - mn;
			float s = fminf(Q / (range != 0.0f ? range : Q), 2e4f);   /* inverse scale */
			float z = nearbyintf(-mn * s);
			/* half-quadratic proximal iterations on the zero point */
			float beta = 10.0f, best_err = INFINITY, best_z = z;
			for (int it = 0; it < 20; it++) {
				double zsum = 0, esum = 0;
				for (int64_t i = 0; i < bs; i++) {
					float wq = clampf(nearbyintf(blk[i] * s + z), 0, Q);
					float wr = (wq - z) / s;
					float we = hqq_shrink(blk[i] - wr, beta);
					zsum += wq - (blk[i] - we) * s;
					esum += fabsf(blk[i] - wr);
				}
				float e = (float)(esum / (double)bs);
				if (e < best_err) {
					best_err = e;
					best_z = z;
				} else {
					break;
				}
				z = (float)(zsum / (double)bs);
				beta *= 1.01f;
			}
			/* the last update was never scored: score it once */
			{
				double esum = 0;
				for (int64_t i = 0; i < bs; i++) {
					float wq = clampf(nearbyintf(blk[i] * s + z), 0, Q);
					esum += fabsf(blk[i] - (wq - z) / s);
				}
				if ((float)(esum / (double)bs) < best_err)
					best_z = z;
			}
			z = best_z;
			out->scale[n * out->kb + j] = 1.0f / s;
			out->zpf[n * out->kb + j] = z;
			for (int64_t k = k0; k < k1; k++)
				out->q[n * K + k] = (uint8_t)clampf(nearbyintf(wt[n * K + k] * s + z), 0, Q);
		}
	free(blk);
	free(wt);
	return 0;
}

/* ---- GPTQ ---- */

int qd_wo_hinv_chol_ref(double *H, int64_t K)
{
	/* L Lᵀ = H (lower, row-major) */
	double *L = calloc((size_t)(K * K) + 1, sizeof(double));
	double *Inv = calloc((size_t)(K * K) + 1, sizeof(double));
	int rc = -QD_ENOMEM;
	if (!L || !Inv)
		goto out;
	rc = -QD_EINVAL;
	for (int64_t i = 0; i < K; i++)
		for (int64_t j = 0; j <= i; j++) {
			double s = H[i * K + j];
			for (int64_t k = 0; k < j; k++)
				s -= L[i * K + k] * L[j * K + k];
			if (i == j) {
				if (!(s > 0))
					goto out;
				L[i * K + i] = sqrt(s);
			} else {
				L[i * K + j] = s / L[j * K + j];
			}
		}
	/* inv(H) column by column: solve L y = e, Lᵀ x = y */
	for (int64_t c = 0; c < K; c++) {
		double *x = Inv + c * K;   /* row c of inv(H) = column c (symmetric) */
		for (int64_t i = 0; i < K; i++) {
			double s = i == c ? 1.0 : 0.0;
			for (int64_t k = 0; k < i; k++)
				s -= L[i * K + k] * x[k];
			x[i] = s / L[i * K + i];
		}
		for (int64_t i = K - 1; i >= 0; i--) {
			double s = x[i];
			for (int64_t k = i + 1; k < K; k++)
				s -= L[k * K + i] * x[k];
			x[i] = s / L[i * K + i];
		}
	}
	/* U upper with UᵀU = inv(H): U = Lᵀ of inv(H)'s Cholesky */
	memset(H, 0, (size_t)(K * K) * sizeof(double));
	for (int64_t i = 0; i < K; i++)
		for (int64_t j = 0; j <= i; j++) {
			double s = Inv[i * K + j];
			for (int64_t k = 0; k < j; k++)
				s -= H[k * K + i] * H[k * K + j];
			if (i == j) {
				if (!(s > 0))
					goto out;
				H[i * K + i] = sqrt(s);
			} else {
				H[j * K + i] = s / H[j * K + j];
			}
		}
	rc = 0;
out:
	free(L);
	free(Inv);
	return rc;
}

int qd_wo_hinv_chol(double *H, int64_t K)
{
	int n = (int)K, info = 0;
	/* row-major symmetric = column-major symmetric; column-major 'L' read row-major is the
	 * upper factor */
	dpotrf_("L", &n, H, &n, &info);
	if (info != 0)
		return -QD_EINVAL;
	dpotri_("L", &n, H, &n, &info);
	if (info != 0)
		return -QD_EINVAL;
	/* dpotri filled the column-major lower triangle = row-major upper: mirror it */
	for (int64_t i = 0; i < K; i++)
		for (int64_t j = i + 1; j < K; j++)
			H[j * K + i] = H[i * K + j];
	dpotrf_("L", &n, H, &n, &info);
	if (info != 0)
		return -QD_EINVAL;
	for (int64_t i = 0; i < K; i++)
		for (int64_t j = 0; j < i; j++)
			H[i * K + j] = 0.0;
	return 0;
}

/* GPTQ's group parameters for rows [r0, r0 + gs) of w [K, N] (column n, or all columns
 * when !perchannel), with the optional mse shrink search. */
static void gptq_params(const float *w, int64_t K, int64_t N, int64_t r0, int64_t gs,
			const struct qd_wo_gptq_opts *o, float *scale, float *zp)
{
	int64_t r1 = QD_MIN(K, r0 + gs);
	const float Q = (float)((1 << o->bits) - 1);
	for (int64_t n = 0; n < N; n++) {
		if (!o->perchannel && n > 0) {
			scale[n] = scale[0];
			zp[n] = zp[0];
			continue;
		}
		/* !perchannel: the whole row block is one group */
		const float *v = w + r0 * N + (o->perchannel ? n : 0);
		int64_t cnt = o->perchannel ? r1 - r0 : (r1 - r0) * N, stride = o->perchannel ? N : 1;
		float s, z;
		default_params(v, cnt, stride, o->bits, o->sym, 1.0f, &s, &z);
		if (o->mse) {
			double best = INFINITY;
			for (int p = 100; p > 20; p--) {
				float ps, pz;
				default_params(v, cnt, stride, o->bits, o->sym, (float)p / 100.0f, &ps, &pz);
				float inv = ps != 0.0f ? 1.0f / ps : 0.0f;
				double e = 0;
				for (int64_t i = 0; i < cnt; i++) {
					float x = v[i * stride];
					float d = (default_code(x, inv, pz, Q) - pz) * ps - x;
					e += pow(fabs(d), 2.4);
				}
				if (e < best) {
					best = e;
					s = ps;
					z = pz;
				}
			}
		}
		scale[n] = s;
		zp[n] = z;
	}
}

int qd_wo_quant_gptq(float *w, double *H, int64_t K, int64_t N, const struct qd_wo_gptq_opts *o,
		     struct qd_wo_q *out, double *damp_used, struct qd_err *err)
{
	const int64_t gs = o->group, kbk = (K + gs - 1) / gs;
	const float Q = (float)((1 << o->bits) - 1);
	int64_t *perm = malloc((size_t)K * sizeof(int64_t) + 1);
	double *Hp = malloc((size_t)(K * K) * sizeof(double) + 1);
	float *U = malloc((size_t)(K * K) * sizeof(float) + 1);
	float *W = malloc((size_t)(K * N) * sizeof(float) + 1);
	float *gscale = malloc((size_t)(kbk * N) * sizeof(float) + 1);
	float *gzp = malloc((size_t)(kbk * N) * sizeof(float) + 1);
	int64_t B = o->blocksize > 0 ? o->blocksize : 128;
	float *Err = malloc((size_t)(B * N) * sizeof(float) + 1);
	int rc = q_alloc(out, K, N, o->bits, gs, !o->sym, false, err);
	if (rc < 0)
		goto out;
	if (!perm || !Hp || !U || !W || !gscale || !gzp || !Err) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory in GPTQ (K %lld, N %lld)", (long long)K,
				(long long)N);
		goto out;
	}
	/* dead inputs: a channel calibration never saw carries no information */
	for (int64_t d = 0; d < K; d++)
		if (H[d * K + d] == 0.0) {
			H[d * K + d] = 1.0;
			memset(w + d * N, 0, (size_t)N * sizeof(float));
		}
	for (int64_t i = 0; i < K; i++)
		perm[i] = i;
	if (o->actorder) {
		/* static groups: parameters from the original rows, before any update */
		for (int64_t g = 0; g < kbk; g++)
			gptq_params(w, K, N, g * gs, gs, o, gscale + g * N, gzp + g * N);
		/* stable sort by decreasing diag(H) (insertion into a merge would do; K is small) */
		for (int64_t i = 1; i < K; i++) {
			int64_t p = perm[i], j = i;
			double dv = H[p * K + p];
			while (j > 0 && H[perm[j - 1] * K + perm[j - 1]] < dv) {
				perm[j] = perm[j - 1];
				j--;
			}
			perm[j] = p;
		}
	}
	for (int64_t i = 0; i < K; i++) {
		memcpy(W + i * N, w + perm[i] * N, (size_t)N * sizeof(float));
		for (int64_t j = 0; j < K; j++)
			Hp[i * K + j] = H[perm[i] * K + perm[j]];
	}
	double mean = 0;
	for (int64_t i = 0; i < K; i++)
		mean += Hp[i * K + i];
	mean /= (double)K;
	double damp = (o->percdamp > 0 ? o->percdamp : 0.01) * mean;
	for (int attempt = 0;; attempt++) {
		for (int64_t i = 0; i < K; i++) {
			memcpy(H + i * K, Hp + i * K, (size_t)K * sizeof(double));
			H[i * K + i] += damp;
		}
		if (qd_wo_hinv_chol(H, K) == 0)
			break;
		if (attempt == 5) {
			rc = qd_err_set(err, QD_EMODEL, NULL, "GPTQ: the Hessian stays singular even with damping "
					"%g (mean diagonal %g)", damp, mean);
			goto out;
		}
		damp *= 10.0;
	}
	if (damp_used)
		*damp_used = damp;
	for (int64_t i = 0; i < K * K; i++)
		U[i] = (float)H[i];

	for (int64_t i1 = 0; i1 < K; i1 += B) {
		int64_t i2 = QD_MIN(K, i1 + B);
		for (int64_t i = i1; i < i2; i++) {
			int64_t orig = perm[i], g = orig / gs;
			if (!o->actorder && i % gs == 0)
				gptq_params(W, K, N, i, gs, o, gscale + g * N, gzp + g * N);
			float d = U[i * K + i];
			float *wr = W + i * N, *er = Err + (i - i1) * N;
			for (int64_t n = 0; n < N; n++) {
				float s = gscale[g * N + n], z = gzp[g * N + n];
				float inv = s != 0.0f ? 1.0f / s : 0.0f;
				float c = default_code(wr[n], inv, z, Q);
				out->q[n * K + orig] = (uint8_t)c;
				float qv = (c - z) * s;
				er[n] = (wr[n] - qv) / d;
			}
			/* intra-block feedback: W[j] -= U[i, j] err for j in (i, i2) */
			for (int64_t j = i + 1; j < i2; j++) {
				float u = U[i * K + j];
				float *wj = W + j * N;
				for (int64_t n = 0; n < N; n++)
					wj[n] -= u * er[n];
			}
		}
		/* lazy batch update of the rows below the block: W[i2:] -= U[i1:i2, i2:]ᵀ Err */
		if (i2 < K)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(K - i2), (int)N, (int)(i2 - i1),
				    -1.0f, U + i1 * K + i2, (int)K, Err, (int)N, 1.0f, W + i2 * N, (int)N);
	}
	for (int64_t g = 0; g < kbk; g++)
		for (int64_t n = 0; n < N; n++) {
			out->scale[n * kbk + g] = gscale[g * N + n];
			if (out->zp)
				out->zp[n * kbk + g] = (uint8_t)gzp[g * N + n];
		}
	rc = 0;
out:
	if (rc < 0)
		qd_wo_q_free(out);
	free(perm); free(Hp); free(U); free(W); free(gscale); free(gzp); free(Err);
	return rc;
}

/* tr(Dᵀ H D) with Hf full [K, K] float, D [K, N]; HD scratch [K, N] */
static double h_loss(const float *Hf, const float *D, float *HD, int64_t K, int64_t N)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)K, (int)N, (int)K, 1.0f, Hf, (int)K, D, (int)N,
		    0.0f, HD, (int)N);
	double e = 0;
	for (int64_t i = 0; i < K * N; i++)
		e += (double)D[i] * HD[i];
	return e;
}

/* The clip grid, INC's: range shrink ratios 1 - i/100, i = 0..9 (1.00 .. 0.91); quantd picks
 * one per block and output column (INC one per weight). 1.00 .. 0.50 in steps of 0.025
 * measured the same on tests/weightonly's decoder (logits cosine 0.95325, this grid 0.95298)
 * at twice the cost */
#define AWQ_CLIP_STEPS 10
#define AWQ_CLIP_STEP 0.01f

/* AWQ's clip search on ws = diag(s) W: for each block j and output column n the shrink r
 * of the grid with the lowest calibrated error of that block's share of the output,
 * d_jnᵀ H_jj d_jn with d = W - diag(1/s) dequant(ws; r). ratio [N, kb] gets the choice. */
static int awq_clip(const float *w, const float *ws, const float *s, const float *Hf, int64_t K, int64_t N,
		    int bits, int64_t bs, bool sym, float *ratio, struct qd_err *err)
{
	const int64_t kb = (K + bs - 1) / bs, L0 = QD_MIN(bs, K);
	const float Q = (float)((1 << bits) - 1);
	float *Hg = malloc((size_t)(L0 * L0) * sizeof(float) + 1);
	float *D = malloc((size_t)(L0 * N) * sizeof(float) + 1);
	float *HD = malloc((size_t)(L0 * N) * sizeof(float) + 1);
	double *e = malloc((size_t)N * sizeof(double) + 1), *best = malloc((size_t)N * sizeof(double) + 1);
	int rc = 0;
	if (!Hg || !D || !HD || !e || !best) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory in AWQ's clip search (K %lld, N %lld)",
				(long long)K, (long long)N);
		goto out;
	}
	for (int64_t j = 0; j < kb; j++) {
		int64_t k0 = j * bs, L = QD_MIN(K, k0 + bs) - k0;
		for (int64_t a = 0; a < L; a++)
			memcpy(Hg + a * L, Hf + (k0 + a) * K + k0, (size_t)L * sizeof(float));
		for (int64_t n = 0; n < N; n++) {
			best[n] = INFINITY;
			ratio[n * kb + j] = 1.0f;
		}
		for (int i = 0; i < AWQ_CLIP_STEPS; i++) {
			float r = 1.0f - AWQ_CLIP_STEP * (float)i;
			for (int64_t n = 0; n < N; n++) {
				float sc, z;
				default_params(ws + k0 * N + n, L, N, bits, sym, r, &sc, &z);
				float inv = sc != 0.0f ? 1.0f / sc : 0.0f;
				for (int64_t k = 0; k < L; k++) {
					float x = ws[(k0 + k) * N + n];
					D[k * N + n] = w[(k0 + k) * N + n] - (default_code(x, inv, z, Q) - z) * sc / s[k0 + k];
				}
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)N, (int)L, 1.0f, Hg, (int)L,
				    D, (int)N, 0.0f, HD, (int)N);
			memset(e, 0, (size_t)N * sizeof(double));
			for (int64_t k = 0; k < L; k++)
				for (int64_t n = 0; n < N; n++)
					e[n] += (double)D[k * N + n] * HD[k * N + n];
			for (int64_t n = 0; n < N; n++)
				if (e[n] < best[n]) {
					best[n] = e[n];
					ratio[n * kb + j] = r;
				}
		}
	}
out:
	free(Hg); free(D); free(HD); free(e); free(best);
	return rc;
}

/* Output error tr(Dᵀ H D) of q (codes of diag(s) W; s NULL: 1) against w; D, HD scratch */
static double awq_loss(const struct qd_wo_q *q, const float *w, const float *s, const float *Hf, float *D,
		       float *HD, int64_t K, int64_t N)
{
	qd_wo_dequant(q, D);
	for (int64_t k = 0; k < K; k++)
		for (int64_t n = 0; n < N; n++)
			D[k * N + n] = w[k * N + n] - (s ? D[k * N + n] / s[k] : D[k * N + n]);
	return h_loss(Hf, D, HD, K, N);
}

int qd_wo_quant_awq(const float *w, const double *H, int64_t rows, int64_t K, int64_t N, int bits, int64_t bs,
		    bool sym, const struct qd_wo_awq_opts *o, struct qd_wo_q *out, float **inv_s,
		    struct qd_wo_awq_info *info, struct qd_err *err)
{
	*inv_s = NULL;
	memset(out, 0, sizeof *out);
	memset(info, 0, sizeof *info);
	const int64_t kb = (K + bs - 1) / bs;
	float *Hf = malloc((size_t)(K * K) * sizeof(float) + 1);
	float *ws = malloc((size_t)(K * N) * sizeof(float) + 1);
	float *D = malloc((size_t)(K * N) * sizeof(float) + 1);
	float *HD = malloc((size_t)(K * N) * sizeof(float) + 1);
	double *rms = malloc((size_t)K * sizeof(double) + 1);
	float *s = malloc((size_t)K * sizeof(float) + 1), *best_s = malloc((size_t)K * sizeof(float) + 1);
	float *ratio = malloc((size_t)(N * kb) * sizeof(float) + 1);
	int rc = 0;
	if (!Hf || !ws || !D || !HD || !rms || !s || !best_s || !ratio) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory in AWQ (K %lld, N %lld)", (long long)K, (long long)N);
		goto out;
	}
	for (int64_t i = 0; i < K * K; i++)
		Hf[i] = (float)H[i];
	for (int64_t k = 0; k < K; k++) {
		rms[k] = sqrt(fmax(H[k * K + k], 0) / (double)(rows > 0 ? rows : 1)) + 1e-8;
		best_s[k] = 1.0f;
	}
	double best = INFINITY, rtn = INFINITY;
	int best_a = 0;
	/* alpha 0 (s = 1) is RTN on DEFAULT's grid: the baseline, and the only candidate when
	 * the scale search is off */
	for (int a = 0; a < (o->auto_scale ? 20 : 1); a++) {
		double al = 0.05 * a, mx = 0, mn = INFINITY;
		for (int64_t k = 0; k < K; k++) {
			double v = pow(rms[k], al);
			mx = fmax(mx, v);
			mn = fmin(mn, v);
		}
		double norm = sqrt(mx * mn);
		for (int64_t k = 0; k < K; k++)
			s[k] = (float)(pow(rms[k], al) / norm);
		for (int64_t k = 0; k < K; k++)
			for (int64_t n = 0; n < N; n++)
				ws[k * N + n] = w[k * N + n] * s[k];
		struct qd_wo_q q;
		if ((rc = qd_wo_quant_default(ws, K, N, bits, bs, sym, &q, err)) < 0)
			goto out;
		double e = awq_loss(&q, w, s, Hf, D, HD, K, N);
		if (a == 0)
			rtn = e;
		if (e < best) {
			best = e;
			best_a = a;
			memcpy(best_s, s, (size_t)K * sizeof(float));
			qd_wo_q_free(out);
			*out = q;
		} else {
			qd_wo_q_free(&q);
		}
	}
	info->alpha = 0.05 * best_a;
	info->scale_loss_ratio = rtn > 0 ? best / rtn : 1.0;
	info->clip_mean = 1.0;
	if (o->mse_search) {
		for (int64_t k = 0; k < K; k++)
			for (int64_t n = 0; n < N; n++)
				ws[k * N + n] = w[k * N + n] * best_s[k];
		if ((rc = awq_clip(w, ws, best_s, Hf, K, N, bits, bs, sym, ratio, err)) < 0)
			goto out;
		struct qd_wo_q q;
		if ((rc = qd_wo_quant_default_ratio(ws, K, N, bits, bs, sym, ratio, &q, err)) < 0)
			goto out;
		/* each block's choice ignores the cross terms with the other blocks: keep the
		 * clipped weight only if the whole output error agrees */
		double e = awq_loss(&q, w, best_s, Hf, D, HD, K, N);
		if (e < best) {
			best = e;
			qd_wo_q_free(out);
			*out = q;
			double sum = 0;
			for (int64_t i = 0; i < N * kb; i++) {
				sum += ratio[i];
				info->clipped += ratio[i] < 1.0f;
			}
			info->clip_mean = sum / (double)(N * kb);
		} else {
			qd_wo_q_free(&q);
		}
	}
	info->loss_ratio = rtn > 0 ? best / rtn : 1.0;
	if (best_a > 0) {
		*inv_s = malloc((size_t)K * sizeof(float) + 1);
		if (!*inv_s) {
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			goto out;
		}
		for (int64_t k = 0; k < K; k++)
			(*inv_s)[k] = 1.0f / best_s[k];
	}
	rc = 0;
out:
	if (rc < 0)
		qd_wo_q_free(out);
	free(Hf); free(ws); free(D); free(HD); free(rms); free(s); free(best_s); free(ratio);
	return rc;
}

void qd_wo_dequant(const struct qd_wo_q *q, float *w)
{
	float dz = (float)(1 << (q->bits - 1));
	for (int64_t n = 0; n < q->N; n++)
		for (int64_t k = 0; k < q->K; k++) {
			int64_t j = k / q->bs;
			float z = q->zpf ? q->zpf[n * q->kb + j] : q->zp ? (float)q->zp[n * q->kb + j] : dz;
			w[k * q->N + n] = ((float)q->q[n * q->K + k] - z) * q->scale[n * q->kb + j];
		}
}

int qd_wo_pack(const struct qd_wo_q *q, uint8_t **B, size_t *nb, uint8_t **Z, size_t *nz, uint8_t zp_fill)
{
	const int64_t blob = q->bs * q->bits / 8, kpad = q->kb * q->bs;
	*B = NULL; *Z = NULL; *nb = 0; *nz = 0;
	*nb = (size_t)(q->N * q->kb * blob);
	*B = calloc(*nb + 1, 1);
	if (!*B)
		return -QD_ENOMEM;
	for (int64_t n = 0; n < q->N; n++) {
		uint8_t *row = *B + n * q->kb * blob;
		const uint8_t *c = q->q + n * q->K;
		if (q->bits == 8) {
			memcpy(row, c, (size_t)q->K);
		} else {
			for (int64_t k = 0; k < kpad; k += 2) {
				uint8_t lo = k < q->K ? c[k] : 0, hi = k + 1 < q->K ? c[k + 1] : 0;
				if (k >= q->K)   /* padding codes: the zero point dequantizes to 0 */
					lo = hi = 0;
				row[k / 2] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
			}
		}
	}
	if (q->zpf) {
		*nz = (size_t)(q->N * q->kb) * sizeof(float);
		*Z = malloc(*nz + 1);
		if (!*Z) {
			free(*B); *B = NULL;
			return -QD_ENOMEM;
		}
		memcpy(*Z, q->zpf, *nz);
	} else if (q->zp) {
		int64_t zrow = (q->kb * q->bits + 7) / 8;
		*nz = (size_t)(q->N * zrow);
		*Z = malloc(*nz + 1);
		if (!*Z) {
			free(*B); *B = NULL;
			return -QD_ENOMEM;
		}
		memset(*Z, q->bits == 4 ? zp_fill : 0, *nz);
		for (int64_t n = 0; n < q->N; n++)
			for (int64_t j = 0; j < q->kb; j++) {
				uint8_t z = q->zp[n * q->kb + j];
				if (q->bits == 8) {
					(*Z)[n * zrow + j] = z;
				} else {
					uint8_t *b = *Z + n * zrow + j / 2;
					*b = j % 2 ? (uint8_t)((*b & 0x0F) | (z & 0xF) << 4) : (uint8_t)((*b & 0xF0) | (z & 0xF));
				}
			}
	}
	return 0;
}
