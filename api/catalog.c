/* The handlers of an uploaded-file resource, written once for /v1/models and /v1/datasets
 * (api/catalog.h): upload (raw bytes streamed into the blob store, then checked by the
 * resource's validator; an identical upload answers the existing row with 200 instead of
 * 201), list, get, delete and download. */
#include "api/catalog.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One row of any catalog resource, zeroed (row_free on it is a no-op until filled). */
struct row_buf {
	_Alignas(max_align_t) unsigned char b[QD_CATALOG_ROW_MAX];
};

static const char *row_id(const struct qd_catalog *cat, const void *row)
{
	return (const char *)row + cat->id_off;
}

static const char *row_sha(const struct qd_catalog *cat, const void *row)
{
	return (const char *)row + cat->sha_off;
}

static int check_name(struct qd_req *r, const struct qd_catalog *cat, const char *name)
{
	size_t n = strlen(name);
	if (!n || n > 255)
		return qd_err_set(&r->err, QD_EINVAL, "name", "invalid %s name: must be 1..255 bytes", cat->kind);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return qd_err_set(&r->err, QD_EINVAL, "name",
					  "invalid %s name: control characters are not allowed", cat->kind);
	return 0;
}

int qd_catalog_create(struct qd_req *r, const struct qd_catalog *cat)
{
	struct qd_daemon *d = r->d;
	char own_sha[65], sha[65];
	uint64_t size = 0;
	json_t *summary = NULL;
	char *summary_txt = NULL, *path = NULL;
	const char *format = NULL;
	struct row_buf row = { { 0 } };
	bool existed_blob, existed_row = false;
	int rc;
	const char *name = qd_req_query(r, "name");
	qd_sha256_final(&r->sha, own_sha);
	if (name && (rc = check_name(r, cat, name)))
		goto reject;
	if (r->body_bytes == 0) {
		rc = qd_err_set(&r->err, QD_EPARSE, "body", "invalid %s upload: the request body is empty "
				"(send %s bytes)", cat->kind, cat->upload_what);
		goto reject;
	}
	existed_blob = qd_blob_exists(d->store, own_sha);
	rc = qd_blob_writer_commit(r->bw, sha, &size, &r->err);
	r->bw = NULL;
	if (rc)
		goto out;
	size_t pmax = qd_blob_path_max(d->store);
	if (!(path = malloc(pmax))) {
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	if ((rc = qd_blob_path(d->store, sha, path, pmax, &r->err)))
		goto out;
	if ((rc = cat->validate(r, path, &summary, &format))) {
		if (!existed_blob)
			unlink(path);
		goto reject;
	}
	if (!(summary_txt = json_dumps(summary, JSON_COMPACT))) {
		rc = qd_err_set(&r->err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	struct qd_store_conn *c = qd_req_store(r);
	if (!c) {
		rc = -r->err.code;
		goto out;
	}
	if ((rc = cat->insert(c, sha, (int64_t)size, name, format, summary_txt, row.b, &existed_row,
			      &r->err)))
		goto out;
	__atomic_fetch_add(&d->metrics.uploads[1], 1, __ATOMIC_RELAXED);
	qd_log(QD_LOG_INFO, NULL, "%s %s %s (%llu bytes, %s%ssha256 %.12s)", cat->kind, row_id(cat, row.b),
	       existed_row ? "uploaded again" : "stored", (unsigned long long)size, format ? format : "",
	       format ? ", " : "", sha);
	rc = qd_req_json(r, existed_row ? 200 : 201, cat->json(row.b));
	char loc[128];
	snprintf(loc, sizeof loc, "%s/%s", cat->collection, row_id(cat, row.b));
	qd_req_add_header(r, MHD_HTTP_HEADER_LOCATION, loc);
	goto out;
reject:
	__atomic_fetch_add(&d->metrics.uploads[0], 1, __ATOMIC_RELAXED);
out:
	json_decref(summary);
	free(summary_txt);
	free(path);
	cat->row_free(row.b);
	return rc;
}

int qd_catalog_list(struct qd_req *r, const struct qd_catalog *cat)
{
	struct qd_page pg;
	void *rows = NULL;
	size_t n = 0;
	int rc;
	struct qd_store_conn *c;
	if ((rc = qd_req_page(r, &pg)))
		return rc;
	if (!(c = qd_req_store(r)))
		return -r->err.code;
	const char *sha = qd_req_query(r, "sha256");
	if (sha) {
		/* ?sha256=: the one row holding these bytes, or none; a client checks this
		 * before uploading a multi-GB file the server already has */
		struct row_buf row = { { 0 } };
		json_t *items = json_array();
		rc = cat->find_sha(c, sha, row.b, &r->err);
		if (rc == 0) {
			json_array_append_new(items, cat->json(row.b));
			cat->row_free(row.b);
		} else if (rc == -QD_ENOT_FOUND)
			qd_err_clear(&r->err);
		else {
			json_decref(items);
			return rc;
		}
		return qd_req_list(r, items, NULL, NULL);
	}
	if ((rc = cat->list(c, &pg, &rows, &n, &r->err)))
		return rc;
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(items, cat->json((const char *)rows + i * cat->row_size));
	cat->rows_free(rows, n);
	return qd_req_list(r, items, &pg, NULL);
}

/* The row named by the {id} segment into row (free with cat->row_free on success). */
static int get_row(struct qd_req *r, const struct qd_catalog *cat, void *row)
{
	struct qd_store_conn *c = qd_req_store(r);
	if (!c)
		return -r->err.code;
	return cat->get(c, r->id, row, &r->err);
}

int qd_catalog_get(struct qd_req *r, const struct qd_catalog *cat)
{
	struct row_buf row = { { 0 } };
	int rc;
	if ((rc = get_row(r, cat, row.b)))
		return rc;
	rc = qd_req_json(r, 200, cat->json(row.b));
	cat->row_free(row.b);
	return rc;
}

int qd_catalog_delete(struct qd_req *r, const struct qd_catalog *cat)
{
	struct qd_store_conn *c = qd_req_store(r);
	int rc;
	if (!c)
		return -r->err.code;
	if ((rc = cat->del(c, r->id, &r->err)))
		return rc;
	qd_log(QD_LOG_INFO, NULL, "%s %s deleted", cat->kind, r->id);
	return qd_req_empty(r, 204);
}

int qd_catalog_content(struct qd_req *r, const struct qd_catalog *cat)
{
	struct row_buf row = { { 0 } };
	int rc;
	if ((rc = get_row(r, cat, row.b)))
		return rc;
	char fname[300];
	snprintf(fname, sizeof fname, "%s", cat->filename(row.b));
	rc = qd_req_send_blob(r, row_sha(cat, row.b), "application/octet-stream", fname);
	cat->row_free(row.b);
	return rc;
}
