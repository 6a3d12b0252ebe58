/* The persistent worker pool (common/tpool.c): every task runs exactly once per dispatch,
 * over many back-to-back dispatches and with sleeping workers; nested dispatches run
 * serially; qd_run_jobs and qd_parallel_for on the current pool and without one; a pool
 * used again in a forked child; free with workers asleep. Also run under ThreadSanitizer
 * and helgrind (README, "Threads"). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "qd.h"
#include "qd_test.h"

struct count_ctx { _Atomic int *hits; int64_t n; _Atomic long tid_mix; };

static void count_task(void *ctx, int64_t i)
{
	struct count_ctx *c = ctx;
	atomic_fetch_add(&c->hits[i], 1);
}

/* n dispatches of m tasks each: every task exactly once each time */
static int dispatch_rounds(struct qd_tpool *p, int rounds, int64_t m, bool pause)
{
	_Atomic int *hits = calloc((size_t)m, sizeof(*hits));
	struct count_ctx c = { hits, m, 0 };
	int bad = 0;
	for (int r = 0; r < rounds; r++) {
		qd_tpool_run(p, count_task, &c, m);
		for (int64_t i = 0; i < m; i++)
			if (atomic_load(&hits[i]) != r + 1) bad++;
		if (pause && r % 16 == 0) {
			struct timespec ts = { 0, 300000 };  /* 0.3 ms: workers go to sleep */
			nanosleep(&ts, NULL);
		}
	}
	free(hits);
	return bad;
}

static struct qd_tpool *nest_pool;
static _Atomic int nest_total;

static void inner_task(void *ctx, int64_t i) { atomic_fetch_add(&nest_total, 1); }

static void outer_task(void *ctx, int64_t i)
{
	qd_tpool_run(nest_pool, inner_task, NULL, 5);   /* serial: the pool is busy */
}

struct job { int64_t lo, hi; double sum; pthread_t self; };

static void *job_fn(void *arg)
{
	struct job *j = arg;
	j->sum = 0;
	for (int64_t i = j->lo; i < j->hi; i++) j->sum += (double)i;
	j->self = pthread_self();
	return NULL;
}

static float *pf_out;
static void pf_fn(void *ctx, int64_t lo, int64_t hi)
{
	const float *x = ctx;
	for (int64_t i = lo; i < hi; i++) pf_out[i] = x[i] * 0.5f + 1.0f;
}

int main(void)
{
	struct qd_tpool *p = qd_tpool_new(2);
	CHECK(p != NULL);
	CHECK_EQ_INT(qd_tpool_threads(p), 2);
	CHECK_EQ_INT(qd_tpool_threads(NULL), 1);
	CHECK_EQ_INT(dispatch_rounds(p, 2000, 7, false), 0);      /* back to back, spinning workers */
	CHECK_EQ_INT(dispatch_rounds(p, 200, 1000, true), 0);     /* workers asleep between some */
	CHECK_EQ_INT(dispatch_rounds(p, 500, 2, false), 0);
	CHECK_EQ_INT(dispatch_rounds(p, 10, 1, false), 0);        /* one task: the caller alone */

	nest_pool = p;
	qd_tpool_run(p, outer_task, NULL, 8);
	CHECK_EQ_INT(atomic_load(&nest_total), 40);

	/* qd_run_jobs on the current pool: the jobs run on at most 2 distinct threads, one of
	 * them the caller; the same results without a current pool (threads per call) */
	CHECK(qd_tpool_current() == NULL);
	struct job jobs[4];
	for (int mode = 0; mode < 2; mode++) {
		if (mode == 0) qd_tpool_set_current(p);
		for (int k = 0; k < 4; k++) jobs[k] = (struct job){ k * 250000, (k + 1) * 250000, -1, 0 };
		qd_run_jobs(job_fn, jobs, sizeof jobs[0], 4);
		double s = 0;
		for (int k = 0; k < 4; k++) s += jobs[k].sum;
		CHECK_NEAR(s, 999999.0 * 1000000.0 / 2, 0);
		if (mode == 0) {
			int distinct = 0, has_self = 0;
			for (int k = 0; k < 4; k++) {
				if (pthread_equal(jobs[k].self, pthread_self())) has_self = 1;
				bool seen = false;
				for (int q = 0; q < k; q++) if (pthread_equal(jobs[k].self, jobs[q].self)) seen = true;
				if (!seen) distinct++;
			}
			CHECKF(distinct <= 2 && has_self, "distinct %d, caller %d", distinct, has_self);
			CHECK(qd_tpool_set_current(NULL) == p);
		}
	}

	/* qd_parallel_for: every item once, the same values as one call */
	int64_t n = 100003;
	float *x = malloc((size_t)n * sizeof(float)), *ref = malloc((size_t)n * sizeof(float));
	pf_out = malloc((size_t)n * sizeof(float));
	for (int64_t i = 0; i < n; i++) x[i] = (float)(i % 977) - 300.0f;
	pf_fn(x, 0, n);
	memcpy(ref, pf_out, (size_t)n * sizeof(float));
	memset(pf_out, 0, (size_t)n * sizeof(float));
	qd_tpool_set_current(p);
	qd_parallel_for(n, 1000, pf_fn, x);
	qd_tpool_set_current(NULL);
	CHECK(!memcmp(ref, pf_out, (size_t)n * sizeof(float)));

	/* fork: the child's copy of the pool has no workers; it starts new ones and works
	 * (not under ThreadSanitizer, which cannot start threads after a threaded fork) */
#ifndef __SANITIZE_THREAD__
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int bad = dispatch_rounds(p, 300, 64, true);
		qd_tpool_free(p);
		_exit(bad ? 3 : 0);
	}
	int st = -1;
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
#endif
	CHECK_EQ_INT(dispatch_rounds(p, 100, 64, false), 0);   /* the parent's pool still works */

	/* free with the workers asleep, and a pool never used */
	struct timespec ts = { 0, 2000000 };
	nanosleep(&ts, NULL);
	qd_tpool_free(p);
	qd_tpool_free(qd_tpool_new(4));
	struct qd_tpool *big = qd_tpool_new(8);   /* more threads than cores */
	CHECK_EQ_INT(dispatch_rounds(big, 300, 33, true), 0);
	qd_tpool_free(big);
	free(x); free(ref); free(pf_out);
	return qd_test_done("test_tpool");
}
