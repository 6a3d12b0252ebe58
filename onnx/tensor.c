/* ONNX tensors: data type table, element counts, conversion of any stored form
 * (typed fields or little-endian raw_data) to float32 / int64, and new tensors.
 * Also the expected-size check shared by qd_model_check and the external-data code. */
#include "onnx/onnx_internal.h"

#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data is little-endian; this file assumes a little-endian host"
#endif

/* One row per data type: QD_DT value, name, bytes per element, typed field that holds it. */
static const struct qd_dtype_info dtype_table[] = {
#define DT(id, name, size, field) [id] = { name, size, field },
	DT(QD_DT_UNDEFINED, "undefined", 0, QD_TF_NONE)
	DT(QD_DT_FLOAT, "float32", 4, QD_TF_FLOAT)
	DT(QD_DT_UINT8, "uint8", 1, QD_TF_INT32)
	DT(QD_DT_INT8, "int8", 1, QD_TF_INT32)
	DT(QD_DT_UINT16, "uint16", 2, QD_TF_INT32)
	DT(QD_DT_INT16, "int16", 2, QD_TF_INT32)
	DT(QD_DT_INT32, "int32", 4, QD_TF_INT32)
	DT(QD_DT_INT64, "int64", 8, QD_TF_INT64)
	DT(QD_DT_STRING, "string", 0, QD_TF_STRING)
	DT(QD_DT_BOOL, "bool", 1, QD_TF_INT32)
	DT(QD_DT_FLOAT16, "float16", 2, QD_TF_INT32)
	DT(QD_DT_DOUBLE, "float64", 8, QD_TF_DOUBLE)
	DT(QD_DT_UINT32, "uint32", 4, QD_TF_UINT64)
	DT(QD_DT_UINT64, "uint64", 8, QD_TF_UINT64)
	DT(QD_DT_COMPLEX64, "complex64", 8, QD_TF_FLOAT)
	DT(QD_DT_COMPLEX128, "complex128", 16, QD_TF_DOUBLE)
	DT(QD_DT_BFLOAT16, "bfloat16", 2, QD_TF_INT32)
	DT(QD_DT_FLOAT8E4M3FN, "float8e4m3fn", 1, QD_TF_INT32)
	DT(QD_DT_FLOAT8E4M3FNUZ, "float8e4m3fnuz", 1, QD_TF_INT32)
	DT(QD_DT_FLOAT8E5M2, "float8e5m2", 1, QD_TF_INT32)
	DT(QD_DT_FLOAT8E5M2FNUZ, "float8e5m2fnuz", 1, QD_TF_INT32)
	DT(QD_DT_UINT4, "uint4", 0, QD_TF_INT32)
	DT(QD_DT_INT4, "int4", 0, QD_TF_INT32)
#undef DT
};
_Static_assert(QD_ARRAY_LEN(dtype_table) == QD_DT_INT4 + 1, "dtype table rows");

const struct qd_dtype_info *qd_dtype_info(int dtype)
{
	if (dtype <= 0 || dtype >= (int)QD_ARRAY_LEN(dtype_table))
		return NULL;
	return &dtype_table[dtype];
}

size_t qd_dtype_size(int dtype)
{
	const struct qd_dtype_info *d = qd_dtype_info(dtype);
	return d ? d->size : 0;
}

const char *qd_dtype_name(int dtype)
{
	const struct qd_dtype_info *d = qd_dtype_info(dtype);
	return d ? d->name : "unknown";
}

int qd_dtype_from_name(const char *name)
{
	static const struct { const char *alias; int dt; } aliases[] = {
		{ "float", QD_DT_FLOAT }, { "double", QD_DT_DOUBLE }, { "half", QD_DT_FLOAT16 },
	};
	if (!name)
		return QD_DT_UNDEFINED;
	for (int i = 1; i < (int)QD_ARRAY_LEN(dtype_table); i++)
		if (!strcmp(dtype_table[i].name, name))
			return i;
	for (size_t i = 0; i < QD_ARRAY_LEN(aliases); i++)
		if (!strcmp(aliases[i].alias, name))
			return aliases[i].dt;
	return QD_DT_UNDEFINED;
}

int64_t qd_dims_numel(const int64_t *dims, size_t n)
{
	int64_t numel = 1;
	for (size_t i = 0; i < n; i++) {
		if (dims[i] < 0)
			return -1;
		if (dims[i] && numel > INT64_MAX / dims[i])
			return -1;
		numel *= dims[i];
	}
	return numel;
}

int64_t qd_tensor_numel(const Onnx__TensorProto *t)
{
	return t ? qd_dims_numel(t->dims, t->n_dims) : -1;
}

size_t qd_tensor_typed_count(const Onnx__TensorProto *t, int field)
{
	switch (field) {
	case QD_TF_FLOAT: return t->n_float_data;
	case QD_TF_INT32: return t->n_int32_data;
	case QD_TF_INT64: return t->n_int64_data;
	case QD_TF_DOUBLE: return t->n_double_data;
	case QD_TF_UINT64: return t->n_uint64_data;
	case QD_TF_STRING: return t->n_string_data;
	default: return 0;
	}
}

int64_t qd_dtype_nbytes(int dtype, int64_t numel)
{
	const struct qd_dtype_info *d = qd_dtype_info(dtype);
	if (!d || numel < 0)
		return -1;
	if (dtype == QD_DT_UINT4 || dtype == QD_DT_INT4)
		return (numel + 1) / 2;
	if (!d->size || numel > INT64_MAX / (int64_t)d->size)
		return -1;
	return numel * (int64_t)d->size;
}

static const char *tname(const Onnx__TensorProto *t)
{
	return t && t->name && *t->name ? t->name : "(unnamed tensor)";
}

int qd_tensor_check_data(const Onnx__TensorProto *t, struct qd_err *err)
{
	const char *nm = tname(t);
	if (!t->has_data_type || !qd_dtype_info(t->data_type))
		return qd_err_set(err, QD_EMODEL, nm, "tensor '%s' has unknown data type %d", nm,
				  (int)t->data_type);
	int64_t numel = qd_tensor_numel(t);
	if (numel < 0)
		return qd_err_set(err, QD_EMODEL, nm,
				  "tensor '%s' has negative dims or an element count that overflows", nm);
	const struct qd_dtype_info *d = qd_dtype_info(t->data_type);
	if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return 0; /* checked when resolved (qd_external_*) */
	if (t->has_raw_data) {
		if (t->data_type == QD_DT_STRING)
			return qd_err_set(err, QD_EMODEL, nm, "string tensor '%s' cannot use raw_data", nm);
		int64_t want = qd_dtype_nbytes(t->data_type, numel);
		if (want < 0 || (uint64_t)want != (uint64_t)t->raw_data.len)
			return qd_err_set(err, QD_EMODEL, nm,
					  "tensor '%s' raw_data has %zu bytes, dims and type %s need %lld",
					  nm, t->raw_data.len, d->name, (long long)want);
		return 0;
	}
	size_t have = qd_tensor_typed_count(t, d->field);
	int64_t want = numel;
	if (t->data_type == QD_DT_COMPLEX64 || t->data_type == QD_DT_COMPLEX128)
		want = numel > INT64_MAX / 2 ? -1 : numel * 2;
	else if (t->data_type == QD_DT_UINT4 || t->data_type == QD_DT_INT4)
		want = (numel + 1) / 2;
	if (want < 0 || (uint64_t)want != (uint64_t)have)
		return qd_err_set(err, QD_EMODEL, nm,
				  "tensor '%s' holds %zu values, dims need %lld", nm, have, (long long)want);
	return 0;
}

/* ---- scalar conversions ---- */
float qd_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else { /* subnormal: normalise */
			exp = 127 - 15 + 1;
			while (!(man & 0x400)) {
				man <<= 1;
				exp--;
			}
			man &= 0x3ff;
			bits = sign | (exp << 23) | (man << 13);
		}
	} else if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else {
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t qd_float_to_half(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000;
	int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
	uint32_t man = x & 0x7fffff;
	if (((x >> 23) & 0xff) == 0xff) /* inf / nan */
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
	if (exp >= 0x1f)
		return (uint16_t)(sign | 0x7c00);
	if (exp <= 0) {
		if (exp < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		uint32_t shift = (uint32_t)(14 - exp);
		uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++; /* may carry into the exponent, which is the correct rounding */
	return (uint16_t)h;
}

float qd_bfloat16_to_float(uint16_t b)
{
	uint32_t bits = (uint32_t)b << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

/* Generic float8: ebits exponent bits, mbits mantissa bits; fnuz = no negative zero,
 * 0x80 is NaN, bias one larger; e4m3fn has no infinities and S.1111.111 is NaN. */
static float f8_to_float(uint8_t v, int ebits, int mbits, bool fnuz, bool fn)
{
	int bias = (1 << (ebits - 1)) - 1 + (fnuz ? 1 : 0);
	int sign = v >> 7, exp = (v >> mbits) & ((1 << ebits) - 1), man = v & ((1 << mbits) - 1);
	if (fnuz && v == 0x80)
		return NAN;
	if (!fnuz && fn && exp == (1 << ebits) - 1 && man == (1 << mbits) - 1)
		return NAN;
	if (!fnuz && !fn && exp == (1 << ebits) - 1)
		return man ? NAN : (sign ? -INFINITY : INFINITY);
	float r;
	if (exp == 0)
		r = ldexpf((float)man, 1 - bias - mbits);
	else
		r = ldexpf((float)(man | (1 << mbits)), exp - bias - mbits);
	return sign ? -r : r;
}

/* ---- whole-tensor conversions ---- */
static int no_data_err(const Onnx__TensorProto *t, struct qd_err *err)
{
	if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return qd_err_set(err, QD_EMODEL, tname(t),
				  "tensor '%s' data is external and was not loaded", tname(t));
	return 0;
}

/* Reads element i as double (integers exact up to 2^53) or int64; kind 0 = float, 1 = int. */
static int tensor_convert(const Onnx__TensorProto *t, void **out, int64_t *n, int as_int,
			  struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	*out = NULL;
	if (n)
		*n = 0;
	int rc = no_data_err(t, err);
	if (rc)
		return rc;
	if ((rc = qd_tensor_check_data(t, err)))
		return rc;
	int dt = t->data_type;
	const char *nm = tname(t);
	if (dt == QD_DT_STRING || dt == QD_DT_COMPLEX64 || dt == QD_DT_COMPLEX128)
		return qd_err_set(err, QD_EUNSUPPORTED, nm, "cannot convert %s tensor '%s' to %s",
				  qd_dtype_name(dt), nm, as_int ? "int64" : "float32");
	bool is_float = dt == QD_DT_FLOAT || dt == QD_DT_DOUBLE || dt == QD_DT_FLOAT16 ||
			dt == QD_DT_BFLOAT16 || (dt >= QD_DT_FLOAT8E4M3FN && dt <= QD_DT_FLOAT8E5M2FNUZ);
	if (as_int && is_float)
		return qd_err_set(err, QD_EUNSUPPORTED, nm, "cannot convert %s tensor '%s' to int64",
				  qd_dtype_name(dt), nm);
	int64_t numel = qd_tensor_numel(t);
	size_t esz = as_int ? sizeof(int64_t) : sizeof(float);
	if ((uint64_t)numel > SIZE_MAX / esz)
		return qd_err_set(err, QD_ETOO_LARGE, nm, "tensor '%s' is too large", nm);
	void *buf = malloc(numel ? (size_t)numel * esz : 1);
	if (!buf)
		return qd_err_set(err, QD_ENOMEM, nm, "cannot convert tensor '%s': out of memory", nm);
	float *of = buf;
	int64_t *oi = buf;
	const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
	for (int64_t i = 0; i < numel; i++) {
		double d = 0;
		int64_t v = 0;
		bool isf = false;
		switch (dt) {
		case QD_DT_FLOAT: {
			float f;
			if (raw) memcpy(&f, raw + 4 * i, 4); else f = t->float_data[i];
			d = f; isf = true; break;
		}
		case QD_DT_DOUBLE:
			if (raw) memcpy(&d, raw + 8 * i, 8); else d = t->double_data[i];
			isf = true; break;
		case QD_DT_FLOAT16: case QD_DT_BFLOAT16: {
			uint16_t h;
			if (raw) memcpy(&h, raw + 2 * i, 2); else h = (uint16_t)t->int32_data[i];
			d = dt == QD_DT_FLOAT16 ? qd_half_to_float(h) : qd_bfloat16_to_float(h);
			isf = true; break;
		}
		case QD_DT_FLOAT8E4M3FN: case QD_DT_FLOAT8E4M3FNUZ:
		case QD_DT_FLOAT8E5M2: case QD_DT_FLOAT8E5M2FNUZ: {
			uint8_t b = raw ? raw[i] : (uint8_t)t->int32_data[i];
			bool e4 = dt <= QD_DT_FLOAT8E4M3FNUZ;
			d = f8_to_float(b, e4 ? 4 : 5, e4 ? 3 : 2,
					dt == QD_DT_FLOAT8E4M3FNUZ || dt == QD_DT_FLOAT8E5M2FNUZ,
					dt == QD_DT_FLOAT8E4M3FN);
			isf = true; break;
		}
		case QD_DT_UINT8: v = raw ? raw[i] : (uint8_t)t->int32_data[i]; break;
		case QD_DT_INT8: v = raw ? (int8_t)raw[i] : (int8_t)t->int32_data[i]; break;
		case QD_DT_BOOL: v = (raw ? raw[i] : t->int32_data[i]) != 0; break;
		case QD_DT_UINT16: {
			uint16_t x;
			if (raw) memcpy(&x, raw + 2 * i, 2); else x = (uint16_t)t->int32_data[i];
			v = x; break;
		}
		case QD_DT_INT16: {
			int16_t x;
			if (raw) memcpy(&x, raw + 2 * i, 2); else x = (int16_t)t->int32_data[i];
			v = x; break;
		}
		case QD_DT_INT32: {
			int32_t x;
			if (raw) memcpy(&x, raw + 4 * i, 4); else x = t->int32_data[i];
			v = x; break;
		}
		case QD_DT_INT64:
			if (raw) memcpy(&v, raw + 8 * i, 8); else v = t->int64_data[i];
			break;
		case QD_DT_UINT32: {
			uint32_t x;
			if (raw) memcpy(&x, raw + 4 * i, 4); else x = (uint32_t)t->uint64_data[i];
			v = x; break;
		}
		case QD_DT_UINT64: {
			uint64_t x;
			if (raw) memcpy(&x, raw + 8 * i, 8); else x = t->uint64_data[i];
			if (as_int && x > (uint64_t)INT64_MAX) {
				free(buf);
				return qd_err_set(err, QD_ERANGE, nm,
						  "tensor '%s' value %llu does not fit int64", nm,
						  (unsigned long long)x);
			}
			if (!as_int) { d = (double)x; isf = true; } else v = (int64_t)x;
			break;
		}
		case QD_DT_UINT4: case QD_DT_INT4: {
			uint8_t b = raw ? raw[i / 2] : (uint8_t)t->int32_data[i / 2];
			int nib = (i & 1) ? (b >> 4) : (b & 0xf);
			v = (dt == QD_DT_INT4 && nib >= 8) ? nib - 16 : nib;
			break;
		}
		default:
			free(buf);
			return qd_err_set(err, QD_EUNSUPPORTED, nm, "tensor '%s' has unsupported type %d",
					  nm, dt);
		}
		if (as_int)
			oi[i] = v;
		else
			of[i] = isf ? (float)d : (float)v;
	}
	*out = buf;
	if (n)
		*n = numel;
	return 0;
}

int qd_tensor_to_float(const Onnx__TensorProto *t, float **out, int64_t *n, struct qd_err *err)
{
	return tensor_convert(t, (void **)out, n, 0, err);
}

int qd_tensor_to_int64(const Onnx__TensorProto *t, int64_t **out, int64_t *n, struct qd_err *err)
{
	return tensor_convert(t, (void **)out, n, 1, err);
}

Onnx__TensorProto *qd_tensor_new(const char *name, int dtype, const int64_t *dims, size_t ndims,
				 const void *data, size_t nbytes)
{
	Onnx__TensorProto *t = malloc(sizeof *t);
	if (!t)
		return NULL;
	onnx__tensor_proto__init(t);
	t->has_data_type = 1;
	t->data_type = dtype;
	if (name && !(t->name = strdup(name)))
		goto fail;
	if (ndims) {
		if (!(t->dims = malloc(ndims * sizeof *t->dims)))
			goto fail;
		memcpy(t->dims, dims, ndims * sizeof *t->dims);
		t->n_dims = ndims;
	}
	if (dtype != QD_DT_STRING) {
		t->has_raw_data = 1;
		t->raw_data.data = malloc(nbytes ? nbytes : 1);
		if (!t->raw_data.data)
			goto fail;
		if (nbytes)
			memcpy(t->raw_data.data, data, nbytes);
		t->raw_data.len = nbytes;
	}
	return t;
fail:
	qd_tensor_free(t);
	return NULL;
}

void qd_tensor_free(Onnx__TensorProto *t)
{
	if (t)
		protobuf_c_message_free_unpacked(&t->base, NULL);
}
