/* Model-level operations: opset get/set, Constant nodes → initializers (all graphs), and
 * the JSON summary the API serves for an uploaded model. */
#define _GNU_SOURCE
#include "onnx/onnx_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- opsets ---- */
static bool domain_eq(const char *a, const char *b)
{
	if (!a || !strcmp(a, "ai.onnx"))
		a = "";
	if (!b || !strcmp(b, "ai.onnx"))
		b = "";
	return !strcmp(a, b);
}

int64_t qd_model_opset(const struct qd_model *m, const char *domain)
{
	if (!m || !m->proto)
		return 0;
	for (size_t i = 0; i < m->proto->n_opset_import; i++) {
		Onnx__OperatorSetIdProto *o = m->proto->opset_import[i];
		if (domain_eq(o->domain, domain))
			return o->has_version ? o->version : 0;
	}
	return 0;
}

int qd_model_set_opset(struct qd_model *m, const char *domain, int64_t version)
{
	if (!m || !m->proto || version <= 0)
		return -QD_EINVAL;
	Onnx__ModelProto *p = m->proto;
	for (size_t i = 0; i < p->n_opset_import; i++) {
		if (domain_eq(p->opset_import[i]->domain, domain)) {
			p->opset_import[i]->has_version = 1;
			p->opset_import[i]->version = version;
			return 0;
		}
	}
	Onnx__OperatorSetIdProto *o = malloc(sizeof *o);
	if (!o)
		return -QD_ENOMEM;
	onnx__operator_set_id_proto__init(o);
	o->has_version = 1;
	o->version = version;
	if ((domain && *domain && strcmp(domain, "ai.onnx") && !(o->domain = strdup(domain))) ||
	    qd_ptr_append(&p->n_opset_import, (void ***)&p->opset_import, o)) {
		protobuf_c_message_free_unpacked(&o->base, NULL);
		return -QD_ENOMEM;
	}
	return 0;
}

/* ---- Constant → initializer ---- */
/* Builds the initializer for a Constant node's value attribute; NULL with *skip set when
 * the value is not representable as a dense tensor (sparse_value, unknown attribute). */
static Onnx__TensorProto *constant_tensor(Onnx__NodeProto *n, bool *skip)
{
	*skip = true;
	if (n->n_attribute != 1 || n->n_output != 1 || !*n->output[0] || n->n_input)
		return NULL;
	Onnx__AttributeProto *a = n->attribute[0];
	const char *an = a->name ? a->name : "";
	const char *out = n->output[0];
	Onnx__TensorProto *t = NULL;
	*skip = false;
	if (!strcmp(an, "value")) {
		if (!a->t) {
			*skip = true;
			return NULL;
		}
		t = a->t;      /* steal: the node is freed after */
		a->t = NULL;
		free(t->name);
		if (!(t->name = strdup(out))) {
			qd_tensor_free(t);
			return NULL;
		}
		return t;
	}
	if (!strcmp(an, "value_float")) {
		return qd_tensor_new(out, QD_DT_FLOAT, NULL, 0, &a->f, sizeof a->f);
	}
	if (!strcmp(an, "value_floats")) {
		int64_t d = (int64_t)a->n_floats;
		return qd_tensor_new(out, QD_DT_FLOAT, &d, 1, a->floats, a->n_floats * sizeof(float));
	}
	if (!strcmp(an, "value_int")) {
		return qd_tensor_new(out, QD_DT_INT64, NULL, 0, &a->i, sizeof a->i);
	}
	if (!strcmp(an, "value_ints")) {
		int64_t d = (int64_t)a->n_ints;
		return qd_tensor_new(out, QD_DT_INT64, &d, 1, a->ints, a->n_ints * sizeof(int64_t));
	}
	if (!strcmp(an, "value_string") || !strcmp(an, "value_strings")) {
		bool one = !strcmp(an, "value_string");
		int64_t d = one ? 0 : (int64_t)a->n_strings;
		t = qd_tensor_new(out, QD_DT_STRING, &d, one ? 0 : 1, NULL, 0);
		if (!t)
			return NULL;
		size_t cnt = one ? 1 : a->n_strings;
		t->string_data = calloc(cnt ? cnt : 1, sizeof *t->string_data);
		if (!t->string_data) {
			qd_tensor_free(t);
			return NULL;
		}
		t->n_string_data = cnt;
		for (size_t i = 0; i < cnt; i++) {
			ProtobufCBinaryData *src = one ? &a->s : &a->strings[i];
			uint8_t *b = malloc(src->len + 1);
			if (!b) {
				qd_tensor_free(t);
				return NULL;
			}
			if (src->len)
				memcpy(b, src->data, src->len);
			b[src->len] = 0;
			t->string_data[i] = (ProtobufCBinaryData){ src->len, b };
		}
		return t;
	}
	*skip = true; /* sparse_value or unknown */
	return NULL;
}

struct norm_ctx { int converted; struct qd_err *err; int rc; };

static int normalize_graph(Onnx__GraphProto *g, int depth, void *ud)
{
	struct norm_ctx *c = ud;
	bool *drop = calloc(g->n_node ? g->n_node : 1, sizeof *drop);
	struct qd_strmap outs = { 0 }, inits = { 0 };
	int rc = 0, any = 0;
	if (!drop)
		goto nomem;
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && qd_strmap_put(&outs, g->output[i]->name, NULL))
			goto nomem;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && qd_strmap_put(&inits, g->initializer[i]->name, NULL))
			goto nomem;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!n->op_type || strcmp(n->op_type, "Constant") || *qd_node_domain(n))
			continue;
		/* graph outputs stay produced by a node; a name clash is left for check to report */
		if (n->n_output == 1 && (qd_strmap_get(&outs, n->output[0]) ||
					 qd_strmap_get(&inits, n->output[0])))
			continue;
		bool skip;
		Onnx__TensorProto *t = constant_tensor(n, &skip);
		if (skip)
			continue;
		if (!t || qd_graph_add_initializer(g, t)) {
			qd_tensor_free(t);
			goto nomem;
		}
		if (qd_strmap_put(&inits, t->name, NULL))
			goto nomem;
		drop[i] = true;
		any = 1;
		c->converted++;
	}
	if (any)
		qd_graph_remove_nodes(g, drop);
	goto out;
nomem:
	rc = qd_err_set(c->err, QD_ENOMEM, "graph", "cannot normalize constants: out of memory");
out:
	free(drop);
	qd_strmap_free(&outs);
	qd_strmap_free(&inits);
	return rc;
}

int qd_model_normalize_constants(struct qd_model *m, struct qd_err *err)
{
	struct qd_err tmp;
	if (!err)
		err = &tmp;
	if (!m || !m->proto || !m->proto->graph)
		return qd_err_set(err, QD_EINVAL, "graph", "cannot normalize constants: model has no graph");
	struct norm_ctx c = { 0, err, 0 };
	int rc = qd_graph_walk(m->proto->graph, normalize_graph, &c);
	if (rc)
		return rc;
	/* IR < 4 requires every initializer to be a graph input as well: raise to 4, which
	 * every runtime that reads IR 3 also reads */
	if (c.converted && m->proto->has_ir_version && m->proto->ir_version < 4)
		m->proto->ir_version = 4;
	return c.converted;
}

/* ---- summary ---- */
static json_t *value_json(const Onnx__ValueInfoProto *v)
{
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(v->name ? v->name : ""));
	const Onnx__TypeProto *tp = v->type;
	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
		const char *kind = !tp ? "unknown" :
			tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE ? "sequence" :
			tp->value_case == ONNX__TYPE_PROTO__VALUE_MAP_TYPE ? "map" :
			tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE ? "optional" :
			tp->value_case == ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE ? "sparse_tensor" : "unknown";
		json_object_set_new(o, "dtype", json_string(kind));
		json_object_set_new(o, "shape", json_null());
		return o;
	}
	const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
	json_object_set_new(o, "dtype", json_string(tt->has_elem_type ? qd_dtype_name(tt->elem_type) : "unknown"));
	if (!tt->shape) {
		json_object_set_new(o, "shape", json_null()); /* rank unknown */
		return o;
	}
	json_t *sh = json_array();
	for (size_t i = 0; i < tt->shape->n_dim; i++) {
		const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
		if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
			json_array_append_new(sh, json_integer(d->dim_value));
		else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param && *d->dim_param)
			json_array_append_new(sh, json_string(d->dim_param));
		else
			json_array_append_new(sh, json_null());
	}
	json_object_set_new(o, "shape", sh);
	return o;
}

struct sum_ctx { json_t *hist; long long nodes, inits, params; };

static int summary_graph(Onnx__GraphProto *g, int depth, void *ud)
{
	struct sum_ctx *c = ud;
	c->nodes += (long long)g->n_node;
	c->inits += (long long)g->n_initializer;
	for (size_t i = 0; i < g->n_initializer; i++) {
		int64_t n = qd_tensor_numel(g->initializer[i]);
		if (n > 0)
			c->params += n;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		const char *dom = qd_node_domain(n);
		char *key = *dom ? qd_asprintf("%s.%s", dom, n->op_type ? n->op_type : "")
				 : strdup(n->op_type ? n->op_type : "");
		if (!key)
			return -QD_ENOMEM;
		json_t *v = json_object_get(c->hist, key);
		json_object_set_new(c->hist, key, json_integer(v ? json_integer_value(v) + 1 : 1));
		free(key);
		/* Constant nodes count as parameters when they hold dense weights */
		if (n->op_type && !strcmp(n->op_type, "Constant") && !*dom) {
			const Onnx__AttributeProto *a = qd_node_attr(n, "value");
			int64_t k = a && a->t ? qd_tensor_numel(a->t) : 0;
			if (k > 0)
				c->params += k;
		}
	}
	return 0;
}

struct json_t *qd_model_summary_json(const struct qd_model *m)
{
	if (!m || !m->proto)
		return NULL;
	const Onnx__ModelProto *p = m->proto;
	json_t *o = json_object();
	json_object_set_new(o, "ir_version", p->has_ir_version ? json_integer(p->ir_version) : json_null());
	json_object_set_new(o, "producer", json_string(p->producer_name ? p->producer_name : ""));
	json_object_set_new(o, "producer_version", json_string(p->producer_version ? p->producer_version : ""));
	json_t *ops = json_object();
	for (size_t i = 0; i < p->n_opset_import; i++) {
		const char *d = p->opset_import[i]->domain;
		json_object_set_new(ops, d && *d ? d : "ai.onnx", json_integer(p->opset_import[i]->version));
	}
	json_object_set_new(o, "opsets", ops);
	json_t *ins = json_array(), *outs = json_array();
	struct sum_ctx c = { json_object(), 0, 0, 0 };
	if (p->graph) {
		struct qd_strmap inits = { 0 };
		for (size_t i = 0; i < p->graph->n_initializer; i++)
			qd_strmap_put(&inits, p->graph->initializer[i]->name ? p->graph->initializer[i]->name : "", NULL);
		for (size_t i = 0; i < p->graph->n_input; i++) /* IR<4: skip initializer inputs */
			if (!qd_strmap_get(&inits, p->graph->input[i]->name))
				json_array_append_new(ins, value_json(p->graph->input[i]));
		qd_strmap_free(&inits);
		for (size_t i = 0; i < p->graph->n_output; i++)
			json_array_append_new(outs, value_json(p->graph->output[i]));
		qd_graph_walk(p->graph, summary_graph, &c);
	}
	json_object_set_new(o, "inputs", ins);
	json_object_set_new(o, "outputs", outs);
	json_object_set_new(o, "op_histogram", c.hist);
	json_object_set_new(o, "nodes", json_integer(c.nodes));
	json_object_set_new(o, "initializers", json_integer(c.inits));
	json_object_set_new(o, "parameters", json_integer(c.params));
	return o;
}

#define SUMMARY_MAX_DIMS 64

/* One summary value ({"name", "dtype", "shape"}) back into a ValueInfo: a null shape is
 * an unknown rank, a string dim its dim_param, a null dim an unknown dim. */
static Onnx__ValueInfoProto *value_from_json(const json_t *v)
{
	const json_t *sh = json_object_get(v, "shape");
	size_t nd = json_array_size(sh);
	if (nd > SUMMARY_MAX_DIMS)
		nd = SUMMARY_MAX_DIMS;
	int64_t dims[SUMMARY_MAX_DIMS];
	for (size_t k = 0; k < nd; k++) {
		const json_t *d = json_array_get(sh, k);
		dims[k] = json_is_integer(d) ? json_integer_value(d) : -1;
	}
	const char *dt = json_string_value(json_object_get(v, "dtype"));
	Onnx__ValueInfoProto *vi = qd_value_info_new(json_string_value(json_object_get(v, "name")) ?: "",
						     qd_dtype_from_name(dt ? dt : ""), dims, nd);
	if (!vi)
		return NULL;
	Onnx__TensorShapeProto *s = vi->type->tensor_type->shape;
	if (json_is_null(sh) || !sh) {
		onnx__tensor_shape_proto__free_unpacked(s, NULL);
		vi->type->tensor_type->shape = NULL;
		return vi;
	}
	for (size_t k = 0; k < nd; k++) {
		const char *p = json_string_value(json_array_get(sh, k));
		if (!p)
			continue;
		char *c = strdup(p);
		if (!c) {
			protobuf_c_message_free_unpacked(&vi->base, NULL);
			return NULL;
		}
		s->dim[k]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
		s->dim[k]->dim_param = c;
	}
	return vi;
}

struct qd_model *qd_model_from_summary_json(const struct json_t *sum)
{
	struct qd_model *m = qd_model_new(8, 13);
	if (!m)
		return NULL;
	Onnx__GraphProto *g = m->proto->graph;
	const char *keys[2] = {"inputs", "outputs"};
	for (int l = 0; l < 2; l++) {
		const json_t *list = json_object_get(sum, keys[l]);
		size_t n = json_array_size(list);
		Onnx__ValueInfoProto **arr = calloc(n ? n : 1, sizeof *arr);
		if (!arr)
			goto fail;
		if (l == 0)
			g->input = arr;
		else
			g->output = arr;
		for (size_t i = 0; i < n; i++) {
			if (!(arr[i] = value_from_json(json_array_get(list, i))))
				goto fail;
			if (l == 0)
				g->n_input++;
			else
				g->n_output++;
		}
	}
	return m;
fail:
	qd_model_free(m);
	return NULL;
}

/* ---- construction ---- */
struct qd_model *qd_model_new(int64_t ir_version, int64_t opset)
{
	struct qd_model *m = calloc(1, sizeof *m);
	Onnx__ModelProto *p = malloc(sizeof *p);
	Onnx__GraphProto *g = malloc(sizeof *g);
	if (!m || !p || !g) {
		free(m);
		free(p);
		free(g);
		return NULL;
	}
	onnx__model_proto__init(p);
	onnx__graph_proto__init(g);
	m->proto = p;
	p->graph = g;
	p->has_ir_version = 1;
	p->ir_version = ir_version;
	if (!(p->producer_name = strdup("quantd")) || !(g->name = strdup("main")) ||
	    qd_model_set_opset(m, "", opset)) {
		qd_model_free(m);
		return NULL;
	}
	return m;
}

Onnx__ValueInfoProto *qd_value_info_new(const char *name, int dtype, const int64_t *dims, size_t ndims)
{
	Onnx__ValueInfoProto *v = malloc(sizeof *v);
	Onnx__TypeProto *tp = malloc(sizeof *tp);
	Onnx__TypeProto__Tensor *tt = malloc(sizeof *tt);
	Onnx__TensorShapeProto *sh = malloc(sizeof *sh);
	if (!v || !tp || !tt || !sh) {
		free(v);
		free(tp);
		free(tt);
		free(sh);
		return NULL;
	}
	onnx__value_info_proto__init(v);
	onnx__type_proto__init(tp);
	onnx__type_proto__tensor__init(tt);
	onnx__tensor_shape_proto__init(sh);
	v->type = tp;
	tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tp->tensor_type = tt;
	tt->has_elem_type = 1;
	tt->elem_type = dtype;
	tt->shape = sh;
	if (!(v->name = strdup(name ? name : "")))
		goto fail;
	if (ndims && !(sh->dim = calloc(ndims, sizeof *sh->dim)))
		goto fail;
	for (size_t i = 0; i < ndims; i++) {
		Onnx__TensorShapeProto__Dimension *d = malloc(sizeof *d);
		if (!d)
			goto fail;
		onnx__tensor_shape_proto__dimension__init(d);
		sh->dim[sh->n_dim++] = d;
		if (dims && dims[i] >= 0) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			d->dim_value = dims[i];
		}
	}
	return v;
fail:
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return NULL;
}
