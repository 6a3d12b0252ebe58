/* store/ jobs: the queue. DESIGN: a job is a row whose state only changes through
 * qd_job_transition(), which checks the move against one table (job_moves[]) and writes
 * the row and updated_at in one BEGIN IMMEDIATE transaction. Workers claim the oldest
 * queued job the same way, so two workers (threads or processes) never get one job.
 * Cancel is immediate for queued jobs and a flag for running ones; start-up recovery
 * requeues jobs a crash left running, failing those out of attempts. */
#define _GNU_SOURCE
#include "store_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[QD_JOB__COUNT] = {
	[QD_JOB_QUEUED] = "queued",
	[QD_JOB_RUNNING] = "running",
	[QD_JOB_SUCCEEDED] = "succeeded",
	[QD_JOB_FAILED] = "failed",
	[QD_JOB_CANCELED] = "canceled",
};

/* The transition table: job_moves[from] is the mask of legal targets. */
static const unsigned job_moves[QD_JOB__COUNT] = {
	[QD_JOB_QUEUED] = QD_JOB_MASK(QD_JOB_RUNNING) | QD_JOB_MASK(QD_JOB_CANCELED),
	[QD_JOB_RUNNING] = QD_JOB_MASK(QD_JOB_SUCCEEDED) | QD_JOB_MASK(QD_JOB_FAILED) |
			   QD_JOB_MASK(QD_JOB_CANCELED) | QD_JOB_MASK(QD_JOB_QUEUED),
	[QD_JOB_SUCCEEDED] = 0,
	[QD_JOB_FAILED] = 0,
	[QD_JOB_CANCELED] = 0,
};

const char *qd_job_state_name(enum qd_job_state s)
{
	return (unsigned)s < QD_JOB__COUNT ? state_names[s] : "unknown";
}

int qd_job_state_parse(const char *name, enum qd_job_state *out, struct qd_err *err)
{
	for (int i = 0; name && i < QD_JOB__COUNT; i++)
		if (!strcmp(name, state_names[i])) {
			*out = (enum qd_job_state)i;
			return 0;
		}
	return qd_err_set(err, QD_EINVAL, "state", "unknown job state '%.32s' (expected queued, "
			  "running, succeeded, failed or canceled)", name ? name : "");
}

bool qd_job_state_terminal(enum qd_job_state s)
{
	return (unsigned)s < QD_JOB__COUNT && (QD_JOB_MASK(s) & QD_JOB_MASK_TERMINAL);
}

bool qd_job_transition_legal(enum qd_job_state from, enum qd_job_state to)
{
	return (unsigned)from < QD_JOB__COUNT && (unsigned)to < QD_JOB__COUNT &&
	       (job_moves[from] & QD_JOB_MASK(to));
}

/* ---- rows ---- */

void qd_job_row_free(struct qd_job_row *r)
{
	if (!r)
		return;
	free(r->progress_msg);
	free(r->error_code);
	free(r->error_message);
	free(r->workflow_json);
	free(r->result_json);
	free(r->worker);
	free(r->search_json);
	r->progress_msg = r->error_code = r->error_message = NULL;
	r->workflow_json = r->result_json = r->worker = r->search_json = NULL;
}

void qd_job_rows_free(struct qd_job_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		qd_job_row_free(&rows[i]);
	free(rows);
}

static int parse_state_col(sqlite3_stmt *s, int i, enum qd_job_state *out)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	for (int k = 0; t && k < QD_JOB__COUNT; k++)
		if (!strcmp(t, state_names[k])) {
			*out = (enum qd_job_state)k;
			return 0;
		}
	return -1;
}

/* Reads QD_JOB_COLS; returns the row's seq via *seq (may be NULL). */
static int job_read(sqlite3_stmt *s, struct qd_job_row *r, int64_t *seq, struct qd_err *err)
{
	memset(r, 0, sizeof *r);
	if (seq)
		*seq = sqlite3_column_int64(s, 0);
	st_col_copy(s, 1, r->id, sizeof r->id);
	st_col_copy(s, 2, r->model_id, sizeof r->model_id);
	if (parse_state_col(s, 3, &r->state) < 0)
		return qd_err_set(err, QD_EDB, "", "job '%s' has unknown state '%s'", r->id,
				  (const char *)sqlite3_column_text(s, 3));
	r->progress = sqlite3_column_double(s, 4);
	r->progress_msg = st_col_dup(s, 5);
	r->attempts = sqlite3_column_int(s, 6);
	r->max_attempts = sqlite3_column_int(s, 7);
	r->error_code = st_col_dup(s, 8);
	r->error_message = st_col_dup(s, 9);
	r->cancel_requested = sqlite3_column_int(s, 10) != 0;
	r->workflow_json = st_col_dup(s, 11);
	r->result_json = st_col_dup(s, 12);
	r->worker = st_col_dup(s, 13);
	r->created_at = st_col_time(s, 14);
	r->started_at = st_col_time(s, 15);
	r->finished_at = st_col_time(s, 16);
	r->updated_at = st_col_time(s, 17);
	r->search_json = st_col_dup(s, 18);
	static const int text_cols[] = { 5, 8, 9, 11, 12, 13, 18 };
	char **dst[] = { &r->progress_msg, &r->error_code, &r->error_message, &r->workflow_json,
			 &r->result_json, &r->worker, &r->search_json };
	for (size_t i = 0; i < QD_ARRAY_LEN(text_cols); i++)
		if (sqlite3_column_type(s, text_cols[i]) != SQLITE_NULL && !*dst[i]) {
			qd_job_row_free(r);
			return qd_err_set(err, QD_ENOMEM, "", "out of memory");
		}
	if (!r->workflow_json && !(r->workflow_json = strdup("{}"))) {
		qd_job_row_free(r);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	return 0;
}

/* 0 found (out filled, or only checked when out is NULL), QD_ENOT_FOUND, or error. */
static int job_fetch(struct qd_store_conn *c, const char *id, struct qd_job_row *out,
		     struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, ST_JOB_GET, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, id);
	int rc = sqlite3_step(s), r;
	if (rc == SQLITE_ROW) {
		struct qd_job_row tmp;
		r = job_read(s, out ? out : &tmp, NULL, err);
		if (r == 0 && !out)
			qd_job_row_free(&tmp);
	} else if (rc == SQLITE_DONE) {
		r = qd_err_set(err, QD_ENOT_FOUND, "id", "job '%.64s' not found", id ? id : "");
	} else {
		r = st_db_err(c, rc, "read job", err);
	}
	sqlite3_reset(s);
	return r;
}

static int job_state(struct qd_store_conn *c, const char *id, enum qd_job_state *st,
		     struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, ST_JOB_STATE, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, id);
	int rc = sqlite3_step(s), r = 0;
	if (rc == SQLITE_ROW) {
		if (parse_state_col(s, 0, st) < 0)
			r = qd_err_set(err, QD_EDB, "", "job '%s' has an unknown state", id);
	} else if (rc == SQLITE_DONE) {
		r = qd_err_set(err, QD_ENOT_FOUND, "id", "job '%.64s' not found", id ? id : "");
	} else {
		r = st_db_err(c, rc, "read job state", err);
	}
	sqlite3_reset(s);
	return r;
}

static bool json_valid(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	json_decref(j);
	return j != NULL;
}

/* ---- create / get / list / delete ---- */

int qd_job_create(struct qd_store_conn *c, const char *model_id, const char *workflow_json,
		  int max_attempts, int max_queued, struct qd_job_row *out, struct qd_err *err)
{
	if (!workflow_json || !json_valid(workflow_json))
		return qd_err_set(err, QD_EPARSE, "workflow", "workflow is not valid JSON");
	if (!model_id || !model_id[0])
		return qd_err_set(err, QD_EINVAL, "model", "missing model id");
	if (max_attempts <= 0)
		max_attempts = 3;
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	struct qd_model_row m;
	if ((rc = qd_model_get(c, model_id, &m, err)) < 0) {
		if (rc == -QD_ENOT_FOUND)
			qd_err_set(err, QD_ENOT_FOUND, "model", "model '%.64s' not found", model_id);
		goto out;
	}
	qd_model_row_free(&m);
	if (max_queued > 0) {
		sqlite3_stmt *s = st_stmt(c, ST_JOB_COUNT_STATE, err);
		if (!s) {
			rc = -c->last_code;
			goto out;
		}
		st_bind_text(s, 1, "queued");
		int src = sqlite3_step(s);
		int64_t queued = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
		if (src != SQLITE_ROW)
			rc = st_db_err(c, src, "count queued jobs", err);
		sqlite3_reset(s);
		if (rc < 0)
			goto out;
		if (queued >= max_queued) {
			rc = qd_err_set(err, QD_EQUEUE_FULL, "", "job queue is full (%lld queued, "
					"limit %d); retry later", (long long)queued, max_queued);
			goto out;
		}
	}
	char id[64];
	qd_make_id("job_", id);
	sqlite3_stmt *s = st_stmt(c, ST_JOB_INSERT, err);
	if (!s) {
		rc = -c->last_code;
		goto out;
	}
	st_bind_text(s, 1, id);
	st_bind_text(s, 2, model_id);
	st_bind_text(s, 3, workflow_json);
	sqlite3_bind_int(s, 4, max_attempts);
	sqlite3_bind_double(s, 5, qd_now_wall());
	if ((rc = st_exec(c, s, "insert job", err)) < 0)
		goto out;
	if (out && (rc = job_fetch(c, id, out, err)) < 0)
		goto out;
	if ((rc = st_commit(c, err)) < 0 && out)
		qd_job_row_free(out);
	return rc;
out:
	st_rollback(c);
	return rc;
}

int qd_job_get(struct qd_store_conn *c, const char *id, struct qd_job_row *out,
	       struct qd_err *err)
{
	return job_fetch(c, id, out, err);
}

int qd_job_list(struct qd_store_conn *c, unsigned state_mask, struct qd_page *pg,
		struct qd_job_row **rows, size_t *n, struct qd_err *err)
{
	*rows = NULL;
	*n = 0;
	int64_t before;
	int limit;
	int rc = st_page_begin(pg, &before, &limit, err);
	if (rc < 0)
		return rc;
	if (!state_mask)
		state_mask = QD_JOB_MASK_ANY;
	sqlite3_stmt *s = st_stmt(c, ST_JOB_LIST, err);
	if (!s)
		return -c->last_code;
	struct qd_job_row *v = qd_calloc((size_t)limit, sizeof *v);
	if (!v)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	sqlite3_bind_int64(s, 1, before);
	sqlite3_bind_int(s, 2, limit + 1);
	sqlite3_bind_int64(s, 3, state_mask);
	size_t k = 0;
	bool more = false;
	int64_t last_seq = 0;
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		if (k == (size_t)limit) {
			more = true;
			break;
		}
		if ((rc = job_read(s, &v[k], &last_seq, err)) < 0)
			break;
		k++;
	}
	if (rc == 0 && src != SQLITE_ROW && src != SQLITE_DONE)
		rc = st_db_err(c, src, "list jobs", err);
	sqlite3_reset(s);
	if (rc < 0) {
		qd_job_rows_free(v, k);
		return rc;
	}
	st_page_end(pg, more, last_seq);
	*rows = v;
	*n = k;
	return 0;
}

int qd_job_delete(struct qd_store_conn *c, const char *id, struct qd_err *err)
{
	char (*shas)[65] = NULL;
	size_t nsha = 0, cap = 0;
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	enum qd_job_state st;
	if ((rc = job_state(c, id, &st, err)) < 0)
		goto out;
	if (!qd_job_state_terminal(st)) {
		rc = qd_err_set(err, QD_ECONFLICT, "id", "job '%s' is %s; cancel it before deleting",
				id, state_names[st]);
		goto out;
	}
	sqlite3_stmt *s = st_stmt(c, ST_JOB_ART_SHAS, err);
	if (!s) {
		rc = -c->last_code;
		goto out;
	}
	st_bind_text(s, 1, id);
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		if (nsha == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			void *p = realloc(shas, ncap * sizeof *shas);
			if (!p) {
				rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
				break;
			}
			shas = p;
			cap = ncap;
		}
		st_col_copy(s, 0, shas[nsha++], 65);
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = st_db_err(c, src, "list artifacts", err);
	sqlite3_reset(s);
	if (rc < 0)
		goto out;
	/* Trials, artifacts and log lines go with the job (ON DELETE CASCADE). */
	if (!(s = st_stmt(c, ST_JOB_DELETE, err))) {
		rc = -c->last_code;
		goto out;
	}
	st_bind_text(s, 1, id);
	if ((rc = st_exec(c, s, "delete job", err)) < 0)
		goto out;
	if ((rc = st_commit(c, err)) < 0)
		goto out;
	/* Blobs go only after the delete is committed (as for models and datasets): a crash
	 * in between leaves unreferenced blobs for the start-up sweep, never an artifact row
	 * without its blob. References are re-counted in a write transaction of their own. */
	struct qd_err e2 = { 0 };
	if (st_begin(c, &e2) < 0) {
		qd_log(QD_LOG_WARN, id, "store: job deleted, its blobs left for the start-up sweep: %s", e2.msg);
	} else {
		int r2 = 0;
		for (size_t i = 0; i < nsha && r2 == 0; i++)
			r2 = st_blob_release(c, shas[i], &e2);
		if (r2 < 0 || st_commit(c, &e2) < 0) {
			st_rollback(c);
			qd_log(QD_LOG_WARN, id, "store: job deleted, its blobs left for the start-up sweep: %s",
			       e2.msg);
		}
	}
	free(shas);
	return 0;
out:
	if (rc < 0)
		st_rollback(c);
	free(shas);
	return rc;
}

/* ---- the transition function ---- */

/* Inside a write transaction. */
static int transition_locked(struct qd_store_conn *c, const char *id, unsigned from_mask,
			     enum qd_job_state to, const struct qd_job_update *upd,
			     struct qd_err *err)
{
	static const struct qd_job_update none;
	if (!upd)
		upd = &none;
	if ((unsigned)to >= QD_JOB__COUNT)
		return qd_err_set(err, QD_EINVAL, "state", "invalid target job state %d", (int)to);
	enum qd_job_state from;
	int rc = job_state(c, id, &from, err);
	if (rc < 0)
		return rc;
	if (!(from_mask & QD_JOB_MASK(from)) || !qd_job_transition_legal(from, to))
		return qd_err_set(err, QD_ECONFLICT, "state", "job '%s' cannot go from %s to %s",
				  id, state_names[from], state_names[to]);
	static const enum st_stmt_id stmt_for[QD_JOB__COUNT] = {
		[QD_JOB_QUEUED] = ST_JOB_SET_QUEUED,
		[QD_JOB_RUNNING] = ST_JOB_SET_RUNNING,
		[QD_JOB_SUCCEEDED] = ST_JOB_SET_SUCCEEDED,
		[QD_JOB_FAILED] = ST_JOB_SET_FAILED,
		[QD_JOB_CANCELED] = ST_JOB_SET_CANCELED,
	};
	sqlite3_stmt *s = st_stmt(c, stmt_for[to], err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, id);
	sqlite3_bind_double(s, 2, qd_now_wall());
	switch (to) {
	case QD_JOB_RUNNING:
		st_bind_text(s, 3, upd->worker);
		break;
	case QD_JOB_SUCCEEDED:
		if (upd->result_json && !json_valid(upd->result_json))
			return qd_err_set(err, QD_EPARSE, "result", "job result is not valid JSON");
		st_bind_text(s, 3, upd->result_json);
		break;
	case QD_JOB_FAILED:
		st_bind_text(s, 3, upd->error_code ? upd->error_code : "INTERNAL");
		st_bind_text(s, 4, upd->error_message ? upd->error_message : "job failed");
		break;
	case QD_JOB_CANCELED:
		st_bind_text(s, 3, upd->error_message);
		break;
	default:
		break;
	}
	if ((rc = st_exec(c, s, "update job state", err)) < 0)
		return rc;
	if (sqlite3_changes(c->db) != 1)
		return qd_err_set(err, QD_EDB, "", "job '%s' was not updated to %s", id,
				  state_names[to]);
	return 0;
}

int qd_job_transition(struct qd_store_conn *c, const char *id, unsigned from_mask,
		      enum qd_job_state to, const struct qd_job_update *upd,
		      struct qd_job_row *out, struct qd_err *err)
{
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	if ((rc = transition_locked(c, id, from_mask, to, upd, err)) < 0)
		goto fail;
	if (out && (rc = job_fetch(c, id, out, err)) < 0)
		goto fail;
	if ((rc = st_commit(c, err)) < 0 && out)
		qd_job_row_free(out);
	return rc;
fail:
	st_rollback(c);
	return rc;
}

/* ---- worker side ---- */

int qd_job_claim(struct qd_store_conn *c, const char *worker, struct qd_job_row *out,
		 bool *claimed, struct qd_err *err)
{
	*claimed = false;
	/* Idle workers poll: look without taking the write lock first. */
	sqlite3_stmt *s = st_stmt(c, ST_JOB_OLDEST_QUEUED, err);
	if (!s)
		return -c->last_code;
	int src = sqlite3_step(s);
	sqlite3_reset(s);
	if (src == SQLITE_DONE)
		return 0;
	if (src != SQLITE_ROW)
		return st_db_err(c, src, "find queued job", err);
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	s = st_stmt(c, ST_JOB_OLDEST_QUEUED, err);
	if (!s) {
		rc = -c->last_code;
		goto fail;
	}
	char id[64] = "";
	src = sqlite3_step(s);
	if (src == SQLITE_ROW)
		st_col_copy(s, 0, id, sizeof id);
	else if (src != SQLITE_DONE)
		rc = st_db_err(c, src, "find queued job", err);
	sqlite3_reset(s);
	if (rc < 0)
		goto fail;
	if (!id[0]) {
		st_rollback(c);
		return 0;
	}
	struct qd_job_update upd = { .worker = worker };
	if ((rc = transition_locked(c, id, QD_JOB_MASK(QD_JOB_QUEUED), QD_JOB_RUNNING, &upd,
				    err)) < 0)
		goto fail;
	if (out && (rc = job_fetch(c, id, out, err)) < 0)
		goto fail;
	if ((rc = st_commit(c, err)) < 0) {
		if (out)
			qd_job_row_free(out);
		return rc;
	}
	*claimed = true;
	return 0;
fail:
	st_rollback(c);
	return rc;
}

int qd_job_progress(struct qd_store_conn *c, const char *id, double progress,
		    const char *msg, bool *cancel_requested, struct qd_err *err)
{
	if (!(progress >= 0))  /* also NaN */
		progress = 0;
	if (progress > 1)
		progress = 1;
	sqlite3_stmt *s = st_stmt(c, ST_JOB_PROGRESS, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, id);
	sqlite3_bind_double(s, 2, progress);
	st_bind_text(s, 3, msg);
	sqlite3_bind_double(s, 4, qd_now_wall());
	int src = sqlite3_step(s), rc = 0;
	bool found = src == SQLITE_ROW;
	if (found && cancel_requested)
		*cancel_requested = sqlite3_column_int(s, 0) != 0;
	if (found)
		src = sqlite3_step(s);
	if (src != SQLITE_DONE)
		rc = st_db_err(c, src, "update job progress", err);
	sqlite3_reset(s);
	if (rc < 0 || found)
		return rc;
	enum qd_job_state st;
	if ((rc = job_state(c, id, &st, err)) < 0)
		return rc;
	return qd_err_set(err, QD_ECONFLICT, "state", "job '%s' is %s, not running", id,
			  state_names[st]);
}

int qd_job_cancel_requested(struct qd_store_conn *c, const char *id, bool *out,
			    struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, ST_JOB_CANCEL_FLAG_GET, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, id);
	int src = sqlite3_step(s), rc = 0;
	if (src == SQLITE_ROW)
		*out = sqlite3_column_int(s, 0) != 0;
	else if (src == SQLITE_DONE)
		rc = qd_err_set(err, QD_ENOT_FOUND, "id", "job '%.64s' not found", id ? id : "");
	else
		rc = st_db_err(c, src, "read cancel flag", err);
	sqlite3_reset(s);
	return rc;
}

int qd_job_finish_succeeded(struct qd_store_conn *c, const char *id, const char *result_json,
			    struct qd_err *err)
{
	struct qd_job_update u = { .result_json = result_json };
	return qd_job_transition(c, id, QD_JOB_MASK(QD_JOB_RUNNING), QD_JOB_SUCCEEDED, &u, NULL,
				 err);
}

int qd_job_finish_failed(struct qd_store_conn *c, const char *id, const char *code,
			 const char *message, struct qd_err *err)
{
	struct qd_job_update u = { .error_code = code, .error_message = message };
	return qd_job_transition(c, id, QD_JOB_MASK(QD_JOB_RUNNING), QD_JOB_FAILED, &u, NULL, err);
}

int qd_job_finish_canceled(struct qd_store_conn *c, const char *id, struct qd_err *err)
{
	struct qd_job_update u = { .error_message = "canceled by request while running" };
	return qd_job_transition(c, id, QD_JOB_MASK(QD_JOB_RUNNING), QD_JOB_CANCELED, &u, NULL,
				 err);
}

int qd_job_requeue(struct qd_store_conn *c, const char *id, struct qd_err *err)
{
	return qd_job_transition(c, id, QD_JOB_MASK(QD_JOB_RUNNING), QD_JOB_QUEUED, NULL, NULL,
				 err);
}

/* ---- user side ---- */

int qd_job_cancel(struct qd_store_conn *c, const char *id, struct qd_job_row *out,
		  struct qd_err *err)
{
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	enum qd_job_state st;
	if ((rc = job_state(c, id, &st, err)) < 0)
		goto fail;
	switch (st) {
	case QD_JOB_QUEUED: {
		struct qd_job_update u = { .error_message = "canceled before it started" };
		rc = transition_locked(c, id, QD_JOB_MASK(QD_JOB_QUEUED), QD_JOB_CANCELED, &u, err);
		break;
	}
	case QD_JOB_RUNNING: {
		sqlite3_stmt *s = st_stmt(c, ST_JOB_CANCEL_FLAG_SET, err);
		if (!s) {
			rc = -c->last_code;
			break;
		}
		st_bind_text(s, 1, id);
		sqlite3_bind_double(s, 2, qd_now_wall());
		rc = st_exec(c, s, "set cancel flag", err);
		break;
	}
	case QD_JOB_CANCELED:
		break;
	default:
		rc = qd_err_set(err, QD_ECONFLICT, "state", "job '%s' already %s; nothing to cancel",
				id, state_names[st]);
		break;
	}
	if (rc < 0)
		goto fail;
	if (out && (rc = job_fetch(c, id, out, err)) < 0)
		goto fail;
	if ((rc = st_commit(c, err)) < 0 && out)
		qd_job_row_free(out);
	return rc;
fail:
	st_rollback(c);
	return rc;
}

/* ---- crash recovery ---- */

int qd_store_recover(struct qd_store_conn *c, int max_attempts, struct qd_recover_stats *stats,
		     struct qd_err *err)
{
	struct qd_recover_stats local = { 0 };
	struct job_brief { char id[64]; int attempts, max_attempts; bool cancel; } *v = NULL;
	size_t n = 0, cap = 0;
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = st_stmt(c, ST_JOB_RUNNING, err);
	if (!s) {
		rc = -c->last_code;
		goto out;
	}
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			void *p = realloc(v, ncap * sizeof *v);
			if (!p) {
				rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
				break;
			}
			v = p;
			cap = ncap;
		}
		st_col_copy(s, 0, v[n].id, sizeof v[n].id);
		v[n].attempts = sqlite3_column_int(s, 1);
		v[n].max_attempts = sqlite3_column_int(s, 2);
		v[n].cancel = sqlite3_column_int(s, 3) != 0;
		n++;
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = st_db_err(c, src, "list running jobs", err);
	sqlite3_reset(s);
	for (size_t i = 0; i < n && rc == 0; i++) {
		int limit = max_attempts > 0 ? max_attempts : v[i].max_attempts;
		const unsigned running = QD_JOB_MASK(QD_JOB_RUNNING);
		if (v[i].cancel) {
			struct qd_job_update u = { .error_message = "canceled while the daemon was down" };
			rc = transition_locked(c, v[i].id, running, QD_JOB_CANCELED, &u, err);
			local.canceled++;
		} else if (limit > 0 && v[i].attempts >= limit) {
			char msg[128];
			snprintf(msg, sizeof msg, "job interrupted %d times (daemon crashed or was "
				 "killed)", v[i].attempts);
			struct qd_job_update u = { .error_code = "INTERRUPTED", .error_message = msg };
			rc = transition_locked(c, v[i].id, running, QD_JOB_FAILED, &u, err);
			local.failed++;
			if (rc == 0)
				qd_log(QD_LOG_WARN, v[i].id, "%s: failed", msg);
		} else {
			rc = transition_locked(c, v[i].id, running, QD_JOB_QUEUED, NULL, err);
			local.requeued++;
			if (rc == 0)
				qd_log(QD_LOG_INFO, v[i].id, "job was running when quantd stopped "
				       "(attempt %d of %d): requeued", v[i].attempts, limit);
		}
	}
	if (rc == 0)
		rc = st_commit(c, err);
out:
	if (rc < 0)
		st_rollback(c);
	free(v);
	if (rc == 0 && stats)
		*stats = local;
	return rc;
}
