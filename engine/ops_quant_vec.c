/* engine/ops_quant_vec.c — the element loops around the integer GEMM, written so the
 * compiler vectorises them (O3, no trapping math, AVX2/AVX-512 clones): 8-bit
 * quantization, min/max for dynamic quantization, int32 -> float dequantization and
 * 8-bit requantization with per-column multipliers. Each keeps a plain _ref twin
 * (tests/unit/test_engine_quant_vec.c compares them). */
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno", "fp-contract=off")
#include "engine/ops_quant.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QV_CLONES
#endif

#define QV_MAGIC 12582912.0f   /* 1.5 * 2^23: (v + M) - M rounds |v| < 2^22 half to even */

/* q = saturate(round_half_even(v) + zp) into [lo, hi] for v already divided by the scale:
 * clamping to the integer bounds first keeps |v| small and maps NaN to lo. */
static inline int32_t qv_round(float v, int32_t zp, float vlo, float vhi)
{
	v = v > vlo ? v : vlo;
	v = v < vhi ? v : vhi;
	return (int32_t)((v + QV_MAGIC) - QV_MAGIC) + zp;
}

QV_CLONES
void qd_q_quantize_u8(const float *x, int64_t n, float s, int32_t zp, int32_t lo, int32_t hi, uint8_t *y)
{
	float vlo = (float)(lo - zp), vhi = (float)(hi - zp);
	for (int64_t i = 0; i < n; i++)
		y[i] = (uint8_t)qv_round(x[i] / s, zp, vlo, vhi);
}

QV_CLONES
void qd_q_quantize_s8(const float *x, int64_t n, float s, int32_t zp, int32_t lo, int32_t hi, int8_t *y)
{
	float vlo = (float)(lo - zp), vhi = (float)(hi - zp);
	for (int64_t i = 0; i < n; i++)
		y[i] = (int8_t)qv_round(x[i] / s, zp, vlo, vhi);
}

void qd_q_quantize_8_ref(const float *x, int64_t n, float s, int32_t zp, int32_t lo, int32_t hi,
			 bool is_signed, void *y)
{
	for (int64_t i = 0; i < n; i++) {
		int32_t q = qd_q_round_sat(x[i] / s, zp, lo, hi);
		if (is_signed)
			((int8_t *)y)[i] = (int8_t)q;
		else
			((uint8_t *)y)[i] = (uint8_t)q;
	}
}

QV_CLONES
void qd_q_minmax0(const float *x, int64_t n, float *mn, float *mx)
{
	/* 16 independent lanes (a float min/max reduction does not vectorise as such);
	 * comparisons with NaN are false, so NaNs are skipped in any order */
	float a[16] = {0}, b[16] = {0};
	int64_t i = 0;
	for (; i + 16 <= n; i += 16)
		for (int j = 0; j < 16; j++) {
			a[j] = x[i + j] < a[j] ? x[i + j] : a[j];
			b[j] = x[i + j] > b[j] ? x[i + j] : b[j];
		}
	for (; i < n; i++) {
		a[0] = x[i] < a[0] ? x[i] : a[0];
		b[0] = x[i] > b[0] ? x[i] : b[0];
	}
	float ra = 0.0f, rb = 0.0f;
	for (int j = 0; j < 16; j++) {
		ra = a[j] < ra ? a[j] : ra;
		rb = b[j] > rb ? b[j] : rb;
	}
	*mn = ra;
	*mx = rb;
}

void qd_q_minmax0_ref(const float *x, int64_t n, float *mn, float *mx)
{
	*mn = 0.0f;
	*mx = 0.0f;
	for (int64_t i = 0; i < n; i++) {
		if (x[i] < *mn) *mn = x[i];
		if (x[i] > *mx) *mx = x[i];
	}
}

QV_CLONES
void qd_q_dequant_rows(const int32_t *acc, int64_t rows, int64_t N, const float *mul,
		       const float *bias, float *y)
{
	for (int64_t r = 0; r < rows; r++) {
		const int32_t *a = acc + r * N;
		float *o = y + r * N;
		if (bias)
			for (int64_t n = 0; n < N; n++)
				o[n] = (float)a[n] * mul[n] + bias[n];
		else
			for (int64_t n = 0; n < N; n++)
				o[n] = (float)a[n] * mul[n];
	}
}

void qd_q_dequant_rows_ref(const int32_t *acc, int64_t rows, int64_t N, const float *mul,
			   const float *bias, float *y)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t n = 0; n < N; n++) {
			float v = (float)acc[r * N + n] * mul[n];
			y[r * N + n] = bias ? v + bias[n] : v;
		}
}

QV_CLONES
void qd_q_requant_row(const int32_t *acc, int64_t N, const float *mul, int32_t zp, int32_t lo,
		      int32_t hi, bool is_signed, void *y)
{
	float vlo = (float)(lo - zp), vhi = (float)(hi - zp);
	if (is_signed)
		for (int64_t n = 0; n < N; n++)
			((int8_t *)y)[n] = (int8_t)qv_round((float)acc[n] * mul[n], zp, vlo, vhi);
	else
		for (int64_t n = 0; n < N; n++)
			((uint8_t *)y)[n] = (uint8_t)qv_round((float)acc[n] * mul[n], zp, vlo, vhi);
}

void qd_q_requant_row_ref(const int32_t *acc, int64_t N, const float *mul, int32_t zp, int32_t lo,
			  int32_t hi, bool is_signed, void *y)
{
	for (int64_t n = 0; n < N; n++) {
		int32_t q = qd_q_round_sat((float)acc[n] * mul[n], zp, lo, hi);
		if (is_signed)
			((int8_t *)y)[n] = (int8_t)q;
		else
			((uint8_t *)y)[n] = (uint8_t)q;
	}
}
