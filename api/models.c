/* /v1/models: upload (raw ONNX bytes, or a tar / tar.gz of a .onnx and its external data,
 * streamed into the blob store, then validated with the onnx loader), list, get, delete
 * and download, served by api/catalog.c from the descriptor below. An identical upload
 * (the same bytes: the blob's sha256) returns the existing model (200) instead of creating
 * a new one (201). A tar is stored as uploaded and downloaded as uploaded; it is extracted
 * for validation into a temporary directory (removed after) and for each job
 * (daemon/worker.c). */
#define _GNU_SOURCE
#include "api/catalog.h"
#include "daemon/daemon.h"
#include "onnx/model_tar.h"
#include "onnx/onnx.h"

#include <stdlib.h>
#include <string.h>

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

/* Remove every occurrence of dir + "/" from the message: paths stay out of answers. */
static void strip_dir(struct qd_err *err, const char *dir)
{
	char pre[4200];
	snprintf(pre, sizeof pre, "%s/", dir);
	size_t pl = strlen(pre);
	for (char *p; (p = strstr(err->msg, pre));)
		memmove(p, p + pl, strlen(p + pl) + 1);
}

/* A tar upload: extracted into a temporary directory, its .onnx checked with its external
 * data; *summary gets archive, model_file, external_data [{name, size}] and
 * unpacked_bytes. */
static int validate_tar(struct qd_req *r, const char *path, enum qd_model_form form, json_t **summary)
{
	struct qd_model_tar_info ti = { 0 };
	char *dir = qd_asprintf("%s/tmp/tar-XXXXXX", qd_store_data_dir(r->d->store)), *onnx = NULL;
	int rc;
	if (!dir || !mkdtemp(dir) || rmdir(dir)) {
		rc = qd_err_set(&r->err, QD_EIO, "", "cannot make a temporary directory for the model tar");
		goto out;
	}
	if ((rc = qd_model_tar_extract(path, dir, (uint64_t)r->d->cfg.max_upload_bytes, &ti, &r->err)))
		goto out;
	if (!(onnx = qd_asprintf("%s/%s", dir, ti.onnx_name))) {
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	if ((rc = qd_api_check_model_path(onnx, true, summary, &r->err))) {
		strip_dir(&r->err, dir);
		/* a location naming a file the tar does not hold is the upload's fault */
		if (r->err.code == QD_EIO)
			r->err.code = QD_EMODEL;
		goto out;
	}
	json_t *ext = json_array();
	json_t *f;
	size_t i;
	json_array_foreach(ti.files, i, f)
		if (strcmp(json_string_value(json_object_get(f, "name")), ti.onnx_name))
			json_array_append(ext, f);
	json_object_set_new(*summary, "archive", json_string(qd_model_form_name(form)));
	json_object_set_new(*summary, "model_file", json_string(ti.onnx_name));
	json_object_set_new(*summary, "external_data", ext);
	json_object_set_new(*summary, "unpacked_bytes", json_integer((json_int_t)ti.total_bytes));
out:
	if (dir)
		qd_rm_rf(dir);
	free(dir);
	free(onnx);
	qd_model_tar_info_free(&ti);
	return rc;
}

/* Parse and check the stored blob at path; *summary (new) describes it. Messages never
 * mention the blob's path. */
static int validate_blob(struct qd_req *r, const char *path, json_t **summary, const char **format)
{
	enum qd_model_form form = qd_model_form_of(path);
	int rc = form == QD_MODEL_FORM_ONNX ? qd_api_check_model_file(path, summary, &r->err)
					    : validate_tar(r, path, form, summary);
	if (rc && r->err.code == QD_ETOO_LARGE)
		return rc;
	if (rc && r->err.code != QD_ENOMEM && r->err.code != QD_EIO && r->err.code != QD_ENO_SPACE) {
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
	if (m->name && *m->name)
		return m->name;
	const char *a = m->summary_json ? strstr(m->summary_json, "\"archive\":\"") : NULL;
	if (a)
		return !strncmp(a + 11, "tar+gzip\"", 9) ? "model.tar.gz" : "model.tar";
	return "model.onnx";
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
