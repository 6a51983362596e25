/* wh_routes.c — the webhook HTTP API: organisation managers (for their organisation)
 * and admins (for any) register, list, change, delete and test endpoints, rotate their
 * secrets and read the deliveries log. A secret is shown once, when it is made. */
#include "wh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define MAX_EVENTS      50
#define DESCRIPTION_MAX 500
#define PAGE_DEFAULT    50
#define PAGE_MAX        200

/* Columns of an endpoint as the API shows it (never the secrets). */
#define EP_COLS                                                                                    \
	"id::text AS id, org_id::text AS org_id, url, to_jsonb(events) AS events, description, "   \
	"enabled, disabled_reason, CASE WHEN previous_secret_expires_at > now() THEN to_char("     \
	"previous_secret_expires_at AT TIME ZONE 'UTC', " WH_TS_FMT ") END AS "                    \
	"previous_secret_expires_at, to_char(created_at AT TIME ZONE 'UTC', " WH_TS_FMT ") AS "    \
	"created_at, to_char(updated_at AT TIME ZONE 'UTC', " WH_TS_FMT ") AS updated_at"

/* Who is asking: admins see every organisation (org NULL), managers their own. */
struct scope {
	const char *org;
	const char *user_id;
	bool admin;
};

static bool scope_get(struct wh *wh, struct sp_request *req, struct scope *sc)
{
	const struct sp_principal *p = wh->api->req_principal(req);
	if (!p) {
		wh->api->reply_problem(req, 401, NULL, "a bearer token is required", NULL);
		return false;
	}
	sc->user_id = p->user_id;
	sc->admin = p->is_admin;
	sc->org = NULL;
	if (p->is_admin)
		return true;
	if (p->org_id && p->org_role && strcmp(p->org_role, "manager") == 0) {
		sc->org = p->org_id;
		return true;
	}
	wh->api->reply_problem(req, 403, NULL,
	                       "only managers of an organisation and admins manage webhooks", NULL);
	return false;
}

/* The {id} of the path, or NULL after answering 404. */
static const char *endpoint_param(struct wh *wh, struct sp_request *req)
{
	const char *id = wh->api->req_param(req, "id");
	if (!wh_is_uuid(id)) {
		wh->api->reply_problem(req, 404, NULL, "no such webhook endpoint", NULL);
		return NULL;
	}
	return id;
}

/* ---- cursors: base64url of a JSON array of strings ---- */

static char *cursor_encode(json_t *position /* stolen */)
{
	char *text = json_dumps(position, JSON_COMPACT);
	json_decref(position);
	if (!text)
		return NULL;
	size_t len = strlen(text);
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = malloc(cap);
	if (out)
		sodium_bin2base64(out, cap, (const unsigned char *)text, len,
		                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	free(text);
	return out;
}

/* Reads ?limit and ?cursor (an array of n strings, new reference in *pos, NULL on the
 * first page). Answers 400 and returns false on bad values. */
static bool page_params(struct wh *wh, struct sp_request *req, size_t n, int *limit, json_t **pos)
{
	*limit = PAGE_DEFAULT;
	*pos = NULL;
	const char *l = wh->api->req_query(req, "limit");
	if (l) {
		char *end;
		long v = strtol(l, &end, 10);
		if (!*l || *end || v < 1 || v > PAGE_MAX) {
			wh->api->reply_problem(req, 400, "Bad query parameter",
			                       "limit must be an integer between 1 and 200", NULL);
			return false;
		}
		*limit = (int)v;
	}
	const char *c = wh->api->req_query(req, "cursor");
	if (c && *c) {
		unsigned char buf[512];
		size_t len = 0;
		json_t *v = NULL;
		if (strlen(c) < 680 &&
		    sodium_base642bin(buf, sizeof(buf), c, strlen(c), NULL, &len, NULL,
		                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0)
			v = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
		bool good = json_is_array(v) && json_array_size(v) == n;
		for (size_t i = 0; good && i < n; i++)
			good = json_is_string(json_array_get(v, i));
		if (!good) {
			json_decref(v);
			wh->api->reply_problem(
			    req, 400, "Bad query parameter",
			    "cursor is not valid; use next_cursor from a previous "
			    "page",
			    NULL);
			return false;
		}
		*pos = v;
	}
	return true;
}

static bool all_digits(const char *s)
{
	if (!s || !*s || strlen(s) > 19)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* ---- validation of bodies ---- */

static void field_error(json_t *errors, const char *field, const char *msg)
{
	if (!json_object_get(errors, field))
		json_object_set_new(errors, field, json_string(msg));
}

/* events: 1..50 patterns; returns the de-duplicated list as JSON text (new) or NULL. */
static char *check_events(json_t *v, json_t *errors)
{
	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > MAX_EVENTS) {
		field_error(errors, "events",
		            "must be a list of 1 to 50 event types (\"registration.confirmed\", "
		            "\"registration.*\", or \"*\" for all)");
		return NULL;
	}
	json_t *list = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e)
	{
		const char *p = json_string_value(e);
		if (!wh_pattern_valid(p)) {
			field_error(
			    errors, "events",
			    "each entry is an event type ([a-z0-9_.]), \"prefix.*\" or \"*\"");
			json_decref(list);
			return NULL;
		}
		bool seen = false;
		size_t j;
		json_t *f;
		json_array_foreach(list, j, f) seen |= strcmp(json_string_value(f), p) == 0;
		if (!seen)
			json_array_append_new(list, json_string(p));
	}
	char *text = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	return text;
}

static const char *check_description(json_t *v, json_t *errors)
{
	if (!v)
		return NULL;
	if (!json_is_string(v) || json_string_length(v) > DESCRIPTION_MAX) {
		field_error(errors, "description", "must be a text of at most 500 bytes");
		return NULL;
	}
	return json_string_value(v);
}

static char *check_url(struct wh *wh, json_t *v, json_t *errors)
{
	char err[200];
	if (!json_is_string(v)) {
		field_error(errors, "url", "must be an https:// or http:// URL");
		return NULL;
	}
	char *url = wh_url_check(json_string_value(v), &wh->cfg.policy, err, sizeof(err));
	if (!url)
		field_error(errors, "url", err);
	return url;
}

static void check_known(json_t *body, const char *const *allowed, json_t *errors)
{
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v)
	{
		bool known = false;
		for (const char *const *a = allowed; *a; a++)
			known |= strcmp(*a, key) == 0;
		if (!known)
			field_error(errors, key, "unknown field");
	}
}

static bool reply_errors(struct wh *wh, struct sp_request *req, json_t *errors)
{
	if (json_object_size(errors) == 0) {
		json_decref(errors);
		return false;
	}
	wh->api->reply_problem(req, 422, "Invalid webhook endpoint",
	                       "the body does not describe a valid webhook endpoint", errors);
	return true;
}

/* ---- create ---- */

struct created {
	struct wh *wh;
	struct sp_request *req;
	char secret[WH_SECRET_SIZE];
};

static void created_cb(const struct sp_db_result *res, void *arg)
{
	struct created *c = arg;
	const struct sp_api *api = c->wh->api;
	if (!api->db_ok(res)) {
		if (strcmp(api->db_sqlstate(res), "23503") == 0)
			api->reply_problem(c->req, 422, "Invalid webhook endpoint",
			                   "the organisation does not exist",
			                   json_pack("{s:s}", "org", "no such organisation"));
		else
			api->reply_db_error(c->req, res);
	} else if (api->db_ntuples(res) == 0) {
		api->reply_problem(c->req, 422, "Too many webhook endpoints",
		                   "the organisation has as many endpoints as allowed "
		                   "(setting max_endpoints)",
		                   json_pack("{s:s}", "org", "has the most endpoints allowed"));
	} else {
		json_t *row = api->db_row_json(res, 0);
		json_object_set_new(row, "secret", json_string(c->secret));
		api->log(c->wh->plugin, SP_LOG_INFO, "webhook endpoint %s registered for %s",
		         json_string_value(json_object_get(row, "id")),
		         json_string_value(json_object_get(row, "org_id")));
		api->reply_json(c->req, 201, row);
	}
	sodium_memzero(c->secret, sizeof(c->secret));
	free(c);
}

static void create_endpoint(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	const struct sp_api *api = wh->api;
	struct scope sc;
	if (!scope_get(wh, req, &sc))
		return;
	json_t *body = api->req_json(req);
	if (!body)
		return;
	if (!json_is_object(body)) {
		api->reply_problem(req, 422, "Invalid webhook endpoint",
		                   "the body must be an object", NULL);
		return;
	}
	json_t *errors = json_object();
	static const char *const allowed[] = { "url",         "events",  "org",
		                               "description", "enabled", NULL };
	check_known(body, allowed, errors);
	char *url = check_url(wh, json_object_get(body, "url"), errors);
	char *events = check_events(json_object_get(body, "events"), errors);
	const char *description = check_description(json_object_get(body, "description"), errors);
	json_t *enabled = json_object_get(body, "enabled");
	if (enabled && !json_is_boolean(enabled))
		field_error(errors, "enabled", "must be true or false");
	json_t *orgv = json_object_get(body, "org");
	const char *org = json_string_value(orgv);
	bool forbidden = false;
	if (orgv && !wh_is_uuid(org)) {
		field_error(errors, "org", "must be an organisation id");
	} else if (!sc.admin) {
		forbidden = org && strcmp(org, sc.org) != 0;
		org = sc.org;
	} else if (!org) {
		const struct sp_principal *p = api->req_principal(req);
		org = p->org_id;
		if (!org)
			field_error(errors, "org",
			            "is required: the organisation the endpoint is for");
	}
	if (forbidden) {
		json_decref(errors);
		free(url);
		free(events);
		api->reply_problem(req, 403, NULL,
		                   "managers register endpoints for their own organisation only",
		                   NULL);
		return;
	}
	if (reply_errors(wh, req, errors)) {
		free(url);
		free(events);
		return;
	}
	struct created *c = calloc(1, sizeof(*c));
	if (!c) {
		free(url);
		free(events);
		api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return;
	}
	c->wh = wh;
	c->req = req;
	wh_secret_new(c->secret);
	char max[24];
	snprintf(max, sizeof(max), "%ld", wh->cfg.max_endpoints);
	const char *params[] = { org,
		                 url,
		                 events,
		                 description ? description : "",
		                 json_is_false(enabled) ? "false" : "true",
		                 c->secret,
		                 sc.user_id,
		                 max };
	int rc = api->db_query(wh->plugin,
	                       "INSERT INTO webhook_endpoints (org_id, url, events, description, "
	                       "enabled, secret, created_by) SELECT $1::uuid, $2, ARRAY(SELECT "
	                       "jsonb_array_elements_text($3::jsonb)), $4, $5::boolean, $6, "
	                       "$7::uuid WHERE (SELECT count(*) FROM webhook_endpoints WHERE "
	                       "org_id = $1::uuid) < $8::int RETURNING " EP_COLS,
	                       8, params, created_cb, c);
	free(url);
	free(events);
	if (rc < 0) {
		sodium_memzero(c->secret, sizeof(c->secret));
		free(c);
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

/* ---- read, list ---- */

struct pending {
	struct wh *wh;
	struct sp_request *req;
	int limit;
};

static struct pending *pending_new(struct wh *wh, struct sp_request *req)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p) {
		wh->api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return NULL;
	}
	p->wh = wh;
	p->req = req;
	return p;
}

/* Queues sql for p, answering 503 when nothing could be queued. */
static void run(struct pending *p, const char *sql, int n, const char *const *params,
                sp_db_result_fn *cb)
{
	if (p->wh->api->db_query(p->wh->plugin, sql, n, params, cb, p) < 0) {
		p->wh->api->reply_problem(p->req, 503, NULL, "the database is unavailable", NULL);
		free(p);
	}
}

/* One endpoint row, or 404. */
static void one_cb(const struct sp_db_result *res, void *arg)
{
	struct pending *p = arg;
	const struct sp_api *api = p->wh->api;
	if (!api->db_ok(res))
		api->reply_db_error(p->req, res);
	else if (api->db_ntuples(res) == 0)
		api->reply_problem(p->req, 404, NULL, "no such webhook endpoint", NULL);
	else
		api->reply_json(p->req, 200, api->db_row_json(res, 0));
	free(p);
}

static void get_endpoint(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	struct scope sc;
	const char *id;
	struct pending *p;
	if (!scope_get(wh, req, &sc) || !(id = endpoint_param(wh, req)) ||
	    !(p = pending_new(wh, req)))
		return;
	const char *params[] = { id, sc.org };
	run(p,
	    "SELECT " EP_COLS " FROM webhook_endpoints WHERE id = $1::uuid AND ($2::uuid IS NULL "
	    "OR org_id = $2::uuid)",
	    2, params, one_cb);
}

static void list_cb(const struct sp_db_result *res, void *arg)
{
	struct pending *p = arg;
	const struct sp_api *api = p->wh->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(p->req, res);
		free(p);
		return;
	}
	int n = api->db_ntuples(res);
	json_t *items = json_array(), *next = json_null();
	for (int i = 0; i < n && i < p->limit; i++) {
		json_t *row = api->db_row_json(res, i);
		json_object_del(row, "k");
		json_array_append_new(items, row);
	}
	if (n > p->limit) {
		int last = p->limit - 1;
		char *c = cursor_encode(
		    json_pack("[s, s]", api->db_value(res, last, 10), api->db_value(res, last, 0)));
		if (c) {
			json_decref(next);
			next = json_string(c);
			free(c);
		}
	}
	api->reply_json(p->req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
	free(p);
}

static void list_endpoints(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	const struct sp_api *api = wh->api;
	struct scope sc;
	if (!scope_get(wh, req, &sc))
		return;
	const char *org = api->req_query(req, "org");
	if (org && !wh_is_uuid(org)) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "org must be an organisation id", NULL);
		return;
	}
	if (org && !sc.admin && strcmp(org, sc.org) != 0) {
		api->reply_problem(req, 403, NULL,
		                   "managers see their own organisation's endpoints", NULL);
		return;
	}
	if (!sc.admin)
		org = sc.org;
	int limit;
	json_t *pos;
	if (!page_params(wh, req, 2, &limit, &pos))
		return;
	const char *key = pos ? json_string_value(json_array_get(pos, 0)) : NULL;
	const char *after = pos ? json_string_value(json_array_get(pos, 1)) : NULL;
	if (pos && (!all_digits(key) || !wh_is_uuid(after))) {
		json_decref(pos);
		api->reply_problem(req, 400, "Bad query parameter",
		                   "cursor is not valid; use next_cursor from a previous page",
		                   NULL);
		return;
	}
	struct pending *p = pending_new(wh, req);
	if (!p) {
		json_decref(pos);
		return;
	}
	p->limit = limit;
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[] = { org, key, after, lim };
	/* The position is the creation time in microseconds since the epoch, exact (no
	 * floating point on the way back). ORDER BY names the table's columns: EP_COLS
	 * has output columns of the same names (formatted text). */
	run(p,
	    "SELECT " EP_COLS ", (extract(epoch FROM w.created_at) * 1000000)::bigint::text AS k "
	    "FROM webhook_endpoints w WHERE ($1::uuid IS NULL OR w.org_id = $1::uuid) AND "
	    "($2::bigint IS NULL OR (w.created_at, w.id) > (timestamptz 'epoch' + make_interval("
	    "secs => $2::bigint / 1000000) + ($2::bigint % 1000000) * interval '1 microsecond', "
	    "$3::uuid)) ORDER BY w.created_at, w.id LIMIT $4::int",
	    4, params, list_cb);
	json_decref(pos);
}

/* ---- change, delete ---- */

struct patch {
	struct pending p;
	bool disabling, enabling;
};

static void patched_cb(const struct sp_db_result *res, void *arg)
{
	struct patch *pt = arg;
	const struct sp_api *api = pt->p.wh->api;
	if (api->db_ok(res) && api->db_ntuples(res) == 1 && (pt->enabling || pt->disabling))
		api->log(pt->p.wh->plugin, SP_LOG_INFO, "webhook endpoint %s %s through the API",
		         api->db_value(res, 0, 0), pt->enabling ? "enabled" : "disabled");
	one_cb(res, &pt->p); /* frees pt: p is its first member */
}

static void patch_endpoint(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	const struct sp_api *api = wh->api;
	struct scope sc;
	const char *id;
	if (!scope_get(wh, req, &sc) || !(id = endpoint_param(wh, req)))
		return;
	json_t *body = api->req_json(req);
	if (!body)
		return;
	if (!json_is_object(body)) {
		api->reply_problem(req, 422, "Invalid webhook endpoint",
		                   "the body must be an object", NULL);
		return;
	}
	json_t *errors = json_object();
	static const char *const allowed[] = { "url", "events", "description", "enabled", NULL };
	check_known(body, allowed, errors);
	json_t *urlv = json_object_get(body, "url"), *eventsv = json_object_get(body, "events");
	char *url = urlv ? check_url(wh, urlv, errors) : NULL;
	char *events = eventsv ? check_events(eventsv, errors) : NULL;
	const char *description = check_description(json_object_get(body, "description"), errors);
	json_t *enabled = json_object_get(body, "enabled");
	if (enabled && !json_is_boolean(enabled))
		field_error(errors, "enabled", "must be true or false");
	if (reply_errors(wh, req, errors)) {
		free(url);
		free(events);
		return;
	}
	struct patch *pt = calloc(1, sizeof(*pt));
	if (!pt) {
		free(url);
		free(events);
		api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return;
	}
	pt->p.wh = wh;
	pt->p.req = req;
	pt->enabling = json_is_true(enabled);
	pt->disabling = json_is_false(enabled);
	const char *params[] = {
		id,     sc.org,      url,
		events, description, enabled ? (json_is_true(enabled) ? "true" : "false") : NULL
	};
	run(&pt->p,
	    "UPDATE webhook_endpoints SET url = coalesce($3, url), events = CASE WHEN $4::jsonb IS "
	    "NULL THEN events ELSE ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END, "
	    "description = coalesce($5, description), enabled = coalesce($6::boolean, enabled), "
	    "disabled_reason = CASE WHEN $6::boolean IS NULL THEN disabled_reason WHEN "
	    "$6::boolean THEN NULL ELSE 'disabled through the API' END, updated_at = now() WHERE "
	    "id = $1::uuid AND ($2::uuid IS NULL OR org_id = $2::uuid) RETURNING " EP_COLS,
	    6, params, patched_cb);
	free(url);
	free(events);
}

static void deleted_cb(const struct sp_db_result *res, void *arg)
{
	struct pending *p = arg;
	const struct sp_api *api = p->wh->api;
	if (!api->db_ok(res))
		api->reply_db_error(p->req, res);
	else if (api->db_ntuples(res) == 0)
		api->reply_problem(p->req, 404, NULL, "no such webhook endpoint", NULL);
	else {
		api->log(p->wh->plugin, SP_LOG_INFO, "webhook endpoint %s deleted",
		         api->db_value(res, 0, 0));
		api->reply_json(p->req, 204, NULL);
	}
	free(p);
}

static void delete_endpoint(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	struct scope sc;
	const char *id;
	struct pending *p;
	if (!scope_get(wh, req, &sc) || !(id = endpoint_param(wh, req)) ||
	    !(p = pending_new(wh, req)))
		return;
	const char *params[] = { id, sc.org };
	run(p,
	    "DELETE FROM webhook_endpoints WHERE id = $1::uuid AND ($2::uuid IS NULL OR org_id = "
	    "$2::uuid) RETURNING id::text",
	    2, params, deleted_cb);
}

/* ---- secrets ---- */

static void rotated_cb(const struct sp_db_result *res, void *arg)
{
	struct created *c = arg;
	const struct sp_api *api = c->wh->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(c->req, res);
	} else if (api->db_ntuples(res) == 0) {
		api->reply_problem(c->req, 404, NULL, "no such webhook endpoint", NULL);
	} else {
		json_t *row = api->db_row_json(res, 0);
		json_object_set_new(row, "secret", json_string(c->secret));
		api->log(c->wh->plugin, SP_LOG_INFO, "webhook endpoint %s: secret rotated",
		         json_string_value(json_object_get(row, "id")));
		api->reply_json(c->req, 200, row);
	}
	sodium_memzero(c->secret, sizeof(c->secret));
	free(c);
}

/* $1 endpoint, $2 the caller's organisation (NULL: admin), $3 new secret, $4 window. */
static const char rotate_sql[] =
    "UPDATE webhook_endpoints SET previous_secret = CASE WHEN $4::int > 0 THEN secret END, "
    "previous_secret_expires_at = CASE WHEN $4::int > 0 THEN now() + make_interval(secs => "
    "$4::int) END, secret = $3, updated_at = now() WHERE id = $1::uuid AND ($2::uuid IS NULL "
    "OR org_id = $2::uuid) RETURNING id::text AS id, CASE WHEN $4::int > 0 THEN "
    "to_char(previous_secret_expires_at AT TIME ZONE 'UTC', " WH_TS_FMT ") END AS "
    "previous_secret_expires_at";

static void rotate_secret(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	const struct sp_api *api = wh->api;
	struct scope sc;
	const char *id;
	if (!scope_get(wh, req, &sc) || !(id = endpoint_param(wh, req)))
		return;
	struct created *c = calloc(1, sizeof(*c));
	if (!c) {
		api->reply_problem(req, 500, NULL, "out of memory", NULL);
		return;
	}
	c->wh = wh;
	c->req = req;
	wh_secret_new(c->secret);
	char window[24];
	snprintf(window, sizeof(window), "%ld", wh->cfg.rotation_window_s);
	const char *params[] = { id, sc.org, c->secret, window };
	if (api->db_query(wh->plugin, rotate_sql, 4, params, rotated_cb, c) < 0) {
		sodium_memzero(c->secret, sizeof(c->secret));
		free(c);
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

/* ---- deliveries log, test ---- */

static void deliveries_cb(const struct sp_db_result *res, void *arg)
{
	struct pending *p = arg;
	const struct sp_api *api = p->wh->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(p->req, res);
		free(p);
		return;
	}
	int n = api->db_ntuples(res);
	if (n == 0) {
		api->reply_problem(p->req, 404, NULL, "no such webhook endpoint", NULL);
		free(p);
		return;
	}
	json_t *items = json_array(), *next = json_null();
	for (int i = 0; i < n && i < p->limit; i++) {
		if (api->db_isnull(res, i, 1))
			continue; /* the endpoint has no (more) attempts */
		json_t *row = api->db_row_json(res, i);
		json_object_del(row, "endpoint");
		json_array_append_new(items, row);
	}
	if (n > p->limit) {
		char *c = cursor_encode(json_pack("[s]", api->db_value(res, p->limit - 1, 1)));
		if (c) {
			json_decref(next);
			next = json_string(c);
			free(c);
		}
	}
	api->reply_json(p->req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
	free(p);
}

/* $1 endpoint, $2 the caller's organisation (NULL: admin), $3 before this attempt id,
 * $4 event id, $5 limit. No row: no such endpoint; one row of NULLs: no attempts. */
static const char deliveries_sql[] =
    "SELECT w.id::text AS endpoint, d.id, d.event_id::text AS event_id, d.event_type, "
    "d.attempt, d.outcome, d.status_code, d.error, d.response, d.duration_ms, "
    "to_char(d.next_attempt_at AT TIME ZONE 'UTC', " WH_TS_FMT ") AS next_attempt_at, "
    "to_char(d.created_at AT TIME ZONE 'UTC', " WH_TS_FMT ") AS attempted_at "
    "FROM webhook_endpoints w LEFT JOIN LATERAL (SELECT * FROM webhook_deliveries x WHERE "
    "x.endpoint_id = w.id AND ($3::bigint IS NULL OR x.id < $3::bigint) AND ($4::uuid IS "
    "NULL OR x.event_id = $4::uuid) ORDER BY x.id DESC LIMIT $5::int) d ON true WHERE w.id = "
    "$1::uuid AND ($2::uuid IS NULL OR w.org_id = $2::uuid) ORDER BY d.id DESC";

static void list_deliveries(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	const struct sp_api *api = wh->api;
	struct scope sc;
	const char *id;
	if (!scope_get(wh, req, &sc) || !(id = endpoint_param(wh, req)))
		return;
	const char *event = api->req_query(req, "event_id");
	if (event && !wh_is_uuid(event)) {
		api->reply_problem(req, 400, "Bad query parameter", "event_id must be an event id",
		                   NULL);
		return;
	}
	int limit;
	json_t *pos;
	if (!page_params(wh, req, 1, &limit, &pos))
		return;
	const char *before = pos ? json_string_value(json_array_get(pos, 0)) : NULL;
	if (pos && !all_digits(before)) {
		json_decref(pos);
		api->reply_problem(req, 400, "Bad query parameter",
		                   "cursor is not valid; use next_cursor from a previous page",
		                   NULL);
		return;
	}
	struct pending *p = pending_new(wh, req);
	if (!p) {
		json_decref(pos);
		return;
	}
	p->limit = limit;
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[] = { id, sc.org, before, event, lim };
	run(p, deliveries_sql, 5, params, deliveries_cb);
	json_decref(pos);
}

static void test_endpoint(struct sp_request *req, void *state)
{
	struct wh *wh = state;
	struct scope sc;
	const char *id;
	if (!scope_get(wh, req, &sc) || !(id = endpoint_param(wh, req)))
		return;
	wh_deliver_ping(wh, req, id, sc.org);
}

/* ---- registration ---- */

#define ENDPOINT_SCHEMA_PROPS                                                                      \
	"\"url\":{\"type\":\"string\",\"maxLength\":2000,\"description\":\"https:// (or http://) " \
	"URL receiving the "                                                                       \
	"POSTs\"},\"events\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":50,"                  \
	"\"items\":{\"type\":\"string\"},\"description\":\"event types, \\\"prefix.*\\\" or "      \
	"\\\"*\\\"\"},\"description\":{\"type\":\"string\",\"maxLength\":500},\"enabled\":{"       \
	"\"type\":\"boolean\"}"

static const char create_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"url\",\"events\"],"
    "\"properties\":{" ENDPOINT_SCHEMA_PROPS ",\"org\":{\"type\":\"string\",\"format\":\"uuid\","
    "\"description\":\"admins only; default the caller's organisation\"}}}";
static const char patch_schema[] = "{\"type\":\"object\",\"additionalProperties\":false,"
                                   "\"properties\":{" ENDPOINT_SCHEMA_PROPS "}}";
static const char endpoint_schema[] =
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"},\"org_id\":{\"type\":"
    "\"string\"},\"url\":{\"type\":\"string\"},\"events\":{\"type\":\"array\",\"items\":{"
    "\"type\":\"string\"}},\"description\":{\"type\":\"string\"},\"enabled\":{\"type\":"
    "\"boolean\"},\"disabled_reason\":{\"type\":[\"string\",\"null\"]},"
    "\"previous_secret_expires_at\":{\"type\":[\"string\",\"null\"]},\"secret\":{\"type\":"
    "\"string\",\"description\":\"only when created or rotated\"},\"created_at\":{\"type\":"
    "\"string\"},\"updated_at\":{\"type\":\"string\"}}}";
static const char list_schema[] =
    "{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\"},\"next_cursor\":{"
    "\"type\":[\"string\",\"null\"]}}}";
static const char test_schema[] =
    "{\"type\":\"object\",\"properties\":{\"event_id\":{\"type\":\"string\"},\"delivered\":{"
    "\"type\":\"boolean\"},\"outcome\":{\"type\":\"string\"},\"status_code\":{\"type\":["
    "\"integer\",\"null\"]},\"error\":{\"type\":[\"string\",\"null\"]},\"duration_ms\":{"
    "\"type\":\"integer\"}}}";

int wh_routes_init(struct wh *wh)
{
	const struct sp_route routes[] = {
		{ "POST", "/v1/webhooks", SP_ACCESS_USER, create_endpoint,
		  "Register a webhook endpoint (managers, admins); the secret is shown this once",
		  create_schema, endpoint_schema },
		{ "GET", "/v1/webhooks", SP_ACCESS_USER, list_endpoints,
		  "Webhook endpoints of the caller's organisation (admins: all, or ?org=)", NULL,
		  list_schema },
		{ "GET", "/v1/webhooks/{id}", SP_ACCESS_USER, get_endpoint, "One webhook endpoint",
		  NULL, endpoint_schema },
		{ "PATCH", "/v1/webhooks/{id}", SP_ACCESS_USER, patch_endpoint,
		  "Change a webhook endpoint's URL, events, description or enabled state",
		  patch_schema, endpoint_schema },
		{ "DELETE", "/v1/webhooks/{id}", SP_ACCESS_USER, delete_endpoint,
		  "Delete a webhook endpoint", NULL, NULL },
		{ "POST", "/v1/webhooks/{id}/rotate-secret", SP_ACCESS_USER, rotate_secret,
		  "New secret (shown once); the previous one keeps signing for rotation_window_s",
		  NULL, endpoint_schema },
		{ "GET", "/v1/webhooks/{id}/deliveries", SP_ACCESS_USER, list_deliveries,
		  "Delivery attempts to an endpoint, newest first (?event_id= filters)", NULL,
		  list_schema },
		{ "POST", "/v1/webhooks/{id}/test", SP_ACCESS_USER, test_endpoint,
		  "Send a signed webhook.ping to the endpoint now and report the attempt", NULL,
		  test_schema },
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (wh->api->route_add(wh->plugin, &routes[i]) < 0)
			return -1;
	return 0;
}
