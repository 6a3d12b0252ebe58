/* Unit tests for the upload validator (api/model_check.c): a model whose weights are
 * replaced by references into its own file must give the same summary as a full load;
 * truncated, garbage, wrong-sized and external-data tensors are rejected with a message
 * naming the problem. */
#include "api/api.h"
#include "onnx/onnx.h"
#include "qd_test.h"

#include <stdlib.h>
#include <unistd.h>

static void add_vi(Onnx__ValueInfoProto ***arr, size_t *n, Onnx__ValueInfoProto *v)
{
	*arr = realloc(*arr, (*n + 1) * sizeof **arr);
	(*arr)[(*n)++] = v;
}

/* x[1,64] · W[64,2] + Constant C[2] -> z; bad_len shortens W's raw_data, ext marks W
 * external. W (512 bytes) is large enough to be replaced by a reference, C stays inline. */
static struct qd_model *make_model(int bad_len, int ext)
{
	struct qd_model *m = qd_model_new(8, 13);
	Onnx__GraphProto *g = m->proto->graph;
	int64_t xd[] = { 1, 64 }, wd[] = { 64, 2 }, cd[] = { 2 }, zd[] = { 1, 2 };
	float w[128], cv[2] = { 0.5f, -0.5f };
	for (int i = 0; i < 128; i++)
		w[i] = (float)i * 0.01f;
	add_vi(&g->input, &g->n_input, qd_value_info_new("x", QD_DT_FLOAT, xd, 2));
	add_vi(&g->output, &g->n_output, qd_value_info_new("z", QD_DT_FLOAT, zd, 2));
	Onnx__TensorProto *W = qd_tensor_new("W", QD_DT_FLOAT, wd, 2, w, sizeof w - (bad_len ? 4 : 0));
	if (ext) {
		W->has_data_location = 1;
		W->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	}
	qd_graph_add_initializer(g, W);
	const char *cin[] = { NULL }, *cout[] = { "C" };
	Onnx__NodeProto *c = qd_node_new("Constant", NULL, "const_c", cin, 0, cout, 1);
	qd_node_set_attr_tensor(c, "value", qd_tensor_new("cval", QD_DT_FLOAT, cd, 1, cv, sizeof cv));
	qd_graph_add_node(g, c);
	const char *mi[] = { "x", "W" }, *mo[] = { "y" }, *ai[] = { "y", "C" }, *ao[] = { "z" };
	qd_graph_add_node(g, qd_node_new("MatMul", NULL, "mm", mi, 2, mo, 1));
	qd_graph_add_node(g, qd_node_new("Add", NULL, "add", ai, 2, ao, 1));
	return m;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	fwrite(p, 1, n, f);
	fclose(f);
}

static int save(struct qd_model *m, const char *path, size_t truncate_to)
{
	struct qd_buf b = { 0 };
	struct qd_err e = { 0 };
	int rc = qd_model_serialize(m, &b, &e);
	if (!rc)
		write_bytes(path, b.data, truncate_to && truncate_to < b.len ? truncate_to : b.len);
	size_t n = b.len;
	qd_buf_free(&b);
	return rc ? -1 : (int)n;
}

int main(void)
{
	char dir[] = "/tmp/qd-test-mcheck-XXXXXX", path[128];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/0123abcd", dir);
	struct qd_err e = { 0 };
	json_t *sum = NULL;

	/* valid: same summary as a full load */
	struct qd_model *m = make_model(0, 0);
	int n = save(m, path, 0);
	CHECK(n > 0);
	qd_model_free(m);
	CHECK_EQ_INT(qd_api_check_model_file(path, &sum, &e), 0);
	CHECKF(sum != NULL, "%s", e.msg);
	struct qd_model *full = NULL;
	CHECK_EQ_INT(qd_model_load_file(path, NULL, &full, &e), 0);
	json_t *fsum = full ? qd_model_summary_json(full) : NULL;
	CHECK(fsum && sum && json_equal(fsum, sum));
	CHECK(sum && json_integer_value(json_object_get(json_object_get(sum, "op_histogram"), "MatMul")) == 1);
	json_decref(fsum);
	json_decref(sum);
	sum = NULL;
	qd_model_free(full);

	/* truncated */
	m = make_model(0, 0);
	save(m, path, (size_t)n - 7);
	qd_model_free(m);
	memset(&e, 0, sizeof e);
	CHECK(qd_api_check_model_file(path, &sum, &e) < 0);
	CHECK_EQ_INT(e.code, QD_EPARSE);
	CHECK(sum == NULL);

	/* garbage and empty */
	write_bytes(path, "\xff\xff\xff\xff garbage", 12);
	memset(&e, 0, sizeof e);
	CHECK(qd_api_check_model_file(path, &sum, &e) < 0);
	CHECK_EQ_INT(e.code, QD_EPARSE);
	write_bytes(path, "", 0);
	memset(&e, 0, sizeof e);
	CHECK(qd_api_check_model_file(path, &sum, &e) < 0);
	CHECK_EQ_INT(e.code, QD_EPARSE);

	/* raw_data shorter than dims need: named */
	m = make_model(1, 0);
	save(m, path, 0);
	qd_model_free(m);
	memset(&e, 0, sizeof e);
	CHECK(qd_api_check_model_file(path, &sum, &e) < 0);
	CHECK_EQ_INT(e.code, QD_EMODEL);
	CHECKF(strstr(e.msg, "'W'") != NULL, "%s", e.msg);

	/* a tensor that claims external data */
	m = make_model(0, 1);
	save(m, path, 0);
	qd_model_free(m);
	memset(&e, 0, sizeof e);
	CHECK(qd_api_check_model_file(path, &sum, &e) < 0);
	CHECK_EQ_INT(e.code, QD_EMODEL);
	CHECKF(strstr(e.msg, "external data") != NULL, "%s", e.msg);

	unlink(path);
	rmdir(dir);
	return qd_test_done("test_api_model_check");
}
