/* Unit test for engine/qgemm.c: a hand-checked case, then qd_qgemm and qd_qgemm_generic
 * against qd_qgemm_ref on random shapes, signedness, zero-point layouts and strides. */
#include <stdlib.h>
#include "qd_test.h"
#include "qd.h"
#include "engine/qgemm.h"
#include "engine/ops_quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static void hand_checked(void)
{
	/* A u8 2x3, zp 1; B s8 3x2, zp per column {0, -1}. */
	const uint8_t A[6] = { 1, 2, 3, 4, 5, 6 };
	const int8_t B[6] = { 1, -1, 2, 0, -3, 4 };
	int32_t azp = 1, bzp[2] = { 0, -1 };
	/* A-1 = [[0,1,2],[3,4,5]]; B-zp = [[1,0],[2,1],[-3,5]]
	 * row0: [0*1+1*2+2*-3, 0*0+1*1+2*5] = [-4, 11]; row1: [3+8-15, 0+4+25] = [-4, 29] */
	const int32_t want[4] = { -4, 11, -4, 29 };
	int32_t C[4];
	struct qd_qgemm_args g = { .M = 2, .N = 2, .K = 3, .A = A, .lda = 3, .a_signed = false,
		.B = B, .ldb = 2, .b_signed = true, .a_zp = &azp, .b_zp = bzp, .b_zp_per_col = true,
		.C = C, .ldc = 2 };
	int (*fns[3])(const struct qd_qgemm_args *) = { qd_qgemm_ref, qd_qgemm_generic, qd_qgemm };
	for (int f = 0; f < 3; f++) {
		memset(C, 0x55, sizeof(C));
		CHECK_EQ_INT(fns[f](&g), 0);
		for (int i = 0; i < 4; i++)
			CHECK_EQ_INT(C[i], want[i]);
	}
	/* Bad arguments are refused. */
	g.M = -1;
	CHECK_EQ_INT(qd_qgemm(&g), -QD_EINVAL);
	CHECK_EQ_INT(qd_qgemm_ref(&g), -QD_EINVAL);
}

static int random_case(int it)
{
	int64_t M = 1 + rnd() % 37, N = 1 + rnd() % 70, K = 1 + rnd() % 600;
	if (it % 7 == 0) { M = 1; N = 1 + rnd() % 300; }          /* GEMV-like */
	if (it % 11 == 0) K = 1 + rnd() % 3;                       /* tiny K, odd */
	int64_t lda = K + rnd() % 3, ldb = N + rnd() % 3, ldc = N + rnd() % 3;
	bool as = rnd() & 1, bs = rnd() & 1, apr = rnd() & 1, bpc = rnd() & 1;
	bool azn = rnd() % 4 == 0, bzn = rnd() % 4 == 0;
	uint8_t *A = malloc((size_t)(M * lda)), *B = malloc((size_t)(K * ldb));
	int32_t *az = malloc((size_t)M * 4), *bz = malloc((size_t)N * 4);
	int32_t *C0 = malloc((size_t)(M * ldc) * 4), *C1 = malloc((size_t)(M * ldc) * 4);
	int32_t *C2 = malloc((size_t)(M * ldc) * 4);
	int bad = 0;
	for (int64_t i = 0; i < M * lda; i++) A[i] = (uint8_t)rnd();
	for (int64_t i = 0; i < K * ldb; i++) B[i] = (uint8_t)rnd();
	for (int64_t i = 0; i < M; i++) az[i] = as ? (int8_t)rnd() : (uint8_t)rnd();
	for (int64_t i = 0; i < N; i++) bz[i] = bs ? (int8_t)rnd() : (uint8_t)rnd();
	struct qd_qgemm_args g = { .M = M, .N = N, .K = K, .A = A, .lda = lda, .a_signed = as,
		.B = B, .ldb = ldb, .b_signed = bs, .a_zp = azn ? NULL : az, .a_zp_per_row = apr,
		.b_zp = bzn ? NULL : bz, .b_zp_per_col = bpc, .C = C0, .ldc = ldc };
	memset(C0, 0, (size_t)(M * ldc) * 4);
	memset(C1, 0, (size_t)(M * ldc) * 4);
	memset(C2, 0, (size_t)(M * ldc) * 4);
	CHECK_EQ_INT(qd_qgemm_ref(&g), 0);
	g.C = C1;
	CHECK_EQ_INT(qd_qgemm_generic(&g), 0);
	g.C = C2;
	int rca = qd_qgemm_avx2(&g);    /* AVX2 kernel where the CPU has it */
	CHECK(rca == 0 || rca == -QD_EUNSUPPORTED);
	for (int64_t i = 0; rca == 0 && i < M * ldc; i++)
		if (C2[i] != C0[i] && i % ldc < N) bad++;
	memset(C2, 0, (size_t)(M * ldc) * 4);
	CHECK_EQ_INT(qd_qgemm_bytes_generic(&g), 0);   /* u8 x s8 path, portable kernel */
	for (int64_t i = 0; i < M * ldc; i++)
		if (i % ldc < N ? C2[i] != C0[i] : C2[i] != 0) bad++;
	memset(C2, 0, (size_t)(M * ldc) * 4);
	CHECK_EQ_INT(qd_qgemm(&g), 0);
	/* prepacked B gives the same result (B and its zero points taken from the packed copy) */
	struct qd_qgemm_packed *pb = NULL;
	int32_t *C3 = calloc((size_t)(M * ldc), 4);
	CHECK_EQ_INT(qd_qgemm_pack_b(&g, &pb), 0);
	struct qd_qgemm_args g3 = g;
	g3.B = NULL;
	g3.b_zp = NULL;
	g3.C = C3;
	CHECK_EQ_INT(qd_qgemm_prepacked(&g3, pb), 0);
	for (int64_t i = 0; i < M * ldc; i++)
		if (C3[i] != C2[i]) bad++;
	/* float output (Cf = C * cmul + cbias), fused in the byte path's tile epilogue or
	 * converted after the others: equal to the int32 result converted here */
	float *mul = malloc((size_t)N * 4), *bias = malloc((size_t)N * 4);
	float *F = calloc((size_t)(M * ldc), 4);
	for (int64_t n = 0; n < N; n++) {
		mul[n] = (float)(rnd() % 1000 + 1) * 1.37e-5f;
		bias[n] = (float)((int)(rnd() % 2001) - 1000) * 0.01f;
	}
	struct qd_qgemm_args gf = g3;
	gf.Cf = F;
	gf.cmul = mul;
	gf.cbias = it % 3 ? bias : NULL;
	for (int path = 0; path < 4; path++) {
		memset(F, 0, (size_t)(M * ldc) * 4);
		memset(C3, 0x77, (size_t)(M * ldc) * 4);
		gf.B = path ? g.B : NULL;
		gf.b_zp = path ? g.b_zp : NULL;
		int rc = path == 0 ? qd_qgemm_prepacked(&gf, pb) : path == 1 ? qd_qgemm(&gf) :
			 path == 2 ? qd_qgemm_generic(&gf) : qd_qgemm_bytes_generic(&gf);
		CHECK_EQ_INT(rc, 0);
		for (int64_t m = 0; m < M; m++)
			for (int64_t n = 0; n < N; n++) {
				volatile float f = (float)C0[m * ldc + n] * mul[n];
				float want = gf.cbias ? f + bias[n] : f;
				if (memcmp(&F[m * ldc + n], &want, 4))
					bad++;
			}
	}
	free(mul); free(bias); free(F);
	qd_qgemm_packed_free(pb);
	free(C3);
	for (int64_t m = 0; m < M; m++)
		for (int64_t n = 0; n < ldc; n++) {
			int64_t i = m * ldc + n;
			if (n >= N) {   /* padding between rows is never written */
				if (C1[i] || C2[i]) bad++;
				continue;
			}
			if (C0[i] != C1[i] || C0[i] != C2[i]) bad++;
		}
	CHECKF(bad == 0, "case %d M=%lld N=%lld K=%lld signed %d/%d: %d mismatches", it,
	       (long long)M, (long long)N, (long long)K, as, bs, bad);
	free(A); free(B); free(az); free(bz); free(C0); free(C1); free(C2);
	return bad;
}

/* Large K with extreme values: 255*255*K wraps past INT32_MAX; all paths must wrap alike. */
static void wraparound(void)
{
	int64_t M = 2, N = 3, K = 40000;
	uint8_t *A = malloc((size_t)(M * K)), *B = malloc((size_t)(K * N));
	int32_t C0[6], C1[6];
	memset(A, 255, (size_t)(M * K));
	memset(B, 255, (size_t)(K * N));
	struct qd_qgemm_args g = { .M = M, .N = N, .K = K, .A = A, .lda = K, .B = B, .ldb = N,
		.C = C0, .ldc = N };
	CHECK_EQ_INT(qd_qgemm_ref(&g), 0);
	g.C = C1;
	CHECK_EQ_INT(qd_qgemm(&g), 0);
	int32_t want = (int32_t)(uint32_t)(65025ull * 40000ull);
	for (int i = 0; i < 6; i++) {
		CHECK_EQ_INT(C0[i], want);
		CHECK_EQ_INT(C1[i], want);
	}
	free(A); free(B);
}

/* Threaded split over column panels: same result as the single-threaded ref. */
static void threaded(void)
{
	int64_t M = 37, N = 1100, K = 300;
	uint8_t *A = malloc((size_t)(M * K));
	int8_t *B = malloc((size_t)(K * N));
	int32_t *C0 = malloc((size_t)(M * N) * 4), *C1 = malloc((size_t)(M * N) * 4), azp = 3, *bzp = malloc((size_t)N * 4);
	for (int64_t i = 0; i < M * K; i++) A[i] = (uint8_t)rnd();
	for (int64_t i = 0; i < K * N; i++) B[i] = (int8_t)rnd();
	for (int64_t i = 0; i < N; i++) bzp[i] = (int8_t)rnd();
	struct qd_qgemm_args g = { .M = M, .N = N, .K = K, .A = A, .lda = K, .B = B, .ldb = N, .b_signed = true,
		.a_zp = &azp, .b_zp = bzp, .b_zp_per_col = true, .C = C0, .ldc = N };
	CHECK_EQ_INT(qd_qgemm_ref(&g), 0);
	for (int t = 2; t <= 5; t += 3) {
		g.C = C1;
		g.threads = t;
		memset(C1, 0, (size_t)(M * N) * 4);
		CHECK_EQ_INT(qd_qgemm(&g), 0);
		CHECKF(!memcmp(C0, C1, (size_t)(M * N) * 4), "%d threads differ from ref", t);
		struct qd_qgemm_packed *pb = NULL;
		CHECK_EQ_INT(qd_qgemm_pack_b(&g, &pb), 0);
		memset(C1, 0, (size_t)(M * N) * 4);
		CHECK_EQ_INT(qd_qgemm_prepacked(&g, pb), 0);
		CHECKF(!memcmp(C0, C1, (size_t)(M * N) * 4), "%d threads prepacked differ from ref", t);
		qd_qgemm_packed_free(pb);
	}
	free(A); free(B); free(C0); free(C1); free(bzp);
}

/* Float A quantized by the GEMM (Af, as DynamicQuantizeMatMul uses it): every path equals
 * qd_q_quantize_u8 then qd_qgemm_ref, including K tails that are not whole 16-float
 * vectors, rows past a multiple of 8, NaN / huge values and a row stride. */
static void float_a(void)
{
	int bad = 0;
	for (int it = 0; it < 60; it++) {
		int64_t M = 1 + rnd() % 21, N = 1 + rnd() % 70, K = 1 + rnd() % 100, lda = K + rnd() % 5;
		float *Af = malloc((size_t)(M * lda) * 4);
		uint8_t *A8 = malloc((size_t)(M * K));
		int8_t *B = malloc((size_t)(K * N));
		int32_t *C0 = malloc((size_t)(M * N) * 4), *C1 = malloc((size_t)(M * N) * 4);
		for (int64_t i = 0; i < M * lda; i++)
			Af[i] = ((float)(rnd() % 20001) - 10000.0f) * 3.1e-4f;
		if (it % 5 == 0) {
			Af[0] = __builtin_nanf("");
			Af[M * lda - 1] = 1e30f;
		}
		for (int64_t i = 0; i < K * N; i++) B[i] = (int8_t)rnd();
		float s;
		int32_t zp;
		qd_q_dynamic_params(Af, M * lda, &s, &zp);
		for (int64_t m = 0; m < M; m++)
			qd_q_quantize_u8(Af + m * lda, K, s, zp, 0, 255, A8 + m * K);
		struct qd_qgemm_args g = { .M = M, .N = N, .K = K, .A = A8, .lda = K, .B = B, .ldb = N,
			.b_signed = true, .a_zp = &zp, .C = C0, .ldc = N };
		CHECK_EQ_INT(qd_qgemm_ref(&g), 0);
		struct qd_qgemm_args gf = g;
		gf.A = NULL;
		gf.lda = lda;
		gf.Af = Af;
		gf.af_scale = s;
		gf.af_zp = zp;
		gf.C = C1;
		struct qd_qgemm_packed *pb = NULL;
		CHECK_EQ_INT(qd_qgemm_pack_b(&g, &pb), 0);
		for (int path = 0; path < 4; path++) {
			memset(C1, 0x33, (size_t)(M * N) * 4);
			int rc = path == 0 ? qd_qgemm(&gf) : path == 1 ? qd_qgemm_prepacked(&gf, pb) :
				 path == 2 ? qd_qgemm_generic(&gf) : qd_qgemm_bytes_generic(&gf);
			CHECK_EQ_INT(rc, 0);
			if (memcmp(C0, C1, (size_t)(M * N) * 4))
				bad++;
		}
		qd_qgemm_packed_free(pb);
		free(Af); free(A8); free(B); free(C0); free(C1);
	}
	CHECKF(bad == 0, "float A: %d path results differ from quantize + ref", bad);
}

int main(void)
{
	float_a();
	threaded();
	hand_checked();
	wraparound();
	int bad = 0;
	for (int it = 0; it < 200; it++)
		bad += random_case(it) != 0;
	CHECKF(bad == 0, "%d random cases differ", bad);
	printf("qgemm kernel: %s\n", qd_qgemm_kernel_name());
	return qd_test_done("test_engine_quant_qgemm");
}
