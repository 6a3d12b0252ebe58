/* store/ core: opening the data directory (lock, schema migrations, sweep), per-thread
 * SQLite connections with their prepared-statement cache, and the small helpers every
 * other store file uses (errors, transactions, columns, paging). */
#define _GNU_SOURCE
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const char *const stmt_sql[ST__COUNT] = {
#define STMT(name, sql) [ST_##name] = sql,
#include "stmts.def"
#undef STMT
};

/* Schema migrations: migrations[i] brings user_version i to i+1, in one transaction.
 * How to change the schema: append a row (never edit a shipped one). */
static const char *const migrations[] = {
	/* 1: initial schema */
	"CREATE TABLE models ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT NOT NULL UNIQUE,"
	" sha256 TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),"
	" size INTEGER NOT NULL CHECK (size >= 0),"
	" name TEXT,"
	" summary_json TEXT,"
	" created_at REAL NOT NULL);"
	"CREATE TABLE datasets ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT NOT NULL UNIQUE,"
	" sha256 TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),"
	" size INTEGER NOT NULL CHECK (size >= 0),"
	" name TEXT,"
	" format TEXT NOT NULL,"
	" created_at REAL NOT NULL);"
	"CREATE TABLE jobs ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT NOT NULL UNIQUE,"
	" model_id TEXT REFERENCES models(id) ON DELETE SET NULL,"
	" workflow_json TEXT NOT NULL,"
	" state TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed','canceled')),"
	" progress REAL NOT NULL DEFAULT 0,"
	" progress_msg TEXT,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" max_attempts INTEGER NOT NULL DEFAULT 3,"
	" error_code TEXT,"
	" error_message TEXT,"
	" cancel_requested INTEGER NOT NULL DEFAULT 0,"
	" result_json TEXT,"
	" created_at REAL NOT NULL,"
	" started_at REAL,"
	" finished_at REAL,"
	" updated_at REAL NOT NULL,"
	" worker TEXT);"
	"CREATE INDEX jobs_state ON jobs(state, seq);"
	"CREATE INDEX jobs_model ON jobs(model_id);"
	"CREATE TABLE trials ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT NOT NULL UNIQUE,"
	" job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
	" idx INTEGER NOT NULL,"
	" config_json TEXT NOT NULL,"
	" metrics_json TEXT,"
	" state TEXT NOT NULL,"
	" created_at REAL NOT NULL,"
	" UNIQUE (job_id, idx));"
	"CREATE TABLE artifacts ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT NOT NULL UNIQUE,"
	" job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
	" kind TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
	" size INTEGER NOT NULL CHECK (size >= 0),"
	" content_type TEXT NOT NULL,"
	" created_at REAL NOT NULL);"
	"CREATE INDEX artifacts_job ON artifacts(job_id, seq);"
	"CREATE INDEX artifacts_sha ON artifacts(sha256);"
	"CREATE TABLE job_log ("
	" job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
	" seq INTEGER NOT NULL,"
	" ts REAL NOT NULL,"
	" level TEXT NOT NULL,"
	" line TEXT NOT NULL,"
	" PRIMARY KEY (job_id, seq)) WITHOUT ROWID;",
	/* 2: dataset summary (arrays, dtypes, shapes, samples) computed at upload */
	"ALTER TABLE datasets ADD COLUMN summary_json TEXT;",
	/* 3: search trials as the job's process reports them (goal status, duration, the
	 * trial's model, pareto flag, the full record a resumed attempt is handed back), and
	 * the search's progress on the job (trials done / planned, best so far) */
	"ALTER TABLE trials ADD COLUMN goals_json TEXT;"
	"ALTER TABLE trials ADD COLUMN goals_met INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE trials ADD COLUMN seconds REAL NOT NULL DEFAULT 0;"
	"ALTER TABLE trials ADD COLUMN error TEXT;"
	"ALTER TABLE trials ADD COLUMN model_path TEXT;"
	"ALTER TABLE trials ADD COLUMN model_size INTEGER;"
	"ALTER TABLE trials ADD COLUMN model_sha256 TEXT;"
	"ALTER TABLE trials ADD COLUMN pareto INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE trials ADD COLUMN record_json TEXT;"
	"ALTER TABLE jobs ADD COLUMN search_json TEXT;",
};

int qd_store_schema_version(void) { return (int)QD_ARRAY_LEN(migrations); }

/* ---- helpers ---- */

int st_db_err(struct qd_store_conn *c, int rc, const char *what, struct qd_err *err)
{
	const char *m = c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
	int prim = rc & 0xff;
	int code = prim == SQLITE_BUSY || prim == SQLITE_LOCKED ? QD_EBUSY
		 : prim == SQLITE_NOMEM ? QD_ENOMEM : QD_EDB;
	return qd_err_set(err, code, "", "database error in %s: %s", what, m ? m : "unknown");
}

sqlite3_stmt *st_stmt(struct qd_store_conn *c, enum st_stmt_id id, struct qd_err *err)
{
	sqlite3_stmt *s = c->stmts[id];
	if (!s) {
		int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					    &s, NULL);
		if (rc != SQLITE_OK) {
			c->last_code = -st_db_err(c, rc, "prepare", err);
			sqlite3_finalize(s);
			return NULL;
		}
		c->stmts[id] = s;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

int st_exec(struct qd_store_conn *c, sqlite3_stmt *s, const char *what, struct qd_err *err)
{
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	int r = rc == SQLITE_DONE ? 0 : st_db_err(c, rc, what, err);
	sqlite3_reset(s);
	return r;
}

static int st_simple(struct qd_store_conn *c, enum st_stmt_id id, const char *what,
		     struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, id, err);
	if (!s)
		return -c->last_code;
	return st_exec(c, s, what, err);
}

int st_begin(struct qd_store_conn *c, struct qd_err *err)
{
	/* Store functions never nest transactions; one left open means an earlier ROLLBACK
	 * failed (e.g. out of memory). Finish it rather than wedge the connection. */
	if (!sqlite3_get_autocommit(c->db)) {
		qd_log(QD_LOG_WARN, NULL, "store: rolling back a transaction left open");
		st_rollback(c);
	}
	return st_simple(c, ST_BEGIN_IMMEDIATE, "begin transaction", err);
}

int st_commit(struct qd_store_conn *c, struct qd_err *err)
{
	int rc = st_simple(c, ST_COMMIT, "commit", err);
	if (rc < 0)
		st_rollback(c);
	return rc;
}

void st_rollback(struct qd_store_conn *c)
{
	if (sqlite3_get_autocommit(c->db))
		return;
	/* Not through the cache: must work even when preparing fails (e.g. out of memory);
	 * retried because a failed ROLLBACK leaves the transaction open. */
	for (int i = 0; i < 3 && !sqlite3_get_autocommit(c->db); i++)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

int st_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	/* SQLITE_STATIC: no copy, so binding cannot fail for lack of memory (a failed bind
	 * would silently leave NULL and match no row). Every bound string outlives the
	 * step, and st_stmt() clears bindings before the statement is used again. */
	return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

char *st_col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? strdup((const char *)t) : NULL;
}

void st_col_copy(sqlite3_stmt *s, int i, char *out, size_t outsz)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	snprintf(out, outsz, "%s", t ? (const char *)t : "");
}

double st_col_time(sqlite3_stmt *s, int i)
{
	return sqlite3_column_type(s, i) == SQLITE_NULL ? 0.0 : sqlite3_column_double(s, i);
}

int st_page_begin(struct qd_page *pg, int64_t *before_seq, int *limit, struct qd_err *err)
{
	*before_seq = INT64_MAX;
	*limit = 50;
	if (!pg)
		return 0;
	pg->next_cursor[0] = '\0';
	if (pg->limit < 0 || pg->limit > 1000)
		return qd_err_set(err, QD_EINVAL, "limit", "limit %d out of range 1..1000", pg->limit);
	if (pg->limit)
		*limit = pg->limit;
	if (pg->cursor && pg->cursor[0]) {
		const char *p = pg->cursor;
		int64_t v = 0;
		if (*p++ != 'c' || !*p)
			goto bad;
		for (; *p; p++) {
			if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
				goto bad;
			v = v * 10 + (*p - '0');
		}
		*before_seq = v;
	}
	return 0;
bad:
	return qd_err_set(err, QD_EINVAL, "cursor", "invalid cursor '%.64s'", pg->cursor);
}

void st_page_end(struct qd_page *pg, bool more, int64_t last_seq)
{
	if (!pg)
		return;
	if (more)
		snprintf(pg->next_cursor, sizeof pg->next_cursor, "c%lld", (long long)last_seq);
	else
		pg->next_cursor[0] = '\0';
}

/* ---- open / connect ---- */

static int conn_open(struct qd_store *st, struct qd_store_conn **out, struct qd_err *err)
{
	struct qd_store_conn *c = qd_calloc(1, sizeof *c);
	if (!c)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	c->st = st;
	int rc = sqlite3_open_v2(st->db_path, &c->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		qd_err_set(err, QD_EDB, "", "cannot open database '%s': %s", st->db_path,
			   c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, 10000);
	/* WAL: readers never block the writer. synchronous=NORMAL: every commit survives a
	 * killed process; only a power loss can drop the last commits (never corrupts). */
	static const char *const pragmas[] = {
		"PRAGMA journal_mode = WAL",
		"PRAGMA synchronous = NORMAL",
		"PRAGMA foreign_keys = ON",
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(pragmas); i++) {
		char *msg = NULL;
		rc = sqlite3_exec(c->db, pragmas[i], NULL, NULL, &msg);
		if (rc != SQLITE_OK) {
			qd_err_set(err, QD_EDB, "", "cannot configure database '%s' (%s): %s",
				   st->db_path, pragmas[i], msg ? msg : sqlite3_errstr(rc));
			sqlite3_free(msg);
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	sqlite3_close_v2(c->db);
	free(c);
	return -(err ? err->code : QD_EDB);
}

static int user_version(struct qd_store_conn *c, int *v, struct qd_err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*v = sqlite3_column_int(s, 0);
		rc = SQLITE_OK;
	}
	int r = rc == SQLITE_OK ? 0 : st_db_err(c, rc, "read schema version", err);
	sqlite3_finalize(s);
	return r;
}

static int migrate(struct qd_store_conn *c, struct qd_err *err)
{
	int v = 0, rc;
	if ((rc = user_version(c, &v, err)) < 0)
		return rc;
	int want = qd_store_schema_version();
	if (v > want)
		return qd_err_set(err, QD_EDB, "", "database schema version %d of '%s' is newer "
				  "than this quantd supports (%d); upgrade quantd", v, c->st->db_path, want);
	if (v < 0)
		return qd_err_set(err, QD_EDB, "", "database '%s' has invalid schema version %d",
				  c->st->db_path, v);
	for (; v < want; v++) {
		if ((rc = st_begin(c, err)) < 0)
			return qd_err_wrap(err, "migration %d", v + 1);
		char sql[64], *msg = NULL;
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
		int src = sqlite3_exec(c->db, migrations[v], NULL, NULL, &msg);
		if (src == SQLITE_OK)
			src = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
		if (src != SQLITE_OK) {
			qd_err_set(err, QD_EDB, "", "database migration %d of '%s' failed: %s", v + 1,
				   c->st->db_path, msg ? msg : sqlite3_errstr(src));
			sqlite3_free(msg);
			st_rollback(c);
			return -QD_EDB;
		}
		if ((rc = st_commit(c, err)) < 0)
			return qd_err_wrap(err, "migration %d", v + 1);
		qd_log(QD_LOG_INFO, NULL, "store: migrated '%s' to schema version %d",
		       c->st->db_path, v + 1);
	}
	return 0;
}

int qd_store_open(const char *data_dir, struct qd_store **out, struct qd_err *err)
{
	*out = NULL;
	if (!data_dir || !data_dir[0])
		return qd_err_set(err, QD_EINVAL, "data_dir", "empty data directory");
	struct qd_store *st = qd_calloc(1, sizeof *st);
	if (!st)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	st->lock_fd = -1;
	int rc = 0;
	st->dir = qd_strdup(data_dir);
	st->db_path = qd_asprintf("%s/quantd.db", data_dir);
	st->blob_dir = qd_asprintf("%s/blobs", data_dir);
	st->tmp_dir = qd_asprintf("%s/tmp", data_dir);
	char *lock_path = qd_asprintf("%s/quantd.lock", data_dir);
	if (!st->dir || !st->db_path || !st->blob_dir || !st->tmp_dir || !lock_path) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	/* blobs/ab/<62 hex> */
	st->blob_path_max = strlen(st->blob_dir) + 1 + 2 + 1 + 62 + 1;
	if ((rc = qd_mkdir_p(data_dir, err)) < 0 || (rc = qd_mkdir_p(st->blob_dir, err)) < 0 ||
	    (rc = qd_mkdir_p(st->tmp_dir, err)) < 0)
		goto out;
	st->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (st->lock_fd < 0) {
		rc = qd_err_set(err, QD_EIO, "data_dir", "cannot open '%s': %s", lock_path,
				strerror(errno));
		goto out;
	}
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK
		     ? qd_err_set(err, QD_EBUSY, "data_dir", "data directory '%s' is in use by "
				  "another quantd process", data_dir)
		     : qd_err_set(err, QD_EIO, "data_dir", "cannot lock '%s': %s", lock_path,
				  strerror(errno));
		goto out;
	}
	struct qd_store_conn *c = NULL;
	if ((rc = conn_open(st, &c, err)) < 0)
		goto out;
	rc = migrate(c, err);
	int tmp_removed = 0, blobs_removed = 0;
	if (rc == 0)
		rc = st_blob_sweep(c, &tmp_removed, &blobs_removed, err);
	qd_store_disconnect(c);
	if (rc < 0)
		goto out;
	if (tmp_removed || blobs_removed)
		qd_log(QD_LOG_INFO, NULL, "store: removed %d stale temp file(s) and %d "
		       "unreferenced blob(s)", tmp_removed, blobs_removed);
out:
	free(lock_path);
	if (rc < 0) {
		qd_store_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

void qd_store_close(struct qd_store *st)
{
	if (!st)
		return;
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->dir);
	free(st->db_path);
	free(st->blob_dir);
	free(st->tmp_dir);
	free(st);
}

const char *qd_store_data_dir(const struct qd_store *st) { return st->dir; }

int qd_store_connect(struct qd_store *st, struct qd_store_conn **out, struct qd_err *err)
{
	*out = NULL;
	return conn_open(st, out, err);
}

void qd_store_disconnect(struct qd_store_conn *c)
{
	if (!c)
		return;
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(c->stmts[i]);
	st_rollback(c);
	sqlite3_close_v2(c->db);
	free(c);
}

struct qd_store *qd_store_conn_store(struct qd_store_conn *c) { return c->st; }
