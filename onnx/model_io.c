/* Model load and save: mmap + a wire-format pre-scan (clear errors, bounded nesting) +
 * protobuf_c_message_unpack; streaming pack to an atomically renamed file; external data
 * (read on load with path confinement to the model directory, written on request or when
 * the message would pass protobuf's 2 GiB limit). Unknown fields survive load/save. */
#define _GNU_SOURCE
#include "onnx/onnx_internal.h"
#include "onnx/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROTOBUF_LIMIT ((uint64_t)INT32_MAX) /* protobuf refuses messages >= 2 GiB */

/* ---- small shared helpers ---- */
char *qd_path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int qd_ptr_append(size_t *n, void ***arr, void *p)
{
	void **na = realloc(*arr, (*n + 1) * sizeof *na);
	if (!na)
		return -QD_ENOMEM;
	na[(*n)++] = p;
	*arr = na;
	return 0;
}

/* ---- wire-format pre-scan ---- */
int qd_pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*pos >= len)
			return -1;
		uint8_t b = p[(*pos)++];
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

static int expected_wire(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FLOAT:
		return 5;
	case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 1;
	case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES: case PROTOBUF_C_TYPE_MESSAGE:
		return 2;
	default:
		return 0;
	}
}

struct scan_frame { const ProtobufCMessageDescriptor *d; size_t end; const char *field; };

/* Walks the protobuf wire format against the descriptors without allocating per field:
 * rejects truncation, bad wire types, lengths past the end and nesting deeper than
 * QD_ONNX_MAX_DEPTH (protobuf-c's unpacker recurses without a limit). */
static int wire_scan(const uint8_t *p, size_t len, struct qd_err *err)
{
	struct scan_frame st[QD_ONNX_MAX_DEPTH + 1];
	int depth = 0;
	size_t pos = 0;
	st[0] = (struct scan_frame){ &onnx__model_proto__descriptor, len, "ModelProto" };
	for (;;) {
		while (depth > 0 && pos == st[depth].end)
			depth--;
		if (pos == st[depth].end)
			break;
		const ProtobufCMessageDescriptor *d = st[depth].d;
		size_t at = pos;
		uint64_t key, v;
		if (qd_pb_read_varint(p, st[depth].end, &pos, &key))
			return qd_err_set(err, QD_EPARSE, d->short_name,
					  "cannot parse model: truncated field key in %s at byte %zu",
					  d->name, at);
		uint32_t num = (uint32_t)(key >> 3);
		int wt = (int)(key & 7);
		if (num == 0 || (key >> 3) > 0x1fffffff)
			return qd_err_set(err, QD_EPARSE, d->short_name,
					  "cannot parse model: invalid field number in %s at byte %zu",
					  d->name, at);
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, num);
		if (f) {
			int want = expected_wire(f->type);
			bool packed_ok = f->label == PROTOBUF_C_LABEL_REPEATED && want != 2 && wt == 2;
			if (wt != want && !packed_ok)
				return qd_err_set(err, QD_EPARSE, f->name,
						  "cannot parse model: field '%s' of %s has wire type %d, "
						  "expected %d (byte %zu)", f->name, d->name, wt, want, at);
		}
		switch (wt) {
		case 0:
			if (qd_pb_read_varint(p, st[depth].end, &pos, &v))
				goto truncated;
			break;
		case 1:
			if (st[depth].end - pos < 8)
				goto truncated;
			pos += 8;
			break;
		case 5:
			if (st[depth].end - pos < 4)
				goto truncated;
			pos += 4;
			break;
		case 2:
			if (qd_pb_read_varint(p, st[depth].end, &pos, &v))
				goto truncated;
			if (v > st[depth].end - pos)
				return qd_err_set(err, QD_EPARSE, f ? f->name : d->short_name,
						  "cannot parse model: field '%s' of %s claims %llu bytes, "
						  "only %zu left (truncated or corrupt file, byte %zu)",
						  f ? f->name : "?", d->name, (unsigned long long)v,
						  st[depth].end - pos, at);
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
				if (depth + 1 > QD_ONNX_MAX_DEPTH)
					return qd_err_set(err, QD_EPARSE, f->name,
							  "cannot parse model: messages nested deeper than %d",
							  QD_ONNX_MAX_DEPTH);
				depth++;
				st[depth] = (struct scan_frame){ f->descriptor, pos + (size_t)v, f->name };
			} else {
				pos += (size_t)v;
			}
			break;
		default:
			return qd_err_set(err, QD_EPARSE, d->short_name,
					  "cannot parse model: unsupported wire type %d in %s at byte %zu",
					  wt, d->name, at);
		}
		continue;
truncated:
		return qd_err_set(err, QD_EPARSE, f ? f->name : d->short_name,
				  "cannot parse model: truncated value of field '%s' in %s (byte %zu)",
				  f ? f->name : "?", d->name, at);
	}
	return 0;
}

/* ---- graph walking ---- */
static int walk(Onnx__GraphProto *g, int depth, qd_graph_visit_fn fn, void *ud)
{
	if (!g)
		return 0;
	if (depth > QD_ONNX_MAX_DEPTH)
		return -QD_EMODEL;
	int rc = fn(g, depth, ud);
	if (rc)
		return rc;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t a = 0; a < n->n_attribute; a++) {
			Onnx__AttributeProto *at = n->attribute[a];
			if (at->g && (rc = walk(at->g, depth + 1, fn, ud)))
				return rc;
			for (size_t k = 0; k < at->n_graphs; k++)
				if ((rc = walk(at->graphs[k], depth + 1, fn, ud)))
					return rc;
		}
	}
	return 0;
}

int qd_graph_walk(Onnx__GraphProto *g, qd_graph_visit_fn fn, void *ud)
{
	return walk(g, 0, fn, ud);
}

/* ---- external data: load ---- */
struct ext_ctx {
	const char *base_dir;
	char *base_real;
	bool keep;
	bool skip_init;     /* leave graph initializers alone (save: they are passed through) */
	struct qd_err *err;
};

static const char *ext_get(const Onnx__TensorProto *t, const char *key)
{
	for (size_t i = 0; i < t->n_external_data; i++)
		if (t->external_data[i]->key && !strcmp(t->external_data[i]->key, key))
			return t->external_data[i]->value ? t->external_data[i]->value : "";
	return NULL;
}

static int parse_u64(const char *s, uint64_t *v)
{
	if (!s || !*s || *s == '-')
		return -1;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*v = x;
	return 0;
}

/* Resolves location against base_dir; refuses absolute paths, ".." and symlinks out. */
static int ext_resolve(struct ext_ctx *c, const char *tn, const char *loc, char **full)
{
	struct qd_err *err = c->err;
	if (!loc || !*loc)
		return qd_err_set(err, QD_EMODEL, tn, "tensor '%s' has external data without a location", tn);
	if (loc[0] == '/')
		return qd_err_set(err, QD_EMODEL, tn,
				  "external data location '%s' of tensor '%s' is absolute; it must be "
				  "relative to the model directory", loc, tn);
	for (const char *s = loc; *s;) {
		const char *e = strchrnul(s, '/');
		if (e - s == 2 && s[0] == '.' && s[1] == '.')
			return qd_err_set(err, QD_EMODEL, tn,
					  "external data location '%s' of tensor '%s' escapes the model "
					  "directory", loc, tn);
		s = *e ? e + 1 : e;
	}
	if (!c->base_dir)
		return qd_err_set(err, QD_EINVAL, tn,
				  "tensor '%s' uses external data '%s' but the model was loaded from "
				  "memory without a base directory", tn, loc);
	if (!c->base_real && !(c->base_real = realpath(c->base_dir, NULL)))
		return qd_err_set(err, QD_EIO, tn, "cannot resolve model directory '%s': %s",
				  c->base_dir, strerror(errno));
	char *joined = qd_asprintf("%s/%s", c->base_dir, loc);
	if (!joined)
		return qd_err_set(err, QD_ENOMEM, tn, "out of memory");
	char *real = realpath(joined, NULL);
	free(joined);
	if (!real)
		return qd_err_set(err, QD_EIO, tn, "cannot open external data '%s' of tensor '%s': %s",
				  loc, tn, strerror(errno));
	size_t bl = strlen(c->base_real);
	bool inside = !strncmp(real, c->base_real, bl) &&
		      (real[bl] == '/' || (bl == 1 && c->base_real[0] == '/'));
	if (!inside) {
		free(real);
		return qd_err_set(err, QD_EMODEL, tn,
				  "external data location '%s' of tensor '%s' escapes the model directory "
				  "(symlink)", loc, tn);
	}
	*full = real;
	return 0;
}

static void ext_clear(Onnx__TensorProto *t)
{
	for (size_t i = 0; i < t->n_external_data; i++)
		if (t->external_data[i])
			protobuf_c_message_free_unpacked(&t->external_data[i]->base, NULL);
	free(t->external_data);
	t->external_data = NULL;
	t->n_external_data = 0;
	t->has_data_location = 0;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
}

static bool is_external(const Onnx__TensorProto *t)
{
	return t && t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}

bool qd_tensor_is_external(const Onnx__TensorProto *t)
{
	return is_external(t);
}

/* Where an external tensor's bytes are: *full (new) the confined path, [*off, *off +
 * *length) checked against the file's size and against dims x dtype. */
static int ext_locate(struct ext_ctx *c, const Onnx__TensorProto *t, char **full, uint64_t *off,
		      uint64_t *length)
{
	struct qd_err *err = c->err;
	const char *tn = t->name && *t->name ? t->name : "(unnamed tensor)";
	*full = NULL;
	*off = *length = 0;
	const char *so = ext_get(t, "offset"), *sl = ext_get(t, "length");
	if (so && parse_u64(so, off))
		return qd_err_set(err, QD_EMODEL, tn, "tensor '%s' has invalid external offset '%s'", tn, so);
	if (sl && parse_u64(sl, length))
		return qd_err_set(err, QD_EMODEL, tn, "tensor '%s' has invalid external length '%s'", tn, sl);
	if (t->data_type == QD_DT_STRING)
		return qd_err_set(err, QD_EMODEL, tn, "string tensor '%s' cannot use external data", tn);
	int64_t want = qd_dtype_nbytes(t->data_type, qd_tensor_numel(t));
	if (want < 0)
		return qd_err_set(err, QD_EMODEL, tn, "tensor '%s' has invalid dims or type for external data", tn);
	int rc = ext_resolve(c, tn, ext_get(t, "location"), full);
	if (rc)
		return rc;
	struct stat st;
	if (stat(*full, &st) < 0) {
		rc = qd_err_set(err, QD_EIO, tn, "cannot open external data '%s' of tensor '%s': %s",
				*full, tn, strerror(errno));
		goto fail;
	}
	if (!sl)
		*length = *off <= (uint64_t)st.st_size ? (uint64_t)st.st_size - *off : 0;
	if (*off > (uint64_t)st.st_size || *length > (uint64_t)st.st_size - *off) {
		rc = qd_err_set(err, QD_EMODEL, tn,
				"external data of tensor '%s' (offset %llu, length %llu) is past the end "
				"of '%s' (%lld bytes)", tn, (unsigned long long)*off,
				(unsigned long long)*length, *full, (long long)st.st_size);
		goto fail;
	}
	if (*length != (uint64_t)want) {
		rc = qd_err_set(err, QD_EMODEL, tn,
				"external data of tensor '%s' has %llu bytes, dims and type need %lld",
				tn, (unsigned long long)*length, (long long)want);
		goto fail;
	}
	return 0;
fail:
	free(*full);
	*full = NULL;
	return rc;
}

/* pread exactly len bytes at off into buf. */
static int read_range(int fd, uint8_t *buf, uint64_t off, uint64_t len)
{
	for (uint64_t done = 0; done < len;) {
		size_t want = (size_t)QD_MIN(len - done, (uint64_t)1 << 30);
		ssize_t r = pread(fd, buf + done, want, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		done += (uint64_t)r;
	}
	return 0;
}

/* Reads an external tensor's bytes into a new buffer *buf (length bytes). */
static int ext_read(struct ext_ctx *c, const Onnx__TensorProto *t, uint8_t **buf, uint64_t *length)
{
	struct qd_err *err = c->err;
	const char *tn = t->name && *t->name ? t->name : "(unnamed tensor)";
	char *full = NULL;
	uint64_t off;
	*buf = NULL;
	int rc = ext_locate(c, t, &full, &off, length);
	if (rc)
		return rc;
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = qd_err_set(err, QD_EIO, tn, "cannot open external data '%s' of tensor '%s': %s",
				full, tn, strerror(errno));
		goto out;
	}
	if (!(*buf = malloc(*length ? *length : 1))) {
		rc = qd_err_set(err, QD_ENOMEM, tn, "cannot load external data of tensor '%s': out of memory", tn);
		goto out;
	}
	if (read_range(fd, *buf, off, *length) < 0) {
		rc = qd_err_set(err, QD_EIO, tn, "cannot read external data '%s' of tensor '%s': %s",
				full, tn, strerror(errno));
		free(*buf);
		*buf = NULL;
	}
out:
	if (fd >= 0)
		close(fd);
	free(full);
	return rc;
}

static int ext_load_tensor(struct ext_ctx *c, Onnx__TensorProto *t)
{
	if (!is_external(t))
		return 0;
	if (c->keep) {
		char *full = NULL;
		uint64_t off, length;
		int rc = ext_locate(c, t, &full, &off, &length);
		free(full);
		return rc;
	}
	uint8_t *buf;
	uint64_t length;
	int rc = ext_read(c, t, &buf, &length);
	if (rc)
		return rc;
	if (t->has_raw_data)
		free(t->raw_data.data);
	t->raw_data.data = buf;
	t->raw_data.len = length;
	t->has_raw_data = 1;
	ext_clear(t);
	return 0;
}

static int ext_load_attr_tensors(struct ext_ctx *c, Onnx__AttributeProto *a)
{
	int rc;
	if ((rc = ext_load_tensor(c, a->t)))
		return rc;
	for (size_t k = 0; k < a->n_tensors; k++)
		if ((rc = ext_load_tensor(c, a->tensors[k])))
			return rc;
	if (a->sparse_tensor && ((rc = ext_load_tensor(c, a->sparse_tensor->values)) ||
				 (rc = ext_load_tensor(c, a->sparse_tensor->indices))))
		return rc;
	return 0;
}

static int ext_load_graph(Onnx__GraphProto *g, int depth, void *ud)
{
	struct ext_ctx *c = ud;
	int rc;
	for (size_t i = 0; !c->skip_init && i < g->n_initializer; i++)
		if ((rc = ext_load_tensor(c, g->initializer[i])))
			return rc;
	for (size_t i = 0; i < g->n_sparse_initializer; i++) {
		Onnx__SparseTensorProto *s = g->sparse_initializer[i];
		if ((rc = ext_load_tensor(c, s->values)) || (rc = ext_load_tensor(c, s->indices)))
			return rc;
	}
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t a = 0; a < g->node[i]->n_attribute; a++) {
			if ((rc = ext_load_attr_tensors(c, g->node[i]->attribute[a])))
				return rc;
			if (qd_attr_terminate_strings(g->node[i]->attribute[a]))
				return qd_err_set(c->err, QD_ENOMEM, "model", "cannot load model: out of memory");
		}
	return 0;
}

/* ---- load ---- */
int qd_model_load_buf(const void *buf, size_t len, const char *base_dir,
		      const struct qd_load_opts *opts, struct qd_model **out, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	*out = NULL;
	if (opts && opts->max_bytes && len > opts->max_bytes)
		return qd_err_set(err, QD_ETOO_LARGE, "model",
				  "model is %zu bytes, more than the limit of %llu", len,
				  (unsigned long long)opts->max_bytes);
	if (len == 0)
		return qd_err_set(err, QD_EPARSE, "model", "cannot parse model: input is empty");
	int rc = wire_scan(buf, len, err);
	if (rc)
		return rc;
	Onnx__ModelProto *p = onnx__model_proto__unpack(NULL, len, buf);
	if (!p)
		return qd_err_set(err, QD_EPARSE, "model",
				  "cannot parse model: not a valid onnx ModelProto (corrupt protobuf)");
	struct qd_model *m = calloc(1, sizeof *m);
	if (!m) {
		onnx__model_proto__free_unpacked(p, NULL);
		return qd_err_set(err, QD_ENOMEM, "model", "cannot load model: out of memory");
	}
	m->proto = p;
	if (base_dir && !(m->base_dir = strdup(base_dir))) {
		qd_model_free(m);
		return qd_err_set(err, QD_ENOMEM, "model", "cannot load model: out of memory");
	}
	struct ext_ctx c = { base_dir, NULL, opts && opts->keep_external, false, err };
	rc = qd_graph_walk(p->graph, ext_load_graph, &c);
	free(c.base_real);
	for (size_t i = 0; !rc && i < p->n_functions; i++)
		for (size_t k = 0; !rc && k < p->functions[i]->n_node; k++)
			for (size_t a = 0; !rc && a < p->functions[i]->node[k]->n_attribute; a++)
				if (qd_attr_terminate_strings(p->functions[i]->node[k]->attribute[a]))
					rc = qd_err_set(err, QD_ENOMEM, "model", "cannot load model: out of memory");
	if (rc) {
		if (rc == -QD_EMODEL && !err->code)
			qd_err_set(err, QD_EMODEL, "graph", "subgraphs nested too deeply");
		qd_model_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int qd_model_load_file(const char *path, const struct qd_load_opts *opts,
		       struct qd_model **out, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qd_err_set(err, QD_EIO, path, "cannot open model '%s': %s", path, strerror(errno));
	struct stat st;
	int rc = 0;
	void *map = MAP_FAILED;
	char *dir = NULL;
	if (fstat(fd, &st) < 0) {
		rc = qd_err_set(err, QD_EIO, path, "cannot stat model '%s': %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = qd_err_set(err, QD_EINVAL, path, "cannot load model '%s': not a regular file", path);
		goto out;
	}
	if (st.st_size == 0) {
		rc = qd_err_set(err, QD_EPARSE, path, "cannot parse model '%s': file is empty", path);
		goto out;
	}
	if (opts && opts->max_bytes && (uint64_t)st.st_size > opts->max_bytes) {
		rc = qd_err_set(err, QD_ETOO_LARGE, path, "model '%s' is %lld bytes, more than the limit of %llu",
				path, (long long)st.st_size, (unsigned long long)opts->max_bytes);
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = qd_err_set(err, QD_EIO, path, "cannot map model '%s': %s", path, strerror(errno));
		goto out;
	}
	madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
	if (!(dir = qd_path_dirname(path))) {
		rc = qd_err_set(err, QD_ENOMEM, path, "out of memory");
		goto out;
	}
	rc = qd_model_load_buf(map, (size_t)st.st_size, dir, opts, out, err);
	if (rc) {
		qd_err_wrap(err, "model '%s'", path);
		goto out;
	}
	if (!((*out)->path = strdup(path))) {
		qd_model_free(*out);
		*out = NULL;
		rc = qd_err_set(err, QD_ENOMEM, path, "out of memory");
	}
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	free(dir);
	close(fd);
	return rc;
}

int qd_model_load_external(struct qd_model *m, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	if (!m || !m->proto)
		return 0;
	struct ext_ctx c = { m->base_dir, NULL, false, false, err };
	int rc = qd_graph_walk(m->proto->graph, ext_load_graph, &c);
	free(c.base_real);
	return rc;
}

static int count_external(Onnx__GraphProto *g, int depth, void *ud)
{
	uint64_t *bytes = ud;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (is_external(g->initializer[i])) {
			int64_t nb = qd_dtype_nbytes(g->initializer[i]->data_type, qd_tensor_numel(g->initializer[i]));
			*bytes += nb > 0 ? (uint64_t)nb : 0;
		}
	return 0;
}

uint64_t qd_model_external_tensor_bytes(const struct qd_model *m)
{
	uint64_t bytes = 0;
	if (m && m->proto)
		qd_graph_walk(m->proto->graph, count_external, &bytes);
	return bytes;
}

int qd_model_tensor_to_float(const struct qd_model *m, const Onnx__TensorProto *t, float **out, int64_t *n,
			     struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	if (!is_external(t))
		return qd_tensor_to_float(t, out, n, err);
	*out = NULL;
	if (n)
		*n = 0;
	struct ext_ctx c = { m ? m->base_dir : NULL, NULL, false, false, err };
	uint8_t *buf = NULL;
	uint64_t length = 0;
	int rc = ext_read(&c, t, &buf, &length);
	free(c.base_real);
	if (rc)
		return rc;
	if (t->data_type == QD_DT_FLOAT) {   /* the file's bytes are the values: no copy */
		*out = (float *)buf;
		if (n)
			*n = (int64_t)(length / sizeof(float));
		return 0;
	}
	/* other types: convert from a borrowed view with the bytes inline */
	Onnx__TensorProto v = *t;
	v.has_data_location = 0;
	v.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	v.n_external_data = 0;
	v.external_data = NULL;
	v.has_raw_data = 1;
	v.raw_data = (ProtobufCBinaryData){ (size_t)length, buf };
	rc = qd_tensor_to_float(&v, out, n, err);
	free(buf);
	return rc;
}

int qd_model_tensor_rows(const struct qd_model *m, const Onnx__TensorProto *t, int64_t r0, int64_t r1, float *out,
			 struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	const char *tn = t->name && *t->name ? t->name : "(unnamed tensor)";
	if (t->data_type != QD_DT_FLOAT || t->n_dims != 2 || t->dims[0] < 0 || t->dims[1] < 0 || r0 < 0 ||
	    r1 < r0 || r1 > t->dims[0])
		return qd_err_set(err, QD_EINVAL, tn, "cannot read rows %lld..%lld of tensor '%s': not a 2-D float "
				  "tensor with those rows", (long long)r0, (long long)r1, tn);
	uint64_t row = (uint64_t)t->dims[1] * sizeof(float), len = (uint64_t)(r1 - r0) * row;
	if (!is_external(t)) {
		int rc = qd_tensor_check_data(t, err);
		if (rc)
			return rc;
		const uint8_t *src = t->has_raw_data ? t->raw_data.data : (const uint8_t *)t->float_data;
		memcpy(out, src + (uint64_t)r0 * row, (size_t)len);
		return 0;
	}
	struct ext_ctx c = { m ? m->base_dir : NULL, NULL, false, false, err };
	char *full = NULL;
	uint64_t off, length;
	int rc = ext_locate(&c, t, &full, &off, &length);
	free(c.base_real);
	if (rc)
		return rc;
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read_range(fd, (uint8_t *)out, off + (uint64_t)r0 * row, len) < 0)
		rc = qd_err_set(err, QD_EIO, tn, "cannot read external data '%s' of tensor '%s': %s", full, tn,
				strerror(errno));
	if (fd >= 0)
		close(fd);
	free(full);
	return rc;
}

void qd_model_free(struct qd_model *m)
{
	if (!m)
		return;
	if (m->proto)
		onnx__model_proto__free_unpacked(m->proto, NULL);
	free(m->path);
	free(m->base_dir);
	free(m);
}

int qd_model_serialize(const struct qd_model *m, struct qd_buf *out, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	if (!m || !m->proto)
		return qd_err_set(err, QD_EINVAL, "model", "cannot serialize: no model");
	size_t sz = onnx__model_proto__get_packed_size(m->proto);
	out->len = 0;
	if (qd_buf_reserve(out, sz + 1))
		return qd_err_set(err, QD_ENOMEM, "model", "cannot serialize model: out of memory (%zu bytes)", sz);
	out->len = onnx__model_proto__pack(m->proto, out->data);
	return 0;
}

/* ---- streaming atomic file writer ---- */
struct afile {
	ProtobufCBuffer base;
	int fd;
	char *path, *tmp;
	uint8_t *buf;
	size_t len, cap;
	uint64_t total;
	int werr; /* errno of the first failed write */
};

static int af_flush(struct afile *f)
{
	size_t done = 0;
	while (done < f->len && !f->werr) {
		ssize_t r = write(f->fd, f->buf + done, f->len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			f->werr = errno;
		} else {
			done += (size_t)r;
		}
	}
	f->len = 0;
	return f->werr ? -1 : 0;
}

static void af_write(struct afile *f, const void *p, size_t n)
{
	f->total += n;
	if (f->werr)
		return;
	if (n >= f->cap) {
		af_flush(f);
		f->len = n;
		uint8_t *save = f->buf;
		f->buf = (uint8_t *)p;
		af_flush(f);
		f->buf = save;
		return;
	}
	if (f->len + n > f->cap)
		af_flush(f);
	memcpy(f->buf + f->len, p, n);
	f->len += n;
}

static void af_append(ProtobufCBuffer *b, size_t n, const uint8_t *p)
{
	af_write((struct afile *)b, p, n);
}

static int af_open(struct afile *f, const char *path, struct qd_err *err)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->base.append = af_append;
	f->cap = 1 << 20;
	f->path = strdup(path);
	f->tmp = qd_asprintf("%s.tmp.XXXXXX", path);
	f->buf = malloc(f->cap);
	if (!f->path || !f->tmp || !f->buf)
		return qd_err_set(err, QD_ENOMEM, path, "cannot write '%s': out of memory", path);
	f->fd = mkostemp(f->tmp, O_CLOEXEC); /* unique: concurrent saves never share a tmp */
	if (f->fd < 0)
		return qd_err_set(err, QD_EIO, path, "cannot create '%s': %s", f->tmp, strerror(errno));
	fchmod(f->fd, 0644); /* mkostemp creates 0600; models are not secrets of this process */
	return 0;
}

/* Flushes, fsyncs and renames into place (commit) or removes the temporary (abort). */
static int af_close(struct afile *f, bool commit, struct qd_err *err)
{
	int rc = 0;
	if (f->fd >= 0) {
		if (commit && (af_flush(f) || fsync(f->fd) < 0))
			rc = qd_err_set(err, QD_EIO, f->path, "cannot write '%s': %s", f->path,
					strerror(f->werr ? f->werr : errno));
		close(f->fd);
		if (commit && !rc && rename(f->tmp, f->path) < 0)
			rc = qd_err_set(err, QD_EIO, f->path, "cannot rename '%s': %s", f->tmp, strerror(errno));
		if (!commit || rc)
			unlink(f->tmp);
		if (commit && !rc) {
			char *dir = qd_path_dirname(f->path);
			int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
			free(dir);
		}
	}
	free(f->path);
	free(f->tmp);
	free(f->buf);
	f->fd = -1;
	f->path = f->tmp = NULL;
	f->buf = NULL;
	return rc;
}

/* ---- external data: save ---- */
struct ext_swap {
	Onnx__TensorProto *t;
	Onnx__TensorProto saved;
	uint8_t *owned_raw;
	bool pass;          /* external in the source: its file range is copied */
};
struct ext_save {
	size_t threshold;
	struct ext_ctx *src;      /* resolves the references of tensors passed through */
	bool dst_exists;
	struct stat dst;          /* the data file being replaced, when it exists */
	struct ext_swap *v;
	size_t n, cap;
};

/* Raw little-endian bytes of a fixed-size tensor; *owned set when converted from a typed field. */
static int tensor_raw_bytes(const Onnx__TensorProto *t, const uint8_t **p, size_t *len, uint8_t **owned)
{
	*owned = NULL;
	if (t->has_raw_data) {
		*p = t->raw_data.data;
		*len = t->raw_data.len;
		return 0;
	}
	int64_t numel = qd_tensor_numel(t);
	int64_t nb = qd_dtype_nbytes(t->data_type, numel);
	if (nb < 0 || t->data_type == QD_DT_UINT4 || t->data_type == QD_DT_INT4)
		return -1;
	uint8_t *b = malloc(nb ? (size_t)nb : 1);
	if (!b)
		return -1;
	size_t n = (size_t)numel;
	switch (t->data_type) {
	case QD_DT_FLOAT: case QD_DT_COMPLEX64: memcpy(b, t->float_data, (size_t)nb); break;
	case QD_DT_DOUBLE: case QD_DT_COMPLEX128: memcpy(b, t->double_data, (size_t)nb); break;
	case QD_DT_INT64: memcpy(b, t->int64_data, (size_t)nb); break;
	case QD_DT_UINT64: memcpy(b, t->uint64_data, (size_t)nb); break;
	case QD_DT_INT32: memcpy(b, t->int32_data, (size_t)nb); break;
	case QD_DT_UINT32:
		for (size_t i = 0; i < n; i++) { uint32_t x = (uint32_t)t->uint64_data[i]; memcpy(b + 4 * i, &x, 4); }
		break;
	case QD_DT_UINT16: case QD_DT_INT16: case QD_DT_FLOAT16: case QD_DT_BFLOAT16:
		for (size_t i = 0; i < n; i++) { uint16_t x = (uint16_t)t->int32_data[i]; memcpy(b + 2 * i, &x, 2); }
		break;
	default: /* one byte per element: int8/uint8/bool/float8 */
		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)t->int32_data[i];
		break;
	}
	*p = b;
	*len = (size_t)nb;
	*owned = b;
	return 0;
}

/* true when an external tensor points into the data file this save replaces (its old
 * bytes would be gone once the new file is renamed over it). */
static bool ext_same_file(struct ext_save *s, const Onnx__TensorProto *t)
{
	if (!s->dst_exists)
		return false;
	char *full = NULL;
	uint64_t off, len;
	if (ext_locate(s->src, t, &full, &off, &len))
		return false;   /* reported when it is copied */
	struct stat st;
	bool same = stat(full, &st) == 0 && st.st_dev == s->dst.st_dev && st.st_ino == s->dst.st_ino;
	free(full);
	return same;
}

static int ext_collect(Onnx__GraphProto *g, int depth, void *ud)
{
	struct ext_save *s = ud;
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *t = g->initializer[i];
		int64_t nb = qd_dtype_nbytes(t->data_type, qd_tensor_numel(t));
		/* small int64 tensors are shape data (Reshape's shape, Slice's starts, axes,
		 * pads): ONNX Runtime's shape inference reads them at load and refuses them
		 * external ("Cannot parse data from external tensors"), so below the default
		 * threshold they stay inline whatever size_threshold says */
		bool inline_ = !t->has_data_type || t->data_type == QD_DT_STRING || nb < 0 ||
			       (uint64_t)nb < s->threshold ||
			       (t->data_type == QD_DT_INT64 && (uint64_t)nb < QD_EXT_DEFAULT_THRESHOLD);
		bool pass = false;
		if (is_external(t)) {
			/* left external at load: copied range by range into the new file, unless
			 * it goes inline or its source is the file being replaced (read in) */
			if (inline_ || ext_same_file(s, t)) {
				int rc = ext_load_tensor(s->src, t);
				if (rc)
					return rc;
			} else {
				pass = true;
			}
		}
		if (inline_)
			continue;
		if (!pass && qd_tensor_check_data(t, NULL))
			continue; /* inconsistent tensors stay inline; qd_model_check reports them */
		if (s->n == s->cap) {
			size_t nc = s->cap ? 2 * s->cap : 64;
			struct ext_swap *nv = realloc(s->v, nc * sizeof *nv);
			if (!nv)
				return qd_err_set(s->src->err, QD_ENOMEM, "model", "cannot save model: out of memory");
			s->v = nv;
			s->cap = nc;
		}
		s->v[s->n++] = (struct ext_swap){ .t = t, .pass = pass };
	}
	return 0;
}

/* Copies an external tensor's bytes from its source file into the data file in 1 MiB
 * chunks (never the whole tensor in memory); *fd / *fd_path cache the open source. */
static int ext_copy(struct ext_save *s, struct afile *df, const Onnx__TensorProto *t, int *fd, char **fd_path,
		    uint8_t *chunk, size_t chunk_len, size_t *len)
{
	struct qd_err *err = s->src->err;
	const char *tn = t->name && *t->name ? t->name : "(unnamed tensor)";
	char *full = NULL;
	uint64_t off, length;
	int rc = ext_locate(s->src, t, &full, &off, &length);
	if (rc)
		return rc;
	if (!*fd_path || strcmp(*fd_path, full)) {
		if (*fd >= 0)
			close(*fd);
		free(*fd_path);
		*fd_path = full;
		full = NULL;
		if ((*fd = open(*fd_path, O_RDONLY | O_CLOEXEC)) < 0)
			return qd_err_set(err, QD_EIO, tn, "cannot open external data '%s' of tensor '%s': %s",
					  *fd_path, tn, strerror(errno));
		posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	free(full);
	for (uint64_t done = 0; done < length;) {
		size_t n = (size_t)QD_MIN(length - done, (uint64_t)chunk_len);
		if (read_range(*fd, chunk, off + done, n) < 0)
			return qd_err_set(err, QD_EIO, tn, "cannot read external data '%s' of tensor '%s': %s",
					  *fd_path, tn, strerror(errno));
		af_write(df, chunk, n);
		done += n;
	}
	*len = (size_t)length;
	return 0;
}

static Onnx__StringStringEntryProto *kv_new(const char *k, const char *v)
{
	Onnx__StringStringEntryProto *e = malloc(sizeof *e);
	if (!e)
		return NULL;
	onnx__string_string_entry_proto__init(e);
	e->key = strdup(k);
	e->value = strdup(v);
	if (!e->key || !e->value) {
		protobuf_c_message_free_unpacked(&e->base, NULL);
		return NULL;
	}
	return e;
}

static void ext_restore(struct ext_save *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct ext_swap *w = &s->v[i];
		if (!w->saved.base.descriptor)
			continue; /* never swapped */
		ext_clear(w->t);
		*w->t = w->saved;
		free(w->owned_raw);
	}
	free(s->v);
	memset(s, 0, sizeof *s);
}

static uint64_t auto_external_bytes(const struct qd_save_opts *opts)
{
	if (opts && opts->auto_external_bytes)
		return opts->auto_external_bytes;
	const char *e = getenv("QD_ONNX_EXTERNAL_AUTO_BYTES");
	uint64_t v;
	if (e && !parse_u64(e, &v) && v > 0)
		return v;
	return PROTOBUF_LIMIT;
}

int qd_model_save_file(struct qd_model *m, const char *path, const struct qd_save_opts *opts,
		       struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	if (!m || !m->proto)
		return qd_err_set(err, QD_EINVAL, "model", "cannot save: no model");
	/* tensors left external by keep_external are passed through when the output has
	 * external data (their file ranges copied in chunks, never read whole) and read in
	 * when it has not */
	struct ext_ctx src = { m->base_dir, NULL, false, false, err };
	bool external = opts && opts->external_data;
	uint64_t ext_bytes = qd_model_external_tensor_bytes(m);
	uint64_t size = onnx__model_proto__get_packed_size(m->proto);
	if (!external && size + ext_bytes > auto_external_bytes(opts)) {
		qd_log(QD_LOG_INFO, NULL, "model '%s' is %llu bytes serialized: saving weights as external data",
		       path, (unsigned long long)(size + ext_bytes));
		external = true;
	}
	/* external tensors outside the initializers (attributes, sparse) are always read in */
	src.skip_init = external;
	int rc0 = qd_graph_walk(m->proto->graph, ext_load_graph, &src);
	src.skip_init = false;
	if (rc0) {
		free(src.base_real);
		return qd_err_wrap(err, "cannot save model '%s'", path);
	}
	if (!external && ext_bytes)
		size = onnx__model_proto__get_packed_size(m->proto);
	struct ext_save es = { .threshold = opts && opts->size_threshold ? opts->size_threshold : QD_EXT_DEFAULT_THRESHOLD,
			       .src = &src };
	int src_fd = -1;
	char *src_path = NULL;
	uint8_t *chunk = NULL;
	const size_t chunk_len = (size_t)1 << 20;
	struct afile mf, df;
	memset(&df, 0, sizeof df);
	df.fd = -1;
	char *ext_name = NULL;
	int rc = af_open(&mf, path, err);
	if (rc)
		goto out;
	if (external) {
		if (opts && opts->external_name) {
			ext_name = strdup(opts->external_name);
		} else {
			const char *base = strrchr(path, '/');
			ext_name = qd_asprintf("%s.data", base ? base + 1 : path);
		}
		if (!ext_name) {
			rc = qd_err_set(err, QD_ENOMEM, path, "out of memory");
			goto out;
		}
		if (!*ext_name || strchr(ext_name, '/') || !strcmp(ext_name, "..") || !strcmp(ext_name, ".")) {
			rc = qd_err_set(err, QD_EINVAL, "external_name",
					"external data name '%s' must be a plain file name next to the model",
					ext_name);
			goto out;
		}
		char *dir = qd_path_dirname(path);
		char *dpath = dir ? qd_asprintf("%s/%s", dir, ext_name) : NULL;
		free(dir);
		if (!dpath) {
			rc = qd_err_set(err, QD_ENOMEM, path, "out of memory");
			goto out;
		}
		es.dst_exists = stat(dpath, &es.dst) == 0;
		rc = af_open(&df, dpath, err);
		free(dpath);
		if (rc)
			goto out;
		if ((rc = qd_graph_walk(m->proto->graph, ext_collect, &es))) {
			qd_err_wrap(err, "cannot save model '%s'", path);
			goto out;
		}
		static const uint8_t zeros[64];
		for (size_t i = 0; i < es.n; i++) {
			struct ext_swap *w = &es.v[i];
			Onnx__TensorProto *t = w->t;
			const uint8_t *p = NULL;
			size_t len = 0;
			if (!w->pass && tensor_raw_bytes(t, &p, &len, &w->owned_raw)) {
				rc = qd_err_set(err, QD_ENOMEM, t->name, "cannot externalize tensor '%s'", t->name);
				goto out;
			}
			if (w->pass && !chunk && !(chunk = malloc(chunk_len))) {
				rc = qd_err_set(err, QD_ENOMEM, path, "cannot save model '%s': out of memory", path);
				goto out;
			}
			uint64_t off = df.total;
			if (off % 64)
				af_write(&df, zeros, 64 - off % 64);
			off = df.total;
			if (!w->pass)
				af_write(&df, p, len);
			else if ((rc = ext_copy(&es, &df, t, &src_fd, &src_path, chunk, chunk_len, &len)))
				goto out;
			char so[32], sl[32];
			snprintf(so, sizeof so, "%llu", (unsigned long long)off);
			snprintf(sl, sizeof sl, "%zu", len);
			Onnx__StringStringEntryProto **kv = calloc(3, sizeof *kv);
			if (kv) {
				kv[0] = kv_new("location", ext_name);
				kv[1] = kv_new("offset", so);
				kv[2] = kv_new("length", sl);
			}
			w->saved = *t;
			/* strip the inline data; ext_restore puts the saved struct back */
			t->n_float_data = t->n_int32_data = t->n_int64_data = 0;
			t->n_double_data = t->n_uint64_data = 0;
			t->has_raw_data = 0;
			t->raw_data = (ProtobufCBinaryData){ 0, NULL };
			t->external_data = kv;
			t->n_external_data = kv ? 3 : 0;
			t->has_data_location = 1;
			t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
			if (!kv || !kv[0] || !kv[1] || !kv[2]) {
				rc = qd_err_set(err, QD_ENOMEM, path, "cannot save model '%s': out of memory", path);
				goto out;
			}
		}
		size = onnx__model_proto__get_packed_size(m->proto);
	}
	if (size >= PROTOBUF_LIMIT) {
		rc = qd_err_set(err, QD_ETOO_LARGE, path,
				"cannot save model '%s': %llu bytes of graph structure exceed protobuf's "
				"2 GiB limit even with external data", path, (unsigned long long)size);
		goto out;
	}
	onnx__model_proto__pack_to_buffer(m->proto, &mf.base);
	if (mf.werr || df.werr) {
		rc = qd_err_set(err, QD_EIO, path, "cannot write model '%s': %s", path,
				strerror(mf.werr ? mf.werr : df.werr));
		goto out;
	}
	if (external && (rc = af_close(&df, true, err)))
		goto out;
	rc = af_close(&mf, true, err);
out:
	ext_restore(&es);
	if (df.path)
		af_close(&df, false, err);
	if (mf.path)
		af_close(&mf, false, err);
	if (src_fd >= 0)
		close(src_fd);
	free(src_path);
	free(chunk);
	free(src.base_real);
	free(ext_name);
	return rc;
}
