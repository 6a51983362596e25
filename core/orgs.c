/* orgs.c — organisations, their topic profiles and their members. Admins create and
 * delete; managers edit their own organisation and its members; members read.
 * Every change is announced on the bus (org.created, org.updated, org.deleted,
 * org.topics_changed, user.created). */
#include "orgs.h"
#include "workpool.h"
#include "auth.h"
#include "bus.h"
#include "db.h"
#include "log.h"
#include "page.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const char *const org_kinds[] = {
	"sme",         "large_enterprise", "hospital", "university", "research_centre",
	"association", "public_body",      "other",    NULL
};

#define ORG_COLUMNS                                                                                \
	"o.id::text AS id, o.name, o.kind, o.country, o.region, o.website, "                       \
	"o.description, " SP_SQL_TS("o.created_at") " AS created_at, " SP_SQL_TS(                  \
	    "o.updated_at") " AS updated_at"

/* State carried through one asynchronous request. */
struct op {
	struct sp_request *req;
	struct sp_core *core;
	char *org_id;
	int limit;
	const char *sort_key; /* list_done: the column that leads the keyset ("name") */
	json_t *extra;        /* owned, per operation */
	char *list_params[7]; /* owned: the list statement's parameters (NULL = absent) */
};

static struct op *op_new(struct sp_request *req, void *core)
{
	struct op *op = sp_calloc(1, sizeof(*op));
	op->req = req;
	op->core = core;
	return op;
}

static void op_free(struct op *op)
{
	for (size_t i = 0; i < SP_ARRAY_LEN(op->list_params); i++)
		free(op->list_params[i]);
	free(op->org_id);
	json_decref(op->extra);
	free(op);
}

static bool unavailable(struct op *op, int rc)
{
	if (rc == 0)
		return false;
	sp_request_reply_problem(op->req, 503, NULL, "the database is unavailable", NULL);
	op_free(op);
	return true;
}

/* Whether the caller may change organisation org_id: admins, and its managers. */
static bool may_manage(const struct sp_principal *p, const char *org_id)
{
	return p->is_admin || (p->org_id && strcmp(p->org_id, org_id) == 0 && p->org_role &&
	                       strcmp(p->org_role, "manager") == 0);
}

static bool is_member_of(const struct sp_principal *p, const char *org_id)
{
	return p->org_id && strcmp(p->org_id, org_id) == 0;
}

/* Reads {id}; answers 404 for anything that is not an id. */
static const char *org_param(struct sp_request *req)
{
	const char *id = sp_request_param(req, "id");
	if (!sp_valid_uuid(id)) {
		sp_request_reply_problem(req, 404, NULL, "no such organisation", NULL);
		return NULL;
	}
	return id;
}

/* {id} of an organisation the caller may change; answers 404/403 (with why) and
 * returns NULL otherwise. */
static const char *managed_org_param(struct sp_request *req, const char *why)
{
	const char *id = org_param(req);
	if (id && !may_manage(sp_request_principal(req), id)) {
		sp_request_reply_problem(req, 403, NULL, why, NULL);
		return NULL;
	}
	return id;
}

static void emit(struct sp_core *core, const char *type, json_t *data)
{
	sp_bus_emit(core->bus, type, data);
	json_decref(data);
}

/* ---- list ---- */

static void list_done(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
		op_free(op);
		return;
	}
	json_t *items = sp_db_result_rows_json(res);
	json_t *next = json_null();
	if ((int)json_array_size(items) > op->limit) {
		json_array_remove(items, (size_t)op->limit);
		json_t *last = json_array_get(items, (size_t)op->limit - 1);
		json_t *pos = json_pack("[O, O]", json_object_get(last, op->sort_key),
		                        json_object_get(last, "id"));
		char *cursor = sp_cursor_encode(pos);
		json_decref(pos);
		next = json_string(cursor);
		free(cursor);
	}
	sp_request_reply_json(op->req, 200,
	                      json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
	op_free(op);
}

/* LIKE pattern for a user's text: escape the wildcards. */
static char *like_pattern(const char *q)
{
	size_t n = strlen(q);
	char *out = sp_calloc(1, n * 2 + 3);
	char *o = out;
	*o++ = '%';
	for (; *q; q++) {
		if (*q == '%' || *q == '_' || *q == '\\')
			*o++ = '\\';
		*o++ = *q;
	}
	*o++ = '%';
	return out;
}

/* The list statement, in three shapes so that each gets its own plan: no topic, a
 * topic walked in name order, a rare topic driving the query. Absent filters are NULL
 * parameters; $3 is the topic's subtree (uuid[]). */
#define ORGS_LIST_SQL(with, from, topic_filter)                                                    \
	with "SELECT " ORG_COLUMNS " FROM " from " WHERE "                                         \
	     "($1::text IS NULL OR o.kind = $1) AND ($2::text IS NULL OR o.country = $2) "         \
	     "AND " topic_filter                                                                   \
	     " AND ($4::text IS NULL OR o.name ILIKE $4 OR o.description ILIKE $4) "               \
	     "AND ($5::text IS NULL OR (o.name, o.id) > ($5, $6::uuid)) "                          \
	     "ORDER BY o.name, o.id LIMIT $7::int"

/* A topic named by at most this many profile rows drives the query: its organisations
 * are collected through sp_org_topics_topic and sorted (cost ~ their number). Above it,
 * walking the name index and probing each organisation's topics finds a page sooner
 * (cost ~ organisations / holders × page size); at 100,000 organisations the two meet
 * near sqrt(21 × 100,000) ≈ 1,450 holders. */
#define ORGS_TOPIC_DRIVEN_MAX 2000
/* The same number inside SQL text, spelt once. */
#define ORGS_STR_(x)              #x
#define ORGS_STR(x)               ORGS_STR_(x)
#define ORGS_TOPIC_DRIVEN_MAX_SQL ORGS_STR(ORGS_TOPIC_DRIVEN_MAX)

static void list_run(struct op *op, const char *name, const char *sql)
{
	const char *params[SP_ARRAY_LEN(op->list_params)];
	for (size_t i = 0; i < SP_ARRAY_LEN(params); i++)
		params[i] = op->list_params[i];
	int rc = sp_db_query_prepared(op->core->db, name, sql, (int)SP_ARRAY_LEN(params), params,
	                              list_done, op);
	unavailable(op, rc);
}

static void topic_scope_done(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
		op_free(op);
		return;
	}
	if (sp_db_result_ntuples(res) != 1 || sp_db_result_isnull(res, 0, 0)) {
		/* no such topic: nobody has it */
		sp_request_reply_json(op->req, 200,
		                      json_pack("{s:[], s:n}", "items", "next_cursor"));
		op_free(op);
		return;
	}
	op->list_params[2] = sp_strdup(sp_db_result_value(res, 0, 0));
	if (atol(sp_db_result_value(res, 0, 1)) <= ORGS_TOPIC_DRIVEN_MAX)
		list_run(op, "sp_orgs_list_topic_driven",
		         ORGS_LIST_SQL("WITH c AS MATERIALIZED (SELECT DISTINCT ot.org_id FROM "
		                       "sp_org_topics ot WHERE ot.topic_id = ANY($3::uuid[])) ",
		                       "c JOIN sp_organizations o ON o.id = c.org_id", "true"));
	else
		list_run(op, "sp_orgs_list_topic",
		         ORGS_LIST_SQL("", "sp_organizations o",
		                       "EXISTS (SELECT 1 FROM sp_org_topics ot WHERE ot.org_id = "
		                       "o.id AND ot.topic_id = ANY($3::uuid[]))"));
}

static void orgs_list(struct sp_request *req, void *arg)
{
	int limit;
	json_t *pos;
	if (!sp_page_params(req, 20, 100, 2, &limit, &pos))
		return;
	const char *kind = sp_request_query(req, "kind");
	const char *country = sp_request_query(req, "country");
	const char *topic = sp_request_query(req, "topic");
	const char *q = sp_request_query(req, "q");
	json_t *errors = json_object();
	if (kind) {
		bool ok = false;
		for (const char *const *k = org_kinds; *k; k++)
			ok |= strcmp(*k, kind) == 0;
		if (!ok)
			json_object_set_new(errors, "kind",
			                    json_string("unknown organisation kind"));
	}
	if (country && (strlen(country) != 2 || country[0] < 'A' || country[0] > 'Z' ||
	                country[1] < 'A' || country[1] > 'Z'))
		json_object_set_new(errors, "country",
		                    json_string("must be an ISO 3166-1 alpha-2 code, e.g. FR"));
	if (q && strlen(q) > 200)
		json_object_set_new(errors, "q", json_string("at most 200 characters"));
	if (json_object_size(errors)) {
		json_decref(pos);
		sp_request_reply_problem(req, 400, "Bad query parameter",
		                         "some query parameters are invalid", errors);
		return;
	}
	json_decref(errors);
	struct op *op = op_new(req, arg);
	op->limit = limit;
	op->sort_key = "name";
	/* The list statement's parameters; $3 (the topic's subtree) comes later. */
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *pos_name = pos ? json_string_value(json_array_get(pos, 0)) : NULL;
	const char *pos_id = pos ? json_string_value(json_array_get(pos, 1)) : NULL;
	op->list_params[0] = kind ? sp_strdup(kind) : NULL;
	op->list_params[1] = country ? sp_strdup(country) : NULL;
	op->list_params[3] = q ? like_pattern(q) : NULL;
	op->list_params[4] = pos_name ? sp_strdup(pos_name) : NULL;
	op->list_params[5] = pos_id ? sp_strdup(pos_id) : NULL;
	op->list_params[6] = sp_strdup(lim);
	json_decref(pos);
	if (!topic) {
		list_run(op, "sp_orgs_list",
		         ORGS_LIST_SQL("", "sp_organizations o", "$3::uuid[] IS NULL"));
		return;
	}
	/* The topic's subtree first, and how many profile rows name it (counted up to the
	 * threshold): the planner can only pick the right plan with the ids in hand. */
	const char *params[] = { topic };
	int rc = sp_db_query_prepared(
	    op->core->db, "sp_orgs_topic_scope",
	    "WITH RECURSIVE d AS (SELECT id FROM sp_topics WHERE slug = $1 UNION ALL SELECT t.id "
	    "FROM sp_topics t JOIN d ON t.parent_id = d.id) SELECT array_agg(d.id)::text AS ids, "
	    "(SELECT count(*) FROM (SELECT 1 FROM sp_org_topics ot WHERE ot.topic_id = "
	    "ANY(array_agg(d.id)) LIMIT " ORGS_TOPIC_DRIVEN_MAX_SQL " + 1) x)::int AS rows "
	    "FROM d",
	    1, params, topic_scope_done, op);
	unavailable(op, rc);
}

/* ---- one organisation ---- */

static void reply_org(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else if (sp_db_result_ntuples(res) == 0) {
		sp_request_reply_problem(op->req, 404, NULL, "no such organisation", NULL);
	} else {
		json_t *org = sp_db_result_row_json(res, 0);
		int status =
		    op->extra ? json_integer_value(json_object_get(op->extra, "status")) : 0;
		const char *event =
		    op->extra ? json_string_value(json_object_get(op->extra, "event")) : NULL;
		if (event)
			sp_bus_emit(op->core->bus, event, org);
		if (status == 201) {
			char loc[96];
			snprintf(loc, sizeof(loc), "/v1/organizations/%s",
			         json_string_value(json_object_get(org, "id")));
			sp_request_add_header(op->req, "Location", loc);
		}
		sp_request_reply_json(op->req, status ? status : 200, org);
	}
	op_free(op);
}

static void org_get(struct sp_request *req, void *arg)
{
	const char *id = org_param(req);
	if (!id)
		return;
	struct op *op = op_new(req, arg);
	const char *params[] = { id };
	unavailable(op,
	            sp_db_query(op->core->db,
	                        "SELECT " ORG_COLUMNS " FROM sp_organizations o WHERE o.id = $1", 1,
	                        params, reply_org, op));
}

static const char *const org_fields[] = { "name",    "kind",        "country", "region",
	                                  "website", "description", NULL };

/* Checks the fields of a create or update. kind is for admins only. */
static bool check_org(struct sp_request *req, json_t *body, bool create, bool admin,
                      const char **vals)
{
	struct sp_check c;
	sp_check_init(&c, body);
	sp_check_known(&c, org_fields);
	vals[0] = sp_check_string(&c, "name", create, 1, 200);
	if (json_object_get(body, "kind") && !admin)
		sp_check_fail(&c, "kind", "only cluster staff can change the kind");
	vals[1] = sp_check_enum(&c, "kind", create, org_kinds);
	vals[2] = sp_check_country(&c, "country", false);
	vals[3] = json_is_null(json_object_get(body, "region"))
	              ? NULL
	              : sp_check_string(&c, "region", false, 0, 100);
	vals[4] = sp_check_url(&c, "website", false);
	vals[5] = json_is_null(json_object_get(body, "description"))
	              ? NULL
	              : sp_check_string(&c, "description", false, 0, 5000);
	if (!create && json_object_size(body) == 0)
		sp_check_fail(&c, "", "nothing to change");
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return false;
	}
	sp_check_clear(&c);
	return true;
}

static void org_create(struct sp_request *req, void *arg)
{
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	const char *v[6];
	if (!check_org(req, body, true, true, v))
		return;
	struct op *op = op_new(req, arg);
	op->extra = json_pack("{s:i, s:s}", "status", 201, "event", "org.created");
	unavailable(op,
	            sp_db_query(op->core->db,
	                        "INSERT INTO sp_organizations AS o (name, kind, country, region, "
	                        "website, description) VALUES ($1, $2, $3, $4, $5, $6) "
	                        "RETURNING " ORG_COLUMNS,
	                        6, v, reply_org, op));
}

static void org_update(struct sp_request *req, void *arg)
{
	const char *id = org_param(req);
	if (!id)
		return;
	const struct sp_principal *p = sp_request_principal(req);
	if (!may_manage(p, id)) {
		sp_request_reply_problem(req, 403, NULL,
		                         "only admins and this organisation's managers can edit it",
		                         NULL);
		return;
	}
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	const char *v[6];
	if (!check_org(req, body, false, p->is_admin, v))
		return;
	/* Which fields were given (a JSON null clears an optional field). */
	char given[7] = "000000";
	for (int i = 0; org_fields[i]; i++)
		given[i] = json_object_get(body, org_fields[i]) ? '1' : '0';
	struct op *op = op_new(req, arg);
	op->extra = json_pack("{s:i, s:s}", "status", 200, "event", "org.updated");
	const char *params[] = { id, v[0], v[1], v[2], v[3], v[4], v[5], given };
	unavailable(
	    op, sp_db_query(
	            op->core->db,
	            "UPDATE sp_organizations AS o SET "
	            "name = CASE WHEN substr($8, 1, 1) = '1' THEN $2 ELSE name END, "
	            "kind = CASE WHEN substr($8, 2, 1) = '1' THEN $3 ELSE kind END, "
	            "country = CASE WHEN substr($8, 3, 1) = '1' THEN $4 ELSE country END, "
	            "region = CASE WHEN substr($8, 4, 1) = '1' THEN $5 ELSE region END, "
	            "website = CASE WHEN substr($8, 5, 1) = '1' THEN $6 ELSE website END, "
	            "description = CASE WHEN substr($8, 6, 1) = '1' THEN $7 ELSE "
	            "description END, updated_at = now() WHERE o.id = $1 RETURNING " ORG_COLUMNS,
	            8, params, reply_org, op));
}

static void org_deleted(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else if (sp_db_result_ntuples(res) == 0) {
		sp_request_reply_problem(op->req, 404, NULL, "no such organisation", NULL);
	} else {
		emit(op->core, "org.deleted", json_pack("{s:s}", "id", op->org_id));
		sp_request_reply_raw(op->req, 204, NULL, NULL, 0);
	}
	op_free(op);
}

static void org_delete(struct sp_request *req, void *arg)
{
	const char *id = org_param(req);
	if (!id)
		return;
	struct op *op = op_new(req, arg);
	op->org_id = sp_strdup(id);
	const char *params[] = { id };
	unavailable(op, sp_db_query(op->core->db,
	                            "DELETE FROM sp_organizations WHERE id = $1 RETURNING id", 1,
	                            params, org_deleted, op));
}

/* ---- topic profile ---- */

static void topics_done(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
		op_free(op);
		return;
	}
	json_t *row = sp_db_result_row_json(res, 0);
	if (!json_is_true(json_object_get(row, "found"))) {
		sp_request_reply_problem(op->req, 404, NULL, "no such organisation", NULL);
	} else if (json_array_size(json_object_get(row, "unknown")) > 0) {
		json_t *errors = json_object();
		json_t *unknown = json_object_get(row, "unknown");
		char *list = json_dumps(unknown, JSON_COMPACT);
		char msg[512];
		snprintf(msg, sizeof(msg), "unknown topics: %s", list ? list : "");
		free(list);
		json_object_set_new(errors, "topics", json_string(msg));
		sp_request_reply_problem(op->req, 422, "Unknown topics",
		                         "some topics do not exist in the taxonomy", errors);
	} else {
		json_t *profile = json_pack("{s:O, s:O}", "offers", json_object_get(row, "offers"),
		                            "seeks", json_object_get(row, "seeks"));
		if (op->extra) {
			json_t *ev = json_pack("{s:s, s:O}", "id", op->org_id, "profile", profile);
			emit(op->core, "org.topics_changed", ev);
		}
		sp_request_reply_json(op->req, 200, profile);
	}
	json_decref(row);
	op_free(op);
}

#define PROFILE_SQL(rel)                                                                           \
	"coalesce((SELECT json_agg(json_build_object('topic', t.slug, 'level', ot.level) ORDER "   \
	"BY t.slug) FROM sp_org_topics ot JOIN sp_topics t ON t.id = ot.topic_id WHERE "           \
	"ot.org_id = $1 AND ot.relation = '" rel "'), '[]'::json)"

static void topics_get(struct sp_request *req, void *arg)
{
	const char *id = org_param(req);
	if (!id)
		return;
	struct op *op = op_new(req, arg);
	const char *params[] = { id };
	unavailable(op,
	            sp_db_query(op->core->db,
	                        "SELECT EXISTS (SELECT 1 FROM sp_organizations WHERE id = $1) AS "
	                        "found, '[]'::json AS unknown, " PROFILE_SQL(
	                            "offers") " AS offers, " PROFILE_SQL("seeks") " AS seeks",
	                        1, params, topics_done, op));
}

/* Validates [{topic, level}] into rows for jsonb_to_recordset. */
static bool check_profile_list(struct sp_check *c, const char *relation, json_t *rows)
{
	json_t *list = sp_check_array(c, relation, true, 500);
	if (!list)
		return false;
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item)
	{
		const char *slug = json_string_value(json_object_get(item, "topic"));
		json_t *level = json_object_get(item, "level");
		if (!json_is_object(item) || !slug || json_object_size(item) > 2 ||
		    (level && (!json_is_integer(level) || json_integer_value(level) < 1 ||
		               json_integer_value(level) > 3))) {
			char msg[128];
			snprintf(msg, sizeof(msg),
			         "item %zu must be {\"topic\": slug, \"level\": 1..3}", i);
			sp_check_fail(c, relation, msg);
			return false;
		}
		size_t j;
		json_t *seen;
		json_array_foreach(rows, j, seen)
		{
			if (!strcmp(json_string_value(json_object_get(seen, "relation")),
			            relation) &&
			    !strcmp(json_string_value(json_object_get(seen, "topic")), slug)) {
				char msg[160];
				snprintf(msg, sizeof(msg), "topic %.100s is listed twice", slug);
				sp_check_fail(c, relation, msg);
				return false;
			}
		}
		json_array_append_new(rows, json_pack("{s:s, s:s, s:I}", "relation", relation,
		                                      "topic", slug, "level",
		                                      level ? json_integer_value(level) : 2));
	}
	return true;
}

static void topics_put(struct sp_request *req, void *arg)
{
	const char *id =
	    managed_org_param(req, "only admins and this organisation's managers can edit it");
	if (!id)
		return;
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "offers", "seeks", NULL };
	sp_check_known(&c, allowed);
	json_t *rows = json_array();
	check_profile_list(&c, "offers", rows);
	check_profile_list(&c, "seeks", rows);
	if (!sp_check_ok(&c)) {
		json_decref(rows);
		sp_check_reply(&c, req);
		return;
	}
	sp_check_clear(&c);
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	struct op *op = op_new(req, arg);
	op->org_id = sp_strdup(id);
	op->extra = json_true();
	const char *params[] = { id, text };
	/* One statement: unknown topics change nothing; otherwise upsert the given rows and
	 * delete the others (disjoint sets, so the sub-statements cannot collide). */
	unavailable(
	    op,
	    sp_db_query(op->core->db,
	                "WITH input AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS "
	                "x(relation text, topic text, level int)), "
	                "org AS (SELECT id FROM sp_organizations WHERE id = $1 FOR UPDATE), "
	                "unknown AS (SELECT i.topic FROM input i LEFT JOIN sp_topics t ON "
	                "t.slug = i.topic WHERE t.id IS NULL), "
	                "ok AS (SELECT EXISTS (SELECT 1 FROM org) AND NOT EXISTS (SELECT 1 "
	                "FROM unknown) AS go), "
	                "wanted AS (SELECT i.relation, t.id AS topic_id, i.level FROM input i "
	                "JOIN sp_topics t ON t.slug = i.topic, ok WHERE ok.go), "
	                "up AS (INSERT INTO sp_org_topics (org_id, relation, topic_id, level) "
	                "SELECT $1, relation, topic_id, level FROM wanted ON CONFLICT (org_id, "
	                "relation, topic_id) DO UPDATE SET level = EXCLUDED.level RETURNING 1), "
	                "del AS (DELETE FROM sp_org_topics ot USING ok WHERE ok.go AND "
	                "ot.org_id = $1 AND NOT EXISTS (SELECT 1 FROM wanted w WHERE "
	                "w.relation = ot.relation AND w.topic_id = ot.topic_id) RETURNING 1), "
	                "touch AS (UPDATE sp_organizations SET updated_at = now() FROM ok "
	                "WHERE ok.go AND id = $1 RETURNING 1) "
	                "SELECT EXISTS (SELECT 1 FROM org) AS found, coalesce((SELECT "
	                "json_agg(DISTINCT topic) FROM unknown), '[]'::json) AS unknown, "
	                "coalesce((SELECT json_agg(json_build_object('topic', topic, 'level', "
	                "level) ORDER BY topic) FROM input WHERE relation = 'offers'), "
	                "'[]'::json) AS offers, coalesce((SELECT json_agg(json_build_object("
	                "'topic', topic, 'level', level) ORDER BY topic) FROM input WHERE "
	                "relation = 'seeks'), '[]'::json) AS seeks, (SELECT count(*) FROM up) "
	                "+ (SELECT count(*) FROM del) + (SELECT count(*) FROM touch) AS changed",
	                2, params, topics_done, op));
	free(text);
}

/* ---- members ---- */

#define MEMBER_COLUMNS                                                                             \
	"u.id::text AS id, u.email, u.display_name, u.org_role AS role, " SP_SQL_TS(               \
	    "u.created_at") " AS created_at"

static void members_list(struct sp_request *req, void *arg)
{
	const char *id = org_param(req);
	if (!id)
		return;
	const struct sp_principal *p = sp_request_principal(req);
	if (!p->is_admin && !is_member_of(p, id)) {
		sp_request_reply_problem(
		    req, 403, NULL, "only this organisation's people and admins see its members",
		    NULL);
		return;
	}
	int limit;
	json_t *pos;
	if (!sp_page_params(req, 50, 200, 2, &limit, &pos))
		return;
	struct op *op = op_new(req, arg);
	op->limit = limit;
	op->sort_key = "email";
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[] = { id, pos ? json_string_value(json_array_get(pos, 0)) : NULL,
		                 pos ? json_string_value(json_array_get(pos, 1)) : NULL, lim };
	unavailable(op,
	            sp_db_query(op->core->db,
	                        "SELECT " MEMBER_COLUMNS " FROM sp_users u WHERE u.org_id = $1 AND "
	                        "($2::text IS NULL OR (u.email, u.id) > ($2, $3::uuid)) "
	                        "ORDER BY u.email, u.id LIMIT $4::int",
	                        4, params, list_done, op));
	json_decref(pos);
}

struct member_add {
	struct op op; /* first, so op_free-like cleanup works on it */
	char password[32];
};

static void member_added(const struct sp_db_result *res, void *arg)
{
	struct member_add *m = arg;
	struct op *op = &m->op;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else {
		json_t *row = sp_db_result_row_json(res, 0);
		const char *outcome = json_string_value(json_object_get(row, "outcome"));
		if (!strcmp(outcome, "other_org")) {
			sp_request_reply_problem(
			    op->req, 409, NULL,
			    "this person already belongs to another organisation", NULL);
		} else if (!strcmp(outcome, "no_org")) {
			sp_request_reply_problem(op->req, 404, NULL, "no such organisation", NULL);
		} else if (!strcmp(outcome, "already")) {
			sp_request_reply_problem(op->req, 409, NULL,
			                         "this person is already a member", NULL);
		} else {
			json_t *member = json_object_get(row, "member");
			json_t *body = json_deep_copy(member);
			if (!strcmp(outcome, "created")) {
				json_object_set_new(body, "initial_password",
				                    json_string(m->password));
				emit(op->core, "user.created",
				     json_pack("{s:O, s:s}", "id", json_object_get(member, "id"),
				               "org_id", op->org_id));
			}
			emit(op->core, "org.members_changed",
			     json_pack("{s:s, s:O}", "id", op->org_id, "member", member));
			sp_request_add_header(op->req, "Cache-Control", "no-store");
			sp_request_reply_json(op->req, !strcmp(outcome, "created") ? 201 : 200,
			                      body);
		}
		json_decref(row);
	}
	sodium_memzero(m->password, sizeof(m->password));
	free(op->org_id);
	json_decref(op->extra);
	free(m);
}

static const char *const member_roles[] = { "member", "manager", NULL };

struct hash_job {
	struct member_add *m;
	char email[256], name[256], role[16];
	char hash[crypto_pwhash_STRBYTES];
	int rc;
};

static void hash_work(void *arg)
{
	struct hash_job *j = arg;
	j->rc = sp_password_hash(j->m->password, j->hash, sizeof(j->hash));
}

static void hash_done(void *arg)
{
	struct hash_job *j = arg;
	struct member_add *m = j->m;
	if (j->rc < 0) {
		sp_request_reply_problem(m->op.req, 503, NULL, "cannot hash passwords right now",
		                         NULL);
		free(m->op.org_id);
		free(m);
		free(j);
		return;
	}
	const char *params[] = { m->op.org_id, j->email, j->name, j->role, j->hash };
	/* Attach an existing user without organisation, or create one. */
	int rc = sp_db_query(
	    m->op.core->db,
	    "WITH org AS (SELECT id FROM sp_organizations WHERE id = $1), "
	    "existing AS (SELECT id, org_id FROM sp_users WHERE lower(email) = lower($2)), "
	    "attached AS (UPDATE sp_users u SET org_id = $1, org_role = $4, updated_at = now() "
	    "FROM existing e, org WHERE u.id = e.id AND e.org_id IS NULL RETURNING u.*), "
	    "created AS (INSERT INTO sp_users (email, display_name, password_hash, org_id, "
	    "org_role) SELECT $2, $3, $5, $1, $4 FROM org WHERE NOT EXISTS (SELECT 1 FROM "
	    "existing) RETURNING *), "
	    "out AS (SELECT 'attached' AS outcome, * FROM attached UNION ALL SELECT "
	    "'created', * FROM created) "
	    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM org) THEN 'no_org' WHEN EXISTS (SELECT "
	    "1 FROM out) THEN (SELECT outcome FROM out) WHEN (SELECT org_id FROM existing) = $1 "
	    "THEN 'already' ELSE 'other_org' END AS outcome, (SELECT json_build_object('id', "
	    "u.id, 'email', u.email, 'display_name', u.display_name, 'role', u.org_role) FROM "
	    "out u) AS member",
	    5, params, member_added, m);
	if (rc < 0) {
		sp_request_reply_problem(m->op.req, 503, NULL, "the database is unavailable", NULL);
		free(m->op.org_id);
		free(m);
	}
	sodium_memzero(j->hash, sizeof(j->hash));
	free(j);
}

static void members_add(struct sp_request *req, void *arg)
{
	const char *id =
	    managed_org_param(req, "only admins and this organisation's managers add members");
	if (!id)
		return;
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "email", "display_name", "role", NULL };
	sp_check_known(&c, allowed);
	const char *email = sp_check_email(&c, "email", true);
	const char *name = sp_check_string(&c, "display_name", false, 0, 200);
	const char *role = sp_check_enum(&c, "role", false, member_roles);
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return;
	}
	sp_check_clear(&c);
	struct member_add *m = sp_calloc(1, sizeof(*m));
	m->op.req = req;
	m->op.core = arg;
	m->op.org_id = sp_strdup(id);
	unsigned char raw[15];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(m->password, sizeof(m->password), raw, sizeof(raw),
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	struct hash_job *j = sp_calloc(1, sizeof(*j));
	j->m = m;
	snprintf(j->email, sizeof(j->email), "%s", email);
	snprintf(j->name, sizeof(j->name), "%s", name ? name : "");
	snprintf(j->role, sizeof(j->role), "%s", role ? role : "member");
	if (sp_workpool_submit(m->op.core->workpool, hash_work, hash_done, j) < 0) {
		sp_request_reply_problem(req, 503, NULL, "cannot hash passwords right now", NULL);
		free(m->op.org_id);
		free(m);
		free(j);
	}
}

static void member_changed(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else if (sp_db_result_ntuples(res) == 0) {
		sp_request_reply_problem(op->req, 404, NULL, "no such member of this organisation",
		                         NULL);
	} else {
		json_t *member = sp_db_result_row_json(res, 0);
		emit(op->core, "org.members_changed",
		     json_pack("{s:s, s:O}", "id", op->org_id, "member", member));
		if (op->extra) {
			json_decref(member);
			sp_request_reply_raw(op->req, 204, NULL, NULL, 0);
		} else {
			sp_request_reply_json(op->req, 200, member);
		}
	}
	op_free(op);
}

static void members_update(struct sp_request *req, void *arg)
{
	const char *id =
	    managed_org_param(req, "only admins and this organisation's managers change roles");
	if (!id)
		return;
	const char *uid = sp_request_param(req, "user_id");
	if (!sp_valid_uuid(uid)) {
		sp_request_reply_problem(req, 404, NULL, "no such member of this organisation",
		                         NULL);
		return;
	}
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "role", NULL };
	sp_check_known(&c, allowed);
	const char *role = sp_check_enum(&c, "role", true, member_roles);
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return;
	}
	sp_check_clear(&c);
	struct op *op = op_new(req, arg);
	op->org_id = sp_strdup(id);
	const char *params[] = { id, uid, role };
	unavailable(op, sp_db_query(op->core->db,
	                            "UPDATE sp_users u SET org_role = $3, updated_at = now() WHERE "
	                            "u.id = $2 AND u.org_id = $1 RETURNING " MEMBER_COLUMNS,
	                            3, params, member_changed, op));
}

static void members_remove(struct sp_request *req, void *arg)
{
	const char *id =
	    managed_org_param(req, "only admins and this organisation's managers remove members");
	if (!id)
		return;
	const char *uid = sp_request_param(req, "user_id");
	if (!sp_valid_uuid(uid)) {
		sp_request_reply_problem(req, 404, NULL, "no such member of this organisation",
		                         NULL);
		return;
	}
	struct op *op = op_new(req, arg);
	op->org_id = sp_strdup(id);
	op->extra = json_true(); /* answer 204 */
	const char *params[] = { id, uid };
	unavailable(op,
	            sp_db_query(op->core->db,
	                        "UPDATE sp_users u SET org_id = NULL, org_role = NULL, "
	                        "updated_at = now() WHERE u.id = $2 AND u.org_id = $1 RETURNING "
	                        "u.id::text AS id, u.email, u.display_name, NULL::text AS role",
	                        2, params, member_changed, op));
}

int sp_orgs_register(struct sp_core *core)
{
	static const char org_schema[] =
	    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"kind\":{"
	    "\"type\":\"string\",\"enum\":[\"sme\",\"large_enterprise\",\"hospital\","
	    "\"university\",\"research_centre\",\"association\",\"public_body\",\"other\"]},"
	    "\"country\":{\"type\":[\"string\",\"null\"]},\"region\":{\"type\":[\"string\","
	    "\"null\"]},\"website\":{\"type\":[\"string\",\"null\"]},\"description\":{"
	    "\"type\":[\"string\",\"null\"]}},\"additionalProperties\":false}";
	static const char profile_schema[] =
	    "{\"type\":\"object\",\"required\":[\"offers\",\"seeks\"],\"properties\":{"
	    "\"offers\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
	    "\"topic\":{\"type\":\"string\"},\"level\":{\"type\":\"integer\",\"minimum\":1,"
	    "\"maximum\":3}}}},\"seeks\":{\"type\":\"array\",\"items\":{\"type\":\"object\"}}}}";
	const struct sp_route routes[] = {
		{ "GET", "/v1/organizations", SP_ACCESS_USER, orgs_list,
		  "Organisations (filters kind, country, topic, q; cursor pagination)", NULL,
		  NULL },
		{ "POST", "/v1/organizations", SP_ACCESS_ADMIN, org_create,
		  "Create an organisation", org_schema, NULL },
		{ "GET", "/v1/organizations/{id}", SP_ACCESS_USER, org_get, "One organisation",
		  NULL, org_schema },
		{ "PATCH", "/v1/organizations/{id}", SP_ACCESS_USER, org_update,
		  "Edit an organisation (admins; its managers, except kind)", org_schema, NULL },
		{ "DELETE", "/v1/organizations/{id}", SP_ACCESS_ADMIN, org_delete,
		  "Delete an organisation", NULL, NULL },
		{ "GET", "/v1/organizations/{id}/topics", SP_ACCESS_USER, topics_get,
		  "What the organisation offers and seeks", NULL, profile_schema },
		{ "PUT", "/v1/organizations/{id}/topics", SP_ACCESS_USER, topics_put,
		  "Replace the topic profile (admins and its managers)", profile_schema, NULL },
		{ "GET", "/v1/organizations/{id}/members", SP_ACCESS_USER, members_list,
		  "People of the organisation (its people and admins)", NULL, NULL },
		{ "POST", "/v1/organizations/{id}/members", SP_ACCESS_USER, members_add,
		  "Add a person by e-mail (admins and its managers)", NULL, NULL },
		{ "PATCH", "/v1/organizations/{id}/members/{user_id}", SP_ACCESS_USER,
		  members_update, "Change a member's role", NULL, NULL },
		{ "DELETE", "/v1/organizations/{id}/members/{user_id}", SP_ACCESS_USER,
		  members_remove, "Remove a person from the organisation", NULL, NULL },
	};
	char err[256];
	for (size_t i = 0; i < SP_ARRAY_LEN(routes); i++) {
		if (sp_router_add(core->router, &routes[i], NULL, core, err, sizeof(err)) < 0) {
			sp_error("organisation route: %s", err);
			return -1;
		}
	}
	return 0;
}
