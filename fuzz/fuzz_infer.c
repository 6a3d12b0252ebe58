/* libFuzzer target for the executor: arbitrary bytes → model (qd_model_load_buf) →
 * qd_engine_load → one run on small inputs shaped from the declared input types (unknown
 * dims = 2) and filled from the fuzz bytes. The engine's limits (tensors 1 MiB, 64 MiB held
 * at once, 1 s per run) turn hostile shapes and endless Loops into errors. Must never
 * crash, leak or hang.
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_infer CORPUS_DIR (seed with tests' models). */
#include <stdlib.h>
#include <string.h>
#include "engine/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qd_err err;
	struct qd_model *m = NULL;
	struct qd_engine *e = NULL;
	struct qd_load_opts lo = { .max_bytes = 1 << 22 };
	if (qd_model_load_buf(data, size, NULL, &lo, &m, &err)) return 0;
	struct qd_engine_opts eo = { .threads = 1, .max_tensor_bytes = 1 << 20, .max_memory_bytes = 64 << 20,
				     .max_seconds = 1 };
	if (qd_engine_load(m, &eo, &e, &err)) { qd_model_free(m); return 0; }
	size_t nin = qd_engine_n_inputs(e);
	struct qd_tensor *in = calloc(nin + 1, sizeof(*in));
	size_t made = 0, pos = 0;
	for (size_t i = 0; in && i < nin; i++) {
		const Onnx__ValueInfoProto *vi = qd_engine_input(e, i);
		int dt = QD_DT_FLOAT;
		int64_t dims[QD_MAX_DIMS];
		int nd = 0;
		const Onnx__TypeProto *tp = vi->type;
		if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type) {
			if (tp->tensor_type->has_elem_type && qd_dtype_size(tp->tensor_type->elem_type) &&
			    tp->tensor_type->elem_type != QD_DT_STRING)
				dt = tp->tensor_type->elem_type;
			const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
			for (size_t k = 0; sh && k < sh->n_dim && nd < QD_MAX_DIMS; k++) {
				const Onnx__TensorShapeProto__Dimension *d = sh->dim[k];
				int64_t v = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : 2;
				dims[nd++] = v < 0 ? 2 : v > 64 ? 64 : v;
			}
		}
		int64_t cnt = 1;
		for (int k = 0; k < nd; k++) cnt *= dims[k];
		if (cnt > 4096) break;
		if (qd_tensor_alloc(&in[made], vi->name, dt, nd, dims)) break;
		for (size_t k = 0; k < in[made].nbytes && size; k++) ((uint8_t *)in[made].data)[k] = data[pos++ % size];
		if (dt == QD_DT_BOOL) for (size_t k = 0; k < in[made].nbytes; k++) ((uint8_t *)in[made].data)[k] &= 1;
		made++;
	}
	struct qd_tensor *out = NULL;
	size_t nout = 0;
	if (!qd_engine_run(e, in, made, &out, &nout, NULL, &err)) qd_tensors_release(out, nout);
	if (in) qd_tensors_release(in, made);
	qd_engine_free(e);
	qd_model_free(m);
	return 0;
}
