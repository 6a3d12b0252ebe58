/* store/ — quantd's persistence: SQLite schema + migrations, the job queue and its one
 * state-transition function, and the content-addressed blob store for models, datasets
 * and artifacts. The data directory (<data_dir>/quantd.db, blobs/, tmp/) is the only state.
 *
 * DESIGN
 * - One struct qd_store per process (paths, immutable after open, safe to share between
 *   threads). One struct qd_store_conn per thread: its own SQLite connection (WAL,
 *   busy_timeout, foreign keys on) and its own prepared-statement cache. A connection
 *   must never be used by two threads at once.
 * - qd_store_open() holds an exclusive lock on <data_dir>/quantd.lock for the life of the
 *   store: one daemon per data directory (a second open answers QD_EBUSY).
 * - Every job state change goes through qd_job_transition(): it checks the move against
 *   the transition table (queued -> running|canceled, running -> succeeded|failed|
 *   canceled|queued) and writes the row and updated_at in one committed transaction.
 * - Blobs are files <data_dir>/blobs/ab/cdef... named by their sha256. A writer streams
 *   into <data_dir>/tmp/, commit fsyncs, renames into place and fsyncs the directory, so
 *   a crash leaves at worst a temp file (swept on the next open) or an unreferenced blob
 *   (also swept on open), never a row pointing at a missing or half-written blob. A blob
 *   is unlinked inside the write transaction that removes its last referencing row
 *   (models, datasets, artifacts); inserts check the blob exists inside their own write
 *   transaction, so the two cannot interleave badly.
 *
 * Conventions: functions return 0 or a negative QD_E* code and fill struct qd_err (err
 * may be NULL). SQLite failures are QD_EDB with SQLite's message; missing rows are
 * QD_ENOT_FOUND (field names the id); rule violations (illegal transition, deleting
 * something in use) are QD_ECONFLICT; a full queue is QD_EQUEUE_FULL; filesystem errors
 * are QD_EIO. Times are seconds since the epoch (double, as qd_now_wall()); 0 means
 * "not set" and renders as JSON null. Row structs are filled by the store: their char *
 * members are **new** (free with the matching *_row_free / *_rows_free); fixed arrays
 * are inline. */
#ifndef QD_STORE_H
#define QD_STORE_H

#include "qd.h"
#include <jansson.h>

struct qd_store;       /* per process */
struct qd_store_conn;  /* per thread */

/* ---- open / connect ---- */

/* Creates <data_dir> (and blobs/, tmp/) if needed, opens <data_dir>/quantd.db, runs the
 * migrations (PRAGMA user_version; each migration in its own transaction), removes
 * stale temp files and unreferenced blobs. A database with a newer user_version than
 * this build knows is refused with QD_EDB ("database schema version N is newer than
 * this quantd supports (M)"). *out is **new**: release with qd_store_close(). */
int qd_store_open(const char *data_dir, struct qd_store **out, struct qd_err *err);
/* All connections must be disconnected first. NULL is a no-op. */
void qd_store_close(struct qd_store *st);
const char *qd_store_data_dir(const struct qd_store *st);      /* borrow (store) */
/* Schema version this build migrates to (the highest migration). */
int qd_store_schema_version(void);

/* One connection per thread. *out is **new**: release with qd_store_disconnect(). */
int qd_store_connect(struct qd_store *st, struct qd_store_conn **out, struct qd_err *err);
void qd_store_disconnect(struct qd_store_conn *c);              /* NULL is a no-op */
struct qd_store *qd_store_conn_store(struct qd_store_conn *c);  /* borrow */

/* ---- blobs (content-addressed files) ---- */

/* Streaming writer for uploads/artifacts: never holds the whole blob in memory.
 * open -> write* -> commit or abort. Both commit and abort free the writer (also when
 * commit fails; the temp file is then removed). */
struct qd_blob_writer;
int qd_blob_writer_open(struct qd_store *st, struct qd_blob_writer **out, struct qd_err *err);
int qd_blob_writer_write(struct qd_blob_writer *w, const void *p, size_t n, struct qd_err *err);
uint64_t qd_blob_writer_size(const struct qd_blob_writer *w);   /* bytes written so far */
/* fsync, rename to blobs/<sha[0:2]>/<sha[2:]> (an existing identical blob is kept),
 * fsync the directory. sha must hold 65 bytes; size may be NULL. */
int qd_blob_writer_commit(struct qd_blob_writer *w, char sha[65], uint64_t *size,
			  struct qd_err *err);
void qd_blob_writer_abort(struct qd_blob_writer *w);            /* NULL is a no-op */

/* Import a file (copied, the source is left alone) / a memory buffer as a blob. */
int qd_blob_put_file(struct qd_store *st, const char *path, char sha[65], uint64_t *size,
		     struct qd_err *err);
int qd_blob_put_mem(struct qd_store *st, const void *p, size_t n, char sha[65],
		    uint64_t *size, struct qd_err *err);
/* Path of a blob, for open()/mmap() reading. sha must be 64 lowercase hex digits
 * (else QD_EINVAL, field "sha256"); out must hold at least qd_blob_path_max(st) bytes.
 * Does not check that the file exists: see qd_blob_exists(). */
int qd_blob_path(const struct qd_store *st, const char *sha, char *out, size_t outsz,
		 struct qd_err *err);
size_t qd_blob_path_max(const struct qd_store *st);
bool qd_blob_exists(const struct qd_store *st, const char *sha);

/* ---- paging ----
 * List calls return rows newest first. cursor is an opaque string from a previous call's
 * next_cursor ("" or NULL = first page); limit 1..1000 (0 = 50). next_cursor is set to
 * "" on the last page. A malformed cursor is QD_EINVAL with field "cursor". */
#define QD_STORE_CURSOR_MAX 64
struct qd_page {
	int limit;
	const char *cursor;                   /* borrow */
	char next_cursor[QD_STORE_CURSOR_MAX]; /* out */
};

/* ---- models ---- */
struct qd_model_row {
	char id[64];          /* "mdl_..." */
	char sha256[65];
	int64_t size;
	char *name;           /* new, may be NULL */
	char *summary_json;   /* new, may be NULL (JSON text, e.g. opset, inputs, outputs) */
	double created_at;
};
void qd_model_row_free(struct qd_model_row *r);                 /* frees members, not r */
void qd_model_rows_free(struct qd_model_row *rows, size_t n);   /* frees members and array */

/* Insert-or-get by sha256: the blob must already be committed (QD_ENOT_FOUND, field
 * "sha256", if not). If a model with this sha256 exists, out is that row and *existed is
 * true (name/summary are not changed). out and existed may be NULL. */
int qd_model_insert(struct qd_store_conn *c, const char *sha256, int64_t size,
		    const char *name, const char *summary_json, struct qd_model_row *out,
		    bool *existed, struct qd_err *err);
int qd_model_get(struct qd_store_conn *c, const char *id, struct qd_model_row *out,
		 struct qd_err *err);
/* The model stored with these bytes: QD_ENOT_FOUND (field "sha256") when none, QD_EINVAL
 * when sha256 is not 64 lowercase hex digits. */
int qd_model_find_sha(struct qd_store_conn *c, const char *sha256, struct qd_model_row *out,
		      struct qd_err *err);
/* *rows is new (qd_model_rows_free). */
int qd_model_list(struct qd_store_conn *c, struct qd_page *pg, struct qd_model_row **rows,
		  size_t *n, struct qd_err *err);
/* QD_ECONFLICT if a queued or running job uses the model. Finished jobs keep their row
 * (their model becomes null). The blob is removed when no row references it any more. */
int qd_model_delete(struct qd_store_conn *c, const char *id, struct qd_err *err);

/* ---- datasets (same rules as models) ---- */
struct qd_dataset_row {
	char id[64];          /* "dst_..." */
	char sha256[65];
	int64_t size;
	char *name;           /* new, may be NULL */
	char *format;         /* new: "npz", "onnx_test_data", ... */
	double created_at;
	char *summary_json;   /* new, may be NULL (JSON text: qd_dataset_summary_json) */
};
void qd_dataset_row_free(struct qd_dataset_row *r);
void qd_dataset_rows_free(struct qd_dataset_row *rows, size_t n);
int qd_dataset_insert(struct qd_store_conn *c, const char *sha256, int64_t size,
		      const char *name, const char *format, struct qd_dataset_row *out,
		      bool *existed, struct qd_err *err);
/* Same, with the summary JSON text (may be NULL) stored beside the row. */
int qd_dataset_insert_summary(struct qd_store_conn *c, const char *sha256, int64_t size,
			      const char *name, const char *format, const char *summary_json,
			      struct qd_dataset_row *out, bool *existed, struct qd_err *err);
int qd_dataset_get(struct qd_store_conn *c, const char *id, struct qd_dataset_row *out,
		   struct qd_err *err);
int qd_dataset_find_sha(struct qd_store_conn *c, const char *sha256, struct qd_dataset_row *out,
			struct qd_err *err);
int qd_dataset_list(struct qd_store_conn *c, struct qd_page *pg,
		    struct qd_dataset_row **rows, size_t *n, struct qd_err *err);
int qd_dataset_delete(struct qd_store_conn *c, const char *id, struct qd_err *err);

/* ---- jobs ---- */
enum qd_job_state {
	QD_JOB_QUEUED,
	QD_JOB_RUNNING,
	QD_JOB_SUCCEEDED,
	QD_JOB_FAILED,
	QD_JOB_CANCELED,
	QD_JOB__COUNT
};
#define QD_JOB_MASK(s) (1u << (s))
#define QD_JOB_MASK_ANY ((1u << QD_JOB__COUNT) - 1)
#define QD_JOB_MASK_TERMINAL \
	(QD_JOB_MASK(QD_JOB_SUCCEEDED) | QD_JOB_MASK(QD_JOB_FAILED) | QD_JOB_MASK(QD_JOB_CANCELED))

const char *qd_job_state_name(enum qd_job_state s);             /* "queued", ... */
/* QD_EINVAL (field "state") for an unknown name. */
int qd_job_state_parse(const char *name, enum qd_job_state *out, struct qd_err *err);
bool qd_job_state_terminal(enum qd_job_state s);
/* Whether from -> to is in the transition table. */
bool qd_job_transition_legal(enum qd_job_state from, enum qd_job_state to);

struct qd_job_row {
	char id[64];              /* "job_..." */
	char model_id[64];        /* "" when the model was deleted */
	enum qd_job_state state;
	double progress;          /* 0..1 */
	char *progress_msg;       /* new, may be NULL */
	int attempts, max_attempts;
	char *error_code;         /* new, NULL unless failed/canceled ("INTERRUPTED", "MODEL",
				   * "CANCELED", ...) */
	char *error_message;      /* new, NULL unless failed/canceled */
	bool cancel_requested;
	char *workflow_json;      /* new, never NULL */
	char *result_json;        /* new, NULL until succeeded */
	char *worker;             /* new, worker that claimed it last, NULL if never claimed */
	double created_at, started_at, finished_at, updated_at;
	char *search_json;        /* new, NULL unless a search reported trials: {trials_done,
				   * trials_planned, best, finished, ...} */
};
void qd_job_row_free(struct qd_job_row *r);
void qd_job_rows_free(struct qd_job_row *rows, size_t n);

/* New queued job. model_id must exist (QD_ENOT_FOUND, field "model"); workflow_json
 * must be valid JSON (QD_EPARSE, field "workflow"; validating it against the pass
 * registry is the caller's job). max_attempts <= 0 means 3. If max_queued > 0 and that
 * many jobs are already queued: QD_EQUEUE_FULL. out may be NULL. */
int qd_job_create(struct qd_store_conn *c, const char *model_id, const char *workflow_json,
		  int max_attempts, int max_queued, struct qd_job_row *out, struct qd_err *err);
int qd_job_get(struct qd_store_conn *c, const char *id, struct qd_job_row *out,
	       struct qd_err *err);
/* state_mask: QD_JOB_MASK(...) bits, 0 = all. Newest first. */
int qd_job_list(struct qd_store_conn *c, unsigned state_mask, struct qd_page *pg,
		struct qd_job_row **rows, size_t *n, struct qd_err *err);
/* Only terminal jobs (else QD_ECONFLICT). Removes trials, artifacts (and their blobs when
 * unreferenced) and log lines. */
int qd_job_delete(struct qd_store_conn *c, const char *id, struct qd_err *err);

/* Extra data written by a transition; any member may be NULL. */
struct qd_job_update {
	const char *worker;         /* -> running: name of the claiming worker */
	const char *result_json;    /* -> succeeded (must be valid JSON if set) */
	const char *error_code;     /* -> failed (default "INTERNAL") */
	const char *error_message;  /* -> failed / canceled */
};

/* THE state-change function. In one BEGIN IMMEDIATE transaction: reads the job, checks
 * its state is in from_mask and that state -> to is legal (else QD_ECONFLICT naming both
 * states), writes the new state and updated_at, and:
 *   -> running:   attempts+1, started_at=now, worker, progress 0, error cleared
 *   -> queued:    progress cleared (attempts kept)
 *   -> succeeded: result_json, progress 1, finished_at
 *   -> failed:    error_code/error_message, finished_at
 *   -> canceled:  finished_at, error_code "CANCELED", error_message (default
 *                 "job canceled")
 * out (may be NULL) receives the row after the change. */
int qd_job_transition(struct qd_store_conn *c, const char *id, unsigned from_mask,
		      enum qd_job_state to, const struct qd_job_update *upd,
		      struct qd_job_row *out, struct qd_err *err);

/* Worker side. Claims the oldest queued job (queued -> running) in one transaction; two
 * workers never get the same job. *claimed is false (and 0 returned) when the queue is
 * empty. out receives the claimed row. */
int qd_job_claim(struct qd_store_conn *c, const char *worker, struct qd_job_row *out,
		 bool *claimed, struct qd_err *err);
/* Running jobs only (else QD_ECONFLICT). progress is clamped to 0..1; msg may be NULL.
 * *cancel_requested (may be NULL) tells the worker to stop and finish as canceled. */
int qd_job_progress(struct qd_store_conn *c, const char *id, double progress,
		    const char *msg, bool *cancel_requested, struct qd_err *err);
int qd_job_cancel_requested(struct qd_store_conn *c, const char *id, bool *out,
			    struct qd_err *err);
/* running -> succeeded / failed / canceled (via qd_job_transition). */
int qd_job_finish_succeeded(struct qd_store_conn *c, const char *id, const char *result_json,
			    struct qd_err *err);
int qd_job_finish_failed(struct qd_store_conn *c, const char *id, const char *code,
			 const char *message, struct qd_err *err);
int qd_job_finish_canceled(struct qd_store_conn *c, const char *id, struct qd_err *err);
/* running -> queued, attempt counter kept (SIGTERM after the grace period). */
int qd_job_requeue(struct qd_store_conn *c, const char *id, struct qd_err *err);

/* User side. queued -> canceled at once; running -> cancel_requested set (the worker
 * then finishes it as canceled); already canceled -> no-op; succeeded/failed ->
 * QD_ECONFLICT. out (may be NULL) receives the row after the call. */
int qd_job_cancel(struct qd_store_conn *c, const char *id, struct qd_job_row *out,
		  struct qd_err *err);

/* Start-up crash recovery (call before workers start). Every job left running: if a
 * cancel had been requested it becomes canceled; else if its attempts reached the limit
 * it becomes failed with error_code "INTERRUPTED" and the message "job interrupted N
 * times (daemon crashed or was killed)"; else it goes back to queued (attempts kept).
 * The limit is max_attempts if > 0, else each job's own max_attempts.
 * Counts may be NULL. */
struct qd_recover_stats { int requeued, failed, canceled; };
int qd_store_recover(struct qd_store_conn *c, int max_attempts, struct qd_recover_stats *st,
		     struct qd_err *err);

/* ---- trials (one per evaluated search candidate) ----
 * The job's process reports each trial as it finishes (passes/workflow.h trial hook); the
 * worker commits it here with the search's progress on the job row in one transaction.
 * A resumed attempt gets the rows' record_json back and reuses those trials. */
struct qd_trial_row {
	char id[64];          /* "trl_..." */
	char job_id[64];
	int idx;              /* the trial number (1, 2, ...) */
	char *config_json;    /* new: the searched parameters {"<pass>.<param>": value} */
	char *metrics_json;   /* new, may be NULL: metric values {key: number} (NULL: failed) */
	char state[16];       /* "ok" or "failed" (free text, < 16) */
	double created_at;
	char *goals_json;     /* new, may be NULL: goal key -> status */
	bool goals_met;
	double seconds;       /* the trial's duration */
	char *error;          /* new, may be NULL */
	char *model_path;     /* new, may be NULL: the trial's model under the job's output */
	int64_t model_size;   /* bytes of the model and its data, -1 unknown */
	char model_sha256[65];/* "" unknown */
	bool pareto;          /* on the final pareto frontier (set when the search ends) */
	char *record_json;    /* new, may be NULL: the job process's full record of the trial */
};
void qd_trial_rows_free(struct qd_trial_row *rows, size_t n);
/* Insert trial r (job_id, idx, config_json, state required; id, created_at and pareto
 * are set here) or replace the job's earlier row of the same idx, and when search_json
 * is not NULL set the job's search progress, in one transaction. The job must exist
 * (QD_ENOT_FOUND, field "job"). id_out (64 bytes) may be NULL. */
int qd_trial_add(struct qd_store_conn *c, const struct qd_trial_row *r, const char *search_json,
		 char id_out[64], struct qd_err *err);
/* In idx order. pg NULL: every trial; else a page (limit, cursor "c<idx>": trials after
 * that idx, next_cursor). *rows is new. */
int qd_trial_list(struct qd_store_conn *c, const char *job_id, struct qd_page *pg,
		  struct qd_trial_row **rows, size_t *n, struct qd_err *err);
/* The search ended: exactly the trials idx[0..n) are on the pareto frontier; the job's
 * search progress becomes search_json (may be NULL: kept). One transaction. */
int qd_trial_set_pareto(struct qd_store_conn *c, const char *job_id, const int *idx, size_t n,
			const char *search_json, struct qd_err *err);

/* ---- artifacts (results of a job, each a blob) ---- */
struct qd_artifact_row {
	char id[64];          /* "art_..." */
	char job_id[64];
	char kind[32];        /* "model", "metrics", "footprint", "log", ... */
	char *name;           /* new, e.g. "model.onnx" */
	char sha256[65];
	int64_t size;
	char *content_type;   /* new, e.g. "application/octet-stream" */
	double created_at;
};
void qd_artifact_row_free(struct qd_artifact_row *r);
void qd_artifact_rows_free(struct qd_artifact_row *rows, size_t n);
/* The blob must be committed (QD_ENOT_FOUND, field "sha256") and the job must exist
 * (QD_ENOT_FOUND, field "job"). content_type NULL = "application/octet-stream".
 * out may be NULL. */
int qd_artifact_add(struct qd_store_conn *c, const char *job_id, const char *kind,
		    const char *name, const char *sha256, int64_t size, const char *content_type,
		    struct qd_artifact_row *out, struct qd_err *err);
/* Oldest first. *rows is new. */
int qd_artifact_list(struct qd_store_conn *c, const char *job_id,
		     struct qd_artifact_row **rows, size_t *n, struct qd_err *err);
int qd_artifact_get(struct qd_store_conn *c, const char *id, struct qd_artifact_row *out,
		    struct qd_err *err);

/* ---- job log ---- */
struct qd_log_line {
	int64_t seq;          /* 1, 2, 3, ... per job */
	double ts;
	char level[8];        /* qd_log_level_name(): "debug", "info", "warn", "error" */
	char *line;           /* new */
};
void qd_log_lines_free(struct qd_log_line *lines, size_t n);
/* Appends with the next seq of this job (QD_ENOT_FOUND if the job does not exist).
 * Lines longer than QD_JOB_LOG_LINE_MAX bytes are cut (marked "... [N bytes cut]").
 * seq_out may be NULL. */
#define QD_JOB_LOG_LINE_MAX 8192
int qd_job_log_append(struct qd_store_conn *c, const char *job_id, enum qd_log_level lvl,
		      const char *line, int64_t *seq_out, struct qd_err *err);
/* Lines with seq > after_seq in seq order, at most limit (0 = 1000). *lines is new. */
int qd_job_log_list(struct qd_store_conn *c, const char *job_id, int64_t after_seq, int limit,
		    struct qd_log_line **lines, size_t *n, struct qd_err *err);

/* ---- counters (Prometheus /metrics) ---- */
struct qd_store_counts {
	int64_t jobs[QD_JOB__COUNT];  /* by state; jobs[QD_JOB_QUEUED] is the queue depth */
	int64_t models, datasets, artifacts;
	int64_t blob_bytes;           /* sum of sizes of distinct referenced blobs */
};
int qd_store_counts(struct qd_store_conn *c, struct qd_store_counts *out, struct qd_err *err);

/* ---- JSON renderers for the API (jansson). All return a **new** reference, NULL only
 * on out-of-memory. JSON text columns are embedded as parsed values. ---- */
/* {id, sha256, size, name, summary, created_at} */
json_t *qd_model_to_json(const struct qd_model_row *r);
/* {id, sha256, size, name, format, created_at, summary} */
json_t *qd_dataset_to_json(const struct qd_dataset_row *r);
/* {id, job, kind, name, size, sha256, content_type, created_at, url: "/v1/artifacts/<id>"} */
json_t *qd_artifact_to_json(const struct qd_artifact_row *r);
/* {id, job, trial, status, params, values, goals, goals_met, seconds, error, model,
 *  model_size, model_sha256, pareto, cached_from, fallback, created_at} */
json_t *qd_trial_to_json(const struct qd_trial_row *r);
/* {id, model, state, progress, progress_message, attempts, max_attempts,
 *  cancel_requested, error: {code, message} | null, created_at, started_at, finished_at,
 *  updated_at, workflow, result, search (null without a search), artifacts: [...]}; arts may be NULL when n_arts is 0. */
json_t *qd_job_to_json(const struct qd_job_row *r, const struct qd_artifact_row *arts,
		       size_t n_arts);

#endif
