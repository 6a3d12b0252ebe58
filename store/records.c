/* store/ records of a job: trials (one per evaluated search candidate), artifacts (the
 * job's outputs, each a blob), the job log (lines numbered 1, 2, ... per job) and the
 * counters /metrics reports. */
#define _GNU_SOURCE
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

/* Inside a transaction: QD_ENOT_FOUND (field "job") unless the job exists. */
static int job_must_exist(struct qd_store_conn *c, const char *job_id, struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, ST_JOB_STATE, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, job_id);
	int src = sqlite3_step(s), rc = 0;
	if (src == SQLITE_DONE)
		rc = qd_err_set(err, QD_ENOT_FOUND, "job", "job '%.64s' not found",
				job_id ? job_id : "");
	else if (src != SQLITE_ROW)
		rc = st_db_err(c, src, "read job", err);
	sqlite3_reset(s);
	return rc;
}

/* Growable array of rows of elem bytes. */
static void *grow(void *v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return v;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *p = realloc(v, ncap * elem);
	if (!p)
		return NULL;
	memset((char *)p + *cap * elem, 0, (ncap - *cap) * elem);
	*cap = ncap;
	return p;
}

/* ---- trials ---- */

void qd_trial_rows_free(struct qd_trial_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		struct qd_trial_row *r = &rows[i];
		free(r->config_json);
		free(r->metrics_json);
		free(r->goals_json);
		free(r->error);
		free(r->model_path);
		free(r->record_json);
	}
	free(rows);
}

/* Inside a write transaction: the job's search progress. */
static int set_search(struct qd_store_conn *c, const char *job_id, const char *search_json,
		      struct qd_err *err)
{
	if (!search_json)
		return 0;
	sqlite3_stmt *s = st_stmt(c, ST_JOB_SET_SEARCH, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, job_id);
	st_bind_text(s, 2, search_json);
	return st_exec(c, s, "record search progress", err);
}

int qd_trial_add(struct qd_store_conn *c, const struct qd_trial_row *r, const char *search_json,
		 char id_out[64], struct qd_err *err)
{
	if (!r->config_json)
		return qd_err_set(err, QD_EINVAL, "config", "missing trial config");
	if (!r->state[0])
		return qd_err_set(err, QD_EINVAL, "state", "missing trial state");
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	if ((rc = job_must_exist(c, r->job_id, err)) < 0)
		goto fail;
	char id[64];
	qd_make_id("trl_", id);
	sqlite3_stmt *s = st_stmt(c, ST_TRIAL_UPSERT, err);
	if (!s) {
		rc = -c->last_code;
		goto fail;
	}
	st_bind_text(s, 1, id);
	st_bind_text(s, 2, r->job_id);
	sqlite3_bind_int(s, 3, r->idx);
	st_bind_text(s, 4, r->config_json);
	st_bind_text(s, 5, r->metrics_json);
	st_bind_text(s, 6, r->state);
	sqlite3_bind_double(s, 7, qd_now_wall());
	st_bind_text(s, 8, r->goals_json);
	sqlite3_bind_int(s, 9, r->goals_met);
	sqlite3_bind_double(s, 10, r->seconds);
	st_bind_text(s, 11, r->error);
	st_bind_text(s, 12, r->model_path);
	if (r->model_size >= 0)
		sqlite3_bind_int64(s, 13, r->model_size);
	st_bind_text(s, 14, r->model_sha256[0] ? r->model_sha256 : NULL);
	st_bind_text(s, 15, r->record_json);
	if ((rc = st_exec(c, s, "insert trial", err)) < 0 ||
	    (rc = set_search(c, r->job_id, search_json, err)) < 0)
		goto fail;
	if ((rc = st_commit(c, err)) < 0)
		return rc;
	if (id_out)
		memcpy(id_out, id, 64);
	return 0;
fail:
	st_rollback(c);
	return rc;
}

int qd_trial_list(struct qd_store_conn *c, const char *job_id, struct qd_page *pg,
		  struct qd_trial_row **rows, size_t *n, struct qd_err *err)
{
	*rows = NULL;
	*n = 0;
	int64_t after = -1;
	int limit = -1;   /* SQLite: no limit */
	int rc = 0;
	if (pg) {
		bool first = !pg->cursor || !pg->cursor[0];
		if ((rc = st_page_begin(pg, &after, &limit, err)) < 0)
			return rc;
		if (first)
			after = -1;
	}
	sqlite3_stmt *s = st_stmt(c, ST_TRIAL_LIST, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, job_id);
	sqlite3_bind_int64(s, 2, after);
	sqlite3_bind_int(s, 3, limit < 0 ? -1 : limit + 1);
	struct qd_trial_row *v = NULL;
	size_t k = 0, cap = 0;
	bool more = false;
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		if (limit >= 0 && k == (size_t)limit) {
			more = true;
			break;
		}
		struct qd_trial_row *p = grow(v, &cap, k, sizeof *v);
		if (!p) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			break;
		}
		v = p;
		struct qd_trial_row *r = &v[k++];
		st_col_copy(s, 0, r->id, sizeof r->id);
		st_col_copy(s, 1, r->job_id, sizeof r->job_id);
		r->idx = sqlite3_column_int(s, 2);
		r->config_json = st_col_dup(s, 3);
		r->metrics_json = st_col_dup(s, 4);
		st_col_copy(s, 5, r->state, sizeof r->state);
		r->created_at = st_col_time(s, 6);
		r->goals_json = st_col_dup(s, 7);
		r->goals_met = sqlite3_column_int(s, 8) != 0;
		r->seconds = sqlite3_column_double(s, 9);
		r->error = st_col_dup(s, 10);
		r->model_path = st_col_dup(s, 11);
		r->model_size = sqlite3_column_type(s, 12) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 12);
		st_col_copy(s, 13, r->model_sha256, sizeof r->model_sha256);
		r->pareto = sqlite3_column_int(s, 14) != 0;
		r->record_json = st_col_dup(s, 15);
		static const int text_cols[] = { 4, 7, 10, 11, 15 };
		char **dst[] = { &r->metrics_json, &r->goals_json, &r->error, &r->model_path, &r->record_json };
		bool oom = !r->config_json;
		for (size_t i = 0; i < QD_ARRAY_LEN(text_cols); i++)
			oom = oom || (sqlite3_column_type(s, text_cols[i]) != SQLITE_NULL && !*dst[i]);
		if (oom) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE && !more)
		rc = st_db_err(c, src, "list trials", err);
	sqlite3_reset(s);
	if (rc < 0) {
		qd_trial_rows_free(v, k);
		return rc;
	}
	if (pg)
		st_page_end(pg, more, k ? v[k - 1].idx : 0);
	*rows = v;
	*n = k;
	return 0;
}

int qd_trial_set_pareto(struct qd_store_conn *c, const char *job_id, const int *idx, size_t n,
			const char *search_json, struct qd_err *err)
{
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	if ((rc = job_must_exist(c, job_id, err)) < 0)
		goto fail;
	sqlite3_stmt *s = st_stmt(c, ST_TRIAL_PARETO_CLEAR, err);
	if (!s) {
		rc = -c->last_code;
		goto fail;
	}
	st_bind_text(s, 1, job_id);
	if ((rc = st_exec(c, s, "clear pareto flags", err)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (!(s = st_stmt(c, ST_TRIAL_PARETO_SET, err))) {
			rc = -c->last_code;
			goto fail;
		}
		st_bind_text(s, 1, job_id);
		sqlite3_bind_int(s, 2, idx[i]);
		if ((rc = st_exec(c, s, "set pareto flag", err)) < 0)
			goto fail;
	}
	if ((rc = set_search(c, job_id, search_json, err)) < 0)
		goto fail;
	return st_commit(c, err);
fail:
	st_rollback(c);
	return rc;
}

/* ---- artifacts ---- */

void qd_artifact_row_free(struct qd_artifact_row *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->content_type);
	r->name = r->content_type = NULL;
}

void qd_artifact_rows_free(struct qd_artifact_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		qd_artifact_row_free(&rows[i]);
	free(rows);
}

static int art_read(sqlite3_stmt *s, struct qd_artifact_row *r, struct qd_err *err)
{
	memset(r, 0, sizeof *r);
	st_col_copy(s, 0, r->id, sizeof r->id);
	st_col_copy(s, 1, r->job_id, sizeof r->job_id);
	st_col_copy(s, 2, r->kind, sizeof r->kind);
	r->name = st_col_dup(s, 3);
	st_col_copy(s, 4, r->sha256, sizeof r->sha256);
	r->size = sqlite3_column_int64(s, 5);
	r->content_type = st_col_dup(s, 6);
	r->created_at = st_col_time(s, 7);
	if (!r->name || !r->content_type) {
		qd_artifact_row_free(r);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	return 0;
}

static int art_fetch(struct qd_store_conn *c, const char *id, struct qd_artifact_row *out,
		     struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, ST_ART_GET, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, id);
	int src = sqlite3_step(s), rc;
	if (src == SQLITE_ROW)
		rc = art_read(s, out, err);
	else if (src == SQLITE_DONE)
		rc = qd_err_set(err, QD_ENOT_FOUND, "id", "artifact '%.64s' not found", id ? id : "");
	else
		rc = st_db_err(c, src, "read artifact", err);
	sqlite3_reset(s);
	return rc;
}

int qd_artifact_add(struct qd_store_conn *c, const char *job_id, const char *kind,
		    const char *name, const char *sha256, int64_t size, const char *content_type,
		    struct qd_artifact_row *out, struct qd_err *err)
{
	if (!kind || !kind[0] || strlen(kind) >= sizeof ((struct qd_artifact_row *)0)->kind)
		return qd_err_set(err, QD_EINVAL, "kind", "invalid artifact kind '%.40s'",
				  kind ? kind : "");
	if (!name || !name[0])
		return qd_err_set(err, QD_EINVAL, "name", "missing artifact name");
	if (!st_sha_valid(sha256))
		return qd_err_set(err, QD_EINVAL, "sha256", "invalid sha256 '%.80s'",
				  sha256 ? sha256 : "");
	if (size < 0)
		return qd_err_set(err, QD_EINVAL, "size", "negative artifact size");
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	if ((rc = job_must_exist(c, job_id, err)) < 0)
		goto fail;
	if (!qd_blob_exists(c->st, sha256)) {
		rc = qd_err_set(err, QD_ENOT_FOUND, "sha256", "blob '%s' for artifact '%s' is missing",
				sha256, name);
		goto fail;
	}
	/* A re-run of the job (after a crash or a kill) replaces what an earlier attempt
	 * imported under the same name: one artifact per name. The old blob is released after
	 * the commit. */
	char old_sha[65] = "";
	sqlite3_stmt *s = st_stmt(c, ST_ART_SAME_NAME, err);
	if (!s) {
		rc = -c->last_code;
		goto fail;
	}
	st_bind_text(s, 1, job_id);
	st_bind_text(s, 2, name);
	if (sqlite3_step(s) == SQLITE_ROW)
		st_col_copy(s, 0, old_sha, sizeof old_sha);
	sqlite3_reset(s);
	if (old_sha[0]) {
		if (!(s = st_stmt(c, ST_ART_DELETE_NAME, err))) {
			rc = -c->last_code;
			goto fail;
		}
		st_bind_text(s, 1, job_id);
		st_bind_text(s, 2, name);
		if ((rc = st_exec(c, s, "replace artifact", err)) < 0)
			goto fail;
	}
	char id[64];
	qd_make_id("art_", id);
	s = st_stmt(c, ST_ART_INSERT, err);
	if (!s) {
		rc = -c->last_code;
		goto fail;
	}
	st_bind_text(s, 1, id);
	st_bind_text(s, 2, job_id);
	st_bind_text(s, 3, kind);
	st_bind_text(s, 4, name);
	st_bind_text(s, 5, sha256);
	sqlite3_bind_int64(s, 6, size);
	st_bind_text(s, 7, content_type ? content_type : "application/octet-stream");
	sqlite3_bind_double(s, 8, qd_now_wall());
	if ((rc = st_exec(c, s, "insert artifact", err)) < 0)
		goto fail;
	if (out && (rc = art_fetch(c, id, out, err)) < 0)
		goto fail;
	if ((rc = st_commit(c, err)) < 0) {
		if (out)
			qd_artifact_row_free(out);
		return rc;
	}
	if (old_sha[0] && strcmp(old_sha, sha256)) {
		struct qd_err e2 = { 0 };
		if (st_begin(c, &e2) < 0 || st_blob_release(c, old_sha, &e2) < 0 || st_commit(c, &e2) < 0) {
			st_rollback(c);
			qd_log(QD_LOG_WARN, job_id, "store: the replaced artifact's blob is left for the start-up "
			       "sweep: %s", e2.msg);
		}
	}
	return 0;
fail:
	st_rollback(c);
	return rc;
}

int qd_artifact_list(struct qd_store_conn *c, const char *job_id,
		     struct qd_artifact_row **rows, size_t *n, struct qd_err *err)
{
	*rows = NULL;
	*n = 0;
	sqlite3_stmt *s = st_stmt(c, ST_ART_LIST, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, job_id);
	struct qd_artifact_row *v = NULL;
	size_t k = 0, cap = 0;
	int src, rc = 0;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		struct qd_artifact_row *p = grow(v, &cap, k, sizeof *v);
		if (!p) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			break;
		}
		v = p;
		if ((rc = art_read(s, &v[k], err)) < 0)
			break;
		k++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = st_db_err(c, src, "list artifacts", err);
	sqlite3_reset(s);
	if (rc < 0) {
		qd_artifact_rows_free(v, k);
		return rc;
	}
	*rows = v;
	*n = k;
	return 0;
}

int qd_artifact_get(struct qd_store_conn *c, const char *id, struct qd_artifact_row *out,
		    struct qd_err *err)
{
	return art_fetch(c, id, out, err);
}

/* ---- job log ---- */

void qd_log_lines_free(struct qd_log_line *lines, size_t n)
{
	for (size_t i = 0; lines && i < n; i++)
		free(lines[i].line);
	free(lines);
}

int qd_job_log_append(struct qd_store_conn *c, const char *job_id, enum qd_log_level lvl,
		      const char *line, int64_t *seq_out, struct qd_err *err)
{
	if (!line)
		line = "";
	char cut[QD_JOB_LOG_LINE_MAX + 32];
	size_t len = strlen(line);
	if (len > QD_JOB_LOG_LINE_MAX) {
		size_t k = QD_JOB_LOG_LINE_MAX;
		while (k > 0 && ((unsigned char)line[k] & 0xc0) == 0x80)  /* UTF-8 boundary */
			k--;
		snprintf(cut, sizeof cut, "%.*s... [%zu bytes cut]", (int)k, line, len - k);
		line = cut;
	}
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	if ((rc = job_must_exist(c, job_id, err)) < 0)
		goto fail;
	sqlite3_stmt *s = st_stmt(c, ST_LOG_APPEND, err);
	if (!s) {
		rc = -c->last_code;
		goto fail;
	}
	st_bind_text(s, 1, job_id);
	sqlite3_bind_double(s, 2, qd_now_wall());
	st_bind_text(s, 3, qd_log_level_name(lvl));
	st_bind_text(s, 4, line);
	int src = sqlite3_step(s);
	int64_t seq = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	if (src == SQLITE_ROW)
		src = sqlite3_step(s);
	if (src != SQLITE_DONE)
		rc = st_db_err(c, src, "append job log", err);
	sqlite3_reset(s);
	if (rc < 0)
		goto fail;
	if ((rc = st_commit(c, err)) < 0)
		return rc;
	if (seq_out)
		*seq_out = seq;
	return 0;
fail:
	st_rollback(c);
	return rc;
}

int qd_job_log_list(struct qd_store_conn *c, const char *job_id, int64_t after_seq, int limit,
		    struct qd_log_line **lines, size_t *n, struct qd_err *err)
{
	*lines = NULL;
	*n = 0;
	if (limit <= 0)
		limit = 1000;
	sqlite3_stmt *s = st_stmt(c, ST_LOG_LIST, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, job_id);
	sqlite3_bind_int64(s, 2, after_seq);
	sqlite3_bind_int(s, 3, limit);
	struct qd_log_line *v = NULL;
	size_t k = 0, cap = 0;
	int src, rc = 0;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		struct qd_log_line *p = grow(v, &cap, k, sizeof *v);
		if (!p) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			break;
		}
		v = p;
		struct qd_log_line *l = &v[k++];
		l->seq = sqlite3_column_int64(s, 0);
		l->ts = st_col_time(s, 1);
		st_col_copy(s, 2, l->level, sizeof l->level);
		if (!(l->line = st_col_dup(s, 3))) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = st_db_err(c, src, "list job log", err);
	sqlite3_reset(s);
	if (rc < 0) {
		qd_log_lines_free(v, k);
		return rc;
	}
	*lines = v;
	*n = k;
	return 0;
}

/* ---- counters ---- */

int qd_store_counts(struct qd_store_conn *c, struct qd_store_counts *out, struct qd_err *err)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *s = st_stmt(c, ST_JOB_COUNTS, err);
	if (!s)
		return -c->last_code;
	int src, rc = 0;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		enum qd_job_state st;
		const char *name = (const char *)sqlite3_column_text(s, 0);
		if (qd_job_state_parse(name, &st, NULL) == 0)
			out->jobs[st] = sqlite3_column_int64(s, 1);
	}
	if (src != SQLITE_DONE)
		rc = st_db_err(c, src, "count jobs", err);
	sqlite3_reset(s);
	if (rc < 0)
		return rc;
	if (!(s = st_stmt(c, ST_COUNTS_OTHER, err)))
		return -c->last_code;
	src = sqlite3_step(s);
	if (src == SQLITE_ROW) {
		out->models = sqlite3_column_int64(s, 0);
		out->datasets = sqlite3_column_int64(s, 1);
		out->artifacts = sqlite3_column_int64(s, 2);
		out->blob_bytes = sqlite3_column_int64(s, 3);
	} else {
		rc = st_db_err(c, src, "count rows", err);
	}
	sqlite3_reset(s);
	return rc;
}
