/* Helpers shared by the libFuzzer targets in fuzz/ (header-only: each target is one .c
 * file): tiny models built in code to bind datasets against, fuzz bytes as a file path
 * without touching the disk (memfd), and the dataset check every dataset target runs.
 * Nothing here keeps mutable state between inputs. */
#ifndef QD_FUZZ_UTIL_H
#define QD_FUZZ_UTIL_H

#define _GNU_SOURCE
#include "engine/dataset.h"
#include "onnx/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Small limits so that a hostile shape fails on a limit instead of the fuzzer's RSS cap
 * (the code paths are the same as with the daemon's defaults). */
static const struct qd_dataset_limits fz_limits = {
	.max_total_bytes = 32 << 20, .max_array_bytes = 16 << 20, .max_arrays = 64,
};

/* Model variants to bind datasets against (graph inputs only, like the API's stored
 * summaries):
 *  0: x float32 [N, 4] and ids int64 [N] (symbolic batch), w an initializer listed as input
 *  1: x float32 [2, 3, 2] (fixed batch 2)
 *  2: input_0 uint8 with no shape, a float32 [N, "seq"] and b int64 scalar-per-sample [N]
 *  3: no graph inputs at all */
#define FZ_N_MODELS 4
static struct qd_model *fz_model(int variant)
{
	struct qd_model *m = qd_model_new(8, 13);
	if (!m)
		return NULL;
	Onnx__GraphProto *g = m->proto->graph;
	g->input = calloc(4, sizeof *g->input);
	if (!g->input) {
		qd_model_free(m);
		return NULL;
	}
	if (variant == 0) {
		int64_t dx[2] = { -1, 4 }, di[1] = { -1 }, one = 1;
		float w = 1;
		g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, dx, 2);
		g->input[g->n_input++] = qd_value_info_new("ids", QD_DT_INT64, di, 1);
		g->input[g->n_input++] = qd_value_info_new("w", QD_DT_FLOAT, &one, 1);
		qd_graph_add_initializer(g, qd_tensor_new("w", QD_DT_FLOAT, &one, 1, &w, sizeof w));
	} else if (variant == 1) {
		int64_t dx[3] = { 2, 3, 2 };
		g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, dx, 3);
	} else if (variant == 2) {
		int64_t da[2] = { -1, -1 }, db[1] = { -1 };
		Onnx__ValueInfoProto *vi = qd_value_info_new("input_0", QD_DT_UINT8, NULL, 0);
		if (vi && vi->type && vi->type->tensor_type && vi->type->tensor_type->shape) {
			onnx__tensor_shape_proto__free_unpacked(vi->type->tensor_type->shape, NULL);
			vi->type->tensor_type->shape = NULL; /* rank unknown */
		}
		g->input[g->n_input++] = vi;
		g->input[g->n_input++] = qd_value_info_new("a", QD_DT_FLOAT, da, 2);
		g->input[g->n_input++] = qd_value_info_new("b", QD_DT_INT64, db, 1);
	}
	for (size_t i = 0; i < g->n_input; i++)
		if (!g->input[i]) {
			qd_model_free(m);
			return NULL;
		}
	return m;
}

/* The bytes as a readable file: an anonymous memory file, path "/proc/self/fd/N".
 * Returns the fd (close it when done) or -1. */
static int fz_memfd(const uint8_t *data, size_t size, char path[64])
{
	int fd = memfd_create("qd_fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);
		if (w <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

/* What the API and `quantd run` do with an uploaded dataset: load it under limits, render
 * the summary, bind it to each model variant, slice every array. Must never crash. */
static void fz_dataset_bytes(const uint8_t *data, size_t size, struct qd_model *const *models)
{
	char path[64];
	int fd = fz_memfd(data, size, path);
	if (fd < 0)
		return;
	struct qd_dataset *ds = NULL;
	struct qd_err err = { 0 };
	if (!qd_dataset_load(path, &fz_limits, &ds, &err)) {
		json_t *j = qd_dataset_summary_json(ds);
		char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
		free(s);
		json_decref(j);
		for (size_t a = 0; a < ds->n_arrays; a++) {
			struct qd_tensor t;
			int64_t rows = ds->arrays[a].ndim ? ds->arrays[a].dims[0] : 0;
			if (!qd_dataset_slice(&ds->arrays[a], rows / 2, rows - rows / 2, &t, &err))
				qd_tensor_release(&t);
			qd_dataset_slice(&ds->arrays[a], rows, 1, &t, &err); /* out of range: error */
		}
		for (int v = 0; v < FZ_N_MODELS; v++)
			if (models[v])
				qd_dataset_bind(ds, models[v], &err);
		qd_dataset_bind(ds, NULL, &err);
		qd_dataset_free(ds);
	}
	close(fd);
}

#endif
