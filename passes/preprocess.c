/* quantd's quant_preprocess (passes/preprocess.h, reference/ort_quantization.md §6) in C:
 * Constant nodes to initializers, constant folding through the engine, BatchNormalization
 * folded into Conv / ConvTranspose / Gemm, dead node and initializer removal, and type /
 * shape inference by running the engine with a per-tensor hook.
 *
 * DESIGN
 * - Everything works on the main graph; subgraph bodies (If / Loop / Scan) are left as
 *   they are (their Constants are normalised by onnx/, their tensors are not typed), and
 *   every name a subgraph reads counts as a use of that name.
 * - "Constant" means: an initializer that is not also a graph input (an IR >= 4 graph input
 *   with an initializer is only a default a caller may override; ONNX Runtime does not
 *   fold those either). IR < 4 lists every initializer as an input, so there all count.
 * - Folding runs each foldable node alone: a temporary model borrows the node and its
 *   initializers, the engine runs it once, and its outputs become initializers (also when
 *   they are graph outputs: ONNX and ONNX Runtime accept an initializer as a graph
 *   output). Random ops, Q/DQ (so QDQ models keep their quantized weights) and nodes with
 *   subgraphs are never folded; outputs over max_folded_bytes are not folded.
 * - BatchNormalization folding computes scale = gamma / sqrt(var + eps) and
 *   shift = beta - mean * scale in double and stores float32. A weight or bias also used
 *   elsewhere is copied into a new initializer instead of being edited.
 * - Type / shape inference runs the whole model in the engine (hook on every produced
 *   tensor of the main graph). Symbolic graph-input dims are found by a second run with
 *   those dims changed: a dim that differs between the runs is written as a dim_param
 *   (the input's own name when the pair of sizes identifies one input dim, else
 *   "unk__N"); equal dims are written as values. When no second run succeeds, dims are
 *   left unknown (rank only). Dims of data-dependent ops (NonZero, ...) are taken from the
 *   runs as well: a value equal in both runs is written as a value. */
#include "passes/preprocess.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- context ---- */
struct pp {
	struct qd_model *m;
	Onnx__GraphProto *g;
	const struct qd_preprocess_opts *o;
	size_t max_bytes;
	struct qd_err *err;
	long uniq;            /* counter for new names */
};

static void plog(struct pp *p, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void plog(struct pp *p, enum qd_log_level lvl, const char *fmt, ...)
{
	if (!p->o->log)
		return;
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	p->o->log(p->o->ud, lvl, line);
}

static int oom(struct pp *p, const char *what)
{
	return qd_err_set(p->err, QD_ENOMEM, "graph", "preprocess: out of memory (%s)", what);
}

static bool is_ai_onnx(const Onnx__NodeProto *n, const char *op)
{
	return n->op_type && !strcmp(n->op_type, op) && !*qd_node_domain(n);
}

static bool has_subgraph(const Onnx__NodeProto *n)
{
	for (size_t a = 0; a < n->n_attribute; a++)
		if (n->attribute[a]->g || n->attribute[a]->n_graphs)
			return true;
	return false;
}

static int node_uses(const Onnx__NodeProto *n, struct qd_namemap *uses, long d);

/* Every name a subgraph of n reads (over-approximation: all its node inputs and outputs). */
static int add_subgraph_reads(const Onnx__GraphProto *sg, struct qd_namemap *uses, long d)
{
	for (size_t i = 0; i < sg->n_node; i++)
		if (node_uses(sg->node[i], uses, d))
			return -QD_ENOMEM;
	for (size_t i = 0; i < sg->n_output; i++)
		if (sg->output[i]->name && qd_namemap_add(uses, sg->output[i]->name, d))
			return -QD_ENOMEM;
	return 0;
}

/* The names node n reads: its inputs and, through its subgraphs, theirs. */
static int node_uses(const Onnx__NodeProto *n, struct qd_namemap *uses, long d)
{
	for (size_t k = 0; k < n->n_input; k++)
		if (*n->input[k] && qd_namemap_add(uses, n->input[k], d))
			return -QD_ENOMEM;
	for (size_t a = 0; a < n->n_attribute; a++) {
		const Onnx__AttributeProto *at = n->attribute[a];
		if (at->g && add_subgraph_reads(at->g, uses, d))
			return -QD_ENOMEM;
		for (size_t k = 0; k < at->n_graphs; k++)
			if (add_subgraph_reads(at->graphs[k], uses, d))
				return -QD_ENOMEM;
	}
	return 0;
}

#define GRAPH_OUTPUT_USE (1L << 40)

/* uses[name] = number of reads (node inputs, subgraph reads) + GRAPH_OUTPUT_USE if a graph
 * output */
static int build_uses(const Onnx__GraphProto *g, struct qd_namemap *uses)
{
	for (size_t i = 0; i < g->n_node; i++)
		if (node_uses(g->node[i], uses, 1))
			return -QD_ENOMEM;
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && qd_namemap_add(uses, g->output[i]->name, GRAPH_OUTPUT_USE))
			return -QD_ENOMEM;
	return 0;
}

/* consts[name] = initializer index for the initializers that count as constant */
static int build_consts(struct pp *p, struct qd_namemap *consts)
{
	Onnx__GraphProto *g = p->g;
	struct qd_namemap inputs = { 0 };
	bool overridable = !p->m->proto->has_ir_version || p->m->proto->ir_version >= 4;
	int rc = 0;
	for (size_t i = 0; i < g->n_input && overridable; i++)
		if (g->input[i]->name && (rc = qd_namemap_put(&inputs, g->input[i]->name, 1)))
			goto out;
	for (size_t i = 0; i < g->n_initializer; i++) {
		const char *nm = g->initializer[i]->name;
		if (!nm || qd_namemap_get(&inputs, nm))
			continue;
		if ((rc = qd_namemap_put(consts, nm, (long)i)))
			goto out;
	}
out:
	qd_namemap_free(&inputs);
	return rc;
}

static int add_initializer(struct pp *p, Onnx__TensorProto *t)
{
	if (qd_graph_add_initializer(p->g, t))
		return -QD_ENOMEM;
	/* IR < 4 wants every initializer listed as a graph input as well: IR 4 reads the same */
	if (p->m->proto->has_ir_version && p->m->proto->ir_version < 4)
		p->m->proto->ir_version = 4;
	return 0;
}

/* Drops value_info entries named name. */
static void drop_value_info(Onnx__GraphProto *g, const char *name)
{
	size_t w = 0;
	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *v = g->value_info[i];
		if (v->name && !strcmp(v->name, name))
			protobuf_c_message_free_unpacked(&v->base, NULL);
		else
			g->value_info[w++] = v;
	}
	g->n_value_info = w;
}

/* ---- 2. constant folding ---- */
static const char *const no_fold_ops[] = {
	"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
	"Bernoulli", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
};

static bool foldable(const Onnx__NodeProto *n, const struct qd_namemap *consts)
{
	if (!n->op_type || has_subgraph(n))
		return false;
	for (size_t i = 0; i < QD_ARRAY_LEN(no_fold_ops); i++)
		if (!strcmp(n->op_type, no_fold_ops[i]))
			return false;
	bool named = false;
	for (size_t k = 0; k < n->n_output; k++)
		named |= *n->output[k] != 0;
	if (!named)
		return false;
	for (size_t k = 0; k < n->n_input; k++)
		if (*n->input[k] && !qd_namemap_get(consts, n->input[k]))
			return false;
	return true;
}

/* Runs n alone on its initializers. On success *outs (n_out entries, NULL for unnamed
 * outputs) are new initializers. Returns 0, or > 0 when the node is not folded (reason in
 * why), < 0 on out of memory. */
static int fold_one(struct pp *p, Onnx__NodeProto *n, const struct qd_namemap *consts,
		    Onnx__TensorProto ***outs, char *why, size_t why_len)
{
	Onnx__ModelProto *mp = p->m->proto;
	struct qd_model *tm = qd_model_new(mp->has_ir_version ? mp->ir_version : 8,
					   QD_MAX(qd_model_opset(p->m, ""), 1));
	Onnx__TensorProto **inits = calloc(n->n_input + 1, sizeof *inits);
	Onnx__NodeProto *nodes[1] = { n };
	Onnx__TensorProto **res = calloc(n->n_output + 1, sizeof *res);
	struct qd_engine *e = NULL;
	struct qd_tensor *o = NULL;
	size_t n_o = 0, total = 0;
	struct qd_err er = { 0 };
	int rc = 0;
	if (!tm || !inits || !res) {
		rc = -QD_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < mp->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *op = mp->opset_import[i];
		if (op->domain && *op->domain && strcmp(op->domain, "ai.onnx") &&
		    qd_model_set_opset(tm, op->domain, op->version)) {
			rc = -QD_ENOMEM;
			goto out;
		}
	}
	Onnx__GraphProto *tg = tm->proto->graph;
	size_t ni = 0;
	for (size_t k = 0; k < n->n_input; k++) {
		if (!*n->input[k])
			continue;
		Onnx__TensorProto *t = p->g->initializer[*qd_namemap_get(consts, n->input[k])];
		bool dup = false;
		for (size_t j = 0; j < ni; j++)
			dup |= inits[j] == t;
		if (!dup)
			inits[ni++] = t;
	}
	for (size_t k = 0; k < n->n_output; k++) {
		if (!*n->output[k])
			continue;
		Onnx__ValueInfoProto *v = qd_value_info_new(n->output[k], 0, NULL, 0);
		void **no = v ? realloc(tg->output, (tg->n_output + 1) * sizeof *tg->output) : NULL;
		if (!no) {
			if (v)
				protobuf_c_message_free_unpacked(&v->base, NULL);
			rc = -QD_ENOMEM;
			goto out;
		}
		tg->output = (Onnx__ValueInfoProto **)no;
		tg->output[tg->n_output++] = v;
	}
	/* borrowed for the run, detached before tm is freed */
	tg->node = nodes;
	tg->n_node = 1;
	tg->initializer = inits;
	tg->n_initializer = ni;
	struct qd_engine_opts eo = { .threads = p->o->threads, .max_tensor_bytes = p->max_bytes };
	if (qd_engine_load(tm, &eo, &e, &er) || qd_engine_run(e, NULL, 0, &o, &n_o, NULL, &er)) {
		snprintf(why, why_len, "%s", er.msg);
		rc = 1;
		goto detach;
	}
	for (size_t i = 0; i < n_o; i++)
		total += o[i].nbytes;
	if (total > p->max_bytes) {
		snprintf(why, why_len, "outputs of %zu bytes exceed max_folded_bytes %zu", total,
			 p->max_bytes);
		rc = 1;
		goto detach;
	}
	size_t oi = 0;
	for (size_t k = 0; k < n->n_output && !rc; k++) {
		if (!*n->output[k])
			continue;
		const struct qd_tensor *t = &o[oi++];
		if (!qd_dtype_size(t->dtype)) {
			snprintf(why, why_len, "output '%s' has dtype %s", n->output[k],
				 qd_dtype_name(t->dtype));
			rc = 1;
			break;
		}
		if (!(res[k] = qd_tensor_new(n->output[k], t->dtype, t->dims, (size_t)t->ndim, t->data,
					     t->nbytes)))
			rc = -QD_ENOMEM;
	}
detach:
	tg->node = NULL;
	tg->n_node = 0;
	tg->initializer = NULL;
	tg->n_initializer = 0;
out:
	qd_engine_free(e);
	qd_tensors_release(o, n_o);
	qd_model_free(tm);
	free(inits);
	if (rc) {
		for (size_t k = 0; res && k < n->n_output; k++)
			qd_tensor_free(res[k]);
		free(res);
		res = NULL;
	}
	*outs = res;
	return rc;
}

static int fold_constants(struct pp *p, long *folded)
{
	Onnx__GraphProto *g = p->g;
	struct qd_namemap consts = { 0 };
	bool *drop = calloc(g->n_node + 1, sizeof *drop);
	long skipped = 0;
	int rc = 0;
	if (!drop || build_consts(p, &consts)) {
		rc = oom(p, "constant folding");
		goto out;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!foldable(n, &consts))
			continue;
		Onnx__TensorProto **outs = NULL;
		char why[600] = "";
		int r = fold_one(p, n, &consts, &outs, why, sizeof why);
		if (r < 0) {
			rc = oom(p, "constant folding");
			goto out;
		}
		if (r > 0) {
			skipped++;
			plog(p, QD_LOG_DEBUG, "preprocess: node '%s' (%s) not folded: %s",
			     n->name ? n->name : "", n->op_type, why);
			continue;
		}
		for (size_t k = 0; k < n->n_output; k++) {
			if (!outs[k])
				continue;
			if (add_initializer(p, outs[k])) {
				for (size_t j = k; j < n->n_output; j++)
					qd_tensor_free(outs[j]);
				free(outs);
				rc = oom(p, "constant folding");
				goto out;
			}
			if (qd_namemap_put(&consts, outs[k]->name, (long)g->n_initializer - 1)) {
				for (size_t j = k + 1; j < n->n_output; j++)
					qd_tensor_free(outs[j]);
				free(outs);
				rc = oom(p, "constant folding");
				goto out;
			}
		}
		free(outs);
		drop[i] = true;
		(*folded)++;
	}
	if (*folded)
		qd_graph_remove_nodes(g, drop);
	if (skipped)
		plog(p, QD_LOG_INFO, "preprocess: %ld constant nodes left unfolded (engine could not "
		     "run them or outputs too large)", skipped);
out:
	free(drop);
	qd_namemap_free(&consts);
	return rc;
}

/* ---- 3. BatchNormalization into Conv / ConvTranspose / Gemm ---- */
struct bn_ctx {
	struct pp *p;
	struct qd_namemap uses, consts, prod, names;
};

/* float32 values of constant initializer name with exactly count elements, new. */
static float *const_floats(struct bn_ctx *c, const char *name, int64_t count, bool need_f32,
			   const Onnx__TensorProto **tp)
{
	long *ix = name && *name ? qd_namemap_get(&c->consts, name) : NULL;
	if (!ix)
		return NULL;
	const Onnx__TensorProto *t = c->p->g->initializer[*ix];
	if (need_f32 && t->data_type != QD_DT_FLOAT)
		return NULL;
	float *v = NULL;
	int64_t n = 0;
	struct qd_err er;
	if (qd_tensor_to_float(t, &v, &n, &er))
		return NULL;
	if (count >= 0 && n != count) {
		free(v);
		return NULL;
	}
	if (tp)
		*tp = t;
	return v;
}

static char *fresh_name(struct bn_ctx *c, const char *base)
{
	char *s = qd_strdup(base);
	for (long k = 1; s && qd_namemap_get(&c->names, s); k++) {
		free(s);
		s = qd_asprintf("%s_%ld", base, k);
	}
	if (s && qd_namemap_put(&c->names, s, 1)) {
		free(s);
		return NULL;
	}
	return s;
}

/* Puts data as input idx of P: in place when P is the only user of the old initializer,
 * else as a new initializer (base name + suffix). The node may get a new input slot. */
static int set_weight(struct bn_ctx *c, Onnx__NodeProto *P, size_t idx, const char *suffix,
		      const float *data, const int64_t *dims, size_t ndims, int64_t count)
{
	Onnx__GraphProto *g = c->p->g;
	const char *old = idx < P->n_input && *P->input[idx] ? P->input[idx] : NULL;
	long *ix = old ? qd_namemap_get(&c->consts, old) : NULL;
	long *u = old ? qd_namemap_get(&c->uses, old) : NULL;
	if (ix && u && *u == 1) {
		Onnx__TensorProto *t = qd_tensor_new(old, QD_DT_FLOAT, dims, ndims, data,
						     (size_t)count * sizeof(float));
		if (!t)
			return -QD_ENOMEM;
		qd_tensor_free(g->initializer[*ix]);
		g->initializer[*ix] = t;
		return 0;
	}
	char *base = qd_asprintf("%s%s", old ? old : (P->name && *P->name ? P->name : P->output[0]),
				 suffix);
	char *nm = base ? fresh_name(c, base) : NULL;
	free(base);
	if (!nm)
		return -QD_ENOMEM;
	Onnx__TensorProto *t = qd_tensor_new(nm, QD_DT_FLOAT, dims, ndims, data,
					     (size_t)count * sizeof(float));
	if (!t || add_initializer(c->p, t)) {
		qd_tensor_free(t);
		free(nm);
		return -QD_ENOMEM;
	}
	if (qd_namemap_put(&c->consts, nm, (long)g->n_initializer - 1) || qd_namemap_add(&c->uses, nm, 1)) {
		free(nm);
		return -QD_ENOMEM;
	}
	if (idx >= P->n_input) {
		char **ni = realloc(P->input, (idx + 1) * sizeof *ni);
		if (!ni) {
			free(nm);
			return -QD_ENOMEM;
		}
		P->input = ni;
		while (P->n_input < idx) {
			if (!(P->input[P->n_input] = strdup(""))) {
				free(nm);
				return -QD_ENOMEM;
			}
			P->n_input++;
		}
		P->input[P->n_input++] = nm;
	} else {
		if (old)
			qd_namemap_add(&c->uses, old, -1);
		free(P->input[idx]);
		P->input[idx] = nm;
	}
	return 0;
}

/* Folds BN node bn into its producer P; 1 if not applicable, 0 done, < 0 error. */
static int fold_bn_one(struct bn_ctx *c, Onnx__NodeProto *bn)
{
	struct pp *p = c->p;
	Onnx__GraphProto *g = p->g;
	int64_t opset = qd_model_opset(p->m, "");
	if (bn->n_input < 5 || bn->n_output < 1 || !*bn->output[0] || !*bn->input[0])
		return 1;
	if (qd_node_attr_int(bn, "training_mode", 0) || (opset < 9 && !qd_node_attr_int(bn, "spatial", 1)))
		return 1;
	for (size_t k = 1; k < bn->n_output; k++) {
		long *u = *bn->output[k] ? qd_namemap_get(&c->uses, bn->output[k]) : NULL;
		if (u && *u)
			return 1;
	}
	const char *X = bn->input[0];
	long *pi = qd_namemap_get(&c->prod, X), *xu = qd_namemap_get(&c->uses, X);
	if (!pi || !xu || *xu != 1)
		return 1;
	Onnx__NodeProto *P = g->node[*pi];
	int kind = is_ai_onnx(P, "Conv") ? 0 : is_ai_onnx(P, "ConvTranspose") ? 1 :
		   is_ai_onnx(P, "Gemm") ? 2 : -1;
	if (kind < 0 || P->n_output != 1 || strcmp(P->output[0], X) || P->n_input < 2)
		return 1;
	if (kind == 2 && opset < 7)
		return 1;
	const Onnx__TensorProto *wt = NULL;
	float *W = const_floats(c, P->input[1], -1, true, &wt);
	float *gam = NULL, *bet = NULL, *mean = NULL, *var = NULL, *B = NULL, *nb = NULL;
	double *s = NULL, *sh = NULL;
	int rc = 1;
	if (!W || wt->n_dims < 2)
		goto out;
	int64_t nw = qd_tensor_numel(wt), C;
	int64_t group = qd_node_attr_int(P, "group", 1);
	int64_t transB = qd_node_attr_int(P, "transB", 0);
	if (kind == 0)
		C = wt->dims[0];
	else if (kind == 1)
		C = group > 0 && wt->dims[0] % group == 0 ? wt->dims[1] * group : -1;
	else
		C = wt->n_dims == 2 ? wt->dims[transB ? 0 : 1] : -1;
	if (C <= 0 || nw <= 0)
		goto out;
	if (!(gam = const_floats(c, bn->input[1], C, false, NULL)) ||
	    !(bet = const_floats(c, bn->input[2], C, false, NULL)) ||
	    !(mean = const_floats(c, bn->input[3], C, false, NULL)) ||
	    !(var = const_floats(c, bn->input[4], C, false, NULL)))
		goto out;
	/* bias / C of the producer */
	const char *bname = kind == 2 ? (P->n_input > 2 ? P->input[2] : "") : (P->n_input > 2 ? P->input[2] : "");
	const Onnx__TensorProto *bt = NULL;
	double gbeta = kind == 2 ? qd_node_attr_float(P, "beta", 1.0f) : 1.0;
	bool has_b = *bname != 0;
	if (has_b) {
		if (!(B = const_floats(c, bname, -1, true, &bt)))
			goto out;
		int64_t nbv = qd_tensor_numel(bt);
		if (kind != 2 && nbv != C)
			goto out;
		/* Gemm C must broadcast along the rows: a scalar, [N] or [1, N] */
		if (kind == 2 && !(nbv == 1 || (nbv == C && bt->n_dims >= 1 && bt->dims[bt->n_dims - 1] == C)))
			goto out;
	}
	rc = -QD_ENOMEM;
	s = malloc(C * sizeof *s);
	sh = malloc(C * sizeof *sh);
	nb = malloc(C * sizeof *nb);
	if (!s || !sh || !nb)
		goto out;
	double eps = qd_node_attr_float(bn, "epsilon", 1e-5f);
	for (int64_t k = 0; k < C; k++) {
		s[k] = (double)gam[k] / sqrt((double)var[k] + eps);
		sh[k] = (double)bet[k] - (double)mean[k] * s[k];
	}
	/* weights */
	if (kind == 0) {
		int64_t per = nw / C;
		for (int64_t i = 0; i < nw; i++)
			W[i] = (float)((double)W[i] * s[i / per]);
	} else if (kind == 1) {
		int64_t cin = wt->dims[0], mg = wt->dims[1], per = nw / (cin * mg), cg = cin / group;
		for (int64_t ci = 0; ci < cin; ci++)
			for (int64_t j = 0; j < mg; j++) {
				double f = s[(ci / cg) * mg + j];
				float *w = W + (ci * mg + j) * per;
				for (int64_t q = 0; q < per; q++)
					w[q] = (float)((double)w[q] * f);
			}
	} else {
		int64_t K = nw / C;
		for (int64_t k = 0; k < K; k++)
			for (int64_t n = 0; n < C; n++) {
				float *w = transB ? &W[n * K + k] : &W[k * C + n];
				*w = (float)((double)*w * s[n]);
			}
	}
	/* bias */
	bool set_beta = false;
	for (int64_t k = 0; k < C; k++) {
		if (kind != 2)
			nb[k] = (float)((has_b ? (double)B[k] * s[k] : 0.0) + sh[k]);
		else if (has_b && gbeta != 0.0)
			nb[k] = (float)((double)B[qd_tensor_numel(bt) == 1 ? 0 : k] * s[k] + sh[k] / gbeta);
		else {
			nb[k] = (float)sh[k];
			set_beta = true;
		}
	}
	int64_t bdim = C;
	if (set_weight(c, P, 1, "_bn_folded", W, wt->dims, wt->n_dims, nw) ||
	    set_weight(c, P, 2, has_b ? "_bn_folded" : "_bn_bias", nb, &bdim, 1, C) ||
	    (set_beta && qd_node_set_attr_float(P, "beta", 1.0f)))
		goto out;
	/* P now writes BN's output; BN goes */
	char *y = strdup(bn->output[0]);
	if (!y)
		goto out;
	drop_value_info(g, X);
	qd_namemap_put(&c->prod, y, *pi);
	free(P->output[0]);
	P->output[0] = y;
	node_uses(bn, &c->uses, -1);
	rc = 0;
out:
	free(W);
	free(gam);
	free(bet);
	free(mean);
	free(var);
	free(B);
	free(nb);
	free(s);
	free(sh);
	return rc;
}

static int fold_batchnorms(struct pp *p, long *folded)
{
	Onnx__GraphProto *g = p->g;
	struct bn_ctx c = { .p = p };
	bool *drop = calloc(g->n_node + 1, sizeof *drop);
	int rc = 0;
	if (!drop || build_uses(g, &c.uses) || build_consts(p, &c.consts))
		goto nomem;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && qd_namemap_put(&c.names, g->initializer[i]->name, 1))
			goto nomem;
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && qd_namemap_put(&c.names, g->input[i]->name, 1))
			goto nomem;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t k = 0; k < n->n_output; k++)
			if (*n->output[k] && (qd_namemap_put(&c.prod, n->output[k], (long)i) ||
					      qd_namemap_put(&c.names, n->output[k], 1)))
				goto nomem;
		if (node_uses(n, &c.names, 0))
			goto nomem;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!is_ai_onnx(n, "BatchNormalization"))
			continue;
		int r = fold_bn_one(&c, n);
		if (r < 0)
			goto nomem;
		if (r == 0) {
			drop[i] = true;
			(*folded)++;
		}
	}
	if (*folded)
		qd_graph_remove_nodes(g, drop);
	goto out;
nomem:
	rc = oom(p, "batchnorm folding");
out:
	free(drop);
	qd_namemap_free(&c.uses);
	qd_namemap_free(&c.consts);
	qd_namemap_free(&c.prod);
	qd_namemap_free(&c.names);
	return rc;
}

/* ---- 4. dead nodes (reverse topological order; the graph is sorted) ---- */
static int remove_dead(struct pp *p, long *removed)
{
	Onnx__GraphProto *g = p->g;
	struct qd_namemap uses = { 0 };
	bool *drop = calloc(g->n_node + 1, sizeof *drop);
	int rc = 0;
	if (!drop || build_uses(g, &uses)) {
		rc = oom(p, "dead node removal");
		goto out;
	}
	for (size_t i = g->n_node; i-- > 0;) {
		Onnx__NodeProto *n = g->node[i];
		bool used = false;
		for (size_t k = 0; k < n->n_output && !used; k++) {
			long *u = *n->output[k] ? qd_namemap_get(&uses, n->output[k]) : NULL;
			used = u && *u > 0;
		}
		if (used)
			continue;
		drop[i] = true;
		(*removed)++;
		if (node_uses(n, &uses, -1)) {
			rc = oom(p, "dead node removal");
			goto out;
		}
	}
	if (*removed)
		qd_graph_remove_nodes(g, drop);
out:
	free(drop);
	qd_namemap_free(&uses);
	return rc;
}

/* ---- 5. type / shape inference ---- */
struct obs {
	int dtype, ndim[2];
	int64_t dims[2][QD_MAX_DIMS];
};

struct infer {
	struct pp *p;
	struct qd_namemap idx;     /* main-graph node output name -> index into o[] */
	const Onnx__NodeProto **prod;   /* producer of o[i] */
	struct obs *o;
	bool *seen[2];
	size_t n_vals;
	int run;
};

static void infer_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct infer *in = ud;
	long *ix = t->name ? qd_namemap_get(&in->idx, t->name) : NULL;
	if (!ix || in->prod[*ix] != node)
		return;   /* a subgraph's tensor */
	struct obs *o = &in->o[*ix];
	o->dtype = t->dtype;
	o->ndim[in->run] = t->ndim;
	memcpy(o->dims[in->run], t->dims, sizeof(int64_t) * (size_t)t->ndim);
	in->seen[in->run][*ix] = true;
}

/* Symbolic axes of a graph input: dims without a positive value. */
static bool input_dim_symbolic(const Onnx__TensorShapeProto__Dimension *d)
{
	return d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || d->dim_value <= 0;
}

static const Onnx__TensorShapeProto *vi_shape(const Onnx__ValueInfoProto *vi)
{
	if (!vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !vi->type->tensor_type)
		return NULL;
	return vi->type->tensor_type->shape;
}

/* Fills t with generated values of dtype (deterministic LCG; integers 0). */
static int gen_input(struct qd_tensor *t, const char *name, int dtype, int ndim, const int64_t *dims,
		     uint32_t *seed)
{
	if (!qd_dtype_size(dtype))
		return -QD_EUNSUPPORTED;
	int rc = qd_tensor_alloc(t, name, dtype, ndim, dims);
	if (rc)
		return rc;
	int64_t n = qd_tensor_count(t);
	for (int64_t i = 0; i < n; i++) {
		*seed = *seed * 1664525u + 1013904223u;
		double r = (double)(*seed >> 8) / (double)(1u << 24) * 2.0 - 1.0;
		if (dtype == QD_DT_FLOAT)
			((float *)t->data)[i] = (float)r;
		else if (dtype == QD_DT_DOUBLE)
			((double *)t->data)[i] = r;
		else if (dtype == QD_DT_FLOAT16 || dtype == QD_DT_BFLOAT16) {
			static const uint16_t h[8] = { 0x3c00, 0xb800, 0x3400, 0xbc00, 0x3800, 0xb400, 0x0000, 0x3a00 };
			static const uint16_t bf[8] = { 0x3f80, 0xbf00, 0x3e80, 0xbf80, 0x3f00, 0xbe80, 0x0000, 0x3f40 };
			((uint16_t *)t->data)[i] = (dtype == QD_DT_FLOAT16 ? h : bf)[(*seed >> 12) & 7];
		}
	}
	return 0;
}

/* Copy of s whose axes in grow[] get size new[k] (values repeat along the axis). */
static int tile_input(struct qd_tensor *t, const struct qd_tensor *s, const int64_t *nd)
{
	int rc = qd_tensor_alloc(t, s->name, s->dtype, s->ndim, nd);
	if (rc)
		return rc;
	size_t es = qd_dtype_size(s->dtype);
	int64_t n = qd_tensor_count(t), idx[QD_MAX_DIMS] = { 0 };
	if (!es || qd_tensor_count(s) == 0)
		return 0;
	for (int64_t i = 0; i < n; i++) {
		int64_t src = 0;
		for (int k = 0; k < s->ndim; k++)
			src = src * s->dims[k] + idx[k] % s->dims[k];
		memcpy((char *)t->data + i * es, (const char *)s->data + src * es, es);
		for (int k = s->ndim - 1; k >= 0; k--) {
			if (++idx[k] < nd[k])
				break;
			idx[k] = 0;
		}
	}
	return 0;
}

/* Sizes for symbolic input dims without a sample, per attempt: {axis 0 in run 0, axis 0
 * in run 1, other axes in run 0, other axes in run 1}. The two runs differ by 2x, so a dim
 * divided by a stride (up to the size itself) still differs; the first attempt gives
 * batch-like axis 0 a small size and spatial / sequence axes room to downsample; the
 * others are for models that need equal or small sizes. */
static const int64_t sym_sizes[][4] = { { 1, 2, 64, 128 }, { 1, 2, 1, 2 }, { 32, 64, 32, 64 } };

/* Builds the inputs of run r (0, 1): symbolic dims from sym_sizes[attempt], or the sample
 * (run 0) and the sample tiled to twice its size along its symbolic axes (run 1).
 * Returns 0, > 0 when the inputs cannot be built (why), < 0 out of memory. */
static int make_inputs(struct infer *in, struct qd_engine *e, size_t attempt, int r,
		       struct qd_tensor **out, size_t *n_out, char *why, size_t why_len)
{
	const struct qd_preprocess_opts *o = in->p->o;
	size_t n = qd_engine_n_inputs(e);
	struct qd_tensor *t = calloc(n + 1, sizeof *t);
	uint32_t seed = 12345;
	if (!t)
		return -QD_ENOMEM;
	*out = t;
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		const Onnx__ValueInfoProto *vi = qd_engine_input(e, i);
		const Onnx__TensorShapeProto *sh = vi_shape(vi);
		const char *nm = vi->name ? vi->name : "";
		int64_t dims[QD_MAX_DIMS];
		const struct qd_tensor *s = NULL;
		for (size_t k = 0; o->sample && k < o->n_sample; k++)
			if (o->sample[k].name && !strcmp(o->sample[k].name, nm))
				s = &o->sample[k];
		if (o->sample && !s) {
			snprintf(why, why_len, "the sample has no input '%s'", nm);
			return 1;
		}
		if (s) {
			if (s->ndim > QD_MAX_DIMS)
				return 1;
			for (int k = 0; k < s->ndim; k++) {
				bool sym = !sh || (size_t)k >= sh->n_dim || input_dim_symbolic(sh->dim[k]);
				dims[k] = sym && r ? 2 * s->dims[k] : s->dims[k];
			}
			if (tile_input(&t[i], s, dims))
				return -QD_ENOMEM;
			continue;
		}
		if (!sh || sh->n_dim > QD_MAX_DIMS) {
			snprintf(why, why_len, "input '%s' has no shape and there is no sample", nm);
			return 1;
		}
		for (size_t k = 0; k < sh->n_dim; k++)
			dims[k] = input_dim_symbolic(sh->dim[k]) ? sym_sizes[attempt][(k ? 2 : 0) + r] :
				  sh->dim[k]->dim_value;
		int dt = vi->type->tensor_type->has_elem_type ? vi->type->tensor_type->elem_type : 0;
		int rc = gen_input(&t[i], nm, dt, (int)sh->n_dim, dims, &seed);
		if (rc == -QD_ENOMEM)
			return rc;
		if (rc) {
			snprintf(why, why_len, "input '%s' has dtype %s: no generator", nm, qd_dtype_name(dt));
			return 1;
		}
	}
	return 0;
}

static bool has_symbolic_inputs(struct qd_engine *e, const struct qd_preprocess_opts *o)
{
	for (size_t i = 0; i < qd_engine_n_inputs(e); i++) {
		const Onnx__TensorShapeProto *sh = vi_shape(qd_engine_input(e, i));
		if (!sh)
			return true;
		for (size_t k = 0; k < sh->n_dim; k++)
			if (input_dim_symbolic(sh->dim[k]))
				return true;
	}
	(void)o;
	return false;
}

/* Name for a dim seen as (a, b) in the two runs: the one graph-input dim_param seen with
 * the same pair, else NULL. */
static const char *dim_name(struct qd_engine *e, const struct qd_tensor *r0, const struct qd_tensor *r1,
			    size_t n, int64_t a, int64_t b)
{
	const char *found = NULL;
	for (size_t i = 0; i < n && i < qd_engine_n_inputs(e); i++) {
		const Onnx__TensorShapeProto *sh = vi_shape(qd_engine_input(e, i));
		for (size_t k = 0; sh && k < sh->n_dim && (int)k < r0[i].ndim; k++) {
			const Onnx__TensorShapeProto__Dimension *d = sh->dim[k];
			if (!input_dim_symbolic(d) || r0[i].dims[k] != a || r1[i].dims[k] != b)
				continue;
			if (d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ||
			    !d->dim_param || !*d->dim_param)
				return NULL;
			if (found && strcmp(found, d->dim_param))
				return NULL;
			found = d->dim_param;
		}
	}
	return found;
}

static int set_dim_param(Onnx__TensorShapeProto__Dimension *d, const char *name)
{
	char *s = strdup(name);
	if (!s)
		return -QD_ENOMEM;
	d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
	d->dim_param = s;
	return 0;
}

/* One run (attempt, r) into observation slot r. 0 ok, 1 the run failed (why), 2 the
 * inputs cannot be made (why), < 0 out of memory. */
static int run_once(struct infer *in, struct qd_engine *e, size_t attempt, int r, struct qd_tensor **inp,
		    size_t *n_inp, char *why, size_t why_len)
{
	struct qd_err er = { 0 };
	qd_tensors_release(*inp, *n_inp);
	*inp = NULL;
	*n_inp = 0;
	int mr = make_inputs(in, e, attempt, r, inp, n_inp, why, why_len);
	if (mr)
		return mr < 0 ? mr : 2;
	struct qd_tensor *outs = NULL;
	size_t n_outs = 0;
	in->run = r;
	memset(in->seen[r], 0, in->n_vals * sizeof(bool));
	int rc = qd_engine_run(e, *inp, *n_inp, &outs, &n_outs, NULL, &er);
	qd_tensors_release(outs, n_outs);
	if (rc) {
		snprintf(why, why_len, "%s", er.msg);
		plog(in->p, QD_LOG_DEBUG, "preprocess: type inference run %d (attempt %zu) failed: %s", r,
		     attempt, er.msg);
		memset(in->seen[r], 0, in->n_vals * sizeof(bool));
		return 1;
	}
	return 0;
}

static bool has_any_subgraph(const Onnx__GraphProto *g)
{
	for (size_t i = 0; i < g->n_node; i++)
		if (has_subgraph(g->node[i]))
			return true;
	return false;
}

static int append_value_info(Onnx__GraphProto *g, Onnx__ValueInfoProto *v)
{
	Onnx__ValueInfoProto **nv = realloc(g->value_info, (g->n_value_info + 1) * sizeof *nv);
	if (!nv)
		return -QD_ENOMEM;
	g->value_info = nv;
	nv[g->n_value_info++] = v;
	return 0;
}

static int infer_types(struct pp *p, long *typed)
{
	Onnx__GraphProto *g = p->g;
	struct infer in = { .p = p };
	struct qd_engine *e = NULL;
	struct qd_err er = { 0 };
	struct qd_tensor *inp[2] = { NULL, NULL };
	size_t n_inp[2] = { 0, 0 };
	size_t n_vals = 0;
	long n_sym = 0, unk = 0, n_missing = 0;
	bool ok[2] = { false, false };
	int rc = 0;
	for (size_t i = 0; i < g->n_node; i++)
		n_vals += g->node[i]->n_output;
	in.prod = calloc(n_vals + 1, sizeof *in.prod);
	in.o = calloc(n_vals + 1, sizeof *in.o);
	in.seen[0] = calloc(n_vals + 1, sizeof(bool));
	in.seen[1] = calloc(n_vals + 1, sizeof(bool));
	in.n_vals = n_vals;
	if (!in.prod || !in.o || !in.seen[0] || !in.seen[1])
		goto nomem;
	size_t nv = 0;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++) {
			const char *nm = g->node[i]->output[k];
			if (!*nm)
				continue;
			if (qd_namemap_put(&in.idx, nm, (long)nv))
				goto nomem;
			in.prod[nv++] = g->node[i];
		}
	struct qd_engine_opts eo = { .threads = p->o->threads };
	if (qd_engine_load(p->m, &eo, &e, &er)) {
		rc = qd_err_set(p->err, er.code ? er.code : QD_EINTERNAL, er.field,
				"preprocess: type inference cannot load the model: %s", er.msg);
		goto out;
	}
	qd_engine_set_hook(e, infer_hook, &in);
	bool sym = has_symbolic_inputs(e, p->o);
	char why[512] = "";
	size_t nb = p->o->sample ? 1 : QD_ARRAY_LEN(sym_sizes);
	long first_ok = -1;
	for (size_t bi = 0; bi < nb && !ok[1]; bi++) {
		int r0 = run_once(&in, e, bi, 0, &inp[0], &n_inp[0], why, sizeof why);
		if (r0 < 0)
			goto nomem;
		if (r0 == 2)
			goto bad_inputs;
		if (r0)
			continue;
		if (first_ok < 0)
			first_ok = (long)bi;
		ok[0] = true;
		if (!sym)
			break;
		int r1 = run_once(&in, e, bi, 1, &inp[1], &n_inp[1], why, sizeof why);
		if (r1 < 0)
			goto nomem;
		if (r1 == 2)
			goto bad_inputs;
		ok[1] = r1 == 0;
	}
	if (ok[0] && sym && !ok[1] && nb > 1 && first_ok != (long)nb - 1) {
		/* the last attempt's first run failed: redo the first one that worked */
		int r0 = run_once(&in, e, (size_t)first_ok, 0, &inp[0], &n_inp[0], why, sizeof why);
		if (r0 < 0)
			goto nomem;
		ok[0] = r0 == 0;
	}
	if (!ok[0]) {
		rc = qd_err_set(p->err, QD_EMODEL, "model", "preprocess: type inference cannot run the model: %s",
				why);
		goto out;
	}
	if (sym && !ok[1])
		plog(p, QD_LOG_WARN, "preprocess: no second run with other symbolic sizes succeeded (%s): "
		     "value_info gets element types and ranks only", why);
	/* value_info: rebuilt from the observations; entries of values not observed are kept */
	size_t w = 0;
	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *v = g->value_info[i];
		long *ix = v->name ? qd_namemap_get(&in.idx, v->name) : NULL;
		if (ix && !in.seen[0][*ix])
			g->value_info[w++] = v;
		else
			protobuf_c_message_free_unpacked(&v->base, NULL);
	}
	g->n_value_info = w;
	struct qd_namemap outs = { 0 };
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && qd_namemap_put(&outs, g->output[i]->name, (long)i)) {
			qd_namemap_free(&outs);
			goto nomem;
		}
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++) {
			const char *nm = g->node[i]->output[k];
			long *ix = *nm ? qd_namemap_get(&in.idx, nm) : NULL;
			if (!ix)
				continue;
			if (!in.seen[0][*ix]) {
				n_missing++;
				continue;
			}
			const struct obs *ob = &in.o[*ix];
			bool both = sym && in.seen[1][*ix] && ob->ndim[1] == ob->ndim[0];
			int64_t dims[QD_MAX_DIMS];
			for (int d = 0; d < ob->ndim[0]; d++)
				dims[d] = !sym || (both && ob->dims[0][d] == ob->dims[1][d]) ? ob->dims[0][d] : -1;
			long *go = qd_namemap_get(&outs, nm);
			Onnx__ValueInfoProto *v;
			if (go) {
				/* a graph output: fill in what its declaration lacks */
				Onnx__ValueInfoProto *gv = g->output[*go];
				const Onnx__TypeProto *tp = gv->type;
				bool typed_ok = tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
						tp->tensor_type && tp->tensor_type->has_elem_type &&
						tp->tensor_type->elem_type && tp->tensor_type->shape;
				(*typed)++;
				if (typed_ok)
					continue;
				v = qd_value_info_new(nm, ob->dtype, dims, (size_t)ob->ndim[0]);
				if (!v) {
					qd_namemap_free(&outs);
					goto nomem;
				}
				if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
				    tp->tensor_type->shape) {
					/* keep the declared shape, set the type */
					protobuf_c_message_free_unpacked(&v->base, NULL);
					gv->type->tensor_type->has_elem_type = 1;
					gv->type->tensor_type->elem_type = ob->dtype;
					continue;
				}
				free(v->name);
				v->name = gv->name;
				v->doc_string = gv->doc_string;
				gv->name = NULL;
				gv->doc_string = NULL;
				protobuf_c_message_free_unpacked(&gv->base, NULL);
				g->output[*go] = v;
			} else {
				v = qd_value_info_new(nm, ob->dtype, dims, (size_t)ob->ndim[0]);
				if (!v || append_value_info(g, v)) {
					if (v)
						protobuf_c_message_free_unpacked(&v->base, NULL);
					qd_namemap_free(&outs);
					goto nomem;
				}
				(*typed)++;
			}
			if (!both)
				continue;
			Onnx__TensorShapeProto *sh = v->type->tensor_type->shape;
			for (int d = 0; d < ob->ndim[0]; d++) {
				if (ob->dims[0][d] == ob->dims[1][d])
					continue;
				const char *dn = dim_name(e, inp[0], inp[1], n_inp[0], ob->dims[0][d], ob->dims[1][d]);
				char buf[32];
				if (!dn) {
					snprintf(buf, sizeof buf, "unk__%ld", unk++);
					dn = buf;
				}
				if (set_dim_param(sh->dim[d], dn)) {
					qd_namemap_free(&outs);
					goto nomem;
				}
				n_sym++;
			}
		}
	qd_namemap_free(&outs);
	plog(p, QD_LOG_INFO, "preprocess: typed %ld values (%ld symbolic dims)%s%s", *typed, n_sym,
	     n_missing ? ", some outputs were never produced" : "",
	     has_any_subgraph(g) ? "; tensors inside subgraphs are not typed" : "");
	goto out;
bad_inputs:
	rc = qd_err_set(p->err, QD_EINVAL, "sample", "preprocess: type inference: %s", why);
	goto out;
nomem:
	rc = oom(p, "type inference");
out:
	qd_engine_free(e);
	qd_tensors_release(inp[0], n_inp[0]);
	qd_tensors_release(inp[1], n_inp[1]);
	qd_namemap_free(&in.idx);
	free(in.prod);
	free(in.o);
	free(in.seen[0]);
	free(in.seen[1]);
	return rc;
}

/* ---- driver ---- */
int qd_preprocess(struct qd_model *m, const struct qd_preprocess_opts *o, json_t *stats,
		  struct qd_err *err)
{
	struct qd_err tmp;
	struct qd_preprocess_opts dflt = { .fold_constants = true, .fold_batchnorm = true,
					   .infer_types = true };
	if (!err)
		err = &tmp;
	if (!o)
		o = &dflt;
	if (!m || !m->proto || !m->proto->graph)
		return qd_err_set(err, QD_EINVAL, "model", "preprocess: model has no graph");
	struct pp p = { .m = m, .g = m->proto->graph, .o = o, .err = err,
			.max_bytes = o->max_folded_bytes ? o->max_folded_bytes : (size_t)64 << 20 };
	long folded = 0, bns = 0, removed = 0, typed = 0;
	int removed_inits = 0;
	int consts = qd_model_normalize_constants(m, err);
	if (consts < 0)
		return consts;
	plog(&p, QD_LOG_INFO, "preprocess: %d Constant nodes turned into initializers", consts);
	int rc = qd_graph_toposort(p.g, err);
	if (rc)
		return rc;
	if (o->fold_constants) {
		if ((rc = fold_constants(&p, &folded)))
			return rc;
		plog(&p, QD_LOG_INFO, "preprocess: folded %ld constant nodes into initializers", folded);
	}
	if (o->fold_batchnorm) {
		if ((rc = fold_batchnorms(&p, &bns)))
			return rc;
		plog(&p, QD_LOG_INFO, "preprocess: folded %ld BatchNormalization nodes into Conv / Gemm", bns);
	}
	if ((rc = remove_dead(&p, &removed)))
		return rc;
	if ((removed_inits = qd_graph_remove_unused_initializers(p.g)) < 0)
		return oom(&p, "unused initializers");
	plog(&p, QD_LOG_INFO, "preprocess: removed %ld unused nodes and %d unused initializers", removed,
	     removed_inits);
	if (o->infer_types && (rc = infer_types(&p, &typed)))
		return rc;
	if ((rc = qd_graph_toposort(p.g, err)))
		return rc;
	if (stats) {
		json_object_set_new(stats, "constants_to_initializers", json_integer(consts));
		json_object_set_new(stats, "folded_nodes", json_integer(folded));
		json_object_set_new(stats, "folded_batchnorms", json_integer(bns));
		json_object_set_new(stats, "removed_nodes", json_integer(removed));
		json_object_set_new(stats, "removed_initializers", json_integer(removed_inits));
		json_object_set_new(stats, "typed_values", json_integer(typed));
	}
	return 0;
}
