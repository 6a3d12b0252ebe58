/* The op-quantizer table (passes/op_rules.def): one row per op type saying how the op's
 * inputs and outputs are quantized, its per-channel axis and its QOperator form, for the
 * static pass (kind, weight_axis, qop) and the dynamic pass (dyn, dyn_axis). Every pass
 * reads it instead of deciding per op itself; the "How to add an op" checklist is at the
 * top of passes/op_rules.def. */
#ifndef QD_OP_RULES_H
#define QD_OP_RULES_H

#include "qd.h"

/* Static (calibrated) rule: how the inputs / outputs are marked (passes/static.c). */
enum qd_op_kind { QD_OK_CONV, QD_OK_GEMM, QD_OK_MATMUL, QD_OK_REMOVE, QD_OK_SHARED, QD_OK_GENERIC,
		  QD_OK_NORM, QD_OK_ATTENTION };
/* Kind of a row the static pass does not quantize (dynamic-only ops: LSTM, Attention, ...).
 * Deliberately not an enumerator, so a pass's switch over the kinds it handles stays
 * complete; qd_op_rule_find() never returns such a row. */
#define QD_OK_NONE ((enum qd_op_kind)-1)

/* Dynamic rule: which emitter of passes/dynamic.c rewrites the node (its QOperator and QDQ
 * graph patterns live there). */
enum qd_dyn_form {
	QD_DYN_NONE,        /* not quantized by the dynamic pass */
	QD_DYN_MATMUL,      /* MatMulInteger (DynamicQuantizeMatMul below opset 11) / QDQ */
	QD_DYN_GEMM,        /* converted to MatMul [+ Add] first, then the MatMul form */
	QD_DYN_CONV,        /* ConvInteger (uint8, per-tensor) / QDQ */
	QD_DYN_GATHER,      /* uint8 data + DequantizeLinear after the Gather */
	QD_DYN_LSTM,        /* com.microsoft DynamicQuantizeLSTM (QOperator only) */
	QD_DYN_ATTENTION,   /* com.microsoft QAttention / QDQ weights */
	QD_DYN__COUNT
};

enum {
	QD_OPF_DEFAULT = 1,      /* static: in the default op_types_to_quantize */
	QD_OPF_QOP8 = 2,         /* static QOperator: runs unchanged on 8-bit data */
	QD_OPF_DYN_DEFAULT = 4,  /* dynamic: in the default op_types_to_quantize */
	QD_OPF_DYN_REFUSED = 8,  /* dynamic: in ORT's IntegerOps registry but not quantized by
	                            quantd; a listed node is reported in skipped_nodes */
};

struct qd_op_rule {
	const char *op;
	const char *domain;          /* "" ai.onnx, or "com.microsoft" for contrib-only ops */
	enum qd_op_kind kind;        /* QD_OK_NONE: no static rule */
	int weight_axis;             /* static per-channel axis (-1: none / computed) */
	const char *qop, *qop_domain;
	enum qd_dyn_form dyn;
	int dyn_axis;                /* dynamic per-channel axis of the weight (-1: per-tensor) */
	unsigned flags;
};

/* Static rule of an op type: matched by name alone (ai.onnx ops and the com.microsoft ops
 * of the same name; the static pass checks the domain itself); rows without a static rule
 * (kind QD_OK_NONE) are never returned. NULL when the op is never statically quantized.
 * Borrow (static). */
const struct qd_op_rule *qd_op_rule_find(const char *op_type);
/* Row of (domain, op_type): domain "" or "ai.onnx" matches the ai.onnx rows, any other
 * domain only rows of exactly that domain (com.microsoft Attention is not ai.onnx
 * Attention). NULL domain counts as "". NULL when there is no row. Borrow (static). */
const struct qd_op_rule *qd_op_rule_find_domain(const char *domain, const char *op_type);
/* Row i (0..count-1) for listings. */
size_t qd_op_rules_count(void);
const struct qd_op_rule *qd_op_rule_at(size_t i);
/* "none", "matmul", "gemm", "conv", "gather", "lstm", "attention"; "?" out of range. */
const char *qd_dyn_form_name(enum qd_dyn_form f);

/* True when passes/dynamic.c has an emitter for form f (false for QD_DYN_NONE). */
bool qd_pass_dynamic_has_emitter(enum qd_dyn_form f);

#endif
