/* Minimal unit-test harness: CHECK() records a failure and goes on; each test binary
 * ends with qd_test_done(), which prints "N passed, N failed" and returns the exit code. */
#ifndef QD_TEST_H
#define QD_TEST_H
#include <stdio.h>
#include <string.h>
#include <math.h>

static int qd_t_pass, qd_t_fail;

#define CHECK(cond) do { if (cond) qd_t_pass++; else { qd_t_fail++; \
	fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { if (cond) qd_t_pass++; else { qd_t_fail++; \
	fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
	CHECKF(_a == _b, "%lld != %lld", _a, _b); } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); \
	CHECKF(fabs(_a - _b) <= (tol), "%.9g vs %.9g (tol %g)", _a, _b, (double)(tol)); } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); \
	CHECKF(_a && _b && !strcmp(_a, _b), "'%s' != '%s'", _a ? _a : "(null)", _b ? _b : "(null)"); } while (0)

static inline int qd_test_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, qd_t_pass, qd_t_fail);
	return qd_t_fail ? 1 : 0;
}
#endif
