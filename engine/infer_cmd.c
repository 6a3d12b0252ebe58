/* engine/infer_cmd.c — `quantd infer`: run a model on inputs from .npz files or ONNX
 * TensorProto .pb files (name=file.pb) and write the outputs as .npz; --profile prints
 * per-op-type time and peak memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/engine_internal.h"
#include "engine/dataset.h"

/* --hook: a hook that only counts, so the figure is the engine's cost of running with a
 * hook (fusions off, every output kept until the hook saw it), not the observer's work
 * (bench/calib_bench.c measures the calibrators). */
struct hook_acc {
	long tensors;
};

static void count_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	(void)node;
	(void)t;
	((struct hook_acc *)ud)->tensors++;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: quantd infer --model M.onnx --input in.npz|name=t.pb [--input ...]\n"
		   "                    --output out.npz [--threads N] [--profile] [--repeat N]\n"
		   "                    [--max-tensor-mb N] [--max-memory-mb N] [--max-seconds S] [--hook]\n"
		   "  --repeat N: run N more times after the first and print the median latency\n"
		   "  --hook: run as calibration does, with a tensor hook that sees every node output\n"
		   "          (fusions off); the hook only counts: prints the tensors seen per run\n"
		   "  --max-tensor-mb N: refuse any tensor larger than N MiB (default 16384; 0 = no limit)\n"
		   "  --max-memory-mb N: refuse to hold more than N MiB of tensors at once (default\n"
		   "                     65536 or the machine's memory, whichever is smaller; 0 = no limit)\n"
		   "  --max-seconds S: stop a run after S seconds of wall time (default: no limit)\n"
		   "Exit status: 0 on success, 1 on any error (the message names it), 2 on bad usage.\n");
}

/* --max-*-mb N (N >= 0 MiB, 0 = no limit) into *bytes. */
static int parse_mb(const char *opt, const char *v, size_t *bytes)
{
	char *e;
	double mb = strtod(v, &e);
	if (e == v || *e || !(mb >= 0) || mb > 1e12) {
		fprintf(stderr, "quantd infer: invalid %s '%s' (MiB, 0 = no limit)\n", opt, v);
		return -1;
	}
	*bytes = mb == 0 ? QD_ENGINE_NO_LIMIT : (size_t)(mb * 1048576.0) ? (size_t)(mb * 1048576.0) : 1;
	return 0;
}

static int add_tensor(struct qd_tensor **v, size_t *n, struct qd_tensor *t)
{
	struct qd_tensor *nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv) return -QD_ENOMEM;
	*v = nv;
	nv[(*n)++] = *t;
	return 0;
}

/* name=file.pb → tensor named name (the proto's own name is ignored). */
static int read_pb(const char *spec, struct qd_tensor *t, struct qd_err *err)
{
	const char *eq = strchr(spec, '=');
	const char *path = eq ? eq + 1 : spec;
	struct qd_buf b = {0};
	int rc = qd_file_read(path, &b, err);
	if (rc) return rc;
	Onnx__TensorProto *p = onnx__tensor_proto__unpack(NULL, b.len, b.data);
	qd_buf_free(&b);
	if (!p) return qd_err_set(err, QD_EPARSE, path, "'%s' is not an ONNX TensorProto", path);
	rc = qd_tensor_from_proto(p, t, err);
	onnx__tensor_proto__free_unpacked(p, NULL);
	if (rc) return rc;
	if (eq) {
		free(t->name);
		t->name = strndup(spec, eq - spec);
	} else if (!t->name || !*t->name) {
		qd_tensor_release(t);
		return qd_err_set(err, QD_EINVAL, path, "'%s' has no tensor name: use --input name=%s", path, path);
	}
	return 0;
}

struct prof_row { const char *op; double t; long n; };
struct prof_acc { struct prof_row rows[256]; int n; };
static void prof_cb(void *ud, const char *op, double t, long n)
{
	struct prof_acc *a = ud;
	if (a->n < 256) a->rows[a->n++] = (struct prof_row){ op, t, n };
}
static int prof_cmp(const void *x, const void *y)
{
	const struct prof_row *a = x, *b = y;
	return a->t < b->t ? 1 : a->t > b->t ? -1 : 0;
}

int qd_cmd_infer(int argc, char **argv)
{
	const char *model = NULL, *output = NULL;
	const char *inputs[64];
	int n_inputs = 0, threads = 1, repeat = 0;
	bool profile = false, hook = false;
	struct hook_acc acc = { 0 };
	size_t max_tensor = 0, max_memory = 0;
	double max_seconds = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--model") && v) { model = v; i++; }
		else if (!strcmp(a, "--input") && v) {
			if (n_inputs == 64) { fprintf(stderr, "quantd infer: too many --input\n"); return 2; }
			inputs[n_inputs++] = v; i++;
		}
		else if (!strcmp(a, "--output") && v) { output = v; i++; }
		else if (!strcmp(a, "--threads") && v) {
			char *e;
			long t = strtol(v, &e, 10);
			if (*e || t < 1 || t > 256) { fprintf(stderr, "quantd infer: invalid --threads '%s'\n", v); return 2; }
			threads = (int)t; i++;
		}
		else if (!strcmp(a, "--repeat") && v) {
			char *e;
			long r = strtol(v, &e, 10);
			if (*e || r < 0 || r > 10000) { fprintf(stderr, "quantd infer: invalid --repeat '%s'\n", v); return 2; }
			repeat = (int)r; i++;
		}
		else if (!strcmp(a, "--max-tensor-mb") && v) { if (parse_mb(a, v, &max_tensor)) return 2; i++; }
		else if (!strcmp(a, "--max-memory-mb") && v) { if (parse_mb(a, v, &max_memory)) return 2; i++; }
		else if (!strcmp(a, "--max-seconds") && v) {
			char *e;
			max_seconds = strtod(v, &e);
			if (e == v || *e || !(max_seconds > 0) || max_seconds > 1e9) {
				fprintf(stderr, "quantd infer: invalid --max-seconds '%s' (seconds > 0)\n", v);
				return 2;
			}
			i++;
		}
		else if (!strcmp(a, "--profile")) profile = true;
		else if (!strcmp(a, "--hook")) hook = true;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
		else { fprintf(stderr, "quantd infer: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
	}
	if (!model || !output || !n_inputs) { usage(stderr); return 2; }
	struct qd_err err = {0};
	struct qd_model *m = NULL;
	struct qd_engine *e = NULL;
	struct qd_tensor *in = NULL, *out = NULL;
	size_t nin = 0, nout = 0;
	int rc = 0;
	for (int i = 0; i < n_inputs; i++) {
		const char *s = inputs[i];
		size_t l = strlen(s);
		if (l > 4 && !strcmp(s + l - 4, ".npz") && !strchr(s, '=')) {
			struct qd_tensor *t;
			size_t n;
			/* one array per model input: as many as a model can have */
			struct qd_dataset_limits lim = { .max_arrays = (size_t)1 << 20 };
			if ((rc = qd_npz_read_lim(s, &lim, &t, &n, &err))) goto out;
			for (size_t k = 0; k < n && !rc; k++) rc = add_tensor(&in, &nin, &t[k]);
			free(t);
			if (rc) { qd_err_set(&err, QD_ENOMEM, "", "out of memory"); goto out; }
		} else {
			struct qd_tensor t;
			if ((rc = read_pb(s, &t, &err))) goto out;
			if ((rc = add_tensor(&in, &nin, &t))) { qd_tensor_release(&t); qd_err_set(&err, QD_ENOMEM, "", "out of memory"); goto out; }
		}
	}
	if ((rc = qd_model_load_file(model, NULL, &m, &err))) goto out;
	struct qd_engine_opts o = { .threads = threads, .profile = profile, .max_tensor_bytes = max_tensor,
				    .max_memory_bytes = max_memory, .max_seconds = max_seconds };
	if ((rc = qd_engine_load(m, &o, &e, &err))) goto out;
	if (hook)
		qd_engine_set_hook(e, count_hook, &acc);
	double t0 = qd_now_mono();
	if ((rc = qd_engine_run(e, in, nin, &out, &nout, NULL, &err))) goto out;
	double dt = qd_now_mono() - t0;
	if ((rc = qd_npz_write(output, out, nout, &err))) goto out;
	if (repeat > 0) {
		double *ts = calloc(repeat, sizeof(double));
		if (!ts) { rc = qd_err_set(&err, QD_ENOMEM, "", "out of memory"); goto out; }
		for (int r = 0; r < repeat && !rc; r++) {
			struct qd_tensor *o2 = NULL;
			size_t n2 = 0;
			double t1 = qd_now_mono();
			rc = qd_engine_run(e, in, nin, &o2, &n2, NULL, &err);
			ts[r] = qd_now_mono() - t1;
			qd_tensors_release(o2, n2);
		}
		for (int a = 1; a < repeat; a++) /* insertion sort: tiny n */
			for (int b = a; b > 0 && ts[b - 1] > ts[b]; b--) { double x = ts[b]; ts[b] = ts[b - 1]; ts[b - 1] = x; }
		if (!rc) printf("latency_ms median %.3f min %.3f (%d runs, %d thread%s)\n", ts[repeat / 2] * 1e3,
				ts[0] * 1e3, repeat, threads, threads > 1 ? "s" : "");
		free(ts);
		if (rc) goto out;
	}
	if (hook)
		printf("hook: %ld tensors seen per run\n", acc.tensors / (repeat + 1));
	if (profile) {
		struct prof_acc a = { .n = 0 };
		qd_engine_profile(e, prof_cb, &a);
		qsort(a.rows, a.n, sizeof(a.rows[0]), prof_cmp);
		/* the profile sums every run: report per run */
		int runs = repeat + 1;
		printf("%-24s %10s %8s %6s   (per run, %d run%s)\n", "op", "ms", "calls", "%", runs, runs > 1 ? "s" : "");
		for (int i = 0; i < a.n; i++)
			printf("%-24s %10.3f %8ld %6.1f\n", a.rows[i].op, a.rows[i].t * 1e3 / runs, a.rows[i].n / runs,
			       dt > 0 ? 100.0 * a.rows[i].t / runs / dt : 0);
		printf("total %.3f ms, peak memory %.2f MiB (weights %.2f MiB)\n", dt * 1e3,
		       qd_engine_peak_bytes(e) / 1048576.0, qd_engine_const_bytes(e) / 1048576.0);
	}
out:
	if (rc) fprintf(stderr, "quantd infer: %s\n", err.msg[0] ? err.msg : qd_err_msg(rc));
	qd_tensors_release(out, nout);
	qd_tensors_release(in, nin);
	qd_engine_free(e);
	qd_model_free(m);
	return rc ? 1 : 0;
}
