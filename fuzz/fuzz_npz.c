/* libFuzzer target for the .npz reader (engine/npz.c through engine/dataset.c): arbitrary
 * bytes as an uploaded dataset file (zip central directory, zip64 records, stored and
 * deflated entries, .npy v1/v2/v3 headers, C and Fortran order, CRC-32), then the
 * summary, row slices and the binder against four tiny models built in code. Must never
 * crash, leak or allocate past the limits in fuzz_util.h.
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_npz fuzz/corpus/npz (seeds written by numpy). */
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
	/* the reader on its own too (quantd infer --input x.npz uses it without a dataset) */
	char path[64];
	int fd = fz_memfd(data, size, path);
	if (fd >= 0) {
		struct qd_tensor *t = NULL;
		size_t n = 0;
		struct qd_err err = { 0 };
		if (!qd_npz_read_lim(path, &fz_limits, &t, &n, &err))
			qd_tensors_release(t, n);
		close(fd);
	}
	return 0;
}
