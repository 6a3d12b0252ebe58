/* Unit tests of search/eval.c and search/eval_math.c: classification scores on known
 * confusion matrices (micro / macro / weighted / binary, as torchmetrics and scikit-learn
 * define them), numpy's percentile, Olive's goal rules (every goal type, higher and lower
 * is better, percent forms) and the parsing of Olive evaluators (the default plan, where
 * the evaluator comes from, priorities, problems with their JSON paths, unsupported
 * metrics skipped). */
#include "qd_test.h"
#include "search/eval.h"
#include "search/eval_math.h"

#include <stdlib.h>

static struct qd_eval_counts counts_of(const int64_t *lab, const int64_t *pred, size_t n, size_t k)
{
	struct qd_eval_counts c;
	qd_eval_counts_init(&c, k);
	for (size_t i = 0; i < n; i++)
		qd_eval_counts_add(&c, lab[i], pred[i]);
	return c;
}

static void test_multiclass_scores(void)
{
	/* per class (tp, fp, fn): 0 (2,1,2), 1 (2,2,0), 2 (2,1,1), 3 (0,0,1); class 4 unseen */
	const int64_t lab[] = { 0, 0, 0, 0, 1, 1, 2, 2, 2, 3 };
	const int64_t pred[] = { 0, 0, 1, 2, 1, 1, 2, 0, 2, 1 };
	struct qd_eval_counts c = counts_of(lab, pred, 10, 5);
	CHECK_EQ_INT(c.n, 10);
	CHECK_EQ_INT(c.correct, 6);
	CHECK_EQ_INT(c.tp[0], 2); CHECK_EQ_INT(c.fp[0], 1); CHECK_EQ_INT(c.fn[0], 2);
	CHECK_EQ_INT(c.tp[1], 2); CHECK_EQ_INT(c.fp[1], 2); CHECK_EQ_INT(c.fn[1], 0);
	CHECK_EQ_INT(c.tp[3], 0); CHECK_EQ_INT(c.fp[3], 0); CHECK_EQ_INT(c.fn[3], 1);
	CHECK_NEAR(qd_eval_accuracy(&c, QD_EVAL_AVG_MICRO), 0.6, 1e-15);
	/* macro over the 4 classes seen (class 4 has no label and no prediction) */
	CHECK_NEAR(qd_eval_precision(&c, QD_EVAL_AVG_MACRO), (2.0 / 3 + 0.5 + 2.0 / 3 + 0) / 4, 1e-15);
	CHECK_NEAR(qd_eval_recall(&c, QD_EVAL_AVG_MACRO), (0.5 + 1 + 2.0 / 3 + 0) / 4, 1e-15);
	CHECK_NEAR(qd_eval_f1(&c, QD_EVAL_AVG_MACRO), (4.0 / 7 + 2.0 / 3 + 2.0 / 3 + 0) / 4, 1e-15);
	CHECK_NEAR(qd_eval_accuracy(&c, QD_EVAL_AVG_MACRO), qd_eval_recall(&c, QD_EVAL_AVG_MACRO), 1e-15);
	/* weighted by support 4, 2, 3, 1 */
	CHECK_NEAR(qd_eval_precision(&c, QD_EVAL_AVG_WEIGHTED), (2.0 / 3 * 4 + 0.5 * 2 + 2.0 / 3 * 3) / 10, 1e-15);
	CHECK_NEAR(qd_eval_recall(&c, QD_EVAL_AVG_WEIGHTED), 0.6, 1e-15);   /* = accuracy */
	CHECK_NEAR(qd_eval_f1(&c, QD_EVAL_AVG_WEIGHTED), (4.0 / 7 * 4 + 2.0 / 3 * 2 + 2.0 / 3 * 3) / 10, 1e-15);
	/* micro: pooled counts = the fraction correct for single-label multiclass */
	CHECK_NEAR(qd_eval_precision(&c, QD_EVAL_AVG_MICRO), 0.6, 1e-15);
	CHECK_NEAR(qd_eval_f1(&c, QD_EVAL_AVG_MICRO), 0.6, 1e-15);
	/* out-of-range entries are not counted (the caller reports them) */
	qd_eval_counts_add(&c, 7, 0);
	qd_eval_counts_add(&c, 0, -1);
	CHECK_EQ_INT(c.n, 10);
	qd_eval_counts_free(&c);
	/* nothing counted: 0, not NaN */
	struct qd_eval_counts e;
	qd_eval_counts_init(&e, 3);
	CHECK(qd_eval_f1(&e, QD_EVAL_AVG_MACRO) == 0.0 && qd_eval_accuracy(&e, QD_EVAL_AVG_MICRO) == 0.0);
	qd_eval_counts_free(&e);
}

static void test_binary_scores(void)
{
	/* tp 3, fp 2, fn 1, tn 2 */
	const int64_t lab[] = { 1, 0, 1, 1, 0, 0, 1, 0 };
	const int64_t pred[] = { 1, 1, 0, 1, 1, 0, 1, 0 };
	struct qd_eval_counts c = counts_of(lab, pred, 8, 2);
	CHECK_NEAR(qd_eval_accuracy(&c, QD_EVAL_AVG_BINARY), 5.0 / 8, 1e-15);
	CHECK_NEAR(qd_eval_precision(&c, QD_EVAL_AVG_BINARY), 0.6, 1e-15);
	CHECK_NEAR(qd_eval_recall(&c, QD_EVAL_AVG_BINARY), 0.75, 1e-15);
	CHECK_NEAR(qd_eval_f1(&c, QD_EVAL_AVG_BINARY), 6.0 / 9, 1e-15);
	/* macro over both classes: class 0 has precision 2/3, recall 0.5 */
	CHECK_NEAR(qd_eval_precision(&c, QD_EVAL_AVG_MACRO), (0.6 + 2.0 / 3) / 2, 1e-15);
	CHECK_NEAR(qd_eval_recall(&c, QD_EVAL_AVG_MACRO), (0.75 + 0.5) / 2, 1e-15);
	qd_eval_counts_free(&c);
}

static void test_percentiles(void)
{
	const double x[] = { 1, 2, 3, 4, 10 };   /* numpy.percentile(x, q) */
	CHECK_NEAR(qd_eval_percentile(x, 5, 50), 3.0, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 75), 4.0, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 90), 7.6, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 95), 8.8, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 99), 9.76, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 99.9), 9.976, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 0), 1.0, 1e-12);
	CHECK_NEAR(qd_eval_percentile(x, 5, 100), 10.0, 1e-12);
	const double one[] = { 2.5 };
	CHECK_NEAR(qd_eval_percentile(one, 1, 90), 2.5, 1e-12);
	const double two[] = { 1, 2 };
	CHECK_NEAR(qd_eval_percentile(two, 2, 50), 1.5, 1e-12);
}

static json_t *problems, *ignored;

/* parse a workflow (JSON text); fresh problems / ignored each time */
static int parse(const char *text, const char *pass, unsigned flags, struct qd_eval_plan **p)
{
	json_decref(problems);
	json_decref(ignored);
	problems = json_array();
	ignored = json_array();
	json_error_t je;
	json_t *wf = json_loads(text, 0, &je);
	if (!wf) {
		fprintf(stderr, "bad test JSON: %s\n%s\n", je.text, text);
		return -999;
	}
	struct qd_err e = { 0 };
	int rc = qd_eval_plan_parse(wf, pass, flags, p, problems, ignored, &e);
	json_decref(wf);
	return rc;
}

static const json_t *entry(const json_t *list, const char *field)
{
	size_t i;
	json_t *x;
	json_array_foreach(list, i, x)
		if (!strcmp(json_string_value(json_object_get(x, "field")) ?: "", field))
			return x;
	return NULL;
}

static const char *msg(const char *field)
{
	return json_string_value(json_object_get(entry(problems, field), "message")) ?: "";
}

static const struct qd_objective *obj(const struct qd_eval_plan *p, const char *key)
{
	for (size_t i = 0; p && i < p->n_obj; i++)
		if (!strcmp(p->obj[i].key, key))
			return &p->obj[i];
	return NULL;
}

#define PASSES "\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\"}}"

static void test_default_plan(void)
{
	struct qd_eval_plan *p = NULL;
	CHECK_EQ_INT(parse("{" PASSES "}", NULL, 0, &p), 0);
	CHECK(p && p->n_obj == 3);
	const struct qd_objective *c = obj(p, "fidelity-cosine_similarity"), *t = obj(p, "fidelity-top1_agreement"),
				  *s = obj(p, "size_on_disk-bytes");
	CHECK(c && c->priority == 1 && c->higher_is_better && !c->goal_type && !strcmp(c->type, "fidelity"));
	CHECK(t && t->priority == 2 && t->higher_is_better);
	CHECK(s && s->priority == 3 && !s->higher_is_better && !strcmp(s->type, "size_on_disk"));
	CHECK_EQ_INT(json_array_size(problems), 0);
	qd_eval_plan_free(p);
	/* "evaluator": null is no evaluator */
	CHECK_EQ_INT(parse("{" PASSES ", \"evaluator\": null}", NULL, 0, &p), 0);
	CHECK(obj(p, "fidelity-cosine_similarity") != NULL);
	qd_eval_plan_free(p);
}

#define EV_A "{\"metrics\": [{\"name\": \"acc\", \"type\": \"accuracy\", \"sub_types\": [{\"name\": \"top1_agreement\"}]}]}"
#define EV_B "{\"metrics\": [{\"name\": \"lat\", \"type\": \"latency\", \"sub_types\": [{\"name\": \"p90\"}]}]}"

static void test_where_the_evaluator_is(void)
{
	struct qd_eval_plan *p = NULL;
	/* named, top level: a lone sub_type without priority ranks 1 */
	CHECK_EQ_INT(parse("{" PASSES ", \"evaluators\": {\"a\": " EV_A ", \"b\": " EV_B "}, \"evaluator\": \"a\"}",
			   NULL, 0, &p), 0);
	CHECK(p && p->n_obj == 1 && obj(p, "acc-top1_agreement") && p->obj[0].priority == 1);
	CHECK(entry(ignored, "evaluators.b") != NULL);   /* no one names it */
	qd_eval_plan_free(p);
	/* engine.evaluator, inline */
	CHECK_EQ_INT(parse("{" PASSES ", \"engine\": {\"evaluator\": " EV_B "}}", NULL, 0, &p), 0);
	CHECK(obj(p, "lat-p90") && !obj(p, "lat-p90")->higher_is_better);
	qd_eval_plan_free(p);
	/* a pass's evaluator wins for that pass; the workflow's for the others */
	const char *wf = "{\"passes\": {\"q\": {\"type\": \"OnnxDynamicQuantization\", \"evaluator\": \"b\"}, "
			 "\"r\": {\"type\": \"OnnxDynamicQuantization\"}}, \"evaluators\": {\"a\": " EV_A ", \"b\": "
			 EV_B "}, \"evaluator\": \"a\"}";
	CHECK_EQ_INT(parse(wf, "q", 0, &p), 0);
	CHECK(obj(p, "lat-p90") && !obj(p, "acc-top1_agreement"));
	qd_eval_plan_free(p);
	CHECK_EQ_INT(parse(wf, "r", 0, &p), 0);
	CHECK(obj(p, "acc-top1_agreement") && !obj(p, "lat-p90"));
	qd_eval_plan_free(p);
	CHECK_EQ_INT(parse(wf, NULL, 0, &p), 0);
	CHECK(obj(p, "acc-top1_agreement") != NULL);
	CHECK(entry(ignored, "evaluators.b") == NULL);    /* the pass names it */
	qd_eval_plan_free(p);
}

/* one sub_type with a goal: "{metric}" of type t, sub_type s, goal (type, value) */
static struct qd_eval_plan *goal_plan(const char *type, const char *sub, const char *gtype, double gval)
{
	char text[1024];
	snprintf(text, sizeof text, "{" PASSES ", \"data_configs\": {\"held\": {\"dataset\": \"h.npz\"}}, "
		 "\"evaluator\": {\"metrics\": [{\"name\": \"m\", \"type\": \"%s\", \"sub_types\": [{\"name\": \"%s\", "
		 "\"priority\": 1, \"goal\": {\"type\": \"%s\", \"value\": %.17g}}]}]}}", type, sub, gtype, gval);
	struct qd_eval_plan *p = NULL;
	int rc = parse(text, NULL, 0, &p);
	CHECKF(rc == 0, "goal plan %s %s %s %g: %s", type, sub, gtype, gval,
	       json_dumps(problems, JSON_COMPACT) ?: "");
	return p;
}

/* met?, and the target the status reports */
static bool goal_check(const struct qd_eval_plan *p, double cand, double base, double *target)
{
	const char *key = p->obj[0].key;
	json_t *c = json_pack("{s:f}", key, cand), *b = json_pack("{s:f}", key, base), *st = NULL;
	bool met = qd_eval_goals_met(p, c, b, &st);
	const json_t *s = json_object_get(st, key);
	*target = json_number_value(json_object_get(s, "target"));
	CHECK(json_is_true(json_object_get(s, "met")) == met);
	CHECK(json_number_value(json_object_get(s, "baseline")) == base);
	json_decref(c);
	json_decref(b);
	json_decref(st);
	return met;
}

static void test_goals(void)
{
	struct {
		const char *type, *sub, *gtype;
		double gval, base, target, pass, fail;
	} cases[] = {
		/* higher is better (m = +1) */
		{ "accuracy", "top1_agreement", "threshold", 0.9, 0.95, 0.9, 0.9, 0.8999 },
		{ "accuracy", "top1_agreement", "max-degradation", 0.05, 0.9, 0.85, 0.86, 0.84 },
		{ "accuracy", "top1_agreement", "min-improvement", 0.01, 0.9, 0.91, 0.92, 0.905 },
		{ "accuracy", "top1_agreement", "percent-max-degradation", 10, 0.9, 0.81, 0.82, 0.8 },
		{ "throughput", "avg", "percent-min-improvement", 20, 100, 120, 121, 119 },
		/* lower is better (m = -1): latency in ms, size in bytes */
		{ "latency", "p90", "threshold", 5, 7, 5, 4.5, 5.5 },
		{ "latency", "avg", "max-degradation", 2, 10, 12, 11.9, 12.1 },
		{ "latency", "avg", "min-improvement", 1, 10, 9, 8.5, 9.5 },
		{ "latency", "p50", "percent-max-degradation", 10, 10, 11, 10.9, 11.2 },
		{ "size_on_disk", "bytes", "percent-min-improvement", 20, 1000, 800, 750, 801 },
		{ "fidelity", "max_abs_error", "max-degradation", 0.01, 0, 0.01, 0.005, 0.02 },
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(cases); i++) {
		struct qd_eval_plan *p = goal_plan(cases[i].type, cases[i].sub, cases[i].gtype, cases[i].gval);
		if (!p)
			continue;
		double t = 0;
		CHECKF(goal_check(p, cases[i].pass, cases[i].base, &t), "%s %s met by %g", cases[i].sub, cases[i].gtype,
		       cases[i].pass);
		CHECK_NEAR(t, cases[i].target, 1e-12);
		CHECKF(!goal_check(p, cases[i].fail, cases[i].base, &t), "%s %s missed by %g", cases[i].sub,
		       cases[i].gtype, cases[i].fail);
		/* an unmeasured value does not meet its goal; a goal against a missing baseline neither */
		json_t *empty = json_object(), *b = json_pack("{s:f}", p->obj[0].key, cases[i].base), *st = NULL;
		CHECK(!qd_eval_goals_met(p, empty, b, &st));
		CHECK(json_is_null(json_object_get(json_object_get(st, p->obj[0].key), "value")));
		json_decref(st);
		if (strcmp(cases[i].gtype, "threshold")) {
			json_t *c = json_pack("{s:f}", p->obj[0].key, cases[i].pass);
			CHECK(!qd_eval_goals_met(p, c, empty, NULL));
			json_decref(c);
		}
		json_decref(empty);
		json_decref(b);
		qd_eval_plan_free(p);
	}
	/* without goals everything is met */
	struct qd_eval_plan *p = NULL;
	CHECK_EQ_INT(parse("{" PASSES "}", NULL, 0, &p), 0);
	json_t *st = NULL, *e = json_object();
	CHECK(qd_eval_goals_met(p, e, e, &st) && json_object_size(st) == 0);
	json_decref(st);
	json_decref(e);
	qd_eval_plan_free(p);
}

static void test_problems(void)
{
	struct qd_eval_plan *p = NULL;
	const char *wf = "{" PASSES ", \"data_configs\": {\"held\": {\"dataset\": \"h.npz\"}}, "
		"\"evaluators\": {\"e\": {\"type\": \"OliveEvaluator\", \"metrics\": ["
		"{\"name\": \"a\", \"type\": \"acuracy\", \"sub_types\": [{\"name\": \"accuracy_score\"}]},"
		"{\"name\": \"f\", \"type\": \"fidelity\", \"sub_types\": [{\"name\": \"cosine\", \"goal\": "
		"{\"type\": \"threshold\", \"value\": 0.9}}, {\"name\": \"snr_db\", \"priority\": 1, \"colour\": 1}]},"
		"{\"name\": \"l\", \"type\": \"latency\", \"sub_types\": [{\"name\": \"avg\", \"priority\": 2, "
		"\"metric_config\": {\"warmup_num\": 1}}, {\"name\": \"p50\", \"metric_config\": {\"warmup_num\": 2}}, "
		"{\"name\": \"p90\", \"metric_config\": {\"repeats\": 3}}]},"
		"{\"name\": \"c\", \"type\": \"custom\", \"user_config\": {\"user_script\": \"u.py\", \"evaluate_func\": "
		"\"f\"}, \"sub_types\": [{\"name\": \"x\"}]},"
		"{\"name\": \"f\", \"type\": \"size_on_disk\", \"sub_types\": [{\"name\": \"bytes\"}]},"
		"{\"name\": \"g\", \"type\": \"accuracy\", \"sub_types\": [{\"name\": \"f1_score\", \"goal\": "
		"{\"type\": \"percent-max-degradation\", \"value\": 100}, \"metric_config\": {\"task\": \"multilabel\"}}]}"
		"]}}, \"evaluator\": \"e\"}";
	CHECK(parse(wf, NULL, 0, &p) < 0 && p == NULL);
	const char *E = "evaluators.e.metrics";
	char f[200];
#define AT(suffix) (snprintf(f, sizeof f, "%s%s", E, suffix), f)
	CHECKF(strstr(msg(AT("[0].type")), "unknown metric type 'acuracy'") != NULL, "%s", msg(AT("[0].type")));
	CHECKF(strstr(msg(AT("[1].sub_types[0].name")), "its goal is on an unknown metric") != NULL, "%s",
	       msg(AT("[1].sub_types[0].name")));
	CHECK(strstr(msg(AT("[1].sub_types[1].colour")), "unknown sub_type key") != NULL);
	CHECK(strstr(msg(AT("[2].sub_types[1].metric_config")), "different warmup_num") != NULL);
	CHECK(strstr(msg(AT("[2].sub_types[2].metric_config.repeats")), "repeat_test_num") != NULL);
	CHECK(strstr(msg(AT("[3].type")), "user code") != NULL && strstr(msg(AT("[3].type")), "accuracy (") != NULL);
	CHECK_STR(json_string_value(json_object_get(entry(problems, AT("[3].type")), "code")), "UNSUPPORTED");
	CHECK(strstr(msg(AT("[4].name")), "used twice") != NULL);
	CHECK(strstr(msg(AT("[5].sub_types[0].goal.value")), "(0, 100)") != NULL);
	CHECK_STR(json_string_value(json_object_get(entry(problems, AT("[5].sub_types[0].metric_config.task")),
						    "code")), "UNSUPPORTED");
	CHECK(entry(ignored, "evaluators.e.type") != NULL);
	/* the first problem's code is returned */
	CHECK_EQ_INT(parse(wf, NULL, 0, &p), -QD_EINVAL);

	/* priorities: not 1..K; several sub_types and none; labels without a data config */
	CHECK(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"l\", \"type\": \"latency\", "
		    "\"sub_types\": [{\"name\": \"avg\", \"priority\": 1}, {\"name\": \"p50\", \"priority\": 3}]}]}}",
		    NULL, 0, &p) < 0);
	CHECKF(strstr(msg("evaluator.metrics"), "must be 1..2") && strstr(msg("evaluator.metrics"), "l-p50=3"), "%s",
	       msg("evaluator.metrics"));
	CHECK(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"l\", \"type\": \"latency\", "
		    "\"sub_types\": [{\"name\": \"avg\"}, {\"name\": \"p50\"}]}]}}", NULL, 0, &p) < 0);
	CHECK(strstr(msg("evaluator.metrics"), "no priorities") != NULL);
	CHECK(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"l\", \"type\": \"latency\", "
		    "\"sub_types\": [{\"name\": \"avg\", \"priority\": 1}, {\"name\": \"p50\", \"priority\": 1}]}]}}",
		    NULL, 0, &p) < 0);
	CHECK(strstr(msg("evaluator.metrics"), "each once") != NULL);
	CHECK(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"a\", \"type\": \"accuracy\", "
		    "\"sub_types\": [{\"name\": \"accuracy_score\"}]}]}}", NULL, 0, &p) < 0);
	CHECK(strstr(msg("evaluator.metrics[0].data_config"), "needs labels") != NULL);
	/* ... with a held-out data config it reads that one, and the labels check names it */
	CHECK_EQ_INT(parse("{" PASSES ", \"data_configs\": {\"held\": {\"dataset\": \"h.npz\"}}, \"evaluator\": "
			   "{\"metrics\": [{\"name\": \"a\", \"type\": \"accuracy\", \"sub_types\": [{\"name\": "
			   "\"accuracy_score\", \"priority\": 1}, {\"name\": \"top1_agreement\", \"priority\": -1}]}]}}",
			   NULL, 0, &p), 0);
	json_t *lc = qd_eval_plan_label_configs(p);
	CHECK(json_array_size(lc) == 1 &&
	      !strcmp(json_string_value(json_object_get(json_array_get(lc, 0), "config")) ?: "", "held") &&
	      !strcmp(json_string_value(json_object_get(json_array_get(lc, 0), "objective")) ?: "",
		      "a-accuracy_score"));
	CHECK(p && obj(p, "a-accuracy_score")->priority == 1 && obj(p, "a-top1_agreement")->priority == 0);
	json_decref(lc);
	qd_eval_plan_free(p);
	/* a metric's data_config must exist */
	CHECK(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"l\", \"type\": \"latency\", "
		    "\"data_config\": \"nope\", \"sub_types\": [{\"name\": \"avg\"}]}]}}", NULL, 0, &p) < 0);
	CHECK(strstr(msg("evaluator.metrics[0].data_config"), "'nope'") != NULL);
	/* huggingface backend names; an unknown backend */
	CHECK_EQ_INT(parse("{" PASSES ", \"data_configs\": {\"held\": {\"dataset\": \"h.npz\"}}, \"evaluator\": "
			   "{\"metrics\": [{\"name\": \"hf\", \"type\": \"accuracy\", \"backend\": \"huggingface_metrics\", "
			   "\"sub_types\": [{\"name\": \"f1\", \"metric_config\": {\"compute_params\": {\"average\": "
			   "\"macro\"}, \"load_params\": {}}}]}]}}", NULL, 0, &p), 0);
	CHECK(obj(p, "hf-f1") && entry(ignored, "evaluator.metrics[0].sub_types[0].metric_config.load_params"));
	qd_eval_plan_free(p);
	CHECK(parse("{" PASSES ", \"data_configs\": {\"held\": {\"dataset\": \"h.npz\"}}, \"evaluator\": {\"metrics\": "
		    "[{\"name\": \"hf\", \"type\": \"accuracy\", \"backend\": \"huggingface_metrics\", \"sub_types\": "
		    "[{\"name\": \"accuracy_score\"}]}]}}", NULL, 0, &p) < 0);
	CHECK(strstr(msg("evaluator.metrics[0].sub_types[0].name"), "quantd computes: accuracy, f1") != NULL);
	CHECK(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"x\", \"type\": \"accuracy\", "
		    "\"backend\": \"sklearn\", \"sub_types\": [{\"name\": \"top1_agreement\"}]}]}}", NULL, 0, &p) < 0);
	CHECK_STR(json_string_value(json_object_get(entry(problems, "evaluator.metrics[0].backend"), "code")),
		  "UNSUPPORTED");
#undef AT
}

static void test_skip_unsupported(void)
{
	struct qd_eval_plan *p = NULL;
	const char *wf = "{" PASSES ", \"evaluator\": {\"metrics\": ["
		"{\"name\": \"c\", \"type\": \"custom\", \"user_config\": {\"user_script\": \"u.py\"}, \"sub_types\": "
		"[{\"name\": \"x\", \"priority\": 2, \"goal\": {\"type\": \"threshold\", \"value\": 1}}]},"
		"{\"name\": \"a\", \"type\": \"accuracy\", \"sub_types\": [{\"name\": \"top1_agreement\", \"priority\": 1},"
		"{\"name\": \"auroc\", \"priority\": -1}]}]}}";
	CHECK(parse(wf, NULL, 0, &p) < 0);
	CHECK_EQ_INT(json_array_size(problems), 2);
	CHECK_EQ_INT(parse(wf, NULL, QD_EVAL_SKIP_UNSUPPORTED, &p), 0);
	CHECK(p && p->n_obj == 1 && obj(p, "a-top1_agreement"));
	CHECK(entry(ignored, "evaluator.metrics[0].type") && entry(ignored, "evaluator.metrics[1].sub_types[1].name"));
	CHECK(strstr(json_string_value(json_object_get(entry(ignored, "evaluator.metrics[0].type"), "why")) ?: "",
		     "skipped with its goals") != NULL);
	qd_eval_plan_free(p);
	/* everything skipped: quantd's default plan, said so */
	CHECK_EQ_INT(parse("{" PASSES ", \"evaluator\": {\"metrics\": [{\"name\": \"c\", \"type\": \"custom\", "
			   "\"sub_types\": [{\"name\": \"x\"}]}]}}", NULL, QD_EVAL_SKIP_UNSUPPORTED, &p), 0);
	CHECK(obj(p, "fidelity-cosine_similarity") && entry(ignored, "evaluator"));
	qd_eval_plan_free(p);
}

int main(void)
{
	test_multiclass_scores();
	test_binary_scores();
	test_percentiles();
	test_default_plan();
	test_where_the_evaluator_is();
	test_goals();
	test_problems();
	test_skip_unsupported();
	json_decref(problems);
	json_decref(ignored);
	return qd_test_done("test_eval");
}
