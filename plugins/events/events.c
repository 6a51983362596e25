/* events.c — the events plugin: descriptor, settings, lifecycle and the helpers its
 * routes share (requests in flight, prepared calls of the plugin's SQL functions, bus
 * notices). Routes live in event_routes.c and registration_routes.c, pure logic in
 * events_validate.c and events_format.c, the schema and the seat-keeping SQL in sql/. */
#include "events.h"
#include "events_validate.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sp_migration ev_migrations[]; /* generated from the files in sql/ */

/* ---- requests in flight ---- */

struct ev_op *ev_op_new(struct ev_plugin *ev, struct sp_request *req)
{
	struct ev_op *op = calloc(1, sizeof(*op));
	if (!op) {
		ev->api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return NULL;
	}
	op->ev = ev;
	op->req = req;
	op->who = ev->api->req_principal(req);
	return op;
}

void ev_op_free(struct ev_op *op)
{
	if (!op)
		return;
	json_decref(op->doc);
	json_decref(op->extra);
	json_decref(op->item);
	free(op->text);
	free(op->key);
	free(op);
}

const char *ev_user_param(const struct ev_op *op)
{
	return op->who ? op->who->user_id : NULL;
}

const char *ev_admin_param(const struct ev_op *op)
{
	return op->who && op->who->is_admin ? "true" : "false";
}

bool ev_path_uuid(struct sp_request *req, const struct sp_api *api, const char *name, char *out,
                  const char *what)
{
	const char *v = api->req_param(req, name);
	if (!ev_valid_uuid(v)) {
		char detail[96];
		snprintf(detail, sizeof(detail), "no such %s", what);
		api->reply_problem(req, 404, NULL, detail, NULL);
		return false;
	}
	snprintf(out, 40, "%s", v);
	return true;
}

void ev_reply(struct ev_op *op, int status, json_t *body)
{
	op->ev->api->reply_json(op->req, status, body);
	ev_op_free(op);
}

void ev_problem(struct ev_op *op, int status, const char *title, const char *detail, json_t *errors)
{
	op->ev->api->reply_problem(op->req, status, title, detail, errors);
	ev_op_free(op);
}

void ev_reply_raw(struct ev_op *op, int status, const char *type, const char *body, size_t n)
{
	op->ev->api->reply_raw(op->req, status, type, body, n);
	ev_op_free(op);
}

bool ev_has_body(struct ev_plugin *ev, struct sp_request *req)
{
	const char *cl = ev->api->req_header(req, "Content-Length");
	const char *te = ev->api->req_header(req, "Transfer-Encoding");
	return (cl && strspn(cl, "0 ") != strlen(cl)) || te;
}

json_t *ev_json_value(const struct sp_api *api, const struct sp_db_result *res, int row, int col)
{
	const char *text = api->db_value(res, row, col);
	return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

json_t *ev_json_col(const struct ev_op *op, const struct sp_db_result *res, int row, int col)
{
	return ev_json_value(op->ev->api, res, row, col);
}

static void unavailable(struct ev_op *op)
{
	ev_problem(op, 503, NULL, "the database is unavailable; retry shortly", NULL);
}

static void query_done(const struct sp_db_result *res, void *arg)
{
	struct ev_op *op = arg;
	const struct sp_api *api = op->ev->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(op->req, res);
		ev_op_free(op);
		return;
	}
	op->next(op, res);
}

bool ev_step(struct ev_op *op, const char *name, const char *sql, int nparams,
             const char *const *params, ev_step_fn *next)
{
	op->next = next;
	return ev_query(op, name, sql, nparams, params, query_done);
}

bool ev_query(struct ev_op *op, const char *name, const char *sql, int nparams,
              const char *const *params, sp_db_result_fn *cb)
{
	struct ev_plugin *ev = op->ev;
	if (ev->api->db_query_prepared(ev->plugin, name, sql, nparams, params, cb, op) < 0) {
		unavailable(op);
		return false;
	}
	return true;
}

/* Counts what the notices say happened. */
static void count_notice(struct ev_plugin *ev, const char *type)
{
	struct sp_metric *m = NULL;
	if (strcmp(type, "registration.confirmed") == 0)
		m = ev->m_confirmed;
	else if (strcmp(type, "registration.waitlisted") == 0)
		m = ev->m_waitlisted;
	else if (strcmp(type, "registration.cancelled") == 0)
		m = ev->m_cancelled;
	else if (strcmp(type, "registration.promoted") == 0)
		m = ev->m_promoted;
	else if (strcmp(type, "checkin.recorded") == 0)
		m = ev->m_checkins;
	ev->api->metric_add(m, 1); /* NULL is ignored */
}

void ev_emit_notices(struct ev_plugin *ev, const json_t *notices)
{
	size_t i;
	json_t *n;
	bool relay = false;
	json_array_foreach(notices, i, n)
	{
		const char *type = json_string_value(json_object_get(n, "type"));
		if (!type)
			continue;
		count_notice(ev, type);
		relay |= strncmp(type, "registration.", 13) == 0;
		if (ev->api->bus_emit(ev->plugin, type, json_object_get(n, "data")) < 0)
			ev->api->log(ev->plugin, SP_LOG_WARN, "could not emit %s", type);
	}
	if (relay)
		ev_relay_kick(ev); /* the attendees are told through the outbox */
}

static void call_done(const struct sp_db_result *res, void *arg)
{
	struct ev_op *op = arg;
	const struct sp_api *api = op->ev->api;
	if (!api->db_ok(res)) {
		if (op->on_error && op->on_error(op, res))
			return;
		api->reply_db_error(op->req, res);
		ev_op_free(op);
		return;
	}
	if (api->db_ntuples(res) != 1 || !api->db_value(res, 0, 0)) {
		api->log(op->ev->plugin, SP_LOG_ERROR, "a plugin function returned no outcome");
		ev_problem(op, 500, NULL, "an internal error occurred; it has been logged", NULL);
		return;
	}
	json_t *notices = ev_json_col(op, res, 0, 2);
	if (notices)
		ev_emit_notices(op->ev, notices); /* the statement has committed */
	json_decref(notices);
	json_t *body = ev_json_col(op, res, 0, 1);
	/* outcome is borrowed from res, which outlives on_outcome */
	op->on_outcome(op, api->db_value(res, 0, 0), body);
	json_decref(body);
}

bool ev_call(struct ev_op *op, const char *name, const char *sql, int nparams,
             const char *const *params, ev_outcome_fn *on_outcome)
{
	op->on_outcome = on_outcome;
	return ev_query(op, name, sql, nparams, params, call_done);
}

/* ---- the per-process cache of what registrations are checked against ---- */

const struct ev_meta *ev_meta_find(struct ev_plugin *ev, const char *id)
{
	for (int i = 0; i < EV_META_SLOTS; i++) {
		struct ev_meta *m = &ev->meta[i];
		if (m->id[0] && strcmp(m->id, id) == 0) {
			m->used = ++ev->meta_clock;
			return m;
		}
	}
	return NULL;
}

static void meta_clear(struct ev_meta *m)
{
	json_decref(m->questions);
	json_decref(m->names);
	memset(m, 0, sizeof(*m));
}

void ev_meta_drop(struct ev_plugin *ev, const char *id)
{
	for (int i = 0; i < EV_META_SLOTS; i++)
		if (ev->meta[i].id[0] && strcmp(ev->meta[i].id, id) == 0)
			meta_clear(&ev->meta[i]);
}

void ev_meta_store(struct ev_plugin *ev, const char *id, int version, json_t *questions,
                   json_t *names)
{
	/* The entry of this event, else a free slot, else the least recently used. */
	struct ev_meta *slot = NULL;
	for (int i = 0; i < EV_META_SLOTS && !slot; i++)
		if (ev->meta[i].id[0] && strcmp(ev->meta[i].id, id) == 0)
			slot = &ev->meta[i];
	for (int i = 0; i < EV_META_SLOTS && !slot; i++)
		if (!ev->meta[i].id[0])
			slot = &ev->meta[i];
	if (!slot) {
		slot = &ev->meta[0];
		for (int i = 1; i < EV_META_SLOTS; i++)
			if (ev->meta[i].used < slot->used)
				slot = &ev->meta[i];
	}
	meta_clear(slot);
	snprintf(slot->id, sizeof(slot->id), "%s", id);
	slot->version = version;
	slot->questions = json_incref(questions);
	slot->names = json_incref(names);
	slot->used = ++ev->meta_clock;
}

/* ---- settings and lifecycle ---- */

static bool unsafe_allowed(void)
{
	const char *v = getenv(EV_UNSAFE_ENV);
	return v && strcmp(v, "1") == 0;
}

/* Applies settings; -1 when they ask for what this process refuses. */
static int apply_settings(struct ev_plugin *ev, const json_t *settings)
{
	bool want = json_is_true(json_object_get(settings, "unsafe_skip_capacity_guard"));
	if (want && !unsafe_allowed()) {
		ev->api->log(ev->plugin, SP_LOG_ERROR,
		             "unsafe_skip_capacity_guard refused: it is a test switch, honoured "
		             "only when the server runs with %s=1; the capacity guard stays on",
		             EV_UNSAFE_ENV);
		ev->unsafe = false;
		ev->api->metric_set(ev->m_unsafe, 0);
		return -1;
	}
	if (want != ev->unsafe)
		ev->api->log(ev->plugin, want ? SP_LOG_WARN : SP_LOG_INFO,
		             "capacity guard %s (test switch unsafe_skip_capacity_guard)",
		             want ? "DISABLED: registrations can overbook" : "enabled");
	ev->unsafe = want;
	ev->api->metric_set(ev->m_unsafe, want ? 1 : 0);
	return 0;
}

static int events_init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                       void **state)
{
	if (api->size < offsetof(struct sp_api, req_principal) + sizeof(api->req_principal)) {
		api->log(plugin, SP_LOG_ERROR, "this core lacks req_principal: upgrade spearhead");
		return -1;
	}
	struct ev_plugin *ev = calloc(1, sizeof(*ev));
	if (!ev) {
		api->log(plugin, SP_LOG_ERROR, "out of memory");
		return -1;
	}
	ev->api = api;
	ev->plugin = plugin;
	ev->m_confirmed = api->metric_counter(plugin, "registrations_confirmed_total",
	                                      "Registrations confirmed at once");
	ev->m_waitlisted = api->metric_counter(plugin, "registrations_waitlisted_total",
	                                       "Registrations put on a waiting list");
	ev->m_cancelled =
	    api->metric_counter(plugin, "registrations_cancelled_total", "Registrations cancelled");
	ev->m_promoted = api->metric_counter(plugin, "registrations_promoted_total",
	                                     "Waitlisted registrations promoted to a seat");
	ev->m_checkins = api->metric_counter(plugin, "checkins_total", "Check-ins recorded");
	ev->m_replays = api->metric_counter(plugin, "registration_replays_total",
	                                    "Registrations answered again for an Idempotency-Key");
	ev->m_batches = api->metric_counter(plugin, "registration_batches_total",
	                                    "Statements that made registrations (batches)");
	ev->m_batched = api->metric_counter(plugin, "registration_batch_items_total",
	                                    "Registrations sent in those batches");
	ev->m_unsafe = api->metric_gauge(plugin, "unsafe_mode",
	                                 "1 while the test-only capacity-guard bypass is on");
	/* A refused test switch at start is logged and ignored: the plugin runs safely. */
	(void)apply_settings(ev, settings);
	if (ev_add_event_routes(ev) < 0 || ev_add_registration_routes(ev) < 0) {
		api->log(plugin, SP_LOG_ERROR, "cannot register the routes");
		free(ev);
		return -1;
	}
	ev_relay_init(ev);
	*state = ev;
	return 0;
}

static int events_reload(void *state, const json_t *settings)
{
	return apply_settings(state, settings);
}

static void events_shutdown(void *state)
{
	struct ev_plugin *ev = state;
	ev_regq_free_all(ev);
	for (int i = 0; i < EV_META_SLOTS; i++)
		meta_clear(&ev->meta[i]);
	free(ev);
}

static const struct sp_setting settings[] = {
	{ "unsafe_skip_capacity_guard", SP_SETTING_BOOL, "false", 0, 0,
	  "TEST ONLY: registrations skip the capacity guard and can overbook; refused unless "
	  "the server runs with SPEARHEAD_TEST_UNSAFE=1" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

SP_PLUGIN_DEFINE(events) = {
	SP_PLUGIN_DESC_HEADER,
	.name = "events",
	.version = "1.0.0",
	.description = "Events: registration with categories, quotas and a waiting list, "
	               "check-in, attendee export (CSV) and iCalendar",
	.settings = settings,
	.migrations = ev_migrations,
	.init = events_init,
	.shutdown = events_shutdown,
	.reload = events_reload,
};
