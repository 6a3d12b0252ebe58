/* The op-quantizer table (passes/op_rules.def): one row per op type saying how the op's
 * inputs and outputs are quantized, its per-channel axis and its QOperator form. Every
 * pass that quantizes activations reads it instead of deciding per op itself. */
#ifndef QD_OP_RULES_H
#define QD_OP_RULES_H

#include "qd.h"

enum qd_op_kind { QD_OK_CONV, QD_OK_GEMM, QD_OK_MATMUL, QD_OK_REMOVE, QD_OK_SHARED, QD_OK_GENERIC,
		  QD_OK_NORM };

enum { QD_OPF_DEFAULT = 1, QD_OPF_QOP8 = 2 };

struct qd_op_rule {
	const char *op;
	enum qd_op_kind kind;
	int weight_axis;
	const char *qop, *qop_domain;
	unsigned flags;
};

/* Rule of an op type (ai.onnx ops and the com.microsoft ops of the same name); NULL when
 * the op is never quantized. Borrow (static). */
const struct qd_op_rule *qd_op_rule_find(const char *op_type);
/* Row i (0..count-1) for listings. */
size_t qd_op_rules_count(void);
const struct qd_op_rule *qd_op_rule_at(size_t i);

#endif
