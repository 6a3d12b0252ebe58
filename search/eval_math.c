/* search/eval_math.c — confusion counts, classification scores and percentiles for
 * search/eval.c (see eval_math.h). */
#include "search/eval_math.h"
#include "common/qd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int qd_eval_counts_init(struct qd_eval_counts *c, size_t k)
{
	memset(c, 0, sizeof *c);
	c->k = k;
	c->tp = calloc(k + 1, sizeof *c->tp);
	c->fp = calloc(k + 1, sizeof *c->fp);
	c->fn = calloc(k + 1, sizeof *c->fn);
	if (!c->tp || !c->fp || !c->fn) {
		qd_eval_counts_free(c);
		return -QD_ENOMEM;
	}
	return 0;
}

void qd_eval_counts_add(struct qd_eval_counts *c, int64_t label, int64_t pred)
{
	if (label < 0 || pred < 0 || (size_t)label >= c->k || (size_t)pred >= c->k)
		return;
	c->n++;
	if (label == pred) {
		c->correct++;
		c->tp[label]++;
	} else {
		c->fp[pred]++;
		c->fn[label]++;
	}
}

void qd_eval_counts_free(struct qd_eval_counts *c)
{
	free(c->tp);
	free(c->fp);
	free(c->fn);
	memset(c, 0, sizeof *c);
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0.0;
}

enum which { W_PREC, W_REC, W_F1 };

static double class_score(const struct qd_eval_counts *c, size_t i, enum which w)
{
	double tp = (double)c->tp[i], fp = (double)c->fp[i], fn = (double)c->fn[i];
	switch (w) {
	case W_PREC: return ratio(tp, tp + fp);
	case W_REC: return ratio(tp, tp + fn);
	default: return ratio(2 * tp, 2 * tp + fp + fn);
	}
}

static double averaged(const struct qd_eval_counts *c, enum qd_eval_avg avg, enum which w)
{
	if (c->n == 0)
		return 0.0;
	if (avg == QD_EVAL_AVG_BINARY)
		return c->k > 1 ? class_score(c, 1, w) : 0.0;
	if (avg == QD_EVAL_AVG_MICRO) {
		double tp = 0, fp = 0, fn = 0;
		for (size_t i = 0; i < c->k; i++) {
			tp += (double)c->tp[i];
			fp += (double)c->fp[i];
			fn += (double)c->fn[i];
		}
		return w == W_PREC ? ratio(tp, tp + fp) : w == W_REC ? ratio(tp, tp + fn) : ratio(2 * tp, 2 * tp + fp + fn);
	}
	double sum = 0, wsum = 0;
	for (size_t i = 0; i < c->k; i++) {
		/* classes in neither the labels nor the predictions do not count */
		if (c->tp[i] + c->fp[i] + c->fn[i] == 0)
			continue;
		double wt = avg == QD_EVAL_AVG_WEIGHTED ? (double)(c->tp[i] + c->fn[i]) : 1.0;
		sum += wt * class_score(c, i, w);
		wsum += wt;
	}
	return ratio(sum, wsum);
}

double qd_eval_accuracy(const struct qd_eval_counts *c, enum qd_eval_avg avg)
{
	if (avg == QD_EVAL_AVG_MICRO || avg == QD_EVAL_AVG_BINARY)
		return ratio((double)c->correct, (double)c->n);
	return averaged(c, avg, W_REC);
}

double qd_eval_precision(const struct qd_eval_counts *c, enum qd_eval_avg avg)
{
	return averaged(c, avg, W_PREC);
}

double qd_eval_recall(const struct qd_eval_counts *c, enum qd_eval_avg avg)
{
	return averaged(c, avg, W_REC);
}

double qd_eval_f1(const struct qd_eval_counts *c, enum qd_eval_avg avg)
{
	return averaged(c, avg, W_F1);
}

double qd_eval_percentile(const double *x, size_t n, double q)
{
	if (n == 0)
		return NAN;
	double pos = (double)(n - 1) * q / 100.0;
	size_t lo = (size_t)floor(pos);
	if (lo >= n - 1)
		return x[n - 1];
	double fr = pos - (double)lo;
	return x[lo] + (x[lo + 1] - x[lo]) * fr;
}
