/* mm_plugin.h — what the matchmaking plugin's files share: the plugin state and small
 * helpers for requests. Internal to the plugin. */
#ifndef MM_PLUGIN_H
#define MM_PLUGIN_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, when built out of tree */
#endif

#include <spearhead/plugin.h>
#include <time.h>

#include "mm_builtin.h"
#include "mm_consortium.h"
#include "mm_index.h"
#include "mm_score.h"

#define MM_HAS_API(api, member)                                                                    \
	((api)->size >= offsetof(struct sp_api, member) + sizeof((api)->member))

struct mm_build;

/* A request that arrived before the first index was built: answered once it is. */
struct mm_parked {
	struct sp_request *req;
	sp_route_fn *fn;
};

struct mm {
	const struct sp_api *api;
	struct sp_plugin *plugin;
	struct mm_index *idx; /* the serving index; NULL until the first build */
	struct mm_params params;
	struct mm_builtin builtin; /* state of the registered "builtin" scorer */
	bool builtin_registered;

	/* settings besides the scoring parameters */
	long scorer_candidates;
	long intro_per_day;
	long refresh_s;
	long cons_per_topic;
	double cons_lambda, cons_mu;
	long cons_budget;

	/* index builds */
	struct mm_build *build; /* in flight, or NULL */
	bool build_again;       /* another build once this one is done */
	json_t *journal;        /* events received while a build is in flight: [[type, data]] */
	struct sp_timer *debounce, *refresh, *retry;
	unsigned failures; /* consecutive failed builds */

	struct mm_parked *parked;
	size_t nparked, capparked;

	/* figures for GET /v1/matchmaking/index and /metrics */
	unsigned long long generation, events, events_applied;
	double build_ms;
	char built_at[32];
	struct sp_metric *m_orgs, *m_bytes, *m_builds, *m_events, *m_matches, *m_intros,
	    *m_consortia;
};

/* Defers fn(req) until the first index exists; answers 503 when too many wait. */
void mm_park(struct mm *mm, struct sp_request *req, sp_route_fn *fn);

/* {id, name, kind, country, region} of an organisation of the index (new). */
json_t *mm_org_json(const struct mm_index *idx, uint32_t slot);

/* The monotonic clock, and milliseconds since t0. */
struct timespec mm_now(void);
double mm_elapsed_ms(struct timespec t0);

/* Characters (code points) of a UTF-8 string. */
size_t mm_utf8_len(const char *s);

/* Adds "unknown field" to errors for every key of body not in allowed (NULL-ended). */
void mm_unknown_fields(json_t *body, const char *const *allowed, json_t *errors);
/* Sets errors[field] = msg (copied) unless already set. */
void mm_error(json_t *errors, const char *field, const char *msg);

/* Parses a ?limit= (default def, 1..max) and ?cursor= (a positive integer) query; answers
 * 400 and returns false on a bad value. cursor is "" when absent. */
bool mm_page_params(struct mm *mm, struct sp_request *req, int def, int max, int *limit,
                    char *cursor, size_t cursor_len);

/* The Idempotency-Key header (NULL when absent) in *key; answers 400 and returns false
 * when it is not 1 to 200 visible ASCII characters. */
bool mm_idempotency_key(struct mm *mm, struct sp_request *req, const char **key);

/* Route registration of each part. */
int mm_matches_init(struct mm *mm);
int mm_intro_init(struct mm *mm);
int mm_consortia_init(struct mm *mm);

#endif
