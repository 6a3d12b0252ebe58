/* api/ — the REST API on libmicrohttpd: route table (api/routes.def), request context,
 * JSON/error responses, bearer-token auth, streamed uploads and file downloads.
 * Handlers run on MHD's connection threads; they parse, validate, talk to the store and
 * answer. Jobs are run by the workers in daemon/, never here. */
#ifndef QD_API_H
#define QD_API_H

#include "qd.h"
#include "daemon/daemon.h"
#include "store/store.h"
#include <jansson.h>
#include <microhttpd.h>

enum qd_route_flags { QD_RF_PUBLIC = 1, QD_RF_JSON = 2, QD_RF_UPLOAD = 4 };

struct qd_req;
typedef int (*qd_route_fn)(struct qd_req *r);

#define QD_ROUTE(method, pattern, fn, flags) int fn(struct qd_req *r);
#include "api/routes.def"
#undef QD_ROUTE

enum qd_route_id {
#define QD_ROUTE(method, pattern, fn, flags) QD_ROUTE_ID_##fn,
#include "api/routes.def"
#undef QD_ROUTE
	QD_ROUTE__COUNT
};
/* Metrics row for requests that match no route. */
#define QD_ROUTE_UNMATCHED QD_ROUTE__COUNT
#define QD_HTTP_STATUS_SLOTS 500     /* statuses 100..599 */

struct qd_route {
	const char *method, *pattern;
	qd_route_fn fn;
	unsigned flags;
};
extern const struct qd_route qd_routes[QD_ROUTE__COUNT];

/* One HTTP request, from the first header callback to the completion callback. */
struct qd_req {
	struct qd_daemon *d;
	struct MHD_Connection *conn;
	const char *method, *url;                /* borrow (MHD) */
	int route;                               /* QD_ROUTE_ID_*, or QD_ROUTE_UNMATCHED */
	char id[64];                             /* the {id} path segment, "" if none */
	double t0;

	/* body */
	struct qd_buf body;                      /* QD_RF_JSON */
	struct qd_blob_writer *bw;               /* QD_RF_UPLOAD */
	struct qd_sha256 sha;                    /* running hash of the upload */
	uint64_t body_bytes;
	bool body_too_large, body_failed, early_tried;
	struct qd_err body_err;
	double body_deadline;                    /* t0 + --upload-timeout; grows with the bytes */
	bool timed_out;                          /* answered 408 */
	bool offloaded, offload_done;            /* upload handler running on its own thread */

	struct qd_store_conn *sc;                /* lazily from the pool (qd_req_store) */

	/* response (set by the handler or the error path) */
	struct MHD_Response *resp;
	unsigned status;
	bool answered;
	struct qd_err err;
	json_t *err_problems;                    /* every problem, as error.details.problems */
};

/* Route table lookup: index into qd_routes (id gets the {id} segment), -QD_ENOT_FOUND
 * for an unknown path, -QD_EMETHOD when the path exists with other methods (listed in
 * allow, comma-separated). HEAD is looked up as GET. */
int qd_api_route_lookup(const char *method, const char *path, char id[64], char *allow,
			size_t allow_sz);
/* If-None-Match value matches the ETag of sha ("*", lists, W/ prefixes)? */
bool qd_api_etag_match(const char *if_none_match, const char *sha);
/* One byte range "bytes=a-b" | "bytes=a-" | "bytes=-n" of a size-byte blob → inclusive
 * [*start, *end]; -1 when malformed, multi-range or unsatisfiable. */
int qd_api_parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *end);

/* Resolve --listen and refuse a non-loopback address without a token (called before
 * anything is opened, so a refused start leaves no trace). */
int qd_api_check_listen(const struct qd_config *cfg, struct qd_err *err);
/* Start MHD on cfg->listen; *bound_port gets the real port (port 0 = any). */
int qd_api_start(struct qd_daemon *d, int *bound_port, struct qd_err *err);
/* Stop accepting new connections (existing ones finish). */
void qd_api_quiesce(struct qd_daemon *d);
/* Stop MHD; waits for upload handlers still running and for the HTTP threads. */
void qd_api_stop(struct qd_daemon *d);
/* Connections MHD holds right now, including closed ones not yet cleaned up (the HTTP
 * fuzz target waits for 0 before it resets the store). */
unsigned qd_api_connections(struct qd_daemon *d);

/* ---- helpers for handlers (api/http.c) ---- */
/* Store connection for this request (from the daemon's pool); NULL with r->err set. */
struct qd_store_conn *qd_req_store(struct qd_req *r);
/* Query argument or NULL (borrow). */
const char *qd_req_query(struct qd_req *r, const char *key);
const char *qd_req_header(struct qd_req *r, const char *name);
/* Answer with a JSON body (body is stolen; NULL → 500 out of memory). Returns 0. */
int qd_req_json(struct qd_req *r, unsigned status, json_t *body);
/* Answer with an empty body. */
int qd_req_empty(struct qd_req *r, unsigned status);
/* Answer with a text body (copied). */
int qd_req_text(struct qd_req *r, unsigned status, const char *content_type, const char *text,
		size_t len);
/* Answer with bytes that live as long as the process (the built-in web page; not copied). */
int qd_req_static(struct qd_req *r, unsigned status, const char *content_type, const void *data,
		  size_t len);
/* Add a response header after one of the above. */
void qd_req_add_header(struct qd_req *r, const char *name, const char *value);
/* Serve a blob file: Content-Length, ETag "<sha256>", If-None-Match → 304,
 * Range: bytes=a-b → 206 + Content-Range, bad or unsatisfiable range → 416. */
int qd_req_send_blob(struct qd_req *r, const char *sha256, const char *content_type,
		     const char *filename);
/* Error JSON {"error": {"code", "message", "details": {"field"}}} with qd_err_http. */
int qd_req_error(struct qd_req *r, const struct qd_err *e);
/* Paging arguments ?limit=&cursor=; fills pg (cursor borrowed from the request). */
int qd_req_page(struct qd_req *r, struct qd_page *pg);
/* {"items": items, "next_cursor": c | null, "next": "<path>?limit=..&cursor=.." | null}
 * (items stolen). */
int qd_req_list(struct qd_req *r, json_t *items, const struct qd_page *pg, const char *extra_query);
/* The same with the members of fields (stolen, may be NULL) added to the page object. */
int qd_req_list_with(struct qd_req *r, json_t *items, const struct qd_page *pg, const char *extra_query,
		     json_t *fields);

/* Validate a stored model file without loading its weights (api/model_check.c):
 * *summary (new) is qd_model_summary_json. Errors name the problem (PARSE / MODEL). */
int qd_api_check_model_file(const char *path, json_t **summary, struct qd_err *err);
/* The same with allow_external: tensors with external data are checked (location inside
 * the model's directory, length against the file) instead of refused. */
int qd_api_check_model_path(const char *path, bool allow_external, json_t **summary,
			    struct qd_err *err);

/* Submit-time check of a job's datasets (api/datasets.c): every data config's "dataset"
 * is an uploaded dataset id (INVAL / NOT_FOUND, field "data_configs.<name>.dataset") whose
 * stored summary binds to the model's graph inputs (qd_dataset_bind; the error names the
 * array and the mismatch). */
int qd_api_check_job_datasets(struct qd_store_conn *c, const json_t *wf,
			      const struct qd_model_row *model, struct qd_err *err);

/* Model JSON for the API: the store row with the summary lifted to the top level. new. */
json_t *qd_api_model_json(const struct qd_model_row *row);

/* Metrics text (api/health.c). */
int qd_api_metrics_text(struct qd_daemon *d, struct qd_store_conn *c, struct qd_buf *out);

#endif
