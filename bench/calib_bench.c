/* Calibration cost against plain inference: runs a model on random input N times without
 * a hook, then through qd_calib_run with every float node output and graph input added,
 * for each method, and prints the time ratio; plus kernel throughput (min/max, binning)
 * and the Entropy search on a widened histogram. Prints figures, asserts nothing.
 *   calib_bench MODEL.onnx INPUT_NAME d0,d1,... [batches]
 * Build: cc -O2 -I. -Icommon -I$B/gen bench/calib_bench.c $B/libquantd.a <libs> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "passes/calibrate.h"

struct feed { const char *name; int nd; int64_t dims[8]; int left; uint64_t s; };

static void noop_hook(void *ud, const Onnx__NodeProto *n, const struct qd_tensor *t) {}

static int next(void *ud, struct qd_tensor **in, size_t *n_in, struct qd_err *err)
{
	struct feed *f = ud;
	if (!f->left) return 0;
	f->left--;
	struct qd_tensor *t = calloc(1, sizeof(*t));
	qd_tensor_alloc(t, f->name, QD_DT_FLOAT, f->nd, f->dims);
	float *x = t->data;
	for (int64_t i = 0; i < qd_tensor_count(t); i++) {
		f->s = f->s * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = (float)((f->s >> 40) & 0xffff) / 65536.0f - 0.5f;
	}
	*in = t;
	*n_in = 1;
	(void)err;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) { fprintf(stderr, "usage: calib_bench MODEL INPUT d0,d1,.. [batches]\n"); return 2; }
	int nb = argc > 4 ? atoi(argv[4]) : 5;
	struct feed f0 = { .name = argv[2], .s = 42 };
	for (char *p = argv[3]; *p && f0.nd < 8; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p))
		f0.dims[f0.nd++] = atoll(p);
	struct qd_model *m;
	struct qd_engine *e;
	struct qd_err err = { 0 };
	if (qd_model_load_file(argv[1], NULL, &m, &err) || qd_engine_load(m, NULL, &e, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	struct feed fw = f0;   /* warm-up batch */
	fw.left = 1;
	struct qd_tensor *in, *out;
	size_t n_in, n_out;
	if (next(&fw, &in, &n_in, &err) == 1) {
		qd_engine_run(e, in, n_in, &out, &n_out, NULL, &err);
		qd_tensors_release(out, n_out);
		qd_tensors_release(in, n_in);
	}
	/* plain inference (hook set to a no-op so the engine runs the same unfused nodes) */
	struct feed f = f0;
	f.left = nb;
	double t0 = qd_now_mono();
	while (next(&f, &in, &n_in, &err) == 1) {
		if (qd_engine_run(e, in, n_in, &out, &n_out, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
		qd_tensors_release(out, n_out);
		qd_tensors_release(in, n_in);
	}
	double plain = qd_now_mono() - t0;
	printf("plain inference: %.3f s for %d batches (fused)\n", plain, nb);
	/* a hook makes the engine run the unfused nodes (so every tensor is seen): that is
	 * the floor of any calibration run */
	qd_engine_set_hook(e, noop_hook, NULL);
	f = f0;
	f.left = nb;
	t0 = qd_now_mono();
	while (next(&f, &in, &n_in, &err) == 1) {
		qd_engine_run(e, in, n_in, &out, &n_out, NULL, &err);
		qd_tensors_release(out, n_out);
		qd_tensors_release(in, n_in);
	}
	double unfused = qd_now_mono() - t0;
	qd_engine_set_hook(e, NULL, NULL);
	printf("no-op hook (unfused): %.3f s (%.2fx plain)\n", unfused, unfused / plain);
	const Onnx__GraphProto *g = m->proto->graph;
	for (int meth = 0; meth < 4; meth++) {
		struct qd_calib_opts o = { .method = (enum qd_calib_method)meth, .symmetric = -1 };
		struct qd_calib *c;
		qd_calib_new(&o, &c, &err);
		size_t nt = 0;
		for (size_t i = 0; i < g->n_node; i++)
			for (size_t k = 0; k < g->node[i]->n_output; k++) nt += !qd_calib_add_tensor(c, g->node[i]->output[k]);
		qd_calib_add_tensor(c, argv[2]);
		f = f0;
		f.left = nb;
		t0 = qd_now_mono();
		if (qd_calib_run(c, e, next, &f, NULL, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
		double run = qd_now_mono() - t0;
		t0 = qd_now_mono();
		if (qd_calib_compute(c, &err)) fprintf(stderr, "compute: %s\n", err.msg);
		double comp = qd_now_mono() - t0;
		printf("%-12s %zu tensors: run %.3f s (%.2fx plain, %.2fx no-op hook), compute %.3f s, "
		       "peak %zu bytes\n", qd_calib_method_name(meth), nt, run, run / plain, run / unfused,
		       comp, qd_calib_peak_bytes(c));
		qd_calib_free(c);
	}
	qd_engine_free(e);
	qd_model_free(m);

	size_t n = 1 << 24;
	float *x = malloc(n * sizeof(*x));
	for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 100003) / 50000.0f - 1.0f;
	float a, b;
	size_t nn, ni;
	t0 = qd_now_mono();
	for (int r = 0; r < 5; r++) qd_calib_minmax(x, n, &a, &b, &nn, &ni);
	double tf = (qd_now_mono() - t0) / 5;
	t0 = qd_now_mono();
	qd_calib_minmax_ref(x, n, &a, &b, &nn, &ni);
	double tr = qd_now_mono() - t0;
	printf("minmax: %.2f ns/elem (ref %.2f)\n", tf * 1e9 / n, tr * 1e9 / n);
	float ed[2049];
	for (int i = 0; i <= 2048; i++) ed[i] = -1.0f + 2.0f * i / 2048;
	int64_t *h = calloc(2048, sizeof(*h));
	t0 = qd_now_mono();
	qd_calib_bin(x, n, false, ed, 2048, h);
	tf = qd_now_mono() - t0;
	t0 = qd_now_mono();
	qd_calib_bin_ref(x, n, false, ed, 2048, h);
	tr = qd_now_mono() - t0;
	printf("bin (2048 bins): %.2f ns/elem (ref %.2f)\n", tf * 1e9 / n, tr * 1e9 / n);
	for (size_t i = 0; i < n; i += 2) x[i] = 0;   /* ReLU-like: half the values in one bin */
	t0 = qd_now_mono();
	qd_calib_bin(x, n, false, ed, 2048, h);
	tf = qd_now_mono() - t0;
	printf("bin (2048 bins, half zeros): %.2f ns/elem\n", tf * 1e9 / n);
	size_t hb = 30000;
	int64_t *hh = calloc(hb, sizeof(*hh));
	for (size_t i = 0; i < hb; i++) hh[i] = (int64_t)(1e5 / (1 + ((double)i - hb / 2) * ((double)i - hb / 2) / 1e4));
	double *kl = malloc(hb * sizeof(*kl));
	t0 = qd_now_mono();
	long nc = qd_calib_entropy_kl(hh, hb, 128, kl);
	tf = qd_now_mono() - t0;
	t0 = qd_now_mono();
	qd_calib_entropy_kl_ref(hh, hb, 128, kl);
	tr = qd_now_mono() - t0;
	printf("entropy search, %zu bins, %ld candidates: %.4f s (ref %.2f s)\n", hb, nc, tf, tr);
	return 0;
}
