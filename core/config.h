/* config.h — the configuration: one declarative table gives every option its type,
 * default, bounds, environment variable and help; file < environment < flags. */
#ifndef SP_CORE_CONFIG_H
#define SP_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <jansson.h>

struct sp_config {
	/* [server] */
	char *listen;          /* HOST:PORT */
	long workers;          /* 0 = number of CPUs */
	long max_connections;  /* past it new clients get 503 */
	long max_body_bytes;   /* → 413 */
	long max_header_bytes; /* → 431 */
	long max_headers;      /* → 431 */
	long header_timeout_s; /* total deadline to receive a request head (slowloris) */
	long idle_timeout_s;   /* keep-alive / read inactivity */
	long json_max_depth;
	long shutdown_timeout_s; /* in-flight requests get this long on SIGTERM */
	char *trusted_proxies;   /* "10.0.0.0/8, ::1": X-Forwarded-For from these is believed */
	char *port_file;         /* write the bound port here (tests, port 0) */
	/* [database] */
	char *database_url; /* empty = embedded PostgreSQL in state_dir */
	long pool_size;
	long queue_timeout_ms;
	long statement_timeout_ms;
	long lock_timeout_ms;
	bool migrate_on_start;
	/* [auth] */
	long session_ttl_s;
	long login_max_failures; /* per account and per address, per window */
	long login_window_s;
	long password_threads; /* argon2id work off the event loop */
	/* [jobs] */
	long jobs_lease_s; /* a claimed job returns to the queue after this long */
	/* [paths] */
	char *state_dir;
	char *plugin_dir;
	char *plugin_path; /* extra dirs, ':'-separated; every plugin there is loaded */
	/* [log] */
	char *log_level;
	/* [plugins] */
	char *plugins_load; /* comma-separated names from plugin_dir; "*" = all found */
	/* [plugin.NAME] key = value → {"NAME": {"key": "value"}} (strings; typed later) */
	json_t *plugin_settings;
	char *source; /* file it came from, or NULL */
};

/* Fills defaults, then the file (if path non-NULL), then SPEARHEAD_* variables.
 * Returns NULL with a message naming the file, line and option in err. */
struct sp_config *sp_config_load(const char *path, char *err, size_t errlen);
void sp_config_free(struct sp_config *cfg);
/* Sets one option by its name ("listen", "database_url", ...) from a string, as a
 * command-line flag does. Returns 0 or -1 with err. */
int sp_config_set(struct sp_config *cfg, const char *key, const char *value, char *err,
                  size_t errlen);
/* Cross-option checks (listen address parses, ...). */
int sp_config_validate(const struct sp_config *cfg, char *err, size_t errlen);
/* Writes a complete annotated config file with every option and its default. */
void sp_config_write_reference(FILE *out);
/* Writes the effective values. */
void sp_config_dump(const struct sp_config *cfg, FILE *out);
/* Splits "host:port" ("[::1]:8080" too) into host (>= 256 bytes) and port. */
int sp_parse_listen(const char *listen, char *host, size_t hostlen, unsigned *port);

#endif
