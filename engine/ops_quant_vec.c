/* engine/ops_quant_vec.c — the element loops around the integer GEMM, written so the
 * compiler vectorises them (O3, no trapping math, AVX2/AVX-512 clones): 8-bit
 * quantization, min/max for dynamic quantization, int32 -> float dequantization and
 * 8-bit requantization with per-column multipliers, and the byte transpose of the
 * integer convolution's layout changes. Each keeps a plain _ref twin
 * (tests/unit/test_engine_quant_vec.c compares them). */
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno", "fp-contract=off")
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif
#include "engine/ops_quant.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
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

/* 16 codes of a row: fixed-length loops, each one vector operation in the clones. */
static inline void rq16(const int32_t *restrict a, const int32_t *restrict b, const float *restrict m,
			int32_t zp, float vlo, float vhi, uint8_t *restrict o)
{
	for (int n = 0; n < 16; n++)
		o[n] = (uint8_t)qv_round((float)(int32_t)((uint32_t)a[n] + (uint32_t)b[n]) * m[n], zp, vlo, vhi);
}

static inline void rq16_nb(const int32_t *restrict a, const float *restrict m, int32_t zp, float vlo,
			   float vhi, uint8_t *restrict o)
{
	for (int n = 0; n < 16; n++)
		o[n] = (uint8_t)qv_round((float)a[n] * m[n], zp, vlo, vhi);
}

/* Rows are often short (the channels of one convolution group): 16 at a time with no
 * per-row set-up, the N % 16 tail by element. The bias wraps as the int32 sums do. The low
 * byte of a code in [lo, hi] is the int8 and the uint8 alike, so is_signed changes nothing. */
QV_CLONES
void qd_q_requant_rows(const int32_t *acc, int64_t rows, int64_t N, const float *mul, const int32_t *bias,
		       int32_t zp, int32_t lo, int32_t hi, bool is_signed, void *y)
{
	float vlo = (float)(lo - zp), vhi = (float)(hi - zp);
	int64_t n16 = N & ~(int64_t)15;
	for (int64_t r = 0; r < rows; r++) {
		const int32_t *a = acc + r * N;
		uint8_t *o = (uint8_t *)y + r * N;
		int64_t n = 0;
		if (bias) {
			for (; n < n16; n += 16)
				rq16(a + n, bias + n, mul + n, zp, vlo, vhi, o + n);
			for (; n < N; n++)
				o[n] = (uint8_t)qv_round((float)(int32_t)((uint32_t)a[n] + (uint32_t)bias[n]) * mul[n],
							 zp, vlo, vhi);
		} else {
			for (; n < n16; n += 16)
				rq16_nb(a + n, mul + n, zp, vlo, vhi, o + n);
			for (; n < N; n++)
				o[n] = (uint8_t)qv_round((float)a[n] * mul[n], zp, vlo, vhi);
		}
	}
	(void)is_signed;
}

void qd_q_requant_rows_ref(const int32_t *acc, int64_t rows, int64_t N, const float *mul, const int32_t *bias,
			   int32_t zp, int32_t lo, int32_t hi, bool is_signed, void *y)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t n = 0; n < N; n++) {
			int32_t v = acc[r * N + n];
			if (bias)
				v = (int32_t)((uint32_t)v + (uint32_t)bias[n]);
			qd_q_store(y, is_signed ? QD_DT_INT8 : QD_DT_UINT8, r * N + n,
				   qd_q_round_sat((float)v * mul[n], zp, lo, hi));
		}
}

/* ---- byte transpose: 16 x 16 blocks in SSE2 registers ----
 * Four rounds of out[2k] = unpacklo(in[k], in[k + 8]), out[2k + 1] = unpackhi(...): each
 * round rotates the 8-bit (row, column) index of every byte by one bit, four rounds swap
 * its halves, which is the transpose. Edge blocks go through a zero-padded copy. */
#ifdef __SSE2__
static inline void tr16(const uint8_t *src, int64_t lds, uint8_t *dst, int64_t ldd)
{
	__m128i a[16], b[16];
	for (int k = 0; k < 16; k++)
		a[k] = _mm_loadu_si128((const __m128i *)(src + k * lds));
	for (int round = 0; round < 4; round++) {
		__m128i *i = round % 2 ? b : a, *o = round % 2 ? a : b;
		for (int k = 0; k < 8; k++) {
			o[2 * k] = _mm_unpacklo_epi8(i[k], i[k + 8]);
			o[2 * k + 1] = _mm_unpackhi_epi8(i[k], i[k + 8]);
		}
	}
	for (int k = 0; k < 16; k++)
		_mm_storeu_si128((__m128i *)(dst + k * ldd), a[k]);
}
#else
static inline void tr16(const uint8_t *src, int64_t lds, uint8_t *dst, int64_t ldd)
{
	for (int r = 0; r < 16; r++)
		for (int c = 0; c < 16; c++)
			dst[c * ldd + r] = src[r * lds + c];
}
#endif

void qd_transpose_u8(const uint8_t *src, int64_t rows, int64_t cols, int64_t lds, uint8_t *dst, int64_t ldd)
{
	uint8_t ti[256], to[256];
	if (rows < 16) {
		/* a few planes interleaved (a 3-channel image): the padded block would move 16
		 * times the bytes */
		for (int64_t c = 0; c < cols; c++)
			for (int64_t r = 0; r < rows; r++)
				dst[c * ldd + r] = src[r * lds + c];
		return;
	}
	for (int64_t r0 = 0; r0 < rows; r0 += 16) {
		int64_t nr = QD_MIN((int64_t)16, rows - r0);
		for (int64_t c0 = 0; c0 < cols; c0 += 16) {
			int64_t nc = QD_MIN((int64_t)16, cols - c0);
			const uint8_t *s = src + r0 * lds + c0;
			uint8_t *d = dst + c0 * ldd + r0;
			if (nr == 16 && nc == 16) {
				tr16(s, lds, d, ldd);
				continue;
			}
			memset(ti, 0, sizeof(ti));
			for (int64_t r = 0; r < nr; r++)
				memcpy(ti + 16 * r, s + r * lds, (size_t)nc);
			tr16(ti, 16, to, 16);
			for (int64_t c = 0; c < nc; c++)
				memcpy(d + c * ldd, to + 16 * c, (size_t)nr);
		}
	}
}

void qd_transpose_u8_ref(const uint8_t *src, int64_t rows, int64_t cols, int64_t lds, uint8_t *dst, int64_t ldd)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			dst[c * ldd + r] = src[r * lds + c];
}

QV_CLONES
void qd_q_dequant_8(const void *x, int64_t n, bool is_signed, int32_t zp, float s, float *y)
{
	if (is_signed)
		for (int64_t i = 0; i < n; i++)
			y[i] = (float)((int32_t)((const int8_t *)x)[i] - zp) * s;
	else
		for (int64_t i = 0; i < n; i++)
			y[i] = (float)((int32_t)((const uint8_t *)x)[i] - zp) * s;
}

void qd_q_dequant_8_ref(const void *x, int64_t n, bool is_signed, int32_t zp, float s, float *y)
{
	for (int64_t i = 0; i < n; i++) {
		int64_t v = is_signed ? ((const int8_t *)x)[i] : ((const uint8_t *)x)[i];
		y[i] = (float)(v - zp) * s;
	}
}

/* ---- 8-bit table lookup ----
 * With AVX-512 VBMI, 64 codes per step: two vpermi2b over the table's halves (7 index bits
 * each) and a blend on the top bit. */
void qd_lut8_ref(const uint8_t *x, int64_t n, const uint8_t *lut, uint8_t *y)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = lut[x[i]];
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static void lut8_vbmi(const uint8_t *x, int64_t n, const uint8_t *lut, uint8_t *y)
{
	const __m512i t0 = _mm512_loadu_si512((const void *)lut), t1 = _mm512_loadu_si512((const void *)(lut + 64));
	const __m512i t2 = _mm512_loadu_si512((const void *)(lut + 128)), t3 = _mm512_loadu_si512((const void *)(lut + 192));
	int64_t i = 0;
	for (; i + 64 <= n; i += 64) {
		__m512i v = _mm512_loadu_si512((const void *)(x + i));
		__m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
		_mm512_storeu_si512((void *)(y + i), _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
	}
	qd_lut8_ref(x + i, n - i, lut, y + i);
}

void qd_lut8(const uint8_t *x, int64_t n, const uint8_t *lut, uint8_t *y)
{
	static int have = -1;
	if (have < 0)
		have = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
	if (have)
		lut8_vbmi(x, n, lut, y);
	else
		qd_lut8_ref(x, n, lut, y);
}
#else
void qd_lut8(const uint8_t *x, int64_t n, const uint8_t *lut, uint8_t *y)
{
	qd_lut8_ref(x, n, lut, y);
}
#endif
