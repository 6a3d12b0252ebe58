/* The web page: web/index.html, app.js, style.css and icon.svg built into the binary (the
 * assembler's .incbin, rows in web/assets.def) and served at GET / and GET /ui/<name>,
 * public like /healthz (the page asks for the bearer token itself and sends it on /v1).
 * Nothing is read from disk at run time, so the binary alone serves the page wherever it
 * is installed (container, systemd unit, build tree). */
#include "api/api.h"

#include <string.h>

/* each asset: qd_web_<sym>[] up to qd_web_<sym>_end[] in .rodata (the path is relative
 * to the directory make runs in: the repository's top) */
#define QD_WEB_ASSET(sym, file, ctype)                                                        \
	__asm__(".pushsection .rodata.qd_web,\"a\",@progbits\n"                              \
		".balign 16\n"                                                                 \
		".globl qd_web_" #sym "\n.hidden qd_web_" #sym "\nqd_web_" #sym ":\n"          \
		".incbin \"web/" file "\"\n"                                                   \
		".globl qd_web_" #sym "_end\n.hidden qd_web_" #sym "_end\nqd_web_" #sym "_end:\n" \
		".byte 0\n"                                                                    \
		".popsection\n");                                                              \
	extern const unsigned char qd_web_##sym[], qd_web_##sym##_end[];
#include "web/assets.def"
#undef QD_WEB_ASSET

struct web_asset {
	const char *name, *content_type;
	const unsigned char *data, *end;
};

static const struct web_asset assets[] = {
#define QD_WEB_ASSET(sym, file, ctype) { file, ctype, qd_web_##sym, qd_web_##sym##_end },
#include "web/assets.def"
#undef QD_WEB_ASSET
};

/* The page loads only its own files and talks only to this server: no inline script can
 * run even if a server string slipped into the markup. */
#define QD_WEB_CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " \
		   "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct web_asset *asset_find(const char *name)
{
	for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
		if (!strcmp(assets[i].name, name))
			return &assets[i];
	return NULL;
}

/* 200 with the bytes (ETag: the first 16 hex digits of their sha256), or 304 when
 * If-None-Match holds that tag. */
static int send_asset(struct qd_req *r, const struct web_asset *a)
{
	size_t n = (size_t)(a->end - a->data);
	char hex[65], etag[72];
	qd_sha256_hex(a->data, n, hex);
	hex[16] = 0;
	snprintf(etag, sizeof etag, "\"%s\"", hex);
	int rc;
	if (qd_api_etag_match(qd_req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH), hex))
		rc = qd_req_empty(r, MHD_HTTP_NOT_MODIFIED);
	else
		rc = qd_req_static(r, 200, a->content_type, a->data, n);
	if (rc)
		return rc;
	qd_req_add_header(r, MHD_HTTP_HEADER_ETAG, etag);
	/* revalidate on every load, so a new binary's page is seen at once */
	qd_req_add_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	qd_req_add_header(r, "X-Content-Type-Options", "nosniff");
	qd_req_add_header(r, "Referrer-Policy", "no-referrer");
	qd_req_add_header(r, "Content-Security-Policy", QD_WEB_CSP);
	return 0;
}

int qd_api_ui_index(struct qd_req *r)
{
	return send_asset(r, asset_find("index.html"));
}

int qd_api_ui_file(struct qd_req *r)
{
	const struct web_asset *a = asset_find(r->id);
	if (!a)
		return qd_err_set(&r->err, QD_ENOT_FOUND, "path", "no file '%s' in the web page", r->id);
	return send_asset(r, a);
}
