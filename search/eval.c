/* search/eval.c — evaluation plans (search/eval.h): the objectives a workflow asks for,
 * measured with quantd's executor on one candidate model against the float model, and
 * the goals checked against the float model's own values.
 *
 * DESIGN
 * - A plan is a list of metrics (Olive's {name, type, data_config, sub_types}); every
 *   sub_type is one objective ("<metric>-<sub_type>"). Without an evaluator the plan is
 *   quantd's default: fidelity against the float model (cosine_similarity,
 *   top1_agreement) on the held-out data config or seeded generated inputs, plus
 *   size_on_disk.
 * - One run of a model over one data source (a data config, or the generated inputs)
 *   feeds every accuracy and fidelity objective on that source: the float and the
 *   candidate model run batch by batch side by side; per output the pooled cosine, the
 *   worst batch's cosine, max / mean abs error, SNR and top-1 agreement accumulate, and
 *   the candidate's predictions are kept for the label metrics. The default source also
 *   yields metrics.json's "accuracy" section and, on held-out data, the activations with
 *   the lowest SNR (a hook on every node of both models, the first QD_EV_SNR_BATCHES
 *   batches).
 * - Latency and throughput time the candidate alone on the first batch of their source.
 * - An evaluation error that a model cannot help (an op the engine does not cover, a
 *   shape error on guessed input shapes) leaves the objectives it feeds absent (Olive:
 *   absent objectives are skipped) and the "accuracy" section "unavailable"; any other
 *   error (a limit, the user's own data not fitting) is returned and fails the job. */
#include "search/eval.h"
#include "search/eval_math.h"
#include "passes/passes.h"
#include "passes/data_config.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "onnx/onnx_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define QD_EV_SEED 0x5eed1234u
#define QD_EV_SYM_BATCH 1     /* symbolic first dimension (batch) */
#define QD_EV_SYM_DIM 32      /* any other symbolic dimension (sequence, H, W) */
/* largest tensor the evaluation engine may create: an uploaded model (shapes from its
 * inputs, Expand/ConstantOfShape/Tile...) cannot make the daemon allocate more than this */
#define QD_EV_MAX_TENSOR_BYTES ((size_t)4 << 30)
#define QD_EV_SNR_BATCHES 16      /* batches whose activations are compared (SNR) */
#define QD_EV_SNR_BYTES ((size_t)1 << 30)   /* float activations kept per batch at most */
#define QD_EV_SNR_CAP 200.0       /* dB reported for identical tensors */

/* ---- plan ---- */

enum ev_type { EV_ACCURACY, EV_FIDELITY, EV_LATENCY, EV_THROUGHPUT, EV_SIZE };

enum ev_stat {
	ST_ACC, ST_F1, ST_PREC, ST_REC,                 /* against the dataset's labels */
	ST_TOP1, ST_COS, ST_MAXE, ST_MEANE, ST_SNR,     /* against the float model */
	ST_AVG, ST_MAX, ST_MIN, ST_P50, ST_P75, ST_P90, ST_P95, ST_P99, ST_P999,   /* timing */
	ST_BYTES,
	ST_NONE,                                        /* Olive's, not computed by quantd */
};

enum ev_task { TASK_AUTO, TASK_BINARY, TASK_MULTICLASS };
enum ev_avg { AVG_DEFAULT, AVG_MICRO, AVG_MACRO, AVG_WEIGHTED, AVG_BINARY };

struct ev_metric {
	char *name;
	enum ev_type type;
	json_t *dc;            /* data config reference (name or inline object); NULL = default */
	int warmup, repeat;    /* latency / throughput */
	double sleep;
	bool timing_set;       /* a sub_type gave warmup_num / repeat_test_num / sleep_num */
};

struct ev_obj {            /* parallel to plan->obj */
	size_t metric;
	enum ev_stat stat;
	enum ev_task task;
	enum ev_avg avg;
	int num_classes;       /* 0: from the output's class axis */
	double threshold;      /* binary task, one score per sample */
	bool has_ignore;
	int64_t ignore_index;
	char *output;          /* fidelity: one output by name; NULL = the worst over all */
};

struct ev_priv {
	struct ev_metric *m;
	size_t n_m;
	struct ev_obj *o;
	char *heldout;         /* the workflow's held-out data config, or NULL */
	json_t *io;            /* input_model.io_config (new), or NULL */
	char *where;           /* the evaluator's JSON path, or NULL for the default plan */
	bool is_default;
};

static void obj_clear(struct qd_objective *o)
{
	free(o->key);
	free(o->metric);
	free(o->sub_type);
	free(o->type);
	free(o->goal_type);
}

void qd_eval_plan_free(struct qd_eval_plan *p)
{
	if (!p)
		return;
	struct ev_priv *v = p->priv;
	for (size_t i = 0; i < p->n_obj; i++) {
		obj_clear(&p->obj[i]);
		if (v && v->o)
			free(v->o[i].output);
	}
	free(p->obj);
	if (v) {
		for (size_t i = 0; i < v->n_m; i++) {
			free(v->m[i].name);
			json_decref(v->m[i].dc);
		}
		free(v->m);
		free(v->o);
		free(v->heldout);
		free(v->where);
		json_decref(v->io);
		free(v);
	}
	free(p);
}

static const char *const type_names[] = {
	[EV_ACCURACY] = "accuracy", [EV_FIDELITY] = "fidelity", [EV_LATENCY] = "latency",
	[EV_THROUGHPUT] = "throughput", [EV_SIZE] = "size_on_disk",
};

/* Sub-types quantd knows, by metric type (hf: the huggingface_metrics names). */
struct sub_def {
	const char *name;
	enum ev_type type;
	bool hf;
	enum ev_stat stat;        /* ST_NONE: Olive computes it, quantd does not */
	bool hib;                 /* higher is better by default */
};

static const struct sub_def sub_defs[] = {
	{ "accuracy_score", EV_ACCURACY, false, ST_ACC, true },
	{ "f1_score", EV_ACCURACY, false, ST_F1, true },
	{ "precision", EV_ACCURACY, false, ST_PREC, true },
	{ "recall", EV_ACCURACY, false, ST_REC, true },
	{ "top1_agreement", EV_ACCURACY, false, ST_TOP1, true },
	{ "auroc", EV_ACCURACY, false, ST_NONE, true },
	{ "perplexity", EV_ACCURACY, false, ST_NONE, false },
	{ "wer", EV_ACCURACY, false, ST_NONE, false },
	{ "rtfx", EV_ACCURACY, false, ST_NONE, true },
	{ "exact_match", EV_ACCURACY, false, ST_NONE, true },
	{ "relaxed_accuracy", EV_ACCURACY, false, ST_NONE, true },
	{ "word_sort_ratio", EV_ACCURACY, false, ST_NONE, true },
	{ "accuracy", EV_ACCURACY, true, ST_ACC, true },
	{ "f1", EV_ACCURACY, true, ST_F1, true },
	{ "precision", EV_ACCURACY, true, ST_PREC, true },
	{ "recall", EV_ACCURACY, true, ST_REC, true },
	{ "top1_agreement", EV_ACCURACY, true, ST_TOP1, true },
	{ "cosine_similarity", EV_FIDELITY, false, ST_COS, true },
	{ "top1_agreement", EV_FIDELITY, false, ST_TOP1, true },
	{ "max_abs_error", EV_FIDELITY, false, ST_MAXE, false },
	{ "mean_abs_error", EV_FIDELITY, false, ST_MEANE, false },
	{ "snr_db", EV_FIDELITY, false, ST_SNR, true },
#define TIMING(t, hib) \
	{ "avg", t, false, ST_AVG, hib }, { "max", t, false, ST_MAX, hib }, { "min", t, false, ST_MIN, hib }, \
	{ "p50", t, false, ST_P50, hib }, { "p75", t, false, ST_P75, hib }, { "p90", t, false, ST_P90, hib }, \
	{ "p95", t, false, ST_P95, hib }, { "p99", t, false, ST_P99, hib }, { "p999", t, false, ST_P999, hib }
	TIMING(EV_LATENCY, false),
	TIMING(EV_THROUGHPUT, true),
#undef TIMING
	{ "bytes", EV_SIZE, false, ST_BYTES, false },
};

static const struct sub_def *sub_find(enum ev_type t, bool hf, const char *name)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(sub_defs); i++)
		if (sub_defs[i].type == t && sub_defs[i].hf == hf && !strcmp(sub_defs[i].name, name))
			return &sub_defs[i];
	return NULL;
}

static void sub_list(char *buf, size_t n, enum ev_type t, bool hf)
{
	size_t k = 0;
	buf[0] = 0;
	for (size_t i = 0; i < QD_ARRAY_LEN(sub_defs); i++)
		if (sub_defs[i].type == t && sub_defs[i].hf == hf && sub_defs[i].stat != ST_NONE)
			k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%s%s", k ? ", " : "", sub_defs[i].name);
}

static bool stat_needs_labels(enum ev_stat s)
{
	return s == ST_ACC || s == ST_F1 || s == ST_PREC || s == ST_REC;
}

/* Append a metric; returns its index or -1 (out of memory). */
static long plan_add_metric(struct qd_eval_plan *p, const char *name, enum ev_type type, const json_t *dc)
{
	struct ev_priv *v = p->priv;
	struct ev_metric *nm = realloc(v->m, (v->n_m + 1) * sizeof *nm);
	if (!nm)
		return -1;
	v->m = nm;
	struct ev_metric *m = &v->m[v->n_m];
	memset(m, 0, sizeof *m);
	if (!(m->name = strdup(name)))
		return -1;
	m->type = type;
	m->dc = dc ? json_incref((json_t *)dc) : NULL;
	m->warmup = 10;       /* Olive's defaults */
	m->repeat = 20;
	return (long)v->n_m++;
}

/* Append an objective; returns its index or -1 (out of memory). */
static long plan_add_obj(struct qd_eval_plan *p, size_t metric, const char *sub, enum ev_stat st, bool hib,
			 int priority)
{
	struct ev_priv *v = p->priv;
	struct qd_objective *no = realloc(p->obj, (p->n_obj + 1) * sizeof *no);
	if (!no)
		return -1;
	p->obj = no;
	struct ev_obj *nv = realloc(v->o, (p->n_obj + 1) * sizeof *nv);
	if (!nv)
		return -1;
	v->o = nv;
	struct qd_objective *o = &p->obj[p->n_obj];
	memset(o, 0, sizeof *o);
	o->metric = strdup(v->m[metric].name);
	o->sub_type = strdup(sub);
	o->type = strdup(type_names[v->m[metric].type]);
	o->key = qd_asprintf("%s-%s", v->m[metric].name, sub);
	o->higher_is_better = hib;
	o->priority = priority;
	v->o[p->n_obj] = (struct ev_obj){ .metric = metric, .stat = st, .threshold = 0.5 };
	p->n_obj++;
	if (!o->metric || !o->sub_type || !o->type || !o->key)
		return -1;
	return (long)p->n_obj - 1;
}

/* The held-out data config: the first data config that no pass calibrates with (passes'
 * "data_config" names). NULL when there is none. Borrow. */
static const char *heldout_config(const json_t *workflow)
{
	const json_t *dcs = json_object_get(workflow, "data_configs");
	const json_t *passes = json_object_get(workflow, "passes");
	const char *names[256];
	size_t nn = 0;
	if (json_is_array(dcs)) {
		size_t i; json_t *c;
		json_array_foreach(dcs, i, c)
			if (nn < 256 && json_is_string(json_object_get(c, "name")))
				names[nn++] = json_string_value(json_object_get(c, "name"));
	} else if (json_is_object(dcs)) {
		const char *k; json_t *c;
		json_object_foreach((json_t *)dcs, k, c)
			if (nn < 256)
				names[nn++] = k;
	}
	for (size_t i = 0; i < nn; i++) {
		bool used = false;
		const char *pk; json_t *pv;
		json_object_foreach((json_t *)passes, pk, pv) {
			size_t na = json_is_array(pv) ? json_array_size(pv) : 1;
			for (size_t a = 0; a < na; a++) {
				const json_t *p = json_is_array(pv) ? json_array_get(pv, a) : pv;
				const json_t *dc = json_object_get(p, "data_config");
				if (!dc)
					dc = json_object_get(json_object_get(p, "config"), "data_config");
				used = used || (json_is_string(dc) && !strcmp(json_string_value(dc), names[i]));
			}
		}
		if (!used)
			return names[i];
	}
	return NULL;
}

/* quantd's plan when the workflow has no evaluator. */
static int plan_default(struct qd_eval_plan *p)
{
	long fid = plan_add_metric(p, "fidelity", EV_FIDELITY, NULL);
	long sz = fid < 0 ? -1 : plan_add_metric(p, "size_on_disk", EV_SIZE, NULL);
	if (sz < 0 || plan_add_obj(p, (size_t)fid, "cosine_similarity", ST_COS, true, 1) < 0 ||
	    plan_add_obj(p, (size_t)fid, "top1_agreement", ST_TOP1, true, 2) < 0 ||
	    plan_add_obj(p, (size_t)sz, "bytes", ST_BYTES, false, 3) < 0)
		return -QD_ENOMEM;
	((struct ev_priv *)p->priv)->is_default = true;
	return 0;
}

/* ---- parsing Olive's evaluators ---- */

/* JSON paths are built in fixed buffers; a path longer than a buffer is cut, harmlessly */
#pragma GCC diagnostic ignored "-Wformat-truncation"

struct pctx {
	const json_t *wf;
	json_t *problems, *ignored;
	unsigned flags;
	struct qd_err *err;
	int first_code;
	size_t n_problems;
	bool oom;
};

static void pproblem(struct pctx *c, int code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void pproblem(struct pctx *c, int code, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->n_problems++;
	if (!c->first_code) {
		c->first_code = code;
		if (c->err)
			qd_err_set(c->err, code, field, "%s", msg);
	}
	if (c->problems)
		json_array_append_new(c->problems, json_pack("{s:s, s:s, s:s}", "field", field, "message", msg,
							     "code", qd_err_name(code)));
}

static void pignore(struct pctx *c, const char *field, const char *why)
{
	if (c->ignored)
		json_array_append_new(c->ignored, json_pack("{s:s, s:s}", "field", field, "why", why));
}

/* A metric quantd cannot compute: a problem, or with unsupported_metrics = skip an
 * ignored entry (the caller drops the metric). Returns true when it is dropped. */
static bool punsupported(struct pctx *c, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool punsupported(struct pctx *c, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->flags & QD_EVAL_SKIP_UNSUPPORTED) {
		char why[640];
		snprintf(why, sizeof why, "skipped with its goals (unsupported_metrics = skip): %s", msg);
		pignore(c, field, why);
		return true;
	}
	pproblem(c, QD_EUNSUPPORTED, field, "%s (or set \"unsupported_metrics\": \"skip\" to drop it)", msg);
	return false;
}

#define WHAT_INSTEAD "use quantd's metrics instead: accuracy (accuracy_score, f1_score, precision, recall " \
	"against the dataset's \"labels\" array; top1_agreement against the float model), fidelity " \
	"(cosine_similarity, top1_agreement, max_abs_error, mean_abs_error, snr_db), latency, " \
	"throughput or size_on_disk"

/* The evaluator that applies (see eval.h) and its JSON path; NULL when there is none. */
static const json_t *find_evaluator(const json_t *wf, const char *pass_name, char *where, size_t n)
{
	const json_t *v = NULL;
	if (pass_name) {
		const json_t *p = json_object_get(json_object_get(wf, "passes"), pass_name);
		if (json_is_array(p))
			p = json_array_get(p, 0);
		v = json_object_get(p, "evaluator");
		snprintf(where, n, "passes.%s.evaluator", pass_name);
	}
	if (!v || json_is_null(v)) {
		v = json_object_get(wf, "evaluator");
		snprintf(where, n, "evaluator");
	}
	if (!v || json_is_null(v)) {
		v = json_object_get(json_object_get(wf, "engine"), "evaluator");
		snprintf(where, n, "engine.evaluator");
	}
	if (!v || json_is_null(v))
		return NULL;
	if (json_is_string(v)) {
		snprintf(where, n, "evaluators.%s", json_string_value(v));
		return json_object_get(json_object_get(wf, "evaluators"), json_string_value(v));
	}
	return v;
}

static bool is_int(const json_t *v)
{
	return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
}

/* metric_config of an accuracy sub_type (torchmetrics' constructor arguments, or the
 * huggingface_metrics {load_params, compute_params, result_key}). */
static void parse_acc_config(struct pctx *c, const json_t *mc, bool hf, struct ev_obj *o, const char *base)
{
	char f[400];
	const char *k;
	json_t *x;
	if (hf) {
		json_object_foreach((json_t *)mc, k, x) {
			snprintf(f, sizeof f, "%s.%s", base, k);
			if (!strcmp(k, "load_params") || !strcmp(k, "result_key")) {
				pignore(c, f, "quantd computes the metric itself (evaluate.load is not called)");
			} else if (!strcmp(k, "compute_params")) {
				if (!json_is_object(x)) {
					pproblem(c, QD_EINVAL, f, "'%s' must be an object", f);
					continue;
				}
				const char *ck;
				json_t *cx;
				json_object_foreach(x, ck, cx) {
					char f2[480];
					snprintf(f2, sizeof f2, "%s.%s", f, ck);
					const char *s = json_string_value(cx);
					if (!strcmp(ck, "average")) {
						if (s && !strcmp(s, "binary")) o->avg = AVG_BINARY;
						else if (s && !strcmp(s, "micro")) o->avg = AVG_MICRO;
						else if (s && !strcmp(s, "macro")) o->avg = AVG_MACRO;
						else if (s && !strcmp(s, "weighted")) o->avg = AVG_WEIGHTED;
						else
							pproblem(c, QD_EINVAL, f2, "'%s' must be \"binary\", \"micro\", "
								 "\"macro\" or \"weighted\"", f2);
					} else {
						pproblem(c, QD_EINVAL, f2, "unknown compute_params key '%s' (quantd "
							 "takes \"average\")", ck);
					}
				}
			} else {
				pproblem(c, QD_EINVAL, f, "unknown metric_config key '%s' for a huggingface_metrics "
					 "metric (load_params, compute_params, result_key)", k);
			}
		}
		if (o->avg == AVG_DEFAULT)
			o->avg = o->stat == ST_ACC ? AVG_MICRO : AVG_BINARY;   /* evaluate's defaults */
		if (o->avg == AVG_BINARY)
			o->task = TASK_BINARY;
		return;
	}
	json_object_foreach((json_t *)mc, k, x) {
		snprintf(f, sizeof f, "%s.%s", base, k);
		const char *s = json_string_value(x);
		if (!strcmp(k, "task")) {
			if (s && !strcmp(s, "binary")) o->task = TASK_BINARY;
			else if (s && !strcmp(s, "multiclass")) o->task = TASK_MULTICLASS;
			else if (s && !strcmp(s, "multilabel"))
				pproblem(c, QD_EUNSUPPORTED, f, "task \"multilabel\" is not supported (binary or "
					 "multiclass: one label per prediction)");
			else
				pproblem(c, QD_EINVAL, f, "'%s' must be \"binary\" or \"multiclass\"", f);
		} else if (!strcmp(k, "num_classes")) {
			if (!is_int(x) || json_number_value(x) < 2 || json_number_value(x) > 1e6)
				pproblem(c, QD_EINVAL, f, "'%s' must be an integer >= 2", f);
			else
				o->num_classes = (int)json_number_value(x);
		} else if (!strcmp(k, "average")) {
			if (s && !strcmp(s, "micro")) o->avg = AVG_MICRO;
			else if (s && !strcmp(s, "macro")) o->avg = AVG_MACRO;
			else if (s && !strcmp(s, "weighted")) o->avg = AVG_WEIGHTED;
			else
				pproblem(c, QD_EINVAL, f, "'%s' must be \"micro\", \"macro\" or \"weighted\" (one "
					 "number per metric)", f);
		} else if (!strcmp(k, "threshold")) {
			if (!json_is_number(x) || json_number_value(x) < 0 || json_number_value(x) > 1)
				pproblem(c, QD_EINVAL, f, "'%s' must be a number in [0, 1]", f);
			else
				o->threshold = json_number_value(x);
		} else if (!strcmp(k, "ignore_index")) {
			if (!is_int(x))
				pproblem(c, QD_EINVAL, f, "'%s' must be an integer (a label to leave out)", f);
			else {
				o->has_ignore = true;
				o->ignore_index = (int64_t)json_number_value(x);
			}
		} else if (!strcmp(k, "top_k")) {
			if (!is_int(x) || json_number_value(x) != 1)
				pproblem(c, QD_EUNSUPPORTED, f, "'%s': quantd computes top-1 metrics only (top_k 1)", f);
		} else if (!strcmp(k, "multidim_average")) {
			if (!s || strcmp(s, "global"))
				pproblem(c, QD_EUNSUPPORTED, f, "'%s': quantd computes \"global\" averages only", f);
		} else if (!strcmp(k, "validate_args")) {
			if (!json_is_boolean(x))
				pproblem(c, QD_EINVAL, f, "'%s' must be true or false", f);
			else
				pignore(c, f, "quantd always checks the labels (a label outside [0, num_classes) "
					"fails the evaluation)");
		} else {
			pproblem(c, QD_EINVAL, f, "unknown metric_config key '%s' for accuracy (task, num_classes, "
				 "average, threshold, ignore_index, top_k, multidim_average)", k);
		}
	}
	if (o->avg == AVG_DEFAULT)
		o->avg = o->stat == ST_ACC ? AVG_MICRO : AVG_MACRO;
	if (o->task == TASK_BINARY && o->stat != ST_ACC && o->avg == AVG_MACRO &&
	    !json_object_get(mc, "average"))
		o->avg = AVG_BINARY;   /* binary task: the positive class */
}

static void parse_timing_config(struct pctx *c, const json_t *mc, struct ev_metric *m, const char *base,
				bool *seen)
{
	char f[400];
	const char *k;
	json_t *x;
	int w = 10, r = 20;
	double s = 0;
	json_object_foreach((json_t *)mc, k, x) {
		snprintf(f, sizeof f, "%s.%s", base, k);
		if (!strcmp(k, "warmup_num")) {
			if (!is_int(x) || json_number_value(x) < 0 || json_number_value(x) > 100000)
				pproblem(c, QD_EINVAL, f, "'%s' must be an integer >= 0", f);
			else
				w = (int)json_number_value(x);
		} else if (!strcmp(k, "repeat_test_num")) {
			if (!is_int(x) || json_number_value(x) < 1 || json_number_value(x) > 100000)
				pproblem(c, QD_EINVAL, f, "'%s' must be an integer >= 1", f);
			else
				r = (int)json_number_value(x);
		} else if (!strcmp(k, "sleep_num")) {
			if (!json_is_number(x) || json_number_value(x) < 0 || json_number_value(x) > 60)
				pproblem(c, QD_EINVAL, f, "'%s' must be a number of seconds in [0, 60]", f);
			else
				s = json_number_value(x);
		} else {
			pproblem(c, QD_EINVAL, f, "unknown metric_config key '%s' for %s (warmup_num, "
				 "repeat_test_num, sleep_num)", k, type_names[m->type]);
		}
	}
	if (!json_object_size(mc))
		return;
	if (*seen && (w != m->warmup || r != m->repeat || s != m->sleep)) {
		pproblem(c, QD_EINVAL, base, "the sub_types of metric '%s' give different warmup_num / "
			 "repeat_test_num / sleep_num: one measurement serves all of them, give them once", m->name);
		return;
	}
	*seen = true;
	m->warmup = w;
	m->repeat = r;
	m->sleep = s;
	m->timing_set = true;
}

static void parse_goal(struct pctx *c, const json_t *g, struct qd_objective *o, const char *base)
{
	static const char *const types[] = {
		"threshold", "max-degradation", "min-improvement", "percent-max-degradation",
		"percent-min-improvement",
	};
	char f[400];
	if (json_is_null(g))
		return;
	if (!json_is_object(g)) {
		pproblem(c, QD_EINVAL, base, "'%s' must be an object ({\"type\", \"value\"})", base);
		return;
	}
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)g, k, x)
		if (strcmp(k, "type") && strcmp(k, "value")) {
			snprintf(f, sizeof f, "%s.%s", base, k);
			pproblem(c, QD_EINVAL, f, "unknown goal key '%s' (type, value)", k);
		}
	const char *t = json_string_value(json_object_get(g, "type"));
	const json_t *v = json_object_get(g, "value");
	snprintf(f, sizeof f, "%s.type", base);
	bool known = false;
	for (size_t i = 0; t && i < QD_ARRAY_LEN(types); i++)
		known = known || !strcmp(types[i], t);
	if (!known) {
		pproblem(c, QD_EINVAL, f, "'%s' must be one of threshold, max-degradation, min-improvement, "
			 "percent-max-degradation, percent-min-improvement", f);
		return;
	}
	snprintf(f, sizeof f, "%s.value", base);
	if (!json_is_number(v) || !isfinite(json_number_value(v))) {
		pproblem(c, QD_EINVAL, f, "'%s' must be a number", f);
		return;
	}
	double val = json_number_value(v);
	bool hib = o->higher_is_better;
	if (strcmp(t, "threshold") && val < 0) {
		pproblem(c, QD_EINVAL, f, "'%s' must be >= 0 for a %s goal", f, t);
		return;
	}
	/* Olive's ranges: a percentage that would cross zero is refused */
	if (!strcmp(t, "percent-max-degradation") && hib && !(val > 0 && val < 100)) {
		pproblem(c, QD_EINVAL, f, "'%s' must be in (0, 100) for percent-max-degradation of a metric where "
			 "higher is better", f);
		return;
	}
	if (!strcmp(t, "percent-min-improvement") && !hib && !(val > 0 && val < 100)) {
		pproblem(c, QD_EINVAL, f, "'%s' must be in (0, 100) for percent-min-improvement of a metric where "
			 "lower is better", f);
		return;
	}
	if (!strncmp(t, "percent-", 8) && val <= 0) {
		pproblem(c, QD_EINVAL, f, "'%s' must be > 0 for a %s goal", f, t);
		return;
	}
	o->goal_type = strdup(t);
	o->goal_value = val;
	if (!o->goal_type)
		c->oom = true;
}

/* One sub_type of metric mi (a sub_type quantd does not compute is a problem, or with
 * unsupported_metrics = skip dropped with its goal). */
static void parse_sub(struct pctx *c, struct qd_eval_plan *p, size_t mi, bool hf, const json_t *s,
		      const char *base, bool *timing_seen, int *priorities, size_t *n_prio)
{
	struct ev_priv *v = p->priv;
	struct ev_metric *m = &v->m[mi];
	char f[400];
	if (!json_is_object(s)) {
		pproblem(c, QD_EINVAL, base, "'%s' must be an object ({\"name\", \"priority\", \"goal\", ...})", base);
		return;
	}
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)s, k, x)
		if (strcmp(k, "name") && strcmp(k, "metric_config") && strcmp(k, "priority") &&
		    strcmp(k, "higher_is_better") && strcmp(k, "goal")) {
			snprintf(f, sizeof f, "%s.%s", base, k);
			pproblem(c, QD_EINVAL, f, "unknown sub_type key '%s' (name, metric_config, priority, "
				 "higher_is_better, goal)", k);
		}
	const char *name = json_string_value(json_object_get(s, "name"));
	snprintf(f, sizeof f, "%s.name", base);
	if (!name) {
		pproblem(c, QD_EINVAL, f, "a sub_type needs a \"name\"");
		return;
	}
	const struct sub_def *d = sub_find(m->type, hf, name);
	if (!d) {
		char have[400];
		sub_list(have, sizeof have, m->type, hf);
		pproblem(c, QD_EINVAL, f, "unknown %s%s sub_type '%s'%s (quantd computes: %s)",
			 hf ? "huggingface_metrics " : "", type_names[m->type], name,
			 json_object_get(s, "goal") ? ": its goal is on an unknown metric" : "", have);
		return;
	}
	if (d->stat == ST_NONE) {
		punsupported(c, f, "%s sub_type '%s' is not computed by quantd: %s", type_names[m->type], name,
			     WHAT_INSTEAD);
		return;
	}
	const json_t *hibv = json_object_get(s, "higher_is_better");
	snprintf(f, sizeof f, "%s.higher_is_better", base);
	bool hib = d->hib;
	if (hibv && !json_is_boolean(hibv))
		pproblem(c, QD_EINVAL, f, "'%s' must be true or false", f);
	else if (hibv)
		hib = json_is_true(hibv);
	const json_t *pv = json_object_get(s, "priority");
	int prio = 0;
	snprintf(f, sizeof f, "%s.priority", base);
	if (pv && (!is_int(pv) || json_number_value(pv) < -1 || json_number_value(pv) > 1000)) {
		pproblem(c, QD_EINVAL, f, "'%s' must be an integer: 1..K ranks the objective, -1 reports it only", f);
	} else if (pv && json_number_value(pv) != -1) {
		prio = (int)json_number_value(pv);
		if (prio == 0)
			pproblem(c, QD_EINVAL, f, "'%s' is 0: priorities are 1..K (1 ranks first), -1 reports the "
				 "sub_type only", f);
	}
	long oi = plan_add_obj(p, mi, name, d->stat, hib, prio);
	if (oi < 0) {
		c->oom = true;
		return;
	}
	struct ev_obj *o = &v->o[oi];
	struct qd_objective *po = &p->obj[oi];
	priorities[*n_prio] = prio;
	(*n_prio)++;
	const json_t *mc = json_object_get(s, "metric_config");
	snprintf(f, sizeof f, "%s.metric_config", base);
	if (mc && !json_is_object(mc) && !json_is_null(mc)) {
		pproblem(c, QD_EINVAL, f, "'%s' must be an object", f);
	} else if (json_is_object(mc)) {
		switch (m->type) {
		case EV_ACCURACY:
			if (d->stat == ST_TOP1) {
				if (json_object_size(mc))
					pproblem(c, QD_EINVAL, f, "top1_agreement takes no metric_config (argmax over the "
						 "last axis of the first output, against the float model)");
			} else {
				parse_acc_config(c, mc, hf, o, f);
			}
			break;
		case EV_FIDELITY: {
			const char *ck;
			json_t *cx;
			json_object_foreach((json_t *)mc, ck, cx) {
				char f2[480];
				snprintf(f2, sizeof f2, "%s.%s", f, ck);
				if (strcmp(ck, "output"))
					pproblem(c, QD_EINVAL, f2, "unknown metric_config key '%s' for fidelity "
						 "(\"output\": one model output by name)", ck);
				else if (!json_is_string(cx))
					pproblem(c, QD_EINVAL, f2, "'%s' must be a model output name", f2);
				else if (!(o->output = strdup(json_string_value(cx))))
					c->oom = true;
			}
			break;
		}
		case EV_LATENCY:
		case EV_THROUGHPUT:
			parse_timing_config(c, mc, m, f, timing_seen);
			break;
		case EV_SIZE:
			if (json_object_size(mc))
				pproblem(c, QD_EINVAL, f, "size_on_disk takes no metric_config");
			break;
		}
	}
	if (m->type == EV_ACCURACY && stat_needs_labels(d->stat) && !json_is_object(mc))
		parse_acc_config(c, NULL, hf, o, f);
	snprintf(f, sizeof f, "%s.goal", base);
	if (json_object_get(s, "goal"))
		parse_goal(c, json_object_get(s, "goal"), po, f);
}

static const char *const user_code_keys[] = {
	"user_script", "script_dir", "evaluate_func", "evaluate_func_kwargs", "metric_func",
	"metric_func_kwargs", "post_processing_func", "dataloader_func", "func_kwargs",
};

/* One metric of the evaluator at base ("evaluators.e.metrics[0]"). */
static void parse_metric(struct pctx *c, struct qd_eval_plan *p, const json_t *mj, const char *base,
			 int *priorities, size_t *n_prio)
{
	struct ev_priv *v = p->priv;
	char f[400];
	if (!json_is_object(mj)) {
		pproblem(c, QD_EINVAL, base, "'%s' must be a metric object ({\"name\", \"type\", \"sub_types\"})", base);
		return;
	}
	const char *name = json_string_value(json_object_get(mj, "name"));
	const char *type = json_string_value(json_object_get(mj, "type"));
	snprintf(f, sizeof f, "%s.name", base);
	if (!name || !*name) {
		pproblem(c, QD_EINVAL, f, "a metric needs a \"name\"");
		return;
	}
	for (size_t i = 0; i < v->n_m; i++)
		if (!strcmp(v->m[i].name, name)) {
			pproblem(c, QD_EINVAL, f, "metric name '%s' is used twice: metric names must be unique", name);
			return;
		}
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)mj, k, x) {
		snprintf(f, sizeof f, "%s.%s", base, k);
		if (!strcmp(k, "sample_log_num") || !strcmp(k, "sample_log_dir"))
			pignore(c, f, "quantd logs no samples: metrics.json has the figures");
		else if (strcmp(k, "name") && strcmp(k, "type") && strcmp(k, "backend") && strcmp(k, "sub_types") &&
			 strcmp(k, "user_config") && strcmp(k, "data_config"))
			pproblem(c, QD_EINVAL, f, "unknown metric key '%s' (name, type, backend, sub_types, user_config, "
				 "data_config)", k);
	}
	snprintf(f, sizeof f, "%s.type", base);
	enum ev_type t = EV_ACCURACY;
	if (!type) {
		pproblem(c, QD_EINVAL, f, "metric '%s' needs a \"type\" (accuracy, fidelity, latency, throughput, "
			 "size_on_disk)", name);
		return;
	}
	if (!strcmp(type, "custom")) {
		punsupported(c, f, "metric '%s' is of type 'custom': it runs user code (user_script, evaluate_func / "
			     "metric_func), which quantd does not; %s", name, WHAT_INSTEAD);
		return;
	}
	bool found = false;
	for (size_t i = 0; i < QD_ARRAY_LEN(type_names); i++)
		if (!strcmp(type_names[i], type)) {
			t = (enum ev_type)i;
			found = true;
		}
	if (!found) {
		pproblem(c, QD_EINVAL, f, "unknown metric type '%s' (accuracy, fidelity, latency, throughput, "
			 "size_on_disk)", type);
		return;
	}
	const json_t *be = json_object_get(mj, "backend");
	bool hf = false;
	snprintf(f, sizeof f, "%s.backend", base);
	if (be && !json_is_null(be)) {
		const char *b = json_string_value(be);
		if (!b) {
			pproblem(c, QD_EINVAL, f, "'%s' must be a string", f);
			return;
		}
		if (!strcmp(b, "huggingface_metrics") && t == EV_ACCURACY) {
			hf = true;
		} else if (strcmp(b, "torch_metrics")) {
			punsupported(c, f, "metric '%s': backend '%s' is not supported (quantd computes accuracy with "
				     "backend torch_metrics, the default, or huggingface_metrics)", name, b);
			return;
		}
	}
	const json_t *uc = json_object_get(mj, "user_config");
	snprintf(f, sizeof f, "%s.user_config", base);
	if (uc && !json_is_object(uc) && !json_is_null(uc)) {
		pproblem(c, QD_EINVAL, f, "'%s' must be an object", f);
		return;
	}
	json_object_foreach((json_t *)uc, k, x) {
		char f2[480];
		snprintf(f2, sizeof f2, "%s.%s", f, k);
		bool code = false;
		for (size_t i = 0; i < QD_ARRAY_LEN(user_code_keys); i++)
			code = code || !strcmp(user_code_keys[i], k);
		if (json_is_null(x))
			continue;
		if (code) {
			if (punsupported(c, f2, "metric '%s': user_config.%s needs user code, which quantd does not "
					 "run; bind the prepared arrays (inputs and \"labels\") as a dataset and %s", name,
					 k, WHAT_INSTEAD))
				return;
		} else if (!strcmp(k, "inference_settings") || !strcmp(k, "io_bind") || !strcmp(k, "shared_kv_buffer") ||
			   !strcmp(k, "run_kwargs")) {
			pignore(c, f2, "quantd's executor has no session options, I/O binding or run options to set");
		} else if (!strcmp(k, "batch_size") || !strcmp(k, "data_dir") || !strcmp(k, "input_names") ||
			   !strcmp(k, "input_shapes") || !strcmp(k, "input_types")) {
			pproblem(c, QD_EINVAL, f2, "user_config.%s (Olive's older layout) is not read: give the metric a "
				 "\"data_config\" (its batch_size, a bound dataset)", k);
		} else {
			pproblem(c, QD_EINVAL, f2, "unknown user_config key '%s'", k);
		}
	}
	const json_t *dc = json_object_get(mj, "data_config");
	snprintf(f, sizeof f, "%s.data_config", base);
	if (json_is_null(dc))
		dc = NULL;
	if (dc) {
		struct qd_err e = { 0 };
		json_t *cfg = NULL;
		if (json_is_string(dc) && !qd_data_config_find(c->wf, json_string_value(dc)))
			pproblem(c, QD_EINVAL, f, "metric '%s' names data config '%s', which is not in \"data_configs\"",
				 name, json_string_value(dc));
		else if (qd_data_config_resolve(c->wf, dc, f, &cfg, &e) < 0)
			pproblem(c, e.code ? e.code : QD_EINVAL, e.field[0] ? e.field : f, "%s", e.msg);
		json_decref(cfg);
	}
	const json_t *subs = json_object_get(mj, "sub_types");
	snprintf(f, sizeof f, "%s.sub_types", base);
	if (!json_is_array(subs) || !json_array_size(subs)) {
		pproblem(c, QD_EINVAL, f, "metric '%s' needs \"sub_types\": a non-empty list", name);
		return;
	}
	long mi = plan_add_metric(p, name, t, dc);
	if (mi < 0) {
		c->oom = true;
		return;
	}
	size_t obj0 = p->n_obj;
	bool timing_seen = false;
	size_t i;
	json_array_foreach(subs, i, x) {
		char f2[480];
		snprintf(f2, sizeof f2, "%s[%zu]", f, i);
		/* a sub_type quantd does not compute is dropped alone (skip) */
		parse_sub(c, p, (size_t)mi, hf, x, f2, &timing_seen, priorities, n_prio);
	}
	bool labels = false;
	for (size_t j = obj0; j < p->n_obj; j++)
		labels = labels || stat_needs_labels(v->o[j].stat);
	if (labels && !dc && !v->heldout) {
		snprintf(f, sizeof f, "%s.data_config", base);
		pproblem(c, QD_EINVAL, f, "metric '%s' needs labels: give it a \"data_config\" whose dataset has a "
			 "\"labels\" array (one label per sample)", name);
	}
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

static void parse_evaluator(struct pctx *c, struct qd_eval_plan *p, const json_t *ev, const char *where)
{
	char f[400];
	if (!json_is_object(ev)) {
		pproblem(c, QD_EINVAL, where, "'%s' must be an evaluator object ({\"metrics\": [...]})", where);
		return;
	}
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)ev, k, x) {
		snprintf(f, sizeof f, "%s.%s", where, k);
		if (!strcmp(k, "metrics"))
			continue;
		if (!strcmp(k, "name"))
			pignore(c, f, "informational");
		else if (!strcmp(k, "type") || !strcmp(k, "type_args"))
			pignore(c, f, "quantd evaluates every model with its built-in executor");
		else if ((!strcmp(k, "user_script") || !strcmp(k, "script_dir")) && !json_is_null(x))
			punsupported(c, f, "'%s' needs user code, which quantd does not run: %s", f, WHAT_INSTEAD);
		else if (strcmp(k, "user_script") && strcmp(k, "script_dir"))
			pproblem(c, QD_EINVAL, f, "unknown evaluator key '%s' (metrics, name, type)", k);
	}
	const json_t *ms = json_object_get(ev, "metrics");
	snprintf(f, sizeof f, "%s.metrics", where);
	if (!json_is_array(ms) || !json_array_size(ms)) {
		pproblem(c, QD_EINVAL, f, "'%s' must be a non-empty list of metrics", f);
		return;
	}
	size_t cap = 0, i;
	json_t *mj;
	json_array_foreach(ms, i, mj)
		cap += json_array_size(json_object_get(mj, "sub_types"));
	int *prio = calloc(cap + 1, sizeof *prio);
	size_t n_prio = 0;
	if (!prio) {
		c->oom = true;
		return;
	}
	size_t before = c->n_problems;
	json_array_foreach(ms, i, mj) {
		char f2[420];
		snprintf(f2, sizeof f2, "%s[%zu]", f, i);
		parse_metric(c, p, mj, f2, prio, &n_prio);
	}
	if (c->n_problems > before) {
		/* a metric that did not parse leaves its sub_types out: the priorities
		 * cannot be judged */
		free(prio);
		return;
	}
	/* Olive's priority rule: none given and one sub_type -> it ranks 1; else the ranked
	 * sub_types' priorities are exactly 1..K */
	size_t k_ranked = 0;
	for (size_t j = 0; j < n_prio; j++)
		k_ranked += prio[j] > 0;
	if (k_ranked == 0 && p->n_obj == 1) {
		p->obj[0].priority = 1;
	} else if (k_ranked == 0 && p->n_obj > 1) {
		pproblem(c, QD_EINVAL, f, "%zu sub_types and no priorities: give the ones to rank by the priorities "
			 "1..K (1 first) and the others -1 (reported only)", p->n_obj);
	} else {
		int *s = calloc(k_ranked + 1, sizeof *s);
		size_t n = 0;
		for (size_t j = 0; s && j < p->n_obj; j++)
			if (p->obj[j].priority > 0)
				s[n++] = p->obj[j].priority;
		if (s) {
			qsort(s, n, sizeof *s, cmp_int);
			for (size_t j = 0; j < n; j++)
				if (s[j] != (int)j + 1) {
					char keys[256] = "";
					size_t kl = 0;
					for (size_t q = 0; q < p->n_obj; q++)
						if (p->obj[q].priority > 0)
							kl += (size_t)snprintf(keys + kl, kl < sizeof keys ? sizeof keys - kl : 0,
									       "%s%s=%d", kl ? ", " : "", p->obj[q].key,
									       p->obj[q].priority);
					pproblem(c, QD_EINVAL, f, "the priorities of the ranked sub_types must be 1..%zu, "
						 "each once (-1 = reported only); got %s", n, keys);
					break;
				}
		} else {
			c->oom = true;
		}
		free(s);
	}
	free(prio);
}

/* Named evaluators that no "evaluator" names: reported as ignored. */
static void report_unused(struct pctx *c)
{
	const json_t *evs = json_object_get(c->wf, "evaluators");
	const char *n;
	json_t *e;
	json_object_foreach((json_t *)evs, n, e) {
		bool used = false;
		const json_t *refs[2] = { json_object_get(c->wf, "evaluator"),
					  json_object_get(json_object_get(c->wf, "engine"), "evaluator") };
		for (int i = 0; i < 2; i++)
			used = used || (json_is_string(refs[i]) && !strcmp(json_string_value(refs[i]), n));
		const char *pk;
		json_t *pv;
		json_object_foreach(json_object_get(c->wf, "passes"), pk, pv) {
			size_t na = json_is_array(pv) ? json_array_size(pv) : 1;
			for (size_t a = 0; a < na; a++) {
				const json_t *pe = json_object_get(json_is_array(pv) ? json_array_get(pv, a) : pv, "evaluator");
				used = used || (json_is_string(pe) && !strcmp(json_string_value(pe), n));
			}
		}
		if (!used) {
			char f[200];
			snprintf(f, sizeof f, "evaluators.%s", n);
			pignore(c, f, "no \"evaluator\" (top level, engine or pass) names this evaluator");
		}
	}
}

int qd_eval_plan_parse(const json_t *workflow, const char *pass_name, unsigned flags,
		       struct qd_eval_plan **out, json_t *problems, json_t *ignored, struct qd_err *err)
{
	*out = NULL;
	struct qd_eval_plan *p = calloc(1, sizeof *p);
	struct ev_priv *v = calloc(1, sizeof *v);
	struct pctx c = { .wf = workflow, .problems = problems, .ignored = ignored, .flags = flags, .err = err };
	int rc = 0;
	if (!p || !v) {
		free(p);
		free(v);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	p->priv = v;
	const char *held = heldout_config(workflow);
	if (held && !(v->heldout = strdup(held)))
		c.oom = true;
	const json_t *io = json_object_get(json_object_get(workflow, "input_model"), "io_config");
	if (json_is_object(io))
		v->io = json_deep_copy(io);
	char where[300];
	const json_t *ev = find_evaluator(workflow, pass_name, where, sizeof where);
	if (!pass_name)
		report_unused(&c);
	if (ev) {
		if (!(v->where = strdup(where)))
			c.oom = true;
		parse_evaluator(&c, p, ev, where);
		if (!c.first_code && !c.oom && p->n_obj == 0) {
			/* every metric was skipped (unsupported_metrics = skip) */
			pignore(&c, where, "every metric of the evaluator was skipped: quantd's default fidelity "
				"metrics are reported instead");
			free(v->where);
			v->where = NULL;
			if (plan_default(p) < 0)
				c.oom = true;
		}
	} else if (plan_default(p) < 0) {
		c.oom = true;
	}
	if (c.oom)
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	else if (c.first_code)
		rc = -c.first_code;
	if (rc == 0) {
		*out = p;
		p = NULL;
	}
	qd_eval_plan_free(p);
	return rc;
}

json_t *qd_eval_plan_label_configs(const struct qd_eval_plan *p)
{
	struct ev_priv *v = p->priv;
	json_t *out = json_array();
	for (size_t i = 0; out && i < p->n_obj; i++) {
		const struct ev_metric *m = &v->m[v->o[i].metric];
		const char *cfg = m->dc ? json_string_value(m->dc) : v->heldout;
		if (stat_needs_labels(v->o[i].stat) && cfg)
			json_array_append_new(out, json_pack("{s:s, s:s}", "config", cfg, "objective", p->obj[i].key));
	}
	return out;
}

/* ---- logging ---- */

static void ev_log(const struct qd_eval_ctx *c, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ev_log(const struct qd_eval_ctx *c, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, c->req->job_id, "%s", line);
	if (c->hooks && c->hooks->log)
		c->hooks->log(c->hooks->ud, lvl, line);
}

static const volatile int *ev_cancel(const struct qd_eval_ctx *c)
{
	return c->hooks ? c->hooks->cancel : NULL;
}

/* Engine options for the evaluation runs: the request's limits. */
static struct qd_engine_opts ev_engine_opts(const struct qd_workflow_req *req)
{
	struct qd_engine_opts eo = { .threads = req->threads > 0 ? req->threads : 1,
				     .max_tensor_bytes = req->max_tensor_bytes ? req->max_tensor_bytes
									: QD_EV_MAX_TENSOR_BYTES,
				     .max_memory_bytes = req->max_memory_bytes,
				     .max_seconds = req->max_seconds };
	return eo;
}

/* ---- seeded inputs ---- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
	return *s;
}

/* Largest valid index for an integer input that feeds a Gather's indices directly. */
static int64_t index_bound(const struct qd_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;
	int64_t bound = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "Gather") || n->n_input < 2 || strcmp(n->input[1], name))
			continue;
		int64_t axis = qd_node_attr_int(n, "axis", 0);
		for (size_t k = 0; k < g->n_initializer; k++) {
			Onnx__TensorProto *t = g->initializer[k];
			if (strcmp(t->name, n->input[0]))
				continue;
			if (axis < 0)
				axis += (int64_t)t->n_dims;
			if (axis >= 0 && axis < (int64_t)t->n_dims && (bound == 0 || t->dims[axis] < bound))
				bound = t->dims[axis];
		}
	}
	return bound > 0 ? bound : 10;
}

/* Olive's input_model.io_config: {"input_names": [...], "input_shapes": [[...], ...]}. */
static const json_t *io_shape(const json_t *io, const char *name)
{
	const json_t *names = json_object_get(io, "input_names"), *shapes = json_object_get(io, "input_shapes");
	size_t i; json_t *n;
	json_array_foreach(names, i, n)
		if (json_is_string(n) && !strcmp(json_string_value(n), name)) {
			const json_t *s = json_array_get(shapes, i);
			return json_is_array(s) ? s : NULL;
		}
	return NULL;
}

/* Seeded inputs for every model input: float uniform in [-1, 1), integers in
 * [0, bound), bools random; symbolic dims → QD_EV_SYM_BATCH (first) / QD_EV_SYM_DIM,
 * unless io_config gives the shape. desc gets name → shape. */
static int make_inputs(const struct qd_model *m, struct qd_engine *e, const json_t *io, struct qd_tensor **out,
		       size_t *n_out, json_t *desc, struct qd_err *err)
{
	size_t n = qd_engine_n_inputs(e);
	struct qd_tensor *t = calloc(n + 1, sizeof *t);
	uint64_t s = QD_EV_SEED;
	if (!t)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const Onnx__ValueInfoProto *vi = qd_engine_input(e, i);
		const Onnx__TypeProto__Tensor *tt = vi->type ? vi->type->tensor_type : NULL;
		if (!tt || !tt->has_elem_type) {
			qd_tensors_release(t, i);
			return qd_err_set(err, QD_EUNSUPPORTED, vi->name, "input '%s' is not a typed tensor", vi->name);
		}
		int64_t dims[QD_MAX_DIMS];
		int nd = tt->shape ? (int)tt->shape->n_dim : 0;
		const json_t *given = io_shape(io, vi->name);
		if (given && (int)json_array_size(given) != nd) {
			qd_tensors_release(t, i);
			return qd_err_set(err, QD_EINVAL, "input_model.io_config.input_shapes", "input_shapes for "
					  "'%s' has %zu dims, the model input has %d", vi->name, json_array_size(given), nd);
		}
		if (nd > QD_MAX_DIMS) {
			qd_tensors_release(t, i);
			return qd_err_set(err, QD_EUNSUPPORTED, vi->name, "input '%s' has too many dims", vi->name);
		}
		json_t *shape = json_array();
		for (int k = 0; k < nd; k++) {
			const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[k];
			bool fixed = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
				     dm->dim_value > 0;
			dims[k] = fixed ? dm->dim_value : k == 0 ? QD_EV_SYM_BATCH : QD_EV_SYM_DIM;
			if (given) {
				json_int_t gv = json_integer_value(json_array_get(given, k));
				if (gv <= 0 || (fixed && gv != dm->dim_value)) {
					json_decref(shape);
					qd_tensors_release(t, i);
					return qd_err_set(err, QD_EINVAL, "input_model.io_config.input_shapes",
							  "input_shapes for '%s' does not fit the model's shape at dim %d",
							  vi->name, k);
				}
				dims[k] = gv;
			}
			json_array_append_new(shape, json_integer(dims[k]));
		}
		if (desc)
			json_object_set_new(desc, vi->name, shape);
		else
			json_decref(shape);
		int rc = qd_tensor_alloc(&t[i], vi->name, tt->elem_type, nd, dims);
		if (rc < 0) {
			qd_tensors_release(t, i + 1);
			return qd_err_set(err, -rc, vi->name, "cannot allocate input '%s' (%s)", vi->name,
					  qd_dtype_name(tt->elem_type));
		}
		int64_t cnt = qd_tensor_count(&t[i]);
		int64_t bound = 10;
		if (tt->elem_type == QD_DT_INT64 || tt->elem_type == QD_DT_INT32)
			bound = index_bound(m, vi->name);
		for (int64_t k = 0; k < cnt; k++) {
			uint64_t r = rng_next(&s);
			switch (tt->elem_type) {
			case QD_DT_FLOAT: ((float *)t[i].data)[k] = (float)((r >> 11) * (2.0 / 9007199254740992.0) - 1.0); break;
			case QD_DT_INT64: ((int64_t *)t[i].data)[k] = (int64_t)(r % (uint64_t)bound); break;
			case QD_DT_INT32: ((int32_t *)t[i].data)[k] = (int32_t)(r % (uint64_t)bound); break;
			case QD_DT_BOOL: ((uint8_t *)t[i].data)[k] = (uint8_t)(r & 1); break;
			default:
				qd_tensors_release(t, i + 1);
				return qd_err_set(err, QD_EUNSUPPORTED, vi->name, "input '%s' has type %s: no "
						  "random data generator", vi->name, qd_dtype_name(tt->elem_type));
			}
		}
	}
	*out = t;
	*n_out = n;
	return 0;
}

/* ---- SNR of every activation (held-out data) ---- */

struct snr_cap {                  /* float run: copies of every float tensor of one batch */
	struct qd_strmap map;         /* name → struct qd_tensor * (owned) */
	size_t bytes;
	bool on;
};

struct snr_acc {
	char *name, *node;
	double sig, noise;
	int64_t n;
	bool dq;          /* measured on the value's DequantizeLinear output (QDQ) */
};

struct snr_state {
	struct snr_cap cap;
	struct qd_strmap accs;        /* name → struct snr_acc * */
	struct snr_acc **list; size_t n_list, cap_list;
	bool on;
};

static void snr_float_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct snr_state *st = ud;
	if (!st->cap.on || t->dtype != QD_DT_FLOAT || !t->name || st->cap.bytes + t->nbytes > QD_EV_SNR_BYTES ||
	    qd_strmap_get(&st->cap.map, t->name))
		return;
	struct qd_tensor *c = calloc(1, sizeof *c);
	if (!c || qd_tensor_alloc(c, t->name, t->dtype, t->ndim, t->dims) < 0) {
		free(c);
		return;
	}
	memcpy(c->data, t->data, t->nbytes);
	if (qd_strmap_put(&st->cap.map, c->name, c)) {
		qd_tensor_release(c);
		free(c);
		return;
	}
	st->cap.bytes += t->nbytes;
	(void)node;
}

static void snr_quant_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct snr_state *st = ud;
	if (!st->on || t->dtype != QD_DT_FLOAT || !t->name)
		return;
	/* QDQ: T_DequantizeLinear_Output is what consumers of T see; compare that with the
	 * float T (the raw T of a quantized model can be a producer's output before the Q
	 * that replaces a removed Relu clamps it) */
	static const char dq_sfx[] = "_DequantizeLinear_Output";
	size_t ln = strlen(t->name), ls = sizeof dq_sfx - 1;
	bool is_dq = ln > ls && !strcmp(t->name + ln - ls, dq_sfx);
	char base[512];
	const char *key = t->name;
	if (is_dq) {
		if (ln - ls >= sizeof base)
			return;
		memcpy(base, t->name, ln - ls);
		base[ln - ls] = 0;
		key = base;
	}
	void **v = qd_strmap_get(&st->cap.map, key);
	if (!v || qd_tensor_count(*v) != qd_tensor_count(t))
		return;
	const struct qd_tensor *f = *v;
	void **av = qd_strmap_get(&st->accs, key);
	struct snr_acc *a = av ? *av : NULL;
	if (!a) {
		if (st->n_list == st->cap_list) {
			size_t nc = st->cap_list ? st->cap_list * 2 : 256;
			struct snr_acc **nl = realloc(st->list, nc * sizeof *nl);
			if (!nl)
				return;
			st->list = nl;
			st->cap_list = nc;
		}
		if (!(a = calloc(1, sizeof *a)) || !(a->name = strdup(key)) ||
		    !(a->node = strdup(node && node->name ? node->name : "")) || qd_strmap_put(&st->accs, a->name, a)) {
			if (a) { free(a->name); free(a->node); }
			free(a);
			return;
		}
		st->list[st->n_list++] = a;
	}
	if (a->dq && !is_dq)
		return;
	if (is_dq && !a->dq) {
		a->dq = true;          /* from now on only the dequantized value counts */
		a->sig = a->noise = 0;
		a->n = 0;
	}
	const float *x = f->data, *y = t->data;
	int64_t n = qd_tensor_count(t);
	double sg = 0, ns = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)x[i] - (double)y[i];
		sg += (double)x[i] * x[i];
		ns += d * d;
	}
	a->sig += sg;
	a->noise += ns;
	a->n += n;
}

static void snr_cap_clear(struct snr_cap *c)
{
	for (size_t i = 0; i < c->map.cap; i++)
		if (c->map.keys && c->map.keys[i]) {
			qd_tensor_release(c->map.vals[i]);
			free(c->map.vals[i]);
		}
	qd_strmap_free(&c->map);
	memset(&c->map, 0, sizeof c->map);
	c->bytes = 0;
}

static void snr_state_free(struct snr_state *st)
{
	snr_cap_clear(&st->cap);
	for (size_t i = 0; i < st->n_list; i++) {
		free(st->list[i]->name);
		free(st->list[i]->node);
		free(st->list[i]);
	}
	free(st->list);
	qd_strmap_free(&st->accs);
}

static double snr_from(double sig, double noise)
{
	if (noise <= 0)
		return QD_EV_SNR_CAP;
	if (sig <= 0)
		return -QD_EV_SNR_CAP;
	return 10.0 * log10(sig / noise);
}

static double snr_db(const struct snr_acc *a)
{
	return snr_from(a->sig, a->noise);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static int cmp_snr(const void *x, const void *y)
{
	double a = snr_db(*(struct snr_acc *const *)x), b = snr_db(*(struct snr_acc *const *)y);
	return a < b ? -1 : a > b;
}

/* ---- per-output fidelity ---- */

struct out_acc {
	double dot, nx, ny, maxe, sume, noise, min_cos;
	int64_t n, top1_same, top1_total;
	bool comparable, finite;
	const char *why;
};

static void out_accumulate(struct out_acc *o, const struct qd_tensor *a, const struct qd_tensor *b)
{
	int64_t cnt = qd_tensor_count(a);
	if (a->dtype != QD_DT_FLOAT || b->dtype != QD_DT_FLOAT || cnt != qd_tensor_count(b)) {
		o->comparable = false;
		o->why = a->dtype != QD_DT_FLOAT ? "output is not float32" : "outputs differ in type or size";
		return;
	}
	const float *x = a->data, *y = b->data;
	double dot = 0, nx = 0, ny = 0;
	for (int64_t k = 0; k < cnt; k++) {
		double u = x[k], v = y[k];
		o->finite = o->finite && isfinite(u) && isfinite(v);
		dot += u * v; nx += u * u; ny += v * v;
		double e = fabs(u - v);
		o->maxe = e > o->maxe ? e : o->maxe;
		o->sume += e;
		o->noise += e * e;
	}
	double cos = nx > 0 && ny > 0 ? dot / (sqrt(nx) * sqrt(ny)) : (nx == 0 && ny == 0 ? 1.0 : 0.0);
	o->min_cos = cos < o->min_cos ? cos : o->min_cos;
	o->dot += dot; o->nx += nx; o->ny += ny;
	o->n += cnt;
	int64_t last = a->ndim >= 1 ? a->dims[a->ndim - 1] : 1;
	if (a->ndim >= 2 && last > 1) {
		for (int64_t r = 0; r + last <= cnt; r += last) {
			int64_t ia = 0, ib = 0;
			for (int64_t k = 1; k < last; k++) {
				if (x[r + k] > x[r + ia]) ia = k;
				if (y[r + k] > y[r + ib]) ib = k;
			}
			o->top1_same += ia == ib;
			o->top1_total++;
		}
	}
}

static double out_cosine(const struct out_acc *o)
{
	return o->nx > 0 && o->ny > 0 ? o->dot / (sqrt(o->nx) * sqrt(o->ny)) : (o->nx == 0 && o->ny == 0 ? 1.0 : 0.0);
}

/* ---- one model over one data source ---- */

/* The result of running the float and the candidate model over one source. */
/* The candidate's predictions (first output) beside the dataset's labels. */
struct label_col {
	int64_t *label, *pred;    /* pred: class id, or -1 with a score */
	double *score;            /* one probability per prediction (single-column output) */
	size_t n, cap;
	int64_t classes;          /* the output's class axis; 0: one score per prediction */
	const char *array;        /* the labels array's name */
};

struct src_run {
	bool ok;                  /* figures are valid */
	struct out_acc *acc;
	size_t n_out;
	char **names;             /* output names (owned) */
	bool want_labels;
	struct label_col lab;
	int64_t samples, batches;
	json_t *section;          /* metrics.json "accuracy" shape (new) */
	json_t *lowest;           /* lowest_snr_activations (new), or NULL */
	json_t *snr;              /* every compared tensor: name -> snr_db (new), or NULL */
};

static void src_run_free(struct src_run *r)
{
	for (size_t i = 0; r->names && i < r->n_out; i++)
		free(r->names[i]);
	free(r->names);
	free(r->lab.label);
	free(r->lab.pred);
	free(r->lab.score);
	free(r->acc);
	json_decref(r->section);
	json_decref(r->lowest);
	json_decref(r->snr);
	memset(r, 0, sizeof *r);
}

/* Failure of an evaluation run: *fatal set when it fails the job (see DESIGN). */
static bool eval_error_fatal(int rc, bool generated)
{
	if (rc == -QD_EUNSUPPORTED || rc == -QD_ENOT_IMPL || rc == -QD_ECANCELED)
		return false;
	if (generated && (rc == -QD_ESHAPE || rc == -QD_EINVAL))
		return false;
	return true;
}

static json_t *outputs_json(struct src_run *r, struct qd_engine *names, double *min_cos, double *min_top1,
			    bool with_elements)
{
	json_t *outs = json_array();
	*min_cos = 1.0;
	*min_top1 = 2.0;
	if (!r->names)
		r->names = calloc(r->n_out + 1, sizeof *r->names);
	for (size_t i = 0; i < r->n_out; i++) {
		const struct out_acc *o = &r->acc[i];
		const Onnx__ValueInfoProto *vi = qd_engine_output(names, i);
		if (r->names && !r->names[i])
			r->names[i] = strdup(vi && vi->name ? vi->name : "");
		json_t *j = json_pack("{s:s}", "name", vi && vi->name ? vi->name : "");
		if (!o->comparable || !o->finite) {
			json_object_set_new(j, "comparable", json_false());
			json_object_set_new(j, "reason", json_string(o->finite ? o->why : "NaN or Inf in an output"));
			if (!o->finite)
				*min_cos = -1;
		} else {
			json_object_set_new(j, "cosine", json_real(out_cosine(o)));
			json_object_set_new(j, "min_batch_cosine", json_real(o->min_cos));
			json_object_set_new(j, "max_abs_error", json_real(o->maxe));
			json_object_set_new(j, "mean_abs_error", json_real(o->n ? o->sume / (double)o->n : 0));
			json_object_set_new(j, "snr_db", json_real(snr_from(o->nx, o->noise)));
			if (with_elements)
				json_object_set_new(j, "elements", json_integer(o->n));
			if (o->top1_total) {
				double t1 = (double)o->top1_same / (double)o->top1_total;
				json_object_set_new(j, "top1_agreement", json_real(t1));
				*min_top1 = t1 < *min_top1 ? t1 : *min_top1;
			}
			*min_cos = o->min_cos < *min_cos ? o->min_cos : *min_cos;
		}
		json_array_append_new(outs, j);
	}
	return outs;
}

static int acc_alloc(struct src_run *r, size_t n_out, struct qd_err *e)
{
	r->n_out = n_out;
	r->acc = calloc(n_out + 1, sizeof *r->acc);
	if (!r->acc)
		return qd_err_set(e, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n_out; i++) {
		r->acc[i].comparable = r->acc[i].finite = true;
		r->acc[i].min_cos = 1.0;
	}
	return 0;
}

static int lab_grow(struct label_col *l, size_t need)
{
	if (l->n + need <= l->cap)
		return 0;
	size_t nc = l->cap ? l->cap * 2 : 1024;
	while (nc < l->n + need)
		nc *= 2;
	int64_t *a = realloc(l->label, nc * sizeof *a);
	if (a) l->label = a;
	int64_t *b = realloc(l->pred, nc * sizeof *b);
	if (b) l->pred = b;
	double *s = realloc(l->score, nc * sizeof *s);
	if (s) l->score = s;
	if (!a || !b || !s)
		return -QD_ENOMEM;
	l->cap = nc;
	return 0;
}

/* Labels of samples [pos0, pos1) and the candidate's predictions from its first output:
 * argmax over the class (last) axis; an output with one value per prediction is a
 * binary score (a probability; logits outside [0, 1] go through a sigmoid, as
 * torchmetrics does per batch) or, for integer outputs, the class id itself. */
static int labels_collect(struct label_col *l, const struct qd_tensor *la, int64_t pos0, int64_t pos1,
			  const struct qd_tensor *out, const char *cfg, struct qd_err *err)
{
	int64_t per = la->dims[0] ? qd_tensor_count(la) / la->dims[0] : 0;
	int64_t want = (pos1 - pos0) * per;
	int64_t cnt = qd_tensor_count(out);
	int64_t last = out->ndim >= 2 ? out->dims[out->ndim - 1] : 1;
	bool is_float = out->dtype == QD_DT_FLOAT;
	bool is_int = out->dtype == QD_DT_INT64 || out->dtype == QD_DT_INT32;
	if (!is_float && !is_int)
		return qd_err_set(err, QD_EINVAL, "data_configs", "the accuracy metrics read the model's first output "
				  "'%s', which is %s (float32 scores or int64 class ids wanted)", out->name ? out->name : "",
				  qd_dtype_name(out->dtype));
	int64_t classes = is_float && last > 1 ? last : 0;
	int64_t rows = classes ? cnt / classes : cnt;
	if (rows != want)
		return qd_err_set(err, QD_EINVAL, "data_configs", "data config '%s': the model's first output '%s' "
				  "gives %lld predictions for %lld samples, but the \"%s\" array has %lld label(s) per "
				  "sample", cfg, out->name ? out->name : "", (long long)rows, (long long)(pos1 - pos0),
				  l->array, (long long)per);
	if (l->n && l->classes != classes)
		return qd_err_set(err, QD_EINVAL, "data_configs", "the first output's class axis changes between "
				  "batches");
	l->classes = classes;
	if (lab_grow(l, (size_t)rows) < 0)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (int64_t i = 0; i < rows; i++) {
		int64_t k = pos0 * per + i;
		double lv;
		switch (la->dtype) {
		case QD_DT_INT64: lv = (double)((const int64_t *)la->data)[k]; break;
		case QD_DT_INT32: lv = ((const int32_t *)la->data)[k]; break;
		case QD_DT_UINT8: case QD_DT_BOOL: lv = ((const uint8_t *)la->data)[k]; break;
		case QD_DT_FLOAT: lv = ((const float *)la->data)[k]; break;
		default:
			return qd_err_set(err, QD_EINVAL, "data_configs", "the \"%s\" array is %s: integer class ids "
					  "wanted", l->array, qd_dtype_name(la->dtype));
		}
		if (lv != floor(lv) || !isfinite(lv))
			return qd_err_set(err, QD_EINVAL, "data_configs", "the \"%s\" array holds %g at row %lld: "
					  "integer class ids wanted", l->array, lv, (long long)k);
		l->label[l->n + (size_t)i] = (int64_t)lv;
	}
	if (classes) {
		const float *x = out->data;
		for (int64_t r = 0; r < rows; r++) {
			int64_t best = 0;
			for (int64_t k = 1; k < classes; k++)
				if (x[r * classes + k] > x[r * classes + best])
					best = k;
			l->pred[l->n + (size_t)r] = best;
			l->score[l->n + (size_t)r] = 0;
		}
	} else if (is_int) {
		for (int64_t r = 0; r < rows; r++) {
			l->pred[l->n + (size_t)r] = out->dtype == QD_DT_INT64 ? ((const int64_t *)out->data)[r]
									 : ((const int32_t *)out->data)[r];
			l->score[l->n + (size_t)r] = 0;
		}
	} else {
		const float *x = out->data;
		bool logits = false;
		for (int64_t r = 0; r < rows; r++)
			logits = logits || x[r] < 0 || x[r] > 1;
		for (int64_t r = 0; r < rows; r++) {
			l->pred[l->n + (size_t)r] = -1;
			l->score[l->n + (size_t)r] = logits ? 1.0 / (1.0 + exp(-(double)x[r])) : x[r];
		}
	}
	l->n += (size_t)rows;
	return 0;
}

/* ---- channel-last I/O (QnnPreprocess inputs_ / outputs_to_make_channel_last) ----
 * The candidate reads a graph input through Transpose perm (0,3,1,2), or writes a graph
 * output through Transpose perm (0,2,3,1), where the float model does not: the evaluation
 * feeds it the inputs transposed to (N, H, W, C) and turns its outputs back to (N, C, H, W)
 * before comparing. */
static bool cl_perm(const Onnx__NodeProto *n, const int64_t *want)
{
	const int64_t *p = NULL;
	return !strcmp(n->op_type, "Transpose") && !*qd_node_domain(n) && qd_node_attr_ints(n, "perm", &p) == 4 &&
	       p[0] == want[0] && p[1] == want[1] && p[2] == want[2] && p[3] == want[3];
}

static bool cl_through(const Onnx__GraphProto *g, const char *name, bool input)
{
	static const int64_t to_nchw[4] = { 0, 3, 1, 2 }, to_nhwc[4] = { 0, 2, 3, 1 };
	size_t readers = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (input)
			for (size_t k = 0; k < n->n_input; k++)
				if (!strcmp(n->input[k], name)) {
					if (!cl_perm(n, to_nchw))
						return false;
					readers++;
				}
		if (!input)
			for (size_t k = 0; k < n->n_output; k++)
				if (!strcmp(n->output[k], name))
					return cl_perm(n, to_nhwc);
	}
	return readers > 0;
}

struct cl_io {
	bool *in, *out;          /* per candidate graph input / output */
	size_t n_in, n_out, count;
};

static void cl_io_free(struct cl_io *x)
{
	free(x->in);
	free(x->out);
	memset(x, 0, sizeof *x);
}

static int cl_io_find(const Onnx__GraphProto *fg, const Onnx__GraphProto *qg, struct cl_io *x, struct qd_err *err)
{
	memset(x, 0, sizeof *x);
	x->in = calloc(qg->n_input + 1, sizeof *x->in);
	x->out = calloc(qg->n_output + 1, sizeof *x->out);
	if (!x->in || !x->out) {
		cl_io_free(x);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	x->n_in = qg->n_input;
	x->n_out = qg->n_output;
	for (size_t i = 0; i < qg->n_input; i++)
		if (cl_through(qg, qg->input[i]->name, true) && !cl_through(fg, qg->input[i]->name, true))
			x->count += x->in[i] = true;
	for (size_t i = 0; i < qg->n_output; i++)
		if (cl_through(qg, qg->output[i]->name, false) && !cl_through(fg, qg->output[i]->name, false))
			x->count += x->out[i] = true;
	return 0;
}

/* dst = src with its 4 axes permuted (dst axis k = src axis perm[k]). */
static int cl_transpose(const struct qd_tensor *src, const int *perm, struct qd_tensor *dst, struct qd_err *err)
{
	size_t es = qd_dtype_size(src->dtype);
	int64_t d[4], st[4] = { src->dims[1] * src->dims[2] * src->dims[3], src->dims[2] * src->dims[3], src->dims[3], 1 };
	if (src->ndim != 4 || !es)
		return qd_err_set(err, QD_EINVAL, NULL, "channel-last tensor '%s' is not 4-D", src->name ? src->name : "?");
	for (int k = 0; k < 4; k++)
		d[k] = src->dims[perm[k]];
	if (qd_tensor_alloc(dst, src->name, src->dtype, 4, d) < 0)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	const char *s = src->data;
	char *o = dst->data;
	for (int64_t a = 0; a < d[0]; a++)
		for (int64_t b = 0; b < d[1]; b++)
			for (int64_t c = 0; c < d[2]; c++)
				for (int64_t e = 0; e < d[3]; e++) {
					int64_t ix[4] = { a, b, c, e }, off = 0;
					for (int k = 0; k < 4; k++)
						off += ix[k] * st[perm[k]];
					memcpy(o, s + (size_t)off * es, es);
					o += es;
				}
	return 0;
}

/* Run the candidate: inputs named as graph inputs x->in[] transposed to NHWC, outputs
 * x->out[] transposed back to NCHW. */
static int cl_run(struct qd_engine *eng, const Onnx__GraphProto *qg, const struct cl_io *x, const struct qd_tensor *in,
		  size_t n_in, struct qd_tensor **out, size_t *n_out, const volatile int *cancel, struct qd_err *err)
{
	static const int nhwc[4] = { 0, 2, 3, 1 }, nchw[4] = { 0, 3, 1, 2 };
	if (!x->count)
		return qd_engine_run(eng, in, n_in, out, n_out, cancel, err);
	struct qd_tensor *tin = calloc(n_in ? n_in : 1, sizeof *tin);
	if (!tin)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n_in; i++) {
		bool t = false;
		for (size_t k = 0; k < x->n_in; k++)
			t = t || (x->in[k] && in[i].name && !strcmp(in[i].name, qg->input[k]->name));
		if (t)
			rc = cl_transpose(&in[i], nhwc, &tin[i], err);
		else if (qd_tensor_alloc(&tin[i], in[i].name, in[i].dtype, in[i].ndim, in[i].dims) < 0)
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		else
			memcpy(tin[i].data, in[i].data, in[i].nbytes);
	}
	if (rc == 0)
		rc = qd_engine_run(eng, tin, n_in, out, n_out, cancel, err);
	qd_tensors_release(tin, n_in);
	for (size_t i = 0; rc == 0 && i < *n_out && i < x->n_out; i++) {
		struct qd_tensor back = { 0 };
		if (!x->out[i])
			continue;
		if ((rc = cl_transpose(&(*out)[i], nchw, &back, err)) < 0)
			break;
		qd_tensor_release(&(*out)[i]);
		(*out)[i] = back;
	}
	return rc;
}

/* Seeded generated inputs: the float model and then the candidate, one engine at a
 * time. Returns 0 (r->ok tells whether figures exist), or a fatal error. */
static int run_generated(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const char *model_path,
			 struct src_run *r, struct qd_err *err)
{
	struct ev_priv *v = p->priv;
	struct qd_err e = { 0 };
	struct qd_tensor *in = NULL, *fo = NULL, *qo = NULL;
	size_t n_in = 0, n_fo = 0, n_qo = 0;
	struct qd_model *m = NULL;
	struct qd_engine *eng = NULL;
	struct qd_engine_opts eo = ev_engine_opts(c->req);
	json_t *desc = json_object();
	bool same = !strcmp(model_path, c->float_path);
	size_t cl_count = 0;
	const char *which = "float";
	int rc = qd_model_load_file(c->float_path, NULL, &m, &e);
	if (rc == 0) rc = qd_engine_load(m, &eo, &eng, &e);
	if (rc == 0) rc = make_inputs(m, eng, v->io, &in, &n_in, desc, &e);
	if (rc == 0) rc = qd_engine_run(eng, in, n_in, &fo, &n_fo, ev_cancel(c), &e);
	if (rc == 0 && !same) {
		qd_engine_free(eng);
		eng = NULL;
		which = "quantized";
		struct qd_model *fm = m;
		struct cl_io cl = { 0 };
		m = NULL;
		rc = qd_model_load_file(model_path, NULL, &m, &e);
		if (rc == 0) rc = cl_io_find(fm->proto->graph, m->proto->graph, &cl, &e);
		qd_model_free(fm);
		if (rc == 0) rc = qd_engine_load(m, &eo, &eng, &e);
		if (rc == 0) rc = cl_run(eng, m->proto->graph, &cl, in, n_in, &qo, &n_qo, ev_cancel(c), &e);
		cl_count = cl.count;
		cl_io_free(&cl);
	}
	if (rc < 0) {
		if (rc == -QD_ECANCELED) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
			goto out;
		}
		if (eval_error_fatal(rc, true)) {
			*err = e;
			err->code = -rc;
			qd_err_wrap(err, "cannot evaluate the %s model", which);
			goto out;
		}
		char *why = qd_asprintf("cannot evaluate the %s model with the built-in engine: %s", which, e.msg);
		r->section = json_pack("{s:s, s:s}", "status", "unavailable", "reason", why ? why : "out of memory");
		free(why);
		ev_log(c, QD_LOG_WARN, "accuracy unavailable: cannot evaluate the %s model: %s", which, e.msg);
		rc = 0;
		goto out;
	}
	if (same) {
		qo = fo;
		n_qo = n_fo;
	}
	if (n_fo != n_qo) {
		r->section = json_pack("{s:s, s:s}", "status", "unavailable", "reason", "output counts differ");
		goto out;
	}
	if ((rc = acc_alloc(r, n_fo, err)) < 0)
		goto out;
	for (size_t i = 0; i < n_fo; i++)
		out_accumulate(&r->acc[i], &fo[i], &qo[i]);
	r->samples = n_in ? (in[0].ndim ? in[0].dims[0] : 1) : 0;
	r->batches = 1;
	r->ok = true;
	double min_cos, min_top1;
	json_t *outs = outputs_json(r, eng, &min_cos, &min_top1, true);
	r->section = json_pack("{s:s, s:s, s:{s:I, s:O, s:s}, s:o, s:f}", "status", "ok", "engine", "quantd",
			       "inputs", "seed", (json_int_t)QD_EV_SEED, "shapes", desc,
			       "generator", "float uniform [-1,1); int [0, Gather table size) or [0,10); "
					    "symbolic dims: input_model.io_config.input_shapes, else first 1, others 32",
			       "outputs", outs, "min_cosine", min_cos);
	if (cl_count)   /* inputs fed transposed / outputs turned back (channel-last I/O) */
		json_object_set_new(json_object_get(r->section, "inputs"), "channel_last_io", json_integer((json_int_t)cl_count));
	if (min_top1 <= 1.0)
		json_object_set_new(r->section, "min_top1_agreement", json_real(min_top1));
out:
	json_decref(desc);
	if (same)
		qo = NULL, n_qo = 0;
	qd_tensors_release(in, n_in);
	qd_tensors_release(fo, n_fo);
	qd_tensors_release(qo, n_qo);
	qd_engine_free(eng);
	qd_model_free(m);
	return rc;
}

/* A data config: the float and the candidate model on every sample, batch by batch,
 * side by side (snr: the activations' SNR on the first QD_EV_SNR_BATCHES batches). */
static int run_data(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const json_t *ref,
		    const char *cfg_name, const char *model_path, bool snr_wanted, struct src_run *r, struct qd_err *err)
{
	(void)p;
	struct qd_err e = { 0 };
	const struct qd_tensor *la = NULL;
	bool label_err = false;
	struct qd_model *fm = NULL, *qm = NULL;
	struct qd_engine *fe = NULL, *qe = NULL;
	struct qd_dataset *ds = NULL;
	struct qd_batches b = { 0 };
	struct snr_state st = { 0 };
	struct cl_io cl = { 0 };
	int64_t bs = 1, batches = 0;
	bool same = !strcmp(model_path, c->float_path);
	bool snr_on = snr_wanted && !same;
	const volatile int *cancel = ev_cancel(c);
	struct qd_engine_opts eo = ev_engine_opts(c->req);
	struct qd_pass_ctx pc = { .job_id = c->req->job_id, .name = "evaluation", .hooks = c->hooks,
				  .workflow = c->req->workflow, .data_paths = c->req->data_paths };
	int rc = qd_model_load_file(c->float_path, NULL, &fm, &e);
	if (rc == 0 && !same) rc = qd_model_load_file(model_path, NULL, &qm, &e);
	if (rc == 0) rc = qd_pass_open_data(&pc, fm, ref, "data_configs", &ds, &bs, &e);
	if (rc == 0 && r->want_labels) {
		const char *an = "labels";
		if (!(la = qd_dataset_array(ds, an)))
			la = qd_dataset_array(ds, an = "label");
		if (!la || la->ndim < 1 || la->dims[0] != ds->n_samples) {
			rc = qd_err_set(err, QD_EINVAL, "data_configs", "data config '%s': the dataset has %s: the "
					"accuracy metrics (accuracy_score, f1_score, precision, recall) compare the "
					"predictions with it (one label per sample)", cfg_name,
					la ? "a \"labels\" array whose first dimension is not the sample count" :
					     "no \"labels\" array");
			label_err = true;
		}
		r->lab.array = an;
	}
	if (rc == 0 && !same) rc = cl_io_find(fm->proto->graph, qm->proto->graph, &cl, &e);
	if (rc == 0) rc = qd_engine_load(fm, &eo, &fe, &e);
	if (rc == 0 && !same) rc = qd_engine_load(qm, &eo, &qe, &e);
	if (rc == 0) rc = qd_batches_init(&b, ds, fm->proto->graph, bs, 0, &e);
	if (rc == 0 && snr_on) {
		qd_engine_set_hook(fe, snr_float_hook, &st);
		qd_engine_set_hook(qe, snr_quant_hook, &st);
	}
	while (rc == 0) {
		struct qd_tensor *in = NULL, *fo = NULL, *qo = NULL;
		size_t n_in = 0, n_fo = 0, n_qo = 0;
		int64_t pos0 = b.pos;
		int got = qd_batches_next(&b, &in, &n_in, &e);
		if (got <= 0) {
			rc = got;
			break;
		}
		bool snr = snr_on && batches < QD_EV_SNR_BATCHES;
		st.cap.on = st.on = snr;
		if (snr_on && batches == QD_EV_SNR_BATCHES) {
			qd_engine_set_hook(fe, NULL, NULL);   /* fused kernels again: same values */
			qd_engine_set_hook(qe, NULL, NULL);
		}
		rc = qd_engine_run(fe, in, n_in, &fo, &n_fo, cancel, &e);
		if (rc == 0 && !same)
			rc = cl_run(qe, qm->proto->graph, &cl, in, n_in, &qo, &n_qo, cancel, &e);
		if (same) {
			qo = fo;
			n_qo = n_fo;
		}
		if (rc == 0 && !r->acc)
			rc = acc_alloc(r, n_fo, &e);
		if (rc == 0 && (n_fo != r->n_out || n_qo != r->n_out))
			rc = qd_err_set(&e, QD_EINTERNAL, NULL, "output counts differ");
		for (size_t i = 0; rc == 0 && i < r->n_out; i++)
			if (r->acc[i].comparable)
				out_accumulate(&r->acc[i], &fo[i], &qo[i]);
		if (rc == 0 && la && n_qo && (rc = labels_collect(&r->lab, la, pos0, b.pos, &qo[0], cfg_name, err)) < 0)
			label_err = true;
		snr_cap_clear(&st.cap);
		qd_tensors_release(in, n_in);
		qd_tensors_release(fo, n_fo);
		if (!same)
			qd_tensors_release(qo, n_qo);
		batches++;
	}
	if (rc < 0) {
		if (label_err)
			goto out;
		if (rc == -QD_ECANCELED) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
			goto out;
		}
		if (eval_error_fatal(rc, false)) {
			*err = e;
			err->code = -rc;
			qd_err_wrap(err, "cannot evaluate the float or the quantized model");
			goto out;
		}
		r->section = json_pack("{s:s, s:s}", "status", "unavailable", "reason", e.msg);
		ev_log(c, QD_LOG_WARN, "accuracy on data config '%s' unavailable: %s", cfg_name, e.msg);
		free(r->acc);
		r->acc = NULL;
		r->n_out = 0;
		rc = 0;
		goto out;
	}
	r->ok = r->acc != NULL;
	r->samples = b.end;
	r->batches = batches;
	double min_cos, min_top1;
	json_t *outs = outputs_json(r, fe, &min_cos, &min_top1, false);
	r->section = json_pack("{s:s, s:s, s:{s:s, s:I, s:I}, s:o, s:f}", "status", "ok", "engine", "quantd",
			       "inputs", "data_config", cfg_name, "samples", (json_int_t)b.end, "batches",
			       (json_int_t)batches, "outputs", outs, "min_cosine", min_cos);
	if (min_top1 <= 1.0)
		json_object_set_new(r->section, "min_top1_agreement", json_real(min_top1));
	if (st.n_list) {
		qsort(st.list, st.n_list, sizeof *st.list, cmp_snr);
		r->lowest = json_array();
		for (size_t i = 0; i < st.n_list && i < 10; i++)
			json_array_append_new(r->lowest, json_pack("{s:s, s:s, s:f}", "tensor", st.list[i]->name, "node",
								    st.list[i]->node, "snr_db", snr_db(st.list[i])));
		r->snr = json_object();
		for (size_t i = 0; r->snr && i < st.n_list; i++)
			json_object_set_new(r->snr, st.list[i]->name, json_real(snr_db(st.list[i])));
	}
out:
	cl_io_free(&cl);
	snr_state_free(&st);
	qd_batches_free(&b);
	qd_engine_free(fe);
	qd_engine_free(qe);
	qd_dataset_free(ds);
	qd_model_free(fm);
	qd_model_free(qm);
	return rc;
}

/* ---- size on disk ---- */

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The model file plus the distinct external data files it references. */
static long long model_bytes(const char *path)
{
	long long total = file_size(path);
	struct qd_model *m = NULL;
	struct qd_load_opts lo = { .keep_external = true };
	if (total < 0 || qd_model_load_file(path, &lo, &m, NULL) < 0)
		return total;
	total += qd_model_external_bytes(m);
	qd_model_free(m);
	return total;
}

/* ---- timing ---- */

static void sleep_seconds(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9) };
	while (nanosleep(&ts, &ts) < 0)
		;
}

/* Latency of the candidate alone on the first batch of the metric's source (Olive:
 * warmup_num untimed runs, then repeat_test_num timed runs, sleep_num seconds after each).
 * *ms (new) sorted ascending; *batch the batch's sample count. Returns 0 with *n = 0 when
 * the model cannot run on the engine for a reason the model cannot help, else an error. */
static int run_timing(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const struct ev_metric *m,
		      const char *model_path, double **ms, size_t *n, int64_t *batch, struct qd_err *err)
{
	struct ev_priv *v = p->priv;
	struct qd_err e = { 0 };
	struct qd_model *md = NULL;
	struct qd_engine *eng = NULL;
	struct qd_dataset *ds = NULL;
	struct qd_batches b = { 0 };
	struct qd_tensor *in = NULL, *out = NULL;
	size_t n_in = 0, n_out = 0;
	int64_t bs = 1;
	double *t = calloc((size_t)m->repeat + 1, sizeof *t);
	struct qd_engine_opts eo = ev_engine_opts(c->req);
	struct qd_pass_ctx pc = { .job_id = c->req->job_id, .name = "evaluation", .hooks = c->hooks,
				  .workflow = c->req->workflow, .data_paths = c->req->data_paths };
	const json_t *ref = m->dc;
	json_t *held = NULL;
	bool generated = !ref && !v->heldout;
	*ms = NULL;
	*n = 0;
	*batch = 0;
	if (!ref && v->heldout)
		ref = held = json_string(v->heldout);
	int rc = t ? 0 : qd_err_set(&e, QD_ENOMEM, NULL, "out of memory");
	if (rc == 0) rc = qd_model_load_file(model_path, NULL, &md, &e);
	if (rc == 0) rc = qd_engine_load(md, &eo, &eng, &e);
	if (rc == 0 && generated)
		rc = make_inputs(md, eng, v->io, &in, &n_in, NULL, &e);
	if (rc == 0 && !generated) {
		rc = qd_pass_open_data(&pc, md, ref, "data_configs", &ds, &bs, &e);
		if (rc == 0) rc = qd_batches_init(&b, ds, md->proto->graph, bs, 0, &e);
		if (rc == 0 && qd_batches_next(&b, &in, &n_in, &e) <= 0 && rc == 0)
			rc = e.code ? -e.code : qd_err_set(&e, QD_EINVAL, "data_configs", "the data config is empty");
	}
	if (rc == 0)
		*batch = n_in && in[0].ndim ? in[0].dims[0] : 1;
	for (int i = 0; rc == 0 && i < m->warmup + m->repeat; i++) {
		double t0 = qd_now_mono();
		rc = qd_engine_run(eng, in, n_in, &out, &n_out, ev_cancel(c), &e);
		double dt = qd_now_mono() - t0;
		qd_tensors_release(out, n_out);
		out = NULL;
		n_out = 0;
		if (rc == 0 && i >= m->warmup)
			t[i - m->warmup] = dt * 1000.0;
		if (rc == 0)
			sleep_seconds(m->sleep);
	}
	if (rc < 0) {
		if (rc == -QD_ECANCELED) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
		} else if (eval_error_fatal(rc, generated)) {
			*err = e;
			err->code = -rc;
			qd_err_wrap(err, "cannot time model '%s' for metric '%s'", model_path, m->name);
		} else {
			ev_log(c, QD_LOG_WARN, "metric '%s' unavailable: %s", m->name, e.msg);
			rc = 0;
		}
		goto out;
	}
	qsort(t, (size_t)m->repeat, sizeof *t, cmp_double);
	*ms = t;
	*n = (size_t)m->repeat;
	t = NULL;
out:
	free(t);
	json_decref(held);
	qd_tensors_release(in, n_in);
	qd_batches_free(&b);
	qd_dataset_free(ds);
	qd_engine_free(eng);
	qd_model_free(md);
	return rc;
}

static double round5(double x)
{
	return round(x * 1e5) / 1e5;
}

/* A latency statistic in ms (sorted ascending) */
static double timing_stat(const double *ms, size_t n, enum ev_stat st)
{
	double sum = 0;
	switch (st) {
	case ST_AVG:
		for (size_t i = 0; i < n; i++)
			sum += ms[i];
		return sum / (double)n;
	case ST_MIN: return ms[0];
	case ST_MAX: return ms[n - 1];
	case ST_P50: return qd_eval_percentile(ms, n, 50);
	case ST_P75: return qd_eval_percentile(ms, n, 75);
	case ST_P90: return qd_eval_percentile(ms, n, 90);
	case ST_P95: return qd_eval_percentile(ms, n, 95);
	case ST_P99: return qd_eval_percentile(ms, n, 99);
	case ST_P999: return qd_eval_percentile(ms, n, 99.9);
	default: return NAN;
	}
}

/* ---- the run ---- */

/* The aggregated value of a fidelity objective over the comparable outputs (or the one
 * named output); false when there is none (e.g. top-1 agreement without an output with a
 * class axis). first: the first output only (accuracy-top1_agreement). */
static bool fidelity_value(const struct src_run *r, enum ev_stat st, const char *output, bool first, double *out)
{
	bool any = false;
	double v = 0;
	for (size_t i = 0; r->ok && i < r->n_out; i++) {
		const struct out_acc *o = &r->acc[i];
		if ((first && i > 0) || (output && (!r->names || !r->names[i] || strcmp(r->names[i], output))))
			continue;
		if (!o->comparable)
			continue;
		double x;
		if (!o->finite) {
			/* NaN / Inf: the worst value */
			x = st == ST_COS ? -1.0 : st == ST_TOP1 ? 0.0 : st == ST_SNR ? -QD_EV_SNR_CAP : 1e30;
		} else {
			switch (st) {
			case ST_COS: x = o->min_cos; break;
			case ST_TOP1:
				if (!o->top1_total)
					continue;
				x = (double)o->top1_same / (double)o->top1_total;
				break;
			case ST_MAXE: x = o->maxe; break;
			case ST_MEANE: x = o->n ? o->sume / (double)o->n : 0; break;
			case ST_SNR: x = snr_from(o->nx, o->noise); break;
			default: continue;
			}
		}
		bool lower_better = st == ST_MAXE || st == ST_MEANE;
		if (!any || (lower_better ? x > v : x < v))
			v = x;
		any = true;
	}
	*out = v;
	return any;
}

static const char *const avg_names[] = {
	[AVG_DEFAULT] = "default", [AVG_MICRO] = "micro", [AVG_MACRO] = "macro", [AVG_WEIGHTED] = "weighted",
	[AVG_BINARY] = "binary",
};

/* A label metric from the collected predictions. *info (new) describes the count. */
static int label_value(const struct label_col *l, const struct ev_obj *o, const char *key, const char *cfg,
		       double *out, json_t **info, struct qd_err *err)
{
	bool score = l->classes == 0;
	enum ev_task task = o->task;
	if (task == TASK_AUTO)
		task = l->classes > 2 ? TASK_MULTICLASS : TASK_BINARY;
	int64_t k = o->num_classes ? o->num_classes : l->classes >= 2 ? l->classes : 2;
	if (task == TASK_BINARY && o->num_classes == 0)
		k = l->classes > 2 ? l->classes : 2;
	if (l->classes > k)
		return qd_err_set(err, QD_EINVAL, key, "metric '%s': num_classes is %lld but the model's first output "
				  "has %lld classes", key, (long long)k, (long long)l->classes);
	bool pos_only = task == TASK_BINARY || o->avg == AVG_BINARY;
	struct qd_eval_counts cn;
	if (qd_eval_counts_init(&cn, (size_t)k) < 0)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < l->n; i++) {
		int64_t lab = l->label[i];
		if (o->has_ignore && lab == o->ignore_index)
			continue;
		if (lab < 0 || lab >= k || (pos_only && lab > 1)) {
			qd_eval_counts_free(&cn);
			return qd_err_set(err, QD_EINVAL, key, "metric '%s': label %lld (sample %zu of data config '%s') "
					  "is outside [0, %lld)%s", key, (long long)lab, i, cfg, (long long)(pos_only ? 2 : k),
					  pos_only ? ": a binary metric takes labels 0 and 1 (set task \"multiclass\" "
					  "or a multiclass average)" : "");
		}
		int64_t pred = score ? (l->score[i] > o->threshold) : l->pred[i];
		if (pred < 0 || pred >= k) {
			qd_eval_counts_free(&cn);
			return qd_err_set(err, QD_EINVAL, key, "metric '%s': the model predicts class %lld, outside "
					  "[0, %lld)", key, (long long)pred, (long long)k);
		}
		qd_eval_counts_add(&cn, lab, pred);
	}
	if (cn.n == 0) {
		qd_eval_counts_free(&cn);
		return qd_err_set(err, QD_EINVAL, key, "metric '%s': data config '%s' has no labelled sample", key, cfg);
	}
	enum qd_eval_avg a = o->avg == AVG_MACRO ? QD_EVAL_AVG_MACRO : o->avg == AVG_WEIGHTED ? QD_EVAL_AVG_WEIGHTED
			   : o->avg == AVG_BINARY ? QD_EVAL_AVG_BINARY : QD_EVAL_AVG_MICRO;
	if (task == TASK_BINARY && o->stat != ST_ACC)
		a = QD_EVAL_AVG_BINARY;
	switch (o->stat) {
	case ST_ACC: *out = qd_eval_accuracy(&cn, task == TASK_BINARY ? QD_EVAL_AVG_MICRO : a); break;
	case ST_F1: *out = qd_eval_f1(&cn, a); break;
	case ST_PREC: *out = qd_eval_precision(&cn, a); break;
	default: *out = qd_eval_recall(&cn, a); break;
	}
	const char *an = a == QD_EVAL_AVG_MACRO ? "macro" : a == QD_EVAL_AVG_WEIGHTED ? "weighted" :
			 a == QD_EVAL_AVG_BINARY ? "binary" : "micro";
	if (o->stat == ST_ACC && task == TASK_BINARY)
		an = "micro";
	*info = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "data_config", cfg, "task",
			  task == TASK_BINARY ? "binary" : "multiclass", "num_classes", (json_int_t)k, "samples",
			  (json_int_t)cn.n, "correct", (json_int_t)cn.correct, "average", an);
	(void)avg_names;
	qd_eval_counts_free(&cn);
	return 0;
}

struct timing {
	bool done;
	double *ms;        /* sorted, n */
	size_t n;
	int64_t batch;
};

/* One data source of the plan: the default (held-out data or generated inputs) or a
 * metric's data config. */
struct src {
	const json_t *dc;          /* NULL: the default source */
	char *name;                /* for messages */
	bool labels, snr;
	struct src_run r;
};

static bool same_source(const struct ev_priv *v, const json_t *a, const json_t *b)
{
	/* a metric naming the held-out data config shares the default source */
	if (a && v->heldout && json_is_string(a) && !strcmp(json_string_value(a), v->heldout))
		a = NULL;
	if (b && v->heldout && json_is_string(b) && !strcmp(json_string_value(b), v->heldout))
		b = NULL;
	return (!a && !b) || (a && b && json_equal((json_t *)a, (json_t *)b));
}

int qd_eval_run(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const char *model_path,
		json_t **values, json_t **detail, struct qd_err *err)
{
	struct ev_priv *v = p->priv;
	struct src *srcs = calloc(v->n_m + 2, sizeof *srcs);
	struct timing *timings = calloc(v->n_m + 1, sizeof *timings);
	size_t n_src = 0;
	json_t *vals = json_object(), *det = json_object(), *per = json_object();
	int rc = 0;
	*values = NULL;
	if (detail)
		*detail = NULL;
	if (!vals || !det || !per || !srcs || !timings) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	/* the sources that accuracy and fidelity metrics read; the default one first (and
	 * always when the caller wants the metrics.json sections) */
	if (detail) {
		srcs[0].snr = true;
		n_src = 1;
	}
	for (size_t i = 0; i < p->n_obj; i++) {
		const struct ev_metric *m = &v->m[v->o[i].metric];
		if (m->type != EV_ACCURACY && m->type != EV_FIDELITY)
			continue;
		size_t s = 0;
		while (s < n_src && !same_source(v, srcs[s].dc, m->dc))
			s++;
		if (s == n_src) {
			srcs[s].dc = m->dc && !same_source(v, m->dc, NULL) ? m->dc : NULL;
			n_src++;
		}
		srcs[s].labels = srcs[s].labels || stat_needs_labels(v->o[i].stat);
	}
	for (size_t s = 0; s < n_src; s++) {
		struct src *x = &srcs[s];
		x->r.want_labels = x->labels;
		if (!x->dc && !v->heldout) {
			rc = run_generated(p, c, model_path, &x->r, err);
			x->name = strdup("generated inputs");
			if (rc == 0)
				ev_log(c, QD_LOG_INFO, "accuracy measured on seeded random inputs: add a data config that "
				       "no pass calibrates with to measure it on held-out data");
		} else {
			json_t *held = x->dc ? NULL : json_string(v->heldout);
			const json_t *ref = x->dc ? x->dc : held;
			x->name = json_is_string(ref) ? strdup(json_string_value(ref)) : strdup("inline data config");
			rc = run_data(p, c, ref, x->name ? x->name : "?", model_path, x->snr, &x->r, err);
			json_decref(held);
		}
		if (rc < 0)
			goto out;
	}
	for (size_t i = 0; i < p->n_obj; i++) {
		const struct ev_obj *o = &v->o[i];
		const struct ev_metric *m = &v->m[o->metric];
		const char *key = p->obj[i].key;
		double x = 0;
		bool have = false;
		json_t *info = NULL;
		struct src *sx = NULL;
		for (size_t s = 0; s < n_src && !sx; s++)
			if (same_source(v, srcs[s].dc, m->dc))
				sx = &srcs[s];
		switch (m->type) {
		case EV_ACCURACY:
		case EV_FIDELITY:
			if (!sx || !sx->r.ok)
				break;
			if (stat_needs_labels(o->stat)) {
				if ((rc = label_value(&sx->r.lab, o, key, sx->name, &x, &info, err)) < 0)
					goto out;
				have = true;
			} else {
				bool found = !o->output;
				for (size_t q = 0; o->output && sx->r.names && q < sx->r.n_out; q++)
					found = found || (sx->r.names[q] && !strcmp(sx->r.names[q], o->output));
				if (!found) {
					rc = qd_err_set(err, QD_EINVAL, key, "metric '%s': the model has no output '%s' "
							"(metric_config.output)", key, o->output);
					goto out;
				}
				have = fidelity_value(&sx->r, o->stat, o->output, m->type == EV_ACCURACY, &x);
				info = json_pack("{s:s}", "data_config", sx->name);
				if (o->output)
					json_object_set_new(info, "output", json_string(o->output));
			}
			break;
		case EV_LATENCY:
		case EV_THROUGHPUT: {
			/* one measurement per metric serves all its sub_types */
			struct timing *tm = &timings[o->metric];
			if (!tm->done && (rc = run_timing(p, c, m, model_path, &tm->ms, &tm->n, &tm->batch, err)) < 0)
				goto out;
			tm->done = true;
			const double *ms = tm->ms;
			size_t n = tm->n;
			int64_t batch = tm->batch;
			if (n) {
				enum ev_stat st = o->stat;
				if (m->type == EV_THROUGHPUT)
					st = st == ST_MIN ? ST_MAX : st == ST_MAX ? ST_MIN : st;
				double lat = timing_stat(ms, n, st);
				x = round5(m->type == EV_LATENCY ? lat : lat > 0 ? (double)batch / lat * 1000.0 : 0);
				have = true;
				info = json_pack("{s:I, s:I, s:f, s:I}", "warmup_num", (json_int_t)m->warmup,
						 "repeat_test_num", (json_int_t)m->repeat, "sleep_num", m->sleep,
						 "batch_size", (json_int_t)batch);
			}
			break;
		}
		case EV_SIZE: {
			long long b = model_bytes(model_path);
			have = b >= 0;
			x = (double)b;
			break;
		}
		}
		if (have)
			json_object_set_new(vals, key, m->type == EV_SIZE ? json_integer((json_int_t)x) : json_real(x));
		if (info)
			json_object_set_new(per, key, info);
	}
	if (srcs[0].r.section && !srcs[0].dc && detail)
		json_object_set(det, "accuracy", srcs[0].r.section);
	if (srcs[0].r.lowest && !srcs[0].dc && detail)
		json_object_set(det, "lowest_snr_activations", srcs[0].r.lowest);
	if (srcs[0].r.snr && !srcs[0].dc && detail)
		json_object_set(det, "activation_snr", srcs[0].r.snr);
	json_object_set(det, "objectives", per);
	*values = vals;
	vals = NULL;
	if (detail) {
		*detail = det;
		det = NULL;
	}
out:
	for (size_t s = 0; srcs && s < n_src; s++) {
		src_run_free(&srcs[s].r);
		free(srcs[s].name);
	}
	free(srcs);
	for (size_t i = 0; timings && i < v->n_m; i++)
		free(timings[i].ms);
	free(timings);
	json_decref(per);
	json_decref(vals);
	json_decref(det);
	return rc;
}

/* ---- goals ---- */

bool qd_eval_goals_met(const struct qd_eval_plan *p, const json_t *cand, const json_t *base, json_t **status)
{
	bool all = true;
	json_t *st = status ? json_object() : NULL;
	if (status)
		*status = st;
	for (size_t i = 0; i < p->n_obj; i++) {
		const struct qd_objective *o = &p->obj[i];
		if (!o->goal_type)
			continue;
		const json_t *cv = json_object_get(cand, o->key), *bv = json_object_get(base, o->key);
		double m = o->higher_is_better ? 1.0 : -1.0, g = o->goal_value, target = g;
		bool needs_base = strcmp(o->goal_type, "threshold") != 0;
		bool known = json_is_number(cv) && (!needs_base || json_is_number(bv));
		double b = json_number_value(bv);
		if (!strcmp(o->goal_type, "max-degradation"))
			target = b - m * g;
		else if (!strcmp(o->goal_type, "min-improvement"))
			target = b + m * g;
		else if (!strcmp(o->goal_type, "percent-max-degradation"))
			target = b * (1.0 - m * g / 100.0);
		else if (!strcmp(o->goal_type, "percent-min-improvement"))
			target = b * (1.0 + m * g / 100.0);
		/* a value that could not be measured does not meet its goal */
		bool met = known && m * json_number_value(cv) >= m * target;
		all = all && met;
		if (st) {
			json_t *j = json_pack("{s:o, s:o, s:{s:s, s:f}, s:o, s:b, s:b}",
					      "value", json_is_number(cv) ? json_real(json_number_value(cv)) : json_null(),
					      "baseline", json_is_number(bv) ? json_real(b) : json_null(),
					      "goal", "type", o->goal_type, "value", g,
					      "target", !needs_base || json_is_number(bv) ? json_real(target) : json_null(),
					      "higher_is_better", o->higher_is_better, "met", met);
			json_object_set_new(st, o->key, j);
		}
	}
	return all;
}
