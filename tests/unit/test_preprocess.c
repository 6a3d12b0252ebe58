/* passes/preprocess: BatchNormalization folding into Conv / ConvTranspose / Gemm (outputs
 * match the unfolded model through the engine), shared weights, BNs that must stay,
 * constant chains folded (and what must not fold), graph outputs produced by folded
 * nodes, dead nodes, value_info with dtype / rank / symbolic dims, the sample path. */
#include <stdlib.h>
#include <string.h>
#include "qd_test.h"
#include "passes/preprocess.h"

static void add_io(Onnx__ValueInfoProto ***v, size_t *n, Onnx__ValueInfoProto *vi)
{
	*v = realloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = vi;
}

/* graph output with a type but no shape */
static void add_out(struct qd_model *m, const char *name, int dtype)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__ValueInfoProto *v = qd_value_info_new(name, dtype, NULL, 0);
	onnx__tensor_shape_proto__free_unpacked(v->type->tensor_type->shape, NULL);
	v->type->tensor_type->shape = NULL;
	add_io(&g->output, &g->n_output, v);
}

static Onnx__NodeProto *node(struct qd_model *m, const char *op, const char *name, const char *const *in,
			     size_t nin, const char *const *out, size_t nout)
{
	Onnx__NodeProto *n = qd_node_new(op, NULL, name, in, nin, out, nout);
	qd_graph_add_node(m->proto->graph, n);
	return n;
}

static uint32_t seed = 7;
static float frand(void)
{
	seed = seed * 1664525u + 1013904223u;
	return (float)((seed >> 8) / 16777216.0 * 2.0 - 1.0);
}

static void init_rand(struct qd_model *m, const char *name, const int64_t *dims, size_t nd, float lo, float hi)
{
	int64_t n = 1;
	for (size_t i = 0; i < nd; i++) n *= dims[i];
	float *v = malloc(n * sizeof *v);
	for (int64_t i = 0; i < n; i++) v[i] = lo + (frand() * 0.5f + 0.5f) * (hi - lo);
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new(name, QD_DT_FLOAT, dims, nd, v, n * sizeof *v));
	free(v);
}

static Onnx__NodeProto *constant(struct qd_model *m, const char *out, const float *v, int64_t n)
{
	const char *o[] = { out };
	Onnx__NodeProto *c = node(m, "Constant", out, NULL, 0, o, 1);
	qd_node_set_attr_tensor(c, "value", qd_tensor_new("", QD_DT_FLOAT, &n, 1, v, n * sizeof *v));
	return c;
}

/* BN(C channels) reading x, params named <p>_g/_b/_m/_v */
static void bn(struct qd_model *m, const char *name, const char *x, const char *y, int64_t C)
{
	char g[64], b[64], mu[64], v[64];
	snprintf(g, sizeof g, "%s_g", name);
	snprintf(b, sizeof b, "%s_b", name);
	snprintf(mu, sizeof mu, "%s_m", name);
	snprintf(v, sizeof v, "%s_v", name);
	init_rand(m, g, &C, 1, 0.5f, 1.5f);
	init_rand(m, b, &C, 1, -0.5f, 0.5f);
	init_rand(m, mu, &C, 1, -0.3f, 0.3f);
	init_rand(m, v, &C, 1, 0.2f, 2.0f);
	const char *in[] = { x, g, b, mu, v }, *out[] = { y };
	Onnx__NodeProto *n = node(m, "BatchNormalization", name, in, 5, out, 1);
	qd_node_set_attr_float(n, "epsilon", 1e-3f);
}

static struct qd_model *copy(const struct qd_model *m)
{
	struct qd_buf b = { 0 };
	struct qd_model *c = NULL;
	struct qd_err err = { 0 };
	if (qd_model_serialize(m, &b, &err) == 0) qd_model_load_buf(b.data, b.len, NULL, NULL, &c, &err);
	qd_buf_free(&b);
	return c;
}

static size_t count_op(const struct qd_model *m, const char *op)
{
	size_t c = 0;
	for (size_t i = 0; i < m->proto->graph->n_node; i++) c += !strcmp(m->proto->graph->node[i]->op_type, op);
	return c;
}

/* runs m on one input x of dims; returns output k as new floats (*n set) */
static float *run(const struct qd_model *m, const char *x, const int64_t *dims, int nd, size_t k, int64_t *n)
{
	struct qd_engine *e = NULL;
	struct qd_err err = { 0 };
	struct qd_tensor in, *out = NULL;
	size_t nout = 0;
	float *r = NULL;
	*n = 0;
	if (qd_engine_load(m, NULL, &e, &err)) {
		fprintf(stderr, "load: %s\n", err.msg);
		return NULL;
	}
	qd_tensor_alloc(&in, x, QD_DT_FLOAT, nd, dims);
	uint32_t s = seed;
	seed = 99;
	for (int64_t i = 0; i < qd_tensor_count(&in); i++) ((float *)in.data)[i] = frand();
	seed = s;
	if (qd_engine_run(e, &in, 1, &out, &nout, NULL, &err) == 0 && k < nout) {
		*n = qd_tensor_count(&out[k]);
		r = malloc(out[k].nbytes + 1);
		memcpy(r, out[k].data, out[k].nbytes);
	} else {
		fprintf(stderr, "run: %s\n", err.msg);
	}
	qd_tensors_release(out, nout);
	qd_tensor_release(&in);
	qd_engine_free(e);
	return r;
}

static double max_diff(const struct qd_model *a, const struct qd_model *b, const char *x, const int64_t *dims,
		       int nd, size_t k)
{
	int64_t na, nb;
	float *ra = run(a, x, dims, nd, k, &na), *rb = run(b, x, dims, nd, k, &nb);
	double d = (!ra || !rb || na != nb || !na) ? 1e30 : 0;
	for (int64_t i = 0; ra && rb && na == nb && i < na; i++) d = fmax(d, fabs((double)ra[i] - rb[i]));
	free(ra);
	free(rb);
	return d;
}

static json_t *pre(struct qd_model *m, const struct qd_preprocess_opts *o, int *rc)
{
	struct qd_preprocess_opts d = { .fold_constants = true, .fold_batchnorm = true, .infer_types = true };
	json_t *st = json_object();
	struct qd_err err = { 0 };
	*rc = qd_preprocess(m, o ? o : &d, st, &err);
	if (*rc) fprintf(stderr, "%s\n", err.msg);
	if (!*rc && qd_model_check(m, &err)) {
		fprintf(stderr, "check: %s\n", err.msg);
		*rc = -1;
	}
	return st;
}

static long stat(json_t *st, const char *k)
{
	return (long)json_integer_value(json_object_get(st, k));
}

static const Onnx__ValueInfoProto *vinfo(const struct qd_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_value_info; i++) if (!strcmp(g->value_info[i]->name, name)) return g->value_info[i];
	for (size_t i = 0; i < g->n_output; i++) if (!strcmp(g->output[i]->name, name)) return g->output[i];
	return NULL;
}

static bool has_init(const struct qd_model *m, const char *name)
{
	for (size_t i = 0; i < m->proto->graph->n_initializer; i++)
		if (!strcmp(m->proto->graph->initializer[i]->name, name)) return true;
	return false;
}

/* x [1,4,6,6] -> Conv (W [6,4,3,3], bias optional, pads 1) -> BN -> Relu -> y */
static void test_conv_bn(bool bias)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[4] = { 1, 4, 6, 6 }, dw[4] = { 6, 4, 3, 3 }, db[1] = { 6 }, pads[4] = { 1, 1, 1, 1 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 4));
	add_out(m, "y", QD_DT_FLOAT);
	init_rand(m, "W", dw, 4, -1, 1);
	if (bias) init_rand(m, "B", db, 1, -1, 1);
	const char *ci[] = { "x", "W", "B" }, *co[] = { "c" }, *ri[] = { "bn" }, *ro[] = { "y" };
	Onnx__NodeProto *c = node(m, "Conv", "conv", ci, bias ? 3 : 2, co, 1);
	qd_node_set_attr_ints(c, "pads", pads, 4);
	bn(m, "bn0", "c", "bn", 6);
	node(m, "Relu", "relu", ri, 1, ro, 1);
	struct qd_model *ref = copy(m);
	int rc;
	json_t *st = pre(m, NULL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_batchnorms"), 1);
	CHECK_EQ_INT(count_op(m, "BatchNormalization"), 0);
	CHECK_EQ_INT(g->n_node, 2);
	CHECK_EQ_INT(g->node[0]->n_input, 3);
	CHECK_STR(g->node[0]->output[0], "bn");
	CHECK(!has_init(m, "bn0_g") && !has_init(m, "bn0_v"));
	double d = max_diff(ref, m, "x", dx, 4, 0);
	CHECKF(d < 1e-5, "conv+bn (bias %d) max diff %g", bias, d);
	json_decref(st);
	qd_model_free(ref);
	qd_model_free(m);
}

/* Gemm (transB 0/1, C present or not, beta) + BN on [3, 5] */
static void test_gemm_bn(int transB, bool with_c, float beta)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[2] = { 3, 4 }, dw[2] = { transB ? 5 : 4, transB ? 4 : 5 }, dc[1] = { 5 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 2));
	add_out(m, "y", QD_DT_FLOAT);
	init_rand(m, "W", dw, 2, -1, 1);
	if (with_c) init_rand(m, "C", dc, 1, -1, 1);
	const char *gi[] = { "x", "W", "C" }, *go[] = { "t" };
	Onnx__NodeProto *n = node(m, "Gemm", "gemm", gi, with_c ? 3 : 2, go, 1);
	qd_node_set_attr_int(n, "transB", transB);
	qd_node_set_attr_float(n, "alpha", 0.7f);
	qd_node_set_attr_float(n, "beta", beta);
	bn(m, "bng", "t", "y", 5);
	struct qd_model *ref = copy(m);
	int rc;
	json_t *st = pre(m, NULL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_batchnorms"), 1);
	CHECK_EQ_INT(count_op(m, "BatchNormalization"), 0);
	double d = max_diff(ref, m, "x", dx, 2, 0);
	CHECKF(d < 1e-5, "gemm+bn transB %d C %d beta %g: max diff %g", transB, with_c, beta, d);
	json_decref(st);
	qd_model_free(ref);
	qd_model_free(m);
}

/* ConvTranspose with group 2: W [4, 3, 2, 2] -> 6 output channels */
static void test_convtranspose_bn(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[4] = { 1, 4, 3, 3 }, dw[4] = { 4, 3, 2, 2 }, db[1] = { 6 }, st2[2] = { 2, 2 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 4));
	add_out(m, "y", QD_DT_FLOAT);
	init_rand(m, "W", dw, 4, -1, 1);
	init_rand(m, "B", db, 1, -1, 1);
	const char *ci[] = { "x", "W", "B" }, *co[] = { "t" };
	Onnx__NodeProto *n = node(m, "ConvTranspose", "deconv", ci, 3, co, 1);
	qd_node_set_attr_int(n, "group", 2);
	qd_node_set_attr_ints(n, "strides", st2, 2);
	bn(m, "bnt", "t", "y", 6);
	struct qd_model *ref = copy(m);
	int rc;
	json_t *st = pre(m, NULL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_batchnorms"), 1);
	double d = max_diff(ref, m, "x", dx, 4, 0);
	CHECKF(d < 1e-5, "convtranspose+bn max diff %g", d);
	json_decref(st);
	qd_model_free(ref);
	qd_model_free(m);
}

/* Two Convs share W, each followed by its own BN: both fold, each with its own weights. Also
 * a BN whose conv output has a second consumer, and one whose conv output is a graph
 * output: both stay. */
static void test_bn_shared_and_kept(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[4] = { 1, 2, 4, 4 }, dw[4] = { 3, 2, 1, 1 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 4));
	const char *outs[] = { "y1", "y2", "y3", "r3", "y4", "c4" };
	for (int i = 0; i < 6; i++) add_out(m, outs[i], QD_DT_FLOAT);
	init_rand(m, "W", dw, 4, -1, 1);
	init_rand(m, "W3", dw, 4, -1, 1);
	const char *ci[] = { "x", "W" }, *c1[] = { "c1" }, *c2[] = { "c2" };
	node(m, "Conv", "conv1", ci, 2, c1, 1);
	node(m, "Conv", "conv2", ci, 2, c2, 1);
	bn(m, "bn1", "c1", "y1", 3);
	bn(m, "bn2", "c2", "y2", 3);
	/* conv3 output also feeds a Relu: BN stays */
	const char *ci3[] = { "x", "W3" }, *c3[] = { "c3" }, *r3[] = { "r3" };
	node(m, "Conv", "conv3", ci3, 2, c3, 1);
	bn(m, "bn3", "c3", "y3", 3);
	node(m, "Relu", "relu3", (const char *const[]){ "c3" }, 1, r3, 1);
	/* conv4 output is a graph output: BN stays */
	const char *c4[] = { "c4" };
	node(m, "Conv", "conv4", ci3, 2, c4, 1);
	bn(m, "bn4", "c4", "y4", 3);
	struct qd_model *ref = copy(m);
	int rc;
	json_t *st = pre(m, NULL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_batchnorms"), 2);
	CHECK_EQ_INT(count_op(m, "BatchNormalization"), 2);
	/* the two convs no longer share a weight */
	const Onnx__NodeProto *a = NULL, *b = NULL;
	for (size_t i = 0; i < g->n_node; i++) {
		if (!strcmp(g->node[i]->name, "conv1")) a = g->node[i];
		if (!strcmp(g->node[i]->name, "conv2")) b = g->node[i];
	}
	CHECK(a && b && strcmp(a->input[1], b->input[1]));
	for (size_t k = 0; k < 6; k++) {
		double d = max_diff(ref, m, "x", dx, 4, k);
		CHECKF(d < 1e-5, "output %zu max diff %g", k, d);
	}
	json_decref(st);
	qd_model_free(ref);
	qd_model_free(m);
}

/* Constant chain: (c1 + c2) * c3 folds; Add(x, .) stays; Shape(x) stays (x is an input);
 * RandomNormal stays; a folded node producing a graph output leaves an initializer that
 * is a graph output; ConstantOfShape above max_folded_bytes stays. */
static void test_constant_chain(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[2] = { 2, 3 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 2));
	const char *outs[] = { "y", "s", "z", "big" };
	for (int i = 0; i < 4; i++) add_out(m, outs[i], i == 1 ? QD_DT_INT64 : QD_DT_FLOAT);
	const float v1[3] = { 1, 2, 3 }, v2[3] = { 10, 20, 30 }, v3[3] = { 2, 2, 0.5f };
	constant(m, "c1", v1, 3);
	constant(m, "c2", v2, 3);
	constant(m, "c3", v3, 3);
	node(m, "Add", "add_c", (const char *const[]){ "c1", "c2" }, 2, (const char *const[]){ "a" }, 1);
	node(m, "Mul", "mul_c", (const char *const[]){ "a", "c3" }, 2, (const char *const[]){ "b" }, 1);
	node(m, "Add", "add_x", (const char *const[]){ "x", "b" }, 2, (const char *const[]){ "y" }, 1);
	node(m, "Shape", "shape_x", (const char *const[]){ "x" }, 1, (const char *const[]){ "s" }, 1);
	node(m, "Neg", "neg_b", (const char *const[]){ "b" }, 1, (const char *const[]){ "z" }, 1);
	int64_t shp = 1000;
	qd_graph_add_initializer(g, qd_tensor_new("shp", QD_DT_INT64, (const int64_t[]){ 1 }, 1, &shp, sizeof shp));
	Onnx__NodeProto *cs = node(m, "ConstantOfShape", "cos", (const char *const[]){ "shp" }, 1,
				   (const char *const[]){ "big" }, 1);
	float one = 1;
	qd_node_set_attr_tensor(cs, "value", qd_tensor_new("", QD_DT_FLOAT, (const int64_t[]){ 1 }, 1, &one, 4));
	struct qd_model *ref = copy(m);
	struct qd_preprocess_opts o = { .fold_constants = true, .fold_batchnorm = true, .infer_types = true,
					.max_folded_bytes = 1000 };
	int rc;
	json_t *st = pre(m, &o, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "constants_to_initializers"), 3);
	CHECK_EQ_INT(stat(st, "folded_nodes"), 3);   /* add_c, mul_c, neg_b */
	CHECK_EQ_INT(g->n_node, 3);                  /* add_x, shape_x, cos */
	CHECK_EQ_INT(count_op(m, "Shape"), 1);
	CHECK_EQ_INT(count_op(m, "ConstantOfShape"), 1);
	CHECK(has_init(m, "z") && has_init(m, "b") && !has_init(m, "a") && !has_init(m, "c1"));
	CHECK(max_diff(ref, m, "x", dx, 2, 0) == 0);
	CHECK(max_diff(ref, m, "x", dx, 2, 2) == 0);   /* z = -(c1 + c2) * c3 from the initializer */
	CHECK(max_diff(ref, m, "x", dx, 2, 3) == 0);
	int64_t n;
	float *z = run(m, "x", dx, 2, 2, &n);
	CHECK(z && n == 3 && z[0] == -22 && z[2] == -16.5f);
	free(z);
	/* the same without the size limit folds ConstantOfShape too */
	json_decref(st);
	qd_model_free(m);
	m = copy(ref);
	st = pre(m, NULL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_nodes"), 4);
	CHECK_EQ_INT(count_op(m, "ConstantOfShape"), 0);
	json_decref(st);
	qd_model_free(m);
	qd_model_free(ref);
}

/* dead chains go (and their initializers); value_info for every node output with dtype,
 * rank and symbolic dims named after the input's dim_param */
static void test_dead_and_types(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[2] = { -1, 4 }, dw[2] = { 4, 3 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 2));
	Onnx__TensorShapeProto__Dimension *d0 = g->input[0]->type->tensor_type->shape->dim[0];
	d0->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
	d0->dim_param = strdup("N");
	add_out(m, "y", QD_DT_FLOAT);
	/* a declared but stale value_info that must be replaced */
	add_io(&g->value_info, &g->n_value_info, qd_value_info_new("mm", QD_DT_DOUBLE, NULL, 0));
	init_rand(m, "W", dw, 2, -1, 1);
	init_rand(m, "Wdead", dw, 2, -1, 1);
	node(m, "MatMul", "mm", (const char *const[]){ "x", "W" }, 2, (const char *const[]){ "mm" }, 1);
	node(m, "Relu", "relu", (const char *const[]){ "mm" }, 1, (const char *const[]){ "y" }, 1);
	node(m, "Shape", "shape", (const char *const[]){ "mm" }, 1, (const char *const[]){ "sh" }, 1);
	node(m, "Cast", "cast", (const char *const[]){ "sh" }, 1, (const char *const[]){ "shf" }, 1);
	qd_node_set_attr_int(g->node[3], "to", QD_DT_FLOAT);
	node(m, "MatMul", "dead1", (const char *const[]){ "x", "Wdead" }, 2, (const char *const[]){ "d1" }, 1);
	node(m, "Sigmoid", "dead2", (const char *const[]){ "d1" }, 1, (const char *const[]){ "d2" }, 1);
	int rc;
	json_t *st = pre(m, NULL, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "removed_nodes"), 4);   /* shape, cast, dead1, dead2 */
	CHECK_EQ_INT(g->n_node, 2);
	CHECK(!has_init(m, "Wdead") && has_init(m, "W"));
	CHECK_EQ_INT(stat(st, "typed_values"), 2);
	const Onnx__ValueInfoProto *v = vinfo(m, "mm");
	CHECK(v && v->type->tensor_type->elem_type == QD_DT_FLOAT);
	CHECK(v && v->type->tensor_type->shape && v->type->tensor_type->shape->n_dim == 2);
	if (v && v->type->tensor_type->shape && v->type->tensor_type->shape->n_dim == 2) {
		const Onnx__TensorShapeProto *sh = v->type->tensor_type->shape;
		CHECK(sh->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
		CHECK_STR(sh->dim[0]->dim_param, "N");
		CHECK(sh->dim[1]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE);
		CHECK_EQ_INT(sh->dim[1]->dim_value, 3);
	}
	/* the graph output had no shape: it gets one */
	v = vinfo(m, "y");
	CHECK(v && v->type->tensor_type->shape && v->type->tensor_type->shape->n_dim == 2);
	json_decref(st);
	qd_model_free(m);
}

/* A model with a shape-dependent chain (Shape -> Gather -> Unsqueeze -> Concat -> Reshape)
 * typed from a given sample: dims that follow the batch stay symbolic, others are values. */
static void test_types_sample(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[3] = { -1, 2, 3 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 3));
	add_out(m, "y", QD_DT_FLOAT);
	int64_t zero = 0, six = 6;
	qd_graph_add_initializer(g, qd_tensor_new("i0", QD_DT_INT64, NULL, 0, &zero, 8));
	qd_graph_add_initializer(g, qd_tensor_new("ax", QD_DT_INT64, (const int64_t[]){ 1 }, 1, &zero, 8));
	qd_graph_add_initializer(g, qd_tensor_new("six", QD_DT_INT64, (const int64_t[]){ 1 }, 1, &six, 8));
	node(m, "Shape", "shape", (const char *const[]){ "x" }, 1, (const char *const[]){ "s" }, 1);
	node(m, "Gather", "gather", (const char *const[]){ "s", "i0" }, 2, (const char *const[]){ "b" }, 1);
	node(m, "Unsqueeze", "unsq", (const char *const[]){ "b", "ax" }, 2, (const char *const[]){ "b1" }, 1);
	Onnx__NodeProto *c = node(m, "Concat", "concat", (const char *const[]){ "b1", "six" }, 2,
				  (const char *const[]){ "shp" }, 1);
	qd_node_set_attr_int(c, "axis", 0);
	node(m, "Reshape", "reshape", (const char *const[]){ "x", "shp" }, 2, (const char *const[]){ "y" }, 1);
	struct qd_tensor s;
	int64_t ds[3] = { 3, 2, 3 };
	qd_tensor_alloc(&s, "x", QD_DT_FLOAT, 3, ds);
	struct qd_preprocess_opts o = { .fold_constants = true, .infer_types = true, .sample = &s, .n_sample = 1 };
	int rc;
	json_t *st = pre(m, &o, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "typed_values"), 5);
	const Onnx__ValueInfoProto *v = vinfo(m, "s");
	CHECK(v && v->type->tensor_type->elem_type == QD_DT_INT64 && v->type->tensor_type->shape->n_dim == 1 &&
	      v->type->tensor_type->shape->dim[0]->dim_value == 3);
	v = vinfo(m, "b");
	CHECK(v && v->type->tensor_type->shape->n_dim == 0);
	v = vinfo(m, "y");
	CHECK(v && v->type->tensor_type->shape->n_dim == 2);
	if (v && v->type->tensor_type->shape->n_dim == 2) {
		CHECK(v->type->tensor_type->shape->dim[0]->value_case ==
		      ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
		CHECK_EQ_INT(v->type->tensor_type->shape->dim[1]->dim_value, 6);
	}
	/* a sample missing an input is an error naming it */
	struct qd_tensor s2;
	qd_tensor_alloc(&s2, "other", QD_DT_FLOAT, 3, ds);
	o.sample = &s2;
	struct qd_err err = { 0 };
	CHECK(qd_preprocess(m, &o, NULL, &err) < 0);
	CHECK(strstr(err.msg, "'x'") != NULL);
	qd_tensor_release(&s);
	qd_tensor_release(&s2);
	json_decref(st);
	qd_model_free(m);
}

/* random ops are never folded (the engine does not run them: no type inference here) */
static void test_random_kept(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	add_out(m, "r", QD_DT_FLOAT);
	Onnx__NodeProto *rn = node(m, "RandomNormal", "rand", NULL, 0, (const char *const[]){ "r" }, 1);
	qd_node_set_attr_ints(rn, "shape", (const int64_t[]){ 2 }, 1);
	struct qd_preprocess_opts o = { .fold_constants = true };
	int rc;
	json_t *st = pre(m, &o, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_nodes"), 0);
	CHECK_EQ_INT(g->n_node, 1);
	/* with type inference the engine's refusal is an error naming the node */
	o.infer_types = true;
	struct qd_err err = { 0 };
	CHECK(qd_preprocess(m, &o, NULL, &err) < 0);
	CHECK(strstr(err.msg, "rand") != NULL);
	json_decref(st);
	qd_model_free(m);
}

/* BN in training mode, and with a non-constant scale, is left alone */
static void test_bn_not_foldable(void)
{
	struct qd_model *m = qd_model_new(8, 15);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[4] = { 1, 2, 3, 3 }, dw[4] = { 2, 2, 1, 1 }, dg[1] = { 2 };
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 4));
	add_io(&g->input, &g->n_input, qd_value_info_new("gamma", QD_DT_FLOAT, dg, 1));
	add_out(m, "y", QD_DT_FLOAT);
	init_rand(m, "W", dw, 4, -1, 1);
	init_rand(m, "beta", dg, 1, -1, 1);
	init_rand(m, "mean", dg, 1, -1, 1);
	init_rand(m, "var", dg, 1, 0.5f, 1);
	node(m, "Conv", "conv", (const char *const[]){ "x", "W" }, 2, (const char *const[]){ "c" }, 1);
	node(m, "BatchNormalization", "bn", (const char *const[]){ "c", "gamma", "beta", "mean", "var" }, 5,
	     (const char *const[]){ "y" }, 1);
	struct qd_preprocess_opts o = { .fold_constants = true, .fold_batchnorm = true };
	int rc;
	json_t *st = pre(m, &o, &rc);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(stat(st, "folded_batchnorms"), 0);
	CHECK_EQ_INT(count_op(m, "BatchNormalization"), 1);
	json_decref(st);
	qd_model_free(m);
}

int main(void)
{
	test_conv_bn(true);
	test_conv_bn(false);
	test_gemm_bn(0, true, 1.0f);
	test_gemm_bn(1, true, 0.5f);
	test_gemm_bn(1, false, 1.0f);
	test_gemm_bn(0, true, 0.0f);
	test_convtranspose_bn();
	test_bn_shared_and_kept();
	test_constant_chain();
	test_dead_and_types();
	test_types_sample();
	test_bn_not_foldable();
	test_random_kept();
	return qd_test_done("test_preprocess");
}
