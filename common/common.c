/* Errors, logging, buffers, files, hashing and clocks shared by every module. */
#define _GNU_SOURCE
#include "qd.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

static const struct { const char *name; int http; const char *msg; } err_table[] = {
#define QD_ERR(name, http, msg) { #name, http, msg },
#include "errors.def"
#undef QD_ERR
};
_Static_assert(QD_ARRAY_LEN(err_table) == QD_E__COUNT, "errors.def rows");

static int err_index(int code)
{
	if (code < 0)
		code = -code;
	return code < QD_E__COUNT ? code : QD_EINTERNAL;
}
const char *qd_err_name(int code) { return err_table[err_index(code)].name; }
const char *qd_err_msg(int code) { return err_table[err_index(code)].msg; }
int qd_err_http(int code) { return err_table[err_index(code)].http; }
int qd_err_from_name(const char *name)
{
	for (int i = 1; name && i < QD_E__COUNT; i++)
		if (!strcmp(err_table[i].name, name))
			return i;
	return 0;
}

int qd_err_set(struct qd_err *err, int code, const char *field, const char *fmt, ...)
{
	if (code < 0)
		code = -code;
	if (err) {
		err->code = code;
		snprintf(err->field, sizeof err->field, "%s", field ? field : "");
		if (fmt) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(err->msg, sizeof err->msg, fmt, ap);
			va_end(ap);
		} else {
			snprintf(err->msg, sizeof err->msg, "%s", qd_err_msg(code));
		}
	}
	return -code;
}

int qd_err_wrap(struct qd_err *err, const char *fmt, ...)
{
	if (!err)
		return -QD_EINTERNAL;
	char pre[256], old[sizeof err->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	size_t n = strlen(pre);
	memcpy(err->msg, pre, n);
	snprintf(err->msg + n, sizeof err->msg - n, ": %.*s", (int)(sizeof err->msg - n - 3), old);
	if (!err->code)
		err->code = QD_EINTERNAL;
	return -err->code;
}

void qd_err_clear(struct qd_err *err)
{
	if (err)
		memset(err, 0, sizeof *err);
}

/* ---- logging ---- */
static enum qd_log_level log_level = QD_LOG_INFO;
static qd_log_sink log_sink;
static void *log_sink_ud;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void qd_log_set_level(enum qd_log_level lvl) { log_level = lvl; }
void qd_log_set_sink(qd_log_sink sink, void *ud) { log_sink = sink; log_sink_ud = ud; }

const char *qd_log_level_name(enum qd_log_level lvl)
{
	static const char *n[] = { "debug", "info", "warn", "error" };
	return (unsigned)lvl < 4 ? n[lvl] : "?";
}

void qd_vlog(enum qd_log_level lvl, const char *job, const char *fmt, va_list ap)
{
	if (lvl < log_level)
		return;
	char line[2048];
	vsnprintf(line, sizeof line, fmt, ap);
	if (log_sink) {
		log_sink(log_sink_ud, lvl, job, line);
		return;
	}
	char ts[32];
	qd_time_iso8601(qd_now_wall(), ts);
	pthread_mutex_lock(&log_mu);
	fprintf(stderr, "%s %-5s %s%s%s%s\n", ts, qd_log_level_name(lvl), job ? "[" : "",
		job ? job : "", job ? "] " : "", line);
	pthread_mutex_unlock(&log_mu);
}

void qd_log(enum qd_log_level lvl, const char *job, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	qd_vlog(lvl, job, fmt, ap);
	va_end(ap);
}

/* ---- memory ---- */
void *qd_calloc(size_t n, size_t sz) { return calloc(n ? n : 1, sz ? sz : 1); }
char *qd_strdup(const char *s) { return s ? strdup(s) : NULL; }
char *qd_asprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int qd_buf_reserve(struct qd_buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return -QD_ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int qd_buf_append(struct qd_buf *b, const void *p, size_t n)
{
	if (qd_buf_reserve(b, n + 1))
		return -QD_ENOMEM;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

int qd_buf_printf(struct qd_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || qd_buf_reserve(b, (size_t)n + 1))
		return -QD_ENOMEM;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void qd_buf_free(struct qd_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- files ---- */
int qd_file_read(const char *path, struct qd_buf *out, struct qd_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qd_err_set(err, QD_EIO, path, "cannot open '%s': %s", path, strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = qd_err_set(err, QD_EIO, path, "cannot stat '%s': %s", path, strerror(errno));
		goto out;
	}
	out->len = 0;
	if (qd_buf_reserve(out, (size_t)st.st_size + 1)) {
		rc = qd_err_set(err, QD_ENOMEM, path, "cannot read '%s': out of memory", path);
		goto out;
	}
	for (;;) {
		if (qd_buf_reserve(out, 65536)) {
			rc = qd_err_set(err, QD_ENOMEM, path, "cannot read '%s': out of memory", path);
			goto out;
		}
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = qd_err_set(err, QD_EIO, path, "cannot read '%s': %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
	}
	out->data[out->len] = 0;
out:
	close(fd);
	return rc;
}

static int fsync_dir_of(const char *path)
{
	char *tmp = strdup(path);
	if (!tmp)
		return -1;
	int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(tmp);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int qd_file_write_atomic(const char *path, const void *p, size_t n, struct qd_err *err)
{
	char *tmp = qd_asprintf("%s.tmp.%d.%lx", path, (int)getpid(), (unsigned long)pthread_self());
	if (!tmp)
		return qd_err_set(err, QD_ENOMEM, path, "out of memory");
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = qd_err_set(err, QD_EIO, path, "cannot create '%s': %s", tmp, strerror(errno));
		goto out;
	}
	const uint8_t *c = p;
	size_t left = n;
	while (left) {
		ssize_t w = write(fd, c, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = qd_err_set(err, QD_EIO, path, "cannot write '%s': %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			goto out;
		}
		c += w;
		left -= (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		rc = qd_err_set(err, QD_EIO, path, "cannot sync '%s': %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) < 0) {
		rc = qd_err_set(err, QD_EIO, path, "cannot rename '%s': %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	fsync_dir_of(path);
out:
	free(tmp);
	return rc;
}

int qd_mkdir_p(const char *path, struct qd_err *err)
{
	char *p = strdup(path);
	if (!p)
		return qd_err_set(err, QD_ENOMEM, path, "out of memory");
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			free(p);
			return qd_err_set(err, QD_EIO, path, "cannot create directory '%s': %s", path, strerror(e));
		}
		*s = '/';
	}
	int rc = 0;
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		rc = qd_err_set(err, QD_EIO, path, "cannot create directory '%s': %s", path, strerror(errno));
	free(p);
	return rc;
}

/* ---- sha256 ---- */
int qd_sha256_init(struct qd_sha256 *s)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c)
		return -QD_ENOMEM;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	s->ctx = c;
	return 0;
}

void qd_sha256_update(struct qd_sha256 *s, const void *p, size_t n)
{
	EVP_DigestUpdate(s->ctx, p, n);
}

void qd_sha256_final(struct qd_sha256 *s, char hex[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	EVP_DigestFinal_ex(s->ctx, md, &len);
	EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	hex[64] = 0;
}

void qd_sha256_hex(const void *p, size_t n, char hex[65])
{
	struct qd_sha256 s;
	if (qd_sha256_init(&s)) {
		hex[0] = 0;
		return;
	}
	qd_sha256_update(&s, p, n);
	qd_sha256_final(&s, hex);
}

/* ---- time, ids ---- */
double qd_now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double qd_now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void qd_time_iso8601(double t, char out[32])
{
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	int ms = (int)((t - (double)s) * 1000.0);
	if (ms < 0)
		ms = 0;
	if (ms > 999)
		ms = 999;
	char tmp[96];
	snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	snprintf(out, 32, "%.31s", tmp);
}

void qd_make_id(const char *prefix, char out[64])
{
	uint8_t r[8];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		uint64_t x = (uint64_t)(qd_now_wall() * 1e9) ^ (uint64_t)(uintptr_t)out;
		memcpy(r, &x, 8);
	}
	int n = snprintf(out, 64, "%s", prefix ? prefix : "");
	for (int i = 0; i < 8 && n < 62; i++)
		n += snprintf(out + n, 64 - (size_t)n, "%02x", r[i]);
}

void qd_proc_limits(long long mem_mb, long long out_mb, bool no_core, char *why, size_t why_len)
{
	struct rlimit r = { 0, 0 };
	size_t n = 0;
	if (why_len)
		why[0] = 0;
#define QD_WHY(...) do { if (n < why_len) n += (size_t)snprintf(why + n, why_len - n, __VA_ARGS__); } while (0)
	if (no_core)
		setrlimit(RLIMIT_CORE, &r);
	if (out_mb > 0) {
		r.rlim_cur = r.rlim_max = (rlim_t)out_mb << 20;
		if (setrlimit(RLIMIT_FSIZE, &r))
			QD_WHY("%scannot apply the output size limit: %s", n ? "; " : "", strerror(errno));
	}
	if (mem_mb > 0) {
		if (QD_SANITIZED) {
			QD_WHY("%smemory limit not applied: this quantd is built with AddressSanitizer, which "
			       "reserves terabytes of address space", n ? "; " : "");
		} else {
			r.rlim_cur = r.rlim_max = (rlim_t)mem_mb << 20;
			if (setrlimit(RLIMIT_AS, &r))
				QD_WHY("%scannot apply the memory limit: %s", n ? "; " : "", strerror(errno));
		}
	}
#undef QD_WHY
}
