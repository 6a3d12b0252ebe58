/* Samplers over a search space's valid points (Olive's search/samplers): sequential (every
 * point in index order), random (seeded, without replacement) and tpe (a Tree-structured
 * Parzen Estimator over the categorical dimensions, Bergstra et al. 2011, the way optuna's
 * TPESampler treats categorical parameters). */
#include "search/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TPE_STARTUP 4        /* seeded random points before the model is used */
#define TPE_CANDIDATES 24    /* draws from l(x) per proposal (optuna's n_ei_candidates) */
#define TPE_PRIOR 1.0        /* weight of the uniform prior in each Parzen estimator */

struct obs {
	size_t idx;
	double *scaled;
	bool met, failed;
};

struct qd_sampler {
	enum qd_sampler_kind kind;
	const struct qd_search_space *sp;
	uint64_t rng;
	size_t *rem;            /* points not handed out yet (random, tpe) */
	size_t n_rem;
	size_t *pos;            /* point -> position in rem, SIZE_MAX once handed out */
	size_t next_seq;
	struct obs *obs;
	size_t n_obs;
	size_t n_scaled;
	size_t n_startup;
	double *l, *g;          /* per dimension and value: log densities of the good / bad sets */
	size_t *off;            /* offset of each dimension in l / g */
	size_t n_vals;
};

static uint64_t rng_next(uint64_t *s)   /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

int qd_sampler_new(enum qd_sampler_kind kind, const struct qd_search_space *sp, uint64_t seed,
		   struct qd_sampler **out, struct qd_err *err)
{
	struct qd_sampler *s = calloc(1, sizeof *s);
	*out = NULL;
	if (!s)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	s->kind = kind;
	s->sp = sp;
	s->rng = seed ^ 0x5ea4c4ull;
	s->n_startup = TPE_STARTUP;
	s->rem = malloc((sp->n_pts + 1) * sizeof *s->rem);
	s->pos = malloc((sp->n_pts + 1) * sizeof *s->pos);
	s->obs = calloc(sp->n_pts + 1, sizeof *s->obs);
	s->off = calloc(sp->n_dim + 1, sizeof *s->off);
	for (size_t d = 0; d < sp->n_dim; d++) {
		s->off[d] = s->n_vals;
		s->n_vals += json_array_size(sp->dim[d].values);
	}
	s->l = calloc(s->n_vals + 1, sizeof *s->l);
	s->g = calloc(s->n_vals + 1, sizeof *s->g);
	if (!s->rem || !s->pos || !s->obs || !s->off || !s->l || !s->g) {
		qd_sampler_free(s);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	for (size_t i = 0; i < sp->n_pts; i++) {
		s->rem[i] = i;
		s->pos[i] = i;
	}
	s->n_rem = sp->n_pts;
	*out = s;
	return 0;
}

void qd_sampler_free(struct qd_sampler *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_obs; i++)
		free(s->obs[i].scaled);
	free(s->obs);
	free(s->rem);
	free(s->pos);
	free(s->off);
	free(s->l);
	free(s->g);
	free(s);
}

void qd_sampler_set_tpe_startup(struct qd_sampler *s, size_t n)
{
	s->n_startup = n ? n : 1;
}

static void take(struct qd_sampler *s, size_t idx)
{
	size_t p = s->pos[idx];
	size_t last = s->rem[--s->n_rem];
	s->rem[p] = last;
	s->pos[last] = p;
	s->pos[idx] = SIZE_MAX;
}

static int obs_cmp(const struct qd_sampler *s, const struct obs *a, const struct obs *b)
{
	if (a->failed != b->failed)
		return a->failed ? 1 : -1;
	if (a->failed)
		return 0;
	return qd_rank_cmp(a->scaled, a->met, b->scaled, b->met, s->n_scaled);
}

/* Parzen estimators: for each dimension, the smoothed share of each value among the good
 * (l) and the bad (g) observations, as logs. The split follows optuna's gamma(n) =
 * min(ceil(0.1 n), 25), at least 1, over the ranking of the observations (lexicographic
 * by priority, goal-meeting first). */
static void tpe_fit(struct qd_sampler *s)
{
	struct obs **o = malloc(s->n_obs * sizeof *o);
	if (!o)
		return;
	for (size_t i = 0; i < s->n_obs; i++)
		o[i] = &s->obs[i];
	for (size_t i = 1; i < s->n_obs; i++)   /* stable insertion sort: best first */
		for (size_t j = i; j > 0 && obs_cmp(s, o[j], o[j - 1]) < 0; j--) {
			struct obs *t = o[j];
			o[j] = o[j - 1];
			o[j - 1] = t;
		}
	size_t n_good = (size_t)ceil(0.1 * (double)s->n_obs);
	n_good = n_good < 1 ? 1 : n_good > 25 ? 25 : n_good;
	const struct qd_search_space *sp = s->sp;
	for (size_t d = 0; d < sp->n_dim; d++) {
		size_t K = json_array_size(sp->dim[d].values);
		double *l = &s->l[s->off[d]], *g = &s->g[s->off[d]];
		for (size_t c = 0; c < K; c++)
			l[c] = g[c] = TPE_PRIOR / (double)K;
		for (size_t i = 0; i < s->n_obs; i++) {
			uint32_t c = sp->pts[o[i]->idx * sp->n_dim + d];
			(i < n_good ? l : g)[c] += 1.0;
		}
		double nl = TPE_PRIOR + (double)n_good, ng = TPE_PRIOR + (double)(s->n_obs - n_good);
		for (size_t c = 0; c < K; c++) {
			l[c] = log(l[c] / nl);
			g[c] = log(g[c] / ng);
		}
	}
	free(o);
}

static double tpe_score(const struct qd_sampler *s, const uint32_t *ch)
{
	double sc = 0;
	for (size_t d = 0; d < s->sp->n_dim; d++)
		sc += s->l[s->off[d] + ch[d]] - s->g[s->off[d] + ch[d]];
	return sc;
}

/* Draw from l(x) TPE_CANDIDATES times; propose the unseen valid one with the largest
 * l(x)/g(x). When no draw lands on an unseen valid point, take the unseen point with the
 * largest ratio over the whole space. */
static size_t tpe_propose(struct qd_sampler *s)
{
	const struct qd_search_space *sp = s->sp;
	uint32_t ch[64];
	size_t best = SIZE_MAX;
	double best_sc = -HUGE_VAL;
	tpe_fit(s);
	for (int t = 0; t < TPE_CANDIDATES && sp->n_dim <= QD_ARRAY_LEN(ch); t++) {
		size_t raw = 0, stride = 1;
		for (size_t d = 0; d < sp->n_dim; d++) {
			size_t K = json_array_size(sp->dim[d].values);
			double u = rng_unit(&s->rng), acc = 0;
			uint32_t c = (uint32_t)(K - 1);
			for (size_t k = 0; k < K; k++) {
				acc += exp(s->l[s->off[d] + k]);
				if (u < acc) {
					c = (uint32_t)k;
					break;
				}
			}
			ch[d] = c;
			raw += c * stride;
			stride *= K;
		}
		size_t p = sp->raw_to_pt[raw];
		if (p == SIZE_MAX || s->pos[p] == SIZE_MAX)
			continue;
		double sc = tpe_score(s, &sp->pts[p * sp->n_dim]);
		if (sc > best_sc) {
			best_sc = sc;
			best = p;
		}
	}
	if (best != SIZE_MAX)
		return best;
	for (size_t i = 0; i < s->n_rem; i++) {
		size_t p = s->rem[i];
		double sc = tpe_score(s, &sp->pts[p * sp->n_dim]);
		if (best == SIZE_MAX || sc > best_sc || (sc == best_sc && p < best)) {
			best_sc = sc;
			best = p;
		}
	}
	return best;
}

int qd_sampler_next(struct qd_sampler *s, size_t *idx)
{
	if (s->kind == QD_SAMPLER_SEQUENTIAL) {
		if (s->next_seq >= s->sp->n_pts)
			return 0;
		*idx = s->next_seq++;
		return 1;
	}
	if (!s->n_rem)
		return 0;
	size_t p;
	if (s->kind == QD_SAMPLER_TPE && s->n_obs >= s->n_startup && s->sp->n_dim > 0)
		p = tpe_propose(s);
	else
		p = s->rem[rng_next(&s->rng) % s->n_rem];
	take(s, p);
	*idx = p;
	return 1;
}

void qd_sampler_tell(struct qd_sampler *s, size_t idx, const double *scaled, size_t n, bool goals_met,
		     bool failed)
{
	if (s->kind != QD_SAMPLER_TPE || idx >= s->sp->n_pts || s->n_obs >= s->sp->n_pts)
		return;
	struct obs *o = &s->obs[s->n_obs];
	o->scaled = calloc(n + 1, sizeof *o->scaled);
	if (!o->scaled)
		return;
	if (scaled)
		memcpy(o->scaled, scaled, n * sizeof *scaled);
	for (size_t k = 0; !scaled && k < n; k++)
		o->scaled[k] = -HUGE_VAL;
	s->n_scaled = n;
	o->idx = idx;
	o->met = goals_met;
	o->failed = failed;
	s->n_obs++;
}
