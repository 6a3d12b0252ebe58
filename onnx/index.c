/* Graph index: one hash table from value name to producer, consumers (including nodes
 * whose subgraphs read the name from this scope), initializer, value_info and graph
 * input/output flags; topological order; unique-name reservation across nested scopes. */
#define _GNU_SOURCE
#include "onnx/onnx_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ix_entry {
	Onnx__NodeProto *producer;
	Onnx__NodeProto **cons;
	size_t ncons, capcons;
	Onnx__TensorProto *init;
	Onnx__ValueInfoProto *vi;
	bool is_input, is_output;
};

struct qd_graph_index {
	Onnx__GraphProto *g;
	const struct qd_graph_index *parent;
	struct qd_strmap values;   /* name -> struct ix_entry * */
	struct qd_strmap used;     /* every name in this graph and its subgraphs (values, nodes) */
	char **owned;              /* reserved names (keys of used) */
	size_t n_owned;
	size_t *topo;
};

static struct ix_entry *entry(struct qd_graph_index *ix, const char *name)
{
	void **p = qd_strmap_get(&ix->values, name);
	if (p)
		return *p;
	struct ix_entry *e = calloc(1, sizeof *e);
	if (!e || qd_strmap_put(&ix->values, name, e)) {
		free(e);
		return NULL;
	}
	return e;
}

static int add_consumer(struct ix_entry *e, Onnx__NodeProto *n)
{
	if (e->ncons && e->cons[e->ncons - 1] == n)
		return 0; /* same node reading the name twice */
	if (e->ncons == e->capcons) {
		size_t nc = e->capcons ? e->capcons * 2 : 4;
		Onnx__NodeProto **p = realloc(e->cons, nc * sizeof *p);
		if (!p)
			return -QD_ENOMEM;
		e->cons = p;
		e->capcons = nc;
	}
	e->cons[e->ncons++] = n;
	return 0;
}

static int mark_used(Onnx__GraphProto *g, int depth, void *ud)
{
	struct qd_strmap *u = ud;
#define USE(s) do { if ((s) && *(s) && qd_strmap_put(u, (s), NULL)) return -QD_ENOMEM; } while (0)
	for (size_t i = 0; i < g->n_input; i++)
		USE(g->input[i]->name);
	for (size_t i = 0; i < g->n_output; i++)
		USE(g->output[i]->name);
	for (size_t i = 0; i < g->n_value_info; i++)
		USE(g->value_info[i]->name);
	for (size_t i = 0; i < g->n_initializer; i++)
		USE(g->initializer[i]->name);
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		USE(n->name);
		for (size_t k = 0; k < n->n_input; k++)
			USE(n->input[k]);
		for (size_t k = 0; k < n->n_output; k++)
			USE(n->output[k]);
	}
#undef USE
	return 0;
}

int qd_index_build(Onnx__GraphProto *g, const struct qd_graph_index *parent,
		   struct qd_graph_index **out, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	*out = NULL;
	struct qd_graph_index *ix = calloc(1, sizeof *ix);
	int rc = 0;
	if (!ix)
		return qd_err_set(err, QD_ENOMEM, "graph", "cannot index graph: out of memory");
	ix->g = g;
	ix->parent = parent;
	struct ix_entry *e;
#define ENT(name) do { if (!(e = entry(ix, (name)))) goto nomem; } while (0)
	for (size_t i = 0; i < g->n_input; i++) {
		if (!g->input[i]->name)
			continue;
		ENT(g->input[i]->name);
		e->is_input = true;
		e->vi = g->input[i];
	}
	for (size_t i = 0; i < g->n_value_info; i++) {
		if (!g->value_info[i]->name)
			continue;
		ENT(g->value_info[i]->name);
		if (!e->vi)
			e->vi = g->value_info[i];
	}
	for (size_t i = 0; i < g->n_output; i++) {
		if (!g->output[i]->name)
			continue;
		ENT(g->output[i]->name);
		e->is_output = true;
		if (!e->vi || !e->is_input)
			e->vi = g->output[i];
	}
	for (size_t i = 0; i < g->n_initializer; i++) {
		if (!g->initializer[i]->name)
			continue;
		ENT(g->initializer[i]->name);
		e->init = g->initializer[i];
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t k = 0; k < n->n_output; k++) {
			if (!*n->output[k])
				continue;
			ENT(n->output[k]);
			if (!e->producer)
				e->producer = n;
		}
		for (size_t k = 0; k < n->n_input; k++) {
			if (!*n->input[k])
				continue;
			ENT(n->input[k]);
			if (add_consumer(e, n))
				goto nomem;
		}
		struct qd_strmap reads = { 0 };
		rc = qd_node_outer_reads(n, &reads);
		for (size_t k = 0; !rc && k < reads.cap; k++) {
			if (!reads.keys[k])
				continue;
			if (!(e = entry(ix, reads.keys[k])) || add_consumer(e, n))
				rc = -QD_ENOMEM;
		}
		qd_strmap_free(&reads);
		if (rc == -QD_ENOMEM)
			goto nomem;
		if (rc) {
			rc = qd_err_set(err, rc, n->name, "cannot index node '%s': subgraphs nested too deeply",
					n->name ? n->name : "");
			goto fail;
		}
	}
#undef ENT
	if ((rc = qd_graph_walk(g, mark_used, &ix->used)))
		goto nomem;
	ix->topo = malloc((g->n_node ? g->n_node : 1) * sizeof *ix->topo);
	if (!ix->topo)
		goto nomem;
	if ((rc = qd_graph_topo_order(g, ix->topo, err)))
		goto fail;
	*out = ix;
	return 0;
nomem:
	rc = qd_err_set(err, QD_ENOMEM, "graph", "cannot index graph: out of memory");
fail:
	qd_index_free(ix);
	return rc;
}

void qd_index_free(struct qd_graph_index *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->values.cap; i++) {
		struct ix_entry *e = ix->values.vals[i];
		if (ix->values.keys[i] && e) {
			free(e->cons);
			free(e);
		}
	}
	qd_strmap_free(&ix->values);
	qd_strmap_free(&ix->used);
	for (size_t i = 0; i < ix->n_owned; i++)
		free(ix->owned[i]);
	free(ix->owned);
	free(ix->topo);
	free(ix);
}

Onnx__GraphProto *qd_index_graph(const struct qd_graph_index *ix)
{
	return ix->g;
}

static struct ix_entry *find(const struct qd_graph_index *ix, const char *name)
{
	void **p = qd_strmap_get(&ix->values, name);
	return p ? *p : NULL;
}

Onnx__NodeProto *qd_index_producer(const struct qd_graph_index *ix, const char *name)
{
	struct ix_entry *e = find(ix, name);
	return e ? e->producer : NULL;
}

size_t qd_index_consumers(const struct qd_graph_index *ix, const char *name,
			  Onnx__NodeProto *const **nodes)
{
	struct ix_entry *e = find(ix, name);
	if (nodes)
		*nodes = e ? e->cons : NULL;
	return e ? e->ncons : 0;
}

Onnx__TensorProto *qd_index_initializer(const struct qd_graph_index *ix, const char *name)
{
	for (; ix; ix = ix->parent) {
		struct ix_entry *e = find(ix, name);
		if (e && e->init)
			return e->init;
		if (e && (e->producer || e->is_input))
			return NULL; /* shadowed by a value of this scope */
	}
	return NULL;
}

Onnx__ValueInfoProto *qd_index_value_info(const struct qd_graph_index *ix, const char *name)
{
	for (; ix; ix = ix->parent) {
		struct ix_entry *e = find(ix, name);
		if (e && e->vi)
			return e->vi;
		if (e && (e->producer || e->init || e->is_input))
			return NULL; /* defined here without type information */
	}
	return NULL;
}

bool qd_index_is_graph_input(const struct qd_graph_index *ix, const char *name)
{
	struct ix_entry *e = find(ix, name);
	return e && e->is_input;
}

bool qd_index_is_graph_output(const struct qd_graph_index *ix, const char *name)
{
	struct ix_entry *e = find(ix, name);
	return e && e->is_output;
}

size_t qd_index_topo(const struct qd_graph_index *ix, const size_t **order)
{
	if (order)
		*order = ix->topo;
	return ix->g->n_node;
}

static bool name_used(const struct qd_graph_index *ix, const char *s)
{
	for (; ix; ix = ix->parent)
		if (qd_strmap_get(&ix->used, s))
			return true;
	return false;
}

char *qd_index_unique_name(struct qd_graph_index *ix, const char *base)
{
	if (!base || !*base)
		base = "qd";
	char *name = strdup(base);
	for (unsigned long k = 1; name && name_used(ix, name); k++) {
		free(name);
		name = qd_asprintf("%s_%lu", base, k);
	}
	if (!name)
		return NULL;
	char *key = strdup(name);
	char **no = realloc(ix->owned, (ix->n_owned + 1) * sizeof *no);
	if (!key || !no) {
		free(key);
		if (no)
			ix->owned = no;
		free(name);
		return NULL;
	}
	ix->owned = no;
	ix->owned[ix->n_owned++] = key;
	if (qd_strmap_put(&ix->used, key, NULL)) {
		free(name);
		return NULL;
	}
	return name;
}
