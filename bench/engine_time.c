/* bench/engine_time.c — first-run and best-of-N wall time of qd_engine_run for one model
 * and one .npz of inputs: engine_time model.onnx inputs.npz [runs] -> "first_ms best_ms". */
#include <stdio.h>
#include <stdlib.h>
#include "qd.h"
#include "engine/engine.h"

int main(int argc, char **argv)
{
	struct qd_err err = {0};
	struct qd_model *m = NULL;
	struct qd_engine *e = NULL;
	struct qd_tensor *in = NULL, *out = NULL;
	size_t nin = 0, nout = 0;
	int runs = argc > 3 ? atoi(argv[3]) : 5;
	if (argc < 3) {
		fprintf(stderr, "usage: engine_time model.onnx inputs.npz [runs]\n");
		return 2;
	}
	struct qd_engine_opts o = { .threads = 1 };
	if (qd_model_load_file(argv[1], NULL, &m, &err) || qd_engine_load(m, &o, &e, &err) ||
	    qd_npz_read(argv[2], &in, &nin, &err)) {
		fprintf(stderr, "engine_time: %s\n", err.msg);
		return 1;
	}
	double first = 0, best = 1e30;
	for (int i = 0; i < runs; i++) {
		double t0 = qd_now_mono();
		if (qd_engine_run(e, in, nin, &out, &nout, NULL, &err)) {
			fprintf(stderr, "engine_time: %s\n", err.msg);
			return 1;
		}
		double t = (qd_now_mono() - t0) * 1e3;
		qd_tensors_release(out, nout);
		if (i == 0) first = t;
		if (t < best) best = t;
	}
	printf("%.3f %.3f\n", first, best);
	qd_tensors_release(in, nin);
	qd_engine_free(e);
	qd_model_free(m);
	return 0;
}
