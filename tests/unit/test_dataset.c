/* engine/dataset + passes/data_config: .npz written by numpy (stored and deflated, via
 * /usr/bin/python3) and by qd_npz_write, tars and directories of ONNX test_data_set_*
 * folders, limits (bombs, absurd shapes), truncated / corrupt files, binding to a model's
 * inputs, slices; Olive data_configs in dict and list form, unknown names, rejected keys. */
#include "qd_test.h"
#include "engine/dataset.h"
#include "passes/data_config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[] = "/tmp/qd_test_dataset_XXXXXX";

static char *tpath(const char *name)
{
	static char buf[8][512];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 512, "%s/%s", tmp, name);
	return b;
}

static int py(const char *code)
{
	char *f = tpath("gen.py");
	FILE *fp = fopen(f, "w");
	if (!fp)
		return -1;
	fprintf(fp, "import numpy as np, zipfile, os, tarfile\nos.chdir('%s')\n%s\n", tmp, code);
	fclose(fp);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s", f);
	return system(cmd);
}

static bool have_numpy;

static int load(const char *name, const struct qd_dataset_limits *lim, struct qd_dataset **ds,
		struct qd_err *err)
{
	memset(err, 0, sizeof *err);
	return qd_dataset_load(tpath(name), lim, ds, err);
}

static void test_npz_numpy(void)
{
	if (!have_numpy) {
		printf("skip: /usr/bin/python3 with numpy not found\n");
		return;
	}
	CHECK_EQ_INT(py("x = np.arange(24, dtype=np.float32).reshape(6, 4)\n"
			"ids = (np.arange(48, dtype=np.int64) % 7).reshape(6, 8)\n"
			"f = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(6, 2))\n"
			"np.savez('stored.npz', x=x, ids=ids, f=f)\n"
			"np.savez_compressed('deflated.npz', x=x, ids=ids, f=f)\n"
			"np.savez_compressed('bomb.npz', big=np.zeros((1024, 1024), np.float32))\n"
			"np.savez('empty.npz')\n"
			"np.savez('zero.npz', x=np.zeros((0, 4), np.float32))\n"
			"np.savez('scalar.npz', x=np.float32(3))\n"
			"h = b\"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }\"\n"
			"h = h + b' ' * (117 - len(h)) + b'\\n'\n"
			"npy = b'\\x93NUMPY\\x01\\x00' + len(h).to_bytes(2, 'little') + h + b'\\0' * 64\n"
			"for name, c in (('absurd_stored.npz', zipfile.ZIP_STORED), ('absurd_deflated.npz', zipfile.ZIP_DEFLATED)):\n"
			"    with zipfile.ZipFile(name, 'w', c) as z: z.writestr('huge.npy', npy)\n"
			"b = open('stored.npz', 'rb').read()\n"
			"open('truncated.npz', 'wb').write(b[:len(b) // 2])\n"
			"i = b.index(b'\\x00\\x00\\x80?')\n"  /* 1.0f of x[0][1] */
			"open('corrupt.npz', 'wb').write(b[:i] + b'\\x00\\x00\\x80@' + b[i + 4:])\n"
			"d = open('deflated.npz', 'rb').read()\n"
			"open('corrupt_deflate.npz', 'wb').write(d[:60] + bytes(x ^ 0x55 for x in d[60:90]) + d[90:])\n"
			"open('garbage.bin', 'wb').write(b'hello, this is not a dataset' * 40)\n"), 0);
	const char *files[] = { "stored.npz", "deflated.npz" };
	for (int k = 0; k < 2; k++) {
		struct qd_dataset *ds = NULL;
		struct qd_err err;
		CHECKF(load(files[k], NULL, &ds, &err) == 0, "%s: %s", files[k], err.msg);
		if (!ds)
			continue;
		CHECK_STR(ds->format, "npz");
		CHECK_EQ_INT(ds->n_arrays, 3);
		CHECK_EQ_INT(ds->n_samples, 6);
		const struct qd_tensor *x = qd_dataset_array(ds, "x"), *ids = qd_dataset_array(ds, "ids"),
				       *f = qd_dataset_array(ds, "f");
		CHECK(x && x->dtype == QD_DT_FLOAT && x->ndim == 2 && x->dims[1] == 4 && ((float *)x->data)[23] == 23.0f);
		CHECK(ids && ids->dtype == QD_DT_INT64 && ((int64_t *)ids->data)[9] == 2);
		/* Fortran order comes back in C order */
		CHECK(f && f->dtype == QD_DT_DOUBLE && ((double *)f->data)[1] == 1.0 && ((double *)f->data)[2] == 2.0);
		json_t *s = qd_dataset_summary_json(ds);
		CHECK(json_integer_value(json_object_get(s, "samples")) == 6);
		CHECK(json_array_size(json_object_get(s, "arrays")) == 3);
		json_decref(s);
		qd_dataset_free(ds);
	}
	struct { const char *file, *field, *msg; int code; struct qd_dataset_limits lim; } bad[] = {
		{ "bomb.npz", "dataset.arrays.big", "limit", QD_ETOO_LARGE, { .max_array_bytes = 1 << 20 } },
		{ "bomb.npz", "dataset.arrays.big", "limit", QD_ETOO_LARGE, { .max_total_bytes = 1 << 20 } },
		{ "absurd_stored.npz", "dataset.arrays.huge", "absurd shape", QD_ETOO_LARGE, { 0 } },
		{ "absurd_deflated.npz", "dataset.arrays.huge", "absurd shape", QD_ETOO_LARGE, { 0 } },
		{ "empty.npz", "dataset", "no arrays", QD_EINVAL, { 0 } },
		{ "zero.npz", "dataset.arrays.x", "0 samples", QD_EINVAL, { 0 } },
		{ "scalar.npz", "dataset.arrays.x", "scalar", QD_EINVAL, { 0 } },
		{ "truncated.npz", NULL, "", QD_EPARSE, { 0 } },
		{ "corrupt.npz", "dataset.arrays.x", "CRC", QD_EPARSE, { 0 } },
		{ "corrupt_deflate.npz", NULL, "", QD_EPARSE, { 0 } },
		{ "garbage.bin", "dataset", "neither", QD_EPARSE, { 0 } },
		{ "missing.npz", "dataset", "cannot open", QD_EIO, { 0 } },
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(bad); i++) {
		struct qd_dataset *ds = NULL;
		struct qd_err err;
		int rc = load(bad[i].file, &bad[i].lim, &ds, &err);
		CHECKF(rc == -bad[i].code && !ds, "%s: rc %d (%s)", bad[i].file, rc, err.msg);
		if (bad[i].field)
			CHECKF(!strcmp(err.field, bad[i].field), "%s: field '%s'", bad[i].file, err.field);
		CHECKF(strstr(err.msg, bad[i].msg) && !strstr(err.msg, tmp), "%s: message '%s'", bad[i].file, err.msg);
	}
}

static void test_npz_written(void)
{
	struct qd_tensor t[2];
	int64_t d0[2] = { 5, 3 }, d1[1] = { 5 };
	qd_tensor_alloc(&t[0], "x", QD_DT_FLOAT, 2, d0);
	qd_tensor_alloc(&t[1], "label", QD_DT_INT64, 1, d1);
	for (int i = 0; i < 15; i++)
		((float *)t[0].data)[i] = (float)i;
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_npz_write(tpath("w.npz"), t, 2, &err), 0);
	struct qd_dataset *ds = NULL;
	CHECK_EQ_INT(load("w.npz", NULL, &ds, &err), 0);
	if (ds) {
		CHECK_EQ_INT(ds->n_samples, 5);
		struct qd_tensor s;
		CHECK_EQ_INT(qd_dataset_slice(qd_dataset_array(ds, "x"), 2, 2, &s, &err), 0);
		CHECK(s.dims[0] == 2 && s.dims[1] == 3 && ((float *)s.data)[0] == 6.0f && ((float *)s.data)[5] == 11.0f);
		CHECK_STR(s.name, "x");
		qd_tensor_release(&s);
		CHECK(qd_dataset_slice(qd_dataset_array(ds, "x"), 4, 2, &s, &err) < 0);
		CHECK(qd_dataset_slice(qd_dataset_array(ds, "x"), -1, 1, &s, &err) < 0);
		qd_dataset_free(ds);
	}
	qd_tensor_release(&t[0]);
	qd_tensor_release(&t[1]);
}

/* input_N.pb file with a float [rows, 3] or int64 [rows] tensor. */
static void write_pb(const char *rel, const char *name, int dtype, int64_t rows, int base)
{
	int64_t dims[2] = { rows, 3 };
	size_t nd = dtype == QD_DT_FLOAT ? 2 : 1, n = (size_t)(nd == 2 ? rows * 3 : rows);
	uint8_t data[4096];
	for (size_t i = 0; i < n; i++) {
		if (dtype == QD_DT_FLOAT)
			((float *)data)[i] = (float)(base + (int)i);
		else
			((int64_t *)data)[i] = base + (int)i;
	}
	Onnx__TensorProto *t = qd_tensor_new(name, dtype, dims, nd, data, n * qd_dtype_size(dtype));
	size_t len = onnx__tensor_proto__get_packed_size(t);
	uint8_t *buf = malloc(len);
	onnx__tensor_proto__pack(t, buf);
	char *p = tpath(rel);
	char dir[512];
	snprintf(dir, sizeof dir, "%s", p);
	*strrchr(dir, '/') = 0;
	struct qd_err err;
	qd_mkdir_p(dir, &err);
	qd_file_write_atomic(p, buf, len, &err);
	free(buf);
	qd_tensor_free(t);
}

static struct qd_model *model2(int xdt, int64_t xd1, int64_t batch)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	g->input = calloc(3, sizeof(*g->input));
	int64_t dx[2] = { batch, xd1 }, di[1] = { batch };
	g->input[g->n_input++] = qd_value_info_new("x", xdt, dx, 2);
	g->input[g->n_input++] = qd_value_info_new("ids", QD_DT_INT64, di, 1);
	/* an initializer listed as an input (IR < 4) is not a graph input to bind */
	g->input[g->n_input++] = qd_value_info_new("w", QD_DT_FLOAT, dx, 2);
	float w = 1;
	int64_t one = 1;
	qd_graph_add_initializer(g, qd_tensor_new("w", QD_DT_FLOAT, &one, 1, &w, 4));
	return m;
}

static void test_test_data(void)
{
	write_pb("td/m/test_data_set_0/input_0.pb", "x", QD_DT_FLOAT, 2, 0);
	write_pb("td/m/test_data_set_0/input_1.pb", NULL, QD_DT_INT64, 2, 100);
	write_pb("td/m/test_data_set_0/output_0.pb", NULL, QD_DT_FLOAT, 2, 50);
	write_pb("td/m/test_data_set_1/input_0.pb", "x", QD_DT_FLOAT, 3, 6);
	write_pb("td/m/test_data_set_1/input_1.pb", NULL, QD_DT_INT64, 3, 102);
	write_pb("td/m/test_data_set_1/output_0.pb", NULL, QD_DT_FLOAT, 3, 56);
	/* test_data_set_10 sorts after 2, not after 1 */
	write_pb("td/m/test_data_set_10/input_0.pb", "x", QD_DT_FLOAT, 1, 100);
	write_pb("td/m/test_data_set_10/input_1.pb", NULL, QD_DT_INT64, 1, 900);
	write_pb("td/m/test_data_set_10/output_0.pb", NULL, QD_DT_FLOAT, 1, 0);
	write_pb("td/m/test_data_set_2/input_0.pb", "x", QD_DT_FLOAT, 1, 15);
	write_pb("td/m/test_data_set_2/input_1.pb", NULL, QD_DT_INT64, 1, 105);
	write_pb("td/m/test_data_set_2/output_0.pb", NULL, QD_DT_FLOAT, 1, 0);
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "cd %s/td && echo fake > m/model.onnx && tar cf ../ustar.tar --format=ustar m && "
		 "tar cf ../gnu.tar --format=gnu m && tar cf ../pax.tar --format=pax m && "
		 "head -c 3000 ../ustar.tar > ../trunc.tar && gzip -c ../ustar.tar > ../gz.tar.gz", tmp);
	CHECK_EQ_INT(system(cmd), 0);
	const char *srcs[] = { "td/m", "ustar.tar", "gnu.tar", "pax.tar", "td/m/test_data_set_1" };
	for (size_t k = 0; k < QD_ARRAY_LEN(srcs); k++) {
		struct qd_dataset *ds = NULL;
		struct qd_err err;
		CHECKF(load(srcs[k], NULL, &ds, &err) == 0, "%s: %s", srcs[k], err.msg);
		if (!ds)
			continue;
		bool one = k == 4;
		CHECK_STR(ds->format, "onnx_test_data");
		CHECK_EQ_INT(ds->n_arrays, 3);
		CHECK_EQ_INT(ds->n_samples, one ? 3 : 7);
		const struct qd_tensor *x = qd_dataset_array(ds, "x"), *i1 = qd_dataset_array(ds, "input_1");
		CHECK(qd_dataset_array(ds, "output_0") != NULL);
		CHECK(x && x->dims[0] == (one ? 3 : 7) && x->dims[1] == 3);
		if (x && !one) /* rows in folder order 0, 1, 2, 10 */
			CHECK(((float *)x->data)[0] == 0 && ((float *)x->data)[6] == 6 &&
			      ((float *)x->data)[15] == 15 && ((float *)x->data)[18] == 100);
		CHECK(i1 && i1->dtype == QD_DT_INT64);
		/* bind: input_1 becomes the model's second input 'ids' */
		struct qd_model *m = model2(QD_DT_FLOAT, 3, -1);
		CHECKF(qd_dataset_bind(ds, m, &err) == 0, "bind: %s", err.msg);
		CHECK(qd_dataset_array(ds, "ids") && !qd_dataset_array(ds, "input_1"));
		qd_model_free(m);
		qd_dataset_free(ds);
	}
	struct qd_dataset *ds = NULL;
	struct qd_err err;
	int trc = load("trunc.tar", NULL, &ds, &err);
	CHECKF(trc == -QD_EPARSE && strstr(err.msg, "truncated"), "trunc.tar: %d %s", trc, err.msg);
	CHECK(load("gz.tar.gz", NULL, &ds, &err) == -QD_EUNSUPPORTED && strstr(err.msg, "gzip"));
	struct qd_dataset_limits small = { .max_array_bytes = 16 };
	CHECK(load("ustar.tar", &small, &ds, &err) == -QD_ETOO_LARGE);
	/* a stray file in a test data folder, a folder missing a file, mismatched dims */
	write_pb("td2/test_data_set_0/input_0.pb", "x", QD_DT_FLOAT, 2, 0);
	write_pb("td2/test_data_set_0/notes.txt", "x", QD_DT_FLOAT, 2, 0);
	CHECK(load("td2", NULL, &ds, &err) == -QD_EINVAL && strstr(err.msg, "notes.txt"));
	write_pb("td3/test_data_set_0/input_0.pb", "x", QD_DT_FLOAT, 2, 0);
	write_pb("td3/test_data_set_0/input_1.pb", NULL, QD_DT_INT64, 2, 0);
	write_pb("td3/test_data_set_1/input_0.pb", "x", QD_DT_FLOAT, 2, 0);
	CHECK(load("td3", NULL, &ds, &err) == -QD_EINVAL && strstr(err.msg, "different files"));
	write_pb("td4/test_data_set_0/input_0.pb", "x", QD_DT_FLOAT, 2, 0);
	write_pb("td4/test_data_set_1/input_0.pb", "x", QD_DT_INT64, 2, 0);
	CHECKF(load("td4", NULL, &ds, &err) == -QD_ESHAPE && strstr(err.msg, "only dim 0"), "%s", err.msg);
	write_pb("td5/test_data_set_0/input_0.pb", "x", QD_DT_FLOAT, 2, 0);
	qd_file_write_atomic(tpath("td5/test_data_set_0/input_1.pb"), "\xff\xff\xff", 3, &err);
	CHECK(load("td5", NULL, &ds, &err) == -QD_EPARSE && strstr(err.msg, "input_1.pb"));
	mkdir(tpath("td6"), 0755);
	CHECK(load("td6", NULL, &ds, &err) == -QD_EINVAL && strstr(err.msg, "no test_data_set"));
}

static void test_bind(void)
{
	struct qd_tensor t[3];
	int64_t dx[2] = { 4, 3 }, di[1] = { 4 }, dl[1] = { 5 };
	qd_tensor_alloc(&t[0], "x", QD_DT_FLOAT, 2, dx);
	qd_tensor_alloc(&t[1], "ids", QD_DT_INT64, 1, di);
	qd_tensor_alloc(&t[2], "label", QD_DT_INT64, 1, dl);
	struct qd_err err = { 0 };
	CHECK_EQ_INT(qd_npz_write(tpath("b.npz"), t, 3, &err), 0);
	CHECK_EQ_INT(qd_npz_write(tpath("b2.npz"), t, 1, &err), 0);
	di[0] = 3;
	qd_tensor_release(&t[1]);
	qd_tensor_alloc(&t[1], "ids", QD_DT_INT64, 1, di);
	CHECK_EQ_INT(qd_npz_write(tpath("b3.npz"), t, 2, &err), 0);
	struct { const char *file; int xdt; int64_t xd1, batch; int rc; const char *field, *msg; } c[] = {
		{ "b.npz", QD_DT_FLOAT, 3, -1, 0, "", "" },
		{ "b.npz", QD_DT_FLOAT, 3, 2, 0, "", "" },         /* fixed batch 2 divides 4 */
		{ "b.npz", QD_DT_FLOAT, 3, 3, -QD_ESHAPE, "dataset.arrays.x", "fixed batch size 3" },
		{ "b.npz", QD_DT_INT64, 3, -1, -QD_EINVAL, "dataset.arrays.x", "dtype float32, model input 'x' wants int64" },
		{ "b.npz", QD_DT_FLOAT, 5, -1, -QD_ESHAPE, "dataset.arrays.x", "dim 1 is 3, not 5" },
		{ "b2.npz", QD_DT_FLOAT, 3, -1, -QD_EINVAL, "dataset.arrays.ids", "no array for model input 'ids'" },
		{ "b3.npz", QD_DT_FLOAT, 3, -1, -QD_ESHAPE, "dataset.arrays.ids", "3 samples" },
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(c); i++) {
		struct qd_dataset *ds = NULL;
		CHECK_EQ_INT(load(c[i].file, NULL, &ds, &err), 0);
		if (!ds)
			continue;
		struct qd_model *m = model2(c[i].xdt, c[i].xd1, c[i].batch);
		memset(&err, 0, sizeof err);
		int rc = qd_dataset_bind(ds, m, &err);
		CHECKF(rc == c[i].rc && !strcmp(err.field, c[i].field) && strstr(err.msg, c[i].msg),
		       "case %zu: rc %d field '%s' msg '%s'", i, rc, err.field, err.msg);
		if (!rc)
			CHECK_EQ_INT(ds->n_samples, 4);
		qd_model_free(m);
		qd_dataset_free(ds);
	}
	/* input_N beyond the model's inputs */
	qd_tensor_release(&t[1]);
	qd_tensor_alloc(&t[1], "input_5", QD_DT_INT64, 1, dl);
	CHECK_EQ_INT(qd_npz_write(tpath("b4.npz"), t, 2, &err), 0);
	struct qd_dataset *ds = NULL;
	CHECK_EQ_INT(load("b4.npz", NULL, &ds, &err), 0);
	if (ds) {
		struct qd_model *m = model2(QD_DT_FLOAT, 3, -1);
		CHECK(qd_dataset_bind(ds, m, &err) == -QD_EINVAL && !strcmp(err.field, "dataset.arrays.input_5") &&
		      strstr(err.msg, "only 2 inputs"));
		qd_model_free(m);
		qd_dataset_free(ds);
	}
	for (int i = 0; i < 3; i++)
		qd_tensor_release(&t[i]);
}

static json_t *J(const char *s)
{
	json_error_t je;
	json_t *j = json_loads(s, 0, &je);
	if (!j)
		fprintf(stderr, "bad test json: %s: %s\n", s, je.text);
	return j;
}

static void test_data_config(void)
{
	struct { const char *wf; int rc; const char *field, *msg; } c[] = {
		{ "{\"data_configs\": {\"calib\": {\"dataset\": \"dst_1\", \"type\": \"HuggingfaceContainer\","
		  " \"dataloader_config\": {\"batch_size\": 4}}},"
		  " \"passes\": {\"q\": {\"type\": \"OnnxStaticQuantization\", \"data_config\": \"calib\"}}}", 0, "", "" },
		{ "{\"data_configs\": [{\"name\": \"calib\", \"dataset\": \"dst_1\", \"batch_size\": 2}],"
		  " \"passes\": {\"q\": {\"type\": \"OnnxStaticQuantization\", \"config\": {\"data_config\": \"calib\"}}}}", 0, "", "" },
		{ "{\"passes\": {\"q\": {\"type\": \"X\", \"data_config\": {\"dataset\": \"dst_2\"}}}}", 0, "", "" },
		{ "{\"passes\": [{\"name\": \"q\", \"type\": \"X\", \"data_config\": null}]}", 0, "", "" },
		{ "{\"data_configs\": {\"calib\": {\"dataset\": \"dst_1\"}},"
		  " \"passes\": {\"q\": {\"type\": \"X\", \"data_config\": \"calbi\"}}}", -QD_EINVAL,
		  "passes.q.data_config", "unknown data config 'calbi' (data_configs has 'calib')" },
		{ "{\"data_configs\": [{\"name\": \"calib\", \"dataset\": \"dst_1\"}],"
		  " \"passes\": [{\"name\": \"s\", \"type\": \"X\", \"data_config\": \"nope\"}]}", -QD_EINVAL,
		  "passes.s.data_config", "unknown data config 'nope'" },
		{ "{\"data_configs\": {\"calib\": {\"dataset\": \"dst_1\"}}, \"passes\": {},"
		  " \"evaluator\": {\"metrics\": [{\"name\": \"acc\", \"data_config\": \"eval\"}]}}", -QD_EINVAL,
		  "evaluator.metrics.0.data_config", "unknown data config 'eval'" },
		{ "{\"data_configs\": {\"calib\": {\"dataset\": \"dst_1\", \"user_script\": \"u.py\"}}}", -QD_EUNSUPPORTED,
		  "data_configs.calib.user_script", "uploading a dataset" },
		{ "{\"data_configs\": [{\"name\": \"c\", \"dataset\": \"d\", \"load_dataset_config\": {}}]}", -QD_EUNSUPPORTED,
		  "data_configs.c.load_dataset_config", "POST /v1/datasets" },
		{ "{\"data_configs\": {\"c\": {\"dataset\": \"d\", \"pre_process_data_config\": {}}}}", -QD_EUNSUPPORTED,
		  "data_configs.c.pre_process_data_config", "not supported" },
		{ "{\"data_configs\": {\"c\": {\"dataset\": \"d\", \"bogus\": 1}}}", -QD_EINVAL,
		  "data_configs.c.bogus", "unknown key 'bogus'" },
		{ "{\"data_configs\": {\"c\": {\"type\": \"DataContainer\"}}}", -QD_EINVAL,
		  "data_configs.c.dataset", "has no \"dataset\"" },
		{ "{\"data_configs\": {\"c\": {\"dataset\": \"d\", \"type\": \"MyContainer\"}}}", -QD_EINVAL,
		  "data_configs.c.type", "unknown \"type\" 'MyContainer'" },
		{ "{\"data_configs\": {\"c\": {\"dataset\": \"d\", \"dataloader_config\": {\"shuffle\": true}}}}", -QD_EINVAL,
		  "data_configs.c.dataloader_config.shuffle", "'shuffle' is not supported" },
		{ "{\"data_configs\": {\"c\": {\"dataset\": \"d\", \"batch_size\": 0}}}", -QD_EINVAL,
		  "data_configs.c.batch_size", "batch_size" },
		{ "{\"data_configs\": {\"c\": {\"name\": \"other\", \"dataset\": \"d\"}}}", -QD_EINVAL,
		  "data_configs.c.name", "the name is the key" },
		{ "{\"data_configs\": [{\"dataset\": \"d\"}]}", -QD_EINVAL, "data_configs.0", "no \"name\"" },
		{ "{\"data_configs\": [{\"name\": \"a\", \"dataset\": \"d\"}, {\"name\": \"a\", \"dataset\": \"e\"}]}",
		  -QD_EINVAL, "data_configs.a", "twice" },
		{ "{\"data_configs\": 5}", -QD_EINVAL, "data_configs", "must be an object" },
		{ "{\"passes\": {\"q\": {\"type\": \"X\", \"data_config\": {\"dataset\": \"d\", \"script_dir\": \".\"}}}}",
		  -QD_EUNSUPPORTED, "passes.q.data_config.script_dir", "user scripts" },
		{ "{\"passes\": {\"q\": {\"type\": \"X\", \"data_config\": 7}}}", -QD_EINVAL, "passes.q.data_config", "name of a data config" },
	};
	for (size_t i = 0; i < QD_ARRAY_LEN(c); i++) {
		json_t *wf = J(c[i].wf);
		struct qd_err err = { 0 };
		int rc = qd_data_configs_validate(wf, &err);
		CHECKF(rc == c[i].rc && !strcmp(err.field, c[i].field) && strstr(err.msg, c[i].msg),
		       "case %zu: rc %d field '%s' msg '%s'", i, rc, err.field, err.msg);
		json_decref(wf);
	}
	/* resolve, refs, bindings, notes */
	json_t *wf = J("{\"data_configs\": {\"calib\": {\"dataset\": \"dst_1\", \"type\": \"HuggingfaceContainer\","
		       " \"dataloader_config\": {\"batch_size\": 4}}, \"unused\": {\"dataset\": \"dst_1\"}},"
		       " \"passes\": {\"q\": {\"type\": \"X\", \"data_config\": \"calib\"},"
		       " \"r\": {\"type\": \"X\", \"data_config\": {\"name\": \"in\", \"dataset\": \"dst_2\"}}}}");
	json_t *cfg = NULL;
	struct qd_err err = { 0 };
	json_t *ref = json_string("calib");
	CHECK_EQ_INT(qd_data_config_resolve(wf, ref, "passes.q.data_config", &cfg, &err), 0);
	json_decref(ref);
	CHECK(cfg && !strcmp(json_string_value(json_object_get(cfg, "dataset")), "dst_1") &&
	      json_integer_value(json_object_get(cfg, "batch_size")) == 4 &&
	      !strcmp(json_string_value(json_object_get(cfg, "name")), "calib"));
	json_decref(cfg);
	json_t *inl = json_object_get(json_object_get(json_object_get(wf, "passes"), "r"), "data_config");
	CHECK_EQ_INT(qd_data_config_resolve(wf, inl, "passes.r.data_config", &cfg, &err), 0);
	CHECK(cfg && json_integer_value(json_object_get(cfg, "batch_size")) == 1 &&
	      !strcmp(json_string_value(json_object_get(cfg, "name")), "in"));
	json_decref(cfg);
	json_t *nope = json_string("nope");
	CHECK(qd_data_config_resolve(wf, nope, "passes.q.data_config", &cfg, &err) == -QD_EINVAL &&
	      !strcmp(err.field, "passes.q.data_config"));
	json_decref(nope);
	json_t *refs = qd_workflow_dataset_refs(wf);
	CHECK(json_array_size(refs) == 2 && !strcmp(json_string_value(json_array_get(refs, 0)), "dst_1") &&
	      !strcmp(json_string_value(json_array_get(refs, 1)), "dst_2"));
	json_decref(refs);
	json_t *b = qd_workflow_dataset_bindings(wf);
	CHECK(json_array_size(b) == 3);
	CHECK_STR(json_string_value(json_object_get(json_array_get(b, 0), "field")), "data_configs.calib.dataset");
	CHECK_STR(json_string_value(json_object_get(json_array_get(b, 2), "field")), "passes.r.data_config.dataset");
	json_decref(b);
	json_t *notes = qd_data_configs_notes(wf);
	char *txt = json_dumps(notes, 0);
	CHECKF(json_array_size(notes) == 2 && strstr(txt, "informational") && strstr(txt, "'unused' is not used"), "%s", txt);
	free(txt);
	json_decref(notes);
	json_decref(wf);
}

int main(void)
{
	if (!mkdtemp(tmp))
		return 1;
	have_numpy = system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0;
	test_npz_numpy();
	test_npz_written();
	test_test_data();
	test_bind();
	test_data_config();
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
	if (!getenv("QD_TEST_KEEP") && system(cmd)) {}
	return qd_test_done("test_dataset");
}
