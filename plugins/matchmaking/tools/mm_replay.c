/* mm_replay.c — replays match queries against an index loaded from the benchmark
 * generator's files (bench/match_gen.py), without server, database or HTTP: CPU time per
 * query of the scoring alone (the part `took_ms` measures), and recall of the planted
 * partners. A development and benchmark tool (`make plugins/matchmaking/tools/mm_replay`;
 * bench/match_bench runs it), not installed.
 *
 *   mm_replay DIR [queries] [key=value ...]   keys: gamma, wt, wk, wr, maxdist, compact,
 *                                             warm (untimed queries first, 300)
 *
 * Prints one JSON object: cpu/wall p50/p99/max per query (ms), candidates and re-scored
 * per query, and precision@1, recall@10, MRR of the planted pairs. */
#define _POSIX_C_SOURCE 200809L
#include "../mm_index.h"
#include "../mm_score.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Splits a tab-separated line in place; returns the number of fields. */
static int split(char *line, char **f, int max)
{
	int n = 0;
	line[strcspn(line, "\r\n")] = '\0';
	for (char *p = line; n < max;) {
		f[n++] = p;
		char *t = strchr(p, '\t');
		if (!t)
			break;
		*t = '\0';
		p = t + 1;
	}
	return n;
}

static FILE *open_in(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		perror(path);
	return f;
}

struct prof {
	struct mm_entry *e[2];
	size_t n[2], cap[2];
};

static int load(struct mm_index *idx, const char *dir)
{
	char line[4096], *f[8], err[256];
	FILE *in = open_in(dir, "topics.tsv");
	if (!in)
		return -1;
	while (fgets(line, sizeof(line), in))
		if (split(line, f, 8) == 4 &&
		    mm_index_add_topic(idx, f[0], f[1], strcmp(f[3], "\\N") ? f[3] : NULL) < 0)
			return -1;
	fclose(in);
	if (mm_index_finish_topics(idx, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (!(in = open_in(dir, "orgs.tsv")))
		return -1;
	while (fgets(line, sizeof(line), in))
		if (split(line, f, 8) == 5)
			mm_index_put_org(idx, f[0], f[1], mm_kind_from_name(f[2]), f[3], f[4]);
	fclose(in);
	struct prof *p = calloc(idx->norgs, sizeof(*p));
	if (!p || !(in = open_in(dir, "org_topics.tsv")))
		return -1;
	while (fgets(line, sizeof(line), in)) {
		if (split(line, f, 8) != 4)
			continue;
		uint32_t o = mm_index_org(idx, f[0]), t = mm_index_topic_by_id(idx, f[2]);
		int r = strcmp(f[1], "seeks") == 0;
		if (o == MM_NONE || t == MM_NONE)
			continue;
		if (p[o].n[r] == p[o].cap[r]) {
			p[o].cap[r] = p[o].cap[r] ? 2 * p[o].cap[r] : 8;
			p[o].e[r] = realloc(p[o].e[r], p[o].cap[r] * sizeof(struct mm_entry));
		}
		p[o].e[r][p[o].n[r]++] = (struct mm_entry){ t, (uint8_t)atoi(f[3]) };
	}
	fclose(in);
	for (uint32_t o = 0; o < idx->norgs; o++) {
		mm_index_set_profile(idx, o, p[o].e[0], p[o].n[0], p[o].e[1], p[o].n[1]);
		free(p[o].e[0]);
		free(p[o].e[1]);
	}
	free(p);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(size_t)((double)(n - 1) * p / 100.0 + 0.5)];
}

/* One query as the plugin runs it: the top 10, then the reasons of each result. */
static int query(struct mm_index *idx, const struct mm_params *p, uint32_t org, struct mm_hit *hits,
                 struct mm_stats *st)
{
	if (org >= idx->norgs || !idx->orgs[org].nseeks)
		return -1;
	const struct mm_org *o = &idx->orgs[org];
	int n = mm_match(idx, p, org, o->seeks, o->nseeks, NULL, 10, hits, st);
	struct mm_reason r[1100];
	struct mm_view rv, cv;
	mm_view_of(idx, org, &rv);
	for (int i = 0; i < n; i++) {
		size_t nr;
		mm_view_of(idx, hits[i].org, &cv);
		mm_score_pair(idx, p, &rv, o->seeks, o->nseeks, &cv, r, &nr);
	}
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: mm_replay DIR [queries] [key=value ...]\n");
		return 2;
	}
	int nq = argc > 2 ? atoi(argv[2]) : 1000;
	struct mm_params p;
	mm_params_default(&p);
	double wt = p.w_topics, wk = p.w_kinds, wr = p.w_recip;
	bool compact = true; /* as the plugin does after a build */
	int warm = 300;
	for (int i = 3; i < argc; i++) {
		double v = atof(strchr(argv[i], '=') ? strchr(argv[i], '=') + 1 : "0");
		if (!strncmp(argv[i], "gamma=", 6))
			p.gamma = v;
		else if (!strncmp(argv[i], "wt=", 3))
			wt = v;
		else if (!strncmp(argv[i], "wk=", 3))
			wk = v;
		else if (!strncmp(argv[i], "wr=", 3))
			wr = v;
		else if (!strncmp(argv[i], "maxdist=", 8))
			p.max_distance = (int)v;
		else if (!strncmp(argv[i], "compact=", 8))
			compact = v != 0;
		else if (!strncmp(argv[i], "warm=", 5))
			warm = (int)v;
	}
	mm_params_set_weights(&p, wt, wk, wr);
	mm_params_update(&p);
	struct mm_index *idx = mm_index_new();
	double t0 = now_ms(CLOCK_MONOTONIC);
	if (!idx || load(idx, argv[1]) < 0)
		return 1;
	/* The requesters, drawn before compaction renumbers the slots (so that runs with and
	 * without it, or of older code, ask for the same organisations). */
	size_t nreq = (size_t)warm + 2 * (size_t)nq;
	char(*rid)[MM_ID_LEN + 1] = calloc(nreq ? nreq : 1, sizeof(*rid));
	uint64_t x = 12345;
	for (size_t i = 0; rid && i < nreq; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		memcpy(rid[i], idx->orgs[(x >> 33) % idx->norgs].id, sizeof(rid[i]));
	}
	double t1 = now_ms(CLOCK_MONOTONIC);
	if (compact && mm_index_compact(idx) < 0)
		return 1;
	fprintf(stderr, "compacted in %.0f ms\n", now_ms(CLOCK_MONOTONIC) - t1);
	fprintf(stderr, "loaded %u organisations in %.0f ms, %zu B/org\n", idx->nalive,
	        now_ms(CLOCK_MONOTONIC) - t0,
	        mm_index_memory(idx) / (idx->nalive ? idx->nalive : 1));

	/* Latency: CPU time of each query on this thread, and wall time. */
	double *cpu = calloc((size_t)nq, sizeof(double)),
	       *wall = calloc((size_t)nq, sizeof(double));
	double *cands = calloc((size_t)nq, sizeof(double)),
	       *resc = calloc((size_t)nq, sizeof(double));
	double *bnd = calloc((size_t)nq, sizeof(double)),
	       *post = calloc((size_t)nq, sizeof(double));
	struct mm_hit hits[10];
	struct mm_stats st;
	size_t done = 0;
	/* Warm-up, untimed: the first queries after a build compute the cached norms of the
	 * organisations they reach and the merged lists they read (as a server's first
	 * queries do); what is timed is the steady state. */
	for (int i = 0; rid && i < warm; i++)
		query(idx, &p, mm_index_org(idx, rid[i]), hits, &st);
	for (int i = 0; i < nq * 2 && done < (size_t)nq; i++) {
		uint32_t org = rid ? mm_index_org(idx, rid[warm + i]) : MM_NONE;
		if (org == MM_NONE)
			continue;
		double c0 = now_ms(CLOCK_THREAD_CPUTIME_ID), w0 = now_ms(CLOCK_MONOTONIC);
		if (query(idx, &p, org, hits, &st) < 0)
			continue;
		cpu[done] = now_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
		wall[done] = now_ms(CLOCK_MONOTONIC) - w0;
		cands[done] = st.candidates;
		resc[done] = st.rescored;
		bnd[done] = st.bounded;
		post[done] = st.postings;
		done++;
	}
	printf("{\"queries\": %zu, \"cpu_p50_ms\": %.4f, \"cpu_p99_ms\": %.4f, "
	       "\"cpu_max_ms\": %.4f, \"wall_p50_ms\": %.4f, \"wall_p99_ms\": %.4f, "
	       "\"candidates_p50\": %.0f, \"rescored_p50\": %.0f, \"rescored_p99\": %.0f, "
	       "\"bounded_p50\": %.0f, \"postings_p50\": %.0f",
	       done, pct(cpu, done, 50), pct(cpu, done, 99), pct(cpu, done, 100),
	       pct(wall, done, 50), pct(wall, done, 99), pct(cands, done, 50), pct(resc, done, 50),
	       pct(resc, done, 99), pct(bnd, done, 50), pct(post, done, 50));

	/* Quality on the planted pairs. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/planted.json", argv[1]);
	json_error_t jerr;
	json_t *planted = json_load_file(path, 0, &jerr);
	size_t i, npairs = 0, r10 = 0, p1 = 0;
	double mrr = 0;
	json_t *pp;
	json_array_foreach(planted, i, pp)
	{
		uint32_t s = mm_index_org(idx, json_string_value(json_object_get(pp, "seeker")));
		uint32_t t = mm_index_org(idx, json_string_value(json_object_get(pp, "partner")));
		if (s == MM_NONE || t == MM_NONE)
			continue;
		npairs++;
		int n = query(idx, &p, s, hits, &st);
		for (int k = 0; k < n; k++)
			if (hits[k].org == t) {
				r10++;
				p1 += k == 0;
				mrr += 1.0 / (k + 1);
			}
	}
	json_decref(planted);
	printf(", \"pairs\": %zu, \"precision_at_1\": %.4f, \"recall_at_10\": %.4f, "
	       "\"mrr_at_10\": %.4f}\n",
	       npairs, npairs ? (double)p1 / (double)npairs : 0,
	       npairs ? (double)r10 / (double)npairs : 0, npairs ? mrr / (double)npairs : 0);
	free(rid);
	free(cpu);
	free(wall);
	free(cands);
	free(resc);
	free(bnd);
	free(post);
	mm_index_free(idx);
	return 0;
}
