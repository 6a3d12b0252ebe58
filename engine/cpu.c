/* engine/cpu.c — the float GEMM kernels on any x86-64 CPU.
 *
 * DESIGN: float MatMul / Gemm / Conv go through OpenBLAS (Debian's, built DYNAMIC_ARCH).
 * OpenBLAS picks its kernels in a library constructor, before main, from a table of CPU
 * models; a CPU newer than that table (a current Xeon reported as a generic "Intel(R)
 * Xeon(R) Processor") falls back to the SSE3 "Prescott" kernels, 2-4x slower. ONNX
 * Runtime's MLAS picks by CPUID feature bits instead; we do the same, in front of OpenBLAS:
 * qd_blas_select, first thing in main, reads the feature bits (CPUID + XGETBV, so a feature
 * the OS does not save is not used) and compares the best OpenBLAS core they allow
 * (AVX-512 → SkylakeX, or Cooperlake with AVX512-BF16; AVX2+FMA → Haswell; AVX →
 * Sandybridge) with the core OpenBLAS chose. When OpenBLAS chose a weaker class, the
 * process re-executes itself once with OPENBLAS_CORETYPE set (the only moment the choice
 * can be made: the constructor already ran), and marks it with QUANTD_BLAS_CHOSEN so
 * reports can say who chose. A user's OPENBLAS_CORETYPE always wins. Alternatives
 * considered: patching OpenBLAS's internal `gotoblas` table pointer (its layout is
 * private and changes between releases), BLIS (another dependency for what an
 * environment variable does), our own SGEMM micro-kernels (the integer GEMM has its own
 * in engine/qgemm.c; float stays with a well-kept BLAS).
 * Not re-executed: under valgrind (it emulates the CPU; the child would run without it)
 * and when /proc/self/exe cannot be executed. Children of `quantd serve` inherit the
 * environment and never re-execute. */
#include "engine/engine.h"
#include "engine/qgemm.h"

#include <cpuid.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

char *openblas_get_corename(void);
char *openblas_get_config(void);

struct qd_cpu_features {
	bool avx, fma, avx2, avx512, avx512_bf16, avx512_vnni;
};

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static struct qd_cpu_features cpu_features(void)
{
	struct qd_cpu_features f = { 0 };
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return f;
	bool osxsave = c & (1u << 27);
	uint64_t xcr0 = osxsave ? xgetbv0() : 0;
	bool ymm = (xcr0 & 0x6) == 0x6;           /* SSE + AVX state saved by the OS */
	bool zmm = ymm && (xcr0 & 0xe0) == 0xe0;  /* opmask + ZMM state */
	f.avx = ymm && (c & (1u << 28));
	f.fma = f.avx && (c & (1u << 12));
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
		f.avx2 = f.avx && (b & (1u << 5));
		/* SkylakeX's kernels use F, DQ, CD, BW and VL */
		uint32_t need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
		f.avx512 = zmm && (b & need) == need;
		f.avx512_vnni = f.avx512 && (c & (1u << 11));
		if (f.avx512 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
			f.avx512_bf16 = a & (1u << 5);
	}
	return f;
}

/* Capability class of an OpenBLAS x86-64 core name: 3 AVX-512, 2 AVX2+FMA, 1 AVX, 0 less
 * (Prescott, Core2, Nehalem, Atom, ... and names this table does not know). */
int qd_blas_core_class(const char *core)
{
	static const char *const c3[] = { "SkylakeX", "Cooperlake", "SapphireRapids" };
	static const char *const c2[] = { "Haswell", "Zen", "Excavator" };
	static const char *const c1[] = { "Sandybridge", "Bulldozer", "Piledriver", "Steamroller" };
	for (size_t i = 0; core && i < sizeof c3 / sizeof *c3; i++)
		if (!strcasecmp(core, c3[i]))
			return 3;
	for (size_t i = 0; core && i < sizeof c2 / sizeof *c2; i++)
		if (!strcasecmp(core, c2[i]))
			return 2;
	for (size_t i = 0; core && i < sizeof c1 / sizeof *c1; i++)
		if (!strcasecmp(core, c1[i]))
			return 1;
	return 0;
}

/* The best OpenBLAS core this CPU's features allow; NULL below AVX. */
static const char *best_core(const struct qd_cpu_features *f)
{
	if (f->avx512)
		return f->avx512_bf16 ? "Cooperlake" : "SkylakeX";
	if (f->avx2 && f->fma)
		return "Haswell";
	if (f->avx)
		return "Sandybridge";
	return NULL;
}

/* OpenBLAS's own pick; QUANTD_BLAS_TEST_DETECTED stands in for it in the tests (no test
 * machine has a CPU that OpenBLAS misdetects). */
static const char *detected_core(void)
{
	const char *t = getenv("QUANTD_BLAS_TEST_DETECTED");
	return t && *t ? t : openblas_get_corename();
}

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");
	return p && strstr(p, "vgpreload");
}

void qd_blas_select(char **argv)
{
	if (getenv("OPENBLAS_CORETYPE") || under_valgrind())
		return;
	struct qd_cpu_features f = cpu_features();
	const char *want = best_core(&f);
	const char *have = detected_core();
	if (!want || qd_blas_core_class(have) >= qd_blas_core_class(want))
		return;
	setenv("OPENBLAS_CORETYPE", want, 1);
	setenv("QUANTD_BLAS_CHOSEN", want, 1);
	char misdetected[64];
	snprintf(misdetected, sizeof misdetected, "%s", have ? have : "?");
	setenv("QUANTD_BLAS_MISDETECTED", misdetected, 1);
	unsetenv("QUANTD_BLAS_TEST_DETECTED");
	execv("/proc/self/exe", argv);
	/* could not re-execute: go on with OpenBLAS's own pick, and say so in reports */
	unsetenv("OPENBLAS_CORETYPE");
	unsetenv("QUANTD_BLAS_CHOSEN");
	setenv("QUANTD_BLAS_REEXEC_FAILED", "1", 1);
}

void qd_blas_describe(FILE *out)
{
	struct qd_cpu_features f = cpu_features();
	const char *core = openblas_get_corename();
	const char *chosen = getenv("QUANTD_BLAS_CHOSEN");
	const char *user = getenv("OPENBLAS_CORETYPE");
	fprintf(out, "cpu: %s%s%s%s%s%s\n", f.avx ? "avx" : "sse", f.fma ? " fma" : "", f.avx2 ? " avx2" : "",
		f.avx512 ? " avx512(f,dq,cd,bw,vl)" : "", f.avx512_vnni ? " avx512-vnni" : "",
		f.avx512_bf16 ? " avx512-bf16" : "");
	fprintf(out, "float gemm: %s, %s kernels", openblas_get_config(), core ? core : "?");
	const char *want = best_core(&f);
	if (chosen && user && !strcmp(chosen, user))
		fprintf(out, " (chosen by quantd from CPUID; OpenBLAS's own pick was %s)\n",
			getenv("QUANTD_BLAS_MISDETECTED") ? getenv("QUANTD_BLAS_MISDETECTED") : "weaker");
	else if (user)
		fprintf(out, " (OPENBLAS_CORETYPE=%s set by the user)\n", user);
	else if (!want || qd_blas_core_class(core) >= qd_blas_core_class(want))
		fprintf(out, " (OpenBLAS's own pick, of the best class this CPU allows)\n");
	else if (under_valgrind())
		fprintf(out, " (OpenBLAS's own pick under valgrind, which emulates the CPU)\n");
	else
		fprintf(out, " (OpenBLAS's own pick: quantd could not re-execute itself to choose %s)\n", want);
	fprintf(out, "integer gemm: quantd %s\n", qd_qgemm_kernel_name());
}
