/* Optimised kernels against their plain _ref twins on random shapes (ggml
 * test-backend-ops style): sgemm, Conv (im2col+sgemm, 1x1 direct, depthwise, groups,
 * strides, dilations, pads, 1-3 spatial dims), ConvTranspose, and the generic broadcast
 * walk against naive index arithmetic; the fused Conv epilogue and its load-time fusion. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "qd_test.h"
#include "engine/engine_internal.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static int64_t ri(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rf(void) { return (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
static float *rand_buf(int64_t n) { float *p = malloc((n ? n : 1) * sizeof(float)); for (int64_t i = 0; i < n; i++) p[i] = rf(); return p; }

/* max |a-b| / max(1, max|b|) */
static double rel_err(const float *a, const float *b, int64_t n)
{
	double m = 0, s = 1;
	for (int64_t i = 0; i < n; i++) { m = fmax(m, fabs((double)a[i] - b[i])); s = fmax(s, fabs(b[i])); }
	return m / s;
}

static void test_gemm(void)
{
	for (int it = 0; it < 60; it++) {
		bool ta = rnd() & 1, tb = rnd() & 1;
		int64_t M = ri(1, 70), N = ri(1, 90), K = ri(0, 80);
		float alpha = rf() * 2, beta = (it % 3 == 0) ? 0.0f : rf();
		float *A = rand_buf(M * K), *B = rand_buf(K * N), *C1 = rand_buf(M * N), *C2 = malloc(M * N * sizeof(float));
		memcpy(C2, C1, M * N * sizeof(float));
		qd_gemm_f32(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C1, N);
		qd_gemm_f32_ref(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C2, N);
		CHECKF(rel_err(C1, C2, M * N) < 1e-5, "gemm ta=%d tb=%d M=%lld N=%lld K=%lld err %g", ta, tb,
		       (long long)M, (long long)N, (long long)K, rel_err(C1, C2, M * N));
		free(A); free(B); free(C1); free(C2);
	}
}

/* Random valid conv geometry: mode 0 general, 1 depthwise, 2 pointwise. */
static void rand_geom(struct qd_conv_geom *g, int mode, bool transposed)
{
	memset(g, 0, sizeof(*g));
	g->nsp = (int)ri(1, 3);
	if (g->nsp == 3 && (rnd() & 1)) g->nsp = 2;
	g->N = ri(1, 2);
	g->group = mode == 1 ? ri(1, 8) : (rnd() % 3 == 0 ? ri(2, 3) : 1);
	g->C = g->group * (mode == 1 ? 1 : ri(1, 5));
	g->M = mode == 1 && !transposed ? g->C * ri(1, 2) : g->group * ri(1, 5);  /* depthwise: channel multiplier 1-2 */
	for (int i = 0; i < 3; i++) {
		g->in[i] = g->k[i] = g->out[i] = g->stride[i] = g->dil[i] = 1;
		g->pad_b[i] = g->pad_e[i] = 0;
	}
	for (int i = 3 - g->nsp; i < 3; i++) {
		g->in[i] = ri(1, g->nsp == 3 ? 6 : 13);
		g->k[i] = mode == 2 ? 1 : ri(1, 4);
		g->stride[i] = mode == 2 ? 1 : ri(1, 3);
		g->dil[i] = mode == 2 ? 1 : ri(1, 2);
		int64_t ek = (g->k[i] - 1) * g->dil[i] + 1;
		g->pad_b[i] = mode == 2 ? 0 : ri(0, ek - 1);
		g->pad_e[i] = mode == 2 ? 0 : ri(0, ek - 1);
		if (!transposed) {
			if (g->in[i] + g->pad_b[i] + g->pad_e[i] < ek) g->in[i] = ek;
			g->out[i] = (g->in[i] + g->pad_b[i] + g->pad_e[i] - ek) / g->stride[i] + 1;
		} else {
			g->out[i] = g->stride[i] * (g->in[i] - 1) + ek - g->pad_b[i] - g->pad_e[i];
			if (g->out[i] < 1) { g->pad_b[i] = g->pad_e[i] = 0; g->out[i] = g->stride[i] * (g->in[i] - 1) + ek; }
		}
	}
}

static void test_conv(void)
{
	for (int it = 0; it < 150; it++) {
		struct qd_conv_geom g;
		int mode = it % 3;
		rand_geom(&g, mode, false);
		int64_t cg = g.C / g.group;
		int64_t isz = g.in[0] * g.in[1] * g.in[2], osz = g.out[0] * g.out[1] * g.out[2], ksz = g.k[0] * g.k[1] * g.k[2];
		float *x = rand_buf(g.N * g.C * isz), *w = rand_buf(g.M * cg * ksz), *b = (rnd() & 1) ? rand_buf(g.M) : NULL;
		float *y1 = malloc(g.N * g.M * osz * sizeof(float)), *y2 = malloc(g.N * g.M * osz * sizeof(float));
		size_t wb = qd_conv_work_bytes(&g);
		float *work = (it & 4) && wb ? malloc(wb) : NULL;
		CHECK_EQ_INT(qd_conv_f32(&g, x, w, b, y1, work), 0);
		qd_conv_f32_ref(&g, x, w, b, y2);
		double e = rel_err(y1, y2, g.N * g.M * osz);
		CHECKF(e < 1e-5, "conv mode %d nsp %d N%lld C%lld M%lld g%lld in %lldx%lldx%lld k %lldx%lldx%lld s %lld d %lld: err %g",
		       mode, g.nsp, (long long)g.N, (long long)g.C, (long long)g.M, (long long)g.group,
		       (long long)g.in[0], (long long)g.in[1], (long long)g.in[2], (long long)g.k[0],
		       (long long)g.k[1], (long long)g.k[2], (long long)g.stride[2], (long long)g.dil[2], e);
		free(x); free(w); free(b); free(y1); free(y2); free(work);
	}
}

static void test_conv_transpose(void)
{
	for (int it = 0; it < 80; it++) {
		struct qd_conv_geom g;
		rand_geom(&g, it % 3 == 2 ? 2 : 0, true);
		int64_t mg = g.M / g.group;
		int64_t isz = g.in[0] * g.in[1] * g.in[2], osz = g.out[0] * g.out[1] * g.out[2], ksz = g.k[0] * g.k[1] * g.k[2];
		float *x = rand_buf(g.N * g.C * isz), *w = rand_buf(g.C * mg * ksz), *b = (rnd() & 1) ? rand_buf(g.M) : NULL;
		float *y1 = malloc(g.N * g.M * osz * sizeof(float)), *y2 = malloc(g.N * g.M * osz * sizeof(float));
		CHECK_EQ_INT(qd_conv_transpose_f32(&g, x, w, b, y1, NULL), 0);
		qd_conv_transpose_f32_ref(&g, x, w, b, y2);
		double e = rel_err(y1, y2, g.N * g.M * osz);
		CHECKF(e < 1e-5, "convT nsp %d C%lld M%lld g%lld err %g", g.nsp, (long long)g.C, (long long)g.M, (long long)g.group, e);
		free(x); free(w); free(b); free(y1); free(y2);
	}
}

/* broadcast walk: out[i] = a[ia] + 10*b[ib] with naive index mapping as the reference */
struct bc { const float *a, *b; float *o; };
static void bc_fn(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr, int64_t n)
{
	struct bc *c = ud;
	for (int64_t j = 0; j < n; j++) c->o[oofs + j] = c->a[iofs[0] + j * istr[0]] + 10 * c->b[iofs[1] + j * istr[1]];
}

static void test_broadcast(void)
{
	for (int it = 0; it < 200; it++) {
		int na = (int)ri(0, 5), nb = (int)ri(0, 5), nd;
		int64_t da[8], db[8], od[8], st[2][QD_MAX_DIMS];
		int n = QD_MAX(na, nb);
		for (int i = 0; i < n; i++) {
			int64_t d = ri(1, 4);
			if (i < na) da[na - 1 - i] = (rnd() % 3 == 0) ? 1 : d;
			if (i < nb) db[nb - 1 - i] = (rnd() % 3 == 0) ? 1 : d;
		}
		CHECK_EQ_INT(qd_broadcast_shape(na, da, nb, db, &nd, od), 0);
		int64_t ca = qd_dims_count(na, da), cb = qd_dims_count(nb, db), co = qd_dims_count(nd, od);
		float *a = rand_buf(ca), *b = rand_buf(cb), *o1 = calloc(co, sizeof(float)), *o2 = calloc(co, sizeof(float));
		qd_broadcast_strides(na, da, nd, od, st[0]);
		qd_broadcast_strides(nb, db, nd, od, st[1]);
		struct bc c = { a, b, o1 };
		qd_broadcast_for(2, nd, od, st, bc_fn, &c);
		for (int64_t k = 0; k < co; k++) {
			int64_t r = k, ia = 0, ib = 0, ma = 1, mb = 1;
			for (int i = nd - 1; i >= 0; i--) {
				int64_t idx = r % od[i];
				r /= od[i];
				int ja = i - (nd - na), jb = i - (nd - nb);
				if (ja >= 0) { ia += (da[ja] == 1 ? 0 : idx) * ma; ma *= da[ja]; }
				if (jb >= 0) { ib += (db[jb] == 1 ? 0 : idx) * mb; mb *= db[jb]; }
			}
			o2[k] = a[ia] + 10 * b[ib];
		}
		CHECK(!memcmp(o1, o2, co * sizeof(float)));
		free(a); free(b); free(o1); free(o2);
	}
	/* incompatible shapes */
	int64_t a[2] = { 2, 3 }, b[1] = { 4 }, o[8];
	int nd;
	CHECK(qd_broadcast_shape(2, a, 1, b, &nd, o) == -QD_ESHAPE);
}

/* The vectorisable exp/erf/sigmoid kernels against libm (their plain twins), through a
 * one-node model each. */
static void test_unary_fast(void)
{
	const char *ops[] = { "Exp", "Erf", "Sigmoid" };
	int64_t n = 40001;
	struct qd_tensor x;
	qd_tensor_alloc(&x, "x", QD_DT_FLOAT, 1, &n);
	float *X = x.data;
	for (int64_t i = 0; i < n; i++) X[i] = -100.0f + 190.0f * (float)i / (float)(n - 1);
	X[0] = NAN; X[1] = INFINITY; X[2] = -INFINITY; X[3] = 0.0f; X[4] = 1e-20f; X[5] = -3e-4f;
	for (int k = 0; k < 3; k++) {
		struct qd_model *m = qd_model_new(8, 13);
		Onnx__GraphProto *g = m->proto->graph;
		g->input = calloc(1, sizeof(*g->input));
		g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, &n, 1);
		g->output = calloc(1, sizeof(*g->output));
		g->output[g->n_output++] = qd_value_info_new("y", QD_DT_FLOAT, &n, 1);
		const char *in[] = { "x" }, *out[] = { "y" };
		qd_graph_add_node(g, qd_node_new(ops[k], NULL, "u", in, 1, out, 1));
		struct qd_engine *e = NULL;
		struct qd_err err = {0};
		struct qd_tensor *o = NULL;
		size_t no = 0;
		CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
		CHECK_EQ_INT(qd_engine_run(e, &x, 1, &o, &no, NULL, &err), 0);
		double worst = 0;
		int bad_special = 0;
		for (int64_t i = 0; no == 1 && i < n; i++) {
			double v = X[i], ref = k == 0 ? expf((float)v) : k == 1 ? erff((float)v) : 1.0 / (1.0 + exp(-v));
			float r32 = (float)ref, got = ((float *)o[0].data)[i];
			if (isnan(r32) || isinf(r32) || fabsf(r32) < 1.2e-38f) {
				if (!(isnan(r32) ? isnan(got) : isinf(r32) ? got == r32 : fabsf(got - r32) < 1e-44f)) bad_special++;
				continue;
			}
			worst = fmax(worst, fabs(got - (double)r32) / fabs((double)r32));
		}
		CHECKF(worst < 2e-6, "%s: max rel err %g", ops[k], worst);
		CHECKF(bad_special == 0, "%s: %d special values differ", ops[k], bad_special);
		qd_tensors_release(o, no);
		qd_engine_free(e);
		qd_model_free(m);
	}
	qd_tensor_release(&x);
}

/* MatMul (batched, broadcast batch dims, 1-D promotion; the shared-B single-GEMM path)
 * against naive loops. */
static void test_matmul(void)
{
	for (int it = 0; it < 40; it++) {
		int na = (int)ri(1, 4), nb = (int)ri(1, 4);
		int64_t M = ri(1, 9), K = ri(1, 9), N = ri(1, 9), bat[2] = { ri(1, 3), ri(1, 3) };
		int64_t da[4], db[4];
		int k = 0;
		for (int i = 0; i < na - 2; i++) da[k++] = (rnd() & 1) ? bat[i + 4 - na] : 1;
		if (na >= 2) { da[k++] = M; da[k++] = K; } else da[k++] = K;
		k = 0;
		for (int i = 0; i < nb - 2; i++) db[k++] = (rnd() & 1) ? bat[i + 4 - nb] : 1;
		if (nb >= 2) { db[k++] = K; db[k++] = N; } else db[k++] = K;
		struct qd_model *m = qd_model_new(8, 13);
		Onnx__GraphProto *g = m->proto->graph;
		g->input = calloc(2, sizeof(*g->input));
		g->input[g->n_input++] = qd_value_info_new("a", QD_DT_FLOAT, da, na);
		g->input[g->n_input++] = qd_value_info_new("b", QD_DT_FLOAT, db, nb);
		g->output = calloc(1, sizeof(*g->output));
		g->output[g->n_output++] = qd_value_info_new("y", QD_DT_FLOAT, NULL, 0);
		onnx__tensor_shape_proto__free_unpacked(g->output[0]->type->tensor_type->shape, NULL);
		g->output[0]->type->tensor_type->shape = NULL;
		const char *in[] = { "a", "b" }, *out[] = { "y" };
		qd_graph_add_node(g, qd_node_new("MatMul", NULL, "mm", in, 2, out, 1));
		struct qd_tensor x[2];
		qd_tensor_alloc(&x[0], "a", QD_DT_FLOAT, na, da);
		qd_tensor_alloc(&x[1], "b", QD_DT_FLOAT, nb, db);
		for (int t = 0; t < 2; t++)
			for (int64_t i = 0; i < qd_tensor_count(&x[t]); i++) ((float *)x[t].data)[i] = rf();
		struct qd_engine *e = NULL;
		struct qd_err err = {0};
		struct qd_tensor *o = NULL;
		size_t no = 0;
		CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
		CHECK_EQ_INT(qd_engine_run(e, x, 2, &o, &no, NULL, &err), 0);
		if (no == 1) {
			/* naive: broadcast batch over the padded [2] batch dims */
			int64_t A4[4], B4[4];
			for (int i = 0; i < 4; i++) { A4[i] = 1; B4[i] = 1; }
			if (na >= 2) { for (int i = 0; i < na; i++) A4[4 - na + i] = da[i]; } else { A4[2] = 1; A4[3] = K; }
			if (nb >= 2) { for (int i = 0; i < nb; i++) B4[4 - nb + i] = db[i]; } else { B4[2] = K; B4[3] = 1; }
			int64_t b0 = QD_MAX(A4[0], B4[0]), b1 = QD_MAX(A4[1], B4[1]);
			int64_t MM = A4[2], NN = B4[3];
			int64_t cnt = b0 * b1 * MM * NN;
			CHECK_EQ_INT(qd_tensor_count(&o[0]), cnt);
			double worst = 0;
			for (int64_t p = 0; p < b0 && qd_tensor_count(&o[0]) == cnt; p++)
				for (int64_t q = 0; q < b1; q++)
					for (int64_t i = 0; i < MM; i++)
						for (int64_t j = 0; j < NN; j++) {
							double s = 0;
							for (int64_t kk = 0; kk < K; kk++) {
								int64_t ai = (((A4[0] > 1 ? p : 0) * A4[1] + (A4[1] > 1 ? q : 0)) * MM + i) * K + kk;
								int64_t bi = (((B4[0] > 1 ? p : 0) * B4[1] + (B4[1] > 1 ? q : 0)) * K + kk) * NN + j;
								s += (double)((float *)x[0].data)[ai] * ((float *)x[1].data)[bi];
							}
							float got = ((float *)o[0].data)[((p * b1 + q) * MM + i) * NN + j];
							worst = fmax(worst, fabs(got - s));
						}
			CHECKF(worst < 1e-5, "matmul ranks %d,%d err %g", na, nb, worst);
		}
		qd_tensors_release(o, no);
		qd_tensor_release(&x[0]);
		qd_tensor_release(&x[1]);
		qd_engine_free(e);
		qd_model_free(m);
	}
}

/* Fused Conv epilogue (engine/fuse_float.c, qd_epi_apply): the vectorised epilogue equals
 * its _ref twin on random step lists; a Conv -> Mul -> Add -> x*Clip(x+3,0,6)/6 -> Relu
 * chain and a Conv -> BatchNormalization -> HardSigmoid -> Sigmoid chain are fused at load
 * and give exactly the unfused result (a hook turns fusion off and sees all 12 tensors);
 * an intermediate that is a graph output stops the chain there. */
static void epi_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	(void)node; (void)t;
	(*(int *)ud)++;
}

static const char *bn_extra[2] = { "bm", "bv" };

/* hook with a want filter: names seen, and a copy of the Conv output "c" */
struct want_rec {
	const char *const *want;    /* NULL-terminated */
	char seen[64][8];
	int n_seen;
	float *c;
	int64_t c_n;
};

static bool want_fn(void *ud, const char *name)
{
	const struct want_rec *r = ud;
	for (int i = 0; r->want[i]; i++)
		if (!strcmp(r->want[i], name)) return true;
	return false;
}

static void want_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct want_rec *r = ud;
	(void)node;
	if (r->n_seen < 64) snprintf(r->seen[r->n_seen++], 8, "%s", t->name);
	if (!strcmp(t->name, "c") && !r->c) {
		r->c_n = qd_tensor_count(t);
		r->c = malloc((size_t)r->c_n * sizeof(float));
		memcpy(r->c, t->data, (size_t)r->c_n * sizeof(float));
	}
}

static bool rec_saw(const struct want_rec *r, const char *name)
{
	for (int i = 0; i < r->n_seen; i++)
		if (!strcmp(r->seen[i], name)) return true;
	return false;
}

static void add_f32(Onnx__GraphProto *g, const char *name, int nd, const int64_t *dims, const float *v, size_t n)
{
	qd_graph_add_initializer(g, qd_tensor_new(name, QD_DT_FLOAT, dims, (size_t)nd, v, n * sizeof(float)));
}

static struct qd_model *epi_model(bool a_out)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[4] = { 2, 3, 9, 11 }, yd[4] = { 2, 5, 9, 11 }, w1d[4] = { 4, 3, 3, 3 }, w2d[4] = { 5, 4, 1, 1 };
	int64_t b1d[1] = { 4 }, b2d[1] = { 5 }, one[1] = { 1 };
	g->input = calloc(1, sizeof(*g->input));
	g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, xd, 4);
	g->output = calloc(2, sizeof(*g->output));
	g->output[g->n_output++] = qd_value_info_new("y", QD_DT_FLOAT, yd, 4);
	if (a_out)
		g->output[g->n_output++] = qd_value_info_new("a", QD_DT_FLOAT, NULL, 0);
	float w1[4 * 27], w2[20], b1[4], b2[5];
	for (int i = 0; i < 108; i++) w1[i] = rf();
	for (int i = 0; i < 20; i++) w2[i] = rf();
	for (int i = 0; i < 4; i++) b1[i] = rf();
	for (int i = 0; i < 5; i++) b2[i] = rf();
	float s = 1.7f, t = 0.25f, three = 3.0f, zero = 0.0f, six = 6.0f;
	add_f32(g, "w1", 4, w1d, w1, 108);
	add_f32(g, "b1", 1, b1d, b1, 4);
	add_f32(g, "w2", 4, w2d, w2, 20);
	add_f32(g, "b2", 1, b2d, b2, 5);
	float bnv[4][5];
	for (int i = 0; i < 5; i++) {
		bnv[0][i] = 1.0f + rf();
		bnv[1][i] = rf();
		bnv[2][i] = rf();
		bnv[3][i] = 0.5f + rf() * 0.4f;
	}
	add_f32(g, "bs", 1, b2d, bnv[0], 5);
	add_f32(g, "bb", 1, b2d, bnv[1], 5);
	add_f32(g, "bm", 1, b2d, bnv[2], 5);
	add_f32(g, "bv", 1, b2d, bnv[3], 5);
	add_f32(g, "s", 1, one, &s, 1);
	add_f32(g, "t", 1, one, &t, 1);
	add_f32(g, "three", 0, NULL, &three, 1);
	add_f32(g, "zero", 0, NULL, &zero, 1);
	add_f32(g, "six", 0, NULL, &six, 1);
	static const char *nodes[][5] = {   /* op, out, in0, in1, in2 */
		{ "Conv", "c", "x", "w1", "b1" }, { "Mul", "m", "s", "c", NULL }, { "Add", "a", "m", "t", NULL },
		{ "Add", "a3", "a", "three", NULL }, { "Clip", "cl", "a3", "zero", "six" },
		{ "Mul", "h", "a", "cl", NULL }, { "Div", "d", "h", "six", NULL }, { "Relu", "r", "d", NULL, NULL },
		{ "Conv", "c2", "r", "w2", "b2" }, { "BatchNormalization", "bn", "c2", "bs", "bb" },
		{ "HardSigmoid", "hs", "bn", NULL, NULL },
		{ "Sigmoid", "y", "hs", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		const char *in[3] = { nodes[i][2], nodes[i][3], nodes[i][4] }, *out[1] = { nodes[i][1] };
		const char *in5[5] = { in[0], in[1], in[2], bn_extra[0], bn_extra[1] };
		int nin = nodes[i][4] ? 3 : nodes[i][3] ? 2 : 1;
		bool bn = !strcmp(nodes[i][0], "BatchNormalization");
		Onnx__NodeProto *n = qd_node_new(nodes[i][0], NULL, nodes[i][1], bn ? in5 : in, bn ? 5 : (size_t)nin, out, 1);
		if (i == 0) {
			int64_t pads[4] = { 1, 1, 1, 1 };
			qd_node_set_attr_ints(n, "pads", pads, 4);
		}
		if (!strcmp(nodes[i][0], "HardSigmoid"))
			qd_node_set_attr_float(n, "alpha", 0.3f);
		qd_graph_add_node(g, n);
	}
	return m;
}

static void test_conv_epilogue(void)
{
	for (int it = 0; it < 50; it++) {
		struct qd_epilogue ep = { 0 };
		ep.n = (int)ri(1, QD_EPI_MAX);
		for (int k = 0; k < ep.n; k++)
			ep.s[k] = (struct qd_epi_step){ (int)ri(QD_EPI_MUL, QD_EPI_XHSIG), 0.5f + rf(), -1.0f + rf(), 1.5f + rf() };
		ep.s[ri(0, ep.n - 1)].kind = QD_EPI_BN;
		int64_t N = ri(1, 3), C = ri(1, 9), sp = ri(1, 5000), n = N * C * sp;
		float *a = rand_buf(n), *b = malloc((size_t)n * sizeof(float)), *bs = rand_buf(C), *bh = rand_buf(C);
		for (int64_t i = 0; i < n; i++) a[i] *= 8.0f;
		memcpy(b, a, (size_t)n * sizeof(float));
		qd_epi_apply(&ep, a, N, C, sp, it % 2 ? bh : NULL, bs, bh);
		qd_epi_apply_ref(&ep, b, N, C, sp, it % 2 ? bh : NULL, bs, bh);
		CHECKF(rel_err(a, b, n) < 1e-6, "epilogue of %d steps on %lld values: rel err %g", ep.n,
		       (long long)n, rel_err(a, b, n));
		free(a);
		free(b);
		free(bs);
		free(bh);
	}
	/* split over threads (large enough to pass the 2^18 threshold): equal bit for bit */
	for (int it = 0; it < 4; it++) {
		struct qd_epilogue ep = { 0 };
		ep.n = 2 + it % 3;
		for (int k = 0; k < ep.n; k++)
			ep.s[k] = (struct qd_epi_step){ (int)ri(QD_EPI_MUL, QD_EPI_XHSIG), 0.5f + rf(), -1.0f + rf(), 1.5f + rf() };
		ep.s[it % ep.n].kind = QD_EPI_BN;
		int64_t N = 1 + it % 2, C = 37 + it, sp = 7001 + 13 * it, n = N * C * sp;
		float *a = rand_buf(n), *b = malloc((size_t)n * sizeof(float)), *bs = rand_buf(C), *bh = rand_buf(C);
		memcpy(b, a, (size_t)n * sizeof(float));
		qd_epi_apply(&ep, a, N, C, sp, it % 2 ? bh : NULL, bs, bh);
		qd_epi_apply_mt(&ep, b, N, C, sp, it % 2 ? bh : NULL, bs, bh, 2 + it % 2);
		CHECKF(!memcmp(a, b, (size_t)n * sizeof(float)), "threaded epilogue of %d steps on %lld values differs",
		       ep.n, (long long)n);
		free(a);
		free(b);
		free(bs);
		free(bh);
	}
	for (int a_out = 0; a_out < 2; a_out++) {
		struct qd_model *m = epi_model(a_out);
		int64_t xd[4] = { 2, 3, 9, 11 };
		struct qd_tensor x;
		qd_tensor_alloc(&x, "x", QD_DT_FLOAT, 4, xd);
		for (int64_t i = 0; i < 2 * 3 * 9 * 11; i++) ((float *)x.data)[i] = 3.0f * rf();
		struct qd_engine *e = NULL;
		struct qd_err err = {0};
		struct qd_tensor *o1 = NULL, *o2 = NULL;
		size_t n1 = 0, n2 = 0;
		CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
		if (!e) { qd_model_free(m); qd_tensor_release(&x); continue; }
		/* chain 1 fused into the first Conv, chain 2 into the second */
		struct qd_enode *c1 = &e->main->nodes[0], *c2 = &e->main->nodes[8];
		CHECK(c1->fused != NULL && c2->fused != NULL);
		CHECK_EQ_INT(c1->fused ? c1->fused->epi.n : -1, a_out ? 2 : 5);
		CHECK_EQ_INT(c2->fused ? c2->fused->epi.n : -1, 3);
		CHECK_EQ_INT(qd_engine_run(e, &x, 1, &o1, &n1, NULL, &err), 0);
		int seen = 0;
		qd_engine_set_hook(e, epi_hook, &seen);
		CHECK_EQ_INT(qd_engine_run(e, &x, 1, &o2, &n2, NULL, &err), 0);
		CHECK_EQ_INT(seen, 12);
		CHECK_EQ_INT((int)n1, 1 + a_out);
		for (size_t k = 0; n1 == n2 && k < n1; k++) {
			int64_t cnt = qd_tensor_count(&o1[k]);
			CHECK_EQ_INT((int)cnt, (int)qd_tensor_count(&o2[k]));
			CHECKF(cnt == qd_tensor_count(&o2[k]) && !memcmp(o1[k].data, o2[k].data, (size_t)cnt * 4),
			       "fused output %zu differs from the unfused one", k);
		}
		/* qd_engine_set_hook_want: the hook sees what it wants and the fusions that hide
		 * nothing wanted stay on. Cases: nothing wanted (both chains fused); the first
		 * Conv's own output (that chain split into Conv + its epilogue); a tensor inside
		 * the first chain (its original nodes run); and the Conv output of the
		 * unfiltered hook run as the reference for the split case. */
		static const char *const w_none[] = { NULL }, *const w_c[] = { "c", NULL },
			*const w_in[] = { "a3", NULL }, *const w_all[] = { "c", "m", "a", "a3", "cl", "h", "d", "r",
									  "c2", "bn", "hs", "y", NULL };
		const char *const *cases[] = { w_all, w_none, w_c, w_in };
		float *c_ref = NULL;
		int64_t c_ref_n = 0;
		for (int k = 0; k < 4; k++) {
			struct want_rec r = { .want = cases[k] };
			struct tensor_out { struct qd_tensor *o; size_t n; } out = { 0 };
			qd_engine_set_hook(e, want_hook, &r);
			if (k) qd_engine_set_hook_want(e, want_fn, &r);
			CHECK_EQ_INT(qd_engine_run(e, &x, 1, &out.o, &out.n, NULL, &err), 0);
			CHECK_EQ_INT((int)out.n, (int)n1);
			for (size_t j = 0; j < out.n && j < n1; j++) {
				int64_t cnt = qd_tensor_count(&o1[j]);
				CHECKF(cnt == qd_tensor_count(&out.o[j]) &&
				       rel_err(o1[j].data, out.o[j].data, cnt) <= (k == 2 ? 1e-6 : 0),
				       "want case %d: output %zu differs from the plain run", k, j);
			}
			for (int i = 0; cases[k][i]; i++)
				CHECKF(rec_saw(&r, cases[k][i]), "want case %d: hook did not see wanted '%s'", k,
				       cases[k][i]);
			CHECKF(rec_saw(&r, "y"), "want case %d: no 'y'", k);   /* graph output: always seen */
			if (k == 0) {
				CHECK_EQ_INT(r.n_seen, 12);
				c_ref = r.c;
				c_ref_n = r.c_n;
				r.c = NULL;
			} else if (k == 1) {
				CHECKF(!rec_saw(&r, "c") && !rec_saw(&r, "m") && !rec_saw(&r, "bn") &&
				       r.n_seen == (a_out ? 7 : 2),
				       "fused chains: %d tensors seen", r.n_seen);
			} else if (k == 2) {
				CHECKF(!rec_saw(&r, "m") && !rec_saw(&r, "bn") && r.n_seen == (a_out ? 8 : 3),
				       "split chain: %d tensors seen", r.n_seen);
				CHECKF(r.c && c_ref && r.c_n == c_ref_n && !memcmp(r.c, c_ref, (size_t)c_ref_n * 4),
				       "split chain: the Conv output differs from the unfused Conv's");
			} else {
				/* with "a" an output, the first chain ends at "a": "a3" is outside it */
				CHECKF(rec_saw(&r, "m") == !a_out && rec_saw(&r, "cl") && !rec_saw(&r, "bn"),
				       "chain with a wanted inner tensor: originals run");
			}
			free(r.c);
			qd_tensors_release(out.o, out.n);
		}
		free(c_ref);
		qd_engine_set_hook(e, NULL, NULL);
		qd_tensors_release(o1, n1);
		qd_tensors_release(o2, n2);
		qd_engine_free(e);
		qd_model_free(m);
		qd_tensor_release(&x);
	}
}

/* Depthwise conv with the specialised rows (kernel width 3 / 5, stride 1 / 2, dilation 1)
 * and the general ones, 2-D, against the reference, including rows narrower than the
 * kernel (no interior). */
static void test_depthwise(void)
{
	for (int it = 0; it < 120; it++) {
		struct qd_conv_geom g;
		memset(&g, 0, sizeof(g));
		g.nsp = 2;
		g.N = ri(1, 2);
		g.C = g.group = ri(1, 6);
		g.M = g.C * ri(1, 2);
		g.in[0] = g.k[0] = g.out[0] = g.stride[0] = g.dil[0] = 1;
		for (int i = 1; i < 3; i++) {
			g.k[i] = it % 4 < 2 ? 3 : it % 4 == 2 ? 5 : ri(1, 7);
			g.stride[i] = ri(1, 2);
			g.dil[i] = it % 5 == 4 ? 2 : 1;
			int64_t ek = (g.k[i] - 1) * g.dil[i] + 1;
			g.pad_b[i] = ri(0, ek - 1);
			g.pad_e[i] = ri(0, ek - 1);
			g.in[i] = ri(QD_MAX(1, ek - g.pad_b[i] - g.pad_e[i]), 40);
			g.out[i] = (g.in[i] + g.pad_b[i] + g.pad_e[i] - ek) / g.stride[i] + 1;
		}
		int64_t isz = g.in[1] * g.in[2], osz = g.out[1] * g.out[2], ksz = g.k[1] * g.k[2];
		float *x = rand_buf(g.N * g.C * isz), *w = rand_buf(g.M * ksz), *b = rand_buf(g.M);
		float *y1 = malloc((size_t)(g.N * g.M * osz) * sizeof(float)), *y2 = malloc((size_t)(g.N * g.M * osz) * sizeof(float));
		CHECK_EQ_INT(qd_conv_f32(&g, x, w, it % 3 ? b : NULL, y1, NULL), 0);
		qd_conv_f32_ref(&g, x, w, it % 3 ? b : NULL, y2);
		double e = rel_err(y1, y2, g.N * g.M * osz);
		CHECKF(e < 1e-5, "depthwise k %lldx%lld s %lld d %lld in %lldx%lld pads %lld/%lld: err %g",
		       (long long)g.k[1], (long long)g.k[2], (long long)g.stride[2], (long long)g.dil[2],
		       (long long)g.in[1], (long long)g.in[2], (long long)g.pad_b[2], (long long)g.pad_e[2], e);
		free(x); free(w); free(b); free(y1); free(y2);
	}
}

/* Depthwise split over threads (planes large enough to pass the 2^20 multiply-add
 * threshold): equal bit for bit to one thread, and within rounding of the reference. */
static void test_depthwise_threads(void)
{
	for (int it = 0; it < 6; it++) {
		struct qd_conv_geom g;
		memset(&g, 0, sizeof(g));
		g.nsp = 2;
		g.N = 1 + it % 2;
		g.C = g.group = 17 + it * 5;
		g.M = g.C;
		g.in[0] = g.k[0] = g.out[0] = g.stride[0] = g.dil[0] = 1;
		for (int i = 1; i < 3; i++) {
			g.k[i] = it % 3 == 2 ? 5 : 3;
			g.stride[i] = 1 + it % 2;
			g.dil[i] = 1;
			g.pad_b[i] = g.pad_e[i] = g.k[i] / 2;
			g.in[i] = 60 + it;
			g.out[i] = (g.in[i] + 2 * g.pad_b[i] - g.k[i]) / g.stride[i] + 1;
		}
		int64_t isz = g.in[1] * g.in[2], osz = g.out[1] * g.out[2], ksz = g.k[1] * g.k[2], ny = g.N * g.M * osz;
		float *x = rand_buf(g.N * g.C * isz), *w = rand_buf(g.M * ksz), *b = rand_buf(g.M);
		float *y1 = malloc((size_t)ny * sizeof(float)), *y2 = malloc((size_t)ny * sizeof(float));
		float *y3 = malloc((size_t)ny * sizeof(float));
		CHECK_EQ_INT(qd_conv_f32(&g, x, w, b, y1, NULL), 0);
		for (int t = 2; t <= 3; t++) {
			memset(y2, 0xff, (size_t)ny * sizeof(float));
			CHECK_EQ_INT(qd_conv_f32_mt(&g, x, w, b, y2, NULL, t), 0);
			CHECKF(!memcmp(y1, y2, (size_t)ny * sizeof(float)), "depthwise %d threads C%lld s%lld differ from 1 thread",
			       t, (long long)g.C, (long long)g.stride[2]);
		}
		qd_conv_f32_ref(&g, x, w, b, y3);
		double e = rel_err(y2, y3, ny);
		CHECKF(e < 1e-5, "depthwise threaded vs ref: err %g", e);
		free(x); free(w); free(b); free(y1); free(y2); free(y3);
	}
}

/* Softmax / LogSoftmax / LayerNormalization rows (lane sums) against their in-order _ref
 * twins on random lengths, including -inf entries and per-value / broadcast scale+bias. */
static void test_softmax_layernorm_rows(void)
{
	for (int it = 0; it < 200; it++) {
		int64_t n = it < 20 ? it + 1 : ri(1, 3000);
		float *x = rand_buf(n), *y1 = malloc((size_t)n * sizeof(float)), *y2 = malloc((size_t)n * sizeof(float));
		float *S = rand_buf(n), *B = rand_buf(n);
		for (int64_t i = 0; i < n; i++) x[i] = x[i] * 20.0f + (float)(it % 7);
		if (it % 9 == 1 && n > 2) x[ri(0, n - 1)] = -INFINITY;
		bool lg = it % 2;
		qd_softmax_row_f32(x, y1, n, lg);
		qd_softmax_row_f32_ref(x, y2, n, lg);
		double e = rel_err(y1, y2, n);
		CHECKF(e < 1e-6, "%s row of %lld: rel err %g", lg ? "logsoftmax" : "softmax", (long long)n, e);
		if (it % 9 != 1) {
			float m1, v1, m2, v2;   /* mean, 1/stddev: float ORT (MLAS) arithmetic vs double */
			int64_t ns = it % 3 ? n : 1, nb = it % 4 ? n : 1;
			qd_layer_norm_row_f32(x, y1, n, S, ns, it % 5 ? B : NULL, nb, 1e-5f, &m1, &v1);
			qd_layer_norm_row_f32_ref(x, y2, n, S, ns, it % 5 ? B : NULL, nb, 1e-5f, &m2, &v2);
			e = rel_err(y1, y2, n);
			CHECKF(e < 1e-5 && fabsf(m1 - m2) <= 1e-6f * (1 + fabsf(m2)) && fabsf(v1 - v2) <= 1e-5f * v2,
			       "layernorm row of %lld: rel err %g, mean %g vs %g, inv %g vs %g", (long long)n, e, m1, m2, v1, v2);
		}
		free(x); free(y1); free(y2); free(S); free(B);
	}
}

/* GELU (Div -> Erf -> Add -> Mul -> Mul) fused into one Erf at load: the kernel equals its
 * _ref twin, the fused model gives exactly the unfused result (a hook sees all 5 tensors),
 * and with the Mul form of the scaling as well. */
static void test_gelu_fusion(void)
{
	for (int it = 0; it < 20; it++) {
		int64_t n = ri(1, 5000);
		float *x = rand_buf(n), *y1 = malloc((size_t)n * sizeof(float)), *y2 = malloc((size_t)n * sizeof(float));
		for (int64_t i = 0; i < n; i++) x[i] *= 6.0f;
		struct qd_epi_step st = { it % 2 ? QD_EPI_GELU_MUL : QD_EPI_GELU_DIV, it % 2 ? 0.70710678f : 1.4142135f, 1.0f, 0.5f };
		qd_gelu_f32(&st, x, y1, n);
		qd_gelu_f32_ref(&st, x, y2, n);
		CHECKF(!memcmp(y1, y2, (size_t)n * sizeof(float)), "gelu kernel differs from its _ref twin (n %lld)", (long long)n);
		free(x); free(y1); free(y2);
	}
	for (int form = 0; form < 2; form++) {
		struct qd_model *m = qd_model_new(8, 13);
		Onnx__GraphProto *g = m->proto->graph;
		int64_t xd[2] = { 7, 301 };
		g->input = calloc(1, sizeof(*g->input));
		g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, xd, 2);
		g->output = calloc(1, sizeof(*g->output));
		g->output[g->n_output++] = qd_value_info_new("y", QD_DT_FLOAT, xd, 2);
		float sc = form ? 0.70710678f : 1.4142135f, one = 1.0f, half = 0.5f;
		add_f32(g, "sc", 0, NULL, &sc, 1);
		add_f32(g, "one", 0, NULL, &one, 1);
		add_f32(g, "half", 0, NULL, &half, 1);
		static const char *nodes[][4] = {
			{ "Div", "t", "x", "sc" }, { "Erf", "e", "t", NULL }, { "Add", "a", "e", "one" },
			{ "Mul", "m", "x", "a" }, { "Mul", "y", "m", "half" },
		};
		for (int i = 0; i < 5; i++) {
			const char *in[2] = { nodes[i][2], nodes[i][3] }, *out[1] = { nodes[i][1] };
			const char *op = i == 0 && form ? "Mul" : nodes[i][0];
			qd_graph_add_node(g, qd_node_new(op, NULL, nodes[i][1], in, nodes[i][3] ? 2 : 1, out, 1));
		}
		struct qd_tensor x;
		qd_tensor_alloc(&x, "x", QD_DT_FLOAT, 2, xd);
		for (int64_t i = 0; i < 7 * 301; i++) ((float *)x.data)[i] = 5.0f * rf();
		struct qd_engine *e = NULL;
		struct qd_err err = {0};
		struct qd_tensor *o1 = NULL, *o2 = NULL;
		size_t n1 = 0, n2 = 0;
		CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
		if (e) {
			CHECK(e->main->nodes[0].fused != NULL && e->main->nodes[4].fuse_skip);
			CHECK_EQ_INT(qd_engine_run(e, &x, 1, &o1, &n1, NULL, &err), 0);
			int seen = 0;
			qd_engine_set_hook(e, epi_hook, &seen);
			CHECK_EQ_INT(qd_engine_run(e, &x, 1, &o2, &n2, NULL, &err), 0);
			CHECK_EQ_INT(seen, 5);
			CHECK(n1 == 1 && n2 == 1 && !memcmp(o1[0].data, o2[0].data, 7 * 301 * sizeof(float)));
			qd_tensors_release(o1, n1);
			qd_tensors_release(o2, n2);
			qd_engine_free(e);
		}
		qd_model_free(m);
		qd_tensor_release(&x);
	}
}

/* 2-D MaxPool fast path (no indices) against the general loop (taken when Indices is
 * wanted) on random geometry: same values, also with NaN and -inf in the input. */
static void test_max_pool_fast(void)
{
	for (int it = 0; it < 60; it++) {
		int64_t k[2] = { ri(1, 4), ri(1, 4) }, st[2] = { ri(1, 3), ri(1, 3) }, pads[4];
		int64_t xd[4] = { ri(1, 2), ri(1, 3), ri(1, 19), ri(1, 23) };
		for (int i = 0; i < 2; i++) {
			pads[i] = ri(0, k[i] - 1);
			pads[i + 2] = ri(0, k[i] - 1);
			if (xd[2 + i] + pads[i] + pads[i + 2] < k[i]) xd[2 + i] = k[i];
		}
		struct qd_model *m = qd_model_new(8, 13);
		Onnx__GraphProto *g = m->proto->graph;
		g->input = calloc(1, sizeof(*g->input));
		g->input[g->n_input++] = qd_value_info_new("x", QD_DT_FLOAT, xd, 4);
		g->output = calloc(3, sizeof(*g->output));
		g->output[g->n_output++] = qd_value_info_new("y1", QD_DT_FLOAT, NULL, 0);
		g->output[g->n_output++] = qd_value_info_new("y2", QD_DT_FLOAT, NULL, 0);
		g->output[g->n_output++] = qd_value_info_new("ind", QD_DT_INT64, NULL, 0);
		const char *in[1] = { "x" }, *o1[1] = { "y1" }, *o2[2] = { "y2", "ind" };
		Onnx__NodeProto *n1 = qd_node_new("MaxPool", NULL, "p1", in, 1, o1, 1);
		Onnx__NodeProto *n2 = qd_node_new("MaxPool", NULL, "p2", in, 1, o2, 2);
		Onnx__NodeProto *nn[2] = { n1, n2 };
		for (int j = 0; j < 2; j++) {
			qd_node_set_attr_ints(nn[j], "kernel_shape", k, 2);
			qd_node_set_attr_ints(nn[j], "strides", st, 2);
			qd_node_set_attr_ints(nn[j], "pads", pads, 4);
			qd_graph_add_node(g, nn[j]);
		}
		struct qd_tensor x;
		qd_tensor_alloc(&x, "x", QD_DT_FLOAT, 4, xd);
		int64_t nx = qd_tensor_count(&x);
		for (int64_t i = 0; i < nx; i++) ((float *)x.data)[i] = rf();
		if (it % 4 == 3) { ((float *)x.data)[ri(0, nx - 1)] = NAN; ((float *)x.data)[ri(0, nx - 1)] = -INFINITY; }
		struct qd_engine *e = NULL;
		struct qd_err err = {0};
		struct qd_tensor *o = NULL;
		size_t no = 0;
		CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
		if (e && !qd_engine_run(e, &x, 1, &o, &no, NULL, &err) && no == 3) {
			int64_t c1 = qd_tensor_count(&o[0]);
			CHECKF(c1 == qd_tensor_count(&o[1]) && !memcmp(o[0].data, o[1].data, (size_t)c1 * sizeof(float)),
			       "maxpool fast path differs: k %lldx%lld s %lldx%lld in %lldx%lld", (long long)k[0], (long long)k[1],
			       (long long)st[0], (long long)st[1], (long long)xd[2], (long long)xd[3]);
		} else {
			CHECKF(0, "maxpool model failed: %s", err.msg);
		}
		qd_tensors_release(o, no);
		qd_engine_free(e);
		qd_model_free(m);
		qd_tensor_release(&x);
	}
}

int main(void)
{
	test_max_pool_fast();
	test_gelu_fusion();
	test_softmax_layernorm_rows();
	test_depthwise();
	test_depthwise_threads();
	test_conv_epilogue();
	test_matmul();
	test_unary_fast();
	test_gemm();
	test_conv();
	test_conv_transpose();
	test_broadcast();
	return qd_test_done("test_engine_kernels");
}
