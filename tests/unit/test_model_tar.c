/* Unit tests for the model tar reader (onnx/model_tar.c): tars written here member by
 * member (ustar headers with their checksum; gzip through zlib) are extracted and compared
 * byte for byte; ./ prefixes, ustar prefix, GNU long names, pax path and size records and
 * directories work; links, devices, ../, absolute paths, duplicates, two or no top-level
 * .onnx, truncation of the tar and of the gzip stream and the byte limit are refused with
 * the member named. */
#define _GNU_SOURCE
#include "daemon/daemon.h"
#include "onnx/model_tar.h"
#include "qd_test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct tbuf {
	unsigned char *p;
	size_t n;
};

static void put(struct tbuf *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void header(struct tbuf *b, const char *name, char type, size_t size, const char *prefix)
{
	unsigned char h[512] = { 0 };
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	char sz[32];
	snprintf(sz, sizeof sz, "%011llo", (unsigned long long)size);
	memcpy(h + 124, sz, 11);
	snprintf((char *)h + 136, 12, "%011o", 0);
	h[156] = (unsigned char)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	if (prefix)
		snprintf((char *)h + 345, 155, "%s", prefix);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	put(b, h, 512);
}

static void member(struct tbuf *b, const char *name, char type, const void *data, size_t n)
{
	header(b, name, type, n, NULL);
	put(b, data, n);
	static const unsigned char zero[512];
	if (n % 512)
		put(b, zero, 512 - n % 512);
}

static void finish(struct tbuf *b)
{
	static const unsigned char zero[1024];
	put(b, zero, sizeof zero);
}

static void write_file(const char *path, const void *p, size_t n, bool gz)
{
	if (gz) {
		gzFile f = gzopen(path, "wb");
		gzwrite(f, p, (unsigned)n);
		gzclose(f);
	} else {
		FILE *f = fopen(path, "wb");
		fwrite(p, 1, n, f);
		fclose(f);
	}
}

static bool file_is(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	unsigned char *b = malloc(n + 1);
	size_t got = fread(b, 1, n + 1, f);
	fclose(f);
	bool ok = got == n && !memcmp(b, p, n);
	free(b);
	return ok;
}

static char g_tar[256], g_out[256];

/* Extract b (as written, or gzip-compressed) into a fresh g_out; *e gets the error. */
static int extract(const struct tbuf *b, bool gz, uint64_t max, struct qd_model_tar_info *ti,
		   struct qd_err *e)
{
	write_file(g_tar, b->p, b->n, gz);
	qd_rm_rf(g_out);
	memset(e, 0, sizeof *e);
	return qd_model_tar_extract(g_tar, g_out, max, ti, e);
}

/* A bad tar: refused with code and a message holding needle. */
static void refused(const struct tbuf *b, bool gz, uint64_t max, int code, const char *needle)
{
	struct qd_model_tar_info ti;
	struct qd_err e;
	int rc = extract(b, gz, max, &ti, &e);
	CHECKF(rc == -code && strstr(e.msg, needle), "rc %d code %d: %s (want '%s')", rc, e.code, e.msg, needle);
	CHECK(ti.files == NULL && ti.onnx_name == NULL);
}

int main(void)
{
	char dir[] = "/tmp/qd-test-mtar-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	snprintf(g_tar, sizeof g_tar, "%s/m.tar", dir);
	snprintf(g_out, sizeof g_out, "%s/out", dir);
	unsigned char onnx[700], data[1500];
	for (size_t i = 0; i < sizeof onnx; i++)
		onnx[i] = (unsigned char)(i * 7);
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(i * 13 + 1);
	struct qd_model_tar_info ti;
	struct qd_err e;
	char p[300];

	/* the form is told by magic bytes */
	struct tbuf good = { 0 };
	member(&good, "./", '5', NULL, 0);
	member(&good, "./m.onnx", '0', onnx, sizeof onnx);
	member(&good, "./sub/w.bin", '0', data, sizeof data);
	finish(&good);
	write_file(g_tar, good.p, good.n, false);
	CHECK_EQ_INT(qd_model_form_of(g_tar), QD_MODEL_FORM_TAR);
	write_file(g_tar, good.p, good.n, true);
	CHECK_EQ_INT(qd_model_form_of(g_tar), QD_MODEL_FORM_TAR_GZIP);
	write_file(g_tar, onnx, sizeof onnx, false);
	CHECK_EQ_INT(qd_model_form_of(g_tar), QD_MODEL_FORM_ONNX);

	/* plain and gzip: the same files, byte for byte */
	for (int gz = 0; gz < 2; gz++) {
		CHECK_EQ_INT(extract(&good, gz, 0, &ti, &e), 0);
		CHECK_STR(ti.onnx_name, "m.onnx");
		CHECK_EQ_INT(json_array_size(ti.files), 2);
		CHECK_STR(json_string_value(json_object_get(json_array_get(ti.files, 1), "name")), "sub/w.bin");
		CHECK_EQ_INT(ti.total_bytes, sizeof onnx + sizeof data);
		snprintf(p, sizeof p, "%s/m.onnx", g_out);
		CHECK(file_is(p, onnx, sizeof onnx));
		snprintf(p, sizeof p, "%s/sub/w.bin", g_out);
		CHECK(file_is(p, data, sizeof data));
		qd_model_tar_info_free(&ti);
	}
	/* the limit counts unpacked bytes: exactly at it passes, one below is 413 naming the member */
	CHECK_EQ_INT(extract(&good, true, sizeof onnx + sizeof data, &ti, &e), 0);
	qd_model_tar_info_free(&ti);
	refused(&good, true, sizeof onnx + sizeof data - 1, QD_ETOO_LARGE, "'sub/w.bin'");

	/* ustar prefix, GNU long name, pax path + size, no end-of-archive blocks */
	struct tbuf ext = { 0 };
	header(&ext, "m.onnx", '0', sizeof onnx, NULL);
	put(&ext, onnx, sizeof onnx);
	put(&ext, (unsigned char[512]){ 0 }, 512 - sizeof onnx % 512);
	header(&ext, "w.bin", '0', sizeof data, "pre");
	put(&ext, data, sizeof data);
	put(&ext, (unsigned char[512]){ 0 }, 512 - sizeof data % 512);
	char longn[200];
	memset(longn, 'a', sizeof longn - 1);
	longn[sizeof longn - 1] = 0;
	member(&ext, "././@LongLink", 'L', longn, strlen(longn) + 1);
	member(&ext, "short", '0', data, 10);
	const char pax[] = "18 path=pax/p.bin\n10 size=5\n";
	member(&ext, "PaxHeader", 'x', pax, sizeof pax - 1);
	member(&ext, "ignored", '0', data, 999);  /* the header says 999, pax says 5 */
	/* a 5-byte member written by the pax header's size: re-do it with 5 bytes */
	ext.n -= 1024;
	put(&ext, data, 5);
	put(&ext, (unsigned char[512]){ 0 }, 507);
	CHECK_EQ_INT(extract(&ext, false, 0, &ti, &e), 0);
	CHECKF(!e.code, "%s", e.msg);
	snprintf(p, sizeof p, "%s/pre/w.bin", g_out);
	CHECK(file_is(p, data, sizeof data));
	snprintf(p, sizeof p, "%s/%s", g_out, longn);
	CHECK(file_is(p, data, 10));
	snprintf(p, sizeof p, "%s/pax/p.bin", g_out);
	CHECK(file_is(p, data, 5));
	CHECK_EQ_INT(json_array_size(ti.files), 4);
	qd_model_tar_info_free(&ti);

	/* refused, naming the member */
	struct {
		const char *name;
		char type;
		int code;
		const char *needle;
	} bad[] = {
		{ "../x", '0', QD_EINVAL, "'../x'" },
		{ "a/../../x", '0', QD_EINVAL, "'..'" },
		{ "/etc/x", '0', QD_EINVAL, "'/etc/x' has an absolute path" },
		{ "l", '2', QD_EINVAL, "'l' is a symbolic link" },
		{ "h", '1', QD_EINVAL, "'h' is a hard link" },
		{ "c", '3', QD_EINVAL, "'c' is a character device" },
		{ "b", '4', QD_EINVAL, "'b' is a block device" },
		{ "f", '6', QD_EINVAL, "'f' is a FIFO" },
		{ "m.onnx", '0', QD_EINVAL, "'m.onnx' appears twice" },
		{ "n.onnx", '0', QD_EINVAL, "two .onnx files" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct tbuf b = { 0 };
		member(&b, "m.onnx", '0', onnx, sizeof onnx);
		member(&b, bad[i].name, bad[i].type, data, bad[i].type == '0' ? 10 : 0);
		finish(&b);
		refused(&b, false, 0, bad[i].code, bad[i].needle);
		free(b.p);
	}
	struct tbuf none = { 0 };
	member(&none, "sub/m.onnx", '0', onnx, sizeof onnx);
	finish(&none);
	refused(&none, false, 0, QD_EINVAL, "no .onnx file at its top");
	free(none.p);

	/* truncation: inside a member, inside a header, of the gzip stream; a corrupt header */
	struct tbuf cut = { .p = malloc(good.n), .n = 2048 + 512 + 100 };
	memcpy(cut.p, good.p, cut.n);
	refused(&cut, false, 0, QD_EPARSE, "truncated in member 'sub/w.bin'");
	cut.n = 2048 + 100;
	refused(&cut, false, 0, QD_EPARSE, "truncated in the header");
	write_file(g_tar, good.p, good.n, true);
	struct stat sb;
	stat(g_tar, &sb);
	FILE *f = fopen(g_tar, "rb");
	struct tbuf gzb = { .p = malloc((size_t)sb.st_size), .n = (size_t)sb.st_size - 6 };
	CHECK(fread(gzb.p, 1, (size_t)sb.st_size, f) == (size_t)sb.st_size);
	fclose(f);
	write_file(g_tar, gzb.p, gzb.n, false);
	qd_rm_rf(g_out);
	memset(&e, 0, sizeof e);
	int rc = qd_model_tar_extract(g_tar, g_out, 0, &ti, &e);
	CHECKF(rc == -QD_EPARSE && strstr(e.msg, "truncated"), "%d %s", rc, e.msg);
	memcpy(cut.p, good.p, 1536);
	cut.p[512 + 10] ^= 1;  /* the second header's name: its checksum no longer matches */
	cut.n = 1536;
	refused(&cut, false, 0, QD_EPARSE, "bad checksum) at member 2");
	cut.p[512 + 10] ^= 1;
	cut.p[10] ^= 1;
	refused(&cut, false, 0, QD_EPARSE, "not a tar archive");
	struct tbuf empty = { 0 };
	finish(&empty);
	refused(&empty, false, 0, QD_EINVAL, "no .onnx file");
	free(empty.p);

	free(good.p);
	free(ext.p);
	free(cut.p);
	free(gzb.p);
	qd_rm_rf(dir);
	return qd_test_done("test_model_tar");
}
