/* example.c — the Spearhead example plugin, a model for integrators: one setting, one
 * migration, a route that reads PostgreSQL, a validated POST that emits a bus event, a
 * bus subscription counted in a metric, and reload(). It builds out of tree against the
 * installed header only (see the Makefile next to it and docs/plugin-guide.md).
 *
 * Ownership words follow plugin.h (jansson's): "borrowed" = valid during the call, do
 * not free; "stolen" = the callee takes our reference; "new" = we must release it. */
#include <spearhead/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_MAX 200 /* characters in an echoed message */

/* Everything the plugin keeps between calls. init() creates it, shutdown() frees it;
 * the core hands it back to every route handler as plugin_state. */
struct example {
	const struct sp_api *api; /* borrowed from the core, valid until shutdown() */
	struct sp_plugin *plugin; /* our handle: every registration is made with it */
	char *greeting;           /* owned copy of the "greeting" setting */
	struct sp_metric *events; /* owned by the core, removed with the plugin */
	long long nevents;        /* example.* events seen by this process */
	json_t *last_event;       /* owned reference, NULL until the first event */
};

/* A copy of s that the caller frees (strdup is POSIX, not C11). */
static char *copy_string(const char *s)
{
	size_t n = strlen(s) + 1;
	char *c = malloc(n);
	if (c)
		memcpy(c, s, n);
	return c;
}

/* The greeting from a settings object (borrowed), as a new string; NULL if missing. The
 * core has already checked type and length against the schema below. */
static char *greeting_from(const json_t *settings)
{
	const char *g = json_string_value(json_object_get(settings, "greeting"));
	return g ? copy_string(g) : NULL;
}

/* ---- GET /v1/example/greetings/{id} ---- */

/* "42" → true with the canonical text in out. Empty, "abc", "4x", " 4", "+4" and values
 * outside PostgreSQL's int range → false. */
static bool parse_id(const char *s, char *out, size_t len)
{
	if (!s || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return false;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno == ERANGE || v < INT32_MIN || v > INT32_MAX)
		return false;
	snprintf(out, len, "%ld", v);
	return true;
}

/* One query in flight: allocated by the handler, freed by the result callback (which
 * the core calls exactly once), so the request and state travel across the hop. */
struct lookup {
	struct example *ex;
	struct sp_request *req; /* stays valid until we reply */
};

static void greeting_loaded(const struct sp_db_result *res, void *arg)
{
	struct lookup *lk = arg;
	struct example *ex = lk->ex;
	struct sp_request *req = lk->req;
	const struct sp_api *api = ex->api;
	free(lk);

	/* res is borrowed: read it now, it is gone when this callback returns. */
	if (!api->db_ok(res)) {
		api->reply_db_error(req, res); /* 503 / 409 / 500, detail logged */
		return;
	}
	if (api->db_ntuples(res) == 0) {
		char detail[64];
		snprintf(detail, sizeof(detail), "no greeting has id %s",
		         api->req_param(req, "id"));
		api->reply_problem(req, 404, "Greeting not found", detail, NULL);
		return;
	}
	json_t *body = api->db_row_json(res, 0); /* new: {"id": 1, "text": "…"} */
	json_object_set_new(body, "greeting", json_string(ex->greeting)); /* _new steals */
	api->reply_json(req, 200, body); /* stolen: body is not ours any more */
}

static void get_greeting(struct sp_request *req, void *state)
{
	struct example *ex = state;
	const struct sp_api *api = ex->api;
	char id[16];

	/* Path parameters are borrowed (percent-decoded, valid until we reply). */
	if (!parse_id(api->req_param(req, "id"), id, sizeof(id))) {
		api->reply_problem(req, 400, "Invalid id", "id must be an integer", NULL);
		return;
	}
	struct lookup *lk = malloc(sizeof(*lk));
	if (!lk) {
		api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return;
	}
	lk->ex = ex;
	lk->req = req;
	/* Always parameters, never string pasting. sql and params are copied by the core,
	 * so a stack buffer is fine. The callback runs later, from the event loop. */
	const char *params[] = { id };
	if (api->db_query(ex->plugin, "SELECT id, text FROM example_greetings WHERE id = $1::int",
	                  1, params, greeting_loaded, lk) < 0) {
		free(lk); /* -1: nothing was queued and no callback will come */
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

/* ---- POST /v1/example/echo ---- */

/* Characters (code points) of a UTF-8 string; jansson strings are valid UTF-8. */
static size_t utf8_length(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static void post_echo(struct sp_request *req, void *state)
{
	struct example *ex = state;
	const struct sp_api *api = ex->api;

	json_t *body = api->req_json(req); /* borrowed: owned by the request */
	if (!body)
		return; /* absent or malformed: the core has already answered 400/413/415 */

	/* Collect every problem, field → message, then answer once. */
	json_t *errors = json_object(); /* new */
	const char *message = NULL;
	if (!json_is_object(body)) {
		json_object_set_new(errors, "", json_string("the body must be a JSON object"));
	} else {
		json_t *m = json_object_get(body, "message"); /* borrowed */
		size_t len = json_is_string(m) ? utf8_length(json_string_value(m)) : 0;
		if (!m)
			json_object_set_new(errors, "message", json_string("is required"));
		else if (!json_is_string(m))
			json_object_set_new(errors, "message", json_string("must be a string"));
		else if (len < 1 || len > MESSAGE_MAX)
			json_object_set_new(errors, "message",
			                    json_string("must be 1 to 200 characters long"));
		else
			message = json_string_value(m); /* borrowed from body */
		const char *key;
		json_t *value;
		json_object_foreach(body, key, value)
		{
			if (strcmp(key, "message") != 0)
				json_object_set_new(errors, key, json_string("unknown field"));
		}
	}
	if (json_object_size(errors) > 0) {
		/* errors is stolen by reply_problem: no json_decref here. */
		api->reply_problem(req, 422, "Invalid message",
		                   "the body does not match the request schema", errors);
		return;
	}
	json_decref(errors);

	/* bus_emit borrows data: the core keeps what it needs (its own reference for this
	 * process, a serialised copy for the others), so our reference is still ours.
	 * Do not modify the object after emitting it. */
	json_t *data = json_pack("{s:s}", "message", message); /* new */
	int rc = data ? api->bus_emit(ex->plugin, "example.echoed", data) : -1;
	json_decref(data);
	if (rc < 0) {
		api->reply_problem(req, 500, NULL, "the event could not be emitted", NULL);
		return;
	}
	/* 202: subscribers receive the event later (next loop turn, other instances
	 * through PostgreSQL NOTIFY). */
	api->reply_json(req, 202,
	                json_pack("{s:s, s:s}", "message", message, "event", "example.echoed"));
}

/* ---- the bus subscription and GET /v1/example/last-event ---- */

/* Runs for every example.* event, emitted here or by another instance. */
static void on_event(const char *type, json_t *data, void *arg)
{
	struct example *ex = arg;
	ex->nevents++;
	ex->api->metric_add(ex->events, 1);
	/* data is borrowed and shared with other subscribers: keep a copy, not a pointer. */
	json_t *copy = data ? json_deep_copy(data) : json_object();
	json_t *event = json_pack("{s:s, s:o}", "type", type, "data", copy); /* o steals copy */
	if (!event)
		return;
	json_decref(ex->last_event);
	ex->last_event = event;
}

static void get_last_event(struct sp_request *req, void *state)
{
	struct example *ex = state;
	/* O takes a new reference to last_event (we keep ours); O? gives null when NULL. */
	ex->api->reply_json(
	    req, 200,
	    json_pack("{s:I, s:O?}", "count", (json_int_t)ex->nevents, "event", ex->last_event));
}

/* ---- lifecycle ---- */

static const struct sp_route routes[] = {
	{ "GET", "/v1/example/greetings/{id}", SP_ACCESS_PUBLIC, get_greeting,
	  "One greeting from the example_greetings table", NULL,
	  "{\"type\":\"object\",\"required\":[\"id\",\"text\",\"greeting\"],\"properties\":{"
	  "\"id\":{\"type\":\"integer\"},\"text\":{\"type\":\"string\"},"
	  "\"greeting\":{\"type\":\"string\"}}}" },
	{ "POST", "/v1/example/echo", SP_ACCESS_PUBLIC, post_echo,
	  "Validates a message and emits it as the bus event example.echoed",
	  "{\"type\":\"object\",\"required\":[\"message\"],\"additionalProperties\":false,"
	  "\"properties\":{\"message\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200}}}",
	  "{\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\"},"
	  "\"event\":{\"type\":\"string\"}}}" },
	{ "GET", "/v1/example/last-event", SP_ACCESS_PUBLIC, get_last_event,
	  "How many example.* events this process saw, and the last one", NULL,
	  "{\"type\":\"object\",\"properties\":{\"count\":{\"type\":\"integer\"},"
	  "\"event\":{\"type\":[\"object\",\"null\"]}}}" },
};

/* settings is borrowed, validated, with defaults filled in. On failure we free what we
 * allocated: shutdown() is not called after a failed init, while the routes, the
 * subscription and the metric already registered are removed by the core. */
static int example_init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                        void **state)
{
	struct example *ex = calloc(1, sizeof(*ex));
	if (!ex) {
		api->log(plugin, SP_LOG_ERROR, "out of memory");
		return -1;
	}
	ex->api = api;
	ex->plugin = plugin;
	ex->greeting = greeting_from(settings);
	if (!ex->greeting) {
		api->log(plugin, SP_LOG_ERROR, "setting 'greeting' is missing");
		goto fail;
	}
	/* Exported on /metrics as spearhead_example_events_total. */
	ex->events = api->metric_counter(plugin, "events_total", "example.* bus events seen");
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (api->route_add(plugin, &routes[i]) < 0) /* copied; the core logs why */
			goto fail;
	if (api->bus_subscribe(plugin, "example.*", on_event, ex) < 0) {
		api->log(plugin, SP_LOG_ERROR, "cannot subscribe to example.*");
		goto fail;
	}
	api->log(plugin, SP_LOG_INFO, "ready; the greeting is \"%s\"", ex->greeting);
	*state = ex;
	return 0;
fail:
	free(ex->greeting);
	free(ex);
	return -1;
}

/* New settings (borrowed, validated) from PUT /v1/plugins/example/settings or a
 * reloaded config file. Returning -1 keeps the previous ones. */
static int example_reload(void *state, const json_t *settings)
{
	struct example *ex = state;
	char *greeting = greeting_from(settings);
	if (!greeting)
		return -1;
	ex->api->log(ex->plugin, SP_LOG_INFO, "greeting changed from \"%s\" to \"%s\"",
	             ex->greeting, greeting);
	free(ex->greeting);
	ex->greeting = greeting;
	return 0;
}

/* Frees the state; the core removes routes, subscription and metric itself. */
static void example_shutdown(void *state)
{
	struct example *ex = state;
	json_decref(ex->last_event);
	free(ex->greeting);
	free(ex);
}

/* The settings schema: the core validates PUT bodies and [plugin.example] against it.
 * A string's bounds are its length (the core counts bytes). */
static const struct sp_setting settings[] = {
	{ "greeting", SP_SETTING_STRING, "\"Hello\"", 1, 80,
	  "Word put in front of every greeting returned by /v1/example/greetings/{id}" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

/* Applied once each, in order, each in its own transaction. Never edit one that has
 * shipped: the core refuses a changed checksum. Add 0002_… instead. */
static const struct sp_migration migrations[] = {
	{ "0001_greetings",
	  "CREATE TABLE example_greetings (id int PRIMARY KEY, text text NOT NULL);"
	  "INSERT INTO example_greetings (id, text) VALUES"
	  " (1, 'Welcome to the cluster'),"
	  " (2, 'Good luck with the funding call'),"
	  " (3, 'See you at the B2B meetings');" },
	{ NULL, NULL },
};

/* The one exported symbol: sp_plugin_example, found by the file name example.so. */
SP_PLUGIN_DEFINE(example) = {
	SP_PLUGIN_DESC_HEADER,
	.name = "example",
	.version = "1.0.0",
	.description = "Example plugin: greetings from PostgreSQL, an echo on the bus",
	.settings = settings,
	.migrations = migrations,
	.init = example_init,
	.shutdown = example_shutdown,
	.reload = example_reload,
};
