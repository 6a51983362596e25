/* prefs.c — notification preferences: which channels carry which event types, topics
 * of interest and reminder offsets, for a person or as an organisation's default.
 * The outbox (jobs.c) reads the channel choice when a notification is written. */
#include "prefs.h"
#include "db.h"
#include "jobs.h"
#include "log.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

static bool valid_pattern(const char *k)
{
	if (strcmp(k, "*") == 0)
		return true;
	size_t n = strlen(k);
	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		bool star_end = c == '*' && i == n - 1 && i > 0 && k[i - 1] == '.';
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      star_end))
			return false;
	}
	return true;
}

/* Checks a preferences document; returns a new normalised copy or NULL after 422. */
static json_t *check_prefs(struct sp_request *req, json_t *body)
{
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "channels", "topics", "reminder_offsets_days",
		                               NULL };
	sp_check_known(&c, allowed);
	json_t *channels = json_object_get(body, "channels");
	if (channels && !json_is_object(channels))
		sp_check_fail(&c, "channels", "must be an object: event type → list of channels");
	const char *key;
	json_t *list;
	json_object_foreach(json_is_object(channels) ? channels : NULL, key, list)
	{
		bool ok = valid_pattern(key) && json_is_array(list) && json_array_size(list) <= 20;
		size_t i;
		json_t *ch;
		json_array_foreach(json_is_array(list) ? list : NULL, i, ch) ok &=
		    json_is_string(ch) && sp_is_ident(json_string_value(ch));
		if (!ok) {
			sp_check_fail(
			    &c, "channels",
			    "keys are event types, \"prefix.*\" or \"*\"; values are lists of "
			    "channel names");
			break;
		}
	}
	json_t *topics = sp_check_array(&c, "topics", false, 500);
	size_t i;
	json_t *v;
	json_array_foreach(topics, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) == 0 ||
		    json_string_length(v) > 80) {
			sp_check_fail(&c, "topics", "must be topic slugs");
			break;
		}
	}
	json_t *offsets = sp_check_array(&c, "reminder_offsets_days", false, 10);
	json_array_foreach(offsets, i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 365) {
			sp_check_fail(&c, "reminder_offsets_days",
			              "must be whole days from 0 to 365");
			break;
		}
	}
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return NULL;
	}
	sp_check_clear(&c);
	/* Absent parts become empty ones (new references, stolen by "o"). */
	return json_pack("{s:o, s:o, s:o}", "channels",
	                 channels ? json_incref(channels) : json_object(), "topics",
	                 topics ? json_incref(topics) : json_array(), "reminder_offsets_days",
	                 offsets ? json_incref(offsets) : json_array());
}

struct op {
	struct sp_request *req;
	struct sp_core *core;
};

static void reply_prefs(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else if (sp_db_result_ntuples(res) == 0) {
		sp_request_reply_problem(op->req, 404, NULL, "no such organisation", NULL);
	} else {
		json_t *row = sp_db_result_row_json(res, 0);
		json_t *unknown = json_object_get(row, "unknown");
		if (json_array_size(unknown) > 0) {
			char *list = json_dumps(unknown, JSON_COMPACT);
			char msg[512];
			snprintf(msg, sizeof(msg), "unknown topics: %s", list ? list : "");
			free(list);
			sp_request_reply_problem(op->req, 422, "Unknown topics",
			                         "some topics do not exist in the taxonomy",
			                         json_pack("{s:s}", "topics", msg));
		} else {
			json_t *prefs = json_deep_copy(json_object_get(row, "prefs"));
			if (!json_is_object(prefs)) {
				json_decref(prefs);
				prefs = json_pack("{s:{}, s:[], s:[]}", "channels", "topics",
				                  "reminder_offsets_days");
			}
			json_object_set(prefs, "source", json_object_get(row, "source"));
			json_t *available = json_array();
			sp_channels_list(op->core, available);
			json_object_set_new(prefs, "available_channels", available);
			sp_request_reply_json(op->req, 200, prefs);
		}
		json_decref(row);
	}
	free(op);
}

static struct op *op_new(struct sp_request *req, void *core)
{
	struct op *op = sp_calloc(1, sizeof(*op));
	op->req = req;
	op->core = core;
	return op;
}

static void unavailable(struct op *op, int rc)
{
	if (rc == 0)
		return;
	sp_request_reply_problem(op->req, 503, NULL, "the database is unavailable", NULL);
	free(op);
}

/* The effective preferences: the person's, else the organisation's, else defaults. */
static void me_get(struct sp_request *req, void *arg)
{
	struct op *op = op_new(req, arg);
	const char *params[] = { sp_request_principal(req)->user_id };
	unavailable(
	    op, sp_db_query(op->core->db,
	                    "SELECT coalesce(u.prefs, o.prefs) AS prefs, CASE WHEN u.prefs "
	                    "IS NOT NULL THEN 'user' WHEN o.prefs IS NOT NULL THEN "
	                    "'organization' ELSE 'default' END AS source, '[]'::json AS unknown "
	                    "FROM (SELECT $1::uuid AS id) me LEFT JOIN sp_notification_prefs u "
	                    "ON u.user_id = me.id LEFT JOIN sp_notification_prefs o ON o.org_id "
	                    "= (SELECT org_id FROM sp_users WHERE id = me.id)",
	                    1, params, reply_prefs, op));
}

/* Stores prefs for the user ($1) or the organisation ($2); unknown topics store nothing. */
static void store(struct sp_request *req, void *core, const char *user_id, const char *org_id)
{
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	json_t *prefs = check_prefs(req, body);
	if (!prefs)
		return;
	char *text = json_dumps(prefs, JSON_COMPACT);
	json_decref(prefs);
	struct op *op = op_new(req, core);
	const char *params[] = { user_id, org_id, text };
	unavailable(
	    op,
	    sp_db_query(op->core->db,
	                "WITH unknown AS (SELECT t FROM jsonb_array_elements_text($3::jsonb "
	                "-> 'topics') t WHERE NOT EXISTS (SELECT 1 FROM sp_topics WHERE "
	                "slug = t)), target AS (SELECT 1 WHERE $2::uuid IS NULL OR EXISTS "
	                "(SELECT 1 FROM sp_organizations WHERE id = $2::uuid)), "
	                "up_user AS (INSERT INTO sp_notification_prefs (user_id, prefs) "
	                "SELECT $1::uuid, $3::jsonb WHERE $1::uuid IS NOT NULL AND NOT EXISTS "
	                "(SELECT 1 FROM unknown) ON CONFLICT (user_id) DO UPDATE SET prefs = "
	                "EXCLUDED.prefs, updated_at = now() RETURNING 1), "
	                "up_org AS (INSERT INTO sp_notification_prefs (org_id, prefs) SELECT "
	                "$2::uuid, $3::jsonb FROM target WHERE $2::uuid IS NOT NULL AND NOT "
	                "EXISTS (SELECT 1 FROM unknown) ON CONFLICT (org_id) DO UPDATE SET "
	                "prefs = EXCLUDED.prefs, updated_at = now() RETURNING 1) "
	                "SELECT $3::jsonb AS prefs, CASE WHEN $1::uuid IS NOT NULL THEN "
	                "'user' ELSE 'organization' END AS source, coalesce((SELECT json_agg(t) "
	                "FROM unknown), '[]'::json) AS unknown, (SELECT count(*) FROM up_user) "
	                "+ (SELECT count(*) FROM up_org) AS stored FROM target",
	                3, params, reply_prefs, op));
	free(text);
}

static void me_put(struct sp_request *req, void *arg)
{
	store(req, arg, sp_request_principal(req)->user_id, NULL);
}

static const char *org_param(struct sp_request *req, bool manage)
{
	const char *id = sp_request_param(req, "id");
	const struct sp_principal *p = sp_request_principal(req);
	if (!sp_valid_uuid(id)) {
		sp_request_reply_problem(req, 404, NULL, "no such organisation", NULL);
		return NULL;
	}
	bool mine = p->org_id && strcmp(p->org_id, id) == 0;
	bool manager = mine && p->org_role && strcmp(p->org_role, "manager") == 0;
	if (!p->is_admin && !(manage ? manager : mine)) {
		sp_request_reply_problem(req, 403, NULL,
		                         manage
		                             ? "only admins and this organisation's managers set "
		                               "its defaults"
		                             : "only this organisation's people see its defaults",
		                         NULL);
		return NULL;
	}
	return id;
}

static void org_get(struct sp_request *req, void *arg)
{
	const char *id = org_param(req, false);
	if (!id)
		return;
	struct op *op = op_new(req, arg);
	const char *params[] = { id };
	unavailable(
	    op, sp_db_query(op->core->db,
	                    "SELECT p.prefs, CASE WHEN p.prefs IS NULL THEN 'default' ELSE "
	                    "'organization' END AS source, '[]'::json AS unknown FROM "
	                    "sp_organizations o LEFT JOIN sp_notification_prefs p ON p.org_id = "
	                    "o.id WHERE o.id = $1",
	                    1, params, reply_prefs, op));
}

static void org_put(struct sp_request *req, void *arg)
{
	const char *id = org_param(req, true);
	if (id)
		store(req, arg, NULL, id);
}

int sp_prefs_register(struct sp_core *core)
{
	static const char schema[] =
	    "{\"type\":\"object\",\"properties\":{\"channels\":{\"type\":\"object\","
	    "\"additionalProperties\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
	    "\"topics\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	    "\"reminder_offsets_days\":{\"type\":\"array\",\"items\":{\"type\":\"integer\","
	    "\"minimum\":0,\"maximum\":365}}},\"additionalProperties\":false}";
	const struct sp_route routes[] = {
		{ "GET", "/v1/me/notification-preferences", SP_ACCESS_USER, me_get,
		  "The caller's notification preferences (or the organisation's default)", NULL,
		  schema },
		{ "PUT", "/v1/me/notification-preferences", SP_ACCESS_USER, me_put,
		  "Set the caller's notification preferences", schema, NULL },
		{ "GET", "/v1/organizations/{id}/notification-preferences", SP_ACCESS_USER, org_get,
		  "The organisation's default notification preferences", NULL, schema },
		{ "PUT", "/v1/organizations/{id}/notification-preferences", SP_ACCESS_USER, org_put,
		  "Set the organisation's default (admins and its managers)", schema, NULL },
	};
	char err[256];
	for (size_t i = 0; i < SP_ARRAY_LEN(routes); i++) {
		if (sp_router_add(core->router, &routes[i], NULL, core, err, sizeof(err)) < 0) {
			sp_error("preferences route: %s", err);
			return -1;
		}
	}
	return 0;
}
