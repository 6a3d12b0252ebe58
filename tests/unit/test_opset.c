/* qd_model_upgrade_opset (passes/opset.c) on one-node models built here: every convertible
 * op at an old opset gives the same engine outputs after the raise to 13 (the engine runs
 * both versions of each op), the refused cases name the node and leave the model as it was,
 * subgraphs are rewritten, new initializer names are unique, stats and log are filled. */
#include "qd_test.h"
#include "passes/opset.h"
#include "engine/engine.h"

#include <stdlib.h>

static void add_vi(Onnx__ValueInfoProto ***arr, size_t *n, Onnx__ValueInfoProto *v)
{
	*arr = realloc(*arr, (*n + 1) * sizeof **arr);
	(*arr)[(*n)++] = v;
}

/* model at `opset` with float input x of shape xd (nd < 0: no shape) and outputs y0..y{nout-1}
 * of unknown shape; the caller adds the node(s). */
static struct qd_model *make(int64_t opset, const int64_t *xd, int nd, int nout)
{
	struct qd_model *m = qd_model_new(opset <= 8 ? 3 : 4, opset);
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__ValueInfoProto *x = qd_value_info_new("x", QD_DT_FLOAT, xd, nd < 0 ? 0 : (size_t)nd);
	if (nd < 0) {   /* no shape at all: rank unknown */
		protobuf_c_message_free_unpacked(&x->type->tensor_type->shape->base, NULL);
		x->type->tensor_type->shape = NULL;
	}
	add_vi(&g->input, &g->n_input, x);
	for (int i = 0; i < nout; i++) {
		char name[8];
		snprintf(name, sizeof name, "y%d", i);
		Onnx__ValueInfoProto *v = qd_value_info_new(name, QD_DT_FLOAT, NULL, 0);
		protobuf_c_message_free_unpacked(&v->type->tensor_type->shape->base, NULL);
		v->type->tensor_type->shape = NULL;
		add_vi(&g->output, &g->n_output, v);
	}
	return m;
}

static Onnx__NodeProto *add(Onnx__GraphProto *g, const char *op, const char *name, const char *const *in,
			    size_t ni, const char *const *out, size_t no)
{
	Onnx__NodeProto *n = qd_node_new(op, NULL, name, in, ni, out, no);
	qd_graph_add_node(g, n);
	return n;
}

static const char *X[1] = {"x"}, *Y[1] = {"y0"}, *Y2[2] = {"y0", "y1"};

/* run m on x (values i*0.37 - k, deterministic); *outs new */
static int run(struct qd_model *m, const int64_t *xd, int nd, struct qd_tensor **outs, size_t *nout)
{
	struct qd_tensor in;
	struct qd_err err;
	qd_tensor_alloc(&in, "x", QD_DT_FLOAT, nd, xd);
	int64_t cnt = qd_tensor_count(&in);
	for (int64_t i = 0; i < cnt; i++)
		((float *)in.data)[i] = (float)((i * 37) % 19) * 0.37f - 3.1f;
	struct qd_engine *e = NULL;
	int rc = qd_engine_load(m, NULL, &e, &err);
	if (rc == 0)
		rc = qd_engine_run(e, &in, 1, outs, nout, NULL, &err);
	if (rc < 0)
		fprintf(stderr, "engine (opset %lld): %s\n", (long long)qd_model_opset(m, ""), err.msg);
	qd_engine_free(e);
	qd_tensor_release(&in);
	return rc;
}

static void collect(void *ud, enum qd_log_level lvl, const char *line)
{
	snprintf(ud, 512, "%s", line);
}

/* outputs before == outputs after raising to `to`; returns the upgraded model's stats */
static void same_after(const char *label, struct qd_model *m, const int64_t *xd, int nd, int64_t to,
		       const char *rewritten_op)
{
	struct qd_tensor *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	struct qd_err err;
	char line[512] = "";
	json_t *stats = json_object();
	int64_t from = qd_model_opset(m, "");
	CHECKF(run(m, xd, nd, &a, &na) == 0, "%s: engine before", label);
	int rc = qd_model_upgrade_opset(m, to, collect, line, stats, &err);
	CHECKF(rc == 0, "%s: upgrade: %s", label, rc ? err.msg : "");
	CHECKF(qd_model_opset(m, "") == to, "%s: opset %lld", label, (long long)qd_model_opset(m, ""));
	CHECKF(m->proto->ir_version >= qd_opset_ir_version(to), "%s: ir_version %lld", label,
	       (long long)m->proto->ir_version);
	CHECKF(qd_model_check(m, &err) == 0, "%s: check: %s", label, err.msg);
	json_t *os = json_object_get(stats, "opset_raised");
	CHECKF(json_integer_value(json_object_get(os, "from")) == from &&
	       json_integer_value(json_object_get(os, "to")) == to, "%s: stats from/to", label);
	if (rewritten_op)
		CHECKF(json_integer_value(json_object_get(json_object_get(os, "rewritten"), rewritten_op)) >= 1,
		       "%s: stats rewritten.%s", label, rewritten_op);
	CHECKF(strstr(line, "opset raised from") != NULL, "%s: log line '%s'", label, line);
	CHECKF(run(m, xd, nd, &b, &nb) == 0, "%s: engine after", label);
	CHECKF(na == nb && na > 0, "%s: %zu vs %zu outputs", label, na, nb);
	for (size_t o = 0; o < na && o < nb; o++) {
		bool same = a[o].ndim == b[o].ndim && a[o].dtype == b[o].dtype && a[o].nbytes == b[o].nbytes;
		for (int d = 0; same && d < a[o].ndim; d++)
			same = a[o].dims[d] == b[o].dims[d];
		double md = 0;
		if (same && a[o].dtype == QD_DT_FLOAT)
			for (int64_t i = 0; i < qd_tensor_count(&a[o]); i++)
				md = fmax(md, fabs(((float *)a[o].data)[i] - ((float *)b[o].data)[i]));
		else if (same)
			same = !memcmp(a[o].data, b[o].data, a[o].nbytes);
		CHECKF(same && md <= 1e-6, "%s: output %zu differs (max abs %g)", label, o, md);
	}
	qd_tensors_release(a, na);
	qd_tensors_release(b, nb);
	json_decref(stats);
	qd_model_free(m);
}

static void refused(const char *label, struct qd_model *m, int64_t to, const char *node)
{
	struct qd_err err;
	struct qd_buf before = {0}, after = {0};
	qd_model_serialize(m, &before, &err);
	json_t *stats = json_object();
	int rc = qd_model_upgrade_opset(m, to, NULL, NULL, stats, &err);
	CHECKF(rc == -QD_EUNSUPPORTED, "%s: rc %d (%s)", label, rc, rc ? err.msg : "accepted");
	char q[80];
	snprintf(q, sizeof q, "'%s'", node);
	CHECKF(rc && strstr(err.msg, q) != NULL, "%s: message does not name %s: %s", label, q, err.msg);
	CHECK_STR(err.field, node);
	qd_model_serialize(m, &after, &err);
	CHECKF(before.len == after.len && !memcmp(before.data, after.data, before.len), "%s: model changed", label);
	CHECKF(json_object_get(stats, "opset_raised") == NULL, "%s: stats written on refusal", label);
	qd_buf_free(&before);
	qd_buf_free(&after);
	json_decref(stats);
	qd_model_free(m);
}

static void init_f(Onnx__GraphProto *g, const char *name, const int64_t *dims, size_t nd, const float *v, size_t n)
{
	qd_graph_add_initializer(g, qd_tensor_new(name, QD_DT_FLOAT, dims, nd, v, n * sizeof *v));
}

static void test_attr_to_input(void)
{
	int64_t d23[2] = {2, 3}, d34[2] = {3, 4}, d213[3] = {2, 1, 3}, d234[3] = {2, 3, 4};
	struct qd_model *m;
	Onnx__NodeProto *n;

	/* Clip-6, both bounds and one bound, opset 9 and 7 */
	m = make(9, d23, 2, 1);
	n = add(m->proto->graph, "Clip", "clip", X, 1, Y, 1);
	qd_node_set_attr_float(n, "min", -1.0f);
	qd_node_set_attr_float(n, "max", 2.0f);
	same_after("clip-6", m, d23, 2, 13, "Clip");
	m = make(7, d23, 2, 1);
	qd_node_set_attr_float(add(m->proto->graph, "Clip", "clip", X, 1, Y, 1), "max", 0.5f);
	same_after("clip-6 max only", m, d23, 2, 11, "Clip");

	/* Slice-1 with and without axes */
	m = make(9, d34, 2, 1);
	n = add(m->proto->graph, "Slice", "slice", X, 1, Y, 1);
	int64_t st[2] = {1, 0}, en[2] = {3, -1}, ax[2] = {0, 1};
	qd_node_set_attr_ints(n, "starts", st, 2);
	qd_node_set_attr_ints(n, "ends", en, 2);
	qd_node_set_attr_ints(n, "axes", ax, 2);
	same_after("slice-1", m, d34, 2, 13, "Slice");
	m = make(8, d34, 2, 1);
	n = add(m->proto->graph, "Slice", "slice", X, 1, Y, 1);
	qd_node_set_attr_ints(n, "starts", st, 1);
	qd_node_set_attr_ints(n, "ends", en, 1);
	same_after("slice-1 no axes", m, d34, 2, 10, "Slice");

	/* Squeeze / Unsqueeze / ReduceSum axes, Split split */
	int64_t a1[1] = {1}, a0[2] = {0, 3};
	m = make(11, d213, 3, 1);
	qd_node_set_attr_ints(add(m->proto->graph, "Squeeze", "sq", X, 1, Y, 1), "axes", a1, 1);
	same_after("squeeze-11", m, d213, 3, 13, "Squeeze");
	m = make(9, d23, 2, 1);
	qd_node_set_attr_ints(add(m->proto->graph, "Unsqueeze", "unsq", X, 1, Y, 1), "axes", a0, 2);
	same_after("unsqueeze-1", m, d23, 2, 13, "Unsqueeze");
	m = make(12, d234, 3, 1);
	n = add(m->proto->graph, "ReduceSum", "rs", X, 1, Y, 1);
	qd_node_set_attr_ints(n, "axes", a1, 1);
	qd_node_set_attr_int(n, "keepdims", 0);
	same_after("reducesum-11", m, d234, 3, 13, "ReduceSum");
	m = make(9, d234, 3, 1);
	add(m->proto->graph, "ReduceSum", "rs_all", X, 1, Y, 1);   /* no axes: all, both versions */
	same_after("reducesum no axes", m, d234, 3, 13, NULL);
	m = make(9, d23, 2, 2);
	n = add(m->proto->graph, "Split", "split", X, 1, Y2, 2);
	int64_t sp[2] = {1, 2};
	qd_node_set_attr_ints(n, "split", sp, 2);
	qd_node_set_attr_int(n, "axis", 1);
	same_after("split-2", m, d23, 2, 13, "Split");

	/* Pad-2: reflect, and constant with a value */
	int64_t pads[4] = {1, 0, 0, 2};
	m = make(9, d23, 2, 1);
	n = add(m->proto->graph, "Pad", "pad", X, 1, Y, 1);
	qd_node_set_attr_ints(n, "pads", pads, 4);
	qd_node_set_attr_float(n, "value", 1.5f);
	same_after("pad-2 constant", m, d23, 2, 13, "Pad");
	m = make(9, d23, 2, 1);
	n = add(m->proto->graph, "Pad", "pad", X, 1, Y, 1);
	int64_t pads2[4] = {1, 1, 1, 1};
	qd_node_set_attr_ints(n, "pads", pads2, 4);
	qd_node_set_attr_string(n, "mode", "edge");
	same_after("pad-2 edge", m, d23, 2, 11, "Pad");

	/* Dropout-7 ratio, TopK-1 k */
	m = make(9, d23, 2, 1);
	qd_node_set_attr_float(add(m->proto->graph, "Dropout", "drop", X, 1, Y, 1), "ratio", 0.3f);
	same_after("dropout-7", m, d23, 2, 13, "Dropout");
	m = make(9, d34, 2, 2);
	n = add(m->proto->graph, "TopK", "topk", X, 1, Y2, 2);
	qd_node_set_attr_int(n, "k", 2);
	m->proto->graph->output[1]->type->tensor_type->elem_type = QD_DT_INT64;
	same_after("topk-1", m, d34, 2, 13, "TopK");

	/* BatchNormalization-7 spatial=1 dropped at 9 */
	int64_t dx[4] = {1, 2, 2, 2}, dc[1] = {2};
	float sc[2] = {1.5f, 0.5f}, bi[2] = {0.1f, -0.2f}, mu[2] = {0.3f, 0.0f}, var[2] = {1.0f, 2.0f};
	m = make(8, dx, 4, 1);
	init_f(m->proto->graph, "s", dc, 1, sc, 2);
	init_f(m->proto->graph, "b", dc, 1, bi, 2);
	init_f(m->proto->graph, "mu", dc, 1, mu, 2);
	init_f(m->proto->graph, "var", dc, 1, var, 2);
	const char *bn_in[5] = {"x", "s", "b", "mu", "var"};
	qd_node_set_attr_int(add(m->proto->graph, "BatchNormalization", "bn", bn_in, 5, Y, 1), "spatial", 1);
	same_after("batchnorm-7 spatial=1", m, dx, 4, 13, "BatchNormalization");
}

static void test_softmax(void)
{
	int64_t d23[2] = {2, 3}, d234[3] = {2, 3, 4};
	struct qd_model *m;
	m = make(9, d23, 2, 1);
	add(m->proto->graph, "Softmax", "sm", X, 1, Y, 1);   /* default axis 1 = last of rank 2 */
	same_after("softmax-1 default axis rank 2", m, d23, 2, 13, "Softmax");
	m = make(11, d234, 3, 1);
	qd_node_set_attr_int(add(m->proto->graph, "LogSoftmax", "lsm", X, 1, Y, 1), "axis", -1);
	same_after("logsoftmax-11 axis -1", m, d234, 3, 13, "LogSoftmax");
	m = make(9, d234, 3, 1);
	qd_node_set_attr_int(add(m->proto->graph, "Hardmax", "hm", X, 1, Y, 1), "axis", 2);
	same_after("hardmax-1 axis 2 rank 3", m, d234, 3, 13, "Hardmax");
	/* rank through inference: Relu then Transpose then Softmax axis 2 */
	m = make(9, d234, 3, 1);
	const char *r[1] = {"r"}, *t[1] = {"t"};
	add(m->proto->graph, "Relu", "relu", X, 1, r, 1);
	add(m->proto->graph, "Transpose", "tr", r, 1, t, 1);
	qd_node_set_attr_int(add(m->proto->graph, "Softmax", "sm_inf", t, 1, Y, 1), "axis", 2);
	same_after("softmax after inferred rank", m, d234, 3, 13, "Softmax");

	/* not the last axis, unknown rank: refused */
	m = make(9, d234, 3, 1);
	qd_node_set_attr_int(add(m->proto->graph, "Softmax", "sm_mid", X, 1, Y, 1), "axis", 1);
	refused("softmax axis 1 of rank 3", m, 13, "sm_mid");
	m = make(11, NULL, -1, 1);
	add(m->proto->graph, "LogSoftmax", "lsm_unknown", X, 1, Y, 1);
	refused("logsoftmax unknown rank", m, 13, "lsm_unknown");
	/* to 12 the Softmax rule does not apply */
	m = make(11, NULL, -1, 1);
	add(m->proto->graph, "Softmax", "sm12", X, 1, Y, 1);
	struct qd_err err;
	CHECK_EQ_INT(qd_model_upgrade_opset(m, 12, NULL, NULL, NULL, &err), 0);
	CHECK_EQ_INT(qd_model_opset(m, ""), 12);
	qd_model_free(m);
}

static void test_resize(void)
{
	int64_t dx[4] = {1, 1, 2, 3}, d4[1] = {4};
	float up[4] = {1, 1, 2, 3}, down[4] = {1, 1, 0.5f, 1};
	const char *in2[2] = {"x", "scales"};
	struct qd_model *m;
	/* Upsample-9 nearest and linear → Resize-11 */
	m = make(9, dx, 4, 1);
	init_f(m->proto->graph, "scales", d4, 1, up, 4);
	add(m->proto->graph, "Upsample", "ups", in2, 2, Y, 1);
	same_after("upsample-9 nearest", m, dx, 4, 13, "Upsample");
	m = make(9, dx, 4, 1);
	init_f(m->proto->graph, "scales", d4, 1, up, 4);
	qd_node_set_attr_string(add(m->proto->graph, "Upsample", "ups", in2, 2, Y, 1), "mode", "linear");
	same_after("upsample-9 linear", m, dx, 4, 11, "Upsample");
	/* Upsample-7 (scales attribute) → Resize-11 and → Upsample-9 */
	m = make(8, dx, 4, 1);
	Onnx__NodeProto *n = add(m->proto->graph, "Upsample", "ups7", X, 1, Y, 1);
	qd_node_set_attr_floats(n, "scales", up, 4);
	same_after("upsample-7 nearest", m, dx, 4, 13, "Upsample");
	m = make(7, dx, 4, 1);
	n = add(m->proto->graph, "Upsample", "ups7", X, 1, Y, 1);
	qd_node_set_attr_floats(n, "scales", up, 4);
	qd_node_set_attr_string(n, "mode", "linear");
	same_after("upsample-7 linear to 9", m, dx, 4, 9, "Upsample");
	/* Resize-10 nearest / linear → 11 */
	m = make(10, dx, 4, 1);
	init_f(m->proto->graph, "scales", d4, 1, up, 4);
	add(m->proto->graph, "Resize", "rs10", in2, 2, Y, 1);
	same_after("resize-10 nearest", m, dx, 4, 13, "Resize");
	m = make(10, dx, 4, 1);
	init_f(m->proto->graph, "scales", d4, 1, down, 4);
	qd_node_set_attr_string(add(m->proto->graph, "Resize", "rs10", in2, 2, Y, 1), "mode", "linear");
	same_after("resize-10 linear down", m, dx, 4, 13, "Resize");
	/* nearest downsampling / scales not constant: refused */
	m = make(10, dx, 4, 1);
	init_f(m->proto->graph, "scales", d4, 1, down, 4);
	add(m->proto->graph, "Resize", "rs_down", in2, 2, Y, 1);
	refused("resize-10 nearest down", m, 11, "rs_down");
	m = make(9, dx, 4, 1);
	add_vi(&m->proto->graph->input, &m->proto->graph->n_input, qd_value_info_new("scales", QD_DT_FLOAT, d4, 1));
	add(m->proto->graph, "Upsample", "ups_dyn", in2, 2, Y, 1);
	refused("upsample-9 dynamic scales", m, 13, "ups_dyn");
}

static void test_refusals(void)
{
	int64_t d23[2] = {2, 3}, dx[4] = {1, 2, 2, 2}, dc[1] = {2};
	float one[2] = {1, 1};
	struct qd_model *m = make(9, d23, 2, 1);
	int64_t depth = 3;
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new("depth", QD_DT_INT64, NULL, 0, &depth, 8));
	init_f(m->proto->graph, "vals", dc, 1, one, 2);
	const char *oh[3] = {"x", "depth", "vals"};
	add(m->proto->graph, "OneHot", "oh", oh, 3, Y, 1);
	refused("onehot-9", m, 11, "oh");

	m = make(9, d23, 2, 1);
	const char *sc[3] = {"x", "x", "x"};
	add(m->proto->graph, "Scatter", "scat", sc, 3, Y, 1);
	refused("scatter-9", m, 13, "scat");

	m = make(8, dx, 4, 1);
	const char *bn_in[5] = {"x", "s", "s", "s", "s"};
	init_f(m->proto->graph, "s", dc, 1, one, 2);
	qd_node_set_attr_int(add(m->proto->graph, "BatchNormalization", "bn0", bn_in, 5, Y, 1), "spatial", 0);
	refused("batchnorm spatial=0", m, 9, "bn0");

	m = make(9, d23, 2, 2);
	add(m->proto->graph, "Dropout", "drop_mask", X, 1, Y2, 2);
	refused("dropout mask output", m, 10, "drop_mask");

	/* a refused node after a convertible one: the Clip must stay untouched too */
	m = make(9, d23, 2, 1);
	const char *c[1] = {"c"};
	qd_node_set_attr_float(add(m->proto->graph, "Clip", "clip_ok", X, 1, c, 1), "max", 1.0f);
	qd_node_set_attr_int(add(m->proto->graph, "Softmax", "sm_bad", c, 1, Y, 1), "axis", 0);
	refused("convertible then refused", m, 13, "sm_bad");

	/* bounds of the API */
	struct qd_err err;
	m = make(9, d23, 2, 1);
	add(m->proto->graph, "Relu", "relu", X, 1, Y, 1);
	CHECK_EQ_INT(qd_model_upgrade_opset(m, 14, NULL, NULL, NULL, &err), -QD_EUNSUPPORTED);
	CHECK_EQ_INT(qd_model_upgrade_opset(m, 9, NULL, NULL, NULL, &err), 0);   /* already there */
	CHECK_EQ_INT(qd_model_opset(m, ""), 9);
	qd_model_free(m);
	m = make(6, d23, 2, 1);
	add(m->proto->graph, "Relu", "relu", X, 1, Y, 1);
	CHECK_EQ_INT(qd_model_upgrade_opset(m, 11, NULL, NULL, NULL, &err), -QD_EUNSUPPORTED);
	qd_model_free(m);
}

static Onnx__GraphProto *branch(const char *name, float max)
{
	Onnx__GraphProto *g = malloc(sizeof *g);
	onnx__graph_proto__init(g);
	g->name = strdup(name);
	char out[32];
	snprintf(out, sizeof out, "%s_out", name);
	const char *o[1] = {out};
	Onnx__NodeProto *n = qd_node_new("Clip", NULL, name, X, 1, o, 1);
	qd_node_set_attr_float(n, "max", max);
	qd_graph_add_node(g, n);
	Onnx__ValueInfoProto *v = qd_value_info_new(out, QD_DT_FLOAT, NULL, 0);
	protobuf_c_message_free_unpacked(&v->type->tensor_type->shape->base, NULL);
	v->type->tensor_type->shape = NULL;
	add_vi(&g->output, &g->n_output, v);
	return g;
}

static void set_graph_attr(Onnx__NodeProto *n, const char *name, Onnx__GraphProto *g)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
	a->g = g;
	n->attribute = realloc(n->attribute, (n->n_attribute + 1) * sizeof *n->attribute);
	n->attribute[n->n_attribute++] = a;
}

static void test_subgraph_and_names(void)
{
	int64_t d23[2] = {2, 3};
	struct qd_model *m = make(9, d23, 2, 1);
	Onnx__GraphProto *g = m->proto->graph;
	int8_t t = 1;
	qd_graph_add_initializer(g, qd_tensor_new("cond", QD_DT_BOOL, NULL, 0, &t, 1));
	const char *ci[1] = {"cond"};
	Onnx__NodeProto *n = add(g, "If", "if", ci, 1, Y, 1);
	set_graph_attr(n, "then_branch", branch("then_clip", 0.5f));
	set_graph_attr(n, "else_branch", branch("else_clip", 2.0f));
	same_after("If with Clip-6 in both branches", m, d23, 2, 11, "Clip");

	/* the new initializer name is unique: "clip_max" is taken */
	m = make(9, d23, 2, 2);
	float v = 7;
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new("clip_max", QD_DT_FLOAT, NULL, 0, &v, 4));
	const char *o2[1] = {"y1"}, *id[1] = {"clip_max"};
	qd_node_set_attr_float(add(m->proto->graph, "Clip", "clip", X, 1, Y, 1), "max", 1.0f);
	add(m->proto->graph, "Identity", "id", id, 1, o2, 1);
	struct qd_err err;
	CHECK_EQ_INT(qd_model_upgrade_opset(m, 11, NULL, NULL, NULL, &err), 0);
	n = m->proto->graph->node[0];
	CHECK(n->n_input == 3 && !strcmp(n->input[1], "") && strcmp(n->input[2], "clip_max") &&
	      !strncmp(n->input[2], "clip_max", 8));
	CHECK(qd_model_check(m, &err) == 0);
	qd_model_free(m);
}

int main(void)
{
	test_attr_to_input();
	test_softmax();
	test_resize();
	test_refusals();
	test_subgraph_and_names();
	return qd_test_done("test_opset");
}
