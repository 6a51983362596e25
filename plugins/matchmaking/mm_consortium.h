/* mm_consortium.h — consortium suggestions: small sets of organisations that together
 * cover a call's topics and satisfy its rules, found by branch and bound (and by
 * exhaustive search, for the tests). Pure C over a prepared candidate table. */
#ifndef MM_CONSORTIUM_H
#define MM_CONSORTIUM_H

#include <stdbool.h>
#include <stdint.h>

#define MM_CONS_MAX 8 /* partners in one consortium at most */

/* "At least count members whose kind is in kind_mask." */
struct mm_cons_req {
	uint32_t kind_mask;
	int count;
};

struct mm_cons_problem {
	int ncand;              /* candidates 0..ncand-1 */
	int ntopics;            /* topics 0..ntopics-1 */
	const double *q;        /* [c * ntopics + t]: how well c covers t, 0 = not at all */
	const uint8_t *kind;    /* [c]: enum mm_kind */
	const double *pf;       /* [c * ncand + d]: pair fit in [0, 1], symmetric */
	const bool *included;   /* [c]: must be in (NULL: none) */
	const bool *banned;     /* [c]: may not be in (NULL: none) */
	int min_size, max_size; /* 1 <= min <= max <= MM_CONS_MAX */
	const struct mm_cons_req *reqs;
	int nreqs;
	double lambda, mu; /* objective = coverage + lambda * mean pair fit - mu * size */
	long node_budget;  /* branch and bound nodes per solve; 0 = no limit */
};

struct mm_cons_solution {
	bool found;
	int n;
	int members[MM_CONS_MAX]; /* ascending */
	double objective, coverage, pair_fit;
};

/* The objective of a set (members ascending); coverage and pair_fit may be NULL. */
double mm_cons_objective(const struct mm_cons_problem *pb, const int *members, int n,
                         double *coverage, double *pair_fit);
/* Every topic covered, size within bounds, kind requirements met, inclusions in. */
bool mm_cons_feasible(const struct mm_cons_problem *pb, const int *members, int n);

/* The best feasible set by branch and bound. Returns 0 (sol->found says whether one
 * exists), -1 on out of memory. *exact is false when the node budget cut the search. */
int mm_cons_solve(const struct mm_cons_problem *pb, struct mm_cons_solution *sol, long *nodes,
                  bool *exact);
/* The same by enumerating every subset (small instances only). */
int mm_cons_brute(const struct mm_cons_problem *pb, struct mm_cons_solution *sol);

/* Up to limit distinct consortia: the best, then the best without the (non-included)
 * members of the earlier ones; when that leaves none, the best with one earlier member
 * left out at a time. They are returned ranked by objective. Returns how many were written
 * to out, or -1 (out of memory). */
int mm_cons_suggest(const struct mm_cons_problem *pb, int limit, struct mm_cons_solution *out,
                    long *nodes, bool *exact);

#endif
