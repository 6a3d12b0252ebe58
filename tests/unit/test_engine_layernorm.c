/* LayerNormalization: the row kernel (ORT 1.30's MLAS AVX2 arithmetic) against its plain
 * _ref twin on random rows and bit for bit against rows ONNX Runtime 1.30 computed (x86-64,
 * AVX2 + FMA: tails of 1, 5 and 4 values past the 8-lane blocks); the load-time fusion of
 * the decomposed ReduceMean .. Add form (engine/fuse_float.c): recognised, equal to the
 * LayerNormalization op, left alone when the pattern does not match, off with a hook. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include "qd_test.h"
#include "engine/engine_internal.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static int64_t ri(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rf(void) { return (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }

/* rows from ONNX Runtime 1.30 (LayerNormalization, epsilon 1e-5, /tmp model of [1,S,H]) */
static const float ort_x9[9] = { 0x1.eee1b80000000p-3f, 0x1.60e8840000000p+1f, -0x1.e938bc0000000p+0f, -0x1.ebec5c0000000p+1f, 0x1.e28bcc0000000p+0f, -0x1.4fcb680000000p+0f, -0x1.43e7c80000000p+2f, -0x1.bdfe440000000p+0f, -0x1.67d4720000000p-1f };
static const float ort_g9[9] = { 0x1.02a0420000000p+0f, 0x1.686dba0000000p+0f, 0x1.5e0f000000000p+0f, 0x1.b19de80000000p-1f, 0x1.d23b5c0000000p-1f, 0x1.aefe680000000p-1f, 0x1.2bc1460000000p+0f, 0x1.f763740000000p-1f, 0x1.395c5e0000000p+0f };
static const float ort_b9[9] = { -0x1.7a55060000000p-3f, 0x1.40d4460000000p-3f, -0x1.3bfd280000000p-7f, 0x1.16aeda0000000p-4f, -0x1.bf80240000000p-7f, -0x1.368ebc0000000p-5f, 0x1.7b613e0000000p-5f, 0x1.51b8820000000p-4f, -0x1.4bd3300000000p-6f };
static const float ort_y9[9] = { 0x1.84f3bc0000000p-2f, 0x1.38f4d20000000p+1f, -0x1.f9510a0000000p-2f, -0x1.d9cb240000000p-1f, 0x1.2131220000000p+0f, -0x1.f326c20000000p-4f, -0x1.ee87b20000000p+0f, -0x1.8f6fdc0000000p-3f, 0x1.63aca80000000p-3f };
static const float ort_x13[13] = { 0x1.ba21600000000p+1f, 0x1.0447fe0000000p+2f, -0x1.4289820000000p+1f, -0x1.4f02760000000p+0f, 0x1.7d57080000000p+1f, -0x1.12afee0000000p+2f, 0x1.f7e03c0000000p+0f, 0x1.2e2d260000000p+2f, 0x1.44ce6a0000000p+2f, 0x1.df75aa0000000p-3f, 0x1.509fa00000000p+0f, -0x1.2c2fa20000000p+2f, 0x1.88db280000000p+0f };
static const float ort_g13[13] = { 0x1.2052760000000p-1f, 0x1.1c7e860000000p+0f, 0x1.2c80a40000000p+0f, 0x1.37f8ae0000000p-1f, 0x1.6035280000000p+0f, 0x1.c1e5040000000p-1f, 0x1.4749860000000p-1f, 0x1.ab7c360000000p-1f, 0x1.13d6de0000000p-1f, 0x1.272a0e0000000p+0f, 0x1.1aabf20000000p-3f, 0x1.88edfa0000000p-1f, 0x1.97074a0000000p+0f };
static const float ort_b13[13] = { -0x1.5c4e2e0000000p-3f, -0x1.dfd2c60000000p-6f, 0x1.c3e04a0000000p-4f, -0x1.2651840000000p-7f, -0x1.6b02b80000000p-4f, 0x1.64b9aa0000000p-3f, -0x1.16de480000000p-4f, -0x1.521c1a0000000p-4f, 0x1.8693c00000000p-4f, 0x1.16d3f80000000p-3f, 0x1.782be20000000p-3f, 0x1.43a12a0000000p-4f, 0x1.7aa3640000000p-7f };
static const float ort_y13[13] = { 0x1.1831d20000000p-2f, 0x1.0fd43a0000000p+0f, -0x1.2f1d4e0000000p+0f, -0x1.ca0ab40000000p-2f, 0x1.93c51e0000000p-1f, -0x1.499ce00000000p+0f, 0x1.1473fe0000000p-3f, 0x1.d204360000000p-1f, 0x1.97a98a0000000p-1f, -0x1.0af34e0000000p-3f, 0x1.97864a0000000p-3f, -0x1.4b5e120000000p+0f, 0x1.3199040000000p-2f };
static const float ort_x20[20] = { 0x1.32df2c0000000p+2f, 0x1.7556d00000000p+2f, -0x1.3d31260000000p+2f, -0x1.c4b8900000000p-2f, 0x1.5d8f320000000p+1f, 0x1.59bfb20000000p+0f, -0x1.aecb9c0000000p+2f, 0x1.c433b40000000p-1f, 0x1.fe86580000000p+0f, -0x1.34930c0000000p-1f, 0x1.7d917e0000000p-2f, 0x1.71a2980000000p-2f, 0x1.863fca0000000p+2f, -0x1.7aa3260000000p-1f, -0x1.700e180000000p+2f, -0x1.6bb59e0000000p+0f, -0x1.c8538c0000000p+1f, 0x1.8c21f80000000p+0f, 0x1.3494d20000000p+2f, 0x1.dd90520000000p+0f };
static const float ort_g20[20] = { 0x1.8c85aa0000000p+0f, 0x1.44946e0000000p+0f, 0x1.b2c4d60000000p-1f, 0x1.916fbe0000000p-1f, 0x1.100fb60000000p+0f, 0x1.08e6780000000p+0f, 0x1.6d590e0000000p-1f, 0x1.3370080000000p+0f, 0x1.c9349c0000000p-2f, 0x1.26c5840000000p-1f, 0x1.25cd1e0000000p+0f, 0x1.e3f1da0000000p-1f, 0x1.33be400000000p+0f, 0x1.4660840000000p+0f, 0x1.ad60720000000p-1f, 0x1.498bfc0000000p+0f, 0x1.890f800000000p-1f, 0x1.265d140000000p+0f, 0x1.1b59720000000p+0f, 0x1.8689fc0000000p-1f };
static const float ort_b20[20] = { 0x1.a308240000000p-3f, -0x1.4450480000000p-6f, 0x1.3f82700000000p-5f, 0x1.f5f98c0000000p-3f, 0x1.6d88b80000000p-5f, 0x1.431c0e0000000p-5f, 0x1.f622500000000p-5f, 0x1.80904a0000000p-3f, -0x1.230bdc0000000p-3f, -0x1.182e020000000p-3f, 0x1.500bfe0000000p-4f, 0x1.a0b3bc0000000p-10f, -0x1.b46d460000000p-5f, -0x1.bc732a0000000p-4f, -0x1.ae1f780000000p-7f, 0x1.fd8aa40000000p-5f, 0x1.f9df400000000p-3f, 0x1.1f1d500000000p-4f, 0x1.7fc7ae0000000p-3f, 0x1.10dfe20000000p-5f };
static const float ort_y20[20] = { 0x1.0e027c0000000p+1f, 0x1.e8e7ce0000000p+0f, -0x1.3ed7900000000p+0f, 0x1.be815a0000000p-5f, 0x1.7827480000000p-1f, 0x1.3d0bb40000000p-2f, -0x1.5fd38a0000000p+0f, 0x1.5fb7460000000p-2f, 0x1.c4f0b80000000p-5f, -0x1.3607740000000p-2f, 0x1.0e759c0000000p-4f, -0x1.e190420000000p-7f, 0x1.dd94720000000p+0f, -0x1.0cd6ac0000000p-1f, -0x1.78186e0000000p+0f, -0x1.35c8740000000p-1f, -0x1.3a50cc0000000p-1f, 0x1.bc61d20000000p-2f, 0x1.8e90020000000p+0f, 0x1.5f28320000000p-2f };

static void test_rows_vs_ort(void)
{
	const struct { int n; const float *x, *g, *b, *y; } rows[] = {
		{ 9, ort_x9, ort_g9, ort_b9, ort_y9 }, { 13, ort_x13, ort_g13, ort_b13, ort_y13 },
		{ 20, ort_x20, ort_g20, ort_b20, ort_y20 },
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		float y[32], m, inv;
		qd_layer_norm_row_f32(rows[r].x, y, rows[r].n, rows[r].g, rows[r].n, rows[r].b, rows[r].n, 1e-5f, &m, &inv);
		int same = 0;
		for (int i = 0; i < rows[r].n; i++)
			same += y[i] == rows[r].y[i];
		CHECKF(same == rows[r].n, "row of %d: %d of %d values equal ORT's", rows[r].n, same, rows[r].n);
	}
}

static void test_rows_vs_ref(void)
{
	for (int it = 0; it < 300; it++) {
		int64_t n = it < 40 ? it + 1 : ri(1, 4000);
		float *x = malloc((size_t)n * sizeof(float)), *S = malloc((size_t)n * sizeof(float)),
		      *B = malloc((size_t)n * sizeof(float)), *y1 = malloc((size_t)n * sizeof(float)),
		      *y2 = malloc((size_t)n * sizeof(float));
		float off = (float)(it % 11) * 3.0f, amp = it % 3 ? 4.0f : 0.01f;
		for (int64_t i = 0; i < n; i++) { x[i] = off + amp * rf(); S[i] = 1.0f + 0.3f * rf(); B[i] = 0.1f * rf(); }
		int64_t ns = it % 4 ? n : 1, nb = it % 5 ? n : 1;
		float m1, i1, m2, i2;
		qd_layer_norm_row_f32(x, y1, n, S, ns, it % 7 ? B : NULL, nb, 1e-5f, &m1, &i1);
		qd_layer_norm_row_f32_ref(x, y2, n, S, ns, it % 7 ? B : NULL, nb, 1e-5f, &m2, &i2);
		/* a few float roundings apart: |dy| within 4 ulp of the output's scale (|y| <~ 5) */
		double e = 0;
		for (int64_t i = 0; i < n; i++) e = fmax(e, fabs((double)y1[i] - y2[i]));
		CHECKF(e <= 4 * 5.0 * FLT_EPSILON && fabsf(m1 - m2) <= 2 * FLT_EPSILON * (fabsf(m2) + amp) &&
		       fabsf(i1 - i2) <= 4 * FLT_EPSILON * i2,
		       "row of %lld: max |dy| %g, mean %g vs %g, inv %g vs %g", (long long)n, e, m1, m2, i1, i2);
		free(x); free(S); free(B); free(y1); free(y2);
	}
}

static void add_f32(Onnx__GraphProto *g, const char *name, int nd, const int64_t *dims, const float *v, size_t n)
{
	qd_graph_add_initializer(g, qd_tensor_new(name, QD_DT_FLOAT, dims, (size_t)nd, v, n * sizeof(float)));
}

static void count_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	(void)node; (void)t;
	(*(int *)ud)++;
}

enum ln_form { LN_OK, LN_OK_AXIS2, LN_EPS_FIRST, LN_AXIS_MID, LN_MEAN_OUT, LN_GAMMA_2D, LN_OP };
#define T 5
#define C 24

/* x [2, T, C] -> decomposed LayerNorm (opset 13) or, LN_OP, LayerNormalization (opset 17) */
static struct qd_model *ln_model(enum ln_form form, const float *gam, const float *bet)
{
	struct qd_model *m = qd_model_new(8, form == LN_OP ? 17 : 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[3] = { 2, T, C }, cd[1] = { C }, gd2[2] = { 1, C };
	g->input = calloc(1, sizeof(*g->input));
	g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, xd, 3);
	g->output = calloc(2, sizeof(*g->output));
	g->output[g->n_output++] = qd_value_info_new("y", QD_DT_FLOAT, xd, 3);
	float two = 2.0f, eps = 1e-5f;
	add_f32(g, "gamma", form == LN_GAMMA_2D ? 2 : 1, form == LN_GAMMA_2D ? gd2 : cd, gam, C);
	add_f32(g, "beta", 1, cd, bet, C);
	if (form == LN_OP) {
		const char *in[3] = { "x", "gamma", "beta" }, *out[1] = { "y" };
		Onnx__NodeProto *n = qd_node_new("LayerNormalization", NULL, "ln", in, 3, out, 1);
		qd_node_set_attr_float(n, "epsilon", eps);
		qd_graph_add_node(g, n);
		return m;
	}
	add_f32(g, "two", 0, NULL, &two, 1);
	add_f32(g, "eps", 0, NULL, &eps, 1);
	static const char *nodes[][4] = {
		{ "ReduceMean", "m", "x", NULL }, { "Sub", "d", "x", "m" }, { "Pow", "p", "d", "two" },
		{ "ReduceMean", "v", "p", NULL }, { "Add", "ve", "v", "eps" }, { "Sqrt", "s", "ve", NULL },
		{ "Div", "n", "d", "s" }, { "Mul", "ng", "n", "gamma" }, { "Add", "y", "ng", "beta" },
	};
	for (int i = 0; i < 9; i++) {
		const char *in[2] = { nodes[i][2], nodes[i][3] }, *out[1] = { nodes[i][1] };
		if (form == LN_EPS_FIRST && i == 4) { in[0] = "eps"; in[1] = "v"; }
		Onnx__NodeProto *n = qd_node_new(nodes[i][0], NULL, nodes[i][1], in, nodes[i][3] ? 2 : 1, out, 1);
		if (!strcmp(nodes[i][0], "ReduceMean")) {
			int64_t ax = form == LN_AXIS_MID ? 1 : form == LN_OK_AXIS2 ? 2 : -1;
			qd_node_set_attr_ints(n, "axes", &ax, 1);
		}
		qd_graph_add_node(g, n);
	}
	if (form == LN_MEAN_OUT)
		g->output[g->n_output++] = qd_value_info_new("m", QD_DT_FLOAT, NULL, 0);
	return m;
}

static void run_model(struct qd_model *m, const struct qd_tensor *x, bool hook, float *y, bool *fused, int *seen)
{
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	struct qd_tensor *o = NULL;
	size_t no = 0;
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	if (!e)
		return;
	*fused = e->main->nodes[0].fused != NULL;
	if (hook)
		qd_engine_set_hook(e, count_hook, seen);
	CHECK_EQ_INT(qd_engine_run(e, x, 1, &o, &no, NULL, &err), 0);
	if (no >= 1)
		memcpy(y, o[0].data, 2 * T * C * sizeof(float));
	qd_tensors_release(o, no);
	qd_engine_free(e);
}

static void test_fusion(void)
{
	float gam[C], bet[C];
	for (int i = 0; i < C; i++) { gam[i] = 1.0f + 0.3f * rf(); bet[i] = 0.1f * rf(); }
	int64_t xd[3] = { 2, T, C };
	struct qd_tensor x;
	qd_tensor_alloc(&x, "x", QD_DT_FLOAT, 3, xd);
	for (int64_t i = 0; i < 2 * T * C; i++) ((float *)x.data)[i] = 0.7f + 3.0f * rf();
	float yop[2 * T * C], yf[2 * T * C], yu[2 * T * C];
	bool fused = false;
	int seen = 0;
	struct qd_model *mo = ln_model(LN_OP, gam, bet);
	run_model(mo, &x, false, yop, &fused, &seen);
	qd_model_free(mo);
	const struct { enum ln_form form; bool fuses; float eps; const char *what; } cases[] = {
		{ LN_OK, true, 1e-5f, "decomposed, axes -1" },
		{ LN_OK_AXIS2, true, 1e-5f, "axes 2 of a declared rank-3 input" },
		{ LN_EPS_FIRST, true, 1e-5f, "Add(eps, v): ORT's default epsilon" },
		{ LN_AXIS_MID, false, 0, "axes 1 (not the last)" },
		{ LN_MEAN_OUT, false, 0, "mean is a graph output" },
		{ LN_GAMMA_2D, false, 0, "gamma of rank 2" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct qd_model *m = ln_model(cases[k].form, gam, bet);
		fused = false;
		run_model(m, &x, false, yf, &fused, &seen);
		CHECKF(fused == cases[k].fuses, "%s: fused %d, expected %d", cases[k].what, fused, cases[k].fuses);
		bool f2 = true;
		seen = 0;
		run_model(m, &x, true, yu, &f2, &seen);
		CHECKF(seen == 9, "%s: hook saw %d tensors, expected 9",
		       cases[k].what, seen);
		if (cases[k].fuses) {
			CHECKF(!memcmp(yf, yop, sizeof(yf)), "%s: fused result differs from LayerNormalization", cases[k].what);
			double e = 0;   /* unfused graph: the same up to float rounding */
			for (int i = 0; i < 2 * T * C; i++) e = fmax(e, fabs((double)yf[i] - yu[i]));
			CHECKF(e < 1e-5, "%s: fused vs unfused max |dy| %g", cases[k].what, e);
		} else {
			CHECKF(!memcmp(yf, yu, sizeof(yf)), "%s: unfused run differs with and without the hook", cases[k].what);
		}
		qd_model_free(m);
	}
	setenv("QUANTD_NO_FUSE", "1", 1);
	struct qd_model *m = ln_model(LN_OK, gam, bet);
	fused = true;
	run_model(m, &x, false, yf, &fused, &seen);
	CHECKF(!fused, "QUANTD_NO_FUSE=1 still fuses");
	unsetenv("QUANTD_NO_FUSE");
	qd_model_free(m);
	qd_tensor_release(&x);
}

int main(void)
{
	test_rows_vs_ort();
	test_rows_vs_ref();
	test_fusion();
	return qd_test_done("test_engine_layernorm");
}
