/* `quantd serve`: loads the configuration, opens the store, recovers jobs interrupted by a
 * crash, starts the worker pool and the HTTP API, then waits for SIGTERM/SIGINT while
 * pinging the systemd watchdog and polling cancel requests of running jobs.
 * Shutdown: stop accepting connections, give running jobs --grace-seconds, requeue the
 * rest, close the store, exit 0. */
#define _GNU_SOURCE
#include "daemon/daemon.h"
#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Signals: libraries start threads before main (OpenBLAS's pool), so blocking signals in
 * our threads cannot guarantee which thread a process-directed SIGTERM lands on. A real
 * handler runs on whichever thread gets it and writes the number into a self-pipe that
 * the main loop polls. The only process-global state here, by necessity. */
static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	int e = errno;
	unsigned char b = (unsigned char)sig;
	if (write(sig_pipe[1], &b, 1) < 0) {
		/* pipe full: a signal is already pending */
	}
	errno = e;
}

static int signals_install(void)
{
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK))
		return -1;
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* Wait up to ms for a signal; returns its number or 0. */
static int signals_wait(int ms)
{
	struct pollfd p = { .fd = sig_pipe[0], .events = POLLIN };
	if (poll(&p, 1, ms) <= 0)
		return 0;
	unsigned char b = 0;
	if (read(sig_pipe[0], &b, 1) != 1)
		return 0;
	return b;
}

struct qd_store_conn *qd_daemon_conn_get(struct qd_daemon *d, struct qd_err *err)
{
	struct qd_store_conn *c = NULL;
	pthread_mutex_lock(&d->pool_mu);
	if (d->pool_len)
		c = d->pool[--d->pool_len];
	pthread_mutex_unlock(&d->pool_mu);
	if (c)
		return c;
	if (qd_store_connect(d->store, &c, err))
		return NULL;
	return c;
}

void qd_daemon_conn_put(struct qd_daemon *d, struct qd_store_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&d->pool_mu);
	/* keep at most 16 idle connections */
	if (d->pool_len < 16 && d->pool_len == d->pool_cap) {
		size_t cap = d->pool_cap ? d->pool_cap * 2 : 4;
		struct qd_store_conn **p = realloc(d->pool, cap * sizeof *p);
		if (p) {
			d->pool = p;
			d->pool_cap = cap;
		}
	}
	if (d->pool_len < d->pool_cap && d->pool_len < 16) {
		d->pool[d->pool_len++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&d->pool_mu);
	qd_store_disconnect(c);
}

static void pool_close(struct qd_daemon *d)
{
	pthread_mutex_lock(&d->pool_mu);
	for (size_t i = 0; i < d->pool_len; i++)
		qd_store_disconnect(d->pool[i]);
	d->pool_len = 0;
	free(d->pool);
	d->pool = NULL;
	d->pool_cap = 0;
	pthread_mutex_unlock(&d->pool_mu);
}

static void print_listening(const struct qd_daemon *d, int port)
{
	char *host = NULL;
	if (qd_listen_parse(d->cfg.listen, &host, &(int){ 0 }, NULL))
		return;
	bool v6 = strchr(host, ':') != NULL;
	printf("quantd listening on http://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
	fflush(stdout);
	qd_log(QD_LOG_INFO, NULL, "listening on http://%s%s%s:%d (data dir '%s', %lld workers%s)",
	       v6 ? "[" : "", host, v6 ? "]" : "", port, d->cfg.data_dir, (long long)d->cfg.workers,
	       d->cfg.token && *d->cfg.token ? ", token auth on" : "");
	free(host);
}

int qd_cmd_serve(int argc, char **argv)
{
	struct qd_daemon *d = calloc(1, sizeof *d);
	struct qd_err err = { 0 };
	struct qd_store_conn *main_conn = NULL;
	int help = 0, rc = 1, port = 0;
	if (!d) {
		fprintf(stderr, "quantd serve: out of memory\n");
		return 1;
	}
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->wake, NULL);
	pthread_mutex_init(&d->pool_mu, NULL);
	pthread_mutex_init(&d->metrics.mu, NULL);
	d->started_at = qd_now_wall();
	if (qd_config_load(&d->cfg, argc, argv, &help, &err)) {
		fprintf(stderr, "quantd serve: %s\n", err.msg);
		fprintf(stderr, "`quantd serve --help` lists the options.\n");
		rc = 2;
		goto out_cfg;
	}
	if (help) {
		qd_config_usage(stdout);
		rc = 0;
		goto out_cfg;
	}
	qd_log_set_level((enum qd_log_level)qd_config_log_level(&d->cfg));
	qd_config_log(&d->cfg);

	if (qd_api_check_listen(&d->cfg, &err)) {
		fprintf(stderr, "quantd serve: %s\n", err.msg);
		rc = 2;
		goto out_cfg;
	}
	if (signals_install()) {
		fprintf(stderr, "quantd serve: cannot install signal handlers: %s\n", strerror(errno));
		goto out;
	}

	if (qd_store_open(d->cfg.data_dir, &d->store, &err)) {
		fprintf(stderr, "quantd serve: cannot open data directory '%s': %s\n", d->cfg.data_dir, err.msg);
		goto out;
	}
	if (qd_store_connect(d->store, &main_conn, &err)) {
		fprintf(stderr, "quantd serve: cannot connect to the store: %s\n", err.msg);
		goto out;
	}
	struct qd_recover_stats rs = { 0 };
	if (qd_store_recover(main_conn, (int)d->cfg.max_attempts, &rs, &err)) {
		fprintf(stderr, "quantd serve: job recovery failed: %s\n", err.msg);
		goto out;
	}
	if (rs.requeued || rs.failed || rs.canceled)
		qd_log(QD_LOG_WARN, NULL, "recovered interrupted jobs: %d requeued, %d failed (attempt limit), %d canceled",
		       rs.requeued, rs.failed, rs.canceled);
	/* no job runs before the workers start: what is in work/ is left over from a crash;
	 * only queued (requeued) jobs keep theirs, for the trials their search resumes from */
	if (qd_work_sweep(d, main_conn, &err)) {
		fprintf(stderr, "quantd serve: cannot create '%s/work': %s\n", d->cfg.data_dir, err.msg);
		goto out;
	}
	if (qd_workers_start(d, &err)) {
		fprintf(stderr, "quantd serve: %s\n", err.msg);
		goto out;
	}
	if (qd_api_start(d, &port, &err)) {
		fprintf(stderr, "quantd serve: %s\n", err.msg);
		goto out;
	}
	print_listening(d, port);
	char status[160];
	snprintf(status, sizeof status, "READY=1\nSTATUS=listening on port %d, %d workers", port, d->n_workers);
	qd_sd_notify(status);

	double wd = qd_sd_watchdog_interval();
	if (d->cfg.watchdog_seconds > 0)
		wd = (double)d->cfg.watchdog_seconds;
	double last_wd = 0;
	int sig = 0, tick_ms = 500;
	if (wd > 0 && wd * 1000 / 2 < tick_ms)
		tick_ms = QD_MAX(10, (int)(wd * 1000 / 2));
	for (;;) {
		sig = signals_wait(tick_ms);
		if (sig == SIGHUP) {
			qd_log(QD_LOG_INFO, NULL, "SIGHUP ignored (restart the service to change its configuration)");
			continue;
		}
		if (sig > 0)
			break;
		double now = qd_now_mono();
		if (wd > 0 && now - last_wd >= wd) {
			/* only claim liveness when the workers are alive and the database answers */
			struct qd_store_counts cnt;
			struct qd_err e = { 0 };
			if (qd_workers_alive(d) == d->n_workers && !qd_store_counts(main_conn, &cnt, &e))
				qd_sd_notify("WATCHDOG=1");
			else
				qd_log(QD_LOG_WARN, NULL, "health check failed, not pinging the watchdog: %s",
				       e.msg[0] ? e.msg : "workers not alive");
			last_wd = now;
		}
		qd_workers_poll_cancel(d, main_conn);
	}
	qd_log(QD_LOG_INFO, NULL, "%s received: shutting down (grace %lld s)", strsignal(sig),
	       (long long)d->cfg.grace_seconds);
	qd_sd_notify("STOPPING=1");
	d->stopping = 1;
	qd_api_quiesce(d);
	int stuck = qd_workers_stop(d);
	if (stuck) {
		qd_log(QD_LOG_ERROR, NULL, "%d worker(s) did not stop; exiting, their jobs are recovered at the next start", stuck);
		fflush(stdout);
		_exit(0);
	}
	qd_api_stop(d);
	rc = 0;
	qd_log(QD_LOG_INFO, NULL, "stopped");
out:
	qd_api_stop(d);
	if (d->workers && !d->stopping) {
		d->cfg.grace_seconds = 0;
		qd_workers_stop(d);
	}
	qd_store_disconnect(main_conn);
	pool_close(d);
	qd_store_close(d->store);
	free(d->workers);
	free(d->metrics.http);
out_cfg:
	qd_config_free(&d->cfg);
	free(d);
	return rc;
}
