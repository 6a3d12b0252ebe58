/* tests/fault/crash_at.c — an LD_PRELOAD shim that kills the process (SIGKILL, as
 * kill -9 would) right after a chosen file-system call succeeds, to crash the daemon at
 * an exact point instead of a random moment:
 *   QD_CRASH_AT=unlink:/blobs/   after the first unlink() of a path containing "/blobs/"
 *   QD_CRASH_AT=rename:/blobs/   after the first rename() whose target contains it
 *   QD_CRASH_SKIP=N              let the first N matching calls through
 * Build: cc -shared -fPIC -o crash_at.so tests/fault/crash_at.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long seen;

static int hit(const char *call, const char *path)
{
	const char *spec = getenv("QD_CRASH_AT");
	size_t n = strlen(call);
	if (!spec || strncmp(spec, call, n) || spec[n] != ':' || !path || !strstr(path, spec + n + 1))
		return 0;
	const char *skip = getenv("QD_CRASH_SKIP");
	return atomic_fetch_add(&seen, 1) >= (skip ? atol(skip) : 0);
}

int unlink(const char *path)
{
	static int (*real)(const char *);
	if (!real)
		real = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
	int rc = real(path);
	if (rc == 0 && hit("unlink", path))
		raise(SIGKILL);
	return rc;
}

int rename(const char *from, const char *to)
{
	static int (*real)(const char *, const char *);
	if (!real)
		real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
	int rc = real(from, to);
	if (rc == 0 && hit("rename", to))
		raise(SIGKILL);
	return rc;
}
