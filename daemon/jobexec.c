/* Jobs in supervised child processes: the supervisor side (qd_job_supervise, called by a
 * worker thread) and the child side (the hidden `quantd job-exec` sub-command).
 *
 * DESIGN
 * - Why a process: a job runs an uploaded model through the engine. An engine bug or a
 *   hostile model must cost one job, never the daemon, its other jobs and connections.
 *   So a worker thread only supervises: it writes the job's request (model path,
 *   workflow, dataset paths, limits) to <work>/request.json, then fork + exec's
 *   /proc/self/exe `job-exec` (a fresh image: no inherited threads, locks or SQLite
 *   handles; every fd but 0-3 is closed before exec). The child never opens the store;
 *   every state change stays in the parent, through the store's one transition function.
 * - Channel: the child writes one JSON object per line to fd 3 (a pipe): {"t":"progress",
 *   "frac","msg"}, {"t":"log","level","line"}, {"t":"trial","record","search"} for each
 *   finished search trial (and once with "record": null at the end of the search), and at
 *   the end {"t":"done","result"} or {"t":"error","code","field","msg"}. Lines are written whole under a mutex (engine
 *   threads may report). The parent forwards progress and log lines to the job row and
 *   job log exactly as the in-process hooks did. The last progress message names the
 *   phase a crash happened in.
 * - Parallel search trials: a job given "parallel" > 1 runs each trial of its search in a
 *   process of its own, started by the job's process the same way (qd_job_supervise from
 *   one thread per running trial; the request names the trial, and the trial's process
 *   runs qd_workflow_trial and reports its outcome as its result). A trial's process
 *   that crashes fails that trial, not the job; its log lines reach the job log prefixed
 *   "trial N:"; it inherits the job's memory and output limits; it gets SIGTERM when the
 *   search stops it (cancel, stop_when_goals_met) and dies with the job's process.
 *   Why processes rather than threads in the job's process: the engine's limits
 *   (RLIMIT_AS, the output size) and the crash isolation are per process, and a job
 *   process already is the unit the supervisor knows how to start, limit and stop.
 * - Limits: wall time (parent: SIGKILL at the deadline), memory (RLIMIT_AS in the child:
 *   an allocation beyond it fails, the engine reports NOMEM, and the parent names the
 *   limit; a crash near the limit is attributed to it from the child's polled VmPeak and
 *   its peak RSS from wait4),
 *   output size (RLIMIT_FSIZE per file in the child, SIGXFSZ; the parent also polls the
 *   out dir's total). No core dumps (RLIMIT_CORE 0). Sanitizer builds reserve terabytes
 *   of address space, so there the memory limit is not applied (logged).
 * - Cancel and shutdown: SIGTERM (the child turns it into the workflow's cancel flag and
 *   ends with CANCELED), then SIGKILL after kill_grace_seconds. No child outlives the
 *   daemon: PR_SET_PDEATHSIG(SIGKILL) is tied to the forking worker thread, which always
 *   reaps its child before it exits; a SIGKILL'ed daemon takes its children with it.
 * - Test hook: QUANTD_FAULT_INJECT in the daemon's environment is read by the child only
 *   ("crash@PHASE", "exit@PHASE:N", "hang@PHASE", "alloc@PHASE:MiB", "write@PHASE:MiB",
 *   PHASE a substring of a progress message); the tests use it to make a job crash, hang
 *   or grow on demand. */
#define _GNU_SOURCE
#include "daemon/daemon.h"
#include "passes/workflow.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#define QD_CHILD_FD 3

/* ---------------------------------------------------------------- child side */

struct child {
	pthread_mutex_t mu;
	int fd;
	const char *job_id;
	const char *out_dir;
	const char *fault;          /* QUANTD_FAULT_INJECT or NULL */
	const json_t *req;          /* the job request (parallel trials copy from it) */
	struct qd_engine_limits engine;   /* the request's engine_limits (quantd run's) */
};

static volatile int child_cancel;

static void child_on_term(int sig)
{
	(void)sig;
	child_cancel = 1;
}

/* one JSON line to the supervisor; errors ignored (a dead parent means SIGKILL soon) */
static void child_send(struct child *c, json_t *msg)
{
	char *txt = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (!txt)
		return;
	size_t n = strlen(txt);
	pthread_mutex_lock(&c->mu);
	const char *p = txt;
	size_t left = n;
	while (left) {
		ssize_t w = write(c->fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		left -= (size_t)w;
	}
	while (write(c->fd, "\n", 1) < 0 && errno == EINTR)
		;
	pthread_mutex_unlock(&c->mu);
	free(txt);
}

/* "KIND@PHASE[:N]" matching this progress message: returns N (or 0) and sets *hit */
static long fault_match(const char *fault, const char *kind, const char *msg, bool *hit)
{
	*hit = false;
	size_t kl = strlen(kind);
	if (!fault || strncmp(fault, kind, kl) || fault[kl] != '@' || !msg)
		return 0;
	char phase[128];
	const char *ph = fault + kl + 1, *colon = strrchr(ph, ':');
	size_t pl = colon ? (size_t)(colon - ph) : strlen(ph);
	if (pl >= sizeof phase)
		return 0;
	memcpy(phase, ph, pl);
	phase[pl] = 0;
	if (!strstr(msg, phase))
		return 0;
	*hit = true;
	return colon ? strtol(colon + 1, NULL, 10) : 0;
}

static void child_fault(struct child *c, const char *msg)
{
	bool hit;
	fault_match(c->fault, "crash", msg, &hit);
	if (hit) {
		volatile int *np = NULL;
		*np = 1;  /* a real SIGSEGV, as an engine bug would give */
	}
	long code = fault_match(c->fault, "exit", msg, &hit);
	if (hit)
		_exit((int)code);
	fault_match(c->fault, "hang", msg, &hit);
	if (hit) {
		signal(SIGTERM, SIG_IGN);
		for (;;)
			pause();
	}
	long mib = fault_match(c->fault, "alloc", msg, &hit);
	if (hit) {
		/* touch it page by page, as a model whose tensors grow would */
		for (long i = 0; i < mib; i++) {
			char *p = malloc((size_t)1 << 20);
			if (!p) {
				volatile int *np = NULL;
				*np = 1;  /* as code that does not check malloc would */
			}
			memset(p, 1, (size_t)1 << 20);
		}
	}
	mib = fault_match(c->fault, "write", msg, &hit);
	if (hit) {
		char *path = qd_asprintf("%s/fault.bin", c->out_dir);
		FILE *f = path ? fopen(path, "wb") : NULL;
		static char block[1 << 16];
		for (long i = 0; f && i < mib * 16; i++)
			if (fwrite(block, 1, sizeof block, f) != sizeof block)
				break;
		if (f)
			fclose(f);
		free(path);
	}
}

static void child_progress(void *ud, double frac, const char *msg)
{
	struct child *c = ud;
	child_send(c, json_pack("{s:s, s:f, s:s}", "t", "progress", "frac", frac, "msg", msg ? msg : ""));
	child_fault(c, msg);
}

static void child_log(void *ud, enum qd_log_level lvl, const char *line)
{
	struct child *c = ud;
	child_send(c, json_pack("{s:s, s:i, s:s}", "t", "log", "level", (int)lvl, "line", line ? line : ""));
}

static void child_trial(void *ud, const json_t *record, const json_t *search)
{
	struct child *c = ud;
	child_send(c, json_pack("{s:s, s:O?, s:O?}", "t", "trial", "record", record, "search", search));
}

/* a trial process's log line, into the runner's log with its trial number */
struct trial_fwd { const struct qd_trial_runner *r; long long n; };

static void trial_log(void *ud, enum qd_log_level lvl, const char *line)
{
	struct trial_fwd *f = ud;
	char buf[QD_JOB_LOG_LINE_MAX];
	snprintf(buf, sizeof buf, "trial %lld: %s", f->n, line ? line : "");
	if (f->r->log)
		f->r->log(f->r->ud, lvl, buf);
}

int qd_job_run_trial(const struct qd_trial_runner *r, const json_t *trial, const volatile int *stop,
		     json_t **result, struct qd_err *err)
{
	const char *dir = json_string_value(json_object_get(trial, "dir"));
	struct trial_fwd fwd = { r, json_integer_value(json_object_get(trial, "n")) };
	struct qd_job_outcome o = { 0 };
	*result = NULL;
	int rc = dir ? qd_mkdir_p(dir, err) : qd_err_set(err, QD_EINVAL, "trial", "the trial has no directory");
	if (rc)
		return rc;
	struct qd_job_sup s = { .job_id = r->job_id ? r->job_id : "run", .model_path = r->model_path,
				.work_dir = dir, .out_dir = dir, .workflow = r->workflow, .data_paths = r->data_paths,
				.threads = r->threads, .log_level = r->log_level,
				.limits = { 0, r->limits.max_memory_mb, r->limits.max_output_mb },
				.engine = r->engine, .kill_grace_seconds = 10, .stop = stop, .trial = trial,
				.hooks = { .ud = &fwd, .log = trial_log } };
	if ((rc = qd_job_supervise(&s, &o, err)))
		return rc;
	if (!(rc = qd_job_outcome_error(&s, &o, err)))
		*result = o.result ? json_incref(o.result) : NULL;
	qd_job_outcome_free(&o);
	return rc;
}

static void child_trial_log(void *ud, enum qd_log_level lvl, const char *line)
{
	child_log(ud, lvl, line);
}

/* The workflow's run_trial hook in a job's process: the trial in a process of its own
 * (see DESIGN). */
static int child_run_trial(void *ud, const json_t *trial, const volatile int *stop, json_t **result,
			   struct qd_err *err)
{
	struct child *c = ud;
	const json_t *req = c->req, *lim = json_object_get(req, "limits");
	const json_t *dp = json_object_get(req, "data_paths");
	struct qd_trial_runner r = { .job_id = c->job_id, .model_path = json_string_value(json_object_get(req, "model_path")),
				     .workflow = json_object_get(req, "workflow"), .data_paths = json_is_object(dp) ? dp : NULL,
				     .threads = (int)json_integer_value(json_object_get(req, "threads")),
				     .log_level = (int)json_integer_value(json_object_get(req, "log_level")),
				     .limits = { 0, json_integer_value(json_object_get(lim, "max_job_memory_mb")),
						 json_integer_value(json_object_get(lim, "max_output_mb")) },
				     .engine = c->engine, .ud = c, .log = child_trial_log };
	return qd_job_run_trial(&r, trial, stop, result, err);
}

static int child_limits(const json_t *lim, struct child *c)
{
	char why[512];
	qd_proc_limits(json_integer_value(json_object_get(lim, "max_job_memory_mb")),
		       json_integer_value(json_object_get(lim, "max_output_mb")), true, why, sizeof why);
	if (why[0])
		child_log(c, QD_LOG_WARN, why);
	return 0;
}

int qd_cmd_job_exec(int argc, char **argv)
{
	const char *req_path = NULL;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--request") && i + 1 < argc)
			req_path = argv[++i];
	if (!req_path) {
		fprintf(stderr, "quantd job-exec: internal sub-command of `quantd serve` "
			"(usage: quantd job-exec --request FILE, fd 3 = the supervisor's pipe)\n");
		return 2;
	}
	struct stat sb;
	if (fstat(QD_CHILD_FD, &sb) || !S_ISFIFO(sb.st_mode)) {
		fprintf(stderr, "quantd job-exec: fd 3 is not the supervisor's pipe\n");
		return 2;
	}
	struct child c = { .fd = QD_CHILD_FD, .fault = getenv("QUANTD_FAULT_INJECT") };
	pthread_mutex_init(&c.mu, NULL);
	struct sigaction sa = { .sa_handler = child_on_term };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGINT, SIG_IGN);   /* the daemon decides; a terminal's ^C goes to it */
	signal(SIGPIPE, SIG_IGN);

	struct qd_err err = { 0 };
	json_error_t je;
	json_t *req = json_load_file(req_path, 0, &je), *result = NULL;
	int rc;
	if (!req || !json_is_object(req)) {
		rc = qd_err_set(&err, QD_EPARSE, "request", "cannot read the job request '%s': %s", req_path,
				req ? "not an object" : je.text);
		goto out;
	}
	json_int_t lvl = json_integer_value(json_object_get(req, "log_level"));
	qd_log_set_level((enum qd_log_level)lvl);
	c.job_id = json_string_value(json_object_get(req, "job_id"));
	c.req = req;
	c.out_dir = json_string_value(json_object_get(req, "out_dir"));
	child_limits(json_object_get(req, "limits"), &c);
	const json_t *dp = json_object_get(req, "data_paths");
	struct qd_workflow_req wr = {
		.job_id = c.job_id,
		.model_path = json_string_value(json_object_get(req, "model_path")),
		.workflow = json_object_get(req, "workflow"),
		.out_dir = c.out_dir,
		.threads = (int)json_integer_value(json_object_get(req, "threads")),
		.data_paths = json_is_object(dp) ? dp : NULL,
		.resume = json_is_array(json_object_get(req, "resume")) ? json_object_get(req, "resume") : NULL,
		.parallel = (int)json_integer_value(json_object_get(req, "parallel")),
	};
	{   /* engine limits of every model run (quantd run --max-tensor-mb and friends) */
		const json_t *el = json_object_get(req, "engine_limits");
		c.engine.max_tensor_bytes = (size_t)json_integer_value(json_object_get(el, "max_tensor_bytes"));
		c.engine.max_memory_bytes = (size_t)json_integer_value(json_object_get(el, "max_memory_bytes"));
		c.engine.max_seconds = json_number_value(json_object_get(el, "max_seconds"));
		if (json_integer_value(json_object_get(el, "max_tensor_bytes")) < 0)
			c.engine.max_tensor_bytes = SIZE_MAX;
		if (json_integer_value(json_object_get(el, "max_memory_bytes")) < 0)
			c.engine.max_memory_bytes = SIZE_MAX;
		wr.max_tensor_bytes = c.engine.max_tensor_bytes;
		wr.max_memory_bytes = c.engine.max_memory_bytes;
		wr.max_seconds = c.engine.max_seconds;
	}
	if (!wr.model_path || !wr.workflow || !wr.out_dir) {
		rc = qd_err_set(&err, QD_EPARSE, "request", "the job request '%s' lacks model_path, workflow "
				"or out_dir", req_path);
		goto out;
	}
	struct qd_workflow_hooks hooks = { .ud = &c, .progress = child_progress, .log = child_log,
					   .cancel = &child_cancel, .trial = child_trial,
					   .run_trial = wr.parallel > 1 ? child_run_trial : NULL };
	const json_t *trial = json_object_get(req, "trial");
	if (json_is_object(trial)) {
		struct qd_workflow_hooks th = { .ud = &c, .progress = child_progress, .log = child_log,
						.cancel = &child_cancel };
		rc = qd_workflow_trial(&wr, &th, trial, &result, &err);
	} else {
		rc = qd_workflow_run(&wr, &hooks, &result, &err);
	}
	if (!rc && child_cancel)
		rc = qd_err_set(&err, QD_ECANCELED, "", "job canceled");
out:
	if (!rc)
		child_send(&c, json_pack("{s:s, s:O?}", "t", "done", "result", result));
	else
		child_send(&c, json_pack("{s:s, s:s, s:s, s:s}", "t", "error", "code", qd_err_name(rc),
					 "field", err.field, "msg", err.msg[0] ? err.msg : qd_err_msg(rc)));
	json_decref(result);
	json_decref(req);
	return rc ? 1 : 0;
}

/* ---------------------------------------------------------------- supervisor side */

/* total bytes of the regular files directly in dir */
static long long dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	long long sum = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat sb;
		if (de->d_name[0] != '.' && !fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) &&
		    S_ISREG(sb.st_mode))
			sum += (long long)sb.st_size;
	}
	closedir(d);
	return sum;
}

/* VmPeak of a live process in KiB, or -1 */
static long long vm_peak_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmPeak:", 7)) {
			v = strtoll(line + 7, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void phase_of(const char *msg, char *out, size_t n)
{
	if (!msg || !msg[0])
		snprintf(out, n, "starting");
	else if (!strncmp(msg, "pass ", 5))
		snprintf(out, n, "running %s", msg);
	else
		snprintf(out, n, "%s", msg);
}

static void handle_line(const struct qd_job_sup *s, char *line, struct qd_job_outcome *o)
{
	json_error_t je;
	json_t *m = json_loads(line, 0, &je);
	const char *t = json_string_value(json_object_get(m, "t"));
	if (!t) {
		json_decref(m);
		return;
	}
	if (!strcmp(t, "progress")) {
		const char *msg = json_string_value(json_object_get(m, "msg"));
		snprintf(o->phase, sizeof o->phase, "%s", msg ? msg : "");
		if (s->hooks.progress)
			s->hooks.progress(s->hooks.ud, json_real_value(json_object_get(m, "frac")), msg);
	} else if (!strcmp(t, "log")) {
		json_int_t lvl = json_integer_value(json_object_get(m, "level"));
		const char *l = json_string_value(json_object_get(m, "line"));
		if (s->hooks.log && l)
			s->hooks.log(s->hooks.ud, (enum qd_log_level)(lvl >= 0 && lvl <= 3 ? lvl : 1), l);
	} else if (!strcmp(t, "trial")) {
		const json_t *rec = json_object_get(m, "record"), *srch = json_object_get(m, "search");
		if (s->hooks.trial && (json_is_object(rec) || json_is_object(srch)))
			s->hooks.trial(s->hooks.ud, json_is_object(rec) ? rec : NULL, json_is_object(srch) ? srch : NULL);
	} else if (!strcmp(t, "done")) {
		o->done = true;
		json_decref(o->result);
		o->result = json_incref(json_object_get(m, "result"));
	} else if (!strcmp(t, "error")) {
		o->reported = true;
		o->code = qd_err_from_name(json_string_value(json_object_get(m, "code")));
		if (!o->code)
			o->code = QD_EINTERNAL;
		snprintf(o->field, sizeof o->field, "%s", json_string_value(json_object_get(m, "field")) ?: "");
		snprintf(o->msg, sizeof o->msg, "%s", json_string_value(json_object_get(m, "msg")) ?: "");
	}
	json_decref(m);
}

static int write_request(const struct qd_job_sup *s, const char *path, struct qd_err *err)
{
	json_t *lim = json_pack("{s:I, s:I, s:I}", "max_job_seconds", (json_int_t)s->limits.max_seconds,
				"max_job_memory_mb", (json_int_t)s->limits.max_memory_mb,
				"max_output_mb", (json_int_t)s->limits.max_output_mb);
	json_t *req = json_pack("{s:s, s:s, s:O, s:s, s:i, s:O?, s:o, s:i, s:O?, s:i, s:O?}", "job_id", s->job_id,
				"model_path", s->model_path, "workflow", s->workflow, "out_dir", s->out_dir,
				"threads", s->threads, "data_paths", s->data_paths, "limits", lim,
				"log_level", s->log_level, "resume", s->resume, "parallel", s->parallel,
				"trial", s->trial);
	if (!req)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if (s->engine.max_tensor_bytes || s->engine.max_memory_bytes || s->engine.max_seconds > 0)
		/* SIZE_MAX (no limit) as -1 */
		json_object_set_new(req, "engine_limits", json_pack("{s:I, s:I, s:f}", "max_tensor_bytes",
			s->engine.max_tensor_bytes == SIZE_MAX ? (json_int_t)-1 : (json_int_t)s->engine.max_tensor_bytes,
			"max_memory_bytes",
			s->engine.max_memory_bytes == SIZE_MAX ? (json_int_t)-1 : (json_int_t)s->engine.max_memory_bytes,
			"max_seconds", s->engine.max_seconds));
	int rc = 0;
	if (json_dump_file(req, path, JSON_COMPACT))
		rc = qd_err_set(err, QD_EIO, "", "cannot write the job request '%s': %s", path, strerror(errno));
	json_decref(req);
	return rc;
}

static const char *sig_name(int sig)
{
	static const struct { int sig; const char *name; } t[] = {
		{ SIGSEGV, "SIGSEGV" }, { SIGBUS, "SIGBUS" }, { SIGABRT, "SIGABRT" }, { SIGFPE, "SIGFPE" },
		{ SIGILL, "SIGILL" }, { SIGKILL, "SIGKILL" }, { SIGTERM, "SIGTERM" }, { SIGXFSZ, "SIGXFSZ" },
		{ SIGXCPU, "SIGXCPU" }, { SIGTRAP, "SIGTRAP" }, { SIGSYS, "SIGSYS" }, { SIGPIPE, "SIGPIPE" },
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(t); i++)
		if (t[i].sig == sig)
			return t[i].name;
	return "a signal";
}

int qd_job_supervise(const struct qd_job_sup *s, struct qd_job_outcome *o, struct qd_err *err)
{
	memset(o, 0, sizeof *o);
	o->vm_peak_kb = -1;
	char *req_path = qd_asprintf("%s/request.json", s->work_dir);
	if (!req_path)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	int rc = write_request(s, req_path, err);
	if (rc) {
		free(req_path);
		return rc;
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC)) {
		rc = qd_err_set(err, QD_EIO, "", "cannot create the job's pipe: %s", strerror(errno));
		free(req_path);
		return rc;
	}
	char *argv[] = { "quantd", "job-exec", "--request", req_path, NULL };
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		rc = qd_err_set(err, QD_EIO, "", "cannot start the job's process: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		free(req_path);
		return rc;
	}
	if (pid == 0) {
		/* async-signal-safe calls only until exec */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		setpgid(0, 0);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0) {
			dup2(devnull, 0);
		}
		if (dup2(pfd[1], QD_CHILD_FD) < 0)
			_exit(127);
		close_range(QD_CHILD_FD + 1, ~0U, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(s->exe ? s->exe : "/proc/self/exe", argv);
		_exit(127);
	}
	close(pfd[1]);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	o->pid = pid;

	double t0 = qd_now_mono(), term_at = 0, last_poll = 0;
	bool killed = false, eof = false, reaped = false;
	struct qd_buf lb = { 0 };
	int status = 0;
	struct rusage ru;
	for (;;) {
		if (!eof) {
			struct pollfd p = { .fd = pfd[0], .events = POLLIN };
			poll(&p, 1, 200);
			char buf[65536];
			for (;;) {
				ssize_t n = read(pfd[0], buf, sizeof buf);
				if (n > 0) {
					qd_buf_append(&lb, buf, (size_t)n);
					continue;
				}
				if (n == 0)
					eof = true;
				break;
			}
			/* complete lines */
			size_t start = 0;
			for (size_t i = 0; i < lb.len; i++)
				if (lb.data[i] == '\n') {
					lb.data[i] = 0;
					handle_line(s, (char *)lb.data + start, o);
					start = i + 1;
				}
			if (start) {
				memmove(lb.data, lb.data + start, lb.len - start);
				lb.len -= start;
			}
		} else {
			usleep(50 * 1000);
		}
		if (!reaped && wait4(pid, &status, WNOHANG, &ru) == pid) {
			reaped = true;
			o->max_rss_kb = ru.ru_maxrss;
		}
		if (reaped) {
			if (!eof)
				continue;  /* drain what is left in the pipe */
			break;
		}
		double now = qd_now_mono();
		if (now - last_poll >= 0.5 && !killed) {
			last_poll = now;
			long long pk = vm_peak_kb(pid);
			if (pk > o->vm_peak_kb)
				o->vm_peak_kb = pk;
			if (s->limits.max_output_mb > 0 && dir_bytes(s->out_dir) > ((long long)s->limits.max_output_mb << 20)) {
				o->limit = QD_JOB_LIMIT_OUTPUT;
				kill(pid, SIGKILL);
				killed = true;
			}
		}
		if (!killed && s->limits.max_seconds > 0 && now - t0 > (double)s->limits.max_seconds) {
			o->limit = QD_JOB_LIMIT_TIME;
			kill(pid, SIGKILL);
			killed = true;
		}
		if (!killed && s->stop && *s->stop && !term_at) {
			term_at = now;
			o->stopped = true;
			kill(pid, SIGTERM);
		}
		if (!killed && term_at && now - term_at > (double)s->kill_grace_seconds) {
			kill(pid, SIGKILL);
			killed = true;
			o->stop_killed = true;
		}
	}
	close(pfd[0]);
	free(lb.data);
	free(req_path);
	o->seconds = qd_now_mono() - t0;
	if (WIFSIGNALED(status)) {
		o->signal = WTERMSIG(status);
		o->signal_name = sig_name(o->signal);
		if (o->signal == SIGXFSZ && !o->limit)
			o->limit = QD_JOB_LIMIT_OUTPUT;
	} else if (WIFEXITED(status)) {
		o->exit_code = WEXITSTATUS(status);
	}
	if (o->reported && o->code == QD_ENOMEM && s->limits.max_memory_mb > 0 && !QD_SANITIZED)
		o->limit = QD_JOB_LIMIT_MEMORY;
	/* a crash at the edge of the address-space limit: an allocation failed and was not
	 * checked (or a library aborted on it) */
	long long lim_kb = (long long)s->limits.max_memory_mb * 1024;
	if (!o->limit && o->signal && o->signal != SIGKILL && lim_kb > 0 && !QD_SANITIZED &&
	    (o->vm_peak_kb > lim_kb * 9 / 10 || o->max_rss_kb > lim_kb * 3 / 4))
		o->limit = QD_JOB_LIMIT_MEMORY;
	return 0;
}

void qd_job_outcome_free(struct qd_job_outcome *o)
{
	json_decref(o->result);
	o->result = NULL;
}

/* The job's end as an error for the user: *err filled, returns -code (0 = succeeded). */
int qd_job_outcome_error(const struct qd_job_sup *s, const struct qd_job_outcome *o, struct qd_err *err)
{
	char phase[300];
	phase_of(o->phase, phase, sizeof phase);
	switch (o->limit) {
	case QD_JOB_LIMIT_TIME:
		return qd_err_set(err, QD_ETIMEOUT, "limits.max_job_seconds", "the job ran longer than "
				  "max_job_seconds = %lld (stopped while %s)", (long long)s->limits.max_seconds, phase);
	case QD_JOB_LIMIT_MEMORY:
		return qd_err_set(err, QD_ELIMIT, "limits.max_job_memory_mb", "the job exceeded the memory "
				  "limit of %lld MiB while %s%s%s", (long long)s->limits.max_memory_mb, phase,
				  o->reported ? ": " : "", o->reported ? o->msg : "");
	case QD_JOB_LIMIT_OUTPUT:
		return qd_err_set(err, QD_ELIMIT, "limits.max_output_mb", "the job exceeded the output size "
				  "limit of %lld MiB while %s", (long long)s->limits.max_output_mb, phase);
	default:
		break;
	}
	if (o->stopped && (o->stop_killed || o->signal || (o->reported && o->code == QD_ECANCELED)))
		return qd_err_set(err, QD_ECANCELED, "", "job canceled");
	if (o->done && !o->signal && o->exit_code == 0)
		return 0;
	char att[64] = "";
	if (s->max_attempts > 1)
		snprintf(att, sizeof att, " (attempt %d of %d)", s->attempt, s->max_attempts);
	if (o->signal)
		return qd_err_set(err, QD_ECRASHED, "", "the job's process crashed (%s) while %s%s; the model "
				  "is kept, see the log", o->signal_name, phase, att);
	if (o->reported) {
		err->code = o->code;
		snprintf(err->field, sizeof err->field, "%s", o->field);
		snprintf(err->msg, sizeof err->msg, "%s", o->msg);
		return -o->code;
	}
	if (o->exit_code == 127)
		return qd_err_set(err, QD_EINTERNAL, "", "the job's process could not be started (exec of "
				  "%s failed)", s->exe ? s->exe : "/proc/self/exe");
	return qd_err_set(err, QD_ECRASHED, "", "the job's process exited with status %d while %s without "
			  "reporting a result%s; the model is kept, see the log", o->exit_code, phase, att);
}

/* The server's limits, lowered by the workflow's "limits" object (validated at submit
 * time: qd_job_limits_check). */
struct qd_job_limits qd_job_limits_of(const struct qd_config *cfg, const json_t *workflow)
{
	struct qd_job_limits l = { cfg->max_job_seconds, cfg->max_job_memory_mb, cfg->max_output_mb };
	const json_t *jl = json_object_get(workflow, "limits");
	int64_t *f[] = { &l.max_seconds, &l.max_memory_mb, &l.max_output_mb };
	const char *keys[] = { "max_job_seconds", "max_job_memory_mb", "max_output_mb" };
	for (size_t i = 0; i < 3; i++) {
		const json_t *v = json_object_get(jl, keys[i]);
		if (json_is_integer(v) && json_integer_value(v) > 0 &&
		    (*f[i] == 0 || json_integer_value(v) < *f[i]))
			*f[i] = json_integer_value(v);
	}
	return l;
}

int qd_job_limits_check(const struct qd_config *cfg, const json_t *workflow, struct qd_err *err)
{
	/* the shape (known keys, positive integers) is checked by qd_workflow_validate */
	const json_t *jl = json_object_get(workflow, "limits");
	const struct { const char *key; int64_t server; const char *unit; } t[] = {
		{ "max_job_seconds", cfg->max_job_seconds, "s" },
		{ "max_job_memory_mb", cfg->max_job_memory_mb, "MiB" },
		{ "max_output_mb", cfg->max_output_mb, "MiB" },
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(t); i++) {
		const json_t *v = json_object_get(jl, t[i].key);
		char field[64];
		snprintf(field, sizeof field, "limits.%s", t[i].key);
		if (json_is_integer(v) && t[i].server > 0 && json_integer_value(v) > t[i].server)
			return qd_err_set(err, QD_EINVAL, field, "'%s' = %lld is above the server's maximum "
					  "of %lld %s (option %s)", field, (long long)json_integer_value(v),
					  (long long)t[i].server, t[i].unit, t[i].key);
	}
	return 0;
}
