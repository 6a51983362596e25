/* cli.h — command-line plumbing shared by the subcommands. */
#ifndef SP_CORE_CLI_H
#define SP_CORE_CLI_H

#include <stdbool.h>
#include <stdio.h>

struct sp_config;
struct sp_pgembed;
struct sp_plugins;

/* Flag → config option ("--listen" → "listen"). */
struct sp_cli_flag {
	const char *flag;
	const char *option;
};

/* Options given on the command line, re-applied after every config reload. */
struct sp_cli_overrides {
	int n;
	char **keys, **values;
};

struct sp_cli_common {
	const char *config; /* --config FILE, borrowed from argv */
	struct sp_cli_overrides *overrides;
	int nrest;
	char **rest; /* arguments not consumed (borrowed from argv) */
};

/* Parses --config/--database/--state-dir, the given extra flags (each takes a value)
 * and --help. Returns -1 to go on, or an exit code (0 after --help, 2 on error). */
int sp_cli_parse_common(int argc, char **argv, const struct sp_cli_flag *extra,
                        struct sp_cli_common *out, void (*usage)(FILE *));
void sp_cli_common_free(struct sp_cli_common *c);
void sp_cli_overrides_free(struct sp_cli_overrides *o);
/* Loads the file (or SPEARHEAD_CONFIG, or none), applies overrides, validates. */
struct sp_config *sp_cli_load_config(const char *path, const struct sp_cli_overrides *o, char *err,
                                     size_t errlen);

/* Database for a command: the configured URL, or the embedded cluster (*pg set). */
int sp_open_database(const struct sp_config *cfg, struct sp_pgembed **pg, const char **url,
                     char *err, size_t errlen);
/* Core then plugin migrations. A plugin whose migration fails is marked failed. */
int sp_run_migrations(const char *url, struct sp_plugins *plugins, bool retry_failed, int *applied);

#endif
