/* engine/qgemm.c — 8-bit integer GEMM with zero points, int32 accumulation.
 * DESIGN: with AVX-512 VNNI, qd_qgemm / qd_qgemm_pack_b use the u8 x s8 byte path at the
 * end of this file (vpdpbusd, 64 products per instruction, zero points folded in through
 * row / column sums). Otherwise (AVX2, portable): zero points are subtracted while packing, so both operands become int16 in
 * [-383, 383] and every product pair fits int32 exactly. B is packed per (KC x NC) panel
 * as [16-column strip][k pair][16 columns][2]; A per 8-row block as [k pair][8 rows] of
 * int16 pairs. The 8x16 micro-kernel multiplies k pairs with one vpdpwssd (AVX-512
 * VNNI), one madd + add (AVX2 vpmaddwd) or the portable C loop; edges are zero-padded and only the valid part is written.
 * Large products with g->threads > 1 split the column panels over threads (each with its
 * own packing buffers, writing disjoint columns of C). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "qd.h"
#include "engine/qgemm.h"
#include "engine/ops_quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QD_QGEMM_X86 1
#endif

#define KC 256      /* K values per panel (even) */
#define NC 256      /* columns per panel (multiple of 16) */
#define MR 8
#define QD_QGEMM_MAX_THREADS 64
#define NR 16

static inline int32_t ld8(const void *p, int64_t i, bool is_signed)
{
	return is_signed ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

static inline int32_t zp_at(const int32_t *zp, bool per, int64_t i)
{
	return zp ? zp[per ? i : 0] : 0;
}

static int check_args(const struct qd_qgemm_args *g, bool need_b)
{
	if (g->M < 0 || g->N < 0 || g->K < 0)
		return -QD_EINVAL;
	if ((g->M && g->N && g->K && ((!g->A && !g->Af) || (need_b && !g->B))) || (g->M && g->N && !g->C))
		return -QD_EINVAL;
	return 0;
}

int qd_qgemm_ref(const struct qd_qgemm_args *g)
{
	int rc = check_args(g, true);
	if (rc)
		return rc;
	for (int64_t m = 0; m < g->M; m++) {
		int32_t az = zp_at(g->a_zp, g->a_zp_per_row, m);
		for (int64_t n = 0; n < g->N; n++) {
			int32_t bz = zp_at(g->b_zp, g->b_zp_per_col, n);
			uint32_t acc = 0;   /* unsigned: int32 wrap-around without UB */
			for (int64_t k = 0; k < g->K; k++) {
				int32_t a = ld8(g->A, m * g->lda + k, g->a_signed) - az;
				int32_t b = ld8(g->B, k * g->ldb + n, g->b_signed) - bz;
				acc += (uint32_t)(a * b);
			}
			g->C[m * g->ldc + n] = (int32_t)acc;
		}
	}
	return 0;
}

/* ---- packing ---------------------------------------------------------------------- */

/* B rows [k0, k0+kc) x columns [n0, n0+nc) into dst; kp = ceil(kc/2) pairs, strips of NR.
 * zp16: the panel's per-column zero points (nc values). Written so the inner loops vectorize. */
#define PACK_B_BODY(T)                                                                          \
	for (int64_t s = 0; s < nc; s += NR) {                                                  \
		int16_t *strip = dst + (s / NR) * kp * NR * 2;                                  \
		int64_t w = QD_MIN((int64_t)NR, nc - s);                                        \
		for (int64_t p = 0; p < kp; p++) {                                              \
			int16_t *row = strip + p * NR * 2;                                      \
			const T *r0 = (const T *)g->B + (k0 + 2 * p) * g->ldb + n0 + s;         \
			const T *r1 = r0 + g->ldb;                                              \
			bool has1 = 2 * p + 1 < kc;                                             \
			for (int64_t j = 0; j < w; j++) {                                       \
				row[2 * j] = (int16_t)(r0[j] - zp16[s + j]);                    \
				row[2 * j + 1] = has1 ? (int16_t)(r1[j] - zp16[s + j]) : 0;     \
			}                                                                       \
			for (int64_t j = w; j < NR; j++)                                        \
				row[2 * j] = row[2 * j + 1] = 0;                                \
		}                                                                               \
	}

static void pack_b(const struct qd_qgemm_args *g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
		   int16_t *dst, int16_t *zp16)
{
	int64_t kp = (kc + 1) / 2;
	for (int64_t j = 0; j < nc; j++)
		zp16[j] = (int16_t)zp_at(g->b_zp, g->b_zp_per_col, n0 + j);
	if (g->b_signed) {
		PACK_B_BODY(int8_t)
	} else {
		PACK_B_BODY(uint8_t)
	}
}

/* A rows [m0, m0+MR) x k [k0, k0+kc) into dst as [pair][MR] int32 (two int16 each). */
static void pack_a(const struct qd_qgemm_args *g, int64_t m0, int64_t k0, int64_t kc, int32_t *dst)
{
	int64_t kp = (kc + 1) / 2;
	for (int64_t r = 0; r < MR; r++) {
		int64_t m = m0 + r;
		if (m >= g->M) {
			for (int64_t p = 0; p < kp; p++)
				dst[p * MR + r] = 0;
			continue;
		}
		int32_t az = zp_at(g->a_zp, g->a_zp_per_row, m);
		const int64_t base = m * g->lda + k0;
		for (int64_t p = 0; p < kp; p++) {
			int16_t v0 = (int16_t)(ld8(g->A, base + 2 * p, g->a_signed) - az);
			int16_t v1 = 0;
			if (2 * p + 1 < kc)
				v1 = (int16_t)(ld8(g->A, base + 2 * p + 1, g->a_signed) - az);
			dst[p * MR + r] = (int32_t)(((uint32_t)(uint16_t)v1 << 16) | (uint16_t)v0);
		}
	}
}

/* ---- micro-kernels: tile[MR][NR] = sum over kp pairs ------------------------------- */

static void kernel_generic(int64_t kp, const int32_t *a, const int16_t *b, int32_t tile[MR][NR])
{
	uint32_t acc[MR][NR];
	memset(acc, 0, sizeof(acc));
	for (int64_t p = 0; p < kp; p++) {
		const int16_t *bp = b + p * NR * 2;
		for (int r = 0; r < MR; r++) {
			uint32_t w = (uint32_t)a[p * MR + r];
			int32_t a0 = (int16_t)(w & 0xffff), a1 = (int16_t)(w >> 16);
			for (int j = 0; j < NR; j++)
				acc[r][j] += (uint32_t)(a0 * bp[2 * j] + a1 * bp[2 * j + 1]);
		}
	}
	for (int r = 0; r < MR; r++)
		for (int j = 0; j < NR; j++)
			tile[r][j] = (int32_t)acc[r][j];
}

#ifdef QD_QGEMM_X86
/* Rows r0 .. r0+3 of the tile. */
__attribute__((target("avx2")))
static void avx2_rows4(int64_t kp, const int32_t *a, int r0, const int16_t *b, int32_t tile[MR][NR])
{
	__m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
	__m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
	for (int64_t p = 0; p < kp; p++) {
		const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + p * NR * 2));
		const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + p * NR * 2 + 16));
		const int32_t *ap = a + p * MR + r0;
		__m256i a0 = _mm256_set1_epi32(ap[0]);
		c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(b0, a0));
		c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(b1, a0));
		__m256i a1 = _mm256_set1_epi32(ap[1]);
		c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(b0, a1));
		c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(b1, a1));
		__m256i a2 = _mm256_set1_epi32(ap[2]);
		c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(b0, a2));
		c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(b1, a2));
		__m256i a3 = _mm256_set1_epi32(ap[3]);
		c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(b0, a3));
		c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(b1, a3));
	}
	/* The packed B interleaves (k, k+1) per column, so madd yields columns 0..7 / 8..15. */
	_mm256_storeu_si256((__m256i *)&tile[r0][0], c00);
	_mm256_storeu_si256((__m256i *)&tile[r0][8], c01);
	_mm256_storeu_si256((__m256i *)&tile[r0 + 1][0], c10);
	_mm256_storeu_si256((__m256i *)&tile[r0 + 1][8], c11);
	_mm256_storeu_si256((__m256i *)&tile[r0 + 2][0], c20);
	_mm256_storeu_si256((__m256i *)&tile[r0 + 2][8], c21);
	_mm256_storeu_si256((__m256i *)&tile[r0 + 3][0], c30);
	_mm256_storeu_si256((__m256i *)&tile[r0 + 3][8], c31);
}

/* AVX2 has 16 vector registers: the 8-row tile runs as two 4-row halves. */
__attribute__((target("avx2")))
static void kernel_avx2(int64_t kp, const int32_t *a, const int16_t *b, int32_t tile[MR][NR])
{
	avx2_rows4(kp, a, 0, b, tile);
	avx2_rows4(kp, a, 4, b, tile);
}

/* AVX-512 VNNI: vpdpwssd multiplies the int16 pairs and accumulates in one instruction
 * (wrapping, like madd + add); 8 rows x 16 columns, one accumulator per row. */
__attribute__((target("avx512f,avx512vnni")))
static void kernel_vnni(int64_t kp, const int32_t *a, const int16_t *b, int32_t tile[MR][NR])
{
	__m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
	__m512i c4 = c0, c5 = c0, c6 = c0, c7 = c0;
	for (int64_t p = 0; p < kp; p++) {
		const __m512i bv = _mm512_loadu_si512((const void *)(b + p * NR * 2));
		const int32_t *ap = a + p * MR;
		c0 = _mm512_dpwssd_epi32(c0, bv, _mm512_set1_epi32(ap[0]));
		c1 = _mm512_dpwssd_epi32(c1, bv, _mm512_set1_epi32(ap[1]));
		c2 = _mm512_dpwssd_epi32(c2, bv, _mm512_set1_epi32(ap[2]));
		c3 = _mm512_dpwssd_epi32(c3, bv, _mm512_set1_epi32(ap[3]));
		c4 = _mm512_dpwssd_epi32(c4, bv, _mm512_set1_epi32(ap[4]));
		c5 = _mm512_dpwssd_epi32(c5, bv, _mm512_set1_epi32(ap[5]));
		c6 = _mm512_dpwssd_epi32(c6, bv, _mm512_set1_epi32(ap[6]));
		c7 = _mm512_dpwssd_epi32(c7, bv, _mm512_set1_epi32(ap[7]));
	}
	_mm512_storeu_si512((void *)tile[0], c0);
	_mm512_storeu_si512((void *)tile[1], c1);
	_mm512_storeu_si512((void *)tile[2], c2);
	_mm512_storeu_si512((void *)tile[3], c3);
	_mm512_storeu_si512((void *)tile[4], c4);
	_mm512_storeu_si512((void *)tile[5], c5);
	_mm512_storeu_si512((void *)tile[6], c6);
	_mm512_storeu_si512((void *)tile[7], c7);
}

static bool have_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}

static bool have_vnni(void)
{
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
}
#else
static bool have_avx2(void)
{
	return false;
}

static bool have_vnni(void)
{
	return false;
}
#endif

typedef void (*qgemm_kernel)(int64_t kp, const int32_t *a, const int16_t *b, int32_t tile[MR][NR]);

/* B packed once: either for every (NC, KC) panel of the int16 kernels (n panels outer,
 * k panels inner), or (b8 != NULL) in the u8 x s8 layout of the VNNI byte kernel. */
struct qd_qgemm_packed {
	int64_t K, N;
	int16_t *data;
	int64_t *ofs;      /* panel index -> offset into data */
	int8_t *b8;        /* [32-column strip][k quad][32][4] s8, whole K per strip */
	int32_t *colsum;   /* per column: sum over k of the s8 values - K * zero point */
	int32_t *bzp;      /* per column: zero point in the s8 domain */
};

static int64_t panel_size(int64_t kc, int64_t nc)
{
	return ((nc + NR - 1) / NR) * ((kc + 1) / 2) * NR * 2;
}

void qd_qgemm_packed_free(struct qd_qgemm_packed *p)
{
	if (p) {
		free(p->data);
		free(p->ofs);
		free(p->b8);
		free(p->colsum);
		free(p->bzp);
		free(p);
	}
}

static int pack_b8(const struct qd_qgemm_args *g, struct qd_qgemm_packed **out);
static bool use_b8(void);

int qd_qgemm_pack_b(const struct qd_qgemm_args *g, struct qd_qgemm_packed **out)
{
	*out = NULL;
	if (g->K < 0 || g->N < 0 || ((g->K && g->N) && !g->B))
		return -QD_EINVAL;
	if (use_b8())
		return pack_b8(g, out);
	int64_t npan = ((g->N + NC - 1) / NC) * ((g->K + KC - 1) / KC), total = 0, i = 0;
	struct qd_qgemm_packed *p = calloc(1, sizeof(*p));
	int16_t *zp16 = malloc(NC * sizeof(int16_t));
	if (p)
		p->ofs = malloc((size_t)(npan + 1) * sizeof(int64_t));
	if (!p || !p->ofs || !zp16)
		goto oom;
	for (int64_t n0 = 0; n0 < g->N; n0 += NC)
		for (int64_t k0 = 0; k0 < g->K; k0 += KC) {
			p->ofs[i++] = total;
			total += panel_size(QD_MIN((int64_t)KC, g->K - k0), QD_MIN((int64_t)NC, g->N - n0));
		}
	p->data = malloc((size_t)(total + 1) * sizeof(int16_t));
	if (!p->data)
		goto oom;
	i = 0;
	for (int64_t n0 = 0; n0 < g->N; n0 += NC)
		for (int64_t k0 = 0; k0 < g->K; k0 += KC)
			pack_b(g, k0, QD_MIN((int64_t)KC, g->K - k0), n0, QD_MIN((int64_t)NC, g->N - n0),
			       p->data + p->ofs[i++], zp16);
	p->K = g->K;
	p->N = g->N;
	free(zp16);
	*out = p;
	return 0;
oom:
	free(zp16);
	qd_qgemm_packed_free(p);
	return -QD_ENOMEM;
}

/* Column panels [p0, p1) (units of NC) of C = A B. */
static int qgemm_range(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pre,
		       qgemm_kernel kern, int64_t p0, int64_t p1)
{
	int64_t kcap = QD_MIN(g->K, (int64_t)KC), ncap = QD_MIN(g->N, (int64_t)NC);
	int64_t kpmax = (kcap + 1) / 2, kpan = (g->K + KC - 1) / KC;
	int16_t *bp = NULL, *zp16 = NULL;
	int32_t *ap = malloc((size_t)(kpmax * MR) * sizeof(int32_t) + 64);
	if (!pre) {
		bp = malloc((size_t)panel_size(kcap, ncap) * sizeof(int16_t) + 64);
		zp16 = malloc(NC * sizeof(int16_t));
	}
	if (!ap || (!pre && (!bp || !zp16))) {
		free(bp);
		free(ap);
		free(zp16);
		return -QD_ENOMEM;
	}
	int32_t tile[MR][NR];
	for (int64_t pn = p0; pn < p1; pn++) {
		int64_t n0 = pn * NC, nc = QD_MIN((int64_t)NC, g->N - n0), panel = pn * kpan;
		for (int64_t k0 = 0; k0 < g->K; k0 += KC, panel++) {
			int64_t kc = QD_MIN((int64_t)KC, g->K - k0), kp = (kc + 1) / 2;
			bool first = k0 == 0;
			const int16_t *bpan = pre ? pre->data + pre->ofs[panel] : bp;
			if (!pre)
				pack_b(g, k0, kc, n0, nc, bp, zp16);
			for (int64_t m0 = 0; m0 < g->M; m0 += MR) {
				pack_a(g, m0, k0, kc, ap);
				int64_t mr = QD_MIN((int64_t)MR, g->M - m0);
				for (int64_t s = 0; s < nc; s += NR) {
					kern(kp, ap, bpan + (s / NR) * kp * NR * 2, tile);
					int64_t nr = QD_MIN((int64_t)NR, nc - s);
					for (int64_t r = 0; r < mr; r++) {
						int32_t *c = g->C + (m0 + r) * g->ldc + n0 + s;
						if (first)
							memcpy(c, tile[r], (size_t)nr * sizeof(int32_t));
						else
							for (int64_t j = 0; j < nr; j++)
								c[j] = (int32_t)((uint32_t)c[j] + (uint32_t)tile[r][j]);
					}
				}
			}
		}
	}
	free(bp);
	free(ap);
	free(zp16);
	return 0;
}

struct qgemm_job {
	const struct qd_qgemm_args *g;
	const struct qd_qgemm_packed *pre;
	qgemm_kernel kern;
	int64_t p0, p1;
	int rc;
};

static void *qgemm_thread(void *arg)
{
	struct qgemm_job *j = arg;
	j->rc = qgemm_range(j->g, j->pre, j->kern, j->p0, j->p1);
	return NULL;
}

static int qgemm_blocked(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pre,
			 qgemm_kernel kern)
{
	int rc = check_args(g, !pre);
	if (rc)
		return rc;
	if (pre && (pre->K != g->K || pre->N != g->N))
		return -QD_EINVAL;
	if (!g->M || !g->N)
		return 0;
	if (!g->K) {
		for (int64_t m = 0; m < g->M; m++)
			memset(g->C + m * g->ldc, 0, (size_t)g->N * sizeof(int32_t));
		return 0;
	}
	int64_t npan = (g->N + NC - 1) / NC;
	double ops = (double)g->M * (double)g->N * (double)g->K;
	int nt = g->threads > 1 && ops >= (double)(1 << 22) ? (int)QD_MIN((int64_t)g->threads, npan) : 1;
	if (nt > QD_QGEMM_MAX_THREADS)
		nt = QD_QGEMM_MAX_THREADS;
	if (nt <= 1)
		return qgemm_range(g, pre, kern, 0, npan);
	/* column panels split evenly; the calling thread takes the first share */
	struct qgemm_job jobs[QD_QGEMM_MAX_THREADS];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct qgemm_job){ g, pre, kern, npan * t / nt, npan * (t + 1) / nt, 0 };
	qd_run_jobs(qgemm_thread, jobs, sizeof jobs[0], nt);
	for (int t = 0; t < nt; t++)
		if (jobs[t].rc)
			return jobs[t].rc;
	return 0;
}

/* The paths without a float epilogue: Cf from the int32 C they wrote (see qgemm.h). */
static void to_float(const struct qd_qgemm_args *g)
{
	for (int64_t m = 0; g->Cf && m < g->M; m++)
		qd_q_dequant_rows(g->C + m * g->ldc, 1, g->N, g->cmul, g->cbias, g->Cf + m * g->ldc);
}

static int blocked_then_float(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pre,
			      qgemm_kernel kern)
{
	struct qd_qgemm_args q = *g;
	uint8_t *a8 = NULL;
	if (g->Af && g->M && g->K) {   /* float A: quantized into a buffer first */
		a8 = malloc((size_t)(g->M * g->K));
		if (!a8)
			return -QD_ENOMEM;
		for (int64_t m = 0; m < g->M; m++)
			qd_q_quantize_u8(g->Af + m * g->lda, g->K, g->af_scale, g->af_zp, 0, 255, a8 + m * g->K);
		q.A = a8;
		q.lda = g->K;
		q.a_signed = false;
	}
	q.Af = NULL;
	int rc = qgemm_blocked(&q, pre, kern);
	if (!rc)
		to_float(&q);
	free(a8);
	return rc;
}

static qgemm_kernel best_kernel(void)
{
#ifdef QD_QGEMM_X86
	if (have_vnni())
		return kernel_vnni;
	if (have_avx2())
		return kernel_avx2;
#endif
	return kernel_generic;
}

int qd_qgemm_generic(const struct qd_qgemm_args *g)
{
	return blocked_then_float(g, NULL, kernel_generic);
}

static int qgemm_b8(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pb);

int qd_qgemm(const struct qd_qgemm_args *g)
{
	if (use_b8()) {
		struct qd_qgemm_packed *pb = NULL;
		int rc = check_args(g, true);
		if (!rc && g->M && g->N && g->K)
			rc = pack_b8(g, &pb);
		if (!rc)
			rc = pb ? qgemm_b8(g, pb) : blocked_then_float(g, NULL, kernel_generic);
		qd_qgemm_packed_free(pb);
		return rc;
	}
	return blocked_then_float(g, NULL, best_kernel());
}

int qd_qgemm_prepacked(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pb)
{
	if (!pb)
		return -QD_EINVAL;
	if (pb->b8)
		return qgemm_b8(g, pb);
	return blocked_then_float(g, pb, best_kernel());
}

const char *qd_qgemm_kernel_name(void)
{
	return have_vnni() ? "avx512-vnni (u8 x s8)" : have_avx2() ? "avx2" : "generic";
}

int qd_qgemm_avx2(const struct qd_qgemm_args *g)
{
#ifdef QD_QGEMM_X86
	if (have_avx2())
		return blocked_then_float(g, NULL, kernel_avx2);
#endif
	return -QD_EUNSUPPORTED;
}

/* ---- u8 x s8 byte kernel (AVX-512 VNNI vpdpbusd) ---------------------------------
 * A is made unsigned (signed A: +128, flip the top bit) and B signed (unsigned B: -128);
 * the zero points move with them. With A', B', az', bz' in those domains,
 *   sum_k (A'-az')(B'-bz') = sum A'B' - az' colsum(B') - bz' rowsum(A') + K az' bz'
 *                             = sum A'B' - az' (colsum(B') - K bz') - bz' rowsum(A')
 * which is exact modulo 2^32 like the reference (colsum - K bz' is kept per column). vpdpbusd adds four u8*s8 products into
 * an int32 lane without saturation (each group is at most 4*255*128). B is packed per
 * 32-column strip over the whole K ([k quad][32 columns] of 4 bytes: two 64-byte vectors);
 * A per 8-row block as [k quad][8 rows] of 4 bytes. Zero-padding (K to a multiple of 4,
 * M to 8, N to 32) contributes nothing. */
#define B8_MR 8
#define B8_NR 32

static bool use_b8(void)
{
	return have_vnni();
}

static int pack_b8(const struct qd_qgemm_args *g, struct qd_qgemm_packed **out)
{
	int64_t K = g->K, N = g->N, kq = (K + 3) / 4, ns = (N + B8_NR - 1) / B8_NR;
	struct qd_qgemm_packed *p = calloc(1, sizeof(*p));
	*out = NULL;
	if (!p)
		return -QD_ENOMEM;
	p->K = K;
	p->N = N;
	p->b8 = calloc((size_t)(ns * kq * B8_NR * 4 + 64), 1);
	p->colsum = calloc((size_t)(ns * B8_NR + 1), sizeof(int32_t));
	p->bzp = calloc((size_t)(ns * B8_NR + 1), sizeof(int32_t));
	if (!p->b8 || !p->colsum || !p->bzp) {
		qd_qgemm_packed_free(p);
		return -QD_ENOMEM;
	}
	/* one k quad at a time: each 32-column strip gets one full 128-byte group per quad
	 * (signed <-> unsigned is a flip of the top bit: v - 128 == (int8_t)(v ^ 0x80)) */
	int32_t shift = g->b_signed ? 0 : 128;
	uint8_t flip = g->b_signed ? 0 : 0x80;
	const uint8_t *B = g->B;
	for (int64_t q = 0; q < kq; q++) {
		const uint8_t *r[4];
		for (int t = 0; t < 4; t++)
			r[t] = 4 * q + t < K ? B + (4 * q + t) * g->ldb : NULL;
		for (int64_t n = 0; n < N; n++) {
			int8_t *d = p->b8 + (((n / B8_NR) * kq + q) * B8_NR + n % B8_NR) * 4;
			uint32_t cs = (uint32_t)p->colsum[n];
			for (int t = 0; t < 4; t++) {
				int8_t v = r[t] ? (int8_t)(r[t][n] ^ flip) : 0;
				d[t] = v;
				cs += (uint32_t)(int32_t)v;
			}
			p->colsum[n] = (int32_t)cs;
		}
	}
	for (int64_t n = 0; n < N; n++) {
		p->bzp[n] = zp_at(g->b_zp, g->b_zp_per_col, n) - shift;
		p->colsum[n] = (int32_t)((uint32_t)p->colsum[n] - (uint32_t)K * (uint32_t)p->bzp[n]);
	}
	*out = p;
	return 0;
}

/* A rows [m0, m0+8) into dst ([kq][8] 4-byte groups, made unsigned) and their sums. */
#if defined(QD_QGEMM_X86) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((optimize("O3"), target_clones("avx512f", "avx2", "default")))
#else
__attribute__((optimize("O3")))
#endif
static void pack_a8_scalar(const struct qd_qgemm_args *g, int64_t m0, int64_t kq, uint8_t *dst, int32_t *rsum)
{
	uint8_t flip = g->a_signed ? 0x80 : 0;
	for (int r = 0; r < B8_MR; r++) {
		int64_t m = m0 + r;
		rsum[r] = 0;
		if (m >= g->M) {
			for (int64_t q = 0; q < kq; q++)
				memset(dst + (q * B8_MR + r) * 4, 0, 4);
			continue;
		}
		const uint8_t *src = (const uint8_t *)g->A + m * g->lda;
		uint32_t sum = 0;
		for (int64_t k = 0; k < g->K; k++)
			sum += (uint8_t)(src[k] ^ flip);
		rsum[r] = (int32_t)sum;
		int64_t full = g->K / 4;
		for (int64_t q = 0; q < full; q++) {
			uint32_t w;
			memcpy(&w, src + 4 * q, 4);
			w ^= flip * 0x01010101u;
			memcpy(dst + (q * B8_MR + r) * 4, &w, 4);
		}
		if (full < kq) {
			uint8_t tail[4] = { 0, 0, 0, 0 };
			for (int64_t k = 4 * full; k < g->K; k++)
				tail[k - 4 * full] = (uint8_t)(src[k] ^ flip);
			memcpy(dst + (full * B8_MR + r) * 4, tail, 4);
		}
	}
}

#ifdef QD_QGEMM_X86
/* pack_a8 with SSE2: 16 bytes of each of the 8 rows at a time, the 8 x 4 groups of 4 bytes
 * put in [group][row] order by two 4 x 4 dword transposes, row sums by SAD; the K % 16 tail
 * as pack_a8_scalar does it. Rows past M are zeros with sum 0. */
static void pack_a8(const struct qd_qgemm_args *g, int64_t m0, int64_t kq, uint8_t *dst, int32_t *rsum)
{
	int64_t mr = QD_MIN((int64_t)B8_MR, g->M - m0), k16 = g->K / 16;
	const __m128i flip = _mm_set1_epi8(g->a_signed ? (char)0x80 : 0), zero = _mm_setzero_si128();
	const uint8_t *src[B8_MR];
	__m128i sum[B8_MR];
	for (int r = 0; r < B8_MR; r++) {
		src[r] = r < mr ? (const uint8_t *)g->A + (m0 + r) * g->lda : NULL;
		sum[r] = zero;
	}
	for (int64_t b = 0; b < k16; b++) {
		__m128i v[B8_MR];
		for (int r = 0; r < B8_MR; r++) {
			v[r] = src[r] ? _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src[r] + 16 * b)), flip) : zero;
			sum[r] = _mm_add_epi64(sum[r], _mm_sad_epu8(v[r], zero));
		}
		uint8_t *d = dst + b * 4 * B8_MR * 4;
		for (int h = 0; h < 2; h++) {
			__m128i *x = v + 4 * h;
			__m128i t0 = _mm_unpacklo_epi32(x[0], x[1]), t1 = _mm_unpacklo_epi32(x[2], x[3]);
			__m128i t2 = _mm_unpackhi_epi32(x[0], x[1]), t3 = _mm_unpackhi_epi32(x[2], x[3]);
			_mm_storeu_si128((__m128i *)(d + 0 * 32 + 16 * h), _mm_unpacklo_epi64(t0, t1));
			_mm_storeu_si128((__m128i *)(d + 1 * 32 + 16 * h), _mm_unpackhi_epi64(t0, t1));
			_mm_storeu_si128((__m128i *)(d + 2 * 32 + 16 * h), _mm_unpacklo_epi64(t2, t3));
			_mm_storeu_si128((__m128i *)(d + 3 * 32 + 16 * h), _mm_unpackhi_epi64(t2, t3));
		}
	}
	/* the rest: groups from 4 * k16 on, through the scalar packer on a shifted view */
	int32_t rs[B8_MR] = { 0 };
	if (k16 * 16 < g->K) {
		struct qd_qgemm_args t = *g;
		t.A = (const uint8_t *)g->A + k16 * 16;
		t.K = g->K - k16 * 16;
		pack_a8_scalar(&t, m0, kq - 4 * k16, dst + k16 * 4 * B8_MR * 4, rs);
	}
	for (int r = 0; r < B8_MR; r++)
		rsum[r] = (int32_t)((uint32_t)_mm_cvtsi128_si32(sum[r]) +
				    (uint32_t)_mm_cvtsi128_si32(_mm_unpackhi_epi64(sum[r], sum[r])) + (uint32_t)rs[r]);
}
#else
static void pack_a8(const struct qd_qgemm_args *g, int64_t m0, int64_t kq, uint8_t *dst, int32_t *rsum)
{
	pack_a8_scalar(g, m0, kq, dst, rsum);
}
#endif

/* Packs float A rows [m0, m0+8) (g->Af) like pack_a8; row: 8 x K bytes of scratch. */
typedef void (*b8_packf)(const struct qd_qgemm_args *g, int64_t m0, int64_t kq, uint8_t *dst,
			 int32_t *rsum, uint8_t *row);

/* pack_a8 for a float A (g->Af): each row quantized (qd_q_quantize_u8) into row, then
 * packed as bytes. */
static void pack_a8_float(const struct qd_qgemm_args *g, int64_t m0, int64_t kq, uint8_t *dst,
			  int32_t *rsum, uint8_t *row)
{
	struct qd_qgemm_args rg = *g;
	rg.M = QD_MIN((int64_t)B8_MR, g->M - m0);   /* rows m0.. as rows 0.. of row */
	for (int64_t r = 0; r < rg.M; r++)
		qd_q_quantize_u8(g->Af + (m0 + r) * g->lda, g->K, g->af_scale, g->af_zp, 0, 255, row + r * g->K);
	rg.A = row;
	rg.lda = g->K;
	rg.a_signed = false;
	pack_a8(&rg, 0, kq, dst, rsum);
}

#ifdef QD_QGEMM_X86
/* The same with AVX-512: 16 floats at a time quantized (division, clamp, round half to
 * even by the 1.5 * 2^23 trick, as qd_q_quantize_u8) straight into the packed groups. */
__attribute__((target("avx512f")))
static void pack_a8_float_avx512(const struct qd_qgemm_args *g, int64_t m0, int64_t kq, uint8_t *dst,
				 int32_t *rsum, uint8_t *row)
{
	const __m512 sv = _mm512_set1_ps(g->af_scale), lo = _mm512_set1_ps((float)(0 - g->af_zp));
	const __m512 hi = _mm512_set1_ps((float)(255 - g->af_zp)), mg = _mm512_set1_ps(12582912.0f);
	const __m512i zp = _mm512_set1_epi32(g->af_zp);
	int64_t k16 = g->K / 16 * 16;
	for (int r = 0; r < B8_MR; r++) {
		int64_t m = m0 + r;
		if (m >= g->M) {
			for (int64_t q = 0; q < kq; q++)
				memset(dst + (q * B8_MR + r) * 4, 0, 4);
			rsum[r] = 0;
			continue;
		}
		const float *x = g->Af + m * g->lda;
		__m512i sum = _mm512_setzero_si512();
		for (int64_t k = 0; k < k16; k += 16) {
			__m512 v = _mm512_div_ps(_mm512_loadu_ps(x + k), sv);
			v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
			v = _mm512_sub_ps(_mm512_add_ps(v, mg), mg);
			__m512i q = _mm512_add_epi32(_mm512_cvttps_epi32(v), zp);
			sum = _mm512_add_epi32(sum, q);
			__m128i b = _mm512_cvtepi32_epi8(q);
			uint8_t *d = dst + (k / 4 * B8_MR + r) * 4;
			uint32_t w[4];
			_mm_storeu_si128((__m128i *)(void *)w, b);
			memcpy(d, &w[0], 4);
			memcpy(d + B8_MR * 4, &w[1], 4);
			memcpy(d + 2 * B8_MR * 4, &w[2], 4);
			memcpy(d + 3 * B8_MR * 4, &w[3], 4);
		}
		uint32_t s = (uint32_t)_mm512_reduce_add_epi32(sum);
		if (k16 < g->K) {
			/* the tail (< 16 values, at most 4 groups) through the shared quantizer,
			 * zero-padded to whole groups */
			memset(row, 0, 16);
			qd_q_quantize_u8(x + k16, g->K - k16, g->af_scale, g->af_zp, 0, 255, row);
			for (int64_t k = k16; k < g->K; k++)
				s += row[k - k16];
			for (int64_t q = k16 / 4; q < kq; q++)
				memcpy(dst + (q * B8_MR + r) * 4, row + (q - k16 / 4) * 4, 4);
		}
		rsum[r] = (int32_t)s;
	}
}
#endif

typedef void (*b8_kernel)(int64_t kq, const uint8_t *a, const int8_t *b, int32_t tile[B8_MR][B8_NR]);
/* The same on uint8 A rows read in place: row r at a + r * lda, rows [mr, 8) not stored. */
typedef void (*b8_kernel_rows)(int64_t kq, const uint8_t *a, int64_t lda, int64_t mr, const int8_t *b,
			       int32_t tile[B8_MR][B8_NR]);

/* Portable twin of kernel_b8_vnni (same packed layouts). */
static void kernel_b8_generic(int64_t kq, const uint8_t *a, const int8_t *b, int32_t tile[B8_MR][B8_NR])
{
	uint32_t acc[B8_MR][B8_NR];
	memset(acc, 0, sizeof(acc));
	for (int64_t q = 0; q < kq; q++)
		for (int r = 0; r < B8_MR; r++)
			for (int j = 0; j < B8_NR; j++)
				for (int t = 0; t < 4; t++)
					acc[r][j] += (uint32_t)((int32_t)a[(q * B8_MR + r) * 4 + t] *
								(int32_t)b[(q * B8_NR + j) * 4 + t]);
	for (int r = 0; r < B8_MR; r++)
		for (int j = 0; j < B8_NR; j++)
			tile[r][j] = (int32_t)acc[r][j];
}

#ifdef QD_QGEMM_X86
__attribute__((target("avx512f,avx512vnni")))
static void kernel_b8_vnni(int64_t kq, const uint8_t *a, const int8_t *b, int32_t tile[B8_MR][B8_NR])
{
	/* 8 rows x 32 columns: 16 accumulators, 2 B loads and 8 broadcasts per 16 vpdpbusd
	 * (the 16-column tile had 9 loads per 8 and was load-bound) */
	__m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
	__m512i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
	__m512i c60 = c00, c61 = c00, c70 = c00, c71 = c00;
	const int32_t *ap = (const int32_t *)(const void *)a;
	for (int64_t q = 0; q < kq; q++, ap += B8_MR) {
		const __m512i b0 = _mm512_loadu_si512((const void *)(b + q * B8_NR * 4));
		const __m512i b1 = _mm512_loadu_si512((const void *)(b + q * B8_NR * 4 + 64));
		__m512i av;
#define B8_ROW(r) av = _mm512_set1_epi32(ap[r]); \
		c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0); c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1)
		B8_ROW(0); B8_ROW(1); B8_ROW(2); B8_ROW(3); B8_ROW(4); B8_ROW(5); B8_ROW(6); B8_ROW(7);
#undef B8_ROW
	}
#define B8_STORE(r) _mm512_storeu_si512((void *)tile[r], c##r##0); \
	_mm512_storeu_si512((void *)(tile[r] + 16), c##r##1)
	B8_STORE(0); B8_STORE(1); B8_STORE(2); B8_STORE(3); B8_STORE(4); B8_STORE(5); B8_STORE(6); B8_STORE(7);
#undef B8_STORE
}

/* kernel_b8_vnni reading uint8 A rows in place (row r at a + r * lda, K a multiple of 4:
 * the broadcast takes any address, so the A pack only moved bytes); rows past mr repeat
 * row 0 and are not stored. */
__attribute__((target("avx512f,avx512vnni")))
static void kernel_b8_vnni_rows(int64_t kq, const uint8_t *a, int64_t lda, int64_t mr, const int8_t *b,
				int32_t tile[B8_MR][B8_NR])
{
	__m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
	__m512i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
	__m512i c60 = c00, c61 = c00, c70 = c00, c71 = c00;
	const uint8_t *p0 = a, *p1 = a + (mr > 1) * lda, *p2 = a + (mr > 2) * 2 * lda, *p3 = a + (mr > 3) * 3 * lda;
	const uint8_t *p4 = a + (mr > 4) * 4 * lda, *p5 = a + (mr > 5) * 5 * lda, *p6 = a + (mr > 6) * 6 * lda;
	const uint8_t *p7 = a + (mr > 7) * 7 * lda;
	for (int64_t q = 0; q < kq; q++) {
		const __m512i b0 = _mm512_loadu_si512((const void *)(b + q * B8_NR * 4));
		const __m512i b1 = _mm512_loadu_si512((const void *)(b + q * B8_NR * 4 + 64));
		__m512i av;
		int32_t w;
#define B8_ROW(r) memcpy(&w, p##r + 4 * q, 4); av = _mm512_set1_epi32(w); \
		c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0); c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1)
		B8_ROW(0); B8_ROW(1); B8_ROW(2); B8_ROW(3); B8_ROW(4); B8_ROW(5); B8_ROW(6); B8_ROW(7);
#undef B8_ROW
	}
#define B8_STORE(r) _mm512_storeu_si512((void *)tile[r], c##r##0); \
	_mm512_storeu_si512((void *)(tile[r] + 16), c##r##1)
	B8_STORE(0); B8_STORE(1); B8_STORE(2); B8_STORE(3); B8_STORE(4); B8_STORE(5); B8_STORE(6); B8_STORE(7);
#undef B8_STORE
}
#endif

/* C rows [0, mr) x columns [0, nr) = tile - az[r] * colk[n] - bz[n] * rs[r] (mod 2^32);
 * with cf set, cf[r][n] = (float)that * mul[n] (+ bias[n]) instead of C. */
typedef void (*b8_epi)(int32_t tile[B8_MR][B8_NR], const uint32_t *az, const uint32_t *rs,
		       const uint32_t *colk, const uint32_t *bz, int32_t *C, int64_t ldc, int64_t mr,
		       int64_t nr, float *cf, const float *mul, const float *bias);

static void epi_b8_generic(int32_t tile[B8_MR][B8_NR], const uint32_t *az, const uint32_t *rs,
			   const uint32_t *colk, const uint32_t *bz, int32_t *C, int64_t ldc, int64_t mr,
			   int64_t nr, float *cf, const float *mul, const float *bias)
{
	for (int64_t r = 0; r < mr; r++)
		for (int64_t q = 0; q < nr; q++) {
			int32_t v = (int32_t)((uint32_t)tile[r][q] - az[r] * colk[q] - bz[q] * rs[r]);
			if (!cf) {
				C[r * ldc + q] = v;
				continue;
			}
			float f = (float)v * mul[q];
			cf[r * ldc + q] = bias ? f + bias[q] : f;
		}
}

#ifdef QD_QGEMM_X86
__attribute__((target("avx512f")))
static void epi_b8_avx512(int32_t tile[B8_MR][B8_NR], const uint32_t *az, const uint32_t *rs,
			  const uint32_t *colk, const uint32_t *bz, int32_t *C, int64_t ldc, int64_t mr,
			  int64_t nr, float *cf, const float *mul, const float *bias)
{
	/* per-tensor a zero point (the common case): az * colk once per half; B zero points
	 * all 0 (symmetric int8 weights): no rowsum term */
	bool az_one = true;
	for (int64_t r = 1; r < mr; r++)
		az_one = az_one && az[r] == az[0];
	for (int h = 0; h < B8_NR / 16 && 16 * h < nr; h++) {
		int64_t w = QD_MIN((int64_t)16, nr - 16 * h);
		__mmask16 k = (__mmask16)((1u << w) - 1);
		__m512i ck = _mm512_maskz_loadu_epi32(k, colk + 16 * h), bzv = _mm512_maskz_loadu_epi32(k, bz + 16 * h);
		__m512 mv = _mm512_setzero_ps(), bv = mv;
		if (cf) {
			mv = _mm512_maskz_loadu_ps(k, mul + 16 * h);
			if (bias)
				bv = _mm512_maskz_loadu_ps(k, bias + 16 * h);
		}
		bool bz0 = _mm512_test_epi32_mask(bzv, bzv) == 0;
		__m512i azck = _mm512_mullo_epi32(_mm512_set1_epi32((int)az[0]), ck);
		for (int64_t r = 0; r < mr; r++) {
			__m512i t = _mm512_loadu_si512((const void *)(tile[r] + 16 * h));
			t = _mm512_sub_epi32(t, az_one ? azck : _mm512_mullo_epi32(_mm512_set1_epi32((int)az[r]), ck));
			if (!bz0)
				t = _mm512_sub_epi32(t, _mm512_mullo_epi32(_mm512_set1_epi32((int)rs[r]), bzv));
			if (!cf) {
				_mm512_mask_storeu_epi32(C + r * ldc + 16 * h, k, t);
				continue;
			}
			__m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(t), mv);
			if (bias)
				f = _mm512_add_ps(f, bv);
			_mm512_mask_storeu_ps(cf + r * ldc + 16 * h, k, f);
		}
	}
}
#endif

struct b8_job {
	const struct qd_qgemm_args *g;
	const struct qd_qgemm_packed *pb;
	const uint8_t *ap;       /* packed A, all row blocks */
	const int32_t *rsum;     /* per padded row */
	b8_kernel kern;
	b8_kernel_rows kern_rows;   /* set: A read in place (ap unused) */
	b8_epi epi;
	int64_t s0, s1;          /* strips */
};

static void *b8_run(void *arg)
{
	struct b8_job *j = arg;
	const struct qd_qgemm_args *g = j->g;
	const struct qd_qgemm_packed *pb = j->pb;
	int64_t kq = (g->K + 3) / 4;
	uint32_t flip = g->a_signed ? 128 : 0;
	int32_t tile[B8_MR][B8_NR];
	for (int64_t s = j->s0; s < j->s1; s++) {
		const int8_t *bs = pb->b8 + s * kq * B8_NR * 4;
		int64_t n0 = s * B8_NR, nr = QD_MIN((int64_t)B8_NR, g->N - n0);
		const uint32_t *cs = (const uint32_t *)pb->colsum + n0, *bz = (const uint32_t *)pb->bzp + n0;
		for (int64_t m0 = 0; m0 < g->M; m0 += B8_MR) {
			int64_t mr = QD_MIN((int64_t)B8_MR, g->M - m0);
			if (j->kern_rows)
				j->kern_rows(kq, (const uint8_t *)g->A + m0 * g->lda, g->lda, mr, bs, tile);
			else
				j->kern(kq, j->ap + m0 * kq * 4, bs, tile);
			uint32_t az[B8_MR];
			for (int64_t r = 0; r < B8_MR; r++)
				az[r] = r < mr ? (uint32_t)zp_at(g->a_zp, g->a_zp_per_row, m0 + r) + flip : 0;
			j->epi(tile, az, (const uint32_t *)j->rsum + m0, cs, bz,
			       g->Cf ? NULL : g->C + m0 * g->ldc + n0, g->ldc, mr, nr,
			       g->Cf ? g->Cf + m0 * g->ldc + n0 : NULL, g->Cf ? g->cmul + n0 : NULL,
			       g->cbias ? g->cbias + n0 : NULL);
		}
	}
	return NULL;
}

/* The row sums of uint8 A rows [0, M) (rsum: M values). */
static void row_sums_u8(const struct qd_qgemm_args *g, int32_t *rsum)
{
	for (int64_t m = 0; m < g->M; m++) {
		const uint8_t *src = (const uint8_t *)g->A + m * g->lda;
		uint32_t sum = 0;
		for (int64_t k = 0; k < g->K; k++)
			sum += src[k];
		rsum[m] = (int32_t)sum;
	}
}

static int qgemm_b8_with(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pb, b8_kernel kern,
			 b8_kernel_rows kern_rows, b8_epi epi, b8_packf packf)
{
	int rc = check_args(g, false);
	if (rc)
		return rc;
	if (pb->K != g->K || pb->N != g->N)
		return -QD_EINVAL;
	if (!g->M || !g->N)
		return 0;
	if (!g->K) {
		for (int64_t m = 0; m < g->M; m++)
			memset(g->C + m * g->ldc, 0, (size_t)g->N * sizeof(int32_t));
		to_float(g);
		return 0;
	}
	int64_t kq = (g->K + 3) / 4, mb = (g->M + B8_MR - 1) / B8_MR, ns = (g->N + B8_NR - 1) / B8_NR;
	/* uint8 A with whole 4-byte groups needs no pack: the kernel reads the rows (and the
	 * row sums are only needed against non-zero B zero points) */
	if (kern_rows && (g->Af || g->a_signed || g->K % 4))
		kern_rows = NULL;
	uint8_t *ap = kern_rows ? NULL : malloc((size_t)(mb * kq * B8_MR * 4) + 64);
	int32_t *rsum = calloc((size_t)(mb * B8_MR), sizeof(int32_t));
	if ((!kern_rows && !ap) || !rsum) {
		free(ap);
		free(rsum);
		return -QD_ENOMEM;
	}
	if (kern_rows) {
		bool bz = false;
		for (int64_t n = 0; n < g->N && !bz; n++)
			bz = pb->bzp[n] != 0;
		if (bz)
			row_sums_u8(g, rsum);
	} else if (g->Af) {
		uint8_t *row = malloc((size_t)(B8_MR * g->K) + 64);
		if (!row) {
			free(ap);
			free(rsum);
			return -QD_ENOMEM;
		}
		for (int64_t b = 0; b < mb; b++)
			packf(g, b * B8_MR, kq, ap + b * kq * B8_MR * 4, rsum + b * B8_MR, row);
		free(row);
	} else {
		for (int64_t b = 0; b < mb; b++)
			pack_a8(g, b * B8_MR, kq, ap + b * kq * B8_MR * 4, rsum + b * B8_MR);
	}
	double ops = (double)g->M * (double)g->N * (double)g->K;
	int nt = g->threads > 1 && ops >= (double)(1 << 22) ? (int)QD_MIN((int64_t)g->threads, ns) : 1;
	if (nt > QD_QGEMM_MAX_THREADS)
		nt = QD_QGEMM_MAX_THREADS;
	struct b8_job jobs[QD_QGEMM_MAX_THREADS];
	for (int t = 0; t < nt; t++)
		jobs[t] = (struct b8_job){ g, pb, ap, rsum, kern, kern_rows, epi, ns * t / nt, ns * (t + 1) / nt };
	qd_run_jobs(b8_run, jobs, sizeof jobs[0], nt);
	free(ap);
	free(rsum);
	return 0;
}

static int qgemm_b8(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pb)
{
#ifdef QD_QGEMM_X86
	if (have_vnni())
		return qgemm_b8_with(g, pb, kernel_b8_vnni, kernel_b8_vnni_rows, epi_b8_avx512, pack_a8_float_avx512);
#endif
	return qgemm_b8_with(g, pb, kernel_b8_generic, NULL, epi_b8_generic, pack_a8_float);
}

int qd_qgemm_bytes_generic(const struct qd_qgemm_args *g)
{
	struct qd_qgemm_packed *pb = NULL;
	int rc = check_args(g, true);
	if (!rc)
		rc = pack_b8(g, &pb);
	if (!rc)
		rc = qgemm_b8_with(g, pb, kernel_b8_generic, NULL, epi_b8_generic, pack_a8_float);
	qd_qgemm_packed_free(pb);
	return rc;
}
