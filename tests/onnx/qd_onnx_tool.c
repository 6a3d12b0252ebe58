/* Test helper for tests/onnx/run_onnx_ort.sh: load a model with quantd's onnx/ code,
 * optionally normalise Constants, check it, and save it (optionally with external data).
 * Prints one JSON line with what it did, so the script can assert on counts. */
#include "onnx/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t count_constants(const Onnx__GraphProto *g)
{
	size_t c = 0;
	for (size_t i = 0; i < g->n_node; i++)
		c += !strcmp(g->node[i]->op_type, "Constant");
	return c;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s IN OUT [--normalize] [--external] [--auto BYTES]\n", argv[0]);
		return 2;
	}
	struct qd_save_opts so = { 0 };
	bool norm = false;
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--normalize"))
			norm = true;
		else if (!strcmp(argv[i], "--external"))
			so.external_data = true;
		else if (!strcmp(argv[i], "--auto") && i + 1 < argc)
			so.auto_external_bytes = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	struct qd_err err = { 0 };
	struct qd_model *m = NULL;
	if (qd_model_load_file(argv[1], NULL, &m, &err)) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	size_t before = count_constants(m->proto->graph);
	int converted = 0;
	if (norm && (converted = qd_model_normalize_constants(m, &err)) < 0) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	if (qd_model_check(m, &err) || qd_model_save_file(m, argv[2], &so, &err)) {
		fprintf(stderr, "error: %s (field '%s')\n", err.msg, err.field);
		qd_model_free(m);
		return 1;
	}
	printf("{\"constants_before\": %zu, \"constants_after\": %zu, \"converted\": %d, "
	       "\"initializers\": %zu}\n", before, count_constants(m->proto->graph), converted,
	       m->proto->graph->n_initializer);
	qd_model_free(m);
	return 0;
}
