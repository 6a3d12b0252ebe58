/* daemon/ — `quantd serve`: configuration, worker pool, job lifecycle, signals, systemd
 * notification. The HTTP side lives in api/ (api/api.h) and gets a struct qd_daemon *. */
#ifndef QD_DAEMON_H
#define QD_DAEMON_H

#include "qd.h"
#include "store/store.h"
#include <pthread.h>
#include <stdio.h>
#include <jansson.h>

#define QD_VERSION "0.1.0"

int qd_cmd_serve(int argc, char **argv);

/* ---- configuration (daemon/config.c, rows in daemon/options.def) ---- */
#define QD_OPT_CTYPE_STR char *
#define QD_OPT_CTYPE_INT int64_t
#define QD_OPT_CTYPE_BOOL int

enum qd_opt_id {
#define QD_OPT(key, kind, dflt, help) QD_OPT_ID_##key,
#include "daemon/options.def"
#undef QD_OPT
	QD_OPT__COUNT
};

enum qd_opt_source { QD_SRC_DEFAULT, QD_SRC_FILE, QD_SRC_ENV, QD_SRC_FLAG };

struct qd_config {
#define QD_OPT(key, kind, dflt, help) QD_OPT_CTYPE_##kind key;
#include "daemon/options.def"
#undef QD_OPT
	char *config_file;                     /* --config / QUANTD_CONFIG, or NULL */
	enum qd_opt_source source[QD_OPT__COUNT];
};

/* Fill cfg from defaults, the config file, the environment and argv (argv[0] is
 * "serve"), in that order of increasing precedence. *help is set when --help was given
 * (nothing else is done then). Strings in cfg are new; free with qd_config_free(). */
int qd_config_load(struct qd_config *cfg, int argc, char **argv, int *help, struct qd_err *err);
void qd_config_free(struct qd_config *cfg);
void qd_config_usage(FILE *f);
/* One log line per option that is not at its default (token redacted). */
void qd_config_log(const struct qd_config *cfg);
/* QD_LOG_* of cfg->log_level. */
int qd_config_log_level(const struct qd_config *cfg);

/* ---- the running daemon (daemon/serve.c, daemon/worker.c) ----
 * One struct qd_daemon per process, passed to every HTTP handler and worker (no global
 * mutable state). Counters are updated with __atomic builtins. */
struct qd_api;
struct qd_worker;

#define QD_DURATION_BUCKETS 12
struct qd_metrics {
	uint64_t upload_bytes;                       /* total bytes received on uploads */
	uint64_t uploads[2];                         /* [0] rejected, [1] accepted */
	pthread_mutex_t mu;                          /* guards the histogram */
	uint64_t dur_count[QD_JOB__COUNT];           /* finished jobs by final state */
	uint64_t dur_bucket[QD_JOB__COUNT][QD_DURATION_BUCKETS];
	double dur_sum[QD_JOB__COUNT];
	uint64_t *http;                              /* [route][status-100], see api.h */
};
extern const double qd_duration_buckets[QD_DURATION_BUCKETS];

struct qd_daemon {
	struct qd_config cfg;
	struct qd_store *store;
	struct qd_api *api;
	struct qd_metrics metrics;
	double started_at;                           /* qd_now_wall() */

	/* worker pool */
	struct qd_worker *workers;
	int n_workers;
	pthread_mutex_t mu;
	pthread_cond_t wake;                         /* a job was queued / shutting down */
	volatile int stopping;                       /* no new claims */
	volatile int aborting;                       /* grace over: running jobs requeue */

	/* store connection pool for HTTP threads */
	pthread_mutex_t pool_mu;
	struct qd_store_conn **pool;
	size_t pool_len, pool_cap;
};

/* Store connection for an HTTP thread: reuse an idle one or connect. Put it back with
 * qd_daemon_conn_put(). NULL with err on failure. */
struct qd_store_conn *qd_daemon_conn_get(struct qd_daemon *d, struct qd_err *err);
void qd_daemon_conn_put(struct qd_daemon *d, struct qd_store_conn *c);

/* Worker pool (daemon/worker.c). */
int qd_workers_start(struct qd_daemon *d, struct qd_err *err);
/* Wake idle workers (a job was queued or cancel was requested). */
void qd_workers_kick(struct qd_daemon *d);
/* Number of jobs being run right now / workers whose thread is alive. */
int qd_workers_busy(struct qd_daemon *d);
int qd_workers_alive(struct qd_daemon *d);
/* Ask workers whose job has cancel_requested to stop it (polled by the main loop). */
void qd_workers_poll_cancel(struct qd_daemon *d, struct qd_store_conn *c);
/* Stop: no new claims; running jobs get grace_seconds, then are stopped and requeued.
 * Joins the threads; returns the number of workers that did not stop within 15 s more
 * (their jobs stay "running" and are recovered at the next start). */
int qd_workers_stop(struct qd_daemon *d);
/* Start-up: empty <data-dir>/work except the directories of queued jobs (a requeued
 * search resumes from the trials saved there); creates work/ when missing. */
int qd_work_sweep(struct qd_daemon *d, struct qd_store_conn *c, struct qd_err *err);
/* Remove a file or directory tree (no symlinks followed); errors are ignored. */
void qd_rm_rf(const char *path);
/* Record a finished job's run time in the duration histogram. */
void qd_metrics_job_done(struct qd_metrics *m, enum qd_job_state st, double seconds);

/* ---- jobs in child processes (daemon/jobexec.c) ---- */
/* `quantd job-exec --request FILE`: the child side (hidden sub-command). */
int qd_cmd_job_exec(int argc, char **argv);

struct qd_job_limits {
	int64_t max_seconds;         /* wall time; 0 = none */
	int64_t max_memory_mb;       /* address space of the job's process; 0 = none */
	int64_t max_output_mb;       /* bytes written to any one file, and the out dir's total */
};
enum qd_job_limit_hit { QD_JOB_LIMIT_NONE, QD_JOB_LIMIT_TIME, QD_JOB_LIMIT_MEMORY, QD_JOB_LIMIT_OUTPUT };

/* Engine limits of every model run in the child (qd_workflow_req's; 0 = the defaults,
 * SIZE_MAX = none). */
struct qd_engine_limits {
	size_t max_tensor_bytes, max_memory_bytes;
	double max_seconds;
};

/* What a supervisor needs to run one job in a child process. */
struct qd_job_sup {
	const char *job_id;
	const char *exe;                     /* NULL: /proc/self/exe */
	const char *model_path, *work_dir, *out_dir;
	const json_t *workflow, *data_paths;
	int threads, log_level;
	int attempt, max_attempts;           /* for messages */
	struct qd_job_limits limits;
	int64_t kill_grace_seconds;          /* SIGTERM -> SIGKILL */
	const volatile int *stop;            /* non-zero: cancel (SIGTERM, then SIGKILL) */
	const json_t *resume;                /* trial records of earlier attempts (qd_workflow_req.resume) */
	int parallel;                        /* search trials at once (qd_workflow_req.parallel) */
	const json_t *trial;                 /* run only this search trial (qd_workflow_trial), or NULL */
	struct qd_engine_limits engine;      /* engine limits of the child's model runs */
	struct {                             /* the child's progress, log and trial lines */
		void *ud;
		void (*progress)(void *ud, double frac, const char *msg);
		void (*log)(void *ud, enum qd_log_level lvl, const char *line);
		void (*trial)(void *ud, const json_t *record, const json_t *search);
	} hooks;
};

/* How the child ended. */
struct qd_job_outcome {
	int pid;
	bool done;                           /* it reported a result */
	json_t *result;                      /* its result (new ref) or NULL */
	bool reported;                       /* it reported an error: code, field, msg */
	int code;
	char field[128], msg[512];
	int signal, exit_code;               /* how it ended */
	const char *signal_name;
	enum qd_job_limit_hit limit;
	bool stopped, stop_killed;           /* SIGTERM sent (cancel / shutdown); SIGKILL after grace */
	char phase[256];                     /* last progress message */
	long long vm_peak_kb;                /* last polled VmPeak, -1 unknown */
	long long max_rss_kb;                /* peak RSS (wait4) */
	double seconds;
};

/* Run the job in a child process and wait for it (forwarding progress and log lines to
 * s->hooks). Non-zero only when the child could not be started. */
int qd_job_supervise(const struct qd_job_sup *s, struct qd_job_outcome *o, struct qd_err *err);
/* The outcome as the job's error (0 = succeeded): crash, limit, cancel, reported error. */
int qd_job_outcome_error(const struct qd_job_sup *s, const struct qd_job_outcome *o, struct qd_err *err);
void qd_job_outcome_free(struct qd_job_outcome *o);

/* One search trial in a process of its own, as a job's process runs its parallel trials
 * (the qd_workflow_hooks.run_trial of a job's process and of `quantd run --workers N`):
 * a `quantd job-exec` child supervised by qd_job_supervise that runs qd_workflow_trial.
 * The child's log lines go to log prefixed "trial N: "; a crash or limit fails the trial
 * (the error says which). Thread-safe: called from one thread per running trial. */
struct qd_trial_runner {
	const char *job_id;                  /* NULL: "run" */
	const char *model_path;
	const json_t *workflow, *data_paths; /* borrow */
	int threads, log_level;
	struct qd_job_limits limits;         /* max_memory_mb, max_output_mb (max_seconds unused) */
	struct qd_engine_limits engine;
	void *ud;
	void (*log)(void *ud, enum qd_log_level lvl, const char *line);
};
int qd_job_run_trial(const struct qd_trial_runner *r, const json_t *trial, const volatile int *stop,
		     json_t **result, struct qd_err *err);
/* The server's limits lowered by the workflow's "limits" object. */
struct qd_job_limits qd_job_limits_of(const struct qd_config *cfg, const json_t *workflow);
/* Submit time: "limits" has only known keys, positive integers, none above the server's. */
int qd_job_limits_check(const struct qd_config *cfg, const json_t *workflow, struct qd_err *err);

/* ---- listen address ---- */
/* Split "HOST:PORT" / "[V6]:PORT" into host (new) and port. */
int qd_listen_parse(const char *spec, char **host, int *port, struct qd_err *err);

/* ---- systemd notification (daemon/sdnotify.c) ---- */
/* Send a datagram to $NOTIFY_SOCKET ("READY=1", "WATCHDOG=1", "STOPPING=1", ...).
 * Returns 0 when sent, 1 when NOTIFY_SOCKET is not set, negative on error. */
int qd_sd_notify(const char *state);
/* Watchdog interval in seconds from $WATCHDOG_USEC (half of it), 0 if not requested. */
double qd_sd_watchdog_interval(void);

#endif
