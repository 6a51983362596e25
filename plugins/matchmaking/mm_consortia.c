/* mm_consortia.c — POST /v1/consortia: from the index, the best eligible organisations
 * per topic (and enough of each required kind), then branch and bound (mm_consortium.c)
 * for up to `limit` distinct consortia covering every topic under the rules. */
#include "mm_plugin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOPICS 20
#define MAX_POOL   400
#define MAX_REQS   12

/* Kind groups usable in required_kinds besides the kinds themselves. */
static const struct {
	const char *name;
	uint32_t mask;
} groups[] = {
	{ "research", (1u << MM_UNIVERSITY) | (1u << MM_RESEARCH_CENTRE) },
	{ "industry", (1u << MM_SME) | (1u << MM_LARGE_ENTERPRISE) },
	{ "clinical", (1u << MM_HOSPITAL) },
};

static uint32_t kind_mask_of(const char *name)
{
	int k = mm_kind_from_name(name);
	if (k >= 0)
		return 1u << k;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (!strcmp(groups[i].name, name))
			return groups[i].mask;
	return 0;
}

struct cquery {
	uint32_t topics[MAX_TOPICS];
	int ntopics;
	int min_size, max_size;
	struct mm_cons_req reqs[MAX_REQS];
	const char *req_names[MAX_REQS];
	int nreqs;
	char countries[50][3];
	int ncountries;
	uint32_t include[MM_CONS_MAX];
	int ninclude;
	uint32_t *exclude;
	size_t nexclude;
	int limit;
};

static bool eligible(const struct mm_index *idx, const struct cquery *q, uint32_t slot)
{
	const struct mm_org *o = &idx->orgs[slot];
	if (!o->alive)
		return false;
	if (q->ncountries) {
		bool any = false;
		for (int i = 0; i < q->ncountries && !any; i++)
			any = !strcmp(q->countries[i], o->country);
		if (!any)
			return false;
	}
	for (size_t i = 0; i < q->nexclude; i++)
		if (q->exclude[i] == slot)
			return false;
	return true;
}

/* How well org covers topic t: an offer of t or of a topic below it, gamma^(levels
 * below) * level weight; *via gets the offer. */
static double cover(const struct mm_index *idx, const struct mm_params *p, uint32_t slot,
                    uint32_t t, uint32_t *via)
{
	const struct mm_org *o = &idx->orgs[slot];
	double best = 0;
	*via = MM_NONE;
	for (uint16_t i = 0; i < o->noffers; i++) {
		uint32_t x = o->offers[i].topic;
		if (!mm_topic_is_ancestor_or_self(idx, t, x))
			continue;
		uint32_t d = idx->topics[x].depth - idx->topics[t].depth;
		double v = pow(p->gamma, (double)d) * p->level_weight[o->offers[i].level & 3];
		if (v > best) {
			best = v;
			*via = x;
		}
	}
	return best;
}

/* Fraction of a's seeks (by level weight) that b offers, with partial credit. */
static double seek_fit(const struct mm_index *idx, const struct mm_params *p, uint32_t a,
                       uint32_t b)
{
	const struct mm_org *x = &idx->orgs[a], *y = &idx->orgs[b];
	double num = 0, den = 0;
	for (uint16_t i = 0; i < x->nseeks; i++) {
		double w = p->level_weight[x->seeks[i].level & 3];
		den += w;
		num +=
		    w * mm_fit(idx, p, x->seeks[i].topic, y->offers, y->noffers, NULL, NULL, NULL);
	}
	return den > 0 ? num / den : 0;
}

struct pool {
	uint32_t *slot;
	int n, cap;
	double *total; /* per member: summed coverage of the call's topics */
};

static int pool_add(struct pool *pl, uint32_t slot)
{
	for (int i = 0; i < pl->n; i++)
		if (pl->slot[i] == slot)
			return i;
	if (pl->n == pl->cap)
		return -1;
	pl->slot[pl->n] = slot;
	return pl->n++;
}

/* Ranking of pool candidates: quality, then total coverage, then id. */
struct cand {
	uint32_t slot;
	double q, total;
};
static const struct mm_index *cand_idx;
static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->q != y->q)
		return x->q > y->q ? -1 : 1;
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(cand_idx->orgs[x->slot].id, cand_idx->orgs[y->slot].id);
}

/* Chooses the candidate pool. Returns its size, or -1 (out of memory). */
static int build_pool(struct mm *mm, const struct cquery *q, struct pool *pl)
{
	struct mm_index *idx = mm->idx;
	const struct mm_params *p = &mm->params;
	int per_topic = (int)mm->cons_per_topic;
	if (per_topic * q->ntopics > MAX_POOL / 2)
		per_topic = MAX_POOL / 2 / q->ntopics;
	/* Every eligible organisation offering a topic (or one below it), with its quality
	 * per topic; totals summed over topics. */
	struct cand **lists = calloc(q->ntopics, sizeof(*lists));
	int *nlist = calloc(q->ntopics, sizeof(int));
	struct cand *uni = NULL;
	size_t nuni = 0, capuni = 0;
	int rc = -1;
	if (!lists || !nlist)
		goto out;
	for (int i = 0; i < q->ntopics; i++) {
		uint32_t t = q->topics[i];
		/* The subtree of t, by walking down from it. */
		size_t capl = 64;
		lists[i] = malloc(capl * sizeof(struct cand));
		if (!lists[i])
			goto out;
		uint32_t *queue = idx->tqueue;
		uint32_t head = 0, tail = 0;
		uint32_t ep = mm_acc_epoch(idx, false);
		queue[tail++] = t;
		while (head < tail) {
			uint32_t v = queue[head++];
			const struct mm_topic *tp = &idx->topics[v];
			for (uint32_t c = 0; c < tp->nchildren; c++)
				queue[tail++] = idx->children[tp->first_child + c];
			for (uint32_t x = 0; x < tp->npost; x++) {
				uint32_t org = tp->post[x] >> 2;
				if (idx->rc[org].stamp == ep || !eligible(idx, q, org))
					continue; /* seen for this topic, or not eligible */
				idx->rc[org].stamp = ep;
				if ((size_t)nlist[i] == capl) {
					capl *= 2;
					struct cand *nl =
					    realloc(lists[i], capl * sizeof(struct cand));
					if (!nl)
						goto out;
					lists[i] = nl;
				}
				uint32_t via;
				lists[i][nlist[i]++] =
				    (struct cand){ org, cover(idx, p, org, t, &via), 0 };
			}
		}
	}
	/* Totals over all topics through the accumulator scratch. */
	uint32_t aep = mm_acc_epoch(idx, true);
	for (int i = 0; i < q->ntopics; i++)
		for (int j = 0; j < nlist[i]; j++) {
			uint32_t org = lists[i][j].slot;
			if (idx->sc[org].stamp != aep) {
				idx->sc[org].stamp = aep;
				idx->sc[org].val = 0;
				if (nuni == capuni) {
					capuni = capuni ? capuni * 2 : 256;
					struct cand *nu = realloc(uni, capuni * sizeof(*nu));
					if (!nu)
						goto out;
					uni = nu;
				}
				uni[nuni++].slot = org;
			}
			idx->sc[org].val += lists[i][j].q;
		}
	cand_idx = idx;
	for (int i = 0; i < q->ntopics; i++) {
		for (int j = 0; j < nlist[i]; j++)
			lists[i][j].total = idx->sc[lists[i][j].slot].val;
		qsort(lists[i], nlist[i], sizeof(struct cand), cand_cmp);
		for (int j = 0; j < nlist[i] && j < per_topic; j++)
			pool_add(pl, lists[i][j].slot);
	}
	/* Enough of each required kind: the best of the other coverers, then anyone. */
	for (size_t i = 0; i < nuni; i++) {
		uni[i].q = idx->sc[uni[i].slot].val;
		uni[i].total = 0;
	}
	qsort(uni, nuni, sizeof(*uni), cand_cmp);
	for (int r = 0; r < q->nreqs; r++) {
		int want = q->reqs[r].count + 3, have = 0;
		for (int i = 0; i < pl->n; i++)
			have += (q->reqs[r].kind_mask >> idx->orgs[pl->slot[i]].kind) & 1;
		for (size_t i = 0; i < nuni && have < want; i++)
			if ((q->reqs[r].kind_mask >> idx->orgs[uni[i].slot].kind) & 1) {
				int before = pl->n;
				if (pool_add(pl, uni[i].slot) == before)
					have++;
			}
		for (uint32_t s = 0; s < idx->norgs && have < want; s++)
			if (idx->orgs[s].alive &&
			    ((q->reqs[r].kind_mask >> idx->orgs[s].kind) & 1) &&
			    eligible(idx, q, s)) {
				int before = pl->n;
				if (pool_add(pl, s) == before)
					have++;
			}
	}
	for (int i = 0; i < q->ninclude; i++)
		if (pool_add(pl, q->include[i]) < 0)
			goto out;
	rc = pl->n;
out:
	for (int i = 0; lists && i < q->ntopics; i++)
		free(lists[i]);
	free(lists);
	free(nlist);
	free(uni);
	return rc;
}

static json_t *consortium_json(struct mm *mm, const struct cquery *q, const struct pool *pl,
                               const double *qm, const struct mm_cons_solution *s, int rank)
{
	const struct mm_index *idx = mm->idx;
	json_t *members = json_array(), *by_topic = json_array();
	for (int i = 0; i < s->n; i++) {
		int c = s->members[i];
		uint32_t slot = pl->slot[c];
		json_t *covers = json_array();
		for (int t = 0; t < q->ntopics; t++) {
			uint32_t via;
			double v = cover(idx, &mm->params, slot, q->topics[t], &via);
			if (v > 0)
				json_array_append_new(
				    covers, json_pack("{s:s, s:s, s:f}", "topic",
				                      idx->topics[q->topics[t]].slug, "via",
				                      idx->topics[via].slug, "quality", v));
		}
		bool included = false;
		for (int k = 0; k < q->ninclude; k++)
			included |= q->include[k] == slot;
		json_array_append_new(members, json_pack("{s:o, s:b, s:o}", "organization",
		                                         mm_org_json(idx, slot), "included",
		                                         included, "covers", covers));
	}
	for (int t = 0; t < q->ntopics; t++) {
		int best = -1;
		for (int i = 0; i < s->n; i++) {
			int c = s->members[i];
			if (qm[c * q->ntopics + t] > 0 &&
			    (best < 0 || qm[c * q->ntopics + t] > qm[best * q->ntopics + t]))
				best = c;
		}
		json_array_append_new(
		    by_topic,
		    json_pack("{s:s, s:s?, s:f}", "topic", idx->topics[q->topics[t]].slug,
		              "organization", best >= 0 ? idx->orgs[pl->slot[best]].id : NULL,
		              "quality", best >= 0 ? qm[best * q->ntopics + t] : 0.0));
	}
	return json_pack("{s:i, s:f, s:f, s:f, s:i, s:o, s:o}", "rank", rank, "objective",
	                 s->objective, "coverage", s->coverage, "pair_fit", s->pair_fit, "size",
	                 s->n, "members", members, "coverage_by_topic", by_topic);
}

static void parse(struct mm *mm, json_t *body, struct cquery *q, json_t *errors)
{
	const struct mm_index *idx = mm->idx;
	size_t i;
	json_t *item;
	json_t *topics = json_object_get(body, "topics");
	if (!json_is_array(topics) || json_array_size(topics) < 1 ||
	    json_array_size(topics) > MAX_TOPICS) {
		mm_error(errors, "topics", "must be an array of 1 to 20 topic slugs");
	} else {
		json_t *unknown = json_array();
		json_array_foreach(topics, i, item)
		{
			const char *slug = json_is_object(item)
			                       ? json_string_value(json_object_get(item, "topic"))
			                       : json_string_value(item);
			uint32_t t = slug ? mm_index_topic_by_slug(idx, slug) : MM_NONE;
			if (!slug) {
				mm_error(errors, "topics", "items must be topic slugs");
			} else if (t == MM_NONE) {
				json_array_append_new(unknown, json_string(slug));
			} else {
				bool dup = false;
				for (int j = 0; j < q->ntopics; j++)
					dup |= q->topics[j] == t;
				if (!dup)
					q->topics[q->ntopics++] = t;
			}
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
	json_t *rules = json_object_get(body, "rules");
	q->min_size = 2;
	q->max_size = 5;
	if (rules && !json_is_null(rules)) {
		if (!json_is_object(rules)) {
			mm_error(errors, "rules", "must be an object");
			rules = NULL;
		} else {
			static const char *const known[] = { "min_partners", "max_partners",
				                             "required_kinds", "countries", NULL };
			json_t *sub = json_object();
			mm_unknown_fields(rules, known, sub);
			const char *k;
			json_t *v;
			json_object_foreach(sub, k, v)
			{
				char field[96];
				snprintf(field, sizeof(field), "rules.%.80s", k);
				mm_error(errors, field, "unknown field");
			}
			json_decref(sub);
		}
	}
	json_t *jmin = json_object_get(rules, "min_partners");
	json_t *jmax = json_object_get(rules, "max_partners");
	if (jmin) {
		if (!json_is_integer(jmin) || json_integer_value(jmin) < 1 ||
		    json_integer_value(jmin) > MM_CONS_MAX)
			mm_error(errors, "rules.min_partners", "must be an integer from 1 to 8");
		else
			q->min_size = (int)json_integer_value(jmin);
	}
	if (jmax) {
		if (!json_is_integer(jmax) || json_integer_value(jmax) < 1 ||
		    json_integer_value(jmax) > MM_CONS_MAX)
			mm_error(errors, "rules.max_partners", "must be an integer from 1 to 8");
		else
			q->max_size = (int)json_integer_value(jmax);
	} else if (q->min_size > q->max_size) {
		q->max_size = q->min_size;
	}
	if (q->min_size > q->max_size)
		mm_error(errors, "rules.min_partners", "must not exceed max_partners");
	json_t *rk = json_object_get(rules, "required_kinds");
	if (rk) {
		const char *k;
		json_t *v;
		if (!json_is_object(rk))
			mm_error(errors, "rules.required_kinds", "must be an object kind → count");
		json_object_foreach(rk, k, v)
		{
			uint32_t mask = kind_mask_of(k);
			if (!mask) {
				mm_error(
				    errors, "rules.required_kinds",
				    "unknown kind (use an organisation kind, research, industry "
				    "or clinical)");
			} else if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			           json_integer_value(v) > MM_CONS_MAX) {
				mm_error(errors, "rules.required_kinds", "counts must be 0 to 8");
			} else if (json_integer_value(v) > q->max_size) {
				mm_error(errors, "rules.required_kinds",
				         "a count exceeds max_partners");
			} else if (q->nreqs < MAX_REQS && json_integer_value(v) > 0) {
				q->req_names[q->nreqs] = k;
				q->reqs[q->nreqs++] =
				    (struct mm_cons_req){ mask, (int)json_integer_value(v) };
			}
		}
	}
	json_t *countries = json_object_get(rules, "countries");
	if (countries && !json_is_null(countries)) {
		if (!json_is_array(countries) || json_array_size(countries) > 50)
			mm_error(errors, "rules.countries", "must be an array of country codes");
		json_array_foreach(countries, i, item)
		{
			const char *c = json_string_value(item);
			bool ok = c && strlen(c) == 2 && q->ncountries < 50;
			for (int j = 0; ok && j < 2; j++)
				ok = (c[j] >= 'A' && c[j] <= 'Z') || (c[j] >= 'a' && c[j] <= 'z');
			if (!ok) {
				mm_error(errors, "rules.countries",
				         "must be ISO 3166-1 alpha-2 codes, e.g. NL");
				break;
			}
			for (int j = 0; j < 2; j++)
				q->countries[q->ncountries][j] =
				    (char)(c[j] >= 'a' ? c[j] - 'a' + 'A' : c[j]);
			q->countries[q->ncountries++][2] = '\0';
		}
	}
	json_t *exclude = json_object_get(body, "exclude");
	if (exclude && !json_is_null(exclude)) {
		if (!json_is_array(exclude) || json_array_size(exclude) > 1000) {
			mm_error(errors, "exclude", "must be an array of organisation ids");
		} else {
			q->exclude = malloc((json_array_size(exclude) + 1) * sizeof(uint32_t));
			json_array_foreach(exclude, i, item)
			{
				char id[MM_ID_LEN + 1];
				if (!q->exclude || !mm_uuid_canon(json_string_value(item), id)) {
					mm_error(errors, "exclude", "must be organisation ids");
					break;
				}
				uint32_t s = mm_index_org(idx, id);
				if (s != MM_NONE)
					q->exclude[q->nexclude++] = s;
			}
		}
	}
	json_t *include = json_object_get(body, "include");
	if (include && !json_is_null(include)) {
		if (!json_is_array(include) || json_array_size(include) > MM_CONS_MAX) {
			mm_error(errors, "include",
			         "must be an array of at most 8 organisation ids");
		} else {
			json_t *unknown = json_array();
			json_array_foreach(include, i, item)
			{
				char id[MM_ID_LEN + 1];
				if (!mm_uuid_canon(json_string_value(item), id)) {
					mm_error(errors, "include", "must be organisation ids");
					break;
				}
				uint32_t s = mm_index_org(idx, id);
				if (s == MM_NONE) {
					json_array_append_new(unknown, json_string(id));
					continue;
				}
				if (!eligible(idx, q, s)) {
					char msg[160];
					snprintf(
					    msg, sizeof(msg),
					    "organisation %s is excluded or outside the allowed "
					    "countries",
					    id);
					mm_error(errors, "include", msg);
					continue;
				}
				bool dup = false;
				for (int j = 0; j < q->ninclude; j++)
					dup |= q->include[j] == s;
				if (!dup)
					q->include[q->ninclude++] = s;
			}
			if (json_array_size(unknown)) {
				char *list = json_dumps(unknown, JSON_COMPACT);
				char msg[500];
				snprintf(msg, sizeof(msg), "unknown organisations: %.460s",
				         list ? list : "");
				free(list);
				mm_error(errors, "include", msg);
			}
			json_decref(unknown);
			if (q->ninclude > q->max_size)
				mm_error(errors, "include", "more organisations than max_partners");
		}
	}
	json_t *limit = json_object_get(body, "limit");
	q->limit = 3;
	if (limit && !json_is_null(limit)) {
		if (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
		    json_integer_value(limit) > 10)
			mm_error(errors, "limit", "must be an integer from 1 to 10");
		else
			q->limit = (int)json_integer_value(limit);
	}
}

static void post_consortia(struct sp_request *req, void *state)
{
	struct mm *mm = state;
	const struct sp_api *api = mm->api;
	json_t *body = api->req_json(req);
	if (!body)
		return;
	if (!mm->idx) {
		mm_park(mm, req, post_consortia);
		return;
	}
	if (!json_is_object(body)) {
		api->reply_problem(req, 422, "Invalid request", "the body must be a JSON object",
		                   NULL);
		return;
	}
	struct mm_index *idx = mm->idx;
	static const char *const allowed[] = { "topics",  "rules", "include",
		                               "exclude", "limit", NULL };
	json_t *errors = json_object();
	mm_unknown_fields(body, allowed, errors);
	struct cquery q;
	memset(&q, 0, sizeof(q));
	parse(mm, body, &q, errors);
	if (json_object_size(errors)) {
		free(q.exclude);
		api->reply_problem(req, 422, "Invalid consortium request",
		                   "the body does not match the request schema", errors);
		return;
	}
	json_decref(errors);

	struct timespec t0 = mm_now();
	struct pool pl = { calloc(MAX_POOL + MM_CONS_MAX, sizeof(uint32_t)), 0,
		           MAX_POOL + MM_CONS_MAX, NULL };
	double *qm = NULL, *pf = NULL;
	uint8_t *kind = NULL;
	bool *included = NULL;
	struct mm_cons_solution *sol = NULL;
	json_t *reply = NULL;
	int n = pl.slot ? build_pool(mm, &q, &pl) : -1;
	if (n < 0)
		goto oom;
	int T = q.ntopics;
	qm = calloc((size_t)(n ? n : 1) * T, sizeof(double));
	pf = calloc((size_t)(n ? n : 1) * (n ? n : 1), sizeof(double));
	kind = calloc(n ? n : 1, 1);
	included = calloc(n ? n : 1, sizeof(bool));
	sol = calloc(q.limit, sizeof(*sol));
	if (!qm || !pf || !kind || !included || !sol)
		goto oom;
	for (int c = 0; c < n; c++) {
		const struct mm_org *o = &idx->orgs[pl.slot[c]];
		kind[c] = o->kind;
		for (int k = 0; k < q.ninclude; k++)
			included[c] |= q.include[k] == pl.slot[c];
		for (int t = 0; t < T; t++) {
			uint32_t via;
			qm[c * T + t] = cover(idx, &mm->params, pl.slot[c], q.topics[t], &via);
		}
	}
	for (int a = 0; a < n; a++)
		for (int b = a + 1; b < n; b++) {
			uint8_t ka = kind[a], kb = kind[b];
			double kinds = (mm->params.kind[ka][kb] + mm->params.kind[kb][ka]) / 2;
			double seeks = (seek_fit(idx, &mm->params, pl.slot[a], pl.slot[b]) +
			                seek_fit(idx, &mm->params, pl.slot[b], pl.slot[a])) /
			               2;
			pf[a * n + b] = pf[b * n + a] = 0.5 * kinds + 0.5 * seeks;
		}
	struct mm_cons_problem pb = {
		.ncand = n,
		.ntopics = T,
		.q = qm,
		.kind = kind,
		.pf = pf,
		.included = included,
		.banned = NULL,
		.min_size = q.min_size,
		.max_size = q.max_size,
		.reqs = q.reqs,
		.nreqs = q.nreqs,
		.lambda = mm->cons_lambda,
		.mu = mm->cons_mu,
		.node_budget = mm->cons_budget,
	};
	long nodes = 0;
	bool exact = true;
	int found = n > 0 ? mm_cons_suggest(&pb, q.limit, sol, &nodes, &exact) : 0;
	if (found < 0)
		goto oom;
	double took = mm_elapsed_ms(t0);
	json_t *list = json_array();
	for (int i = 0; i < found; i++)
		json_array_append_new(list, consortium_json(mm, &q, &pl, qm, &sol[i], i + 1));
	json_t *topics = json_array();
	for (int t = 0; t < T; t++)
		json_array_append_new(topics, json_string(idx->topics[q.topics[t]].slug));
	json_t *reqs = json_object();
	for (int r = 0; r < q.nreqs; r++)
		json_object_set_new(reqs, q.req_names[r], json_integer(q.reqs[r].count));
	json_t *countries = json_array();
	for (int i = 0; i < q.ncountries; i++)
		json_array_append_new(countries, json_string(q.countries[i]));
	reply =
	    json_pack("{s:o, s:{s:i, s:i, s:o, s:o}, s:o, s:b, s:I, s:i, s:f}", "topics", topics,
	              "rules", "min_partners", q.min_size, "max_partners", q.max_size,
	              "required_kinds", reqs, "countries", countries, "consortia", list, "exact",
	              exact, "nodes", (json_int_t)nodes, "candidates", n, "took_ms", took);
	api->metric_add(mm->m_consortia, 1);
	api->reply_json(req, 200, reply);
	goto out;
oom:
	api->reply_problem(req, 503, NULL, "out of memory", NULL);
out:
	free(q.exclude);
	free(pl.slot);
	free(qm);
	free(pf);
	free(kind);
	free(included);
	free(sol);
}

static const struct sp_route routes[] = {
	{ "POST", "/v1/consortia", SP_ACCESS_USER, post_consortia,
	  "Consortium suggestions: sets of organisations covering the topics under the rules",
	  "{\"type\":\"object\",\"required\":[\"topics\"],\"additionalProperties\":false,"
	  "\"properties\":{\"topics\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":20,"
	  "\"items\":{\"type\":\"string\"}},\"rules\":{\"type\":\"object\",\"properties\":{"
	  "\"min_partners\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":8},"
	  "\"max_partners\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":8},"
	  "\"required_kinds\":{\"type\":\"object\",\"additionalProperties\":{\"type\":"
	  "\"integer\"}},\"countries\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}},"
	  "\"include\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	  "\"exclude\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	  "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10}}}",
	  "{\"type\":\"object\",\"required\":[\"consortia\"],\"properties\":{\"consortia\":{"
	  "\"type\":\"array\"},\"exact\":{\"type\":\"boolean\"}}}" },
};

int mm_consortia_init(struct mm *mm)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (mm->api->route_add(mm->plugin, &routes[i]) < 0)
			return -1;
	return 0;
}
