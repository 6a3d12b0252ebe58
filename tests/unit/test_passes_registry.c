/* Pass registry: schema lookups, parameter resolution (literal, DEFAULT_VALUE,
 * SEARCHABLE_VALUES, lists) and qd_workflow_validate's errors and fields. */
#include "qd_test.h"
#include "passes/passes.h"

static int validate(const char *text, struct qd_err *err)
{
	json_error_t je;
	json_t *w = json_loads(text, 0, &je);
	if (!w) {
		fprintf(stderr, "bad test json: %s\n", je.text);
		return -9999;
	}
	qd_err_clear(err);
	int rc = qd_workflow_validate(w, err);
	json_decref(w);
	return rc;
}

static void test_validate(void)
{
	struct qd_err err;
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"}}}", &err), 0);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"onnxdynamicquantization\", "
			      "\"per_channel\": true, \"precision\": \"uint8\", \"quant_format\": \"QDQ\"}}}", &err), 0);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"Foo\"}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.type");
	CHECK(strstr(err.msg, "unknown pass type 'Foo' (quantd runs: OnnxQuantization") != NULL);
	/* static without calibration data: refused naming data_config */
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxStaticQuantization\"}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.data_config");
	CHECK_EQ_INT(validate("{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": "
			      "{\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\"}}}", &err), 0);
	CHECK_EQ_INT(validate("{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": "
			      "{\"type\": \"OnnxStaticQuantization\", \"data_config\": \"nope\"}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.data_config");
	CHECK_EQ_INT(validate("{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": "
			      "{\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", "
			      "\"activation_type\": \"uint16\", \"quant_format\": \"QOperator\"}}}", &err), -QD_EUNSUPPORTED);
	CHECK_STR(err.field, "passes.q.activation_type");
	CHECK_EQ_INT(validate("{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": "
			      "{\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", "
			      "\"extra_options\": {\"SmoothQuant\": true}}}}", &err), 0);   /* implemented */
	CHECK_EQ_INT(validate("{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": "
			      "{\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\", "
			      "\"extra_options\": {\"SmoothQuant\": true, \"SmoothQuantAlpha\": 2}}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.extra_options.SmoothQuantAlpha");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"IncQuantization\"}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.data_config");   /* approach static needs calibration data */
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"bogus\": 1}}}", &err),
		     -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.bogus");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"config\": {\"bogus\": 1}}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.config.bogus");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"per_channel\": \"yes\"}}}",
			      &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.per_channel");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"quant_format\": \"QQ\"}}}",
			      &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.quant_format");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"precision\": \"int4\"}}}",
			      &err), -QD_EUNSUPPORTED);
	CHECK_STR(err.field, "passes.q.precision");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"extra_options\": {\"Bogus\": true}}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.extra_options.Bogus");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"extra_options\": {\"MatMulConstBOnly\": 1}}}}", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"extra_options\": {\"CalibPercentile\": 99.9}}}}", &err), -QD_EUNSUPPORTED);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"extra_options\": {\"MatMulConstBOnly\": false, \"EnableSubgraph\": true}}}}", &err), 0);
	/* OnnxQuantization defaults to static (needs data); dynamic routes. */
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxQuantization\"}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.data_config");
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxQuantization\", \"quant_mode\": \"dynamic\"}}}",
			      &err), 0);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxQuantization\", "
			      "\"quant_mode\": \"SEARCHABLE_VALUES\"}}}", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"per_channel\": \"SEARCHABLE_VALUES\", \"reduce_range\": [true, false]}}}", &err), 0);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"reduce_range\": [true, 3]}}}", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"reduce_range\": []}}}", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": [{\"type\": \"OnnxDynamicQuantization\"}, "
			      "{\"type\": \"OnnxDynamicQuantization\", \"per_channel\": true}]}}", &err), 0);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"per_channel\": true}}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.type");
	CHECK_EQ_INT(validate("{\"passes\": []}", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"pases\": {}}", &err), -QD_EINVAL);
	CHECK_STR(err.field, "pases");
	CHECK_EQ_INT(validate("[1]", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"all_tensors_to_one_file\": false}}}", &err), -QD_EUNSUPPORTED);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"weight_symmetric\": null, \"op_types_to_quantize\": [\"MatMul\"]}}}", &err), 0);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"per_channel\": null}}}", &err), -QD_EINVAL);
	CHECK_EQ_INT(validate("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", "
			      "\"op_types_to_quantize\": [\"MatMul\", 3]}}}", &err), -QD_EINVAL);
}

static void test_resolve(void)
{
	const struct qd_pass_vt *vt = qd_pass_find("OnnxDynamicQuantization");
	CHECK(vt && vt->implemented && vt->run);
	if (!vt)
		return;
	json_t *user = json_loads("{\"type\": \"OnnxDynamicQuantization\", \"per_channel\": \"SEARCHABLE_VALUES\", "
				  "\"precision\": \"DEFAULT_VALUE\", \"reduce_range\": [true, false], "
				  "\"op_types_to_quantize\": [\"MatMul\", \"Gemm\"]}", 0, NULL);
	json_t *space = NULL;
	struct qd_err err;
	CHECK_EQ_INT(qd_pass_resolve(vt, "q", user, &space, &err), 0);
	CHECK_EQ_INT(json_array_size(json_object_get(space, "per_channel")), 2);
	CHECK_STR(json_string_value(json_array_get(json_object_get(space, "precision"), 0)), "int8");
	CHECK_EQ_INT(json_array_size(json_object_get(space, "reduce_range")), 2);
	/* A list for a list-typed parameter is a literal, not a search. */
	CHECK_EQ_INT(json_array_size(json_object_get(space, "op_types_to_quantize")), 1);
	CHECK(json_is_true(json_array_get(json_object_get(space, "per_channel"), 0)));
	CHECK_EQ_INT(json_object_size(space), vt->n_params);
	json_t *first = qd_pass_space_first(space);
	CHECK(json_is_true(json_object_get(first, "reduce_range")));
	CHECK(json_is_null(json_object_get(first, "weight_symmetric")));
	CHECK_STR(json_string_value(json_object_get(first, "quant_format")), "QOperator");
	CHECK(json_is_true(json_object_get(first, "quant_preprocess")));
	CHECK_EQ_INT(json_integer_value(json_object_get(first, "size_threshold")), 1024);
	json_decref(first);
	json_decref(space);
	json_decref(user);
	CHECK(qd_pass_find("nope") == NULL);
	CHECK(qd_pass_param(vt, "per_channel") != NULL);
	CHECK(qd_pass_param(vt, "calibrate_method") == NULL);   /* static-only */
	CHECK(qd_pass_param(qd_pass_find("OnnxStaticQuantization"), "calibrate_method") != NULL);
}

static void test_json(void)
{
	json_t *j = qd_passes_json();
	CHECK(j != NULL);
	json_t *list = json_object_get(j, "passes");
	CHECK_EQ_INT(json_array_size(list), QD_PASS__COUNT);
	int implemented = 0;
	size_t i; json_t *p;
	json_array_foreach(list, i, p) {
		CHECK(json_is_string(json_object_get(p, "type")));
		implemented += json_is_true(json_object_get(p, "implemented"));
		json_t *params = json_object_get(p, "parameters");
		CHECK(json_array_size(params) > 0);
		size_t k; json_t *q;
		json_array_foreach(params, k, q) {
			/* every default parses (null included) and search values are arrays */
			CHECK(json_object_get(q, "default") != NULL);
			json_t *sv = json_object_get(q, "search_values");
			CHECK(sv && (json_is_null(sv) || json_is_array(sv)));
		}
	}
	CHECK_EQ_INT(implemented, 13);  /* + the four weight-only passes, QnnPreprocess, DynamicToFixedShape, the three INC passes, VitisAIQuantization */
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 1), "type")), "OnnxDynamicQuantization");
	json_decref(j);
}

int main(void)
{
	test_validate();
	test_resolve();
	test_json();
	return qd_test_done("test_passes_registry");
}
