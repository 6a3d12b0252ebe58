/* passes/weight_only.c — the weight-only passes: OnnxBlockWiseRtnQuantization,
 * OnnxHqqQuantization, OnnxMatMul4Quantizer (algorithm DEFAULT / RTN / HQQ / GPTQ) and
 * quantd's OnnxMatMulNBits (the same as OnnxMatMul4Quantizer plus `bits`). Each MatMul
 * whose B is a 2-D float initializer becomes com.microsoft.MatMulNBits (K, N, bits,
 * block_size, accuracy_level when > 0) with ORT's packing (passes/weight_only_quant.c).
 *
 * DESIGN
 * - One configuration struct for every pass type; the per-type entry points only read
 *   their own schema into it (Olive's names and defaults, passes/registry.c).
 * - A MatMul stays float (logged, listed in stats.skipped_nodes) when B is not a constant,
 *   not float32, not 2-D, or K is not a multiple of block_size; nodes_to_exclude /
 *   nodes_to_include match names exactly or as fnmatch globs (Olive's HQQ pass).
 * - GPTQ streams the calibration data through the float model once (engine hook, one
 *   Hessian sum XᵀX per distinct MatMul input, accumulated with ssyrk; graph inputs are
 *   read from the batches), then quantizes every weight with its input's Hessian
 *   (ORT's tool does the same: one pass, not layer by layer). */
#include "passes/passes.h"
#include "passes/weight_only.h"
#include "engine/engine.h"
#include "engine/dataset.h"

#include <cblas.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MS_DOMAIN "com.microsoft"

struct wo_cfg {
	enum qd_wo_algo algo;
	int bits;
	int64_t bs;
	bool sym;
	int64_t accuracy_level;
	const json_t *nodes_ex, *nodes_in, *ratios;
	struct qd_wo_gptq_opts g;
	struct qd_wo_awq_opts awq;
	const json_t *data_config;
	int64_t calib_limit;
	bool matmul, gather;    /* op_types_to_quantize (null: MatMul only) */
};

static const char *algo_name(enum qd_wo_algo a)
{
	static const char *const n[] = {"DEFAULT", "RTN", "HQQ", "GPTQ", "AWQ"};
	return n[a];
}

/* ---- submit-time checks ---- */

static bool pow2_ge16(json_int_t v)
{
	return v >= 16 && (v & (v - 1)) == 0;
}

/* The keys weight_only_quant_configs may hold per algorithm (Olive's validator). */
static const char *woq_keys(const char *algo)
{
	if (!strcmp(algo, "DEFAULT"))
		return "block_size|is_symmetric|accuracy_level|op_types_to_quantize|quant_axes";
	if (!strcmp(algo, "RTN"))
		return "ratios|op_types_to_quantize|quant_axes";
	if (!strcmp(algo, "HQQ"))
		return "block_size|bits|axis|op_types_to_quantize|quant_axes";
	if (!strcmp(algo, "GPTQ"))
		return "percdamp|block_size|actorder|mse|perchannel|op_types_to_quantize|quant_axes";
	if (!strcmp(algo, "AWQ"))
		return "block_size|is_symmetric|accuracy_level|enable_auto_scale|enable_mse_search|"
		       "op_types_to_quantize|quant_axes";
	return NULL;
}

static int check_op_types(const char *pass_name, const char *sub, const json_t *v, struct qd_err *err)
{
	char field[200];
	snprintf(field, sizeof field, "passes.%s.%sop_types_to_quantize", pass_name, sub);
	size_t i; json_t *x;
	json_array_foreach(v, i, x) {
		const char *s = json_string_value(x);
		if (s && (!strcmp(s, "MatMul") || !strcmp(s, "Gather")))
			continue;
		return qd_err_set(err, QD_EUNSUPPORTED, field, "op type '%s' cannot be weight-only quantized "
				  "(MatMul, Gather)", s ? s : "?");
	}
	return 0;
}

static int check_quant_axes(const char *pass_name, const char *sub, const json_t *v, struct qd_err *err)
{
	char field[200];
	const char *k; json_t *x;
	json_object_foreach((json_t *)v, k, x) {
		snprintf(field, sizeof field, "passes.%s.%squant_axes.%s", pass_name, sub, k);
		if (strcmp(k, "MatMul") && strcmp(k, "Gather"))
			return qd_err_set(err, QD_EUNSUPPORTED, field, "quant_axes for op type '%s': MatMul and "
					  "Gather only", k);
		if (!strcmp(k, "MatMul") && !(json_is_integer(x) && json_integer_value(x) == 0))
			return qd_err_set(err, QD_EUNSUPPORTED, field, "MatMul weights are quantized along axis 0 "
					  "(K) only, the MatMulNBits layout");
		if (!strcmp(k, "Gather") && !(json_is_integer(x) && (json_integer_value(x) == 1 ||
								   json_integer_value(x) == -1)))
			return qd_err_set(err, QD_EUNSUPPORTED, field, "Gather data is quantized along its last axis "
					  "(1 or -1) only, GatherBlockQuantized's uint8 form");
	}
	return 0;
}

static bool lists_gather(const json_t *ops)
{
	size_t i; json_t *x;
	json_array_foreach(ops, i, x)
		if (json_is_string(x) && !strcmp(json_string_value(x), "Gather"))
			return true;
	return false;
}

/* Gather is quantized by the DEFAULT algorithm only (ORT's rule: its DefaultWeightOnly
 * quantizer is the one that handles Gather). */
static int check_gather_algo(const char *pass_name, const char *sub, const json_t *ops, const char *algo,
			     struct qd_err *err)
{
	if (!lists_gather(ops) || !strcmp(algo, "DEFAULT"))
		return 0;
	char field[200];
	snprintf(field, sizeof field, "passes.%s.%sop_types_to_quantize", pass_name, sub);
	return qd_err_set(err, QD_EUNSUPPORTED, field, "Gather (GatherBlockQuantized) is quantized by the "
			  "DEFAULT algorithm only, not %s: quantize embeddings in a separate DEFAULT pass", algo);
}

static int check_common(const char *pass_name, const json_t *space, bool has_bits, const char *algo,
			struct qd_err *err)
{
	char field[200];
	size_t i; json_t *v;
	json_array_foreach(json_object_get(space, "block_size"), i, v) {
		snprintf(field, sizeof field, "passes.%s.block_size", pass_name);
		if (!pow2_ge16(json_integer_value(v)))
			return qd_err_set(err, QD_EINVAL, field, "block_size %lld is not a power of two >= 16 "
					  "(MatMulNBits' blocks)", (long long)json_integer_value(v));
	}
	if (has_bits)
		json_array_foreach(json_object_get(space, "bits"), i, v) {
			snprintf(field, sizeof field, "passes.%s.bits", pass_name);
			if (json_integer_value(v) != 4 && json_integer_value(v) != 8)
				return qd_err_set(err, QD_EINVAL, field, "bits %lld is not supported: 4 or 8",
						  (long long)json_integer_value(v));
		}
	json_array_foreach(json_object_get(space, "accuracy_level"), i, v) {
		snprintf(field, sizeof field, "passes.%s.accuracy_level", pass_name);
		if (!json_is_null(v) && (json_integer_value(v) < 0 || json_integer_value(v) > 4))
			return qd_err_set(err, QD_EINVAL, field, "accuracy_level %lld is not one of 0 (unset), 1 "
					  "(fp32), 2 (fp16), 3 (bf16), 4 (int8)", (long long)json_integer_value(v));
	}
	json_array_foreach(json_object_get(space, "axis"), i, v) {
		snprintf(field, sizeof field, "passes.%s.axis", pass_name);
		if (json_integer_value(v) != 0)
			return qd_err_set(err, QD_EUNSUPPORTED, field, "axis %lld: MatMul weights are quantized "
					  "along axis 0 (K) only; Gather tables along their last axis (quant_axes)",
					  (long long)json_integer_value(v));
	}
	json_array_foreach(json_object_get(space, "op_types_to_quantize"), i, v) {
		int rc = check_op_types(pass_name, "", v, err);
		if (rc == 0 && algo)
			rc = check_gather_algo(pass_name, "", v, algo, err);
		if (rc < 0)
			return rc;
	}
	json_array_foreach(json_object_get(space, "quant_axes"), i, v) {
		int rc = check_quant_axes(pass_name, "", v, err);
		if (rc < 0)
			return rc;
	}
	int src = qd_pass_check_sampling_size(pass_name, space, err);
	return src < 0 ? src : qd_pass_check_external(pass_name, space, err);
}

int qd_pass_check_blockwise_rtn(const char *pass_name, const json_t *space, struct qd_err *err)
{
	return check_common(pass_name, space, true, "DEFAULT", err);
}

int qd_pass_check_hqq(const char *pass_name, const json_t *space, struct qd_err *err)
{
	return check_common(pass_name, space, false, "HQQ", err);
}

/* One configuration of OnnxMatMul4Quantizer / OnnxMatMulNBits (algorithm,
 * weight_only_quant_configs, data_config together). */
static int check_matmul4_one(const char *pass_name, const json_t *algo_v, const json_t *woq, const json_t *dc,
			     struct qd_err *err)
{
	char field[200];
	const char *algo = json_is_string(algo_v) ? json_string_value(algo_v) : "DEFAULT";
	snprintf(field, sizeof field, "passes.%s.algorithm", pass_name);
	const char *keys = woq_keys(algo);
	if (!keys)
		return qd_err_set(err, QD_ENOT_IMPL, field, "algorithm '%s' is not implemented (DEFAULT, RTN, HQQ, "
				  "GPTQ, AWQ)", algo);
	if ((!strcmp(algo, "GPTQ") || !strcmp(algo, "AWQ")) && json_is_null(dc)) {
		snprintf(field, sizeof field, "passes.%s.data_config", pass_name);
		return qd_err_set(err, QD_EINVAL, field, "%s needs calibration data: set \"data_config\" to a "
				  "data_configs name", algo);
	}
	const char *k; json_t *x;
	json_object_foreach((json_t *)woq, k, x) {
		snprintf(field, sizeof field, "passes.%s.weight_only_quant_configs.%s", pass_name, k);
		if (!qd_pass_choice_has(keys, k))
			return qd_err_set(err, QD_EINVAL, field, "'%s' is not a %s setting (allowed: %s)", k, algo, keys);
		if (!strcmp(k, "block_size") && !pow2_ge16(json_integer_value(x)))
			return qd_err_set(err, QD_EINVAL, field, "block_size must be a power of two >= 16");
		if (!strcmp(k, "bits") && json_integer_value(x) != 4 && json_integer_value(x) != 8)
			return qd_err_set(err, QD_EINVAL, field, "bits %lld is not supported: 4 or 8",
					  (long long)json_integer_value(x));
		if (!strcmp(k, "axis") && !(json_is_integer(x) && json_integer_value(x) == 1))
			/* HQQ's axis is the axis of Wᵀ [N, K] it groups along: 1 (= K) */
			return qd_err_set(err, QD_EUNSUPPORTED, field, "HQQ quantizes along axis 1 of Wᵀ (K) only");
		if (!strcmp(k, "percdamp") && !(json_is_number(x) && json_number_value(x) > 0 && json_number_value(x) < 10))
			return qd_err_set(err, QD_EINVAL, field, "percdamp must be a number in (0, 10)");
		if ((!strcmp(k, "actorder") || !strcmp(k, "mse") || !strcmp(k, "perchannel") ||
		     !strcmp(k, "is_symmetric") || !strcmp(k, "enable_auto_scale") || !strcmp(k, "enable_mse_search")) &&
		    !json_is_boolean(x))
			return qd_err_set(err, QD_EINVAL, field, "'%s' must be true or false", k);
		if (!strcmp(k, "accuracy_level") && !(json_is_integer(x) && json_integer_value(x) >= 0 &&
						      json_integer_value(x) <= 4))
			return qd_err_set(err, QD_EINVAL, field, "accuracy_level must be 0..4");
		if (!strcmp(k, "ratios")) {
			const char *rk; json_t *rv;
			if (!json_is_object(x))
				return qd_err_set(err, QD_EINVAL, field, "ratios must be an object (node name -> ratio)");
			json_object_foreach(x, rk, rv)
				if (!json_is_number(rv) || json_number_value(rv) <= 0 || json_number_value(rv) > 1)
					return qd_err_set(err, QD_EINVAL, field, "ratio of '%s' must be a number in "
							  "(0, 1]", rk);
		}
		int rc = 0;
		if (!strcmp(k, "op_types_to_quantize"))
			rc = check_op_types(pass_name, "weight_only_quant_configs.", x, err);
		if (!strcmp(k, "quant_axes"))
			rc = check_quant_axes(pass_name, "weight_only_quant_configs.", x, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int check_matmul4_space(const char *pass_name, const json_t *space, bool nbits_row, struct qd_err *err)
{
	int rc = check_common(pass_name, space, nbits_row, NULL, err);
	if (rc < 0)
		return rc;
	size_t i, j, k; json_t *a, *w, *d, *o;
	json_array_foreach(json_object_get(space, "algorithm"), i, a) {
		const char *an = json_is_string(a) ? json_string_value(a) : "DEFAULT";
		json_array_foreach(json_object_get(space, "op_types_to_quantize"), j, o)
			if ((rc = check_gather_algo(pass_name, "", o, an, err)) < 0)
				return rc;
		json_array_foreach(json_object_get(space, "weight_only_quant_configs"), j, w)
			if ((rc = check_gather_algo(pass_name, "weight_only_quant_configs.",
						    json_object_get(w, "op_types_to_quantize"), an, err)) < 0)
				return rc;
	}
	json_array_foreach(json_object_get(space, "algorithm"), i, a)
		json_array_foreach(json_object_get(space, "weight_only_quant_configs"), j, w)
			json_array_foreach(json_object_get(space, "data_config"), k, d)
				if ((rc = check_matmul4_one(pass_name, a, w, d, err)) < 0)
					return rc;
	if (!json_object_get(space, "weight_only_quant_configs"))   /* OnnxMatMulNBits has none */
		json_array_foreach(json_object_get(space, "algorithm"), i, a)
			json_array_foreach(json_object_get(space, "data_config"), k, d)
				if ((rc = check_matmul4_one(pass_name, a, NULL, d, err)) < 0)
					return rc;
	return 0;
}

int qd_pass_check_matmul4(const char *pass_name, const json_t *space, struct qd_err *err)
{
	return check_matmul4_space(pass_name, space, false, err);
}

int qd_pass_check_matmul_nbits(const char *pass_name, const json_t *space, struct qd_err *err)
{
	return check_matmul4_space(pass_name, space, true, err);
}

/* ---- the rewrite ---- */

struct target {
	size_t node;        /* index in g->node */
	const char *a, *b;  /* borrow (the node) */
	int64_t K, N;
	int64_t bs;         /* this weight's block_size: the pass's, or (block_size -1, per channel)
	                       one block over the whole K: the next power of two >= max(K, 16) */
	long h;             /* Hessian index (GPTQ), -1 */
};

/* block_size -1 (INC's group_size -1): one block per output column; MatMulNBits wants a
 * power of two >= 16, K short of it is legal (the padding codes are zero). ORT 1.30's CPU
 * kernel takes block_size 16 .. 256 only, so a K above 256 stays float (logged). */
#define QD_WO_MAX_BS 256
static int64_t per_channel_bs(int64_t K)
{
	int64_t b = 16;
	while (b < K)
		b *= 2;
	return b;
}

struct hess {
	char *name;
	int64_t K;
	float *H;           /* upper triangle of sum XᵀX */
	int64_t rows;
};

struct wo {
	struct qd_pass_ctx *pc;
	struct qd_model *m;
	struct qd_err *err;
	struct wo_cfg cfg;
	struct target *t;
	size_t nt;
	struct hess *h;
	size_t nh;
	struct qd_namemap hmap;     /* input name → index into h */
	json_t *counts, *skipped, *awq;
	int64_t samples;
	struct target *gt;  /* Gather nodes: a = indices, b = data, K = row length, N = rows */
	size_t ngt;
	Onnx__NodeProto **old; /* replaced nodes, freed after the index that borrows their names */
	size_t nold;
};

static bool name_matches(const json_t *list, const char *name)
{
	size_t i; json_t *x;
	json_array_foreach(list, i, x) {
		const char *p = json_string_value(x);
		if (p && (!strcmp(p, name) || (strpbrk(p, "*?[") && fnmatch(p, name, 0) == 0)))
			return true;
	}
	return false;
}

/* A Gather whose data is a constant 2-D float table gathered along axis 0 (an embedding)
 * becomes GatherBlockQuantized; others stay float (logged). */
static void collect_gather(struct wo *w, struct qd_graph_index *ix, size_t i)
{
	Onnx__NodeProto *n = w->m->proto->graph->node[i];
	if (name_matches(w->cfg.nodes_ex, n->name ? n->name : "") ||
	    (json_array_size(w->cfg.nodes_in) && !name_matches(w->cfg.nodes_in, n->name ? n->name : "")))
		return;
	Onnx__TensorProto *d = qd_index_initializer(ix, n->input[0]);
	if (!d || qd_index_producer(ix, n->input[0])) {
		qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "data '%s' is not a constant initializer", n->input[0]);
		return;
	}
	if (d->data_type != QD_DT_FLOAT || d->n_dims != 2) {
		qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "data '%s' is not a 2-D float32 table (%s, %zu dims)",
			     n->input[0], qd_dtype_name(d->data_type), d->n_dims);
		return;
	}
	int64_t axis = qd_node_attr_int(n, "axis", 0);
	if (axis != 0 && axis != -2) {
		qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "gathers along axis %lld, not 0 (rows of a table)",
			     (long long)axis);
		return;
	}
	int64_t V = d->dims[0], H = d->dims[1];
	if (w->cfg.bs < 0) {
		qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "group_size -1 (per channel) applies to MatMul "
			     "weights: Gather tables stay float");
		return;
	}
	if (V <= 0 || H <= 0 || H % w->cfg.bs) {
		qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "row length %lld is not a multiple of block_size %lld",
			     (long long)H, (long long)w->cfg.bs);
		return;
	}
	w->gt[w->ngt++] = (struct target){ .node = i, .a = n->input[1], .b = n->input[0], .K = H, .N = V, .bs = w->cfg.bs, .h = -1 };
}

static int collect_targets(struct wo *w, struct qd_graph_index *ix)
{
	Onnx__GraphProto *g = w->m->proto->graph;
	w->t = calloc(g->n_node + 1, sizeof *w->t);
	w->gt = calloc(g->n_node + 1, sizeof *w->gt);
	w->old = calloc(g->n_node + 1, sizeof *w->old);
	if (!w->t || !w->gt || !w->old)
		return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
	size_t sub_matmuls = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		Onnx__GraphProto *sg[8];
		size_t ns = qd_node_subgraphs(n, sg, 8);
		for (size_t s = 0; s < ns && s < 8; s++)
			for (size_t j = 0; j < sg[s]->n_node; j++)
				sub_matmuls += !strcmp(sg[s]->node[j]->op_type, "MatMul");
		if (w->cfg.gather && !strcmp(n->op_type, "Gather") && !qd_node_domain(n)[0] && n->n_input == 2) {
			collect_gather(w, ix, i);
			continue;
		}
		if (!w->cfg.matmul || strcmp(n->op_type, "MatMul") || qd_node_domain(n)[0] || n->n_input != 2)
			continue;
		const char *label = qd_node_label(n);
		if (name_matches(w->cfg.nodes_ex, n->name ? n->name : "")) {
			qd_pass_log(w->pc, QD_LOG_DEBUG, "node '%s' excluded by nodes_to_exclude", label);
			continue;
		}
		if (json_array_size(w->cfg.nodes_in) && !name_matches(w->cfg.nodes_in, n->name ? n->name : ""))
			continue;
		Onnx__TensorProto *b = qd_index_initializer(ix, n->input[1]);
		if (!b || qd_index_producer(ix, n->input[1])) {
			qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "B '%s' is not a constant initializer", n->input[1]);
			continue;
		}
		if (b->data_type != QD_DT_FLOAT) {
			qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "B '%s' is %s, not float32", n->input[1],
				     qd_dtype_name(b->data_type));
			continue;
		}
		if (b->n_dims != 2) {
			qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "B '%s' has %zu dimensions, not 2", n->input[1],
				     b->n_dims);
			continue;
		}
		int64_t K = b->dims[0], N = b->dims[1];
		if (w->cfg.bs < 0 && K > QD_WO_MAX_BS) {
			qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "group_size -1: one block over K = %lld would "
				     "be block_size %lld; ONNX Runtime's MatMulNBits takes block_size <= %d",
				     (long long)K, (long long)per_channel_bs(K), QD_WO_MAX_BS);
			continue;
		}
		if (K <= 0 || N <= 0 || (w->cfg.bs > 0 && K % w->cfg.bs)) {
			qd_pass_skip(w->pc, w->skipped, n, QD_LOG_INFO, "K = %lld is not a multiple of block_size %lld",
				     (long long)K, (long long)w->cfg.bs);
			continue;
		}
		w->t[w->nt++] = (struct target){ .node = i, .a = n->input[0], .b = n->input[1], .K = K, .N = N,
					 .bs = w->cfg.bs > 0 ? w->cfg.bs : per_channel_bs(K), .h = -1 };
	}
	if (sub_matmuls)
		qd_pass_log(w->pc, QD_LOG_INFO, "%zu MatMul nodes inside If/Loop/Scan bodies stay float (main graph "
			    "only)", sub_matmuls);
	return 0;
}

/* ---- GPTQ calibration: one Hessian per distinct MatMul input ---- */

static void accumulate(struct hess *h, const struct qd_tensor *t)
{
	if (t->dtype != QD_DT_FLOAT || t->ndim < 1 || t->dims[t->ndim - 1] != h->K || !t->data)
		return;
	int64_t rows = qd_tensor_count(t) / h->K;
	if (rows <= 0)
		return;
	cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)h->K, (int)rows, 1.0f, t->data, (int)h->K, 1.0f,
		    h->H, (int)h->K);
	h->rows += rows;
}

static void gptq_hook(void *ud, const Onnx__NodeProto *node, const struct qd_tensor *t)
{
	struct wo *w = ud;
	(void)node;
	long *ix = t && t->name ? qd_namemap_get(&w->hmap, t->name) : NULL;
	if (ix)
		accumulate(&w->h[*ix], t);
}

static int hessian_calibrate(struct wo *w)
{
	struct qd_err *err = w->err;
	w->h = calloc(w->nt + 1, sizeof *w->h);
	if (!w->h)
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < w->nt; i++) {
		long *ix = qd_namemap_get(&w->hmap, w->t[i].a);
		if (ix) {
			if (w->h[*ix].K != w->t[i].K)
				return qd_err_set(err, QD_EMODEL, w->t[i].a, "tensor '%s' feeds MatMuls of different K",
						  w->t[i].a);
			w->t[i].h = *ix;
			continue;
		}
		struct hess *h = &w->h[w->nh];
		h->K = w->t[i].K;
		h->name = strdup(w->t[i].a);
		h->H = calloc((size_t)(h->K * h->K) + 1, sizeof(float));
		if (!h->name || !h->H || qd_namemap_put(&w->hmap, w->t[i].a, (long)w->nh) < 0)
			return qd_err_set(err, QD_ENOMEM, NULL, "out of memory for the Hessian of '%s' (%lld x %lld)",
					  w->t[i].a, (long long)h->K, (long long)h->K);
		w->t[i].h = (long)w->nh++;
	}
	struct qd_dataset *ds = NULL;
	struct qd_engine *e = NULL;
	struct qd_batches b = { 0 };
	int64_t bs = 1;
	int rc = qd_pass_open_data(w->pc, w->m, w->cfg.data_config, "data_config", &ds, &bs, err);
	if (rc < 0)
		return rc;
	struct qd_engine_opts eo = { .threads = w->pc->threads,
				     .max_tensor_bytes = w->pc->max_tensor_bytes ? w->pc->max_tensor_bytes : (size_t)4 << 30,
				     .max_memory_bytes = w->pc->max_memory_bytes, .max_seconds = w->pc->max_seconds };
	if ((rc = qd_batches_init(&b, ds, w->m->proto->graph, bs, w->cfg.calib_limit, err)) < 0)
		goto out;
	if ((rc = qd_engine_load(w->m, &eo, &e, err)) < 0) {
		qd_err_wrap(err, "cannot run the model for GPTQ calibration");
		goto out;
	}
	qd_engine_set_hook(e, gptq_hook, w);
	double t0 = qd_now_mono();
	qd_pass_log(w->pc, QD_LOG_INFO, "%s: collecting %zu Hessians on %lld samples (batch %lld)", algo_name(w->cfg.algo), w->nh,
		    (long long)b.end, (long long)b.bs);
	const volatile int *cancel = w->pc->hooks ? w->pc->hooks->cancel : NULL;
	for (;;) {
		struct qd_tensor *in = NULL, *outs = NULL;
		size_t n_in = 0, n_out = 0;
		rc = qd_batches_next(&b, &in, &n_in, err);
		if (rc <= 0)
			break;
		for (size_t i = 0; i < n_in; i++)   /* the hook sees node outputs only */
			if (in[i].name) {
				long *ix = qd_namemap_get(&w->hmap, in[i].name);
				if (ix)
					accumulate(&w->h[*ix], &in[i]);
			}
		rc = qd_engine_run(e, in, n_in, &outs, &n_out, cancel, err);
		w->samples += in && n_in ? in[0].dims[0] : 0;
		qd_tensors_release(in, n_in);
		qd_tensors_release(outs, n_out);
		if (rc < 0) {
			qd_err_wrap(err, "GPTQ calibration failed");
			goto out;
		}
	}
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < w->nh; i++)
		if (w->h[i].rows == 0) {
			rc = qd_err_set(err, QD_EMODEL, w->h[i].name, "GPTQ: tensor '%s' was never computed on the "
					"calibration data", w->h[i].name);
			goto out;
		}
	json_object_set_new(w->pc->stats, "calibration",
			    json_pack("{s:s, s:I, s:I, s:f}", "method", "Hessian sum X'X", "samples", (json_int_t)w->samples,
				      "hessians", (json_int_t)w->nh, "seconds", qd_now_mono() - t0));
	qd_pass_log(w->pc, QD_LOG_INFO, "%s: %zu Hessians from %lld samples (%.2f s)", algo_name(w->cfg.algo), w->nh,
		    (long long)w->samples, qd_now_mono() - t0);
	rc = 0;
out:
	qd_engine_free(e);
	qd_batches_free(&b);
	qd_dataset_free(ds);
	return rc;
}

/* ---- per weight ---- */

static void hess_full(const struct hess *h, double *H)
{
	int64_t K = h->K;
	for (int64_t i = 0; i < K; i++)
		for (int64_t j = 0; j < K; j++)
			H[i * K + j] = i <= j ? h->H[i * K + j] : h->H[j * K + i];
}

static int quantize_one(struct wo *w, const struct target *t, const float *wf, struct qd_wo_q *q, float **inv_s)
{
	const struct wo_cfg *c = &w->cfg;
	*inv_s = NULL;
	Onnx__NodeProto *n = w->m->proto->graph->node[t->node];
	switch (c->algo) {
	case QD_WO_DEFAULT:
		return qd_wo_quant_default(wf, t->K, t->N, c->bits, t->bs, c->sym, q, w->err);
	case QD_WO_RTN: {
		const json_t *r = n->name ? json_object_get(c->ratios, n->name) : NULL;
		return qd_wo_quant_rtn(wf, t->K, t->N, c->bits, t->bs, c->sym, r ? (float)json_number_value(r) : 1.0f,
				       q, w->err);
	}
	case QD_WO_HQQ:
		return qd_wo_quant_hqq(wf, t->K, t->N, c->bits, t->bs, q, w->err);
	case QD_WO_GPTQ: {
		const struct hess *h = &w->h[t->h];
		int64_t K = t->K;
		double *H = malloc((size_t)(K * K) * sizeof(double) + 1);
		float *wc = malloc((size_t)(K * t->N) * sizeof(float) + 1);
		if (!H || !wc) {
			free(H); free(wc);
			return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		}
		hess_full(h, H);
		memcpy(wc, wf, (size_t)(K * t->N) * sizeof(float));
		struct qd_wo_gptq_opts o = c->g;
		o.bits = c->bits;
		o.sym = c->sym;
		o.group = t->bs;
		o.blocksize = QD_MAX(o.blocksize, t->bs);
		double damp = 0;
		int rc = qd_wo_quant_gptq(wc, H, K, t->N, &o, q, &damp, w->err);
		free(H);
		free(wc);
		if (rc < 0)
			qd_err_wrap(w->err, "GPTQ of node '%s'", qd_node_label(n));
		return rc;
	}
	case QD_WO_AWQ: {
		const struct hess *h = &w->h[t->h];
		double *H = malloc((size_t)(t->K * t->K) * sizeof(double) + 1);
		if (!H)
			return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		hess_full(h, H);
		struct qd_wo_awq_info ai;
		int rc = qd_wo_quant_awq(wf, H, h->rows, t->K, t->N, c->bits, t->bs, c->sym, &c->awq, q, inv_s, &ai,
					 w->err);
		free(H);
		if (rc < 0)
			return rc;
		json_array_append_new(w->awq, json_pack("{s:s, s:f, s:f, s:f, s:f, s:I}", "node", qd_node_label(n),
							"alpha", ai.alpha, "loss_vs_rtn", ai.loss_ratio,
							"scale_loss_vs_rtn", ai.scale_loss_ratio, "clip_mean",
							ai.clip_mean, "clipped_blocks", (json_int_t)ai.clipped));
		return 0;
	}
	}
	return qd_err_set(w->err, QD_EINTERNAL, NULL, "unknown algorithm");
}

/* DEFAULT, RTN and HQQ quantize each block of bs values along K on its own: the weight is
 * read a band of rows at a time (one contiguous read of about 4 MiB, whole blocks) and the
 * band's blocks go straight into the weight's result, so the float weight is never whole
 * in memory (nor its transposed copy) and the codes are those of one whole-weight call. */
#define QD_WO_BAND_BYTES ((int64_t)4 << 20)
static int quantize_banded(struct wo *w, const struct target *t, const Onnx__TensorProto *bt, struct qd_wo_q *q)
{
	int64_t K = t->K, N = t->N, bs = t->bs;
	int64_t rows = bs >= K ? K : QD_MIN(K, QD_MAX((int64_t)1, QD_WO_BAND_BYTES / (bs * N * 4)) * bs);
	int64_t kb = (K + bs - 1) / bs;
	float *band = malloc((size_t)(rows * N) * sizeof(float) + 1);
	memset(q, 0, sizeof *q);
	*q = (struct qd_wo_q){ .K = K, .N = N, .bs = bs, .kb = kb, .bits = w->cfg.bits };
	q->q = malloc((size_t)(N * K) + 1);
	q->scale = malloc((size_t)(N * kb) * sizeof(float) + 1);
	int rc = band && q->q && q->scale ? 0 : qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
	for (int64_t r0 = 0; rc == 0 && r0 < K; r0 += rows) {
		int64_t r1 = QD_MIN(K, r0 + rows), j0 = r0 / bs;
		if ((rc = qd_model_tensor_rows(w->m, bt, r0, r1, band, w->err)) < 0)
			break;
		struct target bt_ = *t;
		bt_.K = r1 - r0;
		struct qd_wo_q b;
		float *inv_s = NULL;
		if ((rc = quantize_one(w, &bt_, band, &b, &inv_s)) < 0)
			break;
		if (b.zp && !q->zp && !(q->zp = malloc((size_t)(N * kb) + 1)))
			rc = qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		if (b.zpf && !q->zpf && !(q->zpf = malloc((size_t)(N * kb) * sizeof(float) + 1)))
			rc = qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		for (int64_t n = 0; rc == 0 && n < N; n++) {
			memcpy(q->q + n * K + r0, b.q + n * b.K, (size_t)b.K);
			memcpy(q->scale + n * kb + j0, b.scale + n * b.kb, (size_t)b.kb * sizeof(float));
			if (b.zp)
				memcpy(q->zp + n * kb + j0, b.zp + n * b.kb, (size_t)b.kb);
			if (b.zpf)
				memcpy(q->zpf + n * kb + j0, b.zpf + n * b.kb, (size_t)b.kb * sizeof(float));
		}
		qd_wo_q_free(&b);
		free(inv_s);
	}
	free(band);
	if (rc < 0)
		qd_wo_q_free(q);
	return rc;
}

struct packed {
	char *bq, *sc, *zp;   /* initializer names (new) */
	char *inv;            /* AWQ: 1/s per input channel, or NULL */
};

/* Pack q into MatMulNBits' layout (qd_wo_pack; q is freed on failure) and name the
 * initializers of weight b: <b>_Q<bits>, <b>_scales, <b>_zero_points (when Z). */
static int pack_named(struct wo *w, struct qd_graph_index *ix, struct qd_wo_q *q, const char *b, uint8_t zp_fill,
		      struct packed *p, uint8_t **B, size_t *nb, uint8_t **Z, size_t *nz)
{
	if (qd_wo_pack(q, B, nb, Z, nz, zp_fill) < 0) {
		qd_wo_q_free(q);
		return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
	}
	char base[512];
	snprintf(base, sizeof base, "%s_Q%d", b, w->cfg.bits);
	p->bq = qd_index_unique_name(ix, base);
	snprintf(base, sizeof base, "%s_scales", b);
	p->sc = qd_index_unique_name(ix, base);
	if (*Z) {
		snprintf(base, sizeof base, "%s_zero_points", b);
		p->zp = qd_index_unique_name(ix, base);
	}
	return 0;
}

/* Add the packed weight's initializers (tz may be NULL when there are no zero points);
 * on failure the ones not added are freed. */
static int add_packed(struct wo *w, const struct packed *p, Onnx__TensorProto *tb, Onnx__TensorProto *ts,
		      Onnx__TensorProto *tz)
{
	Onnx__TensorProto *ti[3] = {tb, ts, tz};
	bool ok = tb && ts && (!p->zp || tz);
	for (size_t k = 0; k < 3; k++) {
		if (ok && ti[k] && qd_graph_add_initializer(w->m->proto->graph, ti[k]) < 0)
			ok = false;
		else if (ok)
			ti[k] = NULL;   /* the graph owns it */
	}
	if (ok)
		return 0;
	for (size_t k = 0; k < 3; k++)
		qd_tensor_free(ti[k]);
	return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
}

static int rewrite_one(struct wo *w, struct qd_graph_index *ix, const struct target *t, struct qd_namemap *done,
		       struct packed *pk, size_t *npk)
{
	Onnx__GraphProto *g = w->m->proto->graph;
	Onnx__NodeProto *n = g->node[t->node];
	const struct wo_cfg *c = &w->cfg;
	long *prev = qd_namemap_get(done, t->b);
	struct packed *p;
	int rc;
	if (prev) {
		p = &pk[*prev];   /* B shared by several MatMuls: quantized once */
	} else {
		Onnx__TensorProto *bt = qd_index_initializer(ix, t->b);
		struct qd_wo_q q;
		float *inv_s = NULL;
		if (c->algo == QD_WO_DEFAULT || c->algo == QD_WO_RTN || c->algo == QD_WO_HQQ) {
			rc = quantize_banded(w, t, bt, &q);
		} else {
			float *wf = NULL;
			int64_t cnt = 0;
			if ((rc = qd_model_tensor_to_float(w->m, bt, &wf, &cnt, w->err)) < 0)
				return rc;
			rc = quantize_one(w, t, wf, &q, &inv_s);
			free(wf);
		}
		if (rc < 0)
			return rc;
		p = &pk[*npk];
		if (inv_s) {
			char base[512];
			snprintf(base, sizeof base, "%s_awq_inv_scale", t->b);
			p->inv = qd_index_unique_name(ix, base);
			int64_t dk[1] = {t->K};
			Onnx__TensorProto *ti = p->inv ? qd_tensor_new(p->inv, QD_DT_FLOAT, dk, 1, inv_s,
								       (size_t)t->K * sizeof(float)) : NULL;
			free(inv_s);
			if (!ti || qd_graph_add_initializer(g, ti) < 0) {
				qd_tensor_free(ti);
				qd_wo_q_free(&q);
				return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
			}
		}
		uint8_t *B = NULL, *Z = NULL;
		size_t nb = 0, nz = 0;
		if ((rc = pack_named(w, ix, &q, t->b, c->algo == QD_WO_RTN ? 0x88 : 0, p, &B, &nb, &Z, &nz)) < 0)
			return rc;
		int64_t kb = q.kb, blob = t->bs * c->bits / 8;
		int64_t db[3] = {t->N, kb, blob}, ds[1] = {t->N * kb}, dz[1] = {q.zpf ? t->N * kb : (int64_t)nz};
		Onnx__TensorProto *tb = p->bq ? qd_tensor_new(p->bq, QD_DT_UINT8, db, 3, B, nb) : NULL;
		Onnx__TensorProto *ts = p->sc ? qd_tensor_new(p->sc, QD_DT_FLOAT, ds, 1, q.scale,
							      (size_t)(t->N * kb) * sizeof(float)) : NULL;
		Onnx__TensorProto *tz = Z && p->zp ? qd_tensor_new(p->zp, q.zpf ? QD_DT_FLOAT : QD_DT_UINT8, dz, 1, Z, nz)
						   : NULL;
		free(B);
		free(Z);
		qd_wo_q_free(&q);
		if ((rc = add_packed(w, p, tb, ts, tz)) < 0)
			return rc;
		if (qd_namemap_put(done, t->b, (long)*npk) < 0)
			return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		(*npk)++;
	}
	const char *in[4] = {t->a, p->bq, p->sc, p->zp};
	char name[512];
	char *scaled = NULL;
	if (p->inv) {
		/* AWQ: the input is scaled by 1/s (B holds diag(s) W); the Mul is added at the end
		 * of the node list and the graph sorted afterwards */
		snprintf(name, sizeof name, "%s_awq_scaled", t->a);
		scaled = qd_index_unique_name(ix, name);
		snprintf(name, sizeof name, "%s_awq_Mul", n->name && n->name[0] ? n->name : n->output[0]);
		const char *mi[2] = {t->a, p->inv};
		Onnx__NodeProto *mul = scaled ? qd_node_new("Mul", NULL, name, mi, 2, (const char *const *)&scaled, 1) : NULL;
		if (!mul || qd_graph_add_node(g, mul) < 0) {
			qd_node_free(mul);
			free(scaled);
			return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		}
		in[0] = scaled;
	}
	snprintf(name, sizeof name, "%s_Q%d", n->name && n->name[0] ? n->name : n->output[0], c->bits);
	Onnx__NodeProto *nn = qd_node_new("MatMulNBits", MS_DOMAIN, name, in, p->zp ? 4 : 3,
					  (const char *const *)n->output, 1);
	free(scaled);
	if (!nn || qd_node_set_attr_int(nn, "K", t->K) < 0 || qd_node_set_attr_int(nn, "N", t->N) < 0 ||
	    qd_node_set_attr_int(nn, "bits", c->bits) < 0 || qd_node_set_attr_int(nn, "block_size", t->bs) < 0 ||
	    (c->accuracy_level > 0 && qd_node_set_attr_int(nn, "accuracy_level", c->accuracy_level) < 0)) {
		qd_node_free(nn);
		return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
	}
	w->old[w->nold++] = n;
	g->node[t->node] = nn;
	qd_pass_count(w->counts, "MatMul");
	return 0;
}

/* The DEFAULT quantization of an embedding table [V, H] as MatMulNBits' B [H, V] (row v of
 * the table is column v of B; blocks run along H inside a row): the table is read a band
 * of whole rows at a time (about 4 MiB), each band transposed and quantized into its rows
 * of the result, never the whole float table in memory; the codes are those of one
 * whole-table call. */
static int quantize_table_banded(struct wo *w, const Onnx__TensorProto *dt, int64_t V, int64_t H, struct qd_wo_q *q)
{
	const struct wo_cfg *c = &w->cfg;
	int64_t rows = QD_MIN(V, QD_MAX((int64_t)1, QD_WO_BAND_BYTES / (H * 4)));
	int64_t kb = (H + c->bs - 1) / c->bs;
	float *band = malloc((size_t)(rows * H) * sizeof(float) + 1);
	float *bt = malloc((size_t)(rows * H) * sizeof(float) + 1);
	*q = (struct qd_wo_q){ .K = H, .N = V, .bs = c->bs, .kb = kb, .bits = c->bits };
	q->q = malloc((size_t)(V * H) + 1);
	q->scale = malloc((size_t)(V * kb) * sizeof(float) + 1);
	if (!c->sym)
		q->zp = malloc((size_t)(V * kb) + 1);
	int rc = band && bt && q->q && q->scale && (c->sym || q->zp) ? 0
		 : qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
	for (int64_t v0 = 0; rc == 0 && v0 < V; v0 += rows) {
		int64_t v1 = QD_MIN(V, v0 + rows), nv = v1 - v0;
		if ((rc = qd_model_tensor_rows(w->m, dt, v0, v1, band, w->err)) < 0)
			break;
		for (int64_t v = 0; v < nv; v++)     /* row v of the band = column v of B [H, nv] */
			for (int64_t h = 0; h < H; h++)
				bt[h * nv + v] = band[v * H + h];
		struct qd_wo_q b;
		if ((rc = qd_wo_quant_default(bt, H, nv, c->bits, c->bs, c->sym, &b, w->err)) < 0)
			break;
		memcpy(q->q + v0 * H, b.q, (size_t)(nv * H));
		memcpy(q->scale + v0 * kb, b.scale, (size_t)(nv * kb) * sizeof(float));
		if (b.zp && q->zp)
			memcpy(q->zp + v0 * kb, b.zp, (size_t)(nv * kb));
		qd_wo_q_free(&b);
	}
	free(band);
	free(bt);
	if (rc < 0)
		qd_wo_q_free(q);
	return rc;
}

/* Gather → com.microsoft.GatherBlockQuantized in its uint8 form (MatMulNBits' packing:
 * each row of the table is a column of MatMulNBits' B, so the DEFAULT quantizer and the
 * packer serve both): data [V, H*bits/8] uint8, scales [V, H/bs], zero points packed
 * [V, ceil(H/bs*bits/8)] when asymmetric (else the implicit 2^(bits-1)). */
static int rewrite_gather(struct wo *w, struct qd_graph_index *ix, const struct target *t, struct qd_namemap *done,
			  struct packed *pk, size_t *npk)
{
	Onnx__GraphProto *g = w->m->proto->graph;
	Onnx__NodeProto *n = g->node[t->node];
	const struct wo_cfg *c = &w->cfg;
	long *prev = qd_namemap_get(done, t->b);
	struct packed *p = prev ? &pk[*prev] : &pk[*npk];
	int rc;
	if (!prev) {
		Onnx__TensorProto *dt = qd_index_initializer(ix, t->b);
		int64_t V = t->N, H = t->K;
		struct qd_wo_q q;
		if ((rc = quantize_table_banded(w, dt, V, H, &q)) < 0)
			return rc;
		uint8_t *B = NULL, *Z = NULL;
		size_t nb = 0, nz = 0;
		if ((rc = pack_named(w, ix, &q, t->b, 0, p, &B, &nb, &Z, &nz)) < 0)
			return rc;
		int64_t kb = q.kb, db[2] = {V, H * c->bits / 8}, ds[2] = {V, kb}, dz[2] = {V, V ? (int64_t)nz / V : 0};
		Onnx__TensorProto *tb = p->bq ? qd_tensor_new(p->bq, QD_DT_UINT8, db, 2, B, nb) : NULL;
		Onnx__TensorProto *ts = p->sc ? qd_tensor_new(p->sc, QD_DT_FLOAT, ds, 2, q.scale,
							      (size_t)(V * kb) * sizeof(float)) : NULL;
		Onnx__TensorProto *tz = Z && p->zp ? qd_tensor_new(p->zp, QD_DT_UINT8, dz, 2, Z, nz) : NULL;
		free(B);
		free(Z);
		qd_wo_q_free(&q);
		if ((rc = add_packed(w, p, tb, ts, tz)) < 0)
			return rc;
		if (qd_namemap_put(done, t->b, (long)*npk) < 0)
			return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
		(*npk)++;
	}
	const char *in[4] = {p->bq, t->a, p->sc, p->zp};
	char name[512];
	snprintf(name, sizeof name, "%s_Q%d", n->name && n->name[0] ? n->name : n->output[0], c->bits);
	Onnx__NodeProto *nn = qd_node_new("GatherBlockQuantized", MS_DOMAIN, name, in, p->zp ? 4 : 3,
					  (const char *const *)n->output, 1);
	if (!nn || qd_node_set_attr_int(nn, "gather_axis", 0) < 0 || qd_node_set_attr_int(nn, "quantize_axis", 1) < 0 ||
	    qd_node_set_attr_int(nn, "block_size", c->bs) < 0 || qd_node_set_attr_int(nn, "bits", c->bits) < 0) {
		qd_node_free(nn);
		return qd_err_set(w->err, QD_ENOMEM, NULL, "out of memory");
	}
	w->old[w->nold++] = n;
	g->node[t->node] = nn;
	qd_pass_count(w->counts, "Gather");
	return 0;
}

static int run_cfg(struct qd_pass_ctx *ctx, struct qd_model *m, const struct wo_cfg *cfg, struct qd_err *err)
{
	struct wo w = { .pc = ctx, .m = m, .err = err, .cfg = *cfg };
	struct qd_graph_index *ix = NULL;
	struct qd_namemap done = { 0 }, gdone = { 0 };
	struct packed *pk = NULL, *gpk = NULL;
	size_t npk = 0, ngpk = 0;
	int64_t wbytes_f = 0;
	double t0 = qd_now_mono();
	w.counts = json_object();
	w.skipped = json_array();
	w.awq = json_array();
	int rc;
	if (!w.counts || !w.skipped || !w.awq) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	if (cfg->gather && cfg->algo != QD_WO_DEFAULT) {
		rc = qd_err_set(err, QD_EUNSUPPORTED, "op_types_to_quantize", "Gather is quantized by the DEFAULT "
				"algorithm only, not %s", algo_name(cfg->algo));
		goto out;
	}
	if ((rc = qd_model_normalize_constants(m, err)) < 0)
		goto out;
	if ((rc = qd_index_build(m->proto->graph, NULL, &ix, err)) < 0)
		goto out;
	if ((rc = collect_targets(&w, ix)) < 0)
		goto out;
	qd_pass_log(ctx, QD_LOG_INFO, "weight-only %s: %d-bit, block_size %lld, %s, %zu MatMul weights and %zu "
		    "Gather tables to quantize", algo_name(cfg->algo), cfg->bits, (long long)cfg->bs,
		    cfg->algo == QD_WO_HQQ ? "asymmetric (float zero points)" : cfg->sym ? "symmetric" : "asymmetric",
		    w.nt, w.ngt);
	if (w.nt && (cfg->algo == QD_WO_GPTQ || cfg->algo == QD_WO_AWQ)) {
		/* the calibration runs the float model in the executor: every weight in memory */
		uint64_t ext = qd_model_external_tensor_bytes(m);
		if (ext) {
			qd_pass_log(ctx, QD_LOG_INFO, "%s runs the float model for its Hessians: reading the %llu bytes "
				    "of external weights into memory", algo_name(cfg->algo), (unsigned long long)ext);
			if ((rc = qd_model_load_external(m, err)) < 0)
				goto out;
		}
		if ((rc = hessian_calibrate(&w)) < 0)
			goto out;
	} else if (qd_model_external_tensor_bytes(m)) {
		qd_pass_log(ctx, QD_LOG_INFO, "weights with external data are read one at a time (%llu bytes stay "
			    "on disk until quantized)", (unsigned long long)qd_model_external_tensor_bytes(m));
	}
	pk = calloc(w.nt + 1, sizeof *pk);
	if (!pk) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < w.nt; i++) {
		if (ctx->hooks && ctx->hooks->cancel && *ctx->hooks->cancel) {
			rc = qd_err_set(err, QD_ECANCELED, NULL, "canceled");
			goto out;
		}
		if (!qd_namemap_get(&done, w.t[i].b))
			wbytes_f += w.t[i].K * w.t[i].N * 4;
		if ((rc = rewrite_one(&w, ix, &w.t[i], &done, pk, &npk)) < 0)
			goto out;
	}
	if (w.ngt && !(gpk = calloc(w.ngt, sizeof *gpk))) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < w.ngt; i++) {
		if (!qd_namemap_get(&gdone, w.gt[i].b))
			wbytes_f += w.gt[i].K * w.gt[i].N * 4;
		if ((rc = rewrite_gather(&w, ix, &w.gt[i], &gdone, gpk, &ngpk)) < 0)
			goto out;
	}
	qd_index_free(ix);
	ix = NULL;
	if ((rc = qd_graph_remove_unused_initializers(m->proto->graph)) < 0) {
		rc = qd_err_set(err, QD_ENOMEM, NULL, "cannot remove unused initializers");
		goto out;
	}
	if (cfg->algo == QD_WO_AWQ && (rc = qd_graph_toposort(m->proto->graph, err)) < 0)
		goto out;
	if ((w.nt || w.ngt) && qd_model_opset(m, MS_DOMAIN) < 1 && (rc = qd_model_set_opset(m, MS_DOMAIN, 1)) < 0) {
		qd_err_set(err, -rc, NULL, "cannot add the com.microsoft opset import");
		goto out;
	}
	if (w.nt == 0 && w.ngt == 0)
		qd_pass_log(ctx, QD_LOG_WARN, "no MatMul or Gather was quantized: the output equals the input model");
	qd_pass_log(ctx, QD_LOG_INFO, "%zu MatMul nodes -> MatMulNBits (%zu weights), %zu Gather nodes -> "
		    "GatherBlockQuantized (%zu tables); %lld float bytes, %.2f s", w.nt, npk, w.ngt, ngpk,
		    (long long)wbytes_f, qd_now_mono() - t0);
	if ((rc = qd_pass_validate_output(m, err)) < 0)
		goto out;
	rc = 0;
out:
	json_object_set_new(ctx->stats, "quantized_nodes", w.counts);
	json_object_set_new(ctx->stats, "skipped_nodes", w.skipped);
	if (cfg->algo == QD_WO_AWQ)
		json_object_set(ctx->stats, "awq", w.awq);
	json_decref(w.awq);
	json_object_set_new(ctx->stats, "weight_only",
			    json_pack("{s:s, s:i, s:I, s:b, s:I, s:I}", "algorithm", algo_name(cfg->algo), "bits", cfg->bits,
				      "block_size", (json_int_t)cfg->bs, "symmetric", cfg->algo != QD_WO_HQQ && cfg->sym,
				      "weights", (json_int_t)(npk + ngpk), "float_weight_bytes", (json_int_t)wbytes_f));
	qd_index_free(ix);
	for (size_t i = 0; i < w.nold; i++)
		qd_node_free(w.old[i]);
	free(w.old);
	qd_namemap_free(&done);
	qd_namemap_free(&w.hmap);
	for (size_t i = 0; i < npk; i++) {
		free(pk[i].bq); free(pk[i].sc); free(pk[i].zp); free(pk[i].inv);
	}
	free(pk);
	for (size_t i = 0; i < ngpk; i++) {
		free(gpk[i].bq); free(gpk[i].sc); free(gpk[i].zp);
	}
	free(gpk);
	qd_namemap_free(&gdone);
	free(w.gt);
	for (size_t i = 0; i < w.nh; i++) {
		free(w.h[i].name);
		free(w.h[i].H);
	}
	free(w.h);
	free(w.t);
	return rc;
}

bool qd_pass_reads_external(const struct qd_pass_vt *vt, const json_t *cfg)
{
	if (!vt || !vt->run)
		return false;
	if (vt->run == qd_pass_run_blockwise_rtn || vt->run == qd_pass_run_hqq || vt->run == qd_pass_run_matmul4)
		return true;
	/* INC's weight_only without tuning runs OnnxMatMulNBits on the model as given (its
	 * Gemm -> MatMul rewrite reads the Gemm weights alone); tuning reloads the float model */
	const char *ap = json_string_value(json_object_get(cfg, "approach"));
	return vt->run == qd_pass_run_inc && ap && !strcmp(ap, "weight_only") &&
	       !json_is_object(json_object_get(cfg, "metric"));
}

/* ---- entry points: each pass type reads its own schema ---- */

static int64_t opt_int(const json_t *o, const char *k, int64_t dflt)
{
	const json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* op_types_to_quantize: null means MatMul only */
static void set_op_types(struct wo_cfg *c, const json_t *ops)
{
	if (!json_is_array(ops)) {
		c->matmul = true;
		c->gather = false;
		return;
	}
	c->matmul = false;
	c->gather = lists_gather(ops);
	size_t i; json_t *x;
	json_array_foreach(ops, i, x)
		c->matmul = c->matmul || (json_is_string(x) && !strcmp(json_string_value(x), "MatMul"));
}

static void common_cfg(struct wo_cfg *c, const json_t *params)
{
	c->bits = (int)opt_int(params, "bits", 4);
	c->bs = opt_int(params, "block_size", 128);
	c->sym = qd_pass_opt_bool(params, "is_symmetric", true);
	c->accuracy_level = opt_int(params, "accuracy_level", 0);
	c->nodes_ex = qd_pass_opt_list(params, "nodes_to_exclude");
	c->nodes_in = qd_pass_opt_list(params, "nodes_to_include");
	c->data_config = json_object_get(params, "data_config");
	const json_t *css = json_object_get(params, "calibration_sampling_size");
	if (json_is_array(css))
		css = json_array_get(css, 0);
	c->calib_limit = json_is_integer(css) ? json_integer_value(css) : 0;
	c->g = (struct qd_wo_gptq_opts){ .percdamp = 0.01, .blocksize = 128, .perchannel = true };
	set_op_types(c, json_object_get(params, "op_types_to_quantize"));
}

int qd_pass_run_blockwise_rtn(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params,
			      struct qd_err *err)
{
	struct wo_cfg c = { .algo = QD_WO_DEFAULT };
	common_cfg(&c, params);
	return run_cfg(ctx, m, &c, err);
}

int qd_pass_run_hqq(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err)
{
	struct wo_cfg c = { .algo = QD_WO_HQQ };
	common_cfg(&c, params);
	c.bits = 4;
	c.sym = false;
	return run_cfg(ctx, m, &c, err);
}

/* OnnxMatMul4Quantizer and OnnxMatMulNBits: algorithm + weight_only_quant_configs (the
 * algorithm's own keys override the pass's, Olive's rule). */
int qd_pass_run_matmul4(struct qd_pass_ctx *ctx, struct qd_model *m, const json_t *params, struct qd_err *err)
{
	struct wo_cfg c = { .algo = QD_WO_DEFAULT };
	common_cfg(&c, params);
	const char *a = json_string_value(json_object_get(params, "algorithm"));
	c.algo = !a || !strcmp(a, "DEFAULT") ? QD_WO_DEFAULT : !strcmp(a, "RTN") ? QD_WO_RTN
		 : !strcmp(a, "HQQ") ? QD_WO_HQQ : !strcmp(a, "GPTQ") ? QD_WO_GPTQ : !strcmp(a, "AWQ") ? QD_WO_AWQ
		 : (enum qd_wo_algo)-1;
	if ((int)c.algo < 0)
		return qd_err_set(err, QD_ENOT_IMPL, "algorithm", "algorithm '%s' is not implemented", a);
	const json_t *woq = json_object_get(params, "weight_only_quant_configs");
	c.bs = opt_int(woq, "block_size", c.bs);
	c.sym = qd_pass_opt_bool(woq, "is_symmetric", c.sym);
	c.accuracy_level = opt_int(woq, "accuracy_level", c.accuracy_level);
	c.bits = (int)opt_int(woq, "bits", c.bits);
	c.ratios = json_object_get(woq, "ratios");
	if (json_object_get(woq, "op_types_to_quantize"))
		set_op_types(&c, json_object_get(woq, "op_types_to_quantize"));
	if (json_is_number(json_object_get(woq, "percdamp")))
		c.g.percdamp = json_number_value(json_object_get(woq, "percdamp"));
	c.g.actorder = qd_pass_opt_bool(woq, "actorder", false);
	c.g.mse = qd_pass_opt_bool(woq, "mse", false);
	c.g.perchannel = qd_pass_opt_bool(woq, "perchannel", true);
	c.awq.auto_scale = qd_pass_opt_bool(woq, "enable_auto_scale", true);
	c.awq.mse_search = qd_pass_opt_bool(woq, "enable_mse_search", true);
	if (c.algo == QD_WO_AWQ && !c.awq.auto_scale && !c.awq.mse_search)
		qd_pass_log(ctx, QD_LOG_INFO, "AWQ with enable_auto_scale and enable_mse_search false: RTN on "
			    "DEFAULT's grid (calibration still runs)");
	if (c.algo == QD_WO_HQQ) {
		if (c.sym)
			qd_pass_log(ctx, QD_LOG_INFO, "HQQ is asymmetric (float zero points): is_symmetric does not "
				    "apply");
		c.sym = false;
	}
	bool calib = c.algo == QD_WO_GPTQ || c.algo == QD_WO_AWQ;
	if (calib && json_is_null(c.data_config))
		return qd_err_set(err, QD_EINVAL, "data_config", "%s needs calibration data (data_config)", algo_name(c.algo));
	if (!calib && !json_is_null(c.data_config) && c.data_config)
		qd_pass_log(ctx, QD_LOG_INFO, "data_config is not used by %s (calibration-free)", algo_name(c.algo));
	return run_cfg(ctx, m, &c, err);
}
