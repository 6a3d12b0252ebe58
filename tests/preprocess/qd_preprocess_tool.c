/* Test helper for tests/preprocess/run_preprocess.sh: load a model, run qd_preprocess()
 * (passes/preprocess.h), check and save the result, and print one JSON line with the stats,
 * node / BatchNormalization counts before and after, and how many node outputs of the main
 * graph are left without an element type and rank (must be 0).
 * usage: qd_preprocess_tool IN OUT [--sample X.npz] [--no-fold] [--no-bn] [--no-types] [-v] */
#include "passes/preprocess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t count_op(const Onnx__GraphProto *g, const char *op)
{
	size_t c = 0;
	for (size_t i = 0; i < g->n_node; i++)
		c += !op || !strcmp(g->node[i]->op_type, op);
	return c;
}

static bool typed(const Onnx__ValueInfoProto *v)
{
	return v->type && v->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
	       v->type->tensor_type && v->type->tensor_type->elem_type && v->type->tensor_type->shape;
}

/* main-graph node outputs without a typed value_info / graph output entry */
static size_t count_untyped(const Onnx__GraphProto *g, size_t *n_vals, size_t *n_sym)
{
	size_t un = 0;
	*n_vals = *n_sym = 0;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++) {
			const char *nm = g->node[i]->output[k];
			if (!*nm)
				continue;
			(*n_vals)++;
			const Onnx__ValueInfoProto *v = NULL;
			for (size_t j = 0; j < g->n_value_info && !v; j++)
				if (!strcmp(g->value_info[j]->name, nm))
					v = g->value_info[j];
			for (size_t j = 0; j < g->n_output && !v; j++)
				if (!strcmp(g->output[j]->name, nm))
					v = g->output[j];
			if (!v || !typed(v)) {
				un++;
				continue;
			}
			const Onnx__TensorShapeProto *sh = v->type->tensor_type->shape;
			for (size_t d = 0; d < sh->n_dim; d++)
				*n_sym += sh->dim[d]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		}
	return un;
}

static bool verbose;
static void log_line(void *ud, enum qd_log_level lvl, const char *line)
{
	(void)ud;
	if (verbose || lvl >= QD_LOG_WARN)
		fprintf(stderr, "%s: %s\n", qd_log_level_name(lvl), line);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s IN OUT [--sample X.npz] [--no-fold] [--no-bn] [--no-types] [-v]\n",
			argv[0]);
		return 2;
	}
	struct qd_preprocess_opts o = { .fold_constants = true, .fold_batchnorm = true,
					.infer_types = true, .threads = 1, .log = log_line };
	const char *sample = NULL;
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--sample") && i + 1 < argc)
			sample = argv[++i];
		else if (!strcmp(argv[i], "--no-fold"))
			o.fold_constants = false;
		else if (!strcmp(argv[i], "--no-bn"))
			o.fold_batchnorm = false;
		else if (!strcmp(argv[i], "--no-types"))
			o.infer_types = false;
		else if (!strcmp(argv[i], "-v"))
			verbose = true;
		else {
			fprintf(stderr, "unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	struct qd_err err = { 0 };
	struct qd_model *m = NULL;
	struct qd_tensor *st = NULL;
	size_t n_st = 0;
	if (sample && qd_npz_read(sample, &st, &n_st, &err)) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	o.sample = st;
	o.n_sample = n_st;
	if (qd_model_load_file(argv[1], NULL, &m, &err)) {
		fprintf(stderr, "error: %s\n", err.msg);
		return 1;
	}
	size_t nodes0 = count_op(m->proto->graph, NULL), bn0 = count_op(m->proto->graph, "BatchNormalization");
	size_t const0 = count_op(m->proto->graph, "Constant");
	json_t *stats = json_object();
	double t0 = qd_now_mono();
	if (qd_preprocess(m, &o, stats, &err)) {
		fprintf(stderr, "error: %s (field '%s')\n", err.msg, err.field);
		return 1;
	}
	double secs = qd_now_mono() - t0;
	if (qd_model_check(m, &err) || qd_model_save_file(m, argv[2], NULL, &err)) {
		fprintf(stderr, "error: %s (field '%s')\n", err.msg, err.field);
		return 1;
	}
	size_t n_vals, n_sym, un = count_untyped(m->proto->graph, &n_vals, &n_sym);
	json_object_set_new(stats, "nodes_before", json_integer((json_int_t)nodes0));
	json_object_set_new(stats, "nodes_after", json_integer((json_int_t)count_op(m->proto->graph, NULL)));
	json_object_set_new(stats, "constants_before", json_integer((json_int_t)const0));
	json_object_set_new(stats, "bn_before", json_integer((json_int_t)bn0));
	json_object_set_new(stats, "bn_after",
			    json_integer((json_int_t)count_op(m->proto->graph, "BatchNormalization")));
	json_object_set_new(stats, "values", json_integer((json_int_t)n_vals));
	json_object_set_new(stats, "untyped", json_integer((json_int_t)un));
	json_object_set_new(stats, "symbolic_dims", json_integer((json_int_t)n_sym));
	json_object_set_new(stats, "seconds", json_real(secs));
	char *s = json_dumps(stats, JSON_COMPACT);
	printf("%s\n", s);
	free(s);
	json_decref(stats);
	qd_model_free(m);
	qd_tensors_release(st, n_st);
	return 0;
}
