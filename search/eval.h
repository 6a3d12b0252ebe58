/* search/eval.h — evaluation plans: the metrics a workflow asks for (Olive's
 * "evaluators" / "evaluator" shape, plus quantd's label-free fidelity metrics), run on
 * quantd's executor against one candidate model and the float model, and the goals
 * checked against the float model's own values.
 *
 * Contract between search/eval.c (metrics) and search/search.c (space, samplers, goals,
 * ranking, pareto, the trial loop in passes/workflow.c). Keep it small and stable. */
#ifndef QD_SEARCH_EVAL_H
#define QD_SEARCH_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "common/qd.h"
#include "passes/workflow.h"

/* One scalar objective: a metric's sub_type. Key = "<metric name>-<sub_type name>", as
 * Olive names them in footprints ("accuracy-accuracy_score", "latency-avg"). */
struct qd_objective {
	char *key;                 /* "<metric>-<sub_type>" (owned) */
	char *metric;              /* metric name (owned) */
	char *sub_type;            /* sub_type name (owned) */
	char *type;                /* "accuracy" | "fidelity" | "latency" | "throughput" | "size_on_disk" */
	bool higher_is_better;
	int priority;              /* 1..K ranking priority; 0 = not ranked (reported only) */
	/* goal: goal_type NULL = none; else "threshold" | "max-degradation" |
	 * "min-improvement" | "percent-max-degradation" | "percent-min-improvement" */
	char *goal_type;
	double goal_value;
};

struct qd_eval_plan {
	struct qd_objective *obj;
	size_t n_obj;
	/* private to eval.c: parsed metric specs, data config names, latency settings ... */
	void *priv;
};

/* Where the evaluation runs: the same engine options, data bindings, hooks and limits as
 * the passes of the workflow. */
struct qd_eval_ctx {
	const struct qd_workflow_req *req;
	const struct qd_workflow_hooks *hooks;
	const char *float_path;    /* the float (input) model */
};

/* Parse the evaluator that applies (pass_name's "evaluator", else the top level /
 * engine "evaluator", else an inline "evaluator" object; names resolve in
 * "evaluators"). No evaluator at all gives quantd's default plan: fidelity against the
 * float model (cosine_similarity, top1_agreement when the outputs allow) on the
 * held-out data config, or on seeded generated inputs, plus size_on_disk — so a
 * workflow without evaluators still has objectives to rank by.
 * Problems (unknown metric type or sub_type, a metric needing labels with a dataset
 * without "labels", priorities not 1..K, goals on unknown metrics, custom metrics with
 * user_script ...) are appended to `problems` as {"field", "message", "code"} with the
 * JSON path of the offending key; keys accepted without effect go to `ignored` as
 * {"field", "why"}. `flags`: QD_EVAL_SKIP_UNSUPPORTED drops metrics quantd cannot
 * compute (with their goals) and reports each in `ignored` (workflow
 * "unsupported_metrics": "skip"). Returns 0, or -code of the first problem (also err).
 * May be called with req->data_paths NULL (submit-time checks: dataset contents are not
 * opened then; a missing "labels" array is found at run time and is a QD_EINVAL error). */
#define QD_EVAL_SKIP_UNSUPPORTED 1u
int qd_eval_plan_parse(const json_t *workflow, const char *pass_name, unsigned flags,
		       struct qd_eval_plan **out, json_t *problems, json_t *ignored, struct qd_err *err);
void qd_eval_plan_free(struct qd_eval_plan *p);
/* The data configs whose datasets must hold a "labels" (or "label") array, for the
 * submit-time check against the uploaded datasets: new array of {"config", "objective"}
 * (named data configs only; a metric without one reads the held-out data config). */
json_t *qd_eval_plan_label_configs(const struct qd_eval_plan *p);

/* Evaluate one model (model_path; float_path itself for the baseline). *values (new
 * object) maps every objective key to a number; *detail (new object, may be NULL)
 * carries per-output figures for metrics.json: "accuracy" (metrics.json's accuracy
 * section: the default source's per-output "outputs": [...], min_cosine ...),
 * "lowest_snr_activations" (held-out data), "activation_snr" (the same
 * comparison for every activation: tensor name -> SNR in dB), "objectives" (key → how it was measured:
 * data config, samples / correct, task, average, output; latency settings, batch size).
 * With detail NULL only what the objectives need runs (no SNR hooks). An objective the
 * engine cannot measure (an op it does not cover) is absent from *values. Cancel
 * (hooks->cancel) gives -QD_ECANCELED; an engine limit QD_ELIMIT / QD_ETIMEOUT; labels
 * missing or not fitting the predictions QD_EINVAL. */
int qd_eval_run(const struct qd_eval_plan *p, const struct qd_eval_ctx *ctx, const char *model_path,
		json_t **values, json_t **detail, struct qd_err *err);

/* Goal status of one candidate: true when every goal is met. `cand` and `base` are
 * values objects from qd_eval_run (base = the float model). *status (new object, may be
 * NULL): key → {"value", "baseline", "goal": {"type","value"}, "target", "met"}. */
bool qd_eval_goals_met(const struct qd_eval_plan *p, const json_t *cand, const json_t *base, json_t **status);

#endif
