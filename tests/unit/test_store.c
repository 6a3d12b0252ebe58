/* Unit tests for store/: migrations, blobs (incl. crash simulation), model dedup, the job
 * state machine (every transition), concurrent claims, recovery, cancel, paging, job log,
 * delete rules, counters, JSON. Real SQLite in a temporary data directory. */
#define _GNU_SOURCE
#include "qd_test.h"
#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];

static int count_files(const char *sub)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int raw_exec(const char *sql)
{
	char p[512];
	snprintf(p, sizeof p, "%s/quantd.db", dir);
	sqlite3 *db = NULL;
	int rc = sqlite3_open(p, &db);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static int raw_user_version(void)
{
	char p[512];
	snprintf(p, sizeof p, "%s/quantd.db", dir);
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int v = -1;
	if (sqlite3_open(p, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* A model row over a fresh blob holding text. */
static void add_model(struct qd_store *st, struct qd_store_conn *c, const char *text,
		      struct qd_model_row *m)
{
	char sha[65];
	uint64_t size = 0;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_blob_put_mem(st, text, strlen(text), sha, &size, &err), 0);
	bool existed = true;
	CHECK_EQ_INT(qd_model_insert(c, sha, (int64_t)size, "m.onnx", "{\"opset\":13}", m, &existed,
				     &err), 0);
}

static void test_open_migrate(void)
{
	struct qd_store *st = NULL;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	CHECK(st != NULL);
	CHECK_EQ_INT(raw_user_version(), qd_store_schema_version());
	CHECK(qd_store_schema_version() >= 1);
	/* One daemon per data directory. */
	struct qd_store *st2 = NULL;
	CHECK_EQ_INT(qd_store_open(dir, &st2, &err), -QD_EBUSY);
	CHECK(st2 == NULL && strstr(err.msg, "in use"));
	/* Data survives a re-open; migrations are idempotent. */
	struct qd_store_conn *c = NULL;
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_model_row m;
	add_model(st, c, "persist me", &m);
	qd_store_disconnect(c);
	qd_store_close(st);
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	CHECK_EQ_INT(raw_user_version(), qd_store_schema_version());
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_model_row m2;
	CHECK_EQ_INT(qd_model_get(c, m.id, &m2, &err), 0);
	CHECK_STR(m2.sha256, m.sha256);
	CHECK_STR(m2.name, "m.onnx");
	CHECK(qd_blob_exists(st, m.sha256));
	qd_model_row_free(&m);
	qd_model_row_free(&m2);
	qd_store_disconnect(c);
	qd_store_close(st);
	/* A database from a newer quantd is refused, and left alone. */
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", qd_store_schema_version() + 1);
	CHECK_EQ_INT(raw_exec(sql), SQLITE_OK);
	st = NULL;
	qd_err_clear(&err);
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), -QD_EDB);
	CHECK(st == NULL);
	CHECKF(strstr(err.msg, "newer than this quantd supports") != NULL, "%s", err.msg);
	CHECK_EQ_INT(raw_user_version(), qd_store_schema_version() + 1);
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", qd_store_schema_version());
	CHECK_EQ_INT(raw_exec(sql), SQLITE_OK);
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	qd_store_close(st);
	/* A failing migration rolls back completely and leaves the version alone. */
	char saved[256];
	memcpy(saved, dir, sizeof saved);
	snprintf(dir, sizeof dir, "%.200s/conflict", saved);
	CHECK_EQ_INT(mkdir(dir, 0755), 0);
	CHECK_EQ_INT(raw_exec("CREATE TABLE jobs (x)"), SQLITE_OK);
	qd_err_clear(&err);
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), -QD_EDB);
	CHECKF(strstr(err.msg, "migration 1") && strstr(err.msg, "jobs"), "%s", err.msg);
	CHECK_EQ_INT(raw_user_version(), 0);
	CHECK_EQ_INT(raw_exec("SELECT count(*) FROM models"), SQLITE_ERROR);  /* not created */
	CHECK_EQ_INT(raw_exec("DROP TABLE jobs"), SQLITE_OK);
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	CHECK_EQ_INT(raw_user_version(), qd_store_schema_version());
	qd_store_close(st);
	memcpy(dir, saved, sizeof dir);
	/* Bad arguments. */
	CHECK_EQ_INT(qd_store_open("", &st, &err), -QD_EINVAL);
	CHECK_EQ_INT(qd_store_open("/proc/quantd-cannot-create", &st, &err), -QD_EIO);
}

static void test_blobs(struct qd_store *st, struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	struct qd_blob_writer *w = NULL;
	CHECK_EQ_INT(qd_blob_writer_open(st, &w, &err), 0);
	CHECK_EQ_INT(count_files("tmp"), 1);
	/* 300 KiB in odd chunks. */
	size_t n = 300 * 1024;
	unsigned char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 131 + (i >> 9));
	for (size_t off = 0; off < n;) {
		size_t k = QD_MIN((size_t)7777, n - off);
		CHECK_EQ_INT(qd_blob_writer_write(w, data + off, k, &err), 0);
		off += k;
	}
	CHECK_EQ_INT(qd_blob_writer_size(w), n);
	char sha[65], want[65];
	uint64_t size = 0;
	CHECK_EQ_INT(qd_blob_writer_commit(w, sha, &size, &err), 0);
	qd_sha256_hex(data, n, want);
	CHECK_STR(sha, want);
	CHECK_EQ_INT(size, n);
	CHECK_EQ_INT(count_files("tmp"), 0);
	char path[4096];
	CHECK_EQ_INT(qd_blob_path(st, sha, path, sizeof path, &err), 0);
	struct qd_buf b = { 0 };
	CHECK_EQ_INT(qd_file_read(path, &b, &err), 0);
	CHECK(b.len == n && !memcmp(b.data, data, n));
	qd_buf_free(&b);
	char sub[16];
	snprintf(sub, sizeof sub, "blobs/%.2s", sha);
	CHECK(strstr(path, sub) != NULL);
	/* Same content again: same sha, one file. */
	char sha2[65];
	CHECK_EQ_INT(qd_blob_put_mem(st, data, n, sha2, NULL, &err), 0);
	CHECK_STR(sha2, sha);
	CHECK_EQ_INT(count_files(sub), 1);
	/* Import from a file. */
	char src[512];
	snprintf(src, sizeof src, "%s/import.bin", dir);
	CHECK_EQ_INT(qd_file_write_atomic(src, data, 1000, &err), 0);
	CHECK_EQ_INT(qd_blob_put_file(st, src, sha2, &size, &err), 0);
	qd_sha256_hex(data, 1000, want);
	CHECK_STR(sha2, want);
	CHECK_EQ_INT(size, 1000);
	CHECK(access(src, F_OK) == 0);
	unlink(src);
	CHECK_EQ_INT(qd_blob_put_file(st, src, sha2, &size, &err), -QD_ENOT_FOUND);
	CHECK_STR(err.field, "path");
	/* Abort leaves nothing behind. */
	CHECK_EQ_INT(qd_blob_writer_open(st, &w, &err), 0);
	CHECK_EQ_INT(qd_blob_writer_write(w, "partial", 7, &err), 0);
	qd_blob_writer_abort(w);
	CHECK_EQ_INT(count_files("tmp"), 0);
	qd_sha256_hex("partial", 7, want);
	CHECK(!qd_blob_exists(st, want));
	/* Empty blob. */
	CHECK_EQ_INT(qd_blob_put_mem(st, "", 0, sha2, &size, &err), 0);
	CHECK_STR(sha2, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	CHECK(qd_blob_exists(st, sha2));
	/* Invalid sha names. */
	CHECK_EQ_INT(qd_blob_path(st, "../../etc/passwd", path, sizeof path, &err), -QD_EINVAL);
	CHECK_STR(err.field, "sha256");
	CHECK_EQ_INT(qd_blob_path(st, "ABCDEF", path, sizeof path, &err), -QD_EINVAL);
	CHECK(!qd_blob_exists(st, NULL));
	CHECK_EQ_INT(qd_blob_path(st, sha, path, 10, &err), -QD_EINVAL);
	/* A row can only point at a committed blob. */
	CHECK_EQ_INT(qd_model_insert(c, want, 7, "x", NULL, NULL, NULL, &err), -QD_ENOT_FOUND);
	CHECK_STR(err.field, "sha256");
	CHECK_EQ_INT(qd_model_insert(c, "nothex", 7, "x", NULL, NULL, NULL, &err), -QD_EINVAL);
	free(data);
}

/* kill -9 in the middle of an upload and between blob commit and row insert: the next
 * open sweeps the temp file and the unreferenced blob; referenced blobs stay. */
static void test_crash_sweep(void)
{
	struct qd_store *st = NULL;
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_model_row keep;
	add_model(st, c, "referenced model", &keep);
	char orphan[65];
	qd_sha256_hex("orphan blob", 11, orphan);
	pid_t pid = fork();
	if (pid == 0) {
		struct qd_blob_writer *w = NULL;
		char sha[65];
		qd_blob_put_mem(st, "orphan blob", 11, sha, NULL, NULL);
		if (qd_blob_writer_open(st, &w, NULL) == 0)
			qd_blob_writer_write(w, "half an upload", 14, NULL);
		raise(SIGKILL);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK_EQ_INT(count_files("tmp"), 1);
	CHECK(qd_blob_exists(st, orphan));
	qd_store_disconnect(c);
	qd_store_close(st);
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	CHECK_EQ_INT(count_files("tmp"), 0);
	CHECK(!qd_blob_exists(st, orphan));
	CHECK(qd_blob_exists(st, keep.sha256));
	/* Every row's blob exists. */
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_model_row *rows = NULL;
	size_t n = 0;
	struct qd_page pg = { .limit = 1000 };
	CHECK_EQ_INT(qd_model_list(c, &pg, &rows, &n, &err), 0);
	CHECK(n >= 1);
	size_t missing = 0;
	for (size_t i = 0; i < n; i++)
		missing += !qd_blob_exists(st, rows[i].sha256);
	CHECK_EQ_INT(missing, 0);
	qd_model_rows_free(rows, n);
	qd_model_row_free(&keep);
	qd_store_disconnect(c);
	qd_store_close(st);
}

static void test_model_dedup(struct qd_store *st, struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	char sha[65];
	uint64_t size;
	CHECK_EQ_INT(qd_blob_put_mem(st, "dedup me", 8, sha, &size, &err), 0);
	struct qd_model_row a, b;
	bool existed = true;
	CHECK_EQ_INT(qd_model_insert(c, sha, 8, "first.onnx", NULL, &a, &existed, &err), 0);
	CHECK(!existed);
	CHECK(!strncmp(a.id, "mdl_", 4) && strlen(a.id) == 20);
	CHECK_EQ_INT(qd_model_insert(c, sha, 8, "second.onnx", "{}", &b, &existed, &err), 0);
	CHECK(existed);
	CHECK_STR(b.id, a.id);
	CHECK_STR(b.name, "first.onnx");
	CHECK(b.summary_json == NULL);
	json_t *j = qd_model_to_json(&a);
	CHECK(j && json_is_string(json_object_get(j, "id")) &&
	      !strcmp(json_string_value(json_object_get(j, "sha256")), sha) &&
	      json_integer_value(json_object_get(j, "size")) == 8 &&
	      json_is_null(json_object_get(j, "summary")) &&
	      json_is_string(json_object_get(j, "created_at")));
	json_decref(j);
	qd_model_row_free(&a);
	qd_model_row_free(&b);
	CHECK_EQ_INT(qd_model_get(c, "mdl_nope", &a, &err), -QD_ENOT_FOUND);
	CHECK(strstr(err.msg, "mdl_nope") != NULL);
	/* Datasets: same rules. */
	struct qd_dataset_row d, d2;
	CHECK_EQ_INT(qd_blob_put_mem(st, "npz bytes", 9, sha, &size, &err), 0);
	CHECK_EQ_INT(qd_dataset_insert(c, sha, 9, "calib.npz", "npz", &d, &existed, &err), 0);
	CHECK(!existed && !strncmp(d.id, "dst_", 4));
	CHECK_EQ_INT(qd_dataset_insert(c, sha, 9, "again.npz", "npz", &d2, &existed, &err), 0);
	CHECK(existed);
	CHECK_STR(d2.id, d.id);
	CHECK_EQ_INT(qd_dataset_insert(c, sha, 9, "x", NULL, NULL, NULL, &err), -QD_EINVAL);
	CHECK_STR(err.field, "format");
	qd_dataset_row_free(&d2);
	CHECK_EQ_INT(qd_dataset_get(c, d.id, &d2, &err), 0);
	CHECK_STR(d2.format, "npz");
	qd_dataset_row_free(&d2);
	CHECK_EQ_INT(qd_dataset_delete(c, d.id, &err), 0);
	CHECK(!qd_blob_exists(st, sha));
	CHECK_EQ_INT(qd_dataset_get(c, d.id, &d2, &err), -QD_ENOT_FOUND);
	qd_dataset_row_free(&d);
}

/* Drives a fresh job into state s using only legal transitions. */
static void job_in_state(struct qd_store_conn *c, const char *model, enum qd_job_state s,
			 char id[64])
{
	struct qd_err err = { 0 };
	struct qd_job_row j;
	CHECK_EQ_INT(qd_job_create(c, model, "{\"passes\":{}}", 0, 0, &j, &err), 0);
	memcpy(id, j.id, 64);
	qd_job_row_free(&j);
	if (s == QD_JOB_QUEUED)
		return;
	if (s == QD_JOB_CANCELED) {
		CHECK_EQ_INT(qd_job_transition(c, id, QD_JOB_MASK_ANY, QD_JOB_CANCELED, NULL, NULL,
					       &err), 0);
		return;
	}
	struct qd_job_update u = { .worker = "w0" };
	CHECK_EQ_INT(qd_job_transition(c, id, QD_JOB_MASK_ANY, QD_JOB_RUNNING, &u, NULL, &err), 0);
	if (s != QD_JOB_RUNNING)
		CHECK_EQ_INT(qd_job_transition(c, id, QD_JOB_MASK_ANY, s, NULL, NULL, &err), 0);
}

/* Finishes every running job (as failed) so a test starts from a known queue. */
static void fail_all_running(struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	struct qd_job_row *rows = NULL;
	size_t n = 0;
	struct qd_page pg = { .limit = 1000 };
	CHECK_EQ_INT(qd_job_list(c, QD_JOB_MASK(QD_JOB_RUNNING), &pg, &rows, &n, &err), 0);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ_INT(qd_job_finish_failed(c, rows[i].id, "TEST", "cleanup", &err), 0);
	qd_job_rows_free(rows, n);
}

static void test_transitions(struct qd_store *st, struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	struct qd_model_row m;
	add_model(st, c, "transition model", &m);
	static const bool legal[QD_JOB__COUNT][QD_JOB__COUNT] = {
		[QD_JOB_QUEUED] = { [QD_JOB_RUNNING] = 1, [QD_JOB_CANCELED] = 1 },
		[QD_JOB_RUNNING] = { [QD_JOB_SUCCEEDED] = 1, [QD_JOB_FAILED] = 1,
				     [QD_JOB_CANCELED] = 1, [QD_JOB_QUEUED] = 1 },
	};
	int n_legal = 0, n_illegal = 0;
	for (int from = 0; from < QD_JOB__COUNT; from++)
		for (int to = 0; to < QD_JOB__COUNT; to++) {
			char id[64];
			job_in_state(c, m.id, (enum qd_job_state)from, id);
			CHECK_EQ_INT(qd_job_transition_legal(from, to), legal[from][to]);
			struct qd_job_row before, after;
			CHECK_EQ_INT(qd_job_get(c, id, &before, &err), 0);
			CHECK_EQ_INT(before.state, from);
			int rc = qd_job_transition(c, id, QD_JOB_MASK_ANY, (enum qd_job_state)to,
						   NULL, &after, &err);
			if (legal[from][to]) {
				n_legal++;
				CHECKF(rc == 0, "%s -> %s: %s", qd_job_state_name(from),
				       qd_job_state_name(to), err.msg);
				if (rc == 0) {
					CHECK_EQ_INT(after.state, to);
					CHECK(after.updated_at >= before.updated_at);
					qd_job_row_free(&after);
				}
			} else {
				n_illegal++;
				CHECKF(rc == -QD_ECONFLICT, "%s -> %s gave %d",
				       qd_job_state_name(from), qd_job_state_name(to), rc);
				CHECK(strstr(err.msg, qd_job_state_name(from)) &&
				      strstr(err.msg, qd_job_state_name(to)));
				CHECK_EQ_INT(qd_job_get(c, id, &after, &err), 0);
				CHECK_EQ_INT(after.state, from);
				CHECK(after.updated_at == before.updated_at);
				qd_job_row_free(&after);
			}
			qd_job_row_free(&before);
		}
	CHECK_EQ_INT(n_legal, 6);
	CHECK_EQ_INT(n_illegal, 19);
	/* from_mask is enforced too: a legal move from a state the caller did not expect. */
	char id[64];
	job_in_state(c, m.id, QD_JOB_QUEUED, id);
	CHECK_EQ_INT(qd_job_transition(c, id, QD_JOB_MASK(QD_JOB_RUNNING), QD_JOB_CANCELED, NULL,
				       NULL, &err), -QD_ECONFLICT);
	CHECK_EQ_INT(qd_job_transition(c, id, QD_JOB_MASK_ANY, (enum qd_job_state)99, NULL, NULL,
				       &err), -QD_EINVAL);
	CHECK_EQ_INT(qd_job_transition(c, "job_missing", QD_JOB_MASK_ANY, QD_JOB_RUNNING, NULL,
				       NULL, &err), -QD_ENOT_FOUND);
	/* Finishing helpers only work from running. */
	CHECK_EQ_INT(qd_job_finish_succeeded(c, id, "{}", &err), -QD_ECONFLICT);
	CHECK_EQ_INT(qd_job_requeue(c, id, &err), -QD_ECONFLICT);
	/* State names round-trip. */
	for (int s = 0; s < QD_JOB__COUNT; s++) {
		enum qd_job_state p;
		CHECK_EQ_INT(qd_job_state_parse(qd_job_state_name(s), &p, &err), 0);
		CHECK_EQ_INT(p, s);
	}
	enum qd_job_state p;
	CHECK_EQ_INT(qd_job_state_parse("done", &p, &err), -QD_EINVAL);
	CHECK_STR(err.field, "state");
	qd_model_row_free(&m);
}

static void test_lifecycle(struct qd_store *st, struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	struct qd_model_row m;
	add_model(st, c, "lifecycle model", &m);
	/* Drain whatever earlier tests left queued. */
	struct qd_job_row j;
	bool got = true;
	while (got && qd_job_claim(c, "drain", &j, &got, &err) == 0 && got) {
		qd_job_finish_canceled(c, j.id, &err);
		qd_job_row_free(&j);
	}
	CHECK_EQ_INT(qd_job_create(c, "mdl_missing", "{}", 0, 0, NULL, &err), -QD_ENOT_FOUND);
	CHECK_STR(err.field, "model");
	CHECK_EQ_INT(qd_job_create(c, m.id, "{not json", 0, 0, NULL, &err), -QD_EPARSE);
	CHECK_STR(err.field, "workflow");
	struct qd_job_row created;
	CHECK_EQ_INT(qd_job_create(c, m.id, "{\"passes\":{\"q\":{\"type\":\"OnnxQuantization\"}}}",
				   2, 0, &created, &err), 0);
	CHECK(!strncmp(created.id, "job_", 4));
	CHECK_EQ_INT(created.state, QD_JOB_QUEUED);
	CHECK_EQ_INT(created.attempts, 0);
	CHECK_EQ_INT(created.max_attempts, 2);
	CHECK_STR(created.model_id, m.id);
	CHECK(created.started_at == 0 && created.finished_at == 0 && created.created_at > 0);
	CHECK(!qd_job_state_terminal(created.state));
	CHECK_EQ_INT(qd_job_claim(c, "worker-1", &j, &got, &err), 0);
	CHECK(got);
	CHECK_STR(j.id, created.id);
	CHECK_EQ_INT(j.state, QD_JOB_RUNNING);
	CHECK_EQ_INT(j.attempts, 1);
	CHECK_STR(j.worker, "worker-1");
	CHECK(j.started_at > 0);
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_job_claim(c, "worker-1", &j, &got, &err), 0);
	CHECK(!got);
	bool cancel = true;
	CHECK_EQ_INT(qd_job_progress(c, created.id, 0.5, "calibrating", &cancel, &err), 0);
	CHECK(!cancel);
	CHECK_EQ_INT(qd_job_progress(c, created.id, 7.0, NULL, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_get(c, created.id, &j, &err), 0);
	CHECK_NEAR(j.progress, 1.0, 0);
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_job_progress(c, created.id, 0.25, "trial 1", NULL, &err), 0);
	CHECK_EQ_INT(qd_job_get(c, created.id, &j, &err), 0);
	CHECK_NEAR(j.progress, 0.25, 1e-12);
	CHECK_STR(j.progress_msg, "trial 1");
	qd_job_row_free(&j);
	/* Trials (as the worker commits them: the job's search progress in the same
	 * transaction; a repeated idx replaces the row), artifacts. */
	char tid[64];
	struct qd_trial_row t1 = { .idx = 1, .config_json = "{\"b\":2}", .metrics_json = "{\"acc\":0.9}",
				   .state = "ok", .goals_met = true, .seconds = 1.5, .model_path = "trials/1/model.onnx",
				   .model_size = 1234, .record_json = "{\"n\":1,\"cached_from\":null}" };
	snprintf(t1.job_id, sizeof t1.job_id, "%s", created.id);
	CHECK_EQ_INT(qd_trial_add(c, &t1, "{\"trials_done\":1,\"trials_planned\":3}", tid, &err), 0);
	struct qd_trial_row t0 = { .idx = 0, .config_json = "{\"b\":1}", .state = "failed", .model_size = -1,
				   .error = "boom" };
	snprintf(t0.job_id, sizeof t0.job_id, "%s", created.id);
	CHECK_EQ_INT(qd_trial_add(c, &t0, NULL, NULL, &err), 0);
	t0.error = "boom again";
	CHECK_EQ_INT(qd_trial_add(c, &t0, NULL, NULL, &err), 0);
	snprintf(t0.job_id, sizeof t0.job_id, "job_missing");
	CHECK_EQ_INT(qd_trial_add(c, &t0, NULL, NULL, &err), -QD_ENOT_FOUND);
	CHECK_EQ_INT(qd_job_get(c, created.id, &j, &err), 0);
	CHECK(j.search_json && strstr(j.search_json, "\"trials_done\":1"));
	qd_job_row_free(&j);
	struct qd_trial_row *tr = NULL;
	size_t nt = 0;
	CHECK_EQ_INT(qd_trial_list(c, created.id, NULL, &tr, &nt, &err), 0);
	CHECK_EQ_INT(nt, 2);
	if (nt == 2) {
		CHECK_EQ_INT(tr[0].idx, 0);
		CHECK_STR(tr[0].error, "boom again");
		CHECK_EQ_INT(tr[0].model_size, -1);
		CHECK_EQ_INT(tr[1].idx, 1);
		CHECK_STR(tr[1].id, tid);
		CHECK_STR(tr[1].metrics_json, "{\"acc\":0.9}");
		CHECK(tr[1].goals_met && !tr[1].pareto && tr[1].seconds == 1.5 && tr[1].model_size == 1234);
		json_t *tj = qd_trial_to_json(&tr[1]);
		CHECK(tj && json_real_value(json_object_get(json_object_get(tj, "values"), "acc")) == 0.9);
		CHECK(tj && json_integer_value(json_object_get(tj, "trial")) == 1 &&
		      json_is_null(json_object_get(tj, "cached_from")));
		json_decref(tj);
	}
	qd_trial_rows_free(tr, nt);
	/* pages of one trial: cursor after idx 0, then the last page */
	struct qd_page tp = { .limit = 1 };
	CHECK_EQ_INT(qd_trial_list(c, created.id, &tp, &tr, &nt, &err), 0);
	CHECK(nt == 1 && tr[0].idx == 0 && !strcmp(tp.next_cursor, "c0"));
	qd_trial_rows_free(tr, nt);
	char cur[QD_STORE_CURSOR_MAX];
	snprintf(cur, sizeof cur, "%s", tp.next_cursor);
	tp.cursor = cur;
	CHECK_EQ_INT(qd_trial_list(c, created.id, &tp, &tr, &nt, &err), 0);
	CHECK(nt == 1 && tr[0].idx == 1 && !tp.next_cursor[0]);
	qd_trial_rows_free(tr, nt);
	int par[] = { 1 };
	CHECK_EQ_INT(qd_trial_set_pareto(c, created.id, par, 1, "{\"finished\":true}", &err), 0);
	CHECK_EQ_INT(qd_trial_list(c, created.id, NULL, &tr, &nt, &err), 0);
	CHECK(nt == 2 && !tr[0].pareto && tr[1].pareto);
	qd_trial_rows_free(tr, nt);
	char sha[65];
	uint64_t size;
	CHECK_EQ_INT(qd_blob_put_mem(st, "quantized bytes", 15, sha, &size, &err), 0);
	struct qd_artifact_row a;
	CHECK_EQ_INT(qd_artifact_add(c, created.id, "model", "model.onnx", sha, 15, NULL, &a, &err), 0);
	CHECK(!strncmp(a.id, "art_", 4));
	CHECK_STR(a.content_type, "application/octet-stream");
	CHECK_EQ_INT(qd_artifact_add(c, created.id, "metrics", "metrics.json", sha, 15,
				     "application/json", NULL, &err), 0);
	char nosha[65];
	qd_sha256_hex("never stored", 12, nosha);
	CHECK_EQ_INT(qd_artifact_add(c, created.id, "model", "x", nosha, 1, NULL, NULL, &err),
		     -QD_ENOT_FOUND);
	CHECK_EQ_INT(qd_artifact_add(c, "job_missing", "model", "x", sha, 1, NULL, NULL, &err),
		     -QD_ENOT_FOUND);
	CHECK_STR(err.field, "job");
	CHECK_EQ_INT(qd_artifact_add(c, created.id, "", "x", sha, 1, NULL, NULL, &err), -QD_EINVAL);
	struct qd_artifact_row a2;
	CHECK_EQ_INT(qd_artifact_get(c, a.id, &a2, &err), 0);
	CHECK_STR(a2.name, "model.onnx");
	CHECK_STR(a2.sha256, sha);
	CHECK_EQ_INT(a2.size, 15);
	qd_artifact_row_free(&a2);
	CHECK_EQ_INT(qd_artifact_get(c, "art_missing", &a2, &err), -QD_ENOT_FOUND);
	/* Success. */
	CHECK_EQ_INT(qd_job_finish_succeeded(c, created.id, "not json", &err), -QD_EPARSE);
	CHECK_EQ_INT(qd_job_finish_succeeded(c, created.id, "{\"best\":\"trl_1\"}", &err), 0);
	CHECK_EQ_INT(qd_job_progress(c, created.id, 0.5, NULL, NULL, &err), -QD_ECONFLICT);
	CHECK(strstr(err.msg, "succeeded") != NULL);
	CHECK_EQ_INT(qd_job_get(c, created.id, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_SUCCEEDED);
	CHECK(j.finished_at >= j.started_at && j.started_at >= j.created_at);
	CHECK_NEAR(j.progress, 1.0, 0);
	CHECK_STR(j.result_json, "{\"best\":\"trl_1\"}");
	struct qd_artifact_row *arts = NULL;
	size_t na = 0;
	CHECK_EQ_INT(qd_artifact_list(c, j.id, &arts, &na, &err), 0);
	CHECK_EQ_INT(na, 2);
	json_t *jj = qd_job_to_json(&j, arts, na);
	CHECK(jj != NULL);
	if (jj) {
		CHECK_STR(json_string_value(json_object_get(jj, "state")), "succeeded");
		CHECK_STR(json_string_value(json_object_get(jj, "model")), m.id);
		CHECK(json_is_null(json_object_get(jj, "error")));
		CHECK_EQ_INT(json_integer_value(json_object_get(jj, "attempts")), 1);
		CHECK_STR(json_string_value(json_object_get(json_object_get(jj, "result"), "best")),
			  "trl_1");
		CHECK(json_is_object(json_object_get(json_object_get(jj, "workflow"), "passes")));
		const char *ca = json_string_value(json_object_get(jj, "created_at"));
		CHECK(ca && strlen(ca) == 24 && ca[10] == 'T' && ca[23] == 'Z');
		json_t *ja = json_object_get(jj, "artifacts");
		CHECK(json_array_size(ja) == 2);
		char url[128];
		snprintf(url, sizeof url, "/v1/artifacts/%s", a.id);
		CHECK_STR(json_string_value(json_object_get(json_array_get(ja, 0), "url")), url);
		CHECK_STR(json_string_value(json_object_get(json_array_get(ja, 0), "kind")), "model");
		CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(ja, 0), "size")), 15);
	}
	json_decref(jj);
	qd_artifact_rows_free(arts, na);
	qd_job_row_free(&j);
	/* Failure. */
	CHECK_EQ_INT(qd_job_create(c, m.id, "{}", 0, 0, &j, &err), 0);
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_job_claim(c, "worker-2", &j, &got, &err), 0);
	CHECK(got);
	CHECK_EQ_INT(qd_job_finish_failed(c, j.id, "MODEL", "unsupported op 'Foo' in node 'n1'", &err), 0);
	struct qd_job_row f;
	CHECK_EQ_INT(qd_job_get(c, j.id, &f, &err), 0);
	CHECK_EQ_INT(f.state, QD_JOB_FAILED);
	CHECK_STR(f.error_code, "MODEL");
	jj = qd_job_to_json(&f, NULL, 0);
	CHECK_STR(json_string_value(json_object_get(json_object_get(jj, "error"), "message")),
		  "unsupported op 'Foo' in node 'n1'");
	CHECK(json_is_null(json_object_get(jj, "result")));
	json_decref(jj);
	qd_job_row_free(&f);
	qd_job_row_free(&j);
	qd_job_row_free(&created);
	qd_artifact_row_free(&a);
	qd_model_row_free(&m);
}

static pthread_barrier_t claim_barrier;

struct claimer {
	struct qd_store *st;
	int idx;
	char (*ids)[64];
	int n;
	int errors;
};

static void *claim_thread(void *arg)
{
	struct claimer *cl = arg;
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	if (qd_store_connect(cl->st, &c, &err) < 0)
		cl->errors++;
	if (!c) {
		pthread_barrier_wait(&claim_barrier);
		return NULL;
	}
	char name[32];
	snprintf(name, sizeof name, "w%d", cl->idx);
	pthread_barrier_wait(&claim_barrier);
	for (;;) {
		struct qd_job_row j;
		bool got = false;
		if (qd_job_claim(c, name, &j, &got, &err) < 0) {
			fprintf(stderr, "claim: %s\n", err.msg);
			cl->errors++;
			break;
		}
		if (!got)
			break;
		memcpy(cl->ids[cl->n++], j.id, 64);
		if (strcmp(j.worker ? j.worker : "", name))
			cl->errors++;
		if (qd_job_finish_succeeded(c, j.id, "{}", &err) < 0) {
			fprintf(stderr, "finish: %s\n", err.msg);
			cl->errors++;
		}
		qd_job_row_free(&j);
	}
	qd_store_disconnect(c);
	return NULL;
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

static void test_concurrent_claim(struct qd_store *st, struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	struct qd_model_row m;
	add_model(st, c, "claim model", &m);
	enum { NJOBS = 120, NTHR = 4 };
	fail_all_running(c);
	for (int i = 0; i < NJOBS; i++)
		CHECK_EQ_INT(qd_job_create(c, m.id, "{}", 0, 0, NULL, &err), 0);
	struct claimer cl[NTHR];
	pthread_t th[NTHR];
	pthread_barrier_init(&claim_barrier, NULL, NTHR);
	double t0 = qd_now_mono();
	for (int i = 0; i < NTHR; i++) {
		cl[i] = (struct claimer){ .st = st, .idx = i, .ids = calloc(NJOBS, 64) };
		pthread_create(&th[i], NULL, claim_thread, &cl[i]);
	}
	char (*all)[64] = calloc(NJOBS * NTHR, 64);
	int total = 0, errors = 0, busy_threads = 0;
	for (int i = 0; i < NTHR; i++) {
		pthread_join(th[i], NULL);
		memcpy(all + total, cl[i].ids, (size_t)cl[i].n * 64);
		total += cl[i].n;
		errors += cl[i].errors;
		busy_threads += cl[i].n > 0;
		free(cl[i].ids);
	}
	double dt = qd_now_mono() - t0;
	pthread_barrier_destroy(&claim_barrier);
	CHECK_EQ_INT(errors, 0);
	CHECK_EQ_INT(total, NJOBS);
	qsort(all, (size_t)total, 64, cmp_id);
	int dups = 0;
	for (int i = 1; i < total; i++)
		dups += !strcmp(all[i], all[i - 1]);
	CHECK_EQ_INT(dups, 0);
	printf("concurrent claim: %d jobs claimed+finished by %d threads (%d got work) in %.3f s, "
	       "%d duplicates\n", total, NTHR, busy_threads, dt, dups);
	free(all);
	struct qd_store_counts cnt;
	CHECK_EQ_INT(qd_store_counts(c, &cnt, &err), 0);
	CHECK_EQ_INT(cnt.jobs[QD_JOB_QUEUED], 0);
	CHECK_EQ_INT(cnt.jobs[QD_JOB_RUNNING], 0);
	CHECK(cnt.jobs[QD_JOB_SUCCEEDED] >= NJOBS);
	qd_model_row_free(&m);
}

static void test_recover_cancel(struct qd_store *st, struct qd_store_conn *c)
{
	struct qd_err err = { 0 };
	struct qd_model_row m;
	add_model(st, c, "recover model", &m);
	fail_all_running(c);
	/* A: 1st attempt, B: attempts exhausted (3 of 3), C: cancel requested. */
	char a[64], b[64], cc[64];
	struct qd_job_update u = { .worker = "w" };
	job_in_state(c, m.id, QD_JOB_RUNNING, a);
	job_in_state(c, m.id, QD_JOB_RUNNING, b);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(qd_job_requeue(c, b, &err), 0);
		CHECK_EQ_INT(qd_job_transition(c, b, QD_JOB_MASK(QD_JOB_QUEUED), QD_JOB_RUNNING, &u,
					       NULL, &err), 0);
	}
	job_in_state(c, m.id, QD_JOB_RUNNING, cc);
	struct qd_job_row j;
	CHECK_EQ_INT(qd_job_cancel(c, cc, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_RUNNING);
	CHECK(j.cancel_requested);
	qd_job_row_free(&j);
	bool flag = false;
	CHECK_EQ_INT(qd_job_cancel_requested(c, cc, &flag, &err), 0);
	CHECK(flag);
	CHECK_EQ_INT(qd_job_progress(c, cc, 0.1, NULL, &flag, &err), 0);
	CHECK(flag);
	CHECK_EQ_INT(qd_job_cancel_requested(c, "job_missing", &flag, &err), -QD_ENOT_FOUND);
	/* "Crash": reopen the store and recover. */
	qd_store_disconnect(c);
	struct qd_recover_stats rs = { -1, -1, -1 };
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	CHECK_EQ_INT(qd_store_recover(c, 0, &rs, &err), 0);
	CHECK_EQ_INT(rs.requeued, 1);
	CHECK_EQ_INT(rs.failed, 1);
	CHECK_EQ_INT(rs.canceled, 1);
	CHECK_EQ_INT(qd_job_get(c, a, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_QUEUED);
	CHECK_EQ_INT(j.attempts, 1);
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_job_get(c, b, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_FAILED);
	CHECK_EQ_INT(j.attempts, 3);
	CHECK_STR(j.error_code, "INTERRUPTED");
	CHECK_STR(j.error_message, "job interrupted 3 times (daemon crashed or was killed)");
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_job_get(c, cc, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_CANCELED);
	qd_job_row_free(&j);
	/* Nothing left running: a second recovery is a no-op. */
	CHECK_EQ_INT(qd_store_recover(c, 0, &rs, &err), 0);
	CHECK(rs.requeued == 0 && rs.failed == 0 && rs.canceled == 0);
	/* The max_attempts argument overrides the job's own limit. */
	struct qd_job_update u2 = { .worker = "w" };
	CHECK_EQ_INT(qd_job_transition(c, a, QD_JOB_MASK(QD_JOB_QUEUED), QD_JOB_RUNNING, &u2, NULL,
				       &err), 0);
	CHECK_EQ_INT(qd_store_recover(c, 2, &rs, &err), 0);
	CHECK_EQ_INT(rs.failed, 1);
	CHECK_EQ_INT(qd_job_get(c, a, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_FAILED);
	CHECK_STR(j.error_message, "job interrupted 2 times (daemon crashed or was killed)");
	qd_job_row_free(&j);
	/* Cancel: queued at once; terminal ones conflict; canceled is idempotent. */
	char q[64];
	job_in_state(c, m.id, QD_JOB_QUEUED, q);
	CHECK_EQ_INT(qd_job_cancel(c, q, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_CANCELED);
	CHECK(j.finished_at > 0);
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_job_cancel(c, q, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_cancel(c, b, NULL, &err), -QD_ECONFLICT);
	CHECK(strstr(err.msg, "failed") != NULL);
	CHECK_EQ_INT(qd_job_cancel(c, "job_missing", NULL, &err), -QD_ENOT_FOUND);
	/* Running job: the worker finishes it as canceled. */
	char r[64];
	job_in_state(c, m.id, QD_JOB_RUNNING, r);
	CHECK_EQ_INT(qd_job_cancel(c, r, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_finish_canceled(c, r, &err), 0);
	CHECK_EQ_INT(qd_job_get(c, r, &j, &err), 0);
	CHECK_EQ_INT(j.state, QD_JOB_CANCELED);
	CHECK_STR(j.error_code, "CANCELED");
	CHECK_STR(j.error_message, "canceled by request while running");
	json_t *jj = qd_job_to_json(&j, NULL, 0);
	CHECK_STR(json_string_value(json_object_get(json_object_get(jj, "error"), "code")),
		  "CANCELED");
	json_decref(jj);
	qd_job_row_free(&j);
	qd_store_disconnect(c);
	qd_model_row_free(&m);
}

static void test_paging_log_delete(struct qd_store *st)
{
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	/* Paging models: 7 new ones, newest first. */
	char ids[7][64];
	for (int i = 0; i < 7; i++) {
		char text[32];
		snprintf(text, sizeof text, "page model %d", i);
		struct qd_model_row m;
		add_model(st, c, text, &m);
		memcpy(ids[i], m.id, 64);
		qd_model_row_free(&m);
	}
	struct qd_page pg = { .limit = 3 };
	int seen = 0, pages = 0;
	bool order_ok = true;
	do {
		struct qd_model_row *rows;
		size_t n;
		CHECK_EQ_INT(qd_model_list(c, &pg, &rows, &n, &err), 0);
		for (size_t i = 0; i < n && seen < 7; i++, seen++)
			order_ok &= !strcmp(rows[i].id, ids[6 - seen]);
		pages++;
		char cur[QD_STORE_CURSOR_MAX];
		memcpy(cur, pg.next_cursor, sizeof cur);
		qd_model_rows_free(rows, n);
		static char keep[QD_STORE_CURSOR_MAX];
		memcpy(keep, cur, sizeof keep);
		pg.cursor = keep;
	} while (pg.next_cursor[0] && seen < 7);
	CHECK(order_ok);
	CHECK_EQ_INT(seen, 7);
	CHECK_EQ_INT(pages, 3);  /* 3 + 3 + 1 of ours (older models on page 3 too) */
	struct qd_model_row *rows;
	size_t n;
	struct qd_page bad = { .limit = 3, .cursor = "x123" };
	CHECK_EQ_INT(qd_model_list(c, &bad, &rows, &n, &err), -QD_EINVAL);
	CHECK_STR(err.field, "cursor");
	bad = (struct qd_page){ .limit = 5000 };
	CHECK_EQ_INT(qd_model_list(c, &bad, &rows, &n, &err), -QD_EINVAL);
	CHECK_STR(err.field, "limit");
	/* Exact page boundary: the last full page has an empty cursor. */
	struct qd_store_counts cnt;
	CHECK_EQ_INT(qd_store_counts(c, &cnt, &err), 0);
	struct qd_page all = { .limit = (int)cnt.models };
	CHECK_EQ_INT(qd_model_list(c, &all, &rows, &n, &err), 0);
	CHECK_EQ_INT(n, cnt.models);
	CHECK_STR(all.next_cursor, "");
	qd_model_rows_free(rows, n);

	/* Job list filter + paging. */
	struct qd_model_row m;
	add_model(st, c, "list model", &m);
	char q1[64], q2[64], r1[64];
	job_in_state(c, m.id, QD_JOB_QUEUED, q1);
	job_in_state(c, m.id, QD_JOB_RUNNING, r1);
	job_in_state(c, m.id, QD_JOB_QUEUED, q2);
	struct qd_job_row *jr;
	struct qd_page jp = { .limit = 1 };
	CHECK_EQ_INT(qd_job_list(c, QD_JOB_MASK(QD_JOB_QUEUED), &jp, &jr, &n, &err), 0);
	CHECK_EQ_INT(n, 1);
	if (n)
		CHECK_STR(jr[0].id, q2);
	qd_job_rows_free(jr, n);
	CHECK(jp.next_cursor[0] != '\0');
	char cur[QD_STORE_CURSOR_MAX];
	memcpy(cur, jp.next_cursor, sizeof cur);
	jp.cursor = cur;
	CHECK_EQ_INT(qd_job_list(c, QD_JOB_MASK(QD_JOB_QUEUED), &jp, &jr, &n, &err), 0);
	CHECK_EQ_INT(n, 1);
	if (n)
		CHECK_STR(jr[0].id, q1);  /* r1 (running) is skipped */
	qd_job_rows_free(jr, n);
	struct qd_page jp2 = { .limit = 10 };
	CHECK_EQ_INT(qd_job_list(c, QD_JOB_MASK(QD_JOB_RUNNING), &jp2, &jr, &n, &err), 0);
	CHECK_EQ_INT(n, 1);
	if (n)
		CHECK_STR(jr[0].id, r1);
	qd_job_rows_free(jr, n);

	/* Job log: seq per job, in order, after/limit. */
	for (int i = 1; i <= 5; i++) {
		int64_t seq = 0;
		char line[32];
		snprintf(line, sizeof line, "line %d", i);
		CHECK_EQ_INT(qd_job_log_append(c, r1, i == 5 ? QD_LOG_ERROR : QD_LOG_INFO, line, &seq,
					       &err), 0);
		CHECK_EQ_INT(seq, i);
	}
	int64_t seq = 0;
	CHECK_EQ_INT(qd_job_log_append(c, q1, QD_LOG_INFO, "other job", &seq, &err), 0);
	CHECK_EQ_INT(seq, 1);
	CHECK_EQ_INT(qd_job_log_append(c, "job_missing", QD_LOG_INFO, "x", NULL, &err), -QD_ENOT_FOUND);
	/* An overlong line is cut, not refused. */
	char *big = malloc(QD_JOB_LOG_LINE_MAX * 3);
	memset(big, 'x', QD_JOB_LOG_LINE_MAX * 3 - 1);
	big[QD_JOB_LOG_LINE_MAX * 3 - 1] = 0;
	CHECK_EQ_INT(qd_job_log_append(c, q2, QD_LOG_WARN, big, &seq, &err), 0);
	free(big);
	struct qd_log_line *ll;
	CHECK_EQ_INT(qd_job_log_list(c, q2, 0, 0, &ll, &n, &err), 0);
	CHECK_EQ_INT(n, 1);
	if (n) {
		CHECK(strlen(ll[0].line) < QD_JOB_LOG_LINE_MAX + 32);
		CHECK(strstr(ll[0].line, "bytes cut]") != NULL);
	}
	qd_log_lines_free(ll, n);
	CHECK_EQ_INT(qd_job_log_list(c, r1, 0, 0, &ll, &n, &err), 0);
	CHECK_EQ_INT(n, 5);
	bool seq_ok = n == 5;
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof want, "line %zu", i + 1);
		seq_ok &= ll[i].seq == (int64_t)i + 1 && !strcmp(ll[i].line, want) && ll[i].ts > 0;
	}
	CHECK(seq_ok);
	if (n == 5) {
		CHECK_STR(ll[4].level, qd_log_level_name(QD_LOG_ERROR));
		CHECK_STR(ll[0].level, qd_log_level_name(QD_LOG_INFO));
	}
	qd_log_lines_free(ll, n);
	CHECK_EQ_INT(qd_job_log_list(c, r1, 3, 1, &ll, &n, &err), 0);
	CHECK_EQ_INT(n, 1);
	if (n)
		CHECK_EQ_INT(ll[0].seq, 4);
	qd_log_lines_free(ll, n);

	/* Delete rules. A model used by queued/running jobs cannot go. */
	CHECK_EQ_INT(qd_model_delete(c, m.id, &err), -QD_ECONFLICT);
	CHECK(strstr(err.msg, "2 queued or running") || strstr(err.msg, "3 queued or running"));
	/* A running job cannot be deleted; a finished one takes its records along. */
	char sha[65];
	uint64_t size;
	CHECK_EQ_INT(qd_blob_put_mem(st, "artifact only", 13, sha, &size, &err), 0);
	CHECK_EQ_INT(qd_artifact_add(c, r1, "model", "model.onnx", sha, 13, NULL, NULL, &err), 0);
	CHECK_EQ_INT(qd_artifact_add(c, r1, "log", "log.txt", sha, 13, "text/plain", NULL, &err), 0);
	/* Same blob also used by a model: must survive the job's deletion. */
	char shared[65];
	CHECK_EQ_INT(qd_blob_put_mem(st, "shared blob", 11, shared, &size, &err), 0);
	CHECK_EQ_INT(qd_artifact_add(c, r1, "model", "m2.onnx", shared, 11, NULL, NULL, &err), 0);
	struct qd_model_row sm;
	CHECK_EQ_INT(qd_model_insert(c, shared, 11, "shared", NULL, &sm, NULL, &err), 0);
	struct qd_trial_row rt = { .idx = 0, .config_json = "{}", .state = "ok", .model_size = -1 };
	snprintf(rt.job_id, sizeof rt.job_id, "%s", r1);
	CHECK_EQ_INT(qd_trial_add(c, &rt, NULL, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_delete(c, r1, &err), -QD_ECONFLICT);
	CHECK(strstr(err.msg, "running") != NULL);
	CHECK_EQ_INT(qd_job_delete(c, q1, &err), -QD_ECONFLICT);
	CHECK_EQ_INT(qd_job_finish_succeeded(c, r1, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_delete(c, r1, &err), 0);
	CHECK_EQ_INT(qd_job_delete(c, r1, &err), -QD_ENOT_FOUND);
	CHECK(!qd_blob_exists(st, sha));
	CHECK(qd_blob_exists(st, shared));
	struct qd_artifact_row *arts;
	CHECK_EQ_INT(qd_artifact_list(c, r1, &arts, &n, &err), 0);
	CHECK_EQ_INT(n, 0);
	qd_artifact_rows_free(arts, n);
	struct qd_trial_row *tr;
	CHECK_EQ_INT(qd_trial_list(c, r1, NULL, &tr, &n, &err), 0);
	CHECK_EQ_INT(n, 0);
	qd_trial_rows_free(tr, n);
	CHECK_EQ_INT(qd_job_log_list(c, r1, 0, 0, &ll, &n, &err), 0);
	CHECK_EQ_INT(n, 0);
	qd_log_lines_free(ll, n);
	/* Once every job of the model is finished, the model can go; finished jobs stay
	 * and show model null; the blob goes with its last row. */
	CHECK_EQ_INT(qd_job_cancel(c, q1, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_cancel(c, q2, NULL, &err), 0);
	CHECK_EQ_INT(qd_model_delete(c, m.id, &err), 0);
	CHECK(!qd_blob_exists(st, m.sha256));
	CHECK_EQ_INT(qd_model_delete(c, m.id, &err), -QD_ENOT_FOUND);
	struct qd_job_row j;
	CHECK_EQ_INT(qd_job_get(c, q1, &j, &err), 0);
	CHECK_STR(j.model_id, "");
	json_t *jj = qd_job_to_json(&j, NULL, 0);
	CHECK(jj && json_is_null(json_object_get(jj, "model")));
	CHECK(jj && json_array_size(json_object_get(jj, "artifacts")) == 0);
	json_decref(jj);
	qd_job_row_free(&j);
	CHECK_EQ_INT(qd_model_delete(c, sm.id, &err), 0);
	CHECK(!qd_blob_exists(st, shared));
	qd_model_row_free(&sm);
	qd_model_row_free(&m);
	qd_store_disconnect(c);
}

static void test_queue_full_counts(struct qd_store *st)
{
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_model_row m;
	add_model(st, c, "queue model", &m);
	struct qd_store_counts before, after;
	CHECK_EQ_INT(qd_store_counts(c, &before, &err), 0);
	int64_t q = before.jobs[QD_JOB_QUEUED];
	CHECK_EQ_INT(qd_job_create(c, m.id, "{}", 0, (int)q + 2, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_create(c, m.id, "{}", 0, (int)q + 2, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_create(c, m.id, "{}", 0, (int)q + 2, NULL, &err), -QD_EQUEUE_FULL);
	CHECK_EQ_INT(qd_err_http(-QD_EQUEUE_FULL), 429);
	CHECK_EQ_INT(qd_store_counts(c, &after, &err), 0);
	CHECK_EQ_INT(after.jobs[QD_JOB_QUEUED], q + 2);
	CHECK_EQ_INT(after.models, before.models);
	CHECK(after.blob_bytes > 0);
	qd_model_row_free(&m);
	qd_store_disconnect(c);
}

/* SQLite failures surface as QD_EDB with SQLite's message, never a crash. */
static void test_db_faults(struct qd_store *st)
{
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_model_row m;
	add_model(st, c, "fault model", &m);
	char id[64];
	job_in_state(c, m.id, QD_JOB_RUNNING, id);
	/* Warm the statement cache, then break the schema under it. */
	struct qd_artifact_row *arts;
	size_t n;
	CHECK_EQ_INT(qd_artifact_list(c, id, &arts, &n, &err), 0);
	qd_artifact_rows_free(arts, n);
	CHECK_EQ_INT(raw_exec("DROP TABLE artifacts"), SQLITE_OK);
	qd_err_clear(&err);
	CHECK_EQ_INT(qd_artifact_list(c, id, &arts, &n, &err), -QD_EDB);
	CHECKF(strstr(err.msg, "database error") && strstr(err.msg, "artifacts"), "%s", err.msg);
	CHECK(arts == NULL && n == 0);
	CHECK_EQ_INT(qd_job_delete(c, id, &err), -QD_ECONFLICT);
	CHECK_EQ_INT(qd_job_finish_succeeded(c, id, NULL, &err), 0);
	CHECK_EQ_INT(qd_job_delete(c, id, &err), -QD_EDB);
	/* The job is still there: the failed delete rolled back. */
	struct qd_job_row j;
	CHECK_EQ_INT(qd_job_get(c, id, &j, &err), 0);
	qd_job_row_free(&j);
	struct qd_store_counts cnt;
	CHECK_EQ_INT(qd_store_counts(c, &cnt, &err), -QD_EDB);
	/* A write lock held elsewhere: busy, not a hang forever or a crash. */
	qd_store_disconnect(c);
	qd_model_row_free(&m);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/qd_test_store.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	qd_log_set_level(QD_LOG_WARN);
	test_open_migrate();
	test_crash_sweep();
	struct qd_store *st = NULL;
	struct qd_store_conn *c = NULL;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_store_open(dir, &st, &err), 0);
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	if (st && c) {
		test_blobs(st, c);
		test_model_dedup(st, c);
		test_transitions(st, c);
		test_lifecycle(st, c);
		test_concurrent_claim(st, c);
		test_recover_cancel(st, c);  /* disconnects c */
		c = NULL;
		test_paging_log_delete(st);
		test_queue_full_counts(st);
		test_db_faults(st);
	}
	qd_store_disconnect(c);
	qd_store_close(st);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return qd_test_done("test_store");
}
