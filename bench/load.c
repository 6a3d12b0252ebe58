/* bench/load.c — a load client for `quantd serve`: many concurrent keep-alive connections
 * on one epoll loop polling finished jobs (GET /v1/jobs/{id}) and listing models
 * (GET /v1/models?limit=20), plus connections uploading distinct models
 * (POST /v1/models), every response checked for content, not only for its status:
 *   - a job answers its own id, the expected state and the expected artifact sha256s;
 *   - a model list holds `limit` items, newest first, unique ids, each item's sha256 and
 *     size one of the models seeded or uploaded by this client;
 *   - an upload answers 201 with the sha256 and size of the bytes sent.
 * Bounded in count (--requests, --uploads) and in time (--max-seconds: whatever is still
 * unfinished then counts as errors). Prints one "load:" line per request kind with the
 * count, errors and p50/p90/p99/max latency, then "load: N requests, N errors".
 * Exit 0 only with 0 errors.
 *
 *   load --port P --jobs FILE --models FILE --upload-base MODEL.onnx
 *        [--conns 1000] [--requests 20000] [--uploads 40] [--upload-conns 8]
 *        [--max-seconds 120] [--host 127.0.0.1] [--uploaded-out FILE] [--stall-cmd CMD]
 * FILE formats: jobs "ID STATE SHA[,SHA...]" per line; models "SHA SIZE" per line.
 * Upload bodies are the base model with a distinct ModelProto doc_string appended (a
 * valid model with distinct bytes); --uploaded-out gets "ID SHA SIZE" per stored upload.
 * --stall-cmd CMD runs (sh -c) when connections still wait at the end, before they close,
 * so the daemon's side of a stall can be looked at (socket queues, thread stacks).
 * Build: cc -O2 -o load bench/load.c -ljansson -lcrypto */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum kind { K_JOB, K_LIST, K_UPLOAD, K__COUNT };
static const char *const kind_name[K__COUNT] = { "job_get", "model_list", "upload" };

struct job_exp { char id[64], state[16]; char *shas; };
struct model_exp { char sha[65]; long long size; };

struct conn {
	int fd;
	bool upload;            /* an upload connection */
	enum kind kind;
	int job;                /* index for K_JOB, upload number for K_UPLOAD */
	char *req;              /* request head (+ body for uploads in body/blen) */
	size_t req_len, req_off;
	const unsigned char *body;
	size_t blen, boff;
	char *rbuf;
	size_t rlen, rcap;
	double t_start;
	bool busy;
};

static struct {
	const char *host;
	int port, conns, upload_conns;
	long requests, uploads;
	double max_seconds;
	struct job_exp *jobs;
	int n_jobs;
	struct model_exp *models;
	int n_models, cap_models;
	unsigned char *base;
	size_t base_len;
	unsigned char **ubody;
	size_t *ulen;
	char (*usha)[65];
	FILE *uploaded_out;
	long issued, issued_uploads, done, errors;
	double *lat[K__COUNT];
	long nlat[K__COUNT], errs[K__COUNT];
	int err_shown;
} G;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct conn *c, const char *fmt, ...)
{
	G.errors++;
	G.errs[c->kind]++;
	if (G.err_shown++ < 10) {
		va_list ap;
		va_start(ap, fmt);
		fprintf(stderr, "load: error (%s): ", kind_name[c->kind]);
		vfprintf(stderr, fmt, ap);
		fprintf(stderr, "\n");
		va_end(ap);
	}
}

static void sha256_hex(const unsigned char *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned len = 0;
	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b) {
		b[n] = 0;
		*len = (size_t)n;
	}
	return b;
}

static void add_model(const char *sha, long long size)
{
	if (G.n_models == G.cap_models) {
		G.cap_models = G.cap_models ? 2 * G.cap_models : 64;
		G.models = realloc(G.models, (size_t)G.cap_models * sizeof *G.models);
	}
	snprintf(G.models[G.n_models].sha, 65, "%s", sha);
	G.models[G.n_models++].size = size;
}

static const struct model_exp *find_model(const char *sha)
{
	for (int i = 0; i < G.n_models; i++)
		if (!strcmp(G.models[i].sha, sha))
			return &G.models[i];
	return NULL;
}

/* The base model plus a ModelProto doc_string (field 6) naming upload i. */
static void make_upload(long i)
{
	char doc[64];
	int dl = snprintf(doc, sizeof doc, "quantd load upload %ld pid %d", i, (int)getpid());
	size_t n = G.base_len + 2 + (size_t)dl;
	unsigned char *b = malloc(n);
	memcpy(b, G.base, G.base_len);
	b[G.base_len] = 0x32;                 /* field 6, wire type 2 */
	b[G.base_len + 1] = (unsigned char)dl; /* < 128: one-byte varint */
	memcpy(b + G.base_len + 2, doc, (size_t)dl);
	G.ubody[i] = b;
	G.ulen[i] = n;
	sha256_hex(b, n, G.usha[i]);
	add_model(G.usha[i], (long long)n);
}

static int connect_one(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)G.port) };
	inet_pton(AF_INET, G.host, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Start the next request on c; false when there is nothing left to send. */
static bool next_request(struct conn *c)
{
	char head[512];
	int n;
	free(c->req);
	c->req = NULL;
	c->body = NULL;
	c->blen = c->boff = 0;
	if (c->upload) {
		if (G.issued_uploads >= G.uploads)
			return false;
		long i = G.issued_uploads++;
		c->kind = K_UPLOAD;
		c->job = (int)i;
		n = snprintf(head, sizeof head, "POST /v1/models?name=load-%ld.onnx HTTP/1.1\r\nHost: %s\r\n"
			     "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
			     i, G.host, G.ulen[i]);
		c->body = G.ubody[i];
		c->blen = G.ulen[i];
	} else {
		if (G.issued >= G.requests)
			return false;
		long i = G.issued++;
		if (i % 4 == 3) {
			c->kind = K_LIST;
			n = snprintf(head, sizeof head, "GET /v1/models?limit=20 HTTP/1.1\r\nHost: %s\r\n\r\n", G.host);
		} else {
			c->kind = K_JOB;
			c->job = (int)(i % G.n_jobs);
			n = snprintf(head, sizeof head, "GET /v1/jobs/%s HTTP/1.1\r\nHost: %s\r\n\r\n",
				     G.jobs[c->job].id, G.host);
		}
	}
	c->req = strdup(head);
	c->req_len = (size_t)n;
	c->req_off = 0;
	c->rlen = 0;
	c->t_start = now();
	c->busy = true;
	return true;
}

static bool check_job(struct conn *c, json_t *j)
{
	const struct job_exp *e = &G.jobs[c->job];
	const char *id = json_string_value(json_object_get(j, "id"));
	const char *st = json_string_value(json_object_get(j, "state"));
	if (!id || strcmp(id, e->id) || !st || strcmp(st, e->state)) {
		fail(c, "job %s answered id %s state %s (want %s)", e->id, id ? id : "-", st ? st : "-", e->state);
		return false;
	}
	json_t *arts = json_object_get(j, "artifacts"), *a;
	size_t i, want = 1;
	for (const char *p = e->shas; *p; p++)
		want += *p == ',';
	if (!json_is_array(arts) || json_array_size(arts) != want) {
		fail(c, "job %s: %zu artifacts, want %zu", e->id, json_array_size(arts), want);
		return false;
	}
	json_array_foreach(arts, i, a) {
		const char *sha = json_string_value(json_object_get(a, "sha256"));
		if (!sha || strlen(sha) != 64 || !strstr(e->shas, sha)) {
			fail(c, "job %s: artifact sha256 %s not expected", e->id, sha ? sha : "-");
			return false;
		}
	}
	return true;
}

static bool check_list(struct conn *c, json_t *j)
{
	json_t *items = json_object_get(j, "items"), *it;
	size_t i;
	if (!json_is_array(items) || json_array_size(items) != 20) {
		fail(c, "model list: %zu items, want 20", json_array_size(items));
		return false;
	}
	const char *prev = NULL;
	json_array_foreach(items, i, it) {
		const char *id = json_string_value(json_object_get(it, "id"));
		const char *sha = json_string_value(json_object_get(it, "sha256"));
		const char *at = json_string_value(json_object_get(it, "created_at"));
		json_int_t size = json_integer_value(json_object_get(it, "size"));
		const struct model_exp *m = sha ? find_model(sha) : NULL;
		if (!id || strncmp(id, "mdl_", 4) || !m || m->size != size || !at) {
			fail(c, "model list item %zu: id %s sha256 %s size %lld not a known model", i,
			     id ? id : "-", sha ? sha : "-", (long long)size);
			return false;
		}
		if (prev && strcmp(prev, at) < 0) {
			fail(c, "model list not newest first: %s after %s", at, prev);
			return false;
		}
		prev = at;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(id, json_string_value(json_object_get(json_array_get(items, k), "id")))) {
				fail(c, "model list repeats %s", id);
				return false;
			}
	}
	return true;
}

static bool check_upload(struct conn *c, json_t *j)
{
	const char *sha = json_string_value(json_object_get(j, "sha256"));
	const char *id = json_string_value(json_object_get(j, "id"));
	json_int_t size = json_integer_value(json_object_get(j, "size"));
	if (!sha || strcmp(sha, G.usha[c->job]) || size != (json_int_t)G.ulen[c->job] || !id) {
		fail(c, "upload %d answered sha256 %s size %lld (sent %s, %zu bytes)", c->job, sha ? sha : "-",
		     (long long)size, G.usha[c->job], G.ulen[c->job]);
		return false;
	}
	if (G.uploaded_out)
		fprintf(G.uploaded_out, "%s %s %zu\n", id, sha, G.ulen[c->job]);
	return true;
}

/* A complete response in c->rbuf? 1 done (checked), 0 need more, -1 broken. */
static int parse_response(struct conn *c)
{
	c->rbuf[c->rlen] = 0;
	char *eoh = strstr(c->rbuf, "\r\n\r\n");
	if (!eoh)
		return 0;
	int status = 0;
	if (sscanf(c->rbuf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	long long clen = -1;
	for (char *p = strstr(c->rbuf, "\r\n"); p && p < eoh; p = strstr(p + 2, "\r\n"))
		if (!strncasecmp(p + 2, "Content-Length:", 15))
			clen = atoll(p + 17);
	if (clen < 0)
		return -1;
	size_t hl = (size_t)(eoh + 4 - c->rbuf);
	if (c->rlen < hl + (size_t)clen)
		return 0;
	double ms = (now() - c->t_start) * 1e3;
	int want = c->kind == K_UPLOAD ? 201 : 200;
	G.done++;
	if (status != want) {
		fail(c, "status %d (want %d): %.200s", status, want, eoh + 4);
		return 1;
	}
	json_error_t je;
	json_t *j = json_loadb(eoh + 4, (size_t)clen, 0, &je);
	if (!j) {
		fail(c, "body is not JSON: %s", je.text);
		return 1;
	}
	bool ok = c->kind == K_JOB ? check_job(c, j) : c->kind == K_LIST ? check_list(c, j) : check_upload(c, j);
	json_decref(j);
	if (ok)
		G.lat[c->kind][G.nlat[c->kind]++] = ms;
	return 1;
}

static bool flush_out(struct conn *c)
{
	while (c->req_off < c->req_len) {
		ssize_t k = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
		if (k < 0)
			return errno == EAGAIN;
		c->req_off += (size_t)k;
	}
	while (c->boff < c->blen) {
		ssize_t k = send(c->fd, c->body + c->boff, c->blen - c->boff, MSG_NOSIGNAL);
		if (k < 0)
			return errno == EAGAIN;
		c->boff += (size_t)k;
	}
	return true;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p)
{
	if (!n)
		return 0;
	long i = (long)(p * (double)(n - 1) + 0.5);
	return v[i];
}

static int load_expectations(const char *jobs_file, const char *models_file)
{
	size_t len;
	char *t = read_file(jobs_file, &len), *save = NULL;
	if (!t)
		return -1;
	for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		G.jobs = realloc(G.jobs, (size_t)(G.n_jobs + 1) * sizeof *G.jobs);
		struct job_exp *e = &G.jobs[G.n_jobs];
		char shas[4096];
		if (sscanf(line, "%63s %15s %4095s", e->id, e->state, shas) != 3)
			return -1;
		e->shas = strdup(shas);
		G.n_jobs++;
	}
	free(t);
	if (!(t = read_file(models_file, &len)))
		return -1;
	for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char sha[65];
		long long size;
		if (sscanf(line, "%64s %lld", sha, &size) != 2)
			return -1;
		add_model(sha, size);
	}
	free(t);
	return G.n_jobs && G.n_models >= 20 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *jobs_file = NULL, *models_file = NULL, *base = NULL, *up_out = NULL, *stall_cmd = NULL;
	G.host = "127.0.0.1";
	G.conns = 1000;
	G.requests = 20000;
	G.uploads = 40;
	G.upload_conns = 8;
	G.max_seconds = 120;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--host")) G.host = v;
		else if (!strcmp(k, "--port")) G.port = atoi(v);
		else if (!strcmp(k, "--conns")) G.conns = atoi(v);
		else if (!strcmp(k, "--requests")) G.requests = atol(v);
		else if (!strcmp(k, "--uploads")) G.uploads = atol(v);
		else if (!strcmp(k, "--upload-conns")) G.upload_conns = atoi(v);
		else if (!strcmp(k, "--max-seconds")) G.max_seconds = atof(v);
		else if (!strcmp(k, "--jobs")) jobs_file = v;
		else if (!strcmp(k, "--models")) models_file = v;
		else if (!strcmp(k, "--upload-base")) base = v;
		else if (!strcmp(k, "--uploaded-out")) up_out = v;
		else if (!strcmp(k, "--stall-cmd")) stall_cmd = v;
		else {
			fprintf(stderr, "load: unknown option '%s'\n", k);
			return 2;
		}
	}
	if (!G.port || !jobs_file || !models_file || !base || G.conns < 1) {
		fprintf(stderr, "usage: load --port P --jobs FILE --models FILE --upload-base MODEL [--conns N] "
			"[--requests N] [--uploads N] [--upload-conns N] [--max-seconds S] [--uploaded-out FILE] [--stall-cmd CMD]\n");
		return 2;
	}
	if (load_expectations(jobs_file, models_file)) {
		fprintf(stderr, "load: cannot read '%s' / '%s' (want jobs and >= 20 models)\n", jobs_file, models_file);
		return 2;
	}
	if (!(G.base = (unsigned char *)read_file(base, &G.base_len))) {
		fprintf(stderr, "load: cannot read '%s'\n", base);
		return 2;
	}
	if (up_out && !(G.uploaded_out = fopen(up_out, "w"))) {
		fprintf(stderr, "load: cannot write '%s'\n", up_out);
		return 2;
	}
	if (!G.uploads)
		G.upload_conns = 0;
	G.ubody = calloc((size_t)G.uploads + 1, sizeof *G.ubody);
	G.ulen = calloc((size_t)G.uploads + 1, sizeof *G.ulen);
	G.usha = calloc((size_t)G.uploads + 1, sizeof *G.usha);
	for (long i = 0; i < G.uploads; i++)
		make_upload(i);
	for (int k = 0; k < K__COUNT; k++)
		G.lat[k] = malloc(sizeof(double) * (size_t)(G.requests + G.uploads + 1));
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < (rlim_t)(G.conns + G.upload_conns + 64)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	int total = G.conns + G.upload_conns;
	struct conn *cs = calloc((size_t)total, sizeof *cs);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int open_conns = 0;
	double t0 = now();
	for (int i = 0; i < total; i++) {
		struct conn *c = &cs[i];
		c->upload = i >= G.conns;
		c->rcap = 1 << 16;
		c->rbuf = malloc(c->rcap + 1);
		c->kind = c->upload ? K_UPLOAD : K_JOB;
		if ((c->fd = connect_one()) < 0) {
			fail(c, "cannot connect: %s", strerror(errno));
			continue;
		}
		if (!next_request(c)) {
			close(c->fd);
			c->fd = -1;
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		open_conns++;
	}
	struct epoll_event evs[256];
	while (open_conns > 0 && now() - t0 < G.max_seconds) {
		int n = epoll_wait(ep, evs, 256, 200);
		for (int e = 0; e < n; e++) {
			struct conn *c = evs[e].data.ptr;
			bool drop = false;
			if (evs[e].events & EPOLLOUT) {
				if (!flush_out(c)) {
					fail(c, "send: %s", strerror(errno));
					drop = true;
				} else if (c->req_off == c->req_len && c->boff == c->blen) {
					struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			}
			if (!drop && (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
				for (;;) {
					if (c->rlen == c->rcap) {
						c->rcap *= 2;
						c->rbuf = realloc(c->rbuf, c->rcap + 1);
					}
					ssize_t k = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
					if (k < 0 && errno == EAGAIN)
						break;
					if (k <= 0) {
						fail(c, "connection closed mid-request: %s", k ? strerror(errno) : "EOF");
						drop = true;
						break;
					}
					c->rlen += (size_t)k;
					int pr = parse_response(c);
					if (pr < 0) {
						fail(c, "malformed response: %.120s", c->rbuf);
						drop = true;
						break;
					}
					if (pr == 1) {
						c->busy = false;
						if (!next_request(c)) {
							drop = true;
							break;
						}
						if (!flush_out(c)) {
							fail(c, "send: %s", strerror(errno));
							drop = true;
							break;
						}
						struct epoll_event ev = { .events = EPOLLIN | (c->req_off < c->req_len ||
							c->boff < c->blen ? EPOLLOUT : 0), .data.ptr = c };
						epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
					}
				}
			}
			if (drop) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				c->fd = -1;
				c->busy = false;
				open_conns--;
			}
		}
	}
	double secs = now() - t0;
	long unfinished = (G.requests - G.issued) + (G.uploads - G.issued_uploads);
	for (int i = 0; i < total; i++)
		if (cs[i].fd >= 0 && cs[i].busy) {
			struct conn *c = &cs[i];
			struct sockaddr_in la;
			socklen_t ll = sizeof la;
			unfinished++;
			if (getsockname(c->fd, (struct sockaddr *)&la, &ll) < 0)
				la.sin_port = 0;
			/* where it stuck: request bytes sent of the head and body, bytes of the answer
			 * received, the local port (to find it in the daemon's socket table) */
			fail(c, "no answer within --max-seconds %.0f: local port %u, request head %zu/%zu and body "
			     "%zu/%zu bytes sent, %zu answer bytes received (%.40s), waiting %.1f s",
			     G.max_seconds, (unsigned)ntohs(la.sin_port), c->req_off, c->req_len, c->boff, c->blen,
			     c->rlen, c->rlen ? c->rbuf : "", now() - c->t_start);
		}
	if (stall_cmd && unfinished) {
		fflush(stdout);
		fflush(stderr);
		if (system(stall_cmd) != 0)
			fprintf(stderr, "load: --stall-cmd failed\n");
	}
	if (G.requests - G.issued + G.uploads - G.issued_uploads) {
		G.errors += G.requests - G.issued + G.uploads - G.issued_uploads;
		fprintf(stderr, "load: %ld requests never sent (connections lost or time over)\n",
			G.requests - G.issued + G.uploads - G.issued_uploads);
	}
	for (int k = 0; k < K__COUNT; k++) {
		qsort(G.lat[k], (size_t)G.nlat[k], sizeof(double), cmp_d);
		printf("load: %-10s %6ld ok %4ld errors  p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n",
		       kind_name[k], G.nlat[k], G.errs[k], pct(G.lat[k], G.nlat[k], 0.5), pct(G.lat[k], G.nlat[k], 0.9),
		       pct(G.lat[k], G.nlat[k], 0.99), G.nlat[k] ? G.lat[k][G.nlat[k] - 1] : 0);
	}
	printf("load: %d connections (+%d uploading), %ld responses in %.2f s (%.0f/s), %ld unfinished\n",
	       G.conns, G.upload_conns, G.done, secs, (double)G.done / secs, unfinished);
	printf("load: %ld requests, %ld errors\n", G.requests + G.uploads, G.errors);
	if (G.uploaded_out)
		fclose(G.uploaded_out);
	return G.errors ? 1 : 0;
}
