/* Calibration (reference/ort_quantization.md §4): range collectors fed tensor by tensor
 * from the engine's hook while calibration batches run through the float model, with
 * memory bounded by the histograms (never samples x activations).
 *   MinMax       global min/max, or the moving average of per-batch min/max
 *   Entropy      KL divergence over a histogram (ORT's TensorRT-style search)
 *   Percentile   percentile of |x| (symmetric, default) or of x
 *   Distribution histogram mean / std (float8-style), range = histogram edges
 * Histograms grow as ORT's collect_value does (same bin width, widened range), so
 * streaming batches give ORT's strided-calibration result. */
#ifndef QD_CALIBRATE_H
#define QD_CALIBRATE_H

#include "qd.h"
#include "engine/engine.h"
#include <jansson.h>

enum qd_calib_method { QD_CALIB_MINMAX, QD_CALIB_ENTROPY, QD_CALIB_PERCENTILE, QD_CALIB_DISTRIBUTION };

struct qd_calib_opts {
	enum qd_calib_method method;
	int symmetric;              /* CalibTensorRangeSymmetric: -1 = method default
	                               (Percentile true, others false), 0, 1 */
	bool moving_average;        /* CalibMovingAverage (MinMax) */
	double averaging_constant;  /* CalibMovingAverageConstant, default 0.01 */
	int num_bins;               /* 0 = method default (Entropy 128, Percentile 2048,
	                               Distribution 2048) */
	int num_quantized_bins;     /* Entropy, 0 = 128 */
	double percentile;          /* Percentile, 0 = 99.999 */
	const char *scenario;       /* Distribution: "same" (default) or "p3" */
};

struct qd_calib;

/* Returns the method for a calibrate_method name ("MinMax", ...) or -1. */
int qd_calib_method_from_name(const char *name);

int qd_calib_new(const struct qd_calib_opts *o, struct qd_calib **out, struct qd_err *err);
void qd_calib_free(struct qd_calib *c);

/* Calibrate this tensor (float32 values). Tensors never added are ignored by observe. */
int qd_calib_add_tensor(struct qd_calib *c, const char *name);
/* Engine hook (qd_engine_set_hook(e, qd_calib_hook, c)): observes every added tensor. */
void qd_calib_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t);
/* Feed values of one tensor for the current batch (what the hook calls). NaN values are
 * skipped and counted (qd_calib_compute reports a tensor with only NaN/Inf values). */
int qd_calib_observe(struct qd_calib *c, const char *name, const float *x, size_t n);
/* End of one batch (moving average uses the per-batch min/max). */
void qd_calib_end_batch(struct qd_calib *c);

/* Batch source for qd_calib_run: fill *in (new, qd_tensors_release) with one batch of
 * model inputs; return 1 for a batch, 0 at the end, negative error. */
typedef int (*qd_calib_next_fn)(void *ud, struct qd_tensor **in, size_t *n_in, struct qd_err *err);
/* Run every batch through e (hook set to this calibrator, restored after), calling
 * end_batch after each. cancel may be NULL. progress (may be NULL) gets batches done. */
int qd_calib_run(struct qd_calib *c, struct qd_engine *e, qd_calib_next_fn next, void *ud,
		 const volatile int *cancel, void (*progress)(void *ud, int64_t batches),
		 struct qd_err *err);

/* Compute the ranges. Error when a tensor saw no finite value (names it). */
int qd_calib_compute(struct qd_calib *c, struct qd_err *err);
/* Range of a tensor after compute; false when the tensor was not calibrated / not seen. */
bool qd_calib_range(const struct qd_calib *c, const char *name, float *rmin, float *rmax);
/* Bytes held by the collectors (histograms and tables) at their peak. */
size_t qd_calib_peak_bytes(const struct qd_calib *c);
/* {"method", "tensors", "batches", "peak_bytes", "ranges": {name: [rmin, rmax]}} (ranges
 * only up to max_ranges entries, the widest first). new. */
json_t *qd_calib_summary_json(const struct qd_calib *c, size_t max_ranges);

#endif
