/* qd_model_check: structural validation of a loaded model (every graph, nested scopes):
 * tensor sizes, dangling inputs, duplicate outputs, cycles, missing op types. Errors name
 * the node or tensor (struct qd_err.field) so the API can point at the problem. */
#define _GNU_SOURCE
#include "onnx/onnx_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scope {
	const struct scope *outer;
	struct qd_strmap defs; /* name -> "what defined it" label (static string) */
};

static bool scope_has(const struct scope *s, const char *name)
{
	for (; s; s = s->outer)
		if (qd_strmap_get(&s->defs, name))
			return true;
	return false;
}

static const char *node_label(const Onnx__NodeProto *n, char *buf, size_t cap)
{
	if (n->name && *n->name)
		return n->name;
	snprintf(buf, cap, "%s#%s", n->op_type ? n->op_type : "?",
		 n->n_output && *n->output[0] ? n->output[0] : "?");
	return buf;
}

static int check_graph(Onnx__GraphProto *g, const struct scope *outer, int depth, struct qd_err *err);

static int check_attr_tensor(const Onnx__NodeProto *n, const char *nl, const Onnx__TensorProto *t,
			     struct qd_err *err)
{
	int rc = qd_tensor_check_data(t, err);
	if (rc)
		return qd_err_wrap(err, "node '%s' (%s)", nl, n->op_type ? n->op_type : "");
	return 0;
}

static int check_node(Onnx__NodeProto *n, const struct scope *sc, int depth, struct qd_err *err)
{
	char lb[160];
	const char *nl = node_label(n, lb, sizeof lb);
	if (!n->op_type || !*n->op_type)
		return qd_err_set(err, QD_EMODEL, nl, "node '%s' has no op_type", nl);
	for (size_t k = 0; k < n->n_input; k++) {
		const char *s = n->input[k];
		if (*s && !scope_has(sc, s))
			return qd_err_set(err, QD_EMODEL, nl,
					  "node '%s' (%s) input %zu '%s' is not produced by any node, graph "
					  "input, initializer or enclosing graph", nl, n->op_type, k, s);
	}
	for (size_t a = 0; a < n->n_attribute; a++) {
		const Onnx__AttributeProto *at = n->attribute[a];
		int rc;
		if (!at->name || !*at->name)
			return qd_err_set(err, QD_EMODEL, nl, "node '%s' (%s) has an attribute without a name",
					  nl, n->op_type);
		if (at->t && (rc = check_attr_tensor(n, nl, at->t, err)))
			return rc;
		for (size_t k = 0; k < at->n_tensors; k++)
			if ((rc = check_attr_tensor(n, nl, at->tensors[k], err)))
				return rc;
		if (at->g && (rc = check_graph(at->g, sc, depth + 1, err)))
			return qd_err_wrap(err, "subgraph '%s' of node '%s'", at->name, nl);
		for (size_t k = 0; k < at->n_graphs; k++)
			if ((rc = check_graph(at->graphs[k], sc, depth + 1, err)))
				return qd_err_wrap(err, "subgraph '%s' of node '%s'", at->name, nl);
	}
	return 0;
}

static int check_graph(Onnx__GraphProto *g, const struct scope *outer, int depth, struct qd_err *err)
{
	static const char DEF_INPUT[] = "graph input", DEF_INIT[] = "initializer", DEF_NODE[] = "node output";
	if (depth > QD_ONNX_MAX_DEPTH)
		return qd_err_set(err, QD_EMODEL, "graph", "subgraphs nested deeper than %d", QD_ONNX_MAX_DEPTH);
	struct scope sc = { outer, { 0 } };
	const char *gname = g->name ? g->name : "";
	int rc = 0;
	size_t *order = NULL;
	for (size_t i = 0; i < g->n_input; i++) {
		const char *s = g->input[i]->name;
		if (!s || !*s) {
			rc = qd_err_set(err, QD_EMODEL, "input", "graph '%s' input %zu has no name", gname, i);
			goto out;
		}
		if (qd_strmap_get(&sc.defs, s)) {
			rc = qd_err_set(err, QD_EMODEL, s, "graph '%s' lists input '%s' twice", gname, s);
			goto out;
		}
		if (qd_strmap_put(&sc.defs, s, (void *)DEF_INPUT))
			goto nomem;
	}
	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		if (!t->name || !*t->name) {
			rc = qd_err_set(err, QD_EMODEL, "initializer", "graph '%s' initializer %zu has no name",
					gname, i);
			goto out;
		}
		void **p = qd_strmap_get(&sc.defs, t->name);
		if (p && *p == DEF_INIT) {
			rc = qd_err_set(err, QD_EMODEL, t->name, "duplicate initializer '%s' in graph '%s'",
					t->name, gname);
			goto out;
		}
		if ((rc = qd_tensor_check_data(t, err)))
			goto out;
		if (!p && qd_strmap_put(&sc.defs, t->name, (void *)DEF_INIT))
			goto nomem;
	}
	for (size_t i = 0; i < g->n_sparse_initializer; i++) {
		const Onnx__TensorProto *v = g->sparse_initializer[i]->values;
		if (!v || !v->name || !*v->name) {
			rc = qd_err_set(err, QD_EMODEL, "sparse_initializer",
					"graph '%s' sparse initializer %zu has no values name", gname, i);
			goto out;
		}
		if (qd_strmap_put(&sc.defs, v->name, (void *)DEF_INIT))
			goto nomem;
	}
	/* node outputs: single assignment within the graph and against enclosing scopes */
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		char lb[160];
		for (size_t k = 0; k < n->n_output; k++) {
			const char *s = n->output[k];
			if (!*s)
				continue;
			void **p = qd_strmap_get(&sc.defs, s);
			if (p || scope_has(outer, s)) {
				const char *nl = node_label(n, lb, sizeof lb);
				rc = qd_err_set(err, QD_EMODEL, nl,
						"duplicate output name '%s': node '%s' (%s) redefines a %s",
						s, nl, n->op_type ? n->op_type : "",
						p ? (const char *)*p : "name of an enclosing graph");
				goto out;
			}
			if (qd_strmap_put(&sc.defs, s, (void *)DEF_NODE))
				goto nomem;
		}
	}
	for (size_t i = 0; i < g->n_node; i++)
		if ((rc = check_node(g->node[i], &sc, depth, err)))
			goto out;
	for (size_t i = 0; i < g->n_output; i++) {
		const char *s = g->output[i]->name;
		if (!s || !*s || !scope_has(&sc, s)) {
			rc = qd_err_set(err, QD_EMODEL, s ? s : "output",
					"graph '%s' output '%s' is not produced by any node, input or initializer",
					gname, s ? s : "");
			goto out;
		}
	}
	if (!(order = malloc((g->n_node ? g->n_node : 1) * sizeof *order)))
		goto nomem;
	rc = qd_graph_topo_order(g, order, err);
	goto out;
nomem:
	rc = qd_err_set(err, QD_ENOMEM, "graph", "cannot check model: out of memory");
out:
	free(order);
	qd_strmap_free(&sc.defs);
	return rc;
}

int qd_model_check(const struct qd_model *m, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	if (!m || !m->proto)
		return qd_err_set(err, QD_EINVAL, "model", "cannot check: no model");
	const Onnx__ModelProto *p = m->proto;
	if (!p->has_ir_version || p->ir_version <= 0)
		return qd_err_set(err, QD_EMODEL, "ir_version", "model has no ir_version");
	if (!p->graph)
		return qd_err_set(err, QD_EMODEL, "graph", "model has no graph");
	if (p->ir_version >= 3 && !p->n_opset_import)
		return qd_err_set(err, QD_EMODEL, "opset_import", "model imports no opset");
	for (size_t i = 0; i < p->n_opset_import; i++)
		if (!p->opset_import[i]->has_version || p->opset_import[i]->version <= 0)
			return qd_err_set(err, QD_EMODEL, "opset_import",
					  "opset import for domain '%s' has no valid version",
					  p->opset_import[i]->domain ? p->opset_import[i]->domain : "");
	return check_graph(p->graph, NULL, 0, err);
}
