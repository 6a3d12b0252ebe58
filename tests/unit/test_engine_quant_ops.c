/* Unit test for the quantized kernels (engine/ops_quant*.c): one-node models built in
 * memory, run through the engine, checked against hand-computed values (round half to
 * even, saturation, zero points, per-axis parameters, 4-bit unpacking), plus load-time
 * rejection of unsupported attributes / dtypes with the node named in the error. */
#include <stdlib.h>
#include <string.h>
#include "qd_test.h"
#include "qd.h"
#include "onnx/onnx.h"
#include "engine/engine.h"
#include "engine/ops_quant.h"

struct tin {
	const char *name;
	int dtype;
	int ndim;
	int64_t dims[4];
	const void *data;
};

/* Model with one node; every input is an initializer; outputs named out0..outN-1. */
static struct qd_model *one_node(const char *op, const char *domain, int64_t opset,
				 const struct tin *ins, int n_in, int n_out, Onnx__NodeProto **node)
{
	Onnx__ModelProto *m = calloc(1, sizeof(*m));
	Onnx__GraphProto *g = calloc(1, sizeof(*g));
	onnx__model_proto__init(m);
	onnx__graph_proto__init(g);
	m->has_ir_version = 1;
	m->ir_version = 8;
	m->graph = g;
	g->name = strdup("t");
	bool ms = domain && *domain;
	m->n_opset_import = ms ? 2 : 1;
	m->opset_import = calloc(2, sizeof(*m->opset_import));
	for (size_t i = 0; i < m->n_opset_import; i++) {
		Onnx__OperatorSetIdProto *o = calloc(1, sizeof(*o));
		onnx__operator_set_id_proto__init(o);
		o->domain = strdup(i ? "com.microsoft" : "");
		o->has_version = 1;
		o->version = i ? 1 : (ms ? 13 : opset);
		m->opset_import[i] = o;
	}
	const char *in_names[16], *out_names[4] = { "out0", "out1", "out2", "out3" };
	for (int i = 0; i < n_in; i++) {
		in_names[i] = ins[i].name;
		if (!ins[i].data)
			continue;   /* "" = absent optional input */
		size_t nb = qd_dtype_size(ins[i].dtype);
		for (int d = 0; d < ins[i].ndim; d++) nb *= (size_t)ins[i].dims[d];
		qd_graph_add_initializer(g, qd_tensor_new(ins[i].name, ins[i].dtype, ins[i].dims,
							  (size_t)ins[i].ndim, ins[i].data, nb));
	}
	*node = qd_node_new(op, domain, "n0", in_names, (size_t)n_in, out_names, (size_t)n_out);
	qd_graph_add_node(g, *node);
	g->n_output = (size_t)n_out;
	g->output = calloc((size_t)n_out, sizeof(*g->output));
	for (int i = 0; i < n_out; i++) {
		Onnx__ValueInfoProto *v = calloc(1, sizeof(*v));
		onnx__value_info_proto__init(v);
		v->name = strdup(out_names[i]);
		g->output[i] = v;
	}
	struct qd_model *qm = calloc(1, sizeof(*qm));
	qm->proto = m;
	return qm;
}

/* Runs the model twice on one engine (the second run uses whatever kernels cached on the
 * node, e.g. packed weights) and checks both runs agree. *out new (qd_tensors_release).
 * Returns the engine error code. */
static int run(struct qd_model *m, struct qd_tensor **out, size_t *n_out, struct qd_err *err)
{
	struct qd_engine *e = NULL;
	struct qd_tensor *o2 = NULL;
	size_t n2 = 0;
	int rc = qd_engine_load(m, NULL, &e, err);
	if (!rc)
		rc = qd_engine_run(e, NULL, 0, out, n_out, NULL, err);
	if (!rc && !(rc = qd_engine_run(e, NULL, 0, &o2, &n2, NULL, err))) {
		bool same = n2 == *n_out;
		for (size_t i = 0; same && i < n2; i++)
			same = o2[i].nbytes == (*out)[i].nbytes && !memcmp(o2[i].data, (*out)[i].data, o2[i].nbytes);
		CHECKF(same, "second run of the same engine differs");
		qd_tensors_release(o2, n2);
	}
	qd_engine_free(e);
	return rc;
}

#define RUN_OK(m, out, n) do { struct qd_err _e = {0}; int _rc = run(m, &out, &n, &_e); \
	CHECKF(_rc == 0, "%s", _e.msg); if (_rc) { out = NULL; n = 0; } } while (0)

static void check_u8(const struct qd_tensor *t, int dtype, const int32_t *want, int n)
{
	CHECK(t && t->dtype == dtype);
	if (!t || t->dtype != dtype)
		return;
	CHECK_EQ_INT(qd_tensor_count(t), n);
	for (int i = 0; i < n && i < qd_tensor_count(t); i++) {
		int32_t v = dtype == QD_DT_UINT8 ? ((uint8_t *)t->data)[i] : dtype == QD_DT_INT8 ?
			((int8_t *)t->data)[i] : ((int32_t *)t->data)[i];
		CHECKF(v == want[i], "element %d: %d != %d", i, v, want[i]);
	}
}

static void check_f32(const struct qd_tensor *t, const float *want, int n, float tol)
{
	CHECK(t && t->dtype == QD_DT_FLOAT);
	if (!t || t->dtype != QD_DT_FLOAT)
		return;
	CHECK_EQ_INT(qd_tensor_count(t), n);
	for (int i = 0; i < n && i < qd_tensor_count(t); i++)
		CHECK_NEAR(((float *)t->data)[i], want[i], tol);
}

static void test_quantize(void)
{
	Onnx__NodeProto *nd;
	struct qd_tensor *o;
	size_t n;
	/* half to even, saturation, zero point */
	float x[6] = { 0.5f, 1.5f, 2.5f, -0.5f, 1000.0f, -1000.0f };
	float s = 1.0f;
	uint8_t z = 10;
	struct tin in[3] = { { "x", QD_DT_FLOAT, 1, {6}, x }, { "s", QD_DT_FLOAT, 0, {0}, &s },
			     { "z", QD_DT_UINT8, 0, {0}, &z } };
	struct qd_model *m = one_node("QuantizeLinear", "", 13, in, 3, 1, &nd);
	RUN_OK(m, o, n);
	int32_t w1[6] = { 10, 12, 12, 10, 255, 0 };
	if (o) check_u8(&o[0], QD_DT_UINT8, w1, 6);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* per-axis int8, axis 1 */
	float x2[4] = { 1.5f, 1.0f, -2.5f, 100.0f }, s2[2] = { 1.0f, 0.5f };
	int8_t z2[2] = { 0, -1 };
	struct tin in2[3] = { { "x", QD_DT_FLOAT, 2, {2, 2}, x2 }, { "s", QD_DT_FLOAT, 1, {2}, s2 },
			      { "z", QD_DT_INT8, 1, {2}, z2 } };
	m = one_node("QuantizeLinear", "", 13, in2, 3, 1, &nd);
	RUN_OK(m, o, n);
	int32_t w2[4] = { 2, 1, -2, 127 };
	if (o) check_u8(&o[0], QD_DT_INT8, w2, 4);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* unsupported output dtype (float8 via output_dtype) is rejected at load, naming the node */
	float one = 1.0f;
	struct tin in3[2] = { { "x", QD_DT_FLOAT, 1, {6}, x }, { "s", QD_DT_FLOAT, 0, {0}, &one } };
	m = one_node("QuantizeLinear", "", 21, in3, 2, 1, &nd);
	qd_node_set_attr_int(nd, "output_dtype", QD_DT_FLOAT8E4M3FN);
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EUNSUPPORTED);
	CHECKF(strstr(err.msg, "n0") != NULL, "message '%s' does not name the node", err.msg);
	qd_engine_free(e);
	qd_model_free(m);
}

static void test_dequantize(void)
{
	Onnx__NodeProto *nd;
	struct qd_tensor *o;
	size_t n;
	int32_t x[2] = { -3, 5 };
	float s = 0.5f;
	struct tin in[2] = { { "x", QD_DT_INT32, 1, {2}, x }, { "s", QD_DT_FLOAT, 0, {0}, &s } };
	struct qd_model *m = one_node("DequantizeLinear", "", 13, in, 2, 1, &nd);
	RUN_OK(m, o, n);
	float w[2] = { -1.5f, 2.5f };
	if (o) check_f32(&o[0], w, 2, 0);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* block-wise (opset 21): x [1, 4], blocks of 2 on axis 1 */
	uint8_t xb[4] = { 10, 12, 100, 90 }, zb[2] = { 10, 100 };
	float sb[2] = { 0.5f, 2.0f };
	struct tin inb[3] = { { "x", QD_DT_UINT8, 2, {1, 4}, xb }, { "s", QD_DT_FLOAT, 2, {1, 2}, sb },
			      { "z", QD_DT_UINT8, 2, {1, 2}, zb } };
	m = one_node("DequantizeLinear", "", 21, inb, 3, 1, &nd);
	qd_node_set_attr_int(nd, "axis", 1);
	qd_node_set_attr_int(nd, "block_size", 2);
	RUN_OK(m, o, n);
	float wb[4] = { 0.0f, 1.0f, 0.0f, -20.0f };
	if (o) check_f32(&o[0], wb, 4, 0);
	qd_tensors_release(o, n);
	qd_model_free(m);
}

static void test_dynamic_quantize(void)
{
	Onnx__NodeProto *nd;
	struct qd_tensor *o;
	size_t n;
	/* ONNX operator doc example */
	float x[6] = { 0.0f, 2.0f, -3.0f, -2.5f, 1.34f, 0.5f };
	struct tin in[1] = { { "x", QD_DT_FLOAT, 1, {6}, x } };
	struct qd_model *m = one_node("DynamicQuantizeLinear", "", 11, in, 1, 3, &nd);
	RUN_OK(m, o, n);
	int32_t w[6] = { 153, 255, 0, 26, 221, 179 }, wz[1] = { 153 };
	float ws[1] = { 0.019607844f };
	if (o && n == 3) {
		check_u8(&o[0], QD_DT_UINT8, w, 6);
		check_f32(&o[1], ws, 1, 1e-9f);
		check_u8(&o[2], QD_DT_UINT8, wz, 1);
	}
	qd_tensors_release(o, n);
	qd_model_free(m);
}

static void test_matmul(void)
{
	Onnx__NodeProto *nd;
	struct qd_tensor *o;
	size_t n;
	/* MatMulInteger: ONNX operator doc example */
	uint8_t a[12] = { 11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0 }, b[6] = { 1, 4, 2, 5, 3, 6 };
	uint8_t az = 12, bz = 0;
	struct tin in[4] = { { "a", QD_DT_UINT8, 2, {4, 3}, a }, { "b", QD_DT_UINT8, 2, {3, 2}, b },
			     { "az", QD_DT_UINT8, 0, {0}, &az }, { "bz", QD_DT_UINT8, 0, {0}, &bz } };
	struct qd_model *m = one_node("MatMulInteger", "", 10, in, 4, 1, &nd);
	RUN_OK(m, o, n);
	int32_t w[8] = { -38, -83, -44, -98, -50, -113, -56, -128 };
	if (o) check_u8(&o[0], QD_DT_INT32, w, 8);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* QLinearMatMul: a = [1, 2], b = [0, 1]^T -> 2.0 -> 2 / 0.1 + 10 = 30 */
	uint8_t qa[2] = { 2, 4 }, qb[2] = { 2, 6 }, qaz = 0, qbz = 2, qyz = 10;
	float as = 0.5f, bs = 0.25f, ys = 0.1f;
	struct tin qin[8] = { { "a", QD_DT_UINT8, 2, {1, 2}, qa }, { "as", QD_DT_FLOAT, 0, {0}, &as },
			      { "az", QD_DT_UINT8, 0, {0}, &qaz }, { "b", QD_DT_UINT8, 2, {2, 1}, qb },
			      { "bs", QD_DT_FLOAT, 0, {0}, &bs }, { "bz", QD_DT_UINT8, 0, {0}, &qbz },
			      { "ys", QD_DT_FLOAT, 0, {0}, &ys }, { "yz", QD_DT_UINT8, 0, {0}, &qyz } };
	m = one_node("QLinearMatMul", "", 10, qin, 8, 1, &nd);
	RUN_OK(m, o, n);
	int32_t qw[1] = { 30 };
	if (o) check_u8(&o[0], QD_DT_UINT8, qw, 1);
	qd_tensors_release(o, n);
	qd_model_free(m);
}

static void test_matmul_nbits(void)
{
	Onnx__NodeProto *nd;
	struct qd_tensor *o;
	size_t n;
	/* K = 20 (two blocks of 16, the second padded), N = 2, 4-bit codes all 9 */
	float a[20], s[4] = { 0.5f, 0.5f, 1.0f, 2.0f };
	uint8_t B[2 * 2 * 8], zp[2] = { 0xa0 | 0x0a, 0x08 | 0x70 };   /* row0: 10,10; row1: 8,7 */
	for (int i = 0; i < 20; i++) a[i] = 1.0f;
	memset(B, 0x99, sizeof(B));
	struct tin in[4] = { { "a", QD_DT_FLOAT, 2, {1, 20}, a }, { "B", QD_DT_UINT8, 3, {2, 2, 8}, B },
			     { "s", QD_DT_FLOAT, 2, {2, 2}, s }, { "z", QD_DT_UINT8, 2, {2, 1}, zp } };
	struct qd_model *m = one_node("MatMulNBits", "com.microsoft", 1, in, 4, 1, &nd);
	qd_node_set_attr_int(nd, "K", 20);
	qd_node_set_attr_int(nd, "N", 2);
	qd_node_set_attr_int(nd, "bits", 4);
	qd_node_set_attr_int(nd, "block_size", 16);
	RUN_OK(m, o, n);
	/* row0: 16 * (9-10)*0.5 + 4 * (9-10)*0.5 = -10; row1: 16 * (9-8)*1 + 4 * (9-7)*2 = 32 */
	float w[2] = { -10.0f, 32.0f };
	if (o) check_f32(&o[0], w, 2, 1e-5f);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* without zero points: implicit 8 */
	m = one_node("MatMulNBits", "com.microsoft", 1, in, 3, 1, &nd);
	qd_node_set_attr_int(nd, "K", 20);
	qd_node_set_attr_int(nd, "N", 2);
	qd_node_set_attr_int(nd, "block_size", 16);
	RUN_OK(m, o, n);
	float w2[2] = { 16 * 0.5f + 4 * 0.5f, 16 * 1.0f + 4 * 2.0f };
	if (o) check_f32(&o[0], w2, 2, 1e-5f);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* bits = 3 is rejected at load */
	m = one_node("MatMulNBits", "com.microsoft", 1, in, 3, 1, &nd);
	qd_node_set_attr_int(nd, "K", 20);
	qd_node_set_attr_int(nd, "N", 2);
	qd_node_set_attr_int(nd, "bits", 3);
	qd_node_set_attr_int(nd, "block_size", 16);
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EUNSUPPORTED);
	CHECKF(strstr(err.msg, "bits") != NULL, "message '%s' does not name the attribute", err.msg);
	qd_engine_free(e);
	qd_model_free(m);
}

static void test_qlinear(void)
{
	Onnx__NodeProto *nd;
	struct qd_tensor *o;
	size_t n;
	/* QLinearAdd: 1.0 + 1.0 = 2.0 -> 2 / 0.5 + 1 = 5 */
	uint8_t a = 10, b = 20, z0 = 0, yz = 1;
	float as = 0.1f, bs = 0.05f, ys = 0.5f;
	struct tin in[8] = { { "a", QD_DT_UINT8, 1, {1}, &a }, { "as", QD_DT_FLOAT, 0, {0}, &as },
			     { "az", QD_DT_UINT8, 0, {0}, &z0 }, { "b", QD_DT_UINT8, 1, {1}, &b },
			     { "bs", QD_DT_FLOAT, 0, {0}, &bs }, { "bz", QD_DT_UINT8, 0, {0}, &z0 },
			     { "ys", QD_DT_FLOAT, 0, {0}, &ys }, { "yz", QD_DT_UINT8, 0, {0}, &yz } };
	struct qd_model *m = one_node("QLinearAdd", "com.microsoft", 1, in, 8, 1, &nd);
	RUN_OK(m, o, n);
	int32_t w[1] = { 5 };
	if (o) check_u8(&o[0], QD_DT_UINT8, w, 1);
	qd_tensors_release(o, n);
	qd_model_free(m);

	/* QLinearConv: 3x3 ones * 2x2 ones = 4, + bias 2 -> 6 / 0.5 = 12 */
	uint8_t x[9], wt[4], xz = 0, wz = 0, cz = 0;
	float xs = 1.0f, wsc = 1.0f, cs = 0.5f;
	int32_t bias = 2;
	memset(x, 1, sizeof(x));
	memset(wt, 1, sizeof(wt));
	struct tin cin[9] = { { "x", QD_DT_UINT8, 4, {1, 1, 3, 3}, x }, { "xs", QD_DT_FLOAT, 0, {0}, &xs },
			      { "xz", QD_DT_UINT8, 0, {0}, &xz }, { "w", QD_DT_UINT8, 4, {1, 1, 2, 2}, wt },
			      { "ws", QD_DT_FLOAT, 0, {0}, &wsc }, { "wz", QD_DT_UINT8, 0, {0}, &wz },
			      { "ys", QD_DT_FLOAT, 0, {0}, &cs }, { "yz", QD_DT_UINT8, 0, {0}, &cz },
			      { "bias", QD_DT_INT32, 1, {1}, &bias } };
	m = one_node("QLinearConv", "", 10, cin, 9, 1, &nd);
	RUN_OK(m, o, n);
	int32_t cw[4] = { 12, 12, 12, 12 };
	if (o) check_u8(&o[0], QD_DT_UINT8, cw, 4);
	qd_tensors_release(o, n);
	qd_model_free(m);
}

/* Malformed nodes fail with an error (never a crash); the message names the node. */
static void expect_fail(struct qd_model *m, const char *what)
{
	struct qd_tensor *o = NULL;
	size_t n = 0;
	struct qd_err err = {0};
	int rc = run(m, &o, &n, &err);
	CHECKF(rc < 0, "%s: expected an error", what);
	CHECKF(rc >= 0 || strstr(err.msg, "n0") != NULL, "%s: message '%s' does not name the node", what, err.msg);
	if (rc == 0) qd_tensors_release(o, n);
	qd_model_free(m);
	(void)0;
}

static void test_errors(void)
{
	Onnx__NodeProto *nd;
	float x[6] = {0}, s2[3] = { 1, 1, 1 }, one = 1.0f;
	uint8_t u[64] = {0}, z = 0;
	/* per-axis scale of the wrong length */
	struct tin q1[2] = { { "x", QD_DT_FLOAT, 2, {2, 3}, x }, { "s", QD_DT_FLOAT, 1, {3}, s2 } };
	struct qd_model *m = one_node("QuantizeLinear", "", 13, q1, 2, 1, &nd);
	qd_node_set_attr_int(nd, "axis", 0);
	expect_fail(m, "per-axis scale length");
	/* block-wise scale of the wrong shape */
	m = one_node("DequantizeLinear", "", 21, (struct tin[]){ { "x", QD_DT_UINT8, 2, {2, 3}, u },
		     { "s", QD_DT_FLOAT, 2, {2, 3}, x } }, 2, 1, &nd);
	qd_node_set_attr_int(nd, "block_size", 2);
	expect_fail(m, "block-wise scale shape");
	/* MatMulInteger with mismatched inner dims */
	m = one_node("MatMulInteger", "", 10, (struct tin[]){ { "a", QD_DT_UINT8, 2, {2, 3}, u },
		     { "b", QD_DT_UINT8, 2, {2, 3}, u } }, 2, 1, &nd);
	expect_fail(m, "matmul inner dims");
	/* ConvInteger: kernel larger than the input, and a bad group */
	m = one_node("ConvInteger", "", 10, (struct tin[]){ { "x", QD_DT_UINT8, 4, {1, 1, 2, 2}, u },
		     { "w", QD_DT_UINT8, 4, {1, 1, 3, 3}, u } }, 2, 1, &nd);
	expect_fail(m, "conv kernel too large");
	m = one_node("ConvInteger", "", 10, (struct tin[]){ { "x", QD_DT_UINT8, 4, {1, 2, 2, 2}, u },
		     { "w", QD_DT_UINT8, 4, {1, 2, 1, 1}, u } }, 2, 1, &nd);
	qd_node_set_attr_int(nd, "group", 0);
	expect_fail(m, "conv group 0");
	/* MatMulNBits with a B of the wrong size */
	m = one_node("MatMulNBits", "com.microsoft", 1, (struct tin[]){ { "a", QD_DT_FLOAT, 2, {1, 16}, u },
		     { "B", QD_DT_UINT8, 1, {3}, u }, { "s", QD_DT_FLOAT, 1, {1}, &one } }, 3, 1, &nd);
	qd_node_set_attr_int(nd, "K", 16);
	qd_node_set_attr_int(nd, "N", 1);
	qd_node_set_attr_int(nd, "block_size", 16);
	expect_fail(m, "MatMulNBits B size");
	/* QLinearConcat with an incomplete triple, QLinearSoftmax without 'opset' */
	m = one_node("QLinearConcat", "com.microsoft", 1, (struct tin[]){ { "ys", QD_DT_FLOAT, 0, {0}, &one },
		     { "yz", QD_DT_UINT8, 0, {0}, &z }, { "a", QD_DT_UINT8, 1, {4}, u },
		     { "as", QD_DT_FLOAT, 0, {0}, &one } }, 4, 1, &nd);
	qd_node_set_attr_int(nd, "axis", 0);
	expect_fail(m, "QLinearConcat triples");
	m = one_node("QLinearSoftmax", "com.microsoft", 1, (struct tin[]){ { "x", QD_DT_UINT8, 1, {4}, u },
		     { "xs", QD_DT_FLOAT, 0, {0}, &one }, { "xz", QD_DT_UINT8, 0, {0}, &z },
		     { "ys", QD_DT_FLOAT, 0, {0}, &one }, { "yz", QD_DT_UINT8, 0, {0}, &z } }, 5, 1, &nd);
	expect_fail(m, "QLinearSoftmax opset");
	/* QLinearMatMul with a vector y_scale */
	m = one_node("QLinearMatMul", "", 10, (struct tin[]){ { "a", QD_DT_UINT8, 2, {1, 2}, u },
		     { "as", QD_DT_FLOAT, 0, {0}, &one }, { "az", QD_DT_UINT8, 0, {0}, &z },
		     { "b", QD_DT_UINT8, 2, {2, 1}, u }, { "bs", QD_DT_FLOAT, 0, {0}, &one },
		     { "bz", QD_DT_UINT8, 0, {0}, &z }, { "ys", QD_DT_FLOAT, 1, {3}, s2 },
		     { "yz", QD_DT_UINT8, 0, {0}, &z } }, 8, 1, &nd);
	expect_fail(m, "QLinearMatMul vector y_scale");
	/* Attention with a 'past' input is rejected at load */
	float w[12] = {0}, b[3] = {0};
	m = one_node("Attention", "com.microsoft", 1, (struct tin[]){ { "x", QD_DT_FLOAT, 3, {1, 1, 4}, x },
		     { "w", QD_DT_FLOAT, 2, {4, 3}, w }, { "b", QD_DT_FLOAT, 1, {3}, b }, { "", 0, 0, {0}, NULL },
		     { "past", QD_DT_FLOAT, 1, {1}, b } }, 5, 1, &nd);
	qd_node_set_attr_int(nd, "num_heads", 1);
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EUNSUPPORTED);
	CHECKF(strstr(err.msg, "past") != NULL, "message '%s' does not name the input", err.msg);
	qd_engine_free(e);
	qd_model_free(m);
	/* DynamicQuantizeLSTM with non-default activations is rejected at load */
	m = one_node("DynamicQuantizeLSTM", "com.microsoft", 1, (struct tin[]){ { "x", QD_DT_FLOAT, 3, {1, 1, 1}, x } },
		     1, 1, &nd);
	qd_node_set_attr_int(nd, "hidden_size", 1);
	Onnx__AttributeProto *acts = calloc(1, sizeof(*acts));
	onnx__attribute_proto__init(acts);
	acts->name = strdup("activations");
	acts->has_type = 1;
	acts->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
	acts->n_strings = 3;
	acts->strings = calloc(3, sizeof(ProtobufCBinaryData));
	const char *names[3] = { "Relu", "Tanh", "Tanh" };
	for (int i = 0; i < 3; i++) {
		acts->strings[i].data = (uint8_t *)strdup(names[i]);
		acts->strings[i].len = strlen(names[i]);
	}
	qd_node_copy_attr(nd, acts);
	onnx__attribute_proto__free_unpacked(acts, NULL);
	e = NULL;
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EUNSUPPORTED);
	CHECKF(strstr(err.msg, "activations") != NULL, "message '%s' does not name the attribute", err.msg);
	qd_engine_free(e);
	qd_model_free(m);
}

/* Depthwise QLinearConv: the direct-tap path equals the im2col + GEMM path exactly, over
 * signed / unsigned types, per-channel weight zero points, strides, pads, dilations and a
 * channel multiplier of 2. */
static void test_qconv_depthwise(void)
{
	static const struct { int64_t C, mult, H, W, k, stride, pad, dil; bool s8; } cs[] = {
		{ 4, 1, 7, 9, 3, 1, 1, 1, false }, { 3, 1, 8, 11, 3, 2, 1, 1, true },
		{ 5, 1, 6, 6, 5, 2, 2, 1, false }, { 2, 2, 9, 7, 3, 1, 2, 2, true },
		{ 6, 1, 5, 13, 3, 1, 0, 1, false },
	};
	uint64_t seed = 12345;
	for (size_t ci = 0; ci < QD_ARRAY_LEN(cs); ci++) {
		int64_t C = cs[ci].C, M = C * cs[ci].mult, H = cs[ci].H, W = cs[ci].W, k = cs[ci].k;
		int dt = cs[ci].s8 ? QD_DT_INT8 : QD_DT_UINT8;
		uint8_t x[4096], w[512], yz = cs[ci].s8 ? 0 : 128, xz = cs[ci].s8 ? (uint8_t)-3 : 121;
		uint8_t wz[16];
		float xs = 0.02f, ws[16], ys = 0.05f;
		int32_t bias[16];
		for (int64_t i = 0; i < C * H * W; i++) { seed = seed * 6364136223846793005ull + 1442695040888963407ull; x[i] = (uint8_t)(seed >> 33); }
		for (int64_t i = 0; i < M * k * k; i++) { seed = seed * 6364136223846793005ull + 1442695040888963407ull; w[i] = (uint8_t)(seed >> 35); }
		for (int64_t m = 0; m < M; m++) { ws[m] = 0.01f + 0.003f * (float)m; wz[m] = cs[ci].s8 ? 0 : (uint8_t)(120 + m); bias[m] = (int32_t)(m * 37) - 50; }
		struct tin in[9] = { { "x", dt, 4, {1, C, H, W}, x }, { "xs", QD_DT_FLOAT, 0, {0}, &xs },
				     { "xz", dt, 0, {0}, &xz }, { "w", dt, 4, {M, 1, k, k}, w },
				     { "ws", QD_DT_FLOAT, 1, {M}, ws }, { "wz", dt, 1, {M}, wz },
				     { "ys", QD_DT_FLOAT, 0, {0}, &ys }, { "yz", dt, 0, {0}, &yz },
				     { "bias", QD_DT_INT32, 1, {M}, bias } };
		Onnx__NodeProto *nd;
		struct qd_tensor *o1 = NULL, *o2 = NULL, *o3 = NULL;
		size_t n1 = 0, n2 = 0, n3 = 0;
		struct qd_err err = {0};
		/* pass 0: channels last (multiplier 1) or planes, 1: im2col + GEMM, 2: planes */
		for (int pass = 0; pass < 3; pass++) {
			struct qd_model *m = one_node("QLinearConv", "", 10, in, 9, 1, &nd);
			int64_t pads[4] = { cs[ci].pad, cs[ci].pad, cs[ci].pad, cs[ci].pad };
			int64_t st[2] = { cs[ci].stride, cs[ci].stride }, dl[2] = { cs[ci].dil, cs[ci].dil };
			qd_node_set_attr_int(nd, "group", C);
			qd_node_set_attr_ints(nd, "pads", pads, 4);
			qd_node_set_attr_ints(nd, "strides", st, 2);
			qd_node_set_attr_ints(nd, "dilations", dl, 2);
			qd_qconv_force_gemm = pass == 1;
			qd_qconv_dw_planes = pass == 2;
			int rc = run(m, pass == 0 ? &o1 : pass == 1 ? &o2 : &o3, pass == 0 ? &n1 : pass == 1 ? &n2 : &n3, &err);
			CHECKF(rc == 0, "depthwise case %zu pass %d: %s", ci, pass, err.msg);
			qd_model_free(m);
		}
		qd_qconv_force_gemm = 0;
		qd_qconv_dw_planes = 0;
		CHECKF(o1 && o2 && o1[0].nbytes == o2[0].nbytes && o1[0].nbytes > 0 &&
		       !memcmp(o1[0].data, o2[0].data, o1[0].nbytes), "depthwise case %zu: direct != gemm", ci);
		CHECKF(o1 && o3 && o1[0].nbytes == o3[0].nbytes &&
		       !memcmp(o1[0].data, o3[0].data, o1[0].nbytes), "depthwise case %zu: channels last != planes", ci);
		qd_tensors_release(o1, n1);
		qd_tensors_release(o2, n2);
		qd_tensors_release(o3, n3);
	}
}

/* The pixel-major QLinearConv / ConvInteger (weights packed at load, VNNI byte GEMM where
 * present, tiles over threads) and the direct depthwise kernel (channels over threads)
 * against the weight-major reference twin, bit for bit: groups,
 * asymmetric pads, strides, dilations, 1-D, batches, int8 / uint8, per-channel zero points,
 * bias, 1 and 2 threads (the large cases split tiles). */
static int run_threads(struct qd_model *m, int threads, struct qd_tensor **out, size_t *n_out,
		       struct qd_err *err)
{
	struct qd_engine_opts o = { .threads = threads };
	struct qd_engine *e = NULL;
	int rc = qd_engine_load(m, &o, &e, err);
	if (!rc)
		rc = qd_engine_run(e, NULL, 0, out, n_out, NULL, err);
	qd_engine_free(e);
	return rc;
}

static void test_qconv_pixmajor(void)
{
	static const struct { int64_t N, C, M, group, H, W, kh, kw, sh, sw, dh, dw, p[4]; bool s8, per, bias; } cs[] = {
		{ 1, 3, 16, 1, 48, 48, 3, 3, 2, 2, 1, 1, { 1, 1, 1, 1 }, false, true, true },
		{ 2, 32, 48, 1, 20, 21, 3, 3, 1, 1, 1, 1, { 1, 0, 2, 1 }, false, true, true },
		{ 1, 32, 48, 1, 40, 40, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, true, true, true },
		{ 1, 24, 40, 2, 17, 13, 3, 2, 2, 1, 2, 1, { 2, 1, 0, 3 }, false, false, true },
		{ 1, 16, 24, 4, 9, 11, 1, 1, 1, 1, 1, 1, { 0, 0, 0, 0 }, true, false, false },
		{ 3, 7, 5, 1, 6, 5, 2, 3, 1, 2, 1, 2, { 0, 1, 1, 2 }, false, true, false },
		{ 1, 96, 24, 1, 16, 16, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, false, true, true },
		{ 2, 20, 17, 1, 1, 37, 1, 5, 1, 2, 1, 1, { 0, 2, 0, 2 }, true, true, true },
		/* depthwise (the direct kernel, channels split over 2 threads) */
		{ 2, 64, 64, 64, 48, 48, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, false, true, true },
		{ 3, 48, 48, 48, 50, 49, 5, 5, 2, 2, 1, 1, { 2, 2, 1, 2 }, true, true, true },
		{ 1, 32, 64, 32, 21, 18, 3, 3, 1, 2, 2, 1, { 2, 0, 1, 1 }, false, false, true },
	};
	uint64_t seed = 777;
	for (size_t ci = 0; ci < QD_ARRAY_LEN(cs); ci++) {
		int64_t N = cs[ci].N, C = cs[ci].C, M = cs[ci].M, G = cs[ci].group, Cg = C / G;
		int64_t nx = N * C * cs[ci].H * cs[ci].W, nw = M * Cg * cs[ci].kh * cs[ci].kw;
		int dt = cs[ci].s8 ? QD_DT_INT8 : QD_DT_UINT8;
		uint8_t *x = malloc((size_t)nx), *w = malloc((size_t)nw), wz[64];
		uint8_t xz = cs[ci].s8 ? (uint8_t)-5 : 131, yz = cs[ci].s8 ? (uint8_t)3 : 120;
		float xs = 0.03f, ws[64], ys = 0.9f;
		int32_t bias[64];
		for (int64_t i = 0; i < nx; i++) { seed = seed * 6364136223846793005ull + 1442695040888963407ull; x[i] = (uint8_t)(seed >> 33); }
		for (int64_t i = 0; i < nw; i++) { seed = seed * 6364136223846793005ull + 1442695040888963407ull; w[i] = (uint8_t)(seed >> 37); }
		for (int64_t m = 0; m < M; m++) {
			ws[m] = 0.002f + 0.0007f * (float)m;
			wz[m] = cs[ci].s8 ? (uint8_t)(int8_t)(m % 7 - 3) : (uint8_t)(3 + m % 11);
			bias[m] = (int32_t)(m * 911) - 7000;
		}
		int64_t wd[4] = { M, Cg, cs[ci].kh, cs[ci].kw }, xd[4] = { N, C, cs[ci].H, cs[ci].W };
		bool one_d = cs[ci].H == 1;   /* run as a 1-D convolution */
		int nd = one_d ? 3 : 4;
		if (one_d) {
			wd[2] = cs[ci].kw; xd[2] = cs[ci].W;
		}
		int64_t nzw = cs[ci].per ? M : 1;
		for (int op = 0; op < 2; op++) {
			struct tin qin[9] = { { "x", dt, nd, {xd[0], xd[1], xd[2], xd[3]}, x }, { "xs", QD_DT_FLOAT, 0, {0}, &xs },
					      { "xz", dt, 0, {0}, &xz }, { "w", dt, nd, {wd[0], wd[1], wd[2], wd[3]}, w },
					      { "ws", QD_DT_FLOAT, 1, {M}, ws }, { "wz", dt, 1, {nzw}, wz },
					      { "ys", QD_DT_FLOAT, 0, {0}, &ys }, { "yz", dt, 0, {0}, &yz },
					      { "bias", QD_DT_INT32, 1, {M}, bias } };
			struct tin iin[4] = { qin[0], qin[3], qin[2], qin[5] };
			struct qd_tensor *o[3] = { NULL, NULL, NULL };
			size_t no[3] = { 0, 0, 0 };
			for (int pass = 0; pass < 3; pass++) {
				Onnx__NodeProto *node;
				struct qd_model *m = op ? one_node("ConvInteger", "", 10, iin, 4, 1, &node)
						     : one_node("QLinearConv", "", 10, qin, cs[ci].bias ? 9 : 8, 1, &node);
				int64_t pads[4] = { cs[ci].p[0], cs[ci].p[1], cs[ci].p[2], cs[ci].p[3] };
				int64_t st[2] = { cs[ci].sh, cs[ci].sw }, dl[2] = { cs[ci].dh, cs[ci].dw };
				if (one_d) {
					pads[0] = cs[ci].p[1]; pads[1] = cs[ci].p[3];
					st[0] = cs[ci].sw; dl[0] = cs[ci].dw;
				}
				qd_node_set_attr_int(node, "group", G);
				qd_node_set_attr_ints(node, "pads", pads, one_d ? 2 : 4);
				qd_node_set_attr_ints(node, "strides", st, one_d ? 1 : 2);
				qd_node_set_attr_ints(node, "dilations", dl, one_d ? 1 : 2);
				struct qd_err err = {0};
				/* pass 0: reference, 1: pixel-major 1 thread (two runs), 2: 2 threads */
				qd_qconv_ref_path = pass == 0;
				int rc = pass == 1 ? run(m, &o[pass], &no[pass], &err) : run_threads(m, pass == 2 ? 2 : 1, &o[pass], &no[pass], &err);
				qd_qconv_ref_path = 0;
				CHECKF(rc == 0, "qconv case %zu op %d pass %d: %s", ci, op, pass, err.msg);
				qd_model_free(m);
			}
			for (int pass = 1; pass < 3; pass++)
				CHECKF(o[0] && o[pass] && o[0][0].nbytes == o[pass][0].nbytes && o[0][0].nbytes > 0 &&
				       !memcmp(o[0][0].data, o[pass][0].data, o[0][0].nbytes),
				       "qconv case %zu op %s: pixel-major (%d thread(s)) != reference", ci,
				       op ? "ConvInteger" : "QLinearConv", pass);
			/* the requantized outputs are not all saturated (the case tests something) */
			if (!op && o[0]) {
				int64_t mid = 0, n = (int64_t)o[0][0].nbytes;
				for (int64_t i = 0; i < n; i++) {
					int v = cs[ci].s8 ? ((const int8_t *)o[0][0].data)[i] : ((const uint8_t *)o[0][0].data)[i];
					mid += cs[ci].s8 ? v > -128 && v < 127 : v > 0 && v < 255;
				}
				CHECKF(mid * 2 > n, "qconv case %zu: %lld of %lld outputs unsaturated", ci, (long long)mid, (long long)n);
			}
			for (int pass = 0; pass < 3; pass++)
				qd_tensors_release(o[pass], no[pass]);
		}
		free(x);
		free(w);
	}
}

int main(void)
{
	test_quantize();
	test_qconv_pixmajor();
	test_dequantize();
	test_dynamic_quantize();
	test_matmul();
	test_matmul_nbits();
	test_qlinear();
	test_qconv_depthwise();
	test_errors();
	return qd_test_done("test_engine_quant_ops");
}
