/* store/ catalog: uploaded models and datasets. Both are rows pointing at a blob by
 * sha256, deduplicated by content (insert-or-get), listed newest first, and deletable
 * only while no queued or running job uses them. One generic implementation, driven by
 * a small descriptor per table. */
#define _GNU_SOURCE
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

/* Common row shape: models carry summary_json, datasets format, in "extra". */
struct cat_row {
	int64_t seq;
	char id[64];
	char sha256[65];
	int64_t size;
	char *name, *extra, *extra2;
	double created_at;
};

struct cat_desc {
	const char *what;      /* "model" */
	const char *prefix;    /* "mdl_" */
	enum st_stmt_id by_sha, get, insert, list, active, del;
	bool has_extra2;       /* insert binds ?7 (datasets: summary_json) */
};

static const struct cat_desc model_desc = {
	"model", "mdl_", ST_MODEL_BY_SHA, ST_MODEL_GET, ST_MODEL_INSERT, ST_MODEL_LIST,
	ST_MODEL_ACTIVE_JOBS, ST_MODEL_DELETE,
};
static const struct cat_desc dataset_desc = {
	"dataset", "dst_", ST_DATASET_BY_SHA, ST_DATASET_GET, ST_DATASET_INSERT, ST_DATASET_LIST,
	ST_DATASET_ACTIVE_JOBS, ST_DATASET_DELETE, true,
};

static void cat_row_free(struct cat_row *r)
{
	free(r->name);
	free(r->extra);
	free(r->extra2);
	r->name = r->extra = r->extra2 = NULL;
}

static int cat_read(sqlite3_stmt *s, struct cat_row *r)
{
	memset(r, 0, sizeof *r);
	r->seq = sqlite3_column_int64(s, 0);
	st_col_copy(s, 1, r->id, sizeof r->id);
	st_col_copy(s, 2, r->sha256, sizeof r->sha256);
	r->size = sqlite3_column_int64(s, 3);
	r->name = st_col_dup(s, 4);
	r->extra = st_col_dup(s, 5);
	r->created_at = st_col_time(s, 6);
	r->extra2 = st_col_dup(s, 7);
	if ((sqlite3_column_type(s, 4) != SQLITE_NULL && !r->name) ||
	    (sqlite3_column_type(s, 5) != SQLITE_NULL && !r->extra) ||
	    (sqlite3_column_type(s, 7) != SQLITE_NULL && !r->extra2)) {
		cat_row_free(r);
		return -QD_ENOMEM;
	}
	return 0;
}

/* One-row lookup by id or sha256 (key). 0 found, 1 not found, <0 error. */
static int cat_lookup(struct qd_store_conn *c, enum st_stmt_id id, const char *key,
		      struct cat_row *out, struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, id, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, key);
	int rc = sqlite3_step(s), r;
	if (rc == SQLITE_ROW)
		r = cat_read(s, out) < 0 ? qd_err_set(err, QD_ENOMEM, "", "out of memory") : 0;
	else if (rc == SQLITE_DONE)
		r = 1;
	else
		r = st_db_err(c, rc, "lookup", err);
	sqlite3_reset(s);
	return r;
}

static int cat_insert(struct qd_store_conn *c, const struct cat_desc *d, const char *sha,
		      int64_t size, const char *name, const char *extra, const char *extra2,
		      struct cat_row *out, bool *existed, struct qd_err *err)
{
	if (!st_sha_valid(sha))
		return qd_err_set(err, QD_EINVAL, "sha256", "invalid sha256 '%.80s'", sha ? sha : "");
	if (size < 0)
		return qd_err_set(err, QD_EINVAL, "size", "negative %s size %lld", d->what,
				  (long long)size);
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	rc = cat_lookup(c, d->by_sha, sha, out, err);
	if (rc == 0) {
		*existed = true;
		goto out;
	}
	if (rc < 0)
		goto out;
	/* Checked inside the write transaction: a concurrent delete unlinks blobs only
	 * inside its own write transaction, so the blob cannot vanish before we commit. */
	if (!qd_blob_exists(c->st, sha)) {
		rc = qd_err_set(err, QD_ENOT_FOUND, "sha256", "blob '%s' for %s is missing "
				"(deleted concurrently?); upload it again", sha, d->what);
		goto out;
	}
	char id[64];
	qd_make_id(d->prefix, id);
	sqlite3_stmt *s = st_stmt(c, d->insert, err);
	if (!s) {
		rc = -c->last_code;
		goto out;
	}
	st_bind_text(s, 1, id);
	st_bind_text(s, 2, sha);
	sqlite3_bind_int64(s, 3, size);
	st_bind_text(s, 4, name);
	st_bind_text(s, 5, extra);
	sqlite3_bind_double(s, 6, qd_now_wall());
	if (d->has_extra2)
		st_bind_text(s, 7, extra2);
	if ((rc = st_exec(c, s, "insert", err)) < 0)
		goto out;
	rc = cat_lookup(c, d->get, id, out, err);
	if (rc == 1)
		rc = qd_err_set(err, QD_EINTERNAL, "", "%s '%s' vanished after insert", d->what, id);
	*existed = false;
out:
	if (rc < 0) {
		st_rollback(c);
		return rc;
	}
	if ((rc = st_commit(c, err)) < 0)
		cat_row_free(out);
	return rc;
}

static int cat_get(struct qd_store_conn *c, const struct cat_desc *d, const char *id,
		   struct cat_row *out, struct qd_err *err)
{
	int rc = cat_lookup(c, d->get, id, out, err);
	if (rc == 1)
		return qd_err_set(err, QD_ENOT_FOUND, "id", "%s '%.64s' not found", d->what,
				  id ? id : "");
	return rc;
}

/* The row whose blob has this sha256 (QD_EINVAL for a malformed one, QD_ENOT_FOUND, field
 * "sha256", for none). */
static int cat_find_sha(struct qd_store_conn *c, const struct cat_desc *d, const char *sha,
			struct cat_row *out, struct qd_err *err)
{
	if (!st_sha_valid(sha))
		return qd_err_set(err, QD_EINVAL, "sha256", "invalid 'sha256' '%.80s' (want 64 lowercase "
				  "hex digits)", sha ? sha : "");
	int rc = cat_lookup(c, d->by_sha, sha, out, err);
	if (rc == 1)
		return qd_err_set(err, QD_ENOT_FOUND, "sha256", "no %s with sha256 '%s'", d->what, sha);
	return rc;
}

static int cat_list(struct qd_store_conn *c, const struct cat_desc *d, struct qd_page *pg,
		    struct cat_row **rows, size_t *n, struct qd_err *err)
{
	*rows = NULL;
	*n = 0;
	int64_t before;
	int limit;
	int rc = st_page_begin(pg, &before, &limit, err);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = st_stmt(c, d->list, err);
	if (!s)
		return -c->last_code;
	struct cat_row *v = qd_calloc((size_t)limit, sizeof *v);
	if (!v)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	sqlite3_bind_int64(s, 1, before);
	sqlite3_bind_int(s, 2, limit + 1);
	size_t k = 0;
	bool more = false;
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		if (k == (size_t)limit) {
			more = true;
			break;
		}
		if (cat_read(s, &v[k]) < 0) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			break;
		}
		k++;
	}
	if (rc == 0 && src != SQLITE_ROW && src != SQLITE_DONE)
		rc = st_db_err(c, src, "list", err);
	sqlite3_reset(s);
	if (rc < 0) {
		for (size_t i = 0; i < k; i++)
			cat_row_free(&v[i]);
		free(v);
		return rc;
	}
	st_page_end(pg, more, k ? v[k - 1].seq : 0);
	*rows = v;
	*n = k;
	return 0;
}

static int cat_delete(struct qd_store_conn *c, const struct cat_desc *d, const char *id,
		      struct qd_err *err)
{
	struct cat_row r = { 0 };
	int rc = st_begin(c, err);
	if (rc < 0)
		return rc;
	if ((rc = cat_get(c, d, id, &r, err)) < 0)
		goto out;
	sqlite3_stmt *s = st_stmt(c, d->active, err);
	if (!s) {
		rc = -c->last_code;
		goto out;
	}
	st_bind_text(s, 1, id);
	int src = sqlite3_step(s);
	int64_t active = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	if (src != SQLITE_ROW)
		rc = st_db_err(c, src, "count jobs", err);
	sqlite3_reset(s);
	if (rc < 0)
		goto out;
	if (active > 0) {
		rc = qd_err_set(err, QD_ECONFLICT, "id", "%s '%s' is used by %lld queued or "
				"running job(s)", d->what, id, (long long)active);
		goto out;
	}
	if (!(s = st_stmt(c, d->del, err))) {
		rc = -c->last_code;
		goto out;
	}
	st_bind_text(s, 1, id);
	if ((rc = st_exec(c, s, "delete", err)) < 0)
		goto out;
	if ((rc = st_commit(c, err)) < 0)
		goto out;
	/* The blob goes only after the row's delete is committed: a crash in between leaves
	 * an unreferenced blob (removed by the start-up sweep), never a row without its blob.
	 * The reference count is re-checked in a write transaction of its own, so an upload
	 * of the same bytes that committed meanwhile keeps the file. A failure here leaves
	 * the blob to the sweep; the delete itself has happened. */
	struct qd_err e2 = { 0 };
	if (st_begin(c, &e2) < 0 || st_blob_release(c, r.sha256, &e2) < 0 || st_commit(c, &e2) < 0) {
		st_rollback(c);
		qd_log(QD_LOG_WARN, NULL, "store: %s '%s' deleted, its blob left for the start-up sweep: %s",
		       d->what, id, e2.msg);
	}
	cat_row_free(&r);
	return 0;
out:
	if (rc < 0)
		st_rollback(c);
	cat_row_free(&r);
	return rc;
}

/* ---- models ---- */

static void model_from(struct qd_model_row *m, struct cat_row *r)
{
	memcpy(m->id, r->id, sizeof m->id);
	memcpy(m->sha256, r->sha256, sizeof m->sha256);
	m->size = r->size;
	m->name = r->name;
	m->summary_json = r->extra;
	free(r->extra2);
	m->created_at = r->created_at;
}

void qd_model_row_free(struct qd_model_row *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->summary_json);
	r->name = r->summary_json = NULL;
}

void qd_model_rows_free(struct qd_model_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		qd_model_row_free(&rows[i]);
	free(rows);
}

int qd_model_insert(struct qd_store_conn *c, const char *sha256, int64_t size,
		    const char *name, const char *summary_json, struct qd_model_row *out,
		    bool *existed, struct qd_err *err)
{
	struct cat_row r;
	bool ex = false;
	int rc = cat_insert(c, &model_desc, sha256, size, name, summary_json, NULL, &r, &ex, err);
	if (rc < 0)
		return rc;
	if (existed)
		*existed = ex;
	if (out)
		model_from(out, &r);
	else
		cat_row_free(&r);
	return 0;
}

int qd_model_get(struct qd_store_conn *c, const char *id, struct qd_model_row *out,
		 struct qd_err *err)
{
	struct cat_row r;
	int rc = cat_get(c, &model_desc, id, &r, err);
	if (rc == 0)
		model_from(out, &r);
	return rc;
}

int qd_model_find_sha(struct qd_store_conn *c, const char *sha256, struct qd_model_row *out,
		      struct qd_err *err)
{
	struct cat_row r;
	int rc = cat_find_sha(c, &model_desc, sha256, &r, err);
	if (rc == 0)
		model_from(out, &r);
	return rc;
}

int qd_model_list(struct qd_store_conn *c, struct qd_page *pg, struct qd_model_row **rows,
		  size_t *n, struct qd_err *err)
{
	struct cat_row *v;
	int rc = cat_list(c, &model_desc, pg, &v, n, err);
	*rows = NULL;
	if (rc < 0)
		return rc;
	struct qd_model_row *m = qd_calloc(*n, sizeof *m);
	if (!m) {
		for (size_t i = 0; i < *n; i++)
			cat_row_free(&v[i]);
		free(v);
		*n = 0;
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	for (size_t i = 0; i < *n; i++)
		model_from(&m[i], &v[i]);
	free(v);
	*rows = m;
	return 0;
}

int qd_model_delete(struct qd_store_conn *c, const char *id, struct qd_err *err)
{
	return cat_delete(c, &model_desc, id, err);
}

/* ---- datasets ---- */

static void dataset_from(struct qd_dataset_row *m, struct cat_row *r)
{
	memcpy(m->id, r->id, sizeof m->id);
	memcpy(m->sha256, r->sha256, sizeof m->sha256);
	m->size = r->size;
	m->name = r->name;
	m->format = r->extra;
	m->summary_json = r->extra2;
	m->created_at = r->created_at;
}

void qd_dataset_row_free(struct qd_dataset_row *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->format);
	free(r->summary_json);
	r->name = r->format = r->summary_json = NULL;
}

void qd_dataset_rows_free(struct qd_dataset_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		qd_dataset_row_free(&rows[i]);
	free(rows);
}

int qd_dataset_insert(struct qd_store_conn *c, const char *sha256, int64_t size,
		      const char *name, const char *format, struct qd_dataset_row *out,
		      bool *existed, struct qd_err *err)
{
	return qd_dataset_insert_summary(c, sha256, size, name, format, NULL, out, existed, err);
}

int qd_dataset_insert_summary(struct qd_store_conn *c, const char *sha256, int64_t size,
			      const char *name, const char *format, const char *summary_json,
			      struct qd_dataset_row *out, bool *existed, struct qd_err *err)
{
	if (!format || !format[0])
		return qd_err_set(err, QD_EINVAL, "format", "missing dataset format");
	struct cat_row r;
	bool ex = false;
	int rc = cat_insert(c, &dataset_desc, sha256, size, name, format, summary_json, &r, &ex, err);
	if (rc < 0)
		return rc;
	if (existed)
		*existed = ex;
	if (out)
		dataset_from(out, &r);
	else
		cat_row_free(&r);
	return 0;
}

int qd_dataset_get(struct qd_store_conn *c, const char *id, struct qd_dataset_row *out,
		   struct qd_err *err)
{
	struct cat_row r;
	int rc = cat_get(c, &dataset_desc, id, &r, err);
	if (rc == 0)
		dataset_from(out, &r);
	return rc;
}

int qd_dataset_find_sha(struct qd_store_conn *c, const char *sha256, struct qd_dataset_row *out,
			struct qd_err *err)
{
	struct cat_row r;
	int rc = cat_find_sha(c, &dataset_desc, sha256, &r, err);
	if (rc == 0)
		dataset_from(out, &r);
	return rc;
}

int qd_dataset_list(struct qd_store_conn *c, struct qd_page *pg,
		    struct qd_dataset_row **rows, size_t *n, struct qd_err *err)
{
	struct cat_row *v;
	int rc = cat_list(c, &dataset_desc, pg, &v, n, err);
	*rows = NULL;
	if (rc < 0)
		return rc;
	struct qd_dataset_row *m = qd_calloc(*n, sizeof *m);
	if (!m) {
		for (size_t i = 0; i < *n; i++)
			cat_row_free(&v[i]);
		free(v);
		*n = 0;
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	for (size_t i = 0; i < *n; i++)
		dataset_from(&m[i], &v[i]);
	free(v);
	*rows = m;
	return 0;
}

int qd_dataset_delete(struct qd_store_conn *c, const char *id, struct qd_err *err)
{
	return cat_delete(c, &dataset_desc, id, err);
}
