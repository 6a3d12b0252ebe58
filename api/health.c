/* Operational endpoints: GET /healthz (process up), GET /readyz (database reachable,
 * workers alive, not shutting down), GET /metrics (Prometheus text format 0.0.4), and
 * GET /v1/passes (the pass registry's schemas). */
#include "api/api.h"
#include "passes/passes.h"

#include <string.h>

int qd_api_healthz(struct qd_req *r)
{
	json_t *b = json_pack("{s:s, s:s, s:f}", "status", "ok", "version", QD_VERSION,
			      "uptime_seconds", qd_now_wall() - r->d->started_at);
	return qd_req_json(r, 200, b);
}

int qd_api_readyz(struct qd_req *r)
{
	struct qd_daemon *d = r->d;
	struct qd_err e = { 0 };
	struct qd_store_counts cnt;
	const char *db = "ok";
	struct qd_store_conn *c = qd_req_store(r);
	if (!c || qd_store_counts(c, &cnt, &e)) {
		db = c ? e.msg : r->err.msg;
		if (!*db)
			db = "unreachable";
	}
	int alive = qd_workers_alive(d);
	char wk[64];
	snprintf(wk, sizeof wk, "%d/%d alive", alive, d->n_workers);
	bool ready = !strcmp(db, "ok") && alive == d->n_workers && !d->stopping;
	json_t *checks = json_pack("{s:s, s:s, s:s}", "database", db, "workers", wk, "shutdown",
				   d->stopping ? "in progress" : "no");
	if (ready)
		return qd_req_json(r, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", checks));
	json_t *body = json_pack("{s:{s:s, s:s, s:{s:o}}}", "error", "code", qd_err_name(QD_EBUSY),
				 "message", d->stopping ? "not ready: shutting down" :
				 alive != d->n_workers ? "not ready: workers not alive" :
				 "not ready: database unreachable", "details", "checks", checks);
	return qd_req_json(r, 503, body);
}

int qd_api_passes_list(struct qd_req *r)
{
	return qd_req_json(r, 200, qd_passes_json());
}

const double qd_duration_buckets[QD_DURATION_BUCKETS] = {
	0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600,
};

void qd_metrics_job_done(struct qd_metrics *m, enum qd_job_state st, double seconds)
{
	if ((unsigned)st >= QD_JOB__COUNT)
		return;
	pthread_mutex_lock(&m->mu);
	m->dur_count[st]++;
	m->dur_sum[st] += seconds;
	for (int i = 0; i < QD_DURATION_BUCKETS; i++)
		if (seconds <= qd_duration_buckets[i])
			m->dur_bucket[st][i]++;
	pthread_mutex_unlock(&m->mu);
}

int qd_api_metrics_text(struct qd_daemon *d, struct qd_store_conn *c, struct qd_buf *o)
{
	struct qd_err e = { 0 };
	struct qd_store_counts cnt;
	bool db_ok = c && !qd_store_counts(c, &cnt, &e);
	qd_buf_printf(o, "# HELP quantd_build_info quantd version.\n# TYPE quantd_build_info gauge\n"
			 "quantd_build_info{version=\"%s\"} 1\n", QD_VERSION);
	qd_buf_printf(o, "# HELP quantd_uptime_seconds Seconds since the daemon started.\n"
			 "# TYPE quantd_uptime_seconds gauge\nquantd_uptime_seconds %.3f\n",
		      qd_now_wall() - d->started_at);
	qd_buf_printf(o, "# HELP quantd_database_up 1 if the database answered this scrape.\n"
			 "# TYPE quantd_database_up gauge\nquantd_database_up %d\n", db_ok ? 1 : 0);
	if (db_ok) {
		qd_buf_printf(o, "# HELP quantd_jobs Jobs in the database by state.\n# TYPE quantd_jobs gauge\n");
		for (int s = 0; s < QD_JOB__COUNT; s++)
			qd_buf_printf(o, "quantd_jobs{state=\"%s\"} %lld\n", qd_job_state_name(s),
				      (long long)cnt.jobs[s]);
		qd_buf_printf(o, "# HELP quantd_queue_depth Jobs waiting for a worker.\n"
				 "# TYPE quantd_queue_depth gauge\nquantd_queue_depth %lld\n",
			      (long long)cnt.jobs[QD_JOB_QUEUED]);
		qd_buf_printf(o, "# HELP quantd_models Stored models.\n# TYPE quantd_models gauge\n"
				 "quantd_models %lld\n", (long long)cnt.models);
		qd_buf_printf(o, "# HELP quantd_artifacts Stored artifacts.\n# TYPE quantd_artifacts gauge\n"
				 "quantd_artifacts %lld\n", (long long)cnt.artifacts);
		qd_buf_printf(o, "# HELP quantd_blob_bytes Bytes in referenced blobs.\n# TYPE quantd_blob_bytes gauge\n"
				 "quantd_blob_bytes %lld\n", (long long)cnt.blob_bytes);
	}
	qd_buf_printf(o, "# HELP quantd_workers Worker threads configured / alive / running a job.\n"
			 "# TYPE quantd_workers gauge\nquantd_workers{state=\"configured\"} %d\n"
			 "quantd_workers{state=\"alive\"} %d\nquantd_workers{state=\"busy\"} %d\n",
		      d->n_workers, qd_workers_alive(d), qd_workers_busy(d));
	qd_buf_printf(o, "# HELP quantd_upload_bytes_total Bytes received on upload endpoints.\n"
			 "# TYPE quantd_upload_bytes_total counter\nquantd_upload_bytes_total %llu\n",
		      (unsigned long long)__atomic_load_n(&d->metrics.upload_bytes, __ATOMIC_RELAXED));
	qd_buf_printf(o, "# HELP quantd_uploads_total Model uploads by result.\n# TYPE quantd_uploads_total counter\n"
			 "quantd_uploads_total{result=\"rejected\"} %llu\nquantd_uploads_total{result=\"accepted\"} %llu\n",
		      (unsigned long long)__atomic_load_n(&d->metrics.uploads[0], __ATOMIC_RELAXED),
		      (unsigned long long)__atomic_load_n(&d->metrics.uploads[1], __ATOMIC_RELAXED));

	qd_buf_printf(o, "# HELP quantd_job_duration_seconds Run time of jobs finished by this process, by final state.\n"
			 "# TYPE quantd_job_duration_seconds histogram\n");
	pthread_mutex_lock(&d->metrics.mu);
	for (int s = 0; s < QD_JOB__COUNT; s++) {
		if (!qd_job_state_terminal(s))
			continue;
		const char *sn = qd_job_state_name(s);
		for (int i = 0; i < QD_DURATION_BUCKETS; i++)
			qd_buf_printf(o, "quantd_job_duration_seconds_bucket{state=\"%s\",le=\"%g\"} %llu\n", sn,
				      qd_duration_buckets[i], (unsigned long long)d->metrics.dur_bucket[s][i]);
		qd_buf_printf(o, "quantd_job_duration_seconds_bucket{state=\"%s\",le=\"+Inf\"} %llu\n"
				 "quantd_job_duration_seconds_sum{state=\"%s\"} %.6f\n"
				 "quantd_job_duration_seconds_count{state=\"%s\"} %llu\n",
			      sn, (unsigned long long)d->metrics.dur_count[s], sn, d->metrics.dur_sum[s], sn,
			      (unsigned long long)d->metrics.dur_count[s]);
	}
	pthread_mutex_unlock(&d->metrics.mu);

	qd_buf_printf(o, "# HELP quantd_http_requests_total HTTP requests by route, method and status.\n"
			 "# TYPE quantd_http_requests_total counter\n");
	for (int rt = 0; rt <= QD_ROUTE__COUNT && d->metrics.http; rt++)
		for (int s = 0; s < QD_HTTP_STATUS_SLOTS; s++) {
			uint64_t v = __atomic_load_n(&d->metrics.http[(size_t)rt * QD_HTTP_STATUS_SLOTS + s],
						     __ATOMIC_RELAXED);
			if (!v)
				continue;
			qd_buf_printf(o, "quantd_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
				      rt < QD_ROUTE__COUNT ? qd_routes[rt].pattern : "unmatched",
				      rt < QD_ROUTE__COUNT ? qd_routes[rt].method : "any", s + 100,
				      (unsigned long long)v);
		}
	return o->data ? 0 : -QD_ENOMEM;
}

int qd_api_metrics(struct qd_req *r)
{
	struct qd_buf b = { 0 };
	struct qd_store_conn *c = qd_req_store(r);
	int rc = qd_api_metrics_text(r->d, c, &b);
	if (rc) {
		qd_buf_free(&b);
		return qd_err_set(&r->err, QD_ENOMEM, "", "out of memory rendering metrics");
	}
	rc = qd_req_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", (char *)b.data, b.len);
	qd_buf_free(&b);
	return rc;
}
