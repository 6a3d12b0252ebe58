/* bench/qgemm_bench.c — integer GEMM throughput (u8 x s8 -> int32 with zero points) of
 * qd_qgemm (best kernel, B packed per call), qd_qgemm_prepacked (B packed once, as the
 * engine does for constant weights), qd_qgemm_generic and qd_qgemm_ref against OpenBLAS
 * sgemm on the same shapes, single-threaded. Prints GOPS (2*M*N*K / s); never asserts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "qd.h"
#include "engine/qgemm.h"

void openblas_set_num_threads(int n);

typedef int (*qfn)(const struct qd_qgemm_args *);

static const struct qd_qgemm_packed *g_packed;
static int run_prepacked(const struct qd_qgemm_args *g)
{
	return qd_qgemm_prepacked(g, g_packed);
}

static double time_q(qfn f, const struct qd_qgemm_args *g, double budget)
{
	double best = 1e30, t_end = qd_now_mono() + budget;
	int reps = 0;
	do {
		double t0 = qd_now_mono();
		f(g);
		double t = qd_now_mono() - t0;
		if (t < best) best = t;
		reps++;
	} while (qd_now_mono() < t_end || reps < 2);
	return best;
}

static double time_s(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C, double budget)
{
	double best = 1e30, t_end = qd_now_mono() + budget;
	int reps = 0;
	do {
		double t0 = qd_now_mono();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f,
			    A, (int)K, B, (int)N, 0.0f, C, (int)N);
		double t = qd_now_mono() - t0;
		if (t < best) best = t;
		reps++;
	} while (qd_now_mono() < t_end || reps < 2);
	return best;
}

int main(void)
{
	static const int64_t shapes[][3] = {
		{ 1, 768, 768 }, { 16, 768, 768 }, { 128, 768, 768 }, { 64, 3072, 768 }, { 64, 768, 3072 }, { 512, 512, 512 },
	};
	openblas_set_num_threads(1);
	printf("qgemm kernel: %s (single thread; GOPS = 2*M*N*K / best time)\n", qd_qgemm_kernel_name());
	printf("%-18s %10s %10s %10s %10s %10s %8s\n", "M x N x K", "qgemm", "prepacked", "generic", "ref", "sgemm",
	       "pre/sgemm");
	for (size_t s = 0; s < QD_ARRAY_LEN(shapes); s++) {
		int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
		uint8_t *A = malloc((size_t)(M * K));
		int8_t *B = malloc((size_t)(K * N));
		int32_t *C = malloc((size_t)(M * N) * 4), azp = 128, bzp = 3;
		float *Af = malloc((size_t)(M * K) * 4), *Bf = malloc((size_t)(K * N) * 4), *Cf = malloc((size_t)(M * N) * 4);
		for (int64_t i = 0; i < M * K; i++) { A[i] = (uint8_t)(i * 37 + 11); Af[i] = (float)A[i] / 255.0f; }
		for (int64_t i = 0; i < K * N; i++) { B[i] = (int8_t)(i * 53 + 7); Bf[i] = (float)B[i] / 127.0f; }
		struct qd_qgemm_args g = { .M = M, .N = N, .K = K, .A = A, .lda = K, .B = B, .ldb = N,
			.b_signed = true, .a_zp = &azp, .b_zp = &bzp, .C = C, .ldc = N };
		double ops = 2.0 * (double)M * (double)N * (double)K;
		struct qd_qgemm_packed *pb = NULL;
		if (qd_qgemm_pack_b(&g, &pb)) {
			fprintf(stderr, "qgemm_bench: out of memory\n");
			return 1;
		}
		g_packed = pb;
		double tq = time_q(qd_qgemm, &g, 0.3), tp = time_q(run_prepacked, &g, 0.3);
		double tg = time_q(qd_qgemm_generic, &g, 0.3);
		qd_qgemm_packed_free(pb);
		double tr = ops <= 2.0 * 128 * 768 * 768 ? time_q(qd_qgemm_ref, &g, 0.1) : 0;
		double ts = time_s(M, N, K, Af, Bf, Cf, 0.3);
		char shp[40], rs[16];
		snprintf(shp, sizeof(shp), "%lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
		if (tr > 0) snprintf(rs, sizeof(rs), "%10.2f", ops / tr / 1e9); else snprintf(rs, sizeof(rs), "%10s", "-");
		printf("%-18s %10.2f %10.2f %10.2f %s %10.2f %8.2f\n", shp, ops / tq / 1e9, ops / tp / 1e9,
		       ops / tg / 1e9, rs, ops / ts / 1e9, ts / tp);
		free(A); free(B); free(C); free(Af); free(Bf); free(Cf);
	}
	return 0;
}
