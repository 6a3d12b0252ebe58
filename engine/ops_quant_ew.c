/* engine/ops_quant_ew.c — com.microsoft quantized elementwise / pooling / concat /
 * softmax ops (QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu,
 * QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat, QLinearSoftmax) and the
 * float contrib ops found next to them (Gelu, FastGelu, SkipLayerNormalization).
 * Quantized results: compute in float32 on dequantized values, then
 * saturate(round_half_even(v / y_scale) + y_zero_point), as ONNX Runtime's CPU kernels do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/ops_quant.h"

/* Scalar scale / zero point of a quantized operand at inputs (si, zi); zi may be absent. */
struct qp {
	float s;
	int32_t z;
};

static int get_qp(struct qd_ctx *c, int si, int zi, int dt, const char *what, struct qp *p)
{
	char sname[64], zname[64];
	snprintf(sname, sizeof(sname), "%s_scale", what);
	snprintf(zname, sizeof(zname), "%s_zero_point", what);
	int rc = qd_q_scalar_f32(c, si, sname, &p->s);
	if (!rc)
		rc = qd_q_scalar_zp(c, zi, zname, dt, &p->z);
	return rc;
}

static int need_q8(struct qd_ctx *c, const struct qd_tensor *t)
{
	if (!qd_is_q8(t->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "dtype %s not supported (uint8/int8 only)",
				   qd_dtype_name(t->dtype));
	return 0;
}

/* ---- QLinearAdd / QLinearMul ------------------------------------------------------- */

struct qbin {
	const void *a, *b;
	void *y;
	int dt;
	bool mul;
	float ra, rb, m;
	int32_t az, bz, yz, lo, hi;
};

static void qbin_run(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr, int64_t count)
{
	const struct qbin *q = ud;
	for (int64_t i = 0; i < count; i++) {
		int32_t av = qd_q_load(q->a, q->dt, iofs[0] + i * istr[0]) - q->az;
		int32_t bv = qd_q_load(q->b, q->dt, iofs[1] + i * istr[1]) - q->bz;
		float v = q->mul ? (float)av * (float)bv * q->m : q->ra * (float)av + q->rb * (float)bv;
		qd_q_store(q->y, q->dt, oofs + i, qd_q_round_sat(v, q->yz, q->lo, q->hi));
	}
}

static int qlinear_binary(struct qd_ctx *c, bool mul)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 3);
	struct qp pa, pb, py;
	struct qbin q = { .mul = mul };
	int64_t od[QD_MAX_DIMS], st[2][QD_MAX_DIMS];
	int nd, rc;
	char s1[96], s2[96];
	if (!a || !b)
		return -c->err->code;
	if ((rc = need_q8(c, a)))
		return rc;
	if (b->dtype != a->dtype)
		return qd_ctx_fail(c, QD_EMODEL, "A and B dtypes differ (%s, %s)", qd_dtype_name(a->dtype),
				   qd_dtype_name(b->dtype));
	if ((rc = get_qp(c, 1, 2, a->dtype, "A", &pa)) || (rc = get_qp(c, 4, 5, a->dtype, "B", &pb)) ||
	    (rc = get_qp(c, 6, 7, a->dtype, "C", &py)))
		return rc;
	if (qd_broadcast_shape(a->ndim, a->dims, b->ndim, b->dims, &nd, od))
		return qd_ctx_fail(c, QD_ESHAPE, "shapes %s and %s do not broadcast",
				   qd_dims_str(a->ndim, a->dims, s1, sizeof(s1)),
				   qd_dims_str(b->ndim, b->dims, s2, sizeof(s2)));
	struct qd_tensor *y = qd_ctx_out(c, 0, a->dtype, nd, od);
	if (!y)
		return -c->err->code;
	qd_broadcast_strides(a->ndim, a->dims, nd, od, st[0]);
	qd_broadcast_strides(b->ndim, b->dims, nd, od, st[1]);
	q.a = a->data; q.b = b->data; q.y = y->data; q.dt = a->dtype;
	q.ra = pa.s / py.s; q.rb = pb.s / py.s; q.m = pa.s * pb.s / py.s;
	q.az = pa.z; q.bz = pb.z; q.yz = py.z;
	qd_q_range(a->dtype, &q.lo, &q.hi);
	qd_broadcast_for_mt(2, nd, od, st, qbin_run, &q);
	return 0;
}

int qd_op_qlinear_add(struct qd_ctx *c) { return qlinear_binary(c, false); }
int qd_op_qlinear_mul(struct qd_ctx *c) { return qlinear_binary(c, true); }

/* ---- lookup-table unary ops -------------------------------------------------------- */

typedef float (*unary_fn)(float x, float alpha);
static float f_sigmoid(float x, float alpha) { (void)alpha; return 1.0f / (1.0f + expf(-x)); }
static float f_leaky(float x, float alpha) { return x >= 0.0f ? x : alpha * x; }

/* y = lut[x] over a range of elements (split over the engine's threads). */
struct lut_mt { const uint8_t *x, *lut; uint8_t *y; };

static void lut_chunk(void *ctx, int64_t lo, int64_t hi)
{
	const struct lut_mt *l = ctx;
	qd_lut8(l->x + lo, hi - lo, l->lut, l->y + lo);
}

static int qlinear_lut(struct qd_ctx *c, unary_fn fn, float alpha)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	struct qp px, py;
	uint8_t lut[256];
	int32_t lo = 0, hi = 0;
	int rc;
	if (!x)
		return -c->err->code;
	if ((rc = need_q8(c, x)) || (rc = get_qp(c, 1, 2, x->dtype, "X", &px)) ||
	    (rc = get_qp(c, 3, 4, x->dtype, "Y", &py)))
		return rc;
	qd_q_range(x->dtype, &lo, &hi);
	for (int i = 0; i < 256; i++) {
		int32_t code = x->dtype == QD_DT_INT8 ? (int32_t)(int8_t)i : i;
		float v = fn(px.s * (float)(code - px.z), alpha);
		lut[i] = (uint8_t)qd_q_round_sat(v / py.s, py.z, lo, hi);
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	struct lut_mt l = { x->data, lut, y->data };
	qd_parallel_for(qd_tensor_count(x), 1 << 16, lut_chunk, &l);
	return 0;
}

int qd_op_qlinear_sigmoid(struct qd_ctx *c) { return qlinear_lut(c, f_sigmoid, 0.0f); }
int qd_op_qlinear_leaky_relu(struct qd_ctx *c)
{
	return qlinear_lut(c, f_leaky, qd_node_attr_float(c->n->proto, "alpha", 0.01f));
}

/* ---- Lut8 (internal: a fused DQ -> elementwise -> Q region) ------------------------- */

int qd_op_lut8(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *z = qd_ctx_in(c, 1);
	const uint8_t *lut = c->n->priv;
	if (!x || !z)
		return -c->err->code;
	if (!lut || !qd_is_q8(x->dtype))
		return qd_ctx_fail(c, QD_EINVAL, "lookup table missing or input not 8-bit");
	int64_t one = 1;
	bool grow = lut[256] && x->ndim == 0;   /* a [1] constant in the region */
	struct qd_tensor *y = qd_ctx_out(c, 0, z->dtype, grow ? 1 : x->ndim, grow ? &one : x->dims);
	if (!y)
		return -c->err->code;
	struct lut_mt l = { x->data, lut, y->data };
	qd_parallel_for(qd_tensor_count(x), 1 << 16, lut_chunk, &l);
	return 0;
}

/* ---- QLinearAveragePool / QLinearGlobalAveragePool ---------------------------------- */

struct pool_geom {
	int nsp;
	int64_t N, C;
	int64_t in[3], k[3], out[3], stride[3], pad_b[3], pad_e[3];
	bool cl;            /* channels last */
	bool incl_pad;
};

static int pool_geom(struct qd_ctx *c, const struct qd_tensor *x, bool global, struct pool_geom *g)
{
	const Onnx__NodeProto *np = c->n->proto;
	const int64_t *v;
	long n;
	memset(g, 0, sizeof(*g));
	g->cl = qd_node_attr_int(np, "channels_last", 0) != 0;
	if (x->ndim < 3 || x->ndim > 5)
		return qd_ctx_fail(c, QD_ESHAPE, "pool input must have 1-3 spatial dims, got rank %d", x->ndim);
	g->nsp = x->ndim - 2;
	g->N = x->dims[0];
	g->C = g->cl ? x->dims[x->ndim - 1] : x->dims[1];
	for (int i = 0; i < 3; i++) {
		g->in[i] = g->k[i] = g->out[i] = g->stride[i] = 1;
		g->pad_b[i] = g->pad_e[i] = 0;
	}
	for (int i = 0; i < g->nsp; i++)
		g->in[i] = x->dims[(g->cl ? 1 : 2) + i];
	if (global) {
		for (int i = 0; i < g->nsp; i++) g->k[i] = g->in[i];
		return 0;
	}
	g->incl_pad = qd_node_attr_int(np, "count_include_pad", 0) != 0;
	bool ceil_mode = qd_node_attr_int(np, "ceil_mode", 0) != 0;
	if ((n = qd_node_attr_ints(np, "kernel_shape", &v)) != g->nsp)
		return qd_ctx_fail(c, QD_EMODEL, "attribute 'kernel_shape' must have %d values", g->nsp);
	for (int i = 0; i < g->nsp; i++) g->k[i] = v[i];
	if ((n = qd_node_attr_ints(np, "strides", &v)) >= 0) {
		if (n != g->nsp) return qd_ctx_fail(c, QD_EMODEL, "attribute 'strides' has %ld values", n);
		for (int i = 0; i < g->nsp; i++) g->stride[i] = v[i];
	}
	if ((n = qd_node_attr_ints(np, "pads", &v)) >= 0) {
		if (n != 2 * g->nsp) return qd_ctx_fail(c, QD_EMODEL, "attribute 'pads' has %ld values", n);
		for (int i = 0; i < g->nsp; i++) { g->pad_b[i] = v[i]; g->pad_e[i] = v[g->nsp + i]; }
	}
	if ((n = qd_node_attr_ints(np, "dilations", &v)) >= 0)
		for (int i = 0; i < n; i++)
			if (v[i] != 1) return qd_ctx_fail(c, QD_EUNSUPPORTED, "attribute 'dilations' != 1 not supported");
	const char *ap = qd_node_attr_string(np, "auto_pad", "NOTSET");
	for (int i = 0; i < g->nsp; i++) {
		if (g->k[i] < 1 || g->stride[i] < 1 || g->pad_b[i] < 0 || g->pad_e[i] < 0)
			return qd_ctx_fail(c, QD_EMODEL, "kernel, strides must be >= 1 and pads >= 0");
		if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
			int64_t o = (g->in[i] + g->stride[i] - 1) / g->stride[i];
			int64_t tot = QD_MAX((int64_t)0, (o - 1) * g->stride[i] + g->k[i] - g->in[i]);
			g->pad_b[i] = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
			g->pad_e[i] = tot - g->pad_b[i];
			g->out[i] = o;
			continue;
		}
		if (!strcmp(ap, "VALID")) {
			g->pad_b[i] = g->pad_e[i] = 0;
		} else if (strcmp(ap, "NOTSET")) {
			return qd_ctx_fail(c, QD_EMODEL, "attribute 'auto_pad' value '%s' not supported", ap);
		}
		int64_t span = g->in[i] + g->pad_b[i] + g->pad_e[i] - g->k[i];
		if (span < 0)
			return qd_ctx_fail(c, QD_ESHAPE, "kernel larger than the padded input on axis %d", i);
		g->out[i] = (ceil_mode ? (span + g->stride[i] - 1) / g->stride[i] : span / g->stride[i]) + 1;
		if (ceil_mode && (g->out[i] - 1) * g->stride[i] >= g->in[i] + g->pad_b[i])
			g->out[i]--;
	}
	return 0;
}

static int qlinear_pool(struct qd_ctx *c, bool global)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	struct qp px, py;
	struct pool_geom g;
	int32_t lo = 0, hi = 0;
	int rc;
	if (!x)
		return -c->err->code;
	if ((rc = need_q8(c, x)) || (rc = get_qp(c, 1, 2, x->dtype, "x", &px)) ||
	    (rc = get_qp(c, 3, 4, x->dtype, "y", &py)) || (rc = pool_geom(c, x, global, &g)))
		return rc;
	qd_q_range(x->dtype, &lo, &hi);
	int64_t dims[5];
	dims[0] = g.N;
	dims[g.cl ? x->ndim - 1 : 1] = g.C;
	for (int i = 0; i < g.nsp; i++)
		dims[(g.cl ? 1 : 2) + i] = g.out[i];
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, dims);
	if (!y)
		return -c->err->code;
	int64_t isz = g.in[0] * g.in[1] * g.in[2], osz = g.out[0] * g.out[1] * g.out[2];
	/* element (n, ch, spatial s): NCHW n*C*isz + ch*isz + s; NHWC (n*isz + s)*C + ch */
	for (int64_t n = 0; n < g.N; n++)
		for (int64_t ch = 0; ch < g.C; ch++)
			for (int64_t o = 0; o < osz; o++) {
				int64_t oi[3] = { o / (g.out[1] * g.out[2]), (o / g.out[2]) % g.out[1], o % g.out[2] };
				int64_t s0[3], s1[3], cnt_pad = 1, cnt = 0, sum = 0;
				for (int d = 0; d < 3; d++) {
					int64_t st = oi[d] * g.stride[d] - g.pad_b[d];
					int64_t en = QD_MIN(st + g.k[d], g.in[d] + g.pad_e[d]);
					cnt_pad *= en - st;
					s0[d] = QD_MAX(st, (int64_t)0);
					s1[d] = QD_MIN(en, g.in[d]);
				}
				for (int64_t i0 = s0[0]; i0 < s1[0]; i0++)
					for (int64_t i1 = s0[1]; i1 < s1[1]; i1++)
						for (int64_t i2 = s0[2]; i2 < s1[2]; i2++) {
							int64_t s = (i0 * g.in[1] + i1) * g.in[2] + i2;
							int64_t idx = g.cl ? (n * isz + s) * g.C + ch : (n * g.C + ch) * isz + s;
							sum += qd_q_load(x->data, x->dtype, idx) - px.z;
							cnt++;
						}
				int64_t div = g.incl_pad ? cnt_pad : cnt;
				float v = div ? (float)sum / (float)div * px.s / py.s : 0.0f;
				int64_t oidx = g.cl ? (n * osz + o) * g.C + ch : (n * g.C + ch) * osz + o;
				qd_q_store(y->data, x->dtype, oidx, qd_q_round_sat(v, py.z, lo, hi));
			}
	return 0;
}

int qd_op_qlinear_average_pool(struct qd_ctx *c) { return qlinear_pool(c, false); }
int qd_op_qlinear_global_average_pool(struct qd_ctx *c) { return qlinear_pool(c, true); }

/* ---- QLinearConcat ----------------------------------------------------------------- */

int qd_op_qlinear_concat(struct qd_ctx *c)
{
	struct qp py;
	int32_t lo = 0, hi = 0;
	int rc;
	const struct qd_tensor *yz = qd_ctx_in(c, 1);
	if (!yz)
		return -c->err->code;
	int dt = yz->dtype;
	if ((rc = need_q8(c, yz)) || (rc = get_qp(c, 0, 1, dt, "Y", &py)))
		return rc;
	if (c->n_in < 5 || (c->n_in - 2) % 3)
		return qd_ctx_fail(c, QD_EMODEL, "inputs must be Y_scale, Y_zero_point, then (tensor, scale, zero point) triples");
	int nt = (c->n_in - 2) / 3;
	const struct qd_tensor *x0 = qd_ctx_in(c, 2);
	if (!x0)
		return -c->err->code;
	int64_t ax64 = qd_node_attr_int(c->n->proto, "axis", INT64_MIN);
	int axis = ax64 == INT64_MIN ? -1 : qd_axis(ax64, x0->ndim);
	if (axis < 0)
		return qd_ctx_fail(c, QD_EMODEL, "attribute 'axis' missing or out of range for rank %d", x0->ndim);
	int64_t dims[QD_MAX_DIMS];
	memcpy(dims, x0->dims, (size_t)x0->ndim * sizeof(int64_t));
	dims[axis] = 0;
	for (int t = 0; t < nt; t++) {
		const struct qd_tensor *x = qd_ctx_in(c, 2 + 3 * t);
		if (!x)
			return -c->err->code;
		bool ok = x->ndim == x0->ndim && x->dtype == dt;
		for (int d = 0; ok && d < x->ndim; d++)
			ok = d == axis || x->dims[d] == x0->dims[d];
		if (!ok)
			return qd_ctx_fail(c, QD_ESHAPE, "input %d does not match input 0 (dtype or dims off the axis)", t);
		dims[axis] += x->dims[axis];
	}
	qd_q_range(dt, &lo, &hi);
	struct qd_tensor *y = qd_ctx_out(c, 0, dt, x0->ndim, dims);
	if (!y)
		return -c->err->code;
	int64_t outer = qd_dims_count(axis, dims), inner = qd_dims_count(x0->ndim - axis - 1, dims + axis + 1);
	int64_t ofs = 0;
	uint8_t *yd = y->data;
	for (int t = 0; t < nt; t++) {
		const struct qd_tensor *x = c->in[2 + 3 * t];
		struct qp px;
		uint8_t lut[256];
		if ((rc = get_qp(c, 3 + 3 * t, 4 + 3 * t, dt, "input", &px)))
			return rc;
		for (int i = 0; i < 256; i++) {
			int32_t code = dt == QD_DT_INT8 ? (int32_t)(int8_t)i : i;
			lut[i] = (px.s == py.s && px.z == py.z) ? (uint8_t)i :
				(uint8_t)qd_q_round_sat(px.s * (float)(code - px.z) / py.s, py.z, lo, hi);
		}
		int64_t run = x->dims[axis] * inner;
		const uint8_t *xd = x->data;
		for (int64_t o = 0; o < outer; o++)
			for (int64_t i = 0; i < run; i++)
				yd[o * dims[axis] * inner + ofs + i] = lut[xd[o * run + i]];
		ofs += run;
	}
	return 0;
}

/* ---- QLinearSoftmax ---------------------------------------------------------------- */

int qd_op_qlinear_softmax(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	struct qp px, py;
	int32_t lo = 0, hi = 0;
	int rc;
	if (!x)
		return -c->err->code;
	if ((rc = need_q8(c, x)) || (rc = get_qp(c, 1, 2, x->dtype, "x", &px)) ||
	    (rc = get_qp(c, 3, 4, x->dtype, "y", &py)))
		return rc;
	int64_t opset = qd_node_attr_int(c->n->proto, "opset", 0);
	if (opset <= 0)
		return qd_ctx_fail(c, QD_EMODEL, "attribute 'opset' is required");
	int axis = qd_axis(qd_node_attr_int(c->n->proto, "axis", opset < 13 ? 1 : -1), x->ndim);
	if (axis < 0)
		return qd_ctx_fail(c, QD_EMODEL, "attribute 'axis' out of range for rank %d", x->ndim);
	qd_q_range(x->dtype, &lo, &hi);
	/* rows: opset < 13 flattens [axis:] into one row; else the single axis */
	int64_t outer = qd_dims_count(axis, x->dims), D, inner;
	if (opset < 13) {
		D = qd_dims_count(x->ndim - axis, x->dims + axis);
		inner = 1;
	} else {
		D = x->dims[axis];
		inner = qd_dims_count(x->ndim - axis - 1, x->dims + axis + 1);
	}
	struct qd_tensor *y = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	float *e = malloc((size_t)(D ? D : 1) * sizeof(float));
	if (!e)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	for (int64_t o = 0; o < outer; o++)
		for (int64_t in = 0; in < inner; in++) {
			int64_t base = o * D * inner + in;
			int32_t mx = INT32_MIN;
			for (int64_t d = 0; d < D; d++)
				mx = QD_MAX(mx, qd_q_load(x->data, x->dtype, base + d * inner));
			float sum = 0.0f;
			for (int64_t d = 0; d < D; d++) {
				e[d] = expf((float)(qd_q_load(x->data, x->dtype, base + d * inner) - mx) * px.s);
				sum += e[d];
			}
			for (int64_t d = 0; d < D; d++)
				qd_q_store(y->data, x->dtype, base + d * inner,
					   qd_q_round_sat(e[d] / sum / py.s, py.z, lo, hi));
		}
	free(e);
	return 0;
}

/* ---- Gelu / FastGelu / SkipLayerNormalization (float32) ---------------------------- */

int qd_op_gelu(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x)
		return -c->err->code;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	const float *xd = x->data;
	float *yd = y->data;
	int64_t n = qd_tensor_count(x);
	for (int64_t i = 0; i < n; i++)
		yd[i] = 0.5f * xd[i] * (1.0f + erff(xd[i] * (float)M_SQRT1_2));
	return 0;
}

/* Optional input i as a float32 vector of n values (the last dim), or NULL. */
static int last_dim_vec(struct qd_ctx *c, int i, int64_t n, const char *what, const float **out)
{
	const struct qd_tensor *t = i < c->n_in ? c->in[i] : NULL;
	*out = NULL;
	if (!t)
		return 0;
	if (t->dtype != QD_DT_FLOAT || qd_tensor_count(t) != n)
		return qd_ctx_fail(c, QD_ESHAPE, "%s must be float32 with %lld elements", what, (long long)n);
	*out = t->data;
	return 0;
}

int qd_op_fast_gelu(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	const float *bias;
	int rc;
	if (!x)
		return -c->err->code;
	int64_t H = x->ndim ? x->dims[x->ndim - 1] : 1, n = qd_tensor_count(x);
	if ((rc = last_dim_vec(c, 1, H, "bias", &bias)))
		return rc;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	const float *xd = x->data;
	float *yd = y->data;
	for (int64_t i = 0; i < n; i++) {
		float v = bias ? xd[i] + bias[i % H] : xd[i];
		yd[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
	}
	return 0;
}

int qd_op_skip_layer_norm(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *skip = qd_ctx_in(c, 1), *gt = qd_ctx_in(c, 2);
	const float *gamma, *beta, *bias;
	int rc;
	if (!x || !skip || !gt)
		return -c->err->code;
	if (x->ndim < 2 || x->dtype != QD_DT_FLOAT || skip->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input and skip must be float32 with rank >= 2");
	int64_t H = x->dims[x->ndim - 1], n = qd_tensor_count(x), rows = H ? n / H : 0;
	int64_t ns = qd_tensor_count(skip);
	if (!ns || skip->dims[skip->ndim - 1] != H || n % ns)
		return qd_ctx_fail(c, QD_ESHAPE, "skip shape does not match the input");
	if ((rc = last_dim_vec(c, 2, H, "gamma", &gamma)) || (rc = last_dim_vec(c, 3, H, "beta", &beta)) ||
	    (rc = last_dim_vec(c, 4, H, "bias", &bias)))
		return rc;
	float eps = qd_node_attr_float(c->n->proto, "epsilon", 1e-12f);
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	int64_t sd[QD_MAX_DIMS];
	memcpy(sd, x->dims, (size_t)x->ndim * sizeof(int64_t));
	sd[x->ndim - 1] = 1;
	struct qd_tensor *mean = NULL, *istd = NULL, *sum = NULL;
	if (qd_ctx_wants(c, 1) && !(mean = qd_ctx_out(c, 1, QD_DT_FLOAT, x->ndim, sd)))
		return -c->err->code;
	if (qd_ctx_wants(c, 2) && !(istd = qd_ctx_out(c, 2, QD_DT_FLOAT, x->ndim, sd)))
		return -c->err->code;
	if (qd_ctx_wants(c, 3) && !(sum = qd_ctx_out(c, 3, QD_DT_FLOAT, x->ndim, x->dims)))
		return -c->err->code;
	const float *xd = x->data, *sk = skip->data;
	float *yd = y->data;
	for (int64_t r = 0; r < rows; r++) {
		float *v = yd + r * H;
		double s = 0, s2 = 0;
		for (int64_t h = 0; h < H; h++) {
			int64_t i = r * H + h;
			v[h] = xd[i] + sk[i % ns] + (bias ? bias[h] : 0.0f);
			s += v[h];
		}
		if (sum)
			memcpy((float *)sum->data + r * H, v, (size_t)H * sizeof(float));
		double mu = s / (double)H;
		for (int64_t h = 0; h < H; h++)
			s2 += (v[h] - mu) * (v[h] - mu);
		double inv = 1.0 / sqrt(s2 / (double)H + eps);
		for (int64_t h = 0; h < H; h++)
			v[h] = (float)((v[h] - mu) * inv) * gamma[h] + (beta ? beta[h] : 0.0f);
		if (mean)
			((float *)mean->data)[r] = (float)mu;
		if (istd)
			((float *)istd->data)[r] = (float)inv;
	}
	return 0;
}
