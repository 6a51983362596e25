/* mm_matches.c — POST /v1/matches (ranked, explained partners from the in-memory index,
 * stored), GET /v1/matches/{id} and GET /v1/matches (history). */
#include "mm_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MM_TS(col)  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define MAX_SOUGHT  50
#define MAX_EXCLUDE 1000
#define MAX_FILTER  50

/* Whether the caller may act for org (canonical id). */
static bool may_act_for(const struct sp_principal *who, const char *org)
{
	char mine[MM_ID_LEN + 1];
	return who->is_admin ||
	       (who->org_id && mm_uuid_canon(who->org_id, mine) && strcmp(mine, org) == 0);
}

static bool valid_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* A parsed, validated match request. Strings are borrowed from the body. */
struct query {
	char org[MM_ID_LEN + 1];
	uint32_t requester;
	struct mm_entry sought[MAX_SOUGHT];
	size_t nsought;
	bool topics_given;
	uint32_t kind_mask;
	char countries[MAX_FILTER][3];
	size_t ncountries;
	const char *regions[MAX_FILTER];
	size_t nregions;
	uint32_t *exclude; /* malloc'd slots */
	size_t nexclude;
	json_t *exclude_ids; /* new: the canonical ids, for the record */
	int limit;
	bool explain;
	const char *scorer; /* NULL: the built-in one */
};

/* Reads "topics" into q->sought, collecting unknown slugs. */
static void parse_topics(const struct mm_index *idx, json_t *topics, struct query *q,
                         json_t *errors)
{
	if (!topics || json_is_null(topics))
		return;
	if (!json_is_array(topics) || json_array_size(topics) > MAX_SOUGHT) {
		mm_error(errors, "topics", "must be an array of at most 50 topic slugs");
		return;
	}
	q->topics_given = json_array_size(topics) > 0;
	json_t *unknown = json_array();
	size_t i;
	json_t *item;
	json_array_foreach(topics, i, item)
	{
		const char *slug = json_string_value(item);
		json_int_t level = 3;
		if (json_is_object(item)) {
			json_t *l = json_object_get(item, "level");
			slug = json_string_value(json_object_get(item, "topic"));
			if (l)
				level = json_is_integer(l) ? json_integer_value(l) : 0;
			if (json_object_size(item) > (size_t)(l ? 2 : 1))
				slug = NULL;
		}
		if (!slug || level < 1 || level > 3) {
			char msg[128];
			snprintf(msg, sizeof(msg),
			         "item %zu must be a slug or {\"topic\": slug, \"level\": 1..3}",
			         i);
			mm_error(errors, "topics", msg);
			continue;
		}
		uint32_t t = mm_index_topic_by_slug(idx, slug);
		if (t == MM_NONE) {
			json_array_append_new(unknown, json_string(slug));
			continue;
		}
		bool dup = false;
		for (size_t j = 0; j < q->nsought && !dup; j++)
			if (q->sought[j].topic == t) {
				dup = true;
				if (level > q->sought[j].level)
					q->sought[j].level = (uint8_t)level;
			}
		if (!dup)
			q->sought[q->nsought++] = (struct mm_entry){ t, (uint8_t)level };
	}
	if (json_array_size(unknown)) {
		char *list = json_dumps(unknown, JSON_COMPACT);
		char msg[600];
		snprintf(msg, sizeof(msg), "unknown topics: %.560s", list ? list : "");
		free(list);
		json_object_set_new(errors, "topics", json_string(msg));
	}
	json_decref(unknown);
}

static void parse_filters(const struct mm_index *idx, json_t *body, struct query *q, json_t *errors)
{
	size_t i;
	json_t *item;
	json_t *kinds = json_object_get(body, "kinds");
	if (kinds && !json_is_null(kinds)) {
		if (!json_is_array(kinds) || json_array_size(kinds) > MM_NKINDS * 2)
			mm_error(errors, "kinds", "must be an array of organisation kinds");
		json_array_foreach(kinds, i, item)
		{
			int k = mm_kind_from_name(json_string_value(item));
			if (k < 0) {
				mm_error(errors, "kinds",
				         "unknown kind; use sme, large_enterprise, hospital, "
				         "university, "
				         "research_centre, association, public_body, other");
				break;
			}
			q->kind_mask |= 1u << k;
		}
	}
	json_t *countries = json_object_get(body, "countries");
	if (countries && !json_is_null(countries)) {
		if (!json_is_array(countries) || json_array_size(countries) > MAX_FILTER)
			mm_error(errors, "countries",
			         "must be an array of at most 50 country codes");
		json_array_foreach(countries, i, item)
		{
			const char *c = json_string_value(item);
			bool ok = c && strlen(c) == 2 && q->ncountries < MAX_FILTER;
			for (int j = 0; ok && j < 2; j++)
				ok = (c[j] >= 'A' && c[j] <= 'Z') || (c[j] >= 'a' && c[j] <= 'z');
			if (!ok) {
				mm_error(errors, "countries",
				         "must be ISO 3166-1 alpha-2 codes, e.g. NL");
				break;
			}
			for (int j = 0; j < 2; j++)
				q->countries[q->ncountries][j] =
				    (char)(c[j] >= 'a' ? c[j] - 'a' + 'A' : c[j]);
			q->countries[q->ncountries++][2] = '\0';
		}
	}
	json_t *regions = json_object_get(body, "regions");
	if (regions && !json_is_null(regions)) {
		if (!json_is_array(regions) || json_array_size(regions) > MAX_FILTER)
			mm_error(errors, "regions", "must be an array of at most 50 region names");
		json_array_foreach(regions, i, item)
		{
			const char *r = json_string_value(item);
			if (!r || !*r || strlen(r) > 100 || q->nregions >= MAX_FILTER) {
				mm_error(errors, "regions", "must be names of 1 to 100 characters");
				break;
			}
			q->regions[q->nregions++] = r;
		}
	}
	json_t *exclude = json_object_get(body, "exclude");
	q->exclude_ids = json_array();
	if (exclude && !json_is_null(exclude)) {
		if (!json_is_array(exclude) || json_array_size(exclude) > MAX_EXCLUDE) {
			mm_error(errors, "exclude",
			         "must be an array of at most 1000 organisation ids");
			return;
		}
		q->exclude = malloc((json_array_size(exclude) + 1) * sizeof(uint32_t));
		if (!q->exclude) {
			mm_error(errors, "exclude", "too long");
			return;
		}
		json_array_foreach(exclude, i, item)
		{
			char id[MM_ID_LEN + 1];
			if (!mm_uuid_canon(json_string_value(item), id)) {
				mm_error(errors, "exclude", "must be organisation ids");
				break;
			}
			json_array_append_new(q->exclude_ids, json_string(id));
			uint32_t slot = mm_index_org(idx, id);
			if (slot != MM_NONE) /* unknown ids exclude nothing */
				q->exclude[q->nexclude++] = slot;
		}
	}
}

static void query_free(struct query *q)
{
	free(q->exclude);
	json_decref(q->exclude_ids);
}

/* The request as stored and shown in the history. */
static json_t *query_json(const struct mm_index *idx, const struct query *q)
{
	json_t *topics = json_array(), *kinds = json_array(), *countries = json_array(),
	       *regions = json_array();
	for (size_t i = 0; i < q->nsought; i++)
		json_array_append_new(topics, json_pack("{s:s, s:i}", "topic",
		                                        idx->topics[q->sought[i].topic].slug,
		                                        "level", q->sought[i].level));
	for (int k = 0; k < MM_NKINDS; k++)
		if (q->kind_mask & (1u << k))
			json_array_append_new(kinds, json_string(mm_kind_names[k]));
	for (size_t i = 0; i < q->ncountries; i++)
		json_array_append_new(countries, json_string(q->countries[i]));
	for (size_t i = 0; i < q->nregions; i++)
		json_array_append_new(regions, json_string(q->regions[i]));
	return json_pack("{s:s, s:o, s:b, s:o, s:o, s:o, s:O, s:i, s:b, s:s}", "org", q->org,
	                 "topics", topics, "topics_from_profile", !q->topics_given, "kinds", kinds,
	                 "countries", countries, "regions", regions, "exclude", q->exclude_ids,
	                 "limit", q->limit, "explain", q->explain, "scorer",
	                 q->scorer ? q->scorer : "builtin");
}

/* One scored result (reasons: new reference or NULL). */
struct result {
	struct mm_hit hit;
	json_t *reasons;
};

static const struct mm_index *result_idx;
static int result_cmp(const void *a, const void *b)
{
	const struct result *x = a, *y = b;
	return mm_hit_cmp(result_idx, &x->hit, &y->hit);
}

/* Scores with a scorer another plugin registered: the index pre-selects candidates,
 * the scorer re-ranks them. Returns the number of results, or -1. */
static int score_with_plugin(struct mm *mm, const struct sp_scorer_ops *ops, const struct query *q,
                             const struct mm_filter *f, struct result **out, struct mm_stats *st)
{
	struct mm_index *idx = mm->idx;
	size_t m = (size_t)mm->scorer_candidates;
	struct mm_hit *c = malloc(m * sizeof(*c));
	struct sp_match_topic *sought = malloc((q->nsought + 1) * sizeof(*sought));
	struct result *r = calloc(m + 1, sizeof(*r));
	struct sp_match_topic *rbuf = NULL;
	struct sp_match_profile rp;
	int n = -1;
	if (!c || !sought || !r || mm_profile_of(idx, q->requester, &rp, &rbuf) < 0)
		goto done;
	for (size_t i = 0; i < q->nsought; i++)
		sought[i] = (struct sp_match_topic){ idx->topics[q->sought[i].topic].slug,
			                             q->sought[i].level };
	n = mm_candidates(idx, &mm->params, q->requester, q->sought, q->nsought, f, m, c, st);
	for (int i = 0; i < n; i++) {
		struct sp_match_topic *cbuf;
		struct sp_match_profile cp;
		r[i].hit = c[i];
		r[i].reasons = json_array();
		if (mm_profile_of(idx, c[i].org, &cp, &cbuf) < 0) {
			r[i].hit.score = 0;
			continue;
		}
		double s = ops->score(ops->state, &rp, sought, q->nsought, &cp, r[i].reasons);
		r[i].hit.score = mm_normalise_reasons(s, r[i].reasons);
		free(cbuf);
	}
	if (n > 0) {
		result_idx = idx;
		qsort(r, (size_t)n, sizeof(*r), result_cmp);
	}
	st->rescored = n < 0 ? 0 : (uint32_t)n;
done:
	free(c);
	free(sought);
	free(rbuf);
	*out = r;
	return n;
}

struct store {
	struct mm *mm;
	struct sp_request *req;
	json_t *reply; /* owned: the answer, completed with id and created_at */
};

static void stored(const struct sp_db_result *res, void *arg)
{
	struct store *s = arg;
	const struct sp_api *api = s->mm->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(s->req, res);
		json_decref(s->reply);
	} else {
		json_object_set_new(s->reply, "id", json_string(api->db_value(res, 0, 0)));
		json_object_set_new(s->reply, "created_at", json_string(api->db_value(res, 0, 1)));
		api->metric_add(s->mm->m_matches, 1);
		api->reply_json(s->req, 200, s->reply);
	}
	free(s);
}

/* Validates, scores and stores one match request (key: its Idempotency-Key or NULL). */
static void compute_and_store(struct sp_request *req, struct mm *mm, const char *key)
{
	const struct sp_api *api = mm->api;
	const struct sp_principal *who = api->req_principal(req);
	json_t *body = api->req_json(req);
	struct mm_index *idx = mm->idx;
	if (!json_is_object(body)) {
		api->reply_problem(req, 422, "Invalid request", "the body must be a JSON object",
		                   NULL);
		return;
	}
	static const char *const allowed[] = { "org",     "topics",  "kinds", "countries",
		                               "regions", "exclude", "limit", "explain",
		                               "scorer",  NULL };
	struct query q;
	memset(&q, 0, sizeof(q));
	q.limit = 10;
	q.explain = true;
	json_t *errors = json_object();
	mm_unknown_fields(body, allowed, errors);

	/* Who the matches are for: checked first, a 403 says nothing about the rest. */
	json_t *jorg = json_object_get(body, "org");
	if (jorg && !json_is_null(jorg)) {
		if (!mm_uuid_canon(json_string_value(jorg), q.org)) {
			mm_error(errors, "org", "must be an organisation id");
		} else if (!may_act_for(who, q.org)) {
			json_decref(errors);
			api->reply_problem(req, 403, NULL,
			                   "you may only ask for matches for your own organisation",
			                   NULL);
			return;
		}
	} else if (!who->org_id || !mm_uuid_canon(who->org_id, q.org)) {
		mm_error(errors, "org",
		         "is required: your account belongs to no organisation (admins name one)");
	}
	parse_topics(idx, json_object_get(body, "topics"), &q, errors);
	parse_filters(idx, body, &q, errors);
	json_t *limit = json_object_get(body, "limit");
	if (limit && !json_is_null(limit)) {
		if (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
		    json_integer_value(limit) > 100)
			mm_error(errors, "limit", "must be an integer from 1 to 100");
		else
			q.limit = (int)json_integer_value(limit);
	}
	json_t *explain = json_object_get(body, "explain");
	if (explain && !json_is_null(explain)) {
		if (!json_is_boolean(explain))
			mm_error(errors, "explain", "must be true or false");
		else
			q.explain = json_is_true(explain);
	}
	json_t *scorer = json_object_get(body, "scorer");
	const struct sp_scorer_ops *ops = NULL;
	if (scorer && !json_is_null(scorer)) {
		const char *name = json_string_value(scorer);
		if (!valid_name(name)) {
			mm_error(errors, "scorer", "must be a scorer name ([a-z0-9_]+)");
		} else if (strcmp(name, "builtin") != 0) {
			ops = MM_HAS_API(api, scorer_find) ? api->scorer_find(name) : NULL;
			if (!ops) {
				char msg[128];
				snprintf(msg, sizeof(msg), "no scorer named '%s' is registered",
				         name);
				mm_error(errors, "scorer", msg);
			}
			q.scorer = name;
		}
	}
	if (q.org[0] && !json_object_get(errors, "org")) {
		q.requester = mm_index_org(idx, q.org);
		if (q.requester == MM_NONE)
			mm_error(errors, "org", "no such organisation");
	}
	if (!json_object_size(errors) && !q.topics_given) {
		/* Default: what the organisation's profile seeks. */
		const struct mm_org *o = &idx->orgs[q.requester];
		for (uint16_t i = 0; i < o->nseeks && q.nsought < MAX_SOUGHT; i++)
			q.sought[q.nsought++] = o->seeks[i];
		if (!q.nsought) {
			char hint[300];
			snprintf(hint, sizeof(hint),
			         "no topics were given and the organisation's profile seeks none: "
			         "give \"topics\", or record what it seeks with PUT "
			         "/v1/organizations/%s/topics",
			         q.org);
			json_object_set_new(
			    errors, "topics",
			    json_string("required: the organisation's profile seeks "
			                "no topics"));
			query_free(&q);
			api->reply_problem(req, 422, "No topics to match on", hint, errors);
			return;
		}
	}
	if (json_object_size(errors)) {
		query_free(&q);
		api->reply_problem(req, 422, "Invalid match request",
		                   "the body does not match the request schema", errors);
		return;
	}
	json_decref(errors);

	/* Score. */
	struct mm_filter f = { q.kind_mask,  (const char(*)[3])q.countries,
		               q.ncountries, q.regions,
		               q.nregions,   q.exclude,
		               q.nexclude };
	struct timespec t0 = mm_now();
	struct mm_stats st;
	struct result *res = NULL;
	int n;
	if (ops) {
		n = score_with_plugin(mm, ops, &q, &f, &res, &st);
		if (n > q.limit) {
			for (int i = q.limit; i < n; i++)
				json_decref(res[i].reasons);
			n = q.limit;
		}
	} else {
		struct mm_hit hits[100];
		n = mm_match(idx, &mm->params, q.requester, q.sought, q.nsought, &f,
		             (size_t)q.limit, hits, &st);
		res = calloc((size_t)(n > 0 ? n : 1), sizeof(*res));
		for (int i = 0; res && i < n; i++) {
			struct mm_view rv, cv;
			mm_view_of(idx, q.requester, &rv);
			mm_view_of(idx, hits[i].org, &cv);
			size_t nr;
			struct mm_reason *r = malloc((q.nsought + cv.nseeks + 1) * sizeof(*r));
			res[i].hit = hits[i];
			res[i].reasons = json_array();
			if (r) {
				res[i].hit.score = mm_score_pair(idx, &mm->params, &rv, q.sought,
				                                 q.nsought, &cv, r, &nr);
				mm_reasons_json(idx, r, nr, rv.kind, cv.kind, res[i].reasons);
			}
			free(r);
		}
		if (!res)
			n = -1;
	}
	double took = mm_elapsed_ms(t0);
	if (n < 0) {
		free(res);
		query_free(&q);
		api->reply_problem(req, 503, NULL, "out of memory", NULL);
		return;
	}
	json_t *results = json_array();
	for (int i = 0; i < n; i++) {
		json_t *one =
		    json_pack("{s:o, s:f}", "organization", mm_org_json(idx, res[i].hit.org),
		              "score", res[i].hit.score);
		if (q.explain)
			json_object_set(one, "reasons", res[i].reasons);
		json_decref(res[i].reasons);
		json_array_append_new(results, one);
	}
	free(res);
	json_t *request = query_json(idx, &q);
	json_t *reply =
	    json_pack("{s:s, s:s, s:O, s:O, s:f, s:b, s:I, s:o}", "org", q.org, "scorer",
	              q.scorer ? q.scorer : "builtin", "topics", json_object_get(request, "topics"),
	              "request", request, "took_ms", took, "exact", st.exact, "candidates",
	              (json_int_t)st.candidates, "results", results);
	char *req_text = json_dumps(request, JSON_COMPACT);
	char *res_text = json_dumps(results, JSON_COMPACT);
	char *body_text = key ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(request);
	query_free(&q);
	struct store *s = malloc(sizeof(*s));
	if (!s || !req_text || !res_text || !reply || (key && !body_text)) {
		free(s);
		free(req_text);
		free(res_text);
		free(body_text);
		json_decref(reply);
		api->reply_problem(req, 503, NULL, "out of memory", NULL);
		return;
	}
	*s = (struct store){ mm, req, reply };
	char mine[MM_ID_LEN + 1];
	const char *params[] = { json_string_value(json_object_get(reply, "org")),
		                 mm_uuid_canon(who->user_id, mine) ? mine : NULL,
		                 json_string_value(json_object_get(reply, "scorer")),
		                 req_text,
		                 res_text,
		                 key,
		                 body_text };
	int rc = api->db_query_prepared(
	    mm->plugin, "match_insert",
	    "INSERT INTO matchmaking_matches (org_id, user_id, scorer, request, results, "
	    "idempotency_key, fingerprint) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, md5($7)) "
	    "RETURNING id::text, " MM_TS("created_at"),
	    7, params, stored, s);
	free(req_text);
	free(res_text);
	free(body_text);
	if (rc < 0) {
		json_decref(reply);
		free(s);
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

/* ---- Idempotency-Key: a retried request gets the stored answer ---- */

struct replay {
	struct mm *mm;
	struct sp_request *req;
	char *key;
};

static void replay_loaded(const struct sp_db_result *res, void *arg)
{
	struct replay *rp = arg;
	const struct sp_api *api = rp->mm->api;
	if (!api->db_ok(res)) {
		api->reply_db_error(rp->req, res);
	} else if (api->db_ntuples(res) == 0) {
		compute_and_store(rp->req, rp->mm, rp->key);
	} else {
		json_t *row = api->db_row_json(res, 0);
		bool same = json_is_true(json_object_get(row, "same"));
		json_object_del(row, "same");
		if (!same) {
			json_decref(row);
			api->reply_problem(rp->req, 422, "Idempotency-Key reused",
			                   "this Idempotency-Key was used for a different request",
			                   json_pack("{s:s}", "Idempotency-Key",
			                             "already used with another body"));
		} else {
			json_object_set_new(row, "replayed", json_true());
			api->reply_json(rp->req, 200, row);
		}
	}
	free(rp->key);
	free(rp);
}

static void post_matches(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	const struct sp_api *api = mm->api;
	const struct sp_principal *who = api->req_principal(req);
	json_t *body = api->req_json(req);
	if (!body)
		return;
	if (!mm->idx) {
		mm_park(mm, req, post_matches);
		return;
	}
	const char *key;
	char user[MM_ID_LEN + 1];
	if (!mm_idempotency_key(mm, req, &key))
		return;
	if (!key || !mm_uuid_canon(who->user_id, user)) {
		compute_and_store(req, mm, NULL);
		return;
	}
	struct replay *rp = calloc(1, sizeof(*rp));
	char *body_text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	size_t n = strlen(key) + 1;
	if (rp)
		rp->key = malloc(n);
	if (!rp || !rp->key || !body_text) {
		if (rp)
			free(rp->key);
		free(rp);
		free(body_text);
		api->reply_problem(req, 503, NULL, "out of memory", NULL);
		return;
	}
	memcpy(rp->key, key, n);
	rp->mm = mm;
	rp->req = req;
	const char *params[] = { user, key, body_text };
	int rc = api->db_query_prepared(
	    mm->plugin, "match_replay",
	    "SELECT id::text AS id, org_id::text AS org, scorer, request->'topics' AS topics, "
	    "request, " MM_TS("created_at") " AS created_at, results, fingerprint = md5($3) AS "
	                                    "same FROM matchmaking_matches WHERE user_id = "
	                                    "$1::uuid AND idempotency_key = $2",
	    3, params, replay_loaded, rp);
	free(body_text);
	if (rc < 0) {
		free(rp->key);
		free(rp);
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

/* ---- history ---- */

struct lookup {
	struct mm *mm;
	struct sp_request *req;
	int limit;
};

static void match_loaded(const struct sp_db_result *res, void *arg)
{
	struct lookup *lk = arg;
	const struct sp_api *api = lk->mm->api;
	struct sp_request *req = lk->req;
	free(lk);
	if (!api->db_ok(res)) {
		api->reply_db_error(req, res);
		return;
	}
	json_t *row = api->db_ntuples(res) ? api->db_row_json(res, 0) : NULL;
	const struct sp_principal *who = api->req_principal(req);
	const char *org = json_string_value(json_object_get(row, "org"));
	if (!row || !org || !may_act_for(who, org)) {
		json_decref(row);
		api->reply_problem(req, 404, NULL, "no such match", NULL);
		return;
	}
	api->reply_json(req, 200, row);
}

static void get_match(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	const struct sp_api *api = mm->api;
	char id[MM_ID_LEN + 1];
	if (!mm_uuid_canon(api->req_param(req, "id"), id)) {
		api->reply_problem(req, 404, NULL, "no such match", NULL);
		return;
	}
	struct lookup *lk = malloc(sizeof(*lk));
	if (!lk) {
		api->reply_problem(req, 503, NULL, "out of memory", NULL);
		return;
	}
	*lk = (struct lookup){ mm, req, 0 };
	const char *params[] = { id };
	if (api->db_query_prepared(
	        mm->plugin, "match_get",
	        "SELECT id::text AS id, org_id::text AS org, user_id::text AS "
	        "user_id, scorer, request, " MM_TS(
	            "created_at") " AS "
	                          "created_at, results FROM matchmaking_matches WHERE id = $1",
	        1, params, match_loaded, lk) < 0) {
		free(lk);
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

static void list_loaded(const struct sp_db_result *res, void *arg)
{
	struct lookup *lk = arg;
	const struct sp_api *api = lk->mm->api;
	struct sp_request *req = lk->req;
	int limit = lk->limit;
	free(lk);
	if (!api->db_ok(res)) {
		api->reply_db_error(req, res);
		return;
	}
	json_t *items = api->db_rows_json(res);
	json_t *next = json_null();
	if ((int)json_array_size(items) > limit) {
		json_array_remove(items, (size_t)limit);
		json_t *last = json_array_get(items, (size_t)limit - 1);
		next = json_sprintf("%" JSON_INTEGER_FORMAT,
		                    json_integer_value(json_object_get(last, "seq")));
	}
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
	{
		json_object_del(it, "seq");
	}
	api->reply_json(req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

static void list_matches(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	const struct sp_api *api = mm->api;
	const struct sp_principal *who = api->req_principal(req);
	const char *org_q = api->req_query(req, "org");
	char org[MM_ID_LEN + 1] = "", cursor[24], lim[16];
	int limit;
	if (org_q && !mm_uuid_canon(org_q, org)) {
		api->reply_problem(req, 400, "Bad query parameter",
		                   "org must be an organisation id", NULL);
		return;
	}
	if (org[0] && !may_act_for(who, org)) {
		api->reply_problem(req, 403, NULL,
		                   "you may only see the matches of your own organisation", NULL);
		return;
	}
	if (!org[0] && !who->is_admin) {
		if (!who->org_id || !mm_uuid_canon(who->org_id, org)) {
			api->reply_json(req, 200, json_pack("{s:[], s:n}", "items", "next_cursor"));
			return;
		}
	}
	if (!mm_page_params(mm, req, 20, 100, &limit, cursor, sizeof(cursor)))
		return;
	struct lookup *lk = malloc(sizeof(*lk));
	if (!lk) {
		api->reply_problem(req, 503, NULL, "out of memory", NULL);
		return;
	}
	*lk = (struct lookup){ mm, req, limit };
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *params[] = { org[0] ? org : NULL, cursor[0] ? cursor : NULL, lim };
	if (api->db_query_prepared(
	        mm->plugin, "match_list",
	        "SELECT id::text AS id, org_id::text AS org, scorer, request->'topics' AS topics, "
	        "jsonb_array_length(results) AS count, " MM_TS(
	            "created_at") " AS created_at, seq "
	                          "FROM matchmaking_matches WHERE ($1::uuid IS NULL OR org_id = "
	                          "$1::uuid) AND "
	                          "($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC "
	                          "LIMIT $3::int",
	        3, params, list_loaded, lk) < 0) {
		free(lk);
		api->reply_problem(req, 503, NULL, "the database is unavailable", NULL);
	}
}

#define RESULT_SCHEMA                                                                              \
	"{\"type\":\"object\",\"required\":[\"organization\",\"score\"],\"properties\":{"          \
	"\"organization\":{\"type\":\"object\"},\"score\":{\"type\":\"number\",\"minimum\":0,"     \
	"\"maximum\":1},\"reasons\":{\"type\":\"array\",\"items\":{\"type\":\"object\","           \
	"\"required\":[\"relation\",\"contribution\"]}}}}"

static const struct sp_route routes[] = {
	{ "POST", "/v1/matches", SP_ACCESS_USER, post_matches,
	  "Ranked, explained partner organisations for an organisation (stored in its history; "
	  "honours Idempotency-Key)",
	  "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
	  "\"org\":{\"type\":\"string\",\"format\":\"uuid\"},"
	  "\"topics\":{\"type\":\"array\",\"maxItems\":50,\"items\":{\"oneOf\":[{\"type\":"
	  "\"string\"},{\"type\":\"object\",\"required\":[\"topic\"],\"properties\":{\"topic\":{"
	  "\"type\":\"string\"},\"level\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3}}}]}},"
	  "\"kinds\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	  "\"countries\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	  "\"regions\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	  "\"exclude\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	  "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100},"
	  "\"explain\":{\"type\":\"boolean\"},\"scorer\":{\"type\":\"string\"}}}",
	  "{\"type\":\"object\",\"required\":[\"id\",\"results\"],\"properties\":{"
	  "\"id\":{\"type\":\"string\"},\"took_ms\":{\"type\":\"number\"},"
	  "\"results\":{\"type\":\"array\",\"items\":" RESULT_SCHEMA "}}}" },
	{ "GET", "/v1/matches/{id}", SP_ACCESS_USER, get_match,
	  "One stored match request with its results", NULL,
	  "{\"type\":\"object\",\"required\":[\"id\",\"org\",\"results\"]}" },
	{ "GET", "/v1/matches", SP_ACCESS_USER, list_matches,
	  "History of match requests (?org=, newest first, cursor pagination)", NULL,
	  "{\"type\":\"object\",\"required\":[\"items\",\"next_cursor\"]}" },
};

int mm_matches_init(struct mm *mm)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (mm->api->route_add(mm->plugin, &routes[i]) < 0)
			return -1;
	return 0;
}
