/* Engine unit tests: running small graphs built in memory, load-time rejection naming the
 * node, clear errors for malformed inputs (names, dtypes, ranks, shapes), hook, memory
 * plan and peak bytes, cancel, npz round trips (stored and deflated) and malformed npz. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <pthread.h>
#include "qd_test.h"
#include "engine/engine.h"

static void add_io(Onnx__ValueInfoProto ***v, size_t *n, Onnx__ValueInfoProto *vi)
{
	*v = realloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = vi;
}

static void add_node(struct qd_model *m, const char *op, const char *name, const char *const *in,
		     size_t nin, const char *const *out, size_t nout)
{
	qd_graph_add_node(m->proto->graph, qd_node_new(op, NULL, name, in, nin, out, nout));
}

static Onnx__NodeProto *last_node(struct qd_model *m)
{
	return m->proto->graph->node[m->proto->graph->n_node - 1];
}

static void tensor_f32(struct qd_tensor *t, const char *name, int nd, const int64_t *dims, float start)
{
	qd_tensor_alloc(t, name, QD_DT_FLOAT, nd, dims);
	for (int64_t i = 0; i < qd_tensor_count(t); i++) ((float *)t->data)[i] = start + (float)i;
}

/* y = Relu(a + b) with a [2,3] and b [3] (declared shapes), opset 13 */
static struct qd_model *model_add_relu(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t da[2] = { 2, 3 }, db[1] = { 3 }, dy[2] = { -1, 3 };
	add_io(&g->input, &g->n_input, qd_value_info_new("a", QD_DT_FLOAT, da, 2));
	add_io(&g->input, &g->n_input, qd_value_info_new("b", QD_DT_FLOAT, db, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, dy, 2));
	const char *i1[] = { "a", "b" }, *o1[] = { "s" }, *i2[] = { "s" }, *o2[] = { "y" };
	add_node(m, "Add", "add0", i1, 2, o1, 1);
	add_node(m, "Relu", "relu0", i2, 1, o2, 1);
	return m;
}

struct hook_log { int calls; char names[8][32]; };
static void hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct hook_log *h = ud;
	if (h->calls < 8) snprintf(h->names[h->calls], 32, "%s", t->name ? t->name : "?");
	h->calls++;
	(void)node;
}

static void test_run_basic(void)
{
	struct qd_model *m = model_add_relu();
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	CHECK_EQ_INT(qd_engine_n_inputs(e), 2);
	CHECK_STR(qd_engine_input(e, 1)->name, "b");
	CHECK_STR(qd_engine_output(e, 0)->name, "y");
	struct hook_log h = {0};
	qd_engine_set_hook(e, hook, &h);
	struct qd_tensor in[2], *out = NULL;
	size_t nout = 0;
	int64_t da[2] = { 2, 3 }, db[1] = { 3 };
	tensor_f32(&in[0], "a", 2, da, -3);  /* -3 -2 -1 0 1 2 */
	tensor_f32(&in[1], "b", 1, db, 0);   /*  0  1  2 */
	CHECK_EQ_INT(qd_engine_run(e, in, 2, &out, &nout, NULL, &err), 0);
	CHECK_EQ_INT(nout, 1);
	if (nout == 1) {
		const float want[6] = { 0, 0, 1, 0, 2, 4 };
		CHECK_EQ_INT(out[0].ndim, 2);
		CHECK_EQ_INT(out[0].dims[1], 3);
		CHECK(!memcmp(out[0].data, want, sizeof(want)));
		CHECK_STR(out[0].name, "y");
	}
	CHECK_EQ_INT(h.calls, 2);
	CHECK_STR(h.names[0], "s");
	CHECK_STR(h.names[1], "y");
	CHECK(qd_engine_peak_bytes(e) >= 2 * 24);
	qd_tensors_release(out, nout);

	/* unknown input name */
	free(in[1].name);
	in[1].name = strdup("B");
	CHECK(qd_engine_run(e, in, 2, &out, &nout, NULL, &err) == -QD_EINVAL);
	CHECK(strstr(err.msg, "unknown input 'B'") != NULL);
	CHECK(strstr(err.msg, "'a', 'b'") != NULL);
	/* missing input */
	CHECK(qd_engine_run(e, in, 1, &out, &nout, NULL, &err) == -QD_EINVAL);
	CHECK(strstr(err.msg, "missing input 'b'") != NULL);
	free(in[1].name);
	in[1].name = strdup("b");
	/* wrong dtype */
	struct qd_tensor bi;
	int64_t d3[1] = { 3 };
	qd_tensor_alloc(&bi, "b", QD_DT_INT64, 1, d3);
	struct qd_tensor in2[2] = { in[0], bi };
	CHECK(qd_engine_run(e, in2, 2, &out, &nout, NULL, &err) == -QD_EINVAL);
	CHECK(strstr(err.msg, "dtype int64") != NULL && strstr(err.msg, "float32") != NULL);
	CHECK_STR(err.field, "b");
	qd_tensor_release(&bi);
	/* wrong rank */
	struct qd_tensor br;
	int64_t d13[2] = { 1, 3 };
	tensor_f32(&br, "b", 2, d13, 0);
	in2[1] = br;
	CHECK(qd_engine_run(e, in2, 2, &out, &nout, NULL, &err) == -QD_EINVAL);
	CHECK(strstr(err.msg, "rank 2") != NULL);
	qd_tensor_release(&br);
	/* wrong static dim */
	struct qd_tensor bd;
	int64_t d4[1] = { 4 };
	tensor_f32(&bd, "b", 1, d4, 0);
	in2[1] = bd;
	CHECK(qd_engine_run(e, in2, 2, &out, &nout, NULL, &err) == -QD_EINVAL);
	CHECK(strstr(err.msg, "shape [4]") != NULL);
	qd_tensor_release(&bd);
	/* inconsistent nbytes */
	in2[1] = in[1];
	in2[1].nbytes = 4;
	CHECK(qd_engine_run(e, in2, 2, &out, &nout, NULL, &err) == -QD_EINVAL);
	/* cancel before the first node */
	volatile int cancel = 1;
	CHECK(qd_engine_run(e, in, 2, &out, &nout, &cancel, &err) == -QD_ECANCELED);
	CHECK(out == NULL && nout == 0);
	/* still usable afterwards */
	CHECK_EQ_INT(qd_engine_run(e, in, 2, &out, &nout, NULL, &err), 0);
	qd_tensors_release(out, nout);
	qd_tensor_release(&in[0]);
	qd_tensor_release(&in[1]);
	qd_engine_free(e);
	qd_model_free(m);
}

/* Shapes that cannot broadcast: run-time error naming the node, no crash. */
static void test_bad_broadcast(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("a", QD_DT_FLOAT, NULL, 0));
	add_io(&g->input, &g->n_input, qd_value_info_new("b", QD_DT_FLOAT, NULL, 0));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	for (int i = 0; i < 2; i++) { /* no declared shape */
		onnx__tensor_shape_proto__free_unpacked(g->input[i]->type->tensor_type->shape, NULL);
		g->input[i]->type->tensor_type->shape = NULL;
	}
	const char *i1[] = { "a", "b" }, *o1[] = { "y" };
	add_node(m, "Mul", "mul_bad", i1, 2, o1, 1);
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	struct qd_tensor in[2], *out = NULL;
	size_t nout = 0;
	int64_t da[2] = { 2, 3 }, db[1] = { 4 };
	tensor_f32(&in[0], "a", 2, da, 0);
	tensor_f32(&in[1], "b", 1, db, 0);
	CHECK(qd_engine_run(e, in, 2, &out, &nout, NULL, &err) == -QD_ESHAPE);
	CHECK(strstr(err.msg, "mul_bad") != NULL);
	CHECK(strstr(err.msg, "[2,3] and [4]") != NULL);
	CHECK_STR(err.field, "mul_bad");
	/* dtype mismatch between the two inputs */
	qd_tensor_release(&in[1]);
	int64_t d3[1] = { 3 };
	qd_tensor_alloc(&in[1], "b", QD_DT_DOUBLE, 1, d3);
	CHECK(qd_engine_run(e, in, 2, &out, &nout, NULL, &err) < 0);
	/* a run after errors still works and nothing leaked into the next run */
	qd_tensor_release(&in[1]);
	tensor_f32(&in[1], "b", 1, d3, 1);
	CHECK_EQ_INT(qd_engine_run(e, in, 2, &out, &nout, NULL, &err), 0);
	if (nout == 1) CHECK_NEAR(((float *)out[0].data)[5], 5 * 3, 0);
	qd_tensors_release(out, nout);
	qd_tensor_release(&in[0]);
	qd_tensor_release(&in[1]);
	qd_engine_free(e);
	qd_model_free(m);
}

/* Load-time rejection: unknown op, opset out of range, unsupported attribute, dtype. */
static void test_load_errors(void)
{
	struct qd_err err = {0};
	struct qd_engine *e = NULL;
	const char *i1[] = { "x" }, *o1[] = { "y" };
	int64_t d[1] = { 4 };

	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, d, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, d, 1));
	add_node(m, "FancyOp", "fancy1", i1, 1, o1, 1);
	CHECK(qd_engine_load(m, NULL, &e, &err) == -QD_EUNSUPPORTED);
	CHECK(strstr(err.msg, "fancy1") && strstr(err.msg, "'FancyOp'"));
	CHECK_STR(err.field, "fancy1");
	CHECK(e == NULL);
	qd_model_free(m);

	m = qd_model_new(8, 13);
	g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, d, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, d, 1));
	add_node(m, "Pad", "pad1", i1, 1, o1, 1);
	qd_node_set_attr_string(last_node(m), "mode", "wrap");
	CHECK(qd_engine_load(m, NULL, &e, &err) == -QD_EUNSUPPORTED);
	CHECK(strstr(err.msg, "pad1") && strstr(err.msg, "'wrap'"));
	qd_model_free(m);

	m = qd_model_new(8, 5);   /* HardSwish needs opset 14 */
	g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, d, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, d, 1));
	add_node(m, "HardSwish", "hs", i1, 1, o1, 1);
	CHECK(qd_engine_load(m, NULL, &e, &err) == -QD_EUNSUPPORTED);
	CHECK(strstr(err.msg, "hs") && strstr(err.msg, "opset 5"));
	qd_model_free(m);

	m = qd_model_new(8, 13);  /* Sqrt on int64 */
	g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_INT64, d, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_INT64, d, 1));
	add_node(m, "Sqrt", "sq", i1, 1, o1, 1);
	CHECK(qd_engine_load(m, NULL, &e, &err) == -QD_EUNSUPPORTED);
	CHECK(strstr(err.msg, "sq") && strstr(err.msg, "int64"));
	qd_model_free(m);

	m = qd_model_new(8, 13);  /* input produced by nobody */
	g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, d, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, d, 1));
	const char *iz[] = { "zzz" };
	add_node(m, "Relu", "r", iz, 1, o1, 1);
	CHECK(qd_engine_load(m, NULL, &e, &err) == -QD_EMODEL);
	CHECK(strstr(err.msg, "'zzz'") != NULL);
	qd_model_free(m);
}

/* A chain of 12 Relu on a 1 MiB tensor: the plan frees each intermediate after its
 * consumer, so peak stays near input + 2 live tensors, not 12. */
static void test_memory_plan(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t d[1] = { 262144 };
	add_io(&g->input, &g->n_input, qd_value_info_new("t0", QD_DT_FLOAT, d, 1));
	add_io(&g->output, &g->n_output, qd_value_info_new("t12", QD_DT_FLOAT, d, 1));
	for (int i = 0; i < 12; i++) {
		char a[8], b[8];
		snprintf(a, sizeof(a), "t%d", i);
		snprintf(b, sizeof(b), "t%d", i + 1);
		const char *in[] = { a }, *out[] = { b };
		add_node(m, "Relu", NULL, in, 1, out, 1);
	}
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	struct qd_tensor x, *out = NULL;
	size_t nout = 0;
	tensor_f32(&x, "t0", 1, d, -1000);
	CHECK_EQ_INT(qd_engine_run(e, &x, 1, &out, &nout, NULL, &err), 0);
	size_t peak = qd_engine_peak_bytes(e);
	CHECKF(peak >= 2 * 1048576 && peak <= 3 * 1048576, "peak %zu", peak);
	qd_tensors_release(out, nout);
	qd_tensor_release(&x);
	qd_engine_free(e);
	qd_model_free(m);
}

/* ---- npz ---- */
static void test_npz_roundtrip(void)
{
	char path[] = "/tmp/qd_test_npz_XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	struct qd_err err = {0};
	int dts[] = { QD_DT_FLOAT, QD_DT_DOUBLE, QD_DT_INT8, QD_DT_UINT8, QD_DT_INT16, QD_DT_UINT16,
		      QD_DT_INT32, QD_DT_UINT32, QD_DT_INT64, QD_DT_UINT64, QD_DT_BOOL, QD_DT_FLOAT16 };
	size_t n = QD_ARRAY_LEN(dts) + 1;
	struct qd_tensor t[16];
	for (size_t i = 0; i < QD_ARRAY_LEN(dts); i++) {
		int64_t dims[3] = { 2, (int64_t)i + 1, 3 };
		char nm[16];
		snprintf(nm, sizeof(nm), "arr%zu", i);
		qd_tensor_alloc(&t[i], nm, dts[i], (int)(i % 4), dims);
		for (size_t k = 0; k < t[i].nbytes; k++) ((uint8_t *)t[i].data)[k] = (uint8_t)(k * 7 + i);
		if (dts[i] == QD_DT_BOOL) for (size_t k = 0; k < t[i].nbytes; k++) ((uint8_t *)t[i].data)[k] &= 1;
	}
	int64_t z[2] = { 0, 5 };
	qd_tensor_alloc(&t[QD_ARRAY_LEN(dts)], "empty", QD_DT_FLOAT, 2, z);
	CHECK_EQ_INT(qd_npz_write(path, t, n, &err), 0);
	struct qd_tensor *r = NULL;
	size_t nr = 0;
	CHECK_EQ_INT(qd_npz_read(path, &r, &nr, &err), 0);
	CHECK_EQ_INT(nr, n);
	for (size_t i = 0; i < nr && i < n; i++) {
		CHECK_STR(r[i].name, t[i].name);
		CHECK_EQ_INT(r[i].dtype, t[i].dtype);
		CHECK_EQ_INT(r[i].ndim, t[i].ndim);
		CHECK(!memcmp(r[i].dims, t[i].dims, t[i].ndim * sizeof(int64_t)));
		CHECK(r[i].nbytes == t[i].nbytes && !memcmp(r[i].data, t[i].data, t[i].nbytes));
	}
	qd_tensors_release(r, nr);
	/* truncated copies must fail cleanly */
	struct qd_buf b = {0};
	CHECK_EQ_INT(qd_file_read(path, &b, &err), 0);
	for (size_t cut = 0; cut < b.len; cut += b.len / 37 + 1) {
		qd_file_write_atomic(path, b.data, cut, &err);
		r = NULL;
		nr = 0;
		CHECK(qd_npz_read(path, &r, &nr, &err) < 0);
		CHECK(r == NULL);
	}
	/* corrupted header bytes: any result, never a crash */
	for (size_t k = 0; k < b.len; k += 13) {
		uint8_t save = b.data[k];
		b.data[k] ^= 0x5a;
		qd_file_write_atomic(path, b.data, b.len, &err);
		if (qd_npz_read(path, &r, &nr, &err) == 0) qd_tensors_release(r, nr);
		b.data[k] = save;
	}
	qd_buf_free(&b);
	for (size_t i = 0; i < n; i++) qd_tensor_release(&t[i]);
	unlink(path);
}

static void put16(uint8_t *p, unsigned v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, unsigned v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); }

/* A deflated .npz (as np.savez_compressed writes), built here with zlib. */
static void test_npz_deflated(void)
{
	const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
	uint8_t npy[256];
	size_t hl = sizeof(hdr) - 1, pad = (64 - (10 + hl + 1) % 64) % 64;
	memcpy(npy, "\x93NUMPY\x01\x00", 8);
	put16(npy + 8, (unsigned)(hl + pad + 1));
	memcpy(npy + 10, hdr, hl);
	memset(npy + 10 + hl, ' ', pad);
	npy[10 + hl + pad] = '\n';
	size_t nl = 10 + hl + pad + 1;
	float v[6] = { 1.5f, -2, 3, 4, 5, 6.25f };
	memcpy(npy + nl, v, sizeof(v));
	nl += sizeof(v);
	uint8_t comp[512];
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
	zs.next_in = npy; zs.avail_in = (uInt)nl; zs.next_out = comp; zs.avail_out = sizeof(comp);
	deflate(&zs, Z_FINISH);
	size_t cl = sizeof(comp) - zs.avail_out;
	deflateEnd(&zs);
	uint32_t crc = (uint32_t)crc32(0, npy, (uInt)nl);
	uint8_t zip[1024];
	size_t o = 0;
	const char *fn = "x.npy";
	put32(zip, 0x04034b50); put16(zip + 4, 20); put16(zip + 6, 0); put16(zip + 8, 8); put32(zip + 10, 0);
	put32(zip + 14, crc); put32(zip + 18, (unsigned)cl); put32(zip + 22, (unsigned)nl); put16(zip + 26, 5); put16(zip + 28, 0);
	memcpy(zip + 30, fn, 5); o = 35;
	memcpy(zip + o, comp, cl); o += cl;
	size_t cdo = o;
	memset(zip + o, 0, 46);
	put32(zip + o, 0x02014b50); put16(zip + o + 4, 20); put16(zip + o + 6, 20); put16(zip + o + 10, 8);
	put32(zip + o + 16, crc); put32(zip + o + 20, (unsigned)cl); put32(zip + o + 24, (unsigned)nl); put16(zip + o + 28, 5);
	put32(zip + o + 42, 0);
	memcpy(zip + o + 46, fn, 5); o += 51;
	memset(zip + o, 0, 22);
	put32(zip + o, 0x06054b50); put16(zip + o + 8, 1); put16(zip + o + 10, 1); put32(zip + o + 12, (unsigned)(o - cdo));
	put32(zip + o + 16, (unsigned)cdo); o += 22;
	char path[] = "/tmp/qd_test_npzd_XXXXXX";
	int fd = mkstemp(path);
	CHECK(write(fd, zip, o) == (ssize_t)o);
	close(fd);
	struct qd_err err = {0};
	struct qd_tensor *r = NULL;
	size_t nr = 0;
	CHECK_EQ_INT(qd_npz_read(path, &r, &nr, &err), 0);
	CHECK_EQ_INT(nr, 1);
	if (nr == 1) {
		CHECK_STR(r[0].name, "x");
		CHECK_EQ_INT(r[0].ndim, 2);
		CHECK_EQ_INT(r[0].dims[1], 3);
		CHECK(!memcmp(r[0].data, v, sizeof(v)));
	}
	qd_tensors_release(r, nr);
	unlink(path);
	/* not a zip */
	CHECK(qd_npz_read("/etc/hostname", &r, &nr, &err) < 0);
	CHECK(qd_npz_read("/nonexistent/x.npz", &r, &nr, &err) < 0);
}

/* TensorProto conversion: typed fields and raw_data, size mismatch. */
static void test_from_proto(void)
{
	struct qd_err err = {0};
	int64_t d[2] = { 2, 2 };
	int32_t v[4] = { 1, -2, 3, 4 };
	Onnx__TensorProto *p = qd_tensor_new("w", QD_DT_INT32, d, 2, v, sizeof(v));
	struct qd_tensor t;
	CHECK_EQ_INT(qd_tensor_from_proto(p, &t, &err), 0);
	CHECK(t.nbytes == 16 && !memcmp(t.data, v, 16));
	CHECK_STR(t.name, "w");
	qd_tensor_release(&t);
	p->raw_data.len = 12;   /* wrong size */
	CHECK(qd_tensor_from_proto(p, &t, &err) == -QD_EMODEL);
	CHECK(strstr(err.msg, "'w'") != NULL);
	qd_tensor_free(p);
}

/* Engines share nothing mutable: two threads, each with its own engine on the same model,
 * many runs, identical results. */
struct thr { struct qd_model *m; float sum; int rc; };
static void *thr_run(void *p)
{
	struct thr *t = p;
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	struct qd_engine_opts o = { .threads = 1 };
	if ((t->rc = qd_engine_load(t->m, &o, &e, &err))) return NULL;
	struct qd_tensor in[2];
	int64_t da[2] = { 2, 3 }, db[1] = { 3 };
	tensor_f32(&in[0], "a", 2, da, -3);
	tensor_f32(&in[1], "b", 1, db, 0);
	t->sum = 0;
	for (int r = 0; r < 200 && !t->rc; r++) {
		struct qd_tensor *out = NULL;
		size_t n = 0;
		if ((t->rc = qd_engine_run(e, in, 2, &out, &n, NULL, &err))) break;
		for (int k = 0; k < 6; k++) t->sum += ((float *)out[0].data)[k];
		qd_tensors_release(out, n);
	}
	qd_tensor_release(&in[0]);
	qd_tensor_release(&in[1]);
	qd_engine_free(e);
	return NULL;
}

static void test_threads(void)
{
	struct qd_model *m = model_add_relu();
	struct thr t[2] = { { m, 0, 0 }, { m, 0, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, thr_run, &t[i]);
	for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
	CHECK(t[0].rc == 0 && t[1].rc == 0);
	CHECK_NEAR(t[0].sum, 200 * 7.0, 0);
	CHECK_NEAR(t[1].sum, 200 * 7.0, 0);
	qd_model_free(m);
}

int main(void)
{
	test_threads();
	test_run_basic();
	test_bad_broadcast();
	test_load_errors();
	test_memory_plan();
	test_npz_roundtrip();
	test_npz_deflated();
	test_from_proto();
	return qd_test_done("test_engine");
}
