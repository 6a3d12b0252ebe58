/* The command-line client of a quantd daemon (daemon/client.c): `quantd submit`, `jobs`,
 * `status`, `logs` and `cancel`, one step of a build pipeline each. */
#ifndef QD_CLIENT_H
#define QD_CLIENT_H

#include <stdbool.h>

/* Exit status of every client command: QD_CLI_EXIT(NAME, status, meaning). */
#define QD_CLI_EXITS(X)                                                                           \
	X(OK,       0, "success (submit --wait: the job succeeded and its artifacts are in --output)") \
	X(FAILED,   1, "the job failed (its error code and message are printed)")                 \
	X(USAGE,    2, "bad usage: options, unreadable files, an invalid workflow, or a request "  \
		       "the server rejected as invalid (400, 404, 409, 413)")                     \
	X(CANCELED, 3, "the job was canceled")                                                    \
	X(SERVER,   4, "the server could not be reached or answered with an error (connection, "  \
		       "timeout, 401, 429, 5xx, a malformed answer, an artifact whose sha256 differs)")

enum qd_cli_exit {
#define QD_CLI_EXIT_ENUM(name, status, msg) QD_CLI_EXIT_##name = status,
	QD_CLI_EXITS(QD_CLI_EXIT_ENUM)
#undef QD_CLI_EXIT_ENUM
};

/* Is cmd one of the client's sub-commands? */
bool qd_client_command(const char *cmd);
/* argv[0] is the sub-command ("submit", ...). Returns the exit status (enum qd_cli_exit). */
int qd_cmd_client(int argc, char **argv);

#endif
