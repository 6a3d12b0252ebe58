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
	double averaging_constant;  /* CalibMovingAverageConstant, 0 = 0.01; used only
	                               between strides (qd_calib_end_stride) */
	int num_bins;               /* 0 = method default (Entropy 128, Percentile 2048,
	                               Distribution 2048) */
	int num_quantized_bins;     /* Entropy, 0 = 128 */
	double percentile;          /* Percentile, 0 = 99.999 */
	const char *scenario;       /* Distribution: "same" (default) or "p3" */
	bool background;            /* histogram methods under qd_calib_run: bin on a second
	                               thread while the engine runs the next nodes (the
	                               hook copies each tensor; pending copies are capped at
	                               QD_CALIB_BG_BYTES). Same results: each tensor's
	                               observations stay in order, batches end in order. */
};
#define QD_CALIB_BG_BYTES ((size_t)256 << 20)

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
/* End of one CalibStridedMinMax stride (one ORT collect_data call). MinMax merges the
 * stride's range into the running one with ORT's merge_range: min/max, or with
 * moving_average old + c*(new - old). Without strides the whole run is one stride, so
 * moving_average is the nanmean of the per-batch min/max (ORT's compute_data). Histogram
 * methods always stream batch by batch (ORT with a stride of one batch); no-op for them. */
void qd_calib_end_stride(struct qd_calib *c);

/* Batch source for qd_calib_run: fill *in (new, qd_tensors_release) with one batch of
 * model inputs; return 1 for a batch, 0 at the end, negative error. */
typedef int (*qd_calib_next_fn)(void *ud, struct qd_tensor **in, size_t *n_in, struct qd_err *err);
/* Run every batch through e (hook set to this calibrator, cleared to NULL after: the
 * engine has no getter to restore a previous hook), observing the batch's float graph
 * inputs that were added (the hook only sees node outputs), calling end_batch after
 * each. cancel (may be NULL) is polled between batches and by the engine between nodes
 * (-QD_ECANCELED). progress (may be NULL) gets the batches done. */
int qd_calib_run(struct qd_calib *c, struct qd_engine *e, qd_calib_next_fn next, void *ud,
		 const volatile int *cancel, void (*progress)(void *ud, int64_t batches),
		 struct qd_err *err);

/* Compute the ranges. Error when a tensor saw no finite value (names it). */
int qd_calib_compute(struct qd_calib *c, struct qd_err *err);
/* Range of a tensor after compute; false when the tensor was not calibrated / not seen. */
bool qd_calib_range(const struct qd_calib *c, const char *name, float *rmin, float *rmax);
/* Distribution: histogram mean / std of a tensor after compute (ORT's _avg_std, "same"
 * or "p3"); false when not available. */
bool qd_calib_avg_std(const struct qd_calib *c, const char *name, float *avg, float *std);
/* Histogram of a tensor (histogram methods): nbins counts and nbins + 1 edges (float32,
 * as ORT stores them); borrow, valid until the next observe / free. False if none. */
bool qd_calib_histogram(const struct qd_calib *c, const char *name, const int64_t **hist,
			const float **edges, size_t *nbins);
/* Counts of skipped values of a tensor (NaN, +-Inf); false when never added. */
bool qd_calib_skipped(const struct qd_calib *c, const char *name, int64_t *n_nan, int64_t *n_inf);
/* "MinMax", "Entropy", "Percentile", "Distribution" (static). */
const char *qd_calib_method_name(int method);

/* Kernels (exposed for tests; each has a plain _ref twin with the same results).
 * minmax: min/max over the finite values (+inf/-inf when none), NaN and +-Inf counted. */
void qd_calib_minmax(const float *x, size_t n, float *mn, float *mx, size_t *n_nan, size_t *n_inf);
void qd_calib_minmax_ref(const float *x, size_t n, float *mn, float *mx, size_t *n_nan, size_t *n_inf);
/* numpy.histogram binning into increasing edges[0..nb]: bin i holds edges[i] <= v <
 * edges[i+1], the last bin also v == edges[nb]; values outside (and NaN) are dropped.
 * v = |x| when absval. Counts are added to hist. */
void qd_calib_bin(const float *x, size_t n, bool absval, const float *edges, size_t nb, int64_t *hist);
void qd_calib_bin_ref(const float *x, size_t n, bool absval, const float *edges, size_t nb, int64_t *hist);
/* Selects qd_calib_bin's vector kernel (tests): "avx512", "avx2" or "c" (portable);
 * false when this CPU / build lacks it. The default is the best the CPU has. */
bool qd_calib_bin_kernel(const char *which);
/* Entropy: KL divergence of every candidate (nb/2 - nq/2 + 1 of them, into kl) of ORT's
 * get_entropy_threshold, in double; +inf where ORT's smoothing fails. Returns the number
 * of candidates or -QD_EINVAL. The fast one is O(nq) per candidate. */
long qd_calib_entropy_kl(const int64_t *hist, size_t nb, int nq, double *kl);
long qd_calib_entropy_kl_ref(const int64_t *hist, size_t nb, int nq, double *kl);

/* Bytes held by the collectors (histograms and tables) at their peak. */
size_t qd_calib_peak_bytes(const struct qd_calib *c);
/* {"method", "tensors", "batches", "peak_bytes", "ranges": {name: [rmin, rmax]}} (ranges
 * only up to max_ranges entries, the widest first). new. */
json_t *qd_calib_summary_json(const struct qd_calib *c, size_t max_ranges);

#endif
