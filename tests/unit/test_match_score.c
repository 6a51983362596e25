/* test_match_score.c — the matchmaking plugin's pure logic: taxonomy distances, the
 * index under updates, the built-in score (partial credit, levels, rarity, kinds,
 * reciprocity, reasons that sum exactly), the top-k search against a full sort, and
 * consortium branch and bound against exhaustive search. */
#include "../../plugins/matchmaking/mm_consortium.h"
#include "../../plugins/matchmaking/mm_index.h"
#include "../../plugins/matchmaking/mm_score.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- deterministic pseudo-random numbers ---- */
static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}
static int rnd_int(int n)
{
	return (int)(rnd() % (uint32_t)n);
}
static double rnd_unit(void)
{
	return (rnd() % 1000001) / 1000000.0;
}

static void make_id(char *out, unsigned kind, unsigned n)
{
	snprintf(out, MM_ID_LEN + 1, "%08x-0000-4000-8000-%012x", kind, n);
}

/* A taxonomy of themes → areas → leaves: topic i's slug is "t<i>". */
static struct mm_index *tree_index(int themes, int areas, int leaves)
{
	struct mm_index *idx = mm_index_new();
	char id[MM_ID_LEN + 1], pid[MM_ID_LEN + 1], slug[32];
	unsigned n = 0;
	for (int a = 0; a < themes; a++) {
		unsigned theme = n;
		make_id(id, 1, n);
		snprintf(slug, sizeof(slug), "t%u", n++);
		mm_index_add_topic(idx, id, slug, NULL);
		for (int b = 0; b < areas; b++) {
			unsigned area = n;
			make_id(id, 1, n);
			make_id(pid, 1, theme);
			snprintf(slug, sizeof(slug), "t%u", n++);
			mm_index_add_topic(idx, id, slug, pid);
			for (int c = 0; c < leaves; c++) {
				make_id(id, 1, n);
				make_id(pid, 1, area);
				snprintf(slug, sizeof(slug), "t%u", n++);
				mm_index_add_topic(idx, id, slug, pid);
			}
		}
	}
	char err[128];
	if (mm_index_finish_topics(idx, err, sizeof(err)) < 0)
		printf("# finish_topics: %s\n", err);
	return idx;
}

static uint32_t T(const struct mm_index *idx, const char *slug)
{
	return mm_index_topic_by_slug(idx, slug);
}

static uint32_t add_org(struct mm_index *idx, unsigned n, int kind, const char *country,
                        const struct mm_entry *offers, size_t no, const struct mm_entry *seeks,
                        size_t ns)
{
	char id[MM_ID_LEN + 1], name[32];
	make_id(id, 2, n);
	snprintf(name, sizeof(name), "Org %u", n);
	uint32_t slot = mm_index_put_org(idx, id, name, kind, country, "Region");
	mm_index_set_profile(idx, slot, offers, no, seeks, ns);
	return slot;
}

static void test_taxonomy(void)
{
	struct mm_index *idx = tree_index(2, 2, 3); /* t0{t1{t2,t3,t4},t5{..}}, t10{...} */
	is_int(idx->ntopics, 18, "18 topics");
	is_int(mm_topic_distance(idx, T(idx, "t2"), T(idx, "t2")), 0, "distance to itself 0");
	is_int(mm_topic_distance(idx, T(idx, "t2"), T(idx, "t1")), 1, "leaf to parent 1");
	is_int(mm_topic_distance(idx, T(idx, "t2"), T(idx, "t3")), 2, "siblings 2");
	is_int(mm_topic_distance(idx, T(idx, "t2"), T(idx, "t0")), 2, "leaf to theme 2");
	is_int(mm_topic_distance(idx, T(idx, "t2"), T(idx, "t6")), 4, "cousins 4");
	is_int(mm_topic_distance(idx, T(idx, "t2"), T(idx, "t11")), -1,
	       "different themes are not connected");
	ok(mm_topic_is_ancestor_or_self(idx, T(idx, "t0"), T(idx, "t3")), "t0 is above t3");
	ok(!mm_topic_is_ancestor_or_self(idx, T(idx, "t3"), T(idx, "t0")), "t3 is not above t0");
	uint32_t n = mm_neighbourhood(idx, T(idx, "t2"), 2);
	int d1 = 0, d2 = 0;
	for (uint32_t i = 0; i < n; i++) {
		d1 += idx->tdist[idx->tqueue[i]] == 1;
		d2 += idx->tdist[idx->tqueue[i]] == 2;
	}
	is_int(n, 5, "neighbourhood of a leaf within 2: itself, parent, 2 siblings, theme");
	ok(d1 == 1 && d2 == 3 && idx->tqueue[0] == T(idx, "t2"), "with their distances");
	mm_index_free(idx);

	/* Bad taxonomies. */
	char err[128];
	idx = mm_index_new();
	mm_index_add_topic(idx, "00000000-0000-4000-8000-000000000001", "a",
	                   "00000000-0000-4000-8000-000000000002");
	mm_index_add_topic(idx, "00000000-0000-4000-8000-000000000002", "b",
	                   "00000000-0000-4000-8000-000000000001");
	ok(mm_index_finish_topics(idx, err, sizeof(err)) < 0 && strstr(err, "cycle"),
	   "a cycle is refused (%s)", err);
	mm_index_free(idx);
	idx = mm_index_new();
	mm_index_add_topic(idx, "00000000-0000-4000-8000-000000000001", "a",
	                   "00000000-0000-4000-8000-000000000009");
	ok(mm_index_finish_topics(idx, err, sizeof(err)) < 0 && strstr(err, "unknown parent"),
	   "an unknown parent is refused");
	ok(mm_index_add_topic(idx, "00000000-0000-4000-8000-000000000003", "a", NULL) < 0,
	   "a duplicate slug is refused");
	ok(mm_index_add_topic(idx, "not-a-uuid", "z", NULL) < 0, "a bad id is refused");
	mm_index_free(idx);
}

/* Inverted lists and subtree counts agree with the profiles. */
static bool consistent(const struct mm_index *idx)
{
	uint64_t posts = 0, sposts = 0, offers = 0, seeks = 0;
	for (uint32_t t = 0; t < idx->ntopics; t++) {
		const struct mm_topic *tp = &idx->topics[t];
		posts += tp->npost;
		sposts += tp->nspost;
		for (uint32_t j = 0; j < tp->npost; j++) {
			const struct mm_org *o = &idx->orgs[tp->post[j] >> 2];
			bool found = false;
			for (uint16_t i = 0; o->alive && i < o->noffers; i++)
				found |= o->offers[i].topic == t &&
				         o->offers[i].level == (tp->post[j] & 3);
			if (!found)
				return false;
		}
		for (uint32_t j = 0; j < tp->nspost; j++) {
			const struct mm_org *o = &idx->orgs[tp->spost[j] >> 2];
			bool found = false;
			for (uint16_t i = 0; o->alive && i < o->nseeks; i++)
				found |= o->seeks[i].topic == t &&
				         o->seeks[i].level == (tp->spost[j] & 3);
			if (!found)
				return false;
		}
		uint32_t nsub = 0;
		for (uint32_t s = 0; s < idx->norgs; s++) {
			const struct mm_org *o = &idx->orgs[s];
			bool below = false;
			for (uint16_t i = 0; o->alive && i < o->noffers && !below; i++)
				below = mm_topic_is_ancestor_or_self(idx, t, o->offers[i].topic);
			nsub += below;
		}
		if (nsub != tp->nsub)
			return false;
	}
	for (uint32_t s = 0; s < idx->norgs; s++)
		if (idx->orgs[s].alive) {
			offers += idx->orgs[s].noffers;
			seeks += idx->orgs[s].nseeks;
		}
	return posts == offers && sposts == seeks;
}

static void test_index_updates(void)
{
	struct mm_index *idx = tree_index(2, 3, 4);
	uint32_t leaf = T(idx, "t2"), area = T(idx, "t1"), theme = T(idx, "t0");
	struct mm_entry off[] = { { leaf, 3 }, { leaf, 1 }, { T(idx, "t3"), 2 } };
	uint32_t a = add_org(idx, 1, MM_SME, "NL", off, 3, NULL, 0);
	is_int(idx->orgs[a].noffers, 2, "a topic listed twice is kept once");
	is_int(idx->orgs[a].offers[0].level, 3, "with its highest level");
	is_int(idx->topics[leaf].npost, 1, "one posting on the leaf");
	is_int(idx->topics[area].nsub, 1, "the area counts the organisation once");
	is_int(idx->topics[theme].nsub, 1, "and so does the theme");
	/* Many organisations: the id map under inserts and deletes. */
	for (unsigned i = 2; i < 3000; i++) {
		struct mm_entry e = { (uint32_t)(2 + i % 4), (uint8_t)(1 + i % 3) };
		add_org(idx, i, (int)(i % MM_NKINDS), "BE", &e, 1, &e, 1);
	}
	is_int(idx->nalive, 2999, "2999 organisations");
	int removed = 0;
	for (unsigned i = 2; i < 3000; i += 2) {
		char id[MM_ID_LEN + 1];
		make_id(id, 2, i);
		removed += mm_index_remove_org(idx, id);
	}
	is_int(removed, 1499, "1499 removed");
	int found = 0, absent = 0;
	for (unsigned i = 1; i < 3000; i++) {
		char id[MM_ID_LEN + 1];
		make_id(id, 2, i);
		uint32_t s = mm_index_org(idx, id);
		if (i == 1 || i % 2)
			found += s != MM_NONE && strcmp(idx->orgs[s].id, id) == 0;
		else
			absent += s == MM_NONE;
	}
	is_int(found, 1500, "every remaining id is found");
	is_int(absent, 1499, "every removed id is gone");
	uint32_t total = 0;
	for (uint32_t t = 0; t < idx->ntopics; t++)
		total += idx->topics[t].npost;
	is_int(total, 2 + 1499, "postings of removed organisations are gone");
	ok(consistent(idx),
	   "inverted lists (offers and seeks) and subtree counts match the profiles");
	is_int(idx->topics[theme].nsub, 1500, "subtree counts follow removals");
	ok(mm_index_org(idx, "00000002-0000-4000-8000-00000000000B") != MM_NONE,
	   "ids are case-insensitive");
	/* Replacing a profile moves postings. */
	struct mm_entry off2[] = { { T(idx, "t7"), 2 } };
	mm_index_set_profile(idx, a, off2, 1, NULL, 0);
	ok(idx->topics[leaf].npost == 0 && idx->topics[T(idx, "t7")].npost == 1,
	   "a new profile replaces the old postings");
	ok(consistent(idx), "and everything still matches");
	size_t mem = mm_index_memory(idx);
	ok(mem > 1500 * sizeof(struct mm_org) && mem < 1500 * 1024, "memory accounted: %zu B", mem);
	mm_index_free(idx);
}

/* Sum of contributions, in the given order or reversed. */
static double reasons_sum(const struct mm_reason *r, size_t n, bool reverse)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += r[reverse ? n - 1 - i : i].contribution;
	return s;
}

static void test_score(void)
{
	struct mm_index *idx = tree_index(2, 3, 4); /* areas t1, t6, t11; leaves t2..t5 */
	struct mm_params p;
	mm_params_default(&p);
	uint32_t want = T(idx, "t2");
	struct mm_entry sought[] = { { want, 3 } };
	struct mm_entry req_off[] = { { T(idx, "t8"), 3 } };
	uint32_t r = add_org(idx, 0, MM_SME, "NL", req_off, 1, sought, 1);
	struct mm_entry exact[] = { { want, 3 } }, sib[] = { { T(idx, "t3"), 3 } },
	                parent[] = { { T(idx, "t1"), 3 } }, cousin[] = { { T(idx, "t7"), 3 } },
	                low[] = { { want, 1 } };
	uint32_t oe = add_org(idx, 1, MM_SME, "NL", exact, 1, NULL, 0);
	uint32_t os = add_org(idx, 2, MM_SME, "NL", sib, 1, NULL, 0);
	uint32_t op = add_org(idx, 3, MM_SME, "NL", parent, 1, NULL, 0);
	uint32_t oc = add_org(idx, 4, MM_SME, "NL", cousin, 1, NULL, 0);
	uint32_t ol = add_org(idx, 5, MM_SME, "NL", low, 1, NULL, 0);
	struct mm_view rv, cv;
	mm_view_of(idx, r, &rv);
	double s[6];
	uint32_t orgs[] = { oe, os, op, oc, ol };
	for (int i = 0; i < 5; i++) {
		mm_view_of(idx, orgs[i], &cv);
		s[i] = mm_score_pair(idx, &p, &rv, sought, 1, &cv, NULL, NULL);
	}
	ok(s[0] > s[2] && s[2] > s[1] && s[1] > 0, "exact > parent > sibling > 0");
	ok(s[3] == 0, "a cousin (distance 4) is beyond the default max distance");
	double wt = p.w_topics + p.w_kinds * p.kind[MM_SME][MM_SME];
	ok(fabs(s[0] - wt) < 1e-6, "exact level-3 match = w_topics + w_kinds*K (%.6f)", s[0]);
	/* Cosines of the topic vectors: {t, parent(t) at gamma} against the same for the
	 * offer; the parent meets them once at gamma, a sibling at gamma^2 (their parent). */
	double g = p.gamma, norm2 = 1 + g * g;
	ok(fabs(s[1] - wt * g * g / norm2) < 1e-6, "sibling = gamma^2 / (1 + gamma^2) of it");
	ok(fabs(s[2] - wt * g / norm2) < 1e-6, "parent = gamma / (1 + gamma^2) of it");
	ok(fabs(s[4] - s[0]) < 1e-6, "a single offer at level 1: the same direction, the same fit");
	/* Levels weigh an organisation's offers against each other: the one strongest in what
	 * is sought fits better. */
	struct mm_entry strong[] = { { want, 3 }, { T(idx, "t7"), 1 } },
	                weak[] = { { want, 1 }, { T(idx, "t7"), 3 } };
	uint32_t ost = add_org(idx, 8, MM_SME, "NL", strong, 2, NULL, 0);
	uint32_t owk = add_org(idx, 9, MM_SME, "NL", weak, 2, NULL, 0);
	mm_view_of(idx, ost, &cv);
	double sst = mm_score_pair(idx, &p, &rv, sought, 1, &cv, NULL, NULL);
	mm_view_of(idx, owk, &cv);
	double swk = mm_score_pair(idx, &p, &rv, sought, 1, &cv, NULL, NULL);
	ok(sst > swk && swk > 0, "level 3 beats level 1 (%.4f > %.4f)", sst, swk);
	ok(fabs(mm_kernel(idx, &p, want, want) - norm2) < 1e-12 &&
	       fabs(mm_kernel(idx, &p, want, T(idx, "t3")) - g * g) < 1e-12 &&
	       fabs(mm_kernel(idx, &p, want, T(idx, "t1")) - g) < 1e-12 &&
	       mm_kernel(idx, &p, want, T(idx, "t0")) == 0 &&
	       mm_kernel(idx, &p, want, T(idx, "t7")) == 0,
	   "kernel: itself 1 + gamma^2, sibling gamma^2, parent gamma, grandparent and cousin 0");
	struct mm_entry two[] = { { want, 3 }, { T(idx, "t3"), 2 } };
	double w2 = 0.75 * mm_idf(idx, T(idx, "t3")), w1 = mm_idf(idx, want);
	double n2 = sqrt(w1 * w1 + w2 * w2 + (g * w1 + g * w2) * (g * w1 + g * w2));
	ok(fabs(mm_vec_norm(idx, &p, two, 2) - n2) < 1e-9,
	   "the norm adds the parts that meet at the parent");

	/* Kinds: a hospital with the same offer ranks above the SME. */
	uint32_t oh = add_org(idx, 6, MM_HOSPITAL, "NL", exact, 1, NULL, 0);
	mm_view_of(idx, oh, &cv);
	double sh = mm_score_pair(idx, &p, &rv, sought, 1, &cv, NULL, NULL);
	mm_view_of(idx, oe, &cv);
	double se = mm_score_pair(idx, &p, &rv, sought, 1, &cv, NULL, NULL);
	ok(sh > se, "an SME seeking gets a hospital above an SME (%.4f > %.4f)", sh, se);

	/* Reciprocity: a candidate seeking what the requester offers ranks higher. */
	struct mm_entry seeks_back[] = { { T(idx, "t8"), 3 } };
	uint32_t orc = add_org(idx, 7, MM_SME, "NL", exact, 1, seeks_back, 1);
	mm_view_of(idx, orc, &cv);
	struct mm_reason reasons[8];
	size_t nr;
	double srec = mm_score_pair(idx, &p, &rv, sought, 1, &cv, reasons, &nr);
	ok(fabs(srec - (se + p.w_recip)) < 1e-6, "full reciprocity adds w_recip");
	is_int(nr, 3, "three reasons: topic, kind, reciprocity");
	ok(reasons[0].type == MM_REASON_OFFERS && reasons[1].type == MM_REASON_KIND &&
	       reasons[2].type == MM_REASON_SEEKS,
	   "in order");
	ok(reasons_sum(reasons, nr, false) == srec, "reasons sum exactly to the score");
	ok(reasons[2].topic == T(idx, "t8") && reasons[2].distance == 0, "reciprocity names t8");

	/* Rarity: two sought topics; the rare one weighs more. */
	struct mm_entry common[] = { { T(idx, "t13"), 3 } }, rare[] = { { T(idx, "t17"), 3 } };
	for (unsigned i = 100; i < 130; i++)
		add_org(idx, i, MM_OTHER, "DE", common, 1, NULL, 0);
	uint32_t orare = add_org(idx, 200, MM_OTHER, "DE", rare, 1, NULL, 0);
	uint32_t ocommon = add_org(idx, 201, MM_OTHER, "DE", common, 1, NULL, 0);
	struct mm_entry both[] = { { T(idx, "t13"), 3 }, { T(idx, "t17"), 3 } };
	mm_view_of(idx, orare, &cv);
	double sr = mm_score_pair(idx, &p, &rv, both, 2, &cv, NULL, NULL);
	mm_view_of(idx, ocommon, &cv);
	double sc = mm_score_pair(idx, &p, &rv, both, 2, &cv, NULL, NULL);
	ok(sr > 2 * sc, "matching the rare topic counts more (%.4f vs %.4f)", sr, sc);

	/* Exact sums over many random pairs, in both orders, and bounds. */
	int bad = 0, out = 0;
	for (int i = 0; i < 2000; i++) {
		struct mm_entry so[6], of[8], se2[6];
		int nso = 1 + rnd_int(5), nof = rnd_int(8), nse = rnd_int(6);
		for (int j = 0; j < nso; j++)
			so[j] = (struct mm_entry){ (uint32_t)rnd_int((int)idx->ntopics),
				                   (uint8_t)(1 + rnd_int(3)) };
		for (int j = 0; j < nof; j++)
			of[j] = (struct mm_entry){ (uint32_t)rnd_int((int)idx->ntopics),
				                   (uint8_t)(1 + rnd_int(3)) };
		for (int j = 0; j < nse; j++)
			se2[j] = (struct mm_entry){ (uint32_t)rnd_int((int)idx->ntopics),
				                    (uint8_t)(1 + rnd_int(3)) };
		/* dedupe sought */
		int m = 0;
		for (int j = 0; j < nso; j++) {
			bool dup = false;
			for (int k = 0; k < m; k++)
				dup |= so[k].topic == so[j].topic;
			if (!dup)
				so[m++] = so[j];
		}
		struct mm_view a = { rnd_int(MM_NKINDS), of, (size_t)nof, se2, (size_t)nse };
		struct mm_view b = { rnd_int(MM_NKINDS), se2, (size_t)nse, of, (size_t)nof };
		struct mm_reason rs[32];
		double sc2 = mm_score_pair(idx, &p, &a, so, (size_t)m, &b, rs, &nr);
		if (reasons_sum(rs, nr, false) != sc2 || reasons_sum(rs, nr, true) != sc2)
			bad++;
		for (size_t j = 0; j < nr; j++)
			if (rs[j].contribution <= 0 ||
			    rs[j].contribution !=
			        floor(rs[j].contribution * 16777216.0) / 16777216.0)
				bad++;
		if (sc2 < 0 || sc2 > 1)
			out++;
	}
	is_int(bad, 0, "2000 random pairs: reasons sum exactly in any order, all positive quanta");
	is_int(out, 0, "every score is in [0, 1]");

	/* A perfect match reaches 1 exactly and not more. */
	struct mm_params p2 = p;
	for (int a = 0; a < MM_NKINDS; a++)
		for (int b = 0; b < MM_NKINDS; b++)
			p2.kind[a][b] = 1;
	struct mm_entry ro[] = { { T(idx, "t8"), 3 } };
	struct mm_view A = { MM_SME, ro, 1, exact, 1 }, B = { MM_SME, exact, 1, ro, 1 };
	double one = mm_score_pair(idx, &p2, &A, exact, 1, &B, reasons, &nr);
	ok(one == 1.0 && reasons_sum(reasons, nr, false) == 1.0, "a perfect match scores 1");

	/* Kind matrix settings. */
	char err[160];
	struct mm_params p3 = p;
	ok(mm_params_kind_matrix(&p3, "{\"sme\": {\"sme\": 0.9}}", err, sizeof(err)) &&
	       p3.kind[MM_SME][MM_SME] == 0.9 && p3.kind[MM_SME][MM_HOSPITAL] == 1.0,
	   "kind_matrix overrides one entry, keeps the others");
	ok(!mm_params_kind_matrix(&p3, "{\"bank\": {}}", err, sizeof(err)), "unknown kind refused");
	ok(!mm_params_kind_matrix(&p3, "{\"sme\": {\"sme\": 2}}", err, sizeof(err)),
	   "value outside [0, 1] refused: %s", err);
	ok(!mm_params_kind_matrix(&p3, "[1]", err, sizeof(err)), "not an object refused");
	ok(!mm_params_set_weights(&p3, 0, 0, 0), "weights summing to 0 refused");
	mm_index_free(idx);
}

/* Every organisation scored, then sorted: the reference for mm_match. */
static int full_sort(struct mm_index *idx, const struct mm_params *p, uint32_t req,
                     const struct mm_entry *sought, size_t ns, const struct mm_filter *f,
                     struct mm_hit *all)
{
	struct mm_view rv, cv;
	mm_view_of(idx, req, &rv);
	int n = 0;
	for (uint32_t o = 0; o < idx->norgs; o++) {
		if (!idx->orgs[o].alive || o == req)
			continue;
		if (f->kind_mask && !(f->kind_mask & (1u << idx->orgs[o].kind)))
			continue;
		if (f->ncountries && strcmp(f->countries[0], idx->orgs[o].country) != 0)
			continue;
		bool ex = false;
		for (size_t i = 0; i < f->nexclude; i++)
			ex |= f->exclude[i] == o;
		if (ex)
			continue;
		mm_view_of(idx, o, &cv);
		/* only organisations with some topic fit are candidates: an offer whose topic
		 * vector meets a sought one */
		bool fit = false;
		for (size_t i = 0; i < ns && !fit; i++)
			for (size_t j = 0; j < cv.noffers && !fit; j++)
				fit = mm_kernel(idx, p, sought[i].topic, cv.offers[j].topic) > 0;
		if (!fit)
			continue;
		all[n].org = o;
		all[n].score = mm_score_pair(idx, p, &rv, sought, ns, &cv, NULL, NULL);
		n++;
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && mm_hit_cmp(idx, &all[j - 1], &all[j]) > 0; j--) {
			struct mm_hit t = all[j];
			all[j] = all[j - 1];
			all[j - 1] = t;
		}
	return n;
}

static void test_topk(void)
{
	struct mm_index *idx = tree_index(3, 4, 6);
	struct mm_params p;
	mm_params_default(&p);
	int norgs = 1500;
	for (int i = 0; i < norgs; i++) {
		struct mm_entry of[6], se[4];
		int nof = 1 + rnd_int(6), nse = rnd_int(4);
		for (int j = 0; j < nof; j++)
			of[j] = (struct mm_entry){ (uint32_t)rnd_int((int)idx->ntopics),
				                   (uint8_t)(1 + rnd_int(3)) };
		for (int j = 0; j < nse; j++)
			se[j] = (struct mm_entry){ (uint32_t)rnd_int((int)idx->ntopics),
				                   (uint8_t)(1 + rnd_int(3)) };
		add_org(idx, (unsigned)i, rnd_int(MM_NKINDS), rnd_int(2) ? "NL" : "BE", of,
		        (size_t)nof, se, (size_t)nse);
	}
	struct mm_hit *all = malloc(norgs * sizeof(*all)), top[20];
	int mismatches = 0, inexact = 0, queries = 0, nonempty = 0;
	long rescored = 0, candidates = 0;
	for (int q = 0; q < 300; q++) {
		uint32_t req = (uint32_t)rnd_int(norgs);
		struct mm_entry sought[4];
		int ns = 1 + rnd_int(4), m = 0;
		for (int j = 0; j < ns; j++) {
			struct mm_entry e = { (uint32_t)rnd_int((int)idx->ntopics),
				              (uint8_t)(1 + rnd_int(3)) };
			bool dup = false;
			for (int k = 0; k < m; k++)
				dup |= sought[k].topic == e.topic;
			if (!dup)
				sought[m++] = e;
		}
		struct mm_filter f;
		memset(&f, 0, sizeof(f));
		const char nl[1][3] = { "NL" };
		uint32_t ex[2] = { (uint32_t)rnd_int(norgs), (uint32_t)rnd_int(norgs) };
		if (q % 3 == 1)
			f.kind_mask = (1u << MM_SME) | (1u << MM_HOSPITAL) | (1u << MM_UNIVERSITY);
		if (q % 4 == 2) {
			f.countries = nl;
			f.ncountries = 1;
		}
		if (q % 5 == 3) {
			f.exclude = ex;
			f.nexclude = 2;
		}
		size_t k = q % 2 ? 10 : 20;
		struct mm_stats st;
		int n = mm_match(idx, &p, req, sought, (size_t)m, &f, k, top, &st);
		int nall = full_sort(idx, &p, req, sought, (size_t)m, &f, all);
		int want = nall < (int)k ? nall : (int)k;
		queries++;
		nonempty += n > 0;
		rescored += st.rescored;
		candidates += st.candidates;
		inexact += !st.exact;
		if (n != want) {
			mismatches++;
			continue;
		}
		for (int i = 0; i < n; i++)
			if (top[i].org != all[i].org || top[i].score != all[i].score ||
			    top[i].org == req)
				mismatches++;
	}
	is_int(mismatches, 0, "%d queries: mm_match top-k equals the full sort (ids and scores)",
	       queries);
	is_int(inexact, 0, "the bound proved every top-k");
	/* Reciprocity both ways (per candidate from its profile, or by sweeping the seeks
	 * lists): the same answers. */
	int badway = 0;
	for (int q = 0; q < 100; q++) {
		uint32_t req = (uint32_t)rnd_int(norgs);
		struct mm_entry so[2] = { { (uint32_t)rnd_int((int)idx->ntopics), 3 },
			                  { (uint32_t)rnd_int((int)idx->ntopics), 1 } };
		size_t ns = so[0].topic == so[1].topic ? 1 : 2;
		struct mm_filter nof;
		memset(&nof, 0, sizeof(nof));
		struct mm_params pd = p, pl = p;
		pd.recip_direct_cost = 0;
		pl.recip_direct_cost = 1e18;
		struct mm_hit a[10], b[10];
		int na = mm_match(idx, &pd, req, so, ns, NULL, 10, a, NULL);
		int nb = mm_match(idx, &pl, req, so, ns, NULL, 10, b, NULL);
		int nall = full_sort(idx, &p, req, so, ns, &nof, all);
		badway += na != nb || na != (nall < 10 ? nall : 10);
		for (int i = 0; i < na && na == nb && i < nall; i++)
			badway += a[i].org != b[i].org || a[i].score != b[i].score ||
			          a[i].org != all[i].org || a[i].score != all[i].score;
	}
	is_int(badway, 0, "100 queries, reciprocity per candidate or by lists: the full sort");
	ok(nonempty > 250, "most queries find something (%d)", nonempty);
	printf("# rescored %.1f of %.1f candidates per query on average\n",
	       (double)rescored / queries, (double)candidates / queries);
	/* Pre-selection for plugin scorers: the first m by bound are those of a full list. */
	int badpre = 0;
	struct mm_hit *pre = malloc(norgs * sizeof(*pre)), few[40];
	for (int q = 0; q < 50; q++) {
		uint32_t req = (uint32_t)rnd_int(norgs);
		struct mm_entry so[1] = { { (uint32_t)rnd_int((int)idx->ntopics), 3 } };
		int nall = mm_candidates(idx, &p, req, so, 1, NULL, (size_t)norgs, pre, NULL);
		int nf = mm_candidates(idx, &p, req, so, 1, NULL, 40, few, NULL);
		if (nf != (nall < 40 ? nall : 40))
			badpre++;
		for (int i = 0; i < nf && i < nall; i++)
			badpre += few[i].org != pre[i].org || few[i].bound != pre[i].bound ||
			          (i > 0 && pre[i].bound > pre[i - 1].bound);
	}
	is_int(badpre, 0, "mm_candidates: the first 40 by bound, in order, as from the full list");
	free(pre);
	/* Compaction renumbers slots (by main area, without holes) and changes no answer. */
	char rid[50][MM_ID_LEN + 1], hid[50][10][MM_ID_LEN + 1];
	double hsc[50][10];
	int hn[50];
	struct mm_entry qs[50][2];
	for (int i = 0; i < 200; i++) {
		char id[MM_ID_LEN + 1];
		make_id(id, 2, (unsigned)rnd_int(norgs));
		mm_index_remove_org(idx, id);
	}
	for (int q = 0; q < 50; q++) {
		uint32_t req;
		do
			req = (uint32_t)rnd_int((int)idx->norgs);
		while (!idx->orgs[req].alive);
		memcpy(rid[q], idx->orgs[req].id, sizeof(rid[q]));
		qs[q][0] = (struct mm_entry){ (uint32_t)rnd_int((int)idx->ntopics), 3 };
		qs[q][1] = (struct mm_entry){ (qs[q][0].topic + 1) % idx->ntopics, 2 };
		hn[q] = mm_match(idx, &p, req, qs[q], 2, NULL, 10, top, NULL);
		for (int i = 0; i < hn[q]; i++) {
			memcpy(hid[q][i], idx->orgs[top[i].org].id, sizeof(hid[q][i]));
			hsc[q][i] = top[i].score;
		}
	}
	uint32_t alive = idx->nalive;
	ok(idx->nfree > 0 && mm_index_compact(idx) == 0 && idx->norgs == alive && idx->nfree == 0 &&
	       consistent(idx),
	   "compaction: no free slots left, the index consistent");
	int badc = 0;
	for (int q = 0; q < 50; q++) {
		uint32_t req = mm_index_org(idx, rid[q]);
		int n = req == MM_NONE ? -1 : mm_match(idx, &p, req, qs[q], 2, NULL, 10, top, NULL);
		badc += n != hn[q];
		for (int i = 0; i < n && n == hn[q]; i++)
			badc += strcmp(idx->orgs[top[i].org].id, hid[q][i]) != 0 ||
			        top[i].score != hsc[q][i];
	}
	is_int(badc, 0, "and the same answers after it (50 queries)");
	struct mm_index *empty = tree_index(1, 1, 1);
	ok(mm_index_compact(empty) == 0 && empty->norgs == 0,
	   "compacting an empty index is a no-op");
	mm_index_free(empty);
	/* Ties: equal scores come by organisation id. */
	struct mm_index *t2 = tree_index(1, 1, 2);
	struct mm_entry e[] = { { T(t2, "t2"), 2 } };
	uint32_t rq = add_org(t2, 50, MM_SME, "NL", NULL, 0, e, 1);
	for (unsigned i = 10; i > 0; i--)
		add_org(t2, i, MM_SME, "NL", e, 1, NULL, 0);
	struct mm_hit h[5];
	int n = mm_match(t2, &p, rq, e, 1, NULL, 5, h, NULL);
	bool sorted = n == 5;
	for (int i = 1; i < n; i++)
		sorted &= h[i - 1].score == h[i].score &&
		          strcmp(t2->orgs[h[i - 1].org].id, t2->orgs[h[i].org].id) < 0;
	ok(sorted, "ties are broken by organisation id");
	/* max_candidates cuts the search and says so. */
	struct mm_params pc = p;
	pc.max_candidates = 2;
	struct mm_stats st;
	n = mm_match(t2, &pc, rq, e, 1, NULL, 5, h, &st);
	ok(n == 2 && !st.exact, "max_candidates bounds the re-scoring and reports it");
	mm_index_free(t2);
	free(all);
	mm_index_free(idx);
}

static void test_consortium(void)
{
	int checked = 0, same = 0, found_both = 0, found_mismatch = 0, infeasible = 0;
	long nodes = 0;
	for (int inst = 0; inst < 400; inst++) {
		int nc = 6 + rnd_int(9), nt = 1 + rnd_int(5);
		double q[14 * 5], pf[14 * 14];
		uint8_t kind[14];
		bool included[14] = { false };
		for (int c = 0; c < nc; c++) {
			kind[c] = (uint8_t)rnd_int(MM_NKINDS);
			for (int t = 0; t < nt; t++)
				q[c * nt + t] = rnd_int(3) == 0 ? 0.125 + 0.875 * rnd_unit() : 0;
			for (int d = 0; d <= c; d++) {
				double v = c == d ? 0 : rnd_unit();
				pf[c * nc + d] = v;
				pf[d * nc + c] = v;
			}
		}
		if (inst % 5 == 0)
			included[rnd_int(nc)] = true;
		struct mm_cons_req reqs[2] = {
			{ (1u << MM_SME) | (1u << MM_LARGE_ENTERPRISE), 1 },
			{ (1u << MM_UNIVERSITY) | (1u << MM_RESEARCH_CENTRE), 1 },
		};
		struct mm_cons_problem pb = {
			.ncand = nc,
			.ntopics = nt,
			.q = q,
			.kind = kind,
			.pf = pf,
			.included = included,
			.min_size = 1 + rnd_int(2),
			.max_size = 2 + rnd_int(4),
			.reqs = reqs,
			.nreqs = inst % 3,
			.lambda = inst % 2 ? 0.3 : 0.8,
			.mu = inst % 4 ? 0.02 : 0.15,
		};
		struct mm_cons_solution a, b;
		bool exact;
		mm_cons_solve(&pb, &a, &nodes, &exact);
		mm_cons_brute(&pb, &b);
		checked++;
		if (a.found != b.found) {
			found_mismatch++;
			continue;
		}
		if (!a.found) {
			infeasible++;
			continue;
		}
		found_both++;
		if (fabs(a.objective - b.objective) < 1e-9 && mm_cons_feasible(&pb, a.members, a.n))
			same++;
		else
			printf("# instance %d: b&b %.12f, exhaustive %.12f\n", inst, a.objective,
			       b.objective);
	}
	is_int(found_mismatch, 0,
	       "%d instances: branch and bound finds a consortium exactly "
	       "when exhaustive search does",
	       checked);
	is_int(same, found_both, "and the same optimum on all %d feasible ones (%d infeasible)",
	       found_both, infeasible);
	printf("# %ld branch-and-bound nodes in all\n", nodes);

	/* Several consortia: distinct, each feasible, best first. */
	int nc = 12, nt = 3;
	double q[12 * 3], pf[12 * 12];
	uint8_t kind[12];
	for (int c = 0; c < nc; c++) {
		kind[c] = (uint8_t)(c % 3 == 0 ? MM_UNIVERSITY : MM_SME);
		for (int t = 0; t < nt; t++)
			q[c * nt + t] = (c % nt == t) ? 0.5 + 0.04 * c : 0;
		for (int d = 0; d < nc; d++)
			pf[c * nc + d] = c == d ? 0 : 0.5;
	}
	struct mm_cons_req req = { 1u << MM_UNIVERSITY, 1 };
	struct mm_cons_problem pb = { .ncand = nc,
		                      .ntopics = nt,
		                      .q = q,
		                      .kind = kind,
		                      .pf = pf,
		                      .min_size = 2,
		                      .max_size = 4,
		                      .reqs = &req,
		                      .nreqs = 1,
		                      .lambda = 0.3,
		                      .mu = 0.02 };
	struct mm_cons_solution out[5];
	bool exact;
	int n = mm_cons_suggest(&pb, 5, out, NULL, &exact);
	bool distinct = true, feasible = true, ordered = true;
	for (int i = 0; i < n; i++) {
		feasible &= mm_cons_feasible(&pb, out[i].members, out[i].n);
		for (int j = 0; j < i; j++)
			distinct &=
			    !(out[i].n == out[j].n &&
			      !memcmp(out[i].members, out[j].members, out[i].n * sizeof(int)));
		if (i)
			ordered &= out[i].objective <= out[i - 1].objective + 1e-12;
	}
	ok(n >= 3 && distinct && feasible && ordered && exact,
	   "suggest: %d distinct feasible consortia, best first", n);
}

int main(void)
{
	test_taxonomy();
	test_index_updates();
	test_score();
	test_topk();
	test_consortium();
	return tap_done();
}
