/* engine/engine.c — the executor core: load (compile graphs, check every node against the
 * op table, propagate dtypes), the run loop with its memory plan, hooks, cancel polling,
 * profiling, and the helpers kernels use (qd_ctx_*).
 *
 * DESIGN
 * - Values live in slots (one global array); names are resolved through scopes (one per
 *   graph, chained to the enclosing graph) so subgraph bodies see outer-scope names and
 *   may shadow nothing by accident.
 * - Initializers and Constant nodes become constant slots at load; Constant nodes are
 *   not run.
 * - Memory plan: each graph knows, per node, which of its own slots have their last use
 *   there (a node with subgraphs "uses" every outer name the subgraphs read); those are
 *   freed right after the node. Outputs nobody reads are freed right after the hook saw
 *   them. Peak = constants + the high-water mark of everything else.
 * - Shapes are never taken from value_info: kernels compute them from the actual inputs. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <unistd.h>
#include <cblas.h>
#include "engine/engine_internal.h"

const struct qd_op qd_ops[QD_OP__COUNT] = {
#define QD_OP(id, name, dom, since, until, tidx, types, out, check, kernel) \
	{ name, dom, since, until, tidx, types, out, check, kernel },
#include "engine/ops.def"
#undef QD_OP
};
_Static_assert(QD_ARRAY_LEN(qd_ops) == QD_OP__COUNT, "op table and enum disagree");

int qd_check_none(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	(void)n; (void)in_dt; (void)out_dt; (void)err;
	return 0;
}

static bool dom_eq(const char *a, const char *b)
{
	if (!a || !strcmp(a, "ai.onnx")) a = "";
	if (!b || !strcmp(b, "ai.onnx")) b = "";
	return !strcmp(a, b);
}

const struct qd_op *qd_op_find(const char *op_type, const char *domain, int64_t opset,
			       char *why, size_t why_len)
{
	int lo = 1 << 30, hi = 0;
	bool seen = false;
	for (int i = 0; i < QD_OP__COUNT; i++) {
		const struct qd_op *o = &qd_ops[i];
		if (strcmp(o->op_type, op_type) || !dom_eq(o->domain, domain)) continue;
		seen = true;
		if (opset >= o->since && opset <= o->until) return o;
		lo = QD_MIN(lo, o->since);
		hi = QD_MAX(hi, o->until);
	}
	if (why) {
		if (seen)
			snprintf(why, why_len, "opset %lld of '%s' not supported (engine covers %d-%d)",
				 (long long)opset, op_type, lo, hi);
		else
			snprintf(why, why_len, "op '%s' (domain '%s') not supported", op_type,
				 domain && *domain ? domain : "ai.onnx");
	}
	return NULL;
}

/* ---- scopes: name -> slot, chained to the parent graph's scope ---- */
struct scope {
	char **keys; int *vals; size_t cap, n;
	struct scope *parent;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static int scope_get_local(const struct scope *sc, const char *name)
{
	if (!sc->cap) return -1;
	for (size_t i = hash_str(name) & (sc->cap - 1);; i = (i + 1) & (sc->cap - 1)) {
		if (!sc->keys[i]) return -1;
		if (!strcmp(sc->keys[i], name)) return sc->vals[i];
	}
}

static int scope_get(const struct scope *sc, const char *name, bool *outer)
{
	*outer = false;
	for (; sc; sc = sc->parent, *outer = true) {
		int v = scope_get_local(sc, name);
		if (v >= 0) return v;
	}
	return -1;
}

static int scope_put(struct scope *sc, const char *name, int val)
{
	if ((sc->n + 1) * 2 > sc->cap) {
		size_t nc = sc->cap ? sc->cap * 2 : 64;
		char **nk = calloc(nc, sizeof(*nk));
		int *nv = calloc(nc, sizeof(*nv));
		if (!nk || !nv) { free(nk); free(nv); return -QD_ENOMEM; }
		for (size_t i = 0; i < sc->cap; i++) {
			if (!sc->keys[i]) continue;
			size_t j = hash_str(sc->keys[i]) & (nc - 1);
			while (nk[j]) j = (j + 1) & (nc - 1);
			nk[j] = sc->keys[i];
			nv[j] = sc->vals[i];
		}
		free(sc->keys);
		free(sc->vals);
		sc->keys = nk; sc->vals = nv; sc->cap = nc;
	}
	size_t i = hash_str(name) & (sc->cap - 1);
	while (sc->keys[i]) {
		if (!strcmp(sc->keys[i], name)) { sc->vals[i] = val; return 0; }
		i = (i + 1) & (sc->cap - 1);
	}
	sc->keys[i] = (char *)name; /* borrowed from the slot */
	sc->vals[i] = val;
	sc->n++;
	return 0;
}

static void scope_free(struct scope *sc)
{
	free(sc->keys);
	free(sc->vals);
}

/* ---- slots ---- */
struct qd_slot *qd_engine_slot(struct qd_engine *e, int id)
{
	return &e->slots[id];
}

static int slot_new(struct qd_engine *e, const char *name, struct qd_egraph *owner)
{
	if (e->n_slots == e->cap_slots) {
		int nc = e->cap_slots ? e->cap_slots * 2 : 256;
		struct qd_slot *ns = realloc(e->slots, nc * sizeof(*ns));
		if (!ns) return -QD_ENOMEM;
		e->slots = ns;
		e->cap_slots = nc;
	}
	struct qd_slot *s = &e->slots[e->n_slots];
	memset(s, 0, sizeof(*s));
	s->name = strdup(name);
	if (!s->name) return -QD_ENOMEM;
	s->owner = owner;
	return e->n_slots++;
}

/* ---- buffer pool: activations are recycled instead of going back to malloc (big
 * mallocs are fresh mmaps whose first touch page-faults). Best fit within 2x. ---- */
#define POOL_MAX 128

static void *pool_get(struct qd_engine *e, size_t n)
{
	int best = -1;
	for (int i = 0; i < e->n_pool; i++) {
		size_t c = e->pool[i].cap;
		if (c >= n && c <= 2 * n + 4096 && (best < 0 || c < e->pool[best].cap)) best = i;
	}
	if (best < 0) return malloc(n ? n : 1);
	void *p = e->pool[best].p;
	e->pool_bytes -= e->pool[best].cap;
	e->pool[best] = e->pool[--e->n_pool];
	return p;
}

static void pool_put(struct qd_engine *e, void *p, size_t cap)
{
	if (!p) return;
	/* keep at most about the activation peak seen so far: live + pooled <= 2 x peak */
	size_t limit = QD_MAX(e->peak_bytes, (size_t)16 << 20);
	if (cap < 4096 || !e->pool || cap > limit) { free(p); return; }
	while (e->n_pool && (e->n_pool == POOL_MAX || e->pool_bytes + cap > limit)) { /* evict the smallest */
		int s = 0;
		for (int i = 1; i < e->n_pool; i++) if (e->pool[i].cap < e->pool[s].cap) s = i;
		if (e->pool[s].cap >= cap) { free(p); return; }
		e->pool_bytes -= e->pool[s].cap;
		free(e->pool[s].p);
		e->pool[s] = e->pool[--e->n_pool];
	}
	e->pool[e->n_pool++] = (struct qd_pool_buf){ p, cap };
	e->pool_bytes += cap;
}

static void pool_free(struct qd_engine *e)
{
	for (int i = 0; i < e->n_pool; i++) free(e->pool[i].p);
	e->n_pool = 0;
	e->pool_bytes = 0;
}

void qd_engine_slot_clear(struct qd_engine *e, int id)
{
	struct qd_slot *s = &e->slots[id];
	if (!s->has) return;
	if (!s->is_const) e->live_bytes -= s->t.nbytes;
	if (s->is_const) { if (!s->borrowed) free(s->t.data); }
	else pool_put(e, s->t.data, s->t.nbytes);
	free(s->t.name);
	memset(&s->t, 0, sizeof(s->t));
	s->has = false;
}

void qd_engine_slot_set(struct qd_engine *e, int id, struct qd_tensor *t)
{
	qd_engine_slot_clear(e, id);
	struct qd_slot *s = &e->slots[id];
	s->t = *t;
	memset(t, 0, sizeof(*t));
	s->has = true;
	if (!s->is_const) {
		e->live_bytes += s->t.nbytes;
		if (e->live_bytes > e->peak_bytes) e->peak_bytes = e->live_bytes;
	}
}

/* ---- limits ---- */
void qd_engine_opts_resolve(const struct qd_engine_opts *opts, struct qd_engine_opts *out)
{
	struct qd_engine_opts o = {0};
	if (opts) o = *opts;
	if (o.threads <= 0) o.threads = 1;
	if (!o.max_tensor_bytes) o.max_tensor_bytes = QD_ENGINE_DEFAULT_MAX_TENSOR;
	if (!o.max_memory_bytes) {
		o.max_memory_bytes = QD_ENGINE_DEFAULT_MAX_MEMORY;
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
		if (pages > 0 && psz > 0 && (uint64_t)pages * (uint64_t)psz < o.max_memory_bytes)
			o.max_memory_bytes = (size_t)pages * (size_t)psz;
	}
	if (!(o.max_seconds > 0) || o.max_seconds > 1e9) o.max_seconds = 0;  /* NaN, <= 0: none */
	*out = o;
}

/* "16 GiB", "1.5 MiB", "123 bytes" */
static const char *bytes_str(size_t n, char *buf, size_t len)
{
	if (n == QD_ENGINE_NO_LIMIT) snprintf(buf, len, "unlimited");
	else if (n >= ((size_t)1 << 30)) snprintf(buf, len, "%.4g GiB", n / 1073741824.0);
	else if (n >= ((size_t)1 << 20)) snprintf(buf, len, "%.4g MiB", n / 1048576.0);
	else snprintf(buf, len, "%zu bytes", n);
	return buf;
}

static size_t held_total(const struct qd_engine *e)
{
	return e->live_bytes + e->const_bytes + e->scratch_cap + e->held_bytes;
}

/* 0 when `extra` more bytes fit under the memory limit; else the QD_ELIMIT error. */
static int check_memory(struct qd_ctx *c, size_t extra, const char *what)
{
	struct qd_engine *e = c->e;
	size_t have = held_total(e) + c->pending, lim = e->opts.max_memory_bytes;
	if (lim == QD_ENGINE_NO_LIMIT || (extra <= lim && have <= lim - extra)) return 0;
	char b1[32], b2[32], b3[32];
	return qd_ctx_fail(c, QD_ELIMIT, "cannot allocate %s: %s more with %s already held is over the memory "
			   "limit of %s (max_memory_bytes, --max-memory-mb)", what, bytes_str(extra, b1, sizeof(b1)),
			   bytes_str(have, b2, sizeof(b2)), bytes_str(lim, b3, sizeof(b3)));
}

static int check_tensor(struct qd_ctx *c, size_t n, const char *what)
{
	size_t lim = c->e->opts.max_tensor_bytes;
	if (lim == QD_ENGINE_NO_LIMIT || n <= lim) return 0;
	char b1[32], b2[32];
	return qd_ctx_fail(c, QD_ELIMIT, "cannot allocate %s: %s is over the tensor limit of %s "
			   "(max_tensor_bytes, --max-tensor-mb)", what, bytes_str(n, b1, sizeof(b1)),
			   bytes_str(lim, b2, sizeof(b2)));
}

int qd_ctx_hold(struct qd_ctx *c, size_t extra, const char *what)
{
	int rc = check_tensor(c, extra, what);
	if (!rc) rc = check_memory(c, extra, what);
	if (!rc) c->e->held_bytes += extra;
	return rc;
}

void qd_ctx_unhold(struct qd_ctx *c, size_t bytes)
{
	struct qd_engine *e = c->e;
	e->held_bytes = bytes > e->held_bytes ? 0 : e->held_bytes - bytes;
}

int qd_engine_poll(struct qd_engine *e, const volatile int *cancel, struct qd_err *err)
{
	if (cancel && *cancel) return qd_err_set(err, QD_ECANCELED, "", "run canceled");
	if (e->deadline > 0 && qd_now_mono() > e->deadline)
		return qd_err_set(err, QD_ETIMEOUT, "", "model ran longer than the time limit of %g s "
				  "(max_seconds, --max-seconds)", e->opts.max_seconds);
	return 0;
}

/* ---- kernel context helpers ---- */
int qd_ctx_poll(struct qd_ctx *c)
{
	int rc = qd_engine_poll(c->e, c->cancel, c->err);
	if (rc && c->err && c->err->code == QD_ETIMEOUT)
		qd_err_set(c->err, QD_ETIMEOUT, c->n->name, "node '%s' (%s): model ran longer than the time "
			   "limit of %g s (max_seconds, --max-seconds)", c->n->name, c->n->op->op_type,
			   c->e->opts.max_seconds);
	return rc;
}

int qd_ctx_fail(struct qd_ctx *c, int code, const char *fmt, ...)
{
	char buf[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return qd_err_set(c->err, code, c->n->name, "node '%s' (%s): %s", c->n->name,
			  c->n->op->op_type, buf);
}

const struct qd_tensor *qd_ctx_in(struct qd_ctx *c, int i)
{
	if (i >= c->n_in || !c->in[i]) {
		qd_ctx_fail(c, QD_EMODEL, "required input %d is missing", i);
		return NULL;
	}
	return c->in[i];
}

static struct qd_tensor *ctx_out(struct qd_ctx *c, int i, int dtype, int ndim, const int64_t *dims,
				 bool zero)
{
	if (i < 0 || i >= c->n_out || !c->out[i]) {
		/* past the node's outputs: callers check c->n_out / qd_ctx_wants() first */
		qd_ctx_fail(c, QD_EMODEL, "output %d is missing (the node has %d)", i, c->n_out);
		return NULL;
	}
	struct qd_tensor *t = c->out[i];
	qd_tensor_release(t);
	/* shape/size checks before anything is allocated, data from the pool */
	int rc = 0;
	size_t es = qd_dtype_size(dtype);
	char b[160];
	memset(t, 0, sizeof(*t));
	if (!es || ndim < 0 || ndim > QD_MAX_DIMS) {
		qd_ctx_fail(c, QD_EINVAL, "cannot make output %d with dtype %d and rank %d", i, dtype, ndim);
		return NULL;
	}
	uint64_t bytes = es;
	bool over = false;
	for (int k = 0; k < ndim; k++) {
		if (dims[k] < 0) {
			qd_ctx_fail(c, QD_ESHAPE, "output %d would have a negative dim: %s", i,
				    qd_dims_str(ndim, dims, b, sizeof(b)));
			return NULL;
		}
		if (__builtin_mul_overflow(bytes, (uint64_t)dims[k], &bytes)) over = true;
	}
	for (int k = 0; k < ndim; k++) if (!dims[k]) { bytes = 0; over = false; }
	if (over || bytes > SIZE_MAX / 2) { bytes = SIZE_MAX / 2; over = true; }
	{
		char what[224];
		snprintf(what, sizeof(what), "output %d (%s %s)", i, qd_dtype_name(dtype),
			 qd_dims_str(ndim, dims, b, sizeof(b)));
		if (check_tensor(c, (size_t)bytes, what) || check_memory(c, (size_t)bytes, what)) return NULL;
	}
	if (over) rc = -QD_ELIMIT;
	if (!rc) {
		memset(t, 0, sizeof(*t));
		t->dtype = dtype;
		t->ndim = ndim;
		if (ndim) memcpy(t->dims, dims, ndim * sizeof(int64_t));
		t->nbytes = (size_t)bytes;
		t->data = pool_get(c->e, t->nbytes);
		if (!t->data) rc = -QD_ENOMEM;
		else {
			c->pending += t->nbytes;
			if (zero) memset(t->data, 0, t->nbytes);
		}
	}
	if (rc) {
		qd_ctx_fail(c, -rc, "cannot allocate output %d (%s %s)", i, qd_dtype_name(dtype),
			    qd_dims_str(ndim, dims, b, sizeof(b)));
		return NULL;
	}
	return t;
}

struct qd_tensor *qd_ctx_out(struct qd_ctx *c, int i, int dtype, int ndim, const int64_t *dims)
{
	return ctx_out(c, i, dtype, ndim, dims, false);
}

struct qd_tensor *qd_ctx_out_zero(struct qd_ctx *c, int i, int dtype, int ndim, const int64_t *dims)
{
	return ctx_out(c, i, dtype, ndim, dims, true);
}

int qd_ctx_out_copy(struct qd_ctx *c, int i, const struct qd_tensor *t, int ndim, const int64_t *dims)
{
	struct qd_tensor *o = qd_ctx_out(c, i, t->dtype, ndim, dims);
	if (!o) return -c->err->code;
	if (o->nbytes != t->nbytes)
		return qd_ctx_fail(c, QD_ESHAPE, "cannot reshape %zu bytes into %zu", t->nbytes, o->nbytes);
	if (t->nbytes) memcpy(o->data, t->data, t->nbytes);
	return 0;
}

void *qd_ctx_scratch(struct qd_ctx *c, size_t n)
{
	struct qd_engine *e = c->e;
	if (n > e->scratch_cap) {
		free(e->scratch);
		e->scratch = NULL;
		e->scratch_cap = 0;
		if (check_tensor(c, n, "scratch buffer") || check_memory(c, n, "scratch buffer")) return NULL;
		if (!(e->scratch = malloc(n ? n : 1))) {
			qd_ctx_fail(c, QD_ENOMEM, "cannot allocate %zu bytes of scratch", n);
			return NULL;
		}
		e->scratch_cap = n;
	}
	return e->scratch;
}

bool qd_ctx_wants(const struct qd_ctx *c, int i)
{
	return i >= 0 && i < c->n_out && c->want[i];
}

/* ---- load ---- */
static int tensor_type_dtype(const Onnx__TypeProto *tp)
{
	if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
	    tp->tensor_type->has_elem_type)
		return tp->tensor_type->elem_type;
	return 0;
}

struct loader {
	struct qd_engine *e;
	struct qd_err *err;
};

static int compile_graph(struct loader *L, const Onnx__GraphProto *gp, struct qd_egraph *parent,
			 struct scope *psc, struct qd_egraph **out, char ***free_names, int *n_free_names);

static void enode_free(struct qd_enode *n);

static void egraph_free(struct qd_egraph *g)
{
	if (!g) return;
	for (int i = 0; i < g->n_nodes; i++) enode_free(&g->nodes[i]);
	free(g->nodes);
	free(g->inputs);
	free(g->outputs);
	free(g->owned);
	free(g);
}

static void enode_free(struct qd_enode *n)
{
	for (int i = 0; i < n->n_sub; i++) egraph_free(n->sub[i]);
	free(n->sub);
	free(n->sub_attr);
	free(n->name);
	free(n->in);
	free(n->out);
	free(n->free_after);
	if (n->priv && n->priv_free) n->priv_free(n->priv);
	if (n->fused) { enode_free(n->fused); free(n->fused); }
	if (n->epi_only) { enode_free(n->epi_only); free(n->epi_only); }
	free(n->cover);
}

void qd_enode_release(struct qd_enode *n)
{
	enode_free(n);
}

/* last_use[i] = v, growing the table (new entries -1). */
static int lu_set(int **lu, int *cap, int i, int v)
{
	if (i >= *cap) {
		int nc = QD_MAX(i + 1, *cap * 2 + 16);
		int *n = realloc(*lu, nc * sizeof(int));
		if (!n) return -QD_ENOMEM;
		for (int k = *cap; k < nc; k++) n[k] = -1;
		*lu = n;
		*cap = nc;
	}
	(*lu)[i] = v;
	return 0;
}

static int add_name(char ***v, int *n, const char *s)
{
	for (int i = 0; i < *n; i++)
		if (!strcmp((*v)[i], s)) return 0;
	char **nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (!nv) return -QD_ENOMEM;
	*v = nv;
	nv[(*n)++] = (char *)s;   /* borrowed from the model */
	return 0;
}

static int int_push(int **v, int *n, int x)
{
	if (*n == 0 || (*n & (*n - 1)) == 0) {   /* capacity: the next power of two */
		int *nv = realloc(*v, (size_t)(*n ? *n * 2 : 1) * sizeof(int));
		if (!nv) return -QD_ENOMEM;
		*v = nv;
	}
	int *nv = *v;
	nv[(*n)++] = x;
	return 0;
}

/* t is moved into a new constant slot; borrowed: its data points into the model. */
static int define_const(struct loader *L, struct scope *sc, struct qd_egraph *g,
			struct qd_tensor *t, const char *name, bool borrowed)
{
	int id = slot_new(L->e, name, g);
	if (id < 0) return qd_err_set(L->err, QD_ENOMEM, name, "out of memory");
	struct qd_slot *s = &L->e->slots[id];
	s->is_const = true;
	s->borrowed = borrowed;
	s->dt = t->dtype;
	free(t->name);
	t->name = strdup(name);
	qd_engine_slot_set(L->e, id, t);
	L->e->const_bytes += s->t.nbytes;
	if (scope_put(sc, s->name, id)) return qd_err_set(L->err, QD_ENOMEM, name, "out of memory");
	return 0;
}

/* The error for node ni of gp reading `nm`, which nothing before it defines: names the
 * cycle when the node itself or a later node produces it. */
static int undefined_input(struct qd_err *err, const Onnx__GraphProto *gp, size_t ni, const char *node,
			   const char *nm)
{
	for (size_t k = ni; k < gp->n_node; k++) {
		const Onnx__NodeProto *p = gp->node[k];
		for (size_t o = 0; o < p->n_output; o++) {
			if (!p->output[o] || strcmp(p->output[o], nm)) continue;
			if (k == ni)
				return qd_err_set(err, QD_EMODEL, node, "node '%s': input '%s' is its own output "
						  "(a cycle)", node, nm);
			return qd_err_set(err, QD_EMODEL, node, "node '%s': input '%s' is produced by a later "
					  "node '%s' (a cycle, or nodes not in topological order)", node, nm,
					  p->name && *p->name ? p->name : p->op_type ? p->op_type : "?");
		}
	}
	return qd_err_set(err, QD_EMODEL, node, "node '%s': input '%s' is not produced by an earlier node, "
			  "an initializer or a graph input", node, nm);
}

/* Compiles one graph. free_names: names read in this graph (or its subgraphs) that it
 * does not define (outer-scope references), borrowed from the model. */
static int compile_graph(struct loader *L, const Onnx__GraphProto *gp, struct qd_egraph *parent,
			 struct scope *psc, struct qd_egraph **out, char ***free_names, int *n_free_names)
{
	struct qd_engine *e = L->e;
	struct qd_err *err = L->err;
	struct scope sc = { .parent = psc };
	struct qd_egraph *g = calloc(1, sizeof(*g));
	int rc = 0;
	int *last_use = NULL;  /* per slot id - slot_base: node index of last use here */
	int lu_cap = 0;
	int slot_base = e->n_slots;
	char **fn = NULL;
	int nfn = 0;
	char *is_out = NULL;
	if (!g) return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	g->parent = parent;
	g->proto = gp;
	g->nodes = calloc(gp->n_node ? gp->n_node : 1, sizeof(*g->nodes));
	if (!g->nodes) { rc = qd_err_set(err, QD_ENOMEM, "", "out of memory"); goto out; }

	/* initializers */
	for (size_t i = 0; i < gp->n_initializer; i++) {
		const Onnx__TensorProto *tp = gp->initializer[i];
		struct qd_tensor t;
		bool view = qd_tensor_view_proto(tp, &t);   /* weights are not copied when possible */
		if (!view && (rc = qd_tensor_from_proto(tp, &t, err))) goto out;
		if ((rc = define_const(L, &sc, g, &t, tp->name ? tp->name : "", view))) {
			if (!view) qd_tensor_release(&t);
			goto out;
		}
	}
	/* inputs (those not backed by an initializer) */
	for (size_t i = 0; i < gp->n_input; i++) {
		const char *nm = gp->input[i]->name ? gp->input[i]->name : "";
		if (scope_get_local(&sc, nm) >= 0 && !parent) continue;
		const Onnx__TypeProto *tp = gp->input[i]->type;
		if (tp && tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
		    tp->value_case != ONNX__TYPE_PROTO__VALUE__NOT_SET) {
			rc = qd_err_set(err, QD_EUNSUPPORTED, nm,
					"input '%s' is not a tensor (sequence/map/optional types are not supported)", nm);
			goto out;
		}
		int id = slot_new(e, nm, g);
		if (id < 0) { rc = qd_err_set(err, QD_ENOMEM, nm, "out of memory"); goto out; }
		e->slots[id].dt = tensor_type_dtype(tp);
		if (scope_put(&sc, e->slots[id].name, id) || int_push(&g->inputs, &g->n_inputs, id)) {
			rc = qd_err_set(err, QD_ENOMEM, nm, "out of memory");
			goto out;
		}
	}

	for (size_t ni = 0; ni < gp->n_node; ni++) {
		const Onnx__NodeProto *np = gp->node[ni];
		struct qd_enode *n = &g->nodes[g->n_nodes];
		char why[200];
		memset(n, 0, sizeof(*n));
		n->proto = np;
		const char *opt = np->op_type ? np->op_type : "";
		n->name = (np->name && *np->name) ? strdup(np->name) : qd_asprintf("%s#%zu", opt, ni);
		if (!n->name) { rc = qd_err_set(err, QD_ENOMEM, "", "out of memory"); goto out; }
		g->n_nodes++;
		const char *dom = qd_node_domain(np);
		n->opset = qd_model_opset(e->m, dom);
		if (n->opset <= 0 && !*dom) n->opset = 1;
		n->op = qd_op_find(opt, dom, n->opset, why, sizeof(why));
		if (!n->op) {
			rc = qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s': %s", n->name, why);
			goto out;
		}
		n->prof_idx = (int)(n->op - qd_ops);
		if (np->n_input > QD_CTX_MAX_IO || np->n_output > QD_CTX_MAX_IO) {
			rc = qd_err_set(err, QD_EUNSUPPORTED, n->name, "node '%s' (%s): too many inputs/outputs "
					"(%zu/%zu, the engine takes at most %d)", n->name, opt, np->n_input,
					np->n_output, QD_CTX_MAX_IO);
			goto out;
		}
		if (np->n_output == 0) {  /* every ONNX op has at least one output */
			rc = qd_err_set(err, QD_EMODEL, n->name, "node '%s' (%s) has no outputs", n->name, opt);
			goto out;
		}
		/* subgraphs */
		for (size_t a = 0; a < np->n_attribute; a++) {
			const Onnx__AttributeProto *at = np->attribute[a];
			if (!at->g) continue;
			char **sfn = NULL;
			int nsfn = 0;
			struct qd_egraph *sg = NULL;
			struct qd_egraph **ns = realloc(n->sub, (n->n_sub + 1) * sizeof(*ns));
			const char **na = realloc(n->sub_attr, (n->n_sub + 1) * sizeof(*na));
			if (ns) n->sub = ns;
			if (na) n->sub_attr = na;
			if (!ns || !na) { rc = qd_err_set(err, QD_ENOMEM, "", "out of memory"); goto out; }
			if ((rc = compile_graph(L, at->g, g, &sc, &sg, &sfn, &nsfn))) {
				qd_err_wrap(err, "in subgraph '%s' of node '%s'", at->name ? at->name : "", n->name);
				free(sfn);
				goto out;
			}
			n->sub[n->n_sub] = sg;
			n->sub_attr[n->n_sub++] = at->name;
			/* outer names the body reads count as inputs of this node */
			for (int k = 0; k < nsfn; k++) {
				bool outer;
				int id = scope_get(&sc, sfn[k], &outer);
				if (id < 0) {
					rc = qd_err_set(err, QD_EMODEL, n->name,
							"node '%s': subgraph reads '%s', which is not defined",
							n->name, sfn[k]);
					free(sfn);
					goto out;
				}
				if (outer) { if ((rc = add_name(&fn, &nfn, sfn[k]))) { free(sfn); goto oom; } }
				else if (!e->slots[id].is_const) {
					if (lu_set(&last_use, &lu_cap, id - slot_base, g->n_nodes - 1)) { free(sfn); goto oom; }
				}
			}
			free(sfn);
		}
		/* inputs */
		n->n_in = (int)np->n_input;
		n->in = malloc((n->n_in + 1) * sizeof(int));
		if (!n->in) goto oom;
		int in_dt[QD_CTX_MAX_IO] = {0}, out_dt[QD_CTX_MAX_IO] = {0};
		for (int i = 0; i < n->n_in; i++) {
			const char *nm = np->input[i];
			n->in[i] = -1;
			if (!nm || !*nm) continue;
			bool outer;
			int id = scope_get(&sc, nm, &outer);
			if (id < 0) {
				rc = undefined_input(err, gp, ni, n->name, nm);
				goto out;
			}
			n->in[i] = id;
			in_dt[i] = e->slots[id].dt;
			if (outer) { if ((rc = add_name(&fn, &nfn, nm))) goto oom; }
		}
		/* types */
		const struct qd_op *op = n->op;
		int tdt = op->tidx < n->n_in ? in_dt[op->tidx] : 0;
		if (tdt && op->types != QD_TM_ANY && (tdt >= 32 || !(op->types & QD_TM(tdt)))) {
			rc = qd_err_set(err, QD_EUNSUPPORTED, n->name,
					"node '%s' (%s): dtype %s of input %d not supported", n->name,
					op->op_type, qd_dtype_name(tdt), op->tidx);
			goto out;
		}
		n->n_out = (int)np->n_output;
		for (int i = 0; i < n->n_out; i++) {
			switch (op->out) {
			case QD_OUT_SAME: out_dt[i] = tdt; break;
			case QD_OUT_BOOL: out_dt[i] = QD_DT_BOOL; break;
			case QD_OUT_I64: out_dt[i] = QD_DT_INT64; break;
			case QD_OUT_F32: out_dt[i] = QD_DT_FLOAT; break;
			case QD_OUT_TO: out_dt[i] = (int)qd_node_attr_int(np, "to", 0); break;
			case QD_OUT_LIKE1: out_dt[i] = n->n_in > 1 ? in_dt[1] : 0; break;
			case QD_OUT_CUSTOM: out_dt[i] = 0; break;
			}
		}
		if ((rc = op->check(n, in_dt, out_dt, err))) {
			if (strstr(err->msg, n->name) == NULL)
				qd_err_wrap(err, "node '%s' (%s)", n->name, op->op_type);
			goto out;
		}
		/* Constant: folded into a constant slot, never run */
		if (op == &qd_ops[QD_OP_Constant]) {
			struct qd_tensor *ct = n->priv;
			if (n->n_out != 1 || !np->output[0] || !*np->output[0]) {
				rc = qd_err_set(err, QD_EMODEL, n->name, "node '%s' (Constant) needs one output", n->name);
				goto out;
			}
			const Onnx__AttributeProto *va = qd_node_attr(np, "value");
			struct qd_tensor v;
			if (va && va->t && qd_tensor_view_proto(va->t, &v) && v.dtype == ct->dtype &&
			    v.nbytes == ct->nbytes) {
				if ((rc = define_const(L, &sc, g, &v, np->output[0], true))) goto out;
			} else if ((rc = define_const(L, &sc, g, ct, np->output[0], false))) goto out;
			enode_free(n);
			g->n_nodes--;
			continue;
		}
		/* outputs */
		n->out = malloc((n->n_out + 1) * sizeof(int));
		if (!n->out) goto oom;
		for (int i = 0; i < n->n_out; i++) {
			const char *nm = np->output[i];
			n->out[i] = -1;
			if (!nm || !*nm) continue;
			if (scope_get_local(&sc, nm) >= 0) {
				rc = qd_err_set(err, QD_EMODEL, n->name, "node '%s': output '%s' is defined twice",
						n->name, nm);
				goto out;
			}
			int id = slot_new(e, nm, g);
			if (id < 0 || scope_put(&sc, e->slots[id].name, id)) goto oom;
			e->slots[id].dt = out_dt[i];
			n->out[i] = id;
		}
		/* last uses: outputs are "used" by their producer (dead outputs freed there) */
		for (int i = 0; i < n->n_out; i++)
			if (n->out[i] >= 0 && lu_set(&last_use, &lu_cap, n->out[i] - slot_base, g->n_nodes - 1))
				goto oom;
		for (int i = 0; i < n->n_in; i++) {
			int id = n->in[i];
			if (id >= slot_base && !e->slots[id].is_const &&
			    lu_set(&last_use, &lu_cap, id - slot_base, g->n_nodes - 1))
				goto oom;
		}
	}
	if (lu_set(&last_use, &lu_cap, e->n_slots - slot_base, -1)) goto oom;
	/* outputs */
	for (size_t i = 0; i < gp->n_output; i++) {
		const char *nm = gp->output[i]->name ? gp->output[i]->name : "";
		bool outer;
		int id = scope_get(&sc, nm, &outer);
		if (id < 0) {
			rc = qd_err_set(err, QD_EMODEL, nm, "graph output '%s' is not produced by any node", nm);
			goto out;
		}
		if (outer && (rc = add_name(&fn, &nfn, nm))) goto oom;
		if (int_push(&g->outputs, &g->n_outputs, id)) goto oom;
	}
	/* memory plan: free owned non-const slots after their last use, unless an output */
	is_out = calloc(e->n_slots - slot_base + 1, 1);
	if (!is_out) goto oom;
	for (int k = 0; k < g->n_outputs; k++)
		if (g->outputs[k] >= slot_base) is_out[g->outputs[k] - slot_base] = 1;
	for (int id = slot_base; id < e->n_slots; id++) {
		struct qd_slot *s = &e->slots[id];
		if (s->owner != g || s->is_const) continue;
		if (int_push(&g->owned, &g->n_owned, id)) goto oom;
		if (is_out[id - slot_base]) continue;
		int lu = id - slot_base < lu_cap ? last_use[id - slot_base] : -1;
		if (lu < 0) continue; /* graph input nobody reads: freed when the run ends */
		if (int_push(&g->nodes[lu].free_after, &g->nodes[lu].n_free, id)) goto oom;
	}
	*out = g;
	g = NULL;
	if (free_names) { *free_names = fn; *n_free_names = nfn; fn = NULL; }
	goto out;
oom:
	rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
out:
	free(is_out);
	free(fn);
	free(last_use);
	scope_free(&sc);
	egraph_free(g);
	return rc;
}

static const struct qd_engine *sort_engine;  /* qsort has no user pointer */
static int cmp_input(const void *a, const void *b)
{
	const struct qd_engine *e = sort_engine;
	return strcmp(e->slots[e->main->inputs[*(const int *)a]].name,
		      e->slots[e->main->inputs[*(const int *)b]].name);
}

/* in_vi: the declared type of each main-graph input; in_sorted: input positions by name
 * (binding a run's inputs is a binary search, not a scan per input). */
static int index_inputs(struct qd_engine *e, struct qd_err *err)
{
	const Onnx__GraphProto *g = e->m->proto->graph;
	int n = e->main->n_inputs;
	e->in_vi = calloc(n + 1, sizeof(*e->in_vi));
	e->in_sorted = calloc(n + 1, sizeof(int));
	if (!e->in_vi || !e->in_sorted) return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	/* graph inputs that are not initializers, in order (compile_graph made a slot for each) */
	int k = 0;
	for (size_t j = 0; j < g->n_input && k < n; j++) {
		const char *nm = g->input[j]->name ? g->input[j]->name : "";
		if (strcmp(e->slots[e->main->inputs[k]].name, nm)) continue;  /* backed by an initializer */
		e->in_vi[k++] = g->input[j];
	}
	if (k != n) return qd_err_set(err, QD_EINTERNAL, "", "graph inputs and slots disagree");
	for (int i = 0; i < n; i++) e->in_sorted[i] = i;
	sort_engine = e;
	qsort(e->in_sorted, n, sizeof(int), cmp_input);
	sort_engine = NULL;
	return 0;
}

/* Position of the main-graph input called nm, or -1. */
static int find_input(const struct qd_engine *e, const char *nm)
{
	int lo = 0, hi = e->main->n_inputs - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2, k = e->in_sorted[mid];
		int c = strcmp(e->slots[e->main->inputs[k]].name, nm);
		if (!c) return k;
		if (c < 0) lo = mid + 1; else hi = mid - 1;
	}
	return -1;
}

/* OpenBLAS's idle worker threads spin in sched_yield for 2^28 cycles (~0.1 s) after each
 * call before they sleep. Between GEMMs our own pool works, and when another process
 * holds a core a yielding thread loses the scheduler's wake-up preference a sleeping one
 * gets: each threaded GEMM then waits a time slice for its worker (BERT b4 at 2 threads
 * went from ~70 ms to ~1 s with one busy-looping process beside it). So, unless the user
 * set OPENBLAS_THREAD_TIMEOUT, its workers park right after each call (2^10 cycles),
 * woken by a condition variable at the next one; done once, before the first engine
 * runs, by re-reading OpenBLAS's environment and restarting its thread server. Weak: a
 * BLAS without these symbols is left alone. */
extern void openblas_read_env(void) __attribute__((weak));
extern int blas_thread_shutdown_(void) __attribute__((weak));
static pthread_once_t blas_park_once = PTHREAD_ONCE_INIT;

static void blas_park_workers(void)
{
	if (getenv("OPENBLAS_THREAD_TIMEOUT") || !openblas_read_env || !blas_thread_shutdown_) return;
	setenv("OPENBLAS_THREAD_TIMEOUT", "10", 0);
	openblas_read_env();
	blas_thread_shutdown_();
	unsetenv("OPENBLAS_THREAD_TIMEOUT");   /* not passed on to child processes */
}

int qd_engine_load(const struct qd_model *m, const struct qd_engine_opts *opts,
		   struct qd_engine **out, struct qd_err *err)
{
	*out = NULL;
	if (!m || !m->proto || !m->proto->graph)
		return qd_err_set(err, QD_EMODEL, "graph", "model has no graph");
	struct qd_engine *e = calloc(1, sizeof(*e));
	if (!e) return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	e->m = m;
	e->pool = calloc(POOL_MAX, sizeof(*e->pool));
	if (!e->pool) { free(e); return qd_err_set(err, QD_ENOMEM, "", "out of memory"); }
	qd_engine_opts_resolve(opts, &e->opts);
	pthread_once(&blas_park_once, blas_park_workers);
	if (e->opts.threads > 1 && !(e->workers = qd_tpool_new(e->opts.threads))) {
		free(e->pool);
		free(e);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	struct loader L = { e, err };
	int rc = compile_graph(&L, m->proto->graph, NULL, NULL, &e->main, NULL, NULL);
	if (!rc) rc = index_inputs(e, err);
	if (!rc) rc = qd_fuse_graph(e, e->main, err);
	if (!rc) rc = qd_fuse_float_graph(e, e->main, err);
	if (rc) { qd_engine_free(e); return rc; }
	e->peak_bytes = e->live_bytes = 0;
	*out = e;
	return 0;
}

void qd_engine_free(struct qd_engine *e)
{
	if (!e) return;
	free(e->in_vi);
	free(e->in_sorted);
	egraph_free(e->main);
	qd_tpool_free(e->workers);
	pool_free(e);
	free(e->pool);
	free(e->scratch);
	for (int i = 0; i < e->n_slots; i++) {
		if (!e->slots[i].borrowed) free(e->slots[i].t.data);
		free(e->slots[i].t.name);
		free(e->slots[i].name);
	}
	free(e->slots);
	free(e);
}

/* ---- public accessors ---- */
size_t qd_engine_n_inputs(const struct qd_engine *e)
{
	return (size_t)e->main->n_inputs;
}

const Onnx__ValueInfoProto *qd_engine_input(const struct qd_engine *e, size_t i)
{
	return i < (size_t)e->main->n_inputs ? e->in_vi[i] : NULL;
}

size_t qd_engine_n_outputs(const struct qd_engine *e)
{
	return e->m->proto->graph->n_output;
}

const Onnx__ValueInfoProto *qd_engine_output(const struct qd_engine *e, size_t i)
{
	const Onnx__GraphProto *g = e->m->proto->graph;
	return i < g->n_output ? g->output[i] : NULL;
}

static void hook_modes_clear(struct qd_egraph *g)
{
	for (int i = 0; g && i < g->n_nodes; i++) {
		g->nodes[i].hk_skip = false;
		g->nodes[i].hk_run = g->nodes[i].hk_after = NULL;
	}
}

void qd_engine_set_hook(struct qd_engine *e, qd_engine_hook hook, void *ud)
{
	e->hook = hook;
	e->hook_ud = ud;
	hook_modes_clear(e->main);
}

/* DESIGN: a load-time fusion hides its chain's intermediate tensors, so by default a hook
 * switches every fusion off. With a want filter, a fused chain still runs fused when the
 * hook wants none of the tensors it hides (its output is seen as the last node's output);
 * a Conv with a fused epilogue whose own output is wanted, but nothing after it, runs as
 * the plain Conv (seen) and then its epilogue in one pass (epi_only) instead of one pass
 * per elementwise node. Otherwise the chain's original nodes run. */
void qd_engine_set_hook_want(struct qd_engine *e, bool (*want)(void *ud, const char *tensor), void *ud)
{
	struct qd_egraph *g = e->main;
	hook_modes_clear(g);
	if (!want || !g) return;
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *n = &g->nodes[i], *f = n->fused;
		if (!f || n->fuse_skip || !f->n_cover) continue;
		int wanted = 0, head_wanted = 0;
		for (int k = 0; k < f->n_cover; k++) {
			const struct qd_enode *c = &g->nodes[f->cover[k]];
			for (int j = 0; j < c->n_out; j++) {
				int s = c->out[j];
				if (s < 0 || s == f->out[0] || !want(ud, e->slots[s].name)) continue;
				wanted++;
				head_wanted += c == n && j == 0;
			}
		}
		if (wanted && !(n->epi_only && wanted == head_wanted)) continue;
		for (int k = 0; k < f->n_cover; k++)
			if (f->cover[k] != i) g->nodes[f->cover[k]].hk_skip = true;
		if (wanted) n->hk_after = n->epi_only;
		else n->hk_run = f;
	}
}

size_t qd_engine_peak_bytes(const struct qd_engine *e)
{
	return e->peak_bytes + e->const_bytes;
}

size_t qd_engine_const_bytes(const struct qd_engine *e)
{
	return e->const_bytes;
}

/* ---- run ---- */
static int run_node(struct qd_engine *e, struct qd_enode *n, const volatile int *cancel,
		    struct qd_err *err)
{
	struct qd_ctx c;
	struct qd_tensor outs[QD_CTX_MAX_IO];
	memset(&c, 0, sizeof(c));
	c.e = e; c.n = n; c.n_in = n->n_in; c.n_out = n->n_out; c.cancel = cancel; c.err = err;
	const struct qd_op *op = n->op;
	for (int i = 0; i < n->n_in; i++) {
		c.in[i] = NULL;
		if (n->in[i] < 0) continue;
		struct qd_slot *s = &e->slots[n->in[i]];
		if (!s->has)
			return qd_err_set(err, QD_EINTERNAL, n->name, "node '%s': input '%s' has no value",
					  n->name, s->name);
		c.in[i] = &s->t;
	}
	int tdt = op->tidx < n->n_in && c.in[op->tidx] ? c.in[op->tidx]->dtype : 0;
	if (tdt && op->types != QD_TM_ANY && (tdt >= 32 || !(op->types & QD_TM(tdt))))
		return qd_err_set(err, QD_EUNSUPPORTED, n->name,
				  "node '%s' (%s): dtype %s of input %d not supported", n->name,
				  op->op_type, qd_dtype_name(tdt), op->tidx);
	for (int i = 0; i < n->n_out; i++) {
		memset(&outs[i], 0, sizeof(outs[i]));
		c.out[i] = &outs[i];   /* unconnected outputs are computed and dropped */
		c.want[i] = n->out[i] >= 0;
		switch (op->out) {
		case QD_OUT_SAME: c.out_dt[i] = tdt; break;
		case QD_OUT_BOOL: c.out_dt[i] = QD_DT_BOOL; break;
		case QD_OUT_I64: c.out_dt[i] = QD_DT_INT64; break;
		case QD_OUT_F32: c.out_dt[i] = QD_DT_FLOAT; break;
		case QD_OUT_TO: c.out_dt[i] = (int)qd_node_attr_int(n->proto, "to", 0); break;
		case QD_OUT_LIKE1: c.out_dt[i] = n->n_in > 1 && c.in[1] ? c.in[1]->dtype : 0; break;
		case QD_OUT_CUSTOM: c.out_dt[i] = e->slots[n->out[i] >= 0 ? n->out[i] : 0].dt; break;
		}
	}
	double t0 = e->opts.profile ? qd_now_mono() : 0;
	int rc = op->kernel(&c);
	if (e->opts.profile) {
		e->prof_time[n->prof_idx] += qd_now_mono() - t0;
		e->prof_count[n->prof_idx]++;
	}
	for (int i = 0; i < n->n_out && !rc; i++)
		if (c.want[i] && !outs[i].data)
			rc = qd_err_set(err, QD_EMODEL, n->name, "node '%s' (%s): output %d was not produced "
					"(the op has fewer outputs)", n->name, op->op_type, i);
	if (rc) {
		for (int i = 0; i < n->n_out; i++) qd_tensor_release(&outs[i]);
		if (!err->code) qd_err_set(err, -rc, n->name, "node '%s' failed", n->name);
		return rc;
	}
	for (int i = 0; i < n->n_out; i++) {
		if (n->out[i] < 0) { qd_tensor_release(&outs[i]); continue; }
		struct qd_slot *s = &e->slots[n->out[i]];
		outs[i].name = strdup(s->name);
		qd_engine_slot_set(e, n->out[i], &outs[i]);
		if (e->hook) e->hook(e->hook_ud, n->proto, &s->t);
	}
	for (int i = 0; i < n->n_free; i++) qd_engine_slot_clear(e, n->free_after[i]);
	return 0;
}

int qd_engine_run_graph(struct qd_engine *e, struct qd_egraph *g, const volatile int *cancel,
			struct qd_err *err)
{
	for (int i = 0; i < g->n_nodes; i++) {
		struct qd_enode *n = &g->nodes[i];
		int prc = qd_engine_poll(e, cancel, err);
		if (prc) {
			if (err && err->code == QD_ETIMEOUT)
				qd_err_set(err, QD_ETIMEOUT, n->name, "model ran longer than the time limit of "
					   "%g s (max_seconds, --max-seconds); stopped before node '%s' (%s)",
					   e->opts.max_seconds, n->name, n->op->op_type);
			return prc;
		}
		int rc;
		if (e->hook) {   /* hook modes: qd_engine_set_hook_want */
			if (n->hk_skip) continue;
			rc = run_node(e, n->hk_run ? n->hk_run : n, cancel, err);
			if (!rc && n->hk_after) rc = run_node(e, n->hk_after, cancel, err);
		} else {
			if (n->fuse_skip) continue;   /* covered by a fused node */
			rc = run_node(e, n->fused ? n->fused : n, cancel, err);
		}
		if (rc) return rc;
	}
	return 0;
}

static void clear_owned(struct qd_engine *e, struct qd_egraph *g)
{
	for (int i = 0; i < g->n_owned; i++) qd_engine_slot_clear(e, g->owned[i]);
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_sub; k++) clear_owned(e, g->nodes[i].sub[k]);
}

void qd_engine_clear_graph(struct qd_engine *e, struct qd_egraph *g)
{
	clear_owned(e, g);
}

/* Checks a user input against the declared type of the graph input. */
static int check_input(const struct qd_engine *e, const Onnx__ValueInfoProto *vi,
		       const struct qd_tensor *t, struct qd_err *err)
{
	const char *nm = vi->name ? vi->name : "";
	const Onnx__TypeProto *tp = vi->type;
	if (!t->data && t->nbytes)
		return qd_err_set(err, QD_EINVAL, nm, "input '%s' has no data", nm);
	if (t->ndim < 0 || t->ndim > QD_MAX_DIMS)
		return qd_err_set(err, QD_EINVAL, nm, "input '%s' has invalid rank %d", nm, t->ndim);
	size_t es = qd_dtype_size(t->dtype);
	if (!es) return qd_err_set(err, QD_EINVAL, nm, "input '%s' has unsupported dtype %d", nm, t->dtype);
	for (int i = 0; i < t->ndim; i++)
		if (t->dims[i] < 0) return qd_err_set(err, QD_EINVAL, nm, "input '%s' has a negative dim", nm);
	if ((uint64_t)qd_tensor_count(t) * es != t->nbytes)
		return qd_err_set(err, QD_EINVAL, nm, "input '%s': %zu bytes do not match its shape", nm,
				  t->nbytes);
	(void)e;
	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) return 0;
	const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
	if (tt->has_elem_type && tt->elem_type && tt->elem_type != t->dtype)
		return qd_err_set(err, QD_EINVAL, nm, "input '%s' has dtype %s, the model expects %s", nm,
				  qd_dtype_name(t->dtype), qd_dtype_name(tt->elem_type));
	if (tt->shape) {
		char b1[160], b2[160];
		if ((int)tt->shape->n_dim != t->ndim)
			return qd_err_set(err, QD_EINVAL, nm, "input '%s' has rank %d %s, the model expects rank %zu",
					  nm, t->ndim, qd_dims_str(t->ndim, t->dims, b1, sizeof(b1)),
					  tt->shape->n_dim);
		for (size_t i = 0; i < tt->shape->n_dim; i++) {
			const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
			if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
			    d->dim_value > 0 && d->dim_value != t->dims[i]) {
				int64_t want[QD_MAX_DIMS];
				for (size_t k = 0; k < tt->shape->n_dim && k < QD_MAX_DIMS; k++)
					want[k] = tt->shape->dim[k]->value_case ==
						ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ?
						tt->shape->dim[k]->dim_value : -1;
				return qd_err_set(err, QD_EINVAL, nm,
						  "input '%s' has shape %s, the model expects %s (-1 = any)", nm,
						  qd_dims_str(t->ndim, t->dims, b1, sizeof(b1)),
						  qd_dims_str(t->ndim, want, b2, sizeof(b2)));
			}
		}
	}
	return 0;
}

int qd_engine_run(struct qd_engine *e, const struct qd_tensor *inputs, size_t n_in,
		  struct qd_tensor **outputs, size_t *n_out, const volatile int *cancel,
		  struct qd_err *err)
{
	struct qd_egraph *g = e->main;
	int rc = 0;
	*outputs = NULL;
	*n_out = 0;
	e->live_bytes = 0;
	e->peak_bytes = 0;
	e->held_bytes = 0;
	e->t_start = qd_now_mono();
	e->deadline = e->opts.max_seconds > 0 ? e->t_start + e->opts.max_seconds : 0;
	qd_blas_threads_begin(e->opts.threads);
	struct qd_tpool *prev_pool = qd_tpool_set_current(e->workers);
	/* bind inputs */
	for (size_t i = 0; i < n_in; i++) {
		const char *nm = inputs[i].name ? inputs[i].name : "";
		int k = find_input(e, nm);
		if (k < 0) {
			struct qd_buf b = {0};
			for (int j = 0; j < g->n_inputs && j < 20; j++)
				qd_buf_printf(&b, "%s'%s'", j ? ", " : "", e->slots[g->inputs[j]].name);
			if (g->n_inputs > 20) qd_buf_printf(&b, ", ... (%d in all)", g->n_inputs);
			rc = qd_err_set(err, QD_EINVAL, nm, "unknown input '%s' (the model's inputs: %s)", nm,
					b.data ? (char *)b.data : "none");
			qd_buf_free(&b);
			goto out;
		}
		if (e->slots[g->inputs[k]].has) {
			rc = qd_err_set(err, QD_EINVAL, nm, "input '%s' given twice", nm);
			goto out;
		}
		if ((rc = check_input(e, qd_engine_input(e, k), &inputs[i], err))) goto out;
		struct qd_tensor t;
		if ((rc = qd_tensor_alloc_raw(&t, nm, inputs[i].dtype, inputs[i].ndim, inputs[i].dims))) {
			rc = qd_err_set(err, -rc, nm, "cannot allocate input '%s'", nm);
			goto out;
		}
		if (t.nbytes) memcpy(t.data, inputs[i].data, t.nbytes);
		qd_engine_slot_set(e, g->inputs[k], &t);
	}
	for (int k = 0; k < g->n_inputs; k++)
		if (!e->slots[g->inputs[k]].has) {
			const char *nm = e->slots[g->inputs[k]].name;
			rc = qd_err_set(err, QD_EINVAL, nm, "missing input '%s'", nm);
			goto out;
		}
	if ((rc = qd_engine_run_graph(e, g, cancel, err))) goto out;
	struct qd_tensor *o = calloc(g->n_outputs ? g->n_outputs : 1, sizeof(*o));
	if (!o) { rc = qd_err_set(err, QD_ENOMEM, "", "out of memory"); goto out; }
	for (int k = 0; k < g->n_outputs; k++) {
		struct qd_slot *s = &e->slots[g->outputs[k]];
		if (!s->has) {
			qd_tensors_release(o, k);
			rc = qd_err_set(err, QD_EINTERNAL, s->name, "output '%s' has no value", s->name);
			goto out;
		}
		if ((rc = qd_tensor_alloc_raw(&o[k], s->name, s->t.dtype, s->t.ndim, s->t.dims))) {
			qd_tensors_release(o, k);
			rc = qd_err_set(err, -rc, s->name, "cannot allocate output '%s'", s->name);
			goto out;
		}
		if (s->t.nbytes) memcpy(o[k].data, s->t.data, s->t.nbytes);
	}
	*outputs = o;
	*n_out = g->n_outputs;
out:
	clear_owned(e, g);
	qd_tpool_set_current(prev_pool);
	qd_blas_threads_end(e->opts.threads);
	return rc;
}

/* Per-op-type profile of the runs so far: fn(ud, op_type, seconds, count) per op with
 * count > 0, summed over rows with the same op type. */
void qd_engine_profile(const struct qd_engine *e, void (*fn)(void *, const char *, double, long),
		       void *ud)
{
	for (int i = 0; i < QD_OP__COUNT; i++) {
		if (!e->prof_count[i]) continue;
		bool first = true;
		for (int j = 0; j < i; j++)
			if (!strcmp(qd_ops[j].op_type, qd_ops[i].op_type) && e->prof_count[j]) first = false;
		if (!first) continue;
		double t = 0;
		long c = 0;
		for (int j = i; j < QD_OP__COUNT; j++)
			if (!strcmp(qd_ops[j].op_type, qd_ops[i].op_type)) { t += e->prof_time[j]; c += e->prof_count[j]; }
		fn(ud, qd_ops[i].op_type, t, c);
	}
}
