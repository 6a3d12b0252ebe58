/* The op-quantizer table expanded from passes/op_rules.def, and its lookups. */
#include "passes/op_rules.h"

#include <assert.h>
#include <string.h>

#define QD_DOM_ONNX ""
#define QD_DOM_MS "com.microsoft"

static const struct qd_op_rule rules[] = {
#define QD_OPRULE(op, dom, kind, axis, qop, qdom, dyn, dyn_axis, flags) \
	{op, QD_DOM_##dom, QD_OK_##kind, axis, qop, qdom, QD_DYN_##dyn, dyn_axis, flags},
#include "passes/op_rules.def"
#undef QD_OPRULE
};

const struct qd_op_rule *qd_op_rule_find(const char *op_type)
{
	for (size_t i = 0; op_type && i < QD_ARRAY_LEN(rules); i++)
		if (rules[i].kind != QD_OK_NONE && !strcmp(rules[i].op, op_type))
			return &rules[i];
	return NULL;
}

const struct qd_op_rule *qd_op_rule_find_domain(const char *domain, const char *op_type)
{
	if (!domain || !strcmp(domain, "ai.onnx"))
		domain = "";
	for (size_t i = 0; op_type && i < QD_ARRAY_LEN(rules); i++)
		if (!strcmp(rules[i].op, op_type) && !strcmp(rules[i].domain, domain))
			return &rules[i];
	return NULL;
}

size_t qd_op_rules_count(void) { return QD_ARRAY_LEN(rules); }
const struct qd_op_rule *qd_op_rule_at(size_t i) { return i < QD_ARRAY_LEN(rules) ? &rules[i] : NULL; }

const char *qd_dyn_form_name(enum qd_dyn_form f)
{
	static const char *const names[] = {
		[QD_DYN_NONE] = "none", [QD_DYN_MATMUL] = "matmul", [QD_DYN_GEMM] = "gemm",
		[QD_DYN_CONV] = "conv", [QD_DYN_GATHER] = "gather", [QD_DYN_LSTM] = "lstm",
		[QD_DYN_ATTENTION] = "attention",
	};
	static_assert(QD_ARRAY_LEN(names) == QD_DYN__COUNT, "a qd_dyn_form without a name");
	return (unsigned)f < QD_ARRAY_LEN(names) ? names[f] : "?";
}
