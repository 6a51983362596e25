/* mm_index.c — the matchmaking index: taxonomy, profiles, inverted lists per topic. */
#include "mm_index.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const mm_kind_names[MM_NKINDS] = {
	"sme",         "large_enterprise", "hospital", "university", "research_centre",
	"association", "public_body",      "other",
};

int mm_kind_from_name(const char *name)
{
	for (int i = 0; name && i < MM_NKINDS; i++)
		if (strcmp(name, mm_kind_names[i]) == 0)
			return i;
	return -1;
}

static char *dup_str(const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *c = malloc(n);
	if (c)
		memcpy(c, s, n);
	return c;
}

/* Grows *p (elements of size sz) to hold at least need; 0 or -1. */
static int grow(void **p, uint32_t *cap, uint32_t need, size_t sz)
{
	if (need <= *cap)
		return 0;
	uint32_t n = *cap ? *cap : 8;
	while (n < need)
		n = n > UINT32_MAX / 2 ? need : n * 2;
	void *q = realloc(*p, (size_t)n * sz);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

bool mm_uuid_canon(const char *s, char *out)
{
	if (!s || strlen(s) != MM_ID_LEN)
		return false;
	for (int i = 0; i < MM_ID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
			out[i] = c;
			continue;
		}
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		out[i] = c;
	}
	out[MM_ID_LEN] = '\0';
	return true;
}

/* ---- string-keyed map (linear probing, backward-shift deletion) ---- */

typedef const char *key_fn(const struct mm_index *idx, uint32_t pos);

static const char *topic_slug_key(const struct mm_index *idx, uint32_t pos)
{
	return idx->topics[pos].slug;
}

static const char *topic_id_key(const struct mm_index *idx, uint32_t pos)
{
	return idx->topics[pos].id;
}

static const char *org_id_key(const struct mm_index *idx, uint32_t pos)
{
	return idx->orgs[pos].id;
}

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h ^ (h >> 15);
}

static uint32_t map_find(const struct mm_index *idx, const struct mm_map *m, const char *key,
                         key_fn *kf)
{
	if (!m->cap || !key)
		return MM_NONE;
	uint32_t mask = m->cap - 1;
	for (uint32_t i = hash_str(key) & mask;; i = (i + 1) & mask) {
		uint32_t v = m->slots[i];
		if (!v)
			return MM_NONE;
		if (strcmp(kf(idx, v - 1), key) == 0)
			return v - 1;
	}
}

static void map_place(const struct mm_index *idx, struct mm_map *m, uint32_t pos, key_fn *kf)
{
	uint32_t mask = m->cap - 1;
	uint32_t i = hash_str(kf(idx, pos)) & mask;
	while (m->slots[i])
		i = (i + 1) & mask;
	m->slots[i] = pos + 1;
}

/* Adds pos under its key (the caller made sure it is absent). */
static int map_insert(const struct mm_index *idx, struct mm_map *m, uint32_t pos, key_fn *kf)
{
	if ((m->n + 1) * 2 > m->cap) {
		uint32_t ncap = m->cap ? m->cap * 2 : 64;
		uint32_t *old = m->slots, ocap = m->cap;
		uint32_t *slots = calloc(ncap, sizeof(*slots));
		if (!slots)
			return -1;
		m->slots = slots;
		m->cap = ncap;
		for (uint32_t i = 0; i < ocap; i++)
			if (old[i])
				map_place(idx, m, old[i] - 1, kf);
		free(old);
	}
	map_place(idx, m, pos, kf);
	m->n++;
	return 0;
}

static void map_remove(const struct mm_index *idx, struct mm_map *m, const char *key, key_fn *kf)
{
	if (!m->cap)
		return;
	uint32_t mask = m->cap - 1;
	uint32_t i = hash_str(key) & mask;
	for (;; i = (i + 1) & mask) {
		if (!m->slots[i])
			return;
		if (strcmp(kf(idx, m->slots[i] - 1), key) == 0)
			break;
	}
	/* Backward shift: move later entries of the cluster into the hole when their home
	 * position allows it. */
	uint32_t hole = i;
	for (uint32_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
		uint32_t home = hash_str(kf(idx, m->slots[j] - 1)) & mask;
		bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
		if (movable) {
			m->slots[hole] = m->slots[j];
			hole = j;
		}
	}
	m->slots[hole] = 0;
	m->n--;
}

/* ---- lifecycle ---- */

struct mm_index *mm_index_new(void)
{
	struct mm_index *idx = calloc(1, sizeof(*idx));
	return idx;
}

void mm_index_free(struct mm_index *idx)
{
	if (!idx)
		return;
	for (uint32_t i = 0; i < idx->ntopics; i++) {
		free(idx->topics[i].slug);
		free(idx->topics[i].post);
		free(idx->topics[i].spost);
		free(idx->topics[i].xorg);
		free(idx->topics[i].xval);
		if (idx->pending_parent)
			free(idx->pending_parent[i]);
	}
	free(idx->pending_parent);
	free(idx->topics);
	free(idx->children);
	free(idx->topic_by_slug.slots);
	free(idx->topic_by_id.slots);
	for (uint32_t i = 0; i < idx->norgs; i++) {
		struct mm_org *o = &idx->orgs[i];
		free(o->name);
		free(o->region);
		free(o->offers);
		free(o->seeks);
	}
	free(idx->orgs);
	free(idx->free_slots);
	free(idx->org_by_id.slots);
	free(idx->tstamp);
	free(idx->tqueue);
	free(idx->tdist);
	free(idx->tval);
	free(idx->tvstamp);
	free(idx->tlist);
	free(idx->fval);
	free(idx->fstamp);
	free(idx->flist);
	free(idx->mlist);
	free(idx->tidf);
	free(idx->tidfstamp);
	free(idx->sc);
	free(idx->rc);
	free(idx->xc);
	free(idx->xslots);
	free(idx->onorm);
	free(idx->okind);
	free(idx->onseeks);
	free(idx->cand);
	free(idx);
}

/* ---- taxonomy ---- */

int mm_index_add_topic(struct mm_index *idx, const char *id, const char *slug,
                       const char *parent_id)
{
	char canon[MM_ID_LEN + 1];
	if (idx->topics_done || !slug || !*slug || !mm_uuid_canon(id, canon) ||
	    idx->ntopics >= (1u << 24))
		return -1;
	if (map_find(idx, &idx->topic_by_slug, slug, topic_slug_key) != MM_NONE ||
	    map_find(idx, &idx->topic_by_id, canon, topic_id_key) != MM_NONE)
		return -1;
	uint32_t cap = idx->captopics;
	if (grow((void **)&idx->topics, &cap, idx->ntopics + 1, sizeof(*idx->topics)) < 0)
		return -1;
	uint32_t cap2 = idx->captopics;
	if (grow((void **)&idx->pending_parent, &cap2, idx->ntopics + 1, sizeof(char *)) < 0)
		return -1;
	idx->captopics = cap < cap2 ? cap : cap2;
	struct mm_topic *t = &idx->topics[idx->ntopics];
	memset(t, 0, sizeof(*t));
	t->slug = dup_str(slug);
	memcpy(t->id, canon, sizeof(canon));
	t->parent = MM_NONE;
	idx->pending_parent[idx->ntopics] = parent_id ? dup_str(parent_id) : NULL;
	if (!t->slug || (parent_id && !idx->pending_parent[idx->ntopics])) {
		free(t->slug);
		free(idx->pending_parent[idx->ntopics]);
		return -1;
	}
	uint32_t pos = idx->ntopics++;
	if (map_insert(idx, &idx->topic_by_slug, pos, topic_slug_key) < 0 ||
	    map_insert(idx, &idx->topic_by_id, pos, topic_id_key) < 0)
		return -1; /* the entry stays; the index is unusable and will be freed */
	return 0;
}

int mm_index_finish_topics(struct mm_index *idx, char *err, size_t errlen)
{
	if (idx->topics_done)
		return -1;
	uint32_t n = idx->ntopics;
	for (uint32_t i = 0; i < n; i++) {
		const char *p = idx->pending_parent[i];
		if (!p)
			continue;
		char canon[MM_ID_LEN + 1];
		uint32_t pi = mm_uuid_canon(p, canon)
		                  ? map_find(idx, &idx->topic_by_id, canon, topic_id_key)
		                  : MM_NONE;
		if (pi == MM_NONE || pi == i) {
			snprintf(err, errlen, "topic %s has an unknown parent",
			         idx->topics[i].slug);
			return -1;
		}
		idx->topics[i].parent = pi;
	}
	/* Depths; a walk longer than n means a cycle. */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t d = 0;
		for (uint32_t p = idx->topics[i].parent; p != MM_NONE; p = idx->topics[p].parent) {
			if (++d > n) {
				snprintf(err, errlen, "the taxonomy has a cycle through %s",
				         idx->topics[i].slug);
				return -1;
			}
		}
		idx->topics[i].depth = d;
	}
	/* Children, grouped by parent (counting sort keeps them in topic order). */
	idx->children = calloc(n ? n : 1, sizeof(uint32_t));
	idx->tstamp = calloc(n ? n : 1, sizeof(uint32_t));
	idx->tqueue = calloc(n ? n : 1, sizeof(uint32_t));
	idx->tdist = calloc(n ? n : 1, 1);
	idx->tval = calloc(n ? n : 1, sizeof(double));
	idx->tvstamp = calloc(n ? n : 1, sizeof(uint32_t));
	idx->tlist = calloc(n ? n : 1, sizeof(uint32_t));
	idx->fval = calloc(n ? n : 1, sizeof(double));
	idx->fstamp = calloc(n ? n : 1, sizeof(uint32_t));
	idx->flist = calloc(n ? n : 1, sizeof(uint32_t));
	idx->mlist = calloc(n ? n : 1, sizeof(uint32_t));
	idx->tidf = calloc(n ? n : 1, sizeof(double));
	idx->tidfstamp = calloc(n ? n : 1, sizeof(uint32_t));
	idx->tidfgen = 1;
	if (!idx->children || !idx->tstamp || !idx->tqueue || !idx->tdist || !idx->tval ||
	    !idx->tvstamp || !idx->tlist || !idx->fval || !idx->fstamp || !idx->flist ||
	    !idx->mlist || !idx->tidf || !idx->tidfstamp) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < n; i++)
		if (idx->topics[i].parent != MM_NONE)
			idx->topics[idx->topics[i].parent].nchildren++;
	uint32_t at = 0;
	for (uint32_t i = 0; i < n; i++) {
		idx->topics[i].first_child = at;
		at += idx->topics[i].nchildren;
		idx->topics[i].nchildren = 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t p = idx->topics[i].parent;
		if (p != MM_NONE)
			idx->children[idx->topics[p].first_child + idx->topics[p].nchildren++] = i;
	}
	for (uint32_t i = 0; i < n; i++) {
		free(idx->pending_parent[i]);
		idx->pending_parent[i] = NULL;
	}
	idx->topics_done = true;
	return 0;
}

uint32_t mm_index_topic_by_slug(const struct mm_index *idx, const char *slug)
{
	return map_find(idx, &idx->topic_by_slug, slug, topic_slug_key);
}

uint32_t mm_index_topic_by_id(const struct mm_index *idx, const char *id)
{
	char canon[MM_ID_LEN + 1];
	if (!mm_uuid_canon(id, canon))
		return MM_NONE;
	return map_find(idx, &idx->topic_by_id, canon, topic_id_key);
}

int mm_topic_distance(const struct mm_index *idx, uint32_t a, uint32_t b)
{
	if (a >= idx->ntopics || b >= idx->ntopics)
		return -1;
	int d = 0;
	while (idx->topics[a].depth > idx->topics[b].depth) {
		a = idx->topics[a].parent;
		d++;
	}
	while (idx->topics[b].depth > idx->topics[a].depth) {
		b = idx->topics[b].parent;
		d++;
	}
	while (a != b) {
		a = idx->topics[a].parent;
		b = idx->topics[b].parent;
		if (a == MM_NONE || b == MM_NONE)
			return -1;
		d += 2;
	}
	return d;
}

bool mm_topic_is_ancestor_or_self(const struct mm_index *idx, uint32_t a, uint32_t b)
{
	for (; b != MM_NONE; b = idx->topics[b].parent)
		if (a == b)
			return true;
	return false;
}

double mm_idf(const struct mm_index *idx, uint32_t topic)
{
	if (topic >= idx->ntopics || !idx->tidfstamp)
		return log(1.0 + (double)idx->nalive /
		                     (1.0 + (topic < idx->ntopics ? idx->topics[topic].nsub : 0)));
	if (idx->tidfstamp[topic] == idx->tidfgen)
		return idx->tidf[topic];
	double v = log(1.0 + (double)idx->nalive / (1.0 + idx->topics[topic].nsub));
	/* A cache: logically const. */
	((struct mm_index *)idx)->tidf[topic] = v;
	((struct mm_index *)idx)->tidfstamp[topic] = idx->tidfgen;
	return v;
}

void mm_index_invalidate(struct mm_index *idx)
{
	if (++idx->tidfgen == 0) {
		if (idx->tidfstamp)
			memset(idx->tidfstamp, 0, idx->ntopics * sizeof(uint32_t));
		for (uint32_t i = 0; i < idx->capscratch; i++)
			idx->onorm[i].gen = 0;
		for (uint32_t i = 0; i < idx->ntopics; i++)
			idx->topics[i].xgen = 0;
		idx->tidfgen = 1;
	}
}

/* Every cached idf is stale (N or a subtree count changed). */
static void idf_changed(struct mm_index *idx)
{
	mm_index_invalidate(idx);
}

/* ---- organisations ---- */

uint32_t mm_index_org(const struct mm_index *idx, const char *id)
{
	char canon[MM_ID_LEN + 1];
	if (!mm_uuid_canon(id, canon))
		return MM_NONE;
	return map_find(idx, &idx->org_by_id, canon, org_id_key);
}

/* Makes the per-organisation scratch arrays as large as the slot arrays. */
static int grow_scratch(struct mm_index *idx)
{
	uint32_t need = idx->caporgs, old = idx->capscratch;
	if (need <= old)
		return 0;
	struct mm_acc *sc = realloc(idx->sc, need * sizeof(*sc));
	if (sc)
		idx->sc = sc;
	struct mm_acc *rc = realloc(idx->rc, need * sizeof(*rc));
	if (rc)
		idx->rc = rc;
	struct mm_acc *xc = realloc(idx->xc, need * sizeof(*xc));
	if (xc)
		idx->xc = xc;
	uint32_t *xs = realloc(idx->xslots, need * sizeof(*xs));
	if (xs)
		idx->xslots = xs;
	struct mm_norm *nm = realloc(idx->onorm, need * sizeof(*nm));
	if (nm)
		idx->onorm = nm;
	uint8_t *ok = realloc(idx->okind, need);
	if (ok)
		idx->okind = ok;
	uint16_t *on = realloc(idx->onseeks, need * sizeof(uint16_t));
	if (on)
		idx->onseeks = on;
	if (!sc || !rc || !xc || !xs || !nm || !ok || !on)
		return -1;
	memset(idx->xc + old, 0, (need - old) * sizeof(*xc));
	memset(idx->sc + old, 0, (need - old) * sizeof(*sc));
	memset(idx->rc + old, 0, (need - old) * sizeof(*rc));
	memset(idx->onorm + old, 0, (need - old) * sizeof(*nm));
	memset(idx->onseeks + old, 0, (need - old) * sizeof(uint16_t));
	memset(idx->okind + old, MM_DEAD, need - old);
	idx->capscratch = need;
	return 0;
}

uint32_t mm_index_put_org(struct mm_index *idx, const char *id, const char *name, int kind,
                          const char *country, const char *region)
{
	char canon[MM_ID_LEN + 1];
	if (!mm_uuid_canon(id, canon) || kind < 0 || kind >= MM_NKINDS)
		return MM_NONE;
	char *nname = dup_str(name ? name : "");
	char *nregion = region ? dup_str(region) : NULL;
	if (!nname || (region && !nregion))
		goto fail;
	uint32_t slot = map_find(idx, &idx->org_by_id, canon, org_id_key);
	if (slot == MM_NONE) {
		if (idx->nfree) {
			slot = idx->free_slots[--idx->nfree];
		} else {
			if (grow((void **)&idx->orgs, &idx->caporgs, idx->norgs + 1,
			         sizeof(*idx->orgs)) < 0 ||
			    grow_scratch(idx) < 0)
				goto fail;
			slot = idx->norgs++;
		}
		struct mm_org *o = &idx->orgs[slot];
		memset(o, 0, sizeof(*o));
		memcpy(o->id, canon, sizeof(canon));
		if (map_insert(idx, &idx->org_by_id, slot, org_id_key) < 0) {
			o->alive = false;
			if (grow((void **)&idx->free_slots, &idx->capfree, idx->nfree + 1,
			         sizeof(uint32_t)) == 0)
				idx->free_slots[idx->nfree++] = slot;
			goto fail;
		}
		o->alive = true;
		idx->nalive++;
		idf_changed(idx);
	}
	struct mm_org *o = &idx->orgs[slot];
	free(o->name);
	free(o->region);
	o->name = nname;
	o->region = nregion;
	o->kind = (uint8_t)kind;
	idx->okind[slot] = (uint8_t)kind;
	if (country && strlen(country) == 2)
		memcpy(o->country, country, 3);
	else
		o->country[0] = '\0';
	return slot;
fail:
	free(nname);
	free(nregion);
	return MM_NONE;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct mm_entry *x = a, *y = b;
	if (x->topic != y->topic)
		return x->topic < y->topic ? -1 : 1;
	return (int)y->level - (int)x->level; /* highest level first */
}

/* A sorted, de-duplicated copy of a profile list (NULL, 0 for an empty one). */
static int normalise(const struct mm_index *idx, const struct mm_entry *in, size_t n,
                     struct mm_entry **out, uint16_t *nout)
{
	*out = NULL;
	*nout = 0;
	if (!n)
		return 0;
	if (n > UINT16_MAX)
		n = UINT16_MAX;
	struct mm_entry *e = malloc(n * sizeof(*e));
	if (!e)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (in[i].topic < idx->ntopics && in[i].level >= 1 && in[i].level <= 3)
			e[k++] = in[i];
	qsort(e, k, sizeof(*e), cmp_entry);
	size_t m = 0;
	for (size_t i = 0; i < k; i++)
		if (m == 0 || e[m - 1].topic != e[i].topic)
			e[m++] = e[i];
	if (!m) {
		free(e);
		return 0;
	}
	*out = e;
	*nout = (uint16_t)m;
	return 0;
}

static uint32_t next_tepoch(struct mm_index *idx)
{
	if (++idx->tepoch == 0) {
		memset(idx->tstamp, 0, idx->ntopics * sizeof(uint32_t));
		idx->tepoch = 1;
	}
	return idx->tepoch;
}

/* Adds delta to nsub of every topic that is one of the offers or above one. */
static void count_subtree(struct mm_index *idx, const struct mm_entry *offers, uint16_t n,
                          int delta)
{
	idf_changed(idx);
	uint32_t ep = next_tepoch(idx);
	for (uint16_t i = 0; i < n; i++)
		for (uint32_t t = offers[i].topic; t != MM_NONE; t = idx->topics[t].parent) {
			if (idx->tstamp[t] == ep)
				break; /* this ancestor chain is counted already */
			idx->tstamp[t] = ep;
			idx->topics[t].nsub += (uint32_t)delta;
		}
}

/* Inverted lists are kept sorted by organisation slot, so that a query sweeps the
 * per-organisation scratch arrays in ascending order (friendly to caches and
 * prefetching). The first position whose slot is >= slot: */
static uint32_t posting_find(const uint32_t *post, uint32_t n, uint32_t slot)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if ((post[mid] >> 2) < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void posting_remove(uint32_t *post, uint32_t *n, uint32_t slot)
{
	uint32_t j = posting_find(post, *n, slot);
	if (j < *n && (post[j] >> 2) == slot) {
		memmove(post + j, post + j + 1, (*n - j - 1) * sizeof(uint32_t));
		--*n;
	}
}

/* Inserts (capacity reserved by the caller); appending is the common case. */
static void posting_insert(uint32_t *post, uint32_t *n, uint32_t value)
{
	uint32_t j =
	    *n && (post[*n - 1] >> 2) > (value >> 2) ? posting_find(post, *n, value >> 2) : *n;
	memmove(post + j + 1, post + j, (*n - j) * sizeof(uint32_t));
	post[j] = value;
	++*n;
}

static void postings_remove(struct mm_index *idx, uint32_t slot)
{
	struct mm_org *o = &idx->orgs[slot];
	for (uint16_t i = 0; i < o->noffers; i++) {
		struct mm_topic *t = &idx->topics[o->offers[i].topic];
		posting_remove(t->post, &t->npost, slot);
	}
	for (uint16_t i = 0; i < o->nseeks; i++) {
		struct mm_topic *t = &idx->topics[o->seeks[i].topic];
		posting_remove(t->spost, &t->nspost, slot);
	}
	count_subtree(idx, o->offers, o->noffers, -1);
}

int mm_index_set_profile(struct mm_index *idx, uint32_t slot, const struct mm_entry *offers,
                         size_t noffers, const struct mm_entry *seeks, size_t nseeks)
{
	if (slot >= idx->norgs || !idx->orgs[slot].alive)
		return -1;
	struct mm_entry *no, *ns;
	uint16_t nno, nns;
	if (normalise(idx, offers, noffers, &no, &nno) < 0)
		return -1;
	if (normalise(idx, seeks, nseeks, &ns, &nns) < 0) {
		free(no);
		return -1;
	}
	/* Reserve the postings first, so that nothing can fail half-way. */
	for (uint16_t i = 0; i < nno + nns; i++) {
		struct mm_topic *t = &idx->topics[i < nno ? no[i].topic : ns[i - nno].topic];
		if (i < nno
		        ? grow((void **)&t->post, &t->cappost, t->npost + 1, sizeof(uint32_t))
		        : grow((void **)&t->spost, &t->capspost, t->nspost + 1, sizeof(uint32_t))) {
			free(no);
			free(ns);
			return -1;
		}
	}
	postings_remove(idx, slot);
	struct mm_org *o = &idx->orgs[slot];
	free(o->offers);
	free(o->seeks);
	o->offers = no;
	o->noffers = nno;
	o->seeks = ns;
	o->nseeks = nns;
	idx->onseeks[slot] = nns;
	for (uint16_t i = 0; i < nno; i++) {
		struct mm_topic *t = &idx->topics[no[i].topic];
		posting_insert(t->post, &t->npost, slot << 2 | no[i].level);
	}
	for (uint16_t i = 0; i < nns; i++) {
		struct mm_topic *t = &idx->topics[ns[i].topic];
		posting_insert(t->spost, &t->nspost, slot << 2 | ns[i].level);
	}
	count_subtree(idx, no, nno, +1);
	return 0;
}

bool mm_index_remove_org(struct mm_index *idx, const char *id)
{
	uint32_t slot = mm_index_org(idx, id);
	if (slot == MM_NONE)
		return false;
	if (grow((void **)&idx->free_slots, &idx->capfree, idx->nfree + 1, sizeof(uint32_t)) < 0)
		return false;
	postings_remove(idx, slot);
	struct mm_org *o = &idx->orgs[slot];
	map_remove(idx, &idx->org_by_id, o->id, org_id_key);
	free(o->name);
	free(o->region);
	free(o->offers);
	free(o->seeks);
	memset(o, 0, sizeof(*o));
	o->alive = false;
	idx->okind[slot] = MM_DEAD;
	idx->onseeks[slot] = 0;
	idx->nalive--;
	idf_changed(idx);
	idx->free_slots[idx->nfree++] = slot;
	return true;
}

/* The main area of an organisation: the parent (or the topic itself, for a theme) most
 * of its offers fall under; ties: the lower topic. MM_NONE without offers. */
static uint32_t main_area(const struct mm_index *idx, const struct mm_org *o)
{
	uint32_t best = MM_NONE, bestn = 0;
	for (uint16_t i = 0; i < o->noffers; i++) {
		uint32_t t = o->offers[i].topic, a = idx->topics[t].parent;
		a = a == MM_NONE ? t : a;
		uint32_t n = 0;
		for (uint16_t j = 0; j < o->noffers; j++) {
			uint32_t u = o->offers[j].topic, b = idx->topics[u].parent;
			n += (b == MM_NONE ? u : b) == a;
		}
		if (n > bestn || (n == bestn && a < best)) {
			best = a;
			bestn = n;
		}
	}
	return best;
}

struct slot_key {
	uint32_t key, slot;
};

static int slot_key_cmp(const void *a, const void *b)
{
	const struct slot_key *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

int mm_index_compact(struct mm_index *idx)
{
	uint32_t n = idx->norgs;
	if (n == 0)
		return 0; /* nothing to renumber (and no scratch yet) */
	struct slot_key *k = malloc(n * sizeof(*k));
	struct mm_org *orgs = calloc(idx->caporgs ? idx->caporgs : 1, sizeof(*orgs));
	if (!k || !orgs) {
		free(k);
		free(orgs);
		return -1;
	}
	uint32_t m = 0;
	for (uint32_t s = 0; s < n; s++)
		if (idx->orgs[s].alive)
			k[m++] = (struct slot_key){ main_area(idx, &idx->orgs[s]), s };
	qsort(k, m, sizeof(*k), slot_key_cmp);
	for (uint32_t i = 0; i < m; i++)
		orgs[i] = idx->orgs[k[i].slot];
	free(idx->orgs);
	idx->orgs = orgs;
	idx->norgs = m;
	idx->nfree = 0;
	/* Inverted lists: refilled in the new slot order, hence sorted (same sizes). */
	for (uint32_t t = 0; t < idx->ntopics; t++)
		idx->topics[t].npost = idx->topics[t].nspost = 0;
	for (uint32_t s = 0; s < m; s++) {
		const struct mm_org *o = &idx->orgs[s];
		for (uint16_t i = 0; i < o->noffers; i++) {
			struct mm_topic *tp = &idx->topics[o->offers[i].topic];
			tp->post[tp->npost++] = s << 2 | o->offers[i].level;
		}
		for (uint16_t i = 0; i < o->nseeks; i++) {
			struct mm_topic *tp = &idx->topics[o->seeks[i].topic];
			tp->spost[tp->nspost++] = s << 2 | o->seeks[i].level;
		}
	}
	/* Dense arrays and scratch: rebuilt for the new slots. */
	for (uint32_t s = 0; s < idx->capscratch; s++) {
		idx->okind[s] = s < m ? idx->orgs[s].kind : MM_DEAD;
		idx->onseeks[s] = s < m ? idx->orgs[s].nseeks : 0;
	}
	memset(idx->sc, 0, idx->capscratch * sizeof(*idx->sc));
	memset(idx->rc, 0, idx->capscratch * sizeof(*idx->rc));
	memset(idx->xc, 0, idx->capscratch * sizeof(*idx->xc));
	memset(idx->onorm, 0, idx->capscratch * sizeof(*idx->onorm));
	mm_index_invalidate(idx); /* merged lists name slots */
	if (idx->org_by_id.cap)
		memset(idx->org_by_id.slots, 0, idx->org_by_id.cap * sizeof(uint32_t));
	idx->org_by_id.n = 0;
	int rc = 0;
	for (uint32_t s = 0; s < m; s++)
		if (map_insert(idx, &idx->org_by_id, s, org_id_key) < 0)
			rc = -1; /* cannot happen: the table is as large as before */
	free(k);
	return rc;
}

size_t mm_index_memory(const struct mm_index *idx)
{
	size_t b = sizeof(*idx);
	b += (size_t)idx->captopics * (sizeof(struct mm_topic) + sizeof(char *));
	b +=
	    (size_t)idx->ntopics * (sizeof(uint32_t) * 3 + 1); /* children, tstamp, tqueue, tdist */
	for (uint32_t i = 0; i < idx->ntopics; i++)
		b += strlen(idx->topics[i].slug) + 1 +
		     ((size_t)idx->topics[i].cappost + idx->topics[i].capspost +
		      2 * (size_t)idx->topics[i].capx) *
		         4;
	b += ((size_t)idx->topic_by_slug.cap + idx->topic_by_id.cap) * sizeof(uint32_t);
	b += (size_t)idx->caporgs * sizeof(struct mm_org);
	for (uint32_t i = 0; i < idx->norgs; i++) {
		const struct mm_org *o = &idx->orgs[i];
		if (!o->alive)
			continue;
		b += strlen(o->name) + 1 + (o->region ? strlen(o->region) + 1 : 0);
		b += ((size_t)o->noffers + o->nseeks) * sizeof(struct mm_entry);
	}
	b += (size_t)idx->capfree * sizeof(uint32_t);
	b += (size_t)idx->org_by_id.cap * sizeof(uint32_t);
	b += (size_t)idx->ntopics * (3 * sizeof(double) + 8 * sizeof(uint32_t) + 1); /* scratch */
	b += (size_t)idx->capscratch *
	     (3 * sizeof(struct mm_acc) + sizeof(struct mm_norm) + 4 + 1 + sizeof(uint16_t));
	b += idx->capcand * 24; /* struct mm_hit */
	return b;
}
