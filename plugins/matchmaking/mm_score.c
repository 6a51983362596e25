/* mm_score.c — the built-in score and the top-k search: term-at-a-time accumulation over
 * the inverted lists of each sought topic's taxonomy neighbourhood, an upper bound per
 * candidate, then exact re-scoring in bound order until the bound proves the top k. */
#include "mm_score.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double mm_quantize(double x)
{
	if (!(x > 0))
		return 0;
	return floor(x * 16777216.0 + 0.5) / 16777216.0;
}

/* [requester][candidate]: an SME looks for hospitals, research and large companies more
 * than for other SMEs, and so on (docs/matchmaking.md shows the table). */
static const double default_kinds[MM_NKINDS][MM_NKINDS] = {
	/*                  sme  large hosp  univ  rc   assoc pub  other */
	/* sme */ { 0.3, 0.8, 1.0, 0.8, 0.9, 0.5, 0.5, 0.3 },
	/* large */ { 1.0, 0.3, 0.9, 0.8, 0.9, 0.4, 0.5, 0.3 },
	/* hospital */ { 1.0, 0.9, 0.4, 0.8, 0.8, 0.6, 0.6, 0.3 },
	/* university */ { 0.8, 0.8, 1.0, 0.4, 0.7, 0.5, 0.5, 0.3 },
	/* research_centre */ { 0.9, 0.9, 0.9, 0.6, 0.4, 0.5, 0.5, 0.3 },
	/* association */ { 0.7, 0.7, 0.7, 0.6, 0.6, 0.3, 0.8, 0.3 },
	/* public_body */ { 0.6, 0.6, 0.8, 0.6, 0.6, 0.6, 0.3, 0.3 },
	/* other */ { 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5 },
};

void mm_params_update(struct mm_params *p)
{
	double g = 1;
	for (int d = 0; d <= MM_MAX_DIST; d++) {
		p->gpow[d] = d <= p->max_distance ? g : 0;
		g *= p->gamma;
	}
}

void mm_params_default(struct mm_params *p)
{
	memset(p, 0, sizeof(*p));
	p->gamma = 0.5;
	p->max_distance = 2;
	mm_params_set_weights(p, 0.5, 0.25, 0.25);
	p->level_weight[0] = 0;
	p->level_weight[1] = 0.5;
	p->level_weight[2] = 0.75;
	p->level_weight[3] = 1.0;
	memcpy(p->kind, default_kinds, sizeof(p->kind));
	p->max_candidates = 2000;
	mm_params_update(p);
}

bool mm_params_set_weights(struct mm_params *p, double topics, double kinds, double recip)
{
	double sum = topics + kinds + recip;
	if (!(sum > 0) || topics < 0 || kinds < 0 || recip < 0)
		return false;
	p->w_topics = topics / sum;
	p->w_kinds = kinds / sum;
	p->w_recip = recip / sum;
	return true;
}

bool mm_params_kind_matrix(struct mm_params *p, const char *text, char *err, size_t errlen)
{
	memcpy(p->kind, default_kinds, sizeof(p->kind));
	if (!text || !*text)
		return true;
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	if (!json_is_object(root)) {
		snprintf(err, errlen, "kind_matrix must be a JSON object of objects");
		json_decref(root);
		return false;
	}
	double kinds[MM_NKINDS][MM_NKINDS];
	memcpy(kinds, default_kinds, sizeof(kinds));
	const char *rk;
	json_t *row;
	json_object_foreach(root, rk, row)
	{
		int r = mm_kind_from_name(rk);
		if (r < 0 || !json_is_object(row)) {
			snprintf(err, errlen, "kind_matrix: '%.40s' is not a kind with an object",
			         rk);
			json_decref(root);
			return false;
		}
		const char *ck;
		json_t *v;
		json_object_foreach(row, ck, v)
		{
			int c = mm_kind_from_name(ck);
			double x = json_number_value(v);
			if (c < 0 || !json_is_number(v) || x < 0 || x > 1) {
				snprintf(err, errlen,
				         "kind_matrix: %.40s.%.40s must be a kind with a number in "
				         "[0, 1]",
				         rk, ck);
				json_decref(root);
				return false;
			}
			kinds[r][c] = x;
		}
	}
	json_decref(root);
	memcpy(p->kind, kinds, sizeof(kinds));
	return true;
}

void mm_view_of(const struct mm_index *idx, uint32_t slot, struct mm_view *v)
{
	const struct mm_org *o = &idx->orgs[slot];
	v->kind = o->kind;
	v->offers = o->offers;
	v->noffers = o->noffers;
	v->seeks = o->seeks;
	v->nseeks = o->nseeks;
}

double mm_fit(const struct mm_index *idx, const struct mm_params *p, uint32_t s,
              const struct mm_entry *offers, size_t noffers, uint32_t *matched, int *dist,
              int *level)
{
	double best = 0;
	int bestd = MM_MAX_DIST + 1;
	uint32_t bestt = MM_NONE;
	int bestl = 0;
	for (size_t i = 0; i < noffers; i++) {
		int d = mm_topic_distance(idx, s, offers[i].topic);
		if (d < 0 || d > p->max_distance || d > MM_MAX_DIST)
			continue;
		double v = p->gpow[d] * p->level_weight[offers[i].level & 3];
		if (v > best || (v == best && v > 0 && d < bestd)) {
			best = v;
			bestd = d;
			bestt = offers[i].topic;
			bestl = offers[i].level;
		}
	}
	if (matched)
		*matched = bestt;
	if (dist)
		*dist = best > 0 ? bestd : -1;
	if (level)
		*level = bestl;
	return best;
}

static double sought_weight(const struct mm_index *idx, const struct mm_params *p,
                            const struct mm_entry *e)
{
	return p->level_weight[e->level & 3] * mm_idf(idx, e->topic);
}

double mm_score_pair(const struct mm_index *idx, const struct mm_params *p,
                     const struct mm_view *req, const struct mm_entry *sought, size_t nsought,
                     const struct mm_view *cand, struct mm_reason *reasons, size_t *nreasons)
{
	size_t nr = 0;
	double score = 0, topic_num = 0, wsum = 0;
	for (size_t i = 0; i < nsought; i++)
		wsum += sought_weight(idx, p, &sought[i]);
	/* Topic fit: what is sought against what the candidate offers. */
	for (size_t i = 0; wsum > 0 && i < nsought; i++) {
		uint32_t m;
		int d, l;
		double fit =
		    mm_fit(idx, p, sought[i].topic, cand->offers, cand->noffers, &m, &d, &l);
		if (!(fit > 0))
			continue;
		double w = sought_weight(idx, p, &sought[i]) * fit;
		topic_num += w;
		double c = mm_quantize(p->w_topics * w / wsum);
		if (c > 0 && reasons)
			reasons[nr++] =
			    (struct mm_reason){ MM_REASON_OFFERS, sought[i].topic, m, d, l, 0, c };
		score += c;
	}
	double topic_fit = wsum > 0 ? topic_num / wsum : 0;
	/* Complementarity of kinds, in proportion to the topic fit. */
	if (req->kind >= 0 && req->kind < MM_NKINDS && cand->kind >= 0 && cand->kind < MM_NKINDS) {
		double k = p->kind[req->kind][cand->kind];
		double c = mm_quantize(p->w_kinds * k * topic_fit);
		if (c > 0 && reasons)
			reasons[nr++] =
			    (struct mm_reason){ MM_REASON_KIND, MM_NONE, MM_NONE, -1, 0, k, c };
		score += c;
	}
	/* Reciprocity: what the candidate seeks against what the requester offers. */
	double rsum = 0;
	for (size_t i = 0; req->noffers && i < cand->nseeks; i++)
		rsum += sought_weight(idx, p, &cand->seeks[i]);
	for (size_t i = 0; rsum > 0 && i < cand->nseeks; i++) {
		uint32_t m;
		int d, l;
		double fit =
		    mm_fit(idx, p, cand->seeks[i].topic, req->offers, req->noffers, &m, &d, &l);
		if (!(fit > 0))
			continue;
		double c =
		    mm_quantize(p->w_recip * sought_weight(idx, p, &cand->seeks[i]) * fit / rsum);
		if (c > 0 && reasons)
			reasons[nr++] = (struct mm_reason){
				MM_REASON_SEEKS, cand->seeks[i].topic, m, d, l, 0, c
			};
		score += c;
	}
	/* Rounding may overshoot 1 by a few quanta: take them from the largest part. */
	if (score > 1.0) {
		double excess = score - 1.0;
		if (reasons && nr) {
			size_t big = 0;
			for (size_t i = 1; i < nr; i++)
				if (reasons[i].contribution > reasons[big].contribution)
					big = i;
			reasons[big].contribution -= excess;
		}
		score = 1.0;
	}
	if (nreasons)
		*nreasons = nr;
	return score;
}

uint32_t mm_neighbourhood(struct mm_index *idx, uint32_t s, int max_distance)
{
	if (s >= idx->ntopics)
		return 0;
	uint32_t ep = ++idx->tepoch;
	if (ep == 0) {
		memset(idx->tstamp, 0, idx->ntopics * sizeof(uint32_t));
		ep = idx->tepoch = 1;
	}
	uint32_t head = 0, tail = 0;
	idx->tqueue[tail++] = s;
	idx->tstamp[s] = ep;
	idx->tdist[s] = 0;
	while (head < tail) {
		uint32_t t = idx->tqueue[head++];
		int d = idx->tdist[t];
		if (d >= max_distance)
			continue;
		const struct mm_topic *tp = &idx->topics[t];
		if (tp->parent != MM_NONE && idx->tstamp[tp->parent] != ep) {
			idx->tstamp[tp->parent] = ep;
			idx->tdist[tp->parent] = (uint8_t)(d + 1);
			idx->tqueue[tail++] = tp->parent;
		}
		for (uint32_t i = 0; i < tp->nchildren; i++) {
			uint32_t c = idx->children[tp->first_child + i];
			if (idx->tstamp[c] != ep) {
				idx->tstamp[c] = ep;
				idx->tdist[c] = (uint8_t)(d + 1);
				idx->tqueue[tail++] = c;
			}
		}
	}
	return tail;
}

int mm_hit_cmp(const struct mm_index *idx, const struct mm_hit *a, const struct mm_hit *b)
{
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	return strcmp(idx->orgs[a->org].id, idx->orgs[b->org].id);
}

static bool same_text_ci(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
		char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
		if (x != y)
			return false;
	}
	return *a == *b;
}

static bool passes(const struct mm_index *idx, uint32_t slot, uint32_t requester,
                   const struct mm_filter *f)
{
	uint8_t kind = idx->okind[slot]; /* dense: no visit to the organisation itself */
	if (kind == MM_DEAD || slot == requester)
		return false;
	if (!f)
		return true;
	if (f->kind_mask && !(f->kind_mask & (1u << kind)))
		return false;
	if (!f->ncountries && !f->nregions && !f->nexclude)
		return true;
	const struct mm_org *o = &idx->orgs[slot];
	if (f->ncountries) {
		bool any = false;
		for (size_t i = 0; i < f->ncountries && !any; i++)
			any = strcmp(f->countries[i], o->country) == 0;
		if (!any)
			return false;
	}
	if (f->nregions) {
		bool any = false;
		for (size_t i = 0; i < f->nregions && !any && o->region; i++)
			any = same_text_ci(f->regions[i], o->region);
		if (!any)
			return false;
	}
	for (size_t i = 0; i < f->nexclude; i++)
		if (f->exclude[i] == slot)
			return false;
	return true;
}

uint32_t mm_scratch_epoch(uint32_t *epoch, uint32_t *stamps, uint32_t n)
{
	if (++*epoch == 0) {
		memset(stamps, 0, n * sizeof(uint32_t));
		*epoch = 1;
	}
	return *epoch;
}

/* A fresh stamp for the accumulators (both stamps are cleared when a counter wraps). */
static uint32_t sc_epoch(struct mm_index *idx, bool a)
{
	uint32_t *epoch = a ? &idx->sc_aepoch : &idx->sc_bepoch;
	if (++*epoch == 0) {
		for (uint32_t i = 0; i < idx->capscratch; i++) {
			if (a)
				idx->sc[i].astamp = 0;
			else
				idx->sc[i].bstamp = 0;
		}
		*epoch = 1;
	}
	return *epoch;
}

/* Max-heap of candidates on their bound (ties: lower slot first, for determinism). */
static bool bound_before(const struct mm_hit *a, const struct mm_hit *b)
{
	return a->bound > b->bound || (a->bound == b->bound && a->org < b->org);
}

static void sift_down(struct mm_hit *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, top = i;
		if (l < n && bound_before(&h[l], &h[top]))
			top = l;
		if (r < n && bound_before(&h[r], &h[top]))
			top = r;
		if (top == i)
			return;
		struct mm_hit t = h[i];
		h[i] = h[top];
		h[top] = t;
		i = top;
	}
}

static struct mm_hit heap_pop(struct mm_hit *h, size_t *n)
{
	struct mm_hit top = h[0];
	h[0] = h[--*n];
	sift_down(h, *n, 0);
	return top;
}

/* Accumulates the topic fit of every organisation reached through the inverted lists
 * of the sought topics' neighbourhoods, and returns the candidates (malloc'd, bound
 * set, heap-ordered) in *out. */
/* Accumulates the topic fit of every organisation reached through the inverted lists
 * of the sought topics' neighbourhoods (term at a time), then its reciprocity through
 * the inverted lists of what it seeks, and returns the candidates (malloc'd,
 * heap-ordered on their bound: the exact score before rounding plus what rounding can
 * add) in *out. */
static int accumulate(struct mm_index *idx, const struct mm_params *p, uint32_t requester,
                      const struct mm_entry *sought, size_t nsought, const struct mm_filter *f,
                      struct mm_hit **out, size_t *nout, struct mm_stats *stats)
{
	*out = NULL;
	*nout = 0;
	double wsum = 0;
	for (size_t i = 0; i < nsought; i++)
		wsum += sought_weight(idx, p, &sought[i]);
	if (!(wsum > 0) || !idx->capscratch)
		return 0;
	const struct mm_org *req = requester < idx->norgs ? &idx->orgs[requester] : NULL;
	size_t cap = 256, n = 0;
	struct mm_hit *c = malloc(cap * sizeof(*c));
	if (!c)
		return -1;
	uint32_t aep = sc_epoch(idx, true);
	uint32_t touched_total = 0, postings = 0;
	struct mm_acc *sc = idx->sc;
	for (size_t i = 0; i < nsought; i++) {
		double ws = sought_weight(idx, p, &sought[i]);
		uint32_t bep = sc_epoch(idx, false);
		uint32_t nn = mm_neighbourhood(idx, sought[i].topic, p->max_distance);
		for (uint32_t j = 0; j < nn; j++) {
			uint32_t v = idx->tqueue[j];
			double g = p->gpow[idx->tdist[v]];
			const struct mm_topic *t = &idx->topics[v];
			postings += t->npost;
			for (uint32_t x = 0; x < t->npost; x++) {
				uint32_t org = t->post[x] >> 2;
				double val = g * p->level_weight[t->post[x] & 3];
				struct mm_acc *e = &sc[org];
				if (e->astamp != aep) {
					/* The first time this query reaches the organisation. */
					e->astamp = aep;
					touched_total++;
					if (!passes(idx, org, requester, f)) {
						e->acc = -1;
						continue;
					}
					if (n == cap) {
						struct mm_hit *nc =
						    realloc(c, 2 * cap * sizeof(*c));
						if (!nc) {
							free(c);
							return -1;
						}
						c = nc;
						cap *= 2;
					}
					c[n++].org = org;
					e->acc = 0;
				} else if (e->acc < 0) {
					continue;
				}
				/* fit_s is the best value over the neighbourhood: add the gain. */
				if (e->bstamp != bep) {
					e->bstamp = bep;
					e->best = val;
					e->acc += ws * val;
				} else if (val > e->best) {
					e->acc += ws * (val - e->best);
					e->best = val;
				}
			}
		}
	}
	/* Reciprocity, term at a time as well: g(t) is the best fit any offer of the
	 * requester gives topic t; a candidate seeking t gains level_weight * idf(t) * g(t).
	 * Divided by the candidate's own weight sum, this is R (up to rounding). */
	uint32_t rep = 0;
	if (req && req->noffers > 0 && p->w_recip > 0) {
		uint32_t vep = mm_scratch_epoch(&idx->tvepoch, idx->tvstamp, idx->ntopics);
		uint32_t nl = 0;
		for (uint16_t i = 0; i < req->noffers; i++) {
			double lw = p->level_weight[req->offers[i].level & 3];
			uint32_t nn = mm_neighbourhood(idx, req->offers[i].topic, p->max_distance);
			for (uint32_t j = 0; j < nn; j++) {
				uint32_t v = idx->tqueue[j];
				double val = p->gpow[idx->tdist[v]] * lw;
				if (idx->tvstamp[v] != vep) {
					idx->tvstamp[v] = vep;
					idx->tval[v] = val;
					idx->tlist[nl++] = v;
				} else if (val > idx->tval[v]) {
					idx->tval[v] = val;
				}
			}
		}
		rep = mm_scratch_epoch(&idx->repoch, idx->rstamp, idx->capscratch);
		for (uint32_t j = 0; j < nl; j++) {
			uint32_t v = idx->tlist[j];
			const struct mm_topic *t = &idx->topics[v];
			double w = idx->tval[v] * mm_idf(idx, v);
			postings += t->nspost;
			for (uint32_t x = 0; x < t->nspost; x++) {
				uint32_t org = t->spost[x] >> 2;
				if (sc[org].astamp != aep || sc[org].acc < 0)
					continue; /* not a candidate */
				if (idx->rstamp[org] != rep) {
					idx->rstamp[org] = rep;
					idx->racc[org] = 0;
				}
				idx->racc[org] += p->level_weight[t->spost[x] & 3] * w;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t org = c[i].org;
		double t = sc[org].acc / wsum;
		double k = req ? p->kind[req->kind][idx->okind[org]] : 0;
		double r = 0;
		if (rep && idx->rstamp[org] == rep) {
			double den = mm_seek_weight(idx, org, p->level_weight);
			r = den > 0 ? idx->racc[org] / den : 0;
		}
		/* Rounding adds less than half a quantum per reason. */
		c[i].score = 0;
		c[i].bound = t * (p->w_topics + p->w_kinds * k) + p->w_recip * r +
		             (double)(nsought + 1 + idx->onseeks[org]) * MM_QUANTUM + 1e-9;
	}
	for (size_t i = n / 2; i-- > 0;)
		sift_down(c, n, i);
	if (stats) {
		stats->touched = touched_total;
		stats->candidates = (uint32_t)n;
		stats->postings = postings;
	}
	*out = c;
	*nout = n;
	return 0;
}

/* Min-heap on rank (the worst-ranked hit at the top). */
static void rank_sift_down(const struct mm_index *idx, struct mm_hit *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, w = i;
		if (l < n && mm_hit_cmp(idx, &h[l], &h[w]) > 0)
			w = l;
		if (r < n && mm_hit_cmp(idx, &h[r], &h[w]) > 0)
			w = r;
		if (w == i)
			return;
		struct mm_hit t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

static void rank_sift_up(const struct mm_index *idx, struct mm_hit *h, size_t i)
{
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (mm_hit_cmp(idx, &h[i], &h[up]) <= 0)
			return;
		struct mm_hit t = h[i];
		h[i] = h[up];
		h[up] = t;
		i = up;
	}
}

static const struct mm_index *sort_idx;
static int hit_qsort_cmp(const void *a, const void *b)
{
	return mm_hit_cmp(sort_idx, a, b);
}

/* The threshold loop: exact scores in bound order into the top-k heap out (ntop
 * entries), until nothing left can enter. */
static size_t rescore(struct mm_index *idx, const struct mm_params *p, const struct mm_view *rv,
                      const struct mm_entry *sought, size_t nsought, struct mm_hit *c, size_t n,
                      size_t k, struct mm_hit *out, struct mm_stats *st)
{
	size_t ntop = 0;
	while (n > 0 && k > 0) {
		if (ntop == k && c[0].bound < out[0].score)
			break; /* nothing left can enter the top k */
		if (st->rescored >= p->max_candidates) {
			st->exact = false;
			break;
		}
		struct mm_hit h = heap_pop(c, &n);
		struct mm_view cv;
		mm_view_of(idx, h.org, &cv);
		h.score = mm_score_pair(idx, p, rv, sought, nsought, &cv, NULL, NULL);
		st->rescored++;
		if (ntop < k) {
			out[ntop] = h;
			rank_sift_up(idx, out, ntop++);
		} else if (mm_hit_cmp(idx, &h, &out[0]) < 0) {
			out[0] = h;
			rank_sift_down(idx, out, ntop, 0);
		}
	}
	return ntop;
}

int mm_match(struct mm_index *idx, const struct mm_params *p, uint32_t requester,
             const struct mm_entry *sought, size_t nsought, const struct mm_filter *f, size_t k,
             struct mm_hit *out, struct mm_stats *stats)
{
	struct mm_stats st = { 0, 0, 0, 0, true };
	struct mm_hit *c;
	size_t n;
	struct mm_view rv = { -1, NULL, 0, NULL, 0 };
	if (requester < idx->norgs && idx->orgs[requester].alive)
		mm_view_of(idx, requester, &rv);
	if (accumulate(idx, p, requester, sought, nsought, f, &c, &n, &st) < 0)
		return -1;
	size_t ntop = rescore(idx, p, &rv, sought, nsought, c, n, k, out, &st);
	free(c);
	sort_idx = idx;
	qsort(out, ntop, sizeof(*out), hit_qsort_cmp);
	if (stats)
		*stats = st;
	return (int)ntop;
}

int mm_candidates(struct mm_index *idx, const struct mm_params *p, uint32_t requester,
                  const struct mm_entry *sought, size_t nsought, const struct mm_filter *f,
                  size_t m, struct mm_hit *out, struct mm_stats *stats)
{
	struct mm_stats st = { 0, 0, 0, 0, true };
	struct mm_hit *c;
	size_t n;
	if (accumulate(idx, p, requester, sought, nsought, f, &c, &n, &st) < 0)
		return -1;
	size_t k = 0;
	while (n > 0 && k < m)
		out[k++] = heap_pop(c, &n);
	st.exact = n == 0;
	free(c);
	if (stats)
		*stats = st;
	return (int)k;
}
