/* engine/ops_elementwise.c — elementwise kernels: binary arithmetic, comparisons and
 * logic with numpy broadcasting (one generic broadcast walk, per-dtype inner loops),
 * variadic Min/Max/Sum/Mean, Where, and the unary math/activation ops. */
/* hot loops: let GCC vectorise with runtime alias checks (-O2 uses the "very cheap"
 * cost model that refuses them) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno", "fp-contract=off")
#endif
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "engine/engine_internal.h"

enum bin_op {
	B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MIN, B_MAX, B_MOD, B_FMOD,
	B_PRELU, B_SHL, B_SHR,
	B_EQ, B_LT, B_GT, B_LE, B_GE, B_AND, B_OR, B_XOR,
};

struct bin_run {
	enum bin_op op;
	const struct qd_tensor *a, *b;
	struct qd_tensor *o;
};

/* Inner loop over one run with strides 0/1, specialised for the common stride pairs. */
#define RUN_LOOP(T, OT, EXPR) do { \
	const T *A = (const T *)r->a->data + iofs[0]; \
	const T *B = (const T *)r->b->data + iofs[1]; \
	OT *O = (OT *)r->o->data + oofs; \
	int64_t sa = istr[0], sb = istr[1]; \
	if (sa == 1 && sb == 1) for (int64_t j = 0; j < n; j++) { T x = A[j], y = B[j]; O[j] = (OT)(EXPR); } \
	else if (sa == 1 && sb == 0) { T y = B[0]; for (int64_t j = 0; j < n; j++) { T x = A[j]; O[j] = (OT)(EXPR); } } \
	else if (sa == 0 && sb == 1) { T x = A[0]; for (int64_t j = 0; j < n; j++) { T y = B[j]; O[j] = (OT)(EXPR); } } \
	else for (int64_t j = 0; j < n; j++) { T x = A[j * sa], y = B[j * sb]; O[j] = (OT)(EXPR); } \
} while (0)

/* integer division/modulo never trap: x/0 = 0, MIN/-1 wraps */
#define IDIV(T, x, y) ((y) == 0 ? (T)0 : (y) == (T)-1 ? (T)(0 - (x)) : (T)((x) / (y)))
#define IMOD_FLOOR(T, x, y) ((y) == 0 ? (T)0 : (y) == (T)-1 ? (T)0 : \
	(T)((((x) % (y)) != 0 && ((((x) % (y)) < 0) != ((y) < 0))) ? ((x) % (y)) + (y) : ((x) % (y))))
#define IFMOD(T, x, y) ((y) == 0 ? (T)0 : (y) == (T)-1 ? (T)0 : (T)((x) % (y)))

#define UDIV(T, x, y) ((y) == 0 ? (T)0 : (T)((x) / (y)))
#define UMOD(T, x, y) ((y) == 0 ? (T)0 : (T)((x) % (y)))

#define INT_ARITH(T, DIVX, MODX, FMODX) \
	switch (r->op) { \
	case B_ADD: RUN_LOOP(T, T, (uint64_t)x + (uint64_t)y); break; /* wraps, no UB */ \
	case B_SUB: RUN_LOOP(T, T, (uint64_t)x - (uint64_t)y); break; \
	case B_MUL: RUN_LOOP(T, T, (uint64_t)x * (uint64_t)y); break; \
	case B_DIV: RUN_LOOP(T, T, DIVX(T, x, y)); break; \
	case B_MIN: RUN_LOOP(T, T, x < y ? x : y); break; \
	case B_MAX: RUN_LOOP(T, T, x > y ? x : y); break; \
	case B_MOD: RUN_LOOP(T, T, MODX(T, x, y)); break; \
	case B_FMOD: RUN_LOOP(T, T, FMODX(T, x, y)); break; \
	case B_PRELU: RUN_LOOP(T, T, x < (T)1 && x != 0 ? (T)((uint64_t)x * (uint64_t)y) : x); break; \
	case B_SHL: RUN_LOOP(T, T, (uint64_t)y >= 8 * sizeof(T) ? (T)0 : (T)(x << y)); break; \
	case B_SHR: RUN_LOOP(T, T, (uint64_t)y >= 8 * sizeof(T) ? (T)0 : (T)(x >> y)); break; \
	case B_EQ: RUN_LOOP(T, uint8_t, x == y); break; \
	case B_LT: RUN_LOOP(T, uint8_t, x < y); break; \
	case B_GT: RUN_LOOP(T, uint8_t, x > y); break; \
	case B_LE: RUN_LOOP(T, uint8_t, x <= y); break; \
	case B_GE: RUN_LOOP(T, uint8_t, x >= y); break; \
	default: break; \
	}

#define FLT_ARITH(T, FMIN, FMAX, FMODF) \
	switch (r->op) { \
	case B_ADD: RUN_LOOP(T, T, x + y); break; \
	case B_SUB: RUN_LOOP(T, T, x - y); break; \
	case B_MUL: RUN_LOOP(T, T, x * y); break; \
	case B_DIV: RUN_LOOP(T, T, x / y); break; \
	case B_MIN: RUN_LOOP(T, T, (isnan(x) || isnan(y)) ? (T)NAN : FMIN(x, y)); break; \
	case B_MAX: RUN_LOOP(T, T, (isnan(x) || isnan(y)) ? (T)NAN : FMAX(x, y)); break; \
	case B_FMOD: RUN_LOOP(T, T, FMODF(x, y)); break; \
	case B_PRELU: RUN_LOOP(T, T, x < 0 ? x * y : x); break; \
	case B_EQ: RUN_LOOP(T, uint8_t, x == y); break; \
	case B_LT: RUN_LOOP(T, uint8_t, x < y); break; \
	case B_GT: RUN_LOOP(T, uint8_t, x > y); break; \
	case B_LE: RUN_LOOP(T, uint8_t, x <= y); break; \
	case B_GE: RUN_LOOP(T, uint8_t, x >= y); break; \
	default: break; \
	}

static QD_VEC_CLONES void bin_run_fn(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr, int64_t n)
{
	struct bin_run *r = ud;
	switch (r->a->dtype) {
	case QD_DT_FLOAT:
		if (r->op == B_POW) { RUN_LOOP(float, float, y == 2.0f ? x * x : powf(x, y)); break; }
		FLT_ARITH(float, fminf, fmaxf, fmodf);
		break;
	case QD_DT_DOUBLE:
		if (r->op == B_POW) { RUN_LOOP(double, double, pow(x, y)); break; }
		FLT_ARITH(double, fmin, fmax, fmod);
		break;
	case QD_DT_INT8: INT_ARITH(int8_t, IDIV, IMOD_FLOOR, IFMOD); break;
	case QD_DT_UINT8: INT_ARITH(uint8_t, UDIV, UMOD, UMOD); break;
	case QD_DT_INT16: INT_ARITH(int16_t, IDIV, IMOD_FLOOR, IFMOD); break;
	case QD_DT_UINT16: INT_ARITH(uint16_t, UDIV, UMOD, UMOD); break;
	case QD_DT_INT32: INT_ARITH(int32_t, IDIV, IMOD_FLOOR, IFMOD); break;
	case QD_DT_UINT32: INT_ARITH(uint32_t, UDIV, UMOD, UMOD); break;
	case QD_DT_INT64: INT_ARITH(int64_t, IDIV, IMOD_FLOOR, IFMOD); break;
	case QD_DT_UINT64: INT_ARITH(uint64_t, UDIV, UMOD, UMOD); break;
	case QD_DT_BOOL:
		switch (r->op) {
		case B_AND: RUN_LOOP(uint8_t, uint8_t, x && y); break;
		case B_OR: RUN_LOOP(uint8_t, uint8_t, x || y); break;
		case B_XOR: RUN_LOOP(uint8_t, uint8_t, (!x) != (!y)); break;
		case B_EQ: RUN_LOOP(uint8_t, uint8_t, (!x) == (!y)); break;
		default: break;
		}
		break;
	default: break;
	}
}

/* Pow with mixed base/exponent dtypes: through double. */
struct pow_run { const struct qd_tensor *a, *b; struct qd_tensor *o; };
static void pow_mixed_fn(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr, int64_t n)
{
	struct pow_run *r = ud;
	for (int64_t j = 0; j < n; j++) {
		double x = qd_tensor_get_f64(r->a, iofs[0] + j * istr[0]);
		double y = qd_tensor_get_f64(r->b, iofs[1] + j * istr[1]);
		double v = pow(x, y);
		if (qd_dtype_is_int(r->o->dtype)) qd_tensor_set_i64(r->o, oofs + j, qd_f2i(v));
		else qd_tensor_set_f64(r->o, oofs + j, v);
	}
}

static bool op_is_cmp(enum bin_op op)
{
	return op >= B_EQ;
}

/* out = a op b into output slot oi (or into *dst when dst is not NULL). */
static int binary_into(struct qd_ctx *c, enum bin_op op, const struct qd_tensor *a,
		       const struct qd_tensor *b, struct qd_tensor *dst)
{
	int64_t od[QD_MAX_DIMS], st[2][QD_MAX_DIMS];
	int nd;
	char b1[128], b2[128];
	if (a->dtype != b->dtype && op != B_POW)
		return qd_ctx_fail(c, QD_EINVAL, "inputs have different dtypes %s and %s",
				   qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
	if (qd_broadcast_shape(a->ndim, a->dims, b->ndim, b->dims, &nd, od))
		return qd_ctx_fail(c, QD_ESHAPE, "shapes %s and %s are not broadcastable",
				   qd_dims_str(a->ndim, a->dims, b1, sizeof(b1)),
				   qd_dims_str(b->ndim, b->dims, b2, sizeof(b2)));
	int odt = op_is_cmp(op) || op == B_AND || op == B_OR || op == B_XOR ? QD_DT_BOOL : a->dtype;
	if ((op == B_AND || op == B_OR || op == B_XOR) && a->dtype != QD_DT_BOOL)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "dtype %s not supported", qd_dtype_name(a->dtype));
	struct qd_tensor tmp, *o;
	if (dst) {
		if (qd_tensor_alloc_raw(&tmp, NULL, odt, nd, od))
			return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		o = &tmp;
	} else if (!(o = qd_ctx_out(c, 0, odt, nd, od)))
		return -c->err->code;
	qd_broadcast_strides(a->ndim, a->dims, nd, od, st[0]);
	qd_broadcast_strides(b->ndim, b->dims, nd, od, st[1]);
	if (op == B_POW && (a->dtype != b->dtype || qd_dtype_is_int(a->dtype))) {
		struct pow_run r = { a, b, o };
		qd_broadcast_for_mt(2, nd, od, st, pow_mixed_fn, &r);
	} else {
		struct bin_run r = { op, a, b, o };
		qd_broadcast_for_mt(2, nd, od, st, bin_run_fn, &r);
	}
	if (dst) { qd_tensor_release(dst); *dst = tmp; }
	return 0;
}

static int binary(struct qd_ctx *c, enum bin_op op)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 1);
	if (!a || !b) return -c->err->code;
	return binary_into(c, op, a, b, NULL);
}

int qd_op_add(struct qd_ctx *c) { return binary(c, B_ADD); }
int qd_op_sub(struct qd_ctx *c) { return binary(c, B_SUB); }
int qd_op_mul(struct qd_ctx *c) { return binary(c, B_MUL); }
int qd_op_div(struct qd_ctx *c) { return binary(c, B_DIV); }
int qd_op_pow(struct qd_ctx *c) { return binary(c, B_POW); }
int qd_op_equal(struct qd_ctx *c) { return binary(c, B_EQ); }
int qd_op_prelu(struct qd_ctx *c) { return binary(c, B_PRELU); }

int qd_check_bitshift(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const char *d = qd_node_attr_string(n->proto, "direction", "");
	if (strcmp(d, "LEFT") && strcmp(d, "RIGHT"))
		return qd_err_set(err, QD_EMODEL, n->name, "node '%s' (BitShift): direction must be LEFT or RIGHT", n->name);
	return 0;
}

int qd_op_bitshift(struct qd_ctx *c)
{
	return binary(c, strcmp(qd_node_attr_string(c->n->proto, "direction", ""), "LEFT") ? B_SHR : B_SHL);
}
int qd_op_less(struct qd_ctx *c) { return binary(c, B_LT); }
int qd_op_greater(struct qd_ctx *c) { return binary(c, B_GT); }
int qd_op_less_equal(struct qd_ctx *c) { return binary(c, B_LE); }
int qd_op_greater_equal(struct qd_ctx *c) { return binary(c, B_GE); }
int qd_op_and(struct qd_ctx *c) { return binary(c, B_AND); }
int qd_op_or(struct qd_ctx *c) { return binary(c, B_OR); }
int qd_op_xor(struct qd_ctx *c) { return binary(c, B_XOR); }

int qd_op_mod(struct qd_ctx *c)
{
	bool fm = qd_node_attr_int(c->n->proto, "fmod", 0) != 0;
	const struct qd_tensor *a = qd_ctx_in(c, 0);
	if (!a) return -c->err->code;
	if (qd_dtype_is_float(a->dtype) && !fm)
		return qd_ctx_fail(c, QD_EINVAL, "float Mod needs fmod=1");
	return binary(c, fm ? B_FMOD : B_MOD);
}

int qd_check_mod(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	if (in_dt[0] && qd_dtype_is_float(in_dt[0]) && !qd_node_attr_int(n->proto, "fmod", 0))
		return qd_err_set(err, QD_EMODEL, n->name, "node '%s' (Mod): float inputs need fmod=1", n->name);
	return 0;
}

/* Min / Max / Sum / Mean over 1..N inputs (opset 8+ broadcasting). */
static int variadic(struct qd_ctx *c, enum bin_op op, bool mean)
{
	if (c->n_in < 1 || !c->in[0]) return qd_ctx_fail(c, QD_EMODEL, "needs at least one input");
	struct qd_tensor acc;
	const struct qd_tensor *a0 = c->in[0];
	if (qd_tensor_alloc_raw(&acc, NULL, a0->dtype, a0->ndim, a0->dims))
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	memcpy(acc.data, a0->data, a0->nbytes);
	for (int i = 1; i < c->n_in; i++) {
		if (!c->in[i]) continue;
		int rc = binary_into(c, op, &acc, c->in[i], &acc);
		if (rc) { qd_tensor_release(&acc); return rc; }
	}
	if (mean) {
		int64_t n = qd_tensor_count(&acc);
		for (int64_t k = 0; k < n; k++)
			qd_tensor_set_f64(&acc, k, qd_tensor_get_f64(&acc, k) / c->n_in);
	}
	qd_tensor_release(c->out[0]);
	*c->out[0] = acc;
	return 0;
}

int qd_op_min(struct qd_ctx *c) { return variadic(c, B_MIN, false); }
int qd_op_max(struct qd_ctx *c) { return variadic(c, B_MAX, false); }
int qd_op_sum(struct qd_ctx *c) { return variadic(c, B_ADD, false); }
int qd_op_mean(struct qd_ctx *c) { return variadic(c, B_ADD, true); }

/* Where(cond, x, y) */
struct where_run { const struct qd_tensor *c, *x, *y; struct qd_tensor *o; size_t es; };
static void where_fn(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr, int64_t n)
{
	struct where_run *r = ud;
	const uint8_t *C = (const uint8_t *)r->c->data;
	const char *X = r->x->data, *Y = r->y->data;
	char *O = r->o->data;
	size_t es = r->es;
	for (int64_t j = 0; j < n; j++) {
		bool t = C[iofs[0] + j * istr[0]];
		const char *src = t ? X + (iofs[1] + j * istr[1]) * es : Y + (iofs[2] + j * istr[2]) * es;
		memcpy(O + (oofs + j) * es, src, es);
	}
}

int qd_op_where(struct qd_ctx *c)
{
	const struct qd_tensor *cd = qd_ctx_in(c, 0), *x = qd_ctx_in(c, 1), *y = qd_ctx_in(c, 2);
	if (!cd || !x || !y) return -c->err->code;
	if (cd->dtype != QD_DT_BOOL) return qd_ctx_fail(c, QD_EINVAL, "condition must be bool");
	if (x->dtype != y->dtype) return qd_ctx_fail(c, QD_EINVAL, "X and Y dtypes differ");
	int64_t t[QD_MAX_DIMS], od[QD_MAX_DIMS], st[3][QD_MAX_DIMS];
	int nt, nd;
	if (qd_broadcast_shape(cd->ndim, cd->dims, x->ndim, x->dims, &nt, t) ||
	    qd_broadcast_shape(nt, t, y->ndim, y->dims, &nd, od))
		return qd_ctx_fail(c, QD_ESHAPE, "shapes are not broadcastable");
	struct qd_tensor *o = qd_ctx_out(c, 0, x->dtype, nd, od);
	if (!o) return -c->err->code;
	qd_broadcast_strides(cd->ndim, cd->dims, nd, od, st[0]);
	qd_broadcast_strides(x->ndim, x->dims, nd, od, st[1]);
	qd_broadcast_strides(y->ndim, y->dims, nd, od, st[2]);
	struct where_run r = { cd, x, y, o, qd_dtype_size(x->dtype) };
	qd_broadcast_for_mt(3, nd, od, st, where_fn, &r);
	return 0;
}

/* ---- unary ---- */
enum un_op {
	U_RELU, U_SQRT, U_EXP, U_LOG, U_ERF, U_TANH, U_SIGMOID, U_NEG, U_ABS, U_RECIP,
	U_FLOOR, U_CEIL, U_ROUND, U_LEAKY, U_HSIG, U_HSWISH, U_CLIP, U_ELU, U_SELU, U_SOFTPLUS,
	U_SOFTSIGN, U_SIN, U_COS, U_NOT, U_SIGN, U_THRELU, U_CELU, U_GELU,
	U_TAN, U_ASIN, U_ACOS, U_ATAN, U_SINH, U_COSH, U_ASINH, U_ACOSH, U_ATANH, U_SHRINK,
};

struct un_par { float alpha, beta, gamma, lo, hi; };
#define TRIG_CASES(F, SUF) \
	case U_TAN: return F(tan, SUF)(x); case U_ASIN: return F(asin, SUF)(x); \
	case U_ACOS: return F(acos, SUF)(x); case U_ATAN: return F(atan, SUF)(x); \
	case U_SINH: return F(sinh, SUF)(x); case U_COSH: return F(cosh, SUF)(x); \
	case U_ASINH: return F(asinh, SUF)(x); case U_ACOSH: return F(acosh, SUF)(x); \
	case U_ATANH: return F(atanh, SUF)(x);
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* erf: odd rational x * P(x^2) / Q(x^2) on x clamped to [-4, 4] (least-squares fit in
 * relative error, max relative error 4.3e-7 in float arithmetic; |erf| < 1 - 1.6e-8 beyond
 * 4 so 1 is the float answer), result clamped to [-1, 1]. No exp, one division. NaN
 * passes through (comparisons false). */
static inline float qd_erff(float x)
{
	float c = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x, t = c * c;
	float p = 2.0446568669285625e-06f;
	p = p * t + 2.837431675288826e-04f;
	p = p * t + 3.7413588725030422e-03f;
	p = p * t + 5.266629159450531e-02f;
	p = p * t + 1.8991267681121826e-01f;
	p = p * t + 1.1283791065216064f;
	float q = 3.797954923356883e-05f;
	q = q * t + 1.1556873796507716e-03f;
	q = q * t + 1.4919072389602661e-02f;
	q = q * t + 1.1388980597257614e-01f;
	q = q * t + 5.016385316848755e-01f;
	q = q * t + 1.0f;
	float r = c * p / q;
	return r > 1.0f ? 1.0f : r < -1.0f ? -1.0f : r;
}

static inline float un_f(enum un_op op, float x, const struct un_par *p)
{
	switch (op) {
	case U_RELU: return x > 0 ? x : 0;
	case U_SQRT: return sqrtf(x);
	case U_EXP: return expf(x);
	case U_LOG: return logf(x);
	case U_ERF: return erff(x);
	case U_TANH: return tanhf(x);
	case U_SIGMOID: return x >= 0 ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
	case U_NEG: return -x;
	case U_ABS: return fabsf(x);
	case U_RECIP: return 1.0f / x;
	case U_FLOOR: return floorf(x);
	case U_CEIL: return ceilf(x);
	case U_ROUND: return nearbyintf(x);
	case U_LEAKY: return x >= 0 ? x : p->alpha * x;
	case U_HSIG: return fmaxf(0.0f, fminf(1.0f, p->alpha * x + p->beta));
	case U_HSWISH: return x * fmaxf(0.0f, fminf(1.0f, x / 6.0f + 0.5f));
	case U_CLIP: return x < p->lo ? p->lo : x > p->hi ? p->hi : x;
	case U_ELU: return x >= 0 ? x : p->alpha * (expf(x) - 1.0f);
	case U_SELU: return x > 0 ? p->gamma * x : p->gamma * (p->alpha * expf(x) - p->alpha);
	case U_SOFTPLUS: return x > 20 ? x : log1pf(expf(x));
	case U_SOFTSIGN: return x / (1.0f + fabsf(x));
	case U_SIN: return sinf(x);
	case U_COS: return cosf(x);
	case U_SIGN: return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;
	case U_THRELU: return x > p->alpha ? x : 0;
	case U_CELU: return fmaxf(0.0f, x) + fminf(0.0f, p->alpha * (expf(x / p->alpha) - 1.0f));
	case U_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
	case U_SHRINK: return x < -p->alpha ? x + p->beta : x > p->alpha ? x - p->beta : 0.0f;
	TRIG_CASES(CAT, f)
	default: return x;
	}
}

static inline double un_d(enum un_op op, double x, const struct un_par *p)
{
	switch (op) {
	case U_RELU: return x > 0 ? x : 0;
	case U_SQRT: return sqrt(x);
	case U_EXP: return exp(x);
	case U_LOG: return log(x);
	case U_ERF: return erf(x);
	case U_TANH: return tanh(x);
	case U_SIGMOID: return 1.0 / (1.0 + exp(-x));
	case U_NEG: return -x;
	case U_ABS: return fabs(x);
	case U_RECIP: return 1.0 / x;
	case U_FLOOR: return floor(x);
	case U_CEIL: return ceil(x);
	case U_ROUND: return nearbyint(x);
	case U_LEAKY: return x >= 0 ? x : p->alpha * x;
	case U_HSIG: return fmax(0.0, fmin(1.0, p->alpha * x + p->beta));
	case U_HSWISH: return x * fmax(0.0, fmin(1.0, x / 6.0 + 0.5));
	case U_CLIP: return x < p->lo ? p->lo : x > p->hi ? p->hi : x;
	case U_ELU: return x >= 0 ? x : p->alpha * (exp(x) - 1.0);
	case U_SELU: return x > 0 ? p->gamma * x : p->gamma * (p->alpha * exp(x) - p->alpha);
	case U_SOFTPLUS: return log1p(exp(x));
	case U_SOFTSIGN: return x / (1.0 + fabs(x));
	case U_SIN: return sin(x);
	case U_COS: return cos(x);
	case U_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
	case U_THRELU: return x > p->alpha ? x : 0;
	case U_CELU: return fmax(0.0, x) + fmin(0.0, p->alpha * (exp(x / p->alpha) - 1.0));
	case U_GELU: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
	case U_SHRINK: return x < -p->alpha ? x + p->beta : x > p->alpha ? x - p->beta : 0.0;
	TRIG_CASES(CAT, )
	default: return x;
	}
}

#define UN_INT(T) UN_INTX(T, v < 0)
#define UN_UINT(T) UN_INTX(T, 0)
#define UN_INTX(T, NEG) do { const T *X = x->data; T *O = o->data; \
	for (int64_t i = 0; i < n; i++) { T v = X[i]; \
		switch (op) { \
		case U_RELU: O[i] = (NEG) ? 0 : v; break; \
		case U_NEG: O[i] = (T)(0 - v); break; \
		case U_ABS: O[i] = (NEG) ? (T)(0 - v) : v; break; \
		case U_SIGN: O[i] = (T)(v == 0 ? 0 : (NEG) ? -1 : 1); break; \
		case U_CLIP: O[i] = (double)v < p.lo ? (T)p.lo : (double)v > p.hi ? (T)p.hi : v; break; \
		default: O[i] = v; break; } } } while (0)

/* Float unary loops; the hot ones vectorise (an AVX2 clone where the CPU has it: same
 * operations, no FMA contraction, so the same values as the baseline clone). */
static QD_VEC_CLONES_WIDE void unary_f32(enum un_op op, const float *X, float *O, int64_t n, struct un_par p)
{
	switch (op) { /* hot ones get their own loops */
	case U_RELU: for (int64_t i = 0; i < n; i++) O[i] = X[i] > 0 ? X[i] : 0; break;
	case U_CLIP: for (int64_t i = 0; i < n; i++) { float v = X[i]; O[i] = v < p.lo ? p.lo : v > p.hi ? p.hi : v; } break;
	case U_HSIG: for (int64_t i = 0; i < n; i++) O[i] = fmaxf(0.0f, fminf(1.0f, p.alpha * X[i] + p.beta)); break;
	case U_ERF: for (int64_t i = 0; i < n; i++) O[i] = qd_erff(X[i]); break;
	case U_EXP: for (int64_t i = 0; i < n; i++) O[i] = qd_expf(X[i]); break;
	case U_SIGMOID:
		for (int64_t i = 0; i < n; i++) {
			float e = qd_expf(-fabsf(X[i]));   /* in (0, 1]: no overflow */
			O[i] = X[i] >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
		}
		break;
	default: for (int64_t i = 0; i < n; i++) O[i] = un_f(op, X[i], &p); break;
	}
}

/* GELU fused on an Erf node (engine/fuse_float.c): the chain's operations in its order,
 * so the values equal the unfused ones. */
QD_VEC_CLONES_WIDE void qd_gelu_f32(const struct qd_epi_step *s, const float *X, float *O, int64_t n)
{
	float a = s->a, b = s->b, c = s->c;
	if (s->kind == QD_EPI_GELU_DIV)
		for (int64_t i = 0; i < n; i++) O[i] = (X[i] * (qd_erff(X[i] / a) + b)) * c;
	else
		for (int64_t i = 0; i < n; i++) O[i] = (X[i] * (qd_erff(X[i] * a) + b)) * c;
}

void qd_gelu_f32_ref(const struct qd_epi_step *s, const float *X, float *O, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float t = s->kind == QD_EPI_GELU_DIV ? X[i] / s->a : X[i] * s->a;
		float e = qd_erff(t) + s->b;
		O[i] = (X[i] * e) * s->c;
	}
}

/* The float unary loops over a range of elements (threads split the tensor, each element
 * computed as in one call). */
struct un_mt { enum un_op op; const float *X; float *O; struct un_par p; const struct qd_epi_step *gelu; };

static void unary_f32_chunk(void *ctx, int64_t lo, int64_t hi)
{
	const struct un_mt *u = ctx;
	if (u->gelu) qd_gelu_f32(u->gelu, u->X + lo, u->O + lo, hi - lo);
	else unary_f32(u->op, u->X + lo, u->O + lo, hi - lo, u->p);
}

static int unary(struct qd_ctx *c, enum un_op op, struct un_par p)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	struct qd_tensor *o = qd_ctx_out(c, 0, x->dtype, x->ndim, x->dims);
	if (!o) return -c->err->code;
	int64_t n = qd_tensor_count(x);
	switch (x->dtype) {
	case QD_DT_FLOAT: {
		struct un_mt u = { op, x->data, o->data, p, op == U_ERF && c->n->epi.n ? &c->n->epi.s[0] : NULL };
		qd_parallel_for(n, 1 << 15, unary_f32_chunk, &u);
		break;
	}
	case QD_DT_DOUBLE: {
		const double *X = x->data;
		double *O = o->data;
		if (op == U_ERF && c->n->epi.n) {   /* fused GELU, as the unfused double ops */
			const struct qd_epi_step *s = &c->n->epi.s[0];
			double a = s->a, b = s->b, cc = s->c;
			for (int64_t i = 0; i < n; i++)
				O[i] = (X[i] * (erf(s->kind == QD_EPI_GELU_DIV ? X[i] / a : X[i] * a) + b)) * cc;
			break;
		}
		for (int64_t i = 0; i < n; i++) O[i] = un_d(op, X[i], &p);
		break;
	}
	case QD_DT_BOOL: {
		const uint8_t *X = x->data;
		uint8_t *O = o->data;
		for (int64_t i = 0; i < n; i++) O[i] = op == U_NOT ? !X[i] : X[i];
		break;
	}
	case QD_DT_INT8: UN_INT(int8_t); break;
	case QD_DT_UINT8: UN_UINT(uint8_t); break;
	case QD_DT_INT16: UN_INT(int16_t); break;
	case QD_DT_UINT16: UN_UINT(uint16_t); break;
	case QD_DT_INT32: UN_INT(int32_t); break;
	case QD_DT_UINT32: UN_UINT(uint32_t); break;
	case QD_DT_INT64: UN_INT(int64_t); break;
	case QD_DT_UINT64: UN_UINT(uint64_t); break;
	default:
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "dtype %s not supported", qd_dtype_name(x->dtype));
	}
	return 0;
}

static const struct un_par NOPAR = {0};
static float attr_f(struct qd_ctx *c, const char *n, float d) { return qd_node_attr_float(c->n->proto, n, d); }

int qd_op_relu(struct qd_ctx *c) { return unary(c, U_RELU, NOPAR); }
int qd_op_sqrt(struct qd_ctx *c) { return unary(c, U_SQRT, NOPAR); }
int qd_op_exp(struct qd_ctx *c) { return unary(c, U_EXP, NOPAR); }
int qd_op_log(struct qd_ctx *c) { return unary(c, U_LOG, NOPAR); }
int qd_op_erf(struct qd_ctx *c) { return unary(c, U_ERF, NOPAR); }
int qd_op_tanh(struct qd_ctx *c) { return unary(c, U_TANH, NOPAR); }
int qd_op_sigmoid(struct qd_ctx *c) { return unary(c, U_SIGMOID, NOPAR); }
int qd_op_neg(struct qd_ctx *c) { return unary(c, U_NEG, NOPAR); }
int qd_op_abs(struct qd_ctx *c) { return unary(c, U_ABS, NOPAR); }
int qd_op_reciprocal(struct qd_ctx *c) { return unary(c, U_RECIP, NOPAR); }
int qd_op_floor(struct qd_ctx *c) { return unary(c, U_FLOOR, NOPAR); }
int qd_op_ceil(struct qd_ctx *c) { return unary(c, U_CEIL, NOPAR); }
int qd_op_round(struct qd_ctx *c) { return unary(c, U_ROUND, NOPAR); }
int qd_op_not(struct qd_ctx *c) { return unary(c, U_NOT, NOPAR); }
int qd_op_sign(struct qd_ctx *c) { return unary(c, U_SIGN, NOPAR); }
int qd_op_sin(struct qd_ctx *c) { return unary(c, U_SIN, NOPAR); }
int qd_op_cos(struct qd_ctx *c) { return unary(c, U_COS, NOPAR); }
int qd_op_tan(struct qd_ctx *c) { return unary(c, U_TAN, NOPAR); }
int qd_op_asin(struct qd_ctx *c) { return unary(c, U_ASIN, NOPAR); }
int qd_op_acos(struct qd_ctx *c) { return unary(c, U_ACOS, NOPAR); }
int qd_op_atan(struct qd_ctx *c) { return unary(c, U_ATAN, NOPAR); }
int qd_op_sinh(struct qd_ctx *c) { return unary(c, U_SINH, NOPAR); }
int qd_op_cosh(struct qd_ctx *c) { return unary(c, U_COSH, NOPAR); }
int qd_op_asinh(struct qd_ctx *c) { return unary(c, U_ASINH, NOPAR); }
int qd_op_acosh(struct qd_ctx *c) { return unary(c, U_ACOSH, NOPAR); }
int qd_op_atanh(struct qd_ctx *c) { return unary(c, U_ATANH, NOPAR); }
int qd_op_shrink(struct qd_ctx *c)
{
	return unary(c, U_SHRINK, (struct un_par){ .alpha = attr_f(c, "lambd", 0.5f), .beta = attr_f(c, "bias", 0.0f) });
}
int qd_op_softplus(struct qd_ctx *c) { return unary(c, U_SOFTPLUS, NOPAR); }
int qd_op_softsign(struct qd_ctx *c) { return unary(c, U_SOFTSIGN, NOPAR); }
int qd_op_hard_swish(struct qd_ctx *c) { return unary(c, U_HSWISH, NOPAR); }
int qd_op_leaky_relu(struct qd_ctx *c)
{
	return unary(c, U_LEAKY, (struct un_par){ .alpha = attr_f(c, "alpha", 0.01f) });
}
int qd_op_hard_sigmoid(struct qd_ctx *c)
{
	return unary(c, U_HSIG, (struct un_par){ .alpha = attr_f(c, "alpha", 0.2f),
						 .beta = attr_f(c, "beta", 0.5f) });
}
int qd_op_elu(struct qd_ctx *c)
{
	return unary(c, U_ELU, (struct un_par){ .alpha = attr_f(c, "alpha", 1.0f) });
}
int qd_op_celu(struct qd_ctx *c)
{
	return unary(c, U_CELU, (struct un_par){ .alpha = attr_f(c, "alpha", 1.0f) });
}
int qd_op_thresholded_relu(struct qd_ctx *c)
{
	return unary(c, U_THRELU, (struct un_par){ .alpha = attr_f(c, "alpha", 1.0f) });
}
int qd_op_selu(struct qd_ctx *c)
{
	return unary(c, U_SELU, (struct un_par){ .alpha = attr_f(c, "alpha", 1.67326319217681884765625f),
						 .gamma = attr_f(c, "gamma", 1.05070102214813232421875f) });
}

/* Clip: min/max attributes before opset 11, optional inputs after. */
int qd_op_clip(struct qd_ctx *c)
{
	struct un_par p = { .lo = -INFINITY, .hi = INFINITY };
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x) return -c->err->code;
	if (c->n->opset < 11) {
		p.lo = attr_f(c, "min", -INFINITY);
		p.hi = attr_f(c, "max", INFINITY);
	} else {
		for (int i = 1; i < 3 && i < c->n_in; i++) {
			const struct qd_tensor *b = c->in[i];
			if (!b) continue;
			if (qd_tensor_count(b) != 1 || b->dtype != x->dtype)
				return qd_ctx_fail(c, QD_EINVAL, "%s must be a scalar of the input dtype",
						   i == 1 ? "min" : "max");
			double v = qd_tensor_get_f64(b, 0);
			if (i == 1) p.lo = (float)v; else p.hi = (float)v;
		}
		if (!qd_dtype_is_float(x->dtype)) { /* integer bounds: exact via double */
			if (c->n_in < 2 || !c->in[1]) p.lo = -INFINITY;
			if (c->n_in < 3 || !c->in[2]) p.hi = INFINITY;
		}
	}
	return unary(c, U_CLIP, p);
}
