/* Engine robustness: every op of the table (engine/ops.def, ops_quant.def) is run with no
 * inputs, with 1..5 inputs of every kind of hostile value (empty, scalar, huge, negative,
 * wrong dtype) and with hostile attributes (axis 10^9, zero strides, 10^9 kernels and pads,
 * ...): each run succeeds or fails with an error message, never crashes, never reports an
 * internal error. Also the resource limits: tensor and memory limits (QD_ELIMIT, checked
 * before allocating), the wall-time limit (QD_ETIMEOUT) on an endless Loop, their defaults,
 * nodes without outputs and cycles at load, and a 10^5-input model. */
#include <stdlib.h>
#include <string.h>
#include "qd_test.h"
#include "engine/engine_internal.h"

static void add_io(Onnx__ValueInfoProto ***v, size_t *n, Onnx__ValueInfoProto *vi)
{
	*v = realloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = vi;
}

/* input kinds */
enum kind { K_EMPTY, K_SCALAR, K_MAT, K_NCHW, K_I64_HUGE, K_I64_NEG, K_U8, K_BOOL, K_I64_SCALAR, K__COUNT };

static void make_input(enum kind k, const char *name, struct qd_tensor *t)
{
	static const int64_t d0[1] = { 0 }, d23[2] = { 2, 3 }, dn[4] = { 1, 2, 3, 3 }, d2[1] = { 2 }, d4[1] = { 4 };
	switch (k) {
	case K_EMPTY: qd_tensor_alloc(t, name, QD_DT_FLOAT, 1, d0); break;
	case K_SCALAR: qd_tensor_alloc(t, name, QD_DT_FLOAT, 0, NULL); ((float *)t->data)[0] = 3; break;
	case K_MAT:
		qd_tensor_alloc(t, name, QD_DT_FLOAT, 2, d23);
		for (int i = 0; i < 6; i++) ((float *)t->data)[i] = (float)(i - 2);
		break;
	case K_NCHW:
		qd_tensor_alloc(t, name, QD_DT_FLOAT, 4, dn);
		for (int i = 0; i < 18; i++) ((float *)t->data)[i] = (float)i * 0.5f;
		break;
	case K_I64_HUGE:
		qd_tensor_alloc(t, name, QD_DT_INT64, 1, d2);
		((int64_t *)t->data)[0] = INT64_MAX; ((int64_t *)t->data)[1] = 1000000000;
		break;
	case K_I64_NEG:
		qd_tensor_alloc(t, name, QD_DT_INT64, 1, d4);
		for (int i = 0; i < 4; i++) ((int64_t *)t->data)[i] = i & 1 ? INT64_MIN : -1000000000;
		break;
	case K_U8:
		qd_tensor_alloc(t, name, QD_DT_UINT8, 4, dn);
		for (int i = 0; i < 18; i++) ((uint8_t *)t->data)[i] = (uint8_t)(i * 37);
		break;
	case K_BOOL: qd_tensor_alloc(t, name, QD_DT_BOOL, 1, d2); ((uint8_t *)t->data)[0] = 1; break;
	case K_I64_SCALAR: qd_tensor_alloc(t, name, QD_DT_INT64, 0, NULL); ((int64_t *)t->data)[0] = 1000000000; break;
	default: break;
	}
}

/* hostile attribute sets */
static void set_attrs(Onnx__NodeProto *n, int which)
{
	static const int64_t big[4] = { 1000000000, 1000000000, 1000000000, 1000000000 };
	static const int64_t zero[4] = { 0, 0, 0, 0 }, neg[4] = { -1000000000, -7, -1, INT64_MIN };
	static const int64_t huge[4] = { INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX };
	switch (which) {
	case 0: break;
	case 1:
		qd_node_set_attr_int(n, "axis", 1000000000);
		qd_node_set_attr_ints(n, "axes", big, 2);
		qd_node_set_attr_ints(n, "perm", big, 2);
		qd_node_set_attr_int(n, "blocksize", 0);
		qd_node_set_attr_ints(n, "kernel_shape", big, 2);
		qd_node_set_attr_ints(n, "pads", big, 4);
		qd_node_set_attr_ints(n, "strides", zero, 2);
		qd_node_set_attr_int(n, "group", 0);
		qd_node_set_attr_int(n, "k", 1000000000);
		qd_node_set_attr_int(n, "to", 999);
		qd_node_set_attr_int(n, "depth", 1000000000);
		qd_node_set_attr_ints(n, "split", big, 2);
		qd_node_set_attr_int(n, "num_outputs", 0);
		qd_node_set_attr_int(n, "bits", 99);
		qd_node_set_attr_int(n, "block_size", 0);
		qd_node_set_attr_int(n, "num_heads", 0);
		qd_node_set_attr_int(n, "hidden_size", 1000000000);
		break;
	case 2:
		qd_node_set_attr_int(n, "axis", -1000000000);
		qd_node_set_attr_ints(n, "axes", neg, 3);
		qd_node_set_attr_ints(n, "perm", neg, 4);
		qd_node_set_attr_int(n, "blocksize", INT64_MAX);
		qd_node_set_attr_ints(n, "kernel_shape", huge, 2);
		qd_node_set_attr_ints(n, "pads", neg, 4);
		qd_node_set_attr_ints(n, "dilations", huge, 2);
		qd_node_set_attr_ints(n, "strides", huge, 2);
		qd_node_set_attr_int(n, "group", -3);
		qd_node_set_attr_int(n, "k", INT64_MIN);
		qd_node_set_attr_ints(n, "split", neg, 2);
		qd_node_set_attr_ints(n, "output_shape", huge, 2);
		qd_node_set_attr_ints(n, "output_padding", huge, 2);
		qd_node_set_attr_string(n, "mode", "bogus");
		qd_node_set_attr_string(n, "auto_pad", "SAME_UPPER");
		qd_node_set_attr_int(n, "K", 1000000000);
		qd_node_set_attr_int(n, "N", INT64_MAX);
		qd_node_set_attr_int(n, "block_size", 3);
		break;
	}
}

static long n_runs, n_ok, n_err;

/* One model: op with nin inputs of kind k (graph inputs, fed at run time) and nout outputs. */
static void run_case(const struct qd_op *op, int opset, int nin, enum kind k, int attrs, int nout)
{
	struct qd_model *m = qd_model_new(8, opset);
	if (op->domain && *op->domain) qd_model_set_opset(m, op->domain, 1);
	Onnx__GraphProto *g = m->proto->graph;
	const char *in[8], *out[4] = { "y0", "y1", "y2", "y3" };
	static const char *names[8] = { "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7" };
	struct qd_tensor t[8];
	for (int i = 0; i < nin; i++) {
		in[i] = names[i];
		/* inputs after the first: the same kind, or an index-like int64 for kinds that are data */
		enum kind ki = i == 0 || k == K_EMPTY || k == K_I64_HUGE || k == K_I64_NEG ? k :
			       (enum kind)((k + i) % K__COUNT);
		make_input(ki, names[i], &t[i]);
		add_io(&g->input, &g->n_input, qd_value_info_new(names[i], t[i].dtype, NULL, 0));
		/* no declared shape: qd_value_info_new with ndims 0 declares a scalar, so drop it */
		g->input[g->n_input - 1]->type->tensor_type->shape = NULL;
	}
	for (int i = 0; i < nout; i++) add_io(&g->output, &g->n_output, qd_value_info_new(out[i], 0, NULL, 0));
	Onnx__NodeProto *n = qd_node_new(op->op_type, op->domain, "n", in, nin, out, nout);
	set_attrs(n, attrs);
	qd_graph_add_node(g, n);
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	struct qd_engine_opts o = { .threads = 1, .max_tensor_bytes = 16 << 20, .max_memory_bytes = 64 << 20,
				    .max_seconds = 2 };
	int rc = qd_engine_load(m, &o, &e, &err);
	if (rc == 0) {
		struct qd_tensor *res = NULL;
		size_t nres = 0;
		rc = qd_engine_run(e, t, nin, &res, &nres, NULL, &err);
		if (rc == 0) qd_tensors_release(res, nres);
	}
	n_runs++;
	if (rc == 0) n_ok++;
	else {
		n_err++;
		/* an error always says what is wrong, and is never "internal" (our own bug) */
		if (!err.msg[0] || rc == -QD_EINTERNAL || rc >= 0)
			CHECKF(0, "%s (opset %d) nin %d kind %d attrs %d: rc %d '%s'", op->op_type, opset, nin, k,
			       attrs, rc, err.msg);
	}
	for (int i = 0; i < nin; i++) qd_tensor_release(&t[i]);
	qd_engine_free(e);
	qd_model_free(m);
}

static void test_op_sweep(void)
{
	long fails0 = qd_t_fail;
	for (int i = 0; i < QD_OP__COUNT; i++) {
		const struct qd_op *op = &qd_ops[i];
		int opset = op->domain && *op->domain ? 13 : op->until < 13 ? op->until : op->since > 13 ? op->since : 13;
		run_case(op, opset, 0, K_MAT, 0, 1);
		for (int nin = 1; nin <= 5; nin++)
			for (int k = 0; k < K__COUNT; k++)
				for (int a = 0; a < 3; a++)
					run_case(op, opset, nin, (enum kind)k, a, a == 2 ? 3 : 1);
	}
	printf("op sweep: %ld runs over %d op rows, %ld ran, %ld failed with an error\n", n_runs, QD_OP__COUNT,
	       n_ok, n_err);
	CHECK(qd_t_fail == fails0);
	CHECK(n_ok > 1000);   /* the sweep runs ops, not only load errors */
}

/* ---- limits ---- */
static struct qd_model *model_cos(int64_t n)   /* y = ConstantOfShape([n]) */
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t one = 1;
	qd_graph_add_initializer(g, qd_tensor_new("s", QD_DT_INT64, &one, 1, &n, 8));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	const char *in[] = { "s" }, *out[] = { "y" };
	qd_graph_add_node(g, qd_node_new("ConstantOfShape", NULL, "cos", in, 1, out, 1));
	return m;
}

static int run_model(struct qd_model *m, const struct qd_engine_opts *o, struct qd_err *err)
{
	struct qd_engine *e = NULL;
	int rc = qd_engine_load(m, o, &e, err);
	if (rc == 0) {
		struct qd_tensor *res = NULL;
		size_t nres = 0;
		rc = qd_engine_run(e, NULL, 0, &res, &nres, NULL, err);
		if (rc == 0) qd_tensors_release(res, nres);
	}
	qd_engine_free(e);
	return rc;
}

static void test_limits(void)
{
	struct qd_engine_opts r;
	qd_engine_opts_resolve(NULL, &r);
	CHECK_EQ_INT(r.threads, 1);
	CHECK(r.max_tensor_bytes == QD_ENGINE_DEFAULT_MAX_TENSOR);
	CHECK(r.max_memory_bytes > 0 && r.max_memory_bytes <= QD_ENGINE_DEFAULT_MAX_MEMORY);
	CHECK(r.max_seconds == 0);
	struct qd_engine_opts neg = { .max_seconds = -1 };
	qd_engine_opts_resolve(&neg, &r);
	CHECK(r.max_seconds == 0);

	struct qd_err err = {0};
	/* 10^12 floats: over the default tensor limit, refused before allocating */
	struct qd_model *m = model_cos(1000000000000LL);
	CHECK_EQ_INT(run_model(m, NULL, &err), -QD_ELIMIT);
	CHECKF(strstr(err.msg, "node 'cos' (ConstantOfShape): cannot allocate output 0 (float32 [1000000000000]): "
			       "3725 GiB is over the tensor limit of 16 GiB") != NULL, "%s", err.msg);
	CHECK_STR(err.field, "cos");
	/* switched off: the allocation itself fails, as an error */
	struct qd_engine_opts off = { .max_tensor_bytes = QD_ENGINE_NO_LIMIT, .max_memory_bytes = QD_ENGINE_NO_LIMIT };
	int rc = run_model(m, &off, &err);
	CHECKF(rc == -QD_ENOMEM && strstr(err.msg, "cannot allocate output 0"), "%d %s", rc, err.msg);
	qd_model_free(m);
	/* 2^62 x 2^62 x 4: the byte count overflows; still the limit error */
	m = qd_model_new(8, 13);
	int64_t three = 3, dims[3] = { (int64_t)1 << 62, (int64_t)1 << 62, 4 };
	qd_graph_add_initializer(m->proto->graph, qd_tensor_new("s", QD_DT_INT64, &three, 1, dims, 24));
	add_io(&m->proto->graph->output, &m->proto->graph->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	const char *in[] = { "s" }, *out[] = { "y" };
	qd_graph_add_node(m->proto->graph, qd_node_new("ConstantOfShape", NULL, "cos", in, 1, out, 1));
	CHECK_EQ_INT(run_model(m, NULL, &err), -QD_ELIMIT);
	CHECK_EQ_INT(run_model(m, &off, &err), -QD_ELIMIT);
	qd_model_free(m);
	/* tensor limit as an option: 1 MiB of floats passes a 1 MiB limit, one more does not */
	m = model_cos(1 << 18);
	struct qd_engine_opts o = { .max_tensor_bytes = 1 << 20 };
	CHECK_EQ_INT(run_model(m, &o, &err), 0);
	qd_model_free(m);
	m = model_cos((1 << 18) + 1);
	CHECK_EQ_INT(run_model(m, &o, &err), -QD_ELIMIT);
	CHECKF(strstr(err.msg, "): 1 MiB is over the tensor limit of 1 MiB") != NULL, "%s", err.msg);
	qd_model_free(m);

	/* memory limit: a = cos(2^20 floats), b = Relu(a), y = a + b holds 8 MiB + y at the end */
	m = model_cos(1 << 20);
	Onnx__GraphProto *g = m->proto->graph;
	free(g->output[0]->name);
	g->output[0]->name = strdup("z");
	const char *ri[] = { "y" }, *ro[] = { "b" }, *ai[] = { "y", "b" }, *ao[] = { "z" };
	qd_graph_add_node(g, qd_node_new("Relu", NULL, "relu", ri, 1, ro, 1));
	qd_graph_add_node(g, qd_node_new("Add", NULL, "add", ai, 2, ao, 1));
	struct qd_engine_opts m12 = { .max_memory_bytes = 13 << 20 }, m11 = { .max_memory_bytes = 11 << 20 };
	CHECK_EQ_INT(run_model(m, &m12, &err), 0);
	rc = run_model(m, &m11, &err);
	CHECK_EQ_INT(rc, -QD_ELIMIT);
	CHECKF(strstr(err.msg, "node 'add' (Add): cannot allocate output 0 (float32 [1048576]): 4 MiB more with "
			       "8 MiB already held is over the memory limit of 11 MiB") != NULL, "%s", err.msg);
	qd_model_free(m);
}

/* Loop(M = 2^62, cond = true) whose body negates v: runs until the deadline. */
static struct qd_model *model_endless_loop(void)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t big = (int64_t)1 << 62, one = 1;
	uint8_t t = 1;
	float v = 1;
	qd_graph_add_initializer(g, qd_tensor_new("M", QD_DT_INT64, NULL, 0, &big, 8));
	qd_graph_add_initializer(g, qd_tensor_new("C", QD_DT_BOOL, NULL, 0, &t, 1));
	qd_graph_add_initializer(g, qd_tensor_new("v0", QD_DT_FLOAT, &one, 1, &v, 4));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	const char *li[] = { "M", "C", "v0" }, *lo[] = { "y" };
	Onnx__NodeProto *loop = qd_node_new("Loop", NULL, "loop", li, 3, lo, 1);
	Onnx__GraphProto *b = malloc(sizeof(*b));
	onnx__graph_proto__init(b);
	b->name = strdup("body");
	add_io(&b->input, &b->n_input, qd_value_info_new("i", QD_DT_INT64, NULL, 0));
	add_io(&b->input, &b->n_input, qd_value_info_new("c", QD_DT_BOOL, NULL, 0));
	add_io(&b->input, &b->n_input, qd_value_info_new("v", QD_DT_FLOAT, NULL, 0));
	add_io(&b->output, &b->n_output, qd_value_info_new("co", QD_DT_BOOL, NULL, 0));
	add_io(&b->output, &b->n_output, qd_value_info_new("vo", QD_DT_FLOAT, NULL, 0));
	const char *ii[] = { "c" }, *io[] = { "co" }, *ni[] = { "v" }, *no[] = { "vo" };
	qd_graph_add_node(b, qd_node_new("Identity", NULL, "id", ii, 1, io, 1));
	qd_graph_add_node(b, qd_node_new("Neg", NULL, "neg", ni, 1, no, 1));
	Onnx__AttributeProto *a = malloc(sizeof(*a));
	onnx__attribute_proto__init(a);
	a->name = strdup("body");
	a->has_type = true;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
	a->g = b;
	loop->attribute = realloc(loop->attribute, (loop->n_attribute + 1) * sizeof(*loop->attribute));
	loop->attribute[loop->n_attribute++] = a;
	qd_graph_add_node(g, loop);
	return m;
}

static void test_deadline(void)
{
	struct qd_model *m = model_endless_loop();
	struct qd_err err = {0};
	struct qd_engine_opts o = { .max_seconds = 0.2 };
	double t0 = qd_now_mono();
	int rc = run_model(m, &o, &err);
	double dt = qd_now_mono() - t0;
	CHECK_EQ_INT(rc, -QD_ETIMEOUT);
	CHECKF(strstr(err.msg, "model ran longer than the time limit of 0.2 s (max_seconds, --max-seconds)") != NULL, "%s",
	       err.msg);
	CHECKF(dt >= 0.2, "stopped after %.3f s", dt);  /* not before the deadline */
	/* the cancel flag still works the same way, without a deadline */
	struct qd_engine *e = NULL;
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	volatile int cancel = 1;
	struct qd_tensor *res = NULL;
	size_t nres = 0;
	CHECK_EQ_INT(qd_engine_run(e, NULL, 0, &res, &nres, &cancel, &err), -QD_ECANCELED);
	qd_engine_free(e);
	qd_model_free(m);
}

static void test_load_errors(void)
{
	struct qd_err err = {0};
	/* node without outputs */
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, NULL, 0));
	add_io(&g->output, &g->n_output, qd_value_info_new("x", QD_DT_FLOAT, NULL, 0));
	const char *xi[] = { "x" };
	qd_graph_add_node(g, qd_node_new("Mean", NULL, "", xi, 1, NULL, 0));
	struct qd_engine *e = NULL;
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EMODEL);
	CHECK_STR(err.msg, "node 'Mean#0' (Mean) has no outputs");
	qd_model_free(m);
	/* a -> b -> c -> a */
	m = qd_model_new(8, 13);
	g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, NULL, 0));
	add_io(&g->output, &g->n_output, qd_value_info_new("c", QD_DT_FLOAT, NULL, 0));
	const char *i1[] = { "c" }, *o1[] = { "a" }, *i2[] = { "a" }, *o2[] = { "b" }, *i3[] = { "b", "x" }, *o3[] = { "c" };
	qd_graph_add_node(g, qd_node_new("Relu", NULL, "ra", i1, 1, o1, 1));
	qd_graph_add_node(g, qd_node_new("Relu", NULL, "rb", i2, 1, o2, 1));
	qd_graph_add_node(g, qd_node_new("Add", NULL, "rc", i3, 2, o3, 1));
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EMODEL);
	CHECK_STR(err.msg, "node 'ra': input 'c' is produced by a later node 'rc' (a cycle, or nodes not in "
			   "topological order)");
	qd_model_free(m);
	/* its own output */
	m = qd_model_new(8, 13);
	g = m->proto->graph;
	add_io(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, NULL, 0));
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	const char *si[] = { "x", "y" }, *so[] = { "y" };
	qd_graph_add_node(g, qd_node_new("Add", NULL, "self", si, 2, so, 1));
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), -QD_EMODEL);
	CHECK_STR(err.msg, "node 'self': input 'y' is its own output (a cycle)");
	qd_model_free(m);
}

/* 10^5 graph inputs: y = x99999 + x0; binding is by name (not a scan per input) */
static void test_many_inputs(void)
{
	enum { N = 100000 };
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	struct qd_tensor *in = calloc(N, sizeof(*in));
	int64_t one = 1;
	g->input = malloc(N * sizeof(*g->input));
	char nm[32];
	for (int i = 0; i < N; i++) {
		snprintf(nm, sizeof(nm), "x%d", i);
		g->input[g->n_input++] = qd_value_info_new(nm, QD_DT_FLOAT, &one, 1);
		qd_tensor_alloc(&in[i], nm, QD_DT_FLOAT, 1, &one);
		((float *)in[i].data)[0] = (float)i;
	}
	add_io(&g->output, &g->n_output, qd_value_info_new("y", QD_DT_FLOAT, NULL, 0));
	const char *ai[] = { "x99999", "x0" }, *ao[] = { "y" };
	qd_graph_add_node(g, qd_node_new("Add", NULL, "add", ai, 2, ao, 1));
	struct qd_engine *e = NULL;
	struct qd_err err = {0};
	CHECK_EQ_INT(qd_engine_load(m, NULL, &e, &err), 0);
	CHECK_EQ_INT(qd_engine_n_inputs(e), N);
	CHECK_STR(qd_engine_input(e, 77777)->name, "x77777");
	struct qd_tensor *res = NULL;
	size_t nres = 0;
	/* reversed order: still bound by name */
	for (int i = 0; i < N / 2; i++) { struct qd_tensor t = in[i]; in[i] = in[N - 1 - i]; in[N - 1 - i] = t; }
	CHECK_EQ_INT(qd_engine_run(e, in, N, &res, &nres, NULL, &err), 0);
	if (nres == 1) CHECK_NEAR(((float *)res[0].data)[0], 99999.0, 0);
	qd_tensors_release(res, nres);
	/* one missing */
	CHECK_EQ_INT(qd_engine_run(e, in, N - 1, &res, &nres, NULL, &err), -QD_EINVAL);
	CHECK_STR(err.msg, "missing input 'x0'");
	free(in[0].name);
	in[0].name = strdup("nope");
	CHECK_EQ_INT(qd_engine_run(e, in, N, &res, &nres, NULL, &err), -QD_EINVAL);
	CHECKF(strstr(err.msg, "unknown input 'nope' (the model's inputs: 'x0', 'x1',") && strstr(err.msg, "(100000 in all)"),
	       "%s", err.msg);
	qd_engine_free(e);
	qd_tensors_release(in, N);
	qd_model_free(m);
}

int main(void)
{
	test_limits();
	test_deadline();
	test_load_errors();
	test_many_inputs();
	test_op_sweep();
	return qd_test_done("test_engine_robust");
}
