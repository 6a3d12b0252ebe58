/* VitisAIQuantization (passes/vitis.c): AMD Vitis AI / Ryzen AI quantization with
 * power-of-two scales on top of the static pass, and the checker of its rules. */
#ifndef QD_VITIS_H
#define QD_VITIS_H

#include "qd.h"
#include "onnx/onnx.h"
#include "passes/quant_math.h"

/* scale2pos / pos2scale (reference/inc_vitis_qnn.md §B.2): pos = rint(-log2 s) clamped to
 * [-128, 127]; scale = 2^-pos. */
int qd_vitis_scale2pos(double scale);
double qd_vitis_pos2scale(int pos);
/* compute_scale_zp_pof2s: 0 included in the range, symmetric uses +-max|r|, s = 2^-pos of
 * (rmax - rmin) / (qmax - qmin); a scale below FLT_MIN gives 1 / 0; zp = rhe(qmin -
 * rmin / s), or the middle of [qmin, qmax] when symmetric, clipped to [qmin, qmax]. */
void qd_vitis_scale_zp(double rmin, double rmax, int32_t qmin, int32_t qmax, bool symmetric, float *scale,
		       int32_t *zp);
/* The DPU's non-overflow position of a weight (vitis_quantize_data): floor(log2(1 / s))
 * with s = max(min / -128.5, max / 127.5), clamped to [-128, 127]; 127 when all zero. */
int qd_vitis_dpu_pos(float xmin, float xmax);

/* MinMSE (§B.1): sse[i] += the sum over x (clipped to [lo, hi]) of the squared error of
 * quantizing to codes [qmin, qmax] with zero point zp and scale 2^-(pos0 + i), for i <
 * QD_VITIS_POS_RANGE while pos0 + i <= 126. The fast one (one pass, float sums per block)
 * agrees with the plain _ref twin to float rounding. */
#define QD_VITIS_POS_RANGE 5
void qd_vitis_sse(const float *x, size_t n, int pos0, int32_t zp, int32_t qmin, int32_t qmax, float lo, float hi,
		  double *sse);
void qd_vitis_sse_ref(const float *x, size_t n, int pos0, int32_t zp, int32_t qmin, int32_t qmax, float lo, float hi,
		      double *sse);

/* The rules of the Vitis AI targets on a model (the pass's own validation and the
 * tests): every scale of a QuantizeLinear / DequantizeLinear / QLinear* op is a power of
 * two; with dpu also per tensor, zero point 0, int8, and the DPU shift constraints
 * (shift_cut, shift_bias, Sigmoid, Add / Mul, Concat, pooling) hold. Returns 0, or
 * -QD_EORT_REJECT naming the first offending tensor in err; *n_scales (may be NULL) gets
 * the number of scales checked. */
int qd_vitis_check_model(const struct qd_model *m, bool dpu, size_t *n_scales, struct qd_err *err);

#endif
