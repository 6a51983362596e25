/* identity.c — login, logout, the caller's profile, and API tokens. Password checks
 * (argon2id, ~0.1 s of CPU) run on the work pool so the loop never waits for them;
 * failed logins are counted in PostgreSQL so throttling holds across instances. */
#include "identity.h"
#include "auth.h"
#include "bus.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "router.h"
#include "serve.h"
#include "server.h"
#include "util.h"
#include "validate.h"
#include "workpool.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Verifying against this when the e-mail is unknown keeps the timing of "no such user"
 * and "wrong password" alike. Hash of a random password, made once per process. */
static char dummy_hash[crypto_pwhash_STRBYTES];

/* ---- login ---- */

struct login {
	struct sp_request *req;
	struct sp_core *core;
	char *email;
	char *password; /* wiped after use */
	char *hash;     /* from the database, or the dummy */
	char *user_id;  /* NULL when unknown */
	char account_key[300], address_key[80];
	bool verified;
};

static void login_free(struct login *l)
{
	if (l->password) {
		sodium_memzero(l->password, strlen(l->password));
		free(l->password);
	}
	free(l->email);
	free(l->hash);
	free(l->user_id);
	free(l);
}

static void login_reply_session(const struct sp_db_result *res, void *arg)
{
	struct login *l = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(l->req, res);
	} else {
		json_t *row = sp_db_result_row_json(res, 0);
		json_t *user = json_pack(
		    "{s:O, s:O, s:O, s:O, s:O, s:O}", "id", json_object_get(row, "id"), "email",
		    json_object_get(row, "email"), "display_name",
		    json_object_get(row, "display_name"), "is_admin",
		    json_object_get(row, "is_admin"), "org_id", json_object_get(row, "org_id"),
		    "org_role", json_object_get(row, "org_role"));
		json_t *body =
		    json_pack("{s:O, s:O, s:o}", "token", json_object_get(row, "token"),
		              "expires_at", json_object_get(row, "expires_at"), "user", user);
		json_decref(row);
		sp_request_add_header(l->req, "Cache-Control", "no-store");
		sp_request_reply_json(l->req, 200, body);
	}
	login_free(l);
}

static void login_failed_counted(const struct sp_db_result *res, void *arg)
{
	struct login *l = arg;
	if (!sp_db_result_ok(res))
		sp_warn("could not record a failed login: %s", sp_db_result_error(res));
	sp_request_reply_problem(l->req, 401, "Login failed", "wrong e-mail address or password",
	                         NULL);
	login_free(l);
}

static void verify_work(void *arg)
{
	struct login *l = arg;
	l->verified = sp_password_verify(l->hash, l->password) && l->user_id;
}

static void verify_done(void *arg)
{
	struct login *l = arg;
	char ttl[32], window[32];
	snprintf(ttl, sizeof(ttl), "%ld", l->core->cfg->session_ttl_s);
	snprintf(window, sizeof(window), "%ld", l->core->cfg->login_window_s);
	if (!l->verified) {
		const char *params[] = { l->account_key, l->address_key, window };
		if (sp_db_query(
		        l->core->db,
		        "INSERT INTO sp_login_failures AS f (key, failures, window_start) "
		        "SELECT k, 1, now() FROM unnest(ARRAY[$1, $2]) k "
		        "ON CONFLICT (key) DO UPDATE SET "
		        "failures = CASE WHEN f.window_start < now() - make_interval(secs => "
		        "$3::int) THEN 1 ELSE f.failures + 1 END, "
		        "window_start = CASE WHEN f.window_start < now() - make_interval(secs "
		        "=> $3::int) THEN now() ELSE f.window_start END",
		        3, params, login_failed_counted, l) < 0)
			login_failed_counted(NULL, l);
		return;
	}
	char token[64], prefix[16], digest[SP_TOKEN_DIGEST_HEX];
	sp_token_generate(token, prefix, digest);
	const char *params[] = { l->user_id, prefix, digest, ttl, token, l->account_key };
	/* One statement: clear the account's failures, create the session, return it. */
	if (sp_db_query(
	        l->core->db,
	        "WITH cleared AS (DELETE FROM sp_login_failures WHERE key = $6), "
	        "t AS (INSERT INTO sp_tokens (user_id, kind, name, prefix, digest, "
	        "expires_at) VALUES ($1, 'session', 'login', $2, decode($3, 'hex'), "
	        "now() + make_interval(secs => $4::int)) RETURNING expires_at) "
	        "SELECT $5::text AS token, to_char(t.expires_at AT TIME ZONE 'UTC', "
	        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS expires_at, u.id::text AS id, u.email, "
	        "u.display_name, u.is_admin, u.org_id::text AS org_id, u.org_role "
	        "FROM t, sp_users u WHERE u.id = $1",
	        6, params, login_reply_session, l) < 0) {
		sp_request_reply_problem(l->req, 503, NULL, "the database is unavailable", NULL);
		login_free(l);
	}
	sodium_memzero(token, sizeof(token));
}

static void login_looked_up(const struct sp_db_result *res, void *arg)
{
	struct login *l = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(l->req, res);
		login_free(l);
		return;
	}
	/* Row 0: the throttle state (always there), then the user if any. */
	long retry = 0;
	if (!sp_db_result_isnull(res, 0, 0))
		retry = strtol(sp_db_result_value(res, 0, 0), NULL, 10);
	if (retry > 0) {
		char ra[32];
		snprintf(ra, sizeof(ra), "%ld", retry);
		sp_request_add_header(l->req, "Retry-After", ra);
		sp_request_reply_problem(l->req, 429, NULL,
		                         "too many failed logins; wait before trying again", NULL);
		login_free(l);
		return;
	}
	if (!sp_db_result_isnull(res, 0, 1) && !sp_db_result_isnull(res, 0, 2)) {
		l->user_id = sp_strdup(sp_db_result_value(res, 0, 1));
		l->hash = sp_strdup(sp_db_result_value(res, 0, 2));
	} else {
		l->hash = sp_strdup(dummy_hash);
	}
	if (sp_workpool_submit(l->core->workpool, verify_work, verify_done, l) < 0) {
		sp_request_reply_problem(l->req, 503, NULL, "cannot check passwords right now",
		                         NULL);
		login_free(l);
	}
}

static void login(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "email", "password", NULL };
	sp_check_known(&c, allowed);
	const char *email = sp_check_string(&c, "email", true, 3, 254);
	const char *password = sp_check_string(&c, "password", true, 1, 1024);
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return;
	}
	sp_check_clear(&c);
	struct login *l = sp_calloc(1, sizeof(*l));
	l->req = req;
	l->core = core;
	l->email = sp_strdup(email);
	l->password = sp_strdup(password);
	for (char *p = l->email; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	snprintf(l->account_key, sizeof(l->account_key), "account:%s", l->email);
	snprintf(l->address_key, sizeof(l->address_key), "address:%s", sp_request_peer(req));
	char max[32], window[32];
	snprintf(max, sizeof(max), "%ld", core->cfg->login_max_failures);
	snprintf(window, sizeof(window), "%ld", core->cfg->login_window_s);
	const char *params[] = { l->account_key, l->address_key, max, window, l->email };
	if (sp_db_query(core->db,
	                "SELECT (SELECT ceil(extract(epoch FROM max(window_start) + "
	                "make_interval(secs => $4::int) - now()))::int FROM sp_login_failures "
	                "WHERE key IN ($1, $2) AND failures >= $3::int AND window_start > now() - "
	                "make_interval(secs => $4::int)) AS retry_after, "
	                "(SELECT id::text FROM sp_users WHERE lower(email) = $5) AS id, "
	                "(SELECT password_hash FROM sp_users WHERE lower(email) = $5) AS hash",
	                5, params, login_looked_up, l) < 0) {
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
		login_free(l);
	}
}

/* ---- logout, me ---- */

static void reply_204(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (!sp_db_result_ok(res))
		sp_request_reply_db_error(req, res);
	else
		sp_request_reply_raw(req, 204, NULL, NULL, 0);
}

static void logout(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	const char *params[] = { sp_principal_token_id(sp_request_principal(req)) };
	if (sp_db_query(core->db, "UPDATE sp_tokens SET revoked_at = now() WHERE id = $1", 1,
	                params, reply_204, req) < 0)
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

static void me_done(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (!sp_db_result_ok(res) || sp_db_result_ntuples(res) != 1) {
		if (sp_db_result_ok(res))
			sp_request_reply_problem(req, 401, NULL, "the user no longer exists", NULL);
		else
			sp_request_reply_db_error(req, res);
		return;
	}
	json_t *row = sp_db_result_row_json(res, 0);
	json_t *roles = json_array();
	if (json_is_true(json_object_get(row, "is_admin")))
		json_array_append_new(roles, json_string("admin"));
	if (json_is_string(json_object_get(row, "org_role")))
		json_array_append(roles, json_object_get(row, "org_role"));
	json_t *org = json_object_get(row, "organization");
	json_t *body = json_pack("{s:{s:O, s:O, s:O, s:O, s:O}, s:O, s:o}", "user", "id",
	                         json_object_get(row, "id"), "email", json_object_get(row, "email"),
	                         "display_name", json_object_get(row, "display_name"), "is_admin",
	                         json_object_get(row, "is_admin"), "created_at",
	                         json_object_get(row, "created_at"), "organization",
	                         org ? org : json_null(), "roles", roles);
	json_object_set(json_object_get(body, "user"), "org_role",
	                json_object_get(row, "org_role"));
	json_decref(row);
	sp_request_reply_json(req, 200, body);
}

static void me(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	const char *params[] = { sp_request_principal(req)->user_id };
	/* Prepared: every client asks this at start, some on every page. */
	if (sp_db_query_prepared(
	        core->db, "sp_me",
	        "SELECT u.id::text AS id, u.email, u.display_name, u.is_admin, u.org_role, "
	        "to_char(u.created_at AT TIME ZONE 'UTC', "
	        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at, "
	        "CASE WHEN o.id IS NULL THEN NULL ELSE json_build_object('id', o.id, "
	        "'name', o.name, 'kind', o.kind, 'country', o.country) END AS organization "
	        "FROM sp_users u LEFT JOIN sp_organizations o ON o.id = u.org_id "
	        "WHERE u.id = $1",
	        1, params, me_done, req) < 0)
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

/* ---- API tokens ---- */

struct token_create {
	struct sp_request *req;
	char token[64];
};

static void token_created(const struct sp_db_result *res, void *arg)
{
	struct token_create *t = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(t->req, res);
	} else {
		json_t *row = sp_db_result_row_json(res, 0);
		json_object_set_new(row, "token", json_string(t->token));
		sp_request_add_header(t->req, "Cache-Control", "no-store");
		sp_request_reply_json(t->req, 201, row);
	}
	sodium_memzero(t->token, sizeof(t->token));
	free(t);
}

#define TS SP_SQL_TS

static void tokens_create(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	json_t *body = sp_request_json(req);
	if (!body)
		return;
	struct sp_check c;
	sp_check_init(&c, body);
	static const char *const allowed[] = { "name", "expires_in", NULL };
	sp_check_known(&c, allowed);
	const char *name = sp_check_string(&c, "name", true, 1, 100);
	bool has_exp;
	long long expires = sp_check_int(&c, "expires_in", false, 60, 10LL * 365 * 86400, &has_exp);
	if (!sp_check_ok(&c)) {
		sp_check_reply(&c, req);
		return;
	}
	sp_check_clear(&c);
	struct token_create *t = sp_calloc(1, sizeof(*t));
	t->req = req;
	char prefix[16], digest[SP_TOKEN_DIGEST_HEX], exp[32];
	sp_token_generate(t->token, prefix, digest);
	snprintf(exp, sizeof(exp), "%lld", expires);
	const char *params[] = { sp_request_principal(req)->user_id, name, prefix, digest,
		                 has_exp ? exp : NULL };
	if (sp_db_query(
	        core->db,
	        "INSERT INTO sp_tokens (user_id, kind, name, prefix, digest, expires_at) "
	        "VALUES ($1, 'api', $2, $3, decode($4, 'hex'), now() + "
	        "make_interval(secs => $5::int)) RETURNING id::text AS id, name, "
	        "prefix, " TS("created_at") " AS created_at, " TS("expires_at") " AS expires_at",
	        5, params, token_created, t) < 0) {
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
		free(t);
	}
}

static void reply_items(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (!sp_db_result_ok(res)) {
		sp_request_reply_db_error(req, res);
		return;
	}
	sp_request_reply_json(
	    req, 200, json_pack("{s:o, s:n}", "items", sp_db_result_rows_json(res), "next_cursor"));
}

static void tokens_list(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	const char *params[] = { sp_request_principal(req)->user_id };
	/* A user holds few API tokens; the list is complete in one page. */
	if (sp_db_query(
	        core->db,
	        "SELECT id::text AS id, name, prefix, " TS("created_at") " AS created_at, " TS(
	            "expires_at") " AS expires_at FROM sp_tokens WHERE user_id = $1 AND "
	                          "kind = 'api' AND revoked_at IS NULL AND (expires_at IS NULL OR "
	                          "expires_at > now()) ORDER BY created_at, id LIMIT 1000",
	        1, params, reply_items, req) < 0)
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

static void token_revoked(const struct sp_db_result *res, void *arg)
{
	struct sp_request *req = arg;
	if (!sp_db_result_ok(res))
		sp_request_reply_db_error(req, res);
	else if (sp_db_result_ntuples(res) == 0)
		sp_request_reply_problem(req, 404, NULL, "no such token", NULL);
	else
		sp_request_reply_raw(req, 204, NULL, NULL, 0);
}

static void tokens_delete(struct sp_request *req, void *arg)
{
	struct sp_core *core = arg;
	const char *id = sp_request_param(req, "id");
	if (!sp_valid_uuid(id)) {
		sp_request_reply_problem(req, 404, NULL, "no such token", NULL);
		return;
	}
	const struct sp_principal *p = sp_request_principal(req);
	const char *params[] = { id, p->user_id, p->is_admin ? "true" : "false" };
	if (sp_db_query(core->db,
	                "UPDATE sp_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS "
	                "NULL AND (user_id = $2 OR $3::bool) RETURNING id",
	                3, params, token_revoked, req) < 0)
		sp_request_reply_problem(req, 503, NULL, "the database is unavailable", NULL);
}

int sp_identity_register(struct sp_core *core)
{
	if (!dummy_hash[0]) {
		char pw[32];
		sp_random_hex(pw, 15);
		if (sp_password_hash(pw, dummy_hash, sizeof(dummy_hash)) < 0)
			return -1;
	}
	static const char login_schema[] =
	    "{\"type\":\"object\",\"required\":[\"email\",\"password\"],\"properties\":{"
	    "\"email\":{\"type\":\"string\"},\"password\":{\"type\":\"string\"}},"
	    "\"additionalProperties\":false}";
	static const char token_schema[] =
	    "{\"type\":\"object\",\"required\":[\"name\"],\"properties\":{\"name\":{\"type\":"
	    "\"string\"},\"expires_in\":{\"type\":\"integer\",\"minimum\":60}},"
	    "\"additionalProperties\":false}";
	const struct sp_route routes[] = {
		{ "POST", "/v1/auth/login", SP_ACCESS_PUBLIC, login,
		  "Log in with e-mail and password; returns a session token", login_schema, NULL },
		{ "POST", "/v1/auth/logout", SP_ACCESS_USER, logout, "Revoke the token used", NULL,
		  NULL },
		{ "GET", "/v1/me", SP_ACCESS_USER, me, "The caller: user, organisation, roles",
		  NULL, NULL },
		{ "POST", "/v1/tokens", SP_ACCESS_USER, tokens_create,
		  "Create an API token (shown once)", token_schema, NULL },
		{ "GET", "/v1/tokens", SP_ACCESS_USER, tokens_list,
		  "The caller's API tokens (prefixes only)", NULL, NULL },
		{ "DELETE", "/v1/tokens/{id}", SP_ACCESS_USER, tokens_delete, "Revoke an API token",
		  NULL, NULL },
	};
	char err[256];
	for (size_t i = 0; i < SP_ARRAY_LEN(routes); i++) {
		if (sp_router_add(core->router, &routes[i], NULL, core, err, sizeof(err)) < 0) {
			sp_error("identity route: %s", err);
			return -1;
		}
	}
	return 0;
}
