/* api/catalog — the upload / list / get / delete / content handlers shared by the
 * uploaded-file resources (/v1/models, /v1/datasets). A resource is a const descriptor:
 * its kind name, its store functions over its row type, its validator and its JSON.
 * How to add a catalog resource: 1. a row type struct qd_<kind>_row (char id[64],
 * char sha256[65]) in store/ with qd_<kind>_get / _find_sha / _list / _delete / _row_free /
 * _rows_free and an insert; 2. in api/<resource>.c, QD_CATALOG_ROW_FNS(<kind>) and a
 * `const struct qd_catalog` with QD_CATALOG_ROW_MEMBERS(<kind>) plus its validator, insert,
 * JSON and download name; 3. five one-line handlers calling qd_catalog_*; 4. routes in
 * api/routes.def. */
#ifndef QD_API_CATALOG_H
#define QD_API_CATALOG_H

#include "api/api.h"

#include <assert.h>
#include <stddef.h>

/* The largest row type a catalog resource may have (each static_asserts its own). */
#define QD_CATALOG_ROW_MAX 256

struct qd_catalog {
	const char *kind;        /* "model": messages ("invalid model name"), log lines */
	const char *collection;  /* "/v1/models": the Location header */
	const char *upload_what; /* "the ONNX file's": "(send <upload_what> bytes)" */
	size_t row_size;         /* sizeof the row type, <= QD_CATALOG_ROW_MAX */
	size_t id_off, sha_off;  /* offsetof its char id[64] and char sha256[65] */
	/* Check the committed blob at path: *summary (new), *format (static, may stay NULL);
	 * errors are set in r->err with the field and message the client sees. */
	int (*validate)(struct qd_req *r, const char *path, json_t **summary, const char **format);
	int (*insert)(struct qd_store_conn *c, const char *sha256, int64_t size, const char *name,
		      const char *format, const char *summary_json, void *out, bool *existed,
		      struct qd_err *err);
	int (*get)(struct qd_store_conn *c, const char *id, void *out, struct qd_err *err);
	/* The row with this blob (QD_ENOT_FOUND when none): the list's ?sha256= filter. */
	int (*find_sha)(struct qd_store_conn *c, const char *sha256, void *out, struct qd_err *err);
	/* *rows is new (rows_free). */
	int (*list)(struct qd_store_conn *c, struct qd_page *pg, void **rows, size_t *n,
		    struct qd_err *err);
	int (*del)(struct qd_store_conn *c, const char *id, struct qd_err *err);
	void (*row_free)(void *row);             /* members, not row */
	void (*rows_free)(void *rows, size_t n); /* members and array */
	json_t *(*json)(const void *row);        /* the API form of a row: new */
	const char *(*filename)(const void *row); /* download name: borrow (row) or static */
};

/* The untyped store wrappers of struct qd_<kind>_row (static functions <kind>_row_get,
 * <kind>_rows_list, <kind>_row_free, <kind>_rows_free) and the descriptor members they,
 * the row's size and its offsets fill. */
#define QD_CATALOG_ROW_FNS(kind)                                                                  \
	static_assert(sizeof(struct qd_##kind##_row) <= QD_CATALOG_ROW_MAX,                       \
		      "struct qd_" #kind "_row outgrows QD_CATALOG_ROW_MAX");                     \
	static int kind##_row_get(struct qd_store_conn *c, const char *id, void *out,             \
				  struct qd_err *err)                                             \
	{                                                                                         \
		return qd_##kind##_get(c, id, out, err);                                          \
	}                                                                                         \
	static int kind##_row_find_sha(struct qd_store_conn *c, const char *sha, void *out,       \
				       struct qd_err *err)                                        \
	{                                                                                         \
		return qd_##kind##_find_sha(c, sha, out, err);                                    \
	}                                                                                         \
	static int kind##_rows_list(struct qd_store_conn *c, struct qd_page *pg, void **rows,     \
				    size_t *n, struct qd_err *err)                                \
	{                                                                                         \
		struct qd_##kind##_row *typed = NULL;                                             \
		int rc = qd_##kind##_list(c, pg, &typed, n, err);                                 \
		*rows = typed;                                                                    \
		return rc;                                                                        \
	}                                                                                         \
	static void kind##_row_free(void *row) { qd_##kind##_row_free(row); }                     \
	static void kind##_rows_free(void *rows, size_t n) { qd_##kind##_rows_free(rows, n); }
#define QD_CATALOG_ROW_MEMBERS(kind)                                                              \
	.row_size = sizeof(struct qd_##kind##_row), .id_off = offsetof(struct qd_##kind##_row, id), \
	.sha_off = offsetof(struct qd_##kind##_row, sha256), .get = kind##_row_get,               \
	.find_sha = kind##_row_find_sha,                                                          \
	.list = kind##_rows_list, .del = qd_##kind##_delete, .row_free = kind##_row_free,         \
	.rows_free = kind##_rows_free

int qd_catalog_create(struct qd_req *r, const struct qd_catalog *cat);
int qd_catalog_list(struct qd_req *r, const struct qd_catalog *cat);
int qd_catalog_get(struct qd_req *r, const struct qd_catalog *cat);
int qd_catalog_delete(struct qd_req *r, const struct qd_catalog *cat);
int qd_catalog_content(struct qd_req *r, const struct qd_catalog *cat);

#endif
