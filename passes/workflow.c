/* Olive-style workflow: submit-time validation of the "passes" section against the pass
 * registry, and the runner (load, pass chain with progress/log/cancel hooks, save,
 * metrics.json and footprint.json). */
#include "passes/passes.h"
#include "engine/engine.h"
#include "engine/dataset.h"
#include "passes/data_config.h"
#include "onnx/onnx_internal.h"
#include "search/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int qd_workflow_validate(const json_t *workflow, struct qd_err *err)
{
	return qd_workflow_check(workflow, 0, NULL, NULL, err);
}

/* ---- runner ---- */

#define QD_EXTERNAL_AUTO ((uint64_t)2 << 30)

struct wf {
	const struct qd_workflow_req *req;
	const struct qd_workflow_hooks *hooks;
	struct qd_err *err;
};

static void wf_log(struct wf *w, enum qd_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void wf_log(struct wf *w, enum qd_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	qd_log(lvl, w->req->job_id, "%s", line);
	if (w->hooks && w->hooks->log)
		w->hooks->log(w->hooks->ud, lvl, line);
}

static void wf_progress(struct wf *w, double frac, const char *msg)
{
	if (w->hooks && w->hooks->progress)
		w->hooks->progress(w->hooks->ud, frac, msg);
}

static bool wf_canceled(struct wf *w)
{
	return w->hooks && w->hooks->cancel && *w->hooks->cancel;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static long long initializer_bytes(const Onnx__GraphProto *g)
{
	long long total = 0;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		total += (long long)t->raw_data.len + (long long)t->n_float_data * 4 +
			 (long long)t->n_int32_data * 4 + (long long)t->n_int64_data * 8 +
			 (long long)t->n_double_data * 8 + (long long)t->n_uint64_data * 8;
	}
	return total;
}

/* Sizes of the distinct external data files a model (loaded with keep_external) uses. */
static long long external_bytes(const struct qd_model *m)
{
	long long total = 0;
	const char *seen[64];
	size_t ns = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		for (size_t k = 0; k < t->n_external_data; k++) {
			const Onnx__StringStringEntryProto *e = t->external_data[k];
			if (!e->key || strcmp(e->key, "location") || !e->value)
				continue;
			bool dup = false;
			for (size_t j = 0; j < ns; j++)
				dup = dup || !strcmp(seen[j], e->value);
			if (dup || ns == QD_ARRAY_LEN(seen))
				continue;
			seen[ns++] = e->value;
			char *p = qd_asprintf("%s/%s", m->base_dir ? m->base_dir : ".", e->value);
			long long sz = p ? file_size(p) : -1;
			free(p);
			if (sz > 0)
				total += sz;
		}
	}
	return total;
}

static const char *model_path_of(const json_t *workflow)
{
	const json_t *im = json_object_get(workflow, "input_model");
	const char *p = json_string_value(json_object_get(im, "model_path"));
	if (!p)
		p = json_string_value(json_object_get(json_object_get(im, "config"), "model_path"));
	if (!p)
		p = json_string_value(json_object_get(workflow, "model"));
	return p;
}

const char *qd_workflow_model_path(const json_t *workflow)
{
	return model_path_of(workflow);
}

/* ---- footprint ---- */

static char *model_id(const char *parent, const char *pass_type, const json_t *cfg)
{
	char *c = json_dumps(cfg, JSON_SORT_KEYS | JSON_COMPACT);
	char *s = qd_asprintf("%s|%s|%s", parent ? parent : "", pass_type ? pass_type : "", c ? c : "");
	free(c);
	if (!s)
		return NULL;
	char hex[65];
	qd_sha256_hex(s, strlen(s), hex);
	free(s);
	hex[8] = 0;
	return strdup(hex);
}

static int write_json(const char *dir, const char *name, const json_t *j, struct qd_err *err)
{
	char *path = qd_asprintf("%s/%s", dir, name);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	int rc;
	if (!path || !text) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	} else {
		size_t n = strlen(text);
		text[n] = '\n';   /* replace the terminator: write n+1 bytes */
		rc = qd_file_write_atomic(path, text, n + 1, err);
		text[n] = 0;
	}
	free(path);
	free(text);
	return rc;
}

/* ---- the run ---- */

int qd_workflow_run(const struct qd_workflow_req *req, const struct qd_workflow_hooks *hooks,
		    json_t **result, struct qd_err *err)
{
	struct wf w = { .req = req, .hooks = hooks, .err = err };
	struct qd_model *m = NULL;
	json_t *passes_out = json_array(), *counts = json_object(), *metrics = NULL, *fp_nodes = json_object();
	json_t *ignored = NULL, *order = NULL, *values = NULL, *detail = NULL;
	struct qd_eval_plan *plan = NULL;
	char *out_path = NULL, *parent_id = NULL;
	const json_t *save_params = NULL;
	json_t *last_cfg = NULL;
	int rc;
	if (result)
		*result = NULL;
	if (!passes_out || !counts || !fp_nodes) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if ((rc = qd_workflow_check(req->workflow, req->model_path ? QD_WF_CHECK_MODEL_BOUND : 0, NULL,
				    &ignored, err)) < 0)
		goto out;
	{
		size_t i;
		json_t *x;
		json_array_foreach(ignored, i, x)
			wf_log(&w, QD_LOG_WARN, "ignored '%s': %s", json_string_value(json_object_get(x, "field")),
			       json_string_value(json_object_get(x, "why")));
	}
	const char *model_path = req->model_path ? req->model_path : model_path_of(req->workflow);
	if (!model_path) {
		rc = qd_err_set(err, QD_EINVAL, "model", "no input model (give --model or input_model.model_path)");
		goto out;
	}
	double t0 = qd_now_mono();
	wf_progress(&w, 0.0, "loading model");
	if ((rc = qd_model_load_file(model_path, NULL, &m, err)) < 0) {
		qd_err_wrap(err, "cannot load model '%s'", model_path);
		goto out;
	}
	long long float_bytes = file_size(model_path);
	{
		/* Olive hashes the input model's config (its path); we add size and mtime */
		struct stat st;
		json_t *idc = json_pack("{s:s, s:I, s:I}", "model_path", model_path, "size",
					(json_int_t)float_bytes, "mtime",
					(json_int_t)(stat(model_path, &st) == 0 ? st.st_mtime : 0));
		parent_id = model_id(NULL, "input", idc);
		json_decref(idc);
		/* external data of the input is resolved at load: when there was some, read the
		 * references again (keep_external) and add the data files' sizes */
		if (initializer_bytes(m->proto->graph) > float_bytes) {
			struct qd_model *ext = NULL;
			struct qd_load_opts lo = { .keep_external = true };
			if (qd_model_load_file(model_path, &lo, &ext, NULL) == 0)
				float_bytes += external_bytes(ext);
			qd_model_free(ext);
		}
	}
	json_object_set_new(fp_nodes, parent_id ? parent_id : "input",
			    json_pack("{s:s, s:n, s:n, s:n, s:{s:s, s:{s:s}}, s:I}", "model_id", parent_id ? parent_id : "input",
				      "parent_model_id", "from_pass", "pass_run_config", "model_config", "type", "ONNXModel",
				      "config", "model_path", model_path, "size_bytes", (json_int_t)float_bytes));

	const json_t *passes = json_object_get(req->workflow, "passes");
	order = qd_workflow_pass_order(req->workflow);
	size_t npass = json_array_size(order), ip = 0, io;
	json_t *pn;
	json_array_foreach(order, io, pn) {
		const char *pname = json_string_value(pn);
		const json_t *pv = json_object_get(passes, pname);
		if (wf_canceled(&w)) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled before pass '%s'", pname);
			goto out;
		}
		const json_t *pc = pv;
		if (json_is_array(pv)) {
			pc = json_array_get(pv, 0);
			wf_log(&w, QD_LOG_WARN, "pass '%s' lists %zu alternative configurations; running the first "
			       "(searching alternatives lands with the search module)", pname, json_array_size(pv));
		}
		const struct qd_pass_vt *vt = qd_pass_find(json_string_value(json_object_get(pc, "type")));
		json_t *space = NULL;
		if ((rc = qd_pass_resolve(vt, pname, pc, &space, err)) < 0)
			goto out;
		const char *k; json_t *cand;
		json_object_foreach(space, k, cand)
			if (json_array_size(cand) > 1) {
				char *v0 = json_dumps(json_array_get(cand, 0), JSON_ENCODE_ANY | JSON_COMPACT);
				wf_log(&w, QD_LOG_WARN, "pass '%s': parameter '%s' has %zu candidate values; running "
				       "with the first (%s): searching lands with the search module", pname, k,
				       json_array_size(cand), v0 ? v0 : "?");
				free(v0);
			}
		json_t *cfg = qd_pass_space_first(space);
		json_decref(space);
		json_t *stats = json_object();
		char msg[256];
		snprintf(msg, sizeof msg, "pass %zu/%zu '%s' (%s)", ip + 1, npass, pname, vt->name);
		wf_progress(&w, 0.05 + 0.75 * (double)ip / (double)(npass ? npass : 1), msg);
		wf_log(&w, QD_LOG_INFO, "running %s", msg);
		struct qd_pass_ctx ctx = { .job_id = req->job_id, .name = pname, .hooks = hooks, .stats = stats,
					   .workflow = req->workflow, .data_paths = req->data_paths,
					   .threads = req->threads, .max_tensor_bytes = req->max_tensor_bytes,
					   .max_memory_bytes = req->max_memory_bytes,
					   .max_seconds = req->max_seconds };
		double ts = qd_now_mono();
		rc = vt->run(&ctx, m, cfg, err);
		double dt = qd_now_mono() - ts;
		if (rc < 0) {
			qd_err_wrap(err, "pass '%s' (%s) failed", pname, vt->name);
			json_decref(cfg);
			json_decref(stats);
			goto out;
		}
		json_t *qn = json_object_get(stats, "quantized_nodes");
		json_object_foreach(qn, k, cand) {
			json_t *c = json_object_get(counts, k);
			json_object_set_new(counts, k, json_integer((c ? json_integer_value(c) : 0) +
								    json_integer_value(cand)));
		}
		json_array_append_new(passes_out, json_pack("{s:s, s:s, s:O, s:o, s:f}", "name", pname, "type",
							      vt->name, "config", cfg, "stats", stats, "seconds", dt));
		json_decref(last_cfg);
		last_cfg = cfg;
		save_params = last_cfg;
		char *id = model_id(parent_id, vt->name, cfg);
		json_object_set_new(fp_nodes, id ? id : pname,
				    json_pack("{s:s, s:s?, s:s, s:O, s:f}", "model_id", id ? id : pname,
					      "parent_model_id", parent_id, "from_pass", vt->name, "pass_run_config", cfg,
					      "duration_seconds", dt));
		free(parent_id);
		parent_id = id;
		ip++;
	}

	/* save */
	wf_progress(&w, 0.8, "saving model");
	out_path = qd_asprintf("%s/model.onnx", req->out_dir);
	if (!out_path) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	struct qd_save_opts so = { 0 };
	if (save_params) {
		so.external_data = json_is_true(json_object_get(save_params, "save_as_external_data"));
		so.external_name = json_string_value(json_object_get(save_params, "external_data_name"));
		json_int_t th = json_integer_value(json_object_get(save_params, "size_threshold"));
		so.size_threshold = th > 0 ? (size_t)th : 0;
		if (json_is_integer(json_object_get(save_params, "size_threshold")) && th == 0)
			so.size_threshold = 1;   /* 0 = every tensor (1 byte threshold) */
	}
	if (so.external_data && !so.external_name)
		so.external_name = "model.onnx.data";
	char *data_path = qd_asprintf("%s/%s", req->out_dir, so.external_name ? so.external_name : "model.onnx.data");
	if (!data_path) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	unlink(data_path);   /* a stale data file from an earlier run must not be counted */
	if ((rc = qd_model_save_file(m, out_path, &so, err)) < 0) {
		free(data_path);
		qd_err_wrap(err, "cannot save the output model");
		goto out;
	}
	long long q_bytes = file_size(out_path), data_bytes = file_size(data_path);
	free(data_path);
	if (data_bytes > 0)
		q_bytes += data_bytes;
	wf_log(&w, QD_LOG_INFO, "saved '%s' (%lld bytes, float model %lld bytes)", out_path, q_bytes, float_bytes);

	/* metrics */
	wf_progress(&w, 0.85, "evaluating against the float model");
	struct qd_eval_ctx ec = { .req = req, .hooks = hooks, .float_path = model_path };
	if ((rc = qd_eval_plan_parse(req->workflow, NULL, 0, &plan, NULL, NULL, err)) < 0 ||
	    (rc = qd_eval_run(plan, &ec, out_path, &values, &detail, err)) < 0)
		goto out;
	if (wf_canceled(&w)) {
		rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled during evaluation");
		goto out;
	}
	json_t *acc = json_object_get(detail, "accuracy"), *lowest = json_object_get(detail, "lowest_snr_activations");
	json_int_t total = 0;
	{
		const char *k; json_t *v;
		json_object_foreach(counts, k, v)
			total += json_integer_value(v);
	}
	metrics = json_pack("{s:{s:I, s:I, s:f}, s:O, s:I, s:O, s:O, s:O, s:O, s:f}",
			    "size", "float_bytes", (json_int_t)float_bytes, "quantized_bytes", (json_int_t)q_bytes,
			    "ratio", float_bytes > 0 ? (double)q_bytes / (double)float_bytes : 0.0,
			    "quantized_nodes", counts, "quantized_nodes_total", total,
			    "accuracy", acc ? acc : json_null(), "values", values, "passes", passes_out, "ignored", ignored,
			    "seconds", qd_now_mono() - t0);
	if (!metrics) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (lowest)
		json_object_set(metrics, "lowest_snr_activations", lowest);
	json_t *last = json_object_get(fp_nodes, parent_id ? parent_id : "");
	if (last) {
		json_object_set_new(last, "model_config", json_pack("{s:s, s:{s:s}}", "type", "ONNXModel", "config",
								    "model_path", out_path));
		json_object_set_new(last, "size_bytes", json_integer(q_bytes));
		json_object_set(last, "metrics", acc);
	}
	json_t *fp = json_pack("{s:O, s:{}, s:b}", "nodes", fp_nodes, "objective_dict", "is_marked_pareto_frontier", 0);
	rc = fp ? write_json(req->out_dir, "footprint.json", fp, err) : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	json_decref(fp);
	if (rc == 0)
		rc = write_json(req->out_dir, "metrics.json", metrics, err);
	if (rc < 0)
		goto out;
	wf_progress(&w, 1.0, "done");
	if (result) {
		*result = metrics;
		metrics = NULL;
	}
	rc = 0;
out:
	qd_eval_plan_free(plan);
	json_decref(values);
	json_decref(detail);
	json_decref(metrics);
	json_decref(ignored);
	json_decref(order);
	json_decref(passes_out);
	json_decref(counts);
	json_decref(fp_nodes);
	json_decref(last_cfg);
	free(out_path);
	free(parent_id);
	qd_model_free(m);
	return rc;
}
