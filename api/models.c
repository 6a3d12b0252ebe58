/* /v1/models: upload (raw ONNX bytes streamed into the blob store, then validated with the
 * onnx loader), list, get, delete and download, served by api/catalog.c from the
 * descriptor below. An identical upload returns the existing model (200) instead of
 * creating a new one (201). */
#include "api/catalog.h"
#include "onnx/onnx.h"

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

/* Parse and check the stored blob at path; *summary (new) describes it. Messages never
 * mention the blob's path. */
static int validate_blob(struct qd_req *r, const char *path, json_t **summary, const char **format)
{
	int rc = qd_api_check_model_file(path, summary, &r->err);
	if (rc && r->err.code != QD_ENOMEM && r->err.code != QD_EIO) {
		if (r->err.code != QD_EPARSE && r->err.code != QD_EMODEL && r->err.code != QD_EUNSUPPORTED)
			r->err.code = QD_EMODEL;
		if (!r->err.field[0])
			snprintf(r->err.field, sizeof r->err.field, "body");
		qd_err_wrap(&r->err, "invalid model upload");
	}
	return rc;
}

/* ---- the catalog descriptor ---- */

QD_CATALOG_ROW_FNS(model)

static int model_row_insert(struct qd_store_conn *c, const char *sha256, int64_t size,
			    const char *name, const char *format, const char *summary_json, void *out,
			    bool *existed, struct qd_err *err)
{
	return qd_model_insert(c, sha256, size, name, summary_json, out, existed, err);
}

static json_t *model_row_json(const void *row) { return qd_api_model_json(row); }

static const char *model_row_filename(const void *row)
{
	const struct qd_model_row *m = row;
	return m->name && *m->name ? m->name : "model.onnx";
}

static const struct qd_catalog models = {
	.kind = "model",
	.collection = "/v1/models",
	.upload_what = "the ONNX file's",
	QD_CATALOG_ROW_MEMBERS(model),
	.validate = validate_blob,
	.insert = model_row_insert,
	.json = model_row_json,
	.filename = model_row_filename,
};

int qd_api_models_create(struct qd_req *r) { return qd_catalog_create(r, &models); }
int qd_api_models_list(struct qd_req *r) { return qd_catalog_list(r, &models); }
int qd_api_models_get(struct qd_req *r) { return qd_catalog_get(r, &models); }
int qd_api_models_delete(struct qd_req *r) { return qd_catalog_delete(r, &models); }
int qd_api_models_content(struct qd_req *r) { return qd_catalog_content(r, &models); }
