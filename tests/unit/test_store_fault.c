/* Fault tests for store/: SQLite's allocator fails at the Nth allocation (one-shot and
 * persistent, SQLite's own fault-injection style) during a full job lifecycle. Every call
 * must return QD_ENOMEM/QD_EDB with a message, never crash or leak, and afterwards the
 * data directory must reopen cleanly with no row pointing at a missing blob. */
#define _GNU_SOURCE
#include "qd_test.h"
#include "store/store.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <unistd.h>

static sqlite3_mem_methods orig;
static long countdown = -1;   /* fail when it reaches 0; <0 = disarmed */
static bool persistent, fired;

static bool should_fail(void)
{
	if (countdown < 0)
		return false;
	if (fired && persistent)
		return true;
	if (countdown == 0) {
		fired = true;
		countdown = persistent ? 0 : -1;
		return true;
	}
	countdown--;
	return false;
}
static void *fx_malloc(int n) { return should_fail() ? NULL : orig.xMalloc(n); }
static void *fx_realloc(void *p, int n) { return should_fail() ? NULL : orig.xRealloc(p, n); }

static void arm(long n, bool pers)
{
	countdown = n;
	persistent = pers;
	fired = false;
}
static void disarm(void) { countdown = -1; }

static int bad_codes, calls_failed;

/* Records a failed call: the code must be one a fault can explain and come with a message. */
static bool ok(int rc, const struct qd_err *err, int line)
{
	if (rc == 0)
		return true;
	calls_failed++;
	if ((rc != -QD_ENOMEM && rc != -QD_EDB) || !err->msg[0]) {
		bad_codes++;
		fprintf(stderr, "line %d: unexpected %s: '%s'\n", line, qd_err_name(rc), err->msg);
	}
	return false;
}
#define OK(call) ok((call), &err, __LINE__)

/* A whole job lifecycle; stops at the first failure (later steps depend on earlier ones). */
static void scenario(const char *dir)
{
	struct qd_err err = { 0 };
	struct qd_store *st = NULL;
	struct qd_store_conn *c = NULL;
	struct qd_model_row m = { 0 };
	struct qd_job_row j = { 0 }, j2 = { 0 };
	bool have_m = false, have_j = false, have_j2 = false;
	char sha[65];
	uint64_t size;
	if (!OK(qd_store_open(dir, &st, &err)) || !OK(qd_store_connect(st, &c, &err)))
		goto out;
	if (!OK(qd_blob_put_mem(st, "model bytes", 11, sha, &size, &err)) ||
	    !OK(qd_model_insert(c, sha, 11, "m.onnx", "{\"opset\":13}", &m, NULL, &err)))
		goto out;
	have_m = true;
	if (!OK(qd_job_create(c, m.id, "{\"passes\":{}}", 0, 10, NULL, &err)))
		goto out;
	bool got = false, cancel = false;
	if (!OK(qd_job_claim(c, "w", &j, &got, &err)) || !got)
		goto out;
	have_j = true;
	struct qd_trial_row tr = { .idx = 1, .config_json = "{}", .metrics_json = "{\"acc\":1}", .state = "ok",
				   .model_size = -1 };
	snprintf(tr.job_id, sizeof tr.job_id, "%s", j.id);
	int par[] = { 1 };
	if (!OK(qd_job_progress(c, j.id, 0.5, "half", &cancel, &err)) ||
	    !OK(qd_job_log_append(c, j.id, QD_LOG_INFO, "hello", NULL, &err)) ||
	    !OK(qd_trial_add(c, &tr, "{\"trials_done\":1}", NULL, &err)) ||
	    !OK(qd_trial_set_pareto(c, j.id, par, 1, "{\"finished\":true}", &err)) ||
	    !OK(qd_blob_put_mem(st, "artifact", 8, sha, &size, &err)) ||
	    !OK(qd_artifact_add(c, j.id, "model", "model.onnx", sha, 8, NULL, NULL, &err)) ||
	    !OK(qd_job_finish_succeeded(c, j.id, "{\"ok\":true}", &err)))
		goto out;
	struct qd_job_row *rows;
	size_t n;
	struct qd_page pg = { .limit = 10 };
	if (!OK(qd_job_list(c, 0, &pg, &rows, &n, &err)))
		goto out;
	qd_job_rows_free(rows, n);
	struct qd_artifact_row *arts;
	if (!OK(qd_artifact_list(c, j.id, &arts, &n, &err)))
		goto out;
	json_t *js = qd_job_to_json(&j, arts, n);
	json_decref(js);
	qd_artifact_rows_free(arts, n);
	struct qd_log_line *ll;
	if (!OK(qd_job_log_list(c, j.id, 0, 0, &ll, &n, &err)))
		goto out;
	qd_log_lines_free(ll, n);
	struct qd_store_counts cnt;
	if (!OK(qd_store_counts(c, &cnt, &err)) ||
	    !OK(qd_job_create(c, m.id, "{}", 0, 10, &j2, &err)))
		goto out;
	have_j2 = true;
	if (!OK(qd_job_cancel(c, j2.id, NULL, &err)) || !OK(qd_job_delete(c, j.id, &err)) ||
	    !OK(qd_model_delete(c, m.id, &err)) || !OK(qd_store_recover(c, 3, NULL, &err)))
		goto out;
out:
	if (have_m)
		qd_model_row_free(&m);
	if (have_j)
		qd_job_row_free(&j);
	if (have_j2)
		qd_job_row_free(&j2);
	qd_store_disconnect(c);
	qd_store_close(st);
}

/* After a fault: reopen, integrity check, no row without its blob, queue recoverable. */
static int verify(const char *dir)
{
	struct qd_err err = { 0 };
	struct qd_store *st = NULL;
	struct qd_store_conn *c = NULL;
	int bad = 0;
	if (qd_store_open(dir, &st, &err) < 0 || qd_store_connect(st, &c, &err) < 0) {
		fprintf(stderr, "reopen after fault: %s\n", err.msg);
		qd_store_close(st);
		return 1;
	}
	char path[512];
	snprintf(path, sizeof path, "%s/quantd.db", dir);
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(s, 0), "ok"))
		bad++;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(db, "SELECT sha256 FROM models UNION SELECT sha256 FROM artifacts",
			       -1, &s, NULL) == SQLITE_OK)
		while (sqlite3_step(s) == SQLITE_ROW)
			if (!qd_blob_exists(st, (const char *)sqlite3_column_text(s, 0))) {
				fprintf(stderr, "row points at missing blob\n");
				bad++;
			}
	sqlite3_finalize(s);
	sqlite3_close(db);
	if (qd_store_recover(c, 3, NULL, &err) < 0)
		bad++;
	qd_store_disconnect(c);
	qd_store_close(st);
	return bad;
}

static void run_dir(char *buf, size_t sz)
{
	snprintf(buf, sz, "/tmp/qd_test_store_fault.XXXXXX");
	if (!mkdtemp(buf))
		buf[0] = 0;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static void rm_dir(const char *d)
{
	if (nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "cannot remove %s\n", d);
}

/* "Disk full": in a child with RLIMIT_FSIZE (writes past 512 KiB fail with EFBIG), stream a
 * 1 MiB upload and then add models until SQLite cannot grow the WAL. The child reports
 * over a pipe; the parent reopens the directory without the limit and checks every
 * reported success is there and nothing else. */
static void test_disk_full(void)
{
	char d[256];
	run_dir(d, sizeof d);
	struct qd_err err = { 0 };
	struct qd_store *st = NULL;
	CHECK_EQ_INT(qd_store_open(d, &st, &err), 0);
	qd_store_close(st);
	int fds[2];
	CHECK_EQ_INT(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		signal(SIGXFSZ, SIG_IGN);
		struct { int upload_rc, db_rc, ok_models, msg_ok, tmp_left; } rep = { 0 };
		struct qd_store_conn *c = NULL;
		if (qd_store_open(d, &st, &err) < 0 || qd_store_connect(st, &c, &err) < 0)
			_exit(2);
		struct rlimit rl = { 512 << 10, 512 << 10 };
		setrlimit(RLIMIT_FSIZE, &rl);
		struct qd_blob_writer *w = NULL;
		static char chunk[64 * 1024];
		if (qd_blob_writer_open(st, &w, &err) == 0) {
			for (int i = 0; i < 16 && rep.upload_rc == 0; i++)
				rep.upload_rc = qd_blob_writer_write(w, chunk, sizeof chunk, &err);
			if (rep.upload_rc < 0 && strstr(err.msg, "cannot write blob"))
				rep.msg_ok++;
			qd_blob_writer_abort(w);
		}
		char tmp[300];
		snprintf(tmp, sizeof tmp, "%s/tmp", d);
		rep.tmp_left = -1;
		DIR *dd = opendir(tmp);
		if (dd) {
			struct dirent *e;
			rep.tmp_left = 0;
			while ((e = readdir(dd)))
				rep.tmp_left += e->d_name[0] != '.';
			closedir(dd);
		}
		for (int i = 0; i < 5000 && rep.db_rc == 0; i++) {
			char text[64], sha[65], name[200];
			snprintf(text, sizeof text, "full disk model %d", i);
			memset(name, 'n', sizeof name - 1);
			name[sizeof name - 1] = 0;
			rep.db_rc = qd_blob_put_mem(st, text, strlen(text), sha, NULL, &err);
			if (rep.db_rc == 0)
				rep.db_rc = qd_model_insert(c, sha, (int64_t)strlen(text), name, NULL, NULL,
							    NULL, &err);
			if (rep.db_rc == 0)
				rep.ok_models++;
		}
		if (rep.db_rc < 0 && err.msg[0])
			rep.msg_ok++;
		if (write(fds[1], &rep, sizeof rep) != (ssize_t)sizeof rep)
			_exit(3);
		qd_store_disconnect(c);
		qd_store_close(st);
		_exit(0);
	}
	close(fds[1]);
	struct { int upload_rc, db_rc, ok_models, msg_ok, tmp_left; } rep = { 0 };
	ssize_t got = read(fds[0], &rep, sizeof rep);
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ_INT(got, sizeof rep);
	CHECK_EQ_INT(rep.upload_rc, -QD_EIO);
	CHECK_EQ_INT(rep.tmp_left, 0);
	CHECKF(rep.db_rc == -QD_EDB || rep.db_rc == -QD_EIO, "db_rc %d", rep.db_rc);
	CHECK_EQ_INT(rep.msg_ok, 2);
	CHECK(rep.ok_models > 10);
	printf("disk full: upload failed with %s, %d models stored before %s\n",
	       qd_err_name(rep.upload_rc), rep.ok_models, qd_err_name(rep.db_rc));
	/* Without the limit: everything reported stored is there, the rest is not. */
	CHECK_EQ_INT(verify(d), 0);
	struct qd_store_conn *c = NULL;
	CHECK_EQ_INT(qd_store_open(d, &st, &err), 0);
	CHECK_EQ_INT(qd_store_connect(st, &c, &err), 0);
	struct qd_store_counts cnt = { 0 };
	CHECK_EQ_INT(qd_store_counts(c, &cnt, &err), 0);
	CHECK_EQ_INT(cnt.models, rep.ok_models);
	qd_store_disconnect(c);
	qd_store_close(st);
	rm_dir(d);
}

/* kill -9 at a random moment of a busy worker (claims, progress, log, artifacts, finish),
 * three times over the same directory: each reopen passes the integrity check, recovery
 * leaves nothing running, and succeeded jobs have their result and artifact blobs. */
static void test_kill9(void)
{
	char d[256];
	run_dir(d, sizeof d);
	struct qd_err err = { 0 };
	int killed = 0, bad = 0;
	long total_jobs = 0;
	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();
		if (pid == 0) {
			struct qd_store *st = NULL;
			struct qd_store_conn *c = NULL;
			if (qd_store_open(d, &st, &err) < 0 || qd_store_connect(st, &c, &err) < 0)
				_exit(2);
			qd_store_recover(c, 3, NULL, &err);
			char sha[65];
			struct qd_model_row m;
			if (qd_blob_put_mem(st, "kill model", 10, sha, NULL, &err) < 0 ||
			    qd_model_insert(c, sha, 10, "k", NULL, &m, NULL, &err) < 0)
				_exit(3);
			for (long i = 0;; i++) {
				struct qd_job_row j;
				bool got = false;
				char text[64];
				snprintf(text, sizeof text, "artifact %d %ld", round, i);
				if (qd_job_create(c, m.id, "{}", 3, 0, NULL, &err) < 0 ||
				    qd_job_claim(c, "k", &j, &got, &err) < 0 || !got)
					_exit(4);
				qd_job_progress(c, j.id, 0.5, "half", NULL, &err);
				qd_job_log_append(c, j.id, QD_LOG_INFO, text, NULL, &err);
				if (qd_blob_put_mem(st, text, strlen(text), sha, NULL, &err) < 0 ||
				    qd_artifact_add(c, j.id, "model", "m.onnx", sha, (int64_t)strlen(text),
						    NULL, NULL, &err) < 0 ||
				    qd_job_finish_succeeded(c, j.id, "{\"ok\":1}", &err) < 0)
					_exit(5);
				qd_job_row_free(&j);
			}
		}
		struct timespec ts = { 0, (80 + round * 60) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status = 0;
		waitpid(pid, &status, 0);
		killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
		if (WIFEXITED(status))
			fprintf(stderr, "kill9 child exited %d: %s\n", WEXITSTATUS(status), err.msg);
		bad += verify(d);
		struct qd_store *st = NULL;
		struct qd_store_conn *c = NULL;
		if (qd_store_open(d, &st, &err) < 0 || qd_store_connect(st, &c, &err) < 0) {
			bad++;
			qd_store_close(st);
			continue;
		}
		struct qd_store_counts cnt;
		if (qd_store_counts(c, &cnt, &err) < 0 || cnt.jobs[QD_JOB_RUNNING] != 0)
			bad++;
		total_jobs = 0;
		for (int k = 0; k < QD_JOB__COUNT; k++)
			total_jobs += cnt.jobs[k];
		struct qd_job_row *rows;
		size_t n;
		struct qd_page pg = { .limit = 1000 };
		if (qd_job_list(c, QD_JOB_MASK(QD_JOB_SUCCEEDED), &pg, &rows, &n, &err) == 0) {
			for (size_t i = 0; i < n; i++) {
				struct qd_artifact_row *a;
				size_t na = 0;
				if (!rows[i].result_json ||
				    qd_artifact_list(c, rows[i].id, &a, &na, &err) < 0 || na != 1)
					bad++;
				else if (!qd_blob_exists(st, a[0].sha256))
					bad++;
				if (na)
					qd_artifact_rows_free(a, na);
			}
			qd_job_rows_free(rows, n);
		}
		qd_store_disconnect(c);
		qd_store_close(st);
	}
	printf("kill -9: %d kills, %ld jobs afterwards, %d inconsistencies\n", killed, total_jobs,
	       bad);
	CHECK_EQ_INT(killed, 3);
	CHECK_EQ_INT(bad, 0);
	CHECK(total_jobs > 3);
	rm_dir(d);
}

/* jansson allocation failures in the renderers: NULL or a complete object, no leak. */
static long json_countdown = -1;
static void *json_fx_malloc(size_t n)
{
	if (json_countdown == 0)
		return NULL;
	if (json_countdown > 0)
		json_countdown--;
	return malloc(n);
}

static void test_json_oom(void)
{
	struct qd_artifact_row arts[2] = {
		{ .id = "art_1", .job_id = "job_1", .kind = "model", .name = "m.onnx",
		  .sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		  .size = 1, .content_type = "application/octet-stream", .created_at = 1.5e9 },
		{ .id = "art_2", .job_id = "job_1", .kind = "metrics", .name = "metrics.json",
		  .sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		  .size = 2, .content_type = "application/json", .created_at = 1.5e9 },
	};
	struct qd_job_row j = { .id = "job_1", .model_id = "mdl_1", .state = QD_JOB_FAILED,
				.error_code = "MODEL", .error_message = "bad",
				.workflow_json = "{\"passes\":{\"q\":{\"type\":\"OnnxQuantization\"}}}",
				.result_json = "[1,2,3]", .created_at = 1.5e9 };
	json_set_alloc_funcs(json_fx_malloc, free);
	int nulls = 0, full = 0;
	size_t want_keys = 0;
	json_countdown = -1;
	json_t *ref = qd_job_to_json(&j, arts, 2);
	want_keys = json_object_size(ref);
	json_decref(ref);
	for (long n = 0; n < 400; n++) {
		json_countdown = n;
		json_t *o = qd_job_to_json(&j, arts, 2);
		json_countdown = -1;
		if (!o)
			nulls++;
		else if (json_object_size(o) == want_keys &&
			 json_array_size(json_object_get(o, "artifacts")) == 2)
			full++;
		json_decref(o);
	}
	json_set_alloc_funcs(malloc, free);
	CHECK(want_keys >= 15);
	CHECK(nulls > 10);
	CHECK_EQ_INT(nulls + full, 400);
}

int main(void)
{
	sqlite3_config(SQLITE_CONFIG_GETMALLOC, &orig);
	sqlite3_mem_methods fx = orig;
	fx.xMalloc = fx_malloc;
	fx.xRealloc = fx_realloc;
	CHECK_EQ_INT(sqlite3_config(SQLITE_CONFIG_MALLOC, &fx), SQLITE_OK);
	qd_log_set_level(QD_LOG_ERROR);

	/* Count the allocations of a clean run. */
	char d[256];
	run_dir(d, sizeof d);
	arm(1L << 40, false);
	scenario(d);
	long total = (1L << 40) - countdown;
	disarm();
	CHECK_EQ_INT(calls_failed, 0);
	CHECK_EQ_INT(verify(d), 0);
	rm_dir(d);
	CHECK(total > 100);

	/* One-shot: the first 30 allocation points, then ~70 spread over the whole run;
	 * persistent (everything fails from then on): ~30 spread points. Each run costs a
	 * few fsyncs, so the points are sampled rather than exhaustive. */
	int runs = 0, faulted = 0, verify_bad = 0;
	for (int pers = 0; pers < 2; pers++) {
		long stride = total / (pers ? 30 : 70) + 1;
		for (long n = pers ? stride / 2 : 0; n < total; n += (!pers && n < 30) ? 1 : stride) {
			run_dir(d, sizeof d);
			arm(n, pers);
			calls_failed = 0;
			scenario(d);
			bool f = fired;
			disarm();
			runs++;
			faulted += f && calls_failed;
			verify_bad += verify(d) != 0;
			rm_dir(d);
		}
	}
	printf("store fault injection: %ld sqlite allocations per lifecycle, %d runs, %d with a "
	       "failed call, %d unexpected codes, %d bad states after reopen\n", total, runs,
	       faulted, bad_codes, verify_bad);
	CHECK_EQ_INT(bad_codes, 0);
	CHECK_EQ_INT(verify_bad, 0);
	CHECK(faulted > runs / 4);
	test_disk_full();
	test_json_oom();
	test_kill9();
	return qd_test_done("test_store_fault");
}
