/* Quantization math shared by every pass; see quant_math.h. The optimised quantizer rounds
 * with the 1.5·2^23 trick (exact half-to-even for |v| <= 2^22 under the default rounding
 * mode, and branch-free so the loop vectorises); the _ref twins use plain double math. */
#include "passes/quant_math.h"
#include "onnx/onnx.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct qtype_info {
	const char *name;
	int dtype;
	bool is_signed;
	size_t code_size;
	int32_t full[2], sym[2], reduced[2];
	bool has_sym;
};

static const struct qtype_info qtypes[QD_QT__COUNT] = {
	[QD_QT_UINT8]  = {"uint8",  QD_DT_UINT8,  false, 1, {0, 255}, {0, 254}, {0, 127}, true},
	[QD_QT_INT8]   = {"int8",   QD_DT_INT8,   true,  1, {-128, 127}, {-127, 127}, {-64, 64}, true},
	[QD_QT_UINT16] = {"uint16", QD_DT_UINT16, false, 2, {0, 65535}, {0, 65534}, {0, 32767}, true},
	[QD_QT_INT16]  = {"int16",  QD_DT_INT16,  true,  2, {-32768, 32767}, {-32767, 32767}, {-16384, 16384}, true},
	[QD_QT_UINT4]  = {"uint4",  QD_DT_UINT4,  false, 1, {0, 15}, {0, 15}, {0, 7}, false},
	[QD_QT_INT4]   = {"int4",   QD_DT_INT4,   true,  1, {-8, 7}, {-8, 7}, {-4, 3}, false},
};

int qd_qtype_dtype(enum qd_qtype t) { return qtypes[t].dtype; }
bool qd_qtype_signed(enum qd_qtype t) { return qtypes[t].is_signed; }
size_t qd_qtype_code_size(enum qd_qtype t) { return qtypes[t].code_size; }
const char *qd_qtype_name(enum qd_qtype t) { return (unsigned)t < QD_QT__COUNT ? qtypes[t].name : "?"; }

int qd_qtype_from_dtype(int dtype)
{
	for (int i = 0; i < QD_QT__COUNT; i++)
		if (qtypes[i].dtype == dtype)
			return i;
	return -1;
}

void qd_quant_full_range(enum qd_qtype t, int32_t *qmin, int32_t *qmax)
{
	*qmin = qtypes[t].full[0];
	*qmax = qtypes[t].full[1];
}

void qd_quant_qrange(enum qd_qtype t, bool reduce_range, bool symmetric, int32_t *qmin, int32_t *qmax)
{
	const struct qtype_info *q = &qtypes[t];
	const int32_t *r = reduce_range ? q->reduced : (symmetric && q->has_sym) ? q->sym : q->full;
	*qmin = r[0];
	*qmax = r[1];
}

double qd_round_half_even(double x)
{
	double f = floor(x), d = x - f;
	if (d > 0.5)
		return f + 1.0;
	if (d < 0.5)
		return f;
	return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

float qd_round_half_even_f(float x)
{
	return (float)qd_round_half_even((double)x);
}

void qd_quant_scale_zp(double rmin, double rmax, int32_t qmin, int32_t qmax, bool symmetric,
		       double min_real_range, float *scale, int32_t *zp)
{
	if (!(rmin < 0.0)) rmin = 0.0;   /* also maps NaN to 0 */
	if (!(rmax > 0.0)) rmax = 0.0;
	if (min_real_range > 0.0 && rmax < rmin + min_real_range)
		rmax = rmin + min_real_range;
	if (symmetric) {
		double a = fmax(fabs(rmin), fabs(rmax));
		rmin = -a;
		rmax = a;
	}
	/* numpy on float32 data: rmax - rmin is a float32 subtraction, then float64 */
	double s = (double)((float)rmax - (float)rmin) / ((double)qmax - (double)qmin);
	if (!(s >= FLT_MIN)) {
		*scale = 1.0f;
		*zp = 0;
		return;
	}
	if (symmetric)
		*zp = (int32_t)qd_round_half_even(((double)qmin + (double)qmax) / 2.0);
	else
		*zp = (int32_t)qd_round_half_even((double)qmin - rmin / s);
	*scale = (float)s;
}

float qd_dequant_one(int32_t q, float scale, int32_t zp)
{
	return (float)(q - zp) * scale;
}

static inline void store_code(void *out, size_t i, enum qd_qtype t, int32_t q)
{
	switch (t) {
	case QD_QT_UINT8: case QD_QT_UINT4: ((uint8_t *)out)[i] = (uint8_t)q; break;
	case QD_QT_INT8: case QD_QT_INT4: ((int8_t *)out)[i] = (int8_t)q; break;
	case QD_QT_UINT16: ((uint16_t *)out)[i] = (uint16_t)q; break;
	case QD_QT_INT16: ((int16_t *)out)[i] = (int16_t)q; break;
	default: break;
	}
}

void qd_quantize_ref(const float *x, size_t n, float scale, int32_t zp, enum qd_qtype t, void *out)
{
	int32_t lo, hi;
	qd_quant_full_range(t, &lo, &hi);
	for (size_t i = 0; i < n; i++) {
		float v = x[i] / scale;                       /* float32 division, as numpy */
		double r = qd_round_half_even((double)v) + (double)zp;
		if (r < lo) r = lo;
		if (r > hi) r = hi;
		store_code(out, i, t, (int32_t)r);
	}
}

#define QD_MAGIC 12582912.0f   /* 1.5 * 2^23 */
#define QD_LIMIT 4194304.0f    /* 2^22: beyond it every code is clipped anyway */

/* One loop per output type so the body is branch-free. */
#define QUANT_LOOP(T) do { \
	T *o = (T *)out; \
	for (size_t i = 0; i < n; i++) { \
		float v = x[i] / scale; \
		v = v < -QD_LIMIT ? -QD_LIMIT : v > QD_LIMIT ? QD_LIMIT : v; \
		float r = (v + QD_MAGIC) - QD_MAGIC + fzp; \
		r = r < flo ? flo : r > fhi ? fhi : r; \
		o[i] = (T)(int32_t)r; \
	} } while (0)

void qd_quantize(const float *x, size_t n, float scale, int32_t zp, enum qd_qtype t, void *out)
{
	int32_t lo, hi;
	qd_quant_full_range(t, &lo, &hi);
	const float flo = (float)lo, fhi = (float)hi, fzp = (float)zp;
	switch (t) {
	case QD_QT_UINT8: case QD_QT_UINT4: QUANT_LOOP(uint8_t); break;
	case QD_QT_INT8: case QD_QT_INT4: QUANT_LOOP(int8_t); break;
	case QD_QT_UINT16: QUANT_LOOP(uint16_t); break;
	case QD_QT_INT16: QUANT_LOOP(int16_t); break;
	default: break;
	}
}

static void minmax(const float *w, size_t n, size_t stride, double *mn, double *mx)
{
	float a = n ? w[0] : 0.0f, b = a;
	for (size_t i = 1; i < n; i++) {
		float v = w[i * stride];
		a = v < a ? v : a;
		b = v > b ? v : b;
	}
	*mn = a;
	*mx = b;
}

void qd_quant_weight_tensor(const float *w, size_t n, enum qd_qtype t, bool symmetric,
			    bool reduce_range, float *scale, int32_t *zp, void *out)
{
	double mn = 0, mx = 0;
	int32_t qmin, qmax;
	minmax(w, n, 1, &mn, &mx);
	qd_quant_qrange(t, reduce_range, symmetric, &qmin, &qmax);
	qd_quant_scale_zp(mn, mx, qmin, qmax, symmetric, 0.0, scale, zp);
	qd_quantize(w, n, *scale, *zp, t, out);
}

void qd_quant_weight_tensor_ref(const float *w, size_t n, enum qd_qtype t, bool symmetric,
				bool reduce_range, float *scale, int32_t *zp, void *out)
{
	double mn = 0, mx = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || w[i] < mn) mn = w[i];
		if (i == 0 || w[i] > mx) mx = w[i];
	}
	int32_t qmin, qmax;
	qd_quant_qrange(t, reduce_range, symmetric, &qmin, &qmax);
	qd_quant_scale_zp(mn, mx, qmin, qmax, symmetric, 0.0, scale, zp);
	qd_quantize_ref(w, n, *scale, *zp, t, out);
}

static int split_axis(const int64_t *dims, int ndim, int axis, size_t *outer, size_t *ch, size_t *inner)
{
	if (ndim < 1 || ndim > 16)
		return -QD_EINVAL;
	if (axis < 0)
		axis += ndim;
	if (axis < 0 || axis >= ndim)
		return -QD_EINVAL;
	*outer = 1; *inner = 1;
	for (int i = 0; i < ndim; i++) {
		if (dims[i] < 0)
			return -QD_EINVAL;
		if (i < axis) *outer *= (size_t)dims[i];
		else if (i > axis) *inner *= (size_t)dims[i];
	}
	*ch = (size_t)dims[axis];
	return 0;
}

/* Quantize one row of ch channels x inner values with per-channel scale / zero point,
 * with exactly the arithmetic of qd_quantize(). */
static void quantize_channels(const float *row, size_t ch, size_t inner, const float *scales,
			      const int32_t *zps, enum qd_qtype t, void *row_out)
{
	int32_t lo, hi;
	qd_quant_full_range(t, &lo, &hi);
	const float flo = (float)lo, fhi = (float)hi;
	size_t cs = qd_qtype_code_size(t);
	for (size_t c = 0; c < ch; c++) {
		const float *x = row + c * inner;
		void *out = (uint8_t *)row_out + c * inner * cs;
		const float scale = scales[c], fzp = (float)zps[c];
		const size_t n = inner;
		switch (t) {
		case QD_QT_UINT8: case QD_QT_UINT4: QUANT_LOOP(uint8_t); break;
		case QD_QT_INT8: case QD_QT_INT4: QUANT_LOOP(int8_t); break;
		case QD_QT_UINT16: QUANT_LOOP(uint16_t); break;
		case QD_QT_INT16: QUANT_LOOP(int16_t); break;
		default: break;
		}
	}
}

/* Walks the weight in memory order (two passes: per-channel min/max, then quantize), so a
 * channel axis with a small inner extent (MatMul B quantized per output column) does not
 * stride down columns. */
int qd_quant_weight_channel(const float *w, const int64_t *dims, int ndim, int axis, enum qd_qtype t,
			    bool symmetric, bool reduce_range, float *scales, int32_t *zps, void *out)
{
	size_t outer, ch, inner;
	int rc = split_axis(dims, ndim, axis, &outer, &ch, &inner);
	if (rc < 0)
		return rc;
	int32_t qmin, qmax;
	qd_quant_qrange(t, reduce_range, symmetric, &qmin, &qmax);
	size_t cs = qd_qtype_code_size(t);
	float *mn = malloc(2 * (ch ? ch : 1) * sizeof *mn);
	if (!mn)
		return -QD_ENOMEM;
	float *mx = mn + ch;
	for (size_t c = 0; c < ch; c++)
		mn[c] = mx[c] = 0.0f;
	bool seen = false;
	for (size_t o = 0; o < outer && inner; o++) {
		const float *row = w + o * ch * inner;
		for (size_t c = 0; c < ch; c++) {
			const float *x = row + c * inner;
			float a = seen ? mn[c] : x[0], b = seen ? mx[c] : x[0];
			for (size_t i = 0; i < inner; i++) {
				a = x[i] < a ? x[i] : a;
				b = x[i] > b ? x[i] : b;
			}
			mn[c] = a;
			mx[c] = b;
		}
		seen = true;
	}
	for (size_t c = 0; c < ch; c++)
		qd_quant_scale_zp(mn[c], mx[c], qmin, qmax, symmetric, 0.0, &scales[c], &zps[c]);
	free(mn);
	for (size_t o = 0; o < outer; o++)
		quantize_channels(w + o * ch * inner, ch, inner, scales, zps, t,
				  (uint8_t *)out + o * ch * inner * cs);
	return 0;
}

int qd_quant_weight_channel_ref(const float *w, const int64_t *dims, int ndim, int axis,
				enum qd_qtype t, bool symmetric, bool reduce_range, float *scales,
				int32_t *zps, void *out)
{
	size_t outer, ch, inner;
	int rc = split_axis(dims, ndim, axis, &outer, &ch, &inner);
	if (rc < 0)
		return rc;
	int32_t qmin, qmax;
	qd_quant_qrange(t, reduce_range, symmetric, &qmin, &qmax);
	size_t cs = qd_qtype_code_size(t);
	for (size_t c = 0; c < ch; c++) {
		double mn = 0, mx = 0;
		size_t k = 0;
		for (size_t o = 0; o < outer; o++)
			for (size_t i = 0; i < inner; i++, k++) {
				double v = w[(o * ch + c) * inner + i];
				if (k == 0 || v < mn) mn = v;
				if (k == 0 || v > mx) mx = v;
			}
		qd_quant_scale_zp(mn, mx, qmin, qmax, symmetric, 0.0, &scales[c], &zps[c]);
		for (size_t o = 0; o < outer; o++)
			for (size_t i = 0; i < inner; i++) {
				size_t off = (o * ch + c) * inner + i;
				qd_quantize_ref(w + off, 1, scales[c], zps[c], t, (uint8_t *)out + off * cs);
			}
	}
	return 0;
}

size_t qd_quant_pack_4bit(const uint8_t *codes, size_t n, uint8_t *out)
{
	size_t nb = (n + 1) / 2;
	for (size_t i = 0; i < nb; i++) {
		uint8_t lo = codes[2 * i] & 0xF;
		uint8_t hi = 2 * i + 1 < n ? codes[2 * i + 1] & 0xF : 0;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return nb;
}
