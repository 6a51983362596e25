/* mm_builtin.c — the built-in score as a registered scorer, reasons as JSON, and the
 * normalisation that keeps any scorer's reasons summing exactly to its score. */
#include "mm_builtin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Profile entries (slugs) → index entries; unknown slugs and bad levels are dropped. */
static struct mm_entry *entries_of(const struct mm_index *idx, const struct sp_match_topic *t,
                                   size_t n, size_t *nout)
{
	struct mm_entry *e = malloc((n ? n : 1) * sizeof(*e));
	size_t k = 0;
	for (size_t i = 0; e && i < n; i++) {
		uint32_t topic = t[i].slug ? mm_index_topic_by_slug(idx, t[i].slug) : MM_NONE;
		if (topic == MM_NONE || t[i].level < 1 || t[i].level > 3)
			continue;
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			if (e[j].topic == topic) {
				dup = true;
				if (t[i].level > e[j].level)
					e[j].level = (uint8_t)t[i].level;
			}
		if (!dup)
			e[k++] = (struct mm_entry){ topic, (uint8_t)t[i].level };
	}
	*nout = k;
	return e;
}

double mm_builtin_score(void *state, const struct sp_match_profile *requester,
                        const struct sp_match_topic *sought, size_t nsought,
                        const struct sp_match_profile *candidate, json_t *reasons)
{
	struct mm_builtin *b = state;
	const struct mm_index *idx = *b->idx;
	if (!idx || !requester || !candidate)
		return 0;
	size_t ns, nro, nrs, nco, ncs;
	struct mm_entry *s = entries_of(idx, sought, nsought, &ns);
	struct mm_entry *ro = entries_of(idx, requester->offers, requester->noffers, &nro);
	struct mm_entry *rs = entries_of(idx, requester->seeks, requester->nseeks, &nrs);
	struct mm_entry *co = entries_of(idx, candidate->offers, candidate->noffers, &nco);
	struct mm_entry *cs = entries_of(idx, candidate->seeks, candidate->nseeks, &ncs);
	struct mm_reason *r = malloc((ns + ncs + 1) * sizeof(*r));
	double score = 0;
	if (s && ro && rs && co && cs && r) {
		struct mm_view rv = { mm_kind_from_name(requester->kind), ro, nro, rs, nrs };
		struct mm_view cv = { mm_kind_from_name(candidate->kind), co, nco, cs, ncs };
		size_t nr = 0;
		score = mm_score_pair(idx, b->params, &rv, s, ns, &cv, r, &nr);
		if (reasons)
			mm_reasons_json(idx, r, nr, rv.kind, cv.kind, reasons);
	}
	free(s);
	free(ro);
	free(rs);
	free(co);
	free(cs);
	free(r);
	return score;
}

int mm_reasons_json(const struct mm_index *idx, const struct mm_reason *r, size_t n, int req_kind,
                    int cand_kind, json_t *arr)
{
	for (size_t i = 0; i < n; i++) {
		json_t *o;
		if (r[i].type == MM_REASON_KIND) {
			o = json_pack(
			    "{s:n, s:s, s:[s?, s?], s:f, s:f}", "topic", "relation", "kind",
			    "kinds",
			    req_kind >= 0 && req_kind < MM_NKINDS ? mm_kind_names[req_kind] : NULL,
			    cand_kind >= 0 && cand_kind < MM_NKINDS ? mm_kind_names[cand_kind]
			                                            : NULL,
			    "factor", r[i].factor, "contribution", r[i].contribution);
		} else {
			o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f}", "topic",
			              idx->topics[r[i].topic].slug, "relation",
			              r[i].type == MM_REASON_OFFERS ? "offers" : "seeks", "matched",
			              idx->topics[r[i].matched].slug, "distance", r[i].distance,
			              "level", r[i].level, "contribution", r[i].contribution);
		}
		if (!o || json_array_append_new(arr, o) < 0)
			return -1;
	}
	return 0;
}

int mm_profile_of(const struct mm_index *idx, uint32_t slot, struct sp_match_profile *p,
                  struct sp_match_topic **buf)
{
	const struct mm_org *o = &idx->orgs[slot];
	size_t n = (size_t)o->noffers + o->nseeks;
	struct sp_match_topic *t = malloc((n ? n : 1) * sizeof(*t));
	*buf = t;
	if (!t)
		return -1;
	for (size_t i = 0; i < o->noffers; i++)
		t[i] = (struct sp_match_topic){ idx->topics[o->offers[i].topic].slug,
			                        o->offers[i].level };
	for (size_t i = 0; i < o->nseeks; i++)
		t[o->noffers + i] = (struct sp_match_topic){ idx->topics[o->seeks[i].topic].slug,
			                                     o->seeks[i].level };
	p->org_id = o->id;
	p->name = o->name;
	p->kind = mm_kind_names[o->kind];
	p->country = o->country[0] ? o->country : NULL;
	p->region = o->region;
	p->offers = t;
	p->noffers = o->noffers;
	p->seeks = t + o->noffers;
	p->nseeks = o->nseeks;
	return 0;
}

double mm_normalise_reasons(double score, json_t *reasons)
{
	if (!isfinite(score) || score < 0)
		score = 0;
	if (score > 1)
		score = 1;
	double sum = 0;
	size_t i = 0;
	while (i < json_array_size(reasons)) {
		json_t *r = json_array_get(reasons, i);
		json_t *c = json_object_get(r, "contribution");
		double v = json_is_number(c) ? mm_quantize(json_number_value(c)) : 0;
		if (!json_is_object(r) || !(v > 0) || sum + v > 1.0) {
			json_array_remove(reasons, i);
			continue;
		}
		json_object_set_new(r, "contribution", json_real(v));
		sum += v;
		i++;
	}
	double rest = mm_quantize(score) - sum;
	if (rest > 0) {
		json_array_append_new(reasons, json_pack("{s:n, s:s, s:f}", "topic", "relation",
		                                         "scorer", "contribution", rest));
		sum += rest;
	}
	return sum;
}
