/* The search space of a workflow's passes (Olive §2.2-2.3): every searched parameter is a
 * dimension; every point of the product is normalised by the Conditional rules, checked
 * with the pass's own check function and deduplicated, so the samplers only see valid,
 * distinct configurations. Also the search_strategy parser. */
#include "search/search.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

const char *qd_sampler_name(enum qd_sampler_kind k)
{
	static const char *const n[] = {"sequential", "random", "tpe"};
	return (unsigned)k < QD_ARRAY_LEN(n) ? n[k] : "?";
}

const char *qd_search_order_name(enum qd_search_order o)
{
	return o == QD_SEARCH_PASS_BY_PASS ? "pass-by-pass" : "joint";
}

const char *qd_fallback_ranking_name(enum qd_fallback_ranking r)
{
	return r == QD_FALLBACK_SNR ? "snr" : r == QD_FALLBACK_GREEDY ? "greedy" : "measured";
}

/* ---- search_strategy ---- */

static int get_int(const json_t *o, const char *key, const char *field, int64_t *out, struct qd_err *err)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return qd_err_set(err, QD_EINVAL, field, "'%s' must be a non-negative integer", field);
	*out = json_integer_value(v);
	return 1;
}

int qd_search_strategy_parse(const json_t *workflow, struct qd_search_strategy *s, struct qd_err *err)
{
	memset(s, 0, sizeof *s);
	s->seed = 1;
	s->fallback = true;
	s->fallback_top_k = QD_FALLBACK_TOP_K;
	s->fallback_max_trials = QD_FALLBACK_MAX_TRIALS;
	s->field = "search_strategy";
	const json_t *v = json_object_get(workflow, "search_strategy");
	if (!v) {
		v = json_object_get(json_object_get(workflow, "engine"), "search_strategy");
		s->field = "engine.search_strategy";
	}
	if (!v || json_is_null(v) || json_is_false(v))
		return 0;
	s->enabled = true;
	if (json_is_true(v))
		return 0;
	char f[96];
	if (!json_is_object(v))
		return qd_err_set(err, QD_EINVAL, s->field, "'%s' must be an object, true/false or null", s->field);
	const json_t *eo = json_object_get(v, "execution_order");
	snprintf(f, sizeof f, "%s.execution_order", s->field);
	if (eo && !json_is_null(eo)) {
		const char *x = json_string_value(eo);
		if (x && !strcmp(x, "joint"))
			s->order = QD_SEARCH_JOINT;
		else if (x && !strcmp(x, "pass-by-pass"))
			s->order = QD_SEARCH_PASS_BY_PASS;
		else
			return qd_err_set(err, QD_EINVAL, f, "'%s' must be \"joint\" or \"pass-by-pass\"", f);
	}
	/* sampler, or the legacy search_algorithm (exhaustive = sequential) */
	const json_t *sm = json_object_get(v, "sampler");
	snprintf(f, sizeof f, "%s.sampler", s->field);
	if (!sm || json_is_null(sm)) {
		sm = json_object_get(v, "search_algorithm");
		snprintf(f, sizeof f, "%s.search_algorithm", s->field);
	}
	if (sm && !json_is_null(sm)) {
		const char *x = json_string_value(sm);
		if (x && (!strcmp(x, "sequential") || !strcmp(x, "exhaustive")))
			s->sampler = QD_SAMPLER_SEQUENTIAL;
		else if (x && !strcmp(x, "random"))
			s->sampler = QD_SAMPLER_RANDOM;
		else if (x && !strcmp(x, "tpe"))
			s->sampler = QD_SAMPLER_TPE;
		else
			return qd_err_set(err, QD_EINVAL, f, "'%s' must be \"sequential\", \"random\" or \"tpe\"", f);
	}
	int64_t n;
	int rc;
	snprintf(f, sizeof f, "%s.max_iter", s->field);
	if ((rc = get_int(v, "max_iter", f, &s->max_iter, err)) < 0)
		return rc;
	snprintf(f, sizeof f, "%s.max_samples", s->field);
	if ((rc = get_int(v, "max_samples", f, &n, err)) < 0)
		return rc;
	if (rc > 0 && n > 0 && (!s->max_iter || n < s->max_iter))
		s->max_iter = n;
	snprintf(f, sizeof f, "%s.max_time", s->field);
	if ((rc = get_int(v, "max_time", f, &n, err)) < 0)
		return rc;
	if (rc > 0)
		s->max_time = (double)n;
	snprintf(f, sizeof f, "%s.output_model_num", s->field);
	if ((rc = get_int(v, "output_model_num", f, &s->output_model_num, err)) < 0)
		return rc;
	snprintf(f, sizeof f, "%s.seed", s->field);
	if ((rc = get_int(v, "seed", f, &n, err)) < 0)
		return rc;
	if (rc > 0)
		s->seed = (uint64_t)n;
	/* Olive's nested configs: sampler_config {max_samples, seed}, legacy
	 * search_algorithm_config {num_samples, seed} */
	static const char *const nested[] = {"sampler_config", "search_algorithm_config"};
	for (size_t i = 0; i < QD_ARRAY_LEN(nested); i++) {
		const json_t *c = json_object_get(v, nested[i]);
		if (!c || json_is_null(c))
			continue;
		snprintf(f, sizeof f, "%s.%s", s->field, nested[i]);
		if (!json_is_object(c))
			return qd_err_set(err, QD_EINVAL, f, "'%s' must be an object", f);
		const char *k; json_t *x;
		json_object_foreach((json_t *)c, k, x) {
			char f2[160];
			snprintf(f2, sizeof f2, "%s.%s", f, k);
			if (strcmp(k, "max_samples") && strcmp(k, "num_samples") && strcmp(k, "seed"))
				return qd_err_set(err, QD_EINVAL, f2, "unknown key '%s' (max_samples, num_samples, seed)", k);
			if ((rc = get_int(c, k, f2, &n, err)) < 0)
				return rc;
			if (!strcmp(k, "seed"))
				s->seed = (uint64_t)n;
			else if (n > 0 && (!s->max_iter || n < s->max_iter))
				s->max_iter = n;
		}
	}
	const json_t *sw = json_object_get(v, "stop_when_goals_met");
	snprintf(f, sizeof f, "%s.stop_when_goals_met", s->field);
	if (sw && !json_is_null(sw) && !json_is_boolean(sw))
		return qd_err_set(err, QD_EINVAL, f, "'%s' must be true or false", f);
	s->stop_when_goals_met = json_is_true(sw);
	/* fallback: true / false / null or {ranking, confirm_top_k, max_trials} (ours) */
	const json_t *fb = json_object_get(v, "fallback");
	snprintf(f, sizeof f, "%s.fallback", s->field);
	if (json_is_false(fb)) {
		s->fallback = false;
	} else if (json_is_object(fb)) {
		const char *k; json_t *x;
		json_object_foreach((json_t *)fb, k, x) {
			char f2[160];
			snprintf(f2, sizeof f2, "%s.%s", f, k);
			if (!strcmp(k, "ranking")) {
				const char *r = json_string_value(x);
				if (r && !strcmp(r, "measured"))
					s->fallback_ranking = QD_FALLBACK_MEASURED;
				else if (r && !strcmp(r, "snr"))
					s->fallback_ranking = QD_FALLBACK_SNR;
				else if (r && !strcmp(r, "greedy"))
					s->fallback_ranking = QD_FALLBACK_GREEDY;
				else if (!json_is_null(x))
					return qd_err_set(err, QD_EINVAL, f2, "'%s' must be \"measured\", \"snr\" or \"greedy\"", f2);
			} else if (!strcmp(k, "confirm_top_k") || !strcmp(k, "max_trials")) {
				if ((rc = get_int(fb, k, f2, &n, err)) < 0)
					return rc;
				if (rc > 0 && k[0] == 'c')
					s->fallback_top_k = n;
				else if (rc > 0 && n == 0)
					s->fallback = false;
				else if (rc > 0)
					s->fallback_max_trials = n;
			} else {
				return qd_err_set(err, QD_EINVAL, f2, "unknown key '%s' (ranking, confirm_top_k, max_trials)", k);
			}
		}
	} else if (fb && !json_is_null(fb) && !json_is_true(fb)) {
		return qd_err_set(err, QD_EINVAL, f, "'%s' must be true, false or an object {ranking, confirm_top_k, "
				  "max_trials}", f);
	}
	const json_t *ip = json_object_get(v, "include_pass_params");
	snprintf(f, sizeof f, "%s.include_pass_params", s->field);
	if (ip && !json_is_null(ip) && !json_is_true(ip))
		return qd_err_set(err, QD_EUNSUPPORTED, f, "'%s' = false is not supported: every trial runs with "
				  "its searched pass parameters", f);
	return 0;
}

/* ---- pass entries ---- */

static const char *const entry_keys[] = {"host", "evaluator", "disable_search", "output_name", "clean_run_cache"};

json_t *qd_search_entry_params(const json_t *pv)
{
	if (!json_is_object(pv))
		return NULL;
	json_t *c = json_deep_copy(pv);
	for (size_t i = 0; c && i < QD_ARRAY_LEN(entry_keys); i++)
		json_object_del(c, entry_keys[i]);
	return c;
}


/* ---- the space ---- */

void qd_search_space_free(struct qd_search_space *sp)
{
	if (!sp)
		return;
	for (size_t i = 0; i < sp->n_dim; i++) {
		free(sp->dim[i].pass);
		free(sp->dim[i].param);
		json_decref(sp->dim[i].values);
	}
	for (size_t i = 0; i < sp->n_pts; i++)
		free(sp->keys[i]);
	for (size_t i = 0; i < sp->n_unit; i++) {
		free(sp->unit[i].pass);
		json_decref(sp->unit[i].base);
		json_decref(sp->unit[i].conds);
	}
	free(sp->unit);
	free(sp->keys);
	free(sp->dim);
	free(sp->pts);
	free(sp->raw_to_pt);
	free(sp->pt_flow);
	json_decref(sp->passes);
	json_decref(sp->base);
	json_decref(sp->conds);
	json_decref(sp->flows);
	json_decref(sp->first_invalid);
	free(sp);
}

/* A parent value as a support key: strings as they are, the rest as JSON text. */
static char *key_text(const json_t *v)
{
	if (json_is_string(v))
		return strdup(json_string_value(v));
	return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

static const json_t *support_get(const json_t *node, const json_t *pv)
{
	char *k = key_text(pv);
	const json_t *r = k ? json_object_get(node, k) : NULL;
	if (!r && json_is_boolean(pv))   /* Olive's files spell Python's True / False */
		r = json_object_get(node, json_is_true(pv) ? "True" : "False");
	free(k);
	return r;
}

static bool list_has(const json_t *list, const json_t *v)
{
	size_t i; json_t *x;
	json_array_foreach(list, i, x)
		if (json_equal(x, (json_t *)v))
			return true;
	return false;
}

/* Apply one leaf to the parameter's current value: 1 keep, 0 invalid, 2 set to default. */
static int leaf_apply(const json_t *leaf, const json_t *cur)
{
	if (json_is_string(leaf)) {
		const char *s = json_string_value(leaf);
		if (!strcmp(s, QD_PASS_IGNORED))
			return 2;
		if (!strcmp(s, QD_PASS_INVALID))
			return 0;
		if (!strcmp(s, QD_PASS_ANY))
			return 1;
	}
	if (qd_pass_is_search_param(leaf)) {
		const char *t = json_string_value(json_object_get(leaf, "type"));
		if (t && !strcmp(t, "Boolean"))
			return json_is_boolean(cur);
		return list_has(json_object_get(leaf, "support"), cur);
	}
	if (json_is_array(leaf) && !json_is_array(cur))
		return list_has(leaf, cur);
	return json_equal((json_t *)leaf, (json_t *)cur);
}

/* Normalise one pass configuration by its conditional rules; false when invalid. */
static bool apply_conds(const struct qd_pass_vt *vt, json_t *cfg, const json_t *conds)
{
	const char *pn; json_t *rule;
	json_object_foreach((json_t *)conds, pn, rule) {
		const json_t *node = json_object_get(rule, "support");
		const json_t *parents = json_object_get(rule, "parents");
		size_t i; json_t *par;
		json_array_foreach(parents, i, par) {
			if (!json_is_object(node) || qd_pass_is_search_param(node))
				break;   /* a leaf above the last parent applies to every value below */
			const json_t *pv = json_object_get(cfg, json_string_value(par));
			node = pv ? support_get(node, pv) : NULL;
			if (!node)
				break;
		}
		if (!node)
			node = json_object_get(rule, "default");
		const json_t *cur = json_object_get(cfg, pn);
		int a = node && cur ? leaf_apply(node, cur) : 0;
		if (a == 0)
			return false;
		if (a == 2) {
			const struct qd_param *p = qd_pass_param(vt, pn);
			json_object_set_new(cfg, pn, p ? json_loads(p->dflt, JSON_DECODE_ANY, NULL) : json_null());
		}
	}
	return true;
}

/* The pass's check function on one configuration ({param: [value]}). */
static int check_one(const struct qd_pass_vt *vt, const char *name, const json_t *cfg, struct qd_err *err)
{
	if (!vt->check)
		return 0;
	json_t *sp = json_object();
	const char *k; json_t *v;
	json_object_foreach((json_t *)cfg, k, v)
		json_object_set_new(sp, k, json_pack("[O]", v));
	int rc = vt->check(name, sp, err);
	json_decref(sp);
	return rc;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int add_dim(struct qd_search_space *sp, const char *pass, const char *param, json_t *values,
		   enum qd_search_dim_kind kind, int alt, struct qd_err *err)
{
	struct qd_search_dim *d = realloc(sp->dim, (sp->n_dim + 1) * sizeof *d);
	if (!d) {
		json_decref(values);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	sp->dim = d;
	d += sp->n_dim++;
	d->pass = strdup(pass);
	d->param = strdup(param);
	d->values = values;
	d->kind = kind;
	d->alt = alt;
	return d->pass && d->param && values ? 0 : qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
}

static json_t *index_values(size_t n)
{
	json_t *v = json_array();
	for (size_t i = 0; v && i < n; i++)
		json_array_append_new(v, json_integer((json_int_t)i));
	return v;
}

/* One unit: resolve the pass entry (or alternative) pv and add its searched parameters. */
static int add_unit(struct qd_search_space *sp, const char *pname, int alt, const json_t *pv, unsigned flags,
		    struct qd_err *err)
{
	char field[160];
	if (alt >= 0)
		snprintf(field, sizeof field, "passes.%s[%d]", pname, alt);
	else
		snprintf(field, sizeof field, "passes.%s", pname);
	json_t *entry = qd_search_entry_params(pv);
	const struct qd_pass_vt *vt = entry ? qd_pass_find(json_string_value(json_object_get(entry, "type"))) : NULL;
	if (!vt || !vt->implemented) {
		json_decref(entry);
		return qd_err_set(err, QD_EINVAL, field, "pass '%s' has no implemented pass type", pname);
	}
	struct qd_search_unit *u = realloc(sp->unit, (sp->n_unit + 1) * sizeof *u);
	if (!u) {
		json_decref(entry);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	sp->unit = u;
	u += sp->n_unit++;
	memset(u, 0, sizeof *u);
	u->pass = strdup(pname);
	u->alt = alt;
	u->vt = vt;
	unsigned rf = (flags & QD_SPACE_SEARCH_UNSET) && !json_is_true(json_object_get(pv, "disable_search"))
		      ? QD_RESOLVE_SEARCH_UNSET : 0;
	json_t *space = NULL;
	int rc = qd_pass_resolve_ex(vt, alt >= 0 ? field + strlen("passes.") : pname, entry, rf, &space, &u->conds, err);
	json_decref(entry);
	if (rc < 0)
		return rc;
	u->base = qd_pass_space_first(space);
	if (alt >= 0 && u->base)
		json_object_set_new(u->base, "type", json_string(vt->name));
	for (size_t k = 0; rc == 0 && k < vt->n_params; k++) {
		json_t *cand = json_object_get(space, vt->params[k].name);
		if (json_array_size(cand) >= 2)
			rc = add_dim(sp, pname, vt->params[k].name, json_incref(cand), QD_DIM_PARAM, alt, err);
	}
	json_decref(space);
	return rc;
}

/* the unit of pass p's alternative alt */
static const struct qd_search_unit *unit_of(const struct qd_search_space *sp, const char *p, int alt)
{
	for (size_t i = 0; i < sp->n_unit; i++)
		if (!strcmp(sp->unit[i].pass, p) && sp->unit[i].alt == alt)
			return &sp->unit[i];
	return NULL;
}

/* choice index of the QD_DIM_ALT dimension of pass p in `choice`, or -1 */
static int alt_choice(const struct qd_search_space *sp, const char *p, const uint32_t *choice)
{
	for (size_t d = 0; d < sp->n_dim; d++)
		if (sp->dim[d].kind == QD_DIM_ALT && !strcmp(sp->dim[d].pass, p))
			return (int)choice[d];
	return -1;
}

/* the flow (index into sp->flows) chosen by `choice`, or -1 */
static long flow_choice(const struct qd_search_space *sp, const uint32_t *choice)
{
	for (size_t d = 0; d < sp->n_dim; d++)
		if (sp->dim[d].kind == QD_DIM_FLOW)
			return (long)choice[d];
	return sp->flows ? 0 : -1;
}

int qd_search_space_build(const json_t *workflow, const json_t *passes, unsigned flags,
			  struct qd_search_space **out, struct qd_err *err)
{
	*out = NULL;
	struct qd_search_space *sp = calloc(1, sizeof *sp);
	size_t *set = NULL, set_n = 0;
	uint32_t *choice = NULL;
	char **dkeys = NULL;   /* each point's dedup key: its passes and configuration */
	size_t n_dk = 0;
	int rc = 0;
	if (!sp)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	const json_t *pf = json_object_get(workflow, "pass_flows");
	if ((flags & QD_SPACE_FLOWS) && json_array_size(pf) > 1) {
		/* every pass of every flow, first seen first */
		sp->flows = json_deep_copy(pf);
		sp->passes = json_array();
		size_t i, j;
		json_t *f, *n;
		json_array_foreach(pf, i, f)
			json_array_foreach(f, j, n)
				if (!qd_json_list_has(sp->passes, json_string_value(n)))
					json_array_append(sp->passes, n);
	} else {
		sp->passes = json_deep_copy(passes);
	}
	sp->base = json_object();
	sp->conds = json_object();
	if (!sp->passes || !sp->base || !sp->conds) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (sp->flows && (rc = add_dim(sp, "pass_flows", "flow", index_values(json_array_size(sp->flows)), QD_DIM_FLOW,
				       -1, err)) < 0)
		goto out;
	size_t ip; json_t *pnj;
	json_array_foreach(sp->passes, ip, pnj) {
		const char *pname = json_string_value(pnj) ? json_string_value(pnj) : "?";
		const json_t *pv = json_object_get(json_object_get(workflow, "passes"), pname);
		if (json_is_array(pv) && json_array_size(pv) == 1) {
			if ((rc = add_unit(sp, pname, -1, json_array_get(pv, 0), flags, err)) < 0)
				goto out;
		} else if (json_is_array(pv)) {
			size_t na = json_array_size(pv);
			if (na > 1 && (rc = add_dim(sp, pname, "alternative", index_values(na), QD_DIM_ALT, -1, err)) < 0)
				goto out;
			for (size_t a = 0; a < na; a++)
				if ((rc = add_unit(sp, pname, (int)a, json_array_get(pv, a), flags, err)) < 0)
					goto out;
		} else if ((rc = add_unit(sp, pname, -1, pv, flags, err)) < 0) {
			goto out;
		}
		const struct qd_search_unit *u0 = unit_of(sp, pname, json_array_size(pv) > 1 ? 0 : -1);
		json_object_set(sp->base, pname, u0->base);
		json_object_set(sp->conds, pname, u0->conds);
	}
	sp->n_raw = 1;
	for (size_t i = 0; i < sp->n_dim; i++) {
		size_t n = json_array_size(sp->dim[i].values);
		if (sp->n_raw > QD_SEARCH_MAX_RAW / n) {
			rc = qd_err_set(err, QD_EINVAL, "passes", "the search space has more than %zu points: give fewer "
					"candidate values (or disable_search on a pass)", QD_SEARCH_MAX_RAW);
			goto out;
		}
		sp->n_raw *= n;
	}
	sp->pts = malloc((sp->n_raw * (sp->n_dim ? sp->n_dim : 1)) * sizeof *sp->pts);
	sp->keys = calloc(sp->n_raw, sizeof *sp->keys);
	sp->pt_flow = calloc(sp->n_raw, sizeof *sp->pt_flow);
	dkeys = calloc(sp->n_raw, sizeof *dkeys);
	sp->raw_to_pt = malloc(sp->n_raw * sizeof *sp->raw_to_pt);
	set_n = 2 * sp->n_raw + 1;
	set = malloc(set_n * sizeof *set);
	choice = calloc(sp->n_dim + 1, sizeof *choice);
	if (!sp->pts || !sp->keys || !sp->pt_flow || !dkeys || !sp->raw_to_pt || !set || !choice) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < set_n; i++)
		set[i] = SIZE_MAX;
	for (size_t idx = 0; idx < sp->n_raw; idx++) {
		size_t r = idx;
		for (size_t d = 0; d < sp->n_dim; d++) {   /* mixed radix, first dimension fastest */
			size_t n = json_array_size(sp->dim[d].values);
			choice[d] = (uint32_t)(r % n);
			r /= n;
		}
		sp->raw_to_pt[idx] = SIZE_MAX;
		long fl = flow_choice(sp, choice);
		const json_t *run = fl >= 0 ? json_array_get(sp->flows, (size_t)fl) : sp->passes;
		json_t *cfg = json_object();
		bool ok = cfg != NULL;
		struct qd_err ce = { 0 };
		json_array_foreach(run, ip, pnj) {
			if (!ok)
				break;
			const char *pname = json_string_value(pnj);
			int alt = alt_choice(sp, pname, choice);
			const struct qd_search_unit *u = unit_of(sp, pname, alt);
			json_t *pc = u ? json_deep_copy(u->base) : NULL;
			if (!pc) {
				ok = false;
				break;
			}
			json_object_set_new(cfg, pname, pc);
			for (size_t d = 0; d < sp->n_dim; d++)
				if (sp->dim[d].kind == QD_DIM_PARAM && sp->dim[d].alt == alt && !strcmp(sp->dim[d].pass, pname))
					json_object_set(pc, sp->dim[d].param, json_array_get(sp->dim[d].values, choice[d]));
			if (!apply_conds(u->vt, pc, u->conds)) {
				ok = false;
				qd_err_set(&ce, QD_EINVAL, pname, "a Conditional makes this combination invalid");
			} else if (check_one(u->vt, pname, pc, &ce) < 0) {
				ok = false;
			}
		}
		if (!ok) {
			sp->n_invalid++;
			if (!sp->first_invalid && cfg)
				sp->first_invalid = json_pack("{s:O, s:s, s:s}", "config", cfg, "field", ce.field,
							      "message", ce.msg);
			json_decref(cfg);
			continue;
		}
		char *key = json_dumps(cfg, JSON_SORT_KEYS | JSON_COMPACT);
		char *names = json_dumps(run, JSON_COMPACT);
		char *dkey = key && names ? qd_asprintf("%s|%s", names, key) : NULL;
		json_decref(cfg);
		free(names);
		if (!dkey) {
			free(key);
			rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
			goto out;
		}
		size_t h = (size_t)(fnv1a(dkey) % set_n);
		bool dup = false;
		while (set[h] != SIZE_MAX) {
			if (!strcmp(dkeys[set[h]], dkey)) {
				dup = true;
				break;
			}
			h = (h + 1) % set_n;
		}
		if (dup) {
			sp->raw_to_pt[idx] = set[h];
			sp->n_dup++;
			free(key);
			free(dkey);
			continue;
		}
		set[h] = sp->n_pts;
		sp->raw_to_pt[idx] = sp->n_pts;
		sp->keys[sp->n_pts] = key;
		dkeys[n_dk++] = dkey;
		sp->pt_flow[sp->n_pts] = fl >= 0 ? (size_t)fl : 0;
		memcpy(&sp->pts[sp->n_pts * sp->n_dim], choice, sp->n_dim * sizeof *choice);
		sp->n_pts++;
	}
	if (sp->n_pts == 0) {
		const char *why = json_string_value(json_object_get(sp->first_invalid, "message"));
		const char *f = json_string_value(json_object_get(sp->first_invalid, "field"));
		rc = qd_err_set(err, QD_EINVAL, f && *f ? f : "passes", "the search space is empty: all %zu "
				"combinations are invalid (first: %s)", sp->n_raw, why ? why : "?");
		goto out;
	}
	*out = sp;
	sp = NULL;
out:
	for (size_t i = 0; i < n_dk; i++)
		free(dkeys[i]);
	free(dkeys);
	free(set);
	free(choice);
	qd_search_space_free(sp);
	return rc;
}

json_t *qd_search_space_config(const struct qd_search_space *sp, size_t i)
{
	return i < sp->n_pts ? json_loads(sp->keys[i], 0, NULL) : NULL;
}

json_t *qd_search_space_names(const struct qd_search_space *sp, size_t i)
{
	if (sp->flows && i < sp->n_pts)
		return json_deep_copy(json_array_get(sp->flows, sp->pt_flow[i]));
	return json_deep_copy(sp->passes);
}

json_t *qd_search_space_params(const struct qd_search_space *sp, size_t i)
{
	json_t *cfg = qd_search_space_config(sp, i), *o = json_object();
	for (size_t d = 0; cfg && o && d < sp->n_dim; d++) {
		const struct qd_search_dim *dm = &sp->dim[d];
		const uint32_t *ch = &sp->pts[i * sp->n_dim];
		if (dm->kind == QD_DIM_FLOW) {
			json_object_set_new(o, "pass_flow", json_integer(ch[d]));
			continue;
		}
		const json_t *pc = json_object_get(cfg, dm->pass);
		if (!pc || (dm->kind == QD_DIM_PARAM && dm->alt >= 0 && alt_choice(sp, dm->pass, ch) != dm->alt))
			continue;   /* a pass this point does not run, an alternative it does not use */
		char *k = qd_asprintf("%s.%s", dm->pass, dm->param);
		if (k)
			json_object_set_new(o, k, dm->kind == QD_DIM_ALT ? json_integer(ch[d])
								 : json_incref(json_object_get(pc, dm->param)));
		free(k);
	}
	json_decref(cfg);
	return o;
}

const char *qd_search_pass_type(const json_t *workflow, const char *pass, const json_t *cfg)
{
	const char *t = json_string_value(json_object_get(cfg, "type"));
	if (t)
		return t;
	const json_t *pv = json_object_get(json_object_get(workflow, "passes"), pass);
	if (json_is_array(pv))
		pv = json_array_get(pv, 0);
	return json_string_value(json_object_get(pv, "type"));
}
