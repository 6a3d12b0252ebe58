/* engine/ops_linalg.c — GEMM (OpenBLAS cblas_sgemm with a plain _ref twin), MatMul with
 * batch broadcasting and 1-D promotion, Gemm. */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cblas.h>
#include "engine/engine_internal.h"

/* OpenBLAS (pthread build) stops its worker threads with this (its fork handler); they are
 * created again when more than one thread is asked for. Weak: absent in other builds. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

/* Runs with threads > 1 hold it shared; a single-thread run stops the idle workers (which
 * otherwise spin in sched_yield after start-up) only when no such run is in progress. */
static pthread_rwlock_t blas_rw = PTHREAD_RWLOCK_INITIALIZER;

void qd_blas_threads_begin(int threads)
{
	if (threads > 1) {
		pthread_rwlock_rdlock(&blas_rw);
		openblas_set_num_threads(threads);
		return;
	}
	openblas_set_num_threads(1);
	if (blas_thread_shutdown_ && !pthread_rwlock_trywrlock(&blas_rw)) {
		blas_thread_shutdown_();
		pthread_rwlock_unlock(&blas_rw);
	}
}

void qd_blas_threads_end(int threads)
{
	if (threads > 1)
		pthread_rwlock_unlock(&blas_rw);
}

void qd_gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
		 const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
		 float *C, int64_t ldc)
{
	if (M <= 0 || N <= 0) return;
	if (K <= 0) { /* BLAS leaves C*beta; make it explicit */
		for (int64_t i = 0; i < M; i++)
			for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
		return;
	}
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
		    (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta,
		    C, (blasint)ldc);
}

void qd_gemm_f32_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
		     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
		     float *C, int64_t ldc)
{
	for (int64_t i = 0; i < M; i++)
		for (int64_t j = 0; j < N; j++) {
			double s = 0;
			for (int64_t k = 0; k < K; k++) {
				float a = ta ? A[k * lda + i] : A[i * lda + k];
				float b = tb ? B[j * ldb + k] : B[k * ldb + j];
				s += (double)a * b;
			}
			float *c = &C[i * ldc + j];
			*c = (float)(alpha * s + (beta == 0 ? 0 : beta * *c));
		}
}

/* Generic (double / integer) GEMM through element accessors: small shapes only. */
static void gemm_generic(const struct qd_tensor *A, int64_t aofs, const struct qd_tensor *B,
			 int64_t bofs, struct qd_tensor *C, int64_t cofs, int64_t M, int64_t N, int64_t K)
{
	for (int64_t i = 0; i < M; i++)
		for (int64_t j = 0; j < N; j++) {
			if (qd_dtype_is_float(C->dtype)) {
				double s = 0;
				for (int64_t k = 0; k < K; k++)
					s += qd_tensor_get_f64(A, aofs + i * K + k) * qd_tensor_get_f64(B, bofs + k * N + j);
				qd_tensor_set_f64(C, cofs + i * N + j, s);
			} else {
				uint64_t s = 0;
				for (int64_t k = 0; k < K; k++)
					s += (uint64_t)qd_tensor_get_i64(A, aofs + i * K + k) *
					     (uint64_t)qd_tensor_get_i64(B, bofs + k * N + j);
				qd_tensor_set_i64(C, cofs + i * N + j, (int64_t)s);
			}
		}
}

int qd_op_matmul(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 1);
	char s1[128], s2[128];
	if (!a || !b) return -c->err->code;
	if (a->dtype != b->dtype) return qd_ctx_fail(c, QD_EINVAL, "A and B dtypes differ");
	if (a->ndim < 1 || b->ndim < 1) return qd_ctx_fail(c, QD_ESHAPE, "inputs must have rank >= 1");
	/* promote 1-D */
	int64_t ad[QD_MAX_DIMS + 1], bd[QD_MAX_DIMS + 1];
	int an = a->ndim, bn = b->ndim;
	if (an == 1) { ad[0] = 1; ad[1] = a->dims[0]; an = 2; } else memcpy(ad, a->dims, an * 8);
	if (bn == 1) { bd[0] = b->dims[0]; bd[1] = 1; bn = 2; } else memcpy(bd, b->dims, bn * 8);
	int64_t M = ad[an - 2], K = ad[an - 1], K2 = bd[bn - 2], N = bd[bn - 1];
	if (K != K2)
		return qd_ctx_fail(c, QD_ESHAPE, "shapes %s and %s cannot be multiplied",
				   qd_dims_str(a->ndim, a->dims, s1, sizeof(s1)),
				   qd_dims_str(b->ndim, b->dims, s2, sizeof(s2)));
	int64_t bat[QD_MAX_DIMS];
	int nb;
	if (qd_broadcast_shape(an - 2, ad, bn - 2, bd, &nb, bat))
		return qd_ctx_fail(c, QD_ESHAPE, "batch dims of %s and %s are not broadcastable",
				   qd_dims_str(a->ndim, a->dims, s1, sizeof(s1)),
				   qd_dims_str(b->ndim, b->dims, s2, sizeof(s2)));
	int64_t od[QD_MAX_DIMS + 2];
	int on = 0;
	for (int i = 0; i < nb; i++) od[on++] = bat[i];
	if (a->ndim > 1) od[on++] = M;
	if (b->ndim > 1) od[on++] = N;
	if (on > QD_MAX_DIMS) return qd_ctx_fail(c, QD_EUNSUPPORTED, "rank too large");
	struct qd_tensor *o = qd_ctx_out(c, 0, a->dtype, on, od);
	if (!o) return -c->err->code;
	int64_t sa[QD_MAX_DIMS], sb[QD_MAX_DIMS], nbat = qd_dims_count(nb, bat);
	qd_broadcast_strides(an - 2, ad, nb, bat, sa);
	qd_broadcast_strides(bn - 2, bd, nb, bat, sb);
	/* B shared by all batches and A contiguous: one big GEMM */
	bool b_shared = true;
	for (int i = 0; i < nb; i++) if (sb[i]) b_shared = false;
	if (a->dtype == QD_DT_FLOAT && b_shared && nbat > 1) {
		qd_gemm_f32(false, false, nbat * M, N, K, 1.0f, a->data, K, b->data, N, 0.0f, o->data, N);
		return 0;
	}
	int64_t idx[QD_MAX_DIMS] = {0};
	for (int64_t t = 0; t < nbat; t++) {
		int64_t ao = 0, bo = 0, r = t;
		for (int i = nb - 1; i >= 0; i--) { idx[i] = r % bat[i]; r /= bat[i]; ao += idx[i] * sa[i]; bo += idx[i] * sb[i]; }
		if (a->dtype == QD_DT_FLOAT)
			qd_gemm_f32(false, false, M, N, K, 1.0f, (const float *)a->data + ao * M * K, K,
				    (const float *)b->data + bo * K * N, N, 0.0f, (float *)o->data + t * M * N, N);
		else
			gemm_generic(a, ao * M * K, b, bo * K * N, o, t * M * N, M, N, K);
	}
	return 0;
}

int qd_op_gemm(struct qd_ctx *c)
{
	const struct qd_tensor *a = qd_ctx_in(c, 0), *b = qd_ctx_in(c, 1);
	const struct qd_tensor *cc = c->n_in > 2 ? c->in[2] : NULL;
	if (!a || !b) return -c->err->code;
	bool ta = qd_node_attr_int(c->n->proto, "transA", 0), tb = qd_node_attr_int(c->n->proto, "transB", 0);
	float alpha = qd_node_attr_float(c->n->proto, "alpha", 1.0f);
	float beta = qd_node_attr_float(c->n->proto, "beta", 1.0f);
	if (a->ndim != 2 || b->ndim != 2) return qd_ctx_fail(c, QD_ESHAPE, "A and B must be 2-D");
	if (a->dtype != b->dtype) return qd_ctx_fail(c, QD_EINVAL, "A and B dtypes differ");
	int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
	int64_t K2 = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
	if (K != K2) return qd_ctx_fail(c, QD_ESHAPE, "inner dimensions differ (%lld vs %lld)",
					(long long)K, (long long)K2);
	int64_t od[2] = { M, N };
	struct qd_tensor *o = qd_ctx_out_zero(c, 0, a->dtype, 2, od);
	if (!o) return -c->err->code;
	if (cc && beta != 0) {
		int64_t bd[QD_MAX_DIMS], st[1][QD_MAX_DIMS];
		int nd;
		if (cc->dtype != a->dtype) return qd_ctx_fail(c, QD_EINVAL, "C dtype differs");
		if (qd_broadcast_shape(2, od, cc->ndim, cc->dims, &nd, bd) || nd != 2 || bd[0] != M || bd[1] != N)
			return qd_ctx_fail(c, QD_ESHAPE, "C is not broadcastable to [%lld,%lld]", (long long)M, (long long)N);
		qd_broadcast_strides(cc->ndim, cc->dims, 2, od, st[0]);
		for (int64_t i = 0; i < M; i++)
			for (int64_t j = 0; j < N; j++)
				qd_tensor_set_f64(o, i * N + j, qd_tensor_get_f64(cc, i * st[0][0] + j * st[0][1]));
	} else beta = 0;
	if (a->dtype == QD_DT_FLOAT) {
		qd_gemm_f32(ta, tb, M, N, K, alpha, a->data, a->dims[1], b->data, b->dims[1], beta, o->data, N);
		return 0;
	}
	/* generic: explicit loops with transposes */
	for (int64_t i = 0; i < M; i++)
		for (int64_t j = 0; j < N; j++) {
			double s = 0;
			for (int64_t k = 0; k < K; k++)
				s += qd_tensor_get_f64(a, ta ? k * M + i : i * K + k) *
				     qd_tensor_get_f64(b, tb ? j * K + k : k * N + j);
			qd_tensor_set_f64(o, i * N + j, alpha * s + beta * qd_tensor_get_f64(o, i * N + j));
		}
	return 0;
}
