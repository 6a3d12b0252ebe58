/* search/eval.c — evaluation plans (search/eval.h): the objectives a workflow asks for,
 * measured with quantd's executor on one candidate model against the float model, and
 * the goals checked against the float model's own values.
 *
 * DESIGN
 * - A plan is a list of metrics (Olive's {name, type, data_config, sub_types}); every
 *   sub_type is one objective ("<metric>-<sub_type>"). Without an evaluator the plan is
 *   quantd's default: fidelity against the float model (cosine_similarity,
 *   top1_agreement) on the held-out data config or seeded generated inputs, plus
 *   size_on_disk.
 * - One run of a model over one data source (a data config, or the generated inputs)
 *   feeds every accuracy and fidelity objective on that source: the float and the
 *   candidate model run batch by batch side by side; per output the pooled cosine, the
 *   worst batch's cosine, max / mean abs error, SNR and top-1 agreement accumulate, and
 *   the candidate's predictions are kept for the label metrics. The default source also
 *   yields metrics.json's "accuracy" section and, on held-out data, the activations with
 *   the lowest SNR (a hook on every node of both models, the first QD_EV_SNR_BATCHES
 *   batches).
 * - Latency and throughput time the candidate alone on the first batch of their source.
 * - An evaluation error that a model cannot help (an op the engine does not cover, a
 *   shape error on guessed input shapes) leaves the objectives it feeds absent (Olive:
 *   absent objectives are skipped) and the "accuracy" section "unavailable"; any other
 *   error (a limit, the user's own data not fitting) is returned and fails the job. */
#include "search/eval.h"
#include "passes/passes.h"
#include "passes/data_config.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "onnx/onnx_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define QD_EV_SEED 0x5eed1234u
#define QD_EV_SYM_BATCH 1     /* symbolic first dimension (batch) */
#define QD_EV_SYM_DIM 32      /* any other symbolic dimension (sequence, H, W) */
/* largest tensor the evaluation engine may create: an uploaded model (shapes from its
 * inputs, Expand/ConstantOfShape/Tile...) cannot make the daemon allocate more than this */
#define QD_EV_MAX_TENSOR_BYTES ((size_t)4 << 30)
#define QD_EV_SNR_BATCHES 16      /* batches whose activations are compared (SNR) */
#define QD_EV_SNR_BYTES ((size_t)1 << 30)   /* float activations kept per batch at most */
#define QD_EV_SNR_CAP 200.0       /* dB reported for identical tensors */

/* ---- plan ---- */

enum ev_type { EV_ACCURACY, EV_FIDELITY, EV_LATENCY, EV_THROUGHPUT, EV_SIZE };

enum ev_stat {
	ST_ACC, ST_F1, ST_PREC, ST_REC,                 /* against the dataset's labels */
	ST_TOP1, ST_COS, ST_MAXE, ST_MEANE, ST_SNR,     /* against the float model */
	ST_AVG, ST_MAX, ST_MIN, ST_P50, ST_P75, ST_P90, ST_P95, ST_P99, ST_P999,   /* timing */
	ST_BYTES,
};

struct ev_metric {
	char *name;
	enum ev_type type;
	json_t *dc;            /* data config reference (name or inline object); NULL = default */
	int warmup, repeat;    /* latency / throughput */
	double sleep;
};

struct ev_obj {            /* parallel to plan->obj */
	size_t metric;
	enum ev_stat stat;
};

struct ev_priv {
	struct ev_metric *m;
	size_t n_m;
	struct ev_obj *o;
	char *heldout;         /* the workflow's held-out data config, or NULL */
	json_t *io;            /* input_model.io_config (new), or NULL */
	bool is_default;
};

static void obj_clear(struct qd_objective *o)
{
	free(o->key);
	free(o->metric);
	free(o->sub_type);
	free(o->type);
	free(o->goal_type);
}

void qd_eval_plan_free(struct qd_eval_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_obj; i++)
		obj_clear(&p->obj[i]);
	free(p->obj);
	struct ev_priv *v = p->priv;
	if (v) {
		for (size_t i = 0; i < v->n_m; i++) {
			free(v->m[i].name);
			json_decref(v->m[i].dc);
		}
		free(v->m);
		free(v->o);
		free(v->heldout);
		json_decref(v->io);
		free(v);
	}
	free(p);
}

static const char *const type_names[] = {
	[EV_ACCURACY] = "accuracy", [EV_FIDELITY] = "fidelity", [EV_LATENCY] = "latency",
	[EV_THROUGHPUT] = "throughput", [EV_SIZE] = "size_on_disk",
};

/* Append a metric; returns its index or -1 (out of memory). */
static long plan_add_metric(struct qd_eval_plan *p, const char *name, enum ev_type type, const json_t *dc)
{
	struct ev_priv *v = p->priv;
	struct ev_metric *nm = realloc(v->m, (v->n_m + 1) * sizeof *nm);
	if (!nm)
		return -1;
	v->m = nm;
	struct ev_metric *m = &v->m[v->n_m];
	memset(m, 0, sizeof *m);
	if (!(m->name = strdup(name)))
		return -1;
	m->type = type;
	m->dc = dc ? json_incref((json_t *)dc) : NULL;
	m->warmup = 10;
	m->repeat = 20;
	return (long)v->n_m++;
}

static int plan_add_obj(struct qd_eval_plan *p, size_t metric, const char *sub, enum ev_stat st, bool hib,
			int priority)
{
	struct ev_priv *v = p->priv;
	struct qd_objective *no = realloc(p->obj, (p->n_obj + 1) * sizeof *no);
	if (!no)
		return -QD_ENOMEM;
	p->obj = no;
	struct ev_obj *nv = realloc(v->o, (p->n_obj + 1) * sizeof *nv);
	if (!nv)
		return -QD_ENOMEM;
	v->o = nv;
	struct qd_objective *o = &p->obj[p->n_obj];
	memset(o, 0, sizeof *o);
	o->metric = strdup(v->m[metric].name);
	o->sub_type = strdup(sub);
	o->type = strdup(type_names[v->m[metric].type]);
	o->key = qd_asprintf("%s-%s", v->m[metric].name, sub);
	o->higher_is_better = hib;
	o->priority = priority;
	v->o[p->n_obj] = (struct ev_obj){ .metric = metric, .stat = st };
	p->n_obj++;
	if (!o->metric || !o->sub_type || !o->type || !o->key)
		return -QD_ENOMEM;
	return 0;
}

/* The held-out data config: the first data config that no pass calibrates with (passes'
 * "data_config" names). NULL when there is none. Borrow. */
static const char *heldout_config(const json_t *workflow)
{
	const json_t *dcs = json_object_get(workflow, "data_configs");
	const json_t *passes = json_object_get(workflow, "passes");
	const char *names[256];
	size_t nn = 0;
	if (json_is_array(dcs)) {
		size_t i; json_t *c;
		json_array_foreach(dcs, i, c)
			if (nn < 256 && json_is_string(json_object_get(c, "name")))
				names[nn++] = json_string_value(json_object_get(c, "name"));
	} else if (json_is_object(dcs)) {
		const char *k; json_t *c;
		json_object_foreach((json_t *)dcs, k, c)
			if (nn < 256)
				names[nn++] = k;
	}
	for (size_t i = 0; i < nn; i++) {
		bool used = false;
		const char *pk; json_t *pv;
		json_object_foreach((json_t *)passes, pk, pv) {
			size_t na = json_is_array(pv) ? json_array_size(pv) : 1;
			for (size_t a = 0; a < na; a++) {
				const json_t *p = json_is_array(pv) ? json_array_get(pv, a) : pv;
				const json_t *dc = json_object_get(p, "data_config");
				if (!dc)
					dc = json_object_get(json_object_get(p, "config"), "data_config");
				used = used || (json_is_string(dc) && !strcmp(json_string_value(dc), names[i]));
			}
		}
		if (!used)
			return names[i];
	}
	return NULL;
}

/* quantd's plan when the workflow has no evaluator. */
static int plan_default(struct qd_eval_plan *p)
{
	long fid = plan_add_metric(p, "fidelity", EV_FIDELITY, NULL);
	long sz = fid < 0 ? -1 : plan_add_metric(p, "size_on_disk", EV_SIZE, NULL);
	if (sz < 0)
		return -QD_ENOMEM;
	int rc = plan_add_obj(p, (size_t)fid, "cosine_similarity", ST_COS, true, 1);
	if (rc == 0) rc = plan_add_obj(p, (size_t)fid, "top1_agreement", ST_TOP1, true, 2);
	if (rc == 0) rc = plan_add_obj(p, (size_t)sz, "bytes", ST_BYTES, false, 3);
	((struct ev_priv *)p->priv)->is_default = true;
	return rc;
}

int qd_eval_plan_parse(const json_t *workflow, const char *pass_name, unsigned flags,
		       struct qd_eval_plan **out, json_t *problems, json_t *ignored, struct qd_err *err)
{
	*out = NULL;
	struct qd_eval_plan *p = calloc(1, sizeof *p);
	struct ev_priv *v = calloc(1, sizeof *v);
	int rc;
	if (!p || !v) {
		free(p);
		free(v);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	p->priv = v;
	const char *held = heldout_config(workflow);
	if (held && !(v->heldout = strdup(held))) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	const json_t *io = json_object_get(json_object_get(workflow, "input_model"), "io_config");
	if (json_is_object(io))
		v->io = json_deep_copy(io);
	(void)pass_name; (void)flags; (void)problems; (void)ignored;
	if ((rc = plan_default(p)) < 0) {
		qd_err_set(err, -rc, NULL, "out of memory");
		goto out;
	}
	*out = p;
	p = NULL;
out:
	qd_eval_plan_free(p);
	return rc;
}

/* ---- logging ---- */

static void ev_log(const struct qd_eval_ctx *c, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ev_log(const struct qd_eval_ctx *c, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, c->req->job_id, "%s", line);
	if (c->hooks && c->hooks->log)
		c->hooks->log(c->hooks->ud, lvl, line);
}

static const volatile int *ev_cancel(const struct qd_eval_ctx *c)
{
	return c->hooks ? c->hooks->cancel : NULL;
}

/* Engine options for the evaluation runs: the request's limits. */
static struct qd_engine_opts ev_engine_opts(const struct qd_workflow_req *req)
{
	struct qd_engine_opts eo = { .threads = req->threads > 0 ? req->threads : 1,
				     .max_tensor_bytes = req->max_tensor_bytes ? req->max_tensor_bytes
									: QD_EV_MAX_TENSOR_BYTES,
				     .max_memory_bytes = req->max_memory_bytes,
				     .max_seconds = req->max_seconds };
	return eo;
}

/* ---- seeded inputs ---- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
	return *s;
}

/* Largest valid index for an integer input that feeds a Gather's indices directly. */
static int64_t index_bound(const struct qd_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;
	int64_t bound = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "Gather") || n->n_input < 2 || strcmp(n->input[1], name))
			continue;
		int64_t axis = qd_node_attr_int(n, "axis", 0);
		for (size_t k = 0; k < g->n_initializer; k++) {
			Onnx__TensorProto *t = g->initializer[k];
			if (strcmp(t->name, n->input[0]))
				continue;
			if (axis < 0)
				axis += (int64_t)t->n_dims;
			if (axis >= 0 && axis < (int64_t)t->n_dims && (bound == 0 || t->dims[axis] < bound))
				bound = t->dims[axis];
		}
	}
	return bound > 0 ? bound : 10;
}

/* Olive's input_model.io_config: {"input_names": [...], "input_shapes": [[...], ...]}. */
static const json_t *io_shape(const json_t *io, const char *name)
{
	const json_t *names = json_object_get(io, "input_names"), *shapes = json_object_get(io, "input_shapes");
	size_t i; json_t *n;
	json_array_foreach(names, i, n)
		if (json_is_string(n) && !strcmp(json_string_value(n), name)) {
			const json_t *s = json_array_get(shapes, i);
			return json_is_array(s) ? s : NULL;
		}
	return NULL;
}

/* Seeded inputs for every model input: float uniform in [-1, 1), integers in
 * [0, bound), bools random; symbolic dims → QD_EV_SYM_BATCH (first) / QD_EV_SYM_DIM,
 * unless io_config gives the shape. desc gets name → shape. */
static int make_inputs(const struct qd_model *m, struct qd_engine *e, const json_t *io, struct qd_tensor **out,
		       size_t *n_out, json_t *desc, struct qd_err *err)
{
	size_t n = qd_engine_n_inputs(e);
	struct qd_tensor *t = calloc(n + 1, sizeof *t);
	uint64_t s = QD_EV_SEED;
	if (!t)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const Onnx__ValueInfoProto *vi = qd_engine_input(e, i);
		const Onnx__TypeProto__Tensor *tt = vi->type ? vi->type->tensor_type : NULL;
		if (!tt || !tt->has_elem_type) {
			qd_tensors_release(t, i);
			return qd_err_set(err, QD_EUNSUPPORTED, vi->name, "input '%s' is not a typed tensor", vi->name);
		}
		int64_t dims[QD_MAX_DIMS];
		int nd = tt->shape ? (int)tt->shape->n_dim : 0;
		const json_t *given = io_shape(io, vi->name);
		if (given && (int)json_array_size(given) != nd) {
			qd_tensors_release(t, i);
			return qd_err_set(err, QD_EINVAL, "input_model.io_config.input_shapes", "input_shapes for "
					  "'%s' has %zu dims, the model input has %d", vi->name, json_array_size(given), nd);
		}
		if (nd > QD_MAX_DIMS) {
			qd_tensors_release(t, i);
			return qd_err_set(err, QD_EUNSUPPORTED, vi->name, "input '%s' has too many dims", vi->name);
		}
		json_t *shape = json_array();
		for (int k = 0; k < nd; k++) {
			const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[k];
			bool fixed = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
				     dm->dim_value > 0;
			dims[k] = fixed ? dm->dim_value : k == 0 ? QD_EV_SYM_BATCH : QD_EV_SYM_DIM;
			if (given) {
				json_int_t gv = json_integer_value(json_array_get(given, k));
				if (gv <= 0 || (fixed && gv != dm->dim_value)) {
					json_decref(shape);
					qd_tensors_release(t, i);
					return qd_err_set(err, QD_EINVAL, "input_model.io_config.input_shapes",
							  "input_shapes for '%s' does not fit the model's shape at dim %d",
							  vi->name, k);
				}
				dims[k] = gv;
			}
			json_array_append_new(shape, json_integer(dims[k]));
		}
		if (desc)
			json_object_set_new(desc, vi->name, shape);
		else
			json_decref(shape);
		int rc = qd_tensor_alloc(&t[i], vi->name, tt->elem_type, nd, dims);
		if (rc < 0) {
			qd_tensors_release(t, i + 1);
			return qd_err_set(err, -rc, vi->name, "cannot allocate input '%s' (%s)", vi->name,
					  qd_dtype_name(tt->elem_type));
		}
		int64_t cnt = qd_tensor_count(&t[i]);
		int64_t bound = 10;
		if (tt->elem_type == QD_DT_INT64 || tt->elem_type == QD_DT_INT32)
			bound = index_bound(m, vi->name);
		for (int64_t k = 0; k < cnt; k++) {
			uint64_t r = rng_next(&s);
			switch (tt->elem_type) {
			case QD_DT_FLOAT: ((float *)t[i].data)[k] = (float)((r >> 11) * (2.0 / 9007199254740992.0) - 1.0); break;
			case QD_DT_INT64: ((int64_t *)t[i].data)[k] = (int64_t)(r % (uint64_t)bound); break;
			case QD_DT_INT32: ((int32_t *)t[i].data)[k] = (int32_t)(r % (uint64_t)bound); break;
			case QD_DT_BOOL: ((uint8_t *)t[i].data)[k] = (uint8_t)(r & 1); break;
			default:
				qd_tensors_release(t, i + 1);
				return qd_err_set(err, QD_EUNSUPPORTED, vi->name, "input '%s' has type %s: no "
						  "random data generator", vi->name, qd_dtype_name(tt->elem_type));
			}
		}
	}
	*out = t;
	*n_out = n;
	return 0;
}

/* ---- SNR of every activation (held-out data) ---- */

struct snr_cap {                  /* float run: copies of every float tensor of one batch */
	struct qd_strmap map;         /* name → struct qd_tensor * (owned) */
	size_t bytes;
	bool on;
};

struct snr_acc {
	char *name, *node;
	double sig, noise;
	int64_t n;
	bool dq;          /* measured on the value's DequantizeLinear output (QDQ) */
};

struct snr_state {
	struct snr_cap cap;
	struct qd_strmap accs;        /* name → struct snr_acc * */
	struct snr_acc **list; size_t n_list, cap_list;
	bool on;
};

static void snr_float_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct snr_state *st = ud;
	if (!st->cap.on || t->dtype != QD_DT_FLOAT || !t->name || st->cap.bytes + t->nbytes > QD_EV_SNR_BYTES ||
	    qd_strmap_get(&st->cap.map, t->name))
		return;
	struct qd_tensor *c = calloc(1, sizeof *c);
	if (!c || qd_tensor_alloc(c, t->name, t->dtype, t->ndim, t->dims) < 0) {
		free(c);
		return;
	}
	memcpy(c->data, t->data, t->nbytes);
	if (qd_strmap_put(&st->cap.map, c->name, c)) {
		qd_tensor_release(c);
		free(c);
		return;
	}
	st->cap.bytes += t->nbytes;
	(void)node;
}

static void snr_quant_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct snr_state *st = ud;
	if (!st->on || t->dtype != QD_DT_FLOAT || !t->name)
		return;
	/* QDQ: T_DequantizeLinear_Output is what consumers of T see; compare that with the
	 * float T (the raw T of a quantized model can be a producer's output before the Q
	 * that replaces a removed Relu clamps it) */
	static const char dq_sfx[] = "_DequantizeLinear_Output";
	size_t ln = strlen(t->name), ls = sizeof dq_sfx - 1;
	bool is_dq = ln > ls && !strcmp(t->name + ln - ls, dq_sfx);
	char base[512];
	const char *key = t->name;
	if (is_dq) {
		if (ln - ls >= sizeof base)
			return;
		memcpy(base, t->name, ln - ls);
		base[ln - ls] = 0;
		key = base;
	}
	void **v = qd_strmap_get(&st->cap.map, key);
	if (!v || qd_tensor_count(*v) != qd_tensor_count(t))
		return;
	const struct qd_tensor *f = *v;
	void **av = qd_strmap_get(&st->accs, key);
	struct snr_acc *a = av ? *av : NULL;
	if (!a) {
		if (st->n_list == st->cap_list) {
			size_t nc = st->cap_list ? st->cap_list * 2 : 256;
			struct snr_acc **nl = realloc(st->list, nc * sizeof *nl);
			if (!nl)
				return;
			st->list = nl;
			st->cap_list = nc;
		}
		if (!(a = calloc(1, sizeof *a)) || !(a->name = strdup(key)) ||
		    !(a->node = strdup(node && node->name ? node->name : "")) || qd_strmap_put(&st->accs, a->name, a)) {
			if (a) { free(a->name); free(a->node); }
			free(a);
			return;
		}
		st->list[st->n_list++] = a;
	}
	if (a->dq && !is_dq)
		return;
	if (is_dq && !a->dq) {
		a->dq = true;          /* from now on only the dequantized value counts */
		a->sig = a->noise = 0;
		a->n = 0;
	}
	const float *x = f->data, *y = t->data;
	int64_t n = qd_tensor_count(t);
	double sg = 0, ns = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)x[i] - (double)y[i];
		sg += (double)x[i] * x[i];
		ns += d * d;
	}
	a->sig += sg;
	a->noise += ns;
	a->n += n;
}

static void snr_cap_clear(struct snr_cap *c)
{
	for (size_t i = 0; i < c->map.cap; i++)
		if (c->map.keys && c->map.keys[i]) {
			qd_tensor_release(c->map.vals[i]);
			free(c->map.vals[i]);
		}
	qd_strmap_free(&c->map);
	memset(&c->map, 0, sizeof c->map);
	c->bytes = 0;
}

static void snr_state_free(struct snr_state *st)
{
	snr_cap_clear(&st->cap);
	for (size_t i = 0; i < st->n_list; i++) {
		free(st->list[i]->name);
		free(st->list[i]->node);
		free(st->list[i]);
	}
	free(st->list);
	qd_strmap_free(&st->accs);
}

static double snr_from(double sig, double noise)
{
	if (noise <= 0)
		return QD_EV_SNR_CAP;
	if (sig <= 0)
		return -QD_EV_SNR_CAP;
	return 10.0 * log10(sig / noise);
}

static double snr_db(const struct snr_acc *a)
{
	return snr_from(a->sig, a->noise);
}

static int cmp_snr(const void *x, const void *y)
{
	double a = snr_db(*(struct snr_acc *const *)x), b = snr_db(*(struct snr_acc *const *)y);
	return a < b ? -1 : a > b;
}

/* ---- per-output fidelity ---- */

struct out_acc {
	double dot, nx, ny, maxe, sume, noise, min_cos;
	int64_t n, top1_same, top1_total;
	bool comparable, finite;
	const char *why;
};

static void out_accumulate(struct out_acc *o, const struct qd_tensor *a, const struct qd_tensor *b)
{
	int64_t cnt = qd_tensor_count(a);
	if (a->dtype != QD_DT_FLOAT || b->dtype != QD_DT_FLOAT || cnt != qd_tensor_count(b)) {
		o->comparable = false;
		o->why = a->dtype != QD_DT_FLOAT ? "output is not float32" : "outputs differ in type or size";
		return;
	}
	const float *x = a->data, *y = b->data;
	double dot = 0, nx = 0, ny = 0;
	for (int64_t k = 0; k < cnt; k++) {
		double u = x[k], v = y[k];
		o->finite = o->finite && isfinite(u) && isfinite(v);
		dot += u * v; nx += u * u; ny += v * v;
		double e = fabs(u - v);
		o->maxe = e > o->maxe ? e : o->maxe;
		o->sume += e;
		o->noise += e * e;
	}
	double cos = nx > 0 && ny > 0 ? dot / (sqrt(nx) * sqrt(ny)) : (nx == 0 && ny == 0 ? 1.0 : 0.0);
	o->min_cos = cos < o->min_cos ? cos : o->min_cos;
	o->dot += dot; o->nx += nx; o->ny += ny;
	o->n += cnt;
	int64_t last = a->ndim >= 1 ? a->dims[a->ndim - 1] : 1;
	if (a->ndim >= 2 && last > 1) {
		for (int64_t r = 0; r + last <= cnt; r += last) {
			int64_t ia = 0, ib = 0;
			for (int64_t k = 1; k < last; k++) {
				if (x[r + k] > x[r + ia]) ia = k;
				if (y[r + k] > y[r + ib]) ib = k;
			}
			o->top1_same += ia == ib;
			o->top1_total++;
		}
	}
}

static double out_cosine(const struct out_acc *o)
{
	return o->nx > 0 && o->ny > 0 ? o->dot / (sqrt(o->nx) * sqrt(o->ny)) : (o->nx == 0 && o->ny == 0 ? 1.0 : 0.0);
}

/* ---- one model over one data source ---- */

/* The result of running the float and the candidate model over one source. */
struct src_run {
	bool ok;                  /* figures are valid */
	struct out_acc *acc;
	size_t n_out;
	int64_t samples, batches;
	json_t *section;          /* metrics.json "accuracy" shape (new) */
	json_t *lowest;           /* lowest_snr_activations (new), or NULL */
};

static void src_run_free(struct src_run *r)
{
	free(r->acc);
	json_decref(r->section);
	json_decref(r->lowest);
	memset(r, 0, sizeof *r);
}

/* Failure of an evaluation run: *fatal set when it fails the job (see DESIGN). */
static bool eval_error_fatal(int rc, bool generated)
{
	if (rc == -QD_EUNSUPPORTED || rc == -QD_ENOT_IMPL || rc == -QD_ECANCELED)
		return false;
	if (generated && (rc == -QD_ESHAPE || rc == -QD_EINVAL))
		return false;
	return true;
}

static json_t *outputs_json(const struct src_run *r, struct qd_engine *names, double *min_cos, double *min_top1,
			    bool with_elements)
{
	json_t *outs = json_array();
	*min_cos = 1.0;
	*min_top1 = 2.0;
	for (size_t i = 0; i < r->n_out; i++) {
		const struct out_acc *o = &r->acc[i];
		const Onnx__ValueInfoProto *vi = qd_engine_output(names, i);
		json_t *j = json_pack("{s:s}", "name", vi && vi->name ? vi->name : "");
		if (!o->comparable || !o->finite) {
			json_object_set_new(j, "comparable", json_false());
			json_object_set_new(j, "reason", json_string(o->finite ? o->why : "NaN or Inf in an output"));
			if (!o->finite)
				*min_cos = -1;
		} else {
			json_object_set_new(j, "cosine", json_real(out_cosine(o)));
			json_object_set_new(j, "min_batch_cosine", json_real(o->min_cos));
			json_object_set_new(j, "max_abs_error", json_real(o->maxe));
			json_object_set_new(j, "mean_abs_error", json_real(o->n ? o->sume / (double)o->n : 0));
			json_object_set_new(j, "snr_db", json_real(snr_from(o->nx, o->noise)));
			if (with_elements)
				json_object_set_new(j, "elements", json_integer(o->n));
			if (o->top1_total) {
				double t1 = (double)o->top1_same / (double)o->top1_total;
				json_object_set_new(j, "top1_agreement", json_real(t1));
				*min_top1 = t1 < *min_top1 ? t1 : *min_top1;
			}
			*min_cos = o->min_cos < *min_cos ? o->min_cos : *min_cos;
		}
		json_array_append_new(outs, j);
	}
	return outs;
}

static int acc_alloc(struct src_run *r, size_t n_out, struct qd_err *e)
{
	r->n_out = n_out;
	r->acc = calloc(n_out + 1, sizeof *r->acc);
	if (!r->acc)
		return qd_err_set(e, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n_out; i++) {
		r->acc[i].comparable = r->acc[i].finite = true;
		r->acc[i].min_cos = 1.0;
	}
	return 0;
}

/* Seeded generated inputs: the float model and then the candidate, one engine at a
 * time. Returns 0 (r->ok tells whether figures exist), or a fatal error. */
static int run_generated(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const char *model_path,
			 struct src_run *r, struct qd_err *err)
{
	struct ev_priv *v = p->priv;
	struct qd_err e = { 0 };
	struct qd_tensor *in = NULL, *fo = NULL, *qo = NULL;
	size_t n_in = 0, n_fo = 0, n_qo = 0;
	struct qd_model *m = NULL;
	struct qd_engine *eng = NULL;
	struct qd_engine_opts eo = ev_engine_opts(c->req);
	json_t *desc = json_object();
	bool same = !strcmp(model_path, c->float_path);
	const char *which = "float";
	int rc = qd_model_load_file(c->float_path, NULL, &m, &e);
	if (rc == 0) rc = qd_engine_load(m, &eo, &eng, &e);
	if (rc == 0) rc = make_inputs(m, eng, v->io, &in, &n_in, desc, &e);
	if (rc == 0) rc = qd_engine_run(eng, in, n_in, &fo, &n_fo, ev_cancel(c), &e);
	if (rc == 0 && !same) {
		qd_engine_free(eng);
		qd_model_free(m);
		eng = NULL;
		m = NULL;
		which = "quantized";
		rc = qd_model_load_file(model_path, NULL, &m, &e);
		if (rc == 0) rc = qd_engine_load(m, &eo, &eng, &e);
		if (rc == 0) rc = qd_engine_run(eng, in, n_in, &qo, &n_qo, ev_cancel(c), &e);
	}
	if (rc < 0) {
		if (rc == -QD_ECANCELED) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
			goto out;
		}
		if (eval_error_fatal(rc, true)) {
			*err = e;
			err->code = -rc;
			qd_err_wrap(err, "cannot evaluate the %s model", which);
			goto out;
		}
		char *why = qd_asprintf("cannot evaluate the %s model with the built-in engine: %s", which, e.msg);
		r->section = json_pack("{s:s, s:s}", "status", "unavailable", "reason", why ? why : "out of memory");
		free(why);
		ev_log(c, QD_LOG_WARN, "accuracy unavailable: cannot evaluate the %s model: %s", which, e.msg);
		rc = 0;
		goto out;
	}
	if (same) {
		qo = fo;
		n_qo = n_fo;
	}
	if (n_fo != n_qo) {
		r->section = json_pack("{s:s, s:s}", "status", "unavailable", "reason", "output counts differ");
		goto out;
	}
	if ((rc = acc_alloc(r, n_fo, err)) < 0)
		goto out;
	for (size_t i = 0; i < n_fo; i++)
		out_accumulate(&r->acc[i], &fo[i], &qo[i]);
	r->samples = n_in ? (in[0].ndim ? in[0].dims[0] : 1) : 0;
	r->batches = 1;
	r->ok = true;
	double min_cos, min_top1;
	json_t *outs = outputs_json(r, eng, &min_cos, &min_top1, true);
	r->section = json_pack("{s:s, s:s, s:{s:I, s:O, s:s}, s:o, s:f}", "status", "ok", "engine", "quantd",
			       "inputs", "seed", (json_int_t)QD_EV_SEED, "shapes", desc,
			       "generator", "float uniform [-1,1); int [0, Gather table size) or [0,10); "
					    "symbolic dims: input_model.io_config.input_shapes, else first 1, others 32",
			       "outputs", outs, "min_cosine", min_cos);
	if (min_top1 <= 1.0)
		json_object_set_new(r->section, "min_top1_agreement", json_real(min_top1));
out:
	json_decref(desc);
	if (same)
		qo = NULL, n_qo = 0;
	qd_tensors_release(in, n_in);
	qd_tensors_release(fo, n_fo);
	qd_tensors_release(qo, n_qo);
	qd_engine_free(eng);
	qd_model_free(m);
	return rc;
}

/* A data config: the float and the candidate model on every sample, batch by batch,
 * side by side (snr: the activations' SNR on the first QD_EV_SNR_BATCHES batches). */
static int run_data(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const char *cfg_name,
		    const char *model_path, bool snr_wanted, struct src_run *r, struct qd_err *err)
{
	(void)p;
	struct qd_err e = { 0 };
	struct qd_model *fm = NULL, *qm = NULL;
	struct qd_engine *fe = NULL, *qe = NULL;
	struct qd_dataset *ds = NULL;
	struct qd_batches b = { 0 };
	struct snr_state st = { 0 };
	int64_t bs = 1, batches = 0;
	bool same = !strcmp(model_path, c->float_path);
	bool snr_on = snr_wanted && !same;
	const volatile int *cancel = ev_cancel(c);
	struct qd_engine_opts eo = ev_engine_opts(c->req);
	struct qd_pass_ctx pc = { .job_id = c->req->job_id, .name = "evaluation", .hooks = c->hooks,
				  .workflow = c->req->workflow, .data_paths = c->req->data_paths };
	json_t *ref = json_string(cfg_name);
	int rc = qd_model_load_file(c->float_path, NULL, &fm, &e);
	if (rc == 0 && !same) rc = qd_model_load_file(model_path, NULL, &qm, &e);
	if (rc == 0) rc = qd_pass_open_data(&pc, fm, ref, "data_configs", &ds, &bs, &e);
	if (rc == 0) rc = qd_engine_load(fm, &eo, &fe, &e);
	if (rc == 0 && !same) rc = qd_engine_load(qm, &eo, &qe, &e);
	if (rc == 0) rc = qd_batches_init(&b, ds, fm->proto->graph, bs, 0, &e);
	json_decref(ref);
	if (rc == 0 && snr_on) {
		qd_engine_set_hook(fe, snr_float_hook, &st);
		qd_engine_set_hook(qe, snr_quant_hook, &st);
	}
	while (rc == 0) {
		struct qd_tensor *in = NULL, *fo = NULL, *qo = NULL;
		size_t n_in = 0, n_fo = 0, n_qo = 0;
		int got = qd_batches_next(&b, &in, &n_in, &e);
		if (got <= 0) {
			rc = got;
			break;
		}
		bool snr = snr_on && batches < QD_EV_SNR_BATCHES;
		st.cap.on = st.on = snr;
		if (snr_on && batches == QD_EV_SNR_BATCHES) {
			qd_engine_set_hook(fe, NULL, NULL);   /* fused kernels again: same values */
			qd_engine_set_hook(qe, NULL, NULL);
		}
		rc = qd_engine_run(fe, in, n_in, &fo, &n_fo, cancel, &e);
		if (rc == 0 && !same)
			rc = qd_engine_run(qe, in, n_in, &qo, &n_qo, cancel, &e);
		if (same) {
			qo = fo;
			n_qo = n_fo;
		}
		if (rc == 0 && !r->acc)
			rc = acc_alloc(r, n_fo, &e);
		if (rc == 0 && (n_fo != r->n_out || n_qo != r->n_out))
			rc = qd_err_set(&e, QD_EINTERNAL, NULL, "output counts differ");
		for (size_t i = 0; rc == 0 && i < r->n_out; i++)
			if (r->acc[i].comparable)
				out_accumulate(&r->acc[i], &fo[i], &qo[i]);
		snr_cap_clear(&st.cap);
		qd_tensors_release(in, n_in);
		qd_tensors_release(fo, n_fo);
		if (!same)
			qd_tensors_release(qo, n_qo);
		batches++;
	}
	if (rc < 0) {
		if (rc == -QD_ECANCELED) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
			goto out;
		}
		if (eval_error_fatal(rc, false)) {
			*err = e;
			err->code = -rc;
			qd_err_wrap(err, "cannot evaluate the float or the quantized model");
			goto out;
		}
		r->section = json_pack("{s:s, s:s}", "status", "unavailable", "reason", e.msg);
		ev_log(c, QD_LOG_WARN, "accuracy on data config '%s' unavailable: %s", cfg_name, e.msg);
		free(r->acc);
		r->acc = NULL;
		r->n_out = 0;
		rc = 0;
		goto out;
	}
	r->ok = r->acc != NULL;
	r->samples = b.end;
	r->batches = batches;
	double min_cos, min_top1;
	json_t *outs = outputs_json(r, fe, &min_cos, &min_top1, false);
	r->section = json_pack("{s:s, s:s, s:{s:s, s:I, s:I}, s:o, s:f}", "status", "ok", "engine", "quantd",
			       "inputs", "data_config", cfg_name, "samples", (json_int_t)b.end, "batches",
			       (json_int_t)batches, "outputs", outs, "min_cosine", min_cos);
	if (min_top1 <= 1.0)
		json_object_set_new(r->section, "min_top1_agreement", json_real(min_top1));
	if (st.n_list) {
		qsort(st.list, st.n_list, sizeof *st.list, cmp_snr);
		r->lowest = json_array();
		for (size_t i = 0; i < st.n_list && i < 10; i++)
			json_array_append_new(r->lowest, json_pack("{s:s, s:s, s:f}", "tensor", st.list[i]->name, "node",
								    st.list[i]->node, "snr_db", snr_db(st.list[i])));
	}
out:
	snr_state_free(&st);
	qd_batches_free(&b);
	qd_engine_free(fe);
	qd_engine_free(qe);
	qd_dataset_free(ds);
	qd_model_free(fm);
	qd_model_free(qm);
	return rc;
}

/* ---- size on disk ---- */

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The model file plus the distinct external data files it references. */
static long long model_bytes(const char *path)
{
	long long total = file_size(path);
	struct qd_model *m = NULL;
	struct qd_load_opts lo = { .keep_external = true };
	if (total < 0 || qd_model_load_file(path, &lo, &m, NULL) < 0)
		return total;
	const char *seen[64];
	size_t ns = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		for (size_t k = 0; k < t->n_external_data; k++) {
			const Onnx__StringStringEntryProto *x = t->external_data[k];
			if (!x->key || strcmp(x->key, "location") || !x->value)
				continue;
			bool dup = false;
			for (size_t j = 0; j < ns; j++)
				dup = dup || !strcmp(seen[j], x->value);
			if (dup || ns == QD_ARRAY_LEN(seen))
				continue;
			seen[ns++] = x->value;
			char *fp = qd_asprintf("%s/%s", m->base_dir ? m->base_dir : ".", x->value);
			long long sz = fp ? file_size(fp) : -1;
			free(fp);
			if (sz > 0)
				total += sz;
		}
	}
	qd_model_free(m);
	return total;
}

/* ---- the run ---- */

/* The aggregated value of a fidelity objective over the comparable outputs; false when
 * there is none (e.g. top-1 agreement without an output with a class axis). */
static bool fidelity_value(const struct src_run *r, enum ev_stat st, double *out)
{
	bool any = false;
	double v = 0;
	for (size_t i = 0; r->ok && i < r->n_out; i++) {
		const struct out_acc *o = &r->acc[i];
		if (!o->comparable)
			continue;
		double x;
		if (!o->finite) {
			/* NaN / Inf: the worst value */
			x = st == ST_COS || st == ST_TOP1 ? -1.0 : st == ST_SNR ? -QD_EV_SNR_CAP : INFINITY;
		} else {
			switch (st) {
			case ST_COS: x = o->min_cos; break;
			case ST_TOP1:
				if (!o->top1_total)
					continue;
				x = (double)o->top1_same / (double)o->top1_total;
				break;
			case ST_MAXE: x = o->maxe; break;
			case ST_MEANE: x = o->n ? o->sume / (double)o->n : 0; break;
			case ST_SNR: x = snr_from(o->nx, o->noise); break;
			default: continue;
			}
		}
		bool lower_better = st == ST_MAXE || st == ST_MEANE;
		if (!any || (lower_better ? x > v : x < v))
			v = x;
		any = true;
	}
	*out = v;
	return any;
}

int qd_eval_run(const struct qd_eval_plan *p, const struct qd_eval_ctx *c, const char *model_path,
		json_t **values, json_t **detail, struct qd_err *err)
{
	struct ev_priv *v = p->priv;
	struct src_run def = { 0 };
	bool def_done = false;
	json_t *vals = json_object(), *det = json_object();
	int rc = 0;
	*values = NULL;
	if (detail)
		*detail = NULL;
	if (!vals || !det) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	bool need_def = detail != NULL;
	for (size_t i = 0; i < p->n_obj; i++)
		need_def = need_def || v->m[v->o[i].metric].type == EV_FIDELITY;
	if (need_def) {
		if (v->heldout)
			rc = run_data(p, c, v->heldout, model_path, detail != NULL, &def, err);
		else
			rc = run_generated(p, c, model_path, &def, err);
		if (rc < 0)
			goto out;
		def_done = true;
		if (!v->heldout)
			ev_log(c, QD_LOG_INFO, "accuracy measured on seeded random inputs: add a data config that no "
			       "pass calibrates with to measure it on held-out data");
	}
	for (size_t i = 0; i < p->n_obj; i++) {
		const struct ev_obj *o = &v->o[i];
		double x;
		bool have = false;
		switch (v->m[o->metric].type) {
		case EV_FIDELITY:
			have = def_done && fidelity_value(&def, o->stat, &x);
			break;
		case EV_SIZE: {
			long long b = model_bytes(model_path);
			have = b >= 0;
			x = (double)b;
			break;
		}
		default:
			break;
		}
		if (have)
			json_object_set_new(vals, p->obj[i].key, json_real(x));
	}
	if (def.section)
		json_object_set(det, "accuracy", def.section);
	if (def.lowest)
		json_object_set(det, "lowest_snr_activations", def.lowest);
	*values = vals;
	vals = NULL;
	if (detail) {
		*detail = det;
		det = NULL;
	}
out:
	src_run_free(&def);
	json_decref(vals);
	json_decref(det);
	return rc;
}

/* ---- goals ---- */

bool qd_eval_goals_met(const struct qd_eval_plan *p, const json_t *cand, const json_t *base, json_t **status)
{
	bool all = true;
	json_t *st = status ? json_object() : NULL;
	if (status)
		*status = st;
	for (size_t i = 0; i < p->n_obj; i++) {
		const struct qd_objective *o = &p->obj[i];
		if (!o->goal_type)
			continue;
		const json_t *cv = json_object_get(cand, o->key), *bv = json_object_get(base, o->key);
		double m = o->higher_is_better ? 1.0 : -1.0, g = o->goal_value, target = g;
		bool needs_base = strcmp(o->goal_type, "threshold") != 0;
		bool known = json_is_number(cv) && (!needs_base || json_is_number(bv));
		double b = json_number_value(bv);
		if (!strcmp(o->goal_type, "max-degradation"))
			target = b - m * g;
		else if (!strcmp(o->goal_type, "min-improvement"))
			target = b + m * g;
		else if (!strcmp(o->goal_type, "percent-max-degradation"))
			target = b * (1.0 - m * g / 100.0);
		else if (!strcmp(o->goal_type, "percent-min-improvement"))
			target = b * (1.0 + m * g / 100.0);
		/* a value that could not be measured does not meet its goal */
		bool met = known && m * json_number_value(cv) >= m * target;
		all = all && met;
		if (st) {
			json_t *j = json_pack("{s:o, s:o, s:{s:s, s:f}, s:o, s:b}",
					      "value", json_is_number(cv) ? json_real(json_number_value(cv)) : json_null(),
					      "baseline", json_is_number(bv) ? json_real(b) : json_null(),
					      "goal", "type", o->goal_type, "value", g,
					      "target", known || !needs_base ? json_real(target) : json_null(), "met", met);
			json_object_set_new(st, o->key, j);
		}
	}
	return all;
}
