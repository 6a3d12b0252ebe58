/* Unit test for engine/fuse_qdq.c: small QDQ models built here are fused at load into the
 * QLinear kernels (counted through qd_enode.fused) and give exactly the outputs of the same
 * model written with explicit QLinear ops; groups ONNX Runtime leaves alone (the target's
 * output is a graph output or has a second reader, a drop-QDQ pair with different scales,
 * an int8 activation whose Q -> DQ pair ORT cannot turn into uint8) stay unfused; a hook
 * sees every original tensor. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qd_test.h"
#include "qd.h"
#include "onnx/onnx.h"
#include "engine/engine_internal.h"

static Onnx__GraphProto *G;
static bool g_s8;   /* conv_model: int8 activations */

static struct qd_model *model_new(void)
{
	Onnx__ModelProto *m = calloc(1, sizeof(*m));
	G = calloc(1, sizeof(*G));
	onnx__model_proto__init(m);
	onnx__graph_proto__init(G);
	m->has_ir_version = 1;
	m->ir_version = 8;
	m->graph = G;
	G->name = strdup("qdq");
	m->n_opset_import = 2;
	m->opset_import = calloc(2, sizeof(*m->opset_import));
	const char *dom[2] = { "", "com.microsoft" };
	int64_t ver[2] = { 13, 1 };
	for (int i = 0; i < 2; i++) {
		m->opset_import[i] = calloc(1, sizeof(Onnx__OperatorSetIdProto));
		onnx__operator_set_id_proto__init(m->opset_import[i]);
		m->opset_import[i]->domain = strdup(dom[i]);
		m->opset_import[i]->has_version = 1;
		m->opset_import[i]->version = ver[i];
	}
	struct qd_model *qm = calloc(1, sizeof(*qm));
	qm->proto = m;
	return qm;
}

static void init(const char *name, int dt, int nd, const int64_t *dims, const void *data, size_t nb)
{
	qd_graph_add_initializer(G, qd_tensor_new(name, dt, dims, (size_t)nd, data, nb));
}

static void scalar_f(const char *name, float v)
{
	init(name, QD_DT_FLOAT, 0, NULL, &v, sizeof(v));
}

static void scalar_u8(const char *name, uint8_t v)
{
	init(name, QD_DT_UINT8, 0, NULL, &v, 1);
}

/* Node with up to 9 inputs ("" = absent) and one output. */
static Onnx__NodeProto *nd(const char *op, const char *dom, const char *out, int nin, ...)
{
	const char *in[16];
	va_list ap;
	va_start(ap, nin);
	for (int i = 0; i < nin; i++)
		in[i] = va_arg(ap, const char *);
	va_end(ap);
	const char *o[1] = { out };
	static int k;
	char name[32];
	snprintf(name, sizeof(name), "%s_%d", op, k++);
	Onnx__NodeProto *n = qd_node_new(op, dom, name, in, (size_t)nin, o, 1);
	qd_graph_add_node(G, n);
	return n;
}

static void outputs(int n, ...)
{
	va_list ap;
	va_start(ap, n);
	G->n_output = (size_t)n;
	G->output = calloc((size_t)n, sizeof(*G->output));
	for (int i = 0; i < n; i++) {
		G->output[i] = calloc(1, sizeof(Onnx__ValueInfoProto));
		onnx__value_info_proto__init(G->output[i]);
		G->output[i]->name = strdup(va_arg(ap, const char *));
	}
	va_end(ap);
}

static void rand_f(float *v, int n, unsigned *seed, float scale)
{
	for (int i = 0; i < n; i++)
		v[i] = ((float)(rand_r(seed) % 2001) - 1000.0f) / 1000.0f * scale;
}

/* ---- Conv: Q(x) -> DQ -> Conv(DQ(w) per channel, DQ(int32 b)) -> Q -> DQ ---- */
enum { CONV_PLAIN, CONV_OUT_MID, CONV_TWO_READERS, CONV_EXPLICIT, CONV_S8, CONV_S8_QOUT, CONV_CHAIN,
       CONV_CHAIN_EXPLICIT };

static struct qd_model *conv_model(int variant)
{
	struct qd_model *m = model_new();
	unsigned seed = 7;
	bool s8 = g_s8 || variant == CONV_S8 || variant == CONV_S8_QOUT || variant == CONV_CHAIN ||
		  variant == CONV_CHAIN_EXPLICIT;
	float x[1 * 3 * 7 * 7], ws[4], bs[4], xs = 0.013f;
	int8_t w[4 * 3 * 3 * 3], wz[4] = { 0 };
	int32_t b[4], bz[4] = { 0 };
	rand_f(x, 147, &seed, 1.5f);
	for (int i = 0; i < 108; i++) w[i] = (int8_t)(rand_r(&seed) % 255 - 127);
	for (int i = 0; i < 4; i++) {
		ws[i] = 0.002f + 0.001f * (float)i;
		bs[i] = xs * ws[i];
		b[i] = (int32_t)(rand_r(&seed) % 2001) - 1000;
	}
	int64_t dx[4] = { 1, 3, 7, 7 }, dw[4] = { 4, 3, 3, 3 }, d4[1] = { 4 };
	init("xf", QD_DT_FLOAT, 4, dx, x, sizeof(x));
	scalar_f("xs", xs);
	scalar_f("ys", 0.021f);
	if (s8) {
		int8_t z0 = -3, z1 = 5;
		init("xz", QD_DT_INT8, 0, NULL, &z0, 1);
		init("yz", QD_DT_INT8, 0, NULL, &z1, 1);
	} else {
		scalar_u8("xz", 125);
		scalar_u8("yz", 131);
	}
	init("w", QD_DT_INT8, 4, dw, w, sizeof(w));
	init("ws", QD_DT_FLOAT, 1, d4, ws, sizeof(ws));
	init("wz", QD_DT_INT8, 1, d4, wz, sizeof(wz));
	init("b", QD_DT_INT32, 1, d4, b, sizeof(b));
	init("bs", QD_DT_FLOAT, 1, d4, bs, sizeof(bs));
	init("bz", QD_DT_INT32, 1, d4, bz, sizeof(bz));
	int64_t pads[4] = { 1, 1, 1, 1 };
	nd("QuantizeLinear", "", "xq", 3, "xf", "xs", "xz");
	if (variant == CONV_CHAIN || variant == CONV_CHAIN_EXPLICIT) {
		/* int8 Conv -> Q -> DQ -> 1x1 Conv -> Q: the second Conv's input pair converts to
		 * uint8 whichever group the fusion takes first */
		int8_t w2[4 * 4];
		int64_t d2[4] = { 4, 4, 1, 1 };
		for (int i = 0; i < 16; i++) w2[i] = (int8_t)(rand_r(&seed) % 255 - 127);
		init("w2", QD_DT_INT8, 4, d2, w2, sizeof(w2));
		scalar_f("ws2", 0.004f);
		scalar_f("ys2", 0.017f);
		int8_t z2 = -7;
		init("yz2", QD_DT_INT8, 0, NULL, &z2, 1);
		if (variant == CONV_CHAIN_EXPLICIT) {
			Onnx__NodeProto *c = nd("QLinearConv", "", "yq", 9, "xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b");
			qd_node_set_attr_ints(c, "pads", pads, 4);
			nd("QLinearConv", "", "y2q", 8, "yq", "ys", "yz", "w2", "ws2", "wz", "ys2", "yz2");
		} else {
			nd("DequantizeLinear", "", "xd", 3, "xq", "xs", "xz");
			qd_node_set_attr_int(nd("DequantizeLinear", "", "wd", 3, "w", "ws", "wz"), "axis", 0);
			qd_node_set_attr_int(nd("DequantizeLinear", "", "bd", 3, "b", "bs", "bz"), "axis", 0);
			qd_node_set_attr_ints(nd("Conv", "", "c", 3, "xd", "wd", "bd"), "pads", pads, 4);
			nd("QuantizeLinear", "", "yq", 3, "c", "ys", "yz");
			nd("DequantizeLinear", "", "yd", 3, "yq", "ys", "yz");
			nd("DequantizeLinear", "", "w2d", 3, "w2", "ws2", "wz");
			nd("Conv", "", "c2", 2, "yd", "w2d");
			nd("QuantizeLinear", "", "y2q", 3, "c2", "ys2", "yz2");
		}
		nd("DequantizeLinear", "", "y", 3, "y2q", "ys2", "yz2");
		outputs(1, "y");
		return m;
	}
	if (variant == CONV_EXPLICIT) {
		Onnx__NodeProto *c = nd("QLinearConv", "", "yq", 9, "xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b");
		qd_node_set_attr_ints(c, "pads", pads, 4);
	} else {
		nd("DequantizeLinear", "", "xd", 3, "xq", "xs", "xz");
		qd_node_set_attr_int(nd("DequantizeLinear", "", "wd", 3, "w", "ws", "wz"), "axis", 0);
		qd_node_set_attr_int(nd("DequantizeLinear", "", "bd", 3, "b", "bs", "bz"), "axis", 0);
		qd_node_set_attr_ints(nd("Conv", "", "c", 3, "xd", "wd", "bd"), "pads", pads, 4);
		nd("QuantizeLinear", "", "yq", 3, "c", "ys", "yz");
	}
	nd("DequantizeLinear", "", "y", 3, "yq", "ys", "yz");
	if (variant == CONV_TWO_READERS)
		nd("Relu", "", "r", 1, "c");
	if (variant == CONV_OUT_MID)
		outputs(2, "y", "c");
	else if (variant == CONV_TWO_READERS)
		outputs(2, "y", "r");
	else if (variant == CONV_S8_QOUT)
		outputs(2, "y", "xq");   /* the input Q's output has a second reader: not uint8 */
	else
		outputs(1, "y");
	return m;
}

/* ---- MatMul (per-column weight) -> Q, Add of two DQs -> Q, Sigmoid -> Q ---- */
static struct qd_model *mm_model(bool explicit)
{
	struct qd_model *m = model_new();
	unsigned seed = 3;
	float a[4 * 8], c[4 * 5], ws[5];
	int8_t w[8 * 5];
	rand_f(a, 32, &seed, 2.0f);
	rand_f(c, 20, &seed, 1.0f);
	for (int i = 0; i < 40; i++) w[i] = (int8_t)(rand_r(&seed) % 255 - 127);
	for (int i = 0; i < 5; i++) ws[i] = 0.004f + 0.0005f * (float)i;
	int8_t wz[5] = { 0 };
	int64_t da[2] = { 4, 8 }, dc[2] = { 4, 5 }, dw[2] = { 8, 5 }, d5[1] = { 5 };
	init("af", QD_DT_FLOAT, 2, da, a, sizeof(a));
	init("cf", QD_DT_FLOAT, 2, dc, c, sizeof(c));
	init("w", QD_DT_INT8, 2, dw, w, sizeof(w));
	init("ws", QD_DT_FLOAT, 1, d5, ws, sizeof(ws));
	init("wz", QD_DT_INT8, 1, d5, wz, sizeof(wz));
	scalar_f("as", 0.017f); scalar_u8("az", 128);
	scalar_f("cs", 0.009f); scalar_u8("cz", 110);
	scalar_f("ms", 0.031f); scalar_u8("mz", 127);
	scalar_f("ss", 0.037f); scalar_u8("sz", 120);
	scalar_f("gs", 1.0f / 255); scalar_u8("gz", 0);
	nd("QuantizeLinear", "", "aq", 3, "af", "as", "az");
	nd("QuantizeLinear", "", "cq", 3, "cf", "cs", "cz");
	if (explicit) {
		nd("QLinearMatMul", "", "mq", 8, "aq", "as", "az", "w", "ws", "wz", "ms", "mz");
		nd("QLinearAdd", "com.microsoft", "sq", 8, "mq", "ms", "mz", "cq", "cs", "cz", "ss", "sz");
		nd("QLinearSigmoid", "com.microsoft", "gq", 5, "sq", "ss", "sz", "gs", "gz");
	} else {
		nd("DequantizeLinear", "", "ad", 3, "aq", "as", "az");
		nd("DequantizeLinear", "", "wd", 3, "w", "ws", "wz");
		nd("MatMul", "", "mm", 2, "ad", "wd");
		nd("QuantizeLinear", "", "mq", 3, "mm", "ms", "mz");
		nd("DequantizeLinear", "", "md", 3, "mq", "ms", "mz");
		nd("DequantizeLinear", "", "cd", 3, "cq", "cs", "cz");
		nd("Add", "", "s", 2, "md", "cd");
		nd("QuantizeLinear", "", "sq", 3, "s", "ss", "sz");
		nd("DequantizeLinear", "", "sd", 3, "sq", "ss", "sz");
		nd("Sigmoid", "", "g", 1, "sd");
		nd("QuantizeLinear", "", "gq", 3, "g", "gs", "gz");
	}
	nd("DequantizeLinear", "", "y", 3, "gq", "gs", "gz");
	outputs(1, "y");
	return m;
}

/* ---- DQ -> Reshape -> Q: dropped when the Q has the DQ's scale and zero point ---- */
static struct qd_model *drop_model(bool same)
{
	struct qd_model *m = model_new();
	unsigned seed = 9;
	float x[12];
	int64_t dx[2] = { 2, 6 }, ds[1] = { 2 }, shape[2] = { 3, 4 };
	rand_f(x, 12, &seed, 1.0f);
	init("xf", QD_DT_FLOAT, 2, dx, x, sizeof(x));
	init("shape", QD_DT_INT64, 1, ds, shape, sizeof(shape));
	scalar_f("s1", 0.01f); scalar_u8("z1", 128);
	scalar_f("s2", same ? 0.01f : 0.011f); scalar_u8("z2", 128);
	nd("QuantizeLinear", "", "xq", 3, "xf", "s1", "z1");
	nd("DequantizeLinear", "", "xd", 3, "xq", "s1", "z1");
	nd("Reshape", "", "r", 2, "xd", "shape");
	nd("QuantizeLinear", "", "rq", 3, "r", "s2", "z2");
	nd("DequantizeLinear", "", "y", 3, "rq", "s2", "z2");
	outputs(1, "y");
	return m;
}

/* Fused nodes of the main graph; *op: the op type of the last one. */
static int fused_nodes(const struct qd_engine *e, const char **op)
{
	int nf = 0;
	*op = "";
	for (int i = 0; i < e->main->n_nodes; i++)
		if (e->main->nodes[i].fused) {
			nf++;
			*op = e->main->nodes[i].fused->op->op_type;
		}
	return nf;
}

/* Load m, check the number of fused nodes (and the last one's op type unless NULL), run
 * it: output 0 (new) or NULL. */
static struct qd_tensor *run(struct qd_model *m, int want_fused, const char *want_op)
{
	struct qd_err err = {0};
	struct qd_engine *e = NULL;
	struct qd_tensor *y = NULL, *r = NULL;
	size_t n = 0;
	const char *op;
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	if (!e) {
		fprintf(stderr, "load: %s\n", err.msg);
		return NULL;
	}
	if (want_fused >= 0) {
		int nf = fused_nodes(e, &op);
		CHECKF(nf == want_fused, "%d fused nodes, want %d", nf, want_fused);
		if (want_op)
			CHECK_STR(op, want_op);
	}
	int rc = qd_engine_run(e, NULL, 0, &y, &n, NULL, &err);
	CHECKF(rc == 0, "run: %s", err.msg);
	if (!rc && n >= 1) {
		r = calloc(1, sizeof(*r));
		*r = y[0];
		memset(&y[0], 0, sizeof(y[0]));
	}
	qd_tensors_release(y, n);
	qd_engine_free(e);
	qd_model_free(m);
	return r;
}

static bool same_tensor(const struct qd_tensor *a, const struct qd_tensor *b)
{
	return a && b && a->dtype == b->dtype && qd_tensor_count(a) == qd_tensor_count(b) &&
	       !memcmp(a->data, b->data, (size_t)qd_tensor_count(a) * sizeof(float));
}

static void drop(struct qd_tensor *t)
{
	if (t) {
		qd_tensor_release(t);
		free(t);
	}
}

static void test_conv(void)
{
	struct qd_tensor *ref = run(conv_model(CONV_EXPLICIT), -1, NULL);
	struct qd_tensor *y = run(conv_model(CONV_PLAIN), 1, "QLinearConv");
	CHECKF(same_tensor(y, ref), "fused QDQ Conv differs from QLinearConv");
	drop(y);
	drop(ref);
	/* int8 activations: fused (ORT makes the pairs uint8), unless the input Q has a
	 * second reader */
	g_s8 = true;
	ref = run(conv_model(CONV_EXPLICIT), -1, NULL);
	g_s8 = false;
	y = run(conv_model(CONV_S8), 1, "QLinearConv");
	CHECKF(same_tensor(y, ref), "fused int8 QDQ Conv differs from QLinearConv");
	drop(y);
	drop(ref);
	drop(run(conv_model(CONV_S8_QOUT), 0, NULL));
	/* two int8 Convs in a row: both fused (ORT converts every qualifying pair before it
	 * fuses; the first group taking the middle Q must not hide that Q from the second) */
	ref = run(conv_model(CONV_CHAIN_EXPLICIT), -1, NULL);
	y = run(conv_model(CONV_CHAIN), 2, "QLinearConv");
	CHECKF(same_tensor(y, ref), "fused int8 QDQ Conv chain differs from the QLinearConv chain");
	CHECK(y && qd_tensor_count(y) == 4 * 49);
	drop(y);
	drop(ref);
	/* the Conv output is a graph output / has a second reader: not fused */
	drop(run(conv_model(CONV_OUT_MID), 0, NULL));
	drop(run(conv_model(CONV_TWO_READERS), 0, NULL));
	/* QUANTD_NO_FUSE=1: nothing fused */
	setenv("QUANTD_NO_FUSE", "1", 1);
	drop(run(conv_model(CONV_PLAIN), 0, NULL));
	unsetenv("QUANTD_NO_FUSE");
}

static void test_matmul_add_sigmoid(void)
{
	struct qd_tensor *ref = run(mm_model(true), -1, NULL);
	struct qd_tensor *y = run(mm_model(false), 3, "QLinearSigmoid");
	CHECKF(same_tensor(y, ref), "fused QDQ MatMul/Add/Sigmoid differ from the QLinear model");
	CHECK(ref && qd_tensor_count(ref) == 20);
	drop(y);
	drop(ref);
}

static void test_drop(void)
{
	setenv("QUANTD_NO_FUSE", "1", 1);
	struct qd_tensor *ref = run(drop_model(true), 0, NULL);
	unsetenv("QUANTD_NO_FUSE");
	struct qd_tensor *y = run(drop_model(true), 1, "Reshape");
	CHECKF(same_tensor(y, ref), "8-bit Reshape differs from DQ -> Reshape -> Q");
	CHECK(y && y->ndim == 2 && y->dims[0] == 3 && y->dims[1] == 4);
	drop(y);
	drop(ref);
	drop(run(drop_model(false), 0, NULL));   /* different scales: kept */
}

/* ---- DQ -> Mul, Add, decomposed HardSwish, Div -> Q: one Lut8 ---- */
static struct qd_model *lut_model(bool s8, bool mid_out)
{
	struct qd_model *m = model_new();
	unsigned seed = 9;
	float x[2 * 3 * 5];
	int64_t dx[3] = { 2, 3, 5 };
	rand_f(x, 30, &seed, 4.0f);
	init("xf", QD_DT_FLOAT, 3, dx, x, sizeof(x));
	scalar_f("xs", 0.037f);
	scalar_f("ys", 0.029f);
	if (s8) {
		int8_t z0 = 3, z1 = -11;
		init("xz", QD_DT_INT8, 0, NULL, &z0, 1);
		init("yz", QD_DT_INT8, 0, NULL, &z1, 1);
	} else {
		scalar_u8("xz", 130);
		scalar_u8("yz", 90);
	}
	scalar_f("a", 1.3f);
	scalar_f("b", -0.4f);
	scalar_f("three", 3.0f);
	scalar_f("zero", 0.0f);
	scalar_f("six", 6.0f);
	nd("QuantizeLinear", "", "xq", 3, "xf", "xs", "xz");
	nd("DequantizeLinear", "", "xd", 3, "xq", "xs", "xz");
	nd("Mul", "", "m1", 2, "a", "xd");
	nd("Add", "", "a1", 2, "m1", "b");
	nd("Add", "", "a3", 2, "a1", "three");
	nd("Clip", "", "c", 3, "a3", "zero", "six");
	nd("Mul", "", "hs", 2, "a1", "c");
	nd("Div", "", "h", 2, "hs", "six");
	nd("QuantizeLinear", "", "yq", 3, "h", "ys", "yz");
	nd("DequantizeLinear", "", "y", 3, "yq", "ys", "yz");
	if (mid_out)
		outputs(2, "y", "a1");   /* a region value is a graph output: not fused */
	else
		outputs(1, "y");
	return m;
}

static void test_lut(void)
{
	for (int s8 = 0; s8 < 2; s8++) {
		setenv("QUANTD_NO_LUT", "1", 1);
		struct qd_tensor *ref = run(lut_model(s8, false), 0, NULL);
		unsetenv("QUANTD_NO_LUT");
		struct qd_tensor *y = run(lut_model(s8, false), 1, "Lut8");
		CHECKF(same_tensor(y, ref), "Lut8 (%s) differs from running the nodes", s8 ? "int8" : "uint8");
		CHECK(y && y->ndim == 3 && qd_tensor_count(y) == 30);
		/* the outputs are not all one code (the table has something to say) */
		int distinct = 0;
		for (int i = 1; y && ref && i < 30; i++)
			distinct += ((const float *)y->data)[i] != ((const float *)y->data)[0];
		CHECKF(distinct > 10, "%d of 29 outputs differ from the first", distinct);
		drop(y);
		drop(ref);
	}
	drop(run(lut_model(false, true), 0, NULL));
}

static void count_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	(*(int *)ud)++;
}

static void test_hook(void)
{
	struct qd_err err = {0};
	struct qd_model *m = mm_model(false);
	struct qd_engine *e = NULL;
	struct qd_tensor *y = NULL;
	size_t n = 0;
	const char *op;
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	CHECK_EQ_INT(fused_nodes(e, &op), 3);
	int seen = 0;
	qd_engine_set_hook(e, count_hook, &seen);
	CHECK_EQ_INT(qd_engine_run(e, NULL, 0, &y, &n, NULL, &err), 0);
	CHECK_EQ_INT(seen, 14);   /* every original node's output */
	qd_tensors_release(y, n);
	qd_engine_free(e);
	qd_model_free(m);
}

int main(void)
{
	test_conv();
	test_matmul_add_sigmoid();
	test_drop();
	test_lut();
	test_hook();
	return qd_test_done("test_engine_qdq_fuse");
}
