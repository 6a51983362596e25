/* mm_consortium.c — branch and bound over candidate sets: branch on the uncovered topic
 * with the fewest candidates left, then on optional extra members; bound by the best
 * coverage still reachable, the best pair fit still reachable and the smallest size
 * still possible. */
#include "mm_consortium.h"

#include <stdlib.h>
#include <string.h>

#define EPS 1e-9

double mm_cons_objective(const struct mm_cons_problem *pb, const int *members, int n,
                         double *coverage, double *pair_fit)
{
	double cov = 0;
	for (int t = 0; t < pb->ntopics; t++) {
		double best = 0;
		for (int i = 0; i < n; i++) {
			double v = pb->q[members[i] * pb->ntopics + t];
			if (v > best)
				best = v;
		}
		cov += best;
	}
	cov = pb->ntopics ? cov / pb->ntopics : 0;
	double pair = 0;
	int npairs = 0;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			pair += pb->pf[members[i] * pb->ncand + members[j]];
			npairs++;
		}
	pair = npairs ? pair / npairs : 0;
	if (coverage)
		*coverage = cov;
	if (pair_fit)
		*pair_fit = pair;
	return cov + pb->lambda * pair - pb->mu * n;
}

bool mm_cons_feasible(const struct mm_cons_problem *pb, const int *members, int n)
{
	if (n < pb->min_size || n > pb->max_size)
		return false;
	for (int t = 0; t < pb->ntopics; t++) {
		bool covered = false;
		for (int i = 0; i < n && !covered; i++)
			covered = pb->q[members[i] * pb->ntopics + t] > 0;
		if (!covered)
			return false;
	}
	for (int r = 0; r < pb->nreqs; r++) {
		int have = 0;
		for (int i = 0; i < n; i++)
			have += (pb->reqs[r].kind_mask >> pb->kind[members[i]]) & 1;
		if (have < pb->reqs[r].count)
			return false;
	}
	for (int c = 0; pb->included && c < pb->ncand; c++) {
		if (!pb->included[c])
			continue;
		bool in = false;
		for (int i = 0; i < n && !in; i++)
			in = members[i] == c;
		if (!in)
			return false;
	}
	for (int i = 0; pb->banned && i < n; i++)
		if (pb->banned[members[i]])
			return false;
	return true;
}

static void consider(const struct mm_cons_problem *pb, const int *members, int n,
                     struct mm_cons_solution *best)
{
	int sorted[MM_CONS_MAX];
	memcpy(sorted, members, n * sizeof(int));
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			int t = sorted[j];
			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	double cov, pair;
	double obj = mm_cons_objective(pb, sorted, n, &cov, &pair);
	if (best->found && !(obj > best->objective + 1e-12))
		return;
	best->found = true;
	best->n = n;
	memcpy(best->members, sorted, n * sizeof(int));
	best->objective = obj;
	best->coverage = cov;
	best->pair_fit = pair;
}

/* ---- exhaustive search ---- */

static void brute_rec(const struct mm_cons_problem *pb, int from, int *members, int n,
                      struct mm_cons_solution *best)
{
	if (mm_cons_feasible(pb, members, n))
		consider(pb, members, n, best);
	if (n == pb->max_size)
		return;
	for (int c = from; c < pb->ncand; c++) {
		if (pb->banned && pb->banned[c])
			continue;
		members[n] = c;
		brute_rec(pb, c + 1, members, n + 1, best);
	}
}

int mm_cons_brute(const struct mm_cons_problem *pb, struct mm_cons_solution *sol)
{
	memset(sol, 0, sizeof(*sol));
	if (pb->max_size > MM_CONS_MAX || pb->min_size < 1 || pb->min_size > pb->max_size)
		return 0;
	int members[MM_CONS_MAX];
	brute_rec(pb, 0, members, 0, sol);
	return 0;
}

/* ---- branch and bound ---- */

struct bb {
	const struct mm_cons_problem *pb;
	int words;
	uint64_t *buf; /* 2 bitsets per depth */
	int **by_topic;
	int *ntopic;
	int *by_pf;
	double *best_pf;
	uint64_t **req_sets;
	int members[MM_CONS_MAX + 1];
	int n;
	long nodes;
	bool aborted;
	struct mm_cons_solution best;
	int *order;     /* scratch for extension ordering, per depth */
	double *topa;   /* scratch for the bound, per depth */
	double *have;   /* scratch: coverage per topic, per depth */
	double *potent; /* scratch */
};

static bool bit(const uint64_t *s, int i)
{
	return (s[i >> 6] >> (i & 63)) & 1;
}

static void bit_clear(uint64_t *s, int i)
{
	s[i >> 6] &= ~(UINT64_C(1) << (i & 63));
}

static int count_and(const uint64_t *a, const uint64_t *b, int words)
{
	int n = 0;
	for (int w = 0; w < words; w++)
		n += __builtin_popcountll(a[w] & b[w]);
	return n;
}

static struct bb *cmp_ctx;
static int cmp_pf(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	double u = cmp_ctx->best_pf[x], v = cmp_ctx->best_pf[y];
	if (u != v)
		return u > v ? -1 : 1;
	return x - y;
}

static const struct mm_cons_problem *cmp_pb;
static int cmp_topic_t;
static int cmp_q(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	double u = cmp_pb->q[x * cmp_pb->ntopics + cmp_topic_t];
	double v = cmp_pb->q[y * cmp_pb->ntopics + cmp_topic_t];
	if (u != v)
		return u > v ? -1 : 1;
	return x - y;
}

/* Keeps the k largest values seen in top (*n of them), in descending order. */
static void keep_largest(double *top, int *n, int k, double v)
{
	int at;
	if (*n < k)
		at = (*n)++;
	else if (k > 0 && v > top[k - 1])
		at = k - 1;
	else
		return;
	while (at > 0 && top[at - 1] < v) {
		top[at] = top[at - 1];
		at--;
	}
	top[at] = v;
}

static void search(struct bb *b, int depth, const uint64_t *allowed)
{
	const struct mm_cons_problem *pb = b->pb;
	if (b->aborted)
		return;
	if (pb->node_budget && ++b->nodes > pb->node_budget) {
		b->aborted = true;
		return;
	}
	if (!pb->node_budget)
		b->nodes++;
	int n = b->n, T = pb->ntopics;
	/* What the current set already achieves. */
	double cov_ub = 0, cov_have = 0;
	double *have_t = b->have + (size_t)depth * T;
	int uncovered = 0;
	for (int t = 0; t < T; t++) {
		double have = 0;
		for (int i = 0; i < n; i++) {
			double v = pb->q[b->members[i] * T + t];
			if (v > have)
				have = v;
		}
		have_t[t] = have;
		cov_have += have;
		if (have <= 0)
			uncovered++;
		double reach = have;
		for (int j = 0; j < b->ntopic[t]; j++) {
			int c = b->by_topic[t][j];
			if (bit(allowed, c)) {
				if (pb->q[c * T + t] > reach)
					reach = pb->q[c * T + t];
				break; /* the lists are sorted by quality */
			}
		}
		cov_ub += reach;
	}
	cov_ub /= T;
	cov_have /= T;
	double pairsum = 0;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			pairsum += pb->pf[b->members[i] * pb->ncand + b->members[j]];
	/* The best pair fit any allowed candidate has with anyone. */
	double pmax = 0;
	for (int j = 0; j < pb->ncand; j++) {
		int c = b->by_pf[j];
		if (bit(allowed, c)) {
			pmax = b->best_pf[c];
			break;
		}
	}
	/* Kind requirements: what is missing must still be available and fit. */
	int max_deficit = 0;
	for (int r = 0; r < pb->nreqs; r++) {
		int have = 0;
		for (int i = 0; i < n; i++)
			have += (pb->reqs[r].kind_mask >> pb->kind[b->members[i]]) & 1;
		int deficit = pb->reqs[r].count - have;
		if (deficit <= 0)
			continue;
		if (count_and(allowed, b->req_sets[r], b->words) < deficit)
			return;
		if (deficit > max_deficit)
			max_deficit = deficit;
	}
	int jmin = uncovered ? 1 : 0;
	if (max_deficit > jmin)
		jmin = max_deficit;
	if (pb->min_size - n > jmin)
		jmin = pb->min_size - n;
	int jmax = pb->max_size - n;
	if (jmin > jmax)
		return;
	/* Bound for each number j of members still to add: the pairs they form with the
	 * current members are at most the j largest sums a(c) = sum of pf(c, s) over the
	 * members s; the pairs among themselves at most pmax each; the coverage they add at
	 * most the j largest gains g(c) (what c alone would add), and at most what the
	 * allowed candidates can reach at all. */
	double *top = b->topa + (size_t)depth * 2 * (MM_CONS_MAX + 1);
	double *topg = top + MM_CONS_MAX + 1;
	int ntop = 0, ntopg = 0;
	if (jmax > 0) {
		for (int c = 0; c < pb->ncand; c++) {
			if (!bit(allowed, c))
				continue;
			double g = 0;
			for (int t = 0; t < T; t++)
				if (pb->q[c * T + t] > have_t[t])
					g += pb->q[c * T + t] - have_t[t];
			g /= T;
			keep_largest(topg, &ntopg, jmax, g);
			double a = 0;
			for (int i = 0; i < n; i++)
				a += pb->pf[c * pb->ncand + b->members[i]];
			keep_largest(top, &ntop, jmax, a);
		}
	}
	double ub = -1e300;
	double added = 0, gained = 0;
	for (int j = 0; j <= jmax && j <= ntop; j++) {
		if (j > 0) {
			added += top[j - 1];
			gained += topg[j - 1];
		}
		if (j < jmin)
			continue;
		int m = n + j;
		double pairs =
		    m >= 2 ? (pairsum + added + pmax * j * (j - 1) / 2.0) / (m * (m - 1) / 2.0) : 0;
		if (pairs > 1)
			pairs = 1;
		double cov = cov_have + gained < cov_ub ? cov_have + gained : cov_ub;
		double u = cov + pb->lambda * pairs - pb->mu * m;
		if (u > ub)
			ub = u;
	}
	if (ub == -1e300 || (b->best.found && ub + EPS < b->best.objective))
		return;

	uint64_t *cur = b->buf + (size_t)depth * 2 * b->words;
	uint64_t *child = cur + b->words;
	memcpy(cur, allowed, b->words * sizeof(uint64_t));
	if (uncovered) {
		/* Branch on the uncovered topic with the fewest candidates left: every
		 * completion contains one of them; branch i takes the i-th and none before. */
		int pick = -1, fewest = 0;
		for (int t = 0; t < T; t++) {
			bool covered = false;
			for (int i = 0; i < n && !covered; i++)
				covered = pb->q[b->members[i] * T + t] > 0;
			if (covered)
				continue;
			int k = 0;
			for (int j = 0; j < b->ntopic[t]; j++)
				k += bit(allowed, b->by_topic[t][j]);
			if (pick < 0 || k < fewest) {
				pick = t;
				fewest = k;
			}
		}
		if (fewest == 0 || n == pb->max_size)
			return;
		for (int j = 0; j < b->ntopic[pick] && !b->aborted; j++) {
			int c = b->by_topic[pick][j];
			if (!bit(cur, c))
				continue;
			bit_clear(cur, c);
			memcpy(child, cur, b->words * sizeof(uint64_t));
			b->members[b->n++] = c;
			search(b, depth + 1, child);
			b->n--;
		}
		return;
	}
	if (n >= pb->min_size) {
		bool kinds_ok = max_deficit == 0;
		if (kinds_ok)
			consider(pb, b->members, n, &b->best);
	}
	if (n == pb->max_size)
		return;
	/* Every topic is covered: branch on optional extra members, most promising first. */
	int *order = b->order + (size_t)depth * pb->ncand;
	int m = 0;
	for (int c = 0; c < pb->ncand; c++) {
		if (!bit(cur, c))
			continue;
		double gain = 0;
		for (int t = 0; t < T; t++) {
			double have = 0;
			for (int i = 0; i < n; i++)
				if (pb->q[b->members[i] * T + t] > have)
					have = pb->q[b->members[i] * T + t];
			if (pb->q[c * T + t] > have)
				gain += pb->q[c * T + t] - have;
		}
		b->potent[c] = gain / T + pb->lambda * b->best_pf[c];
		order[m++] = c;
	}
	for (int i = 1; i < m; i++)
		for (int j = i; j > 0; j--) {
			int x = order[j - 1], y = order[j];
			if (b->potent[x] > b->potent[y] || (b->potent[x] == b->potent[y] && x < y))
				break;
			order[j - 1] = y;
			order[j] = x;
		}
	for (int i = 0; i < m && !b->aborted; i++) {
		int c = order[i];
		bit_clear(cur, c);
		memcpy(child, cur, b->words * sizeof(uint64_t));
		b->members[b->n++] = c;
		search(b, depth + 1, child);
		b->n--;
	}
}

int mm_cons_solve(const struct mm_cons_problem *pb, struct mm_cons_solution *sol, long *nodes,
                  bool *exact)
{
	memset(sol, 0, sizeof(*sol));
	if (exact)
		*exact = true;
	if (pb->max_size > MM_CONS_MAX || pb->min_size < 1 || pb->min_size > pb->max_size ||
	    pb->ntopics < 1 || pb->ncand < 1)
		return 0;
	struct bb b;
	memset(&b, 0, sizeof(b));
	b.pb = pb;
	b.words = (pb->ncand + 63) / 64;
	int depths = pb->max_size + 2;
	int rc = -1;
	b.buf = calloc((size_t)depths * 2 * b.words, sizeof(uint64_t));
	b.by_topic = calloc(pb->ntopics, sizeof(int *));
	b.ntopic = calloc(pb->ntopics, sizeof(int));
	b.by_pf = calloc(pb->ncand, sizeof(int));
	b.best_pf = calloc(pb->ncand, sizeof(double));
	b.req_sets = calloc(pb->nreqs ? pb->nreqs : 1, sizeof(uint64_t *));
	b.order = calloc((size_t)depths * pb->ncand, sizeof(int));
	b.potent = calloc(pb->ncand, sizeof(double));
	b.topa = calloc((size_t)depths * 2 * (MM_CONS_MAX + 1), sizeof(double));
	b.have = calloc((size_t)depths * pb->ntopics, sizeof(double));
	uint64_t *root = calloc(b.words, sizeof(uint64_t));
	if (!b.buf || !b.by_topic || !b.ntopic || !b.by_pf || !b.best_pf || !b.req_sets ||
	    !b.order || !b.potent || !b.topa || !b.have || !root)
		goto out;
	/* The root: inclusions in the set, everything else not banned allowed. */
	for (int c = 0; c < pb->ncand; c++) {
		if (pb->included && pb->included[c]) {
			if (pb->banned && pb->banned[c]) {
				rc = 0; /* contradictory: nothing is feasible */
				goto out;
			}
			if (b.n == pb->max_size) {
				rc = 0;
				goto out;
			}
			b.members[b.n++] = c;
		} else if (!(pb->banned && pb->banned[c])) {
			root[c >> 6] |= UINT64_C(1) << (c & 63);
		}
	}
	for (int t = 0; t < pb->ntopics; t++) {
		b.by_topic[t] = calloc(pb->ncand, sizeof(int));
		if (!b.by_topic[t])
			goto out;
		for (int c = 0; c < pb->ncand; c++)
			if (pb->q[c * pb->ntopics + t] > 0)
				b.by_topic[t][b.ntopic[t]++] = c;
		cmp_pb = pb;
		cmp_topic_t = t;
		qsort(b.by_topic[t], b.ntopic[t], sizeof(int), cmp_q);
	}
	for (int c = 0; c < pb->ncand; c++) {
		b.by_pf[c] = c;
		for (int d = 0; d < pb->ncand; d++)
			if (d != c && pb->pf[c * pb->ncand + d] > b.best_pf[c])
				b.best_pf[c] = pb->pf[c * pb->ncand + d];
	}
	cmp_ctx = &b;
	qsort(b.by_pf, pb->ncand, sizeof(int), cmp_pf);
	for (int r = 0; r < pb->nreqs; r++) {
		b.req_sets[r] = calloc(b.words, sizeof(uint64_t));
		if (!b.req_sets[r])
			goto out;
		for (int c = 0; c < pb->ncand; c++)
			if ((pb->reqs[r].kind_mask >> pb->kind[c]) & 1)
				b.req_sets[r][c >> 6] |= UINT64_C(1) << (c & 63);
	}
	search(&b, 0, root);
	*sol = b.best;
	if (exact)
		*exact = !b.aborted;
	rc = 0;
out:
	if (nodes)
		*nodes += b.nodes;
	for (int t = 0; b.by_topic && t < pb->ntopics; t++)
		free(b.by_topic[t]);
	for (int r = 0; b.req_sets && r < pb->nreqs; r++)
		free(b.req_sets[r]);
	free(b.buf);
	free(b.by_topic);
	free(b.ntopic);
	free(b.by_pf);
	free(b.best_pf);
	free(b.req_sets);
	free(b.order);
	free(b.potent);
	free(b.topa);
	free(b.have);
	free(root);
	return rc;
}

static bool same_set(const struct mm_cons_solution *a, const struct mm_cons_solution *b)
{
	return a->n == b->n && memcmp(a->members, b->members, a->n * sizeof(int)) == 0;
}

int mm_cons_suggest(const struct mm_cons_problem *pb, int limit, struct mm_cons_solution *out,
                    long *nodes, bool *exact)
{
	int nout = 0;
	bool all_exact = true;
	bool *banned = calloc(pb->ncand ? pb->ncand : 1, sizeof(bool));
	if (!banned)
		return -1;
	struct mm_cons_problem sub = *pb;
	sub.banned = banned;
	while (nout < limit) {
		/* Ban what the problem bans and every earlier member not included. */
		for (int c = 0; c < pb->ncand; c++)
			banned[c] = pb->banned && pb->banned[c];
		for (int i = 0; i < nout; i++)
			for (int j = 0; j < out[i].n; j++) {
				int c = out[i].members[j];
				if (!(pb->included && pb->included[c]))
					banned[c] = true;
			}
		struct mm_cons_solution s;
		bool ex;
		if (mm_cons_solve(&sub, &s, nodes, &ex) < 0) {
			free(banned);
			return -1;
		}
		all_exact &= ex;
		if (!s.found && nout > 0) {
			/* Fallback: leave out one earlier member at a time; keep the best new
			 * set. */
			struct mm_cons_solution best;
			memset(&best, 0, sizeof(best));
			for (int i = 0; i < nout; i++)
				for (int j = 0; j < out[i].n; j++) {
					int c = out[i].members[j];
					if (pb->included && pb->included[c])
						continue;
					for (int d = 0; d < pb->ncand; d++)
						banned[d] = (pb->banned && pb->banned[d]) || d == c;
					struct mm_cons_solution t;
					if (mm_cons_solve(&sub, &t, nodes, &ex) < 0) {
						free(banned);
						return -1;
					}
					all_exact &= ex;
					bool dup = false;
					for (int k = 0; k < nout && !dup; k++)
						dup = t.found && same_set(&t, &out[k]);
					if (t.found && !dup &&
					    (!best.found || t.objective > best.objective + 1e-12))
						best = t;
				}
			s = best;
		}
		if (!s.found)
			break;
		out[nout++] = s;
	}
	free(banned);
	/* Rank them by objective (stable: earlier first among equals). */
	for (int i = 1; i < nout; i++)
		for (int j = i; j > 0 && out[j].objective > out[j - 1].objective + 1e-12; j--) {
			struct mm_cons_solution t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	if (exact)
		*exact = all_exact;
	return nout;
}
