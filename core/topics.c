/* topics.c — the topic taxonomy (themes → sub-topics): read by everyone signed in,
 * edited by admins. A topic in use cannot be deleted (409) unless merged into another,
 * which moves its profile entries and children and keeps its slug as a synonym.
 * Changes are announced as topic.changed. */
#include "topics.h"
#include "bus.h"
#include "db.h"
#include "log.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#define TOPIC_COLUMNS                                                                              \
	"t.id::text AS id, t.slug, t.label, (SELECT p.slug FROM sp_topics p WHERE p.id = "         \
	"t.parent_id) AS parent, to_json(t.synonyms) AS synonyms"

/* {id} may be the id or the slug. */
#define TOPIC_MATCH(param) "(t.slug = " param " OR t.id::text = " param ")"

struct op {
	struct sp_request *req;
	struct sp_core *core;
	int status;
	const char *action; /* for topic.changed */
};

static struct op *op_new(struct sp_request *req, void *core, int status, const char *action)
{
	struct op *op = sp_calloc(1, sizeof(*op));
	op->req = req;
	op->core = core;
	op->status = status;
	op->action = action;
	return op;
}

static void unavailable(struct op *op, int rc)
{
	if (rc == 0)
		return;
	sp_request_reply_problem(op->req, 503, NULL, "the database is unavailable", NULL);
	free(op);
}

static bool valid_slug(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 80 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') ||
		    (c == '-' && s[i + 1] == '-'))
			return false;
	}
	return true;
}

/* ---- tree ---- */

static void tree_done(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
		free(op);
		return;
	}
	/* Rows come parents first (ordered by depth): attach each to its parent. */
	json_t *rows = sp_db_result_rows_json(res);
	json_t *by_slug = json_object();
	json_t *roots = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		json_object_set_new(row, "children", json_array());
		json_object_set(by_slug, json_string_value(json_object_get(row, "slug")), row);
		const char *parent_slug = json_string_value(json_object_get(row, "parent"));
		json_t *parent = parent_slug ? json_object_get(by_slug, parent_slug) : NULL;
		if (parent)
			json_array_append(json_object_get(parent, "children"), row);
		else
			json_array_append(roots, row);
	}
	json_decref(by_slug);
	json_decref(rows);
	sp_request_reply_json(op->req, 200, json_pack("{s:o, s:n}", "items", roots, "next_cursor"));
	free(op);
}

static void topics_tree(struct sp_request *req, void *arg)
{
	struct op *op = op_new(req, arg, 200, NULL);
	unavailable(op,
	            sp_db_query(op->core->db,
	                        "WITH RECURSIVE d AS (SELECT id, 0 AS depth FROM sp_topics WHERE "
	                        "parent_id IS NULL UNION ALL SELECT t.id, d.depth + 1 FROM "
	                        "sp_topics t JOIN d ON t.parent_id = d.id) "
	                        "SELECT " TOPIC_COLUMNS " FROM d JOIN sp_topics t ON t.id = d.id "
	                        "ORDER BY d.depth, t.slug",
	                        0, NULL, tree_done, op));
}

/* ---- one topic ---- */

static void reply_topic(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else if (sp_db_result_ntuples(res) == 0) {
		sp_request_reply_problem(op->req, 404, NULL, "no such topic", NULL);
	} else {
		json_t *t = sp_db_result_row_json(res, 0);
		json_t *err = json_object_get(t, "error");
		if (json_is_string(err)) {
			json_t *errors = json_pack("{s:O}", "parent", err);
			sp_request_reply_problem(op->req, 422, "Invalid request",
			                         "some fields are invalid", errors);
			json_decref(t);
		} else {
			json_object_del(t, "error");
			if (op->action) {
				json_t *ev =
				    json_pack("{s:s, s:O}", "action", op->action, "topic", t);
				sp_bus_emit(op->core->bus, "topic.changed", ev);
				json_decref(ev);
			}
			sp_request_reply_json(op->req, op->status, t);
		}
	}
	free(op);
}

static void topic_get(struct sp_request *req, void *arg)
{
	struct op *op = op_new(req, arg, 200, NULL);
	const char *params[] = { sp_request_param(req, "id") };
	unavailable(op, sp_db_query(op->core->db,
	                            "SELECT " TOPIC_COLUMNS
	                            ", NULL AS error FROM sp_topics t WHERE " TOPIC_MATCH("$1"),
	                            1, params, reply_topic, op));
}

/* Checks the fields of a create or update; synonyms become a JSON text. */
static bool check_topic(struct sp_request *req, json_t *body, bool create, const char **slug,
                        const char **label, const char **parent, char **synonyms)
{
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "slug", "label", "parent", "synonyms", NULL };
	sp_check_known(&c, allowed);
	*slug = sp_check_string(&c, "slug", create, 1, 80);
	if (*slug && !valid_slug(*slug))
		sp_check_fail(&c, "slug", "lower-case letters, digits and single hyphens only");
	*label = sp_check_string(&c, "label", create, 1, 200);
	json_t *p = json_object_get(body, "parent");
	*parent = NULL;
	if (p && !json_is_null(p))
		*parent = sp_check_string(&c, "parent", false, 1, 80);
	*synonyms = NULL;
	json_t *syn = sp_check_array(&c, "synonyms", false, 50);
	if (syn) {
		size_t i;
		json_t *v;
		json_array_foreach(syn, i, v)
		{
			if (!json_is_string(v) || json_string_length(v) == 0 ||
			    json_string_length(v) > 100) {
				sp_check_fail(&c, "synonyms",
				              "must be strings of 1 to 100 characters");
				break;
			}
		}
		*synonyms = json_dumps(syn, JSON_COMPACT);
	}
	if (!create && json_object_size(body) == 0)
		sp_check_fail(&c, "", "nothing to change");
	if (!sp_check_ok(&c)) {
		free(*synonyms);
		*synonyms = NULL;
		sp_check_reply(&c, req);
		return false;
	}
	sp_check_clear(&c);
	return true;
}

static void topic_create(struct sp_request *req, void *arg)
{
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	const char *slug, *label, *parent;
	char *synonyms;
	if (!check_topic(req, body, true, &slug, &label, &parent, &synonyms))
		return;
	struct op *op = op_new(req, arg, 201, "created");
	const char *params[] = { slug, label, parent, synonyms ? synonyms : "[]" };
	unavailable(
	    op, sp_db_query(
	            op->core->db,
	            "WITH p AS (SELECT t.id FROM sp_topics t WHERE $3::text IS NOT NULL "
	            "AND " TOPIC_MATCH(
	                "$3") "), "
	                      "ins AS (INSERT INTO sp_topics (slug, label, parent_id, synonyms) "
	                      "SELECT $1, $2, (SELECT id FROM p), ARRAY(SELECT "
	                      "jsonb_array_elements_text($4::jsonb)) WHERE $3::text IS NULL OR "
	                      "EXISTS (SELECT 1 FROM p) RETURNING *) "
	                      "SELECT t.id::text AS id, t.slug, t.label, $3::text AS parent, "
	                      "to_json(t.synonyms) AS synonyms, NULL AS error FROM ins t UNION ALL "
	                      "SELECT NULL, NULL, NULL, NULL, NULL, 'no such topic' WHERE NOT "
	                      "EXISTS (SELECT 1 FROM ins)",
	            4, params, reply_topic, op));
	free(synonyms);
}

static void topic_update(struct sp_request *req, void *arg)
{
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	const char *slug, *label, *parent;
	char *synonyms;
	if (!check_topic(req, body, false, &slug, &label, &parent, &synonyms))
		return;
	bool parent_given = json_object_get(body, "parent") != NULL;
	struct op *op = op_new(req, arg, 200, "updated");
	const char *params[] = { sp_request_param(req, "id"),    slug, label, parent, synonyms,
		                 parent_given ? "true" : "false" };
	/* The new parent must exist and must not be the topic or one of its descendants. */
	unavailable(
	    op,
	    sp_db_query(op->core->db,
	                "WITH target AS (SELECT t.id FROM sp_topics t WHERE " TOPIC_MATCH(
	                    "$1") "), "
	                          "p AS (SELECT t.id FROM sp_topics t WHERE $4::text IS NOT NULL "
	                          "AND " TOPIC_MATCH(
	                              "$4") "), "
	                                    "below AS (WITH RECURSIVE d AS (SELECT id FROM target "
	                                    "UNION ALL SELECT t.id "
	                                    "FROM sp_topics t JOIN d ON t.parent_id = d.id) SELECT "
	                                    "id FROM d), "
	                                    "bad AS (SELECT CASE WHEN $4::text IS NOT NULL AND NOT "
	                                    "EXISTS (SELECT 1 FROM "
	                                    "p) THEN 'no such topic' WHEN EXISTS (SELECT 1 FROM p "
	                                    "WHERE id IN (SELECT id "
	                                    "FROM below)) THEN 'would make a cycle' END AS error), "
	                                    "upd AS (UPDATE sp_topics t SET slug = coalesce($2, "
	                                    "t.slug), label = "
	                                    "coalesce($3, t.label), parent_id = CASE WHEN $6::bool "
	                                    "THEN (SELECT id FROM "
	                                    "p) ELSE t.parent_id END, synonyms = CASE WHEN "
	                                    "$5::text IS NULL THEN "
	                                    "t.synonyms ELSE ARRAY(SELECT "
	                                    "jsonb_array_elements_text($5::jsonb)) END, "
	                                    "updated_at = now() FROM bad WHERE t.id = (SELECT id "
	                                    "FROM target) AND "
	                                    "bad.error IS NULL RETURNING t.*) "
	                                    "SELECT u.id::text AS id, u.slug, u.label, (SELECT "
	                                    "slug FROM sp_topics WHERE "
	                                    "id = u.parent_id) AS parent, to_json(u.synonyms) AS "
	                                    "synonyms, NULL AS error "
	                                    "FROM upd u UNION ALL SELECT NULL, NULL, NULL, NULL, "
	                                    "NULL, bad.error FROM "
	                                    "bad WHERE bad.error IS NOT NULL AND EXISTS (SELECT 1 "
	                                    "FROM target)",
	                6, params, reply_topic, op));
	free(synonyms);
}

static void topic_deleted(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(op->req, res);
	} else if (sp_db_result_ntuples(res) == 0) {
		sp_request_reply_problem(op->req, 404, NULL, "no such topic", NULL);
	} else {
		json_t *row = sp_db_result_row_json(res, 0);
		long long uses = json_integer_value(json_object_get(row, "uses"));
		long long children = json_integer_value(json_object_get(row, "children"));
		if (uses || children) {
			char detail[200];
			snprintf(detail, sizeof(detail),
			         "the topic is used by %lld profile entries and has %lld "
			         "sub-topics; merge it into another topic instead "
			         "(POST /v1/topics/{id}/merge)",
			         uses, children);
			sp_request_reply_problem(op->req, 409, "Topic in use", detail, NULL);
		} else {
			json_t *ev = json_pack("{s:s, s:{s:O, s:O}}", "action", "deleted", "topic",
			                       "id", json_object_get(row, "id"), "slug",
			                       json_object_get(row, "slug"));
			sp_bus_emit(op->core->bus, "topic.changed", ev);
			json_decref(ev);
			sp_request_reply_raw(op->req, 204, NULL, NULL, 0);
		}
		json_decref(row);
	}
	free(op);
}

static void topic_delete(struct sp_request *req, void *arg)
{
	struct op *op = op_new(req, arg, 204, NULL);
	const char *params[] = { sp_request_param(req, "id") };
	unavailable(
	    op,
	    sp_db_query(op->core->db,
	                "WITH target AS (SELECT t.id, t.slug FROM sp_topics t WHERE " TOPIC_MATCH(
	                    "$1") " FOR UPDATE), "
	                          "uses AS (SELECT (SELECT count(*) FROM sp_org_topics WHERE "
	                          "topic_id = (SELECT id FROM target)) AS uses, (SELECT count(*) "
	                          "FROM sp_topics WHERE parent_id = (SELECT id FROM target)) AS "
	                          "children), "
	                          "del AS (DELETE FROM sp_topics USING uses WHERE id = (SELECT id "
	                          "FROM target) AND uses.uses = 0 AND uses.children = 0) "
	                          "SELECT target.id::text AS id, target.slug, uses.uses, "
	                          "uses.children FROM target, uses",
	                1, params, topic_deleted, op));
}

static void topic_merge(struct sp_request *req, void *arg)
{
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "into", NULL };
	sp_check_known(&c, allowed);
	const char *into = sp_check_string(&c, "into", true, 1, 80);
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return;
	}
	sp_check_clear(&c);
	struct op *op = op_new(req, arg, 200, "merged");
	const char *params[] = { sp_request_param(req, "id"), into };
	/* One statement: profile entries move to the target (keeping the higher level where
	 * both are present), children are re-parented, the slug and synonyms become
	 * synonyms, the source goes. The foreign keys are NO ACTION, checked at the end of
	 * the statement, once every part has run. */
	unavailable(
	    op,
	    sp_db_query(
	        op->core->db,
	        "WITH src AS (SELECT t.* FROM sp_topics t WHERE " TOPIC_MATCH(
	            "$1") "), "
	                  "dst AS (SELECT t.* FROM sp_topics t WHERE " TOPIC_MATCH(
	                      "$2") "), "
	                            "bad AS (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM dst) THEN "
	                            "'no such "
	                            "topic' WHEN (SELECT id FROM src) = (SELECT id FROM dst) THEN "
	                            "'cannot "
	                            "merge a topic into itself' WHEN (SELECT id FROM dst) IN (WITH "
	                            "RECURSIVE d "
	                            "AS (SELECT id FROM src UNION ALL SELECT t.id FROM sp_topics t "
	                            "JOIN d ON "
	                            "t.parent_id = d.id) SELECT id FROM d) THEN 'cannot merge into "
	                            "a "
	                            "sub-topic of itself' END AS error), "
	                            "moved AS (INSERT INTO sp_org_topics (org_id, relation, "
	                            "topic_id, level) "
	                            "SELECT ot.org_id, ot.relation, (SELECT id FROM dst), ot.level "
	                            "FROM "
	                            "sp_org_topics ot, bad WHERE bad.error IS NULL AND ot.topic_id "
	                            "= (SELECT id "
	                            "FROM src) ON CONFLICT (org_id, relation, topic_id) DO UPDATE "
	                            "SET level = "
	                            "greatest(sp_org_topics.level, EXCLUDED.level) RETURNING 1), "
	                            "reparent AS (UPDATE sp_topics t SET parent_id = (SELECT id "
	                            "FROM dst) FROM "
	                            "bad WHERE bad.error IS NULL AND t.parent_id = (SELECT id FROM "
	                            "src) "
	                            "RETURNING 1), "
	                            "olddel AS (DELETE FROM sp_org_topics ot USING bad WHERE "
	                            "bad.error IS NULL "
	                            "AND ot.topic_id = (SELECT id FROM src) RETURNING 1), "
	                            "srcdel AS (DELETE FROM sp_topics t USING bad WHERE bad.error "
	                            "IS NULL AND "
	                            "t.id = (SELECT id FROM src) RETURNING 1), "
	                            "syn AS (UPDATE sp_topics t SET synonyms = ARRAY(SELECT "
	                            "DISTINCT x FROM "
	                            "unnest(t.synonyms || (SELECT slug FROM src) || (SELECT "
	                            "synonyms FROM src)) "
	                            "x), updated_at = now() FROM bad WHERE bad.error IS NULL AND "
	                            "t.id = (SELECT "
	                            "id FROM dst) RETURNING t.*) "
	                            "SELECT s.id::text AS id, s.slug, s.label, (SELECT slug FROM "
	                            "sp_topics WHERE "
	                            "id = s.parent_id) AS parent, to_json(s.synonyms) AS synonyms, "
	                            "NULL AS "
	                            "error, (SELECT count(*) FROM moved) + (SELECT count(*) FROM "
	                            "reparent) AS "
	                            "moved FROM syn s UNION ALL SELECT NULL, NULL, NULL, NULL, "
	                            "NULL, bad.error, "
	                            "0 FROM bad WHERE bad.error IS NOT NULL AND EXISTS (SELECT 1 "
	                            "FROM src)",
	        2, params, reply_topic, op));
}

int sp_topics_register(struct sp_core *core)
{
	static const char topic_schema[] =
	    "{\"type\":\"object\",\"properties\":{\"slug\":{\"type\":\"string\"},\"label\":{"
	    "\"type\":\"string\"},\"parent\":{\"type\":[\"string\",\"null\"]},\"synonyms\":{"
	    "\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"additionalProperties\":"
	    "false}";
	const struct sp_route routes[] = {
		{ "GET", "/v1/topics", SP_ACCESS_USER, topics_tree, "The topic taxonomy as a tree",
		  NULL, NULL },
		{ "POST", "/v1/topics", SP_ACCESS_ADMIN, topic_create, "Create a topic",
		  topic_schema, NULL },
		{ "GET", "/v1/topics/{id}", SP_ACCESS_USER, topic_get, "One topic (id or slug)",
		  NULL, topic_schema },
		{ "PATCH", "/v1/topics/{id}", SP_ACCESS_ADMIN, topic_update, "Edit a topic",
		  topic_schema, NULL },
		{ "DELETE", "/v1/topics/{id}", SP_ACCESS_ADMIN, topic_delete,
		  "Delete an unused topic (409 when in use)", NULL, NULL },
		{ "POST", "/v1/topics/{id}/merge", SP_ACCESS_ADMIN, topic_merge,
		  "Merge a topic into another (moves its uses, keeps its slug as a synonym)", NULL,
		  NULL },
	};
	char err[256];
	for (size_t i = 0; i < SP_ARRAY_LEN(routes); i++) {
		if (sp_router_add(core->router, &routes[i], NULL, core, err, sizeof(err)) < 0) {
			sp_error("topic route: %s", err);
			return -1;
		}
	}
	return 0;
}
