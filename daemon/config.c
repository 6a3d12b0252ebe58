/* `quantd serve` configuration: defaults, config file (key = value lines or one JSON
 * object), QUANTD_* environment variables and command-line flags, in increasing order of
 * precedence. The option rows live in daemon/options.def. */
#include "daemon/daemon.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum qd_opt_kind { QD_KIND_STR, QD_KIND_INT, QD_KIND_BOOL };

struct qd_opt_row {
	const char *key;
	enum qd_opt_kind kind;
	const char *dflt;
	const char *help;
	size_t off;
};

static const struct qd_opt_row opt_rows[] = {
#define QD_OPT(key, kind, dflt, help) { #key, QD_KIND_##kind, dflt, help, offsetof(struct qd_config, key) },
#include "daemon/options.def"
#undef QD_OPT
};
_Static_assert(QD_ARRAY_LEN(opt_rows) == QD_OPT__COUNT, "options.def rows");

/* Numeric limits checked after loading: key, min, max. */
static const struct { const char *key; int64_t min, max; } opt_limits[] = {
	{ "workers", 1, 256 }, { "engine_threads", 1, 256 },
	{ "max_upload_bytes", 1, INT64_MAX }, { "max_queued", 1, 10000000 },
	{ "max_attempts", 1, 1000 }, { "grace_seconds", 0, 86400 },
	{ "max_connections", 4, 100000 }, { "conn_timeout", 1, 86400 },
	{ "max_json_bytes", 1024, 1LL << 32 }, { "watchdog_seconds", 0, 86400 },
	{ "max_job_seconds", 0, 31LL * 86400 }, { "max_job_memory_mb", 0, 1LL << 30 },
	{ "max_output_mb", 0, 1LL << 30 }, { "kill_grace_seconds", 0, 3600 },
	{ "max_workers_per_job", 0, 256 },
};

static const char *const log_levels[] = { "debug", "info", "warn", "error" };

static const struct qd_opt_row *opt_find(const char *name, size_t len)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_rows); i++) {
		const char *k = opt_rows[i].key;
		if (strlen(k) != len)
			continue;
		size_t j = 0;
		for (; j < len; j++) {
			char c = name[j] == '-' ? '_' : name[j];
			if (c != k[j])
				break;
		}
		if (j == len)
			return &opt_rows[i];
	}
	return NULL;
}

static int parse_int(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	while (isspace((unsigned char)*s))
		s++;
	long long v = strtoll(s, &end, 10);
	if (end == s || errno)
		return -1;
	/* size suffixes for byte options: k, M, G (powers of 1024) */
	int64_t mul = 1;
	if (*end == 'k' || *end == 'K') mul = 1024, end++;
	else if (*end == 'm' || *end == 'M') mul = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G') mul = 1024LL * 1024 * 1024, end++;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -1;
	if (mul > 1 && (v > INT64_MAX / mul || v < INT64_MIN / mul))
		return -1;
	*out = (int64_t)v * mul;
	return 0;
}

static int opt_set(struct qd_config *cfg, const struct qd_opt_row *r, const char *val,
		   enum qd_opt_source src, const char *where, struct qd_err *err)
{
	void *p = (char *)cfg + r->off;
	switch (r->kind) {
	case QD_KIND_STR: {
		char *s = qd_strdup(val);
		if (!s)
			return qd_err_set(err, QD_ENOMEM, r->key, "out of memory");
		free(*(char **)p);
		*(char **)p = s;
		break;
	}
	case QD_KIND_INT:
		if (parse_int(val, (int64_t *)p))
			return qd_err_set(err, QD_EINVAL, r->key, "invalid integer '%s' for '%s' (%s)",
					  val, r->key, where);
		break;
	case QD_KIND_BOOL:
		if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes"))
			*(int *)p = 1;
		else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no"))
			*(int *)p = 0;
		else
			return qd_err_set(err, QD_EINVAL, r->key, "invalid boolean '%s' for '%s' (%s)",
					  val, r->key, where);
		break;
	}
	cfg->source[r - opt_rows] = src;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static int load_json_file(struct qd_config *cfg, const char *path, const char *text, struct qd_err *err)
{
	json_error_t je;
	json_t *root = json_loads(text, 0, &je);
	if (!root)
		return qd_err_set(err, QD_EPARSE, "config", "cannot parse config file '%s': line %d: %s",
				  path, je.line, je.text);
	int rc = 0;
	if (!json_is_object(root)) {
		rc = qd_err_set(err, QD_EPARSE, "config", "config file '%s' must hold a JSON object", path);
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v) {
		const struct qd_opt_row *r = opt_find(k, strlen(k));
		if (!r) {
			rc = qd_err_set(err, QD_EINVAL, k, "unknown option '%s' in config file '%s'", k, path);
			goto out;
		}
		char buf[64], where[600];
		const char *val;
		if (json_is_string(v))
			val = json_string_value(v);
		else if (json_is_integer(v))
			snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v)), val = buf;
		else if (json_is_boolean(v))
			val = json_is_true(v) ? "true" : "false";
		else {
			rc = qd_err_set(err, QD_EINVAL, k, "option '%s' in config file '%s' must be a string, integer or boolean", k, path);
			goto out;
		}
		snprintf(where, sizeof where, "config file '%s'", path);
		if ((rc = opt_set(cfg, r, val, QD_SRC_FILE, where, err)))
			goto out;
	}
out:
	json_decref(root);
	return rc;
}

static int load_file(struct qd_config *cfg, const char *path, struct qd_err *err)
{
	struct qd_buf b = { 0 };
	int rc = qd_file_read(path, &b, err);
	if (rc)
		return qd_err_wrap(err, "cannot read config file");
	char *text = b.data ? (char *)b.data : "";
	char *p = text;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '{') {
		rc = load_json_file(cfg, path, text, err);
		goto out;
	}
	int lineno = 0;
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *l = trim(line);
		if (!*l)
			continue;
		char *eq = strchr(l, '=');
		if (!eq) {
			rc = qd_err_set(err, QD_EPARSE, "config", "config file '%s' line %d: expected 'key = value'", path, lineno);
			goto out;
		}
		*eq = 0;
		char *k = trim(l), *v = trim(eq + 1);
		size_t vl = strlen(v);
		if (vl >= 2 && ((v[0] == '"' && v[vl - 1] == '"') || (v[0] == '\'' && v[vl - 1] == '\''))) {
			v[vl - 1] = 0;
			v++;
		}
		const struct qd_opt_row *r = opt_find(k, strlen(k));
		if (!r) {
			rc = qd_err_set(err, QD_EINVAL, k, "unknown option '%s' in config file '%s' line %d", k, path, lineno);
			goto out;
		}
		char where[600];
		snprintf(where, sizeof where, "config file '%s' line %d", path, lineno);
		if ((rc = opt_set(cfg, r, v, QD_SRC_FILE, where, err)))
			goto out;
	}
out:
	qd_buf_free(&b);
	return rc;
}

static int read_token_file(struct qd_config *cfg, struct qd_err *err)
{
	struct qd_buf b = { 0 };
	if (qd_file_read(cfg->token_file, &b, err)) {
		qd_buf_free(&b);
		return qd_err_wrap(err, "cannot read token file");
	}
	char *t = trim(b.data ? (char *)b.data : "");
	char *nl = strchr(t, '\n');
	if (nl)
		*nl = 0;
	t = trim(t);
	int rc = 0;
	if (!*t)
		rc = qd_err_set(err, QD_EINVAL, "token_file", "token file '%s' is empty", cfg->token_file);
	else {
		free(cfg->token);
		cfg->token = qd_strdup(t);
		cfg->source[QD_OPT_ID_token] = cfg->source[QD_OPT_ID_token_file];
	}
	qd_buf_free(&b);
	return rc;
}

void qd_config_free(struct qd_config *cfg)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_rows); i++)
		if (opt_rows[i].kind == QD_KIND_STR) {
			char **p = (char **)((char *)cfg + opt_rows[i].off);
			free(*p);
			*p = NULL;
		}
	free(cfg->config_file);
	cfg->config_file = NULL;
}

int qd_config_load(struct qd_config *cfg, int argc, char **argv, int *help, struct qd_err *err)
{
	int rc;
	memset(cfg, 0, sizeof *cfg);
	*help = 0;
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_rows); i++)
		if ((rc = opt_set(cfg, &opt_rows[i], opt_rows[i].dflt, QD_SRC_DEFAULT, "default", err)))
			return rc;

	/* pass 1: --help and --config */
	const char *cfile = getenv("QUANTD_CONFIG");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			*help = 1;
			return 0;
		}
		if (!strcmp(argv[i], "--config")) {
			if (i + 1 >= argc)
				return qd_err_set(err, QD_EINVAL, "config", "option '--config' needs a value");
			cfile = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9))
			cfile = argv[i] + 9;
	}
	if (cfile && *cfile) {
		cfg->config_file = qd_strdup(cfile);
		if ((rc = load_file(cfg, cfile, err)))
			return rc;
	}

	/* environment: QUANTD_<KEY> */
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_rows); i++) {
		char name[96] = "QUANTD_";
		size_t n = strlen(name);
		for (const char *k = opt_rows[i].key; *k && n < sizeof name - 1; k++)
			name[n++] = (char)toupper((unsigned char)*k);
		name[n] = 0;
		const char *v = getenv(name);
		if (!v)
			continue;
		char where[128];
		snprintf(where, sizeof where, "environment variable %s", name);
		if ((rc = opt_set(cfg, &opt_rows[i], v, QD_SRC_ENV, where, err)))
			return rc;
	}

	/* flags: --key VALUE or --key=VALUE */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--config")) {
			i++;
			continue;
		}
		if (!strncmp(a, "--config=", 9))
			continue;
		if (strncmp(a, "--", 2))
			return qd_err_set(err, QD_EINVAL, a, "unexpected argument '%s'", a);
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const struct qd_opt_row *r = opt_find(name, len);
		if (!r)
			return qd_err_set(err, QD_EINVAL, a, "unknown option '%.*s'", (int)len + 2, a);
		const char *val;
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return qd_err_set(err, QD_EINVAL, r->key, "option '--%.*s' needs a value", (int)len, name);
		char where[160];
		snprintf(where, sizeof where, "option '--%.*s'", (int)len, name);
		if ((rc = opt_set(cfg, r, val, QD_SRC_FLAG, where, err)))
			return rc;
	}

	/* checks */
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_limits); i++) {
		const struct qd_opt_row *r = opt_find(opt_limits[i].key, strlen(opt_limits[i].key));
		int64_t v = *(int64_t *)((char *)cfg + r->off);
		if (v < opt_limits[i].min || v > opt_limits[i].max)
			return qd_err_set(err, QD_EINVAL, r->key, "option '%s' is %lld, must be in [%lld, %lld]",
					  r->key, (long long)v, (long long)opt_limits[i].min,
					  (long long)opt_limits[i].max);
	}
	size_t nl = 0;
	for (; nl < QD_ARRAY_LEN(log_levels); nl++)
		if (!strcmp(cfg->log_level, log_levels[nl]))
			break;
	if (nl == QD_ARRAY_LEN(log_levels))
		return qd_err_set(err, QD_EINVAL, "log_level", "unknown log level '%s' (debug, info, warn, error)",
				  cfg->log_level);
	if (!*cfg->data_dir)
		return qd_err_set(err, QD_EINVAL, "data_dir", "option 'data_dir' must not be empty");
	if (*cfg->token_file && (rc = read_token_file(cfg, err)))
		return rc;
	char *host = NULL;
	int port;
	rc = qd_listen_parse(cfg->listen, &host, &port, err);
	free(host);
	return rc;
}

int qd_config_log_level(const struct qd_config *cfg)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(log_levels); i++)
		if (!strcmp(cfg->log_level, log_levels[i]))
			return (int)i;
	return QD_LOG_INFO;
}

void qd_config_usage(FILE *f)
{
	fprintf(f, "usage: quantd serve [--config FILE] [--OPTION VALUE | --OPTION=VALUE ...]\n\n"
		   "Runs the quantization service: REST API, SQLite job queue and worker pool.\n\n"
		   "options (flag / environment variable / default):\n");
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_rows); i++) {
		char flag[64], env[64];
		size_t n = 0, m = 7;
		memcpy(env, "QUANTD_", 7);
		for (const char *k = opt_rows[i].key; *k; k++) {
			flag[n++] = *k == '_' ? '-' : *k;
			env[m++] = (char)toupper((unsigned char)*k);
		}
		flag[n] = env[m] = 0;
		fprintf(f, "  --%-18s %s\n  %-20s env %s, default '%s'\n", flag, opt_rows[i].help, "",
			env, opt_rows[i].dflt);
	}
	fprintf(f, "  --%-18s %s\n  %-20s %s\n  %-20s env QUANTD_CONFIG, default none\n\n", "config FILE",
		"config file: 'key = value' lines ('#' comments) or one JSON object;", "",
		"keys are the option names above, with '_' or '-'", "");
	fprintf(f, "Precedence: flags > environment > config file > defaults. Integer options accept\n"
		   "k/M/G suffixes (powers of 1024). Listening on a non-loopback address requires a token.\n"
		   "Signals: SIGTERM/SIGINT stop accepting requests, let running jobs finish for\n"
		   "--grace-seconds, requeue the rest and exit 0. Under systemd (NOTIFY_SOCKET set) the\n"
		   "daemon sends READY=1, WATCHDOG=1 and STOPPING=1.\n");
}

void qd_config_log(const struct qd_config *cfg)
{
	static const char *src_names[] = { "default", "file", "env", "flag" };
	for (size_t i = 0; i < QD_ARRAY_LEN(opt_rows); i++) {
		const struct qd_opt_row *r = &opt_rows[i];
		const void *p = (const char *)cfg + r->off;
		char val[512];
		if (r->kind == QD_KIND_STR) {
			const char *s = *(char *const *)p;
			snprintf(val, sizeof val, "%s", !strcmp(r->key, "token") && *s ? "<redacted>" : s);
		} else if (r->kind == QD_KIND_INT)
			snprintf(val, sizeof val, "%lld", (long long)*(const int64_t *)p);
		else
			snprintf(val, sizeof val, "%s", *(const int *)p ? "true" : "false");
		qd_log(QD_LOG_DEBUG, NULL, "config %s = %s (%s)", r->key, val, src_names[cfg->source[i]]);
	}
}

int qd_listen_parse(const char *spec, char **host, int *port, struct qd_err *err)
{
	const char *colon, *h = spec;
	size_t hl;
	*host = NULL;
	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');
		if (!rb || rb[1] != ':')
			return qd_err_set(err, QD_EINVAL, "listen", "invalid listen address '%s' (want [V6]:PORT)", spec);
		h = spec + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			return qd_err_set(err, QD_EINVAL, "listen", "invalid listen address '%s' (want HOST:PORT)", spec);
		hl = (size_t)(colon - spec);
	}
	int64_t p;
	if (parse_int(colon + 1, &p) || p < 0 || p > 65535)
		return qd_err_set(err, QD_EINVAL, "listen", "invalid port in listen address '%s'", spec);
	*host = hl ? strndup(h, hl) : qd_strdup("0.0.0.0");
	if (!*host)
		return qd_err_set(err, QD_ENOMEM, "listen", "out of memory");
	*port = (int)p;
	return 0;
}
