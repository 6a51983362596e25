/* metrics_share.h — one /metrics for several worker processes. */
#ifndef SP_CORE_METRICS_SHARE_H
#define SP_CORE_METRICS_SHARE_H

#include <stddef.h>
#include <event2/buffer.h>

struct sp_metrics_share;

/* Maps a region shared with the workers forked afterwards: one slot per worker
 * (1..nworkers). NULL (logged) when it cannot be mapped. */
struct sp_metrics_share *sp_metrics_share_new(int nworkers);
void sp_metrics_share_free(struct sp_metrics_share *share);
/* Worker `worker` stores its exposition (its own series, labelled) in its slot. */
void sp_metrics_share_publish(struct sp_metrics_share *share, int worker, const char *text,
                              size_t len);
/* The exposition of every worker: own (the caller's live text, labelled) and what the
 * others published last, merged by metric family. */
void sp_metrics_share_render(struct sp_metrics_share *share, int worker, const char *own,
                             size_t own_len, struct evbuffer *out);

/* Pure helpers (unit tested). Adds worker="N" to every sample line of a Prometheus
 * text exposition. */
void sp_metrics_label_worker(const char *text, size_t len, int worker, struct evbuffer *out);
/* Merges n expositions: each family's HELP and TYPE once, then its samples from every
 * text in order; families in order of first appearance. */
void sp_metrics_merge(const char *const *texts, const size_t *lens, int n, struct evbuffer *out);

#endif
