/* Olive-style workflow: submit-time validation of the "passes" section against the pass
 * registry, and the runner (load, pass chain with progress/log/cancel hooks, save,
 * metrics.json and footprint.json). */
#include "passes/passes.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "passes/data_config.h"
#include "onnx/onnx_internal.h"
#include "search/eval.h"
#include "search/search.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int qd_workflow_validate(const json_t *workflow, struct qd_err *err)
{
	return qd_workflow_check(workflow, 0, NULL, NULL, err);
}

/* ---- runner ---- */

#define QD_EXTERNAL_AUTO ((uint64_t)2 << 30)

struct wf {
	const struct qd_workflow_req *req;
	const struct qd_workflow_hooks *hooks;
	struct qd_err *err;
	double credit;           /* seconds of the trials taken from req->resume (max_time) */
};

static void wf_log(struct wf *w, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void wf_log(struct wf *w, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, w->req->job_id, "%s", line);
	if (w->hooks && w->hooks->log)
		w->hooks->log(w->hooks->ud, lvl, line);
}

static void wf_progress(struct wf *w, double frac, const char *msg)
{
	if (w->hooks && w->hooks->progress)
		w->hooks->progress(w->hooks->ud, frac, msg);
}

static bool wf_canceled(struct wf *w)
{
	return w->hooks && w->hooks->cancel && *w->hooks->cancel;
}

/* max_time is used up (t0: the start of the run; resumed trials count with their own
 * duration) */
static bool wf_over_time(const struct wf *w, const struct qd_search_strategy *ss, double t0)
{
	return ss->max_time > 0 && qd_now_mono() - t0 + w->credit > ss->max_time;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

long long qd_model_external_bytes(const struct qd_model *m)
{
	long long total = 0;
	const char *seen[64];
	size_t ns = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		for (size_t k = 0; k < t->n_external_data; k++) {
			const Onnx__StringStringEntryProto *e = t->external_data[k];
			if (!e->key || strcmp(e->key, "location") || !e->value)
				continue;
			bool dup = false;
			for (size_t j = 0; j < ns; j++)
				dup = dup || !strcmp(seen[j], e->value);
			if (dup || ns == QD_ARRAY_LEN(seen))
				continue;
			seen[ns++] = e->value;
			char *p = qd_asprintf("%s/%s", m->base_dir ? m->base_dir : ".", e->value);
			long long sz = p ? file_size(p) : -1;
			free(p);
			if (sz > 0)
				total += sz;
		}
	}
	return total;
}

static const char *model_path_of(const json_t *workflow)
{
	const json_t *im = json_object_get(workflow, "input_model");
	const char *p = json_string_value(json_object_get(im, "model_path"));
	if (!p)
		p = json_string_value(json_object_get(json_object_get(im, "config"), "model_path"));
	if (!p)
		p = json_string_value(json_object_get(workflow, "model"));
	return p;
}

const char *qd_workflow_model_path(const json_t *workflow)
{
	return model_path_of(workflow);
}

/* ---- footprint ---- */

static char *model_id(const char *parent, const char *pass_type, const json_t *cfg)
{
	char *c = json_dumps(cfg, JSON_SORT_KEYS | JSON_COMPACT);
	char *s = qd_asprintf("%s|%s|%s", parent ? parent : "", pass_type ? pass_type : "", c ? c : "");
	free(c);
	if (!s)
		return NULL;
	char hex[65];
	qd_sha256_hex(s, strlen(s), hex);
	free(s);
	hex[8] = 0;
	return strdup(hex);
}

static int write_json(const char *dir, const char *name, const json_t *j, struct qd_err *err)
{
	char *path = qd_asprintf("%s/%s", dir, name);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int rc;
	if (!path || !text) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	} else {
		size_t n = strlen(text);
		text[n] = '\n';   /* replace the terminator: write n+1 bytes */
		rc = qd_file_write_atomic(path, text, n + 1, err);
		text[n] = 0;
	}
	free(path);
	free(text);
	return rc;
}

/* ---- search: the trial loop (search/search.h) ---- */

static int file_sha256(const char *path, char hex[65], struct qd_err *err)
{
	FILE *f = fopen(path, "rb");
	struct qd_sha256 s;
	if (!f)
		return qd_err_set(err, QD_EIO, NULL, "cannot open '%s'", path);
	if (qd_sha256_init(&s) < 0) {
		fclose(f);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		qd_sha256_update(&s, buf, n);
	fclose(f);
	qd_sha256_final(&s, hex);
	return 0;
}

static int copy_file(const char *from, const char *to, struct qd_err *err)
{
	struct qd_buf b = { 0 };
	int rc = qd_file_read(from, &b, err);
	if (rc == 0)
		rc = qd_file_write_atomic(to, b.data, b.len, err);
	qd_buf_free(&b);
	return rc;
}

/* Save m into dir/model.onnx with the save parameters of the chain's last pass. */
static int wf_save(struct qd_model *m, const char *dir, const json_t *save_params, long long *bytes,
		   struct qd_err *err)
{
	struct qd_save_opts so = { 0 };
	if (save_params) {
		so.external_data = json_is_true(json_object_get(save_params, "save_as_external_data"));
		so.external_name = json_string_value(json_object_get(save_params, "external_data_name"));
		json_int_t th = json_integer_value(json_object_get(save_params, "size_threshold"));
		so.size_threshold = th > 0 ? (size_t)th : 0;
		if (json_is_integer(json_object_get(save_params, "size_threshold")) && th == 0)
			so.size_threshold = 1;   /* 0 = every tensor (1 byte threshold) */
	}
	if (so.external_data && !so.external_name)
		so.external_name = "model.onnx.data";
	char *path = qd_asprintf("%s/model.onnx", dir);
	char *data = qd_asprintf("%s/%s", dir, so.external_name ? so.external_name : "model.onnx.data");
	int rc = path && data ? 0 : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (rc == 0) {
		unlink(data);   /* a stale data file from an earlier run must not be counted */
		rc = qd_model_save_file(m, path, &so, err);
	}
	if (rc == 0) {
		long long d = file_size(data);
		*bytes = file_size(path) + (d > 0 ? d : 0);
	}
	free(path);
	free(data);
	return rc;
}

/* The model is loaded with its external weights left on disk (keep_external); a pass that
 * does not read them one at a time (qd_pass_reads_external) gets them all in memory. */
static int wf_external_in(struct wf *w, struct qd_model *m, const struct qd_pass_vt *vt, const json_t *cfg,
			  const char *pname, struct qd_err *err)
{
	uint64_t ext = qd_model_external_tensor_bytes(m);
	if (!ext || qd_pass_reads_external(vt, cfg))
		return 0;
	wf_log(w, QD_LOG_INFO, "pass '%s' (%s) needs every weight in memory: reading %llu bytes of external data",
	       pname, vt->name, (unsigned long long)ext);
	int rc = qd_model_load_external(m, err);
	if (rc < 0)
		qd_err_wrap(err, "pass '%s'", pname);
	return rc;
}

/* Float models above this many bytes (model file + external data) skip quantd's default
 * evaluation (fidelity on the executor loads the float and the quantized model whole);
 * env QD_DEFAULT_EVAL_MAX_BYTES overrides it. An evaluator the workflow sets always runs. */
#define QD_DEFAULT_EVAL_MAX_BYTES ((long long)1 << 30)
static long long default_eval_max_bytes(void)
{
	const char *e = getenv("QD_DEFAULT_EVAL_MAX_BYTES");
	char *end;
	long long v = e && *e ? strtoll(e, &end, 10) : -1;
	return e && *e && !*end && v > 0 ? v : QD_DEFAULT_EVAL_MAX_BYTES;
}

static bool has_evaluator(const json_t *wf, const char *last_pass)
{
	const json_t *p = json_object_get(json_object_get(wf, "passes"), last_pass ? last_pass : "");
	if (json_is_array(p))
		p = json_array_get(p, 0);
	const json_t *v[3] = { json_object_get(p, "evaluator"), json_object_get(wf, "evaluator"),
			       json_object_get(json_object_get(wf, "engine"), "evaluator") };
	for (size_t i = 0; i < 3; i++)
		if (v[i] && !json_is_null(v[i]))
			return true;
	return false;
}

/* One trial's pass chain: load the input model, run each named pass with its
 * configuration (cfgs: pass name -> parameters), save into dir. *passes_out gets the
 * per-pass records, *counts the quantized nodes per op type. */
static int wf_run_chain(struct wf *w, const char *model_path, const json_t *names, const json_t *cfgs,
			const char *dir, json_t *passes_out, json_t *counts, long long *bytes, struct qd_err *err)
{
	const struct qd_workflow_req *req = w->req;
	struct qd_model *m = NULL;
	const json_t *last = NULL;
	struct qd_load_opts lo = { .keep_external = true };
	int rc = qd_model_load_file(model_path, &lo, &m, err);
	size_t i; json_t *pn;
	json_array_foreach(names, i, pn) {
		if (rc < 0)
			break;
		const char *pname = json_string_value(pn);
		const json_t *cfg = json_object_get(cfgs, pname);
		const struct qd_pass_vt *vt = qd_pass_find(qd_search_pass_type(req->workflow, pname, cfg));
		if (!vt || !vt->run || !cfg) {
			rc = qd_err_set(err, QD_EINTERNAL, pname, "pass '%s' cannot run", pname);
			break;
		}
		if ((rc = wf_external_in(w, m, vt, cfg, pname, err)) < 0)
			break;
		json_t *stats = json_object();
		struct qd_pass_ctx ctx = { .job_id = req->job_id, .name = pname, .hooks = w->hooks, .stats = stats,
					   .workflow = req->workflow, .data_paths = req->data_paths,
					   .threads = req->threads, .max_tensor_bytes = req->max_tensor_bytes,
					   .max_memory_bytes = req->max_memory_bytes, .max_seconds = req->max_seconds };
		double ts = qd_now_mono();
		rc = vt->run(&ctx, m, cfg, err);
		if (rc < 0) {
			qd_err_wrap(err, "pass '%s' (%s) failed", pname, vt->name);
			json_decref(stats);
			break;
		}
		const char *k; json_t *c;
		json_object_foreach(json_object_get(stats, "quantized_nodes"), k, c) {
			json_t *o = json_object_get(counts, k);
			json_object_set_new(counts, k, json_integer((o ? json_integer_value(o) : 0) + json_integer_value(c)));
		}
		json_array_append_new(passes_out, json_pack("{s:s, s:s, s:O, s:o, s:f}", "name", pname, "type", vt->name,
							      "config", cfg, "stats", stats, "seconds", qd_now_mono() - ts));
		last = cfg;
	}
	if (rc == 0)
		rc = qd_mkdir_p(dir, err);
	if (rc == 0 && (rc = wf_save(m, dir, last, bytes, err)) < 0)
		qd_err_wrap(err, "cannot save the trial's model");
	qd_model_free(m);
	return rc;
}

struct trial {
	size_t n;                /* 1-based */
	size_t level, point;
	json_t *params;          /* searched parameters of this trial (with earlier levels' choices) */
	json_t *cfgs;            /* pass name -> configuration */
	json_t *names;           /* passes run */
	json_t *values, *goals, *metrics;   /* NULL when failed */
	char *error;
	char key[65];
	long cached_from;        /* trial whose result was reused, or -1 */
	bool met;
	bool fallback;           /* an accuracy-driven fallback step */
	bool resumed;            /* taken from req->resume */
	bool done;               /* committed: logged, reported, told to the sampler */
	double seconds;
	double *scaled;
	/* a trial run in a process of its own (parallel trials) until it is committed */
	int state;               /* TRIAL_SAMPLED, TRIAL_RUNNING, TRIAL_READY */
	int rc;                  /* its outcome */
	json_t *res;
	char *rmsg;
};
enum { TRIAL_SAMPLED, TRIAL_RUNNING, TRIAL_READY };

static void trial_free(struct trial *t)
{
	json_decref(t->params);
	json_decref(t->cfgs);
	json_decref(t->names);
	json_decref(t->values);
	json_decref(t->goals);
	json_decref(t->metrics);
	free(t->error);
	free(t->scaled);
	json_decref(t->res);
	free(t->rmsg);
}

static json_t *trial_json(const struct trial *t, bool pareto)
{
	json_t *o = json_pack("{s:I, s:O, s:O?, s:b, s:O?, s:f, s:s}", "n", (json_int_t)t->n, "params", t->params,
			      "values", t->values, "goals_met", t->met, "goals", t->goals, "seconds", t->seconds,
			      "status", t->error ? "failed" : "ok");
	if (t->error)
		json_object_set_new(o, "error", json_string(t->error));
	if (t->cached_from >= 0)
		json_object_set_new(o, "cached_from", json_integer(t->cached_from));
	else if (!t->error)
		json_object_set_new(o, "model", json_sprintf("trials/%zu/model.onnx", t->n));
	json_object_set_new(o, "pareto", json_boolean(pareto));
	if (t->fallback)
		json_object_set_new(o, "fallback", json_true());
	if (t->metrics)
		json_object_set(o, "size_bytes", json_object_get(json_object_get(t->metrics, "size"), "quantized_bytes"));
	return o;
}

static json_t *eval_section(const struct qd_eval_plan *p, const json_t *values, const json_t *base,
			    const json_t *goals, bool met, const json_t *details);

struct sctx {
	struct wf *w;
	const struct qd_eval_plan *plan;
	const struct qd_eval_ctx *ec;
	const json_t *base;
	const size_t *order;
	size_t n_ord;
	const char *mhash, *model_path;
	long long float_bytes;
	struct trial *tr;        /* the trials so far; t is the last */
	size_t n_tr;
	bool canceled;
};

/* The best trial so far among tr[0..n) (goal-meeting first, then by priority), or -1. */
static long best_so_far(const struct trial *tr, size_t n, size_t n_ord)
{
	long b = -1;
	for (size_t j = 0; j < n; j++)
		if (tr[j].done && tr[j].values && tr[j].cached_from < 0 &&
		    (b < 0 || qd_rank_cmp(tr[j].scaled, tr[j].met, tr[b].scaled, tr[b].met, n_ord) < 0))
			b = (long)j;
	return b;
}

/* {trials_done, trials_planned, best, finished: false} for the trial hook. new. */
static json_t *search_progress(const struct sctx *c, size_t of)
{
	long b = best_so_far(c->tr, c->n_tr, c->n_ord);
	size_t done = 0;
	for (size_t j = 0; j < c->n_tr; j++)
		done += c->tr[j].done;
	json_t *best = json_null();
	if (b >= 0)
		best = json_pack("{s:I, s:O, s:O, s:b}", "trial", (json_int_t)c->tr[b].n, "params", c->tr[b].params,
				 "values", c->tr[b].values, "goals_met", c->tr[b].met);
	return json_pack("{s:I, s:I, s:o, s:b}", "trials_done", (json_int_t)done, "trials_planned",
			 (json_int_t)(of > done ? of : done), "best", best, "finished", 0);
}

/* The trial's record: what the trial hook commits and req->resume hands back. new. */
static json_t *trial_record(const struct sctx *c, const struct trial *t)
{
	json_t *r = json_pack("{s:I, s:s, s:O, s:O?, s:O?, s:b, s:O?, s:f, s:s, s:b}", "n", (json_int_t)t->n, "key",
			      t->key, "params", t->params, "values", t->values, "goals", t->goals, "goals_met", t->met,
			      "metrics", t->metrics, "seconds", t->seconds, "status", t->error ? "failed" : "ok",
			      "fallback", t->fallback);
	if (!r)
		return NULL;
	json_object_set_new(r, "cached_from", t->cached_from >= 0 ? json_integer(t->cached_from) : json_null());
	if (t->error)
		json_object_set_new(r, "error", json_string(t->error));
	if (t->cached_from < 0 && !t->error) {
		char *dir = qd_asprintf("%s/trials/%zu", c->w->req->out_dir, t->n);
		char *mp = qd_asprintf("%s/model.onnx", dir ? dir : "");
		char *dp = qd_asprintf("%s/model.onnx.data", dir ? dir : "");
		char hex[65];
		long long sz = mp ? file_size(mp) : -1, dsz = dp ? file_size(dp) : -1;
		json_object_set_new(r, "model", json_sprintf("trials/%zu/model.onnx", t->n));
		json_object_set_new(r, "model_size", json_integer(sz + (dsz > 0 ? dsz : 0)));
		if (mp && file_sha256(mp, hex, NULL) == 0)
			json_object_set_new(r, "model_sha256", json_string(hex));
		if (dsz >= 0 && file_sha256(dp, hex, NULL) == 0)
			json_object_set_new(r, "data_sha256", json_string(hex));
		free(dir);
		free(mp);
		free(dp);
	}
	return r;
}

/* Is the file's sha256 the recorded one (a NULL record: the file must not exist)? */
static bool file_intact(const char *path, const json_t *want)
{
	char hex[65];
	if (!want)
		return file_size(path) < 0;
	return file_sha256(path, hex, NULL) == 0 && !strcmp(hex, json_string_value(want) ?: "");
}

/* Take trial t from the interrupted attempt's record of it (req->resume), when it has
 * the same number and cache key and, for a trial with a model, that model is intact. */
static bool trial_resume(struct sctx *c, struct trial *t)
{
	const json_t *rec = NULL, *x;
	size_t i;
	json_array_foreach(c->w->req->resume, i, x)
		if ((size_t)json_integer_value(json_object_get(x, "n")) == t->n)
			rec = x;
	if (!rec)
		return false;
	if (strcmp(json_string_value(json_object_get(rec, "key")) ?: "", t->key)) {
		wf_log(c->w, QD_LOG_WARN, "trial %zu: the earlier attempt's trial %zu had other parameters; running it",
		       t->n, t->n);
		return false;
	}
	const char *status = json_string_value(json_object_get(rec, "status")) ?: "";
	json_int_t cached = json_is_integer(json_object_get(rec, "cached_from")) ?
			    json_integer_value(json_object_get(rec, "cached_from")) : -1;
	if (!strcmp(status, "ok") && cached < 0) {
		char *mp = qd_asprintf("%s/trials/%zu/model.onnx", c->w->req->out_dir, t->n);
		char *dp = qd_asprintf("%s/trials/%zu/model.onnx.data", c->w->req->out_dir, t->n);
		bool ok = mp && dp && file_intact(mp, json_object_get(rec, "model_sha256")) &&
			  file_intact(dp, json_object_get(rec, "data_sha256"));
		free(mp);
		free(dp);
		if (!ok) {
			wf_log(c->w, QD_LOG_WARN, "trial %zu: the model the earlier attempt saved under trials/%zu/ is "
			       "missing or changed; running the trial again", t->n, t->n);
			return false;
		}
	}
	json_decref(t->values);
	json_decref(t->goals);
	json_decref(t->metrics);
	free(t->error);
	t->values = json_incref(json_object_get(rec, "values"));
	t->goals = json_incref(json_object_get(rec, "goals"));
	t->metrics = json_incref(json_object_get(rec, "metrics"));
	t->error = strcmp(status, "ok") ? strdup(json_string_value(json_object_get(rec, "error")) ?: "failed") : NULL;
	t->met = json_is_true(json_object_get(rec, "goals_met"));
	t->seconds = json_number_value(json_object_get(rec, "seconds"));
	t->cached_from = (long)cached;
	c->w->credit += t->seconds;
	return true;
}

/* The evaluation plan of every trial: the evaluator of the (first) flow's last pass, else
 * the workflow's (Olive evaluates each chain's final model with its pass's evaluator). */
static int trial_plan(const json_t *workflow, struct qd_eval_plan **plan, struct qd_err *err)
{
	json_t *order = qd_workflow_pass_order(workflow);
	const char *last = json_string_value(json_array_get(order, json_array_size(order) - 1));
	int rc = qd_eval_plan_parse(workflow, last, qd_workflow_eval_flags(workflow), plan, NULL, NULL, err);
	json_decref(order);
	return rc;
}

/* Run the chain of one trial into dir and evaluate its model: *out (new) is {values,
 * quantized_nodes, passes, quantized_bytes, accuracy, lowest_snr_activations}. */
static int trial_body(struct wf *w, const struct qd_eval_plan *plan, const struct qd_eval_ctx *ec,
		      const char *model_path, const json_t *names, const json_t *cfgs, const char *dir, json_t **out,
		      struct qd_err *err)
{
	char *mp = qd_asprintf("%s/model.onnx", dir);
	json_t *po = json_array(), *counts = json_object(), *values = NULL, *detail = NULL;
	long long qb = 0;
	*out = NULL;
	int rc = mp && po && counts ? wf_run_chain(w, model_path, names, cfgs, dir, po, counts, &qb, err)
				    : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	if (rc == 0)
		rc = qd_eval_run(plan, ec, mp, &values, &detail, err);
	if (rc == 0 && !(*out = json_pack("{s:O, s:O, s:O, s:I, s:O?, s:O?, s:O?}", "values", values, "quantized_nodes",
					  counts, "passes", po, "quantized_bytes", (json_int_t)qb, "accuracy",
					  json_object_get(detail, "accuracy"), "lowest_snr_activations",
					  json_object_get(detail, "lowest_snr_activations"), "objectives",
					  json_object_get(detail, "objectives"))))
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	free(mp);
	json_decref(po);
	json_decref(counts);
	json_decref(values);
	json_decref(detail);
	return rc;
}

/* t's values, goals and metrics from trial_body's outcome (rc, res, the error message). */
static void trial_absorb(struct sctx *c, struct trial *t, int rc, const json_t *res, const char *emsg)
{
	if (rc == -QD_ECANCELED || wf_canceled(c->w))
		c->canceled = true;
	if (rc < 0) {
		t->error = strdup(emsg && *emsg ? emsg : qd_err_msg(rc));
		return;
	}
	const json_t *counts = json_object_get(res, "quantized_nodes");
	json_int_t qb = json_integer_value(json_object_get(res, "quantized_bytes")), total = 0;
	const char *k; json_t *v;
	json_object_foreach((json_t *)counts, k, v)
		total += json_integer_value(v);
	t->values = json_incref(json_object_get(res, "values"));
	t->met = qd_eval_goals_met(c->plan, t->values, c->base, &t->goals);
	t->metrics = json_pack("{s:{s:I, s:I, s:f}, s:O, s:I, s:O, s:O, s:O}", "size", "float_bytes",
			       (json_int_t)c->float_bytes, "quantized_bytes", qb, "ratio", c->float_bytes > 0 ?
			       (double)qb / (double)c->float_bytes : 0.0, "quantized_nodes", counts,
			       "quantized_nodes_total", total, "accuracy", json_object_get(res, "accuracy") ?: json_null(),
			       "values", t->values, "passes", json_object_get(res, "passes"));
	json_t *low = json_object_get(res, "lowest_snr_activations");
	if (json_is_array(low) && t->metrics)
		json_object_set(t->metrics, "lowest_snr_activations", low);
	if (t->metrics)   /* the single run's "evaluation" section, for this trial's model */
		json_object_set_new(t->metrics, "evaluation", eval_section(c->plan, t->values, c->base, t->goals, t->met,
									     json_object_get(res, "objectives")));
}

/* Before trial t (names, cfgs, params set) runs: its cache key and progress line; it is
 * taken from the interrupted attempt's record or from an identical committed trial when
 * possible. True when it has to run. */
static bool trial_begin(struct sctx *c, struct trial *t, size_t of)
{
	t->cached_from = -1;
	t->scaled = calloc(c->n_ord + 1, sizeof *t->scaled);
	/* cache key: input model hash + pass chain + parameters */
	char *chain = json_dumps(t->cfgs, JSON_SORT_KEYS | JSON_COMPACT);
	char *names_s = json_dumps(t->names, JSON_COMPACT);
	char *ks = qd_asprintf("%s|%s|%s", c->mhash, names_s ? names_s : "", chain ? chain : "");
	qd_sha256_hex(ks ? ks : "", ks ? strlen(ks) : 0, t->key);
	free(chain);
	free(names_s);
	free(ks);
	char msg[200];
	snprintf(msg, sizeof msg, "trial %zu/%zu", t->n, of);
	wf_progress(c->w, 0.05 + 0.85 * (double)(t->n - 1) / (double)(of ? of : 1), msg);
	t->resumed = trial_resume(c, t);
	for (size_t j = 0; !t->resumed && j < c->n_tr; j++)
		if (&c->tr[j] != t && c->tr[j].done && !strcmp(c->tr[j].key, t->key) && c->tr[j].cached_from < 0) {
			t->cached_from = (long)c->tr[j].n;
			t->values = json_incref(c->tr[j].values);
			t->goals = json_incref(c->tr[j].goals);
			t->metrics = json_incref(c->tr[j].metrics);
			t->error = c->tr[j].error ? strdup(c->tr[j].error) : NULL;
			t->met = c->tr[j].met;
			t->seconds = 0;
			break;
		}
	return !t->resumed && t->cached_from < 0;
}

/* Commit trial t: scaled values, the log line, the trial hook. */
static void trial_end(struct sctx *c, struct trial *t, size_t of)
{
	t->done = true;
	if (t->values && t->scaled)
		qd_rank_scale(c->plan->obj, c->order, c->n_ord, t->values, t->scaled);
	char vtxt[256] = "";
	size_t off = 0;
	for (size_t k = 0; t->values && k < c->n_ord && off < sizeof vtxt - 1; k++) {
		const json_t *v = json_object_get(t->values, c->plan->obj[c->order[k]].key);
		off += (size_t)snprintf(vtxt + off, sizeof vtxt - off, "%s%s=%.6g", k ? " " : "",
					c->plan->obj[c->order[k]].key, json_number_value(v));
	}
	char *ptxt = json_dumps(t->params, JSON_COMPACT | JSON_SORT_KEYS);
	if (t->error)
		wf_log(c->w, QD_LOG_WARN, "trial %zu/%zu %s failed (%.1f s): %s", t->n, of,
		       ptxt ? ptxt : "", t->seconds, t->error);
	else
		wf_log(c->w, QD_LOG_INFO, "trial %zu/%zu %s: %s, goals %s%s (%.1f s)", t->n, of,
		       ptxt ? ptxt : "", vtxt, t->met ? "met" : "missed",
		       t->resumed ? " (resumed: finished by an earlier attempt)" : t->cached_from >= 0 ? " (cached)" : "",
		       t->seconds);
	free(ptxt);
	if (!t->resumed && c->w->hooks && c->w->hooks->trial) {
		json_t *rec = trial_record(c, t), *prog = search_progress(c, of);
		if (rec && prog)
			c->w->hooks->trial(c->w->hooks->ud, rec, prog);
		json_decref(rec);
		json_decref(prog);
	}
}

/* Run trial t's chain and evaluation in this process. */
static void trial_local(struct sctx *c, struct trial *t)
{
	double ts = qd_now_mono();
	char *dir = qd_asprintf("%s/trials/%zu", c->w->req->out_dir, t->n);
	json_t *res = NULL;
	struct qd_err te = { 0 };
	int rc = dir ? trial_body(c->w, c->plan, c->ec, c->model_path, t->names, t->cfgs, dir, &res, &te)
		     : qd_err_set(&te, QD_ENOMEM, NULL, "out of memory");
	trial_absorb(c, t, rc, res, te.msg);
	json_decref(res);
	free(dir);
	t->seconds = qd_now_mono() - ts;
}

/* ---- parallel trials: each in a process of its own (hooks->run_trial), one thread
 * waiting for each; the search loop samples and commits in trial order ---- */

#define QD_WF_TPE_STARTUP 4   /* tpe's seeded random trials: proposed without results, so they may run at once */

struct wf_slot {
	struct wf_pool *pool;
	pthread_t th;
	bool busy, finished;
	size_t ti;               /* its trial's index */
	json_t *req, *res;
	int rc;
	struct qd_err err;
	double seconds;
	volatile int stop;
};

struct wf_pool {
	const struct qd_workflow_hooks *hooks;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct wf_slot *slot;
	size_t n;                /* 0: trials run in this process */
};

static void *slot_main(void *arg)
{
	struct wf_slot *s = arg;
	double ts = qd_now_mono();
	json_t *res = NULL;
	struct qd_err e = { 0 };
	int rc = s->pool->hooks->run_trial(s->pool->hooks->ud, s->req, &s->stop, &res, &e);
	pthread_mutex_lock(&s->pool->mu);
	s->rc = rc;
	s->res = res;
	s->err = e;
	s->seconds = qd_now_mono() - ts;
	s->finished = true;
	pthread_cond_broadcast(&s->pool->cv);
	pthread_mutex_unlock(&s->pool->mu);
	return NULL;
}

/* Start trial tr[ti] (t) on a free slot; non-zero when none is free or the thread cannot
 * start (the caller runs it here then). */
static int pool_start(struct wf_pool *p, size_t ti, const struct trial *t, const char *out_dir)
{
	struct wf_slot *s = NULL;
	for (size_t i = 0; i < p->n && !s; i++)
		if (!p->slot[i].busy)
			s = &p->slot[i];
	if (!s)
		return -1;
	char *dir = qd_asprintf("%s/trials/%zu", out_dir, t->n);
	json_t *req = dir ? json_pack("{s:I, s:O, s:O, s:s}", "n", (json_int_t)t->n, "names", t->names, "cfgs", t->cfgs,
				      "dir", dir) : NULL;
	free(dir);
	if (!req)
		return -1;
	memset(s, 0, sizeof *s);
	s->pool = p;
	s->ti = ti;
	s->req = req;
	s->busy = true;
	if (pthread_create(&s->th, NULL, slot_main, s)) {
		json_decref(req);
		s->busy = false;
		return -1;
	}
	return 0;
}

/* Finished slots: their outcome goes to their trial (TRIAL_READY), the slot is free. */
static void pool_collect(struct wf_pool *p, struct trial *tr)
{
	for (size_t i = 0; i < p->n; i++) {
		struct wf_slot *s = &p->slot[i];
		pthread_mutex_lock(&p->mu);
		bool fin = s->busy && s->finished;
		pthread_mutex_unlock(&p->mu);
		if (!fin)
			continue;
		pthread_join(s->th, NULL);
		struct trial *t = &tr[s->ti];
		t->rc = s->rc;
		t->res = s->res;
		t->rmsg = s->rc < 0 ? strdup(s->err.msg[0] ? s->err.msg : qd_err_msg(s->rc)) : NULL;
		t->seconds = s->seconds;
		t->state = TRIAL_READY;
		if (!t->res && !t->rmsg)
			t->rmsg = strdup("the trial's process reported no result");
		json_decref(s->req);
		memset(s, 0, sizeof *s);
	}
}

/* Until a running trial finishes, at most 200 ms (the caller polls the cancel flag). */
static void pool_wait(struct wf_pool *p)
{
	if (!p->n)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 200 * 1000 * 1000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->mu);
	bool any = false;
	for (size_t i = 0; i < p->n; i++)
		any = any || (p->slot[i].busy && p->slot[i].finished);
	if (!any)
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	pthread_mutex_unlock(&p->mu);
}

/* Stop every running trial (its process gets SIGTERM) and wait for it; the outcomes
 * become their trials' (which the caller drops). */
static void pool_stop(struct wf_pool *p, struct trial *tr)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->slot[i].busy)
			p->slot[i].stop = 1;
	for (size_t i = 0; i < p->n; i++)
		if (p->slot[i].busy) {
			pthread_mutex_lock(&p->mu);
			while (!p->slot[i].finished)
				pthread_cond_wait(&p->cv, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
	pool_collect(p, tr);
}

/* The fallback's starting trial: keeping nodes in float can only raise accuracy and
 * fidelity (and costs size and time), so it starts from the best-ranked trial that
 * already meets every other goal (size_on_disk, latency, throughput); when none does,
 * from the best-ranked trial (src). */
static size_t fallback_source(const struct trial *tr, size_t n_tr, size_t src, const struct qd_eval_plan *plan,
			      size_t n_ord)
{
	long best = -1;
	for (size_t j = 0; j < n_tr; j++) {
		const struct trial *t = &tr[j];
		if (!t->values || t->cached_from >= 0 || !t->metrics)
			continue;
		bool others_met = true;
		for (size_t k = 0; k < plan->n_obj; k++) {
			const struct qd_objective *o = &plan->obj[k];
			if (!o->goal_type || !strcmp(o->type, "accuracy") || !strcmp(o->type, "fidelity"))
				continue;
			const json_t *g = json_object_get(t->goals, o->key);
			others_met = others_met && json_is_true(json_object_get(g, "met"));
		}
		if (others_met && (best < 0 || qd_rank_cmp(t->scaled, t->met, tr[best].scaled, tr[best].met, n_ord) < 0))
			best = (long)j;
	}
	return best >= 0 ? (size_t)best : src;
}

/* noise-to-signal ratio of a tensor from its SNR (dB); 0 for a tensor not compared
 * (a graph input, a constant) */
static double tensor_nsr(const json_t *snr, const char *name)
{
	const json_t *v = name ? json_object_get(snr, name) : NULL;
	return json_is_number(v) ? pow(10.0, -json_number_value(v) / 10.0) : 0.0;
}

static int cmp_cand(const void *a, const void *b)
{
	double x = json_number_value(json_object_get(*(json_t *const *)a, "snr_lost_db"));
	double y = json_number_value(json_object_get(*(json_t *const *)b, "snr_lost_db"));
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Whether float node n is quantized in model q: replaced there (its name is gone: the
 * QOperator / dynamic forms), or kept with an input from a DequantizeLinear (QDQ).
 * q_nodes: node name of q -> [op type, has an input from a DequantizeLinear]. */
static bool node_quantized(const Onnx__NodeProto *n, const json_t *q_nodes)
{
	const json_t *q = json_object_get(q_nodes, n->name);
	const char *qt = json_string_value(json_array_get(q, 0));
	return !qt || strcmp(qt, n->op_type) || json_is_true(json_array_get(q, 1));
}

/* The quantized nodes of trial t ranked by the error each adds (INC's ranking by
 * contribution): the activations of t's model are compared with the float model's on
 * the held-out data (SNR through the executor's hook), and a node of a quantized op type
 * scores the SNR it loses: its output's noise-to-signal ratio over the largest of its
 * inputs' (in dB), i.e. the error it adds rather than the error it inherits. New array
 * of {node, op_type, tensor, snr_db, nsr_added, snr_lost_db}, most SNR lost first; NULL
 * when there are no activation figures (no held-out data). */
static json_t *fallback_candidates(struct wf *w, const struct trial *t, const struct qd_eval_plan *plan,
				   const struct qd_eval_ctx *ec, const char *model_path, const json_t *exclude)
{
	char *mp = qd_asprintf("%s/trials/%zu/model.onnx", w->req->out_dir, t->n);
	json_t *values = NULL, *detail = NULL, *out = NULL, *q_nodes = json_object(), *q_prod = json_object();
	json_t *consts = json_object();   /* graph inputs, initializers, Constant outputs (float model) */
	struct qd_model *fm = NULL, *qm = NULL;
	struct qd_err e = { 0 };
	if (!mp || qd_eval_run(plan, ec, mp, &values, &detail, &e) < 0 ||
	    qd_model_load_file(model_path, NULL, &fm, &e) < 0 || qd_model_load_file(mp, NULL, &qm, &e) < 0) {
		wf_log(w, QD_LOG_WARN, "fallback: cannot rank the nodes of trial %zu: %s", t->n, e.msg);
		goto out;
	}
	const json_t *snr = json_object_get(detail, "activation_snr");
	const json_t *qtypes = json_object_get(t->metrics, "quantized_nodes");
	if (!json_object_size(snr))
		goto out;
	const Onnx__GraphProto *qg = qm->proto->graph;
	for (size_t i = 0; i < qg->n_node; i++)
		for (size_t k = 0; qg->node[i]->op_type && !strcmp(qg->node[i]->op_type, "DequantizeLinear") &&
				   k < qg->node[i]->n_output; k++)
			json_object_set_new(q_prod, qg->node[i]->output[k], json_true());
	for (size_t i = 0; i < qg->n_node; i++) {
		const Onnx__NodeProto *n = qg->node[i];
		bool dq = false;
		for (size_t k = 0; k < n->n_input; k++)
			dq = dq || json_object_get(q_prod, n->input[k]);
		if (n->name && n->op_type)
			json_object_set_new(q_nodes, n->name, json_pack("[s, b]", n->op_type, dq));
	}
	out = json_array();
	const Onnx__GraphProto *g = fm->proto->graph;
	for (size_t i = 0; i < g->n_initializer; i++)
		json_object_set_new(consts, g->initializer[i]->name, json_true());
	for (size_t i = 0; i < g->n_input; i++)   /* graph inputs: the data itself */
		json_object_set_new(consts, g->input[i]->name, json_true());
	for (size_t i = 0; i < g->n_node; i++)   /* Constant nodes and what only they feed count as constants */
		if (g->node[i]->op_type && !strcmp(g->node[i]->op_type, "Constant") && g->node[i]->n_output)
			json_object_set_new(consts, g->node[i]->output[0], json_true());
	for (size_t i = 0; out && i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!n->name || !*n->name || !n->op_type || !json_object_get(qtypes, n->op_type) ||
		    qd_json_list_has(exclude, n->name) || !node_quantized(n, q_nodes))
			continue;
		double in = 0, o = 0;
		const char *ot = NULL;
		bool known = true;   /* every activation input compared (else: removed in t's model) */
		for (size_t k = 0; k < n->n_input; k++) {
			in = QD_MAX(in, tensor_nsr(snr, n->input[k]));
			known = known && (!*n->input[k] || json_object_get(snr, n->input[k]) ||
					  json_object_get(consts, n->input[k]));
		}
		if (!known)
			continue;
		for (size_t k = 0; k < n->n_output; k++)
			if (tensor_nsr(snr, n->output[k]) >= o && json_object_get(snr, n->output[k])) {
				o = tensor_nsr(snr, n->output[k]);
				ot = n->output[k];
			}
		if (!ot || o - in <= 0)
			continue;
		/* the SNR the node loses, in dB (a node whose inputs are exact loses all of it) */
		double lost = in > 0 ? 10.0 * log10(o / in) : 200.0;
		json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:O, s:f, s:f}", "node", n->name, "op_type",
						     n->op_type, "tensor", ot, "snr_db", json_object_get(snr, ot), "nsr_added",
						     o - in, "snr_lost_db", lost));
	}
	size_t nc = json_array_size(out);
	json_t **v = nc ? malloc(nc * sizeof *v) : NULL;
	if (v) {
		for (size_t i = 0; i < nc; i++)
			v[i] = json_incref(json_array_get(out, i));
		qsort(v, nc, sizeof *v, cmp_cand);
		json_array_clear(out);
		for (size_t i = 0; i < nc; i++)
			json_array_append_new(out, v[i]);
		free(v);
	}
out:
	free(mp);
	json_decref(values);
	json_decref(detail);
	json_decref(q_nodes);
	json_decref(q_prod);
	json_decref(consts);
	qd_model_free(fm);
	qd_model_free(qm);
	return out;
}

/* The change of every objective from one trial's values (prev, goal status prev_goals)
 * to the next's; *helped when an objective whose goal prev misses got better. new. */
static json_t *fallback_bought(const struct qd_eval_plan *plan, const json_t *now, const json_t *prev,
			       const json_t *prev_goals, bool *helped)
{
	json_t *bought = json_object();
	*helped = false;
	for (size_t q = 0; now && q < plan->n_obj; q++) {
		const struct qd_objective *o = &plan->obj[q];
		json_t *a = json_object_get(now, o->key), *b = json_object_get(prev, o->key);
		if (!json_is_number(a) || !json_is_number(b))
			continue;
		double d = json_number_value(a) - json_number_value(b);
		json_object_set_new(bought, o->key, json_real(d));
		bool missed = o->goal_type && !json_is_true(json_object_get(json_object_get(prev_goals, o->key), "met"));
		if (missed && (o->higher_is_better ? d > 0 : d < 0))
			*helped = true;
	}
	return bought;
}

/* ---- the accuracy-driven fallback (INC's basic strategy) ----
 * DESIGN
 * - Source: the best-ranked trial that meets every goal other than accuracy / fidelity
 *   ones (fallback_source); its last pass's nodes_to_exclude grows.
 * - Candidates: its quantized nodes ranked by the SNR each loses (fallback_candidates).
 * - ranking "measured" (default): the top confirm_top_k candidates are confirmed by
 *   excluding each alone from the source and measuring the goal metric (the
 *   highest-priority accuracy / fidelity goal the source misses); a candidate whose
 *   exclusion alone meets every goal ends the fallback. The others are ordered by the
 *   gain they measured (ties: SNR order); those that gained nothing, or broke a goal the
 *   source met (size), are dropped. Then they are kept in float cumulatively in that
 *   order (the first one's confirm trial is the first step), an exclusion that brought no
 *   missed goal closer going back, until the goals are met or the budget is used.
 * - ranking "snr": the SNR order alone, one more exclusion at a time (same undo rule).
 * - ranking "greedy": forward selection; after each node kept in float the remaining
 *   candidates are measured again with it float (fb_greedy), scored per byte added.
 * - Budget: fallback.max_trials trials (confirm + accumulate), max_time, cancel. The
 *   confirm trials are independent and run on the parallel-trial pool when there is one;
 *   they are committed in order and the first goal-meeting one stops the rest, so the
 *   trials do not depend on the worker count. */

struct fbx {
	struct wf *w;
	const struct qd_search_strategy *ss;
	double t0;
	struct trial **trp;
	size_t *n_trp;
	struct wf_pool *pool;
	const struct qd_eval_plan *plan;
	const struct qd_eval_ctx *ec;
	const json_t *base;
	const size_t *order;
	size_t n_ord;
	const char *mhash, *model_path;
	long long float_bytes;
	bool *canceled;
	size_t src;              /* the source trial's index */
	const char *lp;          /* the pass whose nodes_to_exclude grows */
	json_t *cfgs;            /* the source trial's configurations */
	size_t used;             /* fallback trials run */
};

static struct sctx fb_sctx(const struct fbx *f)
{
	struct sctx sc = { .w = f->w, .plan = f->plan, .ec = f->ec, .base = f->base, .order = f->order,
			   .n_ord = f->n_ord, .mhash = f->mhash, .model_path = f->model_path,
			   .float_bytes = f->float_bytes, .tr = *f->trp, .n_tr = *f->n_trp };
	return sc;
}

static bool fb_budget_left(const struct fbx *f)
{
	return f->used < (size_t)f->ss->fallback_max_trials && !*f->canceled && !wf_canceled(f->w) &&
	       !wf_over_time(f->w, f->ss, f->t0);
}

/* Run one fallback trial per exclusion list exs[0..n) (the source's configuration with
 * nodes_to_exclude = exs[i]), up to the pool's width at once, committed in order; the
 * first that meets every goal (or a cancel) stops the rest. Returns the count committed:
 * trials *first .. *first + count - 1 of *f->trp. */
static size_t fb_batch(struct fbx *f, json_t *const *exs, size_t n, size_t *first)
{
	struct wf *w = f->w;
	size_t n_par = f->pool->n ? f->pool->n : 1, made = 0, next = *f->n_trp;
	bool drop = false;
	*first = next;
	for (;;) {
		while (made < n && *f->n_trp - next < n_par) {
			if (!fb_budget_left(f)) {
				n = made;
				break;
			}
			struct trial *nt = realloc(*f->trp, (*f->n_trp + 1) * sizeof *nt);
			if (!nt) {
				n = made;
				break;
			}
			*f->trp = nt;
			struct trial *t = &nt[*f->n_trp];
			memset(t, 0, sizeof *t);
			t->n = ++*f->n_trp;
			t->fallback = true;
			t->cached_from = -1;
			t->names = json_incref(nt[f->src].names);
			t->cfgs = json_deep_copy(f->cfgs);
			json_object_set_new(json_object_get(t->cfgs, f->lp), "nodes_to_exclude", json_deep_copy(exs[made]));
			t->params = json_deep_copy(nt[f->src].params);
			char *k = qd_asprintf("%s.nodes_to_exclude", f->lp);
			if (k && t->params)
				json_object_set_new(t->params, k, json_deep_copy(exs[made]));
			free(k);
			made++;
			f->used++;
			struct sctx sc = fb_sctx(f);
			t->state = TRIAL_READY;
			if (!trial_begin(&sc, t, *f->n_trp))
				continue;
			if (f->pool->n && pool_start(f->pool, *f->n_trp - 1, t, w->req->out_dir) == 0) {
				t->state = TRIAL_RUNNING;
				continue;
			}
			trial_local(&sc, t);
			*f->canceled = *f->canceled || sc.canceled;
		}
		pool_collect(f->pool, *f->trp);
		while (next < *f->n_trp && (*f->trp)[next].state == TRIAL_READY) {
			struct trial *t = &(*f->trp)[next++];
			struct sctx sc = fb_sctx(f);
			if (t->res || t->rmsg)
				trial_absorb(&sc, t, t->rc, t->res, t->rmsg);
			trial_end(&sc, t, *f->n_trp);
			*f->canceled = *f->canceled || sc.canceled;
			if (t->met || *f->canceled) {
				drop = true;
				break;
			}
		}
		if (drop || (made >= n && next == *f->n_trp))
			break;
		pool_wait(f->pool);
		if (wf_canceled(w)) {
			*f->canceled = true;
			drop = true;
			break;
		}
	}
	if (drop && next < *f->n_trp) {
		/* trials started after the stopping one are not part of the search */
		pool_stop(f->pool, *f->trp);
		for (size_t j = next; j < *f->n_trp; j++)
			trial_free(&(*f->trp)[j]);
		f->used -= *f->n_trp - next;
		*f->n_trp = next;
	}
	return next - *first;
}

/* Every goal other than accuracy / fidelity ones that the source meets is met by t
 * (keeping nodes float costs size and time). */
static bool fb_feasible(const struct fbx *f, const struct trial *t)
{
	const struct trial *s = &(*f->trp)[f->src];
	if (!t->values)
		return false;
	for (size_t k = 0; k < f->plan->n_obj; k++) {
		const struct qd_objective *o = &f->plan->obj[k];
		if (!o->goal_type || !strcmp(o->type, "accuracy") || !strcmp(o->type, "fidelity"))
			continue;
		bool was = json_is_true(json_object_get(json_object_get(s->goals, o->key), "met"));
		bool is = json_is_true(json_object_get(json_object_get(t->goals, o->key), "met"));
		if (was && !is)
			return false;
	}
	return true;
}

/* The goal metric the measured ranking uses: the highest-priority accuracy / fidelity
 * objective whose goal the source misses (else the first missed goal of any type). */
static const struct qd_objective *fb_goal_metric(const struct fbx *f)
{
	const struct trial *s = &(*f->trp)[f->src];
	const struct qd_objective *any = NULL;
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t r = 0; r < f->plan->n_obj; r++) {
			const struct qd_objective *o = &f->plan->obj[r < f->n_ord ? f->order[r] : r];
			if (r >= f->n_ord && pass == 0)
				continue;   /* unranked objectives after the ranked ones */
			if (!o->goal_type || json_is_true(json_object_get(json_object_get(s->goals, o->key), "met")))
				continue;
			if (!strcmp(o->type, "accuracy") || !strcmp(o->type, "fidelity"))
				return o;
			any = any ? any : o;
		}
	return any;
}

/* what the goal metric gained from before to after (higher = better), or NAN */
static double fb_gain(const struct qd_objective *o, const json_t *after, const json_t *before)
{
	const json_t *a = o ? json_object_get(after, o->key) : NULL, *b = o ? json_object_get(before, o->key) : NULL;
	if (!json_is_number(a) || !json_is_number(b))
		return NAN;
	double d = json_number_value(a) - json_number_value(b);
	return o->higher_is_better ? d : -d;
}

/* one step of the fallback: a node kept in float (or tried and put back), why, and what
 * it bought (the objectives before and after, and their change). new. */
static json_t *fb_step(const struct trial *t, const json_t *cand, const json_t *before, const json_t *before_goals,
		       const struct qd_eval_plan *plan, bool feasible, bool *keep)
{
	bool helped;
	json_t *bought = fallback_bought(plan, t->values, before, before_goals, &helped);
	*keep = t->met || (helped && feasible);
	json_t *st = json_pack("{s:I, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:b, s:o, s:b}", "trial",
			       (json_int_t)t->n, "node", json_object_get(cand, "node"), "op_type",
			       json_object_get(cand, "op_type"), "tensor", json_object_get(cand, "tensor"), "snr_db",
			       json_object_get(cand, "snr_db"), "snr_lost_db", json_object_get(cand, "snr_lost_db"),
			       "snr_rank", json_object_get(cand, "snr_rank"), "before", before, "after", t->values,
			       "goals_met", t->met, "bought", bought, "kept", *keep);
	if (st && json_object_get(cand, "measured_gain"))
		json_object_set(st, "measured_gain", json_object_get(cand, "measured_gain"));
	if (st && !feasible && t->values)
		json_object_set_new(st, "why_not_kept", json_string("it breaks a goal the source trial meets"));
	else if (st && !*keep)
		json_object_set_new(st, "why_not_kept", json_string(t->values ? "it brought no missed goal closer"
									    : "the trial failed"));
	if (st)   /* the values were the same under "values" before */
		json_object_set(st, "values", t->values ? t->values : json_null());
	return st;
}

static int cmp_gain(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	double gx = json_number_value(json_object_get(x, "measured_gain"));
	double gy = json_number_value(json_object_get(y, "measured_gain"));
	if (gx != gy)
		return gx > gy ? -1 : 1;
	json_int_t rx = json_integer_value(json_object_get(x, "snr_rank"));
	json_int_t ry = json_integer_value(json_object_get(y, "snr_rank"));
	return rx < ry ? -1 : rx > ry;
}

/* ranking "measured": confirm the top candidates by excluding each alone, then keep them
 * in float in the order of what they bought. Fills res (confirm, order, steps) and the
 * nodes kept (added); true when the goals are met. */
static bool fb_measured(struct fbx *f, const json_t *cands, json_t *ex, json_t *added, json_t *steps, json_t *res)
{
	const struct qd_objective *gm = fb_goal_metric(f);
	size_t nc = json_array_size(cands), kw = QD_MAX((size_t)f->ss->fallback_top_k, 1), done = 0;
	json_t **exs = calloc(kw + 1, sizeof *exs), *confirm = json_array(), *ranked = json_array();
	bool met = false;
	size_t first = 0;
	if (!exs || !confirm || !ranked)
		goto out;
	/* confirm_top_k candidates at a time, the next ones only while none has gained */
	while (!met && done < nc && !json_array_size(ranked) && fb_budget_left(f)) {
		size_t k = QD_MIN(nc - done, kw), got;
		for (size_t i = 0; i < k; i++) {
			json_decref(exs[i]);
			exs[i] = json_deep_copy(ex);
			json_array_append(exs[i], json_object_get(json_array_get(cands, done + i), "node"));
		}
		got = fb_batch(f, exs, k, &first);
		const struct trial *s = &(*f->trp)[f->src];
		for (size_t i = 0; i < got; i++) {
			const struct trial *t = &(*f->trp)[first + i];
			json_t *c = json_deep_copy(json_array_get(cands, done + i));
			bool feasible = fb_feasible(f, t);
			double g = t->values ? fb_gain(gm, t->values, s->values) : NAN;
			bool helped;
			json_object_set_new(c, "trial", json_integer((json_int_t)t->n));
			json_object_set(c, "values", t->values ? t->values : json_null());
			json_object_set_new(c, "goals_met", json_boolean(t->met));
			json_object_set_new(c, "bought", fallback_bought(f->plan, t->values, s->values, s->goals, &helped));
			json_object_set_new(c, "measured_gain", isnan(g) ? json_null() : json_real(g));
			if (!t->values)
				json_object_set_new(c, "dropped", json_string("the trial failed"));
			else if (!feasible)
				json_object_set_new(c, "dropped", json_string("excluding it alone breaks a goal the source "
									      "trial meets"));
			else if (!(g > 0) && !t->met)
				json_object_set_new(c, "dropped", json_string("excluding it alone did not improve the goal "
									      "metric"));
			else
				json_array_append(ranked, c);
			json_array_append_new(confirm, c);
			if (t->met) {   /* the stopping trial: one node in float meets every goal */
				bool keep;
				json_array_append(ex, json_object_get(c, "node"));
				json_array_append(added, json_object_get(c, "node"));
				json_array_append_new(steps, fb_step(t, c, s->values, s->goals, f->plan, feasible, &keep));
				met = true;
			}
		}
		done += got;
		if (got < k)
			break;   /* budget, time or cancel */
	}
	wf_log(f->w, QD_LOG_INFO, "fallback: %zu of %zu candidates confirmed by excluding each alone (goal metric %s), "
	       "%zu gained%s", done, nc, gm ? gm->key : "none", json_array_size(ranked),
	       met ? ": one of them meets every goal" : "");
	if (met)
		goto out;
	const struct trial *s = &(*f->trp)[f->src];
	size_t nr = json_array_size(ranked);
	json_t **v = nr ? malloc(nr * sizeof *v) : NULL;
	for (size_t i = 0; v && i < nr; i++)
		v[i] = json_array_get(ranked, i);
	if (v)
		qsort(v, nr, sizeof *v, cmp_gain);
	json_t *order = json_array();
	for (size_t i = 0; v && i < nr; i++)
		json_array_append_new(order, json_pack("{s:O, s:O}", "node", json_object_get(v[i], "node"),
						       "measured_gain", json_object_get(v[i], "measured_gain")));
	json_object_set_new(res, "order", order);
	/* accumulate: the first node's step is its confirm trial */
	const json_t *prev = s->values, *prev_goals = s->goals;
	for (size_t i = 0; v && i < nr && !met; i++) {
		const struct trial *t;
		json_t *tryex = json_deep_copy(ex);
		json_array_append(tryex, json_object_get(v[i], "node"));
		if (i == 0) {
			t = &(*f->trp)[(size_t)json_integer_value(json_object_get(v[i], "trial")) - 1];
		} else {
			if (!fb_budget_left(f) || fb_batch(f, &tryex, 1, &first) != 1) {
				json_decref(tryex);
				break;
			}
			t = &(*f->trp)[first];
		}
		bool keep, feasible = fb_feasible(f, t);
		json_array_append_new(steps, fb_step(t, v[i], prev, prev_goals, f->plan, feasible, &keep));
		if (keep) {
			json_array_clear(ex);
			json_array_extend(ex, tryex);
			json_array_append(added, json_object_get(v[i], "node"));
			prev = t->values;
			prev_goals = t->goals;
		}
		met = t->met;
		json_decref(tryex);
	}
	free(v);
out:
	json_object_set_new(res, "goal_metric", gm ? json_string(gm->key) : json_null());
	json_object_set_new(res, "confirm", confirm);
	json_decref(ranked);
	for (size_t i = 0; exs && i < kw; i++)
		json_decref(exs[i]);
	free(exs);
	return met;
}

/* ranking "snr": one more node of the SNR order at a time. */
static bool fb_snr(struct fbx *f, const json_t *cands, json_t *ex, json_t *added, json_t *steps)
{
	const struct trial *s = &(*f->trp)[f->src];
	const json_t *prev = s->values, *prev_goals = s->goals;
	bool met = false;
	size_t i; json_t *c;
	json_array_foreach(cands, i, c) {
		size_t first;
		json_t *tryex = json_deep_copy(ex);
		json_array_append(tryex, json_object_get(c, "node"));
		if (!fb_budget_left(f) || fb_batch(f, &tryex, 1, &first) != 1) {
			json_decref(tryex);
			break;
		}
		const struct trial *t = &(*f->trp)[first];
		bool keep, feasible = fb_feasible(f, t);
		json_array_append_new(steps, fb_step(t, c, prev, prev_goals, f->plan, feasible, &keep));
		if (keep) {
			json_array_clear(ex);
			json_array_extend(ex, tryex);
			json_array_append(added, json_object_get(c, "node"));
			prev = t->values;
			prev_goals = t->goals;
		}
		json_decref(tryex);
		if (t->met) {
			met = true;
			break;
		}
	}
	return met;
}

/* the trial's size objective value, or NAN */
static double fb_bytes(const struct qd_objective *sz, const struct trial *t)
{
	const json_t *v = sz && t->values ? json_object_get(t->values, sz->key) : NULL;
	return json_is_number(v) ? json_number_value(v) : NAN;
}

/* ranking "greedy": forward selection with re-measurement. Round 1 excludes each of the
 * first confirm_top_k SNR candidates alone; the one with the best score is kept in float,
 * those that gained nothing alone (or failed, or broke a goal the source met) are dropped
 * and the others ordered by their score alone. Each next round re-measures the first
 * candidates of that order with the nodes kept so far already float (gains are
 * conditional on the current set) and keeps the best-scored one that gains. Score: the
 * goal metric's gain per byte the model grew when the plan has a size objective (smaller
 * models first), else the gain. Each round measures half as many candidates as the one
 * before (at least 2), so the budget reaches deeper combinations.
 * Ends when a trial meets every goal, no candidate gains, or the budget is used. Fills
 * res.rounds and the nodes kept (added); true when the goals are met. */
static bool fb_greedy(struct fbx *f, const json_t *cands, json_t *ex, json_t *added, json_t *steps, json_t *res)
{
	const struct qd_objective *gm = fb_goal_metric(f), *sz = NULL;
	for (size_t k = 0; k < f->plan->n_obj && !sz; k++)
		if (!strcmp(f->plan->obj[k].type, "size_on_disk"))
			sz = &f->plan->obj[k];
	size_t nc = QD_MIN(json_array_size(cands), QD_MAX((size_t)f->ss->fallback_top_k, 1)), width = nc;
	size_t cur = f->src;
	json_t *pool = json_array(), *rounds = json_array();
	bool met = false;
	for (size_t i = 0; i < nc; i++)
		json_array_append_new(pool, json_deep_copy(json_array_get(cands, i)));
	while (!met && json_array_size(pool) && fb_budget_left(f)) {
		size_t k = QD_MIN(width, json_array_size(pool)), first = 0, got;
		json_t **exs = calloc(k, sizeof *exs);
		if (!exs)
			break;
		for (size_t i = 0; i < k; i++) {
			exs[i] = json_deep_copy(ex);
			json_array_append(exs[i], json_object_get(json_array_get(pool, i), "node"));
		}
		got = fb_batch(f, exs, k, &first);
		for (size_t i = 0; i < k; i++)
			json_decref(exs[i]);
		free(exs);
		const struct trial *s = &(*f->trp)[cur];
		long pick = -1;
		double best = 0;
		json_t *round = json_array(), *up = json_array();
		for (size_t i = 0; i < got; i++) {
			const struct trial *t = &(*f->trp)[first + i];
			json_t *c = json_array_get(pool, i);
			double g = t->values ? fb_gain(gm, t->values, s->values) : NAN;
			double db = fb_bytes(sz, t) - fb_bytes(sz, s);
			double score = t->met ? INFINITY : !isnan(db) && db > 0 ? g / db : g;
			bool ok = t->values && fb_feasible(f, t) && (t->met || g > 0);
			json_object_set_new(c, "trial", json_integer((json_int_t)t->n));
			json_object_set_new(c, "measured_gain", isnan(g) ? json_null() : json_real(g));
			json_array_append_new(round, json_pack("{s:O, s:I, s:o, s:o, s:b, s:b}", "node",
							       json_object_get(c, "node"), "trial", (json_int_t)t->n,
							       "measured_gain", isnan(g) ? json_null() : json_real(g),
							       "added_bytes", isnan(db) ? json_null() : json_real(db),
							       "goals_met", t->met, "eligible", ok));
			json_object_set_new(c, "score", json_real(ok && isfinite(score) ? score : ok ? 1e300 : -1e300));
			if (ok && (pick < 0 || score > best)) {
				pick = (long)i;
				best = score;
			}
		}
		json_array_append_new(rounds, json_pack("{s:I, s:o}", "kept_before", (json_int_t)json_array_size(added),
							"measured", round));
		if (pick >= 0) {
			const struct trial *t = &(*f->trp)[first + (size_t)pick];
			json_t *c = json_array_get(pool, (size_t)pick);
			bool keep;
			json_array_append_new(steps, fb_step(t, c, s->values, s->goals, f->plan, true, &keep));
			json_array_append(ex, json_object_get(c, "node"));
			json_array_append(added, json_object_get(c, "node"));
			met = t->met;
			cur = first + (size_t)pick;
		}
		/* the order after round 1: the candidates that gained alone, by their score alone
		 * (the others are dropped); later rounds keep that order (a node that loses next to
		 * the current set may gain next to a larger one) */
		for (size_t i = 0; i < json_array_size(pool); i++) {
			json_t *c = json_array_get(pool, i);
			if ((long)i == pick)
				continue;
			if (json_array_size(rounds) > 1) {
				json_array_append(up, c);
				continue;
			}
			double sc = json_number_value(json_object_get(c, "score"));
			if (i >= got || sc <= -1e300)
				continue;
			size_t at = 0;
			while (at < json_array_size(up) &&
			       json_number_value(json_object_get(json_array_get(up, at), "score")) >= sc)
				at++;
			json_array_insert(up, at, c);
		}
		json_decref(pool);
		pool = up;
		width = QD_MAX((size_t)2, (width + 1) / 2);
		if (pick < 0 || got < k)
			break;   /* nothing gains any more; or budget, time, cancel */
	}
	wf_log(f->w, QD_LOG_INFO, "fallback (greedy): %zu round(s), %zu node(s) kept in float (goal metric %s%s)",
	       json_array_size(rounds), json_array_size(added), gm ? gm->key : "none",
	       sz ? ", scored per byte added" : "");
	json_object_set_new(res, "goal_metric", gm ? json_string(gm->key) : json_null());
	json_object_set_new(res, "rounds", rounds);
	json_decref(pool);
	return met;
}

static json_t *wf_fallback(struct fbx *f)
{
	struct wf *w = f->w;
	f->src = fallback_source(*f->trp, *f->n_trp, f->src, f->plan, f->n_ord);
	const struct trial *s = &(*f->trp)[f->src];
	const json_t *names = s->names;
	const char *lp = json_string_value(json_array_get(names, json_array_size(names) - 1));
	json_t *cfgs = json_deep_copy(s->cfgs);
	json_t *pc = json_object_get(cfgs, lp ? lp : "");
	json_t *res = json_pack("{s:I, s:s, s:s, s:I, s:I}", "from_trial", (json_int_t)s->n, "pass", lp ? lp : "",
				"ranking", qd_fallback_ranking_name(f->ss->fallback_ranking), "confirm_top_k",
				(json_int_t)f->ss->fallback_top_k, "max_trials", (json_int_t)f->ss->fallback_max_trials);
	json_t *ex = pc && json_is_array(json_object_get(pc, "nodes_to_exclude")) ?
		     json_deep_copy(json_object_get(pc, "nodes_to_exclude")) : json_array();
	json_t *cands = NULL;
	const char *why = NULL;
	if (!pc || !json_object_get(pc, "nodes_to_exclude"))
		why = "the last pass has no nodes_to_exclude parameter";
	else if (!json_object_get(s->metrics, "lowest_snr_activations"))
		why = "the per-activation SNR needs held-out data: add a data config that no pass calibrates with";
	else if (!json_array_size(cands = fallback_candidates(w, s, f->plan, f->ec, f->model_path, ex)))
		why = "no quantized node that is not excluded already adds error";
	if (why) {
		wf_log(w, QD_LOG_WARN, "no trial meets every goal; accuracy-driven fallback unavailable: %s", why);
		json_object_set_new(res, "status", json_string("unavailable"));
		json_object_set_new(res, "reason", json_string(why));
		json_decref(cands);
		json_decref(ex);
		json_decref(cfgs);
		return res;
	}
	size_t i; json_t *c;
	json_array_foreach(cands, i, c)
		json_object_set_new(c, "snr_rank", json_integer((json_int_t)i + 1));
	f->lp = lp;
	f->cfgs = cfgs;
	bool measured = f->ss->fallback_ranking == QD_FALLBACK_MEASURED;
	wf_log(w, QD_LOG_INFO, "no trial meets every goal: keeping quantized nodes of trial %zu in float (%zu candidates "
	       "ranked by SNR lost%s; at most %lld trials)", s->n, json_array_size(cands),
	       measured ? ", the first ones confirmed by excluding each alone" : "", (long long)f->ss->fallback_max_trials);
	json_t *steps = json_array(), *added = json_array();
	bool met = measured ? fb_measured(f, cands, ex, added, steps, res) :
		   f->ss->fallback_ranking == QD_FALLBACK_GREEDY ? fb_greedy(f, cands, ex, added, steps, res) :
		   fb_snr(f, cands, ex, added, steps);
	wf_log(w, met ? QD_LOG_INFO : QD_LOG_WARN, "fallback: %zu node(s) kept in float after %zu trials, goals %s",
	       json_array_size(added), f->used, met ? "met" : "still missed");
	json_object_set_new(res, "status", json_string(met ? "goals_met" : "goals_missed"));
	json_object_set_new(res, "kept_float", added);
	json_object_set_new(res, "steps", steps);
	json_object_set_new(res, "trials", json_integer((json_int_t)f->used));
	f->cfgs = NULL;
	json_decref(cands);
	json_decref(ex);
	json_decref(cfgs);
	return res;
}

static int wf_search(struct wf *w, const struct qd_search_strategy *ss, const char *model_path, long long float_bytes,
		     const char *input_id, json_t *fp_nodes, json_t *ignored, double t0, json_t **result)
{
	const struct qd_workflow_req *req = w->req;
	struct qd_err *err = w->err;
	struct qd_eval_plan *plan = NULL;
	struct qd_search_space *sp = NULL;
	struct qd_sampler *smp = NULL;
	struct trial *tr = NULL;
	size_t n_tr = 0, *order = NULL, n_ord = 0, *rank = NULL;
	json_t *base = NULL, *order_names = qd_workflow_pass_order(req->workflow), *fixed = json_object();
	json_t *fixed_params = json_object(), *metrics = NULL, *spaces = json_array();
	bool *par = NULL, canceled = false;
	double *scaled_all = NULL;
	bool *met_all = NULL;
	const char *stopped = "exhausted";
	char mhash[65];
	int rc;
	struct qd_eval_ctx ec = { .req = req, .hooks = w->hooks, .float_path = model_path };
	size_t n_par = req->parallel > 1 && w->hooks && w->hooks->run_trial ? (size_t)req->parallel : 1;
	struct wf_pool pool = { .hooks = w->hooks };
	pthread_mutex_init(&pool.mu, NULL);
	pthread_cond_init(&pool.cv, NULL);
	if (n_par > 1 && (pool.slot = calloc(n_par, sizeof *pool.slot)))
		pool.n = n_par;
	if (n_par > 1)
		wf_log(w, QD_LOG_INFO, "search: up to %zu trials at once, each in a process of its own", n_par);
	if ((rc = file_sha256(model_path, mhash, err)) < 0)
		goto out;
	if ((rc = trial_plan(req->workflow, &plan, err)) < 0)
		goto out;
	order = calloc(plan->n_obj + 1, sizeof *order);
	if (!order) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	n_ord = qd_rank_order(plan->obj, plan->n_obj, order);
	wf_progress(w, 0.02, "evaluating the float model (baseline)");
	if ((rc = qd_eval_run(plan, &ec, model_path, &base, NULL, err)) < 0) {
		qd_err_wrap(err, "cannot evaluate the float model");
		goto out;
	}
	size_t levels = ss->order == QD_SEARCH_JOINT ? 1 : json_array_size(order_names);
	size_t budget = ss->max_iter > 0 ? (size_t)ss->max_iter : SIZE_MAX;
	for (size_t lv = 0; lv < levels && !canceled; lv++) {
		json_t *names = json_array(), *lvl = json_array();
		for (size_t i = 0; i < json_array_size(order_names); i++) {
			if (ss->order == QD_SEARCH_JOINT || i == lv)
				json_array_append(lvl, json_array_get(order_names, i));
			if (ss->order == QD_SEARCH_JOINT || i <= lv)
				json_array_append(names, json_array_get(order_names, i));
		}
		qd_search_space_free(sp);
		qd_sampler_free(smp);
		sp = NULL;
		smp = NULL;
		rc = qd_search_space_build(req->workflow, lvl, QD_SPACE_SEARCH_UNSET |
					   (ss->order == QD_SEARCH_JOINT ? QD_SPACE_FLOWS : 0), &sp, err);
		json_decref(lvl);
		if (rc == 0)
			rc = qd_sampler_new(ss->sampler, sp, ss->seed, &smp, err);
		if (rc == 0)
			qd_sampler_set_tpe_startup(smp, QD_WF_TPE_STARTUP);
		if (rc < 0) {
			json_decref(names);
			goto out;
		}
		json_t *dims = json_array();
		for (size_t d = 0; d < sp->n_dim; d++)
			json_array_append_new(dims, json_pack("{s:s, s:s, s:O}", "pass", sp->dim[d].pass, "param",
							      sp->dim[d].param, "values", sp->dim[d].values));
		json_array_append_new(spaces, json_pack("{s:O, s:o, s:I, s:I, s:I, s:I}", "passes", sp->passes,
							"dimensions", dims, "indexed_points", (json_int_t)sp->n_raw,
							"invalid", (json_int_t)sp->n_invalid, "duplicates",
							(json_int_t)sp->n_dup, "points", (json_int_t)sp->n_pts));
		size_t planned = sp->n_pts < budget - QD_MIN(budget, n_tr) ? sp->n_pts : budget - QD_MIN(budget, n_tr);
		wf_log(w, QD_LOG_INFO, "search level %zu/%zu: %zu points (%zu indexed, %zu invalid, %zu duplicate), "
		       "sampler %s, up to %zu trials", lv + 1, levels, sp->n_pts, sp->n_raw, sp->n_invalid, sp->n_dup,
		       qd_sampler_name(ss->sampler), planned);
		/* trials are sampled in order and committed in order (trial hook, sampler feedback,
		 * stop rules); with parallel trials up to `par` are uncommitted at once, each
		 * running in a process of its own (hooks->run_trial). tpe after its random
		 * startup trials waits for every earlier result, so the trials are those of a
		 * one-at-a-time run. */
		size_t lv_first = n_tr, idx, next = n_tr;
		bool sampling = true, drop = false;
		for (;;) {
			while (sampling && n_tr - next < n_par) {
				if (n_tr >= budget) {
					sampling = false;
					break;
				}
				if (wf_canceled(w)) {
					canceled = true;
					stopped = "canceled";
					sampling = false;
					break;
				}
				if (n_tr > 0 && wf_over_time(w, ss, t0)) {
					stopped = "max_time";
					sampling = false;
					break;
				}
				if (next < n_tr && ss->sampler == QD_SAMPLER_TPE && n_tr - lv_first >= QD_WF_TPE_STARTUP)
					break;
				if (qd_sampler_next(smp, &idx) != 1) {
					sampling = false;
					break;
				}
				struct trial *nt = realloc(tr, (n_tr + 1) * sizeof *tr);
				if (!nt) {
					json_decref(names);
					pool_stop(&pool, tr);
					rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
					goto out;
				}
				tr = nt;
				struct trial *t = &tr[n_tr];
				memset(t, 0, sizeof *t);
				t->n = ++n_tr;
				t->level = lv;
				t->point = idx;
				t->cached_from = -1;
				t->names = sp->flows ? qd_search_space_names(sp, idx) : json_incref(names);   /* its flow */
				t->cfgs = json_deep_copy(fixed);
				{
					json_t *c = qd_search_space_config(sp, idx);
					json_object_update(t->cfgs, c);
					json_decref(c);
				}
				t->params = json_deep_copy(fixed_params);
				{
					json_t *p = qd_search_space_params(sp, idx);
					json_object_update(t->params, p);
					json_decref(p);
				}
				struct sctx sc = { .w = w, .plan = plan, .ec = &ec, .base = base, .order = order, .n_ord = n_ord,
						    .mhash = mhash, .model_path = model_path, .float_bytes = float_bytes, .tr = tr,
						    .n_tr = n_tr };
				t->state = TRIAL_READY;
				if (!trial_begin(&sc, t, lv_first + planned))
					continue;
				if (pool.n && pool_start(&pool, n_tr - 1, t, req->out_dir) == 0) {
					t->state = TRIAL_RUNNING;
					continue;
				}
				trial_local(&sc, t);
				if (sc.canceled) {
					canceled = true;
					stopped = "canceled";
				}
			}
			pool_collect(&pool, tr);
			while (next < n_tr && tr[next].state == TRIAL_READY) {
				struct trial *t = &tr[next++];
				struct sctx sc = { .w = w, .plan = plan, .ec = &ec, .base = base, .order = order, .n_ord = n_ord,
						    .mhash = mhash, .model_path = model_path, .float_bytes = float_bytes, .tr = tr,
						    .n_tr = n_tr };
				if (t->res || t->rmsg)
					trial_absorb(&sc, t, t->rc, t->res, t->rmsg);
				trial_end(&sc, t, lv_first + planned);
				if (sc.canceled) {
					canceled = true;
					stopped = "canceled";
				}
				qd_sampler_tell(smp, t->point, t->values ? t->scaled : NULL, n_ord, t->met, t->values == NULL);
				if (canceled || (ss->stop_when_goals_met && t->met && lv + 1 == levels)) {
					if (!canceled)
						stopped = "goals_met";
					sampling = false;
					drop = true;
					break;
				}
			}
			if (drop || (!sampling && next == n_tr))
				break;
			pool_wait(&pool);
			if (wf_canceled(w)) {
				canceled = true;
				stopped = "canceled";
				sampling = false;
				drop = true;
				break;
			}
		}
		if (drop) {
			/* trials sampled after the last committed one are not part of the search */
			pool_stop(&pool, tr);
			for (size_t j = next; j < n_tr; j++)
				trial_free(&tr[j]);
			n_tr = next;
		}
		if (n_tr >= budget && strcmp(stopped, "canceled"))
			stopped = "max_iter";
		/* pass-by-pass: this level's best configuration is fixed for the next levels */
		long lb = -1;
		for (size_t j = lv_first; j < n_tr; j++)
			if (tr[j].values && (lb < 0 || qd_rank_cmp(tr[j].scaled, tr[j].met, tr[lb].scaled, tr[lb].met, n_ord) < 0))
				lb = (long)j;
		if (lb >= 0) {
			json_decref(fixed);
			fixed = json_deep_copy(tr[lb].cfgs);
			json_decref(fixed_params);
			fixed_params = json_deep_copy(tr[lb].params);
		}
		json_decref(names);
		if (n_tr >= budget || wf_over_time(w, ss, t0))
			break;
	}
	/* Accuracy-driven fallback (INC's basic strategy, see wf_fallback): when no trial meets
	 * the goals, keep quantized nodes in float until the goals are met or the fallback's
	 * budget is used. */
	json_t *fallback = NULL;
	{
		long src = -1;
		bool any_met = false, has_goals = false;
		for (size_t j = 0; j < n_tr; j++) {
			any_met = any_met || (tr[j].values && tr[j].met);
			if (tr[j].values && tr[j].cached_from < 0 &&
			    (src < 0 || qd_rank_cmp(tr[j].scaled, tr[j].met, tr[src].scaled, tr[src].met, n_ord) < 0))
				src = (long)j;
		}
		for (size_t k = 0; k < plan->n_obj; k++)
			has_goals = has_goals || plan->obj[k].goal_type;
		if (src >= 0 && !any_met && has_goals && !canceled && ss->fallback) {
			struct fbx f = { .w = w, .ss = ss, .t0 = t0, .trp = &tr, .n_trp = &n_tr, .pool = &pool, .plan = plan,
					 .ec = &ec, .base = base, .order = order, .n_ord = n_ord, .mhash = mhash,
					 .model_path = model_path, .float_bytes = float_bytes, .canceled = &canceled,
					 .src = (size_t)src };
			fallback = wf_fallback(&f);
		} else if (src >= 0 && !any_met && has_goals && !canceled) {
			fallback = json_pack("{s:s, s:s}", "status", "disabled", "reason",
					     "search_strategy.fallback is false");
		}
		if (canceled)
			stopped = "canceled";
	}
	/* rank every successful trial */
	size_t n_ok = 0;
	size_t *ok = calloc(n_tr + 1, sizeof *ok);
	scaled_all = calloc((n_tr + 1) * (n_ord + 1), sizeof *scaled_all);
	met_all = calloc(n_tr + 1, sizeof *met_all);
	rank = calloc(n_tr + 1, sizeof *rank);
	par = calloc(n_tr + 1, sizeof *par);
	if (!ok || !scaled_all || !met_all || !rank || !par) {
		free(ok);
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < n_tr; j++)
		if (tr[j].values && tr[j].cached_from < 0) {
			memcpy(&scaled_all[n_ok * n_ord], tr[j].scaled, n_ord * sizeof *scaled_all);
			met_all[n_ok] = tr[j].met;
			ok[n_ok++] = j;
		}
	if (!n_ok) {
		free(ok);
		rc = canceled ? qd_err_set(err, QD_ECANCELED, NULL, "canceled before a trial finished")
			      : qd_err_set(err, QD_EINVAL, NULL, "no trial of the search succeeded (first: %s)",
					   n_tr && tr[0].error ? tr[0].error : "no trial ran");
		goto out;
	}
	long best = qd_rank_all(scaled_all, met_all, n_ok, n_ord, rank, par);
	bool goals_met = best >= 0;
	size_t bi = ok[goals_met ? (size_t)best : rank[0]];
	bool *tpar = calloc(n_tr + 1, sizeof *tpar);
	for (size_t r = 0; tpar && r < n_ok; r++)
		tpar[ok[r]] = par[r];
	/* output_model_num: the pareto models, best-ranked first, as pareto_<trial>.onnx */
	json_t *pmodels = ss->output_model_num > 0 ? json_array() : NULL;
	for (size_t r = 0; pmodels && r < n_ok && (int64_t)json_array_size(pmodels) < ss->output_model_num; r++) {
		const struct trial *pt = &tr[ok[rank[r]]];
		if (!par[rank[r]])
			continue;
		char *from = qd_asprintf("%s/trials/%zu/model.onnx", req->out_dir, pt->n);
		char *fromd = qd_asprintf("%s/trials/%zu/model.onnx.data", req->out_dir, pt->n);
		char *name = qd_asprintf("pareto_%zu.onnx", pt->n);
		char *to = name ? qd_asprintf("%s/%s", req->out_dir, name) : NULL;
		int crc = 0;
		if (!from || !fromd || !name || !to)
			crc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		else if (file_size(fromd) >= 0)
			wf_log(w, QD_LOG_WARN, "output_model_num: pareto trial %zu has external data and is not copied "
			       "(its model is trials/%zu/ in the job's output directory)", pt->n, pt->n);
		else if ((crc = copy_file(from, to, err)) == 0)
			json_array_append_new(pmodels, json_pack("{s:I, s:s}", "trial", (json_int_t)pt->n, "artifact", name));
		free(from);
		free(fromd);
		free(name);
		free(to);
		if (crc < 0) {
			json_decref(pmodels);
			free(ok);
			free(tpar);
			rc = crc;
			goto out;
		}
	}
	if (pmodels)
		wf_log(w, QD_LOG_INFO, "output_model_num %lld: %zu pareto model(s) kept as pareto_<trial>.onnx",
		       (long long)ss->output_model_num, json_array_size(pmodels));
	free(ok);
	struct trial *bt = &tr[bi];
	if (!goals_met)
		wf_log(w, QD_LOG_WARN, "no trial met every goal: the output is the best-ranked trial %zu", bt->n);
	/* the best model becomes out_dir/model.onnx */
	{
		char *from = qd_asprintf("%s/trials/%zu/model.onnx", req->out_dir, bt->n);
		char *to = qd_asprintf("%s/model.onnx", req->out_dir);
		char *fromd = qd_asprintf("%s/trials/%zu/model.onnx.data", req->out_dir, bt->n);
		char *tod = qd_asprintf("%s/model.onnx.data", req->out_dir);
		rc = from && to && fromd && tod ? copy_file(from, to, err) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		if (tod)
			unlink(tod);
		if (rc == 0 && file_size(fromd) >= 0)
			rc = copy_file(fromd, tod, err);
		free(from);
		free(to);
		free(fromd);
		free(tod);
		if (rc < 0) {
			free(tpar);
			json_decref(pmodels);
			goto out;
		}
	}
	json_t *trials = json_array(), *pareto = json_array(), *objs = json_array();
	for (size_t j = 0; j < n_tr; j++) {
		json_array_append_new(trials, trial_json(&tr[j], tpar && tpar[j]));
		if (tpar && tpar[j])
			json_array_append_new(pareto, json_integer((json_int_t)tr[j].n));
	}
	for (size_t k = 0; k < plan->n_obj; k++) {
		const struct qd_objective *o = &plan->obj[k];
		json_t *oj = json_pack("{s:s, s:b, s:i}", "key", o->key, "higher_is_better", o->higher_is_better,
				       "priority", o->priority);
		if (o->goal_type)
			json_object_set_new(oj, "goal", json_pack("{s:s, s:f}", "type", o->goal_type, "value", o->goal_value));
		json_array_append_new(objs, oj);
	}
	if (w->hooks && w->hooks->trial) {
		/* the end of the search: the pareto flags and the final progress */
		json_t *fin = json_pack("{s:I, s:I, s:{s:I, s:O, s:O, s:b}, s:b, s:s, s:O}", "trials_done",
					(json_int_t)n_tr, "trials_planned", (json_int_t)n_tr, "best", "trial",
					(json_int_t)bt->n, "params", bt->params, "values", bt->values, "goals_met",
					goals_met, "finished", 1, "stopped", stopped, "pareto", pareto);
		if (fin)
			w->hooks->trial(w->hooks->ud, NULL, fin);
		json_decref(fin);
	}
	json_t *search = json_pack("{s:{s:s, s:s, s:I, s:f, s:b, s:I}, s:o, s:o, s:O, s:o, s:{s:I, s:O, s:O, s:b}, s:o, s:s}",
				   "strategy", "execution_order", qd_search_order_name(ss->order), "sampler",
				   qd_sampler_name(ss->sampler), "max_iter", (json_int_t)ss->max_iter, "max_time",
				   ss->max_time, "stop_when_goals_met", ss->stop_when_goals_met, "seed", (json_int_t)ss->seed,
				   "spaces", spaces, "objectives", objs, "baseline", base, "trials", trials, "best", "trial",
				   (json_int_t)bt->n, "params", bt->params, "values", bt->values, "goals_met", goals_met,
				   "pareto", pareto, "stopped", stopped);
	spaces = NULL;
	if (search && fallback)
		json_object_set_new(search, "fallback", fallback);
	else
		json_decref(fallback);
	fallback = NULL;
	if (search && pmodels)
		json_object_set_new(search, "pareto_models", pmodels);
	else
		json_decref(pmodels);
	metrics = json_deep_copy(bt->metrics);
	if (!metrics || !search) {
		json_decref(search);
		free(tpar);
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	json_object_set(metrics, "ignored", ignored);
	json_object_set_new(metrics, "seconds", json_real(qd_now_mono() - t0));
	json_object_set_new(metrics, "search", search);
	/* footprint: every candidate, its parent (the input model) and metrics; the frontier marked */
	json_t *od = json_object();
	for (size_t k = 0; k < plan->n_obj; k++)
		json_object_set_new(od, plan->obj[k].key, json_pack("{s:b, s:i}", "higher_is_better",
								    plan->obj[k].higher_is_better, "priority", plan->obj[k].priority));
	for (size_t j = 0; j < n_tr; j++) {
		struct trial *t = &tr[j];
		if (t->cached_from >= 0)
			continue;
		char *id = model_id(input_id, "trial", t->cfgs);
		json_t *node = json_pack("{s:s, s:s?, s:s, s:O, s:I, s:b, s:b, s:f}", "model_id", id ? id : "?",
					 "parent_model_id", input_id, "from_pass",
					 json_string_value(json_array_get(t->names, json_array_size(t->names) - 1)),
					 "pass_run_config", t->cfgs, "trial", (json_int_t)t->n, "is_pareto_frontier",
					 tpar && tpar[j], "is_best", j == bi, "duration_seconds", t->seconds);
		if (t->values)
			json_object_set_new(node, "metrics", json_pack("{s:O, s:O?, s:b}", "value", t->values, "goals",
									t->goals, "if_goals_met", t->met));
		else
			json_object_set_new(node, "error", json_string(t->error ? t->error : "failed"));
		if (!t->error)
			json_object_set_new(node, "model_config", json_pack("{s:s, s:{s:o}}", "type", "ONNXModel", "config",
									   "model_path", json_sprintf("%s/trials/%zu/model.onnx",
												     req->out_dir, t->n)));
		json_object_set_new(fp_nodes, id ? id : "?", node);
		free(id);
	}
	free(tpar);
	json_t *fp = json_pack("{s:O, s:o, s:b}", "nodes", fp_nodes, "objective_dict", od, "is_marked_pareto_frontier", 1);
	rc = fp ? write_json(req->out_dir, "footprint.json", fp, err) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	json_decref(fp);
	if (rc == 0)
		rc = write_json(req->out_dir, "metrics.json", metrics, err);
	if (rc < 0)
		goto out;
	wf_log(w, QD_LOG_INFO, "search: %zu trials (%s), best trial %zu %s every goal", n_tr, stopped, bt->n,
	       goals_met ? "meets" : "misses");
	if (canceled) {
		rc = qd_err_set(err, QD_ECANCELED, NULL, "search canceled after %zu trials; the best so far (trial %zu) "
				"is in the output", n_tr, bt->n);
		goto out;
	}
	wf_progress(w, 1.0, "done");
	if (result) {
		*result = metrics;
		metrics = NULL;
	}
	rc = 0;
out:
	pool_stop(&pool, tr);
	free(pool.slot);
	pthread_mutex_destroy(&pool.mu);
	pthread_cond_destroy(&pool.cv);
	for (size_t j = 0; j < n_tr; j++)
		trial_free(&tr[j]);
	free(tr);
	free(order);
	free(rank);
	free(par);
	free(scaled_all);
	free(met_all);
	json_decref(metrics);
	json_decref(base);
	json_decref(order_names);
	json_decref(fixed);
	json_decref(fixed_params);
	json_decref(spaces);
	qd_sampler_free(smp);
	qd_search_space_free(sp);
	qd_eval_plan_free(plan);
	return rc;
}

int qd_workflow_trial(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		      const json_t *trial, json_t **result, struct qd_err *err)
{
	struct wf w = { .req = req, .hooks = hooks, .err = err };
	struct qd_eval_plan *plan = NULL;
	const char *model_path = req->model_path ? req->model_path : model_path_of(req->workflow);
	const char *dir = json_string_value(json_object_get(trial, "dir"));
	const json_t *names = json_object_get(trial, "names"), *cfgs = json_object_get(trial, "cfgs");
	*result = NULL;
	if (!model_path || !dir || !json_is_array(names) || !json_is_object(cfgs))
		return qd_err_set(err, QD_EINVAL, "trial", "the trial request lacks the model, dir, names or cfgs");
	int rc = trial_plan(req->workflow, &plan, err);
	if (rc == 0) {
		struct qd_eval_ctx ec = { .req = req, .hooks = hooks, .float_path = model_path };
		rc = trial_body(&w, plan, &ec, model_path, names, cfgs, dir, result, err);
	}
	qd_eval_plan_free(plan);
	return rc;
}

/* ---- evaluation section of metrics.json ---- */

/* {"objectives": [...], "output_model": values, "input_model": values (when measured),
 * "goals": key → status, "goals_met", "details": key → how it was measured}. new. */
static json_t *eval_section(const struct qd_eval_plan *p, const json_t *values, const json_t *base,
			    const json_t *goals, bool met, const json_t *details)
{
	json_t *objs = json_array();
	for (size_t i = 0; objs && i < p->n_obj; i++) {
		const struct qd_objective *o = &p->obj[i];
		json_t *g = o->goal_type ? json_pack("{s:s, s:f}", "type", o->goal_type, "value", o->goal_value) : json_null();
		json_array_append_new(objs, json_pack("{s:s, s:s, s:s, s:s, s:b, s:i, s:o}", "key", o->key, "metric",
						      o->metric, "sub_type", o->sub_type, "type", o->type,
						      "higher_is_better", o->higher_is_better, "priority", o->priority,
						      "goal", g));
	}
	/* "o" steals: an empty default is not leaked, a given object gets one more reference */
	json_t *e = json_pack("{s:o, s:O, s:o, s:b, s:o}", "objectives", objs, "output_model", values, "goals",
			      goals ? json_incref((json_t *)goals) : json_object(), "goals_met", met, "details",
			      details ? json_incref((json_t *)details) : json_object());
	if (e && base)
		json_object_set(e, "input_model", (json_t *)base);
	return e;
}

/* "accuracy-accuracy_score 0.81 (target >= 0.8) met; ..." for the log. Borrow (static
 * buffer of the calling thread). */
static const char *eval_goal_summary(const json_t *evaluation)
{
	static __thread char buf[768];
	size_t k = 0;
	const char *key;
	json_t *g;
	buf[0] = 0;
	json_object_foreach(json_object_get(evaluation, "goals"), key, g) {
		const json_t *v = json_object_get(g, "value"), *t = json_object_get(g, "target");
		char vs[32] = "unmeasured", ts[32] = "?";
		if (json_is_number(v))
			snprintf(vs, sizeof vs, "%.6g", json_number_value(v));
		if (json_is_number(t))
			snprintf(ts, sizeof ts, "%.6g", json_number_value(t));
		k += (size_t)snprintf(buf + k, k < sizeof buf ? sizeof buf - k : 0, "%s%s %s (target %s %s) %s",
				      k ? "; " : "", key, vs, json_is_true(json_object_get(g, "higher_is_better")) ? ">=" : "<=",
				      ts, json_is_true(json_object_get(g, "met")) ? "met" : "not met");
		if (k >= sizeof buf)
			break;
	}
	return buf;
}

/* ---- the run ---- */

int qd_workflow_run(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		    json_t **result, struct qd_err *err)
{
	struct wf w = { .req = req, .hooks = hooks, .err = err };
	struct qd_model *m = NULL;
	json_t *passes_out = json_array(), *counts = json_object(), *metrics = NULL, *fp_nodes = json_object();
	json_t *ignored = NULL, *order = NULL, *values = NULL, *detail = NULL, *base_values = NULL, *evaluation = NULL;
	struct qd_eval_plan *plan = NULL;
	char *out_path = NULL, *parent_id = NULL;
	const json_t *save_params = NULL;
	json_t *last_cfg = NULL;
	int rc;
	if (result)
		*result = NULL;
	if (!passes_out || !counts || !fp_nodes) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if ((rc = qd_workflow_check(req->workflow, req->model_path ? QD_WF_CHECK_MODEL_BOUND : 0, NULL,
				    &ignored, err)) < 0)
		goto out;
	{
		size_t i;
		json_t *x;
		json_array_foreach(ignored, i, x)
			wf_log(&w, QD_LOG_WARN, "ignored '%s': %s", json_string_value(json_object_get(x, "field")),
			       json_string_value(json_object_get(x, "why")));
	}
	const char *model_path = req->model_path ? req->model_path : model_path_of(req->workflow);
	if (!model_path) {
		rc = qd_err_set(err, QD_EINVAL, "model", "no input model (give --model or input_model.model_path)");
		goto out;
	}
	double t0 = qd_now_mono();
	wf_progress(&w, 0.0, "loading model");
	struct qd_load_opts lo = { .keep_external = true };   /* external weights stay on disk */
	if ((rc = qd_model_load_file(model_path, &lo, &m, err)) < 0) {
		qd_err_wrap(err, "cannot load model '%s'", model_path);
		goto out;
	}
	long long float_bytes = file_size(model_path);
	{
		/* Olive hashes the input model's config (its path); we add size and mtime */
		struct stat st;
		json_t *idc = json_pack("{s:s, s:I, s:I}", "model_path", model_path, "size",
					(json_int_t)float_bytes, "mtime",
					(json_int_t)(stat(model_path, &st) == 0 ? st.st_mtime : 0));
		parent_id = model_id(NULL, "input", idc);
		json_decref(idc);
		/* the data files of the external weights count too */
		if (qd_model_external_tensor_bytes(m))
			float_bytes += qd_model_external_bytes(m);
	}
	json_object_set_new(fp_nodes, parent_id ? parent_id : "input",
			    json_pack("{s:s, s:n, s:n, s:n, s:{s:s, s:{s:s}}, s:I}", "model_id", parent_id ? parent_id : "input",
				      "parent_model_id", "from_pass", "pass_run_config", "model_config", "type", "ONNXModel",
				      "config", "model_path", model_path, "size_bytes", (json_int_t)float_bytes));

	struct qd_search_strategy ss;
	if ((rc = qd_search_strategy_parse(req->workflow, &ss, err)) < 0)
		goto out;
	if (ss.enabled) {
		rc = wf_search(&w, &ss, model_path, float_bytes, parent_id, fp_nodes, ignored, t0, result);
		goto out;
	}

	const json_t *passes = json_object_get(req->workflow, "passes");
	order = qd_workflow_pass_order(req->workflow);
	size_t npass = json_array_size(order), ip = 0, io;
	json_t *pn;
	json_array_foreach(order, io, pn) {
		const char *pname = json_string_value(pn);
		const json_t *pv = json_object_get(passes, pname);
		if (wf_canceled(&w)) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled before pass '%s'", pname);
			goto out;
		}
		const json_t *pc = pv;
		if (json_is_array(pv)) {
			pc = json_array_get(pv, 0);
			wf_log(&w, QD_LOG_WARN, "pass '%s' lists %zu alternative configurations; running the first "
			       "(a search_strategy searches them)", pname, json_array_size(pv));
		}
		const struct qd_pass_vt *vt = qd_pass_find(json_string_value(json_object_get(pc, "type")));
		json_t *space = NULL, *params = qd_search_entry_params(pc);   /* without host, evaluator ... */
		rc = qd_pass_resolve(vt, pname, params, &space, err);
		json_decref(params);
		if (rc < 0)
			goto out;
		const char *k; json_t *cand;
		json_object_foreach(space, k, cand)
			if (json_array_size(cand) > 1) {
				char *v0 = json_dumps(json_array_get(cand, 0), JSON_ENCODE_ANY | JSON_COMPACT);
				wf_log(&w, QD_LOG_WARN, "pass '%s': parameter '%s' has %zu candidate values; running "
				       "with the first (%s): searching lands with the search module", pname, k,
				       json_array_size(cand), v0 ? v0 : "?");
				free(v0);
			}
		json_t *cfg = qd_pass_space_first(space);
		json_decref(space);
		if ((rc = wf_external_in(&w, m, vt, cfg, pname, err)) < 0) {
			json_decref(cfg);
			goto out;
		}
		json_t *stats = json_object();
		char msg[256];
		snprintf(msg, sizeof msg, "pass %zu/%zu '%s' (%s)", ip + 1, npass, pname, vt->name);
		wf_progress(&w, 0.05 + 0.75 * (double)ip / (double)(npass ? npass : 1), msg);
		wf_log(&w, QD_LOG_INFO, "running %s", msg);
		struct qd_pass_ctx ctx = { .job_id = req->job_id, .name = pname, .hooks = hooks, .stats = stats,
					   .workflow = req->workflow, .data_paths = req->data_paths,
					   .threads = req->threads, .max_tensor_bytes = req->max_tensor_bytes,
					   .max_memory_bytes = req->max_memory_bytes,
					   .max_seconds = req->max_seconds };
		double ts = qd_now_mono();
		rc = vt->run(&ctx, m, cfg, err);
		double dt = qd_now_mono() - ts;
		if (rc < 0) {
			qd_err_wrap(err, "pass '%s' (%s) failed", pname, vt->name);
			json_decref(cfg);
			json_decref(stats);
			goto out;
		}
		json_t *qn = json_object_get(stats, "quantized_nodes");
		json_object_foreach(qn, k, cand) {
			json_t *c = json_object_get(counts, k);
			json_object_set_new(counts, k, json_integer((c ? json_integer_value(c) : 0) +
								    json_integer_value(cand)));
		}
		json_array_append_new(passes_out, json_pack("{s:s, s:s, s:O, s:o, s:f}", "name", pname, "type",
							      vt->name, "config", cfg, "stats", stats, "seconds", dt));
		json_decref(last_cfg);
		last_cfg = cfg;
		save_params = last_cfg;
		char *id = model_id(parent_id, vt->name, cfg);
		json_object_set_new(fp_nodes, id ? id : pname,
				    json_pack("{s:s, s:s?, s:s, s:O, s:f}", "model_id", id ? id : pname,
					      "parent_model_id", parent_id, "from_pass", vt->name, "pass_run_config", cfg,
					      "duration_seconds", dt));
		free(parent_id);
		parent_id = id;
		ip++;
	}

	/* save */
	wf_progress(&w, 0.8, "saving model");
	out_path = qd_asprintf("%s/model.onnx", req->out_dir);
	if (!out_path) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	long long q_bytes = 0;
	if ((rc = wf_save(m, req->out_dir, save_params, &q_bytes, err)) < 0) {
		qd_err_wrap(err, "cannot save the output model");
		goto out;
	}
	wf_log(&w, QD_LOG_INFO, "saved '%s' (%lld bytes, float model %lld bytes)", out_path, q_bytes, float_bytes);

	/* metrics: the evaluator of the last pass (else the workflow's), else quantd's default
	 * plan; the float model is evaluated too when a goal or a metric needs its values */
	wf_progress(&w, 0.85, "evaluating against the float model");
	struct qd_eval_ctx ec = { .req = req, .hooks = hooks, .float_path = model_path };
	const char *last_pass = json_string_value(json_array_get(order, json_array_size(order) - 1));
	if ((rc = qd_eval_plan_parse(req->workflow, last_pass, qd_workflow_eval_flags(req->workflow), &plan, NULL,
				     NULL, err)) < 0)
		goto out;
	long long eval_max = default_eval_max_bytes();
	bool skip_eval = !has_evaluator(req->workflow, last_pass) && float_bytes > eval_max;
	if (skip_eval) {
		/* the default fidelity check would load the float and the quantized model whole
		 * into the executor: for a large model only the size is reported */
		wf_log(&w, QD_LOG_WARN, "default evaluation skipped: the float model is %lld bytes, over %lld "
		       "(QD_DEFAULT_EVAL_MAX_BYTES); its fidelity check would load the float and the quantized model "
		       "whole into memory. Set an evaluator to measure it anyway", float_bytes, eval_max);
		values = json_object();
		for (size_t i = 0; values && i < plan->n_obj; i++)
			if (!strcmp(plan->obj[i].type, "size_on_disk"))
				json_object_set_new(values, plan->obj[i].key, json_integer(q_bytes));
		if (!values) {
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			goto out;
		}
	} else if ((rc = qd_eval_run(plan, &ec, out_path, &values, &detail, err)) < 0) {
		goto out;
	}
	bool want_base = false;
	for (size_t i = 0; i < plan->n_obj; i++)
		want_base = want_base || plan->obj[i].goal_type || (strcmp(plan->obj[i].type, "fidelity") &&
								    strcmp(plan->obj[i].type, "size_on_disk"));
	if (want_base && !skip_eval) {
		wf_progress(&w, 0.9, "evaluating the float model");
		if ((rc = qd_eval_run(plan, &ec, model_path, &base_values, NULL, err)) < 0)
			goto out;
	}
	if (wf_canceled(&w)) {
		rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
		goto out;
	}
	json_t *goals = NULL;
	bool met = qd_eval_goals_met(plan, values, base_values, &goals);
	evaluation = eval_section(plan, values, base_values, goals, met, json_object_get(detail, "objectives"));
	json_decref(goals);
	if (!evaluation) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (json_object_size(json_object_get(evaluation, "goals")))
		wf_log(&w, met ? QD_LOG_INFO : QD_LOG_WARN, "goals %s: %s", met ? "met" : "not met", eval_goal_summary(evaluation));
	json_t *acc = json_object_get(detail, "accuracy"), *lowest = json_object_get(detail, "lowest_snr_activations");
	json_int_t total = 0;
	{
		const char *k; json_t *v;
		json_object_foreach(counts, k, v)
			total += json_integer_value(v);
	}
	metrics = json_pack("{s:{s:I, s:I, s:f}, s:O, s:I, s:O, s:O, s:O, s:O, s:f}",
			    "size", "float_bytes", (json_int_t)float_bytes, "quantized_bytes", (json_int_t)q_bytes,
			    "ratio", float_bytes > 0 ? (double)q_bytes / (double)float_bytes : 0.0,
			    "quantized_nodes", counts, "quantized_nodes_total", total,
			    "accuracy", acc ? acc : json_null(), "values", values, "passes", passes_out, "ignored", ignored,
			    "seconds", qd_now_mono() - t0);
	if (!metrics) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (lowest)
		json_object_set(metrics, "lowest_snr_activations", lowest);
	json_object_set(metrics, "evaluation", evaluation);
	if (skip_eval)
		json_object_set_new(metrics, "evaluation_skipped",
				    json_sprintf("the float model is %lld bytes, over QD_DEFAULT_EVAL_MAX_BYTES %lld: "
						 "quantd's default fidelity check was not run", float_bytes, eval_max));
	json_t *last = json_object_get(fp_nodes, parent_id ? parent_id : "");
	if (last) {
		json_object_set_new(last, "model_config", json_pack("{s:s, s:{s:s}}", "type", "ONNXModel", "config",
								    "model_path", out_path));
		json_object_set_new(last, "size_bytes", json_integer(q_bytes));
		json_object_set(last, "metrics", acc);
	}
	json_t *fp = json_pack("{s:O, s:{}, s:b}", "nodes", fp_nodes, "objective_dict", "is_marked_pareto_frontier", 0);
	rc = fp ? write_json(req->out_dir, "footprint.json", fp, err) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	json_decref(fp);
	if (rc == 0)
		rc = write_json(req->out_dir, "metrics.json", metrics, err);
	if (rc < 0)
		goto out;
	wf_progress(&w, 1.0, "done");
	if (result) {
		*result = metrics;
		metrics = NULL;
	}
	rc = 0;
out:
	qd_eval_plan_free(plan);
	json_decref(values);
	json_decref(base_values);
	json_decref(evaluation);
	json_decref(detail);
	json_decref(metrics);
	json_decref(ignored);
	json_decref(order);
	json_decref(passes_out);
	json_decref(counts);
	json_decref(fp_nodes);
	json_decref(last_cfg);
	free(out_path);
	free(parent_id);
	qd_model_free(m);
	return rc;
}
