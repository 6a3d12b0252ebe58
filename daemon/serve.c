/* Placeholder until the module's owner lands the real command; replaced, never shipped. */
#include <stdio.h>
#include "daemon/daemon.h"
int qd_cmd_serve(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "quantd: this command is not built yet\n");
	return 2;
}
