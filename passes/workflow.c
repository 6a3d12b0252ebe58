/* Olive-style workflow: submit-time validation of the "passes" section against the pass
 * registry, and the runner (load, pass chain with progress/log/cancel hooks, save,
 * metrics.json and footprint.json). */
#include "passes/passes.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "passes/data_config.h"
#include "onnx/onnx_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int qd_workflow_validate(const json_t *workflow, struct qd_err *err)
{
	return qd_workflow_check(workflow, 0, NULL, NULL, err);
}

/* ---- runner ---- */

#define QD_WF_SEED 0x5eed1234u
#define QD_WF_SYM_BATCH 1     /* symbolic first dimension (batch) */
#define QD_WF_SYM_DIM 32      /* any other symbolic dimension (sequence, H, W) */
#define QD_EXTERNAL_AUTO ((uint64_t)2 << 30)
/* largest tensor the evaluation engine may create: an uploaded model (shapes from its
 * inputs, Expand/ConstantOfShape/Tile...) cannot make the daemon allocate more than this */
#define QD_WF_MAX_TENSOR_BYTES ((size_t)4 << 30)

struct wf {
	const struct qd_workflow_req *req;
	const struct qd_workflow_hooks *hooks;
	struct qd_err *err;
	int eval_rc;                /* evaluation failed for a reason that fails the job */
	struct qd_err eval_err;
};

/* An evaluation error: an op the engine does not cover leaves the accuracy unavailable
 * (the model may still be fine for ONNX Runtime), and so does a shape or argument error
 * on generated inputs (guessed symbolic dims may not fit the model); anything else (a
 * tensor above the engine's limits, out of memory, a broken graph, or any error on the
 * user's own data) means the model cannot be run as given, and fails the job with the
 * engine's reason. */
static void wf_eval_failed(struct wf *w, int rc, const struct qd_err *e, const char *which, bool generated)
{
	if (rc == -QD_EUNSUPPORTED || rc == -QD_ENOT_IMPL || rc == -QD_ECANCELED || w->eval_rc)
		return;
	if (generated && (rc == -QD_ESHAPE || rc == -QD_EINVAL))
		return;
	w->eval_rc = rc;
	w->eval_err = *e;
	w->eval_err.code = -rc;
	qd_err_wrap(&w->eval_err, "cannot evaluate the %s model", which);
}

/* Engine options for the workflow's model runs: the request's limits. */
static struct qd_engine_opts wf_engine_opts(const struct qd_workflow_req *req)
{
	struct qd_engine_opts eo = { .threads = req->threads > 0 ? req->threads : 1,
				     .max_tensor_bytes = req->max_tensor_bytes ? req->max_tensor_bytes
									: QD_WF_MAX_TENSOR_BYTES,
				     .max_memory_bytes = req->max_memory_bytes,
				     .max_seconds = req->max_seconds };
	return eo;
}

static void wf_log(struct wf *w, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void wf_log(struct wf *w, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, w->req->job_id, "%s", line);
	if (w->hooks && w->hooks->log)
		w->hooks->log(w->hooks->ud, lvl, line);
}

static void wf_progress(struct wf *w, double frac, const char *msg)
{
	if (w->hooks && w->hooks->progress)
		w->hooks->progress(w->hooks->ud, frac, msg);
}

static bool wf_canceled(struct wf *w)
{
	return w->hooks && w->hooks->cancel && *w->hooks->cancel;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static long long initializer_bytes(const Onnx__GraphProto *g)
{
	long long total = 0;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		total += (long long)t->raw_data.len + (long long)t->n_float_data * 4 +
			 (long long)t->n_int32_data * 4 + (long long)t->n_int64_data * 8 +
			 (long long)t->n_double_data * 8 + (long long)t->n_uint64_data * 8;
	}
	return total;
}

/* Sizes of the distinct external data files a model (loaded with keep_external) uses. */
static long long external_bytes(const struct qd_model *m)
{
	long long total = 0;
	const char *seen[64];
	size_t ns = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		for (size_t k = 0; k < t->n_external_data; k++) {
			const Onnx__StringStringEntryProto *e = t->external_data[k];
			if (!e->key || strcmp(e->key, "location") || !e->value)
				continue;
			bool dup = false;
			for (size_t j = 0; j < ns; j++)
				dup = dup || !strcmp(seen[j], e->value);
			if (dup || ns == QD_ARRAY_LEN(seen))
				continue;
			seen[ns++] = e->value;
			char *p = qd_asprintf("%s/%s", m->base_dir ? m->base_dir : ".", e->value);
			long long sz = p ? file_size(p) : -1;
			free(p);
			if (sz > 0)
				total += sz;
		}
	}
	return total;
}

static const char *model_path_of(const json_t *workflow)
{
	const json_t *im = json_object_get(workflow, "input_model");
	const char *p = json_string_value(json_object_get(im, "model_path"));
	if (!p)
		p = json_string_value(json_object_get(json_object_get(im, "config"), "model_path"));
	if (!p)
		p = json_string_value(json_object_get(workflow, "model"));
	return p;
}

const char *qd_workflow_model_path(const json_t *workflow)
{
	return model_path_of(workflow);
}

/* ---- accuracy against the float model with the built-in engine ---- */

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

/* Seeded inputs for every model input: float uniform in [-1, 1), integers in
 * [0, bound), bools random; symbolic dims → QD_WF_SYM_BATCH (first) / QD_WF_SYM_DIM. */
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

static int make_inputs(const struct qd_model *m, struct qd_engine *e, const json_t *io, struct qd_tensor **out,
		       size_t *n_out, json_t *desc, struct qd_err *err)
{
	size_t n = qd_engine_n_inputs(e);
	struct qd_tensor *t = calloc(n + 1, sizeof *t);
	uint64_t s = QD_WF_SEED;
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
			dims[k] = fixed ? dm->dim_value : k == 0 ? QD_WF_SYM_BATCH : QD_WF_SYM_DIM;
			if (given) {
				json_int_t gv = json_integer_value(json_array_get(given, k));
				if (gv <= 0 || (fixed && gv != dm->dim_value)) {
					qd_tensors_release(t, i);
					return qd_err_set(err, QD_EINVAL, "input_model.io_config.input_shapes",
							  "input_shapes for '%s' does not fit the model's shape at dim %d",
							  vi->name, k);
				}
				dims[k] = gv;
			}
			json_array_append_new(shape, json_integer(dims[k]));
		}
		json_object_set_new(desc, vi->name, shape);
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

static int run_model(const char *path, const json_t *io, const struct qd_tensor *in, size_t n_in, bool gen_inputs,
		     struct qd_tensor **gen, size_t *n_gen, json_t *desc, const struct qd_workflow_req *req,
		     const volatile int *cancel, struct qd_tensor **out, size_t *n_out, struct qd_err *err)
{
	struct qd_model *m = NULL;
	struct qd_engine *e = NULL;
	struct qd_engine_opts eo = wf_engine_opts(req);
	int rc = qd_model_load_file(path, NULL, &m, err);
	if (rc == 0)
		rc = qd_engine_load(m, &eo, &e, err);
	if (rc == 0 && gen_inputs) {
		rc = make_inputs(m, e, io, gen, n_gen, desc, err);
		in = *gen;
		n_in = *n_gen;
	}
	if (rc == 0)
		rc = qd_engine_run(e, in, n_in, out, n_out, cancel, err);
	qd_engine_free(e);
	qd_model_free(m);
	return rc;
}

static json_t *compare_outputs(const struct qd_tensor *a, const struct qd_tensor *b, size_t n,
			       double *min_cos)
{
	json_t *list = json_array();
	*min_cos = 1.0;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_pack("{s:s}", "name", a[i].name ? a[i].name : "");
		int64_t cnt = qd_tensor_count(&a[i]);
		if (a[i].dtype != QD_DT_FLOAT || b[i].dtype != QD_DT_FLOAT || cnt != qd_tensor_count(&b[i])) {
			json_object_set_new(o, "comparable", json_false());
			json_object_set_new(o, "reason", json_string(a[i].dtype != QD_DT_FLOAT ?
				"output is not float32" : "outputs differ in type or size"));
			json_array_append_new(list, o);
			continue;
		}
		const float *x = a[i].data, *y = b[i].data;
		double dot = 0, nx = 0, ny = 0, maxe = 0, sume = 0;
		bool finite = true;
		for (int64_t k = 0; k < cnt; k++) {
			double u = x[k], v = y[k];
			finite = finite && isfinite(u) && isfinite(v);
			dot += u * v; nx += u * u; ny += v * v;
			double e = fabs(u - v);
			maxe = e > maxe ? e : maxe;
			sume += e;
		}
		double cos = nx > 0 && ny > 0 ? dot / (sqrt(nx) * sqrt(ny)) : (nx == 0 && ny == 0 ? 1.0 : 0.0);
		if (!finite) {
			json_object_set_new(o, "comparable", json_false());
			json_object_set_new(o, "reason", json_string("NaN or Inf in an output"));
			*min_cos = -1;
		} else {
			json_object_set_new(o, "cosine", json_real(cos));
			json_object_set_new(o, "max_abs_error", json_real(maxe));
			json_object_set_new(o, "mean_abs_error", json_real(cnt ? sume / (double)cnt : 0));
			json_object_set_new(o, "elements", json_integer(cnt));
			*min_cos = cos < *min_cos ? cos : *min_cos;
		}
		json_array_append_new(list, o);
	}
	return list;
}

static json_t *measure_accuracy(struct wf *w, const char *float_path, const char *quant_path)
{
	struct qd_err e = { 0 };
	struct qd_tensor *in = NULL, *fo = NULL, *qo = NULL;
	size_t n_in = 0, n_fo = 0, n_qo = 0;
	json_t *desc = json_object();
	const volatile int *cancel = w->hooks ? w->hooks->cancel : NULL;
	json_t *res = NULL;
	const json_t *io = json_object_get(json_object_get(w->req->workflow, "input_model"), "io_config");
	int rc = run_model(float_path, io, NULL, 0, true, &in, &n_in, desc, w->req, cancel, &fo, &n_fo, &e);
	const char *which = "float";
	if (rc == 0) {
		which = "quantized";
		rc = run_model(quant_path, NULL, in, n_in, false, NULL, NULL, NULL, w->req, cancel, &qo, &n_qo, &e);
	}
	if (rc < 0) {
		if (rc == -QD_ECANCELED) {
			res = json_pack("{s:s, s:s}", "status", "canceled", "reason", "canceled during evaluation");
		} else {
			wf_eval_failed(w, rc, &e, which, true);
			char *why = qd_asprintf("cannot evaluate the %s model with the built-in engine: %s", which, e.msg);
			res = json_pack("{s:s, s:s}", "status", "unavailable", "reason", why ? why : "out of memory");
			free(why);
			wf_log(w, QD_LOG_WARN, "accuracy unavailable: cannot evaluate the %s model: %s", which, e.msg);
		}
		json_decref(desc);
		goto out;
	}
	if (n_fo != n_qo) {
		res = json_pack("{s:s, s:s}", "status", "unavailable", "reason", "output counts differ");
		json_decref(desc);
		goto out;
	}
	double min_cos;
	json_t *outs = compare_outputs(fo, qo, n_fo, &min_cos);
	res = json_pack("{s:s, s:s, s:{s:I, s:o, s:s}, s:o, s:f}", "status", "ok", "engine", "quantd",
			"inputs", "seed", (json_int_t)QD_WF_SEED, "shapes", desc,
			"generator", "float uniform [-1,1); int [0, Gather table size) or [0,10); "
				     "symbolic dims: input_model.io_config.input_shapes, else first 1, others 32",
			"outputs", outs, "min_cosine", min_cos);
out:
	qd_tensors_release(in, n_in);
	qd_tensors_release(fo, n_fo);
	qd_tensors_release(qo, n_qo);
	return res;
}

/* ---- accuracy on held-out data ---- */

#define QD_WF_SNR_BATCHES 16      /* batches whose activations are compared (SNR) */
#define QD_WF_SNR_BYTES ((size_t)1 << 30)   /* float activations kept per batch at most */

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
	if (!st->cap.on || t->dtype != QD_DT_FLOAT || !t->name || st->cap.bytes + t->nbytes > QD_WF_SNR_BYTES ||
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

static double snr_db(const struct snr_acc *a)
{
	if (a->noise <= 0)
		return 200.0;
	if (a->sig <= 0)
		return -200.0;
	return 10.0 * log10(a->sig / a->noise);
}

static int cmp_snr(const void *x, const void *y)
{
	double a = snr_db(*(struct snr_acc *const *)x), b = snr_db(*(struct snr_acc *const *)y);
	return a < b ? -1 : a > b;
}

struct out_acc {
	double dot, nx, ny, maxe, sume, min_cos;
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

/* Float and quantized model on every held-out sample (engine, batch by batch): per output
 * cosine (pooled and worst batch), max / mean abs error, top-1 agreement over the last
 * axis; and the activations with the lowest SNR against the float model (tensors present
 * under the same name in both models, the first QD_WF_SNR_BATCHES batches). */
static json_t *measure_on_data(struct wf *w, const char *cfg_name, const char *float_path, const char *quant_path,
			       json_t **lowest)
{
	struct qd_err e = { 0 };
	struct qd_model *fm = NULL, *qm = NULL;
	struct qd_engine *fe = NULL, *qe = NULL;
	struct qd_dataset *ds = NULL;
	struct qd_batches b = { 0 };
	struct out_acc *acc = NULL;
	struct snr_state st = { 0 };
	size_t n_out = 0;
	int64_t bs = 1, batches = 0;
	json_t *res = NULL;
	const volatile int *cancel = w->hooks ? w->hooks->cancel : NULL;
	struct qd_engine_opts eo = wf_engine_opts(w->req);
	struct qd_pass_ctx pc = { .job_id = w->req->job_id, .name = "evaluation", .hooks = w->hooks,
				  .workflow = w->req->workflow, .data_paths = w->req->data_paths };
	json_t *ref = json_string(cfg_name);
	int rc = qd_model_load_file(float_path, NULL, &fm, &e);
	if (rc == 0) rc = qd_model_load_file(quant_path, NULL, &qm, &e);
	if (rc == 0) rc = qd_pass_open_data(&pc, fm, ref, "data_configs", &ds, &bs, &e);
	if (rc == 0) rc = qd_engine_load(fm, &eo, &fe, &e);
	if (rc == 0) rc = qd_engine_load(qm, &eo, &qe, &e);
	if (rc == 0) rc = qd_batches_init(&b, ds, fm->proto->graph, bs, 0, &e);
	json_decref(ref);
	if (rc == 0) {
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
		bool snr = batches < QD_WF_SNR_BATCHES;
		st.cap.on = st.on = snr;
		if (!snr && batches == QD_WF_SNR_BATCHES) {
			qd_engine_set_hook(fe, NULL, NULL);   /* fused kernels again: same values */
			qd_engine_set_hook(qe, NULL, NULL);
		}
		rc = qd_engine_run(fe, in, n_in, &fo, &n_fo, cancel, &e);
		if (rc == 0)
			rc = qd_engine_run(qe, in, n_in, &qo, &n_qo, cancel, &e);
		if (rc == 0 && !acc) {
			n_out = n_fo;
			acc = calloc(n_out + 1, sizeof *acc);
			for (size_t i = 0; acc && i < n_out; i++) {
				acc[i].comparable = acc[i].finite = true;
				acc[i].min_cos = 1.0;
			}
			if (!acc)
				rc = qd_err_set(&e, QD_ENOMEM, NULL, "out of memory");
		}
		if (rc == 0 && (n_fo != n_out || n_qo != n_out))
			rc = qd_err_set(&e, QD_EINTERNAL, NULL, "output counts differ");
		for (size_t i = 0; rc == 0 && i < n_out; i++)
			if (acc[i].comparable)
				out_accumulate(&acc[i], &fo[i], &qo[i]);
		snr_cap_clear(&st.cap);
		qd_tensors_release(in, n_in);
		qd_tensors_release(fo, n_fo);
		qd_tensors_release(qo, n_qo);
		batches++;
	}
	if (rc < 0) {
		if (rc == -QD_ECANCELED)
			res = json_pack("{s:s, s:s}", "status", "canceled", "reason", "canceled during evaluation");
		else {
			wf_eval_failed(w, rc, &e, "float or the quantized", false);
			res = json_pack("{s:s, s:s}", "status", "unavailable", "reason", e.msg);
			wf_log(w, QD_LOG_WARN, "accuracy on data config '%s' unavailable: %s", cfg_name, e.msg);
		}
		goto out;
	}
	json_t *outs = json_array();
	double min_cos = 1.0, min_top1 = 2.0;
	for (size_t i = 0; i < n_out; i++) {
		const struct out_acc *o = &acc[i];
		const Onnx__ValueInfoProto *vi = qd_engine_output(fe, i);
		json_t *j = json_pack("{s:s}", "name", vi && vi->name ? vi->name : "");
		if (!o->comparable || !o->finite) {
			json_object_set_new(j, "comparable", json_false());
			json_object_set_new(j, "reason", json_string(o->finite ? o->why : "NaN or Inf in an output"));
			if (!o->finite)
				min_cos = -1;
		} else {
			double cos = o->nx > 0 && o->ny > 0 ? o->dot / (sqrt(o->nx) * sqrt(o->ny)) : 1.0;
			json_object_set_new(j, "cosine", json_real(cos));
			json_object_set_new(j, "min_batch_cosine", json_real(o->min_cos));
			json_object_set_new(j, "max_abs_error", json_real(o->maxe));
			json_object_set_new(j, "mean_abs_error", json_real(o->n ? o->sume / (double)o->n : 0));
			if (o->top1_total) {
				double t1 = (double)o->top1_same / (double)o->top1_total;
				json_object_set_new(j, "top1_agreement", json_real(t1));
				min_top1 = t1 < min_top1 ? t1 : min_top1;
			}
			min_cos = o->min_cos < min_cos ? o->min_cos : min_cos;
		}
		json_array_append_new(outs, j);
	}
	res = json_pack("{s:s, s:s, s:{s:s, s:I, s:I}, s:o, s:f}", "status", "ok", "engine", "quantd",
			"inputs", "data_config", cfg_name, "samples", (json_int_t)b.end, "batches", (json_int_t)batches,
			"outputs", outs, "min_cosine", min_cos);
	if (min_top1 <= 1.0)
		json_object_set_new(res, "min_top1_agreement", json_real(min_top1));
	if (lowest && st.n_list) {
		qsort(st.list, st.n_list, sizeof *st.list, cmp_snr);
		*lowest = json_array();
		for (size_t i = 0; i < st.n_list && i < 10; i++)
			json_array_append_new(*lowest, json_pack("{s:s, s:s, s:f}", "tensor", st.list[i]->name, "node",
								 st.list[i]->node, "snr_db", snr_db(st.list[i])));
	}
out:
	snr_cap_clear(&st.cap);
	for (size_t i = 0; i < st.n_list; i++) {
		free(st.list[i]->name);
		free(st.list[i]->node);
		free(st.list[i]);
	}
	free(st.list);
	qd_strmap_free(&st.accs);
	free(acc);
	qd_batches_free(&b);
	qd_engine_free(fe);
	qd_engine_free(qe);
	qd_dataset_free(ds);
	qd_model_free(fm);
	qd_model_free(qm);
	return res;
}

/* ---- footprint ---- */

static char *model_id(const char *parent, const char *pass_type, const json_t *cfg)
{
	char *c = json_dumps(cfg, JSON_SORT_KEYS | JSON_COMPACT);
	char *s = qd_asprintf("%s|%s|%s", parent ? parent : "", pass_type ? pass_type : "", c ? c : "");
	free(c);
	if (!s)
		return NULL;
	char hex[65];
	qd_sha256_hex(s, strlen(s), hex);
	free(s);
	hex[8] = 0;
	return strdup(hex);
}

static int write_json(const char *dir, const char *name, const json_t *j, struct qd_err *err)
{
	char *path = qd_asprintf("%s/%s", dir, name);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int rc;
	if (!path || !text) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	} else {
		size_t n = strlen(text);
		text[n] = '\n';   /* replace the terminator: write n+1 bytes */
		rc = qd_file_write_atomic(path, text, n + 1, err);
		text[n] = 0;
	}
	free(path);
	free(text);
	return rc;
}

/* ---- the run ---- */

int qd_workflow_run(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		    json_t **result, struct qd_err *err)
{
	struct wf w = { .req = req, .hooks = hooks, .err = err };
	struct qd_model *m = NULL;
	json_t *passes_out = json_array(), *counts = json_object(), *metrics = NULL, *fp_nodes = json_object();
	json_t *ignored = NULL, *order = NULL;
	char *out_path = NULL, *parent_id = NULL;
	const json_t *save_params = NULL;
	json_t *last_cfg = NULL;
	int rc;
	if (result)
		*result = NULL;
	if (!passes_out || !counts || !fp_nodes) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if ((rc = qd_workflow_check(req->workflow, req->model_path ? QD_WF_CHECK_MODEL_BOUND : 0, NULL,
				    &ignored, err)) < 0)
		goto out;
	{
		size_t i;
		json_t *x;
		json_array_foreach(ignored, i, x)
			wf_log(&w, QD_LOG_WARN, "ignored '%s': %s", json_string_value(json_object_get(x, "field")),
			       json_string_value(json_object_get(x, "why")));
	}
	const char *model_path = req->model_path ? req->model_path : model_path_of(req->workflow);
	if (!model_path) {
		rc = qd_err_set(err, QD_EINVAL, "model", "no input model (give --model or input_model.model_path)");
		goto out;
	}
	double t0 = qd_now_mono();
	wf_progress(&w, 0.0, "loading model");
	if ((rc = qd_model_load_file(model_path, NULL, &m, err)) < 0) {
		qd_err_wrap(err, "cannot load model '%s'", model_path);
		goto out;
	}
	long long float_bytes = file_size(model_path);
	{
		/* Olive hashes the input model's config (its path); we add size and mtime */
		struct stat st;
		json_t *idc = json_pack("{s:s, s:I, s:I}", "model_path", model_path, "size",
					(json_int_t)float_bytes, "mtime",
					(json_int_t)(stat(model_path, &st) == 0 ? st.st_mtime : 0));
		parent_id = model_id(NULL, "input", idc);
		json_decref(idc);
		/* external data of the input is resolved at load: when there was some, read the
		 * references again (keep_external) and add the data files' sizes */
		if (initializer_bytes(m->proto->graph) > float_bytes) {
			struct qd_model *ext = NULL;
			struct qd_load_opts lo = { .keep_external = true };
			if (qd_model_load_file(model_path, &lo, &ext, NULL) == 0)
				float_bytes += external_bytes(ext);
			qd_model_free(ext);
		}
	}
	json_object_set_new(fp_nodes, parent_id ? parent_id : "input",
			    json_pack("{s:s, s:n, s:n, s:n, s:{s:s, s:{s:s}}, s:I}", "model_id", parent_id ? parent_id : "input",
				      "parent_model_id", "from_pass", "pass_run_config", "model_config", "type", "ONNXModel",
				      "config", "model_path", model_path, "size_bytes", (json_int_t)float_bytes));

	const json_t *passes = json_object_get(req->workflow, "passes");
	order = qd_workflow_pass_order(req->workflow);
	size_t npass = json_array_size(order), ip = 0, io;
	json_t *pn;
	json_array_foreach(order, io, pn) {
		const char *pname = json_string_value(pn);
		const json_t *pv = json_object_get(passes, pname);
		if (wf_canceled(&w)) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled before pass '%s'", pname);
			goto out;
		}
		const json_t *pc = pv;
		if (json_is_array(pv)) {
			pc = json_array_get(pv, 0);
			wf_log(&w, QD_LOG_WARN, "pass '%s' lists %zu alternative configurations; running the first "
			       "(searching alternatives lands with the search module)", pname, json_array_size(pv));
		}
		const struct qd_pass_vt *vt = qd_pass_find(json_string_value(json_object_get(pc, "type")));
		json_t *space = NULL;
		if ((rc = qd_pass_resolve(vt, pname, pc, &space, err)) < 0)
			goto out;
		const char *k; json_t *cand;
		json_object_foreach(space, k, cand)
			if (json_array_size(cand) > 1) {
				char *v0 = json_dumps(json_array_get(cand, 0), JSON_ENCODE_ANY | JSON_COMPACT);
				wf_log(&w, QD_LOG_WARN, "pass '%s': parameter '%s' has %zu candidate values; running "
				       "with the first (%s): searching lands with the search module", pname, k,
				       json_array_size(cand), v0 ? v0 : "?");
				free(v0);
			}
		json_t *cfg = qd_pass_space_first(space);
		json_decref(space);
		json_t *stats = json_object();
		char msg[256];
		snprintf(msg, sizeof msg, "pass %zu/%zu '%s' (%s)", ip + 1, npass, pname, vt->name);
		wf_progress(&w, 0.05 + 0.75 * (double)ip / (double)(npass ? npass : 1), msg);
		wf_log(&w, QD_LOG_INFO, "running %s", msg);
		struct qd_pass_ctx ctx = { .job_id = req->job_id, .name = pname, .hooks = hooks, .stats = stats,
					   .workflow = req->workflow, .data_paths = req->data_paths,
					   .threads = req->threads, .max_tensor_bytes = req->max_tensor_bytes,
					   .max_memory_bytes = req->max_memory_bytes,
					   .max_seconds = req->max_seconds };
		double ts = qd_now_mono();
		rc = vt->run(&ctx, m, cfg, err);
		double dt = qd_now_mono() - ts;
		if (rc < 0) {
			qd_err_wrap(err, "pass '%s' (%s) failed", pname, vt->name);
			json_decref(cfg);
			json_decref(stats);
			goto out;
		}
		json_t *qn = json_object_get(stats, "quantized_nodes");
		json_object_foreach(qn, k, cand) {
			json_t *c = json_object_get(counts, k);
			json_object_set_new(counts, k, json_integer((c ? json_integer_value(c) : 0) +
								    json_integer_value(cand)));
		}
		json_array_append_new(passes_out, json_pack("{s:s, s:s, s:O, s:o, s:f}", "name", pname, "type",
							      vt->name, "config", cfg, "stats", stats, "seconds", dt));
		json_decref(last_cfg);
		last_cfg = cfg;
		save_params = last_cfg;
		char *id = model_id(parent_id, vt->name, cfg);
		json_object_set_new(fp_nodes, id ? id : pname,
				    json_pack("{s:s, s:s?, s:s, s:O, s:f}", "model_id", id ? id : pname,
					      "parent_model_id", parent_id, "from_pass", vt->name, "pass_run_config", cfg,
					      "duration_seconds", dt));
		free(parent_id);
		parent_id = id;
		ip++;
	}

	/* save */
	wf_progress(&w, 0.8, "saving model");
	out_path = qd_asprintf("%s/model.onnx", req->out_dir);
	if (!out_path) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	struct qd_save_opts so = { 0 };
	if (save_params) {
		so.external_data = json_is_true(json_object_get(save_params, "save_as_external_data"));
		so.external_name = json_string_value(json_object_get(save_params, "external_data_name"));
		json_int_t th = json_integer_value(json_object_get(save_params, "size_threshold"));
		so.size_threshold = th > 0 ? (size_t)th : 0;
		if (json_is_integer(json_object_get(save_params, "size_threshold")) && th == 0)
			so.size_threshold = 1;   /* 0 = every tensor (1 byte threshold) */
	}
	if (so.external_data && !so.external_name)
		so.external_name = "model.onnx.data";
	char *data_path = qd_asprintf("%s/%s", req->out_dir, so.external_name ? so.external_name : "model.onnx.data");
	if (!data_path) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	unlink(data_path);   /* a stale data file from an earlier run must not be counted */
	if ((rc = qd_model_save_file(m, out_path, &so, err)) < 0) {
		free(data_path);
		qd_err_wrap(err, "cannot save the output model");
		goto out;
	}
	long long q_bytes = file_size(out_path), data_bytes = file_size(data_path);
	free(data_path);
	if (data_bytes > 0)
		q_bytes += data_bytes;
	wf_log(&w, QD_LOG_INFO, "saved '%s' (%lld bytes, float model %lld bytes)", out_path, q_bytes, float_bytes);

	/* metrics */
	wf_progress(&w, 0.85, "evaluating against the float model");
	const char *held = heldout_config(req->workflow);
	json_t *lowest = NULL;
	json_t *acc = held ? measure_on_data(&w, held, model_path, out_path, &lowest)
			   : measure_accuracy(&w, model_path, out_path);
	if (!held)
		wf_log(&w, QD_LOG_INFO, "accuracy measured on seeded random inputs: add a data config that no "
		       "pass calibrates with to measure it on held-out data");
	if (wf_canceled(&w)) {
		json_decref(acc);
		rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
		goto out;
	}
	if (w.eval_rc) {
		json_decref(acc);
		json_decref(lowest);
		*err = w.eval_err;
		rc = w.eval_rc;
		goto out;
	}
	json_int_t total = 0;
	{
		const char *k; json_t *v;
		json_object_foreach(counts, k, v)
			total += json_integer_value(v);
	}
	metrics = json_pack("{s:{s:I, s:I, s:f}, s:O, s:I, s:o, s:O, s:O, s:f}",
			    "size", "float_bytes", (json_int_t)float_bytes, "quantized_bytes", (json_int_t)q_bytes,
			    "ratio", float_bytes > 0 ? (double)q_bytes / (double)float_bytes : 0.0,
			    "quantized_nodes", counts, "quantized_nodes_total", total,
			    "accuracy", acc, "passes", passes_out, "ignored", ignored, "seconds", qd_now_mono() - t0);
	if (!metrics) {
		json_decref(lowest);
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (lowest)
		json_object_set_new(metrics, "lowest_snr_activations", lowest);
	json_t *last = json_object_get(fp_nodes, parent_id ? parent_id : "");
	if (last) {
		json_object_set_new(last, "model_config", json_pack("{s:s, s:{s:s}}", "type", "ONNXModel", "config",
								    "model_path", out_path));
		json_object_set_new(last, "size_bytes", json_integer(q_bytes));
		json_object_set(last, "metrics", acc);
	}
	json_t *fp = json_pack("{s:O, s:{}, s:b}", "nodes", fp_nodes, "objective_dict", "is_marked_pareto_frontier", 0);
	rc = fp ? write_json(req->out_dir, "footprint.json", fp, err) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	json_decref(fp);
	if (rc == 0)
		rc = write_json(req->out_dir, "metrics.json", metrics, err);
	if (rc < 0)
		goto out;
	wf_progress(&w, 1.0, "done");
	if (result) {
		*result = metrics;
		metrics = NULL;
	}
	rc = 0;
out:
	json_decref(metrics);
	json_decref(ignored);
	json_decref(order);
	json_decref(passes_out);
	json_decref(counts);
	json_decref(fp_nodes);
	json_decref(last_cfg);
	free(out_path);
	free(parent_id);
	qd_model_free(m);
	return rc;
}
