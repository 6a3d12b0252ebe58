/* OnnxDynamicQuantization graph rewrites on small models built here: emitted ops, ORT's
 * names, initializer types/shapes, opset and domain decisions (contrib ops below opset
 * 11/13, safe opset raise with Clip/Slice/Pad adjusted, refusal on OneHot), Conv uint8 weights,
 * subgraphs, exclusions, the ORT kernel-table check, and numerics through the engine. */
#include "qd_test.h"
#include "passes/passes.h"
#include "engine/engine.h"

#include <stdlib.h>

static void add_vi(Onnx__ValueInfoProto ***arr, size_t *n, Onnx__ValueInfoProto *v)
{
	*arr = realloc(*arr, (*n + 1) * sizeof **arr);
	(*arr)[(*n)++] = v;
}

static void add_init_f(Onnx__GraphProto *g, const char *name, const int64_t *dims, size_t nd, float scale)
{
	int64_t n = 1;
	for (size_t i = 0; i < nd; i++)
		n *= dims[i];
	float *v = malloc((size_t)n * sizeof *v);
	for (int64_t i = 0; i < n; i++)
		v[i] = scale * (float)((i * 37 + 11) % 23 - 11) / 11.0f;
	qd_graph_add_initializer(g, qd_tensor_new(name, QD_DT_FLOAT, dims, nd, v, (size_t)n * sizeof *v));
	free(v);
}

static Onnx__NodeProto *node(Onnx__GraphProto *g, const char *op, const char *name, const char *const *in,
			     size_t ni, const char *out)
{
	const char *o[1] = {out};
	Onnx__NodeProto *n = qd_node_new(op, NULL, name, in, ni, o, 1);
	qd_graph_add_node(g, n);
	return n;
}

/* x[N,8] -MatMul(W[8,4])-> y1 -Gemm(G[3,4]^T, C[3])-> y2 ; Gather(E[10,4], ids) -> e */
static struct qd_model *make_m1(int64_t opset)
{
	struct qd_model *m = qd_model_new(8, opset);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[2] = {2, 8}, idd[1] = {3}, y2d[2] = {2, 3}, ed[2] = {3, 4};
	add_vi(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, xd, 2));
	add_vi(&g->input, &g->n_input, qd_value_info_new("ids", QD_DT_INT64, idd, 1));
	add_vi(&g->output, &g->n_output, qd_value_info_new("y2", QD_DT_FLOAT, y2d, 2));
	add_vi(&g->output, &g->n_output, qd_value_info_new("e", QD_DT_FLOAT, ed, 2));
	int64_t wd[2] = {8, 4}, gd[2] = {3, 4}, cd[1] = {3}, edd[2] = {10, 4};
	add_init_f(g, "W", wd, 2, 0.5f);
	add_init_f(g, "G", gd, 2, 0.3f);
	add_init_f(g, "C", cd, 1, 0.1f);
	add_init_f(g, "E", edd, 2, 1.0f);
	const char *i1[2] = {"x", "W"}, *i2[3] = {"y1", "G", "C"}, *i3[2] = {"E", "ids"};
	node(g, "MatMul", "mm", i1, 2, "y1");
	qd_node_set_attr_int(node(g, "Gemm", "gemm", i2, 3, "y2"), "transB", 1);
	node(g, "Gather", "gather", i3, 2, "e");
	return m;
}

static Onnx__NodeProto *find_node(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_node; i++)
		if (g->node[i]->name && !strcmp(g->node[i]->name, name))
			return g->node[i];
	return NULL;
}

static Onnx__TensorProto *find_init(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name))
			return g->initializer[i];
	return NULL;
}

static int count_op(const Onnx__GraphProto *g, const char *op)
{
	int c = 0;
	for (size_t i = 0; i < g->n_node; i++)
		c += !strcmp(g->node[i]->op_type, op);
	return c;
}

/* Run the dynamic pass with a JSON text of parameters. stats (new) optional. */
static int quantize(struct qd_model *m, const char *params_json, json_t **stats_out, struct qd_err *err)
{
	const struct qd_pass_vt *vt = qd_pass_find("OnnxDynamicQuantization");
	json_t *user = json_loads(params_json, 0, NULL);
	json_object_set_new(user, "type", json_string("OnnxDynamicQuantization"));
	json_t *space = NULL;
	int rc = qd_pass_resolve(vt, "q", user, &space, err);
	if (rc == 0)
		rc = vt->check("q", space, err);
	json_t *cfg = rc == 0 ? qd_pass_space_first(space) : NULL;
	json_t *stats = json_object();
	struct qd_pass_ctx ctx = { .name = "q", .stats = stats };
	if (rc == 0)
		rc = vt->run(&ctx, m, cfg, err);
	if (rc < 0)
		fprintf(stderr, "quantize(%s): %s (%s)\n", params_json, err->msg, err->field);
	if (stats_out)
		*stats_out = stats;
	else
		json_decref(stats);
	json_decref(cfg);
	json_decref(space);
	json_decref(user);
	return rc;
}

/* Lowest cosine over the outputs, float vs quantized, through the built-in engine; -2 when
 * the engine cannot run one of them or the output counts differ, NaN when an output is NaN
 * (so a "cos > x" check fails on both). */
static double engine_cosine(struct qd_model *f, struct qd_model *q)
{
	struct qd_tensor in[2];
	int64_t xd[2] = {2, 8}, idd[1] = {3};
	qd_tensor_alloc(&in[0], "x", QD_DT_FLOAT, 2, xd);
	qd_tensor_alloc(&in[1], "ids", QD_DT_INT64, 1, idd);
	for (int i = 0; i < 16; i++)
		((float *)in[0].data)[i] = (float)((i * 7) % 13 - 6) / 6.0f;
	for (int i = 0; i < 3; i++)
		((int64_t *)in[1].data)[i] = (i * 3 + 1) % 10;
	struct qd_model *ms[2] = {f, q};
	struct qd_tensor *outs[2] = {NULL, NULL};
	size_t nouts[2] = {0, 0};
	double cos = 1.0;
	struct qd_err err;
	for (int k = 0; k < 2; k++) {
		struct qd_engine *e = NULL;
		if (qd_engine_load(ms[k], NULL, &e, &err) < 0 ||
		    qd_engine_run(e, in, 2, &outs[k], &nouts[k], NULL, &err) < 0) {
			fprintf(stderr, "engine: %s\n", err.msg);
			cos = -2;
		}
		qd_engine_free(e);
	}
	if (cos > -2 && (nouts[0] != nouts[1] || !nouts[0])) {
		fprintf(stderr, "engine: %zu float outputs, %zu quantized outputs\n", nouts[0], nouts[1]);
		cos = -2;
	}
	for (size_t o = 0; cos > -2 && o < nouts[0]; o++) {
		if (outs[0][o].dtype != QD_DT_FLOAT || outs[1][o].dtype != QD_DT_FLOAT ||
		    qd_tensor_count(&outs[0][o]) != qd_tensor_count(&outs[1][o])) {
			fprintf(stderr, "engine: output %zu differs in dtype or size\n", o);
			cos = -2;
			break;
		}
		const float *a = outs[0][o].data, *b = outs[1][o].data;
		double d = 0, na = 0, nb = 0;
		for (int64_t i = 0; i < qd_tensor_count(&outs[0][o]); i++) {
			d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i];
		}
		double c = d / sqrt(na * nb);
		if (!(c >= cos))   /* NaN sticks */
			cos = c;
	}
	qd_tensors_release(outs[0], nouts[0]);
	qd_tensors_release(outs[1], nouts[1]);
	qd_tensor_release(&in[0]);
	qd_tensor_release(&in[1]);
	fprintf(stderr, "engine cosine float vs quantized: %.6f\n", cos);
	return cos;
}

static void test_qoperator(void)
{
	struct qd_err err;
	struct qd_model *m = make_m1(13), *f = make_m1(13);
	json_t *stats = NULL;
	CHECK_EQ_INT(quantize(m, "{}", &stats, &err), 0);
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = find_node(g, "x_QuantizeLinear");
	CHECK(n && !strcmp(n->op_type, "DynamicQuantizeLinear") && n->n_output == 3);
	if (n) {
		CHECK_STR(n->output[0], "x_quantized");
		CHECK_STR(n->output[1], "x_scale");
		CHECK_STR(n->output[2], "x_zero_point");
	}
	n = find_node(g, "mm_quant");
	CHECK(n && !strcmp(n->op_type, "MatMulInteger"));
	if (n) {
		CHECK_STR(n->input[1], "W_quantized");
		CHECK_STR(n->output[0], "y1_output_quantized");
	}
	CHECK(find_node(g, "y1_output_quantized_cast") != NULL);
	CHECK(find_node(g, "mm_quant_scales_mul") != NULL);
	n = find_node(g, "mm_quant_output_scale_mul");
	CHECK(n && !strcmp(n->output[0], "y1"));
	/* Gemm → MatMul + Add, B transposed in place, then quantized */
	CHECK(find_node(g, "gemm") == NULL);
	CHECK(find_node(g, "gemm_MatMul_quant") != NULL);
	n = find_node(g, "gemm_Add");
	CHECK(n && !strcmp(n->op_type, "Add") && !strcmp(n->output[0], "y2"));
	Onnx__TensorProto *t = find_init(g, "G_quantized");
	CHECK(t && t->data_type == QD_DT_INT8 && t->n_dims == 2 && t->dims[0] == 4 && t->dims[1] == 3);
	t = find_init(g, "W_quantized");
	CHECK(t && t->data_type == QD_DT_INT8 && t->dims[0] == 8 && t->dims[1] == 4);
	t = find_init(g, "W_scale");
	CHECK(t && t->data_type == QD_DT_FLOAT && t->n_dims == 0);
	t = find_init(g, "W_zero_point");
	CHECK(t && t->data_type == QD_DT_INT8 && t->n_dims == 0);
	CHECK(find_init(g, "W") == NULL);   /* float weight removed */
	/* Gather on uint8 data, DequantizeLinear after it */
	n = find_node(g, "gather");
	CHECK(n && !strcmp(n->input[0], "E_quantized") && !strcmp(n->output[0], "e_quantized"));
	n = find_node(g, "e_DequantizeLinear");
	CHECK(n && !strcmp(n->op_type, "DequantizeLinear") && !*qd_node_domain(n) && !strcmp(n->output[0], "e"));
	t = find_init(g, "E_quantized");
	CHECK(t && t->data_type == QD_DT_UINT8);
	CHECK_EQ_INT(qd_model_opset(m, "com.microsoft"), 0);
	CHECK_EQ_INT(qd_model_opset(m, ""), 13);
	json_t *q = json_object_get(stats, "quantized_nodes");
	CHECK_EQ_INT(json_integer_value(json_object_get(q, "MatMul")), 1);
	CHECK_EQ_INT(json_integer_value(json_object_get(q, "Gemm")), 1);
	CHECK_EQ_INT(json_integer_value(json_object_get(q, "Gather")), 1);
	CHECK_EQ_INT(qd_model_check(m, &err), 0);
	double cos = engine_cosine(f, m);
	CHECKF(cos > 0.99998, "cosine %f", cos);   /* measured 0.999991 */
	json_decref(stats);
	qd_model_free(m);
	qd_model_free(f);
}

static void test_activation_symmetric(void)
{
	struct qd_err err;
	struct qd_model *m = make_m1(13), *f = make_m1(13);
	CHECK_EQ_INT(quantize(m, "{\"activation_symmetric\": true}", NULL, &err), 0);
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = find_node(g, "x_QuantizeLinear");
	CHECK(n && !strcmp(n->op_type, "QuantizeLinear"));
	CHECK_EQ_INT(count_op(g, "DynamicQuantizeLinear"), 0);
	Onnx__TensorProto *t = find_init(g, "x_zero_point");
	CHECK(t && t->data_type == QD_DT_UINT8 && t->raw_data.len == 1 && t->raw_data.data[0] == 127);
	n = find_node(g, "x_ReduceMax");
	CHECK(n && qd_node_attr_int(n, "keepdims", 1) == 0);
	double cos = engine_cosine(f, m);
	CHECKF(cos > 0.99993, "cosine %f", cos);   /* measured 0.999967 (symmetric activations: 7 bits of range) */
	qd_model_free(m);
	qd_model_free(f);
	/* opset 9: needs QuantizeLinear, so the opset is raised instead of DynamicQuantizeMatMul */
	m = make_m1(9);
	CHECK_EQ_INT(quantize(m, "{\"activation_symmetric\": true}", NULL, &err), 0);
	CHECK_EQ_INT(qd_model_opset(m, ""), 11);
	CHECK_EQ_INT(count_op(m->proto->graph, "MatMulInteger"), 2);
	qd_model_free(m);
}

static void test_qdq(void)
{
	struct qd_err err;
	struct qd_model *m = make_m1(13), *f = make_m1(13);
	CHECK_EQ_INT(quantize(m, "{\"quant_format\": \"QDQ\", \"per_channel\": true, \"precision\": \"uint8\"}",
			      NULL, &err), 0);
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = find_node(g, "mm");
	CHECK(n && !strcmp(n->op_type, "MatMul"));
	if (n) {
		CHECK_STR(n->input[0], "x_DequantizeLinear_Output");
		CHECK_STR(n->input[1], "W_DequantizeLinear_Output");
	}
	n = find_node(g, "W_DequantizeLinear");
	CHECK(n && !*qd_node_domain(n) && qd_node_attr_int(n, "axis", -9) == 1);
	Onnx__TensorProto *t = find_init(g, "W_scale");
	CHECK(t && t->n_dims == 1 && t->dims[0] == 4);
	t = find_init(g, "W_quantized");
	CHECK(t && t->data_type == QD_DT_UINT8);
	CHECK_EQ_INT(count_op(g, "DynamicQuantizeLinear"), 2);   /* x and y1 */
	CHECK_EQ_INT(count_op(g, "MatMulInteger"), 0);
	double cos = engine_cosine(f, m);
	CHECKF(cos > 0.99998, "cosine %f", cos);   /* measured 0.999993 */
	qd_model_free(m);
	qd_model_free(f);

	/* opset 11: per-axis DequantizeLinear comes from com.microsoft */
	m = make_m1(11);
	CHECK_EQ_INT(quantize(m, "{\"quant_format\": \"QDQ\", \"per_channel\": true}", NULL, &err), 0);
	n = find_node(m->proto->graph, "W_DequantizeLinear");
	CHECK(n && !strcmp(qd_node_domain(n), "com.microsoft"));
	CHECK_EQ_INT(qd_model_opset(m, "com.microsoft"), 1);
	n = find_node(m->proto->graph, "x_DequantizeLinear");
	CHECK(n && !*qd_node_domain(n));   /* per-tensor stays ai.onnx */
	qd_model_free(m);
}

static void test_old_opsets(void)
{
	struct qd_err err;
	/* opset 9 QOperator: com.microsoft DynamicQuantizeMatMul, opset left at 9 */
	struct qd_model *m = make_m1(9);
	CHECK_EQ_INT(quantize(m, "{}", NULL, &err), 0);
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = find_node(g, "mm_quant");
	CHECK(n && !strcmp(n->op_type, "DynamicQuantizeMatMul") && !strcmp(qd_node_domain(n), "com.microsoft"));
	CHECK_EQ_INT(count_op(g, "DynamicQuantizeLinear"), 0);
	CHECK_EQ_INT(qd_model_opset(m, ""), 9);
	CHECK_EQ_INT(qd_model_opset(m, "com.microsoft"), 1);
	n = find_node(g, "e_DequantizeLinear");
	CHECK(n && !strcmp(qd_node_domain(n), "com.microsoft"));
	qd_model_free(m);

	/* opset 9 QDQ: raised to 11, Clip-6 and Slice-1 attributes become inputs */
	m = make_m1(9);
	Onnx__GraphProto *gg = m->proto->graph;
	const char *ci[1] = {"y2"}, *si[1] = {"e"};
	Onnx__NodeProto *clip = node(gg, "Clip", "clip", ci, 1, "y3");
	qd_node_set_attr_float(clip, "min", 0.0f);
	qd_node_set_attr_float(clip, "max", 6.0f);
	Onnx__NodeProto *sl = node(gg, "Slice", "slice", si, 1, "e2");
	int64_t st[1] = {0}, en[1] = {2}, ax[1] = {1};
	qd_node_set_attr_ints(sl, "starts", st, 1);
	qd_node_set_attr_ints(sl, "ends", en, 1);
	qd_node_set_attr_ints(sl, "axes", ax, 1);
	int64_t d2[2] = {2, 3}, d3[2] = {3, 2};
	add_vi(&gg->output, &gg->n_output, qd_value_info_new("y3", QD_DT_FLOAT, d2, 2));
	add_vi(&gg->output, &gg->n_output, qd_value_info_new("e2", QD_DT_FLOAT, d3, 2));
	CHECK_EQ_INT(quantize(m, "{\"quant_format\": \"QDQ\"}", NULL, &err), 0);
	CHECK_EQ_INT(qd_model_opset(m, ""), 11);
	clip = find_node(m->proto->graph, "clip");
	CHECK(clip && clip->n_input == 3 && qd_node_attr(clip, "min") == NULL);
	if (clip && clip->n_input == 3) {
		Onnx__TensorProto *t = find_init(m->proto->graph, clip->input[2]);
		float *v = NULL; int64_t nv = 0;
		CHECK(t && qd_tensor_to_float(t, &v, &nv, &err) == 0 && nv == 1 && v[0] == 6.0f);
		free(v);
	}
	sl = find_node(m->proto->graph, "slice");
	CHECK(sl && sl->n_input == 4 && qd_node_attr(sl, "starts") == NULL);
	qd_model_free(m);

	/* opset 9 QDQ with Pad-2: raised, pads become an input (passes/opset.c) */
	m = make_m1(9);
	gg = m->proto->graph;
	Onnx__NodeProto *pad = node(gg, "Pad", "pad", ci, 1, "y4");
	int64_t pads[4] = {0, 1, 0, 1};
	qd_node_set_attr_ints(pad, "pads", pads, 4);
	CHECK_EQ_INT(quantize(m, "{\"quant_format\": \"QDQ\"}", NULL, &err), 0);
	CHECK_EQ_INT(qd_model_opset(m, ""), 11);
	pad = find_node(m->proto->graph, "pad");
	CHECK(pad && pad->n_input == 2 && qd_node_attr(pad, "pads") == NULL);
	qd_model_free(m);

	/* opset 9 QDQ with OneHot-9 (negative indices change meaning at 11): refused, naming
	 * the node, model untouched */
	m = make_m1(9);
	gg = m->proto->graph;
	int64_t depth = 4;
	float onoff[2] = {0.0f, 1.0f};
	int64_t d1[1] = {2};
	qd_graph_add_initializer(gg, qd_tensor_new("depth", QD_DT_INT64, NULL, 0, &depth, sizeof depth));
	qd_graph_add_initializer(gg, qd_tensor_new("onoff", QD_DT_FLOAT, d1, 1, onoff, sizeof onoff));
	const char *oi[3] = {"ids", "depth", "onoff"};
	node(gg, "OneHot", "onehot", oi, 3, "oh");
	CHECK_EQ_INT(quantize(m, "{\"quant_format\": \"QDQ\"}", NULL, &err), -QD_EUNSUPPORTED);
	CHECK(strstr(err.msg, "'onehot'") != NULL);
	CHECK_EQ_INT(qd_model_opset(m, ""), 9);
	qd_model_free(m);
}

/* x[1,2,5,5] -Conv(W[3,2,3,3], B[3], pads 1)-> y */
static struct qd_model *make_conv(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[4] = {1, 2, 5, 5}, yd[4] = {1, 3, 5, 5}, wd[4] = {3, 2, 3, 3}, bd[1] = {3};
	add_vi(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, xd, 4));
	add_vi(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, yd, 4));
	add_init_f(g, "W", wd, 4, 0.4f);
	add_init_f(g, "B", bd, 1, 0.2f);
	const char *in[3] = {"x", "W", "B"};
	int64_t pads[4] = {1, 1, 1, 1};
	qd_node_set_attr_ints(node(g, "Conv", "conv", in, 3, "y"), "pads", pads, 4);
	return m;
}

static void test_conv(void)
{
	struct qd_err err;
	struct qd_model *m = make_conv();
	json_t *stats = NULL;
	CHECK_EQ_INT(quantize(m, "{}", &stats, &err), 0);   /* Conv not in the default op types */
	CHECK_EQ_INT(count_op(m->proto->graph, "Conv"), 1);
	CHECK_EQ_INT(count_op(m->proto->graph, "ConvInteger"), 0);
	json_decref(stats);
	qd_model_free(m);

	m = make_conv();
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_quantize\": [\"Conv\"], \"per_channel\": true}", NULL, &err), 0);
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = find_node(g, "conv_quant");
	CHECK(n && !strcmp(n->op_type, "ConvInteger") && qd_node_attr(n, "pads") != NULL);
	Onnx__TensorProto *t = find_init(g, "W_quantized");
	CHECK(t && t->data_type == QD_DT_UINT8);     /* ORT has only the u8 x u8 kernel */
	t = find_init(g, "W_scale");
	CHECK(t && t->n_dims == 0);                   /* ConvInteger: per-tensor */
	n = find_node(g, "y_bias_add");
	CHECK(n && !strcmp(n->output[0], "y"));
	t = find_init(g, "y_bias_reshape_shape");
	CHECK(t && t->dims[0] == 4);
	CHECK_EQ_INT(qd_pass_validate_output(m, &err), 0);
	qd_model_free(m);

	m = make_conv();
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_quantize\": [\"Conv\"], \"per_channel\": true, "
			      "\"quant_format\": \"QDQ\"}", NULL, &err), 0);
	g = m->proto->graph;
	n = find_node(g, "W_DequantizeLinear");
	CHECK(n && qd_node_attr_int(n, "axis", -9) == 0);
	t = find_init(g, "W_quantized");
	CHECK(t && t->data_type == QD_DT_INT8);
	t = find_init(g, "W_scale");
	CHECK(t && t->n_dims == 1 && t->dims[0] == 3);
	qd_model_free(m);

	/* the kernel table refuses ConvInteger with int8 weights */
	m = make_conv();
	g = m->proto->graph;
	int64_t wd[4] = {3, 2, 3, 3};
	int8_t w[54] = {0};
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new("Ws8", QD_DT_INT8, wd, 4, w, sizeof w));
	const char *ci[2] = {"xq", "Ws8"}, *di[1] = {"x"};
	const char *dqo[3] = {"xq", "xs", "xz"};
	qd_graph_add_node(m->proto->graph, qd_node_new("DynamicQuantizeLinear", NULL, "dql", di, 1, dqo, 3));
	node(m->proto->graph, "ConvInteger", "bad", ci, 2, "yy");
	CHECK_EQ_INT(qd_pass_validate_output(m, &err), -QD_EORT_REJECT);
	CHECK_STR(err.field, "bad");
	qd_model_free(m);
}

static void test_selection(void)
{
	struct qd_err err;
	struct qd_model *m = make_m1(13);
	CHECK_EQ_INT(quantize(m, "{\"nodes_to_exclude\": [\"mm\", \"gemm\"]}", NULL, &err), 0);
	CHECK(find_node(m->proto->graph, "mm") != NULL);
	CHECK(find_node(m->proto->graph, "gemm") != NULL);    /* excluded Gemm is not even converted */
	CHECK_EQ_INT(count_op(m->proto->graph, "DequantizeLinear"), 1);
	qd_model_free(m);
	m = make_m1(13);
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_quantize\": [\"Gather\"]}", NULL, &err), 0);
	CHECK_EQ_INT(count_op(m->proto->graph, "MatMulInteger"), 0);
	CHECK_EQ_INT(count_op(m->proto->graph, "Gemm"), 1);
	CHECK(find_init(m->proto->graph, "E_quantized") != NULL);
	qd_model_free(m);
	m = make_m1(13);
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_exclude\": [\"Gather\"], \"nodes_to_quantize\": [\"gemm\", \"gather\"]}",
			      NULL, &err), 0);
	CHECK(find_node(m->proto->graph, "mm") != NULL);                 /* not in nodes_to_quantize */
	CHECK(find_node(m->proto->graph, "gemm_MatMul_quant") != NULL);  /* Gemm name selects it */
	CHECK(find_init(m->proto->graph, "E") != NULL);                  /* Gather type excluded */
	qd_model_free(m);
}

/* MatMul(x, w0) -> h; If(cond) { then: MatMul(h, w_then) } { else: MatMul(h, w_else) } */
static struct qd_model *make_if(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[2] = {2, 4}, yd[2] = {2, 3}, w0d[2] = {4, 4}, wd[2] = {4, 3};
	add_vi(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, xd, 2));
	add_vi(&g->input, &g->n_input, qd_value_info_new("cond", QD_DT_BOOL, NULL, 0));
	add_vi(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, yd, 2));
	add_init_f(g, "w0", w0d, 2, 0.5f);
	add_init_f(g, "w_then", wd, 2, 0.5f);
	add_init_f(g, "w_else", wd, 2, 0.7f);
	const char *i0[2] = {"x", "w0"}, *ic[1] = {"cond"};
	node(g, "MatMul", "pre", i0, 2, "h");
	Onnx__NodeProto *nif = node(g, "If", "if", ic, 1, "y");
	const char *br[2] = {"then_branch", "else_branch"}, *wn[2] = {"w_then", "w_else"};
	for (int b = 0; b < 2; b++) {
		struct qd_model *sub = qd_model_new(8, 13);
		Onnx__GraphProto *sg = sub->proto->graph;
		sub->proto->graph = NULL;
		qd_model_free(sub);
		char out[32];
		snprintf(out, sizeof out, "%s_y", br[b]);
		const char *in[2] = {"h", wn[b]};
		node(sg, "MatMul", br[b], in, 2, out);
		add_vi(&sg->output, &sg->n_output, qd_value_info_new(out, QD_DT_FLOAT, yd, 2));
		Onnx__AttributeProto *a = malloc(sizeof *a);
		onnx__attribute_proto__init(a);
		a->name = strdup(br[b]);
		a->has_type = 1;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
		a->g = sg;
		nif->attribute = realloc(nif->attribute, (nif->n_attribute + 1) * sizeof *nif->attribute);
		nif->attribute[nif->n_attribute++] = a;
	}
	return m;
}

static void test_subgraph(void)
{
	struct qd_err err;
	struct qd_model *m = make_if();
	CHECK_EQ_INT(qd_model_check(m, &err), 0);
	CHECK_EQ_INT(quantize(m, "{}", NULL, &err), 0);
	Onnx__GraphProto *subs[4];
	Onnx__NodeProto *nif = find_node(m->proto->graph, "if");
	size_t ns = nif ? qd_node_subgraphs(nif, subs, 4) : 0;
	CHECK_EQ_INT(ns, 2);
	if (ns == 2)
		CHECK_EQ_INT(count_op(subs[0], "MatMulInteger"), 0);   /* EnableSubgraph off */
	CHECK(find_init(m->proto->graph, "w_then") != NULL);
	qd_model_free(m);

	m = make_if();
	CHECK_EQ_INT(quantize(m, "{\"extra_options\": {\"EnableSubgraph\": true}}", NULL, &err), 0);
	nif = find_node(m->proto->graph, "if");
	ns = nif ? qd_node_subgraphs(nif, subs, 4) : 0;
	CHECK_EQ_INT(ns, 2);
	for (size_t i = 0; i < ns && i < 4; i++) {
		CHECK_EQ_INT(count_op(subs[i], "MatMulInteger"), 1);
		CHECK_EQ_INT(count_op(subs[i], "DynamicQuantizeLinear"), 1);
		CHECK(subs[i]->n_initializer >= 3);                 /* quantized weight lives inside */
	}
	CHECK(find_init(m->proto->graph, "w_then") == NULL);        /* float weights removed */
	CHECK(find_init(m->proto->graph, "w_else") == NULL);
	CHECK_EQ_INT(qd_model_check(m, &err), 0);
	qd_model_free(m);
}

/* LSTM (D=2, H=4, I=3) and com.microsoft Attention (hidden 8, 2 heads) */
static struct qd_model *make_lstm_attn(void)
{
	struct qd_model *m = qd_model_new(8, 14);
	qd_model_set_opset(m, "com.microsoft", 1);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[3] = {5, 1, 3}, ad[3] = {1, 5, 8};
	add_vi(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, xd, 3));
	add_vi(&g->input, &g->n_input, qd_value_info_new("a", QD_DT_FLOAT, ad, 3));
	add_vi(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	add_vi(&g->output, &g->n_output, qd_value_info_new("b", QD_DT_FLOAT, NULL, 0));
	int64_t wd[3] = {2, 16, 3}, rd[3] = {2, 16, 4}, awd[2] = {8, 24}, abd[1] = {24};
	add_init_f(g, "W", wd, 3, 0.3f);
	add_init_f(g, "R", rd, 3, 0.3f);
	add_init_f(g, "AW", awd, 2, 0.3f);
	add_init_f(g, "AB", abd, 1, 0.1f);
	const char *li[3] = {"x", "W", "R"}, *ai[3] = {"a", "AW", "AB"};
	Onnx__NodeProto *l = node(g, "LSTM", "lstm", li, 3, "y");
	qd_node_set_attr_int(l, "hidden_size", 4);
	qd_node_set_attr_string(l, "direction", "bidirectional");
	const char *ao[1] = {"b"};
	Onnx__NodeProto *at = qd_node_new("Attention", "com.microsoft", "attn", ai, 3, ao, 1);
	qd_node_set_attr_int(at, "num_heads", 2);
	qd_graph_add_node(g, at);
	return m;
}

static void test_lstm_attention(void)
{
	struct qd_err err;
	struct qd_model *m = make_lstm_attn();
	CHECK_EQ_INT(quantize(m, "{\"per_channel\": true}", NULL, &err), 0);
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = find_node(g, "lstm_quant");
	CHECK(n && !strcmp(n->op_type, "DynamicQuantizeLSTM") && n->n_input == 12 &&
	      !strcmp(qd_node_domain(n), "com.microsoft"));
	if (n && n->n_input == 12) {
		CHECK_STR(n->input[1], "W_quantized");
		CHECK_STR(n->input[8], "W_scale");
		CHECK_STR(n->input[11], "R_zero_point");
		CHECK_STR(n->input[3], "");
	}
	Onnx__TensorProto *t = find_init(g, "W_quantized");   /* [D, I, 4H] */
	CHECK(t && t->data_type == QD_DT_INT8 && t->dims[0] == 2 && t->dims[1] == 3 && t->dims[2] == 16);
	t = find_init(g, "W_scale");
	CHECK(t && t->n_dims == 2 && t->dims[0] == 2 && t->dims[1] == 16);
	n = find_node(g, "attn_quant");
	CHECK(n && !strcmp(n->op_type, "QAttention") && n->n_input == 9 && qd_node_attr_int(n, "num_heads", 0) == 2);
	if (n && n->n_input == 9) {
		CHECK_STR(n->input[0], "a_quantized");
		CHECK_STR(n->input[2], "AB");
		CHECK_STR(n->input[6], "a_zero_point");
	}
	t = find_init(g, "AW_scale");
	CHECK(t && t->n_dims == 1 && t->dims[0] == 24);
	CHECK_EQ_INT(qd_pass_validate_output(m, &err), 0);
	qd_model_free(m);
	m = make_lstm_attn();
	CHECK_EQ_INT(quantize(m, "{}", NULL, &err), 0);
	t = find_init(m->proto->graph, "R_scale");
	CHECK(t && t->n_dims == 1 && t->dims[0] == 2);         /* one range per direction */
	qd_model_free(m);
}

/* Per-op facts from passes/op_rules.def: selection by the table's dynamic default flag, a
 * refused op type (Transpose) reported when listed, the domain of Attention. */
static void test_table_rows(void)
{
	struct qd_err err;
	json_t *stats = NULL;
	struct qd_model *m = make_lstm_attn();
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_exclude\": [\"LSTM\"]}", &stats, &err), 0);
	CHECK(find_node(m->proto->graph, "lstm") != NULL);
	CHECK(find_node(m->proto->graph, "attn_quant") != NULL);
	json_t *q = json_object_get(stats, "quantized_nodes");
	CHECK_EQ_INT(json_integer_value(json_object_get(q, "Attention")), 1);
	CHECK(json_object_get(q, "LSTM") == NULL);
	json_decref(stats);
	qd_model_free(m);

	/* com.microsoft Attention only: the same node in another domain is not QAttention'd */
	m = make_lstm_attn();
	Onnx__NodeProto *at = find_node(m->proto->graph, "attn");
	free(at->domain);
	at->domain = strdup("org.example");
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_quantize\": [\"Attention\"]}", NULL, &err), 0);
	CHECK(find_node(m->proto->graph, "attn") != NULL);
	CHECK_EQ_INT(count_op(m->proto->graph, "QAttention"), 0);
	qd_model_free(m);

	/* x -Transpose-> t -MatMul(W)-> y: Transpose listed is reported, MatMul quantized */
	m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[2] = {8, 2}, yd[2] = {2, 4}, wd[2] = {8, 4};
	add_vi(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, xd, 2));
	add_vi(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, yd, 2));
	add_init_f(g, "W", wd, 2, 0.5f);
	const char *ti[1] = {"x"}, *mi[2] = {"t", "W"};
	node(g, "Transpose", "tr", ti, 1, "t");
	node(g, "MatMul", "mm", mi, 2, "y");
	CHECK_EQ_INT(quantize(m, "{\"op_types_to_quantize\": [\"MatMul\", \"Transpose\"]}", &stats, &err), 0);
	CHECK(find_node(m->proto->graph, "tr") != NULL);
	CHECK(find_node(m->proto->graph, "mm_quant") != NULL);
	json_t *sk = json_object_get(stats, "skipped_nodes");
	CHECK_EQ_INT(json_array_size(sk), 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(sk, 0), "node")), "tr");
	json_decref(stats);
	qd_model_free(m);
}

int main(void)
{
	qd_log_set_level(QD_LOG_WARN);
	test_qoperator();
	test_qdq();
	test_activation_symmetric();
	test_old_opsets();
	test_conv();
	test_selection();
	test_subgraph();
	test_lstm_attention();
	test_table_rows();
	return qd_test_done("test_passes_dynamic");
}
