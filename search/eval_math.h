/* search/eval_math.h — the arithmetic behind search/eval.c's label metrics and timing
 * statistics, apart so the unit tests check it on known inputs: a confusion count per
 * class, accuracy / precision / recall / F1 with torchmetrics' and scikit-learn's
 * averages, and numpy's linearly interpolated percentile. */
#ifndef QD_SEARCH_EVAL_MATH_H
#define QD_SEARCH_EVAL_MATH_H

#include <stddef.h>
#include <stdint.h>

enum qd_eval_avg {
	QD_EVAL_AVG_MICRO,     /* pooled over classes (= the fraction correct for accuracy) */
	QD_EVAL_AVG_MACRO,     /* mean over the classes seen in labels or predictions */
	QD_EVAL_AVG_WEIGHTED,  /* mean weighted by each class's support (its labels) */
	QD_EVAL_AVG_BINARY,    /* the positive class (1) only */
};

/* Per-class counts of k classes (labels and predictions in [0, k)). */
struct qd_eval_counts {
	size_t k;
	int64_t *tp, *fp, *fn;     /* owned, k each */
	int64_t n, correct;
};
int qd_eval_counts_init(struct qd_eval_counts *c, size_t k);     /* 0 or -QD_ENOMEM */
void qd_eval_counts_add(struct qd_eval_counts *c, int64_t label, int64_t pred);
void qd_eval_counts_free(struct qd_eval_counts *c);

/* Scores in [0, 1]; 0 when undefined (no samples; a class's precision without
 * predictions of it), as torchmetrics and scikit-learn (zero_division = 0) give.
 * Accuracy: micro = correct / n, macro = the mean per-class recall, weighted = by support;
 * binary = correct / n. */
double qd_eval_accuracy(const struct qd_eval_counts *c, enum qd_eval_avg avg);
double qd_eval_precision(const struct qd_eval_counts *c, enum qd_eval_avg avg);
double qd_eval_recall(const struct qd_eval_counts *c, enum qd_eval_avg avg);
double qd_eval_f1(const struct qd_eval_counts *c, enum qd_eval_avg avg);

/* numpy.percentile(x, q) with linear interpolation, x sorted ascending, n >= 1. */
double qd_eval_percentile(const double *sorted, size_t n, double q);

#endif
