/* loader.c — the one plugin loader. Modules are opened with libltdl by absolute path
 * and validated name only ([a-z0-9_]+), with local symbol binding; each must export
 * one descriptor sp_plugin_<name> whose magic, ABI and size we check before use. A
 * rejected or failing plugin is logged, recorded for /v1/plugins and left out; the
 * core keeps running. */
#include "loader.h"
#include "api.h"
#include "bus.h"
#include "config.h"
#include "curl.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "serve.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ltdl.h>

struct sp_plugin {
	struct sp_core *core;
	char *name;
	char *path; /* absolute, without extension */
	lt_dlhandle handle;
	const struct sp_plugin_desc *desc;
	enum sp_plugin_status status;
	char *error;
	void *state;
	json_t *file_settings; /* from [plugin.NAME], typed (owned) */
	json_t *settings;      /* effective (owned) */
	struct sp_timer *timers;
};

struct sp_plugins {
	struct sp_plugin **items;
	size_t count;
};

static int ltdl_users;

static void set_error(struct sp_plugin *p, enum sp_plugin_status st, const char *why)
{
	p->status = st;
	free(p->error);
	p->error = sp_strdup(why);
}

static void add_item(struct sp_plugins *ps, struct sp_plugin *p)
{
	void *n = realloc(ps->items, (ps->count + 1) * sizeof(*ps->items));
	if (!n)
		abort();
	ps->items = n;
	ps->items[ps->count++] = p;
}

/* Opens dir/name and checks its descriptor. */
static void open_plugin(struct sp_plugins *ps, const char *dir, const char *name)
{
	struct sp_plugin *p = sp_calloc(1, sizeof(*p));
	p->name = sp_strdup(name);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	p->path = sp_strdup(path);
	add_item(ps, p);
	char why[PATH_MAX + 1024];

	for (size_t i = 0; i + 1 < ps->count; i++) {
		if (strcmp(ps->items[i]->name, name) == 0) {
			snprintf(why, sizeof(why),
			         "a plugin named '%s' is already loaded from another directory",
			         name);
			goto reject;
		}
	}
	lt_dladvise advise;
	lt_dladvise_init(&advise);
	lt_dladvise_ext(&advise);
	lt_dladvise_local(&advise);
	p->handle = lt_dlopenadvise(path, advise);
	lt_dladvise_destroy(&advise);
	if (!p->handle) {
		snprintf(why, sizeof(why), "cannot open the module: %s", lt_dlerror());
		goto reject;
	}
	char sym[128];
	snprintf(sym, sizeof(sym), "sp_plugin_%s", name);
	const struct sp_plugin_desc *d = lt_dlsym(p->handle, sym);
	if (!d) {
		snprintf(why, sizeof(why), "the module exports no descriptor '%s'", sym);
		goto reject;
	}
	if (d->magic != SP_PLUGIN_MAGIC) {
		snprintf(why, sizeof(why), "descriptor '%s' has a bad magic number", sym);
		goto reject;
	}
	if (d->abi_major != SP_ABI_MAJOR || d->abi_minor > SP_ABI_MINOR) {
		snprintf(why, sizeof(why),
		         "built for plugin ABI %u.%u, this core provides %u.%u (major must match, "
		         "minor must not be newer): rebuild it against this spearhead-plugin",
		         d->abi_major, d->abi_minor, SP_ABI_MAJOR, SP_ABI_MINOR);
		goto reject;
	}
	if (d->size < offsetof(struct sp_plugin_desc, reserved)) {
		snprintf(why, sizeof(why), "descriptor size %u is too small", d->size);
		goto reject;
	}
	if (!d->name || strcmp(d->name, name) != 0) {
		snprintf(why, sizeof(why), "descriptor name '%s' does not match the file name",
		         d->name ? d->name : "(null)");
		goto reject;
	}
	if (!d->init) {
		snprintf(why, sizeof(why), "descriptor has no init function");
		goto reject;
	}
	p->desc = d;
	p->status = SP_PLUGIN_LOADED;
	sp_info("plugin %s %s found (%s)", name, d->version ? d->version : "?", path);
	return;
reject:
	/* The reason is shown by GET /v1/plugins, so it names no server paths; the log
	 * line does. */
	sp_error("plugin %s rejected (%s): %s", name, path, why);
	set_error(p, SP_PLUGIN_REJECTED, why);
	if (p->handle) {
		lt_dlclose(p->handle);
		p->handle = NULL;
	}
}

/* Module base names in dir: foo.so / foo.la → "foo" (each once, sorted). */
static int scan_dir(const char *dir, char ***names_out)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	char **names = NULL;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *dot = strrchr(de->d_name, '.');
		if (!dot || (strcmp(dot, ".so") != 0 && strcmp(dot, ".la") != 0))
			continue;
		char base[256];
		snprintf(base, sizeof(base), "%.*s", (int)(dot - de->d_name), de->d_name);
		if (!sp_is_ident(base))
			continue;
		bool dup = false;
		for (int i = 0; i < n; i++)
			dup |= strcmp(names[i], base) == 0;
		if (dup)
			continue;
		void *grown = realloc(names, (size_t)(n + 1) * sizeof(*names));
		if (!grown)
			abort();
		names = grown;
		names[n++] = sp_strdup(base);
	}
	closedir(d);
	*names_out = names;
	return n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_dir(struct sp_plugins *ps, const char *dir, bool required)
{
	char abs[PATH_MAX];
	if (!realpath(dir, abs)) {
		if (required)
			sp_warn("plugin directory %s: %s", dir, strerror(errno));
		return;
	}
	char **names = NULL;
	int n = scan_dir(abs, &names);
	if (n < 0) {
		sp_warn("cannot read plugin directory %s", abs);
		return;
	}
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	for (int i = 0; i < n; i++) {
		open_plugin(ps, abs, names[i]);
		free(names[i]);
	}
	free(names);
}

int sp_plugins_reload_file_settings(struct sp_plugins *ps, const struct sp_config *cfg)
{
	int bad = 0;
	const char *section;
	json_t *raw;
	json_object_foreach(cfg->plugin_settings, section, raw)
	{
		if (!sp_plugins_find(ps, section)) {
			sp_warn("[plugin.%s] in the configuration, but no such plugin is loaded",
			        section);
		}
	}
	/* Settings from the config file, typed by each plugin's schema. On an error the
	 * previous values stay (a bad edit plus SIGHUP must not reset a running plugin). */
	for (size_t i = 0; i < ps->count; i++) {
		struct sp_plugin *p = ps->items[i];
		raw = json_object_get(cfg->plugin_settings, p->name);
		if (!p->desc)
			continue;
		if (!raw) {
			json_decref(p->file_settings);
			p->file_settings = NULL;
			continue;
		}
		json_t *errors = NULL;
		json_t *typed = sp_plugin_settings_check(p, raw, true, &errors);
		if (!typed) {
			char *text = json_dumps(errors, JSON_COMPACT);
			sp_error("plugin %s: invalid settings in [plugin.%s]: %s", p->name, p->name,
			         text ? text : "");
			free(text);
			json_decref(errors);
			bad++;
			continue;
		}
		json_decref(p->file_settings);
		p->file_settings = typed;
	}
	return bad;
}

struct sp_plugins *sp_plugins_discover(const struct sp_config *cfg)
{
	struct sp_plugins *ps = sp_calloc(1, sizeof(*ps));
	if (ltdl_users++ == 0)
		lt_dlinit();
	const char *load = cfg->plugins_load;
	if (strcmp(load, "*") == 0) {
		load_dir(ps, cfg->plugin_dir, false);
	} else if (*load) {
		char abs[PATH_MAX];
		bool have_dir = realpath(cfg->plugin_dir, abs) != NULL;
		char *list = sp_strdup(load), *save = NULL;
		for (char *tok = strtok_r(list, ", ", &save); tok;
		     tok = strtok_r(NULL, ", ", &save)) {
			if (!sp_is_ident(tok)) {
				sp_error("plugins.load: '%s' is not a plugin name ([a-z0-9_]+)",
				         tok);
				continue;
			}
			if (!have_dir) {
				sp_error("plugin %s: plugin directory %s does not exist", tok,
				         cfg->plugin_dir);
				continue;
			}
			open_plugin(ps, abs, tok);
		}
		free(list);
	}
	if (cfg->plugin_path && *cfg->plugin_path) {
		char *list = sp_strdup(cfg->plugin_path), *save = NULL;
		for (char *tok = strtok_r(list, ":", &save); tok; tok = strtok_r(NULL, ":", &save))
			load_dir(ps, tok, true);
		free(list);
	}
	if (sp_plugins_reload_file_settings(ps, cfg) > 0) {
		/* At start an invalid section leaves its plugin out rather than running it
		 * with settings the operator did not mean. */
		for (size_t i = 0; i < ps->count; i++) {
			struct sp_plugin *p = ps->items[i];
			json_t *raw = json_object_get(cfg->plugin_settings, p->name);
			json_t *errors = NULL;
			json_t *typed =
			    p->desc && raw ? sp_plugin_settings_check(p, raw, true, &errors) : NULL;
			if (p->desc && raw && !typed)
				set_error(p, SP_PLUGIN_FAILED,
				          "invalid settings in the configuration file");
			json_decref(typed);
			json_decref(errors);
		}
	}
	return ps;
}

/* ---- settings ---- */

static const struct sp_setting *find_setting(const struct sp_plugin *p, const char *name)
{
	if (!p->desc || !p->desc->settings)
		return NULL;
	for (const struct sp_setting *s = p->desc->settings; s->name; s++)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static const char *type_name(enum sp_setting_type t)
{
	switch (t) {
	case SP_SETTING_BOOL:
		return "boolean";
	case SP_SETTING_INT:
		return "integer";
	case SP_SETTING_NUMBER:
		return "number";
	case SP_SETTING_STRING:
		return "string";
	}
	return "string";
}

/* Converts a config-file string to the setting's type; new reference or NULL. */
static json_t *from_string(const struct sp_setting *s, const char *text)
{
	switch (s->type) {
	case SP_SETTING_STRING:
		return json_string(text);
	case SP_SETTING_BOOL:
		if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") ||
		    !strcasecmp(text, "on") || !strcmp(text, "1"))
			return json_true();
		if (!strcasecmp(text, "false") || !strcasecmp(text, "no") ||
		    !strcasecmp(text, "off") || !strcmp(text, "0"))
			return json_false();
		return NULL;
	case SP_SETTING_INT: {
		long v;
		return sp_parse_long(text, LONG_MIN, LONG_MAX, &v) == 0 ? json_integer(v) : NULL;
	}
	case SP_SETTING_NUMBER: {
		char *end;
		double d = strtod(text, &end);
		return *text && !*end ? json_real(d) : NULL;
	}
	}
	return NULL;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* Checks one typed value; returns NULL when fine or a message (static buffer). */
static const char *check_value(const struct sp_setting *s, json_t *v, char *buf, size_t len)
{
	bool bounded = s->min != 0 || s->max != 0;
	switch (s->type) {
	case SP_SETTING_BOOL:
		return json_is_boolean(v) ? NULL : "must be true or false";
	case SP_SETTING_INT:
		if (!json_is_integer(v))
			return "must be an integer";
		if (bounded && ((double)json_integer_value(v) < s->min ||
		                (double)json_integer_value(v) > s->max)) {
			snprintf(buf, len, "must be between %g and %g", s->min, s->max);
			return buf;
		}
		return NULL;
	case SP_SETTING_NUMBER:
		if (!json_is_number(v))
			return "must be a number";
		if (bounded && (json_number_value(v) < s->min || json_number_value(v) > s->max)) {
			snprintf(buf, len, "must be between %g and %g", s->min, s->max);
			return buf;
		}
		return NULL;
	case SP_SETTING_STRING:
		if (!json_is_string(v))
			return "must be a string";
		if (bounded && ((double)utf8_chars(json_string_value(v)) < s->min ||
		                (double)utf8_chars(json_string_value(v)) > s->max)) {
			snprintf(buf, len, "length must be between %g and %g", s->min, s->max);
			return buf;
		}
		return NULL;
	}
	return "unsupported type";
}

json_t *sp_plugin_settings_check(const struct sp_plugin *p, const json_t *input, bool from_strings,
                                 json_t **errors)
{
	*errors = json_object();
	if (!json_is_object(input)) {
		json_object_set_new(*errors, "", json_string("settings must be a JSON object"));
		return NULL;
	}
	json_t *out = json_object();
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)input, key, v)
	{
		const struct sp_setting *s = find_setting(p, key);
		if (!s) {
			json_object_set_new(*errors, key, json_string("unknown setting"));
			continue;
		}
		json_t *typed = from_strings && json_is_string(v)
		                    ? from_string(s, json_string_value(v))
		                    : json_incref(v);
		char buf[128];
		const char *msg = typed ? check_value(s, typed, buf, sizeof(buf)) : NULL;
		if (!typed) {
			snprintf(buf, sizeof(buf), "must be a %s", type_name(s->type));
			msg = buf;
		}
		if (msg) {
			json_object_set_new(*errors, key, json_string(msg));
			json_decref(typed);
			continue;
		}
		json_object_set_new(out, key, typed);
	}
	if (json_object_size(*errors) > 0) {
		json_decref(out);
		return NULL;
	}
	json_decref(*errors);
	*errors = NULL;
	return out;
}

json_t *sp_plugin_settings_schema(const struct sp_plugin *p)
{
	json_t *props = json_object();
	if (p->desc && p->desc->settings) {
		for (const struct sp_setting *s = p->desc->settings; s->name; s++) {
			json_t *prop = json_pack("{s:s, s:s}", "type", type_name(s->type),
			                         "description", s->help ? s->help : "");
			json_t *def = s->default_json
			                  ? json_loads(s->default_json, JSON_DECODE_ANY, NULL)
			                  : NULL;
			if (def)
				json_object_set_new(prop, "default", def);
			if (s->min != 0 || s->max != 0) {
				bool str = s->type == SP_SETTING_STRING;
				json_object_set_new(prop, str ? "minLength" : "minimum",
				                    json_real(s->min));
				json_object_set_new(prop, str ? "maxLength" : "maximum",
				                    json_real(s->max));
			}
			json_object_set_new(props, s->name, prop);
		}
	}
	return json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
	                 "additionalProperties", 0);
}

int sp_plugin_apply_settings(struct sp_plugin *p, const json_t *stored)
{
	if (!p->desc)
		return -1;
	json_t *eff = json_object();
	if (p->desc->settings) {
		for (const struct sp_setting *s = p->desc->settings; s->name; s++) {
			json_t *def = s->default_json
			                  ? json_loads(s->default_json, JSON_DECODE_ANY, NULL)
			                  : NULL;
			json_object_set_new(eff, s->name, def ? def : json_null());
		}
	}
	if (p->file_settings)
		json_object_update(eff, p->file_settings);
	if (stored)
		json_object_update(eff, (json_t *)stored);
	if (p->status == SP_PLUGIN_RUNNING && json_equal(eff, p->settings)) {
		json_decref(eff);
		return 0;
	}
	json_t *old = p->settings;
	p->settings = eff;
	if (p->status == SP_PLUGIN_RUNNING && p->desc->reload) {
		sp_log_set_context(NULL, p->name);
		int rc = p->desc->reload(p->state, eff);
		sp_log_set_context(NULL, NULL);
		if (rc < 0) {
			sp_warn("plugin %s refused the new settings; keeping the previous ones",
			        p->name);
			p->settings = old;
			json_decref(eff);
			return -1;
		}
	}
	json_decref(old);
	return 0;
}

const json_t *sp_plugin_current_settings(const struct sp_plugin *p)
{
	return p->settings;
}

/* ---- lifecycle ---- */

static void remove_registrations(struct sp_plugin *p)
{
	struct sp_core *core = p->core;
	if (!core)
		return;
	sp_router_remove_owner(core->router, p);
	sp_bus_remove_owner(core->bus, p);
	sp_metrics_remove_owner(core->metrics, p);
	sp_api_cancel_timers(&p->timers);
	sp_api_remove_owner(p);
	sp_jobs_remove_owner(core->jobs, p);
	sp_curl_cancel(core->curl, p);
}

void sp_plugins_init(struct sp_plugins *ps, struct sp_core *core)
{
	for (size_t i = 0; i < ps->count; i++) {
		struct sp_plugin *p = ps->items[i];
		if (p->status != SP_PLUGIN_LOADED)
			continue;
		p->core = core;
		sp_plugin_apply_settings(p, sp_api_stored_settings(core, p->name));
		sp_log_set_context(NULL, p->name);
		int rc = p->desc->init(sp_api_table(), p, p->settings, &p->state);
		sp_log_set_context(NULL, NULL);
		if (rc < 0) {
			sp_error("plugin %s failed to initialise; it is left out", p->name);
			set_error(p, SP_PLUGIN_FAILED, "init failed (see the log for the reason)");
			remove_registrations(p);
			p->state = NULL;
			continue;
		}
		p->status = SP_PLUGIN_RUNNING;
		sp_info("plugin %s %s running", p->name, p->desc->version ? p->desc->version : "");
	}
}

void sp_plugins_shutdown(struct sp_plugins *ps)
{
	if (!ps)
		return;
	for (size_t i = ps->count; i-- > 0;) {
		struct sp_plugin *p = ps->items[i];
		if (p->status == SP_PLUGIN_RUNNING && p->desc->shutdown) {
			sp_log_set_context(NULL, p->name);
			p->desc->shutdown(p->state);
			sp_log_set_context(NULL, NULL);
		}
		if (p->status == SP_PLUGIN_RUNNING)
			p->status = SP_PLUGIN_LOADED;
		p->state = NULL;
		remove_registrations(p);
	}
}

void sp_plugins_free(struct sp_plugins *ps)
{
	if (!ps)
		return;
	for (size_t i = 0; i < ps->count; i++) {
		struct sp_plugin *p = ps->items[i];
		if (p->handle)
			lt_dlclose(p->handle);
		free(p->name);
		free(p->path);
		free(p->error);
		json_decref(p->file_settings);
		json_decref(p->settings);
		free(p);
	}
	free(ps->items);
	free(ps);
	if (--ltdl_users == 0)
		lt_dlexit();
}

size_t sp_plugins_len(const struct sp_plugins *ps)
{
	return ps ? ps->count : 0;
}

struct sp_plugin *sp_plugins_at(const struct sp_plugins *ps, size_t i)
{
	return ps && i < ps->count ? ps->items[i] : NULL;
}

struct sp_plugin *sp_plugins_find(const struct sp_plugins *ps, const char *name)
{
	for (size_t i = 0; ps && i < ps->count; i++)
		if (strcmp(ps->items[i]->name, name) == 0)
			return ps->items[i];
	return NULL;
}

int sp_plugins_count(const struct sp_plugins *ps, bool running)
{
	int n = 0;
	for (size_t i = 0; ps && i < ps->count; i++) {
		enum sp_plugin_status st = ps->items[i]->status;
		if (running ? st == SP_PLUGIN_RUNNING
		            : (st == SP_PLUGIN_FAILED || st == SP_PLUGIN_REJECTED))
			n++;
	}
	return n;
}

const char *sp_plugin_name(const struct sp_plugin *p)
{
	return p->name;
}

const struct sp_plugin_desc *sp_plugin_desc(const struct sp_plugin *p)
{
	return p->desc;
}

enum sp_plugin_status sp_plugin_status(const struct sp_plugin *p)
{
	return p->status;
}

void sp_plugin_mark_failed(struct sp_plugin *p, const char *why)
{
	set_error(p, SP_PLUGIN_FAILED, why);
}

struct sp_core *sp_plugin_core(const struct sp_plugin *p)
{
	return p->core;
}

void *sp_plugin_state(const struct sp_plugin *p)
{
	return p->state;
}

struct sp_timer **sp_plugin_timers(struct sp_plugin *p)
{
	return &p->timers;
}

json_t *sp_plugin_info(const struct sp_plugin *p, const struct sp_core *core)
{
	static const char *const names[] = { "loaded", "running", "rejected", "failed" };
	json_t *o = json_pack("{s:s, s:s}", "name", p->name, "status", names[p->status]);
	if (p->desc) {
		char abi[16];
		snprintf(abi, sizeof(abi), "%u.%u", p->desc->abi_major, p->desc->abi_minor);
		json_object_set_new(o, "version",
		                    json_string(p->desc->version ? p->desc->version : ""));
		json_object_set_new(o, "abi", json_string(abi));
		json_object_set_new(o, "description",
		                    json_string(p->desc->description ? p->desc->description : ""));
	}
	if (p->error)
		json_object_set_new(o, "error", json_string(p->error));
	json_t *routes = json_array();
	if (core && core->router) {
		for (size_t i = 0; i < sp_router_count(core->router); i++) {
			const struct sp_route_entry *e = sp_router_at(core->router, i);
			if (e->owner == p)
				json_array_append_new(routes, json_pack("{s:s, s:s}", "method",
				                                        e->route.method, "path",
				                                        e->route.pattern));
		}
	}
	json_object_set_new(o, "routes", routes);
	return o;
}
