/* passes/opset.h — the ai.onnx opset upgrader shared by the quantization passes: raises a
 * model's default-domain opset import (7..13) and rewrites the nodes whose signature
 * changed on the way (attributes that became inputs, Upsample → Resize, the Softmax-13
 * axis rule), refusing — before anything is changed — nodes that would change meaning.
 *
 * How to add an op whose definition changed:
 *  1. Read its entry in the ONNX Changelog (docs corpus, "onnx <Op>-<version>").
 *  2. Add a row to opset_table[] in passes/opset.c: the opset where it changed and either
 *     a converter (check + apply in one function), NULL (refuse) or OS_COMPAT.
 *  3. A case in tests/unit/test_opset.c: engine outputs before == after the upgrade.
 */
#ifndef QD_OPSET_H
#define QD_OPSET_H

#include "qd.h"
#include "onnx/onnx.h"
#include <jansson.h>

/* Highest opset qd_model_upgrade_opset can raise to, lowest it starts from. */
#define QD_OPSET_UPGRADE_MAX 13
#define QD_OPSET_UPGRADE_MIN 7

/* Raise the ai.onnx opset import of m to `to`, rewriting every node (main graph and
 * subgraphs) whose signature changed between the current opset and `to` so that it keeps
 * its meaning; refuse (QD_EUNSUPPORTED, err->field = node name, message naming the node and
 * the opset where it changes) when a node cannot be converted. Nothing is changed when it
 * refuses (everything is checked first, then applied). ir_version is raised as the opset
 * needs (>= 7 for opset 13). A model already at >= `to` is left alone (returns 0).
 * log (may be NULL) gets one line saying what was rewritten; stats (may be NULL) gets
 * {"opset_raised": {"from", "to", "rewritten": {op: count}}}. */
int qd_model_upgrade_opset(struct qd_model *m, int64_t to,
			   void (*log)(void *ud, enum qd_log_level lvl, const char *line), void *ud,
			   json_t *stats, struct qd_err *err);

/* The IR version a model importing ai.onnx `opset` needs (3 for <= 8, ..., 7 for 12-14). */
int64_t qd_opset_ir_version(int64_t opset);

#endif
