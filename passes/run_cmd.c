/* `quantd run`: one-shot workflow run from the command line, like `olive run`: reads a
 * workflow JSON, runs its pass chain on a model and writes model.onnx, metrics.json and
 * footprint.json into the output directory. Progress on stderr (\r-updated on a tty). */
#include "passes/passes.h"
#include "daemon/daemon.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char run_usage[] =
	"usage: quantd run --config WORKFLOW.json [--model MODEL.onnx] [--data NAME=PATH]... --output DIR [options]\n"
	"\n"
	"Runs an Olive-style workflow (the \"passes\" section, in order) on one ONNX model and\n"
	"writes into DIR: model.onnx (+ model.onnx.data with external data), metrics.json\n"
	"(size ratio, quantized nodes per op type, cosine similarity / max abs error of every\n"
	"output against the float model on seeded random inputs) and footprint.json.\n"
	"\n"
	"options:\n"
	"  -c, --config FILE   workflow JSON: {\"passes\": {\"name\": {\"type\": \"OnnxDynamicQuantization\", ...}}}\n"
	"  -m, --model FILE    input model: FILE.onnx (its external data beside it) or the\n"
	"                      folder holding one .onnx and its data; may be omitted when the\n"
	"                      workflow has input_model.model_path (or \"model\")\n"
	"  -o, --output DIR    output directory (created if missing)\n"
	"  -t, --threads N     engine threads for the evaluation (default 1)\n"
	"  -w, --workers N     search trials run at once, each in a process of its own as in\n"
	"                      the daemon (default QUANTD_MAX_WORKERS_PER_JOB when set, else 1);\n"
	"                      the trials and the best model are those of a one-at-a-time run\n"
	"  -s, --input-shape NAME=D,D,...\n"
	"                      concrete shape of an input for the evaluation (repeatable; sets\n"
	"                      input_model.io_config like Olive). Symbolic dims default to 1 for\n"
	"                      the first dimension and 32 for the others\n"
	"  -d, --data NAME=PATH\n"
	"                      bind data config NAME to a dataset file (.npz, a tar of ONNX\n"
	"                      test_data_set_* folders, or such a directory); repeatable. A NAME\n"
	"                      the workflow's data_configs lacks is added as {\"dataset\": PATH}.\n"
	"                      A data config no pass calibrates with is the held-out data the\n"
	"                      accuracy metrics are measured on\n"
	"      --max-tensor-mb N   refuse any tensor larger than N MiB in the engine's model runs\n"
	"                      (default 4096; 0 = no limit)\n"
	"      --max-memory-mb N   refuse to hold more than N MiB of tensors at once in a model run\n"
	"                      (default 65536 or the machine's memory, whichever is smaller; 0 = no limit)\n"
	"      --max-seconds S     stop a model run (calibration, evaluation) after S seconds\n"
	"  -q, --quiet         no progress line, warnings and errors only\n"
	"  --skip-unsupported-passes  skip Olive passes quantd does not run (and passes not\n"
	"                      implemented yet) with a warning each, as \"unsupported_passes\": \"skip\"\n"
	"  -h, --help          this text\n"
	"\n"
	"Pass types and their parameters: GET /v1/passes on a running daemon, or the schemas in\n"
	"passes/registry.c. Exit status: 0 on success, 1 on any error, 2 on bad usage.\n";

struct run_ui {
	bool tty, quiet, line_open;
	struct qd_trial_runner runner;   /* --workers > 1: the trials' processes */
};

/* a trial process's log line (already "trial N: ..."), through the log sink */
static void run_trial_log(void *ud, enum qd_log_level lvl, const char *line)
{
	(void)ud;
	qd_log(lvl, NULL, "%s", line);
}

/* The workflow's run_trial hook: the daemon's trial runner (a `quantd job-exec` child). */
static int run_trial_proc(void *ud, const json_t *trial, const volatile int *stop, json_t **result,
			  struct qd_err *err)
{
	struct run_ui *ui = ud;
	return qd_job_run_trial(&ui->runner, trial, stop, result, err);
}


static void ui_clear(struct run_ui *ui)
{
	if (ui->tty && ui->line_open) {
		fputs("\r\033[K", stderr);
		ui->line_open = false;
	}
}

static void run_log_sink(void *ud, enum qd_log_level lvl, const char *job, const char *line)
{
	struct run_ui *ui = ud;
	if (ui->quiet && lvl < QD_LOG_WARN)
		return;
	ui_clear(ui);
	fprintf(stderr, "%s %s\n", qd_log_level_name(lvl), line);
}

static void run_progress(void *ud, double frac, const char *msg)
{
	struct run_ui *ui = ud;
	if (ui->quiet)
		return;
	if (ui->tty) {
		fprintf(stderr, "\r\033[K[%3d%%] %s", (int)(frac * 100.0 + 0.5), msg);
		ui->line_open = true;
		if (frac >= 1.0) {
			fputc('\n', stderr);
			ui->line_open = false;
		}
	} else {
		fprintf(stderr, "[%3d%%] %s\n", (int)(frac * 100.0 + 0.5), msg);
	}
	fflush(stderr);
}

/* --input-shape NAME=D,D → input_model.io_config.{input_names, input_shapes}. */
static int add_shapes(json_t *wf, const char *const *shapes, int n, struct qd_err *err)
{
	if (!n)
		return 0;
	if (!json_is_object(wf))
		return 0;   /* validation reports it */
	json_t *im = json_object_get(wf, "input_model");
	if (!im) {
		im = json_object();
		json_object_set_new(wf, "input_model", im);
	}
	json_t *io = json_object_get(im, "io_config");
	if (!io) {
		io = json_object();
		json_object_set_new(im, "io_config", io);
	}
	json_t *names = json_array(), *dims = json_array();
	json_object_set_new(io, "input_names", names);
	json_object_set_new(io, "input_shapes", dims);
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(shapes[i], '=');
		if (!eq || eq == shapes[i])
			return qd_err_set(err, QD_EINVAL, "--input-shape", "bad --input-shape '%s' (NAME=D,D,...)",
					  shapes[i]);
		json_array_append_new(names, json_stringn(shapes[i], (size_t)(eq - shapes[i])));
		json_t *d = json_array();
		json_array_append_new(dims, d);
		for (const char *p = eq + 1; *p;) {
			char *end;
			long v = strtol(p, &end, 10);
			if (end == p || v <= 0 || (*end && *end != ','))
				return qd_err_set(err, QD_EINVAL, "--input-shape", "bad --input-shape '%s'", shapes[i]);
			json_array_append_new(d, json_integer(v));
			p = *end ? end + 1 : end;
		}
	}
	return 0;
}

/* --data NAME=PATH → data_configs[NAME].dataset = PATH (dict form; list form: the entry
 * with that name). */
static int add_data(json_t *wf, const char *const *data, int n, struct qd_err *err)
{
	if (!n || !json_is_object(wf))
		return 0;
	json_t *dcs = json_object_get(wf, "data_configs");
	if (!dcs) {
		dcs = json_object();
		json_object_set_new(wf, "data_configs", dcs);
	}
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(data[i], '=');
		if (!eq || eq == data[i] || !eq[1])
			return qd_err_set(err, QD_EINVAL, "--data", "bad --data '%s' (NAME=PATH)", data[i]);
		char *name = strndup(data[i], (size_t)(eq - data[i]));
		if (!name)
			return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		json_t *cfg = NULL;
		if (json_is_array(dcs)) {
			size_t k; json_t *c;
			json_array_foreach(dcs, k, c)
				if (!strcmp(json_string_value(json_object_get(c, "name")) ?: "", name))
					cfg = c;
			if (!cfg) {
				cfg = json_pack("{s:s}", "name", name);
				json_array_append_new(dcs, cfg);
			}
		} else if (json_is_object(dcs)) {
			cfg = json_object_get(dcs, name);
			if (!cfg) {
				cfg = json_object();
				json_object_set_new(dcs, name, cfg);
			}
		}
		free(name);
		if (!json_is_object(cfg))
			return 0;   /* validation reports the malformed data_configs */
		json_object_set_new(cfg, "dataset", json_string(eq + 1));
	}
	return 0;
}

/* The workflow's "limits" in a one-shot run: max_job_seconds stops it at the next check
 * (SIGALRM sets the cancel flag), max_job_memory_mb is this process's address space,
 * max_output_mb the largest file it may write (a write beyond fails with EFBIG). */
static volatile int run_timed_out;
static void run_on_alarm(int sig) { (void)sig; run_timed_out = 1; }

static void run_limits_apply(const json_t *lim)
{
	json_int_t secs = json_integer_value(json_object_get(lim, "max_job_seconds"));
	char why[512];
	signal(SIGXFSZ, SIG_IGN);   /* a write beyond max_output_mb fails with EFBIG */
	qd_proc_limits(json_integer_value(json_object_get(lim, "max_job_memory_mb")),
		       json_integer_value(json_object_get(lim, "max_output_mb")), false, why, sizeof why);
	if (why[0])
		fprintf(stderr, "quantd run: warning: %s\n", why);
	if (secs > 0) {
		signal(SIGALRM, run_on_alarm);
		alarm((unsigned)secs);
	}
}

/* --model DIR: the one .onnx file at DIR's top (its external data beside it); *out is
 * new. A path that is not a directory is left alone (*out NULL). */
static int model_in_dir(const char *path, char **out, struct qd_err *err)
{
	struct stat sb;
	*out = NULL;
	if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return 0;
	DIR *d = opendir(path);
	if (!d)
		return qd_err_set(err, QD_EIO, "model", "cannot open model directory '%s': %s", path,
				  strerror(errno));
	char *first = NULL;
	int rc = 0;
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l <= 5 || strcmp(e->d_name + l - 5, ".onnx"))
			continue;
		if (first)
			rc = qd_err_set(err, QD_EINVAL, "model", "model directory '%s' holds more than one "
					".onnx file ('%s' and '%s'): give --model DIR/NAME.onnx", path,
					first, e->d_name);
		else if (!(first = strdup(e->d_name)))
			rc = qd_err_set(err, QD_ENOMEM, "model", "out of memory");
	}
	closedir(d);
	if (!rc && !first)
		rc = qd_err_set(err, QD_EINVAL, "model", "model directory '%s' holds no .onnx file", path);
	if (!rc && !(*out = qd_asprintf("%s/%s", path, first)))
		rc = qd_err_set(err, QD_ENOMEM, "model", "out of memory");
	free(first);
	return rc;
}

int qd_cmd_run(int argc, char **argv)
{
	const char *data[32];
	int n_data = 0;
	const char *config = NULL, *model = NULL, *output = NULL;
	const char *shapes[32];
	int n_shapes = 0;
	int threads = 1, workers = 0;
	size_t max_tensor = 0, max_memory = 0;
	double max_seconds = 0;
	struct run_ui ui = { .tty = isatty(2) };
	bool skip_unsupported = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(run_usage, stdout);
			return 0;
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			ui.quiet = true;
			continue;
		} else if (!strcmp(a, "--skip-unsupported-passes")) {
			skip_unsupported = true;
			continue;
		} else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			dst = &config;
		} else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
			dst = &model;
		} else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--output_path")) {
			dst = &output;
		} else if (!strcmp(a, "-s") || !strcmp(a, "--input-shape")) {
			if (i + 1 >= argc || n_shapes == (int)QD_ARRAY_LEN(shapes)) {
				fprintf(stderr, "quantd run: option '%s' needs a value\n%s", a, run_usage);
				return 2;
			}
			shapes[n_shapes++] = argv[++i];
			continue;
		} else if (!strcmp(a, "-d") || !strcmp(a, "--data")) {
			if (i + 1 >= argc || n_data == (int)QD_ARRAY_LEN(data)) {
				fprintf(stderr, "quantd run: option '%s' needs a value\n%s", a, run_usage);
				return 2;
			}
			data[n_data++] = argv[++i];
			continue;
		} else if (!strcmp(a, "--max-tensor-mb") || !strcmp(a, "--max-memory-mb") ||
			   !strcmp(a, "--max-seconds")) {
			char *end;
			double v = i + 1 < argc ? strtod(argv[i + 1], &end) : -1;
			if (i + 1 >= argc || end == argv[i + 1] || *end || !(v >= 0) || v > 1e12 ||
			    (a[6] == 's' && v == 0)) {
				fprintf(stderr, "quantd run: bad value for '%s'\n%s", a, run_usage);
				return 2;
			}
			i++;
			if (a[6] == 's')
				max_seconds = v;
			else {
				size_t b = v == 0 ? SIZE_MAX : (size_t)(v * 1048576.0) ? (size_t)(v * 1048576.0) : 1;
				*(a[6] == 't' ? &max_tensor : &max_memory) = b;
			}
			continue;
		} else if (!strcmp(a, "-w") || !strcmp(a, "--workers")) {
			char *end;
			long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
			if (i + 1 >= argc || *end || v < 1 || v > 256) {
				fprintf(stderr, "quantd run: bad value for '%s' (1 to 256)\n%s", a, run_usage);
				return 2;
			}
			workers = (int)v;
			i++;
			continue;
		} else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "quantd run: option '%s' needs a value\n%s", a, run_usage);
				return 2;
			}
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 256) {
				fprintf(stderr, "quantd run: bad thread count '%s'\n", argv[i]);
				return 2;
			}
			threads = (int)v;
			continue;
		} else {
			fprintf(stderr, "quantd run: unknown option '%s'\n%s", a, run_usage);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "quantd run: option '%s' needs a value\n%s", a, run_usage);
			return 2;
		}
		*dst = argv[++i];
	}
	if (!config || !output) {
		fprintf(stderr, "quantd run: --config and --output are required\n%s", run_usage);
		return 2;
	}
	if (!workers) {
		const char *e = getenv("QUANTD_MAX_WORKERS_PER_JOB");
		char *end;
		long v = e && *e ? strtol(e, &end, 10) : 1;
		if (e && *e && (*end || v < 0 || v > 256)) {
			fprintf(stderr, "quantd run: bad QUANTD_MAX_WORKERS_PER_JOB '%s' (0 to 256)\n", e);
			return 2;
		}
		workers = v > 0 ? (int)v : 1;
	}
	qd_log_set_sink(run_log_sink, &ui);
	if (ui.quiet)
		qd_log_set_level(QD_LOG_WARN);

	json_error_t je;
	json_t *wf = json_load_file(config, JSON_REJECT_DUPLICATES, &je);
	if (!wf) {
		fprintf(stderr, "quantd run: error: cannot parse workflow '%s': %s (line %d, column %d)\n", config,
			je.text, je.line, je.column);
		return 1;
	}
	struct qd_err err = { 0 };
	if (skip_unsupported)
		json_object_set_new(wf, "unsupported_passes", json_string("skip"));
	qd_workflow_bind_datasets(wf);
	int rc = add_shapes(wf, shapes, n_shapes, &err);
	if (rc == 0)
		rc = add_data(wf, data, n_data, &err);
	if (rc == 0) {
		json_t *problems = NULL;
		rc = qd_workflow_check(wf, model ? QD_WF_CHECK_MODEL_BOUND : 0, &problems, NULL, &err);
		size_t i;
		json_t *p;
		if (json_array_size(problems) > 1)
			json_array_foreach(problems, i, p)
				if (i > 0)
					fprintf(stderr, "quantd run: error: %s (%s)\n",
						json_string_value(json_object_get(p, "message")),
						json_string_value(json_object_get(p, "field")));
		json_decref(problems);
	}
	if (rc == 0 && !model && !(model = qd_workflow_model_path(wf)))
		rc = qd_err_set(&err, QD_EINVAL, "model", "no input model: give --model or input_model.model_path");
	char *model_file = NULL;
	if (rc == 0 && !(rc = model_in_dir(model, &model_file, &err)) && model_file)
		model = model_file;
	if (rc == 0)
		rc = qd_mkdir_p(output, &err);
	json_t *metrics = NULL;
	if (rc == 0) {
		run_limits_apply(json_object_get(wf, "limits"));
		struct qd_workflow_req req = { .model_path = model, .workflow = wf, .out_dir = output,
					       .threads = threads, .max_tensor_bytes = max_tensor,
					       .max_memory_bytes = max_memory, .max_seconds = max_seconds,
					       .parallel = workers };
		const json_t *lim = json_object_get(wf, "limits");
		ui.runner = (struct qd_trial_runner){ .model_path = model, .workflow = wf, .threads = threads,
			.log_level = ui.quiet ? QD_LOG_WARN : QD_LOG_INFO,
			.limits = { 0, json_integer_value(json_object_get(lim, "max_job_memory_mb")),
				    json_integer_value(json_object_get(lim, "max_output_mb")) },
			.engine = { max_tensor, max_memory, max_seconds }, .ud = &ui, .log = run_trial_log };
		struct qd_workflow_hooks hooks = { .ud = &ui, .progress = run_progress, .cancel = &run_timed_out,
						   .run_trial = workers > 1 ? run_trial_proc : NULL };
		rc = qd_workflow_run(&req, &hooks, &metrics, &err);
		alarm(0);
		if (run_timed_out)
			rc = qd_err_set(&err, QD_ETIMEOUT, "limits.max_job_seconds", "the workflow ran longer than "
					"max_job_seconds = %lld", (long long)json_integer_value(
						json_object_get(json_object_get(wf, "limits"), "max_job_seconds")));
		else if (rc == -QD_ENOMEM && json_object_get(json_object_get(wf, "limits"), "max_job_memory_mb"))
			qd_err_wrap(&err, "the workflow exceeded the memory limit of %lld MiB",
				    (long long)json_integer_value(json_object_get(json_object_get(wf, "limits"),
										  "max_job_memory_mb")));
	}
	ui_clear(&ui);
	if (rc < 0) {
		fprintf(stderr, "quantd run: error: %s%s%s%s\n", err.msg[0] ? err.msg : qd_err_msg(rc),
			err.field[0] ? " (" : "", err.field, err.field[0] ? ")" : "");
		json_decref(wf);
		free(model_file);
		return 1;
	}
	free(model_file);
	model = NULL;
	const json_t *size = json_object_get(metrics, "size");
	const json_t *acc = json_object_get(metrics, "accuracy");
	fprintf(stderr, "quantd run: wrote %s/model.onnx: %lld -> %lld bytes (ratio %.3f), %lld nodes quantized",
		output, (long long)json_integer_value(json_object_get(size, "float_bytes")),
		(long long)json_integer_value(json_object_get(size, "quantized_bytes")),
		json_real_value(json_object_get(size, "ratio")),
		(long long)json_integer_value(json_object_get(metrics, "quantized_nodes_total")));
	if (!strcmp(json_string_value(json_object_get(acc, "status")) ?: "", "ok"))
		fprintf(stderr, ", min cosine vs float %.6f\n", json_real_value(json_object_get(acc, "min_cosine")));
	else
		fprintf(stderr, "; accuracy %s: %s\n", json_string_value(json_object_get(acc, "status")) ?: "?",
			json_string_value(json_object_get(acc, "reason")) ?: "");
	json_decref(metrics);
	json_decref(wf);
	return 0;
}
