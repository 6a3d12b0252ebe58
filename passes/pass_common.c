/* Helpers shared by every pass: logging through the workflow hooks, OnnxQuantization's
 * routing by quant_mode, and the after-pass validation (model check, NaN/Inf in
 * initializers, emitted quantized ops against ORT's CPU kernel table ort_support.def). */
#include "passes/passes.h"
#include "passes/data_config.h"
#include "engine/dataset.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void qd_pass_log(struct qd_pass_ctx *c, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, c ? c->job_id : NULL, "%s: %s", c && c->name ? c->name : "pass", line);
	if (c && c->hooks && c->hooks->log) {
		char full[1200];
		snprintf(full, sizeof full, "%s: %s", c->name ? c->name : "pass", line);
		c->hooks->log(c->hooks->ud, lvl, full);
	}
}

/* ---- helpers shared by the quantizing passes ---- */

bool qd_json_list_has(const json_t *list, const char *s)
{
	size_t i; json_t *x;
	if (!s)
		return false;
	json_array_foreach(list, i, x)
		if (json_is_string(x) && !strcmp(json_string_value(x), s))
			return true;
	return false;
}

bool qd_pass_opt_bool(const json_t *obj, const char *key, bool dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

const json_t *qd_pass_opt_list(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_array(v) ? v : NULL;
}

const char *qd_node_label(const Onnx__NodeProto *n)
{
	return n->name && *n->name ? n->name : (n->n_output ? n->output[0] : n->op_type);
}

void qd_pass_count(json_t *counts, const char *op)
{
	json_t *c = json_object_get(counts, op);
	json_object_set_new(counts, op, json_integer((c ? json_integer_value(c) : 0) + 1));
}

void qd_pass_skip(struct qd_pass_ctx *c, json_t *skipped, const Onnx__NodeProto *n, enum qd_log_level lvl,
		  const char *fmt, ...)
{
	char reason[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	if (json_array_size(skipped) < 200)
		json_array_append_new(skipped, json_pack("{s:s, s:s, s:s}", "node", n->name ? n->name : "",
							 "op", n->op_type, "reason", reason));
	qd_pass_log(c, lvl, "node '%s' (%s) left in float: %s", n->name ? n->name : "", n->op_type, reason);
}

/* ---- OnnxQuantization: quant_mode picks the implementation ---- */

static bool mode_is_static(const json_t *space_or_params)
{
	const json_t *v = json_object_get(space_or_params, "quant_mode");
	const char *m = json_is_array(v) ? json_string_value(json_array_get(v, 0)) : json_string_value(v);
	return !m || !strcmp(m, "static");
}

int qd_pass_check_onnx_quantization(const char *pass_name, const json_t *space, struct qd_err *err)
{
	const json_t *modes = json_object_get(space, "quant_mode");
	bool any_static = false, any_dynamic = false;
	size_t i; json_t *m;
	json_array_foreach(modes, i, m) {
		any_static = any_static || !strcmp(json_string_value(m), "static");
		any_dynamic = any_dynamic || !strcmp(json_string_value(m), "dynamic");
	}
	int rc = 0;
	if (any_static)
		rc = qd_pass_check_static(pass_name, space, err);
	if (rc == 0 && any_dynamic) {
		/* dynamic runs ignore the static-only parameters: check the rest */
		json_t *sub = json_deep_copy(space);
		if (!sub)
			return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		json_t *p = json_object_get(sub, "precision");
		size_t k; json_t *v;
		json_array_foreach(p, k, v)
			if (strcmp(json_string_value(v), "int8") && strcmp(json_string_value(v), "uint8") && any_static)
				json_array_set_new(p, k, json_string("int8"));   /* 16-bit: static only */
		rc = qd_pass_check_dynamic(pass_name, sub, err);
		json_decref(sub);
	}
	return rc;
}

int qd_pass_run_onnx_quantization(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
				  struct qd_err *err)
{
	json_t *p = json_deep_copy(params);
	if (!p)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	int rc;
	if (mode_is_static(params)) {
		if (json_is_null(json_object_get(p, "quant_format")))
			json_object_set_new(p, "quant_format", json_string("QDQ"));
		rc = qd_pass_run_static(ctx, m, p, err);
	} else {
		static const char *const static_only[] = {"data_config", "calibration_providers",
			"min_real_range", "tensor_quant_overrides", "calibration_sampling_size"};
		for (size_t i = 0; i < QD_ARRAY_LEN(static_only); i++)
			if (!json_is_null(json_object_get(params, static_only[i])))
				qd_pass_log(ctx, QD_LOG_WARN, "parameter '%s' is ignored when quant_mode is dynamic",
					    static_only[i]);
		if (json_is_null(json_object_get(p, "quant_format")))
			json_object_set_new(p, "quant_format", json_string("QOperator"));
		rc = qd_pass_run_dynamic(ctx, m, p, err);
	}
	json_decref(p);
	return rc;
}

/* ---- calibration / evaluation data ---- */

int qd_pass_open_data(struct qd_pass_ctx *c, const struct qd_model *m, const json_t *data_config,
		      const char *field, struct qd_dataset **ds, int64_t *batch_size, struct qd_err *err)
{
	*ds = NULL;
	*batch_size = 1;
	json_t *cfg = NULL;
	int rc = qd_data_config_resolve(c->workflow, data_config, field, &cfg, err);
	if (rc < 0)
		return rc;
	const char *ref = json_string_value(json_object_get(cfg, "dataset"));
	const char *path = ref;
	if (c->data_paths) {
		path = json_string_value(json_object_get(c->data_paths, ref ? ref : ""));
		if (!path) {
			rc = qd_err_set(err, QD_ENOT_FOUND, field, "dataset '%s' of data config '%s' is not available",
					ref ? ref : "?", json_string_value(json_object_get(cfg, "name")));
			goto out;
		}
	}
	if (!path) {
		rc = qd_err_set(err, QD_EINVAL, field, "data config '%s' has no dataset",
				json_string_value(json_object_get(cfg, "name")));
		goto out;
	}
	json_int_t bs = json_integer_value(json_object_get(cfg, "batch_size"));
	if (bs > 0)
		*batch_size = bs;
	if ((rc = qd_dataset_load(path, NULL, ds, err)) < 0) {
		qd_err_wrap(err, "cannot load the dataset of data config '%s'",
			    json_string_value(json_object_get(cfg, "name")));
		goto out;
	}
	if ((rc = qd_dataset_bind(*ds, m, err)) < 0) {
		qd_err_wrap(err, "dataset of data config '%s' does not fit the model",
			    json_string_value(json_object_get(cfg, "name")));
		qd_dataset_free(*ds);
		*ds = NULL;
		goto out;
	}
	qd_pass_log(c, QD_LOG_INFO, "data config '%s': %lld samples (%s), batch size %lld",
		    json_string_value(json_object_get(cfg, "name")), (long long)(*ds)->n_samples,
		    (*ds)->format, (long long)*batch_size);
out:
	json_decref(cfg);
	return rc;
}

/* ---- batches of a dataset ---- */


int qd_batches_next(void *ud, struct qd_tensor **in, size_t *n_in, struct qd_err *err)
{
	struct qd_batches *b = ud;
	if (b->pos >= b->end)
		return 0;
	int64_t cnt = b->bs;
	if (cnt > b->end - b->pos)
		cnt = b->end - b->pos;
	struct qd_tensor *t = calloc(b->n, sizeof *t);
	if (!t)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < b->n; i++) {
		const struct qd_tensor *a = b->arr[i];
		bool per_sample = b->in_rank[i] >= 0 && a->ndim == b->in_rank[i] + 1;
		int rc = qd_dataset_slice(a, b->pos, per_sample ? 1 : cnt, &t[i], err);
		if (rc < 0) {
			qd_tensors_release(t, i);
			return rc;
		}
		if (per_sample) {
			/* each sample is one whole input: drop the sample axis */
			memmove(t[i].dims, t[i].dims + 1, (size_t)(t[i].ndim - 1) * sizeof t[i].dims[0]);
			t[i].ndim--;
		}
		free(t[i].name);
		t[i].name = strdup(b->names[i]);
	}
	bool per_sample = b->n && b->in_rank[0] >= 0 && b->arr[0]->ndim == b->in_rank[0] + 1;
	b->pos += per_sample ? 1 : cnt;
	*in = t;
	*n_in = b->n;
	return 1;
}

static int input_rank(const Onnx__ValueInfoProto *vi)
{
	if (!vi || !vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !vi->type->tensor_type || !vi->type->tensor_type->shape)
		return -1;
	return (int)vi->type->tensor_type->shape->n_dim;
}

/* Fixed first dimension of an input (> 0), or 0 when symbolic / unknown. */
static int64_t input_batch(const Onnx__ValueInfoProto *vi)
{
	if (input_rank(vi) < 1)
		return 0;
	const Onnx__TensorShapeProto__Dimension *d = vi->type->tensor_type->shape->dim[0];
	return d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : 0;
}

int qd_batches_init(struct qd_batches *b, const struct qd_dataset *ds, const Onnx__GraphProto *g,
			int64_t batch_size, int64_t limit, struct qd_err *err)
{
	memset(b, 0, sizeof *b);
	b->ds = ds;
	b->g = g;
	b->names = calloc(g->n_input + 1, sizeof *b->names);
	b->arr = calloc(g->n_input + 1, sizeof *b->arr);
	b->in_rank = calloc(g->n_input + 1, sizeof *b->in_rank);
	if (!b->names || !b->arr || !b->in_rank)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	int64_t fixed = 0;
	for (size_t i = 0; i < g->n_input; i++) {
		const char *nm = g->input[i]->name;
		bool init = false;
		for (size_t k = 0; k < g->n_initializer && !init; k++)
			init = !strcmp(g->initializer[k]->name, nm);
		if (init)
			continue;
		const struct qd_tensor *a = qd_dataset_array(ds, nm);
		if (!a)
			return qd_err_set(err, QD_EINVAL, nm, "the dataset has no array for model input '%s'", nm);
		b->names[b->n] = nm;
		b->arr[b->n] = a;
		b->in_rank[b->n] = input_rank(g->input[i]);
		int64_t fb = input_batch(g->input[i]);
		if (fb > 0 && !(b->in_rank[b->n] >= 0 && a->ndim == b->in_rank[b->n] + 1))
			fixed = fb;
		b->n++;
	}
	b->bs = fixed > 0 ? fixed : (batch_size > 0 ? batch_size : 1);
	b->end = ds->n_samples;
	if (limit > 0 && limit < b->end)
		b->end = limit;
	return 0;
}

void qd_batches_free(struct qd_batches *b)
{
	free(b->names);
	free(b->arr);
	free(b->in_rank);
}

/* ---- external-data parameters (every ORT pass) ---- */

int qd_pass_check_sampling_size(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[256];
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(space, "calibration_sampling_size"), i, v) {
		snprintf(field, sizeof field, "passes.%s.calibration_sampling_size", pass_name);
		const json_t *x = json_is_array(v) ? json_array_get(v, 0) : v;
		if (!json_is_null(v) && (!json_is_integer(x) || json_integer_value(x) <= 0 ||
					 (json_is_array(v) && json_array_size(v) != 1)))
			return qd_err_set(err, QD_EINVAL, field, "calibration_sampling_size must be a positive "
					  "integer or a list of one");
	}
	return 0;
}

int qd_pass_check_external(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[128];
	size_t i; json_t *v;
	snprintf(field, sizeof field, "passes.%s.all_tensors_to_one_file", pass_name);
	json_array_foreach(json_object_get(space, "all_tensors_to_one_file"), i, v)
		if (!json_is_true(v))
			return qd_err_set(err, QD_EUNSUPPORTED, field,
					  "all_tensors_to_one_file false is not supported (one external file)");
	snprintf(field, sizeof field, "passes.%s.convert_attribute", pass_name);
	json_array_foreach(json_object_get(space, "convert_attribute"), i, v)
		if (json_is_true(v))
			return qd_err_set(err, QD_EUNSUPPORTED, field, "convert_attribute true is not supported");
	snprintf(field, sizeof field, "passes.%s.size_threshold", pass_name);
	json_array_foreach(json_object_get(space, "size_threshold"), i, v)
		if (json_integer_value(v) < 0)
			return qd_err_set(err, QD_EINVAL, field, "size_threshold must be >= 0");
	return 0;
}

const json_t *qd_pass_entry_param(const json_t *entry, const char *key)
{
	const json_t *v = json_object_get(entry, key);
	return v ? v : json_object_get(json_object_get(entry, "config"), key);
}

const json_t *qd_pass_user_value(const struct qd_pass_ctx *c, const char *key)
{
	const json_t *p = c && c->workflow && c->name ?
			  json_object_get(json_object_get(c->workflow, "passes"), c->name) : NULL;
	if (json_is_array(p))
		p = json_array_get(p, 0);
	const json_t *v = qd_pass_entry_param(p, key);
	if (json_is_string(v) && !strcmp(json_string_value(v), "DEFAULT_VALUE"))
		return NULL;
	return v;
}
