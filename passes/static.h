/* The extension point of the static pass (passes/static.c) for quantizers built on its
 * calibration and its QDQ / QOperator emission (VitisAIQuantization, passes/vitis.c): a
 * target replaces how scales and zero points are computed, may refine the calibrated
 * ranges, quantize biases like weights, and edit the model before selection and after
 * the rewrite. Every hook may be NULL (ORT's behaviour). */
#ifndef QD_STATIC_H
#define QD_STATIC_H

#include "passes/passes.h"
#include "passes/quant_math.h"
#include "passes/calibrate.h"

/* Calibrated ranges handed to a target's refine hook: n tensors with a range (rmin/rmax
 * in: the calibrator's, out: the refined ones). rerun runs every calibration batch again
 * through the float model, calling obs for each float graph input and node output (the
 * tensor borrowed during the call) and end_batch (may be NULL) after each batch. */
struct qd_static_ranges {
	size_t n;
	const char *const *names;      /* borrow */
	float *rmin, *rmax;
	enum qd_qtype atype;
	bool symmetric;                /* ActivationSymmetric */
	int (*rerun)(struct qd_static_ranges *r, void (*obs)(void *ud, const char *name, const float *x, size_t n),
		     void (*end_batch)(void *ud), void *ud, struct qd_err *err);
	void *priv;                    /* static.c's */
};

struct qd_static_target {
	const char *name;              /* in logs and stats ("VitisAI") */
	void *ud;
	/* activation scale / zero point from a range (replaces ORT's compute_scale_zp) */
	void (*act_scale_zp)(void *ud, double rmin, double rmax, int32_t qmin, int32_t qmax, bool symmetric,
			     float *scale, int32_t *zp);
	/* quantize a float initializer per tensor (axis < 0: one scale) or per channel along
	 * axis: scales / zps get dims[axis] entries (1 per tensor), codes the layout of x.
	 * bias: the tensor is a bias quantized like a weight (bias_as_weight). 0 or -QD_E* */
	int (*quant_weight)(void *ud, const float *x, const int64_t *dims, int ndim, int axis, enum qd_qtype qt,
			    bool symmetric, bool reduce_range, bool bias, float *scales, int32_t *zps, void *codes);
	/* a weight scale that must grow to at least need (the int32-bias adjustment) */
	float (*grow_scale)(void *ud, float scale, double need);
	/* after calibration, before the scales are computed (MinMSE) */
	int (*refine)(void *ud, struct qd_pass_ctx *ctx, struct qd_static_ranges *r, struct qd_err *err);
	/* after preprocessing, before selection (cross-layer equalization) */
	int (*prepare)(void *ud, struct qd_pass_ctx *ctx, struct qd_model *m, struct qd_err *err);
	/* after the rewrite, before qd_pass_validate_output (layer fusing, constraints, rules) */
	int (*finish)(void *ud, struct qd_pass_ctx *ctx, struct qd_model *m, struct qd_err *err);
	/* QDQ: a Conv / Gemm bias is quantized like a weight (weight type, per tensor, float
	 * initializer + Q + DQ) instead of int32 */
	bool bias_as_weight;
};

/* OnnxStaticQuantization's run with a target (NULL: qd_pass_run_static). params use the
 * static pass's names (qd_params_onnx_static). */
int qd_static_run(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
		  const struct qd_static_target *t, struct qd_err *err);

#endif
