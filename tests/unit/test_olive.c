/* Olive workflow intake (passes/olive.c): every problem at once, every accepted key
 * without effect listed as ignored with its reason, Olive passes quantd does not run
 * named as such (and skipped on request), non-ONNX input models refused with what to do,
 * pass_flows order, dataset bindings. */
#include "qd_test.h"
#include "passes/passes.h"
#include "passes/workflow.h"

static json_t *problems, *ignored;

static int check(const char *text, unsigned flags)
{
	json_error_t je;
	json_t *w = json_loads(text, 0, &je);
	if (!w) {
		fprintf(stderr, "bad test json: %s\n", je.text);
		return -9999;
	}
	json_decref(problems);
	json_decref(ignored);
	struct qd_err err = { 0 };
	int rc = qd_workflow_check(w, flags, &problems, &ignored, &err);
	json_decref(w);
	return rc;
}

/* the entry of list whose "field" is field, or NULL */
static const json_t *entry(const json_t *list, const char *field)
{
	size_t i;
	json_t *x;
	json_array_foreach(list, i, x)
		if (!strcmp(json_string_value(json_object_get(x, "field")) ?: "", field))
			return x;
	return NULL;
}

static const char *msg_of(const json_t *list, const char *field, const char *key)
{
	return json_string_value(json_object_get(entry(list, field), key)) ?: "";
}

static void test_all_problems_at_once(void)
{
	CHECK_EQ_INT(check("{\"passes\": {\"a\": {\"type\": \"OnnxDynamicQuantization\", \"per_chanel\": true, "
			   "\"bogus\": 1}, \"b\": {\"type\": \"Foo\"}, \"c\": {\"type\": \"OnnxDynamicQuantization\", "
			   "\"per_channel\": \"yes\"}}, \"colour\": \"red\", \"engine\": {\"speed\": 1}, "
			   "\"search_strategy\": \"fast\", \"evaluator\": \"missing\"}", 0), -QD_EINVAL);
	CHECK_EQ_INT(json_array_size(problems), 8);
	const char *fields[] = { "colour", "engine.speed", "search_strategy", "evaluator", "passes.a.per_chanel",
				 "passes.a.bogus", "passes.b.type", "passes.c.per_channel" };
	for (size_t i = 0; i < QD_ARRAY_LEN(fields); i++)
		CHECKF(entry(problems, fields[i]) != NULL, "problem at %s", fields[i]);
	CHECK(strstr(msg_of(problems, "colour", "message"), "unknown workflow key 'colour'") != NULL);
	CHECK(strstr(msg_of(problems, "evaluator", "message"), "not in \"evaluators\"") != NULL);
	CHECK_STR(msg_of(problems, "passes.b.type", "code"), "INVAL");
	CHECK(strstr(msg_of(problems, "passes.b.type", "message"), "quantd runs: OnnxQuantization") != NULL);
	/* a clean one */
	CHECK_EQ_INT(check("{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"}}}", 0), 0);
	CHECK_EQ_INT(json_array_size(problems), 0);
	CHECK_EQ_INT(json_array_size(ignored), 0);
}

static void test_ignored_with_reasons(void)
{
	CHECK_EQ_INT(check("{\"input_model\": {\"type\": \"ONNXModel\", \"config\": {\"model_path\": \"m.onnx\", "
			   "\"inference_settings\": {}}}, \"systems\": {\"local_system\": {\"type\": \"LocalSystem\"}}, "
			   "\"engine\": {\"cache_dir\": \"c\", \"host\": \"local_system\", \"search_strategy\": "
			   "{\"execution_order\": \"joint\", \"sampler\": \"sequential\", \"max_iter\": 3}}, "
			   "\"evaluators\": {\"e\": {\"metrics\": [{\"name\": \"fid\", \"type\": \"fidelity\", "
			   "\"sub_types\": [{\"name\": \"cosine_similarity\"}]}]}}, \"evaluator\": \"e\", "
			   "\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"host\": \"local_system\", "
			   "\"disable_search\": true, \"config\": {\"per_channel\": true}}}}", QD_WF_CHECK_MODEL_BOUND), 0);
	/* evaluators and the search run (search/): not ignored */
	const char *fields[] = { "systems", "engine.cache_dir", "engine.host", "passes.q.host",
				 "input_model.config.model_path", "input_model.config.inference_settings" };
	for (size_t i = 0; i < QD_ARRAY_LEN(fields); i++)
		CHECKF(entry(ignored, fields[i]) && *msg_of(ignored, fields[i], "why"), "ignored %s with a reason",
		       fields[i]);
	CHECK_EQ_INT(json_array_size(ignored), QD_ARRAY_LEN(fields));
	CHECK(strstr(msg_of(ignored, "systems", "why"), "this host") != NULL);
	/* the search runs: search_strategy and disable_search are implemented, not ignored */
	CHECK(entry(ignored, "engine.search_strategy") == NULL);
	CHECK(entry(ignored, "passes.q.disable_search") == NULL);
	CHECK_EQ_INT(check("{\"engine\": {\"search_strategy\": {\"sampler\": \"grid\"}}, \"passes\": {\"q\": "
			   "{\"type\": \"OnnxDynamicQuantization\", \"disable_search\": \"yes\"}}}", 0), -QD_EINVAL);
	CHECK(entry(problems, "engine.search_strategy.sampler") != NULL);
	CHECK(entry(problems, "passes.q.disable_search") != NULL);
	/* with a search, combinations the pass rejects are pruned; an empty space is a problem */
	CHECK_EQ_INT(check("{\"search_strategy\": true, \"data_configs\": {\"c\": {\"dataset\": \"x.npz\"}}, "
			   "\"passes\": {\"q\": {\"type\": \"OnnxStaticQuantization\", \"data_config\": \"c\", "
			   "\"quant_format\": [\"QOperator\", \"QDQ\"], \"activation_type\": [\"uint8\", \"uint16\"]}}}",
			   0), 0);
	CHECK_EQ_INT(check("{\"search_strategy\": true, \"data_configs\": {\"c\": {\"dataset\": \"x.npz\"}}, "
			   "\"passes\": {\"q\": {\"type\": \"OnnxStaticQuantization\", \"data_config\": \"c\", "
			   "\"quant_format\": \"QOperator\", \"activation_type\": [\"int16\", \"uint16\"]}}}", 0), -QD_EINVAL);
	CHECK(strstr(msg_of(problems, "passes.q.activation_type", "message"), "search space is empty") != NULL);
	CHECK_EQ_INT(check("{\"search_strategy\": true, \"passes\": {\"q\": [{\"type\": \"OnnxDynamicQuantization\"}, "
			   "{\"type\": \"OnnxDynamicQuantization\", \"per_channel\": true}]}}", 0), 0);
	CHECK(entry(problems, "passes.q") == NULL);   /* alternatives are searched */
	/* without a bound model, input_model.model_path is the model: not ignored */
	CHECK_EQ_INT(check("{\"input_model\": {\"type\": \"ONNXModel\", \"model_path\": \"m.onnx\"}, "
			   "\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"}}}", 0), 0);
	CHECK(entry(ignored, "input_model.model_path") == NULL);
	/* garbage values are problems, not ignored */
	CHECK_EQ_INT(check("{\"systems\": 3, \"host\": [1], \"engine\": 2, \"input_model\": {\"type\": 5}, "
			   "\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"}}, \"data_configs\": \"x\", "
			   "\"search_strategy\": {\"max_iter\": \"many\", \"execution_order\": \"random\"}}", 0), -QD_EINVAL);
	const char *bad[] = { "systems", "host", "engine", "input_model.type", "search_strategy.max_iter",
			      "search_strategy.execution_order" };
	for (size_t i = 0; i < QD_ARRAY_LEN(bad); i++)
		CHECKF(entry(problems, bad[i]) != NULL, "problem at %s", bad[i]);
	CHECK(json_array_size(problems) >= QD_ARRAY_LEN(bad) + 1);  /* + data_configs */
}

static void test_unsupported_passes(void)
{
	const char *wf = "{\"passes\": {\"conv\": {\"type\": \"OnnxConversion\", \"target_opset\": 13}, "
			 "\"opt\": {\"type\": \"OrtTransformersOptimization\"}, "
			 "\"q\": {\"type\": \"OnnxDynamicQuantization\"}}%s}";
	char text[512];
	snprintf(text, sizeof text, wf, "");
	CHECK_EQ_INT(check(text, 0), -QD_EUNSUPPORTED);
	CHECK_EQ_INT(json_array_size(problems), 2);   /* every quantd pass type is implemented now */
	CHECK(strstr(msg_of(problems, "passes.conv.type", "message"), "'OnnxConversion' is an Olive pass quantd "
		     "does not run") != NULL);
	CHECK_STR(msg_of(problems, "passes.opt.type", "code"), "UNSUPPORTED");
	snprintf(text, sizeof text, wf, ", \"unsupported_passes\": \"skip\"");
	CHECK_EQ_INT(check(text, 0), 0);
	CHECK(strstr(msg_of(ignored, "passes.conv", "why"), "skipped") != NULL);
	CHECK(strstr(msg_of(ignored, "passes.opt", "why"), "skipped") != NULL);
	json_t *w = json_loads(text, 0, NULL), *order = qd_workflow_pass_order(w);
	CHECK_EQ_INT(json_array_size(order), 1);
	CHECK_STR(json_string_value(json_array_get(order, 0)), "q");
	json_decref(order);
	json_decref(w);
	snprintf(text, sizeof text, wf, ", \"unsupported_passes\": \"sometimes\"");
	CHECK_EQ_INT(check(text, 0), -QD_EUNSUPPORTED);
	CHECK(entry(problems, "unsupported_passes") != NULL);
}

static void test_input_model(void)
{
	CHECK_EQ_INT(check("{\"input_model\": {\"type\": \"HfModel\", \"model_path\": \"bert-base\"}, "
			   "\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"}}}", 0), -QD_EUNSUPPORTED);
	CHECK(strstr(msg_of(problems, "input_model.type", "message"), "convert the model to ONNX") != NULL);
	CHECK_EQ_INT(check("{\"input_model\": {\"type\": \"Banana\"}, \"passes\": {\"q\": {\"type\": "
			   "\"OnnxDynamicQuantization\"}}}", 0), -QD_EINVAL);
	CHECK_EQ_INT(check("{\"input_model\": {\"type\": \"onnxmodel\", \"colour\": 1}, \"passes\": {\"q\": "
			   "{\"type\": \"OnnxDynamicQuantization\"}}}", 0), -QD_EINVAL);
	CHECK(entry(problems, "input_model.colour") != NULL);
}

static void test_pass_flows(void)
{
	const char *wf = "{\"passes\": {\"a\": {\"type\": \"OnnxDynamicQuantization\"}, \"b\": {\"type\": "
			 "\"OnnxDynamicQuantization\", \"per_channel\": true}}, \"pass_flows\": %s}";
	char text[512];
	snprintf(text, sizeof text, wf, "[[\"b\", \"a\"], [\"a\"]]");
	CHECK_EQ_INT(check(text, 0), 0);
	CHECK(strstr(msg_of(ignored, "pass_flows[1]", "why"), "only the first pass flow runs") != NULL);
	json_t *w = json_loads(text, 0, NULL), *order = qd_workflow_pass_order(w);
	CHECK_EQ_INT(json_array_size(order), 2);
	CHECK_STR(json_string_value(json_array_get(order, 0)), "b");
	CHECK_STR(json_string_value(json_array_get(order, 1)), "a");
	json_decref(order);
	json_decref(w);
	snprintf(text, sizeof text, wf, "[[\"a\", \"zz\"], []]");
	CHECK_EQ_INT(check(text, 0), -QD_EINVAL);
	CHECK(strstr(msg_of(problems, "pass_flows[0][1]", "message"), "'zz'") != NULL);
	CHECK(entry(problems, "pass_flows[1]") != NULL);
	snprintf(text, sizeof text, wf, "\"a\"");
	CHECK_EQ_INT(check(text, 0), -QD_EINVAL);
}

static void test_bindings(void)
{
	const char *forms[] = {
		"{\"data_configs\": {\"calib_data\": {\"type\": \"HuggingfaceContainer\"}}, "
		"\"datasets\": {\"calib_data\": \"dst_1\"}, \"passes\": {\"q\": {\"type\": "
		"\"OnnxStaticQuantization\", \"data_config\": \"calib_data\"}}}",
		"{\"data_configs\": [{\"name\": \"calib_data\"}], \"datasets\": {\"calib_data\": \"dst_1\"}, "
		"\"passes\": {\"q\": {\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib_data\"}}}",
	};
	for (size_t f = 0; f < QD_ARRAY_LEN(forms); f++) {
		json_t *w = json_loads(forms[f], 0, NULL);
		qd_workflow_bind_datasets(w);
		struct qd_err err = { 0 };
		CHECKF(qd_workflow_check(w, 0, NULL, NULL, &err) == 0, "form %zu binds: %s", f, err.msg);
		json_t *dc = json_object_get(w, "data_configs");
		dc = json_is_array(dc) ? json_array_get(dc, 0) : json_object_get(dc, "calib_data");
		CHECK_STR(json_string_value(json_object_get(dc, "dataset")), "dst_1");
		json_decref(w);
	}
	CHECK_EQ_INT(check("{\"datasets\": {\"nope\": \"dst_1\"}, \"passes\": {\"q\": {\"type\": "
			   "\"OnnxDynamicQuantization\"}}}", 0), -QD_EINVAL);
	CHECK(strstr(msg_of(problems, "datasets.nope", "message"), "not a data config") != NULL);
}

int main(void)
{
	test_all_problems_at_once();
	test_ignored_with_reasons();
	test_unsupported_passes();
	test_input_model();
	test_pass_flows();
	test_bindings();
	json_decref(problems);
	json_decref(ignored);
	return qd_test_done("test_olive");
}
