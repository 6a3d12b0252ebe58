/* Nodes and attributes (create, set, look up, copy), graph editing helpers (add, insert,
 * remove nodes and initializers, stable topological sort) and the small string map the
 * onnx/ files share. Every message is malloc-allocated so qd_model_free() frees it. */
#define _GNU_SOURCE
#include "onnx/onnx_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- string map (open addressing, FNV-1a) ---- */
static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

/* The table under both maps: keys[cap] (NULL = empty) beside cap values of vsz bytes, cap
 * a power of two, linear probing. The slot holding key, or the empty slot it goes in. */
static size_t tab_slot(const char *const *keys, size_t cap, const char *key)
{
	size_t j = hash_str(key) & (cap - 1);
	while (keys[j] && strcmp(keys[j], key))
		j = (j + 1) & (cap - 1);
	return j;
}

/* Double the table (`first` slots when empty), rehashing keys and values. */
static int tab_grow(const char ***keys, unsigned char **vals, size_t vsz, size_t *cap, size_t first)
{
	size_t nc = *cap ? *cap * 2 : first;
	const char **nk = calloc(nc, sizeof *nk);
	unsigned char *nv = calloc(nc, vsz);
	if (!nk || !nv) {
		free(nk);
		free(nv);
		return -QD_ENOMEM;
	}
	for (size_t i = 0; i < *cap; i++) {
		if (!(*keys)[i])
			continue;
		size_t j = tab_slot(nk, nc, (*keys)[i]);
		nk[j] = (*keys)[i];
		memcpy(nv + j * vsz, *vals + i * vsz, vsz);
	}
	free(*keys);
	free(*vals);
	*keys = nk;
	*vals = nv;
	*cap = nc;
	return 0;
}

static int strmap_grow(struct qd_strmap *m)
{
	unsigned char *v = (unsigned char *)m->vals;
	int rc = tab_grow(&m->keys, &v, sizeof *m->vals, &m->cap, 64);
	m->vals = (void **)v;
	return rc;
}

int qd_strmap_put(struct qd_strmap *m, const char *key, void *val)
{
	if ((m->len + 1) * 2 > m->cap && strmap_grow(m))
		return -QD_ENOMEM;
	size_t j = tab_slot(m->keys, m->cap, key);
	if (!m->keys[j]) {
		m->keys[j] = key;
		m->len++;
	}
	m->vals[j] = val;
	return 0;
}

void **qd_strmap_get(const struct qd_strmap *m, const char *key)
{
	if (!m->cap || !key)
		return NULL;
	size_t j = tab_slot(m->keys, m->cap, key);
	return m->keys[j] ? &m->vals[j] : NULL;
}

void qd_strmap_free(struct qd_strmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

/* ---- name map (keys owned) ---- */
long *qd_namemap_get(const struct qd_namemap *m, const char *name)
{
	if (!m->cap || !name)
		return NULL;
	size_t j = tab_slot(m->keys, m->cap, name);
	return m->keys[j] ? &m->vals[j] : NULL;
}

int qd_namemap_put(struct qd_namemap *m, const char *name, long v)
{
	long *p = qd_namemap_get(m, name);
	if (p) {
		*p = v;
		return 0;
	}
	if ((m->len + 1) * 2 > m->cap) {
		unsigned char *vals = (unsigned char *)m->vals;
		int rc = tab_grow(&m->keys, &vals, sizeof *m->vals, &m->cap, 256);
		m->vals = (long *)vals;
		if (rc)
			return rc;
	}
	char *copy = strdup(name);
	if (!copy)
		return -QD_ENOMEM;
	size_t j = tab_slot(m->keys, m->cap, name);
	m->keys[j] = copy;
	m->vals[j] = v;
	m->len++;
	return 0;
}

int qd_namemap_add(struct qd_namemap *m, const char *name, long d)
{
	long *p = qd_namemap_get(m, name);
	if (p) {
		*p += d;
		return 0;
	}
	return qd_namemap_put(m, name, d);
}

void qd_namemap_free(struct qd_namemap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free((char *)m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

/* ---- nodes ---- */
static char **strv_dup(const char *const *v, size_t n)
{
	char **r = calloc(n ? n : 1, sizeof *r);
	if (!r)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!(r[i] = strdup(v[i] ? v[i] : ""))) {
			while (i--)
				free(r[i]);
			free(r);
			return NULL;
		}
	}
	return r;
}

Onnx__NodeProto *qd_node_new(const char *op_type, const char *domain, const char *name,
			     const char *const *inputs, size_t n_in,
			     const char *const *outputs, size_t n_out)
{
	Onnx__NodeProto *n = malloc(sizeof *n);
	if (!n)
		return NULL;
	onnx__node_proto__init(n);
	if (!(n->op_type = strdup(op_type ? op_type : "")))
		goto fail;
	if (name && !(n->name = strdup(name)))
		goto fail;
	if (domain && *domain && !(n->domain = strdup(domain)))
		goto fail;
	if (!(n->input = strv_dup(inputs, n_in)))
		goto fail;
	n->n_input = n_in;
	if (!(n->output = strv_dup(outputs, n_out)))
		goto fail;
	n->n_output = n_out;
	return n;
fail:
	qd_node_free(n);
	return NULL;
}

void qd_node_free(Onnx__NodeProto *n)
{
	if (n)
		protobuf_c_message_free_unpacked(&n->base, NULL);
}

const char *qd_node_domain(const Onnx__NodeProto *n)
{
	if (!n->domain || !strcmp(n->domain, "ai.onnx"))
		return "";
	return n->domain;
}

const Onnx__AttributeProto *qd_node_attr(const Onnx__NodeProto *n, const char *name)
{
	for (size_t i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name))
			return n->attribute[i];
	return NULL;
}

int64_t qd_node_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = qd_node_attr(n, name);
	return a && (a->has_i || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) ? a->i : dflt;
}

float qd_node_attr_float(const Onnx__NodeProto *n, const char *name, float dflt)
{
	const Onnx__AttributeProto *a = qd_node_attr(n, name);
	return a && (a->has_f || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) ? a->f : dflt;
}

const char *qd_node_attr_string(const Onnx__NodeProto *n, const char *name, const char *dflt)
{
	const Onnx__AttributeProto *a = qd_node_attr(n, name);
	if (!a || !(a->has_s || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING))
		return dflt;
	/* string bytes are NUL-terminated one past len (qd_attr_terminate_strings / setters) */
	return a->s.data ? (const char *)a->s.data : "";
}

long qd_node_attr_ints(const Onnx__NodeProto *n, const char *name, const int64_t **v)
{
	const Onnx__AttributeProto *a = qd_node_attr(n, name);
	if (!a || (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && !a->n_ints)) {
		if (v)
			*v = NULL;
		return -1;
	}
	if (v)
		*v = a->ints;
	return (long)a->n_ints;
}

/* Makes every string attribute byte array end in a NUL one past len (for the getters). */
int qd_attr_terminate_strings(Onnx__AttributeProto *a)
{
	ProtobufCBinaryData *b[1] = { a->has_s ? &a->s : NULL };
	for (size_t k = 0; k < 1 + a->n_strings; k++) {
		ProtobufCBinaryData *s = k == 0 ? b[0] : &a->strings[k - 1];
		if (!s)
			continue;
		uint8_t *nd = realloc(s->data, s->len + 1);
		if (!nd)
			return -QD_ENOMEM;
		nd[s->len] = 0;
		s->data = nd;
	}
	return 0;
}

/* Finds the attribute slot to (re)use: frees an existing one of the same name. */
static Onnx__AttributeProto *attr_slot(Onnx__NodeProto *n, const char *name, int type)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return NULL;
	onnx__attribute_proto__init(a);
	if (!(a->name = strdup(name))) {
		free(a);
		return NULL;
	}
	a->has_type = 1;
	a->type = type;
	for (size_t i = 0; i < n->n_attribute; i++) {
		if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name)) {
			protobuf_c_message_free_unpacked(&n->attribute[i]->base, NULL);
			n->attribute[i] = a;
			return a;
		}
	}
	if (qd_ptr_append(&n->n_attribute, (void ***)&n->attribute, a)) {
		protobuf_c_message_free_unpacked(&a->base, NULL);
		return NULL;
	}
	return a;
}

int qd_node_set_attr_int(Onnx__NodeProto *n, const char *name, int64_t v)
{
	Onnx__AttributeProto *a = attr_slot(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
	if (!a)
		return -QD_ENOMEM;
	a->has_i = 1;
	a->i = v;
	return 0;
}

int qd_node_set_attr_float(Onnx__NodeProto *n, const char *name, float v)
{
	Onnx__AttributeProto *a = attr_slot(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
	if (!a)
		return -QD_ENOMEM;
	a->has_f = 1;
	a->f = v;
	return 0;
}

int qd_node_set_attr_string(Onnx__NodeProto *n, const char *name, const char *v)
{
	char *d = strdup(v ? v : "");
	if (!d)
		return -QD_ENOMEM;
	Onnx__AttributeProto *a = attr_slot(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
	if (!a) {
		free(d);
		return -QD_ENOMEM;
	}
	a->has_s = 1;
	a->s.data = (uint8_t *)d;
	a->s.len = strlen(d);
	return 0;
}

int qd_node_set_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v, size_t count)
{
	int64_t *d = malloc((count ? count : 1) * sizeof *d);
	if (!d)
		return -QD_ENOMEM;
	if (count)
		memcpy(d, v, count * sizeof *d);
	Onnx__AttributeProto *a = attr_slot(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
	if (!a) {
		free(d);
		return -QD_ENOMEM;
	}
	a->ints = d;
	a->n_ints = count;
	return 0;
}

int qd_node_set_attr_floats(Onnx__NodeProto *n, const char *name, const float *v, size_t count)
{
	float *d = malloc((count ? count : 1) * sizeof *d);
	if (!d)
		return -QD_ENOMEM;
	if (count)
		memcpy(d, v, count * sizeof *d);
	Onnx__AttributeProto *a = attr_slot(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
	if (!a) {
		free(d);
		return -QD_ENOMEM;
	}
	a->floats = d;
	a->n_floats = count;
	return 0;
}

int qd_node_set_attr_tensor(Onnx__NodeProto *n, const char *name, Onnx__TensorProto *t)
{
	Onnx__AttributeProto *a = attr_slot(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
	if (!a) {
		qd_tensor_free(t);
		return -QD_ENOMEM;
	}
	a->t = t;
	return 0;
}

/* Deep copy of any message by pack + unpack (keeps unknown fields too). */
void *qd_message_dup(const ProtobufCMessage *m)
{
	size_t sz = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(sz ? sz : 1);
	if (!buf)
		return NULL;
	protobuf_c_message_pack(m, buf);
	ProtobufCMessage *r = protobuf_c_message_unpack(m->descriptor, NULL, sz, buf);
	free(buf);
	return r;
}

int qd_node_copy_attr(Onnx__NodeProto *dst, const Onnx__AttributeProto *a)
{
	Onnx__AttributeProto *c = qd_message_dup(&a->base);
	if (!c || qd_attr_terminate_strings(c)) {
		if (c)
			protobuf_c_message_free_unpacked(&c->base, NULL);
		return -QD_ENOMEM;
	}
	for (size_t i = 0; i < dst->n_attribute; i++) {
		if (dst->attribute[i]->name && a->name && !strcmp(dst->attribute[i]->name, a->name)) {
			protobuf_c_message_free_unpacked(&dst->attribute[i]->base, NULL);
			dst->attribute[i] = c;
			return 0;
		}
	}
	if (qd_ptr_append(&dst->n_attribute, (void ***)&dst->attribute, c)) {
		protobuf_c_message_free_unpacked(&c->base, NULL);
		return -QD_ENOMEM;
	}
	return 0;
}

size_t qd_node_subgraphs(const Onnx__NodeProto *n, Onnx__GraphProto **graphs, size_t cap)
{
	size_t count = 0;
	for (size_t i = 0; i < n->n_attribute; i++) {
		const Onnx__AttributeProto *a = n->attribute[i];
		if (a->g) {
			if (count < cap)
				graphs[count] = a->g;
			count++;
		}
		for (size_t k = 0; k < a->n_graphs; k++) {
			if (count < cap)
				graphs[count] = a->graphs[k];
			count++;
		}
	}
	return count;
}

/* ---- outer-scope reads of subgraphs ---- */
static int collect_defs(Onnx__GraphProto *g, int depth, void *ud)
{
	struct qd_strmap *defs = ud;
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && qd_strmap_put(defs, g->input[i]->name, g))
			return -QD_ENOMEM;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && qd_strmap_put(defs, g->initializer[i]->name, g))
			return -QD_ENOMEM;
	for (size_t i = 0; i < g->n_sparse_initializer; i++) {
		Onnx__TensorProto *v = g->sparse_initializer[i]->values;
		if (v && v->name && qd_strmap_put(defs, v->name, g))
			return -QD_ENOMEM;
	}
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (*g->node[i]->output[k] && qd_strmap_put(defs, g->node[i]->output[k], g))
				return -QD_ENOMEM;
	return 0;
}

struct reads_ctx { struct qd_strmap *defs, *out; };

static int collect_reads(Onnx__GraphProto *g, int depth, void *ud)
{
	struct reads_ctx *c = ud;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++) {
			const char *s = g->node[i]->input[k];
			if (*s && !qd_strmap_get(c->defs, s) && qd_strmap_put(c->out, s, NULL))
				return -QD_ENOMEM;
		}
	for (size_t i = 0; i < g->n_output; i++) {
		const char *s = g->output[i]->name;
		if (s && *s && !qd_strmap_get(c->defs, s) && qd_strmap_put(c->out, s, NULL))
			return -QD_ENOMEM;
	}
	return 0;
}

/* Names the subgraphs of n (at any depth) read but do not define: outer-scope reads.
 * Adds them to *out (keys borrowed from the model). */
int qd_node_outer_reads(const Onnx__NodeProto *n, struct qd_strmap *out)
{
	Onnx__GraphProto *few[8], **sg = few;
	size_t ns = qd_node_subgraphs(n, few, 8);
	if (!ns)
		return 0;
	if (ns > 8) {
		if (!(sg = malloc(ns * sizeof *sg)))
			return -QD_ENOMEM;
		qd_node_subgraphs(n, sg, ns);
	}
	struct qd_strmap defs = { 0 };
	int rc = 0;
	for (size_t i = 0; i < ns && !rc; i++)
		rc = qd_graph_walk(sg[i], collect_defs, &defs);
	struct reads_ctx c = { &defs, out };
	for (size_t i = 0; i < ns && !rc; i++)
		rc = qd_graph_walk(sg[i], collect_reads, &c);
	qd_strmap_free(&defs);
	if (sg != few)
		free(sg);
	return rc == -QD_EMODEL ? -QD_EUNSUPPORTED : rc;
}

/* ---- graph editing ---- */
int qd_graph_add_node(Onnx__GraphProto *g, Onnx__NodeProto *n)
{
	return qd_ptr_append(&g->n_node, (void ***)&g->node, n);
}

int qd_graph_insert_node(Onnx__GraphProto *g, size_t pos, Onnx__NodeProto *n)
{
	if (pos > g->n_node)
		pos = g->n_node;
	int rc = qd_ptr_append(&g->n_node, (void ***)&g->node, n);
	if (rc)
		return rc;
	memmove(&g->node[pos + 1], &g->node[pos], (g->n_node - 1 - pos) * sizeof *g->node);
	g->node[pos] = n;
	return 0;
}

int qd_graph_add_initializer(Onnx__GraphProto *g, Onnx__TensorProto *t)
{
	return qd_ptr_append(&g->n_initializer, (void ***)&g->initializer, t);
}

void qd_graph_remove_nodes(Onnx__GraphProto *g, const bool *drop)
{
	size_t w = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		if (drop[i])
			qd_node_free(g->node[i]);
		else
			g->node[w++] = g->node[i];
	}
	g->n_node = w;
}

static int collect_uses(Onnx__GraphProto *g, int depth, void *ud)
{
	struct qd_strmap *used = ud;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			if (*g->node[i]->input[k] && qd_strmap_put(used, g->node[i]->input[k], NULL))
				return -QD_ENOMEM;
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && qd_strmap_put(used, g->output[i]->name, NULL))
			return -QD_ENOMEM;
	return 0;
}

static int remove_unused_in(Onnx__GraphProto *g, int depth, void *ud)
{
	int *removed = ud;
	struct qd_strmap used = { 0 };
	int rc = qd_graph_walk(g, collect_uses, &used);
	if (rc) {
		qd_strmap_free(&used);
		return rc;
	}
	size_t w = 0;
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *t = g->initializer[i];
		if (t->name && !qd_strmap_get(&used, t->name)) {
			/* an IR<4 model lists initializers as graph inputs too: drop that entry */
			size_t wi = 0;
			for (size_t k = 0; k < g->n_input; k++) {
				if (g->input[k]->name && !strcmp(g->input[k]->name, t->name))
					protobuf_c_message_free_unpacked(&g->input[k]->base, NULL);
				else
					g->input[wi++] = g->input[k];
			}
			g->n_input = wi;
			qd_tensor_free(t);
			(*removed)++;
		} else {
			g->initializer[w++] = t;
		}
	}
	g->n_initializer = w;
	qd_strmap_free(&used);
	return 0;
}

int qd_graph_remove_unused_initializers(Onnx__GraphProto *g)
{
	int removed = 0;
	int rc = qd_graph_walk(g, remove_unused_in, &removed);
	return rc ? rc : removed;
}

/* ---- topological order (stable Kahn: always the lowest-index ready node) ---- */
static void heap_push(size_t *h, size_t *n, size_t v)
{
	size_t i = (*n)++;
	while (i && h[(i - 1) / 2] > v) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *n)
{
	size_t top = h[0], v = h[--(*n)], i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= v)
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = v;
	return top;
}

int qd_graph_topo_order(Onnx__GraphProto *g, size_t *order, struct qd_err *err)
{
	size_t n = g->n_node;
	struct qd_strmap prod = { 0 };
	size_t *indeg = calloc(n + 1, sizeof *indeg), *heap = calloc(n + 1, sizeof *heap);
	size_t *eoff = calloc(n + 2, sizeof *eoff), *edges = NULL, ne = 0, cap = 0;
	int rc = 0;
	if (!indeg || !heap || !eoff)
		goto nomem;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (*g->node[i]->output[k] &&
			    qd_strmap_put(&prod, g->node[i]->output[k], (void *)(uintptr_t)(i + 1)))
				goto nomem;
	/* edges grouped by producer: (producer -> consumer), built as pairs then bucketed */
	size_t *pairs = NULL;
	for (size_t i = 0; i < n; i++) {
		Onnx__NodeProto *nd = g->node[i];
		struct qd_strmap reads = { 0 };
		if ((rc = qd_node_outer_reads(nd, &reads))) {
			qd_strmap_free(&reads);
			free(pairs);
			if (rc == -QD_ENOMEM)
				goto nomem;
			rc = qd_err_set(err, QD_EUNSUPPORTED, nd->name, "node '%s' has subgraphs nested too deeply",
					nd->name ? nd->name : "");
			goto out;
		}
		size_t nin = nd->n_input;
		for (size_t k = 0; k < nin + reads.cap; k++) {
			const char *s = k < nin ? nd->input[k] : reads.keys[k - nin];
			if (!s || !*s)
				continue;
			void **p = qd_strmap_get(&prod, s);
			if (!p)
				continue;
			if (ne == cap) {
				cap = cap ? cap * 2 : 256;
				size_t *np = realloc(pairs, cap * 2 * sizeof *np);
				if (!np) {
					qd_strmap_free(&reads);
					free(pairs);
					goto nomem;
				}
				pairs = np;
			}
			pairs[2 * ne] = (size_t)(uintptr_t)*p - 1;
			pairs[2 * ne + 1] = i;
			ne++;
			indeg[i]++;
		}
		qd_strmap_free(&reads);
	}
	edges = malloc((ne ? ne : 1) * sizeof *edges);
	if (!edges) {
		free(pairs);
		goto nomem;
	}
	for (size_t e = 0; e < ne; e++)
		eoff[pairs[2 * e] + 1]++;
	for (size_t i = 0; i < n; i++)
		eoff[i + 1] += eoff[i];
	{
		size_t *fill = calloc(n + 1, sizeof *fill);
		if (!fill) {
			free(pairs);
			goto nomem;
		}
		for (size_t e = 0; e < ne; e++) {
			size_t p = pairs[2 * e];
			edges[eoff[p] + fill[p]++] = pairs[2 * e + 1];
		}
		free(fill);
	}
	free(pairs);
	size_t hn = 0, done = 0;
	for (size_t i = 0; i < n; i++)
		if (!indeg[i])
			heap_push(heap, &hn, i);
	while (hn) {
		size_t v = heap_pop(heap, &hn);
		order[done++] = v;
		for (size_t e = eoff[v]; e < eoff[v + 1]; e++)
			if (--indeg[edges[e]] == 0)
				heap_push(heap, &hn, edges[e]);
	}
	if (done < n) {
		size_t bad = 0;
		while (bad < n && !indeg[bad])
			bad++;
		const char *nm = g->node[bad]->name && *g->node[bad]->name ? g->node[bad]->name
			: (g->node[bad]->n_output ? g->node[bad]->output[0] : "?");
		rc = qd_err_set(err, QD_EMODEL, nm, "graph '%s' has a cycle through node '%s' (%s)",
				g->name ? g->name : "", nm, g->node[bad]->op_type ? g->node[bad]->op_type : "");
	}
	goto out;
nomem:
	rc = qd_err_set(err, QD_ENOMEM, "graph", "cannot sort graph: out of memory");
out:
	qd_strmap_free(&prod);
	free(indeg);
	free(heap);
	free(eoff);
	free(edges);
	return rc;
}

int qd_graph_toposort(Onnx__GraphProto *g, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	size_t n = g->n_node;
	size_t *order = malloc((n ? n : 1) * sizeof *order);
	Onnx__NodeProto **nn = malloc((n ? n : 1) * sizeof *nn);
	int rc = 0;
	if (!order || !nn) {
		rc = qd_err_set(err, QD_ENOMEM, "graph", "cannot sort graph: out of memory");
		goto out;
	}
	if ((rc = qd_graph_topo_order(g, order, err)))
		goto out;
	for (size_t i = 0; i < n; i++)
		nn[i] = g->node[order[i]];
	memcpy(g->node, nn, n * sizeof *nn);
out:
	free(order);
	free(nn);
	return rc;
}
