/* libFuzzer target for the model loader: arbitrary bytes → qd_model_load_buf, then check,
 * summary, index, normalisation and serialisation of whatever loaded. Must never crash.
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_model_load CORPUS_DIR */
#include "onnx/onnx.h"

#include <jansson.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qd_err err;
	struct qd_model *m = NULL;
	struct qd_load_opts lo = { .max_bytes = 1 << 24 };
	if (qd_model_load_buf(data, size, NULL, &lo, &m, &err))
		return 0;
	int checked = qd_model_check(m, &err);
	json_t *j = qd_model_summary_json(m);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	free(s);
	json_decref(j);
	if (m->proto->graph) {
		struct qd_graph_index *ix = NULL;
		if (!qd_index_build(m->proto->graph, NULL, &ix, &err)) {
			const size_t *order;
			size_t n = qd_index_topo(ix, &order);
			for (size_t i = 0; i < n && i < 64; i++) {
				Onnx__NodeProto *nd = m->proto->graph->node[order[i]];
				for (size_t k = 0; k < nd->n_input; k++) {
					Onnx__NodeProto *const *cons;
					qd_index_consumers(ix, nd->input[k], &cons);
					qd_index_producer(ix, nd->input[k]);
					qd_index_initializer(ix, nd->input[k]);
					qd_index_value_info(ix, nd->input[k]);
				}
			}
			free(qd_index_unique_name(ix, "x"));
			qd_index_free(ix);
		}
		for (size_t i = 0; i < m->proto->graph->n_initializer && i < 16; i++) {
			float *f = NULL;
			int64_t *v = NULL, n;
			if (!qd_tensor_to_float(m->proto->graph->initializer[i], &f, &n, &err))
				free(f);
			if (!qd_tensor_to_int64(m->proto->graph->initializer[i], &v, &n, &err))
				free(v);
		}
	}
	struct qd_buf b = { 0 };
	qd_model_serialize(m, &b, &err);
	qd_buf_free(&b);
	if (!checked && qd_model_normalize_constants(m, &err) >= 0)
		qd_model_check(m, &err);
	qd_model_free(m);
	return 0;
}
