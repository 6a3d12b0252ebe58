/* Shared quantization math (reference/ort_quantization.md §3): qmin/qmax tables, scale and
 * zero point in double with numpy's round-half-to-even, float32 quantization clipped to the
 * type's full range, per-tensor and per-channel (any axis) weight quantizers, int4 packing.
 * Every optimised routine has a plain _ref twin; tests/unit/test_quant_math.c compares them. */
#ifndef QD_QUANT_MATH_H
#define QD_QUANT_MATH_H

#include "qd.h"

enum qd_qtype { QD_QT_UINT8, QD_QT_INT8, QD_QT_UINT16, QD_QT_INT16, QD_QT_UINT4, QD_QT_INT4,
		QD_QT__COUNT };

int qd_qtype_dtype(enum qd_qtype t);         /* ONNX TensorProto data type */
int qd_qtype_from_dtype(int dtype);          /* enum qd_qtype, or -1 */
bool qd_qtype_signed(enum qd_qtype t);
size_t qd_qtype_code_size(enum qd_qtype t);  /* bytes per code in the unpacked output: 1 or 2 */
const char *qd_qtype_name(enum qd_qtype t);  /* "uint8", ... */

/* qmin/qmax: reduce_range table first, then symmetric (8/16-bit only), then full range. */
void qd_quant_qrange(enum qd_qtype t, bool reduce_range, bool symmetric, int32_t *qmin, int32_t *qmax);
void qd_quant_full_range(enum qd_qtype t, int32_t *qmin, int32_t *qmax);

/* numpy round (half to even) of a double / float, independent of the FPU rounding mode. */
double qd_round_half_even(double x);
float qd_round_half_even_f(float x);

/* ORT compute_scale_zp: rmin <= 0 <= rmax; min_real_range > 0 widens rmax; symmetric uses
 * ±max|r|; scale = (rmax-rmin)/(qmax-qmin) in double; scale < FLT_MIN → scale 1, zp 0;
 * zp = rhe((qmin+qmax)/2) (symmetric) or rhe(qmin - rmin/scale); scale cast to float.
 * rmin/rmax are float32 values: their difference is taken in float32 like numpy does. */
void qd_quant_scale_zp(double rmin, double rmax, int32_t qmin, int32_t qmax, bool symmetric,
		       double min_real_range, float *scale, int32_t *zp);

/* q = clip(rhe(x / scale) + zp, full range of t), x/scale in float32. out: n codes of
 * qd_qtype_code_size(t) bytes (uint8_t, int8_t, uint16_t, int16_t; 4-bit types one code
 * per byte, unpacked, as uint8_t / int8_t). */
void qd_quantize(const float *x, size_t n, float scale, int32_t zp, enum qd_qtype t, void *out);
void qd_quantize_ref(const float *x, size_t n, float scale, int32_t zp, enum qd_qtype t, void *out);

/* Per-tensor weight: range from the data (min, max), then scale/zp, then codes. */
void qd_quant_weight_tensor(const float *w, size_t n, enum qd_qtype t, bool symmetric,
			    bool reduce_range, float *scale, int32_t *zp, void *out);
void qd_quant_weight_tensor_ref(const float *w, size_t n, enum qd_qtype t, bool symmetric,
				bool reduce_range, float *scale, int32_t *zp, void *out);

/* Per-channel weight along `axis` of dims[ndim] (negative axis counts from the end):
 * scales/zps get dims[axis] entries; out has the same layout as w. Returns 0 or -QD_EINVAL
 * (bad axis / dims). */
int qd_quant_weight_channel(const float *w, const int64_t *dims, int ndim, int axis, enum qd_qtype t,
			    bool symmetric, bool reduce_range, float *scales, int32_t *zps, void *out);
int qd_quant_weight_channel_ref(const float *w, const int64_t *dims, int ndim, int axis,
				enum qd_qtype t, bool symmetric, bool reduce_range, float *scales,
				int32_t *zps, void *out);

/* int4/uint4 packing: byte[i] = (c[2i+1] & 0xF) << 4 | (c[2i] & 0xF); odd n leaves the
 * last high nibble 0. out holds (n+1)/2 bytes. Returns the byte count. */
size_t qd_quant_pack_4bit(const uint8_t *codes, size_t n, uint8_t *out);

/* Dequantize one code (for tests and error figures): (q - zp) * scale. */
float qd_dequant_one(int32_t q, float scale, int32_t zp);

#endif
