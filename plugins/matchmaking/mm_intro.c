/* mm_intro.c — introductions: an organisation's member asks to be introduced to another
 * organisation (POST /v1/introductions), that organisation's people accept or decline,
 * contact e-mails are shown to both sides only after acceptance. One pending request per
 * pair, a daily quota per requesting organisation, bus events for notifications. */
#include "mm_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MM_TS(col)  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define MESSAGE_MAX 2000

/* The columns every answer shows; contacts only once accepted. */
#define CONTACT(col)                                                                               \
	"(SELECT json_build_object('name', u.display_name, 'email', u.email) FROM sp_users u "     \
	"WHERE u.id = " col ")"
#define INTRO_VIEW                                                                                 \
	"SELECT i.id::text AS id, i.status, i.message, i.match_id::text AS match_id, "             \
	"json_build_object('id', fo.id, 'name', fo.name) AS \"from\", "                            \
	"json_build_object('id', tor.id, 'name', tor.name) AS \"to\", " MM_TS(                     \
	    "i.created_at") " AS created_at, " MM_TS("i.decided_at") " AS decided_at, "            \
	                                                             "CASE WHEN i.status = "       \
	                                                             "'accepted' THEN "            \
	                                                             "json_build_object('"         \
	                                                             "requester', " CONTACT(       \
	                                                                 "i."                      \
	                                                                 "from"                    \
	                                                                 "_use"                    \
	                                                                 "r") ", "                 \
	                                                                      "'accepter',"        \
	                                                                      " " CONTACT(         \
	                                                                          "i."             \
	                                                                          "decide"         \
	                                                                          "d_by") ") END " \
	                                                                                  "AS "    \
	                                                                                  "contac" \
	                                                                                  "t"      \
	                                                                                  "s, "    \
	                                                                                  "i.seq " \
	                                                                                  "FROM "  \
	                                                                                  "matchm" \
	                                                                                  "a"      \
	                                                                                  "king_"  \
	                                                                                  "introd" \
	                                                                                  "u"      \
	                                                                                  "ctions" \
	                                                                                  " "      \
	                                                                                  "i "     \
	                                                                                  "JOIN "  \
	                                                                                  "sp_"    \
	                                                                                  "organi" \
	                                                                                  "z"      \
	                                                                                  "ations" \
	                                                                                  " "      \
	                                                                                  "fo ON " \
	                                                                                  "fo.id " \
	                                                                                  "= "     \
	                                                                                  "i."     \
	                                                                                  "from_"  \
	                                                                                  "org "   \
	                                                                                  "JOIN "  \
	                                                                                  "sp_"    \
	                                                                                  "organi" \
	                                                                                  "z"      \
	                                                                                  "ations" \
	                                                                                  " "      \
	                                                                                  "tor "   \
	                                                                                  "ON "    \
	                                                                                  "tor."   \
	                                                                                  "id "    \
	                                                                                  "= "     \
	                                                                                  "i.to_"  \
	                                                                                  "org "

/* One request across its asynchronous steps. */
struct op {
	struct mm *mm;
	struct sp_request *req;
	char id[MM_ID_LEN + 1];
	char from[MM_ID_LEN + 1], to[MM_ID_LEN + 1], match[MM_ID_LEN + 1], user[MM_ID_LEN + 1];
	char *message;
	char *key;          /* Idempotency-Key, or NULL */
	char *fingerprint;  /* the body, canonical, when key is set */
	const char *action; /* "accepted" / "declined" */
	int status;         /* HTTP status of the final answer */
	const char *title, *detail;
	json_t *errors;
	json_t *row;         /* what a transaction step learnt */
	struct sp_db_tx *tx; /* the transaction in progress (set by its body) */
	int limit;
	bool done;
};

static struct op *op_new(struct mm *mm, struct sp_request *req)
{
	struct op *op = calloc(1, sizeof(*op));
	if (op) {
		op->mm = mm;
		op->req = req;
	} else {
		mm->api->reply_problem(req, 503, NULL, "out of memory", NULL);
	}
	return op;
}

static void op_free(struct op *op)
{
	free(op->message);
	free(op->key);
	free(op->fingerprint);
	json_decref(op->errors);
	json_decref(op->row);
	free(op);
}

static bool own_org(const struct sp_principal *who, char *out)
{
	return who->org_id && mm_uuid_canon(who->org_id, out);
}

/* Answers with the introduction id (visible to the caller) and frees op. */
static void view_loaded(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	const struct sp_api *api = op->mm->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(op->req, res);
	} else if (api->db_ntuples(res) == 0) {
		api->reply_problem(op->req, 404, NULL, "no such introduction", NULL);
	} else {
		json_t *row = api->db_row_json(res, 0);
		json_object_del(row, "seq");
		const struct sp_principal *who = api->req_principal(op->req);
		char mine[MM_ID_LEN + 1];
		const char *from =
		    json_string_value(json_object_get(json_object_get(row, "from"), "id"));
		const char *to =
		    json_string_value(json_object_get(json_object_get(row, "to"), "id"));
		bool visible =
		    who->is_admin || (own_org(who, mine) &&
		                      ((from && !strcmp(from, mine)) || (to && !strcmp(to, mine))));
		if (visible)
			api->reply_json(op->req, op->status ? op->status : 200, row);
		else {
			json_decref(row);
			api->reply_problem(op->req, 404, NULL, "no such introduction", NULL);
		}
	}
	op_free(op);
}

static void load_view(struct op *op)
{
	const struct sp_api *api = op->mm->api;
	const char *params[] = { op->id };
	if (api->db_query_prepared(op->mm->plugin, "intro_view", INTRO_VIEW "WHERE i.id = $1", 1,
	                           params, view_loaded, op) < 0) {
		api->reply_problem(op->req, 503, NULL, "the database is unavailable", NULL);
		op_free(op);
	}
}

static void emit(struct mm *mm, const char *type, json_t *data)
{
	if (data)
		mm->api->bus_emit(mm->plugin, type, data);
	json_decref(data);
}

/* ---- POST /v1/introductions ---- */

/* Notifications go to the outbox in the transaction of their cause (when the core has
 * notifications: ABI 1.x with notify_tx). */
static bool can_notify(const struct sp_api *api)
{
	return MM_HAS_API(api, notify_tx) && api->notify_tx;
}

static void notified(const struct sp_db_result *res, void *arg)
{
	(void)res;
	(void)arg;
}

/* The people of the receiving organisation hear of the request (with the organisation
 * channels, e.g. webhooks); an organisation without people gets the latter only. */
static void create_notify(struct sp_db_tx *tx, struct op *op, const struct sp_db_result *users)
{
	const struct sp_api *api = op->mm->api;
	const char *from_name = json_string_value(json_object_get(op->row, "from_name"));
	char title[300], dedupe[96];
	snprintf(title, sizeof(title), "%.200s asks for an introduction",
	         from_name ? from_name : "An organisation");
	snprintf(dedupe, sizeof(dedupe), "introduction.requested:%s", op->id);
	json_t *data =
	    json_pack("{s:s, s:s, s:s, s:s?}", "introduction_id", op->id, "from_org", op->from,
	              "to_org", op->to, "match_id", op->match[0] ? op->match : NULL);
	int n = users ? api->db_ntuples(users) : 0;
	for (int i = 0; i <= n; i++) {
		if (i == n && n > 0)
			break; /* the organisation channels came with the people */
		struct sp_notification note = { "introduction.requested",
			                        i < n ? api->db_value(users, i, 0) : NULL,
			                        op->to,
			                        dedupe,
			                        title,
			                        op->message,
			                        data };
		if (api->notify_tx(tx, &note, notified, op) < 0)
			api->log(op->mm->plugin, SP_LOG_WARN,
			         "introduction %s: notification not queued", op->id);
	}
	json_decref(data);
}

static void users_loaded(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	create_notify(op->tx, op, res);
	op->mm->api->db_tx_commit(op->tx);
}

static void create_checked(const struct sp_db_result *res, void *arg);

/* Transaction callbacks receive op; the transaction is op->tx. Nothing is allocated per
 * step, so an attempt that fails (its callbacks then never run) leaks nothing. */
static void create_checked_tx(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	struct sp_db_tx *tx = op->tx;
	const struct sp_api *api = op->mm->api;
	create_checked(res, op);
	if (op->status == 201 && op->row && !json_is_true(json_object_get(op->row, "replayed")) &&
	    can_notify(api)) {
		const char *params[] = { op->to };
		if (api->db_tx_query(
		        tx,
		        "SELECT id::text FROM sp_users WHERE org_id = $1::uuid ORDER BY "
		        "id LIMIT 1000",
		        1, params, users_loaded, op) < 0)
			api->db_tx_rollback(tx);
		return;
	}
	api->db_tx_commit(tx);
}

static void create_checked(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	const struct sp_api *api = op->mm->api;
	json_t *row = api->db_row_json(res, 0);
	bool to_found = json_is_true(json_object_get(row, "to_found"));
	bool match_ok = json_is_true(json_object_get(row, "match_ok"));
	bool pending = json_is_true(json_object_get(row, "pending"));
	const char *id = json_string_value(json_object_get(row, "id"));
	const char *prior = json_string_value(json_object_get(row, "prior_id"));
	op->errors = json_object();
	if (prior) {
		if (json_is_true(json_object_get(row, "prior_same"))) {
			op->status = 200; /* a retry: the first answer again */
			snprintf(op->id, sizeof(op->id), "%s", prior);
			json_object_set_new(row, "replayed", json_true());
		} else {
			op->status = 422;
			mm_error(op->errors, "Idempotency-Key", "already used with another body");
		}
	} else if (!to_found) {
		op->status = 422;
		mm_error(op->errors, "to", "no such organisation");
	} else if (!match_ok) {
		op->status = 422;
		mm_error(op->errors, "match_id",
		         "not a match of your organisation that lists this organisation");
	} else if (pending) {
		op->status = 409;
		op->title = "Introduction already pending";
		op->detail = "your organisation already has a pending introduction request to this "
		             "organisation";
	} else if (!id) {
		op->status = 429;
		op->title = "Too many introductions";
		op->detail = "your organisation has used its introduction requests for the last 24 "
		             "hours; try again later";
	} else {
		op->status = 201;
		snprintf(op->id, sizeof(op->id), "%s", id);
	}
	json_decref(op->row);
	op->row = row;
}

static void lock_taken(const struct sp_db_result *res, void *arg)
{
	(void)res;
	(void)arg;
}

static void create_body(struct sp_db_tx *tx, void *arg)
{
	struct op *op = arg;
	const struct sp_api *api = op->mm->api;
	char quota[24];
	snprintf(quota, sizeof(quota), "%ld", op->mm->intro_per_day);
	json_decref(op->errors);
	op->errors = NULL;
	json_decref(op->row);
	op->row = NULL;
	op->status = 0;
	const char *lock[] = { op->from };
	const char *params[] = { op->from,
		                 op->to,
		                 op->user[0] ? op->user : NULL,
		                 op->match[0] ? op->match : NULL,
		                 op->message,
		                 quota,
		                 op->key,
		                 op->fingerprint };
	op->tx = tx;
	/* One requesting organisation at a time, so that the quota and the pending check
	 * hold under concurrency (each statement sees what committed before it). */
	if (api->db_tx_query(tx,
	                     "SELECT pg_advisory_xact_lock(hashtextextended('matchmaking.intro:' "
	                     "|| $1, 0))",
	                     1, lock, lock_taken, op) < 0 ||
	    api->db_tx_query(
	        tx,
	        "WITH prior AS (SELECT id, fingerprint = md5($8) AS same FROM "
	        "matchmaking_introductions WHERE $7::text IS NOT NULL AND from_user = $3::uuid AND "
	        "idempotency_key = $7), "
	        "t AS (SELECT 1 FROM sp_organizations WHERE id = $2::uuid), "
	        "m AS (SELECT 1 FROM matchmaking_matches WHERE id = $4::uuid AND org_id = $1::uuid "
	        "AND EXISTS (SELECT 1 FROM jsonb_array_elements(results) r WHERE "
	        "r->'organization'->>'id' = $2::text)), "
	        "p AS (SELECT 1 FROM matchmaking_introductions WHERE from_org = $1::uuid AND "
	        "to_org "
	        "= $2::uuid AND status = 'pending'), "
	        "r AS (SELECT count(*) AS n FROM matchmaking_introductions WHERE from_org = "
	        "$1::uuid AND created_at > now() - interval '1 day'), "
	        "ok AS (SELECT NOT EXISTS (SELECT 1 FROM prior) AND EXISTS (SELECT 1 FROM t) AND "
	        "($4::uuid IS NULL OR EXISTS (SELECT 1 FROM m)) AND NOT EXISTS (SELECT 1 FROM p) "
	        "AND (SELECT n FROM r) < $6::int AS go), "
	        "ins AS (INSERT INTO matchmaking_introductions (from_org, to_org, from_user, "
	        "match_id, message, idempotency_key, fingerprint) SELECT $1::uuid, $2::uuid, "
	        "$3::uuid, $4::uuid, $5, $7, md5($8) FROM ok WHERE ok.go RETURNING id) "
	        "SELECT (SELECT id::text FROM prior) AS prior_id, (SELECT same FROM prior) AS "
	        "prior_same, EXISTS (SELECT 1 FROM t) AS to_found, ($4::uuid IS NULL OR EXISTS "
	        "(SELECT 1 FROM m)) AS match_ok, EXISTS (SELECT 1 FROM p) AS pending, (SELECT "
	        "id::text FROM ins) AS id, (SELECT name FROM sp_organizations WHERE id = $1::uuid) "
	        "AS from_name",
	        8, params, create_checked_tx, op) < 0)
		api->db_tx_rollback(tx);
}

static void create_done(const struct sp_db_result *err, void *arg)
{
	struct op *op = arg;
	struct mm *mm = op->mm;
	const struct sp_api *api = mm->api;
	if (err) {
		api->reply_db_error(op->req, err);
		op_free(op);
		return;
	}
	if (op->status != 201 && op->status != 200) {
		json_t *errors = op->errors;
		op->errors = NULL;
		if (op->status == 422) {
			api->reply_problem(op->req, 422, "Invalid introduction request",
			                   "some fields are invalid", errors);
		} else {
			json_decref(errors);
			api->reply_problem(op->req, op->status, op->title, op->detail, NULL);
		}
		op_free(op);
		return;
	}
	if (op->status == 201) {
		api->metric_add(mm->m_intros, 1);
		emit(mm, "introduction.requested",
		     json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "id", op->id, "from_org", op->from,
		               "to_org", op->to, "from_user", op->user[0] ? op->user : NULL,
		               "match_id", op->match[0] ? op->match : NULL));
	}
	load_view(op); /* 201, or 200 for a replayed request */
}

static void post_introduction(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	const struct sp_api *api = mm->api;
	const struct sp_principal *who = api->req_principal(req);
	json_t *body = api->req_json(req);
	if (!body)
		return;
	const char *key;
	if (!mm_idempotency_key(mm, req, &key))
		return;
	char from[MM_ID_LEN + 1];
	if (!own_org(who, from)) {
		api->reply_problem(req, 403, NULL,
		                   "only members of an organisation can ask for introductions",
		                   NULL);
		return;
	}
	if (!json_is_object(body)) {
		api->reply_problem(req, 422, "Invalid request", "the body must be a JSON object",
		                   NULL);
		return;
	}
	static const char *const allowed[] = { "to", "message", "match_id", NULL };
	json_t *errors = json_object();
	mm_unknown_fields(body, allowed, errors);
	char to[MM_ID_LEN + 1] = "", match[MM_ID_LEN + 1] = "";
	json_t *jto = json_object_get(body, "to");
	if (!jto)
		mm_error(errors, "to", "is required");
	else if (!mm_uuid_canon(json_string_value(jto), to))
		mm_error(errors, "to", "must be an organisation id");
	else if (!strcmp(to, from))
		mm_error(errors, "to", "is your own organisation");
	json_t *jm = json_object_get(body, "message");
	const char *message = json_string_value(jm);
	size_t len = message ? mm_utf8_len(message) : 0;
	if (!jm)
		mm_error(errors, "message", "is required");
	else if (!message || len < 1 || len > MESSAGE_MAX)
		mm_error(errors, "message", "must be a text of 1 to 2000 characters");
	json_t *jmatch = json_object_get(body, "match_id");
	if (jmatch && !json_is_null(jmatch) && !mm_uuid_canon(json_string_value(jmatch), match))
		mm_error(errors, "match_id", "must be a match id");
	if (json_object_size(errors)) {
		api->reply_problem(req, 422, "Invalid introduction request",
		                   "the body does not match the request schema", errors);
		return;
	}
	json_decref(errors);
	struct op *op = op_new(mm, req);
	if (!op)
		return;
	memcpy(op->from, from, sizeof(from));
	memcpy(op->to, to, sizeof(to));
	memcpy(op->match, match, sizeof(match));
	if (!mm_uuid_canon(who->user_id, op->user))
		op->user[0] = '\0';
	size_t n = strlen(message) + 1;
	op->message = malloc(n);
	if (op->message)
		memcpy(op->message, message, n);
	if (key) {
		size_t kn = strlen(key) + 1;
		op->key = malloc(kn);
		if (op->key)
			memcpy(op->key, key, kn);
		op->fingerprint = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	}
	if (!op->message || (key && (!op->key || !op->fingerprint))) {
		api->reply_problem(req, 503, NULL, "out of memory", NULL);
		op_free(op);
		return;
	}
	if (api->db_tx(mm->plugin, NULL, 3, create_body, create_done, op) < 0) {
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
		op_free(op);
	}
}

/* ---- accept / decline ---- */

static void decided(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	struct sp_db_tx *tx = op->tx;
	const struct sp_api *api = op->mm->api;
	json_decref(op->row);
	op->row = api->db_ntuples(res) ? api->db_row_json(res, 0) : NULL;
	op->done = op->row && json_is_true(json_object_get(op->row, "done"));
	const char *from_user = json_string_value(json_object_get(op->row, "from_user"));
	if (op->done && from_user && can_notify(api)) {
		/* The person who asked hears the answer (and, once accepted, whom to contact). */
		bool accepted = !strcmp(op->action, "accepted");
		const char *to_name = json_string_value(json_object_get(op->row, "to_name"));
		const char *who_name = json_string_value(json_object_get(op->row, "by_name"));
		const char *who_email = json_string_value(json_object_get(op->row, "by_email"));
		char title[300], body[400], dedupe[96];
		snprintf(title, sizeof(title), "%.200s %s your introduction request",
		         to_name ? to_name : "The organisation", op->action);
		if (accepted)
			snprintf(body, sizeof(body), "Your contact: %.150s <%.200s>",
			         who_name && *who_name ? who_name : "", who_email ? who_email : "");
		else
			snprintf(body, sizeof(body), "The request was declined.");
		snprintf(dedupe, sizeof(dedupe), "introduction.%s:%s", op->action, op->id);
		json_t *data =
		    json_pack("{s:s, s:s?, s:s?}", "introduction_id", op->id, "from_org",
		              json_string_value(json_object_get(op->row, "from_org")), "to_org",
		              json_string_value(json_object_get(op->row, "to_org")));
		struct sp_notification note = {
			accepted ? "introduction.accepted" : "introduction.declined",
			from_user,
			json_string_value(json_object_get(op->row, "from_org")),
			dedupe,
			title,
			body,
			data
		};
		if (api->notify_tx(tx, &note, notified, op) < 0)
			api->log(op->mm->plugin, SP_LOG_WARN,
			         "introduction %s: notification not queued", op->id);
		json_decref(data);
	}
	api->db_tx_commit(tx);
}

static void decide_body(struct sp_db_tx *tx, void *arg)
{
	struct op *op = arg;
	const struct sp_api *api = op->mm->api;
	const struct sp_principal *who = api->req_principal(op->req);
	char mine[MM_ID_LEN + 1];
	json_decref(op->row);
	op->row = NULL;
	op->done = false;
	const char *params[] = { op->id, op->action, op->user[0] ? op->user : NULL,
		                 own_org(who, mine) ? mine : NULL };
	op->tx = tx;
	if (api->db_tx_query(
	        tx,
	        "WITH cur AS (SELECT id, from_org, to_org, from_user, status FROM "
	        "matchmaking_introductions WHERE id = $1::uuid FOR UPDATE), "
	        "upd AS (UPDATE matchmaking_introductions i SET status = $2, decided_by = "
	        "$3::uuid, "
	        "decided_at = now() FROM cur WHERE i.id = cur.id AND cur.status = 'pending' AND "
	        "cur.to_org = $4::uuid RETURNING i.id) "
	        "SELECT cur.from_org::text AS from_org, cur.to_org::text AS to_org, "
	        "cur.from_user::text AS from_user, cur.status, EXISTS (SELECT 1 FROM upd) AS done, "
	        "(SELECT name FROM sp_organizations WHERE id = cur.to_org) AS to_name, (SELECT "
	        "display_name FROM sp_users WHERE id = $3::uuid) AS by_name, (SELECT email FROM "
	        "sp_users WHERE id = $3::uuid) AS by_email FROM cur",
	        4, params, decided, op) < 0)
		api->db_tx_rollback(tx);
}

static void decide_done(const struct sp_db_result *err, void *arg)
{
	struct op *op = arg;
	struct mm *mm = op->mm;
	const struct sp_api *api = mm->api;
	if (err) {
		api->reply_db_error(op->req, err);
		op_free(op);
		return;
	}
	if (!op->row) {
		api->reply_problem(op->req, 404, NULL, "no such introduction", NULL);
		op_free(op);
		return;
	}
	const char *from = json_string_value(json_object_get(op->row, "from_org"));
	const char *to = json_string_value(json_object_get(op->row, "to_org"));
	if (op->done) {
		emit(mm,
		     !strcmp(op->action, "accepted") ? "introduction.accepted"
		                                     : "introduction.declined",
		     json_pack("{s:s, s:s?, s:s?, s:s?}", "id", op->id, "from_org", from, "to_org",
		               to, "by_user", op->user[0] ? op->user : NULL));
		op->status = 200;
		load_view(op);
		return;
	}
	const struct sp_principal *who = api->req_principal(op->req);
	char mine[MM_ID_LEN + 1] = "";
	own_org(who, mine);
	if (mine[0] && to && !strcmp(mine, to)) {
		char detail[96];
		snprintf(detail, sizeof(detail), "the introduction is already %s",
		         json_string_value(json_object_get(op->row, "status")));
		api->reply_problem(op->req, 409, "Introduction already answered", detail, NULL);
	} else if ((mine[0] && from && !strcmp(mine, from)) || who->is_admin) {
		api->reply_problem(op->req, 403, NULL,
		                   "only the people of the receiving organisation can answer",
		                   NULL);
	} else {
		api->reply_problem(op->req, 404, NULL, "no such introduction", NULL);
	}
	op_free(op);
}

static void decide(struct sp_request *req, struct mm *mm, const char *action)
{
	const struct sp_api *api = mm->api;
	const struct sp_principal *who = api->req_principal(req);
	char id[MM_ID_LEN + 1];
	if (!mm_uuid_canon(api->req_param(req, "id"), id)) {
		api->reply_problem(req, 404, NULL, "no such introduction", NULL);
		return;
	}
	struct op *op = op_new(mm, req);
	if (!op)
		return;
	memcpy(op->id, id, sizeof(id));
	op->action = action;
	if (!mm_uuid_canon(who->user_id, op->user))
		op->user[0] = '\0';
	if (api->db_tx(mm->plugin, NULL, 3, decide_body, decide_done, op) < 0) {
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
		op_free(op);
	}
}

static void accept_introduction(struct sp_request *req, void *state)
{
	decide(req, state, "accepted");
}

static void decline_introduction(struct sp_request *req, void *state)
{
	decide(req, state, "declined");
}

/* ---- reading ---- */

static void get_introduction(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	char id[MM_ID_LEN + 1];
	if (!mm_uuid_canon(mm->api->req_param(req, "id"), id)) {
		mm->api->reply_problem(req, 404, NULL, "no such introduction", NULL);
		return;
	}
	struct op *op = op_new(mm, req);
	if (!op)
		return;
	memcpy(op->id, id, sizeof(id));
	load_view(op);
}

static void list_loaded(const struct sp_db_result *res, void *arg)
{
	struct op *op = arg;
	const struct sp_api *api = op->mm->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(op->req, res);
		op_free(op);
		return;
	}
	json_t *items = api->db_rows_json(res);
	json_t *next = json_null();
	if ((int)json_array_size(items) > op->limit) {
		json_array_remove(items, (size_t)op->limit);
		json_t *last = json_array_get(items, (size_t)op->limit - 1);
		next = json_sprintf("%" JSON_INTEGER_FORMAT,
		                    json_integer_value(json_object_get(last, "seq")));
	}
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
	{
		json_object_del(it, "seq");
	}
	api->reply_json(op->req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
	op_free(op);
}

static void list_introductions(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	const struct sp_api *api = mm->api;
	const struct sp_principal *who = api->req_principal(req);
	const char *direction = api->req_query(req, "direction");
	const char *status = api->req_query(req, "status");
	char mine[MM_ID_LEN + 1] = "", cursor[24], lim[16];
	int limit;
	if (direction && strcmp(direction, "in") && strcmp(direction, "out")) {
		api->reply_problem(req, 400, "Bad query parameter", "direction must be in or out",
		                   NULL);
		return;
	}
	if (status && strcmp(status, "pending") && strcmp(status, "accepted") &&
	    strcmp(status, "declined")) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "status must be pending, accepted or declined", NULL);
		return;
	}
	bool has_org = own_org(who, mine);
	if (!has_org && !who->is_admin) {
		api->reply_json(req, 200, json_pack("{s:[], s:n}", "items", "next_cursor"));
		return;
	}
	if (!mm_page_params(mm, req, 20, 100, &limit, cursor, sizeof(cursor)))
		return;
	struct op *op = op_new(mm, req);
	if (!op)
		return;
	op->limit = limit;
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	/* Admins without organisation see everything; anyone else their organisation's. */
	const char *params[] = { has_org ? mine : NULL, direction ? direction : "both", status,
		                 cursor[0] ? cursor : NULL, lim };
	if (api->db_query_prepared(
	        mm->plugin, "intro_list",
	        INTRO_VIEW "WHERE ($1::uuid IS NULL OR ($2 = 'in' AND i.to_org = $1::uuid) OR ($2 "
	                   "= 'out' AND i.from_org = $1::uuid) OR ($2 = 'both' AND (i.to_org = "
	                   "$1::uuid OR i.from_org = $1::uuid))) AND ($3::text IS NULL OR "
	                   "i.status = $3) AND ($4::bigint IS NULL OR i.seq < $4::bigint) ORDER "
	                   "BY i.seq DESC LIMIT $5::int",
	        5, params, list_loaded, op) < 0) {
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
		op_free(op);
	}
}

#define INTRO_SCHEMA                                                                               \
	"{\"type\":\"object\",\"required\":[\"id\",\"status\",\"from\",\"to\"],\"properties\":{"   \
	"\"id\":{\"type\":\"string\"},\"status\":{\"enum\":[\"pending\",\"accepted\","             \
	"\"declined\"]},\"contacts\":{\"type\":[\"object\",\"null\"]}}}"

static const struct sp_route routes[] = {
	{ "POST", "/v1/introductions", SP_ACCESS_USER, post_introduction,
	  "Ask to be introduced to an organisation (pending until it answers)",
	  "{\"type\":\"object\",\"required\":[\"to\",\"message\"],\"additionalProperties\":false,"
	  "\"properties\":{\"to\":{\"type\":\"string\",\"format\":\"uuid\"},\"message\":{\"type\":"
	  "\"string\",\"minLength\":1,\"maxLength\":2000},\"match_id\":{\"type\":\"string\","
	  "\"format\":\"uuid\"}}}",
	  INTRO_SCHEMA },
	{ "GET", "/v1/introductions", SP_ACCESS_USER, list_introductions,
	  "Introductions of the caller's organisation (?direction=in|out, ?status=)", NULL,
	  "{\"type\":\"object\",\"required\":[\"items\",\"next_cursor\"]}" },
	{ "GET", "/v1/introductions/{id}", SP_ACCESS_USER, get_introduction, "One introduction",
	  NULL, INTRO_SCHEMA },
	{ "POST", "/v1/introductions/{id}/accept", SP_ACCESS_USER, accept_introduction,
	  "Accept an introduction (the receiving organisation): contacts are shared", NULL,
	  INTRO_SCHEMA },
	{ "POST", "/v1/introductions/{id}/decline", SP_ACCESS_USER, decline_introduction,
	  "Decline an introduction (the receiving organisation)", NULL, INTRO_SCHEMA },
};

int mm_intro_init(struct mm *mm)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (mm->api->route_add(mm->plugin, &routes[i]) < 0)
			return -1;
	return 0;
}
