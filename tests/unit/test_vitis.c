/* Vitis AI power-of-two math and the checker of its rules (passes/vitis.c): the formulas
 * of reference/inc_vitis_qnn.md §B.2, and qd_vitis_check_model rejecting a scale that is
 * not a power of two, a per-channel or asymmetric DPU tensor and a broken shift_cut. */
#include "qd_test.h"
#include <stdlib.h>
#include "passes/vitis.h"
#include "onnx/onnx.h"

static void add_io(Onnx__ValueInfoProto ***arr, size_t *n, Onnx__ValueInfoProto *v)
{
	*arr = realloc(*arr, (*n + 1) * sizeof **arr);
	(*arr)[(*n)++] = v;
}

static void init_f(struct qd_model *m, const char *name, const float *v, size_t n, bool vec)
{
	int64_t d[1] = {(int64_t)n};
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new(name, QD_DT_FLOAT, d, vec, v, n * sizeof *v));
}

static void init_zp(struct qd_model *m, const char *name, int dt)
{
	int8_t z = 0;
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new(name, dt, NULL, 0, &z, 1));
}

static void qdq(struct qd_model *m, const char *x, const char *s, const char *z, const char *out)
{
	char q[64];
	snprintf(q, sizeof q, "%s_q", x);
	const char *qi[3] = {x, s, z}, *qo[1] = {q}, *di[3] = {q, s, z}, *dout[1] = {out};
	qd_graph_add_node(m->proto->graph, qd_node_new("QuantizeLinear", NULL, q, qi, 3, qo, 1));
	qd_graph_add_node(m->proto->graph, qd_node_new("DequantizeLinear", NULL, out, di, 3, dout, 1));
}

/* x -> Q/DQ (scale sx, zero point type zdt) -> y */
static struct qd_model *pair_model(const float *sx, size_t n, int zdt)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t d[2] = {1, 4};
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, d, 2));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, d, 2));
	init_f(m, "sx", sx, n, n > 1);
	init_zp(m, "zx", zdt);
	qdq(m, "x", "sx", "zx", "y");
	return m;
}

/* x -> Q/DQ -> Conv (weight and bias through Q/DQ) -> Q/DQ -> y, positions given */
static struct qd_model *conv_model(int px, int pw, int pb, int po)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t dx[4] = {1, 1, 4, 4}, dw[4] = {1, 1, 1, 1}, db[1] = {1};
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, dx, 4));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, dx, 4));
	float w = 0.5f, b = 0.25f;
	g = m->proto->graph;
	qd_graph_add_initializer(g, qd_tensor_new("w", QD_DT_FLOAT, dw, 4, &w, 4));
	qd_graph_add_initializer(g, qd_tensor_new("b", QD_DT_FLOAT, db, 1, &b, 4));
	const char *sn[4] = {"sx", "sw", "sb", "so"};
	int pos[4] = {px, pw, pb, po};
	for (int i = 0; i < 4; i++) {
		float s = (float)qd_vitis_pos2scale(pos[i]);
		init_f(m, sn[i], &s, 1, false);
	}
	init_zp(m, "z", QD_DT_INT8);
	qdq(m, "x", "sx", "z", "xd");
	qdq(m, "w", "sw", "z", "wd");
	qdq(m, "b", "sb", "z", "bd");
	const char *ci[3] = {"xd", "wd", "bd"}, *co[1] = {"c"};
	qd_graph_add_node(g, qd_node_new("Conv", NULL, "conv", ci, 3, co, 1));
	qdq(m, "c", "so", "z", "y");
	return m;
}

int main(void)
{
	/* scale2pos: nearest power of two in the log domain, clamped */
	CHECK_EQ_INT(qd_vitis_scale2pos(1.0 / 64), 6);
	CHECK_EQ_INT(qd_vitis_scale2pos(0.0047), 8);          /* 2^-7.73: rounds to the smaller scale */
	CHECK_EQ_INT(qd_vitis_scale2pos(1e-300), 127);
	CHECK_EQ_INT(qd_vitis_scale2pos(1e300), -128);
	CHECK_NEAR(qd_vitis_pos2scale(3), 0.125, 0);
	float s;
	int32_t z;
	qd_vitis_scale_zp(-1, 3, 0, 255, false, &s, &z);      /* 4/255 -> 2^-6, zp = 0 + 1 * 64 */
	CHECK_NEAR(s, 1.0 / 64, 0);
	CHECK_EQ_INT(z, 64);
	qd_vitis_scale_zp(-2, 2, -127, 127, true, &s, &z);
	CHECK_NEAR(s, 1.0 / 64, 0);
	CHECK_EQ_INT(z, 0);
	qd_vitis_scale_zp(0.5, 3, -128, 127, false, &s, &z); /* 0 joins the range: [0, 3] */
	CHECK_NEAR(s, 1.0 / 64, 0);
	CHECK_EQ_INT(z, -128);
	qd_vitis_scale_zp(-300, 1, 0, 255, false, &s, &z);    /* scale rounded down: zp 300 clipped to 255 */
	CHECK_NEAR(s, 1.0, 0);
	CHECK_EQ_INT(z, 255);
	qd_vitis_scale_zp(0, 0, 0, 255, false, &s, &z);
	CHECK_NEAR(s, 1.0, 0);
	/* the DPU's non-overflow floor */
	CHECK_EQ_INT(qd_vitis_dpu_pos(-1, 1), 6);
	CHECK_EQ_INT(qd_vitis_dpu_pos(-0.5f, 0.1f), 8);       /* 0.5 / 128.5: floor(log2 257) */
	CHECK_EQ_INT(qd_vitis_dpu_pos(0, 0), 126);

	/* MinMSE's error sums: the one-pass kernel against its plain twin */
	{
		enum { N = 5000 };
		static float x[N];
		unsigned r = 12345;
		for (int i = 0; i < N; i++) {
			r = r * 1103515245u + 12345u;
			x[i] = ((float)(r >> 8) / (float)(1u << 24) - 0.3f) * 6.0f;   /* [-1.8, 4.2) */
		}
		x[7] = 40.0f;   /* an outlier to clip */
		static const struct { int pos0, zp, qmin, qmax; float lo, hi; } cs[] = {
			{ 4, 0, -127, 127, -INFINITY, INFINITY }, { 4, -38, -128, 127, -INFINITY, INFINITY },
			{ 2, 0, -128, 127, -2.0f, 3.0f }, { 120, 0, -128, 127, -INFINITY, INFINITY },
		};
		for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
			double a[QD_VITIS_POS_RANGE] = {0}, b[QD_VITIS_POS_RANGE] = {0};
			qd_vitis_sse(x, N, cs[c].pos0, cs[c].zp, cs[c].qmin, cs[c].qmax, cs[c].lo, cs[c].hi, a);
			qd_vitis_sse_ref(x, N, cs[c].pos0, cs[c].zp, cs[c].qmin, cs[c].qmax, cs[c].lo, cs[c].hi, b);
			for (int i = 0; i < QD_VITIS_POS_RANGE; i++)
				CHECKF(fabs(a[i] - b[i]) <= 1e-5 * fabs(b[i]) + 1e-30, "case %zu candidate %d: %.9g vs %.9g", c, i,
				       a[i], b[i]);
		}
		/* a finer scale cuts the rounding error (pos 1 -> 2: the range still covers the data);
		 * too fine a one clips (pos 8: +-0.5) */
		double e[QD_VITIS_POS_RANGE] = {0}, f[QD_VITIS_POS_RANGE] = {0};
		qd_vitis_sse_ref(x + 8, N - 8, 1, 0, -127, 127, -INFINITY, INFINITY, e);
		CHECK(e[1] < e[0]);
		qd_vitis_sse_ref(x, N, 4, 0, -127, 127, -INFINITY, INFINITY, f);
		CHECK(f[4] > f[0]);
	}

	/* the checker */
	struct qd_err err = {0};
	size_t n = 0;
	float good = 0.25f, bad = 0.3f, pc[2] = {0.25f, 0.5f};
	struct qd_model *m = pair_model(&good, 1, QD_DT_UINT8);
	CHECK(qd_vitis_check_model(m, false, &n, &err) == 0 && n == 2);   /* the Q and the DQ */
	CHECK(qd_vitis_check_model(m, true, NULL, &err) == -QD_EORT_REJECT && strstr(err.msg, "not int8"));
	qd_model_free(m);
	m = pair_model(&bad, 1, QD_DT_INT8);
	err = (struct qd_err){0};
	CHECKF(qd_vitis_check_model(m, false, NULL, &err) == -QD_EORT_REJECT && strstr(err.msg, "not a power of two"),
	       "%s", err.msg);
	qd_model_free(m);
	m = pair_model(pc, 2, QD_DT_INT8);
	CHECK(qd_vitis_check_model(m, false, NULL, &err) == 0);
	err = (struct qd_err){0};
	CHECK(qd_vitis_check_model(m, true, NULL, &err) == -QD_EORT_REJECT && strstr(err.msg, "per channel"));
	qd_model_free(m);
	/* shift_cut = wpos + ipos - opos: 7 + 4 - 5 = 6 holds, 7 + 4 - 20 = -9 breaks */
	m = conv_model(4, 7, 8, 5);
	err = (struct qd_err){0};
	CHECKF(qd_vitis_check_model(m, true, &n, &err) == 0 && n == 8, "%s", err.msg);
	qd_model_free(m);
	m = conv_model(4, 7, 8, 20);
	err = (struct qd_err){0};
	CHECKF(qd_vitis_check_model(m, true, NULL, &err) == -QD_EORT_REJECT && strstr(err.msg, "shift_cut -9"), "%s", err.msg);
	qd_model_free(m);
	/* shift_bias = wpos + ipos - bpos: 7 + 4 - 30 = -19 < min(0, 6 - 16) */
	m = conv_model(4, 7, 30, 5);
	err = (struct qd_err){0};
	CHECKF(qd_vitis_check_model(m, true, NULL, &err) == -QD_EORT_REJECT && strstr(err.msg, "shift_bias -19"), "%s", err.msg);
	qd_model_free(m);
	return qd_test_done("test_vitis");
}
