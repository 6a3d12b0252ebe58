/* OnnxStaticQuantization: weights and activations quantized from a calibration dataset
 * (reference/ort_quantization.md §2-§4), in QDQ or QOperator format.
 *
 * DESIGN. The pass runs in five steps on the main graph:
 *  1. prepare   Constant nodes → initializers; with quant_preprocess our own
 *               qd_preprocess (constant folding, BatchNormalization folding, types).
 *  2. select    every node whose op type has a row in the op-quantizer table
 *               (passes/op_rules.def) and passes op_types_to_quantize / _exclude and the
 *               node-name lists; every float input and output of a selected node that is
 *               not an initializer is a calibration tensor (ORT's select_tensors_to_calibrate).
 *  3. calibrate the float model runs batch by batch through the engine with the
 *               calibrator's hook (passes/calibrate.c): memory is the histograms, not the
 *               samples. Ranges then get ORT's adjustments (Softmax output [0, 1]; the input
 *               of a single-consumer Relu / Clip takes the output's range).
 *  4. rewrite   QDQ: mark tensors (activation, weight with axis, int32 bias, shared with an
 *               input) by the table's kind, then emit Q/DQ pairs, quantized weights + DQ and
 *               int32 biases (scale = input scale x weight scale, with the int32-bias weight
 *               scale adjustment); Relu / Clip removed when the producer's Q clamps.
 *               QOperator: nodes in order, replaced by their QLinear* form where the table
 *               has one, QuantizeLinear in front of the first quantized consumer,
 *               DequantizeLinear behind the last, data-movement ops on 8-bit data.
 *  5. validate  qd_pass_validate_output: a model ONNX Runtime would refuse fails the pass.
 * Opsets: Q/DQ with an axis need opset 13, 16-bit Q/DQ opset 21, and Q/DQ at all opset 10;
 * below those the com.microsoft QuantizeLinear / DequantizeLinear are used (never a
 * blind opset rewrite, which changes Softmax, Clip, Slice, Squeeze ... semantics).
 * Deliberate differences from ORT's quantize_static, each logged when it applies:
 *  - Constant-node weights are quantized (ORT leaves them float).
 *  - The default op types are the ones ORT's CPU provider runs on integers (flag
 *    QD_OPF_DEFAULT in the table), not every op of ORT's registry.
 *  - Graph outputs stay float: a Q/DQ pair on a model output only adds rounding error.
 *  - Per-channel weights are symmetric (as ORT's newest code forces for QLinear kernels).
 * QNN configuration (execution_provider "QNNExecutionProvider" with prepare_qdq_config, or
 * Olive's legacy prepare_qnn_config): ORT's get_qnn_qdq_config (reference/inc_vitis_qnn.md
 * §C.3) on top of the same steps: QUInt8 / QUInt8 unless the types are given,
 * MinimumRealRange 1e-4, com.microsoft Q/DQ below opset 21 with 16-bit types, every op type
 * with a quantizer row selected (not only QD_OPF_DEFAULT), MatMul weights per tensor,
 * LayerNormalization refused with per_channel, fixed 16-bit Sigmoid / Tanh output scales.
 * Nothing of it applies when neither option is given.
 * Targets (passes/static.h, qd_static_run): a pass built on this one (VitisAIQuantization)
 * hands hooks for the scale / zero-point formulas, weight quantization, the int32-bias
 * weight-scale growth, a second look at the calibrated ranges, biases quantized like
 * weights, and model edits before selection and after the rewrite. */
#include "passes/passes.h"
#include "passes/static.h"
#include "passes/quant_math.h"
#include "passes/op_rules.h"
#include "passes/calibrate.h"
#include "passes/preprocess.h"
#include "passes/opset.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "onnx/onnx_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_DOMAIN "com.microsoft"

struct st_cfg {
	bool qdq;
	enum qd_qtype wtype, atype;
	bool per_channel, reduce_range, act_sym, weight_sym;
	double min_real_range;
	const json_t *op_types, *op_types_ex, *nodes_in, *nodes_ex;
	bool add_qdq_pair_to_weight, dedicated_pair, force_no_input_check, const_b_only, contrib;
	bool keep_removable, no_bias_adjust, quantize_bias, sigmoid_nnapi;
	const json_t *axis_override;     /* QDQOpTypePerChannelSupportToAxis */
	const json_t *excl_output_ops;   /* OpTypesToExcludeOutputQuantization */
	const json_t *overrides;         /* TensorQuantOverrides */
	bool qnn;                        /* ORT get_qnn_qdq_config (execution_provider QNN) */
	struct qd_calib_opts calib;
	const char *calib_name;
};

/* One activation (non-initializer float tensor) of the main graph. */
struct act {
	char *name;
	char *src;                 /* shared: the tensor whose parameters it reuses */
	bool marked;               /* QDQ: gets a Q/DQ pair */
	bool needed;               /* its own range is calibrated (see need_ranges) */
	bool has_range;
	float rmin, rmax;
	bool params;               /* scale / zp computed */
	float scale;
	int32_t zp;
	char *scale_name, *zp_name; /* initializers once emitted */
	char *q;                   /* QOperator: the quantized value's name */
	char *dq;                  /* QDQ: the DequantizeLinear output */
	char *src_node;            /* shared: the node whose output shares src's parameters */
	enum qd_qtype qt;          /* its type (TensorQuantOverrides quant_type, else activation_type) */
	/* mixed precision (TensorQuantOverrides convert): Q -> DQ -> Q' -> DQ' for recv_nodes */
	bool conv;
	enum qd_qtype cqt;
	float cscale;
	int32_t czp;
	const json_t *recv;        /* node names reading the converted value */
	char *cscale_name, *czp_name;
};

struct st {
	struct qd_pass_ctx *pc;
	struct qd_model *m;
	struct qd_err *err;
	struct st_cfg cfg;
	json_t *sq_ex;          /* SmoothQuant: nodes_to_exclude plus its Mul nodes (new), or NULL */
	Onnx__GraphProto *g;
	struct qd_graph_index *ix;
	int64_t opset;
	bool ms_used, axis_needs_ms, wide_needs_ms;
	struct qd_strmap amap;           /* name → struct act * */
	struct act **acts; size_t n_acts, cap_acts;
	bool *selected;                  /* per node of g (index at selection time) */
	char **dead; size_t n_dead, cap_dead;   /* strings replaced while the index lives */
	json_t *counts, *skipped;
	struct qd_calib *cal;
	const struct qd_static_target *tgt;   /* may be NULL (passes/static.h) */
	long qnn_fixed;                  /* QNN: Sigmoid / Tanh outputs given fixed parameters */
	json_t *ov_fixed;                /* QNN mixed precision: the overrides with convert entries */
	long converts;                   /* Q -> DQ -> Q -> DQ conversions emitted */
};

/* ---- small helpers ---- */

static int oom(struct st *s) { return qd_err_set(s->err, QD_ENOMEM, NULL, "out of memory"); }

static int bury(struct st *s, char *p)
{
	if (s->n_dead == s->cap_dead) {
		size_t nc = s->cap_dead ? s->cap_dead * 2 : 64;
		char **nd = realloc(s->dead, nc * sizeof *nd);
		if (!nd)
			return oom(s);
		s->dead = nd;
		s->cap_dead = nc;
	}
	s->dead[s->n_dead++] = p;
	return 0;
}

/* Replace a node's input string (old one kept alive for the index). */
static int set_input(struct st *s, Onnx__NodeProto *n, size_t k, const char *name)
{
	char *c = strdup(name);
	if (!c)
		return oom(s);
	if (bury(s, n->input[k]) < 0) {
		free(c);
		return -QD_ENOMEM;
	}
	n->input[k] = c;
	return 0;
}

static char *fresh(struct st *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *fresh(struct st *s, const char *fmt, ...)
{
	char base[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(base, sizeof base, fmt, ap);
	va_end(ap);
	char *n = qd_index_unique_name(s->ix, base);
	if (!n)
		oom(s);
	return n;
}



#define skip(s, n, ...) qd_pass_skip((s)->pc, (s)->skipped, (n), QD_LOG_DEBUG, __VA_ARGS__)
#define count(s, op) qd_pass_count((s)->counts, (op))
#define in_list qd_json_list_has


static int add_node(struct st *s, Onnx__NodeProto *n)
{
	if (!n || qd_graph_add_node(s->g, n) < 0) {
		qd_node_free(n);
		return oom(s);
	}
	return 0;
}

static int add_init(struct st *s, Onnx__TensorProto *t)
{
	if (!t || qd_graph_add_initializer(s->g, t) < 0) {
		qd_tensor_free(t);
		return oom(s);
	}
	return 0;
}

static struct act *act_get(struct st *s, const char *name)
{
	void **v = name ? qd_strmap_get(&s->amap, name) : NULL;
	return v ? *v : NULL;
}

static struct act *act_add(struct st *s, const char *name)
{
	struct act *a = act_get(s, name);
	if (a)
		return a;
	if (s->n_acts == s->cap_acts) {
		size_t nc = s->cap_acts ? s->cap_acts * 2 : 256;
		struct act **na = realloc(s->acts, nc * sizeof *na);
		if (!na) {
			oom(s);
			return NULL;
		}
		s->acts = na;
		s->cap_acts = nc;
	}
	if (!(a = calloc(1, sizeof *a)) || !(a->name = strdup(name)) || qd_strmap_put(&s->amap, a->name, a)) {
		if (a)
			free(a->name);
		free(a);
		oom(s);
		return NULL;
	}
	a->qt = s->cfg.atype;
	s->acts[s->n_acts++] = a;
	return a;
}

static void act_free(struct act *a)
{
	free(a->name); free(a->src); free(a->scale_name); free(a->zp_name); free(a->q); free(a->dq);
	free(a->src_node); free(a->cscale_name); free(a->czp_name);
	free(a);
}

/* Domain for Q/DQ nodes: ai.onnx when the opset has what we need, else com.microsoft. */
static const char *qdq_domain(struct st *s, bool axis, bool wide)
{
	if (s->cfg.contrib || s->opset < 10 || (axis && s->opset < 13) || (wide && s->opset < 21)) {
		s->ms_used = true;
		if (axis && s->opset < 13)
			s->axis_needs_ms = true;
		if (wide && s->opset < 21)
			s->wide_needs_ms = true;
		return MS_DOMAIN;
	}
	return "";
}

static bool is_wide(enum qd_qtype t) { return t == QD_QT_UINT16 || t == QD_QT_INT16; }

static int qtype_of(const char *s);

/* ---- selection ---- */

static bool type_selected(struct st *s, const Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	if (s->cfg.op_types)
		return in_list(s->cfg.op_types, n->op_type);
	if (s->cfg.op_types_ex && in_list(s->cfg.op_types_ex, n->op_type))
		return false;
	if (s->cfg.qnn)
		return strcmp(n->op_type, "Cast") != 0;   /* get_qnn_qdq_config: every op type but Cast */
	return r->flags & QD_OPF_DEFAULT;
}

static bool node_selected(struct st *s, const Onnx__NodeProto *n)
{
	const char *dom = qd_node_domain(n);
	const struct qd_op_rule *r = qd_op_rule_find(n->op_type);
	if (!r || (*dom && strcmp(dom, MS_DOMAIN)))
		return false;
	if (!type_selected(s, n, r))
		return false;
	if (s->cfg.nodes_in && !in_list(s->cfg.nodes_in, n->name))
		return false;
	if (s->cfg.nodes_ex && in_list(s->cfg.nodes_ex, n->name))
		return false;
	if (!strcmp(n->op_type, "MaxPool") && s->opset < 12)
		return false;   /* ORT: 8-bit MaxPool needs opset 12 */
	return true;
}

static bool is_init(struct st *s, const char *name)
{
	return name && *name && qd_index_initializer(s->ix, name) != NULL;
}

/* ---- QDQ: parameters ---- */

/* QNN, 16-bit activations: a Sigmoid output gets scale 1/65536 zp 0 (QUInt16) or 1/32768
 * zp 0 (QInt16); a Tanh output 1/32768 with zp 32768 (QUInt16) or 0 (QInt16). */
static bool qnn_fixed_params(struct st *s, struct act *a)
{
	const Onnx__NodeProto *p = qd_index_producer(s->ix, a->name);
	if (!p || *qd_node_domain(p))
		return false;
	bool u = a->qt == QD_QT_UINT16;
	if (!strcmp(p->op_type, "Sigmoid")) {
		a->scale = u ? 1.0f / 65536.0f : 1.0f / 32768.0f;
		a->zp = 0;
	} else if (!strcmp(p->op_type, "Tanh")) {
		a->scale = 1.0f / 32768.0f;
		a->zp = u ? 32768 : 0;
	} else {
		return false;
	}
	a->params = true;
	s->qnn_fixed++;
	return true;
}

/* Does node read a's converted value (mixed precision)? */
static bool act_recv(const struct act *a, const char *node)
{
	return a->conv && node && *node && in_list(a->recv, node);
}

/* The convert entry of a's override: the second type's parameters, from the entry's own
 * scale / zero_point or rmin / rmax, else the tensor's range [lo, hi]. */
static void conv_params(struct st *s, struct act *a, const json_t *ov, double lo, double hi)
{
	const json_t *cv = json_object_get(ov, "convert");
	int t = qtype_of(json_string_value(json_object_get(cv, "quant_type")));
	if (!json_is_object(cv) || t < 0)
		return;
	a->conv = true;
	a->cqt = (enum qd_qtype)t;
	a->recv = json_object_get(cv, "recv_nodes");
	bool sym = json_is_boolean(json_object_get(cv, "symmetric")) ? json_is_true(json_object_get(cv, "symmetric"))
								      : s->cfg.act_sym;
	if (json_is_number(json_object_get(cv, "scale")) && json_is_integer(json_object_get(cv, "zero_point"))) {
		a->cscale = (float)json_number_value(json_object_get(cv, "scale"));
		a->czp = (int32_t)json_integer_value(json_object_get(cv, "zero_point"));
		return;
	}
	if (json_is_number(json_object_get(cv, "rmin")))
		lo = json_number_value(json_object_get(cv, "rmin"));
	if (json_is_number(json_object_get(cv, "rmax")))
		hi = json_number_value(json_object_get(cv, "rmax"));
	int32_t qmin, qmax;
	qd_quant_qrange(a->cqt, false, sym, &qmin, &qmax);
	qd_quant_scale_zp(lo, hi, qmin, qmax, sym, s->cfg.min_real_range, &a->cscale, &a->czp);
}

/* The range a convert starts from: the calibrated one, else the first type's grid. */
static void conv_from(struct st *s, struct act *a, const json_t *ov)
{
	if (!json_is_object(json_object_get(ov, "convert")))
		return;
	double lo = a->rmin, hi = a->rmax;
	if (!a->has_range) {
		int32_t qmin, qmax;
		qd_quant_qrange(a->qt, false, false, &qmin, &qmax);
		lo = (double)(qmin - a->zp) * a->scale;
		hi = (double)(qmax - a->zp) * a->scale;
	}
	if (json_is_number(json_object_get(ov, "rmin")))
		lo = json_number_value(json_object_get(ov, "rmin"));
	if (json_is_number(json_object_get(ov, "rmax")))
		hi = json_number_value(json_object_get(ov, "rmax"));
	conv_params(s, a, ov, lo, hi);
}

static int act_params(struct st *s, struct act *a)
{
	if (a->params)
		return 0;
	const json_t *ov = json_object_get(s->cfg.overrides, a->name);
	ov = json_is_array(ov) ? json_array_get(ov, 0) : ov;
	if (a->src) {
		/* a shared output takes its input's parameters as the sharing node reads them */
		struct act *r = act_get(s, a->src);
		if (r && act_params(s, r) == 0 && r->params) {
			bool cv = act_recv(r, a->src_node);
			a->scale = cv ? r->cscale : r->scale;
			a->zp = cv ? r->czp : r->zp;
			a->qt = cv ? r->cqt : r->qt;
			a->params = true;
			conv_from(s, a, ov);
			return 0;
		}
		/* the source has no parameters: fall back to the tensor's own range */
		free(a->src);
		a->src = NULL;
	}
	int qt = qtype_of(json_string_value(json_object_get(ov, "quant_type")));
	if (qt >= 0)
		a->qt = (enum qd_qtype)qt;
	bool given = json_object_get(ov, "scale") || json_object_get(ov, "rmin") || json_object_get(ov, "rmax");
	if (s->cfg.qnn && !given && is_wide(a->qt) && qnn_fixed_params(s, a)) {
		conv_from(s, a, ov);
		return 0;
	}
	if (!a->has_range)
		return -1;
	int32_t qmin, qmax;
	bool sym = s->cfg.act_sym;
	if (json_is_boolean(json_object_get(ov, "symmetric")))
		sym = json_is_true(json_object_get(ov, "symmetric"));
	qd_quant_qrange(a->qt, false, sym, &qmin, &qmax);
	double lo = a->rmin, hi = a->rmax;
	if (json_is_number(json_object_get(ov, "rmin")))
		lo = json_number_value(json_object_get(ov, "rmin"));
	if (json_is_number(json_object_get(ov, "rmax")))
		hi = json_number_value(json_object_get(ov, "rmax"));
	conv_params(s, a, ov, lo, hi);
	if (json_is_number(json_object_get(ov, "scale")) && json_is_integer(json_object_get(ov, "zero_point"))) {
		a->scale = (float)json_number_value(json_object_get(ov, "scale"));
		a->zp = (int32_t)json_integer_value(json_object_get(ov, "zero_point"));
		a->params = true;
		return 0;
	}
	if (s->tgt && s->tgt->act_scale_zp)
		s->tgt->act_scale_zp(s->tgt->ud, lo, hi, qmin, qmax, sym, &a->scale, &a->zp);
	else
		qd_quant_scale_zp(lo, hi, qmin, qmax, sym, s->cfg.min_real_range, &a->scale, &a->zp);
	a->params = true;
	return 0;
}

/* The scale node reads a with (the converted one for its recv_nodes). */
static float act_scale_for(const struct act *a, const char *node)
{
	return act_recv(a, node) ? a->cscale : a->scale;
}

/* Scale / zero-point initializers of an activation (its source's for shared ones). */
static int add_qparams(struct st *s, const char *sn, const char *zn, float scale, int32_t zp, enum qd_qtype qt)
{
	uint8_t zb[2];
	size_t zs = qd_qtype_code_size(qt);
	if (zs == 1)
		zb[0] = (uint8_t)zp;
	else
		memcpy(zb, &(uint16_t){(uint16_t)zp}, 2);
	if (add_init(s, qd_tensor_new(sn, QD_DT_FLOAT, NULL, 0, &scale, sizeof scale)) < 0 ||
	    add_init(s, qd_tensor_new(zn, qd_qtype_dtype(qt), NULL, 0, zb, zs)) < 0)
		return -QD_ENOMEM;
	return 0;
}

static int act_param_names(struct st *s, struct act *a)
{
	if (a->scale_name)
		return 0;
	if (a->conv) {
		a->cscale_name = fresh(s, "%s_convert_scale", a->name);
		a->czp_name = fresh(s, "%s_convert_zero_point", a->name);
		if (!a->cscale_name || !a->czp_name)
			return -QD_ENOMEM;
		if (add_qparams(s, a->cscale_name, a->czp_name, a->cscale, a->czp, a->cqt) < 0)
			return -QD_ENOMEM;
	}
	if (a->src) {
		struct act *r = act_get(s, a->src);
		if (r && r->params && act_param_names(s, r) == 0) {
			bool cv = act_recv(r, a->src_node);
			a->scale_name = strdup(cv ? r->cscale_name : r->scale_name);
			a->zp_name = strdup(cv ? r->czp_name : r->zp_name);
			return a->scale_name && a->zp_name ? 0 : oom(s);
		}
	}
	a->scale_name = fresh(s, "%s_scale", a->name);
	a->zp_name = fresh(s, "%s_zero_point", a->name);
	if (!a->scale_name || !a->zp_name)
		return -QD_ENOMEM;
	return add_qparams(s, a->scale_name, a->zp_name, a->scale, a->zp, a->qt);
}

/* ---- weights ---- */

struct wq {
	enum qd_qtype qt;
	int axis;                   /* -1 per tensor */
	size_t nch;
	float *scales;              /* nch */
	int32_t *zps;               /* nch */
	void *codes;                /* numel codes */
	int64_t n;
};

static void wq_free(struct wq *w) { free(w->scales); free(w->zps); free(w->codes); }

/* Quantize codes of channel c with scales[c] (after a bias adjustment). */
static void requant_channel(const float *x, const int64_t *dims, int ndim, int axis, size_t c, float scale,
			    int32_t zp, enum qd_qtype qt, void *codes)
{
	int64_t outer = 1, inner = 1;
	for (int i = 0; i < axis; i++) outer *= dims[i];
	for (int i = axis + 1; i < ndim; i++) inner *= dims[i];
	int64_t ch = dims[axis];
	size_t cs = qd_qtype_code_size(qt);
	for (int64_t o = 0; o < outer; o++) {
		size_t off = (size_t)((o * ch + (int64_t)c) * inner);
		qd_quantize(x + off, (size_t)inner, scale, zp, qt, (uint8_t *)codes + off * cs);
	}
}

/* Quantize initializer t: per channel along axis (>= 0) or per tensor. bias_abs (may be
 * NULL): |bias| per channel (or one value) for the int32-bias weight adjustment with the
 * input scale in_scale. bias: t is a bias quantized like a weight (target bias_as_weight). */
static int quant_weight(struct st *s, const Onnx__TensorProto *t, enum qd_qtype qt, int axis, bool sym,
			bool rr, const double *bias_abs, double in_scale, bool bias, struct wq *w)
{
	memset(w, 0, sizeof *w);
	float *x = NULL;
	int rc = qd_tensor_to_float(t, &x, &w->n, s->err);
	if (rc < 0)
		return rc;
	for (int64_t i = 0; i < w->n; i++)
		if (!isfinite(x[i])) {
			free(x);
			return qd_err_set(s->err, QD_EMODEL, t->name, "weight '%s' holds NaN or Inf", t->name);
		}
	if (axis >= (int)t->n_dims)
		axis = -1;
	w->qt = qt;
	w->axis = axis;
	w->nch = axis >= 0 ? (size_t)t->dims[axis] : 1;
	size_t cs = qd_qtype_code_size(qt);
	w->scales = malloc(w->nch * sizeof *w->scales);
	w->zps = malloc(w->nch * sizeof *w->zps);
	w->codes = malloc((size_t)w->n * cs + 1);
	if (!w->scales || !w->zps || !w->codes) {
		free(x);
		wq_free(w);
		return oom(s);
	}
	if (s->tgt && s->tgt->quant_weight) {
		if ((rc = s->tgt->quant_weight(s->tgt->ud, x, t->dims, (int)t->n_dims, axis, qt, sym, rr, bias,
					       w->scales, w->zps, w->codes)) < 0) {
			free(x);
			wq_free(w);
			return qd_err_set(s->err, -rc, t->name, "cannot quantize weight '%s' for %s", t->name,
					  s->tgt->name);
		}
	} else if (axis >= 0) {
		if (qd_quant_weight_channel(x, t->dims, (int)t->n_dims, axis, qt, sym, rr, w->scales, w->zps,
					    w->codes) < 0) {
			free(x);
			wq_free(w);
			return qd_err_set(s->err, QD_EINTERNAL, t->name, "cannot quantize weight '%s'", t->name);
		}
	} else {
		qd_quant_weight_tensor(x, (size_t)w->n, qt, sym, rr, w->scales, w->zps, w->codes);
	}
	/* int32-bias weight adjustment (§2.1): a bias whose scale in_scale * w_scale is too
	 * small to hold |bias| in int32 gets a larger weight scale */
	if (bias_abs && !s->cfg.no_bias_adjust && (qt == QD_QT_INT8 || qt == QD_QT_INT16)) {
		bool zero_zp = true;
		for (size_t c = 0; c < w->nch; c++)
			zero_zp = zero_zp && w->zps[c] == 0;
		for (size_t c = 0; zero_zp && c < w->nch; c++) {
			double smallest = 1.0001 * 2.0 * bias_abs[c] / (2147483647.0 - (-2147483647.0));
			double cand = in_scale * (double)w->scales[c];
			if (cand > 0 && cand < smallest) {
				if (s->tgt && s->tgt->grow_scale)
					w->scales[c] = s->tgt->grow_scale(s->tgt->ud, w->scales[c], smallest / in_scale);
				else
					w->scales[c] = (float)((double)w->scales[c] * (smallest / cand));
				if (axis >= 0)
					requant_channel(x, t->dims, (int)t->n_dims, axis, c, w->scales[c], 0, qt, w->codes);
				else
					qd_quantize(x, (size_t)w->n, w->scales[0], 0, qt, w->codes);
			}
		}
	}
	free(x);
	for (size_t c = 0; c < w->nch; c++)
		if (!isfinite(w->scales[c]) || w->scales[c] <= 0) {
			wq_free(w);
			return qd_err_set(s->err, QD_EINTERNAL, t->name, "weight '%s' got a bad scale", t->name);
		}
	return 0;
}

/* Add W_quantized, W_scale, W_zero_point for w; names returned (new). */
static int emit_weight_inits(struct st *s, const Onnx__TensorProto *t, const struct wq *w, const char *suffix,
			     char **qn, char **sn, char **zn)
{
	size_t cs = qd_qtype_code_size(w->qt);
	*qn = fresh(s, "%s%s_quantized", t->name, suffix);
	*sn = fresh(s, "%s%s_scale", t->name, suffix);
	*zn = fresh(s, "%s%s_zero_point", t->name, suffix);
	if (!*qn || !*sn || !*zn)
		return -QD_ENOMEM;
	uint8_t *zc = malloc(w->nch * cs);
	if (!zc)
		return oom(s);
	for (size_t c = 0; c < w->nch; c++) {
		if (cs == 1)
			zc[c] = (uint8_t)w->zps[c];
		else
			memcpy(zc + 2 * c, &(uint16_t){(uint16_t)w->zps[c]}, 2);
	}
	int64_t cd[1] = {(int64_t)w->nch};
	int rc = 0;
	if (add_init(s, qd_tensor_new(*qn, qd_qtype_dtype(w->qt), t->dims, t->n_dims, w->codes, (size_t)w->n * cs)) < 0 ||
	    add_init(s, qd_tensor_new(*sn, QD_DT_FLOAT, cd, w->axis >= 0, w->scales, w->nch * sizeof(float))) < 0 ||
	    add_init(s, qd_tensor_new(*zn, qd_qtype_dtype(w->qt), cd, w->axis >= 0, zc, w->nch * cs)) < 0)
		rc = -QD_ENOMEM;
	free(zc);
	return rc;
}

/* int32 bias: q = clip(rhe(B / (in_scale * w_scale[c]))) (times beta for Gemm). Names new. */
static int emit_bias_inits(struct st *s, const Onnx__TensorProto *b, double in_scale, const struct wq *w,
			   double beta, char **qn, char **sn, char **zn, bool *per_ch)
{
	float *x = NULL;
	int64_t n = 0;
	int rc = qd_tensor_to_float(b, &x, &n, s->err);
	if (rc < 0)
		return rc;
	*per_ch = w->nch > 1 || w->axis >= 0;
	size_t nsc = *per_ch ? (size_t)n : 1;
	int32_t *q = malloc((size_t)n * sizeof *q + 1), *z = calloc(nsc, sizeof *z);
	float *sc = malloc(nsc * sizeof *sc);
	if (!q || !z || !sc) {
		free(x); free(q); free(z); free(sc);
		return oom(s);
	}
	bool clipped = false;
	for (int64_t i = 0; i < n; i++) {
		double ws = w->nch == (size_t)n ? w->scales[i] : w->scales[0];
		double bs = in_scale * ws;
		if ((size_t)i < nsc)
			sc[i] = (float)bs;
		double v = bs > 0 ? qd_round_half_even((double)x[i] * beta / bs) : 0;
		if (v > 2147483647.0) { v = 2147483647.0; clipped = true; }
		if (v < -2147483648.0) { v = -2147483648.0; clipped = true; }
		q[i] = (int32_t)v;
	}
	if (clipped)
		qd_pass_log(s->pc, QD_LOG_WARN, "bias '%s' clipped to int32", b->name);
	*qn = fresh(s, "%s_quantized", b->name);
	*sn = fresh(s, "%s_quantized_scale", b->name);
	*zn = fresh(s, "%s_quantized_zero_point", b->name);
	int64_t d1[1] = {(int64_t)nsc};
	if (!*qn || !*sn || !*zn ||
	    add_init(s, qd_tensor_new(*qn, QD_DT_INT32, b->dims, b->n_dims, q, (size_t)n * 4)) < 0 ||
	    add_init(s, qd_tensor_new(*sn, QD_DT_FLOAT, d1, *per_ch, sc, nsc * sizeof *sc)) < 0 ||
	    add_init(s, qd_tensor_new(*zn, QD_DT_INT32, d1, *per_ch, z, nsc * 4)) < 0)
		rc = -QD_ENOMEM;
	free(x); free(q); free(z); free(sc);
	return rc;
}

static int emit_dq(struct st *s, const char *node, const char *const in[3], const char *out, int axis,
		   bool wide)
{
	const char *o[1] = {out};
	Onnx__NodeProto *n = qd_node_new("DequantizeLinear", qdq_domain(s, axis >= 0, wide), node, in, 3, o, 1);
	if (n && axis >= 0 && qd_node_set_attr_int(n, "axis", axis) < 0) {
		qd_node_free(n);
		n = NULL;
	}
	return add_node(s, n);
}

static int emit_q(struct st *s, const char *node, const char *const in[3], const char *out, int axis, bool wide)
{
	const char *o[1] = {out};
	Onnx__NodeProto *n = qd_node_new("QuantizeLinear", qdq_domain(s, axis >= 0, wide), node, in, 3, o, 1);
	if (n && axis >= 0 && qd_node_set_attr_int(n, "axis", axis) < 0) {
		qd_node_free(n);
		n = NULL;
	}
	return add_node(s, n);
}

/* Per-channel axis of the weight input of node n under its rule, -1 when per tensor. */
static int weight_axis(struct st *s, const Onnx__NodeProto *n, const struct qd_op_rule *r,
		       const Onnx__TensorProto *w)
{
	if (!s->cfg.per_channel || !w || w->n_dims < 1)
		return -1;
	if (s->cfg.qnn && r->kind == QD_OK_MATMUL)
		return -1;   /* QNN has no per-channel MatMul: explicit per-tensor override */
	const json_t *ov = json_object_get(s->cfg.axis_override, n->op_type);
	int axis;
	if (json_is_integer(ov))
		axis = (int)json_integer_value(ov);
	else if (r->kind == QD_OK_GEMM)
		axis = qd_node_attr_int(n, "transB", 0) ? 0 : 1;
	else if (r->kind == QD_OK_MATMUL)
		axis = (int)w->n_dims - 1;
	else
		axis = r->weight_axis;
	if (axis < 0)
		axis += (int)w->n_dims;
	if (axis < 0 || axis >= (int)w->n_dims)
		return -1;
	if (r->kind == QD_OK_MATMUL && w->n_dims < 2)
		return -1;
	return axis;
}

/* Replace node input k (a float initializer) with its quantized + DQ form (QDQ). */
static int qdq_weight(struct st *s, Onnx__NodeProto *n, size_t k, enum qd_qtype qt, int axis, bool sym,
		      bool rr, const double *bias_abs, double in_scale, bool bias, struct wq *keep)
{
	const Onnx__TensorProto *t = qd_index_initializer(s->ix, n->input[k]);
	struct wq w;
	if (axis >= 0)
		sym = true;    /* per-channel weights are symmetric (QLinear kernels: one zp) */
	int rc = quant_weight(s, t, qt, axis, sym, rr, bias_abs, in_scale, bias, &w);
	if (rc < 0)
		return rc;
	char *qn = NULL, *sn = NULL, *zn = NULL, *node = NULL, *out = NULL;
	if ((rc = emit_weight_inits(s, t, &w, "", &qn, &sn, &zn)) < 0)
		goto out;
	node = fresh(s, "%s_DequantizeLinear", t->name);
	out = fresh(s, "%s_DequantizeLinear_Output", t->name);
	if (!node || !out) {
		rc = -QD_ENOMEM;
		goto out;
	}
	const char *dqin[3] = {qn, sn, zn};
	if (s->cfg.add_qdq_pair_to_weight) {
		char *qnode = fresh(s, "%s_QuantizeLinear", t->name), *qout = fresh(s, "%s_QuantizeLinear_Output", t->name);
		const char *qin[3] = {t->name, sn, zn};
		rc = qnode && qout ? emit_q(s, qnode, qin, qout, axis, is_wide(qt)) : -QD_ENOMEM;
		dqin[0] = qout;
		if (rc == 0)
			rc = emit_dq(s, node, dqin, out, axis, is_wide(qt));
		free(qnode); free(qout);
	} else {
		rc = emit_dq(s, node, dqin, out, axis, is_wide(qt));
	}
	if (rc == 0)
		rc = set_input(s, n, k, out);
out:
	free(qn); free(sn); free(zn); free(node); free(out);
	if (keep && rc == 0)
		*keep = w;
	else
		wq_free(&w);
	return rc;
}

/* |bias| per output channel (n values) for the weight adjustment. new. */
static double *bias_absmax(struct st *s, const Onnx__TensorProto *b, size_t nch, double beta)
{
	float *x = NULL;
	int64_t n = 0;
	if (qd_tensor_to_float(b, &x, &n, s->err) < 0)
		return NULL;
	double *a = calloc(nch ? nch : 1, sizeof *a);
	if (a)
		for (int64_t i = 0; i < n; i++) {
			double v = fabs((double)x[i] * beta);
			size_t c = nch == (size_t)n ? (size_t)i : 0;
			if (v > a[c])
				a[c] = v;
		}
	free(x);
	return a;
}

/* ---- QDQ: marking ---- */

static bool mark_act(struct st *s, const char *name)
{
	if (!name || !*name || is_init(s, name) || qd_index_is_graph_output(s->ix, name))
		return false;
	struct act *a = act_get(s, name);
	if (!a || !a->has_range)
		return false;
	a->marked = true;
	return true;
}

static bool output_excluded(struct st *s, const Onnx__NodeProto *n)
{
	return s->cfg.excl_output_ops && in_list(s->cfg.excl_output_ops, n->op_type);
}

static void mark_outputs(struct st *s, const Onnx__NodeProto *n)
{
	if (output_excluded(s, n))
		return;
	for (size_t k = 0; k < n->n_output; k++)
		mark_act(s, n->output[k]);
}

static bool node_is_selected(struct st *s, const Onnx__NodeProto *n)
{
	for (size_t i = 0; i < s->g->n_node; i++)
		if (s->g->node[i] == n)
			return s->selected[i];
	return false;
}

/* MatMul / Gemm outputs get a Q/DQ only when a consumer quantizes them: ORT runs DQ ->
 * MatMul without an output Q as MatMulIntegerToFloat (integer GEMM, float result), so a
 * Q/DQ pair in front of a float consumer (bias Add, GELU, LayerNorm) would only add
 * rounding error. Conv keeps its output Q (QLinearConv needs it; Relu folding uses it). */
static void mark_mm_outputs(struct st *s, const Onnx__NodeProto *n)
{
	if (output_excluded(s, n))
		return;
	for (size_t k = 0; k < n->n_output; k++) {
		Onnx__NodeProto *const *cons;
		size_t nc = qd_index_consumers(s->ix, n->output[k], &cons);
		bool quantized_use = false;
		for (size_t c = 0; c < nc && !quantized_use; c++) {
			const struct qd_op_rule *r = qd_op_rule_find(cons[c]->op_type);
			if (!r || !node_is_selected(s, cons[c]))
				continue;
			quantized_use = r->kind != QD_OK_SHARED || (cons[c]->n_input && !strcmp(cons[c]->input[0], n->output[k]));
		}
		if (quantized_use)
			mark_act(s, n->output[k]);
	}
}

/* Weight / bias decisions of one node, carried to the emission step. */
struct wjob {
	Onnx__NodeProto *n;
	const struct qd_op_rule *r;
	int w_in, b_in;      /* input indices, -1 none */
	int axis;
	enum qd_qtype qt;
	bool sym;
	double beta;
};

/* ---- QDQ: the rewrite ---- */

/* Mixed precision: the first pair's DQ output quantized again in the convert type
 * (Q -> DQ -> Q' -> DQ'); the convert's recv_nodes read DQ', the others DQ. */
static int qdq_convert(struct st *s, struct act *a, Onnx__NodeProto *const *cons, size_t nc)
{
	char *cqn = fresh(s, "%s_convert_QuantizeLinear", a->name);
	char *cqo = fresh(s, "%s_convert_QuantizeLinear_Output", a->name);
	char *cdn = fresh(s, "%s_convert_DequantizeLinear", a->name);
	char *cout = fresh(s, "%s_convert_DequantizeLinear_Output", a->name);
	int rc = cqn && cqo && cdn && cout ? 0 : -QD_ENOMEM;
	const char *qin[3] = {a->dq, a->cscale_name, a->czp_name};
	const char *din[3] = {cqo, a->cscale_name, a->czp_name};
	if (rc == 0)
		rc = emit_q(s, cqn, qin, cqo, -1, is_wide(a->cqt));
	if (rc == 0)
		rc = emit_dq(s, cdn, din, cout, -1, is_wide(a->cqt));
	for (size_t c = 0; rc == 0 && c < nc; c++)
		if (act_recv(a, cons[c]->name))
			for (size_t k = 0; k < cons[c]->n_input && rc == 0; k++)
				if (!strcmp(cons[c]->input[k], a->dq))
					rc = set_input(s, cons[c], k, cout);
	free(cqn); free(cqo); free(cdn); free(cout);
	if (rc == 0)
		s->converts++;
	return rc;
}

static int qdq_acts(struct st *s)
{
	/* one Q/DQ pair per marked activation, every consumer rewired to the DQ output */
	for (size_t i = 0; i < s->n_acts; i++) {
		struct act *a = s->acts[i];
		if (!a->marked)
			continue;
		if (act_params(s, a) < 0) {
			a->marked = false;
			continue;
		}
		int rc = act_param_names(s, a);
		if (rc < 0)
			return rc;
		Onnx__NodeProto *const *cons;
		size_t nc = qd_index_consumers(s->ix, a->name, &cons);
		size_t pairs = s->cfg.dedicated_pair && nc > 1 && !a->conv ? nc : 1;
		for (size_t p = 0; p < pairs; p++) {
			char sfx[24] = "";
			if (pairs > 1)
				snprintf(sfx, sizeof sfx, "_%zu", p + 1);
			char *qn = fresh(s, "%s_QuantizeLinear%s", a->name, sfx);
			char *qo = fresh(s, "%s_QuantizeLinear_Output%s", a->name, sfx);
			char *dn = fresh(s, "%s_DequantizeLinear%s", a->name, sfx);
			char *dout = fresh(s, "%s_DequantizeLinear_Output%s", a->name, sfx);
			const char *qin[3] = {a->name, a->scale_name, a->zp_name};
			const char *din[3] = {qo, a->scale_name, a->zp_name};
			rc = qn && qo && dn && dout ? emit_q(s, qn, qin, qo, -1, is_wide(a->qt)) : -QD_ENOMEM;
			if (rc == 0)
				rc = emit_dq(s, dn, din, dout, -1, is_wide(a->qt));
			for (size_t c = 0; rc == 0 && c < nc; c++) {
				if (pairs > 1 && c != p)
					continue;
				Onnx__NodeProto *cn = cons[c];
				for (size_t k = 0; k < cn->n_input && rc == 0; k++)
					if (!strcmp(cn->input[k], a->name))
						rc = set_input(s, cn, k, dout);
			}
			free(qn); free(qo); free(dn);
			if (rc < 0) {
				free(dout);
				return rc;
			}
			if (!a->dq)
				a->dq = dout;
			else
				free(dout);
		}
		if (a->conv && (rc = qdq_convert(s, a, cons, nc)) < 0)
			return rc;
	}
	return 0;
}

static int qdq_rewrite(struct st *s)
{
	Onnx__GraphProto *g = s->g;
	size_t nn = g->n_node;
	struct wjob *jobs = calloc(nn + 1, sizeof *jobs);
	size_t nj = 0;
	if (!jobs)
		return oom(s);
	int rc = 0;
	/* mark, in topological order so shared ops see their input's mark */
	const size_t *order;
	size_t no = qd_index_topo(s->ix, &order);
	for (size_t oi = 0; oi < no; oi++) {
		size_t i = order[oi];
		Onnx__NodeProto *n = g->node[i];
		if (!s->selected[i])
			continue;
		const struct qd_op_rule *r = qd_op_rule_find(n->op_type);
		bool did = false;
		switch (r->kind) {
		case QD_OK_CONV: {
			if (n->n_input < 2 || !is_init(s, n->input[1])) {
				skip(s, n, "weight is not an initializer");
				break;
			}
			if (!mark_act(s, n->input[0])) {
				skip(s, n, "input has no calibration range");
				break;
			}
			struct wjob *j = &jobs[nj++];
			j->n = n; j->r = r; j->w_in = 1; j->b_in = n->n_input > 2 && is_init(s, n->input[2]) ? 2 : -1;
			j->qt = s->cfg.wtype; j->sym = s->cfg.weight_sym; j->beta = 1.0;
			j->axis = weight_axis(s, n, r, qd_index_initializer(s->ix, n->input[1]));
			mark_outputs(s, n);
			did = true;
			break;
		}
		case QD_OK_GEMM: {
			if (n->n_input < 2 || qd_node_attr_int(n, "transA", 0)) {
				skip(s, n, "transA is set");
				break;
			}
			if (!mark_act(s, n->input[0])) {
				skip(s, n, "input has no calibration range");
				break;
			}
			if (!is_init(s, n->input[1])) {
				mark_act(s, n->input[1]);
				mark_mm_outputs(s, n);
				did = true;
				break;
			}
			struct wjob *j = &jobs[nj++];
			j->n = n; j->r = r; j->w_in = 1; j->b_in = -1;
			j->qt = s->cfg.wtype; j->sym = s->cfg.weight_sym;
			j->beta = qd_node_attr_float(n, "beta", 1.0f);
			j->axis = weight_axis(s, n, r, qd_index_initializer(s->ix, n->input[1]));
			if (n->n_input > 2 && *n->input[2]) {
				const Onnx__TensorProto *c = qd_index_initializer(s->ix, n->input[2]);
				if (c && c->n_dims == 1 && qd_node_attr_float(n, "alpha", 1.0f) == 1.0f)
					j->b_in = 2;
				else
					qd_pass_log(s->pc, QD_LOG_DEBUG, "Gemm '%s': C stays float", qd_node_label(n));
			}
			mark_mm_outputs(s, n);
			did = true;
			break;
		}
		case QD_OK_MATMUL: {
			bool b_const = n->n_input > 1 && is_init(s, n->input[1]);
			if (s->cfg.const_b_only && !b_const) {
				skip(s, n, "B is not constant (MatMulConstBOnly)");
				break;
			}
			bool ok = true;
			for (size_t k = 0; k < 2 && k < n->n_input && ok; k++)
				if (!is_init(s, n->input[k]) && !act_get(s, n->input[k]))
					ok = false;
			if (!ok || (!is_init(s, n->input[0]) && !act_get(s, n->input[0])->has_range)) {
				skip(s, n, "input has no calibration range");
				break;
			}
			for (size_t k = 0; k < 2 && k < n->n_input; k++) {
				if (is_init(s, n->input[k])) {
					struct wjob *j = &jobs[nj++];
					j->n = n; j->r = r; j->w_in = (int)k; j->b_in = -1;
					j->qt = s->cfg.wtype; j->sym = s->cfg.weight_sym; j->beta = 1.0;
					j->axis = k == 1 ? weight_axis(s, n, r, qd_index_initializer(s->ix, n->input[1])) : -1;
				} else {
					mark_act(s, n->input[k]);
				}
			}
			mark_mm_outputs(s, n);
			did = true;
			break;
		}
		case QD_OK_ATTENTION:
			skip(s, n, "Attention has no QDQ form (ONNX Runtime fuses none): use quant_format QOperator");
			break;
		case QD_OK_REMOVE: {
			/* kept (not folded into a producer's Q): like ORT, a Relu / Clip is quantized
			 * only behind a quantized value; its output gets a pair when a quantized
			 * consumer asks for it. A float producer (Add of a HardSwish, ...) leaves it
			 * float: Q/DQ pairs there would only add rounding and conversions. */
			struct act *in = act_get(s, n->input[0]);
			if (in && in->marked) {
				mark_outputs(s, n);
				did = true;
			}
			break;
		}
		case QD_OK_SHARED: {
			struct act *in = act_get(s, n->input[0]);
			bool in_q = in && in->marked;
			if (!in_q && s->cfg.force_no_input_check)
				in_q = mark_act(s, n->input[0]);
			if (!in_q)
				break;
			for (size_t k = 0; k < n->n_output; k++) {
				struct act *o = act_get(s, n->output[k]);
				if (!o || output_excluded(s, n) || qd_index_is_graph_output(s->ix, n->output[k]))
					continue;
				/* shares the input's parameters: no range of its own is needed */
				o->marked = true;
				free(o->src);
				free(o->src_node);
				o->src = strdup(n->input[0]);
				o->src_node = strdup(n->name);
			}
			did = true;
			break;
		}
		case QD_OK_NORM:
		case QD_OK_GENERIC: {
			bool any = false;
			for (size_t k = 0; k < n->n_input; k++) {
				if (!*n->input[k])
					continue;
				if (is_init(s, n->input[k])) {
					const Onnx__TensorProto *t = qd_index_initializer(s->ix, n->input[k]);
					if (t->data_type != QD_DT_FLOAT)
						continue;
					if (r->kind == QD_OK_NORM && k == 2)
						continue;   /* bias stays float (quantd: no int32 norm bias) */
					struct wjob *j = &jobs[nj++];
					j->n = n; j->r = r; j->w_in = (int)k; j->b_in = -1; j->beta = 1.0;
					/* QNN (full integer, as ORT's QDQNormalization): the bias as int32
					 * with scale input scale x weight scale */
					if (s->cfg.qnn && r->kind == QD_OK_NORM && k == 1 && n->n_input > 2 &&
					    is_init(s, n->input[2]))
						j->b_in = 2;
					/* ORT: constant inputs of generic ops use the activation type */
					j->qt = r->kind == QD_OK_NORM ? s->cfg.wtype : s->cfg.atype;
					j->sym = r->kind == QD_OK_NORM ? s->cfg.weight_sym : s->cfg.act_sym;
					j->axis = r->kind == QD_OK_NORM ? weight_axis(s, n, r, t) : -1;
				} else {
					any = mark_act(s, n->input[k]) || any;
				}
			}
			mark_outputs(s, n);
			did = any;
			break;
		}
		}
		if (did)
			count(s, n->op_type);
		if (nj > nn) {
			rc = qd_err_set(s->err, QD_EINTERNAL, NULL, "too many weight jobs");
			goto out;
		}
	}
	/* activation parameters (weights and biases need input scales) */
	for (size_t i = 0; i < s->n_acts; i++)
		if (s->acts[i]->marked && act_params(s, s->acts[i]) < 0)
			s->acts[i]->marked = false;
	/* weights and biases */
	for (size_t i = 0; i < nj && rc == 0; i++) {
		struct wjob *j = &jobs[i];
		Onnx__NodeProto *n = j->n;
		struct act *in = act_get(s, n->input[0]);
		bool bias = j->b_in >= 0 && s->cfg.quantize_bias && in && in->marked && in->params;
		const Onnx__TensorProto *w = qd_index_initializer(s->ix, n->input[j->w_in]);
		const Onnx__TensorProto *b = bias ? qd_index_initializer(s->ix, n->input[j->b_in]) : NULL;
		size_t nch = j->axis >= 0 && w ? (size_t)w->dims[j->axis] : 1;
		double *babs = b ? bias_absmax(s, b, nch, j->beta) : NULL;
		if (b && !babs) {
			rc = -QD_ENOMEM;
			break;
		}
		struct wq wk = {0};
		bool bias_w = b && s->tgt && s->tgt->bias_as_weight;
		rc = qdq_weight(s, n, (size_t)j->w_in, j->qt, j->axis, j->sym, s->cfg.reduce_range, bias_w ? NULL : babs,
				in && in->params ? act_scale_for(in, n->name) : 0.0, false, b && !bias_w ? &wk : NULL);
		free(babs);
		if (rc == 0 && bias_w && (j->r->kind != QD_OK_GEMM || j->beta == 1.0))
			rc = qdq_weight(s, n, (size_t)j->b_in, j->qt, -1, true, false, NULL, 0.0, true, NULL);
		if (rc < 0 || !b || bias_w)
			continue;
		if ((size_t)qd_tensor_numel(b) != wk.nch && wk.nch != 1) {
			wq_free(&wk);
			continue;   /* bias length differs from the channel count: stays float */
		}
		char *qn = NULL, *sn = NULL, *zn = NULL, *node = NULL, *out = NULL;
		bool per_ch = false;
		rc = emit_bias_inits(s, b, act_scale_for(in, n->name), &wk, j->beta, &qn, &sn, &zn, &per_ch);
		wq_free(&wk);
		if (rc == 0) {
			node = fresh(s, "%s_DequantizeLinear", b->name);
			out = fresh(s, "%s_DequantizeLinear_Output", b->name);
			const char *din[3] = {qn, sn, zn};
			rc = node && out ? emit_dq(s, node, din, out, per_ch ? 0 : -1, false) : -QD_ENOMEM;
		}
		if (rc == 0)
			rc = set_input(s, n, (size_t)j->b_in, out);
		if (rc == 0 && j->r->kind == QD_OK_GEMM && j->beta != 1.0)
			rc = qd_node_set_attr_float(n, "beta", 1.0f) < 0 ? oom(s) : 0;
		free(qn); free(sn); free(zn); free(node); free(out);
	}
	if (rc == 0)
		rc = qdq_acts(s);
out:
	free(jobs);
	return rc;
}

/* ---- Relu / Clip removal (both formats) ---- */

/* Constant clip bounds (attributes before opset 11, inputs after). */
static bool clip_const(struct st *s, const Onnx__NodeProto *n)
{
	for (size_t k = 1; k < n->n_input; k++)
		if (*n->input[k] && !is_init(s, n->input[k]))
			return false;
	return true;
}

/* Clip's bound k (1 min, 2 max; attributes below opset 11), dflt when absent. */
static double clip_bound(struct st *s, const Onnx__NodeProto *n, size_t k, double dflt)
{
	if (qd_node_attr(n, k == 1 ? "min" : "max"))
		return qd_node_attr_float(n, k == 1 ? "min" : "max", (float)dflt);
	const Onnx__TensorProto *t = k < n->n_input && *n->input[k] ? qd_index_initializer(s->ix, n->input[k]) : NULL;
	float *x = NULL;
	int64_t cnt = 0;
	struct qd_err e = { 0 };
	double v = dflt;
	if (t && qd_tensor_to_float(t, &x, &cnt, &e) == 0 && cnt == 1)
		v = x[0];
	free(x);
	return v;
}

/* The Q of a folded Clip's output clamps to its grid [(qmin - zp)·s, (qmax - zp)·s]: the
 * fold keeps the model's function only when that grid lies inside the Clip's bounds. With
 * ORT's scales the grid is the calibrated range, inside the bounds; a power-of-two scale
 * (VitisAI) can reach up to twice past the max (a ReLU6 would let 6 .. 7.97 through). */
static bool clip_grid_inside(struct st *s, const Onnx__NodeProto *n, const struct act *ao)
{
	double lo = clip_bound(s, n, 1, -INFINITY), hi = clip_bound(s, n, 2, INFINITY);
	struct act tmp = *ao;
	tmp.params = false;
	tmp.src = NULL;
	if (act_params(s, &tmp) < 0)
		return false;
	int32_t qmin, qmax;
	qd_quant_qrange(s->cfg.atype, false, s->cfg.act_sym, &qmin, &qmax);
	double glo = (double)(qmin - tmp.zp) * tmp.scale, ghi = (double)(qmax - tmp.zp) * tmp.scale;
	double tol = 1e-5 * fmax(fabs(hi) < INFINITY ? fabs(hi) : 0, fabs(lo) < INFINITY ? fabs(lo) : 0) + 1e-7;
	return glo >= lo - tol && ghi <= hi + tol;
}

/* Remove selected Relu / Clip nodes whose input comes from a quantized node with a single
 * consumer: the producer writes the Relu's output, whose calibrated range the Q clamps to.
 * Returns the number removed. */
static int remove_activations(struct st *s)
{
	if (s->cfg.act_sym || s->cfg.keep_removable)
		return 0;
	Onnx__GraphProto *g = s->g;
	bool *drop = calloc(g->n_node + 1, sizeof *drop);
	if (!drop)
		return oom(s);
	int removed = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		const struct qd_op_rule *r = qd_op_rule_find(n->op_type);
		if (!s->selected[i] || !r || r->kind != QD_OK_REMOVE || n->n_input < 1 || n->n_output != 1)
			continue;
		if (!strcmp(n->op_type, "Clip") && !clip_const(s, n))
			continue;
		const char *t = n->input[0];
		Onnx__NodeProto *p = qd_index_producer(s->ix, t);
		Onnx__NodeProto *const *cons;
		if (!p || qd_index_consumers(s->ix, t, &cons) != 1 || qd_index_is_graph_output(s->ix, t) ||
		    qd_index_is_graph_output(s->ix, n->output[0]))
			continue;
		/* the producer must be a node we quantize with an output Q */
		size_t pi = 0;
		while (pi < g->n_node && g->node[pi] != p)
			pi++;
		const struct qd_op_rule *pr = qd_op_rule_find(p->op_type);
		if (pi == g->n_node || !s->selected[pi] || !pr || output_excluded(s, p) ||
		    pr->kind == QD_OK_REMOVE || pr->kind == QD_OK_SHARED)
			continue;
		if (!s->cfg.qdq && !*pr->qop)
			continue;   /* QOperator: only a QLinear producer clamps */
		struct act *ao = act_get(s, n->output[0]);
		if (!ao || !ao->has_range)
			continue;
		/* the Q clamps only below at 0 when the range starts at 0: a symmetric calibrated
		 * range (Distribution, CalibTensorRangeSymmetric, overrides) keeps the Relu / Clip */
		if (ao->rmin < 0.0f || json_object_get(s->cfg.overrides, n->output[0]))
			continue;
		if (!strcmp(n->op_type, "Clip") && !clip_grid_inside(s, n, ao))
			continue;
		for (size_t k = 0; k < p->n_output; k++)
			if (!strcmp(p->output[k], t)) {
				char *c = strdup(n->output[0]);
				if (!c || bury(s, p->output[k]) < 0) {
					free(c);
					free(drop);
					return oom(s);
				}
				p->output[k] = c;
			}
		drop[i] = true;
		count(s, n->op_type);
		removed++;
	}
	if (removed) {
		/* keep the selection array aligned with the remaining nodes */
		size_t w = 0;
		for (size_t i = 0; i < g->n_node; i++)
			if (!drop[i])
				s->selected[w++] = s->selected[i];
		qd_index_free(s->ix);
		s->ix = NULL;
		qd_graph_remove_nodes(g, drop);
	}
	free(drop);
	if (removed && qd_index_build(g, NULL, &s->ix, s->err) < 0)
		return -1;
	return removed;
}

/* ---- QOperator ---- */

/* The quantized form of a float value: existing, or QuantizeLinear(T) → T_quantized. */
static struct act *qop_input(struct st *s, const char *name)
{
	struct act *a = act_get(s, name);
	if (!a)
		return NULL;
	if (a->q)
		return a;
	if (act_params(s, a) < 0)
		return NULL;
	if (act_param_names(s, a) < 0)
		return NULL;
	char *node = fresh(s, "%s_QuantizeLinear", name);
	a->q = fresh(s, "%s_quantized", name);
	const char *in[3] = {name, a->scale_name, a->zp_name};
	if (!node || !a->q || emit_q(s, node, in, a->q, -1, false) < 0) {
		free(node);
		return NULL;
	}
	free(node);
	return a;
}

/* Output of a QLinear node: Y_quantized with Y's own parameters (or the given ones). */
static struct act *qop_output(struct st *s, const char *name)
{
	struct act *a = act_get(s, name);
	if (!a || act_params(s, a) < 0 || act_param_names(s, a) < 0)
		return NULL;
	free(a->q);
	a->q = fresh(s, "%s_quantized", name);
	return a->q ? a : NULL;
}

/* A constant float input of a QLinear op (Add/Mul operand, MatMul A/B): quantized
 * initializer. For per_channel B of MatMul the axis is the last dim. */
static int qop_const(struct st *s, const char *name, enum qd_qtype qt, int axis, bool sym, char **qn, char **sn,
		     char **zn, struct wq *keep)
{
	const Onnx__TensorProto *t = qd_index_initializer(s->ix, name);
	struct wq w;
	int rc = quant_weight(s, t, qt, axis, axis >= 0 ? true : sym, s->cfg.reduce_range && qt == s->cfg.wtype,
			      NULL, 0, false, &w);
	if (rc < 0)
		return rc;
	rc = emit_weight_inits(s, t, &w, "", qn, sn, zn);
	if (keep && rc == 0)
		*keep = w;
	else
		wq_free(&w);
	return rc;
}

/* copy_attrs: copy the original node's attributes except `beta` (QGemm has none: beta is
 * folded into the int32 bias). */
static Onnx__NodeProto *new_node(struct st *s, const char *op, const char *dom, const Onnx__NodeProto *orig,
				 const char *const *in, size_t n_in, const char *const *out, size_t n_out,
				 bool copy_attrs)
{
	char *name = fresh(s, "%s_quant", qd_node_label(orig));
	Onnx__NodeProto *n = name ? qd_node_new(op, dom, name, in, n_in, out, n_out) : NULL;
	free(name);
	if (n && copy_attrs)
		for (size_t i = 0; i < orig->n_attribute; i++)
			if (!(orig->attribute[i]->name && !strcmp(orig->attribute[i]->name, "beta") &&
			      !strcmp(op, "QGemm")) && qd_node_copy_attr(n, orig->attribute[i]) < 0) {
				qd_node_free(n);
				return NULL;
			}
	if (n && *dom)
		s->ms_used = true;
	return n;
}

/* com.microsoft Attention → QAttention (ORT's AttentionQuant in static mode): input 0
 * through a QuantizeLinear with its calibrated parameters (uint8: the only QAttention
 * input type ORT's CPU provider has), the [hidden, 3 hidden] weight quantized per tensor or
 * per column, bias float; inputs [x_q, W_q, bias, x_scale, W_scale, mask_index, x_zp,
 * W_zp, past]; the output stays float. */
static int qop_attention(struct st *s, Onnx__NodeProto *n, const struct qd_op_rule *r, bool *replaced)
{
	if (n->n_input < 3 || !is_init(s, n->input[1])) {
		skip(s, n, "the weight is not an initializer");
		return 0;
	}
	if (qd_node_attr(n, "qkv_hidden_sizes")) {
		skip(s, n, "qkv_hidden_sizes is set (QAttention needs equal Q/K/V sizes)");
		return 0;
	}
	if (s->cfg.atype != QD_QT_UINT8) {
		skip(s, n, "QAttention takes uint8 activations only");
		return 0;
	}
	struct act *x = act_get(s, n->input[0]);
	if (!x || (!x->q && !x->has_range)) {
		skip(s, n, "input has no calibration range");
		return 0;
	}
	if (!(x = qop_input(s, n->input[0])))
		return -QD_ENOMEM;
	const Onnx__TensorProto *w = qd_index_initializer(s->ix, n->input[1]);
	int axis = s->cfg.per_channel && w->n_dims == 2 ? 1 : -1;
	char *wq_n = NULL, *ws_n = NULL, *wz_n = NULL;
	int rc = qop_const(s, n->input[1], s->cfg.wtype, axis, s->cfg.weight_sym, &wq_n, &ws_n, &wz_n, NULL);
	if (rc == 0) {
		const char *in[9] = {x->q, wq_n, n->input[2], x->scale_name, ws_n, n->n_input > 3 ? n->input[3] : "",
				     x->zp_name, wz_n, n->n_input > 4 ? n->input[4] : ""};
		size_t nin = n->n_input > 4 ? 9 : 8;
		Onnx__NodeProto *nn = new_node(s, "QAttention", MS_DOMAIN, n, in, nin,
					       (const char *const *)n->output, n->n_output, true);
		if ((rc = add_node(s, nn)) == 0) {
			*replaced = true;
			count(s, r->op);
		}
	}
	free(wq_n); free(ws_n); free(wz_n);
	return rc;
}

/* Rewrite one selected node in QOperator form. *replaced tells whether the original node
 * goes away. */
static int qop_node(struct st *s, Onnx__NodeProto *n, const struct qd_op_rule *r, bool *replaced)
{
	*replaced = false;
	const char *op = n->op_type;
	if (r->kind == QD_OK_SHARED) {
		if (!(r->flags & QD_OPF_QOP8))
			return 0;
		struct act *in = act_get(s, n->input[0]);
		if (!in || !in->q)
			return 0;
		/* same op on the 8-bit data; outputs share the input's parameters */
		char **outs = calloc(n->n_output, sizeof *outs);
		if (!outs)
			return oom(s);
		int rc = 0;
		for (size_t k = 0; k < n->n_output && rc == 0; k++) {
			struct act *o = act_add(s, n->output[k]);
			if (!o) { rc = -QD_ENOMEM; break; }
			o->scale = in->scale; o->zp = in->zp; o->params = true;
			free(o->scale_name); free(o->zp_name);
			o->scale_name = strdup(in->scale_name);
			o->zp_name = strdup(in->zp_name);
			free(o->q);
			o->q = fresh(s, "%s_quantized", n->output[k]);
			outs[k] = o->q;
			if (!o->q || !o->scale_name || !o->zp_name)
				rc = -QD_ENOMEM;
		}
		const char **ins = calloc(n->n_input + 1, sizeof *ins);
		if (rc == 0 && !ins)
			rc = oom(s);
		for (size_t k = 0; rc == 0 && k < n->n_input; k++)
			ins[k] = k == 0 ? in->q : n->input[k];
		Onnx__NodeProto *nn = rc == 0 ? new_node(s, op, qd_node_domain(n), n, ins, n->n_input,
							 (const char *const *)outs, n->n_output, true) : NULL;
		free(ins);
		free(outs);
		if (rc == 0 && (rc = add_node(s, nn)) == 0) {
			*replaced = true;
			count(s, op);
		}
		return rc;
	}
	if (r->kind == QD_OK_REMOVE)
		return 0;   /* not removed before: stays float */
	if (r->kind == QD_OK_ATTENTION)
		return qop_attention(s, n, r, replaced);
	if (!*r->qop)
		return 0;
	/* every float input must be quantizable and the output needs a range */
	struct act *y = act_get(s, n->output[0]);
	bool out_fixed = !strcmp(op, "Softmax") || (!strcmp(op, "Sigmoid") && s->cfg.sigmoid_nnapi);
	if (!y || (!y->has_range && !out_fixed) || qd_index_is_graph_output(s->ix, n->output[0]) ||
	    output_excluded(s, n)) {
		skip(s, n, "output has no calibration range or is a graph output");
		return 0;
	}
	if (out_fixed) {
		/* fixed output scale 1/256 (ORT): zp 0 for uint8, -128 for int8 */
		y->scale = 1.0f / 256.0f;
		y->zp = s->cfg.atype == QD_QT_INT8 ? -128 : 0;
		y->params = true;
	}
	int rc = 0;
	char *wq_n = NULL, *ws_n = NULL, *wz_n = NULL, *bq = NULL, *bs = NULL, *bz = NULL;
	struct wq wk = {0};
	Onnx__NodeProto *nn = NULL;
	if (!strcmp(op, "Conv") || !strcmp(op, "Gemm") || !strcmp(op, "MatMul")) {
		bool gemm = !strcmp(op, "Gemm");
		if (n->n_input < 2 || (gemm && (qd_node_attr_int(n, "transA", 0) ||
						qd_node_attr_float(n, "alpha", 1.0f) != 1.0f))) {
			skip(s, n, "attributes not supported by the QOperator form");
			return 0;
		}
		bool a_const = is_init(s, n->input[0]), b_const = is_init(s, n->input[1]);
		if (!strcmp(op, "Conv") && !b_const) {
			skip(s, n, "weight is not an initializer");
			return 0;
		}
		if (gemm && !b_const) {
			skip(s, n, "B is not an initializer");
			return 0;
		}
		if (!strcmp(op, "MatMul") && s->cfg.const_b_only && !b_const) {
			skip(s, n, "B is not constant (MatMulConstBOnly)");
			return 0;
		}
		if (a_const) {
			skip(s, n, "A is constant");
			return 0;
		}
		struct act *x = act_get(s, n->input[0]);
		if (!x || (!x->q && !x->has_range)) {
			skip(s, n, "input has no calibration range");
			return 0;
		}
		struct act *bact = NULL;
		if (!b_const && (!(bact = act_get(s, n->input[1])) || (!bact->q && !bact->has_range))) {
			skip(s, n, "B has no calibration range");
			return 0;
		}
		if (!(x = qop_input(s, n->input[0])) || (bact && !(bact = qop_input(s, n->input[1]))))
			return -QD_ENOMEM;
		if (b_const) {
			const Onnx__TensorProto *w = qd_index_initializer(s->ix, n->input[1]);
			int axis = weight_axis(s, n, r, w);
			enum qd_qtype qt = axis >= 0 && !strcmp(op, "Conv") ? QD_QT_INT8 : s->cfg.wtype;
			if (axis >= 0 && !strcmp(op, "MatMul") && w->n_dims != 2)
				axis = -1;
			if ((rc = qop_const(s, n->input[1], qt, axis, s->cfg.weight_sym, &wq_n, &ws_n, &wz_n, &wk)) < 0)
				goto out;
		}
		int b_in = gemm || !strcmp(op, "Conv") ? 2 : -1;
		if (b_in >= 0 && (size_t)b_in < n->n_input && *n->input[b_in]) {
			const Onnx__TensorProto *b = qd_index_initializer(s->ix, n->input[b_in]);
			if (!b) {
				skip(s, n, "bias is not an initializer");
				rc = 0;
				goto out;
			}
			bool pc;
			double beta = gemm ? qd_node_attr_float(n, "beta", 1.0f) : 1.0;
			if ((rc = emit_bias_inits(s, b, x->scale, &wk, beta, &bq, &bs, &bz, &pc)) < 0)
				goto out;
		}
		if (!(y = qop_output(s, n->output[0]))) {
			rc = -QD_ENOMEM;
			goto out;
		}
		const char *bn = b_const ? wq_n : bact->q, *bsn = b_const ? ws_n : bact->scale_name;
		const char *bzn = b_const ? wz_n : bact->zp_name;
		const char *outs[1] = {y->q};
		if (!strcmp(op, "Conv")) {
			const char *in[9] = {x->q, x->scale_name, x->zp_name, bn, bsn, bzn, y->scale_name, y->zp_name, bq};
			nn = new_node(s, "QLinearConv", "", n, in, bq ? 9 : 8, outs, 1, true);
		} else if (gemm) {
			const char *in[9] = {x->q, x->scale_name, x->zp_name, bn, bsn, bzn, bq ? bq : "", y->scale_name,
					     y->zp_name};
			nn = new_node(s, "QGemm", MS_DOMAIN, n, in, 9, outs, 1, true);
		} else {
			const char *in[8] = {x->q, x->scale_name, x->zp_name, bn, bsn, bzn, y->scale_name, y->zp_name};
			nn = new_node(s, "QLinearMatMul", "", n, in, 8, outs, 1, false);
		}
	} else {
		/* elementwise / pooling / concat / softmax: every input quantized */
		size_t nin = n->n_input;
		const char **in = calloc(3 * nin + 4, sizeof *in);
		char **own = calloc(3 * nin + 1, sizeof *own);
		if (!in || !own) {
			free(in); free(own);
			return oom(s);
		}
		size_t ni = 0, no = 0;
		bool concat = !strcmp(op, "Concat");
		if (concat) {
			if (!(y = qop_output(s, n->output[0]))) { rc = -QD_ENOMEM; goto elw_out; }
			in[ni++] = y->scale_name;
			in[ni++] = y->zp_name;
		}
		for (size_t k = 0; k < nin && rc == 0; k++) {
			const char *nm = n->input[k];
			if (is_init(s, nm)) {
				const Onnx__TensorProto *t = qd_index_initializer(s->ix, nm);
				if (t->data_type != QD_DT_FLOAT) {
					skip(s, n, "non-float constant input");
					goto elw_out;
				}
				char *a = NULL, *b = NULL, *c = NULL;
				if ((rc = qop_const(s, nm, s->cfg.atype, -1, s->cfg.act_sym, &a, &b, &c, NULL)) < 0) {
					free(a); free(b); free(c);
					goto elw_out;
				}
				own[no++] = a; own[no++] = b; own[no++] = c;
				in[ni++] = a; in[ni++] = b; in[ni++] = c;
				continue;
			}
			struct act *a = act_get(s, nm);
			if (!a || (!a->q && !a->has_range)) {
				skip(s, n, "input '%s' has no calibration range", nm);
				goto elw_out;
			}
			if (!(a = qop_input(s, nm))) { rc = -QD_ENOMEM; goto elw_out; }
			in[ni++] = a->q; in[ni++] = a->scale_name; in[ni++] = a->zp_name;
		}
		if (!concat) {
			if (!(y = qop_output(s, n->output[0]))) { rc = -QD_ENOMEM; goto elw_out; }
			in[ni++] = y->scale_name;
			in[ni++] = y->zp_name;
		}
		{
			const char *outs[1] = {y->q};
			/* QLinearAdd/Mul: [a, a_s, a_zp, b, b_s, b_zp, c_s, c_zp]; unary: [x, x_s, x_zp, y_s, y_zp];
			 * QLinearConcat: [y_s, y_zp, (x, s, zp)...] */
			nn = new_node(s, r->qop, r->qop_domain, n, in, ni, outs, 1, true);
			if (nn && !strcmp(op, "GlobalAveragePool") && qd_node_set_attr_int(nn, "channels_last", 0) < 0) {
				qd_node_free(nn);
				nn = NULL;
			}
			if (nn && !strcmp(op, "Softmax") && qd_node_set_attr_int(nn, "opset", s->opset) < 0) {
				qd_node_free(nn);
				nn = NULL;
			}
		}
elw_out:
		for (size_t k = 0; k < no; k++)
			free(own[k]);
		free(own);
		free(in);
		if (rc < 0 || !y || !y->q || (!nn && rc == 0 && ni == 0))
			goto out;
		if (!nn && rc == 0) {
			/* skipped (reason logged): the output keeps no quantized form */
			if (y) {
				free(y->q);
				y->q = NULL;
			}
			goto out;
		}
	}
	if (!nn) {
		rc = rc < 0 ? rc : oom(s);
		goto out;
	}
	if ((rc = add_node(s, nn)) == 0) {
		*replaced = true;
		count(s, op);
	}
out:
	wq_free(&wk);
	free(wq_n); free(ws_n); free(wz_n); free(bq); free(bs); free(bz);
	return rc;
}

static int qop_rewrite(struct st *s)
{
	Onnx__GraphProto *g = s->g;
	size_t nn = g->n_node;
	bool *drop = calloc(nn + 1, sizeof *drop);
	if (!drop)
		return oom(s);
	const size_t *order;
	size_t no = qd_index_topo(s->ix, &order);
	int rc = 0;
	for (size_t oi = 0; oi < no && rc == 0; oi++) {
		size_t i = order[oi];
		if (!s->selected[i])
			continue;
		Onnx__NodeProto *n = g->node[i];
		rc = qop_node(s, n, qd_op_rule_find(n->op_type), &drop[i]);
	}
	if (rc < 0) {
		free(drop);
		return rc;
	}
	/* DequantizeLinear for every quantized value a float node or a graph output reads */
	for (size_t i = 0; i < s->n_acts && rc == 0; i++) {
		struct act *a = s->acts[i];
		if (!a->q)
			continue;
		Onnx__NodeProto *p = qd_index_producer(s->ix, a->name);
		size_t pi = nn;
		for (size_t k = 0; p && k < nn; k++)
			if (g->node[k] == p)
				pi = k;
		bool produced_quantized = pi < nn && drop[pi];
		if (!produced_quantized)
			continue;   /* the float value still exists (a Q was added after it) */
		bool need = qd_index_is_graph_output(s->ix, a->name);
		Onnx__NodeProto *const *cons;
		size_t nc = qd_index_consumers(s->ix, a->name, &cons);
		for (size_t c = 0; c < nc && !need; c++) {
			size_t ci = nn;
			for (size_t k = 0; k < nn; k++)
				if (g->node[k] == cons[c])
					ci = k;
			need = ci == nn || !drop[ci];
		}
		if (!need)
			continue;
		char *node = fresh(s, "%s_DequantizeLinear", a->name);
		const char *in[3] = {a->q, a->scale_name, a->zp_name};
		rc = node ? emit_dq(s, node, in, a->name, -1, false) : -QD_ENOMEM;
		free(node);
	}
	if (rc == 0) {
		/* the new nodes were appended after the nn original ones: keep them */
		bool *d2 = calloc(g->n_node + 1, sizeof *d2);
		if (!d2) {
			free(drop);
			return oom(s);
		}
		memcpy(d2, drop, nn * sizeof *d2);
		qd_index_free(s->ix);
		s->ix = NULL;
		qd_graph_remove_nodes(g, d2);
		free(d2);
	}
	free(drop);
	return rc;
}

/* ---- configuration ---- */

static int qtype_of(const char *s)
{
	static const struct { const char *name; enum qd_qtype t; } names[] = {
		{"int8", QD_QT_INT8}, {"uint8", QD_QT_UINT8}, {"int16", QD_QT_INT16}, {"uint16", QD_QT_UINT16},
		{"int4", QD_QT_INT4}, {"uint4", QD_QT_UINT4},
		{"QInt8", QD_QT_INT8}, {"QUInt8", QD_QT_UINT8}, {"QInt16", QD_QT_INT16}, {"QUInt16", QD_QT_UINT16},
		{"QInt4", QD_QT_INT4}, {"QUInt4", QD_QT_UINT4},
	};
	for (size_t i = 0; s && i < QD_ARRAY_LEN(names); i++)
		if (!strcmp(names[i].name, s))
			return names[i].t;
	return -1;
}



/* extra_options keys the static pass rejects, with the reason. */
static const struct { const char *key, *why; } static_rejected[] = {
	{"EnableSubgraph", "subgraph quantization is dynamic-only (ORT applies it to quantize_dynamic)"},
	{"CalibStridedMinMax", "quantd always calibrates batch by batch with bounded memory; set the data "
	 "config's batch_size instead"},
	{"CalibMaxIntermediateOutputs", "quantd's calibrators never keep intermediate outputs (memory is "
	 "bounded by the histograms)"},
	{"DefaultTensorType", "quantd knows every tensor's type from the calibration run"},
};

static bool qnn_requested(const json_t *ep, const json_t *prep_qdq, const json_t *prep_qnn)
{
	return (json_is_string(ep) && !strcmp(json_string_value(ep), "QNNExecutionProvider") &&
		!json_is_false(prep_qdq)) || json_is_true(prep_qnn);
}

/* One TensorQuantOverrides entry's keys: scale, zero_point, rmin, rmax, symmetric, and the
 * mixed-precision quant_type and convert {quant_type, recv_nodes, scale, ...} (QDQ only). */
static int check_override_keys(const char *field, const char *what, const char *tk, const json_t *o,
			       bool conv, const json_t *fmts, struct qd_err *err)
{
	const char *ok; json_t *ovv;
	json_object_foreach((json_t *)o, ok, ovv) {
		if (!strcmp(ok, "scale") || !strcmp(ok, "zero_point") || !strcmp(ok, "rmin") || !strcmp(ok, "rmax") ||
		    !strcmp(ok, "symmetric"))
			continue;
		bool qt = !strcmp(ok, "quant_type"), cv = !conv && !strcmp(ok, "convert"), rn = conv && !strcmp(ok, "recv_nodes");
		if (!qt && !cv && !rn)
			return qd_err_set(err, QD_EUNSUPPORTED, field, "%s key '%s%s' (tensor '%s') is not supported "
					  "(scale, zero_point, rmin, rmax, symmetric, quant_type, convert)", what,
					  conv ? "convert." : "", ok, tk);
		size_t k; json_t *f;
		json_array_foreach(fmts, k, f)
			if (json_is_string(f) && !strcmp(json_string_value(f), "QOperator"))
				return qd_err_set(err, QD_EUNSUPPORTED, field, "%s key '%s' (tensor '%s', mixed precision) "
						  "needs quant_format QDQ", what, ok, tk);
		if (qt) {
			int t = qtype_of(json_string_value(ovv));
			if (t < 0 || t == QD_QT_INT4 || t == QD_QT_UINT4)
				return qd_err_set(err, QD_EINVAL, field, "%s '%s': quant_type must be QInt8, QUInt8, QInt16 "
						  "or QUInt16", what, tk);
		} else if (cv) {
			if (!json_is_object(ovv) || !json_is_string(json_object_get(ovv, "quant_type")) ||
			    !json_is_array(json_object_get(ovv, "recv_nodes")))
				return qd_err_set(err, QD_EINVAL, field, "%s '%s': convert needs quant_type and recv_nodes "
						  "(a list of node names)", what, tk);
			int rc = check_override_keys(field, what, tk, ovv, true, fmts, err);
			if (rc < 0)
				return rc;
		} else {
			size_t k2; json_t *nv;
			json_array_foreach(ovv, k2, nv)
				if (!json_is_string(nv))
					return qd_err_set(err, QD_EINVAL, field, "%s '%s': convert.recv_nodes must be node "
							  "names", what, tk);
		}
	}
	return 0;
}

static int check_overrides(const char *field, const char *what, const json_t *ov, const json_t *fmts,
			   struct qd_err *err)
{
	const char *tk; json_t *tv;
	json_object_foreach((json_t *)ov, tk, tv) {
		const json_t *o = json_is_array(tv) ? json_array_get(tv, 0) : tv;
		int rc = check_override_keys(field, what, tk, o, false, fmts, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int check_static_space(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[160];
	size_t i; json_t *v;
	/* QNN: QDQ only (Olive searches quant_format [QDQ] for the QNN EP) */
	json_array_foreach(json_object_get(space, "execution_provider"), i, v) {
		size_t k, l; json_t *f, *pq;
		json_array_foreach(json_object_get(space, "prepare_qnn_config"), l, pq)
			json_array_foreach(json_object_get(space, "quant_format"), k, f)
				if (qnn_requested(v, json_array_get(json_object_get(space, "prepare_qdq_config"), 0), pq) &&
				    json_is_string(f) && !strcmp(json_string_value(f), "QOperator")) {
					snprintf(field, sizeof field, "passes.%s.quant_format", pass_name);
					return qd_err_set(err, QD_EUNSUPPORTED, field, "the QNN configuration needs "
							  "quant_format QDQ (the QNN execution provider runs QDQ models)");
				}
	}
	/* weight / activation types */
	json_t *fmts = json_object_get(space, "quant_format");
	json_array_foreach(json_object_get(space, "activation_type"), i, v) {
		int t = qtype_of(json_string_value(v));
		snprintf(field, sizeof field, "passes.%s.activation_type", pass_name);
		if (t == QD_QT_INT4 || t == QD_QT_UINT4 || t < 0)
			return qd_err_set(err, QD_EUNSUPPORTED, field, "activation_type '%s' is not supported "
					  "(int8, uint8, int16, uint16)", json_string_value(v));
		size_t k; json_t *f;
		json_array_foreach(fmts, k, f)
			if (is_wide(t) && json_is_string(f) && !strcmp(json_string_value(f), "QOperator"))
				return qd_err_set(err, QD_EUNSUPPORTED, field, "activation_type '%s' needs "
						  "quant_format QDQ (QLinear kernels are 8-bit)", json_string_value(v));
	}
	json_array_foreach(json_object_get(space, "precision"), i, v) {
		int t = qtype_of(json_string_value(v));
		snprintf(field, sizeof field, "passes.%s.precision", pass_name);
		if (t == QD_QT_INT4 || t == QD_QT_UINT4)
			return qd_err_set(err, QD_EUNSUPPORTED, field, "precision '%s' is not supported by static "
					  "quantization here (4-bit weights: use weight-only quantization)",
					  json_string_value(v));
		size_t k; json_t *f;
		json_array_foreach(fmts, k, f)
			if (is_wide(t) && json_is_string(f) && !strcmp(json_string_value(f), "QOperator"))
				return qd_err_set(err, QD_EUNSUPPORTED, field, "precision '%s' needs quant_format QDQ",
						  json_string_value(v));
	}
	json_array_foreach(json_object_get(space, "weight_type"), i, v) {
		int t = qtype_of(json_string_value(v));
		snprintf(field, sizeof field, "passes.%s.weight_type", pass_name);
		if (json_is_string(v) && (t == QD_QT_INT4 || t == QD_QT_UINT4))
			return qd_err_set(err, QD_EUNSUPPORTED, field, "weight_type '%s' is not supported by static "
					  "quantization here", json_string_value(v));
	}
	json_array_foreach(json_object_get(space, "calibration_providers"), i, v) {
		size_t k; json_t *p;
		snprintf(field, sizeof field, "passes.%s.calibration_providers", pass_name);
		json_array_foreach(v, k, p)
			if (!json_is_string(p) || strcmp(json_string_value(p), "CPUExecutionProvider"))
				return qd_err_set(err, QD_EUNSUPPORTED, field, "calibration provider '%s' is not "
						  "available: quantd calibrates on its own CPU engine "
						  "(CPUExecutionProvider)", json_is_string(p) ? json_string_value(p) : "?");
	}
	int src = qd_pass_check_sampling_size(pass_name, space, err);
	if (src < 0)
		return src;
	snprintf(field, sizeof field, "passes.%s.extra_options", pass_name);
	json_array_foreach(json_object_get(space, "extra_options"), i, v) {
		int rc = qd_extra_options_check(v, false, field, err);
		if (rc < 0)
			return rc;
		for (size_t k = 0; k < QD_ARRAY_LEN(static_rejected); k++)
			if (json_object_get(v, static_rejected[k].key)) {
				char f2[200];
				snprintf(f2, sizeof f2, "%s.%s", field, static_rejected[k].key);
				return qd_err_set(err, QD_EUNSUPPORTED, f2, "extra option '%s' is not supported: %s",
						  static_rejected[k].key, static_rejected[k].why);
			}
		char f2[200];
		const json_t *sqa = json_object_get(v, "SmoothQuantAlpha");
		snprintf(f2, sizeof f2, "%s.SmoothQuantAlpha", field);
		if (sqa && !(json_is_number(sqa) && json_number_value(sqa) >= 0 && json_number_value(sqa) <= 1))
			return qd_err_set(err, QD_EINVAL, f2, "SmoothQuantAlpha must be a number in [0, 1]");
		snprintf(f2, sizeof f2, "%s.TensorQuantOverrides", field);
		if ((rc = check_overrides(f2, "TensorQuantOverrides", json_object_get(v, "TensorQuantOverrides"), fmts,
					  err)) < 0)
			return rc;
	}
	snprintf(field, sizeof field, "passes.%s.tensor_quant_overrides", pass_name);
	json_array_foreach(json_object_get(space, "tensor_quant_overrides"), i, v) {
		int rc = check_overrides(field, "tensor_quant_overrides", v, fmts, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int qd_pass_check_static(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[160];
	size_t i; json_t *v;
	snprintf(field, sizeof field, "passes.%s.data_config", pass_name);
	json_array_foreach(json_object_get(space, "data_config"), i, v)
		if (json_is_null(v))
			return qd_err_set(err, QD_EINVAL, field, "static quantization needs calibration data: "
					  "set \"data_config\" to a data_configs name");
	int rc = check_static_space(pass_name, space, err);
	if (rc < 0)
		return rc;
	return qd_pass_check_external(pass_name, space, err);
}

static int parse_cfg(struct st *s, const json_t *params)
{
	struct st_cfg *c = &s->cfg;
	const json_t *extra = json_object_get(params, "extra_options");
	const char *prec = json_string_value(json_object_get(params, "precision"));
	const char *wt = json_string_value(json_object_get(params, "weight_type"));
	int w = qtype_of(wt ? wt : prec), a = qtype_of(json_string_value(json_object_get(params, "activation_type")));
	if (w < 0 || a < 0)
		return qd_err_set(s->err, QD_EINVAL, "precision", "unknown weight or activation type");
	c->qnn = qnn_requested(json_object_get(params, "execution_provider"), json_object_get(params, "prepare_qdq_config"),
			       json_object_get(params, "prepare_qnn_config"));
	if (c->qnn) {
		/* get_qnn_qdq_config's defaults: QUInt8 weights and activations */
		if (!qd_pass_user_value(s->pc, "precision") && !qd_pass_user_value(s->pc, "weight_type"))
			w = QD_QT_UINT8;
		if (!qd_pass_user_value(s->pc, "activation_type"))
			a = QD_QT_UINT8;
	}
	c->wtype = (enum qd_qtype)w;
	c->atype = (enum qd_qtype)a;
	const char *fmt = json_string_value(json_object_get(params, "quant_format"));
	c->qdq = !fmt || !strcmp(fmt, "QDQ");
	if (c->atype == QD_QT_INT8 && c->wtype == QD_QT_UINT8)
		return qd_err_set(s->err, QD_EUNSUPPORTED, "activation_type", "activation type int8 with weight "
				  "type uint8 is not supported (ONNX Runtime has no kernel for it)");
	if (!c->qdq && (is_wide(c->atype) || is_wide(c->wtype)))
		return qd_err_set(s->err, QD_EUNSUPPORTED, "activation_type", "16-bit types need quant_format QDQ");
	c->per_channel = json_is_true(json_object_get(params, "per_channel"));
	c->reduce_range = json_is_true(json_object_get(params, "reduce_range"));
	c->act_sym = json_is_true(json_object_get(params, "activation_symmetric")) ||
		     qd_pass_opt_bool(extra, "ActivationSymmetric", false);
	const json_t *ws = json_object_get(params, "weight_symmetric");
	c->weight_sym = json_is_boolean(ws) ? json_is_true(ws) : qd_pass_opt_bool(extra, "WeightSymmetric", qd_qtype_signed(c->wtype));
	const json_t *mrr = json_object_get(params, "min_real_range");
	c->min_real_range = json_is_number(mrr) ? json_number_value(mrr) :
			    json_is_number(json_object_get(extra, "MinimumRealRange")) ?
			    json_number_value(json_object_get(extra, "MinimumRealRange")) : 0.0;
	if (c->qnn) {
		/* QNN fixes MinimumRealRange at 1e-4 (Olive drops min_real_range); a user's
		 * extra_options value still wins, as Olive merges them over the returned ones */
		if (json_is_number(mrr))
			qd_pass_log(s->pc, QD_LOG_WARN, "min_real_range %g is dropped by the QNN configuration "
				    "(MinimumRealRange 1e-4; set extra_options.MinimumRealRange to change it)",
				    json_number_value(mrr));
		const json_t *xm = json_object_get(extra, "MinimumRealRange");
		c->min_real_range = json_is_number(xm) ? json_number_value(xm) : 1e-4;
	}
	c->op_types = qd_pass_opt_list(params, "op_types_to_quantize");
	c->op_types_ex = qd_pass_opt_list(params, "op_types_to_exclude");
	c->nodes_in = qd_pass_opt_list(params, "nodes_to_quantize");
	c->nodes_ex = qd_pass_opt_list(params, "nodes_to_exclude");
	c->add_qdq_pair_to_weight = qd_pass_opt_bool(extra, "AddQDQPairToWeight", false);
	c->dedicated_pair = qd_pass_opt_bool(extra, "DedicatedQDQPair", false);
	c->force_no_input_check = qd_pass_opt_bool(extra, "ForceQuantizeNoInputCheck", false);
	c->const_b_only = qd_pass_opt_bool(extra, "MatMulConstBOnly", false);
	c->contrib = qd_pass_opt_bool(extra, "UseQDQContribOps", false);
	c->keep_removable = qd_pass_opt_bool(extra, "QDQKeepRemovableActivations", false);
	c->no_bias_adjust = qd_pass_opt_bool(extra, "QDQDisableWeightAdjustForInt32Bias", false);
	c->quantize_bias = qd_pass_opt_bool(extra, "QuantizeBias", true);
	c->sigmoid_nnapi = qd_pass_opt_bool(extra, "extra.Sigmoid.nnapi", false);
	c->axis_override = json_object_get(extra, "QDQOpTypePerChannelSupportToAxis");
	c->excl_output_ops = qd_pass_opt_list(extra, "OpTypesToExcludeOutputQuantization");
	c->overrides = json_object_get(params, "tensor_quant_overrides");
	if (!json_is_object(c->overrides))
		c->overrides = json_object_get(extra, "TensorQuantOverrides");
	c->calib_name = json_string_value(json_object_get(params, "calibrate_method"));
	int meth = qd_calib_method_from_name(c->calib_name ? c->calib_name : "MinMax");
	if (meth < 0)
		return qd_err_set(s->err, QD_EINVAL, "calibrate_method", "unknown calibrate_method '%s'", c->calib_name);
	c->calib.method = (enum qd_calib_method)meth;
	const json_t *sy = json_object_get(extra, "CalibTensorRangeSymmetric");
	c->calib.symmetric = json_is_boolean(sy) ? json_is_true(sy) : -1;
	c->calib.moving_average = qd_pass_opt_bool(extra, "CalibMovingAverage", false);
	const json_t *mac = json_object_get(extra, "CalibMovingAverageConstant");
	c->calib.averaging_constant = json_is_number(mac) ? json_number_value(mac) : 0.01;
	const json_t *pct = json_object_get(extra, "CalibPercentile");
	c->calib.percentile = json_is_number(pct) ? json_number_value(pct) : 0.0;
	const json_t *nb = json_object_get(extra, "CalibNumBins"), *nq = json_object_get(extra, "CalibNumQuantizedBins");
	c->calib.num_bins = json_is_integer(nb) ? (int)json_integer_value(nb) : 0;
	c->calib.num_quantized_bins = json_is_integer(nq) ? (int)json_integer_value(nq) : 0;
	c->calib.scenario = json_string_value(json_object_get(extra, "CalibDistributionScenario"));
	return 0;
}

/* ---- entry point ---- */

/* Which activations need a calibrated range of their own (the others are never quantized
 * with their own parameters), decided from the selection alone so that calibration
 * observes only those (histograms cost time per element):
 *  - outputs of selected Conv / generic / norm nodes; of MatMul / Gemm only when a
 *    selected node reads them; of Relu / Clip when the producer is selected (the range
 *    a folded Relu's Q clamps to, or the kept Relu's output);
 *  - inputs that the node's rule quantizes; a Relu / Clip input only when it has other
 *    readers (with one reader it takes the Relu's output range); data-movement inputs
 *    only with ForceQuantizeNoInputCheck (otherwise their producer's rule decides);
 *  - never the outputs of data-movement ops: they share their input's parameters. */
static void need_ranges(struct st *s)
{
	Onnx__GraphProto *g = s->g;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!s->selected[i])
			continue;
		const struct qd_op_rule *r = qd_op_rule_find(n->op_type);
		for (size_t k = 0; k < n->n_output; k++) {
			struct act *a = act_get(s, n->output[k]);
			if (!a)
				continue;
			bool need = false;
			switch (r->kind) {
			case QD_OK_CONV: case QD_OK_GENERIC: case QD_OK_NORM:
				need = true;
				break;
			case QD_OK_GEMM: case QD_OK_MATMUL: {
				/* QOperator's QLinearMatMul / QGemm always quantize their output */
				Onnx__NodeProto *const *cons;
				size_t nc = qd_index_consumers(s->ix, n->output[k], &cons);
				need = !s->cfg.qdq;
				for (size_t c = 0; c < nc && !need; c++)
					need = qd_op_rule_find(cons[c]->op_type) && node_is_selected(s, cons[c]);
				break;
			}
			case QD_OK_REMOVE: {
				Onnx__NodeProto *p = n->n_input ? qd_index_producer(s->ix, n->input[0]) : NULL;
				need = !p || node_is_selected(s, p);
				break;
			}
			case QD_OK_SHARED: case QD_OK_ATTENTION:
				break;   /* QAttention's output is float */
			}
			a->needed = a->needed || need;
		}
		for (size_t k = 0; k < n->n_input; k++) {
			struct act *a = act_get(s, n->input[k]);
			if (!a)
				continue;
			bool need = false;
			switch (r->kind) {
			case QD_OK_CONV: case QD_OK_NORM:
				need = k == 0;
				break;
			case QD_OK_GEMM:
				need = k < 2;
				break;
			case QD_OK_MATMUL: case QD_OK_GENERIC:
				need = true;
				break;
			case QD_OK_REMOVE: {
				Onnx__NodeProto *const *cons;
				need = k == 0 && qd_index_consumers(s->ix, n->input[0], &cons) != 1;
				break;
			}
			case QD_OK_SHARED:
				need = k == 0 && s->cfg.force_no_input_check;
				break;
			case QD_OK_ATTENTION:
				need = k == 0 && !s->cfg.qdq;
				break;
			}
			a->needed = a->needed || need;
		}
	}
}

/* Batch source plus the pass, for the progress callback (qd_calib_run hands both
 * callbacks the same user data). */
struct calib_src {
	struct qd_batches b;
	struct st *s;
	double t0, last;
};

static int calib_next(void *ud, struct qd_tensor **in, size_t *n_in, struct qd_err *err)
{
	return qd_batches_next(&((struct calib_src *)ud)->b, in, n_in, err);
}

static void calib_progress(void *ud, int64_t batches)
{
	struct calib_src *c = ud;
	double now = qd_now_mono();
	if (now - c->last < 5.0)
		return;
	c->last = now;
	int64_t total = (c->b.end + c->b.bs - 1) / (c->b.bs ? c->b.bs : 1);
	qd_pass_log(c->s->pc, QD_LOG_INFO, "calibration: %lld of %lld batches (%.0f s)", (long long)batches,
		    (long long)total, now - c->t0);
	if (c->s->pc->hooks && c->s->pc->hooks->progress) {
		char msg[128];
		snprintf(msg, sizeof msg, "calibrating: batch %lld of %lld", (long long)batches, (long long)total);
		c->s->pc->hooks->progress(c->s->pc->hooks->ud, 0.05 + 0.5 * (double)batches / (double)(total ? total : 1), msg);
	}
}

/* The target's second look at the calibration data (struct qd_static_ranges.rerun). */
struct rerun_ctx {
	struct calib_src *src;
	const struct qd_dataset *ds;
	int64_t bs, limit;
	struct qd_engine *e;
	void (*obs)(void *ud, const char *name, const float *x, size_t n);
	void *ud;
};

static void rerun_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct rerun_ctx *r = ud;
	if (t && t->dtype == QD_DT_FLOAT && t->name && t->data)
		r->obs(r->ud, t->name, t->data, (size_t)qd_tensor_count(t));
}

static int rerun_batches(struct qd_static_ranges *rg, void (*obs)(void *ud, const char *name, const float *x, size_t n),
			 void (*end_batch)(void *ud), void *ud, struct qd_err *err)
{
	struct rerun_ctx *r = rg->priv;
	struct st *s = r->src->s;
	qd_batches_free(&r->src->b);
	int rc = qd_batches_init(&r->src->b, r->ds, s->g, r->bs, r->limit, err);
	if (rc < 0)
		return rc;
	r->obs = obs;
	r->ud = ud;
	qd_engine_set_hook(r->e, rerun_hook, r);
	const volatile int *cancel = s->pc->hooks ? s->pc->hooks->cancel : NULL;
	for (int64_t done = 0;; done++) {
		struct qd_tensor *in = NULL, *outs = NULL;
		size_t n_in = 0, n_out = 0;
		if (cancel && *cancel) {
			rc = qd_err_set(err, QD_ECANCELED, "", "calibration canceled");
			break;
		}
		if ((rc = qd_batches_next(&r->src->b, &in, &n_in, err)) <= 0)
			break;
		for (size_t i = 0; i < n_in; i++)
			if (in[i].dtype == QD_DT_FLOAT && in[i].name && in[i].data)
				obs(ud, in[i].name, in[i].data, (size_t)qd_tensor_count(&in[i]));
		rc = qd_engine_run(r->e, in, n_in, &outs, &n_out, cancel, err);
		if (outs)
			qd_tensors_release(outs, n_out);
		qd_tensors_release(in, n_in);
		if (rc < 0) {
			qd_err_wrap(err, "calibration batch %lld", (long long)done);
			break;
		}
		if (end_batch)
			end_batch(ud);
	}
	qd_engine_set_hook(r->e, NULL, NULL);
	return rc;
}

/* The target's refine hook over every tensor with a range. */
static int refine_ranges(struct st *s, struct calib_src *src, const struct qd_dataset *ds, int64_t bs,
			 int64_t limit, struct qd_engine *e)
{
	size_t n = 0;
	const char **names = calloc(s->n_acts + 1, sizeof *names);
	float *lo = calloc(s->n_acts + 1, sizeof *lo), *hi = calloc(s->n_acts + 1, sizeof *hi);
	int rc = names && lo && hi ? 0 : oom(s);
	for (size_t i = 0; rc == 0 && i < s->n_acts; i++)
		if (s->acts[i]->has_range) {
			names[n] = s->acts[i]->name;
			lo[n] = s->acts[i]->rmin;
			hi[n++] = s->acts[i]->rmax;
		}
	struct rerun_ctx rx = { .src = src, .ds = ds, .bs = bs, .limit = limit, .e = e };
	struct qd_static_ranges rg = { .n = n, .names = names, .rmin = lo, .rmax = hi, .atype = s->cfg.atype,
				       .symmetric = s->cfg.act_sym, .rerun = rerun_batches, .priv = &rx };
	if (rc == 0)
		rc = s->tgt->refine(s->tgt->ud, s->pc, &rg, s->err);
	for (size_t i = 0, k = 0; rc == 0 && i < s->n_acts; i++)
		if (s->acts[i]->has_range) {
			s->acts[i]->rmin = lo[k];
			s->acts[i]->rmax = hi[k++];
		}
	free(names); free(lo); free(hi);
	return rc;
}

static int calibrate(struct st *s, const json_t *params)
{
	struct qd_dataset *ds = NULL;
	int64_t bs = 1, limit = 0;
	const json_t *css = json_object_get(params, "calibration_sampling_size");
	if (json_is_array(css))
		css = json_array_get(css, 0);
	if (json_is_integer(css))
		limit = json_integer_value(css);
	int rc = qd_pass_open_data(s->pc, s->m, json_object_get(params, "data_config"), "data_config", &ds, &bs, s->err);
	if (rc < 0)
		return rc;
	struct qd_engine *e = NULL;
	struct calib_src src = { .s = s };
	struct qd_batches *bp = &src.b;
	struct qd_engine_opts eo = { .threads = s->pc->threads,
				     .max_tensor_bytes = s->pc->max_tensor_bytes ? s->pc->max_tensor_bytes : (size_t)4 << 30,
				     .max_memory_bytes = s->pc->max_memory_bytes, .max_seconds = s->pc->max_seconds };
	/* with one engine thread the second core bins histograms meanwhile */
	s->cfg.calib.background = s->pc->threads <= 1;
	if ((rc = qd_calib_new(&s->cfg.calib, &s->cal, s->err)) < 0)
		goto out;
	for (size_t i = 0; i < s->n_acts; i++)
		if (s->acts[i]->needed && (rc = qd_calib_add_tensor(s->cal, s->acts[i]->name)) < 0)
			goto out;
	if ((rc = qd_batches_init(bp, ds, s->g, bs, limit, s->err)) < 0)
		goto out;
	if ((rc = qd_engine_load(s->m, &eo, &e, s->err)) < 0) {
		qd_err_wrap(s->err, "cannot run the model for calibration");
		goto out;
	}
	double t0 = qd_now_mono();
	src.t0 = src.last = t0;
	size_t n_need = 0;
	for (size_t i = 0; i < s->n_acts; i++)
		n_need += s->acts[i]->needed;
	qd_pass_log(s->pc, QD_LOG_INFO, "calibrating %zu tensors with %s on %lld samples (batch %lld)",
		    n_need, s->cfg.calib_name ? s->cfg.calib_name : "MinMax", (long long)(bp->end),
		    (long long)bp->bs);
	rc = qd_calib_run(s->cal, e, calib_next, &src, s->pc->hooks ? s->pc->hooks->cancel : NULL,
			  calib_progress, s->err);
	if (rc < 0) {
		qd_err_wrap(s->err, "calibration failed");
		goto out;
	}
	if ((rc = qd_calib_compute(s->cal, s->err)) < 0)
		goto out;
	/* NaN / Inf in a calibrated activation: the float model itself misbehaves on this data;
	 * a range from the finite values alone would hide it */
	for (size_t i = 0; i < s->n_acts; i++) {
		int64_t nn = 0, ni = 0;
		if (qd_calib_skipped(s->cal, s->acts[i]->name, &nn, &ni) && nn + ni > 0) {
			rc = qd_err_set(s->err, QD_EMODEL, s->acts[i]->name, "calibration produced %lld NaN and %lld "
					"Inf values in tensor '%s': the float model does not compute finite values on "
					"the calibration data", (long long)nn, (long long)ni, s->acts[i]->name);
			goto out;
		}
	}
	double dt = qd_now_mono() - t0;
	size_t with = 0;
	for (size_t i = 0; i < s->n_acts; i++) {
		struct act *a = s->acts[i];
		a->has_range = qd_calib_range(s->cal, a->name, &a->rmin, &a->rmax);
		if (a->has_range && (!isfinite(a->rmin) || !isfinite(a->rmax))) {
			rc = qd_err_set(s->err, QD_EMODEL, a->name, "calibration of tensor '%s' produced a "
					"non-finite range [%g, %g]", a->name, a->rmin, a->rmax);
			goto out;
		}
		with += a->has_range;
	}
	if (with == 0) {
		rc = qd_err_set(s->err, QD_EMODEL, NULL, "calibration found no float activation to quantize");
		goto out;
	}
	if (s->tgt && s->tgt->refine && (rc = refine_ranges(s, &src, ds, bs, limit, e)) < 0)
		goto out;
	size_t constant = 0;
	const char *first_const = NULL;
	for (size_t i = 0; i < s->n_acts; i++)
		if (s->acts[i]->has_range && s->acts[i]->rmin == s->acts[i]->rmax) {
			constant++;
			first_const = first_const ? first_const : s->acts[i]->name;
		}
	if (constant == with) {
		rc = qd_err_set(s->err, QD_EMODEL, first_const, "every calibrated activation is constant over the "
				"calibration data (e.g. '%s' is always %g): the data does not exercise the model, or "
				"the model ignores its inputs", first_const, s->acts[0]->rmin);
		for (size_t i = 0; i < s->n_acts; i++)
			if (s->acts[i]->name == first_const || !strcmp(s->acts[i]->name, first_const)) {
				qd_err_set(s->err, QD_EMODEL, first_const, "every calibrated activation is constant over "
					   "the calibration data (e.g. '%s' is always %g): the data does not exercise the "
					   "model, or the model ignores its inputs", first_const, s->acts[i]->rmin);
				break;
			}
		goto out;
	}
	if (constant)
		qd_pass_log(s->pc, QD_LOG_WARN, "%zu calibrated tensors are constant over the calibration data "
			    "(e.g. '%s'); their quantization is exact only for that value", constant, first_const);
	json_object_set_new(s->pc->stats, "calibration", qd_calib_summary_json(s->cal, 20));
	json_object_set_new(json_object_get(s->pc->stats, "calibration"), "seconds", json_real(dt));
	json_object_set_new(json_object_get(s->pc->stats, "calibration"), "samples", json_integer(bp->end));
	json_object_set_new(json_object_get(s->pc->stats, "calibration"), "engine_peak_bytes",
			    json_integer((json_int_t)qd_engine_peak_bytes(e)));
	qd_pass_log(s->pc, QD_LOG_INFO, "calibration: %zu of %zu tensors have a range (%.2f s, collectors "
		    "peak %zu bytes)", with, n_need, dt, qd_calib_peak_bytes(s->cal));
out:
	qd_engine_free(e);
	qd_batches_free(bp);
	qd_dataset_free(ds);
	return rc;
}

/* Ranges adjusted as ORT's adjust_tensor_ranges: a Relu / Clip input with one consumer
 * takes the output's range; Softmax output is [0, 1]. */
static void adjust_ranges(struct st *s)
{
	Onnx__GraphProto *g = s->g;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!s->selected[i] || n->n_output < 1)
			continue;
		if (!strcmp(n->op_type, "Softmax")) {
			struct act *o = act_get(s, n->output[0]);
			if (o && o->has_range) {
				o->rmin = 0.0f;
				o->rmax = 1.0f;
			}
		}
		if ((!strcmp(n->op_type, "Relu") || !strcmp(n->op_type, "Clip")) && n->n_input > 0) {
			Onnx__NodeProto *const *cons;
			struct act *in = act_get(s, n->input[0]), *o = act_get(s, n->output[0]);
			if (in && o && o->has_range && qd_index_consumers(s->ix, n->input[0], &cons) == 1) {
				in->rmin = o->rmin;
				in->rmax = o->rmax;
				in->has_range = true;
			}
		}
	}
}

/* The rest of get_qnn_qdq_config once the opset is final: contrib Q/DQ for 16-bit types
 * below opset 21 (UseQDQContribOps; the user's extra option wins), LayerNormalization
 * refused with per_channel (ORT raises), the op types no quantizer row covers (left
 * float, logged) and the configuration in the pass stats. */
/* ---- QNN mixed precision (ORT's MixedPrecisionTensorQuantOverridesFixer) ---- */

/* A type request: quant type * 2 + symmetric. */
static int ti_of(struct st *s, const json_t *o)
{
	int t = qtype_of(json_string_value(json_object_get(o, "quant_type")));
	bool sym = json_is_boolean(json_object_get(o, "symmetric")) ? json_is_true(json_object_get(o, "symmetric"))
								     : s->cfg.act_sym;
	return (t < 0 ? (int)s->cfg.atype : t) * 2 + sym;
}

static const char *olive_qtype(int ti)
{
	switch ((enum qd_qtype)(ti / 2)) {
	case QD_QT_INT8: return "QInt8";
	case QD_QT_UINT8: return "QUInt8";
	case QD_QT_INT16: return "QInt16";
	case QD_QT_UINT16: return "QUInt16";
	default: return "?";
	}
}

/* Can the fixer give this input / output a type? (a float activation the pass sees) */
static bool fix_tensor(struct st *s, const Onnx__NodeProto *n, size_t k, bool input)
{
	const char *t = input ? n->input[k] : n->output[k];
	if (!*t || is_init(s, t) || !act_get(s, t))
		return false;
	const struct qd_op_rule *r = qd_op_rule_find(n->op_type);
	return !(input && k > 0 && r && r->kind == QD_OK_SHARED);   /* shape / index inputs */
}

static json_t *req_get(json_t *req, const char *name)
{
	json_t *e = json_object_get(req, name);
	if (!e) {
		e = json_pack("{s:o}", "n", json_array());
		if (e && json_object_set_new(req, name, e) < 0)
			e = NULL;
	}
	return e;
}

/* Every output of node produced in type ti, every input read in ti. */
static int req_node(struct st *s, json_t *req, const Onnx__NodeProto *n, int ti)
{
	for (size_t k = 0; k < n->n_output; k++) {
		if (!fix_tensor(s, n, k, false))
			continue;
		json_t *e = req_get(req, n->output[k]);
		if (!e)
			return oom(s);
		const json_t *p = json_object_get(e, "p");
		if (p && json_integer_value(p) != ti)
			return qd_err_set(s->err, QD_EINVAL, "tensor_quant_overrides", "mixed precision: tensor '%s' "
					  "(output of '%s') is asked for as both %s and %s", n->output[k], qd_node_label(n),
					  olive_qtype((int)json_integer_value(p)), olive_qtype(ti));
		json_object_set_new(e, "p", json_integer(ti));
	}
	for (size_t k = 0; k < n->n_input; k++) {
		if (!fix_tensor(s, n, k, true))
			continue;
		if (!*n->name)
			return qd_err_set(s->err, QD_EINVAL, "tensor_quant_overrides", "mixed precision: a '%s' node "
					  "next to an overridden tensor has no name (convert entries name their nodes; "
					  "QnnPreprocess or quant_preprocess names them)", n->op_type);
		json_t *e = req_get(req, n->input[k]);
		if (!e)
			return oom(s);
		const json_t *c = json_object_get(e, "c");
		if (c && json_integer_value(c) != ti)
			return qd_err_set(s->err, QD_EINVAL, "tensor_quant_overrides", "mixed precision: tensor '%s' "
					  "is read as both %s and %s", n->input[k], olive_qtype((int)json_integer_value(c)),
					  olive_qtype(ti));
		json_object_set_new(e, "c", json_integer(ti));
		if (!in_list(json_object_get(e, "n"), n->name))
			json_array_append_new(json_object_get(e, "n"), json_string(n->name));
	}
	return 0;
}

/* The override object of tensor t in the fixed overrides (created when absent). */
static json_t *fixed_entry(json_t *ov, const char *t)
{
	json_t *v = json_object_get(ov, t);
	if (json_is_array(v))
		return json_array_get(v, 0);
	if (!v && json_object_set_new(ov, t, v = json_object()) < 0)
		return NULL;
	return v;
}

/* t produced in type p, converted to c for the nodes in recv (none: only the type). */
static int fix_convert(struct st *s, const char *t, int p, int c, const json_t *recv)
{
	json_t *o = fixed_entry(s->ov_fixed, t);
	if (!o)
		return oom(s);
	json_object_set_new(o, "quant_type", json_string(olive_qtype(p)));
	json_object_set_new(o, "symmetric", json_boolean(p & 1));
	if (!recv || !json_array_size(recv) || p == c)
		return 0;
	json_t *cv = json_object_get(o, "convert");
	if (cv && ti_of(s, cv) != c)
		return qd_err_set(s->err, QD_EINVAL, "tensor_quant_overrides", "mixed precision: tensor '%s' would "
				  "need conversions to both %s and %s", t, json_string_value(json_object_get(cv, "quant_type")),
				  olive_qtype(c));
	if (!cv) {
		cv = json_pack("{s:s, s:b, s:[]}", "quant_type", olive_qtype(c), "symmetric", c & 1, "recv_nodes");
		if (!cv || json_object_set_new(o, "convert", cv) < 0)
			return oom(s);
	}
	json_t *rn = json_object_get(cv, "recv_nodes");
	size_t i; json_t *v;
	json_array_foreach(recv, i, v)
		if (!in_list(rn, json_string_value(v)))
			json_array_append(rn, v);
	return 0;
}

/* get_qnn_qdq_config's add_qtype_converts: each overridden tensor's producer and consumers
 * work in its type; where a tensor's producer and readers then differ, a convert entry. */
static int mixed_fix(struct st *s)
{
	const char *tk; json_t *tv;
	int def = (int)s->cfg.atype * 2 + s->cfg.act_sym;
	bool any = false;
	json_object_foreach((json_t *)s->cfg.overrides, tk, tv) {
		const json_t *o = json_is_array(tv) ? json_array_get(tv, 0) : tv;
		if (json_object_get(o, "quant_type") && ti_of(s, o) != def)
			any = true;
	}
	if (!any)
		return 0;
	json_t *req = json_object();
	if (!req || !(s->ov_fixed = json_deep_copy(s->cfg.overrides))) {
		json_decref(req);
		return oom(s);
	}
	int rc = 0;
	json_object_foreach((json_t *)s->cfg.overrides, tk, tv) {
		const json_t *o = json_is_array(tv) ? json_array_get(tv, 0) : tv;
		if (!act_get(s, tk) || is_init(s, tk))
			continue;
		int ti = ti_of(s, o);
		const Onnx__NodeProto *p = qd_index_producer(s->ix, tk);
		if (p && (rc = req_node(s, req, p, ti)) < 0)
			goto out;
		Onnx__NodeProto *const *cons;
		size_t nc = qd_index_consumers(s->ix, tk, &cons);
		for (size_t c = 0; c < nc; c++)
			if ((rc = req_node(s, req, cons[c], ti)) < 0)
				goto out;
	}
	json_object_foreach(req, tk, tv) {
		const json_t *pj = json_object_get(tv, "p"), *cj = json_object_get(tv, "c");
		const json_t *nodes = json_object_get(tv, "n");
		Onnx__NodeProto *const *cons;
		size_t nc = qd_index_consumers(s->ix, tk, &cons);
		json_t *rest = json_array();   /* consumers that asked for nothing */
		if (!rest) {
			rc = oom(s);
			goto out;
		}
		const json_t *own = json_object_get(s->cfg.overrides, tk);
		own = json_is_array(own) ? json_array_get(own, 0) : own;
		int p = pj ? (int)json_integer_value(pj) : own ? ti_of(s, own) : def;
		for (size_t c = 0; c < nc && rc == 0; c++) {
			if (*cons[c]->name && in_list(nodes, cons[c]->name))
				continue;
			if (!*cons[c]->name && p != def)
				rc = qd_err_set(s->err, QD_EINVAL, "tensor_quant_overrides", "mixed precision: a '%s' node "
						"reading '%s' has no name (convert entries name their nodes; QnnPreprocess or "
						"quant_preprocess names them)", cons[c]->op_type, tk);
			json_array_append_new(rest, json_string(cons[c]->name));
		}
		if (rc < 0)
			;
		else if (cj && (int)json_integer_value(cj) != p)
			rc = fix_convert(s, tk, p, (int)json_integer_value(cj), nodes);
		else
			rc = fix_convert(s, tk, p, p, NULL);
		/* readers outside the region get the default type back */
		if (rc == 0 && json_array_size(rest) && p != def)
			rc = fix_convert(s, tk, p, def, rest);
		json_decref(rest);
		if (rc < 0)
			goto out;
	}
	s->cfg.overrides = s->ov_fixed;
	long nconv = 0;
	json_object_foreach(s->ov_fixed, tk, tv) {
		const json_t *o = json_is_array(tv) ? json_array_get(tv, 0) : tv;
		nconv += json_object_get(o, "convert") != NULL;
	}
	qd_pass_log(s->pc, QD_LOG_INFO, "mixed precision (MixedPrecisionTensorQuantOverridesFixer): %zu tensors "
		    "typed, %ld converted between types", json_object_size(s->ov_fixed), nconv);
	json_object_set(s->pc->stats, "tensor_quant_overrides_fixed", s->ov_fixed);
out:
	json_decref(req);
	return rc;
}

static int qnn_config(struct st *s, const json_t *params)
{
	struct st_cfg *c = &s->cfg;
	const json_t *extra = json_object_get(params, "extra_options");
	bool wide = is_wide(c->atype) || is_wide(c->wtype);
	const char *tk; json_t *tv;
	json_object_foreach((json_t *)c->overrides, tk, tv) {   /* 16-bit quant_type / convert overrides */
		const json_t *o = json_is_array(tv) ? json_array_get(tv, 0) : tv;
		int t = qtype_of(json_string_value(json_object_get(o, "quant_type")));
		int ct = qtype_of(json_string_value(json_object_get(json_object_get(o, "convert"), "quant_type")));
		wide = wide || (t >= 0 && is_wide((enum qd_qtype)t)) || (ct >= 0 && is_wide((enum qd_qtype)ct));
	}
	if (wide && s->opset < 21 && !json_is_boolean(json_object_get(extra, "UseQDQContribOps")))
		c->contrib = true;
	char nofloat[512] = "";
	size_t k = 0;
	for (size_t i = 0; i < s->g->n_node; i++) {
		const Onnx__NodeProto *n = s->g->node[i];
		if (c->per_channel && !strcmp(n->op_type, "LayerNormalization") &&
		    !(c->nodes_ex && in_list(c->nodes_ex, n->name)) &&
		    (!c->op_types || in_list(c->op_types, n->op_type)))
			return qd_err_set(s->err, QD_EUNSUPPORTED, "per_channel", "per_channel is not supported for "
					  "LayerNormalization node '%s' by the QNN configuration (ORT's get_qnn_qdq_config "
					  "raises): set per_channel false or list the node in nodes_to_exclude",
					  qd_node_label(n));
		if (!qd_op_rule_find(n->op_type) && strcmp(n->op_type, "Cast") && !strstr(nofloat, n->op_type) &&
		    k + strlen(n->op_type) + 3 < sizeof nofloat)
			k += (size_t)snprintf(nofloat + k, sizeof nofloat - k, "%s%s", k ? ", " : "", n->op_type);
	}
	if (k && !c->op_types)
		qd_pass_log(s->pc, QD_LOG_WARN, "QNN configuration: op types without a quantizer rule in quantd "
			    "stay float: %s", nofloat);
	qd_pass_log(s->pc, QD_LOG_INFO, "QNN configuration (get_qnn_qdq_config): weights %s, activations %s, "
		    "MinimumRealRange %g, DedicatedQDQPair %s, %s Q/DQ%s", qd_qtype_name(c->wtype),
		    qd_qtype_name(c->atype), c->min_real_range, c->dedicated_pair ? "true" : "false",
		    c->contrib ? "com.microsoft" : "ai.onnx", c->op_types ? "" : ", every op type but Cast");
	json_object_set_new(s->pc->stats, "qnn_config",
			    json_pack("{s:s, s:s, s:f, s:b, s:b, s:b, s:b}", "weight_type", qd_qtype_name(c->wtype),
				      "activation_type", qd_qtype_name(c->atype), "MinimumRealRange", c->min_real_range,
				      "DedicatedQDQPair", c->dedicated_pair, "UseQDQContribOps", c->contrib,
				      "ActivationSymmetric", c->act_sym, "WeightSymmetric", c->weight_sym));
	return 0;
}

int qd_pass_run_static(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err)
{
	return qd_static_run(ctx, m, params, NULL, err);
}

int qd_static_run(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
		  const struct qd_static_target *tgt, struct qd_err *err)
{
	struct st s = { .pc = ctx, .m = m, .err = err, .tgt = tgt };
	int rc;
	if ((rc = parse_cfg(&s, params)) < 0)
		return rc;
	const char *ep = json_string_value(json_object_get(params, "execution_provider"));
	if (ep && !strcmp(ep, "QNNExecutionProvider") && !s.cfg.qnn)
		qd_pass_log(ctx, QD_LOG_INFO, "execution_provider QNNExecutionProvider with prepare_qdq_config false: "
			    "the QNN configuration is not applied (Olive then calls quantize_static with the pass's "
			    "own parameters)");
	else if (json_is_false(json_object_get(params, "prepare_qdq_config")))
		qd_pass_log(ctx, QD_LOG_INFO, "prepare_qdq_config false changes nothing: quantd builds one QDQ "
			    "configuration (Olive's true path adds ForceQuantizeNoInputCheck and every op type; set "
			    "those explicitly to get them)");
	s.counts = json_object();
	s.skipped = json_array();
	if (!s.counts || !s.skipped) {
		json_decref(s.counts); json_decref(s.skipped);
		return oom(&s);
	}
	s.opset = qd_model_opset(m, "");
	if (s.opset <= 0) {
		rc = qd_err_set(err, QD_EMODEL, NULL, "model has no ai.onnx opset import");
		goto out;
	}
	/* 1. prepare */
	if ((rc = qd_model_normalize_constants(m, err)) < 0)
		goto out;
	if (rc > 0)
		qd_pass_log(ctx, QD_LOG_INFO, "%d Constant nodes turned into initializers", rc);
	if (json_is_true(json_object_get(params, "quant_preprocess"))) {
		json_t *pst = json_object();
		struct qd_preprocess_opts po = { .fold_constants = true, .fold_batchnorm = true, .infer_types = true,
						 .threads = ctx->threads,
						 .log = ctx->hooks ? ctx->hooks->log : NULL,
						 .ud = ctx->hooks ? ctx->hooks->ud : NULL };
		rc = qd_preprocess(m, &po, pst, err);
		json_object_set_new(ctx->stats, "preprocess", pst);
		if (rc < 0) {
			qd_err_wrap(err, "quant_preprocess failed");
			goto out;
		}
	}
	/* Q/DQ need opset 10 (ORT fuses QDQ groups into ai.onnx QLinearConv, which does not
	 * exist below 10), an axis 13: raise the opset when every op keeps its meaning */
	bool need13 = s.cfg.per_channel || s.cfg.qdq;
	if (s.opset < (need13 ? 13 : 10)) {
		int64_t from = s.opset;
		struct qd_err ue = { 0 };
		if (qd_model_upgrade_opset(m, 13, ctx->hooks ? ctx->hooks->log : NULL, ctx->hooks ? ctx->hooks->ud : NULL,
					   ctx->stats, &ue) == 0) {
			s.opset = qd_model_opset(m, "");
			qd_pass_log(ctx, QD_LOG_INFO, "opset raised from %lld to %lld (every op converted with its "
				    "meaning kept)", (long long)from, (long long)s.opset);
		} else if (s.opset < 10) {
			rc = qd_err_set(err, QD_EUNSUPPORTED, ue.field, "opset %lld is below 10 (no QuantizeLinear / "
					"QLinearConv) and cannot be raised: %s", (long long)s.opset, ue.msg);
			goto out;
		} else {
			qd_pass_log(ctx, QD_LOG_INFO, "opset %lld kept (%s)", (long long)s.opset, ue.msg);
		}
	}
	/* ORT's SmoothQuant extra options: INC's SmoothQuant (passes/inc.c) before calibration,
	 * the Mul nodes it inserts left float (ORT adds them to nodes_to_exclude) */
	const json_t *xo = json_object_get(params, "extra_options");
	if (json_is_true(json_object_get(xo, "SmoothQuant"))) {
		rc = 0;
		const json_t *al = json_object_get(xo, "SmoothQuantAlpha");
		json_t *args = json_pack("{s:f, s:b}", "alpha", json_is_number(al) ? json_number_value(al) : 0.5, "folding",
					 qd_pass_opt_bool(xo, "SmoothQuantFolding", true));
		struct qd_namemap had = { 0 };
		Onnx__GraphProto *g0 = m->proto->graph;
		for (size_t i = 0; rc >= 0 && i < g0->n_node; i++)
			if (g0->node[i]->name && qd_namemap_put(&had, g0->node[i]->name, (long)i) < 0)
				rc = -QD_ENOMEM;
		const json_t *css = json_object_get(params, "calibration_sampling_size");
		if (json_is_array(css))
			css = json_array_get(css, 0);
		if (!args || rc < 0)
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		else
			rc = qd_smooth_quant(ctx, m, json_object_get(params, "data_config"), args,
					     json_is_integer(css) ? json_integer_value(css) : 0, ctx->stats, err);
		json_decref(args);
		if (rc == 0 && !(s.sq_ex = json_array()))
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		size_t k; json_t *x;
		json_array_foreach(rc == 0 ? s.cfg.nodes_ex : NULL, k, x)
			json_array_append(s.sq_ex, x);
		for (size_t i = 0; rc == 0 && i < m->proto->graph->n_node; i++) {
			const Onnx__NodeProto *n = m->proto->graph->node[i];
			if (n->name && !qd_namemap_get(&had, n->name) && !strcmp(n->op_type, "Mul"))
				json_array_append_new(s.sq_ex, json_string(n->name));
		}
		qd_namemap_free(&had);
		if (rc < 0)
			goto out;
		s.cfg.nodes_ex = s.sq_ex;
	} else if (json_object_get(xo, "SmoothQuantAlpha") || json_object_get(xo, "SmoothQuantFolding")) {
		qd_pass_log(ctx, QD_LOG_INFO, "extra_options SmoothQuantAlpha / SmoothQuantFolding have no effect: "
			    "SmoothQuant is not true");
	}
	s.g = m->proto->graph;
	if (s.cfg.qnn && (rc = qnn_config(&s, params)) < 0)
		goto out;
	if (tgt && tgt->prepare && (rc = tgt->prepare(tgt->ud, ctx, m, err)) < 0)
		goto out;
	s.g = m->proto->graph;
	if ((rc = qd_graph_toposort(s.g, err)) < 0)
		goto out;
	if ((rc = qd_index_build(s.g, NULL, &s.ix, err)) < 0)
		goto out;
	/* 2. select */
	s.selected = calloc(s.g->n_node + 1, sizeof *s.selected);
	if (!s.selected) {
		rc = oom(&s);
		goto out;
	}
	size_t nsel = 0;
	for (size_t i = 0; i < s.g->n_node; i++) {
		Onnx__NodeProto *n = s.g->node[i];
		if (!(s.selected[i] = node_selected(&s, n)))
			continue;
		nsel++;
		for (size_t k = 0; k < n->n_input; k++)
			if (*n->input[k] && !is_init(&s, n->input[k]) && !act_add(&s, n->input[k])) {
				rc = -QD_ENOMEM;
				goto out;
			}
		for (size_t k = 0; k < n->n_output; k++)
			if (*n->output[k] && !act_add(&s, n->output[k])) {
				rc = -QD_ENOMEM;
				goto out;
			}
	}
	if (nsel == 0) {
		qd_pass_log(ctx, QD_LOG_WARN, "no node was quantized: the model has no node of the selected op types");
		rc = 0;
		goto out;
	}
	if (s.cfg.qnn && s.cfg.qdq && (rc = mixed_fix(&s)) < 0)
		goto out;
	/* 3. calibrate */
	need_ranges(&s);
	for (size_t i = 0; i < s.n_acts; i++) {   /* a convert's second type needs the tensor's range */
		const json_t *ov = json_object_get(s.cfg.overrides, s.acts[i]->name);
		ov = json_is_array(ov) ? json_array_get(ov, 0) : ov;
		if (json_is_object(json_object_get(ov, "convert")))
			s.acts[i]->needed = true;
	}
	if ((rc = calibrate(&s, params)) < 0)
		goto out;
	adjust_ranges(&s);
	/* 4. rewrite */
	int removed = remove_activations(&s);
	if (removed < 0) {
		rc = removed;
		goto out;
	}
	if (removed)
		qd_pass_log(ctx, QD_LOG_INFO, "%d Relu/Clip nodes folded into the preceding quantization", removed);
	rc = s.cfg.qdq ? qdq_rewrite(&s) : qop_rewrite(&s);
	if (rc < 0)
		goto out;
	qd_index_free(s.ix);
	s.ix = NULL;
	if ((rc = qd_graph_remove_unused_initializers(s.g)) < 0) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "cannot remove unused initializers");
		goto out;
	}
	if ((rc = qd_graph_toposort(s.g, err)) < 0)
		goto out;
	if (s.ms_used && qd_model_opset(m, MS_DOMAIN) < 1 && (rc = qd_model_set_opset(m, MS_DOMAIN, 1)) < 0) {
		rc = qd_err_set(err, -rc, NULL, "cannot add the com.microsoft opset import");
		goto out;
	}
	if (s.axis_needs_ms)
		qd_pass_log(ctx, QD_LOG_INFO, "opset %lld < 13: per-channel Q/DQ use the com.microsoft "
			    "QuantizeLinear/DequantizeLinear (the opset import is left unchanged)", (long long)s.opset);
	if (s.wide_needs_ms)
		qd_pass_log(ctx, QD_LOG_INFO, "opset %lld < 21: 16-bit Q/DQ use the com.microsoft ops",
			    (long long)s.opset);
	if (s.opset < 10 && !s.axis_needs_ms)
		qd_pass_log(ctx, QD_LOG_INFO, "opset %lld < 10: Q/DQ use the com.microsoft ops", (long long)s.opset);
	int total = 0;
	const char *k; json_t *v;
	json_object_foreach(s.counts, k, v)
		total += (int)json_integer_value(v);
	qd_pass_log(ctx, QD_LOG_INFO, "%d nodes quantized (%s, weights %s, activations %s%s%s, %s)", total,
		    s.cfg.qdq ? "QDQ" : "QOperator", qd_qtype_name(s.cfg.wtype), qd_qtype_name(s.cfg.atype),
		    s.cfg.per_channel ? ", per-channel" : "", s.cfg.reduce_range ? ", reduce_range" : "",
		    s.cfg.calib_name ? s.cfg.calib_name : "MinMax");
	if (tgt && tgt->finish && (rc = tgt->finish(tgt->ud, ctx, m, err)) < 0)
		goto out;
	if ((rc = qd_pass_validate_output(m, err)) < 0)
		goto out;
	rc = 0;
out:
	json_decref(s.sq_ex);
	json_object_set_new(ctx->stats, "quantized_nodes", s.counts);
	json_object_set_new(ctx->stats, "skipped_nodes", s.skipped);
	json_object_set_new(ctx->stats, "quant_format", json_string(s.cfg.qdq ? "QDQ" : "QOperator"));
	json_object_set_new(ctx->stats, "weight_type", json_string(qd_qtype_name(s.cfg.wtype)));
	json_object_set_new(ctx->stats, "activation_type", json_string(qd_qtype_name(s.cfg.atype)));
	if (s.cfg.qnn)
		json_object_set_new(json_object_get(ctx->stats, "qnn_config"), "fixed_output_scales",
				    json_integer(s.qnn_fixed));
	if (s.converts)
		json_object_set_new(ctx->stats, "type_conversions", json_integer(s.converts));
	qd_index_free(s.ix);
	for (size_t i = 0; i < s.n_dead; i++)
		free(s.dead[i]);
	free(s.dead);
	qd_strmap_free(&s.amap);
	for (size_t i = 0; i < s.n_acts; i++)
		act_free(s.acts[i]);
	free(s.acts);
	free(s.selected);
	qd_calib_free(s.cal);
	json_decref(s.ov_fixed);
	return rc;
}
