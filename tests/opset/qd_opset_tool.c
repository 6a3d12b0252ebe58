/* tests/opset/qd_opset_tool.c — upgrade a model's ai.onnx opset with quantd's upgrader:
 *   qd_opset_tool IN.onnx OUT.onnx TO
 * Constant nodes become initializers first (qd_model_normalize_constants). Prints the log
 * line and the stats JSON; exit 1 on refusal/error (message on stderr). */
#include "passes/opset.h"
#include <stdio.h>
#include <stdlib.h>

static void log_line(void *ud, enum qd_log_level lvl, const char *line)
{
	printf("%s\n", line);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s IN.onnx OUT.onnx TO\n", argv[0]);
		return 2;
	}
	struct qd_err err = {0};
	struct qd_model *m = NULL;
	json_t *stats = json_object();
	int rc = qd_model_load_file(argv[1], NULL, &m, &err);
	if (rc == 0 && (rc = qd_model_normalize_constants(m, &err)) >= 0)
		rc = qd_model_upgrade_opset(m, strtoll(argv[3], NULL, 10), log_line, NULL, stats, &err);
	if (rc == 0)
		rc = qd_model_save_file(m, argv[2], NULL, &err);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", argv[1], err.msg);
	} else {
		char *s = json_dumps(stats, JSON_SORT_KEYS);
		printf("%s\n", s ? s : "{}");
		free(s);
	}
	json_decref(stats);
	qd_model_free(m);
	return rc < 0 ? 1 : 0;
}
