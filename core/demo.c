/* demo.c — loads the demo data set (a fictional health-tech cluster kept as JSON in
 * contrib/demo/) into the database: `spearhead demo` and `serve --demo`.
 *
 * The whole data set is read and validated before the database is touched, then
 * inserted in one transaction, keyed by the fixed ids of the files: what exists is
 * kept, so loading twice changes nothing. Blocking libpq: this runs before the
 * server's event loop, or as a one-shot command. */
#include "auth.h"
#include "cli.h"
#include "config.h"
#include "demo.h"
#include "log.h"
#include "pgembed.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#define TOPICS_FILE "topics.json"
#define ORGS_FILE   "organizations.json"
#define USERS_FILE  "users.json"

#define MIN_DEMO_PASSWORD 12

struct demo_set {
	char *dir;
	json_t *topics, *orgs, *users; /* validated arrays */
};

static void demo_set_free(struct demo_set *s)
{
	free(s->dir);
	json_decref(s->topics);
	json_decref(s->orgs);
	json_decref(s->users);
	memset(s, 0, sizeof(*s));
}

/* ---- default location ---- */

static bool has_data_set(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/" TOPICS_FILE, dir);
	return access(path, R_OK) == 0;
}

const char *sp_demo_default_dir(void)
{
	const char *env = getenv("SPEARHEAD_DEMO_DIR");
	if (env && *env)
		return env;
#ifdef SP_DEMODIR
	if (has_data_set(SP_DEMODIR))
		return SP_DEMODIR;
#endif
#ifdef SP_SRCDIR_DEMO
	if (has_data_set(SP_SRCDIR_DEMO))
		return SP_SRCDIR_DEMO;
#endif
#ifdef SP_DEMODIR
	return SP_DEMODIR;
#else
	(void)has_data_set;
	return "contrib/demo";
#endif
}

/* ---- validation ---- */

/* Context of the entry being checked, for error messages. */
struct where {
	const char *path; /* the file */
	size_t index;     /* entry number, from 1 */
	const char *name; /* its name / slug / e-mail when known */
	char *err;
	size_t errlen;
};

static int fail(const struct where *w, const char *fmt, ...) SP_PRINTF(2, 3);
static int fail(const struct where *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->name)
		snprintf(w->err, w->errlen, "%s: entry %zu (\"%.80s\"): %s", w->path, w->index,
		         w->name, msg);
	else
		snprintf(w->err, w->errlen, "%s: entry %zu: %s", w->path, w->index, msg);
	return -1;
}

/* Characters (not bytes) of a UTF-8 string, as PostgreSQL's length() counts them. */
static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* The string field key of entry, checked: *out NULL when absent/null and optional. */
static int get_string(const struct where *w, json_t *entry, const char *key, bool required,
                      size_t min, size_t max, const char **out)
{
	json_t *v = json_object_get(entry, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return fail(w, "field \"%s\" is missing", key);
		return 0;
	}
	if (!json_is_string(v))
		return fail(w, "field \"%s\" must be a string", key);
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return fail(w, "field \"%s\" contains a NUL character", key);
	size_t n = utf8_len(s);
	if (n < min || n > max)
		return fail(w, "field \"%s\" must have %zu to %zu characters (has %zu)", key, min,
		            max, n);
	*out = s;
	return 0;
}

static int check_keys(const struct where *w, json_t *entry, const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach(entry, key, v)
	{
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(key, *a) == 0;
		if (!known)
			return fail(w, "unknown field \"%.60s\"", key);
	}
	return 0;
}

/* Lower-case canonical UUID text (8-4-4-4-12 hex digits). */
static bool is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

/* [a-z0-9]+(-[a-z0-9]+)*, as the sp_topics CHECK wants. */
static bool is_slug(const char *s)
{
	bool prev_dash = true; /* no leading dash */
	for (; *s; s++) {
		if (*s == '-') {
			if (prev_dash)
				return false;
			prev_dash = true;
		} else if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')) {
			prev_dash = false;
		} else {
			return false;
		}
	}
	return !prev_dash;
}

/* One '@' with something on both sides and no white space, as the sp_users CHECK. */
static bool is_email(const char *s)
{
	const char *at = strchr(s, '@');
	if (!at || at == s || !at[1] || strchr(at + 1, '@'))
		return false;
	for (; *s; s++)
		if (*s == ' ' || (*s >= '\t' && *s <= '\r'))
			return false;
	return true;
}

/* The id field: a UUID not seen before in the file (seen: id → true). */
static int get_id(const struct where *w, json_t *entry, json_t *seen, const char **out)
{
	if (get_string(w, entry, "id", true, 1, 100, out) < 0)
		return -1;
	if (!is_uuid(*out))
		return fail(w, "\"id\" must be a UUID in lower case (like "
		               "\"0b7e6a52-3f0c-5d7a-9a61-2c4f8e1d9b30\")");
	if (json_object_get(seen, *out))
		return fail(w, "id %s is used twice", *out);
	json_object_set_new(seen, *out, json_true());
	return 0;
}

static json_t *load_array(const char *dir, const char *file, char *path, size_t pathlen, char *err,
                          size_t errlen)
{
	snprintf(path, pathlen, "%s/%s", dir, file);
	json_error_t jerr;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		if (jerr.line < 0 && strstr(jerr.text, path)) /* "unable to open PATH: ..." */
			snprintf(err, errlen, "%s", jerr.text);
		else if (jerr.line < 0)
			snprintf(err, errlen, "%s: %s", path, jerr.text);
		else
			snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column,
			         jerr.text);
		return NULL;
	}
	if (!json_is_array(doc)) {
		snprintf(err, errlen, "%s: the file must hold a JSON array of entries", path);
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* slugs: slug → true, filled as topics are checked (parents must come first). */
static int check_topics(const char *path, json_t *topics, json_t *slugs, char *err, size_t errlen)
{
	static const char *const keys[] = { "id", "slug", "label", "parent", "synonyms", NULL };
	json_t *ids = json_object();
	size_t i;
	json_t *t;
	int rc = 0;
	json_array_foreach(topics, i, t)
	{
		struct where w = { path, i + 1, NULL, err, errlen };
		const char *id, *slug, *label, *parent;
		if (!json_is_object(t)) {
			rc = fail(&w, "must be an object");
			break;
		}
		json_t *sv = json_object_get(t, "slug");
		w.name = json_is_string(sv) ? json_string_value(sv) : NULL;
		if (check_keys(&w, t, keys) < 0 || get_id(&w, t, ids, &id) < 0 ||
		    get_string(&w, t, "slug", true, 1, 80, &slug) < 0 ||
		    get_string(&w, t, "label", true, 1, 200, &label) < 0 ||
		    get_string(&w, t, "parent", false, 1, 80, &parent) < 0) {
			rc = -1;
			break;
		}
		if (!is_slug(slug)) {
			rc = fail(&w,
			          "slug \"%s\" must be lower-case letters and digits in "
			          "words joined by single dashes",
			          slug);
			break;
		}
		if (json_object_get(slugs, slug)) {
			rc = fail(&w, "slug \"%s\" is used twice", slug);
			break;
		}
		if (parent && !json_object_get(slugs, parent)) {
			rc = fail(&w,
			          "parent \"%s\" is not a topic defined earlier in the file "
			          "(parents come first)",
			          parent);
			break;
		}
		json_t *syn = json_object_get(t, "synonyms");
		if (syn && !json_is_null(syn)) {
			size_t j;
			json_t *s;
			if (!json_is_array(syn)) {
				rc = fail(&w, "\"synonyms\" must be an array of strings");
				break;
			}
			json_array_foreach(syn, j, s)
			{
				size_t n = json_is_string(s) ? utf8_len(json_string_value(s)) : 0;
				if (!json_is_string(s) || n == 0 || n > 200 ||
				    strlen(json_string_value(s)) != json_string_length(s)) {
					rc = fail(&w,
					          "synonym %zu must be a string of 1 to 200 "
					          "characters",
					          j + 1);
					break;
				}
			}
			if (rc < 0)
				break;
		}
		json_object_set_new(slugs, slug, json_true());
	}
	json_decref(ids);
	return rc;
}

static int check_profile(const struct where *w, json_t *org, const char *relation, json_t *slugs)
{
	json_t *list = json_object_get(org, relation);
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list))
		return fail(w, "\"%s\" must be an array of {\"topic\", \"level\"}", relation);
	json_t *seen = json_object();
	size_t i;
	json_t *p;
	int rc = 0;
	json_array_foreach(list, i, p)
	{
		json_t *topic = json_object_get(p, "topic"), *level = json_object_get(p, "level");
		const char *slug = json_string_value(topic);
		if (!json_is_object(p)) {
			rc = fail(w, "%s[%zu] must be an object {\"topic\", \"level\"}", relation,
			          i + 1);
			break;
		}
		const char *key;
		json_t *v;
		json_object_foreach(p, key, v)
		{
			if (strcmp(key, "topic") != 0 && strcmp(key, "level") != 0) {
				rc = fail(w, "%s[%zu]: unknown field \"%.60s\"", relation, i + 1,
				          key);
				break;
			}
		}
		if (rc < 0)
			break;
		if (!slug) {
			rc = fail(w, "%s[%zu]: \"topic\" must be a topic slug", relation, i + 1);
			break;
		}
		if (!json_object_get(slugs, slug)) {
			rc = fail(w, "%s[%zu]: topic \"%.80s\" is not in " TOPICS_FILE, relation,
			          i + 1, slug);
			break;
		}
		if (!json_is_integer(level) || json_integer_value(level) < 1 ||
		    json_integer_value(level) > 3) {
			rc = fail(w, "%s[%zu]: \"level\" must be 1, 2 or 3", relation, i + 1);
			break;
		}
		if (json_object_get(seen, slug)) {
			rc = fail(w, "%s: topic \"%s\" is listed twice", relation, slug);
			break;
		}
		json_object_set_new(seen, slug, json_true());
	}
	json_decref(seen);
	return rc;
}

/* org_ids: id → the organisation's name, for the users. */
static int check_orgs(const char *path, json_t *orgs, json_t *slugs, json_t *org_ids, char *err,
                      size_t errlen)
{
	static const char *const keys[] = { "id",      "name",        "kind",   "country", "region",
		                            "website", "description", "offers", "seeks",   NULL };
	static const char *const kinds[] = {
		"sme",         "large_enterprise", "hospital", "university", "research_centre",
		"association", "public_body",      "other",    NULL
	};
	size_t i;
	json_t *o;
	json_array_foreach(orgs, i, o)
	{
		struct where w = { path, i + 1, NULL, err, errlen };
		const char *id, *name, *kind, *country, *region, *website, *description;
		if (!json_is_object(o))
			return fail(&w, "must be an object");
		json_t *nv = json_object_get(o, "name");
		w.name = json_is_string(nv) ? json_string_value(nv) : NULL;
		if (check_keys(&w, o, keys) < 0 || get_id(&w, o, org_ids, &id) < 0 ||
		    get_string(&w, o, "name", true, 1, 200, &name) < 0 ||
		    get_string(&w, o, "kind", true, 1, 40, &kind) < 0 ||
		    get_string(&w, o, "country", false, 2, 2, &country) < 0 ||
		    get_string(&w, o, "region", false, 0, 100, &region) < 0 ||
		    get_string(&w, o, "website", false, 0, 300, &website) < 0 ||
		    get_string(&w, o, "description", false, 0, 5000, &description) < 0)
			return -1;
		json_object_set(org_ids, id, nv); /* replaces get_id's marker */
		bool kind_ok = false;
		for (const char *const *k = kinds; *k && !kind_ok; k++)
			kind_ok = strcmp(kind, *k) == 0;
		if (!kind_ok)
			return fail(&w,
			            "kind \"%.40s\" is not one of sme, large_enterprise, hospital, "
			            "university, research_centre, association, public_body, other",
			            kind);
		if (country && !(country[0] >= 'A' && country[0] <= 'Z' && country[1] >= 'A' &&
		                 country[1] <= 'Z'))
			return fail(&w,
			            "country \"%s\" must be an ISO 3166-1 alpha-2 code in "
			            "capitals (like \"NL\")",
			            country);
		if (website && *website && strncmp(website, "https://", 8) != 0 &&
		    strncmp(website, "http://", 7) != 0)
			return fail(&w, "website \"%.80s\" must start with https:// or http://",
			            website);
		if (check_profile(&w, o, "offers", slugs) < 0 ||
		    check_profile(&w, o, "seeks", slugs) < 0)
			return -1;
	}
	return 0;
}

static int check_users(const char *path, json_t *users, json_t *org_ids, char *err, size_t errlen)
{
	static const char *const keys[] = { "id",       "email", "display_name", "password",
		                            "is_admin", "org",   "org_role",     NULL };
	json_t *ids = json_object(), *emails = json_object();
	size_t i;
	json_t *u;
	int rc = 0;
	json_array_foreach(users, i, u)
	{
		struct where w = { path, i + 1, NULL, err, errlen };
		const char *id, *email, *display, *password, *org, *role;
		if (!json_is_object(u)) {
			rc = fail(&w, "must be an object");
			break;
		}
		json_t *ev = json_object_get(u, "email");
		w.name = json_is_string(ev) ? json_string_value(ev) : NULL;
		if (check_keys(&w, u, keys) < 0 || get_id(&w, u, ids, &id) < 0 ||
		    get_string(&w, u, "email", true, 3, 254, &email) < 0 ||
		    get_string(&w, u, "display_name", false, 0, 200, &display) < 0 ||
		    get_string(&w, u, "password", true, MIN_DEMO_PASSWORD, 1024, &password) < 0 ||
		    get_string(&w, u, "org", false, 36, 36, &org) < 0 ||
		    get_string(&w, u, "org_role", false, 1, 20, &role) < 0) {
			rc = -1;
			break;
		}
		if (!is_email(email)) {
			rc = fail(&w, "\"email\" is not an e-mail address");
			break;
		}
		char lower[256];
		snprintf(lower, sizeof(lower), "%s", email);
		for (char *p = lower; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		if (json_object_get(emails, lower)) {
			rc = fail(&w, "e-mail address %s is used twice", email);
			break;
		}
		json_object_set_new(emails, lower, json_true());
		json_t *admin = json_object_get(u, "is_admin");
		if (admin && !json_is_boolean(admin) && !json_is_null(admin)) {
			rc = fail(&w, "\"is_admin\" must be true or false");
			break;
		}
		if (org && !json_object_get(org_ids, org)) {
			rc = fail(&w, "org %s is not an organisation of " ORGS_FILE, org);
			break;
		}
		if (role && strcmp(role, "member") != 0 && strcmp(role, "manager") != 0) {
			rc = fail(&w, "org_role \"%s\" must be \"member\" or \"manager\"", role);
			break;
		}
		if (!org != !role) {
			rc = fail(&w, "\"org\" and \"org_role\" go together (both set, or both "
			              "null)");
			break;
		}
	}
	json_decref(ids);
	json_decref(emails);
	return rc;
}

/* Reads and validates the three files; 0, or -1 with err set. */
static int demo_read(const char *dir, struct demo_set *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->dir = sp_strdup(dir);
	char tpath[4200], opath[4200], upath[4200];
	json_t *slugs = json_object(), *org_ids = json_object();
	int rc = -1;
	if (!(s->topics = load_array(dir, TOPICS_FILE, tpath, sizeof(tpath), err, errlen)) ||
	    !(s->orgs = load_array(dir, ORGS_FILE, opath, sizeof(opath), err, errlen)) ||
	    !(s->users = load_array(dir, USERS_FILE, upath, sizeof(upath), err, errlen)))
		goto out;
	if (check_topics(tpath, s->topics, slugs, err, errlen) < 0 ||
	    check_orgs(opath, s->orgs, slugs, org_ids, err, errlen) < 0 ||
	    check_users(upath, s->users, org_ids, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	json_decref(slugs);
	json_decref(org_ids);
	if (rc < 0)
		demo_set_free(s);
	return rc;
}

/* ---- loading ---- */

struct counts {
	size_t topics_new, orgs_new, profile_rows, users_new;
	bool *user_existed; /* per entry of users.json */
};

static const char *str_or_null(json_t *entry, const char *key)
{
	return json_string_value(json_object_get(entry, key));
}

/* Runs one statement; 0 with *res (tuples or command ok), or -1 with err set. */
static int exec(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **res,
                char *err, size_t errlen)
{
	PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		snprintf(err, errlen, "%s", msg ? msg : PQerrorMessage(conn));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		return -1;
	}
	if (res)
		*res = r;
	else
		PQclear(r);
	return 0;
}

static int insert_topics(PGconn *conn, const struct demo_set *s, struct counts *c, char *err,
                         size_t errlen)
{
	size_t i;
	json_t *t;
	json_array_foreach(s->topics, i, t)
	{
		json_t *syn = json_object_get(t, "synonyms");
		char *syn_text =
		    json_is_array(syn) ? json_dumps(syn, JSON_COMPACT) : sp_strdup("[]");
		if (!syn_text)
			abort();
		const char *params[] = { str_or_null(t, "id"), str_or_null(t, "slug"),
			                 str_or_null(t, "label"), str_or_null(t, "parent"),
			                 syn_text };
		PGresult *r;
		char inner[512];
		int rc =
		    exec(conn,
		         "INSERT INTO sp_topics (id, slug, label, parent_id, synonyms) "
		         "VALUES ($1::uuid, $2, $3, (SELECT id FROM sp_topics WHERE slug = $4), "
		         "ARRAY(SELECT json_array_elements_text($5::json))) "
		         "ON CONFLICT DO NOTHING RETURNING id",
		         5, params, &r, inner, sizeof(inner));
		free(syn_text);
		if (rc < 0) {
			snprintf(err, errlen, "%s/" TOPICS_FILE ": entry %zu (\"%s\"): %s", s->dir,
			         i + 1, params[1], inner);
			return -1;
		}
		c->topics_new += (size_t)PQntuples(r);
		PQclear(r);
	}
	return 0;
}

/* The organisation's offers and seeks as one JSON array of {relation, topic, level}. */
static char *profile_json(json_t *org)
{
	json_t *rows = json_array();
	static const char *const relations[] = { "offers", "seeks" };
	for (size_t k = 0; k < SP_ARRAY_LEN(relations); k++) {
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(org, relations[k]), i, p)
		{
			json_array_append_new(rows,
			                      json_pack("{s:s, s:O, s:O}", "relation", relations[k],
			                                "topic", json_object_get(p, "topic"),
			                                "level", json_object_get(p, "level")));
		}
	}
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	if (!text)
		abort();
	return text;
}

static int insert_orgs(PGconn *conn, const struct demo_set *s, struct counts *c, char *err,
                       size_t errlen)
{
	size_t i;
	json_t *o;
	json_array_foreach(s->orgs, i, o)
	{
		const char *params[] = { str_or_null(o, "id"),         str_or_null(o, "name"),
			                 str_or_null(o, "kind"),       str_or_null(o, "country"),
			                 str_or_null(o, "region"),     str_or_null(o, "website"),
			                 str_or_null(o, "description") };
		PGresult *r;
		char inner[512];
		if (exec(conn,
		         "INSERT INTO sp_organizations (id, name, kind, country, region, website, "
		         "description) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7) "
		         "ON CONFLICT (id) DO NOTHING RETURNING id",
		         7, params, &r, inner, sizeof(inner)) < 0)
			goto failed;
		bool created = PQntuples(r) > 0;
		PQclear(r);
		if (!created)
			continue; /* existing organisation: its profile is its own business */
		c->orgs_new++;
		char *profile = profile_json(o);
		const char *pparams[] = { params[0], profile };
		int rc = exec(conn,
		              "INSERT INTO sp_org_topics (org_id, relation, topic_id, level) "
		              "SELECT $1::uuid, p.relation, t.id, p.level "
		              "FROM json_to_recordset($2::json) AS p(relation text, topic text, "
		              "level smallint) JOIN sp_topics t ON t.slug = p.topic "
		              "ON CONFLICT DO NOTHING",
		              2, pparams, &r, inner, sizeof(inner));
		free(profile);
		if (rc < 0)
			goto failed;
		c->profile_rows += strtoul(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		continue;
	failed:
		snprintf(err, errlen, "%s/" ORGS_FILE ": entry %zu (\"%s\"): %s", s->dir, i + 1,
		         params[1], inner);
		return -1;
	}
	return 0;
}

static int insert_users(PGconn *conn, const struct demo_set *s, struct counts *c, char *err,
                        size_t errlen)
{
	size_t i;
	json_t *u;
	json_array_foreach(s->users, i, u)
	{
		const char *id = str_or_null(u, "id"), *email = str_or_null(u, "email");
		const char *display = str_or_null(u, "display_name");
		const char *org = str_or_null(u, "org"), *role = str_or_null(u, "org_role");
		char inner[512];
		PGresult *r;
		const char *qparams[] = { id, email };
		/* An existing account is kept as it is: no new hash, no password reset. */
		if (exec(conn,
		         "SELECT 1 FROM sp_users WHERE id = $1::uuid OR lower(email) = lower($2)",
		         2, qparams, &r, inner, sizeof(inner)) < 0)
			goto failed;
		bool exists = PQntuples(r) > 0;
		PQclear(r);
		c->user_existed[i] = exists;
		if (exists)
			continue;
		char hash[crypto_pwhash_STRBYTES];
		if (sp_password_hash(str_or_null(u, "password"), hash, sizeof(hash)) < 0) {
			snprintf(inner, sizeof(inner),
			         "hashing the password failed (out of memory)");
			goto failed;
		}
		const char *params[] = { id,
			                 email,
			                 display ? display : "",
			                 hash,
			                 json_is_true(json_object_get(u, "is_admin")) ? "true"
			                                                              : "false",
			                 org,
			                 role };
		if (exec(conn,
		         "INSERT INTO sp_users (id, email, display_name, password_hash, is_admin, "
		         "org_id, org_role) VALUES ($1::uuid, $2, $3, $4, $5::boolean, $6::uuid, "
		         "$7) "
		         "ON CONFLICT DO NOTHING RETURNING id",
		         7, params, &r, inner, sizeof(inner)) < 0)
			goto failed;
		c->users_new += (size_t)PQntuples(r);
		c->user_existed[i] = PQntuples(r) == 0;
		PQclear(r);
		continue;
	failed:
		snprintf(err, errlen, "%s/" USERS_FILE ": entry %zu (\"%s\"): %s", s->dir, i + 1,
		         email, inner);
		return -1;
	}
	return 0;
}

/* One transaction; on failure it is rolled back and err says where. */
static int demo_insert(PGconn *conn, const struct demo_set *s, struct counts *c, char *err,
                       size_t errlen)
{
	if (exec(conn, "BEGIN", 0, NULL, NULL, err, errlen) < 0)
		return -1;
	if (insert_topics(conn, s, c, err, errlen) < 0 ||
	    insert_orgs(conn, s, c, err, errlen) < 0 || insert_users(conn, s, c, err, errlen) < 0) {
		PQclear(PQexec(conn, "ROLLBACK"));
		return -1;
	}
	char inner[512];
	if (exec(conn, "COMMIT", 0, NULL, NULL, inner, sizeof(inner)) < 0) {
		snprintf(err, errlen, "committing the demo data failed: %s", inner);
		return -1;
	}
	return 0;
}

static const char *org_name(const struct demo_set *s, const char *id)
{
	size_t i;
	json_t *o;
	json_array_foreach(s->orgs, i, o) if (strcmp(str_or_null(o, "id"), id) ==
	                                      0) return str_or_null(o, "name");
	return id;
}

static void print_credentials(const struct demo_set *s, const struct counts *c)
{
	size_t width = 0, pwidth = 0, i;
	json_t *u;
	bool any_existed = false;
	json_array_foreach(s->users, i, u)
	{
		size_t n = strlen(str_or_null(u, "email")), p = strlen(str_or_null(u, "password"));
		width = n > width ? n : width;
		pwidth = p > pwidth ? p : pwidth;
		any_existed |= c->user_existed[i];
	}
	fprintf(stderr,
	        "\nDemo accounts (from %s/" USERS_FILE "; for trying Spearhead out only):\n",
	        s->dir);
	json_array_foreach(s->users, i, u)
	{
		const char *org = str_or_null(u, "org");
		char role[300] = "";
		if (json_is_true(json_object_get(u, "is_admin")))
			snprintf(role, sizeof(role), "%s", org ? "admin, " : "admin");
		if (org) {
			size_t len = strlen(role);
			snprintf(role + len, sizeof(role) - len, "%s of %s",
			         str_or_null(u, "org_role"), org_name(s, org));
		}
		fprintf(stderr, "  %-*s  password: %-*s  %s\n", (int)width, str_or_null(u, "email"),
		        (int)pwidth, str_or_null(u, "password"), role[0] ? role : "user");
	}
	if (any_existed)
		fprintf(stderr, "Accounts that already existed were left unchanged (their "
		                "passwords were not reset).\n");
	fputc('\n', stderr);
}

/* Inserts a validated data set through url; logs the outcome. */
static int demo_apply(const char *url, const struct demo_set *s, bool credentials, char *err,
                      size_t errlen)
{
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { url, "spearhead-demo", NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
		err[strcspn(err, "\n")] = '\0';
		PQfinish(conn);
		return -1;
	}
	struct counts c = { 0 };
	size_t nusers = json_array_size(s->users);
	c.user_existed = sp_calloc(nusers ? nusers : 1, sizeof(bool));
	int rc = demo_insert(conn, s, &c, err, errlen);
	PQfinish(conn);
	if (rc == 0) {
		sp_info(
		    "demo: %zu topics (%zu new), %zu organisations (%zu new, %zu profile rows), "
		    "%zu users (%zu new) from %s",
		    json_array_size(s->topics), c.topics_new, json_array_size(s->orgs), c.orgs_new,
		    c.profile_rows, nusers, c.users_new, s->dir);
		if (credentials)
			print_credentials(s, &c);
	}
	free(c.user_existed);
	return rc;
}

int sp_demo_load(const char *url, const char *demo_dir, bool credentials)
{
	char err[1024];
	struct demo_set s;
	if (!demo_dir)
		demo_dir = sp_demo_default_dir();
	if (demo_read(demo_dir, &s, err, sizeof(err)) < 0) {
		sp_error("demo data set not loaded: %s", err);
		return -1;
	}
	int rc = demo_apply(url, &s, credentials, err, sizeof(err));
	if (rc < 0)
		sp_error("demo data set not loaded (nothing changed): %s", err);
	demo_set_free(&s);
	return rc;
}

/* ---- spearhead demo ---- */

static void demo_usage(FILE *out)
{
	fprintf(out,
	        "Usage: spearhead demo [--config FILE] [--database URL | --state-dir DIR]\n"
	        "                      [--demo-dir DIR]\n"
	        "\n"
	        "Loads the demo data set, a fictional health-tech cluster (topics, 77\n"
	        "organisations with their topic profiles, an admin and a few member accounts),\n"
	        "and prints the demo accounts and their passwords. Rows that already exist are\n"
	        "kept, so running it again changes nothing. The data set is read from --demo-dir,\n"
	        "else $SPEARHEAD_DEMO_DIR, else %s.\n",
	        sp_demo_default_dir());
}

int sp_cmd_demo(int argc, char **argv)
{
	struct sp_cli_common c;
	int rc = sp_cli_parse_common(argc, argv, NULL, &c, demo_usage);
	if (rc >= 0)
		return rc;
	const char *dir = NULL;
	for (int i = 0; i < c.nrest; i++) {
		const char *arg = c.rest[i];
		if (strcmp(arg, "--demo-dir") == 0) {
			if (i + 1 >= c.nrest) {
				fprintf(stderr, "spearhead demo: --demo-dir needs a value\n");
				sp_cli_common_free(&c);
				return 2;
			}
			dir = c.rest[++i];
		} else if (strncmp(arg, "--demo-dir=", 11) == 0) {
			dir = arg + 11;
		} else {
			fprintf(stderr, "spearhead demo: unknown argument '%s'\n", arg);
			demo_usage(stderr);
			sp_cli_common_free(&c);
			return 2;
		}
	}
	if (!dir || !*dir)
		dir = sp_demo_default_dir();

	/* The data set is checked before anything is started or changed. */
	char err[1024];
	struct demo_set s;
	if (demo_read(dir, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "spearhead demo: %s\nspearhead demo: nothing was loaded\n", err);
		sp_cli_common_free(&c);
		return 1;
	}
	struct sp_config *cfg = sp_cli_load_config(c.config, c.overrides, err, sizeof(err));
	sp_cli_common_free(&c);
	if (!cfg) {
		fprintf(stderr, "spearhead demo: %s\n", err);
		demo_set_free(&s);
		return 2;
	}
	struct sp_pgembed *pg = NULL;
	const char *url;
	rc = 1;
	if (sp_open_database(cfg, &pg, &url, err, sizeof(err)) < 0) {
		fprintf(stderr, "spearhead demo: %s\n", err);
	} else if (sp_run_migrations(url, NULL, false, NULL) < 0) {
		fprintf(stderr, "spearhead demo: the database schema is not usable (see above)\n");
	} else if (demo_apply(url, &s, true, err, sizeof(err)) < 0) {
		fprintf(stderr, "spearhead demo: %s\nspearhead demo: nothing was loaded\n", err);
	} else {
		rc = 0;
	}
	if (pg)
		sp_pgembed_stop(pg);
	sp_config_free(cfg);
	demo_set_free(&s);
	return rc;
}
