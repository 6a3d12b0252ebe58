/* OnnxDynamicQuantization: submit-time checks. The graph rewrite lands next (see the
 * pass's run function); until then running it fails with a clear error. */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

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
	snprintf(field, sizeof field, "passes.%s.all_tensors_to_one_file", pass_name);
	json_array_foreach(json_object_get(space, "all_tensors_to_one_file"), i, v)
		if (!json_is_true(v))
			return qd_err_set(err, QD_EUNSUPPORTED, field,
					  "all_tensors_to_one_file false is not supported (one external file)");
	snprintf(field, sizeof field, "passes.%s.convert_attribute", pass_name);
	json_array_foreach(json_object_get(space, "convert_attribute"), i, v)
		if (json_is_true(v))
			return qd_err_set(err, QD_EUNSUPPORTED, field,
					  "convert_attribute true is not supported");
	snprintf(field, sizeof field, "passes.%s.size_threshold", pass_name);
	json_array_foreach(json_object_get(space, "size_threshold"), i, v)
		if (json_integer_value(v) < 0)
			return qd_err_set(err, QD_EINVAL, field, "size_threshold must be >= 0");
	return 0;
}

int qd_pass_run_dynamic(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			struct qd_err *err)
{
	(void)ctx; (void)m; (void)params;
	return qd_err_set(err, QD_ENOT_IMPL, NULL,
			  "pass type 'OnnxDynamicQuantization' cannot run yet in this build");
}
