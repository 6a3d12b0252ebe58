/* Unit tests for `quantd serve` configuration: defaults, config file (key = value and
 * JSON), environment, flags and their precedence, limits, listen-address parsing, and the
 * systemd notify datagram (received on a real AF_UNIX socket). */
#define _GNU_SOURCE
#include "daemon/daemon.h"
#include "qd_test.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int load(struct qd_config *c, struct qd_err *e, int argc, char **argv)
{
	int help;
	return qd_config_load(c, argc, argv, &help, e);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

int main(void)
{
	struct qd_config c;
	struct qd_err e = { 0 };
	char dir[] = "/tmp/qd-test-config-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char kv[256], js[256], bad[256], tok[256];
	snprintf(kv, sizeof kv, "%s/q.conf", dir);
	snprintf(js, sizeof js, "%s/q.json", dir);
	snprintf(bad, sizeof bad, "%s/bad.conf", dir);
	snprintf(tok, sizeof tok, "%s/token", dir);
	unsetenv("QUANTD_WORKERS");
	unsetenv("QUANTD_TOKEN");
	unsetenv("QUANTD_CONFIG");
	unsetenv("QUANTD_LISTEN");

	/* defaults */
	char *a0[] = { "serve" };
	CHECK_EQ_INT(load(&c, &e, 1, a0), 0);
	CHECK_STR(c.listen, "127.0.0.1:8080");
	CHECK_EQ_INT(c.workers, 2);
	CHECK_EQ_INT(c.source[QD_OPT_ID_workers], QD_SRC_DEFAULT);
	qd_config_free(&c);

	/* file < env < flag */
	write_file(kv, "# comment\nworkers = 5\nmax-queued = 9   # trailing comment\ntoken = \"file-token\"\n"
		       "max_upload_bytes = 2M\n");
	setenv("QUANTD_WORKERS", "6", 1);
	char *a1[] = { "serve", "--config", kv };
	CHECK_EQ_INT(load(&c, &e, 3, a1), 0);
	CHECK_EQ_INT(c.workers, 6);
	CHECK_EQ_INT(c.source[QD_OPT_ID_workers], QD_SRC_ENV);
	CHECK_EQ_INT(c.max_queued, 9);
	CHECK_EQ_INT(c.source[QD_OPT_ID_max_queued], QD_SRC_FILE);
	CHECK_STR(c.token, "file-token");
	CHECK_EQ_INT(c.max_upload_bytes, 2 * 1024 * 1024);
	qd_config_free(&c);
	char *a2[] = { "serve", "--workers=7", "--config", kv, "--max-queued", "11" };
	CHECK_EQ_INT(load(&c, &e, 6, a2), 0);
	CHECK_EQ_INT(c.workers, 7);
	CHECK_EQ_INT(c.source[QD_OPT_ID_workers], QD_SRC_FLAG);
	CHECK_EQ_INT(c.max_queued, 11);
	qd_config_free(&c);
	unsetenv("QUANTD_WORKERS");

	/* JSON config */
	write_file(js, "{\"workers\": 3, \"log_level\": \"debug\", \"data-dir\": \"/tmp/x\"}");
	char *a3[] = { "serve", "--config", js };
	CHECK_EQ_INT(load(&c, &e, 3, a3), 0);
	CHECK_EQ_INT(c.workers, 3);
	CHECK_STR(c.log_level, "debug");
	CHECK_STR(c.data_dir, "/tmp/x");
	qd_config_free(&c);

	/* errors name the option */
	write_file(bad, "workerz = 3\n");
	char *a4[] = { "serve", "--config", bad };
	CHECK(load(&c, &e, 3, a4) < 0);
	CHECK_STR(e.field, "workerz");
	qd_config_free(&c);
	char *a5[] = { "serve", "--workers", "zero" };
	CHECK_EQ_INT(load(&c, &e, 3, a5), -QD_EINVAL);
	CHECK_STR(e.field, "workers");
	qd_config_free(&c);
	char *a6[] = { "serve", "--workers", "0" };
	CHECK_EQ_INT(load(&c, &e, 3, a6), -QD_EINVAL);
	CHECK(strstr(e.msg, "must be in") != NULL);
	qd_config_free(&c);
	char *a7[] = { "serve", "--nope", "1" };
	CHECK_EQ_INT(load(&c, &e, 3, a7), -QD_EINVAL);
	qd_config_free(&c);
	char *a8[] = { "serve", "--log-level", "loud" };
	CHECK_EQ_INT(load(&c, &e, 3, a8), -QD_EINVAL);
	CHECK_STR(e.field, "log_level");
	qd_config_free(&c);
	char *a9[] = { "serve", "--listen", "localhost" };
	CHECK_EQ_INT(load(&c, &e, 3, a9), -QD_EINVAL);
	CHECK_STR(e.field, "listen");
	qd_config_free(&c);
	char *a10[] = { "serve", "--workers" };
	CHECK_EQ_INT(load(&c, &e, 2, a10), -QD_EINVAL);
	qd_config_free(&c);
	char *a11[] = { "serve", "--config", "/nonexistent/q.conf" };
	CHECK(load(&c, &e, 3, a11) < 0);
	qd_config_free(&c);

	/* token file */
	write_file(tok, "  tok-from-file  \n");
	char *a12[] = { "serve", "--token-file", tok };
	CHECK_EQ_INT(load(&c, &e, 3, a12), 0);
	CHECK_STR(c.token, "tok-from-file");
	qd_config_free(&c);

	/* --help */
	int help = 0;
	char *a13[] = { "serve", "--workers", "bad", "--help" };
	CHECK_EQ_INT(qd_config_load(&c, 4, a13, &help, &e), 0);
	CHECK_EQ_INT(help, 1);
	qd_config_free(&c);

	/* listen parsing */
	char *host;
	int port;
	CHECK_EQ_INT(qd_listen_parse("127.0.0.1:0", &host, &port, &e), 0);
	CHECK_STR(host, "127.0.0.1");
	CHECK_EQ_INT(port, 0);
	free(host);
	CHECK_EQ_INT(qd_listen_parse("[::1]:8080", &host, &port, &e), 0);
	CHECK_STR(host, "::1");
	CHECK_EQ_INT(port, 8080);
	free(host);
	CHECK_EQ_INT(qd_listen_parse(":9000", &host, &port, &e), 0);
	CHECK_STR(host, "0.0.0.0");
	free(host);
	CHECK(qd_listen_parse("h:70000", &host, &port, &e) < 0);
	CHECK(qd_listen_parse("[::1]8080", &host, &port, &e) < 0);

	/* sd_notify: a datagram arrives on NOTIFY_SOCKET */
	unsetenv("NOTIFY_SOCKET");
	CHECK_EQ_INT(qd_sd_notify("READY=1"), 1);
	char sp[100];
	snprintf(sp, sizeof sp, "%s/notify.sock", dir);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sp);
	CHECK_EQ_INT(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
	setenv("NOTIFY_SOCKET", sp, 1);
	CHECK_EQ_INT(qd_sd_notify("READY=1\nSTATUS=x"), 0);
	char buf[64] = { 0 };
	ssize_t n = recv(s, buf, sizeof buf - 1, MSG_DONTWAIT);
	CHECK_EQ_INT(n, 16);
	CHECK_STR(buf, "READY=1\nSTATUS=x");
	close(s);
	unlink(sp);
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "20000000", 1);
	unsetenv("WATCHDOG_PID");
	CHECK_NEAR(qd_sd_watchdog_interval(), 10.0, 1e-9);
	setenv("WATCHDOG_PID", "1", 1);
	CHECK_NEAR(qd_sd_watchdog_interval(), 0.0, 1e-9);
	unsetenv("WATCHDOG_USEC");

	unlink(kv), unlink(js), unlink(bad), unlink(tok);
	rmdir(dir);
	return qd_test_done("test_daemon_config");
}
