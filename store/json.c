/* store/ JSON renderers: the API's view of store rows (jansson). Times are ISO-8601 UTC
 * strings or null; JSON text columns are embedded as parsed values. */
#define _GNU_SOURCE
#include "store_internal.h"

#include <jansson.h>
#include <stdio.h>

static json_t *time_json(double t)
{
	if (t <= 0)
		return json_null();
	char buf[32];
	qd_time_iso8601(t, buf);
	return json_string(buf);
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* Parsed JSON text; null for NULL; the raw text as a string if it does not parse
 * (never expected: the store validates JSON on the way in). */
static json_t *embed(const char *text)
{
	if (!text)
		return json_null();
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	return j ? j : json_string(text);
}

/* Builds an object from (key, new value) pairs, taking every value's reference; NULL if
 * the object or any value is NULL (out of memory). */
static json_t *obj_build(json_t *o, const char *const *keys, json_t **vals, size_t n)
{
	bool ok = o != NULL;
	for (size_t i = 0; i < n; i++) {
		if (!vals[i])
			ok = false;
		else if (!ok)
			json_decref(vals[i]);
		else if (json_object_set_new(o, keys[i], vals[i]) < 0)  /* steals even on error */
			ok = false;
	}
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

#define BUILD(keys, vals) obj_build(json_object(), keys, vals, QD_ARRAY_LEN(keys))

json_t *qd_model_to_json(const struct qd_model_row *r)
{
	static const char *const k[] = { "id", "sha256", "size", "name", "summary", "created_at" };
	json_t *v[] = { json_string(r->id), json_string(r->sha256), json_integer(r->size),
			str_or_null(r->name), embed(r->summary_json), time_json(r->created_at) };
	return BUILD(k, v);
}

json_t *qd_dataset_to_json(const struct qd_dataset_row *r)
{
	static const char *const k[] = { "id", "sha256", "size", "name", "format", "created_at",
					 "summary" };
	json_t *v[] = { json_string(r->id), json_string(r->sha256), json_integer(r->size),
			str_or_null(r->name), str_or_null(r->format), time_json(r->created_at),
			embed(r->summary_json) };
	return BUILD(k, v);
}

json_t *qd_artifact_to_json(const struct qd_artifact_row *r)
{
	char url[128];
	snprintf(url, sizeof url, "/v1/artifacts/%s", r->id);
	static const char *const k[] = { "id", "job", "kind", "name", "size", "sha256",
					 "content_type", "created_at", "url" };
	json_t *v[] = { json_string(r->id), json_string(r->job_id), json_string(r->kind),
			str_or_null(r->name), json_integer(r->size), json_string(r->sha256),
			str_or_null(r->content_type), time_json(r->created_at), json_string(url) };
	return BUILD(k, v);
}

json_t *qd_trial_to_json(const struct qd_trial_row *r)
{
	json_t *rec = embed(r->record_json);
	json_t *cached = json_object_get(rec, "cached_from");
	static const char *const k[] = { "id", "job", "trial", "status", "params", "values", "goals",
					 "goals_met", "seconds", "error", "model", "model_size",
					 "model_sha256", "pareto", "cached_from", "fallback", "created_at" };
	json_t *v[] = { json_string(r->id), json_string(r->job_id), json_integer(r->idx),
			json_string(r->state), embed(r->config_json), embed(r->metrics_json),
			embed(r->goals_json), json_boolean(r->goals_met), json_real(r->seconds),
			str_or_null(r->error), str_or_null(r->model_path),
			r->model_size >= 0 ? json_integer(r->model_size) : json_null(),
			r->model_sha256[0] ? json_string(r->model_sha256) : json_null(),
			json_boolean(r->pareto), json_is_integer(cached) ? json_incref(cached) : json_null(),
			json_boolean(json_is_true(json_object_get(rec, "fallback"))), time_json(r->created_at) };
	json_decref(rec);
	return BUILD(k, v);
}

json_t *qd_job_to_json(const struct qd_job_row *r, const struct qd_artifact_row *arts,
		       size_t n_arts)
{
	json_t *error = json_null();
	if (r->error_code || r->error_message) {
		static const char *const ek[] = { "code", "message" };
		json_t *ev[] = { json_string(r->error_code ? r->error_code : "INTERNAL"),
				 str_or_null(r->error_message) };
		error = BUILD(ek, ev);
	}
	json_t *list = json_array();
	for (size_t i = 0; list && i < n_arts; i++) {
		json_t *a = qd_artifact_to_json(&arts[i]);
		if (!a || json_array_append_new(list, a) < 0) {
			json_decref(list);
			list = NULL;
		}
	}
	static const char *const k[] = { "id", "model", "state", "progress", "progress_message",
					 "attempts", "max_attempts", "cancel_requested", "error",
					 "created_at", "started_at", "finished_at", "updated_at",
					 "worker", "workflow", "result", "search", "artifacts" };
	json_t *v[] = { json_string(r->id), r->model_id[0] ? json_string(r->model_id) : json_null(),
			json_string(qd_job_state_name(r->state)), json_real(r->progress),
			str_or_null(r->progress_msg), json_integer(r->attempts),
			json_integer(r->max_attempts), json_boolean(r->cancel_requested), error,
			time_json(r->created_at), time_json(r->started_at),
			time_json(r->finished_at), time_json(r->updated_at), str_or_null(r->worker),
			embed(r->workflow_json), embed(r->result_json), embed(r->search_json), list };
	return BUILD(k, v);
}
