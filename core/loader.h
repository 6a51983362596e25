/* loader.h — finds, checks, initialises and unloads plugins (libltdl). */
#ifndef SP_CORE_LOADER_H
#define SP_CORE_LOADER_H

#include <spearhead/plugin.h>

struct sp_core;
struct sp_config;
struct sp_plugins;

enum sp_plugin_status {
	SP_PLUGIN_LOADED,   /* module open and descriptor accepted, not initialised yet */
	SP_PLUGIN_RUNNING,  /* init succeeded */
	SP_PLUGIN_REJECTED, /* not loadable: missing symbol, ABI mismatch, bad name */
	SP_PLUGIN_FAILED,   /* init or migration failed */
};

/* Opens every plugin named by cfg (plugins_load from plugin_dir, plus everything in
 * plugin_path) and checks its descriptor. Problems are logged and recorded; this
 * never fails as a whole. */
struct sp_plugins *sp_plugins_discover(const struct sp_config *cfg);
/* Re-reads [plugin.NAME] sections after a configuration reload. */
/* Returns the number of plugins whose section is invalid (they keep their previous
 * file settings). */
int sp_plugins_reload_file_settings(struct sp_plugins *ps, const struct sp_config *cfg);
/* Runs init of every accepted plugin in core; failures are logged and left out. */
void sp_plugins_init(struct sp_plugins *ps, struct sp_core *core);
/* Calls shutdown of running plugins and removes what they registered. */
void sp_plugins_shutdown(struct sp_plugins *ps);
/* Closes the modules and frees everything. */
void sp_plugins_free(struct sp_plugins *ps);

size_t sp_plugins_len(const struct sp_plugins *ps);
struct sp_plugin *sp_plugins_at(const struct sp_plugins *ps, size_t i);
struct sp_plugin *sp_plugins_find(const struct sp_plugins *ps, const char *name);
/* running=true counts running plugins, false counts rejected or failed ones. */
int sp_plugins_count(const struct sp_plugins *ps, bool running);

const char *sp_plugin_name(const struct sp_plugin *p);
const struct sp_plugin_desc *sp_plugin_desc(const struct sp_plugin *p); /* NULL if rejected */
enum sp_plugin_status sp_plugin_status(const struct sp_plugin *p);
/* Marks a plugin failed (e.g. its migration failed) so it is not initialised. */
void sp_plugin_mark_failed(struct sp_plugin *p, const char *why);
/* {name, version, abi, description, status, error?, path, routes[]} (new reference). */
json_t *sp_plugin_info(const struct sp_plugin *p, const struct sp_core *core);
/* The settings schema as JSON Schema (new reference). */
json_t *sp_plugin_settings_schema(const struct sp_plugin *p);
/* Validates input (borrowed; values typed, or strings from a config file when
 * from_strings) against the schema. Returns a new object with only the given keys,
 * or NULL with errors (new object field → message) in *errors. */
json_t *sp_plugin_settings_check(const struct sp_plugin *p, const json_t *input, bool from_strings,
                                 json_t **errors);
/* Effective settings: defaults ← config file ← stored (borrowed, may be NULL). Applies
 * them, calling reload when the plugin runs. Returns 0 or -1 (logged). */
int sp_plugin_apply_settings(struct sp_plugin *p, const json_t *stored);
const json_t *sp_plugin_current_settings(const struct sp_plugin *p);
/* Records something the plugin owns, so it is undone when the plugin goes away. */
struct sp_core *sp_plugin_core(const struct sp_plugin *p);
/* What init() stored (borrowed). */
void *sp_plugin_state(const struct sp_plugin *p);

#endif
