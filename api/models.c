/* /v1/models: upload (raw ONNX bytes streamed into the blob store, then validated with the
 * onnx loader), list, get, delete and download. An identical upload returns the existing
 * model (200) instead of creating a new one (201). */
#include "api/api.h"
#include "onnx/onnx.h"

#include <string.h>
#include <unistd.h>

json_t *qd_api_model_json(const struct qd_model_row *row)
{
	json_t *j = qd_model_to_json(row);
	if (!j)
		return NULL;
	json_t *sum = json_object_get(j, "summary");
	if (json_is_object(sum)) {
		json_incref(sum);
		json_object_del(j, "summary");
		json_object_update_missing(j, sum);
		json_decref(sum);
	} else
		json_object_del(j, "summary");
	char url[128];
	snprintf(url, sizeof url, "/v1/models/%s/content", row->id);
	json_object_set_new(j, "content_url", json_string(url));
	return j;
}

/* Parse and check the stored blob; *summary (new) describes it. Messages never mention
 * the blob's path. */
static int validate_blob(struct qd_req *r, const char *sha, json_t **summary)
{
	struct qd_store *st = r->d->store;
	size_t pmax = qd_blob_path_max(st);
	char path[pmax];
	int rc;
	if ((rc = qd_blob_path(st, sha, path, pmax, &r->err)))
		return rc;
	rc = qd_api_check_model_file(path, summary, &r->err);
	if (rc && r->err.code != QD_ENOMEM && r->err.code != QD_EIO) {
		if (r->err.code != QD_EPARSE && r->err.code != QD_EMODEL && r->err.code != QD_EUNSUPPORTED)
			r->err.code = QD_EMODEL;
		if (!r->err.field[0])
			snprintf(r->err.field, sizeof r->err.field, "body");
		qd_err_wrap(&r->err, "invalid model upload");
	}
	return rc;
}

static int check_name(struct qd_req *r, const char *name)
{
	size_t n = strlen(name);
	if (!n || n > 255)
		return qd_err_set(&r->err, QD_EINVAL, "name", "invalid model name: must be 1..255 bytes");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return qd_err_set(&r->err, QD_EINVAL, "name", "invalid model name: control characters are not allowed");
	return 0;
}

int qd_api_models_create(struct qd_req *r)
{
	struct qd_daemon *d = r->d;
	char own_sha[65], sha[65];
	uint64_t size = 0;
	json_t *summary = NULL;
	char *summary_txt = NULL;
	struct qd_model_row row = { 0 };
	bool existed_blob, existed_row = false;
	int rc;
	const char *name = qd_req_query(r, "name");
	qd_sha256_final(&r->sha, own_sha);
	if (name && (rc = check_name(r, name)))
		goto reject;
	if (r->body_bytes == 0) {
		rc = qd_err_set(&r->err, QD_EPARSE, "body",
				"invalid model upload: the request body is empty (send the ONNX file's bytes)");
		goto reject;
	}
	existed_blob = qd_blob_exists(d->store, own_sha);
	rc = qd_blob_writer_commit(r->bw, sha, &size, &r->err);
	r->bw = NULL;
	if (rc)
		goto out;
	if ((rc = validate_blob(r, sha, &summary))) {
		if (!existed_blob) {
			size_t pmax = qd_blob_path_max(d->store);
			char path[pmax];
			if (!qd_blob_path(d->store, sha, path, pmax, NULL))
				unlink(path);
		}
		goto reject;
	}
	if (!(summary_txt = json_dumps(summary, JSON_COMPACT))) {
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	struct qd_store_conn *c = qd_req_store(r);
	if (!c) {
		rc = -r->err.code;
		goto out;
	}
	if ((rc = qd_model_insert(c, sha, (int64_t)size, name, summary_txt, &row, &existed_row, &r->err)))
		goto out;
	__atomic_fetch_add(&d->metrics.uploads[1], 1, __ATOMIC_RELAXED);
	qd_log(QD_LOG_INFO, NULL, "model %s %s (%llu bytes, sha256 %.12s)", row.id,
	       existed_row ? "uploaded again" : "stored", (unsigned long long)size, sha);
	rc = qd_req_json(r, existed_row ? 200 : 201, qd_api_model_json(&row));
	char loc[128];
	snprintf(loc, sizeof loc, "/v1/models/%s", row.id);
	qd_req_add_header(r, MHD_HTTP_HEADER_LOCATION, loc);
	goto out;
reject:
	__atomic_fetch_add(&d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
out:
	json_decref(summary);
	free(summary_txt);
	qd_model_row_free(&row);
	return rc;
}

int qd_api_models_list(struct qd_req *r)
{
	struct qd_page pg;
	struct qd_model_row *rows = NULL;
	size_t n = 0;
	int rc;
	struct qd_store_conn *c;
	if ((rc = qd_req_page(r, &pg)))
		return rc;
	if (!(c = qd_req_store(r)))
		return -r->err.code;
	if ((rc = qd_model_list(c, &pg, &rows, &n, &r->err)))
		return rc;
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(items, qd_api_model_json(&rows[i]));
	qd_model_rows_free(rows, n);
	return qd_req_list(r, items, &pg, NULL);
}

int qd_api_models_get(struct qd_req *r)
{
	struct qd_model_row row = { 0 };
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_model_get(c, r->id, &row, &r->err)))
		return rc;
	rc = qd_req_json(r, 200, qd_api_model_json(&row));
	qd_model_row_free(&row);
	return rc;
}

int qd_api_models_delete(struct qd_req *r)
{
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_model_delete(c, r->id, &r->err)))
		return rc;
	qd_log(QD_LOG_INFO, NULL, "model %s deleted", r->id);
	return qd_req_empty(r, 204);
}

int qd_api_models_content(struct qd_req *r)
{
	struct qd_model_row row = { 0 };
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = qd_model_get(c, r->id, &row, &r->err)))
		return rc;
	char fname[300];
	snprintf(fname, sizeof fname, "%s", row.name && *row.name ? row.name : "model.onnx");
	rc = qd_req_send_blob(r, row.sha256, "application/octet-stream", fname);
	qd_model_row_free(&row);
	return rc;
}
