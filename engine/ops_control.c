/* engine/ops_control.c — control flow (If, Loop: bodies run through the engine with
 * outer-scope names visible) and Einsum (general label contraction with ellipsis and
 * broadcasting; implicit and explicit output). */
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include "engine/engine_internal.h"

/* Copy a body output (slot) into out. */
static int take_output(struct qd_ctx *c, int slot, struct qd_tensor *out)
{
	struct qd_slot *s = qd_engine_slot(c->e, slot);
	if (!s->has) return qd_ctx_fail(c, QD_EINTERNAL, "subgraph output '%s' has no value", s->name);
	if (qd_tensor_alloc_raw(out, NULL, s->t.dtype, s->t.ndim, s->t.dims))
		return qd_ctx_fail(c, QD_ENOMEM, "out of memory");
	if (s->t.nbytes) memcpy(out->data, s->t.data, s->t.nbytes);
	return 0;
}

static struct qd_egraph *sub_by_name(struct qd_enode *n, const char *name)
{
	for (int i = 0; i < n->n_sub; i++)
		if (n->sub_attr[i] && !strcmp(n->sub_attr[i], name)) return n->sub[i];
	return NULL;
}

int qd_check_if(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	struct qd_egraph *t = sub_by_name(n, "then_branch"), *e = sub_by_name(n, "else_branch");
	if (!t || !e)
		return qd_err_set(err, QD_EMODEL, n->name, "node '%s' (If): then_branch and else_branch are required", n->name);
	if (t->n_outputs != n->n_out || e->n_outputs != n->n_out)
		return qd_err_set(err, QD_EMODEL, n->name, "node '%s' (If): branches must have %d outputs", n->name, n->n_out);
	return 0;
}

int qd_op_if(struct qd_ctx *c)
{
	const struct qd_tensor *cd = qd_ctx_in(c, 0);
	if (!cd) return -c->err->code;
	if (qd_tensor_count(cd) != 1) return qd_ctx_fail(c, QD_EINVAL, "condition must have one element");
	bool cond = qd_tensor_get_f64(cd, 0) != 0;
	struct qd_egraph *g = sub_by_name(c->n, cond ? "then_branch" : "else_branch");
	if (!g) return qd_ctx_fail(c, QD_EMODEL, "missing branch");
	int rc = qd_ctx_poll(c);
	if (rc) return rc;
	rc = qd_engine_run_graph(c->e, g, c->cancel, c->err);
	for (int i = 0; i < c->n_out && !rc; i++) {
		if (!c->out[i]) continue;
		qd_tensor_release(c->out[i]);
		rc = take_output(c, g->outputs[i], c->out[i]);
	}
	qd_engine_clear_graph(c->e, g);
	return rc;
}

int qd_check_loop(struct qd_enode *n, const int *in_dt, int *out_dt, struct qd_err *err)
{
	struct qd_egraph *b = sub_by_name(n, "body");
	if (!b) return qd_err_set(err, QD_EMODEL, n->name, "node '%s' (Loop): body is required", n->name);
	int nc = n->n_in - 2;
	if (nc < 0 || b->n_inputs != nc + 2 || b->n_outputs < nc + 1 || n->n_out != b->n_outputs - 1)
		return qd_err_set(err, QD_EMODEL, n->name,
				  "node '%s' (Loop): body inputs/outputs do not match the loop's", n->name);
	for (int i = 0; i < nc; i++) out_dt[i] = in_dt[2 + i];
	return 0;
}

int qd_op_loop(struct qd_ctx *c)
{
	struct qd_egraph *b = sub_by_name(c->n, "body");
	if (!b) return qd_ctx_fail(c, QD_EMODEL, "missing body");
	int nc = c->n_in - 2, nscan = b->n_outputs - 1 - nc, rc = 0;
	int64_t max_trip = INT64_MAX;
	bool cond = true;
	if (c->in[0]) {
		if (qd_tensor_count(c->in[0]) != 1) return qd_ctx_fail(c, QD_EINVAL, "M must be a scalar");
		max_trip = qd_tensor_get_i64(c->in[0], 0);
	}
	if (c->in[1]) {
		if (qd_tensor_count(c->in[1]) != 1) return qd_ctx_fail(c, QD_EINVAL, "cond must be a scalar");
		cond = qd_tensor_get_f64(c->in[1], 0) != 0;
	}
	struct qd_tensor *carry = calloc(nc + 1, sizeof(*carry));
	struct qd_tensor **scans = calloc(nscan + 1, sizeof(*scans));
	int64_t iters = 0, cap = 0;
	size_t held = 0;   /* bytes of scan outputs collected so far (count against the limit) */
	if (!carry || !scans) { free(carry); free(scans); return qd_ctx_fail(c, QD_ENOMEM, "out of memory"); }
	for (int i = 0; i < nc; i++) {
		const struct qd_tensor *v = qd_ctx_in(c, 2 + i);
		if (!v) { rc = -c->err->code; goto out; }
		if (qd_tensor_alloc_raw(&carry[i], NULL, v->dtype, v->ndim, v->dims)) { rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory"); goto out; }
		if (v->nbytes) memcpy(carry[i].data, v->data, v->nbytes);
	}
	while (iters < max_trip && cond) {
		if ((rc = qd_ctx_poll(c))) goto out;
		struct qd_tensor it, cd;
		if (qd_tensor_alloc_raw(&it, NULL, QD_DT_INT64, 0, NULL) || qd_tensor_alloc_raw(&cd, NULL, QD_DT_BOOL, 0, NULL)) {
			rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory");
			goto out;
		}
		*(int64_t *)it.data = iters;
		*(uint8_t *)cd.data = 1;
		it.name = strdup(qd_engine_slot(c->e, b->inputs[0])->name);
		cd.name = strdup(qd_engine_slot(c->e, b->inputs[1])->name);
		qd_engine_slot_set(c->e, b->inputs[0], &it);
		qd_engine_slot_set(c->e, b->inputs[1], &cd);
		for (int i = 0; i < nc; i++) {
			carry[i].name = strdup(qd_engine_slot(c->e, b->inputs[2 + i])->name);
			qd_engine_slot_set(c->e, b->inputs[2 + i], &carry[i]);
		}
		if ((rc = qd_engine_run_graph(c->e, b, c->cancel, c->err))) goto out;
		struct qd_tensor co;
		if ((rc = take_output(c, b->outputs[0], &co))) goto out;
		cond = qd_tensor_count(&co) > 0 && qd_tensor_get_f64(&co, 0) != 0;
		qd_tensor_release(&co);
		for (int i = 0; i < nc; i++)
			if ((rc = take_output(c, b->outputs[1 + i], &carry[i]))) goto out;
		if (iters == cap) {
			cap = cap ? cap * 2 : 8;
			if ((rc = qd_ctx_hold(c, (size_t)(cap / 2 + 4) * nscan * sizeof(struct qd_tensor),
					      "the loop's scan outputs")))
				goto out;
			held += (size_t)(cap / 2 + 4) * nscan * sizeof(struct qd_tensor);
			for (int k = 0; k < nscan; k++) {
				struct qd_tensor *ns = realloc(scans[k], cap * sizeof(struct qd_tensor));
				if (!ns) { rc = qd_ctx_fail(c, QD_ENOMEM, "out of memory"); goto out; }
				scans[k] = ns;
			}
		}
		for (int k = 0; k < nscan; k++) memset(&scans[k][iters], 0, sizeof(struct qd_tensor));
		for (int k = 0; k < nscan; k++) {
			struct qd_slot *so = qd_engine_slot(c->e, b->outputs[1 + nc + k]);
			size_t nb = so->has ? so->t.nbytes : 0;
			if ((rc = qd_ctx_hold(c, nb, "the loop's scan outputs"))) { iters++; goto out; }
			held += nb;
			if ((rc = take_output(c, b->outputs[1 + nc + k], &scans[k][iters]))) { iters++; goto out; }
		}
		iters++;
		qd_engine_clear_graph(c->e, b);
	}
	for (int i = 0; i < nc; i++) {
		if (!c->out[i]) continue;
		qd_tensor_release(c->out[i]);
		*c->out[i] = carry[i];
		memset(&carry[i], 0, sizeof(carry[i]));
	}
	for (int k = 0; k < nscan; k++) {
		if (!c->out[nc + k]) continue;
		int64_t od[QD_MAX_DIMS] = { iters };
		int dt = qd_engine_slot(c->e, b->outputs[1 + nc + k])->dt;
		int nd = 1;
		if (iters) {
			const struct qd_tensor *t0 = &scans[k][0];
			if (t0->ndim + 1 > QD_MAX_DIMS) { rc = qd_ctx_fail(c, QD_EUNSUPPORTED, "rank too large"); goto out; }
			dt = t0->dtype;
			nd = t0->ndim + 1;
			memcpy(od + 1, t0->dims, t0->ndim * sizeof(int64_t));
			for (int64_t i = 1; i < iters; i++)
				if (scans[k][i].nbytes != t0->nbytes || scans[k][i].dtype != dt ||
				    scans[k][i].ndim != t0->ndim ||
				    memcmp(scans[k][i].dims, t0->dims, t0->ndim * sizeof(int64_t))) {
					rc = qd_ctx_fail(c, QD_ESHAPE, "scan output %d changes shape across iterations", k);
					goto out;
				}
		}
		struct qd_tensor *y = qd_ctx_out(c, nc + k, dt ? dt : QD_DT_FLOAT, nd, od);
		if (!y) { rc = -c->err->code; goto out; }
		for (int64_t i = 0; i < iters; i++)
			if (scans[k][i].nbytes) memcpy((char *)y->data + i * scans[k][0].nbytes, scans[k][i].data, scans[k][i].nbytes);
	}
out:
	qd_ctx_unhold(c, held);
	qd_engine_clear_graph(c->e, b);
	for (int i = 0; i < nc; i++) qd_tensor_release(&carry[i]);
	free(carry);
	for (int k = 0; k < nscan; k++) {
		for (int64_t i = 0; i < iters && scans[k]; i++) qd_tensor_release(&scans[k][i]);
		free(scans[k]);
	}
	free(scans);
	return rc;
}

/* ---- Einsum ---- */
#define EL_MAX 64   /* 52 letters + ellipsis dims */

static int label_id(char ch)
{
	if (ch >= 'a' && ch <= 'z') return ch - 'a';
	if (ch >= 'A' && ch <= 'Z') return 26 + ch - 'A';
	return -1;
}

struct ein_term { int n; int lab[QD_MAX_DIMS]; };

/* Parses one term; "..." expands to ell labels 52.. right-aligned to `rank`. */
static int parse_term(const char *s, const char *e, int rank, int nell, struct ein_term *t, int *ell_here)
{
	int explicit_n = 0;
	bool has_ell = false;
	for (const char *p = s; p < e; p++) {
		if (*p == '.') { if (p + 2 >= e || p[1] != '.' || p[2] != '.') return -1; has_ell = true; p += 2; continue; }
		if (isspace((unsigned char)*p)) continue;
		if (label_id(*p) < 0) return -1;
		explicit_n++;
	}
	int ne = has_ell ? (rank >= 0 ? rank - explicit_n : nell) : 0;
	if (ne < 0) return -1;
	if (ell_here) *ell_here = ne;
	t->n = 0;
	for (const char *p = s; p < e; p++) {
		if (isspace((unsigned char)*p)) continue;
		if (*p == '.') {
			for (int k = 0; k < ne; k++) {
				if (t->n >= QD_MAX_DIMS) return -1;
				t->lab[t->n++] = 52 + (nell - ne) + k;
			}
			p += 2;
			continue;
		}
		if (t->n >= QD_MAX_DIMS) return -1;
		t->lab[t->n++] = label_id(*p);
	}
	return 0;
}

/* Gathers t (strides st per label) into a dense buffer ordered by labels lab[0..n). */
static void ein_pack(const float *src, const int64_t *lst, const int *lab, int n, const int64_t *size, float *dst)
{
	int64_t idx[EL_MAX] = {0}, cnt = 1, off = 0;
	for (int i = 0; i < n; i++) cnt *= size[lab[i]];
	for (int64_t k = 0; k < cnt; k++) {
		dst[k] = src[off];
		for (int i = n - 1; i >= 0; i--) {
			off += lst[lab[i]];
			if (++idx[i] < size[lab[i]]) break;
			off -= lst[lab[i]] * size[lab[i]];
			idx[i] = 0;
		}
	}
}

/* Two float32 operands whose labels split into batch (A, B, out), m (A, out), n (B, out)
 * and k (A, B): pack to [batch, m, k] x [batch, k, n], one sgemm per batch, unpack. No
 * repeated labels within a term and no broadcast dims. Returns 1 when not applicable. */
static int einsum_gemm(struct qd_ctx *c, const struct ein_term *in, const struct ein_term *out,
		       const int64_t *size, int64_t lst[8][EL_MAX], struct qd_tensor *y)
{
	if (c->n_in != 2 || c->in[0]->dtype != QD_DT_FLOAT) return 1;
	int inA[EL_MAX] = {0}, inB[EL_MAX] = {0}, inO[EL_MAX] = {0};
	for (int k = 0; k < in[0].n; k++) if (inA[in[0].lab[k]]++ || c->in[0]->dims[k] != size[in[0].lab[k]]) return 1;
	for (int k = 0; k < in[1].n; k++) if (inB[in[1].lab[k]]++ || c->in[1]->dims[k] != size[in[1].lab[k]]) return 1;
	for (int k = 0; k < out->n; k++) inO[out->lab[k]]++;
	int bl[EL_MAX], ml[EL_MAX], nl[EL_MAX], kl[EL_MAX], nb = 0, nm = 0, nn = 0, nk = 0;
	int64_t B = 1, M = 1, N = 1, K = 1;
	for (int l = 0; l < EL_MAX; l++) {
		if (!inA[l] && !inB[l]) continue;
		if (inA[l] && inB[l] && inO[l]) { bl[nb++] = l; B *= size[l]; }
		else if (inA[l] && inB[l]) { kl[nk++] = l; K *= size[l]; }
		else if (inA[l] && inO[l]) { ml[nm++] = l; M *= size[l]; }
		else if (inB[l] && inO[l]) { nl[nn++] = l; N *= size[l]; }
		else return 1;   /* summed out of one operand only */
	}
	int la[EL_MAX], lb[EL_MAX], lo[EL_MAX], na = 0, nbb = 0, no = 0;
	for (int i = 0; i < nb; i++) { la[na++] = bl[i]; lb[nbb++] = bl[i]; lo[no++] = bl[i]; }
	for (int i = 0; i < nm; i++) { la[na++] = ml[i]; lo[no++] = ml[i]; }
	for (int i = 0; i < nk; i++) la[na++] = kl[i];
	for (int i = 0; i < nk; i++) lb[nbb++] = kl[i];
	for (int i = 0; i < nn; i++) { lb[nbb++] = nl[i]; lo[no++] = nl[i]; }
	float *pa = malloc((B * M * K + 1) * sizeof(float)), *pb = malloc((B * K * N + 1) * sizeof(float));
	float *pc = malloc((B * M * N + 1) * sizeof(float));
	if (!pa || !pb || !pc) { free(pa); free(pb); free(pc); return qd_ctx_fail(c, QD_ENOMEM, "out of memory"); }
	ein_pack(c->in[0]->data, lst[0], la, na, size, pa);
	ein_pack(c->in[1]->data, lst[1], lb, nbb, size, pb);
	for (int64_t b = 0; b < B; b++)
		qd_gemm_f32(false, false, M, N, K, 1.0f, pa + b * M * K, K, pb + b * K * N, N, 0.0f, pc + b * M * N, N);
	/* unpack: strides of the packed [batch, m, n] layout per label, walked in output order */
	int64_t pst[EL_MAX] = {0}, s = 1;
	for (int i = no - 1; i >= 0; i--) { pst[lo[i]] = s; s *= size[lo[i]]; }
	ein_pack(pc, pst, out->lab, out->n, size, y->data);
	free(pa); free(pb); free(pc);
	return 0;
}

int qd_op_einsum(struct qd_ctx *c)
{
	const char *eq = qd_node_attr_string(c->n->proto, "equation", NULL);
	if (!eq) return qd_ctx_fail(c, QD_EINVAL, "equation is required");
	const char *arrow = strstr(eq, "->");
	const char *lhs_end = arrow ? arrow : eq + strlen(eq);
	int nin = c->n_in;
	if (nin < 1 || nin > 8) return qd_ctx_fail(c, QD_EUNSUPPORTED, "einsum with %d inputs", nin);
	struct ein_term in[8], out;
	const char *s = eq;
	int nell = 0;
	/* first pass: ellipsis rank */
	for (int i = 0; i < nin; i++) {
		const struct qd_tensor *x = qd_ctx_in(c, i);
		if (!x) return -c->err->code;
		const char *e = memchr(s, ',', lhs_end - s);
		if (!e) e = lhs_end;
		if (i < nin - 1 && e == lhs_end) return qd_ctx_fail(c, QD_EINVAL, "equation has fewer terms than inputs");
		int ne = 0;
		if (parse_term(s, e, x->ndim, 0, &in[i], &ne)) return qd_ctx_fail(c, QD_EINVAL, "bad equation '%s'", eq);
		nell = QD_MAX(nell, ne);
		s = e + 1;
	}
	s = eq;
	int64_t size[EL_MAX];
	int count[EL_MAX] = {0};
	for (int l = 0; l < EL_MAX; l++) size[l] = -1;
	for (int i = 0; i < nin; i++) {
		const struct qd_tensor *x = c->in[i];
		const char *e = memchr(s, ',', lhs_end - s);
		if (!e) e = lhs_end;
		parse_term(s, e, x->ndim, nell, &in[i], NULL);
		if (in[i].n != x->ndim) return qd_ctx_fail(c, QD_EINVAL, "term %d has %d labels for rank %d", i, in[i].n, x->ndim);
		for (int k = 0; k < in[i].n; k++) {
			int l = in[i].lab[k];
			int64_t d = x->dims[k];
			count[l]++;
			if (size[l] < 0 || size[l] == 1) size[l] = d;
			else if (d != size[l] && d != 1) return qd_ctx_fail(c, QD_ESHAPE, "label size mismatch (%lld vs %lld)", (long long)d, (long long)size[l]);
		}
		s = e + 1;
	}
	if (arrow) {
		if (parse_term(arrow + 2, arrow + 2 + strlen(arrow + 2), -1, nell, &out, NULL))
			return qd_ctx_fail(c, QD_EINVAL, "bad output in '%s'", eq);
		for (int k = 0; k < out.n; k++) {
			if (size[out.lab[k]] < 0) return qd_ctx_fail(c, QD_EINVAL, "output label not in inputs");
			for (int j = 0; j < k; j++)
				if (out.lab[j] == out.lab[k]) return qd_ctx_fail(c, QD_EINVAL, "output label repeated in '%s'", eq);
		}
	} else {
		out.n = 0;
		for (int l = 52; l < 52 + nell; l++) out.lab[out.n++] = l;
		for (int l = 26; l < 52; l++) if (count[l] == 1 && out.n < QD_MAX_DIMS) out.lab[out.n++] = l;  /* A-Z sort before a-z */
		for (int l = 0; l < 26; l++) if (count[l] == 1 && out.n < QD_MAX_DIMS) out.lab[out.n++] = l;
	}
	bool is_out[EL_MAX] = {0};
	int64_t od[QD_MAX_DIMS];
	for (int k = 0; k < out.n; k++) { is_out[out.lab[k]] = true; od[k] = size[out.lab[k]]; }
	int red[EL_MAX], nred = 0;
	for (int l = 0; l < EL_MAX; l++) if (size[l] >= 0 && !is_out[l]) red[nred++] = l;
	int dt = c->in[0]->dtype;
	for (int i = 1; i < nin; i++) if (c->in[i]->dtype != dt) return qd_ctx_fail(c, QD_EINVAL, "input dtypes differ");
	struct qd_tensor *y = qd_ctx_out(c, 0, dt, out.n, od);
	if (!y) return -c->err->code;
	/* strides per label per input (0 where broadcast) */
	int64_t lst[8][EL_MAX];
	memset(lst, 0, sizeof(lst));
	for (int i = 0; i < nin; i++) {
		int64_t st[QD_MAX_DIMS];
		qd_dims_strides(c->in[i]->ndim, c->in[i]->dims, st);
		for (int k = 0; k < in[i].n; k++)
			if (c->in[i]->dims[k] != 1 || size[in[i].lab[k]] == 1) lst[i][in[i].lab[k]] += st[k];
	}
	int g = einsum_gemm(c, in, &out, size, lst, y);
	if (g <= 0) return g;
	int64_t nout = qd_tensor_count(y), nr = 1;
	for (int r = 0; r < nred; r++) nr *= size[red[r]];
	int64_t oidx[QD_MAX_DIMS] = {0};
	for (int64_t o = 0; o < nout; o++) {
		int64_t base[8] = {0};
		for (int i = 0; i < nin; i++)
			for (int k = 0; k < out.n; k++) base[i] += oidx[k] * lst[i][out.lab[k]];
		double acc = 0;
		int64_t ridx[EL_MAX] = {0};
		for (int64_t r = 0; r < nr; r++) {
			double p = 1;
			for (int i = 0; i < nin; i++) {
				int64_t off = base[i];
				for (int q = 0; q < nred; q++) off += ridx[q] * lst[i][red[q]];
				p *= qd_tensor_get_f64(c->in[i], off);
			}
			acc += p;
			for (int q = nred - 1; q >= 0; q--) { if (++ridx[q] < size[red[q]]) break; ridx[q] = 0; }
		}
		qd_tensor_set_f64(y, o, acc);
		for (int k = out.n - 1; k >= 0; k--) { if (++oidx[k] < od[k]) break; oidx[k] = 0; }
	}
	return 0;
}
