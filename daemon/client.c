/* The command-line client of a quantd daemon, for build pipelines that would otherwise
 * script curl: `quantd submit` uploads a model and its datasets (unless the server already
 * has the bytes), submits the workflow, waits with a progress line and downloads the
 * checked artifacts; `jobs`, `status`, `logs`, `trials` and `cancel` read and steer jobs.
 *
 * DESIGN
 * - HTTP goes through libcurl's easy interface (one handle per command, reset between
 *   requests so the connection is kept alive). Chosen over a small HTTP/1.1 client on
 *   sockets because a pipeline's quantd is often behind TLS and a proxy: libcurl brings
 *   https://, HTTPS_PROXY / NO_PROXY, IPv6, connect and stall timeouts, 100-continue (a
 *   401 or 413 arrives before a multi-GB body is sent) and a proven chunked / keep-alive
 *   parser, for one Debian package (libcurl4-openssl-dev; runtime libcurl4).
 * - Nothing is buffered whole: uploads are read from the file by CURLOPT_READFUNCTION with
 *   a Content-Length, downloads are written to DIR/.NAME.part by CURLOPT_WRITEFUNCTION,
 *   hashed on the way (OpenSSL EVP through qd_sha256), compared with the artifact's
 *   sha256 and size, fsync'ed and renamed. JSON answers are buffered up to 64 MiB.
 * - Deduplication: a file's sha256 is computed locally first (streamed) and looked up
 *   with GET /v1/models?sha256= (or /v1/datasets?sha256=); a hit is used without an
 *   upload. A server that ignores the filter answers a plain page, which is searched for
 *   the hash; a miss there costs only an upload the server answers 200 for.
 * - The workflow is validated locally with the daemon's own check (qd_workflow_check, every
 *   problem at once) before anything is uploaded: a typo in a pass parameter
 *   costs no multi-GB upload. The server checks again (datasets against the model,
 *   limits) and its 400 is shown as it is.
 * - Exit status (client.h, QD_CLI_EXITS): 0 ok, 1 job failed, 2 usage / request rejected
 *   as invalid, 3 canceled, 4 server unreachable or HTTP error. While waiting for a job,
 *   transport errors, 5xx and 429 are retried for up to a minute (a daemon restarting
 *   under systemd does not fail the pipeline step); before a job exists they are not.
 * - Progress and messages go to stderr, results (the job id, --json answers) to stdout.
 *   On a terminal the progress is one line rewritten with \r; otherwise one line per
 *   change of state, percentage or message.
 * Functions return 0 or an exit status, with the message in cli->msg (printed once, by
 * the command, with cli_fail). */
#define _GNU_SOURCE
#include "daemon/client.h"
#include "daemon/daemon.h"
#include "passes/data_config.h"
#include "passes/workflow.h"

#ifdef QD_NO_CURL
#include <stdio.h>
#include <string.h>
bool qd_client_command(const char *cmd)
{
	static const char *const cmds[] = { "submit", "jobs", "status", "logs", "cancel", "trials" };
	for (size_t i = 0; i < QD_ARRAY_LEN(cmds); i++)
		if (!strcmp(cmd, cmds[i]))
			return true;
	return false;
}

int qd_cmd_client(int argc, char **argv)
{
	fprintf(stderr, "quantd %s: this quantd was built without libcurl (install libcurl4-openssl-dev and "
		"rebuild): the client commands are not available\n", argc ? argv[0] : "");
	return QD_CLI_EXIT_USAGE;
}
#else
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JSON_MAX ((size_t)64 << 20)   /* largest JSON answer kept in memory */
#define MAX_DATA 64                   /* --data options */
#define RETRY_SECONDS 60.0            /* how long polls ride out a restarting server */
#define HASH_BUF ((size_t)1 << 20)    /* read size when hashing a file */

/* ---- options ---- */

enum { C_SUBMIT = 1, C_JOBS = 2, C_STATUS = 4, C_LOGS = 8, C_CANCEL = 16, C_TRIALS = 32, C_ALL = 63 };
#define C_JOB_ARG (C_STATUS | C_LOGS | C_CANCEL | C_TRIALS)   /* commands that take a JOB */

struct cli_args {
	const char *server, *token, *token_file, *model, *config, *output, *state, *limit,
		*poll, *connect_timeout, *job;
	bool json, quiet, wait, follow, logs, help;
	const char *data[MAX_DATA];
	int n_data;
};

/* One row per option: flag, takes a value, commands, where it goes, help. */
static const struct cli_opt {
	const char *flag;
	const char *arg;          /* its value's name (stored in a const char *); NULL: a bool flag */
	size_t off;               /* its member of struct cli_args */
	unsigned cmds;            /* C_* of the commands that take it */
	const char *help;
} cli_opts[] = {
#define V(field, arg) arg, offsetof(struct cli_args, field)
#define F(field) NULL, offsetof(struct cli_args, field)
	{ "--server", V(server, "URL"), C_ALL, "URL of the daemon (env QUANTD_SERVER, default http://127.0.0.1:8080)" },
	{ "--token", V(token, "TOKEN"), C_ALL, "bearer token (env QUANTD_TOKEN)" },
	{ "--token-file", V(token_file, "FILE"), C_ALL, "file whose first line is the token (env QUANTD_TOKEN_FILE)" },
	{ "--model", V(model, "FILE"), C_SUBMIT, "the ONNX model to quantize, or the folder of a model with external data (sent as a tar); uploaded unless the server has its bytes" },
	{ "--config", V(config, "FILE"), C_SUBMIT, "the workflow JSON (Olive-style: passes, data_configs, ...)" },
	{ "--data", V(data, "NAME=PATH"), C_SUBMIT, "upload PATH (.npz or tar) and bind data config NAME to it; repeatable" },
	{ "--wait", F(wait), C_SUBMIT | C_CANCEL, "wait until the job has finished" },
	{ "--output", V(output, "DIR"), C_SUBMIT, "download the artifacts into DIR (implies --wait)" },
	{ "--logs", F(logs), C_SUBMIT, "print the job's log lines while waiting" },
	{ "--state", V(state, "S,S"), C_JOBS, "only jobs in these states (queued,running,succeeded,failed,canceled)" },
	{ "--limit", V(limit, "N"), C_JOBS, "at most N jobs (default 50)" },
	{ "--follow", F(follow), C_LOGS, "keep printing new lines until the job has finished" },
	{ "--poll", V(poll, "SECONDS"), C_SUBMIT | C_LOGS | C_CANCEL, "seconds between polls (default 1)" },
	{ "--connect-timeout", V(connect_timeout, "SECONDS"), C_ALL, "seconds to wait for a connection (default 10)" },
	{ "--json", F(json), C_ALL, "print the server's JSON answers on stdout instead of text" },
	{ "--quiet", F(quiet), C_ALL, "no progress and no notes on stderr; errors only" },
	{ "--help", F(help), C_ALL, "this text" },
#undef V
#undef F
};

static const struct cli_cmd {
	const char *name;
	unsigned bit;
	const char *args;
	const char *what;
} cli_cmds[] = {
	{ "submit", C_SUBMIT, "--model M.onnx --config WORKFLOW.json [--data NAME=PATH]... [--wait] [--output DIR]",
	  "upload a model (and datasets), submit a workflow, wait for it and download its artifacts" },
	{ "jobs", C_JOBS, "[--state S] [--limit N]", "list jobs, newest first" },
	{ "status", C_STATUS, "JOB", "show one job: state, progress, error, result, artifacts" },
	{ "logs", C_LOGS, "JOB [--follow]", "print a job's log" },
	{ "cancel", C_CANCEL, "JOB [--wait]", "cancel a queued or running job" },
	{ "trials", C_TRIALS, "JOB", "list a search job's trials: parameters, metric values, goals, duration, pareto "
	  "frontier, and the search's progress" },
};

static void cli_usage(FILE *f, const struct cli_cmd *cmd)
{
	fprintf(f, "usage: quantd %s %s [options]\n\n%s.\n\noptions:\n", cmd->name, cmd->args, cmd->what);
	for (size_t i = 0; i < QD_ARRAY_LEN(cli_opts); i++) {
		char flag[40];
		snprintf(flag, sizeof flag, "%s%s%s", cli_opts[i].flag, cli_opts[i].arg ? " " : "",
			 cli_opts[i].arg ? cli_opts[i].arg : "");
		if (cli_opts[i].cmds & cmd->bit)
			fprintf(f, "  %-24s %s\n", flag, cli_opts[i].help);
	}
	fprintf(f, "\nexit status:\n");
#define QD_CLI_EXIT_HELP(name, status, msg) fprintf(f, "  %d  %s\n", status, msg);
	QD_CLI_EXITS(QD_CLI_EXIT_HELP)
#undef QD_CLI_EXIT_HELP
}

/* ---- the client ---- */

struct cli {
	const char *cmd;            /* "submit": the message prefix */
	char *server;               /* new: base URL without a trailing '/' */
	char *token;                /* new, NULL when none */
	const char *token_from;     /* "--token", "QUANTD_TOKEN", ...; NULL when none */
	bool json, quiet, tty, line_open;
	double poll;                /* seconds between polls */
	long connect_timeout;
	CURL *h;
	char curl_err[CURL_ERROR_SIZE];
	char msg[2048];             /* the error of the last failing step */
	char last_line[512];        /* plain progress: the previous line (printed on change) */
};

static int cli_set(struct cli *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cli_set(struct cli *c, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof c->msg, fmt, ap);
	va_end(ap);
	return status;
}

static void ui_clear(struct cli *c)
{
	if (c->tty && c->line_open) {
		fputs("\r\033[K", stderr);
		c->line_open = false;
	}
}

/* Print the error of a failed step (cli->msg) and return its exit status. */
static int cli_fail(struct cli *c, int status)
{
	ui_clear(c);
	fprintf(stderr, "quantd %s: error: %s\n", c->cmd, c->msg[0] ? c->msg : "failed");
	return status;
}

/* A note on stderr: a whole line (also off a terminal), unless --quiet. */
static void ui_note(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ui_note(struct cli *c, const char *fmt, ...)
{
	if (c->quiet)
		return;
	ui_clear(c);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* Progress: on a terminal one line rewritten in place (cut to its width); otherwise a line
 * per change (plain lines only when plain is true: transfer counters stay off logs). */
static void ui_progress(struct cli *c, bool plain, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ui_progress(struct cli *c, bool plain, const char *fmt, ...)
{
	if (c->quiet || (!c->tty && !plain))
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (c->tty) {
		struct winsize ws;
		size_t cols = ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col : 80;
		if (strlen(line) >= cols)
			line[cols - 1] = 0;
		fprintf(stderr, "\r\033[K%s", line);
		c->line_open = true;
	} else {
		if (!strcmp(line, c->last_line))
			return;
		snprintf(c->last_line, sizeof c->last_line, "%s", line);
		fprintf(stderr, "%s\n", line);
	}
	fflush(stderr);
}

static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* ---- HTTP ---- */

struct sink {
	struct qd_buf buf;    /* JSON answers, error bodies */
	FILE *f;              /* a download: the 200 body goes here, hashed */
	struct qd_sha256 sha;
	char hex[65];         /* a download's sha256, set by http_do */
	uint64_t n;
	bool overflow, write_failed;
	CURL *h;
};

struct xfer {                 /* progress of an upload or a download on a terminal */
	struct cli *c;
	const char *label;
	double t0, last;
};

struct http {
	const char *method;       /* "GET" or "POST" */
	const char *path;         /* appended to the server URL: "/v1/jobs?limit=5" */
	const char *json;         /* request body sent as application/json, or NULL */
	FILE *upload;             /* or a file streamed as application/octet-stream */
	uint64_t upload_size;
	FILE *download;           /* a 200 answer's body goes here (sink.sha, sink.n) */
	const char *label;        /* transfer progress label, or NULL */
	long status;              /* out */
	long retry_after;         /* out: Retry-After seconds, 0 when none */
	struct sink sink;         /* out: the body (free with http_free) */
};

static size_t on_write(char *p, size_t sz, size_t nm, void *ud)
{
	struct sink *s = ud;
	size_t n = sz * nm;
	long status = 0;
	curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
	if (s->f && status == 200) {
		if (fwrite(p, 1, n, s->f) != n) {
			s->write_failed = true;
			return 0;
		}
		qd_sha256_update(&s->sha, p, n);
		s->n += n;
		return n;
	}
	if (s->buf.len + n > JSON_MAX) {
		s->overflow = true;
		return 0;
	}
	return qd_buf_append(&s->buf, p, n) ? 0 : n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
	struct http *rq = ud;
	size_t n = sz * nm;
	if (n > 12 && !strncasecmp(p, "Retry-After:", 12))
		rq->retry_after = strtol(p + 12, NULL, 10);
	return n;
}

static size_t on_read(char *p, size_t sz, size_t nm, void *ud)
{
	FILE *f = ud;
	size_t n = fread(p, 1, sz * nm, f);
	if (n == 0 && ferror(f))
		return CURL_READFUNC_ABORT;
	return n;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = ud;
	double now = qd_now_mono();
	if (now - x->last < 0.2)
		return 0;
	x->last = now;
	curl_off_t total = ultotal ? ultotal : dltotal, done = ultotal ? ulnow : dlnow;
	double dt = now - x->t0;
	if (total > 0)
		ui_progress(x->c, false, "%s: %3d%% (%.1f of %.1f MiB, %.1f MiB/s)", x->label,
			    (int)(100.0 * (double)done / (double)total), mib((double)done), mib((double)total),
			    dt > 0 ? mib((double)done) / dt : 0.0);
	return 0;
}

static void http_free(struct http *rq) { qd_buf_free(&rq->sink.buf); }

/* The answer's body as text (borrow, valid until http_free). */
static const char *http_body(struct http *rq)
{
	if (qd_buf_append(&rq->sink.buf, "", 1))
		return "";
	rq->sink.buf.len--;
	return (const char *)rq->sink.buf.data;
}

/* Send one request. 0 when an HTTP answer came back (any status: rq->status), else
 * QD_CLI_EXIT_SERVER with the transport error in c->msg. */
static int http_do(struct cli *c, struct http *rq)
{
	char *url = qd_asprintf("%s%s", c->server, rq->path);
	char *auth = c->token ? qd_asprintf("Authorization: Bearer %s", c->token) : NULL;
	char *ua = qd_asprintf("User-Agent: quantd-client/%s", QD_VERSION);
	struct curl_slist *hdr = NULL;
	struct xfer x = { c, rq->label, qd_now_mono(), 0 };
	int rc = 0;
	if (!url || !ua || (c->token && !auth)) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
		goto out;
	}
	curl_easy_reset(c->h);
	memset(&rq->sink, 0, sizeof rq->sink);
	rq->sink.h = c->h;
	rq->sink.f = rq->download;
	rq->status = rq->retry_after = 0;
	if (rq->download && qd_sha256_init(&rq->sink.sha)) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
		goto out;
	}
	c->curl_err[0] = 0;
	curl_easy_setopt(c->h, CURLOPT_URL, url);
	curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
	/* a stalled transfer (no byte for 2 minutes) fails instead of hanging the pipeline */
	curl_easy_setopt(c->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c->h, CURLOPT_LOW_SPEED_TIME, 120L);
	curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &rq->sink);
	curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->h, CURLOPT_HEADERDATA, rq);
	hdr = curl_slist_append(hdr, ua);
	hdr = curl_slist_append(hdr, "Accept: application/json, application/octet-stream");
	if (auth)
		hdr = curl_slist_append(hdr, auth);
	if (rq->json) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		hdr = curl_slist_append(hdr, "Expect:");
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, rq->json);
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(rq->json));
	} else if (rq->upload) {
		/* Content-Length up front (the server's 413 needs no body) and 100-continue: a
		 * refusal arrives before the body is sent */
		hdr = curl_slist_append(hdr, "Content-Type: application/octet-stream");
		curl_easy_setopt(c->h, CURLOPT_POST, 1L);
		curl_easy_setopt(c->h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c->h, CURLOPT_READDATA, rq->upload);
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->upload_size);
		curl_easy_setopt(c->h, CURLOPT_EXPECT_100_TIMEOUT_MS, 2000L);
	} else if (!strcmp(rq->method, "POST")) {
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	if (strcmp(rq->method, "GET") && strcmp(rq->method, "POST"))
		curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, rq->method);
	if (!rq->upload && !rq->download)
		curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 300L);
	if (rq->label && c->tty && !c->quiet) {
		curl_easy_setopt(c->h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c->h, CURLOPT_XFERINFOFUNCTION, on_xfer);
		curl_easy_setopt(c->h, CURLOPT_XFERINFODATA, &x);
	}
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdr);
	CURLcode cc = curl_easy_perform(c->h);
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &rq->status);
	if (rq->sink.write_failed)
		rc = cli_set(c, QD_CLI_EXIT_USAGE, "cannot write the download: %s", strerror(errno));
	else if (rq->sink.overflow)
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "%s %s: the answer is larger than %zu MiB", rq->method,
			     rq->path, JSON_MAX >> 20);
	/* a server that answers early (401, 413) and closes ends our send: keep its answer */
	else if (cc != CURLE_OK && !(rq->status && cc == CURLE_SEND_ERROR))
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "cannot %s the quantd server at %s (%s %s): %s%s%s",
			     rq->status ? "finish a request to" : "reach", c->server, rq->method, rq->path,
			     curl_easy_strerror(cc), c->curl_err[0] ? ": " : "", c->curl_err);
	else if (!rq->status)
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "no HTTP answer from %s", c->server);
out:
	if (rq->sink.sha.ctx)
		qd_sha256_final(&rq->sink.sha, rq->sink.hex);
	curl_slist_free_all(hdr);
	free(url);
	free(auth);
	free(ua);
	return rc;
}

/* Every problem after the first of a {"field", "message"} list, one per line, onto c->msg. */
static void append_problems(struct cli *c, const json_t *problems)
{
	size_t i, len;
	json_t *p;
	json_array_foreach((json_t *)problems, i, p) {
		const char *f = json_string_value(json_object_get(p, "field"));
		if (i == 0 || (len = strlen(c->msg)) + 2 >= sizeof c->msg)
			continue;
		snprintf(c->msg + len, sizeof c->msg - len, "\n  also: %s%s%s%s",
			 json_string_value(json_object_get(p, "message")) ?: "?", f && *f ? " (field " : "",
			 f && *f ? f : "", f && *f ? ")" : "");
	}
}

/* The error of a non-2xx answer into c->msg; returns its exit status: a request the
 * server rejects as invalid is usage, the rest is a server error. */
static int http_error(struct cli *c, struct http *rq)
{
	json_t *j = json_loads(http_body(rq), 0, NULL);
	const json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *m = json_string_value(json_object_get(e, "message"));
	const char *field = json_string_value(json_object_get(json_object_get(e, "details"), "field"));
	char path[256];
	snprintf(path, sizeof path, "%s", rq->path);
	char *q = strchr(path, '?');
	if (q)
		*q = 0;
	if (m)
		cli_set(c, 0, "%s %s answered %ld %s: %s%s%s%s", rq->method, path, rq->status, code ? code : "",
			m, field && *field ? " (field " : "", field && *field ? field : "", field && *field ? ")" : "");
	else {
		const char *b = http_body(rq);
		int n = (int)strcspn(b, "\r\n");
		cli_set(c, 0, "%s %s answered HTTP %ld%s%.*s", rq->method, path, rq->status, n ? ": " : "",
			n > 200 ? 200 : n, b);
	}
	append_problems(c, json_object_get(json_object_get(e, "details"), "problems"));
	json_decref(j);
	size_t len = strlen(c->msg);
	if (rq->status == 401 && c->token_from)
		snprintf(c->msg + len, sizeof c->msg - len, "; the server refused the token given by %s",
			 c->token_from);
	else if (rq->status == 401)
		snprintf(c->msg + len, sizeof c->msg - len, "; the server needs a token: give it with --token, "
			 "--token-file, QUANTD_TOKEN or QUANTD_TOKEN_FILE");
	else if (rq->status == 429 && rq->retry_after > 0)
		snprintf(c->msg + len, sizeof c->msg - len, " (retry after %ld s)", rq->retry_after);
	switch (rq->status) {
	case 400: case 404: case 405: case 409: case 413: case 416:
		return QD_CLI_EXIT_USAGE;
	default:
		return QD_CLI_EXIT_SERVER;
	}
}

/* A JSON request. 0 with *out (new) for a 2xx answer (*status set when status is not
 * NULL); else the exit status with the message in c->msg. raw (new, may be NULL) gets the
 * answer's text as it came. */
static int api_json(struct cli *c, const char *method, const char *path, const json_t *body,
		    long *status, json_t **out, char **raw)
{
	struct http rq = { .method = method, .path = path };
	char *txt = NULL;
	*out = NULL;
	if (raw)
		*raw = NULL;
	if (body && !(txt = json_dumps(body, JSON_COMPACT)))
		return cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
	rq.json = txt;
	int rc = http_do(c, &rq);
	free(txt);
	if (rc)
		goto out;
	if (status)
		*status = rq.status;
	if (rq.status < 200 || rq.status > 299) {
		rc = http_error(c, &rq);
		goto out;
	}
	json_error_t je;
	if (!(*out = json_loads(http_body(&rq), 0, &je))) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "%s %s: the answer (HTTP %ld) is not JSON: %s", method, path,
			     rq.status, je.text);
		goto out;
	}
	if (raw && !(*raw = qd_strdup(http_body(&rq))))
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
out:
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	http_free(&rq);
	return rc;
}

/* api_json for polls: a server that restarts, answers 5xx or 429 is retried with a
 * backoff for up to RETRY_SECONDS. */
static int api_json_retry(struct cli *c, const char *path, json_t **out, char **raw)
{
	double t0 = qd_now_mono(), wait = 0.5;
	for (;;) {
		long status = 0;
		int rc = api_json(c, "GET", path, NULL, &status, out, raw);
		if (rc != QD_CLI_EXIT_SERVER || status == 401 || qd_now_mono() - t0 > RETRY_SECONDS)
			return rc;
		nap(wait);
		wait = QD_MIN(wait * 2, 5.0);
	}
}

/* Print an answer's text on stdout (for --json), ending with a newline. */
static void print_raw(const char *raw)
{
	size_t n = strlen(raw);
	fputs(raw, stdout);
	if (!n || raw[n - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
}

static char *url_escape(struct cli *c, const char *s)
{
	char *e = curl_easy_escape(c->h, s, 0);
	char *r = qd_strdup(e ? e : "");
	curl_free(e);
	return r;
}

/* ---- files ---- */

/* Open a regular file for reading with its size; usage error when it cannot be. */
static int open_input(struct cli *c, const char *what, const char *path, FILE **f, uint64_t *size)
{
	struct stat st;
	if (!(*f = fopen(path, "rb")))
		return cli_set(c, QD_CLI_EXIT_USAGE, "cannot open %s '%s': %s", what, path, strerror(errno));
	if (fstat(fileno(*f), &st) || !S_ISREG(st.st_mode)) {
		fclose(*f);
		*f = NULL;
		return cli_set(c, QD_CLI_EXIT_USAGE, "%s '%s' is not a regular file", what, path);
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

/* sha256 of an open file, streamed (rewinds it). */
static int hash_file(struct cli *c, const char *what, const char *path, FILE *f, uint64_t size, char hex[65])
{
	struct qd_sha256 s;
	char *buf = malloc(HASH_BUF);
	if (!buf || qd_sha256_init(&s)) {
		free(buf);
		return cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
	}
	uint64_t done = 0;
	double t0 = qd_now_mono(), last = 0;
	size_t n;
	while ((n = fread(buf, 1, HASH_BUF, f)) > 0) {
		qd_sha256_update(&s, buf, n);
		done += n;
		double now = qd_now_mono();
		if (size > ((uint64_t)64 << 20) && now - last > 0.2) {
			last = now;
			ui_progress(c, false, "hashing %s '%s': %3d%% (%.0f MiB/s)", what, base_name(path),
				    (int)(100.0 * (double)done / (double)size), mib((double)done) / (now - t0 + 1e-9));
		}
	}
	qd_sha256_final(&s, hex);
	free(buf);
	if (ferror(f))
		return cli_set(c, QD_CLI_EXIT_USAGE, "cannot read %s '%s': %s", what, path, strerror(errno));
	rewind(f);
	return 0;
}

/* ---- submit ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --model DIR: the folder's regular files (its .onnx and external data) as a plain ustar
 * tar written to tmp_dir/<DIR's name>.tar, streamed file by file. Deterministic (names
 * sorted, mtime / owner 0) so the same folder gives the same bytes: the server's sha256
 * lookup then skips a second upload. *out is new. */
static int tar_folder(struct cli *c, const char *dir, const char *tmp_dir, char **out)
{
	DIR *d = opendir(dir);
	char **names = NULL, *tpath = NULL, *buf = NULL;
	size_t n = 0;
	FILE *t = NULL;
	int rc = 0;
	if (!d)
		return cli_set(c, QD_CLI_EXIT_USAGE, "cannot open model folder '%s': %s", dir, strerror(errno));
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		char *p = qd_asprintf("%s/%s", dir, e->d_name);
		struct stat sb;
		if (p && e->d_name[0] != '.' && stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
			char **nn = realloc(names, (n + 1) * sizeof *names);
			if (!nn || !(nn[n] = strdup(e->d_name)))
				rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
			else
				n++;
			if (nn)
				names = nn;
		}
		free(p);
	}
	closedir(d);
	if (rc)
		goto out;
	qsort(names, n, sizeof *names, name_cmp);
	char base[200];
	snprintf(base, sizeof base, "%s", base_name(dir));
	for (char *s = base + strlen(base); s > base && s[-1] == '/';)
		*--s = 0;
	if (!(tpath = qd_asprintf("%s/%s.tar", tmp_dir, *base ? base : "model")) || !(buf = malloc(1 << 16))) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
		goto out;
	}
	if (!(t = fopen(tpath, "wb"))) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "cannot create '%s': %s", tpath, strerror(errno));
		goto out;
	}
	for (size_t i = 0; !rc && i < n; i++) {
		char *p = qd_asprintf("%s/%s", dir, names[i]);
		FILE *f = p ? fopen(p, "rb") : NULL;
		struct stat sb;
		if (!f || fstat(fileno(f), &sb) < 0 || strlen(names[i]) > 99) {
			rc = cli_set(c, QD_CLI_EXIT_USAGE, !f ? "cannot read '%s/%s'" : "'%s/%s': name over 99 bytes",
				     dir, names[i]);
			if (f)
				fclose(f);
			free(p);
			break;
		}
		unsigned char h[512] = { 0 };
		char sz[32];
		memcpy(h, names[i], strlen(names[i]));
		memcpy(h + 100, "0000644", 7);
		memcpy(h + 108, "0000000", 7);
		memcpy(h + 116, "0000000", 7);
		if ((uint64_t)sb.st_size < (1ULL << 33)) {
			snprintf(sz, sizeof sz, "%011llo", (unsigned long long)sb.st_size);
			memcpy(h + 124, sz, 11);
		} else {  /* base-256 past 8 GiB */
			h[124] = 0x80;
			for (int k = 0; k < 8; k++)
				h[135 - k] = (unsigned char)((uint64_t)sb.st_size >> (8 * k));
		}
		memcpy(h + 136, "00000000000", 11);
		h[156] = '0';
		memcpy(h + 257, "ustar", 6);
		memcpy(h + 263, "00", 2);
		memset(h + 148, ' ', 8);
		unsigned sum = 0;
		for (int k = 0; k < 512; k++)
			sum += h[k];
		snprintf(sz, sizeof sz, "%06o", sum & 0777777);
		memcpy(h + 148, sz, 7);
		fwrite(h, 1, 512, t);
		uint64_t left = (uint64_t)sb.st_size;
		while (left) {
			size_t k = fread(buf, 1, 1 << 16, f);
			if (!k)
				break;
			fwrite(buf, 1, k, t);
			left -= k;
		}
		fclose(f);
		free(p);
		if (left) {
			rc = cli_set(c, QD_CLI_EXIT_USAGE, "'%s/%s' changed while it was packed", dir, names[i]);
			break;
		}
		static const unsigned char zero[1024];
		if (sb.st_size % 512)
			fwrite(zero, 1, 512 - (size_t)(sb.st_size % 512), t);
	}
	static const unsigned char end[1024];
	if (!rc)
		fwrite(end, 1, sizeof end, t);
	if (fclose(t) != 0 && !rc)
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "cannot write '%s': %s", tpath, strerror(errno));
	t = NULL;
	if (!rc) {
		*out = tpath;
		tpath = NULL;
	}
out:
	if (tpath)
		unlink(tpath);
	free(tpath);
	free(buf);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* The stored model (what "model") or dataset with path's bytes: found by sha256, else
 * uploaded. id receives its id. */
static int ensure_blob(struct cli *c, const char *what, const char *collection, const char *path, char id[64])
{
	FILE *f = NULL;
	uint64_t size = 0;
	char hex[65], *path_q = NULL, *name = NULL, *label = NULL;
	json_t *j = NULL;
	struct http rq = { 0 };
	int rc;
	if ((rc = open_input(c, what, path, &f, &size)) || (rc = hash_file(c, what, path, f, size, hex)))
		goto out;
	/* already there? (a server without the ?sha256= filter answers a page: search it) */
	if (!(path_q = qd_asprintf("%s?sha256=%s&limit=1000", collection, hex))) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
		goto out;
	}
	if ((rc = api_json(c, "GET", path_q, NULL, NULL, &j, NULL)))
		goto out;
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(j, "items"), i, it) {
		const char *s = json_string_value(json_object_get(it, "sha256"));
		const char *sid = json_string_value(json_object_get(it, "id"));
		if (s && sid && !strcmp(s, hex)) {
			snprintf(id, 64, "%s", sid);
			ui_note(c, "%s '%s' (%llu bytes, sha256 %.12s) is already on the server as %s: upload skipped",
				what, base_name(path), (unsigned long long)size, hex, id);
			goto out;
		}
	}
	json_decref(j);
	j = NULL;
	free(path_q);
	name = url_escape(c, base_name(path));
	path_q = name ? qd_asprintf("%s?name=%s", collection, name) : NULL;
	label = qd_asprintf("uploading %s '%s'", what, base_name(path));
	if (!path_q || !label) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
		goto out;
	}
	ui_note(c, "uploading %s '%s' (%llu bytes, sha256 %.12s)", what, base_name(path), (unsigned long long)size, hex);
	double t0 = qd_now_mono();
	rq = (struct http){ .method = "POST", .path = path_q, .upload = f, .upload_size = size, .label = label };
	if ((rc = http_do(c, &rq)))
		goto out;
	if (rq.status != 200 && rq.status != 201) {
		rc = http_error(c, &rq);
		goto out;
	}
	json_error_t je;
	j = json_loads(http_body(&rq), 0, &je);
	const char *sid = json_string_value(json_object_get(j, "id"));
	const char *ssha = json_string_value(json_object_get(j, "sha256"));
	if (!sid || !ssha) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "POST %s: the answer lacks the %s's id and sha256", collection, what);
		goto out;
	}
	if (strcmp(ssha, hex)) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "%s '%s' arrived damaged: the server stored sha256 %s, the "
			     "file has %s", what, path, ssha, hex);
		goto out;
	}
	snprintf(id, 64, "%s", sid);
	double dt = qd_now_mono() - t0;
	ui_note(c, "uploaded %s '%s' as %s (%s, %.1f MiB in %.1f s)", what, base_name(path), id,
		rq.status == 201 ? "new" : "identical bytes were already stored", mib((double)size), dt);
out:
	if (f)
		fclose(f);
	json_decref(j);
	http_free(&rq);
	free(path_q);
	free(name);
	free(label);
	return rc;
}

/* data_configs[NAME].dataset = value, in Olive's dict form or list form (the entry named
 * NAME); a NAME the workflow lacks is added. */
static int bind_data(struct cli *c, json_t *wf, const char *name, const char *value)
{
	json_t *dcs = json_object_get(wf, "data_configs"), *cfg = NULL;
	if (!dcs) {
		dcs = json_object();
		json_object_set_new(wf, "data_configs", dcs);
	}
	if (json_is_array(dcs)) {
		size_t k;
		json_t *e;
		json_array_foreach(dcs, k, e)
			if (!strcmp(json_string_value(json_object_get(e, "name")) ?: "", name))
				cfg = e;
		if (!cfg) {
			cfg = json_pack("{s:s}", "name", name);
			json_array_append_new(dcs, cfg);
		}
	} else if (json_is_object(dcs)) {
		if (!(cfg = json_object_get(dcs, name))) {
			cfg = json_object();
			json_object_set_new(dcs, name, cfg);
		}
	} else
		return cli_set(c, QD_CLI_EXIT_USAGE, "the workflow's \"data_configs\" must be an object or a list");
	if (!json_is_object(cfg))
		return cli_set(c, QD_CLI_EXIT_USAGE, "data config '%s' of the workflow must be an object", name);
	json_object_set_new(cfg, "dataset", json_string(value));
	/* an Olive file's "datasets" binding would be applied over it by the server */
	json_t *ds = json_object_get(wf, "datasets");
	if (json_is_object(ds) && json_object_get(ds, name))
		json_object_set_new(ds, name, json_string(value));
	return 0;
}


/* The artifact's name as a file in --output: its base name, never hidden or a path. */
static void artifact_file(const json_t *a, char out[256])
{
	const char *name = json_string_value(json_object_get(a, "name"));
	const char *kind = json_string_value(json_object_get(a, "kind")) ?: "file";
	const char *b = name ? base_name(name) : "";
	if (!*b || b[0] == '.' || strchr(b, '/'))
		snprintf(out, 256, "%s-%s", kind, json_string_value(json_object_get(a, "id")) ?: "artifact");
	else
		snprintf(out, 256, "%s", b);
}

/* Does the file hold these bytes already? */
static bool file_has(const char *path, const char *sha, json_int_t size)
{
	struct stat st;
	if (stat(path, &st) || !S_ISREG(st.st_mode) || st.st_size != size)
		return false;
	FILE *f = fopen(path, "rb");
	char *buf = f ? malloc(HASH_BUF) : NULL;
	struct qd_sha256 s;
	if (!buf || qd_sha256_init(&s)) {
		if (f)
			fclose(f);
		free(buf);
		return false;
	}
	size_t n;
	while ((n = fread(buf, 1, HASH_BUF, f)) > 0)
		qd_sha256_update(&s, buf, n);
	char hex[65];
	qd_sha256_final(&s, hex);
	free(buf);
	bool ok = !ferror(f) && !strcmp(hex, sha);
	fclose(f);
	return ok;
}

/* Download every artifact of job into dir, each checked against its sha256 and size. */
static int download_artifacts(struct cli *c, const json_t *job, const char *dir, uint64_t *total)
{
	struct qd_err e = { 0 };
	*total = 0;
	if (qd_mkdir_p(dir, &e))
		return cli_set(c, QD_CLI_EXIT_USAGE, "cannot create --output '%s': %s", dir, e.msg);
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(job, "artifacts"), i, a) {
		const char *url = json_string_value(json_object_get(a, "url"));
		const char *sha = json_string_value(json_object_get(a, "sha256"));
		json_int_t size = json_integer_value(json_object_get(a, "size"));
		char name[256];
		artifact_file(a, name);
		if (!url || !sha || strlen(sha) != 64)
			return cli_set(c, QD_CLI_EXIT_SERVER, "artifact '%s' lacks its url or sha256", name);
		char *dest = qd_asprintf("%s/%s", dir, name), *part = qd_asprintf("%s/.%s.part", dir, name);
		char *label = qd_asprintf("downloading %s", name);
		int rc = 0;
		FILE *f = NULL;
		struct http rq = { 0 };
		if (!dest || !part || !label) {
			rc = cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
			goto next;
		}
		if (file_has(dest, sha, size)) {
			ui_note(c, "%s: already in %s with sha256 %.12s", name, dir, sha);
			*total += (uint64_t)size;
			goto next;
		}
		if (!(f = fopen(part, "wb"))) {
			rc = cli_set(c, QD_CLI_EXIT_USAGE, "cannot create '%s': %s", part, strerror(errno));
			goto next;
		}
		rq = (struct http){ .method = "GET", .path = url, .download = f, .label = label };
		if ((rc = http_do(c, &rq)))
			goto next;
		if (rq.status != 200) {
			rc = http_error(c, &rq);
			goto next;
		}
		const char *hex = rq.sink.hex;
		if (fflush(f) || fsync(fileno(f))) {
			rc = cli_set(c, QD_CLI_EXIT_USAGE, "cannot write '%s': %s", part, strerror(errno));
			goto next;
		}
		if (strcmp(hex, sha) || rq.sink.n != (uint64_t)size) {
			rc = cli_set(c, QD_CLI_EXIT_SERVER, "artifact '%s' arrived damaged: %llu bytes with sha256 %s, "
				     "the server lists %lld bytes with sha256 %s", name, (unsigned long long)rq.sink.n,
				     hex, (long long)size, sha);
			goto next;
		}
		fclose(f);
		f = NULL;
		if (rename(part, dest)) {
			rc = cli_set(c, QD_CLI_EXIT_USAGE, "cannot rename '%s' to '%s': %s", part, dest, strerror(errno));
			goto next;
		}
		*total += (uint64_t)size;
		ui_note(c, "downloaded %s (%lld bytes, sha256 %.12s ok)", dest, (long long)size, sha);
next:
		if (f) {
			fclose(f);
			unlink(part);
		}
		http_free(&rq);
		free(dest);
		free(part);
		free(label);
		if (rc)
			return rc;
	}
	return 0;
}

static bool state_final(const char *s)
{
	return s && (!strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "canceled"));
}

/* Print the log lines of job after *after on stderr (and move it on). */
static int print_log_lines(struct cli *c, const char *job, int64_t *after, bool *more)
{
	char path[160];
	snprintf(path, sizeof path, "/v1/jobs/%s/log?after=%lld", job, (long long)*after);
	json_t *page;
	int rc = api_json_retry(c, path, &page, NULL);
	if (rc)
		return rc;
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(page, "lines"), i, l)
		ui_note(c, "log: %-5s %s", json_string_value(json_object_get(l, "level")) ?: "",
			json_string_value(json_object_get(l, "line")) ?: "");
	*after = json_integer_value(json_object_get(page, "next_after"));
	*more = json_is_true(json_object_get(page, "more"));
	json_decref(page);
	return 0;
}

/* Poll job until it has finished (progress on stderr; with logs, its log lines too).
 * *final (new) is the last job JSON, *raw its text. */
static int wait_job(struct cli *c, const char *job, bool logs, json_t **final, char **raw)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/jobs/%s", job);
	double t0 = qd_now_mono();
	int64_t after = 0;
	*final = NULL;
	*raw = NULL;
	for (;;) {
		json_t *j;
		char *txt;
		int rc = api_json_retry(c, path, &j, &txt);
		if (rc)
			return rc;
		const char *state = json_string_value(json_object_get(j, "state")) ?: "?";
		if (logs) {
			bool more = true;
			while (more && !rc)
				rc = print_log_lines(c, job, &after, &more);
			if (rc) {
				json_decref(j);
				free(txt);
				return rc;
			}
		}
		double p = json_number_value(json_object_get(j, "progress"));
		const char *m = json_string_value(json_object_get(j, "progress_message"));
		if (c->tty)
			ui_progress(c, true, "%s %s [%3d%%]%s%s  %.0fs", job, state, (int)(p * 100.0 + 0.5), m ? " " : "",
				    m ? m : "", qd_now_mono() - t0);
		else
			ui_progress(c, true, "%s: %s [%3d%%]%s%s", job, state, (int)(p * 100.0 + 0.5), m ? " " : "",
				    m ? m : "");
		if (state_final(state)) {
			*final = j;
			*raw = txt;
			ui_clear(c);
			return 0;
		}
		json_decref(j);
		free(txt);
		nap(c->poll);
	}
}

/* The last n log lines of a failed job on stderr (when they were not printed already). */
static void print_log_tail(struct cli *c, const char *job, int n)
{
	char path[160];
	snprintf(path, sizeof path, "/v1/jobs/%s/log?limit=10000", job);
	json_t *page = NULL;
	if (api_json(c, "GET", path, NULL, NULL, &page, NULL))
		return;
	json_t *lines = json_object_get(page, "lines");
	size_t k = json_array_size(lines);
	if (k)
		ui_note(c, "last %d lines of the job's log (quantd logs %s shows all):", (int)QD_MIN((size_t)n, k), job);
	for (size_t i = k > (size_t)n ? k - (size_t)n : 0; i < k; i++) {
		json_t *l = json_array_get(lines, i);
		ui_note(c, "log: %-5s %s", json_string_value(json_object_get(l, "level")) ?: "",
			json_string_value(json_object_get(l, "line")) ?: "");
	}
	json_decref(page);
}

/* The job's end as an exit status, with its error printed. */
static int job_outcome(struct cli *c, const json_t *j, const char *job)
{
	const char *state = json_string_value(json_object_get(j, "state")) ?: "?";
	const json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *m = json_string_value(json_object_get(e, "message"));
	if (!strcmp(state, "succeeded"))
		return 0;
	if (!strcmp(state, "canceled")) {
		cli_set(c, 0, "job %s was canceled%s%s", job, m ? ": " : "", m ? m : "");
		return cli_fail(c, QD_CLI_EXIT_CANCELED);
	}
	cli_set(c, 0, "job %s failed: %s: %s", job, code ? code : "INTERNAL", m ? m : "(no message)");
	return cli_fail(c, QD_CLI_EXIT_FAILED);
}

/* Local checks of the workflow (the daemon's own), before any upload. */
static int check_workflow(struct cli *c, const json_t *wf, const char *config, const struct cli_args *a)
{
	json_t *w = json_deep_copy(wf);
	struct qd_err e = { 0 };
	int rc = 0;
	if (!w)
		return cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
	json_object_del(w, "model");
	for (int i = 0; i < a->n_data && !rc; i++) {
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)(strchr(a->data[i], '=') - a->data[i]), a->data[i]);
		rc = bind_data(c, w, name, "dst_0000000000000000");
	}
	json_t *problems = NULL;
	if (!rc && qd_workflow_check(w, QD_WF_CHECK_MODEL_BOUND, &problems, NULL, &e)) {
		rc = cli_set(c, QD_CLI_EXIT_USAGE, "workflow '%s' is invalid (nothing was uploaded): %s%s%s%s", config,
			     e.msg, e.field[0] ? " (field " : "", e.field, e.field[0] ? ")" : "");
		append_problems(c, problems);
	}
	json_decref(problems);
	json_decref(w);
	return rc;
}

static int cmd_submit(struct cli *c, struct cli_args *a)
{
	json_t *wf = NULL, *ans = NULL, *fin = NULL;
	char *raw = NULL, *fin_raw = NULL;
	int rc;
	if (!a->model || !a->config) {
		cli_set(c, 0, "--model and --config are required");
		return cli_fail(c, QD_CLI_EXIT_USAGE);
	}
	for (int i = 0; i < a->n_data; i++) {
		const char *eq = strchr(a->data[i], '=');
		if (!eq || eq == a->data[i] || !eq[1] || eq - a->data[i] > 100) {
			cli_set(c, 0, "bad --data '%s' (want NAME=PATH)", a->data[i]);
			return cli_fail(c, QD_CLI_EXIT_USAGE);
		}
	}
	if (a->output)
		a->wait = true;
	json_error_t je;
	if (!(wf = json_load_file(a->config, JSON_REJECT_DUPLICATES, &je))) {
		cli_set(c, 0, "cannot read workflow '%s': %s (line %d, column %d)", a->config, je.text, je.line, je.column);
		return cli_fail(c, QD_CLI_EXIT_USAGE);
	}
	if (!json_is_object(wf)) {
		rc = cli_set(c, QD_CLI_EXIT_USAGE, "workflow '%s' must be a JSON object", a->config);
		goto out;
	}
	if (access(a->model, R_OK)) {
		rc = cli_set(c, QD_CLI_EXIT_USAGE, "cannot open model '%s': %s", a->model, strerror(errno));
		goto out;
	}
	qd_workflow_bind_datasets(wf);   /* Olive's "datasets": {"<data config>": "<id>"}, as the server does */
	if ((rc = check_workflow(c, wf, a->config, a)))
		goto out;
	/* datasets first: one the server refuses costs no model upload */
	for (int i = 0; i < a->n_data; i++) {
		const char *eq = strchr(a->data[i], '=');
		char name[128], id[64];
		snprintf(name, sizeof name, "%.*s", (int)(eq - a->data[i]), a->data[i]);
		if ((rc = ensure_blob(c, "dataset", "/v1/datasets", eq + 1, id)) || (rc = bind_data(c, wf, name, id)))
			goto out;
		ui_note(c, "data config '%s' -> dataset %s", name, id);
	}
	char mid[64];
	struct stat msb;
	if (stat(a->model, &msb) == 0 && S_ISDIR(msb.st_mode)) {
		/* a folder (the .onnx and its external data): uploaded as a tar */
		char tmpl[] = "/tmp/quantd-submit-XXXXXX", *tar = NULL;
		if (!mkdtemp(tmpl)) {
			rc = cli_set(c, QD_CLI_EXIT_SERVER, "cannot make a temporary directory: %s", strerror(errno));
			goto out;
		}
		ui_note(c, "packing model folder '%s' into a tar", a->model);
		rc = tar_folder(c, a->model, tmpl, &tar);
		if (!rc)
			rc = ensure_blob(c, "model", "/v1/models", tar, mid);
		if (tar)
			unlink(tar);
		free(tar);
		rmdir(tmpl);
	} else
		rc = ensure_blob(c, "model", "/v1/models", a->model, mid);
	if (rc)
		goto out;
	json_object_set_new(wf, "model", json_string(mid));
	/* a full queue answers 429 with Retry-After: wait and try again a few times */
	long status = 0;
	for (int attempt = 0;; attempt++) {
		rc = api_json(c, "POST", "/v1/jobs", wf, &status, &ans, &raw);
		if (!(rc && status == 429 && attempt < 5))
			break;
		ui_note(c, "the server's queue is full: trying again in a moment");
		nap(5.0);
	}
	if (rc)
		goto out;
	const char *job = json_string_value(json_object_get(ans, "id"));
	if (!job) {
		rc = cli_set(c, QD_CLI_EXIT_SERVER, "POST /v1/jobs: the answer lacks the job's id");
		goto out;
	}
	ui_note(c, "submitted job %s (model %s)", job, mid);
	if (!a->wait) {
		if (c->json)
			print_raw(raw);
		else
			printf("%s\n", job);
		goto out;
	}
	double t0 = qd_now_mono();
	if ((rc = wait_job(c, job, a->logs, &fin, &fin_raw)))
		goto out;
	const char *state = json_string_value(json_object_get(fin, "state"));
	if (strcmp(state, "succeeded")) {
		if (!a->logs && !c->quiet)
			print_log_tail(c, job, 15);
		if (c->json)
			print_raw(fin_raw);
		rc = job_outcome(c, fin, job);
		goto done;
	}
	uint64_t total = 0;
	if (a->output) {
		if ((rc = download_artifacts(c, fin, a->output, &total)))
			goto out;
		struct qd_err e = { 0 };
		char *jp = qd_asprintf("%s/job.json", a->output);
		char *txt = json_dumps(fin, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (!jp || !txt || qd_file_write_atomic(jp, txt, strlen(txt), &e))
			ui_note(c, "warning: cannot write %s/job.json: %s", a->output, e.msg);
		free(jp);
		free(txt);
	}
	const json_t *res = json_object_get(fin, "result");
	const json_t *size = json_object_get(res, "size"), *acc = json_object_get(res, "accuracy");
	char what[256] = "";
	if (json_is_object(size))
		snprintf(what, sizeof what, ": %lld -> %lld bytes (ratio %.3f)",
			 (long long)json_integer_value(json_object_get(size, "float_bytes")),
			 (long long)json_integer_value(json_object_get(size, "quantized_bytes")),
			 json_number_value(json_object_get(size, "ratio")));
	if (json_is_number(json_object_get(acc, "min_cosine"))) {
		size_t n = strlen(what);
		snprintf(what + n, sizeof what - n, ", min cosine vs float %.6f",
			 json_number_value(json_object_get(acc, "min_cosine")));
	}
	ui_note(c, "job %s succeeded in %.1f s%s", job, qd_now_mono() - t0, what);
	if (a->output)
		ui_note(c, "%zu artifacts (%llu bytes) in %s", json_array_size(json_object_get(fin, "artifacts")),
			(unsigned long long)total, a->output);
	if (c->json)
		print_raw(fin_raw);
	else
		printf("%s\n", job);
	goto done;
out:
	if (rc)
		rc = cli_fail(c, rc);
done:
	json_decref(wf);
	json_decref(ans);
	json_decref(fin);
	free(raw);
	free(fin_raw);
	return rc;
}

/* ---- jobs, status, logs, cancel ---- */

static bool valid_id(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 63)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

static int cmd_jobs(struct cli *c, struct cli_args *a)
{
	struct qd_buf q = { 0 };
	json_t *j = NULL;
	char *raw = NULL, *st = a->state ? url_escape(c, a->state) : NULL;
	qd_buf_printf(&q, "/v1/jobs?limit=%s", a->limit ? a->limit : "50");
	if (st)
		qd_buf_printf(&q, "&state=%s", st);
	free(st);
	if (a->limit && (strspn(a->limit, "0123456789") != strlen(a->limit) || !*a->limit)) {
		cli_set(c, 0, "bad --limit '%s' (want an integer)", a->limit);
		qd_buf_free(&q);
		return cli_fail(c, QD_CLI_EXIT_USAGE);
	}
	int rc = q.data ? api_json(c, "GET", (const char *)q.data, NULL, NULL, &j, &raw)
			: cli_set(c, QD_CLI_EXIT_SERVER, "out of memory");
	qd_buf_free(&q);
	if (rc)
		return cli_fail(c, rc);
	if (c->json)
		print_raw(raw);
	else {
		printf("%-22s %-10s %5s  %-24s %-22s %s\n", "JOB", "STATE", "PROG", "CREATED", "MODEL", "ERROR / MESSAGE");
		size_t i;
		json_t *it;
		json_array_foreach(json_object_get(j, "items"), i, it) {
			const json_t *e = json_object_get(it, "error");
			const char *m = json_string_value(json_object_get(it, "progress_message"));
			char em[200];
			if (json_is_object(e))
				snprintf(em, sizeof em, "%s: %s", json_string_value(json_object_get(e, "code")) ?: "",
					 json_string_value(json_object_get(e, "message")) ?: "");
			else
				snprintf(em, sizeof em, "%s", m ? m : "");
			printf("%-22s %-10s %4d%%  %-24s %-22s %s\n", json_string_value(json_object_get(it, "id")) ?: "",
			       json_string_value(json_object_get(it, "state")) ?: "",
			       (int)(json_number_value(json_object_get(it, "progress")) * 100.0 + 0.5),
			       json_string_value(json_object_get(it, "created_at")) ?: "",
			       json_string_value(json_object_get(it, "model")) ?: "-", em);
		}
		if (!json_is_null(json_object_get(j, "next_cursor")) && json_object_get(j, "next_cursor"))
			ui_note(c, "(more jobs: raise --limit)");
	}
	json_decref(j);
	free(raw);
	return 0;
}

static int cmd_status(struct cli *c, struct cli_args *a)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/jobs/%s", a->job);
	json_t *j;
	char *raw;
	int rc = api_json(c, "GET", path, NULL, NULL, &j, &raw);
	if (rc)
		return cli_fail(c, rc);
	if (c->json) {
		print_raw(raw);
		goto out;
	}
#define S(k) (json_string_value(json_object_get(j, k)) ?: "-")
	printf("job:        %s\n", S("id"));
	printf("state:      %s (%d%%)%s%s%s\n", S("state"),
	       (int)(json_number_value(json_object_get(j, "progress")) * 100.0 + 0.5),
	       json_is_true(json_object_get(j, "cancel_requested")) ? ", cancel requested" : "",
	       json_string_value(json_object_get(j, "progress_message")) ? ": " : "",
	       json_string_value(json_object_get(j, "progress_message")) ?: "");
	printf("model:      %s\n", S("model"));
	printf("attempts:   %lld of %lld\n", (long long)json_integer_value(json_object_get(j, "attempts")),
	       (long long)json_integer_value(json_object_get(j, "max_attempts")));
	printf("created:    %s\nstarted:    %s\nfinished:   %s\n", S("created_at"), S("started_at"), S("finished_at"));
#undef S
	const json_t *e = json_object_get(j, "error");
	if (json_is_object(e))
		printf("error:      %s: %s\n", json_string_value(json_object_get(e, "code")) ?: "",
		       json_string_value(json_object_get(e, "message")) ?: "");
	const json_t *res = json_object_get(j, "result");
	const json_t *size = json_object_get(res, "size"), *acc = json_object_get(res, "accuracy");
	if (json_is_object(size))
		printf("size:       %lld -> %lld bytes (ratio %.3f)\n",
		       (long long)json_integer_value(json_object_get(size, "float_bytes")),
		       (long long)json_integer_value(json_object_get(size, "quantized_bytes")),
		       json_number_value(json_object_get(size, "ratio")));
	if (json_is_number(json_object_get(acc, "min_cosine")))
		printf("accuracy:   min cosine vs float %.6f\n", json_number_value(json_object_get(acc, "min_cosine")));
	size_t i;
	json_t *art;
	json_array_foreach(json_object_get(j, "artifacts"), i, art)
		printf("artifact:   %-10s %-20s %10lld bytes  sha256 %s  %s\n",
		       json_string_value(json_object_get(art, "kind")) ?: "",
		       json_string_value(json_object_get(art, "name")) ?: "-",
		       (long long)json_integer_value(json_object_get(art, "size")),
		       json_string_value(json_object_get(art, "sha256")) ?: "",
		       json_string_value(json_object_get(art, "url")) ?: "");
out:
	json_decref(j);
	free(raw);
	return 0;
}

/* Log lines on stdout: "time level line"; --json: the server's pages, one per line. */
static int cmd_logs(struct cli *c, struct cli_args *a)
{
	int64_t after = 0;
	for (;;) {
		char path[160];
		snprintf(path, sizeof path, "/v1/jobs/%s/log?after=%lld", a->job, (long long)after);
		json_t *page;
		char *raw;
		int rc = a->follow ? api_json_retry(c, path, &page, &raw) : api_json(c, "GET", path, NULL, NULL, &page, &raw);
		if (rc)
			return cli_fail(c, rc);
		if (c->json)
			print_raw(raw);
		else {
			size_t i;
			json_t *l;
			json_array_foreach(json_object_get(page, "lines"), i, l) {
				char ts[32];
				qd_time_iso8601(json_number_value(json_object_get(l, "ts")), ts);
				printf("%s %-5s %s\n", ts, json_string_value(json_object_get(l, "level")) ?: "",
				       json_string_value(json_object_get(l, "line")) ?: "");
			}
			fflush(stdout);
		}
		int64_t next = json_integer_value(json_object_get(page, "next_after"));
		bool more = json_is_true(json_object_get(page, "more"));
		bool done = state_final(json_string_value(json_object_get(page, "state")));
		json_decref(page);
		free(raw);
		if (next > after)
			after = next;
		if (more)
			continue;
		if (!a->follow || done)
			return 0;
		nap(c->poll);
	}
}

static int cmd_cancel(struct cli *c, struct cli_args *a)
{
	char path[160];
	snprintf(path, sizeof path, "/v1/jobs/%s/cancel", a->job);
	json_t *j, *fin = NULL;
	char *raw, *fin_raw = NULL;
	long status = 0;
	int rc = api_json(c, "POST", path, NULL, &status, &j, &raw);
	if (rc)
		return cli_fail(c, rc);
	const char *state = json_string_value(json_object_get(j, "state")) ?: "?";
	if (status == 202)
		ui_note(c, "job %s: cancel requested (the job's process is being stopped)", a->job);
	else
		ui_note(c, "job %s is %s", a->job, state);
	if (a->wait && !(rc = wait_job(c, a->job, false, &fin, &fin_raw)))
		ui_note(c, "job %s is %s", a->job, json_string_value(json_object_get(fin, "state")) ?: "?");
	if (!rc && c->json)
		print_raw(fin_raw ? fin_raw : raw);
	json_decref(j);
	json_decref(fin);
	free(raw);
	free(fin_raw);
	return rc ? cli_fail(c, rc) : 0;
}

/* One line per trial: "N STATUS GOALS SECONDS PARETO values params" (every page); the
 * search's progress on stderr. --json: the server's pages, one per line. */
static int cmd_trials(struct cli *c, struct cli_args *a)
{
	char *cursor = NULL;
	bool header = false;
	for (;;) {
		char path[256];
		snprintf(path, sizeof path, "/v1/jobs/%s/trials?limit=1000%s%s", a->job, cursor ? "&cursor=" : "",
			 cursor ? cursor : "");
		free(cursor);
		cursor = NULL;
		json_t *page;
		char *raw;
		int rc = api_json(c, "GET", path, NULL, NULL, &page, &raw);
		if (rc)
			return cli_fail(c, rc);
		if (c->json)
			print_raw(raw);
		else if (!json_is_true(json_object_get(page, "search")))
			ui_note(c, "job %s: %s", a->job, json_string_value(json_object_get(page, "reason")) ?: "no search");
		else {
			size_t i;
			json_t *t;
			if (!header)
				printf("%5s %-6s %-6s %8s %-6s %s\n", "TRIAL", "STATUS", "GOALS", "SECONDS", "PARETO",
				       "VALUES / ERROR  PARAMS");
			header = true;
			json_array_foreach(json_object_get(page, "items"), i, t) {
				char *vals = json_dumps(json_object_get(t, "values"), JSON_COMPACT | JSON_SORT_KEYS |
							JSON_ENCODE_ANY);
				char *params = json_dumps(json_object_get(t, "params"), JSON_COMPACT | JSON_SORT_KEYS);
				const char *err = json_string_value(json_object_get(t, "error"));
				printf("%5lld %-6s %-6s %8.2f %-6s %s  %s\n", (long long)json_integer_value(json_object_get(t, "trial")),
				       json_string_value(json_object_get(t, "status")) ?: "",
				       json_is_true(json_object_get(t, "goals_met")) ? "met" : "missed",
				       json_number_value(json_object_get(t, "seconds")),
				       json_is_true(json_object_get(t, "pareto")) ? "yes" : "-", err ? err : vals ? vals : "",
				       params ? params : "");
				free(vals);
				free(params);
			}
			const json_t *pr = json_object_get(page, "progress"), *best = json_object_get(pr, "best");
			if (json_is_object(pr) && !json_string_value(json_object_get(page, "next_cursor")))
				ui_note(c, "search %s: %lld of %lld trials done; best so far: %s%lld (goals %s)",
					json_is_true(json_object_get(pr, "finished")) ? "finished" : "running",
					(long long)json_integer_value(json_object_get(pr, "trials_done")),
					(long long)json_integer_value(json_object_get(pr, "trials_planned")),
					json_is_object(best) ? "trial " : "none", (long long)json_integer_value(json_object_get(best, "trial")),
					json_is_true(json_object_get(best, "goals_met")) ? "met" : "missed");
		}
		const char *next = json_string_value(json_object_get(page, "next_cursor"));
		cursor = next && *next ? url_escape(c, next) : NULL;
		json_decref(page);
		free(raw);
		if (!cursor)
			return 0;
	}
}

/* ---- entry ---- */

bool qd_client_command(const char *cmd)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(cli_cmds); i++)
		if (!strcmp(cmd, cli_cmds[i].name))
			return true;
	return false;
}

/* The first line of a token file, trimmed (new). */
static char *read_token_file(struct cli *c, const char *path)
{
	struct qd_buf b = { 0 };
	struct qd_err e = { 0 };
	if (qd_file_read(path, &b, &e)) {
		cli_set(c, 0, "cannot read token file '%s': %s", path, e.msg);
		return NULL;
	}
	size_t n = 0;
	while (n < b.len && b.data[n] != '\n' && b.data[n] != '\r')
		n++;
	while (n && (b.data[n - 1] == ' ' || b.data[n - 1] == '\t'))
		n--;
	char *t = strndup((const char *)b.data, n);
	qd_buf_free(&b);
	if (t && !*t) {
		cli_set(c, 0, "token file '%s' is empty", path);
		free(t);
		return NULL;
	}
	return t;
}

int qd_cmd_client(int argc, char **argv)
{
	const struct cli_cmd *cmd = NULL;
	for (size_t i = 0; i < QD_ARRAY_LEN(cli_cmds); i++)
		if (!strcmp(argv[0], cli_cmds[i].name))
			cmd = &cli_cmds[i];
	if (!cmd)
		return QD_CLI_EXIT_USAGE;
	struct cli_args a = { 0 };
	struct cli c = { .cmd = cmd->name, .poll = 1.0, .connect_timeout = 10 };
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (arg[0] != '-' || !arg[1]) {
			if (a.job || !(cmd->bit & C_JOB_ARG)) {
				fprintf(stderr, "quantd %s: unexpected argument '%s'\n", cmd->name, arg);
				cli_usage(stderr, cmd);
				return QD_CLI_EXIT_USAGE;
			}
			a.job = arg;
			continue;
		}
		if (!strcmp(arg, "-h"))
			arg = "--help";
		else if (!strcmp(arg, "-q"))
			arg = "--quiet";
		const struct cli_opt *o = NULL;
		const char *val = NULL;
		size_t fl = strcspn(arg, "=");
		for (size_t k = 0; k < QD_ARRAY_LEN(cli_opts); k++)
			if (strlen(cli_opts[k].flag) == fl && !strncmp(arg, cli_opts[k].flag, fl))
				o = &cli_opts[k];
		if (!o || !(o->cmds & cmd->bit)) {
			fprintf(stderr, "quantd %s: unknown option '%.*s'\n", cmd->name, (int)fl, arg);
			cli_usage(stderr, cmd);
			return QD_CLI_EXIT_USAGE;
		}
		if (o->arg) {
			if (arg[fl] == '=')
				val = arg + fl + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else {
				fprintf(stderr, "quantd %s: option '%s' needs a value\n", cmd->name, o->flag);
				return QD_CLI_EXIT_USAGE;
			}
			if (o->off == offsetof(struct cli_args, data)) {
				if (a.n_data == MAX_DATA) {
					fprintf(stderr, "quantd %s: at most %d --data options\n", cmd->name, MAX_DATA);
					return QD_CLI_EXIT_USAGE;
				}
				a.data[a.n_data++] = val;
			} else
				*(const char **)((char *)&a + o->off) = val;
		} else if (arg[fl] == '=') {
			fprintf(stderr, "quantd %s: option '%s' takes no value\n", cmd->name, o->flag);
			return QD_CLI_EXIT_USAGE;
		} else
			*(bool *)((char *)&a + o->off) = true;
	}
	if (a.help) {
		cli_usage(stdout, cmd);
		return 0;
	}
	if ((cmd->bit & C_JOB_ARG) && (!a.job || !valid_id(a.job))) {
		fprintf(stderr, "quantd %s: %s\n", cmd->name, a.job ? "invalid job id" : "which job? (give its id)");
		cli_usage(stderr, cmd);
		return QD_CLI_EXIT_USAGE;
	}
	/* a peer closing a TLS connection, or stdout piped into head, is an error, not a kill */
	signal(SIGPIPE, SIG_IGN);
	c.json = a.json;
	c.quiet = a.quiet;
	c.tty = isatty(2);
	if (a.poll) {
		char *end;
		c.poll = strtod(a.poll, &end);
		if (*end || !(c.poll >= 0.05 && c.poll <= 3600)) {
			fprintf(stderr, "quantd %s: bad --poll '%s' (seconds, 0.05..3600)\n", cmd->name, a.poll);
			return QD_CLI_EXIT_USAGE;
		}
	}
	if (a.connect_timeout) {
		char *end;
		c.connect_timeout = strtol(a.connect_timeout, &end, 10);
		if (*end || c.connect_timeout < 1 || c.connect_timeout > 3600) {
			fprintf(stderr, "quantd %s: bad --connect-timeout '%s' (seconds)\n", cmd->name, a.connect_timeout);
			return QD_CLI_EXIT_USAGE;
		}
	}
	/* server and token: flags, then the environment */
	const char *srv = a.server ? a.server : getenv("QUANTD_SERVER");
	if (!srv || !*srv)
		srv = "http://127.0.0.1:8080";
	c.server = strstr(srv, "://") ? qd_strdup(srv) : qd_asprintf("http://%s", srv);
	if (!c.server)
		return QD_CLI_EXIT_SERVER;
	for (size_t n = strlen(c.server); n && c.server[n - 1] == '/'; n--)
		c.server[n - 1] = 0;
	const char *tf = a.token_file ? a.token_file : NULL;
	int rc = 0;
	if (a.token && *a.token) {
		c.token = qd_strdup(a.token);
		c.token_from = "--token";
	} else if (tf || (!getenv("QUANTD_TOKEN") && (tf = getenv("QUANTD_TOKEN_FILE")) && *tf)) {
		if (!(c.token = read_token_file(&c, tf))) {
			rc = cli_fail(&c, QD_CLI_EXIT_USAGE);
			goto out;
		}
		c.token_from = a.token_file ? "--token-file" : "QUANTD_TOKEN_FILE";
	} else if (getenv("QUANTD_TOKEN") && *getenv("QUANTD_TOKEN")) {
		c.token = qd_strdup(getenv("QUANTD_TOKEN"));
		c.token_from = "QUANTD_TOKEN";
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(c.h = curl_easy_init())) {
		cli_set(&c, 0, "cannot initialise libcurl");
		rc = cli_fail(&c, QD_CLI_EXIT_SERVER);
		goto out;
	}
	switch (cmd->bit) {
	case C_SUBMIT: rc = cmd_submit(&c, &a); break;
	case C_JOBS:   rc = cmd_jobs(&c, &a); break;
	case C_STATUS: rc = cmd_status(&c, &a); break;
	case C_LOGS:   rc = cmd_logs(&c, &a); break;
	case C_CANCEL: rc = cmd_cancel(&c, &a); break;
	case C_TRIALS: rc = cmd_trials(&c, &a); break;
	}
	curl_easy_cleanup(c.h);
	curl_global_cleanup();
out:
	free(c.server);
	free(c.token);
	return rc;
}
#endif /* QD_NO_CURL */
