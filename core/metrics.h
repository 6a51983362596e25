/* metrics.h — in-process metrics rendered in the Prometheus text format. */
#ifndef SP_CORE_METRICS_H
#define SP_CORE_METRICS_H

#include <spearhead/plugin.h>
#include <event2/buffer.h>

struct sp_metrics;
struct sp_core;

struct sp_metrics *sp_metrics_new(void);
void sp_metrics_free(struct sp_metrics *m);
/* route is the pattern ("/v1/events/{id}") or "unmatched", never the raw path, so
 * the label set stays bounded. */
void sp_metrics_observe_request(struct sp_metrics *m, const char *method, const char *route,
                                int status, double seconds);
/* A plugin metric; name is [a-z0-9_]+. Owned by the registry; freed with it or with
 * sp_metrics_remove_owner. */
struct sp_metric *sp_metrics_register(struct sp_metrics *m, struct sp_plugin *owner,
                                      const char *plugin_name, const char *name, const char *help,
                                      bool gauge);
void sp_metrics_remove_owner(struct sp_metrics *m, struct sp_plugin *owner);
void sp_metric_add(struct sp_metric *metric, double delta);
void sp_metric_set(struct sp_metric *metric, double value);
/* Renders everything (core gauges read from core) into out. */
void sp_metrics_render(struct sp_metrics *m, struct sp_core *core, struct evbuffer *out);

#endif
