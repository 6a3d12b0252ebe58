/* Olive data configs: the workflow's "data_configs" (Olive's dict form
 * {"calib": {...}} or list form [{"name": "calib", ...}]) and the passes' "data_config"
 * references (a name, or an inline config object). quantd binds a config to an uploaded
 * dataset with "dataset": "<dst_ id>" (quantd run: a file path), and reads the batch size
 * from "batch_size" or Olive's "dataloader_config": {"batch_size"}. Every other Olive key
 * is either honoured, reported as ignored with its reason, or rejected at submit time. */
#ifndef QD_DATA_CONFIG_H
#define QD_DATA_CONFIG_H

#include "qd.h"
#include <jansson.h>

/* Submit-time checks: data_configs well formed (unknown / unsupported keys rejected,
 * field "data_configs.<name>.<key>"), every pass's data_config resolves (unknown name →
 * 400 naming "passes.<pass>.data_config"). Does not look datasets up. */
int qd_data_configs_validate(const json_t *workflow, struct qd_err *err);
/* The named data config (dict or list form); borrow or NULL. */
const json_t *qd_data_config_find(const json_t *workflow, const char *name);

/* Resolve a pass's data_config value (name string or inline object) to the normalized
 * config {"name": s, "dataset": s, "batch_size": I, ...}. *cfg new. field names the
 * reference in errors. */
int qd_data_config_resolve(const json_t *workflow, const json_t *value, const char *field,
			   json_t **cfg, struct qd_err *err);

/* Every distinct "dataset" reference in the workflow's data configs and inline pass data
 * configs. new array of strings. */
json_t *qd_workflow_dataset_refs(const json_t *workflow);

/* Every data config (named and inline) that binds a dataset, for submit-time checks:
 * [{"dataset": ref, "field": "data_configs.calib.dataset", "config": "calib"}]. new. */
json_t *qd_workflow_dataset_bindings(const json_t *workflow);

/* Lines to log at run time for keys accepted but not applied (e.g. Olive's user_script
 * that quantd cannot run): new array of strings, possibly empty. */
json_t *qd_data_configs_notes(const json_t *workflow);

#endif
