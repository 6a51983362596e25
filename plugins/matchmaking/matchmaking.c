/* matchmaking.c — the matchmaking plugin: settings, the in-memory index (built from
 * PostgreSQL at start, kept fresh from bus events of every instance, rebuilt on taxonomy
 * changes and periodically), the built-in scorer's registration, and GET
 * /v1/matchmaking/index. Matches, introductions and consortia have their own files. */
#include "mm_plugin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARKED  4096
#define MAX_JOURNAL 200000

extern const struct sp_migration mm_migrations[]; /* generated from sql/ (sql2c) */

/* ---- small helpers shared by the plugin's files ---- */

struct timespec mm_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t;
}

double mm_elapsed_ms(struct timespec t0)
{
	struct timespec t = mm_now();
	return (double)(t.tv_sec - t0.tv_sec) * 1e3 + (double)(t.tv_nsec - t0.tv_nsec) / 1e6;
}

size_t mm_utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

void mm_error(json_t *errors, const char *field, const char *msg)
{
	if (!json_object_get(errors, field))
		json_object_set_new(errors, field, json_string(msg));
}

void mm_unknown_fields(json_t *body, const char *const *allowed, json_t *errors)
{
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v)
	{
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(*a, key) == 0;
		if (!known)
			mm_error(errors, key, "unknown field");
	}
}

bool mm_page_params(struct mm *mm, struct sp_request *req, int def, int max, int *limit,
                    char *cursor, size_t cursor_len)
{
	const char *l = mm->api->req_query(req, "limit");
	const char *c = mm->api->req_query(req, "cursor");
	*limit = def;
	cursor[0] = '\0';
	if (l) {
		char *end;
		long v = strtol(l, &end, 10);
		if (!*l || *end || v < 1 || v > max) {
			char msg[64];
			snprintf(msg, sizeof(msg), "limit must be an integer from 1 to %d", max);
			mm->api->reply_problem(req, 400, "Bad query parameter", msg, NULL);
			return false;
		}
		*limit = (int)v;
	}
	if (c) {
		size_t n = strlen(c);
		bool ok = n >= 1 && n < cursor_len && n <= 18;
		for (size_t i = 0; ok && i < n; i++)
			ok = c[i] >= '0' && c[i] <= '9';
		if (!ok) {
			mm->api->reply_problem(req, 400, "Bad query parameter",
			                       "cursor must be a value from next_cursor", NULL);
			return false;
		}
		memcpy(cursor, c, n + 1);
	}
	return true;
}

bool mm_idempotency_key(struct mm *mm, struct sp_request *req, const char **key)
{
	const char *k = mm->api->req_header(req, "Idempotency-Key");
	size_t n = k ? strlen(k) : 0;
	bool ok = !k || (n >= 1 && n <= 200);
	for (size_t i = 0; ok && i < n; i++)
		ok = k[i] > 0x20 && k[i] < 0x7f;
	if (!ok) {
		mm->api->reply_problem(req, 400, "Bad Idempotency-Key",
		                       "Idempotency-Key must be 1 to 200 visible ASCII characters",
		                       NULL);
		return false;
	}
	*key = k;
	return true;
}

json_t *mm_org_json(const struct mm_index *idx, uint32_t slot)
{
	const struct mm_org *o = &idx->orgs[slot];
	return json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "id", o->id, "name", o->name, "kind",
	                 mm_kind_names[o->kind], "country", o->country[0] ? o->country : NULL,
	                 "region", o->region);
}

void mm_park(struct mm *mm, struct sp_request *req, sp_route_fn *fn)
{
	if (mm->nparked == MAX_PARKED) {
		mm->api->reply_problem(req, 503, NULL, "the matchmaking index is being built",
		                       NULL);
		return;
	}
	if (mm->nparked == mm->capparked) {
		size_t cap = mm->capparked ? mm->capparked * 2 : 16;
		struct mm_parked *p = realloc(mm->parked, cap * sizeof(*p));
		if (!p) {
			mm->api->reply_problem(req, 503, NULL, "out of memory", NULL);
			return;
		}
		mm->parked = p;
		mm->capparked = cap;
	}
	mm->parked[mm->nparked++] = (struct mm_parked){ req, fn };
}

/* Runs (index ready) or refuses (build failed) the parked requests. */
static void unpark(struct mm *mm)
{
	size_t n = mm->nparked;
	struct mm_parked *p = mm->parked;
	mm->parked = NULL;
	mm->nparked = mm->capparked = 0;
	for (size_t i = 0; i < n; i++) {
		if (mm->idx)
			p[i].fn(p[i].req, mm);
		else
			mm->api->reply_problem(p[i].req, 503, NULL,
			                       "the matchmaking index could not be built; retry "
			                       "shortly",
			                       NULL);
	}
	free(p);
}

/* ---- settings ---- */

static double num(const json_t *settings, const char *name)
{
	return json_number_value(json_object_get(settings, name));
}

static long integer(const json_t *settings, const char *name)
{
	return (long)json_integer_value(json_object_get(settings, name));
}

/* Reads settings into p and mm's fields; false (message logged) when they do not make
 * sense together. Nothing is changed then. */
static bool apply_settings(struct mm *mm, const json_t *s, bool strict)
{
	struct mm_params p;
	mm_params_default(&p);
	p.gamma = num(s, "gamma");
	p.max_distance = (int)integer(s, "max_distance");
	p.max_candidates = (uint32_t)integer(s, "max_candidates");
	mm_params_update(&p);
	if (!mm_params_set_weights(&p, num(s, "weight_topics"), num(s, "weight_kinds"),
	                           num(s, "weight_reciprocity"))) {
		mm->api->log(mm->plugin, SP_LOG_WARN, "the three weights must not all be 0");
		return false;
	}
	char err[200];
	const char *km = json_string_value(json_object_get(s, "kind_matrix"));
	if (!mm_params_kind_matrix(&p, km, err, sizeof(err))) {
		mm->api->log(mm->plugin, SP_LOG_WARN, "%s", err);
		if (strict)
			return false;
		mm_params_kind_matrix(&p, NULL, err, sizeof(err));
		mm->api->log(mm->plugin, SP_LOG_WARN, "using the default kind table");
	}
	mm->params = p;
	mm->scorer_candidates = integer(s, "scorer_candidates");
	mm->intro_per_day = integer(s, "introductions_per_day");
	mm->cons_per_topic = integer(s, "consortium_candidates");
	mm->cons_lambda = num(s, "consortium_lambda");
	mm->cons_mu = num(s, "consortium_mu");
	mm->cons_budget = integer(s, "consortium_node_budget");
	mm->refresh_s = integer(s, "refresh_s");
	return true;
}

static void start_build(struct mm *mm);

static void refresh_fire(void *arg)
{
	start_build(arg);
}

static void arm_refresh(struct mm *mm)
{
	if (mm->refresh)
		mm->api->timer_cancel(mm->refresh);
	mm->refresh = NULL;
	if (mm->refresh_s > 0)
		mm->refresh = mm->api->timer_add(mm->plugin, (unsigned)mm->refresh_s * 1000u, true,
		                                 refresh_fire, mm);
}

/* ---- index builds ---- */

struct mm_build {
	struct mm *mm;
	struct mm_index *idx;
	bool failed;
	char err[160];
	struct timespec t0;
	/* the profile being gathered (rows come ordered by organisation) */
	uint32_t slot;
	char org[MM_ID_LEN + 1];
	struct mm_entry *offers, *seeks;
	size_t noffers, nseeks, capoffers, capseeks;
	unsigned long long rows;
};

static void build_fail(struct mm_build *b, const char *why)
{
	if (!b->failed)
		snprintf(b->err, sizeof(b->err), "%s", why);
	b->failed = true;
}

static void build_topics(const struct sp_db_result *res, void *arg)
{
	struct mm_build *b = arg;
	const struct sp_api *api = b->mm->api;
	int n = api->db_ntuples(res);
	for (int i = 0; i < n && !b->failed; i++)
		if (mm_index_add_topic(b->idx, api->db_value(res, i, 0), api->db_value(res, i, 1),
		                       api->db_value(res, i, 2)) < 0)
			build_fail(b, "a topic could not be added");
	if (!b->failed && mm_index_finish_topics(b->idx, b->err, sizeof(b->err)) < 0)
		b->failed = true;
}

static void build_orgs(const struct sp_db_result *res, void *arg)
{
	struct mm_build *b = arg;
	const struct sp_api *api = b->mm->api;
	if (b->failed)
		return;
	int n = api->db_ntuples(res);
	for (int i = 0; i < n; i++) {
		int kind = mm_kind_from_name(api->db_value(res, i, 2));
		if (mm_index_put_org(b->idx, api->db_value(res, i, 0), api->db_value(res, i, 1),
		                     kind, api->db_value(res, i, 3),
		                     api->db_value(res, i, 4)) == MM_NONE) {
			build_fail(b, "an organisation could not be added");
			return;
		}
	}
}

static void flush_profile(struct mm_build *b)
{
	if (b->slot != MM_NONE &&
	    mm_index_set_profile(b->idx, b->slot, b->offers, b->noffers, b->seeks, b->nseeks) < 0)
		build_fail(b, "out of memory");
	b->noffers = b->nseeks = 0;
	b->slot = MM_NONE;
}

static bool push_entry(struct mm_entry **a, size_t *n, size_t *cap, struct mm_entry e)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct mm_entry *p = realloc(*a, c * sizeof(*p));
		if (!p)
			return false;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = e;
	return true;
}

static void build_profiles(const struct sp_db_result *res, void *arg)
{
	struct mm_build *b = arg;
	const struct sp_api *api = b->mm->api;
	if (b->failed)
		return;
	int n = api->db_ntuples(res);
	b->slot = MM_NONE;
	b->org[0] = '\0';
	for (int i = 0; i < n && !b->failed; i++) {
		const char *org = api->db_value(res, i, 0);
		if (strcmp(org, b->org) != 0) {
			flush_profile(b);
			snprintf(b->org, sizeof(b->org), "%s", org);
			b->slot = mm_index_org(b->idx, org);
		}
		uint32_t t = mm_index_topic_by_id(b->idx, api->db_value(res, i, 2));
		int level = atoi(api->db_value(res, i, 3));
		if (b->slot == MM_NONE || t == MM_NONE)
			continue; /* not in this snapshot (cannot happen in one transaction) */
		struct mm_entry e = { t, (uint8_t)level };
		bool offers = strcmp(api->db_value(res, i, 1), "offers") == 0;
		if (!(offers ? push_entry(&b->offers, &b->noffers, &b->capoffers, e)
		             : push_entry(&b->seeks, &b->nseeks, &b->capseeks, e)))
			build_fail(b, "out of memory");
	}
	flush_profile(b);
	b->rows = (unsigned long long)n;
}

static void build_body(struct sp_db_tx *tx, void *arg)
{
	struct mm_build *b = arg;
	const struct sp_api *api = b->mm->api;
	/* A retried transaction starts over. */
	mm_index_free(b->idx);
	b->idx = mm_index_new();
	b->failed = false;
	b->err[0] = '\0';
	if (!b->idx) {
		build_fail(b, "out of memory");
		api->db_tx_rollback(tx);
		return;
	}
	if (api->db_tx_query(tx, "SELECT id, slug, parent_id FROM sp_topics ORDER BY slug", 0, NULL,
	                     build_topics, b) < 0 ||
	    api->db_tx_query(tx,
	                     "SELECT id, name, kind, country, region FROM sp_organizations "
	                     "ORDER BY id",
	                     0, NULL, build_orgs, b) < 0 ||
	    api->db_tx_query(tx,
	                     "SELECT org_id, relation, topic_id, level FROM sp_org_topics ORDER "
	                     "BY org_id",
	                     0, NULL, build_profiles, b) < 0) {
		build_fail(b, "the queries could not be queued");
		api->db_tx_rollback(tx);
		return;
	}
	api->db_tx_commit(tx);
}

enum apply_result { APPLIED, IGNORED, NEEDS_BUILD };

/* Applies one bus event to an index. Events carry the full new state of what they
 * describe, so applying one twice, or after a snapshot that already has it, is harmless. */
static enum apply_result apply_event(struct mm_index *idx, const char *type, json_t *data)
{
	const char *id = json_string_value(json_object_get(data, "id"));
	if (!id)
		return IGNORED;
	if (!strcmp(type, "org.created") || !strcmp(type, "org.updated")) {
		int kind = mm_kind_from_name(json_string_value(json_object_get(data, "kind")));
		const char *name = json_string_value(json_object_get(data, "name"));
		if (kind < 0 || !name)
			return NEEDS_BUILD;
		if (mm_index_put_org(idx, id, name, kind,
		                     json_string_value(json_object_get(data, "country")),
		                     json_string_value(json_object_get(data, "region"))) == MM_NONE)
			return NEEDS_BUILD;
		return APPLIED;
	}
	if (!strcmp(type, "org.deleted"))
		return mm_index_remove_org(idx, id) ? APPLIED : IGNORED;
	if (!strcmp(type, "org.topics_changed")) {
		json_t *profile = json_object_get(data, "profile");
		uint32_t slot = mm_index_org(idx, id);
		if (slot == MM_NONE || !json_is_object(profile))
			return NEEDS_BUILD;
		enum apply_result r = APPLIED;
		json_t *lists[2] = { json_object_get(profile, "offers"),
			             json_object_get(profile, "seeks") };
		size_t n0 = json_array_size(lists[0]), n1 = json_array_size(lists[1]);
		struct mm_entry *e = malloc((n0 + n1 + 1) * sizeof(*e));
		if (!e)
			return NEEDS_BUILD;
		size_t k[2] = { 0, 0 };
		for (int l = 0; l < 2; l++) {
			size_t i;
			json_t *item;
			json_array_foreach(lists[l], i, item)
			{
				uint32_t t = mm_index_topic_by_slug(
				    idx, json_string_value(json_object_get(item, "topic")));
				json_int_t level =
				    json_integer_value(json_object_get(item, "level"));
				if (t == MM_NONE) {
					r = NEEDS_BUILD; /* a topic this index does not know yet */
					continue;
				}
				e[(l ? n0 : 0) + k[l]++] = (struct mm_entry){ t, (uint8_t)level };
			}
		}
		if (mm_index_set_profile(idx, slot, e, k[0], e + n0, k[1]) < 0)
			r = NEEDS_BUILD;
		free(e);
		return r;
	}
	return IGNORED;
}

static void update_gauges(struct mm *mm)
{
	const struct sp_api *api = mm->api;
	if (!mm->idx)
		return;
	api->metric_set(mm->m_orgs, mm->idx->nalive);
	api->metric_set(mm->m_bytes, (double)mm_index_memory(mm->idx));
}

static void retry_fire(void *arg)
{
	struct mm *mm = arg;
	mm->retry = NULL; /* a fired one-shot timer is gone */
	start_build(mm);
}

static void build_done(const struct sp_db_result *err, void *arg)
{
	struct mm_build *b = arg;
	struct mm *mm = b->mm;
	const struct sp_api *api = mm->api;
	mm->build = NULL;
	json_t *journal = mm->journal;
	mm->journal = NULL;
	if (err || b->failed) {
		mm->failures++;
		api->log(mm->plugin, SP_LOG_WARN, "the matchmaking index could not be built (%s)%s",
		         err ? api->db_sqlstate(err) : b->err,
		         mm->idx ? "; the previous one keeps serving" : "");
		mm_index_free(b->idx);
		if (!mm->idx)
			unpark(mm); /* 503 to whoever waited */
		if (!mm->retry) {
			unsigned delay = mm->failures < 5 ? 1000u << (mm->failures - 1) : 30000u;
			mm->retry = api->timer_add(mm->plugin, delay, false, retry_fire, mm);
		}
	} else {
		/* Events that arrived while the snapshot was read: apply them again. */
		size_t i;
		json_t *ev;
		json_array_foreach(journal, i, ev)
		{
			apply_event(b->idx, json_string_value(json_array_get(ev, 0)),
			            json_array_get(ev, 1));
		}
		/* Neighbouring slots for organisations of one area: faster queries (on
		 * failure the index merely stays as it is). */
		mm_index_compact(b->idx);
		struct mm_index *old = mm->idx;
		mm->idx = b->idx;
		mm_index_free(old);
		mm->failures = 0;
		mm->generation++;
		mm->build_ms = mm_elapsed_ms(b->t0);
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(mm->built_at, sizeof(mm->built_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
		api->metric_add(mm->m_builds, 1);
		update_gauges(mm);
		api->log(mm->plugin, SP_LOG_INFO,
		         "index built: %u organisations, %u topics, %llu profile rows, %.1f MB, "
		         "%.0f ms",
		         mm->idx->nalive, mm->idx->ntopics, b->rows,
		         (double)mm_index_memory(mm->idx) / 1048576.0, mm->build_ms);
		unpark(mm);
	}
	json_decref(journal);
	free(b->offers);
	free(b->seeks);
	free(b);
	if (mm->build_again && !mm->retry) {
		mm->build_again = false;
		start_build(mm);
	}
}

static void start_build(struct mm *mm)
{
	const struct sp_api *api = mm->api;
	if (mm->build) {
		mm->build_again = true;
		return;
	}
	struct mm_build *b = calloc(1, sizeof(*b));
	json_t *journal = json_array();
	if (!b || !journal) {
		free(b);
		json_decref(journal);
		return;
	}
	b->mm = mm;
	b->slot = MM_NONE;
	b->t0 = mm_now();
	mm->build = b;
	mm->journal = journal;
	if (api->db_tx(mm->plugin, "REPEATABLE READ", 3, build_body, build_done, b) < 0) {
		mm->build = NULL;
		mm->journal = NULL;
		json_decref(journal);
		free(b);
		api->log(mm->plugin, SP_LOG_WARN, "cannot start an index build; retrying");
		if (!mm->idx)
			unpark(mm);
		if (!mm->retry)
			mm->retry = api->timer_add(mm->plugin, 1000, false, retry_fire, mm);
	}
}

static void debounce_fire(void *arg)
{
	struct mm *mm = arg;
	mm->debounce = NULL;
	start_build(mm);
}

/* A rebuild soon, coalescing bursts (a taxonomy edit often comes with several). */
static void want_build(struct mm *mm)
{
	if (!mm->debounce)
		mm->debounce = mm->api->timer_add(mm->plugin, 100, false, debounce_fire, mm);
}

/* Bus events from this and every other instance (through NOTIFY). data is borrowed. */
static void on_event(const char *type, json_t *data, void *arg)
{
	struct mm *mm = arg;
	mm->events++;
	mm->api->metric_add(mm->m_events, 1);
	if (!strncmp(type, "topic.", 6)) {
		want_build(mm);
		return;
	}
	if (mm->build && mm->journal) {
		if (json_array_size(mm->journal) >= MAX_JOURNAL) {
			mm->build_again = true; /* too many: the next snapshot will have them */
		} else {
			json_array_append_new(mm->journal,
			                      json_pack("[s, o]", type, json_deep_copy(data)));
		}
	}
	if (!mm->idx)
		return;
	switch (apply_event(mm->idx, type, data)) {
	case APPLIED:
		mm->events_applied++;
		update_gauges(mm);
		break;
	case NEEDS_BUILD:
		want_build(mm);
		break;
	case IGNORED:
		break;
	}
}

/* ---- GET /v1/matchmaking/index ---- */

static void get_index(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	struct mm_index *idx = mm->idx;
	size_t bytes = idx ? mm_index_memory(idx) : 0;
	unsigned long long postings = 0;
	for (uint32_t t = 0; idx && t < idx->ntopics; t++)
		postings += idx->topics[t].npost;
	mm->api->reply_json(
	    req, 200,
	    json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:s?, s:I, s:I, s:f}", "ready",
	              idx != NULL, "building", mm->build != NULL, "generation",
	              (json_int_t)mm->generation, "organizations",
	              (json_int_t)(idx ? idx->nalive : 0), "topics",
	              (json_int_t)(idx ? idx->ntopics : 0), "postings", (json_int_t)postings,
	              "memory_bytes", (json_int_t)bytes, "bytes_per_organization",
	              idx && idx->nalive ? (double)bytes / idx->nalive : 0.0, "built_at",
	              mm->built_at[0] ? mm->built_at : NULL, "events", (json_int_t)mm->events,
	              "events_applied", (json_int_t)mm->events_applied, "build_ms", mm->build_ms));
}

/* ---- lifecycle ---- */

static const struct sp_route routes[] = {
	{ "GET", "/v1/matchmaking/index", SP_ACCESS_ADMIN, get_index,
	  "State of this process's matchmaking index (size, memory, freshness)", NULL,
	  "{\"type\":\"object\",\"properties\":{\"ready\":{\"type\":\"boolean\"},"
	  "\"organizations\":{\"type\":\"integer\"},\"memory_bytes\":{\"type\":\"number\"}}}" },
};

static void free_state(struct mm *mm)
{
	mm_index_free(mm->idx);
	json_decref(mm->journal);
	free(mm->parked);
	free(mm);
}

static int mm_init(const struct sp_api *api, struct sp_plugin *plugin, const json_t *settings,
                   void **state)
{
	if (!MM_HAS_API(api, req_principal)) {
		api->log(plugin, SP_LOG_ERROR, "this core lacks req_principal: upgrade spearhead");
		return -1;
	}
	struct mm *mm = calloc(1, sizeof(*mm));
	if (!mm) {
		api->log(plugin, SP_LOG_ERROR, "out of memory");
		return -1;
	}
	mm->api = api;
	mm->plugin = plugin;
	apply_settings(mm, settings, false);
	mm->builtin.idx = &mm->idx;
	mm->builtin.params = &mm->params;
	mm->m_orgs = api->metric_gauge(plugin, "index_organizations",
	                               "Organisations in this process's matchmaking index");
	mm->m_bytes = api->metric_gauge(plugin, "index_bytes", "Memory held by the index");
	mm->m_builds = api->metric_counter(plugin, "index_builds_total", "Index (re)builds");
	mm->m_events = api->metric_counter(plugin, "events_total", "Bus events received");
	mm->m_matches = api->metric_counter(plugin, "matches_total", "Match requests answered");
	mm->m_intros = api->metric_counter(plugin, "introductions_total", "Introductions asked");
	mm->m_consortia =
	    api->metric_counter(plugin, "consortia_total", "Consortium suggestions answered");
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (api->route_add(plugin, &routes[i]) < 0)
			goto fail;
	if (mm_matches_init(mm) < 0 || mm_intro_init(mm) < 0 || mm_consortia_init(mm) < 0)
		goto fail;
	if (api->bus_subscribe(plugin, "org.*", on_event, mm) < 0 ||
	    api->bus_subscribe(plugin, "topic.*", on_event, mm) < 0) {
		api->log(plugin, SP_LOG_ERROR, "cannot subscribe to the bus");
		goto fail;
	}
	if (MM_HAS_API(api, scorer_register)) {
		struct sp_scorer_ops ops = {
			.size = sizeof(struct sp_scorer_ops),
			.description = "Built-in: topic fit (levels, rarity, taxonomy partial "
			               "credit), kind complementarity, reciprocity",
			.score = mm_builtin_score,
			.state = &mm->builtin,
		};
		mm->builtin_registered = api->scorer_register(plugin, "builtin", &ops) == 0;
		if (!mm->builtin_registered)
			api->log(plugin, SP_LOG_WARN, "the scorer name 'builtin' is taken");
	}
	arm_refresh(mm);
	*state = mm;
	start_build(mm);
	return 0;
fail:
	free_state(mm);
	return -1;
}

static int mm_reload(void *state, const json_t *settings)
{
	struct mm *mm = state;
	long refresh = mm->refresh_s;
	if (!apply_settings(mm, settings, true))
		return -1;
	if (refresh != mm->refresh_s)
		arm_refresh(mm);
	mm->api->log(mm->plugin, SP_LOG_INFO, "settings applied");
	return 0;
}

static void mm_shutdown(void *state)
{
	struct mm *mm = state;
	/* The pool is closed before shutdown, so a build in flight has already ended;
	 * whoever still waits gets a 503. */
	if (mm->nparked) {
		struct mm_index *idx = mm->idx;
		mm->idx = NULL;
		unpark(mm);
		mm->idx = idx;
	}
	free_state(mm);
}

static const struct sp_setting settings[] = {
	{ "gamma", SP_SETTING_NUMBER, "0.5", 0.05, 0.95,
	  "Partial credit per taxonomy step: a parent or child counts gamma, a sibling gamma^2" },
	{ "max_distance", SP_SETTING_INT, "2", 0, 4,
	  "Farthest taxonomy distance that still counts (0 = exact topics only)" },
	{ "weight_topics", SP_SETTING_NUMBER, "0.5", 0.01, 1,
	  "Weight of the topic fit (the three weights are normalised to sum 1)" },
	{ "weight_kinds", SP_SETTING_NUMBER, "0.25", 0, 1,
	  "Weight of kind complementarity (scaled by the topic fit)" },
	{ "weight_reciprocity", SP_SETTING_NUMBER, "0.25", 0, 1,
	  "Weight of reciprocity: the candidate seeks what the requester offers" },
	{ "kind_matrix", SP_SETTING_STRING, "\"\"", 0, 4000,
	  "JSON overrides of the kind complementarity table, e.g. {\"sme\":{\"hospital\":1}}; "
	  "empty = the default table" },
	{ "max_candidates", SP_SETTING_INT, "2000", 10, 1000000,
	  "Candidates scored exactly at most per match request" },
	{ "scorer_candidates", SP_SETTING_INT, "300", 10, 5000,
	  "Candidates handed to a plugin scorer named in a match request" },
	{ "introductions_per_day", SP_SETTING_INT, "20", 1, 10000,
	  "Introduction requests one organisation may send per 24 hours" },
	{ "refresh_s", SP_SETTING_INT, "600", 0, 86400,
	  "Full index rebuild from PostgreSQL every refresh_s seconds, a safety net for missed "
	  "notifications (0 = never)" },
	{ "consortium_candidates", SP_SETTING_INT, "12", 2, 64,
	  "Best eligible organisations per topic considered for consortia" },
	{ "consortium_lambda", SP_SETTING_NUMBER, "0.3", 0, 10,
	  "Consortium objective: weight of the mean pairwise fit" },
	{ "consortium_mu", SP_SETTING_NUMBER, "0.02", 0, 1,
	  "Consortium objective: cost of each partner" },
	{ "consortium_node_budget", SP_SETTING_INT, "2000000", 1000, 100000000,
	  "Branch-and-bound nodes per consortium search before giving up proving optimality" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

SP_PLUGIN_DEFINE(matchmaking) = {
	SP_PLUGIN_DESC_HEADER,
	.name = "matchmaking",
	.version = "1.0.0",
	.description = "Partner matchmaking on topics, introductions, consortium suggestions",
	.settings = settings,
	.migrations = mm_migrations,
	.init = mm_init,
	.shutdown = mm_shutdown,
	.reload = mm_reload,
};
