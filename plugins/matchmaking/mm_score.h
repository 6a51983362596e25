/* mm_score.h — the built-in matchmaking score (see docs/matchmaking.md for the formula)
 * and the top-k search over the index. Pure C: no core services. */
#ifndef MM_SCORE_H
#define MM_SCORE_H

#include "mm_index.h"

/* Contributions are rounded to multiples of MM_QUANTUM (2^-24): sums of such numbers
 * below 1 are exact in IEEE double whatever the order, so the reasons of a result add
 * up to its score exactly. */
#define MM_QUANTUM (1.0 / 16777216.0)
double mm_quantize(double x);

struct mm_params {
	double gamma;     /* partial credit per taxonomy step, 0 < gamma < 1 */
	int max_distance; /* farthest taxonomy distance that still counts, 0..MM_MAX_DIST */
	double w_topics, w_kinds, w_recip; /* normalised to sum 1 */
	double level_weight[4];            /* [level]: 1 → 0.5, 2 → 0.75, 3 → 1 */
	double kind[MM_NKINDS][MM_NKINDS]; /* [requester kind][candidate kind] in [0, 1] */
	uint32_t max_candidates;           /* exact re-ranking stops after this many */
	double gpow[MM_MAX_DIST + 1];      /* gamma^d, 0 beyond max_distance (mm_params_update) */
	int levels; /* how far up a topic spreads in the vectors: max_distance / 2 */
	/* Cost of reciprocity computed for one candidate from its profile, in entries of a
	 * swept seeks list (a measured constant, not a setting; tests force either way). */
	double recip_direct_cost;
};

void mm_params_default(struct mm_params *p);
/* Recomputes derived values (gpow, levels) after gamma or max_distance changed. */
void mm_params_update(struct mm_params *p);
/* Normalises the three weights (false when they sum to 0). */
bool mm_params_set_weights(struct mm_params *p, double topics, double kinds, double recip);
/* Applies overrides {"sme": {"hospital": 1.0, ...}, ...} (JSON text; "" = none) on top of
 * the default table; false with a message in err when the text is invalid. Only
 * parses: needs jansson. */
bool mm_params_kind_matrix(struct mm_params *p, const char *json_text, char *err, size_t errlen);

/* An organisation as the scorer sees it. */
struct mm_view {
	int kind; /* enum mm_kind */
	const struct mm_entry *offers;
	size_t noffers;
	const struct mm_entry *seeks;
	size_t nseeks;
};
void mm_view_of(const struct mm_index *idx, uint32_t slot, struct mm_view *v);

enum mm_reason_type {
	MM_REASON_OFFERS = 0, /* a sought topic the candidate offers (maybe nearby) */
	MM_REASON_SEEKS = 1,  /* reciprocity: the candidate seeks what the requester offers */
	MM_REASON_KIND = 2,   /* complementarity of kinds */
};

struct mm_reason {
	int type;         /* enum mm_reason_type */
	uint32_t topic;   /* sought topic (OFFERS: the requester's; SEEKS: the candidate's) */
	uint32_t matched; /* offered topic that matched it */
	int distance;     /* taxonomy distance between the two */
	int level;        /* level of the matched offer */
	double factor;    /* KIND: the table value */
	double contribution;
};

/* Best partial-credit match of topic s among offers: gamma^d * level_weight, d <= max
 * distance; 0 when none. *matched, *dist, *level describe the winner (ties: smaller
 * distance, then lower topic index). */
double mm_fit(const struct mm_index *idx, const struct mm_params *p, uint32_t s,
              const struct mm_entry *offers, size_t noffers, uint32_t *matched, int *dist,
              int *level);

/* Topic vectors (docs/matchmaking.md): a list of topics with levels is the vector that
 * gives each listed topic t the weight level_weight * idf(t), and each of its ancestors
 * up to p->levels above it gamma^(steps up) times that (weights of one node add up).
 * mm_kernel is the dot product of the vectors of two single topics of weight 1: the sum,
 * over the common ancestors-or-self n within p->levels of both, of gamma^(d(a,n) +
 * d(b,n)); 0 when they meet nowhere. */
double mm_kernel(const struct mm_index *idx, const struct mm_params *p, uint32_t a, uint32_t b);
/* The Euclidean norm of the vector of a list (duplicates add up). */
double mm_vec_norm(const struct mm_index *idx, const struct mm_params *p, const struct mm_entry *e,
                   size_t n);
/* The norms of organisation slot's offers and seeks vectors, cached in idx->onorm. */
const struct mm_norm *mm_org_norms(struct mm_index *idx, const struct mm_params *p, uint32_t slot);

/* The score of cand for req looking for sought (deduplicated), in [0, 1]: the sum of the
 * quantised contributions. reasons (capacity nsought + cand->nseeks + 1, may be NULL)
 * receives the non-zero contributions, in order: sought topics, kind, reciprocity. */
double mm_score_pair(const struct mm_index *idx, const struct mm_params *p,
                     const struct mm_view *req, const struct mm_entry *sought, size_t nsought,
                     const struct mm_view *cand, struct mm_reason *reasons, size_t *nreasons);

/* Filters of a match query; empty lists do not filter. */
struct mm_filter {
	uint32_t kind_mask; /* bit per enum mm_kind; 0 = any */
	const char (*countries)[3];
	size_t ncountries;
	const char *const *regions; /* compared case-insensitively */
	size_t nregions;
	const uint32_t *exclude; /* organisation slots */
	size_t nexclude;
};

struct mm_hit {
	uint32_t org;
	double score;
	double bound; /* the pre-selection bound (candidates only) */
};

struct mm_stats {
	uint32_t touched;    /* organisations reached through the inverted lists */
	uint32_t postings;   /* inverted-list entries read */
	uint32_t candidates; /* with a topic fit, after filters */
	uint32_t bounded;    /* of which could still enter on their topic part: bounded fully */
	uint32_t rescored;   /* scored exactly */
	bool exact;          /* the bound proved the top k (else max_candidates cut it) */
};

/* The top k organisations for requester (a slot) looking for sought: exact scores,
 * ranked by score, then organisation id. Never the requester nor an excluded or
 * filtered one; only organisations with some topic fit. Returns the number written to
 * out (capacity k), or -1 (out of memory). */
int mm_match(struct mm_index *idx, const struct mm_params *p, uint32_t requester,
             const struct mm_entry *sought, size_t nsought, const struct mm_filter *f, size_t k,
             struct mm_hit *out, struct mm_stats *stats);

/* The first m candidates by their pre-selection bound (topic fit and kinds), for
 * scorers that re-rank them: out gets org and bound. Returns the count, or -1. */
int mm_candidates(struct mm_index *idx, const struct mm_params *p, uint32_t requester,
                  const struct mm_entry *sought, size_t nsought, const struct mm_filter *f,
                  size_t m, struct mm_hit *out, struct mm_stats *stats);

/* Ranking order of hits: score descending, then organisation id ascending. */
int mm_hit_cmp(const struct mm_index *idx, const struct mm_hit *a, const struct mm_hit *b);

/* Enumerates the topics within max_distance of s, s first, by increasing distance: the
 * count is returned, the topics are idx->tqueue[0..count), the distance of topic t is
 * idx->tdist[t]. Valid until the next call. */
uint32_t mm_neighbourhood(struct mm_index *idx, uint32_t s, int max_distance);

/* A fresh stamp value for one of the index's per-organisation scratch arrays (stamps of n
 * entries are cleared when the counter wraps). */
uint32_t mm_scratch_epoch(uint32_t *epoch, uint32_t *stamps, uint32_t n);
/* The same for the per-organisation records idx->sc (a) or idx->rc (not a). */
uint32_t mm_acc_epoch(struct mm_index *idx, bool a);

#endif
