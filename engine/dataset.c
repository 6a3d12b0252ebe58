/* engine/dataset.c — calibration / evaluation datasets: .npz archives (engine/npz.c with
 * limits), tars (ustar / GNU / pax) or directories of ONNX test_data_set_* folders, the
 * binding of a dataset to a model's graph inputs, row slices and the API summary.
 *
 * Test-data rule (documented in the README): every test_data_set_<K> folder is one group
 * of samples; the tensors of input_<N>.pb (and output_<N>.pb, kept as extra arrays) of all
 * folders are concatenated along axis 0 in the order of K. A tensor's axis 0 is its batch
 * axis (ONNX test data carry the model's full input shape, batch included), so a folder
 * holding a [4, 3, 224, 224] tensor contributes 4 samples; the other dims must agree
 * across folders. Scalars (rank 0) are stacked into a [folders] array. Only files inside
 * a test_data_set_* folder are read (a model.onnx next to them is skipped); any other
 * file inside such a folder is an error. */
#define _GNU_SOURCE
#include "engine/dataset.h"
#include "onnx/wire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SET_PREFIX "test_data_set_"

static void limits_fill(struct qd_dataset_limits *l, const struct qd_dataset_limits *in)
{
	*l = in ? *in : (struct qd_dataset_limits){ 0 };
	if (!l->max_total_bytes)
		l->max_total_bytes = QD_DATASET_MAX_TOTAL;
	if (!l->max_array_bytes)
		l->max_array_bytes = QD_DATASET_MAX_ARRAY;
	if (!l->max_arrays)
		l->max_arrays = QD_DATASET_MAX_ARRAYS;
}

static void set_array_field(struct qd_err *err, const char *name)
{
	if (err)
	{
		char nm[100];
		snprintf(nm, sizeof nm, "%s", name);
		snprintf(err->field, sizeof err->field, "dataset.arrays.%s", nm);
	}
}

void qd_dataset_free(struct qd_dataset *ds)
{
	if (!ds)
		return;
	qd_tensors_release(ds->arrays, ds->n_arrays);
	free(ds);
}

const struct qd_tensor *qd_dataset_array(const struct qd_dataset *ds, const char *name)
{
	for (size_t i = 0; ds && name && i < ds->n_arrays; i++)
		if (ds->arrays[i].name && !strcmp(ds->arrays[i].name, name))
			return &ds->arrays[i];
	return NULL;
}

/* Every array has a sample axis with at least one sample; n_samples = the common first
 * dimension (-1 when arrays disagree: qd_dataset_bind decides from the model inputs). */
static int finish(struct qd_dataset *ds, struct qd_err *err)
{
	if (!ds->n_arrays)
		return qd_err_set(err, QD_EINVAL, "dataset", "the dataset is empty: it has no arrays");
	ds->n_samples = ds->arrays[0].ndim ? ds->arrays[0].dims[0] : 0;
	for (size_t i = 0; i < ds->n_arrays; i++) {
		const struct qd_tensor *a = &ds->arrays[i];
		const char *nm = a->name ? a->name : "";
		if (!a->ndim) {
			qd_err_set(err, QD_EINVAL, "", "dataset array '%s' is a scalar: its first axis must "
				   "be the sample axis", nm);
			set_array_field(err, nm);
			return -QD_EINVAL;
		}
		if (!a->dims[0]) {
			qd_err_set(err, QD_EINVAL, "", "dataset array '%s' has 0 samples (shape [0, ...])", nm);
			set_array_field(err, nm);
			return -QD_EINVAL;
		}
		if (a->dims[0] != ds->n_samples)
			ds->n_samples = -1;
	}
	return 0;
}

/* ---- npz ---- */

static int load_npz(const char *path, const struct qd_dataset_limits *lim, struct qd_dataset *ds,
		    struct qd_err *err)
{
	int rc = qd_npz_read_lim(path, lim, &ds->arrays, &ds->n_arrays, err);
	if (rc) {
		if (err && err->field[0] && strcmp(err->field, path))
			set_array_field(err, err->field);
		return rc;
	}
	ds->format = "npz";
	return 0;
}

/* ---- ONNX test data (tar or directory) ---- */

struct pb_file {
	char *set;            /* folder path, e.g. "mnist/test_data_set_3" */
	long set_no;          /* 3 */
	int kind;             /* 0 input, 1 output */
	long idx;             /* N of input_N.pb */
	struct qd_tensor t;
};

struct td_ctx {
	const struct qd_dataset_limits *lim;
	struct pb_file *f;
	size_t n, cap;
	uint64_t total;
	char *prefix;         /* folder path before "test_data_set_" of the first set */
};

static void td_free(struct td_ctx *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->f[i].set);
		qd_tensor_release(&c->f[i].t);
	}
	free(c->f);
	free(c->prefix);
}

/* data_type and dims of a serialized TensorProto, from its wire bytes (nothing allocated). */
static int pb_peek(const uint8_t *p, size_t len, int *dtype, uint64_t *numel)
{
	size_t pos = 0;
	uint64_t n = 1;
	bool ovf = false;
	*dtype = 0;
	while (pos < len) {
		uint64_t key, v;
		if (qd_pb_read_varint(p, len, &pos, &key))
			return -1;
		uint32_t num = (uint32_t)(key >> 3);
		switch (key & 7) {
		case 0:
			if (qd_pb_read_varint(p, len, &pos, &v))
				return -1;
			if (num == 1 && __builtin_mul_overflow(n, v, &n))
				ovf = true;
			if (num == 2)
				*dtype = (int)v;
			break;
		case 1:
			if (len - pos < 8)
				return -1;
			pos += 8;
			break;
		case 5:
			if (len - pos < 4)
				return -1;
			pos += 4;
			break;
		case 2:
			if (qd_pb_read_varint(p, len, &pos, &v) || v > len - pos)
				return -1;
			if (num == 1) { /* packed dims */
				size_t q = pos, e = pos + (size_t)v;
				while (q < e) {
					uint64_t d;
					if (qd_pb_read_varint(p, e, &q, &d))
						return -1;
					if (__builtin_mul_overflow(n, d, &n))
						ovf = true;
				}
			}
			pos += (size_t)v;
			break;
		default:
			return -1;
		}
	}
	*numel = ovf ? UINT64_MAX : n;
	return 0;
}

/* "input_12.pb" → kind 0, idx 12. false for any other name. */
static bool pb_name(const char *fname, int *kind, long *idx)
{
	const char *s;
	if (!strncmp(fname, "input_", 6)) {
		*kind = 0;
		s = fname + 6;
	} else if (!strncmp(fname, "output_", 7)) {
		*kind = 1;
		s = fname + 7;
	} else
		return false;
	char *e;
	if (*s < '0' || *s > '9')
		return false;
	*idx = strtol(s, &e, 10);
	return *idx >= 0 && *idx < 100000 && !strcmp(e, ".pb");
}

/* One file at path (inside the tar or the directory). Files outside a test_data_set_*
 * folder are skipped. */
static int td_add(struct td_ctx *c, const char *path, const uint8_t *data, uint64_t len,
		  struct qd_err *err)
{
	while (!strncmp(path, "./", 2))
		path += 2;
	const char *slash = strrchr(path, '/');
	if (!slash)
		return 0;
	const char *fname = slash + 1, *dir = path;
	size_t dl = (size_t)(slash - path);
	const char *ds = memrchr(path, '/', dl);
	const char *dname = ds ? ds + 1 : path;
	size_t dnl = (size_t)(slash - dname);
	if (dnl <= strlen(SET_PREFIX) || strncmp(dname, SET_PREFIX, strlen(SET_PREFIX)))
		return 0;
	if (!strncmp(fname, "._", 2) || !*fname)
		return 0; /* macOS AppleDouble files, directory entries */
	int kind;
	long idx;
	if (!pb_name(fname, &kind, &idx))
		return qd_err_set(err, QD_EINVAL, "dataset", "unexpected file '%.200s' in a test data folder "
				  "(want input_<N>.pb and output_<N>.pb TensorProto files)", path);
	char *e;
	long set_no = strtol(dname + strlen(SET_PREFIX), &e, 10);
	if (e != slash || set_no < 0)
		set_no = -1;
	char *prefix = strndup(dir, (size_t)(dname - dir));
	if (!prefix)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if (!c->prefix)
		c->prefix = prefix;
	else {
		bool same = !strcmp(prefix, c->prefix);
		if (!same) {
			qd_err_set(err, QD_EINVAL, "dataset", "test data folders under two different "
				   "paths ('%.100s' and '%.100s'): upload one model's test data", c->prefix,
				   prefix);
			free(prefix);
			return -QD_EINVAL;
		}
		free(prefix);
	}
	if (c->n >= (size_t)c->lim->max_arrays * 64 + 1024)
		return qd_err_set(err, QD_ETOO_LARGE, "dataset", "too many TensorProto files (max %zu)",
				  (size_t)c->lim->max_arrays * 64 + 1024);
	char label[300];
	snprintf(label, sizeof label, "%.*s/%s", (int)dnl, dname, fname);
	int dtype;
	uint64_t numel, bytes;
	if (len > c->lim->max_array_bytes + ((uint64_t)1 << 20))
		return qd_err_set(err, QD_ETOO_LARGE, "dataset", "'%s' has %llu bytes, more than the %llu-byte "
				  "limit per array", label, (unsigned long long)len,
				  (unsigned long long)c->lim->max_array_bytes);
	if (pb_peek(data, (size_t)len, &dtype, &numel))
		return qd_err_set(err, QD_EPARSE, "dataset", "'%s' is not a TensorProto (bad protobuf)", label);
	size_t es = qd_dtype_size(dtype);
	if (!es)
		return qd_err_set(err, QD_EUNSUPPORTED, "dataset", "'%s' has unsupported dtype %s (%d)", label,
				  qd_dtype_name(dtype), dtype);
	if (numel == UINT64_MAX || __builtin_mul_overflow(numel, (uint64_t)es, &bytes) ||
	    bytes > c->lim->max_array_bytes)
		return qd_err_set(err, QD_ETOO_LARGE, "dataset", "'%s' has an absurd shape: more than the "
				  "%llu-byte limit per array", label,
				  (unsigned long long)c->lim->max_array_bytes);
	if (c->total + bytes > c->lim->max_total_bytes)
		return qd_err_set(err, QD_ETOO_LARGE, "dataset", "'%s' takes the dataset past the %llu-byte limit",
				  label, (unsigned long long)c->lim->max_total_bytes);
	Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, (size_t)len, data);
	if (!tp)
		return qd_err_set(err, QD_EPARSE, "dataset", "'%s' is not a TensorProto (cannot parse)", label);
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 16;
		struct pb_file *nf = realloc(c->f, nc * sizeof *nf);
		if (!nf) {
			onnx__tensor_proto__free_unpacked(tp, NULL);
			return qd_err_set(err, QD_ENOMEM, "", "out of memory");
		}
		c->f = nf;
		c->cap = nc;
	}
	struct pb_file *f = &c->f[c->n];
	memset(f, 0, sizeof *f);
	struct qd_err e2 = { 0 };
	int rc = qd_tensor_from_proto(tp, &f->t, &e2);
	onnx__tensor_proto__free_unpacked(tp, NULL);
	if (rc)
		return qd_err_set(err, -rc, "dataset", "'%s': %s", label, e2.msg);
	if (!(f->set = strndup(dir, dl))) {
		qd_tensor_release(&f->t);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	f->set_no = set_no;
	f->kind = kind;
	f->idx = idx;
	c->total += f->t.nbytes;
	c->n++;
	return 0;
}

static int file_cmp(const void *a, const void *b)
{
	const struct pb_file *x = a, *y = b;
	if (x->set_no != y->set_no)
		return x->set_no < y->set_no ? -1 : 1;
	int s = strcmp(x->set, y->set);
	if (s)
		return s;
	if (x->kind != y->kind)
		return x->kind - y->kind;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Group the files by (kind, idx), check every folder has the same files with compatible
 * tensors, concatenate along axis 0. */
static int td_build(struct td_ctx *c, struct qd_dataset *ds, struct qd_err *err)
{
	if (!c->n)
		return qd_err_set(err, QD_EINVAL, "dataset", "no test_data_set_*/input_<N>.pb files found "
				  "(want an .npz, or a tar or directory of ONNX test_data_set_* folders)");
	qsort(c->f, c->n, sizeof *c->f, file_cmp);
	/* the first folder defines the arrays */
	size_t first_n = 0, n_sets = 0;
	while (first_n < c->n && !strcmp(c->f[first_n].set, c->f[0].set))
		first_n++;
	for (size_t i = 0; i < c->n; i++)
		if (!i || strcmp(c->f[i].set, c->f[i - 1].set))
			n_sets++;
	if (c->n != first_n * n_sets)
		goto uneven;
	if (first_n > c->lim->max_arrays)
		return qd_err_set(err, QD_ETOO_LARGE, "dataset", "%zu arrays (max %zu)", first_n, c->lim->max_arrays);
	for (size_t i = 1; i < first_n; i++)
		if (c->f[i].set_no == c->f[i - 1].set_no && c->f[i].kind == c->f[i - 1].kind &&
		    c->f[i].idx == c->f[i - 1].idx)
			return qd_err_set(err, QD_EINVAL, "dataset", "'%s' has input/output %ld twice", c->f[i].set,
					  c->f[i].idx);
	ds->arrays = qd_calloc(first_n, sizeof *ds->arrays);
	if (!ds->arrays)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	for (size_t a = 0; a < first_n; a++) {
		const struct pb_file *f0 = &c->f[a];
		const char *nm = NULL;
		int64_t rows = 0;
		for (size_t s = 0; s < n_sets; s++) {
			const struct pb_file *f = &c->f[s * first_n + a];
			if (f->kind != f0->kind || f->idx != f0->idx)
				goto uneven;
			const char *fn = f->t.name && *f->t.name ? f->t.name : NULL;
			if (fn && nm && strcmp(fn, nm))
				return qd_err_set(err, QD_EINVAL, "dataset", "'%s/%s_%ld.pb' names its tensor '%s', "
						  "other folders '%s'", f->set, f->kind ? "output" : "input", f->idx,
						  fn, nm);
			if (fn && !nm)
				nm = fn;
			bool scalar0 = f0->t.ndim == 0;
			if (f->t.dtype != f0->t.dtype || f->t.ndim != f0->t.ndim ||
			    (f->t.ndim > 1 && memcmp(f->t.dims + 1, f0->t.dims + 1,
						     (size_t)(f->t.ndim - 1) * sizeof(int64_t))))
				return qd_err_set(err, QD_ESHAPE, "dataset", "'%s/%s_%ld.pb' is a %s tensor of rank %d "
						  "that does not match '%s/%s_%ld.pb' (%s, rank %d; only dim 0 may differ)",
						  f->set, f->kind ? "output" : "input", f->idx,
						  qd_dtype_name(f->t.dtype), f->t.ndim, f0->set,
						  f0->kind ? "output" : "input", f0->idx,
						  qd_dtype_name(f0->t.dtype), f0->t.ndim);
			rows += scalar0 ? 1 : f->t.dims[0];
		}
		char gen[32];
		if (!nm) {
			snprintf(gen, sizeof gen, "%s_%ld", f0->kind ? "output" : "input", f0->idx);
			nm = gen;
		}
		if (qd_dataset_array(ds, nm))
			return qd_err_set(err, QD_EINVAL, "dataset", "two test data files name their tensor '%s'", nm);
		int64_t dims[QD_MAX_DIMS];
		int nd = f0->t.ndim ? f0->t.ndim : 1;
		memcpy(dims, f0->t.dims, sizeof dims);
		dims[0] = rows;
		struct qd_tensor *out = &ds->arrays[ds->n_arrays];
		int rc = qd_tensor_alloc(out, nm, f0->t.dtype, nd, dims);
		if (rc) {
			qd_err_set(err, -rc, "", "cannot allocate dataset array '%s'", nm);
			set_array_field(err, nm);
			return rc;
		}
		ds->n_arrays++;
		size_t off = 0;
		for (size_t s = 0; s < n_sets; s++) {
			struct pb_file *f = &c->f[s * first_n + a];
			memcpy((char *)out->data + off, f->t.data, f->t.nbytes);
			off += f->t.nbytes;
			qd_tensor_release(&f->t);
		}
	}
	ds->format = "onnx_test_data";
	return 0;
uneven:
	return qd_err_set(err, QD_EINVAL, "dataset", "test data folders hold different files ('%s' has %zu "
			  "input/output files; every test_data_set_* folder needs the same input_<N>.pb / "
			  "output_<N>.pb)", c->f[0].set, first_n);
}

static uint64_t tar_num(const uint8_t *p, size_t n, bool *ok)
{
	uint64_t v = 0;
	if (p[0] & 0x80) { /* GNU base-256 */
		for (size_t i = 1; i < n; i++) {
			if (v >> 56)
				*ok = false;
			v = v << 8 | p[i];
		}
		if (p[0] & 0x40)
			*ok = false; /* negative */
		return v;
	}
	size_t i = 0;
	while (i < n && p[i] == ' ')
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v >> 60)
			*ok = false;
		v = v * 8 + (uint64_t)(p[i] - '0');
	}
	for (; i < n; i++)
		if (p[i] != ' ' && p[i] != 0)
			*ok = false;
	return v;
}

/* "path=" record of a pax extended header; new or NULL. */
static char *pax_path(const uint8_t *p, size_t n)
{
	size_t pos = 0;
	while (pos < n) {
		char *e;
		char buf[24];
		size_t k = 0;
		while (pos + k < n && k < sizeof buf - 1 && p[pos + k] >= '0' && p[pos + k] <= '9') {
			buf[k] = (char)p[pos + k];
			k++;
		}
		buf[k] = 0;
		unsigned long rl = strtoul(buf, &e, 10);
		if (!k || rl <= k + 1 || rl > n - pos || p[pos + k] != ' ')
			return NULL;
		const char *rec = (const char *)p + pos + k + 1;
		size_t rlen = rl - k - 2; /* without the newline */
		if (rlen > 5 && !memcmp(rec, "path=", 5))
			return strndup(rec + 5, rlen - 5);
		pos += rl;
	}
	return NULL;
}

static int load_tar(const uint8_t *b, size_t len, struct td_ctx *c, struct qd_err *err)
{
	size_t pos = 0;
	char *long_name = NULL;
	int rc = 0;
	bool ended = false;
	while (pos + 512 <= len) {
		const uint8_t *h = b + pos;
		bool zero = true;
		for (int i = 0; i < 512 && zero; i++)
			zero = !h[i];
		if (zero) {
			ended = true;
			break;
		}
		bool ok = true;
		uint64_t want = tar_num(h + 148, 8, &ok), sum = 0;
		for (int i = 0; i < 512; i++)
			sum += (i >= 148 && i < 156) ? ' ' : h[i];
		if (!ok || sum != want) {
			rc = qd_err_set(err, QD_EPARSE, "dataset", "corrupt tar: bad header checksum at offset %zu", pos);
			goto out;
		}
		uint64_t size = tar_num(h + 124, 12, &ok);
		if (!ok) {
			rc = qd_err_set(err, QD_EPARSE, "dataset", "corrupt tar: bad size field at offset %zu", pos);
			goto out;
		}
		size_t data = pos + 512;
		if (size > len - data) {
			rc = qd_err_set(err, QD_EPARSE, "dataset", "truncated tar: the entry at offset %zu needs %llu "
					"bytes, the file ends after %zu", pos, (unsigned long long)size, len - data);
			goto out;
		}
		char type = (char)h[156];
		char name[512];
		if (long_name) {
			snprintf(name, sizeof name, "%s", long_name);
			free(long_name);
			long_name = NULL;
		} else {
			char nm[101], pre[156] = "";
			memcpy(nm, h, 100);
			nm[100] = 0;
			if (!memcmp(h + 257, "ustar\0", 6)) { /* POSIX: prefix field */
				memcpy(pre, h + 345, 155);
				pre[155] = 0;
			}
			snprintf(name, sizeof name, "%s%s%s", pre, *pre ? "/" : "", nm);
		}
		if (type == 'L' || type == 'x') {
			if (size > 65536) {
				rc = qd_err_set(err, QD_EPARSE, "dataset", "corrupt tar: %llu-byte long-name record",
						(unsigned long long)size);
				goto out;
			}
			long_name = type == 'L' ? strndup((const char *)b + data, (size_t)size)
						: pax_path(b + data, (size_t)size);
		} else if (type == '0' || type == '\0' || type == '7') {
			if ((rc = td_add(c, name, b + data, size, err)))
				goto out;
		}
		/* directories, links, global pax headers: nothing to read */
		pos = data + (size_t)((size + 511) / 512 * 512);
		if (pos > len) {
			rc = qd_err_set(err, QD_EPARSE, "dataset", "truncated tar: the entry at offset %zu is cut "
					"off", data - 512);
			goto out;
		}
	}
	if (!ended)
		rc = qd_err_set(err, QD_EPARSE, "dataset", "truncated tar: the archive ends at byte %zu "
				"without its end-of-archive blocks", len);
out:
	free(long_name);
	return rc;
}

static int load_dir_set(struct td_ctx *c, const char *root, const char *rel, struct qd_err *err)
{
	char *dpath = qd_asprintf("%s/%s", root, rel);
	DIR *d = dpath ? opendir(dpath) : NULL;
	int rc = 0;
	if (!d) {
		rc = qd_err_set(err, dpath ? QD_EIO : QD_ENOMEM, "dataset", "cannot open '%s'", rel);
		goto out;
	}
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *fp = qd_asprintf("%s/%s", dpath, de->d_name), *rp = qd_asprintf("%s/%s", rel, de->d_name);
		struct qd_buf buf = { 0 };
		struct stat st;
		if (!fp || !rp)
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		else if (stat(fp, &st) || !S_ISREG(st.st_mode))
			rc = qd_err_set(err, QD_EINVAL, "dataset", "'%s' is not a regular file", rp);
		else if ((uint64_t)st.st_size > c->lim->max_array_bytes + ((uint64_t)1 << 20))
			rc = td_add(c, rp, (const uint8_t *)"", (uint64_t)st.st_size, err); /* size error */
		else if (!(rc = qd_file_read(fp, &buf, err)))
			rc = td_add(c, rp, buf.data ? buf.data : (const uint8_t *)"", buf.len, err);
		qd_buf_free(&buf);
		free(fp);
		free(rp);
	}
	closedir(d);
out:
	free(dpath);
	return rc;
}

static int load_dir(const char *path, struct td_ctx *c, struct qd_err *err)
{
	DIR *d = opendir(path);
	if (!d)
		return qd_err_set(err, QD_EIO, "dataset", "cannot open directory '%s': %s", path, strerror(errno));
	int rc = 0;
	struct dirent *de;
	bool any = false;
	while (!rc && (de = readdir(d))) {
		if (strncmp(de->d_name, SET_PREFIX, strlen(SET_PREFIX)))
			continue;
		char *rel = qd_asprintf("./%s", de->d_name);
		any = true;
		rc = rel ? load_dir_set(c, path, rel, err) : qd_err_set(err, QD_ENOMEM, "", "out of memory");
		free(rel);
	}
	closedir(d);
	if (!rc && !any) {
		/* the directory may itself be one test_data_set_* folder */
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		if (!strncmp(base, SET_PREFIX, strlen(SET_PREFIX))) {
			char *parent = strndup(path, (size_t)(base - path));
			char *rel = qd_asprintf("./%s", base);
			rc = parent && rel ? load_dir_set(c, *parent ? parent : ".", rel, err)
					   : qd_err_set(err, QD_ENOMEM, "", "out of memory");
			free(parent);
			free(rel);
		}
	}
	return rc;
}

/* Messages go to API clients: never show the (blob) path, call it "the dataset". */
static void scrub_path(struct qd_err *err, const char *path)
{
	if (!err || !*path)
		return;
	if (!strcmp(err->field, path))
		snprintf(err->field, sizeof err->field, "dataset");
	char q[600], out[sizeof err->msg];
	snprintf(q, sizeof q, "'%s'", path);
	const char *pats[2] = { q, path }, *subs[2] = { "the dataset", "dataset" };
	for (int k = 0; k < 2; k++) {
		char *hit;
		size_t from = 0;
		while (from < sizeof err->msg && (hit = strstr(err->msg + from, pats[k]))) {
			size_t at = (size_t)(hit - err->msg);
			snprintf(out, sizeof out, "%.*s%s%s", (int)at, err->msg, subs[k], hit + strlen(pats[k]));
			memcpy(err->msg, out, sizeof out);
			from = at + strlen(subs[k]);
		}
	}
}

int qd_dataset_load(const char *path, const struct qd_dataset_limits *limits,
		    struct qd_dataset **out, struct qd_err *err)
{
	struct qd_dataset_limits lim;
	limits_fill(&lim, limits);
	*out = NULL;
	struct qd_dataset *ds = qd_calloc(1, sizeof *ds);
	struct td_ctx c = { .lim = &lim };
	struct stat st;
	const uint8_t *map = NULL;
	size_t len = 0;
	int rc = 0;
	if (!ds)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if (stat(path, &st)) {
		rc = qd_err_set(err, QD_EIO, "dataset", "cannot open dataset '%s': %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		if (!(rc = load_dir(path, &c, err)))
			rc = td_build(&c, ds, err);
		goto out;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = qd_err_set(err, QD_EIO, "dataset", "cannot open dataset '%s': %s", path, strerror(errno));
		goto out;
	}
	len = (size_t)st.st_size;
	if (!len) {
		close(fd);
		rc = qd_err_set(err, QD_EPARSE, "dataset", "the dataset file is empty");
		goto out;
	}
	map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		map = NULL;
		rc = qd_err_set(err, QD_EIO, "dataset", "cannot map dataset '%s': %s", path, strerror(errno));
		goto out;
	}
	if (len >= 4 && map[0] == 'P' && map[1] == 'K' && (map[2] == 3 || map[2] == 5)) {
		rc = load_npz(path, &lim, ds, err);
	} else if (len >= 512 && !memcmp(map + 257, "ustar", 5)) {
		if (!(rc = load_tar(map, len, &c, err)))
			rc = td_build(&c, ds, err);
	} else if (len >= 2 && map[0] == 0x1f && map[1] == 0x8b) {
		rc = qd_err_set(err, QD_EUNSUPPORTED, "dataset", "the dataset is gzip-compressed: upload the "
				"plain tar (or an .npz)");
	} else {
		rc = qd_err_set(err, QD_EPARSE, "dataset", "the dataset is neither an .npz (zip) nor a tar of "
				"ONNX test_data_set_* folders");
	}
out:
	if (map)
		munmap((void *)map, len);
	td_free(&c);
	if (!rc)
		rc = finish(ds, err);
	if (rc) {
		scrub_path(err, path);
		qd_dataset_free(ds);
		return rc;
	}
	*out = ds;
	return 0;
}

/* ---- binding ---- */

static bool is_initializer(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name))
			return true;
	return false;
}

static void shape_text(const struct qd_tensor *t, char *out, size_t sz)
{
	size_t k = (size_t)snprintf(out, sz, "[");
	for (int i = 0; i < t->ndim && k < sz; i++)
		k += (size_t)snprintf(out + k, sz - k, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
	if (k < sz)
		snprintf(out + k, sz - k, "]");
}

static void model_shape_text(const Onnx__TensorShapeProto *s, char *out, size_t sz)
{
	size_t k = (size_t)snprintf(out, sz, "[");
	for (size_t i = 0; s && i < s->n_dim && k < sz; i++) {
		const Onnx__TensorShapeProto__Dimension *d = s->dim[i];
		if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
			k += (size_t)snprintf(out + k, sz - k, "%s%lld", i ? ", " : "", (long long)d->dim_value);
		else
			k += (size_t)snprintf(out + k, sz - k, "%s%s", i ? ", " : "",
					      d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
					      d->dim_param ? d->dim_param : "?");
	}
	if (k < sz)
		snprintf(out + k, sz - k, "]");
}

int qd_dataset_bind(struct qd_dataset *ds, const struct qd_model *m, struct qd_err *err)
{
	const Onnx__GraphProto *g = m && m->proto ? m->proto->graph : NULL;
	if (!g)
		return qd_err_set(err, QD_EMODEL, "model", "the model has no graph");
	const Onnx__ValueInfoProto *in[1024];
	size_t n_in = 0;
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && !is_initializer(g, g->input[i]->name)) {
			if (n_in == QD_ARRAY_LEN(in))
				return qd_err_set(err, QD_EUNSUPPORTED, "model", "the model has more than %zu inputs",
						  QD_ARRAY_LEN(in));
			in[n_in++] = g->input[i];
		}
	/* input_<N> → the N-th input's name */
	for (size_t a = 0; a < ds->n_arrays; a++) {
		struct qd_tensor *t = &ds->arrays[a];
		const char *nm = t->name ? t->name : "";
		char *e;
		if (strncmp(nm, "input_", 6) || nm[6] < '0' || nm[6] > '9')
			continue;
		long idx = strtol(nm + 6, &e, 10);
		if (*e)
			continue;
		bool exact = false;
		for (size_t i = 0; i < n_in; i++)
			exact = exact || !strcmp(in[i]->name, nm);
		if (exact)
			continue;
		if (idx < 0 || (size_t)idx >= n_in) {
			qd_err_set(err, QD_EINVAL, "", "dataset array '%s': the model has only %zu input%s", nm,
				   n_in, n_in == 1 ? "" : "s");
			set_array_field(err, nm);
			return -QD_EINVAL;
		}
		if (qd_dataset_array(ds, in[idx]->name)) {
			qd_err_set(err, QD_EINVAL, "", "dataset array '%s' stands for model input '%s', which "
				   "the dataset also has by name", nm, in[idx]->name);
			set_array_field(err, nm);
			return -QD_EINVAL;
		}
		char *nn = strdup(in[idx]->name);
		if (!nn)
			return qd_err_set(err, QD_ENOMEM, "", "out of memory");
		free(t->name);
		t->name = nn;
	}
	int64_t samples = -1;
	const char *first = NULL;
	for (size_t i = 0; i < n_in; i++) {
		const char *nm = in[i]->name;
		const struct qd_tensor *t = qd_dataset_array(ds, nm);
		if (!t) {
			char have[256];
			size_t k = 0;
			have[0] = 0;
			for (size_t a = 0; a < ds->n_arrays && k < sizeof have; a++)
				k += (size_t)snprintf(have + k, sizeof have - k, "%s'%s'", a ? ", " : "",
						      ds->arrays[a].name ? ds->arrays[a].name : "");
			qd_err_set(err, QD_EINVAL, "", "dataset has no array for model input '%s' (it has %s)",
				   nm, have);
			set_array_field(err, nm);
			return -QD_EINVAL;
		}
		const Onnx__TypeProto *tp = in[i]->type;
		const Onnx__TypeProto__Tensor *tt =
			tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? tp->tensor_type : NULL;
		if (tt && tt->has_elem_type && tt->elem_type && tt->elem_type != t->dtype) {
			qd_err_set(err, QD_EINVAL, "", "dataset array '%s': dtype %s, model input '%s' wants %s",
				   nm, qd_dtype_name(t->dtype), nm, qd_dtype_name(tt->elem_type));
			set_array_field(err, nm);
			return -QD_EINVAL;
		}
		char ash[200], msh[200];
		shape_text(t, ash, sizeof ash);
		if (tt && tt->shape) {
			const Onnx__TensorShapeProto *s = tt->shape;
			model_shape_text(s, msh, sizeof msh);
			if ((size_t)t->ndim != s->n_dim) {
				qd_err_set(err, QD_ESHAPE, "", "dataset array '%s': shape %s has rank %d, model "
					   "input '%s' %s has rank %zu", nm, ash, t->ndim, nm, msh, s->n_dim);
				set_array_field(err, nm);
				return -QD_ESHAPE;
			}
			for (size_t d = 1; d < s->n_dim; d++)
				if (s->dim[d]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
				    s->dim[d]->dim_value != t->dims[d]) {
					qd_err_set(err, QD_ESHAPE, "", "dataset array '%s': shape %s, model input '%s' "
						   "wants %s (dim %zu is %lld, not %lld)", nm, ash, nm, msh, d,
						   (long long)t->dims[d], (long long)s->dim[d]->dim_value);
					set_array_field(err, nm);
					return -QD_ESHAPE;
				}
			if (s->n_dim && s->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
			    s->dim[0]->dim_value > 0 && t->dims[0] % s->dim[0]->dim_value) {
				qd_err_set(err, QD_ESHAPE, "", "dataset array '%s' has %lld samples, not a multiple "
					   "of model input '%s''s fixed batch size %lld", nm, (long long)t->dims[0],
					   nm, (long long)s->dim[0]->dim_value);
				set_array_field(err, nm);
				return -QD_ESHAPE;
			}
		}
		if (samples >= 0 && t->dims[0] != samples) {
			qd_err_set(err, QD_ESHAPE, "", "dataset array '%s' has %lld samples, array '%s' has %lld: "
				   "every model input needs the same number", nm, (long long)t->dims[0], first,
				   (long long)samples);
			set_array_field(err, nm);
			return -QD_ESHAPE;
		}
		samples = t->dims[0];
		first = nm;
	}
	if (samples < 0)
		return qd_err_set(err, QD_EMODEL, "model", "the model has no graph inputs to bind the dataset to");
	ds->n_samples = samples;
	return 0;
}

int qd_dataset_slice(const struct qd_tensor *a, int64_t start, int64_t count,
		     struct qd_tensor *out, struct qd_err *err)
{
	const char *nm = a->name ? a->name : "";
	memset(out, 0, sizeof *out);
	if (a->ndim < 1 || start < 0 || count < 0 || start > a->dims[0] || count > a->dims[0] - start)
		return qd_err_set(err, QD_EINVAL, nm, "rows [%lld, %lld) are outside dataset array '%s' "
				  "(%lld rows)", (long long)start, (long long)(start + count), nm,
				  (long long)(a->ndim ? a->dims[0] : 0));
	int64_t dims[QD_MAX_DIMS];
	memcpy(dims, a->dims, sizeof dims);
	dims[0] = count;
	int rc = qd_tensor_alloc(out, a->name, a->dtype, a->ndim, dims);
	if (rc)
		return qd_err_set(err, -rc, nm, "cannot allocate a slice of dataset array '%s'", nm);
	size_t row = a->dims[0] ? a->nbytes / (size_t)a->dims[0] : 0;
	if (out->nbytes && a->data)
		memcpy(out->data, (const char *)a->data + (size_t)start * row, out->nbytes);
	return 0;
}

json_t *qd_dataset_summary_json(const struct qd_dataset *ds)
{
	json_t *arr = json_array(), *o = json_object();
	if (!arr || !o) {
		json_decref(arr);
		json_decref(o);
		return NULL;
	}
	for (size_t i = 0; i < ds->n_arrays; i++) {
		const struct qd_tensor *t = &ds->arrays[i];
		json_t *sh = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(sh, json_integer(t->dims[d]));
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:I}", "name", t->name ? t->name : "",
						     "dtype", qd_dtype_name(t->dtype), "shape", sh, "samples",
						     (json_int_t)(t->ndim ? t->dims[0] : 0)));
	}
	json_object_set_new(o, "format", json_string(ds->format ? ds->format : "npz"));
	json_object_set_new(o, "samples", ds->n_samples >= 0 ? json_integer(ds->n_samples) : json_null());
	json_object_set_new(o, "arrays", arr);
	return o;
}
