/* routes.c — the core's own routes. */
#include "build-config.h"
#include "routes.h"
#include "api.h"
#include "config.h"
#include "db.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "metrics_share.h"
#include "openapi.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

static void health(struct sp_request *req, void *arg)
{
	sp_request_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void ready_done(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (sp_db_result_ok(res)) {
		sp_request_reply_json(req, 200,
		                      json_pack("{s:s, s:s}", "status", "ready", "database", "up"));
		return;
	}
	sp_request_add_header(req, "Retry-After", "1");
	sp_request_reply_problem(req, 503, "Not ready", "the database is not reachable", NULL);
}

static void ready(struct sp_request *req, void *arg)
{
	struct sp_core *core = sp_request_core(req);
	if (core->draining) {
		sp_request_reply_problem(req, 503, "Not ready", "the server is shutting down",
		                         NULL);
		return;
	}
	if (sp_db_query(core->db, "SELECT 1", 0, NULL, ready_done, req) < 0)
		sp_request_reply_problem(req, 503, "Not ready", "the database is not reachable",
		                         NULL);
}

/* This worker's exposition; with several workers its series carry worker="N". */
static void render_own(struct sp_core *core, struct evbuffer *out)
{
	if (!core->metrics_share) {
		sp_metrics_render(core->metrics, core, out);
		return;
	}
	struct evbuffer *raw = evbuffer_new();
	sp_metrics_render(core->metrics, core, raw);
	size_t len = evbuffer_get_length(raw);
	sp_metrics_label_worker((const char *)evbuffer_pullup(raw, -1), len, core->worker, out);
	evbuffer_free(raw);
}

static void publish_metrics(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sp_core *core = arg;
	struct evbuffer *own = evbuffer_new();
	render_own(core, own);
	size_t len = evbuffer_get_length(own);
	sp_metrics_share_publish(core->metrics_share, core->worker,
	                         (const char *)evbuffer_pullup(own, -1), len);
	evbuffer_free(own);
}

void sp_routes_publish_metrics(struct sp_core *core)
{
	if (!core->metrics_share)
		return;
	/* Once a second: what a scrape answered by another worker shows of this one is at
	 * most that old. */
	core->metrics_timer = event_new(core->base, -1, EV_PERSIST, publish_metrics, core);
	struct timeval every = { 1, 0 };
	event_add(core->metrics_timer, &every);
	publish_metrics(-1, 0, core);
}

static void metrics(struct sp_request *req, void *arg)
{
	struct sp_core *core = sp_request_core(req);
	struct evbuffer *buf = evbuffer_new();
	if (core->metrics_share) {
		struct evbuffer *own = evbuffer_new();
		render_own(core, own);
		size_t own_len = evbuffer_get_length(own);
		sp_metrics_share_render(core->metrics_share, core->worker,
		                        (const char *)evbuffer_pullup(own, -1), own_len, buf);
		evbuffer_free(own);
	} else {
		sp_metrics_render(core->metrics, core, buf);
	}
	size_t len = evbuffer_get_length(buf);
	sp_request_reply_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8",
	                     evbuffer_pullup(buf, -1), len);
	evbuffer_free(buf);
}

static void openapi(struct sp_request *req, void *arg)
{
	sp_request_reply_json(req, 200,
	                      sp_openapi_document(sp_request_core(req)->router, PACKAGE_VERSION));
}

static void plugins_list(struct sp_request *req, void *arg)
{
	struct sp_core *core = sp_request_core(req);
	json_t *items = json_array();
	for (size_t i = 0; i < sp_plugins_len(core->plugins); i++)
		json_array_append_new(items, sp_plugin_info(sp_plugins_at(core->plugins, i), core));
	sp_request_reply_json(req, 200, json_pack("{s:o, s:n}", "items", items, "next_cursor"));
}

static struct sp_plugin *find_plugin(struct sp_request *req)
{
	struct sp_core *core = sp_request_core(req);
	const char *name = sp_request_param(req, "name");
	struct sp_plugin *p = name ? sp_plugins_find(core->plugins, name) : NULL;
	if (!p)
		sp_request_reply_problem(req, 404, NULL, "no such plugin", NULL);
	return p;
}

static void plugin_get(struct sp_request *req, void *arg)
{
	struct sp_plugin *p = find_plugin(req);
	if (p)
		sp_request_reply_json(req, 200, sp_plugin_info(p, sp_request_core(req)));
}

/* Settings named like secrets are write-only: answers show SECRET_MASK when one is
 * set, and a PUT sending the mask back keeps the stored value, so that a client can
 * GET, change one field and PUT the rest without ever holding the secret. */
#define SECRET_MASK "********"

static bool is_secret_setting(const char *name)
{
	static const char *const suffixes[] = { "password", "secret", "token", "api_key" };
	size_t n = strlen(name);
	for (size_t i = 0; i < SP_ARRAY_LEN(suffixes); i++) {
		size_t k = strlen(suffixes[i]);
		if (n >= k && strcmp(name + n - k, suffixes[i]) == 0 &&
		    (n == k || name[n - k - 1] == '_'))
			return true;
	}
	return false;
}

/* A copy of settings (may be NULL) with the secrets that are set masked. */
static json_t *masked_settings(const json_t *settings)
{
	json_t *out = settings ? json_deep_copy(settings) : json_object();
	const char *key;
	json_t *v;
	json_object_foreach(out, key, v)
	{
		if (is_secret_setting(key) && json_is_string(v) && json_string_length(v) > 0)
			json_string_set(v, SECRET_MASK);
	}
	return out;
}

/* The body of a PUT with each masked secret replaced by the stored value (new
 * reference), or, when none is stored, left out (the file's value or the default
 * applies). */
static json_t *unmask_settings(json_t *body, const json_t *stored)
{
	json_t *out = json_copy(body);
	const char *key;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(out, tmp, key, v)
	{
		if (!is_secret_setting(key) || !json_is_string(v) ||
		    strcmp(json_string_value(v), SECRET_MASK) != 0)
			continue;
		json_t *kept = json_object_get(stored, key);
		if (kept)
			json_object_set(out, key, kept);
		else
			json_object_del(out, key);
	}
	return out;
}

static void settings_get(struct sp_request *req, void *arg)
{
	struct sp_plugin *p = find_plugin(req);
	if (!p)
		return;
	sp_request_reply_json(req, 200,
	                      json_pack("{s:s, s:o, s:o}", "plugin", sp_plugin_name(p), "settings",
	                                masked_settings(sp_plugin_current_settings(p)), "schema",
	                                sp_plugin_settings_schema(p)));
}

struct settings_put {
	struct sp_request *req;
	struct sp_core *core;
	char *name;
	json_t *settings; /* what was stored (owned) */
};

static void settings_saved(const struct sp_db_result *res, void *arg)
{
	struct settings_put *sp = arg;
	struct sp_plugin *p = sp_plugins_find(sp->core->plugins, sp->name);
	if (!sp_db_result_ok(res)) {
		/* Not stored: go back to what is stored. */
		if (p)
			sp_plugin_apply_settings(p, sp_api_stored_settings(sp->core, sp->name));
		sp_request_reply_db_error(sp->req, res);
	} else {
		json_object_set(sp->core->stored_settings, sp->name, sp->settings);
		sp_db_notify(sp->core->db, SP_SETTINGS_CHANNEL, sp->name);
		const json_t *cur = p ? sp_plugin_current_settings(p) : NULL;
		sp_request_reply_json(sp->req, 200,
		                      json_pack("{s:s, s:o}", "plugin", sp->name, "settings",
		                                cur ? masked_settings(cur) : json_null()));
	}
	free(sp->name);
	json_decref(sp->settings);
	free(sp);
}

/* PUT replaces the stored settings of a plugin. They are checked against the plugin's
 * schema, then offered to the plugin (its reload may refuse them), and only then
 * stored; nothing is stored when any step says no. */
static void settings_put(struct sp_request *req, void *arg)
{
	struct sp_plugin *p = find_plugin(req);
	if (!p)
		return;
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	if (!sp_plugin_desc(p)) {
		sp_request_reply_problem(req, 409, NULL, "this plugin is not loaded", NULL);
		return;
	}
	json_t *errors = NULL;
	struct sp_core *core = sp_request_core(req);
	json_t *given =
	    json_is_object(body)
	        ? unmask_settings(body, json_object_get(core->stored_settings, sp_plugin_name(p)))
	        : json_incref(body);
	json_t *checked = sp_plugin_settings_check(p, given, false, &errors);
	json_decref(given);
	if (!checked) {
		sp_request_reply_problem(req, 422, "Invalid settings",
		                         "some settings do not match the plugin's schema", errors);
		return;
	}
	if (sp_plugin_apply_settings(p, checked) < 0) {
		json_decref(checked);
		sp_request_reply_problem(req, 422, "Settings refused",
		                         "the plugin refused these settings (see the log)", NULL);
		return;
	}
	struct settings_put *sp = sp_calloc(1, sizeof(*sp));
	sp->req = req;
	sp->core = core;
	sp->name = sp_strdup(sp_plugin_name(p));
	sp->settings = checked;
	char *text = json_dumps(checked, JSON_COMPACT);
	const char *params[] = { sp->name, text };
	if (sp_db_query(core->db,
	                "INSERT INTO sp_plugin_settings (plugin, settings) VALUES ($1, $2::jsonb) "
	                "ON CONFLICT (plugin) DO UPDATE SET settings = EXCLUDED.settings, "
	                "updated_at = now()",
	                2, params, settings_saved, sp) < 0) {
		sp_plugin_apply_settings(p, sp_api_stored_settings(core, sp->name));
		free(sp->name);
		json_decref(sp->settings);
		free(sp);
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
	free(text);
}

/* Another instance changed a plugin's settings: read them and apply. */
static void settings_fetched(const struct sp_db_result *res, void *arg)
{
	struct sp_core *core = arg;
	if (!sp_db_result_ok(res))
		return;
	for (int i = 0; i < sp_db_result_ntuples(res); i++) {
		const char *name = sp_db_result_value(res, i, 0);
		json_t *stored = json_loads(sp_db_result_value(res, i, 1), 0, NULL);
		struct sp_plugin *p = sp_plugins_find(core->plugins, name);
		if (stored) {
			json_object_set(core->stored_settings, name, stored);
			if (p)
				sp_plugin_apply_settings(p, stored); /* no-op when unchanged */
		}
		json_decref(stored);
	}
}

static void on_settings_notify(const char *channel, const char *payload, void *arg)
{
	struct sp_core *core = arg;
	if (!sp_is_ident(payload))
		return;
	const char *params[] = { payload };
	if (sp_db_query(core->db,
	                "SELECT plugin, settings::text FROM sp_plugin_settings WHERE "
	                "plugin = $1",
	                1, params, settings_fetched, core) < 0)
		sp_warn("could not refresh the settings of plugin %s", payload);
}

/* NOTIFY is only a wake-up: one sent before our LISTEN took effect, or while the
 * listener was reconnecting, is lost. Re-reading everything shortly after start and
 * then every 30 s bounds how long an instance can miss a change. */
static void settings_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct sp_core *core = arg;
	if (sp_db_is_up(core->db))
		sp_db_query(core->db, "SELECT plugin, settings::text FROM sp_plugin_settings", 0,
		            NULL, settings_fetched, core);
	struct timeval again = { 30, 0 };
	event_add(core->settings_timer, &again);
}

void sp_routes_listen_settings(struct sp_core *core)
{
	sp_db_listen(core->db, SP_SETTINGS_CHANNEL, on_settings_notify, core);
	core->settings_timer = event_new(core->base, -1, 0, settings_refresh, core);
	struct timeval soon = { 1, 0 };
	event_add(core->settings_timer, &soon);
}

static const char plugin_schema[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"version\":{"
    "\"type\":\"string\"},\"abi\":{\"type\":\"string\"},\"description\":{\"type\":"
    "\"string\"},\"status\":{\"type\":\"string\",\"enum\":[\"loaded\",\"running\","
    "\"rejected\",\"failed\"]},\"error\":{\"type\":\"string\"},\"routes\":{\"type\":"
    "\"array\"}}}";

int sp_routes_register(struct sp_core *core)
{
	const struct sp_route routes[] = {
		{ "GET", "/health", SP_ACCESS_PUBLIC, health, "Liveness: the process answers", NULL,
		  NULL },
		{ "GET", "/ready", SP_ACCESS_PUBLIC, ready, "Readiness: the database is reachable",
		  NULL, NULL },
		{ "GET", "/metrics", SP_ACCESS_PUBLIC, metrics, "Prometheus metrics", NULL, NULL },
		{ "GET", "/v1/openapi.json", SP_ACCESS_PUBLIC, openapi, "This OpenAPI document",
		  NULL, NULL },
		{ "GET", "/v1/plugins", SP_ACCESS_PUBLIC, plugins_list,
		  "Loaded plugins with their status and routes", NULL, NULL },
		{ "GET", "/v1/plugins/{name}", SP_ACCESS_PUBLIC, plugin_get, "One plugin", NULL,
		  plugin_schema },
		{ "GET", "/v1/plugins/{name}/settings", SP_ACCESS_ADMIN, settings_get,
		  "A plugin's effective settings and their schema", NULL, NULL },
		{ "PUT", "/v1/plugins/{name}/settings", SP_ACCESS_ADMIN, settings_put,
		  "Replace a plugin's stored settings (validated, applied without restart)",
		  "{\"type\":\"object\"}", NULL },
	};
	char err[256];
	for (size_t i = 0; i < SP_ARRAY_LEN(routes); i++) {
		if (sp_router_add(core->router, &routes[i], NULL, core, err, sizeof(err)) < 0) {
			sp_error("core route: %s", err);
			return -1;
		}
	}
	return 0;
}
