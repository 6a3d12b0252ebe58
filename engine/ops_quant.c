/* engine/ops_quant.c — QuantizeLinear / DequantizeLinear (ai.onnx 10-21 and com.microsoft:
 * per-tensor, per-axis, block-wise; 8/16-bit, int32 for DQ), DynamicQuantizeLinear, and
 * the scale / zero-point / MatMul-shape helpers the other ops_quant*.c files share.
 * Quantize: saturate(round_half_even(x / scale) + zero_point), in float32 like ORT. */
#include <stdlib.h>
#include <string.h>
#include "engine/ops_quant.h"

/* ---- scale / zero-point inputs ------------------------------------------------------ */

int qd_q_scalar_f32(struct qd_ctx *c, int i, const char *what, float *out)
{
	const struct qd_tensor *t = i < c->n_in ? c->in[i] : NULL;
	if (!t)
		return qd_ctx_fail(c, QD_EMODEL, "missing input '%s'", what);
	if (t->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "%s: dtype %s not supported (float32 only)", what,
				   qd_dtype_name(t->dtype));
	if (qd_tensor_count(t) != 1)
		return qd_ctx_fail(c, QD_ESHAPE, "%s must be a scalar, got %lld elements", what,
				   (long long)qd_tensor_count(t));
	*out = *(const float *)t->data;
	return 0;
}

int qd_q_scalar_zp(struct qd_ctx *c, int i, const char *what, int dt, int32_t *out)
{
	const struct qd_tensor *t = i < c->n_in ? c->in[i] : NULL;
	*out = 0;
	if (!t)
		return 0;
	if (t->dtype != dt)
		return qd_ctx_fail(c, QD_EMODEL, "%s: dtype %s, expected %s", what,
				   qd_dtype_name(t->dtype), qd_dtype_name(dt));
	if (qd_tensor_count(t) != 1)
		return qd_ctx_fail(c, QD_ESHAPE, "%s must be a scalar, got %lld elements", what,
				   (long long)qd_tensor_count(t));
	*out = qd_q_load(t->data, dt, 0);
	return 0;
}

int qd_q_vec_f32(struct qd_ctx *c, int i, const char *what, int64_t n, float **v, bool *per)
{
	const struct qd_tensor *t = i < c->n_in ? c->in[i] : NULL;
	*v = NULL;
	if (!t)
		return qd_ctx_fail(c, QD_EMODEL, "missing input '%s'", what);
	if (t->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "%s: dtype %s not supported (float32 only)", what,
				   qd_dtype_name(t->dtype));
	int64_t k = qd_tensor_count(t);
	if (k != 1 && k != n)
		return qd_ctx_fail(c, QD_ESHAPE, "%s has %lld elements, expected 1 or %lld", what,
				   (long long)k, (long long)n);
	*v = malloc((size_t)(k ? k : 1) * sizeof(float));
	if (!*v)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	memcpy(*v, t->data, (size_t)k * sizeof(float));
	*per = k > 1;
	return 0;
}

int qd_q_vec_zp(struct qd_ctx *c, int i, const char *what, int dt, int64_t n, int32_t **v,
		bool *per)
{
	const struct qd_tensor *t = i < c->n_in ? c->in[i] : NULL;
	int64_t k = t ? qd_tensor_count(t) : 1;
	*v = NULL;
	*per = false;
	if (t && t->dtype != dt)
		return qd_ctx_fail(c, QD_EMODEL, "%s: dtype %s, expected %s", what,
				   qd_dtype_name(t->dtype), qd_dtype_name(dt));
	if (k != 1 && k != n)
		return qd_ctx_fail(c, QD_ESHAPE, "%s has %lld elements, expected 1 or %lld", what,
				   (long long)k, (long long)n);
	*v = calloc((size_t)k, sizeof(int32_t));
	if (!*v)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	for (int64_t j = 0; t && j < k; j++)
		(*v)[j] = qd_q_load(t->data, dt, j);
	*per = k > 1;
	return 0;
}

/* ---- batched MatMul geometry ------------------------------------------------------- */

int qd_mm_geom(struct qd_ctx *c, int a_ndim, const int64_t *a_dims, int b_ndim,
	       const int64_t *b_dims, struct qd_mm_geom *g)
{
	int64_t ad[QD_MAX_DIMS], bd[QD_MAX_DIMS];
	int an = a_ndim, bn = b_ndim;
	char s1[96], s2[96];
	memset(g, 0, sizeof(*g));
	if (an < 1 || bn < 1)
		return qd_ctx_fail(c, QD_ESHAPE, "matmul inputs must have rank >= 1");
	/* 1-D operands: A [K] -> [1, K], B [K] -> [K, 1]; the extra dim is dropped later */
	if (an == 1) { ad[0] = 1; ad[1] = a_dims[0]; an = 2; } else memcpy(ad, a_dims, an * sizeof(int64_t));
	if (bn == 1) { bd[0] = b_dims[0]; bd[1] = 1; bn = 2; } else memcpy(bd, b_dims, bn * sizeof(int64_t));
	if (ad[an - 1] != bd[bn - 2])
		return qd_ctx_fail(c, QD_ESHAPE, "matmul shapes %s and %s do not match",
				   qd_dims_str(a_ndim, a_dims, s1, sizeof(s1)),
				   qd_dims_str(b_ndim, b_dims, s2, sizeof(s2)));
	g->M = ad[an - 2];
	g->K = ad[an - 1];
	g->N = bd[bn - 1];
	int64_t obd[QD_MAX_DIMS];
	int onb = 0;
	if (qd_broadcast_shape(an - 2, ad, bn - 2, bd, &onb, obd))
		return qd_ctx_fail(c, QD_ESHAPE, "matmul batch dims of %s and %s do not broadcast",
				   qd_dims_str(a_ndim, a_dims, s1, sizeof(s1)),
				   qd_dims_str(b_ndim, b_dims, s2, sizeof(s2)));
	g->batch = qd_dims_count(onb, obd);
	int64_t ast[QD_MAX_DIMS], bst[QD_MAX_DIMS], ac[QD_MAX_DIMS], bc[QD_MAX_DIMS];
	/* matrix-index strides of the batch dims of A and B, 0 on broadcast dims */
	qd_dims_strides(an - 2, ad, ac);
	qd_dims_strides(bn - 2, bd, bc);
	qd_broadcast_strides(an - 2, ad, onb, obd, ast);
	qd_broadcast_strides(bn - 2, bd, onb, obd, bst);
	(void)ac; (void)bc;
	g->a_off = malloc((size_t)(g->batch ? g->batch : 1) * sizeof(int64_t));
	g->b_off = malloc((size_t)(g->batch ? g->batch : 1) * sizeof(int64_t));
	if (!g->a_off || !g->b_off) {
		qd_mm_geom_free(g);
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	}
	for (int64_t b = 0; b < g->batch; b++) {
		int64_t r = b, ao = 0, bo = 0;
		for (int d = onb - 1; d >= 0; d--) {
			int64_t i = r % obd[d];
			r /= obd[d];
			ao += i * ast[d];
			bo += i * bst[d];
		}
		g->a_off[b] = ao;
		g->b_off[b] = bo;
	}
	/* output shape */
	g->ndim = 0;
	for (int d = 0; d < onb; d++) g->dims[g->ndim++] = obd[d];
	if (a_ndim > 1) g->dims[g->ndim++] = g->M;
	if (b_ndim > 1) g->dims[g->ndim++] = g->N;
	return 0;
}

void qd_mm_geom_free(struct qd_mm_geom *g)
{
	free(g->a_off);
	free(g->b_off);
	g->a_off = g->b_off = NULL;
}

void qd_q_dynamic_params(const float *x, int64_t n, float *scale, int32_t *zp)
{
	float mn, mx;
	qd_q_minmax0(x, n, &mn, &mx);
	/* an all-zero input gets scale 1 (ONNX Runtime; the ONNX reference has 1/255) */
	float s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
	float z = 0.0f - mn / s;
	if (!(z >= 0.0f)) z = 0.0f;
	if (z > 255.0f) z = 255.0f;
	*scale = s;
	*zp = (int32_t)rintf(z);
}

/* ---- layout of scale / zero point relative to x ------------------------------------- */

enum { QL_TENSOR, QL_AXIS, QL_BLOCK };
struct qlayout {
	int mode;
	int64_t pre, D, post;     /* x viewed as [pre, D, post] around the axis */
	int64_t block, Db;        /* block-wise: block size, ceil(D / block) */
};

static int q_layout(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *scale,
		    const struct qd_tensor *zp, struct qlayout *L)
{
	const Onnx__NodeProto *np = c->n->proto;
	int64_t ns = qd_tensor_count(scale), n = qd_tensor_count(x);
	int64_t block = qd_node_attr_int(np, "block_size", 0);
	char s1[96], s2[96];
	memset(L, 0, sizeof(*L));
	if (zp && (zp->ndim != scale->ndim || qd_tensor_count(zp) != ns))
		return qd_ctx_fail(c, QD_ESHAPE, "zero point shape %s differs from scale shape %s",
				   qd_dims_str(zp->ndim, zp->dims, s1, sizeof(s1)),
				   qd_dims_str(scale->ndim, scale->dims, s2, sizeof(s2)));
	if (block < 0)
		return qd_ctx_fail(c, QD_EMODEL, "attribute 'block_size' is negative");
	if (block == 0 && ns == 1 && scale->ndim <= 1) {
		L->mode = QL_TENSOR;
		L->pre = 1; L->D = 1; L->post = n;
		return 0;
	}
	int axis = qd_axis(qd_node_attr_int(np, "axis", 1), x->ndim);
	if (axis < 0)
		return qd_ctx_fail(c, QD_EMODEL, "attribute 'axis' out of range for rank %d", x->ndim);
	L->pre = qd_dims_count(axis, x->dims);
	L->D = x->dims[axis];
	L->post = qd_dims_count(x->ndim - axis - 1, x->dims + axis + 1);
	if (block == 0) {
		if (scale->ndim != 1 || ns != L->D)
			return qd_ctx_fail(c, QD_ESHAPE, "per-axis scale shape %s does not match axis %d of %s",
					   qd_dims_str(scale->ndim, scale->dims, s1, sizeof(s1)), axis,
					   qd_dims_str(x->ndim, x->dims, s2, sizeof(s2)));
		L->mode = QL_AXIS;
		return 0;
	}
	L->mode = QL_BLOCK;
	L->block = block;
	L->Db = (L->D + block - 1) / block;
	bool ok = scale->ndim == x->ndim;
	for (int d = 0; ok && d < x->ndim; d++)
		ok = scale->dims[d] == (d == axis ? L->Db : x->dims[d]);
	if (!ok)
		return qd_ctx_fail(c, QD_ESHAPE, "block-wise scale shape %s does not match %s with block %lld on axis %d",
				   qd_dims_str(scale->ndim, scale->dims, s1, sizeof(s1)),
				   qd_dims_str(x->ndim, x->dims, s2, sizeof(s2)), (long long)block, axis);
	return 0;
}

/* Scale index of the first element of row (p, d); block mode adds the post offset. */
static inline int64_t q_sidx(const struct qlayout *L, int64_t p, int64_t d)
{
	switch (L->mode) {
	case QL_AXIS: return d;
	case QL_BLOCK: return (p * L->Db + d / L->block) * L->post;
	default: return 0;
	}
}

/* ---- results of nodes whose inputs are all constant (weights) -------------------- */

/* Computed once, kept with the node, copied into the output on later runs. */
struct const_cache {
	void *v;
	size_t nbytes;
	int dtype;
};

static void const_cache_free(void *p)
{
	struct const_cache *cc = p;
	if (cc) {
		free(cc->v);
		free(cc);
	}
}

static bool all_inputs_const(struct qd_ctx *c)
{
	for (int i = 0; i < c->n_in; i++)
		if (c->n->in[i] >= 0 && !qd_engine_slot(c->e, c->n->in[i])->is_const)
			return false;
	return true;
}

/* true when y was filled from the cache */
static bool const_cache_get(struct qd_ctx *c, struct qd_tensor *y)
{
	struct const_cache *cc = c->n->priv_free == const_cache_free ? c->n->priv : NULL;
	if (!cc || cc->nbytes != y->nbytes || cc->dtype != y->dtype)
		return false;
	memcpy(y->data, cc->v, y->nbytes);
	return true;
}

/* Keeps a copy of y when every input is constant (best effort: no memory, no cache). */
static void const_cache_put(struct qd_ctx *c, const struct qd_tensor *y)
{
	struct const_cache *cc;
	if (c->n->priv || !all_inputs_const(c) || !(cc = calloc(1, sizeof(*cc))))
		return;
	if (!(cc->v = malloc(y->nbytes ? y->nbytes : 1))) {
		free(cc);
		return;
	}
	memcpy(cc->v, y->data, y->nbytes);
	cc->nbytes = y->nbytes;
	cc->dtype = y->dtype;
	c->n->priv = cc;
	c->n->priv_free = const_cache_free;
}

/* ---- QuantizeLinear ---------------------------------------------------------------- */

static int q_out_dtype(const struct qd_enode *n, int zp_dt)
{
	if (zp_dt)
		return zp_dt;
	int64_t od = qd_node_attr_int(n->proto, "output_dtype", 0);
	return od ? (int)od : QD_DT_UINT8;
}

static bool q_dtype_ok(const struct qd_enode *n, int dt)
{
	bool ms = !strcmp(n->op->domain, "com.microsoft");
	if (dt == QD_DT_UINT8 || dt == QD_DT_INT8)
		return true;
	if (dt == QD_DT_UINT16 || dt == QD_DT_INT16)
		return ms || n->opset >= 21;
	return false;
}

int qd_check_quantize(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	bool has_zp = n->n_in > 2 && n->in[2] >= 0;
	int zdt = has_zp ? in_dt[2] : 0;
	if (has_zp && !zdt) {
		out_dt[0] = 0;   /* zero point from a graph input of unknown type: checked at run */
		return 0;
	}
	int dt = q_out_dtype(n, zdt);
	if (!q_dtype_ok(n, dt))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (QuantizeLinear): output dtype %s not supported", n->name,
				  qd_dtype_name(dt));
	if (n->n_in > 1 && n->in[1] >= 0 && in_dt[1] && in_dt[1] != QD_DT_FLOAT)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (QuantizeLinear): scale dtype %s not supported (float32 only)",
				  n->name, qd_dtype_name(in_dt[1]));
	out_dt[0] = dt;
	return 0;
}

/* Quantization of n floats with one scale / zero point (8-bit: vectorised loops). */
static void quantize_run(const float *x, int64_t n, float s, int32_t zp, int dt, void *y,
			 int64_t yofs, int32_t lo, int32_t hi)
{
	switch (dt) {
	case QD_DT_UINT8:
		qd_q_quantize_u8(x, n, s, zp, lo, hi, (uint8_t *)y + yofs);
		break;
	case QD_DT_INT8:
		qd_q_quantize_s8(x, n, s, zp, lo, hi, (int8_t *)y + yofs);
		break;
	default:
		for (int64_t i = 0; i < n; i++) qd_q_store(y, dt, yofs + i, qd_q_round_sat(x[i] / s, zp, lo, hi));
	}
}

int qd_op_quantize_linear(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *scale = qd_ctx_in(c, 1);
	const struct qd_tensor *zp = c->n_in > 2 ? c->in[2] : NULL;
	struct qlayout L;
	int32_t lo = 0, hi = 0;
	if (!x || !scale)
		return -c->err->code;
	if (x->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtype %s not supported (float32 only)",
				   qd_dtype_name(x->dtype));
	if (scale->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "scale dtype %s not supported (float32 only)",
				   qd_dtype_name(scale->dtype));
	int dt = q_out_dtype(c->n, zp ? zp->dtype : 0);
	if (!q_dtype_ok(c->n, dt) || !qd_q_range(dt, &lo, &hi))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "output dtype %s not supported", qd_dtype_name(dt));
	int rc = q_layout(c, x, scale, zp, &L);
	if (rc)
		return rc;
	struct qd_tensor *y = qd_ctx_out(c, 0, dt, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	if (const_cache_get(c, y))
		return 0;
	const float *xs = x->data, *sc = scale->data;
	if (L.mode == QL_AXIS && L.post == 1) {   /* last axis: one scale per element */
		for (int64_t p = 0; p < L.pre; p++)
			for (int64_t d = 0; d < L.D; d++) {
				int32_t z = zp ? qd_q_load(zp->data, dt, d) : 0;
				qd_q_store(y->data, dt, p * L.D + d, qd_q_round_sat(xs[p * L.D + d] / sc[d], z, lo, hi));
			}
		const_cache_put(c, y);
		return 0;
	}
	for (int64_t p = 0; p < L.pre; p++)
		for (int64_t d = 0; d < L.D; d++) {
			int64_t base = (p * L.D + d) * L.post, si = q_sidx(&L, p, d);
			if (L.mode != QL_BLOCK) {
				int32_t z = zp ? qd_q_load(zp->data, dt, si) : 0;
				quantize_run(xs + base, L.post, sc[si], z, dt, y->data, base, lo, hi);
				continue;
			}
			for (int64_t q = 0; q < L.post; q++) {
				int32_t z = zp ? qd_q_load(zp->data, dt, si + q) : 0;
				qd_q_store(y->data, dt, base + q, qd_q_round_sat(xs[base + q] / sc[si + q], z, lo, hi));
			}
		}
	const_cache_put(c, y);
	return 0;
}

/* ---- DequantizeLinear -------------------------------------------------------------- */

int qd_check_dequantize(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	int dt = in_dt[0];
	bool ms = !strcmp(n->op->domain, "com.microsoft");
	if (dt && dt != QD_DT_UINT8 && dt != QD_DT_INT8 &&
	    !((dt == QD_DT_UINT16 || dt == QD_DT_INT16) && (ms || n->opset >= 21)) &&
	    !(dt == QD_DT_INT32 && (ms || n->opset >= 10)))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (DequantizeLinear): input dtype %s not supported", n->name,
				  qd_dtype_name(dt));
	if (n->n_in > 1 && n->in[1] >= 0 && in_dt[1] && in_dt[1] != QD_DT_FLOAT)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (DequantizeLinear): scale dtype %s not supported (float32 only)",
				  n->name, qd_dtype_name(in_dt[1]));
	out_dt[0] = QD_DT_FLOAT;
	return 0;
}

#define DQ_LOOP(T, W)                                                                            \
	do {                                                                                     \
		const T *xv = x->data;                                                           \
		if (L.mode == QL_AXIS && L.post == 1) {                                          \
			for (int64_t p = 0; p < L.pre; p++)                                      \
				for (int64_t d = 0; d < L.D; d++)                                \
					o[p * L.D + d] = (float)((W)xv[p * L.D + d] - zv[d]) * sc[d]; \
			break;                                                                   \
		}                                                                                \
		for (int64_t p = 0; p < L.pre; p++)                                              \
			for (int64_t d = 0; d < L.D; d++) {                                      \
				int64_t base = (p * L.D + d) * L.post, si = q_sidx(&L, p, d);    \
				if (L.mode == QL_BLOCK) {                                        \
					for (int64_t q = 0; q < L.post; q++)                     \
						o[base + q] = (float)((W)xv[base + q] - zv[si + q]) * sc[si + q]; \
				} else {                                                         \
					W z = zv[si];                                            \
					float sv = sc[si];                                       \
					for (int64_t q = 0; q < L.post; q++)                     \
						o[base + q] = (float)((W)xv[base + q] - z) * sv; \
				}                                                                \
			}                                                                        \
	} while (0)

/* o = (x - zp) * scale for every element of x. */
static int dequantize_into(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *scale,
			   const struct qd_tensor *zp, const struct qlayout *Lp, float *o)
{
	const struct qlayout L = *Lp;
	int64_t ns = qd_tensor_count(scale);
	const float *sc = scale->data;
	int64_t *zv = calloc((size_t)(ns ? ns : 1), sizeof(int64_t));
	if (!zv)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	for (int64_t i = 0; zp && i < ns; i++)
		zv[i] = qd_q_load(zp->data, zp->dtype, i);
	bool b8 = x->dtype == QD_DT_UINT8 || x->dtype == QD_DT_INT8;
	if (b8 && L.mode != QL_BLOCK && !(L.mode == QL_AXIS && L.post == 1)) {
		/* 8-bit runs of one scale and zero point: the vectorised loop (int32 differences,
		 * exact like the int64 ones) */
		for (int64_t p = 0; p < L.pre; p++)
			for (int64_t d = 0; d < L.D; d++) {
				int64_t base = (p * L.D + d) * L.post, si = q_sidx(&L, p, d);
				qd_q_dequant_8((const uint8_t *)x->data + base, L.post, x->dtype == QD_DT_INT8,
					       (int32_t)zv[si], sc[si], o + base);
			}
		free(zv);
		return 0;
	}
	switch (x->dtype) {
	case QD_DT_UINT8: DQ_LOOP(uint8_t, int64_t); break;
	case QD_DT_INT8: DQ_LOOP(int8_t, int64_t); break;
	case QD_DT_UINT16: DQ_LOOP(uint16_t, int64_t); break;
	case QD_DT_INT16: DQ_LOOP(int16_t, int64_t); break;
	case QD_DT_INT32: DQ_LOOP(int32_t, int64_t); break;
	default: break;
	}
	free(zv);
	return 0;
}

int qd_op_dequantize_linear(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *scale = qd_ctx_in(c, 1);
	const struct qd_tensor *zp = c->n_in > 2 ? c->in[2] : NULL;
	struct qlayout L;
	int32_t lo = 0, hi = 0;
	if (!x || !scale)
		return -c->err->code;
	int dt = x->dtype;
	if (!qd_q_range(dt, &lo, &hi))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtype %s not supported", qd_dtype_name(dt));
	if (scale->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "scale dtype %s not supported (float32 only)",
				   qd_dtype_name(scale->dtype));
	if (zp && zp->dtype != dt)
		return qd_ctx_fail(c, QD_EMODEL, "zero point dtype %s differs from input dtype %s",
				   qd_dtype_name(zp->dtype), qd_dtype_name(dt));
	int rc = q_layout(c, x, scale, zp, &L);
	if (rc)
		return rc;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	if (const_cache_get(c, y))
		return 0;
	if ((rc = dequantize_into(c, x, scale, zp, &L, y->data)))
		return rc;
	const_cache_put(c, y);
	return 0;
}

/* ---- DynamicQuantizeLinear --------------------------------------------------------- */

int qd_check_dyn_quantize(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	out_dt[0] = QD_DT_UINT8;
	out_dt[1] = QD_DT_FLOAT;
	out_dt[2] = QD_DT_UINT8;
	return 0;
}

int qd_op_dynamic_quantize_linear(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x)
		return -c->err->code;
	int64_t n = qd_tensor_count(x);
	float s;
	int32_t z;
	qd_q_dynamic_params(x->data, n, &s, &z);
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_UINT8, x->ndim, x->dims);
	if (!y)
		return -c->err->code;
	quantize_run(x->data, n, s, z, QD_DT_UINT8, y->data, 0, 0, 255);
	if (qd_ctx_wants(c, 1)) {
		struct qd_tensor *ys = qd_ctx_out(c, 1, QD_DT_FLOAT, 0, NULL);
		if (!ys)
			return -c->err->code;
		*(float *)ys->data = s;
	}
	if (qd_ctx_wants(c, 2)) {
		struct qd_tensor *yz = qd_ctx_out(c, 2, QD_DT_UINT8, 0, NULL);
		if (!yz)
			return -c->err->code;
		*(uint8_t *)yz->data = (uint8_t)z;
	}
	return 0;
}
