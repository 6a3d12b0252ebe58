/* engine/fuse_qdq.c — load-time fusion of QDQ node groups into the integer kernels, as ONNX
 * Runtime's QDQ selector/action transformer does on the CPU provider, so a static QDQ model
 * gives the values ORT gives (integer accumulation + one requantization, instead of a float
 * op between DequantizeLinear and QuantizeLinear whose rounding differs).
 *
 * DESIGN
 * - Groups (main graph only; "DQ"/"Q" are DequantizeLinear / QuantizeLinear of ai.onnx or
 *   com.microsoft, without block_size; the target's output has exactly one reader, the Q
 *   (optionally through a Relu / Clip that the Q makes redundant: zp = the type's minimum /
 *   a clip range covering the whole quantized range), and is not a graph output):
 *     DQ(x) DQ(w) [DQ(int32 b)] -> Conv -> Q                => QLinearConv
 *     DQ(a) DQ(b) -> MatMul -> Q                            => QLinearMatMul
 *     DQ(a) DQ(b) [DQ(int32 c)] -> Gemm [-> Q]              => QGemm (float output without Q)
 *     DQ(a) DQ(b) -> Add | Mul -> Q                         => QLinearAdd | QLinearMul
 *     DQ(x) -> AveragePool | GlobalAveragePool | Sigmoid | LeakyRelu | Softmax -> Q
 *                                                           => their QLinear forms
 *     DQ(x1..xn) -> Concat -> Q                             => QLinearConcat
 *     DQ(x) -> Reshape | Transpose | Squeeze | Unsqueeze | Flatten | Slice | Gather |
 *              GatherElements | Expand | Tile | Resize (nearest) | ReduceMax | ReduceMin -> Q
 *       with the same constant scalar scale and zero point (positive scale for ReduceMax /
 *       ReduceMin)                                          => the op on the 8-bit data
 *   DQ(a) DQ(b) -> MatMul without a Q stays with engine/fuse.c (MatMulIntegerToFloat), which
 *   skips a MatMul that feeds a Q (ORT then fuses it to QLinearMatMul or not at all).
 * - ORT's conditions: 8-bit types only; activation / output types equal; the activation
 *   scales and zero points of QLinear* ops scalars (weights of Conv / MatMul / Gemm may be
 *   per channel); bias int32. On x86 ORT does not allow int8 activations into Conv /
 *   MatMul but first rewrites int8 Q -> DQ pairs to uint8 (QDQS8ToU8Transformer: the Q has
 *   exactly one reader, a DQ, both with equal constant scalar int8 zero points), which is
 *   exact; so an int8 activation counts as converted when its Q -> DQ pair qualifies (the
 *   DQ with one reader, as ORT's EnsureUniqueDQForNodeUnit gives every consumer its own DQ
 *   first and a Q with several DQs is not converted). Every reader gets its own DQ in ORT:
 *   here a DQ read elsewhere too keeps running for those readers and is skipped once all of
 *   its readers are fused.
 * - Conventions as engine/fuse.c: the originals stay, the group's last node (the Q, or the
 *   Gemm without a Q) gets .fused, the others .fuse_skip; with a hook set the originals run.
 *   The fused node reads the DQs' inputs directly, so at the end free lists are moved
 *   forward to the last node that now reads each slot. Off with QUANTD_NO_FUSE=1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "engine/engine_internal.h"
#include "engine/ops_quant.h"

#define QF_MAX_COVER (3 * 64 + 4)

/* A DequantizeLinear feeding a group: its node and input slots, the dtype of x. */
struct dqi { int node, x, s, z, dt; };

static int slot_dt(struct qd_fuse_index *f, int id)
{
	return id >= 0 ? f->e->slots[id].dt : 0;
}

static bool is_q8(int dt)
{
	return dt == QD_DT_UINT8 || dt == QD_DT_INT8;
}

/* A DequantizeLinear / QuantizeLinear (a, b: the ai.onnx and com.microsoft ids) without
 * block_size, whether or not a group has taken it (what the graph was before fusion). */
static bool is_qdq_op(const struct qd_enode *n, enum qd_op_id a, enum qd_op_id b)
{
	return n && (n->op == &qd_ops[a] || n->op == &qd_ops[b]) && n->n_in >= 2 && n->n_out == 1 &&
	       !qd_node_attr_int(n->proto, "block_size", 0);
}

/* ... and not yet taken by a group. */
static bool is_dq_node(const struct qd_enode *n)
{
	return is_qdq_op(n, QD_OP_DequantizeLinear, QD_OP_MsDequantizeLinear) && !n->fused && !n->fuse_skip;
}

static bool is_q_node(const struct qd_enode *n)
{
	return is_qdq_op(n, QD_OP_QuantizeLinear, QD_OP_MsQuantizeLinear) && !n->fused && !n->fuse_skip;
}

/* The int8 -> uint8 conversion below is ORT's QDQS8ToU8Transformer, a pass over the whole
 * graph before any group is fused: it looks at the Q and DQ nodes as they were, so a Q that
 * an earlier group ended with (fused into the QLinearConv before) still counts as a Q. */
static bool was_dq(const struct qd_enode *n)
{
	return is_qdq_op(n, QD_OP_DequantizeLinear, QD_OP_MsDequantizeLinear);
}

static bool was_q(const struct qd_enode *n)
{
	return is_qdq_op(n, QD_OP_QuantizeLinear, QD_OP_MsQuantizeLinear);
}

/* Constant with one element (absent counts when allow_absent). */
static bool const_scalar(struct qd_fuse_index *f, int id, bool allow_absent)
{
	if (id < 0)
		return allow_absent;
	const struct qd_tensor *t = qd_fuse_const(f, id);
	return t && qd_tensor_count(t) == 1;
}

/* The DequantizeLinear producing slot id, or false. */
static bool dq_of(struct qd_fuse_index *f, int id, struct dqi *d)
{
	int p = id >= 0 ? f->prod[id] : -1;
	struct qd_enode *n = qd_fuse_node(f, p);
	if (!is_dq_node(n) || n->out[0] != id)
		return false;
	d->node = p;
	d->x = n->in[0];
	d->s = n->in[1];
	d->z = qd_fuse_in(n, 2);
	d->dt = slot_dt(f, d->x);
	return d->x >= 0 && d->s >= 0;
}

/* Per-tensor 8-bit activation DQ: scalar constant scale and zero point. */
static bool dq_act(struct qd_fuse_index *f, const struct dqi *d)
{
	return is_q8(d->dt) && const_scalar(f, d->s, false) && const_scalar(f, d->z, true);
}

/* Float value of a constant scalar (Clip bounds). */
static bool const_f(struct qd_fuse_index *f, int id, float *v)
{
	const struct qd_tensor *t = qd_fuse_const(f, id);
	if (!t || qd_tensor_count(t) != 1 || !qd_dtype_is_float(t->dtype))
		return false;
	*v = (float)qd_tensor_get_f64(t, 0);
	return true;
}

/* Integer value of a zero point slot (absent: 0). */
static int32_t zp_val(struct qd_fuse_index *f, int id)
{
	const struct qd_tensor *t = qd_fuse_const(f, id);
	return t ? (int32_t)qd_tensor_get_i64(t, 0) : 0;
}

/* Whether Relu / Clip node r, followed by Q node q (scalar constant scale / zp), changes
 * nothing the Q does not (ORT's IsClipMadeRedundantByQ). */
static bool clip_redundant(struct qd_fuse_index *f, struct qd_enode *r, struct qd_enode *q)
{
	int s = q->in[1], z = qd_fuse_in(q, 2);
	float scale;
	if (!const_f(f, s, &scale) || !const_scalar(f, z, true))
		return false;
	int dt = slot_dt(f, q->out[0]);
	int32_t lo = dt == QD_DT_INT8 ? -128 : 0, hi = dt == QD_DT_INT8 ? 127 : 255, zp = zp_val(f, z);
	if (!is_q8(dt) || (z >= 0 && qd_fuse_const(f, z)->dtype != dt))
		return false;
	if (qd_fuse_is_op(r, QD_OP_Relu))
		return zp == lo;
	float mn = -INFINITY, mx = INFINITY;
	if (qd_fuse_is_op(r, QD_OP_Clip_6)) {
		mn = qd_node_attr_float(r->proto, "min", -3.4028234663852886e38f);
		mx = qd_node_attr_float(r->proto, "max", 3.4028234663852886e38f);
	} else if (qd_fuse_is_op(r, QD_OP_Clip_11)) {
		if ((qd_fuse_in(r, 1) >= 0 && !const_f(f, r->in[1], &mn)) ||
		    (qd_fuse_in(r, 2) >= 0 && !const_f(f, r->in[2], &mx)))
			return false;
	} else {
		return false;
	}
	double qmn = (double)rintf(mn / scale) + zp, qmx = (double)rintf(mx / scale) + zp;
	return qmn <= lo && qmx >= hi;
}

/* The Q reading the target's output y (directly or through a redundant Relu / Clip): its
 * index, *clip the Relu / Clip or -1. -1 when y has other readers or is a graph output. */
static int q_after(struct qd_fuse_index *f, int y, int *clip)
{
	*clip = -1;
	int r = qd_fuse_only_reader(f, y);
	struct qd_enode *n = qd_fuse_node(f, r);
	if (!n)
		return -1;
	if (is_q_node(n) && n->in[0] == y)
		return r;
	if ((qd_fuse_is_op(n, QD_OP_Relu) || qd_fuse_is_op(n, QD_OP_Clip_6) || qd_fuse_is_op(n, QD_OP_Clip_11)) &&
	    n->n_out == 1 && n->in[0] == y) {
		int qi = qd_fuse_only_reader(f, n->out[0]);
		struct qd_enode *q = qd_fuse_node(f, qi);
		if (is_q_node(q) && q->in[0] == n->out[0] && clip_redundant(f, n, q)) {
			*clip = r;
			return qi;
		}
	}
	return -1;
}

/* Whether ORT's QDQS8ToU8Transformer turns the int8 pair Q (node qn) -> DQ (node dn) into
 * uint8: Q read by that DQ only, the DQ read by at most one node and then not also a graph
 * output (EnsureUniqueDQForNodeUnit duplicates such DQs first, leaving the Q with several
 * readers), equal constant scalar int8 zero points. */
static bool s8_pair_converts(struct qd_fuse_index *f, int qn, int dn)
{
	struct qd_enode *q = qd_fuse_node(f, qn), *d = qd_fuse_node(f, dn);
	int u = d ? f->uses[d->out[0]] : 0;
	if (!q || !d || qd_fuse_only_reader(f, q->out[0]) != dn || !(u == 0 || (u == 1 && !f->is_out[d->out[0]])))
		return false;
	int qz = qd_fuse_in(q, 2), dz = qd_fuse_in(d, 2);
	const struct qd_tensor *a = qd_fuse_const(f, qz), *b = qd_fuse_const(f, dz);
	return a && b && a->dtype == QD_DT_INT8 && b->dtype == QD_DT_INT8 && qd_tensor_count(a) == 1 &&
	       qd_tensor_count(b) == 1 && zp_val(f, qz) == zp_val(f, dz);
}

/* Effective dtype ORT's kernels see for the input of DQ d: int8 becomes uint8 when the
 * producing Q -> DQ pair is converted, or when x is a constant int8 tensor with a value
 * outside [-64, 64] (ORT converts such "weights" of any lone DQ). */
static int act_dt_in(struct qd_fuse_index *f, const struct dqi *d)
{
	if (d->dt != QD_DT_INT8)
		return d->dt;
	const struct qd_tensor *t = qd_fuse_const(f, d->x);
	if (t) {
		const struct qd_tensor *z = qd_fuse_const(f, d->z);
		if (d->z >= 0 && (!z || z->dtype != QD_DT_INT8))
			return QD_DT_INT8;
		const int8_t *v = t->data;
		for (int64_t k = 0, n = qd_tensor_count(t); k < n; k++)
			if (v[k] < -64 || v[k] > 64)
				return QD_DT_UINT8;
		return QD_DT_INT8;
	}
	int p = f->prod[d->x];
	return was_q(qd_fuse_node(f, p)) && s8_pair_converts(f, p, d->node) ? QD_DT_UINT8 : QD_DT_INT8;
}

/* Effective dtype of Q node qn's output. */
static int act_dt_out(struct qd_fuse_index *f, int qn)
{
	struct qd_enode *q = qd_fuse_node(f, qn);
	int dt = slot_dt(f, q->out[0]);
	if (dt != QD_DT_INT8)
		return dt;
	int r = qd_fuse_only_reader(f, q->out[0]);
	return was_dq(qd_fuse_node(f, r)) && s8_pair_converts(f, qn, r) ? QD_DT_UINT8 : QD_DT_INT8;
}

/* Q output parameters: scalar constant scale and zero point of an 8-bit type. */
static bool q_params_ok(struct qd_fuse_index *f, struct qd_enode *q)
{
	return is_q8(slot_dt(f, q->out[0])) && const_scalar(f, q->in[1], false) &&
	       const_scalar(f, qd_fuse_in(q, 2), true);
}

/* ---- building the fused node ---- */

struct grp {
	int cover[QF_MAX_COVER];
	int nc;
};

/* Cover DQ node d when the target is its only reader (else it keeps running). */
static void cover_dq(struct qd_fuse_index *f, struct grp *gr, const struct dqi *d)
{
	int y = qd_fuse_node(f, d->node)->out[0];
	if (f->is_out[y])
		return;
	for (int k = 0; k < gr->nc; k++)
		if (gr->cover[k] == d->node)
			return;
	int readers = f->uses[y], mine = 0;
	/* readers of y that are already in the cover (the target, maybe twice) */
	for (int k = 0; k < gr->nc; k++) {
		struct qd_enode *n = qd_fuse_node(f, gr->cover[k]);
		for (int j = 0; j < n->n_in; j++)
			mine += n->in[j] == y;
	}
	if (mine == readers && gr->nc < QF_MAX_COVER)
		gr->cover[gr->nc++] = d->node;
}

static int attach(struct qd_fuse_index *f, int last, enum qd_op_id id, const int *in, int n_in,
		  struct grp *gr, const Onnx__NodeProto *proto, struct qd_err *err)
{
	return qd_fuse_attach_op(f, last, id, proto, in, n_in, gr->cover, gr->nc, err);
}

/* Common head of a DQ... -> target -> Q group: the Q (and clip) after target i, checked;
 * fills the cover with target, clip, Q. Returns the Q index or -1. */
static int group_tail(struct qd_fuse_index *f, int i, struct grp *gr)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	int clip;
	if (t->n_out != 1)
		return -1;
	int qi = q_after(f, t->out[0], &clip);
	if (qi < 0 || !q_params_ok(f, qd_fuse_node(f, qi)))
		return -1;
	gr->nc = 0;
	gr->cover[gr->nc++] = i;
	if (clip >= 0)
		gr->cover[gr->nc++] = clip;
	gr->cover[gr->nc++] = qi;
	return qi;
}

/* DQ(x) DQ(w) [DQ(b)] -> Conv -> Q. */
static int fuse_conv(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	struct grp gr;
	struct dqi x, w, b;
	int nb = qd_fuse_in(t, 2);
	if (t->n_in < 2 || !dq_of(f, t->in[0], &x) || !dq_of(f, t->in[1], &w) || (nb >= 0 && !dq_of(f, nb, &b)))
		return 0;
	int qi = group_tail(f, i, &gr);
	if (qi < 0 || !dq_act(f, &x) || !is_q8(w.dt))
		return 0;
	int dti = act_dt_in(f, &x);
	if (dti != act_dt_out(f, qi) || dti == QD_DT_INT8 || (nb >= 0 && b.dt != QD_DT_INT32))
		return 0;
	struct qd_enode *q = qd_fuse_node(f, qi);
	cover_dq(f, &gr, &x);
	cover_dq(f, &gr, &w);
	if (nb >= 0)
		cover_dq(f, &gr, &b);
	int in[9] = { x.x, x.s, x.z, w.x, w.s, w.z, q->in[1], qd_fuse_in(q, 2), nb >= 0 ? b.x : -1 };
	return attach(f, qi, QD_OP_QLinearConv, in, nb >= 0 ? 9 : 8, &gr, t->proto, err);
}

/* DQ(a) DQ(b) [DQ(c)] -> Gemm [-> Q]. */
static int fuse_gemm(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	struct grp gr;
	struct dqi a, b, c;
	int nc = qd_fuse_in(t, 2);
	if (t->n_in < 2 || t->n_out != 1 || !dq_of(f, t->in[0], &a) || !dq_of(f, t->in[1], &b) ||
	    (nc >= 0 && !dq_of(f, nc, &c)))
		return 0;
	int da = act_dt_in(f, &a);
	if (!dq_act(f, &a) || !is_q8(b.dt) || (da == QD_DT_INT8 && act_dt_in(f, &b) != QD_DT_INT8))
		return 0;
	if (nc >= 0 && (c.dt != QD_DT_INT32 || qd_node_attr_float(t->proto, "beta", 1.0f) != 1.0f))
		return 0;
	int qi = group_tail(f, i, &gr);
	int ys = -1, yz = -1, last = i;
	if (qi >= 0) {
		if (da != act_dt_out(f, qi))
			return 0;
		ys = qd_fuse_node(f, qi)->in[1];
		yz = qd_fuse_in(qd_fuse_node(f, qi), 2);
		last = qi;
	} else {
		/* no Q: fused only when no reader of the output is a Q (ORT then gives up) */
		int y = t->out[0];
		for (int k = 0; k < f->g->n_nodes; k++)
			if (is_q_node(qd_fuse_node(f, k)) && qd_fuse_node(f, k)->in[0] == y)
				return 0;
		gr.nc = 0;
		gr.cover[gr.nc++] = i;
	}
	cover_dq(f, &gr, &a);
	cover_dq(f, &gr, &b);
	if (nc >= 0)
		cover_dq(f, &gr, &c);
	int in[9] = { a.x, a.s, a.z, b.x, b.s, b.z, nc >= 0 ? c.x : -1, ys, yz };
	int n_in = qi >= 0 ? (yz >= 0 ? 9 : 8) : (nc >= 0 ? 7 : 6);
	return attach(f, last, QD_OP_QGemm, in, n_in, &gr, t->proto, err);
}

/* DQ(a) DQ(b) -> MatMul | Add | Mul -> Q, into id (QLinearMatMul | QLinearAdd | QLinearMul):
 * MatMul takes a per-channel 8-bit b and no int8 a (x86), Add / Mul two activations of
 * the output's type. */
static int fuse_binary(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	struct grp gr;
	struct dqi a, b;
	if (t->n_in != 2 || !dq_of(f, t->in[0], &a) || !dq_of(f, t->in[1], &b))
		return 0;
	int qi = group_tail(f, i, &gr);
	if (qi < 0 || !dq_act(f, &a))
		return 0;
	int dti = act_dt_in(f, &a);
	if (id == QD_OP_QLinearMatMul ? !is_q8(b.dt) || dti == QD_DT_INT8 || dti != act_dt_out(f, qi)
	    : !dq_act(f, &b) || dti != act_dt_in(f, &b) || dti != act_dt_out(f, qi))
		return 0;
	struct qd_enode *q = qd_fuse_node(f, qi);
	cover_dq(f, &gr, &a);
	cover_dq(f, &gr, &b);
	int in[8] = { a.x, a.s, a.z, b.x, b.s, b.z, q->in[1], qd_fuse_in(q, 2) };
	return attach(f, qi, id, in, 8, &gr, t->proto, err);
}

/* Priv holder for a fused node's own NodeProto (QLinearSoftmax needs an "opset"). */
static void proto_free(void *p)
{
	qd_node_free(p);
}

/* DQ(x) -> unary op -> Q. */
static int fuse_unary(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	struct grp gr;
	struct dqi x;
	if (t->n_in != 1 || !dq_of(f, t->in[0], &x))
		return 0;
	int qi = group_tail(f, i, &gr);
	if (qi < 0 || !dq_act(f, &x) || act_dt_in(f, &x) != act_dt_out(f, qi))
		return 0;
	struct qd_enode *q = qd_fuse_node(f, qi);
	cover_dq(f, &gr, &x);
	int in[5] = { x.x, x.s, x.z, q->in[1], qd_fuse_in(q, 2) };
	if (id != QD_OP_QLinearSoftmax)
		return attach(f, qi, id, in, 5, &gr, t->proto, err);
	Onnx__NodeProto *np = qd_node_new("QLinearSoftmax", "com.microsoft", t->name, NULL, 0, NULL, 0);
	if (!np || qd_node_set_attr_int(np, "opset", t->opset < 13 ? 11 : 13) ||
	    qd_node_set_attr_int(np, "axis", qd_node_attr_int(t->proto, "axis", t->opset < 13 ? 1 : -1))) {
		if (np)
			qd_node_free(np);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	int rc = attach(f, qi, id, in, 5, &gr, np, err);
	if (rc) {
		qd_node_free(np);
		return rc;
	}
	qd_fuse_node(f, qi)->fused->priv = np;
	qd_fuse_node(f, qi)->fused->priv_free = proto_free;
	return 0;
}

/* DQ(x1..xn) -> Concat -> Q. */
static int fuse_concat(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	struct grp gr;
	struct dqi x[64];
	if (t->n_in < 1 || t->n_in > 20)
		return 0;
	for (int k = 0; k < t->n_in; k++)
		if (!dq_of(f, t->in[k], &x[k]) || !dq_act(f, &x[k]) || act_dt_in(f, &x[k]) != act_dt_in(f, &x[0]))
			return 0;
	int qi = group_tail(f, i, &gr);
	if (qi < 0 || act_dt_in(f, &x[0]) != act_dt_out(f, qi))
		return 0;
	struct qd_enode *q = qd_fuse_node(f, qi);
	int in[2 + 3 * 20];
	in[0] = q->in[1];
	in[1] = qd_fuse_in(q, 2);
	for (int k = 0; k < t->n_in; k++) {
		cover_dq(f, &gr, &x[k]);
		in[2 + 3 * k] = x[k].x;
		in[3 + 3 * k] = x[k].s;
		in[4 + 3 * k] = x[k].z;
	}
	return attach(f, qi, QD_OP_QLinearConcat, in, 2 + 3 * t->n_in, &gr, t->proto, err);
}

/* Same constant scalar scale and zero point on Q and DQ (ORT's IsQDQPairSupported: both
 * with explicit zero points). */
static bool same_qparams(struct qd_fuse_index *f, struct qd_enode *q, const struct dqi *d, bool positive)
{
	int qz = qd_fuse_in(q, 2);
	const struct qd_tensor *qs = qd_fuse_const(f, q->in[1]), *ds = qd_fuse_const(f, d->s);
	const struct qd_tensor *qzt = qd_fuse_const(f, qz), *dzt = qd_fuse_const(f, d->z);
	if (!qs || !ds || !qzt || !dzt || qd_tensor_count(qs) != 1 || qd_tensor_count(ds) != 1 ||
	    qd_tensor_count(qzt) != 1 || qd_tensor_count(dzt) != 1 || qs->dtype != QD_DT_FLOAT ||
	    ds->dtype != QD_DT_FLOAT || qzt->dtype != dzt->dtype)
		return false;
	float a = *(const float *)qs->data, b = *(const float *)ds->data;
	return a == b && zp_val(f, qz) == zp_val(f, d->z) && (!positive || a > 0);
}

/* DQ(x) -> data-movement op -> Q with equal parameters: the op on the 8-bit data. */
static int fuse_drop(struct qd_fuse_index *f, int i, bool positive, struct qd_err *err)
{
	struct qd_enode *t = qd_fuse_node(f, i);
	struct dqi x;
	int clip;
	if (t->n_in < 1 || t->n_out != 1 || !dq_of(f, t->in[0], &x) || !is_q8(x.dt))
		return 0;
	for (int k = 1; k < t->n_in; k++)   /* other inputs (shapes, indices) not from the DQ */
		if (t->in[k] == t->in[0])
			return 0;
	int qi = q_after(f, t->out[0], &clip);
	if (qi < 0 || clip >= 0 || act_dt_out(f, qi) != act_dt_in(f, &x) ||
	    !same_qparams(f, qd_fuse_node(f, qi), &x, positive) || !(t->op->types & QD_TM(x.dt)))
		return 0;
	struct grp gr = { .nc = 0 };
	gr.cover[gr.nc++] = i;
	gr.cover[gr.nc++] = qi;
	cover_dq(f, &gr, &x);
	struct qd_enode *fn = qd_fuse_node_like(f->g, t, gr.cover, gr.nc, t->n_in,
						qd_asprintf("%s (fused 8-bit)", t->name));
	if (!fn)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	fn->in[0] = x.x;
	fn->out[0] = qd_fuse_node(f, qi)->out[0];
	qd_fuse_attach(f->g, fn, qi, gr.cover, gr.nc);
	f->n_fused++;
	return 0;
}

/* DQ(x) -> data-movement op -> Q; ReduceMax / ReduceMin need a positive scale; Resize only
 * in nearest mode. */
static int fuse_drop_any(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	return fuse_drop(f, i, false, err);
}

static int fuse_drop_positive(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	return fuse_drop(f, i, true, err);
}

static int fuse_drop_nearest(struct qd_fuse_index *f, int i, enum qd_op_id id, struct qd_err *err)
{
	const char *mode = qd_node_attr_string(qd_fuse_node(f, i)->proto, "mode", "nearest");
	return strcmp(mode, "nearest") ? 0 : fuse_drop(f, i, false, err);
}

/* The groups, by the op they are found from: the function that fuses one and the QLinear
 * op it becomes (binary and unary groups). How to add a group: a fuse_* function with
 * this signature and a row here (the engine must run the QLinear op: engine/ops_quant.def). */
static const struct qdq_group {
	enum qd_op_id target;
	int (*fuse)(struct qd_fuse_index *f, int i, enum qd_op_id qop, struct qd_err *err);
	enum qd_op_id qop;
} qdq_groups[] = {
	{ QD_OP_Conv, fuse_conv, 0 },
	{ QD_OP_MatMul, fuse_binary, QD_OP_QLinearMatMul },
	{ QD_OP_Gemm, fuse_gemm, 0 },
	{ QD_OP_Add, fuse_binary, QD_OP_QLinearAdd },
	{ QD_OP_Mul, fuse_binary, QD_OP_QLinearMul },
	{ QD_OP_Sigmoid, fuse_unary, QD_OP_QLinearSigmoid },
	{ QD_OP_LeakyRelu, fuse_unary, QD_OP_QLinearLeakyRelu },
	{ QD_OP_AveragePool, fuse_unary, QD_OP_QLinearAveragePool },
	{ QD_OP_GlobalAveragePool, fuse_unary, QD_OP_QLinearGlobalAveragePool },
	{ QD_OP_Softmax, fuse_unary, QD_OP_QLinearSoftmax },
	{ QD_OP_Concat, fuse_concat, 0 },
	{ QD_OP_Reshape, fuse_drop_any, 0 },
	{ QD_OP_Transpose, fuse_drop_any, 0 },
	{ QD_OP_Squeeze, fuse_drop_any, 0 },
	{ QD_OP_Unsqueeze, fuse_drop_any, 0 },
	{ QD_OP_Flatten, fuse_drop_any, 0 },
	{ QD_OP_Slice, fuse_drop_any, 0 },
	{ QD_OP_Gather, fuse_drop_any, 0 },
	{ QD_OP_GatherElements, fuse_drop_any, 0 },
	{ QD_OP_Expand, fuse_drop_any, 0 },
	{ QD_OP_Tile, fuse_drop_any, 0 },
	{ QD_OP_Resize_10, fuse_drop_nearest, 0 },
	{ QD_OP_ReduceMax, fuse_drop_positive, 0 },
	{ QD_OP_ReduceMin, fuse_drop_positive, 0 },
};

/* ---- 8-bit lookup regions ----
 * DQ(x) -> a chain of elementwise float ops -> Q, where every op input is either made from
 * x in the region or a constant float scalar (the affine blocks and decomposed HardSwish of
 * PP-LCNet: Mul, Add, Clip, Div, ...), is a function of the 8-bit code x alone: its 256
 * values, evaluated here with the float kernels' own formulas and the Q's rounding, become
 * one table lookup (op Lut8, table in priv). ORT runs these in float; the codes are those
 * of running the nodes. Every region slot must be read only in the region (or by its Q)
 * and not be a graph output. Off with QUANTD_NO_LUT=1 (tests compare). */
#define LUT_MAX 48

enum lut_kind { L_ADD, L_SUB, L_MUL, L_DIV, L_RELU, L_CLIP, L_HSIG, L_HSWISH, L_LEAKY };

struct lut_step {
	enum lut_kind k;
	bool rank1;      /* the constant has shape [1] */
	int a, b;        /* value indices (-1: the constant) */
	float c;         /* the constant operand of a binary op */
	float p, q;      /* Clip lo / hi, HardSigmoid alpha / beta, LeakyRelu alpha */
};

/* The float constant scalar in slot id (count 1, rank <= 1). */
static bool lut_const(struct qd_fuse_index *f, int id, float *v)
{
	const struct qd_tensor *t = qd_fuse_const(f, id);
	if (!t || t->dtype != QD_DT_FLOAT || qd_tensor_count(t) != 1 || t->ndim > 1)
		return false;
	*v = ((const float *)t->data)[0];
	return true;
}

static bool lut_const_r(struct qd_fuse_index *f, int id, struct lut_step *st, float *v)
{
	if (!lut_const(f, id, v))
		return false;
	st->rank1 |= qd_fuse_const(f, id)->ndim == 1;
	return true;
}

/* The region value index of slot id, or -1. */
static int lut_val(const int *vs, int nv, int id)
{
	for (int k = 0; k < nv && id >= 0; k++)
		if (vs[k] == id)
			return k;
	return -1;
}

/* Node n as a step on region values vs (its non-region inputs constants), or false. */
static bool lut_step_of(struct qd_fuse_index *f, struct qd_enode *n, const int *vs, int nv, struct lut_step *st)
{
	static const struct { enum qd_op_id id; enum lut_kind k; } bin[] = {
		{ QD_OP_Add, L_ADD }, { QD_OP_Sub, L_SUB }, { QD_OP_Mul, L_MUL }, { QD_OP_Div, L_DIV },
	};
	if (n->n_out != 1 || f->is_out[n->out[0]] || slot_dt(f, n->out[0]) != QD_DT_FLOAT)
		return false;
	memset(st, 0, sizeof(*st));
	for (size_t k = 0; k < QD_ARRAY_LEN(bin); k++) {
		if (!qd_fuse_is_op(n, bin[k].id))
			continue;
		if (n->n_in != 2)
			return false;
		st->k = bin[k].k;
		st->a = lut_val(vs, nv, n->in[0]);
		st->b = lut_val(vs, nv, n->in[1]);
		if (st->a < 0 && st->b < 0)
			return false;
		if (st->a < 0)
			return lut_const_r(f, n->in[0], st, &st->c);
		if (st->b < 0)
			return lut_const_r(f, n->in[1], st, &st->c);
		return true;
	}
	st->a = n->n_in >= 1 ? lut_val(vs, nv, n->in[0]) : -1;
	st->b = -1;
	if (st->a < 0)
		return false;
	if (qd_fuse_is_op(n, QD_OP_Relu) && n->n_in == 1) {
		st->k = L_RELU;
	} else if (qd_fuse_is_op(n, QD_OP_HardSwish) && n->n_in == 1) {
		st->k = L_HSWISH;
	} else if (qd_fuse_is_op(n, QD_OP_HardSigmoid) && n->n_in == 1) {
		st->k = L_HSIG;
		st->p = qd_node_attr_float(n->proto, "alpha", 0.2f);
		st->q = qd_node_attr_float(n->proto, "beta", 0.5f);
	} else if (qd_fuse_is_op(n, QD_OP_LeakyRelu) && n->n_in == 1) {
		st->k = L_LEAKY;
		st->p = qd_node_attr_float(n->proto, "alpha", 0.01f);
	} else if (qd_fuse_is_op(n, QD_OP_Clip_6) && n->n_in == 1) {
		st->k = L_CLIP;
		st->p = qd_node_attr_float(n->proto, "min", -INFINITY);
		st->q = qd_node_attr_float(n->proto, "max", INFINITY);
	} else if (qd_fuse_is_op(n, QD_OP_Clip_11)) {
		st->k = L_CLIP;
		st->p = -INFINITY;
		st->q = INFINITY;
		if ((qd_fuse_in(n, 1) >= 0 && !lut_const_r(f, n->in[1], st, &st->p)) ||
		    (qd_fuse_in(n, 2) >= 0 && !lut_const_r(f, n->in[2], st, &st->q)))
			return false;
	} else {
		return false;
	}
	return true;
}

/* The same values as the kernels (engine/ops_elementwise.c: binary_into, un_f). */
static float lut_apply(const struct lut_step *st, float x, float y)
{
	switch (st->k) {
	case L_ADD: return x + y;
	case L_SUB: return x - y;
	case L_MUL: return x * y;
	case L_DIV: return x / y;
	case L_RELU: return x > 0 ? x : 0;
	case L_CLIP: return x < st->p ? st->p : x > st->q ? st->q : x;
	case L_HSIG: return fmaxf(0.0f, fminf(1.0f, st->p * x + st->q));
	case L_HSWISH: return x * fmaxf(0.0f, fminf(1.0f, x / 6.0f + 0.5f));
	case L_LEAKY: return x >= 0 ? x : st->p * x;
	}
	return x;
}

static int fuse_lut(struct qd_fuse_index *f, int di, struct qd_err *err)
{
	struct qd_egraph *g = f->g;
	struct dqi d;
	struct qd_enode *dn = qd_fuse_node(f, di);
	if (!dq_of(f, dn->out[0], &d) || !dq_act(f, &d) || qd_fuse_const(f, d.x) || f->is_out[dn->out[0]])
		return 0;
	int vs[LUT_MAX + 1], nv = 0, cover[LUT_MAX + 2], nc = 0, qi = -1;
	struct lut_step steps[LUT_MAX];
	vs[nv++] = dn->out[0];
	cover[nc++] = di;
	for (int j = di + 1; j < g->n_nodes; j++) {
		struct qd_enode *n = qd_fuse_node(f, j);
		bool reads = false;
		for (int k = 0; k < n->n_in; k++)
			reads |= lut_val(vs, nv, n->in[k]) >= 0;
		if (!reads)
			continue;
		if (qi < 0 && is_q_node(n) && q_params_ok(f, n) && qd_fuse_in(n, 2) >= 0 && n->in[1] != n->in[0] &&
		    lut_val(vs, nv, n->in[1]) < 0 && lut_val(vs, nv, n->in[2]) < 0) {
			qi = j;
			continue;
		}
		/* a reader the region cannot take (or anything reading it after its Q) */
		if (qi >= 0 || nv > LUT_MAX || !lut_step_of(f, n, vs, nv, &steps[nv - 1]))
			return 0;
		vs[nv++] = n->out[0];
		cover[nc++] = j;
	}
	if (qi < 0 || nv < 2 || lut_val(vs, nv, qd_fuse_node(f, qi)->in[0]) != nv - 1)
		return 0;   /* no Q, no op between (a DQ -> Q pair), or the Q not on the last value */
	struct qd_enode *q = qd_fuse_node(f, qi);
	cover[nc++] = qi;
	/* every read of a region value is in the region (none in a subgraph) */
	for (int k = 0; k < nv; k++) {
		int reads = 0;
		for (int c = 0; c < nc; c++) {
			struct qd_enode *n = qd_fuse_node(f, cover[c]);
			for (int j = 0; j < n->n_in; j++)
				reads += n->in[j] == vs[k];
		}
		if (reads != f->uses[vs[k]])
			return 0;
	}
	float (*v)[256] = malloc((size_t)nv * sizeof(*v));
	uint8_t *lut = malloc(257);
	if (!v || !lut) {
		free(v);
		free(lut);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	float xs = (float)qd_tensor_get_f64(qd_fuse_const(f, d.s), 0);
	int32_t xz = zp_val(f, d.z), yz = zp_val(f, q->in[2]), lo = 0, hi = 255;
	float ys = (float)qd_tensor_get_f64(qd_fuse_const(f, q->in[1]), 0);
	qd_q_range(slot_dt(f, q->out[0]), &lo, &hi);
	for (int i = 0; i < 256; i++) {
		int32_t code = d.dt == QD_DT_INT8 ? (int32_t)(int8_t)i : i;
		v[0][i] = (float)(code - xz) * xs;
	}
	bool rank1 = false;
	for (int k = 1; k < nv; k++) {
		const struct lut_step *st = &steps[k - 1];
		rank1 |= st->rank1;
		for (int i = 0; i < 256; i++) {
			float x = st->a >= 0 ? v[st->a][i] : st->c;
			float y = st->b >= 0 ? v[st->b][i] : st->c;
			v[k][i] = lut_apply(st, x, y);
		}
	}
	for (int i = 0; i < 256; i++)
		lut[i] = (uint8_t)qd_q_round_sat(v[nv - 1][i] / ys, yz, lo, hi);
	lut[256] = rank1;   /* a [1] constant makes a rank-0 x's result [1] */
	free(v);
	int in[2] = { d.x, q->in[2] };
	int rc = qd_fuse_attach_op(f, qi, QD_OP_Lut8, q->proto, in, 2, cover, nc, err);
	if (rc) {
		free(lut);
		return rc;
	}
	struct qd_enode *fn = g->nodes[qi].fused;
	fn->priv = lut;
	fn->priv_free = free;
	return 0;
}

static int fuse_luts(struct qd_fuse_index *f, struct qd_err *err)
{
	if (getenv("QUANTD_NO_LUT"))
		return 0;
	int rc = 0;
	for (int i = 0; i < f->g->n_nodes && !rc; i++)
		if (is_dq_node(qd_fuse_node(f, i)))
			rc = fuse_lut(f, i, err);
	return rc;
}

/* ---- after the groups: orphaned DQs, free lists ---- */

static struct qd_enode *exec_node(struct qd_egraph *g, int i)
{
	struct qd_enode *n = &g->nodes[i];
	return n->fuse_skip ? NULL : n->fused ? n->fused : n;
}

static int push_free(struct qd_enode *n, int id)
{
	int *v = realloc(n->free_after, (size_t)(n->n_free + 1) * sizeof(int));
	if (!v)
		return -QD_ENOMEM;
	n->free_after = v;
	v[n->n_free++] = id;
	return 0;
}

/* Whether slot id is still read: a graph output, a subgraph read, or an input of a node
 * that runs (the fused form where there is one). */
static bool has_live_reader(struct qd_fuse_index *f, int id)
{
	struct qd_egraph *g = f->g;
	if (f->is_out[id])
		return true;
	int top = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *n = &g->nodes[i], *x = exec_node(g, i);
		for (int k = 0; k < n->n_in; k++)
			top += n->in[k] == id;
		for (int k = 0; x && k < x->n_in; k++)
			if (x->in[k] == id)
				return true;
	}
	return f->uses[id] != top;
}

/* DQs kept for readers that are all fused now: skipped, their frees moved to the next node
 * that runs. Then every free moves to the last running node reading the slot, if later. */
static int fix_plan(struct qd_fuse_index *f, struct qd_err *err)
{
	struct qd_egraph *g = f->g;
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *n = &g->nodes[i];
		if (!is_dq_node(n) || has_live_reader(f, n->out[0]))
			continue;
		int j = i + 1;
		while (j < g->n_nodes && !exec_node(g, j))
			j++;
		if (j == g->n_nodes)
			continue;
		for (int k = 0; k < n->n_free; k++)
			if (push_free(exec_node(g, j), n->free_after[k]))
				return qd_err_set(err, QD_ENOMEM, "", "out of memory");
		n->fuse_skip = true;
	}
	int ns = f->e->n_slots;
	int *last = malloc(((size_t)ns + 1) * sizeof(int));
	if (!last)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	for (int k = 0; k < ns; k++)
		last[k] = -1;
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *x = exec_node(g, i);
		for (int k = 0; x && k < x->n_in; k++)
			if (x->in[k] >= 0)
				last[x->in[k]] = i;
	}
	int rc = 0;
	for (int i = 0; i < g->n_nodes && !rc; i++) {
		struct qd_enode *x = exec_node(g, i);
		for (int k = 0; x && k < x->n_free; k++) {
			int id = x->free_after[k];
			if (last[id] > i) {
				if ((rc = push_free(exec_node(g, last[id]), id)))
					break;
				x->free_after[k--] = x->free_after[--x->n_free];
			}
		}
	}
	free(last);
	return rc ? qd_err_set(err, QD_ENOMEM, "", "out of memory") : 0;
}

/* Weights of every QLinearConv / ConvInteger that runs (native or fused here) packed now, so
 * the first run does not pay for it (engine/ops_quant_conv.c, qd_qconv_prepack). */
static int prepack_convs(struct qd_fuse_index *f, struct qd_err *err)
{
	for (int i = 0; i < f->g->n_nodes; i++) {
		struct qd_enode *x = exec_node(f->g, i);
		int wi, wzi;
		if (!x || !x->op)
			continue;
		if (x->op == &qd_ops[QD_OP_QLinearConv])
			wi = 3, wzi = 5;
		else if (x->op == &qd_ops[QD_OP_ConvInteger])
			wi = 1, wzi = 3;
		else
			continue;
		const struct qd_tensor *w = wi < x->n_in ? qd_fuse_const(f, x->in[wi]) : NULL;
		int z = wzi < x->n_in ? x->in[wzi] : -1;
		const struct qd_tensor *wz = qd_fuse_const(f, z);
		if (!w || (z >= 0 && !wz))
			continue;
		if (qd_qconv_prepack(x, w, wz))
			return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	return 0;
}

int qd_fuse_qdq_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err)
{
	struct qd_fuse_index f = { 0 };
	int rc;
	if (!g || !g->n_nodes || getenv("QUANTD_NO_FUSE"))
		return 0;
	if ((rc = qd_fuse_index_init(&f, e, g, err)))
		goto out;
	for (int i = 0; i < g->n_nodes && !rc; i++)
		for (size_t k = 0; k < QD_ARRAY_LEN(qdq_groups); k++)
			if (qd_fuse_is_op(&g->nodes[i], qdq_groups[k].target)) {
				rc = qdq_groups[k].fuse(&f, i, qdq_groups[k].qop, err);
				break;
			}
	if (!rc)
		rc = fuse_luts(&f, err);
	if (!rc && f.n_fused)
		rc = fix_plan(&f, err);
	if (!rc)
		rc = prepack_convs(&f, err);
out:
	qd_fuse_index_free(&f);
	return rc;
}
