/* mm_index.h — the matchmaking index: the topic taxonomy, every organisation's profile
 * and one inverted list per topic node (who offers it, at which level). Pure C, no core
 * services: the plugin fills it from PostgreSQL and bus events, the unit tests by hand.
 * One index per worker process; not thread-safe (queries use scratch arrays inside). */
#ifndef MM_INDEX_H
#define MM_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Organisation kinds, in the order of the core's CHECK constraint. */
enum mm_kind {
	MM_SME = 0,
	MM_LARGE_ENTERPRISE,
	MM_HOSPITAL,
	MM_UNIVERSITY,
	MM_RESEARCH_CENTRE,
	MM_ASSOCIATION,
	MM_PUBLIC_BODY,
	MM_OTHER,
	MM_NKINDS
};
extern const char *const mm_kind_names[MM_NKINDS];
int mm_kind_from_name(const char *name); /* -1 when unknown */

#define MM_NONE     UINT32_MAX /* "no topic", "no organisation" */
#define MM_ID_LEN   36         /* a UUID in text form */
#define MM_MAX_DIST 6          /* the largest taxonomy distance the index handles */
#define MM_DEAD     0xFF       /* okind of a free slot */

/* One entry of a profile: a topic node and a level 1..3. */
struct mm_entry {
	uint32_t topic;
	uint8_t level;
};

struct mm_org {
	char id[MM_ID_LEN + 1];          /* lower-case UUID */
	uint8_t kind;                    /* enum mm_kind */
	bool alive;                      /* false for a free slot */
	char country[3];                 /* "" when unknown */
	char *name;                      /* owned */
	char *region;                    /* owned, NULL when unknown */
	struct mm_entry *offers, *seeks; /* owned, sorted by topic, no duplicates */
	uint16_t noffers, nseeks;
};

struct mm_topic {
	char *slug; /* owned */
	char id[MM_ID_LEN + 1];
	uint32_t parent;                 /* MM_NONE for a theme */
	uint32_t depth;                  /* 0 for a theme */
	uint32_t first_child, nchildren; /* into mm_index.children */
	uint32_t *post;                  /* offers postings: org slot << 2 | level; owned */
	uint32_t npost, cappost;
	uint32_t *spost; /* seeks postings, the same way; owned */
	uint32_t nspost, capspost;
	uint32_t nsub; /* organisations offering this topic or one below it */
	/* For a topic with children, built by a query when needed (mm_score.c): every
	 * organisation offering this topic or one at most `levels` below it, sorted by slot,
	 * with its offers vector's value at this node. Valid while xgen ==
	 * mm_index.tidfgen. Owned. */
	uint32_t *xorg;
	float *xval;
	uint32_t nx, capx, xgen;
};

/* Per-organisation accumulator of one match query: 8 bytes, so that the accumulators of
 * 100k organisations stay in the cache. The stamp says which query (epoch) the value
 * belongs to. Single precision: mm_score.c widens its bounds by the rounding error. */
struct mm_acc {
	uint32_t stamp;
	float val;
};

/* Per-organisation cached norms of its expanded offers and seeks vectors (see
 * mm_score.h), valid while gen == mm_index.tidfgen. */
struct mm_norm {
	float offers, seeks;
	uint32_t gen;
};

/* Open addressing (linear probing) from a string key to an array position. */
struct mm_map {
	uint32_t *slots; /* position + 1; 0 = empty */
	uint32_t cap;    /* power of two */
	uint32_t n;
};

struct mm_index {
	struct mm_topic *topics;
	uint32_t ntopics, captopics;
	uint32_t *children;
	char **pending_parent; /* parent ids given to add_topic, until finish_topics */
	bool topics_done;
	struct mm_map topic_by_slug, topic_by_id;

	struct mm_org *orgs;
	uint32_t norgs, caporgs; /* slots in use (alive or free), allocated */
	uint32_t nalive;
	uint32_t *free_slots;
	uint32_t nfree, capfree;
	struct mm_map org_by_id;

	/* Scratch for queries and updates (see mm_score.c). Grown with caporgs. */
	uint32_t *tstamp, tepoch;   /* per topic */
	uint32_t *tqueue;           /* per topic: BFS queue */
	uint8_t *tdist;             /* per topic: BFS distance */
	double *tval;               /* per topic: a node vector of the current query */
	uint32_t *tvstamp, tvepoch; /* per topic: tval is set */
	uint32_t *tlist;            /* per topic: topics with tval set */
	double *fval;               /* per topic: tval spread down (mm_score.c) */
	uint32_t *fstamp, fepoch;   /* per topic: fval is set */
	uint32_t *flist, *mlist;    /* per topic: lists of one query (mm_score.c) */
	double *tidf;               /* per topic: cached idf */
	uint32_t *tidfstamp;        /* per topic: tidf valid when == tidfgen */
	uint32_t tidfgen;           /* bumped whenever an idf (or the norm parameters) may change */
	double norm_params[5]; /* gamma, levels, level weights the cached norms were made with */
	struct mm_acc *sc;     /* per org: topic fit (the dot product; < 0: filtered out) */
	struct mm_acc *rc;     /* per org: reciprocity; marks of the consortium search */
	struct mm_acc *xc;     /* per org: building a topic's merged list */
	uint32_t *xslots;      /* per org: the same */
	uint32_t xc_epoch;
	uint32_t sc_aepoch, sc_repoch;
	struct mm_norm *onorm; /* per org: cached vector norms */
	uint8_t *okind;        /* per org: its kind, dense for the hot loops; MM_DEAD when free */
	uint16_t *onseeks;     /* per org: how many topics it seeks, dense as well */
	uint32_t capscratch;
	void *cand; /* candidates of one query (struct mm_hit), reused */
	size_t capcand;
};

struct mm_index *mm_index_new(void);
void mm_index_free(struct mm_index *idx);

/* Taxonomy: add every topic (parent_id may name a topic added later, or be NULL), then
 * finish_topics once, before any organisation. -1 on a duplicate, a bad id, an unknown
 * parent or a cycle (err says which). */
int mm_index_add_topic(struct mm_index *idx, const char *id, const char *slug,
                       const char *parent_id);
int mm_index_finish_topics(struct mm_index *idx, char *err, size_t errlen);

uint32_t mm_index_topic_by_slug(const struct mm_index *idx, const char *slug);
uint32_t mm_index_topic_by_id(const struct mm_index *idx, const char *id);

/* Organisations. put_org inserts or updates the descriptive fields and returns the slot
 * (MM_NONE on a bad id or kind); set_profile replaces both topic lists (entries with an
 * unknown topic or a level outside 1..3 are skipped; a topic listed twice keeps its
 * highest level). remove_org returns false when the id is unknown. */
uint32_t mm_index_put_org(struct mm_index *idx, const char *id, const char *name, int kind,
                          const char *country, const char *region);
int mm_index_set_profile(struct mm_index *idx, uint32_t slot, const struct mm_entry *offers,
                         size_t noffers, const struct mm_entry *seeks, size_t nseeks);
bool mm_index_remove_org(struct mm_index *idx, const char *id);
uint32_t mm_index_org(const struct mm_index *idx, const char *id); /* slot or MM_NONE */
/* Renumbers the organisations' slots so that those with the same main area (where most of
 * their offers are) are neighbours, and drops free slots: the inverted lists of one
 * taxonomy neighbourhood then touch nearby accumulators, which is what a query reads.
 * Slots change (ids do not); -1 when out of memory (nothing changed). */
int mm_index_compact(struct mm_index *idx);

/* Taxonomy distance: edges on the path between a and b, or -1 when they are in
 * different themes (no common ancestor). */
int mm_topic_distance(const struct mm_index *idx, uint32_t a, uint32_t b);
/* Whether a is b or one of b's ancestors. */
bool mm_topic_is_ancestor_or_self(const struct mm_index *idx, uint32_t a, uint32_t b);

/* Rarity of a topic: log(1 + N / (1 + n)) with N the organisations in the index and n
 * those offering the topic or a topic below it. */
double mm_idf(const struct mm_index *idx, uint32_t topic);

/* Every idf-dependent cache is stale (idf values, vector norms). */
void mm_index_invalidate(struct mm_index *idx);

/* Bytes held by the index (structures, strings, postings, maps, scratch). */
size_t mm_index_memory(const struct mm_index *idx);

/* Text helpers shared by the plugin: a canonical (lower-case) UUID copy of s into out
 * (MM_ID_LEN + 1 bytes); false when s is not a UUID. */
bool mm_uuid_canon(const char *s, char *out);

#endif
