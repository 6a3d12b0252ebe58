/* engine/qgemm.h — integer GEMM for the quantized kernels: 8-bit A [M,K] times 8-bit B
 * [K,N] (each uint8 or int8) with zero points, accumulated exactly in int32 (wrapping on
 * overflow like ONNX MatMulInteger). qd_qgemm_ref is the plain scalar twin of qd_qgemm. */
#ifndef QD_QGEMM_H
#define QD_QGEMM_H

#include <stdint.h>
#include <stdbool.h>

/* C[m][n] = sum_k (A[m][k] - a_zp[m]) * (B[k][n] - b_zp[n]).
 * Zero points: NULL means 0; one value unless a_zp_per_row / b_zp_per_col, then M / N
 * values. Zero points are int32 so uint8 and int8 ones fit; the caller passes them in the
 * same domain as the data (0..255 for unsigned, -128..127 for signed).
 * Strides are in elements. C is overwritten (not accumulated). All pointers borrowed. */
struct qd_qgemm_args {
	int64_t M, N, K;
	const void *A; int64_t lda; bool a_signed;
	const void *B; int64_t ldb; bool b_signed;
	const int32_t *a_zp; bool a_zp_per_row;
	const int32_t *b_zp; bool b_zp_per_col;
	int32_t *C; int64_t ldc;
	/* Optional float output (MatMulIntegerToFloat, DynamicQuantizeMatMul): when Cf is set,
	 * Cf[m][n] = (float)C[m][n] * cmul[n] + cbias[n] (no bias when cbias is NULL; multiply
	 * and add rounded separately, as qd_q_dequant_rows does), stride ldc. The byte path
	 * writes it from each tile without storing C; the other paths write C (which must then
	 * be M x ldc int32 scratch) and convert it. qd_qgemm_ref ignores these fields. */
	float *Cf; const float *cmul, *cbias;
	/* Optional float A (DynamicQuantizeMatMul): when Af is set, A is Af [M][lda] quantized
	 * to uint8 as DynamicQuantizeLinear does (qd_q_quantize_u8 with af_scale, af_zp, 0..255);
	 * A and a_signed are then unused and a_zp must point to af_zp. The byte path quantizes
	 * while it packs; the others quantize into a buffer first. qd_qgemm and
	 * qd_qgemm_prepacked only. */
	const float *Af; float af_scale; int32_t af_zp;
	int threads;    /* qd_qgemm / qd_qgemm_prepacked: split column panels over this many
	                   threads for large products (0 or 1: the calling thread only) */
};

/* Each returns 0 or -QD_ENOMEM (packing buffers) / -QD_EINVAL (negative sizes, NULL data).
 * qd_qgemm: blocked, packed, best inner kernel for this CPU (AVX-512 VNNI u8 x s8 byte
 * path, else the AVX2 int16 kernel).
 * qd_qgemm_generic: the same blocking with the portable C inner kernel.
 * qd_qgemm_ref: three plain loops. */
int qd_qgemm(const struct qd_qgemm_args *g);
int qd_qgemm_generic(const struct qd_qgemm_args *g);
/* The u8 x s8 byte path (what qd_qgemm runs with AVX-512 VNNI) with its portable inner
 * kernel, on any CPU: testable against qd_qgemm_ref. */
int qd_qgemm_bytes_generic(const struct qd_qgemm_args *g);
/* The AVX2 kernel whatever the CPU has beyond it; -QD_EUNSUPPORTED without AVX2. */
int qd_qgemm_avx2(const struct qd_qgemm_args *g);
int qd_qgemm_ref(const struct qd_qgemm_args *g);

/* B packed ahead of time (constant weights): qd_qgemm_pack_b reads K, N, B, ldb, b_signed,
 * b_zp / b_zp_per_col of g; qd_qgemm_prepacked then ignores those fields of its g and uses
 * the packed copy (K and N must match). *out new (qd_qgemm_packed_free). */
struct qd_qgemm_packed;
int qd_qgemm_pack_b(const struct qd_qgemm_args *g, struct qd_qgemm_packed **out);
int qd_qgemm_prepacked(const struct qd_qgemm_args *g, const struct qd_qgemm_packed *pb);
void qd_qgemm_packed_free(struct qd_qgemm_packed *p);

/* Which inner kernel qd_qgemm picks on this CPU: "avx512-vnni", "avx2" or "generic". */
const char *qd_qgemm_kernel_name(void);

#endif
