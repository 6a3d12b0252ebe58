/* systemd notification protocol without libsystemd: one datagram with "KEY=VALUE" lines
 * to the AF_UNIX socket named by $NOTIFY_SOCKET ('@' prefix = abstract namespace). */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int qd_sd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 1;
	size_t plen = strlen(path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@'))
		return -QD_EINVAL;
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -QD_EIO;
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int e = errno;
	close(fd);
	if (n < 0) {
		qd_log(QD_LOG_WARN, NULL, "cannot notify systemd '%s': %s", state, strerror(e));
		return -QD_EIO;
	}
	return 0;
}

double qd_sd_watchdog_interval(void)
{
	const char *u = getenv("WATCHDOG_USEC");
	if (!u || !*u)
		return 0;
	const char *pid = getenv("WATCHDOG_PID");
	if (pid && *pid && atol(pid) != (long)getpid())
		return 0;
	char *end;
	unsigned long long us = strtoull(u, &end, 10);
	if (*end || !us)
		return 0;
	return (double)us / 1e6 / 2.0;
}
