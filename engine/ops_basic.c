/* engine/ops_basic.c — Constant (folded at load), Identity and Dropout (inference). */
#include <stdlib.h>
#include <string.h>
#include "engine/engine_internal.h"

static void free_tensor_priv(void *p)
{
	qd_tensor_release(p);
	free(p);
}

/* Builds the constant's value at load into n->priv (the loader turns it into a constant
 * slot). Supports value, value_float(s), value_int(s); sparse and string values fail. */
int qd_check_constant(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const Onnx__NodeProto *np = n->proto;
	struct qd_tensor *t = calloc(1, sizeof(*t));
	int rc = 0;
	if (!t) return qd_err_set(err, QD_ENOMEM, n->name, "out of memory");
	const Onnx__AttributeProto *a;
	if ((a = qd_node_attr(np, "value")) && a->t) {
		rc = qd_tensor_from_proto(a->t, t, err);
	} else if ((a = qd_node_attr(np, "value_float"))) {
		if (!(rc = qd_tensor_alloc(t, NULL, QD_DT_FLOAT, 0, NULL))) *(float *)t->data = a->f;
	} else if ((a = qd_node_attr(np, "value_int"))) {
		if (!(rc = qd_tensor_alloc(t, NULL, QD_DT_INT64, 0, NULL))) *(int64_t *)t->data = a->i;
	} else if ((a = qd_node_attr(np, "value_floats"))) {
		int64_t d = (int64_t)a->n_floats;
		if (!(rc = qd_tensor_alloc(t, NULL, QD_DT_FLOAT, 1, &d)) && d)
			memcpy(t->data, a->floats, d * sizeof(float));
	} else if ((a = qd_node_attr(np, "value_ints"))) {
		int64_t d = (int64_t)a->n_ints;
		if (!(rc = qd_tensor_alloc(t, NULL, QD_DT_INT64, 1, &d)) && d)
			memcpy(t->data, a->ints, d * sizeof(int64_t));
	} else {
		rc = qd_err_set(err, QD_EUNSUPPORTED, n->name,
				"node '%s' (Constant): only value, value_float(s) and value_int(s) are supported",
				n->name);
	}
	if (rc) {
		if (!err->code) qd_err_set(err, -rc, n->name, "node '%s' (Constant): cannot build value", n->name);
		free(t);
		return -err->code;
	}
	n->priv = t;
	n->priv_free = free_tensor_priv;
	out_dt[0] = t->dtype;
	return 0;
}

int qd_op_constant(struct qd_ctx *c)
{
	const struct qd_tensor *t = c->n->priv;
	if (!t) return qd_ctx_fail(c, QD_EINTERNAL, "constant has no value");
	return qd_ctx_out_copy(c, 0, t, t->ndim, t->dims);
}

int qd_op_identity(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	return qd_ctx_out_copy(c, 0, x, x->ndim, x->dims);
}

int qd_check_dropout(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	if (n->n_in > 2 && n->in[2] >= 0)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (Dropout): training_mode input is not supported", n->name);
	out_dt[0] = in_dt[0];
	if (n->n_out > 1) out_dt[1] = n->opset >= 10 ? QD_DT_BOOL : in_dt[0];
	return 0;
}

/* Inference: output = input; mask all true (training_mode input must be false). */
int qd_op_dropout(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (c->n_in > 2 && c->in[2] && qd_tensor_count(c->in[2]) == 1 && qd_tensor_get_i64(c->in[2], 0))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "training_mode=true is not supported");
	int rc = qd_ctx_out_copy(c, 0, x, x->ndim, x->dims);
	if (rc) return rc;
	if (qd_ctx_wants(c, 1)) {
		int dt = c->n->opset >= 10 ? QD_DT_BOOL : x->dtype;
		struct qd_tensor *m = qd_ctx_out(c, 1, dt, x->ndim, x->dims);
		if (!m) return -c->err->code;
		int64_t k = qd_tensor_count(x);
		for (int64_t i = 0; i < k; i++) qd_tensor_set_f64(m, i, 1.0);
	}
	return 0;
}
