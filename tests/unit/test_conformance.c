/* ONNX backend node tests (libonnx-testdata) through the engine: every test whose nodes
 * the engine claims at load (op, opset, dtypes, attributes) must reproduce every reference
 * output (float: |a-b| <= 1e-7 + 1e-3*|b|, the atol/rtol of onnx's backend test runner,
 * onnx/backend/test/loader; ints/bools exact; a missing or extra output fails).
 * Unclaimed tests are skipped with the load error as the reason, and the skips are pinned:
 * tests/conformance/expected_skips.txt lists each skipped test with a reason and the pass
 * count; a skip not listed, a listed test that now runs, a listed test that is not in the
 * data, or another pass count is a failure (so an op dropped from the op table is caught).
 * QD_CONFORMANCE_DIR overrides the data dir; QD_CONFORMANCE_FILTER runs names containing it
 * (the pins are checked only without a filter); QD_CONFORMANCE_SKIPS names the pin file.
 * The suite runs from tests/conformance/run_conformance.sh (which sets QD_CONFORMANCE=1);
 * run as a plain unit binary it only says so, so `make test` counts it once. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/stat.h>
#include "qd_test.h"
#include "engine/engine_internal.h"

static int read_pb(const char *path, struct qd_tensor *t, struct qd_err *err)
{
	struct qd_buf b = {0};
	int rc = qd_file_read(path, &b, err);
	if (rc) return rc;
	Onnx__TensorProto *p = onnx__tensor_proto__unpack(NULL, b.len, b.data);
	qd_buf_free(&b);
	if (!p) return qd_err_set(err, QD_EPARSE, path, "'%s' is not a TensorProto", path);
	rc = qd_tensor_from_proto(p, t, err);
	onnx__tensor_proto__free_unpacked(p, NULL);
	return rc;
}

#define CONF_ATOL 1e-7
#define CONF_RTOL 1e-3

/* worst |a-b| / (atol + rtol*|b|) over every compared float element (printed at the end) */
static double worst_ratio;
static char worst_where[400];
static const char *cur_test = "";

static bool is_float(int dt)
{
	return dt == QD_DT_FLOAT || dt == QD_DT_DOUBLE || dt == QD_DT_FLOAT16 || dt == QD_DT_BFLOAT16;
}

static double get_f(const struct qd_tensor *t, int64_t k)
{
	return qd_tensor_get_f64(t, k);   /* float, double, float16, bfloat16 */
}

/* Compares; on mismatch writes a reason. */
static bool compare(const struct qd_tensor *got, const struct qd_tensor *want, char *why, size_t wl)
{
	if (got->dtype != want->dtype) {
		snprintf(why, wl, "dtype %s, expected %s", qd_dtype_name(got->dtype), qd_dtype_name(want->dtype));
		return false;
	}
	if (got->ndim != want->ndim || memcmp(got->dims, want->dims, got->ndim * sizeof(int64_t))) {
		snprintf(why, wl, "shape rank %d [%lld...], expected rank %d [%lld...]", got->ndim,
			 got->ndim ? (long long)got->dims[0] : 0LL, want->ndim, want->ndim ? (long long)want->dims[0] : 0LL);
		return false;
	}
	int64_t n = qd_tensor_count(want);
	if (is_float(want->dtype)) {
		for (int64_t k = 0; k < n; k++) {
			double a = get_f(got, k), b = get_f(want, k);
			if (isnan(a) && isnan(b)) continue;
			if (isinf(b) && a == b) continue;
			double tol = CONF_ATOL + CONF_RTOL * fabs(b);
			if (isfinite(a) && isfinite(b) && fabs(a - b) / tol > worst_ratio) {
				worst_ratio = fabs(a - b) / tol;
				snprintf(worst_where, sizeof(worst_where), "%s element %lld: %.9g vs %.9g",
					 cur_test, (long long)k, a, b);
			}
			if (!(fabs(a - b) <= tol)) {
				snprintf(why, wl, "element %lld: %.9g, expected %.9g", (long long)k, a, b);
				return false;
			}
		}
		return true;
	}
	if (memcmp(got->data, want->data, want->nbytes)) {
		snprintf(why, wl, "integer/bool values differ");
		return false;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one test dir: 1 pass, 0 skip, -1 fail. */
static int run_test(const char *dir, const char *name)
{
	char path[1200], why[1200] = "";
	struct qd_err err = {0};
	struct qd_model *m = NULL;
	struct qd_engine *e = NULL;
	int result = 1, nds = 0;
	cur_test = name;
	snprintf(path, sizeof(path), "%s/model.onnx", dir);
	if (qd_model_load_file(path, NULL, &m, &err)) {
		printf("skip %s: cannot load model: %s\n", name, err.msg);
		return 0;
	}
	struct qd_engine_opts o = { .threads = 1 };
	if (qd_engine_load(m, &o, &e, &err)) {
		if (err.code == QD_EUNSUPPORTED) {
			printf("skip %s: %s\n", name, err.msg);
			qd_model_free(m);
			return 0;
		}
		printf("FAIL %s: load: %s\n", name, err.msg);
		qd_model_free(m);
		return -1;
	}
	for (int ds = 0; ds < 100 && result == 1; ds++) {
		char dsd[1300];
		struct stat st;
		snprintf(dsd, sizeof(dsd), "%s/test_data_set_%d", dir, ds);
		if (stat(dsd, &st)) break;
		nds++;
		size_t nin = qd_engine_n_inputs(e), nout = 0;
		struct qd_tensor *in = calloc(nin + 1, sizeof(*in)), *out = NULL;
		size_t got_in = 0;
		for (size_t i = 0; i < nin; i++) {
			char p[1400];
			snprintf(p, sizeof(p), "%s/input_%zu.pb", dsd, i);
			if (stat(p, &st)) break;
			if (read_pb(p, &in[i], &err)) { snprintf(why, sizeof(why), "input %zu: %s", i, err.msg); result = -1; break; }
			/* bind by position: the graph's i-th non-initializer input */
			free(in[i].name);
			in[i].name = strdup(qd_engine_input(e, i)->name);
			got_in++;
		}
		if (result == 1 && qd_engine_run(e, in, got_in, &out, &nout, NULL, &err)) {
			snprintf(why, sizeof(why), "run: %s", err.msg);
			result = -1;
		}
		size_t nref = 0;
		for (;; nref++) {
			char p[1400];
			snprintf(p, sizeof(p), "%s/output_%zu.pb", dsd, nref);
			if (stat(p, &st)) break;
		}
		if (result == 1 && nref != nout) {
			snprintf(why, sizeof(why), "data set %d: %zu outputs, %zu reference outputs", ds, nout, nref);
			result = -1;
		}
		for (size_t k = 0; result == 1 && k < nout; k++) {
			char p[1400];
			struct qd_tensor want;
			snprintf(p, sizeof(p), "%s/output_%zu.pb", dsd, k);
			if (read_pb(p, &want, &err)) { snprintf(why, sizeof(why), "output %zu: %s", k, err.msg); result = -1; break; }
			char w2[300];
			if (!compare(&out[k], &want, w2, sizeof(w2))) {
				snprintf(why, sizeof(why), "data set %d output %zu ('%s'): %s", ds, k, out[k].name, w2);
				result = -1;
			}
			qd_tensor_release(&want);
		}
		qd_tensors_release(out, nout);
		qd_tensors_release(in, got_in);
	}
	if (result == 1 && !nds) {
		snprintf(why, sizeof(why), "no test_data_set_0");
		result = -1;
	}
	if (result < 0) printf("FAIL %s: %s\n", name, why);
	qd_engine_free(e);
	qd_model_free(m);
	return result;
}

/* The pin file: "passed N" once, then one "test_name reason..." line per expected skip. */
struct pins {
	char **name, **reason;
	size_t n;
	bool *seen;
	long passed;
};

static int load_pins(const char *path, struct pins *p)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		printf("FAIL cannot open skip list '%s'\n", path);
		return -1;
	}
	char line[1024];
	int rc = 0, ln = 0;
	p->passed = -1;
	while (fgets(line, sizeof(line), f)) {
		ln++;
		line[strcspn(line, "\r\n")] = 0;
		char *s = line + strspn(line, " \t");
		if (!*s || *s == '#') continue;
		size_t w = strcspn(s, " \t");
		char *r = s + w + strspn(s + w, " \t");
		s[w] = 0;
		if (!strcmp(s, "passed")) {
			p->passed = strtol(r, NULL, 10);
			continue;
		}
		if (strncmp(s, "test_", 5) || !*r) {
			printf("FAIL %s:%d: expected 'test_name reason' or 'passed N'\n", path, ln);
			rc = -1;
			continue;
		}
		p->name = realloc(p->name, (p->n + 1) * sizeof(char *));
		p->reason = realloc(p->reason, (p->n + 1) * sizeof(char *));
		p->name[p->n] = strdup(s);
		p->reason[p->n] = strdup(r);
		p->n++;
	}
	fclose(f);
	if (p->passed < 0) {
		printf("FAIL %s: no 'passed N' line\n", path);
		rc = -1;
	}
	p->seen = calloc(p->n + 1, sizeof(bool));
	return rc;
}

static ssize_t pin_find(const struct pins *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->name[i], name)) return (ssize_t)i;
	return -1;
}

int main(void)
{
	if (!getenv("QD_CONFORMANCE")) {
		printf("conformance: run by tests/conformance/run_conformance.sh: 0 passed, 0 failed\n");
		return 0;
	}
	const char *root = getenv("QD_CONFORMANCE_DIR");
	const char *filter = getenv("QD_CONFORMANCE_FILTER");
	if (!root) root = "/usr/share/libonnx-testdata/data/node";
	DIR *d = opendir(root);
	int pass = 0, fail = 0, skip = 0;
	if (!d) {
		printf("conformance: cannot open '%s'\n", root);
		printf("conformance: 0 passed, 1 failed, 0 skipped\n");
		return 1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.') continue;
		if (filter && !strstr(de->d_name, filter)) continue;
		names = realloc(names, (n + 1) * sizeof(char *));
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(char *), cmp_str);
	struct pins pins = {0};
	const char *pin_path = getenv("QD_CONFORMANCE_SKIPS");
	if (!pin_path) pin_path = "tests/conformance/expected_skips.txt";
	if (!filter && load_pins(pin_path, &pins)) fail++;
	for (size_t i = 0; i < n; i++) {
		char dir[1100];
		snprintf(dir, sizeof(dir), "%s/%s", root, names[i]);
		int r = run_test(dir, names[i]);
		if (r > 0) pass++; else if (r < 0) fail++; else skip++;
		ssize_t k = filter ? -1 : pin_find(&pins, names[i]);
		if (k >= 0) pins.seen[k] = true;
		if (!filter && r == 0 && k < 0) {
			printf("FAIL %s: skipped but not in %s (an op dropped from the op table?)\n", names[i], pin_path);
			fail++;
		}
		if (r > 0 && k >= 0) {
			printf("FAIL %s: passes now but %s pins it as skipped (%s): remove the line and raise 'passed'\n",
			       names[i], pin_path, pins.reason[k]);
			fail++;
		}
		free(names[i]);
	}
	free(names);
	for (size_t k = 0; k < pins.n; k++) {
		if (!pins.seen[k]) {
			printf("FAIL %s: pinned in %s but not in '%s'\n", pins.name[k], pin_path, root);
			fail++;
		}
		free(pins.name[k]);
		free(pins.reason[k]);
	}
	if (!filter && pins.passed >= 0 && pass != pins.passed) {
		printf("FAIL pass count %d, %s pins %ld\n", pass, pin_path, pins.passed);
		fail++;
	}
	free(pins.name);
	free(pins.reason);
	free(pins.seen);
	printf("conformance: worst float error %.3g of the tolerance (%s)\n", worst_ratio, worst_where);
	printf("conformance: %d passed, %d failed, %d skipped\n", pass, fail, skip);
	return fail ? 1 : 0;
}
