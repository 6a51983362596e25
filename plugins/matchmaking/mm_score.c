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
	p->levels = p->max_distance / 2;
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
	p->recip_direct_cost = 50; /* two cache misses against a sequential read */
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

static double topic_weight(const struct mm_index *idx, const struct mm_params *p,
                           const struct mm_entry *e)
{
	return p->level_weight[e->level & 3] * mm_idf(idx, e->topic);
}

double mm_kernel(const struct mm_index *idx, const struct mm_params *p, uint32_t a, uint32_t b)
{
	if (a >= idx->ntopics || b >= idx->ntopics)
		return 0;
	double k = 0;
	uint32_t x = a;
	for (int i = 0; i <= p->levels && x != MM_NONE; i++, x = idx->topics[x].parent) {
		uint32_t y = b;
		for (int j = 0; j <= p->levels && y != MM_NONE; j++, y = idx->topics[y].parent)
			if (x == y)
				k += p->gpow[i + j];
	}
	return k;
}

struct node_val {
	uint32_t node;
	double val;
};

static int node_val_cmp(const void *a, const void *b)
{
	const struct node_val *x = a, *y = b;
	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	return x->val < y->val ? -1 : x->val > y->val; /* an order that does not depend on qsort */
}

double mm_vec_norm(const struct mm_index *idx, const struct mm_params *p, const struct mm_entry *e,
                   size_t n)
{
	/* The expanded vector as (node, value) pairs, sorted so that a node's parts add up
	 * (in the same order every time: the cached norm and a recomputed one agree). */
	struct node_val local[128], *v = local;
	size_t cap = n * (size_t)(p->levels + 1), m = 0;
	if (cap > 128 && !(v = malloc(cap * sizeof(*v))))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (e[i].topic >= idx->ntopics)
			continue;
		double w = topic_weight(idx, p, &e[i]);
		uint32_t t = e[i].topic;
		for (int a = 0; a <= p->levels && t != MM_NONE; a++, t = idx->topics[t].parent)
			v[m++] = (struct node_val){ t, w * p->gpow[a] };
	}
	qsort(v, m, sizeof(*v), node_val_cmp);
	double sum = 0;
	for (size_t i = 0; i < m;) {
		double x = 0;
		uint32_t node = v[i].node;
		for (; i < m && v[i].node == node; i++)
			x += v[i].val;
		sum += x * x;
	}
	if (v != local)
		free(v);
	return sqrt(sum);
}

/* The cached norms depend on the parameters too: a change of them invalidates. */
static void norm_params(struct mm_index *idx, const struct mm_params *p)
{
	double np[5] = { p->gamma, p->levels, p->level_weight[1], p->level_weight[2],
		         p->level_weight[3] };
	if (memcmp(np, idx->norm_params, sizeof(np)) != 0) {
		memcpy(idx->norm_params, np, sizeof(np));
		mm_index_invalidate(idx);
	}
}

const struct mm_norm *mm_org_norms(struct mm_index *idx, const struct mm_params *p, uint32_t slot)
{
	struct mm_norm *nm = &idx->onorm[slot];
	if (nm->gen != idx->tidfgen) {
		const struct mm_org *o = &idx->orgs[slot];
		nm->offers = (float)mm_vec_norm(idx, p, o->offers, o->noffers);
		nm->seeks = (float)mm_vec_norm(idx, p, o->seeks, o->nseeks);
		nm->gen = idx->tidfgen;
	}
	return nm;
}

/* The part of the dot product of vec(list) with the vector of a single topic t of weight
 * 1, and the list entry contributing most (ties: the nearer, then the lower topic). */
static double topic_dot(const struct mm_index *idx, const struct mm_params *p, uint32_t t,
                        const struct mm_entry *list, size_t n, size_t *best)
{
	double sum = 0, top = 0;
	int topd = 0;
	*best = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		double k = mm_kernel(idx, p, t, list[i].topic);
		if (!(k > 0))
			continue;
		double x = k * topic_weight(idx, p, &list[i]);
		sum += x;
		int d = mm_topic_distance(idx, t, list[i].topic);
		if (*best == SIZE_MAX || x > top ||
		    (x == top && (d < topd || (d == topd && list[i].topic < list[*best].topic)))) {
			top = x;
			topd = d;
			*best = i;
		}
	}
	return sum;
}

double mm_score_pair(const struct mm_index *idx, const struct mm_params *p,
                     const struct mm_view *req, const struct mm_entry *sought, size_t nsought,
                     const struct mm_view *cand, struct mm_reason *reasons, size_t *nreasons)
{
	size_t nr = 0;
	double score = 0, topic_fit = 0;
	/* Topic fit: cosine of the sought vector and the candidate's offers vector, one
	 * reason per sought topic (its share of the dot product). */
	double den =
	    mm_vec_norm(idx, p, sought, nsought) * mm_vec_norm(idx, p, cand->offers, cand->noffers);
	for (size_t i = 0; den > 0 && i < nsought; i++) {
		size_t m;
		double x = topic_weight(idx, p, &sought[i]) *
		           topic_dot(idx, p, sought[i].topic, cand->offers, cand->noffers, &m) /
		           den;
		if (!(x > 0))
			continue;
		topic_fit += x;
		double c = mm_quantize(p->w_topics * x);
		if (c > 0 && reasons)
			reasons[nr++] =
			    (struct mm_reason){ MM_REASON_OFFERS,
				                sought[i].topic,
				                cand->offers[m].topic,
				                mm_topic_distance(idx, sought[i].topic,
				                                  cand->offers[m].topic),
				                cand->offers[m].level,
				                0,
				                c };
		score += c;
	}
	if (topic_fit > 1)
		topic_fit = 1; /* a cosine, up to rounding */
	/* Complementarity of kinds, in proportion to the topic fit. */
	if (req->kind >= 0 && req->kind < MM_NKINDS && cand->kind >= 0 && cand->kind < MM_NKINDS) {
		double k = p->kind[req->kind][cand->kind];
		double c = mm_quantize(p->w_kinds * k * topic_fit);
		if (c > 0 && reasons)
			reasons[nr++] =
			    (struct mm_reason){ MM_REASON_KIND, MM_NONE, MM_NONE, -1, 0, k, c };
		score += c;
	}
	/* Reciprocity: cosine of the candidate's seeks vector and the requester's offers
	 * vector, one reason per topic the candidate seeks. */
	double rden = req->noffers && cand->nseeks
	                  ? mm_vec_norm(idx, p, cand->seeks, cand->nseeks) *
	                        mm_vec_norm(idx, p, req->offers, req->noffers)
	                  : 0;
	for (size_t i = 0; rden > 0 && i < cand->nseeks; i++) {
		size_t m;
		double x = topic_weight(idx, p, &cand->seeks[i]) *
		           topic_dot(idx, p, cand->seeks[i].topic, req->offers, req->noffers, &m) /
		           rden;
		double c = mm_quantize(p->w_recip * x);
		if (!(c > 0))
			continue;
		if (reasons)
			reasons[nr++] =
			    (struct mm_reason){ MM_REASON_SEEKS,
				                cand->seeks[i].topic,
				                req->offers[m].topic,
				                mm_topic_distance(idx, cand->seeks[i].topic,
				                                  req->offers[m].topic),
				                req->offers[m].level,
				                0,
				                c };
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

uint32_t mm_acc_epoch(struct mm_index *idx, bool a)
{
	uint32_t *epoch = a ? &idx->sc_aepoch : &idx->sc_repoch;
	if (++*epoch == 0) {
		for (uint32_t i = 0; i < idx->capscratch; i++) {
			if (a)
				idx->sc[i].stamp = 0;
			else
				idx->rc[i].stamp = 0;
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

/* The vector of a list (see mm_score.h) into idx->tval, its nodes listed in idx->tlist:
 * returns their count, and the norm in *norm. */
static uint32_t node_vector(struct mm_index *idx, const struct mm_params *p,
                            const struct mm_entry *e, size_t n, double *norm)
{
	uint32_t ep = mm_scratch_epoch(&idx->tvepoch, idx->tvstamp, idx->ntopics), nl = 0;
	for (size_t i = 0; i < n; i++) {
		if (e[i].topic >= idx->ntopics)
			continue;
		double w = topic_weight(idx, p, &e[i]);
		uint32_t t = e[i].topic;
		for (int a = 0; a <= p->levels && t != MM_NONE; a++, t = idx->topics[t].parent) {
			if (idx->tvstamp[t] != ep) {
				idx->tvstamp[t] = ep;
				idx->tval[t] = 0;
				idx->tlist[nl++] = t;
			}
			idx->tval[t] += w * p->gpow[a];
		}
	}
	double sum = 0;
	for (uint32_t i = 0; i < nl; i++)
		sum += idx->tval[idx->tlist[i]] * idx->tval[idx->tlist[i]];
	*norm = sqrt(sum);
	return nl;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Makes topic n's merged list current: every organisation offering n or a topic at
 * most p->levels below it, with its offers vector's value at node n. A query can then
 * read one list for the node instead of the lists of every topic below it (the merged
 * list holds each organisation once, however many of them it offers). Rebuilt when an
 * idf or the parameters changed. 0 or -1. */
static int merged_list(struct mm_index *idx, const struct mm_params *p, uint32_t n)
{
	struct mm_topic *t = &idx->topics[n];
	if (t->xgen == idx->tidfgen)
		return 0;
	if (++idx->xc_epoch == 0) {
		for (uint32_t i = 0; i < idx->capscratch; i++)
			idx->xc[i].stamp = 0;
		idx->xc_epoch = 1;
	}
	uint32_t ep = idx->xc_epoch, cnt = 0, head = 0, tail = 0;
	idx->tqueue[tail++] = n;
	idx->tdist[n] = 0;
	while (head < tail) {
		uint32_t u = idx->tqueue[head++];
		int b = idx->tdist[u];
		const struct mm_topic *tu = &idx->topics[u];
		double f = p->gpow[b] * mm_idf(idx, u);
		for (uint32_t x = 0; x < tu->npost; x++) {
			struct mm_acc *e = &idx->xc[tu->post[x] >> 2];
			if (e->stamp != ep) {
				e->stamp = ep;
				e->val = 0;
				idx->xslots[cnt++] = tu->post[x] >> 2;
			}
			e->val += (float)(f * p->level_weight[tu->post[x] & 3]);
		}
		if (b >= p->levels)
			continue;
		for (uint32_t i = 0; i < tu->nchildren; i++) {
			uint32_t c = idx->children[tu->first_child + i];
			idx->tdist[c] = (uint8_t)(b + 1);
			idx->tqueue[tail++] = c;
		}
	}
	qsort(idx->xslots, cnt, sizeof(uint32_t), cmp_u32);
	if (cnt > t->capx) {
		uint32_t *xo = realloc(t->xorg, cnt * sizeof(uint32_t));
		if (xo)
			t->xorg = xo;
		float *xv = realloc(t->xval, cnt * sizeof(float));
		if (xv)
			t->xval = xv;
		if (!xo || !xv)
			return -1;
		t->capx = cnt;
	}
	for (uint32_t i = 0; i < cnt; i++) {
		t->xorg[i] = idx->xslots[i];
		t->xval[i] = idx->xc[idx->xslots[i]].val;
	}
	t->nx = cnt;
	t->xgen = idx->tidfgen;
	return 0;
}

/* Entries a spread of node n down the taxonomy would read that are not read already
 * (the lists of the topics within p->levels below it, not yet stamped in fstamp);
 * with add, adds its share to fval as well (listing new topics in flist). */
static uint64_t spread_node(struct mm_index *idx, const struct mm_params *p, uint32_t n, double v,
                            bool add, uint32_t ep, uint32_t *nf)
{
	uint64_t cost = 0;
	uint32_t head = 0, tail = 0;
	idx->tqueue[tail++] = n;
	idx->tdist[n] = 0;
	while (head < tail) {
		uint32_t u = idx->tqueue[head++];
		int b = idx->tdist[u];
		if (idx->fstamp[u] != ep) {
			cost += idx->topics[u].npost;
			if (add) {
				idx->fstamp[u] = ep;
				idx->fval[u] = 0;
				idx->flist[(*nf)++] = u;
			}
		}
		if (add)
			idx->fval[u] += v * p->gpow[b];
		if (b >= p->levels)
			continue;
		const struct mm_topic *t = &idx->topics[u];
		for (uint32_t i = 0; i < t->nchildren; i++) {
			uint32_t c = idx->children[t->first_child + i];
			idx->tdist[c] = (uint8_t)(b + 1);
			idx->tqueue[tail++] = c;
		}
	}
	return cost;
}

/* Spreads the whole vector in tval (nodes in tlist) down the taxonomy: every topic u at
 * most p->levels below one of its nodes gets fval[u] = the sum over u's ancestors-or-self
 * n of tval[n] * gamma^(steps from u up to n), which is what an entry of weight 1 on u
 * adds to a dot product with the vector. Returns the stamp marking the topics set. */
static uint32_t spread_down(struct mm_index *idx, const struct mm_params *p, uint32_t nl,
                            uint32_t *nf)
{
	uint32_t ep = mm_scratch_epoch(&idx->fepoch, idx->fstamp, idx->ntopics);
	*nf = 0;
	for (uint32_t j = 0; j < nl; j++)
		spread_node(idx, p, idx->tlist[j], idx->tval[idx->tlist[j]], true, ep, nf);
	return ep;
}

/* Room for one more candidate in idx->cand; NULL when out of memory. */
static struct mm_hit *cand_room(struct mm_index *idx, size_t n)
{
	if (n == idx->capcand) {
		size_t cap = idx->capcand ? 2 * idx->capcand : 1024;
		struct mm_hit *c = realloc(idx->cand, cap * sizeof(*c));
		if (!c)
			return NULL;
		idx->cand = c;
		idx->capcand = cap;
	}
	return (struct mm_hit *)idx->cand;
}

static void dmin_sift_down(double *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, low = i;
		if (l < n && h[l] < h[low])
			low = l;
		if (r < n && h[r] < h[low])
			low = r;
		if (low == i)
			return;
		double t = h[i];
		h[i] = h[low];
		h[low] = t;
		i = low;
	}
}

/* The m-th largest bound of the n candidates in *kth (-infinity when n <= m): one pass
 * with a heap of m values instead of ordering every candidate. 0 or -1. */
static int kth_bound(const struct mm_hit *c, size_t n, size_t m, double *kth)
{
	*kth = -INFINITY;
	if (n <= m || m == 0)
		return 0;
	double local[128], *h = m <= 128 ? local : malloc(m * sizeof(double));
	if (!h)
		return -1;
	for (size_t i = 0; i < m; i++)
		h[i] = c[i].bound;
	for (size_t i = m / 2; i-- > 0;)
		dmin_sift_down(h, m, i);
	for (size_t i = m; i < n; i++)
		if (c[i].bound > h[0]) {
			h[0] = c[i].bound;
			dmin_sift_down(h, m, 0);
		}
	*kth = h[0];
	if (h != local)
		free(h);
	return 0;
}

/* Scores every organisation reached through the inverted lists, term at a time into
 * the dense accumulators: the dot product of the sought vector with its offers vector,
 * then of its seeks vector with the requester's offers vector (for a node with children,
 * through its merged list). The candidates (in idx->cand, *nout of them) get as bound
 * their score before rounding plus what rounding can add; *slack is what rounding can
 * take away (at most, over all of them). */
static int accumulate(struct mm_index *idx, const struct mm_params *p, uint32_t requester,
                      const struct mm_entry *sought, size_t nsought, const struct mm_filter *f,
                      size_t want, size_t *nout, double *slack, struct mm_stats *stats)
{
	*nout = 0;
	*slack = 0;
	if (!idx->capscratch || !idx->topics_done)
		return 0;
	norm_params(idx, p);
	double qnorm;
	uint32_t nl = node_vector(idx, p, sought, nsought, &qnorm);
	if (!(qnorm > 0))
		return 0;
	const struct mm_org *req = requester < idx->norgs ? &idx->orgs[requester] : NULL;
	size_t n = 0;
	struct mm_hit *c = cand_room(idx, 0);
	if (!c)
		return -1;
	uint32_t aep = mm_acc_epoch(idx, true);
	uint32_t touched_total = 0, postings = 0;
	struct mm_acc *sc = idx->sc;
	/* Term at a time. The dot product gains, for each node of the sought vector,
	 * q[node] times each organisation's value there. A leaf's value comes from its list;
	 * a node with children is read either through its merged list, or spread down onto
	 * the lists of the topics below it (each list read once, with the sum of the factors
	 * it gets), whichever reads fewer entries: when a common sought topic sits under the
	 * node, its list is read anyway, and the merged list would read its organisations a
	 * second time. */
	uint32_t fep = mm_scratch_epoch(&idx->fepoch, idx->fstamp, idx->ntopics), nf = 0, nmg = 0;
	for (uint32_t j = 0; j < nl; j++) {
		uint32_t nd = idx->tlist[j];
		if (!idx->topics[nd].nchildren || p->levels == 0)
			spread_node(idx, p, nd, idx->tval[nd], true, fep, &nf);
	}
	for (uint32_t j = 0; j < nl; j++) {
		uint32_t nd = idx->tlist[j];
		if (!idx->topics[nd].nchildren || p->levels == 0)
			continue;
		if (merged_list(idx, p, nd) < 0)
			return -1;
		if (spread_node(idx, p, nd, 0, false, fep, &nf) <= idx->topics[nd].nx)
			spread_node(idx, p, nd, idx->tval[nd], true, fep, &nf);
		else
			idx->mlist[nmg++] = nd;
	}
	for (uint32_t j = 0; j < nf + nmg; j++) {
		bool merged = j >= nf;
		uint32_t nd = merged ? idx->mlist[j - nf] : idx->flist[j];
		const struct mm_topic *t = &idx->topics[nd];
		double qv = merged ? idx->tval[nd] : 0,
		       k = merged ? 0 : idx->fval[nd] * mm_idf(idx, nd);
		float val[4] = { 0, (float)(k * p->level_weight[1]),
			         (float)(k * p->level_weight[2]), (float)(k * p->level_weight[3]) };
		uint32_t np = merged ? t->nx : t->npost;
		postings += np;
		for (uint32_t x = 0; x < np; x++) {
			uint32_t org = merged ? t->xorg[x] : t->post[x] >> 2;
			float v = merged ? (float)qv * t->xval[x] : val[t->post[x] & 3];
			struct mm_acc *e = &sc[org];
			if (e->stamp != aep) {
				/* The first time this query reaches the organisation. */
				e->stamp = aep;
				touched_total++;
				if (!passes(idx, org, requester, f)) {
					e->val = -1;
					continue;
				}
				if (!(c = cand_room(idx, n)))
					return -1;
				c[n++].org = org;
				e->val = 0;
			} else if (e->val < 0) {
				continue;
			}
			e->val += v;
		}
	}
	/* The topic part of each candidate's score, and the k-th largest of them (*kth): a
	 * lower bound of the k-th best score (reciprocity only adds), so that candidates
	 * whose topic part plus the largest possible reciprocity stays below it are out
	 * before their reciprocity is computed. */
	double wide = 1 + 1e-4;
	uint32_t maxseeks = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t org = c[i].org;
		const struct mm_norm *nm = &idx->onorm[org];
		if (nm->gen != idx->tidfgen)
			nm = mm_org_norms(idx, p, org);
		double t = nm->offers > 0 ? sc[org].val / (qnorm * nm->offers) : 0;
		double kf = req ? p->kind[req->kind][idx->okind[org]] : 0;
		c[i].score = 0;
		c[i].bound = t * (p->w_topics + p->w_kinds * kf);
	}
	double kth;
	if (kth_bound(c, n, want, &kth) < 0)
		return -1;
	/* What rounding and single precision can move a score, at most, beyond its topic
	 * part and reciprocity: for any candidate (extra), and for one with q reasons. */
	double extra = (double)(nsought + 1 + UINT16_MAX) * MM_QUANTUM + 3e-4;
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (c[i].bound * wide + p->w_recip + extra >= kth)
			c[m++] = c[i];
	/* Reciprocity of the rest: the requester's offers vector spread down the taxonomy
	 * gives every topic (gval, with its idf) what an entry seeking it adds to the dot
	 * product. Either each remaining candidate sums over the few topics it seeks (two
	 * cache misses each, p->recip_direct_cost list entries), or the seeks lists of those
	 * topics are swept once for the remaining candidates (marked in rc), whichever costs
	 * less. */
	double anorm = 0;
	uint32_t gep = 0, rep = 0;
	if (req && req->noffers > 0 && p->w_recip > 0) {
		uint32_t nl2 = node_vector(idx, p, req->offers, req->noffers, &anorm), ng;
		gep = spread_down(idx, p, nl2, &ng);
		uint64_t sweep = 0;
		for (uint32_t j = 0; j < ng; j++) {
			uint32_t t = idx->flist[j];
			idx->fval[t] *= mm_idf(idx, t);
			sweep += idx->topics[t].nspost;
		}
		if ((double)sweep < p->recip_direct_cost * (double)m) {
			rep = mm_acc_epoch(idx, false);
			for (size_t i = 0; i < m; i++)
				idx->rc[c[i].org] = (struct mm_acc){ rep, 0 };
			for (uint32_t j = 0; j < ng; j++) {
				const struct mm_topic *t = &idx->topics[idx->flist[j]];
				double g = idx->fval[idx->flist[j]];
				for (uint32_t x = 0; x < t->nspost; x++) {
					struct mm_acc *e = &idx->rc[t->spost[x] >> 2];
					if (e->stamp == rep)
						e->val +=
						    (float)(g * p->level_weight[t->spost[x] & 3]);
				}
			}
		}
	}
	/* The survivors by decreasing topic part (a heap: usually only the first are taken):
	 * each gets its reciprocity and full bound, and the k-th largest lower bound of a
	 * score seen so far (low) stops the walk once even a full reciprocity could not
	 * reach it. */
	for (size_t i = m / 2; i-- > 0;)
		sift_down(c, m, i);
	double lowh[128], *low = want <= 128 ? lowh : malloc(want * sizeof(double));
	if (!low)
		return -1;
	size_t nlow = 0, out = 0, left = m;
	while (left > 0) {
		struct mm_hit h = heap_pop(c, &left);
		if (nlow == want && want > 0 && h.bound * wide + p->w_recip + extra < low[0])
			break;
		uint32_t org = h.org;
		const struct mm_norm *nm = &idx->onorm[org];
		double r = 0;
		if (rep && nm->seeks > 0 && anorm > 0) {
			r = idx->rc[org].val / (anorm * nm->seeks);
		} else if (gep && nm->seeks > 0 && anorm > 0) {
			const struct mm_org *o = &idx->orgs[org];
			double dot = 0;
			for (uint16_t j = 0; j < o->nseeks; j++) {
				uint32_t t = o->seeks[j].topic;
				if (idx->fstamp[t] == gep)
					dot +=
					    p->level_weight[o->seeks[j].level & 3] * idx->fval[t];
			}
			r = dot / (anorm * nm->seeks);
		}
		uint32_t q = (uint32_t)nsought + 1 + idx->onseeks[org];
		if (idx->onseeks[org] > maxseeks)
			maxseeks = idx->onseeks[org];
		/* Widened by the error of the single precision sums and norms (relative, under
		 * 2^-24 per operation: 1e-4 covers over a thousand terms) and by what rounding
		 * the contributions can add. */
		h.bound = (h.bound + p->w_recip * r) * wide + (double)q * MM_QUANTUM + 1e-9;
		/* Kept at the end of the array, below the heap still being popped. */
		c[m - 1 - out++] = h;
		double lb = h.bound - 2 * (double)q * MM_QUANTUM - 3e-4;
		if (nlow < want) {
			low[nlow++] = lb;
			for (size_t x = nlow - 1; x > 0 && low[(x - 1) / 2] > low[x];
			     x = (x - 1) / 2) {
				double tmp = low[x];
				low[x] = low[(x - 1) / 2];
				low[(x - 1) / 2] = tmp;
			}
		} else if (want > 0 && lb > low[0]) {
			low[0] = lb;
			dmin_sift_down(low, want, 0);
		}
	}
	if (low != lowh)
		free(low);
	memmove(c, c + m - out, out * sizeof(*c));
	m = out;
	*slack = 2 * (double)(nsought + 1 + maxseeks) * MM_QUANTUM + 3e-4;
	if (stats) {
		stats->touched = touched_total;
		stats->candidates = (uint32_t)n;
		stats->postings = postings;
		stats->bounded = (uint32_t)m;
	}
	*nout = m;
	return 0;
}

/* Keeps, in c, the candidates whose bound is at least the m-th largest bound minus
 * margin, and heap-orders them on their bound. Returns the new count, or (size_t)-1
 * (out of memory). */
static size_t keep_best(struct mm_hit *c, size_t n, size_t m, double margin)
{
	double kth;
	if (kth_bound(c, n, m, &kth) < 0)
		return (size_t)-1;
	if (n > m && m > 0) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (c[i].bound >= kth - margin)
				c[k++] = c[i];
		n = k;
	}
	for (size_t i = n / 2; i-- > 0;)
		sift_down(c, n, i);
	return n;
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
	struct mm_stats st = { 0, 0, 0, 0, 0, true };
	size_t n;
	double slack;
	struct mm_view rv = { -1, NULL, 0, NULL, 0 };
	if (requester < idx->norgs && idx->orgs[requester].alive)
		mm_view_of(idx, requester, &rv);
	if (accumulate(idx, p, requester, sought, nsought, f, k, &n, &slack, &st) < 0)
		return -1;
	/* Whatever is below the k-th bound by more than rounding can move a score cannot
	 * enter the top k: only the few others are ordered and re-scored. */
	n = keep_best(idx->cand, n, k, slack);
	if (n == (size_t)-1)
		return -1;
	size_t ntop = rescore(idx, p, &rv, sought, nsought, idx->cand, n, k, out, &st);
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
	struct mm_stats st = { 0, 0, 0, 0, 0, true };
	size_t n;
	double slack;
	if (accumulate(idx, p, requester, sought, nsought, f, m, &n, &slack, &st) < 0)
		return -1;
	st.exact = st.candidates <= m;
	n = keep_best(idx->cand, n, m, 0);
	if (n == (size_t)-1)
		return -1;
	size_t k = 0;
	while (n > 0 && k < m)
		out[k++] = heap_pop(idx->cand, &n);
	if (stats)
		*stats = st;
	return (int)k;
}
