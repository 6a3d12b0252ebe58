/* search/search.h — hyperparameter search over pass parameters (Olive §2): the search
 * space built from the resolved pass parameters (space.c), the samplers that walk it
 * (sampler.c: sequential, random, tpe) and the ranking of evaluated candidates by
 * objective priority with the pareto frontier (rank.c). Pure library: no model is run
 * here; the trial loop in passes/workflow.c runs the passes and search/eval.c measures.
 *
 * DESIGN
 *  - A space is a list of dimensions (pass, parameter, candidate values), one per
 *    parameter with more than one candidate. A point is one choice index per dimension.
 *    Every point of the product is enumerated once at build time (at most
 *    QD_SEARCH_MAX_RAW): its configuration is normalised (Olive's Conditional rules:
 *    IGNORED parameters go back to their default, INVALID points are dropped), checked
 *    with the pass's own check function (invalid combinations are pruned, not run), and
 *    deduplicated by its canonical JSON. What remains is the list of valid, distinct
 *    points the samplers choose from, in Olive's mixed-radix index order (first
 *    dimension varies fastest).
 *  - A pass given as a list of alternative configurations (Olive's pass search) is one
 *    unit per alternative plus a dimension choosing the alternative; an alternative's own
 *    dimensions only matter in its points (elsewhere they give duplicates). Several
 *    pass_flows (joint order) add a dimension choosing the flow; a point configures and
 *    runs only its flow's passes, and points are distinct by (flow, configuration).
 *  - Samplers hand out indices into that list and never repeat one. tpe is a
 *    Tree-structured Parzen Estimator over the categorical dimensions: after
 *    n_startup seeded random points, the observed points are split into a good and a
 *    bad set by rank, one Parzen (smoothed categorical) estimator per dimension and set
 *    is built, candidates are drawn from the good estimators and the one with the
 *    largest l(x)/g(x) is proposed. Deterministic given the seed.
 *  - Ranking: values are scaled by +1 (higher is better) or -1, a missing value is the
 *    worst; candidates sort lexicographically by objective priority (1 first), goal-
 *    meeting candidates first. The pareto frontier is taken over every ranked objective
 *    (priority > 0; all objectives when none has a priority).
 */
#ifndef QD_SEARCH_H
#define QD_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "common/qd.h"

#define QD_SEARCH_IGNORED "OLIVE_IGNORED_PARAM_VALUE"
#define QD_SEARCH_INVALID "OLIVE_INVALID_PARAM_VALUE"
#define QD_SEARCH_MAX_RAW ((size_t)1 << 18)   /* indexed points enumerated at most */

enum qd_search_order { QD_SEARCH_JOINT, QD_SEARCH_PASS_BY_PASS };
enum qd_sampler_kind { QD_SAMPLER_SEQUENTIAL, QD_SAMPLER_RANDOM, QD_SAMPLER_TPE };
/* how the fallback orders its candidates: by the goal metric each one's exclusion alone
 * buys (confirmed by excluding, INC's basic strategy), by the SNR ranking only, or greedy
 * forward selection that re-measures the candidates after each exclusion it keeps */
enum qd_fallback_ranking { QD_FALLBACK_MEASURED, QD_FALLBACK_SNR, QD_FALLBACK_GREEDY };
#define QD_FALLBACK_TOP_K 8
#define QD_FALLBACK_MAX_TRIALS 16

/* The workflow's search_strategy (top level, else engine.search_strategy). */
struct qd_search_strategy {
	bool enabled;                 /* an object or true; false / null / absent: no search */
	enum qd_search_order order;
	enum qd_sampler_kind sampler;
	int64_t max_iter;             /* trials at most (0 = no limit); max_samples too */
	double max_time;              /* seconds (0 = no limit); at least one trial runs */
	bool stop_when_goals_met;
	uint64_t seed;                /* random / tpe (Olive's default 1) */
	int64_t output_model_num;     /* pareto models kept as artifacts, best first (0: none) */
	/* the accuracy-driven fallback when no trial meets the goals ("fallback": false turns
	 * it off; an object sets these) */
	bool fallback;
	enum qd_fallback_ranking fallback_ranking;
	int64_t fallback_top_k;       /* SNR-ranked candidates confirmed by excluding each alone */
	int64_t fallback_max_trials;  /* trials the fallback runs at most (confirm + accumulate) */
	/* field of the JSON object the strategy came from: "search_strategy" or
	 * "engine.search_strategy" (borrow, static) */
	const char *field;
};
/* Parse it; a bad value is QD_EINVAL naming the field. true means sequential + joint. */
int qd_search_strategy_parse(const json_t *workflow, struct qd_search_strategy *s, struct qd_err *err);
const char *qd_sampler_name(enum qd_sampler_kind k);
const char *qd_search_order_name(enum qd_search_order o);
const char *qd_fallback_ranking_name(enum qd_fallback_ranking r);

/* ---- space (space.c) ---- */

enum qd_search_dim_kind {
	QD_DIM_PARAM,     /* a parameter of a pass (of one of its alternatives when alt >= 0) */
	QD_DIM_ALT,       /* which alternative configuration of a pass (param "alternative") */
	QD_DIM_FLOW,      /* which of the workflow's pass_flows (pass "pass_flows", param "flow") */
};

struct qd_search_dim {
	char *pass;       /* pass name (owned) */
	char *param;      /* parameter name (owned) */
	json_t *values;   /* candidate values, array of >= 2 (owned) */
	enum qd_search_dim_kind kind;
	int alt;          /* QD_DIM_PARAM of a pass with alternatives: the alternative; else -1 */
};

/* One configuration unit of the space: a pass, or one alternative of a pass given as a
 * list of alternative configurations (Olive's pass search). */
struct qd_search_unit {
	char *pass;                      /* owned */
	int alt;                         /* -1: the pass has one configuration */
	const struct qd_pass_vt *vt;
	json_t *base, *conds;            /* configuration at choice 0; conditional rules (owned) */
};

struct qd_search_space {
	json_t *passes;             /* pass names in run order (owned array) */
	json_t *base;               /* pass name -> full configuration at choice 0 (owned) */
	json_t *conds;              /* pass name -> {param -> conditional rule} (owned) */
	struct qd_search_dim *dim;
	size_t n_dim;
	size_t n_raw;               /* product of the dimension sizes (indexed points) */
	size_t n_invalid;           /* dropped by a Conditional INVALID or the pass's check */
	size_t n_dup;               /* dropped as equal to an earlier point after normalising */
	uint32_t *pts;              /* n_pts * n_dim choice indices */
	size_t *raw_to_pt;          /* indexed point -> point (its first equal one), SIZE_MAX: invalid */
	size_t n_pts;
	char **keys;                /* canonical JSON of each point's configuration */
	json_t *first_invalid;      /* {"config", "field", "message"} of the first pruned point, or NULL */
	struct qd_search_unit *unit;
	size_t n_unit;
	json_t *flows;              /* QD_SPACE_FLOWS: the pass_flows (owned), else NULL */
	size_t *pt_flow;            /* each point's flow (QD_SPACE_FLOWS) */
};

#define QD_SPACE_SEARCH_UNSET 1u   /* unset parameters take their search values (Olive's
                                      search mode) unless the pass says disable_search */
#define QD_SPACE_FLOWS 2u          /* the workflow's pass_flows are a dimension: `passes` is
                                      ignored, each point runs the passes of its flow */

/* Build the space over the passes named in `passes` (array of names in the workflow's
 * "passes"; a pass entry's keys host, evaluator, disable_search, output_name,
 * clean_run_cache are not parameters). A pass given as a list of alternative
 * configurations adds a dimension choosing the alternative (param "alternative"), and
 * each alternative's searched parameters are dimensions of their own that only its
 * points use (the configuration then carries the alternative's "type"). An empty space
 * (every point pruned) is QD_EINVAL naming the pass and the first pruned point's reason.
 * *out new. */
int qd_search_space_build(const json_t *workflow, const json_t *passes, unsigned flags,
			  struct qd_search_space **out, struct qd_err *err);
void qd_search_space_free(struct qd_search_space *sp);
/* Configuration of point i: pass name -> parameters (every schema parameter). new. */
json_t *qd_search_space_config(const struct qd_search_space *sp, size_t i);
/* Only the searched parameters of point i: {"<pass>.<param>": value}, plus
 * "<pass>.alternative" and "pass_flow" (indices) where those are searched. new. */
json_t *qd_search_space_params(const struct qd_search_space *sp, size_t i);
/* The passes point i runs, in order (its flow's with QD_SPACE_FLOWS). new. */
json_t *qd_search_space_names(const struct qd_search_space *sp, size_t i);
/* The pass type of configuration cfg of pass `pass` (its "type" when the pass lists
 * alternatives, else the workflow entry's). Borrow (valid while workflow / cfg live). */
const char *qd_search_pass_type(const json_t *workflow, const char *pass, const json_t *cfg);
/* A pass entry object pv (or one alternative) with the pass-entry keys removed (new), or
 * NULL when pv is not an object. */
json_t *qd_search_entry_params(const json_t *pv);

/* ---- samplers (sampler.c) ---- */

struct qd_sampler;
int qd_sampler_new(enum qd_sampler_kind kind, const struct qd_search_space *sp, uint64_t seed,
		   struct qd_sampler **out, struct qd_err *err);
void qd_sampler_free(struct qd_sampler *s);
/* Next point: 1 with *idx (an index < sp->n_pts never handed out before), 0 when every
 * point was handed out. */
int qd_sampler_next(struct qd_sampler *s, size_t *idx);
/* Feedback for point idx: its scaled objective values in priority order (see
 * qd_rank_scale; n = the count given to qd_rank_scale), whether it met every goal, or
 * failed = true when the trial failed (worst). Only tpe uses it. */
void qd_sampler_tell(struct qd_sampler *s, size_t idx, const double *scaled, size_t n, bool goals_met,
		     bool failed);
/* Startup trials of tpe before the model is used (default 4). */
void qd_sampler_set_tpe_startup(struct qd_sampler *s, size_t n);

/* ---- ranking (rank.c) ---- */

struct qd_objective;
/* Objective order used for ranking: indices of the objectives with priority > 0 sorted
 * by (priority, key); when none has a priority, all of them in key order. Returns the
 * count written to order (size n_obj). */
size_t qd_rank_order(const struct qd_objective *obj, size_t n_obj, size_t *order);
/* scaled[k] = ±values[obj[order[k]].key] (+ when higher is better); missing or not a
 * number: -HUGE_VAL. */
void qd_rank_scale(const struct qd_objective *obj, const size_t *order, size_t n, const json_t *values,
		   double *scaled);
/* Compare two candidates (scaled vectors of length n, goal status): negative when a
 * ranks before b. */
int qd_rank_cmp(const double *a, bool a_met, const double *b, bool b_met, size_t n);
/* Rank m candidates (scaled: m * n values; met: m flags). rank_out[r] = candidate
 * index of rank r. pareto[i] = candidate i is on the frontier: among the goal-meeting
 * candidates when any meets its goals, else among all. Returns the best candidate index
 * (the best-ranked goal-meeting one), or -1 when none meets every goal. */
long qd_rank_all(const double *scaled, const bool *met, size_t m, size_t n, size_t *rank_out, bool *pareto);

#endif
