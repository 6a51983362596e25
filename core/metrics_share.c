/* metrics_share.c — with several workers, /metrics is answered by whichever worker
 * accepts the scrape, so each worker publishes its exposition once a second into its
 * slot of a shared anonymous mapping (made by the master before forking), and the one
 * answering merges all of them; a worker="N" label keeps their series apart (sum them
 * in PromQL). A slot is guarded by a sequence number (odd while being written): a
 * reader copies it and retries if the number moved, so no lock is ever held across
 * processes and a worker dying mid-write only leaves its slot skipped until its
 * replacement publishes. */
#include "metrics_share.h"
#include "log.h"
#include "util.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Room for a few thousand series per worker; pages are only committed when written. */
#define SLOT_BYTES (512 * 1024)

struct slot {
	_Atomic uint64_t seq; /* odd while the worker writes */
	_Atomic uint32_t len;
	char text[SLOT_BYTES - 16];
};

struct sp_metrics_share {
	int nworkers;
	struct slot *slots; /* nworkers of them, shared */
	size_t map_len;
};

struct sp_metrics_share *sp_metrics_share_new(int nworkers)
{
	size_t len = (size_t)nworkers * sizeof(struct slot);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		sp_warn("metrics: cannot map %zu bytes to share metrics between workers: /metrics "
		        "will show one worker's",
		        len);
		return NULL;
	}
	struct sp_metrics_share *share = sp_calloc(1, sizeof(*share));
	share->nworkers = nworkers;
	share->slots = p;
	share->map_len = len;
	return share;
}

void sp_metrics_share_free(struct sp_metrics_share *share)
{
	if (!share)
		return;
	munmap(share->slots, share->map_len);
	free(share);
}

void sp_metrics_share_publish(struct sp_metrics_share *share, int worker, const char *text,
                              size_t len)
{
	if (!share || worker < 1 || worker > share->nworkers)
		return;
	struct slot *s = &share->slots[worker - 1];
	if (len > sizeof(s->text)) { /* keep whole lines */
		len = sizeof(s->text);
		while (len > 0 && text[len - 1] != '\n')
			len--;
	}
	uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq | 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	memcpy(s->text, text, len);
	atomic_store_explicit(&s->len, (uint32_t)len, memory_order_relaxed);
	atomic_store_explicit(&s->seq, (seq | 1) + 1, memory_order_release);
}

/* Copies a consistent snapshot of a slot; NULL when empty or being written. */
static char *slot_read(struct slot *s, size_t *len)
{
	char *copy = sp_calloc(1, sizeof(s->text));
	for (int attempt = 0; attempt < 4; attempt++) {
		uint64_t before = atomic_load_explicit(&s->seq, memory_order_acquire);
		if (before == 0)
			break; /* never published */
		if (before & 1)
			continue;
		uint32_t n = atomic_load_explicit(&s->len, memory_order_relaxed);
		if (n > sizeof(s->text))
			continue;
		memcpy(copy, s->text, n);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) == before) {
			*len = n;
			return copy;
		}
	}
	free(copy);
	return NULL;
}

void sp_metrics_share_render(struct sp_metrics_share *share, int worker, const char *own,
                             size_t own_len, struct evbuffer *out)
{
	int n = share ? share->nworkers : 0;
	const char **texts = sp_calloc((size_t)n + 1, sizeof(*texts));
	size_t *lens = sp_calloc((size_t)n + 1, sizeof(*lens));
	char **owned = sp_calloc((size_t)n + 1, sizeof(*owned));
	int k = 0;
	texts[k] = own;
	lens[k++] = own_len;
	for (int w = 1; w <= n; w++) {
		if (w == worker)
			continue;
		size_t len = 0;
		char *copy = slot_read(&share->slots[w - 1], &len);
		if (!copy)
			continue;
		owned[w] = copy;
		texts[k] = copy;
		lens[k++] = len;
	}
	sp_metrics_merge(texts, lens, k, out);
	for (int w = 0; w <= n; w++)
		free(owned[w]);
	free(owned);
	free(lens);
	free(texts);
}

/* ---- the text format ---- */

/* Length of the metric name at p: up to '{', ' ' or eol (texts are not terminated). */
static size_t name_span(const char *p, const char *eol)
{
	const char *q = p;
	while (q < eol && *q != '{' && *q != ' ')
		q++;
	return (size_t)(q - p);
}

void sp_metrics_label_worker(const char *text, size_t len, int worker, struct evbuffer *out)
{
	char label[32];
	int ln = snprintf(label, sizeof(label), "worker=\"%d\"", worker);
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		size_t n = (size_t)(eol - p);
		if (n == 0 || p[0] == '#') {
			evbuffer_add(out, p, n);
		} else {
			/* name{labels} value, or name value */
			size_t name_len = name_span(p, eol);
			evbuffer_add(out, p, name_len);
			if (name_len < n && p[name_len] == '{') {
				bool empty = name_len + 1 < n && p[name_len + 1] == '}';
				evbuffer_add_printf(out, "{%.*s%s", ln, label, empty ? "" : ",");
				evbuffer_add(out, p + name_len + 1, n - name_len - 1);
			} else {
				evbuffer_add_printf(out, "{%.*s}", ln, label);
				evbuffer_add(out, p + name_len, n - name_len);
			}
		}
		evbuffer_add(out, "\n", 1);
		p = nl ? nl + 1 : end;
	}
}

struct family {
	char name[200];
	struct evbuffer *head;    /* its HELP and TYPE lines, from the first text having them */
	struct evbuffer *samples; /* from every text */
	int head_from;            /* which text gave head */
};

static struct family *family_get(struct family **fams, int *nfams, const char *name, size_t len)
{
	for (int i = 0; i < *nfams; i++)
		if (strlen((*fams)[i].name) == len && memcmp((*fams)[i].name, name, len) == 0)
			return &(*fams)[i];
	struct family *grown = realloc(*fams, (size_t)(*nfams + 1) * sizeof(**fams));
	if (!grown)
		abort();
	*fams = grown;
	struct family *f = &grown[(*nfams)++];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%.*s", (int)len, name);
	f->head = evbuffer_new();
	f->samples = evbuffer_new();
	f->head_from = -1;
	return f;
}

void sp_metrics_merge(const char *const *texts, const size_t *lens, int n, struct evbuffer *out)
{
	struct family *fams = NULL;
	int nfams = 0;
	for (int t = 0; t < n; t++) {
		const char *p = texts[t], *end = texts[t] + lens[t];
		int current = -1; /* index of the family of the last HELP/TYPE line */
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *eol = nl ? nl : end;
			size_t n_line = (size_t)(eol - p);
			if (n_line > 7 &&
			    (memcmp(p, "# HELP ", 7) == 0 || memcmp(p, "# TYPE ", 7) == 0)) {
				const char *name = p + 7;
				struct family *f =
				    family_get(&fams, &nfams, name, name_span(name, eol));
				current = (int)(f - fams);
				if (f->head_from < 0 || f->head_from == t) {
					f->head_from = t;
					evbuffer_add(f->head, p, n_line);
					evbuffer_add(f->head, "\n", 1);
				}
			} else if (n_line > 0 && p[0] != '#') {
				struct family *f;
				if (current >= 0) {
					f = &fams[current];
				} else { /* a sample without a family: its own name is the family */
					f = family_get(&fams, &nfams, p, name_span(p, eol));
				}
				evbuffer_add(f->samples, p, n_line);
				evbuffer_add(f->samples, "\n", 1);
			}
			p = nl ? nl + 1 : end;
		}
	}
	for (int i = 0; i < nfams; i++) {
		evbuffer_add_buffer(out, fams[i].head);
		evbuffer_add_buffer(out, fams[i].samples);
		evbuffer_free(fams[i].head);
		evbuffer_free(fams[i].samples);
	}
	free(fams);
}
