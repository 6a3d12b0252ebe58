/* libFuzzer target for the REST API: each input is the raw bytes a client sends on one
 * TCP connection (one or more pipelined HTTP/1.1 requests: request line, headers, body).
 * They go to the real libmicrohttpd handler (api/http.c, qd_api_start) of an in-process
 * struct qd_daemon on a temporary data directory, over loopback; the response is read
 * and thrown away. Route lookup, 404/405, bearer-token auth, Content-Length checks, JSON
 * bodies (POST /v1/jobs: workflow validation, model and dataset lookup, the dataset
 * binder), streamed uploads (POST /v1/models, POST /v1/datasets: model check, npz / tar
 * dataset loader), paging, Range / If-None-Match on downloads, job cancel / delete / log
 * are all reached from here.
 *
 * DESIGN
 * - Fixtures with fixed ids (so inputs can name them): model mdl_00000000000000a1 (a tiny
 *   MatMul built in code), dataset dst_00000000000000d1 (.npz that fits it), jobs
 *   job_0000000000000001 queued, ..02 running, ..03 succeeded (artifacts
 *   art_00000000000000f1 model, ..f2 metrics; log lines), ..04 failed. They are written
 *   once into a template data directory through the store API, then renamed in SQL.
 * - No state leaks from one input into the next: an input that could change the store
 *   (it contains "POST" or "DELETE") is followed by a reset (store closed, data directory
 *   replaced by a fresh copy of the template, store reopened); the HTTP counters behind
 *   /metrics are zeroed before every input; each input gets its own connection and the
 *   target waits until MHD has cleaned it up. No workers run: queued jobs stay queued.
 * - Bearer token "fuzz-token" (so auth is exercised; seeds send it). Uploads are capped at
 *   1 MiB and JSON bodies at 64 KiB; the data directory is under /dev/shm when it exists
 *   (fsync of uploaded blobs is then free).
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_http fuzz/corpus/http -dict=fuzz/http.dict */
#include "fuzz/fuzz_util.h"
#include "api/api.h"
#include "daemon/daemon.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define MODEL_ID "mdl_00000000000000a1"
#define DATASET_ID "dst_00000000000000d1"

static struct qd_daemon *D;
static int port;
static bool echo; /* QD_FUZZ_HTTP_ECHO=1: copy the responses to stderr (checking seeds) */
static char root[256], tmpl[300], live[300];

static void die(const char *what, const struct qd_err *e)
{
	fprintf(stderr, "fuzz_http: %s: %s\n", what, e ? e->msg : strerror(errno));
	abort();
}

/* ---- the fixture data directory ---- */

/* x float32 [N, 4] -> MatMul W [4, 2] -> y [N, 2]. new. */
static struct qd_model *tiny_model(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[2] = { -1, 4 }, dw[2] = { 4, 2 }, dy[2] = { -1, 2 };
	float w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	g->input = calloc(1, sizeof *g->input);
	g->output = calloc(1, sizeof *g->output);
	g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, dx, 2);
	g->output[g->n_output++] = qd_value_info_new("y", QD_DT_FLOAT, dy, 2);
	qd_graph_add_initializer(g, qd_tensor_new("W", QD_DT_FLOAT, dw, 2, w, sizeof w));
	const char *in[2] = { "x", "W" }, *out[1] = { "y" };
	qd_graph_add_node(g, qd_node_new("MatMul", NULL, "mm", in, 2, out, 1));
	return m;
}

static void sql(sqlite3 *db, const char *fmt, ...)
{
	char q[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	char *msg = NULL;
	if (sqlite3_exec(db, q, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "fuzz_http: %s: %s\n", q, msg ? msg : "?");
		abort();
	}
}

static void rename_job(sqlite3 *db, const char *from, const char *to)
{
	sql(db, "UPDATE artifacts SET job_id='%s' WHERE job_id='%s'", to, from);
	sql(db, "UPDATE job_log SET job_id='%s' WHERE job_id='%s'", to, from);
	sql(db, "UPDATE trials SET job_id='%s' WHERE job_id='%s'", to, from);
	sql(db, "UPDATE jobs SET id='%s' WHERE id='%s'", to, from);
}

static void build_template(void)
{
	struct qd_err err = { 0 };
	struct qd_store *st = NULL;
	struct qd_store_conn *c = NULL;
	if (qd_store_open(tmpl, &st, &err) || qd_store_connect(st, &c, &err))
		die("cannot open the template store", &err);
	char *path = malloc(qd_blob_path_max(st)), sha[65], dsha[65], msha[65];
	uint64_t size, dsize, msize;

	/* model */
	struct qd_model *m = tiny_model();
	struct qd_buf b = { 0 };
	json_t *summary = NULL;
	if (qd_model_serialize(m, &b, &err) || qd_blob_put_mem(st, b.data, b.len, sha, &size, &err) ||
	    qd_blob_path(st, sha, path, qd_blob_path_max(st), &err) ||
	    qd_api_check_model_file(path, &summary, &err))
		die("cannot store the fixture model", &err);
	qd_model_free(m);
	qd_buf_free(&b);
	char *sum_txt = json_dumps(summary, JSON_COMPACT);
	json_decref(summary);
	struct qd_model_row mrow = { 0 };
	if (qd_model_insert(c, sha, (int64_t)size, "tiny.onnx", sum_txt, &mrow, NULL, &err))
		die("cannot insert the fixture model", &err);
	free(sum_txt);

	/* dataset: x [4, 4] float32, labels [4] int64 */
	struct qd_tensor t[2] = { 0 };
	int64_t dx[2] = { 4, 4 }, dl[1] = { 4 };
	qd_tensor_alloc(&t[0], "x", QD_DT_FLOAT, 2, dx);
	qd_tensor_alloc(&t[1], "labels", QD_DT_INT64, 1, dl);
	char npz[400];
	snprintf(npz, sizeof npz, "%s/calib.npz", root);
	struct qd_dataset *ds = NULL;
	if (qd_npz_write(npz, t, 2, &err) || qd_blob_put_file(st, npz, dsha, &dsize, &err) ||
	    qd_blob_path(st, dsha, path, qd_blob_path_max(st), &err) ||
	    qd_dataset_load(path, NULL, &ds, &err))
		die("cannot store the fixture dataset", &err);
	unlink(npz);
	qd_tensor_release(&t[0]);
	qd_tensor_release(&t[1]);
	summary = qd_dataset_summary_json(ds);
	qd_dataset_free(ds);
	sum_txt = json_dumps(summary, JSON_COMPACT);
	json_decref(summary);
	struct qd_dataset_row drow = { 0 };
	if (qd_dataset_insert_summary(c, dsha, (int64_t)dsize, "calib.npz", "npz", sum_txt, &drow, NULL, &err))
		die("cannot insert the fixture dataset", &err);
	free(sum_txt);

	/* the ids are random: rename model and dataset before jobs refer to them */
	qd_store_disconnect(c);
	c = NULL;
	char db_path[400];
	snprintf(db_path, sizeof db_path, "%s/quantd.db", tmpl);
	sqlite3 *db = NULL;
	if (sqlite3_open(db_path, &db) != SQLITE_OK)
		die("cannot open the template database", NULL);
	sql(db, "UPDATE models SET id='" MODEL_ID "' WHERE id='%s'", mrow.id);
	sql(db, "UPDATE datasets SET id='" DATASET_ID "' WHERE id='%s'", drow.id);
	qd_model_row_free(&mrow);
	qd_dataset_row_free(&drow);
	if (qd_store_connect(st, &c, &err))
		die("cannot reconnect", &err);

	/* jobs: claim takes the oldest queued job, so each is created and moved on in turn */
	const char *wf = "{\"data_configs\":{\"calib\":{\"dataset\":\"" DATASET_ID "\"}},"
			 "\"passes\":{\"q\":{\"data_config\":\"calib\",\"type\":\"OnnxStaticQuantization\"}}}";
	struct qd_job_row j = { 0 }, q = { 0 };
	bool claimed;
	char ids[4][64];
	/* ..03 succeeded with two artifacts and a log */
	if (qd_job_create(c, MODEL_ID, wf, 3, 0, &q, &err) ||
	    qd_job_claim(c, "worker-0", &j, &claimed, &err))
		die("cannot create a fixture job", &err);
	snprintf(ids[2], 64, "%s", j.id);
	qd_job_row_free(&j);
	qd_job_row_free(&q);
	const char *metrics = "{\"size\":{\"float_bytes\":100,\"quantized_bytes\":40}}";
	struct qd_artifact_row a1 = { 0 }, a2 = { 0 };
	if (qd_blob_put_mem(st, metrics, strlen(metrics), msha, &msize, &err) ||
	    qd_artifact_add(c, ids[2], "model", "model.onnx", sha, (int64_t)size, NULL, &a1, &err) ||
	    qd_artifact_add(c, ids[2], "metrics", "metrics.json", msha, (int64_t)msize, "application/json", &a2,
			    &err) ||
	    qd_job_log_append(c, ids[2], QD_LOG_INFO, "job started on worker-0", NULL, &err) ||
	    qd_job_log_append(c, ids[2], QD_LOG_WARN, "pass 'q': a warning", NULL, &err) ||
	    qd_job_log_append(c, ids[2], QD_LOG_INFO, "job succeeded", NULL, &err) ||
	    qd_job_finish_succeeded(c, ids[2], metrics, &err))
		die("cannot finish a fixture job", &err);
	/* ..02 running */
	if (qd_job_create(c, MODEL_ID, wf, 3, 0, &q, &err) ||
	    qd_job_claim(c, "worker-1", &j, &claimed, &err))
		die("cannot create a fixture job", &err);
	snprintf(ids[1], 64, "%s", j.id);
	qd_job_row_free(&j);
	qd_job_row_free(&q);
	qd_job_log_append(c, ids[1], QD_LOG_INFO, "job started on worker-1", NULL, &err);
	/* ..04 failed */
	if (qd_job_create(c, MODEL_ID, wf, 3, 0, &q, &err) ||
	    qd_job_claim(c, "worker-0", &j, &claimed, &err) ||
	    qd_job_finish_failed(c, j.id, "MODEL", "pass 'q' failed: something", &err))
		die("cannot create a fixture job", &err);
	snprintf(ids[3], 64, "%s", j.id);
	qd_job_row_free(&j);
	qd_job_row_free(&q);
	/* ..01 queued */
	if (qd_job_create(c, MODEL_ID, wf, 3, 0, &j, &err))
		die("cannot create a fixture job", &err);
	snprintf(ids[0], 64, "%s", j.id);
	qd_job_row_free(&j);
	qd_store_disconnect(c);
	qd_store_close(st);

	for (int i = 0; i < 4; i++) {
		char to[64];
		snprintf(to, sizeof to, "job_%016d", i + 1);
		rename_job(db, ids[i], to);
	}
	sql(db, "UPDATE artifacts SET id='art_00000000000000f1' WHERE id='%s'", a1.id);
	sql(db, "UPDATE artifacts SET id='art_00000000000000f2' WHERE id='%s'", a2.id);
	qd_artifact_row_free(&a1);
	qd_artifact_row_free(&a2);
	sqlite3_close(db);
	free(path);
}

/* cp -r for the small template tree (regular files and directories only). */
static void copy_tree(const char *from, const char *to)
{
	if (mkdir(to, 0700) && errno != EEXIST)
		die("mkdir", NULL);
	DIR *d = opendir(from);
	if (!d)
		die("opendir", NULL);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char a[600], b[600];
		snprintf(a, sizeof a, "%s/%s", from, de->d_name);
		snprintf(b, sizeof b, "%s/%s", to, de->d_name);
		struct stat st;
		if (lstat(a, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			copy_tree(a, b);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		struct qd_buf buf = { 0 };
		struct qd_err err = { 0 };
		if (qd_file_read(a, &buf, &err) ||
		    qd_file_write_atomic(b, buf.data ? buf.data : (const uint8_t *)"", buf.len, &err))
			die("copy", &err);
		qd_buf_free(&buf);
	}
	closedir(d);
}

static void live_open(void)
{
	struct qd_err err = { 0 };
	qd_rm_rf(live);
	copy_tree(tmpl, live);
	if (qd_store_open(live, &D->store, &err))
		die("cannot open the live store", &err);
}

static void live_close(void)
{
	for (size_t i = 0; i < D->pool_len; i++)
		qd_store_disconnect(D->pool[i]);
	D->pool_len = 0;
	qd_store_close(D->store);
	D->store = NULL;
}

static void cleanup(void)
{
	if (!D)
		return;
	qd_api_stop(D);
	live_close();
	free(D->pool);
	free(D->metrics.http);
	qd_config_free(&D->cfg);
	free(D);
	D = NULL;
	qd_rm_rf(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct qd_err err = { 0 };
	signal(SIGPIPE, SIG_IGN);
	echo = getenv("QD_FUZZ_HTTP_ECHO") && *getenv("QD_FUZZ_HTTP_ECHO") == '1';
	qd_log_set_level(QD_LOG_ERROR);
	const char *base = getenv("QD_FUZZ_DIR");
	struct stat sb;
	if (!base)
		base = !stat("/dev/shm", &sb) && S_ISDIR(sb.st_mode) && !access("/dev/shm", W_OK) ? "/dev/shm"
		       : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(root, sizeof root, "%s/qd_fuzz_http_XXXXXX", base);
	if (!mkdtemp(root))
		die("mkdtemp", NULL);
	snprintf(tmpl, sizeof tmpl, "%s/template", root);
	snprintf(live, sizeof live, "%s/live", root);
	build_template();

	D = calloc(1, sizeof *D);
	pthread_mutex_init(&D->mu, NULL);
	pthread_cond_init(&D->wake, NULL);
	pthread_mutex_init(&D->pool_mu, NULL);
	pthread_mutex_init(&D->metrics.mu, NULL);
	D->started_at = qd_now_wall();
	char *args[] = { "serve", "--data-dir", live, "--listen", "127.0.0.1:0", "--token", "fuzz-token",
			 "--max-upload-bytes", "1048576", "--max-json-bytes", "65536", "--max-queued", "8",
			 "--conn-timeout", "10", "--http-threads", "1", "--log-level", "error", NULL };
	int help = 0;
	if (qd_config_load(&D->cfg, (int)QD_ARRAY_LEN(args) - 1, args, &help, &err))
		die("config", &err);
	live_open();
	if (qd_api_start(D, &port, &err))
		die("cannot start the API", &err);
	atexit(cleanup);
	return 0;
}

/* Bytes the server side of our connection has not read yet (its rx_queue in
 * /proc/net/tcp), or -1 when that socket is gone. */
static long server_unread(int local_port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	if (!f)
		return -1;
	char line[512];
	long unread = -1;
	while (fgets(line, sizeof line, f)) {
		unsigned lport, rport;
		unsigned long tx, rx;
		if (sscanf(line, " %*d: %*8x:%x %*8x:%x %*x %lx:%lx", &lport, &rport, &tx, &rx) == 4 &&
		    (int)lport == port && (int)rport == local_port) {
			unread = (long)rx;
			break;
		}
	}
	fclose(f);
	return unread;
}

/* Send the input on a fresh connection, read the answers until the server closes.
 * libmicrohttpd in epoll mode misses a FIN that arrives in the same read as the last
 * request bytes (the connection then idles until --conn-timeout), so the FIN goes out only
 * once the server has read everything; should it still hang on, a reset ends it. */
static void exchange(const uint8_t *data, size_t size)
{
	/* non-blocking from the start: libFuzzer's SIGALRM (-timeout) interrupts blocking calls */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || (connect(s, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS && errno != EINTR))
		die("connect", NULL);
	double t0 = qd_now_mono(), deadline = t0 + 20;
	for (;;) {
		struct pollfd p = { .fd = s, .events = POLLOUT };
		int e = 0;
		socklen_t el = sizeof e;
		if (poll(&p, 1, 1000) > 0 && !getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el)) {
			if (e)
				die("connect", NULL);
			break;
		}
		if (qd_now_mono() > deadline)
			die("connect timed out", NULL);
	}
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	getsockname(s, (struct sockaddr *)&me, &ml);
	int my_port = ntohs(me.sin_port);
	size_t off = 0;
	bool shut = false, eof = false;
	char buf[65536];
	double sent_at = 0, last_rx = t0;
	while (!eof) {
		double now = qd_now_mono();
		if (now > deadline)
			break;
		if (off == size && !shut) {
			if (!sent_at)
				sent_at = now;
			/* the server has read it all (or 2 s passed, or it is gone): FIN now */
			if (server_unread(my_port) <= 0 || now - sent_at > 2) {
				shutdown(s, SHUT_WR);
				shut = true;
				if (echo)
					fprintf(stderr, "\n[FIN at %.4f s, last rx %.4f]\n", now - t0, last_rx - t0);
			}
		}
		/* after the FIN, a second of silence means the server missed it */
		if (shut && now - QD_MAX(last_rx, sent_at) > 1)
			break;
		struct pollfd p = { .fd = s, .events = POLLIN | (off < size ? POLLOUT : 0) };
		if (poll(&p, 1, shut ? 50 : off < size ? 100 : 0) <= 0) {
			if (off == size && !shut)
				nanosleep(&(struct timespec){ .tv_nsec = 50000 }, NULL);
			continue;
		}
		if (p.revents & POLLOUT) {
			ssize_t w = send(s, data + off, size - off, MSG_NOSIGNAL);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				off = size; /* the server closed: stop sending */
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(s, buf, sizeof buf, 0);
			setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
			if (r > 0) {
				last_rx = qd_now_mono();
				if (echo) {
					fprintf(stderr, "[rx %zd at %.4f]", r, last_rx - t0);
					fwrite(buf, 1, (size_t)r, stderr);
				}
			}
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				eof = true;
		}
	}
	if (!eof) { /* reset: the server sees an error on its next poll and closes */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(s);
	if (echo)
		fprintf(stderr, "\n[exchange %.3f s%s]\n", qd_now_mono() - t0, eof ? "" : ", reset");
	double tc = qd_now_mono();
	/* a request may still be finishing (completion callback, store connection back to
	 * the pool): wait until MHD has cleaned the connection up */
	deadline = qd_now_mono() + 20;
	while (qd_api_connections(D) && qd_now_mono() < deadline)
		nanosleep(&(struct timespec){ .tv_nsec = 20000 }, NULL);
	if (echo)
		fprintf(stderr, "[cleanup %.4f s]\n", qd_now_mono() - tc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	memset(D->metrics.http, 0, (size_t)(QD_ROUTE__COUNT + 1) * QD_HTTP_STATUS_SLOTS * sizeof *D->metrics.http);
	D->metrics.upload_bytes = 0;
	D->metrics.uploads[0] = D->metrics.uploads[1] = 0;
	exchange(data, size);
	if (memmem(data, size, "POST", 4) || memmem(data, size, "DELETE", 6)) {
		live_close();
		live_open();
	}
	return 0;
}
