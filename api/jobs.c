/* /v1/jobs: submit a workflow for a stored model (validated against the pass registry at
 * submit time, then queued for the workers), list, get, delete, cancel, read the job log,
 * list artifacts and search trials; /v1/artifacts/{id} downloads one artifact. */
#include "api/api.h"
#include "passes/workflow.h"
#include "passes/data_config.h"
#include "passes/passes.h"
#include "onnx/onnx.h"
#include "search/search.h"

#include <stdlib.h>
#include <string.h>

/* Job JSON with its artifacts. new (NULL on error, r->err set). */
static json_t *job_json(struct qd_req *r, struct qd_store_conn *c, const struct qd_job_row *job)
{
	struct qd_artifact_row *arts = NULL;
	size_t n = 0;
	if (qd_artifact_list(c, job->id, &arts, &n, &r->err))
		return NULL;
	json_t *j = qd_job_to_json(job, arts, n);
	qd_artifact_rows_free(arts, n);
	if (j) {
		char url[128];
		snprintf(url, sizeof url, "/v1/jobs/%s/log", job->id);
		json_object_set_new(j, "log_url", json_string(url));
	}
	return j;
}

/* QnnPreprocess / DynamicToFixedShape parameters against the stored model's interface. */
static int check_model_io(const json_t *wf, const struct qd_model_row *model, struct qd_err *err)
{
	json_t *sum = model->summary_json ? json_loads(model->summary_json, 0, NULL) : NULL;
	struct qd_model *skel = sum ? qd_model_from_summary_json(sum) : NULL;
	json_decref(sum);
	if (!skel)
		return 0; /* no stored summary: the run checks the same at run time */
	int rc = qd_qnn_check_io(wf, skel, err);
	qd_model_free(skel);
	return rc;
}

int qd_api_jobs_create(struct qd_req *r)
{
	struct qd_daemon *d = r->d;
	json_error_t je;
	json_t *body = NULL, *wf = NULL;
	char *wf_txt = NULL;
	struct qd_job_row job = { 0 };
	struct qd_model_row model = { 0 };
	int rc;
	if (!r->body.len) {
		rc = qd_err_set(&r->err, QD_EPARSE, "body", "empty request body: expected a workflow JSON object");
		goto out;
	}
	body = json_loadb((const char *)r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &je);
	if (!body) {
		rc = qd_err_set(&r->err, QD_EPARSE, "body", "cannot parse request body as JSON: line %d column %d: %s",
				je.line, je.column, je.text);
		goto out;
	}
	if (!json_is_object(body)) {
		rc = qd_err_set(&r->err, QD_EPARSE, "body", "request body must be a JSON object");
		goto out;
	}
	json_t *mid = json_object_get(body, "model");
	if (!mid) {
		rc = qd_err_set(&r->err, QD_EINVAL, "model", "missing 'model': the id of an uploaded model (POST /v1/models)");
		goto out;
	}
	if (!json_is_string(mid) || !json_string_length(mid)) {
		rc = qd_err_set(&r->err, QD_EINVAL, "model", "'model' must be a non-empty string (a model id)");
		goto out;
	}
	/* the workflow is the body without "model" */
	if (!(wf = json_deep_copy(body))) {
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	json_object_del(wf, "model");
	/* "datasets": {"<data config>": "<dataset id>"} binds an Olive file's data configs */
	qd_workflow_bind_datasets(wf);
	json_t *problems = NULL;
	if ((rc = qd_workflow_check(wf, QD_WF_CHECK_MODEL_BOUND, &problems, NULL, &r->err))) {
		size_t np = json_array_size(problems);
		if (np > 1) {
			char more[96];
			snprintf(more, sizeof more, " (and %zu more problem%s: see error.details.problems)", np - 1,
				 np > 2 ? "s" : "");
			size_t l = strlen(r->err.msg);
			snprintf(r->err.msg + l, sizeof r->err.msg - l, "%s", more);
		}
		r->err_problems = problems;
		goto out;
	}
	json_decref(problems);
	if ((rc = qd_job_limits_check(&d->cfg, wf, &r->err)))
		goto out;
	struct qd_store_conn *c = qd_req_store(r);
	if (!c) {
		rc = -r->err.code;
		goto out;
	}
	if ((rc = qd_model_get(c, json_string_value(mid), &model, &r->err))) {
		if (rc == -QD_ENOT_FOUND)
			rc = qd_err_set(&r->err, QD_ENOT_FOUND, "model", "unknown model '%s'", json_string_value(mid));
		goto out;
	}
	/* the datasets must exist and fit the model; the job row's workflow_json then names
	 * them, which is what makes DELETE /v1/datasets/{id} answer 409 while it is queued */
	if ((rc = qd_api_check_job_datasets(c, wf, &model, &r->err)))
		goto out;
	/* parameters naming the model's inputs and outputs name real ones */
	if ((rc = check_model_io(wf, &model, &r->err)))
		goto out;
	if (!(wf_txt = json_dumps(wf, JSON_COMPACT))) {  /* key order kept: it is the pass order */
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	rc = qd_job_create(c, model.id, wf_txt, (int)d->cfg.max_attempts, (int)d->cfg.max_queued, &job, &r->err);
	if (rc) {
		if (rc == -QD_EQUEUE_FULL && !r->err.field[0])
			snprintf(r->err.field, sizeof r->err.field, "queue");
		goto out;
	}
	qd_log(QD_LOG_INFO, job.id, "job queued for model %s", model.id);
	qd_workers_kick(d);
	if ((rc = qd_req_json(r, 202, job_json(r, c, &job))))
		goto out;
	char loc[128];
	snprintf(loc, sizeof loc, "/v1/jobs/%s", job.id);
	qd_req_add_header(r, MHD_HTTP_HEADER_LOCATION, loc);
out:
	json_decref(body);
	json_decref(wf);
	free(wf_txt);
	qd_job_row_free(&job);
	qd_model_row_free(&model);
	return rc;
}

int qd_api_jobs_list(struct qd_req *r)
{
	struct qd_page pg;
	struct qd_job_row *rows = NULL;
	size_t n = 0;
	unsigned mask = 0;
	int rc;
	if ((rc = qd_req_page(r, &pg)))
		return rc;
	const char *states = qd_req_query(r, "state");
	char extra[160] = "";
	if (states && *states) {
		if (strlen(states) >= 120)
			return qd_err_set(&r->err, QD_EINVAL, "state", "'state' filter is too long");
		char buf[128];
		snprintf(buf, sizeof buf, "%s", states);
		for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			enum qd_job_state s;
			if (qd_job_state_parse(t, &s, &r->err)) {
				snprintf(r->err.field, sizeof r->err.field, "state");
				return -QD_EINVAL;
			}
			mask |= QD_JOB_MASK(s);
		}
		snprintf(extra, sizeof extra, "state=%s", states);
	}
	struct qd_store_conn *c = qd_req_store(r);
	if (!c)
		return -r->err.code;
	if ((rc = qd_job_list(c, mask, &pg, &rows, &n, &r->err)))
		return rc;
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++)
	{
		json_t *j = qd_job_to_json(&rows[i], NULL, 0);
		json_object_del(j, "artifacts");
		json_array_append_new(items, j);
	}
	qd_job_rows_free(rows, n);
	return qd_req_list(r, items, &pg, extra);
}

int qd_api_jobs_get(struct qd_req *r)
{
	struct qd_job_row job = { 0 };
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_job_get(c, r->id, &job, &r->err)))
		return rc;
	json_t *j = job_json(r, c, &job);
	qd_job_row_free(&job);
	if (!j)
		return r->err.code ? -r->err.code : -QD_ENOMEM;
	return qd_req_json(r, 200, j);
}

int qd_api_jobs_delete(struct qd_req *r)
{
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_job_delete(c, r->id, &r->err)))
		return rc;
	qd_log(QD_LOG_INFO, r->id, "job deleted");
	return qd_req_empty(r, 204);
}

int qd_api_jobs_cancel(struct qd_req *r)
{
	struct qd_job_row job = { 0 };
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_job_cancel(c, r->id, &job, &r->err)))
		return rc;
	qd_log(QD_LOG_INFO, r->id, "cancel requested (state %s)", qd_job_state_name(job.state));
	if (job.state == QD_JOB_RUNNING)
		qd_workers_kick(r->d);
	json_t *j = job_json(r, c, &job);
	unsigned status = job.state == QD_JOB_CANCELED ? 200 : 202;
	qd_job_row_free(&job);
	if (!j)
		return r->err.code ? -r->err.code : -QD_ENOMEM;
	return qd_req_json(r, status, j);
}

int qd_api_jobs_log(struct qd_req *r)
{
	struct qd_store_conn *c = qd_req_store(r);
	struct qd_job_row job = { 0 };
	struct qd_log_line *lines = NULL;
	size_t n = 0;
	int64_t after = 0;
	int limit = 1000, rc;
	if (!c)
		return -r->err.code;
	const char *a = qd_req_query(r, "after"), *l = qd_req_query(r, "limit");
	if (a) {
		char *end;
		long long v = strtoll(a, &end, 10);
		if (!*a || *end || v < 0)
			return qd_err_set(&r->err, QD_EINVAL, "after", "invalid 'after' '%s' (want a log sequence number >= 0)", a);
		after = v;
	}
	if (l) {
		char *end;
		long v = strtol(l, &end, 10);
		if (!*l || *end || v < 1 || v > 10000)
			return qd_err_set(&r->err, QD_EINVAL, "limit", "invalid 'limit' '%s' (want 1..10000)", l);
		limit = (int)v;
	}
	if ((rc = qd_job_get(c, r->id, &job, &r->err)))
		return rc;
	if ((rc = qd_job_log_list(c, r->id, after, limit, &lines, &n, &r->err)))
		goto out;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:I, s:f, s:s, s:s}", "seq", (json_int_t)lines[i].seq,
						     "ts", lines[i].ts, "level", lines[i].level,
						     "line", lines[i].line ? lines[i].line : ""));
	int64_t next = n ? lines[n - 1].seq : after;
	rc = qd_req_json(r, 200, json_pack("{s:s, s:s, s:o, s:I, s:b}", "job", job.id, "state",
					   qd_job_state_name(job.state), "lines", arr, "next_after",
					   (json_int_t)next, "more", n == (size_t)limit));
out:
	qd_log_lines_free(lines, n);
	qd_job_row_free(&job);
	return rc;
}

int qd_api_jobs_artifacts(struct qd_req *r)
{
	struct qd_store_conn *c = qd_req_store(r);
	struct qd_job_row job = { 0 };
	struct qd_artifact_row *arts = NULL;
	size_t n = 0;
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_job_get(c, r->id, &job, &r->err)))
		return rc;
	qd_job_row_free(&job);
	if ((rc = qd_artifact_list(c, r->id, &arts, &n, &r->err)))
		return rc;
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(items, qd_artifact_to_json(&arts[i]));
	qd_artifact_rows_free(arts, n);
	return qd_req_list(r, items, NULL, NULL);
}

/* The search's trials in trial order, paged. A job without search_strategy answers an
 * empty page with "search": false and the reason; a search job that has not finished a
 * trial yet an empty page with "search": true. */
int qd_api_jobs_trials(struct qd_req *r)
{
	struct qd_store_conn *c = qd_req_store(r);
	struct qd_job_row job = { 0 };
	struct qd_trial_row *rows = NULL;
	struct qd_page pg;
	size_t n = 0;
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_req_page(r, &pg)))
		return rc;
	if ((rc = qd_job_get(c, r->id, &job, &r->err)))
		return rc;
	json_error_t je;
	json_t *wf = json_loads(job.workflow_json, 0, &je), *fields;
	struct qd_search_strategy ss = { 0 };
	struct qd_err se = { 0 };
	bool search = wf && qd_search_strategy_parse(wf, &ss, &se) == 0 && ss.enabled;
	json_decref(wf);
	if (!search) {
		fields = json_pack("{s:s, s:b, s:s}", "job", job.id, "search", 0, "reason",
				   "no search ran: the job's workflow has no search_strategy (its passes ran once "
				   "with their given or default parameters)");
		qd_job_row_free(&job);
		return qd_req_list_with(r, json_array(), NULL, NULL, fields);
	}
	if ((rc = qd_trial_list(c, r->id, &pg, &rows, &n, &r->err)))
		goto out;
	json_t *items = json_array();
	for (size_t i = 0; items && i < n; i++)
		json_array_append_new(items, qd_trial_to_json(&rows[i]));
	json_error_t je2;
	json_t *prog = job.search_json ? json_loads(job.search_json, 0, &je2) : NULL;
	fields = json_pack("{s:s, s:b, s:o}", "job", job.id, "search", 1, "progress", prog ? prog : json_null());
	rc = qd_req_list_with(r, items, &pg, NULL, fields);
out:
	qd_trial_rows_free(rows, n);
	qd_job_row_free(&job);
	return rc;
}

int qd_api_artifacts_get(struct qd_req *r)
{
	struct qd_artifact_row a = { 0 };
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_artifact_get(c, r->id, &a, &r->err)))
		return rc;
	rc = qd_req_send_blob(r, a.sha256, a.content_type, a.name);
	qd_artifact_row_free(&a);
	return rc;
}
