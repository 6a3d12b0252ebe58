/* engine/ops_quant_attn.c — com.microsoft QAttention (what dynamic quantization turns
 * Attention into) and the float Attention it replaces: QKV projection (integer GEMM +
 * dequantization for QAttention, sgemm for Attention), then multi-head scaled dot-product
 * attention with ORT's additive masks (mask_index as key end positions [B], end and start
 * positions [2B] or a 0/1 key mask [B, T]; causal when unidirectional). Not supported
 * (rejected at load): past / present state, qkv_hidden_sizes, attention_bias. */
#include <stdlib.h>
#include <string.h>
#include "engine/ops_quant.h"
#include "engine/qgemm.h"

static bool input_given(const struct qd_enode *n, int i)
{
	return i < n->n_in && n->in[i] >= 0;
}

int qd_check_attention(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	bool q = !strcmp(n->op->op_type, "QAttention");
	int past = q ? 8 : 4;
	const char *why = NULL;
	if (qd_node_attr_int(n->proto, "num_heads", 0) <= 0)
		why = "attribute 'num_heads' must be > 0";
	else if (qd_node_attr(n->proto, "qkv_hidden_sizes"))
		why = "attribute 'qkv_hidden_sizes' not supported";
	else if (input_given(n, past))
		why = "input 'past' not supported";
	else if (!q && (input_given(n, 5) || input_given(n, 6)))
		why = "inputs 'attention_bias' / 'past_sequence_length' not supported";
	else if (n->proto->n_output > 1 && n->proto->output[1] && *n->proto->output[1])
		why = "output 'present' not supported";
	else if (qd_node_attr_int(n->proto, "do_rotary", 0))
		why = "attribute 'do_rotary' not supported";
	if (why)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (%s): %s", n->name,
				  n->op->op_type, why);
	out_dt[0] = QD_DT_FLOAT;
	return 0;
}

/* out [B, S, H] from qkv [B, S, 3H]. */
static int attention_core(struct qd_ctx *c, const float *qkv, int64_t B, int64_t S, int64_t H,
			  const struct qd_tensor *mask, float *out)
{
	const Onnx__NodeProto *np = c->n->proto;
	int64_t NH = qd_node_attr_int(np, "num_heads", 0);
	if (NH <= 0 || H % NH)
		return qd_ctx_fail(c, QD_ESHAPE, "hidden size %lld is not a multiple of num_heads %lld",
				   (long long)H, (long long)NH);
	int64_t hd = H / NH;
	bool causal = qd_node_attr_int(np, "unidirectional", 0) != 0;
	float scale = qd_node_attr_float(np, "scale", 0.0f);
	float mfv = qd_node_attr_float(np, "mask_filter_value", -10000.0f);
	if (scale == 0.0f)
		scale = 1.0f / sqrtf((float)hd);
	/* additive key mask [B, S] from mask_index */
	float *km = calloc((size_t)(B * S + 1), sizeof(float));
	float *p = malloc((size_t)(S + 1) * sizeof(float));
	if (!km || !p) {
		free(km);
		free(p);
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	}
	if (mask) {
		int64_t nm = qd_tensor_count(mask);
		bool ok = mask->dtype == QD_DT_INT32;
		if (ok && mask->ndim == 1 && (nm == B || nm == 2 * B)) {
			const int32_t *mi = mask->data;
			for (int64_t b = 0; b < B; b++)
				for (int64_t t = 0; t < S; t++)
					if (t >= mi[b] || (nm == 2 * B && t < mi[B + b]))
						km[b * S + t] = mfv;
		} else if (ok && mask->ndim == 2 && mask->dims[0] == B && mask->dims[1] == S) {
			const int32_t *mi = mask->data;
			for (int64_t i = 0; i < B * S; i++)
				km[i] = mi[i] > 0 ? 0.0f : mfv;
		} else {
			char s[96];
			free(km);
			free(p);
			return qd_ctx_fail(c, QD_EUNSUPPORTED,
					   "mask_index %s %s not supported (int32 [B], [2B] or [B, S])",
					   qd_dtype_name(mask->dtype), qd_dims_str(mask->ndim, mask->dims, s, sizeof(s)));
		}
	}
	int64_t row = 3 * H;
	for (int64_t b = 0; b < B; b++)
		for (int64_t h = 0; h < NH; h++)
			for (int64_t s = 0; s < S; s++) {
				const float *qv = qkv + (b * S + s) * row + h * hd;
				float mx = -INFINITY, sum = 0.0f;
				for (int64_t t = 0; t < S; t++) {
					const float *kv = qkv + (b * S + t) * row + H + h * hd;
					float d = 0.0f;
					for (int64_t i = 0; i < hd; i++)
						d += qv[i] * kv[i];
					d = d * scale + km[b * S + t];
					if (causal && t > s)
						d += mfv;
					p[t] = d;
					mx = d > mx ? d : mx;
				}
				for (int64_t t = 0; t < S; t++) {
					p[t] = expf(p[t] - mx);
					sum += p[t];
				}
				float *o = out + (b * S + s) * H + h * hd;
				for (int64_t i = 0; i < hd; i++)
					o[i] = 0.0f;
				for (int64_t t = 0; t < S; t++) {
					const float *vv = qkv + (b * S + t) * row + 2 * H + h * hd;
					float w = p[t] / sum;
					for (int64_t i = 0; i < hd; i++)
						o[i] += w * vv[i];
				}
			}
	free(km);
	free(p);
	return 0;
}

/* Shapes: input [B, S, Hin], weight [Hin, 3H], bias [3H]. */
static int attn_shapes(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *w,
		       const struct qd_tensor *bias, int64_t *B, int64_t *S, int64_t *Hin, int64_t *H)
{
	char s1[96], s2[96];
	if (x->ndim != 3 || w->ndim != 2 || w->dims[0] != x->dims[2] || w->dims[1] % 3)
		return qd_ctx_fail(c, QD_ESHAPE, "input %s and weight %s: expected [B, S, Hin] and [Hin, 3H]",
				   qd_dims_str(x->ndim, x->dims, s1, sizeof(s1)),
				   qd_dims_str(w->ndim, w->dims, s2, sizeof(s2)));
	*B = x->dims[0];
	*S = x->dims[1];
	*Hin = x->dims[2];
	*H = w->dims[1] / 3;
	if (bias->dtype != QD_DT_FLOAT || qd_tensor_count(bias) != 3 * *H)
		return qd_ctx_fail(c, QD_ESHAPE, "bias must be float32 with %lld elements", (long long)(3 * *H));
	return 0;
}

int qd_op_attention(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *w = qd_ctx_in(c, 1), *bias = qd_ctx_in(c, 2);
	int64_t B, S, Hin, H;
	if (!x || !w || !bias)
		return -c->err->code;
	if (x->dtype != QD_DT_FLOAT || w->dtype != QD_DT_FLOAT)
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input and weights must be float32");
	int rc = attn_shapes(c, x, w, bias, &B, &S, &Hin, &H);
	if (rc)
		return rc;
	float *qkv = malloc((size_t)(B * S * 3 * H + 1) * sizeof(float));
	if (!qkv)
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	qd_gemm_f32(false, false, B * S, 3 * H, Hin, 1.0f, x->data, Hin, w->data, 3 * H, 0.0f, qkv, 3 * H);
	const float *bd = bias->data;
	for (int64_t r = 0; r < B * S; r++)
		for (int64_t n = 0; n < 3 * H; n++)
			qkv[r * 3 * H + n] += bd[n];
	int64_t od[3] = { B, S, H };
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, 3, od);
	rc = y ? attention_core(c, qkv, B, S, H, c->n_in > 3 ? c->in[3] : NULL, y->data) : -c->err->code;
	free(qkv);
	return rc;
}

int qd_op_qattention(struct qd_ctx *c)
{
	const struct qd_tensor *x = qd_ctx_in(c, 0), *w = qd_ctx_in(c, 1), *bias = qd_ctx_in(c, 2);
	int64_t B, S, Hin, H;
	float xs, *ws = NULL;
	int32_t xz, *wz = NULL, *acc = NULL;
	bool wsper, wzper;
	float *qkv = NULL;
	if (!x || !w || !bias)
		return -c->err->code;
	if (!qd_is_q8(x->dtype) || !qd_is_q8(w->dtype))
		return qd_ctx_fail(c, QD_EUNSUPPORTED, "input dtypes %s x %s not supported (8-bit only)",
				   qd_dtype_name(x->dtype), qd_dtype_name(w->dtype));
	int rc = attn_shapes(c, x, w, bias, &B, &S, &Hin, &H);
	if (rc || (rc = qd_q_scalar_f32(c, 3, "input_scale", &xs)) ||
	    (rc = qd_q_vec_f32(c, 4, "weight_scale", 3 * H, &ws, &wsper)) ||
	    (rc = qd_q_scalar_zp(c, 6, "input_zero_point", x->dtype, &xz)) ||
	    (rc = qd_q_vec_zp(c, 7, "weight_zero_point", w->dtype, 3 * H, &wz, &wzper)))
		goto out;
	acc = malloc((size_t)(B * S * 3 * H + 1) * sizeof(int32_t));
	qkv = malloc((size_t)(B * S * 3 * H + 1) * sizeof(float));
	if (!acc || !qkv) {
		rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		goto out;
	}
	struct qd_qgemm_args q = {
		.M = B * S, .N = 3 * H, .K = Hin,
		.A = x->data, .lda = Hin, .a_signed = x->dtype == QD_DT_INT8, .a_zp = &xz,
		.B = w->data, .ldb = 3 * H, .b_signed = w->dtype == QD_DT_INT8, .b_zp = wz, .b_zp_per_col = wzper,
		.C = acc, .ldc = 3 * H, .threads = c->e->opts.threads,
	};
	if ((rc = qd_qgemm(&q))) {
		rc = qd_ctx_fail(c, -rc, "integer gemm failed");
		goto out;
	}
	const float *bd = bias->data;
	for (int64_t r = 0; r < B * S; r++)
		for (int64_t n = 0; n < 3 * H; n++)
			qkv[r * 3 * H + n] = (float)acc[r * 3 * H + n] * (xs * ws[wsper ? n : 0]) + bd[n];
	int64_t od[3] = { B, S, H };
	struct qd_tensor *y = qd_ctx_out(c, 0, QD_DT_FLOAT, 3, od);
	rc = y ? attention_core(c, qkv, B, S, H, c->n_in > 5 ? c->in[5] : NULL, y->data) : -c->err->code;
out:
	free(acc);
	free(qkv);
	free(ws);
	free(wz);
	return rc;
}
