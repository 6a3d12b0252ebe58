/* Olive data configs (passes/data_config.h): the workflow's "data_configs" in Olive's
 * dict and list forms, the data_config references of passes and evaluator metrics, and
 * their normalized form {"name", "dataset", "batch_size"}.
 *
 * Keys of one data config:
 *   name               the config's name (list form: required; dict form: must match)
 *   dataset            required: the uploaded dataset's id (quantd run: a file path)
 *   batch_size         samples per batch (integer >= 1, default 1)
 *   dataloader_config  Olive's {"batch_size": N}; other dataloader keys are rejected
 *   type               Olive's container name; informational (reported as a note):
 *                      quantd always reads the bound dataset's arrays
 * Olive's user_script, script_dir, load_dataset_config, pre_process_data_config,
 * post_process_data_config, components and params_config are rejected with a 400 that
 * says how quantd binds data instead; any other key is rejected as unknown. */
#include "passes/data_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const olive_types[] = {
	"DataContainer", "HuggingfaceContainer", "DummyDataContainer", "RawDataContainer",
	"TransformersDummyDataContainer", "TransformersPromptDummyDataContainer",
	"TransformersTokenDummyDataContainer",
};

/* Olive keys quantd cannot honour: it runs no user code and downloads nothing. */
static const char *const olive_rejected[] = {
	"user_script", "script_dir", "load_dataset_config", "pre_process_data_config",
	"post_process_data_config", "components", "params_config",
};

#define BIND_HINT "quantd binds data by uploading a dataset (POST /v1/datasets: an .npz or a tar " \
	"of ONNX test_data_set_* folders) and naming its id in \"dataset\""

static bool in_list(const char *s, const char *const *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, l[i]))
			return true;
	return false;
}

static int field_err(struct qd_err *err, int code, const char *base, const char *key,
		     const char *fmt, const char *a, const char *b)
{
	char field[128], name[64], kk[64];
	snprintf(name, sizeof name, "%s", base);
	snprintf(kk, sizeof kk, "%s", key ? key : "");
	snprintf(field, sizeof field, "%s%s%s", name, key ? "." : "", kk);
	return qd_err_set(err, code, field, fmt, a ? a : "", b ? b : "");
}

/* One config object; label is its name for messages, base the field path. */
static int check_config(const char *label, const json_t *cfg, const char *base, bool need_name,
			const char *expect_name, struct qd_err *err)
{
	if (!json_is_object(cfg))
		return field_err(err, QD_EINVAL, base, NULL, "data config '%s' must be an object%s", label, "");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)cfg, k, v) {
		if (!strcmp(k, "name")) {
			if (!json_is_string(v) || !json_string_length(v))
				return field_err(err, QD_EINVAL, base, k, "data config '%s': \"name\" must be a "
						 "non-empty string%s", label, "");
			if (expect_name && strcmp(json_string_value(v), expect_name))
				return field_err(err, QD_EINVAL, base, k, "data config '%s' has \"name\" '%s'; "
						 "in the dict form the name is the key", label, json_string_value(v));
		} else if (!strcmp(k, "type")) {
			if (!json_is_string(v) || !in_list(json_string_value(v), olive_types, QD_ARRAY_LEN(olive_types)))
				return field_err(err, QD_EINVAL, base, k, "data config '%s': unknown \"type\" '%s' "
						 "(Olive's DataContainer, HuggingfaceContainer, DummyDataContainer, "
						 "RawDataContainer, Transformers*DummyDataContainer)", label,
						 json_is_string(v) ? json_string_value(v) : "(not a string)");
		} else if (!strcmp(k, "dataset")) {
			if (!json_is_string(v) || !json_string_length(v))
				return field_err(err, QD_EINVAL, base, k, "data config '%s': \"dataset\" must be the id "
						 "of an uploaded dataset (a string)%s", label, "");
		} else if (!strcmp(k, "batch_size")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000)
				return field_err(err, QD_EINVAL, base, k, "data config '%s': \"batch_size\" must be "
						 "an integer in 1..1000000%s", label, "");
		} else if (!strcmp(k, "dataloader_config")) {
			char sub[128];
			snprintf(sub, sizeof sub, "%.100s.dataloader_config", base);
			if (!json_is_object(v))
				return field_err(err, QD_EINVAL, sub, NULL, "data config '%s': \"dataloader_config\" "
						 "must be an object%s", label, "");
			const char *dk;
			json_t *dv;
			json_object_foreach(v, dk, dv) {
				if (strcmp(dk, "batch_size"))
					return field_err(err, QD_EINVAL, sub, dk, "data config '%s': dataloader_config "
							 "key '%s' is not supported (quantd's loader takes only "
							 "batch_size; samples are read in order)", label, dk);
				if (!json_is_integer(dv) || json_integer_value(dv) < 1 ||
				    json_integer_value(dv) > 1000000)
					return field_err(err, QD_EINVAL, sub, dk, "data config '%s': "
							 "dataloader_config.batch_size must be an integer in "
							 "1..1000000%s", label, "");
			}
			const json_t *a = json_object_get(cfg, "batch_size"), *b = json_object_get(v, "batch_size");
			if (json_is_integer(a) && json_is_integer(b) && json_integer_value(a) != json_integer_value(b))
				return field_err(err, QD_EINVAL, sub, "batch_size", "data config '%s': batch_size and "
						 "dataloader_config.batch_size differ%s", label, "");
		} else if (in_list(k, olive_rejected, QD_ARRAY_LEN(olive_rejected))) {
			char msg[64];
			snprintf(msg, sizeof msg, "%s", k);
			return field_err(err, QD_EUNSUPPORTED, base, k, "data config '%s': key '%s' is not "
					 "supported: quantd runs no user scripts and loads no datasets by itself; "
					 BIND_HINT, label, msg);
		} else {
			return field_err(err, QD_EINVAL, base, k, "data config '%s': unknown key '%s' (allowed: "
					 "name, type, dataset, batch_size, dataloader_config)", label, k);
		}
	}
	if (need_name && !json_is_string(json_object_get(cfg, "name")))
		return field_err(err, QD_EINVAL, base, "name", "data config '%s' has no \"name\"%s", label, "");
	if (!json_object_get(cfg, "dataset"))
		return field_err(err, QD_EINVAL, base, "dataset", "data config '%s' has no \"dataset\": %s", label,
				 BIND_HINT);
	return 0;
}

/* ---- walking the workflow ---- */

/* Named configs: fn(ud, name, cfg, field) for each; stops at the first error. */
typedef int (*cfg_fn)(void *ud, const char *name, const json_t *cfg, const char *field,
		      struct qd_err *err);

static int each_named(const json_t *wf, cfg_fn fn, void *ud, struct qd_err *err)
{
	const json_t *dcs = json_object_get(wf, "data_configs");
	if (!dcs || json_is_null(dcs))
		return 0;
	char field[128];
	if (json_is_object(dcs)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)dcs, k, v) {
			snprintf(field, sizeof field, "data_configs.%.100s", k);
			int rc = fn(ud, k, v, field, err);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!json_is_array(dcs))
		return qd_err_set(err, QD_EINVAL, "data_configs", "\"data_configs\" must be an object (name -> "
				  "config) or a list of configs with \"name\"");
	size_t i;
	json_t *v;
	json_array_foreach(dcs, i, v) {
		const json_t *n = json_is_object(v) ? json_object_get(v, "name") : NULL;
		char idx[32];
		snprintf(idx, sizeof idx, "%zu", i);
		const char *name = json_is_string(n) && json_string_length(n) ? json_string_value(n) : idx;
		snprintf(field, sizeof field, "data_configs.%.100s", name);
		int rc = fn(ud, name, v, field, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Named config by name; borrow or NULL. */
static const json_t *find_named(const json_t *wf, const char *name)
{
	const json_t *dcs = json_object_get(wf, "data_configs");
	if (json_is_object(dcs))
		return json_object_get(dcs, name);
	size_t i;
	json_t *v;
	if (json_is_array(dcs))
		json_array_foreach(dcs, i, v) {
			const json_t *n = json_object_get(v, "name");
			if (json_is_string(n) && !strcmp(json_string_value(n), name))
				return v;
		}
	return NULL;
}

const json_t *qd_data_config_find(const json_t *workflow, const char *name)
{
	return find_named(workflow, name);
}

/* References: fn(ud, value, field) for every data_config value of a pass (also under
 * Olive's older "config") or an evaluator metric. */
typedef int (*ref_fn)(void *ud, const json_t *value, const char *field, struct qd_err *err);

static int pass_refs(const json_t *p, const char *base, ref_fn fn, void *ud, struct qd_err *err)
{
	if (!json_is_object(p))
		return 0;
	char field[128];
	const json_t *v = json_object_get(p, "data_config");
	if (v) {
		snprintf(field, sizeof field, "%.110s.data_config", base);
		int rc = fn(ud, v, field, err);
		if (rc)
			return rc;
	}
	const json_t *c = json_object_get(p, "config");
	if (json_is_object(c) && (v = json_object_get(c, "data_config"))) {
		snprintf(field, sizeof field, "%.100s.config.data_config", base);
		return fn(ud, v, field, err);
	}
	return 0;
}

static int metric_refs(const json_t *ev, const char *base, ref_fn fn, void *ud, struct qd_err *err)
{
	const json_t *ms = json_is_object(ev) ? json_object_get(ev, "metrics") : NULL;
	size_t i;
	json_t *m;
	if (!json_is_array(ms))
		return 0;
	json_array_foreach(ms, i, m) {
		const json_t *v = json_is_object(m) ? json_object_get(m, "data_config") : NULL;
		if (!v)
			continue;
		char field[128];
		snprintf(field, sizeof field, "%.80s.metrics.%zu.data_config", base, i % 100000);
		int rc = fn(ud, v, field, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int each_ref(const json_t *wf, ref_fn fn, void *ud, struct qd_err *err)
{
	const json_t *passes = json_object_get(wf, "passes");
	char base[128];
	int rc;
	const char *k;
	json_t *v;
	size_t i;
	if (json_is_object(passes)) {
		json_object_foreach((json_t *)passes, k, v) {
			snprintf(base, sizeof base, "passes.%.100s", k);
			if (json_is_array(v)) {  /* alternatives of one pass */
				size_t j;
				json_t *alt;
				json_array_foreach(v, j, alt)
					if ((rc = pass_refs(alt, base, fn, ud, err)))
						return rc;
			} else if ((rc = pass_refs(v, base, fn, ud, err)))
				return rc;
		}
	} else if (json_is_array(passes)) {
		json_array_foreach(passes, i, v) {
			const json_t *n = json_is_object(v) ? json_object_get(v, "name") : NULL;
			if (json_is_string(n))
				snprintf(base, sizeof base, "passes.%.100s", json_string_value(n));
			else
				snprintf(base, sizeof base, "passes.%zu", i);
			if ((rc = pass_refs(v, base, fn, ud, err)))
				return rc;
		}
	}
	if ((rc = metric_refs(json_object_get(wf, "evaluator"), "evaluator", fn, ud, err)))
		return rc;
	const json_t *evs = json_object_get(wf, "evaluators");
	if (json_is_object(evs))
		json_object_foreach((json_t *)evs, k, v) {
			snprintf(base, sizeof base, "evaluators.%.100s", k);
			if ((rc = metric_refs(v, base, fn, ud, err)))
				return rc;
		}
	return 0;
}

/* ---- validate ---- */

struct val_ctx {
	const json_t *wf;
	json_t *seen;        /* names, for duplicates in the list form */
	bool list;
};

static int val_named(void *ud, const char *name, const json_t *cfg, const char *field, struct qd_err *err)
{
	struct val_ctx *c = ud;
	if (c->list) {
		if (!json_is_object(cfg) || !json_is_string(json_object_get(cfg, "name")))
			return qd_err_set(err, QD_EINVAL, field, "data_configs entry %s has no \"name\" (the list "
					  "form needs one per config)", name);
		if (json_object_get(c->seen, name))
			return qd_err_set(err, QD_EINVAL, field, "data config '%s' appears twice", name);
		json_object_set_new(c->seen, name, json_true());
	}
	return check_config(name, cfg, field, c->list, c->list ? NULL : name, err);
}

static bool is_default(const json_t *v)
{
	return !v || json_is_null(v) || (json_is_string(v) && !strcmp(json_string_value(v), "DEFAULT_VALUE"));
}

static int val_ref(void *ud, const json_t *v, const char *field, struct qd_err *err)
{
	struct val_ctx *c = ud;
	if (is_default(v))
		return 0;
	if (json_is_array(v)) {  /* a list of values to search over */
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) {
			int rc = val_ref(ud, x, field, err);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (json_is_object(v))
		return check_config("(inline)", v, field, false, NULL, err);
	if (!json_is_string(v))
		return qd_err_set(err, QD_EINVAL, field, "data_config must be the name of a data config or an "
				  "inline data config object");
	const char *name = json_string_value(v);
	if (!find_named(c->wf, name)) {
		char have[200] = "";
		size_t k = 0;
		const json_t *dcs = json_object_get(c->wf, "data_configs");
		const char *key;
		json_t *x;
		size_t i;
		if (json_is_object(dcs))
			json_object_foreach((json_t *)dcs, key, x)
				k += (size_t)snprintf(have + k, k < sizeof have ? sizeof have - k : 0, "%s'%s'",
						      k ? ", " : "", key);
		else if (json_is_array(dcs))
			json_array_foreach(dcs, i, x) {
				const json_t *n = json_object_get(x, "name");
				k += (size_t)snprintf(have + k, k < sizeof have ? sizeof have - k : 0, "%s'%s'",
						      k ? ", " : "", json_is_string(n) ? json_string_value(n) : "?");
			}
		return qd_err_set(err, QD_EINVAL, field, "unknown data config '%s' (data_configs has %s)", name,
				  k ? have : "none");
	}
	return 0;
}

int qd_data_configs_validate(const json_t *workflow, struct qd_err *err)
{
	if (!json_is_object(workflow))
		return qd_err_set(err, QD_EINVAL, "", "workflow must be a JSON object");
	struct val_ctx c = { workflow, json_object(), json_is_array(json_object_get(workflow, "data_configs")) };
	if (!c.seen)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	int rc = each_named(workflow, val_named, &c, err);
	if (!rc)
		rc = each_ref(workflow, val_ref, &c, err);
	json_decref(c.seen);
	return rc;
}

/* ---- resolve ---- */

static json_t *normalize(const char *name, const json_t *cfg)
{
	const json_t *bs = json_object_get(cfg, "batch_size");
	const json_t *dl = json_object_get(cfg, "dataloader_config");
	if (!json_is_integer(bs) && json_is_object(dl))
		bs = json_object_get(dl, "batch_size");
	json_t *o = json_pack("{s:s, s:s, s:I}", "name", name, "dataset",
			      json_string_value(json_object_get(cfg, "dataset")), "batch_size",
			      (json_int_t)(json_is_integer(bs) ? json_integer_value(bs) : 1));
	const json_t *t = json_object_get(cfg, "type");
	if (o && json_is_string(t))
		json_object_set(o, "type", (json_t *)t);
	return o;
}

int qd_data_config_resolve(const json_t *workflow, const json_t *value, const char *field,
			   json_t **cfg, struct qd_err *err)
{
	*cfg = NULL;
	const char *f = field ? field : "data_config";
	if (is_default(value))
		return qd_err_set(err, QD_EINVAL, f, "no data config given");
	if (json_is_string(value)) {
		const char *name = json_string_value(value);
		const json_t *c = find_named(workflow, name);
		if (!c)
			return qd_err_set(err, QD_EINVAL, f, "unknown data config '%s'", name);
		char base[128];
		snprintf(base, sizeof base, "data_configs.%.100s", name);
		bool list = json_is_array(json_object_get(workflow, "data_configs"));
		int rc = check_config(name, c, base, list, list ? NULL : name, err);
		if (rc)
			return rc;
		*cfg = normalize(name, c);
	} else if (json_is_object(value)) {
		int rc = check_config("(inline)", value, f, false, NULL, err);
		if (rc)
			return rc;
		const json_t *n = json_object_get(value, "name");
		*cfg = normalize(json_is_string(n) ? json_string_value(n) : "inline", value);
	} else
		return qd_err_set(err, QD_EINVAL, f, "data_config must be the name of a data config or an "
				  "inline data config object");
	return *cfg ? 0 : qd_err_set(err, QD_ENOMEM, "", "out of memory");
}

/* ---- references ---- */

struct ref_ctx {
	json_t *out;         /* array */
	bool bindings;       /* {"dataset", "field", "config"} objects instead of strings */
};

static void add_binding(struct ref_ctx *c, const char *name, const json_t *cfg, const char *field)
{
	const json_t *d = json_is_object(cfg) ? json_object_get(cfg, "dataset") : NULL;
	if (!json_is_string(d))
		return;
	if (c->bindings) {
		char f[160];
		snprintf(f, sizeof f, "%.120s.dataset", field);
		json_array_append_new(c->out, json_pack("{s:s, s:s, s:s}", "dataset", json_string_value(d),
							"field", f, "config", name));
		return;
	}
	size_t i;
	json_t *x;
	json_array_foreach(c->out, i, x)
		if (!strcmp(json_string_value(x), json_string_value(d)))
			return;
	json_array_append_new(c->out, json_string(json_string_value(d)));
}

static int ref_named(void *ud, const char *name, const json_t *cfg, const char *field, struct qd_err *err)
{
	add_binding(ud, name, cfg, field);
	return 0;
}

static int ref_inline(void *ud, const json_t *v, const char *field, struct qd_err *err)
{
	if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
			ref_inline(ud, x, field, err);
	} else if (json_is_object(v)) {
		const json_t *n = json_object_get(v, "name");
		add_binding(ud, json_is_string(n) ? json_string_value(n) : "inline", v, field);
	}
	return 0;
}

static json_t *collect(const json_t *workflow, bool bindings)
{
	struct ref_ctx c = { json_array(), bindings };
	if (!c.out || !json_is_object(workflow))
		return c.out;
	each_named(workflow, ref_named, &c, NULL);
	each_ref(workflow, ref_inline, &c, NULL);
	return c.out;
}

json_t *qd_workflow_dataset_refs(const json_t *workflow)
{
	return collect(workflow, false);
}

json_t *qd_workflow_dataset_bindings(const json_t *workflow)
{
	return collect(workflow, true);
}

/* ---- notes ---- */

struct note_ctx {
	const json_t *wf;
	json_t *out;
	json_t *used;        /* names referenced */
};

static int note_ref(void *ud, const json_t *v, const char *field, struct qd_err *err)
{
	struct note_ctx *c = ud;
	if (json_is_string(v))
		json_object_set_new(c->used, json_string_value(v), json_true());
	else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
			note_ref(ud, x, field, err);
	} else if (json_is_object(v) && json_is_string(json_object_get(v, "type"))) {
		char line[512];
		snprintf(line, sizeof line, "%s: data config type '%s' is informational: quantd reads the "
			 "arrays of the bound dataset", field, json_string_value(json_object_get(v, "type")));
		json_array_append_new(c->out, json_string(line));
	}
	return 0;
}

static int note_named(void *ud, const char *name, const json_t *cfg, const char *field, struct qd_err *err)
{
	struct note_ctx *c = ud;
	char line[512];
	const json_t *t = json_is_object(cfg) ? json_object_get(cfg, "type") : NULL;
	if (json_is_string(t)) {
		snprintf(line, sizeof line, "data config '%s': type '%s' is informational: quantd reads the "
			 "arrays of the bound dataset '%s'", name, json_string_value(t),
			 json_is_string(json_object_get(cfg, "dataset"))
				 ? json_string_value(json_object_get(cfg, "dataset")) : "?");
		json_array_append_new(c->out, json_string(line));
	}
	if (!json_object_get(c->used, name)) {
		snprintf(line, sizeof line, "data config '%s' is not used by any pass or metric", name);
		json_array_append_new(c->out, json_string(line));
	}
	return 0;
}

json_t *qd_data_configs_notes(const json_t *workflow)
{
	struct note_ctx c = { workflow, json_array(), json_object() };
	if (c.out && c.used && json_is_object(workflow)) {
		each_ref(workflow, note_ref, &c, NULL);
		each_named(workflow, note_named, &c, NULL);
	}
	json_decref(c.used);
	return c.out;
}
