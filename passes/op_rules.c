/* The op-quantizer table expanded from passes/op_rules.def. */
#include "passes/op_rules.h"

#include <string.h>

static const struct qd_op_rule rules[] = {
#define QD_OPRULE(op, kind, axis, qop, qdom, flags) {op, QD_OK_##kind, axis, qop, qdom, flags},
#include "passes/op_rules.def"
#undef QD_OPRULE
};

const struct qd_op_rule *qd_op_rule_find(const char *op_type)
{
	for (size_t i = 0; op_type && i < QD_ARRAY_LEN(rules); i++)
		if (!strcmp(rules[i].op, op_type))
			return &rules[i];
	return NULL;
}

size_t qd_op_rules_count(void) { return QD_ARRAY_LEN(rules); }
const struct qd_op_rule *qd_op_rule_at(size_t i) { return i < QD_ARRAY_LEN(rules) ? &rules[i] : NULL; }
