/* Quantization math against hand/numpy-derived values (ORT quant_utils formulas:
 * compute_scale_zp in float64, numpy round half to even, float32 x/scale, clip to the full
 * range), plus optimised-vs-_ref comparisons on random data. */
#include "qd_test.h"
#include "passes/quant_math.h"
#include "onnx/onnx.h"

#include <stdlib.h>

/* Expected values from /usr/bin/python3 + numpy with ORT's formulas on
 * w = float32([-0.9, -0.31, 0.0, 0.12, 0.5, 0.77, 1.3]):
 *   qmin,qmax = table(reduce_range first, then symmetric, then full)
 *   rmin=min(w.min(),0); rmax=max(w.max(),0); symmetric: ±max(|rmin|,|rmax|)
 *   scale=float64(rmax-rmin)/(qmax-qmin); zp=np.round(...); scale→float32
 *   q=np.clip((w/scale).round()+zp, full_lo, full_hi) */
struct expect { enum qd_qtype t; bool sym, rr; int32_t qmin, qmax; double scale; int32_t zp; int q[7]; };
static const struct expect cases[] = {
	{QD_QT_UINT8, 0, 0, 0, 255, 0.008627450093626976, 104, {0, 68, 104, 118, 162, 193, 255}},
	{QD_QT_UINT8, 0, 1, 0, 127, 0.017322832718491554, 52, {0, 34, 52, 59, 81, 96, 127}},
	{QD_QT_UINT8, 1, 0, 0, 254, 0.010236220434308052, 127, {39, 97, 127, 139, 176, 202, 254}},
	{QD_QT_UINT8, 1, 1, 0, 127, 0.020472440868616104, 64, {20, 49, 64, 70, 88, 102, 127}},
	{QD_QT_INT8, 0, 0, -128, 127, 0.008627450093626976, -24, {-128, -60, -24, -10, 34, 65, 127}},
	{QD_QT_INT8, 0, 1, -64, 64, 0.01718749850988388, -12, {-64, -30, -12, -5, 17, 33, 64}},
	{QD_QT_INT8, 1, 0, -127, 127, 0.010236220434308052, 0, {-88, -30, 0, 12, 49, 75, 127}},
	{QD_QT_INT8, 1, 1, -64, 64, 0.02031249925494194, 0, {-44, -15, 0, 6, 25, 38, 64}},
	{QD_QT_UINT16, 0, 0, 0, 65535, 3.3569845982128754e-05, 26810, {0, 17576, 26810, 30385, 41704, 49747, 65535}},
	{QD_QT_UINT16, 0, 1, 0, 32767, 6.714071787428111e-05, 13405, {0, 8788, 13405, 15192, 20852, 24873, 32767}},
	{QD_QT_UINT16, 1, 0, 0, 65534, 3.967406155425124e-05, 32767, {10082, 24953, 32767, 35792, 45370, 52175, 65534}},
	/* zp = round(16383.5) = 16384 (half to even); 1.3 → 32768 > qmax: the clip uses the full range */
	{QD_QT_UINT16, 1, 1, 0, 32767, 7.934812310850248e-05, 16384, {5042, 12477, 16384, 17896, 22685, 26088, 32768}},
	{QD_QT_INT16, 0, 0, -32768, 32767, 3.3569845982128754e-05, -5958, {-32768, -15192, -5958, -2383, 8936, 16979, 32767}},
	{QD_QT_INT16, 0, 1, -16384, 16384, 6.713866605423391e-05, -2979, {-16384, -7596, -2979, -1192, 4468, 8490, 16384}},
	{QD_QT_INT16, 1, 0, -32767, 32767, 3.967406155425124e-05, 0, {-22685, -7814, 0, 3025, 12603, 19408, 32767}},
	{QD_QT_INT16, 1, 1, -16384, 16384, 7.934570021461695e-05, 0, {-11343, -3907, 0, 1512, 6302, 9704, 16384}},
	{QD_QT_UINT4, 0, 0, 0, 15, 0.14666666090488434, 6, {0, 4, 6, 7, 9, 11, 15}},
	{QD_QT_UINT4, 0, 1, 0, 7, 0.3142856955528259, 3, {0, 2, 3, 3, 5, 5, 7}},
	/* 4-bit has no symmetric table: full range, zp = round(7.5) = 8 */
	{QD_QT_UINT4, 1, 0, 0, 15, 0.1733333319425583, 8, {3, 6, 8, 9, 11, 12, 15}},
	{QD_QT_UINT4, 1, 1, 0, 7, 0.37142854928970337, 4, {2, 3, 4, 4, 5, 6, 8}},
	{QD_QT_INT4, 0, 0, -8, 7, 0.14666666090488434, -2, {-8, -4, -2, -1, 1, 3, 7}},
	{QD_QT_INT4, 0, 1, -4, 3, 0.3142856955528259, -1, {-4, -2, -1, -1, 1, 1, 3}},
	{QD_QT_INT4, 1, 0, -8, 7, 0.1733333319425583, 0, {-5, -2, 0, 1, 3, 4, 7}},
	{QD_QT_INT4, 1, 1, -4, 3, 0.37142854928970337, 0, {-2, -1, 0, 0, 1, 2, 4}},
};
static const float w7[7] = {-0.9f, -0.31f, 0.0f, 0.12f, 0.5f, 0.77f, 1.3f};

static int32_t code_at(const void *p, enum qd_qtype t, size_t i)
{
	switch (t) {
	case QD_QT_UINT8: case QD_QT_UINT4: return ((const uint8_t *)p)[i];
	case QD_QT_INT8: case QD_QT_INT4: return ((const int8_t *)p)[i];
	case QD_QT_UINT16: return ((const uint16_t *)p)[i];
	case QD_QT_INT16: return ((const int16_t *)p)[i];
	default: return -99999;
	}
}

static void test_tables(void)
{
	for (size_t c = 0; c < QD_ARRAY_LEN(cases); c++) {
		const struct expect *e = &cases[c];
		int32_t qmin, qmax;
		qd_quant_qrange(e->t, e->rr, e->sym, &qmin, &qmax);
		CHECK_EQ_INT(qmin, e->qmin);
		CHECK_EQ_INT(qmax, e->qmax);
		float scale; int32_t zp;
		uint16_t out[7], out_ref[7];
		qd_quant_weight_tensor(w7, 7, e->t, e->sym, e->rr, &scale, &zp, out);
		CHECKF(scale == (float)e->scale, "%s sym=%d rr=%d scale %.9g vs %.9g", qd_qtype_name(e->t),
		       e->sym, e->rr, scale, e->scale);
		CHECK_EQ_INT(zp, e->zp);
		for (int i = 0; i < 7; i++)
			CHECKF(code_at(out, e->t, i) == e->q[i], "%s sym=%d rr=%d q[%d] %d vs %d",
			       qd_qtype_name(e->t), e->sym, e->rr, i, code_at(out, e->t, i), e->q[i]);
		float s2; int32_t z2;
		qd_quant_weight_tensor_ref(w7, 7, e->t, e->sym, e->rr, &s2, &z2, out_ref);
		CHECK(s2 == scale && z2 == zp);
		CHECK(!memcmp(out, out_ref, 7 * qd_qtype_code_size(e->t)));
	}
	CHECK_EQ_INT(qd_qtype_dtype(QD_QT_INT4), QD_DT_INT4);
	CHECK_EQ_INT(qd_qtype_from_dtype(QD_DT_UINT8), QD_QT_UINT8);
	CHECK_EQ_INT(qd_qtype_from_dtype(QD_DT_FLOAT), -1);
}

static void test_rounding(void)
{
	/* numpy: np.round([0.5,1.5,2.5,-0.5,-1.5,-2.5,2.4999,-3.5]) = [0,2,2,-0,-2,-2,2,-4] */
	const double x[] = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -3.5};
	const double r[] = {0, 2, 2, 0, -2, -2, 2, -4};
	for (size_t i = 0; i < QD_ARRAY_LEN(x); i++) {
		CHECK(qd_round_half_even(x[i]) == r[i]);
		CHECK(qd_round_half_even_f((float)x[i]) == (float)r[i]);
	}
	/* quantize ties with scale 1, zp 0 and zp 10 (int8): np.clip(np.round(x)+zp, -128, 127) */
	const float xf[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 127.5f, 200.0f, -300.0f};
	const int8_t q0[] = {0, 2, 2, 0, -2, -2, 126, 127, 127, -128};
	const int8_t q10[] = {10, 12, 12, 10, 8, 8, 127, 127, 127, -128};
	int8_t a[10], b[10];
	qd_quantize(xf, 10, 1.0f, 0, QD_QT_INT8, a);
	qd_quantize_ref(xf, 10, 1.0f, 0, QD_QT_INT8, b);
	CHECK(!memcmp(a, q0, 10) && !memcmp(b, q0, 10));
	qd_quantize(xf, 10, 1.0f, 10, QD_QT_INT8, a);
	qd_quantize_ref(xf, 10, 1.0f, 10, QD_QT_INT8, b);
	CHECK(!memcmp(a, q10, 10) && !memcmp(b, q10, 10));
	/* zero-point ties: uint8, rmin=-1, rmax=509 → scale 2, zp = round(0.5) = 0;
	 * rmin=-3, rmax=507 → scale 2, zp = round(1.5) = 2 */
	float s; int32_t zp;
	qd_quant_scale_zp(-1, 509, 0, 255, false, 0, &s, &zp);
	CHECK(s == 2.0f);
	CHECK_EQ_INT(zp, 0);
	qd_quant_scale_zp(-3, 507, 0, 255, false, 0, &s, &zp);
	CHECK_EQ_INT(zp, 2);
}

static void test_edges(void)
{
	float s; int32_t zp;
	/* zero range: scale 1, zp 0, also for uint8 and symmetric */
	qd_quant_scale_zp(0, 0, 0, 255, false, 0, &s, &zp);
	CHECK(s == 1.0f && zp == 0);
	qd_quant_scale_zp(0, 0, 0, 254, true, 0, &s, &zp);
	CHECK(s == 1.0f && zp == 0);
	/* all-positive data: rmin clamps to 0 → uint8 zp 0, scale 3/255 */
	qd_quant_scale_zp(1, 3, 0, 255, false, 0, &s, &zp);
	CHECK(s == (float)(3.0 / 255.0) && zp == 0);
	/* all-negative data: rmax clamps to 0 → zp 255 */
	qd_quant_scale_zp(-2, -1, 0, 255, false, 0, &s, &zp);
	CHECK(s == (float)(2.0 / 255.0) && zp == 255);
	/* min_real_range: rmax = rmin + 0.0001 when the range is smaller */
	qd_quant_scale_zp(0, 0, 0, 255, false, 1e-4, &s, &zp);
	CHECK(s == (float)(1e-4 / 255.0) && zp == 0);
	/* all-zero weights quantize to zp */
	float z[5] = {0};
	uint8_t q[5];
	qd_quant_weight_tensor(z, 5, QD_QT_UINT8, false, false, &s, &zp, q);
	CHECK(s == 1.0f && zp == 0 && q[0] == 0 && q[4] == 0);
	/* 4-bit packing: [1,2,3,4,5] → 0x21 0x43 0x05; int4 -1 → 0xF nibble */
	uint8_t codes[5] = {1, 2, 3, 4, 5}, packed[3];
	CHECK_EQ_INT(qd_quant_pack_4bit(codes, 5, packed), 3);
	CHECK(packed[0] == 0x21 && packed[1] == 0x43 && packed[2] == 0x05);
	int8_t sc[2] = {-1, -8};
	CHECK_EQ_INT(qd_quant_pack_4bit((const uint8_t *)sc, 2, packed), 1);
	CHECK(packed[0] == 0x8F);
	CHECK(qd_dequant_one(130, 0.5f, 128) == 1.0f);
}

static void test_per_channel(void)
{
	/* W [2,3], axis 1 (MatMul B columns), int8 symmetric:
	 * col0 {1,-2}: scale 2/127, q {64 (63.5→64), -127}; col1 {0.5, 0.25}: scale 0.5/127,
	 * q {127, 64 (63.5→64)}; col2 {0,0}: scale 1, zp 0, q {0, 0}. numpy: round(63.5)=64. */
	const float w[6] = {1.0f, 0.5f, 0.0f, -2.0f, 0.25f, 0.0f};
	const int64_t dims[2] = {2, 3};
	float sc[3]; int32_t zp[3]; int8_t q[6];
	CHECK_EQ_INT(qd_quant_weight_channel(w, dims, 2, 1, QD_QT_INT8, true, false, sc, zp, q), 0);
	CHECK(sc[0] == (float)(4.0 / 254.0) && sc[1] == (float)(1.0 / 254.0) && sc[2] == 1.0f);
	CHECK(zp[0] == 0 && zp[1] == 0 && zp[2] == 0);
	/* 1/(4/254)=63.5 in float32 → rounds to 64 */
	CHECKF(q[0] == 64 && q[3] == -127 && q[1] == 127 && q[4] == 64 && q[2] == 0 && q[5] == 0,
	       "%d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[4], q[5]);
	/* axis 0 and -1 */
	CHECK_EQ_INT(qd_quant_weight_channel(w, dims, 2, -1, QD_QT_INT8, true, false, sc, zp, q), 0);
	CHECK(sc[0] == (float)(4.0 / 254.0));
	CHECK_EQ_INT(qd_quant_weight_channel(w, dims, 2, 0, QD_QT_INT8, true, false, sc, zp, q), 0);
	CHECK(sc[0] == (float)(2.0 / 254.0) && sc[1] == (float)(4.0 / 254.0));
	CHECK_EQ_INT(qd_quant_weight_channel(w, dims, 2, 2, QD_QT_INT8, true, false, sc, zp, q), -QD_EINVAL);
	CHECK_EQ_INT(qd_quant_weight_channel(w, dims, 2, -3, QD_QT_INT8, true, false, sc, zp, q), -QD_EINVAL);
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
	rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static void test_random_vs_ref(void)
{
	enum { N = 4 * 5 * 6 * 7 };
	static float w[N];
	static uint8_t a[N * 2], b[N * 2];
	float sa[64], sb[64]; int32_t za[64], zb[64];
	const int64_t dims[4] = {4, 5, 6, 7};
	int mism = 0;
	for (int trial = 0; trial < 40; trial++) {
		float amp = trial % 5 == 0 ? 1e-6f : trial % 5 == 1 ? 100.0f : 1.0f;
		float shift = trial % 3 == 0 ? 0.3f : 0.0f;
		for (int i = 0; i < N; i++)
			w[i] = (frand() * 2.0f - 1.0f + shift) * amp;
		if (trial % 7 == 0)   /* exact ties: multiples of half the scale */
			for (int i = 0; i < N; i++)
				w[i] = (float)((int)(frand() * 40) - 20) * 0.5f;
		for (int t = 0; t < QD_QT__COUNT; t++)
			for (int mode = 0; mode < 4; mode++) {
				bool sym = mode & 1, rr = mode & 2;
				qd_quant_weight_tensor(w, N, t, sym, rr, sa, za, a);
				qd_quant_weight_tensor_ref(w, N, t, sym, rr, sb, zb, b);
				mism += sa[0] != sb[0] || za[0] != zb[0] ||
					memcmp(a, b, N * qd_qtype_code_size(t));
				int axis = trial % 4;
				qd_quant_weight_channel(w, dims, 4, axis, t, sym, rr, sa, za, a);
				qd_quant_weight_channel_ref(w, dims, 4, axis, t, sym, rr, sb, zb, b);
				mism += memcmp(sa, sb, dims[axis] * sizeof(float)) ||
					memcmp(za, zb, dims[axis] * sizeof(int32_t)) ||
					memcmp(a, b, N * qd_qtype_code_size(t));
			}
		/* raw quantize with arbitrary scale/zp */
		float sc = 0.001f + frand();
		int32_t z = (int32_t)(frand() * 255);
		qd_quantize(w, N, sc, z, QD_QT_UINT8, a);
		qd_quantize_ref(w, N, sc, z, QD_QT_UINT8, b);
		mism += memcmp(a, b, N) != 0;
	}
	CHECK_EQ_INT(mism, 0);
}

int main(void)
{
	test_tables();
	test_rounding();
	test_edges();
	test_per_channel();
	test_random_vs_ref();
	return qd_test_done("test_quant_math");
}
