/* main.c — the `spearhead` command: dispatch to subcommands, shared flag parsing,
 * and the small commands (migrate, check-config, plugins). */
#include "build-config.h"
#include "cli.h"
#include "config.h"
#include "demo.h"
#include "loader.h"
#include "log.h"
#include "pgembed.h"
#include "serve.h"
#include "users.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/thread.h>
#include <sodium.h>

/* ---- shared flag parsing ---- */

static void overrides_add(struct sp_cli_overrides *o, const char *key, const char *value)
{
	o->keys = realloc(o->keys, (size_t)(o->n + 1) * sizeof(char *));
	o->values = realloc(o->values, (size_t)(o->n + 1) * sizeof(char *));
	if (!o->keys || !o->values)
		abort();
	o->keys[o->n] = sp_strdup(key);
	o->values[o->n] = sp_strdup(value);
	o->n++;
}

void sp_cli_overrides_free(struct sp_cli_overrides *o)
{
	if (!o)
		return;
	for (int i = 0; i < o->n; i++) {
		free(o->keys[i]);
		free(o->values[i]);
	}
	free(o->keys);
	free(o->values);
	free(o);
}

void sp_cli_common_free(struct sp_cli_common *c)
{
	sp_cli_overrides_free(c->overrides);
	free(c->rest);
	c->overrides = NULL;
	c->rest = NULL;
}

int sp_cli_parse_common(int argc, char **argv, const struct sp_cli_flag *extra,
                        struct sp_cli_common *out, void (*usage)(FILE *))
{
	static const struct sp_cli_flag common[] = {
		{ "--database", "database_url" },
		{ "--state-dir", "state_dir" },
		{ NULL, NULL },
	};
	memset(out, 0, sizeof(*out));
	out->overrides = sp_calloc(1, sizeof(*out->overrides));
	out->rest = sp_calloc((size_t)argc + 1, sizeof(char *));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(stdout);
			sp_cli_common_free(out);
			return 0;
		}
		/* --flag=value and --flag value */
		char name[64];
		const char *value = NULL;
		const char *eq = strchr(arg, '=');
		if (eq && strncmp(arg, "--", 2) == 0) {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
			value = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", arg);
		}
		const char *option = NULL;
		bool is_config = strcmp(name, "--config") == 0;
		for (const struct sp_cli_flag *f = common; !is_config && f->flag; f++)
			if (strcmp(name, f->flag) == 0)
				option = f->option;
		for (const struct sp_cli_flag *f = extra; !is_config && !option && f && f->flag;
		     f++)
			if (strcmp(name, f->flag) == 0)
				option = f->option;
		if (!is_config && !option) {
			out->rest[out->nrest++] = argv[i];
			continue;
		}
		if (!value) {
			if (i + 1 >= argc) {
				fprintf(stderr, "spearhead: %s needs a value\n", name);
				usage(stderr);
				sp_cli_common_free(out);
				return 2;
			}
			value = argv[++i];
		}
		if (is_config)
			out->config = value;
		else
			overrides_add(out->overrides, option, value);
	}
	if (!out->config)
		out->config = getenv("SPEARHEAD_CONFIG");
	return -1;
}

struct sp_config *sp_cli_load_config(const char *path, const struct sp_cli_overrides *o, char *err,
                                     size_t errlen)
{
	struct sp_config *cfg = sp_config_load(path && *path ? path : NULL, err, errlen);
	if (!cfg)
		return NULL;
	for (int i = 0; o && i < o->n; i++) {
		char inner[512];
		if (sp_config_set(cfg, o->keys[i], o->values[i], inner, sizeof(inner)) < 0) {
			snprintf(err, errlen, "command line: %s", inner);
			sp_config_free(cfg);
			return NULL;
		}
	}
	if (sp_config_validate(cfg, err, errlen) < 0) {
		sp_config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* ---- migrate ---- */

static void migrate_usage(FILE *out)
{
	fprintf(out, "Usage: spearhead migrate [--config FILE] [--database URL | --state-dir DIR]\n"
	             "\n"
	             "Applies pending schema migrations of the core and of every plugin that is\n"
	             "configured, each once, in order, inside a transaction. Migrations recorded\n"
	             "as failed are retried. Safe to run while servers are running.\n");
}

static int cmd_migrate(int argc, char **argv)
{
	struct sp_cli_common c;
	int rc = sp_cli_parse_common(argc, argv, NULL, &c, migrate_usage);
	if (rc >= 0)
		return rc;
	if (c.nrest) {
		fprintf(stderr, "spearhead migrate: unknown argument '%s'\n", c.rest[0]);
		sp_cli_common_free(&c);
		return 2;
	}
	char err[1024];
	struct sp_config *cfg = sp_cli_load_config(c.config, c.overrides, err, sizeof(err));
	sp_cli_common_free(&c);
	if (!cfg) {
		fprintf(stderr, "spearhead migrate: %s\n", err);
		return 2;
	}
	struct sp_pgembed *pg = NULL;
	const char *url;
	rc = 1;
	if (sp_open_database(cfg, &pg, &url, err, sizeof(err)) < 0) {
		fprintf(stderr, "spearhead migrate: %s\n", err);
		sp_config_free(cfg);
		return 1;
	}
	struct sp_plugins *plugins = sp_plugins_discover(cfg);
	int applied = 0;
	if (sp_run_migrations(url, plugins, true, &applied) == 0) {
		int failed = 0;
		for (size_t i = 0; i < sp_plugins_len(plugins); i++)
			failed += sp_plugin_status(sp_plugins_at(plugins, i)) == SP_PLUGIN_FAILED;
		printf("%d migration(s) applied%s\n", applied,
		       failed ? "; some plugins failed (see above)" : "; schema up to date");
		rc = failed ? 1 : 0;
	}
	sp_plugins_free(plugins);
	if (pg)
		sp_pgembed_stop(pg);
	sp_config_free(cfg);
	return rc;
}

/* ---- check-config ---- */

static void check_usage(FILE *out)
{
	fprintf(out,
	        "Usage: spearhead check-config [--config FILE] [--defaults] [other serve flags]\n"
	        "\n"
	        "Validates the configuration (file, SPEARHEAD_* environment, flags) and the\n"
	        "settings given to each plugin, then prints the effective values.\n"
	        "--defaults prints a complete, commented configuration file instead.\n");
}

static int cmd_check_config(int argc, char **argv)
{
	static const struct sp_cli_flag extra[] = {
		{ "--listen", "listen" },
		{ "--workers", "workers" },
		{ "--log-level", "log_level" },
		{ NULL, NULL },
	};
	struct sp_cli_common c;
	int rc = sp_cli_parse_common(argc, argv, extra, &c, check_usage);
	if (rc >= 0)
		return rc;
	for (int i = 0; i < c.nrest; i++) {
		if (strcmp(c.rest[i], "--defaults") == 0) {
			sp_config_write_reference(stdout);
			sp_cli_common_free(&c);
			return 0;
		}
		fprintf(stderr, "spearhead check-config: unknown argument '%s'\n", c.rest[i]);
		sp_cli_common_free(&c);
		return 2;
	}
	char err[1024];
	struct sp_config *cfg = sp_cli_load_config(c.config, c.overrides, err, sizeof(err));
	sp_cli_common_free(&c);
	if (!cfg) {
		fprintf(stderr, "configuration error: %s\n", err);
		return 1;
	}
	struct sp_plugins *plugins = sp_plugins_discover(cfg);
	int bad = sp_plugins_count(plugins, false);
	sp_plugins_free(plugins);
	sp_config_dump(cfg, stdout);
	sp_config_free(cfg);
	if (bad) {
		fprintf(stderr, "configuration OK, but %d plugin(s) cannot be loaded (see above)\n",
		        bad);
		return 1;
	}
	fprintf(stderr, "configuration OK\n");
	return 0;
}

/* ---- plugins ---- */

static void plugins_usage(FILE *out)
{
	fprintf(out, "Usage: spearhead plugins [--config FILE] [--json]\n"
	             "\n"
	             "Lists the plugins the configuration loads, with version, ABI, status and\n"
	             "the reason when one cannot be loaded (the same data as GET /v1/plugins,\n"
	             "without routes: those exist once a server initialises the plugins).\n");
}

static int cmd_plugins(int argc, char **argv)
{
	struct sp_cli_common c;
	int rc = sp_cli_parse_common(argc, argv, NULL, &c, plugins_usage);
	if (rc >= 0)
		return rc;
	bool as_json = false;
	for (int i = 0; i < c.nrest; i++) {
		if (strcmp(c.rest[i], "--json") == 0) {
			as_json = true;
			continue;
		}
		fprintf(stderr, "spearhead plugins: unknown argument '%s'\n", c.rest[i]);
		sp_cli_common_free(&c);
		return 2;
	}
	char err[1024];
	struct sp_config *cfg = sp_cli_load_config(c.config, c.overrides, err, sizeof(err));
	sp_cli_common_free(&c);
	if (!cfg) {
		fprintf(stderr, "spearhead plugins: %s\n", err);
		return 2;
	}
	sp_log_set_level(SP_LOG_WARN);
	struct sp_plugins *ps = sp_plugins_discover(cfg);
	json_t *items = json_array();
	for (size_t i = 0; i < sp_plugins_len(ps); i++) {
		json_t *info = sp_plugin_info(sp_plugins_at(ps, i), NULL);
		json_object_del(info, "routes");
		json_array_append_new(items, info);
	}
	if (as_json) {
		json_t *doc = json_pack("{s:O}", "items", items);
		json_dumpf(doc, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(doc);
	} else if (json_array_size(items) == 0) {
		printf("no plugins found (plugin_dir %s%s%s)\n", cfg->plugin_dir,
		       cfg->plugin_path[0] ? ", plugin_path " : "", cfg->plugin_path);
	} else {
		printf("%-16s %-10s %-5s %-9s %s\n", "NAME", "VERSION", "ABI", "STATUS",
		       "DESCRIPTION");
		size_t i;
		json_t *it;
		json_array_foreach(items, i, it)
		{
			const char *e = json_string_value(json_object_get(it, "error"));
			const char *v = json_string_value(json_object_get(it, "version"));
			const char *abi = json_string_value(json_object_get(it, "abi"));
			const char *d = json_string_value(json_object_get(it, "description"));
			printf("%-16s %-10s %-5s %-9s %s\n",
			       json_string_value(json_object_get(it, "name")), v ? v : "-",
			       abi ? abi : "-", json_string_value(json_object_get(it, "status")),
			       e ? e : (d ? d : ""));
		}
	}
	json_decref(items);
	sp_plugins_free(ps);
	sp_config_free(cfg);
	return 0;
}

/* ---- dispatch ---- */

static void usage(FILE *out)
{
	fprintf(out,
	        "Spearhead %s — platform core for innovation clusters.\n"
	        "\n"
	        "Usage: spearhead COMMAND [OPTIONS]\n"
	        "\n"
	        "Commands:\n"
	        "  serve          run the HTTP/JSON server (embedded PostgreSQL by default)\n"
	        "  migrate        apply pending database migrations\n"
	        "  check-config   validate the configuration and print the effective values\n"
	        "  plugins        list the plugins that would be loaded and their status\n"
	        "  user add       create a user (e.g. the first admin)\n"
	        "  token create   create an API token for a user (printed once)\n"
	        "\n"
	        "Every command takes --help. Database commands take --config FILE,\n"
	        "--database URL and --state-dir DIR. `spearhead --version` prints the version.\n",
	        PACKAGE_VERSION);
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "spearhead: libsodium could not initialise\n");
		return 1;
	}
	/* Work-pool threads hand results back to the loop: make libevent thread-aware. */
	if (evthread_use_pthreads() < 0) {
		fprintf(stderr, "spearhead: libevent has no thread support\n");
		return 1;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("spearhead %s (plugin ABI %d.%d)\n", PACKAGE_VERSION, SP_ABI_MAJOR,
		       SP_ABI_MINOR);
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "serve", sp_cmd_serve },
		{ "migrate", cmd_migrate },
		{ "check-config", cmd_check_config },
		{ "plugins", cmd_plugins },
		{ "user", sp_cmd_user },
		{ "token", sp_cmd_token },
		{ "demo", sp_cmd_demo },
	};
	for (size_t i = 0; i < SP_ARRAY_LEN(cmds); i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "spearhead: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
