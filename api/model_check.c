/* Validation of an uploaded model without loading its weights: the serialized ModelProto
 * is copied with every TensorProto's raw_data replaced by an external-data reference
 * (location = the blob file, offset and length of the bytes in it), then parsed with
 * keep_external so the loader checks each reference (length = dims x dtype) without
 * reading it. Memory is the size of the graph structure, not of the weights: a 1.9 GB
 * single-file model validates in a few MB. raw_data under 128 bytes stays inline, so the
 * copy is never larger than the input; malformed input falls back to the loader's wire
 * scan, which names the problem without allocating. Tensors that already use external data are
 * rejected in a single-file upload (it cannot carry them); in a model tar's extracted .onnx
 * (qd_api_check_model_path with allow_external) the loader checks their locations resolve
 * inside the model's directory and their lengths against the data files. */
#define _GNU_SOURCE
#include "api/api.h"
#include "onnx/onnx.h"
#include "onnx/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define STRIP_MAX_DEPTH 64
#define F_RAW_DATA 9        /* TensorProto.raw_data */
#define F_EXTERNAL_DATA 13  /* TensorProto.external_data */
#define F_DATA_LOCATION 14  /* TensorProto.data_location */

struct strip_ctx {
	const uint8_t *base;
	const char *location;
	int ext_found;      /* an input tensor already uses external data */
};

static int put_varint(struct qd_buf *o, uint64_t v)
{
	uint8_t b[10];
	int n = 0;
	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	return qd_buf_append(o, b, (size_t)n);
}

static int put_bytes_field(struct qd_buf *o, uint32_t num, const void *p, size_t n)
{
	if (put_varint(o, ((uint64_t)num << 3) | 2) || put_varint(o, n))
		return -1;
	return n ? qd_buf_append(o, p, n) : 0;
}

/* One StringStringEntryProto {key = 1, value = 2} as field 13 of a TensorProto. */
static int put_ext_entry(struct qd_buf *o, const char *k, const char *v)
{
	struct qd_buf e = { 0 };
	int rc = put_bytes_field(&e, 1, k, strlen(k)) || put_bytes_field(&e, 2, v, strlen(v)) ||
		 put_bytes_field(o, F_EXTERNAL_DATA, e.data, e.len);
	qd_buf_free(&e);
	return rc ? -1 : 0;
}

/* Rewrite the message d in base[start, end) into out. -1 on malformed input or OOM. */
static int strip_msg(struct strip_ctx *c, const ProtobufCMessageDescriptor *d, size_t start,
		     size_t end, struct qd_buf *out, int depth)
{
	const uint8_t *p = c->base;
	bool tensor = d == &onnx__tensor_proto__descriptor, had_raw = false;
	size_t pos = start;
	if (depth > STRIP_MAX_DEPTH)
		return -1;
	while (pos < end) {
		size_t at = pos;
		uint64_t key, v;
		if (qd_pb_read_varint(p, end, &pos, &key))
			return -1;
		uint32_t num = (uint32_t)(key >> 3);
		if (num == 0 || (key >> 3) > 0x1fffffff)
			return -1;
		switch (key & 7) {
		case 0:
			if (qd_pb_read_varint(p, end, &pos, &v))
				return -1;
			if (tensor && num == F_DATA_LOCATION && v != 0)
				c->ext_found = 1;
			break;
		case 1:
			if (end - pos < 8)
				return -1;
			pos += 8;
			break;
		case 5:
			if (end - pos < 4)
				return -1;
			pos += 4;
			break;
		case 2: {
			if (qd_pb_read_varint(p, end, &pos, &v) || v > end - pos)
				return -1;
			size_t ps = pos, pe = pos + (size_t)v;
			pos = pe;
			if (tensor && num == F_EXTERNAL_DATA)
				c->ext_found = 1;
			/* small raw_data stays inline (the loader checks it): the copy never gets
			 * bigger than the input */
			if (tensor && num == F_RAW_DATA && pe - ps >= 128) {
				char off[32], len[32];
				snprintf(off, sizeof off, "%zu", ps);
				snprintf(len, sizeof len, "%zu", pe - ps);
				if (put_ext_entry(out, "location", c->location) ||
				    put_ext_entry(out, "offset", off) || put_ext_entry(out, "length", len))
					return -1;
				had_raw = true;
				continue;
			}
			const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, num);
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
				struct qd_buf sub = { 0 };
				int rc = strip_msg(c, f->descriptor, ps, pe, &sub, depth + 1);
				if (!rc)
					rc = put_bytes_field(out, num, sub.data, sub.len);
				qd_buf_free(&sub);
				if (rc)
					return -1;
				continue;
			}
			break;
		}
		default:
			return -1;  /* groups are not used by onnx.proto */
		}
		if (qd_buf_append(out, p + at, pos - at))
			return -1;
	}
	if (had_raw && (put_varint(out, (uint64_t)F_DATA_LOCATION << 3) || put_varint(out, 1)))
		return -1;
	return 0;
}

int qd_api_check_model_file(const char *path, json_t **summary, struct qd_err *err)
{
	return qd_api_check_model_path(path, false, summary, err);
}

int qd_api_check_model_path(const char *path, bool allow_external, json_t **summary,
			    struct qd_err *err)
{
	struct qd_model *m = NULL;
	struct qd_buf stripped = { 0 };
	void *map = MAP_FAILED;
	char *dir_copy = strdup(path), *base_copy = strdup(path);
	struct stat st;
	size_t size = 0;
	int rc, fd = -1;
	*summary = NULL;
	if (!dir_copy || !base_copy) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = qd_err_set(err, QD_EIO, "", "cannot open uploaded blob: %s", strerror(errno));
		goto out;
	}
	size = (size_t)st.st_size;
	if (!size) {
		rc = qd_err_set(err, QD_EPARSE, "body", "cannot parse model: input is empty");
		goto out;
	}
	map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = qd_err_set(err, QD_EIO, "", "cannot map uploaded blob: %s", strerror(errno));
		goto out;
	}
	struct strip_ctx c = { map, basename(base_copy), 0 };
	if (strip_msg(&c, &onnx__model_proto__descriptor, 0, size, &stripped, 0)) {
		/* malformed (or out of memory): the loader's wire scan names the problem without
		 * allocating anything large */
		struct qd_load_opts lo = { 0 };
		rc = qd_model_load_buf(map, size, NULL, &lo, &m, err);
		if (!rc)
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory checking the model");
		goto out;
	}
	if (c.ext_found && !allow_external) {
		rc = qd_err_set(err, QD_EMODEL, "body",
				"a tensor uses external data (data_location EXTERNAL); upload a single-file "
				"model with every tensor inside it");
		goto out;
	}
	struct qd_load_opts lo = { .keep_external = true };
	if ((rc = qd_model_load_buf(stripped.data ? stripped.data : (uint8_t *)"", stripped.len,
				    dirname(dir_copy), &lo, &m, err)) ||
	    (rc = qd_model_check(m, err)))
		goto out;
	if (!(*summary = qd_model_summary_json(m)))
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory describing the model");
out:
	qd_model_free(m);
	qd_buf_free(&stripped);
	if (map != MAP_FAILED)
		munmap(map, size);
	if (fd >= 0)
		close(fd);
	free(dir_copy);
	free(base_copy);
	return rc;
}
