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

struct fuse_ctx {
	struct qd_engine *e;
	struct qd_egraph *g;
	int *uses;      /* per slot: readers (nodes of g and of its subgraphs) */
	int *cons;      /* per slot: index in g of the last node of g reading it */
	int *prod;      /* per slot: index in g of its producer, -1 */
	bool *is_out;   /* per slot: graph output */
};

static void count_uses(struct fuse_ctx *f, struct qd_egraph *g, bool top)
{
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *n = &g->nodes[i];
		for (int k = 0; k < n->n_in; k++)
			if (n->in[k] >= 0) {
				f->uses[n->in[k]]++;
				if (top)
					f->cons[n->in[k]] = i;
			}
		for (int k = 0; k < n->n_sub; k++)
			count_uses(f, n->sub[k], false);
		if (top)
			for (int k = 0; k < n->n_out; k++)
				if (n->out[k] >= 0)
					f->prod[n->out[k]] = i;
	}
	for (int k = 0; k < g->n_outputs; k++)
		f->uses[g->outputs[k]]++;   /* outputs of subgraphs count as reads too */
}

static bool is_op(const struct qd_enode *n, enum qd_op_id id)
{
	return n->op == &qd_ops[id] && !n->fused && !n->fuse_skip;
}

static struct qd_enode *node(struct fuse_ctx *f, int i)
{
	return i >= 0 ? &f->g->nodes[i] : NULL;
}

/* Slot id read only once (by a node of g), produced in g, not an output: its reader or -1. */
static int only_reader(struct fuse_ctx *f, int id)
{
	if (id < 0 || f->is_out[id] || f->uses[id] != 1 || f->e->slots[id].is_const)
		return -1;
	return f->cons[id];
}

static const struct qd_tensor *const_t(struct fuse_ctx *f, int id)
{
	if (id < 0 || !f->e->slots[id].is_const || !f->e->slots[id].has)
		return NULL;
	return &f->e->slots[id].t;
}

static int in_at(const struct qd_enode *n, int i)
{
	return i < n->n_in ? n->in[i] : -1;
}

/* Constant float32 with 1 or N values and rank <= 1 (so broadcasting keeps the shape). */
static bool const_vec(struct fuse_ctx *f, int id, int64_t N, bool allow_n)
{
	const struct qd_tensor *t = const_t(f, id);
	if (!t || t->dtype != QD_DT_FLOAT || t->ndim > 1)
		return false;
	int64_t c = qd_tensor_count(t);
	return c == 1 || (allow_n && c == N);
}

/* Constant 2-D 8-bit weight: N. */
static int64_t const_weight(struct fuse_ctx *f, int id)
{
	const struct qd_tensor *t = const_t(f, id);
	if (!t || t->ndim != 2 || (t->dtype != QD_DT_UINT8 && t->dtype != QD_DT_INT8))
		return -1;
	return t->dims[1];
}

/* Weight zero point: absent, or constant of W's dtype with 1 or N values. */
static bool const_wzp(struct fuse_ctx *f, int id, int wdt, int64_t N)
{
	if (id < 0)
		return true;
	const struct qd_tensor *t = const_t(f, id);
	if (!t || t->dtype != wdt || t->ndim > 1)
		return false;
	int64_t c = qd_tensor_count(t);
	return c == 1 || c == N;
}

/* An optional Add(y, bias) after node `last` producing y: bias slot or -1; *last moves. */
static int take_bias(struct fuse_ctx *f, int *last, int64_t N)
{
	int y = node(f, *last)->out[0];
	int r = only_reader(f, y);
	struct qd_enode *a = node(f, r);
	if (!a || !is_op(a, QD_OP_Add) || a->n_in != 2 || a->n_out != 1)
		return -1;
	int other = a->in[0] == y ? a->in[1] : a->in[0];
	if (a->in[0] == a->in[1] || !const_vec(f, other, N, true) ||
	    qd_tensor_count(const_t(f, other)) != N || const_t(f, other)->ndim != 1)
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
	for (int k = 0; k < n; k++) {
		struct qd_enode *c = &g->nodes[cover[k]];
		for (int j = 0; j < c->n_free; j++)
			fn->free_after[fn->n_free++] = c->free_after[j];
		if (cover[k] != at)
			c->fuse_skip = true;
	}
	g->nodes[at].fused = fn;
}

/* Attach a fused node running op `id` on inputs in[] to node `last`; cover[] nodes (incl.
 * last) are replaced by it. */
static int attach(struct fuse_ctx *f, int last, enum qd_op_id id, const int *in, int n_in,
		  const int *cover, int n_cover, struct qd_err *err)
{
	struct qd_enode *l = node(f, last);
	struct qd_enode *fn = qd_fuse_node_new(f->g, cover, n_cover, n_in,
					       qd_asprintf("%s (fused %s)", l->name, qd_ops[id].op_type));
	if (!fn)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	fn->proto = l->proto;
	fn->op = &qd_ops[id];
	fn->opset = 1;
	fn->prof_idx = (int)id;
	memcpy(fn->in, in, (size_t)n_in * sizeof(int));
	fn->out[0] = l->out[0];
	qd_fuse_attach(f->g, fn, last, cover, n_cover);
	return 0;
}

/* DynamicQuantizeLinear producing slot id (its output index `which`), or -1. */
static int dql_of(struct fuse_ctx *f, int id, int which)
{
	int p = id >= 0 ? f->prod[id] : -1;
	struct qd_enode *d = node(f, p);
	if (!d || !is_op(d, QD_OP_DynamicQuantizeLinear) || d->n_out < 3 || d->out[which] != id)
		return -1;
	return p;
}

/* Whether every output of DQL node d is read only by nodes in cover[] (and absent ones). */
static bool dql_private(struct fuse_ctx *f, int d, const int *cover, int n_cover)
{
	struct qd_enode *n = node(f, d);
	for (int k = 0; k < n->n_out; k++) {
		int id = n->out[k];
		if (id < 0 || (!f->uses[id] && !f->is_out[id]))
			continue;
		int r = only_reader(f, id);
		bool ok = false;
		for (int j = 0; j < n_cover && r >= 0; j++)
			ok |= cover[j] == r;
		if (!ok)
			return false;
	}
	return true;
}

/* Pattern 1, from MatMulInteger node i. */
static int fuse_mmi(struct fuse_ctx *f, int i, struct qd_err *err)
{
	struct qd_enode *mi = node(f, i);
	int q = in_at(mi, 0), w = in_at(mi, 1), z = in_at(mi, 2), wz = in_at(mi, 3);
	int64_t N = const_weight(f, w);
	int d = dql_of(f, q, 0);
	if (N < 0 || d < 0 || mi->n_out != 1 || z != node(f, d)->out[2] ||
	    !const_wzp(f, wz, f->e->slots[w].t.dtype, N))
		return 0;
	int ci = only_reader(f, mi->out[0]);
	struct qd_enode *cast = node(f, ci);
	if (!cast || !is_op(cast, QD_OP_Cast) || qd_node_attr_int(cast->proto, "to", 0) != QD_DT_FLOAT)
		return 0;
	int m2i = only_reader(f, cast->out[0]);
	struct qd_enode *m2 = node(f, m2i);
	if (!m2 || !is_op(m2, QD_OP_Mul) || m2->n_in != 2 || m2->in[0] == m2->in[1])
		return 0;
	int sm = m2->in[0] == cast->out[0] ? m2->in[1] : m2->in[0];
	int m1i = only_reader(f, sm) == m2i ? f->prod[sm] : -1;
	struct qd_enode *m1 = node(f, m1i);
	int s = node(f, d)->out[1];
	if (!m1 || !is_op(m1, QD_OP_Mul) || m1->n_in != 2 || s < 0 || (m1->in[0] != s && m1->in[1] != s))
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
		int in[5] = { node(f, d)->in[0], w, S, wz, bias };
		return attach(f, last, QD_OP_DynamicQuantizeMatMul, in, bias >= 0 ? 5 : 4, cover, nc, err);
	}
	int in[7] = { q, w, s, S, z, wz, bias };
	return attach(f, last, QD_OP_MatMulIntegerToFloat, in, bias >= 0 ? 7 : 6, cover, nc, err);
}

/* Pattern 2, from a float MatMul node i. */
static int fuse_qdq(struct fuse_ctx *f, int i, struct qd_err *err)
{
	struct qd_enode *mm = node(f, i);
	if (mm->n_in != 2 || mm->n_out != 1 || only_reader(f, mm->in[0]) != i ||
	    only_reader(f, mm->in[1]) != i)
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
	struct qd_enode *dx = node(f, dxi), *dw = node(f, dwi);
	if (!dx || !dw || !is_op(dx, QD_OP_DequantizeLinear) || !is_op(dw, QD_OP_DequantizeLinear) ||
	    qd_node_attr_int(dx->proto, "block_size", 0) || qd_node_attr_int(dw->proto, "block_size", 0))
		return 0;
	int w = in_at(dw, 0), ws = in_at(dw, 1), wz = in_at(dw, 2);
	int64_t N = const_weight(f, w);
	if (N < 0)
		return 0;
	int64_t axis = qd_node_attr_int(dw->proto, "axis", 1);
	bool per_col = axis == 1 || axis == -1;
	if (!const_vec(f, ws, N, per_col) || !const_wzp(f, wz, f->e->slots[w].t.dtype, N) ||
	    (wz >= 0 && qd_tensor_count(const_t(f, wz)) != qd_tensor_count(const_t(f, ws))))
		return 0;
	int xq = in_at(dx, 0), xs = in_at(dx, 1), xz = in_at(dx, 2);
	int xdt = xq >= 0 ? f->e->slots[xq].dt : 0;
	if (xdt != QD_DT_UINT8 && xdt != QD_DT_INT8)
		return 0;
	int last = i;
	int bias = take_bias(f, &last, N);
	int cover[6] = { dxi, dwi, i, last };
	int nc = last == i ? 3 : 4;
	int d = dql_of(f, xq, 0);
	if (d >= 0 && xs == node(f, d)->out[1] && xz == node(f, d)->out[2]) {
		if (dql_private(f, d, cover, nc)) {
			cover[nc++] = d;
			int in[5] = { node(f, d)->in[0], w, ws, wz, bias };
			return attach(f, last, QD_OP_DynamicQuantizeMatMul, in, bias >= 0 ? 5 : 4, cover, nc, err);
		}
	} else {
		const struct qd_tensor *zt = const_t(f, xz);
		if (!const_vec(f, xs, 1, false) || (xz >= 0 && (!zt || zt->dtype != xdt || qd_tensor_count(zt) != 1)))
			return 0;
	}
	int in[7] = { xq, w, xs, ws, xz, wz, bias };
	return attach(f, last, QD_OP_MatMulIntegerToFloat, in, bias >= 0 ? 7 : 6, cover, nc, err);
}

int qd_fuse_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err)
{
	struct fuse_ctx f = { e, g, NULL, NULL, NULL, NULL };
	int rc = 0, ns = e->n_slots;
	if (!g || !g->n_nodes || getenv("QUANTD_NO_FUSE"))
		return 0;
	f.uses = calloc((size_t)ns + 1, sizeof(int));
	f.cons = malloc(((size_t)ns + 1) * sizeof(int));
	f.prod = malloc(((size_t)ns + 1) * sizeof(int));
	f.is_out = calloc((size_t)ns + 1, sizeof(bool));
	if (!f.uses || !f.cons || !f.prod || !f.is_out) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	for (int k = 0; k < ns; k++)
		f.cons[k] = f.prod[k] = -1;
	if ((rc = qd_fuse_qdq_graph(e, g, err)))
		goto out;
	count_uses(&f, g, true);
	for (int k = 0; k < g->n_outputs; k++) {
		f.is_out[g->outputs[k]] = true;
		f.uses[g->outputs[k]]--;    /* counted as a read above; is_out covers it */
	}
	for (int i = 0; i < g->n_nodes && !rc; i++) {
		struct qd_enode *n = &g->nodes[i];
		if (is_op(n, QD_OP_MatMulInteger))
			rc = fuse_mmi(&f, i, err);
		else if (is_op(n, QD_OP_MatMul))
			rc = fuse_qdq(&f, i, err);
	}
out:
	free(f.uses);
	free(f.cons);
	free(f.prod);
	free(f.is_out);
	return rc;
}
