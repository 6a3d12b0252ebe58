/* After-pass validation: the model check, NaN/Inf in float initializers, and every emitted
 * quantized op against ORT's CPU kernel table (passes/ort_support.def), so that a model
 * ONNX Runtime would refuse is a failed pass, never an artifact. */
#include "passes/passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- after-pass validation ---- */

struct ort_op { const char *domain, *op; int64_t since; const char *t0, *t1; };
static const struct ort_op ort_ops[] = {
#define QD_ORT_OP(d, o, s, a, b) {d, o, s, a, b},
#include "passes/ort_support.def"
#undef QD_ORT_OP
};

static const char *short_type(int dt)
{
	switch (dt) {
	case QD_DT_UINT8: return "u8";
	case QD_DT_INT8: return "s8";
	case QD_DT_UINT16: return "u16";
	case QD_DT_INT16: return "s16";
	case QD_DT_INT32: return "i32";
	case QD_DT_FLOAT: return "f";
	default: return "?";
	}
}

static bool type_ok(const char *allowed, int dt)
{
	if (!strcmp(allowed, "*") || dt == QD_DT_UNDEFINED)
		return true;             /* unknown type (activation): other rows decide */
	return qd_pass_choice_has(allowed, short_type(dt));
}

/* Element type of a value when we can tell: initializer dtype, or the output of a
 * DynamicQuantizeLinear (uint8). UNDEFINED otherwise. */
static int value_type(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name))
			return g->initializer[i]->data_type;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!strcmp(n->op_type, "DynamicQuantizeLinear") && n->n_output > 0 &&
		    !strcmp(n->output[0], name))
			return QD_DT_UINT8;
	}
	return QD_DT_UNDEFINED;
}

static int validate_graph(const struct qd_model *m, const Onnx__GraphProto *g, struct qd_err *err)
{
	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		if (t->data_type != QD_DT_FLOAT)
			continue;
		float *v = NULL; int64_t n = 0;
		int rc = qd_model_tensor_to_float(m, t, &v, &n, err);   /* an external one alone */
		if (rc < 0)
			return rc;
		for (int64_t k = 0; k < n; k++)
			if (!isfinite(v[k])) {
				free(v);
				return qd_err_set(err, QD_EORT_REJECT, t->name,
						  "initializer '%s' holds a NaN or Inf after quantization", t->name);
			}
		free(v);
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		const char *dom = qd_node_domain(n);
		bool known = false, matched = false;
		int64_t opset = qd_model_opset(m, dom);
		for (size_t r = 0; r < QD_ARRAY_LEN(ort_ops); r++) {
			const struct ort_op *o = &ort_ops[r];
			if (strcmp(o->domain, dom) || strcmp(o->op, n->op_type))
				continue;
			known = true;
			if (opset < o->since)
				continue;
			int t0 = n->n_input > 0 ? value_type(g, n->input[0]) : QD_DT_UNDEFINED;
			int t1 = n->n_input > 1 ? value_type(g, n->input[1]) : QD_DT_UNDEFINED;
			if (type_ok(o->t0, t0) && type_ok(o->t1, t1)) {
				matched = true;
				break;
			}
		}
		if (known && !matched) {
			int t0 = n->n_input > 0 ? value_type(g, n->input[0]) : 0;
			int t1 = n->n_input > 1 ? value_type(g, n->input[1]) : 0;
			return qd_err_set(err, QD_EORT_REJECT, n->name,
					  "onnx runtime has no cpu kernel for node '%s' (%s%s%s, opset %lld, "
					  "input types %s, %s)", n->name ? n->name : "", *dom ? dom : "",
					  *dom ? "." : "", n->op_type, (long long)opset,
					  qd_dtype_name(t0), qd_dtype_name(t1));
		}
		Onnx__GraphProto *subs[8];
		size_t ns = qd_node_subgraphs(n, subs, 8);
		for (size_t s = 0; s < ns && s < 8; s++) {
			int rc = validate_graph(m, subs[s], err);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

int qd_pass_validate_output(const struct qd_model *m, struct qd_err *err)
{
	int rc = qd_model_check(m, err);
	if (rc < 0)
		return qd_err_wrap(err, "quantized model fails the model check");
	return validate_graph(m, m->proto->graph, err);
}
