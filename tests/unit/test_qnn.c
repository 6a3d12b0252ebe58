/* passes/qnn.c: QnnPreprocess's Gelu fusion on a graph built here (outputs equal to the
 * unfused graph through the engine, op counts, node naming, the unchanged model returned
 * as is), channel-last on a non-4-D input (error naming the field), DynamicToFixedShape's
 * parameter checks and run-time errors (each naming its field) and the fixed output
 * shapes. The ORT side of every pattern is tests/qnn/run_qnn.sh. */
#include <stdlib.h>
#include <string.h>
#include "qd_test.h"
#include "passes/passes.h"
#include "engine/engine.h"

static void add_io(Onnx__ValueInfoProto ***v, size_t *n, Onnx__ValueInfoProto *vi)
{
	*v = realloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = vi;
}

static void node(struct qd_model *m, const char *op, const char *name, const char *a, const char *b,
		 const char *out)
{
	const char *in[2] = {a, b}, *o[1] = {out};
	qd_graph_add_node(m->proto->graph, qd_node_new(op, NULL, name, in, b ? 2 : 1, o, 1));
}

static void scalar(struct qd_model *m, const char *name, float v)
{
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new(name, QD_DT_FLOAT, NULL, 0, &v, sizeof v));
}

/* x [1,4,8] -> PyTorch erf-GELU -> Relu (unnamed) -> y */
static struct qd_model *gelu_model(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t d[3] = {1, 4, 8};
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, d, 3));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, d, 3));
	scalar(m, "sqrt2", 1.4142135f);
	scalar(m, "one", 1.0f);
	scalar(m, "half", 0.5f);
	node(m, "Div", "div", "x", "sqrt2", "d");
	node(m, "Erf", "erf", "d", NULL, "e");
	node(m, "Add", "add", "e", "one", "a");
	node(m, "Mul", "mul", "x", "a", "m");
	node(m, "Mul", "mul_half", "m", "half", "gl");
	node(m, "Relu", "", "gl", NULL, "y");
	return m;
}

static size_t count_op(const struct qd_model *m, const char *op, const char *dom)
{
	size_t n = 0;
	for (size_t i = 0; i < m->proto->graph->n_node; i++) {
		const Onnx__NodeProto *x = m->proto->graph->node[i];
		n += !strcmp(x->op_type, op) && !strcmp(qd_node_domain(x), dom);
	}
	return n;
}

/* engine output 0 of m on a fixed input x [1,4,8] */
static int run(const struct qd_model *m, float *out)
{
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	struct qd_engine_opts eo = {.threads = 1};
	struct qd_tensor in = {0}, *o = NULL;
	size_t no = 0;
	int64_t d[3] = {1, 4, 8};
	if (qd_engine_load(m, &eo, &e, &err) < 0 || qd_tensor_alloc(&in, "x", QD_DT_FLOAT, 3, d) < 0) {
		fprintf(stderr, "engine: %s\n", err.msg);
		qd_engine_free(e);
		return -1;
	}
	for (int i = 0; i < 32; i++)
		((float *)in.data)[i] = (float)(i - 16) / 5.0f;
	int rc = qd_engine_run(e, &in, 1, &o, &no, NULL, &err);
	if (rc == 0)
		memcpy(out, o[0].data, 32 * sizeof(float));
	qd_tensors_release(o, no);
	qd_tensor_release(&in);
	qd_engine_free(e);
	return rc;
}

static int run_pass(const char *type, struct qd_model *m, const char *params_json, json_t *stats,
		    struct qd_err *err)
{
	const struct qd_pass_vt *vt = qd_pass_find(type);
	json_t *user = json_loads(params_json, 0, NULL), *space = NULL;
	int rc = qd_pass_resolve(vt, "p", user, &space, err);
	if (rc == 0 && vt->check)
		rc = vt->check("p", space, err);
	json_t *cfg = space ? qd_pass_space_first(space) : NULL;
	struct qd_pass_ctx ctx = {.name = "p", .stats = stats, .threads = 1};
	if (rc == 0)
		rc = vt->run(&ctx, m, cfg, err);
	json_decref(user);
	json_decref(space);
	json_decref(cfg);
	return rc;
}

static void test_gelu(void)
{
	struct qd_model *m = gelu_model();
	float before[32], after[32];
	CHECK(run(m, before) == 0);
	json_t *st = json_object();
	struct qd_err err = {0};
	int rc = run_pass("QnnPreprocess", m, "{\"type\": \"QnnPreprocess\"}", st, &err);
	CHECKF(rc == 0, "%s", err.msg);
	CHECK_EQ_INT(count_op(m, "Gelu", "com.microsoft"), 1);
	CHECK_EQ_INT(count_op(m, "Erf", ""), 0);
	CHECK_EQ_INT(count_op(m, "Mul", ""), 0);
	CHECK_EQ_INT(count_op(m, "Div", ""), 0);
	CHECK_EQ_INT(m->proto->graph->n_node, 2);
	CHECK(qd_model_opset(m, "com.microsoft") == 1);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(st, "fusions"), "Gelu")), 1);
	CHECK_EQ_INT(json_integer_value(json_object_get(st, "named_nodes")), 1);
	bool named = false;
	for (size_t i = 0; i < m->proto->graph->n_node; i++)
		named = named || !strcmp(m->proto->graph->node[i]->name, "qnn_preproc_node_0");
	CHECK(named);
	CHECK(run(m, after) == 0);
	double worst = 0;
	for (int i = 0; i < 32; i++)
		worst = fmax(worst, fabs((double)before[i] - after[i]));
	CHECKF(worst < 1e-6, "max abs %g", worst);
	json_decref(st);
	qd_model_free(m);
}

static void test_unchanged(void)
{
	/* every node named, nothing to fuse: the input model comes back as is */
	struct qd_model *m = gelu_model();
	free(m->proto->graph->node[5]->name);
	m->proto->graph->node[5]->name = strdup("relu");
	free(m->proto->graph->node[1]->op_type);
	m->proto->graph->node[1]->op_type = strdup("Tanh");   /* no Erf: no GELU */
	struct qd_buf a = {0}, b = {0};
	struct qd_err err = {0};
	CHECK(qd_model_serialize(m, &a, &err) == 0);
	json_t *st = json_object();
	int rc = run_pass("QnnPreprocess", m, "{\"type\": \"QnnPreprocess\"}", st, &err);
	CHECKF(rc == 0, "%s", err.msg);
	CHECK(json_is_false(json_object_get(st, "modified")));
	CHECK(qd_model_serialize(m, &b, &err) == 0);
	CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
	qd_buf_free(&a);
	qd_buf_free(&b);
	json_decref(st);
	qd_model_free(m);
}

static void test_channel_last_errors(void)
{
	struct qd_model *m = gelu_model();
	json_t *st = json_object();
	struct qd_err err = {0};
	int rc = run_pass("QnnPreprocess", m, "{\"type\": \"QnnPreprocess\", \"inputs_to_make_channel_last\": [\"x\"]}",
			  st, &err);
	CHECK(rc == -QD_EINVAL);
	CHECK_STR(err.field, "passes.p.inputs_to_make_channel_last");
	CHECKF(strstr(err.msg, "'x' is not 4-D") != NULL, "%s", err.msg);
	qd_model_free(m);
	m = gelu_model();
	memset(&err, 0, sizeof err);
	rc = run_pass("QnnPreprocess", m, "{\"type\": \"QnnPreprocess\", \"outputs_to_make_channel_last\": [\"nope\"]}",
		      st, &err);
	CHECK(rc == -QD_EINVAL);
	CHECK_STR(err.field, "passes.p.outputs_to_make_channel_last");
	qd_model_free(m);
	m = gelu_model();
	memset(&err, 0, sizeof err);
	rc = run_pass("QnnPreprocess", m, "{\"type\": \"QnnPreprocess\", \"dynamic_input_shapes\": [[\"x\"]]}", st, &err);
	CHECK(rc == -QD_EINVAL);
	CHECK_STR(err.field, "passes.p.dynamic_input_shapes");
	qd_model_free(m);
	json_decref(st);
}

/* x [batch, seq, 8] -> Relu -> y [batch, seq, 8] */
static struct qd_model *dyn_model(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t d[3] = {-1, -1, 8};
	Onnx__ValueInfoProto *x = qd_value_info_new("x", QD_DT_FLOAT, d, 3), *y = qd_value_info_new("y", QD_DT_FLOAT, d, 3);
	const char *names[2] = {"batch", "seq"};
	for (int k = 0; k < 2; k++) {
		Onnx__ValueInfoProto *v[2] = {x, y};
		for (int j = 0; j < 2; j++) {
			Onnx__TensorShapeProto__Dimension *dm = v[j]->type->tensor_type->shape->dim[k];
			dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			dm->dim_param = strdup(names[k]);
		}
	}
	add_io(&g->input, &g->n_input, x);
	add_io(&g->output, &g->n_output, y);
	node(m, "Relu", "relu", "x", NULL, "y");
	return m;
}

static int64_t out_dim(const struct qd_model *m, int k)
{
	const Onnx__TensorShapeProto__Dimension *d = m->proto->graph->output[0]->type->tensor_type->shape->dim[k];
	return d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : -1;
}

static void test_d2f(void)
{
	static const struct { const char *json, *field, *msg; } bad[] = {
		{"{\"type\": \"DynamicToFixedShape\", \"dim_param\": [\"batch\"], \"dim_value\": [1, 2]}",
		 "passes.p.dim_value", "same non-zero length"},
		{"{\"type\": \"DynamicToFixedShape\", \"dim_param\": [\"batch\"]}", "passes.p.dim_value", "together"},
		{"{\"type\": \"DynamicToFixedShape\", \"dim_param\": [\"batch\"], \"dim_value\": [0]}",
		 "passes.p.dim_value", "positive"},
		{"{\"type\": \"DynamicToFixedShape\", \"input_name\": [\"x\"], \"input_shape\": [[1, 2], [3]]}",
		 "passes.p.input_shape", "same non-zero length"},
		{"{\"type\": \"DynamicToFixedShape\", \"input_name\": [\"x\"], \"input_shape\": [[1, -2]]}",
		 "passes.p.input_shape", "positive"},
		{"{\"type\": \"DynamicToFixedShape\", \"dim_param\": [\"a\"], \"dim_value\": [1], \"input_name\": [\"x\"], "
		 "\"input_shape\": [[1]]}", "passes.p.input_name", "not both"},
		{"{\"type\": \"DynamicToFixedShape\"}", "passes.p.dim_param", "needs"},
		/* run-time: the model decides */
		{"{\"type\": \"DynamicToFixedShape\", \"dim_param\": [\"nope\"], \"dim_value\": [1]}", "passes.p.dim_param",
		 "'nope'"},
		{"{\"type\": \"DynamicToFixedShape\", \"input_name\": [\"z\"], \"input_shape\": [[1, 2, 8]]}",
		 "passes.p.input_name", "no input 'z'"},
		{"{\"type\": \"DynamicToFixedShape\", \"input_name\": [\"x\"], \"input_shape\": [[1, 2]]}",
		 "passes.p.input_shape", "rank 3"},
		{"{\"type\": \"DynamicToFixedShape\", \"input_name\": [\"x\"], \"input_shape\": [[1, 2, 9]]}",
		 "passes.p.input_shape", "fixed at 8"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct qd_model *m = dyn_model();
		struct qd_err err = {0};
		json_t *st = json_object();
		int rc = run_pass("DynamicToFixedShape", m, bad[i].json, st, &err);
		CHECKF(rc == -QD_EINVAL, "case %zu: rc %d", i, rc);
		CHECKF(!strcmp(err.field, bad[i].field), "case %zu: field '%s'", i, err.field);
		CHECKF(strstr(err.msg, bad[i].msg) != NULL, "case %zu: '%s'", i, err.msg);
		json_decref(st);
		qd_model_free(m);
	}
	/* dim_param: both dims fixed in the input and the output */
	struct qd_model *m = dyn_model();
	struct qd_err err = {0};
	json_t *st = json_object();
	int rc = run_pass("DynamicToFixedShape", m, "{\"type\": \"DynamicToFixedShape\", \"dim_param\": [\"batch\", \"seq\"], "
			  "\"dim_value\": [2, 5]}", st, &err);
	CHECKF(rc == 0, "%s", err.msg);
	CHECK(out_dim(m, 0) == 2 && out_dim(m, 1) == 5 && out_dim(m, 2) == 8);
	CHECK_EQ_INT(json_integer_value(json_object_get(st, "fixed_dims")), 4);
	qd_model_free(m);
	json_decref(st);
	/* input_shape: the input's symbolic dims fixed everywhere, output shape follows */
	m = dyn_model();
	st = json_object();
	rc = run_pass("DynamicToFixedShape", m, "{\"type\": \"DynamicToFixedShape\", \"input_name\": [\"x\"], "
		      "\"input_shape\": [[1, 7, 8]]}", st, &err);
	CHECKF(rc == 0, "%s", err.msg);
	CHECK(out_dim(m, 0) == 1 && out_dim(m, 1) == 7);
	qd_model_free(m);
	json_decref(st);
}

int main(void)
{
	test_gelu();
	test_unchanged();
	test_channel_last_errors();
	test_d2f();
	return qd_test_done("test_qnn");
}
