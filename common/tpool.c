/* common/tpool.c — the engine's persistent worker pool: qd_tpool_run, qd_run_jobs and
 * qd_parallel_for.
 *
 * DESIGN
 * - One pool per engine (engine/engine.c creates it with the engine's thread count and
 *   makes it the calling thread's current pool for the length of a run). Its threads - 1
 *   workers start at the first dispatch, not at creation, and are joined at qd_tpool_free.
 * - A dispatch is n tasks, claimed one at a time by the caller and the workers alike from
 *   one 64-bit counter (generation << 32 | next index; claimed by compare-and-swap, so a
 *   worker waking late for an old generation can never take a task of the new one). The
 *   caller works too, and waits only for tasks that were claimed: a worker that the kernel
 *   does not schedule (another process on its core) costs at most the one task it holds,
 *   the caller does the rest. Tasks never change what a kernel computes, only who
 *   computes which rows, so results do not depend on the thread count.
 * - Waiting: a worker spins briefly (QD_TPOOL_SPIN_US, pause instructions, no
 *   sched_yield) for the next dispatch, then sleeps in futex_wait on the wake word; the
 *   caller spins as briefly for the last claimed tasks, then sleeps on the pending count.
 *   Sleepers are counted so a dispatch costs no system call when nobody sleeps. So idle
 *   workers use no CPU between runs, nor while OpenBLAS's own threads work on a GEMM.
 * - Reentrancy: a dispatch from inside a task (or from a second thread while one is in
 *   progress) runs its tasks on the calling thread, in order.
 * - fork: a pthread_atfork child handler bumps a process generation; a pool created
 *   before the fork finds its workers gone (they were not copied), forgets them without
 *   joining and starts new ones at its next dispatch. The daemon's job children may so
 *   inherit an engine safely.
 * - Without a current pool (tools, tests outside an engine run) qd_run_jobs starts and
 *   joins threads per call, as before the pool existed. */
#define _GNU_SOURCE
#include "qd.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define QD_TPOOL_SPIN_US 50    /* spin this long before sleeping (workers and caller) */
#define QD_TPOOL_MAX 64        /* threads per pool, caller included */

struct qd_tpool {
	int threads;                      /* caller included */
	int started;                      /* workers running */
	unsigned fork_gen;                /* process generation the workers belong to */
	uint32_t wake_base;               /* wake word's value when the workers started */
	pthread_t tid[QD_TPOOL_MAX];
	_Atomic uint64_t next;            /* generation << 32 | next task index */
	_Atomic int64_t n_tasks;
	_Atomic(void (*)(void *, int64_t)) fn;
	_Atomic(void *) ctx;
	_Atomic uint32_t wake;            /* bumped per dispatch and at stop: workers' futex */
	_Atomic uint32_t pending;         /* claimed-or-not tasks not yet finished: caller's futex */
	_Atomic int sleepers;             /* workers in futex_wait on wake */
	_Atomic int caller_waiting;       /* caller in futex_wait on pending */
	_Atomic int stop;
	_Atomic int busy;                 /* a dispatch is in progress */
};

static _Atomic unsigned fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Thread_local struct qd_tpool *current;

static void on_fork_child(void) { atomic_fetch_add(&fork_gen, 1); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, on_fork_child); }

static void futex_wait(_Atomic uint32_t *a, uint32_t v)
{
	syscall(SYS_futex, (uint32_t *)a, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *a)
{
	syscall(SYS_futex, (uint32_t *)a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Spins up to QD_TPOOL_SPIN_US while *a == v; returns true when it changed. */
static bool spin_while(_Atomic uint32_t *a, uint32_t v)
{
	double t0 = 0;
	for (int i = 0;; i++) {
		if (atomic_load_explicit(a, memory_order_acquire) != v) return true;
		cpu_relax();
		if ((i & 63) == 63) {
			double t = now_us();
			if (!t0) t0 = t;
			else if (t - t0 > QD_TPOOL_SPIN_US) return false;
		}
	}
}

/* Claims and runs tasks of the current generation until none is left. */
static void work(struct qd_tpool *p)
{
	for (;;) {
		uint64_t c = atomic_load_explicit(&p->next, memory_order_acquire);
		int64_t n = atomic_load_explicit(&p->n_tasks, memory_order_relaxed);
		if ((int64_t)(uint32_t)c >= n) return;
		if (!atomic_compare_exchange_weak_explicit(&p->next, &c, c + 1, memory_order_acq_rel,
							   memory_order_acquire))
			continue;
		/* task (uint32_t)c of this generation is ours: the caller cannot start another
		 * dispatch (and overwrite fn / ctx) before we finish it */
		void (*fn)(void *, int64_t) = atomic_load_explicit(&p->fn, memory_order_relaxed);
		void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
		fn(ctx, (int64_t)(uint32_t)c);
		if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting))
			futex_wake(&p->pending);
	}
}

static void *worker(void *arg)
{
	struct qd_tpool *p = arg;
	uint32_t seen = p->wake_base;
	current = p;   /* a dispatch from inside a task runs serially (the pool is busy) */
	for (;;) {
		if (!spin_while(&p->wake, seen)) {
			atomic_fetch_add(&p->sleepers, 1);
			while (atomic_load(&p->wake) == seen)
				futex_wait(&p->wake, seen);
			atomic_fetch_sub(&p->sleepers, 1);
		}
		seen = atomic_load_explicit(&p->wake, memory_order_acquire);
		if (atomic_load(&p->stop)) return NULL;
		work(p);
	}
}

struct qd_tpool *qd_tpool_new(int threads)
{
	pthread_once(&atfork_once, register_atfork);
	struct qd_tpool *p = calloc(1, sizeof(*p));
	if (!p) return NULL;
	p->threads = threads < 1 ? 1 : threads > QD_TPOOL_MAX ? QD_TPOOL_MAX : threads;
	return p;
}

int qd_tpool_threads(const struct qd_tpool *p)
{
	return p ? p->threads : 1;
}

/* Workers of a pool copied by fork do not exist in the child: forget them. */
static void forget_if_forked(struct qd_tpool *p)
{
	if (!p->started || p->fork_gen == atomic_load(&fork_gen)) return;
	p->started = 0;
	atomic_store(&p->sleepers, 0);
	atomic_store(&p->caller_waiting, 0);
	atomic_store(&p->busy, 0);
	atomic_store(&p->stop, 0);
}

static void start_workers(struct qd_tpool *p)
{
	p->fork_gen = atomic_load(&fork_gen);
	p->wake_base = atomic_load(&p->wake);
	for (int t = 1; t < p->threads; t++) {
		if (pthread_create(&p->tid[p->started], NULL, worker, p)) break;
		p->started++;
	}
}

void qd_tpool_free(struct qd_tpool *p)
{
	if (!p) return;
	forget_if_forked(p);
	if (p->started) {
		atomic_store(&p->stop, 1);
		atomic_fetch_add(&p->wake, 1);
		futex_wake(&p->wake);
		for (int t = 0; t < p->started; t++)
			pthread_join(p->tid[t], NULL);
	}
	if (current == p) current = NULL;
	free(p);
}

void qd_tpool_run(struct qd_tpool *p, void (*fn)(void *ctx, int64_t i), void *ctx, int64_t n)
{
	if (n <= 0) return;
	int zero = 0;
	if (!p || p->threads <= 1 || n == 1 || n > INT32_MAX ||
	    !atomic_compare_exchange_strong(&p->busy, &zero, 1)) {
		for (int64_t i = 0; i < n; i++) fn(ctx, i);
		return;
	}
	forget_if_forked(p);
	atomic_store(&p->busy, 1);
	if (!p->started) start_workers(p);
	atomic_store_explicit(&p->n_tasks, n, memory_order_relaxed);
	atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
	atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
	atomic_store_explicit(&p->pending, (uint32_t)n, memory_order_relaxed);
	uint64_t gen = (atomic_load_explicit(&p->next, memory_order_relaxed) >> 32) + 1;
	atomic_store_explicit(&p->next, gen << 32, memory_order_release);
	atomic_fetch_add(&p->wake, 1);
	if (atomic_load(&p->sleepers) > 0) futex_wake(&p->wake);
	work(p);
	uint32_t v;
	while ((v = atomic_load_explicit(&p->pending, memory_order_acquire)) != 0) {
		if (spin_while(&p->pending, v)) continue;
		atomic_store(&p->caller_waiting, 1);
		if (atomic_load(&p->pending) == v) futex_wait(&p->pending, v);
		atomic_store(&p->caller_waiting, 0);
	}
	atomic_store_explicit(&p->busy, 0, memory_order_release);
}

struct qd_tpool *qd_tpool_set_current(struct qd_tpool *p)
{
	struct qd_tpool *prev = current;
	current = p;
	return prev;
}

struct qd_tpool *qd_tpool_current(void)
{
	return current;
}

struct jobs_ctx { void *(*fn)(void *); char *jobs; size_t size; };

static void run_job(void *ctx, int64_t i)
{
	struct jobs_ctx *j = ctx;
	j->fn(j->jobs + (size_t)i * j->size);
}

void qd_run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int n)
{
	if (n <= 0) return;
	if (current && current->threads > 1) {
		struct jobs_ctx j = { fn, jobs, job_size };
		qd_tpool_run(current, run_job, &j, n);
		return;
	}
	pthread_t tid[64];
	bool started[64] = { false };
	char *j = jobs;
	if (n > 64) n = 64;
	for (int t = 1; t < n; t++)
		started[t] = pthread_create(&tid[t], NULL, fn, j + (size_t)t * job_size) == 0;
	for (int t = 1; t < n; t++)
		if (!started[t])
			fn(j + (size_t)t * job_size);
	fn(j);
	for (int t = 1; t < n; t++)
		if (started[t])
			pthread_join(tid[t], NULL);
}

struct for_ctx {
	void (*fn)(void *, int64_t, int64_t);
	void *ctx;
	int64_t n, chunk;
};

static void run_chunk(void *ctx, int64_t i)
{
	struct for_ctx *f = ctx;
	int64_t lo = i * f->chunk, hi = QD_MIN(f->n, lo + f->chunk);
	f->fn(f->ctx, lo, hi);
}

void qd_parallel_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx)
{
	if (n <= 0) return;
	struct qd_tpool *p = current;
	int threads = qd_tpool_threads(p);
	if (grain < 1) grain = 1;
	if (threads <= 1 || n < 2 * grain) {
		fn(ctx, 0, n);
		return;
	}
	/* a few tasks per thread so a descheduled worker holds little of the work */
	int64_t tasks = QD_MIN(n / grain, (int64_t)threads * 4);
	int64_t chunk = (n + tasks - 1) / tasks;
	struct for_ctx f = { fn, ctx, n, chunk };
	qd_tpool_run(p, run_chunk, &f, (n + chunk - 1) / chunk);
}
