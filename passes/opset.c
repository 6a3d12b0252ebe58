/* passes/opset.c — raise a model's ai.onnx opset (from 7..12 up to 13) without changing
 * what it computes (passes/opset.h).
 *
 * DESIGN. One table row per (op, opset where its definition changed): a converter, NULL
 * (refuse) or OS_COMPAT (only new types / attributes whose default is the old behaviour,
 * e.g. Gemm-9/11/13, MaxPool-8/10/11/12, ArgMax-11/12; listed for the record). The first
 * row with from < since <= to decides for a node; its converter sees from/to and does every
 * step of that op at once. The walk runs twice over the main graph and every subgraph: a
 * check pass (converters only validate) and, when nothing refused, the apply pass, so a
 * refusal leaves the model untouched. Converters that need a rank or an element type
 * (Softmax-13, Clip/Pad values) get it from value_info / graph inputs / initializers /
 * Constant nodes, propagated through common ops (a rank-and-type inference, no dims).
 * Changes are taken from the ONNX operator changelog and the ONNX version converter
 * (onnx/version_converter/convert.h: which steps are "CompatibleAdapter"). */
#include "passes/opset.h"
#include "onnx/onnx_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rank / element type of values ---- */

struct scope {
	Onnx__GraphProto *g;
	struct qd_graph_index *ix;     /* index of g (parent = enclosing scope's) */
	struct qd_strmap info;         /* value name → packed (rank, dtype) */
	struct scope *parent;
};

/* packed: rank + 2 (8 bits), dtype (8 bits), length + 1 of a 1-D value (shape vectors:
 * what Reshape's rank comes from), 0 = unknown */
#define INFO_PACK(rank, dt, len) ((void *)(uintptr_t)((uintptr_t)((rank) + 2) | ((uintptr_t)(dt) << 8) | \
						     ((uintptr_t)((len) + 1) << 16)))

static void info_get3(const struct scope *s, const char *name, int *rank, int *dt, int64_t *len)
{
	*rank = -1;
	*dt = 0;
	*len = -1;
	for (; s && name && *name; s = s->parent) {
		void **v = qd_strmap_get(&s->info, name);
		if (v) {
			uintptr_t p = (uintptr_t)*v;
			*rank = (int)(p & 0xff) - 2;
			*dt = (int)((p >> 8) & 0xff);
			*len = (int64_t)(p >> 16) - 1;
			return;
		}
	}
}

static void info_get(const struct scope *s, const char *name, int *rank, int *dt)
{
	int64_t len;
	info_get3(s, name, rank, dt, &len);
}

static int64_t len_of(const struct scope *s, const char *name)
{
	int r, d;
	int64_t len;
	info_get3(s, name, &r, &d, &len);
	return r == 1 ? len : -1;
}

static int info_put3(struct scope *s, const char *name, int rank, int dt, int64_t len)
{
	if (!name || !*name)
		return 0;
	int r0, d0;
	int64_t l0;
	if (qd_strmap_get(&s->info, name)) {   /* keep what was declared; fill in what was not */
		info_get3(s, name, &r0, &d0, &l0);
		if (r0 >= 0)
			rank = r0;
		if (d0)
			dt = d0;
		if (l0 >= 0)
			len = l0;
	}
	if (rank > 64)
		rank = -1;
	if (rank != 1 || len < 0 || len > 1 << 20)
		len = -1;
	if (dt < 0 || dt > 255)
		dt = 0;
	return qd_strmap_put(&s->info, name, INFO_PACK(rank, dt, len)) ? -QD_ENOMEM : 0;
}

static int info_put(struct scope *s, const char *name, int rank, int dt)
{
	return info_put3(s, name, rank, dt, -1);
}

static int declare_vi(struct scope *s, const Onnx__ValueInfoProto *vi)
{
	if (!vi || !vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !vi->type->tensor_type)
		return 0;
	const Onnx__TypeProto__Tensor *t = vi->type->tensor_type;
	int64_t len = t->shape && t->shape->n_dim == 1 &&
		t->shape->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ?
		t->shape->dim[0]->dim_value : -1;
	return info_put3(s, vi->name, t->shape ? (int)t->shape->n_dim : -1, t->has_elem_type ? t->elem_type : 0, len);
}

/* Constant values: an initializer (this graph or enclosing ones) or a Constant node. */
static const Onnx__TensorProto *const_tensor(const struct scope *s, const char *name)
{
	if (!name || !*name)
		return NULL;
	Onnx__TensorProto *t = qd_index_initializer(s->ix, name);
	if (t)
		return t;
	for (; s; s = s->parent) {
		Onnx__NodeProto *p = qd_index_producer(s->ix, name);
		if (p) {
			if (strcmp(p->op_type, "Constant") || *qd_node_domain(p))
				return NULL;
			const Onnx__AttributeProto *a = qd_node_attr(p, "value");
			return a ? a->t : NULL;
		}
	}
	return NULL;
}

/* number of elements of a constant, -1 when not constant */
static int64_t const_numel(const struct scope *s, const char *name)
{
	const Onnx__TensorProto *t = const_tensor(s, name);
	return t ? qd_tensor_numel(t) : -1;
}

static bool op_in(const char *op, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(op, *list))
			return true;
	return false;
}

/* ops whose outputs have the rank and type of input 0 */
static const char *const SAME_AS_X[] = {
	"Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization",
	"Ceil", "Celu", "Clip", "Concat", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum",
	"DepthToSpace", "Dropout", "Elu", "Erf", "Exp", "Floor", "GlobalAveragePool", "GlobalLpPool",
	"GlobalMaxPool", "Hardmax", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization",
	"LayerNormalization", "LeakyRelu", "Log", "LogSoftmax", "LpNormalization", "LpPool", "LRN",
	"MaxPool", "MeanVarianceNormalization", "Neg", "Not", "Pad", "PRelu", "Reciprocal", "Relu",
	"Resize", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Slice", "Softmax",
	"Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Tan", "Tanh", "ThresholdedRelu",
	"Tile", "TopK", "Transpose", "Trilu", "Upsample", "ReverseSequence", NULL,
};
/* elementwise with multidirectional broadcasting: rank = max of the inputs' ranks */
static const char *const BROADCAST[] = {
	"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Where", "Equal",
	"Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", NULL,
};
static const char *const BOOL_OUT[] = {
	"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not",
	"IsNaN", "IsInf", NULL,
};
static const char *const REDUCE[] = {
	"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
	"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", NULL,
};

/* count of an axes list: the attribute, else a constant input k; -1 when unknown, -2 absent */
static long axes_count(const struct scope *s, const Onnx__NodeProto *n, size_t k)
{
	const int64_t *v;
	long c = qd_node_attr_ints(n, "axes", &v);
	if (c >= 0)
		return c;
	if (n->n_input <= k || !*n->input[k])
		return -2;
	int64_t e = const_numel(s, n->input[k]);
	return e >= 0 ? (long)e : -1;
}

/* constant int64 values (new, free()); -1 when not constant */
static int64_t const_ints(const struct scope *s, const char *name, int64_t **v)
{
	const Onnx__TensorProto *t = const_tensor(s, name);
	int64_t cnt = 0;
	*v = NULL;
	if (!t || qd_tensor_to_int64(t, v, &cnt, NULL) < 0)
		return -1;
	return cnt;
}

/* length of a Slice of a 1-D value of length len along axis 0, -1 when unknown */
static int64_t slice_len(const struct scope *s, const Onnx__NodeProto *n, int64_t len)
{
	int64_t *st = NULL, *en = NULL, *ax = NULL, *stp = NULL, out = -1;
	int64_t ns, ne, na = -2, nst = -2;
	if (n->n_input == 1) {
		const int64_t *a, *b;
		ns = qd_node_attr_ints(n, "starts", &a);
		ne = qd_node_attr_ints(n, "ends", &b);
		if (ns != 1 || ne != 1)
			return -1;
		const int64_t *c;
		long nc = qd_node_attr_ints(n, "axes", &c);
		if (nc > 1 || (nc == 1 && c[0] != 0 && c[0] != -1))
			return -1;
		int64_t b0 = a[0], e0 = b[0];
		if (b0 < 0) b0 += len;
		if (e0 < 0) e0 += len;
		b0 = b0 < 0 ? 0 : b0 > len ? len : b0;
		e0 = e0 < 0 ? 0 : e0 > len ? len : e0;
		return e0 > b0 ? e0 - b0 : 0;
	}
	ns = const_ints(s, n->input[1], &st);
	ne = n->n_input > 2 ? const_ints(s, n->input[2], &en) : -1;
	if (n->n_input > 3 && *n->input[3]) na = const_ints(s, n->input[3], &ax);
	if (n->n_input > 4 && *n->input[4]) nst = const_ints(s, n->input[4], &stp);
	if (ns == 1 && ne == 1 && (na == -2 || (na == 1 && (ax[0] == 0 || ax[0] == -1))) &&
	    (nst == -2 || (nst == 1 && stp[0] == 1))) {
		int64_t b0 = st[0], e0 = en[0];
		if (b0 < 0) b0 += len;
		if (e0 < 0) e0 += len;
		b0 = b0 < 0 ? 0 : b0 > len ? len : b0;
		e0 = e0 < 0 ? 0 : e0 > len ? len : e0;
		out = e0 > b0 ? e0 - b0 : 0;
	}
	free(st); free(en); free(ax); free(stp);
	return out;
}

/* length of a 1-D output (shape vectors), -1 when unknown */
static int64_t infer_len(const struct scope *s, const Onnx__NodeProto *n, int r0)
{
	const char *op = n->op_type;
	int64_t l0 = n->n_input ? len_of(s, n->input[0]) : -1;
	if (!strcmp(op, "Shape"))
		return qd_node_attr(n, "start") || qd_node_attr(n, "end") ? -1 : r0;
	if (!strcmp(op, "Cast") || !strcmp(op, "Identity"))
		return l0;
	if (!strcmp(op, "Slice") && l0 >= 0)
		return slice_len(s, n, l0);
	if (!strcmp(op, "Concat")) {
		int64_t sum = 0;
		for (size_t i = 0; i < n->n_input; i++) {
			int64_t li = len_of(s, n->input[i]);
			if (li < 0)
				return -1;
			sum += li;
		}
		return sum;
	}
	if (!strcmp(op, "Unsqueeze") && r0 == 0)
		return 1;
	if (!strcmp(op, "Gather")) {
		int ri, di;
		info_get(s, n->n_input > 1 ? n->input[1] : NULL, &ri, &di);
		return ri == 1 ? len_of(s, n->input[1]) : -1;
	}
	return -1;
}

static int infer_node(struct scope *s, const Onnx__NodeProto *n)
{
	const char *op = n->op_type;
	int r = -1, dt = 0, r0 = -1, d0 = 0;
	if (*qd_node_domain(n) || n->n_output == 0)
		return 0;
	if (n->n_input > 0)
		info_get(s, n->input[0], &r0, &d0);
	if (!strcmp(op, "Constant")) {
		const Onnx__AttributeProto *a;
		if ((a = qd_node_attr(n, "value")) && a->t) { r = (int)a->t->n_dims; dt = a->t->data_type; }
		else if (qd_node_attr(n, "value_float")) { r = 0; dt = QD_DT_FLOAT; }
		else if (qd_node_attr(n, "value_floats")) { r = 1; dt = QD_DT_FLOAT; }
		else if (qd_node_attr(n, "value_int")) { r = 0; dt = QD_DT_INT64; }
		else if (qd_node_attr(n, "value_ints")) { r = 1; dt = QD_DT_INT64; }
	} else if (op_in(op, BROADCAST)) {
		int ri, di;
		r = 0;
		for (size_t i = 0; i < n->n_input; i++) {
			info_get(s, n->input[i], &ri, &di);
			if (ri < 0) { r = -1; break; }
			r = QD_MAX(r, ri);
		}
		if (!strcmp(op, "Where"))
			info_get(s, n->n_input > 1 ? n->input[1] : NULL, &ri, &dt);
		else
			dt = d0;
	} else if (op_in(op, SAME_AS_X)) {
		r = r0;
		dt = d0;
		if (!strcmp(op, "TopK") && n->n_output > 1 && info_put(s, n->output[1], r0, QD_DT_INT64))
			return -QD_ENOMEM;
		if ((!strcmp(op, "MaxPool") || !strcmp(op, "Dropout")) && n->n_output > 1 &&
		    info_put(s, n->output[1], r0, !strcmp(op, "MaxPool") ? QD_DT_INT64 : 0))
			return -QD_ENOMEM;
		if (!strcmp(op, "Split"))
			for (size_t i = 1; i < n->n_output; i++)
				if (info_put(s, n->output[i], r0, d0))
					return -QD_ENOMEM;
	} else if (!strcmp(op, "Cast")) {
		r = r0;
		dt = (int)qd_node_attr_int(n, "to", 0);
	} else if (!strcmp(op, "MatMul")) {
		int r1, d1;
		info_get(s, n->n_input > 1 ? n->input[1] : NULL, &r1, &d1);
		if (r0 >= 1 && r1 >= 1)
			r = r0 == 1 && r1 == 1 ? 0 : r0 == 1 ? r1 - 1 : r1 == 1 ? r0 - 1 : QD_MAX(r0, r1);
		dt = d0;
	} else if (!strcmp(op, "Gemm") || !strcmp(op, "Flatten")) {
		r = 2;
		dt = d0;
	} else if (!strcmp(op, "Reshape")) {
		int64_t e = n->n_input > 1 ? const_numel(s, n->input[1]) : -1;
		if (e < 0 && n->n_input > 1)
			e = len_of(s, n->input[1]);
		if (e >= 0)
			r = (int)e;
		dt = d0;
	} else if (!strcmp(op, "Expand")) {
		int64_t e = n->n_input > 1 ? const_numel(s, n->input[1]) : -1;
		if (e >= 0 && r0 >= 0)
			r = QD_MAX(r0, (int)e);
		dt = d0;
	} else if (!strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
		long c = axes_count(s, n, 1);
		if (c >= 0 && r0 >= 0)
			r = !strcmp(op, "Squeeze") ? r0 - (int)c : r0 + (int)c;
		dt = d0;
	} else if (op_in(op, REDUCE)) {
		long c = axes_count(s, n, 1);
		bool keep = qd_node_attr_int(n, "keepdims", 1) != 0;
		if (r0 >= 0) {
			if (keep || (c == -2 && qd_node_attr_int(n, "noop_with_empty_axes", 0)))
				r = r0;
			else if (c == -2)
				r = 0;
			else if (c >= 0)
				r = r0 - (int)c;
		}
		dt = d0;
	} else if (!strcmp(op, "ArgMax") || !strcmp(op, "ArgMin")) {
		if (r0 >= 0)
			r = qd_node_attr_int(n, "keepdims", 1) ? r0 : r0 - 1;
		dt = QD_DT_INT64;
	} else if (!strcmp(op, "Shape")) {
		r = 1; dt = QD_DT_INT64;
	} else if (!strcmp(op, "Size")) {
		r = 0; dt = QD_DT_INT64;
	} else if (!strcmp(op, "NonZero")) {
		r = 2; dt = QD_DT_INT64;
	} else if (!strcmp(op, "Range")) {
		r = 1; dt = d0;
	} else if (!strcmp(op, "Gather")) {
		int r1, d1;
		info_get(s, n->n_input > 1 ? n->input[1] : NULL, &r1, &d1);
		if (r0 >= 1 && r1 >= 0)
			r = r0 + r1 - 1;
		dt = d0;
	} else if (!strcmp(op, "ConstantOfShape")) {
		int64_t e = n->n_input > 0 ? const_numel(s, n->input[0]) : -1;
		const Onnx__AttributeProto *a = qd_node_attr(n, "value");
		r = e >= 0 ? (int)e : -1;
		dt = a && a->t ? a->t->data_type : QD_DT_FLOAT;
	} else if (op_in(op, BOOL_OUT)) {
		r = r0;
	}
	if (op_in(op, BOOL_OUT))
		dt = QD_DT_BOOL;
	return info_put3(s, n->output[0], r, dt, r == 1 ? infer_len(s, n, r0) : -1);
}

static int scope_build(struct scope *s, Onnx__GraphProto *g, struct scope *parent, struct qd_err *err)
{
	memset(s, 0, sizeof *s);
	s->g = g;
	s->parent = parent;
	int rc = qd_index_build(g, parent ? parent->ix : NULL, &s->ix, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < g->n_initializer && rc == 0; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		rc = info_put3(s, t->name, (int)t->n_dims, t->data_type, t->n_dims == 1 ? t->dims[0] : -1);
	}
	for (size_t i = 0; i < g->n_input && rc == 0; i++) rc = declare_vi(s, g->input[i]);
	for (size_t i = 0; i < g->n_output && rc == 0; i++) rc = declare_vi(s, g->output[i]);
	for (size_t i = 0; i < g->n_value_info && rc == 0; i++) rc = declare_vi(s, g->value_info[i]);
	const size_t *order;
	size_t nn = qd_index_topo(s->ix, &order);
	for (size_t i = 0; i < nn && rc == 0; i++)
		rc = infer_node(s, g->node[order[i]]);
	if (rc < 0)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	return 0;
}

static void scope_free(struct scope *s)
{
	qd_strmap_free(&s->info);
	qd_index_free(s->ix);
}

/* ---- the upgrade ---- */

struct up {
	struct qd_model *m;
	int64_t from, to;
	bool apply;
	struct qd_graph_index *root;   /* main-graph index: unique names model-wide */
	json_t *counts;                /* op → nodes rewritten (apply pass) */
	struct qd_err *err;
};

static const char *node_base(const Onnx__NodeProto *n)
{
	return n->name && *n->name ? n->name : n->n_output ? n->output[0] : "?";
}

static int refuse(struct up *u, const Onnx__NodeProto *n, int64_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int refuse(struct up *u, const Onnx__NodeProto *n, int64_t at, const char *fmt, ...)
{
	char why[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return qd_err_set(u->err, QD_EUNSUPPORTED, node_base(n), "cannot raise opset %lld to %lld: node '%s' "
			  "(%s) changes meaning at opset %lld: %s", (long long)u->from, (long long)u->to,
			  node_base(n), n->op_type, (long long)at, why);
}

static int nomem(struct up *u)
{
	return qd_err_set(u->err, QD_ENOMEM, NULL, "out of memory");
}

/* set n->input[idx] = name (owned), growing the list with "" */
static int set_input(struct up *u, Onnx__NodeProto *n, size_t idx, char *name)
{
	if (idx >= n->n_input) {
		char **ni = realloc(n->input, (idx + 1) * sizeof *ni);
		if (!ni) {
			free(name);
			return nomem(u);
		}
		n->input = ni;
		for (size_t i = n->n_input; i <= idx; i++)
			n->input[i] = NULL;
		for (size_t i = n->n_input; i < idx; i++)
			if (!(n->input[i] = strdup(""))) {
				n->n_input = i;
				free(name);
				return nomem(u);
			}
		n->n_input = idx + 1;
	}
	free(n->input[idx]);
	n->input[idx] = name;
	return 0;
}

/* New initializer "<node>_<what>" in g, wired to n->input[idx]. ndims 0 = scalar. */
static int add_input_init(struct up *u, Onnx__GraphProto *g, Onnx__NodeProto *n, size_t idx, const char *what,
			  int dtype, const int64_t *dims, size_t ndims, const void *data, size_t nbytes)
{
	char base[512];
	snprintf(base, sizeof base, "%s_%s", node_base(n), what);
	char *name = qd_index_unique_name(u->root, base);
	Onnx__TensorProto *t = name ? qd_tensor_new(name, dtype, dims, ndims, data, nbytes) : NULL;
	if (!t || qd_graph_add_initializer(g, t) < 0) {
		qd_tensor_free(t);
		free(name);
		return nomem(u);
	}
	return set_input(u, n, idx, name);
}

static int add_ints_input(struct up *u, Onnx__GraphProto *g, Onnx__NodeProto *n, size_t idx, const char *what,
			  const int64_t *v, size_t count)
{
	int64_t d[1] = {(int64_t)count};
	return add_input_init(u, g, n, idx, what, QD_DT_INT64, d, 1, v, count * sizeof *v);
}

/* a scalar of dtype (float or double) holding v */
static int add_scalar_input(struct up *u, Onnx__GraphProto *g, Onnx__NodeProto *n, size_t idx, const char *what,
			    int dtype, double v)
{
	float f = (float)v;
	if (dtype == QD_DT_DOUBLE)
		return add_input_init(u, g, n, idx, what, dtype, NULL, 0, &v, sizeof v);
	return add_input_init(u, g, n, idx, what, QD_DT_FLOAT, NULL, 0, &f, sizeof f);
}

static void drop_attr(Onnx__NodeProto *n, const char *name)
{
	size_t w = 0;
	for (size_t i = 0; i < n->n_attribute; i++) {
		if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name))
			protobuf_c_message_free_unpacked(&n->attribute[i]->base, NULL);
		else
			n->attribute[w++] = n->attribute[i];
	}
	n->n_attribute = w;
}

static int set_attr_str(struct up *u, Onnx__NodeProto *n, const char *name, const char *v)
{
	drop_attr(n, name);
	return qd_node_set_attr_string(n, name, v) < 0 ? nomem(u) : 0;
}

static bool crosses(const struct up *u, int64_t at)
{
	return u->from < at && at <= u->to;
}

/* Converters: called in both passes; they only validate unless u->apply. Return 1 when the
 * node was (or will be) rewritten, 0 when nothing was needed, negative on refusal/error. */
typedef int (*conv_fn)(struct up *u, struct scope *s, Onnx__NodeProto *n);

/* float element type a Clip-6 / Pad-2 value must take: float16 is refused */
static int value_dtype(struct up *u, struct scope *s, Onnx__NodeProto *n, int64_t at, int *dtype)
{
	int r;
	info_get(s, n->input[0], &r, dtype);
	if (*dtype != QD_DT_FLOAT && *dtype != QD_DT_DOUBLE)
		return refuse(u, n, at, "its value becomes an input of the data's type, and the type of '%s' is %s",
			      n->input[0], *dtype ? qd_dtype_name(*dtype) : "unknown");
	return 0;
}

/* Clip-6 → 11: min / max attributes become the optional inputs 1 and 2. */
static int cv_clip(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	bool hmin = qd_node_attr(n, "min") != NULL, hmax = qd_node_attr(n, "max") != NULL;
	if (n->n_input > 1 || (!hmin && !hmax))
		return 0;
	int dt = 0, rc = value_dtype(u, s, n, 11, &dt);
	if (rc < 0 || !u->apply)
		return rc < 0 ? rc : 1;
	if (hmin) rc = add_scalar_input(u, s->g, n, 1, "min", dt, qd_node_attr_float(n, "min", 0));
	if (!rc && hmax) rc = add_scalar_input(u, s->g, n, 2, "max", dt, qd_node_attr_float(n, "max", 0));
	drop_attr(n, "min");
	drop_attr(n, "max");
	return rc < 0 ? rc : 1;
}

/* Slice-1 → 10: starts / ends / axes attributes become inputs 1..3. */
static int cv_slice(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	if (n->n_input > 1)
		return 0;
	const int64_t *st, *en, *ax;
	long ns = qd_node_attr_ints(n, "starts", &st), ne = qd_node_attr_ints(n, "ends", &en);
	long na = qd_node_attr_ints(n, "axes", &ax);
	if (ns < 0 || ne != ns || (na >= 0 && na != ns))
		return qd_err_set(u->err, QD_EMODEL, node_base(n), "Slice node '%s' has bad starts/ends/axes",
				  node_base(n));
	if (!u->apply)
		return 1;
	int64_t *axes = malloc((size_t)(ns + 1) * sizeof *axes);
	if (!axes)
		return nomem(u);
	for (long i = 0; i < ns; i++)
		axes[i] = na >= 0 ? ax[i] : i;
	int rc = add_ints_input(u, s->g, n, 1, "starts", st, (size_t)ns);
	if (!rc) rc = add_ints_input(u, s->g, n, 2, "ends", en, (size_t)ns);
	if (!rc) rc = add_ints_input(u, s->g, n, 3, "axes", axes, (size_t)ns);
	free(axes);
	drop_attr(n, "starts");
	drop_attr(n, "ends");
	drop_attr(n, "axes");
	return rc < 0 ? rc : 1;
}

/* Pad-2 → 11: pads (and value, for mode constant) become inputs; mode stays. */
static int cv_pad(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	const int64_t *pads;
	long np = qd_node_attr_ints(n, "pads", &pads);
	if (n->n_input > 1)
		return 0;
	if (np < 0)
		return qd_err_set(u->err, QD_EMODEL, node_base(n), "Pad node '%s' has no pads", node_base(n));
	const char *mode = qd_node_attr_string(n, "mode", "constant");
	float value = qd_node_attr_float(n, "value", 0.0f);
	bool need_value = !strcmp(mode, "constant") && value != 0.0f;
	int dt = 0, rc = need_value ? value_dtype(u, s, n, 11, &dt) : 0;
	if (rc < 0 || !u->apply)
		return rc < 0 ? rc : 1;
	rc = add_ints_input(u, s->g, n, 1, "pads", pads, (size_t)np);
	if (!rc && need_value)
		rc = add_scalar_input(u, s->g, n, 2, "constant_value", dt, value);
	drop_attr(n, "pads");
	drop_attr(n, "value");
	return rc < 0 ? rc : 1;
}

/* Dropout: the mask output becomes bool at 10 (refused when used); ratio becomes input 1
 * at 12 (training_mode stays absent = inference). */
static int cv_dropout(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	if (crosses(u, 10) && n->n_output > 1 && *n->output[1])
		return refuse(u, n, 10, "its mask output becomes bool");
	if (!crosses(u, 12) || !qd_node_attr(n, "ratio") || n->n_input > 1)
		return 0;
	if (!u->apply)
		return 1;
	int rc = add_scalar_input(u, s->g, n, 1, "ratio", QD_DT_FLOAT, qd_node_attr_float(n, "ratio", 0.5f));
	drop_attr(n, "ratio");
	return rc < 0 ? rc : 1;
}

/* TopK-1 → 10: attribute k becomes input K (1-D int64 of one element). */
static int cv_topk(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	if (n->n_input > 1)
		return 0;
	if (!qd_node_attr(n, "k"))
		return qd_err_set(u->err, QD_EMODEL, node_base(n), "TopK node '%s' has no k", node_base(n));
	if (!u->apply)
		return 1;
	int64_t k = qd_node_attr_int(n, "k", 0);
	int rc = add_ints_input(u, s->g, n, 1, "k", &k, 1);
	drop_attr(n, "k");
	return rc < 0 ? rc : 1;
}

/* BatchNormalization-9 drops spatial: spatial=1 (the default) is what remains. */
static int cv_batchnorm(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	if (!qd_node_attr(n, "spatial"))
		return 0;
	if (qd_node_attr_int(n, "spatial", 1) != 1)
		return refuse(u, n, 9, "spatial=0 (per-activation statistics) no longer exists");
	if (u->apply)
		drop_attr(n, "spatial");
	return 1;
}

/* Squeeze / Unsqueeze / ReduceSum-13: axes attribute → input 1; Split-13: split → input 1. */
static int cv_attr_to_input1(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	const char *attr = !strcmp(n->op_type, "Split") ? "split" : "axes";
	const int64_t *v;
	long c = qd_node_attr_ints(n, attr, &v);
	if (c < 0 || n->n_input > 1)
		return 0;
	if (!u->apply)
		return 1;
	int rc = add_ints_input(u, s->g, n, 1, attr, v, (size_t)c);
	drop_attr(n, attr);
	return rc < 0 ? rc : 1;
}

/* Softmax / LogSoftmax / Hardmax-13: "coerce to 2-D at axis" became "along axis" (default
 * -1 instead of 1); the same only when axis is the last axis. */
static int cv_softmax(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	int rank, dt;
	int64_t axis = qd_node_attr_int(n, "axis", 1);
	info_get(s, n->input[0], &rank, &dt);
	int64_t a = axis < 0 && rank >= 0 ? axis + rank : axis;
	if (rank < 0 && axis != -1)
		return refuse(u, n, 13, "axis %lld is the same only when it is the last one, and the rank of "
			      "'%s' is unknown", (long long)axis, n->input[0]);
	if (rank >= 0 && a != rank - 1)
		return refuse(u, n, 13, "axis %lld is not the last axis of the rank-%d input (it now means one "
			      "axis, not the flattened trailing axes)", (long long)axis, rank);
	if (!u->apply)
		return 1;
	drop_attr(n, "axis");
	return qd_node_set_attr_int(n, "axis", axis) < 0 ? nomem(u) : 1;
}

/* constant float values of input `name` (new, free()); -1 when not constant */
static int64_t const_floats(const struct scope *s, const char *name, float **v)
{
	const Onnx__TensorProto *t = const_tensor(s, name);
	int64_t cnt = 0;
	*v = NULL;
	if (!t || qd_tensor_to_float(t, v, &cnt, NULL) < 0)
		return -1;
	return cnt;
}

/* Resize-11 form of a pre-11 Resize / Upsample (asymmetric coordinates; nearest rounds
 * down, which is the old rule for scales >= 1). scales_attr: Upsample-7's attribute. */
static int to_resize11(struct up *u, struct scope *s, Onnx__NodeProto *n, int64_t at, bool scales_attr)
{
	const char *mode = qd_node_attr_string(n, "mode", "nearest");
	bool nearest = !strcmp(mode, "nearest");
	if (!nearest && strcmp(mode, "linear") && strcmp(mode, "bilinear"))
		return refuse(u, n, at, "mode '%s' has no Resize-11 equivalent", mode);
	float *sc = NULL;
	int64_t ns;
	if (scales_attr) {
		const Onnx__AttributeProto *a = qd_node_attr(n, "scales");
		if (!a || !a->n_floats)
			return qd_err_set(u->err, QD_EMODEL, node_base(n), "Upsample node '%s' has no scales",
					  node_base(n));
		ns = (int64_t)a->n_floats;
		if (!(sc = malloc((size_t)ns * sizeof *sc)))
			return nomem(u);
		memcpy(sc, a->floats, (size_t)ns * sizeof *sc);
	} else {
		if (n->n_input < 2)
			return qd_err_set(u->err, QD_EMODEL, node_base(n), "node '%s' has no scales input", node_base(n));
		ns = const_floats(s, n->input[1], &sc);
	}
	if (nearest) {
		if (ns < 0)
			return refuse(u, n, at, "nearest rounding depends on the scales, and '%s' is not constant",
				      n->input[1]);
		for (int64_t i = 0; i < ns; i++)
			if (!(sc[i] >= 1.0f)) {
				double bad = sc[i];
				free(sc);
				return refuse(u, n, at, "nearest downsampling (scale %g) rounds differently", bad);
			}
	}
	if (!u->apply) {
		free(sc);
		return 1;
	}
	int rc = 0;
	if (scales_attr) {
		int64_t d[1] = {ns};
		rc = add_input_init(u, s->g, n, 1, "scales", QD_DT_FLOAT, d, 1, sc, (size_t)ns * sizeof *sc);
		drop_attr(n, "scales");
	}
	free(sc);
	if (rc < 0)
		return rc;
	/* inputs [X, scales] → [X, roi (empty), scales] */
	char *scales = n->input[1];
	n->input[1] = NULL;
	int64_t zero[1] = {0};
	if ((rc = set_input(u, n, 2, scales)) < 0 ||
	    (rc = add_input_init(u, s->g, n, 1, "roi", QD_DT_FLOAT, zero, 1, NULL, 0)) < 0)
		return rc;
	if (!strcmp(n->op_type, "Upsample")) {
		char *op = strdup("Resize");
		if (!op)
			return nomem(u);
		free(n->op_type);
		n->op_type = op;
	}
	if ((rc = set_attr_str(u, n, "mode", nearest ? "nearest" : "linear")) < 0 ||
	    (rc = set_attr_str(u, n, "coordinate_transformation_mode", "asymmetric")) < 0 ||
	    (nearest && (rc = set_attr_str(u, n, "nearest_mode", "floor")) < 0))
		return rc;
	return 1;
}

/* Upsample: scales attribute → input at 9, deprecated at 10 (→ Resize-10 or Resize-11). */
static int cv_upsample(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	bool attr = u->from < 9;
	if (u->to >= 11)
		return to_resize11(u, s, n, 10, attr);
	const char *mode = qd_node_attr_string(n, "mode", "nearest");
	if (strcmp(mode, "nearest") && strcmp(mode, "linear") && strcmp(mode, "bilinear"))
		return refuse(u, n, 10, "mode '%s' has no Resize equivalent", mode);
	if (!u->apply)
		return 1;
	int rc = 0;
	if (attr) {
		const Onnx__AttributeProto *a = qd_node_attr(n, "scales");
		if (!a)
			return qd_err_set(u->err, QD_EMODEL, node_base(n), "Upsample node '%s' has no scales",
					  node_base(n));
		int64_t d[1] = {(int64_t)a->n_floats};
		if ((rc = add_input_init(u, s->g, n, 1, "scales", QD_DT_FLOAT, d, 1, a->floats,
					 a->n_floats * sizeof(float))) < 0)
			return rc;
		drop_attr(n, "scales");
	}
	if (u->to == 10) {   /* Resize-10 is Upsample-9 under a new name */
		char *op = strdup("Resize");
		if (!op)
			return nomem(u);
		free(n->op_type);
		n->op_type = op;
		if (!strcmp(mode, "bilinear") && (rc = set_attr_str(u, n, "mode", "linear")) < 0)
			return rc;
	}
	return 1;
}

/* Resize-10 → 11: roi input added, coordinate_transformation_mode asymmetric. */
static int cv_resize(struct up *u, struct scope *s, Onnx__NodeProto *n)
{
	return to_resize11(u, s, n, 11, false);
}

#define OS_COMPAT ((conv_fn)1)
struct opset_change { const char *op; int64_t since; conv_fn fn; const char *why; };

/* Ordered by op; the first row with from < since <= to decides. NULL = refuse. */
static const struct opset_change opset_table[] = {
	{"ArgMax", 11, OS_COMPAT, "negative axis; 12: select_last_index (default 0)"},
	{"ArgMin", 11, OS_COMPAT, "negative axis; 12: select_last_index (default 0)"},
	{"AveragePool", 10, OS_COMPAT, "ceil_mode (default 0); 11: auto_pad/pads rules"},
	{"BatchNormalization", 9, cv_batchnorm, NULL},
	{"Cast", 9, OS_COMPAT, "string types; 13: bfloat16"},
	{"Clip", 11, cv_clip, NULL},
	{"Compress", 11, OS_COMPAT, "negative axis"},
	{"Concat", 11, OS_COMPAT, "negative axis"},
	{"Constant", 9, OS_COMPAT, "types; 11: sparse_value; 12: value_* attributes"},
	{"Conv", 11, OS_COMPAT, "kernel_shape inferred, auto_pad text"},
	{"ConvTranspose", 11, OS_COMPAT, "kernel_shape inferred, auto_pad text"},
	{"DepthToSpace", 11, OS_COMPAT, "mode (default DCR = the old behaviour)"},
	{"Dropout", 10, cv_dropout, NULL},
	{"Dropout", 12, cv_dropout, NULL},
	{"Equal", 11, OS_COMPAT, "types"},
	{"Flatten", 9, OS_COMPAT, "types; 11: negative axis"},
	{"Gather", 11, OS_COMPAT, "negative indices"},
	{"Gemm", 9, OS_COMPAT, "types; 11: C optional"},
	{"Hardmax", 13, cv_softmax, NULL},
	{"If", 11, OS_COMPAT, "branch output shapes may differ"},
	{"LogSoftmax", 13, cv_softmax, NULL},
	{"Loop", 11, OS_COMPAT, "scan output shapes"},
	{"MatMul", 9, OS_COMPAT, "types"},
	{"Max", 8, OS_COMPAT, "broadcasting; 12: types"},
	{"MaxPool", 8, OS_COMPAT, "Indices output, storage_order; 10: ceil_mode, dilations"},
	{"MaxUnpool", 11, NULL, "output shape rules revised"},
	{"Mean", 8, OS_COMPAT, "broadcasting"},
	{"Min", 8, OS_COMPAT, "broadcasting; 12: types"},
	{"NonMaxSuppression", 11, OS_COMPAT, "no change of meaning (version converter: no-op)"},
	{"OneHot", 11, NULL, "negative indices count from the end instead of giving an all-off row"},
	{"Pad", 11, cv_pad, NULL},
	{"Pow", 12, OS_COMPAT, "types"},
	{"ReduceSum", 13, cv_attr_to_input1, NULL},
	{"Resize", 11, cv_resize, NULL},
	{"Scan", 9, NULL, "batch axis removed, sequence_lens input removed"},
	{"Scatter", 11, NULL, "deprecated for ScatterElements, negative indices"},
	{"Slice", 10, cv_slice, NULL},
	{"Softmax", 13, cv_softmax, NULL},
	{"Split", 13, cv_attr_to_input1, NULL},  /* 11: negative axis only */
	{"Squeeze", 13, cv_attr_to_input1, NULL},
	{"Sum", 8, OS_COMPAT, "broadcasting"},
	{"TopK", 10, cv_topk, NULL},
	{"Unsqueeze", 13, cv_attr_to_input1, NULL},
	{"Upsample", 9, cv_upsample, NULL},
	{"Upsample", 10, cv_upsample, NULL},
};

static int walk(struct up *u, Onnx__GraphProto *g, struct scope *parent, int depth)
{
	if (depth > QD_ONNX_MAX_DEPTH)
		return qd_err_set(u->err, QD_EMODEL, g->name, "subgraphs nested too deep");
	struct scope s;
	int rc = scope_build(&s, g, parent, u->err);
	for (size_t i = 0; i < g->n_node && rc >= 0; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!*qd_node_domain(n)) {
			for (size_t k = 0; k < QD_ARRAY_LEN(opset_table); k++) {
				const struct opset_change *c = &opset_table[k];
				if (strcmp(c->op, n->op_type) || !crosses(u, c->since))
					continue;
				if (c->fn == OS_COMPAT)
					break;
				if (!c->fn) {
					rc = refuse(u, n, c->since, "%s", c->why);
					break;
				}
				char op[64];
				snprintf(op, sizeof op, "%s", n->op_type);   /* Upsample renames itself */
				rc = c->fn(u, &s, n);
				if (rc > 0 && u->apply) {
					json_int_t prev = json_integer_value(json_object_get(u->counts, op));
					json_object_set_new(u->counts, op, json_integer(prev + 1));
				}
				break;
			}
		}
		Onnx__GraphProto *subs[16];
		size_t ns = qd_node_subgraphs(n, subs, 16);
		for (size_t k = 0; k < ns && k < 16 && rc >= 0; k++)
			rc = walk(u, subs[k], &s, depth + 1);
	}
	scope_free(&s);
	return rc < 0 ? rc : 0;
}

int64_t qd_opset_ir_version(int64_t opset)
{
	return opset <= 8 ? 3 : opset == 9 ? 4 : opset == 10 ? 5 : opset == 11 ? 6 : opset <= 14 ? 7 : 8;
}

int qd_model_upgrade_opset(struct qd_model *m, int64_t to,
			   void (*log)(void *ud, enum qd_log_level lvl, const char *line), void *ud,
			   json_t *stats, struct qd_err *err)
{
	if (!m || !m->proto || !m->proto->graph)
		return qd_err_set(err, QD_EINVAL, NULL, "no model");
	int64_t from = qd_model_opset(m, "");
	if (from <= 0)
		return qd_err_set(err, QD_EMODEL, NULL, "model has no ai.onnx opset import");
	if (from >= to)
		return 0;
	if (from < QD_OPSET_UPGRADE_MIN)
		return qd_err_set(err, QD_EUNSUPPORTED, NULL, "cannot raise opset %lld: opsets below %d are not "
				  "supported", (long long)from, QD_OPSET_UPGRADE_MIN);
	if (to > QD_OPSET_UPGRADE_MAX)
		return qd_err_set(err, QD_EUNSUPPORTED, NULL, "cannot raise opset %lld to %lld: opsets above %d are "
				  "not supported", (long long)from, (long long)to, QD_OPSET_UPGRADE_MAX);
	struct up u = { .m = m, .from = from, .to = to, .err = err, .counts = json_object() };
	if (!u.counts)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	int rc = qd_index_build(m->proto->graph, NULL, &u.root, err);
	if (rc < 0)
		goto out;
	if ((rc = walk(&u, m->proto->graph, NULL, 0)) < 0)
		goto out;
	u.apply = true;
	if ((rc = walk(&u, m->proto->graph, NULL, 0)) < 0)
		goto out;
	if ((rc = qd_model_set_opset(m, "", to)) < 0) {
		rc = qd_err_set(err, -rc, NULL, "cannot set the opset import");
		goto out;
	}
	int64_t irv = qd_opset_ir_version(to);
	if (m->proto->ir_version < irv) {
		m->proto->ir_version = irv;
		m->proto->has_ir_version = 1;
	}
	if (log) {
		struct qd_buf b = {0};
		const char *k;
		json_t *v;
		int any = 0;
		qd_buf_printf(&b, "opset raised from %lld to %lld (ir_version %lld); rewritten:", (long long)from,
			      (long long)to, (long long)m->proto->ir_version);
		json_object_foreach(u.counts, k, v)
			qd_buf_printf(&b, "%s %s %lld", any++ ? "," : "", k, (long long)json_integer_value(v));
		if (!any)
			qd_buf_printf(&b, " none");
		if (b.data)
			log(ud, QD_LOG_INFO, (const char *)b.data);
		qd_buf_free(&b);
	}
	if (stats)
		json_object_set_new(stats, "opset_raised", json_pack("{s:I, s:I, s:O}", "from", (json_int_t)from,
								     "to", (json_int_t)to, "rewritten", u.counts));
	rc = 0;
out:
	qd_index_free(u.root);
	json_decref(u.counts);
	return rc;
}
