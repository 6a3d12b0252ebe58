/* engine/fuse.c — load-time fusions of quantized MatMul chains (like ONNX Runtime's graph
 * optimizer) into one node that runs an existing fused kernel, so the integer GEMM runs on
 * packed constant weights and dequantizes in one pass with no int32/float intermediates.
 *
 * DESIGN
 * - Patterns (main graph only; W is a constant 2-D 8-bit weight, [K, N]):
 *   1. DynamicQuantizeLinear(x) -> (q, s, z); MatMulInteger(q, W, z, wz) -> Cast(float)
 *      -> Mul(., Mul(s, S)) [-> Add(., bias)]
 *        => DynamicQuantizeMatMul(x, W, S, wz, bias) when q, s, z feed nothing else,
 *        => MatMulIntegerToFloat(q, W, s, S, z, wz, bias) otherwise (the DQL stays).
 *   2. MatMul(DequantizeLinear(xq, xs, xz), DequantizeLinear(W, ws, wz)) [-> Add(., bias)]
 *        => DynamicQuantizeMatMul(x, W, ws, wz, bias) when (xq, xs, xz) come from a
 *           DynamicQuantizeLinear(x) that feeds nothing else,
 *        => MatMulIntegerToFloat(xq, W, xs, ws, xz, wz, bias) when xs / xz are constant
 *           scalars (e.g. after QuantizeLinear(x)) or come from a DynamicQuantizeLinear.
 *   S / ws: constant float32, one value or N (per column; for DequantizeLinear axis 1);
 *   bias: constant float32 [N]. Every intermediate must have exactly one consumer (counting
 *   subgraph reads) and must not be a graph output.
 * - The originals stay in the graph: the last node of a chain gets .fused, the others
 *   .fuse_skip. When a per-tensor hook is set (qd_engine_set_hook, calibration) the engine
 *   runs the originals, so the hook sees every tensor it saw before; fusion is simply off.
 * - The fused node frees, after it runs, everything the chain's nodes freed. */
#include <stdlib.h>
#include <string.h>
#include "engine/engine_internal.h"

/* ---- shared by the fusion passes (engine_internal.h) ---- */

static void count_uses(struct qd_fuse_index *x, struct qd_egraph *g, bool top)
{
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *n = &g->nodes[i];
		for (int k = 0; k < n->n_in; k++)
			if (n->in[k] >= 0) {
				x->uses[n->in[k]]++;
				if (top)
					x->cons[n->in[k]] = i;
			}
		for (int k = 0; k < n->n_sub; k++)
			count_uses(x, n->sub[k], false);
		if (top)
			for (int k = 0; k < n->n_out; k++)
				if (n->out[k] >= 0)
					x->prod[n->out[k]] = i;
	}
	if (!top)   /* outputs of subgraphs count as reads; those of g are is_out */
		for (int k = 0; k < g->n_outputs; k++)
			x->uses[g->outputs[k]]++;
}

int qd_fuse_index_init(struct qd_fuse_index *x, struct qd_engine *e, struct qd_egraph *g,
		       struct qd_err *err)
{
	int ns = e->n_slots;
	*x = (struct qd_fuse_index){ .e = e, .g = g };
	x->uses = calloc((size_t)ns + 1, sizeof(int));
	x->cons = malloc(((size_t)ns + 1) * sizeof(int));
	x->prod = malloc(((size_t)ns + 1) * sizeof(int));
	x->is_out = calloc((size_t)ns + 1, sizeof(bool));
	if (!x->uses || !x->cons || !x->prod || !x->is_out)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	for (int k = 0; k < ns; k++)
		x->cons[k] = x->prod[k] = -1;
	count_uses(x, g, true);
	for (int k = 0; k < g->n_outputs; k++)
		x->is_out[g->outputs[k]] = true;
	return 0;
}

void qd_fuse_index_free(struct qd_fuse_index *x)
{
	free(x->uses);
	free(x->cons);
	free(x->prod);
	free(x->is_out);
	x->uses = x->cons = x->prod = NULL;
	x->is_out = NULL;
}

bool qd_fuse_is_op(const struct qd_enode *n, enum qd_op_id id)
{
	return n && n->op == &qd_ops[id] && !n->fused && !n->fuse_skip;
}

struct qd_enode *qd_fuse_node(const struct qd_fuse_index *x, int i)
{
	return i >= 0 ? &x->g->nodes[i] : NULL;
}

int qd_fuse_in(const struct qd_enode *n, int i)
{
	return n && i < n->n_in ? n->in[i] : -1;
}

int qd_fuse_only_reader(const struct qd_fuse_index *x, int id)
{
	if (id < 0 || x->is_out[id] || x->uses[id] != 1 || x->e->slots[id].is_const)
		return -1;
	return x->cons[id];
}

const struct qd_tensor *qd_fuse_const(const struct qd_fuse_index *x, int id)
{
	if (id < 0 || !x->e->slots[id].is_const || !x->e->slots[id].has)
		return NULL;
	return &x->e->slots[id].t;
}

/* ---- the MatMul chains ---- */

/* Constant float32 with 1 or N values and rank <= 1 (so broadcasting keeps the shape). */
static bool const_vec(struct qd_fuse_index *f, int id, int64_t N, bool allow_n)
{
	const struct qd_tensor *t = qd_fuse_const(f, id);
	if (!t || t->dtype != QD_DT_FLOAT || t->ndim > 1)
		return false;
	int64_t c = qd_tensor_count(t);
	return c == 1 || (allow_n && c == N);
}

/* Constant 2-D 8-bit weight: N. */
static int64_t const_weight(struct qd_fuse_index *f, int id)
{
	const struct qd_tensor *t = qd_fuse_const(f, id);
	if (!t || t->ndim != 2 || (t->dtype != QD_DT_UINT8 && t->dtype != QD_DT_INT8))
		return -1;
	return t->dims[1];
}

/* Weight zero point: absent, or constant of W's dtype with 1 or N values. */
static bool const_wzp(struct qd_fuse_index *f, int id, int wdt, int64_t N)
{
	if (id < 0)
		return true;
	const struct qd_tensor *t = qd_fuse_const(f, id);
	if (!t || t->dtype != wdt || t->ndim > 1)
		return false;
	int64_t c = qd_tensor_count(t);
	return c == 1 || c == N;
}

/* An optional Add(y, bias) after node `last` producing y: bias slot or -1; *last moves. */
static int take_bias(struct qd_fuse_index *f, int *last, int64_t N)
{
	int y = qd_fuse_node(f, *last)->out[0];
	int r = qd_fuse_only_reader(f, y);
	struct qd_enode *a = qd_fuse_node(f, r);
	if (!a || !qd_fuse_is_op(a, QD_OP_Add) || a->n_in != 2 || a->n_out != 1)
		return -1;
	int other = a->in[0] == y ? a->in[1] : a->in[0];
	if (a->in[0] == a->in[1] || !const_vec(f, other, N, true) ||
	    qd_tensor_count(qd_fuse_const(f, other)) != N || qd_fuse_const(f, other)->ndim != 1)
		return -1;
	*last = r;
	return other;
}

struct qd_enode *qd_fuse_node_new(struct qd_egraph *g, const int *cover, int n, int n_in, char *name)
{
	struct qd_enode *fn = calloc(1, sizeof(*fn));
	if (!fn) {
		free(name);
		return NULL;
	}
	fn->name = name;
	fn->n_in = n_in;
	fn->n_out = 1;
	fn->in = malloc((size_t)(n_in ? n_in : 1) * sizeof(int));
	fn->out = malloc(sizeof(int));
	int nf = 0;
	for (int k = 0; k < n; k++)
		nf += g->nodes[cover[k]].n_free;
	fn->free_after = malloc((size_t)(nf + 1) * sizeof(int));
	if (!fn->name || !fn->in || !fn->out || !fn->free_after) {
		qd_enode_release(fn);
		free(fn);
		return NULL;
	}
	return fn;
}

void qd_fuse_attach(struct qd_egraph *g, struct qd_enode *fn, int at, const int *cover, int n)
{
	free(fn->cover);
	fn->cover = malloc((size_t)(n ? n : 1) * sizeof(int));
	fn->n_cover = fn->cover ? n : 0;   /* without it the hook filter runs the originals */
	if (fn->cover) memcpy(fn->cover, cover, (size_t)n * sizeof(int));
	for (int k = 0; k < n; k++) {
		struct qd_enode *c = &g->nodes[cover[k]];
		for (int j = 0; j < c->n_free; j++)
			fn->free_after[fn->n_free++] = c->free_after[j];
		if (cover[k] != at)
			c->fuse_skip = true;
	}
	g->nodes[at].fused = fn;
}

struct qd_enode *qd_fuse_node_like(struct qd_egraph *g, const struct qd_enode *like, const int *cover,
				   int n, int n_in, char *name)
{
	struct qd_enode *fn = qd_fuse_node_new(g, cover, n, n_in, name);
	if (!fn)
		return NULL;
	fn->proto = like->proto;
	fn->op = like->op;
	fn->opset = like->opset;
	fn->prof_idx = like->prof_idx;
	memcpy(fn->in, like->in, (size_t)n_in * sizeof(int));
	return fn;
}

int qd_fuse_attach_op(struct qd_fuse_index *x, int last, enum qd_op_id id, const Onnx__NodeProto *proto,
		      const int *in, int n_in, const int *cover, int n_cover, struct qd_err *err)
{
	struct qd_enode *l = qd_fuse_node(x, last);
	struct qd_enode *fn = qd_fuse_node_new(x->g, cover, n_cover, n_in,
					       qd_asprintf("%s (fused %s)", l->name, qd_ops[id].op_type));
	if (!fn)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	fn->proto = proto;
	fn->op = &qd_ops[id];
	fn->opset = 1;
	fn->prof_idx = (int)id;
	memcpy(fn->in, in, (size_t)n_in * sizeof(int));
	fn->out[0] = l->out[0];
	qd_fuse_attach(x->g, fn, last, cover, n_cover);
	x->n_fused++;
	return 0;
}

/* Attach a fused node running op `id` on inputs in[] to node `last` (with its proto);
 * cover[] nodes (incl. last) are replaced by it. */
static int attach(struct qd_fuse_index *f, int last, enum qd_op_id id, const int *in, int n_in,
		  const int *cover, int n_cover, struct qd_err *err)
{
	return qd_fuse_attach_op(f, last, id, qd_fuse_node(f, last)->proto, in, n_in, cover, n_cover, err);
}

/* DynamicQuantizeLinear producing slot id (its output index `which`), or -1. */
static int dql_of(struct qd_fuse_index *f, int id, int which)
{
	int p = id >= 0 ? f->prod[id] : -1;
	struct qd_enode *d = qd_fuse_node(f, p);
	if (!d || !qd_fuse_is_op(d, QD_OP_DynamicQuantizeLinear) || d->n_out < 3 || d->out[which] != id)
		return -1;
	return p;
}

/* Whether every output of DQL node d is read only by nodes in cover[] (and absent ones). */
static bool dql_private(struct qd_fuse_index *f, int d, const int *cover, int n_cover)
{
	struct qd_enode *n = qd_fuse_node(f, d);
	for (int k = 0; k < n->n_out; k++) {
		int id = n->out[k];
		if (id < 0 || (!f->uses[id] && !f->is_out[id]))
			continue;
		int r = qd_fuse_only_reader(f, id);
		bool ok = false;
		for (int j = 0; j < n_cover && r >= 0; j++)
			ok |= cover[j] == r;
		if (!ok)
			return false;
	}
	return true;
}

/* Pattern 1, from MatMulInteger node i. */
static int fuse_mmi(struct qd_fuse_index *f, int i, struct qd_err *err)
{
	struct qd_enode *mi = qd_fuse_node(f, i);
	int q = qd_fuse_in(mi, 0), w = qd_fuse_in(mi, 1), z = qd_fuse_in(mi, 2), wz = qd_fuse_in(mi, 3);
	int64_t N = const_weight(f, w);
	int d = dql_of(f, q, 0);
	if (N < 0 || d < 0 || mi->n_out != 1 || z != qd_fuse_node(f, d)->out[2] ||
	    !const_wzp(f, wz, f->e->slots[w].t.dtype, N))
		return 0;
	int ci = qd_fuse_only_reader(f, mi->out[0]);
	struct qd_enode *cast = qd_fuse_node(f, ci);
	if (!cast || !qd_fuse_is_op(cast, QD_OP_Cast) || qd_node_attr_int(cast->proto, "to", 0) != QD_DT_FLOAT)
		return 0;
	int m2i = qd_fuse_only_reader(f, cast->out[0]);
	struct qd_enode *m2 = qd_fuse_node(f, m2i);
	if (!m2 || !qd_fuse_is_op(m2, QD_OP_Mul) || m2->n_in != 2 || m2->in[0] == m2->in[1])
		return 0;
	int sm = m2->in[0] == cast->out[0] ? m2->in[1] : m2->in[0];
	int m1i = qd_fuse_only_reader(f, sm) == m2i ? f->prod[sm] : -1;
	struct qd_enode *m1 = qd_fuse_node(f, m1i);
	int s = qd_fuse_node(f, d)->out[1];
	if (!m1 || !qd_fuse_is_op(m1, QD_OP_Mul) || m1->n_in != 2 || s < 0 || (m1->in[0] != s && m1->in[1] != s))
		return 0;
	int S = m1->in[0] == s ? m1->in[1] : m1->in[0];
	if (!const_vec(f, S, N, true))
		return 0;
	int last = m2i;
	int bias = take_bias(f, &last, N);
	int cover[6] = { i, ci, m1i, m2i, last, d };
	int nc = last == m2i ? 4 : 5;
	if (dql_private(f, d, cover, nc)) {
		cover[nc++] = d;
		int in[5] = { qd_fuse_node(f, d)->in[0], w, S, wz, bias };
		return attach(f, last, QD_OP_DynamicQuantizeMatMul, in, bias >= 0 ? 5 : 4, cover, nc, err);
	}
	int in[7] = { q, w, s, S, z, wz, bias };
	return attach(f, last, QD_OP_MatMulIntegerToFloat, in, bias >= 0 ? 7 : 6, cover, nc, err);
}

/* Pattern 2, from a float MatMul node i. */
static int fuse_qdq(struct qd_fuse_index *f, int i, struct qd_err *err)
{
	struct qd_enode *mm = qd_fuse_node(f, i);
	if (mm->n_in != 2 || mm->n_out != 1 || qd_fuse_only_reader(f, mm->in[0]) != i ||
	    qd_fuse_only_reader(f, mm->in[1]) != i)
		return 0;
	/* a MatMul feeding a QuantizeLinear is ORT's QLinearMatMul group (engine/fuse_qdq.c):
	 * fused there or, when ORT's conditions fail, not at all */
	for (int k = 0; k < f->g->n_nodes; k++) {
		struct qd_enode *q = &f->g->nodes[k];
		if ((q->op == &qd_ops[QD_OP_QuantizeLinear] || q->op == &qd_ops[QD_OP_MsQuantizeLinear]) &&
		    q->n_in > 0 && q->in[0] == mm->out[0])
			return 0;
	}
	int dxi = f->prod[mm->in[0]], dwi = f->prod[mm->in[1]];
	struct qd_enode *dx = qd_fuse_node(f, dxi), *dw = qd_fuse_node(f, dwi);
	if (!dx || !dw || !qd_fuse_is_op(dx, QD_OP_DequantizeLinear) || !qd_fuse_is_op(dw, QD_OP_DequantizeLinear) ||
	    qd_node_attr_int(dx->proto, "block_size", 0) || qd_node_attr_int(dw->proto, "block_size", 0))
		return 0;
	int w = qd_fuse_in(dw, 0), ws = qd_fuse_in(dw, 1), wz = qd_fuse_in(dw, 2);
	int64_t N = const_weight(f, w);
	if (N < 0)
		return 0;
	int64_t axis = qd_node_attr_int(dw->proto, "axis", 1);
	bool per_col = axis == 1 || axis == -1;
	if (!const_vec(f, ws, N, per_col) || !const_wzp(f, wz, f->e->slots[w].t.dtype, N) ||
	    (wz >= 0 && qd_tensor_count(qd_fuse_const(f, wz)) != qd_tensor_count(qd_fuse_const(f, ws))))
		return 0;
	int xq = qd_fuse_in(dx, 0), xs = qd_fuse_in(dx, 1), xz = qd_fuse_in(dx, 2);
	int xdt = xq >= 0 ? f->e->slots[xq].dt : 0;
	if (xdt != QD_DT_UINT8 && xdt != QD_DT_INT8)
		return 0;
	int last = i;
	int bias = take_bias(f, &last, N);
	int cover[6] = { dxi, dwi, i, last };
	int nc = last == i ? 3 : 4;
	int d = dql_of(f, xq, 0);
	if (d >= 0 && xs == qd_fuse_node(f, d)->out[1] && xz == qd_fuse_node(f, d)->out[2]) {
		if (dql_private(f, d, cover, nc)) {
			cover[nc++] = d;
			int in[5] = { qd_fuse_node(f, d)->in[0], w, ws, wz, bias };
			return attach(f, last, QD_OP_DynamicQuantizeMatMul, in, bias >= 0 ? 5 : 4, cover, nc, err);
		}
	} else {
		const struct qd_tensor *zt = qd_fuse_const(f, xz);
		if (!const_vec(f, xs, 1, false) || (xz >= 0 && (!zt || zt->dtype != xdt || qd_tensor_count(zt) != 1)))
			return 0;
	}
	int in[7] = { xq, w, xs, ws, xz, wz, bias };
	return attach(f, last, QD_OP_MatMulIntegerToFloat, in, bias >= 0 ? 7 : 6, cover, nc, err);
}

int qd_fuse_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err)
{
	struct qd_fuse_index f = { 0 };
	int rc;
	if (!g || !g->n_nodes || getenv("QUANTD_NO_FUSE"))
		return 0;
	if ((rc = qd_fuse_qdq_graph(e, g, err)) || (rc = qd_fuse_index_init(&f, e, g, err)))
		goto out;
	for (int i = 0; i < g->n_nodes && !rc; i++) {
		struct qd_enode *n = &g->nodes[i];
		if (qd_fuse_is_op(n, QD_OP_MatMulInteger))
			rc = fuse_mmi(&f, i, err);
		else if (qd_fuse_is_op(n, QD_OP_MatMul))
			rc = fuse_qdq(&f, i, err);
	}
out:
	qd_fuse_index_free(&f);
	return rc;
}
