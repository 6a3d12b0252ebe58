/* Running an Olive-style workflow (pass chain, later search) on one model: shared by the
 * daemon's workers and `quantd run`. */
#ifndef QD_WORKFLOW_H
#define QD_WORKFLOW_H

#include "qd.h"
#include <jansson.h>

struct qd_workflow_hooks {
	void *ud;
	/* progress in [0,1] with a short message; may be NULL */
	void (*progress)(void *ud, double frac, const char *msg);
	/* one log line for the job (also goes to qd_log); may be NULL */
	void (*log)(void *ud, enum qd_log_level lvl, const char *line);
	/* polled between passes / trials / nodes: non-zero means stop with QD_ECANCELED */
	const volatile int *cancel;
	/* a search trial finished (in trial order): record is its full record (what
	 * qd_workflow_req.resume takes back), search the search's progress {trials_done,
	 * trials_planned, best: {trial, params, values, goals_met} | null, finished: false}.
	 * Once at the end of the search (also when canceled) with record NULL and search
	 * {..., finished: true, stopped, pareto: [trial numbers]}. May be NULL. */
	void (*trial)(void *ud, const json_t *record, const json_t *search);
	/* run one search trial in a process of its own (parallel trials, see
	 * qd_workflow_req.parallel): trial is {n, names, cfgs, dir}, *result (new) what
	 * qd_workflow_trial gives; a non-zero *stop asks it to stop (QD_ECANCELED). Called
	 * from several threads at once. NULL: trials run in this process, one at a time. */
	int (*run_trial)(void *ud, const json_t *trial, const volatile int *stop, json_t **result,
			 struct qd_err *err);
};

struct qd_workflow_req {
	const char *job_id;          /* for logs; may be NULL */
	const char *model_path;      /* input model file */
	const json_t *workflow;      /* {"passes": {...}, "evaluator": ..., ...} */
	const char *out_dir;         /* existing directory; receives the files below */
	int threads;                 /* engine threads (0 = 1) */
	const json_t *data_paths;    /* data config "dataset" reference (dst_ id) → local file
	                                path of the dataset; NULL: references are file paths
	                                themselves (quantd run --data) */
	/* engine limits for every model run of the workflow (struct qd_engine_opts; 0 = the
	 * workflow's defaults, SIZE_MAX = none). A run over a limit fails the workflow with
	 * QD_ELIMIT / QD_ETIMEOUT. */
	size_t max_tensor_bytes;
	size_t max_memory_bytes;
	double max_seconds;          /* wall time of one model run */
	/* records (trial hook) of the trials an interrupted attempt of this job finished, or
	 * NULL. A trial whose number and cache key (model hash + pass chain + parameters)
	 * match a record is taken from it instead of being run: its model under
	 * out_dir/trials/<n>/ is reused when its sha256 matches the record, else the trial
	 * runs again. The search walks the same points (the samplers get the same feedback),
	 * so a resumed search ends as an uninterrupted one with the same seed. */
	const json_t *resume;
	/* search trials run at once (needs hooks->run_trial; 0 or 1: one at a time). Trials
	 * are still sampled and committed in trial order, so a search gives the same trials
	 * and best model with any value. */
	int parallel;
};

/* Check a whole workflow (passes/olive.c): *problems (new array of {"field", "message",
 * "code"}) lists every problem at once, *ignored (new array of {"field", "why"}) every key
 * accepted without effect. Returns 0 without problems, else -code of the first (also in
 * err). Either out pointer may be NULL. flags: QD_WF_CHECK_*. */
#define QD_WF_CHECK_MODEL_BOUND 1u   /* the model is given apart (REST "model", --model) */
int qd_workflow_check(const json_t *workflow, unsigned flags, json_t **problems, json_t **ignored,
		      struct qd_err *err);
/* "datasets": {"<data config>": "<dataset id or path>"} sets each data config's "dataset". */
int qd_workflow_bind_datasets(json_t *workflow);
/* Names of the passes to run, in order: pass_flows' first flow, else the order of
 * "passes"; without the passes unsupported_passes = skip skips. new. */
json_t *qd_workflow_pass_order(const json_t *workflow);
bool qd_workflow_skip_unsupported(const json_t *workflow);
/* qd_eval_plan_parse flags from the workflow ("unsupported_metrics": "skip"). */
unsigned qd_workflow_eval_flags(const json_t *workflow);
/* An Olive pass type quantd does not provide (OnnxConversion, ...). */
bool qd_olive_only_pass(const char *type);

/* Validate a workflow at submit time: unknown pass types, unknown parameters, wrong
 * types, and pass types that are not implemented give an error whose field is the JSON
 * path ("passes.q.per_channel"). */
int qd_workflow_validate(const json_t *workflow, struct qd_err *err);

/* Run it. Writes into out_dir: "model.onnx" (the output model; plus "model.onnx.data" if
 * it has external data), "metrics.json", "footprint.json". *result (new, may be NULL on
 * error) is the metrics JSON object that was written. */
int qd_workflow_run(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		    json_t **result, struct qd_err *err);

/* One search trial, in the process a run_trial hook started: run the pass chain
 * trial.names with the configurations trial.cfgs on req's model into trial.dir (a new
 * directory: model.onnx) and evaluate it with the workflow's evaluator. *result (new) is
 * {values, quantized_nodes, passes, quantized_bytes, accuracy, lowest_snr_activations}. */
int qd_workflow_trial(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		      const json_t *trial, json_t **result, struct qd_err *err);

/* Sizes of the distinct external data files a model (loaded with keep_external) uses
 * (workflow size figures, search/eval.c size_on_disk). */
struct qd_model;
long long qd_model_external_bytes(const struct qd_model *m);

/* `quantd run --model M --config W --output DIR` */
int qd_cmd_run(int argc, char **argv);

#endif
