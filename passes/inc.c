/* passes/inc.c — Intel Neural Compressor's passes, IncQuantization, IncStaticQuantization
 * and IncDynamicQuantization (reference/inc_vitis_qnn.md §A, reference/olive.md §1.2), as
 * translations onto quantd's own passes: approach static → OnnxStaticQuantization,
 * dynamic → OnnxDynamicQuantization, weight_only → OnnxMatMulNBits (RTN / GPTQ / AWQ /
 * HQQ). INC's pre-optimization and recipes are applied around them here.
 *
 * DESIGN
 * - One check and one run function serve the three rows; `approach` is fixed by the
 *   Dynamic / Static rows. The translated parameters are resolved against the target
 *   pass's own schema (its defaults for the rest), so an INC job and the equivalent
 *   OnnxStaticQuantization / OnnxDynamicQuantization job run the same code on the same
 *   configuration and give the same model.
 * - INC's defaults as quantd maps them: static weights int8 symmetric per tensor,
 *   activations uint8 asymmetric, MinMax calibration (INC's first capability option);
 *   dynamic weights int8 symmetric per tensor, DynamicQuantizeLinear activations.
 * - Pre-optimization (before any recipe): unnamed or duplicate node names become
 *   `<op>_nc_rename_<i>` (INC's rename), Gemm → MatMul (+ Add) with gemm_to_matmul, and
 *   graph_optimization_level DISABLE_ALL turns quantd's own preprocessing off (any other
 *   level keeps it: constant folding, BatchNormalization folding).
 * - Node recipes (first / last Conv-or-MatMul, pre/post processing) become the target
 *   pass's nodes_to_exclude; Q/DQ recipes become its extra options.
 * - Every parameter is used, or logged as having no effect with the reason, or refused
 *   at submit time (qd_pass_check_inc) with the field's path. */
#include "passes/passes.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "passes/op_rules.h"
#include "search/eval.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- submit-time checks ---- */

/* recipes quantd implements, with the JSON type each takes */
static const struct { const char *key; const char *type; } inc_recipes[] = {
	{"smooth_quant", "bool"}, {"smooth_quant_args", "object"},
	{"layer_wise_quant", "bool"}, {"layer_wise_quant_args", "object"},
	{"fast_bias_correction", "bool"}, {"weight_correction", "bool"},
	{"gemm_to_matmul", "bool"}, {"graph_optimization_level", "string"},
	{"first_conv_or_matmul_quantization", "bool"}, {"last_conv_or_matmul_quantization", "bool"},
	{"pre_post_process_quantization", "bool"}, {"add_qdq_pair_to_weight", "bool"},
	{"dedicated_qdq_pair", "bool"}, {"optypes_to_exclude_output_quant", "list"},
	{"rtn_args", "object"}, {"gptq_args", "object"}, {"awq_args", "object"},
	{"teq_args", "object"}, {"autoround_args", "object"},
};

static bool json_has_type(const json_t *v, const char *type)
{
	if (!strcmp(type, "bool"))
		return json_is_boolean(v);
	if (!strcmp(type, "object"))
		return json_is_object(v);
	if (!strcmp(type, "string"))
		return json_is_string(v);
	if (!strcmp(type, "list")) {
		size_t i; json_t *x;
		if (!json_is_array(v))
			return false;
		json_array_foreach(v, i, x)
			if (!json_is_string(x))
				return false;
		return true;
	}
	return false;
}

/* keys of a sub-object allowed, each with a check; returns 0 or the error */
struct sub_key { const char *key, *type; };

static int check_keys(const char *field, const json_t *obj, const struct sub_key *keys, size_t n,
		      struct qd_err *err)
{
	char f[256];
	const char *k; json_t *v;
	json_object_foreach((json_t *)obj, k, v) {
		size_t i;
		for (i = 0; i < n; i++)
			if (!strcmp(keys[i].key, k))
				break;
		snprintf(f, sizeof f, "%s.%s", field, k);
		if (i == n) {
			char list[400] = "";
			size_t off = 0;
			for (size_t j = 0; j < n && off < sizeof list; j++)
				off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", j ? ", " : "", keys[j].key);
			return qd_err_set(err, QD_EINVAL, f, "unknown key '%s' (known: %s)", k, list);
		}
		const char *t = keys[i].type;
		bool ok = !strcmp(t, "number") ? json_is_number(v) : !strcmp(t, "int") ? json_is_integer(v)
			  : !strcmp(t, "any") ? true : json_has_type(v, t);
		if (!ok && !json_is_null(v))
			return qd_err_set(err, QD_EINVAL, f, "'%s' must be of type %s", k, t);
	}
	return 0;
}

static bool pow2_ge16(json_int_t v)
{
	return v >= 16 && (v & (v - 1)) == 0;
}

static const char *const wo_algos[] = {"RTN", "GPTQ", "AWQ", "HQQ"};

/* weight_only_config (or an op_type_dict entry's "weight"): bits, group_size, scheme,
 * algorithm. *algo gets the upper-cased algorithm (Olive upper-cases it). */
static int check_woq(const char *field, const json_t *w, char algo[16], struct qd_err *err)
{
	static const struct sub_key keys[] = {
		{"bits", "int"}, {"group_size", "int"}, {"scheme", "string"}, {"algorithm", "string"},
	};
	int rc = check_keys(field, w, keys, QD_ARRAY_LEN(keys), err);
	if (rc < 0)
		return rc;
	char f[256];
	const json_t *b = json_object_get(w, "bits"), *g = json_object_get(w, "group_size");
	const json_t *s = json_object_get(w, "scheme"), *a = json_object_get(w, "algorithm");
	snprintf(f, sizeof f, "%s.bits", field);
	if (b && json_integer_value(b) != 4 && json_integer_value(b) != 8)
		return qd_err_set(err, QD_EINVAL, f, "bits %lld is not supported: 4 or 8 (MatMulNBits)",
				  (long long)json_integer_value(b));
	snprintf(f, sizeof f, "%s.group_size", field);
	if (g && json_integer_value(g) != -1 && !pow2_ge16(json_integer_value(g)))
		return qd_err_set(err, QD_EINVAL, f, "group_size %lld is not a power of two >= 16 (MatMulNBits' "
				  "blocks) or -1 (per channel)%s", (long long)json_integer_value(g), json_integer_value(g) == 4 ?
				  "; 4 is Olive's default weight_only_config value: set group_size (32 is INC's own "
				  "default)" : "");
	snprintf(f, sizeof f, "%s.scheme", field);
	if (s && strcmp(json_string_value(s), "sym") && strcmp(json_string_value(s), "asym"))
		return qd_err_set(err, QD_EINVAL, f, "scheme '%s' is not one of sym, asym", json_string_value(s));
	snprintf(f, sizeof f, "%s.algorithm", field);
	snprintf(algo, 16, "%s", a ? json_string_value(a) : "RTN");
	for (char *p = algo; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	for (size_t i = 0; i < QD_ARRAY_LEN(wo_algos); i++)
		if (!strcmp(algo, wo_algos[i]))
			return 0;
	return qd_err_set(err, QD_ENOT_IMPL, f, "weight-only algorithm '%s' is not implemented (RTN, GPTQ, AWQ, "
			  "HQQ; INC's TEQ is PyTorch-only and AutoRound has no ONNX adapter)", json_string_value(a));
}

static int check_recipes(const char *pass, const json_t *r, const char *approach, struct qd_err *err)
{
	char f[256];
	const char *k; json_t *v;
	json_object_foreach((json_t *)r, k, v) {
		size_t i;
		for (i = 0; i < QD_ARRAY_LEN(inc_recipes); i++)
			if (!strcmp(inc_recipes[i].key, k))
				break;
		snprintf(f, sizeof f, "passes.%s.recipes.%s", pass, k);
		if (i == QD_ARRAY_LEN(inc_recipes))
			return qd_err_set(err, QD_EINVAL, f, "unknown recipe '%s'", k);
		if (!json_has_type(v, inc_recipes[i].type))
			return qd_err_set(err, QD_EINVAL, f, "recipe '%s' must be of type %s", k, inc_recipes[i].type);
		if ((!strcmp(k, "fast_bias_correction") || !strcmp(k, "weight_correction")) && json_is_true(v))
			return qd_err_set(err, QD_ENOT_IMPL, f, "recipe '%s' is not implemented by quantd", k);
		if (!strcmp(k, "teq_args") || !strcmp(k, "autoround_args"))
			return qd_err_set(err, QD_ENOT_IMPL, f, "recipe '%s' is not implemented: INC's ONNX adapter "
					  "has no %s", k, !strcmp(k, "teq_args") ? "TEQ (PyTorch only)" : "AutoRound");
		if (!strcmp(k, "graph_optimization_level")) {
			const char *l = json_string_value(v);
			if (strcmp(l, "DISABLE_ALL") && strcmp(l, "ENABLE_BASIC") && strcmp(l, "ENABLE_EXTENDED") &&
			    strcmp(l, "ENABLE_ALL"))
				return qd_err_set(err, QD_EINVAL, f, "graph_optimization_level '%s' is not one of "
						  "DISABLE_ALL, ENABLE_BASIC, ENABLE_EXTENDED, ENABLE_ALL", l);
		}
		if (!strcmp(k, "smooth_quant") && json_is_true(v) && strcmp(approach, "static"))
			return qd_err_set(err, QD_EUNSUPPORTED, f, "smooth_quant applies to the static approach only "
					  "(it needs calibrated activation ranges; approach is '%s')", approach);
		if (!strcmp(k, "smooth_quant_args")) {
			static const struct sub_key sk[] = {
				{"alpha", "any"}, {"folding", "bool"}, {"percentile", "number"}, {"op_types", "list"},
				{"scales_per_op", "bool"}, {"calib_iter", "int"}, {"auto_alpha_args", "object"},
			};
			int rc = check_keys(f, v, sk, QD_ARRAY_LEN(sk), err);
			if (rc < 0)
				return rc;
			const json_t *a = json_object_get(v, "alpha");
			char fa[300];
			snprintf(fa, sizeof fa, "%s.alpha", f);
			bool isauto = json_is_string(a) && !strcmp(json_string_value(a), "auto");
			if (json_is_array(a)) {
				size_t j; json_t *o;
				if (!json_array_size(a) || json_array_size(a) > 128)
					return qd_err_set(err, QD_EINVAL, fa, "a list of alphas needs 1 to 128 values");
				json_array_foreach(a, j, o)
					if (!(json_is_number(o) && json_number_value(o) >= 0 && json_number_value(o) <= 1))
						return qd_err_set(err, QD_EINVAL, fa, "each alpha of the list must be a number "
								  "in [0, 1]");
			} else if (a && !isauto && !(json_is_number(a) && json_number_value(a) >= 0 && json_number_value(a) <= 1)) {
				return qd_err_set(err, QD_EINVAL, fa, "alpha must be a number in [0, 1], \"auto\" or a list "
						  "of numbers in [0, 1]");
			}
			const json_t *aa = json_object_get(v, "auto_alpha_args");
			snprintf(fa, sizeof fa, "%s.auto_alpha_args", f);
			if (aa && !isauto)
				return qd_err_set(err, QD_EINVAL, fa, "auto_alpha_args applies to alpha \"auto\" only");
			if (aa) {
				static const struct sub_key ak[] = {
					{"alpha_min", "number"}, {"alpha_max", "number"}, {"alpha_step", "number"},
					{"attn_method", "string"},
				};
				if ((rc = check_keys(fa, aa, ak, QD_ARRAY_LEN(ak), err)) < 0)
					return rc;
				const json_t *x;
				double lo = (x = json_object_get(aa, "alpha_min")) ? json_number_value(x) : 0.3;
				double hi = (x = json_object_get(aa, "alpha_max")) ? json_number_value(x) : 0.7;
				double st = (x = json_object_get(aa, "alpha_step")) ? json_number_value(x) : 0.05;
				const char *am = json_string_value(json_object_get(aa, "attn_method"));
				if (!(lo >= 0 && hi <= 1 && lo <= hi))
					return qd_err_set(err, QD_EINVAL, fa, "alpha_min and alpha_max must satisfy 0 <= "
							  "alpha_min <= alpha_max <= 1");
				if (!(st > 0) || (hi - lo) / st > 127)
					return qd_err_set(err, QD_EINVAL, fa, "alpha_step must be > 0 and give at most 128 "
							  "candidates");
				if (am && strcmp(am, "min") && strcmp(am, "max") && strcmp(am, "mean"))
					return qd_err_set(err, QD_EINVAL, fa, "attn_method '%s' is not one of min, max, mean",
							  am);
			}
			const json_t *ci = json_object_get(v, "calib_iter");
			snprintf(fa, sizeof fa, "%s.calib_iter", f);
			if (ci && json_integer_value(ci) < 1)
				return qd_err_set(err, QD_EINVAL, fa, "calib_iter must be >= 1");
			size_t j; json_t *o;
			snprintf(fa, sizeof fa, "%s.op_types", f);
			json_array_foreach(json_object_get(v, "op_types"), j, o)
				if (strcmp(json_string_value(o), "MatMul") && strcmp(json_string_value(o), "Gemm") &&
				    strcmp(json_string_value(o), "Conv") && strcmp(json_string_value(o), "FusedConv"))
					return qd_err_set(err, QD_EINVAL, fa, "op type '%s' cannot be smoothed (Gemm, Conv, "
							  "MatMul, FusedConv)", json_string_value(o));
		}
		if (!strcmp(k, "gptq_args")) {
			static const struct sub_key sk[] = {
				{"percdamp", "number"}, {"blocksize", "int"}, {"actorder", "bool"}, {"mse", "bool"},
				{"perchannel", "bool"}, {"accuracy_level", "int"}, {"static_groups", "bool"},
			};
			int rc = check_keys(f, v, sk, QD_ARRAY_LEN(sk), err);
			if (rc < 0)
				return rc;
			const json_t *p = json_object_get(v, "percdamp");
			char fa[300];
			snprintf(fa, sizeof fa, "%s.percdamp", f);
			if (p && !(json_number_value(p) > 0 && json_number_value(p) < 10))
				return qd_err_set(err, QD_EINVAL, fa, "percdamp must be a number in (0, 10)");
			snprintf(fa, sizeof fa, "%s.static_groups", f);
			if (json_is_false(json_object_get(v, "static_groups")) && json_is_true(json_object_get(v, "actorder")))
				return qd_err_set(err, QD_EUNSUPPORTED, fa, "quantd's GPTQ with actorder always keeps static "
						  "groups (parameters from the original rows, MatMulNBits' layout)");
		}
		if (!strcmp(k, "rtn_args") || !strcmp(k, "awq_args")) {
			static const struct sub_key rk[] = { {"accuracy_level", "int"} };
			static const struct sub_key ak[] = {
				{"enable_auto_scale", "bool"}, {"enable_mse_search", "bool"}, {"accuracy_level", "int"},
			};
			int rc = !strcmp(k, "rtn_args") ? check_keys(f, v, rk, 1, err) : check_keys(f, v, ak, 3, err);
			if (rc < 0)
				return rc;
		}
		if (strstr(k, "_args") && json_object_get(v, "accuracy_level")) {
			json_int_t al = json_integer_value(json_object_get(v, "accuracy_level"));
			char fa[300];
			snprintf(fa, sizeof fa, "%s.accuracy_level", f);
			if (al < 0 || al > 4)
				return qd_err_set(err, QD_EINVAL, fa, "accuracy_level must be 0..4");
		}
	}
	return 0;
}

static int check_tuning(const char *pass, const json_t *tc, const json_t *ql, struct qd_err *err)
{
	char f[256];
	snprintf(f, sizeof f, "passes.%s.tuning_criterion", pass);
	static const struct sub_key keys[] = {
		{"strategy", "string"}, {"strategy_kwargs", "object"}, {"timeout", "number"}, {"max_trials", "int"},
		{"objective", "string"},
	};
	int rc = check_keys(f, tc, keys, QD_ARRAY_LEN(keys), err);
	if (rc < 0)
		return rc;
	const char *st = json_string_value(json_object_get(tc, "strategy"));
	const char *ob = json_string_value(json_object_get(tc, "objective"));
	bool level1 = json_is_integer(ql) && json_integer_value(ql) == 1;
	snprintf(f, sizeof f, "passes.%s.tuning_criterion.strategy", pass);
	if (st && strcmp(st, "basic") && level1)
		return qd_err_set(err, QD_ENOT_IMPL, f, "tuning strategy '%s' is not implemented: basic only", st);
	snprintf(f, sizeof f, "passes.%s.tuning_criterion.strategy_kwargs", pass);
	const json_t *kw = json_object_get(tc, "strategy_kwargs");
	if (json_is_object(kw) && json_object_size(kw))
		return qd_err_set(err, QD_ENOT_IMPL, f, "strategy_kwargs are not implemented (the basic strategy "
				  "takes none)");
	snprintf(f, sizeof f, "passes.%s.tuning_criterion.objective", pass);
	if (ob && strcmp(ob, "performance") && strcmp(ob, "modelsize") && strcmp(ob, "footprint"))
		return qd_err_set(err, QD_EINVAL, f, "objective '%s' is not one of performance, modelsize, footprint", ob);
	const json_t *mt = json_object_get(tc, "max_trials"), *to = json_object_get(tc, "timeout");
	snprintf(f, sizeof f, "passes.%s.tuning_criterion.max_trials", pass);
	if (mt && json_integer_value(mt) < 1)
		return qd_err_set(err, QD_EINVAL, f, "max_trials must be >= 1");
	snprintf(f, sizeof f, "passes.%s.tuning_criterion.timeout", pass);
	if (to && json_number_value(to) < 0)
		return qd_err_set(err, QD_EINVAL, f, "timeout must be >= 0 seconds");
	snprintf(f, sizeof f, "passes.%s.quant_level", pass);
	if (!(json_is_string(ql) && !strcmp(json_string_value(ql), "auto")) &&
	    !(json_is_integer(ql) && (json_integer_value(ql) == 0 || json_integer_value(ql) == 1)))
		return qd_err_set(err, QD_EINVAL, f, "quant_level must be \"auto\", 0 or 1");
	if (json_is_integer(ql) && json_integer_value(ql) == 0)
		return qd_err_set(err, QD_ENOT_IMPL, f, "quant_level 0 (INC's conservative strategy) is not "
				  "implemented: use 1 (basic) or \"auto\"");
	return 0;
}

static int check_criterion(const char *pass, const json_t *ac, struct qd_err *err)
{
	char f[256];
	snprintf(f, sizeof f, "passes.%s.accuracy_criterion", pass);
	static const struct sub_key keys[] = {
		{"criterion", "string"}, {"higher_is_better", "bool"}, {"tolerable_loss", "number"},
		{"relative", "number"}, {"absolute", "number"},
	};
	int rc = check_keys(f, ac, keys, QD_ARRAY_LEN(keys), err);
	if (rc < 0)
		return rc;
	const char *c = json_string_value(json_object_get(ac, "criterion"));
	snprintf(f, sizeof f, "passes.%s.accuracy_criterion.criterion", pass);
	if (c && strcmp(c, "relative") && strcmp(c, "absolute"))
		return qd_err_set(err, QD_EINVAL, f, "criterion '%s' is not one of relative, absolute", c);
	return 0;
}

static int check_sizes(const char *pass, const json_t *v, struct qd_err *err)
{
	char f[256];
	snprintf(f, sizeof f, "passes.%s.calibration_sampling_size", pass);
	if (json_is_integer(v))
		return json_integer_value(v) > 0 ? 0 : qd_err_set(err, QD_EINVAL, f, "calibration_sampling_size "
								   "must be a positive integer");
	if (!json_is_array(v) || !json_array_size(v))
		return qd_err_set(err, QD_EINVAL, f, "calibration_sampling_size must be a positive integer or a "
				  "non-empty list of them");
	size_t i; json_t *x;
	json_array_foreach(v, i, x)
		if (!json_is_integer(x) || json_integer_value(x) <= 0)
			return qd_err_set(err, QD_EINVAL, f, "calibration_sampling_size must hold positive integers");
	return 0;
}

/* The metric through the evaluator's own parser (its data_config is checked at run time,
 * where the workflow's data_configs are known); the error's field is renamed
 * passes.<pass>.metric.<...>. */
static int check_metric(const char *pass, const json_t *metric, struct qd_err *err)
{
	json_t *mc = json_deep_copy(metric);
	if (!mc)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	json_object_del(mc, "data_config");
	json_t *wf = json_pack("{s:{s:[o]}}", "evaluator", "metrics", mc);
	struct qd_eval_plan *plan = NULL;
	json_t *problems = json_array();
	int rc = wf && problems ? qd_eval_plan_parse(wf, NULL, 0, &plan, problems, NULL, err)
				: qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (rc == 0 && plan->n_obj == 0)
		rc = qd_err_set(err, QD_EINVAL, "", "the metric has no sub_type to tune on");
	if (rc < 0) {
		const char *pre = "evaluator.metrics[0]";
		char f[sizeof err->field];
		snprintf(f, sizeof f, "passes.%s.metric%s", pass,
			 !strncmp(err->field, pre, strlen(pre)) ? err->field + strlen(pre) : "");
		snprintf(err->field, sizeof err->field, "%s", f);
	}
	qd_eval_plan_free(plan);
	json_decref(problems);
	json_decref(wf);
	return rc;
}

/* One configuration of the space. */
static int check_one(const char *pass, const json_t *c, struct qd_err *err)
{
	char f[256];
	const char *approach = json_string_value(json_object_get(c, "approach"));
	const json_t *dc = json_object_get(c, "data_config");
	bool has_dc = dc && !json_is_null(dc);
	int rc;
	if ((rc = check_recipes(pass, json_object_get(c, "recipes"), approach, err)) < 0)
		return rc;
	if ((rc = check_tuning(pass, json_object_get(c, "tuning_criterion"), json_object_get(c, "quant_level"), err)) < 0)
		return rc;
	const json_t *ac = json_object_get(c, "accuracy_criterion");
	if (json_is_object(ac) && (rc = check_criterion(pass, ac, err)) < 0)
		return rc;
	const json_t *mt = json_object_get(c, "metric");
	if (json_is_object(mt) && (rc = check_metric(pass, mt, err)) < 0)
		return rc;
	const json_t *css = json_object_get(c, "calibration_sampling_size");
	if (css && (rc = check_sizes(pass, css, err)) < 0)
		return rc;
	size_t i; json_t *x;
	snprintf(f, sizeof f, "passes.%s.excluded_precisions", pass);
	json_array_foreach(json_object_get(c, "excluded_precisions"), i, x)
		if (strcmp(json_string_value(x), "bf16") && strcmp(json_string_value(x), "fp16"))
			return qd_err_set(err, QD_EINVAL, f, "excluded precision '%s' is not one of bf16, fp16",
					  json_string_value(x));
	if (!strcmp(approach, "static") && !has_dc) {
		snprintf(f, sizeof f, "passes.%s.data_config", pass);
		return qd_err_set(err, QD_EINVAL, f, "static quantization needs calibration data: set \"data_config\" "
				  "to a data_configs name");
	}
	if (strcmp(approach, "weight_only"))
		return 0;
	char algo[16];
	snprintf(f, sizeof f, "passes.%s.weight_only_config", pass);
	if ((rc = check_woq(f, json_object_get(c, "weight_only_config"), algo, err)) < 0)
		return rc;
	const char *k; json_t *v;
	json_object_foreach(json_object_get(c, "op_type_dict"), k, v) {
		snprintf(f, sizeof f, "passes.%s.op_type_dict.%s", pass, k);
		if (strcmp(k, ".*") && strcmp(k, "MatMul"))
			return qd_err_set(err, QD_EUNSUPPORTED, f, "op type '%s': weight-only quantization handles "
					  "MatMul (key \"MatMul\" or \".*\")", k);
		static const struct sub_key ok[] = { {"weight", "object"} };
		if (!json_is_object(v))
			return qd_err_set(err, QD_EINVAL, f, "op_type_dict entry must be an object {\"weight\": {...}}");
		if ((rc = check_keys(f, v, ok, 1, err)) < 0)
			return rc;
		char f2[300];
		snprintf(f2, sizeof f2, "%s.weight", f);
		char a2[16];
		if (json_object_get(v, "weight") && (rc = check_woq(f2, json_object_get(v, "weight"), a2, err)) < 0)
			return rc;
		if (json_object_get(json_object_get(v, "weight"), "algorithm"))
			memcpy(algo, a2, sizeof algo);
	}
	if ((!strcmp(algo, "GPTQ") || !strcmp(algo, "AWQ")) && !has_dc) {
		snprintf(f, sizeof f, "passes.%s.data_config", pass);
		return qd_err_set(err, QD_EINVAL, f, "weight-only %s needs calibration data: set \"data_config\" to a "
				  "data_configs name", algo);
	}
	return 0;
}

/* Every combination of the searched parameters that interact (approach, data_config,
 * weight_only_config, recipes) is checked; the others one by one. */
int qd_pass_check_inc(const char *pass_name, const json_t *space, struct qd_err *err)
{
	json_t *c = qd_pass_space_first(space);
	if (!c)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	int rc = 0;
	size_t i, j, k, l; json_t *a, *d, *w, *r;
	json_t *none = json_array();
	json_array_append_new(none, json_null());
	const json_t *dcs = json_object_get(space, "data_config") ? json_object_get(space, "data_config") : none;
	json_array_foreach(json_object_get(space, "approach"), i, a)
		json_array_foreach(dcs, j, d)
			json_array_foreach(json_object_get(space, "weight_only_config"), k, w)
				json_array_foreach(json_object_get(space, "recipes"), l, r) {
					if (rc < 0)
						break;
					json_object_set(c, "approach", a);
					json_object_set(c, "data_config", d);
					json_object_set(c, "weight_only_config", w);
					json_object_set(c, "recipes", r);
					rc = check_one(pass_name, c, err);
				}
	json_decref(none);
	json_decref(c);
	if (rc == 0)
		rc = qd_pass_check_external(pass_name, space, err);
	return rc;
}

/* ---- the run ---- */

struct inc {
	struct qd_pass_ctx *pc;
	const json_t *params;
	const char *approach;
	const json_t *recipes;
	bool trt;                   /* backend onnxrt_trt_ep: INC's TensorRT rules */
	bool qdq;
	char algo[16];              /* weight-only */
	const json_t *woq;          /* weight_only_config merged with op_type_dict (new) */
	int64_t sizes[16];          /* calibration_sampling_size candidates */
	size_t n_sizes;
	json_t *log;                /* stats: what each parameter became */
};

static const json_t *recipe(const struct inc *s, const char *k)
{
	return json_object_get(s->recipes, k);
}

static bool recipe_bool(const struct inc *s, const char *k, bool dflt)
{
	return qd_pass_opt_bool(s->recipes, k, dflt);
}

static void no_effect(struct inc *s, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void no_effect(struct inc *s, const char *field, const char *fmt, ...)
{
	char why[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	qd_pass_log(s->pc, QD_LOG_WARN, "%s has no effect: %s", field, why);
	json_array_append_new(json_object_get(s->log, "ignored"), json_pack("{s:s, s:s}", "field", field, "why", why));
}

/* Warnings for the parameters that change nothing here, once per run. */
static void report_params(struct inc *s)
{
	const json_t *p = s->params;
	const char *dev = json_string_value(json_object_get(p, "device"));
	const char *be = json_string_value(json_object_get(p, "backend"));
	const char *dom = json_string_value(json_object_get(p, "domain"));
	if (dev && strcmp(dev, "cpu"))
		no_effect(s, "device", "'%s': quantd always produces ONNX Runtime CPU-compatible models (they run on "
			  "the GPU execution providers as well)", dev);
	if (be && strcmp(be, "default") && !s->trt)
		no_effect(s, "backend", "'%s': quantd quantizes with the default (CPU execution provider) op "
			  "capabilities; the model runs on that provider too", be);
	if (dom && strcmp(dom, "auto"))
		no_effect(s, "domain", "'%s': INC uses the domain only to pick ONNX Runtime's pre-optimization level, "
			  "and quantd's preprocessing has no levels", dom);
	bool tuning = json_is_object(json_object_get(p, "metric"));
	const json_t *ws = json_object_get(p, "workspace");
	if (json_is_string(ws) && !tuning)
		no_effect(s, "workspace", "it holds the accuracy-aware tuning's candidates, and there is no tuning "
			  "without a metric");
	if (!tuning && (qd_pass_user_value(s->pc, "tuning_criterion") || qd_pass_user_value(s->pc, "quant_level") ||
			qd_pass_user_value(s->pc, "accuracy_criterion")))
		no_effect(s, "tuning_criterion", "the tuning settings (tuning_criterion, quant_level, "
			  "accuracy_criterion) apply only with a metric: the default configuration is quantized once");
	const json_t *tc = json_object_get(p, "tuning_criterion");
	const char *strat = json_string_value(json_object_get(tc, "strategy"));
	if (tuning && json_is_string(json_object_get(p, "quant_level")) && strat && strcmp(strat, "basic"))
		no_effect(s, "tuning_criterion.strategy", "'%s': quant_level \"auto\" overrides the strategy (INC's fit); "
			  "set quant_level 1 to choose one", strat);
	const char *obj = json_string_value(json_object_get(tc, "objective"));
	if (tuning && obj && strcmp(obj, "performance") && !(json_number_value(json_object_get(tc, "timeout")) > 0))
		no_effect(s, "tuning_criterion.objective", "'%s': with timeout 0 the first configuration that meets the "
			  "criterion wins; the objective ranks them only with a timeout", obj);
	if (json_array_size(json_object_get(p, "excluded_precisions")))
		no_effect(s, "excluded_precisions", "quantd falls back to fp32 only (the CPU execution provider has no "
			  "bf16 / fp16 kernels for these ops), so bf16 and fp16 are never used");
	bool wo = !strcmp(s->approach, "weight_only");
	if (!wo && json_object_size(json_object_get(p, "op_type_dict")))
		no_effect(s, "op_type_dict", "Olive passes op_type_dict to INC only for approach weight_only (it is "
			  "forced to None otherwise)");
	if (!wo && qd_pass_user_value(s->pc, "weight_only_config"))
		no_effect(s, "weight_only_config", "approach is '%s', not weight_only", s->approach);
	if (wo && json_is_true(json_object_get(p, "reduce_range")))
		no_effect(s, "reduce_range", "7-bit weights apply to int8 quantization, not to weight-only");
	if (strcmp(s->approach, "static") && qd_pass_user_value(s->pc, "quant_format") &&
	    strcmp(json_string_value(qd_pass_user_value(s->pc, "quant_format")) ?: "", "default"))
		no_effect(s, "quant_format", "approach '%s' has one format (dynamic: integer ops; weight_only: "
			  "MatMulNBits)", s->approach);
	if (!strcmp(s->approach, "dynamic") && qd_pass_user_value(s->pc, "calibration_sampling_size"))
		no_effect(s, "calibration_sampling_size", "dynamic quantization is not calibrated");
	if (!strcmp(s->approach, "dynamic") && !json_is_null(json_object_get(p, "data_config")) &&
	    json_object_get(p, "data_config") && !tuning)
		no_effect(s, "data_config", "dynamic quantization is not calibrated");
	if (wo && (!strcmp(s->algo, "RTN") || !strcmp(s->algo, "HQQ")) &&
	    qd_pass_user_value(s->pc, "calibration_sampling_size"))
		no_effect(s, "calibration_sampling_size", "weight-only %s is calibration-free", s->algo);
	if (s->n_sizes > 1 && !tuning)
		no_effect(s, "calibration_sampling_size", "only the first size (%lld) is used: the others are tuning "
			  "options, and there is no tuning without a metric", (long long)s->sizes[0]);
	/* recipes */
	if (recipe_bool(s, "layer_wise_quant", false) || recipe(s, "layer_wise_quant_args"))
		no_effect(s, "recipes.layer_wise_quant", "quantd calibrates batch by batch through its executor with "
			  "bounded memory; splitting the model would give the same result");
	const char *wonly[] = {"rtn_args", "gptq_args", "awq_args"};
	for (size_t i = 0; i < QD_ARRAY_LEN(wonly); i++)
		if (recipe(s, wonly[i]) && (!wo || strncasecmp(s->algo, wonly[i], 3)))
			no_effect(s, wonly[i], "the %s algorithm is not the one used (approach %s%s%s)", wonly[i],
				  s->approach, wo ? ", algorithm " : "", wo ? s->algo : "");
	if (!s->qdq && !s->trt) {
		if (recipe_bool(s, "add_qdq_pair_to_weight", false))
			no_effect(s, "recipes.add_qdq_pair_to_weight", "QDQ format only (quant_format is QOperator)");
		if (recipe_bool(s, "dedicated_qdq_pair", false))
			no_effect(s, "recipes.dedicated_qdq_pair", "QDQ format only (quant_format is QOperator)");
	}
	if (strcmp(s->approach, "static") && json_array_size(recipe(s, "optypes_to_exclude_output_quant")))
		no_effect(s, "recipes.optypes_to_exclude_output_quant", "static quantization only");
	const json_t *ga = recipe(s, "gptq_args");
	if (wo && !strcmp(s->algo, "GPTQ") && json_object_get(ga, "blocksize"))
		no_effect(s, "recipes.gptq_args.blocksize", "it only sets how many rows GPTQ updates at once (the "
			  "lazy batch), not the result; quantd uses 128");
}

/* ---- pre-optimization ---- */

/* INC renames unnamed and duplicate nodes "<op>_nc_rename_<index>". */
static int rename_nodes(struct inc *s, Onnx__GraphProto *g, struct qd_err *err)
{
	struct qd_namemap seen = { 0 };
	int renamed = 0, rc = 0;
	for (size_t i = 0; i < g->n_node && rc == 0; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (n->name && *n->name && !qd_namemap_get(&seen, n->name)) {
			rc = qd_namemap_put(&seen, n->name, (long)i);
			continue;
		}
		char *nm = qd_asprintf("%s_nc_rename_%zu", n->op_type, i);
		if (!nm) {
			rc = -QD_ENOMEM;
			break;
		}
		free(n->name);
		n->name = nm;
		renamed++;
		rc = qd_namemap_put(&seen, n->name, (long)i);
	}
	qd_namemap_free(&seen);
	if (rc < 0)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (renamed)
		qd_pass_log(s->pc, QD_LOG_INFO, "%d unnamed or duplicate node names renamed <op>_nc_rename_<i> (INC's "
			    "rule)", renamed);
	return 0;
}

static double attr_f(const Onnx__NodeProto *n, const char *name, double dflt)
{
	const Onnx__AttributeProto *a = qd_node_attr(n, name);
	return a ? a->f : dflt;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = qd_node_attr(n, name);
	return a ? a->i : dflt;
}

/* Gemm → MatMul (+ Add) when alpha = beta = 1 and transA = 0; transB = 1 transposes a
 * B initializer (a copy when other nodes read it) or inserts a Transpose. The MatMul
 * keeps the Gemm's name (nodes_to_exclude still applies), the Add is "<name>_bias". */
static int gemm_to_matmul(struct inc *s, struct qd_model *m, struct qd_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct qd_graph_index *ix = NULL;
	int rc = qd_index_build(g, NULL, &ix, err), done = 0, kept = 0;
	if (rc < 0)
		return rc;
	size_t n0 = g->n_node;
	for (size_t i = 0; i < n0 && rc == 0; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "Gemm") || *qd_node_domain(n) || n->n_input < 2)
			continue;
		if (attr_f(n, "alpha", 1.0) != 1.0 || attr_f(n, "beta", 1.0) != 1.0 || attr_i(n, "transA", 0) != 0) {
			kept++;
			continue;
		}
		char *b = strdup(n->input[1]);
		char *out = strdup(n->output[0]);
		char *mm_out = n->n_input > 2 && *n->input[2] ? qd_asprintf("%s_MatMul", n->output[0]) : strdup(out);
		if (!b || !out || !mm_out) {
			free(b); free(out); free(mm_out);
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			break;
		}
		if (attr_i(n, "transB", 0)) {
			Onnx__TensorProto *t = qd_index_initializer(ix, b);
			Onnx__NodeProto *const *cons;
			char *tn = qd_asprintf("%s_transposed", b);
			if (t && t->n_dims == 2 && t->data_type == QD_DT_FLOAT) {
				float *w = NULL;
				int64_t cnt = 0;
				if ((rc = qd_model_tensor_to_float(m, t, &w, &cnt, err)) == 0) {
					int64_t r = t->dims[0], c = t->dims[1], dims[2] = {c, r};
					float *tw = malloc((size_t)(r * c) * sizeof *tw + 1);
					for (int64_t y = 0; tw && y < r; y++)
						for (int64_t x = 0; x < c; x++)
							tw[x * r + y] = w[y * c + x];
					bool shared = qd_index_consumers(ix, b, &cons) > 1;
					Onnx__TensorProto *nt = tw ? qd_tensor_new(shared ? tn : b, QD_DT_FLOAT, dims, 2, tw,
										  (size_t)(r * c) * sizeof *tw) : NULL;
					if (!nt) {
						rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
					} else if (shared) {
						rc = qd_graph_add_initializer(g, nt);
						free(b);
						b = strdup(tn);
					} else {
						for (size_t k = 0; k < g->n_initializer; k++)
							if (g->initializer[k] == t) {
								g->initializer[k] = nt;
								qd_tensor_free(t);
								break;
							}
					}
					free(tw);
				}
				free(w);
			} else {
				const char *in[1] = {b};
				const char *o[1] = {tn};
				char *nn = qd_asprintf("%s_transpose_B", n->name);
				Onnx__NodeProto *tp = nn ? qd_node_new("Transpose", NULL, nn, in, 1, o, 1) : NULL;
				free(nn);
				rc = tp ? qd_graph_add_node(g, tp) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
				free(b);
				b = strdup(tn);
			}
			free(tn);
		}
		if (rc == 0) {
			const char *in[2] = {n->input[0], b};
			const char *o[1] = {mm_out};
			Onnx__NodeProto *mm = qd_node_new("MatMul", NULL, n->name, in, 2, o, 1);
			Onnx__NodeProto *add = NULL;
			if (mm && n->n_input > 2 && *n->input[2]) {
				const char *ai[2] = {mm_out, n->input[2]};
				const char *ao[1] = {out};
				char *an = qd_asprintf("%s_bias", n->name);
				add = an ? qd_node_new("Add", NULL, an, ai, 2, ao, 1) : NULL;
				free(an);
				if (!add) {
					qd_node_free(mm);
					mm = NULL;
				}
			}
			if (!mm) {
				rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			} else {
				qd_node_free(n);
				g->node[i] = mm;
				if (add)
					rc = qd_graph_add_node(g, add);
				done++;
			}
		}
		free(b); free(out); free(mm_out);
	}
	qd_index_free(ix);
	if (rc < 0)
		return err->code ? -err->code : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (done && (rc = qd_graph_toposort(g, err)) < 0)
		return rc;
	if (done || kept)
		qd_pass_log(s->pc, QD_LOG_INFO, "gemm_to_matmul: %d Gemm -> MatMul (+ Add)%s", done,
			    kept ? " (Gemms with alpha or beta != 1 or transA kept)" : "");
	json_object_set_new(s->log, "gemm_to_matmul", json_integer(done));
	return 0;
}

/* ---- node recipes ---- */

static bool backbone_op(const Onnx__NodeProto *n)
{
	return !strcmp(n->op_type, "Conv") || !strcmp(n->op_type, "MatMul") || !strcmp(n->op_type, "Gemm") ||
	       !strcmp(n->op_type, "FusedConv") || !strcmp(n->op_type, "Attention");
}

/* first / last Conv-or-MatMul and pre/post processing → node names kept float (new). */
static json_t *recipe_exclusions(struct inc *s, const Onnx__GraphProto *g)
{
	json_t *ex = json_array();
	long first = -1, last = -1;
	for (size_t i = 0; i < g->n_node; i++)
		if (backbone_op(g->node[i])) {
			if (first < 0)
				first = (long)i;
			last = (long)i;
		}
	if (first < 0)
		return ex;
	bool f = recipe_bool(s, "first_conv_or_matmul_quantization", true);
	bool l = recipe_bool(s, "last_conv_or_matmul_quantization", true);
	bool pp = recipe_bool(s, "pre_post_process_quantization", true);
	if (!f)
		json_array_append_new(ex, json_string(g->node[first]->name));
	if (!l && last != first)
		json_array_append_new(ex, json_string(g->node[last]->name));
	for (size_t i = 0; !pp && i < g->n_node; i++)
		if ((long)i < first || (long)i > last)
			json_array_append_new(ex, json_string(g->node[i]->name));
	if (!f || !l || !pp) {
		char *t = json_dumps(ex, JSON_COMPACT);
		qd_pass_log(s->pc, QD_LOG_INFO, "recipes keep %zu node(s) in float: %s", json_array_size(ex),
			    t ? t : "");
		free(t);
	}
	return ex;
}

/* ---- SmoothQuant (reference/inc_vitis_qnn.md §A.4) ----
 * Per input channel j of each MatMul / Gemm with a constant 2-D weight: m_j = max |X_j|
 * over the calibration data (the executor's hook; INC takes the 99.999th percentile),
 * s_j = max(m_j^alpha / max(max_n |W_jn|^(1 - alpha), 1e-5), 1e-5), W_j *= s_j and the
 * activation is divided by s: folded into the producer (LayerNormalization's gamma and
 * beta, or a Mul by a constant [K]) when every reader of the tensor is smoothed with the
 * same scales, else through a new Mul(x, 1/s) "<x>_smooth_mul". scales_per_op (INC's
 * default) gives each op its own s; false shares one s per tensor (max over its ops'
 * weights), which lets a tensor read by several ops (Q, K, V) fold into its LayerNorm.
 * alpha "auto" (INC's auto_alpha_args: alpha_min 0.3 .. alpha_max 0.7 step 0.05) picks the
 * alpha of each op (each scale set) with the lowest quantize-dequantize loss of its output
 * on a sample of the calibration rows: mean (XW - Q(X/s) Q(diag(s) W))^2, X/s uint8
 * asymmetric per tensor, diag(s) W int8 symmetric per tensor (what the static pass then
 * does); ops that share one scale set (scales_per_op false) combine their own best alphas
 * by attn_method (min, max or mean). A list of alphas is swept over the whole model: each
 * alpha's loss summed over the ops (each relative to its output's mean square), the
 * lowest kept for every op. The calibration run is shared with the maxima. */

#define SQ_ROWS 128              /* calibration rows kept per tensor for the alpha search */

struct sq_op {
	Onnx__NodeProto *n;
	char *w;                 /* the weight initializer's name (owned) */
	bool trans;              /* Gemm transB: W is [N, K] */
	int64_t K, N;
	size_t x;                /* index into sq.x */
};

struct sq_x {
	char *name;              /* owned */
	int64_t K;
	float *amax;             /* [K] */
	bool seen;
	float *rows;             /* [SQ_ROWS, K] reservoir sample of the rows (alpha search), or NULL */
	int64_t nrows, total;    /* rows kept, rows seen */
	uint64_t rng;
};

struct sq {
	struct qd_pass_ctx *pc;
	const json_t *args;      /* smooth_quant_args (borrow) */
	const json_t *dc;        /* the data config (borrow) */
	bool keep_rows;
	double grid[128];        /* alpha "auto": the candidates (ngrid 0: a fixed alpha) */
	size_t ngrid;
	long i05;                /* index of 0.5 in grid, or -1 */
	const char *attn;        /* auto_alpha_args.attn_method */
	struct sq_op *op;
	size_t nop;
	struct sq_x *x;
	size_t nx;
	struct qd_namemap map;   /* tensor → index into x */
};

static Onnx__TensorProto *find_init(Onnx__GraphProto *g, const char *name, size_t *at)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name)) {
			if (at)
				*at = i;
			return g->initializer[i];
		}
	return NULL;
}

/* Replace initializer `name` (float) by data, keeping its name and dims; or, as_name set,
 * add a new initializer with those dims under as_name. */
static int put_init(Onnx__GraphProto *g, const char *name, const float *data, const char *as_name)
{
	size_t at = 0;
	Onnx__TensorProto *t = find_init(g, name, &at);
	if (!t)
		return -QD_EINTERNAL;
	Onnx__TensorProto *nt = qd_tensor_new(as_name ? as_name : name, QD_DT_FLOAT, t->dims, t->n_dims, data,
					      (size_t)qd_tensor_numel(t) * sizeof(float));
	if (!nt)
		return -QD_ENOMEM;
	if (as_name)
		return qd_graph_add_initializer(g, nt);
	g->initializer[at] = nt;
	qd_tensor_free(t);
	return 0;
}

static void sq_observe(struct sq_x *x, const struct qd_tensor *t)
{
	if (t->dtype != QD_DT_FLOAT || t->ndim < 1 || t->dims[t->ndim - 1] != x->K || !t->data)
		return;
	const float *d = t->data;
	int64_t rows = qd_tensor_count(t) / x->K;
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < x->K; j++) {
			float a = fabsf(d[r * x->K + j]);
			if (a > x->amax[j])   /* NaN never wins */
				x->amax[j] = a;
		}
	x->seen = true;
	for (int64_t r = 0; x->rows && r < rows; r++) {
		/* reservoir sampling (Algorithm R) with a fixed-seed LCG: deterministic */
		int64_t slot = x->nrows < SQ_ROWS ? x->nrows++ : -1;
		x->total++;
		if (slot < 0) {
			x->rng = x->rng * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t j = (x->rng >> 33) % (uint64_t)x->total;
			slot = j < SQ_ROWS ? (int64_t)j : -1;
		}
		if (slot >= 0)
			memcpy(x->rows + slot * x->K, d + r * x->K, (size_t)x->K * sizeof(float));
	}
}

static void sq_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct sq *q = ud;
	(void)node;
	long *ix = t && t->name ? qd_namemap_get(&q->map, t->name) : NULL;
	if (ix)
		sq_observe(&q->x[*ix], t);
}

static int sq_collect(struct sq *q, Onnx__GraphProto *g, const json_t *op_types, struct qd_err *err)
{
	q->op = calloc(g->n_node + 1, sizeof *q->op);
	q->x = calloc(g->n_node + 1, sizeof *q->x);
	if (!q->op || !q->x)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	size_t conv = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		bool mm = !strcmp(n->op_type, "MatMul"), gm = !strcmp(n->op_type, "Gemm");
		if (*qd_node_domain(n) || n->n_input < 2 || (op_types && !qd_json_list_has(op_types, n->op_type)))
			continue;
		if (!strcmp(n->op_type, "Conv") || !strcmp(n->op_type, "FusedConv"))
			conv++;
		if (!mm && !gm)
			continue;
		if (gm && (attr_i(n, "transA", 0) || attr_f(n, "alpha", 1.0) != 1.0))
			continue;
		Onnx__TensorProto *w = find_init(g, n->input[1], NULL);
		if (!w || w->n_dims != 2 || w->data_type != QD_DT_FLOAT)
			continue;
		bool tr = gm && attr_i(n, "transB", 0);
		struct sq_op *o = &q->op[q->nop];
		o->n = n;
		o->trans = tr;
		o->K = tr ? w->dims[1] : w->dims[0];
		o->N = tr ? w->dims[0] : w->dims[1];
		if (!(o->w = strdup(n->input[1])))
			return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		long *ix = qd_namemap_get(&q->map, n->input[0]);
		if (ix && q->x[*ix].K != o->K) {
			free(o->w);
			continue;
		}
		if (!ix) {
			struct sq_x *x = &q->x[q->nx];
			x->K = o->K;
			x->name = strdup(n->input[0]);
			x->amax = calloc((size_t)o->K + 1, sizeof *x->amax);
			x->rng = 0x9E3779B97F4A7C15ull;
			if (q->keep_rows && !(x->rows = malloc((size_t)(SQ_ROWS * o->K) * sizeof(float) + 1)))
				return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			if (!x->name || !x->amax || qd_namemap_put(&q->map, n->input[0], (long)q->nx) < 0)
				return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			o->x = q->nx++;
		} else {
			o->x = (size_t)*ix;
		}
		q->nop++;
	}
	if (conv)
		qd_pass_log(q->pc, QD_LOG_WARN, "smooth_quant: %zu Conv node(s) not smoothed (quantd smooths MatMul and "
			    "Gemm)", conv);
	return 0;
}

/* Per-channel activation maxima over the calibration data. */
static int sq_calibrate(struct sq *q, struct qd_model *m, int64_t limit, struct qd_err *err)
{
	struct qd_pass_ctx *pc = q->pc;
	struct qd_dataset *ds = NULL;
	struct qd_engine *e = NULL;
	struct qd_batches b = { 0 };
	int64_t bs = 1;
	int rc = qd_pass_open_data(pc, m, q->dc, "data_config", &ds, &bs, err);
	if (rc < 0)
		return rc;
	const json_t *ci = json_object_get(q->args, "calib_iter");
	if (json_is_integer(ci) && json_integer_value(ci) * bs < limit)
		limit = json_integer_value(ci) * bs;
	struct qd_engine_opts eo = { .threads = pc->threads,
				     .max_tensor_bytes = pc->max_tensor_bytes ? pc->max_tensor_bytes : (size_t)4 << 30,
				     .max_memory_bytes = pc->max_memory_bytes, .max_seconds = pc->max_seconds };
	if ((rc = qd_batches_init(&b, ds, m->proto->graph, bs, limit, err)) < 0)
		goto out;
	if ((rc = qd_engine_load(m, &eo, &e, err)) < 0) {
		qd_err_wrap(err, "cannot run the model for smooth_quant");
		goto out;
	}
	qd_engine_set_hook(e, sq_hook, q);
	const volatile int *cancel = pc->hooks ? pc->hooks->cancel : NULL;
	for (;;) {
		struct qd_tensor *in = NULL, *outs = NULL;
		size_t n_in = 0, n_out = 0;
		if ((rc = qd_batches_next(&b, &in, &n_in, err)) <= 0)
			break;
		for (size_t i = 0; i < n_in; i++)   /* the hook sees node outputs only */
			sq_hook(q, NULL, &in[i]);
		rc = qd_engine_run(e, in, n_in, &outs, &n_out, cancel, err);
		qd_tensors_release(in, n_in);
		qd_tensors_release(outs, n_out);
		if (rc < 0) {
			qd_err_wrap(err, "smooth_quant calibration failed");
			goto out;
		}
	}
	if (rc == 0)
		qd_pass_log(pc, QD_LOG_INFO, "smooth_quant: per-channel activation maxima of %zu tensors from %lld samples",
			    q->nx, (long long)b.end);
out:
	qd_engine_free(e);
	qd_batches_free(&b);
	qd_dataset_free(ds);
	return rc;
}

/* The producer of x takes 1/s when it is a LayerNormalization with constant gamma / beta
 * or a Mul by a constant [K], and nothing else reads those constants. */
static bool sq_fold(Onnx__GraphProto *g, struct qd_graph_index *ix, const Onnx__NodeProto *p, const float *s, int64_t K,
		    int *rc)
{
	const char *names[2] = {NULL, NULL};
	Onnx__NodeProto *const *cons;
	if (!strcmp(p->op_type, "LayerNormalization") && !*qd_node_domain(p) && p->n_input >= 2) {
		names[0] = p->input[1];
		names[1] = p->n_input > 2 && *p->input[2] ? p->input[2] : NULL;
	} else if (!strcmp(p->op_type, "Mul") && !*qd_node_domain(p) && p->n_input == 2) {
		names[0] = find_init(g, p->input[1], NULL) ? p->input[1] : find_init(g, p->input[0], NULL) ? p->input[0] : NULL;
	}
	if (!names[0])
		return false;
	for (int k = 0; k < 2; k++) {
		Onnx__TensorProto *t = names[k] ? find_init(g, names[k], NULL) : NULL;
		if (names[k] && (!t || t->data_type != QD_DT_FLOAT || qd_tensor_numel(t) != K ||
				 t->dims[t->n_dims - 1] != K || qd_index_consumers(ix, names[k], &cons) != 1))
			return false;
	}
	for (int k = 0; k < 2 && *rc == 0; k++) {
		if (!names[k])
			continue;
		float *v = NULL;
		int64_t n = 0;
		if (qd_tensor_to_float(find_init(g, names[k], NULL), &v, &n, NULL) < 0) {
			*rc = -QD_ENOMEM;
			break;
		}
		for (int64_t j = 0; j < K; j++)
			v[j] /= s[j];
		*rc = put_init(g, names[k], v, NULL);
		free(v);
	}
	return true;
}

/* s_j = max(m_j^alpha / max(wmax_j^(1 - alpha), 1e-5), 1e-5); 1 for a dead channel */
static void sq_scales(const struct sq_x *x, const float *wmax, double alpha, float *s)
{
	for (int64_t j = 0; j < x->K; j++) {
		double v = x->amax[j] > 0 && wmax[j] > 0 ? pow(x->amax[j], alpha) / fmax(pow(wmax[j], 1.0 - alpha), 1e-5) : 1.0;
		s[j] = (float)fmax(v, 1e-5);
	}
}

/* The weights of ops[0..n) as float (w[i] new) and their per-input-channel max |W| */
static int sq_weights(Onnx__GraphProto *g, struct sq_op **ops, size_t n, int64_t K, float **w, float *wmax,
		      struct qd_err *err)
{
	for (size_t i = 0; i < n; i++) {
		int64_t cnt = 0;
		int rc = qd_tensor_to_float(find_init(g, ops[i]->w, NULL), &w[i], &cnt, err);
		if (rc < 0)
			return rc;
		for (int64_t j = 0; j < K; j++)
			for (int64_t c = 0; c < ops[i]->N; c++) {
				float a = fabsf(w[i][ops[i]->trans ? c * K + j : j * ops[i]->N + c]);
				wmax[j] = a > wmax[j] ? a : wmax[j];
			}
	}
	return 0;
}

/* Quantize-dequantize v[0..n) in place: uint8 asymmetric (range with 0) or int8 symmetric,
 * one scale for all */
static void sq_qdq(float *v, int64_t n, bool sym)
{
	float mn = 0, mx = 0;
	for (int64_t i = 0; i < n; i++) {
		mn = v[i] < mn ? v[i] : mn;
		mx = v[i] > mx ? v[i] : mx;
	}
	if (sym) {
		float sc = fmaxf(fabsf(mn), fabsf(mx)) / 127.0f;
		for (int64_t i = 0; sc > 0 && i < n; i++)
			v[i] = fminf(fmaxf(nearbyintf(v[i] / sc), -127.0f), 127.0f) * sc;
		return;
	}
	float sc = (mx - mn) / 255.0f;
	if (!(sc > 0))
		return;
	float zp = nearbyintf(-mn / sc);
	for (int64_t i = 0; i < n; i++)
		v[i] = (fminf(fmaxf(nearbyintf(v[i] / sc) + zp, 0.0f), 255.0f) - zp) * sc;
}

/* loss[a * n + i]: op i's output loss at alpha grid[a] on x's sampled rows, relative to
 * the output's mean square (scales from wmax, the group's). */
static int sq_alpha_losses(const struct sq_x *x, struct sq_op **ops, size_t n, float **w, const float *wmax,
			   const double *grid, size_t ng, double *loss, struct qd_err *err)
{
	const int64_t R = x->nrows, K = x->K;
	int64_t Nmax = 0;
	for (size_t i = 0; i < n; i++)
		Nmax = QD_MAX(Nmax, ops[i]->N);
	float *s = malloc((size_t)K * sizeof(float) + 1), *xs = malloc((size_t)(R * K) * sizeof(float) + 1);
	float *ws = malloc((size_t)(K * Nmax) * sizeof(float) + 1), *wf = malloc((size_t)(K * Nmax) * sizeof(float) + 1);
	float *y = malloc((size_t)(R * Nmax) * sizeof(float) + 1), *yq = malloc((size_t)(R * Nmax) * sizeof(float) + 1);
	int rc = 0;
	if (!s || !xs || !ws || !wf || !y || !yq) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "smooth_quant: out of memory in the alpha search");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const int64_t N = ops[i]->N;
		for (int64_t j = 0; j < K; j++)
			for (int64_t c = 0; c < N; c++)
				wf[j * N + c] = w[i][ops[i]->trans ? c * K + j : j * N + c];
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)N, (int)K, 1.0f, x->rows, (int)K, wf,
			    (int)N, 0.0f, y, (int)N);
		double ref = 0;
		for (int64_t r = 0; r < R * N; r++)
			ref += (double)y[r] * y[r];
		ref = ref > 0 ? ref : 1.0;
		for (size_t a = 0; a < ng; a++) {
			sq_scales(x, wmax, grid[a], s);
			for (int64_t r = 0; r < R; r++)
				for (int64_t j = 0; j < K; j++)
					xs[r * K + j] = x->rows[r * K + j] / s[j];
			for (int64_t j = 0; j < K; j++)
				for (int64_t c = 0; c < N; c++)
					ws[j * N + c] = wf[j * N + c] * s[j];
			sq_qdq(xs, R * K, false);
			sq_qdq(ws, K * N, true);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)N, (int)K, 1.0f, xs, (int)K, ws,
				    (int)N, 0.0f, yq, (int)N);
			double e = 0;
			for (int64_t r = 0; r < R * N; r++)
				e += ((double)y[r] - yq[r]) * ((double)y[r] - yq[r]);
			loss[a * n + i] = e / ref;
		}
	}
out:
	free(s); free(xs); free(ws); free(wf); free(y); free(yq);
	return rc;
}

/* Smooth the ops ops[0..n) that read x with one set of scales. */
static int sq_group(struct sq *q, Onnx__GraphProto *g, struct qd_graph_index *ix, struct sq_op **ops, size_t n,
		    double alpha, bool folding, json_t *st, struct qd_err *err)
{
	struct sq_x *x = &q->x[ops[0]->x];
	int64_t K = x->K;
	float *wmax = calloc((size_t)K + 1, sizeof *wmax), *s = calloc((size_t)K + 1, sizeof *s);
	int rc = wmax && s ? 0 : -QD_ENOMEM;
	float **w = calloc(n + 1, sizeof *w);
	rc = rc == 0 && w ? 0 : -QD_ENOMEM;
	if (rc == 0)
		rc = sq_weights(g, ops, n, K, w, wmax, err);
	json_t *tried = NULL;
	if (rc == 0 && q->ngrid) {
		/* alpha "auto": each op's best alpha; a shared scale set combines them */
		double *loss = malloc(q->ngrid * n * sizeof(double) + 1), pick = 0;
		tried = json_array();
		rc = loss && tried ? sq_alpha_losses(x, ops, n, w, wmax, q->grid, q->ngrid, loss, err) : -QD_ENOMEM;
		for (size_t i = 0; rc == 0 && i < n; i++) {
			size_t b = 0;
			for (size_t a = 1; a < q->ngrid; a++)
				b = loss[a * n + i] < loss[b * n + i] ? a : b;
			double v = q->grid[b];
			pick = i == 0 ? v : !strcmp(q->attn, "min") ? fmin(pick, v) : !strcmp(q->attn, "max") ? fmax(pick, v)
			       : pick + v;
			json_array_append_new(tried, json_pack("{s:s, s:f, s:f, s:f}", "op", ops[i]->n->name, "alpha", v,
								"loss", loss[b * n + i], "loss_at_0.5",
								q->i05 >= 0 ? loss[(size_t)q->i05 * n + i] : -1.0));
		}
		if (rc == 0)
			alpha = !strcmp(q->attn, "mean") ? pick / (double)n : pick;
		free(loss);
	}
	double smax = 0, smin = INFINITY;
	if (rc == 0)
		sq_scales(x, wmax, alpha, s);
	for (int64_t j = 0; j < K && rc == 0; j++) {
		smax = fmax(smax, s[j]);
		smin = fmin(smin, s[j]);
	}
	/* W_j *= s_j (a copy when another node reads the weight) */
	Onnx__NodeProto *const *cons;
	for (size_t i = 0; i < n && rc == 0; i++) {
		for (int64_t j = 0; j < K; j++)
			for (int64_t c = 0; c < ops[i]->N; c++)
				w[i][ops[i]->trans ? c * K + j : j * ops[i]->N + c] *= s[j];
		if (qd_index_consumers(ix, ops[i]->w, &cons) == 1) {
			rc = put_init(g, ops[i]->w, w[i], NULL);
		} else {
			char *nn = qd_asprintf("%s_smooth_%s", ops[i]->w, ops[i]->n->name);
			rc = nn ? put_init(g, ops[i]->w, w[i], nn) : -QD_ENOMEM;
			if (rc == 0) {
				free(ops[i]->n->input[1]);
				ops[i]->n->input[1] = nn;
			} else {
				free(nn);
			}
		}
	}
	/* x / s: folded into the producer, or a Mul */
	bool all = qd_index_consumers(ix, x->name, &cons) == n;
	for (size_t c = 0; all && c < n; c++) {
		bool in = false;
		for (size_t i = 0; i < n; i++)
			in = in || cons[c] == ops[i]->n;
		all = in;
	}
	Onnx__NodeProto *p = qd_index_producer(ix, x->name);
	bool folded = rc == 0 && folding && all && p && !qd_index_is_graph_output(ix, x->name) && sq_fold(g, ix, p, s, K, &rc);
	if (rc == 0 && !folded) {
		char *sn = qd_asprintf("%s_smooth_scale%s%s", x->name, n == 1 ? "_" : "", n == 1 ? ops[0]->n->name : "");
		char *on = qd_asprintf("%s_smoothed%s%s", x->name, n == 1 ? "_" : "", n == 1 ? ops[0]->n->name : "");
		char *mn = qd_asprintf("%s_smooth_mul%s%s", x->name, n == 1 ? "_" : "", n == 1 ? ops[0]->n->name : "");
		float *inv = malloc((size_t)K * sizeof *inv + 1);
		int64_t d[1] = {K};
		for (int64_t j = 0; inv && j < K; j++)
			inv[j] = 1.0f / s[j];
		Onnx__TensorProto *t = sn && inv ? qd_tensor_new(sn, QD_DT_FLOAT, d, 1, inv, (size_t)K * sizeof *inv) : NULL;
		const char *mi[2] = {x->name, sn}, *mo[1] = {on};
		Onnx__NodeProto *mul = t && on && mn ? qd_node_new("Mul", NULL, mn, mi, 2, mo, 1) : NULL;
		if (!mul || qd_graph_add_initializer(g, t) < 0 || qd_graph_add_node(g, mul) < 0) {
			rc = -QD_ENOMEM;
		} else {
			for (size_t i = 0; i < n; i++) {
				char *c = strdup(on);
				free(ops[i]->n->input[0]);
				ops[i]->n->input[0] = c;
				rc = c ? rc : -QD_ENOMEM;
			}
		}
		free(sn); free(on); free(mn); free(inv);
	}
	if (rc == 0) {
		json_t *e = json_pack("{s:s, s:I, s:s, s:f, s:f, s:f}", "tensor", x->name, "ops", (json_int_t)n, "into",
				      folded ? p->op_type : "Mul", "max_scale", smax, "min_scale", smin, "alpha", alpha);
		if (e && tried)
			json_object_set(e, "auto_alpha", tried);
		json_array_append_new(st, e);
	}
	json_decref(tried);
	for (size_t i = 0; w && i < n; i++)
		free(w[i]);
	free(w); free(wmax); free(s);
	if (rc < 0 && !err->code)
		qd_err_set(err, -rc, NULL, "smooth_quant: out of memory");
	return rc;
}

/* The ops of the seen tensor xi, in grp (n of them). */
static size_t sq_readers(const struct sq *q, size_t xi, struct sq_op **grp)
{
	size_t n = 0;
	for (size_t i = 0; i < q->nop; i++)
		if (q->op[i].x == xi)
			grp[n++] = &q->op[i];
	return n;
}

/* A list of alphas: tot[a] = the ops' relative losses at list[a], summed over the model. */
static int sq_sweep(struct sq *q, Onnx__GraphProto *g, struct sq_op **grp, bool per_op, const double *list, size_t nl,
		    double *tot, struct qd_err *err)
{
	int rc = 0;
	for (size_t xi = 0; rc == 0 && xi < q->nx; xi++) {
		struct sq_x *x = &q->x[xi];
		size_t n = x->seen && x->nrows ? sq_readers(q, xi, grp) : 0;
		for (size_t i = 0; rc == 0 && i < n; i += per_op ? 1 : n) {
			size_t m = per_op ? 1 : n;
			float **w = calloc(m + 1, sizeof *w), *wmax = calloc((size_t)x->K + 1, sizeof *wmax);
			double *loss = malloc(nl * m * sizeof(double) + 1);
			rc = w && wmax && loss ? sq_weights(g, grp + i, m, x->K, w, wmax, err) : -QD_ENOMEM;
			if (rc == 0)
				rc = sq_alpha_losses(x, grp + i, m, w, wmax, list, nl, loss, err);
			for (size_t a = 0; rc == 0 && a < nl; a++)
				for (size_t k = 0; k < m; k++)
					tot[a] += loss[a * m + k];
			for (size_t k = 0; w && k < m; k++)
				free(w[k]);
			free(w); free(wmax); free(loss);
		}
	}
	if (rc < 0 && !err->code)
		qd_err_set(err, -rc, NULL, "smooth_quant: out of memory");
	return rc;
}

int qd_smooth_quant(struct qd_pass_ctx *pc, struct qd_model *m, const json_t *data_config, const json_t *a,
		    int64_t limit, json_t *log, struct qd_err *err)
{
	const json_t *av = json_object_get(a, "alpha");
	double alpha = json_is_number(av) ? json_number_value(av) : 0.5;
	bool autoa = json_is_string(av) && !strcmp(json_string_value(av), "auto");
	size_t nl = json_is_array(av) ? json_array_size(av) : 0;
	if (nl == 1)
		alpha = json_number_value(json_array_get(av, 0));
	bool folding = qd_pass_opt_bool(a, "folding", true), per_op = qd_pass_opt_bool(a, "scales_per_op", true);
	Onnx__GraphProto *g = m->proto->graph;
	struct sq q = { .pc = pc, .args = a, .dc = data_config, .attn = "min", .i05 = -1, .keep_rows = autoa || nl > 1 };
	double list[128], tot[128] = { 0 };
	if (autoa) {
		const json_t *aa = json_object_get(a, "auto_alpha_args");
		double lo = 0.3, hi = 0.7, step = 0.05;
		if (json_is_number(json_object_get(aa, "alpha_min")))
			lo = json_number_value(json_object_get(aa, "alpha_min"));
		if (json_is_number(json_object_get(aa, "alpha_max")))
			hi = json_number_value(json_object_get(aa, "alpha_max"));
		if (json_is_number(json_object_get(aa, "alpha_step")))
			step = json_number_value(json_object_get(aa, "alpha_step"));
		if (json_is_string(json_object_get(aa, "attn_method")))
			q.attn = json_string_value(json_object_get(aa, "attn_method"));
		/* INC's numpy.arange(min, max + step / 2, step), rounded to 1e-4; the checker caps it */
		for (int i = 0; q.ngrid < QD_ARRAY_LEN(q.grid) && lo + step * i <= hi + step / 2; i++)
			q.grid[q.ngrid++] = round((lo + step * i) * 1e4) / 1e4;
		for (size_t i = 0; i < q.ngrid; i++)
			if (fabs(q.grid[i] - 0.5) < 1e-9)
				q.i05 = (long)i;
	}
	for (size_t i = 0; i < nl && i < QD_ARRAY_LEN(list); i++)
		list[i] = json_number_value(json_array_get(av, i));
	nl = QD_MIN(nl, QD_ARRAY_LEN(list));
	struct qd_graph_index *ix = NULL;
	struct sq_op **grp = NULL;
	json_t *st = json_array(), *swept = NULL;
	int rc = sq_collect(&q, g, qd_pass_opt_list(a, "op_types"), err);
	if (rc == 0 && q.nop == 0) {
		qd_pass_log(pc, QD_LOG_WARN, "smooth_quant: no MatMul or Gemm with a constant 2-D weight to smooth");
		goto out;
	}
	if (rc == 0)
		rc = sq_calibrate(&q, m, limit, err);
	if (rc == 0 && (rc = qd_index_build(g, NULL, &ix, err)) == 0 && !(grp = calloc(q.nop + 1, sizeof *grp)))
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (rc == 0 && nl > 1 && (rc = sq_sweep(&q, g, grp, per_op, list, nl, tot, err)) == 0) {
		/* INC's strategy tries each alpha of the list; quantd ranks them by the summed loss */
		size_t b = 0;
		swept = json_array();
		for (size_t i = 0; i < nl; i++) {
			b = tot[i] < tot[b] ? i : b;
			json_array_append_new(swept, json_pack("{s:f, s:f}", "alpha", list[i], "loss", tot[i]));
		}
		alpha = list[b];
		qd_pass_log(pc, QD_LOG_INFO, "smooth_quant: alpha sweep over %zu values, %.3g kept (summed relative "
			    "output loss %.4g; %.3g gave %.4g)", nl, alpha, tot[b], list[b ? 0 : nl - 1], tot[b ? 0 : nl - 1]);
	}
	for (size_t xi = 0; rc == 0 && xi < q.nx; xi++) {
		if (!q.x[xi].seen) {
			qd_pass_log(pc, QD_LOG_WARN, "smooth_quant: tensor '%s' was never computed on the calibration data; "
				    "its readers are not smoothed", q.x[xi].name);
			continue;
		}
		size_t n = sq_readers(&q, xi, grp);
		for (size_t i = 0; rc == 0 && i < n; i += per_op ? 1 : n)
			rc = sq_group(&q, g, ix, grp + i, per_op ? 1 : n, alpha, folding, st, err);
	}
	qd_index_free(ix);
	ix = NULL;
	if (rc == 0 && (rc = qd_graph_toposort(g, err)) == 0) {
		size_t folded = 0;
		size_t i; json_t *e;
		double asum = 0;
		json_array_foreach(st, i, e) {
			folded += strcmp(json_string_value(json_object_get(e, "into")), "Mul") != 0;
			asum += json_number_value(json_object_get(e, "alpha"));
		}
		char al[64];
		if (autoa)
			snprintf(al, sizeof al, "auto (%zu candidates, mean %.3g)", q.ngrid,
				 json_array_size(st) ? asum / (double)json_array_size(st) : 0.0);
		else
			snprintf(al, sizeof al, "%.3g", alpha);
		qd_pass_log(pc, QD_LOG_INFO, "smooth_quant: alpha %s, %zu ops over %zu tensors smoothed (per-channel "
			    "maximum; INC takes the 99.999th percentile), %zu scale sets folded into the producer, %zu Mul "
			    "inserted", al, q.nop, q.nx, folded, json_array_size(st) - folded);
	}
out:
	if (log) {
		json_t *o = json_pack("{s:b, s:b, s:o}", "folding", folding, "scales_per_op", per_op, "groups", st);
		json_object_set_new(o, "alpha", autoa ? json_string("auto") : json_real(alpha));
		if (swept)
			json_object_set(o, "alpha_sweep", swept);
		json_object_set_new(log, "smooth_quant", o);
	} else {
		json_decref(st);
	}
	json_decref(swept);
	qd_index_free(ix);
	free(grp);
	for (size_t i = 0; i < q.nop; i++)
		free(q.op[i].w);
	for (size_t i = 0; i < q.nx; i++) {
		free(q.x[i].name);
		free(q.x[i].amax);
		free(q.x[i].rows);
	}
	free(q.op);
	free(q.x);
	qd_namemap_free(&q.map);
	return rc;
}

static int smooth_quant(struct inc *s, struct qd_model *m, int64_t limit, struct qd_err *err)
{
	return qd_smooth_quant(s->pc, m, json_object_get(s->params, "data_config"), recipe(s, "smooth_quant_args"),
			       limit, s->log, err);
}

/* ---- translation ---- */

static void set_if(json_t *o, const char *k, const json_t *v)
{
	if (v && !json_is_null(v))
		json_object_set(o, k, (json_t *)v);
}

/* The translated pass's configuration: its schema's defaults plus what INC says. *vt_out
 * gets the pass to run. exclude: node names kept float; ex_types: op types kept float;
 * size: calibration samples. new. */
static json_t *translate(struct inc *s, const json_t *exclude, const json_t *ex_types, int64_t size,
			 const struct qd_pass_vt **vt_out, struct qd_err *err)
{
	const json_t *p = s->params;
	json_t *u = json_object();
	const char *type;
	bool preprocess = true;
	const char *lvl = json_string_value(recipe(s, "graph_optimization_level"));
	if ((lvl && !strcmp(lvl, "DISABLE_ALL")) || s->trt)
		preprocess = false;
	if (!strcmp(s->approach, "weight_only")) {
		type = "OnnxMatMulNBits";
		const json_t *w = s->woq;
		const char *sch = json_string_value(json_object_get(w, "scheme"));
		json_object_set_new(u, "bits", json_integer(json_is_integer(json_object_get(w, "bits")) ?
							    json_integer_value(json_object_get(w, "bits")) : 4));
		json_object_set_new(u, "block_size", json_integer(json_is_integer(json_object_get(w, "group_size")) ?
								  json_integer_value(json_object_get(w, "group_size")) : 32));
		json_object_set_new(u, "is_symmetric", json_boolean(sch && !strcmp(sch, "sym")));
		json_object_set_new(u, "algorithm", json_string(s->algo));
		if (!strcmp(s->algo, "GPTQ") || !strcmp(s->algo, "AWQ")) {
			set_if(u, "data_config", json_object_get(p, "data_config"));
			json_object_set_new(u, "calibration_sampling_size", json_integer(size));
		}
		const json_t *args = recipe(s, !strcmp(s->algo, "GPTQ") ? "gptq_args" : !strcmp(s->algo, "AWQ") ?
					    "awq_args" : "rtn_args");
		set_if(u, "accuracy_level", json_object_get(args, "accuracy_level"));
		if (json_array_size(exclude))
			json_object_set(u, "nodes_to_exclude", (json_t *)exclude);
	} else {
		bool st = !strcmp(s->approach, "static");
		type = st ? "OnnxStaticQuantization" : "OnnxDynamicQuantization";
		json_object_set_new(u, "quant_format", json_string(st && (s->qdq || s->trt) ? "QDQ" : "QOperator"));
		json_object_set_new(u, "precision", json_string("int8"));
		json_object_set_new(u, "per_channel", json_false());
		json_object_set(u, "reduce_range", json_object_get(p, "reduce_range"));
		json_object_set_new(u, "quant_preprocess", json_boolean(preprocess));
		if (json_array_size(exclude))
			json_object_set(u, "nodes_to_exclude", (json_t *)exclude);
		if (json_array_size(ex_types))
			json_object_set(u, "op_types_to_exclude", (json_t *)ex_types);
		if (st) {
			json_object_set_new(u, "activation_type", json_string(s->trt ? "int8" : "uint8"));
			if (s->trt)
				json_object_set_new(u, "activation_symmetric", json_true());
			set_if(u, "data_config", json_object_get(p, "data_config"));
			json_object_set_new(u, "calibration_sampling_size", json_integer(size));
			json_t *x = json_object();
			if (recipe_bool(s, "add_qdq_pair_to_weight", false) || s->trt)
				json_object_set_new(x, "AddQDQPairToWeight", json_true());
			if (recipe_bool(s, "dedicated_qdq_pair", false) || s->trt)
				json_object_set_new(x, "DedicatedQDQPair", json_true());
			json_t *eo = json_array();
			size_t i; json_t *v;
			json_array_foreach(recipe(s, "optypes_to_exclude_output_quant"), i, v)
				json_array_append(eo, v);
			const char *trt_ops[] = {"Conv", "Gemm", "Add", "MatMul"};
			for (size_t k = 0; s->trt && k < QD_ARRAY_LEN(trt_ops); k++)
				if (!qd_json_list_has(eo, trt_ops[k]))
					json_array_append_new(eo, json_string(trt_ops[k]));
			if (json_array_size(eo))
				json_object_set(x, "OpTypesToExcludeOutputQuantization", eo);
			json_decref(eo);
			if (json_object_size(x))
				json_object_set(u, "extra_options", x);
			json_decref(x);
		}
	}
	const struct qd_pass_vt *vt = qd_pass_find(type);
	json_t *space = NULL, *cfg = NULL;
	if (qd_pass_resolve(vt, s->pc->name ? s->pc->name : "inc", u, &space, err) == 0)
		cfg = qd_pass_space_first(space);
	json_decref(space);
	if (cfg && !strcmp(s->approach, "weight_only") && !strcmp(s->algo, "GPTQ")) {
		/* GPTQ's own settings travel as OnnxMatMul4Quantizer's weight_only_quant_configs */
		const json_t *ga = recipe(s, "gptq_args");
		json_t *wq = json_object();
		const char *keys[] = {"percdamp", "actorder", "mse", "perchannel"};
		for (size_t i = 0; i < QD_ARRAY_LEN(keys); i++)
			set_if(wq, keys[i], json_object_get(ga, keys[i]));
		json_object_set_new(cfg, "weight_only_quant_configs", wq);
	}
	if (cfg && !strcmp(s->approach, "weight_only") && !strcmp(s->algo, "AWQ")) {
		const json_t *aa = recipe(s, "awq_args");
		if (!qd_pass_opt_bool(aa, "enable_mse_search", true)) {
			/* INC's body of AWQ sits under enable_mse_search: without it only RTN runs */
			qd_pass_log(s->pc, QD_LOG_INFO, "awq_args: enable_mse_search is false, and INC runs its "
				    "whole AWQ (scale and clip search) under it: RTN");
			json_object_set_new(cfg, "algorithm", json_string("RTN"));
			json_object_set_new(cfg, "data_config", json_null());
		} else {
			json_t *wq = json_object();
			bool sc = qd_pass_opt_bool(aa, "enable_auto_scale", true);
			json_object_set_new(wq, "enable_auto_scale", json_boolean(sc));
			json_object_set_new(wq, "enable_mse_search", json_true());
			json_object_set_new(cfg, "weight_only_quant_configs", wq);
			qd_pass_log(s->pc, QD_LOG_INFO, "AWQ: %sclip search (per block and output column, range "
				    "ratios 1.00 .. 0.91)", sc ? "activation-aware scale search, then " : "");
		}
	}
	json_decref(u);
	*vt_out = vt;
	if (!cfg && err->code == 0)
		qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	return cfg;
}

/* Pre-optimize, apply the recipes, run the translated pass on m. extra_ex / ex_types:
 * the tuning's fallbacks (may be NULL). stats: the pass's figures. */
static int run_once(struct inc *s, struct qd_model *m, const json_t *extra_ex, const json_t *ex_types, int64_t size,
		    json_t *stats, struct qd_err *err)
{
	int rc = qd_model_normalize_constants(m, err);
	if (rc < 0)
		return rc;
	Onnx__GraphProto *g = m->proto->graph;
	if ((rc = rename_nodes(s, g, err)) < 0)
		return rc;
	if (recipe_bool(s, "gemm_to_matmul", true) && (rc = gemm_to_matmul(s, m, err)) < 0)
		return rc;
	if (recipe_bool(s, "smooth_quant", false) && (rc = smooth_quant(s, m, size, err)) < 0)
		return rc;
	json_t *ex = recipe_exclusions(s, g);
	size_t i; json_t *v;
	json_array_foreach(extra_ex, i, v)
		if (!qd_json_list_has(ex, json_string_value(v)))
			json_array_append(ex, v);
	const struct qd_pass_vt *vt = NULL;
	json_t *cfg = translate(s, ex, ex_types, size, &vt, err);
	json_decref(ex);
	if (!cfg)
		return -err->code;
	json_object_set(stats, "translated_to", json_pack("{s:s, s:O}", "type", vt->name, "config", cfg));
	json_decref(json_object_get(stats, "translated_to"));
	char *t = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
	qd_pass_log(s->pc, QD_LOG_INFO, "approach %s runs as %s %s", s->approach, vt->name, t ? t : "");
	free(t);
	struct qd_pass_ctx c = *s->pc;
	c.stats = stats;
	rc = vt->run(&c, m, cfg, err);
	json_decref(cfg);
	return rc;
}

/* ---- INC's accuracy-aware tuning (reference/inc_vitis_qnn.md §A.3) ----
 * With a metric, the "basic" strategy on quantd's evaluation functions (search/eval.h):
 * the float model is evaluated once (the baseline), then each trial re-runs the pass on the
 * float model with a fallback set and is evaluated on the metric's first sub_type:
 *   1. the default configuration (all ops quantized), once per calibration_sampling_size;
 *   2. op-type-wise fallback: each quantized op type kept in float in turn;
 *   3. node-wise fallback: each quantized node kept in float alone, last node first, its
 *      value recorded; then the nodes sorted best first and kept in float 1, 2, 3 ... at a
 *      time (INC's incremental fallback).
 * A trial meets the criterion when its value is at least the target: relative base·(1 − tol)
 * (or base·(1 + tol) when lower is better), absolute base − tol (base + tol). With timeout
 * 0 the first trial that meets it wins; with a timeout the trials go on until max_trials or
 * the timeout, and the objective picks among those that met it (performance: the most
 * nodes quantized; modelsize / footprint: the smallest file). No trial meeting it fails the
 * pass (Olive: "no model met the accuracy goal; increase max_trials"). */

struct trial {
	json_t *ex_nodes, *ex_types;   /* fallbacks (new) */
	int64_t size;
	double value;
	bool ok, met;
	long long bytes;
	long nq;                       /* nodes quantized */
	const char *stage;
	json_t *stats;                 /* the pass's stats (new) */
};

struct tune {
	struct inc *s;
	char *ws;                      /* workspace directory (owned) */
	bool own_ws;
	char *float_path;
	struct qd_eval_plan *plan;
	json_t *wf;                    /* the workflow with the metric as its evaluator (new) */
	struct qd_workflow_req req;
	struct qd_eval_ctx ec;
	const char *key;
	bool hib, relative;
	double tol, base, target, timeout, t0;
	long max_trials;
	const char *objective;
	struct trial *t;
	size_t nt;
	json_t *log;                   /* trials for the stats */
};

static void trial_free(struct trial *t)
{
	json_decref(t->ex_nodes);
	json_decref(t->ex_types);
	json_decref(t->stats);
}

static bool tune_over(const struct tune *u)
{
	const volatile int *c = u->s->pc->hooks ? u->s->pc->hooks->cancel : NULL;
	return (long)u->nt >= u->max_trials || (c && *c) ||
	       (u->timeout > 0 && qd_now_mono() - u->t0 > u->timeout);
}

static bool tune_done(const struct tune *u)
{
	if (tune_over(u))
		return true;
	for (size_t i = 0; u->timeout == 0 && i < u->nt; i++)
		if (u->t[i].met)
			return true;
	return false;
}

/* One trial: the pass on a fresh copy of the float model with these fallbacks, saved into
 * the workspace and evaluated. Returns its index, or -1 (the trial failed, logged). */
static long tune_trial(struct tune *u, const char *stage, const json_t *ex_nodes, const json_t *ex_types, int64_t size)
{
	struct trial *nt = realloc(u->t, (u->nt + 1) * sizeof *nt);
	if (!nt)
		return -1;
	u->t = nt;
	struct trial *t = &u->t[u->nt];
	memset(t, 0, sizeof *t);
	t->stage = stage;
	t->size = size;
	t->ex_nodes = ex_nodes ? json_deep_copy(ex_nodes) : json_array();
	t->ex_types = ex_types ? json_deep_copy(ex_types) : json_array();
	t->stats = json_object();
	size_t n = ++u->nt;
	char *path = qd_asprintf("%s/trial_%zu.onnx", u->ws, n);
	struct qd_err e = { 0 };
	struct qd_model *m = NULL;
	json_t *values = NULL;
	double ts = qd_now_mono();
	int rc = path ? qd_model_load_file(u->float_path, NULL, &m, &e) : qd_err_set(&e, QD_ENOMEM, NULL, "out of memory");
	/* the tuning's own trials log only their outcome */
	struct qd_pass_ctx quiet = *u->s->pc;
	quiet.hooks = NULL;
	quiet.job_id = u->s->pc->job_id;
	struct inc si = *u->s;
	si.pc = &quiet;
	si.log = json_pack("{s:[]}", "ignored");
	if (rc == 0)
		rc = run_once(&si, m, t->ex_nodes, json_array_size(t->ex_types) ? t->ex_types : NULL, size, t->stats, &e);
	json_decref(si.log);
	if (rc == 0)
		rc = qd_model_save_file(m, path, NULL, &e);
	qd_model_free(m);
	if (rc == 0)
		rc = qd_eval_run(u->plan, &u->ec, path, &values, NULL, &e);
	const json_t *v = json_object_get(values, u->key);
	if (rc == 0 && !json_is_number(v))
		rc = qd_err_set(&e, QD_EUNSUPPORTED, "metric", "the metric '%s' could not be measured on the candidate", u->key);
	if (rc == 0) {
		t->ok = true;
		t->value = json_number_value(v);
		t->met = u->hib ? t->value >= u->target : t->value <= u->target;
		struct stat st;
		t->bytes = stat(path, &st) == 0 ? (long long)st.st_size : 0;
		const char *k; json_t *c;
		json_object_foreach(json_object_get(t->stats, "quantized_nodes"), k, c)
			t->nq += (long)json_integer_value(c);
	}
	char *fn = json_dumps(t->ex_nodes, JSON_COMPACT), *ft = json_dumps(t->ex_types, JSON_COMPACT);
	if (t->ok)
		qd_pass_log(u->s->pc, QD_LOG_INFO, "tuning trial %zu (%s): samples %lld, op types in float %s, nodes in float "
			    "%s: %s = %.6g (target %.6g) %s (%.1f s)", n, stage, (long long)size, ft ? ft : "", fn ? fn : "",
			    u->key, t->value, u->target, t->met ? "met" : "missed", qd_now_mono() - ts);
	else
		qd_pass_log(u->s->pc, QD_LOG_WARN, "tuning trial %zu (%s) failed: %s", n, stage, e.msg);
	json_array_append_new(u->log, json_pack("{s:I, s:s, s:I, s:O, s:O, s:o, s:b, s:I, s:I, s:f}", "trial", (json_int_t)n,
						"stage", stage, "calibration_sampling_size", (json_int_t)size,
						"op_types_in_float", t->ex_types, "nodes_in_float", t->ex_nodes,
						"value", t->ok ? json_real(t->value) : json_null(), "met", t->met,
						"quantized_nodes", (json_int_t)t->nq, "bytes", (json_int_t)t->bytes,
						"seconds", qd_now_mono() - ts));
	free(fn);
	free(ft);
	json_decref(values);
	if (u->own_ws || !t->ok)
		unlink(path);
	free(path);
	return t->ok ? (long)(n - 1) : -1;
}

/* Olive's mapping of the metric's goal, or accuracy_criterion (INC's own) when given;
 * false: no criterion (the default configuration runs once). */
static bool tune_criterion(struct tune *u, const struct qd_objective *o)
{
	const json_t *ac = json_object_get(u->s->params, "accuracy_criterion");
	u->hib = o->higher_is_better;
	if (json_is_object(ac)) {
		const char *c = json_string_value(json_object_get(ac, "criterion"));
		u->hib = qd_pass_opt_bool(ac, "higher_is_better", true);
		u->relative = !c || !strcmp(c, "relative");
		const json_t *tl = json_object_get(ac, "tolerable_loss");
		if (!tl)
			tl = json_object_get(ac, u->relative ? "relative" : "absolute");
		u->tol = json_is_number(tl) ? json_number_value(tl) : 0.01;
		return true;
	}
	if (!o->goal_type || !strcmp(o->goal_type, "threshold"))
		return false;
	u->relative = !strncmp(o->goal_type, "percent-", 8);
	bool imp = strstr(o->goal_type, "min-improvement") != NULL;
	u->tol = (imp ? -1.0 : 1.0) * o->goal_value / (u->relative ? 100.0 : 1.0);
	return true;
}

/* Data-movement ops (they share their input's parameters) and removable activations are
 * no fallback candidates: keeping them in float alone changes no arithmetic. */
static bool tune_candidate(const char *op)
{
	const struct qd_op_rule *r = qd_op_rule_find(op);
	return !r || (r->kind != QD_OK_SHARED && r->kind != QD_OK_REMOVE);
}

/* Quantized nodes of the float model (after INC's renaming) of the op types trial 0
 * quantized, in graph order. new. */
static json_t *tune_nodes(struct tune *u, const struct trial *t0, struct qd_err *err)
{
	struct qd_model *m = NULL;
	json_t *out = json_array();
	if (qd_model_load_file(u->float_path, NULL, &m, err) < 0)
		return out;
	if (rename_nodes(u->s, m->proto->graph, err) == 0) {
		const json_t *q = json_object_get(t0->stats, "quantized_nodes");
		const Onnx__GraphProto *g = m->proto->graph;
		bool wo = !strcmp(u->s->approach, "weight_only");
		for (size_t i = 0; i < g->n_node; i++) {
			const char *op = g->node[i]->op_type;
			bool gemm = !strcmp(op, "Gemm") && json_object_get(q, "MatMul") && recipe_bool(u->s, "gemm_to_matmul", true);
			if ((json_object_get(q, op) || gemm || (wo && !strcmp(op, "MatMul"))) && tune_candidate(op))
				json_array_append_new(out, json_string(g->node[i]->name));
		}
	}
	qd_model_free(m);
	return out;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = ((const double *)a)[0], y = ((const double *)b)[0];
	return x < y ? 1 : x > y ? -1 : 0;
}

static void tune_basic(struct tune *u, struct qd_err *err)
{
	struct inc *s = u->s;
	long first = -1;
	for (size_t i = 0; i < s->n_sizes && !tune_done(u); i++) {
		long k = tune_trial(u, "default", NULL, NULL, s->sizes[i]);
		if (first < 0)
			first = k;
	}
	if (first < 0 || tune_done(u))
		return;
	int64_t size = u->t[first].size;
	/* op-type-wise fallback */
	json_t *types = json_array();
	const char *k; json_t *c;
	json_object_foreach(json_object_get(u->t[first].stats, "quantized_nodes"), k, c)
		if (tune_candidate(k))
			json_array_append_new(types, json_string(k));
	bool wo = !strcmp(s->approach, "weight_only");
	if (!wo && json_array_size(types) == 1) {
		qd_pass_log(s->pc, QD_LOG_INFO, "tuning: op-type fallback skipped: %s is the only quantized compute op "
			    "type (its fallback is the float model)", json_string_value(json_array_get(types, 0)));
		json_array_clear(types);
	}
	for (size_t i = 0; !wo && i < json_array_size(types) && !tune_done(u); i++) {
		json_t *one = json_pack("[O]", json_array_get(types, i));
		tune_trial(u, "op-type fallback", NULL, one, size);
		json_decref(one);
	}
	json_decref(types);
	/* node-wise fallback: one node at a time, last first, then incrementally */
	json_t *nodes = tune_nodes(u, &u->t[first], err);
	size_t nn = json_array_size(nodes);
	double *score = calloc(2 * nn + 2, sizeof *score);
	size_t ns = 0;
	for (size_t i = nn; score && i-- > 0 && !tune_done(u);) {
		json_t *one = json_pack("[O]", json_array_get(nodes, i));
		long t = tune_trial(u, "node fallback", one, NULL, size);
		json_decref(one);
		if (t >= 0) {
			score[2 * ns] = u->hib ? u->t[t].value : -u->t[t].value;
			score[2 * ns + 1] = (double)i;
			ns++;
		}
	}
	if (score)
		qsort(score, ns, 2 * sizeof *score, cmp_desc);
	json_t *acc = json_array();
	for (size_t j = 0; j < ns && !tune_done(u); j++) {
		json_array_append(acc, json_array_get(nodes, (size_t)score[2 * j + 1]));
		if (j > 0)   /* one node alone was the trial above */
			tune_trial(u, "incremental fallback", acc, NULL, size);
	}
	json_decref(acc);
	free(score);
	json_decref(nodes);
}

static long tune_pick(const struct tune *u)
{
	long best = -1;
	for (size_t i = 0; i < u->nt; i++) {
		const struct trial *t = &u->t[i];
		if (!t->met)
			continue;
		if (u->timeout == 0)
			return (long)i;
		bool size_obj = strcmp(u->objective, "performance") != 0;
		if (best < 0 || (size_obj ? t->bytes < u->t[best].bytes : t->nq > u->t[best].nq))
			best = (long)i;
	}
	return best;
}

static int tune(struct inc *s, struct qd_model *m, struct qd_err *err)
{
	struct qd_pass_ctx *pc = s->pc;
	struct tune u = { .s = s, .log = json_array(), .t0 = qd_now_mono() };
	const json_t *tc = json_object_get(s->params, "tuning_criterion");
	u.max_trials = json_is_integer(json_object_get(tc, "max_trials")) ? (long)json_integer_value(json_object_get(tc, "max_trials")) : 5;
	u.timeout = json_is_number(json_object_get(tc, "timeout")) ? json_number_value(json_object_get(tc, "timeout")) : 0;
	u.objective = json_string_value(json_object_get(tc, "objective")) ?: "performance";
	const json_t *ql = json_object_get(s->params, "quant_level");
	int rc = 0;
	const char *ws = json_string_value(json_object_get(s->params, "workspace"));
	if (ws) {
		u.ws = strdup(ws);
		rc = u.ws ? qd_mkdir_p(ws, err) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	} else {
		char tmpl[] = "/tmp/quantd-inc-XXXXXX";
		u.own_ws = true;
		u.ws = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
		if (!u.ws)
			rc = qd_err_set(err, QD_EIO, "workspace", "cannot create a temporary tuning workspace");
	}
	json_t *metrics = json_pack("[O]", json_object_get(s->params, "metric"));
	u.wf = json_copy((json_t *)pc->workflow);
	if (!u.wf || !metrics) {
		json_decref(metrics);
		rc = rc ? rc : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	} else {
		json_object_del(u.wf, "engine");
		json_object_set_new(u.wf, "evaluator", json_pack("{s:o}", "metrics", metrics));
	}
	if (rc == 0 && !(u.float_path = qd_asprintf("%s/float.onnx", u.ws)))
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (rc == 0)
		rc = qd_model_save_file(m, u.float_path, NULL, err);
	if (rc == 0) {
		json_t *problems = json_array();
		rc = qd_eval_plan_parse(u.wf, NULL, qd_workflow_eval_flags(u.wf), &u.plan, problems, NULL, err);
		if (rc < 0)
			qd_err_wrap(err, "metric");
		json_decref(problems);
	}
	if (rc == 0 && u.plan->n_obj == 0)
		rc = qd_err_set(err, QD_EINVAL, "metric", "the metric has no sub_type to tune on");
	const struct qd_objective *o = rc == 0 ? &u.plan->obj[0] : NULL;
	bool criterion = o && tune_criterion(&u, o);
	if (rc == 0 && !criterion) {
		qd_pass_log(pc, QD_LOG_WARN, "metric '%s' has no goal (or a threshold goal) and there is no accuracy_criterion: "
			    "INC quantizes once with the default configuration, as in Olive", o->key);
		qd_eval_plan_free(u.plan);
		u.plan = NULL;
		if (u.own_ws)
			unlink(u.float_path);
		free(u.float_path); free(u.ws);
		json_decref(u.wf); json_decref(u.log);
		return run_once(s, m, NULL, NULL, s->sizes[0], pc->stats, err);
	}
	u.req = (struct qd_workflow_req){ .job_id = pc->job_id, .model_path = u.float_path, .workflow = u.wf,
					  .out_dir = u.ws, .threads = pc->threads, .data_paths = pc->data_paths,
					  .max_tensor_bytes = pc->max_tensor_bytes, .max_memory_bytes = pc->max_memory_bytes,
					  .max_seconds = pc->max_seconds };
	u.ec = (struct qd_eval_ctx){ .req = &u.req, .hooks = pc->hooks, .float_path = u.float_path };
	json_t *bv = NULL;
	if (rc == 0 && (rc = qd_eval_run(u.plan, &u.ec, u.float_path, &bv, NULL, err)) < 0)
		qd_err_wrap(err, "cannot evaluate the float model on the metric");
	if (rc == 0 && !json_is_number(json_object_get(bv, o->key)))
		rc = qd_err_set(err, QD_EUNSUPPORTED, "metric", "metric '%s' cannot be measured on the float model", o->key);
	if (rc == 0) {
		u.key = o->key;
		u.base = json_number_value(json_object_get(bv, o->key));
		double d = u.relative ? fabs(u.base) * u.tol : u.tol;
		u.target = u.hib ? u.base - d : u.base + d;
		bool auto_lvl = json_is_string(ql);
		qd_pass_log(pc, QD_LOG_INFO, "accuracy-aware tuning (%s%s): %s baseline %.6g, %s tolerable loss %g -> target "
			    "%.6g (%s is better), max_trials %ld, timeout %g s", auto_lvl ? "quant_level auto: the default "
			    "configuration, then basic; INC's conservative stage is not run" : "basic", "", u.key, u.base,
			    u.relative ? "relative" : "absolute", u.tol, u.target, u.hib ? "higher" : "lower", u.max_trials,
			    u.timeout);
		tune_basic(&u, err);
	}
	json_decref(bv);
	long best = rc == 0 ? tune_pick(&u) : -1;
	if (rc == 0 && best < 0) {
		double top = 0;
		bool any = false;
		for (size_t i = 0; i < u.nt; i++)
			if (u.t[i].ok && (!any || (u.hib ? u.t[i].value > top : u.t[i].value < top))) {
				top = u.t[i].value;
				any = true;
			}
		rc = qd_err_set(err, QD_EMODEL, "tuning_criterion.max_trials", "no model met the accuracy goal in %zu trials "
				"(%s target %.6g, best %s%.6g): increase max_trials or the tolerable loss", u.nt, u.key, u.target,
				any ? "" : "none, ", top);
	}
	if (rc == 0) {
		/* the chosen trial's model becomes the pass's output */
		struct trial *t = &u.t[best];
		char *fn = json_dumps(t->ex_nodes, JSON_COMPACT), *ft = json_dumps(t->ex_types, JSON_COMPACT);
		qd_pass_log(pc, QD_LOG_INFO, "tuning: trial %ld of %zu chosen (%s): %s = %.6g; fell back to fp32: op types %s, "
			    "nodes %s", best + 1, u.nt, t->stage, u.key, t->value, ft ? ft : "", fn ? fn : "");
		free(fn);
		free(ft);
		struct qd_model *bm = NULL;
		rc = qd_model_load_file(u.float_path, NULL, &bm, err);
		if (rc == 0) {
			json_t *st = json_object();
			struct qd_pass_ctx quiet = *pc;
			quiet.hooks = NULL;
			struct inc si = *s;
			si.pc = &quiet;
			rc = run_once(&si, bm, t->ex_nodes, json_array_size(t->ex_types) ? t->ex_types : NULL, t->size, st, err);
			if (rc == 0) {
				Onnx__ModelProto *p = m->proto;
				m->proto = bm->proto;
				bm->proto = p;
				json_object_update(pc->stats, st);
			}
			json_decref(st);
		}
		qd_model_free(bm);
		json_object_set_new(s->log, "tuning", json_pack("{s:s, s:f, s:{s:s, s:b, s:f}, s:f, s:I, s:O, s:{s:O, s:O}, s:s}",
							   "objective", u.key, "baseline", u.base, "criterion", "criterion",
							   u.relative ? "relative" : "absolute", "higher_is_better", u.hib,
							   "tolerable_loss", u.tol, "target", u.target, "chosen", (json_int_t)best + 1,
							   "trials", u.log, "fell_back", "op_types", t->ex_types, "nodes", t->ex_nodes,
							   "workspace", u.own_ws ? "(temporary, removed)" : u.ws));
	} else if (u.nt) {
		json_object_set_new(s->log, "tuning", json_pack("{s:O}", "trials", u.log));
	}
	for (size_t i = 0; i < u.nt; i++)
		trial_free(&u.t[i]);
	free(u.t);
	qd_eval_plan_free(u.plan);
	if (u.float_path && u.own_ws)
		unlink(u.float_path);
	if (u.own_ws && u.ws)
		rmdir(u.ws);
	free(u.float_path);
	free(u.ws);
	json_decref(u.wf);
	json_decref(u.log);
	return rc;
}

int qd_pass_run_inc(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err)
{
	struct inc s = { .pc = ctx, .params = params };
	s.approach = json_string_value(json_object_get(params, "approach"));
	s.recipes = json_object_get(params, "recipes");
	const char *be = json_string_value(json_object_get(params, "backend"));
	s.trt = be && !strcmp(be, "onnxrt_trt_ep");
	const char *fmt = json_string_value(json_object_get(params, "quant_format"));
	s.qdq = fmt && !strcmp(fmt, "QDQ");
	s.log = json_pack("{s:[]}", "ignored");
	json_t *woq = json_deep_copy(json_object_get(params, "weight_only_config"));
	const char *k; json_t *v;
	json_object_foreach(json_object_get(params, "op_type_dict"), k, v)
		json_object_update(woq, json_object_get(v, "weight"));
	s.woq = woq;
	const char *a = json_string_value(json_object_get(woq, "algorithm"));
	snprintf(s.algo, sizeof s.algo, "%s", a ? a : "RTN");
	for (char *p = s.algo; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	const json_t *css = json_object_get(params, "calibration_sampling_size");
	if (json_is_integer(css))
		s.sizes[s.n_sizes++] = json_integer_value(css);
	size_t i; json_t *x;
	json_array_foreach(css, i, x)
		if (s.n_sizes < QD_ARRAY_LEN(s.sizes))
			s.sizes[s.n_sizes++] = json_integer_value(x);
	if (!s.n_sizes)
		s.sizes[s.n_sizes++] = 100;
	if (s.trt)
		qd_pass_log(ctx, QD_LOG_INFO, "backend onnxrt_trt_ep: INC's TensorRT rules: QDQ, symmetric int8 "
			    "activations, Q/DQ pairs on float weights, a dedicated pair per consumer, no "
			    "pre-optimization, no output quantization for Conv / Gemm / Add / MatMul");
	report_params(&s);
	int rc = json_is_object(json_object_get(params, "metric")) ? tune(&s, m, err)
		 : run_once(&s, m, NULL, NULL, s.sizes[0], ctx->stats, err);
	json_object_set(ctx->stats, "inc", s.log);
	json_decref(s.log);
	json_decref(woq);
	return rc;
}
