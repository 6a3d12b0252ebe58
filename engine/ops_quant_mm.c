/* engine/ops_quant_mm.c — integer and weight-quantized matrix products: MatMulInteger,
 * QLinearMatMul (ai.onnx); MatMulIntegerToFloat, DynamicQuantizeMatMul, QGemm and
 * MatMulNBits (com.microsoft). The int8 products run on engine/qgemm.c (exact int32
 * accumulation); requantization is float32 multiply + round half to even + saturate. */
#include <stdlib.h>
#include <string.h>
#include "engine/ops_quant.h"
#include "engine/qgemm.h"

/* One 8-bit operand of a batched integer matmul. zp has nzp values: 1 (per tensor),
 * rows (per row of A / column of B) or batches*rows (per row of every matrix). */
struct imm_operand {
	const void *data;
	bool is_signed;
	const int32_t *zp;
	int64_t nzp;
	const float *f;   /* A only: float data quantized to uint8 by the GEMM (scale fs, zp[0]) */
	float fs;
};

static int zp_values(struct qd_ctx *c, const struct qd_tensor *t, int dt, const char *what,
		     int32_t **out, int64_t *n)
{
	*out = NULL;
	*n = t ? qd_tensor_count(t) : 1;
	if (t && t->dtype != dt)
		return qd_ctx_fail(c, QD_EMODEL, "%s: dtype %s, expected %s", what,
				   qd_dtype_name(t->dtype), qd_dtype_name(dt));
	*out = calloc((size_t)(*n ? *n : 1), sizeof(int32_t));
	if (!*out)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	for (int64_t i = 0; t && i < *n; i++)
		(*out)[i] = qd_q_load(t->data, dt, i);
	return 0;
}

static bool input_is_const(struct qd_ctx *c, int i)
{
	return i >= c->n_in || c->n->in[i] < 0 || qd_engine_slot(c->e, c->n->in[i])->is_const;
}

/* A constant B (weights) is packed once, on first use, and kept with the node. */
struct mm_cache {
	struct qd_qgemm_packed *pb;
};

static void mm_cache_free(void *p)
{
	struct mm_cache *mc = p;
	if (mc) {
		qd_qgemm_packed_free(mc->pb);
		free(mc);
	}
}

/* Packed B for inputs bi (B) / bzi (its zero point) when both are constant and B is one
 * matrix; NULL otherwise (or when packing fails: the caller then packs per call). */
static const struct qd_qgemm_packed *cached_b(struct qd_ctx *c, int bi, int bzi,
					      const struct qd_mm_geom *g, const void *bdata,
					      bool b_signed, const int32_t *bzp, int64_t nbz,
					      int64_t b_mats)
{
	if (b_mats != 1 || !input_is_const(c, bi) || !input_is_const(c, bzi))
		return NULL;
	if (c->n->priv)
		return c->n->priv_free == mm_cache_free ? ((struct mm_cache *)c->n->priv)->pb : NULL;
	struct qd_qgemm_args q = { .N = g->N, .K = g->K, .B = bdata, .ldb = g->N, .b_signed = b_signed,
				   .b_zp = bzp, .b_zp_per_col = nbz > 1 };
	struct mm_cache *mc = calloc(1, sizeof(*mc));
	if (!mc || qd_qgemm_pack_b(&q, &mc->pb)) {
		free(mc);
		return NULL;
	}
	c->n->priv = mc;
	c->n->priv_free = mm_cache_free;
	return mc->pb;
}

/* Optional float result of an integer matmul: y = acc * mul[n] (+ bias[n]). */
struct imm_float {
	float *y;
	const float *mul, *bias;
};

/* acc[batch][M][N] = (A - a_zp)(B - b_zp). a_mats / b_mats: matrices in A / B.
 * pb: B packed ahead (only when b_mats == 1), or NULL. With yf, the float result is
 * written to yf->y instead (acc is then scratch the non-byte paths may use). */
static int imm_run_f(struct qd_ctx *c, const struct qd_mm_geom *g, const struct imm_operand *A,
		     int64_t a_mats, const struct imm_operand *B, int64_t b_mats, int32_t *acc,
		     const struct qd_qgemm_packed *pb, const struct imm_float *yf)
{
	bool a_row = A->nzp == g->M && A->nzp > 1, a_all = A->nzp == a_mats * g->M && A->nzp > 1;
	bool b_col = B->nzp == g->N && B->nzp > 1, b_all = B->nzp == b_mats * g->N && B->nzp > 1;
	if (A->nzp > 1 && !a_row && !a_all)
		return qd_ctx_fail(c, QD_ESHAPE, "zero point of A has %lld values, expected 1 or %lld (per row)",
				   (long long)A->nzp, (long long)g->M);
	if (B->nzp > 1 && !b_col && !b_all)
		return qd_ctx_fail(c, QD_ESHAPE, "zero point of B has %lld values, expected 1 or %lld (per column)",
				   (long long)B->nzp, (long long)g->N);
	for (int64_t b = 0; b < g->batch; b++) {
		int64_t ao = g->a_off[b], bo = g->b_off[b];
		struct qd_qgemm_args q = {
			.M = g->M, .N = g->N, .K = g->K,
			.A = A->f ? NULL : (const uint8_t *)A->data + ao * g->M * g->K, .lda = g->K,
			.a_signed = A->is_signed,
			.Af = A->f ? A->f + ao * g->M * g->K : NULL, .af_scale = A->fs,
			.af_zp = A->f ? A->zp[0] : 0,
			.B = (const uint8_t *)B->data + bo * g->K * g->N, .ldb = g->N, .b_signed = B->is_signed,
			.a_zp = A->zp + (a_all && !a_row ? ao * g->M : 0), .a_zp_per_row = A->nzp > 1,
			.b_zp = B->zp + (b_all && !b_col ? bo * g->N : 0), .b_zp_per_col = B->nzp > 1,
			.C = acc + b * g->M * g->N, .ldc = g->N,
			.threads = c->e->opts.threads,
			.Cf = yf ? yf->y + b * g->M * g->N : NULL,
			.cmul = yf ? yf->mul : NULL, .cbias = yf ? yf->bias : NULL,
		};
		int rc = pb && b_mats == 1 ? qd_qgemm_prepacked(&q, pb) : qd_qgemm(&q);
		if (rc)
			return qd_ctx_fail(c, -rc, "integer matmul failed");
		if (c->cancel && *c->cancel)
			return qd_ctx_fail(c, QD_ECANCELED, "canceled");
	}
	return 0;
}

static int imm_run(struct qd_ctx *c, const struct qd_mm_geom *g, const struct imm_operand *A,
		   int64_t a_mats, const struct imm_operand *B, int64_t b_mats, int32_t *acc,
		   const struct qd_qgemm_packed *pb)
{
	return imm_run_f(c, g, A, a_mats, B, b_mats, acc, pb, NULL);
}

static int64_t mats_of(const struct qd_tensor *t)
{
	return t->ndim <= 2 ? 1 : qd_dims_count(t->ndim - 2, t->dims);
}

/* ---- MatMulInteger ----------------------------------------------------------------- */

int qd_op_matmul_integer(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 1);
	if (!a || !b)
		return -c->err->code;
	const struct qd_tensor *az = c->n_in > 2 ? c->in[2] : NULL, *bz = c->n_in > 3 ? c->in[3] : NULL;
	struct qd_mm_geom g;
	int32_t *azv = NULL, *bzv = NULL;
	int64_t naz, nbz;
	if (!qd_is_q8(a->dtype) || !qd_is_q8(b->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
	int rc = qd_mm_geom(c, a->ndim, a->dims, b->ndim, b->dims, &g);
	if (rc)
		return rc;
	if ((rc = zp_values(c, az, a->dtype, "a_zero_point", &azv, &naz)) ||
	    (rc = zp_values(c, bz, b->dtype, "b_zero_point", &bzv, &nbz)))
		goto out;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_INT32, g.ndim, g.dims);
	if (!y) {
		rc = -c->err->code;
		goto out;
	}
	struct imm_operand A = { a->data, a->dtype == QD_DT_INT8, azv, naz };
	struct imm_operand B = { b->data, b->dtype == QD_DT_INT8, bzv, nbz };
	rc = imm_run(c, &g, &A, mats_of(a), &B, mats_of(b), y->data,
		     cached_b(c, 1, 3, &g, b->data, B.is_signed, bzv, nbz, mats_of(b)));
out:
	free(azv);
	free(bzv);
	qd_mm_geom_free(&g);
	return rc;
}

/* Engine scratch for nacc int32 accumulators, nmul floats (*mul) and naq bytes (*aq),
 * each 64-byte aligned; NULL with the error set. Valid until the next scratch use. */
static int32_t *mm_scratch(struct qd_ctx *c, int64_t nacc, int64_t nmul, int64_t naq, float **mul,
			   uint8_t **aq)
{
	size_t a = ((size_t)nacc * sizeof(int32_t) + 63) & ~(size_t)63;
	size_t m = ((size_t)nmul * sizeof(float) + 63) & ~(size_t)63;
	uint8_t *p = qd_ctx_scratch(c, a + m + (size_t)naq + 128);
	if (!p)
		return NULL;
	p = (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
	*mul = (float *)(void *)(p + a);
	if (aq)
		*aq = p + a + m;
	return (int32_t *)(void *)p;
}

/* ---- QLinearMatMul ----------------------------------------------------------------- */

int qd_op_qlinear_matmul(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 3);
	if (!a || !b)
		return -c->err->code;
	struct qd_mm_geom g;
	int32_t *azv = NULL, *bzv = NULL, yz, lo = 0, hi = 0;
	float *as = NULL, *bs = NULL, ys;
	int64_t naz, nbz;
	bool aper, bper;
	int32_t *acc = NULL;
	if (!qd_is_q8(a->dtype) || !qd_is_q8(b->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
	int rc = qd_mm_geom(c, a->ndim, a->dims, b->ndim, b->dims, &g);
	if (rc)
		return rc;
	if ((rc = qd_q_vec_f32(c, 1, "a_scale", g.M, &as, &aper)) ||
	    (rc = zp_values(c, c->in[2], a->dtype, "a_zero_point", &azv, &naz)) ||
	    (rc = qd_q_vec_f32(c, 4, "b_scale", g.N, &bs, &bper)) ||
	    (rc = zp_values(c, c->in[5], b->dtype, "b_zero_point", &bzv, &nbz)) ||
	    (rc = qd_q_scalar_f32(c, 6, "y_scale", &ys)) ||
	    (rc = qd_q_scalar_zp(c, 7, "y_zero_point", a->dtype, &yz)))
		goto out;
	qd_q_range(a->dtype, &lo, &hi);
	/* accumulators and per-column multipliers in the engine's scratch (no per-run malloc) */
	float *mul = NULL;
	acc = mm_scratch(c, g.batch * g.M * g.N, g.N, 0, &mul, NULL);
	struct qd_tensor *y = acc ? qd_ctx_out(c, 0, a->dtype, g.ndim, g.dims) : NULL;
	if (!acc || !y) {
		rc = -c->err->code;
		goto out;
	}
	struct imm_operand A = { a->data, a->dtype == QD_DT_INT8, azv, naz };
	struct imm_operand B = { b->data, b->dtype == QD_DT_INT8, bzv, nbz };
	if ((rc = imm_run(c, &g, &A, mats_of(a), &B, mats_of(b), acc,
			  cached_b(c, 3, 5, &g, b->data, B.is_signed, bzv, nbz, mats_of(b)))))
		goto out;
	/* per-column multipliers (a_scale * b_scale[n] / y_scale), per row when a_scale is */
	for (int64_t bt = 0; bt < g.batch; bt++)
		for (int64_t m = 0; m < g.M; m++) {
			if ((bt == 0 && m == 0) || aper)
				for (int64_t n = 0; n < g.N; n++)
					mul[n] = as[aper ? m : 0] * bs[bper ? n : 0] / ys;
			int64_t r = (bt * g.M + m) * g.N;
			qd_q_requant_row(acc + r, g.N, mul, yz, lo, hi, a->dtype == QD_DT_INT8,
					 (uint8_t *)y->data + r);
		}
out:
	free(as); free(bs); free(azv); free(bzv);
	qd_mm_geom_free(&g);
	return rc;
}

/* ---- MatMulIntegerToFloat / DynamicQuantizeMatMul ---------------------------------- */

static int bias_vec(struct qd_ctx *c, int i, int64_t N, const float **out)
{
	const struct qd_tensor *t = i < c->n_in ? c->in[i] : NULL;
	*out = NULL;
	if (!t)
		return 0;
	if (t->dtype != QD_DT_FLOAT || qd_tensor_count(t) != N)
		return qd_ctx_fail(c, QD_ESHAPE, "bias must be float32 with %lld elements", (long long)N);
	*out = t->data;
	return 0;
}

/* mul[n] = a_scale * b_scale[n] (mul: N floats of scratch) */
static void float_mul(int64_t N, float as, const float *bs, bool bper, float *mul)
{
	for (int64_t n = 0; n < N; n++)
		mul[n] = as * bs[bper ? n : 0];
}

int qd_op_matmul_integer_to_float(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 1);
	if (!a || !b)
		return -c->err->code;
	struct qd_mm_geom g;
	int32_t *azv = NULL, *bzv = NULL, *acc = NULL;
	float as, *bs = NULL;
	const float *bias;
	int64_t naz, nbz;
	bool bper;
	if (!qd_is_q8(a->dtype) || !qd_is_q8(b->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
	int rc = qd_mm_geom(c, a->ndim, a->dims, b->ndim, b->dims, &g);
	if (rc)
		return rc;
	if ((rc = qd_q_scalar_f32(c, 2, "a_scale", &as)) ||
	    (rc = qd_q_vec_f32(c, 3, "b_scale", g.N, &bs, &bper)) ||
	    (rc = zp_values(c, c->n_in > 4 ? c->in[4] : NULL, a->dtype, "a_zero_point", &azv, &naz)) ||
	    (rc = zp_values(c, c->n_in > 5 ? c->in[5] : NULL, b->dtype, "b_zero_point", &bzv, &nbz)) ||
	    (rc = bias_vec(c, 6, g.N, &bias)))
		goto out;
	if (naz != 1) {
		rc = qd_ctx_fail(c, QD_EUNSUPPORTED, "a_zero_point must be a scalar");
		goto out;
	}
	float *mul = NULL;
	acc = mm_scratch(c, g.batch * g.M * g.N, g.N, 0, &mul, NULL);
	struct qd_tensor *y = acc ? qd_ctx_out(c, 0, QD_DT_FLOAT, g.ndim, g.dims) : NULL;
	if (!acc || !y) {
		rc = -c->err->code;
		goto out;
	}
	struct imm_operand A = { a->data, a->dtype == QD_DT_INT8, azv, naz };
	struct imm_operand B = { b->data, b->dtype == QD_DT_INT8, bzv, nbz };
	float_mul(g.N, as, bs, bper, mul);
	struct imm_float yf = { y->data, mul, bias };
	rc = imm_run_f(c, &g, &A, mats_of(a), &B, mats_of(b), acc,
		       cached_b(c, 1, 5, &g, b->data, B.is_signed, bzv, nbz, mats_of(b)), &yf);
out:
	free(bs); free(azv); free(bzv);
	qd_mm_geom_free(&g);
	return rc;
}

int qd_op_dynamic_quantize_matmul(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 1);
	if (!a || !b)
		return -c->err->code;
	struct qd_mm_geom g;
	int32_t *bzv = NULL, *acc = NULL, az;
	float as, *bs = NULL;
	const float *bias;
	int64_t nbz, na = qd_tensor_count(a);
	bool bper;
	if (a->dtype != QD_DT_FLOAT || !qd_is_q8(b->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (float32 x 8-bit)",
				   qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
	int rc = qd_mm_geom(c, a->ndim, a->dims, b->ndim, b->dims, &g);
	if (rc)
		return rc;
	if ((rc = qd_q_vec_f32(c, 2, "b_scale", g.N, &bs, &bper)) ||
	    (rc = zp_values(c, c->n_in > 3 ? c->in[3] : NULL, b->dtype, "b_zero_point", &bzv, &nbz)) ||
	    (rc = bias_vec(c, 4, g.N, &bias)))
		goto out;
	/* A: DynamicQuantizeLinear over the whole tensor (uint8, asymmetric) */
	qd_q_dynamic_params(a->data, na, &as, &az);
	float *mul = NULL;
	acc = mm_scratch(c, g.batch * g.M * g.N, g.N, 0, &mul, NULL);
	struct qd_tensor *y = acc ? qd_ctx_out(c, 0, QD_DT_FLOAT, g.ndim, g.dims) : NULL;
	if (!acc || !y) {
		rc = -c->err->code;
		goto out;
	}
	/* A quantized to uint8 by the GEMM as it packs (qd_qgemm_args.Af) */
	struct imm_operand A = { NULL, false, &az, 1, a->data, as };
	struct imm_operand B = { b->data, b->dtype == QD_DT_INT8, bzv, nbz };
	float_mul(g.N, as, bs, bper, mul);
	struct imm_float yf = { y->data, mul, bias };
	rc = imm_run_f(c, &g, &A, mats_of(a), &B, mats_of(b), acc,
		       cached_b(c, 1, 3, &g, b->data, B.is_signed, bzv, nbz, mats_of(b)), &yf);
out:
	free(bs); free(bzv);
	qd_mm_geom_free(&g);
	return rc;
}

/* ---- QGemm ------------------------------------------------------------------------- */

/* A 2-D 8-bit matrix, transposed into a new buffer when trans. */
static int mat2d(struct qd_ctx *c, const struct qd_tensor *t, bool trans, const char *what,
		 int64_t *rows, int64_t *cols, uint8_t **tmp, const void **data)
{
	if (t->ndim != 2)
		return qd_ctx_fail(c, QD_ESHAPE, "%s must be 2-D, got rank %d", what, t->ndim);
	int64_t r = t->dims[0], k = t->dims[1];
	*tmp = NULL;
	*data = t->data;
	if (!trans) {
		*rows = r; *cols = k;
		return 0;
	}
	*rows = k; *cols = r;
	*tmp = malloc((size_t)(r * k) + 1);
	if (!*tmp)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	const uint8_t *s = t->data;
	for (int64_t i = 0; i < r; i++)
		for (int64_t j = 0; j < k; j++)
			(*tmp)[j * r + i] = s[i * k + j];
	*data = *tmp;
	return 0;
}

int qd_op_qgemm(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 3);
	if (!a || !b)
		return -c->err->code;
	const Onnx__NodeProto *np = c->n->proto;
	bool ta = qd_node_attr_int(np, "transA", 0) != 0, tb = qd_node_attr_int(np, "transB", 0) != 0;
	float alpha = qd_node_attr_float(np, "alpha", 1.0f);
	const struct qd_tensor *ct = c->n_in > 6 ? c->in[6] : NULL;
	const struct qd_tensor *ysc = c->n_in > 7 ? c->in[7] : NULL;
	const struct qd_tensor *yzt = c->n_in > 8 ? c->in[8] : NULL;
	uint8_t *at = NULL, *bt = NULL;
	const void *ad, *bd;
	int64_t M, K, K2, N, nbz;
	int32_t az, *bzv = NULL, *acc = NULL, yz = 0, lo = 0, hi = 0;
	float as, *bs = NULL, ys = 1.0f;
	bool bper;
	struct qd_mm_geom g = {0};
	int64_t zero = 0;
	if (!qd_is_q8(a->dtype) || !qd_is_q8(b->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
	int rc = mat2d(c, a, ta, "A", &M, &K, &at, &ad);
	/* constant B already packed on an earlier run: no need to transpose it again */
	bool packed = c->n->priv && c->n->priv_free == mm_cache_free && input_is_const(c, 3) &&
		      input_is_const(c, 5) && b->ndim == 2;
	if (!rc && packed) {
		K2 = tb ? b->dims[1] : b->dims[0];
		N = tb ? b->dims[0] : b->dims[1];
		bd = b->data;   /* not read: cached_b returns the packed copy */
	} else if (!rc) {
		rc = mat2d(c, b, tb, "B", &K2, &N, &bt, &bd);
	}
	if (rc)
		goto out;
	if (K != K2) {
		rc = qd_ctx_fail(c, QD_ESHAPE, "inner dimensions differ (%lld vs %lld)", (long long)K, (long long)K2);
		goto out;
	}
	if ((rc = qd_q_scalar_f32(c, 1, "a_scale", &as)) ||
	    (rc = qd_q_scalar_zp(c, 2, "a_zero_point", a->dtype, &az)) ||
	    (rc = qd_q_vec_f32(c, 4, "b_scale", N, &bs, &bper)) ||
	    (rc = zp_values(c, c->n_in > 5 ? c->in[5] : NULL, b->dtype, "b_zero_point", &bzv, &nbz)))
		goto out;
	if (ysc) {
		int ydt = yzt ? yzt->dtype : QD_DT_UINT8;
		if ((rc = qd_q_scalar_f32(c, 7, "y_scale", &ys)) ||
		    (rc = qd_q_scalar_zp(c, 8, "y_zero_point", ydt, &yz)))
			goto out;
		if (!qd_is_q8(ydt)) {
			rc = qd_ctx_fail(c, QD_EUNSUPPORTED, "y_zero_point dtype %s not supported", qd_dtype_name(ydt));
			goto out;
		}
		qd_q_range(ydt, &lo, &hi);
	}
	int64_t cstr[2] = {0, 0};
	if (ct) {
		int64_t od[2] = { M, N };
		int nd;
		int64_t bdims[QD_MAX_DIMS];
		if (ct->dtype != QD_DT_INT32 || ct->ndim > 2 ||
		    qd_broadcast_shape(ct->ndim, ct->dims, 2, od, &nd, bdims) || nd != 2 ||
		    bdims[0] != M || bdims[1] != N) {
			rc = qd_ctx_fail(c, QD_ESHAPE, "C must be int32 and broadcast to %lld x %lld",
					 (long long)M, (long long)N);
			goto out;
		}
		qd_broadcast_strides(ct->ndim, ct->dims, 2, od, cstr);
	}
	g.M = M; g.N = N; g.K = K; g.batch = 1;
	g.a_off = &zero; g.b_off = &zero;
	int64_t odims[2] = { M, N };
	acc = malloc((size_t)(M * N + 1) * sizeof(int32_t));
	struct qd_tensor *y = acc ? qd_ctx_out(c, 0, ysc ? (yzt ? yzt->dtype : QD_DT_UINT8) : QD_DT_FLOAT, 2, odims) : NULL;
	if (!acc || !y) {
		rc = acc ? -c->err->code : qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		goto out;
	}
	struct imm_operand A = { ad, a->dtype == QD_DT_INT8, &az, 1 };
	struct imm_operand B = { bd, b->dtype == QD_DT_INT8, bzv, nbz };
	if ((rc = imm_run(c, &g, &A, 1, &B, 1, acc, cached_b(c, 3, 5, &g, bd, B.is_signed, bzv, nbz, 1))))
		goto out;
	for (int64_t m = 0; m < M; m++)
		for (int64_t n = 0; n < N; n++) {
			int64_t i = m * N + n;
			int32_t v = acc[i];
			if (ct)
				v = (int32_t)((uint32_t)v + (uint32_t)((const int32_t *)ct->data)[m * cstr[0] + n * cstr[1]]);
			float mul = alpha * as * bs[bper ? n : 0];
			if (ysc)
				qd_q_store(y->data, y->dtype, i, qd_q_round_sat((float)v * (mul / ys), yz, lo, hi));
			else
				((float *)y->data)[i] = (float)v * mul;
		}
out:
	free(at); free(bt); free(acc); free(bs); free(bzv);
	return rc;
}

int qd_check_qgemm(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	bool has_y = n->n_in > 7 && n->in[7] >= 0;
	bool has_yz = n->n_in > 8 && n->in[8] >= 0;
	out_dt[0] = !has_y ? QD_DT_FLOAT : has_yz ? in_dt[8] : QD_DT_UINT8;
	return 0;
}

/* ---- MatMulNBits ------------------------------------------------------------------- */

struct nbits_cache {
	float *w;       /* dequantized weight [N, K] */
};

static void nbits_cache_free(void *p)
{
	struct nbits_cache *nc = p;
	if (nc) {
		free(nc->w);
		free(nc);
	}
}

int qd_check_matmul_nbits(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const Onnx__NodeProto *np = n->proto;
	int64_t bits = qd_node_attr_int(np, "bits", 4), bs = qd_node_attr_int(np, "block_size", 0);
	int64_t K = qd_node_attr_int(np, "K", 0), N = qd_node_attr_int(np, "N", 0);
	if (bits != 2 && bits != 4 && bits != 8)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (MatMulNBits): bits %lld not supported (2, 4 or 8)", n->name, (long long)bits);
	if (bs < 16 || (bs & (bs - 1)) || K <= 0 || N <= 0)
		return qd_err_set(err, QD_EMODEL, n->name,
				  "node '%s' (MatMulNBits): attributes K, N and block_size (power of 2, >= 16) are required",
				  n->name);
	if (n->n_in > 4 && n->in[4] >= 0)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (MatMulNBits): input 'g_idx' not supported", n->name);
	if (qd_node_attr_int(np, "weight_prepacked", 0))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (MatMulNBits): attribute 'weight_prepacked' not supported", n->name);
	out_dt[0] = QD_DT_FLOAT;
	return 0;
}

/* Dequantize B [N, k_blocks, blob] into w [N, K]. */
static int nbits_dequant(struct qd_ctx *c, int64_t K, int64_t N, int64_t bits, int64_t bs, float *w)
{
	const struct qd_tensor *B = qd_ctx_in(c, 1), *S = qd_ctx_in(c, 2);
	const struct qd_tensor *Z = c->n_in > 3 ? c->in[3] : NULL;
	if (!B || !S)
		return -c->err->code;
	int64_t kb = (K + bs - 1) / bs, blob = bs * bits / 8, zrow = (kb * bits + 7) / 8;
	if (B->dtype != QD_DT_UINT8 || qd_tensor_count(B) != N * kb * blob)
		return qd_ctx_fail(c, QD_ESHAPE, "B must be uint8 with %lld x %lld x %lld elements",
				   (long long)N, (long long)kb, (long long)blob);
	if (S->dtype != QD_DT_FLOAT || qd_tensor_count(S) != N * kb)
		return qd_ctx_fail(c, QD_ESHAPE, "scales must be float32 with %lld x %lld elements",
				   (long long)N, (long long)kb);
	bool zf = false;
	if (Z) {
		if (Z->dtype == QD_DT_FLOAT && qd_tensor_count(Z) == N * kb)
			zf = true;
		else if (Z->dtype != QD_DT_UINT8 || qd_tensor_count(Z) != N * zrow)
			return qd_ctx_fail(c, QD_ESHAPE,
					   "zero_points must be uint8 [%lld, %lld] (packed) or float32 [%lld, %lld]",
					   (long long)N, (long long)zrow, (long long)N, (long long)kb);
	}
	const uint8_t *bd = B->data;
	const float *sd = S->data;
	uint32_t mask = (1u << bits) - 1;
	float dflt = (float)(1 << (bits - 1));
	for (int64_t n = 0; n < N; n++) {
		const uint8_t *row = bd + n * kb * blob;
		for (int64_t j = 0; j < kb; j++) {
			float s = sd[n * kb + j], z = dflt;
			if (Z && zf)
				z = ((const float *)Z->data)[n * kb + j];
			else if (Z) {
				int64_t bit = j * bits;
				z = (float)((((const uint8_t *)Z->data)[n * zrow + bit / 8] >> (bit % 8)) & mask);
			}
			int64_t k1 = QD_MIN(K, (j + 1) * bs);
			for (int64_t k = j * bs; k < k1; k++) {
				int64_t bit = k * bits;
				float q = (float)((row[bit / 8] >> (bit % 8)) & mask);
				w[n * K + k] = (q - z) * s;
			}
		}
	}
	return 0;
}

int qd_op_matmul_nbits(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0);
	if (!a)
		return -c->err->code;
	const Onnx__NodeProto *np = c->n->proto;
	int64_t K = qd_node_attr_int(np, "K", 0), N = qd_node_attr_int(np, "N", 0);
	int64_t bits = qd_node_attr_int(np, "bits", 4), bs = qd_node_attr_int(np, "block_size", 0);
	const float *bias;
	float *w = NULL;
	int rc;
	if (a->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "A dtype %s not supported (float32 only)", qd_dtype_name(a->dtype));
	if (a->ndim < 1 || a->dims[a->ndim - 1] != K)
		return qd_ctx_fail(c, QD_ESHAPE, "last dimension of A must be K = %lld", (long long)K);
	if ((rc = bias_vec(c, 5, N, &bias)))
		return rc;
	/* constant weights are dequantized once and kept with the node */
	bool cacheable = input_is_const(c, 1) && input_is_const(c, 2) && input_is_const(c, 3);
	struct nbits_cache *nc = c->n->priv_free == nbits_cache_free ? c->n->priv : NULL;
	if (nc && cacheable) {
		w = nc->w;
	} else {
		w = malloc((size_t)(N * K) * sizeof(float) + 1);
		if (!w)
			return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		if ((rc = nbits_dequant(c, K, N, bits, bs, w))) {
			free(w);
			return rc;
		}
		if (cacheable && !c->n->priv && (nc = calloc(1, sizeof(*nc)))) {
			nc->w = w;
			c->n->priv = nc;
			c->n->priv_free = nbits_cache_free;
		}
	}
	int64_t dims[QD_MAX_DIMS];
	memcpy(dims, a->dims, (size_t)a->ndim * sizeof(int64_t));
	dims[a->ndim - 1] = N;
	int64_t M = K ? qd_tensor_count(a) / K : 0;
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, a->ndim, dims);
	if (!y) {
		rc = -c->err->code;
		goto out;
	}
	float *yd = y->data;
	qd_gemm_f32(false, true, M, N, K, 1.0f, a->data, K, w, K, 0.0f, yd, N);
	if (bias)
		for (int64_t m = 0; m < M; m++)
			for (int64_t n = 0; n < N; n++)
				yd[m * N + n] += bias[n];
	rc = 0;
out:
	if (!(c->n->priv_free == nbits_cache_free && c->n->priv && ((struct nbits_cache *)c->n->priv)->w == w))
		free(w);
	return rc;
}

/* ---- GatherBlockQuantized ---------------------------------------------------------- */
/* com.microsoft.GatherBlockQuantized with uint8 data (MatMulNBits' conventions: 4-bit codes
 * two per byte, low nibble first, or 8-bit codes; packed uint8 zero points, default
 * 2^(bits-1)). Rows along gather_axis 0 are dequantized as they are gathered, blocks of
 * block_size along the last axis (quantize_axis); the 4-bit tensor types (int4 / uint4
 * data) are not supported. */

int qd_check_gather_block_quantized(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const Onnx__NodeProto *np = n->proto;
	int64_t bits = qd_node_attr_int(np, "bits", 4), bs = qd_node_attr_int(np, "block_size", 128);
	(void)in_dt;
	if (bits != 4 && bits != 8)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (GatherBlockQuantized): bits %lld not "
				  "supported (4 or 8)", n->name, (long long)bits);
	if (bs < 16 || (bs & (bs - 1)))
		return qd_err_set(err, QD_EMODEL, n->name, "node '%s' (GatherBlockQuantized): block_size %lld is not "
				  "a power of 2 >= 16", n->name, (long long)bs);
	if (qd_node_attr_int(np, "gather_axis", 0) != 0)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (GatherBlockQuantized): gather_axis must "
				  "be 0", n->name);
	out_dt[0] = QD_DT_FLOAT;
	return 0;
}

int qd_op_gather_block_quantized(struct qd_ctx *c)
{
	const struct qd_tensor *D = qd_ctx_in(c, 0), *I = qd_ctx_in(c, 1), *S = qd_ctx_in(c, 2);
	const struct qd_tensor *Z = c->n_in > 3 ? c->in[3] : NULL;
	if (!D || !I || !S)
		return -c->err->code;
	const Onnx__NodeProto *np = c->n->proto;
	int64_t bits = qd_node_attr_int(np, "bits", 4), bs = qd_node_attr_int(np, "block_size", 128);
	int64_t qa = qd_node_attr_int(np, "quantize_axis", 1);
	if (D->ndim < 2 || (qa != D->ndim - 1 && qa != -1))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "data of rank %d with quantize_axis %lld: uint8 data is "
				   "quantized along its last axis", D->ndim, (long long)qa);
	if (I->dtype != QD_DT_INT64 && I->dtype != QD_DT_INT32)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "indices must be int32 or int64, not %s", qd_dtype_name(I->dtype));
	if (S->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "scales must be float32, not %s", qd_dtype_name(S->dtype));
	int64_t rows = D->dims[0], cols = D->dims[D->ndim - 1] * 8 / bits, lines = qd_tensor_count(D) /
		       (D->dims[D->ndim - 1] ? D->dims[D->ndim - 1] : 1);
	int64_t per_row = lines / (rows ? rows : 1);          /* lines of one gathered row */
	int64_t nb = (cols + bs - 1) / bs, zline = (nb * bits + 7) / 8, bline = cols * bits / 8;
	if (qd_tensor_count(S) != lines * nb)
		return qd_ctx_fail(c, QD_ESHAPE, "scales must have %lld x %lld elements (one per block)",
				   (long long)lines, (long long)nb);
	if (Z && (Z->dtype != QD_DT_UINT8 || qd_tensor_count(Z) != lines * zline))
		return qd_ctx_fail(c, QD_ESHAPE, "zero_points must be uint8 with %lld x %lld elements (packed)",
				   (long long)lines, (long long)zline);
	int64_t dims[QD_MAX_DIMS];
	int nd = 0;
	if (I->ndim + D->ndim - 1 > QD_MAX_DIMS)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "output rank %d exceeds %d", I->ndim + D->ndim - 1, QD_MAX_DIMS);
	for (int k = 0; k < I->ndim; k++)
		dims[nd++] = I->dims[k];
	for (int k = 1; k < D->ndim; k++)
		dims[nd++] = k == D->ndim - 1 ? cols : D->dims[k];
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, nd, dims);
	if (!y)
		return -c->err->code;
	const uint8_t *dd = D->data, *zd = Z ? Z->data : NULL;
	const float *sd = S->data;
	float *yd = y->data;
	uint32_t mask = (1u << bits) - 1;
	float dflt = (float)(1 << (bits - 1));
	int64_t ni = qd_tensor_count(I);
	for (int64_t i = 0; i < ni; i++) {
		int64_t r = I->dtype == QD_DT_INT64 ? ((const int64_t *)I->data)[i] : ((const int32_t *)I->data)[i];
		if (r < -rows || r >= rows)
			return qd_ctx_fail(c, QD_EINVAL, "index %lld out of range [-%lld, %lld)", (long long)r,
					   (long long)rows, (long long)rows);
		if (r < 0)
			r += rows;
		for (int64_t l = r * per_row; l < (r + 1) * per_row; l++) {
			const uint8_t *q = dd + l * bline;
			for (int64_t b = 0; b < nb; b++) {
				float s = sd[l * nb + b], z = dflt;
				if (zd) {
					int64_t bit = b * bits;
					z = (float)((zd[l * zline + bit / 8] >> (bit % 8)) & mask);
				}
				int64_t k1 = QD_MIN(cols, (b + 1) * bs);
				for (int64_t k = b * bs; k < k1; k++) {
					int64_t bit = k * bits;
					*yd++ = ((float)((q[bit / 8] >> (bit % 8)) & mask) - z) * s;
				}
			}
		}
	}
	return 0;
}
