/* passes/weight_only.h — 4-bit / 8-bit weight-only quantization of MatMul weights into
 * com.microsoft.MatMulNBits (reference/ort_quantization.md §5): the block quantizers
 * (ORT's DEFAULT round-to-nearest from MLAS, INC's RTN, HQQ's half-quadratic solver,
 * GPTQ's Hessian-driven error feedback) and the packer into ORT's exact layout. The pass
 * entry points (OnnxBlockWiseRtnQuantization, OnnxHqqQuantization, OnnxMatMul4Quantizer,
 * OnnxMatMulNBits) are declared in passes/passes.h. Exposed for tests/unit/test_nbits.c. */
#ifndef QD_WEIGHT_ONLY_H
#define QD_WEIGHT_ONLY_H

#include "qd.h"
#include <stdbool.h>
#include <stdint.h>

enum qd_wo_algo { QD_WO_DEFAULT, QD_WO_RTN, QD_WO_HQQ, QD_WO_GPTQ, QD_WO_AWQ };

/* One quantized weight in MatMulNBits' terms: W [K, N] (MatMul's B) → per output column n
 * blocks of bs values along K. Codes are unpacked here, one byte each. */
struct qd_wo_q {
	int64_t K, N, bs, kb;   /* kb = ceil(K / bs) */
	int bits;               /* 4 or 8 */
	uint8_t *q;             /* [N, K] codes in [0, 2^bits - 1] (new) */
	float *scale;           /* [N, kb] (new) */
	uint8_t *zp;            /* [N, kb] integer zero points, NULL: 2^(bits-1) (symmetric) */
	float *zpf;             /* [N, kb] float zero points (HQQ), NULL otherwise */
};
void qd_wo_q_free(struct qd_wo_q *q);

/* ORT's DEFAULT (MLAS BlockwiseQuantizer): asymmetric range forced to include 0,
 * zp = roundf(-min / scale); symmetric scale = signed absmax / -2^(bits-1), implicit zp;
 * codes roundf(v * (1/scale) + zp) clamped (roundf: half away from zero). w is [K, N]. */
int qd_wo_quant_default(const float *w, int64_t K, int64_t N, int bits, int64_t bs, bool sym,
			struct qd_wo_q *out, struct qd_err *err);
/* INC's RTN (quant_tensor): asymmetric range not forced to include 0 (ratio scales it),
 * scale 1 for a constant block; symmetric scale = 2 absmax / (2^bits - 1); round half to
 * even. */
int qd_wo_quant_rtn(const float *w, int64_t K, int64_t N, int bits, int64_t bs, bool sym, float ratio,
		    struct qd_wo_q *out, struct qd_err *err);
/* HQQ (calibration-free): asymmetric, float zero points; per block the half-quadratic
 * proximal solver (lp norm 0.7, beta 10, kappa 1.01, at most 20 iterations) refines the
 * zero point; each block keeps its best iterate (lowest mean |w - dequant(q)|). */
int qd_wo_quant_hqq(const float *w, int64_t K, int64_t N, int bits, int64_t bs,
		    struct qd_wo_q *out, struct qd_err *err);

/* GPTQ options (ORT GPTQWeightOnlyQuantConfig / INC gptq_args). */
struct qd_wo_gptq_opts {
	double percdamp;        /* 0.01: damping, a fraction of mean(diag(H)) */
	int64_t blocksize;      /* 128: rows per lazy-update block (power of two) */
	bool actorder;          /* rows in order of decreasing diag(H); groups stay static
	                           (parameters from the original rows, standard layout) */
	bool mse;               /* search a range shrink (1.00 .. 0.21, norm 2.4) per group */
	bool perchannel;        /* true: group parameters per output column; false: one per
	                           group shared by all columns */
	bool sym;
	int bits;
	int64_t group;          /* the MatMulNBits block_size */
};
/* GPTQ on w [K, N] with H = sum XᵀX [K, K] (row-major, symmetric; both are modified).
 * The quantization grid is DEFAULT's (same scales for the same values), so GPTQ and RTN
 * differ only by the error feedback. *damp_used gets the damping finally applied. */
int qd_wo_quant_gptq(float *w, double *H, int64_t K, int64_t N, const struct qd_wo_gptq_opts *o,
		     struct qd_wo_q *out, double *damp_used, struct qd_err *err);

/* DEFAULT's grid with the range of block j of column n shrunk by ratio[n * kb + j] (values
 * beyond it clamp to the end codes); ratio NULL is qd_wo_quant_default. */
int qd_wo_quant_default_ratio(const float *w, int64_t K, int64_t N, int bits, int64_t bs, bool sym,
			      const float *ratio, struct qd_wo_q *out, struct qd_err *err);

/* AWQ's two searches (INC awq_args' names). */
struct qd_wo_awq_opts {
	bool auto_scale;        /* enable_auto_scale: the activation-aware scale search */
	bool mse_search;        /* enable_mse_search: the clip search */
};
struct qd_wo_awq_info {
	double alpha;             /* the scale search's exponent (0: no scaling) */
	double scale_loss_ratio;  /* calibrated output error after the scale search / RTN's */
	double loss_ratio;        /* the same after the clip search (the final weight) */
	double clip_mean;         /* mean range ratio over blocks (1: no clipping kept) */
	int64_t clipped;          /* blocks (column x block) whose range was shrunk */
};
/* AWQ on w [K, N] with H = sum XᵀX over `rows` rows, on DEFAULT's grid.
 * Scale search (o->auto_scale): per input channel s_k = rms_k^alpha (rms from diag(H),
 * normalised by sqrt(max * min)); for alpha in 0, 0.05 .. 0.95 the weight diag(s) W is
 * quantized and the output error tr(Dᵀ H D), D = W - diag(1/s) dequant(...), measured; the
 * best alpha wins (alpha 0 is plain RTN, so the calibrated error is never above RTN's).
 * Clip search (o->mse_search): then per output column and block the range shrink in 1.00,
 * 0.99 .. 0.91 (INC's grid) with the lowest error of that block's share of the output
 * (d_jᵀ H_jj d_j); kept when the whole output error goes down. *inv_s gets 1/s (new, K
 * floats; the caller scales the MatMul input by it) or NULL when alpha 0 won; *info the
 * choices. */
int qd_wo_quant_awq(const float *w, const double *H, int64_t rows, int64_t K, int64_t N, int bits, int64_t bs,
		    bool sym, const struct qd_wo_awq_opts *o, struct qd_wo_q *out, float **inv_s,
		    struct qd_wo_awq_info *info, struct qd_err *err);

/* Upper Cholesky factor U of inv(H + 0) with inv(H) = UᵀU (row-major K x K, in place; the
 * strict lower triangle is zeroed). LAPACK (dpotrf / dpotri); _ref is a plain scalar twin.
 * -QD_EINVAL when H is not positive definite. */
int qd_wo_hinv_chol(double *H, int64_t K);
int qd_wo_hinv_chol_ref(double *H, int64_t K);

/* Dequantize into w [K, N] (what MatMulNBits multiplies by). */
void qd_wo_dequant(const struct qd_wo_q *q, float *w);

/* Pack into MatMulNBits' inputs, ORT's layout: B uint8 [N, kb, bs*bits/8] (element k of a
 * byte's pair in the low nibble when k is even), zero points uint8 [N, ceil(kb*bits/8)]
 * packed the same way (per row; an unused last nibble is zp_fill's) or, for float zero
 * points, [N, kb] float. Buffers new (free()). */
int qd_wo_pack(const struct qd_wo_q *q, uint8_t **B, size_t *nb, uint8_t **Z, size_t *nz,
	       uint8_t zp_fill);

#endif
