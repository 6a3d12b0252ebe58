/* engine/ops_quant_lstm.c — com.microsoft DynamicQuantizeLSTM (what dynamic quantization
 * turns LSTM into): 8-bit W [D, I, 4H] and R [D, H, 4H] with per-direction or per-channel
 * scales / zero points are dequantized (once, when constant) and the LSTM runs in float32
 * (ONNX semantics: gates i, o, f, c; peepholes; clip; sequence_lens; forward, reverse,
 * bidirectional). Activations stay float, so results can differ from ONNX Runtime, which
 * also quantizes X and H per step, by about one activation quantization step.
 * Rejected at load: non-default activations, input_forget. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "engine/ops_quant.h"

int qd_check_dq_lstm(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	const Onnx__NodeProto *np = n->proto;
	const char *dir = qd_node_attr_string(np, "direction", "forward");
	const char *why = NULL;
	const Onnx__AttributeProto *acts = qd_node_attr(np, "activations");
	if (qd_node_attr_int(np, "hidden_size", 0) <= 0)
		why = "attribute 'hidden_size' must be > 0";
	else if (strcmp(dir, "forward") && strcmp(dir, "reverse") && strcmp(dir, "bidirectional"))
		why = "attribute 'direction' must be forward, reverse or bidirectional";
	else if (qd_node_attr_int(np, "input_forget", 0))
		why = "attribute 'input_forget' not supported";
	else if (acts) {
		static const char *dflt[3] = { "Sigmoid", "Tanh", "Tanh" };
		for (size_t i = 0; i < acts->n_strings && !why; i++)
			if (acts->strings[i].len != strlen(dflt[i % 3]) ||
			    strncasecmp((const char *)acts->strings[i].data, dflt[i % 3], acts->strings[i].len))
				why = "attribute 'activations' other than Sigmoid, Tanh, Tanh not supported";
	}
	if (why)
		return qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (DynamicQuantizeLSTM): %s", n->name, why);
	for (int i = 0; i < n->n_out && i < 3; i++)
		out_dt[i] = QD_DT_FLOAT;
	return 0;
}

/* Dequantize w [D, rows, 4H] with scale / zero point [D] or [D, 4H] into out. */
static int dequant_w(struct qd_ctx *c, int wi, int si, int zi, const char *what, int64_t D,
		     int64_t rows, int64_t G, float *out)
{
	const struct qd_tensor *w = qd_ctx_in(c, wi), *s = qd_ctx_in(c, si);
	const struct qd_tensor *z = zi < c->n_in ? c->in[zi] : NULL;
	if (!w || !s)
		return -c->err->code;
	if (!qd_is_q8(w->dtype) || qd_tensor_count(w) != D * rows * G || w->ndim != 3)
		return qd_ctx_fail(c, QD_ESHAPE, "%s must be 8-bit [%lld, %lld, %lld]", what, (long long)D,
				   (long long)rows, (long long)G);
	int64_t ns = qd_tensor_count(s);
	if (s->dtype != QD_DT_FLOAT || (ns != D && ns != D * G))
		return qd_ctx_fail(c, QD_ESHAPE, "%s scale must be float32 [%lld] or [%lld, %lld]", what,
				   (long long)D, (long long)D, (long long)G);
	if (z && (z->dtype != w->dtype || qd_tensor_count(z) != ns))
		return qd_ctx_fail(c, QD_ESHAPE, "%s zero point must match its scale and dtype", what);
	const float *sv = s->data;
	bool per = ns == D * G;
	for (int64_t d = 0; d < D; d++)
		for (int64_t r = 0; r < rows; r++)
			for (int64_t g = 0; g < G; g++) {
				int64_t si2 = per ? d * G + g : d, i = (d * rows + r) * G + g;
				int32_t zp = z ? qd_q_load(z->data, z->dtype, si2) : 0;
				out[i] = (float)(qd_q_load(w->data, w->dtype, i) - zp) * sv[si2];
			}
	return 0;
}

struct lstm_cache {
	float *w, *r;
};

static void lstm_cache_free(void *p)
{
	struct lstm_cache *lc = p;
	if (lc) {
		free(lc->w);
		free(lc->r);
		free(lc);
	}
}

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static bool consts(struct qd_ctx *c, const int *idx, int n)
{
	for (int i = 0; i < n; i++)
		if (idx[i] < c->n_in && c->n->in[idx[i]] >= 0 && !qd_engine_slot(c->e, c->n->in[idx[i]])->is_const)
			return false;
	return true;
}

int qd_op_dynamic_quantize_lstm(struct qd_ctx *c)
{
	const Onnx__NodeProto *np = c->n->proto;
	const struct qd_tensor *x = qd_ctx_in(c, 0);
	if (!x)
		return -c->err->code;
	int64_t H = qd_node_attr_int(np, "hidden_size", 0), G = 4 * H;
	const char *dir = qd_node_attr_string(np, "direction", "forward");
	int64_t D = !strcmp(dir, "bidirectional") ? 2 : 1;
	bool reverse = !strcmp(dir, "reverse");
	const Onnx__AttributeProto *clip_a = qd_node_attr(np, "clip");
	float clip = clip_a ? qd_node_attr_float(np, "clip", 0.0f) : 0.0f;
	if (x->dtype != QD_DT_FLOAT || x->ndim != 3)
		return qd_ctx_fail(c, QD_ESHAPE, "X must be float32 [seq, batch, input]");
	int64_t S = x->dims[0], B = x->dims[1], I = x->dims[2];
	const struct qd_tensor *bias = c->n_in > 3 ? c->in[3] : NULL, *sl = c->n_in > 4 ? c->in[4] : NULL;
	const struct qd_tensor *h0 = c->n_in > 5 ? c->in[5] : NULL, *c0 = c->n_in > 6 ? c->in[6] : NULL;
	const struct qd_tensor *pp = c->n_in > 7 ? c->in[7] : NULL;
	if ((bias && (bias->dtype != QD_DT_FLOAT || qd_tensor_count(bias) != D * 8 * H)) ||
	    (sl && (sl->dtype != QD_DT_INT32 || qd_tensor_count(sl) != B)) ||
	    (h0 && (h0->dtype != QD_DT_FLOAT || qd_tensor_count(h0) != D * B * H)) ||
	    (c0 && (c0->dtype != QD_DT_FLOAT || qd_tensor_count(c0) != D * B * H)) ||
	    (pp && (pp->dtype != QD_DT_FLOAT || qd_tensor_count(pp) != D * 3 * H)))
		return qd_ctx_fail(c, QD_ESHAPE, "B, sequence_lens, initial_h, initial_c or P has the wrong dtype or size");
	/* weights: dequantized once when constant */
	struct lstm_cache *lc = c->n->priv_free == lstm_cache_free ? c->n->priv : NULL, tmp = { 0 };
	int rc = 0;
	static const int widx[6] = { 1, 2, 8, 9, 10, 11 };
	if (!lc) {
		tmp.w = malloc((size_t)(D * I * G + 1) * sizeof(float));
		tmp.r = malloc((size_t)(D * H * G + 1) * sizeof(float));
		if (!tmp.w || !tmp.r) {
			rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = dequant_w(c, 1, 8, 9, "W", D, I, G, tmp.w)) || (rc = dequant_w(c, 2, 10, 11, "R", D, H, G, tmp.r)))
			goto out;
		if (!c->n->priv && consts(c, widx, 6) && (lc = calloc(1, sizeof(*lc)))) {
			*lc = tmp;
			tmp.w = tmp.r = NULL;
			c->n->priv = lc;
			c->n->priv_free = lstm_cache_free;
		} else {
			lc = &tmp;
		}
	}
	int64_t yd[4] = { S, D, B, H }, hd[3] = { D, B, H };
	struct qd_tensor *y = NULL, *yh = NULL, *yc = NULL;
	if ((qd_ctx_wants(c, 0) && !(y = qd_ctx_out_zero(c, 0, QD_DT_FLOAT, 4, yd))) ||
	    (qd_ctx_wants(c, 1) && !(yh = qd_ctx_out(c, 1, QD_DT_FLOAT, 3, hd))) ||
	    (qd_ctx_wants(c, 2) && !(yc = qd_ctx_out(c, 2, QD_DT_FLOAT, 3, hd)))) {
		rc = -c->err->code;
		goto out;
	}
	float *xw = malloc((size_t)(S * B * G + 1) * sizeof(float));
	float *hr = malloc((size_t)(B * G + 1) * sizeof(float));
	float *hs = malloc((size_t)(B * H + 1) * sizeof(float)), *cs = malloc((size_t)(B * H + 1) * sizeof(float));
	if (!xw || !hr || !hs || !cs) {
		free(xw); free(hr); free(hs); free(cs);
		rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory");
		goto out;
	}
	const int32_t *lens = sl ? sl->data : NULL;
	for (int64_t d = 0; d < D; d++) {
		bool rev = reverse || d == 1;
		const float *wb = bias ? (const float *)bias->data + d * 8 * H : NULL;
		const float *pv = pp ? (const float *)pp->data + d * 3 * H : NULL;
		/* X W for every step at once: [S*B, I] x [I, 4H] */
		qd_gemm_f32(false, false, S * B, G, I, 1.0f, x->data, I, lc->w + d * I * G, G, 0.0f, xw, G);
		for (int64_t i = 0; i < B * H; i++) {
			hs[i] = h0 ? ((const float *)h0->data)[d * B * H + i] : 0.0f;
			cs[i] = c0 ? ((const float *)c0->data)[d * B * H + i] : 0.0f;
		}
		for (int64_t step = 0; step < S; step++) {
			int64_t t = rev ? S - 1 - step : step;
			qd_gemm_f32(false, false, B, G, H, 1.0f, hs, H, lc->r + d * H * G, G, 0.0f, hr, G);
			for (int64_t b = 0; b < B; b++) {
				int64_t len = lens ? lens[b] : S;
				if (t >= len)
					continue;   /* padded step: state kept, Y stays 0 */
				for (int64_t h = 0; h < H; h++) {
					float g[4];
					for (int k = 0; k < 4; k++) {
						int64_t col = k * H + h;
						g[k] = xw[(t * B + b) * G + col] + hr[b * G + col] +
						       (wb ? wb[col] + wb[G + col] : 0.0f);
						if (clip_a)
							g[k] = g[k] < -clip ? -clip : g[k] > clip ? clip : g[k];
					}
					float cp = cs[b * H + h];
					float ig = sigm(g[0] + (pv ? pv[h] * cp : 0.0f));
					float fg = sigm(g[2] + (pv ? pv[2 * H + h] * cp : 0.0f));
					float cn = fg * cp + ig * tanhf(g[3]);
					float og = sigm(g[1] + (pv ? pv[H + h] * cn : 0.0f));
					cs[b * H + h] = cn;
					hs[b * H + h] = og * tanhf(cn);
				}
				if (y)
					memcpy((float *)y->data + ((t * D + d) * B + b) * H, hs + b * H, (size_t)H * sizeof(float));
			}
		}
		if (yh)
			memcpy((float *)yh->data + d * B * H, hs, (size_t)(B * H) * sizeof(float));
		if (yc)
			memcpy((float *)yc->data + d * B * H, cs, (size_t)(B * H) * sizeof(float));
	}
	free(xw); free(hr); free(hs); free(cs);
out:
	free(tmp.w);
	free(tmp.r);
	return rc;
}
