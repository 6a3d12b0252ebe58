/* quantd entry point: dispatches the sub-commands serve, run and infer. */
#include "qd.h"
#include "daemon/client.h"
#include "daemon/daemon.h"
#include "engine/engine.h"
#include "passes/workflow.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: quantd <command> [options]\n\n"
		   "commands:\n"
		   "  serve   run the quantization service (REST API, job queue, workers)\n"
		   "  run     run a workflow on one model without a server (like `olive run`)\n"
		   "  infer   run a model on inputs with the built-in CPU engine\n\n"
		   "client commands (talk to a running `quantd serve`: --server, --token):\n"
		   "  submit  upload a model and datasets, submit a workflow, wait, download the artifacts\n"
		   "  jobs    list jobs\n"
		   "  status  show one job\n"
		   "  logs    print a job's log (--follow)\n"
		   "  cancel  cancel a job\n\n"
		   "`quantd <command> --help` describes each command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	qd_blas_select(argv);
	const char *cmd = argv[1];
	if (!strcmp(cmd, "serve"))
		return qd_cmd_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return qd_cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "infer"))
		return qd_cmd_infer(argc - 1, argv + 1);
	if (qd_client_command(cmd))
		return qd_cmd_client(argc - 1, argv + 1);
	if (!strcmp(cmd, "job-exec"))  /* hidden: the process one job of `serve` runs in */
		return qd_cmd_job_exec(argc - 1, argv + 1);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("quantd %s\n", QD_VERSION);
		qd_blas_describe(stdout);
		return 0;
	}
	fprintf(stderr, "quantd: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
