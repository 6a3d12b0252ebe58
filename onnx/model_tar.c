/* A model as a tar (onnx/model_tar.h): streaming extraction with zlib's gzread, which reads
 * a gzip stream and passes a plain file through unchanged. ustar / GNU / pax headers:
 * ustar's prefix field, GNU 'L' long names, pax 'x' path and size records ('g' global
 * headers are skipped); base-256 sizes for members over 8 GiB. */
#define _GNU_SOURCE
#include "onnx/model_tar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define TAR_BLOCK 512
#define TAR_MAX_MEMBERS 4096
#define TAR_MAX_NAME 4096
#define TAR_MAX_PAX (64 * 1024)
#define TAR_CHUNK (64 * 1024)

enum qd_model_form qd_model_form_of(const char *path)
{
	uint8_t b[TAR_BLOCK];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return QD_MODEL_FORM_ONNX;
	ssize_t n = pread(fd, b, sizeof b, 0);
	close(fd);
	if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return QD_MODEL_FORM_TAR_GZIP;
	if (n >= 262 && !memcmp(b + 257, "ustar", 5))
		return QD_MODEL_FORM_TAR;
	return QD_MODEL_FORM_ONNX;
}

const char *qd_model_form_name(enum qd_model_form f)
{
	return f == QD_MODEL_FORM_TAR ? "tar" : f == QD_MODEL_FORM_TAR_GZIP ? "tar+gzip" : "onnx";
}

void qd_model_tar_info_free(struct qd_model_tar_info *ti)
{
	if (!ti)
		return;
	free(ti->onnx_name);
	json_decref(ti->files);
	ti->onnx_name = NULL;
	ti->files = NULL;
}

struct tar_rd {
	gzFile gz;
	uint64_t member_no;  /* 1-based, for messages */
	struct qd_err *err;
};

/* Exactly n bytes or an error naming what was being read (a short read is truncation). */
static int rd_full(struct tar_rd *t, void *p, size_t n, const char *what)
{
	size_t done = 0;
	while (done < n) {
		unsigned want = (unsigned)(n - done > TAR_CHUNK ? TAR_CHUNK : n - done);
		int r = gzread(t->gz, (uint8_t *)p + done, want);
		if (r <= 0) {
			int zerr = 0;
			const char *zm = gzerror(t->gz, &zerr);
			if (r < 0 && zerr != Z_BUF_ERROR)
				return qd_err_set(t->err, QD_EPARSE, "body",
						  "invalid model tar: corrupt gzip stream in %s (%s)", what,
						  zm ? zm : "zlib error");
			return qd_err_set(t->err, QD_EPARSE, "body",
					  "invalid model tar: truncated in %s", what);
		}
		done += (size_t)r;
	}
	return 0;
}

static int parse_octal(const uint8_t *f, size_t n, uint64_t *v)
{
	if (f[0] & 0x80) {  /* base-256 (GNU), big-endian in the remaining bytes */
		uint64_t x = 0;
		for (size_t i = 1; i < n; i++) {
			if (x >> 56)
				return -1;
			x = (x << 8) | f[i];
		}
		*v = x;
		return 0;
	}
	uint64_t x = 0;
	size_t i = 0;
	while (i < n && f[i] == ' ')
		i++;
	bool any = false;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (x >> 60)
			return -1;
		x = x * 8 + (uint64_t)(f[i] - '0');
		any = true;
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != 0)
			return -1;
	if (!any)
		return -1;
	*v = x;
	return 0;
}

static bool header_ok(const uint8_t *h)
{
	uint64_t want;
	if (parse_octal(h + 148, 8, &want))
		return false;
	uint64_t sum = 0;
	for (int i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	return sum == want;
}

/* Skip n bytes of member data plus its padding to the next block. */
static int rd_skip(struct tar_rd *t, uint64_t n, const char *what)
{
	uint8_t buf[4096];
	uint64_t left = (n + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
	while (left) {
		size_t k = left > sizeof buf ? sizeof buf : (size_t)left;
		int rc = rd_full(t, buf, k, what);
		if (rc)
			return rc;
		left -= k;
	}
	return 0;
}

/* A member's data (n bytes, at most TAR_MAX_PAX) into a new NUL-terminated buffer. */
static int rd_small(struct tar_rd *t, uint64_t n, const char *what, char **out)
{
	if (n > TAR_MAX_PAX)
		return qd_err_set(t->err, QD_EPARSE, "body", "invalid model tar: %s of member %llu is %llu "
				  "bytes (at most %d)", what, (unsigned long long)t->member_no,
				  (unsigned long long)n, TAR_MAX_PAX);
	uint64_t padded = (n + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
	char *b = malloc(padded + 1);
	if (!b)
		return qd_err_set(t->err, QD_ENOMEM, "", "out of memory");
	int rc = rd_full(t, b, (size_t)padded, what);
	if (rc) {
		free(b);
		return rc;
	}
	b[n] = 0;
	*out = b;
	return 0;
}

/* pax records "LEN key=value\n": path and size override the next header's. */
static int pax_parse(struct tar_rd *t, const char *p, size_t n, char **path, uint64_t *size,
		     bool *has_size)
{
	size_t pos = 0;
	while (pos < n) {
		char *end;
		unsigned long long len = strtoull(p + pos, &end, 10);
		if (end == p + pos || *end != ' ' || len < 5 || len > n - pos || p[pos + len - 1] != '\n')
			return qd_err_set(t->err, QD_EPARSE, "body",
					  "invalid model tar: malformed pax header before member %llu",
					  (unsigned long long)t->member_no);
		const char *kv = end + 1, *rec_end = p + pos + len - 1;
		const char *eq = memchr(kv, '=', (size_t)(rec_end - kv));
		if (!eq)
			return qd_err_set(t->err, QD_EPARSE, "body",
					  "invalid model tar: malformed pax record before member %llu",
					  (unsigned long long)t->member_no);
		size_t kl = (size_t)(eq - kv), vl = (size_t)(rec_end - eq - 1);
		if (kl == 4 && !memcmp(kv, "path", 4)) {
			free(*path);
			if (!(*path = strndup(eq + 1, vl)))
				return qd_err_set(t->err, QD_ENOMEM, "", "out of memory");
		} else if (kl == 4 && !memcmp(kv, "size", 4)) {
			char num[32];
			if (vl == 0 || vl >= sizeof num)
				return qd_err_set(t->err, QD_EPARSE, "body", "invalid model tar: bad pax size");
			memcpy(num, eq + 1, vl);
			num[vl] = 0;
			errno = 0;
			unsigned long long v = strtoull(num, &end, 10);
			if (errno || *end)
				return qd_err_set(t->err, QD_EPARSE, "body", "invalid model tar: bad pax size");
			*size = v;
			*has_size = true;
		}
		pos += len;
	}
	return 0;
}

/* Normalize a member name in place: leading "./" dropped, trailing "/" dropped. Refuses an
 * absolute path, a ".." component, and control characters. *empty: nothing left (the
 * archive's "./" itself). */
static int name_check(struct tar_rd *t, char *name, bool *empty)
{
	if (name[0] == '/')
		return qd_err_set(t->err, QD_EINVAL, "body",
				  "invalid model tar: member '%s' has an absolute path", name);
	for (const char *s = name; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '\\')
			return qd_err_set(t->err, QD_EINVAL, "body",
					  "invalid model tar: member %llu has a control character or "
					  "backslash in its name", (unsigned long long)t->member_no);
	char *s = name;
	while (s[0] == '.' && s[1] == '/') {
		s += 2;
		while (*s == '/')
			s++;
	}
	memmove(name, s, strlen(s) + 1);
	size_t n = strlen(name);
	while (n && name[n - 1] == '/')
		name[--n] = 0;
	if (!strcmp(name, "."))
		name[n = 0] = 0;
	for (const char *c = name; *c;) {
		const char *e = strchrnul(c, '/');
		if ((e - c == 2 && c[0] == '.' && c[1] == '.') || (e - c == 1 && c[0] == '.') || e == c)
			return qd_err_set(t->err, QD_EINVAL, "body",
					  "invalid model tar: member '%s' has a '..', '.' or empty path "
					  "component", name);
		c = *e ? e + 1 : e;
	}
	*empty = n == 0;
	return 0;
}

/* Parent directories of rel under dir (members may come without their directory entry). */
static int make_parents(struct tar_rd *t, const char *dir, const char *rel)
{
	char *p = qd_asprintf("%s/%s", dir, rel);
	if (!p)
		return qd_err_set(t->err, QD_ENOMEM, "", "out of memory");
	size_t base = strlen(dir) + 1;
	for (char *s = p + base; (s = strchr(s, '/')); s++) {
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			free(p);
			return qd_err_set(t->err, QD_EIO, "", "cannot create a directory of member '%s': %s",
					  rel, strerror(e));
		}
		*s = '/';
	}
	free(p);
	return 0;
}

static int extract_file(struct tar_rd *t, const char *dir, const char *rel, uint64_t size)
{
	int rc = make_parents(t, dir, rel);
	if (rc)
		return rc;
	char *p = qd_asprintf("%s/%s", dir, rel);
	if (!p)
		return qd_err_set(t->err, QD_ENOMEM, "", "out of memory");
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int e = errno;
	free(p);
	if (fd < 0)
		return e == EEXIST || e == EISDIR
			       ? qd_err_set(t->err, QD_EINVAL, "body",
					    "invalid model tar: member '%s' appears twice", rel)
			       : qd_err_set(t->err, QD_EIO, "", "cannot create member '%s': %s", rel,
					    strerror(e));
	uint8_t *buf = malloc(TAR_CHUNK);
	if (!buf) {
		close(fd);
		return qd_err_set(t->err, QD_ENOMEM, "", "out of memory");
	}
	char what[300];
	snprintf(what, sizeof what, "member '%.250s'", rel);
	uint64_t left = size;
	while (!rc && left) {
		size_t k = left > TAR_CHUNK ? TAR_CHUNK : (size_t)left;
		if (!(rc = rd_full(t, buf, k, what))) {
			for (size_t w = 0; w < k;) {
				ssize_t r = write(fd, buf + w, k - w);
				if (r < 0) {
					rc = qd_err_set(t->err, errno == ENOSPC ? QD_ENO_SPACE : QD_EIO, "",
							"cannot write member '%s': %s", rel, strerror(errno));
					break;
				}
				w += (size_t)r;
			}
			left -= k;
		}
	}
	free(buf);
	if (close(fd) < 0 && !rc)
		rc = qd_err_set(t->err, QD_EIO, "", "cannot write member '%s': %s", rel, strerror(errno));
	if (!rc && size % TAR_BLOCK) {
		uint8_t pad[TAR_BLOCK];
		rc = rd_full(t, pad, TAR_BLOCK - size % TAR_BLOCK, what);
	}
	return rc;
}

static bool is_onnx_name(const char *n)
{
	size_t l = strlen(n);
	return l > 5 && !strcmp(n + l - 5, ".onnx");
}

int qd_model_tar_extract(const char *tar_path, const char *dir, uint64_t max_bytes,
			 struct qd_model_tar_info *out, struct qd_err *err)
{
	struct tar_rd t = { .err = err };
	uint8_t h[TAR_BLOCK];
	char *long_name = NULL, *pax_path = NULL, *name = NULL;
	uint64_t pax_size = 0;
	bool pax_has_size = false, ended = false;
	int rc = 0, n_onnx = 0;
	memset(out, 0, sizeof *out);
	if (!(out->files = json_array()))
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	if (mkdir(dir, 0755) < 0)
		return qd_err_set(err, QD_EIO, "", "cannot create the model directory: %s", strerror(errno));
	int fd = open(tar_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || !(t.gz = gzdopen(fd, "rb"))) {
		if (fd >= 0)
			close(fd);
		return qd_err_set(err, QD_EIO, "", "cannot open the uploaded tar: %s", strerror(errno));
	}
	gzbuffer(t.gz, TAR_CHUNK);
	for (;;) {
		t.member_no++;
		int r = gzread(t.gz, h, TAR_BLOCK);
		if (r == 0) {
			int zerr = 0;
			gzerror(t.gz, &zerr);
			if (zerr == Z_BUF_ERROR || t.member_no == 1) {
				rc = qd_err_set(err, QD_EPARSE, "body", t.member_no == 1
						? "invalid model tar: the archive is empty"
						: "invalid model tar: truncated gzip stream");
				goto out;
			}
			ended = true;  /* no end-of-archive blocks: accepted, like GNU tar */
			break;
		}
		if (r != TAR_BLOCK) {
			if (r < 0)
				rc = rd_full(&t, h, TAR_BLOCK, "a header");
			else
				rc = qd_err_set(err, QD_EPARSE, "body",
						"invalid model tar: truncated in the header of member %llu",
						(unsigned long long)t.member_no);
			goto out;
		}
		bool zero = true;
		for (int i = 0; i < TAR_BLOCK && zero; i++)
			zero = !h[i];
		if (zero) {
			ended = true;
			break;
		}
		if (!header_ok(h)) {
			rc = qd_err_set(err, QD_EPARSE, "body",
					t.member_no == 1 ? "invalid model tar: not a tar archive (bad header checksum)"
							 : "invalid model tar: corrupt header (bad checksum) at member %llu",
					(unsigned long long)t.member_no);
			goto out;
		}
		if (t.member_no > TAR_MAX_MEMBERS) {
			rc = qd_err_set(err, QD_EINVAL, "body", "invalid model tar: more than %d members",
					TAR_MAX_MEMBERS);
			goto out;
		}
		uint64_t size;
		if (parse_octal(h + 124, 12, &size)) {
			rc = qd_err_set(err, QD_EPARSE, "body", "invalid model tar: bad size field in member %llu",
					(unsigned long long)t.member_no);
			goto out;
		}
		char type = (char)h[156];
		if (type == 'L' || type == 'x' || type == 'g' || type == 'K') {
			char *data = NULL;
			if (type == 'g' || type == 'K') {
				/* global pax headers carry nothing a model needs; a long link target only
				 * matters to a link member, refused below */
				if ((rc = rd_skip(&t, size, "an extended header")))
					goto out;
				continue;
			}
			if ((rc = rd_small(&t, size, type == 'L' ? "long name" : "pax header", &data)))
				goto out;
			if (type == 'L') {
				free(long_name);
				long_name = data;
			} else {
				rc = pax_parse(&t, data, (size_t)size, &pax_path, &pax_size, &pax_has_size);
				free(data);
				if (rc)
					goto out;
			}
			t.member_no--;  /* the extension belongs to the next member */
			continue;
		}
		if (pax_has_size)
			size = pax_size;
		free(name);
		if (pax_path)
			name = pax_path;
		else if (long_name)
			name = long_name;
		else {
			char nm[101], pf[156] = "";
			memcpy(nm, h, 100);
			nm[100] = 0;
			if (!memcmp(h + 257, "ustar", 5) && h[345]) {
				memcpy(pf, h + 345, 155);
				pf[155] = 0;
			}
			name = *pf ? qd_asprintf("%s/%s", pf, nm) : strdup(nm);
			if (!name) {
				rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
				goto out;
			}
		}
		if (name != long_name)
			free(long_name);
		pax_path = long_name = NULL;
		pax_has_size = false;
		if (strlen(name) > TAR_MAX_NAME) {
			rc = qd_err_set(err, QD_EINVAL, "body", "invalid model tar: member %llu has a name over %d bytes",
					(unsigned long long)t.member_no, TAR_MAX_NAME);
			goto out;
		}
		bool empty = false;
		if ((rc = name_check(&t, name, &empty)))
			goto out;
		switch (type) {
		case '5':
			if (!empty) {
				char *p = qd_asprintf("%s/%s", dir, name);
				if (!p || ((rc = make_parents(&t, dir, name)) == 0 && mkdir(p, 0755) < 0 &&
					   errno != EEXIST))
					rc = p ? qd_err_set(err, QD_EIO, "", "cannot create directory '%s'", name)
					       : qd_err_set(err, QD_ENOMEM, "", "out of memory");
				free(p);
				if (rc)
					goto out;
			}
			if ((rc = rd_skip(&t, size, "a directory entry")))
				goto out;
			continue;
		case '0':
		case '\0':
		case '7':
			break;
		default: {
			const char *what = type == '1' ? "a hard link" : type == '2' ? "a symbolic link"
					 : type == '3' ? "a character device" : type == '4' ? "a block device"
					 : type == '6' ? "a FIFO" : "of an unsupported type";
			rc = qd_err_set(err, QD_EINVAL, "body",
					"invalid model tar: member '%s' is %s; a model tar holds only regular "
					"files and directories", empty ? "." : name, what);
			goto out;
		}
		}
		if (empty) {
			rc = qd_err_set(err, QD_EINVAL, "body", "invalid model tar: member %llu has an empty name",
					(unsigned long long)t.member_no);
			goto out;
		}
		if (max_bytes && (size > max_bytes || out->total_bytes + size > max_bytes)) {
			rc = qd_err_set(err, QD_ETOO_LARGE, "body",
					"model tar too large: member '%s' (%llu bytes) takes the extracted size "
					"past the limit of %llu bytes", name, (unsigned long long)size,
					(unsigned long long)max_bytes);
			goto out;
		}
		if ((rc = extract_file(&t, dir, name, size)))
			goto out;
		out->total_bytes += size;
		if (!strchr(name, '/') && is_onnx_name(name)) {
			if (++n_onnx > 1) {
				rc = qd_err_set(err, QD_EINVAL, "body",
						"invalid model tar: two .onnx files at its top ('%s' and '%s'); it "
						"must hold exactly one model", out->onnx_name, name);
				goto out;
			}
			if (!(out->onnx_name = strdup(name))) {
				rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
				goto out;
			}
		}
		json_t *f = json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)size);
		if (!f || json_array_append_new(out->files, f)) {
			rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
			goto out;
		}
	}
	if (ended) {
		/* the rest must be readable to its end: a truncated or corrupt gzip trailer
		 * is an error even after the end-of-archive block */
		uint8_t tail[4096];
		int r;
		while ((r = gzread(t.gz, tail, sizeof tail)) > 0)
			;
		if (r < 0) {
			int zerr = 0;
			const char *zm = gzerror(t.gz, &zerr);
			rc = qd_err_set(err, QD_EPARSE, "body", "invalid model tar: %s after the archive's end",
					zerr == Z_BUF_ERROR ? "truncated gzip stream" : zm ? zm : "corrupt gzip stream");
			goto out;
		}
	}
	if (!n_onnx)
		rc = qd_err_set(err, QD_EINVAL, "body",
				"invalid model tar: no .onnx file at its top (a model tar holds one "
				"<name>.onnx and the external data files it references)");
out:
	free(name);
	free(long_name);
	free(pax_path);
	int zc = gzclose(t.gz);
	if (!rc && zc == Z_BUF_ERROR)
		rc = qd_err_set(err, QD_EPARSE, "body", "invalid model tar: truncated gzip stream");
	if (rc)
		qd_model_tar_info_free(out);
	return rc;
}
