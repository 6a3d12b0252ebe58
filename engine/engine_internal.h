/* engine/ internals shared by the executor core (engine.c) and the kernel files
 * (ops_*.c, ops_quant*.c): the op table, node/graph/slot structures, the kernel context
 * and helpers (output allocation, broadcasting, GEMM with its _ref twin).
 *
 * HOW TO ADD AN OP
 *  1. Add a row to engine/ops.def (quantized ops: engine/ops_quant.def):
 *       QD_OP(ID, "OpType", "domain", since, until, tidx, types, out, check, kernel)
 *     ID is a unique C identifier (OpType_<since> when an op has several rows),
 *     [since, until] the opset range of that domain whose semantics the kernel
 *     implements, tidx the input whose dtype must be in the `types` mask (QD_TM_*),
 *     out the rule giving the output dtypes at load (enum qd_out_rule).
 *  2. Write the kernel `int kernel(struct qd_ctx *c)` in an ops_*.c file: read
 *     c->in[i] (NULL = absent optional input), compute output shapes from the actual
 *     inputs, allocate outputs with qd_ctx_out(), fill them. Errors: qd_ctx_fail()
 *     (it names the node). Dispatch on dtype inside the kernel.
 *  3. If the op has attributes/modes you do not implement, write a check function
 *     `int check(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)`
 *     that rejects them at load (error naming the node and the attribute), and may set
 *     out_dt[] (QD_OUT_CUSTOM) or cache parsed attributes in n->priv. Otherwise name
 *     qd_check_none.
 *  4. Nothing else: the declarations, the table, the enum and the lookup are generated
 *     from ops.def.
 *  5. Every optimised kernel keeps a plain `_ref` twin; add a comparison on random
 *     shapes to tests/unit/test_engine_kernels.c. Run tests/conformance/run_conformance.sh:
 *     every ONNX node test of the op must pass (or be rejected at load with a reason).
 */
#ifndef QD_ENGINE_INTERNAL_H
#define QD_ENGINE_INTERNAL_H

#include "engine/engine.h"

/* ---- dtype masks ---- */
#define QD_TM(dt) (1u << (dt))
#define QD_TM_F32 QD_TM(QD_DT_FLOAT)
#define QD_TM_F64 QD_TM(QD_DT_DOUBLE)
#define QD_TM_FLT (QD_TM_F32 | QD_TM_F64)
#define QD_TM_SINT (QD_TM(QD_DT_INT8) | QD_TM(QD_DT_INT16) | QD_TM(QD_DT_INT32) | QD_TM(QD_DT_INT64))
#define QD_TM_UINT (QD_TM(QD_DT_UINT8) | QD_TM(QD_DT_UINT16) | QD_TM(QD_DT_UINT32) | QD_TM(QD_DT_UINT64))
#define QD_TM_INT (QD_TM_SINT | QD_TM_UINT)
#define QD_TM_IDX (QD_TM(QD_DT_INT32) | QD_TM(QD_DT_INT64))
#define QD_TM_BOOL QD_TM(QD_DT_BOOL)
#define QD_TM_NUM (QD_TM_FLT | QD_TM_INT)
#define QD_TM_ALL (QD_TM_NUM | QD_TM_BOOL)
#define QD_TM_SNUM (QD_TM_FLT | QD_TM_SINT)
/* every fixed-size dtype (data-movement ops copy bytes) */
#define QD_TM_BYTES (QD_TM_ALL | QD_TM(QD_DT_FLOAT16) | QD_TM(QD_DT_BFLOAT16))
/* Cast: every plain dtype and float16 (bfloat16 test data in ONNX 1.12 is stored as
 * uint16, so it stays unclaimed) */
#define QD_TM_CAST (QD_TM_ALL | QD_TM(QD_DT_FLOAT16))
#define QD_TM_I64ONLY QD_TM(QD_DT_INT64)
#define QD_TM_ANY 0xffffffffu  /* no check (the kernel checks) */

/* Output dtype rule, applied at load (type propagation) and to allocate outputs. */
enum qd_out_rule {
	QD_OUT_SAME,    /* every output has the dtype of input tidx */
	QD_OUT_BOOL,    /* bool */
	QD_OUT_I64,     /* int64 */
	QD_OUT_F32,     /* float32 */
	QD_OUT_TO,      /* attribute "to" (Cast) */
	QD_OUT_LIKE1,   /* dtype of input 1 (CastLike) */
	QD_OUT_CUSTOM,  /* set by the check function (unknown = 0 is allowed) */
};

struct qd_enode;
struct qd_ctx;
typedef int (*qd_op_check_fn)(struct qd_enode *n, const int *in_dt, int *out_dt,
			      struct qd_err *err);
typedef int (*qd_op_kernel_fn)(struct qd_ctx *c);

struct qd_op {
	const char *op_type;
	const char *domain;     /* "" for ai.onnx */
	int since, until;       /* opset range */
	int tidx;               /* input whose dtype is checked against types */
	uint32_t types;         /* QD_TM_* mask */
	enum qd_out_rule out;
	qd_op_check_fn check;   /* qd_check_none when there is nothing to check */
	qd_op_kernel_fn kernel;
};

enum qd_op_id {
#define QD_OP(id, name, dom, since, until, tidx, types, out, check, kernel) QD_OP_##id,
#include "engine/ops.def"
#undef QD_OP
	QD_OP__COUNT
};
extern const struct qd_op qd_ops[QD_OP__COUNT];

/* Kernel and check declarations generated from the table (rows without a check name
 * qd_check_none). */
#define QD_OP(id, name, dom, since, until, tidx, types, out, check, kernel) \
	int kernel(struct qd_ctx *c); \
	int check(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err);
#include "engine/ops.def"
#undef QD_OP

/* Find the row for (op_type, domain, opset). Returns the row or NULL; on NULL, *why is
 * set to a static reason ("op not supported", "opset N not supported (rows cover a-b)"). */
const struct qd_op *qd_op_find(const char *op_type, const char *domain, int64_t opset,
			       char *why, size_t why_len);

/* ---- compiled graphs ---- */
struct qd_egraph;

/* Hot float loops get an AVX2 clone chosen at load where the CPU has it (GCC on x86-64);
 * loops over whole tensors (QD_VEC_CLONES_WIDE) an AVX-512 one too. Short rows keep to
 * AVX2: their 16-wide loops spend more in the tail than they gain (PP-OCR cls, whose rows
 * are 6-96 wide, ran 25 % slower with every loop widened). AVX-512 brings FMA, so every
 * file that uses these macros compiles with fp-contract=off (its #pragma GCC optimize;
 * an optimize attribute here would stop the inlining of the element functions): every
 * clone computes the same values as the baseline one. Not under ThreadSanitizer: the
 * ifunc resolvers would run, instrumented, before its runtime starts. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define QD_VEC_CLONES __attribute__((target_clones("avx2", "default")))
#define QD_VEC_CLONES_WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QD_VEC_CLONES
#define QD_VEC_CLONES_WIDE
#endif

/* Float epilogue fused into a Conv at load (engine/fuse_float.c): steps applied in order
 * to every output value after bias. n == 0: none. QD_EPI_BN (at most one) is inference
 * BatchNormalization: per channel y*sc + sh with sc, sh computed from the constant slots
 * bn[0..3] (scale, B, mean, var) and bn_eps as the BatchNormalization kernel does. */
enum qd_epi_kind {
	QD_EPI_MUL, QD_EPI_ADD, QD_EPI_DIV, QD_EPI_RELU, QD_EPI_CLIP, QD_EPI_HSIG, QD_EPI_SIGMOID,
	QD_EPI_HSWISH, QD_EPI_XCLIP, /* x * clip(x + a, lo, hi) */ QD_EPI_XHSIG, /* x * hsig(x) */
	QD_EPI_BN,
	/* on an Erf node (GELU): y = (x * (erf(x / a) + b)) * c, or erf(x * a) for _MUL */
	QD_EPI_GELU_DIV, QD_EPI_GELU_MUL,
	/* on a LayerNormalization fused from ReduceMean .. Add (fuse_float.c): a = epsilon,
	 * normalised over the last axis (the fused node's proto is not a LayerNormalization) */
	QD_EPI_LAYERNORM,
};
#define QD_EPI_MAX 8
struct qd_epi_step { int kind; float a, b, c; }; /* MUL/ADD/DIV a; CLIP [b, c]; HSIG/XHSIG a*x+b;
						   * XCLIP a, [b, c] */
struct qd_epilogue { int n; struct qd_epi_step s[QD_EPI_MAX]; int bn[4]; float bn_eps; };
/* Apply the epilogue in place to y laid out [N, C, sp]: bias (C values, or NULL) added
 * first, then the steps; bn_s / bn_h: C per-channel BN scale and shift (NULL without a BN
 * step). ops_conv.c; the _ref twin is plain loops. */
void qd_epi_apply(const struct qd_epilogue *ep, float *y, int64_t N, int64_t C, int64_t sp,
		  const float *bias, const float *bn_s, const float *bn_h);
void qd_epi_apply_ref(const struct qd_epilogue *ep, float *y, int64_t N, int64_t C, int64_t sp,
		      const float *bias, const float *bn_s, const float *bn_h);
/* qd_epi_apply with the channel planes split over up to `threads` threads where it pays
 * (same values as qd_epi_apply bit for bit). */
void qd_epi_apply_mt(const struct qd_epilogue *ep, float *y, int64_t N, int64_t C, int64_t sp,
		     const float *bias, const float *bn_s, const float *bn_h, int threads);

struct qd_enode {
	const Onnx__NodeProto *proto;
	const struct qd_op *op;
	char *name;                 /* node name, or "OpType#index" when unnamed */
	int64_t opset;
	int n_in, n_out;
	int *in, *out;              /* slot ids; -1 = absent optional */
	int n_sub;
	struct qd_egraph **sub;     /* subgraphs (If: then, else; Loop: body) */
	const char **sub_attr;      /* attribute name of each subgraph */
	int *free_after; int n_free;/* slots whose last use in this graph is this node */
	void *priv;                 /* prepared by check; freed with priv_free */
	void (*priv_free)(void *);
	int prof_idx;               /* op id for profiling */
	/* load-time fusion (engine/fuse.c): when no hook is set, a node with fused runs
	 * *fused instead (owned here), and a node with fuse_skip is covered by a later fused
	 * node and not run. With a hook every original node runs. */
	struct qd_enode *fused;
	bool fuse_skip;
	struct qd_epilogue epi;     /* Conv: fused float epilogue; Erf: GELU form (fuse_float.c) */
	/* on a fused node: the nodes of g it covers (qd_fuse_attach), for the hook filter */
	int *cover; int n_cover;
	/* on a Conv with a fused epilogue: the epilogue alone (op ConvEpilogue, reading the
	 * Conv's own output), for a hook that wants the Conv output but none after it */
	struct qd_enode *epi_only;
	/* what runs under a hook with a want filter (qd_engine_set_hook_want; all clear
	 * without one): skip this node / run hk_run instead / run hk_after right after it */
	bool hk_skip;
	struct qd_enode *hk_run, *hk_after;
};

struct qd_egraph {
	struct qd_enode *nodes; int n_nodes;
	int *inputs; int n_inputs;   /* graph inputs (slots) */
	int *outputs; int n_outputs; /* graph outputs (slots) */
	int *owned; int n_owned;     /* non-constant slots defined in this graph */
	struct qd_egraph *parent;
	const Onnx__GraphProto *proto;
};

struct qd_slot {
	char *name;
	struct qd_tensor t;
	bool has;        /* t holds a value now */
	bool is_const;   /* initializer / Constant: never freed by the plan */
	bool borrowed;   /* constant whose data points into the model (not freed) */
	int dt;          /* dtype known at load (0 = unknown) */
	struct qd_egraph *owner; /* graph that defines it */
};

struct qd_engine {
	const struct qd_model *m;
	struct qd_engine_opts opts;
	struct qd_slot *slots; int n_slots, cap_slots;
	void *names;                 /* name -> slot hash (engine.c) */
	struct qd_egraph *main;
	qd_engine_hook hook; void *hook_ud;
	size_t live_bytes, peak_bytes, const_bytes;
	struct qd_pool_buf { void *p; size_t cap; } *pool; /* freed buffers kept for reuse */
	int n_pool;
	size_t pool_bytes;           /* bytes held by the pool (capped near the peak) */
	void *scratch; size_t scratch_cap;
	double t_start, deadline;    /* of the current run (qd_now_mono); deadline 0 = none */
	const Onnx__ValueInfoProto **in_vi; /* declared type of each main-graph input slot */
	int *in_sorted;              /* main-graph input positions sorted by name */
	size_t held_bytes;           /* held by kernels outside slots (Loop scan outputs) */
	double prof_time[QD_OP__COUNT];
	long prof_count[QD_OP__COUNT];
	struct qd_tpool *workers;    /* opts.threads > 1: the run's thread pool (common/tpool.c) */
};

/* Kernel context for one node execution. */
#define QD_CTX_MAX_IO 64
struct qd_ctx {
	struct qd_engine *e;
	struct qd_enode *n;
	int n_in, n_out;
	const struct qd_tensor *in[QD_CTX_MAX_IO];   /* NULL = absent */
	struct qd_tensor *out[QD_CTX_MAX_IO];        /* slot tensors (empty until qd_ctx_out) */
	int out_dt[QD_CTX_MAX_IO];                    /* dtype from the out rule (0 unknown) */
	size_t pending;                               /* bytes of outputs allocated so far */
	bool want[QD_CTX_MAX_IO];                     /* output i is connected (out[i] is a
	                                                 discarded tensor when it is not) */
	const volatile int *cancel;
	struct qd_err *err;
};

/* Allocate output i (uninitialised data unless zero) with the given dtype/shape.
 * Returns the tensor or NULL (error set). */
struct qd_tensor *qd_ctx_out(struct qd_ctx *c, int i, int dtype, int ndim, const int64_t *dims);
struct qd_tensor *qd_ctx_out_zero(struct qd_ctx *c, int i, int dtype, int ndim, const int64_t *dims);
/* Output i as a copy of t's shape/dtype and data. */
int qd_ctx_out_copy(struct qd_ctx *c, int i, const struct qd_tensor *t, int ndim, const int64_t *dims);
/* Fails with QD_E<code> and a message prefixed by the node's name; returns -code. */
int qd_ctx_fail(struct qd_ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Required input i (error if absent). */
const struct qd_tensor *qd_ctx_in(struct qd_ctx *c, int i);
/* Engine-owned scratch of at least n bytes, valid until the next call (one per engine;
 * kernels use it for im2col/column buffers). NULL with error set on OOM. */
void *qd_ctx_scratch(struct qd_ctx *c, size_t n);
/* Cancel flag and deadline of the run: 0, or -QD_ECANCELED / -QD_ETIMEOUT with the error
 * set. Kernels that iterate (Loop) call it every iteration; the run loop between nodes. */
int qd_engine_poll(struct qd_engine *e, const volatile int *cancel, struct qd_err *err);
int qd_ctx_poll(struct qd_ctx *c);
/* Memory a kernel is about to hold outside its outputs (beyond what it already holds):
 * fails with QD_ELIMIT when live tensors + constants + scratch + held + extra would exceed
 * max_memory_bytes, or one piece exceeds max_tensor_bytes. On success the bytes are added
 * to e->held_bytes (give them back with qd_ctx_unhold). */
int qd_ctx_hold(struct qd_ctx *c, size_t extra, const char *what);
void qd_ctx_unhold(struct qd_ctx *c, size_t bytes);
/* Whether output i is connected (optional outputs may be absent). */
bool qd_ctx_wants(const struct qd_ctx *c, int i);
/* Run a subgraph with the given inputs bound to its input slots; outputs left in its
 * output slots (read them with qd_engine_slot). */
int qd_engine_run_graph(struct qd_engine *e, struct qd_egraph *g, const volatile int *cancel,
			struct qd_err *err);
struct qd_slot *qd_engine_slot(struct qd_engine *e, int id);
/* Store t (moved: t's name/data taken over) into slot id, freeing the old value. */
void qd_engine_slot_set(struct qd_engine *e, int id, struct qd_tensor *t);
void qd_engine_slot_clear(struct qd_engine *e, int id);
/* Free every non-constant value a graph (and its subgraphs) defines. */
void qd_engine_clear_graph(struct qd_engine *e, struct qd_egraph *g);
size_t qd_engine_const_bytes(const struct qd_engine *e);
/* Per-op-type profile: fn(ud, op_type, seconds, count) for each op type that ran. */
void qd_engine_profile(const struct qd_engine *e, void (*fn)(void *, const char *, double, long),
		       void *ud);

/* ---- tensor helpers ---- */
/* View of a TensorProto's data without copying (raw_data of the exact size and aligned for
 * the dtype, or float_data / double_data / int64_data for those dtypes): fills out with
 * borrowed data (name NULL) and returns true; false when a copy is needed. */
bool qd_tensor_view_proto(const Onnx__TensorProto *p, struct qd_tensor *out);
/* Allocate without zeroing. */
int qd_tensor_alloc_raw(struct qd_tensor *t, const char *name, int dtype, int ndim, const int64_t *dims);
/* Read element k of an integer/bool/float tensor as int64 / double. */
int64_t qd_tensor_get_i64(const struct qd_tensor *t, int64_t k);
double qd_tensor_get_f64(const struct qd_tensor *t, int64_t k);
void qd_tensor_set_f64(struct qd_tensor *t, int64_t k, double v);
void qd_tensor_set_i64(struct qd_tensor *t, int64_t k, int64_t v);
bool qd_dtype_is_float(int dt);
bool qd_dtype_is_int(int dt);
/* double -> int64 without UB: NaN -> 0, out of range saturates. */
static inline int64_t qd_f2i(double v)
{
	if (v != v) return 0;
	if (v >= 9.2233720368547748e18) return INT64_MAX;
	if (v <= -9.2233720368547758e18) return INT64_MIN;
	return (int64_t)v;
}
/* exp for float32 without libm calls so loops vectorise: range reduction by ln2 and a
 * degree-6 polynomial on [-ln2/2, ln2/2] (rel. error ~2e-7); overflow -> inf, underflow
 * -> 0, NaN propagates. */
static inline float qd_expf(float x)
{
	float xc = x > 88.8f ? 88.8f : x < -104.0f ? -104.0f : x;
	xc = x != x ? 0.0f : xc;   /* NaN: no float->int conversion of NaN below */
	/* round to nearest via the 1.5*2^23 trick (roundf is a libm call without SSE4.1) */
	float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	/* 2^n as two factors so n in [-150, 128] stays representable (denormals, FLT_MAX) */
	int32_t n1 = (int32_t)n / 2, n2 = (int32_t)n - n1;
	union { uint32_t u; float f; } b1 = { .u = (uint32_t)(n1 + 127) << 23 }, b2 = { .u = (uint32_t)(n2 + 127) << 23 };
	float v = p * b1.f * b2.f;
	v = x > 88.7228391f ? __builtin_inff() : v;
	v = x < -103.972084f ? 0.0f : v;
	return x != x ? x : v;
}

/* Shapes. Products saturate at INT64_MAX (hostile shapes fail later, no UB). */
int64_t qd_dims_count(int ndim, const int64_t *dims);
void qd_dims_strides(int ndim, const int64_t *dims, int64_t *strides);
/* Broadcast shapes a and b (numpy rules). Returns 0 or -QD_ESHAPE. */
int qd_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out);
/* Strides of an input of shape (n, dims) broadcast to (nout, out): 0 on broadcast axes. */
void qd_broadcast_strides(int n, const int64_t *dims, int nout, const int64_t *out, int64_t *strides);
/* Normalise an axis in [-r, r-1] (r = rank). Returns -1 if out of range. */
int qd_axis(int64_t axis, int rank);
/* "a x b x c" into buf. */
const char *qd_dims_str(int ndim, const int64_t *dims, char *buf, size_t len);

/* Iterate over the output of an n-ary broadcast: fn(ud, out_offset, in_offsets[], count)
 * is called for each innermost run (in_offsets in elements, inner strides in istr[]). */
typedef void (*qd_bcast_fn)(void *ud, int64_t oofs, const int64_t *iofs, const int64_t *istr,
			    int64_t count);
void qd_broadcast_for(int nin, int ndim, const int64_t *odims, int64_t (*istrides)[QD_MAX_DIMS],
		      qd_bcast_fn fn, void *ud);
/* The same with the output split into ranges over the current thread pool (common/tpool.c)
 * from 2^16 elements: for fns that only write their own output run (elementwise ops, not
 * reductions). Each element gets the same operations, so results do not depend on threads. */
void qd_broadcast_for_mt(int nin, int ndim, const int64_t *odims, int64_t (*istrides)[QD_MAX_DIMS],
			 qd_bcast_fn fn, void *ud);

/* ---- GEMM (row-major): C = alpha * op(A) op(B) + beta * C ---- */
void qd_gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
		 const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
		 float *C, int64_t ldc);
void qd_gemm_f32_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
		     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
		     float *C, int64_t ldc);

/* Conv geometry shared by float Conv and quantized convs (ops_conv.c). Fills from the
 * node attributes and the input/weight shapes; errors name the node. */
struct qd_conv_geom {
	int nsp;                    /* spatial dims (1..3) */
	int64_t N, C, M, group;     /* batch, in channels, out channels */
	int64_t in[3], k[3], out[3], stride[3], dil[3], pad_b[3], pad_e[3];
};
int qd_conv_geom(struct qd_ctx *c, const struct qd_tensor *x, const struct qd_tensor *w,
		 struct qd_conv_geom *g);
/* im2col for one image and one group: col is [C/group * prod(k)] x [(r1-r0) * out_w] for
 * the flattened output rows (od, oh) in [r0, r1). */
void qd_im2col_f32(const struct qd_conv_geom *g, const float *x, float *col, int64_t r0, int64_t r1);
/* Scratch bytes qd_conv_f32 needs for its column buffer (0 if none). */
size_t qd_conv_work_bytes(const struct qd_conv_geom *g);
/* Float conv / transposed conv on a geometry (internally 3-D: unused leading spatial dims
 * are 1), optimised and plain reference. Return 0 or -QD_ENOMEM. */
int qd_conv_f32(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias, float *y,
		float *work /* qd_conv_work_bytes() or NULL */);
/* The same with up to `threads` threads where it pays (today the depthwise path: output
 * planes split over threads; results equal the single-threaded ones bit for bit). */
int qd_conv_f32_mt(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias, float *y,
		   float *work, int threads);
/* Fused GELU of an Erf node (ops_elementwise.c; s: its QD_EPI_GELU_* step) and _ref twin. */
void qd_gelu_f32(const struct qd_epi_step *s, const float *X, float *O, int64_t n);
void qd_gelu_f32_ref(const struct qd_epi_step *s, const float *X, float *O, int64_t n);
/* One float Softmax / LogSoftmax row and one LayerNormalization row (ops_nn.c), optimised
 * and plain _ref twins; see there. */
void qd_softmax_row_f32(const float *X, float *Y, int64_t n, bool log_sm);
void qd_softmax_row_f32_ref(const float *X, float *Y, int64_t n, bool log_sm);
/* LayerNormalization row: ORT 1.30's AVX2 (MLAS) arithmetic bit for bit for n >= 8, the
 * _ref computation below; *mean and *inv get the row's mean and 1 / stddev. */
void qd_layer_norm_row_f32(const float *X, float *Y, int64_t n, const float *S, int64_t ns,
			   const float *B, int64_t nb, float eps, float *mean, float *inv);
void qd_layer_norm_row_f32_ref(const float *X, float *Y, int64_t n, const float *S, int64_t ns,
			       const float *B, int64_t nb, float eps, float *mean, float *inv);
/* OpenBLAS threads for one engine run (ops_linalg.c): exactly `threads`; with 1 the idle
 * worker threads are stopped so they do not spin. Every begin is paired with an end. */
void qd_blas_threads_begin(int threads);
void qd_blas_threads_end(int threads);
void qd_conv_f32_ref(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias, float *y);
int qd_conv_transpose_f32(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias, float *y,
			  float *work /* (M/group)*prod(k)*prod(in) floats or NULL */);
void qd_conv_transpose_f32_ref(const struct qd_conv_geom *g, const float *x, const float *w, const float *bias, float *y);

/* ---- load-time fusions (engine/fuse.c) ---- */
/* Finds fusable chains in g (e.g. DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul)
 * and attaches fused nodes to them (qd_enode.fused / fuse_skip). 0 or -QD_ENOMEM. */
int qd_fuse_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err);
void qd_enode_release(struct qd_enode *n);
/* Load-time fusion helpers shared by fuse.c, fuse_qdq.c and fuse_float.c.
 * The slot index of the graph a fusion pass looks at (main graph only): */
struct qd_fuse_index {
	struct qd_engine *e;
	struct qd_egraph *g;
	int *uses;      /* per slot: readers (nodes of g and of its subgraphs, subgraph outputs) */
	int *cons;      /* per slot: index in g of the last node of g reading it, -1 */
	int *prod;      /* per slot: index in g of its producer, -1 */
	bool *is_out;   /* per slot: graph output of g (not counted in uses) */
	int n_fused;    /* fused nodes attached with qd_fuse_attach_op */
};
/* Fills x for g (arrays new: qd_fuse_index_free, also after a failure). 0 or -QD_ENOMEM. */
int qd_fuse_index_init(struct qd_fuse_index *x, struct qd_engine *e, struct qd_egraph *g,
		       struct qd_err *err);
void qd_fuse_index_free(struct qd_fuse_index *x);
/* n (may be NULL) runs op id and is not already fused or skipped. */
bool qd_fuse_is_op(const struct qd_enode *n, enum qd_op_id id);
/* Node i of the graph (borrow), NULL for -1. */
struct qd_enode *qd_fuse_node(const struct qd_fuse_index *x, int i);
/* Input slot i of n (may be NULL), -1 when absent. */
int qd_fuse_in(const struct qd_enode *n, int i);
/* Slot read once (by a node of g), not an output, not a constant: that reader, else -1. */
int qd_fuse_only_reader(const struct qd_fuse_index *x, int id);
/* The constant tensor in slot id (borrow), NULL when it is not a constant with a value. */
const struct qd_tensor *qd_fuse_const(const struct qd_fuse_index *x, int id);
/* cover[0..n) are the nodes of g a fused node replaces, including the node `at` it is
 * attached to.
 * qd_fuse_node_new: new node taking `name` (new; freed on failure) with n_in input slots,
 * one output slot and room for the cover nodes' merged free lists; NULL on OOM.
 * qd_fuse_node_like: the same, running like `like` (its proto, op, opset and profile row)
 * on its first n_in inputs (copied; n_in <= like->n_in).
 * qd_fuse_attach: g->nodes[at].fused = fn, fn frees what the cover nodes freed, every
 * cover node but `at` is skipped.
 * qd_fuse_attach_op: a new node "<name of last> (fused <op>)" running op id (opset 1) with
 * proto on in[0..n_in), writing last's output, attached to last; x->n_fused counts it.
 * 0 or -QD_ENOMEM. */
struct qd_enode *qd_fuse_node_new(struct qd_egraph *g, const int *cover, int n, int n_in, char *name);
struct qd_enode *qd_fuse_node_like(struct qd_egraph *g, const struct qd_enode *like, const int *cover,
				   int n, int n_in, char *name);
void qd_fuse_attach(struct qd_egraph *g, struct qd_enode *fn, int at, const int *cover, int n);
int qd_fuse_attach_op(struct qd_fuse_index *x, int last, enum qd_op_id id, const Onnx__NodeProto *proto,
		      const int *in, int n_in, const int *cover, int n_cover, struct qd_err *err);
/* QDQ groups (engine/fuse_qdq.c): DequantizeLinear -> Conv / MatMul / Gemm / Add / Mul /
 * pooling / Sigmoid / LeakyRelu / Softmax / Concat -> QuantizeLinear become the QLinear
 * kernels and DQ -> data-movement op -> Q runs the op on the 8-bit data, under ONNX
 * Runtime's QDQ selector rules, so QDQ models give ORT's values. Called first by
 * qd_fuse_graph; same conventions. 0 or -QD_ENOMEM. */
int qd_fuse_qdq_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err);
/* Float fusions (engine/fuse_float.c): Conv followed by scalar Mul/Add/Div, Relu, Clip,
 * HardSigmoid, Sigmoid, HardSwish (also x * Clip(x + 3, 0, 6) / 6) gets a Conv with an
 * epilogue. Same conventions as qd_fuse_graph. 0 or -QD_ENOMEM. */
int qd_fuse_float_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err);

#endif
