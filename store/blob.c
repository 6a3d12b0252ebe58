/* store/ blobs: content-addressed files <data_dir>/blobs/ab/cdef... named by sha256.
 * Writers stream into <data_dir>/tmp/ and hash as they go; commit fsyncs, renames into
 * place and fsyncs the directory, so a blob file is either complete or absent.
 * A full disk (ENOSPC, EDQUOT) is QD_ENO_SPACE (507), other failures QD_EIO; either way
 * the temp file is removed by abort/commit and nothing is left half-written. */
#define _GNU_SOURCE
#include "store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct qd_blob_writer {
	struct qd_store *st;
	int fd;
	char *tmp_path;
	struct qd_sha256 sha;
	bool sha_live;
	uint64_t size;
};

/* QD_ENO_SPACE for a full disk or quota, QD_EIO otherwise. */
static int io_code(int e)
{
	return e == ENOSPC || e == EDQUOT ? QD_ENO_SPACE : QD_EIO;
}

bool st_sha_valid(const char *sha)
{
	if (!sha)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f')))
			return false;
	return sha[64] == '\0';
}

size_t qd_blob_path_max(const struct qd_store *st) { return st->blob_path_max; }

int qd_blob_path(const struct qd_store *st, const char *sha, char *out, size_t outsz,
		 struct qd_err *err)
{
	if (!st_sha_valid(sha))
		return qd_err_set(err, QD_EINVAL, "sha256", "invalid sha256 '%.80s'", sha ? sha : "");
	int n = snprintf(out, outsz, "%s/%.2s/%s", st->blob_dir, sha, sha + 2);
	if (n < 0 || (size_t)n >= outsz)
		return qd_err_set(err, QD_EINVAL, "", "blob path buffer too small (%zu bytes)", outsz);
	return 0;
}

bool qd_blob_exists(const struct qd_store *st, const char *sha)
{
	char path[4096];
	struct stat sb;
	return qd_blob_path(st, sha, path, sizeof path, NULL) == 0 && stat(path, &sb) == 0 &&
	       S_ISREG(sb.st_mode);
}

static int fsync_dir(const char *dir, struct qd_err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return qd_err_set(err, QD_EIO, "", "cannot open directory '%s': %s", dir, strerror(errno));
	int rc = 0;
	if (fsync(fd) < 0)
		rc = qd_err_set(err, QD_EIO, "", "cannot fsync directory '%s': %s", dir, strerror(errno));
	close(fd);
	return rc;
}

int qd_blob_writer_open(struct qd_store *st, struct qd_blob_writer **out, struct qd_err *err)
{
	*out = NULL;
	struct qd_blob_writer *w = qd_calloc(1, sizeof *w);
	if (!w)
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	w->st = st;
	w->fd = -1;
	w->tmp_path = qd_asprintf("%s/blob.XXXXXX", st->tmp_dir);
	if (!w->tmp_path) {
		free(w);
		return qd_err_set(err, QD_ENOMEM, "", "out of memory");
	}
	w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
	if (w->fd < 0) {
		int rc = qd_err_set(err, io_code(errno), "", "cannot create temp file in '%s': %s",
				    st->tmp_dir, strerror(errno));
		free(w->tmp_path);
		free(w);
		return rc;
	}
	if (qd_sha256_init(&w->sha) < 0) {
		qd_blob_writer_abort(w);
		return qd_err_set(err, QD_ENOMEM, "", "cannot initialise sha256");
	}
	w->sha_live = true;
	*out = w;
	return 0;
}

int qd_blob_writer_write(struct qd_blob_writer *w, const void *p, size_t n, struct qd_err *err)
{
	const uint8_t *c = p;
	size_t left = n;
	while (left) {
		ssize_t k = write(w->fd, c, left);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return qd_err_set(err, io_code(errno), "",
					  "cannot write blob temp file '%s': %s", w->tmp_path,
					  strerror(errno));
		c += k;
		left -= (size_t)k;
	}
	qd_sha256_update(&w->sha, p, n);
	w->size += n;
	return 0;
}

uint64_t qd_blob_writer_size(const struct qd_blob_writer *w) { return w->size; }

void qd_blob_writer_abort(struct qd_blob_writer *w)
{
	if (!w)
		return;
	if (w->sha_live) {
		char hex[65];
		qd_sha256_final(&w->sha, hex);  /* frees the digest context */
	}
	if (w->fd >= 0)
		close(w->fd);
	unlink(w->tmp_path);
	free(w->tmp_path);
	free(w);
}

int qd_blob_writer_commit(struct qd_blob_writer *w, char sha[65], uint64_t *size,
			  struct qd_err *err)
{
	int rc = 0;
	char *dir = NULL, *path = NULL;
	qd_sha256_final(&w->sha, sha);
	w->sha_live = false;
	if (fsync(w->fd) < 0) {
		rc = qd_err_set(err, io_code(errno), "", "cannot fsync blob temp file '%s': %s",
				w->tmp_path, strerror(errno));
		goto out;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		rc = qd_err_set(err, io_code(errno), "", "cannot close blob temp file '%s': %s",
				w->tmp_path, strerror(errno));
		goto out;
	}
	w->fd = -1;
	dir = qd_asprintf("%s/%.2s", w->st->blob_dir, sha);
	path = qd_asprintf("%s/%s", dir ? dir : "", sha + 2);
	if (!dir || !path) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = qd_err_set(err, io_code(errno), "", "cannot create '%s': %s", dir, strerror(errno));
		goto out;
	}
	struct stat sb;
	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == w->size) {
		/* Identical content already stored: keep the existing file. */
		goto out;
	}
	if (rename(w->tmp_path, path) < 0) {
		rc = qd_err_set(err, io_code(errno), "", "cannot move blob into '%s': %s", path,
				strerror(errno));
		goto out;
	}
	if ((rc = fsync_dir(dir, err)) < 0 || (rc = fsync_dir(w->st->blob_dir, err)) < 0)
		goto out;
out:
	if (rc == 0 && size)
		*size = w->size;
	if (w->fd >= 0)
		close(w->fd);
	unlink(w->tmp_path);  /* no-op after a successful rename */
	free(w->tmp_path);
	free(w);
	free(dir);
	free(path);
	if (rc < 0)
		sha[0] = '\0';
	return rc;
}

int qd_blob_put_file(struct qd_store *st, const char *path, char sha[65], uint64_t *size,
		     struct qd_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qd_err_set(err, errno == ENOENT ? QD_ENOT_FOUND : QD_EIO, "path",
				  "cannot open '%s': %s", path, strerror(errno));
	struct qd_blob_writer *w = NULL;
	int rc = qd_blob_writer_open(st, &w, err);
	if (rc < 0)
		goto out;
	static const size_t chunk = 1 << 16;
	uint8_t *buf = malloc(chunk);
	if (!buf) {
		rc = qd_err_set(err, QD_ENOMEM, "", "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t k = read(fd, buf, chunk);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = qd_err_set(err, QD_EIO, "path", "cannot read '%s': %s", path,
					strerror(errno));
			break;
		}
		if (k == 0)
			break;
		if ((rc = qd_blob_writer_write(w, buf, (size_t)k, err)) < 0)
			break;
	}
	free(buf);
	if (rc == 0) {
		rc = qd_blob_writer_commit(w, sha, size, err);
		w = NULL;
	}
out:
	qd_blob_writer_abort(w);
	close(fd);
	return rc;
}

int qd_blob_put_mem(struct qd_store *st, const void *p, size_t n, char sha[65],
		    uint64_t *size, struct qd_err *err)
{
	struct qd_blob_writer *w = NULL;
	int rc = qd_blob_writer_open(st, &w, err);
	if (rc < 0)
		return rc;
	if ((rc = qd_blob_writer_write(w, p, n, err)) < 0) {
		qd_blob_writer_abort(w);
		return rc;
	}
	return qd_blob_writer_commit(w, sha, size, err);
}

int64_t st_blob_refs(struct qd_store_conn *c, const char *sha, struct qd_err *err)
{
	sqlite3_stmt *s = st_stmt(c, ST_BLOB_REFS, err);
	if (!s)
		return -c->last_code;
	st_bind_text(s, 1, sha);
	int rc = sqlite3_step(s);
	int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0)
				     : st_db_err(c, rc, "count blob references", err);
	sqlite3_reset(s);
	return n;
}

int st_blob_release(struct qd_store_conn *c, const char *sha, struct qd_err *err)
{
	int64_t n = st_blob_refs(c, sha, err);
	if (n < 0)
		return (int)n;
	if (n > 0)
		return 0;
	char path[4096];
	int rc = qd_blob_path(c->st, sha, path, sizeof path, err);
	if (rc < 0)
		return rc;
	if (unlink(path) < 0 && errno != ENOENT)
		qd_log(QD_LOG_WARN, NULL, "store: cannot remove blob '%s': %s (left for the "
		       "start-up sweep)", path, strerror(errno));
	return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb; (void)flag; (void)f;
	return remove(p);
}

/* A stale directory in tmp/ (a model tar extracted for validation when the daemon died). */
static int rm_tree(const char *path)
{
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int st_blob_sweep(struct qd_store_conn *c, int *tmp_removed, int *blobs_removed,
		  struct qd_err *err)
{
	struct qd_store *st = c->st;
	char path[4096 + 300];
	int rc = 0;
	*tmp_removed = *blobs_removed = 0;
	/* Everything in tmp/ is stale: we hold the data-directory lock. */
	DIR *d = opendir(st->tmp_dir);
	if (!d)
		return qd_err_set(err, QD_EIO, "", "cannot open '%s': %s", st->tmp_dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", st->tmp_dir, e->d_name);
		if (unlink(path) == 0 ||
		    ((errno == EISDIR || errno == EPERM) && rm_tree(path) == 0))  /* a model tar's */
			(*tmp_removed)++;
	}
	closedir(d);
	/* Blobs no row references: a crash between blob commit and row insert, or between
	 * row delete and unlink. */
	d = opendir(st->blob_dir);
	if (!d)
		return qd_err_set(err, QD_EIO, "", "cannot open '%s': %s", st->blob_dir,
				  strerror(errno));
	while (rc == 0 && (e = readdir(d))) {
		const char *p = e->d_name;
		if (strlen(p) != 2 || !strchr("0123456789abcdef", p[0]) ||
		    !strchr("0123456789abcdef", p[1]))
			continue;
		char sub[4096];
		snprintf(sub, sizeof sub, "%s/%s", st->blob_dir, p);
		DIR *sd = opendir(sub);
		if (!sd)
			continue;
		struct dirent *f;
		while (rc == 0 && (f = readdir(sd))) {
			if (f->d_name[0] == '.')
				continue;
			char sha[65];
			snprintf(sha, sizeof sha, "%.2s%.62s", p, f->d_name);
			if (strlen(f->d_name) != 62 || !st_sha_valid(sha))
				continue;
			int64_t n = st_blob_refs(c, sha, err);
			if (n < 0) {
				rc = (int)n;
				break;
			}
			snprintf(path, sizeof path, "%s/%s", sub, f->d_name);
			if (n == 0 && unlink(path) == 0)
				(*blobs_removed)++;
		}
		closedir(sd);
	}
	closedir(d);
	return rc;
}
