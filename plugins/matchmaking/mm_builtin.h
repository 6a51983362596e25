/* mm_builtin.h — the built-in score behind the public scorer interface
 * (struct sp_scorer_ops), and reasons as JSON. Pure: no core services. */
#ifndef MM_BUILTIN_H
#define MM_BUILTIN_H

#include <spearhead/plugin.h>

#include "mm_score.h"

/* State of the registered built-in scorer: where the current index and parameters are
 * (the plugin swaps the index on rebuilds). */
struct mm_builtin {
	struct mm_index **idx;
	const struct mm_params *params;
};

/* sp_scorer_ops.score for the built-in formula: profiles are looked up by slug in the
 * current index (unknown slugs count as nothing). */
double mm_builtin_score(void *state, const struct sp_match_profile *requester,
                        const struct sp_match_topic *sought, size_t nsought,
                        const struct sp_match_profile *candidate, json_t *reasons);

/* Appends reasons as objects {"topic", "relation", "contribution", ...} to arr
 * (borrowed). Returns 0 or -1. */
int mm_reasons_json(const struct mm_index *idx, const struct mm_reason *r, size_t n, int req_kind,
                    int cand_kind, json_t *arr);

/* A profile of the index as scorers see it; the arrays (offers, seeks) are malloc'd into
 * *buf (free it). -1 on out of memory. */
int mm_profile_of(const struct mm_index *idx, uint32_t slot, struct sp_match_profile *p,
                  struct sp_match_topic **buf);

/* Makes reasons (borrowed array) sum exactly to the score: each numeric contribution is
 * quantised, the others are dropped, and a missing remainder becomes one reason
 * {"relation": "scorer"}. Returns the score in [0, 1]. */
double mm_normalise_reasons(double score, json_t *reasons);

#endif
