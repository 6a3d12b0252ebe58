/* OnnxDynamicQuantization: weights quantized offline, activations at run time
 * (reference/ort_quantization.md §1), in ORT's QOperator pattern or as QDQ.
 *
 * DESIGN. What is quantized: MatMul (DynamicQuantizeLinear + MatMulInteger + Cast + Mul +
 * Mul, ORT's names), Gemm (converted to MatMul [+ Add] when alpha = beta = 1, transA = 0),
 * Gather on float initializer data (uint8 data + DequantizeLinear), LSTM
 * (com.microsoft DynamicQuantizeLSTM), com.microsoft Attention (QAttention), and Conv only
 * on request. QDQ format: weights stored quantized + DequantizeLinear, activations through
 * DynamicQuantizeLinear + DequantizeLinear in front of the float op.
 * Deliberate differences from ORT's quantize_dynamic, each logged when it applies:
 *  - Constant nodes become initializers first, so Paddle2ONNX weights are quantized.
 *  - Conv is not in the default op types: ORT's CPU ConvInteger exists only for uint8 x
 *    uint8, is slow (ORT issues #12558, #12854) and per-tensor only, which wrecks models
 *    like PP-OCRv4 det (measured cosine 0.03 vs 0.91 with QDQ per-channel). Listing Conv
 *    quantizes it: QOperator with uint8 weights (the only kernel ORT has), QDQ with the
 *    chosen type and per-channel axis 0.
 *  - Opset < 11 is never rewritten blindly: QOperator MatMul uses com.microsoft
 *    DynamicQuantizeMatMul (no ai.onnx opset needed); QDQ (and QOperator Conv) need
 *    DynamicQuantizeLinear (opset 11) and raise the opset through the shared upgrader
 *    (passes/opset.h) only when every op keeps its meaning: Clip-6, Slice-1, Pad-2, TopK-1
 *    attributes move to inputs, Upsample / Resize-10 become Resize-11 when exactly
 *    equivalent, ops that change meaning (OneHot, Scatter, ...) refuse the raise. ORT
 *    rewrites the import to 11, which silently turns Clip-6 into a no-op clip.
 *  - Per-axis DequantizeLinear below opset 13 uses com.microsoft DequantizeLinear.
 *  - A Gemm's B shared with other nodes is transposed into a new initializer, not in place.
 *  - Per-channel MatMul weights only for 2-D B (MatMulInteger's per-column zero points).
 *  - activation_symmetric is honoured (ORT ignores it in dynamic mode): an explicit
 *    Abs/ReduceMax/Div/Max + QuantizeLinear subgraph with uint8 zero point 127 replaces
 *    DynamicQuantizeLinear.
 * The per-op facts (which op types are quantized and which by default, the per-channel
 * axis of each weight, which emitter rewrites a node) are the dynamic columns of the shared
 * op-quantizer table, passes/op_rules.def; this file holds the emitters (rewrite_*, the
 * QOperator and QDQ graph patterns) and one switch from the table's form to them
 * (form_emitter).
 * Every output is checked with qd_pass_validate_output() before the pass returns. */
#include "passes/passes.h"
#include "passes/op_rules.h"
#include "passes/quant_math.h"
#include "passes/opset.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_DOMAIN "com.microsoft"

/* ---- small string set (names used anywhere in the model) ---- */

struct nameset { char **keys; size_t cap, len; };

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static bool ns_has(const struct nameset *s, const char *k)
{
	if (!s->cap)
		return false;
	for (size_t i = str_hash(k) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (!s->keys[i])
			return false;
		if (!strcmp(s->keys[i], k))
			return true;
	}
}

static int ns_add(struct nameset *s, const char *k)
{
	if (!k || !*k || ns_has(s, k))
		return 0;
	if ((s->len + 1) * 2 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 256;
		char **nk = calloc(nc, sizeof *nk);
		if (!nk)
			return -QD_ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->keys[i])
				continue;
			size_t j = str_hash(s->keys[i]) & (nc - 1);
			while (nk[j])
				j = (j + 1) & (nc - 1);
			nk[j] = s->keys[i];
		}
		free(s->keys);
		s->keys = nk;
		s->cap = nc;
	}
	char *d = strdup(k);
	if (!d)
		return -QD_ENOMEM;
	size_t j = str_hash(k) & (s->cap - 1);
	while (s->keys[j])
		j = (j + 1) & (s->cap - 1);
	s->keys[j] = d;
	s->len++;
	return 0;
}

static void ns_free(struct nameset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->keys[i]);
	free(s->keys);
	memset(s, 0, sizeof *s);
}

static int collect_names(Onnx__GraphProto *g, struct nameset *s)
{
	int rc = 0;
	for (size_t i = 0; i < g->n_input && !rc; i++) rc = ns_add(s, g->input[i]->name);
	for (size_t i = 0; i < g->n_output && !rc; i++) rc = ns_add(s, g->output[i]->name);
	for (size_t i = 0; i < g->n_value_info && !rc; i++) rc = ns_add(s, g->value_info[i]->name);
	for (size_t i = 0; i < g->n_initializer && !rc; i++) rc = ns_add(s, g->initializer[i]->name);
	for (size_t i = 0; i < g->n_node && !rc; i++) {
		Onnx__NodeProto *n = g->node[i];
		rc = ns_add(s, n->name);
		for (size_t k = 0; k < n->n_input && !rc; k++) rc = ns_add(s, n->input[k]);
		for (size_t k = 0; k < n->n_output && !rc; k++) rc = ns_add(s, n->output[k]);
		Onnx__GraphProto *subs[16];
		size_t ns = qd_node_subgraphs(n, subs, 16);
		for (size_t k = 0; k < ns && k < 16 && !rc; k++)
			rc = collect_names(subs[k], s);
	}
	return rc;
}

/* ---- configuration ---- */

struct dyn_cfg {
	enum qd_qtype wtype;
	bool per_channel, reduce_range, qdq, weight_sym, const_b_only, subgraphs;
	bool contrib_qdq;                      /* UseQDQContribOps */
	bool act_sym;                          /* activation_symmetric */
	const json_t *op_types;                /* array or NULL (defaults) */
	const json_t *nodes_in, *nodes_ex, *op_types_ex;
};

struct dyn {
	struct qd_pass_ctx *pc;
	struct qd_model *m;
	struct dyn_cfg cfg;
	struct nameset names;
	int64_t opset;
	bool ms_used;
	json_t *counts;     /* op type → number quantized */
	json_t *skipped;    /* [{node, op, reason}] */
	struct nameset gemm_from;   /* MatMul nodes converted from Gemm */
	struct qd_err *err;
	/* Graph indexes borrow name strings: anything replaced while an index lives is
	 * parked here and freed at the very end. */
	void **dead; size_t n_dead, cap_dead;
	int *dead_kind;     /* 0 string, 1 node, 2 tensor */
};

static int bury(struct dyn *d, void *p, int kind)
{
	if (!p)
		return 0;
	if (d->n_dead == d->cap_dead) {
		size_t nc = d->cap_dead ? d->cap_dead * 2 : 64;
		void **nd = realloc(d->dead, nc * sizeof *nd);
		if (nd)
			d->dead = nd;
		int *nk = realloc(d->dead_kind, nc * sizeof *nk);
		if (nk)
			d->dead_kind = nk;
		if (!nd || !nk)
			return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		d->cap_dead = nc;
	}
	d->dead[d->n_dead] = p;
	d->dead_kind[d->n_dead++] = kind;
	return 0;
}

static void bury_all(struct dyn *d)
{
	for (size_t i = 0; i < d->n_dead; i++) {
		if (d->dead_kind[i] == 1)
			qd_node_free(d->dead[i]);
		else if (d->dead_kind[i] == 2)
			qd_tensor_free(d->dead[i]);
		else
			free(d->dead[i]);
	}
	free(d->dead);
	free(d->dead_kind);
}

/* What we already emitted for a value in one graph. */
struct qval {
	char *src;                  /* float value / initializer name (key) */
	char *key;                  /* weight: cache key; activation: NULL */
	char *q, *scale, *zp, *dq;  /* dq: DequantizeLinear output (QDQ), may be NULL */
};

struct gstate {
	Onnx__GraphProto *g;
	struct qd_graph_index *ix;
	Onnx__NodeProto **out; size_t n_out, cap_out;
	struct qval *vals; size_t n_vals, cap_vals;
};

static void qval_free(struct qval *v)
{
	free(v->src); free(v->key); free(v->q); free(v->scale); free(v->zp); free(v->dq);
}

#define skip(d, n, ...) ({ qd_pass_skip((d)->pc, (d)->skipped, (n), QD_LOG_INFO, __VA_ARGS__); 0; })


/* A fresh model-wide name from base (base itself when free). new. */
static char *fresh(struct dyn *d, const char *base)
{
	char *name = strdup(base);
	for (unsigned k = 1; name && ns_has(&d->names, name); k++) {
		free(name);
		name = qd_asprintf("%s_%u", base, k);
	}
	if (name && ns_add(&d->names, name) < 0) {
		free(name);
		return NULL;
	}
	return name;
}

static char *freshf(struct dyn *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *freshf(struct dyn *d, const char *fmt, ...)
{
	char base[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(base, sizeof base, fmt, ap);
	va_end(ap);
	return fresh(d, base);
}

/* Emit a node of the input graph: on failure it stays owned by the graph. */
static int emit_orig(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n)
{
	if (gs->n_out == gs->cap_out) {
		size_t nc = gs->cap_out ? gs->cap_out * 2 : 64;
		Onnx__NodeProto **no = realloc(gs->out, nc * sizeof *no);
		if (!no)
			return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		gs->out = no;
		gs->cap_out = nc;
	}
	gs->out[gs->n_out++] = n;
	return 0;
}

/* Emit a new node (NULL means its allocation failed): on failure it is freed. */
static int emit(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n)
{
	if (!n)
		return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
	int rc = emit_orig(d, gs, n);
	if (rc < 0)
		qd_node_free(n);
	return rc;
}

static int add_init(struct dyn *d, struct gstate *gs, Onnx__TensorProto *t)
{
	if (!t || qd_graph_add_initializer(gs->g, t) < 0) {
		qd_tensor_free(t);
		return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
	}
	return 0;
}

static struct qval *find_val(struct gstate *gs, const char *src, const char *key)
{
	for (size_t i = 0; i < gs->n_vals; i++) {
		struct qval *v = &gs->vals[i];
		if (!strcmp(v->src, src) && ((!key && !v->key) || (key && v->key && !strcmp(key, v->key))))
			return v;
	}
	return NULL;
}

static struct qval *new_val(struct dyn *d, struct gstate *gs, const char *src, const char *key)
{
	if (gs->n_vals == gs->cap_vals) {
		size_t nc = gs->cap_vals ? gs->cap_vals * 2 : 32;
		struct qval *nv = realloc(gs->vals, nc * sizeof *nv);
		if (!nv) {
			qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
			return NULL;
		}
		gs->vals = nv;
		gs->cap_vals = nc;
	}
	struct qval *v = &gs->vals[gs->n_vals];
	memset(v, 0, sizeof *v);
	v->src = strdup(src);
	v->key = key ? strdup(key) : NULL;
	if (!v->src || (key && !v->key)) {
		qval_free(v);
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	gs->n_vals++;
	return v;
}

/* DequantizeLinear domain for this model: ai.onnx when the opset has it (per-axis needs
 * 13), else com.microsoft (declared at the end). */
static const char *dq_domain(struct dyn *d, bool per_axis)
{
	if (!d->cfg.contrib_qdq && d->opset >= (per_axis ? 13 : 10))
		return "";
	d->ms_used = true;
	return MS_DOMAIN;
}

/* ---- activations ---- */

static int add_scalar_init(struct dyn *d, struct gstate *gs, const char *name, int dtype, const void *v, size_t sz)
{
	return add_init(d, gs, qd_tensor_new(name, dtype, NULL, 0, v, sz));
}

/* activation_symmetric: uint8 with the symmetric range 0..254 and zero point 127 (§3):
 * scale = max(ReduceMax(Abs(A)) / 127, FLT_MIN); QuantizeLinear(A, scale, 127). */
static int emit_symmetric_quant(struct dyn *d, struct gstate *gs, const char *a, const char *qnode,
				struct qval *v)
{
	char *an = freshf(d, "%s_Abs", a), *ao = freshf(d, "%s_Abs:0", a);
	char *rn = freshf(d, "%s_ReduceMax", a), *ro = freshf(d, "%s_ReduceMax:0", a);
	char *dn = freshf(d, "%s_scale_Div", a), *dout = freshf(d, "%s_scale_Div:0", a);
	char *mn = freshf(d, "%s_scale_Max", a);
	char *cr = freshf(d, "%s_fixed_quantization_range_uint8", a), *ct = freshf(d, "%s_fixed_min_scale", a);
	int rc = -1;
	if (!an || !ao || !rn || !ro || !dn || !dout || !mn || !cr || !ct) {
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	const float range = 127.0f, tiny = FLT_MIN;
	const uint8_t zp = 127;
	if (add_scalar_init(d, gs, cr, QD_DT_FLOAT, &range, sizeof range) < 0 ||
	    add_scalar_init(d, gs, ct, QD_DT_FLOAT, &tiny, sizeof tiny) < 0 ||
	    add_scalar_init(d, gs, v->zp, QD_DT_UINT8, &zp, 1) < 0)
		goto out;
	const char *i1[1] = {a}, *o1[1] = {ao};
	const char *i2[1] = {ao}, *o2[1] = {ro};
	const char *i3[2] = {ro, cr}, *o3[1] = {dout};
	const char *i4[2] = {dout, ct}, *o4[1] = {v->scale};
	const char *i5[3] = {a, v->scale, v->zp}, *o5[1] = {v->q};
	Onnx__NodeProto *red = qd_node_new("ReduceMax", NULL, rn, i2, 1, o2, 1);
	if (red && qd_node_set_attr_int(red, "keepdims", 0) < 0) {
		qd_node_free(red);
		red = NULL;
	}
	if (emit(d, gs, qd_node_new("Abs", NULL, an, i1, 1, o1, 1)) < 0 || emit(d, gs, red) < 0 ||
	    emit(d, gs, qd_node_new("Div", NULL, dn, i3, 2, o3, 1)) < 0 ||
	    emit(d, gs, qd_node_new("Max", NULL, mn, i4, 2, o4, 1)) < 0 ||
	    emit(d, gs, qd_node_new("QuantizeLinear", NULL, qnode, i5, 3, o5, 1)) < 0)
		goto out;
	rc = 0;
out:
	free(an); free(ao); free(rn); free(ro); free(dn); free(dout); free(mn); free(cr); free(ct);
	return rc;
}

/* DynamicQuantizeLinear(A) → A_quantized, A_scale, A_zero_point (once per graph); with
 * activation_symmetric the explicit symmetric subgraph instead. */
static struct qval *quant_activation(struct dyn *d, struct gstate *gs, const char *a)
{
	struct qval *v = find_val(gs, a, NULL);
	if (v)
		return v;
	if (!(v = new_val(d, gs, a, NULL)))
		return NULL;
	char *node = freshf(d, "%s_QuantizeLinear", a);
	v->q = freshf(d, "%s_quantized", a);
	v->scale = freshf(d, "%s_scale", a);
	v->zp = freshf(d, "%s_zero_point", a);
	if (!node || !v->q || !v->scale || !v->zp) {
		free(node);
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	int rc;
	if (d->cfg.act_sym)
		rc = emit_symmetric_quant(d, gs, a, node, v);
	else {
		const char *in[1] = {a};
		const char *out[3] = {v->q, v->scale, v->zp};
		rc = emit(d, gs, qd_node_new("DynamicQuantizeLinear", NULL, node, in, 1, out, 3));
	}
	free(node);
	return rc < 0 ? NULL : v;
}

/* QDQ: ... then DequantizeLinear → A_DequantizeLinear_Output. */
static const char *dq_activation(struct dyn *d, struct gstate *gs, const char *a)
{
	struct qval *v = quant_activation(d, gs, a);
	if (!v)
		return NULL;
	if (v->dq)
		return v->dq;
	char *node = freshf(d, "%s_DequantizeLinear", a);
	char *out = freshf(d, "%s_DequantizeLinear_Output", a);
	if (!node || !out) {
		free(node); free(out);
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	const char *in[3] = {v->q, v->scale, v->zp};
	const char *o[1] = {out};
	int rc = emit(d, gs, qd_node_new("DequantizeLinear", dq_domain(d, false), node, in, 3, o, 1));
	free(node);
	if (rc < 0) {
		free(out);
		return NULL;
	}
	v->dq = out;
	return out;
}

/* ---- weights ---- */

/* Quantize initializer w (float) with qtype, per-channel along axis (or per-tensor when
 * axis < 0): W_quantized, W_scale, W_zero_point added to this graph's initializers. */
static struct qval *quant_weight(struct dyn *d, struct gstate *gs, const Onnx__TensorProto *w,
				 enum qd_qtype qt, int axis, bool sym, bool rr)
{
	char key[96];
	snprintf(key, sizeof key, "%s/%d/%d/%d", qd_qtype_name(qt), axis, sym, rr);
	struct qval *v = find_val(gs, w->name, key);
	if (v)
		return v;
	float *data = NULL;
	int64_t n = 0;
	void *codes = NULL;
	float *scales = NULL;
	int32_t *zps = NULL;
	void *zp_codes = NULL;
	int rc = qd_tensor_to_float(w, &data, &n, d->err);
	if (rc < 0)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(data[i])) {
			qd_err_set(d->err, QD_EMODEL, w->name, "weight '%s' holds NaN or Inf", w->name);
			goto fail;
		}
	size_t nch = axis >= 0 ? (size_t)w->dims[axis] : 1;
	size_t cs = qd_qtype_code_size(qt);
	codes = malloc((size_t)n * cs + 1);
	scales = malloc(nch * sizeof *scales);
	zps = malloc(nch * sizeof *zps);
	zp_codes = malloc(nch * cs);
	if (!codes || !scales || !zps || !zp_codes) {
		qd_err_set(d->err, QD_ENOMEM, w->name, "out of memory");
		goto fail;
	}
	if (axis >= 0) {
		if (qd_quant_weight_channel(data, w->dims, (int)w->n_dims, axis, qt, sym, rr, scales, zps,
					    codes) < 0) {
			qd_err_set(d->err, QD_EINTERNAL, w->name, "cannot quantize weight '%s' per channel",
				   w->name);
			goto fail;
		}
	} else {
		qd_quant_weight_tensor(data, (size_t)n, qt, sym, rr, scales, zps, codes);
	}
	for (size_t c = 0; c < nch; c++) {
		if (!isfinite(scales[c]) || scales[c] <= 0) {
			qd_err_set(d->err, QD_EINTERNAL, w->name, "weight '%s' got a bad scale", w->name);
			goto fail;
		}
		if (cs == 1)
			((uint8_t *)zp_codes)[c] = (uint8_t)zps[c];
		else
			((uint16_t *)zp_codes)[c] = (uint16_t)zps[c];
	}
	if (!(v = new_val(d, gs, w->name, key)))
		goto fail;
	v->q = freshf(d, "%s_quantized", w->name);
	v->scale = freshf(d, "%s_scale", w->name);
	v->zp = freshf(d, "%s_zero_point", w->name);
	if (!v->q || !v->scale || !v->zp) {
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		goto fail;
	}
	int64_t cd[1] = {(int64_t)nch};
	if (add_init(d, gs, qd_tensor_new(v->q, qd_qtype_dtype(qt), w->dims, w->n_dims, codes,
					  (size_t)n * cs)) < 0 ||
	    add_init(d, gs, qd_tensor_new(v->scale, QD_DT_FLOAT, cd, axis >= 0, scales,
					  nch * sizeof(float))) < 0 ||
	    add_init(d, gs, qd_tensor_new(v->zp, qd_qtype_dtype(qt), cd, axis >= 0, zp_codes, nch * cs)) < 0)
		goto fail;
	free(data); free(codes); free(scales); free(zps); free(zp_codes);
	return v;
fail:
	free(data); free(codes); free(scales); free(zps); free(zp_codes);
	return NULL;
}

/* QDQ weight: DequantizeLinear(W_quantized, W_scale, W_zero_point[, axis]). */
static const char *dq_weight(struct dyn *d, struct gstate *gs, struct qval *v, const char *wname, int axis)
{
	if (v->dq)
		return v->dq;
	char *node = freshf(d, "%s_DequantizeLinear", wname);
	char *out = freshf(d, "%s_DequantizeLinear_Output", wname);
	if (!node || !out) {
		free(node); free(out);
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	const char *in[3] = {v->q, v->scale, v->zp};
	const char *o[1] = {out};
	Onnx__NodeProto *n = qd_node_new("DequantizeLinear", dq_domain(d, axis >= 0), node, in, 3, o, 1);
	free(node);
	if (n && axis >= 0 && qd_node_set_attr_int(n, "axis", axis) < 0) {
		qd_node_free(n);
		n = NULL;
	}
	if (emit(d, gs, n) < 0) {
		free(out);
		return NULL;
	}
	v->dq = out;
	return out;
}

/* ---- selection ---- */


/* Op type of row r selected: by op_types_to_quantize / _exclude when given, else by the
 * row's QD_OPF_DYN_DEFAULT (ORT's IntegerOps defaults minus Conv, see DESIGN, Transpose
 * and EmbedLayerNormalization). */
static bool type_selected(struct dyn *d, const struct qd_op_rule *r)
{
	if (d->cfg.op_types)
		return qd_json_list_has(d->cfg.op_types, r->op);
	if (d->cfg.op_types_ex && qd_json_list_has(d->cfg.op_types_ex, r->op))
		return false;
	return r->flags & QD_OPF_DYN_DEFAULT;
}

/* Node n (of row r) allowed by op type and name lists. For MatMul converted from Gemm both
 * the original Gemm name/row (alt_name, alt) and the new ones count. */
static bool node_selected(struct dyn *d, const Onnx__NodeProto *n, const struct qd_op_rule *r,
			  const char *alt_name, const struct qd_op_rule *alt)
{
	bool typ = type_selected(d, r) || (alt && type_selected(d, alt));
	if (!typ)
		return false;
	if (d->cfg.nodes_in && !qd_json_list_has(d->cfg.nodes_in, n->name) && !qd_json_list_has(d->cfg.nodes_in, alt_name))
		return false;
	if (d->cfg.nodes_ex && (qd_json_list_has(d->cfg.nodes_ex, n->name) || qd_json_list_has(d->cfg.nodes_ex, alt_name)))
		return false;
	return true;
}

/* Float-ness of a value when known: value_info / input type, initializer dtype. */
static bool maybe_float(struct gstate *gs, const char *name)
{
	Onnx__TensorProto *t = qd_index_initializer(gs->ix, name);
	if (t)
		return t->data_type == QD_DT_FLOAT;
	Onnx__ValueInfoProto *vi = qd_index_value_info(gs->ix, name);
	if (vi && vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
	    vi->type->tensor_type && vi->type->tensor_type->has_elem_type)
		return vi->type->tensor_type->elem_type == QD_DT_FLOAT;
	return true;
}

/* ---- Gemm → MatMul (+Add) ---- */

static int convert_gemms(struct dyn *d, Onnx__GraphProto *g, const struct qd_graph_index *parent)
{
	struct qd_graph_index *ix = NULL;
	int rc = qd_index_build(g, parent, &ix, d->err);
	if (rc < 0)
		return rc;
	size_t n0 = g->n_node;
	Onnx__NodeProto **out = calloc(2 * n0 + 1, sizeof *out);
	bool *conv = calloc(n0 + 1, sizeof *conv);
	size_t no = 0;
	if (!out || !conv) {
		rc = qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	const struct qd_op_rule *mm_rule = qd_op_rule_find_domain("", "MatMul");
	for (size_t i = 0; i < n0; i++) {
		Onnx__NodeProto *n = g->node[i];
		out[no++] = n;
		const struct qd_op_rule *r = qd_op_rule_find_domain(qd_node_domain(n), n->op_type);
		if (!r || r->dyn != QD_DYN_GEMM || n->n_input < 2 || n->n_output != 1)
			continue;
		char mm_name[512];
		snprintf(mm_name, sizeof mm_name, "%s_MatMul", n->name ? n->name : n->output[0]);
		if (!node_selected(d, n, r, mm_name, mm_rule))
			continue;
		if (qd_node_attr_float(n, "alpha", 1.0f) != 1.0f ||
		    (n->n_input > 2 && *n->input[2] && qd_node_attr_float(n, "beta", 1.0f) != 1.0f) ||
		    qd_node_attr_int(n, "transA", 0) != 0) {
			skip(d, n, "Gemm with alpha != 1, beta != 1 or transA is not converted to MatMul");
			continue;
		}
		Onnx__TensorProto *b = qd_index_initializer(ix, n->input[1]);
		if (!b && d->cfg.const_b_only) {
			skip(d, n, "B is not a constant (MatMulConstBOnly)");
			continue;
		}
		if (b && (b->data_type != QD_DT_FLOAT || b->n_dims != 2)) {
			skip(d, n, "B is not a 2-D float initializer");
			continue;
		}
		bool trans_b = qd_node_attr_int(n, "transB", 0) != 0;
		const char *base = n->name && *n->name ? n->name : n->output[0];
		char *bname = NULL;
		if (trans_b && b) {
			Onnx__NodeProto *const *cons;
			size_t nc = qd_index_consumers(ix, b->name, &cons);
			float *v = NULL; int64_t cnt = 0;
			if ((rc = qd_tensor_to_float(b, &v, &cnt, d->err)) < 0)
				goto out;
			int64_t r = b->dims[0], c = b->dims[1];
			float *t = malloc((size_t)cnt * sizeof *t + 1);
			if (!t) {
				free(v);
				rc = qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
				goto out;
			}
			for (int64_t y = 0; y < r; y++)
				for (int64_t x = 0; x < c; x++)
					t[x * r + y] = v[y * c + x];
			free(v);
			int64_t dims[2] = {c, r};
			bool shared = nc > 1 || qd_index_is_graph_output(ix, b->name) ||
				      !qd_index_initializer(ix, b->name) ||
				      qd_index_initializer(ix, b->name) != b;
			bool local = false;
			for (size_t k = 0; k < g->n_initializer; k++)
				local = local || g->initializer[k] == b;
			if (!shared && local) {
				/* only user, in this graph: transpose in place, keep the name */
				Onnx__TensorProto *nt = qd_tensor_new(b->name, QD_DT_FLOAT, dims, 2, t,
								      (size_t)cnt * sizeof(float));
				free(t);
				if (!nt) {
					rc = qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
					goto out;
				}
				for (size_t k = 0; k < g->n_initializer; k++)
					if (g->initializer[k] == b)
						g->initializer[k] = nt;
				if ((rc = bury(d, b, 2)) < 0)
					goto out;
				bname = strdup(nt->name);
			} else {
				bname = freshf(d, "%s_transposed", b->name);
				Onnx__TensorProto *nt = bname ? qd_tensor_new(bname, QD_DT_FLOAT, dims, 2, t,
									      (size_t)cnt * sizeof(float)) : NULL;
				free(t);
				if (!nt || qd_graph_add_initializer(g, nt) < 0) {
					qd_tensor_free(nt);
					free(bname);
					rc = qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
					goto out;
				}
			}
		} else if (trans_b) {
			bname = freshf(d, "%s_Transposed", n->input[1]);
			char *tn = freshf(d, "%s_Transpose", base);
			const char *in[1] = {n->input[1]};
			const char *o[1] = {bname};
			Onnx__NodeProto *tp = tn && bname ? qd_node_new("Transpose", NULL, tn, in, 1, o, 1) : NULL;
			free(tn);
			if (!tp) {
				free(bname);
				rc = qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
				goto out;
			}
			out[no - 1] = tp;
			out[no++] = n;
		} else {
			bname = strdup(n->input[1]);
		}
		bool has_c = n->n_input > 2 && *n->input[2];
		char *mname = fresh(d, mm_name);
		char *y = has_c ? freshf(d, "%s_MatMul", n->output[0]) : strdup(n->output[0]);
		const char *min[2] = {n->input[0], bname};
		const char *mo[1] = {y};
		Onnx__NodeProto *mm = mname && y && bname ? qd_node_new("MatMul", NULL, mname, min, 2, mo, 1) : NULL;
		Onnx__NodeProto *add = NULL;
		if (mm && has_c) {
			char *an = freshf(d, "%s_Add", base);
			const char *ain[2] = {y, n->input[2]};
			const char *ao[1] = {n->output[0]};
			add = an ? qd_node_new("Add", NULL, an, ain, 2, ao, 1) : NULL;
			free(an);
		}
		if (mm)
			ns_add(&d->gemm_from, mname);
		free(mname); free(y); free(bname);
		if (!mm || (has_c && !add)) {
			qd_node_free(mm);
			rc = qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
			goto out;
		}
		/* replace the Gemm (last slot) by MatMul [+ Add] */
		out[no - 1] = mm;
		if (add)
			out[no++] = add;
		conv[i] = true;
		g->node[i] = NULL;
		if ((rc = bury(d, n, 1)) < 0)
			goto out;
	}
	free(g->node);
	g->node = out;
	g->n_node = no;
	out = NULL;
out:
	if (out) {
		/* failure mid-way: put back what the graph still owns */
		size_t k = 0;
		for (size_t i = 0; i < n0; i++)
			if (g->node[i])
				g->node[k++] = g->node[i];
		g->n_node = k;
		free(out);
	}
	free(conv);
	qd_index_free(ix);
	return rc;
}

/* ---- per-op rewrites (the emitters of the table's dynamic forms); each takes the node
 * and the row it answers to, and returns 1 if it replaced the node, 2 if it emitted it
 * itself, 0 to keep it, < 0 on error ---- */


/* r: the MatMul row, or the Gemm row for a MatMul converted from a Gemm (counted as Gemm,
 * its axis from the Gemm row). */
static int rewrite_matmul(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	const char *op = r->op;
	if (n->n_input != 2 || n->n_output != 1)
		return 0;
	const char *a = n->input[0], *b = n->input[1], *y = n->output[0];
	Onnx__TensorProto *bw = qd_index_initializer(gs->ix, b);
	if (!bw && d->cfg.const_b_only)
		return skip(d, n, "B is not a constant (MatMulConstBOnly)");
	if (!maybe_float(gs, a) || !maybe_float(gs, b))
		return skip(d, n, "inputs are not float32");
	if (bw && bw->n_dims < 1)
		return skip(d, n, "B is a scalar");
	int axis = -1;
	if (bw && d->cfg.per_channel && r->dyn_axis >= 0) {
		if (bw->n_dims == 2)
			axis = r->dyn_axis;
		else
			qd_pass_log(d->pc, QD_LOG_INFO, "node '%s': B has rank %zu, per-tensor weights "
				    "(per-channel needs a 2-D B)", qd_node_label(n), bw->n_dims);
	}
	const bool contrib_mm = !d->cfg.qdq && d->opset < 11;
	if (contrib_mm && !bw)
		return skip(d, n, "opset %lld < 11 has no DynamicQuantizeLinear and B is not constant",
			    (long long)d->opset);
	struct qval *wq = NULL;
	if (bw && !(wq = quant_weight(d, gs, bw, d->cfg.wtype, axis, d->cfg.weight_sym, d->cfg.reduce_range)))
		return -1;
	if (d->cfg.qdq) {
		const char *adq = dq_activation(d, gs, a);
		const char *bdq = bw ? dq_weight(d, gs, wq, b, axis) : dq_activation(d, gs, b);
		if (!adq || !bdq)
			return -1;
		char *na = strdup(adq), *nb = strdup(bdq);
		if (!na || !nb) {
			free(na); free(nb);
			return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		}
		bury(d, n->input[0], 0);
		bury(d, n->input[1], 0);
		n->input[0] = na;
		n->input[1] = nb;
		qd_pass_count(d->counts, op);
		return 0;   /* keep the (rewired) node */
	}
	const char *base = qd_node_label(n);
	if (contrib_mm) {
		/* opset < 11: one com.microsoft node, no opset rewrite needed */
		char *nn = freshf(d, "%s_quant", base);
		const char *in[4] = {a, wq->q, wq->scale, wq->zp};
		const char *o[1] = {y};
		Onnx__NodeProto *q = nn ? qd_node_new("DynamicQuantizeMatMul", MS_DOMAIN, nn, in, 4, o, 1) : NULL;
		free(nn);
		if (emit(d, gs, q) < 0)
			return -1;
		d->ms_used = true;
		qd_pass_count(d->counts, op);
		return 1;
	}
	struct qval *aq = quant_activation(d, gs, a);
	if (!aq)
		return -1;
	struct qval *bq = wq;
	if (!bw && !(bq = quant_activation(d, gs, b)))
		return -1;
	char *mi = freshf(d, "%s_quant", base);
	char *mo = freshf(d, "%s_output_quantized", y);
	char *cn = freshf(d, "%s_output_quantized_cast", y);
	char *co = freshf(d, "%s_output_quantized_cast_output", y);
	char *sn = freshf(d, "%s_quant_scales_mul", base);
	char *so = freshf(d, "%s_quant_scales_mul:0", base);
	char *on = freshf(d, "%s_quant_output_scale_mul", base);
	int rc = -1;
	if (mi && mo && cn && co && sn && so && on) {
		const char *i1[4] = {aq->q, bq->q, aq->zp, bq->zp};
		const char *o1[1] = {mo};
		const char *i2[1] = {mo};
		const char *o2[1] = {co};
		const char *i3[2] = {aq->scale, bq->scale};
		const char *o3[1] = {so};
		const char *i4[2] = {co, so};
		const char *o4[1] = {y};
		Onnx__NodeProto *cast = qd_node_new("Cast", NULL, cn, i2, 1, o2, 1);
		if (cast && qd_node_set_attr_int(cast, "to", QD_DT_FLOAT) < 0) {
			qd_node_free(cast);
			cast = NULL;
		}
		if (emit(d, gs, qd_node_new("MatMulInteger", NULL, mi, i1, 4, o1, 1)) == 0 &&
		    emit(d, gs, cast) == 0 &&
		    emit(d, gs, qd_node_new("Mul", NULL, sn, i3, 2, o3, 1)) == 0 &&
		    emit(d, gs, qd_node_new("Mul", NULL, on, i4, 2, o4, 1)) == 0)
			rc = 1;
	} else {
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
	}
	free(mi); free(mo); free(cn); free(co); free(sn); free(so); free(on);
	if (rc == 1)
		qd_pass_count(d->counts, op);
	return rc;
}

static int rewrite_conv(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	if (n->n_input < 2 || n->n_output != 1)
		return 0;
	const char *x = n->input[0], *y = n->output[0];
	Onnx__TensorProto *w = qd_index_initializer(gs->ix, n->input[1]);
	if (!w || w->data_type != QD_DT_FLOAT || w->n_dims < 3)
		return skip(d, n, "weight is not a float initializer");
	const char *bias = n->n_input > 2 && *n->input[2] ? n->input[2] : NULL;
	if (d->opset < 11)
		return skip(d, n, "opset %lld < 11: no DynamicQuantizeLinear for the input", (long long)d->opset);
	if (d->cfg.qdq) {
		int axis = d->cfg.per_channel ? r->dyn_axis : -1;
		struct qval *wq = quant_weight(d, gs, w, d->cfg.wtype, axis, d->cfg.weight_sym, d->cfg.reduce_range);
		if (!wq)
			return -1;
		const char *xdq = dq_activation(d, gs, x);
		const char *wdq = xdq ? dq_weight(d, gs, wq, w->name, axis) : NULL;
		if (!wdq)
			return -1;
		char *nx = strdup(xdq), *nw = strdup(wdq);
		if (!nx || !nw) {
			free(nx); free(nw);
			return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		}
		bury(d, n->input[0], 0);
		bury(d, n->input[1], 0);
		n->input[0] = nx;
		n->input[1] = nw;
		qd_pass_count(d->counts, r->op);
		return 0;
	}
	/* ORT's CPU ConvInteger only exists for uint8 x uint8: uint8 weights, per-tensor. */
	if (d->cfg.wtype != QD_QT_UINT8)
		qd_pass_log(d->pc, QD_LOG_INFO, "node '%s': Conv weights quantized as uint8 "
			    "(ONNX Runtime's CPU ConvInteger has no int8-weight kernel)", qd_node_label(n));
	if (d->cfg.per_channel)
		qd_pass_log(d->pc, QD_LOG_INFO, "node '%s': ConvInteger takes per-tensor weights only",
			    qd_node_label(n));
	struct qval *wq = quant_weight(d, gs, w, QD_QT_UINT8, -1, false, d->cfg.reduce_range);
	struct qval *xq = wq ? quant_activation(d, gs, x) : NULL;
	if (!xq)
		return -1;
	const char *base = qd_node_label(n);
	char *ci = freshf(d, "%s_quant", base);
	char *co = freshf(d, "%s_output_quantized", y);
	char *cn = freshf(d, "%s_output_quantized_cast", y);
	char *cco = freshf(d, "%s_output_quantized_cast_output", y);
	char *sn = freshf(d, "%s_quant_scales_mul", base);
	char *so = freshf(d, "%s_quant_scales_mul:0", base);
	char *on = freshf(d, "%s_quant_output_scale_mul", base);
	char *mo = bias ? freshf(d, "%squant_scaled_output", y) : strdup(y);
	char *rs = bias ? freshf(d, "%s_bias_reshape_shape", y) : NULL;
	char *rn = bias ? freshf(d, "%s_bias_reshape", y) : NULL;
	char *ro = bias ? freshf(d, "%s_bias_reshape_output", y) : NULL;
	char *an = bias ? freshf(d, "%s_bias_add", y) : NULL;
	int rc = -1;
	if (!ci || !co || !cn || !cco || !sn || !so || !on || !mo || (bias && (!rs || !rn || !ro || !an))) {
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	const char *i1[4] = {xq->q, wq->q, xq->zp, wq->zp};
	const char *o1[1] = {co};
	Onnx__NodeProto *ci_node = qd_node_new("ConvInteger", NULL, ci, i1, 4, o1, 1);
	for (size_t k = 0; ci_node && k < n->n_attribute; k++)
		if (qd_node_copy_attr(ci_node, n->attribute[k]) < 0) {
			qd_node_free(ci_node);
			ci_node = NULL;
		}
	const char *i2[1] = {co};
	const char *o2[1] = {cco};
	Onnx__NodeProto *cast = qd_node_new("Cast", NULL, cn, i2, 1, o2, 1);
	if (cast && qd_node_set_attr_int(cast, "to", QD_DT_FLOAT) < 0) {
		qd_node_free(cast);
		cast = NULL;
	}
	const char *i3[2] = {xq->scale, wq->scale};
	const char *o3[1] = {so};
	const char *i4[2] = {cco, so};
	const char *o4[1] = {mo};
	if (emit(d, gs, ci_node) < 0 || emit(d, gs, cast) < 0 ||
	    emit(d, gs, qd_node_new("Mul", NULL, sn, i3, 2, o3, 1)) < 0 ||
	    emit(d, gs, qd_node_new("Mul", NULL, on, i4, 2, o4, 1)) < 0)
		goto out;
	if (bias) {
		int64_t shape[16];
		size_t rank = w->n_dims < 16 ? w->n_dims : 16;
		for (size_t k = 0; k < rank; k++)
			shape[k] = k == 1 ? -1 : 1;
		int64_t sd[1] = {(int64_t)rank};
		if (add_init(d, gs, qd_tensor_new(rs, QD_DT_INT64, sd, 1, shape, rank * sizeof(int64_t))) < 0)
			goto out;
		const char *i5[2] = {bias, rs};
		const char *o5[1] = {ro};
		const char *i6[2] = {mo, ro};
		const char *o6[1] = {y};
		if (emit(d, gs, qd_node_new("Reshape", NULL, rn, i5, 2, o5, 1)) < 0 ||
		    emit(d, gs, qd_node_new("Add", NULL, an, i6, 2, o6, 1)) < 0)
			goto out;
	}
	qd_pass_count(d->counts, r->op);
	rc = 1;
out:
	free(ci); free(co); free(cn); free(cco); free(sn); free(so); free(on); free(mo);
	free(rs); free(rn); free(ro); free(an);
	return rc;
}

static int rewrite_gather(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	if (n->n_input != 2 || n->n_output != 1)
		return 0;
	Onnx__TensorProto *data = qd_index_initializer(gs->ix, n->input[0]);
	if (!data || data->data_type != QD_DT_FLOAT)
		return skip(d, n, "data is not a float initializer");
	/* quantized like an activation: uint8, asymmetric, per tensor (ORT; the row's dyn_axis
	 * is -1: the DequantizeLinear after the Gather takes one scale) */
	struct qval *wq = quant_weight(d, gs, data, QD_QT_UINT8, -1, false, false);
	if (!wq)
		return -1;
	const char *y = n->output[0];
	char *yq = freshf(d, "%s_quantized", y);
	char *dn = freshf(d, "%s_DequantizeLinear", y);
	char *nd = strdup(wq->q);
	if (!yq || !dn || !nd) {
		free(yq); free(dn); free(nd);
		return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
	}
	const char *in[3] = {yq, wq->scale, wq->zp};
	const char *o[1] = {y};
	Onnx__NodeProto *dq = qd_node_new("DequantizeLinear", dq_domain(d, false), dn, in, 3, o, 1);
	free(dn);
	if (!dq) {
		free(yq); free(nd);
		return qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
	}
	bury(d, n->input[0], 0);
	n->input[0] = nd;
	bury(d, n->output[0], 0);
	n->output[0] = yq;
	if (emit_orig(d, gs, n) < 0) {
		qd_node_free(dq);
		return -1;
	}
	if (emit(d, gs, dq) < 0)
		return -1;
	qd_pass_count(d->counts, r->op);
	return 2;   /* node already emitted */
}

/* LSTM weight W [D, 4H, X] → int8 symmetric codes transposed to [D, X, 4H]; scales and zero
 * points [D, 4H] (pc: one range per gate row, axis 1 of each direction) or [D] (one range
 * per direction). Adds three initializers. */
static int quant_lstm_weight(struct dyn *d, struct gstate *gs, const Onnx__TensorProto *w, bool pc,
			     char **qn, char **sn, char **zn)
{
	int64_t D = w->dims[0], G = w->dims[1], X = w->dims[2];
	float *data = NULL;
	int64_t n = 0;
	int rc = qd_tensor_to_float(w, &data, &n, d->err);
	if (rc < 0)
		return rc;
	if (n != D * G * X) {
		free(data);
		return qd_err_set(d->err, QD_EMODEL, w->name, "LSTM weight '%s' has a bad size", w->name);
	}
	size_t nch = (size_t)(pc ? D * G : D);
	int64_t dims2[2] = {pc ? D * G : D, pc ? X : G * X};
	int8_t *codes = malloc((size_t)n + 1), *tr = malloc((size_t)n + 1);
	float *scales = malloc(nch * sizeof *scales);
	int32_t *zps = malloc(nch * sizeof *zps);
	int8_t *zp8 = calloc(nch, 1);
	rc = -1;
	if (!codes || !tr || !scales || !zps || !zp8) {
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (qd_quant_weight_channel(data, dims2, 2, 0, QD_QT_INT8, true, d->cfg.reduce_range, scales, zps,
				    codes) < 0) {
		qd_err_set(d->err, QD_EINTERNAL, w->name, "cannot quantize LSTM weight '%s'", w->name);
		goto out;
	}
	for (int64_t k = 0; k < D; k++)
		for (int64_t g = 0; g < G; g++)
			for (int64_t x = 0; x < X; x++)
				tr[(k * X + x) * G + g] = codes[(k * G + g) * X + x];
	*qn = freshf(d, "%s_quantized", w->name);
	*sn = freshf(d, "%s_scale", w->name);
	*zn = freshf(d, "%s_zero_point", w->name);
	int64_t qd3[3] = {D, X, G}, sd[2] = {D, G};
	if (!*qn || !*sn || !*zn) {
		qd_err_set(d->err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (add_init(d, gs, qd_tensor_new(*qn, QD_DT_INT8, qd3, 3, tr, (size_t)n)) < 0 ||
	    add_init(d, gs, qd_tensor_new(*sn, QD_DT_FLOAT, sd, pc ? 2 : 1, scales, nch * sizeof(float))) < 0 ||
	    add_init(d, gs, qd_tensor_new(*zn, QD_DT_INT8, sd, pc ? 2 : 1, zp8, nch)) < 0)
		goto out;
	rc = 0;
out:
	free(data); free(codes); free(tr); free(scales); free(zps); free(zp8);
	return rc;
}

/* LSTM → com.microsoft DynamicQuantizeLSTM (QOperator only: the contrib op has no QDQ form). */
static int rewrite_lstm(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	if (d->cfg.qdq)
		return skip(d, n, "LSTM has no QDQ form (DynamicQuantizeLSTM is a QOperator op)");
	if (n->n_input < 3)
		return 0;
	Onnx__TensorProto *w = qd_index_initializer(gs->ix, n->input[1]);
	Onnx__TensorProto *rw = qd_index_initializer(gs->ix, n->input[2]);
	if (!w || !rw || w->data_type != QD_DT_FLOAT || rw->data_type != QD_DT_FLOAT || w->n_dims != 3 ||
	    rw->n_dims != 3 || w->dims[0] != rw->dims[0] || w->dims[1] != rw->dims[1])
		return skip(d, n, "W and R are not 3-D float initializers");
	if (qd_node_attr_int(n, "layout", 0) != 0)
		return skip(d, n, "layout=1 is not supported by DynamicQuantizeLSTM");
	char *wq = NULL, *ws = NULL, *wz = NULL, *rq = NULL, *rs = NULL, *rz = NULL;
	char *name = NULL;
	int rc = -1;
	/* DynamicQuantizeLSTM's per-channel layout is fixed: one range per gate row (the row's
	 * dyn_axis 1); -1 in the row would mean one range per direction */
	const bool pc = d->cfg.per_channel && r->dyn_axis >= 0;
	if (quant_lstm_weight(d, gs, w, pc, &wq, &ws, &wz) < 0 ||
	    quant_lstm_weight(d, gs, rw, pc, &rq, &rs, &rz) < 0)
		goto out;
	const char *in[12];
	for (int k = 0; k < 8; k++)
		in[k] = (size_t)k < n->n_input ? n->input[k] : "";
	in[1] = wq; in[2] = rq;
	in[8] = ws; in[9] = wz; in[10] = rs; in[11] = rz;
	name = freshf(d, "%s_quant", qd_node_label(n));
	Onnx__NodeProto *q = name ? qd_node_new("DynamicQuantizeLSTM", MS_DOMAIN, name, in, 12,
						(const char *const *)n->output, n->n_output) : NULL;
	for (size_t k = 0; q && k < n->n_attribute; k++)
		if (strcmp(n->attribute[k]->name, "layout") && qd_node_copy_attr(q, n->attribute[k]) < 0) {
			qd_node_free(q);
			q = NULL;
		}
	if (emit(d, gs, q) < 0)
		goto out;
	d->ms_used = true;
	qd_pass_count(d->counts, r->op);
	rc = 1;
out:
	free(wq); free(ws); free(wz); free(rq); free(rs); free(rz); free(name);
	return rc;
}

/* com.microsoft Attention → QAttention (QOperator); QDQ: weights through DequantizeLinear. */
static int rewrite_attention(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	static const char *const qattn_attrs[] = {"num_heads", "unidirectional", "do_rotary",
		"past_present_share_buffer", "mask_filter_value", "scale"};
	if (n->n_input < 3 || !*n->input[2])
		return skip(d, n, "Attention without bias");
	for (size_t k = 5; k < n->n_input; k++)
		if (*n->input[k])
			return skip(d, n, "input %zu (relative position bias / past sequence length) has no "
				    "QAttention equivalent", k);
	if (qd_node_attr(n, "qkv_hidden_sizes"))
		return skip(d, n, "qkv_hidden_sizes is not supported by QAttention");
	for (size_t k = 0; k < n->n_attribute; k++) {
		bool ok = false;
		for (size_t j = 0; j < QD_ARRAY_LEN(qattn_attrs); j++)
			ok = ok || !strcmp(n->attribute[k]->name, qattn_attrs[j]);
		if (!ok)
			return skip(d, n, "attribute '%s' has no QAttention equivalent", n->attribute[k]->name);
	}
	Onnx__TensorProto *w = qd_index_initializer(gs->ix, n->input[1]);
	if (!w || w->data_type != QD_DT_FLOAT || w->n_dims != 2)
		return skip(d, n, "weights are not a 2-D float initializer");
	int axis = d->cfg.per_channel ? r->dyn_axis : -1;
	struct qval *wq = quant_weight(d, gs, w, d->cfg.wtype, axis, d->cfg.weight_sym, d->cfg.reduce_range);
	if (!wq)
		return -1;
	if (d->cfg.qdq) {
		const char *wdq = dq_weight(d, gs, wq, w->name, axis);
		char *nw = wdq ? strdup(wdq) : NULL;
		if (!nw)
			return -1;
		bury(d, n->input[1], 0);
		n->input[1] = nw;
		qd_pass_count(d->counts, r->op);
		return 0;
	}
	struct qval *aq = quant_activation(d, gs, n->input[0]);
	if (!aq)
		return -1;
	char *name = freshf(d, "%s_quant", qd_node_label(n));
	const char *in[9] = {aq->q, wq->q, n->input[2], aq->scale, wq->scale,
			     n->n_input > 3 ? n->input[3] : "", aq->zp, wq->zp, n->n_input > 4 ? n->input[4] : ""};
	Onnx__NodeProto *q = name ? qd_node_new("QAttention", MS_DOMAIN, name, in, 9,
						(const char *const *)n->output, n->n_output) : NULL;
	free(name);
	for (size_t k = 0; q && k < n->n_attribute; k++)
		if (qd_node_copy_attr(q, n->attribute[k]) < 0) {
			qd_node_free(q);
			q = NULL;
		}
	if (emit(d, gs, q) < 0)
		return -1;
	d->ms_used = true;
	qd_pass_count(d->counts, r->op);
	return 1;
}

/* The Gemm form's work happens before the walk: convert_gemms turns each selected Gemm
 * into MatMul [+ Add] and rewrite_matmul quantizes it with the Gemm row. A Gemm the walk
 * still meets was not selected or was refused there (alpha, beta, transA, B; reported). */
static int keep_gemm(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	return 0;
}

/* ---- dispatch: the table's dynamic form → its emitter ---- */

typedef int dyn_emit_fn(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r);

static dyn_emit_fn *form_emitter(enum qd_dyn_form f)
{
	switch (f) {
	case QD_DYN_NONE:      return NULL;
	case QD_DYN_MATMUL:    return rewrite_matmul;
	case QD_DYN_GEMM:      return keep_gemm;
	case QD_DYN_CONV:      return rewrite_conv;
	case QD_DYN_GATHER:    return rewrite_gather;
	case QD_DYN_LSTM:      return rewrite_lstm;
	case QD_DYN_ATTENTION: return rewrite_attention;
	case QD_DYN__COUNT:    break;
	}
	return NULL;
}

bool qd_pass_dynamic_has_emitter(enum qd_dyn_form f)
{
	return form_emitter(f) != NULL;
}

/* Node n of row r (r->dyn != QD_DYN_NONE), if selected, through its form's emitter; the
 * emitter's result. A MatMul made from a Gemm answers to the Gemm's name and row too. */
static int quantize_node(struct dyn *d, struct gstate *gs, Onnx__NodeProto *n, const struct qd_op_rule *r)
{
	const struct qd_op_rule *gemm = NULL;
	char gemm_name[512] = "";
	if (r->dyn == QD_DYN_MATMUL && ns_has(&d->gemm_from, n->name ? n->name : "")) {
		gemm = qd_op_rule_find_domain("", "Gemm");
		snprintf(gemm_name, sizeof gemm_name, "%s", n->name);
		size_t L = strlen(gemm_name);
		if (L > 7 && !strcmp(gemm_name + L - 7, "_MatMul"))
			gemm_name[L - 7] = 0;
	}
	if (!node_selected(d, n, r, gemm ? gemm_name : NULL, gemm))
		return 0;
	dyn_emit_fn *fn = form_emitter(r->dyn);
	return fn ? fn(d, gs, n, gemm ? gemm : r) : 0;
}

/* ---- graphs ---- */

static int quantize_graph(struct dyn *d, Onnx__GraphProto *g, const struct qd_graph_index *parent, int depth);

static int process_graph(struct dyn *d, struct gstate *gs, int depth)
{
	Onnx__GraphProto *g = gs->g;
	const size_t *order;
	size_t nord = qd_index_topo(gs->ix, &order);
	if (nord != g->n_node)
		return qd_err_set(d->err, QD_EMODEL, g->name, "graph '%s' is not a DAG", g->name ? g->name : "");
	int rc = 0;
	for (size_t oi = 0; oi < nord && rc >= 0; oi++) {
		Onnx__NodeProto *n = g->node[order[oi]];
		const struct qd_op_rule *rule = qd_op_rule_find_domain(qd_node_domain(n), n->op_type);
		int r = 0;
		Onnx__GraphProto *subs[16];
		size_t ns = qd_node_subgraphs(n, subs, 16);
		if (ns && d->cfg.subgraphs) {
			for (size_t k = 0; k < ns && k < 16 && r >= 0; k++)
				r = quantize_graph(d, subs[k], gs->ix, depth + 1);
			r = r < 0 ? r : 0;
		} else if (rule && rule->dyn != QD_DYN_NONE) {
			r = quantize_node(d, gs, n, rule);
		} else if (rule && (rule->flags & QD_OPF_DYN_REFUSED) && d->cfg.op_types &&
			   node_selected(d, n, rule, NULL, NULL)) {
			r = skip(d, n, "quantd's dynamic pass does not quantize %s", n->op_type);
		}
		if (r < 0) {
			rc = r;
			break;
		}
		if (r == 0) {
			rc = emit_orig(d, gs, n);
		} else if (r == 1) {
			rc = bury(d, n, 1);
		}
		g->node[order[oi]] = NULL;   /* now owned by gs->out (or buried) */
	}
	if (rc < 0) {
		/* hand every node back to the graph so the model stays freeable */
		size_t k = 0;
		Onnx__NodeProto **all = malloc((gs->n_out + g->n_node + 1) * sizeof *all);
		if (all) {
			for (size_t i = 0; i < gs->n_out; i++)
				all[k++] = gs->out[i];
			for (size_t i = 0; i < g->n_node; i++)
				if (g->node[i])
					all[k++] = g->node[i];
			free(g->node);
			g->node = all;
			g->n_node = k;
			gs->n_out = 0;
		}
		return rc;
	}
	free(g->node);
	g->node = gs->out;
	g->n_node = gs->n_out;
	gs->out = NULL;
	gs->n_out = gs->cap_out = 0;
	return 0;
}

static int quantize_graph(struct dyn *d, Onnx__GraphProto *g, const struct qd_graph_index *parent, int depth)
{
	if (depth > 32)
		return qd_err_set(d->err, QD_EMODEL, g->name, "subgraphs nested too deep");
	int rc = convert_gemms(d, g, parent);
	if (rc < 0)
		return rc;
	struct gstate gs = { .g = g };
	if ((rc = qd_index_build(g, parent, &gs.ix, d->err)) < 0)
		return rc;
	rc = process_graph(d, &gs, depth);
	for (size_t i = 0; i < gs.n_vals; i++)
		qval_free(&gs.vals[i]);
	free(gs.vals);
	free(gs.out);
	qd_index_free(gs.ix);
	return rc;
}

/* ---- opset ---- */

static void opset_log(void *ud, enum qd_log_level lvl, const char *line)
{
	qd_pass_log(ud, lvl, "%s", line);
}

/* Raise the ai.onnx opset with the shared upgrader (passes/opset.h): nodes are rewritten
 * so they keep their meaning, or the upgrade is refused naming the node. */
static int raise_opset(struct dyn *d, int64_t to)
{
	int rc = qd_model_upgrade_opset(d->m, to, opset_log, d->pc, d->pc->stats, d->err);
	if (rc == -QD_EUNSUPPORTED) {
		size_t l = strlen(d->err->msg);
		snprintf(d->err->msg + l, sizeof d->err->msg - l, "; use quant_format QOperator");
	}
	if (rc < 0)
		return rc;
	d->opset = to;
	return 0;
}

static bool model_has_op(const Onnx__GraphProto *g, const char *op)
{
	for (size_t i = 0; i < g->n_node; i++)
		if (!strcmp(g->node[i]->op_type, op))
			return true;
	return false;
}

/* Any node the pass would try to quantize (a row with a dynamic form, selected op type),
 * subgraphs included when EnableSubgraph is on. */
static bool has_candidates(struct dyn *d, const Onnx__GraphProto *g, int depth)
{
	for (size_t i = 0; i < g->n_node && depth < 32; i++) {
		const Onnx__NodeProto *n = g->node[i];
		const struct qd_op_rule *r = qd_op_rule_find_domain(qd_node_domain(n), n->op_type);
		if (r && r->dyn != QD_DYN_NONE && type_selected(d, r))
			return true;
		if (d->cfg.subgraphs) {
			Onnx__GraphProto *subs[16];
			size_t ns = qd_node_subgraphs(n, subs, 16);
			for (size_t k = 0; k < ns && k < 16; k++)
				if (has_candidates(d, subs[k], depth + 1))
					return true;
		}
	}
	return false;
}

/* ---- entry points ---- */

int qd_pass_check_dynamic(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[128];
	size_t i; json_t *v;
	snprintf(field, sizeof field, "passes.%s.precision", pass_name);
	json_array_foreach(json_object_get(space, "precision"), i, v) {
		const char *s = json_string_value(v);
		if (strcmp(s, "int8") && strcmp(s, "uint8"))
			return qd_err_set(err, QD_EUNSUPPORTED, field,
					  "precision '%s' is not supported by dynamic quantization "
					  "(MatMulInteger/ConvInteger take 8-bit weights: int8 or uint8)", s);
	}
	snprintf(field, sizeof field, "passes.%s.weight_type", pass_name);
	json_array_foreach(json_object_get(space, "weight_type"), i, v) {
		const char *s = json_string_value(v);
		if (s && strcmp(s, "QInt8") && strcmp(s, "QUInt8"))
			return qd_err_set(err, QD_EUNSUPPORTED, field,
					  "weight_type '%s' is not supported by dynamic quantization "
					  "(QInt8 or QUInt8)", s);
	}
	snprintf(field, sizeof field, "passes.%s.extra_options", pass_name);
	json_array_foreach(json_object_get(space, "extra_options"), i, v) {
		int rc = qd_extra_options_check(v, true, field, err);
		if (rc < 0)
			return rc;
	}
	return qd_pass_check_external(pass_name, space, err);
}



int qd_pass_run_dynamic(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			struct qd_err *err)
{
	struct dyn d = { .pc = ctx, .m = m, .err = err };
	const json_t *extra = json_object_get(params, "extra_options");
	const char *prec = json_string_value(json_object_get(params, "precision"));
	const char *wt = json_string_value(json_object_get(params, "weight_type"));
	if (wt)
		prec = !strcmp(wt, "QUInt8") ? "uint8" : !strcmp(wt, "QInt8") ? "int8" : wt;
	if (!prec || (strcmp(prec, "int8") && strcmp(prec, "uint8")))
		return qd_err_set(err, QD_EUNSUPPORTED, "precision", "precision '%s' is not supported by "
				  "dynamic quantization", prec ? prec : "?");
	d.cfg.wtype = !strcmp(prec, "uint8") ? QD_QT_UINT8 : QD_QT_INT8;
	d.cfg.per_channel = json_is_true(json_object_get(params, "per_channel"));
	d.cfg.reduce_range = json_is_true(json_object_get(params, "reduce_range"));
	const char *fmt = json_string_value(json_object_get(params, "quant_format"));
	d.cfg.qdq = fmt && !strcmp(fmt, "QDQ");
	const json_t *ws = json_object_get(params, "weight_symmetric");
	bool wsym_dflt = qd_qtype_signed(d.cfg.wtype);
	d.cfg.weight_sym = json_is_boolean(ws) ? json_is_true(ws) : qd_pass_opt_bool(extra, "WeightSymmetric", wsym_dflt);
	d.cfg.const_b_only = qd_pass_opt_bool(extra, "MatMulConstBOnly", true);
	d.cfg.subgraphs = qd_pass_opt_bool(extra, "EnableSubgraph", false);
	/* Olive: the exposed parameter (never null) overwrites extra_options' key */
	d.cfg.act_sym = json_is_true(json_object_get(params, "activation_symmetric"));
	if (json_is_boolean(json_object_get(extra, "ActivationSymmetric")) &&
	    qd_pass_opt_bool(extra, "ActivationSymmetric", false) != d.cfg.act_sym)
		qd_pass_log(ctx, QD_LOG_WARN, "extra_options.ActivationSymmetric is overwritten by "
			    "activation_symmetric=%s (Olive's rule)", d.cfg.act_sym ? "true" : "false");
	d.cfg.contrib_qdq = qd_pass_opt_bool(extra, "UseQDQContribOps", false);
	d.cfg.op_types = qd_pass_opt_list(params, "op_types_to_quantize");
	d.cfg.op_types_ex = qd_pass_opt_list(params, "op_types_to_exclude");
	d.cfg.nodes_in = qd_pass_opt_list(params, "nodes_to_quantize");
	d.cfg.nodes_ex = qd_pass_opt_list(params, "nodes_to_exclude");
	if (d.cfg.op_types && d.cfg.op_types_ex)
		qd_pass_log(ctx, QD_LOG_WARN, "op_types_to_exclude is ignored because op_types_to_quantize "
			    "is set (Olive's rule)");
	if (json_is_true(json_object_get(extra, "ForceQuantizeNoInputCheck")))
		qd_pass_log(ctx, QD_LOG_INFO, "ForceQuantizeNoInputCheck: no latent ops (Transpose, ...) are "
			    "quantized by quantd's dynamic pass, the option changes nothing");
	d.counts = json_object();
	d.skipped = json_array();
	if (!d.counts || !d.skipped) {
		json_decref(d.counts); json_decref(d.skipped);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}

	int rc = qd_model_normalize_constants(m, err);
	if (rc < 0)
		goto out;
	json_object_set_new(ctx->stats, "constants_normalized", json_integer(rc));
	if (rc > 0)
		qd_pass_log(ctx, QD_LOG_INFO, "%d Constant nodes turned into initializers", rc);
	if (json_is_true(json_object_get(params, "quant_preprocess")))
		qd_pass_log(ctx, QD_LOG_INFO, "quant_preprocess: Constant normalisation and topological "
			    "sort only (ORT's graph optimizer and symbolic shape inference are not run)");
	d.opset = qd_model_opset(m, "");
	if (d.opset < 7 && !has_candidates(&d, m->proto->graph, 0)) {
		qd_pass_log(ctx, QD_LOG_WARN, "no node was quantized: the model has no node of the selected "
			    "op types");
		rc = 0;
		goto out;
	}
	if (d.opset <= 0) {
		rc = qd_err_set(err, QD_EMODEL, NULL, "model has no ai.onnx opset import");
		goto out;
	}
	if (d.opset < 7) {
		rc = qd_err_set(err, QD_EUNSUPPORTED, NULL, "opset %lld is too old to quantize (need >= 7)",
				(long long)d.opset);
		goto out;
	}
	if ((d.cfg.qdq || d.cfg.act_sym) && d.opset < 11 && (rc = raise_opset(&d, 11)) < 0)
		goto out;
	/* Conv is out of the default op types (its row has no QD_OPF_DYN_DEFAULT, see DESIGN) */
	const struct qd_op_rule *conv = qd_op_rule_find_domain("", "Conv");
	const bool conv_selected = conv && type_selected(&d, conv);
	if (!d.cfg.qdq && d.opset < 11 && conv_selected && model_has_op(m->proto->graph, "Conv")) {
		/* ConvInteger needs DynamicQuantizeLinear (opset 11): raise when it is safe */
		if ((rc = raise_opset(&d, 11)) < 0) {
			qd_pass_log(ctx, QD_LOG_WARN, "Conv stays float: %s", err->msg);
			qd_err_clear(err);
		}
	}
	/* after the opset raise: it may add initializers */
	if ((rc = collect_names(m->proto->graph, &d.names)) < 0) {
		qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (!d.cfg.qdq && d.opset < 11)
		qd_pass_log(ctx, QD_LOG_INFO, "opset %lld < 11: MatMul becomes com.microsoft."
			    "DynamicQuantizeMatMul; the opset import is left unchanged", (long long)d.opset);
	if (!conv_selected) {
		/* say once why Conv stays float when the model has some */
		Onnx__GraphProto *g = m->proto->graph;
		for (size_t i = 0; i < g->n_node; i++)
			if (!strcmp(g->node[i]->op_type, "Conv")) {
				qd_pass_log(ctx, QD_LOG_INFO, "Conv nodes are left in float: dynamic ConvInteger "
					    "is slow on CPU and exists only for uint8 weights; list \"Conv\" in "
					    "op_types_to_quantize to quantize them anyway");
				break;
			}
	}
	if ((rc = quantize_graph(&d, m->proto->graph, NULL, 0)) < 0)
		goto out;
	if ((rc = qd_graph_remove_unused_initializers(m->proto->graph)) < 0) {
		qd_err_set(err, QD_ENOMEM, NULL, "cannot remove unused initializers");
		goto out;
	}
	json_object_set_new(ctx->stats, "initializers_removed", json_integer(rc));
	if ((rc = qd_graph_toposort(m->proto->graph, err)) < 0)
		goto out;
	if (d.ms_used && qd_model_opset(m, MS_DOMAIN) < 1 && (rc = qd_model_set_opset(m, MS_DOMAIN, 1)) < 0) {
		qd_err_set(err, -rc, NULL, "cannot add the com.microsoft opset import");
		goto out;
	}
	int total = 0;
	const char *k; json_t *v;
	json_object_foreach(d.counts, k, v)
		total += (int)json_integer_value(v);
	qd_pass_log(ctx, QD_LOG_INFO, "%d nodes quantized (%s weights, %s%s%s)", total, prec,
		    d.cfg.qdq ? "QDQ" : "QOperator", d.cfg.per_channel ? ", per-channel" : "",
		    d.cfg.reduce_range ? ", reduce_range" : "");
	if (total == 0)
		qd_pass_log(ctx, QD_LOG_WARN, "no node was quantized: the output equals the input model");
	if ((rc = qd_pass_validate_output(m, err)) < 0)
		goto out;
	rc = 0;
out:
	json_object_set_new(ctx->stats, "quantized_nodes", d.counts);
	json_object_set_new(ctx->stats, "skipped_nodes", d.skipped);
	json_object_set_new(ctx->stats, "weight_type", json_string(prec));
	json_object_set_new(ctx->stats, "quant_format", json_string(d.cfg.qdq ? "QDQ" : "QOperator"));
	ns_free(&d.names);
	ns_free(&d.gemm_from);
	bury_all(&d);
	return rc;
}

