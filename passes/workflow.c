/* Olive-style workflow: submit-time validation of the "passes" section against the pass
 * registry, and the runner (load, pass chain with progress/log/cancel hooks, save,
 * metrics.json and footprint.json). */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

/* Top-level keys of an Olive run config that quantd accepts. Other modules validate the
 * contents of the ones they own (search_strategy, evaluator, data_configs). */
static const char *const workflow_keys[] = {
	"input_model", "model", "passes", "data_configs", "evaluator", "evaluators",
	"search_strategy", "engine", "systems", "output_dir", "workflow_id", "log_severity_level",
	"evaluate_input_model", "host", "target", "cache_dir", "clean_cache", "description",
};

/* Validate one pass entry (object). */
static int validate_pass(const char *name, const json_t *p, const char *field_base, struct qd_err *err)
{
	char field[128];
	snprintf(field, sizeof field, "%s.type", field_base);
	if (!json_is_object(p))
		return qd_err_set(err, QD_EINVAL, field_base, "pass '%s' must be an object", name);
	const json_t *t = json_object_get(p, "type");
	if (!json_is_string(t))
		return qd_err_set(err, QD_EINVAL, field, "pass '%s' has no \"type\"", name);
	const struct qd_pass_vt *vt = qd_pass_find(json_string_value(t));
	if (!vt)
		return qd_err_set(err, QD_EINVAL, field, "unknown pass type '%s'", json_string_value(t));
	if (!vt->implemented)
		return qd_err_set(err, QD_ENOT_IMPL, field, "pass type '%s' is not implemented", vt->name);
	json_t *space = NULL;
	int rc = qd_pass_resolve(vt, name, p, &space, err);
	if (rc == 0 && vt->check)
		rc = vt->check(name, space, err);
	json_decref(space);
	return rc;
}

int qd_workflow_validate(const json_t *workflow, struct qd_err *err)
{
	if (!json_is_object(workflow))
		return qd_err_set(err, QD_EINVAL, "", "workflow must be a JSON object");
	const char *k; json_t *v;
	json_object_foreach((json_t *)workflow, k, v) {
		bool known = false;
		for (size_t i = 0; i < QD_ARRAY_LEN(workflow_keys); i++)
			known = known || !strcmp(k, workflow_keys[i]);
		if (!known)
			return qd_err_set(err, QD_EINVAL, k, "unknown workflow key '%s'", k);
	}
	const json_t *passes = json_object_get(workflow, "passes");
	if (!passes)
		return qd_err_set(err, QD_EINVAL, "passes", "workflow has no \"passes\"");
	if (!json_is_object(passes))
		return qd_err_set(err, QD_EINVAL, "passes", "\"passes\" must be an object (name -> pass)");
	json_object_foreach((json_t *)passes, k, v) {
		char base[128];
		snprintf(base, sizeof base, "passes.%s", k);
		if (json_is_array(v)) {
			/* Olive's pass search: a list of alternative configurations. */
			if (json_array_size(v) == 0)
				return qd_err_set(err, QD_EINVAL, base, "pass '%s' has an empty list", k);
			size_t i; json_t *alt;
			json_array_foreach(v, i, alt) {
				int rc = validate_pass(k, alt, base, err);
				if (rc < 0)
					return rc;
			}
			continue;
		}
		int rc = validate_pass(k, v, base, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int qd_workflow_run(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		    json_t **result, struct qd_err *err)
{
	(void)req; (void)hooks;
	if (result)
		*result = NULL;
	return qd_err_set(err, QD_ENOT_IMPL, NULL, "workflow runner is not built yet");
}
