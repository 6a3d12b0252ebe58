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

/* The rules of the Vitis AI targets on a model (the pass's own validation and the
 * tests): every scale of a QuantizeLinear / DequantizeLinear / QLinear* op is a power of
 * two; with dpu also per tensor, zero point 0, int8, and the DPU shift constraints
 * (shift_cut, shift_bias, Sigmoid, Add / Mul, Concat, pooling) hold. Returns 0, or
 * -QD_EORT_REJECT naming the first offending tensor in err; *n_scales (may be NULL) gets
 * the number of scales checked. */
int qd_vitis_check_model(const struct qd_model *m, bool dpu, size_t *n_scales, struct qd_err *err);

#endif
