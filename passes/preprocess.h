/* quant_preprocess, our own C (reference/ort_quantization.md §6, without Python or ONNX
 * Runtime): Constant nodes to initializers, constant folding (nodes whose inputs are all
 * initializers are run once by the engine and replaced by their outputs), inference
 * BatchNormalization folded into a preceding Conv / Gemm (or ConvTranspose), removal of
 * nodes whose outputs nobody uses, and type / shape inference: every node output gets a
 * value_info with its element type and rank (dims from a run of the engine on a sample
 * batch when one is given; symbolic graph-input dims stay symbolic). Each step reports
 * what it did through the log callback and into stats. */
#ifndef QD_PREPROCESS_H
#define QD_PREPROCESS_H

#include "qd.h"
#include "onnx/onnx.h"
#include "engine/engine.h"
#include <jansson.h>

struct qd_preprocess_opts {
	bool fold_constants;            /* constant folding */
	bool fold_batchnorm;            /* BatchNormalization into Conv / Gemm */
	bool infer_types;               /* value_info for every node output */
	size_t max_folded_bytes;        /* do not fold a node whose outputs exceed this
	                                   (0 = 64 MiB): folding must not blow the file up */
	const struct qd_tensor *sample; /* one batch of graph inputs for type/shape inference
	                                   (may be NULL: then random inputs of the declared
	                                   types with symbolic dims set to 1) */
	size_t n_sample;
	int threads;
	void (*log)(void *ud, enum qd_log_level lvl, const char *line);   /* may be NULL */
	void *ud;
};

/* Edits m in place; the result computes the same outputs. stats (may be NULL) gets
 * {"constants_to_initializers", "folded_nodes", "folded_batchnorms", "removed_nodes",
 *  "typed_values"}. */
int qd_preprocess(struct qd_model *m, const struct qd_preprocess_opts *o, json_t *stats,
		  struct qd_err *err);

#endif
