/* Private helpers shared by the onnx/ files (not part of the public interface):
 * data type table, tensor size checks, float16 conversions, subgraph walking, string sets. */
#ifndef QD_ONNX_INTERNAL_H
#define QD_ONNX_INTERNAL_H

#include "onnx/onnx.h"

#include <math.h>

/* Typed TensorProto field that stores a data type when raw_data is not used. */
enum { QD_TF_NONE, QD_TF_FLOAT, QD_TF_INT32, QD_TF_INT64, QD_TF_DOUBLE, QD_TF_UINT64, QD_TF_STRING };
struct qd_dtype_info { const char *name; size_t size; int field; };
const struct qd_dtype_info *qd_dtype_info(int dtype); /* NULL if unknown */

int64_t qd_dims_numel(const int64_t *dims, size_t n);      /* -1 on negative/overflow */
int64_t qd_dtype_nbytes(int dtype, int64_t numel);          /* -1 if not fixed size */
size_t qd_tensor_typed_count(const Onnx__TensorProto *t, int field);
/* dims/type/data-size consistency of one tensor (inline data); clear error naming it. */
int qd_tensor_check_data(const Onnx__TensorProto *t, struct qd_err *err);
float qd_half_to_float(uint16_t h);
uint16_t qd_float_to_half(float f);
float qd_bfloat16_to_float(uint16_t b);

/* Maximum nesting of messages accepted from the wire (graphs in attributes in nodes...). */
#define QD_ONNX_MAX_DEPTH 64

/* Visit every graph: g itself, then each subgraph of each node, depth first. Stops and
 * returns the first non-zero callback result. depth 0 for g. */
typedef int (*qd_graph_visit_fn)(Onnx__GraphProto *g, int depth, void *ud);
int qd_graph_walk(Onnx__GraphProto *g, qd_graph_visit_fn fn, void *ud);

/* Open-addressing string set / map (keys borrowed unless the caller owns them). */
struct qd_strmap {
	const char **keys;
	void **vals;
	size_t cap, len;
};
int qd_strmap_put(struct qd_strmap *m, const char *key, void *val); /* replaces value */
void **qd_strmap_get(const struct qd_strmap *m, const char *key);   /* NULL if absent */
void qd_strmap_free(struct qd_strmap *m);

/* realloc-append one pointer to a protobuf-c repeated field (size_t *n, T ***arr). */
int qd_ptr_append(size_t *n, void ***arr, void *p);
char *qd_path_dirname(const char *path); /* new */

/* NUL-terminate string attribute bytes one past len (so getters can return char *). */
int qd_attr_terminate_strings(Onnx__AttributeProto *a);
/* Deep copy of any protobuf-c message (pack + unpack); new, free_unpacked. */
void *qd_message_dup(const ProtobufCMessage *m);
/* Names read by n's subgraphs (any depth) but defined outside them; keys borrowed. */
int qd_node_outer_reads(const Onnx__NodeProto *n, struct qd_strmap *out);
/* Stable topological order of g->node into order[g->n_node]; error names a node on a cycle. */
int qd_graph_topo_order(Onnx__GraphProto *g, size_t *order, struct qd_err *err);

#endif
