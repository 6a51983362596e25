/* metrics.c — counters and a latency histogram, rendered as Prometheus text. Label
 * sets are bounded: routes are patterns, never raw paths. */
#include "metrics.h"
#include "db.h"
#include "loader.h"
#include "serve.h"
#include "server.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	                                0.25,  0.5,    1,     2.5,  5,     10 };
#define NBUCKETS (SP_ARRAY_LEN(bucket_bounds))

struct sp_metric {
	struct sp_plugin *owner;
	char *name; /* full name: spearhead_<plugin>_<name> */
	char *help;
	bool gauge;
	double value;
	struct sp_metric *next;
};

struct sp_metrics {
	json_t *requests; /* "method\troute\tstatus" → count */
	unsigned long long buckets[NBUCKETS];
	unsigned long long count;
	double sum;
	struct sp_metric *plugin_metrics;
};

struct sp_metrics *sp_metrics_new(void)
{
	struct sp_metrics *m = sp_calloc(1, sizeof(*m));
	m->requests = json_object();
	return m;
}

static void metric_free(struct sp_metric *x)
{
	free(x->name);
	free(x->help);
	free(x);
}

void sp_metrics_free(struct sp_metrics *m)
{
	if (!m)
		return;
	json_decref(m->requests);
	while (m->plugin_metrics) {
		struct sp_metric *n = m->plugin_metrics->next;
		metric_free(m->plugin_metrics);
		m->plugin_metrics = n;
	}
	free(m);
}

void sp_metrics_observe_request(struct sp_metrics *m, const char *method, const char *route,
                                int status, double seconds)
{
	/* "method\troute\tstatus" without printf: this runs for every request. */
	char key[512];
	size_t n = sp_strlcpy(key, method, 32);
	key[n++] = '\t';
	n += sp_strlcpy(key + n, route, sizeof(key) - n - 8);
	key[n++] = '\t';
	unsigned st = (unsigned)status % 1000;
	key[n++] = (char)('0' + st / 100);
	key[n++] = (char)('0' + st / 10 % 10);
	key[n++] = (char)('0' + st % 10);
	key[n] = '\0';
	json_t *v = json_object_get(m->requests, key);
	if (v)
		json_integer_set(v, json_integer_value(v) + 1);
	else
		json_object_set_new(m->requests, key, json_integer(1));
	for (size_t i = 0; i < NBUCKETS; i++)
		if (seconds <= bucket_bounds[i])
			m->buckets[i]++;
	m->count++;
	m->sum += seconds;
}

struct sp_metric *sp_metrics_register(struct sp_metrics *m, struct sp_plugin *owner,
                                      const char *plugin_name, const char *name, const char *help,
                                      bool gauge)
{
	if (!sp_is_ident(name))
		return NULL;
	char full[256];
	snprintf(full, sizeof(full), "spearhead_%s_%s", plugin_name, name);
	for (struct sp_metric *x = m->plugin_metrics; x; x = x->next)
		if (strcmp(x->name, full) == 0)
			return x->owner == owner ? x : NULL;
	struct sp_metric *x = sp_calloc(1, sizeof(*x));
	x->owner = owner;
	x->name = sp_strdup(full);
	x->help = sp_strdup(help ? help : name);
	x->gauge = gauge;
	x->next = m->plugin_metrics;
	m->plugin_metrics = x;
	return x;
}

void sp_metrics_remove_owner(struct sp_metrics *m, struct sp_plugin *owner)
{
	struct sp_metric **p = &m->plugin_metrics;
	while (*p) {
		if ((*p)->owner == owner) {
			struct sp_metric *dead = *p;
			*p = dead->next;
			metric_free(dead);
		} else {
			p = &(*p)->next;
		}
	}
}

void sp_metric_add(struct sp_metric *metric, double delta)
{
	if (metric && isfinite(delta))
		metric->value += delta;
}

void sp_metric_set(struct sp_metric *metric, double value)
{
	if (metric && isfinite(value))
		metric->value = value;
}

/* Prometheus label values escape backslash, quote and newline. */
static void put_label(struct evbuffer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(out, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

void sp_metrics_render(struct sp_metrics *m, struct sp_core *core, struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP spearhead_http_requests_total HTTP requests answered.\n"
	                         "# TYPE spearhead_http_requests_total counter\n");
	const char *key;
	json_t *v;
	json_object_foreach(m->requests, key, v)
	{
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", key);
		char *route = strchr(buf, '\t');
		char *status = route ? strchr(route + 1, '\t') : NULL;
		if (!route || !status)
			continue;
		*route++ = '\0';
		*status++ = '\0';
		evbuffer_add_printf(out, "spearhead_http_requests_total{method=\"%s\",route=\"",
		                    buf);
		put_label(out, route);
		evbuffer_add_printf(out, "\",status=\"%s\"} %lld\n", status,
		                    (long long)json_integer_value(v));
	}
	evbuffer_add_printf(out, "# HELP spearhead_http_request_duration_seconds Time to answer.\n"
	                         "# TYPE spearhead_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i < NBUCKETS; i++)
		evbuffer_add_printf(
		    out, "spearhead_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
		    bucket_bounds[i], m->buckets[i]);
	evbuffer_add_printf(out,
	                    "spearhead_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	                    "spearhead_http_request_duration_seconds_sum %.6f\n"
	                    "spearhead_http_request_duration_seconds_count %llu\n",
	                    m->count, m->sum, m->count);
	if (core->db) {
		struct sp_db_stats st;
		sp_db_get_stats(core->db, &st);
		evbuffer_add_printf(
		    out,
		    "# HELP spearhead_db_pool_connections Database pool connections by state.\n"
		    "# TYPE spearhead_db_pool_connections gauge\n"
		    "spearhead_db_pool_connections{state=\"size\"} %d\n"
		    "spearhead_db_pool_connections{state=\"connected\"} %d\n"
		    "spearhead_db_pool_connections{state=\"busy\"} %d\n"
		    "# HELP spearhead_db_queue_length Queries waiting for a connection.\n"
		    "# TYPE spearhead_db_queue_length gauge\n"
		    "spearhead_db_queue_length %d\n"
		    "# HELP spearhead_db_queries_total Queries run.\n"
		    "# TYPE spearhead_db_queries_total counter\n"
		    "spearhead_db_queries_total %llu\n"
		    "# HELP spearhead_db_errors_total Queries that failed.\n"
		    "# TYPE spearhead_db_errors_total counter\n"
		    "spearhead_db_errors_total %llu\n",
		    st.size, st.connected, st.busy, st.queued, st.queries, st.errors);
	}
	evbuffer_add_printf(out,
	                    "# HELP spearhead_plugins Plugins by status.\n"
	                    "# TYPE spearhead_plugins gauge\n"
	                    "spearhead_plugins{status=\"running\"} %d\n"
	                    "spearhead_plugins{status=\"failed\"} %d\n",
	                    sp_plugins_count(core->plugins, true),
	                    sp_plugins_count(core->plugins, false));
	if (core->server)
		evbuffer_add_printf(out,
		                    "# HELP spearhead_http_connections Open client connections.\n"
		                    "# TYPE spearhead_http_connections gauge\n"
		                    "spearhead_http_connections %d\n"
		                    "# HELP spearhead_http_inflight Requests being handled.\n"
		                    "# TYPE spearhead_http_inflight gauge\n"
		                    "spearhead_http_inflight %d\n",
		                    sp_server_connections(core->server),
		                    sp_server_inflight(core->server));
	for (struct sp_metric *x = m->plugin_metrics; x; x = x->next)
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", x->name, x->help,
		                    x->name, x->gauge ? "gauge" : "counter", x->name, x->value);
}
