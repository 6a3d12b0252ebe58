/* engine/fuse_float.c — load-time float fusion: a Conv followed by elementwise activation
 * steps (scalar Mul/Add/Sub/Div, inference BatchNormalization, Relu, Clip, HardSigmoid,
 * Sigmoid, HardSwish, and the decomposed HardSwish x * Clip(x + 3, 0, 6) / 6 that
 * Paddle2ONNX emits) runs as one Conv with an epilogue (qd_enode.epi, applied by
 * ops_conv.c), saving a full pass over the activation per step. Likewise the erf form of
 * GELU (Div -> Erf -> Add -> Mul -> Mul) runs as one Erf with a GELU step.
 *
 * Conventions as engine/fuse.c: main graph only; every intermediate has exactly its chain
 * readers (counting subgraph reads) and is not a graph output; the originals stay, the
 * Conv gets .fused (a copy of it with the epilogue and the chain's last output) and the
 * other chain nodes .fuse_skip; with a hook set the engine runs the originals. The fused
 * node runs where the Conv ran: its other inputs are all constants, so that is safe. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "engine/engine_internal.h"

struct ffuse {
	struct qd_engine *e;
	struct qd_egraph *g;
	int *uses;      /* per slot: readers (nodes of g and of its subgraphs); borrow (ix) */
	bool *is_out;   /* per slot: graph output; borrow (ix) */
	int64_t M;      /* output channels of the Conv being fused (-1: weight not constant) */
	struct qd_epilogue ep;  /* epilogue being built */
	struct qd_fuse_index ix;
};

/* Top-level readers of slot id (at most max): count, or -1 if the slot is an output, a
 * constant, or read elsewhere (subgraphs) too. */
static int readers(struct ffuse *f, int id, int *r, int max)
{
	if (id < 0 || f->is_out[id] || f->e->slots[id].is_const)
		return -1;
	int nr = 0;
	for (int i = 0; i < f->g->n_nodes; i++) {
		const struct qd_enode *n = &f->g->nodes[i];
		bool reads = false;
		for (int k = 0; k < n->n_in; k++)
			reads |= n->in[k] == id;
		if (reads) {
			if (nr == max)
				return -1;
			r[nr++] = i;
		}
	}
	int direct = 0;   /* a node may read the slot twice: compare against use counts */
	for (int j = 0; j < nr; j++) {
		const struct qd_enode *n = &f->g->nodes[r[j]];
		for (int k = 0; k < n->n_in; k++)
			direct += n->in[k] == id;
	}
	return direct == f->uses[id] ? nr : -1;
}

/* Constant float32 scalar (one value, rank <= 1) in slot id: true and *v. */
static bool const_scalar(struct ffuse *f, int id, float *v)
{
	if (id < 0 || !f->e->slots[id].is_const || !f->e->slots[id].has)
		return false;
	const struct qd_tensor *t = &f->e->slots[id].t;
	if (t->dtype != QD_DT_FLOAT || t->ndim > 1 || qd_tensor_count(t) != 1)
		return false;
	*v = ((const float *)t->data)[0];
	return true;
}

static struct qd_enode *nd(struct ffuse *f, int i)
{
	return &f->g->nodes[i];
}

/* Binary node n reading x and a constant scalar: the scalar's input index or -1. */
static int scalar_operand(struct ffuse *f, const struct qd_enode *n, int x, float *v)
{
	if (n->n_in != 2 || n->n_out != 1 || n->in[0] == n->in[1])
		return -1;
	int o = n->in[0] == x ? 1 : 0;
	return const_scalar(f, n->in[o], v) ? o : -1;
}

/* Clip node: its bounds (attributes before opset 11, optional inputs after). */
static bool clip_bounds(struct ffuse *f, const struct qd_enode *n, float *lo, float *hi)
{
	*lo = -INFINITY;
	*hi = INFINITY;
	if (n->opset < 11) {
		*lo = qd_node_attr_float(n->proto, "min", -INFINITY);
		*hi = qd_node_attr_float(n->proto, "max", INFINITY);
		return n->n_in == 1;
	}
	if (n->n_in > 1 && n->in[1] >= 0 && !const_scalar(f, n->in[1], lo))
		return false;
	if (n->n_in > 2 && n->in[2] >= 0 && !const_scalar(f, n->in[2], hi))
		return false;
	return n->n_in <= 3;
}

/* Inference BatchNormalization n on x with constant float inputs of M values each and no
 * training outputs: records its inputs in f->ep (one BN per epilogue). */
static bool bn_step(struct ffuse *f, const struct qd_enode *n, int x)
{
	if (!qd_fuse_is_op(n, QD_OP_BatchNormalization) || n->n_in != 5 || n->in[0] != x || f->M < 1 ||
	    f->ep.bn[0] >= 0)
		return false;
	for (int k = 1; k < n->n_out; k++)
		if (n->out[k] >= 0)
			return false;
	for (int k = 1; k < 5; k++) {
		int id = n->in[k];
		if (id < 0 || !f->e->slots[id].is_const || !f->e->slots[id].has ||
		    f->e->slots[id].t.dtype != QD_DT_FLOAT || qd_tensor_count(&f->e->slots[id].t) != f->M)
			return false;
	}
	for (int k = 0; k < 4; k++)
		f->ep.bn[k] = n->in[k + 1];
	f->ep.bn_eps = qd_node_attr_float(n->proto, "epsilon", 1e-5f);
	return true;
}

/* One step after slot x read only by node i: fills *s, *last (node producing the step's
 * output), cover[] (nodes of the step). 0 = no step. */
static int one_step(struct ffuse *f, int x, struct qd_epi_step *s, int *cover, int *last)
{
	int r[2];
	int nr = readers(f, x, r, 2);
	float v;
	if (nr == 1) {
		struct qd_enode *n = nd(f, r[0]);
		if (n->n_out < 1 || n->out[0] < 0 || n->n_in < 1 || n->in[0] < 0)
			return 0;
		if (n->n_out != 1 && !qd_fuse_is_op(n, QD_OP_BatchNormalization))
			return 0;
		if ((qd_fuse_is_op(n, QD_OP_Mul) || qd_fuse_is_op(n, QD_OP_Add)) && scalar_operand(f, n, x, &v) >= 0) {
			*s = (struct qd_epi_step){ qd_fuse_is_op(n, QD_OP_Mul) ? QD_EPI_MUL : QD_EPI_ADD, v, 0, 0 };
		} else if ((qd_fuse_is_op(n, QD_OP_Sub) || qd_fuse_is_op(n, QD_OP_Div)) && scalar_operand(f, n, x, &v) == 1) {
			/* x - c == x + (-c) exactly */
			*s = (struct qd_epi_step){ qd_fuse_is_op(n, QD_OP_Sub) ? QD_EPI_ADD : QD_EPI_DIV,
						   qd_fuse_is_op(n, QD_OP_Sub) ? -v : v, 0, 0 };
		} else if (n->in[0] != x || n->n_in < 1) {
			return 0;
		} else if (bn_step(f, n, x)) {
			*s = (struct qd_epi_step){ QD_EPI_BN, 0, 0, 0 };
		} else if (qd_fuse_is_op(n, QD_OP_Relu) && n->n_in == 1) {
			*s = (struct qd_epi_step){ QD_EPI_RELU, 0, 0, 0 };
		} else if (qd_fuse_is_op(n, QD_OP_Sigmoid) && n->n_in == 1) {
			*s = (struct qd_epi_step){ QD_EPI_SIGMOID, 0, 0, 0 };
		} else if (qd_fuse_is_op(n, QD_OP_HardSwish) && n->n_in == 1) {
			*s = (struct qd_epi_step){ QD_EPI_HSWISH, 0, 0, 0 };
		} else if (qd_fuse_is_op(n, QD_OP_HardSigmoid) && n->n_in == 1) {
			*s = (struct qd_epi_step){ QD_EPI_HSIG, qd_node_attr_float(n->proto, "alpha", 0.2f),
						   qd_node_attr_float(n->proto, "beta", 0.5f), 0 };
		} else if ((qd_fuse_is_op(n, QD_OP_Clip_6) || qd_fuse_is_op(n, QD_OP_Clip_11))) {
			float lo, hi;
			if (!clip_bounds(f, n, &lo, &hi))
				return 0;
			*s = (struct qd_epi_step){ QD_EPI_CLIP, 0, lo, hi };
		} else {
			return 0;
		}
		cover[0] = r[0];
		*last = r[0];
		return 1;
	}
	if (nr != 2)
		return 0;
	/* x * t where t = Clip(x + a, lo, hi) or t = HardSigmoid(x): find the Mul reader */
	for (int j = 0; j < 2; j++) {
		struct qd_enode *m = nd(f, r[j]), *h = nd(f, r[1 - j]);
		if (!qd_fuse_is_op(m, QD_OP_Mul) || m->n_in != 2 || m->n_out != 1 || m->out[0] < 0 ||
		    h->n_out != 1 || h->out[0] < 0)
			continue;
		int t = m->in[0] == x ? m->in[1] : m->in[0];
		int rr[1];
		if (qd_fuse_is_op(h, QD_OP_HardSigmoid) && h->n_in == 1 && h->out[0] == t &&
		    readers(f, t, rr, 1) == 1) {
			*s = (struct qd_epi_step){ QD_EPI_XHSIG, qd_node_attr_float(h->proto, "alpha", 0.2f),
						   qd_node_attr_float(h->proto, "beta", 0.5f), 0 };
			cover[0] = r[1 - j];
			cover[1] = r[j];
			*last = r[j];
			return 2;
		}
		if (qd_fuse_is_op(h, QD_OP_Add) && scalar_operand(f, h, x, &v) >= 0 &&
		    readers(f, h->out[0], rr, 1) == 1) {
			struct qd_enode *cl = nd(f, rr[0]);
			float lo, hi;
			int cr[1];
			if (!(qd_fuse_is_op(cl, QD_OP_Clip_6) || qd_fuse_is_op(cl, QD_OP_Clip_11)) || cl->n_out != 1 || cl->out[0] != t || cl->in[0] != h->out[0] ||
			    !clip_bounds(f, cl, &lo, &hi) || readers(f, t, cr, 1) != 1)
				continue;
			*s = (struct qd_epi_step){ QD_EPI_XCLIP, v, lo, hi };
			cover[0] = r[1 - j];
			cover[1] = rr[0];
			cover[2] = r[j];
			*last = r[j];
			return 3;
		}
	}
	return 0;
}

static int fuse_conv(struct ffuse *f, int ci, struct qd_err *err)
{
	struct qd_enode *conv = nd(f, ci);
	if (conv->n_out != 1 || conv->out[0] < 0 || conv->n_in < 2)
		return 0;
	struct qd_epilogue *ep = &f->ep;
	*ep = (struct qd_epilogue){ .bn = { -1, -1, -1, -1 } };
	const struct qd_tensor *w = conv->in[1] >= 0 && f->e->slots[conv->in[1]].is_const &&
		f->e->slots[conv->in[1]].has ? &f->e->slots[conv->in[1]].t : NULL;
	f->M = w && w->ndim >= 3 ? w->dims[0] : -1;
	int cover[QD_EPI_MAX * 3 + 1], nc = 0, last = ci;
	cover[nc++] = ci;      /* the Conv itself, where the fused node runs */
	while (ep->n < QD_EPI_MAX) {
		int c[3], l;
		int k = one_step(f, nd(f, last)->out[0], &ep->s[ep->n], c, &l);
		if (!k)
			break;
		for (int j = 0; j < k; j++)
			cover[nc++] = c[j];
		ep->n++;
		last = l;
	}
	if (!ep->n)
		return 0;
	struct qd_enode *fn = qd_fuse_node_like(f->g, conv, cover, nc, conv->n_in,
						qd_asprintf("%s (fused epilogue)", conv->name));
	if (!fn)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	fn->out[0] = nd(f, last)->out[0];
	fn->epi = *ep;
	/* the epilogue alone on the Conv's output, for a hook that wants that output (see
	 * qd_engine_set_hook_want); it frees what the chain after the Conv freed */
	struct qd_enode *eo = qd_fuse_node_new(f->g, cover + 1, nc - 1, 1,
					       qd_asprintf("%s (epilogue)", conv->name));
	if (!eo) {
		qd_enode_release(fn);
		free(fn);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	eo->proto = conv->proto;
	eo->op = &qd_ops[QD_OP_ConvEpilogue];
	eo->opset = 1;
	eo->prof_idx = QD_OP_ConvEpilogue;
	eo->in[0] = conv->out[0];
	eo->out[0] = fn->out[0];
	eo->epi = *ep;
	for (int k = 1; k < nc; k++) {
		const struct qd_enode *cn = nd(f, cover[k]);
		for (int j = 0; j < cn->n_free; j++)
			eo->free_after[eo->n_free++] = cn->free_after[j];
	}
	qd_fuse_attach(f->g, fn, ci, cover, nc);
	conv->epi_only = eo;
	return 0;
}

/* GELU as Paddle/HF exports it: t = Div(x, a) or Mul(x, a); Erf(t); Add(., b);
 * Mul(x, .); Mul(., c), with a, b, c constant scalars and every intermediate private. Runs
 * as the Erf op with a QD_EPI_GELU_* step, where the Div / Mul ran (x is ready there). */
static int fuse_gelu(struct ffuse *f, int ei, struct qd_err *err)
{
	struct qd_enode *erf = nd(f, ei);
	if (erf->n_in != 1 || erf->n_out != 1 || erf->in[0] < 0 || erf->out[0] < 0)
		return 0;
	int t = erf->in[0], pi = -1;
	for (int i = 0; i < f->g->n_nodes && pi < 0; i++)
		for (int k = 0; k < nd(f, i)->n_out; k++)
			if (nd(f, i)->out[k] == t)
				pi = i;
	int r[1], ra[1], rm[1], rc[1];
	float a, b, c;
	if (pi < 0 || readers(f, t, r, 1) != 1)
		return 0;
	struct qd_enode *p = nd(f, pi);
	bool div = qd_fuse_is_op(p, QD_OP_Div);
	if (!(div || qd_fuse_is_op(p, QD_OP_Mul)) || p->n_in != 2 || p->n_out != 1)
		return 0;
	int ai = div ? 1 : const_scalar(f, p->in[1], &a) ? 1 : 0;
	if (!const_scalar(f, p->in[ai], &a) || p->in[1 - ai] == p->in[ai])
		return 0;
	int x = p->in[1 - ai];
	if (readers(f, erf->out[0], ra, 1) != 1)
		return 0;
	struct qd_enode *ad = nd(f, ra[0]);
	if (!qd_fuse_is_op(ad, QD_OP_Add) || ad->n_out != 1 || ad->out[0] < 0 || scalar_operand(f, ad, erf->out[0], &b) < 0 ||
	    readers(f, ad->out[0], rm, 1) != 1)
		return 0;
	struct qd_enode *m1 = nd(f, rm[0]);
	if (!qd_fuse_is_op(m1, QD_OP_Mul) || m1->n_in != 2 || m1->n_out != 1 || m1->out[0] < 0 ||
	    m1->in[0] != x || m1->in[1] != ad->out[0] || readers(f, m1->out[0], rc, 1) != 1)
		return 0;
	struct qd_enode *m2 = nd(f, rc[0]);
	if (!qd_fuse_is_op(m2, QD_OP_Mul) || m2->n_out != 1 || m2->out[0] < 0 || scalar_operand(f, m2, m1->out[0], &c) != 1)
		return 0;
	int cover[5] = { pi, ei, ra[0], rm[0], rc[0] };   /* runs where the Div / Mul ran */
	struct qd_enode *fn = qd_fuse_node_like(f->g, erf, cover, 5, 1,
						qd_asprintf("%s (fused GELU)", erf->name));
	if (!fn)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	fn->in[0] = x;
	fn->out[0] = m2->out[0];
	fn->epi.n = 1;
	fn->epi.s[0] = (struct qd_epi_step){ div ? QD_EPI_GELU_DIV : QD_EPI_GELU_MUL, a, b, c };
	qd_fuse_attach(f->g, fn, pi, cover, 5);
	return 0;
}

/* ---- decomposed LayerNormalization ----
 * ONNX Runtime's LayerNormFusion (onnxruntime/core/optimizer/layer_norm_fusion.cc; level
 * "basic" from opset 17, "extended" below, so always under "all") rewrites
 *   m = ReduceMean(x); d = Sub(x, m) [or two Subs]; v = ReduceMean(Pow(d, e));
 *   y = Add(Mul(Div(d, Sqrt(Add(v, eps))), gamma), beta)
 * into LayerNormalization(x, gamma, beta, axis, epsilon). We fuse under its conditions, so
 * the engine runs ORT's LayerNormalization arithmetic (qd_layer_norm_row_f32) where ORT
 * does: the first ReduceMean read only by one or two Subs, each Sub's other input x; one
 * Sub read by exactly the Pow and the Div, or two Subs read once each; Div, Sqrt, the eps
 * Add, the second ReduceMean, Pow and Mul each read once and not graph outputs; the Pow's
 * exponent float-typed (its value is not checked, as in ORT); the ReduceMean axes (attribute,
 * or a constant input from opset 18) one and the same axis, the last (a positive axis needs
 * the rank from the model's value_info, as ORT needs it from shape inference); gamma and
 * beta 1-D with the same length. epsilon: element 0 of the eps Add's second input when that
 * is a float constant, else ORT's default 1e-5 (so Add(eps, v) gets 1e-5, as in ORT).
 * ORT quirks kept: Sub(m, x) is accepted (ORT checks only which inputs, not their order).
 * Where ORT would remove a Cast (before the first ReduceMean, after a Sub, on the Pow, after
 * the Div) we fuse only float -> float Casts after the Div (a no-op) and otherwise leave
 * the nodes alone; we also require what ORT does not check but its rewrite assumes:
 * keepdims 1, Div(d, sqrt) in that order, constant eps / gamma / beta (ORT also takes graph
 * inputs of rank 1) and x float32 (ORT also fuses double; fp16 not on CPU).
 * SimplifiedLayerNormFusion (Pow(x) -> ReduceMean -> Add -> Sqrt -> Div(x, .) -> Mul, into
 * the contrib SimplifiedLayerNormalization) is not done: the engine has no such kernel. */

/* Producer node of slot id in g, or -1. */
static int producer(struct ffuse *f, int id)
{
	for (int i = 0; id >= 0 && i < f->g->n_nodes; i++)
		for (int k = 0; k < nd(f, i)->n_out; k++)
			if (nd(f, i)->out[k] == id)
				return i;
	return -1;
}

/* Rank of slot id declared in the graph's inputs / value_info / outputs, or -1. */
static int declared_rank(struct ffuse *f, int id)
{
	const Onnx__GraphProto *gp = f->g->proto;
	const char *name = f->e->slots[id].name;
	const Onnx__ValueInfoProto *const *lists[3] = { (const Onnx__ValueInfoProto *const *)gp->input,
		(const Onnx__ValueInfoProto *const *)gp->value_info, (const Onnx__ValueInfoProto *const *)gp->output };
	size_t counts[3] = { gp->n_input, gp->n_value_info, gp->n_output };
	for (int l = 0; l < 3; l++)
		for (size_t i = 0; i < counts[l]; i++) {
			const Onnx__ValueInfoProto *v = lists[l][i];
			if (!v->name || strcmp(v->name, name) || !v->type || !v->type->tensor_type ||
			    !v->type->tensor_type->shape)
				continue;
			return (int)v->type->tensor_type->shape->n_dim;
		}
	return -1;
}

/* The single axis of ReduceMean n as a negative index (-1 = last), or 0 when it is not one
 * axis or cannot be normalised against the declared rank of x (ORT's CheckAxesOnReduceMean
 * plus "scale as 1D"). */
static int64_t rm_axis(struct ffuse *f, const struct qd_enode *n, int x)
{
	const int64_t *a;
	long k = qd_node_attr_ints(n->proto, "axes", &a);
	int64_t ax;
	if (qd_node_attr_int(n->proto, "keepdims", 1) != 1)
		return 0;
	if (k >= 0) {
		if (k != 1)
			return 0;
		ax = a[0];
	} else if (n->n_in == 2 && n->in[1] >= 0 && f->e->slots[n->in[1]].is_const && f->e->slots[n->in[1]].has) {
		const struct qd_tensor *t = &f->e->slots[n->in[1]].t;
		if (t->dtype != QD_DT_INT64 || qd_tensor_count(t) != 1)
			return 0;
		ax = ((const int64_t *)t->data)[0];
	} else {
		return 0;
	}
	if (ax >= 0) {
		int r = declared_rank(f, x);   /* ORT: the rank of the first ReduceMean's input, for both */
		if (r < 0)
			return 0;
		ax -= r;
	}
	return ax == -1 ? -1 : 0;
}

/* Constant float32 tensor of rank 1 in slot id: its length, else -1. */
static int64_t const_vec1(struct ffuse *f, int id)
{
	if (id < 0 || !f->e->slots[id].is_const || !f->e->slots[id].has)
		return -1;
	const struct qd_tensor *t = &f->e->slots[id].t;
	return t->dtype == QD_DT_FLOAT && t->ndim == 1 ? t->dims[0] : -1;
}

static bool float_typed(struct ffuse *f, int id)
{
	int dt = id >= 0 ? (f->e->slots[id].is_const && f->e->slots[id].has ? f->e->slots[id].t.dtype :
			    f->e->slots[id].dt) : 0;
	return dt == QD_DT_FLOAT || dt == QD_DT_DOUBLE || dt == QD_DT_FLOAT16 || dt == QD_DT_BFLOAT16;
}

/* The only reader of slot id if it is op `op` with n_in inputs and one output, else -1. */
static int only_reader_op(struct ffuse *f, int id, enum qd_op_id op, int n_in)
{
	int r[1];
	if (readers(f, id, r, 1) != 1)
		return -1;
	const struct qd_enode *n = nd(f, r[0]);
	return qd_fuse_is_op(n, op) && n->n_in == n_in && n->n_out == 1 && n->out[0] >= 0 ? r[0] : -1;
}

static int fuse_layernorm(struct ffuse *f, int ri, struct qd_err *err)
{
	struct qd_enode *rm = nd(f, ri);
	if (rm->n_in < 1 || rm->n_out != 1 || rm->out[0] < 0 || rm->in[0] < 0)
		return 0;
	int x = rm->in[0], m = rm->out[0];
	if (f->e->slots[x].is_const || f->e->slots[x].dt != QD_DT_FLOAT)
		return 0;
	int64_t ax = rm_axis(f, rm, x);
	if (!ax)
		return 0;
	/* m read only by one or two Subs of x and m */
	int subs[2], ns = readers(f, m, subs, 2);
	if (ns < 1)
		return 0;
	for (int j = 0; j < ns; j++) {
		const struct qd_enode *s = nd(f, subs[j]);
		if (!qd_fuse_is_op(s, QD_OP_Sub) || s->n_in != 2 || s->n_out != 1 || s->out[0] < 0 ||
		    !((s->in[0] == x && s->in[1] == m) || (s->in[0] == m && s->in[1] == x)))
			return 0;
	}
	/* the Pow and the Div reading d (one Sub read by both, or one each) */
	int pw = -1, dv = -1, r2[2];
	for (int j = 0; j < ns; j++) {
		int d = nd(f, subs[j])->out[0];
		int nr = readers(f, d, r2, 2);
		if (nr != (ns == 1 ? 2 : 1))
			return 0;
		for (int k = 0; k < nr; k++) {
			const struct qd_enode *n = nd(f, r2[k]);
			if (qd_fuse_is_op(n, QD_OP_Pow) && n->n_in == 2 && n->in[0] == d && pw < 0)
				pw = r2[k];
			else if (qd_fuse_is_op(n, QD_OP_Div) && n->n_in == 2 && n->in[0] == d && n->in[1] != d && dv < 0)
				dv = r2[k];
			else
				return 0;
		}
	}
	if (pw < 0 || dv < 0)
		return 0;
	/* ORT drops a Cast producing x that only the pattern reads and normalises the Cast's
	 * input: the same values only when that input is float32 already */
	int ci = producer(f, x), rx[4];
	if (ci >= 0 && qd_fuse_is_op(nd(f, ci), QD_OP_Cast) && nd(f, ci)->opset >= 9 && readers(f, x, rx, 4) == ns + 1 &&
	    (nd(f, ci)->in[0] < 0 || f->e->slots[nd(f, ci)->in[0]].dt != QD_DT_FLOAT))
		return 0;
	struct qd_enode *pow = nd(f, pw), *div = nd(f, dv);
	if (pow->n_out != 1 || pow->out[0] < 0 || div->n_out != 1 || div->out[0] < 0 ||
	    !float_typed(f, pow->in[1]) || producer(f, pow->in[1]) >= 0)
		return 0;
	int rm2i = only_reader_op(f, pow->out[0], QD_OP_ReduceMean, nd(f, ri)->n_in);
	if (rm2i < 0 || nd(f, rm2i)->in[0] != pow->out[0] || rm_axis(f, nd(f, rm2i), x) != ax)
		return 0;
	int v = nd(f, rm2i)->out[0];
	int ai = only_reader_op(f, v, QD_OP_Add, 2);
	if (ai < 0)
		return 0;
	struct qd_enode *add2 = nd(f, ai);
	int epsid = add2->in[0] == v ? add2->in[1] : add2->in[0];
	if (epsid < 0 || epsid == v || !f->e->slots[epsid].is_const || !f->e->slots[epsid].has ||
	    f->e->slots[epsid].t.dtype != QD_DT_FLOAT || !qd_tensor_count(&f->e->slots[epsid].t))
		return 0;
	float eps = add2->in[1] == epsid ? ((const float *)f->e->slots[epsid].t.data)[0] : 1e-5f;
	int si = only_reader_op(f, add2->out[0], QD_OP_Sqrt, 1);
	if (si < 0 || nd(f, si)->out[0] != div->in[1] || readers(f, nd(f, si)->out[0], r2, 1) != 1)
		return 0;
	/* Div -> [Cast to float] -> Mul(gamma) -> Add(beta) */
	int cover[12], nc = 0, cur = div->out[0], r1[1];
	if (readers(f, cur, r1, 1) != 1)
		return 0;
	struct qd_enode *n = nd(f, r1[0]);
	if (qd_fuse_is_op(n, QD_OP_Cast) && n->n_in == 1 && n->n_out == 1 && n->out[0] >= 0 && n->opset >= 9 &&
	    qd_node_attr_int(n->proto, "to", 0) == QD_DT_FLOAT) {
		cover[nc++] = r1[0];
		cur = n->out[0];
		if (readers(f, cur, r1, 1) != 1)
			return 0;
		n = nd(f, r1[0]);
	}
	if (!qd_fuse_is_op(n, QD_OP_Mul) || n->n_in != 2 || n->n_out != 1 || n->out[0] < 0 || n->in[0] == n->in[1])
		return 0;
	int mi = r1[0], gamma = n->in[0] == cur ? n->in[1] : n->in[0];
	if (readers(f, n->out[0], r1, 1) != 1)
		return 0;
	struct qd_enode *ad = nd(f, r1[0]);
	if (!qd_fuse_is_op(ad, QD_OP_Add) || ad->n_in != 2 || ad->n_out != 1 || ad->out[0] < 0 || ad->in[0] == ad->in[1])
		return 0;
	int beta = ad->in[0] == n->out[0] ? ad->in[1] : ad->in[0];
	int64_t gl = const_vec1(f, gamma), bl = const_vec1(f, beta);
	if (gl < 0 || gl != bl)
		return 0;
	cover[nc++] = mi;
	cover[nc++] = r1[0];
	/* runs where the first ReduceMean ran: x is ready there, gamma / beta are constants */
	int all[16], na = 0;
	all[na++] = ri;
	for (int j = 0; j < ns; j++)
		all[na++] = subs[j];
	all[na++] = pw;
	all[na++] = rm2i;
	all[na++] = ai;
	all[na++] = si;
	all[na++] = dv;
	for (int j = 0; j < nc; j++)
		all[na++] = cover[j];
	struct qd_enode *fn = qd_fuse_node_new(f->g, all, na, 3, qd_asprintf("%s (fused LayerNormalization)", rm->name));
	if (!fn)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	fn->proto = ad->proto;
	fn->op = &qd_ops[QD_OP_LayerNormalization];
	fn->opset = 17;
	fn->prof_idx = QD_OP_LayerNormalization;
	fn->in[0] = x;
	fn->in[1] = gamma;
	fn->in[2] = beta;
	fn->out[0] = ad->out[0];
	fn->epi.n = 1;
	fn->epi.s[0] = (struct qd_epi_step){ QD_EPI_LAYERNORM, eps, 0, 0 };
	qd_fuse_attach(f->g, fn, ri, all, na);
	return 0;
}

int qd_fuse_float_graph(struct qd_engine *e, struct qd_egraph *g, struct qd_err *err)
{
	struct ffuse f = { .e = e, .g = g };
	int rc;
	if (!g || !g->n_nodes || getenv("QUANTD_NO_FUSE"))
		return 0;
	if ((rc = qd_fuse_index_init(&f.ix, e, g, err)))
		goto out;
	f.uses = f.ix.uses;
	f.is_out = f.ix.is_out;
	for (int i = 0; i < g->n_nodes && !rc; i++)
		if (qd_fuse_is_op(&g->nodes[i], QD_OP_Conv))
			rc = fuse_conv(&f, i, err);
		else if (qd_fuse_is_op(&g->nodes[i], QD_OP_Erf))
			rc = fuse_gelu(&f, i, err);
		else if (qd_fuse_is_op(&g->nodes[i], QD_OP_ReduceMean))
			rc = fuse_layernorm(&f, i, err);
out:
	qd_fuse_index_free(&f.ix);
	return rc;
}
