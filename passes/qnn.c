/* QnnPreprocess (ONNX Runtime's qnn_preprocess_model, reference/inc_vitis_qnn.md §C.2) and
 * Olive's DynamicToFixedShape: float-graph rewrites that prepare a model for Qualcomm's QNN
 * execution provider before its QDQ quantization (passes/static.c, execution_provider
 * "QNNExecutionProvider").
 *
 * DESIGN. QnnPreprocess runs ORT's steps in ORT's order on the main graph:
 *  1. reload      quantd's own quant_preprocess (passes/preprocess.c): Constant nodes to
 *                 initializers, constant folding, BatchNormalization folding, types and
 *                 shapes from an engine run (ORT: ONNX shape inference + basic optimization)
 *  2. fixed shapes dynamic_input_shapes [[name, "1,3,256,256"], ...], then output shapes
 *  3. exclude_initializer_from_input
 *  4.-7. fusions, each a round over the graph (match, mark the matched nodes, append the
 *                 fused node; then drop the marked nodes and sort): erf-GELU (PyTorch,
 *                 Keras and TensorFlow exports) -> com.microsoft Gelu; ReduceL2 / Clip /
 *                 Expand / Div -> LpNormalization; YOLO's Reshape/Transpose chain ->
 *                 SpaceToDepth; decomposed LayerNorm -> LayerNormalization (fuse_layernorm,
 *                 opset >= 17)
 *  8. channel-last inputs / outputs with Transpose_channel_<k> nodes (4-D only)
 *  9. node naming  unnamed nodes get qnn_preproc_node_<k>
 * Steps 2-9 say whether they changed anything; when none did, the input model is put back
 * as it came (ORT returns False and Olive keeps its input). The job log and the pass stats
 * say which fusions matched and how often.
 * Every match requires single consumers on the intermediate values (and none of them a
 * graph output), so a fused model computes what the original did. */
#include "passes/passes.h"
#include "passes/preprocess.h"
#include "passes/workflow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_DOMAIN "com.microsoft"

struct qp {
	struct qd_pass_ctx *pc;
	struct qd_model *m;
	Onnx__GraphProto *g;
	struct qd_err *err;
	struct qd_graph_index *ix;      /* of g at the start of the round */
	struct qd_namemap pos;          /* first output name -> node index (round start) */
	struct qd_namemap node_names;   /* every node name in use */
	bool *drop;                     /* per node of g, room for the appended ones */
	size_t n0;                      /* node count at the start of the round */
	long fused_seq;
	bool uses_ms;
};

static int oom(struct qp *q) { return qd_err_set(q->err, QD_ENOMEM, NULL, "out of memory"); }

/* ---- graph helpers ---- */

static bool is_op(const Onnx__NodeProto *n, const char *op)
{
	return n && !strcmp(n->op_type, op) && !*qd_node_domain(n);
}

static bool dropped(struct qp *q, const Onnx__NodeProto *n)
{
	long *p = n && n->n_output ? qd_namemap_get(&q->pos, n->output[0]) : NULL;
	return !p || q->drop[*p] || q->g->node[*p] != n;
}

static void kill(struct qp *q, const Onnx__NodeProto *n)
{
	long *p = n && n->n_output ? qd_namemap_get(&q->pos, n->output[0]) : NULL;
	if (p)
		q->drop[*p] = true;
}

static Onnx__NodeProto *producer(struct qp *q, const char *name)
{
	Onnx__NodeProto *p = name && *name ? qd_index_producer(q->ix, name) : NULL;
	return p && !dropped(q, p) ? p : NULL;
}

/* The one reader of a value that is not a graph output, else NULL. */
static Onnx__NodeProto *only_consumer(struct qp *q, const char *name)
{
	Onnx__NodeProto *const *cons;
	if (!name || !*name || qd_index_is_graph_output(q->ix, name))
		return NULL;
	size_t nc = qd_index_consumers(q->ix, name, &cons);
	return nc == 1 && !dropped(q, cons[0]) ? cons[0] : NULL;
}

/* The input of a binary node that is not x (NULL when x is not an input). */
static const char *other_input(const Onnx__NodeProto *n, const char *x)
{
	if (!n || n->n_input != 2)
		return NULL;
	if (!strcmp(n->input[0], x))
		return n->input[1];
	if (!strcmp(n->input[1], x))
		return n->input[0];
	return NULL;
}

/* A one-element float initializer within tol of v. */
static bool const_near(struct qp *q, const char *name, double v, double tol)
{
	const Onnx__TensorProto *t = name && *name ? qd_index_initializer(q->ix, name) : NULL;
	if (!t || qd_tensor_numel(t) != 1)
		return false;
	float *x = NULL;
	int64_t n = 0;
	struct qd_err e;
	if (qd_tensor_to_float(t, &x, &n, &e) < 0)
		return false;
	bool ok = n == 1 && fabs((double)x[0] - v) <= tol;
	free(x);
	return ok;
}

/* The float value of a one-element initializer, NAN when it is not one. */
static double const_value(struct qp *q, const char *name)
{
	const Onnx__TensorProto *t = name && *name ? qd_index_initializer(q->ix, name) : NULL;
	if (!t || qd_tensor_numel(t) != 1)
		return NAN;
	float *x = NULL;
	int64_t n = 0;
	struct qd_err e;
	if (qd_tensor_to_float(t, &x, &n, &e) < 0)
		return NAN;
	double v = n == 1 ? x[0] : NAN;
	free(x);
	return v;
}

/* Declared rank and dims (-1 unknown) of a value; -1 when it has no shape. */
static int value_dims(struct qp *q, const char *name, int64_t *dims)
{
	const Onnx__ValueInfoProto *vi = qd_index_value_info(q->ix, name);
	if (!vi || !vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !vi->type->tensor_type || !vi->type->tensor_type->shape)
		return -1;
	const Onnx__TensorShapeProto *s = vi->type->tensor_type->shape;
	if (s->n_dim > QD_MAX_DIMS)
		return -1;
	for (size_t i = 0; i < s->n_dim; i++)
		dims[i] = s->dim[i]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ?
			  s->dim[i]->dim_value : -1;
	return (int)s->n_dim;
}

/* A fresh node name "<base>_<k>". new. */
static char *node_name(struct qp *q, const char *base)
{
	char buf[256];
	for (;;) {
		snprintf(buf, sizeof buf, "%s_%ld", base, q->fused_seq++);
		if (!qd_namemap_get(&q->node_names, buf))
			break;
	}
	if (qd_namemap_put(&q->node_names, buf, 1) < 0)
		return NULL;
	return strdup(buf);
}

/* Append a fused node (its output is the old chain's last output). */
static int add_fused(struct qp *q, const char *op, const char *dom, const char *const *in, size_t n_in,
		     const char *out, Onnx__NodeProto **made)
{
	char *nm = node_name(q, op);
	if (!nm)
		return oom(q);
	const char *o[1] = {out};
	Onnx__NodeProto *n = qd_node_new(op, dom, nm, in, n_in, o, 1);
	free(nm);
	if (!n || qd_graph_add_node(q->g, n) < 0) {
		qd_node_free(n);
		return oom(q);
	}
	if (dom && *dom)
		q->uses_ms = true;
	*made = n;
	return 0;
}

/* ---- fusion rounds ---- */

typedef int (*match_fn)(struct qp *q, Onnx__NodeProto *n);   /* 1 fused, 0 no, < 0 error */

static void round_free(struct qp *q)
{
	qd_index_free(q->ix);
	q->ix = NULL;
	qd_namemap_free(&q->pos);
	free(q->drop);
	q->drop = NULL;
}

static int round_begin(struct qp *q)
{
	Onnx__GraphProto *g = q->g;
	q->n0 = g->n_node;
	q->drop = calloc(2 * g->n_node + 1, sizeof *q->drop);
	if (!q->drop)
		return oom(q);
	for (size_t i = 0; i < g->n_node; i++)
		if (g->node[i]->n_output && *g->node[i]->output[0] &&
		    qd_namemap_put(&q->pos, g->node[i]->output[0], (long)i) < 0)
			return oom(q);
	return qd_index_build(g, NULL, &q->ix, q->err);
}

static int run_round(struct qp *q, match_fn match, long *count)
{
	int rc = round_begin(q);
	for (size_t i = 0; rc == 0 && i < q->n0; i++) {
		Onnx__NodeProto *n = q->g->node[i];
		if (q->drop[i])
			continue;
		int r = match(q, n);
		if (r < 0)
			rc = r;
		else
			*count += r;
	}
	if (rc == 0 && *count > 0) {
		qd_graph_remove_nodes(q->g, q->drop);
		rc = qd_graph_toposort(q->g, q->err);
	}
	round_free(q);
	return rc;
}

/* ---- Gelu (ORT FusionGelu): erf-GELU exports -> com.microsoft Gelu ----
 *   PyTorch:    x -> Div(√2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5)
 *               or Mul(0.5 * x, Add(1)) with the 0.5 Mul on the input side
 *   Keras:      as PyTorch with the √2 a Sqrt(2) node (folded to √2 by step 1 if constant)
 *   TensorFlow: x -> Mul(1/√2) -> Erf -> Add(1) -> Mul(0.5) -> Mul(x) */
static int match_gelu(struct qp *q, Onnx__NodeProto *erf)
{
	if (!is_op(erf, "Erf") || erf->n_input != 1)
		return 0;
	Onnx__NodeProto *p = producer(q, erf->input[0]), *sq = NULL;
	if (!p || only_consumer(q, erf->input[0]) != erf || p->n_input != 2)
		return 0;
	const char *root = NULL;
	if (is_op(p, "Div")) {
		Onnx__NodeProto *s = producer(q, p->input[1]);
		if (const_near(q, p->input[1], M_SQRT2, 1e-3))
			root = p->input[0];
		else if (is_op(s, "Sqrt") && const_near(q, s->input[0], 2.0, 1e-4) &&
			 only_consumer(q, p->input[1]) == p) {
			root = p->input[0];
			sq = s;
		}
	} else if (is_op(p, "Mul")) {
		for (int k = 0; k < 2 && !root; k++)
			if (const_near(q, p->input[k], M_SQRT1_2, 1e-3))
				root = p->input[1 - k];
	}
	if (!root)
		return 0;
	Onnx__NodeProto *add = only_consumer(q, erf->output[0]);
	if (!is_op(add, "Add") || !const_near(q, other_input(add, erf->output[0]), 1.0, 1e-4))
		return 0;
	Onnx__NodeProto *m1 = only_consumer(q, add->output[0]), *m2 = NULL, *half = NULL;
	if (!is_op(m1, "Mul"))
		return 0;
	const char *x = other_input(m1, add->output[0]);
	if (!x)
		return 0;
	if (const_near(q, x, 0.5, 1e-4)) {
		/* Mul(0.5) then Mul(x) */
		m2 = only_consumer(q, m1->output[0]);
		const char *y = is_op(m2, "Mul") ? other_input(m2, m1->output[0]) : NULL;
		if (!y || strcmp(y, root))
			return 0;
	} else if (!strcmp(x, root)) {
		/* Mul(x) then Mul(0.5) */
		m2 = only_consumer(q, m1->output[0]);
		if (!is_op(m2, "Mul") || !const_near(q, other_input(m2, m1->output[0]), 0.5, 1e-4))
			return 0;
	} else {
		/* Mul(0.5 * x, ...) */
		half = producer(q, x);
		const char *y = is_op(half, "Mul") ? other_input(half, root) : NULL;
		if (!y || !const_near(q, y, 0.5, 1e-4) || only_consumer(q, x) != m1)
			return 0;
	}
	const char *out = m2 ? m2->output[0] : m1->output[0];
	const char *in[1] = {root};
	Onnx__NodeProto *made;
	int rc = add_fused(q, "Gelu", MS_DOMAIN, in, 1, out, &made);
	if (rc < 0)
		return rc;
	kill(q, p); kill(q, erf); kill(q, add); kill(q, m1);
	if (sq) kill(q, sq);
	if (m2) kill(q, m2);
	if (half) kill(q, half);
	return 1;
}

/* Reduce axes of node n: from the "axes" attribute or (opset >= 18) the second input.
 * true when they are the last axis only. */
static bool reduces_last_axis(struct qp *q, const Onnx__NodeProto *n, const char *data)
{
	const int64_t *ax = NULL;
	int64_t *owned = NULL, cnt = 0;
	long na = qd_node_attr_ints(n, "axes", &ax);
	if (na >= 0) {
		cnt = na;
	} else if (n->n_input > 1 && *n->input[1]) {
		const Onnx__TensorProto *t = qd_index_initializer(q->ix, n->input[1]);
		struct qd_err e;
		if (!t || qd_tensor_to_int64(t, &owned, &cnt, &e) < 0)
			return false;
		ax = owned;
	}
	int64_t dims[QD_MAX_DIMS];
	int rank = value_dims(q, data, dims);
	bool ok = cnt == 1 && (ax[0] == -1 || (rank > 0 && ax[0] == rank - 1));
	free(owned);
	return ok && qd_node_attr_int(n, "keepdims", 1) == 1;
}

/* ---- LpNormalization (ORT FusionLpNormalization):
 *   x -> ReduceL2(last axis, keepdims 1) -> Clip(min ~1e-12, no max) -> Expand -> Div(x, .) */
static int match_lpnorm(struct qp *q, Onnx__NodeProto *r)
{
	if (!is_op(r, "ReduceL2") || r->n_input < 1)
		return 0;
	const char *x = r->input[0];
	if (!reduces_last_axis(q, r, x))
		return 0;
	Onnx__NodeProto *clip = only_consumer(q, r->output[0]);
	if (!is_op(clip, "Clip") || strcmp(clip->input[0], r->output[0]))
		return 0;
	double mn;
	if (clip->n_input >= 2) {
		if (clip->n_input > 2 && *clip->input[2])
			return 0;   /* a max */
		mn = const_value(q, clip->input[1]);
	} else {
		if (qd_node_attr(clip, "max"))
			return 0;
		mn = qd_node_attr_float(clip, "min", NAN);
	}
	if (!(fabs(mn - 1e-12) < 1e-13))
		return 0;
	Onnx__NodeProto *ex = only_consumer(q, clip->output[0]);
	if (!is_op(ex, "Expand") || strcmp(ex->input[0], clip->output[0]))
		return 0;
	Onnx__NodeProto *div = only_consumer(q, ex->output[0]);
	if (!is_op(div, "Div") || div->n_input != 2 || strcmp(div->input[0], x) || strcmp(div->input[1], ex->output[0]))
		return 0;
	const char *in[1] = {x};
	Onnx__NodeProto *made;
	int rc = add_fused(q, "LpNormalization", "", in, 1, div->output[0], &made);
	if (rc < 0)
		return rc;
	if (qd_node_set_attr_int(made, "axis", -1) < 0 || qd_node_set_attr_int(made, "p", 2) < 0)
		return oom(q);
	kill(q, r); kill(q, clip); kill(q, ex); kill(q, div);
	return 1;
}

/* ---- SpaceToDepth (ORT FusionSpaceToDepth, early YOLO):
 *   [N,C,H,W] -Reshape-> [N,C,H/b,b,W/b,b] -Transpose(0,1,2,4,3,5)-> -Reshape-> [N,C,H/b*W/b,b*b]
 *   -Transpose(0,1,3,2)-> -Reshape-> [N,C,b*b,H/b,W/b] -Transpose(0,2,1,3,4)-> -Reshape->
 *   [N,b*b*C,H/b,W/b]  ==  SpaceToDepth(blocksize b), DCR */
static bool perm_is(const Onnx__NodeProto *t, const int64_t *want, long n)
{
	const int64_t *p;
	long k = qd_node_attr_ints(t, "perm", &p);
	if (k != n)
		return false;
	for (long i = 0; i < n; i++)
		if (p[i] != want[i])
			return false;
	return true;
}

static bool dims_eq(const int64_t *a, const int64_t *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static int match_s2d(struct qp *q, Onnx__NodeProto *r1)
{
	if (!is_op(r1, "Reshape"))
		return 0;
	Onnx__NodeProto *c[7];
	static const char *const ops[7] = {"Reshape", "Transpose", "Reshape", "Transpose", "Reshape",
					    "Transpose", "Reshape"};
	c[0] = r1;
	for (int i = 1; i < 7; i++) {
		c[i] = only_consumer(q, c[i - 1]->output[0]);
		if (!is_op(c[i], ops[i]) || strcmp(c[i]->input[0], c[i - 1]->output[0]))
			return 0;
	}
	int64_t in[QD_MAX_DIMS], s1[QD_MAX_DIMS], s2[QD_MAX_DIMS], s3[QD_MAX_DIMS], s4[QD_MAX_DIMS];
	if (value_dims(q, r1->input[0], in) != 4 || value_dims(q, c[0]->output[0], s1) != 6 ||
	    value_dims(q, c[2]->output[0], s2) != 4 || value_dims(q, c[4]->output[0], s3) != 5 ||
	    value_dims(q, c[6]->output[0], s4) != 4)
		return 0;
	int64_t n = in[0], ch = in[1], h = in[2], w = in[3], b = s1[3];
	if (ch <= 0 || h <= 0 || w <= 0 || b <= 0 || h % b || w % b)
		return 0;
	static const int64_t p1[6] = {0, 1, 2, 4, 3, 5}, p2[4] = {0, 1, 3, 2}, p3[5] = {0, 2, 1, 3, 4};
	int64_t e1[6] = {n, ch, h / b, b, w / b, b}, e2[4] = {n, ch, (h / b) * (w / b), b * b};
	int64_t e3[5] = {n, ch, b * b, h / b, w / b}, e4[4] = {n, b * b * ch, h / b, w / b};
	if (!dims_eq(s1, e1, 6) || !perm_is(c[1], p1, 6) || !dims_eq(s2, e2, 4) || !perm_is(c[3], p2, 4) ||
	    !dims_eq(s3, e3, 5) || !perm_is(c[5], p3, 5) || !dims_eq(s4, e4, 4))
		return 0;
	const char *inp[1] = {r1->input[0]};
	Onnx__NodeProto *made;
	int rc = add_fused(q, "SpaceToDepth", "", inp, 1, c[6]->output[0], &made);
	if (rc < 0)
		return rc;
	if (qd_node_set_attr_int(made, "blocksize", b) < 0)
		return oom(q);
	for (int i = 0; i < 7; i++)
		kill(q, c[i]);
	return 1;
}

/* ---- LayerNormalization (ORT FusionLayerNormalization), opset >= 17:
 *   x -> ReduceMean -> Sub(x, mean) -> [Cast] -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt
 *   -> Div(x - mean, .) -> Mul(gamma) -> Add(beta); also the two-Sub export. 0 < eps <= 1e-4,
 *   gamma / beta constant and 1-D, both means over the last axis. */
static const Onnx__TensorProto *vec_const(struct qp *q, const char *name, int64_t last)
{
	const Onnx__TensorProto *t = name ? qd_index_initializer(q->ix, name) : NULL;
	if (!t || t->n_dims != 1 || t->data_type != QD_DT_FLOAT || (last > 0 && t->dims[0] != last))
		return NULL;
	return t;
}

static int match_layernorm(struct qp *q, Onnx__NodeProto *rm1)
{
	if (!is_op(rm1, "ReduceMean") || rm1->n_input < 1)
		return 0;
	const char *x = rm1->input[0];
	if (!reduces_last_axis(q, rm1, x) || qd_index_is_graph_output(q->ix, rm1->output[0]))
		return 0;
	Onnx__NodeProto *const *cons;
	size_t nc = qd_index_consumers(q->ix, rm1->output[0], &cons);
	Onnx__NodeProto *subs[2] = {NULL, NULL};
	if (nc < 1 || nc > 2)
		return 0;
	for (size_t i = 0; i < nc; i++) {
		if (!is_op(cons[i], "Sub") || cons[i]->n_input != 2 || strcmp(cons[i]->input[0], x) ||
		    strcmp(cons[i]->input[1], rm1->output[0]) || dropped(q, cons[i]))
			return 0;
		subs[i] = cons[i];
	}
	/* the Sub that feeds Pow (maybe via Cast) and the one that feeds Div */
	Onnx__NodeProto *pw = NULL, *cast = NULL, *div = NULL;
	for (size_t i = 0; i < nc; i++) {
		const char *so = subs[i]->output[0];
		if (qd_index_is_graph_output(q->ix, so))
			return 0;
		Onnx__NodeProto *const *sc;
		size_t ns = qd_index_consumers(q->ix, so, &sc);
		if (ns != (nc == 1 ? 2u : 1u))
			return 0;
		for (size_t k = 0; k < ns; k++) {
			Onnx__NodeProto *u = sc[k];
			if (dropped(q, u))
				return 0;
			if (is_op(u, "Cast") && !pw) {
				cast = u;
				pw = only_consumer(q, u->output[0]);
				if (!is_op(pw, "Pow"))
					return 0;
			} else if (is_op(u, "Pow") && !pw && !strcmp(u->input[0], so)) {
				pw = u;
			} else if (is_op(u, "Div") && !div && u->n_input == 2 && !strcmp(u->input[0], so)) {
				div = u;
			} else {
				return 0;
			}
		}
	}
	if (!pw || !div || pw->n_input != 2 || !const_near(q, pw->input[1], 2.0, 0.0))
		return 0;
	Onnx__NodeProto *rm2 = only_consumer(q, pw->output[0]);
	if (!is_op(rm2, "ReduceMean") || !reduces_last_axis(q, rm2, pw->output[0]))
		return 0;
	Onnx__NodeProto *add = only_consumer(q, rm2->output[0]);
	const char *epsn = is_op(add, "Add") ? other_input(add, rm2->output[0]) : NULL;
	double eps = epsn ? const_value(q, epsn) : NAN;
	if (!(eps > 0 && eps <= 1e-4))
		return 0;
	Onnx__NodeProto *sq = only_consumer(q, add->output[0]);
	if (!is_op(sq, "Sqrt") || only_consumer(q, sq->output[0]) != div || strcmp(div->input[1], sq->output[0]))
		return 0;
	int64_t dims[QD_MAX_DIMS];
	int rank = value_dims(q, x, dims);
	int64_t last = rank > 0 ? dims[rank - 1] : -1;
	Onnx__NodeProto *mul = only_consumer(q, div->output[0]);
	const char *gn = is_op(mul, "Mul") ? other_input(mul, div->output[0]) : NULL;
	if (!gn || !vec_const(q, gn, last))
		return 0;
	Onnx__NodeProto *addb = only_consumer(q, mul->output[0]);
	const char *bn = is_op(addb, "Add") ? other_input(addb, mul->output[0]) : NULL;
	if (!bn || !vec_const(q, bn, last) || qd_tensor_numel(qd_index_initializer(q->ix, bn)) !=
						qd_tensor_numel(qd_index_initializer(q->ix, gn)))
		return 0;
	const char *in[3] = {x, gn, bn};
	Onnx__NodeProto *made;
	int rc = add_fused(q, "LayerNormalization", "", in, 3, addb->output[0], &made);
	if (rc < 0)
		return rc;
	if (qd_node_set_attr_float(made, "epsilon", (float)eps) < 0)
		return oom(q);
	kill(q, rm1); kill(q, subs[0]); kill(q, pw); kill(q, rm2); kill(q, add); kill(q, sq); kill(q, div);
	kill(q, mul); kill(q, addb);
	if (subs[1]) kill(q, subs[1]);
	if (cast) kill(q, cast);
	return 1;
}

/* ---- fixed shapes (DynamicToFixedShape, dynamic_input_shapes) ---- */

static void set_dim_value(Onnx__TensorShapeProto__Dimension *d, int64_t v)
{
	if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
		free(d->dim_param);
	d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
	d->dim_value = v;
}

static Onnx__TensorShapeProto *vi_shape(Onnx__ValueInfoProto *vi)
{
	if (!vi || !vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !vi->type->tensor_type)
		return NULL;
	return vi->type->tensor_type->shape;
}

/* Replace the symbolic dim `param` by v in every declared shape; the count replaced. */
static long fix_dim_param(Onnx__GraphProto *g, const char *param, int64_t v)
{
	Onnx__ValueInfoProto **lists[3] = {g->input, g->output, g->value_info};
	size_t lens[3] = {g->n_input, g->n_output, g->n_value_info};
	long n = 0;
	for (int l = 0; l < 3; l++)
		for (size_t i = 0; i < lens[l]; i++) {
			Onnx__TensorShapeProto *s = vi_shape(lists[l][i]);
			for (size_t d = 0; s && d < s->n_dim; d++)
				if (s->dim[d]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
				    s->dim[d]->dim_param && !strcmp(s->dim[d]->dim_param, param)) {
					set_dim_value(s->dim[d], v);
					n++;
				}
		}
	return n;
}

static bool is_initializer(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name))
			return true;
	return false;
}

/* Fix one graph input's shape (ORT make_input_shape_fixed): a symbolic dim is fixed in
 * every shape that names it; a fixed dim must already have the value. field names the
 * parameter in errors. */
static int fix_input_shape(Onnx__GraphProto *g, const char *name, const int64_t *dims, size_t nd,
			   const char *field, const char *shape_field, struct qd_err *err, long *fixed)
{
	Onnx__ValueInfoProto *vi = NULL;
	for (size_t i = 0; i < g->n_input && !vi; i++)
		if (!strcmp(g->input[i]->name, name) && !is_initializer(g, name))
			vi = g->input[i];
	if (!vi) {
		char have[512] = "";
		size_t k = 0;
		for (size_t i = 0; i < g->n_input; i++)
			if (!is_initializer(g, g->input[i]->name))
				k += (size_t)snprintf(have + k, k < sizeof have ? sizeof have - k : 0, "%s'%s'",
						      k ? ", " : "", g->input[i]->name);
		return qd_err_set(err, QD_EINVAL, field, "the model has no input '%s' (inputs: %s)", name, have);
	}
	Onnx__TensorShapeProto *s = vi_shape(vi);
	if (!s)
		return qd_err_set(err, QD_EINVAL, shape_field, "input '%s' has no declared shape to fix", name);
	if (s->n_dim != nd)
		return qd_err_set(err, QD_EINVAL, shape_field, "input '%s' has rank %zu, the shape given has %zu dims",
				  name, s->n_dim, nd);
	for (size_t d = 0; d < nd; d++) {
		Onnx__TensorShapeProto__Dimension *dm = s->dim[d];
		if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
			if (dm->dim_value != dims[d])
				return qd_err_set(err, QD_EINVAL, shape_field, "input '%s' dim %zu is fixed at %lld, "
						  "cannot make it %lld", name, d, (long long)dm->dim_value,
						  (long long)dims[d]);
		} else if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dm->dim_param &&
			   *dm->dim_param) {
			char *p = strdup(dm->dim_param);
			if (!p)
				return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			*fixed += fix_dim_param(g, p, dims[d]);
			free(p);
		} else {
			set_dim_value(dm, dims[d]);
			(*fixed)++;
		}
	}
	return 0;
}

static bool shape_fixed(const Onnx__TensorShapeProto *s)
{
	for (size_t d = 0; s && d < s->n_dim; d++)
		if (s->dim[d]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
			return false;
	return s != NULL;
}

/* Fix the graph outputs' shapes from an engine run (ORT fix_output_shapes) and retype the
 * intermediate values. A model the engine cannot run keeps its declared output shapes. */
static int fix_output_shapes(struct qd_pass_ctx *pc, struct qd_model *m, struct qd_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__TensorShapeProto **saved = calloc(g->n_output + 1, sizeof *saved);
	if (!saved)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	size_t stripped = 0;
	for (size_t i = 0; i < g->n_output; i++) {
		Onnx__TensorShapeProto *s = vi_shape(g->output[i]);
		if (s && !shape_fixed(s)) {
			saved[i] = s;
			g->output[i]->type->tensor_type->shape = NULL;
			stripped++;
		}
	}
	if (!stripped) {
		free(saved);
		return 0;
	}
	struct qd_preprocess_opts po = { .infer_types = true, .threads = pc->threads };
	struct qd_err e = { 0 };
	int rc = qd_preprocess(m, &po, NULL, &e);
	g = m->proto->graph;
	if (rc < 0) {
		for (size_t i = 0; i < g->n_output; i++)
			if (saved[i] && g->output[i]->type && g->output[i]->type->tensor_type &&
			    !g->output[i]->type->tensor_type->shape) {
				g->output[i]->type->tensor_type->shape = saved[i];
				saved[i] = NULL;
			}
		qd_pass_log(pc, QD_LOG_WARN, "output shapes left as declared: the engine cannot run the model "
			    "to infer them (%s)", e.msg);
		rc = 0;
	}
	for (size_t i = 0; i < g->n_output; i++)
		if (saved[i])
			protobuf_c_message_free_unpacked(&saved[i]->base, NULL);
	free(saved);
	return rc;
}

/* ---- parameter parsing shared by both passes ---- */

/* A JSON list of positive integers into dims (at most QD_MAX_DIMS). -1 when it is not one. */
static int int_list(const json_t *v, int64_t *dims)
{
	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > QD_MAX_DIMS)
		return -1;
	size_t i; json_t *x;
	json_array_foreach(v, i, x) {
		if (!json_is_integer(x) || json_integer_value(x) <= 0)
			return -1;
		dims[i] = json_integer_value(x);
	}
	return (int)json_array_size(v);
}

/* "1,3,256,256" or [1, 3, 256, 256]. */
static int shape_of(const json_t *v, int64_t *dims)
{
	if (!json_is_string(v))
		return int_list(v, dims);
	const char *s = json_string_value(v);
	int n = 0;
	while (*s) {
		char *e;
		long long x = strtoll(s, &e, 10);
		if (e == s || x <= 0 || n == QD_MAX_DIMS)
			return -1;
		dims[n++] = x;
		s = e;
		while (*s == ' ')
			s++;
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return n ? n : -1;
}

static const json_t *first(const json_t *space, const char *key)
{
	return json_array_get(json_object_get(space, key), 0);
}

/* dynamic_input_shapes: [[name, shape], ...] */
static int check_dynamic_input_shapes(const json_t *v, const char *field, struct qd_err *err)
{
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || !json_array_size(v))
		return qd_err_set(err, QD_EINVAL, field, "dynamic_input_shapes must be a non-empty list of "
				  "[input name, shape] pairs, e.g. [[\"x\", \"1,3,224,224\"]]");
	size_t i; json_t *p;
	json_array_foreach(v, i, p) {
		int64_t d[QD_MAX_DIMS];
		if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_string(json_array_get(p, 0)) ||
		    shape_of(json_array_get(p, 1), d) < 0)
			return qd_err_set(err, QD_EINVAL, field, "dynamic_input_shapes[%zu] must be [input name, "
					  "shape] with the shape as \"1,3,224,224\" or a list of positive integers", i);
	}
	return 0;
}

/* ---- DynamicToFixedShape ---- */

static int check_d2f(const char *pass_name, const json_t *dp, const json_t *dv, const json_t *in,
		     const json_t *is, struct qd_err *err)
{
	char field[160];
	bool g1 = !json_is_null(dp) || !json_is_null(dv), g2 = !json_is_null(in) || !json_is_null(is);
	if (g1 && g2) {
		snprintf(field, sizeof field, "passes.%s.input_name", pass_name);
		return qd_err_set(err, QD_EINVAL, field, "give either dim_param + dim_value or input_name + "
				  "input_shape, not both");
	}
	if (!g1 && !g2) {
		snprintf(field, sizeof field, "passes.%s.dim_param", pass_name);
		return qd_err_set(err, QD_EINVAL, field, "DynamicToFixedShape needs dim_param + dim_value or "
				  "input_name + input_shape");
	}
	if (g1) {
		snprintf(field, sizeof field, "passes.%s.%s", pass_name, json_is_null(dp) ? "dim_param" : "dim_value");
		if (json_is_null(dp) || json_is_null(dv))
			return qd_err_set(err, QD_EINVAL, field, "dim_param and dim_value must be given together");
		snprintf(field, sizeof field, "passes.%s.dim_value", pass_name);
		if (!json_is_array(dv))
			return qd_err_set(err, QD_EINVAL, field, "dim_value must be a list of positive integers");
		size_t i; json_t *x;
		json_array_foreach(dv, i, x)
			if (!json_is_integer(x) || json_integer_value(x) <= 0)
				return qd_err_set(err, QD_EINVAL, field, "dim_value[%zu] must be a positive integer", i);
		if (json_array_size(dp) != json_array_size(dv) || !json_array_size(dp))
			return qd_err_set(err, QD_EINVAL, field, "dim_param has %zu names and dim_value %zu values: "
					  "they must have the same non-zero length", json_array_size(dp),
					  json_array_size(dv));
		json_array_foreach(dp, i, x)
			if (!json_string_length(x)) {
				snprintf(field, sizeof field, "passes.%s.dim_param", pass_name);
				return qd_err_set(err, QD_EINVAL, field, "dim_param[%zu] is empty", i);
			}
		return 0;
	}
	snprintf(field, sizeof field, "passes.%s.%s", pass_name, json_is_null(in) ? "input_name" : "input_shape");
	if (json_is_null(in) || json_is_null(is))
		return qd_err_set(err, QD_EINVAL, field, "input_name and input_shape must be given together");
	snprintf(field, sizeof field, "passes.%s.input_shape", pass_name);
	if (!json_is_array(is))
		return qd_err_set(err, QD_EINVAL, field, "input_shape must be a list of shapes (lists of positive "
				  "integers)");
	size_t i; json_t *x;
	json_array_foreach(is, i, x) {
		int64_t d[QD_MAX_DIMS];
		if (int_list(x, d) < 0)
			return qd_err_set(err, QD_EINVAL, field, "input_shape[%zu] must be a non-empty list of positive "
					  "integers", i);
	}
	if (json_array_size(in) != json_array_size(is) || !json_array_size(in))
		return qd_err_set(err, QD_EINVAL, field, "input_name has %zu names and input_shape %zu shapes: they "
				  "must have the same non-zero length", json_array_size(in), json_array_size(is));
	return 0;
}

int qd_pass_check_dynamic_to_fixed_shape(const char *pass_name, const json_t *space, struct qd_err *err)
{
	int rc = check_d2f(pass_name, first(space, "dim_param"), first(space, "dim_value"), first(space, "input_name"),
			   first(space, "input_shape"), err);
	return rc < 0 ? rc : qd_pass_check_external(pass_name, space, err);
}

int qd_pass_run_dynamic_to_fixed_shape(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
				       struct qd_err *err)
{
	const json_t *dp = json_object_get(params, "dim_param"), *dv = json_object_get(params, "dim_value");
	const json_t *in = json_object_get(params, "input_name"), *is = json_object_get(params, "input_shape");
	int rc = check_d2f(ctx->name ? ctx->name : "pass", dp ? dp : json_null(), dv ? dv : json_null(),
			   in ? in : json_null(), is ? is : json_null(), err);
	if (rc < 0)
		return rc;
	Onnx__GraphProto *g = m->proto->graph;
	long fixed = 0;
	char field[160];
	size_t i; json_t *x;
	if (json_is_array(dp)) {
		snprintf(field, sizeof field, "passes.%s.dim_param", ctx->name ? ctx->name : "pass");
		json_array_foreach(dp, i, x) {
			long n = fix_dim_param(g, json_string_value(x), json_integer_value(json_array_get(dv, i)));
			if (n == 0)
				return qd_err_set(err, QD_EINVAL, field, "no input, output or value shape of the model "
						  "uses the symbolic dim '%s'", json_string_value(x));
			qd_pass_log(ctx, QD_LOG_INFO, "dim '%s' fixed to %lld in %ld shapes", json_string_value(x),
				    (long long)json_integer_value(json_array_get(dv, i)), n);
			fixed += n;
		}
	} else {
		char sfield[160];
		snprintf(field, sizeof field, "passes.%s.input_name", ctx->name ? ctx->name : "pass");
		snprintf(sfield, sizeof sfield, "passes.%s.input_shape", ctx->name ? ctx->name : "pass");
		json_array_foreach(in, i, x) {
			int64_t d[QD_MAX_DIMS];
			int nd = int_list(json_array_get(is, i), d);
			if ((rc = fix_input_shape(g, json_string_value(x), d, (size_t)nd, field, sfield, err, &fixed)) < 0)
				return rc;
			char *sh = json_dumps(json_array_get(is, i), JSON_COMPACT);
			qd_pass_log(ctx, QD_LOG_INFO, "input '%s' fixed to shape %s", json_string_value(x), sh ? sh : "?");
			free(sh);
		}
	}
	if ((rc = fix_output_shapes(ctx, m, err)) < 0)
		return rc;
	json_object_set_new(ctx->stats, "fixed_dims", json_integer(fixed));
	return qd_pass_validate_output(m, err);
}

/* ---- QnnPreprocess ---- */

int qd_pass_check_qnn_preprocess(const char *pass_name, const json_t *space, struct qd_err *err)
{
	char field[160];
	snprintf(field, sizeof field, "passes.%s.dynamic_input_shapes", pass_name);
	int rc = check_dynamic_input_shapes(first(space, "dynamic_input_shapes"), field, err);
	const char *lists[2] = {"inputs_to_make_channel_last", "outputs_to_make_channel_last"};
	for (int l = 0; rc == 0 && l < 2; l++) {
		const json_t *v = first(space, lists[l]);
		size_t i, j; json_t *a, *b;
		snprintf(field, sizeof field, "passes.%s.%s", pass_name, lists[l]);
		json_array_foreach(v, i, a) {
			if (!json_string_length(a))
				return qd_err_set(err, QD_EINVAL, field, "%s[%zu] is empty", lists[l], i);
			json_array_foreach(v, j, b)
				if (j > i && json_equal(a, b))
					return qd_err_set(err, QD_EINVAL, field, "'%s' is listed twice", json_string_value(a));
		}
	}
	return rc < 0 ? rc : qd_pass_check_external(pass_name, space, err);
}

/* Graph input / output name -> its channel-last form with a Transpose (perm NHWC->NCHW
 * behind an input, NCHW->NHWC in front of an output). */
/* The 4-D graph input / output `name` that channel_last turns around, else an error. */
static int channel_last_target(Onnx__GraphProto *g, const char *name, bool input, const char *field,
			       Onnx__ValueInfoProto **target, struct qd_err *err)
{
	Onnx__ValueInfoProto *vi = NULL;
	size_t cnt = input ? g->n_input : g->n_output;
	for (size_t i = 0; i < cnt && !vi; i++) {
		Onnx__ValueInfoProto *v = input ? g->input[i] : g->output[i];
		if (!strcmp(v->name, name) && !(input && is_initializer(g, name)))
			vi = v;
	}
	if (!vi)
		return qd_err_set(err, QD_EINVAL, field, "the model has no %s '%s'", input ? "input" : "output", name);
	Onnx__TensorShapeProto *s = vi_shape(vi);
	if (!s || s->n_dim != 4)
		return qd_err_set(err, QD_EINVAL, field, "%s '%s' is not 4-D (%s): only (N, C, H, W) tensors can be "
				  "made channel-last", input ? "input" : "output", name,
				  s ? "its rank is not 4" : "no declared shape");
	*target = vi;
	return 0;
}

static int channel_last(struct qp *q, const char *name, bool input, const char *field, long *k)
{
	Onnx__GraphProto *g = q->g;
	Onnx__ValueInfoProto *vi = NULL;
	int rc0 = channel_last_target(g, name, input, field, &vi, q->err);
	if (rc0 < 0)
		return rc0;
	Onnx__TensorShapeProto *s = vi_shape(vi);
	/* (N, C, H, W) -> (N, H, W, C) */
	Onnx__TensorShapeProto__Dimension *c = s->dim[1];
	s->dim[1] = s->dim[2];
	s->dim[2] = s->dim[3];
	s->dim[3] = c;
	char base[512];
	snprintf(base, sizeof base, "%s_channel_%s", name, input ? "first" : "last_input");
	char *inner = qd_index_unique_name(q->ix, base);
	char nm[64];
	snprintf(nm, sizeof nm, "Transpose_channel_%ld", (*k)++);
	if (!inner)
		return oom(q);
	static const int64_t to_first[4] = {0, 3, 1, 2}, to_last[4] = {0, 2, 3, 1};
	const char *tin[1] = {input ? name : inner}, *tout[1] = {input ? inner : name};
	Onnx__NodeProto *t = qd_node_new("Transpose", "", nm, tin, 1, tout, 1);
	int rc = 0;
	if (!t || qd_node_set_attr_ints(t, "perm", input ? to_first : to_last, 4) < 0) {
		qd_node_free(t);
		free(inner);
		return oom(q);
	}
	/* rewire: readers of an input read the Transpose; the producer of an output (and
	 * its other readers) use the inner name */
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++)
			if (!strcmp(n->input[j], name)) {
				char *d = strdup(inner);
				if (!d) { rc = oom(q); goto out; }
				free(n->input[j]);
				n->input[j] = d;
			}
		for (size_t j = 0; !input && j < n->n_output; j++)
			if (!strcmp(n->output[j], name)) {
				char *d = strdup(inner);
				if (!d) { rc = oom(q); goto out; }
				free(n->output[j]);
				n->output[j] = d;
			}
	}
	/* an output that is also another output or a graph input is read directly */
	for (size_t i = 0; !input && i < g->n_output; i++)
		if (g->output[i] != vi && !strcmp(g->output[i]->name, name)) {
			rc = qd_err_set(q->err, QD_EINVAL, field, "output '%s' is listed twice in the graph", name);
			goto out;
		}
	if (!input && qd_index_is_graph_input(q->ix, name)) {
		rc = qd_err_set(q->err, QD_EINVAL, field, "output '%s' is a graph input", name);
		goto out;
	}
	if (qd_graph_add_node(g, t) < 0) {
		rc = oom(q);
		goto out;
	}
	t = NULL;
out:
	qd_node_free(t);
	free(inner);
	return rc;
}

static int largest_suffix(const Onnx__GraphProto *g, const char *prefix)
{
	size_t pl = strlen(prefix);
	long best = -1;
	for (size_t i = 0; i < g->n_node; i++) {
		const char *nm = g->node[i]->name;
		if (!nm || strncmp(nm, prefix, pl))
			continue;
		char *e;
		long v = strtol(nm + pl, &e, 10);
		if (e != nm + pl && !*e && v > best)
			best = v;
	}
	return (int)best;
}

static int add_metadata(Onnx__ModelProto *mp, const char *key, const char *value)
{
	for (size_t i = 0; i < mp->n_metadata_props; i++)
		if (mp->metadata_props[i]->key && !strcmp(mp->metadata_props[i]->key, key)) {
			char *v = strdup(value);
			if (!v)
				return -QD_ENOMEM;
			free(mp->metadata_props[i]->value);
			mp->metadata_props[i]->value = v;
			return 0;
		}
	Onnx__StringStringEntryProto **np = realloc(mp->metadata_props, (mp->n_metadata_props + 1) * sizeof *np);
	if (!np)
		return -QD_ENOMEM;
	mp->metadata_props = np;
	Onnx__StringStringEntryProto *e = malloc(sizeof *e);
	if (!e)
		return -QD_ENOMEM;
	onnx__string_string_entry_proto__init(e);
	e->key = strdup(key);
	e->value = strdup(value);
	if (!e->key || !e->value) {
		free(e->key); free(e->value); free(e);
		return -QD_ENOMEM;
	}
	mp->metadata_props[mp->n_metadata_props++] = e;
	return 0;
}

/* Nodes left without readers by a fusion (the Shape feeding a fused Expand), until none
 * is left; returns the count removed or a negative error. */
static long remove_dead(Onnx__GraphProto *g)
{
	long total = 0;
	for (;;) {
		struct qd_namemap used = { 0 };
		long n = 0;
		for (size_t i = 0; i < g->n_node; i++) {
			Onnx__NodeProto *nd = g->node[i];
			for (size_t k = 0; k < nd->n_input; k++)
				if (*nd->input[k] && qd_namemap_put(&used, nd->input[k], 1) < 0)
					goto nomem;
			Onnx__GraphProto *subs[8];
			if (qd_node_subgraphs(nd, subs, 8))
				goto done;   /* outer-scope reads: leave the graph as it is */
		}
		for (size_t i = 0; i < g->n_output; i++)
			if (qd_namemap_put(&used, g->output[i]->name, 1) < 0)
				goto nomem;
		bool *drop = calloc(g->n_node + 1, sizeof *drop);
		if (!drop)
			goto nomem;
		for (size_t i = 0; i < g->n_node; i++) {
			bool live = false;
			for (size_t k = 0; k < g->node[i]->n_output && !live; k++)
				live = *g->node[i]->output[k] && qd_namemap_get(&used, g->node[i]->output[k]);
			if (!live) {
				drop[i] = true;
				n++;
			}
		}
		if (n)
			qd_graph_remove_nodes(g, drop);
		free(drop);
		qd_namemap_free(&used);
		total += n;
		if (!n)
			return total;
		continue;
done:
		qd_namemap_free(&used);
		return total;
nomem:
		qd_namemap_free(&used);
		return -QD_ENOMEM;
	}
}

/* value_info entries of values no node produces any more (fused away) */
static void prune_value_info(Onnx__GraphProto *g)
{
	struct qd_namemap live = { 0 };
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (qd_namemap_put(&live, g->node[i]->output[k], 1) < 0)
				goto out;
	size_t w = 0;
	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *v = g->value_info[i];
		if (v->name && qd_namemap_get(&live, v->name))
			g->value_info[w++] = v;
		else
			protobuf_c_message_free_unpacked(&v->base, NULL);
	}
	g->n_value_info = w;
out:
	qd_namemap_free(&live);
}

static void pp_log(void *ud, enum qd_log_level lvl, const char *line)
{
	qd_pass_log(ud, lvl, "%s", line);
}

int qd_pass_run_qnn_preprocess(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			       struct qd_err *err)
{
	struct qp q = { .pc = ctx, .m = m, .err = err };
	struct qd_buf orig = { 0 };
	json_t *fus = json_object();
	bool modified = false;
	const char *pn = ctx->name ? ctx->name : "pass";
	char field[160];
	int rc;
	if (!fus)
		return oom(&q);
	snprintf(field, sizeof field, "passes.%s.dynamic_input_shapes", pn);
	const json_t *dis = json_object_get(params, "dynamic_input_shapes");
	if ((rc = check_dynamic_input_shapes(dis, field, err)) < 0)
		goto out;
	if ((rc = qd_model_serialize(m, &orig, err)) < 0)
		goto out;
	/* 1. reload: quant_preprocess (shapes, folding) */
	{
		struct qd_preprocess_opts po = { .fold_constants = true, .fold_batchnorm = true, .infer_types = true,
						 .threads = ctx->threads, .log = pp_log, .ud = ctx };
		json_t *pst = json_object();
		struct qd_err e = { 0 };
		rc = qd_preprocess(m, &po, pst, &e);
		if (rc < 0 && (rc == -QD_EUNSUPPORTED || rc == -QD_ENOT_IMPL || rc == -QD_EMODEL)) {
			qd_pass_log(ctx, QD_LOG_WARN, "shape inference skipped: %s (fusions that need shapes, "
				    "SpaceToDepth, match nothing)", e.msg);
			po.infer_types = false;
			rc = qd_preprocess(m, &po, pst, &e);
		}
		json_object_set_new(ctx->stats, "preprocess", pst);
		if (rc < 0) {
			*err = e;
			qd_err_wrap(err, "QnnPreprocess: preprocessing failed");
			goto out;
		}
	}
	q.g = m->proto->graph;
	/* 2. fixed shapes */
	if (json_is_array(dis)) {
		long fixed = 0;
		size_t i; json_t *p;
		json_array_foreach(dis, i, p) {
			int64_t d[QD_MAX_DIMS];
			int nd = shape_of(json_array_get(p, 1), d);
			if ((rc = fix_input_shape(q.g, json_string_value(json_array_get(p, 0)), d, (size_t)nd, field, field,
						  err, &fixed)) < 0)
				goto out;
		}
		if ((rc = fix_output_shapes(ctx, m, err)) < 0)
			goto out;
		q.g = m->proto->graph;
		qd_pass_log(ctx, QD_LOG_INFO, "dynamic_input_shapes: %ld dims fixed", fixed);
		json_object_set_new(ctx->stats, "fixed_dims", json_integer(fixed));
		modified = true;
	}
	/* 3. initializers out of the graph inputs */
	if (json_is_true(json_object_get(params, "exclude_initializer_from_input"))) {
		size_t w = 0, removed = 0;
		for (size_t i = 0; i < q.g->n_input; i++) {
			Onnx__ValueInfoProto *v = q.g->input[i];
			if (is_initializer(q.g, v->name)) {
				protobuf_c_message_free_unpacked(&v->base, NULL);
				removed++;
			} else {
				q.g->input[w++] = v;
			}
		}
		q.g->n_input = w;
		qd_pass_log(ctx, QD_LOG_INFO, "exclude_initializer_from_input: %zu initializers removed from the "
			    "graph inputs", removed);
		modified = modified || removed > 0;
	}
	for (size_t i = 0; i < q.g->n_node; i++)
		if (q.g->node[i]->name && *q.g->node[i]->name &&
		    qd_namemap_put(&q.node_names, q.g->node[i]->name, 1) < 0) {
			rc = oom(&q);
			goto out;
		}
	/* 4.-7. fusions */
	{
		int64_t opset = qd_model_opset(m, "");
		bool ln = json_is_true(json_object_get(params, "fuse_layernorm"));
		static const struct { const char *name; match_fn fn; } rounds[] = {
			{"Gelu", match_gelu}, {"LpNormalization", match_lpnorm}, {"SpaceToDepth", match_s2d},
			{"LayerNormalization", match_layernorm},
		};
		for (size_t r = 0; r < QD_ARRAY_LEN(rounds); r++) {
			long n = 0;
			if (rounds[r].fn == match_layernorm && !ln)
				continue;
			if (rounds[r].fn == match_layernorm && opset < 17) {
				qd_pass_log(ctx, QD_LOG_INFO, "fuse_layernorm: not applied, the model's opset %lld is "
					    "below 17 (LayerNormalization)", (long long)opset);
				continue;
			}
			if ((rc = run_round(&q, rounds[r].fn, &n)) < 0)
				goto out;
			json_object_set_new(fus, rounds[r].name, json_integer(n));
			qd_pass_log(ctx, QD_LOG_INFO, "fusion %s: %ld matched", rounds[r].name, n);
			modified = modified || n > 0;
		}
	}
	if (q.uses_ms && qd_model_opset(m, MS_DOMAIN) < 1 && (rc = qd_model_set_opset(m, MS_DOMAIN, 1)) < 0) {
		rc = qd_err_set(err, -rc, NULL, "cannot add the com.microsoft opset import");
		goto out;
	}
	/* 8. channel-last inputs / outputs */
	{
		long k = 0;
		const char *lists[2] = {"inputs_to_make_channel_last", "outputs_to_make_channel_last"};
		for (int l = 0; l < 2; l++) {
			const json_t *v = json_object_get(params, lists[l]);
			size_t i; json_t *x;
			snprintf(field, sizeof field, "passes.%s.%s", pn, lists[l]);
			json_array_foreach(v, i, x) {
				if ((rc = qd_index_build(q.g, NULL, &q.ix, err)) < 0)
					goto out;
				rc = channel_last(&q, json_string_value(x), l == 0, field, &k);
				qd_index_free(q.ix);
				q.ix = NULL;
				if (rc < 0)
					goto out;
				qd_pass_log(ctx, QD_LOG_INFO, "%s '%s' made channel-last", l ? "output" : "input",
					    json_string_value(x));
			}
		}
		if (k) {
			if ((rc = qd_graph_toposort(q.g, err)) < 0)
				goto out;
			modified = true;
		}
		json_object_set_new(ctx->stats, "channel_last", json_integer(k));
	}
	/* 9. node names */
	{
		int next = largest_suffix(q.g, "qnn_preproc_node_") + 1;
		long named = 0;
		for (size_t i = 0; i < q.g->n_node; i++) {
			Onnx__NodeProto *n = q.g->node[i];
			if ((n->name && *n->name) || !strcmp(n->op_type, "Constant"))
				continue;
			char buf[64];
			snprintf(buf, sizeof buf, "qnn_preproc_node_%d", next++);
			char *d = strdup(buf);
			if (!d) {
				rc = oom(&q);
				goto out;
			}
			free(n->name);
			n->name = d;
			named++;
		}
		if (named)
			qd_pass_log(ctx, QD_LOG_INFO, "%ld unnamed nodes named qnn_preproc_node_<k>", named);
		json_object_set_new(ctx->stats, "named_nodes", json_integer(named));
		modified = modified || named > 0;
	}
	json_object_set(ctx->stats, "fusions", fus);
	json_object_set_new(ctx->stats, "modified", json_boolean(modified));
	if (!modified) {
		/* ORT reports the model unchanged: the input model is the result */
		struct qd_model *o = NULL;
		if ((rc = qd_model_load_buf(orig.data, orig.len, m->base_dir, NULL, &o, err)) < 0)
			goto out;
		Onnx__ModelProto *t = m->proto;
		m->proto = o->proto;
		o->proto = t;
		qd_model_free(o);
		qd_pass_log(ctx, QD_LOG_INFO, "nothing to change: the input model is returned as is");
		rc = 0;
		goto out;
	}
	if (remove_dead(q.g) < 0) {
		rc = oom(&q);
		goto out;
	}
	prune_value_info(q.g);
	if (qd_graph_remove_unused_initializers(q.g) < 0) {
		rc = oom(&q);
		goto out;
	}
	if ((rc = qd_graph_toposort(q.g, err)) < 0)
		goto out;
	if (add_metadata(m->proto, "onnx.infer", "quantd.qnn_preprocess") < 0) {
		rc = oom(&q);
		goto out;
	}
	rc = qd_pass_validate_output(m, err);
out:
	round_free(&q);
	qd_namemap_free(&q.node_names);
	qd_buf_free(&orig);
	json_decref(fus);
	return rc;
}

/* ---- submit-time checks against the model's interface ---- */

/* The QnnPreprocess / DynamicToFixedShape parameters that name graph inputs and outputs,
 * checked in pass order on g (a skeleton of the model's interface, changed as each pass
 * would change it): the same errors as at run time, before the job is queued. */
static int check_io_pass(Onnx__GraphProto *g, const char *pn, const char *type, const json_t *params,
			 struct qd_err *err)
{
	char field[160], sfield[160];
	long fixed = 0;
	int rc = 0;
	size_t i; json_t *x;
	if (!strcmp(type, "DynamicToFixedShape")) {
		const json_t *in = json_object_get(params, "input_name"), *is = json_object_get(params, "input_shape");
		snprintf(field, sizeof field, "passes.%s.input_name", pn);
		snprintf(sfield, sizeof sfield, "passes.%s.input_shape", pn);
		json_array_foreach(in, i, x) {
			int64_t d[QD_MAX_DIMS];
			int nd = int_list(json_array_get(is, i), d);
			if (json_is_string(x) && nd > 0 &&
			    (rc = fix_input_shape(g, json_string_value(x), d, (size_t)nd, field, sfield, err, &fixed)) < 0)
				return rc;
		}
		return 0;
	}
	snprintf(field, sizeof field, "passes.%s.dynamic_input_shapes", pn);
	json_array_foreach(json_object_get(params, "dynamic_input_shapes"), i, x) {
		int64_t d[QD_MAX_DIMS];
		int nd = shape_of(json_array_get(x, 1), d);
		const char *name = json_string_value(json_array_get(x, 0));
		if (name && nd > 0 && (rc = fix_input_shape(g, name, d, (size_t)nd, field, field, err, &fixed)) < 0)
			return rc;
	}
	const char *lists[2] = {"inputs_to_make_channel_last", "outputs_to_make_channel_last"};
	for (int l = 0; l < 2; l++) {
		snprintf(field, sizeof field, "passes.%s.%s", pn, lists[l]);
		json_array_foreach(json_object_get(params, lists[l]), i, x) {
			Onnx__ValueInfoProto *vi = NULL;
			if (json_is_string(x) &&
			    (rc = channel_last_target(g, json_string_value(x), l == 0, field, &vi, err)) < 0)
				return rc;
		}
	}
	return 0;
}

int qd_qnn_check_io(const json_t *wf, struct qd_model *skel, struct qd_err *err)
{
	static const char *const keys[] = {"input_name", "input_shape", "dynamic_input_shapes",
					   "inputs_to_make_channel_last", "outputs_to_make_channel_last"};
	json_t *order = qd_workflow_pass_order(wf);
	const json_t *passes = json_object_get(wf, "passes");
	int rc = 0;
	size_t i; json_t *x;
	json_array_foreach(order, i, x) {
		const char *pn = json_string_value(x);
		const json_t *entry = json_object_get(passes, pn);
		if (json_is_array(entry))
			entry = json_array_get(entry, 0); /* alternatives: the first runs */
		const char *type = json_string_value(json_object_get(entry, "type"));
		if (!type || (strcmp(type, "QnnPreprocess") && strcmp(type, "DynamicToFixedShape")))
			continue;
		json_t *params = json_object();
		if (!params) {
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			break;
		}
		for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
			if (qd_pass_entry_param(entry, keys[k]))
				json_object_set(params, keys[k], (json_t *)qd_pass_entry_param(entry, keys[k]));
		rc = check_io_pass(skel->proto->graph, pn, type, params, err);
		json_decref(params);
		if (rc < 0)
			break;
	}
	json_decref(order);
	return rc;
}
