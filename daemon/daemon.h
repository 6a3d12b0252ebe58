/* daemon/ — `quantd serve`: configuration, worker pool, job lifecycle, signals. */
#ifndef QD_DAEMON_H
#define QD_DAEMON_H

#define QD_VERSION "0.1.0"

int qd_cmd_serve(int argc, char **argv);

#endif
