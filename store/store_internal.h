/* store/ internals shared by the store's .c files: the store and connection structs,
 * the prepared-statement cache, transaction and row helpers. Not for other modules. */
#ifndef QD_STORE_INTERNAL_H
#define QD_STORE_INTERNAL_H

#include "store.h"
#include <sqlite3.h>

struct qd_store {
	char *dir, *db_path, *blob_dir, *tmp_dir;
	int lock_fd;
	size_t blob_path_max;
};

enum st_stmt_id {
#define STMT(name, sql) ST_##name,
#include "stmts.def"
#undef STMT
	ST__COUNT
};

struct qd_store_conn {
	struct qd_store *st;
	sqlite3 *db;
	sqlite3_stmt *stmts[ST__COUNT];
	int last_code;  /* QD_E* (positive) of the last st_stmt() failure */
};

/* Maps the connection's last SQLite error (rc) to QD_EDB (QD_EBUSY for a lock that
 * outlived busy_timeout, QD_ENOMEM) with "what: sqlite message". Returns -code. */
int st_db_err(struct qd_store_conn *c, int rc, const char *what, struct qd_err *err);
/* Cached prepared statement, reset and with bindings cleared; NULL on error (err set,
 * -c->last_code is the code to return). */
sqlite3_stmt *st_stmt(struct qd_store_conn *c, enum st_stmt_id id, struct qd_err *err);
/* Steps a statement that returns no row we need; resets it. */
int st_exec(struct qd_store_conn *c, sqlite3_stmt *s, const char *what, struct qd_err *err);
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK (rollback ignores errors). */
int st_begin(struct qd_store_conn *c, struct qd_err *err);
int st_commit(struct qd_store_conn *c, struct qd_err *err);
void st_rollback(struct qd_store_conn *c);

/* Binding / column helpers. NULL text binds SQL NULL. Text is bound without a copy:
 * it must stay valid until the statement has been stepped and reset. */
int st_bind_text(sqlite3_stmt *s, int i, const char *v);
char *st_col_dup(sqlite3_stmt *s, int i);                         /* new or NULL */
void st_col_copy(sqlite3_stmt *s, int i, char *out, size_t outsz); /* "" for NULL */
double st_col_time(sqlite3_stmt *s, int i);                       /* 0 for NULL */

/* Paging: cursor -> exclusive upper seq bound and limit; next cursor from the seq of
 * the last row on a full page. */
int st_page_begin(struct qd_page *pg, int64_t *before_seq, int *limit, struct qd_err *err);
void st_page_end(struct qd_page *pg, bool more, int64_t last_seq);

/* Inside a write transaction: if no row references sha any more, unlink its blob. */
int st_blob_release(struct qd_store_conn *c, const char *sha, struct qd_err *err);
/* Number of rows referencing sha (models, datasets, artifacts), or negative error. */
int64_t st_blob_refs(struct qd_store_conn *c, const char *sha, struct qd_err *err);
bool st_sha_valid(const char *sha);
/* Removes files in tmp/ and blobs that no row references (open time only). */
int st_blob_sweep(struct qd_store_conn *c, int *tmp_removed, int *blobs_removed,
		  struct qd_err *err);

#endif
