/* Olive workflow intake: every key of an Olive run config is implemented, accepted and
 * reported as ignored with a reason, or rejected; a workflow is checked completely and
 * every problem is returned at once.
 *
 * DESIGN
 * - One table per level (top level, `engine`, `input_model`, pass entries) says what each
 *   key is: IMPL (checked by its own function), IGNORE (type-checked, then listed in
 *   "ignored" with the reason; the job log and metrics.json show the list), or a nested
 *   table (`engine`). A key in no table is a problem ("unknown workflow key").
 * - Problems are collected, not returned at the first: unknown keys, each pass's unknown
 *   parameters (all of them) and its first bad value, data configs, bindings. The first
 *   one also fills struct qd_err for callers that want one error.
 * - Pass types: quantd's own (implemented, or registered and not implemented yet), Olive
 *   passes quantd does not run (named as such, with what to do), or unknown (a typo: the
 *   message lists quantd's types). `"unsupported_passes": "skip"` turns the first two
 *   kinds into skipped passes with a note each, so an existing Olive file runs as is.
 * - `pass_flows`: the first flow gives the pass order; with a (joint) search every flow is
 *   a choice of the search space, without one further flows are reported as ignored. A
 *   pass given as a list of alternative configurations is likewise searched, or runs its
 *   first alternative without a search. */
#include "passes/passes.h"
#include "passes/workflow.h"
#include "passes/data_config.h"
#include "search/search.h"
#include "search/eval.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Olive pass types quantd does not provide (Olive 0.7-0.9 and older names). */
static const char *const olive_only_passes[] = {
	"OnnxConversion", "OnnxOpVersionConversion", "OrtTransformersOptimization", "OrtPerfTuning",
	"OrtSessionParamsTuning", "OnnxFloatToFloat16", "OrtMixedPrecision",
	"GraphSurgeries", "OnnxModelOptimizer", "OnnxPeepholeOptimizer", "OnnxBnb4Quantization",
	"ExtractAdapters",
	"LoRA", "QLoRA", "LoftQ", "SparseGPT", "TorchTRTConversion", "OptimumConversion", "OptimumMerging",
	"ModelBuilder", "GptqQuantizer", "AwqQuantizer", "QuaRot", "SpinQuant", "MoEExpertsDistributor",
	"InsertBeamSearch", "AppendPrePostProcessingOps", "SNPEConversion", "SNPEQuantization",
	"SNPEtoONNXConversion", "QNNConversion", "QNNModelLibGenerator", "QNNContextBinaryGenerator",
	"OpenVINOConversion", "OpenVINOQuantization", "NVModelOptQuantization", "MatMulNBitsToQDQ",
	"SplitModel", "CaptureSplitInfo", "EPContextBinaryGenerator", "ComposeOnnxModels", "StaticLLM",
	"OnnxIODataTypeConverter", "MergeAdapterWeights", "PyTorchTensorParallel", "SliceGPT",
	"TorchDynamoConversion", "OnnxFlashAttention", "VitisAIAddMetaData",
};

/* Olive model types that are not ONNX files. */
static const char *const non_onnx_models[] = {
	"HfModel", "PyTorchModel", "PytorchModel", "CompositeModel", "CompositePyTorchModel",
	"DistributedHfModel", "DistributedOnnxModel", "OpenVINOModel", "QNNModel", "SNPEModel",
	"TensorFlowModel", "OptimumModel",
};

enum disp { D_IMPL, D_IGNORE, D_NEST };

struct key_rule {
	const char *key;
	enum disp d;
	const char *why;      /* D_IGNORE: the reason */
};

#define WHY_HOST "quantd always runs on this host's CPU with its built-in executor"
#define WHY_CACHE "quantd keeps models, runs and artifacts in its own content-addressed store"
#define WHY_OUT "artifacts are served by the API (GET /v1/jobs/{id}/artifacts) or written to quantd run --output"
#define WHY_LOG "quantd's log level is the daemon's --log-level (quantd run: --quiet)"

static const struct key_rule top_rules[] = {
	{ "passes", D_IMPL, NULL },
	{ "data_configs", D_IMPL, NULL },
	{ "input_model", D_IMPL, NULL },
	{ "model", D_IMPL, NULL },
	{ "datasets", D_IMPL, NULL },
	{ "pass_flows", D_IMPL, NULL },
	{ "limits", D_IMPL, NULL },
	{ "unsupported_passes", D_IMPL, NULL },
	{ "unsupported_metrics", D_IMPL, NULL },
	{ "evaluator", D_IMPL, NULL },
	{ "evaluators", D_IMPL, NULL },
	{ "search_strategy", D_IMPL, NULL },
	{ "engine", D_NEST, NULL },
	{ "systems", D_IGNORE, WHY_HOST },
	{ "host", D_IGNORE, WHY_HOST },
	{ "target", D_IGNORE, WHY_HOST },
	{ "azureml_client", D_IGNORE, "quantd does not use Azure ML" },
	{ "auto_optimizer_config", D_IGNORE, "Olive's auto-optimizer picks passes; give quantd the passes to run" },
	{ "cache_dir", D_IGNORE, WHY_CACHE },
	{ "clean_cache", D_IGNORE, WHY_CACHE },
	{ "clean_evaluation_cache", D_IGNORE, WHY_CACHE },
	{ "enable_shared_cache", D_IGNORE, WHY_CACHE },
	{ "output_dir", D_IGNORE, WHY_OUT },
	{ "output_name", D_IGNORE, WHY_OUT },
	{ "packaging_config", D_IGNORE, WHY_OUT },
	{ "no_artifacts", D_IGNORE, WHY_OUT },
	{ "plot_pareto_frontier", D_IGNORE, "the pareto set is reported in metrics.json" },
	{ "evaluate_input_model", D_IGNORE, "quantd always runs the float model beside the quantized one to measure fidelity" },
	{ "log_severity_level", D_IGNORE, WHY_LOG },
	{ "ort_log_severity_level", D_IGNORE, WHY_LOG },
	{ "ort_py_log_severity_level", D_IGNORE, WHY_LOG },
	{ "log_to_file", D_IGNORE, WHY_LOG },
	{ "verbose", D_IGNORE, WHY_LOG },
	{ "workflow_id", D_IGNORE, "a quantd job has its own id" },
	{ "description", D_IGNORE, "informational" },
	{ "name", D_IGNORE, "informational" },
	{ "version", D_IGNORE, "informational" },
	{ "workflow_host", D_IGNORE, WHY_HOST },
	{ "data_root", D_IGNORE, "datasets are uploaded (POST /v1/datasets) and bound by name" },
};

/* keys Olive accepts inside "engine" (the older layout), same meaning as at the top */
static const char *const engine_keys[] = {
	"search_strategy", "evaluator", "host", "target", "cache_dir", "clean_cache",
	"clean_evaluation_cache", "enable_shared_cache", "output_dir", "output_name", "packaging_config",
	"no_artifacts", "plot_pareto_frontier", "evaluate_input_model", "log_severity_level",
	"ort_log_severity_level", "ort_py_log_severity_level", "log_to_file", "verbose", "azureml_client",
	"workflow_id",
};

static const struct key_rule pass_entry_rules[] = {
	{ "host", D_IGNORE, WHY_HOST },
	{ "disable_search", D_IMPL, NULL },
	{ "output_name", D_IGNORE, WHY_OUT },
	{ "clean_run_cache", D_IGNORE, WHY_CACHE },
};

static const struct key_rule input_model_rules[] = {
	{ "type", D_IMPL, NULL },
	{ "config", D_IMPL, NULL },
	{ "model_path", D_IMPL, NULL },
	{ "io_config", D_IMPL, NULL },
	{ "onnx_file_name", D_IGNORE, "quantd reads the uploaded (or --model) file itself" },
	{ "external_initializers_file_name", D_IGNORE, "external data is found beside the model file" },
	{ "constant_inputs_file_name", D_IGNORE, "not used by quantization" },
	{ "model_attributes", D_IGNORE, "not used by quantization" },
	{ "inference_settings", D_IGNORE, "quantd's executor has no session options to set" },
	{ "use_ort_extensions", D_IGNORE, "quantd's executor does not load ORT extensions" },
	{ "generative", D_IGNORE, "not used by quantization" },
	{ "model_loading_args", D_IGNORE, "not used by quantization" },
};

struct chk {
	json_t *problems, *ignored;
	unsigned flags;
	struct qd_err *err;     /* the first problem */
	int first_code;         /* its code */
};

static void problem(struct chk *c, int code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void problem(struct chk *c, int code, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (json_array_size(c->problems) == 0) {
		c->first_code = code;
		if (c->err)
			qd_err_set(c->err, code, field, "%s", msg);
	}
	json_array_append_new(c->problems, json_pack("{s:s, s:s, s:s}", "field", field, "message", msg,
						     "code", qd_err_name(code)));
}

/* a problem from a struct qd_err filled by another validator */
static void problem_err(struct chk *c, const struct qd_err *e, int rc)
{
	problem(c, e->code ? e->code : -rc, e->field, "%s", e->msg[0] ? e->msg : qd_err_msg(rc));
}

static void ignore(struct chk *c, const char *field, const char *why)
{
	json_array_append_new(c->ignored, json_pack("{s:s, s:s}", "field", field, "why", why));
}

static const struct key_rule *rule_find(const struct key_rule *t, size_t n, const char *k)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(t[i].key, k))
			return &t[i];
	return NULL;
}

static bool in_list(const char *const *l, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (!strcmp(l[i], s))
			return true;
	return false;
}

bool qd_olive_only_pass(const char *type)
{
	return in_list(olive_only_passes, QD_ARRAY_LEN(olive_only_passes), type);
}

static void type_list(char *buf, size_t n, bool implemented_only)
{
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < QD_PASS__COUNT; i++) {
		if (implemented_only && !qd_pass_table[i].implemented)
			continue;
		k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%s%s", k ? ", " : "", qd_pass_table[i].name);
	}
}

unsigned qd_workflow_eval_flags(const json_t *wf)
{
	const char *s = json_string_value(json_object_get(wf, "unsupported_metrics"));
	return s && !strcmp(s, "skip") ? QD_EVAL_SKIP_UNSUPPORTED : 0;
}

static void check_evaluator_value(struct chk *c, const json_t *wf, const json_t *v, const char *field);

bool qd_workflow_skip_unsupported(const json_t *wf)
{
	const char *s = json_string_value(json_object_get(wf, "unsupported_passes"));
	return s && !strcmp(s, "skip");
}

/* ---- pass entries ---- */

/* Whether pass `name` ends the (first) pass flow: its evaluator evaluates the output of
 * every run and trial (one evaluator ranks every flow of a search). */
static bool last_of_a_flow(const json_t *wf, const char *name)
{
	json_t *order = qd_workflow_pass_order(wf);
	const char *last = json_string_value(json_array_get(order, json_array_size(order) - 1));
	bool r = last && !strcmp(last, name);
	json_decref(order);
	return r;
}

static void check_pass_entry(struct chk *c, const json_t *wf, const char *name, const json_t *p,
			     const char *base)
{
	char field[256];
	if (!json_is_object(p)) {
		problem(c, QD_EINVAL, base, "pass '%s' must be an object", name);
		return;
	}
	const json_t *t = json_object_get(p, "type");
	snprintf(field, sizeof field, "%s.type", base);
	if (!json_is_string(t)) {
		problem(c, QD_EINVAL, field, "pass '%s' has no \"type\"", name);
		return;
	}
	const char *type = json_string_value(t);
	const struct qd_pass_vt *vt = qd_pass_find(type);
	bool skip = qd_workflow_skip_unsupported(wf);
	char have[512];
	type_list(have, sizeof have, true);
	if (!vt && qd_olive_only_pass(type)) {
		if (skip) {
			char why[256];
			snprintf(why, sizeof why, "skipped: '%s' is an Olive pass quantd does not run "
				 "(unsupported_passes = skip)", type);
			ignore(c, base, why);
		} else {
			problem(c, QD_EUNSUPPORTED, field, "'%s' is an Olive pass quantd does not run: give quantd the "
				"model that pass would produce (e.g. upload the converted or optimized ONNX model), "
				"or set \"unsupported_passes\": \"skip\" to skip it; quantd runs: %s", type, have);
		}
		return;
	}
	if (!vt) {
		problem(c, QD_EINVAL, field, "unknown pass type '%s' (quantd runs: %s)", type, have);
		return;
	}
	if (!vt->implemented) {
		if (skip) {
			char why[256];
			snprintf(why, sizeof why, "skipped: pass type '%s' is not implemented yet "
				 "(unsupported_passes = skip)", vt->name);
			ignore(c, base, why);
		} else {
			problem(c, QD_ENOT_IMPL, field, "pass type '%s' is not implemented yet (quantd runs: %s; "
				"\"unsupported_passes\": \"skip\" skips it)", vt->name, have);
		}
		return;
	}
	/* every unknown key at once, at the top and inside legacy "config" */
	const json_t *cfg = json_object_get(p, "config");
	json_t *clean = json_deep_copy(p);
	bool bad = false;
	const json_t *layers[2] = { p, json_is_object(cfg) ? cfg : NULL };
	for (int l = 0; l < 2; l++) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)layers[l], k, v) {
			if (l == 0 && (!strcmp(k, "type") || !strcmp(k, "config")))
				continue;
			if (qd_pass_param(vt, k))
				continue;
			snprintf(field, sizeof field, "%s.%s%s", base, l ? "config." : "", k);
			if (l == 0 && !strcmp(k, "evaluator")) {
				/* the evaluator of this pass's output (search/eval.c checks its metrics) */
				check_evaluator_value(c, wf, v, field);
				if (!json_is_null(v) && !last_of_a_flow(wf, name))
					ignore(c, field, "only the evaluator of the (first) pass flow's last pass is used: it "
					       "evaluates the output model of the run and of every trial of a search");
				json_object_del(clean, k);
				continue;
			}
			const struct key_rule *r = l == 0 ? rule_find(pass_entry_rules, QD_ARRAY_LEN(pass_entry_rules), k)
							  : NULL;
			if (r) {
				if (r->d == D_IMPL && !json_is_boolean(v))
					problem(c, QD_EINVAL, field, "'%s' must be true or false", field);
				else if (r->d != D_IMPL)
					ignore(c, field, r->why);
				json_object_del(clean, k);
				continue;
			}
			problem(c, QD_EINVAL, field, "unknown parameter '%s' for pass type '%s'", k, vt->name);
			bad = true;
		}
	}
	if (!bad && clean) {
		struct qd_err e = { 0 };
		json_t *space = NULL;
		struct qd_search_strategy ss;
		struct qd_err se = { 0 };
		int rc;
		if (qd_search_strategy_parse(wf, &ss, &se) == 0 && ss.enabled && !strchr(base, '[')) {
			/* a search: combinations the pass rejects are pruned; an empty space is the error */
			struct qd_search_space *sp = NULL;
			json_t *names = json_pack("[s]", name);
			rc = qd_search_space_build(wf, names, QD_SPACE_SEARCH_UNSET, &sp, &e);
			json_decref(names);
			qd_search_space_free(sp);
		} else {
			rc = qd_pass_resolve(vt, name, clean, &space, &e);
			if (rc == 0 && vt->check)
				rc = vt->check(name, space, &e);
		}
		if (rc < 0)
			problem_err(c, &e, rc);
		json_decref(space);
	}
	json_decref(clean);
}

static void check_passes(struct chk *c, const json_t *wf)
{
	const json_t *passes = json_object_get(wf, "passes");
	if (!passes) {
		problem(c, QD_EINVAL, "passes", "workflow has no \"passes\"");
		return;
	}
	if (!json_is_object(passes)) {
		problem(c, QD_EINVAL, "passes", "\"passes\" must be an object (name -> pass)");
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)passes, k, v) {
		char base[160];
		snprintf(base, sizeof base, "passes.%s", k);
		if (json_is_array(v)) {
			/* Olive's pass search: a list of alternative configurations, one dimension of
			 * the search space (search/space.c); without a search the first runs */
			struct qd_search_strategy ss;
			struct qd_err se = { 0 };
			bool search = qd_search_strategy_parse(wf, &ss, &se) == 0 && ss.enabled;
			if (json_array_size(v) == 0)
				problem(c, QD_EINVAL, base, "pass '%s' has an empty list", k);
			size_t i, n0 = json_array_size(c->problems);
			json_t *alt;
			json_array_foreach(v, i, alt) {
				char b2[200];
				snprintf(b2, sizeof b2, "%s[%zu]", base, i);
				check_pass_entry(c, wf, k, alt, b2);
				if (i > 0 && !search)
					ignore(c, b2, "only the first alternative configuration runs without a search_strategy");
			}
			if (search && json_array_size(v) && json_array_size(c->problems) == n0) {
				struct qd_search_space *sp = NULL;
				struct qd_err e = { 0 };
				json_t *names = json_pack("[s]", k);
				int rc = qd_search_space_build(wf, names, QD_SPACE_SEARCH_UNSET, &sp, &e);
				json_decref(names);
				qd_search_space_free(sp);
				if (rc < 0)
					problem_err(c, &e, rc);
			}
			continue;
		}
		check_pass_entry(c, wf, k, v, base);
	}
	const json_t *us = json_object_get(wf, "unsupported_passes");
	if (us && (!json_is_string(us) || (strcmp(json_string_value(us), "skip") &&
					   strcmp(json_string_value(us), "error"))))
		problem(c, QD_EINVAL, "unsupported_passes", "'unsupported_passes' must be \"error\" (the default) "
			"or \"skip\"");
}

static void check_pass_flows(struct chk *c, const json_t *wf)
{
	const json_t *pf = json_object_get(wf, "pass_flows"), *passes = json_object_get(wf, "passes");
	if (!pf)
		return;
	if (!json_is_array(pf) || !json_array_size(pf)) {
		problem(c, QD_EINVAL, "pass_flows", "'pass_flows' must be a non-empty list of lists of pass names");
		return;
	}
	struct qd_search_strategy ss;
	struct qd_err se = { 0 };
	if (qd_search_strategy_parse(wf, &ss, &se) < 0)
		ss.enabled = false;   /* reported by the search_strategy check */
	size_t i, j;
	json_t *flow, *name;
	json_array_foreach(pf, i, flow) {
		char field[64];
		snprintf(field, sizeof field, "pass_flows[%zu]", i);
		if (!json_is_array(flow) || !json_array_size(flow)) {
			problem(c, QD_EINVAL, field, "'%s' must be a non-empty list of pass names", field);
			continue;
		}
		json_array_foreach(flow, j, name) {
			char f2[100];
			snprintf(f2, sizeof f2, "%s[%zu]", field, j);
			if (!json_is_string(name))
				problem(c, QD_EINVAL, f2, "'%s' must be a pass name (a string)", f2);
			else if (!json_object_get(passes, json_string_value(name)))
				problem(c, QD_EINVAL, f2, "pass_flows names pass '%s', which is not in \"passes\"",
					json_string_value(name));
		}
		if (i > 0 && !ss.enabled)
			ignore(c, field, "only the first pass flow runs without a search_strategy (a search walks every "
			       "flow)");
		else if (i > 0 && ss.order != QD_SEARCH_JOINT)
			problem(c, QD_EUNSUPPORTED, field, "a pass-by-pass search walks the first pass flow only: give "
				"\"execution_order\": \"joint\" to search several pass_flows");
	}
}

/* ---- input model ---- */

static void check_input_model(struct chk *c, const json_t *im)
{
	if (!json_is_object(im)) {
		problem(c, QD_EINVAL, "input_model", "'input_model' must be an object ({\"type\": \"ONNXModel\", "
			"\"model_path\": ...})");
		return;
	}
	const json_t *t = json_object_get(im, "type");
	if (t && !json_is_string(t)) {
		problem(c, QD_EINVAL, "input_model.type", "'input_model.type' must be a string");
		return;
	}
	const char *type = t ? json_string_value(t) : "ONNXModel";
	if (strcasecmp(type, "ONNXModel")) {
		bool known = false;
		for (size_t i = 0; i < QD_ARRAY_LEN(non_onnx_models); i++)
			known = known || !strcasecmp(non_onnx_models[i], type);
		if (known)
			problem(c, QD_EUNSUPPORTED, "input_model.type", "input_model of type '%s': quantd quantizes "
				"ONNX models; convert the model to ONNX first (Olive's OnnxConversion, "
				"torch.onnx.export or optimum-cli export onnx) and upload the .onnx file "
				"(POST /v1/models; quantd run --model)", type);
		else
			problem(c, QD_EINVAL, "input_model.type", "unknown input_model type '%s' (quantd takes "
				"\"ONNXModel\")", type);
		return;
	}
	const json_t *cfg = json_object_get(im, "config");
	if (cfg && !json_is_object(cfg)) {
		problem(c, QD_EINVAL, "input_model.config", "'input_model.config' must be an object");
		return;
	}
	const json_t *layers[2] = { im, cfg };
	for (int l = 0; l < 2; l++) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)layers[l], k, v) {
			char field[160];
			snprintf(field, sizeof field, "input_model.%s%s", l ? "config." : "", k);
			const struct key_rule *r = rule_find(input_model_rules, QD_ARRAY_LEN(input_model_rules), k);
			if (!r || (l == 1 && (!strcmp(k, "type") || !strcmp(k, "config")))) {
				problem(c, QD_EINVAL, field, "unknown input_model key '%s'", k);
				continue;
			}
			if (r->d == D_IGNORE) {
				ignore(c, field, r->why);
			} else if (!strcmp(k, "model_path")) {
				if (!json_is_string(v))
					problem(c, QD_EINVAL, field, "'%s' must be a string (a path)", field);
				else if (c->flags & QD_WF_CHECK_MODEL_BOUND)
					ignore(c, field, "the job's model is the one given as \"model\" (REST) or "
					       "--model (quantd run)");
			} else if (!strcmp(k, "io_config") && !json_is_object(v)) {
				problem(c, QD_EINVAL, field, "'%s' must be an object", field);
			}
		}
	}
}

/* ---- evaluator, search, engine ---- */

static void check_evaluator_value(struct chk *c, const json_t *wf, const json_t *v, const char *field)
{
	if (json_is_string(v)) {
		if (!json_object_get(json_object_get(wf, "evaluators"), json_string_value(v)))
			problem(c, QD_EINVAL, field, "'%s' names evaluator '%s', which is not in \"evaluators\"", field,
				json_string_value(v));
		return;
	}
	if (!json_is_object(v) && !json_is_null(v)) {
		problem(c, QD_EINVAL, field, "'%s' must be the name of an entry of \"evaluators\" or an evaluator "
			"object ({\"metrics\": [...]})", field);
		return;
	}
	const json_t *m = json_object_get(v, "metrics");
	if (json_is_object(v) && m && !json_is_array(m))
		problem(c, QD_EINVAL, field, "'%s.metrics' must be a list of metrics", field);
}

static void check_search_strategy(struct chk *c, const json_t *v, const char *field)
{
	static const char *const keys[] = {
		"execution_order", "search_algorithm", "sampler", "search_algorithm_config", "max_iter",
		"max_time", "max_samples", "stop_when_goals_met", "include_pass_params", "output_model_num",
		"seed", "sampler_config", "fallback",
	};
	if (json_is_boolean(v) || json_is_null(v))
		return;
	if (!json_is_object(v)) {
		problem(c, QD_EINVAL, field, "'%s' must be an object, true/false or null", field);
		return;
	}
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)v, k, x) {
		char f2[320];
		snprintf(f2, sizeof f2, "%s.%s", field, k);
		if (!in_list(keys, QD_ARRAY_LEN(keys), k))
			problem(c, QD_EINVAL, f2, "unknown search_strategy key '%s'", k);
		else if ((!strcmp(k, "max_iter") || !strcmp(k, "max_time") || !strcmp(k, "seed") ||
			  !strcmp(k, "max_samples") || !strcmp(k, "output_model_num")) &&
			 !json_is_integer(x) && !json_is_null(x))
			problem(c, QD_EINVAL, f2, "'%s' must be an integer", f2);
		else if (!strcmp(k, "execution_order") && json_is_string(x) &&
			 strcmp(json_string_value(x), "joint") && strcmp(json_string_value(x), "pass-by-pass"))
			problem(c, QD_EINVAL, f2, "'%s' must be \"joint\" or \"pass-by-pass\"", f2);
		else if (!strcmp(k, "stop_when_goals_met") && !json_is_boolean(x))
			problem(c, QD_EINVAL, f2, "'%s' must be true or false", f2);
	}
}

static void check_key(struct chk *c, const json_t *wf, const char *k, const json_t *v, const char *prefix);

static void check_engine(struct chk *c, const json_t *wf, const json_t *v)
{
	if (!json_is_object(v)) {
		problem(c, QD_EINVAL, "engine", "'engine' must be an object");
		return;
	}
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)v, k, x) {
		if (!in_list(engine_keys, QD_ARRAY_LEN(engine_keys), k)) {
			char f[160];
			snprintf(f, sizeof f, "engine.%s", k);
			problem(c, QD_EINVAL, f, "unknown engine key '%s'", k);
			continue;
		}
		check_key(c, wf, k, x, "engine.");
	}
}

static void check_key(struct chk *c, const json_t *wf, const char *k, const json_t *v, const char *prefix)
{
	char field[160];
	snprintf(field, sizeof field, "%s%s", prefix, k);
	const struct key_rule *r = rule_find(top_rules, QD_ARRAY_LEN(top_rules), k);
	if (!r) {
		problem(c, QD_EINVAL, field, "unknown workflow key '%s'", k);
		return;
	}
	if (r->d == D_IGNORE) {
		if ((!strcmp(k, "systems") || !strcmp(k, "packaging_config")) && !json_is_object(v) &&
		    !json_is_array(v) && !json_is_null(v))
			problem(c, QD_EINVAL, field, "'%s' must be an object", field);
		else if ((!strcmp(k, "host") || !strcmp(k, "target")) && !json_is_string(v) && !json_is_object(v) &&
			 !json_is_null(v))
			problem(c, QD_EINVAL, field, "'%s' must be a system name or a system object", field);
		else
			ignore(c, field, r->why);
		return;
	}
	if (!strcmp(k, "evaluator")) {
		check_evaluator_value(c, wf, v, field);
	} else if (!strcmp(k, "evaluators")) {
		if (!json_is_object(v)) {
			problem(c, QD_EINVAL, field, "'evaluators' must be an object (name -> evaluator)");
			return;
		}
		const char *n;
		json_t *e;
		json_object_foreach((json_t *)v, n, e) {
			char f2[200];
			snprintf(f2, sizeof f2, "evaluators.%s", n);
			if (!json_is_object(e))
				problem(c, QD_EINVAL, f2, "'%s' must be an evaluator object ({\"metrics\": [...]})", f2);
		}
	} else if (!strcmp(k, "search_strategy")) {
		size_t before = json_array_size(c->problems);
		check_search_strategy(c, v, field);
		struct qd_search_strategy ss;
		struct qd_err se = { 0 };
		json_t *probe = json_pack("{s:O}", "search_strategy", v);
		if (probe && json_array_size(c->problems) == before && qd_search_strategy_parse(probe, &ss, &se) < 0) {
			char f[300];
			snprintf(f, sizeof f, "%s%s", prefix, se.field);
			problem(c, se.code, f, "%s", se.msg);
		}
		json_decref(probe);
	} else if (!strcmp(k, "engine")) {
		check_engine(c, wf, v);
	}
}

/* ---- evaluators (search/eval.c): every metric, sub_type and goal ---- */

static bool listed(const json_t *list, const char *a, const char *av, const char *b, const char *bv)
{
	size_t i;
	json_t *x;
	json_array_foreach(list, i, x)
		if (!strcmp(json_string_value(json_object_get(x, a)) ?: "", av) &&
		    !strcmp(json_string_value(json_object_get(x, b)) ?: "", bv))
			return true;
	return false;
}

/* The evaluation plan of the workflow and of each pass with its own evaluator; a named
 * evaluator several passes share is reported once. */
static void check_evaluators(struct chk *c, const json_t *wf)
{
	const json_t *passes = json_object_get(wf, "passes");
	unsigned flags = qd_workflow_eval_flags(wf);
	const char *us = NULL;
	const json_t *usv = json_object_get(wf, "unsupported_metrics");
	if (usv && (!(us = json_string_value(usv)) || (strcmp(us, "skip") && strcmp(us, "error"))))
		problem(c, QD_EINVAL, "unsupported_metrics", "'unsupported_metrics' must be \"error\" (the default) "
			"or \"skip\"");
	json_t *names = json_array();
	json_array_append_new(names, json_null());
	const char *pk;
	json_t *pv;
	json_object_foreach((json_t *)passes, pk, pv) {
		const json_t *p = json_is_array(pv) ? json_array_get(pv, 0) : pv;
		if (json_is_object(p) && json_object_get(p, "evaluator") && !json_is_null(json_object_get(p, "evaluator")))
			json_array_append_new(names, json_string(pk));
	}
	size_t i;
	json_t *n;
	json_array_foreach(names, i, n) {
		json_t *pr = json_array(), *ig = json_array();
		struct qd_eval_plan *plan = NULL;
		qd_eval_plan_parse(wf, json_string_value(n), flags, &plan, pr, ig, NULL);
		qd_eval_plan_free(plan);
		size_t j;
		json_t *x;
		json_array_foreach(pr, j, x) {
			const char *f = json_string_value(json_object_get(x, "field")) ?: "";
			const char *m = json_string_value(json_object_get(x, "message")) ?: "";
			if (!listed(c->problems, "field", f, "message", m))
				problem(c, qd_err_from_name(json_string_value(json_object_get(x, "code")) ?: "INVAL") ?: QD_EINVAL,
					f, "%s", m);
		}
		json_array_foreach(ig, j, x) {
			const char *f = json_string_value(json_object_get(x, "field")) ?: "";
			const char *w = json_string_value(json_object_get(x, "why")) ?: "";
			if (!listed(c->ignored, "field", f, "why", w))
				ignore(c, f, w);
		}
		json_decref(pr);
		json_decref(ig);
	}
	json_decref(names);
}

/* ---- bindings ---- */

static void check_datasets(struct chk *c, const json_t *wf)
{
	const json_t *ds = json_object_get(wf, "datasets");
	if (!ds)
		return;
	if (!json_is_object(ds)) {
		problem(c, QD_EINVAL, "datasets", "'datasets' must be an object (data config name -> dataset id)");
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)ds, k, v) {
		char f[160];
		snprintf(f, sizeof f, "datasets.%s", k);
		if (!json_is_string(v))
			problem(c, QD_EINVAL, f, "'%s' must be a dataset id (POST /v1/datasets) or a file path "
				"(quantd run)", f);
		else if (!qd_data_config_find(wf, k))
			problem(c, QD_EINVAL, f, "'datasets' binds '%s', which is not a data config of the workflow", k);
	}
}

int qd_workflow_bind_datasets(json_t *wf)
{
	const json_t *ds = json_object_get(wf, "datasets");
	if (!json_is_object(ds))
		return 0;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)ds, k, v) {
		json_t *dc = (json_t *)qd_data_config_find(wf, k);
		if (json_is_object(dc) && json_is_string(v))
			json_object_set(dc, "dataset", v);
	}
	return 0;
}

static void check_limits(struct chk *c, const json_t *lim)
{
	if (!lim)
		return;
	if (!json_is_object(lim)) {
		problem(c, QD_EINVAL, "limits", "'limits' must be an object "
			"({\"max_job_seconds\", \"max_job_memory_mb\", \"max_output_mb\"})");
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)lim, k, v) {
		char field[200];
		snprintf(field, sizeof field, "limits.%s", k);
		if (strcmp(k, "max_job_seconds") && strcmp(k, "max_job_memory_mb") && strcmp(k, "max_output_mb"))
			problem(c, QD_EINVAL, field, "unknown limit '%s' (max_job_seconds, max_job_memory_mb, "
				"max_output_mb)", k);
		else if (!json_is_integer(v) || json_integer_value(v) < 1)
			problem(c, QD_EINVAL, field, "'%s' must be a positive integer", field);
	}
}

int qd_workflow_check(const json_t *wf, unsigned flags, json_t **problems, json_t **ignored, struct qd_err *err)
{
	struct chk c = { json_array(), json_array(), flags, err };
	if (problems)
		*problems = NULL;
	if (ignored)
		*ignored = NULL;
	if (!c.problems || !c.ignored) {
		json_decref(c.problems);
		json_decref(c.ignored);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	if (!json_is_object(wf)) {
		problem(&c, QD_EINVAL, "", "workflow must be a JSON object");
	} else {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)wf, k, v)
			check_key(&c, wf, k, v, "");
		check_passes(&c, wf);
		check_pass_flows(&c, wf);
		if (json_object_get(wf, "input_model"))
			check_input_model(&c, json_object_get(wf, "input_model"));
		check_limits(&c, json_object_get(wf, "limits"));
		check_datasets(&c, wf);
		struct qd_err e = { 0 };
		int rc = qd_data_configs_validate(wf, &e);
		if (rc < 0)
			problem_err(&c, &e, rc);
		check_evaluators(&c, wf);
	}
	int rc = json_array_size(c.problems) ? -c.first_code : 0;
	if (problems)
		*problems = c.problems;
	else
		json_decref(c.problems);
	if (ignored)
		*ignored = c.ignored;
	else
		json_decref(c.ignored);
	return rc;
}

json_t *qd_workflow_pass_order(const json_t *wf)
{
	json_t *order = json_array();
	const json_t *passes = json_object_get(wf, "passes");
	const json_t *flow = json_array_get(json_object_get(wf, "pass_flows"), 0);
	bool skip = qd_workflow_skip_unsupported(wf);
	size_t i;
	json_t *n;
	if (json_is_array(flow)) {
		json_array_foreach(flow, i, n)
			json_array_append(order, n);
	} else {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)passes, k, v)
			json_array_append_new(order, json_string(k));
	}
	if (!skip)
		return order;
	json_t *kept = json_array();
	json_array_foreach(order, i, n) {
		const json_t *p = json_object_get(passes, json_string_value(n));
		if (json_is_array(p))
			p = json_array_get(p, 0);
		const struct qd_pass_vt *vt = qd_pass_find(json_string_value(json_object_get(p, "type")));
		if (vt && vt->implemented)
			json_array_append(kept, n);
	}
	json_decref(order);
	return kept;
}
