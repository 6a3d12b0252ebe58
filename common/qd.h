/* quantd common definitions: error codes, error details, logging, small helpers.
 * Every module includes this header. Functions return 0 or a negative QD_E* code
 * and put details into a caller-supplied struct qd_err. */
#ifndef QD_H
#define QD_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdbool.h>

enum qd_errcode {
#define QD_ERR(name, http, msg) QD_E##name,
#include "errors.def"
#undef QD_ERR
	QD_E__COUNT
};

/* Error details. msg is a lowercase sentence, problem first, quoted subject:
 * "cannot open model 'x.onnx'". field names the offending input field (JSON path,
 * node name, ...) when there is one, else empty. */
struct qd_err {
	int code;            /* QD_E* (positive), 0 when no error */
	char field[128];
	char msg[512];
};

/* Sets err (if not NULL) and returns -code. printf-style message. */
int qd_err_set(struct qd_err *err, int code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Prepends context "ctx: " to an existing message. Returns -err->code. */
int qd_err_wrap(struct qd_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qd_err_clear(struct qd_err *err);
/* Static name ("INVAL"), default message and HTTP status of a code (positive or negative). */
const char *qd_err_name(int code);
const char *qd_err_msg(int code);
int qd_err_http(int code);
/* The code (positive) of an error name ("INVAL"), 0 when the name is unknown. */
int qd_err_from_name(const char *name);

/* Logging. Level order: DEBUG < INFO < WARN < ERROR. job may be NULL.
 * A sink (set once at start-up, before threads start) sees every line; the default
 * sink writes "ts level [job] message" to stderr. */
enum qd_log_level { QD_LOG_DEBUG, QD_LOG_INFO, QD_LOG_WARN, QD_LOG_ERROR };
typedef void (*qd_log_sink)(void *ud, enum qd_log_level lvl, const char *job, const char *line);
void qd_log_set_level(enum qd_log_level lvl);
void qd_log_set_sink(qd_log_sink sink, void *ud);
void qd_log(enum qd_log_level lvl, const char *job, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void qd_vlog(enum qd_log_level lvl, const char *job, const char *fmt, va_list ap);
const char *qd_log_level_name(enum qd_log_level lvl);

/* Allocation helpers that abort only on out-of-memory of tiny sizes is NOT our way:
 * these return NULL on failure like malloc. */
void *qd_calloc(size_t n, size_t sz);
char *qd_strdup(const char *s);               /* new; NULL if s is NULL */
char *qd_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* new */

/* Growable byte buffer. */
struct qd_buf { uint8_t *data; size_t len, cap; };
int qd_buf_reserve(struct qd_buf *b, size_t extra);
int qd_buf_append(struct qd_buf *b, const void *p, size_t n);
int qd_buf_printf(struct qd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qd_buf_free(struct qd_buf *b);

/* Files. */
int qd_file_read(const char *path, struct qd_buf *out, struct qd_err *err);       /* whole file */
/* Write atomically: tmp file in the same dir, fsync, rename, fsync dir. */
int qd_file_write_atomic(const char *path, const void *p, size_t n, struct qd_err *err);
int qd_mkdir_p(const char *path, struct qd_err *err);

/* SHA-256 (OpenSSL libcrypto). hex must hold 65 bytes. */
struct qd_sha256 { void *ctx; };
int qd_sha256_init(struct qd_sha256 *s);
void qd_sha256_update(struct qd_sha256 *s, const void *p, size_t n);
void qd_sha256_final(struct qd_sha256 *s, char hex[65]);
void qd_sha256_hex(const void *p, size_t n, char hex[65]);

/* Limits of this process (a job's child, a one-shot `quantd run`): address space of
 * mem_mb MiB (not applied in AddressSanitizer builds, which reserve terabytes), files of at
 * most out_mb MiB each (a write beyond raises SIGXFSZ; ignore it to get EFBIG), no core dumps
 * when no_core. 0 = that limit unset. Returns a warning for each limit that could not be
 * applied, in why (empty when all were), so the caller logs it its own way. */
void qd_proc_limits(long long mem_mb, long long out_mb, bool no_core, char *why, size_t why_len);
#if defined(__SANITIZE_ADDRESS__)
#define QD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QD_SANITIZED 1
#endif
#endif
#ifndef QD_SANITIZED
#define QD_SANITIZED 0   /* 1 in AddressSanitizer builds */
#endif

/* Monotonic and wall clocks. */
double qd_now_mono(void);   /* seconds */
double qd_now_wall(void);   /* seconds since epoch */
void qd_time_iso8601(double t, char out[32]); /* "2026-11-27T17:23:27.123Z" */

/* Random id: prefix + 16 hex chars, e.g. "job_3f2a...". out must hold 64 bytes. */
void qd_make_id(const char *prefix, char out[64]);

#define QD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define QD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Persistent worker pool (common/tpool.c, DESIGN comment there): threads - 1 workers,
 * started at the first dispatch, blocking (futex) when idle, joined by qd_tpool_free;
 * safe across fork (a child starts new workers). */
struct qd_tpool;
struct qd_tpool *qd_tpool_new(int threads);   /* new (NULL: out of memory); caller included */
void qd_tpool_free(struct qd_tpool *p);
int qd_tpool_threads(const struct qd_tpool *p); /* 1 for NULL */
/* Runs fn(ctx, i) for i in [0, n), tasks claimed one by one by the caller and the
 * workers; returns when all are done. Called from inside a task (or while another
 * dispatch of p is in progress) it runs the tasks on the calling thread, in order. */
void qd_tpool_run(struct qd_tpool *p, void (*fn)(void *ctx, int64_t i), void *ctx, int64_t n);
/* The calling thread's current pool (borrow), used by qd_run_jobs and qd_parallel_for;
 * set returns the previous one (the engine sets its pool for the length of a run). */
struct qd_tpool *qd_tpool_set_current(struct qd_tpool *p);
struct qd_tpool *qd_tpool_current(void);

/* Run fn on jobs[0..n) (each job_size bytes) and return when every job is done: on the
 * current pool when there is one with more than one thread, else jobs 1..n-1 on threads
 * started for the call (job 0, and a job whose thread cannot start, on the caller). */
void qd_run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int n);
/* fn(ctx, lo, hi) over [0, n) in chunks of at least `grain` items, on the current pool
 * (one call fn(ctx, 0, n) without one, or when n < 2 * grain). For kernels whose every
 * item is computed independently of the split, so results do not depend on threads. */
void qd_parallel_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);

#endif
