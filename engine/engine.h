/* engine/ — the CPU executor used for calibration and evaluation (public API).
 * Internals (op table engine/ops.def, kernels, memory plan) live in the engine's .c files
 * and engine/engine_internal.h. */
#ifndef QD_ENGINE_H
#define QD_ENGINE_H

#include "qd.h"
#include "onnx/onnx.h"
#include <stdio.h>

#define QD_MAX_DIMS 8

/* A dense tensor. data is owned by whoever created the tensor unless said otherwise. */
struct qd_tensor {
	char *name;                 /* may be NULL */
	int dtype;                  /* enum qd_dtype */
	int ndim;
	int64_t dims[QD_MAX_DIMS];
	void *data;                 /* numel * qd_dtype_size(dtype) bytes (bool = 1 byte) */
	size_t nbytes;
};
int64_t qd_tensor_count(const struct qd_tensor *t);      /* product of dims */
/* Allocate data for dtype/dims (zeroed); name copied. Returns 0 or -QD_ENOMEM. */
int qd_tensor_alloc(struct qd_tensor *t, const char *name, int dtype, int ndim, const int64_t *dims);
void qd_tensor_release(struct qd_tensor *t);             /* frees name and data */
void qd_tensors_release(struct qd_tensor *t, size_t n);  /* each, then free(t) */
/* From an ONNX TensorProto (raw_data or typed fields). */
int qd_tensor_from_proto(const Onnx__TensorProto *p, struct qd_tensor *out, struct qd_err *err);

/* .npz files (stored or deflated) of .npy arrays: name = file name without ".npy". */
int qd_npz_read(const char *path, struct qd_tensor **out, size_t *n, struct qd_err *err);
int qd_npz_write(const char *path, const struct qd_tensor *t, size_t n, struct qd_err *err);

struct qd_engine;

/* Resource limits (DESIGN: checked before anything is allocated, so a hostile model fails
 * with QD_ELIMIT / QD_ETIMEOUT and a message naming the node, never with a crash):
 * - max_tensor_bytes: no single tensor a node produces may be larger;
 * - max_memory_bytes: live activations + constants + kernel scratch (what the memory plan
 *   holds at once, qd_engine_peak_bytes) may not exceed it; Loop scan outputs count too;
 * - max_seconds: wall time of one qd_engine_run, polled between nodes and in every
 *   Loop / If iteration.
 * 0 selects the default; QD_ENGINE_NO_LIMIT switches a size limit off. */
#define QD_ENGINE_DEFAULT_MAX_TENSOR ((size_t)16 << 30)   /* 16 GiB */
#define QD_ENGINE_DEFAULT_MAX_MEMORY ((size_t)64 << 30)   /* 64 GiB, capped to physical RAM */
#define QD_ENGINE_NO_LIMIT SIZE_MAX
struct qd_engine_opts {
	int threads;                /* BLAS / kernel threads; 0 = 1 */
	bool profile;               /* collect per-op-type time */
	size_t max_tensor_bytes;    /* 0 = QD_ENGINE_DEFAULT_MAX_TENSOR */
	size_t max_memory_bytes;    /* 0 = QD_ENGINE_DEFAULT_MAX_MEMORY or the machine's
	                               physical memory, whichever is smaller */
	double max_seconds;         /* per run; 0 = no time limit */
};
/* The limits qd_engine_load applies for opts (defaults resolved): out gets a copy. */
void qd_engine_opts_resolve(const struct qd_engine_opts *opts, struct qd_engine_opts *out);

/* Called for every tensor a node produces, right after the node ran. The tensor is
 * borrowed (valid during the call). */
typedef void (*qd_engine_hook)(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t);

/* Prepare a model for running: checks every node against the op table (op, domain, opset,
 * dtypes); an unsupported one fails here naming the node. The engine borrows m. */
int qd_engine_load(const struct qd_model *m, const struct qd_engine_opts *opts,
		   struct qd_engine **out, struct qd_err *err);
void qd_engine_free(struct qd_engine *e);
/* Model input / output names and declared types; borrow. */
size_t qd_engine_n_inputs(const struct qd_engine *e);
const Onnx__ValueInfoProto *qd_engine_input(const struct qd_engine *e, size_t i);
size_t qd_engine_n_outputs(const struct qd_engine *e);
const Onnx__ValueInfoProto *qd_engine_output(const struct qd_engine *e, size_t i);
void qd_engine_set_hook(struct qd_engine *e, qd_engine_hook hook, void *ud);
/* After qd_engine_set_hook: the hook needs only the tensors want(ud, name) accepts, so
 * fused chains that hide none of them keep running fused (faster calibration); the hook
 * then sees a fused chain's output with the proto of the node the chain runs at, and never
 * sees the tensors a fused chain hides. NULL: every node runs (the default after
 * qd_engine_set_hook). */
void qd_engine_set_hook_want(struct qd_engine *e, bool (*want)(void *ud, const char *tensor), void *ud);
/* Run with inputs matched by name. *outputs new (qd_tensors_release), one per model output
 * in order. cancel (may be NULL) is polled between nodes, and so is the max_seconds
 * deadline (QD_ETIMEOUT, "ran longer than ..."). */
int qd_engine_run(struct qd_engine *e, const struct qd_tensor *inputs, size_t n_in,
		  struct qd_tensor **outputs, size_t *n_out, const volatile int *cancel,
		  struct qd_err *err);
/* Peak bytes of live tensors during the last run. */
size_t qd_engine_peak_bytes(const struct qd_engine *e);

/* `quantd infer ...` */
int qd_cmd_infer(int argc, char **argv);

/* engine/cpu.c: float GEMM kernels from CPUID. qd_blas_select(argv) first thing in main:
 * re-executes the process once with OPENBLAS_CORETYPE when OpenBLAS picked a weaker kernel
 * class than the CPU's features allow (returns when nothing is to be done). */
void qd_blas_select(char **argv);
/* "cpu: ...", "float gemm: ...", "integer gemm: ..." lines (quantd version). */
void qd_blas_describe(FILE *out);
/* 3 AVX-512, 2 AVX2+FMA, 1 AVX, 0 older or unknown OpenBLAS core names */
int qd_blas_core_class(const char *core);

#endif
