/* engine/ops_quant.h — helpers shared by the quantized kernels (engine/ops_quant*.c):
 * quantization ranges, round-half-to-even saturation, reading scale / zero-point inputs,
 * and batched MatMul shape handling. Not a public interface. */
#ifndef QD_OPS_QUANT_H
#define QD_OPS_QUANT_H

#include <math.h>
#include "engine/engine_internal.h"

/* Integer range of a quantized dtype; false if dt is not one we quantize to. */
static inline bool qd_q_range(int dt, int32_t *lo, int32_t *hi)
{
	switch (dt) {
	case QD_DT_UINT8: *lo = 0; *hi = 255; return true;
	case QD_DT_INT8: *lo = -128; *hi = 127; return true;
	case QD_DT_UINT16: *lo = 0; *hi = 65535; return true;
	case QD_DT_INT16: *lo = -32768; *hi = 32767; return true;
	case QD_DT_INT32: *lo = INT32_MIN; *hi = INT32_MAX; return true;
	default: return false;
	}
}

/* saturate(round_half_even(v) + zp) into [lo, hi]; v and zp in float (NaN -> zp... -> lo). */
static inline int32_t qd_q_round_sat(float v, int32_t zp, int32_t lo, int32_t hi)
{
	double r = (double)rintf(v) + zp;   /* rintf: current mode = to nearest, ties to even */
	if (!(r >= lo)) return lo;          /* also NaN */
	if (r > hi) return hi;
	return (int32_t)r;
}

/* Store code q (already saturated) at element i of an 8/16/32-bit integer buffer. */
static inline void qd_q_store(void *p, int dt, int64_t i, int32_t q)
{
	switch (dt) {
	case QD_DT_UINT8: ((uint8_t *)p)[i] = (uint8_t)q; break;
	case QD_DT_INT8: ((int8_t *)p)[i] = (int8_t)q; break;
	case QD_DT_UINT16: ((uint16_t *)p)[i] = (uint16_t)q; break;
	case QD_DT_INT16: ((int16_t *)p)[i] = (int16_t)q; break;
	case QD_DT_INT32: ((int32_t *)p)[i] = q; break;
	default: break;
	}
}

static inline int32_t qd_q_load(const void *p, int dt, int64_t i)
{
	switch (dt) {
	case QD_DT_UINT8: return ((const uint8_t *)p)[i];
	case QD_DT_INT8: return ((const int8_t *)p)[i];
	case QD_DT_UINT16: return ((const uint16_t *)p)[i];
	case QD_DT_INT16: return ((const int16_t *)p)[i];
	case QD_DT_INT32: return ((const int32_t *)p)[i];
	default: return 0;
	}
}

static inline bool qd_is_q8(int dt)
{
	return dt == QD_DT_UINT8 || dt == QD_DT_INT8;
}

/* A float32 scalar input (scale): fails naming `what` unless float32 with one element. */
int qd_q_scalar_f32(struct qd_ctx *c, int i, const char *what, float *out);
/* An optional integer scalar (zero point) of dtype dt; absent -> 0. */
int qd_q_scalar_zp(struct qd_ctx *c, int i, const char *what, int dt, int32_t *out);
/* A float32 scale vector of 1 or n elements: *v new (free()), *per = (numel == n > 1). */
int qd_q_vec_f32(struct qd_ctx *c, int i, const char *what, int64_t n, float **v, bool *per);
/* An optional zero-point vector of dtype dt, 1 or n elements (absent -> one 0). *v new. */
int qd_q_vec_zp(struct qd_ctx *c, int i, const char *what, int dt, int64_t n, int32_t **v,
		bool *per);

/* Batched MatMul geometry (numpy matmul rules, batch dims broadcast). */
struct qd_mm_geom {
	int64_t M, N, K, batch;
	int ndim;                       /* output rank */
	int64_t dims[QD_MAX_DIMS];      /* output shape */
	int64_t *a_off, *b_off;         /* per batch: matrix index into A and B (new) */
};
/* Fills g from the shapes of a and b (b may be given by dims only: b_ndim/b_dims). */
int qd_mm_geom(struct qd_ctx *c, int a_ndim, const int64_t *a_dims, int b_ndim,
	       const int64_t *b_dims, struct qd_mm_geom *g);
void qd_mm_geom_free(struct qd_mm_geom *g);

/* Dynamic uint8 quantization parameters of x (DynamicQuantizeLinear rules). */
void qd_q_dynamic_params(const float *x, int64_t n, float *scale, int32_t *zp);

/* Vectorised element loops (engine/ops_quant_vec.c) and their plain _ref twins.
 * Quantize n floats: saturate(round_half_even(x / s) + zp) into [lo, hi] (8-bit). */
void qd_q_quantize_u8(const float *x, int64_t n, float s, int32_t zp, int32_t lo, int32_t hi, uint8_t *y);
void qd_q_quantize_s8(const float *x, int64_t n, float s, int32_t zp, int32_t lo, int32_t hi, int8_t *y);
void qd_q_quantize_8_ref(const float *x, int64_t n, float s, int32_t zp, int32_t lo, int32_t hi,
			 bool is_signed, void *y);
/* min(0, x...) and max(0, x...), NaNs ignored. */
void qd_q_minmax0(const float *x, int64_t n, float *mn, float *mx);
void qd_q_minmax0_ref(const float *x, int64_t n, float *mn, float *mx);
/* y[r][n] = acc[r][n] * mul[n] (+ bias[n]); rows x N, contiguous. */
void qd_q_dequant_rows(const int32_t *acc, int64_t rows, int64_t N, const float *mul,
		       const float *bias, float *y);
void qd_q_dequant_rows_ref(const int32_t *acc, int64_t rows, int64_t N, const float *mul,
			   const float *bias, float *y);
/* y[n] = saturate(round_half_even(acc[n] * mul[n]) + zp) into [lo, hi], 8-bit. */
void qd_q_requant_row(const int32_t *acc, int64_t N, const float *mul, int32_t zp, int32_t lo,
		      int32_t hi, bool is_signed, void *y);
void qd_q_requant_row_ref(const int32_t *acc, int64_t N, const float *mul, int32_t zp, int32_t lo,
			  int32_t hi, bool is_signed, void *y);
/* The same over rows x N contiguous sums, bias[n] (int32, NULL = none) added to each row
 * first with the int32 wrap-around of the sums. */
void qd_q_requant_rows(const int32_t *acc, int64_t rows, int64_t N, const float *mul, const int32_t *bias,
		       int32_t zp, int32_t lo, int32_t hi, bool is_signed, void *y);
void qd_q_requant_rows_ref(const int32_t *acc, int64_t rows, int64_t N, const float *mul, const int32_t *bias,
			   int32_t zp, int32_t lo, int32_t hi, bool is_signed, void *y);
/* y[i] = (x[i] - zp) * s for n 8-bit codes (int8 when is_signed). */
void qd_q_dequant_8(const void *x, int64_t n, bool is_signed, int32_t zp, float s, float *y);
void qd_q_dequant_8_ref(const void *x, int64_t n, bool is_signed, int32_t zp, float s, float *y);
/* y[i] = lut[x[i]] for n bytes (AVX-512 VBMI where the CPU has it). */
void qd_lut8(const uint8_t *x, int64_t n, const uint8_t *lut, uint8_t *y);
void qd_lut8_ref(const uint8_t *x, int64_t n, const uint8_t *lut, uint8_t *y);
/* dst[c * ldd + r] = src[r * lds + c] for rows x cols bytes. */
void qd_transpose_u8(const uint8_t *src, int64_t rows, int64_t cols, int64_t lds, uint8_t *dst, int64_t ldd);
void qd_transpose_u8_ref(const uint8_t *src, int64_t rows, int64_t cols, int64_t lds, uint8_t *dst,
			 int64_t ldd);

/* engine/ops_quant_conv.c: non-zero runs depthwise QLinearConv/ConvInteger through the
 * im2col + GEMM path (tests compare the two). */
extern int qd_qconv_force_gemm;
/* Non-zero runs depthwise QLinearConv on channel planes instead of channels last (tests
 * compare the two). */
extern int qd_qconv_dw_planes;
/* Non-zero runs every QLinearConv / ConvInteger the weight-major way (the reference twin
 * of the pixel-major path; tests compare the two bit for bit). */
extern int qd_qconv_ref_path;
/* Packs the weights of QLinearConv / ConvInteger node n (w and its zero point wz, NULL = 0,
 * both constant) into n->priv ahead of the first run; depthwise nodes and weights it cannot
 * read are left alone (the kernel packs or rejects them). 0 or -QD_ENOMEM. */
struct qd_enode;
int qd_qconv_prepack(struct qd_enode *n, const struct qd_tensor *w, const struct qd_tensor *wz);
void qd_qconv_pack_free(void *p);

#endif
