/* passes/ — the pass registry: one const vtable per Olive pass type (name, parameter
 * schema, submit-time check, run), the parameter resolver shared by validation, the runner
 * and the search module, and the JSON rendering of every schema for GET /v1/passes.
 *
 * How to add a pass:
 *  1. Add a row to passes/passes.def (Olive's exact type name, implemented flag).
 *  2. Add its parameter table qd_params_<x>[] in passes/registry.c (Olive's names and
 *     defaults from reference/olive.md; searchable values as a JSON array text).
 *  3. Write passes/<x>.c with `int qd_pass_run_<x>(...)` (qd_pass_run_fn) and, if it has
 *     rules beyond types and enums, `qd_pass_check_<x>` (qd_pass_check_fn); declare both
 *     below. The run function edits the model in place and must leave a model ONNX
 *     Runtime accepts (call qd_pass_validate_output() at its end). A quantizing pass
 *     takes its per-op facts (op types, default selection, per-channel axes, which
 *     rewrite) from the op-quantizer table passes/op_rules.def, adding its columns there,
 *     rather than from op-name lists of its own.
 *  4. Flip "implemented" to true in passes.def; bump QD_PASS__COUNT's static_assert
 *     if you added a row (registry.c checks it).
 *  5. Unit test in tests/unit/test_passes_<x>.c and an ORT comparison in tests/passes/.
 */
#ifndef QD_PASSES_H
#define QD_PASSES_H

#include "qd.h"
#include "onnx/onnx.h"
#include "passes/workflow.h"
#include <jansson.h>

enum qd_pass_type {
#define QD_PASS(id, name, impl, params, check, run) QD_PASS_##id,
#include "passes/passes.def"
#undef QD_PASS
	QD_PASS__COUNT
};

enum qd_param_type {
	QD_PT_BOOL, QD_PT_INT, QD_PT_FLOAT, QD_PT_STRING, QD_PT_ENUM, QD_PT_STRLIST, QD_PT_DICT,
	QD_PT_ANY,   /* any JSON (data_config: name or object; int-or-list sizes) */
};
const char *qd_param_type_name(enum qd_param_type t);  /* "bool", "int", ... */
/* true when s is one of the '|'-separated words of list ("a|b|c"; NULL list: none) */
bool qd_pass_choice_has(const char *list, const char *s);

/* One parameter. Texts are JSON: dflt "null" means unset (Olive's None). */
struct qd_param {
	const char *name;
	enum qd_param_type type;
	const char *dflt;       /* JSON text of the default value */
	const char *search;     /* JSON array text of Olive's search defaults, or NULL */
	const char *choices;    /* QD_PT_ENUM: allowed values separated by '|'; else NULL */
	const char *desc;
};

/* Handed to a running pass. */
struct qd_pass_ctx {
	const char *job_id;                        /* may be NULL */
	const char *name;                          /* the pass's key in the workflow */
	const struct qd_workflow_hooks *hooks;     /* may be NULL */
	json_t *stats;                             /* borrow: object the pass adds figures to */
	const json_t *workflow;                    /* borrow: the whole workflow (data_configs) */
	const json_t *data_paths;                  /* borrow: dataset reference → file, or NULL
	                                              (references are paths: quantd run) */
	int threads;                               /* engine threads (0 = 1) */
	size_t max_tensor_bytes, max_memory_bytes; /* engine limits (struct qd_workflow_req) */
	double max_seconds;
};
/* Log one line for the pass (qd_log + the workflow's log hook). */
void qd_pass_log(struct qd_pass_ctx *c, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

struct qd_dataset;
/* Open the dataset a pass's data_config value (a data_configs name or an inline config)
 * refers to and bind it to m's inputs (engine/dataset.h). *ds new (qd_dataset_free);
 * *batch_size from the config (1 when unset). field names the parameter in errors. */
int qd_pass_open_data(struct qd_pass_ctx *c, const struct qd_model *m, const json_t *data_config,
		      const char *field, struct qd_dataset **ds, int64_t *batch_size, struct qd_err *err);
/* Batches of a bound dataset for a model's graph inputs: batch_size samples at a time
 * (the model's fixed first dimension wins), at most limit samples (0 = all). An array of
 * rank input rank + 1 holds one whole input per sample (fed one sample at a time). */
struct qd_batches {
	const struct qd_dataset *ds;
	const Onnx__GraphProto *g;
	const char **names;
	const struct qd_tensor **arr;
	int *in_rank;
	size_t n;
	int64_t pos, end, bs;
};
int qd_batches_init(struct qd_batches *b, const struct qd_dataset *ds, const Onnx__GraphProto *g,
		    int64_t batch_size, int64_t limit, struct qd_err *err);
/* qd_calib_next_fn: 1 with a batch in *in (new), 0 at the end, negative error. */
int qd_batches_next(void *ud, struct qd_tensor **in, size_t *n_in, struct qd_err *err);
void qd_batches_free(struct qd_batches *b);

/* Small helpers every quantizing pass uses. */
bool qd_json_list_has(const json_t *list, const char *s);       /* list of strings holds s */
bool qd_pass_opt_bool(const json_t *obj, const char *key, bool dflt);  /* obj[key] if bool */
const json_t *qd_pass_opt_list(const json_t *obj, const char *key);    /* obj[key] if array */
const char *qd_node_label(const Onnx__NodeProto *n);             /* name, else first output */
void qd_pass_count(json_t *counts, const char *op);              /* counts[op] += 1 */
/* A node left in float: appended to skipped ({node, op, reason}, at most 200) and logged
 * at lvl as "node 'N' (Op) left in float: reason". */
void qd_pass_skip(struct qd_pass_ctx *c, json_t *skipped, const Onnx__NodeProto *n, enum qd_log_level lvl,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Submit-time check of calibration_sampling_size candidates: each null, a positive integer
 * or a list of one (Olive's [N]); the error names passes.<pass>.calibration_sampling_size. */
int qd_pass_check_sampling_size(const char *pass_name, const json_t *space, struct qd_err *err);
/* A parameter as the user wrote it in a pass entry: at its top level or in Olive's legacy
 * "config" nesting (NULL when absent). Borrow. */
const json_t *qd_pass_entry_param(const json_t *entry, const char *key);
/* The running pass's parameter as the user wrote it (the first alternative of a list;
 * NULL when absent or "DEFAULT_VALUE"): tells a default from a value given on purpose. */
struct qd_pass_ctx;
const json_t *qd_pass_user_value(const struct qd_pass_ctx *c, const char *key);

/* Submit-time checks of the external-data parameters (save_as_external_data & co). */
int qd_pass_check_external(const char *pass_name, const json_t *space, struct qd_err *err);

/* params: the resolved configuration (every schema parameter present; null = unset). */
typedef int (*qd_pass_run_fn)(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			      struct qd_err *err);
/* space: every parameter → non-empty array of candidate values (see qd_pass_resolve). */
typedef int (*qd_pass_check_fn)(const char *pass_name, const json_t *space, struct qd_err *err);

struct qd_pass_vt {
	const char *name;              /* Olive type name */
	bool implemented;
	const struct qd_param *params;
	size_t n_params;
	qd_pass_check_fn check;        /* may be NULL */
	qd_pass_run_fn run;            /* NULL when not implemented */
};

extern const struct qd_pass_vt qd_pass_table[QD_PASS__COUNT];

/* Case-insensitive lookup by Olive type name (Olive's registry is case-insensitive);
 * NULL if unknown. Borrow (static). */
const struct qd_pass_vt *qd_pass_find(const char *type_name);
const struct qd_param *qd_pass_param(const struct qd_pass_vt *vt, const char *name);

/* Resolve one pass's user config ({"type": ..., params...} or Olive's older
 * {"type": ..., "config": {params}}) against the schema, Olive §2.2:
 *   absent or "DEFAULT_VALUE"  → [default]
 *   "SEARCHABLE_VALUES"        → the search defaults ([default] if there are none)
 *   a list for a scalar-typed parameter → those values, each type-checked (a search)
 *   anything else              → [value], type-checked
 * *space (new) maps every schema parameter to a non-empty array of candidates.
 * Errors: unknown parameter (field "passes.<name>.<param>"), wrong type or enum value.
 * Does not run the pass's check function. */
int qd_pass_resolve(const struct qd_pass_vt *vt, const char *pass_name, const json_t *user,
		    json_t **space, struct qd_err *err);
/* The same with Olive's search features:
 *   an Olive SearchParameter object ({"olive_parameter_type": "SearchParameter", "type":
 *   "Categorical" | "Boolean" | "Conditional" | "ConditionalDefault", "support",
 *   "parents", "default"}) → its values (a Conditional: every value a branch allows);
 *   flags QD_RESOLVE_SEARCH_UNSET: an absent parameter takes its search values.
 * *conds (new, may be NULL) maps each conditional parameter to its rule {"parents",
 * "support" (nested one level per parent, keyed by the parent value's text), "default"}
 * whose leaves are values, lists, Categorical objects, QD_PASS_IGNORED (back to the
 * default), QD_PASS_INVALID (the point is not run) or QD_PASS_ANY (built-in rules:
 * anything the space holds); quantd's own rules (OnnxQuantization's static-only
 * parameters ignored when quant_mode is dynamic) are included. */
#define QD_RESOLVE_SEARCH_UNSET 1u
#define QD_PASS_IGNORED "OLIVE_IGNORED_PARAM_VALUE"
#define QD_PASS_INVALID "OLIVE_INVALID_PARAM_VALUE"
#define QD_PASS_ANY "QUANTD_ANY_VALUE"
int qd_pass_resolve_ex(const struct qd_pass_vt *vt, const char *pass_name, const json_t *user, unsigned flags,
		       json_t **space, json_t **conds, struct qd_err *err);
bool qd_pass_is_search_param(const json_t *v);
/* One configuration from a space: the first candidate of each parameter. new. */
json_t *qd_pass_space_first(const json_t *space);

/* Every pass and its schema: {"passes": [{"type", "implemented", "parameters": [{"name",
 * "type", "default", "search_values", "allowed_values", "description"}]}]}. new. */
json_t *qd_passes_json(void);

/* Known ORT extra_options keys (reference/ort_quantization.md §2.3). */
struct qd_extra_option {
	const char *key;
	enum qd_param_type type;
	bool dynamic;      /* honoured by our OnnxDynamicQuantization */
	const char *desc;
};
const struct qd_extra_option *qd_extra_option_find(const char *key);
/* Validate an extra_options object: unknown keys and wrong types are errors; with
 * dynamic_only, known keys our dynamic pass does not implement are errors too. field_prefix
 * is e.g. "passes.q.extra_options". */
int qd_extra_options_check(const json_t *opts, bool dynamic_only, const char *field_prefix,
			   struct qd_err *err);

/* After a pass: qd_model_check, no NaN/Inf in float initializers, and every node's
 * (domain, op, opset) is one ONNX Runtime's CPU provider implements for the quantized
 * types we emit (table in passes/ort_support.def). */
int qd_pass_validate_output(const struct qd_model *m, struct qd_err *err);

/* The input model path named inside a workflow (input_model.model_path,
 * input_model.config.model_path or "model"), or NULL. Borrow (from workflow). */
const char *qd_workflow_model_path(const json_t *workflow);

/* Pass implementations (passes/<x>.c). */
int qd_pass_check_onnx_quantization(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_onnx_quantization(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
				  struct qd_err *err);
int qd_pass_check_static(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_static(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
		       struct qd_err *err);
int qd_pass_check_dynamic(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_dynamic(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			struct qd_err *err);
/* Weight-only passes → MatMulNBits (passes/weight_only.c). OnnxMatMulNBits is quantd's
 * name for OnnxMatMul4Quantizer with a bits parameter (same run function). */
int qd_pass_check_blockwise_rtn(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_blockwise_rtn(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			      struct qd_err *err);
int qd_pass_check_hqq(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_hqq(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err);
int qd_pass_check_matmul4(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_check_matmul_nbits(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_matmul4(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err);
/* true when the pass run with cfg reads weights left external (qd_load_opts.keep_external)
 * itself, one at a time (qd_model_tensor_to_float): the weight-only passes (GPTQ / AWQ read
 * them all in before calibrating) and IncQuantization / IncStaticQuantization with approach
 * weight_only and no metric. The workflow reads every external weight into memory before
 * any other pass (qd_model_load_external). */
bool qd_pass_reads_external(const struct qd_pass_vt *vt, const json_t *cfg);

/* IncQuantization, IncDynamicQuantization, IncStaticQuantization (passes/inc.c): one pair
 * for the three rows, translated onto the static / dynamic / weight-only passes. */
int qd_pass_check_inc(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_inc(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err);
/* SmoothQuant on m (passes/inc.c; INC's recipe, and OnnxStaticQuantization's SmoothQuant
 * extra option): args is smooth_quant_args (alpha number / "auto" / list, folding,
 * scales_per_op, op_types, calib_iter, auto_alpha_args; borrow), calibration from
 * data_config (at most limit samples); log (may be NULL) gets "smooth_quant". */
int qd_smooth_quant(struct qd_pass_ctx *pc, struct qd_model *m, const json_t *data_config, const json_t *args,
		    int64_t limit, json_t *log, struct qd_err *err);

/* VitisAIQuantization (passes/vitis.c): power-of-two scales on the static pass. */
int qd_pass_check_vitis_ai(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_vitis_ai(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err);
int qd_pass_check_qnn_preprocess(const char *pass_name, const json_t *space, struct qd_err *err);
/* Submit time: the QnnPreprocess / DynamicToFixedShape parameters that name graph inputs
 * and outputs (input_name / input_shape, dynamic_input_shapes, channel-last lists) checked
 * in pass order against skel, the model's interface (qd_model_from_summary_json; changed
 * as the passes would change it): the run-time errors, before the job is queued. */
struct qd_model;
int qd_qnn_check_io(const json_t *workflow, struct qd_model *skel, struct qd_err *err);
int qd_pass_run_qnn_preprocess(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			       struct qd_err *err);
int qd_pass_check_dynamic_to_fixed_shape(const char *pass_name, const json_t *space, struct qd_err *err);
int qd_pass_run_dynamic_to_fixed_shape(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
				       struct qd_err *err);

#endif
