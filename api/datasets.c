/* /v1/datasets: upload (raw .npz or tar bytes streamed into the blob store like models,
 * then loaded with engine/dataset under its limits), list, get (arrays, dtypes, shapes,
 * samples), delete (409 while a queued or running job names it) and download, served by
 * api/catalog.c from the descriptor below. An identical upload returns the existing
 * dataset (200). Also the submit-time check that a job's datasets fit its model, done on
 * the stored summaries (no weights, no arrays are read). */
#include "search/eval.h"
#include "api/catalog.h"
#include "engine/dataset.h"
#include "passes/data_config.h"

#include <stdlib.h>
#include <string.h>

static json_t *dataset_json(const struct qd_dataset_row *row)
{
	json_t *j = qd_dataset_to_json(row);
	if (!j)
		return NULL;
	json_t *sum = json_object_get(j, "summary");
	if (json_is_object(sum)) {
		json_object_set(j, "samples", json_object_get(sum, "samples"));
		json_object_set(j, "arrays", json_object_get(sum, "arrays"));
	} else {
		json_object_set_new(j, "samples", json_null());
		json_object_set_new(j, "arrays", json_array());
	}
	json_object_del(j, "summary");
	char url[128];
	snprintf(url, sizeof url, "/v1/datasets/%s/content", row->id);
	json_object_set_new(j, "content_url", json_string(url));
	return j;
}

/* Load the stored blob as a dataset: *summary (new) and *format (static). */
static int validate_blob(struct qd_req *r, const char *path, json_t **summary, const char **format)
{
	struct qd_dataset *ds = NULL;
	int rc = qd_dataset_load(path, NULL, &ds, &r->err);
	if (rc) {
		int code = r->err.code;
		if (code != QD_ENOMEM && code != QD_EIO) {
			/* bombs and absurd shapes are bad input (400), not an oversized request */
			if (code != QD_EPARSE && code != QD_EINVAL && code != QD_EUNSUPPORTED && code != QD_ESHAPE)
				r->err.code = QD_EINVAL;
			if (!r->err.field[0] || !strcmp(r->err.field, "dataset"))
				snprintf(r->err.field, sizeof r->err.field, "body");
			rc = qd_err_wrap(&r->err, "invalid dataset upload");
		}
		return rc;
	}
	*format = ds->format;
	*summary = qd_dataset_summary_json(ds);
	qd_dataset_free(ds);
	return *summary ? 0 : qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
}

/* ---- the catalog descriptor ---- */

QD_CATALOG_ROW_FNS(dataset)

static int dataset_row_insert(struct qd_store_conn *c, const char *sha256, int64_t size,
			      const char *name, const char *format, const char *summary_json,
			      void *out, bool *existed, struct qd_err *err)
{
	return qd_dataset_insert_summary(c, sha256, size, name, format, summary_json, out, existed, err);
}

static json_t *dataset_row_json(const void *row) { return dataset_json(row); }

static const char *dataset_row_filename(const void *row)
{
	const struct qd_dataset_row *ds = row;
	return ds->name && *ds->name ? ds->name
	       : !strcmp(ds->format ? ds->format : "", "npz") ? "dataset.npz" : "dataset.tar";
}

static const struct qd_catalog datasets = {
	.kind = "dataset",
	.collection = "/v1/datasets",
	.upload_what = "the .npz or tar file's",
	QD_CATALOG_ROW_MEMBERS(dataset),
	.validate = validate_blob,
	.insert = dataset_row_insert,
	.json = dataset_row_json,
	.filename = dataset_row_filename,
};

int qd_api_datasets_create(struct qd_req *r) { return qd_catalog_create(r, &datasets); }
int qd_api_datasets_list(struct qd_req *r) { return qd_catalog_list(r, &datasets); }
int qd_api_datasets_get(struct qd_req *r) { return qd_catalog_get(r, &datasets); }
int qd_api_datasets_delete(struct qd_req *r) { return qd_catalog_delete(r, &datasets); }
int qd_api_datasets_content(struct qd_req *r) { return qd_catalog_content(r, &datasets); }

/* ---- submit-time check ---- */

/* Shapes-only dataset from a stored summary (arrays without data). new. */
static struct qd_dataset *dataset_from_summary(const json_t *sum)
{
	const json_t *arrs = json_object_get(sum, "arrays");
	struct qd_dataset *ds = qd_calloc(1, sizeof *ds);
	size_t n = json_array_size(arrs);
	if (!ds || !json_is_array(arrs) || !(ds->arrays = qd_calloc(n ? n : 1, sizeof *ds->arrays))) {
		free(ds);
		return NULL;
	}
	size_t i;
	json_t *a;
	json_array_foreach(arrs, i, a) {
		struct qd_tensor *t = &ds->arrays[ds->n_arrays++];
		t->name = qd_strdup(json_string_value(json_object_get(a, "name")));
		t->dtype = qd_dtype_from_name(json_string_value(json_object_get(a, "dtype")) ?: "");
		const json_t *sh = json_object_get(a, "shape");
		for (size_t k = 0; k < json_array_size(sh) && k < QD_MAX_DIMS; k++)
			t->dims[t->ndim++] = json_integer_value(json_array_get(sh, k));
		if (!t->name) {
			qd_dataset_free(ds);
			return NULL;
		}
	}
	ds->format = "npz";
	ds->n_samples = json_integer_value(json_object_get(sum, "samples"));
	return ds;
}

int qd_api_check_job_datasets(struct qd_store_conn *c, const json_t *wf,
			      const struct qd_model_row *model, struct qd_err *err)
{
	json_t *b = qd_workflow_dataset_bindings(wf), *msum = NULL, *dsum = NULL, *labels = NULL;
	struct qd_model *m = NULL;
	struct qd_dataset *ds = NULL;
	struct qd_dataset_row row = { 0 };
	int rc = 0;
	size_t i;
	json_t *x;
	if (!b)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	{
		/* the evaluator that runs: the last pass's, else the workflow's */
		json_t *order = qd_workflow_pass_order(wf);
		struct qd_eval_plan *plan = NULL;
		if (qd_eval_plan_parse(wf, json_string_value(json_array_get(order, json_array_size(order) - 1)),
				       qd_workflow_eval_flags(wf), &plan, NULL, NULL, NULL) == 0)
			labels = qd_eval_plan_label_configs(plan);
		qd_eval_plan_free(plan);
		json_decref(order);
	}
	json_array_foreach(b, i, x) {
		const char *ref = json_string_value(json_object_get(x, "dataset"));
		const char *field = json_string_value(json_object_get(x, "field"));
		const char *cfg = json_string_value(json_object_get(x, "config"));
		if (strncmp(ref, "dst_", 4)) {
			rc = qd_err_set(err, QD_EINVAL, field, "data config '%s': \"dataset\" must be the id of an "
					"uploaded dataset (POST /v1/datasets), not '%.200s'", cfg, ref);
			goto out;
		}
		qd_dataset_row_free(&row);
		if ((rc = qd_dataset_get(c, ref, &row, err))) {
			if (rc == -QD_ENOT_FOUND)
				rc = qd_err_set(err, QD_ENOT_FOUND, field, "unknown dataset '%.64s' (data config '%s')",
						ref, cfg);
			goto out;
		}
		json_decref(dsum);
		dsum = row.summary_json ? json_loads(row.summary_json, 0, NULL) : NULL;
		qd_dataset_free(ds);
		ds = dsum ? dataset_from_summary(dsum) : NULL;
		if (!ds) { /* no stored summary: read the dataset itself */
			size_t pmax = qd_blob_path_max(qd_store_conn_store(c));
			char path[pmax];
			if ((rc = qd_blob_path(qd_store_conn_store(c), row.sha256, path, pmax, err)) ||
			    (rc = qd_dataset_load(path, NULL, &ds, err))) {
				qd_err_wrap(err, "dataset '%s' (data config '%s')", ref, cfg);
				snprintf(err->field, sizeof err->field, "%s", field);
				goto out;
			}
		}
		if (!m) {
			msum = model->summary_json ? json_loads(model->summary_json, 0, NULL) : NULL;
			if (!msum || !(m = qd_model_from_summary_json(msum))) {
				rc = qd_err_set(err, QD_EINTERNAL, "model", "model '%s' has no stored summary", model->id);
				goto out;
			}
		}
		if ((rc = qd_dataset_bind(ds, m, err))) {
			if (err->code != QD_ENOMEM) {
				qd_err_wrap(err, "dataset '%s' (data config '%s') does not fit model '%s'", ref, cfg,
					    model->id);
				snprintf(err->field, sizeof err->field, "%s", field);
			}
			goto out;
		}
		/* accuracy metrics compare predictions with the dataset's labels */
		size_t j;
		json_t *lc;
		json_array_foreach(labels, j, lc)
			if (cfg && !strcmp(json_string_value(json_object_get(lc, "config")) ?: "", cfg) &&
			    !qd_dataset_array(ds, "labels") && !qd_dataset_array(ds, "label")) {
				rc = qd_err_set(err, QD_EINVAL, field, "metric '%s' needs labels, but dataset '%s' (data "
						"config '%s') has no \"labels\" array: upload the .npz with one label per "
						"sample", json_string_value(json_object_get(lc, "objective")), ref, cfg);
				goto out;
			}
	}
out:
	qd_dataset_row_free(&row);
	qd_dataset_free(ds);
	qd_model_free(m);
	json_decref(dsum);
	json_decref(msum);
	json_decref(labels);
	json_decref(b);
	return rc;
}
