/* onnx/ — ONNX model I/O over protobuf-c (C code generated at build time from the
 * system's /usr/include/onnx/onnx.proto), external data, graph index, Constant→initializer
 * normalisation, model checks and the model summary served by the API.
 *
 * Ownership: functions marked "new" return memory the caller frees with the named
 * function; "borrow" pointers are valid while the named owner lives. Every protobuf-c
 * message reachable from a qd_model is allocated with the system malloc, so nodes,
 * tensors and strings created here can be attached to a loaded model and are freed by
 * qd_model_free() (protobuf_c_message_free_unpacked with the default allocator). */
#ifndef QD_ONNX_H
#define QD_ONNX_H

#include "qd.h"
#include "onnx.pb-c.h"

struct json_t;

/* ONNX TensorProto.DataType values (onnx.proto, plus newer ones the 1.12 proto lacks). */
enum qd_dtype {
	QD_DT_UNDEFINED = 0, QD_DT_FLOAT = 1, QD_DT_UINT8 = 2, QD_DT_INT8 = 3, QD_DT_UINT16 = 4,
	QD_DT_INT16 = 5, QD_DT_INT32 = 6, QD_DT_INT64 = 7, QD_DT_STRING = 8, QD_DT_BOOL = 9,
	QD_DT_FLOAT16 = 10, QD_DT_DOUBLE = 11, QD_DT_UINT32 = 12, QD_DT_UINT64 = 13,
	QD_DT_COMPLEX64 = 14, QD_DT_COMPLEX128 = 15, QD_DT_BFLOAT16 = 16,
	QD_DT_FLOAT8E4M3FN = 17, QD_DT_FLOAT8E4M3FNUZ = 18, QD_DT_FLOAT8E5M2 = 19,
	QD_DT_FLOAT8E5M2FNUZ = 20, QD_DT_UINT4 = 21, QD_DT_INT4 = 22,
};
size_t qd_dtype_size(int dtype);           /* bytes per element, 0 for string/4-bit/unknown */
const char *qd_dtype_name(int dtype);      /* "float32", "uint8", ... ; "unknown" */
int qd_dtype_from_name(const char *name);  /* inverse; QD_DT_UNDEFINED if unknown */

struct qd_model {
	Onnx__ModelProto *proto;   /* owned */
	char *path;                /* file it was loaded from, or NULL (owned) */
	char *base_dir;            /* directory external data is resolved against (owned) */
};

struct qd_load_opts {
	bool keep_external;        /* true: leave external-data tensors unresolved (just
	                              validate their paths); false (default): read them into
	                              raw_data and drop the external-data reference */
	uint64_t max_bytes;        /* refuse models larger than this (0 = no limit) */
};

/* Load a model from a file (mmap) or a buffer. base_dir may be NULL for buffers
 * (external data then is an error). opts may be NULL. out: new, qd_model_free(). */
int qd_model_load_file(const char *path, const struct qd_load_opts *opts,
		       struct qd_model **out, struct qd_err *err);
int qd_model_load_buf(const void *buf, size_t len, const char *base_dir,
		      const struct qd_load_opts *opts, struct qd_model **out, struct qd_err *err);
void qd_model_free(struct qd_model *m);
/* Read every tensor left external by keep_external into raw_data (the references are
 * dropped); a no-op for a model without any. For passes and checks that need every weight
 * in memory. */
int qd_model_load_external(struct qd_model *m, struct qd_err *err);
/* Bytes (dims x dtype) of the initializers still external (keep_external); 0 when none. */
uint64_t qd_model_external_tensor_bytes(const struct qd_model *m);
/* true when t's data is in an external file (loaded with keep_external, not read). */
bool qd_tensor_is_external(const Onnx__TensorProto *t);
/* qd_tensor_to_float that also reads an external tensor, alone, from m's directory
 * (confined like the loader; a float32 tensor is read straight into *out). *out new. */
int qd_model_tensor_to_float(const struct qd_model *m, const Onnx__TensorProto *t, float **out, int64_t *n,
			     struct qd_err *err);
/* Rows [r0, r1) of a 2-D float32 tensor, inline or external (one contiguous read), into
 * out (caller's, (r1 - r0) x dims[1] floats). */
int qd_model_tensor_rows(const struct qd_model *m, const Onnx__TensorProto *t, int64_t r0, int64_t r1, float *out,
			 struct qd_err *err);
/* Empty model (graph "main", producer "quantd") importing ai.onnx at opset. new. */
struct qd_model *qd_model_new(int64_t ir_version, int64_t opset);

#define QD_EXT_DEFAULT_THRESHOLD 1024
struct qd_save_opts {
	bool external_data;          /* write tensors >= size_threshold to an external file;
	                                int64 tensors under QD_EXT_DEFAULT_THRESHOLD bytes
	                                (shape data ORT reads at load) always stay inline */
	const char *external_name;   /* file name next to the model; NULL = "<model file>.data" */
	size_t size_threshold;       /* 0 means the default QD_EXT_DEFAULT_THRESHOLD bytes */
	uint64_t auto_external_bytes; /* switch to external data above this serialized size;
	                                 0 = env QD_ONNX_EXTERNAL_AUTO_BYTES, else 2 GiB - 1 */
};
/* Serialize. External data is switched on automatically when the message would exceed
 * protobuf's 2 GiB limit. The file is written atomically (tmp + fsync + rename), streamed
 * (no second copy of the model in memory). The in-memory model keeps its data inline.
 * Tensors left external by keep_external: with external data out they are passed through
 * (their file ranges copied in 1 MiB chunks, never read whole; the bytes, offsets and
 * message are those a fully loaded model would give) unless they fall under the
 * threshold or point into the data file being replaced (then read in); without external
 * data out they are read in first (the automatic switch counts their bytes). */
int qd_model_save_file(struct qd_model *m, const char *path, const struct qd_save_opts *opts,
		       struct qd_err *err);
/* Serialize into memory (no external data). out->data is new (qd_buf_free). */
int qd_model_serialize(const struct qd_model *m, struct qd_buf *out, struct qd_err *err);

/* Structural check: graph inputs/outputs/initializers/nodes, every node input is
 * produced (or is a graph input / initializer / outer-scope name / ""), no cycles,
 * unique output names, sane tensor sizes; walks subgraphs. Clear error, field = node name. */
int qd_model_check(const struct qd_model *m, struct qd_err *err);

/* Opsets: version for a domain ("" and "ai.onnx" are the same), 0 when not imported. */
int64_t qd_model_opset(const struct qd_model *m, const char *domain);
int qd_model_set_opset(struct qd_model *m, const char *domain, int64_t version);

/* Turn Constant nodes with a tensor value (value, value_float(s), value_int(s)) into
 * initializers, in the main graph and in subgraphs. Returns the number converted (>= 0)
 * or a negative error. */
int qd_model_normalize_constants(struct qd_model *m, struct qd_err *err);

/* JSON summary for the API: {"ir_version", "producer", "opsets": {domain: v},
 * "inputs": [{"name","dtype","shape":[int|"sym"]}], "outputs": [...],
 * "op_histogram": {"Conv": 12, ...}, "nodes", "initializers", "parameters"}.
 * Returns a new reference (json_decref). */
struct json_t *qd_model_summary_json(const struct qd_model *m);
/* The inverse for the graph's interface: a model without nodes whose inputs and outputs
 * are the summary's (names, dtypes, shapes with their dim_params), for submit-time checks
 * against a stored model's summary. NULL on OOM. */
struct qd_model *qd_model_from_summary_json(const struct json_t *summary);

/* ---- tensors ---- */
int64_t qd_tensor_numel(const Onnx__TensorProto *t);
/* Copy the tensor's values converted to float32 (float, double, float16, bfloat16, all
 * integer types). *out new (free()). */
int qd_tensor_to_float(const Onnx__TensorProto *t, float **out, int64_t *n, struct qd_err *err);
/* Copy the values converted to int64 (integer and bool types). *out new (free()). */
int qd_tensor_to_int64(const Onnx__TensorProto *t, int64_t **out, int64_t *n, struct qd_err *err);
/* New tensor with raw_data = copy of data (nbytes). name copied. Returns NULL on OOM. */
Onnx__TensorProto *qd_tensor_new(const char *name, int dtype, const int64_t *dims, size_t ndims,
				 const void *data, size_t nbytes);
void qd_tensor_free(Onnx__TensorProto *t);

/* New tensor ValueInfo; dims[i] < 0 is an unknown dim, dims NULL with ndims 0 a scalar. */
Onnx__ValueInfoProto *qd_value_info_new(const char *name, int dtype, const int64_t *dims, size_t ndims);

/* ---- nodes and attributes ---- */
/* New node; strings are copied; domain may be NULL or "". */
Onnx__NodeProto *qd_node_new(const char *op_type, const char *domain, const char *name,
			     const char *const *inputs, size_t n_in,
			     const char *const *outputs, size_t n_out);
void qd_node_free(Onnx__NodeProto *n);
int qd_node_set_attr_int(Onnx__NodeProto *n, const char *name, int64_t v);
int qd_node_set_attr_float(Onnx__NodeProto *n, const char *name, float v);
int qd_node_set_attr_string(Onnx__NodeProto *n, const char *name, const char *v);
int qd_node_set_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v, size_t count);
int qd_node_set_attr_floats(Onnx__NodeProto *n, const char *name, const float *v, size_t count);
int qd_node_set_attr_tensor(Onnx__NodeProto *n, const char *name, Onnx__TensorProto *t /* owned */);
/* Deep copy of an attribute onto another node (for copying Conv attributes etc). */
int qd_node_copy_attr(Onnx__NodeProto *dst, const Onnx__AttributeProto *a);
/* Lookups; borrow. */
const Onnx__AttributeProto *qd_node_attr(const Onnx__NodeProto *n, const char *name);
int64_t qd_node_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float qd_node_attr_float(const Onnx__NodeProto *n, const char *name, float dflt);
/* The bytes of string attributes are NUL-terminated one past len for models from
 * qd_model_load_* and attributes from qd_node_set_attr_string / qd_node_copy_attr; an
 * AttributeProto built by hand must do the same before this getter is used on it. */
const char *qd_node_attr_string(const Onnx__NodeProto *n, const char *name, const char *dflt);
/* ints attribute; returns count, *v borrowed; -1 if absent. */
long qd_node_attr_ints(const Onnx__NodeProto *n, const char *name, const int64_t **v);
/* domain normalised: "" for ai.onnx */
const char *qd_node_domain(const Onnx__NodeProto *n);

/* ---- graph editing (take ownership of the added message) ---- */
int qd_graph_add_node(Onnx__GraphProto *g, Onnx__NodeProto *n);
int qd_graph_insert_node(Onnx__GraphProto *g, size_t pos, Onnx__NodeProto *n);
int qd_graph_add_initializer(Onnx__GraphProto *g, Onnx__TensorProto *t);
/* Remove (and free) nodes for which drop[i] is true; keeps order of the rest. */
void qd_graph_remove_nodes(Onnx__GraphProto *g, const bool *drop);
/* Remove initializers no node (in this graph or its subgraphs) and no graph output uses. */
int qd_graph_remove_unused_initializers(Onnx__GraphProto *g);
/* Reorder g->node topologically (stable). Error on cycle. */
int qd_graph_toposort(Onnx__GraphProto *g, struct qd_err *err);

/* ---- name map ---- */
/* Names -> long, owning copies of the names (onnx/node.c: the same open-addressing table
 * as the onnx/ string map). Zero-initialised it is empty; a name set is a map whose
 * values are not read. */
struct qd_namemap {
	const char **keys;    /* new (owned), NULL = empty slot */
	long *vals;
	size_t cap, len;
};
/* The value of name (borrow, valid until the next put), NULL if absent or name is NULL. */
long *qd_namemap_get(const struct qd_namemap *m, const char *name);
/* name = v (added with a copy of name when absent). 0 or -QD_ENOMEM. */
int qd_namemap_put(struct qd_namemap *m, const char *name, long v);
/* name += d (an absent name counts as 0). 0 or -QD_ENOMEM. */
int qd_namemap_add(struct qd_namemap *m, const char *name, long d);
void qd_namemap_free(struct qd_namemap *m);

/* ---- graph index ---- */
/* Name → producer / consumers / initializer / value_info, topological order, unique names.
 * parent: index of the enclosing graph for subgraphs (outer-scope lookups), or NULL.
 * The index borrows g; rebuild it after editing the graph (except via the helpers that
 * say they keep it up to date). */
struct qd_graph_index;
int qd_index_build(Onnx__GraphProto *g, const struct qd_graph_index *parent,
		   struct qd_graph_index **out, struct qd_err *err);
void qd_index_free(struct qd_graph_index *ix);
Onnx__GraphProto *qd_index_graph(const struct qd_graph_index *ix);
/* producer node of a value name in this graph (NULL for graph inputs/initializers). */
Onnx__NodeProto *qd_index_producer(const struct qd_graph_index *ix, const char *name);
/* consumers in this graph (and nodes whose subgraphs read the name); count returned, *nodes borrowed. */
size_t qd_index_consumers(const struct qd_graph_index *ix, const char *name, Onnx__NodeProto *const **nodes);
/* initializer by name, searching enclosing graphs too. */
Onnx__TensorProto *qd_index_initializer(const struct qd_graph_index *ix, const char *name);
/* value info (graph input, output, or value_info) by name, enclosing graphs too. */
Onnx__ValueInfoProto *qd_index_value_info(const struct qd_graph_index *ix, const char *name);
bool qd_index_is_graph_input(const struct qd_graph_index *ix, const char *name);
bool qd_index_is_graph_output(const struct qd_graph_index *ix, const char *name);
/* node indices (into g->node) in topological order; count returned; borrow. */
size_t qd_index_topo(const struct qd_graph_index *ix, const size_t **order);
/* A name not used anywhere in the graph (or enclosing graphs), derived from base:
 * base itself if free, else base_1, base_2, ...; the name is reserved. new (free()). */
char *qd_index_unique_name(struct qd_graph_index *ix, const char *base);
/* Subgraphs of a node (If then/else, Loop/Scan body): count, *graphs borrowed. */
size_t qd_node_subgraphs(const Onnx__NodeProto *n, Onnx__GraphProto **graphs, size_t cap);

#endif
