/* search/: search_strategy parsing, the space from pass parameters (SEARCHABLE_VALUES,
 * lists, SearchParameter objects, conditionals, pruning, dedup, disable_search), the
 * samplers on synthetic objectives with a known best point (tpe must find it in fewer
 * trials than random on average over seeds) and the ranking / pareto frontier. */
#include "qd_test.h"
#include "search/search.h"
#include "search/eval.h"
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	if (!j)
		fprintf(stderr, "bad test json: %s: %s\n", je.text, text);
	return j;
}

static int build(const char *wf_text, unsigned flags, struct qd_search_space **sp, struct qd_err *err)
{
	json_t *wf = J(wf_text);
	json_t *order = qd_workflow_pass_order(wf);
	qd_err_clear(err);
	int rc = qd_search_space_build(wf, order, flags, sp, err);
	json_decref(order);
	json_decref(wf);
	return rc;
}

static void test_strategy(void)
{
	struct qd_search_strategy s;
	struct qd_err err;
	json_t *w = J("{\"passes\": {}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(!s.enabled);
	json_decref(w);
	w = J("{\"search_strategy\": true}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(s.enabled && s.sampler == QD_SAMPLER_SEQUENTIAL && s.order == QD_SEARCH_JOINT && s.seed == 1);
	json_decref(w);
	w = J("{\"engine\": {\"search_strategy\": {\"execution_order\": \"pass-by-pass\", \"sampler\": \"tpe\", "
	      "\"max_iter\": 12, \"max_time\": 30, \"stop_when_goals_met\": true, \"seed\": 7, "
	      "\"sampler_config\": {\"max_samples\": 5}}}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(s.enabled && s.sampler == QD_SAMPLER_TPE && s.order == QD_SEARCH_PASS_BY_PASS);
	CHECK_EQ_INT(s.max_iter, 5);
	CHECK_NEAR(s.max_time, 30, 0);
	CHECK(s.stop_when_goals_met && s.seed == 7);
	CHECK_STR(s.field, "engine.search_strategy");
	json_decref(w);
	w = J("{\"search_strategy\": {\"search_algorithm\": \"exhaustive\"}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(s.sampler == QD_SAMPLER_SEQUENTIAL);
	CHECK(s.fallback && s.fallback_ranking == QD_FALLBACK_MEASURED);
	CHECK_EQ_INT(s.fallback_top_k, QD_FALLBACK_TOP_K);
	CHECK_EQ_INT(s.fallback_max_trials, QD_FALLBACK_MAX_TRIALS);
	json_decref(w);
	w = J("{\"search_strategy\": {\"fallback\": {\"ranking\": \"snr\", \"confirm_top_k\": 3, \"max_trials\": 5}}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(s.fallback && s.fallback_ranking == QD_FALLBACK_SNR);
	CHECK_EQ_INT(s.fallback_top_k, 3);
	CHECK_EQ_INT(s.fallback_max_trials, 5);
	json_decref(w);
	w = J("{\"search_strategy\": {\"fallback\": {\"ranking\": \"greedy\"}}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(s.fallback && s.fallback_ranking == QD_FALLBACK_GREEDY);
	CHECK(!strcmp(qd_fallback_ranking_name(s.fallback_ranking), "greedy"));
	json_decref(w);
	w = J("{\"search_strategy\": {\"fallback\": false}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(!s.fallback);
	json_decref(w);
	w = J("{\"search_strategy\": {\"fallback\": {\"max_trials\": 0}}}");
	CHECK_EQ_INT(qd_search_strategy_parse(w, &s, &err), 0);
	CHECK(!s.fallback);
	json_decref(w);
	static const char *const bad[][2] = {
		{"{\"search_strategy\": {\"fallback\": {\"ranking\": \"mse\"}}}", "search_strategy.fallback.ranking"},
		{"{\"search_strategy\": {\"fallback\": {\"max_trials\": -2}}}", "search_strategy.fallback.max_trials"},
		{"{\"search_strategy\": {\"fallback\": {\"groups\": 2}}}", "search_strategy.fallback.groups"},
		{"{\"search_strategy\": {\"fallback\": 1}}", "search_strategy.fallback"},
		{"{\"search_strategy\": {\"sampler\": \"grid\"}}", "search_strategy.sampler"},
		{"{\"search_strategy\": {\"execution_order\": \"both\"}}", "search_strategy.execution_order"},
		{"{\"search_strategy\": {\"max_iter\": -1}}", "search_strategy.max_iter"},
		{"{\"search_strategy\": {\"max_time\": \"1h\"}}", "search_strategy.max_time"},
		{"{\"search_strategy\": {\"stop_when_goals_met\": 1}}", "search_strategy.stop_when_goals_met"},
		{"{\"search_strategy\": {\"sampler_config\": {\"bins\": 3}}}", "search_strategy.sampler_config.bins"},
		{"{\"search_strategy\": {\"include_pass_params\": false}}", "search_strategy.include_pass_params"},
		{"{\"search_strategy\": 3}", "search_strategy"},
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(bad); i++) {
		w = J(bad[i][0]);
		qd_err_clear(&err);
		CHECK(qd_search_strategy_parse(w, &s, &err) < 0);
		CHECK_STR(err.field, bad[i][1]);
		json_decref(w);
	}
}

#define ONNXQ "{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": " \
	"{\"type\": \"OnnxQuantization\", \"data_config\": \"calib\"%s}}}"

static void test_space(void)
{
	struct qd_err err;
	struct qd_search_space *sp = NULL;
	char wf[1024];
	/* Olive's search mode: every unset parameter with search values is searched:
	 * quant_mode 2 x precision 2 x per_channel 2 x reduce_range 2 x quant_preprocess 2 x
	 * quant_format 2 x calibrate_method 3 x activation_type 2 = 384 indexed points;
	 * activation_type follows (quant_format, precision) when static (one of the two is
	 * valid: 96 invalid); dynamic ignores calibrate_method and activation_type (back to
	 * their defaults), so each of the 32 dynamic points has 5 duplicates. */
	snprintf(wf, sizeof wf, ONNXQ, "");
	CHECK_EQ_INT(build(wf, QD_SPACE_SEARCH_UNSET, &sp, &err), 0);
	if (sp) {
		CHECK_EQ_INT(sp->n_dim, 8);
		CHECK_EQ_INT(sp->n_raw, 384);
		CHECK_EQ_INT(sp->n_dup, 160);
		CHECK_EQ_INT(sp->n_invalid, 96);
		CHECK_EQ_INT(sp->n_pts, 128);
		size_t dyn = 0, dyn_minmax = 0;
		for (size_t i = 0; i < sp->n_pts; i++) {
			json_t *c = qd_search_space_config(sp, i);
			json_t *q = json_object_get(c, "q");
			if (!strcmp(json_string_value(json_object_get(q, "quant_mode")), "dynamic")) {
				dyn++;
				dyn_minmax += !strcmp(json_string_value(json_object_get(q, "calibrate_method")), "MinMax");
			}
			json_decref(c);
			for (size_t j = 0; j < i; j++)
				if (!strcmp(sp->keys[i], sp->keys[j]))
					CHECKF(0, "points %zu and %zu are equal", i, j);
		}
		size_t qdq_u8 = 0;
		for (size_t i = 0; i < sp->n_pts; i++) {
			json_t *c = qd_search_space_config(sp, i), *q = json_object_get(c, "q");
			const char *mode = json_string_value(json_object_get(q, "quant_mode"));
			const char *fmt = json_string_value(json_object_get(q, "quant_format"));
			const char *prec = json_string_value(json_object_get(q, "precision"));
			const char *act = json_string_value(json_object_get(q, "activation_type"));
			if (!strcmp(mode, "static")) {
				bool want_u8 = !strcmp(fmt, "QOperator") || !strcmp(prec, "uint8");
				CHECKF(!strcmp(act, want_u8 ? "uint8" : "int8"), "%s %s -> %s", fmt, prec, act);
				qdq_u8 += !strcmp(fmt, "QDQ") && !strcmp(act, "uint8");
			}
			json_decref(c);
		}
		CHECK_EQ_INT(qdq_u8, 24);
		CHECK_EQ_INT(dyn, 32);
		CHECK_EQ_INT(dyn_minmax, 32);
		json_t *p0 = qd_search_space_params(sp, 0);
		CHECK_EQ_INT(json_object_size(p0), 8);
		CHECK(json_object_get(p0, "q.calibrate_method") != NULL);
		json_decref(p0);
	}
	qd_search_space_free(sp);
	sp = NULL;
	/* without search mode only the lists are searched */
	CHECK_EQ_INT(build(wf, 0, &sp, &err), 0);
	CHECK(sp && sp->n_pts == 1 && sp->n_dim == 0);
	qd_search_space_free(sp);
	sp = NULL;
	/* disable_search: unset parameters keep their defaults; the list is still searched */
	snprintf(wf, sizeof wf, ONNXQ, ", \"disable_search\": true, \"per_channel\": [true, false]");
	CHECK_EQ_INT(build(wf, QD_SPACE_SEARCH_UNSET, &sp, &err), 0);
	CHECK(sp && sp->n_pts == 2 && sp->n_dim == 1);
	qd_search_space_free(sp);
	sp = NULL;
	/* static without data: the static points are pruned by the pass's own check */
	CHECK_EQ_INT(build("{\"passes\": {\"q\": {\"type\": \"OnnxQuantization\"}}}", QD_SPACE_SEARCH_UNSET,
			   &sp, &err), 0);
	if (sp) {
		CHECK_EQ_INT(sp->n_pts, 32);
		CHECK_EQ_INT(sp->n_invalid, 192);
		CHECK(sp->first_invalid != NULL);
	}
	qd_search_space_free(sp);
	sp = NULL;
	/* 16-bit activations with QOperator are pruned (they need QDQ), not run */
	snprintf(wf, sizeof wf, ONNXQ, ", \"quant_mode\": \"static\", \"quant_format\": [\"QOperator\", \"QDQ\"], "
		 "\"activation_type\": [\"uint8\", \"uint16\"], \"precision\": \"uint8\"");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), 0);
	CHECK(sp && sp->n_pts == 3 && sp->n_invalid == 1);
	qd_search_space_free(sp);
	sp = NULL;
	/* SearchParameter objects: Boolean, Categorical, Conditional on per_channel */
	snprintf(wf, sizeof wf, ONNXQ, ", \"quant_mode\": \"static\", "
		 "\"per_channel\": {\"olive_parameter_type\": \"SearchParameter\", \"type\": \"Boolean\"}, "
		 "\"precision\": {\"olive_parameter_type\": \"SearchParameter\", \"type\": \"Categorical\", "
		 "\"support\": [\"int8\", \"uint8\"]}, "
		 "\"calibrate_method\": {\"olive_parameter_type\": \"SearchParameter\", \"type\": \"Conditional\", "
		 "\"parents\": [\"per_channel\"], \"support\": {\"true\": [\"MinMax\"], \"false\": "
		 "{\"olive_parameter_type\": \"SearchParameter\", \"type\": \"Categorical\", \"support\": "
		 "[\"MinMax\", \"Entropy\", \"Percentile\"]}}}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), 0);
	if (sp) {
		/* per_channel 2 x precision 2 x calibrate_method 3 = 12; true allows MinMax only */
		CHECK_EQ_INT(sp->n_raw, 12);
		CHECK_EQ_INT(sp->n_pts, 8);
		CHECK_EQ_INT(sp->n_invalid, 4);
	}
	qd_search_space_free(sp);
	sp = NULL;
	/* Python's True / False as keys, a default branch, IGNORED */
	snprintf(wf, sizeof wf, ONNXQ, ", \"quant_mode\": \"static\", \"per_channel\": [true, false], "
		 "\"reduce_range\": {\"olive_parameter_type\": \"SearchParameter\", \"type\": \"Conditional\", "
		 "\"parents\": [\"per_channel\"], \"support\": {\"True\": \"OLIVE_IGNORED_PARAM_VALUE\"}, "
		 "\"default\": [true, false]}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), 0);
	CHECK(sp && sp->n_raw == 4 && sp->n_pts == 3 && sp->n_dup == 1);
	qd_search_space_free(sp);
	sp = NULL;
	/* every combination invalid: 400 naming the problem */
	snprintf(wf, sizeof wf, ONNXQ, ", \"quant_mode\": \"static\", \"per_channel\": [true, false], "
		 "\"calibrate_method\": {\"olive_parameter_type\": \"SearchParameter\", \"type\": \"Conditional\", "
		 "\"parents\": [\"per_channel\"], \"support\": {\"true\": \"OLIVE_INVALID_PARAM_VALUE\", \"false\": "
		 "\"OLIVE_INVALID_PARAM_VALUE\"}}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), -QD_EINVAL);
	CHECK(strstr(err.msg, "search space is empty") != NULL);
	CHECK(sp == NULL);
	/* bad SearchParameter values name the field */
	snprintf(wf, sizeof wf, ONNXQ, ", \"per_channel\": {\"olive_parameter_type\": \"SearchParameter\", "
		 "\"type\": \"Uniform\"}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.per_channel");
	snprintf(wf, sizeof wf, ONNXQ, ", \"precision\": {\"olive_parameter_type\": \"SearchParameter\", "
		 "\"type\": \"Categorical\", \"support\": [\"int8\", \"int7\"]}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.precision");
	snprintf(wf, sizeof wf, ONNXQ, ", \"calibrate_method\": {\"olive_parameter_type\": \"SearchParameter\", "
		 "\"type\": \"Conditional\", \"parents\": [\"nope\"], \"support\": {}}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.calibrate_method");
	snprintf(wf, sizeof wf, ONNXQ, ", \"per_channel\": {\"olive_parameter_type\": \"SearchParameter\", "
		 "\"type\": \"Boolean\"}, \"precision\": {\"olive_parameter_type\": \"SearchParameter\", \"type\": "
		 "\"Boolean\"}");
	CHECK_EQ_INT(build(wf, 0, &sp, &err), -QD_EINVAL);
	CHECK_STR(err.field, "passes.q.precision");
	/* two passes: joint space is the product */
	CHECK_EQ_INT(build("{\"passes\": {\"a\": {\"type\": \"OnnxDynamicQuantization\", \"per_channel\": [true, false]}, "
			   "\"b\": {\"type\": \"OnnxDynamicQuantization\", \"reduce_range\": [true, false], "
			   "\"precision\": [\"int8\", \"uint8\"]}}}", 0, &sp, &err), 0);
	CHECK(sp && sp->n_pts == 8 && sp->n_dim == 3);
	qd_search_space_free(sp);
	sp = NULL;
}

/* ---- samplers on a synthetic objective ---- */

/* 6144 points over 9 dimensions of OnnxStaticQuantization; the objective adds one term
 * per parameter, so exactly one point is best. */
#define SYN "{\"data_configs\": {\"c\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": " \
	"{\"type\": \"OnnxStaticQuantization\", \"data_config\": \"c\", " \
	"\"calibrate_method\": [\"MinMax\", \"Entropy\", \"Percentile\", \"Distribution\"], " \
	"\"per_channel\": [false, true], \"reduce_range\": [false, true], \"quant_preprocess\": [true, false], " \
	"\"activation_symmetric\": [false, true], \"prepare_qdq_config\": [true, false], " \
	"\"precision\": [\"int8\", \"uint8\", \"int16\", \"uint16\"], " \
	"\"size_threshold\": [0, 1024, 4096, 65536], \"min_real_range\": [null, 0.0001, 0.01]}}}"

static double syn_term(const json_t *q, const char *k, const json_t *best)
{
	return json_equal(json_object_get(q, k), json_object_get(best, k)) ? 1.0 : 0.0;
}

static double syn_value(const struct qd_search_space *sp, size_t i, const json_t *best, double *size)
{
	json_t *c = qd_search_space_config(sp, i), *q = json_object_get(c, "q");
	static const char *const ks[] = {"calibrate_method", "per_channel", "reduce_range", "quant_preprocess",
					 "activation_symmetric", "prepare_qdq_config", "precision", "size_threshold",
					 "min_real_range"};
	static const double w[] = {3, 1, 1, 0.5, 0.5, 0.25, 2, 0.75, 1.5};
	double v = 0;
	for (size_t k = 0; k < QD_ARRAY_LEN(ks); k++)
		v += w[k] * syn_term(q, ks[k], best);
	*size = json_integer_value(json_object_get(q, "size_threshold"));
	json_decref(c);
	return v;
}

/* Trials until the best point is proposed (or n_pts + 1 if never). */
static size_t trials_to_best(const struct qd_search_space *sp, enum qd_sampler_kind kind, uint64_t seed,
			     const json_t *best, double vbest, struct qd_objective *obj)
{
	struct qd_sampler *s = NULL;
	struct qd_err err;
	if (qd_sampler_new(kind, sp, seed, &s, &err) < 0)
		return sp->n_pts + 1;
	size_t order[2], n = qd_rank_order(obj, 2, order), t = 0, idx, found = sp->n_pts + 1;
	bool *seen = calloc(sp->n_pts, 1);
	while (qd_sampler_next(s, &idx) == 1) {
		t++;
		if (seen[idx])
			CHECKF(0, "point %zu proposed twice", idx);
		seen[idx] = 1;
		double size, v = syn_value(sp, idx, best, &size);
		json_t *vals = json_pack("{s:f, s:f}", "fid-score", v, "size-bytes", size);
		double sc[2];
		qd_rank_scale(obj, order, n, vals, sc);
		qd_sampler_tell(s, idx, sc, n, v >= 4.0, false);
		json_decref(vals);
		if (v == vbest) {
			found = t;
			break;
		}
	}
	if (found > sp->n_pts)
		CHECK_EQ_INT(t, sp->n_pts);   /* exhausted: every point exactly once */
	free(seen);
	qd_sampler_free(s);
	return found;
}

/* A pass given as a list of alternatives (a dimension choosing it, each alternative's own
 * parameters only in its points), pass_flows as a dimension, the pass-entry keys and the
 * names of samplers / orders. */
static void test_space_alt_flows(void)
{
	struct qd_err err;
	struct qd_search_space *sp = NULL;
	const char *alt = "{\"data_configs\": {\"calib\": {\"dataset\": \"x.npz\"}}, \"passes\": {\"q\": ["
		"{\"type\": \"OnnxQuantization\", \"data_config\": \"calib\", \"per_channel\": [true, false]}, "
		"{\"type\": \"OnnxDynamicQuantization\"}]}}";
	/* alternative 2 x per_channel 2 = 4 indexed points; the dynamic alternative does not
	 * use per_channel: its two points are one */
	CHECK_EQ_INT(build(alt, 0, &sp, &err), 0);
	if (sp) {
		CHECK_EQ_INT(sp->n_dim, 2);
		CHECK_EQ_INT(sp->n_raw, 4);
		CHECK_EQ_INT(sp->n_dup, 1);
		CHECK_EQ_INT(sp->n_pts, 3);
		json_t *wf = J(alt);
		size_t n_static = 0, n_dyn = 0;
		for (size_t i = 0; i < sp->n_pts; i++) {
			json_t *c = qd_search_space_config(sp, i), *p = qd_search_space_params(sp, i);
			const char *type = qd_search_pass_type(wf, "q", json_object_get(c, "q"));
			json_int_t a = json_integer_value(json_object_get(p, "q.alternative"));
			CHECK(json_object_get(p, "q.alternative") != NULL);
			if (type && !strcmp(type, "OnnxQuantization")) {
				n_static++;
				CHECK_EQ_INT(a, 0);
				CHECK(json_is_boolean(json_object_get(p, "q.per_channel")));
				CHECK_EQ_INT(json_object_size(p), 2);
			} else {
				n_dyn++;
				CHECK_STR(type, "OnnxDynamicQuantization");
				CHECK_EQ_INT(a, 1);
				CHECK_EQ_INT(json_object_size(p), 1);
			}
			json_t *names = qd_search_space_names(sp, i);
			CHECK(json_array_size(names) == 1 && !strcmp(json_string_value(json_array_get(names, 0)), "q"));
			json_decref(names);
			json_decref(p);
			json_decref(c);
		}
		CHECK_EQ_INT(n_static, 2);
		CHECK_EQ_INT(n_dyn, 1);
		CHECK(qd_search_space_config(sp, sp->n_pts) == NULL);
		json_decref(wf);
	}
	qd_search_space_free(sp);
	sp = NULL;
	/* pass_flows: the flow is a dimension; each point runs its flow's passes */
	const char *flows = "{\"passes\": {\"a\": {\"type\": \"OnnxDynamicQuantization\"}, "
		"\"b\": {\"type\": \"OnnxDynamicQuantization\", \"per_channel\": [true, false]}}, "
		"\"pass_flows\": [[\"a\"], [\"b\"]]}";
	CHECK_EQ_INT(build(flows, QD_SPACE_FLOWS, &sp, &err), 0);
	if (sp) {
		CHECK_EQ_INT(sp->n_raw, 4);
		CHECK_EQ_INT(sp->n_pts, 3);
		size_t n_a = 0, n_b = 0;
		for (size_t i = 0; i < sp->n_pts; i++) {
			json_t *names = qd_search_space_names(sp, i), *p = qd_search_space_params(sp, i);
			CHECK_EQ_INT(json_array_size(names), 1);
			const char *n0 = json_string_value(json_array_get(names, 0));
			CHECK(json_object_get(p, "pass_flow") != NULL);
			json_int_t f = json_integer_value(json_object_get(p, "pass_flow"));
			if (n0 && !strcmp(n0, "a")) {
				n_a++;
				CHECK_EQ_INT(f, 0);
			} else {
				n_b++;
				CHECK_STR(n0, "b");
				CHECK_EQ_INT(f, 1);
			}
			json_decref(p);
			json_decref(names);
		}
		CHECK_EQ_INT(n_a, 1);
		CHECK_EQ_INT(n_b, 2);
	}
	qd_search_space_free(sp);
	sp = NULL;
	/* the pass-entry keys are not parameters */
	json_t *e = J("{\"type\": \"OnnxQuantization\", \"host\": \"h\", \"evaluator\": \"e\", \"disable_search\": true, "
		      "\"output_name\": \"o\", \"clean_run_cache\": true, \"per_channel\": true}");
	json_t *ep = qd_search_entry_params(e);
	CHECK(ep && json_object_size(ep) == 2 && json_object_get(ep, "type") && json_object_get(ep, "per_channel"));
	json_decref(ep);
	json_decref(e);
	e = J("[1]");
	CHECK(qd_search_entry_params(e) == NULL);
	json_decref(e);
	CHECK_STR(qd_sampler_name(QD_SAMPLER_TPE), "tpe");
	CHECK_STR(qd_sampler_name((enum qd_sampler_kind)7), "?");
	CHECK_STR(qd_search_order_name(QD_SEARCH_PASS_BY_PASS), "pass-by-pass");
}

static void test_samplers(void)
{
	struct qd_err err;
	struct qd_search_space *sp = NULL;
	CHECK_EQ_INT(build(SYN, 0, &sp, &err), 0);
	if (!sp)
		return;
	CHECK_EQ_INT(sp->n_pts, 4 * 2 * 2 * 2 * 2 * 2 * 4 * 4 * 3);
	json_t *best = J("{\"calibrate_method\": \"Percentile\", \"per_channel\": true, \"reduce_range\": false, "
			 "\"quant_preprocess\": false, \"activation_symmetric\": true, \"prepare_qdq_config\": true, "
			 "\"precision\": \"uint16\", \"size_threshold\": 4096, \"min_real_range\": 0.01}");
	double vbest = 3 + 1 + 1 + 0.5 + 0.5 + 0.25 + 2 + 0.75 + 1.5;
	struct qd_objective obj[2] = {
		{ .key = "fid-score", .higher_is_better = true, .priority = 1 },
		{ .key = "size-bytes", .higher_is_better = false, .priority = 2 },
	};
	/* sequential: the best point's index + 1 trials (index order, first dimension fastest) */
	size_t best_idx = SIZE_MAX;
	for (size_t i = 0; i < sp->n_pts; i++) {
		double size;
		if (syn_value(sp, i, best, &size) == vbest) {
			CHECK(best_idx == SIZE_MAX);
			best_idx = i;
		}
	}
	CHECK(best_idx != SIZE_MAX);
	CHECK_EQ_INT(trials_to_best(sp, QD_SAMPLER_SEQUENTIAL, 1, best, vbest, obj), best_idx + 1);
	/* a best point that is never reached: sequential and random hand out every point once */
	CHECK_EQ_INT(trials_to_best(sp, QD_SAMPLER_RANDOM, 3, best, vbest + 1, obj), sp->n_pts + 1);
	/* random and tpe over 10 seeds */
	double sum_r = 0, sum_t = 0;
	size_t max_t = 0;
	for (uint64_t seed = 1; seed <= 10; seed++) {
		size_t r = trials_to_best(sp, QD_SAMPLER_RANDOM, seed, best, vbest, obj);
		size_t t = trials_to_best(sp, QD_SAMPLER_TPE, seed, best, vbest, obj);
		sum_r += (double)r;
		sum_t += (double)t;
		max_t = t > max_t ? t : max_t;
	}
	printf("synthetic 6144 points: mean trials to the best: random %.1f, tpe %.1f (tpe max %zu)\n",
	       sum_r / 10, sum_t / 10, max_t);
	CHECKF(sum_t * 20 < sum_r, "tpe %.1f vs random %.1f", sum_t / 10, sum_r / 10);
	CHECKF(max_t <= 150, "tpe needed %zu trials", max_t);
	/* same seed: same sequence */
	struct qd_sampler *a = NULL, *b = NULL;
	qd_sampler_new(QD_SAMPLER_TPE, sp, 42, &a, &err);
	qd_sampler_new(QD_SAMPLER_TPE, sp, 42, &b, &err);
	bool same = a && b;
	size_t order[2], n = qd_rank_order(obj, 2, order);
	for (int i = 0; same && i < 40; i++) {
		size_t ia, ib;
		same = qd_sampler_next(a, &ia) == 1 && qd_sampler_next(b, &ib) == 1 && ia == ib;
		double size, v = syn_value(sp, ia, best, &size), sc[2];
		json_t *vals = json_pack("{s:f, s:f}", "fid-score", v, "size-bytes", size);
		qd_rank_scale(obj, order, n, vals, sc);
		qd_sampler_tell(a, ia, sc, n, false, false);
		qd_sampler_tell(b, ib, sc, n, false, false);
		json_decref(vals);
	}
	CHECK(same);
	qd_sampler_free(a);
	qd_sampler_free(b);
	json_decref(best);
	qd_search_space_free(sp);
}

/* ---- ranking ---- */

static void test_rank(void)
{
	struct qd_objective obj[3] = {
		{ .key = "lat-avg", .higher_is_better = false, .priority = 2 },
		{ .key = "acc-top1", .higher_is_better = true, .priority = 1 },
		{ .key = "size-bytes", .higher_is_better = false, .priority = 0 },
	};
	size_t order[3];
	CHECK_EQ_INT(qd_rank_order(obj, 3, order), 2);
	CHECK(order[0] == 1 && order[1] == 0);
	/* candidates: (acc, lat) */
	const double acc[] = {0.90, 0.95, 0.95, 0.80, 0.99};
	const double lat[] = {10, 12, 11, 5, 30};
	double sc[5 * 2];
	bool met[5];
	for (size_t i = 0; i < 5; i++) {
		json_t *v = json_pack("{s:f, s:f}", "acc-top1", acc[i], "lat-avg", lat[i]);
		qd_rank_scale(obj, order, 2, v, &sc[i * 2]);
		json_decref(v);
		met[i] = acc[i] >= 0.9;   /* goal: acc >= 0.9 */
	}
	CHECK_NEAR(sc[1], -10, 0);
	size_t rank[5];
	bool par[5];
	long best = qd_rank_all(sc, met, 5, 2, rank, par);
	CHECK_EQ_INT(best, 4);                        /* highest accuracy wins (priority 1) */
	CHECK(rank[0] == 4 && rank[1] == 2 && rank[2] == 1 && rank[3] == 0 && rank[4] == 3);
	/* pareto among the goal-meeting ones: 4 (acc), 2 (acc 0.95 at lat 11), 0 (lat 10) */
	CHECK(par[4] && par[2] && par[0] && !par[1] && !par[3]);
	/* nobody meets the goals: best -1, frontier over all (3 is the fastest) */
	bool none[5] = {0};
	best = qd_rank_all(sc, none, 5, 2, rank, par);
	CHECK_EQ_INT(best, -1);
	CHECK(par[3] && par[4] && par[2] && par[0] && !par[1]);
	/* a missing value is the worst */
	json_t *v = json_pack("{s:f}", "lat-avg", 1.0);
	double s2[2];
	qd_rank_scale(obj, order, 2, v, s2);
	CHECK(s2[0] == -HUGE_VAL && s2[1] == -1.0);
	json_decref(v);
	CHECK(qd_rank_cmp(&sc[0], true, s2, true, 2) < 0);
	/* no priorities at all: every objective in key order */
	for (size_t i = 0; i < 3; i++)
		obj[i].priority = 0;
	CHECK_EQ_INT(qd_rank_order(obj, 3, order), 3);
	CHECK(order[0] == 1 && order[1] == 0 && order[2] == 2);
}

int main(void)
{
	test_strategy();
	test_space();
	test_space_alt_flows();
	test_samplers();
	test_rank();
	return qd_test_done("test_search");
}
