/* The worker pool: N threads that claim queued jobs and run their workflow.
 *
 * DESIGN
 * - Each worker owns one store connection. It claims the oldest queued job in one
 *   transaction (qd_job_claim), runs the workflow in a child process (qd_job_supervise,
 *   daemon/jobexec.c) in <data-dir>/work/<job>/, imports
 *   the files the workflow wrote as artifacts (blob store), and finishes the job through
 *   the store's transition function. Idle workers sleep on a condition variable that
 *   POST /v1/jobs signals (and re-check the queue every 2 s anyway).
 * - A crash of the child requeues the job until max_attempts (then it fails CRASHED);
 *   limits (TIMEOUT, LIMIT), cancels and reported errors end the job at once.
 * - Hooks (fed by the child's pipe): progress goes to the job row (throttled to 4 writes/s) and returns the job's
 *   cancel_requested flag; log lines go to job_log (the passes also send them to qd_log).
 *   The main loop polls cancel_requested every second too, for passes that report
 *   progress rarely. The workflow sees the flag through hooks.cancel.
 * - Shutdown: stopping=1 means no new claims; after --grace-seconds aborting=1 sets every
 *   running job's cancel flag and a job stopped that way is requeued (attempt kept), not
 *   canceled. A kill -9 leaves jobs running in the database: qd_store_recover at the next
 *   start requeues them (or fails them after --max-attempts).
 * - Search trials: the child reports each finished trial ("trial" lines); hook_trial
 *   commits it as a trials row together with the search's progress on the job row (one
 *   transaction), and the end of the search sets the pareto flags. A requeued job keeps
 *   its work directory's out/trials/; the next attempt hands the committed trials' records
 *   to its child (qd_workflow_req.resume), which reuses them instead of running them
 *   again.
 * - Parallel trials: a search job borrows idle workers (lent: they claim nothing) when it
 *   starts, up to --max-workers-per-job including its own (default all but one) and only
 *   while no other job is queued, and runs that many trials at once (each in a process
 *   of its own, daemon/jobexec.c); the lent workers come back when the job ends. A
 *   worker that is claiming a job is never lent.
 * - Re-runs of a job (after a crash) skip artifacts an earlier attempt already imported
 *   with the same name and content, and replace those with the same name and other
 *   content (qd_artifact_add keeps one artifact per name). */
#define _GNU_SOURCE
#include "daemon/daemon.h"
#include "passes/workflow.h"
#include "passes/data_config.h"
#include "search/search.h"
#include "onnx/model_tar.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct qd_worker {
	struct qd_daemon *d;
	int idx;
	pthread_t th;
	bool started;
	volatile int alive;
	volatile int cancel;        /* hooks.cancel of the running job */
	char name[32];
	char job_id[64];            /* "" when idle; guarded by d->mu */
	bool claiming;              /* between looking at the queue and job_id set; d->mu */
	int lent_to;                /* index + 1 of the worker whose search uses it, 0: not lent; d->mu */
};

/* What a produced file becomes: file name, artifact kind, content type. */
static const struct { const char *file, *kind, *ctype; } artifact_kinds[] = {
	{ "model.onnx",      "model",      "application/octet-stream" },
	{ "model.onnx.data", "model_data", "application/octet-stream" },
	{ "metrics.json",    "metrics",    "application/json" },
	{ "footprint.json",  "footprint",  "application/json" },
};

struct job_ctx {
	struct qd_worker *w;
	struct qd_store_conn *c;
	const char *job_id;
	pthread_mutex_t mu;         /* hooks may be called from engine threads */
	double last_progress;
};

/* the workflow's log hook (it has already sent the line to qd_log): append to the job log */
static void hook_log(void *ud, enum qd_log_level lvl, const char *line)
{
	struct job_ctx *j = ud;
	pthread_mutex_lock(&j->mu);
	struct qd_err e = { 0 };
	if (qd_job_log_append(j->c, j->job_id, lvl, line, NULL, &e))
		qd_log(QD_LOG_WARN, j->job_id, "cannot append to job log: %s", e.msg);
	pthread_mutex_unlock(&j->mu);
}

static void job_log(struct job_ctx *j, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void job_log(struct job_ctx *j, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, j->job_id, "%s", line);
	hook_log(j, lvl, line);
}

static void hook_progress(void *ud, double frac, const char *msg)
{
	struct job_ctx *j = ud;
	double now = qd_now_mono();
	pthread_mutex_lock(&j->mu);
	if (now - j->last_progress >= 0.25 || frac >= 1.0) {
		j->last_progress = now;
		bool cancel = false;
		struct qd_err e = { 0 };
		if (qd_job_progress(j->c, j->job_id, frac, msg, &cancel, &e))
			qd_log(QD_LOG_WARN, j->job_id, "cannot record progress: %s", e.msg);
		else if (cancel)
			j->w->cancel = 1;
	}
	pthread_mutex_unlock(&j->mu);
}

/* A string member of a trial record, or NULL. Borrow. */
static const char *rec_str(const json_t *rec, const char *key)
{
	return json_string_value(json_object_get(rec, key));
}

/* JSON text of rec[key] (new), NULL when absent or null. */
static char *rec_dump(const json_t *rec, const char *key)
{
	const json_t *v = json_object_get(rec, key);
	return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* the workflow's trial hook: commit the trial (record) with the search's progress, or at
 * the end of the search (record NULL) the pareto flags */
static void hook_trial(void *ud, const json_t *record, const json_t *search)
{
	struct job_ctx *j = ud;
	struct qd_err e = { 0 };
	char *search_txt = search ? json_dumps(search, JSON_COMPACT) : NULL;
	int rc = 0;
	pthread_mutex_lock(&j->mu);
	if (record) {
		struct qd_trial_row r = { .idx = (int)json_integer_value(json_object_get(record, "n")),
					  .goals_met = json_is_true(json_object_get(record, "goals_met")),
					  .seconds = json_number_value(json_object_get(record, "seconds")),
					  .model_size = json_is_integer(json_object_get(record, "model_size")) ?
							json_integer_value(json_object_get(record, "model_size")) : -1 };
		snprintf(r.job_id, sizeof r.job_id, "%s", j->job_id);
		snprintf(r.state, sizeof r.state, "%s", rec_str(record, "status") ?: "failed");
		snprintf(r.model_sha256, sizeof r.model_sha256, "%s", rec_str(record, "model_sha256") ?: "");
		r.config_json = rec_dump(record, "params");
		r.metrics_json = rec_dump(record, "values");
		r.goals_json = rec_dump(record, "goals");
		r.error = (char *)rec_str(record, "error");
		r.model_path = (char *)rec_str(record, "model");
		r.record_json = json_dumps(record, JSON_COMPACT);
		if (!r.config_json)
			r.config_json = strdup("{}");
		rc = r.config_json && r.record_json ? qd_trial_add(j->c, &r, search_txt, NULL, &e)
						    : qd_err_set(&e, QD_ENOMEM, "", "out of memory");
		free(r.config_json);
		free(r.metrics_json);
		free(r.goals_json);
		free(r.record_json);
	} else if (search) {
		const json_t *par = json_object_get(search, "pareto");
		size_t n = json_array_size(par), i;
		int *idx = calloc(n + 1, sizeof *idx);
		for (i = 0; idx && i < n; i++)
			idx[i] = (int)json_integer_value(json_array_get(par, i));
		rc = idx ? qd_trial_set_pareto(j->c, j->job_id, idx, n, search_txt, &e)
			 : qd_err_set(&e, QD_ENOMEM, "", "out of memory");
		free(idx);
	}
	pthread_mutex_unlock(&j->mu);
	if (rc)
		qd_log(QD_LOG_WARN, j->job_id, "cannot record the search trial: %s", e.msg);
	free(search_txt);
}

/* The records of the trials earlier attempts committed (new array, maybe empty). */
static int resume_records(struct job_ctx *j, json_t **out, struct qd_err *err)
{
	struct qd_trial_row *rows = NULL;
	size_t n = 0;
	*out = NULL;
	int rc = qd_trial_list(j->c, j->job_id, NULL, &rows, &n, err);
	if (rc)
		return rc;
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_error_t je;
		json_t *rec = rows[i].record_json ? json_loads(rows[i].record_json, 0, &je) : NULL;
		if (json_is_object(rec))
			json_array_append(arr, rec);
		json_decref(rec);
	}
	qd_trial_rows_free(rows, n);
	if (!arr)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	*out = arr;
	return 0;
}

/* Empty the job's work directory for an attempt; out/trials/ stays when keep_trials (the
 * models of the trials an earlier attempt finished). */
static int work_reset(const char *work, const char *out_dir, bool keep_trials, struct qd_err *err)
{
	char *trials = qd_asprintf("%s/trials", out_dir), *kept = qd_asprintf("%s.trials", work);
	int rc = trials && kept ? 0 : qd_err_set(err, QD_ENOMEM, "", "out of memory");
	struct stat sb;
	bool moved = false;
	if (!rc && keep_trials) {
		if (stat(trials, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			qd_rm_rf(kept);
			moved = rename(trials, kept) == 0;
		} else {
			/* a crash between the two renames of an earlier reset */
			moved = stat(kept, &sb) == 0 && S_ISDIR(sb.st_mode);
		}
	}
	if (!rc) {
		qd_rm_rf(work);  /* leftovers of an interrupted attempt */
		rc = qd_mkdir_p(out_dir, err);
	}
	if (!rc && moved && rename(kept, trials))
		rc = qd_err_set(err, QD_EIO, "", "cannot restore the earlier attempt's trials: %s", strerror(errno));
	free(trials);
	free(kept);
	return rc;
}

int qd_work_sweep(struct qd_daemon *d, struct qd_store_conn *c, struct qd_err *err)
{
	char *work = qd_asprintf("%s/work", d->cfg.data_dir);
	if (!work)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	DIR *dir = opendir(work);
	struct dirent *de;
	int kept = 0;
	while (dir && (de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char id[64];
		snprintf(id, sizeof id, "%.*s", (int)strcspn(de->d_name, "."), de->d_name);
		struct qd_job_row job = { 0 };
		bool keep = qd_job_get(c, id, &job, NULL) == 0 && job.state == QD_JOB_QUEUED;
		qd_job_row_free(&job);
		char *p = qd_asprintf("%s/%s", work, de->d_name);
		if (p && !keep)
			qd_rm_rf(p);
		kept += keep;
		free(p);
	}
	if (dir)
		closedir(dir);
	if (kept)
		qd_log(QD_LOG_INFO, NULL, "kept the work directories of %d requeued job(s) for their resume", kept);
	int rc = qd_mkdir_p(work, err);
	free(work);
	return rc;
}

static int rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb; (void)type; (void)ftw;
	remove(path);
	return 0;
}

void qd_rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A search canceled by the user writes model.onnx (its best trial so far) and then
 * metrics.json with search.stopped "canceled" (passes/workflow.c); only then are they
 * complete enough to keep. */
static bool search_kept_best(const char *out_dir)
{
	char *mp = qd_asprintf("%s/metrics.json", out_dir), *op = qd_asprintf("%s/model.onnx", out_dir);
	json_t *m = mp ? json_load_file(mp, 0, NULL) : NULL;
	const char *stopped = json_string_value(json_object_get(json_object_get(m, "search"), "stopped"));
	bool ok = stopped && !strcmp(stopped, "canceled") && op && access(op, R_OK) == 0;
	json_decref(m);
	free(mp);
	free(op);
	return ok;
}

/* Import every regular file in out_dir as an artifact. */
static int import_artifacts(struct job_ctx *j, const char *out_dir, struct qd_err *err)
{
	struct qd_store *st = j->w->d->store;
	struct qd_artifact_row *have = NULL;
	size_t n_have = 0;
	int rc;
	bool got_model = false;
	if ((rc = qd_artifact_list(j->c, j->job_id, &have, &n_have, err)))
		return rc;
	DIR *dir = opendir(out_dir);
	if (!dir) {
		rc = qd_err_set(err, QD_EIO, "", "cannot list the job's output directory: %s", strerror(errno));
		goto out;
	}
	/* order: the table's files first (model first), then anything else */
	struct dirent *de;
	char **names = NULL;
	size_t nn = 0;
	for (size_t k = 0; k < QD_ARRAY_LEN(artifact_kinds); k++) {
		char **t = realloc(names, (nn + 1) * sizeof *names);
		if (!t)
			break;
		names = t;
		names[nn++] = strdup(artifact_kinds[k].file);
	}
	while ((de = readdir(dir))) {
		bool known = de->d_name[0] == '.';
		for (size_t k = 0; k < QD_ARRAY_LEN(artifact_kinds) && !known; k++)
			known = !strcmp(de->d_name, artifact_kinds[k].file);
		if (known)
			continue;
		char **t = realloc(names, (nn + 1) * sizeof *names);
		if (!t)
			break;
		names = t;
		names[nn++] = strdup(de->d_name);
	}
	closedir(dir);
	for (size_t i = 0; i < nn && !rc; i++) {
		if (!names[i])
			continue;
		const char *kind = "file", *ctype = "application/octet-stream";
		for (size_t k = 0; k < QD_ARRAY_LEN(artifact_kinds); k++)
			if (!strcmp(names[i], artifact_kinds[k].file)) {
				kind = artifact_kinds[k].kind;
				ctype = artifact_kinds[k].ctype;
			}
		size_t ln = strlen(names[i]);
		if (!strcmp(kind, "file") && ln > 5 && !strcmp(names[i] + ln - 5, ".json"))
			ctype = "application/json";
		if (!strcmp(kind, "file") && !strncmp(names[i], "pareto_", 7) && ln > 5 &&
		    !strcmp(names[i] + ln - 5, ".onnx"))
			kind = "pareto_model";   /* search_strategy.output_model_num */
		char *path = qd_asprintf("%s/%s", out_dir, names[i]);
		struct stat sb;
		if (!path || stat(path, &sb) || !S_ISREG(sb.st_mode)) {
			free(path);
			continue;  /* optional files (model.onnx.data, ...) may be absent */
		}
		char sha[65];
		uint64_t size = 0;
		rc = qd_blob_put_file(st, path, sha, &size, err);
		free(path);
		if (rc)
			break;
		bool dup = false;
		for (size_t h = 0; h < n_have; h++)
			if (have[h].name && !strcmp(have[h].name, names[i]) && !strcmp(have[h].sha256, sha))
				dup = true;
		if (!dup && (rc = qd_artifact_add(j->c, j->job_id, kind, names[i], sha, (int64_t)size,
						  ctype, NULL, err)))
			break;
		if (!strcmp(kind, "model"))
			got_model = true;
		job_log(j, QD_LOG_INFO, "artifact %s: %llu bytes, sha256 %s", names[i],
			(unsigned long long)size, sha);
	}
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	if (!rc && !got_model)
		rc = qd_err_set(err, QD_EINTERNAL, "model.onnx", "the workflow finished without writing 'model.onnx'");
out:
	qd_artifact_rows_free(have, n_have);
	return rc;
}

/* Each dataset reference (dst_ id) of the workflow → its blob file. *out new. */
static int data_paths_build(struct qd_store_conn *c, const json_t *wf, json_t **out, struct qd_err *err)
{
	json_t *refs = qd_workflow_dataset_refs(wf), *paths = json_object();
	struct qd_store *st = qd_store_conn_store(c);
	size_t pmax = qd_blob_path_max(st), i;
	char *path = malloc(pmax);
	json_t *x;
	int rc = 0;
	if (!refs || !paths || !path) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	json_array_foreach(refs, i, x) {
		struct qd_dataset_row row = { 0 };
		const char *ref = json_string_value(x);
		if ((rc = qd_dataset_get(c, ref, &row, err))) {
			if (rc == -QD_ENOT_FOUND)
				rc = qd_err_set(err, QD_ENOT_FOUND, "dataset", "the job's dataset '%s' was deleted", ref);
			goto out;
		}
		rc = qd_blob_path(st, row.sha256, path, pmax, err);
		qd_dataset_row_free(&row);
		if (rc)
			goto out;
		json_object_set_new(paths, ref, json_string(path));
	}
out:
	free(path);
	json_decref(refs);
	if (rc) {
		json_decref(paths);
		paths = NULL;
	}
	*out = paths;
	return rc;
}

/* Trials a search job runs at once: 1 + the idle workers it borrows (see DESIGN). */
static int workers_borrow(struct qd_worker *w, struct qd_store_conn *c, const json_t *wf)
{
	struct qd_daemon *d = w->d;
	struct qd_search_strategy ss = { 0 };
	int lim = d->cfg.max_workers_per_job > 0 ? (int)d->cfg.max_workers_per_job : d->n_workers - 1;
	if (lim > d->n_workers)
		lim = d->n_workers;
	if (qd_search_strategy_parse(wf, &ss, NULL) || !ss.enabled || lim < 2)
		return 1;
	if (ss.max_iter > 0 && ss.max_iter < lim)
		lim = (int)ss.max_iter;
	struct qd_store_counts sc;
	if (qd_store_counts(c, &sc, NULL) || sc.jobs[QD_JOB_QUEUED] > 0)
		return 1;
	int got = 1;
	pthread_mutex_lock(&d->mu);
	/* a worker woken by the same submission may still be looking at the (now empty)
	 * queue: give it up to 100 ms to go back to sleep */
	for (int tries = 0; tries < 20; tries++) {
		bool busy = false;
		for (int i = 0; i < d->n_workers; i++)
			busy = busy || (&d->workers[i] != w && d->workers[i].claiming);
		if (!busy)
			break;
		pthread_mutex_unlock(&d->mu);
		usleep(5000);
		pthread_mutex_lock(&d->mu);
	}
	for (int i = 0; i < d->n_workers && got < lim; i++) {
		struct qd_worker *o = &d->workers[i];
		if (o != w && o->alive && !o->lent_to && !o->claiming && !o->job_id[0]) {
			o->lent_to = w->idx + 1;
			got++;
		}
	}
	pthread_mutex_unlock(&d->mu);
	return got;
}

static void workers_return(struct qd_worker *w)
{
	struct qd_daemon *d = w->d;
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->n_workers; i++)
		if (d->workers[i].lent_to == w->idx + 1)
			d->workers[i].lent_to = 0;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->mu);
}

/* A model uploaded as a tar: extracted into <work>/in (work_reset emptied it), *model_path
 * replaced by its .onnx there, the external data next to it. */
static int unpack_model(struct job_ctx *j, const char *work, char **model_path, struct qd_err *err)
{
	struct qd_model_tar_info ti = { 0 };
	char *dir = qd_asprintf("%s/in", work), *onnx = NULL;
	double t0 = qd_now_mono();
	int rc = dir ? 0 : qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if (!rc && !(rc = qd_model_tar_extract(*model_path, dir, 0, &ti, err)) &&
	    !(onnx = qd_asprintf("%s/%s", dir, ti.onnx_name)))
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if (!rc) {
		job_log(j, QD_LOG_INFO, "model tar unpacked: %s and %zu data file(s), %llu bytes in %.2f s",
			ti.onnx_name, json_array_size(ti.files) - 1, (unsigned long long)ti.total_bytes,
			qd_now_mono() - t0);
		free(*model_path);
		*model_path = onnx;
	}
	free(dir);
	qd_model_tar_info_free(&ti);
	return rc;
}

static void run_job(struct qd_worker *w, struct qd_store_conn *c, const struct qd_job_row *job)
{
	struct qd_daemon *d = w->d;
	struct job_ctx j = { .w = w, .c = c, .job_id = job->id };
	struct qd_model_row model = { 0 };
	struct qd_err err = { 0 }, e2 = { 0 };
	struct qd_job_outcome oc = { 0 };
	bool supervised = false, crashed = false;
	json_t *wf = NULL, *result = NULL, *data_paths = NULL, *resume = NULL;
	char *work = NULL, *out_dir = NULL, *model_path = NULL, *result_txt = NULL;
	int rc;
	double t0 = qd_now_mono();
	pthread_mutex_init(&j.mu, NULL);
	pthread_mutex_lock(&d->mu);
	snprintf(w->job_id, sizeof w->job_id, "%s", job->id);
	w->claiming = false;
	w->cancel = 0;
	pthread_mutex_unlock(&d->mu);
	int parallel = 1;

	job_log(&j, QD_LOG_INFO, "job started on %s (attempt %d of %d)", w->name, job->attempts,
		job->max_attempts);
	if (!job->model_id[0]) {
		rc = qd_err_set(&err, QD_ENOT_FOUND, "model", "the job's model was deleted");
		goto done;
	}
	if ((rc = qd_model_get(c, job->model_id, &model, &err)))
		goto done;
	size_t pmax = qd_blob_path_max(d->store);
	if (!(model_path = malloc(pmax))) {
		rc = qd_err_set(&err, QD_ENOMEM, "", "out of memory");
		goto done;
	}
	if ((rc = qd_blob_path(d->store, model.sha256, model_path, pmax, &err)))
		goto done;
	json_error_t je;
	if (!(wf = json_loads(job->workflow_json, 0, &je))) {
		rc = qd_err_set(&err, QD_EPARSE, "workflow", "cannot parse the stored workflow: %s", je.text);
		goto done;
	}
	work = qd_asprintf("%s/work/%s", qd_store_data_dir(d->store), job->id);
	out_dir = qd_asprintf("%s/out", work ? work : "");
	if (!work || !out_dir) {
		rc = qd_err_set(&err, QD_ENOMEM, "", "out of memory");
		goto done;
	}
	if ((rc = resume_records(&j, &resume, &err)))
		goto done;
	if ((rc = work_reset(work, out_dir, json_array_size(resume) > 0, &err)))
		goto done;
	if (json_array_size(resume))
		job_log(&j, QD_LOG_INFO, "resuming the search: %zu trial(s) finished by earlier attempts",
			json_array_size(resume));
	if (qd_model_form_of(model_path) != QD_MODEL_FORM_ONNX &&
	    (rc = unpack_model(&j, work, &model_path, &err)))
		goto done;
	if ((parallel = workers_borrow(w, c, wf)) > 1)
		job_log(&j, QD_LOG_INFO, "search on %d workers (%d borrowed; max_workers_per_job %lld)", parallel,
			parallel - 1, (long long)d->cfg.max_workers_per_job);
	if ((rc = data_paths_build(c, wf, &data_paths, &err)))
		goto done;
	struct qd_job_sup sup = { .job_id = job->id, .model_path = model_path,
				  .work_dir = work, .out_dir = out_dir, .workflow = wf,
				  .data_paths = data_paths, .threads = (int)d->cfg.engine_threads,
				  .log_level = qd_config_log_level(&d->cfg),
				  .limits = qd_job_limits_of(&d->cfg, wf),
				  .kill_grace_seconds = d->cfg.kill_grace_seconds, .stop = &w->cancel,
				  .attempt = job->attempts, .max_attempts = job->max_attempts,
				  .resume = json_array_size(resume) ? resume : NULL, .parallel = parallel,
				  .hooks = { .ud = &j, .progress = hook_progress, .log = hook_log,
					     .trial = hook_trial } };
	if ((rc = qd_job_supervise(&sup, &oc, &err)))
		goto done;
	supervised = true;
	rc = qd_job_outcome_error(&sup, &oc, &err);
	result = oc.result ? json_incref(oc.result) : NULL;
	if (rc == -QD_ECRASHED || (rc && !oc.reported && !oc.limit && !oc.stopped)) {
		/* a crash may be transient (the OOM killer, a flaky host): requeue until the
		 * attempt limit; a model that crashes its job every time then fails */
		crashed = true;
	}
	char how[48];
	if (oc.signal)
		snprintf(how, sizeof how, "killed by %s", oc.signal_name);
	else
		snprintf(how, sizeof how, "exit status %d", oc.exit_code);
	job_log(&j, rc ? QD_LOG_WARN : QD_LOG_INFO, "attempt %d of %d: %s after %.2f s (process %d, %s, peak "
		"address space %lld MiB, peak RSS %lld MiB)", job->attempts, job->max_attempts,
		rc ? qd_err_name(rc) : "OK", oc.seconds, oc.pid, how,
		oc.vm_peak_kb >= 0 ? oc.vm_peak_kb / 1024 : -1, oc.max_rss_kb / 1024);
	if (!rc && w->cancel)
		rc = qd_err_set(&err, QD_ECANCELED, "", "job canceled");
	if (!rc)
		rc = import_artifacts(&j, out_dir, &err);
	else if (rc == -QD_ECANCELED && !d->aborting && search_kept_best(out_dir)) {
		/* a canceled search still wrote its best model so far and metrics.json */
		struct qd_err ie = { 0 };
		if (import_artifacts(&j, out_dir, &ie) == 0)
			job_log(&j, QD_LOG_INFO, "search canceled: the best model so far and metrics.json are the "
				"job's artifacts");
		else
			job_log(&j, QD_LOG_WARN, "search canceled: cannot keep the best model so far: %s", ie.msg);
	}
	if (!rc && !(result_txt = result ? json_dumps(result, JSON_COMPACT) : strdup("{}")))
		rc = qd_err_set(&err, QD_ENOMEM, "", "out of memory");
done:;
	enum qd_job_state final;
	double secs = qd_now_mono() - t0;
	bool stop_requeue = rc == -QD_ECANCELED && d->aborting;
	bool crash_requeue = rc && crashed && job->attempts < job->max_attempts && !d->stopping;
	/* a requeued job keeps its work directory: the next attempt resumes from its trials;
	 * otherwise it goes before the final state is visible */
	if (work && !stop_requeue && !crash_requeue && d->cfg.log_level && strcmp(d->cfg.log_level, "debug"))
		qd_rm_rf(work);
	if (!rc) {
		final = QD_JOB_SUCCEEDED;
		job_log(&j, QD_LOG_INFO, "job succeeded in %.2f s", secs);
		rc = qd_job_finish_succeeded(c, job->id, result_txt, &e2);
	} else if (stop_requeue) {
		final = QD_JOB_QUEUED;
		job_log(&j, QD_LOG_WARN, "job stopped by shutdown after %.2f s; requeued", secs);
		rc = qd_job_requeue(c, job->id, &e2);
	} else if (crash_requeue) {
		final = QD_JOB_QUEUED;
		job_log(&j, QD_LOG_WARN, "%s; requeued for attempt %d of %d", err.msg, job->attempts + 1,
			job->max_attempts);
		rc = qd_job_requeue(c, job->id, &e2);
	} else if (rc == -QD_ECANCELED) {
		final = QD_JOB_CANCELED;
		job_log(&j, QD_LOG_INFO, "job canceled after %.2f s", secs);
		rc = qd_job_finish_canceled(c, job->id, &e2);
	} else {
		final = QD_JOB_FAILED;
		char msg[700];
		if (err.field[0] && !strstr(err.msg, err.field))
			snprintf(msg, sizeof msg, "%s (at '%s')", err.msg[0] ? err.msg : qd_err_msg(rc), err.field);
		else
			snprintf(msg, sizeof msg, "%s", err.msg[0] ? err.msg : qd_err_msg(rc));
		job_log(&j, QD_LOG_ERROR, "job failed: %s", msg);
		rc = qd_job_finish_failed(c, job->id, qd_err_name(rc), msg, &e2);
	}
	if (rc)
		qd_log(QD_LOG_ERROR, job->id, "cannot record the job's end (%s): %s",
		       qd_job_state_name(final), e2.msg);
	else if (final != QD_JOB_QUEUED)
		qd_metrics_job_done(&d->metrics, final, secs);
	if (parallel > 1)
		workers_return(w);
	pthread_mutex_lock(&d->mu);
	w->job_id[0] = 0;
	pthread_mutex_unlock(&d->mu);
	pthread_mutex_destroy(&j.mu);
	json_decref(wf);
	json_decref(result);
	json_decref(data_paths);
	json_decref(resume);
	if (supervised)
		qd_job_outcome_free(&oc);
	free(work);
	free(out_dir);
	free(model_path);
	free(result_txt);
	qd_model_row_free(&model);
}

static void *worker_main(void *arg)
{
	struct qd_worker *w = arg;
	struct qd_daemon *d = w->d;
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	while (!d->stopping && qd_store_connect(d->store, &c, &err)) {
		qd_log(QD_LOG_ERROR, NULL, "%s: cannot connect to the store: %s", w->name, err.msg);
		sleep(1);
	}
	w->alive = 1;
	while (!d->stopping) {
		struct qd_job_row job = { 0 };
		bool claimed = false;
		pthread_mutex_lock(&d->mu);
		bool lent = w->lent_to != 0;
		w->claiming = !lent;
		pthread_mutex_unlock(&d->mu);
		if (!lent && qd_job_claim(c, w->name, &job, &claimed, &err)) {
			qd_log(QD_LOG_ERROR, NULL, "%s: cannot claim a job: %s", w->name, err.msg);
			claimed = false;
		}
		if (claimed) {
			run_job(w, c, &job);
			qd_job_row_free(&job);
			continue;
		}
		pthread_mutex_lock(&d->mu);
		w->claiming = false;
		if (!d->stopping) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 2;
			pthread_cond_timedwait(&d->wake, &d->mu, &ts);
		}
		pthread_mutex_unlock(&d->mu);
	}
	qd_store_disconnect(c);
	w->alive = 0;
	return NULL;
}

int qd_workers_start(struct qd_daemon *d, struct qd_err *err)
{
	int n = (int)d->cfg.workers;
	d->workers = calloc((size_t)n, sizeof *d->workers);
	if (!d->workers)
		return qd_err_set(err, QD_ENOMEM, "workers", "out of memory");
	d->n_workers = n;
	for (int i = 0; i < n; i++) {
		struct qd_worker *w = &d->workers[i];
		w->d = d;
		w->idx = i;
		snprintf(w->name, sizeof w->name, "worker-%d", i);
		int e = pthread_create(&w->th, NULL, worker_main, w);
		if (e)
			return qd_err_set(err, QD_EINTERNAL, "workers", "cannot start worker thread: %s", strerror(e));
		w->started = true;
	}
	/* ready means every worker has its store connection: wait for them (up to 10 s; a
	 * worker that cannot connect keeps retrying and /readyz says so) */
	for (int i = 0; i < 1000 && qd_workers_alive(d) < n; i++)
		usleep(10 * 1000);
	return 0;
}

void qd_workers_kick(struct qd_daemon *d)
{
	pthread_mutex_lock(&d->mu);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->mu);
}

int qd_workers_busy(struct qd_daemon *d)
{
	int n = 0;
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->n_workers; i++)
		n += d->workers[i].job_id[0] != 0;
	pthread_mutex_unlock(&d->mu);
	return n;
}

int qd_workers_alive(struct qd_daemon *d)
{
	int n = 0;
	for (int i = 0; i < d->n_workers; i++)
		n += d->workers[i].alive != 0;
	return n;
}

void qd_workers_poll_cancel(struct qd_daemon *d, struct qd_store_conn *c)
{
	char ids[d->n_workers > 0 ? d->n_workers : 1][64];
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->n_workers; i++)
		memcpy(ids[i], d->workers[i].job_id, 64);
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < d->n_workers; i++) {
		if (!ids[i][0] || d->workers[i].cancel)
			continue;
		bool req = false;
		struct qd_err e = { 0 };
		if (!qd_job_cancel_requested(c, ids[i], &req, &e) && req) {
			pthread_mutex_lock(&d->mu);
			if (!strcmp(d->workers[i].job_id, ids[i]))
				d->workers[i].cancel = 1;
			pthread_mutex_unlock(&d->mu);
		}
	}
}

int qd_workers_stop(struct qd_daemon *d)
{
	pthread_mutex_lock(&d->mu);
	d->stopping = 1;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->mu);
	double wd = qd_sd_watchdog_interval(), last_wd = qd_now_mono();
	double deadline = qd_now_mono() + (double)d->cfg.grace_seconds;
	int busy = qd_workers_busy(d);
	if (busy)
		qd_log(QD_LOG_INFO, NULL, "waiting up to %lld s for %d running job(s)", (long long)d->cfg.grace_seconds, busy);
	while ((busy = qd_workers_busy(d)) && qd_now_mono() < deadline) {
		usleep(100 * 1000);
		if (wd > 0 && qd_now_mono() - last_wd >= wd) {
			qd_sd_notify("WATCHDOG=1");
			last_wd = qd_now_mono();
		}
	}
	if (busy) {
		qd_log(QD_LOG_WARN, NULL, "grace period over: stopping %d running job(s); they will be requeued", busy);
		d->aborting = 1;
		for (int i = 0; i < d->n_workers; i++)
			d->workers[i].cancel = 1;
	}
	/* a pass that never looks at the cancel flag must not hang the shutdown: give up
	 * after 15 s; the job stays running in the database and is recovered at start-up */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 15;
	int stuck = 0;
	for (int i = 0; i < d->n_workers; i++)
		if (d->workers[i].started) {
			if (pthread_timedjoin_np(d->workers[i].th, NULL, &ts)) {
				stuck++;
				continue;
			}
			d->workers[i].started = false;
		}
	return stuck;
}
