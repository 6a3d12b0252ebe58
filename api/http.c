/* libmicrohttpd glue: start/stop, route matching over api/routes.def, bearer-token auth,
 * request bodies (JSON buffered with a cap, uploads streamed into the blob store), and the
 * response helpers handlers use (JSON, errors, paging, blob downloads with ETag/Range).
 *
 * DESIGN
 * - Threading: MHD's internal thread pool (--http-threads threads) with poll(); each thread
 *   serves its share of up to --max-connections connections, so a thousand idle or slow
 *   clients cost sockets and buffers, not threads. Handlers are short (SQLite reads and
 *   row writes with busy_timeout). The one long handler, the end of an upload (fsync of
 *   the blob, parsing a large model to validate it, the row insert), is offloaded: the
 *   connection is suspended, the handler runs on a thread of its own and resumes the
 *   connection with the answer, so it never stalls the other connections of its HTTP
 *   thread. Idle connections close after --conn-timeout. Jobs never run here.
 * - Slow bodies: a request body must arrive within --upload-timeout seconds plus one
 *   second per --upload-min-rate bytes received (Apache mod_reqtimeout's rule). Past that
 *   the 408 is written to the socket at once and the connection closed (MHD cannot queue
 *   an answer before the body's end); the connection's idle timeout is cut to the time
 *   left, so a client that stops sending gets the same 408 at MHD's timeout.
 * - A full disk during an upload (ENOSPC) aborts the blob writer at once (the temp file
 *   goes, the rest of the body is discarded) and answers 507 NO_SPACE.
 * - A full queue is 429 with Retry-After (the mean run time of finished jobs over the
 *   number of workers, 1..300 s; 5 s before any job finished).
 * - Request lifetime: the first access-handler call (headers only) matches the route,
 *   checks auth and Content-Length and may answer at once (401/404/405/413); body chunks
 *   are consumed as they come; the last call runs the handler. The completion callback
 *   frees everything (aborting a half-written upload, returning the store connection).
 */
#define _GNU_SOURCE
#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

const struct qd_route qd_routes[QD_ROUTE__COUNT] = {
#define QD_ROUTE(method, pattern, fn, flags) { #method, pattern, fn, flags },
#include "api/routes.def"
#undef QD_ROUTE
};

struct qd_api {
	struct MHD_Daemon *mhd;
	bool ipv6;
	unsigned char token_hash[32];
	bool has_token;
	pthread_mutex_t mu;         /* guards offloads */
	pthread_cond_t idle;        /* offloads reached 0 */
	int offloads;               /* upload handlers running on their own thread */
};

/* ---- routing ---- */

static bool id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* Does path match pattern? Copies the {id} segment into id. */
static bool route_match_path(const char *pattern, const char *path, char id[64])
{
	const char *p = pattern, *u = path;
	while (*p && *u) {
		if (*p == '{') {
			const char *pe = strchr(p, '}');
			size_t n = 0;
			while (u[n] && u[n] != '/')
				n++;
			if (!n || n >= 64)
				return false;
			for (size_t i = 0; i < n; i++)
				if (!id_char(u[i]))
					return false;
			memcpy(id, u, n);
			id[n] = 0;
			u += n;
			p = pe + 1;
			continue;
		}
		if (*p != *u)
			return false;
		p++, u++;
	}
	/* tolerate one trailing slash */
	if (!*p && u[0] == '/' && !u[1])
		return true;
	return !*p && !*u;
}

int qd_api_route_lookup(const char *method, const char *path, char id[64], char *allow,
			size_t allow_sz)
{
	bool path_hit = false;
	const char *m = !strcmp(method, "HEAD") ? "GET" : method;
	if (allow_sz)
		allow[0] = 0;
	for (int i = 0; i < QD_ROUTE__COUNT; i++) {
		char seg[64] = "";
		if (!route_match_path(qd_routes[i].pattern, path, seg))
			continue;
		if (!strcmp(qd_routes[i].method, m)) {
			memcpy(id, seg, sizeof seg);
			return i;
		}
		path_hit = true;
		size_t used = strlen(allow);
		if (allow_sz && used + strlen(qd_routes[i].method) + 3 < allow_sz)
			snprintf(allow + used, allow_sz - used, "%s%s", used ? ", " : "", qd_routes[i].method);
	}
	return path_hit ? -QD_EMETHOD : -QD_ENOT_FOUND;
}

static int route_find(struct qd_req *r)
{
	char allow[64];
	int rc = qd_api_route_lookup(r->method, r->url, r->id, allow, sizeof allow);
	if (rc >= 0) {
		r->route = rc;
		return 0;
	}
	r->route = QD_ROUTE_UNMATCHED;
	if (rc == -QD_EMETHOD) {
		qd_err_set(&r->err, QD_EMETHOD, "method", "method '%s' not allowed on '%s' (allowed: %s)",
			   r->method, r->url, allow);
		qd_req_error(r, &r->err);
		qd_req_add_header(r, MHD_HTTP_HEADER_ALLOW, allow);
		return rc;
	}
	qd_err_set(&r->err, QD_ENOT_FOUND, "path", "no route for '%s %s'", r->method, r->url);
	qd_req_error(r, &r->err);
	return rc;
}

/* ---- auth ---- */

static bool auth_ok(struct qd_api *a, struct qd_req *r)
{
	const char *h = qd_req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	/* compare fixed-size digests so neither the length nor a prefix leaks through timing */
	char hex[65];
	qd_sha256_hex(h, strlen(h), hex);
	unsigned char got[32];
	for (int i = 0; i < 32; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		got[i] = (unsigned char)v;
	}
	volatile unsigned char diff = 0;
	for (int i = 0; i < 32; i++)
		diff |= got[i] ^ a->token_hash[i];
	return diff == 0;
}

/* ---- response helpers ---- */

static void set_resp(struct qd_req *r, unsigned status, struct MHD_Response *resp)
{
	if (r->resp)
		MHD_destroy_response(r->resp);
	r->resp = resp;
	r->status = status;
}

int qd_req_text(struct qd_req *r, unsigned status, const char *content_type, const char *text,
		size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return qd_err_set(&r->err, QD_ENOMEM, "", "cannot create response");
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	set_resp(r, status, resp);
	return 0;
}

int qd_req_static(struct qd_req *r, unsigned status, const char *content_type, const void *data,
		  size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return qd_err_set(&r->err, QD_ENOMEM, "", "cannot create response");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	set_resp(r, status, resp);
	return 0;
}

int qd_req_empty(struct qd_req *r, unsigned status)
{
	return qd_req_text(r, status, NULL, "", 0);
}

int qd_req_json(struct qd_req *r, unsigned status, json_t *body)
{
	if (!body)
		return qd_err_set(&r->err, QD_ENOMEM, "", "out of memory rendering the response");
	char *s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!s)
		return qd_err_set(&r->err, QD_ENOMEM, "", "out of memory rendering the response");
	size_t n = strlen(s);
	s[n] = 0;
	/* append a newline for curl users: realloc s */
	char *t = realloc(s, n + 2);
	if (t) {
		t[n] = '\n';
		t[n + 1] = 0;
		n++;
		s = t;
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(s);
		return qd_err_set(&r->err, QD_ENOMEM, "", "cannot create response");
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	set_resp(r, status, resp);
	return 0;
}

void qd_req_add_header(struct qd_req *r, const char *name, const char *value)
{
	if (r->resp)
		MHD_add_response_header(r->resp, name, value);
}

/* Seconds a client should wait after a 429: the mean run time of finished jobs divided
 * by the number of workers (one of them frees a queue slot in about that time). */
static long retry_after_seconds(struct qd_daemon *d)
{
	double sum = 0;
	uint64_t n = 0;
	pthread_mutex_lock(&d->metrics.mu);
	for (int i = 0; i < QD_JOB__COUNT; i++) {
		sum += d->metrics.dur_sum[i];
		n += d->metrics.dur_count[i];
	}
	pthread_mutex_unlock(&d->metrics.mu);
	if (!n)
		return 5;
	double s = ceil(sum / (double)n / (double)QD_MAX(d->cfg.workers, 1));
	return s < 1 ? 1 : s > 300 ? 300 : (long)s;
}

int qd_req_error(struct qd_req *r, const struct qd_err *e)
{
	int code = e->code ? e->code : QD_EINTERNAL;
	json_t *details = json_object();
	long retry = code == QD_EQUEUE_FULL ? retry_after_seconds(r->d) : 0;
	if (e->field[0])
		json_object_set_new(details, "field", json_string(e->field));
	if (retry)
		json_object_set_new(details, "retry_after_seconds", json_integer(retry));
	if (r->err_problems)
		json_object_set(details, "problems", r->err_problems);
	json_t *body = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", qd_err_name(code),
				 "message", e->msg[0] ? e->msg : qd_err_msg(code), "details", details);
	unsigned status = (unsigned)qd_err_http(code);
	if (status < 400)
		status = 500;
	int rc = qd_req_json(r, status, body);
	if (!rc && code == QD_EAUTH)
		qd_req_add_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"quantd\"");
	if (!rc && retry) {
		char v[24];
		snprintf(v, sizeof v, "%ld", retry);
		qd_req_add_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
	}
	return rc;
}

const char *qd_req_query(struct qd_req *r, const char *key)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *qd_req_header(struct qd_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct qd_store_conn *qd_req_store(struct qd_req *r)
{
	if (!r->sc)
		r->sc = qd_daemon_conn_get(r->d, &r->err);
	return r->sc;
}

static int parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return -1;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

int qd_req_page(struct qd_req *r, struct qd_page *pg)
{
	memset(pg, 0, sizeof *pg);
	const char *l = qd_req_query(r, "limit");
	if (l) {
		uint64_t v;
		if (parse_u64(l, &v) || v < 1 || v > 1000)
			return qd_err_set(&r->err, QD_EINVAL, "limit",
					  "invalid 'limit' '%s' (want an integer in 1..1000)", l);
		pg->limit = (int)v;
	} else
		pg->limit = 50;
	pg->cursor = qd_req_query(r, "cursor");
	return 0;
}

static void url_escape(struct qd_buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (id_char((char)c) || c == '~')
			qd_buf_append(b, s, 1);
		else
			qd_buf_printf(b, "%%%02X", c);
	}
}

int qd_req_list(struct qd_req *r, json_t *items, const struct qd_page *pg, const char *extra_query)
{
	return qd_req_list_with(r, items, pg, extra_query, NULL);
}

int qd_req_list_with(struct qd_req *r, json_t *items, const struct qd_page *pg, const char *extra_query,
		     json_t *fields)
{
	json_t *body = fields ? fields : json_object();
	if (!body || !items) {
		json_decref(body);
		json_decref(items);
		return qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
	}
	json_object_set_new(body, "items", items);
	if (pg && pg->next_cursor[0]) {
		struct qd_buf b = { 0 };
		qd_buf_printf(&b, "%s?limit=%d&cursor=", r->url, pg->limit);
		url_escape(&b, pg->next_cursor);
		if (extra_query && *extra_query)
			qd_buf_printf(&b, "&%s", extra_query);
		json_object_set_new(body, "next_cursor", json_string(pg->next_cursor));
		json_object_set_new(body, "next", json_string(b.data ? (char *)b.data : ""));
		qd_buf_free(&b);
	} else {
		json_object_set_new(body, "next_cursor", json_null());
		json_object_set_new(body, "next", json_null());
	}
	return qd_req_json(r, 200, body);
}

/* If-None-Match holds our ETag (or "*")? */
bool qd_api_etag_match(const char *inm, const char *sha)
{
	if (!inm)
		return false;
	for (const char *p = inm; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		if (*p == '*')
			return true;
		if (!strncmp(p, "W/", 2))
			p += 2;
		const char *e = p;
		while (*e && *e != ',')
			e++;
		const char *s = p, *t = e;
		while (t > s && t[-1] == ' ')
			t--;
		if (t - s >= 2 && *s == '"' && t[-1] == '"')
			s++, t--;
		if ((size_t)(t - s) == strlen(sha) && !strncmp(s, sha, (size_t)(t - s)))
			return true;
		p = e;
	}
	return false;
}

/* "bytes=a-b" / "bytes=a-" / "bytes=-n" → [*start, *end] inclusive. 0 ok, -1 bad/unsatisfiable. */
int qd_api_parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *end)
{
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "bytes=", 6))
		return -1;
	h += 6;
	if (strchr(h, ','))
		return -1;     /* multiple ranges are not supported */
	const char *dash = strchr(h, '-');
	if (!dash)
		return -1;
	char a[32] = "", b[32] = "";
	size_t al = (size_t)(dash - h), bl = strlen(dash + 1);
	if (al >= sizeof a || bl >= sizeof b)
		return -1;
	memcpy(a, h, al);
	memcpy(b, dash + 1, bl);
	uint64_t va, vb;
	if (!al) {
		if (parse_u64(b, &vb) || vb == 0 || size == 0)
			return -1;
		*start = vb >= size ? 0 : size - vb;
		*end = size - 1;
		return 0;
	}
	if (parse_u64(a, &va) || va >= size)
		return -1;
	if (!bl)
		vb = size - 1;
	else if (parse_u64(b, &vb) || vb < va)
		return -1;
	*start = va;
	*end = vb >= size ? size - 1 : vb;
	return 0;
}

int qd_req_send_blob(struct qd_req *r, const char *sha256, const char *content_type,
		     const char *filename)
{
	struct qd_store *st = r->d->store;
	size_t pmax = qd_blob_path_max(st);
	char *path = malloc(pmax);
	char etag[80], buf[128];
	int rc = 0, fd = -1;
	if (!path)
		return qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
	if ((rc = qd_blob_path(st, sha256, path, pmax, &r->err)))
		goto out;
	snprintf(etag, sizeof etag, "\"%s\"", sha256);
	if (qd_api_etag_match(qd_req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH), sha256)) {
		qd_req_empty(r, MHD_HTTP_NOT_MODIFIED);
		qd_req_add_header(r, MHD_HTTP_HEADER_ETAG, etag);
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		rc = qd_err_set(&r->err, QD_EIO, "", "cannot open blob '%s': %s", sha256, strerror(errno));
		goto out;
	}
	uint64_t size = (uint64_t)sb.st_size, start = 0, end = size ? size - 1 : 0;
	unsigned status = 200;
	const char *range = qd_req_header(r, MHD_HTTP_HEADER_RANGE);
	const char *if_range = qd_req_header(r, MHD_HTTP_HEADER_IF_RANGE);
	if (range && (!if_range || qd_api_etag_match(if_range, sha256))) {
		if (qd_api_parse_range(range, size, &start, &end)) {
			rc = qd_err_set(&r->err, QD_ERANGE, "Range", "range '%s' not satisfiable for %llu bytes",
					range, (unsigned long long)size);
			qd_req_error(r, &r->err);
			snprintf(buf, sizeof buf, "bytes */%llu", (unsigned long long)size);
			qd_req_add_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, buf);
			rc = 0;  /* answered */
			goto out;
		}
		status = 206;
	}
	uint64_t len = size ? end - start + 1 : 0;
	struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, start);
	if (!resp) {
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "cannot create response");
		goto out;
	}
	fd = -1;  /* owned by the response now */
	set_resp(r, status, resp);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				content_type ? content_type : "application/octet-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "private, max-age=31536000, immutable");
	if (filename) {
		struct qd_buf b = { 0 };
		qd_buf_printf(&b, "attachment; filename=\"");
		for (const char *p = filename; *p; p++)
			if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
				qd_buf_append(&b, p, 1);
		qd_buf_printf(&b, "\"");
		if (b.data)
			MHD_add_response_header(resp, "Content-Disposition", (char *)b.data);
		qd_buf_free(&b);
	}
	if (status == 206) {
		snprintf(buf, sizeof buf, "bytes %llu-%llu/%llu", (unsigned long long)start,
			 (unsigned long long)end, (unsigned long long)size);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, buf);
	}
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

/* ---- the access handler ---- */

static void count_status(struct qd_daemon *d, int route, unsigned status)
{
	if (status < 100 || status > 599 || !d->metrics.http)
		return;
	__atomic_fetch_add(&d->metrics.http[(size_t)route * QD_HTTP_STATUS_SLOTS + (status - 100)], 1,
			   __ATOMIC_RELAXED);
}

static enum MHD_Result answer(struct qd_req *r)
{
	if (!r->resp) {
		if (!r->err.code)
			qd_err_set(&r->err, QD_EINTERNAL, "", "handler produced no response");
		qd_req_error(r, &r->err);
	}
	if (!r->resp)
		return MHD_NO;
	r->answered = true;
	count_status(r->d, r->route, r->status);
	enum MHD_Result ok = MHD_queue_response(r->conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	return ok;
}

static enum MHD_Result on_first(struct qd_daemon *d, struct qd_req *r)
{
	struct qd_api *a = d->api;
	if (route_find(r))
		return answer(r);
	const struct qd_route *rt = &qd_routes[r->route];
	if (!(rt->flags & QD_RF_PUBLIC) && a->has_token && !auth_ok(a, r)) {
		qd_err_set(&r->err, QD_EAUTH, "Authorization",
			   "missing or wrong bearer token in the 'Authorization' header");
		qd_req_error(r, &r->err);
		return answer(r);
	}
	const char *cl = qd_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	uint64_t len = 0;
	bool has_len = cl && !parse_u64(cl, &len);
	if (rt->flags & QD_RF_UPLOAD) {
		uint64_t max = (uint64_t)d->cfg.max_upload_bytes;
		if (has_len && len > max) {
			__atomic_fetch_add(&d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
			qd_err_set(&r->err, QD_ETOO_LARGE, "body",
				   "upload of %s bytes exceeds the limit of %llu bytes (--max-upload-bytes)",
				   cl, (unsigned long long)max);
			qd_req_error(r, &r->err);
			return answer(r);
		}
		const char *ct = qd_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
		if (ct && !strncasecmp(ct, "multipart/", 10)) {
			qd_err_set(&r->err, QD_EINVAL, "Content-Type",
				   "content type '%s' not accepted: send the raw ONNX bytes as application/octet-stream",
				   ct);
			qd_req_error(r, &r->err);
			return answer(r);
		}
		if (qd_blob_writer_open(d->store, &r->bw, &r->err) || qd_sha256_init(&r->sha)) {
			if (!r->err.code)
				qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
			if (r->err.code == QD_ENO_SPACE)
				__atomic_fetch_add(&d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
			qd_req_error(r, &r->err);
			return answer(r);
		}
	}
	r->body_deadline = r->t0 + (double)d->cfg.upload_timeout;
	if ((rt->flags & (QD_RF_UPLOAD | QD_RF_JSON)) && d->cfg.upload_timeout < d->cfg.conn_timeout)
		MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
					  (unsigned)d->cfg.upload_timeout);
	if (rt->flags & QD_RF_JSON) {
		uint64_t max = (uint64_t)d->cfg.max_json_bytes;
		if (has_len && len > max) {
			qd_err_set(&r->err, QD_ETOO_LARGE, "body",
				   "request body of %s bytes exceeds the JSON limit of %llu bytes (--max-json-bytes)",
				   cl, (unsigned long long)max);
			qd_req_error(r, &r->err);
			return answer(r);
		}
	}
	return MHD_YES;
}

static void on_body(struct qd_daemon *d, struct qd_req *r, const char *data, size_t n)
{
	const struct qd_route *rt = r->route < QD_ROUTE__COUNT ? &qd_routes[r->route] : NULL;
	if (!rt || r->body_too_large || r->body_failed || r->timed_out)
		return;
	if (rt->flags & QD_RF_UPLOAD) {
		r->body_bytes += n;
		__atomic_fetch_add(&d->metrics.upload_bytes, n, __ATOMIC_RELAXED);
		if (r->body_bytes > (uint64_t)d->cfg.max_upload_bytes) {
			r->body_too_large = true;
			qd_blob_writer_abort(r->bw);
			r->bw = NULL;
			return;
		}
		qd_sha256_update(&r->sha, data, n);
		if (qd_blob_writer_write(r->bw, data, n, &r->body_err)) {
			r->body_failed = true;
			if (r->body_err.code == QD_ENO_SPACE)
				qd_err_wrap(&r->body_err, "not enough disk space to store the upload "
					    "(nothing was kept; retry when space is freed)");
			qd_blob_writer_abort(r->bw);
			r->bw = NULL;
		}
	} else if (rt->flags & QD_RF_JSON) {
		r->body_bytes += n;
		if (r->body_bytes > (uint64_t)d->cfg.max_json_bytes) {
			r->body_too_large = true;
			qd_buf_free(&r->body);
			return;
		}
		if (qd_buf_append(&r->body, data, n)) {
			r->body_failed = true;
			qd_err_set(&r->body_err, QD_ENOMEM, "body", "out of memory buffering the request body");
		}
	}
	/* other routes take no body: ignore it */
}

static void too_large_error(struct qd_req *r)
{
	const struct qd_route *rt = &qd_routes[r->route];
	bool up = rt->flags & QD_RF_UPLOAD;
	uint64_t max = (uint64_t)(up ? r->d->cfg.max_upload_bytes : r->d->cfg.max_json_bytes);
	qd_err_set(&r->err, QD_ETOO_LARGE, "body", "request body exceeds the limit of %llu bytes (%s)",
		   (unsigned long long)max, up ? "--max-upload-bytes" : "--max-json-bytes");
	qd_req_error(r, &r->err);
}

/* Answer now, while the body is still coming (413 over the limit, 507 disk full): MHD
 * sends the answer and closes the connection instead of reading the rest. If MHD refuses
 * (libmicrohttpd 0.9.75 does once the body has started), the answer waits for the end of
 * the body, which is discarded. */
static void answer_early(struct qd_req *r)
{
	r->early_tried = true;
	if ((qd_routes[r->route].flags & QD_RF_UPLOAD))
		__atomic_fetch_add(&r->d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
	if (r->body_too_large)
		too_large_error(r);
	else
		qd_req_error(r, r->body_failed ? &r->body_err : &r->err);
	if (r->resp && MHD_queue_response(r->conn, r->status, r->resp) == MHD_YES) {
		r->answered = true;
		count_status(r->d, r->route, r->status);
		MHD_destroy_response(r->resp);
		r->resp = NULL;
	}
}

/* The body is later than --upload-timeout + bytes / --upload-min-rate allows? Otherwise
 * cut the connection's idle timeout to the time left, so silence ends it too. */
static bool body_too_slow(struct qd_req *r)
{
	struct qd_daemon *d = r->d;
	double rate = (double)QD_MAX(d->cfg.upload_min_rate, 1);
	double deadline = r->body_deadline + (double)r->body_bytes / rate;
	double left = deadline - qd_now_mono();
	if (left <= 0) {
		r->timed_out = true;
		if (r->bw) {
			qd_blob_writer_abort(r->bw);
			r->bw = NULL;
		}
		qd_buf_free(&r->body);
		qd_err_set(&r->err, QD_EREQ_TIMEOUT, "body",
			   "request body too slow: %llu bytes in %.0f s (allowed: %lld s plus 1 s per %lld "
			   "bytes, --upload-timeout / --upload-min-rate)",
			   (unsigned long long)r->body_bytes, qd_now_mono() - r->t0,
			   (long long)d->cfg.upload_timeout, (long long)d->cfg.upload_min_rate);
		return true;
	}
	if (left < (double)d->cfg.conn_timeout)
		MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)ceil(left));
	return false;
}

/* A body that is too slow never reaches its end, so MHD cannot answer it: write the 408
 * straight to the socket (a few hundred bytes fit the empty send buffer) and let MHD
 * close the connection (the caller returns MHD_NO, or MHD is closing it already). */
static void send_timeout_raw(struct qd_req *r)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	json_t *body = json_pack("{s:{s:s, s:s, s:{s:s}}}", "error", "code", qd_err_name(QD_EREQ_TIMEOUT),
				 "message", r->err.msg, "details", "field", "body");
	char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	r->answered = true;
	r->status = 408;
	count_status(r->d, r->route, 408);
	/* counted before the answer goes out: a client that reads /metrics right after its 408
	 * sees its own upload counted */
	if (qd_routes[r->route].flags & QD_RF_UPLOAD)
		__atomic_fetch_add(&r->d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
	if (ci && js) {
		char head[256];
		int hn = snprintf(head, sizeof head, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
				  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", strlen(js) + 1);
		struct iovec iov[3] = { { head, (size_t)hn }, { js, strlen(js) }, { "\n", 1 } };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };
		if (sendmsg(ci->connect_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
			shutdown(ci->connect_fd, SHUT_WR);
	}
	free(js);
}

/* Run the route's handler; r->resp holds the answer afterwards (an error if need be). */
static void run_handler(struct qd_req *r)
{
	int rc = qd_routes[r->route].fn(r);
	if (rc < 0 || !r->resp) {
		if (!r->err.code)
			qd_err_set(&r->err, rc < 0 ? -rc : QD_EINTERNAL, "", "%s", qd_err_msg(rc < 0 ? -rc : QD_EINTERNAL));
		qd_req_error(r, &r->err);
	}
}

static void *offload_main(void *arg)
{
	struct qd_req *r = arg;
	struct qd_api *a = r->d->api;
	run_handler(r);
	r->offload_done = true;
	MHD_resume_connection(r->conn);
	pthread_mutex_lock(&a->mu);
	if (--a->offloads == 0)
		pthread_cond_broadcast(&a->idle);
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* Suspend the connection and run the upload's handler on a thread of its own (answered
 * when MHD calls us again after the resume). false: run it here instead. */
static bool offload(struct qd_req *r)
{
	struct qd_api *a = r->d->api;
	pthread_attr_t at;
	pthread_t th;
	if (pthread_attr_init(&at))
		return false;
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 1 << 20);
	pthread_mutex_lock(&a->mu);
	a->offloads++;
	pthread_mutex_unlock(&a->mu);
	r->offloaded = true;
	MHD_suspend_connection(r->conn);
	int e = pthread_create(&th, &at, offload_main, r);
	pthread_attr_destroy(&at);
	if (!e)
		return true;
	MHD_resume_connection(r->conn);
	r->offloaded = false;
	pthread_mutex_lock(&a->mu);
	if (--a->offloads == 0)
		pthread_cond_broadcast(&a->idle);
	pthread_mutex_unlock(&a->mu);
	return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct qd_daemon *d = cls;
	struct qd_req *r = *con_cls;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		r->d = d;
		r->conn = conn;
		r->url = url;
		r->method = method;
		r->t0 = qd_now_mono();
		r->route = QD_ROUTE_UNMATCHED;
		*con_cls = r;
		return on_first(d, r);
	}
	if (*upload_data_size) {
		if (!r->answered) {
			on_body(d, r, upload_data, *upload_data_size);
			if (!r->body_too_large && !r->body_failed && body_too_slow(r)) {
				send_timeout_raw(r);
				return MHD_NO;
			}
			if ((r->body_too_large || r->body_failed) && !r->early_tried)
				answer_early(r);
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->answered)
		return MHD_YES;
	if (r->offloaded)
		return r->offload_done ? answer(r) : MHD_YES;
	const struct qd_route *rt = &qd_routes[r->route];
	if (r->body_too_large) {
		if (!r->early_tried && (rt->flags & QD_RF_UPLOAD))
			__atomic_fetch_add(&d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
		too_large_error(r);
		return answer(r);
	}
	if (r->body_failed || r->timed_out) {
		if (!r->early_tried && (rt->flags & QD_RF_UPLOAD))
			__atomic_fetch_add(&d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
		if (r->body_failed)
			r->err = r->body_err;
		qd_req_error(r, &r->err);
		return answer(r);
	}
	if ((rt->flags & QD_RF_UPLOAD) && offload(r))
		return MHD_YES;
	run_handler(r);
	return answer(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct qd_daemon *d = cls;
	struct qd_req *r = *con_cls;
	if (!r)
		return;
	*con_cls = NULL;
	double ms = (qd_now_mono() - r->t0) * 1e3;
	if (r->status >= 500)
		qd_log(QD_LOG_WARN, NULL, "%s %s -> %u (%.1f ms): %s", r->method, r->url, r->status, ms, r->err.msg);
	else
		qd_log(QD_LOG_DEBUG, NULL, "%s %s -> %u (%.1f ms)%s", r->method, r->url, r->status, ms,
		       toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
	if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED && r->body_deadline > 0 && !r->answered) {
		/* the client went silent in the middle of its body */
		r->timed_out = true;
		qd_err_set(&r->err, QD_EREQ_TIMEOUT, "body",
			   "request body stalled: %llu bytes in %.0f s, then nothing (allowed: %lld s plus 1 s per "
			   "%lld bytes, --upload-timeout / --upload-min-rate)", (unsigned long long)r->body_bytes,
			   qd_now_mono() - r->t0, (long long)d->cfg.upload_timeout, (long long)d->cfg.upload_min_rate);
		/* the temp file goes before the client hears of it (it may look at once) */
		qd_blob_writer_abort(r->bw);
		r->bw = NULL;
		send_timeout_raw(r);
	}
	if (r->body_deadline > 0 && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)d->cfg.conn_timeout);
	qd_blob_writer_abort(r->bw);
	if (r->sha.ctx) {
		char hex[65];
		qd_sha256_final(&r->sha, hex);
	}
	qd_buf_free(&r->body);
	json_decref(r->err_problems);
	r->err_problems = NULL;
	if (r->resp)
		MHD_destroy_response(r->resp);
	if (r->sc)
		qd_daemon_conn_put(d, r->sc);
	free(r);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char line[1024];
	vsnprintf(line, sizeof line, fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	qd_log(QD_LOG_WARN, NULL, "http: %s", line);
}

/* ---- start / stop ---- */

/* Each connection is a descriptor: raise the soft RLIMIT_NOFILE towards the hard limit
 * when --max-connections (plus room for blobs, SQLite and jobs) needs it. */
static void raise_fd_limit(uint64_t conns)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)conns + 256;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= want)
		return;
	rlim_t old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
		qd_log(QD_LOG_WARN, NULL, "open-file limit %llu (hard) is below --max-connections + 256; "
		       "connections beyond it are refused", (unsigned long long)rl.rlim_cur);
	else if (rl.rlim_cur != old)
		qd_log(QD_LOG_DEBUG, NULL, "open-file limit raised from %llu to %llu",
		       (unsigned long long)old, (unsigned long long)rl.rlim_cur);
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			return s6->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

/* Resolve cfg->listen into ss and refuse a non-loopback address without a token. */
static int listen_resolve(const struct qd_config *cfg, struct sockaddr_storage *ss, bool *ipv6,
			  struct qd_err *err)
{
	char *host = NULL;
	int port, rc;
	struct addrinfo *ai = NULL;
	if ((rc = qd_listen_parse(cfg->listen, &host, &port, err)))
		return rc;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	int gai = getaddrinfo(host, NULL, &hints, &ai);
	if (gai || !ai) {
		rc = qd_err_set(err, QD_EINVAL, "listen", "cannot resolve listen host '%s': %s", host,
				gai_strerror(gai));
		goto out;
	}
	memset(ss, 0, sizeof *ss);
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*ipv6 = false;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6) {
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		*ipv6 = true;
	}
	if (!(cfg->token && *cfg->token) && !addr_is_loopback((struct sockaddr *)ss))
		rc = qd_err_set(err, QD_EINVAL, "token",
				"refusing to listen on non-loopback address '%s' without a token: set --token, "
				"--token-file or QUANTD_TOKEN (or listen on 127.0.0.1)", cfg->listen);
out:
	if (ai)
		freeaddrinfo(ai);
	free(host);
	return rc;
}

int qd_api_check_listen(const struct qd_config *cfg, struct qd_err *err)
{
	struct sockaddr_storage ss;
	bool v6;
	return listen_resolve(cfg, &ss, &v6, err);
}

int qd_api_start(struct qd_daemon *d, int *bound_port, struct qd_err *err)
{
	int rc;
	struct sockaddr_storage ss;
	struct qd_api *a = calloc(1, sizeof *a);
	if (!a)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if ((rc = listen_resolve(&d->cfg, &ss, &a->ipv6, err)))
		goto fail;
	if (d->cfg.http_threads < 1 || d->cfg.http_threads > 1024) {
		rc = qd_err_set(err, QD_EINVAL, "http_threads", "invalid --http-threads %lld (want 1..1024)",
				(long long)d->cfg.http_threads);
		goto fail;
	}
	if (d->cfg.upload_timeout < 1 || d->cfg.upload_timeout > 86400 || d->cfg.upload_min_rate < 1) {
		rc = qd_err_set(err, QD_EINVAL, "upload_timeout", "invalid --upload-timeout %lld / --upload-min-rate "
				"%lld (want 1..86400 s and at least 1 byte/s)", (long long)d->cfg.upload_timeout,
				(long long)d->cfg.upload_min_rate);
		goto fail;
	}
	a->has_token = d->cfg.token && *d->cfg.token;
	if (a->has_token) {
		char hex[65];
		qd_sha256_hex(d->cfg.token, strlen(d->cfg.token), hex);
		for (int i = 0; i < 32; i++) {
			unsigned v;
			sscanf(hex + 2 * i, "%2x", &v);
			a->token_hash[i] = (unsigned char)v;
		}
	}
	size_t slots = (size_t)(QD_ROUTE__COUNT + 1) * QD_HTTP_STATUS_SLOTS;
	d->metrics.http = calloc(slots, sizeof *d->metrics.http);
	if (!d->metrics.http) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto fail;
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->idle, NULL);
	d->api = a;
	raise_fd_limit((uint64_t)d->cfg.max_connections);
	unsigned threads = (unsigned)d->cfg.http_threads;
	unsigned max_conn = (unsigned)d->cfg.max_connections;
	if (max_conn < threads)
		max_conn = threads;  /* MHD gives each pool thread max_conn / threads */
	/* poll(), not epoll: libmicrohttpd 0.9.75's edge-triggered epoll loses wake-ups under
	 * load — the load suite (tests/fault) caught 256 keep-alive connections whose next
	 * request sat unread in the socket's receive queue for 150 s while every pool thread
	 * waited in epoll_wait. poll() is level-triggered, has no FD_SETSIZE limit, and each
	 * pool thread polls only its own share of the connections. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ERROR_LOG | MHD_USE_ITC | (a->ipv6 ? MHD_USE_IPv6 : 0);
	errno = 0;
	a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, d,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, d,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_THREAD_POOL_SIZE, threads,
				  MHD_OPTION_CONNECTION_LIMIT, max_conn,
				  MHD_OPTION_LISTEN_BACKLOG_SIZE, QD_MIN(max_conn, 4096u),
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)d->cfg.conn_timeout,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
				  MHD_OPTION_END);
	if (!a->mhd) {
		rc = qd_err_set(err, QD_EIO, "listen", "cannot listen on '%s': %s", d->cfg.listen,
				errno ? strerror(errno) : "libmicrohttpd failed to start");
		d->api = NULL;
		pthread_cond_destroy(&a->idle);
		pthread_mutex_destroy(&a->mu);
		goto fail;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
	*bound_port = info ? info->port : 0;
	return 0;
fail:
	free(a);
	return rc;
}

void qd_api_quiesce(struct qd_daemon *d)
{
	if (d->api && d->api->mhd) {
		MHD_socket s = MHD_quiesce_daemon(d->api->mhd);
		if (s != MHD_INVALID_SOCKET)
			close(s);
	}
}

void qd_api_stop(struct qd_daemon *d)
{
	struct qd_api *a = d->api;
	if (!a)
		return;
	/* MHD must not stop under a suspended connection: let running upload handlers end */
	pthread_mutex_lock(&a->mu);
	while (a->offloads)
		pthread_cond_wait(&a->idle, &a->mu);
	pthread_mutex_unlock(&a->mu);
	if (a->mhd)
		MHD_stop_daemon(a->mhd);
	pthread_cond_destroy(&a->idle);
	pthread_mutex_destroy(&a->mu);
	free(a);
	d->api = NULL;
}

unsigned qd_api_connections(struct qd_daemon *d)
{
	if (!d->api || !d->api->mhd)
		return 0;
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(d->api->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return info ? info->num_connections : 0;
}
