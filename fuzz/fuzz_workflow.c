/* libFuzzer target for the workflow JSON that POST /v1/jobs (and `quantd run --config`)
 * accepts: arbitrary bytes → json_loadb as the API parses a body → what POST /v1/jobs does
 * with it (the body without "model"; qd_workflow_bind_datasets for Olive's "datasets";
 * qd_workflow_check with every problem and every ignored key: workflow keys, Olive-only
 * passes, pass types, every parameter against the pass registry, each pass's own check,
 * data_configs in dict and list form, data_config references; the job limits against the
 * server's defaults) → the same check as `quantd run` without a bound model → what the
 * runner then derives from a valid workflow (pass order, each pass's search space and
 * first configuration, resolved data configs, dataset references, bindings and notes) →
 * every binding whose "dataset" names one of the fixture datasets below is bound to a tiny
 * model built in code, as the API binds a job's datasets to its model. Must never crash
 * or leak.
 * Build: make fuzz; run: build-fuzz/fuzz/fuzz_workflow fuzz/corpus/workflow -dict=fuzz/workflow.dict */
#include "fuzz/fuzz_util.h"
#include "passes/data_config.h"
#include "passes/passes.h"
#include "passes/workflow.h"
#include "daemon/daemon.h"

static struct qd_model *model; /* x float32 [N, 4], ids int64 [N]; read-only */
static struct qd_config cfg;   /* the server's defaults, for the job limits; read-only */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model = fz_model(0);
	qd_log_set_level(QD_LOG_ERROR);
	char *args[] = { "serve", NULL };
	int help = 0;
	struct qd_err err = { 0 };
	if (qd_config_load(&cfg, 1, args, &help, &err)) {
		fprintf(stderr, "fuzz_workflow: %s\n", err.msg);
		abort();
	}
	return 0;
}

/* A fresh fixture dataset for a reference (the binder renames arrays, so every binding
 * gets its own copy): dst_calib fits the model by name, dst_td by position (input_N),
 * dst_bad has the wrong dtype. NULL for any other reference. */
static struct qd_dataset *fixture(const char *ref)
{
	struct {
		const char *name;
		int dtype, nd;
		int64_t dims[2];
	} spec[3];
	size_t n = 0;
	if (!ref)
		return NULL;
	if (!strcmp(ref, "dst_calib")) {
		spec[n++] = (typeof(spec[0])){ "x", QD_DT_FLOAT, 2, { 8, 4 } };
		spec[n++] = (typeof(spec[0])){ "ids", QD_DT_INT64, 1, { 8 } };
		spec[n++] = (typeof(spec[0])){ "labels", QD_DT_INT64, 1, { 8 } };
	} else if (!strcmp(ref, "dst_td")) {
		spec[n++] = (typeof(spec[0])){ "input_0", QD_DT_FLOAT, 2, { 4, 4 } };
		spec[n++] = (typeof(spec[0])){ "input_1", QD_DT_INT64, 1, { 4 } };
	} else if (!strcmp(ref, "dst_bad")) {
		spec[n++] = (typeof(spec[0])){ "x", QD_DT_INT32, 2, { 3, 4 } };
	} else
		return NULL;
	struct qd_dataset *ds = calloc(1, sizeof *ds);
	if (!ds || !(ds->arrays = calloc(n, sizeof *ds->arrays))) {
		free(ds);
		return NULL;
	}
	ds->format = "npz";
	for (size_t i = 0; i < n; i++)
		if (!qd_tensor_alloc(&ds->arrays[ds->n_arrays], spec[i].name, spec[i].dtype, spec[i].nd,
				     spec[i].dims))
			ds->n_arrays++;
	ds->n_samples = -1;
	return ds;
}

/* What the runner does with one validated pass entry before it runs it. */
static void derive_pass(const json_t *wf, const char *name, const json_t *pc)
{
	struct qd_err err = { 0 };
	const struct qd_pass_vt *vt = qd_pass_find(json_string_value(json_object_get(pc, "type")));
	json_t *space = NULL;
	if (vt && !qd_pass_resolve(vt, name, pc, &space, &err)) {
		json_t *first = qd_pass_space_first(space);
		char *s = first ? json_dumps(first, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		free(s);
		json_decref(first);
	}
	json_decref(space);
	const json_t *dc = json_object_get(pc, "data_config");
	if (dc) {
		json_t *cfg = NULL;
		if (!qd_data_config_resolve(wf, dc, "passes.x.data_config", &cfg, &err))
			json_decref(cfg);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t je;
	json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
	if (!body)
		return 0;
	struct qd_err err = { 0 };
	/* POST /v1/jobs: the workflow is the body without "model" */
	json_t *wf = json_is_object(body) ? json_deep_copy(body) : json_incref(body);
	if (json_is_object(wf))
		json_object_del(wf, "model");
	qd_workflow_bind_datasets(wf);
	json_t *problems = NULL, *ignored = NULL;
	int rc = qd_workflow_check(wf, QD_WF_CHECK_MODEL_BOUND, &problems, &ignored, &err);
	if (!rc)
		rc = qd_job_limits_check(&cfg, wf, &err);
	json_decref(problems);
	json_decref(ignored);
	/* quantd run --config without --model: the model comes from the workflow */
	qd_workflow_check(body, 0, NULL, NULL, &err);
	qd_workflow_validate(body, &err);
	qd_data_configs_validate(wf, &err);
	json_t *order = qd_workflow_pass_order(wf);
	qd_workflow_skip_unsupported(wf);
	/* helpers the API and the runner call; they must cope with any JSON, valid or not */
	json_t *refs = qd_workflow_dataset_refs(wf);
	json_t *binds = qd_workflow_dataset_bindings(wf);
	json_t *notes = qd_data_configs_notes(wf);
	if (!rc) {
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(wf, "passes"), k, v) {
			if (json_is_array(v)) {
				size_t i;
				json_t *alt;
				json_array_foreach(v, i, alt)
					derive_pass(wf, k, alt);
			} else
				derive_pass(wf, k, v);
		}
		size_t i;
		json_t *b;
		json_array_foreach(binds, i, b) {
			struct qd_dataset *ds = fixture(json_string_value(json_object_get(b, "dataset")));
			if (ds)
				qd_dataset_bind(ds, model, &err);
			qd_dataset_free(ds);
		}
	}
	json_decref(order);
	json_decref(refs);
	json_decref(binds);
	json_decref(notes);
	json_decref(wf);
	json_decref(body);
	return 0;
}
