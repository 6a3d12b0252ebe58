/* Drives passes/calibrate.c for tests/calib/run_calib.sh: reads streamed batches from a
 * file, observes them batch by batch, computes and writes every tensor's result.
 *   calib_driver CASE.bin OUTDIR METHOD SYM MA NBINS NQ PCT SCENARIO STRIDE
 * CASE.bin: u32 nbatch, u32 ntensor, then per batch, per tensor: u32 n, n float32.
 * Tensors are named t0, t1, ...  stdout, per tensor:
 *   tK ok|none RMIN RMAX AVG STD NBINS   (hex floats; avg/std nan when not Distribution)
 * and OUTDIR/tK.hist (int64 counts), OUTDIR/tK.edges (float32) for histogram methods. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "passes/calibrate.h"

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }

int main(int argc, char **argv)
{
	if (argc != 11) {
		fprintf(stderr, "usage: calib_driver CASE OUTDIR METHOD SYM MA NBINS NQ PCT SCENARIO STRIDE\n");
		return 2;
	}
	struct qd_calib_opts o = {
		.method = qd_calib_method_from_name(argv[3]),
		.symmetric = atoi(argv[4]),
		.moving_average = atoi(argv[5]) != 0,
		.num_bins = atoi(argv[6]),
		.num_quantized_bins = atoi(argv[7]),
		.percentile = atof(argv[8]),
		.scenario = strcmp(argv[9], "-") ? argv[9] : NULL,
	};
	int stride = atoi(argv[10]);
	struct qd_calib *c = NULL;
	struct qd_err err = { 0 };
	if (qd_calib_new(&o, &c, &err)) { fprintf(stderr, "new: %s\n", err.msg); return 1; }
	FILE *f = fopen(argv[1], "rb");
	if (!f) { perror(argv[1]); return 1; }
	uint32_t nb, nt;
	if (rd(f, &nb, 4) || rd(f, &nt, 4)) { fprintf(stderr, "bad case file\n"); return 1; }
	char name[32];
	for (uint32_t t = 0; t < nt; t++) {
		snprintf(name, sizeof(name), "t%u", t);
		qd_calib_add_tensor(c, name);
	}
	float *buf = NULL;
	size_t cap = 0;
	for (uint32_t b = 0; b < nb; b++) {
		for (uint32_t t = 0; t < nt; t++) {
			uint32_t n;
			if (rd(f, &n, 4)) { fprintf(stderr, "truncated\n"); return 1; }
			if (n > cap) { cap = n; buf = realloc(buf, cap * sizeof(*buf)); }
			if (rd(f, buf, (size_t)n * 4)) { fprintf(stderr, "truncated\n"); return 1; }
			snprintf(name, sizeof(name), "t%u", t);
			if (qd_calib_observe(c, name, buf, n)) { fprintf(stderr, "observe: %s\n", c ? "error" : ""); }
		}
		qd_calib_end_batch(c);
		if (stride) qd_calib_end_stride(c);
	}
	fclose(f);
	if (qd_calib_compute(c, &err)) { printf("error %s\n", err.msg); return 0; }
	for (uint32_t t = 0; t < nt; t++) {
		snprintf(name, sizeof(name), "t%u", t);
		float lo, hi, avg = NAN, sd = NAN;
		if (!qd_calib_range(c, name, &lo, &hi)) { printf("%s none\n", name); continue; }
		qd_calib_avg_std(c, name, &avg, &sd);
		const int64_t *h;
		const float *e;
		size_t n = 0;
		if (qd_calib_histogram(c, name, &h, &e, &n)) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s.hist", argv[2], name);
			FILE *g = fopen(path, "wb");
			if (g) { fwrite(h, 8, n, g); fclose(g); }
			snprintf(path, sizeof(path), "%s/%s.edges", argv[2], name);
			g = fopen(path, "wb");
			if (g) { fwrite(e, 4, n + 1, g); fclose(g); }
		}
		printf("%s ok %a %a %a %a %zu\n", name, lo, hi, avg, sd, n);
	}
	json_t *j = qd_calib_summary_json(c, 2);
	char *s = json_dumps(j, JSON_COMPACT);
	printf("summary %s\n", s);
	free(s);
	json_decref(j);
	free(buf);
	qd_calib_free(c);
	return 0;
}
