/* VitisAIQuantization: Olive's pass for AMD's Vitis AI / Ryzen AI quantizer (vai_q_onnx,
 * reference/inc_vitis_qnn.md §B), built on the static pass (passes/static.c) through its
 * target hooks (passes/static.h): power-of-two scales everywhere.
 *
 * DESIGN. The pass translates its parameters into the static pass's (ActivationSymmetric
 * -> activation_symmetric, input_nodes / output_nodes -> nodes_to_exclude, ...), then runs
 * it with a target whose hooks
 *  - compute every activation scale as 2^-pos (compute_scale_zp_pof2s, §B.2) and every
 *    weight's with NonOverflow (rint in the log domain; the DPU form: the floor, MinMSE
 *    over pos..pos+4 when calibrate_method is MinMSE), int32-bias weight scales grown to
 *    the next power of two;
 *  - refine the calibrated ranges (calibrate_method MinMSE, §B.1): a second run over every
 *    calibration batch sums, per tensor, the squared quantization error of the NonOverflow
 *    scale and of the four finer powers of two (zero point kept), and keeps the best. Modes
 *    (extra_options.MinMSEMode): "All" (default: every value of every batch, not only the
 *    first batch as Olive's vendored copy does), "MostCommon" (symmetric only: the best
 *    position per batch, then the most common one) and "Percentile" (ranges from the
 *    Percentile calibrator, CalibPercentile, default 99.999; values clipped to them);
 *  - check the result (qd_vitis_check_model): a model breaking a rule fails the job.
 * calibrate_method NonOverflow is the MinMax calibrator (CalibTensorRangeSymmetric =
 * ActivationSymmetric, as Quark's); MinMax, Entropy and Percentile are ORT's calibrators —
 * quantd snaps their scales to powers of two as well (Quark keeps float scales there; use
 * OnnxStaticQuantization for those). */
#include "passes/passes.h"
#include "passes/static.h"
#include "passes/vitis.h"
#include "passes/op_rules.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


enum mse_mode { MSE_ALL, MSE_MOST_COMMON, MSE_PERCENTILE };

struct cle_opts {
	int steps;                 /* CLESteps: rounds, -1 = until converged (at most 20) */
	double weight_threshold;   /* CLEWeightThreshold */
	bool append_bias, use_threshold;
	double diff_threshold;     /* CLETotalLayerDiffThreshold */
};

struct vt {
	bool minmse, dpu, transformer, fuse, cle;
	bool vai_qdq;                  /* quant_format VitisQuantFormat.QDQ: com.vai.quantize ops */
	struct cle_opts co;
	enum mse_mode mode;
	json_t *stats;                 /* borrow: the pass's stats object */
};

/* ---- power-of-two math ---- */

int qd_vitis_scale2pos(double scale)
{
	double p = qd_round_half_even(-log2(scale));
	return p < -128 ? -128 : p > 127 ? 127 : (int)p;
}

double qd_vitis_pos2scale(int pos)
{
	return ldexp(1.0, -pos);
}

static bool is_pof2(float s)
{
	int e;
	return s > 0 && isfinite(s) && frexpf(s, &e) == 0.5f;
}

void qd_vitis_scale_zp(double rmin, double rmax, int32_t qmin, int32_t qmax, bool symmetric, float *scale,
		       int32_t *zp)
{
	if (!(rmin < 0.0)) rmin = 0.0;
	if (!(rmax > 0.0)) rmax = 0.0;
	if (isinf(rmin)) rmin = -DBL_MAX / 2;
	if (isinf(rmax)) rmax = DBL_MAX / 2;
	if (symmetric) {
		double a = fmax(-rmin, rmax);
		rmin = -a;
		rmax = a;
	}
	double s = (rmax - rmin) / (double)(qmax - qmin);
	double sp = s < FLT_MIN ? 0 : qd_vitis_pos2scale(qd_vitis_scale2pos(s));
	if (sp < FLT_MIN) {
		/* all-zero range (or a position past float32's normal range) */
		*scale = 1.0f;
		*zp = symmetric ? (int32_t)qd_round_half_even((qmin + qmax) / 2.0) : qmin > 0 ? qmin : qmax < 0 ? qmax : 0;
		return;
	}
	double z = symmetric ? qd_round_half_even((qmin + qmax) / 2.0) : qd_round_half_even(qmin - rmin / sp);
	/* Quark leaves zp unclipped (a scale rounded down can push it out): clip, so the
	 * zero point is a valid code */
	*zp = (int32_t)(z < qmin ? qmin : z > qmax ? qmax : z);
	*scale = (float)sp;
}

int qd_vitis_dpu_pos(float xmin, float xmax)
{
	double s = fmax((double)xmin / -128.5, (double)xmax / 127.5);
	if (!(s > 0))
		return 126;   /* all zero: Quark's 127 is a float32 denormal scale; 126 is the last normal one */
	double p = floor(log2(1.0 / s));
	return p < -128 ? -128 : p > 126 ? 126 : (int)p;
}

/* ---- target hooks ---- */

static void act_scale_zp(void *ud, double rmin, double rmax, int32_t qmin, int32_t qmax, bool sym, float *scale,
			 int32_t *zp)
{
	(void)ud;
	qd_vitis_scale_zp(rmin, rmax, qmin, qmax, sym, scale, zp);
}

/* MinMSE's error sums (qd_vitis_sse in passes/vitis.h). */
void qd_vitis_sse_ref(const float *x, size_t n, int pos0, int32_t zp, int32_t qmin, int32_t qmax, float lo, float hi,
		      double *sse)
{
	for (int i = 0; i < QD_VITIS_POS_RANGE && pos0 + i <= 126; i++) {
		double s = qd_vitis_pos2scale(pos0 + i), e = 0;
		for (size_t k = 0; k < n; k++) {
			double v = x[k] < lo ? lo : x[k] > hi ? hi : x[k];
			double q = qd_round_half_even(v / s) + zp;
			q = q < qmin ? qmin : q > qmax ? qmax : q;
			double d = v - (q - zp) * s;
			e += d * d;
		}
		sse[i] += e;
	}
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VT_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3", "no-trapping-math", "fp-contract=off")))
#elif defined(__GNUC__) && !defined(__clang__)
#define VT_CLONES __attribute__((optimize("O3", "no-trapping-math", "fp-contract=off")))
#else
#define VT_CLONES
#endif

/* One pass over x for the five candidates, in the code domain: u = v * 2^pos is exact, the
 * clamp to [qmin - zp, qmax - zp] comes before the rounding (the same for integer bounds),
 * rounding half to even by the 1.5 * 2^23 trick (|u| <= 2^16 after the clamp); float sums
 * per block of 1024 values, double across blocks. */
VT_CLONES
void qd_vitis_sse(const float *x, size_t n, int pos0, int32_t zp, int32_t qmin, int32_t qmax, float lo, float hi,
		  double *sse)
{
	int nc = 0;
	float inv[QD_VITIS_POS_RANGE];
	double s2[QD_VITIS_POS_RANGE];
	while (nc < QD_VITIS_POS_RANGE && pos0 + nc <= 126) {
		inv[nc] = (float)ldexp(1.0, pos0 + nc);
		s2[nc] = ldexp(1.0, -2 * (pos0 + nc));
		nc++;
	}
	if (nc < QD_VITIS_POS_RANGE || pos0 < -100 || pos0 > 100) {
		/* near float32's limits v * 2^pos could overflow: the plain loop */
		qd_vitis_sse_ref(x, n, pos0, zp, qmin, qmax, lo, hi, sse);
		return;
	}
	const float a = (float)(qmin - zp), b = (float)(qmax - zp), M = 12582912.0f;
	for (size_t k0 = 0; k0 < n; k0 += 1024) {
		size_t k1 = n - k0 > 1024 ? k0 + 1024 : n, k = k0;
		/* 16 independent lanes per candidate: a float sum does not vectorise as such */
		float acc[QD_VITIS_POS_RANGE][16] = {{0}};
		for (; k + 16 <= k1; k += 16)
			for (int j = 0; j < 16; j++) {
				float v = x[k + j] < lo ? lo : x[k + j] > hi ? hi : x[k + j];
				for (int i = 0; i < QD_VITIS_POS_RANGE; i++) {
					float u = v * inv[i], c = u < a ? a : u > b ? b : u, d = u - ((c + M) - M);
					acc[i][j] += d * d;
				}
			}
		for (; k < k1; k++) {
			float v = x[k] < lo ? lo : x[k] > hi ? hi : x[k];
			for (int i = 0; i < QD_VITIS_POS_RANGE; i++) {
				float u = v * inv[i], c = u < a ? a : u > b ? b : u, d = u - ((c + M) - M);
				acc[i][0] += d * d;
			}
		}
		for (int i = 0; i < QD_VITIS_POS_RANGE; i++) {
			double t = 0;
			for (int j = 0; j < 16; j++)
				t += acc[i][j];
			sse[i] += t * s2[i];
		}
	}
}

/* The best of the candidate positions pos0 .. pos0 + 4 for x (least squared error). */
static int best_pos(const float *x, size_t n, int pos0, int32_t zp, int32_t qmin, int32_t qmax)
{
	double e[QD_VITIS_POS_RANGE] = {0}, be = INFINITY;
	int best = pos0;
	qd_vitis_sse(x, n, pos0, zp, qmin, qmax, -INFINITY, INFINITY, e);
	for (int i = 0; i < QD_VITIS_POS_RANGE && pos0 + i <= 126; i++)
		if (e[i] < be) {
			be = e[i];
			best = pos0 + i;
		}
	return best;
}

/* One channel's values (strided) copied out, for the per-channel weight quantizers. */
static void channel_values(const float *x, int64_t outer, int64_t ch, int64_t inner, int64_t c, float *out)
{
	for (int64_t o = 0; o < outer; o++)
		memcpy(out + o * inner, x + (o * ch + c) * inner, (size_t)inner * sizeof *out);
}

static void channel_store(const int8_t *src, size_t cs, int64_t outer, int64_t ch, int64_t inner, int64_t c,
			  void *codes)
{
	for (int64_t o = 0; o < outer; o++)
		memcpy((uint8_t *)codes + (size_t)((o * ch + c) * inner) * cs, src + (size_t)(o * inner) * cs,
		       (size_t)inner * cs);
}

static int quant_weight(void *ud, const float *x, const int64_t *dims, int ndim, int axis, enum qd_qtype qt,
			bool sym, bool rr, bool bias, float *scales, int32_t *zps, void *codes)
{
	struct vt *v = ud;
	int64_t outer = 1, inner = 1, ch = 1, n = 1;
	for (int i = 0; i < ndim; i++)
		n *= dims[i];
	if (axis >= 0) {
		for (int i = 0; i < axis; i++) outer *= dims[i];
		for (int i = axis + 1; i < ndim; i++) inner *= dims[i];
		ch = dims[axis];
	} else {
		inner = n;
	}
	size_t cs = qd_qtype_code_size(qt);
	float *buf = malloc((size_t)(outer * inner) * sizeof *buf + 1);
	uint8_t *cb = malloc((size_t)(outer * inner) * cs + 1);
	if (!buf || !cb) {
		free(buf); free(cb);
		return -QD_ENOMEM;
	}
	for (int64_t c = 0; c < ch; c++) {
		size_t m = (size_t)(outer * inner);
		channel_values(x, outer, ch, inner, c, buf);
		float mn = 0, mx = 0;
		for (size_t i = 0; i < m; i++) {
			mn = buf[i] < mn ? buf[i] : mn;
			mx = buf[i] > mx ? buf[i] : mx;
		}
		if (v->dpu) {
			/* vitis_quantize_data: int8, zero point 0, the non-overflow floor; MinMSE
			 * tries the four finer positions too */
			int pos = qd_vitis_dpu_pos(mn, mx);
			int best = v->minmse ? best_pos(buf, m, pos, 0, -128, 127) : pos;
			scales[c] = (float)qd_vitis_pos2scale(best);
			zps[c] = 0;
		} else {
			int32_t qmin, qmax;
			qd_quant_qrange(qt, rr, sym, &qmin, &qmax);
			qd_vitis_scale_zp(mn, mx, qmin, qmax, sym, &scales[c], &zps[c]);
		}
		qd_quantize(buf, m, scales[c], zps[c], qt, cb);
		channel_store((const int8_t *)cb, cs, outer, ch, inner, c, codes);
	}
	(void)bias;
	free(buf);
	free(cb);
	return 0;
}

/* The int32-bias adjustment wants a weight scale >= need: the next power of two. */
static float grow_scale(void *ud, float scale, double need)
{
	(void)ud;
	double s = ldexp(1.0, (int)ceil(log2(need)));
	return (float)fmax(s, (double)scale);
}

/* ---- MinMSE (PowOfTwoCalibrater) ---- */

struct mse_t {
	int pos0;                  /* NonOverflow position of the calibrated range */
	int32_t zp;                /* int8 zero point kept across the candidates */
	float lo, hi;              /* values clipped to these (Percentile mode), else +-inf */
	double sse[QD_VITIS_POS_RANGE];
	long *votes;               /* MostCommon: per position (256), best per batch */
};

struct mse {
	struct vt *v;
	struct qd_static_ranges *r;
	struct qd_namemap idx;
	struct mse_t *t;
	int32_t qmin, qmax;
};

static void mse_obs(void *ud, const char *name, const float *x, size_t n)
{
	struct mse *ms = ud;
	long *ip = qd_namemap_get(&ms->idx, name);
	if (!ip)
		return;
	struct mse_t *t = &ms->t[*ip];
	if (t->votes) {
		/* MostCommon (symmetric): this batch's own NonOverflow position and its best */
		float a = 0;
		for (size_t i = 0; i < n; i++)
			a = fabsf(x[i]) > a && isfinite(x[i]) ? fabsf(x[i]) : a;
		float s0;
		int32_t z;
		qd_vitis_scale_zp(-a, a, ms->qmin, ms->qmax, true, &s0, &z);
		int best = best_pos(x, n, qd_vitis_scale2pos(s0), 0, ms->qmin, ms->qmax);
		t->votes[best + 128]++;
		return;
	}
	qd_vitis_sse(x, n, t->pos0, t->zp, ms->qmin, ms->qmax, t->lo, t->hi, t->sse);
}

static int refine(void *ud, struct qd_pass_ctx *ctx, struct qd_static_ranges *r, struct qd_err *err)
{
	struct vt *v = ud;
	if (!v->minmse)
		return 0;
	struct mse ms = { .v = v, .r = r };
	/* the calibrator works on int8 whatever the activation type (§B.1) */
	qd_quant_qrange(QD_QT_INT8, false, r->symmetric, &ms.qmin, &ms.qmax);
	ms.t = calloc(r->n + 1, sizeof *ms.t);
	int rc = ms.t ? 0 : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; rc == 0 && i < r->n; i++) {
		struct mse_t *t = &ms.t[i];
		float s0;
		qd_vitis_scale_zp(r->rmin[i], r->rmax[i], ms.qmin, ms.qmax, r->symmetric, &s0, &t->zp);
		t->pos0 = qd_vitis_scale2pos(s0);
		t->lo = v->mode == MSE_PERCENTILE ? r->rmin[i] : -INFINITY;
		t->hi = v->mode == MSE_PERCENTILE ? r->rmax[i] : INFINITY;
		if (v->mode == MSE_MOST_COMMON && !(t->votes = calloc(256, sizeof *t->votes)))
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		if (rc == 0 && qd_namemap_put(&ms.idx, r->names[i], (long)i) < 0)
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	double t0 = qd_now_mono();
	if (rc == 0)
		rc = r->rerun(r, mse_obs, NULL, &ms, err);
	long finer = 0;
	for (size_t i = 0; rc == 0 && i < r->n; i++) {
		struct mse_t *t = &ms.t[i];
		int best = t->pos0;
		if (t->votes) {
			long most = -1;
			for (int p = 0; p < 256; p++)
				if (t->votes[p] > most) {
					most = t->votes[p];
					best = p - 128;
				}
		} else {
			double be = INFINITY;
			for (int k = 0; k < QD_VITIS_POS_RANGE && t->pos0 + k <= 126; k++)
				if (t->sse[k] < be) {
					be = t->sse[k];
					best = t->pos0 + k;
				}
		}
		finer += best != t->pos0;
		double s = qd_vitis_pos2scale(best);
		r->rmin[i] = (float)((ms.qmin - t->zp) * s);
		r->rmax[i] = (float)((ms.qmax - t->zp) * s);
	}
	if (rc == 0) {
		qd_pass_log(ctx, QD_LOG_INFO, "MinMSE (%s): %ld of %zu tensors take a finer power of two than "
			    "NonOverflow (%.2f s)", v->mode == MSE_ALL ? "All" : v->mode == MSE_MOST_COMMON ? "MostCommon" :
			    "Percentile", finer, r->n, qd_now_mono() - t0);
		json_object_set_new(v->stats, "minmse", json_pack("{s:s, s:i, s:i, s:f}", "mode",
			v->mode == MSE_ALL ? "All" : v->mode == MSE_MOST_COMMON ? "MostCommon" : "Percentile",
			"tensors", (json_int_t)r->n, "finer", (json_int_t)finer, "seconds", qd_now_mono() - t0));
	}
	for (size_t i = 0; ms.t && i < r->n; i++)
		free(ms.t[i].votes);
	free(ms.t);
	qd_namemap_free(&ms.idx);
	return rc;
}


/* ---- cross-layer equalization (include_cle, §B.4) ---- */

#define CLE_BIAS_SHRINK 20.0   /* CLEScaleAppendBias: |bias| / 20 joins the head's channel max */

/* Replace a float initializer's values (same dims). 0 or -QD_ENOMEM. */
static int set_float_init(Onnx__GraphProto *g, const char *name, const float *x, int64_t n)
{
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *t = g->initializer[i];
		if (strcmp(t->name, name))
			continue;
		Onnx__TensorProto *nt = qd_tensor_new(name, QD_DT_FLOAT, t->dims, t->n_dims, x, (size_t)n * sizeof *x);
		if (!nt)
			return -QD_ENOMEM;
		qd_tensor_free(t);
		g->initializer[i] = nt;
		return 0;
	}
	return -QD_EINTERNAL;
}

/* A float initializer read only by node n (so it can be rescaled). */
static const Onnx__TensorProto *own_init(struct qd_graph_index *ix, const Onnx__NodeProto *n, size_t k)
{
	if (k >= n->n_input || !*n->input[k])
		return NULL;
	const Onnx__TensorProto *t = qd_index_initializer(ix, n->input[k]);
	Onnx__NodeProto *const *c;
	if (!t || t->data_type != QD_DT_FLOAT || qd_index_consumers(ix, n->input[k], &c) != 1)
		return NULL;
	return t;
}

/* A layer CLE can rescale: a Conv (group 1 or depthwise) or a Gemm, with a float weight
 * initializer of its own (and a bias, when it has one). Channel c of its output (out) or of
 * its input (in) is a strided set of weight elements: nb blocks of len values, block b at
 * c * mul + b * stride. */
struct cle_slice {
	int64_t n, mul, nb, len, stride;   /* n channels */
};
struct cle_layer {
	const Onnx__NodeProto *n;
	const Onnx__TensorProto *w, *b;
	struct cle_slice out, in;
	bool dw;
};

static bool cle_layer(struct qd_graph_index *ix, const Onnx__NodeProto *n, struct cle_layer *l)
{
	memset(l, 0, sizeof *l);
	l->n = n;
	if (*qd_node_domain(n) || n->n_input < 2 || !(l->w = own_init(ix, n, 1)) || l->w->n_dims < 2)
		return false;
	if (n->n_input > 2 && *n->input[2] && !(l->b = own_init(ix, n, 2)))
		return false;
	const int64_t *d = l->w->dims, numel = qd_tensor_numel(l->w);
	if (!strcmp(n->op_type, "Conv")) {
		if (l->w->n_dims < 3 || d[0] <= 0 || d[1] <= 0)
			return false;
		int64_t g = qd_node_attr_int(n, "group", 1), O = d[0], I = d[1], per_out = numel / O, per_in = per_out / I;
		l->out = (struct cle_slice){ O, per_out, 1, per_out, 0 };
		if (g == 1)
			l->in = (struct cle_slice){ I, per_in, O, per_in, I * per_in };
		else if (g == O && I == 1) {   /* depthwise: input channel c is output channel c */
			l->in = l->out;
			l->dw = true;
		} else
			return false;               /* other group convs: CLE needs depthwise */
	} else if (!strcmp(n->op_type, "Gemm")) {
		if (l->w->n_dims != 2 || qd_node_attr_int(n, "transA", 0))
			return false;
		int64_t R = d[0], C = d[1];
		struct cle_slice row = { R, C, 1, C, 0 }, col = { C, 1, R, 1, C };
		bool tb = qd_node_attr_int(n, "transB", 0);
		l->out = tb ? row : col;
		l->in = tb ? col : row;
	} else
		return false;
	return !l->b || qd_tensor_numel(l->b) == l->out.n;
}

static double slice_max(const float *w, const struct cle_slice *s, int64_t c)
{
	double m = 0;
	for (int64_t b = 0; b < s->nb; b++)
		for (int64_t j = 0; j < s->len; j++)
			m = fmax(m, fabs(w[c * s->mul + b * s->stride + j]));
	return m;
}

static void slice_scale(float *w, const struct cle_slice *s, int64_t c, double f)
{
	for (int64_t b = 0; b < s->nb; b++)
		for (int64_t j = 0; j < s->len; j++)
			w[c * s->mul + b * s->stride + j] = (float)(w[c * s->mul + b * s->stride + j] * f);
}

/* The scalar value of optional input k of n (an initializer), or dflt when absent; false
 * when it is not a constant. */
static bool const_scalar(struct qd_graph_index *ix, const Onnx__NodeProto *n, size_t k, double dflt, double *v)
{
	*v = dflt;
	if (k >= n->n_input || !*n->input[k])
		return true;
	const Onnx__TensorProto *t = qd_index_initializer(ix, n->input[k]);
	float *x = NULL;
	int64_t cnt = 0;
	struct qd_err e = { 0 };
	if (!t || qd_tensor_to_float(t, &x, &cnt, &e) < 0 || cnt != 1) {
		free(x);
		return false;
	}
	*v = x[0];
	free(x);
	return true;
}

/* An op between head and tail that commutes with a positive per-channel scale of its input
 * (f(s·x) = s·f(x) channel by channel), for a tensor of rank `rank`:
 *   Relu; Clip with min 0 (or none) and no max (a bounded Clip such as ReLU6 does not
 *   commute, so the chain stops there); Pad of the spatial axes only, constant 0 / reflect /
 *   edge; ReduceMean over spatial axes, keepdims 1. */
static bool cle_between(struct qd_graph_index *ix, const Onnx__NodeProto *n, int64_t rank)
{
	if (*qd_node_domain(n) || !n->n_input || !*n->input[0])
		return false;
	if (!strcmp(n->op_type, "Relu"))
		return true;
	if (!strcmp(n->op_type, "Clip")) {
		double lo, hi;
		if (qd_node_attr(n, "min") || qd_node_attr(n, "max")) {   /* opset < 11 */
			lo = qd_node_attr_float(n, "min", -FLT_MAX);
			hi = qd_node_attr_float(n, "max", FLT_MAX);
		} else if (!const_scalar(ix, n, 1, -INFINITY, &lo) || !const_scalar(ix, n, 2, INFINITY, &hi))
			return false;
		return (lo == 0 || lo <= -FLT_MAX) && hi >= FLT_MAX;
	}
	if (!strcmp(n->op_type, "Pad")) {
		const char *mode = qd_node_attr_string(n, "mode", "constant");
		double val;
		if (!strcmp(mode, "constant") && (!const_scalar(ix, n, 2, 0, &val) || val != 0))
			return false;
		if (strcmp(mode, "constant") && strcmp(mode, "reflect") && strcmp(mode, "edge"))
			return false;
		if (n->n_input > 3 && *n->input[3])
			return false;   /* axes input: keep to the plain form */
		int64_t *pads = NULL, np = 0;
		const int64_t *pa = NULL;
		long na = qd_node_attr_ints(n, "pads", &pa);
		struct qd_err e = { 0 };
		bool ok = true;
		if (na >= 0) {
			np = na;
		} else {
			const Onnx__TensorProto *t = n->n_input > 1 ? qd_index_initializer(ix, n->input[1]) : NULL;
			if (!t || qd_tensor_to_int64(t, &pads, &np, &e) < 0)
				ok = false;
			pa = pads;
		}
		ok = ok && np == 2 * rank && pa[0] == 0 && pa[1] == 0 && pa[rank] == 0 && pa[rank + 1] == 0;
		free(pads);
		return ok;
	}
	if (!strcmp(n->op_type, "ReduceMean")) {
		if (!qd_node_attr_int(n, "keepdims", 1))
			return false;
		const int64_t *ax = NULL;
		int64_t *axv = NULL, na = qd_node_attr_ints(n, "axes", &ax);
		struct qd_err e = { 0 };
		bool ok = true;
		if (na < 0) {   /* opset 18: axes input; none reduces every axis (the channel axis too) */
			const Onnx__TensorProto *t = n->n_input > 1 && *n->input[1] ? qd_index_initializer(ix, n->input[1]) : NULL;
			if (!t || qd_tensor_to_int64(t, &axv, &na, &e) < 0)
				ok = false;
			ax = axv;
		}
		for (int64_t k = 0; ok && k < na; k++) {
			int64_t a = ax[k] < 0 ? ax[k] + rank : ax[k];
			ok = a >= 2 && a < rank;
		}
		ok = ok && na > 0;
		free(axv);
		return ok;
	}
	return false;
}

/* The layer of the same kind as head (Conv after Conv, Gemm after Gemm) reading name as its
 * first input through at most four channel-commuting ops (cle_between), each intermediate
 * read once and not a graph output. */
static bool cle_tail(struct qd_graph_index *ix, const char *name, const char *kind, int64_t rank,
		     struct cle_layer *t)
{
	for (int depth = 0; depth <= 4; depth++) {
		Onnx__NodeProto *const *c;
		if (qd_index_is_graph_output(ix, name) || qd_index_consumers(ix, name, &c) != 1)
			return false;
		Onnx__NodeProto *n = c[0];
		if (!strcmp(n->op_type, kind))
			return !strcmp(n->input[0], name) && cle_layer(ix, n, t);
		if (depth == 4 || !cle_between(ix, n, rank) || !n->n_output)
			return false;
		name = n->output[0];
	}
	return false;
}

struct cle_w {
	float *w, *b;
	int64_t nw, nb;
};

static int cle_load(const struct cle_layer *l, struct cle_w *x, struct qd_err *err)
{
	memset(x, 0, sizeof *x);
	int rc = qd_tensor_to_float(l->w, &x->w, &x->nw, err);
	if (rc == 0 && l->b)
		rc = qd_tensor_to_float(l->b, &x->b, &x->nb, err);
	return rc;
}

static int cle_store(Onnx__GraphProto *g, const struct cle_layer *l, struct cle_w *x, struct qd_err *err)
{
	int rc = 0;
	if (set_float_init(g, l->n->input[1], x->w, x->nw) < 0 || (x->b && set_float_init(g, l->n->input[2], x->b, x->nb) < 0))
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	free(x->w);
	free(x->b);
	x->w = x->b = NULL;
	return rc;
}

/* The head's channel maximum (with CLEScaleAppendBias, |bias| / 20 joins it). */
static double head_max(const struct cle_layer *l, const struct cle_w *x, int64_t c, const struct cle_opts *o)
{
	double r = slice_max(x->w, &l->out, c);
	if (x->b && o->append_bias)
		r = fmax(r, fabs(x->b[c]) / CLE_BIAS_SHRINK);
	return r;
}

/* One equalization of a head / tail pair; *diff += sum |s - 1|. */
static int cle_pair(Onnx__GraphProto *g, const struct cle_layer *h, const struct cle_layer *t,
		    const struct cle_opts *o, double *diff, struct qd_err *err)
{
	if (t->in.n != h->out.n)
		return 0;
	struct cle_w a, b;
	memset(&b, 0, sizeof b);
	int rc = cle_load(h, &a, err);
	if (rc == 0)
		rc = cle_load(t, &b, err);
	for (int64_t c = 0; rc == 0 && c < h->out.n; c++) {
		double r0 = head_max(h, &a, c, o), r1 = slice_max(b.w, &t->in, c);
		double sc = sqrt(r1 / r0);
		if ((o->use_threshold && r0 + r1 < o->weight_threshold) || !(sqrt(r0 * r1) > 0) || !isfinite(sc))
			sc = 1.0;
		*diff += fabs(sc - 1.0);
		slice_scale(a.w, &h->out, c, sc);
		if (a.b)
			a.b[c] = (float)(a.b[c] * sc);
		slice_scale(b.w, &t->in, c, 1.0 / sc);
	}
	if (rc == 0)
		rc = cle_store(g, h, &a, err);
	if (rc == 0)
		rc = cle_store(g, t, &b, err);
	free(a.w); free(a.b); free(b.w); free(b.b);
	return rc < 0 ? rc : 0;
}

/* Conv -> depthwise Conv -> pointwise Conv: with the channel maxima m0 (head), m1
 * (depthwise), m2 (pointwise input), s12 = m0 / cbrt(m0 m1 m2) and s23 = cbrt(m0 m1 m2) / m2;
 * the head is divided by s12, the depthwise multiplied by s12 / s23 (its bias divided by
 * s23), the pointwise multiplied by s23: all three maxima become cbrt(m0 m1 m2). */
static int cle_triple(Onnx__GraphProto *g, const struct cle_layer *h, const struct cle_layer *d,
		      const struct cle_layer *t, const struct cle_opts *o, double *diff, struct qd_err *err)
{
	if (d->out.n != h->out.n || t->in.n != h->out.n)
		return 0;
	struct cle_w a, b, c;
	memset(&b, 0, sizeof b);
	memset(&c, 0, sizeof c);
	int rc = cle_load(h, &a, err);
	if (rc == 0)
		rc = cle_load(d, &b, err);
	if (rc == 0)
		rc = cle_load(t, &c, err);
	for (int64_t k = 0; rc == 0 && k < h->out.n; k++) {
		double m0 = head_max(h, &a, k, o), m1 = slice_max(b.w, &d->out, k), m2 = slice_max(c.w, &t->in, k);
		double r = cbrt(m0 * m1 * m2), s12 = m0 / r, s23 = r / m2;
		if ((o->use_threshold && m0 + m1 + m2 < o->weight_threshold) || !(r > 0) || !isfinite(s12) || !isfinite(s23))
			s12 = s23 = 1.0;
		*diff += fabs(s12 - 1.0) + fabs(s23 - 1.0);
		slice_scale(a.w, &h->out, k, 1.0 / s12);
		if (a.b)
			a.b[k] = (float)(a.b[k] / s12);
		slice_scale(b.w, &d->out, k, s12 / s23);
		if (b.b)
			b.b[k] = (float)(b.b[k] / s23);
		slice_scale(c.w, &t->in, k, s23);
	}
	if (rc == 0)
		rc = cle_store(g, h, &a, err);
	if (rc == 0)
		rc = cle_store(g, d, &b, err);
	if (rc == 0)
		rc = cle_store(g, t, &c, err);
	free(a.w); free(a.b); free(b.w); free(b.b); free(c.w); free(c.b);
	return rc < 0 ? rc : 0;
}

static int prepare(void *ud, struct qd_pass_ctx *ctx, struct qd_model *m, struct qd_err *err)
{
	struct vt *v = ud;
	if (!v->cle)
		return 0;
	Onnx__GraphProto *g = m->proto->graph;
	int rounds = v->co.steps < 0 ? 20 : v->co.steps, rc = 0, done = 0;
	long pairs = 0, triples = 0;
	double diff = 0;
	bool *mid = calloc(g->n_node ? g->n_node : 1, sizeof *mid);   /* depthwise middles of a triple */
	if (!mid)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	while (done < rounds && rc == 0) {
		struct qd_graph_index *ix = NULL;
		done++;
		if ((rc = qd_index_build(g, NULL, &ix, err)) < 0)
			break;
		diff = 0;
		pairs = triples = 0;
		memset(mid, 0, g->n_node * sizeof *mid);
		for (size_t i = 0; i < g->n_node && rc == 0; i++) {
			struct cle_layer h, t, p;
			if (mid[i] || !g->node[i]->n_output || !cle_layer(ix, g->node[i], &h) ||
			    !cle_tail(ix, g->node[i]->output[0], g->node[i]->op_type, h.w->n_dims, &t))
				continue;
			if (t.dw && !h.dw && t.n->n_output && cle_tail(ix, t.n->output[0], "Conv", t.w->n_dims, &p) && !p.dw) {
				for (size_t j = 0; j < g->n_node; j++)
					if (g->node[j] == t.n)
						mid[j] = true;
				rc = cle_triple(g, &h, &t, &p, &v->co, &diff, err);
				triples++;
			} else {
				rc = cle_pair(g, &h, &t, &v->co, &diff, err);
				pairs++;
			}
			/* the rescaled initializers are new tensors: index them again */
			qd_index_free(ix);
			ix = NULL;
			if (rc == 0 && (rc = qd_index_build(g, NULL, &ix, err)) < 0)
				break;
		}
		qd_index_free(ix);
		if (v->co.steps < 0 && diff < v->co.diff_threshold)
			break;
	}
	free(mid);
	if (rc == 0) {
		qd_pass_log(ctx, QD_LOG_INFO, "cross-layer equalization: %ld pairs, %ld depthwise triples, %d rounds (last "
			    "round's total |s - 1| %.3g)", pairs, triples, done, diff);
		json_object_set_new(v->stats, "cle", json_pack("{s:i, s:i, s:i, s:f}", "pairs", (json_int_t)pairs, "triples",
							      (json_int_t)triples, "rounds", done, "last_diff", diff));
	}
	return rc;
}

/* ---- the checker ---- */

static bool is_qlinear(const Onnx__NodeProto *n)
{
	return !strncmp(n->op_type, "QLinear", 7) || !strcmp(n->op_type, "QGemm") ||
	       !strcmp(n->op_type, "QAttention");
}

static bool is_qdq(const Onnx__NodeProto *n)
{
	return !strcmp(n->op_type, "QuantizeLinear") || !strcmp(n->op_type, "DequantizeLinear");
}

/* Is input k of n a scale? Q/DQ: 1; QAttention: 3, 4; other QLinear ops: every float. */
static bool scale_input(const Onnx__NodeProto *n, size_t k, const Onnx__TensorProto *t)
{
	if (is_qdq(n))
		return k == 1;
	if (!strcmp(n->op_type, "QAttention"))
		return k == 3 || k == 4;
	return is_qlinear(n) && t && t->data_type == QD_DT_FLOAT;
}

static int check_fail(struct qd_err *err, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int check_fail(struct qd_err *err, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return qd_err_set(err, QD_EORT_REJECT, field, "Vitis AI rule broken: %s", msg);
}

static int dpu_constraints(const struct qd_model *m, bool fix, json_t *per_rule, struct qd_err *err);

int qd_vitis_check_model(const struct qd_model *m, bool dpu, size_t *n_scales, struct qd_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct qd_graph_index *ix = NULL;
	int rc = qd_index_build(g, NULL, &ix, err);
	if (rc < 0)
		return rc;
	size_t checked = 0;
	for (size_t i = 0; rc == 0 && i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!is_qdq(n) && !is_qlinear(n))
			continue;
		if (dpu && is_qlinear(n)) {
			rc = check_fail(err, qd_node_label(n), "node '%s' (%s): the DPU form is QDQ only", qd_node_label(n),
					n->op_type);
			break;
		}
		for (size_t k = 0; rc == 0 && k < n->n_input; k++) {
			if (!*n->input[k])
				continue;
			const Onnx__TensorProto *t = qd_index_initializer(ix, n->input[k]);
			if (!scale_input(n, k, t))
				continue;
			if (!t) {
				rc = check_fail(err, n->input[k], "scale '%s' of node '%s' is not an initializer", n->input[k],
						qd_node_label(n));
				break;
			}
			float *x = NULL;
			int64_t cnt = 0;
			if ((rc = qd_tensor_to_float(t, &x, &cnt, err)) < 0)
				break;
			for (int64_t j = 0; j < cnt; j++)
				if (!is_pof2(x[j])) {
					rc = check_fail(err, t->name, "scale '%s' of node '%s' is %.9g, not a power of two",
							t->name, qd_node_label(n), (double)x[j]);
					break;
				}
			free(x);
			checked++;
			if (rc == 0 && dpu && cnt != 1)
				rc = check_fail(err, t->name, "scale '%s' of node '%s' is per channel (%lld values): the DPU "
						"form is per tensor", t->name, qd_node_label(n), (long long)cnt);
		}
		if (rc == 0 && dpu) {
			const Onnx__TensorProto *z = n->n_input > 2 && *n->input[2] ? qd_index_initializer(ix, n->input[2]) : NULL;
			int64_t *zv = NULL, zn = 0;
			if (!z || z->data_type != QD_DT_INT8)
				rc = check_fail(err, qd_node_label(n), "%s '%s' is not int8 (the DPU form is int8 with zero "
						"point 0)", n->op_type, qd_node_label(n));
			else if ((rc = qd_tensor_to_int64(z, &zv, &zn, err)) == 0) {
				for (int64_t j = 0; j < zn && rc == 0; j++)
					if (zv[j] != 0)
						rc = check_fail(err, z->name, "zero point '%s' of '%s' is %lld: the DPU form is "
								"symmetric", z->name, qd_node_label(n), (long long)zv[j]);
				free(zv);
			}
		}
	}
	qd_index_free(ix);
	if (rc == 0 && dpu)
		rc = dpu_constraints(m, false, NULL, err);
	if (rc == 0 && n_scales)
		*n_scales = checked;
	return rc;
}


/* ---- the DPU form: layer fusing and the shift constraints (§B.3) ---- */

struct dpu {
	struct qd_graph_index *ix;
	bool fix;                  /* adjust (true) or only report the first violation */
	long changes;
	int rule;                  /* the rule running (index into rule_names) */
	long per_rule[7];          /* positions changed by each rule */
	char viol[320];
};

/* The scale initializer of the DequantizeLinear producing name, or NULL. Borrow. */
static Onnx__TensorProto *in_scale(struct dpu *d, const char *name)
{
	Onnx__NodeProto *p = name && *name ? qd_index_producer(d->ix, name) : NULL;
	if (!p || strcmp(p->op_type, "DequantizeLinear") || p->n_input < 2)
		return NULL;
	return qd_index_initializer(d->ix, p->input[1]);
}

static bool is_relu(const Onnx__NodeProto *n)
{
	return !strcmp(n->op_type, "Relu") ||
	       (!strcmp(n->op_type, "LeakyRelu") && fabsf(qd_node_attr_float(n, "alpha", 0.01f) - 0.1f) < 1e-6f);
}

/* The scale of the QuantizeLinear reading name, or behind the fused Relu reading it. */
static Onnx__TensorProto *out_scale(struct dpu *d, const char *name, int depth)
{
	Onnx__NodeProto *const *c;
	size_t nc = qd_index_consumers(d->ix, name, &c);
	for (size_t k = 0; k < nc; k++)
		if (!strcmp(c[k]->op_type, "QuantizeLinear") && c[k]->n_input > 1 && !strcmp(c[k]->input[0], name))
			return qd_index_initializer(d->ix, c[k]->input[1]);
	if (nc == 1 && depth == 0 && is_relu(c[0]))
		return out_scale(d, c[0]->output[0], 1);
	return NULL;
}

static float *scale_val(Onnx__TensorProto *t)
{
	if (t->has_raw_data && t->raw_data.len == 4)
		return (float *)(void *)t->raw_data.data;
	return t->n_float_data == 1 ? &t->float_data[0] : NULL;
}

static int getpos(Onnx__TensorProto *t)
{
	float *v = scale_val(t);
	return v ? qd_vitis_scale2pos(*v) : 0;
}

static void setpos(struct dpu *d, Onnx__TensorProto *t, int p)
{
	float *v = scale_val(t);
	p = p < -128 ? -128 : p > 126 ? 126 : p;
	if (v && qd_vitis_scale2pos(*v) != p) {
		*v = (float)qd_vitis_pos2scale(p);
		d->changes++;
		d->per_rule[d->rule]++;
	}
}

static const char *const rule_names[7] = { "sigmoid", "shift_read", "shift_write", "shift_cut", "shift_bias",
					      "concat", "pooling" };

/* A violated constraint: recorded (check mode) or fixed. Returns true when checking. */
static bool broken(struct dpu *d, const Onnx__NodeProto *n, const char *what, int v, int lo, int hi)
{
	if (d->fix || d->viol[0])
		return !d->fix;
	snprintf(d->viol, sizeof d->viol, "%s '%s': %s %d outside [%d, %d]", n->op_type, qd_node_label(n), what, v, lo,
		 hi);
	return true;
}

static bool is_pool(const Onnx__NodeProto *n)
{
	return !strcmp(n->op_type, "MaxPool") || !strcmp(n->op_type, "AveragePool") ||
	       !strcmp(n->op_type, "GlobalAveragePool");
}

/* The seven rules in Quark's order; in fix mode each violated one is repaired (the later
 * ones may break an earlier one: the caller repeats until nothing changes). */
static void dpu_rules(struct dpu *d, Onnx__GraphProto *g)
{
	/* 1. Sigmoid: ipos in [0, 15], opos >= 7, 14 + ipos - opos in [0, 31] */
	d->rule = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		Onnx__TensorProto *ti, *to;
		if (strcmp(n->op_type, "Sigmoid") || !(ti = in_scale(d, n->input[0])) || !(to = out_scale(d, n->output[0], 1)))
			continue;
		int ip = getpos(ti), op = getpos(to);
		if ((ip < 0 || ip > 15) && !broken(d, n, "input pos", ip, 0, 15))
			setpos(d, ti, ip = ip < 0 ? 0 : 15);
		if (op < 7 && !broken(d, n, "output pos", op, 7, 127))
			setpos(d, to, op = 7);
		int sh = 14 + ip - op;
		if ((sh < 0 || sh > 31) && !broken(d, n, "shift", sh, 0, 31))
			setpos(d, to, sh < 0 ? 14 + ip : 14 + ip - 31 < 7 ? 7 : 14 + ip - 31);
	}
	/* 2.-3. Add / Mul: shift_read (max - min ipos <= 15), shift_write (min ipos - opos in [-15, 15]) */
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if ((strcmp(n->op_type, "Add") && strcmp(n->op_type, "Mul")) || n->n_input != 2)
			continue;
		Onnx__TensorProto *a = in_scale(d, n->input[0]), *b = in_scale(d, n->input[1]);
		Onnx__TensorProto *o = out_scale(d, n->output[0], 0);
		if (!a || !b)
			continue;
		int pa = getpos(a), pb = getpos(b), mn = pa < pb ? pa : pb;
		d->rule = 1;
		if (abs(pa - pb) > 15 && !broken(d, n, "shift_read", abs(pa - pb), 0, 15))
			setpos(d, pa > pb ? a : b, mn + 15);
		if (!o)
			continue;
		d->rule = 2;
		int op = getpos(o), sw = mn - op;
		if ((sw < -15 || sw > 15) && !broken(d, n, "shift_write", sw, -15, 15))
			setpos(d, o, sw > 15 ? mn - 15 : mn + 15);
	}
	/* 4.-5. Conv / Gemm: shift_cut = wpos + ipos - opos in [0, 16] (by wpos); shift_bias =
	 * wpos + ipos - bpos in [min(0, shift_cut - 16), 16] (by bpos) */
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if ((strcmp(n->op_type, "Conv") && strcmp(n->op_type, "ConvTranspose") && strcmp(n->op_type, "Gemm")) ||
		    n->n_input < 2)
			continue;
		Onnx__TensorProto *ti = in_scale(d, n->input[0]), *tw = in_scale(d, n->input[1]);
		Onnx__TensorProto *tb = n->n_input > 2 ? in_scale(d, n->input[2]) : NULL, *to = out_scale(d, n->output[0], 0);
		if (!ti || !tw)
			continue;
		int ip = getpos(ti), wp = getpos(tw);
		if (to) {
			int op = getpos(to), sc = wp + ip - op;
			d->rule = 3;
			if ((sc < 0 || sc > 16) && !broken(d, n, "shift_cut", sc, 0, 16))
				setpos(d, tw, wp = sc < 0 ? op - ip : 16 + op - ip);
			sc = wp + ip - op;
			if (tb) {
				int bp = getpos(tb), sb = wp + ip - bp, lo = sc - 16 < 0 ? sc - 16 : 0;
				d->rule = 4;
				if ((sb < lo || sb > 16) && !broken(d, n, "shift_bias", sb, lo, 16))
					setpos(d, tb, sb < lo ? wp + ip - lo : wp + ip - 16);
			}
		}
	}
	/* 6. Concat: every input and the output take the smallest pos */
	d->rule = 5;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "Concat"))
			continue;
		Onnx__TensorProto *o = out_scale(d, n->output[0], 0);
		int mn = o ? getpos(o) : 127, mx = mn;
		bool all = true;
		for (size_t k = 0; k < n->n_input; k++) {
			Onnx__TensorProto *t = in_scale(d, n->input[k]);
			if (!t) {
				all = false;
				continue;
			}
			int p = getpos(t);
			mn = p < mn ? p : mn;
			mx = p > mx ? p : mx;
		}
		if (!all || mx == mn || broken(d, n, "pos spread", mx - mn, 0, 0))
			continue;
		for (size_t k = 0; k < n->n_input; k++)
			setpos(d, in_scale(d, n->input[k]), mn);
		if (o)
			setpos(d, o, mn);
	}
	/* 7. pooling: opos = ipos */
	d->rule = 6;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		Onnx__TensorProto *ti, *to;
		if (!is_pool(n) || !(ti = in_scale(d, n->input[0])) || !(to = out_scale(d, n->output[0], 0)))
			continue;
		int ip = getpos(ti), op = getpos(to);
		if (ip != op && !broken(d, n, "ipos - opos", ip - op, 0, 0))
			setpos(d, to, ip);
	}
}

/* need_layer_fusing: the Q/DQ pair between a Conv / Add / pooling output and the Relu (or
 * LeakyRelu 0.1) reading it goes; the Relu reads the output directly. */
static int layer_fuse(struct qd_pass_ctx *ctx, struct qd_model *m, struct qd_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct qd_graph_index *ix = NULL;
	int rc = qd_index_build(g, NULL, &ix, err);
	if (rc < 0)
		return rc;
	bool *drop = calloc(g->n_node + 1, sizeof *drop);
	long fused = 0;
	if (!drop) {
		qd_index_free(ix);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *r = g->node[i];
		if (!is_relu(r) || !r->n_input)
			continue;
		Onnx__NodeProto *dq = qd_index_producer(ix, r->input[0]);
		Onnx__NodeProto *q = dq && !strcmp(dq->op_type, "DequantizeLinear") ? qd_index_producer(ix, dq->input[0]) : NULL;
		Onnx__NodeProto *p = q && !strcmp(q->op_type, "QuantizeLinear") ? qd_index_producer(ix, q->input[0]) : NULL;
		if (!p || (strcmp(p->op_type, "Conv") && strcmp(p->op_type, "Add") && !is_pool(p)))
			continue;
		Onnx__NodeProto *const *c;
		if (qd_index_consumers(ix, dq->output[0], &c) != 1 || qd_index_consumers(ix, q->output[0], &c) != 1 ||
		    qd_index_consumers(ix, q->input[0], &c) != 1 || qd_index_is_graph_output(ix, dq->output[0]))
			continue;
		char *nm = strdup(q->input[0]);
		if (!nm) {
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			break;
		}
		free(r->input[0]);
		r->input[0] = nm;
		for (size_t k = 0; k < g->n_node; k++)
			if (g->node[k] == q || g->node[k] == dq)
				drop[k] = true;
		fused++;
	}
	qd_index_free(ix);
	if (rc == 0 && fused) {
		qd_graph_remove_nodes(g, drop);
		if (qd_graph_remove_unused_initializers(g) < 0)
			rc = qd_err_set(err, QD_ENOMEM, NULL, "cannot remove unused initializers");
	}
	free(drop);
	if (rc == 0)
		qd_pass_log(ctx, QD_LOG_INFO, "need_layer_fusing: %ld Relu nodes read their producer's output directly", fused);
	return rc < 0 ? rc : (int)fused;
}

/* Repair the constraints (fix) or find the first violation; -QD_EORT_REJECT names it. */
static int dpu_constraints(const struct qd_model *m, bool fix, json_t *per_rule, struct qd_err *err)
{
	struct dpu d = { .fix = fix };
	int rc = qd_index_build(m->proto->graph, NULL, &d.ix, err);
	if (rc < 0)
		return rc;
	long total = 0;
	for (int round = 0; round < 20; round++) {
		d.changes = 0;
		dpu_rules(&d, m->proto->graph);
		total += d.changes;
		if (!fix || !d.changes)
			break;
	}
	qd_index_free(d.ix);
	for (int k = 0; per_rule && k < 7; k++)
		json_object_set_new(per_rule, rule_names[k], json_integer(d.per_rule[k]));
	json_object_set_new(per_rule, "total", json_integer(total));
	if (!fix && d.viol[0])
		return check_fail(err, NULL, "DPU constraint: %s", d.viol);
	return 0;
}

/* VitisQuantFormat.QDQ (vai_q_onnx >= 1.16): every QuantizeLinear / DequantizeLinear (ai.onnx
 * or com.microsoft) becomes VitisQuantizeLinear / VitisDequantizeLinear of domain
 * com.vai.quantize (version 1), same inputs and attributes. Done after the checker, which
 * reads the standard ops. ONNX Runtime has no kernels for them (nor has quantd's engine). */
static int vai_custom_ops(struct qd_pass_ctx *ctx, struct qd_model *m, struct vt *v, struct qd_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	long nq = 0, nd = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		const char *dom = qd_node_domain(n);
		bool q = !strcmp(n->op_type, "QuantizeLinear"), d = !strcmp(n->op_type, "DequantizeLinear");
		if ((!q && !d) || (*dom && strcmp(dom, "com.microsoft")))
			continue;
		char *op = strdup(q ? "VitisQuantizeLinear" : "VitisDequantizeLinear"), *nd_ = strdup("com.vai.quantize");
		if (!op || !nd_) {
			free(op); free(nd_);
			return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		}
		free(n->op_type);
		n->op_type = op;
		if (n->domain && n->domain != protobuf_c_empty_string)
			free(n->domain);
		n->domain = nd_;
		q ? nq++ : nd++;
	}
	if (qd_model_opset(m, "com.vai.quantize") < 1 && qd_model_set_opset(m, "com.vai.quantize", 1) < 0)
		return qd_err_set(err, QD_ENOMEM, NULL, "cannot add the com.vai.quantize opset import");
	qd_pass_log(ctx, QD_LOG_WARN, "VitisQuantFormat.QDQ: %ld VitisQuantizeLinear and %ld VitisDequantizeLinear "
		    "(domain com.vai.quantize): ONNX Runtime cannot run this model without Vitis AI's custom-op "
		    "library, nor can quantd's engine (its accuracy figures are unavailable); quant_format QDQ gives "
		    "the same model with the standard ops", nq, nd);
	json_object_set_new(v->stats, "custom_ops", json_pack("{s:s, s:i, s:i, s:b}", "domain", "com.vai.quantize",
							   "VitisQuantizeLinear", (json_int_t)nq,
							   "VitisDequantizeLinear", (json_int_t)nd,
							   "onnxruntime_runnable", 0));
	return 0;
}

static int finish(void *ud, struct qd_pass_ctx *ctx, struct qd_model *m, struct qd_err *err)
{
	struct vt *v = ud;
	size_t n = 0;
	int rc;
	if (v->dpu) {
		long fused = 0;
		if (v->fuse && (fused = layer_fuse(ctx, m, err)) < 0)
			return (int)fused;
		json_t *pr = json_object();
		if ((rc = dpu_constraints(m, true, pr, err)) < 0) {
			json_decref(pr);
			return rc;
		}
		char *txt = json_dumps(pr, JSON_COMPACT);
		qd_pass_log(ctx, QD_LOG_INFO, "DPU constraints: positions adjusted %s", txt ? txt : "?");
		free(txt);
		json_object_set_new(v->stats, "dpu", json_pack("{s:i, s:o}", "fused_relu", (json_int_t)fused,
							      "positions_adjusted", pr));
	}
	rc = qd_vitis_check_model(m, v->dpu, &n, err);
	if (rc < 0)
		return rc;
	qd_pass_log(ctx, QD_LOG_INFO, "Vitis AI rules hold: %zu scales, every one a power of two%s", n,
		    v->dpu ? "; per tensor, symmetric int8" : "");
	json_object_set_new(v->stats, "scales_checked", json_integer((json_int_t)n));
	return v->vai_qdq ? vai_custom_ops(ctx, m, v, err) : 0;
}

/* ---- parameters ---- */

/* extra_options keys of Vitis AI / Quark the pass reads itself (not ORT's). */
static const struct { const char *key; enum qd_param_type type; } vitis_keys[] = {
	{ "MinMSEMode", QD_PT_STRING }, { "CLEBalanceMethod", QD_PT_STRING }, { "CLESteps", QD_PT_INT },
	{ "CLEWeightThreshold", QD_PT_FLOAT }, { "CLEScaleAppendBias", QD_PT_BOOL }, { "CLEScaleUseThreshold", QD_PT_BOOL },
	{ "CLETotalLayerDiffThreshold", QD_PT_FLOAT },
};
/* The pass parameters that override extra_options in Olive. */
static const char *const exposed_keys[] = { "ActivationSymmetric", "WeightSymmetric", "AddQDQPairToWeight" };

static bool is_vitis_key(const char *k)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(vitis_keys); i++)
		if (!strcmp(vitis_keys[i].key, k))
			return true;
	return false;
}

/* extra_options without the Vitis keys (for ORT's checks and the static pass). new. */
static json_t *ort_extra(const json_t *extra)
{
	json_t *o = json_object();
	const char *k; json_t *x;
	json_object_foreach((json_t *)extra, k, x)
		if (!is_vitis_key(k))
			json_object_set(o, k, x);
	return o;
}

static bool space_has(const json_t *space, const char *key, const json_t *val)
{
	size_t i; json_t *x;
	json_array_foreach(json_object_get(space, key), i, x)
		if (json_equal(x, (json_t *)val))
			return true;
	return false;
}

static bool is16(const char *t)
{
	return t && strstr(t, "16");
}

static bool vai_format(const json_t *f)
{
	return json_is_string(f) && !strcmp(json_string_value(f), "VitisQuantFormat.QDQ");
}

int qd_pass_check_vitis_ai(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[200];
	size_t i; json_t *v;
	json_t *yes = json_true();
	bool dpu = space_has(space, "enable_dpu", yes) || space_has(space, "enable_npu_cnn", yes);
	if (dpu) {
		/* the DPU form is int8: 16-bit types cannot be overridden to it */
		static const char *const types[] = { "activation_type", "precision", "weight_type" };
		for (size_t k = 0; k < QD_ARRAY_LEN(types); k++)
			json_array_foreach(json_object_get(space, types[k]), i, v)
				if (is16(json_string_value(v))) {
					snprintf(field, sizeof field, "passes.%s.%s", pass_name, types[k]);
					return qd_err_set(err, QD_EUNSUPPORTED, field, "%s '%s' is not supported by the DPU / "
							  "NPU-CNN form (enable_dpu / enable_npu_cnn: int8 only)", types[k],
							  json_string_value(v));
				}
	}
	json_array_foreach(json_object_get(space, "extra_options"), i, v) {
		for (size_t k = 0; k < QD_ARRAY_LEN(exposed_keys); k++)
			if (json_object_get(v, exposed_keys[k])) {
				snprintf(field, sizeof field, "passes.%s.extra_options.%s", pass_name, exposed_keys[k]);
				return qd_err_set(err, QD_EINVAL, field, "set '%s' as a parameter of the pass: Olive overrides "
						  "extra_options' value with the pass parameter", exposed_keys[k]);
			}
		for (size_t k = 0; k < QD_ARRAY_LEN(vitis_keys); k++) {
			const json_t *x = json_object_get(v, vitis_keys[k].key);
			enum qd_param_type t = vitis_keys[k].type;
			snprintf(field, sizeof field, "passes.%s.extra_options.%s", pass_name, vitis_keys[k].key);
			if (x && !(t == QD_PT_STRING ? json_is_string(x) : t == QD_PT_INT ? json_is_integer(x) :
				   t == QD_PT_FLOAT ? json_is_number(x) : json_is_boolean(x)))
				return qd_err_set(err, QD_EINVAL, field, "extra option '%s' must be of type %s",
						  vitis_keys[k].key, qd_param_type_name(t));
		}
		const json_t *bm = json_object_get(v, "CLEBalanceMethod"), *st = json_object_get(v, "CLESteps");
		snprintf(field, sizeof field, "passes.%s.extra_options.CLEBalanceMethod", pass_name);
		if (bm && strcmp(json_string_value(bm), "max"))
			return qd_err_set(err, QD_EUNSUPPORTED, field, "CLEBalanceMethod '%s' is not supported (\"max\")",
					  json_string_value(bm));
		snprintf(field, sizeof field, "passes.%s.extra_options.CLESteps", pass_name);
		if (st && (json_integer_value(st) < -1 || json_integer_value(st) == 0 || json_integer_value(st) > 20))
			return qd_err_set(err, QD_EINVAL, field, "CLESteps must be -1 (until converged) or 1..20");
		const json_t *mode = json_object_get(v, "MinMSEMode");
		snprintf(field, sizeof field, "passes.%s.extra_options.MinMSEMode", pass_name);
		if (mode && (!json_is_string(mode) || (strcmp(json_string_value(mode), "All") &&
						       strcmp(json_string_value(mode), "MostCommon") &&
						       strcmp(json_string_value(mode), "Percentile"))))
			return qd_err_set(err, QD_EINVAL, field, "MinMSEMode must be \"All\", \"MostCommon\" or "
					  "\"Percentile\"");
		if (mode && !strcmp(json_string_value(mode), "MostCommon") &&
		    space_has(space, "ActivationSymmetric", json_false()))
			return qd_err_set(err, QD_EINVAL, field, "MinMSEMode \"MostCommon\" needs ActivationSymmetric "
					  "true (Quark: symmetric only)");
	}
	/* the static pass's own checks on the translated space */
	json_t *ts = json_object();
	static const char *const same[] = { "data_config", "activation_type", "precision", "weight_type", "quant_format",
					    "save_as_external_data", "all_tensors_to_one_file", "external_data_name",
					    "size_threshold", "convert_attribute" };
	for (size_t k = 0; k < QD_ARRAY_LEN(same); k++)
		if (json_object_get(space, same[k]))
			json_object_set(ts, same[k], json_object_get(space, same[k]));
	json_t *fm = json_array();   /* VitisQuantFormat.QDQ is the QDQ form, renamed at the end */
	json_array_foreach(json_object_get(space, "quant_format"), i, v)
		json_array_append_new(fm, json_string(vai_format(v) ? "QDQ" : json_string_value(v) ? json_string_value(v) : ""));
	json_object_set_new(ts, "quant_format", fm);
	json_t *ex = json_array();
	json_array_foreach(json_object_get(space, "extra_options"), i, v)
		json_array_append_new(ex, ort_extra(v));
	json_object_set_new(ts, "extra_options", ex);
	int rc = qd_pass_check_static(pass_name, ts, err);
	json_decref(ts);
	return rc;
}

/* input_nodes / output_nodes (Olive): every node before the first input node and after
 * the last output node, in graph order, joins nodes_to_exclude. */
static int exclude_outside(const struct qd_model *m, const json_t *params, json_t *excl, struct qd_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const json_t *in = qd_pass_opt_list(params, "input_nodes"), *out = qd_pass_opt_list(params, "output_nodes");
	const json_t *lists[2] = { in, out };
	const char *names[2] = { "input_nodes", "output_nodes" };
	for (int l = 0; l < 2; l++) {
		size_t i; json_t *x;
		json_array_foreach(lists[l], i, x) {
			bool found = false;
			for (size_t k = 0; k < g->n_node && !found; k++)
				found = g->node[k]->name && !strcmp(g->node[k]->name, json_string_value(x));
			if (!found)
				return qd_err_set(err, QD_EINVAL, names[l], "%s: no node named '%s' in the model", names[l],
						  json_string_value(x));
		}
	}
	if (in && json_array_size(in))
		for (size_t k = 0; k < g->n_node && !qd_json_list_has(in, g->node[k]->name); k++)
			json_array_append_new(excl, json_string(qd_node_label(g->node[k])));
	if (out && json_array_size(out))
		for (size_t k = g->n_node; k-- > 0 && !qd_json_list_has(out, g->node[k]->name);)
			json_array_append_new(excl, json_string(qd_node_label(g->node[k])));
	return 0;
}

/* The DPU form's forced settings (VitisDPUQuantizer): per tensor, int8, symmetric, QDQ;
 * each one the user set otherwise is overridden with a warning. */
static void dpu_overrides(struct qd_pass_ctx *ctx, const json_t *p, json_t *sp)
{
	static const struct { const char *key, *want; } forced[] = {
		{ "per_channel", "false" }, { "precision", "\"int8\"" }, { "activation_type", "\"int8\"" },
		{ "quant_format", "\"QDQ\"" }, { "WeightSymmetric", "true" }, { "ActivationSymmetric", "true" },
		{ "AddQDQPairToWeight", "true" },
	};
	for (size_t k = 0; k < QD_ARRAY_LEN(forced); k++) {
		json_t *want = json_loads(forced[k].want, JSON_DECODE_ANY, NULL);
		const json_t *got = json_object_get(p, forced[k].key);
		bool same = json_equal((json_t *)got, want) ||
			    (json_is_string(got) && !strcmp(json_string_value(got), !strcmp(forced[k].key, "activation_type") ? "QInt8" : "-"));
		if (!same && got && !json_is_null(got))
			qd_pass_log(ctx, QD_LOG_INFO, "DPU form: %s forced to %s", forced[k].key, forced[k].want);
		json_decref(want);
	}
	const char *wt = json_string_value(json_object_get(p, "weight_type"));
	if (wt && strcmp(wt, "QInt8"))
		qd_pass_log(ctx, QD_LOG_INFO, "DPU form: weight_type forced to QInt8");
	json_object_set_new(sp, "per_channel", json_false());
	json_object_set_new(sp, "precision", json_string("int8"));
	json_object_set_new(sp, "weight_type", json_null());
	json_object_set_new(sp, "activation_type", json_string("int8"));
	json_object_set_new(sp, "quant_format", json_string("QDQ"));
	json_object_set_new(sp, "weight_symmetric", json_true());
}

/* The static pass's parameters for this configuration. new. */
static json_t *static_params(struct qd_pass_ctx *ctx, const struct qd_model *m, const json_t *p, struct vt *v,
			     struct qd_err *err)
{
	const char *meth = json_string_value(json_object_get(p, "calibrate_method"));
	const json_t *extra = json_object_get(p, "extra_options");
	const char *mode = json_string_value(json_object_get(extra, "MinMSEMode"));
	v->minmse = meth && !strcmp(meth, "MinMSE");
	v->mode = !mode || !strcmp(mode, "All") ? MSE_ALL : !strcmp(mode, "MostCommon") ? MSE_MOST_COMMON : MSE_PERCENTILE;
	bool act_sym = json_is_true(json_object_get(p, "ActivationSymmetric")) || v->dpu;
	json_t *sp = json_object();
	static const char *const same[] = { "quant_mode", "data_config", "precision", "weight_type", "activation_type",
					    "op_types_to_quantize", "nodes_to_quantize", "per_channel", "quant_preprocess",
					    "quant_format" };
	for (size_t k = 0; k < QD_ARRAY_LEN(same); k++)
		json_object_set(sp, same[k], json_object_get(p, same[k]));
	if ((v->vai_qdq = vai_format(json_object_get(p, "quant_format"))))
		json_object_set_new(sp, "quant_format", json_string("QDQ"));
	json_object_set_new(sp, "activation_symmetric", json_boolean(act_sym));
	json_object_set(sp, "weight_symmetric", json_object_get(p, "WeightSymmetric"));
	if (v->dpu)
		dpu_overrides(ctx, p, sp);
	/* NonOverflow and MinMSE start from MinMax ranges (MinMSEMode Percentile: Percentile) */
	const char *sm = !meth || !strcmp(meth, "NonOverflow") || !strcmp(meth, "MinMSE") ?
			 (v->minmse && v->mode == MSE_PERCENTILE ? "Percentile" : "MinMax") : meth;
	json_object_set_new(sp, "calibrate_method", json_string(sm));
	if (!qd_pass_opt_list(p, "op_types_to_quantize")) {
		/* vai_q_onnx: every op type of ORT's QLinear and QDQ registries */
		json_t *ops = json_array();
		for (size_t k = 0; k < qd_op_rules_count(); k++) {
			const struct qd_op_rule *r = qd_op_rule_at(k);
			if (r->kind != QD_OK_NONE && !qd_json_list_has(ops, r->op))
				json_array_append_new(ops, json_string(r->op));
		}
		json_object_set_new(sp, "op_types_to_quantize", ops);
	}
	json_t *ex = ort_extra(extra);
	json_object_set(ex, "AddQDQPairToWeight", v->dpu ? json_true() : json_object_get(p, "AddQDQPairToWeight"));
	if ((!meth || !strcmp(meth, "NonOverflow") || !strcmp(meth, "MinMSE")) && !json_object_get(ex, "CalibTensorRangeSymmetric"))
		json_object_set_new(ex, "CalibTensorRangeSymmetric", json_boolean(act_sym));
	if (v->transformer && !json_object_get(ex, "MatMulConstBOnly"))
		json_object_set_new(ex, "MatMulConstBOnly", json_true());
	json_object_set_new(sp, "extra_options", ex);
	json_t *excl = json_array();
	size_t i; json_t *x;
	json_array_foreach(qd_pass_opt_list(p, "nodes_to_exclude"), i, x)
		json_array_append(excl, x);
	json_object_set_new(sp, "nodes_to_exclude", excl);
	if (exclude_outside(m, p, excl, err) < 0) {
		json_decref(sp);
		return NULL;
	}
	if (json_array_size(excl) > json_array_size(qd_pass_opt_list(p, "nodes_to_exclude")))
		qd_pass_log(ctx, QD_LOG_INFO, "input_nodes / output_nodes: %zu nodes outside them left in float",
			    json_array_size(excl) - json_array_size(qd_pass_opt_list(p, "nodes_to_exclude")));
	if (!json_array_size(excl))
		json_object_set_new(sp, "nodes_to_exclude", json_null());
	return sp;
}

int qd_pass_run_vitis_ai(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err)
{
	struct vt v = { .stats = json_object() };
	if (!v.stats)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	v.dpu = json_is_true(json_object_get(params, "enable_dpu")) || json_is_true(json_object_get(params, "enable_npu_cnn"));
	v.transformer = json_is_true(json_object_get(params, "enable_npu_transformer"));
	v.fuse = json_is_true(json_object_get(params, "need_layer_fusing"));
	v.cle = json_is_true(json_object_get(params, "include_cle"));
	{
		const json_t *ex = json_object_get(params, "extra_options"), *x;
		v.co.steps = json_is_integer(x = json_object_get(ex, "CLESteps")) ? (int)json_integer_value(x) : 1;
		v.co.weight_threshold = json_is_number(x = json_object_get(ex, "CLEWeightThreshold")) ? json_number_value(x) : 0.5;
		v.co.append_bias = qd_pass_opt_bool(ex, "CLEScaleAppendBias", true);
		v.co.use_threshold = qd_pass_opt_bool(ex, "CLEScaleUseThreshold", true);
		v.co.diff_threshold = json_is_number(x = json_object_get(ex, "CLETotalLayerDiffThreshold")) ? json_number_value(x) : 2e-7;
	}
	if (json_is_true(json_object_get(params, "optimize_model")))
		qd_pass_log(ctx, QD_LOG_INFO, "optimize_model ignored: ORT's deprecated transformer optimizer is not run "
			    "(quant_preprocess folds constants and BatchNormalization in quantd's own C)");
	if (json_is_true(json_object_get(params, "use_external_data_format")))
		qd_pass_log(ctx, QD_LOG_DEBUG, "use_external_data_format ignored: quantd quantizes in memory (the "
			    "artifact's external data follows save_as_external_data)");
	if (json_is_true(json_object_get(params, "need_layer_fusing")) && !v.dpu)
		qd_pass_log(ctx, QD_LOG_INFO, "need_layer_fusing ignored: it acts in the DPU form (enable_npu_cnn); "
			    "the QDQ form already folds Relu / Clip into the producer's quantization");
	int rc;
	json_t *sp = static_params(ctx, m, params, &v, err);
	if (!sp) {
		json_decref(v.stats);
		return err->code ? -err->code : -QD_ENOMEM;
	}
	const char *meth = json_string_value(json_object_get(params, "calibrate_method"));
	json_object_set_new(v.stats, "calibrate_method", json_string(meth ? meth : "MinMSE"));
	json_object_set_new(v.stats, "form", json_string(v.dpu ? "DPU" : v.vai_qdq ? "VitisQuantFormat.QDQ" :
							 json_string_value(json_object_get(sp, "quant_format"))));
	struct qd_static_target t = { .name = "VitisAI", .ud = &v, .act_scale_zp = act_scale_zp,
				      .quant_weight = quant_weight, .grow_scale = grow_scale, .refine = refine,
				      .prepare = prepare, .finish = finish, .bias_as_weight = v.dpu };
	qd_pass_log(ctx, QD_LOG_INFO, "Vitis AI: %s, power-of-two scales, calibrate_method %s%s", v.dpu ? "DPU form" :
		    json_string_value(json_object_get(sp, "quant_format")), meth ? meth : "MinMSE",
		    v.transformer ? ", NPU transformer (MatMulConstBOnly)" : "");
	rc = qd_static_run(ctx, m, sp, &t, err);
	json_decref(sp);
	json_object_set_new(ctx->stats, "vitis", v.stats);
	return rc;
}
