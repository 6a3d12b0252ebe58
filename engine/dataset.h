/* engine/dataset — calibration / evaluation datasets as named arrays whose first axis is
 * the sample axis: numpy .npz archives (np.savez / np.savez_compressed) and tars (or
 * directories) of ONNX test_data_set_* folders (input_N.pb TensorProto files, one folder
 * per sample). Shared by the API (upload checks, summary), the workflow runner
 * (calibration and evaluation batches) and `quantd run --data`. */
#ifndef QD_DATASET_H
#define QD_DATASET_H

#include "qd.h"
#include "onnx/onnx.h"
#include "engine/engine.h"
#include <jansson.h>

struct qd_dataset {
	struct qd_tensor *arrays;   /* owned; name = array name */
	size_t n_arrays;
	int64_t n_samples;          /* first dimension, the same for every model-input array */
	const char *format;         /* static string: "npz" or "onnx_test_data" */
};

/* Limits against decompression bombs and absurd shapes; 0 fields take the defaults. */
struct qd_dataset_limits {
	uint64_t max_total_bytes;   /* decoded bytes of all arrays (default 4 GiB) */
	uint64_t max_array_bytes;   /* decoded bytes of one array (default 2 GiB) */
	size_t max_arrays;          /* default 1024 */
};
#define QD_DATASET_MAX_TOTAL ((uint64_t)4 << 30)
#define QD_DATASET_MAX_ARRAY ((uint64_t)2 << 30)
#define QD_DATASET_MAX_ARRAYS 1024

/* qd_npz_read with limits (NULL = defaults): every zip entry's declared size and every
 * .npy header's shape x dtype are checked against them before anything is inflated or
 * allocated; entries are CRC-checked. Errors: field = array name. */
int qd_npz_read_lim(const char *path, const struct qd_dataset_limits *lim, struct qd_tensor **out,
		    size_t *n, struct qd_err *err);

/* Load a dataset file (format detected from its bytes: zip = npz, ustar = tar) or a
 * directory holding test_data_set_* folders. Arrays of a test-data tar are named after
 * each TensorProto's name, or "input_<N>" when it has none (bound to the model's N-th
 * input by qd_dataset_bind). Errors name the array (field) and the problem. out new. */
int qd_dataset_load(const char *path, const struct qd_dataset_limits *lim,
		    struct qd_dataset **out, struct qd_err *err);
void qd_dataset_free(struct qd_dataset *ds);

/* Array by name; borrow (NULL when absent). */
const struct qd_tensor *qd_dataset_array(const struct qd_dataset *ds, const char *name);

/* Check a dataset against a model's graph inputs (non-initializer inputs): every input
 * has an array (after renaming "input_<N>" arrays to the N-th input's name), dtypes
 * match, ranks match, fixed dims match (dim 0 is the sample axis and is free when the
 * model's first dim is symbolic; when the model's first dim is fixed to B, samples are
 * taken in batches of B), sample counts agree. Extra arrays (labels) are kept. Errors
 * name the array ("dataset array 'x': dtype int64, model input 'x' wants float32"). */
int qd_dataset_bind(struct qd_dataset *ds, const struct qd_model *m, struct qd_err *err);

/* Rows [start, start + count) of array a (along axis 0) into out (new tensor, name
 * copied). */
int qd_dataset_slice(const struct qd_tensor *a, int64_t start, int64_t count,
		     struct qd_tensor *out, struct qd_err *err);

/* {"format", "samples", "arrays": [{"name", "dtype", "shape", "samples"}]}. new. */
json_t *qd_dataset_summary_json(const struct qd_dataset *ds);

#endif
