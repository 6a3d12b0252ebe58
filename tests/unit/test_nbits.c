/* Unit tests of the weight-only quantizers (passes/weight_only_quant.c): hand-checked
 * DEFAULT codes and ORT's packing, the LAPACK Cholesky path against its scalar twin,
 * GPTQ's output error below RTN's on correlated inputs, HQQ no worse than its start. */
#include "qd_test.h"
#include "passes/weight_only.h"

#include <stdlib.h>
#include <stdint.h>

static uint32_t rs = 12345;
static float frand(void)   /* uniform [-1, 1) */
{
	rs = rs * 1664525u + 1013904223u;
	return (float)(rs >> 8) / 8388608.0f - 1.0f;
}
static float grand(void)
{
	float s = 0;
	for (int i = 0; i < 6; i++)
		s += frand();
	return s * 0.7f;
}

static void test_default_hand(void)
{
	/* one column, K = 16, block 16: values -8..7 times 0.5; symmetric: signed absmax is
	 * -4 → scale -4 / -8 = 0.5, codes v / 0.5 + 8 */
	float w[16];
	for (int k = 0; k < 16; k++)
		w[k] = 0.5f * (float)(k - 8);
	struct qd_wo_q q;
	struct qd_err err = { 0 };
	CHECK(qd_wo_quant_default(w, 16, 1, 4, 16, true, &q, &err) == 0);
	CHECK_NEAR(q.scale[0], 0.5, 0);
	CHECK(q.zp == NULL);
	int exact = 1;
	for (int k = 0; k < 16; k++)
		exact &= q.q[k] == k;
	CHECK(exact);
	uint8_t *B, *Z;
	size_t nb, nz;
	CHECK(qd_wo_pack(&q, &B, &nb, &Z, &nz, 0) == 0);
	CHECK_EQ_INT(nb, 8);
	CHECK(Z == NULL);
	CHECK_EQ_INT(B[0], 0x10);   /* k=0 low nibble, k=1 high */
	CHECK_EQ_INT(B[7], 0xFE);
	free(B);
	qd_wo_q_free(&q);

	/* asymmetric, 3 blocks (odd: the last zero-point byte has one nibble), 2 columns */
	float w2[48 * 2];
	for (int k = 0; k < 48; k++) {
		w2[k * 2] = (float)k / 47.0f;            /* all >= 0: range [0, max] → zp 0 */
		w2[k * 2 + 1] = -(float)k / 47.0f;       /* all <= 0: zp 15 */
	}
	CHECK(qd_wo_quant_default(w2, 48, 2, 4, 16, false, &q, &err) == 0);
	CHECK(q.zp && q.zp[0] == 0 && q.zp[3] == 15);
	CHECK(qd_wo_pack(&q, &B, &nb, &Z, &nz, 0) == 0);
	CHECK_EQ_INT(nb, 2 * 3 * 8);
	CHECK_EQ_INT(nz, 2 * 2);     /* [N, ceil(3 * 4 / 8)] */
	CHECK(Z && Z[0] == 0x00 && Z[1] == 0x00 && Z[2] == 0xFF && Z[3] == 0x0F);
	free(B); free(Z);
	/* dequantization error at most half a step */
	float d[96];
	qd_wo_dequant(&q, d);
	float worst = 0;
	for (int i = 0; i < 96; i++)
		worst = fmaxf(worst, fabsf(d[i] - w2[i]));
	CHECKF(worst <= 0.5f * (1.0f / 15.0f) + 1e-6f, "worst %g", worst);
	qd_wo_q_free(&q);

	/* 8 bits: one byte per code, zero points [N, kb] */
	CHECK(qd_wo_quant_default(w2, 48, 2, 8, 16, false, &q, &err) == 0);
	CHECK(qd_wo_pack(&q, &B, &nb, &Z, &nz, 0) == 0);
	CHECK_EQ_INT(nb, 2 * 48);
	CHECK_EQ_INT(nz, 2 * 3);
	CHECK(Z && Z[3] == 255);
	free(B); free(Z);
	qd_wo_q_free(&q);
}

static void test_chol(void)
{
	const int K = 37;
	double *X = malloc(sizeof(double) * 80 * K), *H = calloc(K * K, sizeof(double)), *H2 = malloc(sizeof(double) * K * K);
	for (int i = 0; i < 80 * K; i++)
		X[i] = grand();
	for (int i = 0; i < K; i++)
		for (int j = 0; j < K; j++) {
			double s = 0;
			for (int r = 0; r < 80; r++)
				s += X[r * K + i] * X[r * K + j];
			H[i * K + j] = s + (i == j ? 0.1 : 0);
		}
	memcpy(H2, H, sizeof(double) * K * K);
	CHECK(qd_wo_hinv_chol(H, K) == 0);
	CHECK(qd_wo_hinv_chol_ref(H2, K) == 0);
	double worst = 0;
	for (int i = 0; i < K * K; i++)
		worst = fmax(worst, fabs(H[i] - H2[i]));
	CHECKF(worst < 1e-9, "LAPACK vs scalar twin: %g", worst);
	/* not positive definite */
	for (int i = 0; i < K * K; i++)
		H[i] = 0;
	H[0] = -1;
	CHECK(qd_wo_hinv_chol(H, K) < 0);
	free(X); free(H); free(H2);
}

/* ||X (W - Wq)||² with X rows correlated and of very different scales per channel */
static double out_err(const float *X, int M, int K, int N, const float *W, const float *Wq)
{
	double e = 0;
	for (int m = 0; m < M; m++)
		for (int n = 0; n < N; n++) {
			double s = 0;
			for (int k = 0; k < K; k++)
				s += X[m * K + k] * (W[k * N + n] - Wq[k * N + n]);
			e += s * s;
		}
	return e;
}

static void test_gptq_beats_rtn(void)
{
	const int M = 256, K = 128, N = 24;
	float *X = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * K * N), *Wc = malloc(sizeof(float) * K * N);
	float *Dr = malloc(sizeof(float) * K * N), *Dg = malloc(sizeof(float) * K * N);
	double *H = calloc(K * K, sizeof(double));
	for (int m = 0; m < M; m++) {
		float common = grand();
		for (int k = 0; k < K; k++)
			X[m * K + k] = (0.6f * common + grand()) * (k % 16 == 0 ? 6.0f : 1.0f);
	}
	for (int i = 0; i < K * N; i++)
		W[i] = 0.05f * grand();
	for (int i = 0; i < K; i++)
		for (int j = 0; j < K; j++) {
			double s = 0;
			for (int m = 0; m < M; m++)
				s += (double)X[m * K + i] * X[m * K + j];
			H[i * K + j] = s;
		}
	struct qd_err err = { 0 };
	for (int v = 0; v < 4; v++) {
		bool sym = v & 1, ao = v & 2;
		struct qd_wo_q qr, qg;
		CHECK(qd_wo_quant_default(W, K, N, 4, 32, sym, &qr, &err) == 0);
		qd_wo_dequant(&qr, Dr);
		memcpy(Wc, W, sizeof(float) * K * N);
		double *Hc = malloc(sizeof(double) * K * K);
		memcpy(Hc, H, sizeof(double) * K * K);
		struct qd_wo_gptq_opts o = { .percdamp = 0.01, .blocksize = 64, .actorder = ao, .perchannel = true,
					     .sym = sym, .bits = 4, .group = 32 };
		double damp = 0;
		CHECK(qd_wo_quant_gptq(Wc, Hc, K, N, &o, &qg, &damp, &err) == 0);
		qd_wo_dequant(&qg, Dg);
		double er = out_err(X, M, K, N, W, Dr), eg = out_err(X, M, K, N, W, Dg);
		CHECKF(eg < 0.8 * er, "sym %d actorder %d: GPTQ output error %g vs RTN %g", sym, ao, eg, er);
		free(Hc);
		qd_wo_q_free(&qr);
		qd_wo_q_free(&qg);
	}
	/* AWQ: the calibrated output error of its choice is at most RTN's (alpha 0 is RTN) and,
	 * with channels of very different scale, lower; the clip search lowers it further */
	{
		struct qd_wo_q qr;
		CHECK(qd_wo_quant_default(W, K, N, 4, 32, true, &qr, &err) == 0);
		qd_wo_dequant(&qr, Dr);
		double er = out_err(X, M, K, N, W, Dr), ea[3] = { 0 };
		struct qd_wo_awq_opts opts[3] = { { true, false }, { true, true }, { false, true } };
		for (int v = 0; v < 3; v++) {
			struct qd_wo_q qa2;
			struct qd_wo_awq_info ai;
			float *inv = NULL;
			CHECK(qd_wo_quant_awq(W, H, M, K, N, 4, 32, true, &opts[v], &qa2, &inv, &ai, &err) == 0);
			qd_wo_dequant(&qa2, Dg);
			if (inv)
				for (int k = 0; k < K; k++)
					for (int n = 0; n < N; n++)
						Dg[k * N + n] *= inv[k];
			ea[v] = out_err(X, M, K, N, W, Dg);
			if (v < 2)
				CHECKF(ai.alpha > 0 && inv != NULL && ai.loss_ratio < 0.95, "alpha %g ratio %g", ai.alpha,
				       ai.loss_ratio);
			else
				CHECKF(ai.alpha == 0 && inv == NULL, "scale search off: alpha %g", ai.alpha);
			CHECKF(fabs(ea[v] / er - ai.loss_ratio) < 1e-3, "AWQ reported ratio %g, measured %g",
			       ai.loss_ratio, ea[v] / er);
			if (opts[v].mse_search)
				CHECKF(ai.clipped > 0 && ai.clip_mean < 1.0 && ai.loss_ratio < ai.scale_loss_ratio,
				       "clip search: %lld blocks clipped, mean %g, loss %g vs %g", (long long)ai.clipped,
				       ai.clip_mean, ai.loss_ratio, ai.scale_loss_ratio);
			else
				CHECKF(ai.clipped == 0 && ai.loss_ratio == ai.scale_loss_ratio, "no clip search: %lld "
				       "blocks clipped", (long long)ai.clipped);
			free(inv);
			qd_wo_q_free(&qa2);
		}
		printf("AWQ output error / RTN's: scale search %.4f, scale + clip %.4f, clip alone %.4f\n", ea[0] / er,
		       ea[1] / er, ea[2] / er);
		CHECKF(ea[1] < 0.85 * ea[0], "clip search: output error %g vs %g without", ea[1], ea[0]);
		CHECKF(ea[2] < 0.7 * er, "clip search alone: output error %g vs RTN %g", ea[2], er);
		/* ratio 1 everywhere is DEFAULT */
		struct qd_wo_q q1;
		float *ones = malloc(sizeof(float) * N * (K / 32));
		for (int i = 0; i < N * (K / 32); i++)
			ones[i] = 1.0f;
		CHECK(qd_wo_quant_default_ratio(W, K, N, 4, 32, true, ones, &q1, &err) == 0);
		CHECK(memcmp(q1.q, qr.q, (size_t)(K * N)) == 0 && memcmp(q1.scale, qr.scale, sizeof(float) * N * (K / 32)) == 0);
		free(ones);
		qd_wo_q_free(&q1);
		qd_wo_q_free(&qr);
	}
	/* HQQ: mean |w - dequant| no worse than min/max asymmetric RTN of the same grid */
	struct qd_wo_q qh, qa;
	CHECK(qd_wo_quant_hqq(W, K, N, 4, 32, &qh, &err) == 0);
	CHECK(qh.zpf != NULL && qh.zp == NULL);
	CHECK(qd_wo_quant_rtn(W, K, N, 4, 32, false, 1.0f, &qa, &err) == 0);
	qd_wo_dequant(&qh, Dg);
	qd_wo_dequant(&qa, Dr);
	double eh = 0, ea = 0;
	for (int i = 0; i < K * N; i++) {
		eh += fabs(Dg[i] - W[i]);
		ea += fabs(Dr[i] - W[i]);
	}
	CHECKF(eh <= ea * 1.0001, "HQQ mean abs error %g vs RTN %g", eh / (K * N), ea / (K * N));
	qd_wo_q_free(&qh);
	qd_wo_q_free(&qa);
	free(X); free(W); free(Wc); free(Dr); free(Dg); free(H);
}

int main(void)
{
	test_default_hand();
	test_chol();
	test_gptq_beats_rtn();
	return qd_test_done("test_nbits");
}
