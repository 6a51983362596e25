/* config.c — INI file (parsed by inih), SPEARHEAD_* environment, flags; one table. */
#include "config.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

enum opt_type { OPT_STR, OPT_LONG, OPT_BOOL };

struct opt {
	const char *section, *key, *env;
	enum opt_type type;
	const char *def;
	long min, max;
	size_t offset;
	const char *help;
};

#define OFF(f) offsetof(struct sp_config, f)
static const struct opt options[] = {
	{ "server", "listen", "SPEARHEAD_LISTEN", OPT_STR, "127.0.0.1:8080", 0, 0, OFF(listen),
	  "address and port to listen on (HOST:PORT; port 0 picks a free one)" },
	{ "server", "workers", "SPEARHEAD_WORKERS", OPT_LONG, "0", 0, 256, OFF(workers),
	  "worker processes sharing the listening socket; 0 = number of CPUs" },
	{ "server", "max_connections", "SPEARHEAD_MAX_CONNECTIONS", OPT_LONG, "4096", 1, 1000000,
	  OFF(max_connections), "open client connections per worker; past it clients get 503" },
	{ "server", "max_body_bytes", "SPEARHEAD_MAX_BODY_BYTES", OPT_LONG, "1048576", 1024,
	  1073741824, OFF(max_body_bytes), "largest request body; larger ones get 413" },
	{ "server", "max_header_bytes", "SPEARHEAD_MAX_HEADER_BYTES", OPT_LONG, "16384", 1024,
	  1048576, OFF(max_header_bytes), "largest request head (request line + headers)" },
	{ "server", "max_headers", "SPEARHEAD_MAX_HEADERS", OPT_LONG, "100", 8, 10000,
	  OFF(max_headers), "most header fields in a request; more get 431" },
	{ "server", "header_timeout_s", "SPEARHEAD_HEADER_TIMEOUT_S", OPT_LONG, "10", 1, 3600,
	  OFF(header_timeout_s),
	  "time allowed to receive a whole request from its first byte (stops slowloris)" },
	{ "server", "idle_timeout_s", "SPEARHEAD_IDLE_TIMEOUT_S", OPT_LONG, "60", 1, 86400,
	  OFF(idle_timeout_s), "close a connection silent for this long" },
	{ "server", "json_max_depth", "SPEARHEAD_JSON_MAX_DEPTH", OPT_LONG, "32", 2, 1000,
	  OFF(json_max_depth), "deepest nesting accepted in a JSON body" },
	{ "server", "shutdown_timeout_s", "SPEARHEAD_SHUTDOWN_TIMEOUT_S", OPT_LONG, "20", 0, 3600,
	  OFF(shutdown_timeout_s), "on SIGTERM, how long in-flight requests may still run" },
	{ "server", "trusted_proxies", "SPEARHEAD_TRUSTED_PROXIES", OPT_STR, "", 0, 0,
	  OFF(trusted_proxies),
	  "reverse proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For "
	  "names the client; empty = none, the peer is the client" },
	{ "server", "port_file", "SPEARHEAD_PORT_FILE", OPT_STR, "", 0, 0, OFF(port_file),
	  "write the bound port number to this file once listening (empty = don't)" },
	{ "database", "url", "SPEARHEAD_DATABASE_URL", OPT_STR, "", 0, 0, OFF(database_url),
	  "postgresql:// URL; empty = run an embedded PostgreSQL in the state directory" },
	{ "database", "pool_size", "SPEARHEAD_DATABASE_POOL_SIZE", OPT_LONG, "8", 1, 1000,
	  OFF(pool_size), "connections per worker" },
	{ "database", "queue_timeout_ms", "SPEARHEAD_DATABASE_QUEUE_TIMEOUT_MS", OPT_LONG, "5000",
	  1, 600000, OFF(queue_timeout_ms), "a query waiting longer for a connection fails (503)" },
	{ "database", "statement_timeout_ms", "SPEARHEAD_DATABASE_STATEMENT_TIMEOUT_MS", OPT_LONG,
	  "30000", 0, 86400000, OFF(statement_timeout_ms),
	  "PostgreSQL statement_timeout; 0 = none" },
	{ "database", "lock_timeout_ms", "SPEARHEAD_DATABASE_LOCK_TIMEOUT_MS", OPT_LONG, "3000", 0,
	  86400000, OFF(lock_timeout_ms), "PostgreSQL lock_timeout; 0 = none" },
	{ "database", "migrate_on_start", "SPEARHEAD_MIGRATE_ON_START", OPT_BOOL, "true", 0, 0,
	  OFF(migrate_on_start), "apply pending migrations when serve starts" },
	{ "auth", "session_ttl_s", "SPEARHEAD_SESSION_TTL_S", OPT_LONG, "43200", 60, 31536000,
	  OFF(session_ttl_s), "lifetime of a login session token" },
	{ "auth", "login_max_failures", "SPEARHEAD_LOGIN_MAX_FAILURES", OPT_LONG, "10", 1, 100000,
	  OFF(login_max_failures), "failed logins per account and per address before 429" },
	{ "auth", "login_window_s", "SPEARHEAD_LOGIN_WINDOW_S", OPT_LONG, "900", 1, 86400,
	  OFF(login_window_s), "window in which failed logins are counted" },
	{ "auth", "password_threads", "SPEARHEAD_PASSWORD_THREADS", OPT_LONG, "2", 1, 64,
	  OFF(password_threads), "threads per worker hashing passwords (argon2id)" },
	{ "jobs", "lease_s", "SPEARHEAD_JOBS_LEASE_S", OPT_LONG, "120", 2, 86400, OFF(jobs_lease_s),
	  "a running job whose worker died is taken over after this many seconds" },
	{ "paths", "state_dir", "SPEARHEAD_STATE_DIR", OPT_STR, "spearhead-state", 0, 0,
	  OFF(state_dir), "directory for the embedded PostgreSQL and runtime files" },
	{ "paths", "plugin_dir", "SPEARHEAD_PLUGIN_DIR", OPT_STR, SP_PLUGINDIR, 0, 0,
	  OFF(plugin_dir), "directory of the installed plugins" },
	{ "paths", "plugin_path", "SPEARHEAD_PLUGIN_PATH", OPT_STR, "", 0, 0, OFF(plugin_path),
	  "extra plugin directories (':'-separated); every plugin found there is loaded" },
	{ "log", "level", "SPEARHEAD_LOG_LEVEL", OPT_STR, "info", 0, 0, OFF(log_level),
	  "error, warn, info or debug" },
	{ "plugins", "load", "SPEARHEAD_PLUGINS", OPT_STR, "*", 0, 0, OFF(plugins_load),
	  "plugins to load from plugin_dir, comma-separated; * = every plugin found" },
};

/* Short names accepted by sp_config_set (flags) besides "section.key". */
static const struct opt *find_opt(const char *section, const char *key)
{
	for (size_t i = 0; i < SP_ARRAY_LEN(options); i++) {
		const struct opt *o = &options[i];
		if (section && strcmp(o->section, section) != 0)
			continue;
		if (strcmp(o->key, key) == 0)
			return o;
		if (!section) {
			char full[96];
			snprintf(full, sizeof(full), "%s_%s", o->section, o->key);
			if (strcmp(full, key) == 0)
				return o;
		}
	}
	return NULL;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (size_t i = 0; i < SP_ARRAY_LEN(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int set_opt(struct sp_config *cfg, const struct opt *o, const char *value, char *err,
                   size_t errlen)
{
	char *base = (char *)cfg;
	switch (o->type) {
	case OPT_STR: {
		char **slot = (char **)(base + o->offset);
		free(*slot);
		*slot = sp_strdup(value);
		return 0;
	}
	case OPT_LONG: {
		long v;
		if (sp_parse_long(value, o->min, o->max, &v) < 0) {
			snprintf(err, errlen, "%s.%s: '%s' is not an integer in [%ld, %ld]",
			         o->section, o->key, value, o->min, o->max);
			return -1;
		}
		*(long *)(base + o->offset) = v;
		return 0;
	}
	case OPT_BOOL:
		if (parse_bool(value, (bool *)(base + o->offset)) < 0) {
			snprintf(err, errlen, "%s.%s: '%s' is not a boolean (true/false)",
			         o->section, o->key, value);
			return -1;
		}
		return 0;
	}
	return -1;
}

struct ini_state {
	struct sp_config *cfg;
	char *err;
	size_t errlen;
	bool failed;
};

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	if (st->failed)
		return 0;
	if (strncmp(section, "plugin.", 7) == 0) {
		const char *plugin = section + 7;
		if (!sp_is_ident(plugin) || !sp_is_ident(name)) {
			snprintf(st->err, st->errlen,
			         "[%s] %s: plugin and setting names are [a-z0-9_]+", section, name);
			st->failed = true;
			return 0;
		}
		json_t *obj = json_object_get(st->cfg->plugin_settings, plugin);
		if (!obj) {
			obj = json_object();
			json_object_set_new(st->cfg->plugin_settings, plugin, obj);
		}
		json_t *s = json_string(value);
		if (!s) {
			snprintf(st->err, st->errlen, "[%s] %s: value is not valid UTF-8", section,
			         name);
			st->failed = true;
			return 0;
		}
		json_object_set_new(obj, name, s);
		return 1;
	}
	const struct opt *o = find_opt(section, name);
	if (!o) {
		snprintf(st->err, st->errlen, "unknown option '%s' in section [%s]", name, section);
		st->failed = true;
		return 0;
	}
	if (set_opt(st->cfg, o, value, st->err, st->errlen) < 0) {
		st->failed = true;
		return 0;
	}
	return 1;
}

struct sp_config *sp_config_load(const char *path, char *err, size_t errlen)
{
	struct sp_config *cfg = sp_calloc(1, sizeof(*cfg));
	cfg->plugin_settings = json_object();
	for (size_t i = 0; i < SP_ARRAY_LEN(options); i++)
		if (set_opt(cfg, &options[i], options[i].def, err, errlen) < 0)
			abort(); /* a bad default is a programming error */
	if (path) {
		cfg->source = sp_strdup(path);
		struct ini_state st = { cfg, err, errlen, false };
		char inner[512] = "";
		st.err = inner;
		st.errlen = sizeof(inner);
		int rc = ini_parse(path, ini_cb, &st);
		if (rc < 0) {
			snprintf(err, errlen, "cannot read config file %s: %s", path,
			         strerror(errno));
			goto fail;
		}
		if (rc > 0 || st.failed) {
			if (st.failed)
				snprintf(err, errlen, "%s:%d: %s", path, rc, inner);
			else
				snprintf(err, errlen, "%s:%d: syntax error (expected key = value)",
				         path, rc);
			goto fail;
		}
	}
	for (size_t i = 0; i < SP_ARRAY_LEN(options); i++) {
		const char *v = getenv(options[i].env);
		if (v && set_opt(cfg, &options[i], v, err, errlen) < 0) {
			char inner[512];
			snprintf(inner, sizeof(inner), "%s", err);
			snprintf(err, errlen, "environment %s: %s", options[i].env, inner);
			goto fail;
		}
	}
	return cfg;
fail:
	sp_config_free(cfg);
	return NULL;
}

void sp_config_free(struct sp_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < SP_ARRAY_LEN(options); i++)
		if (options[i].type == OPT_STR)
			free(*(char **)((char *)cfg + options[i].offset));
	json_decref(cfg->plugin_settings);
	free(cfg->source);
	free(cfg);
}

int sp_config_set(struct sp_config *cfg, const char *key, const char *value, char *err,
                  size_t errlen)
{
	const struct opt *o = find_opt(NULL, key);
	if (!o) {
		snprintf(err, errlen, "unknown option '%s'", key);
		return -1;
	}
	return set_opt(cfg, o, value, err, errlen);
}

int sp_parse_listen(const char *listen, char *host, size_t hostlen, unsigned *port)
{
	const char *colon = strrchr(listen, ':');
	if (!colon || colon == listen)
		return -1;
	const char *h = listen;
	size_t hl = (size_t)(colon - listen);
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return -1;
		h++;
		hl -= 2;
	}
	if (hl >= hostlen)
		return -1;
	long p;
	if (sp_parse_long(colon + 1, 0, 65535, &p) < 0)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (unsigned)p;
	return 0;
}

int sp_config_validate(const struct sp_config *cfg, char *err, size_t errlen)
{
	char host[256];
	unsigned port;
	if (sp_parse_listen(cfg->listen, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "server.listen: '%s' is not HOST:PORT", cfg->listen);
		return -1;
	}
	enum sp_log_level lvl;
	if (sp_log_parse_level(cfg->log_level, &lvl) < 0) {
		snprintf(err, errlen, "log.level: '%s' is not one of error, warn, info, debug",
		         cfg->log_level);
		return -1;
	}
	if (cfg->database_url[0] && strncmp(cfg->database_url, "postgresql://", 13) != 0 &&
	    strncmp(cfg->database_url, "postgres://", 11) != 0) {
		snprintf(err, errlen, "database.url must be a postgresql:// URL");
		return -1;
	}
	char why[160];
	struct sp_proxies *proxies = sp_proxies_parse(cfg->trusted_proxies, why, sizeof(why));
	if (!proxies) {
		snprintf(err, errlen, "server.trusted_proxies: %s", why);
		return -1;
	}
	sp_proxies_free(proxies);
	if (!cfg->state_dir[0]) {
		snprintf(err, errlen, "paths.state_dir must not be empty");
		return -1;
	}
	return 0;
}

void sp_config_write_reference(FILE *out)
{
	fprintf(out,
	        "# Spearhead configuration. Lines starting with # or ; are comments.\n"
	        "# Every option is shown with its default. Environment variables\n"
	        "# (named on each option) override the file; command-line flags override both.\n");
	const char *section = "";
	for (size_t i = 0; i < SP_ARRAY_LEN(options); i++) {
		const struct opt *o = &options[i];
		if (strcmp(section, o->section) != 0) {
			section = o->section;
			fprintf(out, "\n[%s]\n", section);
		}
		fprintf(out, "# %s (env %s)\n", o->help, o->env);
		fprintf(out, "%s = %s\n", o->key, o->def);
	}
	fprintf(out,
	        "\n# Plugin settings: one section per plugin, validated by the plugin's schema;\n"
	        "# values stored through the API (PUT /v1/plugins/NAME/settings) take precedence.\n"
	        "# [plugin.example]\n# greeting = Hello\n");
}

void sp_config_dump(const struct sp_config *cfg, FILE *out)
{
	const char *section = "";
	for (size_t i = 0; i < SP_ARRAY_LEN(options); i++) {
		const struct opt *o = &options[i];
		if (strcmp(section, o->section) != 0) {
			section = o->section;
			fprintf(out, "[%s]\n", section);
		}
		const char *base = (const char *)cfg;
		switch (o->type) {
		case OPT_STR:
			fprintf(out, "%s = %s\n", o->key, *(char *const *)(base + o->offset));
			break;
		case OPT_LONG:
			fprintf(out, "%s = %ld\n", o->key, *(const long *)(base + o->offset));
			break;
		case OPT_BOOL:
			fprintf(out, "%s = %s\n", o->key,
			        *(const bool *)(base + o->offset) ? "true" : "false");
			break;
		}
	}
	const char *name;
	json_t *obj;
	json_object_foreach(cfg->plugin_settings, name, obj)
	{
		fprintf(out, "[plugin.%s]\n", name);
		const char *k;
		json_t *v;
		json_object_foreach(obj, k, v)
		{
			fprintf(out, "%s = %s\n", k, json_string_value(v));
		}
	}
}
