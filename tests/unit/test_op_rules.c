/* The op-quantizer table (passes/op_rules.def): invariants every row must keep (unique
 * keys, sane static and dynamic axes, a dynamic emitter for every form, flags as the
 * header documents them) and the two lookups (by name for the static pass, by domain and
 * name for the dynamic pass). */
#include "qd_test.h"
#include "passes/op_rules.h"

#define MS "com.microsoft"

static bool is_ms(const char *dom) { return !strcmp(dom, MS); }

static const struct qd_op_rule *row(const char *dom, const char *op)
{
	return qd_op_rule_find_domain(dom, op);
}

static void test_rows(void)
{
	size_t n = qd_op_rules_count();
	CHECK(n > 0);
	CHECK(qd_op_rule_at(n) == NULL);
	for (size_t i = 0; i < n; i++) {
		const struct qd_op_rule *r = qd_op_rule_at(i);
		CHECKF(r && r->op && *r->op && r->domain && r->qop && r->qop_domain, "row %zu", i);
		if (!r)
			continue;
		CHECKF(!*r->domain || is_ms(r->domain), "%s: domain '%s'", r->op, r->domain);
		/* keys: (domain, op) unique; static rows unique by name (qd_op_rule_find) */
		for (size_t k = i + 1; k < n; k++) {
			const struct qd_op_rule *o = qd_op_rule_at(k);
			CHECKF(strcmp(o->op, r->op) || strcmp(o->domain, r->domain), "%s: two rows", r->op);
			CHECKF(strcmp(o->op, r->op) || r->kind == QD_OK_NONE || o->kind == QD_OK_NONE,
			       "%s: two static rows", r->op);
		}
		CHECKF(row(r->domain, r->op) == r, "%s: find_domain", r->op);
		CHECKF(r->kind == QD_OK_NONE ? qd_op_rule_find(r->op) != r : qd_op_rule_find(r->op) == r,
		       "%s: find", r->op);

		/* static columns */
		bool kind_ok = r->kind == QD_OK_NONE || (unsigned)r->kind <= QD_OK_ATTENTION;
		CHECKF(kind_ok, "%s: kind %d", r->op, (int)r->kind);
		CHECKF(r->weight_axis >= -1 && r->weight_axis <= 1, "%s: weight_axis %d", r->op, r->weight_axis);
		switch (kind_ok && r->kind != QD_OK_NONE ? r->kind : QD_OK_GENERIC) {
		case QD_OK_CONV:
		case QD_OK_NORM:
		case QD_OK_ATTENTION:
			CHECKF(r->weight_axis >= 0, "%s: a weight kind needs an axis", r->op);
			break;
		default:   /* GEMM / MATMUL compute theirs (transB, last dim); the rest have none */
			CHECKF(r->weight_axis == -1, "%s: weight_axis %d without a weight", r->op, r->weight_axis);
		}
		CHECKF(*r->qop || !*r->qop_domain, "%s: qop_domain without qop", r->op);
		CHECKF(!*r->qop_domain || is_ms(r->qop_domain), "%s: qop_domain '%s'", r->op, r->qop_domain);
		if (r->kind == QD_OK_NONE)
			CHECKF(!*r->qop && !(r->flags & (QD_OPF_DEFAULT | QD_OPF_QOP8)),
			       "%s: static columns on a row without a static kind", r->op);
		if (r->flags & QD_OPF_QOP8)
			CHECKF(r->kind == QD_OK_SHARED, "%s: QD_OPF_QOP8 on a non-SHARED kind", r->op);

		/* dynamic columns */
		CHECKF((unsigned)r->dyn < QD_DYN__COUNT, "%s: dyn %d", r->op, (int)r->dyn);
		CHECKF(r->dyn == QD_DYN_NONE || qd_pass_dynamic_has_emitter(r->dyn), "%s: form %s has no emitter",
		       r->op, qd_dyn_form_name(r->dyn));
		int want = -2;   /* the axes the emitters take */
		switch (r->dyn) {
		case QD_DYN_NONE:      want = -1; break;
		case QD_DYN_MATMUL:    want = 1; break;    /* columns of a 2-D B */
		case QD_DYN_GEMM:      want = 1; break;    /* B after the transpose to [K, N] */
		case QD_DYN_CONV:      want = 0; break;    /* output channels (QDQ) */
		case QD_DYN_GATHER:    want = -1; break;   /* per-tensor data */
		case QD_DYN_LSTM:      want = 1; break;    /* gate rows of [D, 4H, X] */
		case QD_DYN_ATTENTION: want = 1; break;    /* columns of [hidden, 3 hidden] */
		case QD_DYN__COUNT:    break;
		}
		CHECKF(r->dyn_axis == want, "%s: dyn_axis %d, the %s emitter takes %d", r->op, r->dyn_axis,
		       qd_dyn_form_name(r->dyn), want);
		CHECKF(!(r->flags & QD_OPF_DYN_DEFAULT) || r->dyn != QD_DYN_NONE,
		       "%s: dynamic default without a dynamic form", r->op);
		CHECKF(!(r->flags & QD_OPF_DYN_REFUSED) || r->dyn == QD_DYN_NONE,
		       "%s: refused but has a dynamic form", r->op);
		CHECKF(!(r->flags & ~(unsigned)(QD_OPF_DEFAULT | QD_OPF_QOP8 | QD_OPF_DYN_DEFAULT |
						QD_OPF_DYN_REFUSED)), "%s: unknown flag", r->op);
		CHECKF(*r->domain || r->dyn != QD_DYN_ATTENTION, "%s: Attention form outside com.microsoft", r->op);
	}
}

static void test_forms(void)
{
	CHECK(!qd_pass_dynamic_has_emitter(QD_DYN_NONE));
	CHECK(!qd_pass_dynamic_has_emitter(QD_DYN__COUNT));
	for (int f = 0; f < QD_DYN__COUNT; f++) {
		const char *name = qd_dyn_form_name((enum qd_dyn_form)f);
		CHECKF(strcmp(name, "?"), "form %d has no name", f);
		if (f != QD_DYN_NONE)
			CHECKF(qd_pass_dynamic_has_emitter((enum qd_dyn_form)f), "form %s has no emitter", name);
		bool used = f == QD_DYN_NONE;
		for (size_t i = 0; i < qd_op_rules_count(); i++)
			used = used || qd_op_rule_at(i)->dyn == (enum qd_dyn_form)f;
		CHECKF(used, "form %s is used by no row", name);
		for (int g = f + 1; g < QD_DYN__COUNT; g++)
			CHECK(strcmp(name, qd_dyn_form_name((enum qd_dyn_form)g)));
	}
	CHECK_STR(qd_dyn_form_name(QD_DYN__COUNT), "?");
}

static void test_lookups(void)
{
	const struct qd_op_rule *mm = row("", "MatMul");
	CHECK(mm && mm->kind == QD_OK_MATMUL && mm->dyn == QD_DYN_MATMUL);
	CHECK(row("ai.onnx", "MatMul") == mm);
	CHECK(row(NULL, "MatMul") == mm);
	CHECK(qd_op_rule_find("MatMul") == mm);
	CHECK(row(MS, "MatMul") == NULL);           /* no com.microsoft MatMul */
	CHECK(row("", NULL) == NULL);
	CHECK(row("", "NoSuchOp") == NULL);
	CHECK(qd_op_rule_find(NULL) == NULL);
	CHECK(qd_op_rule_find("NoSuchOp") == NULL);
	/* Attention exists in com.microsoft only: ai.onnx Attention (opset 23) is another op */
	const struct qd_op_rule *at = row(MS, "Attention");
	CHECK(at && at->dyn == QD_DYN_ATTENTION && at->kind == QD_OK_ATTENTION && !strcmp(at->qop, "QAttention"));
	CHECK(row("", "Attention") == NULL);
	CHECK(row("ai.onnx", "Attention") == NULL);
	/* the static pass finds Attention (QAttention); rows without a static rule stay
	 * invisible to its lookup */
	CHECK(qd_op_rule_find("Attention") == at);
	CHECK(qd_op_rule_find("LSTM") == NULL);
	CHECK(qd_op_rule_find("EmbedLayerNormalization") == NULL);
	const struct qd_op_rule *lstm = row("", "LSTM");
	CHECK(lstm && lstm->dyn == QD_DYN_LSTM && lstm->kind == QD_OK_NONE);
	CHECK(row(MS, "EmbedLayerNormalization") && row("", "EmbedLayerNormalization") == NULL);
	const struct qd_op_rule *gemm = row("", "Gemm");
	CHECK(gemm && gemm->dyn == QD_DYN_GEMM && gemm->kind == QD_OK_GEMM && !strcmp(gemm->qop, "QGemm"));
	const struct qd_op_rule *conv = row("", "Conv");
	CHECK(conv && conv->dyn == QD_DYN_CONV && conv->weight_axis == 0 && conv->dyn_axis == 0);
}

/* The default op types as the header of op_rules.def and the DESIGN of passes/dynamic.c
 * state them. */
static void test_defaults(void)
{
	/* dynamic: ORT's IntegerOps registry (Conv, MatMul, Attention, LSTM, Gather, Transpose,
	 * EmbedLayerNormalization) plus Gemm (quantd converts it); defaults minus Conv,
	 * Transpose and EmbedLayerNormalization, which are refused outright */
	static const struct { const char *dom, *op; bool dflt, refused; } dyn[] = {
		{"", "MatMul", true, false}, {"", "Gemm", true, false}, {"", "Gather", true, false},
		{"", "LSTM", true, false}, {MS, "Attention", true, false}, {"", "Conv", false, false},
		{"", "Transpose", false, true}, {MS, "EmbedLayerNormalization", false, true},
	};
	size_t seen = 0;
	for (size_t k = 0; k < sizeof dyn / sizeof dyn[0]; k++) {
		const struct qd_op_rule *r = row(dyn[k].dom, dyn[k].op);
		CHECKF(r != NULL, "no row for %s", dyn[k].op);
		if (!r)
			continue;
		CHECKF(!!(r->flags & QD_OPF_DYN_DEFAULT) == dyn[k].dflt, "%s: dynamic default", r->op);
		CHECKF(!!(r->flags & QD_OPF_DYN_REFUSED) == dyn[k].refused, "%s: refused", r->op);
		CHECKF((r->dyn != QD_DYN_NONE) == !dyn[k].refused, "%s: dynamic form", r->op);
	}
	for (size_t i = 0; i < qd_op_rules_count(); i++) {
		const struct qd_op_rule *r = qd_op_rule_at(i);
		seen += r->dyn != QD_DYN_NONE || (r->flags & QD_OPF_DYN_REFUSED);
	}
	CHECK_EQ_INT(seen, sizeof dyn / sizeof dyn[0]);   /* no other row is dynamic */
	/* static: Add, Mul, Sigmoid measured out of the default; the integer-kernel ops in */
	static const char *const s_off[] = {"Add", "Mul", "Sigmoid", "Softmax", "LayerNormalization"};
	static const char *const s_on[] = {"Conv", "MatMul", "Gemm", "Relu", "Concat", "Reshape"};
	for (size_t k = 0; k < sizeof s_off / sizeof s_off[0]; k++) {
		const struct qd_op_rule *r = qd_op_rule_find(s_off[k]);
		CHECKF(r && !(r->flags & QD_OPF_DEFAULT), "%s: static default", s_off[k]);
	}
	for (size_t k = 0; k < sizeof s_on / sizeof s_on[0]; k++) {
		const struct qd_op_rule *r = qd_op_rule_find(s_on[k]);
		CHECKF(r && (r->flags & QD_OPF_DEFAULT), "%s: not a static default", s_on[k]);
	}
}

int main(void)
{
	test_rows();
	test_forms();
	test_lookups();
	test_defaults();
	return qd_test_done("test_op_rules");
}
