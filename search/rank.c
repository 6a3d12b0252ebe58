/* Ranking of evaluated candidates (Olive's search_results.py and footprint.py): values
 * scaled by the objective's direction, lexicographic order by priority with goal-meeting
 * candidates first, the pareto frontier and the best candidate. */
#include "search/search.h"
#include "search/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool obj_before(const struct qd_objective *a, const struct qd_objective *b, bool by_prio)
{
	if (by_prio && a->priority != b->priority)
		return a->priority < b->priority;
	return strcmp(a->key ? a->key : "", b->key ? b->key : "") < 0;
}

size_t qd_rank_order(const struct qd_objective *obj, size_t n_obj, size_t *order)
{
	size_t n = 0;
	for (size_t i = 0; i < n_obj; i++)
		if (obj[i].priority > 0)
			order[n++] = i;
	bool by_prio = n > 0;
	if (!by_prio)
		for (size_t i = 0; i < n_obj; i++)
			order[n++] = i;
	for (size_t i = 1; i < n; i++)   /* insertion sort: stable, n is small */
		for (size_t j = i; j > 0 && obj_before(&obj[order[j]], &obj[order[j - 1]], by_prio); j--) {
			size_t t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	return n;
}

void qd_rank_scale(const struct qd_objective *obj, const size_t *order, size_t n, const json_t *values,
		   double *scaled)
{
	for (size_t k = 0; k < n; k++) {
		const struct qd_objective *o = &obj[order[k]];
		const json_t *v = json_object_get(values, o->key);
		double x = json_is_number(v) ? json_number_value(v) : NAN;
		scaled[k] = isfinite(x) ? (o->higher_is_better ? x : -x) : -HUGE_VAL;
	}
}

int qd_rank_cmp(const double *a, bool a_met, const double *b, bool b_met, size_t n)
{
	if (a_met != b_met)
		return a_met ? -1 : 1;
	for (size_t k = 0; k < n; k++) {
		if (a[k] > b[k])
			return -1;
		if (a[k] < b[k])
			return 1;
	}
	return 0;
}

/* q dominates p: no objective worse, at least one better. */
static bool dominates(const double *q, const double *p, size_t n)
{
	bool better = false;
	for (size_t k = 0; k < n; k++) {
		if (q[k] < p[k])
			return false;
		better = better || q[k] > p[k];
	}
	return better;
}

long qd_rank_all(const double *scaled, const bool *met, size_t m, size_t n, size_t *rank_out, bool *pareto)
{
	for (size_t i = 0; i < m; i++)
		rank_out[i] = i;
	for (size_t i = 1; i < m; i++)
		for (size_t j = i; j > 0; j--) {
			size_t a = rank_out[j], b = rank_out[j - 1];
			if (qd_rank_cmp(&scaled[a * n], met[a], &scaled[b * n], met[b], n) >= 0)
				break;
			rank_out[j] = b;
			rank_out[j - 1] = a;
		}
	bool any_met = false;
	for (size_t i = 0; i < m; i++)
		any_met = any_met || met[i];
	for (size_t i = 0; pareto && i < m; i++) {
		pareto[i] = !any_met || met[i];
		for (size_t j = 0; pareto[i] && j < m; j++)
			if (j != i && (!any_met || met[j]) && dominates(&scaled[j * n], &scaled[i * n], n))
				pareto[i] = false;
	}
	return m && met[rank_out[0]] ? (long)rank_out[0] : -1;
}
