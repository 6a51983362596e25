/* event_routes.c — events themselves: create, list, read, change (PATCH with optimistic
 * retries), delete, publish and close, organiser grants, and the iCalendar file.
 * Drafts are visible to their organisers and admins only. */
#include "events.h"
#include "events_format.h"
#include "events_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT   20
#define LIST_MAX       100
#define PATCH_ATTEMPTS 5 /* optimistic retries when the event changes under a PATCH */

#define SQL_GET                                                                                    \
	"SELECT events_event_json(e), events_is_organiser(e.id, $2::uuid, $3::boolean) "           \
	"FROM events_events e WHERE e.id = $1::uuid"

/* ---- shared steps ---- */

/* After SQL_GET: the event (new reference) when the caller may see it; else answers
 * 404, frees op and returns NULL. *organiser says whether the caller runs it. */
static json_t *visible_event(struct ev_op *op, const struct sp_db_result *res, bool *organiser)
{
	const struct sp_api *api = op->ev->api;
	json_t *event = api->db_ntuples(res) == 1 ? ev_json_col(op, res, 0, 0) : NULL;
	const char *org = api->db_value(res, 0, 1);
	*organiser = org && strcmp(org, "t") == 0;
	const char *status = json_string_value(json_object_get(event, "status"));
	if (!event || !status || (strcmp(status, "draft") == 0 && !*organiser)) {
		json_decref(event);
		ev_problem(op, 404, NULL, "no such event", NULL);
		return NULL;
	}
	return event;
}

static bool load_event(struct ev_op *op, ev_step_fn *next)
{
	const char *params[] = { op->event_id, ev_user_param(op), ev_admin_param(op) };
	return ev_step(op, "ev_get", SQL_GET, 3, params, next);
}

/* Outcomes every event function shares. True when handled (op answered). */
static bool common_outcome(struct ev_op *op, const char *outcome)
{
	if (strcmp(outcome, "not_found") == 0) {
		ev_problem(op, 404, NULL, "no such event", NULL);
		return true;
	}
	if (strcmp(outcome, "forbidden") == 0) {
		ev_problem(op, 403, NULL, "only the event's organisers and admins may do this",
		           NULL);
		return true;
	}
	return false;
}

static void unexpected(struct ev_op *op, const char *outcome)
{
	op->ev->api->log(op->ev->plugin, SP_LOG_ERROR, "unexpected outcome '%s'", outcome);
	ev_problem(op, 500, NULL, "an internal error occurred; it has been logged", NULL);
}

/* ---- POST /v1/events ---- */

static void created(struct ev_op *op, const char *outcome, json_t *body)
{
	if (strcmp(outcome, "created") == 0) {
		const char *id = json_string_value(json_object_get(body, "id"));
		char location[96];
		snprintf(location, sizeof(location), "/v1/events/%s", id ? id : "");
		if (id)
			op->ev->api->reply_header(op->req, "Location", location);
		ev_reply(op, 201, json_incref(body));
	} else if (strcmp(outcome, "forbidden") == 0)
		ev_problem(op, 403, NULL,
		           "events are created by admins and by members holding an organiser grant",
		           NULL);
	else if (strcmp(outcome, "invalid") == 0)
		ev_problem(op, 422, "Invalid event", "the event refers to unknown things",
		           json_incref(body));
	else
		unexpected(op, outcome);
}

static void post_event(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	json_t *body = api->req_json(req);
	if (!body)
		return;
	json_t *errors = json_object();
	json_t *doc = ev_check_event(body, true, errors);
	if (!doc) {
		api->reply_problem(req, 422, "Invalid event", "the body does not describe an event",
		                   errors);
		return;
	}
	json_decref(errors);
	struct ev_op *op = ev_op_new(ev, req);
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!op || !text) {
		free(text);
		if (op)
			ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	const char *params[] = { ev_user_param(op), ev_admin_param(op), text };
	ev_call(
	    op, "ev_create",
	    "SELECT outcome, body, notices FROM events_create($1::uuid, $2::boolean, $3::jsonb)", 3,
	    params, created);
	free(text);
}

/* ---- GET /v1/events ---- */

static void listed(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	int n = api->db_ntuples(res);
	json_t *items = json_array();
	for (int i = 0; i < n && i < op->limit; i++)
		json_array_append_new(items, ev_json_col(op, res, i, 0));
	char *next = NULL;
	if (n > op->limit) {
		json_t *pos = json_pack("[ss]", api->db_value(res, op->limit - 1, 1),
		                        api->db_value(res, op->limit - 1, 2));
		next = ev_cursor_encode(pos);
		json_decref(pos);
	}
	json_t *body = json_pack("{s:o, s:s?}", "items", items, "next_cursor", next);
	free(next);
	ev_reply(op, 200, body);
}

/* ?limit= and ?cursor= for a keyset of nfields strings. Answers 400 and returns false
 * when bad; *position is a new reference or NULL. */
static bool page_params(struct ev_plugin *ev, struct sp_request *req, int def, int max,
                        size_t nfields, int *limit, json_t **position)
{
	const struct sp_api *api = ev->api;
	const char *l = api->req_query(req, "limit");
	const char *c = api->req_query(req, "cursor");
	*limit = def;
	*position = NULL;
	if (l) {
		char *end;
		long v = strtol(l, &end, 10);
		if (!*l || *end || v < 1 || v > max) {
			char detail[80];
			snprintf(detail, sizeof(detail), "limit must be an integer from 1 to %d",
			         max);
			api->reply_problem(req, 400, "Bad query parameter", detail, NULL);
			return false;
		}
		*limit = (int)v;
	}
	if (c && *c) {
		*position = ev_cursor_decode(c, nfields);
		if (!*position) {
			api->reply_problem(
			    req, 400, "Bad query parameter",
			    "cursor is not valid; use next_cursor from a previous page", NULL);
			return false;
		}
	}
	return true;
}

/* "true"/"1" → "true", "false"/"0" → "false", absent → NULL; else bad. */
static bool bool_query(const char *v, const char **out)
{
	*out = NULL;
	if (!v)
		return true;
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*out = "true";
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*out = "false";
	else
		return false;
	return true;
}

static void list_events(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	const char *status = api->req_query(req, "status");
	const char *topic = api->req_query(req, "topic");
	const char *q = api->req_query(req, "q");
	const char *upcoming;
	if (status && strcmp(status, "draft") != 0 && strcmp(status, "published") != 0 &&
	    strcmp(status, "closed") != 0) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "status must be draft, published or closed", NULL);
		return;
	}
	if (!bool_query(api->req_query(req, "upcoming"), &upcoming)) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "upcoming must be true or false", NULL);
		return;
	}
	if (topic && !ev_valid_slug(topic)) {
		api->reply_problem(req, 400, "Bad query parameter", "topic must be a topic slug",
		                   NULL);
		return;
	}
	if (q && strlen(q) > 200) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "q must be at most 200 characters", NULL);
		return;
	}
	int limit;
	json_t *pos;
	if (!page_params(ev, req, LIST_DEFAULT, LIST_MAX, 2, &limit, &pos))
		return;
	const char *k1 = pos ? json_string_value(json_array_get(pos, 0)) : NULL;
	const char *k2 = pos ? json_string_value(json_array_get(pos, 1)) : NULL;
	if (pos && !ev_valid_uuid(k2)) {
		json_decref(pos);
		api->reply_problem(req, 400, "Bad query parameter", "cursor is not valid", NULL);
		return;
	}
	struct ev_op *op = ev_op_new(ev, req);
	if (!op) {
		json_decref(pos);
		return;
	}
	op->extra = pos;
	op->limit = limit;
	char *pattern = q && *q ? ev_like_pattern(q) : NULL;
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[] = {
		ev_admin_param(op), ev_user_param(op), status, upcoming, topic, pattern, k1, k2, lim
	};
	ev_step(
	    op, "ev_list",
	    "SELECT events_event_json(e), e.starts_at::text, e.id::text FROM events_events e "
	    "WHERE (e.status <> 'draft' OR $1::boolean OR EXISTS (SELECT 1 FROM "
	    "events_organisers o WHERE o.event_id = e.id AND o.user_id = $2::uuid)) "
	    "AND ($3::text IS NULL OR e.status = $3::text) "
	    "AND ($4::boolean IS NULL OR (e.ends_at > now()) = $4::boolean) "
	    "AND ($5::text IS NULL OR e.topics && (ARRAY[$5::text] || ARRAY(SELECT c.slug "
	    "FROM sp_topics c JOIN sp_topics p ON c.parent_id = p.id WHERE p.slug = $5::text))) "
	    "AND ($6::text IS NULL OR e.title ILIKE $6::text OR e.description ILIKE $6::text "
	    "OR e.venue ILIKE $6::text) "
	    "AND ($7::timestamptz IS NULL OR (e.starts_at, e.id) > ($7::timestamptz, $8::uuid)) "
	    "ORDER BY e.starts_at, e.id LIMIT $9::int",
	    9, params, listed);
	free(pattern);
}

/* ---- GET /v1/events/{id} and its calendar ---- */

static void got_event(struct ev_op *op, const struct sp_db_result *res)
{
	bool organiser;
	json_t *event = visible_event(op, res, &organiser);
	if (event)
		ev_reply(op, 200, event);
}

static void get_event(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	memcpy(op->event_id, id, sizeof(id));
	load_event(op, got_event);
}

static void got_calendar(struct ev_op *op, const struct sp_db_result *res)
{
	bool organiser;
	json_t *event = visible_event(op, res, &organiser);
	if (!event)
		return;
	char *ics = ev_ics_event(event);
	json_decref(event);
	if (!ics) {
		ev_problem(op, 500, NULL, "the calendar could not be built", NULL);
		return;
	}
	ev_reply_raw(op, 200, "text/calendar; charset=utf-8", ics, strlen(ics));
	free(ics);
}

static void get_calendar(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	memcpy(op->event_id, id, sizeof(id));
	load_event(op, got_calendar);
}

/* ---- PATCH /v1/events/{id} ---- */

static void patch_loaded(struct ev_op *op, const struct sp_db_result *res);

static void patched(struct ev_op *op, const char *outcome, json_t *body)
{
	char detail[256];
	if (strcmp(outcome, "updated") == 0) {
		ev_reply(op, 200, json_incref(body));
	} else if (common_outcome(op, outcome)) {
		return;
	} else if (strcmp(outcome, "conflict") == 0) {
		if (++op->attempts < PATCH_ATTEMPTS) {
			load_event(op, patch_loaded); /* someone changed it: merge again */
			return;
		}
		ev_problem(op, 409, NULL, "the event keeps changing; retry", NULL);
	} else if (strcmp(outcome, "invalid") == 0) {
		ev_problem(op, 422, "Invalid event", "the event refers to unknown things",
		           json_incref(body));
	} else if (strcmp(outcome, "capacity_below") == 0) {
		long long cap = json_integer_value(json_object_get(body, "capacity"));
		long long conf = json_integer_value(json_object_get(body, "confirmed"));
		snprintf(detail, sizeof(detail),
		         "capacity %lld is below the %lld confirmed registrations; cancel some "
		         "first or choose at least %lld",
		         cap, conf, conf);
		ev_problem(op, 409, "Capacity below confirmed registrations", detail,
		           json_pack("{s:s}", "capacity", detail));
	} else if (strcmp(outcome, "quota_below") == 0) {
		snprintf(detail, sizeof(detail),
		         "the quota %lld of category '%s' is below its %lld confirmed "
		         "registrations",
		         (long long)json_integer_value(json_object_get(body, "quota")),
		         json_string_value(json_object_get(body, "name")),
		         (long long)json_integer_value(json_object_get(body, "confirmed")));
		ev_problem(op, 409, "Quota below confirmed registrations", detail,
		           json_pack("{s:s}", "categories", detail));
	} else if (strcmp(outcome, "category_in_use") == 0) {
		snprintf(detail, sizeof(detail),
		         "category '%s' still has %lld active registrations and cannot be removed",
		         json_string_value(json_object_get(body, "name")),
		         (long long)json_integer_value(json_object_get(body, "registrations")));
		ev_problem(op, 409, "Category in use", detail,
		           json_pack("{s:s}", "categories", detail));
	} else {
		unexpected(op, outcome);
	}
}

static bool is_readonly_field(const char *key)
{
	static const char *const ro[] = { "id",           "confirmed_count", "waitlist_count",
		                          "version",      "created_at",      "updated_at",
		                          "published_at", "closed_at",       NULL };
	for (int i = 0; ro[i]; i++)
		if (strcmp(ro[i], key) == 0)
			return true;
	return false;
}

static void patch_loaded(struct ev_op *op, const struct sp_db_result *res)
{
	bool organiser;
	json_t *event = visible_event(op, res, &organiser);
	if (!event)
		return;
	if (!organiser) {
		json_decref(event);
		ev_problem(op, 403, NULL, "only the event's organisers and admins may change it",
		           NULL);
		return;
	}
	if (op->doc) { /* the body's own errors, told only to those who may change it */
		json_decref(event);
		json_t *errors = op->doc;
		op->doc = NULL;
		ev_problem(op, 422, "Invalid change", "the body cannot be applied", errors);
		return;
	}
	json_int_t version = json_integer_value(json_object_get(event, "version"));
	/* The current writable fields with the patch applied, checked as a whole. */
	json_t *merged = json_object();
	const char *key;
	json_t *v;
	json_object_foreach(event, key, v)
	{
		if (!is_readonly_field(key) && strcmp(key, "status") != 0)
			json_object_set(merged, key, v);
	}
	json_decref(event);
	json_object_update(merged, op->extra);
	json_t *errors = json_object();
	json_t *doc = ev_check_event(merged, false, errors);
	json_decref(merged);
	if (!doc) {
		ev_problem(op, 422, "Invalid event", "the change would make the event invalid",
		           errors);
		return;
	}
	json_decref(errors);
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!text) {
		ev_problem(op, 500, NULL, "out of memory", NULL);
		return;
	}
	char ver[24];
	snprintf(ver, sizeof(ver), "%lld", (long long)version);
	const char *params[] = { op->event_id, ev_user_param(op), ev_admin_param(op), ver, text };
	ev_call(op, "ev_update",
	        "SELECT outcome, body, notices FROM events_update($1::uuid, $2::uuid, $3::boolean, "
	        "$4::int, $5::jsonb)",
	        5, params, patched);
	free(text);
}

static void patch_event(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	char id[40];
	if (!ev_path_uuid(req, api, "id", id, "event"))
		return;
	json_t *body = api->req_json(req);
	if (!body)
		return;
	json_t *errors = json_object();
	if (!json_is_object(body)) {
		ev_error(errors, "", "the body must be a JSON object");
	} else {
		const char *key;
		json_t *v;
		json_object_foreach(body, key, v)
		{
			if (strcmp(key, "status") == 0)
				ev_error(errors, key,
				         "change it with POST /v1/events/{id}/publish or /close");
			else if (is_readonly_field(key))
				ev_error(errors, key, "is read-only");
		}
	}
	/* Unknown fields are reported by the full check after the merge. A body that
	 * cannot be applied is refused after the organiser check all the same, so that
	 * whoever may not change the event learns only that (403, or 404 for a draft). */
	struct ev_op *op = ev_op_new(ev, req);
	if (!op) {
		json_decref(errors);
		return;
	}
	memcpy(op->event_id, id, sizeof(id));
	if (json_object_size(errors) > 0)
		op->doc = errors;
	else
		json_decref(errors);
	op->extra = json_incref(body);
	load_event(op, patch_loaded);
}

/* ---- DELETE /v1/events/{id} ---- */

static void deleted(struct ev_op *op, const char *outcome, json_t *body)
{
	if (strcmp(outcome, "deleted") == 0) {
		ev_reply_raw(op, 204, NULL, NULL, 0);
	} else if (common_outcome(op, outcome)) {
		return;
	} else if (strcmp(outcome, "in_use") == 0) {
		char detail[160];
		snprintf(detail, sizeof(detail),
		         "the event has %lld confirmed and %lld waitlisted registrations; close it "
		         "instead, or cancel them first",
		         (long long)json_integer_value(json_object_get(body, "confirmed")),
		         (long long)json_integer_value(json_object_get(body, "waitlisted")));
		ev_problem(op, 409, "Event has registrations", detail, NULL);
	} else {
		unexpected(op, outcome);
	}
}

static void delete_event(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { id, ev_user_param(op), ev_admin_param(op) };
	ev_call(op, "ev_delete",
	        "SELECT outcome, body, notices FROM events_delete($1::uuid, $2::uuid, $3::boolean)",
	        3, params, deleted);
}

/* ---- POST /v1/events/{id}/publish and /close ---- */

static void transitioned(struct ev_op *op, const char *outcome, json_t *body)
{
	if (strcmp(outcome, "done") == 0) {
		ev_reply(op, 200, json_incref(body));
	} else if (common_outcome(op, outcome)) {
		return;
	} else if (strcmp(outcome, "bad_state") == 0) {
		char detail[160];
		snprintf(detail, sizeof(detail),
		         "the event is %s; only a draft can be published and only a published "
		         "event closed",
		         json_string_value(json_object_get(body, "status")));
		ev_problem(op, 409, "Wrong event status", detail, NULL);
	} else {
		unexpected(op, outcome);
	}
}

static void transition(struct sp_request *req, struct ev_plugin *ev, const char *to)
{
	char id[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { id, ev_user_param(op), ev_admin_param(op), to };
	ev_call(op, "ev_transition",
	        "SELECT outcome, body, notices FROM events_transition($1::uuid, $2::uuid, "
	        "$3::boolean, $4::text)",
	        4, params, transitioned);
}

static void publish_event(struct sp_request *req, void *state)
{
	transition(req, state, "published");
}

static void close_event(struct sp_request *req, void *state)
{
	transition(req, state, "closed");
}

/* ---- organisers ---- */

static void granted(struct ev_op *op, const char *outcome, json_t *body)
{
	if (strcmp(outcome, "granted") == 0 || strcmp(outcome, "exists") == 0)
		ev_reply(op, strcmp(outcome, "granted") == 0 ? 201 : 200, json_incref(body));
	else if (common_outcome(op, outcome))
		return;
	else if (strcmp(outcome, "no_user") == 0)
		ev_problem(op, 422, "Unknown user", "no user matches",
		           json_pack("{s:s}", op->text, "no user matches"));
	else
		unexpected(op, outcome);
}

/* A malformed organiser grant: 404/403 for those who may not grant, else 422. */
static void grant_invalid_loaded(struct ev_op *op, const struct sp_db_result *res)
{
	bool organiser;
	json_t *event = visible_event(op, res, &organiser);
	if (!event)
		return;
	json_decref(event);
	if (!organiser) {
		ev_problem(op, 403, NULL,
		           "only the event's organisers and admins may add organisers", NULL);
		return;
	}
	json_t *errors = op->doc;
	op->doc = NULL;
	ev_problem(op, 422, "Invalid organiser", "the body names no one", errors);
}

static void post_organiser(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	const struct sp_api *api = ev->api;
	char id[40];
	if (!ev_path_uuid(req, api, "id", id, "event"))
		return;
	json_t *body = api->req_json(req);
	if (!body)
		return;
	json_t *errors = json_object();
	const char *email = NULL, *user = NULL;
	if (!json_is_object(body)) {
		ev_error(errors, "", "the body must be a JSON object {email} or {user_id}");
	} else {
		const char *key;
		json_t *v;
		json_object_foreach(body, key, v)
		{
			if (strcmp(key, "email") != 0 && strcmp(key, "user_id") != 0)
				ev_error(errors, key, "unknown field");
		}
		json_t *e = json_object_get(body, "email"), *u = json_object_get(body, "user_id");
		if (e && !ev_valid_email(json_string_value(e)))
			ev_error(errors, "email", "is not an e-mail address");
		if (u && !ev_valid_uuid(json_string_value(u)))
			ev_error(errors, "user_id", "is not a user id");
		if (!e == !u)
			ev_error(errors, e ? "user_id" : "email", "give either email or user_id");
		email = json_string_value(e);
		user = json_string_value(u);
	}
	if (json_object_size(errors) > 0) {
		/* Refused after the organiser check, as PATCH does. */
		struct ev_op *op = ev_op_new(ev, req);
		if (!op) {
			json_decref(errors);
			return;
		}
		memcpy(op->event_id, id, sizeof(id));
		op->doc = errors;
		load_event(op, grant_invalid_loaded);
		return;
	}
	json_decref(errors);
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	op->text = malloc(8);
	if (op->text)
		snprintf(op->text, 8, "%s", email ? "email" : "user_id");
	const char *params[] = { id, ev_user_param(op), ev_admin_param(op), user, email };
	ev_call(op, "ev_grant",
	        "SELECT outcome, body, notices FROM events_grant($1::uuid, $2::uuid, $3::boolean, "
	        "$4::uuid, $5::text)",
	        5, params, granted);
}

/* Columns: status, organiser, then route-specific data. 404/403 answered here. */
static bool organiser_gate(struct ev_op *op, const struct sp_db_result *res)
{
	const struct sp_api *api = op->ev->api;
	const char *status = api->db_ntuples(res) == 1 ? api->db_value(res, 0, 0) : NULL;
	const char *org = status ? api->db_value(res, 0, 1) : NULL;
	bool organiser = org && strcmp(org, "t") == 0;
	if (!status || (strcmp(status, "draft") == 0 && !organiser)) {
		ev_problem(op, 404, NULL, "no such event", NULL);
		return false;
	}
	if (!organiser) {
		ev_problem(op, 403, NULL, "only the event's organisers and admins may do this",
		           NULL);
		return false;
	}
	return true;
}

static void organisers_listed(struct ev_op *op, const struct sp_db_result *res)
{
	if (organiser_gate(op, res))
		ev_reply(
		    op, 200,
		    json_pack("{s:o, s:n}", "items", ev_json_col(op, res, 0, 2), "next_cursor"));
}

static void list_organisers(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { id, ev_user_param(op), ev_admin_param(op) };
	ev_step(op, "ev_organisers",
	        "SELECT e.status, events_is_organiser(e.id, $2::uuid, $3::boolean), "
	        "coalesce((SELECT jsonb_agg(jsonb_build_object('user_id', u.id, 'email', u.email, "
	        "'display_name', u.display_name, 'granted_at', events_ts(o.granted_at)) "
	        "ORDER BY o.granted_at, u.id) FROM events_organisers o JOIN sp_users u "
	        "ON u.id = o.user_id WHERE o.event_id = e.id), '[]') "
	        "FROM events_events e WHERE e.id = $1::uuid",
	        3, params, organisers_listed);
}

static void organiser_revoked(struct ev_op *op, const struct sp_db_result *res)
{
	if (!organiser_gate(op, res))
		return;
	const char *n = op->ev->api->db_value(res, 0, 2);
	if (!n || strcmp(n, "0") == 0)
		ev_problem(op, 404, NULL, "this user is not an organiser of the event", NULL);
	else
		ev_reply_raw(op, 204, NULL, NULL, 0);
}

static void delete_organiser(struct sp_request *req, void *state)
{
	struct ev_plugin *ev = state;
	char id[40], user[40];
	if (!ev_path_uuid(req, ev->api, "id", id, "event") ||
	    !ev_path_uuid(req, ev->api, "user_id", user, "organiser"))
		return;
	struct ev_op *op = ev_op_new(ev, req);
	if (!op)
		return;
	const char *params[] = { id, ev_user_param(op), ev_admin_param(op), user };
	ev_step(
	    op, "ev_revoke",
	    "WITH e AS (SELECT id, status, events_is_organiser(id, $2::uuid, $3::boolean) AS org "
	    "FROM events_events WHERE id = $1::uuid), "
	    "d AS (DELETE FROM events_organisers o USING e WHERE e.org AND o.event_id = e.id "
	    "AND o.user_id = $4::uuid RETURNING 1) "
	    "SELECT e.status, e.org, (SELECT count(*) FROM d) FROM e",
	    4, params, organiser_revoked);
}

/* ---- routes ---- */

#define EVENT_SCHEMA                                                                               \
	"{\"type\":\"object\",\"properties\":{"                                                    \
	"\"title\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200},"                       \
	"\"description\":{\"type\":[\"string\",\"null\"]},"                                        \
	"\"venue\":{\"type\":[\"string\",\"null\"]},"                                              \
	"\"online_url\":{\"type\":[\"string\",\"null\"],\"format\":\"uri\"},"                      \
	"\"starts_at\":{\"type\":\"string\",\"format\":\"date-time\"},"                            \
	"\"ends_at\":{\"type\":\"string\",\"format\":\"date-time\"},"                              \
	"\"timezone\":{\"type\":\"string\"},"                                                      \
	"\"topics\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"                         \
	"\"capacity\":{\"type\":\"integer\",\"minimum\":0},"                                       \
	"\"registration_opens_at\":{\"type\":[\"string\",\"null\"],\"format\":\"date-time\"},"     \
	"\"registration_closes_at\":{\"type\":[\"string\",\"null\"],\"format\":\"date-time\"},"    \
	"\"categories\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"       \
	"\"name\":{\"type\":\"string\"},\"quota\":{\"type\":[\"integer\",\"null\"]}}}},"           \
	"\"questions\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"        \
	"\"id\":{\"type\":\"string\"},\"label\":{\"type\":\"string\"},"                            \
	"\"type\":{\"enum\":[\"text\",\"choice\",\"multi_choice\"]},"                              \
	"\"required\":{\"type\":\"boolean\"},"                                                     \
	"\"options\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}},"                     \
	"\"settings\":{\"type\":\"object\"},"                                                      \
	"\"status\":{\"enum\":[\"draft\",\"published\",\"closed\"]}}}"

#define LIST_SCHEMA                                                                                \
	"{\"type\":\"object\",\"required\":[\"items\",\"next_cursor\"],\"properties\":{"           \
	"\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\"}},"                          \
	"\"next_cursor\":{\"type\":[\"string\",\"null\"]}}}"

#define ORGANISER_SCHEMA                                                                           \
	"{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"                     \
	"\"email\":{\"type\":\"string\"},\"user_id\":{\"type\":\"string\",\"format\":\"uuid\"}}}"

static const struct sp_route routes[] = {
	{ "POST", "/v1/events", SP_ACCESS_USER, post_event,
	  "Create an event (admins, and members holding an organiser grant)", EVENT_SCHEMA,
	  EVENT_SCHEMA },
	{ "GET", "/v1/events", SP_ACCESS_PUBLIC, list_events,
	  "List events (filters: upcoming, topic, status, q; cursor pagination)", NULL,
	  LIST_SCHEMA },
	{ "GET", "/v1/events/{id}", SP_ACCESS_PUBLIC, get_event, "One event", NULL, EVENT_SCHEMA },
	{ "PATCH", "/v1/events/{id}", SP_ACCESS_USER, patch_event,
	  "Change an event (organisers); capacity below the confirmed count is refused",
	  EVENT_SCHEMA, EVENT_SCHEMA },
	{ "DELETE", "/v1/events/{id}", SP_ACCESS_USER, delete_event,
	  "Delete an event without registrations (organisers)", NULL, NULL },
	{ "POST", "/v1/events/{id}/publish", SP_ACCESS_USER, publish_event,
	  "Publish a draft event (organisers)", NULL, EVENT_SCHEMA },
	{ "POST", "/v1/events/{id}/close", SP_ACCESS_USER, close_event,
	  "Close a published event (organisers)", NULL, EVENT_SCHEMA },
	{ "GET", "/v1/events/{id}/calendar.ics", SP_ACCESS_PUBLIC, get_calendar,
	  "The event as an iCalendar (RFC 5545) file", NULL, NULL },
	{ "POST", "/v1/events/{id}/organisers", SP_ACCESS_USER, post_organiser,
	  "Grant the organiser role on the event (organisers)", ORGANISER_SCHEMA, NULL },
	{ "GET", "/v1/events/{id}/organisers", SP_ACCESS_USER, list_organisers,
	  "The event's organisers (organisers)", NULL, LIST_SCHEMA },
	{ "DELETE", "/v1/events/{id}/organisers/{user_id}", SP_ACCESS_USER, delete_organiser,
	  "Revoke an organiser grant (organisers)", NULL, NULL },
};

int ev_add_event_routes(struct ev_plugin *ev)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (ev->api->route_add(ev->plugin, &routes[i]) < 0)
			return -1;
	return 0;
}
