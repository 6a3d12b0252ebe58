/* libFuzzer target for datasets uploaded as a tar of ONNX test_data_set_* folders
 * (engine/dataset.c: ustar / GNU / pax headers, long names, input_N.pb / output_N.pb
 * TensorProto files, folder grouping and concatenation along axis 0), then the summary,
 * row slices and the binder (input_<N> renaming, dtypes, ranks, fixed dims, sample
 * counts) against four tiny models built in code. Must never crash or leak.
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_tar fuzz/corpus/tar */
#include "fuzz/fuzz_util.h"

static struct qd_model *models[FZ_N_MODELS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int v = 0; v < FZ_N_MODELS; v++)
		models[v] = fz_model(v);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_dataset_bytes(data, size, models);
	return 0;
}
