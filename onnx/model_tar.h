/* onnx/model_tar — a model with external data as one file: a tar (plain or gzip, told
 * apart by magic bytes) holding exactly one .onnx at its top and the data files its
 * tensors' `location`s name. Extraction streams member by member (64 KiB at a time, never
 * a whole member in memory) into a fresh directory and refuses, naming the member:
 * absolute paths, "..", symlinks, hard links, devices and FIFOs, a member twice, and more
 * extracted bytes than a limit (QD_ETOO_LARGE). A truncated tar or gzip stream is
 * QD_EPARSE. The caller validates the extracted .onnx (its locations must resolve inside
 * the directory: onnx/model_io.c's loader checks that). */
#ifndef QD_ONNX_MODEL_TAR_H
#define QD_ONNX_MODEL_TAR_H

#include "common/qd.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum qd_model_form { QD_MODEL_FORM_ONNX, QD_MODEL_FORM_TAR, QD_MODEL_FORM_TAR_GZIP };

/* What the file at path looks like from its first bytes: gzip magic 1f 8b → TAR_GZIP,
 * "ustar" at offset 257 → TAR, anything else (an ONNX protobuf) → ONNX. A file that
 * cannot be read is ONNX (its loader then names the problem). */
enum qd_model_form qd_model_form_of(const char *path);
const char *qd_model_form_name(enum qd_model_form f); /* "onnx", "tar", "tar+gzip": static */

struct qd_model_tar_info {
	char *onnx_name;      /* new: the one top-level .onnx, relative to the directory */
	json_t *files;        /* new: [{"name", "size"}] of every regular member, tar order */
	uint64_t total_bytes; /* sum of the members' sizes */
};
void qd_model_tar_info_free(struct qd_model_tar_info *ti); /* members, not ti */

/* Extract the tar (or tar.gz) at tar_path into dir (created; must not exist). max_bytes
 * bounds the extracted bytes (0 = no bound). On error dir may hold a partial extraction:
 * the caller removes it. Messages name the member and never the paths. */
int qd_model_tar_extract(const char *tar_path, const char *dir, uint64_t max_bytes,
			 struct qd_model_tar_info *out, struct qd_err *err);

#endif
