/* Unit test for engine/fuse.c and engine/ops_quant_vec.c: the dynamic-quantization MatMul
 * chain is fused at load (and gives the unfused result), a per-tensor hook turns fusion
 * off and still sees every tensor, a chain whose intermediate is a graph output is left
 * alone; the vectorised quantize / min-max / dequantize / requantize loops match their
 * _ref twins on random data with ties, saturation and NaN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "qd_test.h"
#include "qd.h"
#include "onnx/onnx.h"
#include "engine/engine_internal.h"
#include "engine/ops_quant.h"

enum { M = 6, K = 23, N = 19 };

static void add_init(Onnx__GraphProto *g, const char *name, int dt, int nd, const int64_t *dims,
		     const void *data, size_t nb)
{
	qd_graph_add_initializer(g, qd_tensor_new(name, dt, dims, (size_t)nd, data, nb));
}

static void add_node(Onnx__GraphProto *g, const char *op, const char *name, const char **in, int nin,
		     const char **out, int nout, int64_t to)
{
	Onnx__NodeProto *n = qd_node_new(op, NULL, name, in, (size_t)nin, out, (size_t)nout);
	if (to)
		qd_node_set_attr_int(n, "to", to);
	qd_graph_add_node(g, n);
}

/* DQL -> MatMulInteger -> Cast -> Mul(., Mul(s, S)) -> Add(bias); every input an
 * initializer. Graph outputs: "y", plus "cf" (the Cast output) when extra. */
static struct qd_model *chain_model(bool extra)
{
	Onnx__ModelProto *m = calloc(1, sizeof(*m));
	Onnx__GraphProto *g = calloc(1, sizeof(*g));
	onnx__model_proto__init(m);
	onnx__graph_proto__init(g);
	m->has_ir_version = 1;
	m->ir_version = 8;
	m->graph = g;
	g->name = strdup("fuse");
	m->n_opset_import = 1;
	m->opset_import = calloc(1, sizeof(*m->opset_import));
	m->opset_import[0] = calloc(1, sizeof(Onnx__OperatorSetIdProto));
	onnx__operator_set_id_proto__init(m->opset_import[0]);
	m->opset_import[0]->domain = strdup("");
	m->opset_import[0]->has_version = 1;
	m->opset_import[0]->version = 13;
	float x[M * K], S[N], b[N];
	int8_t w[K * N], wz[N];
	unsigned seed = 5;
	for (int i = 0; i < M * K; i++) x[i] = (float)((int)(rand_r(&seed) % 2001) - 1000) / 300.0f;
	for (int i = 0; i < K * N; i++) w[i] = (int8_t)(rand_r(&seed) % 256 - 128);
	for (int i = 0; i < N; i++) {
		S[i] = 0.001f + (float)(rand_r(&seed) % 100) / 10000.0f;
		b[i] = (float)(rand_r(&seed) % 200) / 100.0f - 1.0f;
		wz[i] = (int8_t)(rand_r(&seed) % 9) - 4;
	}
	int64_t dx[2] = { M, K }, dw[2] = { K, N }, dn[1] = { N };
	add_init(g, "x", QD_DT_FLOAT, 2, dx, x, sizeof(x));
	add_init(g, "w", QD_DT_INT8, 2, dw, w, sizeof(w));
	add_init(g, "wz", QD_DT_INT8, 1, dn, wz, sizeof(wz));
	add_init(g, "S", QD_DT_FLOAT, 1, dn, S, sizeof(S));
	add_init(g, "b", QD_DT_FLOAT, 1, dn, b, sizeof(b));
	const char *i0[] = { "x" }, *o0[] = { "xq", "xs", "xz" };
	const char *i1[] = { "xq", "w", "xz", "wz" }, *o1[] = { "acc" };
	const char *i2[] = { "acc" }, *o2[] = { "cf" };
	const char *i3[] = { "xs", "S" }, *o3[] = { "sm" };
	const char *i4[] = { "cf", "sm" }, *o4[] = { "mm" };
	const char *i5[] = { "mm", "b" }, *o5[] = { "y" };
	add_node(g, "DynamicQuantizeLinear", "dql", i0, 1, o0, 3, 0);
	add_node(g, "MatMulInteger", "mmi", i1, 4, o1, 1, 0);
	add_node(g, "Cast", "cast", i2, 1, o2, 1, QD_DT_FLOAT);
	add_node(g, "Mul", "scales", i3, 2, o3, 1, 0);
	add_node(g, "Mul", "deq", i4, 2, o4, 1, 0);
	add_node(g, "Add", "bias", i5, 2, o5, 1, 0);
	const char *outs[2] = { "y", "cf" };
	g->n_output = extra ? 2 : 1;
	g->output = calloc(2, sizeof(*g->output));
	for (size_t i = 0; i < g->n_output; i++) {
		g->output[i] = calloc(1, sizeof(Onnx__ValueInfoProto));
		onnx__value_info_proto__init(g->output[i]);
		g->output[i]->name = strdup(outs[i]);
	}
	struct qd_model *qm = calloc(1, sizeof(*qm));
	qm->proto = m;
	return qm;
}

static void count_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	(*(int *)ud)++;
}

static int fused_nodes(const struct qd_engine *e, const char **op)
{
	int nf = 0;
	for (int i = 0; i < e->main->n_nodes; i++)
		if (e->main->nodes[i].fused) {
			nf++;
			*op = e->main->nodes[i].fused->op->op_type;
		}
	return nf;
}

static void test_fusion(void)
{
	struct qd_err err = {0};
	struct qd_model *m = chain_model(false);
	struct qd_engine *e = NULL;
	struct qd_tensor *y1 = NULL, *y2 = NULL;
	size_t n1 = 0, n2 = 0;
	const char *op = "";
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	CHECK_EQ_INT(fused_nodes(e, &op), 1);
	CHECK_STR(op, "DynamicQuantizeMatMul");
	int skipped = 0;
	for (int i = 0; i < e->main->n_nodes; i++)
		skipped += e->main->nodes[i].fuse_skip;
	CHECK_EQ_INT(skipped, 5);
	CHECK_EQ_INT(qd_engine_run(e, NULL, 0, &y1, &n1, NULL, &err), 0);
	/* with a hook: the original nodes run and the hook sees all 8 tensors */
	int seen = 0;
	qd_engine_set_hook(e, count_hook, &seen);
	CHECK_EQ_INT(qd_engine_run(e, NULL, 0, &y2, &n2, NULL, &err), 0);
	CHECK_EQ_INT(seen, 8);
	CHECK(n1 == 1 && n2 == 1);
	if (n1 == 1 && n2 == 1) {
		double worst = 0, mag = 0;
		for (int i = 0; i < M * N; i++) {
			double a = ((float *)y1[0].data)[i], b = ((float *)y2[0].data)[i];
			worst = fmax(worst, fabs(a - b));
			mag = fmax(mag, fabs(b));
		}
		CHECKF(worst <= 1e-5 * fmax(1.0, mag), "fused vs unfused differ by %g (max %g)", worst, mag);
		CHECK(mag > 0.1);
	}
	qd_tensors_release(y1, n1);
	qd_tensors_release(y2, n2);
	qd_engine_free(e);
	qd_model_free(m);
	/* the Cast output is a graph output: nothing fused, both outputs produced */
	m = chain_model(true);
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	CHECK_EQ_INT(fused_nodes(e, &op), 0);
	CHECK_EQ_INT(qd_engine_run(e, NULL, 0, &y1, &n1, NULL, &err), 0);
	CHECK_EQ_INT(n1, 2);
	qd_tensors_release(y1, n1);
	qd_engine_free(e);
	qd_model_free(m);
}

static void test_vec_twins(void)
{
	unsigned seed = 11;
	enum { L = 1003 };
	float x[L];
	uint8_t q1[L], q2[L];
	int32_t acc[L];
	float mul[L], bias[L], y1[L], y2[L];
	for (int rep = 0; rep < 20; rep++) {
		float s = 0.01f + (float)(rand_r(&seed) % 1000) / 1000.0f;
		int32_t zp = (int32_t)(rand_r(&seed) % 256);
		for (int i = 0; i < L; i++) {
			int k = (int)(rand_r(&seed) % 800) - 400;
			x[i] = rand_r(&seed) % 2 ? ((float)k + 0.5f) * s : (float)k * s * 0.37f;
		}
		x[0] = NAN;
		x[1] = INFINITY;
		x[2] = -INFINITY;
		x[3] = 1e30f;
		int n = L - rep;    /* odd lengths: vector tails */
		int bad = 0;
		qd_q_quantize_u8(x, n, s, zp, 0, 255, q1);
		qd_q_quantize_8_ref(x, n, s, zp, 0, 255, false, q2);
		bad += memcmp(q1, q2, (size_t)n) != 0;
		int32_t zs = zp - 128;
		qd_q_quantize_s8(x, n, s, zs, -128, 127, (int8_t *)q1);
		qd_q_quantize_8_ref(x, n, s, zs, -128, 127, true, q2);
		bad += memcmp(q1, q2, (size_t)n) != 0;
		qd_q_quantize_u8(x, n, s, zp, 10, 200, q1);     /* reduced range */
		qd_q_quantize_8_ref(x, n, s, zp, 10, 200, false, q2);
		bad += memcmp(q1, q2, (size_t)n) != 0;
		float a1, b1, a2, b2;
		qd_q_minmax0(x + 4, n - 4, &a1, &b1);
		qd_q_minmax0_ref(x + 4, n - 4, &a2, &b2);
		bad += a1 != a2 || b1 != b2;
		for (int i = 0; i < L; i++) {
			acc[i] = (int32_t)rand_r(&seed) % 200001 - 100000;
			mul[i] = (float)(rand_r(&seed) % 1000 + 1) / 1e6f;
			bias[i] = (float)(rand_r(&seed) % 100) / 50.0f;
		}
		int rows = 1 + rep % 3, cols = n / rows;
		qd_q_dequant_rows(acc, rows, cols, mul, rep % 2 ? bias : NULL, y1);
		qd_q_dequant_rows_ref(acc, rows, cols, mul, rep % 2 ? bias : NULL, y2);
		bad += memcmp(y1, y2, (size_t)(rows * cols) * sizeof(float)) != 0;
		qd_q_requant_row(acc, n, mul, zp, 0, 255, false, q1);
		qd_q_requant_row_ref(acc, n, mul, zp, 0, 255, false, q2);
		bad += memcmp(q1, q2, (size_t)n) != 0;
		qd_q_requant_row(acc, n, mul, zs, -128, 127, true, q1);
		qd_q_requant_row_ref(acc, n, mul, zs, -128, 127, true, q2);
		bad += memcmp(q1, q2, (size_t)n) != 0;
		int32_t ib[L];
		for (int i = 0; i < L; i++)
			ib[i] = (int32_t)(rand_r(&seed) % 4001) - 2000;
		ib[0] = INT32_MAX;   /* wraps with the sum, as the GEMM's int32 does */
		acc[0] = 5;
		qd_q_requant_rows(acc, rows, cols, mul, rep % 2 ? ib : NULL, zp, 0, 255, false, q1);
		qd_q_requant_rows_ref(acc, rows, cols, mul, rep % 2 ? ib : NULL, zp, 0, 255, false, q2);
		bad += memcmp(q1, q2, (size_t)(rows * cols)) != 0;
		qd_q_requant_rows(acc, rows, cols, mul, rep % 2 ? ib : NULL, zs, -128, 127, true, q1);
		qd_q_requant_rows_ref(acc, rows, cols, mul, rep % 2 ? ib : NULL, zs, -128, 127, true, q2);
		bad += memcmp(q1, q2, (size_t)(rows * cols)) != 0;
		float f1[L], f2[L];
		qd_q_dequant_8(q1, n, false, zp, s, f1);
		qd_q_dequant_8_ref(q1, n, false, zp, s, f2);
		bad += memcmp(f1, f2, (size_t)n * sizeof(float)) != 0;
		qd_q_dequant_8(q1, n, true, zs, s, f1);
		qd_q_dequant_8_ref(q1, n, true, zs, s, f2);
		bad += memcmp(f1, f2, (size_t)n * sizeof(float)) != 0;
		CHECKF(bad == 0, "rep %d: %d vectorised loops differ from their _ref twins", rep, bad);
	}
}

/* The byte transpose against its plain twin: whole 16 x 16 blocks, edges of every size,
 * strides wider than the rows. */
/* The table lookup against its plain twin (lengths around the 64-byte step). */
static void test_lut8(void)
{
	unsigned seed = 5;
	uint8_t lut[256], x[300], y1[300], y2[300];
	for (int i = 0; i < 256; i++)
		lut[i] = (uint8_t)rand_r(&seed);
	for (int i = 0; i < 300; i++)
		x[i] = (uint8_t)(i < 256 ? i : rand_r(&seed));
	int lens[] = { 0, 1, 63, 64, 65, 256, 300 };
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		memset(y1, 0, sizeof(y1));
		memset(y2, 0, sizeof(y2));
		qd_lut8(x, lens[k], lut, y1);
		qd_lut8_ref(x, lens[k], lut, y2);
		CHECKF(!memcmp(y1, y2, sizeof(y1)), "lut8 of %d bytes differs from the _ref twin", lens[k]);
	}
	qd_lut8(x, 256, lut, y1);
	CHECK(!memcmp(y1, lut, 256));   /* x = 0..255 reads the table back */
}

static void test_transpose(void)
{
	unsigned seed = 11;
	int shapes[][2] = { { 16, 16 }, { 3, 409 }, { 409, 3 }, { 33, 47 }, { 1, 1 }, { 64, 160 }, { 17, 15 } };
	for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
		int64_t r = shapes[k][0], c = shapes[k][1], lds = c + (int64_t)(k % 3), ldd = r + (int64_t)(k % 2) * 5;
		uint8_t *src = malloc((size_t)(r * lds)), *d1 = calloc((size_t)(c * ldd), 1),
			*d2 = calloc((size_t)(c * ldd), 1);
		for (int64_t i = 0; i < r * lds; i++)
			src[i] = (uint8_t)rand_r(&seed);
		qd_transpose_u8(src, r, c, lds, d1, ldd);
		qd_transpose_u8_ref(src, r, c, lds, d2, ldd);
		CHECKF(!memcmp(d1, d2, (size_t)(c * ldd)), "transpose %lldx%lld differs from the _ref twin",
		       (long long)r, (long long)c);
		CHECK(d1[0] == src[0] && d1[(c - 1) * ldd + r - 1] == src[(r - 1) * lds + c - 1]);
		free(src);
		free(d1);
		free(d2);
	}
}

int main(void)
{
	test_fusion();
	test_vec_twins();
	test_transpose();
	test_lut8();
	return qd_test_done("test_engine_quant_fuse");
}
