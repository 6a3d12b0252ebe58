/* bench/static_plain.c — the plain-inference baseline of bench/static_bench.sh: runs the
 * engine over a dataset's samples one batch at a time exactly as the static pass's
 * calibration does (passes/static.c calibrate(): qd_dataset_load + qd_dataset_bind,
 * qd_batches_init with batch size 1 — the model's fixed first dimension wins —, one
 * qd_engine with threads 1 and a 4 GiB tensor limit, qd_engine_run per batch), but with
 * no calibration hook installed, and then again with a no-op hook (with any hook set
 * the engine runs the unfused original nodes, engine/fuse.c, as it does under calibration).
 *
 *   static_plain model.onnx data.npz [runs]
 *   -> "plain_wall plain_cpu nohook_wall nohook_cpu samples engine_peak_bytes"
 * seconds = the loop over all batches (batch slicing included, engine load excluded, as
 * in calibration.seconds), wall and process CPU (user+sys of every thread); each the best
 * over `runs` passes over the dataset (default 1); the passes alternate plain / no-op hook. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "qd.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "passes/passes.h"

static void noop_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	(void)ud; (void)node; (void)t;
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	struct qd_err err = {0};
	struct qd_model *m = NULL;
	struct qd_engine *e = NULL;
	struct qd_dataset *ds = NULL;
	if (argc < 3) {
		fprintf(stderr, "usage: static_plain model.onnx data.npz [runs]\n");
		return 2;
	}
	int runs = argc > 3 ? atoi(argv[3]) : 1;
	if (runs < 1) runs = 1;
	struct qd_engine_opts o = { .threads = 1, .max_tensor_bytes = (size_t)4 << 30 };
	if (qd_model_load_file(argv[1], NULL, &m, &err) < 0 || qd_dataset_load(argv[2], NULL, &ds, &err) < 0 ||
	    qd_dataset_bind(ds, m, &err) < 0 || qd_engine_load(m, &o, &e, &err) < 0) {
		fprintf(stderr, "static_plain: %s\n", err.msg);
		return 1;
	}
	double best[2] = {1e30, 1e30}, best_cpu[2] = {1e30, 1e30};
	int64_t samples = 0;
	for (int k = 0; k < 2 * runs; k++) {
		int h = k & 1;
		qd_engine_set_hook(e, h ? noop_hook : NULL, NULL);
		struct qd_batches b = {0};
		if (qd_batches_init(&b, ds, m->proto->graph, 1, 0, &err) < 0) {
			fprintf(stderr, "static_plain: %s\n", err.msg);
			return 1;
		}
		double t0 = qd_now_mono(), c0 = cpu_now();
		for (;;) {
			struct qd_tensor *in = NULL, *out = NULL;
			size_t n_in = 0, n_out = 0;
			int rc = qd_batches_next(&b, &in, &n_in, &err);
			if (rc < 0) {
				fprintf(stderr, "static_plain: %s\n", err.msg);
				return 1;
			}
			if (rc == 0) break;
			rc = qd_engine_run(e, in, n_in, &out, &n_out, NULL, &err);
			if (out) qd_tensors_release(out, n_out);
			qd_tensors_release(in, n_in);
			if (rc) {
				fprintf(stderr, "static_plain: %s\n", err.msg);
				return 1;
			}
		}
		double t = qd_now_mono() - t0, ct = cpu_now() - c0;
		samples = b.end;
		qd_batches_free(&b);
		if (t < best[h]) best[h] = t;
		if (ct < best_cpu[h]) best_cpu[h] = ct;
	}
	qd_engine_set_hook(e, NULL, NULL);
	printf("%.4f %.4f %.4f %.4f %lld %zu\n", best[0], best_cpu[0], best[1], best_cpu[1], (long long)samples,
	       qd_engine_peak_bytes(e));
	qd_engine_free(e);
	qd_dataset_free(ds);
	qd_model_free(m);
	return 0;
}
