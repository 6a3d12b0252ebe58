/* External data: save with external data on request and automatically above the size
 * threshold, load it back (values identical), keep_external, and refusal of locations
 * that escape the model directory (absolute, "..", symlinks) or point past the file. */
#define _GNU_SOURCE
#include "qd_test.h"
#include "onnx/onnx.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define OWW "tests/ort/node_modules/openwakeword-js/models/"

static char dir[256];

static char *p(const char *name)
{
	static char buf[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
	return buf[k];
}

static off_t fsize(const char *path)
{
	struct stat st;
	return stat(path, &st) ? -1 : st.st_size;
}

static bool same_message(const struct qd_model *a, const struct qd_model *b)
{
	struct qd_buf x = { 0 }, y = { 0 };
	qd_model_serialize(a, &x, NULL);
	qd_model_serialize(b, &y, NULL);
	bool same = x.len == y.len && !memcmp(x.data, y.data, x.len);
	qd_buf_free(&x);
	qd_buf_free(&y);
	return same;
}

static void set_ext(Onnx__TensorProto *t, const char *k, const char *v)
{
	for (size_t i = 0; i < t->n_external_data; i++)
		if (!strcmp(t->external_data[i]->key, k)) {
			free(t->external_data[i]->value);
			t->external_data[i]->value = strdup(v);
		}
}

static void test_external_roundtrip(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = NULL, *e = NULL, *k = NULL;
	CHECK(!qd_model_load_file(OWW "hello_deepa.onnx", NULL, &m, &err));
	if (!m)
		return;
	size_t big = 0;
	for (size_t i = 0; i < m->proto->graph->n_initializer; i++)
		big += qd_tensor_numel(m->proto->graph->initializer[i]) * 4 >= 1024;
	struct qd_save_opts so = { .external_data = true };
	CHECK(!qd_model_save_file(m, p("ext.onnx"), &so, &err));
	off_t ms = fsize(p("ext.onnx")), ds = fsize(p("ext.onnx.data"));
	printf("external save: model %lld bytes + data %lld bytes (inline %lld), %zu tensors external\n",
	       (long long)ms, (long long)ds, (long long)fsize(OWW "hello_deepa.onnx"), big);
	CHECK(ms > 0 && ms < 20000 && ds > 250000);
	/* the in-memory model is unchanged by the external save */
	struct qd_model *orig = NULL;
	qd_model_load_file(OWW "hello_deepa.onnx", NULL, &orig, &err);
	CHECK(same_message(m, orig));
	/* load resolves the data back inline: the same message as the original */
	CHECKF(!qd_model_load_file(p("ext.onnx"), NULL, &e, &err), "%s", err.msg);
	CHECK(e && same_message(e, orig));
	CHECK(e && !qd_model_check(e, &err));
	/* keep_external: tensors stay external, paths and sizes validated */
	struct qd_load_opts ko = { .keep_external = true };
	CHECKF(!qd_model_load_file(p("ext.onnx"), &ko, &k, &err), "%s", err.msg);
	size_t n_ext = 0;
	for (size_t i = 0; k && i < k->proto->graph->n_initializer; i++)
		n_ext += k->proto->graph->initializer[i]->data_location ==
			 ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	CHECK_EQ_INT(n_ext, big);
	CHECK(k && !qd_model_check(k, &err));
	/* saving a keep_external model reads its data first: inline elsewhere, and with
	 * external data over the very file the tensors point into */
	struct qd_save_opts xo = { .external_data = true };
	CHECKF(k && !qd_model_save_file(k, p("k_inline.onnx"), NULL, &err), "%s", err.msg);
	CHECKF(k && !qd_model_save_file(k, p("ext.onnx"), &xo, &err), "%s", err.msg);
	struct qd_model *r1 = NULL, *r2 = NULL;
	CHECK(!qd_model_load_file(p("k_inline.onnx"), NULL, &r1, &err) && same_message(r1, orig));
	CHECK(!qd_model_load_file(p("ext.onnx"), NULL, &r2, &err) && same_message(r2, orig));
	qd_model_free(r1);
	qd_model_free(r2);
	qd_model_free(k);
	qd_model_free(e);

	/* custom name + threshold */
	so.external_name = "weights.bin";
	so.size_threshold = 1 << 20; /* nothing that big: everything stays inline */
	CHECK(!qd_model_save_file(m, p("thr.onnx"), &so, &err));
	CHECK(fsize(p("weights.bin")) == 0);
	so.size_threshold = 16;
	CHECK(!qd_model_save_file(m, p("thr.onnx"), &so, &err));
	CHECK(fsize(p("weights.bin")) > 250000);
	/* int64 shape data under the default threshold stays inline whatever the threshold
	 * (ONNX Runtime's shape inference refuses it external); a large int64 tensor and
	 * the float weights go out */
	{
		int64_t shape[4] = { 1, -1, 4, 8 }, d4 = 4, d200 = 200, big64[200] = { 0 };
		struct qd_model *s64 = NULL;
		CHECK(!qd_model_load_file(OWW "hello_deepa.onnx", NULL, &s64, &err));
		Onnx__GraphProto *g = s64 ? s64->proto->graph : NULL;
		CHECK(g && !qd_graph_add_initializer(g, qd_tensor_new("shape64", QD_DT_INT64, &d4, 1, shape, sizeof shape)));
		CHECK(g && !qd_graph_add_initializer(g, qd_tensor_new("big64", QD_DT_INT64, &d200, 1, big64, sizeof big64)));
		struct qd_save_opts o1 = { .external_data = true, .size_threshold = 1 };
		CHECK(g && !qd_model_save_file(s64, p("s64.onnx"), &o1, &err));
		struct qd_model *r = NULL;
		CHECK(!qd_model_load_file(p("s64.onnx"), &ko, &r, &err));
		int where[2] = { -1, -1 }; /* shape64, big64: 1 = external */
		for (size_t i = 0; r && i < r->proto->graph->n_initializer; i++) {
			const Onnx__TensorProto *t = r->proto->graph->initializer[i];
			int ext = t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
			if (!strcmp(t->name, "shape64"))
				where[0] = ext;
			else if (!strcmp(t->name, "big64"))
				where[1] = ext;
		}
		CHECK_EQ_INT(where[0], 0);
		CHECK_EQ_INT(where[1], 1);
		qd_model_free(r);
		qd_model_free(s64);
	}
	so.external_name = "../escape.bin";
	CHECK(qd_model_save_file(m, p("bad.onnx"), &so, &err) == -QD_EINVAL);
	CHECK_STR(err.field, "external_name");

	/* automatic switch above the threshold: opts field, then the environment variable */
	struct qd_save_opts ao = { .auto_external_bytes = 100000 };
	CHECK(!qd_model_save_file(m, p("auto.onnx"), &ao, &err));
	CHECK(fsize(p("auto.onnx")) < 100000 && fsize(p("auto.onnx.data")) > 250000);
	e = NULL;
	CHECK(!qd_model_load_file(p("auto.onnx"), NULL, &e, &err) && same_message(e, orig));
	qd_model_free(e);
	setenv("QD_ONNX_EXTERNAL_AUTO_BYTES", "50000", 1);
	CHECK(!qd_model_save_file(m, p("env.onnx"), NULL, &err));
	CHECK(fsize(p("env.onnx.data")) > 250000);
	unsetenv("QD_ONNX_EXTERNAL_AUTO_BYTES");
	CHECK(!qd_model_save_file(m, p("inline.onnx"), NULL, &err));
	CHECK(fsize(p("inline.onnx.data")) < 0);
	CHECK_EQ_INT(fsize(p("inline.onnx")), fsize(OWW "hello_deepa.onnx"));
	qd_model_free(orig);
	qd_model_free(m);
}

static bool same_file(const char *a, const char *b)
{
	struct qd_buf x = { 0 }, y = { 0 };
	bool same = !qd_file_read(a, &x, NULL) && !qd_file_read(b, &y, NULL) && x.len == y.len &&
		    !memcmp(x.data, y.data, x.len);
	qd_buf_free(&x);
	qd_buf_free(&y);
	return same;
}

/* keep_external + external save: untouched tensors are copied range by range, and the
 * files are byte for byte those of a fully loaded model saved the same way (also with a
 * threshold that brings some of them inline); per-tensor reads give the loaded values. */
static void test_external_pass_through(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = NULL, *full = NULL, *k = NULL;
	CHECK(!qd_model_load_file(OWW "hello_deepa.onnx", NULL, &m, &err));
	struct qd_save_opts so = { .external_data = true, .external_name = "src.bin" };
	CHECK(m && !qd_model_save_file(m, p("src.onnx"), &so, &err));
	struct qd_load_opts ko = { .keep_external = true };
	CHECKF(!qd_model_load_file(p("src.onnx"), &ko, &k, &err), "%s", err.msg);
	CHECK(!qd_model_load_file(p("src.onnx"), NULL, &full, &err));
	if (!k || !full)
		goto out;
	uint64_t ext = qd_model_external_tensor_bytes(k);
	CHECK(ext > 250000 && qd_model_external_tensor_bytes(full) == 0);
	/* per-tensor reads */
	size_t n_float = 0, n_same = 0;
	for (size_t i = 0; i < k->proto->graph->n_initializer; i++) {
		const Onnx__TensorProto *t = k->proto->graph->initializer[i];
		if (!qd_tensor_is_external(t) || t->data_type != QD_DT_FLOAT)
			continue;
		float *a = NULL, *b = NULL;
		int64_t na = 0, nb = 0;
		n_float++;
		if (!qd_model_tensor_to_float(k, t, &a, &na, &err) &&
		    !qd_tensor_to_float(full->proto->graph->initializer[i], &b, &nb, &err) && na == nb &&
		    !memcmp(a, b, (size_t)na * sizeof *a))
			n_same++;
		free(a);
		free(b);
	}
	CHECK(n_float > 0);
	CHECK_EQ_INT(n_same, n_float);
	/* row bands of 2-D float tensors, external and inline, equal the loaded rows */
	size_t n_2d = 0, n_rows_same = 0;
	for (size_t i = 0; i < k->proto->graph->n_initializer; i++) {
		const Onnx__TensorProto *t = k->proto->graph->initializer[i], *f = full->proto->graph->initializer[i];
		if (!qd_tensor_is_external(t) || t->data_type != QD_DT_FLOAT || t->n_dims != 2 || t->dims[0] < 3)
			continue;
		int64_t cols = t->dims[1];
		float *a = malloc((size_t)(2 * cols) * sizeof *a), *b = malloc((size_t)(2 * cols) * sizeof *b), *v = NULL;
		int64_t nv = 0;
		n_2d++;
		if (a && b && !qd_model_tensor_rows(k, t, 1, 3, a, &err) && !qd_model_tensor_rows(full, f, 1, 3, b, &err) &&
		    !qd_tensor_to_float(f, &v, &nv, &err) && !memcmp(a, v + cols, (size_t)(2 * cols) * sizeof *a) &&
		    !memcmp(a, b, (size_t)(2 * cols) * sizeof *a))
			n_rows_same++;
		CHECK(qd_model_tensor_rows(k, t, 2, t->dims[0] + 1, a, &err) == -QD_EINVAL);   /* past the end */
		free(a);
		free(b);
		free(v);
	}
	CHECK(n_2d > 0);
	CHECK_EQ_INT(n_rows_same, n_2d);
	mkdir(p("pt"), 0755);
	mkdir(p("fl"), 0755);
	size_t thr[2] = { 0, 40000 };
	for (int r = 0; r < 2; r++) {
		struct qd_save_opts o = { .external_data = true, .external_name = "w.data", .size_threshold = thr[r] };
		struct qd_model *k2 = NULL;
		CHECK(!qd_model_load_file(p("src.onnx"), &ko, &k2, &err));
		CHECKF(k2 && !qd_model_save_file(k2, p("pt/m.onnx"), &o, &err), "%s", err.msg);
		CHECKF(!qd_model_save_file(full, p("fl/m.onnx"), &o, &err), "%s", err.msg);
		CHECKF(same_file(p("pt/m.onnx"), p("fl/m.onnx")), "threshold %zu: model files differ", thr[r]);
		CHECKF(same_file(p("pt/w.data"), p("fl/w.data")), "threshold %zu: data files differ", thr[r]);
		/* the in-memory model still points into src.bin: saving it again works */
		if (r == 0)
			CHECK(k2 && qd_model_external_tensor_bytes(k2) == ext);
		else
			CHECK(k2 && qd_model_external_tensor_bytes(k2) < ext);   /* the small ones read in */
		qd_model_free(k2);
	}
	struct qd_model *back = NULL;
	CHECK(!qd_model_load_file(p("pt/m.onnx"), NULL, &back, &err) && same_message(back, full));
	qd_model_free(back);
	/* no external data out: read in first (the whole model inline) */
	CHECK(!qd_model_save_file(k, p("pt/inline.onnx"), NULL, &err));
	CHECK(qd_model_external_tensor_bytes(k) == 0);
	CHECK_EQ_INT(fsize(p("pt/inline.onnx")), fsize(OWW "hello_deepa.onnx"));
out:
	qd_model_free(k);
	qd_model_free(full);
	qd_model_free(m);
}

static void test_external_errors(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = NULL, *x = NULL;
	struct qd_load_opts ko = { .keep_external = true };
	CHECK(!qd_model_load_file(p("ext.onnx"), &ko, &m, &err));
	if (!m)
		return;
	Onnx__TensorProto *t = NULL;
	for (size_t i = 0; i < m->proto->graph->n_initializer && !t; i++)
		if (m->proto->graph->initializer[i]->n_external_data)
			t = m->proto->graph->initializer[i];
	CHECK(t != NULL);
	if (!t)
		return;
	const char *tn = t->name;
	struct qd_buf b = { 0 };
	/* serialize the keep_external model with a poisoned location, then load from the dir */
	struct { const char *loc; const char *off; const char *len; const char *want; } cases[] = {
		{ "/etc/passwd", NULL, NULL, "is absolute" },
		{ "../ext.onnx.data", NULL, NULL, "escapes the model directory" },
		{ "sub/../../x", NULL, NULL, "escapes the model directory" },
		{ "link.data", NULL, NULL, "escapes the model directory (symlink)" },
		{ "missing.data", NULL, NULL, "cannot open external data" },
		{ "ext.onnx.data", "999999999", NULL, "past the end" },
		{ "ext.onnx.data", "0", "12", "has 12 bytes" },
		{ "ext.onnx.data", "-4", NULL, "invalid external offset" },
		{ "", NULL, NULL, "without a location" },
	};
	CHECK(!symlink("/etc/hostname", p("link.data")) || fsize(p("link.data")) >= 0);
	char *loc0 = strdup(t->external_data[0]->value), *off0 = NULL, *len0 = NULL;
	for (size_t i = 0; i < t->n_external_data; i++) {
		if (!strcmp(t->external_data[i]->key, "offset")) off0 = strdup(t->external_data[i]->value);
		if (!strcmp(t->external_data[i]->key, "length")) len0 = strdup(t->external_data[i]->value);
	}
	for (size_t c = 0; c < QD_ARRAY_LEN(cases); c++) {
		set_ext(t, "location", cases[c].loc);
		set_ext(t, "offset", cases[c].off ? cases[c].off : off0);
		set_ext(t, "length", cases[c].len ? cases[c].len : len0);
		qd_model_serialize(m, &b, &err);
		memset(&err, 0, sizeof err);
		int rc = qd_model_load_buf(b.data, b.len, dir, NULL, &x, &err);
		CHECKF(rc < 0 && x == NULL && strstr(err.msg, cases[c].want) && !strcmp(err.field, tn),
		       "case %zu '%s': rc %d msg '%s' field '%s'", c, cases[c].loc, rc, err.msg, err.field);
		qd_model_free(x);
		x = NULL;
	}
	/* a buffer without a base directory cannot resolve external data */
	set_ext(t, "location", loc0);
	set_ext(t, "offset", off0);
	set_ext(t, "length", len0);
	qd_model_serialize(m, &b, &err);
	CHECK(qd_model_load_buf(b.data, b.len, NULL, NULL, &x, &err) == -QD_EINVAL);
	CHECK(!qd_model_load_buf(b.data, b.len, dir, NULL, &x, &err));
	qd_model_free(x);
	free(loc0);
	free(off0);
	free(len0);
	qd_buf_free(&b);
	qd_model_free(m);
}

/* load + save speed on a ~100 MB model (figures only, no timed assertion) */
static void bench_large(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = qd_model_new(8, 13);
	int64_t dims[2] = { 5000, 5000 };
	size_t n = 25000000;
	float *w = malloc(n * sizeof *w);
	for (size_t i = 0; i < n; i++)
		w[i] = (float)(i % 1000) * 0.001f;
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new("big", QD_DT_FLOAT, dims, 2, w, n * 4));
	free(w);
	double t0 = qd_now_mono();
	CHECK(!qd_model_save_file(m, p("big.onnx"), NULL, &err));
	double t1 = qd_now_mono();
	struct qd_model *l = NULL;
	CHECK(!qd_model_load_file(p("big.onnx"), NULL, &l, &err));
	double t2 = qd_now_mono();
	struct qd_save_opts so = { .external_data = true };
	CHECK(!qd_model_save_file(l, p("bigx.onnx"), &so, &err));
	double t3 = qd_now_mono();
	printf("100 MB model: save %.3f s, load %.3f s, save external %.3f s\n", t1 - t0, t2 - t1, t3 - t2);
	CHECK(l && l->proto->graph->initializer[0]->raw_data.len == n * 4);
	CHECK(fsize(p("big.onnx")) > (off_t)n * 4 && fsize(p("big.onnx")) < (off_t)n * 4 + 200);
	qd_model_free(l);
	qd_model_free(m);
	unlink(p("big.onnx"));
	unlink(p("bigx.onnx"));
	unlink(p("bigx.onnx.data"));
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/qd_onnx_ext_XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_external_roundtrip();
	test_external_pass_through();
	test_external_errors();
	bench_large();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd)) {}
	return qd_test_done("test_onnx_ext");
}
